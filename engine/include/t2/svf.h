/* t2/svf.h — Singular Value Fine-tuning: the SVD cache of a base model, expert vectors, mixtures,
 * and adapters that apply them (Transformer², Sun et al. 2025, §3.1).
 *
 * For an adapted weight W (m×n) with thin SVD W = U diag(s) Vᵀ (r = min(m, n)), an expert holds
 * z ∈ ℝʳ and the adapted weight is
 *     W' = U diag(s ⊙ z) Vᵀ · (Σs / Σ(s ⊙ z))          (the sum of singular values is kept)
 * z = 1 gives W back. A mixture of experts uses z' = Σₖ αₖ zₖ, with one α per expert or one per
 * expert per matrix.
 *
 * An adapter is a mixture compiled for one model: per adapted matrix the vector
 * c = s ⊙ z' · Σs / Σ(s ⊙ z'). It runs either
 *   factored: y = U (c ⊙ (Vᵀ x)) — nothing per expert but c, any number of adapters in one batch;
 *   merged:   W' = U diag(c) Vᵀ recomposed once (one GEMM per matrix) and kept in a cache with a
 *             memory budget, least recently used first out — fastest for a hot adapter.
 *
 * Files (safetensors, readable from Python):
 *   SVD cache: tensors "<weight>.U" [m×r], "<weight>.S" [r] (F32), "<weight>.Vt" [r×n]; U and Vt in
 *   the cache dtype (the model's weight dtype unless asked otherwise). __metadata__: format
 *   "t2-svd-cache", version "1", modules, dtype, fingerprint (of the base weights), model_type,
 *   precision ("single" or "double": the LAPACK routine's), err.<matrix> (reconstruction errors).
 *   Expert: tensors "<weight>.z" [r] F32; __metadata__: format "t2-expert", version "1",
 *   fingerprint, modules, label, trainer, settings (JSON), created (ISO 8601 UTC), metrics (JSON),
 *   plus any other string keys. */
#ifndef T2_SVF_H
#define T2_SVF_H

#include <stddef.h>
#include <stdint.h>
#include <t2/model.h>
#include <t2/status.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Which matrices are adapted. */
typedef enum t2_modules {
    T2_MODULES_MLP = 1,      /* gate, up, down of every layer (the paper's default) */
    T2_MODULES_ATTN = 2,     /* q, k, v, o of every layer */
    T2_MODULES_ALL = 3,
} t2_modules;

/* "mlp", "attn", "all". Borrowed, static. */
const char *t2_modules_name(t2_modules m);
/* Parse "mlp" | "attn" | "all"; T2_ERR_INVALID_ARG otherwise. */
t2_status t2_modules_parse(const char *s, t2_modules *out);

/* A 16-hex-digit fingerprint of the base weights (every tensor's name, dtype, shape and bytes).
 * Computed once per model and cached. Borrowed, valid until t2_model_free. */
const char *t2_model_fingerprint(t2_model *m);

/* ---------------- SVD cache ---------------- */

typedef struct t2_svd t2_svd;

/* Called after each matrix: i of n done, its name, seconds it took (0 if loaded from a partial
 * build), and the relative Frobenius reconstruction error ‖W − U diag(s) Vᵀ‖ / ‖W‖. */
typedef void (*t2_svd_progress_fn)(void *user, int i, int n, const char *name, double secs, double rel_err);

typedef struct t2_svd_params {
    t2_modules modules;
    const char *path;              /* cache file; NULL = t2_svd_default_path */
    int dtype;                     /* t2_dtype of U and Vt (T2_F32 or T2_BF16); -1 = an existing cache's own,
                                      else the model's (F16 models get F32) */
    int rebuild;                   /* build even if a valid cache exists */
    int precision;                 /* 0: LAPACKE sgesdd (float); 1: dgesdd (double), for matrices with close
                                      singular values; a cache built at least this precisely is used */
    int verify;                    /* on load, recompute every matrix's reconstruction error */
    t2_svd_progress_fn progress;   /* optional */
    void (*note)(void *user, const char *msg);   /* optional: why a cache was rebuilt, resumes, ... */
    void *user;
} t2_svd_params;

t2_svd_params t2_svd_default_params(void);

/* Default cache path: $T2_CACHE_DIR or $XDG_CACHE_HOME/t2 or ~/.cache/t2, then
 * "svd-<fingerprint>-<modules>-<dtype>.safetensors". Writes into buf. */
t2_status t2_svd_default_path(t2_model *m, t2_modules modules, int dtype, char *buf, size_t cap);

/* Load the SVD cache for m, building it if it is missing, was made for other weights or modules, or
 * is damaged (a cache that does not match is never used). A build decomposes each matrix with
 * LAPACKE sgesdd on all cores, keeps each finished matrix in "<path>.partial/" so an interrupted
 * build resumes where it stopped, and writes the cache atomically. Caller frees with t2_svd_free;
 * the model must outlive it. */
t2_svd *t2_svd_load(t2_model *m, const t2_svd_params *p, t2_status *err);
void t2_svd_free(t2_svd *s);

/* Number of adapted matrices, and their properties in cache order (layer by layer, q k v o gate up
 * down within a layer). Names are the weight tensors' ("model.layers.3.mlp.down_proj.weight");
 * borrowed, valid until t2_svd_free. */
int t2_svd_count(const t2_svd *s);
const char *t2_svd_name(const t2_svd *s, int i);
int t2_svd_rank(const t2_svd *s, int i);
/* Singular values of matrix i, [rank]. Borrowed, valid until t2_svd_free. */
const float *t2_svd_values(const t2_svd *s, int i);
/* Index of the matrix adapted for this weight name (with or without the ".weight" suffix), or -1. */
int t2_svd_find(const t2_svd *s, const char *weight_name);
t2_modules t2_svd_modules(const t2_svd *s);
/* The cache file in use. Borrowed, valid until t2_svd_free. */
const char *t2_svd_path(const t2_svd *s);
/* Relative reconstruction error of matrix i (measured at build, or by verify). */
double t2_svd_error(const t2_svd *s, int i);

/* ---------------- experts ---------------- */

typedef struct t2_expert t2_expert;

/* A new expert for svd's matrices with every z = 1 (the base model). Caller frees with
 * t2_expert_free. */
t2_expert *t2_expert_new(const t2_svd *svd, const char *label, t2_status *err);

/* Load an expert file. With svd, every tensor name and length and the fingerprint are checked
 * against it and the z vectors are put in svd's matrix order; a matrix the expert does not cover,
 * or a tensor that names no adapted matrix, is an error naming it. Without svd, the file is only
 * checked for form (for `t2 expert show`). Caller frees with t2_expert_free. */
t2_expert *t2_expert_load(const char *path, const t2_svd *svd, t2_status *err);
void t2_expert_free(t2_expert *e);

/* Wrap raw z tensors (named "<weight>.z", e.g. written by a Python script or converted from another
 * implementation) into an expert for svd's model: every name and length is checked, every adapted
 * matrix must be present; metadata is fresh (fingerprint of this model, label empty, "provenance" =
 * path). Caller frees with t2_expert_free. */
t2_expert *t2_expert_import(const char *path, const t2_svd *svd, t2_status *err);

/* Write atomically (temporary file, fsync, rename). */
t2_status t2_expert_save(const t2_expert *e, const char *path);

/* Number of z vectors, their weight names and lengths. Borrowed, valid until t2_expert_free. */
int t2_expert_count(const t2_expert *e);
const char *t2_expert_name(const t2_expert *e, int i);
int t2_expert_len(const t2_expert *e, int i);
/* z of matrix i, [len]. Writable: trainers update it in place. Borrowed, valid until t2_expert_free. */
/* The z vectors of all matrices are one contiguous block in matrix order: t2_expert_z(e, 0) is its start. */
float *t2_expert_z(t2_expert *e, int i);
const float *t2_expert_zc(const t2_expert *e, int i);
/* A metadata value, or NULL. Borrowed, valid until the key is set again or t2_expert_free. */
const char *t2_expert_meta(const t2_expert *e, const char *key);
/* Set (or with value NULL remove) a metadata string. */
t2_status t2_expert_set_meta(t2_expert *e, const char *key, const char *value);
/* Number of metadata entries and the i-th key. Borrowed. */
int t2_expert_meta_count(const t2_expert *e);
const char *t2_expert_meta_key(const t2_expert *e, int i);

/* z' = Σₖ αₖ zₖ as a new expert. alpha: [k] (per expert) or, with per_matrix, [k × count]
 * (alpha[j·count + i] for expert j, matrix i). All experts must cover the same matrices. Caller frees
 * with t2_expert_free. */
t2_expert *t2_expert_mix(const t2_expert *const *experts, const float *alpha, int k, int per_matrix, t2_status *err);

/* The gradient with respect to the mixture weights from the gradient with respect to the mixed z':
 * dalpha[j] = Σ_i Σ_t dz[i][t] · z_j[i][t] (per expert), or dalpha[j·count + i] = Σ_t dz[i][t] · z_j[i][t]
 * (per_matrix). dz is [Σ lengths], matrices in the experts' order. */
t2_status t2_expert_mix_grad(const t2_expert *const *experts, int k, int per_matrix, const float *dz, float *dalpha);

/* A deep copy (z and metadata). Caller frees with t2_expert_free. */
t2_expert *t2_expert_clone(const t2_expert *e, t2_status *err);

/* ---------------- adapters ---------------- */

typedef enum t2_apply { T2_APPLY_FACTORED = 0, T2_APPLY_MERGED = 1, T2_APPLY_LORA = 2 /* t2_adapter_new_lora (t2/lora.h) */ } t2_apply;

typedef struct t2_adapter t2_adapter;

/* Compile an expert (already in svd's order, e.g. loaded with svd) into an adapter. Caller frees
 * with t2_adapter_free after every batch using it is done. */
t2_adapter *t2_adapter_new(const t2_svd *svd, const t2_expert *e, t2_apply mode, t2_status *err);
void t2_adapter_free(t2_adapter *a);
t2_apply t2_adapter_mode(const t2_adapter *a);

/* Attach the SVD cache to a context (required before batches use adapters) and set the memory budget
 * of its merged-weight cache in bytes (0 = a default of 4 GiB). The svd must outlive the context. */
t2_status t2_ctx_set_svd(t2_ctx *c, const t2_svd *svd, size_t merged_budget);

/* Like t2_ctx_decode, with one adapter per row (adapters[r] NULL = the base model). Rows with
 * different adapters run in the same batch. */
t2_status t2_ctx_decode_adapted(t2_ctx *c, const t2_batch *b, const t2_adapter *const *adapters, float *logits);

#ifdef __cplusplus
}
#endif
#endif
