/* Private: the model's parts, shared by model.c (loading) and forward.c (running). */
#ifndef T2_MODEL_IMPL_H
#define T2_MODEL_IMPL_H

#include <t2/model.h>

#include "kernels.h"
#include "pool.h"

/* The matrices of a layer, in the order the SVD cache lists them. */
enum { T2_KIND_Q, T2_KIND_K, T2_KIND_V, T2_KIND_O, T2_KIND_GATE, T2_KIND_UP, T2_KIND_DOWN, T2_N_KINDS };

typedef struct t2_layer {
    const float *attn_norm;       /* [H] */
    const float *ffn_norm;        /* [H] */
    const float *bq, *bk, *bv;    /* [nh·hd], [nkv·hd], [nkv·hd] or NULL */
    t2_weight wq;                 /* [nh·hd × H] */
    t2_weight wk, wv;             /* [nkv·hd × H] */
    t2_weight wo;                 /* [H × nh·hd] */
    t2_weight wg, wu;             /* [F × H] */
    t2_weight wd;                 /* [H × F] */
} t2_layer;

struct t2_model {
    t2_model_config cfg;
    t2_st *st;                    /* owns the mappings every t2_weight points into */
    t2_weight embed;              /* [V × H] */
    t2_weight lm_head;            /* [V × H]; the embedding when tied */
    t2_layer *layers;             /* [n_layers] */
    const float *final_norm;      /* [H] */
    float *vecs;                  /* owned f32 copies of every norm weight and bias */
    int64_t n_params;
    char fingerprint[17];         /* t2_model_fingerprint, "" until first asked */
    t2_pool *pool;
    const t2_kernels *kern;
    int n_threads;
    int prefill_bf16;             /* t2_model_params.prefill_bf16, where the CPU supports it */
    /* After t2_model_make_trainable: every weight as f32 in one owned array, laid out as the weight
     * gradients are (train_layout, owned); the t2_weights and vectors above point into it. */
    float *train_params;
    struct t2_weight_grads *train_layout;
};

/* The weight of (layer, kind), and its tensor name without ".weight" into buf. */
const t2_weight *t2_model_matrix(const t2_model *m, int layer, int kind, char *name, size_t cap);

#endif
