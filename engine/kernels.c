/* Portable kernels, exact scalar conversions and run-time selection of the widest table.
 * The portable table is the reference every vectorised table is tested against. */
#include "kernels.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

float t2_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff, u;
    if (exp == 0x1f) {
        u = sign | 0x7f800000u | (man << 13);              /* inf / nan */
    } else if (exp == 0) {
        if (!man) {
            u = sign;                                       /* ±0 */
        } else {                                            /* subnormal: normalise */
            int e = -1;
            do { e++; man <<= 1; } while (!(man & 0x400));
            u = sign | (uint32_t)(127 - 15 - e) << 23 | (man & 0x3ff) << 13;
        }
    } else {
        u = sign | (exp + 127 - 15) << 23 | man << 13;
    }
    union { uint32_t u; float f; } v = {.u = u};
    return v.f;
}

void t2_split_bf16(const float *x, size_t n, uint16_t *hi, uint16_t *mid, uint16_t *lo) {
    for (size_t i = 0; i < n; i++) {
        uint16_t h = t2_f32_to_bf16(x[i]);
        float r = x[i] - t2_bf16_to_f32(h);
        uint16_t m = t2_f32_to_bf16(r);
        hi[i] = h;
        mid[i] = m;
        lo[i] = t2_f32_to_bf16(r - t2_bf16_to_f32(m));
    }
}

static inline float load_w(int dt, const void *w, size_t i) {
    switch (dt) {
    case T2_F32: return ((const float *)w)[i];
    case T2_BF16: return t2_bf16_to_f32(((const uint16_t *)w)[i]);
    default: return t2_f16_to_f32(((const uint16_t *)w)[i]);
    }
}

/* Straightforward sums with four partial accumulators. */
static inline void gemv_portable(int dt, const void *w, int n, int K, const float *x, size_t ldx, int R, float *out,
                                 size_t ldo) {
    for (int i = 0; i < n; i++) {
        size_t row = (size_t)i * (size_t)K;
        for (int r = 0; r < R; r++) {
            const float *xr = x + (size_t)r * ldx;
            float a0 = 0, a1 = 0, a2 = 0, a3 = 0;
            int k = 0;
            for (; k + 4 <= K; k += 4) {
                a0 += load_w(dt, w, row + k) * xr[k];
                a1 += load_w(dt, w, row + k + 1) * xr[k + 1];
                a2 += load_w(dt, w, row + k + 2) * xr[k + 2];
                a3 += load_w(dt, w, row + k + 3) * xr[k + 3];
            }
            for (; k < K; k++) a0 += load_w(dt, w, row + k) * xr[k];
            out[(size_t)r * ldo + i] = (a0 + a1) + (a2 + a3);
        }
    }
}

static void gemv_f32_p(const void *w, int n, int K, const float *x, size_t ldx, int R, float *out, size_t ldo,
                       const uint16_t *xbf) {
    (void)xbf;
    gemv_portable(T2_F32, w, n, K, x, ldx, R, out, ldo);
}
static void gemv_f16_p(const void *w, int n, int K, const float *x, size_t ldx, int R, float *out, size_t ldo,
                       const uint16_t *xbf) {
    (void)xbf;
    gemv_portable(T2_F16, w, n, K, x, ldx, R, out, ldo);
}
static void gemv_bf16_p(const void *w, int n, int K, const float *x, size_t ldx, int R, float *out, size_t ldo,
                        const uint16_t *xbf) {
    (void)xbf;
    gemv_portable(T2_BF16, w, n, K, x, ldx, R, out, ldo);
}

static void cvt_bf16_p(const uint16_t *in, float *out, size_t n) {
    for (size_t i = 0; i < n; i++) out[i] = t2_bf16_to_f32(in[i]);
}
static void cvt_f16_p(const uint16_t *in, float *out, size_t n) {
    for (size_t i = 0; i < n; i++) out[i] = t2_f16_to_f32(in[i]);
}
static float dot_p(const float *a, const float *b, int n) {
    float s0 = 0, s1 = 0;
    int i = 0;
    for (; i + 2 <= n; i += 2) {
        s0 += a[i] * b[i];
        s1 += a[i + 1] * b[i + 1];
    }
    if (i < n) s0 += a[i] * b[i];
    return s0 + s1;
}
static void axpy_p(float a, const float *x, float *y, int n) {
    for (int i = 0; i < n; i++) y[i] += a * x[i];
}

static const t2_kernels s_portable = {
    .name = "portable",
    .gemv = {[T2_F32] = gemv_f32_p, [T2_F16] = gemv_f16_p, [T2_BF16] = gemv_bf16_p},
    .bf16_split_x = 0,
    .cvt_bf16 = cvt_bf16_p,
    .cvt_f16 = cvt_f16_p,
    .dot = dot_p,
    .axpy = axpy_p,
};

const t2_kernels *t2_kernels_portable(void) { return &s_portable; }

static int cpu_has(const char *name) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    if (!strcmp(name, "avx2")) return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    if (!strcmp(name, "avx512"))
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl");
    if (!strcmp(name, "avx512bf16")) return cpu_has("avx512") && __builtin_cpu_supports("avx512bf16");
#else
    (void)name;
#endif
    return 0;
}

const t2_kernels *t2_kernels_by_name(const char *name) {
    if (!name) return NULL;
    if (!strcmp(name, "portable")) return &s_portable;
    if (!cpu_has(name)) return NULL;
    if (!strcmp(name, "avx2")) return t2_kernels_avx2();
    if (!strcmp(name, "avx512")) return t2_kernels_avx512();
    if (!strcmp(name, "avx512bf16")) return t2_kernels_avx512bf16();
    return NULL;
}

const t2_kernels *t2_kernels_best(void) {
    const t2_kernels *k = t2_kernels_by_name(getenv("T2_KERNELS"));
    if (k) return k;
    static const char *order[] = {"avx512", "avx512bf16", "avx2"};
    for (size_t i = 0; i < sizeof order / sizeof *order; i++)
        if ((k = t2_kernels_by_name(order[i]))) return k;
    return &s_portable;
}
