/* Loading: config.json, the safetensors set, and a check of every tensor's presence, dtype and
 * shape against the config before anything runs. Matrices stay in the mapping in their stored
 * dtype; the small vectors (norm weights, biases) are widened once into one f32 block. */
#include <t2/model.h>
#include <t2/error.h>

#include <t2/train.h>

#include "model_impl.h"

#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

t2_model_params t2_model_default_params(void) { return (t2_model_params){.path = NULL, .n_threads = 0}; }

static int is_float(t2_dtype t) { return t == T2_F32 || t == T2_BF16 || t == T2_F16; }

static void shape_str(const t2_tensor_info *t, char *buf, size_t cap) {
    size_t o = (size_t)snprintf(buf, cap, "[");
    for (int d = 0; d < t->ndim && o < cap; d++) o += (size_t)snprintf(buf + o, cap - o, d ? ",%lld" : "%lld", (long long)t->shape[d]);
    if (o < cap) snprintf(buf + o, cap - o, "]");
}

/* Find a float tensor of exactly [d0] (d1 < 0) or [d0, d1]. */
static t2_status expect(const t2_model *m, const char *name, int64_t d0, int64_t d1, const t2_tensor_info **out) {
    const t2_tensor_info *t = t2_st_find(m->st, name);
    if (!t) return t2_set_error(T2_ERR_NOT_FOUND, "tensor \"%s\" is missing", name);
    if (!is_float(t->dtype))
        return t2_set_error(T2_ERR_SHAPE, "tensor \"%s\" has dtype %s; F32, BF16 or F16 expected", name, t2_dtype_name(t->dtype));
    int ok = d1 < 0 ? t->ndim == 1 && t->shape[0] == d0 : t->ndim == 2 && t->shape[0] == d0 && t->shape[1] == d1;
    if (!ok) {
        char got[128];
        shape_str(t, got, sizeof got);
        if (d1 < 0) return t2_set_error(T2_ERR_SHAPE, "tensor \"%s\" has shape %s, expected [%lld]", name, got, (long long)d0);
        return t2_set_error(T2_ERR_SHAPE, "tensor \"%s\" has shape %s, expected [%lld,%lld]", name, got, (long long)d0,
                            (long long)d1);
    }
    *out = t;
    return T2_OK;
}

static t2_status get_matrix(t2_model *m, const char *name, int rows, int cols, t2_weight *w) {
    const t2_tensor_info *t;
    t2_status s = expect(m, name, rows, cols, &t);
    if (s) return s;
    *w = (t2_weight){.dtype = t->dtype, .rows = rows, .cols = cols, .data = t->data};
    m->n_params += (int64_t)rows * cols;
    return T2_OK;
}

/* Widen a vector into *cursor (advancing it). */
static t2_status get_vector(t2_model *m, const char *name, int n, float **cursor, const float **out) {
    const t2_tensor_info *t;
    t2_status s = expect(m, name, n, -1, &t);
    if (s) return s;
    float *dst = *cursor;
    for (int i = 0; i < n; i++) {
        if (t->dtype == T2_F32) memcpy(&dst[i], (const char *)t->data + 4 * (size_t)i, 4);
        else {
            uint16_t h;
            memcpy(&h, (const char *)t->data + 2 * (size_t)i, 2);
            dst[i] = t->dtype == T2_BF16 ? t2_bf16_to_f32(h) : t2_f16_to_f32(h);
        }
    }
    *cursor += n;
    *out = dst;
    m->n_params += n;
    return T2_OK;
}

static t2_status load_weights(t2_model *m) {
    const t2_model_config *c = &m->cfg;
    int H = c->hidden_size, F = c->intermediate_size, V = c->vocab_size;
    int q = c->n_heads * c->head_dim, kv = c->n_kv_heads * c->head_dim;
    size_t nvec = (size_t)H + (size_t)c->n_layers * (2 * (size_t)H + (c->attention_bias ? (size_t)q + 2 * (size_t)kv : 0));
    m->vecs = malloc(nvec * sizeof *m->vecs);
    m->layers = calloc((size_t)c->n_layers, sizeof *m->layers);
    if (!m->vecs || !m->layers) return t2_set_error(T2_ERR_NOMEM, "model: out of memory");
    float *cur = m->vecs;
    t2_status s;
    if ((s = get_matrix(m, "model.embed_tokens.weight", V, H, &m->embed))) return s;
    if (c->tie_word_embeddings) {
        m->lm_head = m->embed;
    } else if ((s = get_matrix(m, "lm_head.weight", V, H, &m->lm_head))) {
        if (s == T2_ERR_NOT_FOUND)
            t2_wrap_error(s, "tie_word_embeddings is false but ");
        return s;
    }
    if ((s = get_vector(m, "model.norm.weight", H, &cur, &m->final_norm))) return s;
    char n[256];
#define LAYER_NAME(fmt) (snprintf(n, sizeof n, "model.layers.%d." fmt, l), n)
    for (int l = 0; l < c->n_layers; l++) {
        t2_layer *L = &m->layers[l];
        if ((s = get_vector(m, LAYER_NAME("input_layernorm.weight"), H, &cur, &L->attn_norm)) ||
            (s = get_vector(m, LAYER_NAME("post_attention_layernorm.weight"), H, &cur, &L->ffn_norm)) ||
            (s = get_matrix(m, LAYER_NAME("self_attn.q_proj.weight"), q, H, &L->wq)) ||
            (s = get_matrix(m, LAYER_NAME("self_attn.k_proj.weight"), kv, H, &L->wk)) ||
            (s = get_matrix(m, LAYER_NAME("self_attn.v_proj.weight"), kv, H, &L->wv)) ||
            (s = get_matrix(m, LAYER_NAME("self_attn.o_proj.weight"), H, q, &L->wo)) ||
            (s = get_matrix(m, LAYER_NAME("mlp.gate_proj.weight"), F, H, &L->wg)) ||
            (s = get_matrix(m, LAYER_NAME("mlp.up_proj.weight"), F, H, &L->wu)) ||
            (s = get_matrix(m, LAYER_NAME("mlp.down_proj.weight"), H, F, &L->wd)))
            return s;
        if (c->attention_bias &&
            ((s = get_vector(m, LAYER_NAME("self_attn.q_proj.bias"), q, &cur, &L->bq)) ||
             (s = get_vector(m, LAYER_NAME("self_attn.k_proj.bias"), kv, &cur, &L->bk)) ||
             (s = get_vector(m, LAYER_NAME("self_attn.v_proj.bias"), kv, &cur, &L->bv))))
            return s;
    }
#undef LAYER_NAME
    return T2_OK;
}

t2_model *t2_model_load(const t2_model_params *p, t2_status *err) {
    if (!p || !p->path) {
        *err = t2_set_error(T2_ERR_INVALID_ARG, "t2_model_load: no model path");
        return NULL;
    }
    t2_model *m = calloc(1, sizeof *m);
    if (!m) {
        *err = t2_set_error(T2_ERR_NOMEM, "model: out of memory");
        return NULL;
    }
    char cfg_path[4096];
    snprintf(cfg_path, sizeof cfg_path, "%s/config.json", p->path);
    t2_status s = t2_model_config_load(cfg_path, &m->cfg);
    if (!s) {
        m->st = t2_st_open(p->path, &s);
        if (m->st) s = load_weights(m);
        if (s && m->st) t2_wrap_error(s, "%s: ", p->path);
    }
    if (!s) {
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        m->n_threads = p->n_threads > 0 ? p->n_threads : (int)(cores > 0 ? cores : 1);
        m->kern = t2_kernels_best();
        m->prefill_bf16 = p->prefill_bf16 && t2_kernels_by_name("avx512bf16") != NULL;
        m->pool = t2_pool_new(m->n_threads);
        if (!m->pool) s = t2_set_error(T2_ERR_NOMEM, "model: cannot start %d threads", m->n_threads);
        openblas_set_num_threads(m->n_threads);
    }
    if (s) {
        t2_model_free(m);
        *err = s;
        return NULL;
    }
    *err = T2_OK;
    return m;
}

void t2_model_free(t2_model *m) {
    if (!m) return;
    t2_pool_free(m->pool);
    t2_st_free(m->st);
    free(m->layers);
    free(m->vecs);
    free(m->train_params);
    t2_weight_grads_free(m->train_layout);
    free(m);
}

const t2_model_config *t2_model_get_config(const t2_model *m) { return &m->cfg; }
int64_t t2_model_n_params(const t2_model *m) { return m->n_params; }
const t2_st *t2_model_tensors(const t2_model *m) { return m->st; }
t2_dtype t2_model_weight_dtype(const t2_model *m) { return m->layers[0].wq.dtype; }

static size_t wbytes(const t2_weight *w) { return (size_t)w->rows * (size_t)w->cols * t2_dtype_size(w->dtype); }

size_t t2_model_decode_bytes(const t2_model *m) {
    size_t b = wbytes(&m->lm_head);
    for (int l = 0; l < m->cfg.n_layers; l++) {
        const t2_layer *L = &m->layers[l];
        b += wbytes(&L->wq) + wbytes(&L->wk) + wbytes(&L->wv) + wbytes(&L->wo) + wbytes(&L->wg) + wbytes(&L->wu) +
             wbytes(&L->wd);
    }
    return b;
}

const t2_weight *t2_model_matrix(const t2_model *m, int layer, int kind, char *name, size_t cap) {
    static const char *names[T2_N_KINDS] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                                            "mlp.gate_proj",    "mlp.up_proj",      "mlp.down_proj"};
    const t2_layer *L = &m->layers[layer];
    const t2_weight *w[T2_N_KINDS] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->wg, &L->wu, &L->wd};
    if (name) snprintf(name, cap, "model.layers.%d.%s", layer, names[kind]);
    return w[kind];
}
