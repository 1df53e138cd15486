/* Adapters: a mixture compiled for one SVD cache, c = s ⊙ z · Σs / Σ(s ⊙ z) per matrix, and the
 * context's cache of merged weights W' = U diag(c) Vt (least recently used out, under a byte budget);
 * or a LoRA (T2_APPLY_LORA: a private copy of its factors, no SVD cache). The SVF accessors
 * (t2__adapter_c, _z, the merged cache) have nothing to give for a LoRA adapter and say so. */
#include <t2/svf.h>
#include <t2/error.h>
#include <t2/lora.h>

#include "adapter_cache.h"
#include "lora_impl.h"
#include "svf_impl.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

struct t2_adapter {
    const t2_svd *svd; /* NULL for a LoRA adapter */
    t2_apply mode;
    uint64_t id;
    float *c;          /* all matrices' c, concatenated */
    float *z;          /* the z' it was made from, same layout (for gradients) */
    size_t *off;       /* [n] start of matrix i in c */
    t2_lora *lora;     /* T2_APPLY_LORA: the adapter's own copy */
};

static atomic_uint_fast64_t s_next_id = 1;

t2_adapter *t2_adapter_new(const t2_svd *svd, const t2_expert *e, t2_apply mode, t2_status *err) {
    int n = t2_svd_count(svd);
    if (!e || t2_expert_count(e) != n) {
        *err = t2_set_error(T2_ERR_SHAPE, "adapter: the expert covers %d matrices, the SVD cache %d", e ? t2_expert_count(e) : 0, n);
        return NULL;
    }
    if (mode != T2_APPLY_FACTORED && mode != T2_APPLY_MERGED) {
        *err = mode == T2_APPLY_LORA ? t2_set_error(T2_ERR_INVALID_ARG, "adapter: LoRA adapters are made by t2_adapter_new_lora")
                                     : t2_set_error(T2_ERR_INVALID_ARG, "adapter: unknown apply mode %d", (int)mode);
        return NULL;
    }
    size_t total = 0;
    for (int i = 0; i < n; i++) {
        if (t2_expert_len(e, i) != t2_svd_rank(svd, i) || strcmp(t2_expert_name(e, i), t2_svd_name(svd, i))) {
            *err = t2_set_error(T2_ERR_SHAPE, "adapter: expert matrix %d (%s) does not match the SVD cache's %s", i,
                                t2_expert_name(e, i), t2_svd_name(svd, i));
            return NULL;
        }
        total += (size_t)t2_svd_rank(svd, i);
    }
    t2_adapter *a = calloc(1, sizeof *a);
    if (a) {
        a->c = malloc(total * sizeof *a->c);
        a->z = malloc(total * sizeof *a->z);
        a->off = malloc((size_t)(n ? n : 1) * sizeof *a->off);
    }
    if (!a || !a->c || !a->z || !a->off) {
        t2_adapter_free(a);
        *err = t2_set_error(T2_ERR_NOMEM, "adapter: out of memory");
        return NULL;
    }
    a->svd = svd;
    a->mode = mode;
    a->id = atomic_fetch_add(&s_next_id, 1);
    size_t o = 0;
    for (int i = 0; i < n; i++) {
        const float *s = t2_svd_values(svd, i), *z = t2_expert_zc(e, i);
        int r = t2_svd_rank(svd, i);
        double sum_s = 0, sum_sz = 0;
        for (int j = 0; j < r; j++) sum_s += s[j], sum_sz += (double)s[j] * z[j];
        if (!(sum_sz > 0) || !(sum_s > 0)) {
            t2_adapter_free(a);
            *err = t2_set_error(T2_ERR_INVALID_ARG, "adapter: %s: Σ(s ⊙ z) = %g, the normalisation Σs / Σ(s ⊙ z) needs it positive",
                                t2_svd_name(svd, i), sum_sz);
            return NULL;
        }
        double norm = sum_s / sum_sz;
        a->off[i] = o;
        for (int j = 0; j < r; j++) a->c[o + (size_t)j] = (float)(s[j] * z[j] * norm), a->z[o + (size_t)j] = z[j];
        o += (size_t)r;
    }
    *err = T2_OK;
    return a;
}

t2_adapter *t2_adapter_new_lora(const t2_lora *l, t2_status *err) {
    if (!l) {
        *err = t2_set_error(T2_ERR_INVALID_ARG, "adapter: no LoRA");
        return NULL;
    }
    t2_adapter *a = calloc(1, sizeof *a);
    if (!a) {
        *err = t2_set_error(T2_ERR_NOMEM, "adapter: out of memory");
        return NULL;
    }
    if (!(a->lora = t2_lora_clone(l, err))) {
        free(a);
        return NULL;
    }
    a->mode = T2_APPLY_LORA;
    a->id = atomic_fetch_add(&s_next_id, 1);
    *err = T2_OK;
    return a;
}

void t2_adapter_free(t2_adapter *a) {
    if (!a) return;
    free(a->c);
    free(a->z);
    free(a->off);
    t2_lora_free(a->lora);
    free(a);
}

t2_apply t2_adapter_mode(const t2_adapter *a) { return a->mode; }
/* SVF only: NULL for a LoRA adapter (callers check the mode first; this keeps a slip from reading
 * out of bounds). */
const float *t2__adapter_c(const t2_adapter *a, int i) { return a->c ? a->c + a->off[i] : NULL; }
const float *t2__adapter_z(const t2_adapter *a, int i) { return a->z ? a->z + a->off[i] : NULL; }
uint64_t t2__adapter_id(const t2_adapter *a) { return a->id; }
const t2_svd *t2__adapter_svd(const t2_adapter *a) { return a->svd; }
const t2_lora *t2__adapter_lora(const t2_adapter *a) { return a->lora; }

/* ---------------- merged-weight cache ---------------- */

typedef struct mentry {
    uint64_t id;       /* adapter id, 0 = free slot */
    int mat;
    t2_weight w;
    void *data;
    size_t bytes;
    uint64_t last;
} mentry;

struct t2_mcache {
    size_t budget, used;
    uint64_t clock;
    mentry *e;
    int n, cap;
};

t2_mcache *t2_mcache_new(size_t budget) {
    t2_mcache *c = calloc(1, sizeof *c);
    if (c) c->budget = budget;
    return c;
}

static void drop(t2_mcache *c, int i) {
    free(c->e[i].data);
    c->used -= c->e[i].bytes;
    c->e[i] = c->e[--c->n];
}

void t2_mcache_free(t2_mcache *c) {
    if (!c) return;
    while (c->n) drop(c, c->n - 1);
    free(c->e);
    free(c);
}

size_t t2_mcache_used(const t2_mcache *c) { return c->used; }

const t2_weight *t2_mcache_get(t2_mcache *c, const t2_adapter *a, int mat, t2_status *err) {
    *err = T2_OK;
    if (a->mode == T2_APPLY_LORA) {
        *err = t2_set_error(T2_ERR_INVALID_ARG, "merged cache: a LoRA adapter has no SVF weights to merge");
        return NULL;
    }
    for (int i = 0; i < c->n; i++)
        if (c->e[i].id == a->id && c->e[i].mat == mat) {
            c->e[i].last = ++c->clock;
            return &c->e[i].w;
        }
    const t2_svd *svd = a->svd;
    const t2_weight *U = t2__svd_U(svd, mat), *Vt = t2__svd_Vt(svd, mat);
    t2_dtype dt = t2__svd_dtype(svd);
    size_t bytes = (size_t)U->rows * (size_t)Vt->cols * t2_dtype_size(dt);
    if (bytes > c->budget) return NULL; /* never fits: the caller runs this one factored */
    while (c->used + bytes > c->budget && c->n) {
        int lru = 0;
        for (int i = 1; i < c->n; i++)
            if (c->e[i].last < c->e[lru].last) lru = i;
        drop(c, lru);
    }
    if (c->n == c->cap) {
        int nc = c->cap ? 2 * c->cap : 16;
        mentry *ne = realloc(c->e, (size_t)nc * sizeof *ne);
        if (!ne) {
            *err = t2_set_error(T2_ERR_NOMEM, "merged cache: out of memory");
            return NULL;
        }
        c->e = ne;
        c->cap = nc;
    }
    void *data = malloc(bytes);
    if (!data) {
        *err = t2_set_error(T2_ERR_NOMEM, "merged cache: out of memory for %zu bytes", bytes);
        return NULL;
    }
    if ((*err = t2__svd_recompose(svd, mat, t2__adapter_c(a, mat), dt, data))) {
        free(data);
        return NULL;
    }
    mentry *e = &c->e[c->n++];
    *e = (mentry){.id = a->id, .mat = mat, .data = data, .bytes = bytes, .last = ++c->clock,
                  .w = {.dtype = dt, .rows = U->rows, .cols = Vt->cols, .data = data}};
    c->used += bytes;
    return &e->w;
}
