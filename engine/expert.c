/* Experts: one z vector per adapted matrix, stored as safetensors "<weight>.z" with string metadata
 * (see t2/svf.h), and their mixtures. */
#include <t2/svf.h>
#include <t2/error.h>

#include "kernels.h"
#include "svf_impl.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define EXPERT_FORMAT "t2-expert"
#define EXPERT_VERSION "1"

struct t2_expert {
    int n;
    char **names;      /* [n] base weight names, without ".weight" */
    int *lens;         /* [n] */
    float **z;         /* [n] → into block */
    float *block;
    json_t *meta;      /* object of strings */
};

int t2_expert_count(const t2_expert *e) { return e->n; }
const char *t2_expert_name(const t2_expert *e, int i) { return e->names[i]; }
int t2_expert_len(const t2_expert *e, int i) { return e->lens[i]; }
float *t2_expert_z(t2_expert *e, int i) { return e->z[i]; }
const float *t2_expert_zc(const t2_expert *e, int i) { return e->z[i]; }

const char *t2_expert_meta(const t2_expert *e, const char *key) {
    json_t *v = json_object_get(e->meta, key);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

t2_status t2_expert_set_meta(t2_expert *e, const char *key, const char *value) {
    if (!key || !*key) return t2_set_error(T2_ERR_INVALID_ARG, "expert metadata: empty key");
    if (!value) {
        json_object_del(e->meta, key);
        return T2_OK;
    }
    if (json_object_set_new(e->meta, key, json_string(value)))
        return t2_set_error(T2_ERR_INVALID_ARG, "expert metadata \"%s\": value is not valid UTF-8", key);
    return T2_OK;
}

int t2_expert_meta_count(const t2_expert *e) { return (int)json_object_size(e->meta); }

const char *t2_expert_meta_key(const t2_expert *e, int i) {
    const char *k;
    json_t *v;
    int j = 0;
    json_object_foreach(e->meta, k, v) if (j++ == i) return k;
    return NULL;
}

void t2_expert_free(t2_expert *e) {
    if (!e) return;
    for (int i = 0; i < e->n; i++) free(e->names[i]);
    free(e->names);
    free(e->lens);
    free(e->z);
    free(e->block);
    json_decref(e->meta);
    free(e);
}

/* Allocate an expert shaped like (names, lens). */
static t2_expert *alloc_expert(int n, const char *const *names, const int *lens, t2_status *err) {
    if (n < 0) {
        *err = t2_set_error(T2_ERR_INVALID_ARG, "expert: negative matrix count");
        return NULL;
    }
    t2_expert *e = calloc(1, sizeof *e);
    size_t total = 0;
    for (int i = 0; i < n; i++) total += (size_t)lens[i];
    if (e) {
        e->n = n;
        size_t nn = n ? (size_t)n : 1;
        e->names = calloc(nn, sizeof *e->names);
        e->lens = malloc(nn * sizeof *e->lens);
        e->z = malloc(nn * sizeof *e->z);
        e->block = malloc((total ? total : 1) * sizeof *e->block);
        e->meta = json_object();
    }
    if (!e || !e->names || !e->lens || !e->z || !e->block || !e->meta) {
        t2_expert_free(e);
        *err = t2_set_error(T2_ERR_NOMEM, "expert: out of memory");
        return NULL;
    }
    float *p = e->block;
    for (int i = 0; i < n; i++) {
        e->lens[i] = lens[i];
        e->z[i] = p;
        p += lens[i];
        if (!(e->names[i] = strdup(names[i]))) {
            t2_expert_free(e);
            *err = t2_set_error(T2_ERR_NOMEM, "expert: out of memory");
            return NULL;
        }
    }
    *err = T2_OK;
    return e;
}

static void now_iso(char *buf, size_t cap) {
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, cap, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

t2_expert *t2_expert_new(const t2_svd *svd, const char *label, t2_status *err) {
    int n = t2_svd_count(svd);
    const char **names = malloc((size_t)(n ? n : 1) * sizeof *names);
    int *lens = malloc((size_t)(n ? n : 1) * sizeof *lens);
    if (!names || !lens) {
        free(names), free(lens);
        *err = t2_set_error(T2_ERR_NOMEM, "expert: out of memory");
        return NULL;
    }
    for (int i = 0; i < n; i++) names[i] = t2_svd_name(svd, i), lens[i] = t2_svd_rank(svd, i);
    t2_expert *e = alloc_expert(n, names, lens, err);
    free(names);
    free(lens);
    if (!e) return NULL;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < e->lens[i]; j++) e->z[i][j] = 1.0f;
    char created[32];
    now_iso(created, sizeof created);
    t2_model *m = (t2_model *)t2__svd_model(svd); /* the fingerprint is cached in the model */
    t2_expert_set_meta(e, "format", EXPERT_FORMAT);
    t2_expert_set_meta(e, "version", EXPERT_VERSION);
    t2_expert_set_meta(e, "fingerprint", t2_model_fingerprint(m));
    t2_expert_set_meta(e, "modules", t2_modules_name(t2_svd_modules(svd)));
    t2_expert_set_meta(e, "label", label ? label : "");
    t2_expert_set_meta(e, "created", created);
    return e;
}

/* The z tensor of a file as f32 (F32, BF16 or F16 accepted, widened exactly). */
static t2_status read_z(const t2_tensor_info *t, const char *path, float *out) {
    size_t n = (size_t)t->shape[0];
    for (size_t j = 0; j < n; j++) {
        uint16_t h = 0;
        if (t->dtype == T2_F32) memcpy(&out[j], (const char *)t->data + 4 * j, 4);
        else memcpy(&h, (const char *)t->data + 2 * j, 2);
        if (t->dtype == T2_BF16) out[j] = t2_bf16_to_f32(h);
        else if (t->dtype == T2_F16) out[j] = t2_f16_to_f32(h);
        if (!isfinite(out[j])) return t2_set_error(T2_ERR_FORMAT, "%s: tensor \"%s\" holds a non-finite value", path, t->name);
    }
    return T2_OK;
}

/* raw: z tensors from any producer (t2_expert_import): no format metadata, the fingerprint is not
 * checked (there is none) and the result gets fresh metadata. */
static t2_expert *load_impl(const char *path, const t2_svd *svd, int raw, t2_status *err) {
    t2_st *st = t2_st_open(path, err);
    if (!st) return NULL;
    t2_status s = T2_OK;
    t2_expert *e = NULL;
    const char *fmt = t2_st_meta(st, "format"), *ver = t2_st_meta(st, "version");
    size_t nt = t2_st_count(st);
    if (raw) {
        /* nothing to check in the metadata */
    } else if (!fmt || strcmp(fmt, EXPERT_FORMAT)) {
        s = t2_set_error(T2_ERR_FORMAT, "%s: not a T2 expert (metadata \"format\" is not \"%s\")", path, EXPERT_FORMAT);
    } else if (!ver || strcmp(ver, EXPERT_VERSION)) {
        s = t2_set_error(T2_ERR_VERSION, "%s: expert format version %s, this T2 reads %s", path, ver ? ver : "?", EXPERT_VERSION);
    }
    /* every tensor must be a 1-D float "<name>.z" */
    for (size_t i = 0; !s && i < nt; i++) {
        const t2_tensor_info *t = t2_st_at(st, i);
        size_t ln = strlen(t->name);
        if (ln < 3 || strcmp(t->name + ln - 2, ".z"))
            s = t2_set_error(T2_ERR_FORMAT, "%s: tensor \"%s\" is not a z vector (names end in \".z\")", path, t->name);
        else if (t->ndim != 1 || t->shape[0] < 1 || (t->dtype != T2_F32 && t->dtype != T2_BF16 && t->dtype != T2_F16))
            s = t2_set_error(T2_ERR_SHAPE, "%s: tensor \"%s\" must be a non-empty 1-D float vector", path, t->name);
    }
    if (!s && svd) {
        const char *fp = t2_model_fingerprint((t2_model *)t2__svd_model(svd)), *efp = t2_st_meta(st, "fingerprint");
        int n = t2_svd_count(svd);
        if (!raw && (!efp || strcmp(efp, fp)))
            s = t2_set_error(T2_ERR_VERSION, "%s: expert made for base weights %s, this model is %s", path, efp ? efp : "?", fp);
        for (size_t i = 0; !s && i < nt; i++) {
            char base[256];
            const t2_tensor_info *t = t2_st_at(st, i);
            snprintf(base, sizeof base, "%.*s", (int)(strlen(t->name) - 2), t->name);
            int k = t2_svd_find(svd, base);
            if (k < 0) s = t2_set_error(T2_ERR_NOT_FOUND, "%s: tensor \"%s\" names no adapted matrix of this model (modules %s)", path, t->name, t2_modules_name(t2_svd_modules(svd)));
            else if (t->shape[0] != t2_svd_rank(svd, k))
                s = t2_set_error(T2_ERR_SHAPE, "%s: tensor \"%s\" has %lld values, the matrix has rank %d", path, t->name, (long long)t->shape[0], t2_svd_rank(svd, k));
        }
        if (!s) e = t2_expert_new(svd, NULL, &s);
        for (int k = 0; !s && k < n; k++) {
            char nm[256];
            snprintf(nm, sizeof nm, "%s.z", t2_svd_name(svd, k));
            const t2_tensor_info *t = t2_st_find(st, nm);
            if (!t) s = t2_set_error(T2_ERR_NOT_FOUND, "%s: no z for %s (tensor \"%s\")", path, t2_svd_name(svd, k), nm);
            else s = read_z(t, path, e->z[k]);
        }
        if (!s && !raw) json_object_clear(e->meta);
    } else if (!s && raw) {
        s = t2_set_error(T2_ERR_INVALID_ARG, "expert import needs the model's SVD cache");
    } else if (!s) {
        const char **names = malloc((nt ? nt : 1) * sizeof *names);
        int *lens = malloc((nt ? nt : 1) * sizeof *lens);
        char (*buf)[256] = malloc((nt ? nt : 1) * sizeof *buf);
        if (!names || !lens || !buf) s = t2_set_error(T2_ERR_NOMEM, "expert: out of memory");
        for (size_t i = 0; !s && i < nt; i++) {
            const t2_tensor_info *t = t2_st_at(st, i);
            snprintf(buf[i], sizeof buf[i], "%.*s", (int)(strlen(t->name) - 2), t->name);
            names[i] = buf[i];
            lens[i] = (int)t->shape[0];
        }
        if (!s) e = alloc_expert((int)nt, names, lens, &s);
        for (size_t i = 0; !s && i < nt; i++) s = read_z(t2_st_at(st, i), path, e->z[i]);
        free(names), free(lens), free(buf);
    }
    /* metadata: every string key of the file */
    for (size_t i = 0; !s && !raw && i < t2_st_meta_count(st); i++) {
        const char *key = t2_st_meta_key(st, i);
        s = t2_expert_set_meta(e, key, t2_st_meta(st, key));
    }
    t2_st_free(st);
    if (s) {
        t2_expert_free(e);
        *err = s;
        return NULL;
    }
    *err = T2_OK;
    return e;
}

t2_expert *t2_expert_load(const char *path, const t2_svd *svd, t2_status *err) { return load_impl(path, svd, 0, err); }

t2_expert *t2_expert_import(const char *path, const t2_svd *svd, t2_status *err) {
    t2_expert *e = load_impl(path, svd, 1, err);
    if (e) t2_expert_set_meta(e, "provenance", path);
    return e;
}

t2_status t2_expert_save(const t2_expert *e, const char *path) {
    t2_tensor_info *t = calloc((size_t)(e->n ? e->n : 1), sizeof *t);
    char (*names)[264] = calloc((size_t)(e->n ? e->n : 1), sizeof *names);
    size_t nm = json_object_size(e->meta);
    const char **meta = calloc(2 * nm + 1, sizeof *meta);
    if (!t || !names || !meta) {
        free(t), free(names), free(meta);
        return t2_set_error(T2_ERR_NOMEM, "expert: out of memory");
    }
    for (int i = 0; i < e->n; i++) {
        snprintf(names[i], sizeof names[i], "%s.z", e->names[i]);
        t[i] = (t2_tensor_info){.name = names[i], .dtype = T2_F32, .ndim = 1, .shape = {e->lens[i]}, .data = e->z[i]};
    }
    const char *k;
    json_t *v;
    size_t j = 0;
    json_object_foreach(e->meta, k, v) meta[j++] = k, meta[j++] = json_string_value(v);
    meta[j] = NULL;
    t2_status s = t2_st_write(path, t, (size_t)e->n, meta);
    free(t), free(names), free(meta);
    return s;
}

t2_expert *t2_expert_mix(const t2_expert *const *ex, const float *alpha, int k, int per_matrix, t2_status *err) {
    if (k < 1 || !ex || !alpha) {
        *err = t2_set_error(T2_ERR_INVALID_ARG, "mix: need at least one expert and its weights");
        return NULL;
    }
    for (int j = 1; j < k; j++) {
        int same = ex[j]->n == ex[0]->n;
        for (int i = 0; same && i < ex[0]->n; i++) same = ex[j]->lens[i] == ex[0]->lens[i] && !strcmp(ex[j]->names[i], ex[0]->names[i]);
        const char *f0 = t2_expert_meta(ex[0], "fingerprint"), *fj = t2_expert_meta(ex[j], "fingerprint");
        if (!same || (f0 && fj && strcmp(f0, fj))) {
            *err = t2_set_error(T2_ERR_SHAPE, "mix: expert %d does not cover the same matrices of the same base model as expert 0", j);
            return NULL;
        }
    }
    t2_expert *m = alloc_expert(ex[0]->n, (const char *const *)ex[0]->names, ex[0]->lens, err);
    if (!m) return NULL;
    for (int i = 0; i < m->n; i++)
        for (int t = 0; t < m->lens[i]; t++) {
            double acc = 0;
            for (int j = 0; j < k; j++) acc += (double)alpha[per_matrix ? j * m->n + i : j] * ex[j]->z[i][t];
            m->z[i][t] = (float)acc;
        }
    /* provenance: the components and their weights */
    json_t *mix = json_array();
    for (int j = 0; j < k; j++) {
        const char *lab = t2_expert_meta(ex[j], "label");
        /* α as the shortest decimal that reads back as the same float (0.7, not 0.69999998807907104) */
        char as[32];
        snprintf(as, sizeof as, "%.9g", (double)alpha[j]);
        for (int digits = 1; digits <= 9; digits++) {
            snprintf(as, sizeof as, "%.*g", digits, (double)alpha[j]);
            if (strtof(as, NULL) == alpha[j]) break;
        }
        json_array_append_new(mix, per_matrix ? json_pack("{s:s}", "label", lab ? lab : "")
                                              : json_pack("{s:s, s:f}", "label", lab ? lab : "", "alpha", strtod(as, NULL)));
    }
    json_t *set = json_pack("{s:o, s:b}", "components", mix, "per_matrix", per_matrix);
    char *settings = json_dumps(set, JSON_COMPACT | JSON_REAL_PRECISION(9));
    json_decref(set);
    char created[32];
    now_iso(created, sizeof created);
    static const char *copy[] = {"format", "version", "fingerprint", "modules"};
    for (size_t i = 0; i < sizeof copy / sizeof *copy; i++) t2_expert_set_meta(m, copy[i], t2_expert_meta(ex[0], copy[i]));
    t2_expert_set_meta(m, "label", "mixture");
    t2_expert_set_meta(m, "trainer", "mix");
    t2_expert_set_meta(m, "settings", settings);
    t2_expert_set_meta(m, "created", created);
    free(settings);
    *err = T2_OK;
    return m;
}

t2_status t2_expert_mix_grad(const t2_expert *const *ex, int k, int per_matrix, const float *dz, float *dalpha) {
    if (k < 1 || !ex || !dz || !dalpha) return t2_set_error(T2_ERR_INVALID_ARG, "mix grad: need experts and gradients");
    for (int j = 1; j < k; j++)
        if (ex[j]->n != ex[0]->n) return t2_set_error(T2_ERR_SHAPE, "mix grad: expert %d covers other matrices", j);
    int n = ex[0]->n;
    for (int j = 0; j < k; j++) {
        double total = 0;
        size_t off = 0;
        for (int i = 0; i < n; i++) {
            double acc = 0;
            if (ex[j]->lens[i] != ex[0]->lens[i]) return t2_set_error(T2_ERR_SHAPE, "mix grad: expert %d: %s has another length", j, ex[0]->names[i]);
            for (int t = 0; t < ex[j]->lens[i]; t++) acc += (double)dz[off + (size_t)t] * ex[j]->z[i][t];
            off += (size_t)ex[j]->lens[i];
            if (per_matrix) dalpha[j * n + i] = (float)acc;
            total += acc;
        }
        if (!per_matrix) dalpha[j] = (float)total;
    }
    return T2_OK;
}

t2_expert *t2_expert_clone(const t2_expert *e, t2_status *err) {
    t2_expert *c = alloc_expert(e->n, (const char *const *)e->names, e->lens, err);
    if (!c) return NULL;
    for (int i = 0; i < e->n; i++) memcpy(c->z[i], e->z[i], (size_t)e->lens[i] * sizeof(float));
    json_decref(c->meta);
    if (!(c->meta = json_deep_copy(e->meta))) {
        c->meta = json_object();
        t2_expert_free(c);
        *err = t2_set_error(T2_ERR_NOMEM, "expert: out of memory");
        return NULL;
    }
    return c;
}
