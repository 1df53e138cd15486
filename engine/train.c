/* Optimisation for SVF training: Adam with global gradient-norm clipping, the policy parameterisation
 * z = max_mult · sigmoid(p), and the REINFORCE step of the paper (§3.2):
 *     maximise  E[ log π_z(ŷ | x) · r(ŷ, y) ] − λ · KL(π_z ‖ π_base)
 * estimated on a batch of scored rollouts; ∂/∂p = ∂/∂z · max_mult · σ(p)(1 − σ(p)). */
#include <t2/train.h>
#include <t2/error.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---------------- Adam ---------------- */

struct t2_adam {
    t2_adam_params p;
    size_t n;
    float *m, *v;
    long t;
};

t2_adam_params t2_adam_default_params(void) {
    return (t2_adam_params){.lr = 2e-3f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f, .clip = 1e-3f};
}

void t2_adam_set_lr(t2_adam *a, float lr) { a->p.lr = lr; }

t2_adam *t2_adam_new(size_t n, const t2_adam_params *p, t2_status *err) {
    if (!p || !(p->lr > 0) || !(p->beta1 >= 0 && p->beta1 < 1) || !(p->beta2 >= 0 && p->beta2 < 1) || !(p->eps > 0) ||
        !(p->clip >= 0)) {
        *err = t2_set_error(T2_ERR_INVALID_ARG, "adam: need lr > 0, 0 <= beta < 1, eps > 0, clip >= 0");
        return NULL;
    }
    t2_adam *a = calloc(1, sizeof *a);
    if (a) {
        a->m = calloc(n ? n : 1, sizeof *a->m);
        a->v = calloc(n ? n : 1, sizeof *a->v);
    }
    if (!a || !a->m || !a->v) {
        t2_adam_free(a);
        *err = t2_set_error(T2_ERR_NOMEM, "adam: out of memory");
        return NULL;
    }
    a->p = *p;
    a->n = n;
    *err = T2_OK;
    return a;
}

void t2_adam_free(t2_adam *a) {
    if (!a) return;
    free(a->m);
    free(a->v);
    free(a);
}

double t2_adam_step(t2_adam *a, float *params, const float *grad) {
    double norm = 0;
    for (size_t i = 0; i < a->n; i++) norm += (double)grad[i] * grad[i];
    norm = sqrt(norm);
    double scale = a->p.clip > 0 && norm > a->p.clip ? a->p.clip / norm : 1.0;
    a->t++;
    double b1 = a->p.beta1, b2 = a->p.beta2;
    double c1 = 1.0 - pow(b1, (double)a->t), c2 = 1.0 - pow(b2, (double)a->t);
    for (size_t i = 0; i < a->n; i++) {
        double g = grad[i] * scale;
        a->m[i] = (float)(b1 * a->m[i] + (1 - b1) * g);
        a->v[i] = (float)(b2 * a->v[i] + (1 - b2) * g * g);
        params[i] -= (float)(a->p.lr * (a->m[i] / c1) / (sqrt(a->v[i] / c2) + a->p.eps));
    }
    return norm;
}

size_t t2_adam_size(const t2_adam *a) { return a->n; }

void t2_adam_get_state(const t2_adam *a, float *m, float *v, long *t) {
    if (m) memcpy(m, a->m, a->n * sizeof *m);
    if (v) memcpy(v, a->v, a->n * sizeof *v);
    if (t) *t = a->t;
}

void t2_adam_set_state(t2_adam *a, const float *m, const float *v, long t) {
    memcpy(a->m, m, a->n * sizeof *m);
    memcpy(a->v, v, a->n * sizeof *v);
    a->t = t;
}

/* ---------------- the SVF policy ---------------- */

struct t2_svf_policy {
    const t2_svd *svd;
    float max_mult;
    size_t n;          /* Σ ranks */
    float *p;          /* [n] raw parameters */
    t2_expert *e;      /* z = max_mult·sigmoid(p) */
};

static void sync_z(t2_svf_policy *pol) {
    size_t o = 0;
    for (int i = 0; i < t2_expert_count(pol->e); i++) {
        float *z = t2_expert_z(pol->e, i);
        for (int j = 0; j < t2_expert_len(pol->e, i); j++, o++) z[j] = pol->max_mult / (1.0f + expf(-pol->p[o]));
    }
}

t2_svf_policy *t2_svf_policy_new(const t2_svd *svd, const t2_expert *init, float max_mult, t2_status *err) {
    t2_svf_policy *pol = calloc(1, sizeof *pol);
    if (!pol) {
        *err = t2_set_error(T2_ERR_NOMEM, "policy: out of memory");
        return NULL;
    }
    pol->svd = svd;
    pol->max_mult = max_mult;
    if (!(pol->e = t2_expert_new(svd, "policy", err))) {
        free(pol);
        return NULL;
    }
    for (int i = 0; i < t2_svd_count(svd); i++) pol->n += (size_t)t2_svd_rank(svd, i);
    pol->p = malloc((pol->n ? pol->n : 1) * sizeof *pol->p);
    if (!pol->p) {
        t2_svf_policy_free(pol);
        *err = t2_set_error(T2_ERR_NOMEM, "policy: out of memory");
        return NULL;
    }
    if (init && t2_expert_count(init) != t2_svd_count(svd)) {
        t2_svf_policy_free(pol);
        *err = t2_set_error(T2_ERR_SHAPE, "policy: the initial expert does not match the SVD cache");
        return NULL;
    }
    size_t o = 0;
    for (int i = 0; i < t2_svd_count(svd); i++)
        for (int j = 0; j < t2_svd_rank(svd, i); j++, o++) {
            float z = init ? t2_expert_zc(init, i)[j] : 1.0f;
            if (!(z > 0 && z < max_mult)) {
                t2_svf_policy_free(pol);
                *err = t2_set_error(T2_ERR_INVALID_ARG, "policy: z = %g of %s is outside (0, max_mult = %g)", z, t2_svd_name(svd, i),
                                    max_mult);
                return NULL;
            }
            pol->p[o] = logf(z / (max_mult - z)); /* sigmoid⁻¹(z / max_mult) */
        }
    sync_z(pol);
    *err = T2_OK;
    return pol;
}

void t2_svf_policy_free(t2_svf_policy *pol) {
    if (!pol) return;
    t2_expert_free(pol->e);
    free(pol->p);
    free(pol);
}

const t2_expert *t2_svf_policy_expert(const t2_svf_policy *pol) { return pol->e; }

size_t t2_svf_policy_size(const t2_svf_policy *pol) { return pol->n; }

const float *t2_svf_policy_params(const t2_svf_policy *pol) { return pol->p; }

void t2_svf_policy_set_params(t2_svf_policy *pol, const float *params) {
    memcpy(pol->p, params, pol->n * sizeof *pol->p);
    sync_z(pol);
}

/* ---------------- REINFORCE ---------------- */

t2_reinforce_params t2_reinforce_default_params(void) {
    return (t2_reinforce_params){.adam = t2_adam_default_params(), .kl_coef = 0.0f, .normalize = 0, .reward_clip = 0.0f};
}

double t2_reinforce_advantages(const t2_rollout *rs, int B, const t2_reinforce_params *p, float *adv) {
    double mean = 0, var = 0;
    for (int i = 0; i < B; i++) mean += rs[i].reward;
    mean /= B;
    for (int i = 0; i < B; i++) var += (rs[i].reward - mean) * (rs[i].reward - mean);
    double sd = sqrt(var / B);
    for (int i = 0; i < B; i++) {
        double a = p->normalize ? (rs[i].reward - mean) / (sd + 1e-6) : rs[i].reward;
        if (p->reward_clip > 0) a = a > p->reward_clip ? p->reward_clip : a < -p->reward_clip ? -p->reward_clip : a;
        adv[i] = (float)a;
    }
    return mean;
}

double t2_svf_policy_update(t2_svf_policy *pol, t2_adam *adam, float *dz) {
    /* ascend the objective: Adam descends −∂/∂p, and ∂z/∂p = max_mult·σ(p)(1 − σ(p)) */
    size_t o = 0;
    for (int i = 0; i < t2_expert_count(pol->e); i++)
        for (int j = 0; j < t2_expert_len(pol->e, i); j++, o++) {
            float sg = 1.0f / (1.0f + expf(-pol->p[o]));
            dz[o] = -dz[o] * pol->max_mult * sg * (1.0f - sg);
        }
    double gn = t2_adam_step(adam, pol->p, dz);
    sync_z(pol);
    return gn;
}

t2_status t2_reinforce_step(t2_model *m, t2_svf_policy *pol, t2_adam *adam, const t2_rollout *rs, int B,
                            const t2_reinforce_params *p, t2_reinforce_stats *stats) {
    if (B < 1 || !rs || !p) return t2_set_error(T2_ERR_INVALID_ARG, "reinforce: empty batch");
    if (!adam || adam->n != pol->n)
        return t2_set_error(T2_ERR_INVALID_ARG, "reinforce: the optimiser holds %zu parameters, the policy %zu", adam ? adam->n : 0,
                            pol->n);
    t2_status st;
    t2_adapter *ad = t2_adapter_new(pol->svd, pol->e, T2_APPLY_FACTORED, &st);
    if (!ad) return st;
    float *adv = malloc((size_t)B * sizeof *adv), *dz = calloc(pol->n ? pol->n : 1, sizeof *dz);
    if (!adv || !dz) {
        free(adv), free(dz);
        t2_adapter_free(ad);
        return t2_set_error(T2_ERR_NOMEM, "reinforce: out of memory");
    }
    double mean = t2_reinforce_advantages(rs, B, p, adv);
    double lp_sum = 0, kl_sum = 0;
    long tokens = 0;
    st = T2_OK;
    for (int i = 0; i < B && !st; i++) {
        double lp = 0, kl = 0;
        t2_grad_request rq = {.ids = rs[i].ids, .n = rs[i].n, .k0 = rs[i].k0, .weight = adv[i] / (float)B,
                              .svd = pol->svd, .adapter = ad, .dz = dz, .kl_coef = p->kl_coef / (float)B, .kl = &kl};
        st = t2_logprob_grad(m, &rq, &lp);
        lp_sum += lp;
        kl_sum += kl;
        tokens += rs[i].n - rs[i].k0;
    }
    if (!st) {
        double gn = t2_svf_policy_update(pol, adam, dz);
        if (stats) {
            stats->mean_reward = mean;
            stats->mean_logprob = tokens ? lp_sum / (double)tokens : 0;
            stats->mean_kl = tokens ? kl_sum / (double)tokens : 0;
            stats->grad_norm = gn;
        }
    }
    free(adv);
    free(dz);
    t2_adapter_free(ad);
    return st;
}

t2_status t2_reinforce_train(t2_model *m, t2_svf_policy *pol, t2_adam *adam, const t2_reinforce_params *p,
                             const t2_reinforce_loop *loop, t2_expert **best, double *best_score) {
    if (!loop || !loop->sample || !loop->validate || loop->batch < 1 || loop->steps < 0 || !best || !best_score)
        return t2_set_error(T2_ERR_INVALID_ARG, "reinforce: the loop needs sample, validate, batch >= 1, steps >= 0");
    t2_rollout *rs = calloc((size_t)loop->batch, sizeof *rs);
    if (!rs) return t2_set_error(T2_ERR_NOMEM, "reinforce: out of memory");
    t2_status st = loop->validate(loop->user, pol->e, best_score);
    *best = st ? NULL : t2_expert_clone(pol->e, &st);
    for (int step = 1; !st && step <= loop->steps; step++) {
        t2_reinforce_stats stats = {0};
        if ((st = loop->sample(loop->user, pol->e, rs, loop->batch)) ||
            (st = t2_reinforce_step(m, pol, adam, rs, loop->batch, p, &stats)))
            break;
        double val = NAN;
        if ((loop->eval_every > 0 && step % loop->eval_every == 0) || step == loop->steps) {
            if ((st = loop->validate(loop->user, pol->e, &val))) break;
            if (val > *best_score) {
                t2_expert *copy = t2_expert_clone(pol->e, &st);
                if (!copy) break;
                t2_expert_free(*best);
                *best = copy;
                *best_score = val;
            }
        }
        if (loop->progress) loop->progress(loop->user, step, &stats, val);
    }
    free(rs);
    if (st) {
        t2_expert_free(*best);
        *best = NULL;
    }
    return st;
}
