/* Training primitives: Adam against a hand computation, the policy parameterisation, the KL term's
 * value and gradient against finite differences, bad requests, and REINFORCE raising the mean reward
 * of a small task within a test-sized budget; training every weight (make_trainable, save, init). (Gradients against PyTorch autograd: tests/ref/check_grad.py.) */
#include <t2/error.h>
#include <t2/model.h>
#include <t2/sampler.h>
#include <t2/svf.h>
#include <t2/train.h>

#include "util.h"

#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *s_dir;
static t2_model *s_m;
static t2_svd *s_svd;

static void setup(void) {
    s_dir = tu_mkdtemp();
    tu_write_checkpoint(s_dir, &(tu_ckpt){.seed = 7});
    s_m = tu_load(s_dir, 2);
    char *cache = tu_join(s_dir, "svd.safetensors");
    t2_svd_params p = t2_svd_default_params();
    p.path = cache;
    t2_status st;
    s_svd = t2_svd_load(s_m, &p, &st);
    ck_assert_msg(s_svd, "svd: %s", t2_last_error());
    free(cache);
}

static void teardown(void) {
    t2_svd_free(s_svd);
    t2_model_free(s_m);
    tu_rm_rf(s_dir);
    free(s_dir);
}

static size_t total_rank(void) {
    size_t n = 0;
    for (int i = 0; i < t2_svd_count(s_svd); i++) n += (size_t)t2_svd_rank(s_svd, i);
    return n;
}

START_TEST(test_adam_step) {
    t2_status st;
    t2_adam_params p = {.lr = 0.1f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f, .clip = 0};
    t2_adam *a = t2_adam_new(2, &p, &st);
    ck_assert_ptr_nonnull(a);
    float x[2] = {1.0f, -2.0f}, g[2] = {0.5f, -4.0f};
    /* first step: m̂ = g, v̂ = g², update = lr · g / (|g| + eps) = lr · sign(g) */
    double norm = t2_adam_step(a, x, g);
    ck_assert_double_eq_tol(norm, sqrt(0.25 + 16.0), 1e-6);
    ck_assert_float_eq_tol(x[0], 0.9f, 1e-6f);
    ck_assert_float_eq_tol(x[1], -1.9f, 1e-6f);
    t2_adam_free(a);
    /* clipping scales the gradient to the norm bound; on the first step Adam's update does not depend
     * on the gradient's scale, so check the returned norm and that the step is still lr · sign */
    p.clip = 1e-3f;
    a = t2_adam_new(2, &p, &st);
    x[0] = 1.0f, x[1] = -2.0f;
    ck_assert_double_eq_tol(t2_adam_step(a, x, g), sqrt(16.25), 1e-6);
    ck_assert_float_eq_tol(x[0], 0.9f, 1e-5f);
    t2_adam_free(a);
    p.lr = 0;
    ck_assert_ptr_null(t2_adam_new(2, &p, &st));
    ck_assert_int_eq(st, T2_ERR_INVALID_ARG);
}
END_TEST

START_TEST(test_policy_init) {
    t2_status st;
    t2_svf_policy *pol = t2_svf_policy_new(s_svd, NULL, 2.0f, &st);
    ck_assert_ptr_nonnull(pol);
    const t2_expert *e = t2_svf_policy_expert(pol);
    for (int i = 0; i < t2_expert_count(e); i++)
        for (int j = 0; j < t2_expert_len(e, i); j++) ck_assert_float_eq_tol(t2_expert_zc(e, i)[j], 1.0f, 1e-6f);
    t2_svf_policy_free(pol);
    /* max_mult must exceed the initial z */
    ck_assert_ptr_null(t2_svf_policy_new(s_svd, NULL, 1.0f, &st));
    ck_assert_int_eq(st, T2_ERR_INVALID_ARG);
}
END_TEST

/* A random expert in [0.6, 1.4]. */
static t2_expert *random_expert(uint64_t seed) {
    t2_status st;
    t2_expert *e = t2_expert_new(s_svd, "r", &st);
    tu_rng r = {seed};
    for (int i = 0; i < t2_expert_count(e); i++)
        for (int j = 0; j < t2_expert_len(e, i); j++) t2_expert_z(e, i)[j] = 1.0f + 0.4f * tu_uniform(&r);
    return e;
}

/* −λ·KL: value from the request, gradient against central differences of the value. */
START_TEST(test_kl_gradient) {
    int32_t ids[10] = {3, 9, 27, 5, 44, 12, 60, 1, 33, 8};
    t2_expert *e = random_expert(5);
    t2_status st;
    size_t n = total_rank();
    float *dz = calloc(n, sizeof *dz);
    t2_adapter *ad = t2_adapter_new(s_svd, e, T2_APPLY_FACTORED, &st);
    double lp, kl;
    /* weight 0: only the KL term's gradient */
    t2_grad_request rq = {.ids = ids, .n = 10, .k0 = 4, .weight = 0.0f, .svd = s_svd, .adapter = ad, .dz = dz, .kl_coef = 1.0f, .kl = &kl};
    ck_assert_msg(t2_logprob_grad(s_m, &rq, &lp) == T2_OK, "%s", t2_last_error());
    ck_assert(kl > 0);
    t2_adapter_free(ad);
    const int probe[][2] = {{0, 0}, {0, 5}, {2, 3}, {5, 11}};
    for (size_t q = 0; q < sizeof probe / sizeof *probe; q++) {
        int mi = probe[q][0], j = probe[q][1];
        size_t off = 0;
        for (int i = 0; i < mi; i++) off += (size_t)t2_svd_rank(s_svd, i);
        double v[2];
        for (int sgn = 0; sgn < 2; sgn++) {
            float *z = t2_expert_z(e, mi), keep = z[j];
            z[j] = keep + (sgn ? -1e-2f : 1e-2f);
            t2_adapter *a2 = t2_adapter_new(s_svd, e, T2_APPLY_FACTORED, &st);
            t2_grad_request r2 = {.ids = ids, .n = 10, .k0 = 4, .svd = s_svd, .adapter = a2, .kl = &v[sgn]};
            ck_assert(t2_logprob_grad(s_m, &r2, &lp) == T2_OK);
            t2_adapter_free(a2);
            z[j] = keep;
        }
        double fd = -(v[0] - v[1]) / 2e-2; /* the gradient is of −λ·KL, λ = 1 */
        ck_assert_msg(fabs(fd - dz[off + (size_t)j]) <= 2e-3 * fabs(fd) + 1e-5, "dKL/dz[%d][%d]: analytic %g, numeric %g", mi, j,
                      dz[off + (size_t)j], fd);
    }
    /* at z = 1 the adapted model is the base model: KL = 0 */
    t2_expert *one = t2_expert_new(s_svd, "one", &st);
    ad = t2_adapter_new(s_svd, one, T2_APPLY_FACTORED, &st);
    t2_grad_request r3 = {.ids = ids, .n = 10, .k0 = 4, .svd = s_svd, .adapter = ad, .kl = &kl};
    ck_assert(t2_logprob_grad(s_m, &r3, &lp) == T2_OK);
    ck_assert_double_le(fabs(kl), 1e-6);
    t2_adapter_free(ad);
    t2_expert_free(one);
    t2_expert_free(e);
    free(dz);
}
END_TEST

START_TEST(test_bad_requests) {
    int32_t ids[4] = {1, 2, 3, 4}, bad[4] = {1, 2, 999, 4};
    double lp;
    t2_grad_request rq = {.ids = ids, .n = 4, .k0 = 4, .weight = 1};
    ck_assert_int_eq(t2_logprob_grad(s_m, &rq, &lp), T2_ERR_INVALID_ARG); /* no completion */
    rq.k0 = 0;
    ck_assert_int_eq(t2_logprob_grad(s_m, &rq, &lp), T2_ERR_INVALID_ARG);
    rq.k0 = 2, rq.ids = bad;
    ck_assert_int_eq(t2_logprob_grad(s_m, &rq, &lp), T2_ERR_RANGE);
    rq.ids = ids;
    float dz[1];
    rq.dz = dz; /* dz without an SVD cache */
    ck_assert_int_eq(t2_logprob_grad(s_m, &rq, &lp), T2_ERR_INVALID_ARG);
    rq.dz = NULL, rq.kl_coef = 0.1f; /* KL without an adapter */
    ck_assert_int_eq(t2_logprob_grad(s_m, &rq, &lp), T2_ERR_INVALID_ARG);
    rq.kl_coef = 0;
    ck_assert_int_eq(t2_logprob_grad(s_m, &rq, &lp), T2_OK);
    ck_assert(lp < 0);
}
END_TEST

/* The task: after the prompt, produce a token in the lower quarter of the vocabulary (+1) or not (−1).
 * The base model does that about a quarter of the time; REINFORCE on the MLP singular values must
 * raise the rate within a few dozen steps of 16 rollouts. */
static int target(int tok) { return tok < TU_V / 4; }

static double sample_batch(t2_ctx *ctx, t2_sampler *smp, const t2_adapter *ad, int32_t (*seqs)[6], t2_rollout *rs, int B) {
    /* the prompt is always the same; the reward looks at the first generated token */
    static const int32_t prompt[3] = {5, 17, 40};
    double mean = 0;
    for (int i = 0; i < B; i++) {
        t2_generation g;
        t2_generate_params gp = {.max_tokens = 3, .adapter = ad};
        ck_assert_msg(t2_generate(ctx, 0, prompt, 3, smp, &gp, &g) == T2_OK, "%s", t2_last_error());
        memcpy(seqs[i], prompt, sizeof prompt);
        memcpy(seqs[i] + 3, g.tokens, 3 * sizeof(int32_t));
        rs[i] = (t2_rollout){.ids = seqs[i], .n = 6, .k0 = 3, .reward = target(g.tokens[0]) ? 1.0f : -1.0f};
        mean += rs[i].reward;
        t2_generation_clear(&g);
    }
    return mean / B;
}

START_TEST(test_reinforce_raises_reward) {
    enum { B = 16, STEPS = 40 };
    t2_status st;
    t2_ctx *ctx = tu_ctx_new(s_m, 16, 1, 8);
    ck_assert(t2_ctx_set_svd(ctx, s_svd, 0) == T2_OK);
    t2_sampler_params sp = t2_sampler_default_params();
    sp.temperature = 1.0f;
    sp.seed = 11;
    t2_sampler *smp = t2_sampler_new(&sp, TU_V, &st);
    t2_svf_policy *pol = t2_svf_policy_new(s_svd, NULL, 2.0f, &st);
    t2_reinforce_params rp = t2_reinforce_default_params();
    rp.adam.lr = 0.05f;      /* a toy model and budget: larger steps than the paper's 2e-3 */
    rp.adam.clip = 0;
    rp.normalize = 1;
    t2_adam *adam = t2_adam_new(total_rank(), &rp.adam, &st);
    int32_t seqs[B][6];
    t2_rollout rs[B];
    double first = 0, last = 0;
    for (int step = 0; step < STEPS; step++) {
        t2_adapter *ad = t2_adapter_new(s_svd, t2_svf_policy_expert(pol), T2_APPLY_FACTORED, &st);
        double mean = sample_batch(ctx, smp, ad, seqs, rs, B);
        t2_adapter_free(ad);
        if (step < 5) first += mean / 5;
        if (step >= STEPS - 5) last += mean / 5;
        t2_reinforce_stats stats;
        ck_assert_msg(t2_reinforce_step(s_m, pol, adam, rs, B, &rp, &stats) == T2_OK, "%s", t2_last_error());
        ck_assert(isfinite(stats.grad_norm));
    }
    printf("REINFORCE toy task: mean reward %.3f over the first 5 steps, %.3f over the last 5\n", first, last);
    ck_assert_msg(last > first + 0.3, "mean reward did not rise enough: %.3f -> %.3f", first, last);
    t2_adam_free(adam);
    t2_svf_policy_free(pol);
    t2_sampler_free(smp);
    t2_ctx_free(ctx);
}
END_TEST

/* The loop: the same task, validated on a fixed-seed batch of 64 samples; the best expert must beat
 * the starting one and reproduce its score when validated again. */
typedef struct toy {
    t2_ctx *ctx;
    t2_sampler *smp;
    int32_t seqs[16][6];
    int steps_seen;
} toy;

static t2_status toy_sample(void *user, const t2_expert *cur, t2_rollout *rs, int B) {
    toy *t = user;
    t2_status st;
    t2_adapter *ad = t2_adapter_new(s_svd, cur, T2_APPLY_FACTORED, &st);
    if (!ad) return st;
    sample_batch(t->ctx, t->smp, ad, t->seqs, rs, B);
    t2_adapter_free(ad);
    return T2_OK;
}

static t2_status toy_validate(void *user, const t2_expert *cur, double *score) {
    toy *t = user;
    t2_status st;
    t2_sampler_params sp = t2_sampler_default_params();
    sp.temperature = 1.0f;
    sp.seed = 999; /* the same validation draws every time */
    t2_sampler *smp = t2_sampler_new(&sp, TU_V, &st);
    t2_adapter *ad = t2_adapter_new(s_svd, cur, T2_APPLY_FACTORED, &st);
    int32_t seqs[64][6];
    t2_rollout rs[64];
    *score = sample_batch(t->ctx, smp, ad, seqs, rs, 64);
    t2_adapter_free(ad);
    t2_sampler_free(smp);
    return T2_OK;
}

static void toy_progress(void *user, int step, const t2_reinforce_stats *st, double val) {
    (void)st, (void)val;
    ((toy *)user)->steps_seen = step;
}

START_TEST(test_reinforce_loop_keeps_best) {
    t2_status st;
    toy t = {.ctx = tu_ctx_new(s_m, 16, 1, 8)};
    ck_assert(t2_ctx_set_svd(t.ctx, s_svd, 0) == T2_OK);
    t2_sampler_params sp = t2_sampler_default_params();
    sp.temperature = 1.0f;
    sp.seed = 3;
    t.smp = t2_sampler_new(&sp, TU_V, &st);
    t2_svf_policy *pol = t2_svf_policy_new(s_svd, NULL, 2.0f, &st);
    t2_reinforce_params rp = t2_reinforce_default_params();
    rp.adam.lr = 0.05f;
    rp.adam.clip = 0;
    rp.normalize = 1;
    t2_adam *adam = t2_adam_new(total_rank(), &rp.adam, &st);
    double start;
    ck_assert(toy_validate(&t, t2_svf_policy_expert(pol), &start) == T2_OK);
    t2_reinforce_loop loop = {.steps = 30, .batch = 16, .eval_every = 10, .sample = toy_sample, .validate = toy_validate,
                              .progress = toy_progress, .user = &t};
    t2_expert *best = NULL;
    double best_score;
    ck_assert_msg(t2_reinforce_train(s_m, pol, adam, &rp, &loop, &best, &best_score) == T2_OK, "%s", t2_last_error());
    ck_assert_ptr_nonnull(best);
    ck_assert_int_eq(t.steps_seen, 30);
    printf("REINFORCE loop: validation %.3f at the start, best %.3f\n", start, best_score);
    ck_assert_msg(best_score > start + 0.3, "validation did not improve: %.3f -> %.3f", start, best_score);
    double again;
    ck_assert(toy_validate(&t, best, &again) == T2_OK);
    ck_assert_double_eq_tol(again, best_score, 1e-9);
    /* a bad loop is refused */
    loop.sample = NULL;
    ck_assert_int_eq(t2_reinforce_train(s_m, pol, adam, &rp, &loop, &best, &best_score), T2_ERR_INVALID_ARG);
    t2_expert_free(best);
    t2_adam_free(adam);
    t2_svf_policy_free(pol);
    t2_sampler_free(t.smp);
    t2_ctx_free(t.ctx);
}
END_TEST

/* Logits of ids (every position) under m: [n × V] into out. */
static void logits_of(t2_model *m, const int32_t *ids, int n, float *out) {
    t2_ctx *c = tu_ctx_new(m, 64, 1, 64);
    int32_t seq[64] = {0}, pos[64];
    uint8_t want[64];
    memset(want, 1, sizeof want);
    for (int i = 0; i < n; i++) pos[i] = i;
    t2_batch b = {.n = n, .token = ids, .pos = pos, .seq = seq, .want = want};
    ck_assert_int_eq(t2_ctx_decode(c, &b, out), T2_OK);
    t2_ctx_free(c);
}

/* Training every weight: make_trainable keeps the model's function (F32 exactly, BF16 widened), save writes
 * the same function back, the flat layouts agree, and Adam steps on the mean NLL raise the log-likelihood. */
static void check_trainable(t2_dtype dtype, int tie, const char *model_type) {
    char *dir = tu_mkdtemp();
    tu_write_checkpoint(dir, &(tu_ckpt){.seed = 11, .dtype = dtype, .exact16 = dtype != T2_F32, .tie = tie, .model_type = model_type});
    t2_model *m = tu_load(dir, 2);
    int32_t ids[12] = {1, 5, 9, 3, 7, 2, 8, 4, 6, 10, 12, 11};
    int n = 12;
    float *a = malloc(sizeof(float) * n * TU_V), *b = malloc(sizeof(float) * n * TU_V);
    logits_of(m, ids, n, a);
    size_t np = 1;
    ck_assert_ptr_null(t2_model_trainable_params(m, &np));
    ck_assert_uint_eq(np, 0);
    ck_assert_int_eq(t2_model_make_trainable(m), T2_OK);
    ck_assert_int_eq(t2_model_make_trainable(m), T2_OK); /* again: nothing */
    float *p = t2_model_trainable_params(m, &np);
    ck_assert_ptr_nonnull(p);
    ck_assert_uint_eq(np, (size_t)t2_model_n_params(m));
    logits_of(m, ids, n, b);
    float worst = 0;
    for (int i = 0; i < n * TU_V; i++) worst = fmaxf(worst, fabsf(a[i] - b[i]));
    /* F32: the same weights through the same kernels; BF16/F16: exact values (exact16), f32 kernels now */
    ck_assert_msg(worst <= (dtype == T2_F32 ? 0 : 1e-4f), "logits moved by %g after make_trainable", worst);

    char *path = tu_join(dir, "saved.safetensors");
    ck_assert_int_eq(t2_model_save_weights(m, path, T2_F32, NULL), T2_OK);
    ck_assert_int_eq(t2_model_save_weights(m, path, T2_F16, NULL), T2_ERR_INVALID_ARG);
    char *sdir = tu_mkdir(dir, "saved");
    char *cfg_from = tu_join(dir, "config.json"), *cfg_to = tu_join(sdir, "config.json"), *w_to = tu_join(sdir, "model.safetensors");
    size_t len;
    unsigned char *cfg = tu_read_file(cfg_from, &len);
    tu_write_bytes(cfg_to, cfg, len);
    ck_assert_int_eq(rename(path, w_to), 0);
    t2_model *m2 = tu_load(sdir, 2);
    ck_assert_int_eq(t2_model_n_params(m2), t2_model_n_params(m));
    logits_of(m2, ids, n, a);
    for (int i = 0; i < n * TU_V; i++) ck_assert_msg(a[i] == b[i], "saved model differs at %d: %g vs %g", i, a[i], b[i]);
    t2_model_free(m2);

    /* the flat gradient is laid out as the parameters; a few Adam steps raise J */
    t2_status st;
    t2_weight_grads *g = t2_weight_grads_new(m, &st);
    size_t ng;
    float *gr = t2_weight_grads_flat(g, &ng);
    ck_assert_uint_eq(ng, np);
    for (int i = 0, off = 0; i < t2_weight_grads_count(g); i++) {
        int64_t shape[2];
        int nd;
        t2_weight_grads_name(g, i, shape, &nd);
        ck_assert_ptr_eq(t2_weight_grads_data(g, i), gr + off);
        off += (int)(shape[0] * (nd == 2 ? shape[1] : 1));
    }
    t2_adam_params ap = t2_adam_default_params();
    ap.lr = 1e-2f;
    ap.clip = 0;
    t2_adam *adam = t2_adam_new(np, &ap, &st);
    double J0 = 0, J = 0;
    for (int step = 0; step < 5; step++) {
        memset(gr, 0, ng * sizeof *gr);
        t2_grad_request rq = {.ids = ids, .n = n, .k0 = 4, .weight = -1.0f, .dw = g};
        ck_assert_int_eq(t2_logprob_grad(m, &rq, &J), T2_OK);
        if (step == 0) J0 = J;
        t2_adam_step(adam, p, gr);
    }
    ck_assert_msg(J > J0 + 0.5, "log-likelihood %g -> %g after 5 Adam steps", J0, J);
    t2_adam_free(adam);
    t2_weight_grads_free(g);
    free(cfg);
    free(cfg_from), free(cfg_to), free(w_to), free(sdir), free(path);
    free(a), free(b);
    t2_model_free(m);
    tu_rm_rf(dir);
    free(dir);
}

START_TEST(test_trainable_f32) { check_trainable(T2_F32, 0, NULL); }
END_TEST
START_TEST(test_trainable_bf16_tied) { check_trainable(T2_BF16, 1, NULL); }
END_TEST
START_TEST(test_trainable_qwen2_biases) { check_trainable(T2_F32, 1, "qwen2"); }
END_TEST

/* A model from scratch: the initial weights load, are reproducible from the seed, and have the stated
 * statistics (norms 1, matrices ~ N(0, std²), output projections scaled down by √(2·layers)). */
START_TEST(test_write_init) {
    char *dir = tu_mkdtemp();
    tu_write_checkpoint(dir, &(tu_ckpt){.seed = 3});
    char *cfgp = tu_join(dir, "config.json"), *w = tu_join(dir, "model.safetensors"), *w2 = tu_join(dir, "again.safetensors");
    t2_model_config c;
    ck_assert_int_eq(t2_model_config_load(cfgp, &c), T2_OK);
    remove(w);
    ck_assert_int_eq(t2_model_write_init(&c, w, 5, 0.5f), T2_OK);
    ck_assert_int_eq(t2_model_write_init(&c, w2, 5, 0.5f), T2_OK);
    size_t l1, l2;
    unsigned char *b1 = tu_read_file(w, &l1), *b2 = tu_read_file(w2, &l2);
    ck_assert(l1 == l2 && !memcmp(b1, b2, l1));
    ck_assert_int_eq(t2_model_write_init(&c, w2, 5, 0.0f), T2_ERR_INVALID_ARG);
    t2_model *m = tu_load(dir, 1);
    ck_assert_int_eq(t2_model_make_trainable(m), T2_OK);
    t2_status st;
    t2_weight_grads *g = t2_weight_grads_new(m, &st);
    size_t np;
    float *p = t2_model_trainable_params(m, &np);
    for (int i = 0, off = 0; i < t2_weight_grads_count(g); i++) {
        int64_t shape[2];
        int nd;
        const char *name = t2_weight_grads_name(g, i, shape, &nd);
        int k = (int)(shape[0] * (nd == 2 ? shape[1] : 1));
        double s1 = 0, s2 = 0;
        for (int j = 0; j < k; j++) s1 += p[off + j], s2 += (double)p[off + j] * p[off + j];
        if (nd == 1) {
            ck_assert_msg(s1 == k && s2 == k, "%s: norm weights should be 1", name);
        } else {
            double sd = sqrt(s2 / k), want = strstr(name, "o_proj") || strstr(name, "down_proj") ? 0.5 / sqrt(2.0 * TU_L) : 0.5;
            ck_assert_msg(fabs(sd - want) < 0.15 * want, "%s: std %g, want %g", name, sd, want);
        }
        off += k;
    }
    t2_weight_grads_free(g);
    t2_model_free(m);
    free(b1), free(b2), free(cfgp), free(w), free(w2);
    tu_rm_rf(dir);
    free(dir);
}
END_TEST

static Suite *suite(void) {
    Suite *s = suite_create("train");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_adam_step);
    tcase_add_test(tc, test_policy_init);
    tcase_add_test(tc, test_kl_gradient);
    tcase_add_test(tc, test_bad_requests);
    tcase_add_test(tc, test_reinforce_raises_reward);
    tcase_add_test(tc, test_reinforce_loop_keeps_best);
    suite_add_tcase(s, tc);
    TCase *tw = tcase_create("weights");
    tcase_add_test(tw, test_trainable_f32);
    tcase_add_test(tw, test_trainable_bf16_tied);
    tcase_add_test(tw, test_trainable_qwen2_biases);
    tcase_add_test(tw, test_write_init);
    suite_add_tcase(s, tw);
    return s;
}

int main(void) { return tu_run(suite()); }
