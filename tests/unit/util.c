#include "util.h"

#include <t2/error.h>

#include "kernels.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int tu_run(Suite *s) {
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

char *tu_mkdtemp(void) {
    const char *base = getenv("TMPDIR");
    if (!base || !*base) base = "/tmp";
    size_t n = strlen(base) + 32;
    char *p = malloc(n);
    ck_assert_ptr_nonnull(p);
    snprintf(p, n, "%s/t2unit.XXXXXX", base);
    ck_assert_msg(mkdtemp(p) != NULL, "mkdtemp failed under %s", base);
    return p;
}

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

int tu_rm_rf(const char *path) {
    if (!path || nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS) == 0) return 0;
    return errno == ENOENT ? 0 : -1;
}

char *tu_join(const char *dir, const char *name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    ck_assert_ptr_nonnull(p);
    snprintf(p, n, "%s/%s", dir, name);
    return p;
}

char *tu_mkdir(const char *dir, const char *name) {
    char *p = tu_join(dir, name);
    ck_assert_int_eq(mkdir(p, 0755), 0);
    return p;
}

void tu_write_bytes(const char *path, const void *data, size_t len) {
    FILE *f = fopen(path, "wb");
    ck_assert_msg(f != NULL, "cannot create %s", path);
    if (len) ck_assert_uint_eq(fwrite(data, 1, len, f), len);
    ck_assert_int_eq(fclose(f), 0);
}

void tu_write_str(const char *path, const char *s) { tu_write_bytes(path, s, strlen(s)); }

unsigned char *tu_read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    ck_assert_int_eq(fseek(f, 0, SEEK_END), 0);
    long n = ftell(f);
    ck_assert_int_ge(n, 0);
    rewind(f);
    unsigned char *b = malloc((size_t)n + 1);
    ck_assert_ptr_nonnull(b);
    ck_assert_uint_eq(fread(b, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    b[n] = 0;
    *len = (size_t)n;
    return b;
}

void tu_write_st_raw(const char *path, const char *header, uint64_t hlen_override, const void *data, size_t data_len) {
    size_t hl = strlen(header);
    uint64_t n = hlen_override ? hlen_override : hl;
    size_t total = 8 + hl + data_len;
    unsigned char *buf = malloc(total ? total : 1);
    ck_assert_ptr_nonnull(buf);
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)(n >> (8 * i));
    memcpy(buf + 8, header, hl);
    if (data_len) memcpy(buf + 8 + hl, data, data_len);
    tu_write_bytes(path, buf, total);
    free(buf);
}

uint64_t tu_next(tu_rng *r) {
    uint64_t x = r->s ? r->s : 0x9e3779b97f4a7c15ull;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    r->s = x;
    return x * 0x2545f4914f6cdd1dull;
}

float tu_uniform(tu_rng *r) { return (float)((double)(tu_next(r) >> 11) * 0x1.0p-53 * 2.0 - 1.0); }

float tu_uniform_in(tu_rng *r, float lo, float hi) { return lo + (hi - lo) * (float)((double)(tu_next(r) >> 11) * 0x1.0p-53); }

t2_model *tu_load(const char *dir, int n_threads) {
    t2_model_params mp = t2_model_default_params();
    mp.path = dir;
    mp.n_threads = n_threads;
    t2_status err;
    t2_model *m = t2_model_load(&mp, &err);
    ck_assert_msg(m != NULL, "load %s: %s", dir, t2_last_error());
    ck_assert_int_eq(err, T2_OK);
    return m;
}

t2_ctx *tu_ctx_new(t2_model *m, int n_ctx, int n_seq, int n_batch) {
    t2_ctx_params cp = {.n_ctx = n_ctx, .n_seq = n_seq, .n_batch = n_batch};
    t2_status err;
    t2_ctx *c = t2_ctx_new(m, &cp, &err);
    ck_assert_msg(c != NULL, "ctx: %s", t2_last_error());
    return c;
}

/* ---- tiny random checkpoints ---- */

enum { QD = TU_NH * (TU_H / TU_NH), KVD = TU_NKV * (TU_H / TU_NH) };

typedef struct tens {
    char name[96];
    int64_t rows, cols; /* cols = 0: a vector */
    float *v;
} tens;

/* A value that is exact in BF16 and F16: 8-bit mantissa, |x| in [2^-12, 2) or 0. */
static float exact16(float x) {
    float b = t2_bf16_to_f32(t2_f32_to_bf16(x));
    return fabsf(b) < 0x1p-12f ? 0.0f : b;
}

static uint16_t to_f16(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    uint16_t h;
    if ((u & 0x7fffffffu) == 0) h = (uint16_t)(u >> 16);
    else {
        int e = (int)((u >> 23) & 0xff) - 127;
        h = (uint16_t)((u >> 16 & 0x8000) | (uint32_t)(e + 15) << 10 | (u & 0x7fffff) >> 13);
    }
    ck_assert_msg(t2_f16_to_f32(h) == x, "%a is not exact in F16", x);
    return h;
}

static void add(tens *t, int *n, tu_rng *r, int exact, const char *name, int64_t rows, int64_t cols, float scale,
                float offset) {
    tens *x = &t[(*n)++];
    snprintf(x->name, sizeof x->name, "%s", name);
    x->rows = rows;
    x->cols = cols;
    size_t numel = (size_t)rows * (size_t)(cols ? cols : 1);
    x->v = malloc(numel * sizeof(float));
    ck_assert_ptr_nonnull(x->v);
    for (size_t i = 0; i < numel; i++)
        x->v[i] = exact ? exact16(offset + scale * tu_uniform(r)) : offset + tu_uniform_in(r, -scale, scale);
}

void tu_write_checkpoint(const char *dir, const tu_ckpt *o) {
    const char *mt = o->model_type ? o->model_type : "llama";
    int qwen = !strcmp(mt, "qwen2");
    char cfg[1024];
    int len = snprintf(cfg, sizeof cfg,
                       "{\"model_type\": \"%s\", \"vocab_size\": %d, \"hidden_size\": %d, \"intermediate_size\": %d,"
                       " \"num_hidden_layers\": %d, \"num_attention_heads\": %d, \"num_key_value_heads\": %d,"
                       " \"rms_norm_eps\": 1e-05, \"rope_theta\": 10000.0, \"max_position_embeddings\": 256,"
                       " \"tie_word_embeddings\": %s, \"hidden_act\": \"silu\", \"bos_token_id\": 1, \"eos_token_id\": %d",
                       mt, TU_V, TU_H, TU_F, TU_L, TU_NH, TU_NKV, o->tie ? "true" : "false", o->eos ? o->eos : 2);
    if (o->sliding_window) len += snprintf(cfg + len, sizeof cfg - (size_t)len, ", \"sliding_window\": %d", o->sliding_window);
    snprintf(cfg + len, sizeof cfg - (size_t)len, "}");
    char *p = tu_join(dir, "config.json");
    tu_write_str(p, cfg);
    free(p);

    tens t[64];
    int n = 0;
    tu_rng r = {o->seed ? o->seed : 1234};
    int ex = o->exact16;
    add(t, &n, &r, ex, "model.embed_tokens.weight", TU_V, TU_H, 1.0f, 0.0f);
    if (!o->tie) add(t, &n, &r, ex, "lm_head.weight", TU_V, TU_H, 0.5f, 0.0f);
    add(t, &n, &r, ex, "model.norm.weight", TU_H, 0, 0.2f, 1.0f);
    for (int l = 0; l < TU_L; l++) {
        char nm[96];
#define T(suffix, rows, cols, scale, off)                                                                          \
    (snprintf(nm, sizeof nm, "model.layers.%d.%s", l, suffix), add(t, &n, &r, ex, nm, rows, cols, scale, off))
        T("input_layernorm.weight", TU_H, 0, 0.2f, 1.0f);
        T("post_attention_layernorm.weight", TU_H, 0, 0.2f, 1.0f);
        T("self_attn.q_proj.weight", QD, TU_H, 0.5f, 0.0f);
        T("self_attn.k_proj.weight", KVD, TU_H, 0.5f, 0.0f);
        T("self_attn.v_proj.weight", KVD, TU_H, 0.5f, 0.0f);
        T("self_attn.o_proj.weight", TU_H, QD, 0.3f, 0.0f);
        T("mlp.gate_proj.weight", TU_F, TU_H, 0.4f, 0.0f);
        T("mlp.up_proj.weight", TU_F, TU_H, 0.4f, 0.0f);
        T("mlp.down_proj.weight", TU_H, TU_F, 0.3f, 0.0f);
        if (qwen) {
            T("self_attn.q_proj.bias", QD, 0, 0.3f, 0.0f);
            T("self_attn.k_proj.bias", KVD, 0, 0.3f, 0.0f);
            T("self_attn.v_proj.bias", KVD, 0, 0.3f, 0.0f);
        }
#undef T
    }
    t2_tensor_info info[64];
    void *bufs[64];
    int m = 0;
    for (int i = 0; i < n; i++) {
        if (o->skip && !strcmp(o->skip, t[i].name)) continue;
        t2_tensor_info *ti = &info[m];
        memset(ti, 0, sizeof *ti);
        ti->name = t[i].name;
        ti->dtype = o->dtype;
        ti->ndim = t[i].cols ? 2 : 1;
        ti->shape[0] = t[i].rows;
        ti->shape[1] = t[i].cols;
        size_t have = (size_t)t[i].rows * (size_t)(t[i].cols ? t[i].cols : 1), numel = have;
        if (o->bad_shape && !strcmp(o->bad_shape, t[i].name)) {
            ti->shape[0] += 8;
            numel += 8 * (size_t)(t[i].cols ? t[i].cols : 1);
        }
        int is_i32 = o->i32 && !strcmp(o->i32, t[i].name);
        if (is_i32) ti->dtype = T2_I32;
        void *buf = calloc(numel, 4);
        ck_assert_ptr_nonnull(buf);
        for (size_t k = 0; k < numel; k++) {
            float x = k < have ? t[i].v[k] : 0.25f;
            if (is_i32) ((int32_t *)buf)[k] = (int32_t)(x * 100);
            else if (o->dtype == T2_F32) ((float *)buf)[k] = x;
            else if (o->dtype == T2_BF16) ((uint16_t *)buf)[k] = t2_f32_to_bf16(x);
            else ((uint16_t *)buf)[k] = to_f16(x);
        }
        ti->data = buf;
        bufs[m++] = buf;
    }
    p = tu_join(dir, "model.safetensors");
    ck_assert_int_eq(t2_st_write(p, info, (size_t)m, NULL), T2_OK);
    free(p);
    for (int i = 0; i < m; i++) free(bufs[i]);
    for (int i = 0; i < n; i++) free(t[i].v);
}
