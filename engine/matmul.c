#include "matmul.h"

#include <cblas.h>
#include <string.h>

typedef struct gemv_job {
    const t2_mm *mm;
    t2_gemv_fn fn;
    const t2_weight *w;
    const float *x;
    size_t ldx;
    float *out;
    size_t ldo;
    int R;
    int chunk;     /* output rows per task */
    const uint16_t *xbf;
} gemv_job;

static void gemv_task(void *arg, int task, int thread) {
    (void)thread;
    const gemv_job *j = arg;
    int i0 = task * j->chunk, n = j->w->rows - i0 < j->chunk ? j->w->rows - i0 : j->chunk;
    size_t es = t2_dtype_size(j->w->dtype);
    const char *wp = (const char *)j->w->data + (size_t)i0 * (size_t)j->w->cols * es;
    j->fn(wp, n, j->w->cols, j->x, j->ldx, j->R, j->out + i0, j->ldo, j->xbf);
}

static void gemv_path(const t2_mm *mm, float *out, size_t ldo, const float *x, size_t ldx, const t2_weight *w, int R) {
    int K = w->cols, threads = t2_pool_threads(mm->pool);
    const uint16_t *xbf = NULL;
    t2_gemv_fn fn = mm->k->gemv[w->dtype];
    if (w->dtype == T2_BF16 && mm->bf16_x1 && R >= T2_GEMM_MIN_ROWS) {
        uint16_t *b = mm->xbf;
        for (int r = 0; r < R; r++) t2_round_bf16_avx512bf16(x + (size_t)r * ldx, (size_t)K, b + (size_t)r * K);
        xbf = b;
        fn = mm->bf16_x1;
    } else if (w->dtype == T2_BF16 && mm->k->bf16_split_x) {
        /* planes hi/mid/lo, each [R × K] */
        size_t plane = (size_t)R * (size_t)K;
        uint16_t *b = mm->xbf;
        for (int r = 0; r < R; r++)
            t2_split_bf16(x + (size_t)r * ldx, (size_t)K, b + (size_t)r * K, b + plane + (size_t)r * K,
                          b + 2 * plane + (size_t)r * K);
        xbf = b;
    }
    /* ~8 tasks per thread for balance, each a multiple of 4 rows (the kernels' block) */
    int chunk = (w->rows + threads * 8 - 1) / (threads * 8);
    chunk = (chunk + 3) & ~3;
    if (chunk < 16) chunk = 16;
    gemv_job j = {mm, fn, w, x, ldx, out, ldo, R, chunk, xbf};
    t2_pool_run(mm->pool, (w->rows + chunk - 1) / chunk, gemv_task, &j);
}

/* Rows per widened panel of a BF16/F16 weight. */
static int panel_rows(const t2_mm *mm, int K) {
    int P = (int)(mm->panel_elems / (size_t)K) & ~15;
    return P < 16 ? 16 : P;
}

/* Widen rows [i0, i0 + np) of a BF16/F16 weight into mm->panel. */
static void widen_panel(const t2_mm *mm, const t2_weight *w, int i0, int np) {
    const uint16_t *src = (const uint16_t *)w->data + (size_t)i0 * (size_t)w->cols;
    if (w->dtype == T2_BF16) mm->k->cvt_bf16(src, mm->panel, (size_t)np * (size_t)w->cols);
    else mm->k->cvt_f16(src, mm->panel, (size_t)np * (size_t)w->cols);
}

static void gemm_path(const t2_mm *mm, float *out, size_t ldo, const float *x, size_t ldx, const t2_weight *w, int R) {
    int n = w->rows, K = w->cols;
    t2_pool_park(mm->pool);
    if (w->dtype == T2_F32) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, R, n, K, 1.0f, x, (int)ldx, w->data, K, 0.0f, out, (int)ldo);
        return;
    }
    for (int i0 = 0, P = panel_rows(mm, K); i0 < n; i0 += P) {
        int np = n - i0 < P ? n - i0 : P;
        widen_panel(mm, w, i0, np);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, R, np, K, 1.0f, x, (int)ldx, mm->panel, K, 0.0f, out + i0,
                    (int)ldo);
    }
}

void t2_matmul_forward(const t2_mm *mm, float *out, size_t ldo, const float *x, size_t ldx, const t2_weight *w,
                       const float *bias, int R) {
    if (R < T2_GEMM_MIN_ROWS || mm->k->own_gemm || (w->dtype == T2_BF16 && mm->bf16_x1)) gemv_path(mm, out, ldo, x, ldx, w, R);
    else gemm_path(mm, out, ldo, x, ldx, w, R);
    if (bias) t2_add_bias(out, ldo, bias, R, w->rows);
}

void t2_add_bias(float *out, size_t ldo, const float *bias, int R, int n) {
    for (int r = 0; r < R; r++) {
        float *o = out + (size_t)r * ldo;
        for (int i = 0; i < n; i++) o[i] += bias[i];
    }
}

/* Both backward products go through OpenBLAS (training runs them on whole sequences); BF16/F16
 * weights are widened one panel of rows at a time, as in gemm_path. */
void t2_matmul_backward_input(const t2_mm *mm, float *dx, size_t ldx, const float *dy, size_t ldy, const t2_weight *w, int R) {
    int n = w->rows, K = w->cols;
    t2_pool_park(mm->pool);
    if (w->dtype == T2_F32) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, R, K, n, 1.0f, dy, (int)ldy, w->data, K, 1.0f, dx, (int)ldx);
        return;
    }
    for (int i0 = 0, P = panel_rows(mm, K); i0 < n; i0 += P) {
        int np = n - i0 < P ? n - i0 : P;
        widen_panel(mm, w, i0, np);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, R, K, np, 1.0f, dy + i0, (int)ldy, mm->panel, K, 1.0f, dx,
                    (int)ldx);
    }
}

void t2_matmul_backward_weight(const t2_mm *mm, float *dw, const float *dy, size_t ldy, const float *x, size_t ldx,
                               const t2_weight *w, int R) {
    t2_pool_park(mm->pool);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, w->rows, w->cols, R, 1.0f, dy, (int)ldy, x, (int)ldx, 1.0f, dw,
                w->cols);
}
