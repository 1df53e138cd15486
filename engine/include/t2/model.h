/* t2/model.h — Llama-family models from Hugging Face folders, and contexts that run them.
 *
 * A model is config.json + safetensors weights (one file or shards), memory-mapped and kept in their
 * stored dtype (F32, BF16 or F16); all arithmetic is f32. Supported model_type: llama (Llama 2,
 * Llama 3 with rope_scaling "llama3" or "linear"), mistral (sliding-window attention), qwen2 (q/k/v
 * bias, tied embeddings).
 *
 * A context owns the KV cache of n_seq sequences and the scratch of one batch. A batch mixes prompt
 * chunks and single decode tokens of any sequences (continuous batching); each row says which
 * sequence and position it is and whether its logits are wanted. */
#ifndef T2_MODEL_H
#define T2_MODEL_H

#include <stddef.h>
#include <stdint.h>
#include <t2/safetensors.h>
#include <t2/status.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum t2_arch { T2_ARCH_LLAMA = 0, T2_ARCH_MISTRAL, T2_ARCH_QWEN2 } t2_arch;
typedef enum t2_rope_kind { T2_ROPE_DEFAULT = 0, T2_ROPE_LINEAR, T2_ROPE_LLAMA3 } t2_rope_kind;

#define T2_MAX_EOS 8

typedef struct t2_model_config {
    char model_type[32];
    t2_arch arch;
    int vocab_size;
    int hidden_size;
    int intermediate_size;
    int n_layers;
    int n_heads;
    int n_kv_heads;
    int head_dim;
    int max_position_embeddings;
    float rms_norm_eps;
    double rope_theta;
    t2_rope_kind rope_kind;
    double rope_factor;              /* linear and llama3 */
    double rope_low_freq_factor;     /* llama3 */
    double rope_high_freq_factor;    /* llama3 */
    int rope_original_max_pos;       /* llama3 */
    int tie_word_embeddings;
    int attention_bias;              /* q/k/v biases present (qwen2 always) */
    int sliding_window;              /* 0 = none; a query at i sees keys j with i - j < sliding_window */
    int bos_token_id;                /* -1 if unknown */
    int n_eos;
    int eos_token_ids[T2_MAX_EOS];
} t2_model_config;

/* Parse a config.json. On failure returns the status; the detail names the missing or bad field. */
t2_status t2_model_config_load(const char *path, t2_model_config *cfg);

typedef struct t2_model_params {
    const char *path;    /* model folder: config.json + model.safetensors[.index.json] */
    int n_threads;       /* kernel threads; 0 = number of online cores */
    /* 1: prompt processing (batches of 16 rows or more) on BF16 weights rounds the activations to BF16
     * and uses BF16 dot-product instructions (AVX512-BF16), as frameworks running in bfloat16 do:
     * about twice as fast, logits within ~1e-2 instead of ~1e-6. Decode stays f32. Ignored without
     * AVX512-BF16. 0 (default): f32 activations everywhere. */
    int prefill_bf16;
} t2_model_params;

t2_model_params t2_model_default_params(void);

typedef struct t2_model t2_model;

/* Load a model. Caller frees with t2_model_free. NULL on failure with *err set and the detail
 * (naming the file, field or tensor) in t2_last_error(). */
t2_model *t2_model_load(const t2_model_params *p, t2_status *err);
void t2_model_free(t2_model *m);

/* Borrowed, valid until t2_model_free. */
const t2_model_config *t2_model_get_config(const t2_model *m);
/* Number of parameters (tied embeddings counted once). */
int64_t t2_model_n_params(const t2_model *m);
/* Bytes of weight data read by one decoded token (every matrix once, the embedding row aside). */
size_t t2_model_decode_bytes(const t2_model *m);
/* The dtype of the weight matrices (the first layer's q_proj), for display. */
t2_dtype t2_model_weight_dtype(const t2_model *m);
/* The safetensors set the model maps. Borrowed, valid until t2_model_free. */
const t2_st *t2_model_tensors(const t2_model *m);

typedef struct t2_ctx_params {
    int n_ctx;       /* positions per sequence (KV cache length) */
    int n_seq;       /* sequences held at once */
    int n_batch;     /* most rows in one t2_ctx_decode */
} t2_ctx_params;

t2_ctx_params t2_ctx_default_params(void);

typedef struct t2_ctx t2_ctx;

/* Create a context (KV cache + scratch, all allocated here, none per token).
 * Caller frees with t2_ctx_free; the model must outlive it. */
t2_ctx *t2_ctx_new(t2_model *m, const t2_ctx_params *p, t2_status *err);
void t2_ctx_free(t2_ctx *c);

/* Borrowed, valid until t2_ctx_free. */
const t2_model *t2_ctx_model(const t2_ctx *c);
/* The parameters the context was made with. */
t2_ctx_params t2_ctx_get_params(const t2_ctx *c);

typedef struct t2_batch {
    int n;                   /* rows */
    const int32_t *token;    /* [n] token ids */
    const int32_t *pos;      /* [n] positions; a sequence's rows must continue its cache without gaps */
    const int32_t *seq;      /* [n] sequence slots in [0, n_seq) */
    const uint8_t *want;     /* [n] nonzero: produce this row's logits; NULL = last row only */
} t2_batch;

/* Run one forward over the batch. Writes the logits of the rows with want set, in row order,
 * to logits ([n_wanted × vocab_size] floats). Rows of one sequence must be in increasing position
 * order and start at that sequence's current length or earlier (earlier rewinds it). */
t2_status t2_ctx_decode(t2_ctx *c, const t2_batch *b, float *logits);

/* Current length (positions cached) of a sequence. */
int t2_ctx_seq_len(const t2_ctx *c, int seq);
/* Forget a sequence's cache (its next row must be at position 0). */
void t2_ctx_seq_clear(t2_ctx *c, int seq);
/* Copy the first n cached positions of sequence src into sequence dst, whose length becomes n: a prompt
 * prefix shared by many sequences is computed once (the cache holds what the rows computed, so the
 * prefix must have run under the same weights / adapter). T2_ERR_RANGE if src holds fewer than n. */
t2_status t2_ctx_seq_copy(t2_ctx *c, int src, int dst, int n);

#ifdef __cplusplus
}
#endif
#endif
