/* The Llama-family forward over a mixed batch (prompt chunks and decode tokens of many sequences),
 * in f32, with Hugging Face's semantics:
 *   h = embed[token]
 *   per layer: a = rmsnorm(h)·w_in; q,k,v = a·Wqᵀ(+b), ...; rope(q,k); cache k,v;
 *              h += softmax(q·kᵀ/√d, causal [, sliding window]) · v · Woᵀ
 *              a = rmsnorm(h)·w_post; h += (silu(a·Wgᵀ) ⊙ a·Wuᵀ) · Wdᵀ
 *   logits = rmsnorm(h)·w_final · Wlmᵀ   (only for the rows asked for)
 * RoPE pairs dimension i with i + d/2 ("rotate_half"); angles are computed in f32 as
 * (float)pos · inv_freq exactly as the reference does, so long positions agree too.
 * Rows may carry adapters (t2_ctx_decode_adapted): SVF (factored or merged W') or LoRA, where a
 * projection is W x + (alpha/rank)·B(A x) for the matrices the LoRA adapts.
 * All scratch is allocated by t2_ctx_new (and the adapted rows' scratch once, by t2_ctx_set_svd or the
 * first batch with a LoRA row); nothing is allocated per batch. */
#include <t2/model.h>
#include <t2/error.h>

#include <t2/svf.h>

#include "adapter_cache.h"
#include "forward_impl.h"
#include "lora_impl.h"
#include "matmul.h"
#include "model_impl.h"
#include "svf_impl.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

struct t2_ctx {
    t2_model *m;
    t2_ctx_params p;
    int kv_dim, q_dim;
    float *kc, *vc;        /* [n_layers][n_seq][n_ctx][kv_dim] */
    int *seq_len;          /* [n_seq] */
    float *rope_cos, *rope_sin;  /* [n_ctx][hd/2] */
    /* per-batch scratch, rows ≤ n_batch */
    float *x;              /* [B × H] residual stream */
    float *xb;             /* [B × H] normed input of a block */
    float *q;              /* [B × q_dim] */
    float *k, *v;          /* [B × kv_dim] */
    float *att;            /* [B × q_dim] attention output */
    float *hg, *hu;        /* [B × F] */
    float *scores;         /* [n_threads × n_ctx] */
    int *out_rows;         /* [B] rows whose logits are wanted */
    t2_mm mm;
    size_t max_k;          /* widest matrix dimension (H, F or q_dim) */
    /* SVF (t2_ctx_set_svd) and LoRA adapters */
    const t2_svd *svd;
    t2_mcache *mcache;
    float *xg, *yg, *tg;   /* [B × max_k] gathered rows, outputs, and Vᵀx of the factored path or A x of
                            * LoRA rows (rank ≤ min(rows, cols) ≤ max_k); allocated once, by t2_ctx_set_svd
                            * or the first batch with a LoRA row */
    int *grp;              /* [B] row indices of one group */
    uint8_t *fallback;     /* [B] merged rows whose W' does not fit the cache: run factored */
};

t2_ctx_params t2_ctx_default_params(void) { return (t2_ctx_params){.n_ctx = 2048, .n_seq = 1, .n_batch = 512}; }

const t2_model *t2_ctx_model(const t2_ctx *c) { return c->m; }
t2_ctx_params t2_ctx_get_params(const t2_ctx *c) { return c->p; }

void t2_ctx_free(t2_ctx *c) {
    if (!c) return;
    void *bufs[] = {c->kc, c->vc, c->seq_len, c->rope_cos, c->rope_sin, c->x, c->xb, c->q, c->k, c->v,
                    c->att, c->hg, c->hu, c->scores, c->out_rows, c->mm.panel, c->mm.xbf,
                    c->xg, c->yg, c->tg, c->grp, c->fallback};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) free(bufs[i]);
    t2_mcache_free(c->mcache);
    free(c);
}

/* inv_freq per HF (rope_type default / linear / llama3), in f32. */
void t2__rope_tables(const t2_model_config *cfg, int n_ctx, float *cs, float *sn) {
    int half = cfg->head_dim / 2;
    for (int i = 0; i < half; i++) {
        float inv = (float)(1.0 / pow(cfg->rope_theta, (double)(2 * i) / cfg->head_dim));
        if (cfg->rope_kind == T2_ROPE_LLAMA3) {
            double orig = cfg->rope_original_max_pos, lo = cfg->rope_low_freq_factor, hi = cfg->rope_high_freq_factor;
            double wavelen = 2 * M_PI / inv, low_wl = orig / lo, high_wl = orig / hi;
            if (wavelen > low_wl) inv = (float)(inv / cfg->rope_factor);
            else if (wavelen >= high_wl) {
                double smooth = (orig / wavelen - lo) / (hi - lo);
                inv = (float)((1 - smooth) * inv / cfg->rope_factor + smooth * inv);
            }
        }
        for (int p = 0; p < n_ctx; p++) {
            float pos = cfg->rope_kind == T2_ROPE_LINEAR ? (float)p / (float)cfg->rope_factor : (float)p;
            float a = pos * inv;
            cs[(size_t)p * half + i] = cosf(a);
            sn[(size_t)p * half + i] = sinf(a);
        }
    }
}

t2_ctx *t2_ctx_new(t2_model *m, const t2_ctx_params *pp, t2_status *err) {
    t2_ctx_params p = pp ? *pp : t2_ctx_default_params();
    if (p.n_ctx < 1 || p.n_seq < 1 || p.n_batch < 1 || p.n_ctx > (1 << 24) || p.n_seq > 4096 || p.n_batch > (1 << 16)) {
        *err = t2_set_error(T2_ERR_INVALID_ARG, "context: n_ctx %d, n_seq %d, n_batch %d out of range", p.n_ctx, p.n_seq,
                            p.n_batch);
        return NULL;
    }
    const t2_model_config *cfg = &m->cfg;
    t2_ctx *c = calloc(1, sizeof *c);
    if (!c) {
        *err = t2_set_error(T2_ERR_NOMEM, "context: out of memory");
        return NULL;
    }
    c->m = m;
    c->p = p;
    c->kv_dim = cfg->n_kv_heads * cfg->head_dim;
    c->q_dim = cfg->n_heads * cfg->head_dim;
    size_t B = (size_t)p.n_batch, H = (size_t)cfg->hidden_size, F = (size_t)cfg->intermediate_size;
    size_t kv = (size_t)cfg->n_layers * p.n_seq * (size_t)p.n_ctx * (size_t)c->kv_dim;
    size_t half = (size_t)cfg->head_dim / 2, maxK = H > F ? H : F;
    if (maxK < (size_t)c->q_dim) maxK = (size_t)c->q_dim;
    c->max_k = maxK;
    c->kc = malloc(kv * sizeof(float));
    c->vc = malloc(kv * sizeof(float));
    c->seq_len = calloc((size_t)p.n_seq, sizeof(int));
    c->rope_cos = malloc((size_t)p.n_ctx * half * sizeof(float));
    c->rope_sin = malloc((size_t)p.n_ctx * half * sizeof(float));
    c->x = malloc(B * H * sizeof(float));
    c->xb = malloc(B * H * sizeof(float));
    c->q = malloc(B * (size_t)c->q_dim * sizeof(float));
    c->k = malloc(B * (size_t)c->kv_dim * sizeof(float));
    c->v = malloc(B * (size_t)c->kv_dim * sizeof(float));
    c->att = malloc(B * (size_t)c->q_dim * sizeof(float));
    c->hg = malloc(B * F * sizeof(float));
    c->hu = malloc(B * F * sizeof(float));
    c->scores = malloc((size_t)m->n_threads * (size_t)p.n_ctx * sizeof(float));
    c->out_rows = malloc(B * sizeof(int));
    c->mm.k = m->kern;
    c->mm.pool = m->pool;
    c->mm.panel_elems = maxK * 16 > (1u << 20) ? maxK * 16 : (1u << 20);
    c->mm.panel = malloc(c->mm.panel_elems * sizeof(float));
    /* x split in BF16 parts, for the rows the dot-product kernels see at once */
    size_t split_rows = m->prefill_bf16 || (m->kern->bf16_split_x && m->kern->own_gemm) ? B
                        : m->kern->bf16_split_x ? (B < T2_GEMM_MIN_ROWS ? B : T2_GEMM_MIN_ROWS) : 1;
    c->mm.bf16_x1 = m->prefill_bf16 ? t2_gemv_bf16_x1_avx512bf16 : NULL;
    c->mm.xbf_elems = split_rows * maxK;
    c->mm.xbf = malloc(3 * c->mm.xbf_elems * sizeof(uint16_t));
    if (!c->kc || !c->vc || !c->seq_len || !c->rope_cos || !c->rope_sin || !c->x || !c->xb || !c->q || !c->k || !c->v ||
        !c->att || !c->hg || !c->hu || !c->scores || !c->out_rows || !c->mm.panel || !c->mm.xbf) {
        t2_ctx_free(c);
        *err = t2_set_error(T2_ERR_NOMEM, "context: out of memory (KV cache %zu MB for n_ctx %d × n_seq %d)",
                            2 * kv * sizeof(float) >> 20, p.n_ctx, p.n_seq);
        return NULL;
    }
    t2__rope_tables(cfg, p.n_ctx, c->rope_cos, c->rope_sin);
    *err = T2_OK;
    return c;
}

int t2_ctx_seq_len(const t2_ctx *c, int seq) { return seq >= 0 && seq < c->p.n_seq ? c->seq_len[seq] : 0; }
void t2_ctx_seq_clear(t2_ctx *c, int seq) {
    if (seq >= 0 && seq < c->p.n_seq) c->seq_len[seq] = 0;
}

t2_status t2_ctx_seq_copy(t2_ctx *c, int src, int dst, int n) {
    if (src < 0 || src >= c->p.n_seq || dst < 0 || dst >= c->p.n_seq || n < 0 || n > c->seq_len[src])
        return t2_set_error(T2_ERR_RANGE, "seq copy: sequences %d -> %d of %d, %d positions (source holds %d)", src, dst, c->p.n_seq, n,
                            src >= 0 && src < c->p.n_seq ? c->seq_len[src] : 0);
    if (src != dst) {
        size_t row = (size_t)c->kv_dim, per_seq = (size_t)c->p.n_ctx * row;
        for (int l = 0; l < c->m->cfg.n_layers; l++) {
            size_t base = (size_t)l * (size_t)c->p.n_seq * per_seq;
            memcpy(c->kc + base + (size_t)dst * per_seq, c->kc + base + (size_t)src * per_seq, (size_t)n * row * sizeof *c->kc);
            memcpy(c->vc + base + (size_t)dst * per_seq, c->vc + base + (size_t)src * per_seq, (size_t)n * row * sizeof *c->vc);
        }
    }
    c->seq_len[dst] = n;
    return T2_OK;
}

float t2__rmsnorm(float *out, const float *x, const float *w, int n, float eps) {
    double ss = 0;
    for (int i = 0; i < n; i++) ss += (double)x[i] * x[i];
    float inv = 1.0f / sqrtf((float)(ss / n) + eps);
    for (int i = 0; i < n; i++) out[i] = w[i] * (x[i] * inv);
    return inv;
}
#define rmsnorm(out, x, w, n, eps) ((void)t2__rmsnorm(out, x, w, n, eps))

void t2__rope(float *v, int n_heads, int hd, const float *cs, const float *sn) {
    int half = hd / 2;
    for (int h = 0; h < n_heads; h++) {
        float *x = v + (size_t)h * hd;
        for (int i = 0; i < half; i++) {
            float a = x[i], b = x[i + half];
            x[i] = a * cs[i] - b * sn[i];
            x[i + half] = b * cs[i] + a * sn[i];
        }
    }
}

static inline float *kv_at(const t2_ctx *c, float *base, int layer, int seq, int pos) {
    return base + (((size_t)layer * c->p.n_seq + (size_t)seq) * c->p.n_ctx + (size_t)pos) * c->kv_dim;
}

typedef struct att_job {
    t2_ctx *c;
    const t2_batch *b;
    int layer;
} att_job;

/* One task: one row, one KV head, all the query heads that share it. */
static void attention_task(void *arg, int task, int thread) {
    att_job *j = arg;
    t2_ctx *c = j->c;
    const t2_model_config *cfg = &c->m->cfg;
    const t2_kernels *K = c->m->kern;
    int nkv = cfg->n_kv_heads, hd = cfg->head_dim, group = cfg->n_heads / nkv;
    int r = task / nkv, g = task % nkv;
    int seq = j->b->seq[r], pos = j->b->pos[r];
    int lo = cfg->sliding_window > 0 && pos - cfg->sliding_window + 1 > 0 ? pos - cfg->sliding_window + 1 : 0;
    float *sc = c->scores + (size_t)thread * c->p.n_ctx;
    float scale = 1.0f / sqrtf((float)hd);
    const float *kbase = kv_at(c, c->kc, j->layer, seq, 0) + (size_t)g * hd;
    const float *vbase = kv_at(c, c->vc, j->layer, seq, 0) + (size_t)g * hd;
    for (int h = g * group; h < (g + 1) * group; h++) {
        const float *q = c->q + (size_t)r * c->q_dim + (size_t)h * hd;
        float *o = c->att + (size_t)r * c->q_dim + (size_t)h * hd;
        float mx = -INFINITY;
        for (int t = lo; t <= pos; t++) {
            sc[t] = K->dot(q, kbase + (size_t)t * c->kv_dim, hd) * scale;
            if (sc[t] > mx) mx = sc[t];
        }
        float sum = 0;
        for (int t = lo; t <= pos; t++) sum += (sc[t] = expf(sc[t] - mx));
        float inv = 1.0f / sum;
        memset(o, 0, (size_t)hd * sizeof *o);
        for (int t = lo; t <= pos; t++) K->axpy(sc[t] * inv, vbase + (size_t)t * c->kv_dim, o, hd);
    }
}

static t2_status check_batch(const t2_ctx *c, const t2_batch *b, int *n_out) {
    const t2_model_config *cfg = &c->m->cfg;
    if (!b || b->n < 1 || !b->token || !b->pos || !b->seq)
        return t2_set_error(T2_ERR_INVALID_ARG, "decode: empty batch or missing token/pos/seq arrays");
    if (b->n > c->p.n_batch)
        return t2_set_error(T2_ERR_FULL, "decode: %d rows exceed the context's n_batch %d", b->n, c->p.n_batch);
    /* next expected position per sequence, -1 = not seen in this batch yet */
    int n = 0;
    for (int r = 0; r < b->n; r++) {
        if (b->token[r] < 0 || b->token[r] >= cfg->vocab_size)
            return t2_set_error(T2_ERR_RANGE, "decode: row %d: token id %d outside the vocabulary [0, %d)", r, b->token[r],
                                cfg->vocab_size);
        if (b->seq[r] < 0 || b->seq[r] >= c->p.n_seq)
            return t2_set_error(T2_ERR_RANGE, "decode: row %d: sequence %d outside [0, %d)", r, b->seq[r], c->p.n_seq);
        if (b->pos[r] < 0) return t2_set_error(T2_ERR_RANGE, "decode: row %d: negative position %d", r, b->pos[r]);
        if (b->pos[r] >= c->p.n_ctx)
            return t2_set_error(T2_ERR_FULL, "decode: row %d: position %d is past the context of %d", r, b->pos[r],
                                c->p.n_ctx);
        int prev = -1;
        for (int q = r - 1; q >= 0; q--)
            if (b->seq[q] == b->seq[r]) {
                prev = b->pos[q];
                break;
            }
        if (prev >= 0 ? b->pos[r] != prev + 1 : b->pos[r] > c->seq_len[b->seq[r]])
            return t2_set_error(T2_ERR_RANGE, "decode: row %d: position %d leaves a gap in sequence %d (expected %d)", r,
                                b->pos[r], b->seq[r], prev >= 0 ? prev + 1 : c->seq_len[b->seq[r]]);
        if (b->want ? b->want[r] : r == b->n - 1) n++;
    }
    *n_out = n;
    return T2_OK;
}

void t2__embed_row(const t2_model *m, int tok, float *out) {
    const t2_weight *e = &m->embed;
    size_t H = (size_t)e->cols, off = (size_t)tok * H;
    if (e->dtype == T2_F32) memcpy(out, (const float *)e->data + off, H * sizeof(float));
    else if (e->dtype == T2_BF16) m->kern->cvt_bf16((const uint16_t *)e->data + off, out, H);
    else m->kern->cvt_f16((const uint16_t *)e->data + off, out, H);
}

static float silu(float x) { return x / (1.0f + expf(-x)); }

/* Row-wise work of a batch spread over the pool (prompts have thousands of rows × features). */
typedef struct rows_job {
    t2_ctx *c;
    const float *w;       /* rmsnorm weight */
    int R, n;             /* rows, features per row */
    int per;              /* rows per task */
    float eps;
} rows_job;

static void rmsnorm_task(void *arg, int task, int thread) {
    (void)thread;
    rows_job *j = arg;
    for (int r = task * j->per; r < j->R && r < (task + 1) * j->per; r++)
        rmsnorm(j->c->xb + (size_t)r * j->n, j->c->x + (size_t)r * j->n, j->w, j->n, j->eps);
}

static void swiglu_task(void *arg, int task, int thread) {
    (void)thread;
    rows_job *j = arg;
    for (int r = task * j->per; r < j->R && r < (task + 1) * j->per; r++) {
        float *g = j->c->hg + (size_t)r * j->n;
        const float *u = j->c->hu + (size_t)r * j->n;
        for (int i = 0; i < j->n; i++) g[i] = silu(g[i]) * u[i];
    }
}

/* xb = rmsnorm(x)·w, or hg = silu(hg) ⊙ hu, for all R rows. */
static void rows_run(t2_ctx *c, t2_task_fn fn, const float *w, int R, int n) {
    int threads = t2_pool_threads(c->m->pool), per = (R + 4 * threads - 1) / (4 * threads);
    rows_job j = {c, w, R, n, per, c->m->cfg.rms_norm_eps};
    t2_pool_run(c->m->pool, (R + per - 1) / per, fn, &j);
}

/* ---------------- SVF and LoRA ---------------- */

/* The scratch of adapted rows, once per context. */
static t2_status adapter_scratch(t2_ctx *c) {
    if (c->xg && c->yg && c->tg && c->grp && c->fallback) return T2_OK;
    size_t n = (size_t)c->p.n_batch * c->max_k;
    if (!c->xg) c->xg = malloc(n * sizeof *c->xg);
    if (!c->yg) c->yg = malloc(n * sizeof *c->yg);
    if (!c->tg) c->tg = malloc(n * sizeof *c->tg);
    if (!c->grp) c->grp = malloc((size_t)c->p.n_batch * sizeof *c->grp);
    if (!c->fallback) c->fallback = malloc((size_t)c->p.n_batch);
    if (!c->xg || !c->yg || !c->tg || !c->grp || !c->fallback)
        return t2_set_error(T2_ERR_NOMEM, "context: out of memory for the scratch of adapted rows");
    return T2_OK;
}

t2_status t2_ctx_set_svd(t2_ctx *c, const t2_svd *svd, size_t budget) {
    if (svd && t2__svd_model(svd) != c->m)
        return t2_set_error(T2_ERR_INVALID_ARG, "context: the SVD cache belongs to another model");
    t2_status st = adapter_scratch(c);
    if (st) return st;
    t2_mcache_free(c->mcache);
    c->mcache = t2_mcache_new(budget ? budget : (size_t)4 << 30);
    if (!c->mcache) return t2_set_error(T2_ERR_NOMEM, "context: out of memory");
    c->svd = svd;
    return T2_OK;
}

/* out[rows] = x[rows] · Wᵀ for a subset of the R rows (all of them: no copies). */
static void run_rows(t2_ctx *c, const int *rows, int n, int R, float *out, size_t ldo, const float *x, size_t ldx,
                     const t2_weight *w) {
    if (n == R) {
        t2_matmul_forward(&c->mm, out, ldo, x, ldx, w, NULL, R);
        return;
    }
    size_t K = (size_t)w->cols, N = (size_t)w->rows;
    for (int i = 0; i < n; i++) memcpy(c->xg + i * K, x + (size_t)rows[i] * ldx, K * sizeof(float));
    t2_matmul_forward(&c->mm, c->yg, N, c->xg, K, w, NULL, n);
    for (int i = 0; i < n; i++) memcpy(out + (size_t)rows[i] * ldo, c->yg + i * N, N * sizeof(float));
}

/* Factored rows: y = U (c_row ⊙ (Vᵀ x)), every row with its own adapter's c, in two matmuls. */
static void run_factored(t2_ctx *c, const t2_adapter *const *ad, const int *rows, int n, int R, int mi, float *out,
                         size_t ldo, const float *x, size_t ldx) {
    const t2_weight *U = t2__svd_U(c->svd, mi), *Vt = t2__svd_Vt(c->svd, mi);
    size_t K = (size_t)Vt->cols, r = (size_t)Vt->rows, N = (size_t)U->rows;
    const float *xs = x;
    size_t lds = ldx;
    if (n != R) {
        for (int i = 0; i < n; i++) memcpy(c->xg + i * K, x + (size_t)rows[i] * ldx, K * sizeof(float));
        xs = c->xg;
        lds = K;
    }
    t2_matmul_forward(&c->mm, c->tg, r, xs, lds, Vt, NULL, n);
    for (int i = 0; i < n; i++) {
        const float *cv = t2__adapter_c(ad[rows[i]], mi);
        float *t = c->tg + i * r;
        for (size_t j = 0; j < r; j++) t[j] *= cv[j];
    }
    if (n == R) {
        t2_matmul_forward(&c->mm, out, ldo, c->tg, r, U, NULL, n);
        return;
    }
    t2_matmul_forward(&c->mm, c->yg, N, c->tg, r, U, NULL, n);
    for (int i = 0; i < n; i++) memcpy(out + (size_t)rows[i] * ldo, c->yg + i * N, N * sizeof(float));
}

/* LoRA rows: out[r] += (alpha/rank) · B (A x[r]), one group of rows per LoRA adapter that adapts
 * (layer, kind), two thin matmuls each (x Aᵀ: [n × rank], then · Bᵀ). The base part W x of these rows
 * was computed with the base rows. */
static void run_lora(t2_ctx *c, const t2_adapter *const *ad, int R, int layer, int kind, float *out, size_t ldo,
                     const float *x, size_t ldx) {
    for (int r = 0; r < R; r++) {
        const t2_lora *l = ad[r] ? t2__adapter_lora(ad[r]) : NULL;
        int li = l ? t2__lora_index(l, layer, kind) : -1;
        if (li < 0) continue;
        int first = 1;
        for (int q = 0; q < r && first; q++) first = ad[q] != ad[r];
        if (!first) continue;
        int n = 0;
        for (int q = r; q < R; q++)
            if (ad[q] == ad[r]) c->grp[n++] = q;
        const t2_weight *A = t2__lora_A(l, li), *B = t2__lora_B(l, li);
        size_t K = (size_t)A->cols, rk = (size_t)A->rows, N = (size_t)B->rows;
        const float *xs = x;
        size_t lds = ldx;
        if (n != R) {
            for (int i = 0; i < n; i++) memcpy(c->xg + i * K, x + (size_t)c->grp[i] * ldx, K * sizeof(float));
            xs = c->xg;
            lds = K;
        }
        t2_matmul_forward(&c->mm, c->tg, rk, xs, lds, A, NULL, n);
        t2_matmul_forward(&c->mm, c->yg, N, c->tg, rk, B, NULL, n);
        float s = t2__lora_scale(l);
        for (int i = 0; i < n; i++) {
            float *o = out + (size_t)c->grp[i] * ldo;
            const float *y = c->yg + i * N;
            for (size_t j = 0; j < N; j++) o[j] += s * y[j];
        }
    }
}

/* One projection of one layer for a batch whose rows may each carry an adapter. */
static t2_status proj(t2_ctx *c, const t2_adapter *const *ad, int R, int layer, int kind, float *out, size_t ldo,
                      const float *x, size_t ldx, const t2_weight *w, const float *bias) {
    int mi = ad && c->svd ? t2__svd_index(c->svd, layer, kind) : -1;
    if (mi < 0) {
        t2_matmul_forward(&c->mm, out, ldo, x, ldx, w, bias, R);
        if (ad) run_lora(c, ad, R, layer, kind, out, ldo, x, ldx);
        return T2_OK;
    }
    int n = 0;
    /* base rows (LoRA rows too: W x, then their low-rank part) */
    for (int r = 0; r < R; r++)
        if (!ad[r] || t2_adapter_mode(ad[r]) == T2_APPLY_LORA) c->grp[n++] = r;
    if (n) run_rows(c, c->grp, n, R, out, ldo, x, ldx, w);
    /* merged rows, one group per adapter; an adapter whose W' cannot be cached runs factored */
    for (int r = 0; r < R; r++) c->fallback[r] = 0;
    for (int r = 0; r < R; r++) {
        if (!ad[r] || t2_adapter_mode(ad[r]) != T2_APPLY_MERGED) continue;
        int first = 1;
        for (int q = 0; q < r; q++)
            if (ad[q] == ad[r]) first = 0;
        if (!first) continue;
        t2_status s;
        const t2_weight *wm = t2_mcache_get(c->mcache, ad[r], mi, &s);
        if (s) return s;
        if (!wm) {
            for (int q = r; q < R; q++) c->fallback[q] |= ad[q] == ad[r];
            continue;
        }
        n = 0;
        for (int q = r; q < R; q++)
            if (ad[q] == ad[r]) c->grp[n++] = q;
        run_rows(c, c->grp, n, R, out, ldo, x, ldx, wm);
    }
    /* factored rows (and merged ones that did not fit the cache) */
    n = 0;
    for (int r = 0; r < R; r++)
        if (ad[r] && (t2_adapter_mode(ad[r]) == T2_APPLY_FACTORED || c->fallback[r])) c->grp[n++] = r;
    if (n) run_factored(c, ad, c->grp, n, R, mi, out, ldo, x, ldx);
    if (bias) t2_add_bias(out, ldo, bias, R, w->rows);
    run_lora(c, ad, R, layer, kind, out, ldo, x, ldx);
    return T2_OK;
}

static t2_status decode(t2_ctx *c, const t2_batch *b, const t2_adapter *const *ad, float *logits);

t2_status t2_ctx_decode(t2_ctx *c, const t2_batch *b, float *logits) { return decode(c, b, NULL, logits); }

t2_status t2_ctx_decode_adapted(t2_ctx *c, const t2_batch *b, const t2_adapter *const *ad, float *logits) {
    if (ad && b)
        for (int r = 0; r < b->n; r++) {
            if (!ad[r]) continue;
            if (t2_adapter_mode(ad[r]) == T2_APPLY_LORA) {
                if (t2__lora_model(t2__adapter_lora(ad[r])) != c->m)
                    return t2_set_error(T2_ERR_INVALID_ARG, "decode: row %d's LoRA adapter was made for another model", r);
                t2_status s = adapter_scratch(c);
                if (s) return s;
                continue;
            }
            if (!c->svd) return t2_set_error(T2_ERR_INVALID_ARG, "decode: row %d has an adapter but the context has no SVD cache", r);
            if (t2__adapter_svd(ad[r]) != c->svd)
                return t2_set_error(T2_ERR_INVALID_ARG, "decode: row %d's adapter was made for another SVD cache", r);
        }
    return decode(c, b, ad, logits);
}

static t2_status decode(t2_ctx *c, const t2_batch *b, const t2_adapter *const *ad, float *logits) {
    int n_out = 0;
    t2_status s = check_batch(c, b, &n_out);
    if (s) return s;
    if (n_out && !logits) return t2_set_error(T2_ERR_INVALID_ARG, "decode: logits requested but no output buffer");
    const t2_model *m = c->m;
    const t2_model_config *cfg = &m->cfg;
    int R = b->n, H = cfg->hidden_size, F = cfg->intermediate_size, hd = cfg->head_dim, half = hd / 2;
    float eps = cfg->rms_norm_eps;
    /* the rows of one sequence may rewind it: its length becomes the batch's last position + 1 */
    for (int r = 0; r < R; r++) c->seq_len[b->seq[r]] = b->pos[r] + 1;

    for (int r = 0; r < R; r++) t2__embed_row(m, b->token[r], c->x + (size_t)r * H);

    for (int l = 0; l < cfg->n_layers; l++) {
        const t2_layer *L = &m->layers[l];
        rows_run(c, rmsnorm_task, L->attn_norm, R, H);
        if ((s = proj(c, ad, R, l, T2_KIND_Q, c->q, (size_t)c->q_dim, c->xb, (size_t)H, &L->wq, L->bq)) ||
            (s = proj(c, ad, R, l, T2_KIND_K, c->k, (size_t)c->kv_dim, c->xb, (size_t)H, &L->wk, L->bk)) ||
            (s = proj(c, ad, R, l, T2_KIND_V, c->v, (size_t)c->kv_dim, c->xb, (size_t)H, &L->wv, L->bv)))
            return s;
        for (int r = 0; r < R; r++) {
            size_t ro = (size_t)b->pos[r] * half;
            t2__rope(c->q + (size_t)r * c->q_dim, cfg->n_heads, hd, c->rope_cos + ro, c->rope_sin + ro);
            t2__rope(c->k + (size_t)r * c->kv_dim, cfg->n_kv_heads, hd, c->rope_cos + ro, c->rope_sin + ro);
            memcpy(kv_at(c, c->kc, l, b->seq[r], b->pos[r]), c->k + (size_t)r * c->kv_dim, (size_t)c->kv_dim * sizeof(float));
            memcpy(kv_at(c, c->vc, l, b->seq[r], b->pos[r]), c->v + (size_t)r * c->kv_dim, (size_t)c->kv_dim * sizeof(float));
        }
        att_job aj = {c, b, l};
        t2_pool_run(m->pool, R * cfg->n_kv_heads, attention_task, &aj);
        if ((s = proj(c, ad, R, l, T2_KIND_O, c->xb, (size_t)H, c->att, (size_t)c->q_dim, &L->wo, NULL))) return s;
        for (size_t i = 0; i < (size_t)R * H; i++) c->x[i] += c->xb[i];

        rows_run(c, rmsnorm_task, L->ffn_norm, R, H);
        if ((s = proj(c, ad, R, l, T2_KIND_GATE, c->hg, (size_t)F, c->xb, (size_t)H, &L->wg, NULL)) ||
            (s = proj(c, ad, R, l, T2_KIND_UP, c->hu, (size_t)F, c->xb, (size_t)H, &L->wu, NULL)))
            return s;
        rows_run(c, swiglu_task, NULL, R, F);
        if ((s = proj(c, ad, R, l, T2_KIND_DOWN, c->xb, (size_t)H, c->hg, (size_t)F, &L->wd, NULL))) return s;
        for (size_t i = 0; i < (size_t)R * H; i++) c->x[i] += c->xb[i];
    }

    if (!n_out) return T2_OK;
    int o = 0;
    for (int r = 0; r < R; r++)
        if (b->want ? b->want[r] : r == R - 1) c->out_rows[o++] = r;
    for (int i = 0; i < n_out; i++)
        rmsnorm(c->xb + (size_t)i * H, c->x + (size_t)c->out_rows[i] * H, m->final_norm, H, eps);
    t2_matmul_forward(&c->mm, logits, (size_t)cfg->vocab_size, c->xb, (size_t)H, &m->lm_head, NULL, n_out);
    return T2_OK;
}
