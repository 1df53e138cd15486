/* Model loading and the forward pass, on tiny random checkpoints written here.
 *
 * There is no independent reference in this suite (tests/ref compares with PyTorch); instead it
 * checks invariants that any correct implementation keeps: the KV cache gives the same logits as a
 * one-shot prefill, a mixed batch gives each sequence what it gets alone, the GEMM and gemv paths
 * agree, F32/BF16/F16 copies of the same weights agree, errors leave the context usable. */
#include <t2/error.h>
#include <t2/model.h>
#include <t2/safetensors.h>
#include <t2/sampler.h>

#include "kernels.h"
#include "matmul.h"
#include "util.h"

#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { V = TU_V, H = TU_H, L = TU_L, NH = TU_NH, NKV = TU_NKV, HD = H / NH, F = TU_F, QD = NH * HD, KVD = NKV * HD };

/* The checkpoints of this suite: values exact in BF16 and F16, so that F32/BF16/F16 copies hold the same weights. */
static void write_ckpt(const char *dir, tu_ckpt o) {
    o.exact16 = 1;
    tu_write_checkpoint(dir, &o);
}

/* ---- shared checkpoints (made once per process) ---- */

static char *g_root, *g_f32, *g_bf16, *g_f16;

static void global_setup(void) {
    g_root = tu_mkdtemp();
    g_f32 = tu_mkdir(g_root, "f32");
    g_bf16 = tu_mkdir(g_root, "bf16");
    g_f16 = tu_mkdir(g_root, "f16");
    write_ckpt(g_f32, (tu_ckpt){.dtype = T2_F32});
    write_ckpt(g_bf16, (tu_ckpt){.dtype = T2_BF16});
    write_ckpt(g_f16, (tu_ckpt){.dtype = T2_F16});
}

static void global_teardown(void) {
    tu_rm_rf(g_root);
    free(g_root);
    free(g_f32);
    free(g_bf16);
    free(g_f16);
}

static void rand_tokens(int32_t *t, int n, uint64_t seed) {
    tu_rng r = {seed};
    for (int i = 0; i < n; i++) t[i] = (int32_t)(tu_next(&r) % V);
}

/* Feed tokens[0..n) of seq, from position start, in batches of chunk rows, logits of every row. */
static void feed(t2_ctx *c, int seq, const int32_t *tok, int n, int start, int chunk, float *out) {
    int32_t pos[256], sq[256];
    uint8_t want[256];
    for (int i = 0; i < n; i += chunk) {
        int k = n - i < chunk ? n - i : chunk;
        for (int j = 0; j < k; j++) {
            pos[j] = start + i + j;
            sq[j] = seq;
            want[j] = 1;
        }
        t2_batch b = {.n = k, .token = tok + i, .pos = pos, .seq = sq, .want = want};
        t2_status s = t2_ctx_decode(c, &b, out + (size_t)i * V);
        ck_assert_msg(s == T2_OK, "decode (seq %d, rows %d at %d): %s", seq, k, start + i, t2_last_error());
    }
    ck_assert_int_eq(t2_ctx_seq_len(c, seq), start + n);
}

/* A sequence alone, one token at a time, in a fresh context. */
static void run_alone(t2_model *m, const int32_t *tok, int n, float *out) {
    t2_ctx *c = tu_ctx_new(m, 128, 1, 4);
    feed(c, 0, tok, n, 0, 1, out);
    t2_ctx_free(c);
}

static double s_worst;

/* max |a - b| over the largest |b| of each row must be ≤ tol */
static void assert_close(const float *a, const float *b, int rows, double tol, const char *what) {
    for (int r = 0; r < rows; r++) {
        double mx = 0, err = 0;
        for (int i = 0; i < V; i++) {
            if (!isfinite(a[r * V + i]) || !isfinite(b[r * V + i])) ck_abort_msg("%s: row %d logit %d not finite", what, r, i);
            mx = fmax(mx, fabs(b[r * V + i]));
            err = fmax(err, fabs((double)a[r * V + i] - b[r * V + i]));
        }
        ck_assert_msg(mx > 0.1, "%s: row %d: logits suspiciously small (max %g)", what, r, mx);
        ck_assert_msg(err <= tol * mx, "%s: row %d: max difference %.3g, relative %.3g > %.3g", what, r, err, err / mx, tol);
        if (getenv("T2_TEST_VERBOSE") && err / mx > s_worst) {
            s_worst = err / mx;
            fprintf(stderr, "%s: row %d: relative difference %.3g (largest so far)\n", what, r, s_worst);
        }
    }
}

static int64_t expected_params(int tie, int bias) {
    int64_t per_layer = 2 * H + (int64_t)QD * H + 2 * (int64_t)KVD * H + (int64_t)H * QD + 3 * (int64_t)F * H +
                        (bias ? QD + 2 * KVD : 0);
    return (int64_t)V * H * (tie ? 1 : 2) + H + L * per_layer;
}

/* ---- loading ---- */

START_TEST(test_load_ok) {
    const char *dirs[3] = {g_f32, g_bf16, g_f16};
    t2_dtype dts[3] = {T2_F32, T2_BF16, T2_F16};
    for (int i = 0; i < 3; i++) {
        t2_model *m = tu_load(dirs[i], 2);
        const t2_model_config *c = t2_model_get_config(m);
        ck_assert_int_eq(c->vocab_size, V);
        ck_assert_int_eq(c->n_layers, L);
        ck_assert_int_eq(c->head_dim, HD);
        ck_assert_int_eq(t2_model_n_params(m), expected_params(0, 0));
        ck_assert_int_eq(t2_model_weight_dtype(m), dts[i]);
        size_t mats = (size_t)V * H + L * ((size_t)QD * H + 2 * (size_t)KVD * H + (size_t)H * QD + 3 * (size_t)F * H);
        ck_assert_uint_eq(t2_model_decode_bytes(m), mats * t2_dtype_size(dts[i]));
        ck_assert_ptr_nonnull(t2_st_find(t2_model_tensors(m), "lm_head.weight"));
        t2_model_free(m);
    }
    t2_model_free(NULL);
}
END_TEST

static char *s_dir;
static void dir_setup(void) { s_dir = tu_mkdtemp(); }
static void dir_teardown(void) {
    tu_rm_rf(s_dir);
    free(s_dir);
}

static t2_status load_fail(void) {
    t2_model_params mp = t2_model_default_params();
    mp.path = s_dir;
    mp.n_threads = 1;
    t2_status err = T2_OK;
    t2_model *m = t2_model_load(&mp, &err);
    ck_assert_msg(m == NULL, "loaded a bad checkpoint");
    return err;
}

START_TEST(test_load_tied) {
    write_ckpt(s_dir, (tu_ckpt){.dtype = T2_BF16, .tie = 1});
    t2_model *m = tu_load(s_dir, 1);
    ck_assert_int_eq(t2_model_n_params(m), expected_params(1, 0));
    /* a tied model still decodes */
    t2_ctx *c = tu_ctx_new(m, 16, 1, 8);
    int32_t tok[3] = {5, 6, 7};
    float lg[3 * V];
    feed(c, 0, tok, 3, 0, 3, lg);
    t2_ctx_free(c);
    t2_model_free(m);
}
END_TEST

START_TEST(test_load_qwen2) {
    write_ckpt(s_dir, (tu_ckpt){.dtype = T2_F32, .model_type = "qwen2"});
    t2_model *m = tu_load(s_dir, 2);
    ck_assert_int_eq(t2_model_n_params(m), expected_params(0, 1));
    ck_assert_int_eq(t2_model_get_config(m)->attention_bias, 1);
    /* biases are used on both paths alike: prefill vs one at a time */
    int32_t tok[20];
    rand_tokens(tok, 20, 9);
    float a[20 * V], b[20 * V];
    run_alone(m, tok, 20, a);
    t2_ctx *c = tu_ctx_new(m, 64, 1, 32);
    feed(c, 0, tok, 20, 0, 20, b);
    assert_close(b, a, 20, 1e-5, "qwen2 prefill vs incremental");
    t2_ctx_free(c);
    t2_model_free(m);
    /* and a qwen2 checkpoint without biases is refused, naming the bias */
    write_ckpt(s_dir, (tu_ckpt){.dtype = T2_F32, .model_type = "qwen2", .skip = "model.layers.1.self_attn.v_proj.bias"});
    ck_assert_int_eq(load_fail(), T2_ERR_NOT_FOUND);
    TU_ASSERT_ERR_HAS("model.layers.1.self_attn.v_proj.bias");
}
END_TEST

START_TEST(test_load_missing_tensor) {
    write_ckpt(s_dir, (tu_ckpt){.dtype = T2_F32, .skip = "model.layers.1.mlp.up_proj.weight"});
    ck_assert_int_eq(load_fail(), T2_ERR_NOT_FOUND);
    TU_ASSERT_ERR_HAS("model.layers.1.mlp.up_proj.weight");
    write_ckpt(s_dir, (tu_ckpt){.dtype = T2_F32, .skip = "model.norm.weight"});
    ck_assert_int_eq(load_fail(), T2_ERR_NOT_FOUND);
    TU_ASSERT_ERR_HAS("model.norm.weight");
}
END_TEST

START_TEST(test_load_misshaped) {
    write_ckpt(s_dir, (tu_ckpt){.dtype = T2_BF16, .bad_shape = "model.layers.0.self_attn.k_proj.weight"});
    ck_assert_int_eq(load_fail(), T2_ERR_SHAPE);
    TU_ASSERT_ERR_HAS("model.layers.0.self_attn.k_proj.weight");
    TU_ASSERT_ERR_HAS("[24,32]");   /* what the file has */
    TU_ASSERT_ERR_HAS("[16,32]");   /* what the config implies */
    write_ckpt(s_dir, (tu_ckpt){.dtype = T2_F32, .bad_shape = "model.layers.1.post_attention_layernorm.weight"});
    ck_assert_int_eq(load_fail(), T2_ERR_SHAPE);
    TU_ASSERT_ERR_HAS("model.layers.1.post_attention_layernorm.weight");
    TU_ASSERT_ERR_HAS("[40]");
    TU_ASSERT_ERR_HAS("[32]");
}
END_TEST

START_TEST(test_load_i32) {
    write_ckpt(s_dir, (tu_ckpt){.dtype = T2_F32, .i32 = "model.layers.0.mlp.gate_proj.weight"});
    ck_assert_int_eq(load_fail(), T2_ERR_SHAPE);
    TU_ASSERT_ERR_HAS("model.layers.0.mlp.gate_proj.weight");
    TU_ASSERT_ERR_HAS("I32");
}
END_TEST

START_TEST(test_load_no_lm_head) {
    write_ckpt(s_dir, (tu_ckpt){.dtype = T2_F32, .skip = "lm_head.weight"});
    ck_assert_int_eq(load_fail(), T2_ERR_NOT_FOUND);
    TU_ASSERT_ERR_HAS("lm_head.weight");
    TU_ASSERT_ERR_HAS("tie_word_embeddings");
}
END_TEST

START_TEST(test_load_no_files) {
    ck_assert_int_eq(load_fail(), T2_ERR_IO);   /* no config.json */
    TU_ASSERT_ERR_HAS("config.json");
    char *p = tu_join(s_dir, "config.json");
    tu_write_str(p, "{\"model_type\": \"llama\", \"vocab_size\": 64, \"hidden_size\": 32, \"intermediate_size\": 48,"
                    " \"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"bos_token_id\": 1}");
    free(p);
    ck_assert_int_eq(load_fail(), T2_ERR_NOT_FOUND);   /* no weights */
    TU_ASSERT_ERR_HAS("model.safetensors");
    t2_model_params mp = t2_model_default_params();
    t2_status err = T2_OK;
    ck_assert_ptr_null(t2_model_load(&mp, &err));   /* no path */
    ck_assert_int_eq(err, T2_ERR_INVALID_ARG);
}
END_TEST

/* ---- forward invariants ---- */

static const char *dtype_dir(int i) { return i == 0 ? g_f32 : i == 1 ? g_bf16 : g_f16; }

/* The kernel tables to run under: every one this CPU supports, selected through T2_KERNELS. */
static const char *s_tables[] = {"portable", "avx2", "avx512", "avx512bf16"};

START_TEST(test_prefill_vs_incremental) {
    /* _i: dtype 0..2 */
    t2_model *m = tu_load(dtype_dir(_i), 2);
    enum { N = 24 };
    int32_t tok[N];
    rand_tokens(tok, N, 100 + (uint64_t)_i);
    float *inc = malloc(N * V * sizeof(float)), *pre = malloc(N * V * sizeof(float));
    run_alone(m, tok, N, inc);
    /* n below T2_GEMM_MIN_ROWS (gemv path) and above it (sgemm path) */
    static const int ns[] = {1, 2, 7, T2_GEMM_MIN_ROWS - 1, T2_GEMM_MIN_ROWS, N};
    for (size_t k = 0; k < sizeof ns / sizeof *ns; k++) {
        t2_ctx *c = tu_ctx_new(m, 64, 1, 64);
        feed(c, 0, tok, ns[k], 0, ns[k], pre);
        char what[64];
        snprintf(what, sizeof what, "%s prefill of %d", t2_dtype_name(t2_model_weight_dtype(m)), ns[k]);
        assert_close(pre, inc, ns[k], 1e-5, what);
        /* want = NULL: only the last row */
        t2_ctx_seq_clear(c, 0);
        int32_t pos[N], sq[N] = {0};
        for (int i = 0; i < ns[k]; i++) pos[i] = i;
        float last[V];
        t2_batch b = {.n = ns[k], .token = tok, .pos = pos, .seq = sq, .want = NULL};
        ck_assert_int_eq(t2_ctx_decode(c, &b, last), T2_OK);
        assert_close(last, inc + (size_t)(ns[k] - 1) * V, 1, 1e-5, "want = NULL");
        t2_ctx_free(c);
    }
    free(inc);
    free(pre);
    t2_model_free(m);
}
END_TEST

START_TEST(test_mixed_batch) {
    /* _i: dtype */
    t2_model *m = tu_load(dtype_dir(_i), 2);
    enum { N0 = 12, N1 = 9, N2 = 14 };
    int32_t t0[N0], t1[N1], t2[N2];
    rand_tokens(t0, N0, 1);
    rand_tokens(t1, N1, 2);
    rand_tokens(t2, N2, 3);
    float r0[N0 * V], r1[N1 * V], r2[N2 * V];
    run_alone(m, t0, N0, r0);
    run_alone(m, t1, N1, r1);
    run_alone(m, t2, N2, r2);

    t2_ctx *c = tu_ctx_new(m, 64, 3, 32);
    float tmp[N2 * V];
    /* seq 1 and 2 have a history; seq 0 starts now */
    feed(c, 1, t1, N1 - 1, 0, 4, tmp);
    feed(c, 2, t2, 5, 0, 5, tmp);
    /* one batch: seq 0's first 7 tokens (a prompt chunk), seq 1's last token, seq 2's next token,
     * interleaved */
    int32_t tok[9], pos[9], sq[9];
    int n = 0;
#define ROW(s, t, p) (tok[n] = (t), pos[n] = (p), sq[n] = (s), n++)
    ROW(1, t1[N1 - 1], N1 - 1);
    ROW(0, t0[0], 0);
    ROW(0, t0[1], 1);
    ROW(2, t2[5], 5);
    ROW(0, t0[2], 2);
    ROW(0, t0[3], 3);
    ROW(0, t0[4], 4);
    ROW(0, t0[5], 5);
    ROW(0, t0[6], 6);
#undef ROW
    uint8_t want[9] = {1, 1, 0, 1, 1, 1, 1, 0, 1};
    float out[9 * V];
    t2_batch b = {.n = n, .token = tok, .pos = pos, .seq = sq, .want = want};
    ck_assert_msg(t2_ctx_decode(c, &b, out) == T2_OK, "mixed: %s", t2_last_error());
    ck_assert_int_eq(t2_ctx_seq_len(c, 0), 7);
    ck_assert_int_eq(t2_ctx_seq_len(c, 1), N1);
    ck_assert_int_eq(t2_ctx_seq_len(c, 2), 6);
    int o = 0;
    for (int r = 0; r < n; r++) {
        if (!want[r]) continue;
        const float *ref = sq[r] == 0 ? r0 : sq[r] == 1 ? r1 : r2;
        char what[64];
        snprintf(what, sizeof what, "mixed row %d (seq %d pos %d)", r, sq[r], pos[r]);
        assert_close(out + (size_t)o * V, ref + (size_t)pos[r] * V, 1, 1e-5, what);
        o++;
    }
    /* a big mixed batch (≥ T2_GEMM_MIN_ROWS rows): the rest of seq 0 and of seq 2 together */
    int32_t tk2[32], ps2[32], sq2[32];
    n = 0;
    for (int i = 7; i < N0; i++, n++) tk2[n] = t0[i], ps2[n] = i, sq2[n] = 0;
    for (int i = 6; i < N2; i++, n++) tk2[n] = t2[i], ps2[n] = i, sq2[n] = 2;
    /* pad with a rewind of seq 1 to reach the GEMM path */
    for (int i = 3; i < N1; i++, n++) tk2[n] = t1[i], ps2[n] = i, sq2[n] = 1;
    ck_assert_int_ge(n, T2_GEMM_MIN_ROWS);
    uint8_t w2[32];
    memset(w2, 1, sizeof w2);
    float *out2 = malloc((size_t)n * V * sizeof(float));
    t2_batch b2 = {.n = n, .token = tk2, .pos = ps2, .seq = sq2, .want = w2};
    ck_assert_msg(t2_ctx_decode(c, &b2, out2) == T2_OK, "mixed 2: %s", t2_last_error());
    for (int r = 0; r < n; r++) {
        const float *ref = sq2[r] == 0 ? r0 : sq2[r] == 1 ? r1 : r2;
        char what[64];
        snprintf(what, sizeof what, "big mixed row %d (seq %d pos %d)", r, sq2[r], ps2[r]);
        assert_close(out2 + (size_t)r * V, ref + (size_t)ps2[r] * V, 1, 1e-5, what);
    }
    free(out2);
    t2_ctx_free(c);
    t2_model_free(m);
}
END_TEST

START_TEST(test_gemm_vs_gemv) {
    /* _i = dtype * 4 + table */
    int dt = _i / 4;
    const char *tname = s_tables[_i % 4];
    if (!t2_kernels_by_name(tname)) return;   /* not on this CPU */
    setenv("T2_KERNELS", tname, 1);
    t2_model *m = tu_load(dtype_dir(dt), 2);
    unsetenv("T2_KERNELS");
    enum { N = 40 };
    int32_t tok[N];
    rand_tokens(tok, N, 7);
    float *a = malloc(N * V * sizeof(float)), *b = malloc(N * V * sizeof(float));
    /* reference: chunks of T2_GEMM_MIN_ROWS - 1 (gemv only) */
    t2_ctx *c = tu_ctx_new(m, 64, 1, 64);
    feed(c, 0, tok, N, 0, T2_GEMM_MIN_ROWS - 1, a);
    static const int chunks[] = {N, T2_GEMM_MIN_ROWS, T2_GEMM_MIN_ROWS + 1, 3};
    for (size_t k = 0; k < sizeof chunks / sizeof *chunks; k++) {
        t2_ctx_seq_clear(c, 0);
        feed(c, 0, tok, N, 0, chunks[k], b);
        char what[96];
        snprintf(what, sizeof what, "%s/%s chunks of %d vs %d", tname, t2_dtype_name(t2_model_weight_dtype(m)), chunks[k],
                 T2_GEMM_MIN_ROWS - 1);
        assert_close(b, a, N, 1e-5, what);
    }
    t2_ctx_free(c);
    free(a);
    free(b);
    t2_model_free(m);
}
END_TEST

START_TEST(test_dtypes_agree) {
    /* the three checkpoints hold the same values (exact in BF16 and F16) */
    enum { N = 20 };
    int32_t tok[N];
    rand_tokens(tok, N, 55);
    float out[3][N * V];
    for (int d = 0; d < 3; d++) {
        t2_model *m = tu_load(dtype_dir(d), 2);
        t2_ctx *c = tu_ctx_new(m, 64, 1, 64);
        feed(c, 0, tok, 10, 0, 10, out[d]);
        feed(c, 0, tok + 10, 10, 10, 1, out[d] + 10 * V);
        t2_ctx_free(c);
        t2_model_free(m);
    }
    assert_close(out[1], out[0], N, 1e-5, "BF16 vs F32");
    assert_close(out[2], out[0], N, 1e-5, "F16 vs F32");
}
END_TEST

START_TEST(test_threads_agree) {
    enum { N = 20 };
    int32_t tok[N];
    rand_tokens(tok, N, 66);
    static const int threads[] = {1, 2, 3};
    float out[3][N * V];
    for (int k = 0; k < 3; k++) {
        t2_model *m = tu_load(g_bf16, threads[k]);
        t2_ctx *c = tu_ctx_new(m, 64, 1, 64);
        feed(c, 0, tok, 5, 0, 5, out[k]);
        feed(c, 0, tok + 5, 15, 5, 15, out[k] + 5 * V);
        t2_ctx_free(c);
        t2_model_free(m);
    }
    assert_close(out[1], out[0], N, 1e-6, "2 threads vs 1");
    assert_close(out[2], out[0], N, 1e-6, "3 threads vs 1");
}
END_TEST

START_TEST(test_decode_errors) {
    t2_model *m = tu_load(g_f32, 2);
    enum { N = 10, NB = 8 };
    int32_t tok[N];
    rand_tokens(tok, N, 77);
    float ref[N * V], out[NB * V];
    run_alone(m, tok, N, ref);
    t2_ctx *c = tu_ctx_new(m, 16, 2, NB);
    feed(c, 0, tok, 4, 0, 4, out);

    int32_t t1[NB + 1], p1[NB + 1], s1[NB + 1];
    for (int i = 0; i <= NB; i++) t1[i] = 3, p1[i] = i, s1[i] = 1;
    t2_batch b = {.n = 1, .token = t1, .pos = p1, .seq = s1, .want = NULL};
    struct {
        const char *what;
        int32_t tok, pos, seq;
        int n;
        t2_status want;
        const char *needle;
    } cases[] = {
        {"token = vocab", V, 4, 0, 1, T2_ERR_RANGE, "64"},
        {"token < 0", -1, 4, 0, 1, T2_ERR_RANGE, "-1"},
        {"position gap", 5, 6, 0, 1, T2_ERR_RANGE, "gap"},
        {"gap in a fresh sequence", 5, 1, 1, 1, T2_ERR_RANGE, "gap"},
        /* status.h calls a position out of range T2_ERR_RANGE; the engine says T2_ERR_FULL for any
         * position outside [0, n_ctx) — both accepted here (see the report) */
        {"negative position", 5, -1, 0, 1, T2_ERR_FULL, "-1"},
        {"position past n_ctx", 5, 16, 0, 1, T2_ERR_FULL, "16"},
        {"sequence = n_seq", 5, 0, 2, 1, T2_ERR_RANGE, "sequence 2"},
        {"sequence < 0", 5, 0, -1, 1, T2_ERR_RANGE, "sequence -1"},
        {"too many rows", 5, 0, 1, NB + 1, T2_ERR_FULL, "n_batch"},
        {"no rows", 5, 0, 1, 0, T2_ERR_INVALID_ARG, "batch"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        int32_t tk = cases[k].tok, ps = cases[k].pos, sq = cases[k].seq;
        t2_batch bb = {.n = 1, .token = &tk, .pos = &ps, .seq = &sq};
        if (cases[k].n != 1) bb = (t2_batch){.n = cases[k].n, .token = t1, .pos = p1, .seq = s1};
        t2_status s = t2_ctx_decode(c, &bb, out);
        int ok = s == cases[k].want || (cases[k].pos < 0 && s == T2_ERR_RANGE);
        ck_assert_msg(ok, "%s: status %d (%s), want %d; detail %s", cases[k].what, s, t2_strerror(s), cases[k].want,
                      t2_last_error());
        TU_ASSERT_ERR_HAS(cases[k].needle);
        ck_assert_int_eq(t2_ctx_seq_len(c, 0), 4);
        ck_assert_int_eq(t2_ctx_seq_len(c, 1), 0);
    }
    /* rows of one sequence out of order, or repeated */
    int32_t tk3[3] = {1, 2, 3}, ps3[3] = {4, 6, 5}, sq3[3] = {0, 0, 0};
    b = (t2_batch){.n = 3, .token = tk3, .pos = ps3, .seq = sq3};
    ck_assert_int_eq(t2_ctx_decode(c, &b, out), T2_ERR_RANGE);
    ps3[1] = 4;
    ck_assert_int_eq(t2_ctx_decode(c, &b, out), T2_ERR_RANGE);
    /* logits wanted but nowhere to put them */
    b = (t2_batch){.n = 1, .token = tok + 4, .pos = (int32_t[]){4}, .seq = (int32_t[]){0}};
    ck_assert_int_eq(t2_ctx_decode(c, &b, NULL), T2_ERR_INVALID_ARG);
    ck_assert_int_eq(t2_ctx_decode(c, NULL, out), T2_ERR_INVALID_ARG);
    ck_assert_int_eq(t2_ctx_seq_len(c, 0), 4);

    /* the context still works: continue seq 0 and compare */
    feed(c, 0, tok + 4, N - 4, 4, 3, out);
    assert_close(out, ref + 4 * V, NB < N - 4 ? NB : N - 4, 1e-5, "after errors");
    t2_ctx_free(c);
    t2_model_free(m);
}
END_TEST

START_TEST(test_full_context) {
    t2_model *m = tu_load(g_f32, 2);
    t2_ctx *c = tu_ctx_new(m, 8, 1, 8);
    int32_t tok[8];
    rand_tokens(tok, 8, 5);
    float out[8 * V];
    feed(c, 0, tok, 8, 0, 8, out);
    int32_t p = 8, s = 0, t = 1;
    t2_batch b = {.n = 1, .token = &t, .pos = &p, .seq = &s};
    ck_assert_int_eq(t2_ctx_decode(c, &b, out), T2_ERR_FULL);
    ck_assert_int_eq(t2_ctx_seq_len(c, 0), 8);
    t2_ctx_free(c);
    /* bad context parameters */
    t2_ctx_params cp = {.n_ctx = 0, .n_seq = 1, .n_batch = 1};
    t2_status err = T2_OK;
    ck_assert_ptr_null(t2_ctx_new(m, &cp, &err));
    ck_assert_int_eq(err, T2_ERR_INVALID_ARG);
    cp = (t2_ctx_params){.n_ctx = 8, .n_seq = 0, .n_batch = 1};
    ck_assert_ptr_null(t2_ctx_new(m, &cp, &err));
    cp = (t2_ctx_params){.n_ctx = 8, .n_seq = 1, .n_batch = 0};
    ck_assert_ptr_null(t2_ctx_new(m, &cp, &err));
    t2_ctx_free(NULL);
    t2_model_free(m);
}
END_TEST

START_TEST(test_seq_copy) {
    /* a prefix computed in one sequence and copied into others continues exactly as if computed there */
    t2_model *m = tu_load(g_bf16, 2);
    enum { N = 14, P = 8 };
    int32_t a[N], b[N];
    rand_tokens(a, N, 21);
    memcpy(b, a, P * sizeof *b);   /* b shares a's first P tokens */
    rand_tokens(b + P, N - P, 22);
    float ra[N * V], rb[N * V], out[N * V];
    run_alone(m, a, N, ra);
    run_alone(m, b, N, rb);
    t2_ctx *c = tu_ctx_new(m, 32, 3, 16);
    feed(c, 0, a, P, 0, P, out);
    ck_assert_int_eq(t2_ctx_seq_copy(c, 0, 1, P), T2_OK);
    ck_assert_int_eq(t2_ctx_seq_copy(c, 0, 2, P), T2_OK);
    ck_assert_int_eq(t2_ctx_seq_len(c, 1), P);
    feed(c, 1, a + P, N - P, P, 3, out);
    assert_close(out, ra + P * V, N - P, 1e-5, "a after a copied prefix");
    feed(c, 2, b + P, N - P, P, 6, out);
    assert_close(out, rb + P * V, N - P, 1e-5, "b after a copied prefix");
    /* the source is unchanged and goes on */
    feed(c, 0, a + P, N - P, P, 2, out);
    assert_close(out, ra + P * V, N - P, 1e-5, "the source after copies");
    /* a copy longer than the source holds, or out of range, is refused */
    ck_assert_int_eq(t2_ctx_seq_copy(c, 0, 1, N + 1), T2_ERR_RANGE);
    ck_assert_int_eq(t2_ctx_seq_copy(c, 0, 3, 1), T2_ERR_RANGE);
    ck_assert_int_eq(t2_ctx_seq_copy(c, -1, 1, 1), T2_ERR_RANGE);
    t2_ctx_free(c);
    t2_model_free(m);
}
END_TEST

START_TEST(test_seq_clear_reuse) {
    t2_model *m = tu_load(g_bf16, 2);
    enum { N = 12 };
    int32_t a[N], b[N];
    rand_tokens(a, N, 11);
    rand_tokens(b, N, 12);
    float ra[N * V], rb[N * V], out[N * V];
    run_alone(m, a, N, ra);
    run_alone(m, b, N, rb);
    t2_ctx *c = tu_ctx_new(m, 32, 2, 16);
    feed(c, 0, a, N, 0, 5, out);
    feed(c, 1, a, 6, 0, 6, out);
    t2_ctx_seq_clear(c, 0);
    ck_assert_int_eq(t2_ctx_seq_len(c, 0), 0);
    ck_assert_int_eq(t2_ctx_seq_len(c, 1), 6);
    /* after a clear the next row must be at position 0 */
    int32_t p = 3, s = 0, t = 1;
    t2_batch bad = {.n = 1, .token = &t, .pos = &p, .seq = &s};
    ck_assert_int_eq(t2_ctx_decode(c, &bad, out), T2_ERR_RANGE);
    feed(c, 0, b, N, 0, 4, out);
    assert_close(out, rb, N, 1e-5, "seq 0 reused");
    /* seq 1 is untouched by the reuse of seq 0 */
    feed(c, 1, a + 6, N - 6, 6, 1, out);
    assert_close(out, ra + 6 * V, N - 6, 1e-5, "seq 1 after seq 0 reuse");
    /* clearing an out-of-range sequence is a no-op */
    t2_ctx_seq_clear(c, 7);
    t2_ctx_seq_clear(c, -1);
    ck_assert_int_eq(t2_ctx_seq_len(c, 7), 0);
    t2_ctx_free(c);
    t2_model_free(m);
}
END_TEST

START_TEST(test_rewind) {
    /* rows starting before a sequence's length rewind it: the result is as if the sequence had
     * only ever seen the new tokens */
    t2_model *m = tu_load(g_f32, 2);
    enum { N = 10 };
    int32_t a[N], b[N];
    rand_tokens(a, N, 21);
    memcpy(b, a, sizeof b);
    for (int i = 4; i < N; i++) b[i] = (a[i] + 17) % V;
    float rb[N * V], out[N * V];
    run_alone(m, b, N, rb);
    t2_ctx *c = tu_ctx_new(m, 32, 1, 16);
    feed(c, 0, a, N, 0, N, out);
    feed(c, 0, b + 4, 3, 4, 3, out);
    ck_assert_int_eq(t2_ctx_seq_len(c, 0), 7);
    assert_close(out, rb + 4 * V, 3, 1e-5, "rewound rows");
    feed(c, 0, b + 7, N - 7, 7, 1, out);
    assert_close(out, rb + 7 * V, N - 7, 1e-5, "after rewind");
    t2_ctx_free(c);
    t2_model_free(m);
}
END_TEST

START_TEST(test_no_logits_wanted) {
    t2_model *m = tu_load(g_f32, 1);
    t2_ctx *c = tu_ctx_new(m, 16, 1, 8);
    int32_t tok[4] = {1, 2, 3, 4}, pos[4] = {0, 1, 2, 3}, sq[4] = {0};
    uint8_t want[4] = {0};
    t2_batch b = {.n = 4, .token = tok, .pos = pos, .seq = sq, .want = want};
    ck_assert_int_eq(t2_ctx_decode(c, &b, NULL), T2_OK);
    ck_assert_int_eq(t2_ctx_seq_len(c, 0), 4);
    ck_assert_ptr_eq(t2_ctx_model(c), m);
    ck_assert_int_eq(t2_ctx_get_params(c).n_batch, 8);
    t2_ctx_free(c);
    t2_model_free(m);
}
END_TEST

START_TEST(test_sliding_window) {
    /* mistral, window 4, 2 layers: logits at position p depend on tokens p-6 .. p only (a query at i
     * sees keys j with i - j < 4, twice). Changing token 0 must not change positions ≥ 7 and must
     * change position 6. */
    write_ckpt(s_dir, (tu_ckpt){.dtype = T2_F32, .model_type = "mistral", .sliding_window = 4});
    t2_model *m = tu_load(s_dir, 2);
    ck_assert_int_eq(t2_model_get_config(m)->sliding_window, 4);
    enum { N = 12 };
    int32_t a[N], b[N];
    rand_tokens(a, N, 31);
    memcpy(b, a, sizeof b);
    b[0] = (a[0] + 1) % V;
    float ra[N * V], rb[N * V];
    run_alone(m, a, N, ra);
    run_alone(m, b, N, rb);
    double d6 = 0;
    for (int i = 0; i < V; i++) d6 = fmax(d6, fabs(ra[6 * V + i] - rb[6 * V + i]));
    ck_assert_msg(d6 > 1e-4, "token 0 does not reach position 6 (difference %g): window too small", d6);
    for (int p = 7; p < N; p++)
        for (int i = 0; i < V; i++)
            if (ra[p * V + i] != rb[p * V + i]) ck_abort_msg("token 0 reaches position %d: window too large", p);
    /* a batched prefill keeps the window too */
    t2_ctx *c = tu_ctx_new(m, 32, 1, 32);
    float out[N * V];
    feed(c, 0, a, N, 0, N, out);
    assert_close(out, ra, N, 1e-5, "mistral prefill vs incremental");
    t2_ctx_free(c);
    t2_model_free(m);
}
END_TEST


/* ---- generation ---- */

/* Greedy generation by hand: argmax of the logits, one decode row per token. */
static int greedy_by_hand(t2_model *m, const int32_t *prompt, int n_prompt, int n_gen, int32_t *out, float *lps) {
    t2_ctx *c = tu_ctx_new(m, 64, 1, 64);
    float lg[64 * V];
    feed(c, 0, prompt, n_prompt, 0, n_prompt, lg);
    float *last = lg + (size_t)(n_prompt - 1) * V;
    for (int t = 0; t < n_gen; t++) {
        int best = 0;
        for (int i = 1; i < V; i++)
            if (last[i] > last[best]) best = i;
        out[t] = best;
        lps[t] = t2_logprob(last, V, best);
        feed(c, 0, &out[t], 1, n_prompt + t, 1, lg);
        last = lg;
    }
    t2_ctx_free(c);
    return n_gen;
}

static t2_sampler *greedy_sampler(void) {
    t2_sampler_params sp = t2_sampler_default_params();
    t2_status err;
    t2_sampler *smp = t2_sampler_new(&sp, V, &err);
    ck_assert_ptr_nonnull(smp);
    return smp;
}

START_TEST(test_generate_greedy) {
    t2_model *m = tu_load(g_f32, 2);
    int32_t prompt[10];
    rand_tokens(prompt, 10, 91);
    int32_t want[8];
    float want_lp[8];
    greedy_by_hand(m, prompt, 10, 8, want, want_lp);
    /* n_batch 4: the prompt goes in three chunks */
    t2_ctx *c = tu_ctx_new(m, 64, 2, 4);
    t2_sampler *smp = greedy_sampler();
    t2_generate_params gp = {.max_tokens = 8};
    t2_generation g;
    ck_assert_msg(t2_generate(c, 1, prompt, 10, smp, &gp, &g) == T2_OK, "generate: %s", t2_last_error());
    ck_assert_int_eq(g.n, 8);
    ck_assert_int_eq(g.stop, T2_STOP_LENGTH);
    for (int i = 0; i < 8; i++) {
        ck_assert_int_eq(g.tokens[i], want[i]);
        ck_assert_float_eq_tol(g.logprobs[i], want_lp[i], 1e-4f);
    }
    /* the sequence holds prompt + generated tokens but the last */
    ck_assert_int_eq(t2_ctx_seq_len(c, 1), 10 + 7);
    t2_generation_clear(&g);
    t2_generation_clear(NULL);

    /* a callback stops it */
    int32_t stop1[1] = {want[2]};
    const int32_t *stops[1] = {stop1};
    int stop_lens[1] = {1};
    gp = (t2_generate_params){.max_tokens = 8, .stops = stops, .stop_lens = stop_lens, .n_stops = 1};
    ck_assert_int_eq(t2_generate(c, 0, prompt, 10, smp, &gp, &g), T2_OK);
    int first = 0;
    while (want[first] != want[2]) first++;
    ck_assert_int_eq(g.stop, T2_STOP_SEQUENCE);
    ck_assert_int_eq(g.n, first + 1);
    t2_generation_clear(&g);

    /* a two-token stop sequence */
    int32_t stop2[2] = {want[3], want[4]};
    stops[0] = stop2;
    stop_lens[0] = 2;
    ck_assert_int_eq(t2_generate(c, 0, prompt, 10, smp, &gp, &g), T2_OK);
    ck_assert_int_eq(g.stop, T2_STOP_SEQUENCE);
    ck_assert_int_le(g.n, 5);
    ck_assert_int_eq(g.tokens[g.n - 1], want[4]);
    t2_generation_clear(&g);

    /* max_tokens 0 */
    gp = (t2_generate_params){.max_tokens = 0};
    ck_assert_int_eq(t2_generate(c, 0, prompt, 10, smp, &gp, &g), T2_OK);
    ck_assert_int_eq(g.n, 0);
    t2_generation_clear(&g);
    /* bad arguments */
    gp.max_tokens = -1;
    ck_assert_int_eq(t2_generate(c, 0, prompt, 10, smp, &gp, &g), T2_ERR_INVALID_ARG);
    gp.max_tokens = 4;
    ck_assert_int_eq(t2_generate(c, 0, prompt, 0, smp, &gp, &g), T2_ERR_INVALID_ARG);
    ck_assert_ptr_null(g.tokens);
    t2_sampler_free(smp);
    t2_ctx_free(c);
    t2_model_free(m);
}
END_TEST

static int stop_after_3(void *user, int token, float logprob) {
    (void)token;
    (void)logprob;
    return ++*(int *)user == 3;
}

START_TEST(test_generate_callback_and_eos) {
    t2_model *m = tu_load(g_f32, 2);
    int32_t prompt[6];
    rand_tokens(prompt, 6, 92);
    int32_t want[10];
    float lp[10];
    greedy_by_hand(m, prompt, 6, 10, want, lp);
    t2_model_free(m);

    t2_sampler *smp = greedy_sampler();
    /* the callback */
    m = tu_load(g_f32, 2);
    t2_ctx *c = tu_ctx_new(m, 64, 1, 64);
    int calls = 0;
    t2_generate_params gp = {.max_tokens = 10, .on_token = stop_after_3, .user = &calls};
    t2_generation g;
    ck_assert_int_eq(t2_generate(c, 0, prompt, 6, smp, &gp, &g), T2_OK);
    ck_assert_int_eq(g.stop, T2_STOP_CALLBACK);
    ck_assert_int_eq(g.n, 3);
    ck_assert_int_eq(calls, 3);
    t2_generation_clear(&g);
    t2_ctx_free(c);
    t2_model_free(m);

    /* eos: the same weights with eos_token_id = the first token that appears at index ≥ 1 for the
     * first time */
    int k = 1;
    for (;; k++) {
        ck_assert_int_lt(k, 10);
        int seen = 0;
        for (int j = 0; j < k; j++) seen |= want[j] == want[k];
        if (!seen) break;
    }
    write_ckpt(s_dir, (tu_ckpt){.dtype = T2_F32, .eos = want[k]});
    m = tu_load(s_dir, 2);
    c = tu_ctx_new(m, 64, 1, 64);
    gp = (t2_generate_params){.max_tokens = 10, .stop_at_eos = 1};
    ck_assert_int_eq(t2_generate(c, 0, prompt, 6, smp, &gp, &g), T2_OK);
    ck_assert_int_eq(g.stop, T2_STOP_EOS);
    ck_assert_int_eq(g.n, k + 1);
    ck_assert_int_eq(g.tokens[k], want[k]);   /* the eos is kept */
    t2_generation_clear(&g);
    /* without stop_at_eos it runs on */
    gp.stop_at_eos = 0;
    ck_assert_int_eq(t2_generate(c, 0, prompt, 6, smp, &gp, &g), T2_OK);
    ck_assert_int_eq(g.n, 10);
    for (int i = 0; i < 10; i++) ck_assert_int_eq(g.tokens[i], want[i]);
    t2_generation_clear(&g);
    t2_ctx_free(c);
    t2_model_free(m);
    t2_sampler_free(smp);
}
END_TEST

START_TEST(test_generate_seeded) {
    /* sampling with a seed: the same seed gives the same tokens, in any context */
    t2_model *m = tu_load(g_bf16, 2);
    int32_t prompt[5];
    rand_tokens(prompt, 5, 93);
    t2_sampler_params sp = {.temperature = 1.0f, .top_k = 0, .top_p = 1.0f, .seed = 1234};
    t2_status err;
    t2_generation g[2];
    for (int i = 0; i < 2; i++) {
        t2_sampler *smp = t2_sampler_new(&sp, V, &err);
        t2_ctx *c = tu_ctx_new(m, 64, 1 + i, 8);
        t2_generate_params gp = {.max_tokens = 20};
        ck_assert_int_eq(t2_generate(c, i, prompt, 5, smp, &gp, &g[i]), T2_OK);
        t2_ctx_free(c);
        t2_sampler_free(smp);
    }
    ck_assert_int_eq(g[0].n, 20);
    ck_assert_int_eq(g[1].n, 20);
    ck_assert_int_eq(memcmp(g[0].tokens, g[1].tokens, 20 * sizeof(int32_t)), 0);
    t2_generation_clear(&g[0]);
    t2_generation_clear(&g[1]);
    t2_model_free(m);
}
END_TEST

static Suite *suite(void) {
    Suite *s = suite_create("model");
    TCase *tc = tcase_create("load");
    tcase_add_unchecked_fixture(tc, global_setup, global_teardown);
    tcase_add_checked_fixture(tc, dir_setup, dir_teardown);
    tcase_add_test(tc, test_load_ok);
    tcase_add_test(tc, test_load_tied);
    tcase_add_test(tc, test_load_qwen2);
    tcase_add_test(tc, test_load_missing_tensor);
    tcase_add_test(tc, test_load_misshaped);
    tcase_add_test(tc, test_load_i32);
    tcase_add_test(tc, test_load_no_lm_head);
    tcase_add_test(tc, test_load_no_files);
    suite_add_tcase(s, tc);

    tc = tcase_create("forward");
    tcase_add_unchecked_fixture(tc, global_setup, global_teardown);
    tcase_add_checked_fixture(tc, dir_setup, dir_teardown);
    tcase_add_loop_test(tc, test_prefill_vs_incremental, 0, 3);
    tcase_add_loop_test(tc, test_mixed_batch, 0, 3);
    tcase_add_loop_test(tc, test_gemm_vs_gemv, 0, 12);
    tcase_add_test(tc, test_dtypes_agree);
    tcase_add_test(tc, test_threads_agree);
    tcase_add_test(tc, test_decode_errors);
    tcase_add_test(tc, test_full_context);
    tcase_add_test(tc, test_seq_clear_reuse);
    tcase_add_test(tc, test_seq_copy);
    tcase_add_test(tc, test_rewind);
    tcase_add_test(tc, test_no_logits_wanted);
    tcase_add_test(tc, test_sliding_window);
    suite_add_tcase(s, tc);

    tc = tcase_create("generate");
    tcase_add_unchecked_fixture(tc, global_setup, global_teardown);
    tcase_add_checked_fixture(tc, dir_setup, dir_teardown);
    tcase_add_test(tc, test_generate_greedy);
    tcase_add_test(tc, test_generate_callback_and_eos);
    tcase_add_test(tc, test_generate_seeded);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return tu_run(suite()); }
