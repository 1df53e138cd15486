/* AVX-512 kernels (F, BW, VL), and the AVX512-BF16 variant of the BF16 product.
 *
 * avx512: weights widened exactly to f32 in registers (BF16: zero-extend and shift; F16: vcvtph2ps),
 * f32 FMAs; tails by masked loads.
 *
 * avx512bf16: vdpbf16ps multiplies BF16 pairs exactly and accumulates in f32, but needs both
 * operands in BF16. Rounding x to BF16 would lose 16 bits of every activation, so x is split into
 * three BF16 parts (hi + mid + lo == x to f32 precision, t2_split_bf16) and each weight pair is
 * dotted with all three: the f32 product up to accumulation order, three instructions per 32
 * weights. Both are tested against the portable table. */
#if defined(__x86_64__)
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512bf16,fma,f16c")
#include "kernels.h"

#include <immintrin.h>

#define WB 4 /* weight rows per block */

static inline __attribute__((always_inline)) __m512 ld(int dt, const void *w, size_t i, __mmask16 m) {
    if (dt == T2_F32) return _mm512_maskz_loadu_ps(m, (const float *)w + i);
    __m256i h = _mm256_maskz_loadu_epi16(m, (const uint16_t *)w + i);
    if (dt == T2_F16) return _mm512_cvtph_ps(h);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

/* Reduce every accumulator with constant loop bounds first, so that they stay in registers through
 * the main loop (indexing them with the variable nw made GCC keep a stack copy, stored on every
 * iteration, which halved the kernel's bandwidth), then store the nw valid columns. */
static inline __attribute__((always_inline)) void store(__m512 acc[][WB], int RB, int nw, float *out, size_t ldo) {
    float res[4][WB];
    for (int r = 0; r < RB; r++)
        for (int j = 0; j < WB; j++) res[r][j] = _mm512_reduce_add_ps(acc[r][j]);
    for (int r = 0; r < RB; r++)
        for (int j = 0; j < nw; j++) out[(size_t)r * ldo + j] = res[r][j];
}

static inline __attribute__((always_inline)) __m512 ldu(int dt, const void *w, size_t i) {
    if (dt == T2_F32) return _mm512_loadu_ps((const float *)w + i);
    __m256i h = _mm256_loadu_si256((const __m256i *)((const uint16_t *)w + i));
    if (dt == T2_F16) return _mm512_cvtph_ps(h);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

static inline __attribute__((always_inline)) void block(int dt, const void *w, int i0, int nw, int K, const float *x,
                                                        size_t ldx, int r0, int RB, float *out, size_t ldo) {
    size_t es = dt == T2_F32 ? 4 : 2;
    const char *wr[WB];
    for (int j = 0; j < WB; j++) wr[j] = (const char *)w + (size_t)(i0 + (j < nw ? j : nw - 1)) * (size_t)K * es;
    __m512 acc[4][WB];
    for (int r = 0; r < RB; r++)
        for (int j = 0; j < WB; j++) acc[r][j] = _mm512_setzero_ps();
    int k = 0;
    for (; k + 16 <= K; k += 16) {
        __m512 wv[WB];
        for (int j = 0; j < WB; j++) wv[j] = ldu(dt, wr[j], (size_t)k);
        for (int r = 0; r < RB; r++) {
            __m512 xv = _mm512_loadu_ps(x + (size_t)(r0 + r) * ldx + k);
            for (int j = 0; j < WB; j++) acc[r][j] = _mm512_fmadd_ps(wv[j], xv, acc[r][j]);
        }
    }
    if (k < K) { /* masked tail */
        __mmask16 m = (__mmask16)((1u << (K - k)) - 1);
        __m512 wv[WB];
        for (int j = 0; j < WB; j++) wv[j] = ld(dt, wr[j], (size_t)k, m);
        for (int r = 0; r < RB; r++) {
            __m512 xv = _mm512_maskz_loadu_ps(m, x + (size_t)(r0 + r) * ldx + k);
            for (int j = 0; j < WB; j++) acc[r][j] = _mm512_fmadd_ps(wv[j], xv, acc[r][j]);
        }
    }
    store(acc, RB, nw, out + (size_t)r0 * ldo + i0, ldo);
}

static inline __attribute__((always_inline)) void gemv(int dt, const void *w, int n, int K, const float *x, size_t ldx,
                                                       int R, float *out, size_t ldo) {
    for (int i0 = 0; i0 < n; i0 += WB) {
        int nw = n - i0 < WB ? n - i0 : WB;
        int r0 = 0;
        for (; r0 + 4 <= R; r0 += 4) block(dt, w, i0, nw, K, x, ldx, r0, 4, out, ldo);
        for (; r0 + 2 <= R; r0 += 2) block(dt, w, i0, nw, K, x, ldx, r0, 2, out, ldo);
        if (r0 < R) block(dt, w, i0, nw, K, x, ldx, r0, 1, out, ldo);
    }
}

static void gemv_f32(const void *w, int n, int K, const float *x, size_t ldx, int R, float *out, size_t ldo,
                     const uint16_t *xbf) {
    (void)xbf;
    gemv(T2_F32, w, n, K, x, ldx, R, out, ldo);
}
static void gemv_f16(const void *w, int n, int K, const float *x, size_t ldx, int R, float *out, size_t ldo,
                     const uint16_t *xbf) {
    (void)xbf;
    gemv(T2_F16, w, n, K, x, ldx, R, out, ldo);
}
static void gemv_bf16(const void *w, int n, int K, const float *x, size_t ldx, int R, float *out, size_t ldo,
                      const uint16_t *xbf) {
    (void)xbf;
    gemv(T2_BF16, w, n, K, x, ldx, R, out, ldo);
}

/* ---- vdpbf16ps with x split in three (xbf: hi [R×K], mid [R×K], lo [R×K]) ---- */

static inline __attribute__((always_inline)) __m512bh ldbh(const uint16_t *p, __mmask32 m) {
    return (__m512bh)_mm512_maskz_loadu_epi16(m, p);
}

static inline __attribute__((always_inline)) void block_dp(const uint16_t *w, int i0, int nw, int K, const uint16_t *xbf,
                                                           int R, int r0, int RB, float *out, size_t ldo) {
    const uint16_t *wr[WB];
    for (int j = 0; j < WB; j++) wr[j] = w + (size_t)(i0 + (j < nw ? j : nw - 1)) * (size_t)K;
    size_t plane = (size_t)R * (size_t)K;
    __m512 acc[2][WB];
    for (int r = 0; r < RB; r++)
        for (int j = 0; j < WB; j++) acc[r][j] = _mm512_setzero_ps();
    for (int k = 0; k < K; k += 32) {
        __mmask32 m = K - k >= 32 ? (__mmask32)0xffffffffu : (__mmask32)((1u << (K - k)) - 1);
        __m512bh wv[WB];
        for (int j = 0; j < WB; j++) wv[j] = ldbh(wr[j] + k, m);
        for (int r = 0; r < RB; r++) {
            const uint16_t *xr = xbf + (size_t)(r0 + r) * (size_t)K + k;
            __m512bh xh = ldbh(xr, m), xm = ldbh(xr + plane, m), xl = ldbh(xr + 2 * plane, m);
            for (int j = 0; j < WB; j++) {
                acc[r][j] = _mm512_dpbf16_ps(acc[r][j], wv[j], xl);
                acc[r][j] = _mm512_dpbf16_ps(acc[r][j], wv[j], xm);
                acc[r][j] = _mm512_dpbf16_ps(acc[r][j], wv[j], xh);
            }
        }
    }
    store(acc, RB, nw, out + (size_t)r0 * ldo + i0, ldo);
}

static void gemv_bf16_dp(const void *w, int n, int K, const float *x, size_t ldx, int R, float *out, size_t ldo,
                         const uint16_t *xbf) {
    (void)x;
    (void)ldx;
    for (int i0 = 0; i0 < n; i0 += WB) {
        int nw = n - i0 < WB ? n - i0 : WB;
        int r0 = 0;
        for (; r0 + 2 <= R; r0 += 2) block_dp(w, i0, nw, K, xbf, R, r0, 2, out, ldo);
        if (r0 < R) block_dp(w, i0, nw, K, xbf, R, r0, 1, out, ldo);
    }
}

/* ---- BF16 activations (opt-in, T2_PREFILL_BF16): x rounded to BF16 (xbf: hi [R×K] only), one
 * vdpbf16ps per weight pair — the numerics of a framework running in bfloat16, a third of the work
 * of the three-part split. ---- */

static inline __attribute__((always_inline)) void block_dp1(const uint16_t *w, int i0, int nw, int K, const uint16_t *xh,
                                                            int r0, int RB, float *out, size_t ldo) {
    const uint16_t *wr[WB];
    for (int j = 0; j < WB; j++) wr[j] = w + (size_t)(i0 + (j < nw ? j : nw - 1)) * (size_t)K;
    __m512 acc[4][WB];
    for (int r = 0; r < RB; r++)
        for (int j = 0; j < WB; j++) acc[r][j] = _mm512_setzero_ps();
    int k = 0;
    for (; k + 32 <= K; k += 32) {
        __m512bh wv[WB];
        for (int j = 0; j < WB; j++) wv[j] = (__m512bh)_mm512_loadu_si512(wr[j] + k);
        for (int r = 0; r < RB; r++) {
            __m512bh xv = (__m512bh)_mm512_loadu_si512(xh + (size_t)(r0 + r) * (size_t)K + k);
            for (int j = 0; j < WB; j++) acc[r][j] = _mm512_dpbf16_ps(acc[r][j], wv[j], xv);
        }
    }
    if (k < K) {
        __mmask32 m = (__mmask32)((1u << (K - k)) - 1);
        __m512bh wv[WB];
        for (int j = 0; j < WB; j++) wv[j] = ldbh(wr[j] + k, m);
        for (int r = 0; r < RB; r++) {
            __m512bh xv = ldbh(xh + (size_t)(r0 + r) * (size_t)K + k, m);
            for (int j = 0; j < WB; j++) acc[r][j] = _mm512_dpbf16_ps(acc[r][j], wv[j], xv);
        }
    }
    store(acc, RB, nw, out + (size_t)r0 * ldo + i0, ldo);
}

void t2_round_bf16_avx512bf16(const float *x, size_t n, uint16_t *out) {
    size_t i = 0;
    for (; i + 16 <= n; i += 16) _mm256_storeu_si256((__m256i *)(out + i), (__m256i)_mm512_cvtneps_pbh(_mm512_loadu_ps(x + i)));
    for (; i < n; i++) out[i] = t2_f32_to_bf16(x[i]);
}

void t2_gemv_bf16_x1_avx512bf16(const void *w, int n, int K, const float *x, size_t ldx, int R, float *out, size_t ldo,
                                const uint16_t *xbf) {
    (void)x;
    (void)ldx;
    for (int i0 = 0; i0 < n; i0 += WB) {
        int nw = n - i0 < WB ? n - i0 : WB;
        int r0 = 0;
        for (; r0 + 4 <= R; r0 += 4) block_dp1(w, i0, nw, K, xbf, r0, 4, out, ldo);
        for (; r0 + 2 <= R; r0 += 2) block_dp1(w, i0, nw, K, xbf, r0, 2, out, ldo);
        if (r0 < R) block_dp1(w, i0, nw, K, xbf, r0, 1, out, ldo);
    }
}

static void cvt_bf16(const uint16_t *in, float *out, size_t n) {
    for (size_t i = 0; i < n; i += 16) {
        __mmask16 m = n - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - i)) - 1);
        _mm512_mask_storeu_ps(out + i, m, ld(T2_BF16, in, i, m));
    }
}
static void cvt_f16(const uint16_t *in, float *out, size_t n) {
    for (size_t i = 0; i < n; i += 16) {
        __mmask16 m = n - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - i)) - 1);
        _mm512_mask_storeu_ps(out + i, m, ld(T2_F16, in, i, m));
    }
}
static float dot(const float *a, const float *b, int n) {
    __m512 s = _mm512_setzero_ps();
    for (int i = 0; i < n; i += 16) {
        __mmask16 m = n - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - i)) - 1);
        s = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + i), _mm512_maskz_loadu_ps(m, b + i), s);
    }
    return _mm512_reduce_add_ps(s);
}
static void axpy(float a, const float *x, float *y, int n) {
    __m512 av = _mm512_set1_ps(a);
    for (int i = 0; i < n; i += 16) {
        __mmask16 m = n - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - i)) - 1);
        _mm512_mask_storeu_ps(y + i, m, _mm512_fmadd_ps(av, _mm512_maskz_loadu_ps(m, x + i), _mm512_maskz_loadu_ps(m, y + i)));
    }
}

static const t2_kernels s_avx512 = {
    .name = "avx512",
    .gemv = {[T2_F32] = gemv_f32, [T2_F16] = gemv_f16, [T2_BF16] = gemv_bf16},
    .bf16_split_x = 0,
    .own_gemm = 1,
    .cvt_bf16 = cvt_bf16,
    .cvt_f16 = cvt_f16,
    .dot = dot,
    .axpy = axpy,
};
static const t2_kernels s_avx512bf16 = {
    .name = "avx512bf16",
    .gemv = {[T2_F32] = gemv_f32, [T2_F16] = gemv_f16, [T2_BF16] = gemv_bf16_dp},
    .bf16_split_x = 1,
    .own_gemm = 1,
    .cvt_bf16 = cvt_bf16,
    .cvt_f16 = cvt_f16,
    .dot = dot,
    .axpy = axpy,
};
const t2_kernels *t2_kernels_avx512(void) { return &s_avx512; }
const t2_kernels *t2_kernels_avx512bf16(void) { return &s_avx512bf16; }
#else
#include "kernels.h"
void t2_round_bf16_avx512bf16(const float *x, size_t n, uint16_t *out) {
    for (size_t i = 0; i < n; i++) out[i] = t2_f32_to_bf16(x[i]);
}
void t2_gemv_bf16_x1_avx512bf16(const void *w, int n, int K, const float *x, size_t ldx, int R, float *out, size_t ldo,
                                const uint16_t *xbf) {
    (void)w, (void)n, (void)K, (void)x, (void)ldx, (void)R, (void)out, (void)ldo, (void)xbf;
}
const t2_kernels *t2_kernels_avx512(void) { return NULL; }
const t2_kernels *t2_kernels_avx512bf16(void) { return NULL; }
#endif
