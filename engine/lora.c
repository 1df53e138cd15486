/* LoRA adapters (t2/lora.h): per adapted matrix W (rows × cols) two factors A (rank × cols) and
 * B (rows × rank), W' = W + (alpha/rank)·B·A.
 *
 * All parameters live in one block, matrix by matrix (A then B), so that a trainer can treat them as
 * one vector (Adam, gradient clipping) and the gradient of t2_logprob_grad lands in the same layout.
 * New LoRAs follow PEFT's initialisation: A from kaiming_uniform(a = √5), which for a [rank × cols]
 * matrix is uniform in ±1/√cols, and B = 0, so a new LoRA is the base model exactly. */
#include <t2/lora.h>
#include <t2/error.h>

#include "kernels.h"
#include "lora_impl.h"
#include "model_impl.h"

#include <t2/rng.h>

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define LORA_FORMAT "t2-lora"
#define LORA_VERSION "1"

struct t2_lora {
    const t2_model *m;
    t2_modules modules;
    int rank;
    float alpha;
    int n;                 /* adapted matrices */
    char (*names)[96];     /* [n] weight names without ".weight" */
    t2_weight *A, *B;      /* [n] F32 views into params: A [rank × cols], B [rows × rank] */
    size_t *off;           /* [n] start of A_i in params */
    int *index;            /* [n_layers × T2_N_KINDS] matrix of (layer, kind), or -1 */
    float *params;         /* [n_params] */
    size_t n_params;
    json_t *meta;          /* object of strings */
};

/* Keys that describe the parameters themselves: written from the LoRA, never set by callers. */
static const char *s_reserved[] = {"format", "version", "fingerprint", "rank", "alpha", "modules"};

static int kind_in(t2_modules mods, int kind) {
    return kind >= T2_KIND_GATE ? (mods & T2_MODULES_MLP) != 0 : (mods & T2_MODULES_ATTN) != 0;
}

void t2_lora_free(t2_lora *l) {
    if (!l) return;
    free(l->names);
    free(l->A);
    free(l->B);
    free(l->off);
    free(l->index);
    free(l->params);
    json_decref(l->meta);
    free(l);
}

/* A LoRA of m's `modules` matrices with zeroed parameters and empty metadata; checks rank and alpha. */
static t2_lora *alloc_lora(const t2_model *m, t2_modules mods, int rank, float alpha, t2_status *err) {
    if (mods != T2_MODULES_MLP && mods != T2_MODULES_ATTN && mods != T2_MODULES_ALL) {
        *err = t2_set_error(T2_ERR_INVALID_ARG, "LoRA: unknown modules value %d (want mlp, attn or all)", (int)mods);
        return NULL;
    }
    if (rank < 1 || rank > T2_LORA_MAX_RANK) {
        *err = t2_set_error(T2_ERR_INVALID_ARG, "LoRA: rank %d outside [1, %d]", rank, T2_LORA_MAX_RANK);
        return NULL;
    }
    if (!(alpha > 0) || !isfinite(alpha)) {
        *err = t2_set_error(T2_ERR_INVALID_ARG, "LoRA: alpha %g must be a positive number", (double)alpha);
        return NULL;
    }
    int L = m->cfg.n_layers, n = 0;
    for (int l = 0; l < L; l++)
        for (int k = 0; k < T2_N_KINDS; k++) {
            if (!kind_in(mods, k)) continue;
            char name[96];
            const t2_weight *w = t2_model_matrix(m, l, k, name, sizeof name);
            int mn = w->rows < w->cols ? w->rows : w->cols;
            if (rank > mn) {
                *err = t2_set_error(T2_ERR_INVALID_ARG, "LoRA: rank %d exceeds min(rows, cols) = %d of %s", rank, mn, name);
                return NULL;
            }
            n++;
        }
    t2_lora *lo = calloc(1, sizeof *lo);
    size_t nn = n ? (size_t)n : 1;
    if (lo) {
        lo->names = calloc(nn, sizeof *lo->names);
        lo->A = calloc(nn, sizeof *lo->A);
        lo->B = calloc(nn, sizeof *lo->B);
        lo->off = calloc(nn, sizeof *lo->off);
        lo->index = malloc((size_t)L * T2_N_KINDS * sizeof *lo->index);
        lo->meta = json_object();
    }
    if (!lo || !lo->names || !lo->A || !lo->B || !lo->off || !lo->index || !lo->meta) goto nomem;
    lo->m = m;
    lo->modules = mods;
    lo->rank = rank;
    lo->alpha = alpha;
    lo->n = n;
    size_t total = 0;
    int i = 0;
    for (int l = 0; l < L; l++)
        for (int k = 0; k < T2_N_KINDS; k++) {
            lo->index[l * T2_N_KINDS + k] = -1;
            if (!kind_in(mods, k)) continue;
            const t2_weight *w = t2_model_matrix(m, l, k, lo->names[i], sizeof lo->names[i]);
            lo->index[l * T2_N_KINDS + k] = i;
            lo->off[i] = total;
            lo->A[i] = (t2_weight){.dtype = T2_F32, .rows = rank, .cols = w->cols};
            lo->B[i] = (t2_weight){.dtype = T2_F32, .rows = w->rows, .cols = rank};
            total += (size_t)rank * (size_t)(w->rows + w->cols);
            i++;
        }
    lo->n_params = total;
    if (!(lo->params = calloc(total ? total : 1, sizeof *lo->params))) goto nomem;
    for (i = 0; i < n; i++) {
        lo->A[i].data = lo->params + lo->off[i];
        lo->B[i].data = lo->params + lo->off[i] + (size_t)rank * (size_t)lo->A[i].cols;
    }
    *err = T2_OK;
    return lo;
nomem:
    t2_lora_free(lo);
    *err = t2_set_error(T2_ERR_NOMEM, "LoRA: out of memory");
    return NULL;
}

/* alpha as the shortest decimal that reads back as the same float. */
static void float_str(float v, char *buf, size_t cap) {
    for (int digits = 1; digits <= 9; digits++) {
        snprintf(buf, cap, "%.*g", digits, (double)v);
        if (strtof(buf, NULL) == v) return;
    }
}

static void set_meta_raw(t2_lora *l, const char *key, const char *value) {
    json_object_set_new(l->meta, key, json_string(value));
}

/* The reserved keys from the LoRA's own fields. */
static void set_structural_meta(t2_lora *l) {
    char buf[32];
    set_meta_raw(l, "format", LORA_FORMAT);
    set_meta_raw(l, "version", LORA_VERSION);
    set_meta_raw(l, "fingerprint", t2_model_fingerprint((t2_model *)l->m)); /* cached in the model */
    snprintf(buf, sizeof buf, "%d", l->rank);
    set_meta_raw(l, "rank", buf);
    float_str(l->alpha, buf, sizeof buf);
    set_meta_raw(l, "alpha", buf);
    set_meta_raw(l, "modules", t2_modules_name(l->modules));
}

t2_lora *t2_lora_new(const t2_model *m, t2_modules modules, int rank, float alpha, uint64_t seed, t2_status *err) {
    if (!m) {
        *err = t2_set_error(T2_ERR_INVALID_ARG, "LoRA: no model");
        return NULL;
    }
    t2_lora *l = alloc_lora(m, modules, rank, alpha, err);
    if (!l) return NULL;
    t2_rng rng;
    t2_rng_seed(&rng, seed);
    for (int i = 0; i < l->n; i++) {
        float *a = l->params + l->off[i];
        size_t na = (size_t)rank * (size_t)l->A[i].cols;
        double bound = 1.0 / sqrt((double)l->A[i].cols);
        for (size_t j = 0; j < na; j++) a[j] = (float)((2.0 * t2_rng_uniform(&rng) - 1.0) * bound);
        /* B stays 0 (calloc) */
    }
    set_structural_meta(l);
    char created[32];
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(created, sizeof created, "%Y-%m-%dT%H:%M:%SZ", &tm);
    set_meta_raw(l, "created", created);
    return l;
}

/* Tensor t of a file ([numel] F32, BF16 or F16, widened exactly) into out; every value must be finite. */
static t2_status read_floats(const t2_tensor_info *t, const char *path, float *out, size_t numel) {
    for (size_t j = 0; j < numel; j++) {
        uint16_t h = 0;
        if (t->dtype == T2_F32) memcpy(&out[j], (const char *)t->data + 4 * j, 4);
        else memcpy(&h, (const char *)t->data + 2 * j, 2);
        if (t->dtype == T2_BF16) out[j] = t2_bf16_to_f32(h);
        else if (t->dtype == T2_F16) out[j] = t2_f16_to_f32(h);
        if (!isfinite(out[j]))
            return t2_set_error(T2_ERR_FORMAT, "%s: tensor \"%s\" holds a non-finite value at %zu", path, t->name, j);
    }
    return T2_OK;
}

/* Check one factor's tensor against its expected shape and read it. */
static t2_status read_factor(const t2_st *st, const char *path, const char *base, const char *suffix, const t2_weight *w) {
    char nm[128];
    snprintf(nm, sizeof nm, "%s.%s", base, suffix);
    const t2_tensor_info *t = t2_st_find(st, nm);
    if (!t)
        return t2_set_error(T2_ERR_NOT_FOUND, "%s: no tensor \"%s\" (the LoRA must cover every matrix of its modules)", path, nm);
    if (t->dtype != T2_F32 && t->dtype != T2_BF16 && t->dtype != T2_F16)
        return t2_set_error(T2_ERR_FORMAT, "%s: tensor \"%s\" is %s, want F32", path, nm, t2_dtype_name(t->dtype));
    if (t->ndim != 2 || t->shape[0] != w->rows || t->shape[1] != w->cols) {
        char shape[160] = "";
        for (int d = 0; d < t->ndim; d++)
            snprintf(shape + strlen(shape), sizeof shape - strlen(shape), "%s%lld", d ? ", " : "", (long long)t->shape[d]);
        return t2_set_error(T2_ERR_SHAPE, "%s: tensor \"%s\" has shape [%s], want [%d, %d]", path, nm, shape, w->rows, w->cols);
    }
    return read_floats(t, path, (float *)w->data, (size_t)w->rows * (size_t)w->cols);
}

/* Parse a whole decimal integer; 0 on success. */
static int parse_int(const char *s, int *out) {
    if (!s || !*s) return -1;
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || v < -2147483647L || v > 2147483647L) return -1;
    *out = (int)v;
    return 0;
}

t2_lora *t2_lora_load(const char *path, const t2_model *m, t2_status *err) {
    if (!path || !m) {
        *err = t2_set_error(T2_ERR_INVALID_ARG, "LoRA load: no path or no model");
        return NULL;
    }
    t2_st *st = t2_st_open(path, err);
    if (!st) return NULL;
    t2_status s = T2_OK;
    t2_lora *l = NULL;
    const char *fmt = t2_st_meta(st, "format"), *ver = t2_st_meta(st, "version"), *fp = t2_st_meta(st, "fingerprint");
    const char *mods_s = t2_st_meta(st, "modules"), *rank_s = t2_st_meta(st, "rank"), *alpha_s = t2_st_meta(st, "alpha");
    const char *mfp = t2_model_fingerprint((t2_model *)m);
    t2_modules mods = T2_MODULES_MLP;
    int rank = 0;
    float alpha = 0;
    char *end = NULL;
    if (!fmt || strcmp(fmt, LORA_FORMAT))
        s = t2_set_error(T2_ERR_FORMAT, "%s: not a T2 LoRA (metadata \"format\" is %s%s%s, want \"%s\")", path, fmt ? "\"" : "",
                         fmt ? fmt : "missing", fmt ? "\"" : "", LORA_FORMAT);
    else if (!ver || strcmp(ver, LORA_VERSION))
        s = t2_set_error(T2_ERR_VERSION, "%s: LoRA format version %s, this T2 reads %s", path, ver ? ver : "?", LORA_VERSION);
    else if (!fp || strcmp(fp, mfp))
        s = t2_set_error(T2_ERR_VERSION, "%s: LoRA made for base weights with fingerprint %s, this model's is %s", path,
                         fp ? fp : "(none)", mfp);
    else if (!mods_s || t2_modules_parse(mods_s, &mods))
        s = t2_set_error(T2_ERR_FORMAT, "%s: metadata \"modules\" is %s, want mlp, attn or all", path, mods_s ? mods_s : "missing");
    else if (parse_int(rank_s, &rank) || rank < 1 || rank > T2_LORA_MAX_RANK)
        s = t2_set_error(T2_ERR_FORMAT, "%s: metadata \"rank\" is %s, want an integer in [1, %d]", path, rank_s ? rank_s : "missing",
                         T2_LORA_MAX_RANK);
    else if (!alpha_s || (alpha = strtof(alpha_s, &end), *end) || end == alpha_s || !(alpha > 0) || !isfinite(alpha))
        s = t2_set_error(T2_ERR_FORMAT, "%s: metadata \"alpha\" is %s, want a positive number", path, alpha_s ? alpha_s : "missing");
    if (!s && !(l = alloc_lora(m, mods, rank, alpha, &s))) {
        /* rank too large for this model's matrices: say which file */
        char why[512];
        snprintf(why, sizeof why, "%s", t2_last_error());
        s = t2_set_error(s == T2_ERR_NOMEM ? s : T2_ERR_SHAPE, "%s: %s", path, why);
    }
    /* every tensor must be a factor of an adapted matrix */
    for (size_t i = 0; !s && i < t2_st_count(st); i++) {
        const t2_tensor_info *t = t2_st_at(st, i);
        size_t ln = strlen(t->name);
        int ok = 0;
        if (ln > 7 && (!strcmp(t->name + ln - 7, ".lora_A") || !strcmp(t->name + ln - 7, ".lora_B")))
            for (int k = 0; !ok && k < l->n; k++) ok = strlen(l->names[k]) == ln - 7 && !strncmp(l->names[k], t->name, ln - 7);
        if (!ok)
            s = t2_set_error(T2_ERR_NOT_FOUND, "%s: tensor \"%s\" is no LoRA factor of an adapted matrix of this model (modules %s)",
                             path, t->name, t2_modules_name(mods));
    }
    for (int k = 0; !s && k < l->n; k++)
        if (!(s = read_factor(st, path, l->names[k], "lora_A", &l->A[k]))) s = read_factor(st, path, l->names[k], "lora_B", &l->B[k]);
    for (size_t i = 0; !s && i < t2_st_meta_count(st); i++) {
        const char *key = t2_st_meta_key(st, i), *v = t2_st_meta(st, key);
        if (json_object_set_new(l->meta, key, json_string(v)))
            s = t2_set_error(T2_ERR_FORMAT, "%s: metadata \"%s\" is not valid UTF-8", path, key);
    }
    t2_st_free(st);
    if (s) {
        t2_lora_free(l);
        *err = s;
        return NULL;
    }
    *err = T2_OK;
    return l;
}

t2_status t2_lora_save(const t2_lora *l, const char *path) {
    if (!l || !path) return t2_set_error(T2_ERR_INVALID_ARG, "LoRA save: no LoRA or no path");
    size_t nt = 2 * (size_t)l->n, nm = json_object_size(l->meta);
    t2_tensor_info *t = calloc(nt ? nt : 1, sizeof *t);
    char (*names)[112] = calloc(nt ? nt : 1, sizeof *names);
    const char **meta = calloc(2 * nm + 1, sizeof *meta);
    if (!t || !names || !meta) {
        free(t), free(names), free(meta);
        return t2_set_error(T2_ERR_NOMEM, "LoRA: out of memory");
    }
    for (int i = 0; i < l->n; i++) {
        const t2_weight *f[2] = {&l->A[i], &l->B[i]};
        for (int j = 0; j < 2; j++) {
            size_t k = 2 * (size_t)i + (size_t)j;
            snprintf(names[k], sizeof names[k], "%s.%s", l->names[i], j ? "lora_B" : "lora_A");
            t[k] = (t2_tensor_info){.name = names[k], .dtype = T2_F32, .ndim = 2, .shape = {f[j]->rows, f[j]->cols},
                                    .data = f[j]->data};
        }
    }
    const char *k;
    json_t *v;
    size_t j = 0;
    json_object_foreach(l->meta, k, v) meta[j++] = k, meta[j++] = json_string_value(v);
    meta[j] = NULL;
    t2_status s = t2_st_write(path, t, nt, meta);
    free(t), free(names), free(meta);
    return s;
}

int t2_lora_rank(const t2_lora *l) { return l->rank; }
float t2_lora_alpha(const t2_lora *l) { return l->alpha; }
t2_modules t2_lora_modules(const t2_lora *l) { return l->modules; }
int t2_lora_count(const t2_lora *l) { return l->n; }
const char *t2_lora_name(const t2_lora *l, int i) { return i >= 0 && i < l->n ? l->names[i] : NULL; }
size_t t2_lora_n_params(const t2_lora *l) { return l->n_params; }
float *t2_lora_params(t2_lora *l) { return l->params; }
const float *t2_lora_paramsc(const t2_lora *l) { return l->params; }

const char *t2_lora_meta(const t2_lora *l, const char *key) {
    json_t *v = key ? json_object_get(l->meta, key) : NULL;
    return json_is_string(v) ? json_string_value(v) : NULL;
}

t2_status t2_lora_set_meta(t2_lora *l, const char *key, const char *value) {
    if (!key || !*key) return t2_set_error(T2_ERR_INVALID_ARG, "LoRA metadata: empty key");
    for (size_t i = 0; i < sizeof s_reserved / sizeof *s_reserved; i++)
        if (!strcmp(key, s_reserved[i]))
            return t2_set_error(T2_ERR_INVALID_ARG, "LoRA metadata \"%s\" describes the parameters and cannot be set", key);
    if (!value) {
        json_object_del(l->meta, key);
        return T2_OK;
    }
    if (json_object_set_new(l->meta, key, json_string(value)))
        return t2_set_error(T2_ERR_INVALID_ARG, "LoRA metadata \"%s\": value is not valid UTF-8", key);
    return T2_OK;
}

t2_lora *t2_lora_clone(const t2_lora *l, t2_status *err) {
    if (!l) {
        *err = t2_set_error(T2_ERR_INVALID_ARG, "LoRA clone: no LoRA");
        return NULL;
    }
    t2_lora *c = alloc_lora(l->m, l->modules, l->rank, l->alpha, err);
    if (!c) return NULL;
    memcpy(c->params, l->params, l->n_params * sizeof *c->params);
    json_decref(c->meta);
    if (!(c->meta = json_deep_copy(l->meta))) {
        c->meta = NULL;
        t2_lora_free(c);
        *err = t2_set_error(T2_ERR_NOMEM, "LoRA: out of memory");
        return NULL;
    }
    *err = T2_OK;
    return c;
}

/* ---------------- private (lora_impl.h) ---------------- */

int t2__lora_index(const t2_lora *l, int layer, int kind) { return l->index[layer * T2_N_KINDS + kind]; }
const t2_model *t2__lora_model(const t2_lora *l) { return l->m; }
float t2__lora_scale(const t2_lora *l) { return l->alpha / (float)l->rank; }
const t2_weight *t2__lora_A(const t2_lora *l, int i) { return &l->A[i]; }
const t2_weight *t2__lora_B(const t2_lora *l, int i) { return &l->B[i]; }
size_t t2__lora_offset(const t2_lora *l, int i) { return l->off[i]; }
