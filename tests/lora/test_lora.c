/* LoRA adapters (t2/lora.h) in the engine, on tiny random checkpoints written by tu_write_checkpoint
 * (llama, qwen2 with q/k/v biases and tied embeddings, llama in BF16).
 *
 * Checked against the engine itself (tests/ref/check_lora.py compares with PyTorch):
 *   - a new LoRA (B = 0) gives the base model's logits exactly; its A is PEFT's init;
 *   - the parameter layout: a LoRA with random A and B gives the logits of a checkpoint whose weights
 *     are W + (alpha/rank)·B·A, recomposed here from t2_lora_params;
 *   - a batch mixing base rows, SVF rows (factored and merged) and two different LoRAs, prompt chunks and
 *     decode rows of several sequences, gives every row what the same request gets alone;
 *   - save / load round trip; every malformed or mismatched file is an error that names the problem;
 *   - t2_lora_clone, and adapters keep their own copy of the parameters;
 *   - t2_logprob_grad with a LoRA: dA, dB against finite differences (with and without the KL term),
 *     weight and accumulation, and the requests the contract rules out;
 *   - SVF-only entry points refuse LoRA adapters. */
#include <t2/error.h>
#include <t2/lora.h>
#include <t2/model.h>
#include <t2/safetensors.h>
#include <t2/svf.h>
#include <t2/train.h>

#include "adapter_cache.h"
#include "lora_impl.h"
#include "svf_impl.h"
#include "util.h"

#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

enum { V = TU_V, H = TU_H, L = TU_L, F = TU_F };

#define REL_TOL 1e-5

static char *g_root, *g_llama, *g_qwen, *g_bf16;

/* ---------------- helpers ---------------- */

static char *fresh_dir(const char *stem) {
    static int k;
    char name[64];
    snprintf(name, sizeof name, "%s-%d-%d", stem, (int)getpid(), k++);
    return tu_mkdir(g_root, name);
}

static int file_exists(const char *p) { return access(p, F_OK) == 0; }

/* max |a − b| / max |b| over n values (NaN propagates) */
static double rel_diff(const float *a, const float *b, size_t n) {
    double d = 0, m = 0;
    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)a[i] - b[i]);
        if (!(e <= d)) d = e;
        if (fabs(b[i]) > m) m = fabs(b[i]);
    }
    return m > 0 ? d / m : d;
}

static void need_models(void) {
    char *p = tu_join(g_bf16, "model.safetensors");
    if (!file_exists(p)) {
        tu_write_checkpoint(g_llama, &(tu_ckpt){.seed = 101});
        tu_write_checkpoint(g_qwen, &(tu_ckpt){.model_type = "qwen2", .tie = 1, .seed = 202});
        tu_write_checkpoint(g_bf16, &(tu_ckpt){.dtype = T2_BF16, .seed = 303});
    }
    free(p);
}

static t2_model *load_model(const char *dir) {
    need_models();
    return tu_load(dir, 2);
}

/* A LoRA with PEFT's A and B uniform in ±bscale (bscale 0: B = 0). */
static t2_lora *make_lora(const t2_model *m, t2_modules mods, int rank, float alpha, uint64_t seed, float bscale) {
    t2_status s;
    t2_lora *l = t2_lora_new(m, mods, rank, alpha, seed, &s);
    ck_assert_msg(l != NULL, "lora new: %s", t2_last_error());
    tu_rng r = {seed * 7 + 1};
    for (int i = 0; bscale > 0 && i < t2_lora_count(l); i++) {
        const t2_weight *B = t2__lora_B(l, i);
        float *b = t2_lora_params(l) + t2__lora_offset(l, i) + (size_t)t2_lora_rank(l) * (size_t)t2__lora_A(l, i)->cols;
        for (size_t j = 0; j < (size_t)B->rows * (size_t)B->cols; j++) b[j] = bscale * tu_uniform(&r);
    }
    return l;
}

static t2_adapter *lora_adapter(const t2_lora *l) {
    t2_status s;
    t2_adapter *a = t2_adapter_new_lora(l, &s);
    ck_assert_msg(a != NULL, "adapter: %s", t2_last_error());
    ck_assert_int_eq(t2_adapter_mode(a), T2_APPLY_LORA);
    return a;
}

static int32_t tok_at(int seq, int pos) { return (int32_t)((seq * 131 + pos * 29 + 7) % V); }

/* Logits of every position of tok_at(seq, 0..n-1) as one prompt batch on sequence slot 0, under a (NULL:
 * the base model through t2_ctx_decode). out: [n × V]. */
static void prompt_logits(t2_ctx *c, const t2_adapter *a, int seq, int n, float *out) {
    int32_t tok[64], pos[64], sq[64];
    uint8_t want[64];
    const t2_adapter *ad[64];
    ck_assert_int_le(n, 64);
    for (int i = 0; i < n; i++) tok[i] = tok_at(seq, i), pos[i] = i, sq[i] = 0, want[i] = 1, ad[i] = a;
    t2_ctx_seq_clear(c, 0);
    t2_batch b = {.n = n, .token = tok, .pos = pos, .seq = sq, .want = want};
    t2_status s = a ? t2_ctx_decode_adapted(c, &b, ad, out) : t2_ctx_decode(c, &b, out);
    ck_assert_msg(s == T2_OK, "decode: %s", t2_last_error());
}

static t2_svd *svd_open(t2_model *m, t2_modules mods, const char *path) {
    t2_svd_params p = t2_svd_default_params();
    p.modules = mods;
    p.path = path;
    t2_status s;
    t2_svd *svd = t2_svd_load(m, &p, &s);
    ck_assert_msg(svd != NULL, "svd: %s", t2_last_error());
    return svd;
}

/* ---------------- a new LoRA is the base model ---------------- */

static void new_is_base_case(const char *dir) {
    t2_model *m = load_model(dir);
    const t2_model_config *cfg = t2_model_get_config(m);
    t2_lora *l = make_lora(m, T2_MODULES_ALL, 4, 8.0f, 99, 0);
    ck_assert_int_eq(t2_lora_rank(l), 4);
    ck_assert_float_eq(t2_lora_alpha(l), 8.0f);
    ck_assert_int_eq(t2_lora_modules(l), T2_MODULES_ALL);
    ck_assert_int_eq(t2_lora_count(l), L * 7);
    ck_assert_str_eq(t2_lora_name(l, 0), "model.layers.0.self_attn.q_proj");
    ck_assert_str_eq(t2_lora_name(l, 6), "model.layers.0.mlp.down_proj");
    ck_assert_str_eq(t2_lora_name(l, 7), "model.layers.1.self_attn.q_proj");
    ck_assert_ptr_null(t2_lora_name(l, L * 7));
    ck_assert_str_eq(t2_lora_meta(l, "format"), "t2-lora");
    ck_assert_str_eq(t2_lora_meta(l, "fingerprint"), t2_model_fingerprint(m));
    ck_assert_str_eq(t2_lora_meta(l, "rank"), "4");
    ck_assert_str_eq(t2_lora_meta(l, "alpha"), "8");
    ck_assert_str_eq(t2_lora_meta(l, "modules"), "all");
    /* n_params = Σ rank·(rows + cols); A within ±1/√cols (and not all zero), B = 0 */
    size_t want = 0;
    int qd = cfg->n_heads * cfg->head_dim, kvd = cfg->n_kv_heads * cfg->head_dim;
    int rows[7] = {qd, kvd, kvd, H, F, F, H}, cols[7] = {H, H, H, qd, H, H, F};
    for (int i = 0; i < t2_lora_count(l); i++) {
        const t2_weight *A = t2__lora_A(l, i), *B = t2__lora_B(l, i);
        ck_assert_int_eq(A->rows, 4);
        ck_assert_int_eq(A->cols, cols[i % 7]);
        ck_assert_int_eq(B->rows, rows[i % 7]);
        ck_assert_int_eq(B->cols, 4);
        ck_assert_uint_eq(t2__lora_offset(l, i), want);
        const float *p = t2_lora_paramsc(l) + want;
        float bound = 1.0f / sqrtf((float)A->cols), mx = 0;
        for (int j = 0; j < 4 * A->cols; j++) mx = fabsf(p[j]) > mx ? fabsf(p[j]) : mx;
        ck_assert_msg(mx <= bound && mx > 0.5f * bound, "%s: max|A| %g, bound %g", t2_lora_name(l, i), mx, bound);
        for (int j = 0; j < 4 * B->rows; j++) ck_assert_float_eq(p[4 * A->cols + j], 0.0f);
        want += (size_t)4 * (size_t)(rows[i % 7] + cols[i % 7]);
    }
    ck_assert_uint_eq(t2_lora_n_params(l), want);
    /* the same seed gives the same A */
    t2_lora *l2 = make_lora(m, T2_MODULES_ALL, 4, 8.0f, 99, 0);
    ck_assert_int_eq(memcmp(t2_lora_paramsc(l), t2_lora_paramsc(l2), want * sizeof(float)), 0);
    t2_lora_free(l2);

    /* logits: a context without any SVD cache, a prompt above the GEMM threshold and one below it. Each is
     * compared with the base on the same rows: below the threshold the engine takes its own kernels, above
     * it OpenBLAS (where the machine has no AVX-512), and the two need not agree to the last bit. */
    t2_adapter *a = lora_adapter(l);
    t2_ctx *c = tu_ctx_new(m, 32, 1, 32);
    static float base[24 * V], got[24 * V];
    const int n_rows[2] = {24, 5};
    for (int k = 0; k < 2; k++) {
        prompt_logits(c, NULL, 3, n_rows[k], base);
        prompt_logits(c, a, 3, n_rows[k], got);
        ck_assert_msg(memcmp(base, got, (size_t)n_rows[k] * V * sizeof(float)) == 0, "%d rows: a new LoRA differs from the base",
                      n_rows[k]);
    }
    t2_ctx_free(c);
    t2_adapter_free(a);
    t2_lora_free(l);
    t2_model_free(m);
}

START_TEST(test_new_is_base_llama) { new_is_base_case(g_llama); }
END_TEST
START_TEST(test_new_is_base_qwen) { new_is_base_case(g_qwen); }
END_TEST

/* ---------------- the parameter layout, through a merged checkpoint ---------------- */

/* Write into out_dir a copy of the F32 checkpoint in dir with every weight the LoRA adapts replaced by
 * W + (alpha/rank)·B·A, B and A read from t2_lora_params in the documented layout. */
static void write_merged(const char *dir, const t2_lora *l, const char *out_dir) {
    char *src = tu_join(dir, "model.safetensors"), *cfg = tu_join(dir, "config.json"), *cfg2 = tu_join(out_dir, "config.json");
    size_t len;
    unsigned char *cj = tu_read_file(cfg, &len);
    tu_write_bytes(cfg2, cj, len);
    free(cj);
    t2_status s;
    t2_st *st = t2_st_open(src, &s);
    ck_assert_msg(st != NULL, "%s", t2_last_error());
    size_t n = t2_st_count(st);
    t2_tensor_info *t = calloc(n, sizeof *t);
    float **bufs = calloc(n, sizeof *bufs);
    ck_assert(t && bufs);
    int rank = t2_lora_rank(l);
    double sc = (double)t2_lora_alpha(l) / rank;
    size_t off = 0;
    for (size_t i = 0; i < n; i++) {
        t[i] = *t2_st_at(st, i);
        ck_assert_int_eq(t[i].dtype, T2_F32);
        bufs[i] = malloc(t[i].nbytes);
        ck_assert_ptr_nonnull(bufs[i]);
        memcpy(bufs[i], t[i].data, t[i].nbytes);
        t[i].data = bufs[i];
    }
    for (int k = 0; k < t2_lora_count(l); k++) {
        char name[128];
        snprintf(name, sizeof name, "%s.weight", t2_lora_name(l, k));
        size_t i = 0;
        while (i < n && strcmp(t[i].name, name)) i++;
        ck_assert_msg(i < n, "no %s", name);
        int rows = (int)t[i].shape[0], cols = (int)t[i].shape[1];
        const float *A = t2_lora_paramsc(l) + off, *B = A + (size_t)rank * cols;
        for (int r = 0; r < rows; r++)
            for (int c = 0; c < cols; c++) {
                double acc = 0;
                for (int j = 0; j < rank; j++) acc += (double)B[(size_t)r * rank + j] * A[(size_t)j * cols + c];
                bufs[i][(size_t)r * cols + c] += (float)(sc * acc);
            }
        off += (size_t)rank * (size_t)(rows + cols);
    }
    ck_assert_uint_eq(off, t2_lora_n_params(l));
    char *dst = tu_join(out_dir, "model.safetensors");
    ck_assert_msg(t2_st_write(dst, t, n, NULL) == T2_OK, "%s", t2_last_error());
    for (size_t i = 0; i < n; i++) free(bufs[i]);
    free(bufs), free(t), free(src), free(cfg), free(cfg2), free(dst);
    t2_st_free(st);
}

static void layout_case(const char *dir, t2_modules mods, int rank) {
    t2_model *m = load_model(dir);
    t2_lora *l = make_lora(m, mods, rank, 6.0f, 5, 0.2f);
    char *d = fresh_dir("merged");
    write_merged(dir, l, d);
    t2_model *mm = tu_load(d, 2);
    t2_adapter *a = lora_adapter(l);
    t2_ctx *c = tu_ctx_new(m, 32, 1, 32), *cm = tu_ctx_new(mm, 32, 1, 32);
    static float got[24 * V], want[24 * V], base[24 * V];
    for (int len = 5; len <= 24; len += 19) {
        prompt_logits(c, a, 1, len, got);
        prompt_logits(cm, NULL, 1, len, want);
        prompt_logits(c, NULL, 1, len, base);
        double err = rel_diff(got, want, (size_t)len * V), moved = rel_diff(base, want, (size_t)len * V);
        ck_assert_msg(err <= REL_TOL, "%d rows: LoRA vs merged checkpoint rel %.3g", len, err);
        ck_assert_msg(moved > 1e-2, "the LoRA hardly changes the logits (%.3g): the test tests nothing", moved);
    }
    t2_ctx_free(c), t2_ctx_free(cm);
    t2_adapter_free(a);
    t2_lora_free(l);
    t2_model_free(mm);
    t2_model_free(m);
    tu_rm_rf(d);
    free(d);
}

START_TEST(test_layout_llama_all) { layout_case(g_llama, T2_MODULES_ALL, 3); }
END_TEST
START_TEST(test_layout_qwen_attn) { layout_case(g_qwen, T2_MODULES_ATTN, 5); }
END_TEST
START_TEST(test_layout_llama_mlp) { layout_case(g_llama, T2_MODULES_MLP, 8); }
END_TEST

/* ---------------- mixed batches ---------------- */

enum { NREQ = 7, MAXT = 24, MAXROWS = 64 };

static void mixed_case(const char *dir) {
    t2_model *m = load_model(dir);
    char *d = fresh_dir("mixed");
    char *cp = tu_join(d, "svd.safetensors");
    t2_svd *svd = svd_open(m, T2_MODULES_ALL, cp);
    t2_status s;
    t2_expert *e1 = t2_expert_new(svd, "one", &s), *e2 = t2_expert_new(svd, "two", &s);
    ck_assert(e1 && e2);
    tu_rng r = {77};
    for (int i = 0; i < t2_expert_count(e1); i++)
        for (int j = 0; j < t2_expert_len(e1, i); j++)
            t2_expert_z(e1, i)[j] = tu_uniform_in(&r, 0.5f, 1.5f), t2_expert_z(e2, i)[j] = tu_uniform_in(&r, 0.5f, 1.5f);
    t2_adapter *S1 = t2_adapter_new(svd, e1, T2_APPLY_FACTORED, &s), *S2 = t2_adapter_new(svd, e2, T2_APPLY_MERGED, &s);
    ck_assert(S1 && S2);
    t2_lora *l1 = make_lora(m, T2_MODULES_MLP, 4, 8.0f, 11, 0.2f), *l2 = make_lora(m, T2_MODULES_ALL, 3, 5.0f, 12, 0.2f);
    t2_adapter *A1 = lora_adapter(l1), *A2 = lora_adapter(l2);
    const t2_adapter *req_ad[NREQ] = {NULL, A1, S1, A2, NULL, A1, S2};
    const int prompt[NREQ] = {7, 18, 5, 12, 3, 1, 6}, total[NREQ] = {10, 22, 8, 16, 6, 4, 9};

    /* each request alone: its prompt as one batch, then one decode row per token */
    static float ref[NREQ][MAXT][V];
    t2_ctx *c1 = tu_ctx_new(m, 32, 1, MAXROWS);
    ck_assert_int_eq(t2_ctx_set_svd(c1, svd, 0), T2_OK);
    for (int q = 0; q < NREQ; q++) {
        int32_t tok[MAXT], pos[MAXT], sq[MAXT];
        uint8_t want[MAXT];
        const t2_adapter *ad[MAXT];
        for (int i = 0; i < total[q]; i++) tok[i] = tok_at(q, i), pos[i] = i, sq[i] = 0, want[i] = 1, ad[i] = req_ad[q];
        t2_ctx_seq_clear(c1, 0);
        t2_batch b = {.n = prompt[q], .token = tok, .pos = pos, .seq = sq, .want = want};
        s = req_ad[q] ? t2_ctx_decode_adapted(c1, &b, ad, &ref[q][0][0]) : t2_ctx_decode(c1, &b, &ref[q][0][0]);
        ck_assert_msg(s == T2_OK, "%s", t2_last_error());
        for (int i = prompt[q]; i < total[q]; i++) {
            t2_batch b1 = {.n = 1, .token = tok + i, .pos = pos + i, .seq = sq, .want = want};
            s = t2_ctx_decode_adapted(c1, &b1, req_ad[q] ? ad : NULL, &ref[q][i][0]);
            ck_assert_msg(s == T2_OK, "%s", t2_last_error());
        }
    }

    /* all together: every prompt in the first batch (52 rows), then decode steps with one row per
     * request still running (≤ 7 rows: the gemv path) */
    t2_ctx *c = tu_ctx_new(m, 32, NREQ, MAXROWS);
    ck_assert_int_eq(t2_ctx_set_svd(c, svd, 0), T2_OK);
    int32_t tok[MAXROWS], pos[MAXROWS], sq[MAXROWS];
    uint8_t want[MAXROWS];
    const t2_adapter *ad[MAXROWS];
    int who[MAXROWS], at[MAXROWS];
    static float out[MAXROWS][V];
    double worst = 0;
    for (int step = 0;; step++) {
        int n = 0;
        for (int q = 0; q < NREQ; q++) {
            int from = step == 0 ? 0 : prompt[q] + step - 1, to = step == 0 ? prompt[q] : from + 1;
            for (int i = from; i < to && i < total[q]; i++) {
                tok[n] = tok_at(q, i), pos[n] = i, sq[n] = q, want[n] = 1, ad[n] = req_ad[q], who[n] = q, at[n] = i;
                n++;
            }
        }
        if (!n) break;
        t2_batch b = {.n = n, .token = tok, .pos = pos, .seq = sq, .want = want};
        s = t2_ctx_decode_adapted(c, &b, ad, &out[0][0]);
        ck_assert_msg(s == T2_OK, "step %d: %s", step, t2_last_error());
        for (int k = 0; k < n; k++) {
            double e = rel_diff(out[k], ref[who[k]][at[k]], V);
            ck_assert_msg(e <= REL_TOL, "step %d row %d (request %d, position %d): rel %.3g", step, k, who[k], at[k], e);
            worst = e > worst ? e : worst;
        }
    }
    /* the LoRA rows really differ from the base model's */
    static float base[MAXT * V];
    prompt_logits(c1, NULL, 1, prompt[1], base);
    ck_assert_msg(rel_diff(base, &ref[1][0][0], (size_t)prompt[1] * V) > 1e-2, "LoRA 1 changes nothing");
    t2_ctx_free(c), t2_ctx_free(c1);
    t2_adapter_free(A1), t2_adapter_free(A2), t2_adapter_free(S1), t2_adapter_free(S2);
    t2_lora_free(l1), t2_lora_free(l2);
    t2_expert_free(e1), t2_expert_free(e2);
    t2_svd_free(svd);
    t2_model_free(m);
    free(cp);
    tu_rm_rf(d);
    free(d);
}

START_TEST(test_mixed_llama) { mixed_case(g_llama); }
END_TEST
START_TEST(test_mixed_qwen) { mixed_case(g_qwen); }
END_TEST
START_TEST(test_mixed_bf16) { mixed_case(g_bf16); }
END_TEST

/* ---------------- files ---------------- */

/* How write_variant damages a LoRA file. */
typedef struct variant {
    const char *format, *version, *fingerprint, *rank, *alpha, *modules;   /* NULL: the LoRA's own; "" leave out */
    int drop;            /* ≥ 0: leave out tensor drop (2i = A_i, 2i+1 = B_i) */
    int bad_shape;       /* ≥ 0: this tensor one row short */
    int nan_in;          /* ≥ 0: a NaN in this tensor */
    int as_bf16;         /* all tensors BF16 */
    const char *extra;   /* an extra tensor of this name [1 × 1] */
} variant;

static void write_variant(const t2_lora *l, const char *path, variant v) {
    int n = t2_lora_count(l), nt = 2 * n;
    t2_tensor_info t[64];
    char names[64][128];
    void *bufs[64] = {0};
    int k = 0;
    ck_assert_int_le(nt + 1, 64);
    for (int i = 0; i < nt; i++) {
        const t2_weight *w = i % 2 ? t2__lora_B(l, i / 2) : t2__lora_A(l, i / 2);
        if (i == v.drop) continue;
        snprintf(names[k], sizeof names[k], "%s.%s", t2_lora_name(l, i / 2), i % 2 ? "lora_B" : "lora_A");
        size_t numel = (size_t)w->rows * (size_t)w->cols;
        int rows = w->rows - (i == v.bad_shape);
        t[k] = (t2_tensor_info){.name = names[k], .dtype = v.as_bf16 ? T2_BF16 : T2_F32, .ndim = 2, .shape = {rows, w->cols}};
        if (v.as_bf16) {
            uint16_t *b = malloc(numel * 2);
            const float *src = w->data;
            for (size_t j = 0; j < numel; j++) {
                uint32_t u;
                memcpy(&u, &src[j], 4);
                b[j] = (uint16_t)(u >> 16); /* truncation: exact for the test's comparison below */
            }
            bufs[k] = b;
        } else {
            float *f = malloc(numel * 4);
            memcpy(f, w->data, numel * 4);
            if (i == v.nan_in) f[numel / 2] = NAN;
            bufs[k] = f;
        }
        t[k].data = bufs[k];
        k++;
    }
    static const float one = 1.0f;
    if (v.extra) t[k++] = (t2_tensor_info){.name = v.extra, .dtype = T2_F32, .ndim = 2, .shape = {1, 1}, .data = &one};
    const char *keys[] = {"format", "version", "fingerprint", "rank", "alpha", "modules"};
    const char *vals[] = {v.format, v.version, v.fingerprint, v.rank, v.alpha, v.modules};
    const char *meta[16];
    int j = 0;
    for (int i = 0; i < 6; i++) {
        const char *val = vals[i] ? vals[i] : t2_lora_meta(l, keys[i]);
        if (!*val) continue;
        meta[j++] = keys[i], meta[j++] = val;
    }
    meta[j] = NULL;
    ck_assert_msg(t2_st_write(path, t, (size_t)k, meta) == T2_OK, "%s", t2_last_error());
    for (int i = 0; i < k; i++) free(bufs[i]);
}

static void expect_error(const char *path, const t2_model *m, t2_status want, const char *needle) {
    t2_status s;
    t2_lora *l = t2_lora_load(path, m, &s);
    ck_assert_msg(l == NULL, "%s loaded (want \"%s\")", path, needle);
    ck_assert_msg(s == want, "status %d (%s), want %d: %s", s, t2_strerror(s), want, t2_last_error());
    TU_ASSERT_ERR_HAS(needle);
    TU_ASSERT_ERR_HAS(path);
}

static const variant V0 = {.drop = -1, .bad_shape = -1, .nan_in = -1};

START_TEST(test_save_load) {
    t2_model *m = load_model(g_llama), *q = load_model(g_qwen);
    char *d = fresh_dir("files");
    char *p = tu_join(d, "l.safetensors"), *p2 = tu_join(d, "bad.safetensors");
    t2_lora *l = make_lora(m, T2_MODULES_ALL, 3, 4.5f, 21, 0.3f);
    ck_assert_int_eq(t2_lora_set_meta(l, "label", "gsm8k"), T2_OK);
    ck_assert_int_eq(t2_lora_set_meta(l, "rank", "9"), T2_ERR_INVALID_ARG);
    ck_assert_int_eq(t2_lora_set_meta(l, "fingerprint", "x"), T2_ERR_INVALID_ARG);
    ck_assert_int_eq(t2_lora_set_meta(l, "", "x"), T2_ERR_INVALID_ARG);
    ck_assert_int_eq(t2_lora_set_meta(l, "tmp", "y"), T2_OK);
    ck_assert_int_eq(t2_lora_set_meta(l, "tmp", NULL), T2_OK);
    ck_assert_ptr_null(t2_lora_meta(l, "tmp"));
    ck_assert_int_eq(t2_lora_save(l, p), T2_OK);

    t2_status s;
    t2_lora *r = t2_lora_load(p, m, &s);
    ck_assert_msg(r != NULL, "%s", t2_last_error());
    ck_assert_int_eq(t2_lora_rank(r), 3);
    ck_assert_float_eq(t2_lora_alpha(r), 4.5f);
    ck_assert_int_eq(t2_lora_modules(r), T2_MODULES_ALL);
    ck_assert_uint_eq(t2_lora_n_params(r), t2_lora_n_params(l));
    ck_assert_int_eq(memcmp(t2_lora_paramsc(r), t2_lora_paramsc(l), t2_lora_n_params(l) * sizeof(float)), 0);
    ck_assert_str_eq(t2_lora_meta(r, "label"), "gsm8k");
    ck_assert_str_eq(t2_lora_meta(r, "alpha"), "4.5");
    ck_assert_str_eq(t2_lora_meta(r, "created"), t2_lora_meta(l, "created"));
    t2_lora_free(r);

    /* the file as this test writes it loads; BF16 factors are widened */
    write_variant(l, p2, V0);
    ck_assert_ptr_nonnull(r = t2_lora_load(p2, m, &s));
    t2_lora_free(r);
    variant v = V0;
    v.as_bf16 = 1;
    write_variant(l, p2, v);
    ck_assert_msg((r = t2_lora_load(p2, m, &s)) != NULL, "%s", t2_last_error());
    for (size_t j = 0; j < t2_lora_n_params(l); j++) {
        uint32_t u;
        float want;
        memcpy(&u, &t2_lora_paramsc(l)[j], 4);
        u &= 0xffff0000u;
        memcpy(&want, &u, 4);
        ck_assert_msg(t2_lora_paramsc(r)[j] == want, "BF16 parameter %zu: %a, want %a", j, t2_lora_paramsc(r)[j], want);
    }
    t2_lora_free(r);

    /* another model's LoRA; a wrong fingerprint */
    expect_error(p, q, T2_ERR_VERSION, "fingerprint");
    v = V0, v.fingerprint = "00000000deadbeef";
    write_variant(l, p2, v);
    expect_error(p2, m, T2_ERR_VERSION, "00000000deadbeef");
    /* not a LoRA: a model, an expert-like file, no format */
    char *model_st = tu_join(g_llama, "model.safetensors");
    expect_error(model_st, m, T2_ERR_FORMAT, "not a T2 LoRA");
    free(model_st);
    v = V0, v.format = "t2-expert";
    write_variant(l, p2, v);
    expect_error(p2, m, T2_ERR_FORMAT, "t2-expert");
    v = V0, v.format = "";
    write_variant(l, p2, v);
    expect_error(p2, m, T2_ERR_FORMAT, "not a T2 LoRA");
    v = V0, v.version = "2";
    write_variant(l, p2, v);
    expect_error(p2, m, T2_ERR_VERSION, "version 2");
    /* bad rank / alpha / modules metadata */
    const char *bad_rank[] = {"", "0", "-3", "x", "3.5", "257"};
    for (size_t i = 0; i < sizeof bad_rank / sizeof *bad_rank; i++) {
        v = V0, v.rank = bad_rank[i];
        write_variant(l, p2, v);
        expect_error(p2, m, T2_ERR_FORMAT, "rank");
    }
    v = V0, v.rank = "2"; /* a valid number that does not fit the tensors */
    write_variant(l, p2, v);
    expect_error(p2, m, T2_ERR_SHAPE, "lora_A");
    v = V0, v.rank = "40"; /* larger than the matrices */
    write_variant(l, p2, v);
    expect_error(p2, m, T2_ERR_SHAPE, "min(rows, cols)");
    const char *bad_alpha[] = {"", "0", "-1", "nan", "inf", "2x"};
    for (size_t i = 0; i < sizeof bad_alpha / sizeof *bad_alpha; i++) {
        v = V0, v.alpha = bad_alpha[i];
        write_variant(l, p2, v);
        expect_error(p2, m, T2_ERR_FORMAT, "alpha");
    }
    v = V0, v.modules = "ffn";
    write_variant(l, p2, v);
    expect_error(p2, m, T2_ERR_FORMAT, "modules");
    v = V0, v.modules = "mlp"; /* the file holds attention factors too */
    write_variant(l, p2, v);
    expect_error(p2, m, T2_ERR_NOT_FOUND, "model.layers.0.self_attn.q_proj.lora_A");
    /* a missing factor, a bad shape, an extra tensor, a NaN */
    v = V0, v.drop = 2 * 9 + 1;
    write_variant(l, p2, v);
    expect_error(p2, m, T2_ERR_NOT_FOUND, "model.layers.1.self_attn.v_proj.lora_B");
    v = V0, v.bad_shape = 2 * 4;
    write_variant(l, p2, v);
    expect_error(p2, m, T2_ERR_SHAPE, "model.layers.0.mlp.gate_proj.lora_A");
    v = V0, v.extra = "model.layers.5.mlp.up_proj.lora_A";
    write_variant(l, p2, v);
    expect_error(p2, m, T2_ERR_NOT_FOUND, "model.layers.5.mlp.up_proj.lora_A");
    v = V0, v.extra = "model.layers.0.mlp.up_proj.weight";
    write_variant(l, p2, v);
    expect_error(p2, m, T2_ERR_NOT_FOUND, "model.layers.0.mlp.up_proj.weight");
    v = V0, v.nan_in = 13;
    write_variant(l, p2, v);
    expect_error(p2, m, T2_ERR_FORMAT, "model.layers.0.mlp.down_proj.lora_B");
    /* truncated at several lengths: an error, never a crash */
    size_t len;
    unsigned char *b = tu_read_file(p, &len);
    size_t cuts[] = {0, 7, 8, 40, len / 2, len - 1};
    for (size_t i = 0; i < sizeof cuts / sizeof *cuts; i++) {
        tu_write_bytes(p2, b, cuts[i]);
        ck_assert_ptr_null(t2_lora_load(p2, m, &s));
        ck_assert_int_ne(s, T2_OK);
    }
    free(b);
    ck_assert_ptr_null(t2_lora_load("/nonexistent/l.safetensors", m, &s));
    ck_assert_int_ne(s, T2_OK);

    t2_lora_free(l);
    t2_model_free(q), t2_model_free(m);
    free(p), free(p2);
    tu_rm_rf(d);
    free(d);
}
END_TEST

START_TEST(test_new_errors) {
    t2_model *m = load_model(g_llama);
    t2_status s;
    struct { t2_modules mods; int rank; float alpha; const char *needle; } bad[] = {
        {T2_MODULES_MLP, 0, 8, "rank 0"},       {T2_MODULES_MLP, T2_LORA_MAX_RANK + 1, 8, "rank"},
        {T2_MODULES_MLP, H + 1, 8, "min(rows, cols)"}, {T2_MODULES_ATTN, 17, 8, "k_proj"},
        {T2_MODULES_MLP, 4, 0, "alpha"},        {T2_MODULES_MLP, 4, -1, "alpha"},
        {T2_MODULES_MLP, 4, NAN, "alpha"},      {T2_MODULES_MLP, 4, INFINITY, "alpha"},
        {(t2_modules)0, 4, 8, "modules"},       {(t2_modules)4, 4, 8, "modules"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        ck_assert_ptr_null(t2_lora_new(m, bad[i].mods, bad[i].rank, bad[i].alpha, 1, &s));
        ck_assert_int_eq(s, T2_ERR_INVALID_ARG);
        TU_ASSERT_ERR_HAS(bad[i].needle);
    }
    /* the largest rank that fits: min(rows, cols) of k/v (16) */
    t2_lora *l = t2_lora_new(m, T2_MODULES_ALL, 16, 1, 1, &s);
    ck_assert_msg(l != NULL, "%s", t2_last_error());
    t2_lora_free(l);
    t2_lora_free(NULL);
    t2_adapter_free(NULL);
    ck_assert_ptr_null(t2_adapter_new_lora(NULL, &s));
    t2_model_free(m);
}
END_TEST

START_TEST(test_clone) {
    t2_model *m = load_model(g_qwen);
    t2_lora *l = make_lora(m, T2_MODULES_MLP, 2, 3.0f, 31, 0.3f);
    t2_lora_set_meta(l, "label", "orig");
    t2_status s;
    t2_lora *c = t2_lora_clone(l, &s);
    ck_assert_msg(c != NULL, "%s", t2_last_error());
    size_t n = t2_lora_n_params(l);
    ck_assert_uint_eq(t2_lora_n_params(c), n);
    ck_assert_int_eq(t2_lora_rank(c), 2);
    ck_assert_float_eq(t2_lora_alpha(c), 3.0f);
    ck_assert_int_eq(t2_lora_modules(c), T2_MODULES_MLP);
    ck_assert_int_eq(t2_lora_count(c), t2_lora_count(l));
    ck_assert_str_eq(t2_lora_name(c, 2), t2_lora_name(l, 2));
    ck_assert_int_eq(memcmp(t2_lora_paramsc(c), t2_lora_paramsc(l), n * sizeof(float)), 0);
    ck_assert_ptr_ne(t2_lora_paramsc(c), t2_lora_paramsc(l));
    ck_assert_str_eq(t2_lora_meta(c, "label"), "orig");
    ck_assert_str_eq(t2_lora_meta(c, "fingerprint"), t2_lora_meta(l, "fingerprint"));
    /* deep: changing one leaves the other */
    t2_lora_params(l)[0] += 1.0f;
    t2_lora_set_meta(l, "label", "changed");
    ck_assert_float_ne(t2_lora_paramsc(c)[0], t2_lora_paramsc(l)[0]);
    ck_assert_str_eq(t2_lora_meta(c, "label"), "orig");

    /* an adapter keeps its own copy: the LoRA may change under it (a trainer's step) */
    t2_adapter *a = lora_adapter(c);
    t2_ctx *ctx = tu_ctx_new(m, 32, 1, 32);
    static float before[8 * V], after[8 * V], fresh[8 * V];
    prompt_logits(ctx, a, 2, 8, before);
    for (size_t i = 0; i < n; i++) t2_lora_params(c)[i] *= 1.5f;
    prompt_logits(ctx, a, 2, 8, after);
    ck_assert_int_eq(memcmp(before, after, sizeof before), 0);
    t2_adapter *a2 = lora_adapter(c);
    prompt_logits(ctx, a2, 2, 8, fresh);
    ck_assert_msg(rel_diff(fresh, before, 8 * V) > 1e-3, "the scaled LoRA gives the same logits");
    t2_adapter_free(a2);
    t2_adapter_free(a);
    t2_ctx_free(ctx);
    t2_lora_free(c);
    t2_lora_free(l);
    t2_model_free(m);
}
END_TEST

/* ---------------- gradients ---------------- */

/* J (and KL) of ids under l. */
static double objective(t2_model *m, const int32_t *ids, int n, int k0, const t2_lora *l, float lam) {
    double J = 0, kl = 0;
    t2_grad_request rq = {.ids = ids, .n = n, .k0 = k0, .weight = 1, .lora = l, .kl_coef = lam, .kl = &kl};
    ck_assert_msg(t2_logprob_grad(m, &rq, &J) == T2_OK, "%s", t2_last_error());
    return J - lam * kl;
}

static void grad_case(const char *dir, t2_modules mods, float lam) {
    t2_model *m = load_model(dir);
    t2_lora *l = make_lora(m, mods, 3, 6.0f, 41, 0.2f);
    enum { N = 12 };
    int32_t ids[N];
    for (int i = 0; i < N; i++) ids[i] = tok_at(5, i);
    int k0 = 5;
    size_t np = t2_lora_n_params(l);
    float *g = calloc(np, sizeof *g), *g2 = calloc(np, sizeof *g2);
    ck_assert(g && g2);
    double J = 0, kl = -1;
    t2_grad_request rq = {.ids = ids, .n = N, .k0 = k0, .weight = 1, .lora = l, .dlora = g, .kl_coef = lam, .kl = &kl};
    ck_assert_msg(t2_logprob_grad(m, &rq, &J) == T2_OK, "%s", t2_last_error());
    ck_assert(J < 0 && kl > 0);
    /* the largest |g| of A and of B of three matrices: central differences of J − λKL in double-precision
     * sums over f32 forwards (step 1e-2, tolerance 2e-2 relative) */
    int mats[3] = {0, t2_lora_count(l) / 2, t2_lora_count(l) - 1};
    for (int k = 0; k < 3; k++) {
        int i = mats[k];
        size_t off = t2__lora_offset(l, i), na = (size_t)3 * (size_t)t2__lora_A(l, i)->cols,
               nb = (size_t)3 * (size_t)t2__lora_B(l, i)->rows;
        for (int part = 0; part < 2; part++) {
            size_t from = off + (part ? na : 0), cnt = part ? nb : na, best = from;
            for (size_t j = from; j < from + cnt; j++)
                if (fabsf(g[j]) > fabsf(g[best])) best = j;
            float *p = t2_lora_params(l), keep = p[best], h = 1e-2f;
            p[best] = keep + h;
            double jp = objective(m, ids, N, k0, l, lam);
            p[best] = keep - h;
            double jm = objective(m, ids, N, k0, l, lam);
            p[best] = keep;
            double fd = (jp - jm) / (2.0 * h), rel = fabs(fd - g[best]) / fabs(g[best]);
            ck_assert_msg(rel < 2e-2, "%s %s[%zu]: grad %.6g, finite difference %.6g (rel %.2g)", t2_lora_name(l, i),
                          part ? "B" : "A", best - from, g[best], fd, rel);
        }
    }
    /* weight scales the gradient (without KL), and gradients accumulate */
    if (lam == 0) {
        rq.weight = 2;
        rq.dlora = g2;
        ck_assert(t2_logprob_grad(m, &rq, &J) == T2_OK);
        rq.weight = 1;
        ck_assert(t2_logprob_grad(m, &rq, &J) == T2_OK);
        for (size_t j = 0; j < np; j++) ck_assert_msg(fabsf(g2[j] - 3 * g[j]) <= 1e-5f * (1 + fabsf(g[j])), "%zu", j);
    }
    free(g), free(g2);
    t2_lora_free(l);
    t2_model_free(m);
}

START_TEST(test_grad_llama_all) { grad_case(g_llama, T2_MODULES_ALL, 0); }
END_TEST
START_TEST(test_grad_qwen_mlp_kl) { grad_case(g_qwen, T2_MODULES_MLP, 0.5f); }
END_TEST
START_TEST(test_grad_bf16_all_kl) { grad_case(g_bf16, T2_MODULES_ALL, 0.3f); }
END_TEST

/* KL of a new LoRA (B = 0) is the base model's own: 0 up to rounding, and its gradient with respect to
 * A vanishes there (B = 0 kills every path through A). */
START_TEST(test_grad_at_init) {
    t2_model *m = load_model(g_llama);
    t2_lora *l = make_lora(m, T2_MODULES_ALL, 2, 4.0f, 51, 0);
    int32_t ids[10];
    for (int i = 0; i < 10; i++) ids[i] = tok_at(2, i);
    size_t np = t2_lora_n_params(l);
    float *g = calloc(np, sizeof *g);
    double J, kl = -1, J0;
    t2_grad_request rq = {.ids = ids, .n = 10, .k0 = 4, .weight = 1, .lora = l, .dlora = g, .kl = &kl};
    ck_assert(t2_logprob_grad(m, &rq, &J) == T2_OK);
    t2_grad_request rb = {.ids = ids, .n = 10, .k0 = 4, .weight = 1};
    ck_assert(t2_logprob_grad(m, &rb, &J0) == T2_OK);
    ck_assert_double_eq_tol(J, J0, 1e-9 * fabs(J0));
    ck_assert_msg(fabs(kl) < 1e-6, "KL at B = 0: %g", kl);
    double ga = 0, gb = 0;
    for (int i = 0; i < t2_lora_count(l); i++) {
        size_t off = t2__lora_offset(l, i), na = (size_t)2 * (size_t)t2__lora_A(l, i)->cols,
               nb = (size_t)2 * (size_t)t2__lora_B(l, i)->rows;
        for (size_t j = 0; j < na; j++) ga = fmax(ga, fabs(g[off + j]));
        for (size_t j = 0; j < nb; j++) gb = fmax(gb, fabs(g[off + na + j]));
    }
    ck_assert_msg(ga == 0 && gb > 1e-3, "max|dA| %g (want 0), max|dB| %g (want > 0)", ga, gb);
    free(g);
    t2_lora_free(l);
    t2_model_free(m);
}
END_TEST

/* ---------------- misuse ---------------- */

START_TEST(test_misuse) {
    t2_model *m = load_model(g_llama), *q = load_model(g_qwen);
    char *d = fresh_dir("misuse");
    char *cp = tu_join(d, "svd.safetensors");
    t2_svd *svd = svd_open(m, T2_MODULES_MLP, cp);
    t2_status s;
    t2_lora *l = make_lora(m, T2_MODULES_MLP, 2, 2, 61, 0.1f), *lq = make_lora(q, T2_MODULES_MLP, 2, 2, 62, 0.1f);
    t2_adapter *a = lora_adapter(l), *aq = lora_adapter(lq);
    t2_expert *e = t2_expert_new(svd, "x", &s);
    t2_adapter *sa = t2_adapter_new(svd, e, T2_APPLY_FACTORED, &s);
    ck_assert_ptr_nonnull(sa);

    /* the SVF-only parts refuse or return nothing for a LoRA adapter */
    ck_assert_ptr_null(t2_adapter_new(svd, e, T2_APPLY_LORA, &s));
    ck_assert_int_eq(s, T2_ERR_INVALID_ARG);
    TU_ASSERT_ERR_HAS("t2_adapter_new_lora");
    ck_assert_ptr_null(t2__adapter_c(a, 0));
    ck_assert_ptr_null(t2__adapter_z(a, 0));
    ck_assert_ptr_null(t2__adapter_svd(a));
    ck_assert_ptr_null(t2__adapter_lora(sa));
    ck_assert_ptr_nonnull(t2__adapter_lora(a));
    t2_mcache *mc = t2_mcache_new(1 << 20);
    ck_assert_ptr_null(t2_mcache_get(mc, a, 0, &s));
    ck_assert_int_eq(s, T2_ERR_INVALID_ARG);
    t2_mcache_free(mc);

    /* decode: a LoRA of another model */
    t2_ctx *c = tu_ctx_new(m, 16, 1, 16);
    int32_t tok[2] = {1, 2}, pos[2] = {0, 1}, sq[2] = {0, 0};
    const t2_adapter *ad[2] = {a, aq};
    static float out[2 * V];
    t2_batch b = {.n = 2, .token = tok, .pos = pos, .seq = sq};
    ck_assert_int_eq(t2_ctx_decode_adapted(c, &b, ad, out), T2_ERR_INVALID_ARG);
    TU_ASSERT_ERR_HAS("another model");
    ad[1] = a;
    ck_assert_int_eq(t2_ctx_decode_adapted(c, &b, ad, out), T2_OK);
    /* an SVF row in a context without its SVD cache is still refused with LoRA rows beside it */
    ad[0] = sa;
    ck_assert_int_eq(t2_ctx_decode_adapted(c, &b, ad, out), T2_ERR_INVALID_ARG);
    t2_ctx_free(c);

    /* gradient requests the contract rules out */
    int32_t ids[6] = {1, 2, 3, 4, 5, 6};
    float dl[4096], dz[4096];
    ck_assert_uint_le(t2_lora_n_params(l), 4096);
    double J;
    struct { t2_grad_request rq; const char *needle; } bad[] = {
        {{.lora = l, .adapter = sa, .svd = svd}, "no SVF adapter"},
        {{.lora = l, .dz = dz, .svd = svd}, "no SVF adapter"},
        {{.lora = lq, .dlora = dl}, "another model"},
        {{.dlora = dl}, "dlora needs"},
        {{.adapter = a}, "as lora"},
        {{.kl_coef = 0.1f}, "KL coefficient"},
        {{.lora = l, .kl_coef = -1}, "KL coefficient"},
        {{.lora = l, .kl_coef = NAN}, "KL coefficient"},
    };
    t2_weight_grads *dw = t2_weight_grads_new(m, &s);
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        t2_grad_request rq = bad[i].rq;
        rq.ids = ids, rq.n = 6, rq.k0 = 3, rq.weight = 1;
        ck_assert_msg(t2_logprob_grad(m, &rq, &J) == T2_ERR_INVALID_ARG, "case %zu accepted", i);
        TU_ASSERT_ERR_HAS(bad[i].needle);
    }
    t2_grad_request rq = {.ids = ids, .n = 6, .k0 = 3, .weight = 1, .lora = l, .dw = dw};
    ck_assert_int_eq(t2_logprob_grad(m, &rq, &J), T2_ERR_INVALID_ARG);
    t2_weight_grads_free(dw);

    t2_adapter_free(a), t2_adapter_free(aq), t2_adapter_free(sa);
    t2_expert_free(e);
    t2_lora_free(l), t2_lora_free(lq);
    t2_svd_free(svd);
    t2_model_free(q), t2_model_free(m);
    free(cp);
    tu_rm_rf(d);
    free(d);
}
END_TEST

static Suite *suite(void) {
    Suite *s = suite_create("lora");
    TCase *t = tcase_create("forward");
    tcase_add_test(t, test_new_is_base_llama);
    tcase_add_test(t, test_new_is_base_qwen);
    tcase_add_test(t, test_layout_llama_all);
    tcase_add_test(t, test_layout_qwen_attn);
    tcase_add_test(t, test_layout_llama_mlp);
    tcase_add_test(t, test_mixed_llama);
    tcase_add_test(t, test_mixed_qwen);
    tcase_add_test(t, test_mixed_bf16);
    suite_add_tcase(s, t);
    t = tcase_create("files");
    tcase_add_test(t, test_save_load);
    tcase_add_test(t, test_new_errors);
    tcase_add_test(t, test_clone);
    suite_add_tcase(s, t);
    t = tcase_create("gradients");
    tcase_add_test(t, test_grad_llama_all);
    tcase_add_test(t, test_grad_qwen_mlp_kl);
    tcase_add_test(t, test_grad_bf16_all_kl);
    tcase_add_test(t, test_grad_at_init);
    tcase_add_test(t, test_misuse);
    suite_add_tcase(s, t);
    return s;
}

int main(void) {
    const char *base = getenv("TMPDIR");
    char tmpl[4096];
    snprintf(tmpl, sizeof tmpl, "%s/t2lora.XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(tmpl)) {
        perror("mkdtemp");
        return 1;
    }
    g_root = tmpl;
    size_t n = strlen(g_root) + 16;
    char *cache = malloc(n), *llama = malloc(n), *qwen = malloc(n), *bf = malloc(n);
    if (!cache || !llama || !qwen || !bf) return 1;
    snprintf(cache, n, "%s/cache", g_root);
    snprintf(llama, n, "%s/llama", g_root);
    snprintf(qwen, n, "%s/qwen2", g_root);
    snprintf(bf, n, "%s/llama-bf16", g_root);
    setenv("T2_CACHE_DIR", cache, 1);
    g_llama = llama, g_qwen = qwen, g_bf16 = bf;
    mkdir(g_llama, 0755);
    mkdir(g_qwen, 0755);
    mkdir(g_bf16, 0755);
    int rc = tu_run(suite());
    tu_rm_rf(g_root);
    free(cache), free(llama), free(qwen), free(bf);
    return rc;
}
