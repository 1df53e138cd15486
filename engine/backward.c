/* The log-probability of a completion and its gradients (see t2/train.h).
 *
 * Forward (one sequence of T tokens, every activation kept):
 *   h⁰ = E[ids];  per layer: a = rms(h)·w₁; q,k,v = lin(a); rope(q,k); o = attn(q,k,v)
 *   h' = h + lin_o(o); b = rms(h')·w₂; g = lin_g(b); u = lin_u(b); m = silu(g) ⊙ u; h = h' + lin_d(m)
 *   logits_t = rms(h_t)·w_f · Wlmᵀ for t = k0-1 .. T-2;  J = Σ log softmax(logits_t)[ids[t+1]]
 * lin(x) = x·Wᵀ (+ bias), or for an adapted matrix y = U (c ⊙ (Vᵀx)) with c = s ⊙ z · Σs/Σ(s ⊙ z),
 * or for a matrix a LoRA adapts y = x·Wᵀ (+ bias) + σ·(x·Aᵀ)·Bᵀ, σ = alpha/rank (σ·x·Aᵀ is kept).
 *
 * Backward, in reverse, with the standard identities:
 *   ∂J/∂logits_t = onehot(ids[t+1]) − softmax(logits_t)
 *   lin:      dx += dy·W, dW += dyᵀx, db += Σ dy
 *   factored: ds = dy·U, dc += Σ_t ds ⊙ (Vᵀx), dx += (c ⊙ ds)·Vᵀ
 *   LoRA:     u = σ·dy·B; dx += dy·W + u·A, dA += uᵀ·x, dB += dyᵀ·(σ·x·Aᵀ)
 *   rms:      y = w ⊙ x·ρ, ρ = 1/√(mean x² + ε):  dx = ρ (w⊙dy) − ρ³/n · x · Σ(w⊙dy⊙x), dw += dy ⊙ xρ
 *   silu:     d g = dm ⊙ u ⊙ σ(g)(1 + g(1 − σ(g))), du = dm ⊙ silu(g)
 *   attn:     P = softmax(q·kᵀ/√d) recomputed; dP = do·vᵀ; dv += Pᵀdo; dS = P ⊙ (dP − Σ P⊙dP);
 *             dq = dS·k/√d, dk += dSᵀ·q/√d (GQA: the heads of a group add into one dk, dv)
 *   rope:     the transpose of the rotation (rotate by −θ)
 * and finally z from c through the normalisation N = Σs/S, S = Σ s⊙z:
 *   ∂J/∂z_k = N s_k dc_k − (N s_k / S) Σ_j dc_j s_j z_j. */
#include <t2/train.h>
#include <t2/error.h>
#include <t2/rng.h>
#include <t2/safetensors.h>

#include "forward_impl.h"
#include "lora_impl.h"
#include "matmul.h"
#include "model_impl.h"
#include "svf_impl.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------- weight gradients ---------------- */

struct t2_weight_grads {
    int n;
    char **names;
    int64_t (*shape)[2];
    int *ndim;
    float **data;        /* pointers into flat, in tensor order */
    float *flat;         /* every gradient, one allocation of n_flat floats */
    size_t n_flat;
    /* where each part of the model lands (index into data, -1 = none) */
    int embed, lm_head, final_norm;
    int *layer;          /* [n_layers × (T2_N_KINDS + 5)]: kinds, attn_norm, ffn_norm, bq, bk, bv */
};

#define LAYER_SLOTS (T2_N_KINDS + 5)
enum { SLOT_ATTN_NORM = T2_N_KINDS, SLOT_FFN_NORM, SLOT_BQ, SLOT_BK, SLOT_BV };

int t2_weight_grads_count(const t2_weight_grads *g) { return g->n; }
float *t2_weight_grads_data(t2_weight_grads *g, int i) { return g->data[i]; }
float *t2_weight_grads_flat(t2_weight_grads *g, size_t *n) {
    *n = g->n_flat;
    return g->flat;
}
const char *t2_weight_grads_name(const t2_weight_grads *g, int i, int64_t shape[2], int *ndim) {
    shape[0] = g->shape[i][0];
    shape[1] = g->shape[i][1];
    *ndim = g->ndim[i];
    return g->names[i];
}

void t2_weight_grads_free(t2_weight_grads *g) {
    if (!g) return;
    for (int i = 0; i < g->n; i++) free(g->names[i]);
    free(g->flat);
    free(g->names);
    free(g->shape);
    free(g->ndim);
    free(g->data);
    free(g->layer);
    free(g);
}

/* Tensor i's name and shape; its data is placed in flat once every tensor is known. */
static int add_grad(t2_weight_grads *g, const char *name, int64_t d0, int64_t d1) {
    int i = g->n;
    g->names[i] = strdup(name);
    g->shape[i][0] = d0;
    g->shape[i][1] = d1;
    g->ndim[i] = d1 > 0 ? 2 : 1;
    if (!g->names[i]) return -2;
    g->n_flat += (size_t)d0 * (size_t)(d1 > 0 ? d1 : 1);
    g->n++;
    return i;
}

/* The weights a model of config c has, in the order of its gradients (and trainable parameters), zeroed. */
static t2_weight_grads *layout_new(const t2_model_config *c, t2_status *err) {
    static const char *kinds[T2_N_KINDS] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                                            "mlp.gate_proj",    "mlp.up_proj",      "mlp.down_proj"};
    int L = c->n_layers, cap = 3 + L * LAYER_SLOTS;
    t2_weight_grads *g = calloc(1, sizeof *g);
    if (g) {
        g->names = calloc((size_t)cap, sizeof *g->names);
        g->shape = calloc((size_t)cap, sizeof *g->shape);
        g->ndim = calloc((size_t)cap, sizeof *g->ndim);
        g->data = calloc((size_t)cap, sizeof *g->data);
        g->layer = malloc((size_t)L * LAYER_SLOTS * sizeof *g->layer);
    }
    int ok = g && g->names && g->shape && g->ndim && g->data && g->layer;
    if (ok) {
        int H = c->hidden_size, F = c->intermediate_size, qd = c->n_heads * c->head_dim, kvd = c->n_kv_heads * c->head_dim;
        /* rows × cols of each kind */
        int rows[T2_N_KINDS] = {qd, kvd, kvd, H, F, F, H}, cols[T2_N_KINDS] = {H, H, H, qd, H, H, F};
        g->embed = add_grad(g, "model.embed_tokens.weight", c->vocab_size, H);
        g->lm_head = c->tie_word_embeddings ? g->embed : add_grad(g, "lm_head.weight", c->vocab_size, H);
        g->final_norm = add_grad(g, "model.norm.weight", H, 0);
        ok = g->embed >= 0 && g->lm_head >= 0 && g->final_norm >= 0;
        char name[128];
        for (int l = 0; ok && l < L; l++) {
            int *slot = g->layer + l * LAYER_SLOTS;
            for (int k = 0; ok && k < T2_N_KINDS; k++) {
                snprintf(name, sizeof name, "model.layers.%d.%s.weight", l, kinds[k]);
                ok = (slot[k] = add_grad(g, name, rows[k], cols[k])) >= 0;
            }
            snprintf(name, sizeof name, "model.layers.%d.input_layernorm.weight", l);
            ok = ok && (slot[SLOT_ATTN_NORM] = add_grad(g, name, H, 0)) >= 0;
            snprintf(name, sizeof name, "model.layers.%d.post_attention_layernorm.weight", l);
            ok = ok && (slot[SLOT_FFN_NORM] = add_grad(g, name, H, 0)) >= 0;
            slot[SLOT_BQ] = slot[SLOT_BK] = slot[SLOT_BV] = -1;
            if (c->attention_bias && ok) {
                static const char *b[3] = {"q", "k", "v"};
                int dims[3] = {qd, kvd, kvd};
                for (int j = 0; ok && j < 3; j++) {
                    snprintf(name, sizeof name, "model.layers.%d.self_attn.%s_proj.bias", l, b[j]);
                    ok = (slot[SLOT_BQ + j] = add_grad(g, name, dims[j], 0)) >= 0;
                }
            }
        }
    }
    if (ok && (ok = (g->flat = calloc(g->n_flat, sizeof *g->flat)) != NULL))
        for (size_t i = 0, off = 0; i < (size_t)g->n; i++) {
            g->data[i] = g->flat + off;
            off += (size_t)g->shape[i][0] * (size_t)(g->ndim[i] == 2 ? g->shape[i][1] : 1);
        }
    if (!ok) {
        t2_weight_grads_free(g);
        *err = t2_set_error(T2_ERR_NOMEM, "weight gradients: out of memory");
        return NULL;
    }
    *err = T2_OK;
    return g;
}

t2_weight_grads *t2_weight_grads_new(const t2_model *m, t2_status *err) { return layout_new(&m->cfg, err); }

/* Matrices N(0, std²) (the output projections o and down N(0, std²/(2·layers)), as GPT-2 scales its residual
 * branches), norm weights 1, biases 0. */
t2_status t2_model_write_init(const t2_model_config *c, const char *path, uint64_t seed, float std) {
    if (!(std > 0) || c->n_layers < 1 || c->hidden_size < 1 || c->vocab_size < 1)
        return t2_set_error(T2_ERR_INVALID_ARG, "%s: need std > 0 and a config with layers, hidden size and vocabulary", path);
    t2_status s;
    t2_weight_grads *g = layout_new(c, &s);
    if (!g) return s;
    t2_rng r;
    t2_rng_seed(&r, seed);
    t2_tensor_info *t = calloc((size_t)g->n, sizeof *t);
    if (!t) s = t2_set_error(T2_ERR_NOMEM, "%s: out of memory", path);
    for (int i = 0; !s && i < g->n; i++) {
        size_t n = (size_t)g->shape[i][0] * (size_t)(g->ndim[i] == 2 ? g->shape[i][1] : 1);
        int is_bias = strstr(g->names[i], ".bias") != NULL;
        if (g->ndim[i] == 2) {
            int out = strstr(g->names[i], ".o_proj.") || strstr(g->names[i], ".down_proj.");
            float sd = out ? std / sqrtf(2.0f * (float)c->n_layers) : std;
            for (size_t j = 0; j < n; j++) g->data[i][j] = sd * (float)t2_rng_normal(&r);
        } else {
            for (size_t j = 0; j < n; j++) g->data[i][j] = is_bias ? 0.0f : 1.0f;
        }
        t[i] = (t2_tensor_info){.name = g->names[i], .dtype = T2_F32, .ndim = g->ndim[i],
                                .shape = {g->shape[i][0], g->shape[i][1]}, .data = g->data[i]};
    }
    char sbuf[32], dbuf[32];
    snprintf(sbuf, sizeof sbuf, "%llu", (unsigned long long)seed);
    snprintf(dbuf, sizeof dbuf, "%g", (double)std);
    const char *meta[] = {"format", "pt", "t2_init_seed", sbuf, "t2_init_std", dbuf, NULL};
    if (!s) s = t2_st_write(path, t, (size_t)g->n, meta);
    free(t);
    t2_weight_grads_free(g);
    return s;
}

/* ---------------- training every weight ---------------- */

/* The matrix of (layer, kind), writable (t2_model_matrix hands out a const view). */
static t2_weight *matrix_of(t2_layer *L, int kind) {
    t2_weight *w[T2_N_KINDS] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->wg, &L->wu, &L->wd};
    return w[kind];
}

/* Copy a matrix into dst as f32 and point the weight at it. */
static void own_matrix(t2_weight *w, float *dst) {
    size_t n = (size_t)w->rows * (size_t)w->cols;
    if (w->dtype == T2_F32) memcpy(dst, w->data, n * sizeof *dst);
    else if (w->dtype == T2_BF16)
        for (size_t i = 0; i < n; i++) dst[i] = t2_bf16_to_f32(((const uint16_t *)w->data)[i]);
    else
        for (size_t i = 0; i < n; i++) dst[i] = t2_f16_to_f32(((const uint16_t *)w->data)[i]);
    w->dtype = T2_F32;
    w->data = dst;
}

static void own_vec(const float **v, float *dst, int64_t n) {
    memcpy(dst, *v, (size_t)n * sizeof *dst);
    *v = dst;
}

t2_status t2_model_make_trainable(t2_model *m) {
    if (m->train_params) return T2_OK;
    t2_status s;
    t2_weight_grads *g = t2_weight_grads_new(m, &s);
    if (!g) return s;
    float *p = malloc(g->n_flat * sizeof *p);
    if (!p) {
        t2_weight_grads_free(g);
        return t2_set_error(T2_ERR_NOMEM, "trainable weights: out of memory (%zu parameters)", g->n_flat);
    }
    /* p is laid out as g->flat is: tensor i at g->data[i] - g->flat */
#define AT(i) (p + (g->data[i] - g->flat))
    own_matrix(&m->embed, AT(g->embed));
    if (m->cfg.tie_word_embeddings) m->lm_head = m->embed;
    else own_matrix(&m->lm_head, AT(g->lm_head));
    own_vec(&m->final_norm, AT(g->final_norm), g->shape[g->final_norm][0]);
    for (int l = 0; l < m->cfg.n_layers; l++) {
        t2_layer *L = &m->layers[l];
        const int *slot = g->layer + l * LAYER_SLOTS;
        for (int k = 0; k < T2_N_KINDS; k++) own_matrix(matrix_of(L, k), AT(slot[k]));
        own_vec(&L->attn_norm, AT(slot[SLOT_ATTN_NORM]), g->shape[slot[SLOT_ATTN_NORM]][0]);
        own_vec(&L->ffn_norm, AT(slot[SLOT_FFN_NORM]), g->shape[slot[SLOT_FFN_NORM]][0]);
        const float **b[3] = {&L->bq, &L->bk, &L->bv};
        for (int j = 0; j < 3; j++)
            if (slot[SLOT_BQ + j] >= 0) own_vec(b[j], AT(slot[SLOT_BQ + j]), g->shape[slot[SLOT_BQ + j]][0]);
    }
#undef AT
    m->train_params = p;
    m->train_layout = g;
    m->fingerprint[0] = 0;
    return T2_OK;
}

float *t2_model_trainable_params(t2_model *m, size_t *n) {
    *n = m->train_params ? m->train_layout->n_flat : 0;
    return m->train_params;
}

t2_status t2_model_save_weights(t2_model *m, const char *path, t2_dtype dtype, const char *const *meta) {
    if (dtype != T2_F32 && dtype != T2_BF16) return t2_set_error(T2_ERR_INVALID_ARG, "%s: save as F32 or BF16", path);
    t2_status s = t2_model_make_trainable(m);
    if (s) return s;
    const t2_weight_grads *g = m->train_layout;
    t2_tensor_info *t = calloc((size_t)g->n, sizeof *t);
    uint16_t *half = dtype == T2_BF16 ? malloc(g->n_flat * sizeof *half) : NULL;
    if (!t || (dtype == T2_BF16 && !half)) {
        free(t);
        return t2_set_error(T2_ERR_NOMEM, "%s: out of memory", path);
    }
    for (size_t i = 0; half && i < g->n_flat; i++) half[i] = t2_f32_to_bf16(m->train_params[i]);
    for (int i = 0; i < g->n; i++) {
        size_t off = (size_t)(g->data[i] - g->flat);
        t[i] = (t2_tensor_info){.name = g->names[i], .dtype = dtype, .ndim = g->ndim[i],
                                .shape = {g->shape[i][0], g->shape[i][1]}};
        t[i].data = half ? (const void *)(half + off) : (const void *)(m->train_params + off);
    }
    s = t2_st_write(path, t, (size_t)g->n, meta);
    free(half);
    free(t);
    return s;
}

/* ---------------- the training forward/backward ---------------- */

typedef struct layer_acts {
    float *x_in, *xn1, *r1, *q, *k, *v, *att, *x_mid, *xn2, *r2, *g, *u, *act;
    float *t[T2_N_KINDS];     /* Vᵀx of adapted matrices, [T × r] */
    float *xa[T2_N_KINDS];    /* σ·x·Aᵀ of the matrices a LoRA adapts, [T × rank] */
} layer_acts;

typedef struct tr {
    t2_model *m;
    const t2_grad_request *rq;
    const t2_svd *svd;
    const t2_lora *lora;      /* rq->lora */
    t2_mm mm;
    int T, H, F, qd, kvd, hd;
    float *cs, *sn;           /* rope tables [T × hd/2] */
    layer_acts *la;
    float *xf, *rf;           /* final normed rows [T × H], their 1/rms [T] */
    float *tmp, *tmp2;       /* [T × max_k] scratch */
    float *dcs;               /* [Σ ranks] ∂J/∂c, accumulated */
    size_t *c_off;            /* [n matrices] offset of matrix i in dcs */
    float *block;             /* every buffer above, one allocation */
} tr;

/* c of matrix mi: the adapter's, or s (z = 1). */
static const float *c_of(const tr *t, int mi) {
    return t->rq->adapter ? t2__adapter_c(t->rq->adapter, mi) : t2_svd_values(t->svd, mi);
}

static int adapted(const tr *t, int layer, int kind) { return t->svd ? t2__svd_index(t->svd, layer, kind) : -1; }
static int lora_adapted(const tr *t, int layer, int kind) { return t->lora ? t2__lora_index(t->lora, layer, kind) : -1; }

/* y[T × rows] += σ·(x·Aᵀ)·Bᵀ for LoRA matrix li, keeping xa = σ·x·Aᵀ [T × rank]. */
static void lora_forward(tr *t, int li, const float *x, float *y, float *xa) {
    const t2_weight *A = t2__lora_A(t->lora, li), *B = t2__lora_B(t->lora, li);
    size_t T = (size_t)t->T, rk = (size_t)A->rows, N = (size_t)B->rows;
    float sg = t2__lora_scale(t->lora);
    t2_matmul_forward(&t->mm, xa, rk, x, (size_t)A->cols, A, NULL, t->T);
    for (size_t i = 0; i < T * rk; i++) xa[i] *= sg;
    t2_matmul_forward(&t->mm, t->tmp, N, xa, rk, B, NULL, t->T);
    for (size_t i = 0; i < T * N; i++) y[i] += t->tmp[i];
}

/* The LoRA part of lin_back: dx += σ·(dy·B)·A; into dlora (if asked) dA += σ·(dy·B)ᵀ·x, dB += dyᵀ·xa. */
static void lora_back(tr *t, int li, const float *dy, const float *x, const float *xa, float *dx) {
    const t2_weight *A = t2__lora_A(t->lora, li), *B = t2__lora_B(t->lora, li);
    size_t T = (size_t)t->T, rk = (size_t)A->rows, K = (size_t)A->cols, N = (size_t)B->rows;
    float sg = t2__lora_scale(t->lora), *u = t->tmp;
    memset(u, 0, T * rk * sizeof *u);
    t2_matmul_backward_input(&t->mm, u, rk, dy, N, B, t->T);
    for (size_t i = 0; i < T * rk; i++) u[i] *= sg;
    t2_matmul_backward_input(&t->mm, dx, K, u, rk, A, t->T);
    if (t->rq->dlora) {
        float *dA = t->rq->dlora + t2__lora_offset(t->lora, li), *dB = dA + rk * K;
        t2_matmul_backward_weight(&t->mm, dA, u, rk, x, K, A, t->T);
        t2_matmul_backward_weight(&t->mm, dB, dy, N, xa, rk, B, t->T);
    }
}

/* y[T × rows] = lin(x[T × cols]) for (layer, kind), saving Vᵀx for adapted matrices. */
static void lin(tr *t, int layer, int kind, const float *x, float *y, const float *bias) {
    const t2_weight *w = t2_model_matrix(t->m, layer, kind, NULL, 0);
    int mi = adapted(t, layer, kind), li = lora_adapted(t, layer, kind), T = t->T;
    if (mi < 0) {
        t2_matmul_forward(&t->mm, y, (size_t)w->rows, x, (size_t)w->cols, w, bias, T);
        if (li >= 0) lora_forward(t, li, x, y, t->la[layer].xa[kind]);
        return;
    }
    const t2_weight *U = t2__svd_U(t->svd, mi), *Vt = t2__svd_Vt(t->svd, mi);
    int r = Vt->rows;
    float *tv = t->la[layer].t[kind];
    const float *c = c_of(t, mi);
    t2_matmul_forward(&t->mm, tv, (size_t)r, x, (size_t)w->cols, Vt, NULL, T);
    for (int i = 0; i < T; i++)
        for (int j = 0; j < r; j++) t->tmp[(size_t)i * r + j] = tv[(size_t)i * r + j] * c[j];
    t2_matmul_forward(&t->mm, y, (size_t)w->rows, t->tmp, (size_t)r, U, bias, T);
}

/* dx[T × cols] += backward of lin, given dy[T × rows] and its input x. */
static void lin_back(tr *t, int layer, int kind, const float *dy, const float *x, float *dx, int bias_slot) {
    const t2_weight *w = t2_model_matrix(t->m, layer, kind, NULL, 0);
    int mi = adapted(t, layer, kind), li = lora_adapted(t, layer, kind), T = t->T;
    t2_weight_grads *g = t->rq->dw;
    if (g && bias_slot >= 0) {
        int bi = g->layer[layer * LAYER_SLOTS + bias_slot];
        if (bi >= 0)
            for (int i = 0; i < T; i++)
                for (int j = 0; j < w->rows; j++) g->data[bi][j] += dy[(size_t)i * w->rows + j];
    }
    if (mi < 0) {
        t2_matmul_backward_input(&t->mm, dx, (size_t)w->cols, dy, (size_t)w->rows, w, T);
        if (g) t2_matmul_backward_weight(&t->mm, g->data[g->layer[layer * LAYER_SLOTS + kind]], dy, (size_t)w->rows, x,
                                         (size_t)w->cols, w, T);
        if (li >= 0) lora_back(t, li, dy, x, t->la[layer].xa[kind], dx);
        return;
    }
    const t2_weight *U = t2__svd_U(t->svd, mi), *Vt = t2__svd_Vt(t->svd, mi);
    int r = Vt->rows;
    const float *c = c_of(t, mi), *tv = t->la[layer].t[kind];
    float *ds = t->tmp, *dc = t->dcs + t->c_off[mi];
    memset(ds, 0, (size_t)T * r * sizeof *ds);
    t2_matmul_backward_input(&t->mm, ds, (size_t)r, dy, (size_t)w->rows, U, T);
    for (int i = 0; i < T; i++)
        for (int j = 0; j < r; j++) {
            dc[j] += ds[(size_t)i * r + j] * tv[(size_t)i * r + j];
            ds[(size_t)i * r + j] *= c[j];
        }
    t2_matmul_backward_input(&t->mm, dx, (size_t)w->cols, ds, (size_t)r, Vt, T);
}

/* dx += backward of y = w ⊙ x·ρ for one row; dw (if any) += dy ⊙ xρ. */
static void rms_back(const float *x, float rho, const float *w, const float *dy, int n, float *dx, float *dw) {
    double dot = 0;
    for (int i = 0; i < n; i++) dot += (double)w[i] * dy[i] * x[i];
    float k = (float)(dot * rho * rho * rho / n);
    for (int i = 0; i < n; i++) {
        dx[i] += rho * w[i] * dy[i] - k * x[i];
        if (dw) dw[i] += dy[i] * x[i] * rho;
    }
}

/* The inverse rotation of t2__rope. */
static void rope_back(float *v, int n_heads, int hd, const float *cs, const float *sn) {
    int half = hd / 2;
    for (int h = 0; h < n_heads; h++) {
        float *x = v + (size_t)h * hd;
        for (int i = 0; i < half; i++) {
            float a = x[i], b = x[i + half];
            x[i] = a * cs[i] + b * sn[i];
            x[i + half] = b * cs[i] - a * sn[i];
        }
    }
}

static int window_lo(const t2_model_config *c, int pos) {
    return c->sliding_window > 0 && pos - c->sliding_window + 1 > 0 ? pos - c->sliding_window + 1 : 0;
}

/* Softmax probabilities of query row t of head h into p[lo..t]; returns lo. */
static int probs(const tr *t, const layer_acts *a, int h, int row, float *p) {
    const t2_model_config *c = &t->m->cfg;
    int g = h / (c->n_heads / c->n_kv_heads), lo = window_lo(c, row), hd = t->hd;
    float scale = 1.0f / sqrtf((float)hd), mx = -INFINITY, sum = 0;
    const float *q = a->q + (size_t)row * t->qd + (size_t)h * hd;
    for (int j = lo; j <= row; j++) {
        p[j] = t->m->kern->dot(q, a->k + (size_t)j * t->kvd + (size_t)g * hd, hd) * scale;
        if (p[j] > mx) mx = p[j];
    }
    for (int j = lo; j <= row; j++) sum += (p[j] = expf(p[j] - mx));
    for (int j = lo; j <= row; j++) p[j] /= sum;
    return lo;
}

/* Attention forward and backward run over the pool, one task per KV head: a task owns the query heads
 * of its group and the group's slices of dk and dv, so no two tasks write the same memory. */
typedef struct att_job {
    tr *t;
    layer_acts *a;
    const float *datt;
    float *dq, *dk, *dv;
    float *scratch;           /* [threads × 2T] probabilities and their gradients */
} att_job;

static void attention_task(void *arg, int g, int thread) {
    att_job *j = arg;
    tr *t = j->t;
    const t2_model_config *c = &t->m->cfg;
    int hd = t->hd, group = c->n_heads / c->n_kv_heads;
    float *p = j->scratch + (size_t)thread * 2 * (size_t)t->T;
    for (int row = 0; row < t->T; row++)
        for (int h = g * group; h < (g + 1) * group; h++) {
            int lo = probs(t, j->a, h, row, p);
            float *o = j->a->att + (size_t)row * t->qd + (size_t)h * hd;
            memset(o, 0, (size_t)hd * sizeof *o);
            for (int k = lo; k <= row; k++) t->m->kern->axpy(p[k], j->a->v + (size_t)k * t->kvd + (size_t)g * hd, o, hd);
        }
}

static void attention(tr *t, layer_acts *a, float *scratch) {
    att_job j = {.t = t, .a = a, .scratch = scratch};
    t2_pool_run(t->m->pool, t->m->cfg.n_kv_heads, attention_task, &j);
}

/* Given d(att) [T × qd], accumulate dq [T × qd], dk, dv [T × kvd] (before the rope backward), for the
 * query heads of KV head g. */
static void attention_back_task(void *arg, int g, int thread) {
    att_job *j = arg;
    tr *t = j->t;
    const layer_acts *a = j->a;
    const float *datt = j->datt;
    float *dq = j->dq, *dk = j->dk, *dv = j->dv;
    float *p = j->scratch + (size_t)thread * 2 * (size_t)t->T, *dp = p + t->T;
    const t2_model_config *c = &t->m->cfg;
    int hd = t->hd, group = c->n_heads / c->n_kv_heads;
    float scale = 1.0f / sqrtf((float)hd);
    const t2_kernels *K = t->m->kern;
    for (int row = 0; row < t->T; row++)
        for (int h = g * group; h < (g + 1) * group; h++) {
            int lo = probs(t, a, h, row, p);
            const float *dout = datt + (size_t)row * t->qd + (size_t)h * hd;
            double s = 0;
            for (int j = lo; j <= row; j++) {
                dp[j] = K->dot(dout, a->v + (size_t)j * t->kvd + (size_t)g * hd, hd);
                s += (double)p[j] * dp[j];
                K->axpy(p[j], dout, dv + (size_t)j * t->kvd + (size_t)g * hd, hd);
            }
            const float *q = a->q + (size_t)row * t->qd + (size_t)h * hd;
            float *dqh = dq + (size_t)row * t->qd + (size_t)h * hd;
            for (int j = lo; j <= row; j++) {
                float ds = p[j] * (dp[j] - (float)s) * scale;
                K->axpy(ds, a->k + (size_t)j * t->kvd + (size_t)g * hd, dqh, hd);
                K->axpy(ds, q, dk + (size_t)j * t->kvd + (size_t)g * hd, hd);
            }
        }
}

static void attention_back(tr *t, layer_acts *a, const float *datt, float *dq, float *dk, float *dv, float *scratch) {
    att_job j = {.t = t, .a = a, .datt = datt, .dq = dq, .dk = dk, .dv = dv, .scratch = scratch};
    t2_pool_run(t->m->pool, t->m->cfg.n_kv_heads, attention_back_task, &j);
}

static float sigmoidf(float x) { return 1.0f / (1.0f + expf(-x)); }

static t2_status alloc_tr(tr *t) {
    const t2_model_config *c = &t->m->cfg;
    int T = t->T, L = c->n_layers, nm = t->svd ? t2_svd_count(t->svd) : 0;
    size_t H = (size_t)t->H, F = (size_t)t->F, qd = (size_t)t->qd, kvd = (size_t)t->kvd;
    size_t maxk = H > F ? H : F;
    if (maxk < qd) maxk = qd;
    size_t rsum = 0;
    t->c_off = calloc((size_t)(nm ? nm : 1), sizeof *t->c_off);
    if (!t->c_off) return t2_set_error(T2_ERR_NOMEM, "logprob-grad: out of memory");
    for (int i = 0; i < nm; i++) t->c_off[i] = rsum, rsum += (size_t)t2_svd_rank(t->svd, i);
    size_t per_layer = (size_t)T * (4 * H + 2 + 2 * qd + 2 * kvd + 3 * F), tsum = 0;
    for (int l = 0; l < L; l++)
        for (int k = 0; k < T2_N_KINDS; k++) {
            int mi = adapted(t, l, k);
            if (mi >= 0) tsum += (size_t)T * (size_t)t2_svd_rank(t->svd, mi);
            if (lora_adapted(t, l, k) >= 0) tsum += (size_t)T * (size_t)t2_lora_rank(t->lora);
        }
    size_t total = (size_t)L * per_layer + tsum + (size_t)T * (H + 1) + 2 * (size_t)T * maxk + rsum +
                   (size_t)T * (size_t)(t->hd / 2) * 2;
    t->block = calloc(total, sizeof(float));
    t->la = calloc((size_t)L, sizeof *t->la);
    t->mm = (t2_mm){.k = t->m->kern, .pool = t->m->pool, .panel_elems = maxk * 16 > (1u << 20) ? maxk * 16 : (1u << 20)};
    t->mm.panel = malloc(t->mm.panel_elems * sizeof(float));
    t->mm.xbf_elems = (size_t)T * maxk;
    t->mm.xbf = t->m->kern->bf16_split_x ? malloc(3 * t->mm.xbf_elems * sizeof(uint16_t)) : NULL;
    if (!t->block || !t->la || !t->mm.panel || (t->m->kern->bf16_split_x && !t->mm.xbf))
        return t2_set_error(T2_ERR_NOMEM, "logprob-grad: out of memory for the activations of %d tokens", T);
    float *p = t->block;
#define TAKE(n) (p += (n), p - (n))
    for (int l = 0; l < L; l++) {
        layer_acts *a = &t->la[l];
        a->x_in = TAKE(T * H), a->xn1 = TAKE(T * H), a->r1 = TAKE((size_t)T), a->q = TAKE(T * qd);
        a->k = TAKE(T * kvd), a->v = TAKE(T * kvd), a->att = TAKE(T * qd), a->x_mid = TAKE(T * H);
        a->xn2 = TAKE(T * H), a->r2 = TAKE((size_t)T), a->g = TAKE(T * F), a->u = TAKE(T * F), a->act = TAKE(T * F);
        for (int k = 0; k < T2_N_KINDS; k++) {
            int mi = adapted(t, l, k);
            a->t[k] = mi >= 0 ? TAKE((size_t)T * (size_t)t2_svd_rank(t->svd, mi)) : NULL;
            a->xa[k] = lora_adapted(t, l, k) >= 0 ? TAKE((size_t)T * (size_t)t2_lora_rank(t->lora)) : NULL;
        }
    }
    t->xf = TAKE(T * H), t->rf = TAKE((size_t)T), t->tmp = TAKE(T * maxk), t->tmp2 = TAKE(T * maxk), t->dcs = TAKE(rsum);
    t->cs = TAKE((size_t)T * (size_t)(t->hd / 2)), t->sn = TAKE((size_t)T * (size_t)(t->hd / 2));
#undef TAKE
    return T2_OK;
}

static void free_tr(tr *t) {
    free(t->block);
    free(t->la);
    free(t->c_off);
    free(t->mm.panel);
    free(t->mm.xbf);
}

/* Logits of the base model at the completion positions, by the inference forward. */
static t2_status base_logits(t2_model *m, const t2_grad_request *rq, float *out) {
    t2_ctx_params cp = {.n_ctx = rq->n, .n_seq = 1, .n_batch = rq->n};
    t2_status st;
    t2_ctx *ctx = t2_ctx_new(m, &cp, &st);
    if (!ctx) return st;
    int32_t *pos = malloc((size_t)rq->n * sizeof *pos), *seq = calloc((size_t)rq->n, sizeof *seq);
    uint8_t *want = calloc((size_t)rq->n, 1);
    if (!pos || !seq || !want) st = t2_set_error(T2_ERR_NOMEM, "logprob-grad: out of memory");
    for (int i = 0; !st && i < rq->n; i++) pos[i] = i, want[i] = i >= rq->k0 - 1 && i < rq->n - 1;
    t2_batch b = {.n = rq->n, .token = rq->ids, .pos = pos, .seq = seq, .want = want};
    if (!st) st = t2_ctx_decode(ctx, &b, out);
    free(pos), free(seq), free(want);
    t2_ctx_free(ctx);
    return st;
}

static t2_status check_request(const t2_model *m, const t2_grad_request *rq) {
    if (!rq || !rq->ids || rq->n < 2 || rq->k0 < 1 || rq->k0 >= rq->n)
        return t2_set_error(T2_ERR_INVALID_ARG, "logprob-grad: need ids with 1 <= completion start < n (n = %d, start = %d)",
                            rq ? rq->n : 0, rq ? rq->k0 : 0);
    for (int i = 0; i < rq->n; i++)
        if (rq->ids[i] < 0 || rq->ids[i] >= m->cfg.vocab_size)
            return t2_set_error(T2_ERR_RANGE, "logprob-grad: token id %d at %d is outside the vocabulary", rq->ids[i], i);
    if (rq->adapter && t2_adapter_mode(rq->adapter) == T2_APPLY_LORA)
        return t2_set_error(T2_ERR_INVALID_ARG, "logprob-grad: a LoRA goes in the request as lora, not as an adapter");
    if (rq->lora && (rq->adapter || rq->dz || rq->dw))
        return t2_set_error(T2_ERR_INVALID_ARG, "logprob-grad: a LoRA request takes no SVF adapter, dz or weight gradients");
    if (rq->lora && t2__lora_model(rq->lora) != m)
        return t2_set_error(T2_ERR_INVALID_ARG, "logprob-grad: the LoRA was made for another model");
    if (rq->dlora && !rq->lora) return t2_set_error(T2_ERR_INVALID_ARG, "logprob-grad: dlora needs the LoRA (lora)");
    if (rq->adapter && !rq->svd) return t2_set_error(T2_ERR_INVALID_ARG, "logprob-grad: an adapter needs its SVD cache");
    if (rq->adapter && t2__adapter_svd(rq->adapter) != rq->svd)
        return t2_set_error(T2_ERR_INVALID_ARG, "logprob-grad: the adapter belongs to another SVD cache");
    if (rq->dz && !rq->svd) return t2_set_error(T2_ERR_INVALID_ARG, "logprob-grad: dz needs the SVD cache");
    if (rq->dw && (rq->adapter || rq->dz))
        return t2_set_error(T2_ERR_INVALID_ARG, "logprob-grad: weight gradients are for the base model, without z");
    if (!(rq->kl_coef >= 0) || (rq->kl_coef > 0 && !rq->adapter && !rq->lora))
        return t2_set_error(T2_ERR_INVALID_ARG, "logprob-grad: the KL coefficient must be >= 0 and needs an adapter or a LoRA");
    if (rq->svd && t2__svd_model(rq->svd) != m) return t2_set_error(T2_ERR_INVALID_ARG, "logprob-grad: the SVD cache belongs to another model");
    return T2_OK;
}

t2_status t2_logprob_grad(t2_model *m, const t2_grad_request *rq, double *logprob) {
    t2_status st = check_request(m, rq);
    if (st) return st;
    const t2_model_config *c = &m->cfg;
    /* the factored path only where z matters; weight gradients need the plain matrices */
    tr t = {.m = m, .rq = rq, .svd = rq->dz || rq->adapter ? rq->svd : NULL, .lora = rq->lora, .T = rq->n,
            .H = c->hidden_size, .F = c->intermediate_size, .qd = c->n_heads * c->head_dim,
            .kvd = c->n_kv_heads * c->head_dim, .hd = c->head_dim};
    if ((st = alloc_tr(&t))) {
        free_tr(&t);
        return st;
    }
    int T = t.T, H = t.H, F = t.F, L = c->n_layers, V = c->vocab_size, half = t.hd / 2;
    int n_out = T - rq->k0;     /* rows t = k0-1 .. T-2 predict ids[t+1] */
    float w = rq->weight, eps = c->rms_norm_eps;
    t2_weight_grads *g = rq->dw;
    float *x = malloc((size_t)T * H * sizeof *x), *dx = calloc((size_t)T * H, sizeof *dx);
    float *logits = malloc((size_t)n_out * V * sizeof *logits);
    float *scratch = malloc((size_t)m->n_threads * 2 * (size_t)T * sizeof *scratch);
    float *dq = malloc((size_t)T * t.qd * sizeof *dq), *dk = malloc((size_t)T * t.kvd * sizeof *dk);
    float *dv = malloc((size_t)T * t.kvd * sizeof *dv), *da = malloc((size_t)T * (t.qd > F ? t.qd : F) * sizeof *da);
    float *dg = malloc((size_t)T * F * sizeof *dg), *du = malloc((size_t)T * F * sizeof *du);
    if (!x || !dx || !logits || !scratch || !dq || !dk || !dv || !da || !dg || !du) {
        st = t2_set_error(T2_ERR_NOMEM, "logprob-grad: out of memory");
        goto out;
    }
    t2__rope_tables(c, T, t.cs, t.sn);

    /* ---- forward ---- */
    for (int i = 0; i < T; i++) t2__embed_row(m, rq->ids[i], x + (size_t)i * H);
    for (int l = 0; l < L; l++) {
        const t2_layer *Ly = &m->layers[l];
        layer_acts *a = &t.la[l];
        memcpy(a->x_in, x, (size_t)T * H * sizeof *x);
        for (int i = 0; i < T; i++) a->r1[i] = t2__rmsnorm(a->xn1 + (size_t)i * H, x + (size_t)i * H, Ly->attn_norm, H, eps);
        lin(&t, l, T2_KIND_Q, a->xn1, a->q, Ly->bq);
        lin(&t, l, T2_KIND_K, a->xn1, a->k, Ly->bk);
        lin(&t, l, T2_KIND_V, a->xn1, a->v, Ly->bv);
        for (int i = 0; i < T; i++) {
            t2__rope(a->q + (size_t)i * t.qd, c->n_heads, t.hd, t.cs + (size_t)i * half, t.sn + (size_t)i * half);
            t2__rope(a->k + (size_t)i * t.kvd, c->n_kv_heads, t.hd, t.cs + (size_t)i * half, t.sn + (size_t)i * half);
        }
        attention(&t, a, scratch);
        lin(&t, l, T2_KIND_O, a->att, t.tmp2, NULL);
        for (size_t i = 0; i < (size_t)T * H; i++) x[i] += t.tmp2[i];
        memcpy(a->x_mid, x, (size_t)T * H * sizeof *x);
        for (int i = 0; i < T; i++) a->r2[i] = t2__rmsnorm(a->xn2 + (size_t)i * H, x + (size_t)i * H, Ly->ffn_norm, H, eps);
        lin(&t, l, T2_KIND_GATE, a->xn2, a->g, NULL);
        lin(&t, l, T2_KIND_UP, a->xn2, a->u, NULL);
        for (size_t i = 0; i < (size_t)T * F; i++) a->act[i] = a->g[i] * sigmoidf(a->g[i]) * a->u[i];
        lin(&t, l, T2_KIND_DOWN, a->act, t.tmp2, NULL);
        for (size_t i = 0; i < (size_t)T * H; i++) x[i] += t.tmp2[i];
    }
    for (int o = 0; o < n_out; o++) {
        int row = rq->k0 - 1 + o;
        t.rf[o] = t2__rmsnorm(t.xf + (size_t)o * H, x + (size_t)row * H, m->final_norm, H, eps);
    }
    t2_matmul_forward(&t.mm, logits, (size_t)V, t.xf, (size_t)H, &m->lm_head, NULL, n_out);

    /* ---- the base model's logits, for the KL term ---- */
    float *base = NULL;
    if ((rq->adapter || rq->lora) && (rq->kl_coef > 0 || rq->kl)) {
        if (!(base = malloc((size_t)n_out * V * sizeof *base))) {
            st = t2_set_error(T2_ERR_NOMEM, "logprob-grad: out of memory");
            goto out;
        }
        if ((st = base_logits(m, rq, base))) {
            free(base);
            goto out;
        }
    }

    /* ---- J, KL and ∂(wJ − λKL)/∂logits (in place: logits becomes dlogits) ---- */
    double J = 0, KL = 0;
    float lam = rq->kl_coef;
    for (int o = 0; o < n_out; o++) {
        float *lg = logits + (size_t)o * V, mx = lg[0];
        int y = rq->ids[rq->k0 + o];
        for (int v = 1; v < V; v++) mx = lg[v] > mx ? lg[v] : mx;
        double sum = 0;
        for (int v = 0; v < V; v++) sum += exp((double)lg[v] - mx);
        double lse = mx + log(sum);
        J += (double)lg[y] - lse;
        if (base) {
            /* KL_t = Σ p (log p − log q);  ∂KL_t/∂logit_v = p_v (log p_v − log q_v − KL_t) */
            const float *bl = base + (size_t)o * V;
            float bmx = bl[0];
            for (int v = 1; v < V; v++) bmx = bl[v] > bmx ? bl[v] : bmx;
            double bsum = 0, kl = 0;
            for (int v = 0; v < V; v++) bsum += exp((double)bl[v] - bmx);
            double blse = bmx + log(bsum);
            for (int v = 0; v < V; v++) {
                double lp = lg[v] - lse, lq = bl[v] - blse;
                kl += exp(lp) * (lp - lq);
            }
            KL += kl;
            for (int v = 0; v < V; v++) {
                double lp = lg[v] - lse, lq = bl[v] - blse, pv = exp(lp);
                lg[v] = (float)(-w * pv - lam * pv * (lp - lq - kl));
            }
        } else {
            for (int v = 0; v < V; v++) lg[v] = -w * (float)(exp((double)lg[v] - mx) / sum);
        }
        lg[y] += w;
    }
    free(base);
    *logprob = J;
    if (rq->kl) *rq->kl = KL;

    /* ---- backward ---- */
    float *dxf = t.tmp2;
    memset(dxf, 0, (size_t)n_out * H * sizeof *dxf);
    t2_matmul_backward_input(&t.mm, dxf, (size_t)H, logits, (size_t)V, &m->lm_head, n_out);
    if (g) t2_matmul_backward_weight(&t.mm, g->data[g->lm_head], logits, (size_t)V, t.xf, (size_t)H, &m->lm_head, n_out);
    for (int o = 0; o < n_out; o++) {
        int row = rq->k0 - 1 + o;
        rms_back(x + (size_t)row * H, t.rf[o], m->final_norm, dxf + (size_t)o * H, H, dx + (size_t)row * H,
                 g ? g->data[g->final_norm] : NULL);
    }
    for (int l = L - 1; l >= 0; l--) {
        const t2_layer *Ly = &m->layers[l];
        layer_acts *a = &t.la[l];
        int *slot = g ? g->layer + l * LAYER_SLOTS : NULL;
        /* MLP: dx (at the layer output) flows into the down projection and the residual */
        memset(da, 0, (size_t)T * F * sizeof *da);
        lin_back(&t, l, T2_KIND_DOWN, dx, a->act, da, -1);
        for (size_t i = 0; i < (size_t)T * F; i++) {
            float s = sigmoidf(a->g[i]), si = a->g[i] * s;
            dg[i] = da[i] * a->u[i] * s * (1.0f + a->g[i] * (1.0f - s));
            du[i] = da[i] * si;
        }
        float *dxn = t.tmp2;
        memset(dxn, 0, (size_t)T * H * sizeof *dxn);
        lin_back(&t, l, T2_KIND_GATE, dg, a->xn2, dxn, -1);
        lin_back(&t, l, T2_KIND_UP, du, a->xn2, dxn, -1);
        for (int i = 0; i < T; i++)
            rms_back(a->x_mid + (size_t)i * H, a->r2[i], Ly->ffn_norm, dxn + (size_t)i * H, H, dx + (size_t)i * H,
                     g ? g->data[slot[SLOT_FFN_NORM]] : NULL);
        /* attention */
        memset(da, 0, (size_t)T * t.qd * sizeof *da);
        lin_back(&t, l, T2_KIND_O, dx, a->att, da, -1);
        memset(dq, 0, (size_t)T * t.qd * sizeof *dq);
        memset(dk, 0, (size_t)T * t.kvd * sizeof *dk);
        memset(dv, 0, (size_t)T * t.kvd * sizeof *dv);
        attention_back(&t, a, da, dq, dk, dv, scratch);
        for (int i = 0; i < T; i++) {
            rope_back(dq + (size_t)i * t.qd, c->n_heads, t.hd, t.cs + (size_t)i * half, t.sn + (size_t)i * half);
            rope_back(dk + (size_t)i * t.kvd, c->n_kv_heads, t.hd, t.cs + (size_t)i * half, t.sn + (size_t)i * half);
        }
        memset(dxn, 0, (size_t)T * H * sizeof *dxn);
        lin_back(&t, l, T2_KIND_Q, dq, a->xn1, dxn, SLOT_BQ);
        lin_back(&t, l, T2_KIND_K, dk, a->xn1, dxn, SLOT_BK);
        lin_back(&t, l, T2_KIND_V, dv, a->xn1, dxn, SLOT_BV);
        for (int i = 0; i < T; i++)
            rms_back(a->x_in + (size_t)i * H, a->r1[i], Ly->attn_norm, dxn + (size_t)i * H, H, dx + (size_t)i * H,
                     g ? g->data[slot[SLOT_ATTN_NORM]] : NULL);
    }
    if (g)
        for (int i = 0; i < T; i++) {
            float *de = g->data[g->embed] + (size_t)rq->ids[i] * H;
            for (int j = 0; j < H; j++) de[j] += dx[(size_t)i * H + j];
        }

    /* ---- ∂J/∂z from ∂J/∂c through the normalisation ---- */
    if (rq->dz) {
        for (int mi = 0; mi < t2_svd_count(t.svd); mi++) {
            int r = t2_svd_rank(t.svd, mi);
            const float *s = t2_svd_values(t.svd, mi), *z = rq->adapter ? t2__adapter_z(rq->adapter, mi) : NULL;
            const float *dc = t.dcs + t.c_off[mi];
            double S = 0, sum_s = 0, acc = 0;
            for (int j = 0; j < r; j++) {
                double zj = z ? z[j] : 1.0;
                S += s[j] * zj;
                sum_s += s[j];
            }
            double N = sum_s / S;
            for (int j = 0; j < r; j++) acc += (double)dc[j] * s[j] * (z ? z[j] : 1.0);
            float *out = rq->dz + t.c_off[mi];
            for (int k = 0; k < r; k++) out[k] += (float)(N * s[k] * dc[k] - N * s[k] / S * acc);
        }
    }
out:
    free(x), free(dx), free(logits), free(scratch), free(dq), free(dk), free(dv), free(da), free(dg), free(du);
    free_tr(&t);
    return st;
}
