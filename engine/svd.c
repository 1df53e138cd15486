/* The SVD cache: thin SVDs of the adapted matrices, built once per base model and modules, stored as
 * safetensors and memory-mapped (see t2/svf.h).
 *
 * Build: each matrix is widened to f32 and decomposed by LAPACKE_sgesdd (divide and conquer; OpenBLAS
 * runs its BLAS on all cores), rounded to the cache dtype, and its reconstruction error measured from
 * the rounded factors. Each finished matrix goes to "<path>.partial/<i>.safetensors" (atomically), so a
 * build that is interrupted resumes at the first missing matrix; the cache is then written in one
 * atomic step from the mapped partial files and the partial folder removed.
 *
 * Load: a cache is used only if its metadata (format, version, fingerprint, modules, dtype) and every
 * tensor's dtype and shape match; otherwise it is rebuilt and the reason reported through note(). */
#include <t2/svf.h>
#include <t2/error.h>

#include "model_impl.h"

#include <cblas.h>
#include <dirent.h>
#include <errno.h>
#include <lapacke.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define SVD_FORMAT "t2-svd-cache"
#define SVD_VERSION "1"

typedef struct svd_mat {
    char name[96];          /* "model.layers.3.mlp.down_proj" */
    int layer, kind;
    int m, n, r;
    const t2_weight *w;     /* the base weight */
    t2_weight U;            /* [m × r] */
    t2_weight Vt;           /* [r × n] */
    float *s;               /* [r] owned copy (aligned) */
    double err;
} svd_mat;

struct t2_svd {
    t2_model *model;
    t2_modules modules;
    t2_dtype dtype;
    int precision;          /* 0 single (sgesdd), 1 double (dgesdd) */
    char *path;
    t2_st *st;
    int n;
    svd_mat *mats;
    int *index;             /* [n_layers × T2_N_KINDS] → matrix or -1 */
};

/* ---------------- names and fingerprint ---------------- */

const char *t2_modules_name(t2_modules m) {
    return m == T2_MODULES_MLP ? "mlp" : m == T2_MODULES_ATTN ? "attn" : m == T2_MODULES_ALL ? "all" : "?";
}

t2_status t2_modules_parse(const char *s, t2_modules *out) {
    if (s && !strcmp(s, "mlp")) *out = T2_MODULES_MLP;
    else if (s && !strcmp(s, "attn")) *out = T2_MODULES_ATTN;
    else if (s && !strcmp(s, "all")) *out = T2_MODULES_ALL;
    else return t2_set_error(T2_ERR_INVALID_ARG, "modules \"%s\": expected mlp, attn or all", s ? s : "(null)");
    return T2_OK;
}

static uint64_t rotl64(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

/* A fast non-cryptographic 64-bit hash: four independent lanes over 32-byte blocks. */
static uint64_t hash_bytes(const uint8_t *p, size_t n, uint64_t seed) {
    const uint64_t P1 = 0x9e3779b185ebca87ull, P2 = 0xc2b2ae3d27d4eb4full;
    uint64_t h[4] = {seed + P1, seed ^ P2, seed - P1, seed * P2 + 1};
    size_t i = 0;
    for (; i + 32 <= n; i += 32)
        for (int j = 0; j < 4; j++) {
            uint64_t w;
            memcpy(&w, p + i + 8 * j, 8);
            h[j] = rotl64(h[j] + w * P2, 31) * P1;
        }
    uint64_t acc = rotl64(h[0], 1) + rotl64(h[1], 7) + rotl64(h[2], 12) + rotl64(h[3], 18) + n;
    for (; i < n; i++) acc = (acc ^ p[i]) * P1;
    acc ^= acc >> 33;
    acc *= P2;
    return acc ^ (acc >> 29);
}

typedef struct fp_job {
    const t2_st *st;
    uint64_t *h;
} fp_job;

static void fp_task(void *arg, int task, int thread) {
    (void)thread;
    fp_job *j = arg;
    const t2_tensor_info *t = t2_st_at(j->st, (size_t)task);
    uint64_t h = hash_bytes((const uint8_t *)t->name, strlen(t->name), (uint64_t)t->dtype);
    for (int d = 0; d < t->ndim; d++) h = hash_bytes((const uint8_t *)&t->shape[d], 8, h);
    j->h[task] = hash_bytes(t->data, t->nbytes, h);
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

const char *t2_model_fingerprint(t2_model *m) {
    if (m->fingerprint[0]) return m->fingerprint;
    size_t n = t2_st_count(m->st);
    uint64_t *h = malloc((n ? n : 1) * sizeof *h);
    if (!h) return "";
    fp_job j = {m->st, h};
    t2_pool_run(m->pool, (int)n, fp_task, &j);
    /* order-free combination: the same weights sharded differently give the same fingerprint */
    qsort(h, n, sizeof *h, cmp_u64);
    uint64_t f = hash_bytes((const uint8_t *)h, n * sizeof *h, 0x7432u);
    free(h);
    snprintf(m->fingerprint, sizeof m->fingerprint, "%016llx", (unsigned long long)f);
    return m->fingerprint;
}

/* ---------------- accessors ---------------- */

int t2_svd_count(const t2_svd *s) { return s->n; }
const char *t2_svd_name(const t2_svd *s, int i) { return s->mats[i].name; }
int t2_svd_rank(const t2_svd *s, int i) { return s->mats[i].r; }
const float *t2_svd_values(const t2_svd *s, int i) { return s->mats[i].s; }
t2_modules t2_svd_modules(const t2_svd *s) { return s->modules; }
const char *t2_svd_path(const t2_svd *s) { return s->path; }
double t2_svd_error(const t2_svd *s, int i) { return s->mats[i].err; }

int t2_svd_find(const t2_svd *s, const char *name) {
    size_t n = strlen(name);
    if (n > 7 && !strcmp(name + n - 7, ".weight")) n -= 7;
    for (int i = 0; i < s->n; i++)
        if (strlen(s->mats[i].name) == n && !strncmp(s->mats[i].name, name, n)) return i;
    return -1;
}

/* Private accessors for forward.c and adapter.c (declared in svf_impl.h). */
#include "svf_impl.h"
int t2__svd_index(const t2_svd *s, int layer, int kind) { return s->index[layer * T2_N_KINDS + kind]; }
const t2_weight *t2__svd_U(const t2_svd *s, int i) { return &s->mats[i].U; }
const t2_weight *t2__svd_Vt(const t2_svd *s, int i) { return &s->mats[i].Vt; }
const t2_model *t2__svd_model(const t2_svd *s) { return s->model; }
t2_dtype t2__svd_dtype(const t2_svd *s) { return s->dtype; }

void t2_svd_free(t2_svd *s) {
    if (!s) return;
    for (int i = 0; i < s->n; i++) free(s->mats[i].s);
    free(s->mats);
    free(s->index);
    free(s->path);
    t2_st_free(s->st);
    free(s);
}

t2_svd_params t2_svd_default_params(void) {
    return (t2_svd_params){.modules = T2_MODULES_MLP, .path = NULL, .dtype = -1};
}

t2_status t2_svd_default_path(t2_model *m, t2_modules modules, int dtype, char *buf, size_t cap) {
    const char *dir = getenv("T2_CACHE_DIR"), *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    char base[3072];
    if (dir && *dir) snprintf(base, sizeof base, "%s", dir);
    else if (xdg && *xdg) snprintf(base, sizeof base, "%s/t2", xdg);
    else if (home && *home) snprintf(base, sizeof base, "%s/.cache/t2", home);
    else return t2_set_error(T2_ERR_INVALID_ARG, "svd cache: no T2_CACHE_DIR, XDG_CACHE_HOME or HOME to put it in");
    if (dtype < 0) dtype = t2_model_weight_dtype(m);
    if ((size_t)snprintf(buf, cap, "%s/svd-%s-%s-%s.safetensors", base, t2_model_fingerprint(m), t2_modules_name(modules),
                         t2_dtype_name((t2_dtype)dtype)) >= cap)
        return t2_set_error(T2_ERR_INVALID_ARG, "svd cache: path too long");
    return T2_OK;
}

/* ---------------- building ---------------- */

static t2_status mkdirs(const char *path) {
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s", path);
    for (char *p = tmp + 1; *p; p++)
        if (*p == '/') {
            *p = 0;
            if (mkdir(tmp, 0755) < 0 && errno != EEXIST) return t2_set_error(T2_ERR_IO, "mkdir %s: %s", tmp, strerror(errno));
            *p = '/';
        }
    if (mkdir(tmp, 0755) < 0 && errno != EEXIST) return t2_set_error(T2_ERR_IO, "mkdir %s: %s", tmp, strerror(errno));
    return T2_OK;
}

static void widen(const t2_weight *w, float *out) {
    size_t n = (size_t)w->rows * (size_t)w->cols;
    const t2_kernels *k = t2_kernels_best();
    if (w->dtype == T2_F32) memcpy(out, w->data, n * sizeof *out);
    else if (w->dtype == T2_BF16) k->cvt_bf16(w->data, out, n);
    else k->cvt_f16(w->data, out, n);
}

/* Round f32 to the cache dtype in place (the f32 array keeps the rounded values) and fill raw. */
static void round_to(t2_dtype dt, float *x, size_t n, uint16_t *raw) {
    if (dt != T2_BF16) return;
    for (size_t i = 0; i < n; i++) {
        raw[i] = t2_f32_to_bf16(x[i]);
        x[i] = t2_bf16_to_f32(raw[i]);
    }
}

/* ‖W − U diag(s) Vt‖_F / ‖W‖_F with everything in f32, sums in double. */
static double recon_error(const float *W, const float *U, const float *s, const float *Vt, int m, int n, int r) {
    float *B = malloc((size_t)m * r * sizeof *B), *R = malloc((size_t)m * n * sizeof *R);
    if (!B || !R) {
        free(B);
        free(R);
        return NAN;
    }
    for (int i = 0; i < m; i++)
        for (int j = 0; j < r; j++) B[(size_t)i * r + j] = U[(size_t)i * r + j] * s[j];
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, n, r, 1.0f, B, r, Vt, n, 0.0f, R, n);
    double num = 0, den = 0;
    for (size_t i = 0; i < (size_t)m * n; i++) {
        double d = (double)W[i] - R[i];
        num += d * d;
        den += (double)W[i] * W[i];
    }
    free(B);
    free(R);
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

static const char *precision_name(int p) { return p ? "double" : "single"; }

static void partial_path(const t2_svd *s, int i, char *buf, size_t cap) { snprintf(buf, cap, "%s.partial/%05d.safetensors", s->path, i); }

/* Is partial file i complete and made for these weights? */
static int partial_ok(const t2_svd *s, int i, const char *fp) {
    char p[4200];
    partial_path(s, i, p, sizeof p);
    if (access(p, F_OK)) return 0;
    t2_status st;
    t2_st *f = t2_st_open(p, &st);
    if (!f) return 0;
    const svd_mat *M = &s->mats[i];
    const char *mfp = t2_st_meta(f, "fingerprint"), *nm = t2_st_meta(f, "name");
    const t2_tensor_info *U = t2_st_find(f, "U"), *S = t2_st_find(f, "S"), *V = t2_st_find(f, "Vt");
    int ok = mfp && !strcmp(mfp, fp) && nm && !strcmp(nm, M->name) && U && S && V && U->dtype == s->dtype &&
             V->dtype == s->dtype && S->dtype == T2_F32 && U->ndim == 2 && U->shape[0] == M->m && U->shape[1] == M->r &&
             V->ndim == 2 && V->shape[0] == M->r && V->shape[1] == M->n && S->ndim == 1 && S->shape[0] == M->r &&
             t2_st_meta(f, "err") && !strcmp(t2_st_meta(f, "precision") ? t2_st_meta(f, "precision") : "single",
                                             precision_name(s->precision));
    t2_st_free(f);
    return ok;
}

static t2_status build_one(t2_svd *s, int i, const char *fp, double *err) {
    svd_mat *M = &s->mats[i];
    int m = M->m, n = M->n, r = M->r;
    size_t mn = (size_t)m * n;
    float *W = malloc(mn * sizeof *W), *A = malloc(mn * sizeof *A), *U = malloc((size_t)m * r * sizeof *U),
          *S = malloc((size_t)r * sizeof *S), *Vt = malloc((size_t)r * n * sizeof *Vt);
    uint16_t *Ub = NULL, *Vb = NULL;
    if (s->dtype == T2_BF16) {
        Ub = malloc((size_t)m * r * sizeof *Ub);
        Vb = malloc((size_t)r * n * sizeof *Vb);
    }
    t2_status st = T2_OK;
    if (!W || !A || !U || !S || !Vt || (s->dtype == T2_BF16 && (!Ub || !Vb))) st = t2_set_error(T2_ERR_NOMEM, "svd: out of memory for %s", M->name);
    if (!st) {
        widen(M->w, W);
        memcpy(A, W, mn * sizeof *A);
        lapack_int info;
        if (s->precision) {
            /* double: the same decomposition with 52-bit mantissas, rounded to f32 at the end */
            double *Ad = malloc(mn * sizeof *Ad), *Ud = malloc((size_t)m * r * sizeof *Ud), *Sd = malloc((size_t)r * sizeof *Sd),
                   *Vd = malloc((size_t)r * n * sizeof *Vd);
            if (!Ad || !Ud || !Sd || !Vd) {
                info = -1000;
            } else {
                for (size_t i = 0; i < mn; i++) Ad[i] = W[i];
                info = LAPACKE_dgesdd(LAPACK_ROW_MAJOR, 'S', m, n, Ad, n, Sd, Ud, r, Vd, n);
                for (size_t i = 0; !info && i < (size_t)m * r; i++) U[i] = (float)Ud[i];
                for (int i = 0; !info && i < r; i++) S[i] = (float)Sd[i];
                for (size_t i = 0; !info && i < (size_t)r * n; i++) Vt[i] = (float)Vd[i];
            }
            free(Ad), free(Ud), free(Sd), free(Vd);
        } else {
            info = LAPACKE_sgesdd(LAPACK_ROW_MAJOR, 'S', m, n, A, n, S, U, r, Vt, n);
        }
        if (info == -1000) st = t2_set_error(T2_ERR_NOMEM, "svd: out of memory for %s in double precision", M->name);
        else if (info)
            st = t2_set_error(T2_ERR_INTERNAL, "svd: LAPACKE_%cgesdd failed on %s (info %d)", s->precision ? 'd' : 's', M->name,
                              (int)info);
    }
    if (!st) {
        round_to(s->dtype, U, (size_t)m * r, Ub);
        round_to(s->dtype, Vt, (size_t)r * n, Vb);
        *err = recon_error(W, U, S, Vt, m, n, r);
        char p[4200], errs[64];
        partial_path(s, i, p, sizeof p);
        snprintf(errs, sizeof errs, "%.9g", *err);
        t2_tensor_info t[3] = {
            {.name = "U", .dtype = s->dtype, .ndim = 2, .shape = {m, r}, .data = Ub ? (void *)Ub : (void *)U},
            {.name = "S", .dtype = T2_F32, .ndim = 1, .shape = {r}, .data = S},
            {.name = "Vt", .dtype = s->dtype, .ndim = 2, .shape = {r, n}, .data = Vb ? (void *)Vb : (void *)Vt},
        };
        const char *meta[] = {"fingerprint", fp, "name", M->name, "err", errs, "precision", precision_name(s->precision), NULL};
        st = t2_st_write(p, t, 3, meta);
    }
    free(W);
    free(A);
    free(U);
    free(S);
    free(Vt);
    free(Ub);
    free(Vb);
    return st;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void note(const t2_svd_params *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void note(const t2_svd_params *p, const char *fmt, ...) {
    if (!p->note) return;
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    p->note(p->user, buf);
}

static t2_status build(t2_svd *s, const t2_svd_params *p) {
    const char *fp = t2_model_fingerprint(s->model);
    char dir[4200];
    snprintf(dir, sizeof dir, "%s.partial", s->path);
    t2_status st = mkdirs(dir);
    if (st) return st;
    int resumed = 0;
    for (int i = 0; i < s->n && !st; i++) {
        double err = 0, t0 = now_s();
        if (partial_ok(s, i, fp)) {
            resumed++;
            if (p->progress) p->progress(p->user, i, s->n, s->mats[i].name, 0.0, NAN);
            continue;
        }
        st = build_one(s, i, fp, &err);
        if (!st && p->progress) p->progress(p->user, i, s->n, s->mats[i].name, now_s() - t0, err);
    }
    if (st) return st;
    if (resumed) note(p, "resumed an interrupted build: %d of %d matrices were already done", resumed, s->n);

    /* assemble from the mapped partial files, then write atomically */
    t2_st **parts = calloc((size_t)s->n, sizeof *parts);
    t2_tensor_info *t = calloc(3 * (size_t)s->n, sizeof *t);
    char (*names)[112] = calloc(3 * (size_t)s->n, sizeof *names);
    char (*errkeys)[112] = calloc((size_t)s->n, sizeof *errkeys);
    const char **meta = calloc(14 + 2 * (size_t)s->n + 1, sizeof *meta);
    if (!parts || !t || !names || !errkeys || !meta) st = t2_set_error(T2_ERR_NOMEM, "svd: out of memory");
    for (int i = 0; i < s->n && !st; i++) {
        char pp[4200];
        partial_path(s, i, pp, sizeof pp);
        parts[i] = t2_st_open(pp, &st);
        if (!parts[i]) break;
        static const char *sfx[3] = {"U", "S", "Vt"};
        for (int k = 0; k < 3; k++) {
            t[3 * i + k] = *t2_st_find(parts[i], sfx[k]);
            snprintf(names[3 * i + k], sizeof names[0], "%s.%s", s->mats[i].name, sfx[k]);
            t[3 * i + k].name = names[3 * i + k];
        }
        snprintf(errkeys[i], sizeof errkeys[0], "err.%s", s->mats[i].name);
    }
    if (!st) {
        int k = 0;
        meta[k++] = "format", meta[k++] = SVD_FORMAT;
        meta[k++] = "version", meta[k++] = SVD_VERSION;
        meta[k++] = "fingerprint", meta[k++] = fp;
        meta[k++] = "modules", meta[k++] = t2_modules_name(s->modules);
        meta[k++] = "dtype", meta[k++] = t2_dtype_name(s->dtype);
        meta[k++] = "model_type", meta[k++] = s->model->cfg.model_type;
        meta[k++] = "precision", meta[k++] = precision_name(s->precision);
        for (int i = 0; i < s->n; i++) meta[k++] = errkeys[i], meta[k++] = t2_st_meta(parts[i], "err");
        meta[k] = NULL;
        st = t2_st_write(s->path, t, 3 * (size_t)s->n, meta);
    }
    for (int i = 0; i < s->n; i++) t2_st_free(parts[i]);
    if (!st) {
        for (int i = 0; i < s->n; i++) {
            char pp[4200];
            partial_path(s, i, pp, sizeof pp);
            unlink(pp);
        }
        rmdir(dir);
    }
    free(parts);
    free(t);
    free(names);
    free(errkeys);
    free(meta);
    return st;
}

/* ---------------- loading ---------------- */

/* Check the open cache file against what we need; on success fill U/Vt/s/err of every matrix. */
static t2_status attach(t2_svd *s, const char *fp) {
    const char *fmt = t2_st_meta(s->st, "format"), *ver = t2_st_meta(s->st, "version");
    const char *mfp = t2_st_meta(s->st, "fingerprint"), *mod = t2_st_meta(s->st, "modules"), *dt = t2_st_meta(s->st, "dtype");
    if (!fmt || strcmp(fmt, SVD_FORMAT)) return t2_set_error(T2_ERR_FORMAT, "%s is not a T2 SVD cache", s->path);
    if (!ver || strcmp(ver, SVD_VERSION))
        return t2_set_error(T2_ERR_VERSION, "%s: SVD cache version %s, this T2 reads %s", s->path, ver ? ver : "?", SVD_VERSION);
    if (!mfp || strcmp(mfp, fp))
        return t2_set_error(T2_ERR_VERSION, "%s: made for base weights %s, this model is %s", s->path, mfp ? mfp : "?", fp);
    if (!mod || strcmp(mod, t2_modules_name(s->modules)))
        return t2_set_error(T2_ERR_VERSION, "%s: holds modules %s, %s wanted", s->path, mod ? mod : "?", t2_modules_name(s->modules));
    if (!dt || strcmp(dt, t2_dtype_name(s->dtype)))
        return t2_set_error(T2_ERR_VERSION, "%s: dtype %s, %s wanted", s->path, dt ? dt : "?", t2_dtype_name(s->dtype));
    const char *prec = t2_st_meta(s->st, "precision");
    int have = prec && !strcmp(prec, "double");
    if (have < s->precision)
        return t2_set_error(T2_ERR_VERSION, "%s: built in %s precision, double wanted", s->path, prec ? prec : "single");
    s->precision = have;
    for (int i = 0; i < s->n; i++) {
        svd_mat *M = &s->mats[i];
        char nm[128];
        static const char *sfx[3] = {"U", "S", "Vt"};
        const t2_tensor_info *t[3];
        int64_t want[3][2] = {{M->m, M->r}, {M->r, -1}, {M->r, M->n}};
        for (int k = 0; k < 3; k++) {
            snprintf(nm, sizeof nm, "%s.%s", M->name, sfx[k]);
            t[k] = t2_st_find(s->st, nm);
            t2_dtype wdt = k == 1 ? T2_F32 : s->dtype;
            int nd = k == 1 ? 1 : 2;
            if (!t[k]) return t2_set_error(T2_ERR_NOT_FOUND, "%s: tensor \"%s\" is missing", s->path, nm);
            if (t[k]->dtype != wdt || t[k]->ndim != nd || t[k]->shape[0] != want[k][0] || (nd == 2 && t[k]->shape[1] != want[k][1]))
                return t2_set_error(T2_ERR_SHAPE, "%s: tensor \"%s\" has the wrong dtype or shape", s->path, nm);
        }
        M->U = (t2_weight){.dtype = s->dtype, .rows = M->m, .cols = M->r, .data = t[0]->data};
        M->Vt = (t2_weight){.dtype = s->dtype, .rows = M->r, .cols = M->n, .data = t[2]->data};
        M->s = malloc((size_t)M->r * sizeof *M->s);
        if (!M->s) return t2_set_error(T2_ERR_NOMEM, "svd: out of memory");
        memcpy(M->s, t[1]->data, (size_t)M->r * sizeof *M->s);
        for (int j = 0; j < M->r; j++)
            if (!isfinite(M->s[j]) || M->s[j] < 0)
                return t2_set_error(T2_ERR_FORMAT, "%s: singular values of %s are not finite and non-negative", s->path, M->name);
        snprintf(nm, sizeof nm, "err.%s", M->name);
        const char *e = t2_st_meta(s->st, nm);
        M->err = e ? strtod(e, NULL) : NAN;
    }
    return T2_OK;
}

static void detach(t2_svd *s) {
    for (int i = 0; i < s->n; i++) {
        free(s->mats[i].s);
        s->mats[i].s = NULL;
    }
    t2_st_free(s->st);
    s->st = NULL;
}

static t2_status verify(t2_svd *s, const t2_svd_params *p) {
    for (int i = 0; i < s->n; i++) {
        svd_mat *M = &s->mats[i];
        double t0 = now_s();
        float *W = malloc((size_t)M->m * M->n * sizeof *W), *U = malloc((size_t)M->m * M->r * sizeof *U),
              *Vt = malloc((size_t)M->r * M->n * sizeof *Vt);
        if (!W || !U || !Vt) {
            free(W), free(U), free(Vt);
            return t2_set_error(T2_ERR_NOMEM, "svd: out of memory");
        }
        widen(M->w, W);
        widen(&M->U, U);
        widen(&M->Vt, Vt);
        M->err = recon_error(W, U, M->s, Vt, M->m, M->n, M->r);
        free(W), free(U), free(Vt);
        if (p->progress) p->progress(p->user, i, s->n, M->name, now_s() - t0, M->err);
    }
    return T2_OK;
}

t2_svd *t2_svd_load(t2_model *m, const t2_svd_params *pp, t2_status *err) {
    t2_svd_params p = pp ? *pp : t2_svd_default_params();
    t2_status st = T2_OK;
    t2_svd *s = calloc(1, sizeof *s);
    if (!s) {
        *err = t2_set_error(T2_ERR_NOMEM, "svd: out of memory");
        return NULL;
    }
    s->model = m;
    s->modules = p.modules;
    s->precision = p.precision ? 1 : 0;
    s->dtype = p.dtype < 0 ? t2_model_weight_dtype(m) : (t2_dtype)p.dtype;
    if (s->dtype == T2_F16) s->dtype = T2_F32; /* no F16 caches: F16 models get f32 factors */
    if (s->modules < T2_MODULES_MLP || s->modules > T2_MODULES_ALL || (s->dtype != T2_F32 && s->dtype != T2_BF16))
        st = t2_set_error(T2_ERR_INVALID_ARG, "svd: modules must be mlp, attn or all and dtype F32 or BF16");
    char path[4096];
    if (!st) {
        if (p.path) snprintf(path, sizeof path, "%s", p.path);
        else st = t2_svd_default_path(m, s->modules, (int)s->dtype, path, sizeof path);
    }
    if (!st && !(s->path = strdup(path))) st = t2_set_error(T2_ERR_NOMEM, "svd: out of memory");
    /* no dtype asked for: an existing cache's own F32 or BF16 is as good as the model's */
    if (!st && p.dtype < 0 && !p.rebuild && access(s->path, F_OK) == 0) {
        t2_status ignored;
        t2_st *f = t2_st_open(s->path, &ignored);
        const char *dt = f ? t2_st_meta(f, "dtype") : NULL;
        if (dt && !strcmp(dt, "F32")) s->dtype = T2_F32;
        else if (dt && !strcmp(dt, "BF16")) s->dtype = T2_BF16;
        t2_st_free(f);
    }
    /* the matrices this cache covers */
    int L = m->cfg.n_layers;
    s->index = malloc((size_t)L * T2_N_KINDS * sizeof *s->index);
    s->mats = calloc((size_t)L * T2_N_KINDS, sizeof *s->mats);
    if (!st && (!s->index || !s->mats)) st = t2_set_error(T2_ERR_NOMEM, "svd: out of memory");
    for (int l = 0; !st && l < L; l++)
        for (int k = 0; k < T2_N_KINDS; k++) {
            int attn = k <= T2_KIND_O;
            s->index[l * T2_N_KINDS + k] = -1;
            if (!(s->modules & (attn ? T2_MODULES_ATTN : T2_MODULES_MLP))) continue;
            svd_mat *M = &s->mats[s->n];
            M->layer = l, M->kind = k;
            M->w = t2_model_matrix(m, l, k, M->name, sizeof M->name);
            M->m = M->w->rows, M->n = M->w->cols, M->r = M->m < M->n ? M->m : M->n;
            s->index[l * T2_N_KINDS + k] = s->n++;
        }
    const char *fp = st ? "" : t2_model_fingerprint(m);
    if (!st && !p.rebuild && access(s->path, F_OK) == 0) {
        s->st = t2_st_open(s->path, &st);
        if (!st) st = attach(s, fp);
        if (st) {
            note(&p, "rebuilding the SVD cache: %s", t2_last_error());
            detach(s);
            st = T2_OK;
            /* a damaged file does not choose the dtype of its replacement: the model's, as asked */
            if (p.dtype < 0) s->dtype = t2_model_weight_dtype(m) == T2_BF16 ? T2_BF16 : T2_F32;
            s->precision = p.precision ? 1 : 0;
        } else if (p.verify) {
            st = verify(s, &p);
            goto done;
        } else {
            goto done;
        }
    }
    if (!st) {
        char dir[4096];
        snprintf(dir, sizeof dir, "%s", s->path);
        char *slash = strrchr(dir, '/');
        if (slash && slash != dir) {
            *slash = 0;
            st = mkdirs(dir);
        }
    }
    if (!st) st = build(s, &p);
    if (!st) {
        s->st = t2_st_open(s->path, &st);
        if (!st) st = attach(s, fp);
    }
done:
    if (st) {
        t2_svd_free(s);
        *err = st;
        return NULL;
    }
    *err = T2_OK;
    return s;
}

t2_status t2__svd_recompose(const t2_svd *s, int i, const float *c, t2_dtype dtype, void *out) {
    const svd_mat *M = &s->mats[i];
    size_t mr = (size_t)M->m * M->r, rn = (size_t)M->r * M->n, mn = (size_t)M->m * M->n;
    float *U = malloc(mr * sizeof *U), *Vt = malloc(rn * sizeof *Vt);
    float *R = dtype == T2_F32 ? out : malloc(mn * sizeof *R);
    if (!U || !Vt || !R) {
        free(U), free(Vt);
        if (R != out) free(R);
        return t2_set_error(T2_ERR_NOMEM, "svd: out of memory recomposing %s", M->name);
    }
    widen(&M->U, U);
    widen(&M->Vt, Vt);
    for (int a = 0; a < M->m; a++)
        for (int j = 0; j < M->r; j++) U[(size_t)a * M->r + j] *= c[j];
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M->m, M->n, M->r, 1.0f, U, M->r, Vt, M->n, 0.0f, R, M->n);
    if (dtype == T2_BF16) {
        uint16_t *o = out;
        for (size_t k = 0; k < mn; k++) o[k] = t2_f32_to_bf16(R[k]);
        free(R);
    }
    free(U);
    free(Vt);
    return T2_OK;
}
