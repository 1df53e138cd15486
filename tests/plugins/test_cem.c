/* The CEM optimiser (plugins/common/cem.c): it finds the known best point of synthetic objectives over
 * [0, 1]^k (one α per expert, and per expert per matrix), breaks equal fitness by the second key, keeps
 * the best (elitism), clamps, is reproducible from its seed, checks its parameters, respects its budget,
 * and restores its state. */
#include "cem.h"

#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct objective {
    int dim;
    const float *target;     /* [dim] the peak */
    int quantize;            /* > 0: fitness = ⌊q·(1 − d²/dim)⌋ / q, an accuracy-like step function */
    int flat;                /* 1: fitness constant; only the tie key (−d²) tells the points apart */
    int calls, tie_calls, tie_rows;
    float lo, hi;            /* every value the optimiser proposed lies in here */
    float prev_best[64];
    int have_prev, elite_seen, elite_missing;
    t2_status fail;          /* non-OK: the evaluation fails */
} objective;

static double dist2(const objective *o, const float *x) {
    double s = 0;
    for (int d = 0; d < o->dim; d++) s += (x[d] - o->target[d]) * (double)(x[d] - o->target[d]);
    return s;
}

static t2_status eval(void *user, const float *pop, int n, int dim, double *fit) {
    objective *o = user;
    o->calls++;
    if (o->fail != T2_OK) return o->fail;
    ck_assert_int_eq(dim, o->dim);
    if (o->have_prev) {   /* elitism: row 0 is the last generation's best */
        int same = !memcmp(pop, o->prev_best, (size_t)dim * sizeof *pop);
        o->elite_seen += same;
        o->elite_missing += !same;
    }
    for (int i = 0; i < n; i++) {
        const float *x = pop + (size_t)i * dim;
        for (int d = 0; d < dim; d++) {
            if (x[d] < o->lo) o->lo = x[d];
            if (x[d] > o->hi) o->hi = x[d];
        }
        double v = 1 - dist2(o, x) / dim;
        fit[i] = o->flat ? 0.5 : o->quantize > 0 ? floor(v * o->quantize) / o->quantize : v;
    }
    return T2_OK;
}

static t2_status tie(void *user, const float *const *xs, int n, int dim, double *out) {
    objective *o = user;
    ck_assert_int_eq(dim, o->dim);
    o->tie_calls++;
    o->tie_rows += n;
    for (int i = 0; i < n; i++) out[i] = -dist2(o, xs[i]);
    return T2_OK;
}

static objective obj(int dim, const float *target) {
    return (objective){.dim = dim, .target = target, .lo = INFINITY, .hi = -INFINITY};
}

/* Run to the budget, checking elitism along the way; returns the best. */
static const float *run(t2_cem *c, objective *o, int with_tie) {
    double prev = -INFINITY;
    while (!t2_cem_done(c)) {
        ck_assert_int_eq(t2_cem_step(c, eval, with_tie ? tie : NULL, o), T2_OK);
        double f;
        const float *b = t2_cem_best(c, &f, NULL);
        ck_assert_ptr_nonnull(b);
        if (!o->flat) ck_assert_msg(f >= prev, "the best got worse: %g after %g", f, prev);   /* deterministic fitness + elitism */
        prev = f;
        memcpy(o->prev_best, b, (size_t)o->dim * sizeof *b);
        o->have_prev = 1;
    }
    return t2_cem_best(c, NULL, NULL);
}

START_TEST(test_defaults) {
    t2_cem_params p = t2_cem_default_params(3);
    ck_assert_int_eq(p.population, 32);
    ck_assert_double_eq_tol(p.elite_ratio, 0.2, 1e-12);
    ck_assert_float_eq(p.lo, 0.0f);
    ck_assert_float_eq(p.hi, 1.0f);
    ck_assert_int_eq(p.elitism, 1);
    uint64_t seed = 1;
    t2_status st;
    t2_cem *c = t2_cem_new(&p, t2_cem_splitmix_uniform, &seed, &st);
    ck_assert_int_eq(st, T2_OK);
    ck_assert_int_eq(t2_cem_n_elite(c), 6);
    ck_assert_int_eq(t2_cem_dim(c), 3);
    ck_assert_ptr_null(t2_cem_best(c, NULL, NULL));
    ck_assert(isnan(t2_cem_last_stats(c).best));
    t2_cem_free(c);
    t2_cem_free(NULL);
}
END_TEST

/* One α per expert: a peaked objective over [0, 1]^3 with its peak near a corner and in the middle. */
START_TEST(test_finds_peak_per_expert) {
    const float target[3] = {0.8f, 0.1f, 0.5f};
    t2_cem_params p = t2_cem_default_params(3);
    p.generations = 20;
    uint64_t seed = 42;
    t2_cem *c = t2_cem_new(&p, t2_cem_splitmix_uniform, &seed, NULL);
    objective o = obj(3, target);
    const float *b = run(c, &o, 0);
    for (int d = 0; d < 3; d++) ck_assert_msg(fabsf(b[d] - target[d]) < 0.03f, "α[%d] = %g, want %g", d, b[d], target[d]);
    ck_assert_int_eq(o.calls, 20);
    ck_assert_int_eq(t2_cem_generation(c), 20);
    ck_assert_int_eq(o.elite_missing, 0);
    ck_assert_int_eq(o.elite_seen, 19);
    ck_assert(o.lo >= 0.0f && o.hi <= 1.0f);
    /* the Gaussian has narrowed onto the peak */
    for (int d = 0; d < 3; d++) {
        ck_assert_float_eq_tol(t2_cem_mean(c)[d], target[d], 0.05f);
        ck_assert(t2_cem_std(c)[d] < 0.1f);
        ck_assert(t2_cem_std(c)[d] >= p.std_floor);
    }
    t2_cem_stats s = t2_cem_last_stats(c);
    ck_assert(s.best >= s.elite_mean && s.elite_mean >= s.mean);
    ck_assert_int_eq(t2_cem_step(c, eval, NULL, &o), T2_ERR_RANGE);   /* the budget is spent */
    ck_assert_int_eq(o.calls, 20);
    t2_cem_free(c);
}
END_TEST

/* One α per expert per matrix (3 experts × 4 matrices), peaks on the bounds included, under an
 * accuracy-like step fitness (as grading a handful of examples gives). */
START_TEST(test_finds_peak_per_matrix) {
    const float target[12] = {1, 0, 0.3f, 0.7f, 0, 0.5f, 1, 0.2f, 0.9f, 0.4f, 0, 0.6f};
    t2_cem_params p = t2_cem_default_params(12);
    p.generations = 30;
    uint64_t seed = 7;
    t2_cem *c = t2_cem_new(&p, t2_cem_splitmix_uniform, &seed, NULL);
    objective o = obj(12, target);
    o.quantize = 200;
    const float *b = run(c, &o, 1);
    double err = sqrt(dist2(&o, b) / 12);
    ck_assert_msg(err < 0.08, "rms error %g", err);
    ck_assert_msg(b[0] > 0.95f && b[1] < 0.05f, "bound peaks: %g, %g", b[0], b[1]);
    ck_assert(o.lo == 0.0f && o.hi == 1.0f);   /* clamping makes the bounds reachable exactly */
    ck_assert(o.tie_calls > 0);   /* the steps made ties, and only the deciding ones were scored */
    ck_assert(o.tie_rows < o.calls * p.population);
    t2_cem_free(c);
}
END_TEST

/* Equal fitness everywhere: the second key alone must lead to its peak. */
START_TEST(test_ties_broken_by_second_key) {
    const float target[2] = {0.25f, 0.9f};
    t2_cem_params p = t2_cem_default_params(2);
    p.generations = 15;
    uint64_t seed = 3;
    t2_cem *c = t2_cem_new(&p, t2_cem_splitmix_uniform, &seed, NULL);
    objective o = obj(2, target);
    o.flat = 1;
    const float *b = run(c, &o, 1);
    ck_assert_msg(fabsf(b[0] - 0.25f) < 0.05f && fabsf(b[1] - 0.9f) < 0.05f, "best (%g, %g)", b[0], b[1]);
    ck_assert_int_eq(o.tie_calls, 15);
    ck_assert_int_eq(o.tie_rows, 15 * 32);   /* all tied: all scored */
    double f, t;
    t2_cem_best(c, &f, &t);
    ck_assert_double_eq(f, 0.5);
    ck_assert(t > -0.01 && t <= 0);
    t2_cem_free(c);

    /* without a tie key the same flat run learns nothing in particular: the carried best (index 0) wins */
    seed = 3;
    c = t2_cem_new(&p, t2_cem_splitmix_uniform, &seed, NULL);
    o = obj(2, target);
    o.flat = 1;
    run(c, &o, 0);
    ck_assert_int_eq(o.tie_calls, 0);
    ck_assert_int_eq(o.elite_missing, 0);
    t2_cem_free(c);
}
END_TEST

/* Distinct fitness: the tie key is never asked for. */
START_TEST(test_tie_only_where_needed) {
    const float target[2] = {0.5f, 0.5f};
    t2_cem_params p = t2_cem_default_params(2);
    p.generations = 3;
    uint64_t seed = 11;
    t2_cem *c = t2_cem_new(&p, t2_cem_splitmix_uniform, &seed, NULL);
    objective o = obj(2, target);
    run(c, &o, 1);
    ck_assert_int_eq(o.tie_calls, 0);
    double t;
    t2_cem_best(c, NULL, &t);
    ck_assert(isnan(t));
    t2_cem_free(c);
}
END_TEST

START_TEST(test_reproducible) {
    const float target[4] = {0.1f, 0.2f, 0.3f, 0.4f};
    float first[4];
    for (int rep = 0; rep < 2; rep++) {
        t2_cem_params p = t2_cem_default_params(4);
        uint64_t seed = 99;
        t2_cem *c = t2_cem_new(&p, t2_cem_splitmix_uniform, &seed, NULL);
        objective o = obj(4, target);
        const float *b = run(c, &o, 0);
        if (rep == 0) memcpy(first, b, sizeof first);
        else ck_assert(!memcmp(first, b, sizeof first));
        t2_cem_free(c);
    }
}
END_TEST

START_TEST(test_bad_params_and_errors) {
    uint64_t seed = 1;
    t2_status st;
    static const char *cases[] = {"dim 0", "population 1", "elite 0", "elite > 1", "generations 0", "lo > hi", "std 0", "std NaN",
                                  "floor < 0"};
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        t2_cem_params p = t2_cem_default_params(2);
        switch (k) {
        case 0: p.dim = 0; break;
        case 1: p.population = 1; break;
        case 2: p.elite_ratio = 0; break;
        case 3: p.elite_ratio = 1.5; break;
        case 4: p.generations = 0; break;
        case 5: p.lo = 1, p.hi = 0; break;
        case 6: p.init_std = 0; break;
        case 7: p.init_std = NAN; break;
        case 8: p.std_floor = -1; break;
        }
        ck_assert_msg(t2_cem_new(&p, t2_cem_splitmix_uniform, &seed, &st) == NULL, "%s accepted", cases[k]);
        ck_assert_int_eq(st, T2_ERR_INVALID_ARG);
    }
    t2_cem_params p = t2_cem_default_params(2);
    ck_assert_ptr_null(t2_cem_new(&p, NULL, NULL, &st));
    ck_assert_int_eq(st, T2_ERR_INVALID_ARG);
    p.population = 3;
    p.elite_ratio = 0.01;   /* still one elite */
    t2_cem *c = t2_cem_new(&p, t2_cem_splitmix_uniform, &seed, &st);
    ck_assert_int_eq(t2_cem_n_elite(c), 1);
    const float target[2] = {0, 0};
    objective o = obj(2, target);
    o.fail = T2_ERR_IO;   /* an evaluation error comes back and changes nothing */
    ck_assert_int_eq(t2_cem_step(c, eval, NULL, &o), T2_ERR_IO);
    ck_assert_int_eq(t2_cem_generation(c), 0);
    ck_assert_ptr_null(t2_cem_best(c, NULL, NULL));
    ck_assert_int_eq(t2_cem_step(c, NULL, NULL, &o), T2_ERR_INVALID_ARG);
    t2_cem_free(c);
}
END_TEST

/* NaN fitness ranks last instead of poisoning the refit. */
static t2_status eval_nan(void *user, const float *pop, int n, int dim, double *fit) {
    (void)user;
    for (int i = 0; i < n; i++) fit[i] = pop[(size_t)i * dim] > 0.5f ? NAN : pop[(size_t)i * dim];
    return T2_OK;
}

START_TEST(test_nan_fitness) {
    t2_cem_params p = t2_cem_default_params(1);
    p.generations = 15;
    uint64_t seed = 5;
    t2_cem *c = t2_cem_new(&p, t2_cem_splitmix_uniform, &seed, NULL);
    ck_assert_int_eq(t2_cem_run(c, eval_nan, NULL, NULL), T2_OK);
    double f;
    const float *b = t2_cem_best(c, &f, NULL);
    ck_assert_msg(b[0] <= 0.5f && b[0] > 0.45f && f == b[0], "best %g (fitness %g)", b[0], f);
    ck_assert(isfinite(t2_cem_mean(c)[0]));
    t2_cem_free(c);
}
END_TEST

/* The state round-trips: a restored optimiser continues exactly as the original would. */
START_TEST(test_restore) {
    const float target[3] = {0.3f, 0.6f, 0.9f};
    t2_cem_params p = t2_cem_default_params(3);
    uint64_t s1 = 17, s2 = 0;
    t2_cem *a = t2_cem_new(&p, t2_cem_splitmix_uniform, &s1, NULL);
    objective o = obj(3, target);
    for (int g = 0; g < 4; g++) ck_assert_int_eq(t2_cem_step(a, eval, NULL, &o), T2_OK);
    double f, t;
    const float *best = t2_cem_best(a, &f, &t);
    t2_cem *b = t2_cem_new(&p, t2_cem_splitmix_uniform, &s2, NULL);
    ck_assert_int_eq(t2_cem_restore(b, 4, t2_cem_mean(a), t2_cem_std(a), best, f, t), T2_OK);
    s2 = s1;   /* same random stream from here on */
    ck_assert_int_eq(t2_cem_generation(b), 4);
    for (int g = 0; g < 3; g++) {
        ck_assert_int_eq(t2_cem_step(a, eval, NULL, &o), T2_OK);
        ck_assert_int_eq(t2_cem_step(b, eval, NULL, &o), T2_OK);
    }
    ck_assert(!memcmp(t2_cem_mean(a), t2_cem_mean(b), 3 * sizeof(float)));
    ck_assert(!memcmp(t2_cem_std(a), t2_cem_std(b), 3 * sizeof(float)));
    ck_assert(!memcmp(t2_cem_best(a, NULL, NULL), t2_cem_best(b, NULL, NULL), 3 * sizeof(float)));
    float bad_std[3] = {0.1f, 0, 0.1f};
    ck_assert_int_eq(t2_cem_restore(b, 2, t2_cem_mean(a), bad_std, NULL, 0, 0), T2_ERR_INVALID_ARG);
    ck_assert_int_eq(t2_cem_restore(b, 11, t2_cem_mean(a), t2_cem_std(a), NULL, 0, 0), T2_ERR_INVALID_ARG);
    ck_assert_int_eq(t2_cem_restore(b, 0, t2_cem_mean(a), t2_cem_std(a), NULL, 0, 0), T2_OK);
    ck_assert_ptr_null(t2_cem_best(b, NULL, NULL));
    t2_cem_free(a);
    t2_cem_free(b);
}
END_TEST

/* A starting mean other than init_mean (SVF: z = 1) and a box other than [0, 1]. */
START_TEST(test_set_mean_and_box) {
    const float target[2] = {1.3f, 0.7f};
    t2_cem_params p = t2_cem_default_params(2);
    p.lo = 0;
    p.hi = 2;
    p.init_std = 0.1f;
    p.generations = 20;
    const float ones[2] = {1, 1};
    uint64_t seed = 23;
    t2_cem *c = t2_cem_new(&p, t2_cem_splitmix_uniform, &seed, NULL);
    t2_cem_set_mean(c, ones);
    ck_assert_float_eq(t2_cem_mean(c)[1], 1.0f);
    objective o = obj(2, target);
    const float *b = run(c, &o, 0);
    ck_assert_msg(fabsf(b[0] - 1.3f) < 0.03f && fabsf(b[1] - 0.7f) < 0.03f, "best (%g, %g)", b[0], b[1]);
    ck_assert(o.lo >= 0 && o.hi <= 2);
    t2_cem_free(c);
}
END_TEST

int main(void) {
    Suite *s = suite_create("cem");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_defaults);
    tcase_add_test(tc, test_finds_peak_per_expert);
    tcase_add_test(tc, test_finds_peak_per_matrix);
    tcase_add_test(tc, test_ties_broken_by_second_key);
    tcase_add_test(tc, test_tie_only_where_needed);
    tcase_add_test(tc, test_reproducible);
    tcase_add_test(tc, test_bad_params_and_errors);
    tcase_add_test(tc, test_nan_fitness);
    tcase_add_test(tc, test_restore);
    tcase_add_test(tc, test_set_mean_and_box);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
