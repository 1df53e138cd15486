/* SVF: the SVD cache, experts, mixtures and adapters (t2/svf.h), on tiny random checkpoints written
 * by tu_write_checkpoint (llama, and qwen2 with q/k/v biases and tied embeddings).
 *
 * The numbers are checked against the engine itself (tests/ref/check_svf.py compares with PyTorch):
 * a mixed batch — base rows, rows under different factored and merged adapters, prompt chunks and
 * decode rows of several sequences, above and below the GEMM threshold — gives every row what the
 * same request gets alone; z = 1 is the base model; a damaged or mismatched SVD cache is rebuilt,
 * never used; an interrupted build resumes; every malformed expert is an error that names the
 * problem; the merged-weight cache stays correct under any budget. */
#include <t2/error.h>
#include <t2/model.h>
#include <t2/safetensors.h>
#include <t2/svf.h>

#include "adapter_cache.h"
#include "matmul.h"
#include "svf_impl.h"
#include "util.h"

#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* vocab, hidden, layers, heads, kv heads, head dim, ffn */
enum { V = TU_V, H = TU_H, L = TU_L, NH = TU_NH, NKV = TU_NKV, HD = H / NH, F = TU_F, QD = NH * HD, KVD = NKV * HD };

#define REL_TOL 1e-5

static char *g_root;      /* temporary folder of the whole run */
static char *g_llama;     /* model folders */
static char *g_qwen;
static char *g_llama_bf16;

/* ---------------- helpers ---------------- */

/* A fresh folder under the run's root. Caller frees. */
static char *fresh_dir(const char *stem) {
    static int k;
    char name[64];
    snprintf(name, sizeof name, "%s-%d-%d", stem, (int)getpid(), k++);
    return tu_mkdir(g_root, name);
}

static void copy_file(const char *from, const char *to) {
    size_t n;
    unsigned char *b = tu_read_file(from, &n);
    tu_write_bytes(to, b, n);
    free(b);
}

static int file_exists(const char *p) { return access(p, F_OK) == 0; }

/* max |a − b| / max |b| over n values */
static double rel_diff(const float *a, const float *b, size_t n) {
    double d = 0, m = 0;
    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)a[i] - b[i]);
        if (!(e <= d)) d = e; /* NaN propagates */
        if (fabs(b[i]) > m) m = fabs(b[i]);
    }
    return m > 0 ? d / m : d;
}

/* ---------------- checkpoints ---------------- */

/* The checkpoints are written by the first test that needs them (ck_assert only works inside tests);
 * with Check's fork mode later tests find them on disk. A random llama (untied lm_head) and qwen2 (q/k/v
 * biases, tied), values offset + uniform in [-scale, scale) as float, F32 or BF16. */
static void need_models(void) {
    char *p = tu_join(g_qwen, "model.safetensors");
    if (!file_exists(p)) {
        tu_write_checkpoint(g_llama, &(tu_ckpt){.seed = 1234});
        tu_write_checkpoint(g_llama_bf16, &(tu_ckpt){.dtype = T2_BF16, .seed = 4321});
        tu_write_checkpoint(g_qwen, &(tu_ckpt){.model_type = "qwen2", .tie = 1, .seed = 5678});
    }
    free(p);
}

static t2_model *load_model(const char *dir) {
    need_models();
    return tu_load(dir, 2);
}

/* ---------------- SVD caches ---------------- */

typedef struct events {
    char notes[4096];
    int built, loaded;      /* progress calls: decomposed now / taken from a partial build */
} events;

static void on_note(void *u, const char *msg) {
    events *e = u;
    size_t n = strlen(e->notes);
    snprintf(e->notes + n, sizeof e->notes - n, "%s\n", msg);
}

static void on_progress(void *u, int i, int n, const char *name, double secs, double err) {
    (void)n, (void)name, (void)secs;
    events *e = u;
    ck_assert_int_ge(i, 0);
    if (isnan(err)) e->loaded++;
    else e->built++;
}

/* Load (or build) the cache at path; ev (optional) collects notes and progress. */
static t2_svd *svd_open_dt(t2_model *m, t2_modules mods, const char *path, events *ev, int dtype) {
    t2_svd_params p = t2_svd_default_params();
    p.modules = mods;
    p.path = path;
    p.dtype = dtype;
    if (ev) {
        memset(ev, 0, sizeof *ev);
        p.note = on_note;
        p.progress = on_progress;
        p.user = ev;
    }
    t2_status s;
    t2_svd *svd = t2_svd_load(m, &p, &s);
    ck_assert_msg(svd != NULL, "svd load %s: %s", path, t2_last_error());
    return svd;
}

static t2_svd *svd_open(t2_model *m, t2_modules mods, const char *path, events *ev) { return svd_open_dt(m, mods, path, ev, -1); }

/* ---------------- experts and logits ---------------- */

/* An expert with z uniform in [lo, hi) for svd's matrices. */
static t2_expert *rand_expert(const t2_svd *svd, uint64_t seed, float lo, float hi, const char *label) {
    t2_status s;
    t2_expert *e = t2_expert_new(svd, label, &s);
    ck_assert_msg(e != NULL, "%s", t2_last_error());
    tu_rng r = {seed};
    for (int i = 0; i < t2_expert_count(e); i++)
        for (int j = 0; j < t2_expert_len(e, i); j++) t2_expert_z(e, i)[j] = tu_uniform_in(&r, lo, hi);
    return e;
}

static t2_adapter *adapter(const t2_svd *svd, const t2_expert *e, t2_apply mode) {
    t2_status s;
    t2_adapter *a = t2_adapter_new(svd, e, mode, &s);
    ck_assert_msg(a != NULL, "adapter: %s", t2_last_error());
    return a;
}

static int32_t tok_at(int seq, int pos) { return (int32_t)((seq * 131 + pos * 29 + 7) % V); }

/* Logits of every position of tokens tok_at(seq, 0..n-1), one prompt batch, under adapter a (NULL:
 * base via t2_ctx_decode). out: [n × V]. */
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

/* ---------------- (a) mixed batches ---------------- */

enum { NREQ = 6, MAXT = 24, MAXROWS = 48 };

typedef struct seg { int seq, from, to; } seg;

static void mixed_batch_case(const char *dir, t2_modules mods) {
    t2_model *m = load_model(dir);
    char *d = fresh_dir("mixed");
    char *cp = tu_join(d, "svd.safetensors");
    t2_svd *svd = svd_open(m, mods, cp, NULL);
    t2_expert *ea = rand_expert(svd, 11, 0.5f, 1.5f, "A"), *eb = rand_expert(svd, 12, 0.5f, 1.5f, "B"),
              *ec = rand_expert(svd, 13, 0.5f, 1.5f, "C");
    t2_adapter *A = adapter(svd, ea, T2_APPLY_FACTORED), *B = adapter(svd, eb, T2_APPLY_FACTORED),
               *C = adapter(svd, ec, T2_APPLY_MERGED);
    /* requests: adapter, prompt length, total length */
    const t2_adapter *req_ad[NREQ] = {NULL, A, B, C, A, C};
    const int prompt[NREQ] = {7, 20, 5, 12, 3, 1}, total[NREQ] = {10, 23, 8, 15, 6, 4};

    /* one at a time: the prompt as one batch, then one decode row per token */
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
        t2_status s = req_ad[q] ? t2_ctx_decode_adapted(c1, &b, ad, &ref[q][0][0]) : t2_ctx_decode(c1, &b, &ref[q][0][0]);
        ck_assert_msg(s == T2_OK, "%s", t2_last_error());
        for (int i = prompt[q]; i < total[q]; i++) {
            t2_batch b1 = {.n = 1, .token = tok + i, .pos = pos + i, .seq = sq, .want = want};
            s = t2_ctx_decode_adapted(c1, &b1, req_ad[q] ? ad : NULL, &ref[q][i][0]);
            ck_assert_msg(s == T2_OK, "%s", t2_last_error());
        }
    }

    /* all together: prompt chunks and decode rows of every sequence in the same batches */
    static const seg steps[][8] = {
        /* 36 rows: 17 factored (A 12 + B 5), 12 merged, 7 base */
        {{0, 0, 7}, {1, 0, 12}, {2, 0, 5}, {3, 0, 12}, {-1, 0, 0}},
        /* 15 rows: a chunk's second half, decode rows, new prompts */
        {{1, 12, 20}, {0, 7, 8}, {2, 5, 6}, {3, 12, 13}, {4, 0, 3}, {5, 0, 1}, {-1, 0, 0}},
        /* 6 decode rows */
        {{0, 8, 9}, {1, 20, 21}, {2, 6, 7}, {3, 13, 14}, {4, 3, 4}, {5, 1, 2}, {-1, 0, 0}},
        /* decode rows out of sequence order */
        {{3, 14, 15}, {1, 21, 22}, {0, 9, 10}, {5, 2, 3}, {4, 4, 5}, {-1, 0, 0}},
        {{5, 3, 4}, {2, 7, 8}, {1, 22, 23}, {4, 5, 6}, {-1, 0, 0}},
    };
    t2_ctx *c = tu_ctx_new(m, 32, NREQ, MAXROWS);
    ck_assert_int_eq(t2_ctx_set_svd(c, svd, 0), T2_OK);
    int covered[NREQ] = {0}, saw_big = 0, saw_small = 0;
    static float out[MAXROWS][V];
    for (size_t st = 0; st < sizeof steps / sizeof *steps; st++) {
        int32_t tok[MAXROWS], pos[MAXROWS], sq[MAXROWS];
        uint8_t want[MAXROWS];
        const t2_adapter *ad[MAXROWS];
        int n = 0;
        for (const seg *g = steps[st]; g->seq >= 0; g++)
            for (int p = g->from; p < g->to; p++) {
                ck_assert_int_eq(p, covered[g->seq]);
                covered[g->seq]++;
                tok[n] = tok_at(g->seq, p), pos[n] = p, sq[n] = g->seq, want[n] = 1, ad[n] = req_ad[g->seq];
                n++;
            }
        saw_big |= n > T2_GEMM_MIN_ROWS;
        saw_small |= n < T2_GEMM_MIN_ROWS;
        t2_batch b = {.n = n, .token = tok, .pos = pos, .seq = sq, .want = want};
        ck_assert_msg(t2_ctx_decode_adapted(c, &b, ad, &out[0][0]) == T2_OK, "%s", t2_last_error());
        for (int r = 0; r < n; r++) {
            double e = rel_diff(out[r], ref[sq[r]][pos[r]], V);
            ck_assert_msg(e <= REL_TOL, "%s %s: step %zu row %d (seq %d pos %d): %.3g from the request alone", dir,
                          t2_modules_name(mods), st, r, sq[r], pos[r], e);
        }
    }
    for (int q = 0; q < NREQ; q++) ck_assert_int_eq(covered[q], total[q]);
    ck_assert(saw_big && saw_small);

    /* the adapters really change the logits (so that the comparison above means something) */
    static float base[MAXT][V];
    prompt_logits(c1, NULL, 1, total[1], &base[0][0]);
    ck_assert_msg(rel_diff(&ref[1][0][0], &base[0][0], (size_t)total[1] * V) > 1e-3, "expert A changes nothing");

    t2_ctx_free(c);
    t2_ctx_free(c1);
    t2_adapter_free(A), t2_adapter_free(B), t2_adapter_free(C);
    t2_expert_free(ea), t2_expert_free(eb), t2_expert_free(ec);
    t2_svd_free(svd);
    t2_model_free(m);
    free(cp);
    free(d);
}

START_TEST(test_mixed_batch_llama_all) { mixed_batch_case(g_llama, T2_MODULES_ALL); }
END_TEST

START_TEST(test_mixed_batch_qwen_all) { mixed_batch_case(g_qwen, T2_MODULES_ALL); }
END_TEST

START_TEST(test_mixed_batch_llama_mlp) { mixed_batch_case(g_llama, T2_MODULES_MLP); }
END_TEST

/* BF16 weights and a BF16 cache: the BF16 gemv kernels on U and Vt, merged W' stored in BF16 */
START_TEST(test_mixed_batch_bf16_all) { mixed_batch_case(g_llama_bf16, T2_MODULES_ALL); }
END_TEST

/* ---------------- (b) z = 1 is the base model ---------------- */

static void z_one_case(const char *dir, t2_modules mods) {
    t2_model *m = load_model(dir);
    char *d = fresh_dir("zone");
    char *cp = tu_join(d, "svd.safetensors");
    t2_svd *svd = svd_open(m, mods, cp, NULL);
    for (int i = 0; i < t2_svd_count(svd); i++)
        ck_assert_msg(t2_svd_error(svd, i) < 1e-5, "%s: reconstruction error %g", t2_svd_name(svd, i), t2_svd_error(svd, i));
    t2_status s;
    t2_expert *e = t2_expert_new(svd, "one", &s);
    ck_assert_ptr_nonnull(e);
    t2_adapter *fa = adapter(svd, e, T2_APPLY_FACTORED), *ma = adapter(svd, e, T2_APPLY_MERGED);
    enum { N = 20 };
    static float base[N * V], f[N * V], mg[N * V];
    t2_ctx *c = tu_ctx_new(m, N, 1, N);
    ck_assert_int_eq(t2_ctx_set_svd(c, svd, 0), T2_OK);
    for (int n = 5; n <= N; n += N - 5) { /* gemv and GEMM paths */
        prompt_logits(c, NULL, 0, n, base);
        prompt_logits(c, fa, 0, n, f);
        prompt_logits(c, ma, 0, n, mg);
        ck_assert_msg(rel_diff(f, base, (size_t)n * V) <= REL_TOL, "factored z=1: %g", rel_diff(f, base, (size_t)n * V));
        ck_assert_msg(rel_diff(mg, base, (size_t)n * V) <= REL_TOL, "merged z=1: %g", rel_diff(mg, base, (size_t)n * V));
    }
    t2_ctx_free(c);
    t2_adapter_free(fa), t2_adapter_free(ma);
    t2_expert_free(e);
    t2_svd_free(svd);
    t2_model_free(m);
    free(cp), free(d);
}

START_TEST(test_z_one_is_base) {
    z_one_case(g_llama, T2_MODULES_MLP);
    z_one_case(g_llama, T2_MODULES_ALL);
    z_one_case(g_qwen, T2_MODULES_ATTN);
}
END_TEST

/* ---------------- (c) damaged or mismatched SVD caches ---------------- */

/* Rewrite the cache src as dst with changes: metadata key set to value (NULL: drop it), tensor
 * `shape_of` given one row less, singular values `scale_s` times larger. */
static void rewrite_cache(const char *src, const char *dst, const char *key, const char *value, const char *shape_of,
                          float scale_s) {
    t2_status s;
    t2_st *st = t2_st_open(src, &s);
    ck_assert_msg(st != NULL, "%s", t2_last_error());
    size_t n = t2_st_count(st), nm = t2_st_meta_count(st);
    t2_tensor_info *t = calloc(n, sizeof *t);
    const char **meta = calloc(2 * nm + 3, sizeof *meta);
    float **scaled = calloc(n, sizeof *scaled);
    ck_assert(t && meta && scaled);
    for (size_t i = 0; i < n; i++) {
        t[i] = *t2_st_at(st, i);
        if (shape_of && !strcmp(t[i].name, shape_of)) t[i].shape[0]--;
        size_t ln = strlen(t[i].name);
        if (scale_s != 1.0f && ln > 2 && !strcmp(t[i].name + ln - 2, ".S")) {
            size_t r = (size_t)t[i].shape[0];
            scaled[i] = malloc(r * sizeof(float));
            memcpy(scaled[i], t[i].data, r * sizeof(float));
            for (size_t j = 0; j < r; j++) scaled[i][j] *= scale_s;
            t[i].data = scaled[i];
        }
    }
    size_t k = 0;
    int seen = 0;
    for (size_t i = 0; i < nm; i++) {
        const char *kk = t2_st_meta_key(st, i);
        if (key && !strcmp(kk, key)) {
            seen = 1;
            if (!value) continue;
            meta[k++] = kk, meta[k++] = value;
        } else {
            meta[k++] = kk, meta[k++] = t2_st_meta(st, kk);
        }
    }
    if (key && value && !seen) meta[k++] = key, meta[k++] = value;
    meta[k] = NULL;
    ck_assert_int_eq(t2_st_write(dst, t, n, meta), T2_OK);
    for (size_t i = 0; i < n; i++) free(scaled[i]);
    free(scaled), free(t), free(meta);
    t2_st_free(st);
}

/* The cache at path loads (asking for dtype, -1 = any) by rebuilding (a note naming `why`) in the
 * model's F32, its factors are those of a fresh build (ref), a second load uses the rebuilt file as it
 * is, and an adapter on it gives ref's logits. */
static void expect_rebuilt_dtype(t2_model *m, t2_modules mods, const char *path, const t2_svd *ref, const char *why,
                                 int dtype) {
    events ev;
    t2_svd *svd = svd_open_dt(m, mods, path, &ev, dtype);
    ck_assert_msg(strstr(ev.notes, "rebuilding") && strstr(ev.notes, why), "notes \"%s\" do not say rebuilding: %s",
                  ev.notes, why);
    ck_assert_msg(t2__svd_dtype(svd) == T2_F32, "a damaged cache was rebuilt as %s, not in the model's F32",
                  t2_dtype_name(t2__svd_dtype(svd)));
    ck_assert_int_eq(ev.built, t2_svd_count(ref));
    ck_assert_int_eq(t2_svd_count(svd), t2_svd_count(ref));
    for (int i = 0; i < t2_svd_count(svd); i++) {
        ck_assert_str_eq(t2_svd_name(svd, i), t2_svd_name(ref, i));
        ck_assert_int_eq(t2_svd_rank(svd, i), t2_svd_rank(ref, i));
        ck_assert_msg(rel_diff(t2_svd_values(svd, i), t2_svd_values(ref, i), (size_t)t2_svd_rank(ref, i)) < 1e-6,
                      "%s: singular values differ from a fresh build", t2_svd_name(svd, i));
    }
    /* the rebuilt file is used as it is next time */
    events ev2;
    t2_svd *again = svd_open_dt(m, mods, path, &ev2, dtype);
    ck_assert_msg(ev2.notes[0] == 0 && ev2.built == 0, "second load rebuilt again: %s", ev2.notes);
    t2_svd_free(again);
    /* and it works */
    t2_expert *e = rand_expert(svd, 5, 0.5f, 1.5f, "x"), *e2 = rand_expert(ref, 5, 0.5f, 1.5f, "x");
    t2_adapter *a = adapter(svd, e, T2_APPLY_FACTORED), *a2 = adapter(ref, e2, T2_APPLY_FACTORED);
    static float x[8 * V], y[8 * V];
    t2_ctx *c = tu_ctx_new(m, 8, 1, 8), *c2 = tu_ctx_new(m, 8, 1, 8);
    ck_assert_int_eq(t2_ctx_set_svd(c, svd, 0), T2_OK);
    ck_assert_int_eq(t2_ctx_set_svd(c2, ref, 0), T2_OK);
    prompt_logits(c, a, 2, 8, x);
    prompt_logits(c2, a2, 2, 8, y);
    ck_assert_msg(rel_diff(x, y, 8 * V) <= REL_TOL, "rebuilt cache gives other logits: %g", rel_diff(x, y, 8 * V));
    t2_ctx_free(c), t2_ctx_free(c2);
    t2_adapter_free(a), t2_adapter_free(a2);
    t2_expert_free(e), t2_expert_free(e2);
    t2_svd_free(svd);
}

static void expect_rebuilt(t2_model *m, t2_modules mods, const char *path, const t2_svd *ref, const char *why) {
    expect_rebuilt_dtype(m, mods, path, ref, why, -1);
}

START_TEST(test_cache_corrupt_rebuilt) {
    t2_model *m = load_model(g_llama);
    char *d = fresh_dir("corrupt");
    char *good = tu_join(d, "good.safetensors"), *p = tu_join(d, "svd.safetensors");
    char *attn = tu_join(d, "attn.safetensors");
    events ev;
    t2_svd *ref = svd_open(m, T2_MODULES_MLP, good, &ev);
    ck_assert_int_eq(ev.built, t2_svd_count(ref));
    ck_assert_int_eq(t2_svd_count(ref), 3 * L);
    ck_assert_str_eq(t2_svd_path(ref), good);
    ck_assert_int_eq(t2_svd_modules(ref), T2_MODULES_MLP);
    ck_assert_int_eq(t2_svd_find(ref, "model.layers.1.mlp.up_proj.weight"), 4);
    ck_assert_int_eq(t2_svd_find(ref, "model.layers.1.mlp.up_proj"), 4);
    ck_assert_int_eq(t2_svd_find(ref, "model.layers.1.self_attn.q_proj"), -1);
    /* loading the good one again builds nothing */
    t2_svd *same = svd_open(m, T2_MODULES_MLP, good, &ev);
    ck_assert_int_eq(ev.built, 0);
    ck_assert_msg(ev.notes[0] == 0, "%s", ev.notes);
    t2_svd_free(same);

    size_t n;
    unsigned char *bytes = tu_read_file(good, &n);

    /* truncated */
    tu_write_bytes(p, bytes, n / 2);
    expect_rebuilt(m, T2_MODULES_MLP, p, ref, "");
    /* truncated inside the header */
    tu_write_bytes(p, bytes, 20);
    expect_rebuilt(m, T2_MODULES_MLP, p, ref, "");
    /* empty file */
    tu_write_bytes(p, bytes, 0);
    expect_rebuilt(m, T2_MODULES_MLP, p, ref, "");
    /* another model's fingerprint — with singular values that would show if the file were used */
    rewrite_cache(good, p, "fingerprint", "0123456789abcdef", NULL, 2.0f);
    expect_rebuilt(m, T2_MODULES_MLP, p, ref, "0123456789abcdef");
    /* fingerprint metadata missing */
    rewrite_cache(good, p, "fingerprint", NULL, NULL, 2.0f);
    expect_rebuilt(m, T2_MODULES_MLP, p, ref, "base weights");
    /* a tensor of the wrong shape */
    rewrite_cache(good, p, NULL, NULL, "model.layers.1.mlp.down_proj.Vt", 1.0f);
    expect_rebuilt(m, T2_MODULES_MLP, p, ref, "model.layers.1.mlp.down_proj.Vt");
    rewrite_cache(good, p, NULL, NULL, "model.layers.0.mlp.gate_proj.S", 1.0f);
    expect_rebuilt(m, T2_MODULES_MLP, p, ref, "model.layers.0.mlp.gate_proj.S");
    /* the metadata says other modules */
    rewrite_cache(good, p, "modules", "attn", NULL, 2.0f);
    expect_rebuilt(m, T2_MODULES_MLP, p, ref, "modules");
    /* a real cache of other modules */
    t2_svd *sa = svd_open(m, T2_MODULES_ATTN, attn, NULL);
    ck_assert_int_eq(t2_svd_count(sa), 4 * L);
    t2_svd_free(sa);
    copy_file(attn, p);
    expect_rebuilt(m, T2_MODULES_MLP, p, ref, "modules");
    /* another dtype in the metadata (than asked for, or than the tensors have), another format, another version */
    rewrite_cache(good, p, "dtype", "BF16", NULL, 2.0f);
    expect_rebuilt_dtype(m, T2_MODULES_MLP, p, ref, "dtype", T2_F32);
    rewrite_cache(good, p, "format", "something-else", NULL, 2.0f);
    expect_rebuilt(m, T2_MODULES_MLP, p, ref, "not a T2 SVD cache");
    rewrite_cache(good, p, "version", "2", NULL, 2.0f);
    expect_rebuilt(m, T2_MODULES_MLP, p, ref, "version");
    /* not safetensors at all */
    tu_write_bytes(p, "hello, world, this is not a cache", 33);
    expect_rebuilt(m, T2_MODULES_MLP, p, ref, "");
    /* negative singular values */
    rewrite_cache(good, p, NULL, NULL, NULL, -1.0f);
    expect_rebuilt(m, T2_MODULES_MLP, p, ref, "singular values");
    /* metadata claiming BF16 over F32 tensors, no dtype asked for: the damaged file must not decide the
     * dtype of the rebuilt cache (the model's F32 is the default) */
    rewrite_cache(good, p, "dtype", "BF16", NULL, 2.0f);
    expect_rebuilt_dtype(m, T2_MODULES_MLP, p, ref, "", -1);

    free(bytes);
    t2_svd_free(ref);
    t2_model_free(m);
    free(good), free(p), free(attn), free(d);
}
END_TEST

/* ---------------- (d) an interrupted build resumes ---------------- */

/* Write the partial file of matrix i from a finished cache, as an interrupted build leaves it. */
static void write_partial(const t2_svd *svd, const char *cache, int i, const char *fingerprint) {
    t2_status s;
    t2_st *st = t2_st_open(cache, &s);
    ck_assert_ptr_nonnull(st);
    char dir[4200], file[4300], nm[3][160];
    snprintf(dir, sizeof dir, "%s.partial", cache);
    mkdir(dir, 0755);
    snprintf(file, sizeof file, "%s/%05d.safetensors", dir, i);
    static const char *sfx[3] = {"U", "S", "Vt"};
    t2_tensor_info t[3];
    for (int k = 0; k < 3; k++) {
        snprintf(nm[k], sizeof nm[k], "%s.%s", t2_svd_name(svd, i), sfx[k]);
        const t2_tensor_info *x = t2_st_find(st, nm[k]);
        ck_assert_ptr_nonnull(x);
        t[k] = *x;
        t[k].name = sfx[k];
    }
    const char *meta[] = {"fingerprint", fingerprint, "name", t2_svd_name(svd, i), "err", "1e-07", NULL};
    ck_assert_int_eq(t2_st_write(file, t, 3, meta), T2_OK);
    t2_st_free(st);
}

START_TEST(test_cache_resume) {
    t2_model *m = load_model(g_llama);
    char *d = fresh_dir("resume");
    char *p = tu_join(d, "svd.safetensors");
    char partial[4200], f3[4300], f4[4300];
    snprintf(partial, sizeof partial, "%s.partial", p);
    events ev;
    t2_svd *ref = svd_open(m, T2_MODULES_ALL, p, &ev);
    int n = t2_svd_count(ref);
    ck_assert_int_eq(n, 7 * L);
    ck_assert_int_eq(ev.built, n);
    ck_assert_msg(!file_exists(partial), "the partial folder outlived a finished build");
    const char *fp = t2_model_fingerprint(m);
    ck_assert_int_eq((int)strlen(fp), 16);

    /* an interrupted build: matrices 0..4 done, 5 made for other weights, 6 cut short */
    for (int i = 0; i < 5; i++) write_partial(ref, p, i, fp);
    write_partial(ref, p, 5, "fedcba9876543210");
    write_partial(ref, p, 6, fp);
    snprintf(f3, sizeof f3, "%s/%05d.safetensors", partial, 6);
    size_t len;
    unsigned char *b = tu_read_file(f3, &len);
    tu_write_bytes(f3, b, len - 100);
    free(b);
    snprintf(f4, sizeof f4, "%s/%05d.safetensors", partial, 5);
    ck_assert(file_exists(f4));
    ck_assert_int_eq(unlink(p), 0);

    t2_svd *svd = svd_open(m, T2_MODULES_ALL, p, &ev);
    ck_assert_msg(strstr(ev.notes, "resumed"), "notes: \"%s\"", ev.notes);
    ck_assert_int_eq(ev.loaded, 5);
    ck_assert_int_eq(ev.built, n - 5);
    ck_assert_msg(!file_exists(partial), "the partial folder outlived a resumed build");
    ck_assert(file_exists(p));
    for (int i = 0; i < n; i++)
        ck_assert_msg(rel_diff(t2_svd_values(svd, i), t2_svd_values(ref, i), (size_t)t2_svd_rank(ref, i)) < 1e-6, "%d", i);
    /* the resumed cache works like the first one */
    t2_expert *e = rand_expert(svd, 9, 0.5f, 1.5f, "r"), *e2 = rand_expert(ref, 9, 0.5f, 1.5f, "r");
    t2_adapter *a = adapter(svd, e, T2_APPLY_MERGED), *a2 = adapter(ref, e2, T2_APPLY_FACTORED);
    static float x[6 * V], y[6 * V];
    t2_ctx *c = tu_ctx_new(m, 8, 1, 8), *c2 = tu_ctx_new(m, 8, 1, 8);
    ck_assert_int_eq(t2_ctx_set_svd(c, svd, 0), T2_OK);
    ck_assert_int_eq(t2_ctx_set_svd(c2, ref, 0), T2_OK);
    prompt_logits(c, a, 3, 6, x);
    prompt_logits(c2, a2, 3, 6, y);
    ck_assert_msg(rel_diff(x, y, 6 * V) <= REL_TOL, "%g", rel_diff(x, y, 6 * V));
    /* a complete partial set and no cache: everything is taken from the partials */
    for (int i = 0; i < n; i++) write_partial(ref, p, i, fp);
    t2_svd_free(svd);
    ck_assert_int_eq(unlink(p), 0);
    svd = svd_open(m, T2_MODULES_ALL, p, &ev);
    ck_assert_int_eq(ev.loaded, n);
    ck_assert_int_eq(ev.built, 0);
    ck_assert(!file_exists(partial));
    /* verify: every matrix's reconstruction error measured again */
    t2_svd_params vp = t2_svd_default_params();
    vp.modules = T2_MODULES_ALL;
    vp.path = p;
    vp.verify = 1;
    vp.progress = on_progress;
    vp.note = on_note;
    memset(&ev, 0, sizeof ev);
    vp.user = &ev;
    t2_status vs;
    t2_svd *ver = t2_svd_load(m, &vp, &vs);
    ck_assert_msg(ver != NULL, "%s", t2_last_error());
    ck_assert_int_eq(ev.built, n); /* progress with a measured error for each */
    for (int i = 0; i < n; i++) ck_assert_msg(t2_svd_error(ver, i) < 1e-5, "%s: %g", t2_svd_name(ver, i), t2_svd_error(ver, i));
    t2_svd_free(ver);

    t2_ctx_free(c), t2_ctx_free(c2);
    t2_adapter_free(a), t2_adapter_free(a2);
    t2_expert_free(e), t2_expert_free(e2);
    t2_svd_free(svd);
    t2_svd_free(ref);
    t2_model_free(m);
    free(p), free(d);
}
END_TEST

/* Double precision (dgesdd): a single-precision cache is rebuilt when double is asked for, a double one
 * serves single requests, and it reconstructs the weights at least as well. */
START_TEST(test_cache_precision) {
    t2_model *m = load_model(g_llama);
    char *dir = fresh_dir("prec"), *path = tu_join(dir, "svd.safetensors");
    events ev;
    t2_svd *single = svd_open(m, T2_MODULES_ALL, path, &ev);
    double worst_single = 0;
    for (int i = 0; i < t2_svd_count(single); i++)
        if (t2_svd_error(single, i) > worst_single) worst_single = t2_svd_error(single, i);
    t2_svd_free(single);
    t2_svd_params p = t2_svd_default_params();
    p.modules = T2_MODULES_ALL;
    p.path = path;
    p.precision = 1;
    memset(&ev, 0, sizeof ev);
    p.note = on_note, p.progress = on_progress, p.user = &ev;
    t2_status st;
    t2_svd *dbl = t2_svd_load(m, &p, &st);
    ck_assert_msg(dbl, "%s", t2_last_error());
    ck_assert_msg(strstr(ev.notes, "double wanted"), "no rebuild note: %s", ev.notes);
    ck_assert_int_gt(ev.built, 0);
    double worst_double = 0;
    for (int i = 0; i < t2_svd_count(dbl); i++)
        if (t2_svd_error(dbl, i) > worst_double) worst_double = t2_svd_error(dbl, i);
    ck_assert_msg(worst_double <= worst_single * 1.01 + 1e-9, "double %g vs single %g", worst_double, worst_single);
    t2_svd_free(dbl);
    /* a single-precision request takes the double cache as it is */
    t2_svd *again = svd_open(m, T2_MODULES_ALL, path, &ev);
    ck_assert_int_eq(ev.built, 0);
    ck_assert_str_eq(ev.notes, "");
    t2_svd_free(again);
    free(path);
    tu_rm_rf(dir);
    free(dir);
    t2_model_free(m);
}
END_TEST

START_TEST(test_cache_default_path) {
    t2_model *m = load_model(g_llama);
    char buf[4096];
    ck_assert_int_eq(t2_svd_default_path(m, T2_MODULES_ATTN, T2_BF16, buf, sizeof buf), T2_OK);
    char want[4200];
    snprintf(want, sizeof want, "%s/svd-%s-attn-BF16.safetensors", getenv("T2_CACHE_DIR"), t2_model_fingerprint(m));
    ck_assert_str_eq(buf, want);
    ck_assert_int_ne(t2_svd_default_path(m, T2_MODULES_ATTN, T2_BF16, buf, 10), T2_OK);
    /* NULL path: the default one, in the model's dtype */
    t2_svd *svd = svd_open(m, T2_MODULES_MLP, NULL, NULL);
    ck_assert_int_eq(t2_svd_default_path(m, T2_MODULES_MLP, -1, buf, sizeof buf), T2_OK);
    ck_assert_str_eq(t2_svd_path(svd), buf);
    ck_assert(file_exists(buf));
    t2_svd_free(svd);
    t2_modules mm;
    ck_assert_int_eq(t2_modules_parse("all", &mm), T2_OK);
    ck_assert_int_eq(mm, T2_MODULES_ALL);
    ck_assert_int_ne(t2_modules_parse("mlpx", &mm), T2_OK);
    ck_assert_int_ne(t2_modules_parse(NULL, &mm), T2_OK);
    ck_assert_str_eq(t2_modules_name(T2_MODULES_ATTN), "attn");
    t2_model_free(m);
}
END_TEST

/* ---------------- (e) experts ---------------- */

typedef struct zfile {
    const char *skip;        /* leave this matrix out */
    const char *extra;       /* add a tensor with this name (length 8) */
    const char *short_one;   /* this matrix's z one value short */
    const char *nan_in;      /* this matrix's z holds a NaN */
    const char *fingerprint; /* NULL: the model's */
    const char *format;      /* NULL: no format metadata; "" = t2-expert */
    const char *version;     /* NULL: "1" */
} zfile;

/* Write an expert-like file for svd's matrices with the given defects. */
static void write_zfile(const t2_svd *svd, const char *path, const zfile *o) {
    int n = t2_svd_count(svd);
    t2_tensor_info t[64];
    char names[64][160];
    float *z[64] = {0};
    int k = 0;
    for (int i = 0; i < n; i++) {
        if (o->skip && !strcmp(o->skip, t2_svd_name(svd, i))) continue;
        int r = t2_svd_rank(svd, i);
        z[k] = malloc((size_t)r * sizeof(float));
        for (int j = 0; j < r; j++) z[k][j] = 1.0f + 0.01f * (float)j;
        if (o->nan_in && !strcmp(o->nan_in, t2_svd_name(svd, i))) z[k][r / 2] = NAN;
        if (o->short_one && !strcmp(o->short_one, t2_svd_name(svd, i))) r--;
        snprintf(names[k], sizeof names[k], "%s.z", t2_svd_name(svd, i));
        t[k] = (t2_tensor_info){.name = names[k], .dtype = T2_F32, .ndim = 1, .shape = {r}, .data = z[k]};
        k++;
    }
    static float eight[8] = {1, 1, 1, 1, 1, 1, 1, 1};
    if (o->extra) t[k++] = (t2_tensor_info){.name = o->extra, .dtype = T2_F32, .ndim = 1, .shape = {8}, .data = eight};
    const char *meta[16];
    int j = 0;
    if (o->format) meta[j++] = "format", meta[j++] = *o->format ? o->format : "t2-expert";
    meta[j++] = "version", meta[j++] = o->version ? o->version : "1";
    meta[j++] = "fingerprint", meta[j++] = o->fingerprint ? o->fingerprint : t2_model_fingerprint((t2_model *)t2__svd_model(svd));
    meta[j++] = "modules", meta[j++] = t2_modules_name(t2_svd_modules(svd));
    meta[j] = NULL;
    ck_assert_int_eq(t2_st_write(path, t, (size_t)k, meta), T2_OK);
    for (int i = 0; i < k; i++) free(z[i]);
}

/* Loading path against svd fails with status want and a message holding needle (and the import of
 * raw tensors too, when import_too). */
static void expect_load_error(const char *path, const t2_svd *svd, t2_status want, const char *needle, int import_too) {
    t2_status s = T2_OK;
    t2_expert *e = t2_expert_load(path, svd, &s);
    ck_assert_msg(e == NULL, "%s loaded although it should fail with \"%s\"", path, needle);
    ck_assert_msg(s == want, "%s: status %s, want %s (%s)", path, t2_strerror(s), t2_strerror(want), t2_last_error());
    TU_ASSERT_ERR_HAS(needle);
    if (import_too) {
        e = t2_expert_import(path, svd, &s);
        ck_assert_msg(e == NULL, "%s imported although it should fail with \"%s\"", path, needle);
        ck_assert_int_eq(s, want);
        TU_ASSERT_ERR_HAS(needle);
    }
}

START_TEST(test_expert_errors) {
    t2_model *m = load_model(g_llama);
    char *d = fresh_dir("experr");
    char *cp = tu_join(d, "svd.safetensors"), *p = tu_join(d, "e.safetensors");
    t2_svd *svd = svd_open(m, T2_MODULES_MLP, cp, NULL);
    t2_status s;

    /* a good one loads; with and without the svd */
    write_zfile(svd, p, &(zfile){.format = ""});
    t2_expert *e = t2_expert_load(p, svd, &s);
    ck_assert_msg(e != NULL, "%s", t2_last_error());
    ck_assert_int_eq(t2_expert_count(e), t2_svd_count(svd));
    t2_expert_free(e);
    e = t2_expert_load(p, NULL, &s);
    ck_assert_ptr_nonnull(e);
    t2_expert_free(e);

    /* truncated: at several lengths, never a crash */
    size_t len;
    unsigned char *b = tu_read_file(p, &len);
    size_t cuts[] = {0, 4, 8, 30, len / 2, len - 1};
    for (size_t i = 0; i < sizeof cuts / sizeof *cuts; i++) {
        tu_write_bytes(p, b, cuts[i]);
        e = t2_expert_load(p, svd, &s);
        ck_assert_msg(e == NULL && s != T2_OK, "truncated to %zu bytes but loaded", cuts[i]);
        ck_assert_msg(strstr(t2_last_error(), p) != NULL, "\"%s\" does not name the file", t2_last_error());
        e = t2_expert_load(p, NULL, &s);
        ck_assert(e == NULL && s != T2_OK);
    }
    free(b);
    /* a missing file */
    e = t2_expert_load("/nonexistent/e.safetensors", svd, &s);
    ck_assert(e == NULL && s != T2_OK);

    /* not an expert: no format metadata (but acceptable raw z tensors for import) */
    write_zfile(svd, p, &(zfile){.format = NULL});
    expect_load_error(p, svd, T2_ERR_FORMAT, "not a T2 expert", 0);
    e = t2_expert_import(p, svd, &s);
    ck_assert_msg(e != NULL, "%s", t2_last_error());
    ck_assert_str_eq(t2_expert_meta(e, "provenance"), p);
    ck_assert_str_eq(t2_expert_meta(e, "fingerprint"), t2_model_fingerprint(m));
    t2_expert_free(e);
    write_zfile(svd, p, &(zfile){.format = "t2-svd-cache"});
    expect_load_error(p, svd, T2_ERR_FORMAT, "not a T2 expert", 0);
    /* wrong version */
    write_zfile(svd, p, &(zfile){.format = "", .version = "7"});
    expect_load_error(p, svd, T2_ERR_VERSION, "version 7", 0);
    /* another model's fingerprint (import ignores it: raw tensors carry none that counts) */
    write_zfile(svd, p, &(zfile){.format = "", .fingerprint = "00000000deadbeef"});
    expect_load_error(p, svd, T2_ERR_VERSION, "00000000deadbeef", 0);
    /* a z of the wrong length */
    write_zfile(svd, p, &(zfile){.format = "", .short_one = "model.layers.1.mlp.up_proj"});
    expect_load_error(p, svd, T2_ERR_SHAPE, "model.layers.1.mlp.up_proj.z", 1);
    /* a missing matrix */
    write_zfile(svd, p, &(zfile){.format = "", .skip = "model.layers.1.mlp.down_proj"});
    expect_load_error(p, svd, T2_ERR_NOT_FOUND, "model.layers.1.mlp.down_proj", 1);
    /* an extra tensor naming no adapted matrix: attention with an mlp cache, a layer that does not exist */
    write_zfile(svd, p, &(zfile){.format = "", .extra = "model.layers.0.self_attn.q_proj.z"});
    expect_load_error(p, svd, T2_ERR_NOT_FOUND, "model.layers.0.self_attn.q_proj.z", 1);
    write_zfile(svd, p, &(zfile){.format = "", .extra = "model.layers.9.mlp.gate_proj.z"});
    expect_load_error(p, svd, T2_ERR_NOT_FOUND, "model.layers.9.mlp.gate_proj.z", 1);
    /* a tensor that is not a z vector at all */
    write_zfile(svd, p, &(zfile){.format = "", .extra = "model.layers.0.mlp.gate_proj.weight"});
    expect_load_error(p, svd, T2_ERR_FORMAT, "model.layers.0.mlp.gate_proj.weight", 1);
    /* NaN in z */
    write_zfile(svd, p, &(zfile){.format = "", .nan_in = "model.layers.0.mlp.gate_proj"});
    expect_load_error(p, svd, T2_ERR_FORMAT, "model.layers.0.mlp.gate_proj.z", 1);
    e = t2_expert_load(p, NULL, &s); /* also when only checked for form */
    ck_assert_ptr_null(e);
    /* an expert for attention against an mlp cache */
    char *ca = tu_join(d, "attn.safetensors");
    t2_svd *sa = svd_open(m, T2_MODULES_ATTN, ca, NULL);
    write_zfile(sa, p, &(zfile){.format = ""});
    expect_load_error(p, svd, T2_ERR_NOT_FOUND, "self_attn", 0);
    t2_svd_free(sa);

    t2_svd_free(svd);
    t2_model_free(m);
    free(cp), free(p), free(ca), free(d);
}
END_TEST

START_TEST(test_expert_roundtrip_and_mix) {
    t2_model *m = load_model(g_qwen);
    char *d = fresh_dir("expert");
    char *cp = tu_join(d, "svd.safetensors"), *p = tu_join(d, "e.safetensors");
    t2_svd *svd = svd_open(m, T2_MODULES_ALL, cp, NULL);
    int n = t2_svd_count(svd);
    t2_expert *e = rand_expert(svd, 21, 0.2f, 1.8f, "math");
    ck_assert_str_eq(t2_expert_meta(e, "label"), "math");
    ck_assert_str_eq(t2_expert_meta(e, "format"), "t2-expert");
    ck_assert_str_eq(t2_expert_meta(e, "version"), "1");
    ck_assert_str_eq(t2_expert_meta(e, "modules"), "all");
    ck_assert_str_eq(t2_expert_meta(e, "fingerprint"), t2_model_fingerprint(m));
    ck_assert_ptr_nonnull(t2_expert_meta(e, "created"));
    ck_assert_int_eq(t2_expert_set_meta(e, "trainer", "reinforce"), T2_OK);
    ck_assert_int_eq(t2_expert_set_meta(e, "settings", "{\"lr\": 0.002, \"batch\": 256}"), T2_OK);
    ck_assert_int_eq(t2_expert_set_meta(e, "metrics", "{\"gsm8k\": 0.79}"), T2_OK);
    ck_assert_int_eq(t2_expert_set_meta(e, "note", "ünïcode ✓"), T2_OK);
    ck_assert_int_eq(t2_expert_set_meta(e, "gone", "x"), T2_OK);
    ck_assert_int_eq(t2_expert_set_meta(e, "gone", NULL), T2_OK);
    ck_assert_ptr_null(t2_expert_meta(e, "gone"));
    ck_assert_int_ne(t2_expert_set_meta(e, "", "x"), T2_OK);
    ck_assert_int_eq(t2_expert_save(e, p), T2_OK);

    t2_status s;
    for (int with_svd = 0; with_svd < 2; with_svd++) {
        t2_expert *f = t2_expert_load(p, with_svd ? svd : NULL, &s);
        ck_assert_msg(f != NULL, "%s", t2_last_error());
        ck_assert_int_eq(t2_expert_count(f), n);
        for (int i = 0; i < n; i++) {
            ck_assert_str_eq(t2_expert_name(f, i), t2_svd_name(svd, i));
            ck_assert_int_eq(t2_expert_len(f, i), t2_svd_rank(svd, i));
            ck_assert(!memcmp(t2_expert_zc(f, i), t2_expert_zc(e, i), (size_t)t2_expert_len(e, i) * sizeof(float)));
        }
        ck_assert_int_eq(t2_expert_meta_count(f), t2_expert_meta_count(e));
        for (int i = 0; i < t2_expert_meta_count(e); i++) {
            const char *k = t2_expert_meta_key(e, i);
            ck_assert_msg(t2_expert_meta(f, k) != NULL, "metadata %s lost", k);
            ck_assert_str_eq(t2_expert_meta(f, k), t2_expert_meta(e, k));
        }
        t2_expert_free(f);
    }
    /* the file is what svf.h promises to Python readers */
    t2_st *st = t2_st_open(p, &s);
    ck_assert_ptr_nonnull(st);
    const t2_tensor_info *zi = t2_st_find(st, "model.layers.1.self_attn.k_proj.z");
    ck_assert_ptr_nonnull(zi);
    ck_assert_int_eq(zi->dtype, T2_F32);
    ck_assert_int_eq(zi->ndim, 1);
    ck_assert_int_eq(zi->shape[0], KVD < H ? KVD : H);
    ck_assert_str_eq(t2_st_meta(st, "label"), "math");
    t2_st_free(st);

    /* mixtures: per expert and per matrix */
    t2_expert *x = rand_expert(svd, 22, 0.5f, 1.5f, "code"), *y = rand_expert(svd, 23, 0.5f, 1.5f, "reason");
    const t2_expert *ex[3] = {e, x, y};
    float alpha[3] = {0.25f, 1.5f, -0.3f};
    t2_expert *mx = t2_expert_mix(ex, alpha, 3, 0, &s);
    ck_assert_msg(mx != NULL, "%s", t2_last_error());
    ck_assert_int_eq(t2_expert_count(mx), n);
    ck_assert_str_eq(t2_expert_meta(mx, "fingerprint"), t2_model_fingerprint(m));
    ck_assert_str_eq(t2_expert_meta(mx, "modules"), "all");
    for (int i = 0; i < n; i++)
        for (int j = 0; j < t2_expert_len(mx, i); j++) {
            double want = (double)alpha[0] * t2_expert_zc(e, i)[j] + (double)alpha[1] * t2_expert_zc(x, i)[j] +
                          (double)alpha[2] * t2_expert_zc(y, i)[j];
            ck_assert_msg(fabs(t2_expert_zc(mx, i)[j] - want) <= 1e-6 * fabs(want) + 1e-7, "mix %d %d", i, j);
        }
    float *pa = malloc(3 * (size_t)n * sizeof *pa);
    for (int j = 0; j < 3; j++)
        for (int i = 0; i < n; i++) pa[j * n + i] = (float)(j + 1) * 0.1f + (float)i * 0.01f;
    t2_expert *mp = t2_expert_mix(ex, pa, 3, 1, &s);
    ck_assert_msg(mp != NULL, "%s", t2_last_error());
    for (int i = 0; i < n; i++)
        for (int j = 0; j < t2_expert_len(mp, i); j++) {
            double want = (double)pa[0 * n + i] * t2_expert_zc(e, i)[j] + (double)pa[1 * n + i] * t2_expert_zc(x, i)[j] +
                          (double)pa[2 * n + i] * t2_expert_zc(y, i)[j];
            ck_assert_msg(fabs(t2_expert_zc(mp, i)[j] - want) <= 1e-6 * fabs(want) + 1e-7, "per-matrix mix %d %d", i, j);
        }
    /* a mixture saves and loads like any expert */
    ck_assert_int_eq(t2_expert_save(mp, p), T2_OK);
    t2_expert *mpl = t2_expert_load(p, svd, &s);
    ck_assert_msg(mpl != NULL, "%s", t2_last_error());
    ck_assert(!memcmp(t2_expert_zc(mpl, n - 1), t2_expert_zc(mp, n - 1), (size_t)t2_expert_len(mp, n - 1) * sizeof(float)));
    t2_expert_free(mpl);
    /* one expert with weight 1 is itself */
    float one = 1.0f;
    t2_expert *m1 = t2_expert_mix(ex, &one, 1, 0, &s);
    ck_assert_ptr_nonnull(m1);
    for (int i = 0; i < n; i++)
        ck_assert(!memcmp(t2_expert_zc(m1, i), t2_expert_zc(e, i), (size_t)t2_expert_len(e, i) * sizeof(float)));
    t2_expert_free(m1);
    /* errors: nothing to mix, experts of other matrices */
    ck_assert_ptr_null(t2_expert_mix(ex, alpha, 0, 0, &s));
    ck_assert_int_ne(s, T2_OK);
    char *cm = tu_join(d, "mlp.safetensors");
    t2_svd *sm = svd_open(m, T2_MODULES_MLP, cm, NULL);
    t2_expert *other = rand_expert(sm, 3, 0.5f, 1.5f, "mlp");
    const t2_expert *bad[2] = {e, other};
    ck_assert_ptr_null(t2_expert_mix(bad, alpha, 2, 0, &s));
    ck_assert_int_eq(s, T2_ERR_SHAPE);
    /* and an adapter refuses an expert of other matrices */
    ck_assert_ptr_null(t2_adapter_new(svd, other, T2_APPLY_FACTORED, &s));
    ck_assert_int_ne(s, T2_OK);
    ck_assert_ptr_null(t2_adapter_new(svd, e, (t2_apply)7, &s));
    ck_assert_int_ne(s, T2_OK);

    t2_expert_free(other);
    t2_svd_free(sm);
    free(pa);
    t2_expert_free(mx), t2_expert_free(mp), t2_expert_free(x), t2_expert_free(y), t2_expert_free(e);
    t2_svd_free(svd);
    t2_model_free(m);
    free(cp), free(cm), free(p), free(d);
}
END_TEST

/* ---------------- (f) the normalisation needs Σ(s ⊙ z) > 0 ---------------- */

START_TEST(test_adapter_refuses_nonpositive) {
    t2_model *m = load_model(g_llama);
    char *d = fresh_dir("nonpos");
    char *cp = tu_join(d, "svd.safetensors");
    t2_svd *svd = svd_open(m, T2_MODULES_MLP, cp, NULL);
    t2_status s;
    t2_expert *e = t2_expert_new(svd, NULL, &s);
    int k = 4;
    int r = t2_expert_len(e, k);
    float *z = t2_expert_z(e, k);
    const float *sv = t2_svd_values(svd, k);
    struct { const char *what; int mode; } cases[] = {{"zero", 0}, {"negative", 1}, {"cancelling", 2}, {"NaN", 3}};
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        for (int j = 0; j < r; j++) z[j] = cases[c].mode == 1 ? -1.0f : 0.0f;
        if (cases[c].mode == 2) { /* Σ s z = s0 − 1.0001·s0: mixed signs, just below zero */
            z[0] = 1.0f;
            z[1] = -sv[0] / sv[1] * 1.0001f;
        }
        if (cases[c].mode == 3) {
            for (int j = 0; j < r; j++) z[j] = 1.0f;
            z[3] = NAN;
        }
        for (int mode = 0; mode < 2; mode++) {
            t2_adapter *a = t2_adapter_new(svd, e, (t2_apply)mode, &s);
            ck_assert_msg(a == NULL, "%s z accepted", cases[c].what);
            ck_assert_int_eq(s, T2_ERR_INVALID_ARG);
            TU_ASSERT_ERR_HAS(t2_svd_name(svd, k));
        }
    }
    /* a z that is negative in places but has Σ(s ⊙ z) > 0 is fine */
    for (int j = 0; j < r; j++) z[j] = j % 3 ? 1.0f : -0.2f;
    t2_adapter *a = t2_adapter_new(svd, e, T2_APPLY_FACTORED, &s);
    ck_assert_msg(a != NULL, "%s", t2_last_error());
    ck_assert_int_eq(t2_adapter_mode(a), T2_APPLY_FACTORED);
    t2_adapter_free(a);
    t2_adapter_free(NULL);
    t2_expert_free(e);
    t2_svd_free(svd);
    t2_model_free(m);
    free(cp), free(d);
}
END_TEST

/* ---------------- (g) the merged-weight cache under a budget ---------------- */

START_TEST(test_merged_budget) {
    t2_model *m = load_model(g_qwen);
    char *d = fresh_dir("budget");
    char *cp = tu_join(d, "svd.safetensors");
    t2_svd *svd = svd_open(m, T2_MODULES_ALL, cp, NULL);
    t2_expert *ex[3];
    t2_adapter *fa[3], *ma[3];
    for (int i = 0; i < 3; i++) {
        ex[i] = rand_expert(svd, 40 + (uint64_t)i, 0.5f, 1.5f, "b");
        fa[i] = adapter(svd, ex[i], T2_APPLY_FACTORED);
        ma[i] = adapter(svd, ex[i], T2_APPLY_MERGED);
    }
    size_t mat_bytes = (size_t)F * H * sizeof(float); /* the largest matrix */
    enum { N = 24 };
    /* rows: 3 sequences, each with its own adapter; all merged, then all factored */
    int32_t tok[N], pos[N], sq[N];
    uint8_t want[N];
    const t2_adapter *adm[N], *adf[N];
    for (int r = 0; r < N; r++) {
        sq[r] = r % 3, pos[r] = r / 3, tok[r] = tok_at(sq[r], pos[r]), want[r] = 1;
        adm[r] = ma[sq[r]], adf[r] = fa[sq[r]];
    }
    t2_batch b = {.n = N, .token = tok, .pos = pos, .seq = sq, .want = want};
    static float ref[N * V], got[N * V];
    t2_ctx *c = tu_ctx_new(m, 16, 3, N);
    ck_assert_int_eq(t2_ctx_set_svd(c, svd, 0), T2_OK);
    ck_assert_int_eq(t2_ctx_decode_adapted(c, &b, adf, ref), T2_OK);
    size_t budgets[] = {1, mat_bytes - 1, mat_bytes, 2 * mat_bytes, 2 * mat_bytes + 100, 0};
    for (size_t i = 0; i < sizeof budgets / sizeof *budgets; i++) {
        ck_assert_int_eq(t2_ctx_set_svd(c, svd, budgets[i]), T2_OK);
        for (int rep = 0; rep < 2; rep++) { /* a second pass hits (or misses) the cache */
            for (int q = 0; q < 3; q++) t2_ctx_seq_clear(c, q);
            t2_status s = t2_ctx_decode_adapted(c, &b, adm, got);
            ck_assert_msg(s == T2_OK, "budget %zu: %s", budgets[i], t2_last_error());
            ck_assert_msg(rel_diff(got, ref, N * V) <= REL_TOL, "budget %zu pass %d: merged %g from factored", budgets[i], rep,
                          rel_diff(got, ref, N * V));
        }
        /* and decode rows one by one, one adapter after another */
        for (int r = 0; r < 6; r++) {
            int q = r % 3;
            t2_ctx_seq_clear(c, q);
            int32_t t0 = tok_at(q, 0), p0 = 0, s0 = q;
            t2_batch b1 = {.n = 1, .token = &t0, .pos = &p0, .seq = &s0, .want = NULL};
            const t2_adapter *a1 = ma[q];
            ck_assert_int_eq(t2_ctx_decode_adapted(c, &b1, &a1, got), T2_OK);
            ck_assert_msg(rel_diff(got, ref + (size_t)q * V, V) <= REL_TOL, "budget %zu single row", budgets[i]);
        }
    }

    /* the cache itself: LRU eviction within the budget, W' = U diag(c) Vt */
    t2_mcache *mc = t2_mcache_new(2 * mat_bytes);
    ck_assert_ptr_nonnull(mc);
    int g0 = t2_svd_find(svd, "model.layers.0.mlp.gate_proj"), u0 = t2_svd_find(svd, "model.layers.0.mlp.up_proj"),
        d1 = t2_svd_find(svd, "model.layers.1.mlp.down_proj");
    ck_assert(g0 >= 0 && u0 >= 0 && d1 >= 0);
    t2_status s;
    int order[][2] = {{0, g0}, {0, u0}, {1, g0}, {0, g0}, {2, d1}, {1, g0}, {0, u0}, {2, d1}};
    for (size_t i = 0; i < sizeof order / sizeof *order; i++) {
        const t2_adapter *a = ma[order[i][0]];
        int mat = order[i][1];
        const t2_weight *w = t2_mcache_get(mc, a, mat, &s);
        ck_assert_msg(w != NULL && s == T2_OK, "get %zu: %s", i, t2_last_error());
        ck_assert_msg(t2_mcache_used(mc) <= 2 * mat_bytes, "used %zu > budget %zu", t2_mcache_used(mc), 2 * mat_bytes);
        /* check W' against U diag(c) Vt recomposed here */
        const t2_weight *U = t2__svd_U(svd, mat), *Vt = t2__svd_Vt(svd, mat);
        ck_assert_int_eq(U->dtype, T2_F32);
        ck_assert_int_eq(w->rows, U->rows);
        ck_assert_int_eq(w->cols, Vt->cols);
        const float *cv = t2__adapter_c(a, mat), *u = U->data, *v = Vt->data, *wd = w->data;
        double worst = 0, mx = 0;
        for (int r = 0; r < U->rows; r++)
            for (int k = 0; k < Vt->cols; k++) {
                double acc = 0;
                for (int j = 0; j < U->cols; j++) acc += (double)u[r * U->cols + j] * cv[j] * v[j * Vt->cols + k];
                worst = fmax(worst, fabs(acc - wd[r * Vt->cols + k]));
                mx = fmax(mx, fabs(acc));
            }
        ck_assert_msg(worst <= 1e-5 * mx, "W' off by %g (max %g)", worst, mx);
    }
    /* a budget below one matrix caches nothing and says so by NULL without an error */
    t2_mcache *tiny = t2_mcache_new(mat_bytes / 2);
    ck_assert_ptr_null(t2_mcache_get(tiny, ma[0], g0, &s));
    ck_assert_int_eq(s, T2_OK);
    ck_assert_uint_eq(t2_mcache_used(tiny), 0);
    t2_mcache_free(tiny);
    t2_mcache_free(mc);

    t2_ctx_free(c);
    for (int i = 0; i < 3; i++) t2_adapter_free(fa[i]), t2_adapter_free(ma[i]), t2_expert_free(ex[i]);
    t2_svd_free(svd);
    t2_model_free(m);
    free(cp), free(d);
}
END_TEST

/* ---------------- misuse ---------------- */

START_TEST(test_decode_adapted_misuse) {
    t2_model *m = load_model(g_llama);
    t2_model *m2 = load_model(g_qwen);
    char *d = fresh_dir("misuse");
    char *c1p = tu_join(d, "a.safetensors"), *c2p = tu_join(d, "b.safetensors"), *c3p = tu_join(d, "c.safetensors");
    t2_svd *svd = svd_open(m, T2_MODULES_MLP, c1p, NULL), *svd_b = svd_open(m, T2_MODULES_MLP, c2p, NULL);
    t2_svd *svd_q = svd_open(m2, T2_MODULES_MLP, c3p, NULL);
    t2_expert *e = rand_expert(svd, 1, 0.5f, 1.5f, "x");
    t2_adapter *a = adapter(svd, e, T2_APPLY_FACTORED), *ab = adapter(svd_b, e, T2_APPLY_FACTORED);
    t2_ctx *c = tu_ctx_new(m, 8, 1, 8);
    int32_t tok = 3, pos = 0, sq = 0;
    t2_batch b = {.n = 1, .token = &tok, .pos = &pos, .seq = &sq};
    float out[V];
    const t2_adapter *ad = a;
    /* no SVD cache attached */
    ck_assert_int_eq(t2_ctx_decode_adapted(c, &b, &ad, out), T2_ERR_INVALID_ARG);
    /* the cache of another model */
    ck_assert_int_eq(t2_ctx_set_svd(c, svd_q, 0), T2_ERR_INVALID_ARG);
    ck_assert_int_eq(t2_ctx_set_svd(c, svd, 0), T2_OK);
    /* an adapter of another SVD cache */
    ad = ab;
    ck_assert_int_eq(t2_ctx_decode_adapted(c, &b, &ad, out), T2_ERR_INVALID_ARG);
    /* NULL adapters: the base model, same as t2_ctx_decode */
    float base[V];
    ck_assert_int_eq(t2_ctx_decode(c, &b, base), T2_OK);
    ck_assert_int_eq(t2_ctx_decode_adapted(c, &b, NULL, out), T2_OK);
    ck_assert(!memcmp(out, base, sizeof out));
    ad = NULL;
    ck_assert_int_eq(t2_ctx_decode_adapted(c, &b, &ad, out), T2_OK);
    ck_assert_msg(rel_diff(out, base, V) <= REL_TOL, "%g", rel_diff(out, base, V));
    ad = a;
    ck_assert_int_eq(t2_ctx_decode_adapted(c, &b, &ad, out), T2_OK);
    t2_ctx_free(c);
    t2_adapter_free(a), t2_adapter_free(ab);
    t2_expert_free(e);
    t2_svd_free(svd), t2_svd_free(svd_b), t2_svd_free(svd_q);
    t2_model_free(m), t2_model_free(m2);
    free(c1p), free(c2p), free(c3p), free(d);
}
END_TEST

static Suite *suite(void) {
    Suite *s = suite_create("svf");
    TCase *t = tcase_create("mixed batches");
    tcase_add_test(t, test_mixed_batch_llama_all);
    tcase_add_test(t, test_mixed_batch_qwen_all);
    tcase_add_test(t, test_mixed_batch_llama_mlp);
    tcase_add_test(t, test_mixed_batch_bf16_all);
    tcase_add_test(t, test_z_one_is_base);
    suite_add_tcase(s, t);
    t = tcase_create("svd cache");
    tcase_add_test(t, test_cache_corrupt_rebuilt);
    tcase_add_test(t, test_cache_resume);
    tcase_add_test(t, test_cache_default_path);
    tcase_add_test(t, test_cache_precision);
    suite_add_tcase(s, t);
    t = tcase_create("experts");
    tcase_add_test(t, test_expert_errors);
    tcase_add_test(t, test_expert_roundtrip_and_mix);
    tcase_add_test(t, test_adapter_refuses_nonpositive);
    suite_add_tcase(s, t);
    t = tcase_create("adapters");
    tcase_add_test(t, test_merged_budget);
    tcase_add_test(t, test_decode_adapted_misuse);
    suite_add_tcase(s, t);
    return s;
}

int main(void) {
    const char *base = getenv("TMPDIR");
    char tmpl[4096];
    snprintf(tmpl, sizeof tmpl, "%s/t2svf.XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(tmpl)) {
        perror("mkdtemp");
        return 1;
    }
    g_root = tmpl;
    /* no ck_assert outside tests: plain allocations here */
    size_t n = strlen(g_root) + 16;
    char *cache = malloc(n), *llama = malloc(n), *qwen = malloc(n), *lbf = malloc(n);
    if (!cache || !llama || !qwen || !lbf) return 1;
    snprintf(cache, n, "%s/cache", g_root);
    snprintf(llama, n, "%s/llama", g_root);
    snprintf(lbf, n, "%s/llama-bf16", g_root);
    snprintf(qwen, n, "%s/qwen2", g_root);
    setenv("T2_CACHE_DIR", cache, 1);
    g_llama = llama;
    g_qwen = qwen;
    g_llama_bf16 = lbf;
    mkdir(g_llama, 0755);
    mkdir(g_qwen, 0755);
    mkdir(g_llama_bf16, 0755);

    int rc = tu_run(suite());
    tu_rm_rf(g_root);
    free(cache), free(g_llama), free(g_qwen), free(g_llama_bf16);
    return rc;
}
