/* t2/lora.h — LoRA adapters: the baseline the paper compares SVF with (Tables 1 and 4).
 *
 * For each adapted weight W (rows × cols) a LoRA holds A (rank × cols) and B (rows × rank); the adapted
 * weight is W' = W + (alpha / rank) · B·A. New LoRAs start as PEFT does: A uniform in
 * [−1/√cols, 1/√cols], B = 0, so W' = W. The adapted matrices are chosen like SVF's (t2_modules: mlp =
 * gate, up, down of every layer; attn = q, k, v, o; all).
 *
 * File format: safetensors, F32 tensors "<weight name>.lora_A" [rank, cols] and "<weight name>.lora_B"
 * [rows, rank] for each adapted matrix in model order, with __metadata__ format = "t2-lora", version = "1",
 * fingerprint (t2_model_fingerprint), rank, alpha, modules, plus any t2_lora_set_meta keys. Written
 * atomically (temporary file, fsync, rename). */
#ifndef T2_LORA_H
#define T2_LORA_H

#include <stddef.h>
#include <stdint.h>
#include <t2/model.h>
#include <t2/status.h>
#include <t2/svf.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct t2_lora t2_lora;

/* The largest rank accepted (the forward keeps per-batch scratch of rows × rank; the paper's LoRA
 * baselines use ranks 16..64). */
#define T2_LORA_MAX_RANK 256

/* A new LoRA for m's matrices of `modules`, rank 1..min(rows, cols) of every adapted matrix (and at most
 * T2_LORA_MAX_RANK), alpha > 0, A drawn from seed. Caller frees with t2_lora_free; m must outlive it. */
t2_lora *t2_lora_new(const t2_model *m, t2_modules modules, int rank, float alpha, uint64_t seed, t2_status *err);
/* Load a LoRA file made for m (format, version, fingerprint and every shape checked; a mismatch is an
 * error naming it). Caller frees with t2_lora_free. */
t2_lora *t2_lora_load(const char *path, const t2_model *m, t2_status *err);
t2_status t2_lora_save(const t2_lora *l, const char *path);
void t2_lora_free(t2_lora *l);   /* NULL-safe */

int t2_lora_rank(const t2_lora *l);
float t2_lora_alpha(const t2_lora *l);
t2_modules t2_lora_modules(const t2_lora *l);
/* Adapted matrices, and the weight name of matrix i (borrowed, valid until t2_lora_free). */
int t2_lora_count(const t2_lora *l);
const char *t2_lora_name(const t2_lora *l, int i);
/* Trainable parameters: Σ rank·(rows + cols). */
size_t t2_lora_n_params(const t2_lora *l);
/* All parameters in one contiguous block [t2_lora_n_params]: for each matrix in order, A (rank × cols,
 * row-major) then B (rows × rank). Writable (trainers update it in place; adapters made earlier keep
 * their own copy). Borrowed, valid until t2_lora_free. */
float *t2_lora_params(t2_lora *l);
const float *t2_lora_paramsc(const t2_lora *l);
/* String metadata saved with the file (label, trainer, settings, metrics). get: borrowed or NULL. */
t2_status t2_lora_set_meta(t2_lora *l, const char *key, const char *value);
const char *t2_lora_meta(const t2_lora *l, const char *key);
/* A copy. Caller frees with t2_lora_free. */
t2_lora *t2_lora_clone(const t2_lora *l, t2_status *err);

/* Inference: an adapter that adds (alpha/rank)·B(A x) to every adapted projection of the rows that use
 * it, in t2_ctx_decode_adapted batches together with SVF adapters and base rows (t2_adapter_mode gives
 * T2_APPLY_LORA). It copies the parameters it needs; it needs no SVD cache. Caller frees with
 * t2_adapter_free. */
t2_adapter *t2_adapter_new_lora(const t2_lora *l, t2_status *err);

#ifdef __cplusplus
}
#endif
#endif
