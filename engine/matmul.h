/* Private: out = x · Wᵀ (+ bias) for a weight in any stored dtype.
 *
 * Few rows (decode, small batches): the gemv kernels of the kernel table, split over the pool by
 * output rows, every weight byte read once for all rows — memory-bound, so BF16 costs half of F32.
 * Many rows (prompt processing): the same kernels where the table says they beat OpenBLAS
 * (own_gemm: AVX-512), else OpenBLAS sgemm. Debian's OpenBLAS has no BF16 GEMM, so BF16/F16
 * weights are widened exactly to f32 one panel of rows at a time into scratch (a few MB), and sgemm
 * runs on each panel: the widening is O(n·K) against the GEMM's O(R·n·K). */
#ifndef T2_MATMUL_H
#define T2_MATMUL_H

#include "kernels.h"
#include "pool.h"

/* Rows from which sgemm beats the gemv kernels (checked by bench/bench_engine). */
#define T2_GEMM_MIN_ROWS 16

typedef struct t2_mm {
    const t2_kernels *k;
    t2_pool *pool;
    float *panel;          /* [panel_elems] widened weight rows for sgemm */
    size_t panel_elems;
    uint16_t *xbf;         /* [3 × xbf_elems] x split for BF16 dot-product kernels */
    size_t xbf_elems;
    t2_gemv_fn bf16_x1;    /* non-NULL: prompts (≥ T2_GEMM_MIN_ROWS rows) on BF16 weights round x to BF16
                            * and use this kernel (t2_model_params.prefill_bf16) */
} t2_mm;

/* out: [R × w->rows] (row stride ldo), x: [R × w->cols] (row stride ldx), bias: [w->rows] or NULL. */
void t2_matmul_forward(const t2_mm *mm, float *out, size_t ldo, const float *x, size_t ldx, const t2_weight *w,
                       const float *bias, int R);

/* out[r][i] += bias[i] for R rows of n outputs (row stride ldo). */
void t2_add_bias(float *out, size_t ldo, const float *bias, int R, int n);

/* Backward of out = x · Wᵀ: dx[R × w->cols] += dy[R × w->rows] · W (row strides ldx, ldy). */
void t2_matmul_backward_input(const t2_mm *mm, float *dx, size_t ldx, const float *dy, size_t ldy, const t2_weight *w, int R);
/* Backward of out = x · Wᵀ: dW[w->rows × w->cols] += dyᵀ · x. */
void t2_matmul_backward_weight(const t2_mm *mm, float *dw, const float *dy, size_t ldy, const float *x, size_t ldx,
                               const t2_weight *w, int R);

#endif
