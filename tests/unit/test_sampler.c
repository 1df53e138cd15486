/* Sampler: greedy, seeded reproducibility, the distribution of temperature sampling, top-k and
 * top-p restrictions, log-probabilities, and parameter validation. */
#include <t2/error.h>
#include <t2/sampler.h>

#include "util.h"

#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static t2_sampler *mk(float temp, int top_k, float top_p, uint64_t seed, int n_vocab) {
    t2_sampler_params p = t2_sampler_default_params();
    p.temperature = temp;
    p.top_k = top_k;
    p.top_p = top_p;
    p.seed = seed;
    t2_status err;
    t2_sampler *s = t2_sampler_new(&p, n_vocab, &err);
    ck_assert_msg(s != NULL, "sampler_new: %s", t2_last_error());
    ck_assert_int_eq(err, T2_OK);
    return s;
}

static int argmax(const float *l, int n) {
    int b = 0;
    for (int i = 1; i < n; i++)
        if (l[i] > l[b]) b = i;
    return b;
}

START_TEST(test_defaults) {
    t2_sampler_params p = t2_sampler_default_params();
    ck_assert_float_eq(p.temperature, 0.0f);
    ck_assert_int_eq(p.top_k, 0);
    ck_assert_float_eq(p.top_p, 1.0f);
}
END_TEST

START_TEST(test_greedy_argmax) {
    tu_rng r = {12345};
    enum { V = 257 };
    float l[V];
    t2_sampler *s = mk(0.0f, 0, 1.0f, 1, V);
    for (int it = 0; it < 200; it++) {
        for (int i = 0; i < V; i++) l[i] = tu_uniform(&r) * 10;
        float lp;
        int t = t2_sampler_sample(s, l, &lp);
        ck_assert_int_eq(t, argmax(l, V));
        ck_assert_float_eq_tol(lp, t2_logprob(l, V, t), 1e-6f);
    }
    /* ties: lowest id */
    for (int i = 0; i < V; i++) l[i] = -1.0f;
    l[40] = l[7] = l[200] = 3.0f;
    ck_assert_int_eq(t2_sampler_sample(s, l, NULL), 7);
    for (int i = 0; i < V; i++) l[i] = 0.0f;
    ck_assert_int_eq(t2_sampler_sample(s, l, NULL), 0);
    /* -inf logits are fine */
    for (int i = 0; i < V; i++) l[i] = -INFINITY;
    l[100] = -50.0f;
    ck_assert_int_eq(t2_sampler_sample(s, l, NULL), 100);
    t2_sampler_free(s);
    t2_sampler_free(NULL);
}
END_TEST

static void draw_seq(uint64_t seed, const float *l, int V, int n, int *out) {
    t2_sampler *s = mk(1.0f, 0, 1.0f, seed, V);
    for (int i = 0; i < n; i++) out[i] = t2_sampler_sample(s, l, NULL);
    t2_sampler_free(s);
}

START_TEST(test_seeds) {
    enum { V = 50, N = 200 };
    float l[V];
    for (int i = 0; i < V; i++) l[i] = 0.1f * (float)(i % 7);
    int a[N], b[N], c[N];
    draw_seq(42, l, V, N, a);
    draw_seq(42, l, V, N, b);
    draw_seq(43, l, V, N, c);
    ck_assert_int_eq(memcmp(a, b, sizeof a), 0);
    ck_assert_msg(memcmp(a, c, sizeof a) != 0, "seeds 42 and 43 drew the same %d tokens", N);
    /* seed 0 is a valid seed and draws something spread out */
    draw_seq(0, l, V, N, c);
    int distinct = 0, seen[V] = {0};
    for (int i = 0; i < N; i++)
        if (!seen[c[i]]++) distinct++;
    ck_assert_int_gt(distinct, 20);
}
END_TEST

/* frequencies of n draws vs softmax(l / T) */
static void check_freq(float T, const float *l, int V, int n, double tol) {
    double p[16], mx = -INFINITY, sum = 0;
    for (int i = 0; i < V; i++) mx = fmax(mx, l[i] / T);
    for (int i = 0; i < V; i++) sum += (p[i] = exp(l[i] / T - mx));
    int cnt[16] = {0};
    t2_sampler *s = mk(T, 0, 1.0f, 7, V);
    for (int i = 0; i < n; i++) {
        int t = t2_sampler_sample(s, l, NULL);
        ck_assert_int_ge(t, 0);
        ck_assert_int_lt(t, V);
        cnt[t]++;
    }
    t2_sampler_free(s);
    for (int i = 0; i < V; i++) {
        double want = p[i] / sum, got = (double)cnt[i] / n;
        ck_assert_msg(fabs(got - want) < tol, "T=%g token %d: frequency %.4f, softmax %.4f", T, i, got, want);
    }
}

START_TEST(test_temperature_frequencies) {
    float l[4] = {1.0f, 2.0f, 0.5f, -1.0f};
    check_freq(1.0f, l, 4, 20000, 0.02);
    check_freq(0.5f, l, 4, 20000, 0.02);
    check_freq(2.0f, l, 4, 20000, 0.02);
}
END_TEST

START_TEST(test_top_k_1_is_greedy) {
    tu_rng r = {99};
    enum { V = 100 };
    float l[V];
    t2_sampler *s = mk(1.5f, 1, 1.0f, 3, V);
    for (int it = 0; it < 500; it++) {
        for (int i = 0; i < V; i++) l[i] = tu_uniform(&r) * 2;
        ck_assert_int_eq(t2_sampler_sample(s, l, NULL), argmax(l, V));
    }
    t2_sampler_free(s);
}
END_TEST

START_TEST(test_top_p_tiny_is_greedy) {
    tu_rng r = {5};
    enum { V = 100 };
    float l[V];
    t2_sampler *s = mk(1.0f, 0, 1e-6f, 3, V);
    for (int it = 0; it < 500; it++) {
        for (int i = 0; i < V; i++) l[i] = tu_uniform(&r) * 8;
        ck_assert_int_eq(t2_sampler_sample(s, l, NULL), argmax(l, V));
    }
    t2_sampler_free(s);
}
END_TEST

START_TEST(test_top_p_tiny_flat) {
    /* a flat distribution: every token is below (1 - top_p) / (V - 1), yet the nucleus must still
     * hold the most likely token */
    float l[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    t2_sampler *s = mk(1.0f, 0, 0.1f, 3, 4);
    for (int it = 0; it < 100; it++) {
        int t = t2_sampler_sample(s, l, NULL);
        ck_assert_msg(t >= 0 && t < 4, "top_p 0.1 over 4 equal logits drew token %d", t);
        ck_assert_int_eq(t, 0);
    }
    t2_sampler_free(s);
    /* nearly flat: the argmax (p = 0.26) is below the bound 0.3 */
    float m[4] = {0.0f, 0.0f, 0.05f, 0.0f};
    s = mk(1.0f, 0, 0.1f, 3, 4);
    for (int it = 0; it < 100; it++) {
        int t = t2_sampler_sample(s, m, NULL);
        ck_assert_msg(t >= 0 && t < 4, "top_p 0.1 over 4 near-equal logits drew token %d", t);
        ck_assert_int_eq(t, 2);
    }
    t2_sampler_free(s);
}
END_TEST

START_TEST(test_top_k_2) {
    float l[6] = {0.1f, 1.0f, -0.5f, 0.9f, 0.0f, 0.95f};   /* top two: 1 and 5 */
    t2_sampler *s = mk(1.0f, 2, 1.0f, 11, 6);
    int cnt[6] = {0};
    for (int it = 0; it < 5000; it++) cnt[t2_sampler_sample(s, l, NULL)]++;
    t2_sampler_free(s);
    for (int i = 0; i < 6; i++)
        if (i != 1 && i != 5) ck_assert_msg(cnt[i] == 0, "top_k=2 drew token %d %d times", i, cnt[i]);
    /* renormalised over the two: p(1) = 1 / (1 + e^-0.05) */
    double want = 1.0 / (1.0 + exp(-0.05));
    ck_assert_msg(fabs(cnt[1] / 5000.0 - want) < 0.03, "p(1) %.3f want %.3f", cnt[1] / 5000.0, want);
}
END_TEST

START_TEST(test_top_p_nucleus) {
    /* probabilities 0.5, 0.3, 0.15, 0.05: top_p 0.7 keeps the first two */
    float l[4] = {logf(0.5f), logf(0.3f), logf(0.15f), logf(0.05f)};
    t2_sampler *s = mk(1.0f, 0, 0.7f, 21, 4);
    int cnt[4] = {0};
    for (int it = 0; it < 10000; it++) cnt[t2_sampler_sample(s, l, NULL)]++;
    t2_sampler_free(s);
    ck_assert_int_eq(cnt[2], 0);
    ck_assert_int_eq(cnt[3], 0);
    ck_assert_msg(fabs(cnt[0] / 10000.0 - 0.625) < 0.03, "p(0) %.3f want 0.625", cnt[0] / 10000.0);
}
END_TEST

START_TEST(test_logprob) {
    tu_rng r = {77};
    enum { V = 1000 };
    float *l = malloc(V * sizeof *l);
    for (int it = 0; it < 20; it++) {
        for (int i = 0; i < V; i++) l[i] = tu_uniform(&r) * 30 + (it == 3 ? 1000.0f : 0.0f);
        double mx = -INFINITY, sum = 0;
        for (int i = 0; i < V; i++) mx = fmax(mx, l[i]);
        for (int i = 0; i < V; i++) sum += exp((double)l[i] - mx);
        for (int t = 0; t < V; t += 37) {
            double want = (double)l[t] - mx - log(sum);
            ck_assert_msg(fabs(t2_logprob(l, V, t) - want) <= 1e-5 * fmax(1.0, fabs(want)), "logprob %d: %g vs %g", t,
                          t2_logprob(l, V, t), want);
        }
    }
    /* the logprob reported by sampling is under temperature 1, whatever the sampling temperature */
    t2_sampler *s = mk(0.3f, 5, 0.9f, 8, V);
    for (int it = 0; it < 50; it++) {
        for (int i = 0; i < V; i++) l[i] = tu_uniform(&r) * 5;
        float lp = 1.0f;
        int t = t2_sampler_sample(s, l, &lp);
        ck_assert_float_eq_tol(lp, t2_logprob(l, V, t), 1e-6f);
        ck_assert_float_le(lp, 0.0f);
    }
    t2_sampler_free(s);
    free(l);
}
END_TEST

START_TEST(test_invalid_params) {
    t2_sampler_params p = t2_sampler_default_params();
    t2_status err;
    p.top_p = 0.0f;
    err = T2_OK;
    ck_assert_ptr_null(t2_sampler_new(&p, 10, &err));
    ck_assert_int_eq(err, T2_ERR_INVALID_ARG);
    p = t2_sampler_default_params();
    p.top_p = 1.5f;
    ck_assert_ptr_null(t2_sampler_new(&p, 10, &err));
    p = t2_sampler_default_params();
    p.temperature = -0.5f;
    err = T2_OK;
    ck_assert_ptr_null(t2_sampler_new(&p, 10, &err));
    ck_assert_int_eq(err, T2_ERR_INVALID_ARG);
    p.temperature = NAN;
    ck_assert_ptr_null(t2_sampler_new(&p, 10, &err));
    p = t2_sampler_default_params();
    p.top_k = -1;
    ck_assert_ptr_null(t2_sampler_new(&p, 10, &err));
    p = t2_sampler_default_params();
    ck_assert_ptr_null(t2_sampler_new(&p, 0, &err));
    ck_assert_ptr_null(t2_sampler_new(NULL, 10, &err));
    ck_assert_ptr_nonnull(strstr(t2_last_error(), "sampler"));
}
END_TEST

static Suite *suite(void) {
    Suite *s = suite_create("sampler");
    TCase *tc = tcase_create("sample");
    tcase_add_test(tc, test_defaults);
    tcase_add_test(tc, test_greedy_argmax);
    tcase_add_test(tc, test_seeds);
    tcase_add_test(tc, test_temperature_frequencies);
    tcase_add_test(tc, test_top_k_1_is_greedy);
    tcase_add_test(tc, test_top_p_tiny_is_greedy);
    tcase_add_test(tc, test_top_p_tiny_flat);
    tcase_add_test(tc, test_top_k_2);
    tcase_add_test(tc, test_top_p_nucleus);
    tcase_add_test(tc, test_logprob);
    tcase_add_test(tc, test_invalid_params);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return tu_run(suite()); }
