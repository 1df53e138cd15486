/* AVX2 + FMA + F16C kernels. BF16 and F16 weights are widened exactly to f32 in registers, so the
 * sums are the f32 sums of the portable table in another order. Compiled for these instructions by
 * pragma and only called after the CPU was checked (kernels.c). */
#if defined(__x86_64__)
#pragma GCC target("avx2,fma,f16c")
#include "kernels.h"

#include <immintrin.h>

#define WB 4 /* weight rows per block */

static inline __attribute__((always_inline)) __m256 ld(int dt, const void *w, size_t i) {
    if (dt == T2_F32) return _mm256_loadu_ps((const float *)w + i);
    __m128i h = _mm_loadu_si128((const __m128i *)((const uint16_t *)w + i));
    if (dt == T2_F16) return _mm256_cvtph_ps(h);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

static inline float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static inline float ld1(int dt, const void *w, size_t i) {
    if (dt == T2_F32) return ((const float *)w)[i];
    if (dt == T2_F16) return t2_f16_to_f32(((const uint16_t *)w)[i]);
    return t2_bf16_to_f32(((const uint16_t *)w)[i]);
}

/* RB x rows against WB weight rows: RB·WB accumulators (at most 8 + 4 + 1 registers). */
static inline __attribute__((always_inline)) void block(int dt, const void *w, int i0, int nw, int K, const float *x,
                                                        size_t ldx, int r0, int RB, float *out, size_t ldo) {
    size_t es = dt == T2_F32 ? 4 : 2;
    const char *wr[WB];
    for (int j = 0; j < WB; j++) wr[j] = (const char *)w + (size_t)(i0 + (j < nw ? j : nw - 1)) * (size_t)K * es;
    __m256 acc[2][WB];
    for (int r = 0; r < RB; r++)
        for (int j = 0; j < WB; j++) acc[r][j] = _mm256_setzero_ps();
    int k = 0;
    for (; k + 8 <= K; k += 8) {
        __m256 wv[WB];
        for (int j = 0; j < WB; j++) wv[j] = ld(dt, wr[j], (size_t)k);
        for (int r = 0; r < RB; r++) {
            __m256 xv = _mm256_loadu_ps(x + (size_t)(r0 + r) * ldx + k);
            for (int j = 0; j < WB; j++) acc[r][j] = _mm256_fmadd_ps(wv[j], xv, acc[r][j]);
        }
    }
    /* reduce with constant bounds first so the accumulators stay in registers (see kernels_avx512.c) */
    float res[2][WB];
    for (int r = 0; r < RB; r++)
        for (int j = 0; j < WB; j++) res[r][j] = hsum(acc[r][j]);
    for (int r = 0; r < RB; r++) {
        const float *xr = x + (size_t)(r0 + r) * ldx;
        for (int j = 0; j < nw; j++) {
            float s = res[r][j];
            for (int kk = k; kk < K; kk++) s += ld1(dt, wr[j], (size_t)kk) * xr[kk];
            out[(size_t)(r0 + r) * ldo + i0 + j] = s;
        }
    }
}

static inline __attribute__((always_inline)) void gemv(int dt, const void *w, int n, int K, const float *x, size_t ldx,
                                                       int R, float *out, size_t ldo) {
    for (int i0 = 0; i0 < n; i0 += WB) {
        int nw = n - i0 < WB ? n - i0 : WB;
        int r0 = 0;
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

static void cvt_bf16(const uint16_t *in, float *out, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(out + i, ld(T2_BF16, in, i));
    for (; i < n; i++) out[i] = t2_bf16_to_f32(in[i]);
}
static void cvt_f16(const uint16_t *in, float *out, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(out + i, ld(T2_F16, in, i));
    for (; i < n; i++) out[i] = t2_f16_to_f32(in[i]);
}
static float dot(const float *a, const float *b, int n) {
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    int i = 0;
    for (; i + 16 <= n; i += 16) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
    }
    for (; i + 8 <= n; i += 8) s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
    float s = hsum(_mm256_add_ps(s0, s1));
    for (; i < n; i++) s += a[i] * b[i];
    return s;
}
static void axpy(float a, const float *x, float *y, int n) {
    __m256 av = _mm256_set1_ps(a);
    int i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_fmadd_ps(av, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
    for (; i < n; i++) y[i] += a * x[i];
}

static const t2_kernels s_avx2 = {
    .name = "avx2",
    .gemv = {[T2_F32] = gemv_f32, [T2_F16] = gemv_f16, [T2_BF16] = gemv_bf16},
    .bf16_split_x = 0,
    .cvt_bf16 = cvt_bf16,
    .cvt_f16 = cvt_f16,
    .dot = dot,
    .axpy = axpy,
};
const t2_kernels *t2_kernels_avx2(void) { return &s_avx2; }
#else
#include "kernels.h"
const t2_kernels *t2_kernels_avx2(void) { return NULL; }
#endif
