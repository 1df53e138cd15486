/* Kernel tables: every table this CPU runs against the portable one (and both against a double
 * reference), exact conversions over all 65536 bit patterns, and the BF16 split of x. */
#include "kernels.h"

#include "util.h"

#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *s_names[] = {"avx2", "avx512", "avx512bf16"};
#define N_NAMES ((int)(sizeof s_names / sizeof *s_names))

static uint32_t f2u(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

/* Independent F16 → f32: value = (-1)^s · 2^(e-15) · (1 + m/1024), subnormals 2^-14 · m/1024. */
static float f16_ref(uint16_t h) {
    int s = h >> 15, e = (h >> 10) & 0x1f, m = h & 0x3ff;
    double v;
    if (e == 0x1f) v = m ? NAN : INFINITY;
    else if (e == 0) v = ldexp((double)m, -24);
    else v = ldexp(1024.0 + m, e - 25);
    return (float)(s ? -v : v);
}

/* A random finite F16 of moderate magnitude: exponent 2^-6 .. 2^1, or a subnormal now and then. */
static uint16_t rand_f16(tu_rng *r) {
    uint64_t b = tu_next(r);
    uint16_t sign = (uint16_t)((b & 1) << 15), man = (uint16_t)((b >> 1) & 0x3ff);
    uint16_t e = (b >> 12) % 32 == 0 ? 0 : (uint16_t)(9 + (b >> 20) % 8);
    return (uint16_t)(sign | e << 10 | man);
}

/* ---- scalar conversions ---- */

START_TEST(test_f16_spot) {
    ck_assert_float_eq(t2_f16_to_f32(0x3c00), 1.0f);
    ck_assert_float_eq(t2_f16_to_f32(0xc000), -2.0f);
    ck_assert_float_eq(t2_f16_to_f32(0x7bff), 65504.0f);
    ck_assert_float_eq(t2_f16_to_f32(0x0001), ldexpf(1.0f, -24));
    ck_assert_float_eq(t2_f16_to_f32(0x03ff), ldexpf(1023.0f, -24));   /* largest subnormal */
    ck_assert_float_eq(t2_f16_to_f32(0x0400), ldexpf(1.0f, -14));      /* smallest normal */
    ck_assert_float_eq(t2_f16_to_f32(0x3555), 0x1.554p-2f);
    ck_assert(isinf(t2_f16_to_f32(0x7c00)) && t2_f16_to_f32(0x7c00) > 0);
    ck_assert(isinf(t2_f16_to_f32(0xfc00)) && t2_f16_to_f32(0xfc00) < 0);
    ck_assert(isnan(t2_f16_to_f32(0x7e00)));
    ck_assert(isnan(t2_f16_to_f32(0x7c01)));
    ck_assert_uint_eq(f2u(t2_f16_to_f32(0x8000)), 0x80000000u);   /* -0 */
    ck_assert_uint_eq(f2u(t2_f16_to_f32(0x0000)), 0u);
}
END_TEST

START_TEST(test_f16_all_patterns) {
    for (uint32_t h = 0; h < 65536; h++) {
        float got = t2_f16_to_f32((uint16_t)h), want = f16_ref((uint16_t)h);
        if (isnan(want) ? !isnan(got) : f2u(got) != f2u(want)) ck_abort_msg("f16 %#06x: %a, want %a", h, got, want);
    }
}
END_TEST

START_TEST(test_bf16_scalar) {
    ck_assert_float_eq(t2_bf16_to_f32(0x3f80), 1.0f);
    ck_assert_float_eq(t2_bf16_to_f32(0xc040), -3.0f);
    ck_assert_uint_eq(t2_f32_to_bf16(1.0f), 0x3f80);
    /* round to nearest even */
    ck_assert_uint_eq(t2_f32_to_bf16(0x1.01p0f), 0x3f80);     /* halfway, even below */
    ck_assert_uint_eq(t2_f32_to_bf16(0x1.03p0f), 0x3f82);     /* halfway, odd below: up */
    ck_assert_uint_eq(t2_f32_to_bf16(0x1.0101p0f), 0x3f81);   /* above halfway */
    ck_assert(isnan(t2_bf16_to_f32(t2_f32_to_bf16(NAN))));
    ck_assert(isinf(t2_bf16_to_f32(t2_f32_to_bf16(INFINITY))));
    /* every bf16 value survives the round trip */
    for (uint32_t h = 0; h < 65536; h++) {
        float f = t2_bf16_to_f32((uint16_t)h);
        if (!isnan(f) && t2_f32_to_bf16(f) != h) ck_abort_msg("bf16 %#06x does not round-trip", h);
    }
}
END_TEST

START_TEST(test_split_bf16) {
    tu_rng r = {4242};
    enum { N = 100000 };
    float *x = malloc(N * sizeof *x);
    uint16_t *hi = malloc(3 * N * sizeof *hi), *mid = hi + N, *lo = hi + 2 * N;
    for (int i = 0; i < N; i++) {
        float u = tu_uniform(&r);
        int e = (int)(tu_next(&r) % 60) - 30;
        x[i] = ldexpf(u, e);
    }
    x[0] = 0.0f;
    x[1] = 1.0f;
    x[2] = -0x1.fffffep0f;     /* all mantissa bits set */
    x[3] = 0x1.000002p0f;      /* only the last bit */
    x[4] = 3.14159265f;
    t2_split_bf16(x, N, hi, mid, lo);
    for (int i = 0; i < N; i++) {
        double s = (double)t2_bf16_to_f32(hi[i]) + t2_bf16_to_f32(mid[i]) + t2_bf16_to_f32(lo[i]);
        if (!(fabs(s - x[i]) <= ldexp(fabs((double)x[i]), -24))) ck_abort_msg("x %a: hi+mid+lo = %a", x[i], s);
        if (hi[i] != t2_f32_to_bf16(x[i])) ck_abort_msg("x %a: hi is not bf16(x)", x[i]);
    }
    free(x);
    free(hi);
}
END_TEST

/* ---- per-table tests ---- */

static const t2_kernels *table(int i) { return t2_kernels_by_name(s_names[i]); }

START_TEST(test_tables_exist) {
    const t2_kernels *p = t2_kernels_portable();
    ck_assert_ptr_nonnull(p);
    ck_assert_str_eq(p->name, "portable");
    ck_assert_ptr_eq(t2_kernels_by_name("portable"), p);
    ck_assert_ptr_null(t2_kernels_by_name("sse9"));
    ck_assert_ptr_null(t2_kernels_by_name(NULL));
    const t2_kernels *best = t2_kernels_best();
    ck_assert_ptr_nonnull(best);
    for (int i = 0; i < N_NAMES; i++) {
        const t2_kernels *k = table(i);
        if (!k) continue;
        ck_assert_str_eq(k->name, s_names[i]);
        for (int d = 0; d < 3; d++) ck_assert_ptr_nonnull(k->gemv[d]);
        ck_assert_ptr_nonnull(k->cvt_bf16);
        ck_assert_ptr_nonnull(k->cvt_f16);
        ck_assert_ptr_nonnull(k->dot);
        ck_assert_ptr_nonnull(k->axpy);
    }
}
END_TEST

static float wval(t2_dtype dt, const void *w, size_t i) {
    if (dt == T2_F32) return ((const float *)w)[i];
    if (dt == T2_BF16) return t2_bf16_to_f32(((const uint16_t *)w)[i]);
    return t2_f16_to_f32(((const uint16_t *)w)[i]);
}

static int s_tested;

/* One gemv case: n rows of W [n × K] in dtype dt, R rows of x with stride ldx = K + 3, out stride ldo = n + 5. */
static void gemv_case(const t2_kernels *k, t2_dtype dt, int n, int K, int R, tu_rng *r) {
    const t2_kernels *P = t2_kernels_portable();
    size_t es = t2_dtype_size(dt), ldx = (size_t)K + 3, ldo = (size_t)n + 5;
    void *w = malloc((size_t)n * K * es);
    float *x = malloc(R * ldx * sizeof(float));
    float *o1 = malloc(R * ldo * sizeof(float)), *o2 = malloc(R * ldo * sizeof(float));
    uint16_t *xbf = malloc(3 * (size_t)R * K * sizeof(uint16_t));
    for (size_t i = 0; i < (size_t)n * K; i++) {
        if (dt == T2_F32) ((float *)w)[i] = tu_uniform(r);
        else if (dt == T2_BF16) ((uint16_t *)w)[i] = t2_f32_to_bf16(tu_uniform(r));
        else ((uint16_t *)w)[i] = rand_f16(r);
    }
    for (size_t i = 0; i < R * ldx; i++) x[i] = tu_uniform(r) * 3.0f;
    for (size_t i = 0; i < R * ldo; i++) o1[i] = o2[i] = -12345.0f;   /* sentinels in the gaps */
    const uint16_t *xb = NULL;
    if (dt == T2_BF16 && k->bf16_split_x) {
        size_t plane = (size_t)R * K;
        for (int rr = 0; rr < R; rr++)
            t2_split_bf16(x + rr * ldx, (size_t)K, xbf + (size_t)rr * K, xbf + plane + (size_t)rr * K,
                          xbf + 2 * plane + (size_t)rr * K);
        xb = xbf;
    }
    P->gemv[dt](w, n, K, x, ldx, R, o1, ldo, NULL);
    k->gemv[dt](w, n, K, x, ldx, R, o2, ldo, xb);
    /* (plain checks in the loops: a passing Check assertion still costs a write to its pipe) */
    for (int rr = 0; rr < R; rr++) {
        for (int i = 0; i < n; i++) {
            double ref = 0, mag = 0;
            for (int kk = 0; kk < K; kk++) {
                double p = (double)wval(dt, w, (size_t)i * K + kk) * x[rr * ldx + kk];
                ref += p;
                mag += fabs(p);
            }
            double tol = 1e-5 * mag + 1e-30;
            float a = o1[rr * ldo + i], b = o2[rr * ldo + i];
            if (!(fabs(a - b) <= tol))
                ck_abort_msg("%s gemv %s n=%d K=%d R=%d row %d out %d: %.9g vs portable %.9g (tol %.3g)", k->name,
                             t2_dtype_name(dt), n, K, R, rr, i, b, a, tol);
            if (!(fabs(b - ref) <= tol))
                ck_abort_msg("%s gemv %s n=%d K=%d R=%d row %d out %d: %.9g vs exact %.9g", k->name, t2_dtype_name(dt), n,
                             K, R, rr, i, b, ref);
            if (!(fabs(a - ref) <= tol))
                ck_abort_msg("portable gemv %s n=%d K=%d R=%d: %.9g vs exact %.9g", t2_dtype_name(dt), n, K, R, a, ref);
        }
        for (size_t i = (size_t)n; i < ldo; i++)
            if (o2[rr * ldo + i] != -12345.0f)
                ck_abort_msg("%s gemv %s n=%d K=%d R=%d wrote past n (column %zu)", k->name, t2_dtype_name(dt), n, K, R, i);
    }
    s_tested++;
    free(w);
    free(x);
    free(o1);
    free(o2);
    free(xbf);
}

static void gemv_all(t2_dtype dt) {
    static const int ns[] = {1, 3, 4, 5, 17, 64};
    static const int Ks[] = {1, 7, 15, 16, 17, 31, 32, 33, 100, 2048};
    /* 15: below T2_GEMM_MIN_ROWS; 37: tables with own_gemm take every row count of a prompt */
    static const int Rs[] = {1, 2, 3, 4, 5, 8, 15, 37};
    tu_rng r = {(uint64_t)dt * 1000 + 17};
    int tables = 0;
    s_tested = 0;
    for (int t = -1; t < N_NAMES; t++) {
        const t2_kernels *k = t < 0 ? t2_kernels_portable() : table(t);
        if (!k) continue;
        tables++;
        for (size_t a = 0; a < sizeof ns / sizeof *ns; a++)
            for (size_t b = 0; b < sizeof Ks / sizeof *Ks; b++)
                for (size_t c = 0; c < sizeof Rs / sizeof *Rs; c++) gemv_case(k, dt, ns[a], Ks[b], Rs[c], &r);
    }
    ck_assert_int_gt(s_tested, tables * 300);
}

START_TEST(test_gemv_f32) { gemv_all(T2_F32); }
END_TEST
START_TEST(test_gemv_bf16) { gemv_all(T2_BF16); }
END_TEST
START_TEST(test_gemv_f16) { gemv_all(T2_F16); }
END_TEST

/* The opt-in BF16-activation kernel (t2_model_params.prefill_bf16) against the portable table fed the
 * same BF16-rounded activations: products of two BF16 values are exact in f32, so only the summation
 * order differs. */
START_TEST(test_gemv_bf16_x1) {
    if (!t2_kernels_by_name("avx512bf16")) {
        printf("test_gemv_bf16_x1: no AVX512-BF16 on this CPU, skipped\n");
        return;
    }
    static const int ns[] = {1, 5, 17, 64}, Ks[] = {1, 31, 32, 33, 100, 2048}, Rs[] = {1, 2, 3, 4, 5, 16, 37};
    tu_rng r = {99};
    for (size_t a = 0; a < sizeof ns / sizeof *ns; a++)
        for (size_t b = 0; b < sizeof Ks / sizeof *Ks; b++)
            for (size_t c = 0; c < sizeof Rs / sizeof *Rs; c++) {
                int n = ns[a], K = Ks[b], R = Rs[c];
                uint16_t *w = malloc((size_t)n * K * sizeof *w), *xh = malloc((size_t)R * K * sizeof *xh);
                float *x = malloc((size_t)R * K * sizeof *x), *xr = malloc((size_t)R * K * sizeof *xr);
                float *o1 = malloc((size_t)R * n * sizeof *o1), *o2 = malloc((size_t)R * n * sizeof *o2);
                for (int i = 0; i < n * K; i++) w[i] = t2_f32_to_bf16(tu_uniform(&r));
                for (int i = 0; i < R * K; i++) {
                    x[i] = tu_uniform(&r);
                    xh[i] = t2_f32_to_bf16(x[i]);
                    xr[i] = t2_bf16_to_f32(xh[i]);
                }
                t2_gemv_bf16_x1_avx512bf16(w, n, K, x, (size_t)K, R, o1, (size_t)n, xh);
                t2_kernels_portable()->gemv[T2_BF16](w, n, K, xr, (size_t)K, R, o2, (size_t)n, NULL);
                for (int rr = 0; rr < R; rr++)
                    for (int i = 0; i < n; i++) {
                        double mag = 0;
                        for (int k = 0; k < K; k++) mag += fabs((double)t2_bf16_to_f32(w[(size_t)i * K + k]) * xr[(size_t)rr * K + k]);
                        double d = fabs((double)o1[(size_t)rr * n + i] - o2[(size_t)rr * n + i]);
                        ck_assert_msg(d <= 1e-5 * mag + 1e-30, "bf16_x1 n=%d K=%d R=%d row %d col %d: %g vs %g", n, K, R, rr, i,
                                      o1[(size_t)rr * n + i], o2[(size_t)rr * n + i]);
                    }
                free(w), free(xh), free(x), free(xr), free(o1), free(o2);
            }
}
END_TEST

START_TEST(test_cvt_all_patterns) {
    uint16_t *in = malloc(65536 * sizeof *in);
    float *o1 = malloc((65536 + 1) * sizeof *o1), *o2 = malloc((65536 + 1) * sizeof *o2);
    for (uint32_t h = 0; h < 65536; h++) in[h] = (uint16_t)h;
    for (int t = -1; t < N_NAMES; t++) {
        const t2_kernels *k = t < 0 ? t2_kernels_portable() : table(t);
        if (!k) continue;
        for (int which = 0; which < 2; which++) {
            /* the whole range, and odd lengths/offsets to exercise the tails */
            static const size_t lens[] = {65536, 1, 7, 15, 17, 33};
            for (size_t li = 0; li < sizeof lens / sizeof *lens; li++) {
                size_t n = lens[li], start = li ? 1000 * li + 3 : 0;
                o2[n] = 777.0f;
                if (which) k->cvt_f16(in + start, o2, n);
                else k->cvt_bf16(in + start, o2, n);
                ck_assert_msg(o2[n] == 777.0f, "%s cvt_%s wrote past n=%zu", k->name, which ? "f16" : "bf16", n);
                for (size_t i = 0; i < n; i++) {
                    uint16_t h = in[start + i];
                    float want = which ? t2_f16_to_f32(h) : t2_bf16_to_f32(h);
                    if (isnan(want) ? !isnan(o2[i]) : f2u(o2[i]) != f2u(want))
                        ck_abort_msg("%s cvt_%s %#06x: %a want %a", k->name, which ? "f16" : "bf16", h, o2[i], want);
                }
            }
        }
    }
    free(in);
    free(o1);
    free(o2);
}
END_TEST

START_TEST(test_dot_axpy) {
    tu_rng r = {31337};
    float a[80], b[80], y0[81], y1[81];
    for (int t = -1; t < N_NAMES; t++) {
        const t2_kernels *k = t < 0 ? t2_kernels_portable() : table(t);
        if (!k) continue;
        for (int n = 1; n <= 70; n++) {
            double ref = 0, mag = 0;
            for (int i = 0; i < n; i++) {
                a[i] = tu_uniform(&r);
                b[i] = tu_uniform(&r) * 4;
                ref += (double)a[i] * b[i];
                mag += fabs((double)a[i] * b[i]);
            }
            a[n] = NAN;   /* past the end: must not be read into the sum */
            b[n] = NAN;
            float d = k->dot(a, b, n);
            ck_assert_msg(fabs(d - ref) <= 1e-5 * mag + 1e-30, "%s dot n=%d: %.9g vs %.9g", k->name, n, d, ref);

            float alpha = tu_uniform(&r) * 2;
            for (int i = 0; i <= n; i++) y0[i] = y1[i] = tu_uniform(&r);
            y0[n] = y1[n] = 555.0f;
            k->axpy(alpha, a, y1, n);
            for (int i = 0; i < n; i++) {
                double want = (double)y0[i] + (double)alpha * a[i];
                if (!(fabs(y1[i] - want) <= 1e-6 * (fabs(y0[i]) + fabs(alpha * a[i])) + 1e-30))
                    ck_abort_msg("%s axpy n=%d i=%d: %.9g vs %.9g", k->name, n, i, y1[i], want);
            }
            ck_assert_msg(y1[n] == 555.0f, "%s axpy n=%d wrote past the end", k->name, n);
        }
    }
}
END_TEST

START_TEST(test_report_tables) {
    /* not a check: say which tables this run covered */
    for (int i = 0; i < N_NAMES; i++)
        if (!table(i)) fprintf(stderr, "kernels: table %s not supported on this CPU, skipped\n", s_names[i]);
    fprintf(stderr, "kernels: best table is %s\n", t2_kernels_best()->name);
}
END_TEST

static Suite *suite(void) {
    Suite *s = suite_create("kernels");
    TCase *tc = tcase_create("scalar");
    tcase_add_test(tc, test_f16_spot);
    tcase_add_test(tc, test_f16_all_patterns);
    tcase_add_test(tc, test_bf16_scalar);
    tcase_add_test(tc, test_split_bf16);
    suite_add_tcase(s, tc);
    tc = tcase_create("tables");
    tcase_add_test(tc, test_report_tables);
    tcase_add_test(tc, test_tables_exist);
    tcase_add_test(tc, test_gemv_f32);
    tcase_add_test(tc, test_gemv_bf16);
    tcase_add_test(tc, test_gemv_f16);
    tcase_add_test(tc, test_gemv_bf16_x1);
    tcase_add_test(tc, test_cvt_all_patterns);
    tcase_add_test(tc, test_dot_axpy);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return tu_run(suite()); }
