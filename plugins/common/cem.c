/* cem.c — the cross-entropy method over a box [lo, hi]^d.
 *
 * The math. CEM keeps a sampling distribution q_g = N(μ_g, diag(σ_g²)) and improves it by repeatedly
 * fitting it to the best samples it draws:
 *
 *   1. Sample.  N individuals x_i = clamp(μ_g + σ_g ⊙ ε_i, lo, hi), ε_i ~ N(0, I) (Box–Muller on the
 *      caller's uniform stream). With elitism, x_0 is instead the best individual of generation g−1
 *      (unchanged), so the best found so far always competes again on the same footing (for a noisy
 *      fitness such as accuracy on a random batch it is re-evaluated, not trusted from the past).
 *   2. Evaluate. f_i = fitness(x_i) for the whole population in one callback.
 *   3. Rank by (f_i desc, t_i desc, i asc): t is the second key (paper: mean log-likelihood of the correct
 *      answers under the candidate), computed only where it changes an outcome — for the individuals
 *      sharing the top fitness (which one is the best) and those sharing the fitness at the elite
 *      boundary when that group straddles it (which ones are elite). Everything else keeps index order.
 *   4. Select the elite E = the first K = max(1, ⌊ρN⌋) ranks (paper ρ = 0.2, N = 32 → K = 6).
 *   5. Refit by maximum likelihood on E:  μ_{g+1} = (1/K) Σ_{i∈E} x_i,
 *      σ_{g+1} = max(σ_floor, sqrt((1/K) Σ_{i∈E} (x_i − μ_{g+1})²)), per dimension.
 *      This is the CE update: it minimises the cross-entropy between the uniform distribution on the elite
 *      and q, i.e. argmax_q Σ_{i∈E} log q(x_i). The floor keeps the search alive after the elite collapses
 *      onto one point (with K ≥ 2 identical clamped values the ML std would be 0 forever).
 *   6. best = the rank-0 individual of this generation (with elitism it is at least as good as the last
 *      best under a deterministic fitness, since that one is in the population).
 *
 * The budget: generations steps. Clamping (rather than resampling) puts mass on the bounds, which is what
 * α ∈ [0, 1] wants: "leave this expert out" (0) and "all of it" (1) are reachable exactly. */
#include "cem.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

struct t2_cem {
    t2_cem_params p;
    t2_cem_uniform_fn uniform;
    void *uniform_user;
    int n_elite, gen, has_best;
    float *mean, *std;        /* [dim] the Gaussian */
    float *pop;               /* [population × dim] the current generation */
    float *best;              /* [dim] */
    double best_fit, best_tie;
    double *fit, *tie;        /* [population] */
    int *rank;                /* [population] indices, best first */
    const float **tie_x;      /* [population] scratch for the tie callback */
    int *tie_idx;             /* [population] */
    double *tie_out;          /* [population] */
    t2_cem_stats stats;
};

t2_cem_params t2_cem_default_params(int dim) {
    return (t2_cem_params){.dim = dim, .population = 32, .elite_ratio = 0.2, .generations = 10, .lo = 0.0f, .hi = 1.0f,
                           .init_mean = 0.5f, .init_std = 0.3f, .std_floor = 0.02f, .elitism = 1};
}

double t2_cem_splitmix_uniform(void *state) {
    uint64_t *x = state;
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    z ^= z >> 31;
    return (double)(z >> 11) * 0x1.0p-53;
}

t2_cem *t2_cem_new(const t2_cem_params *p, t2_cem_uniform_fn uniform, void *uniform_user, t2_status *err) {
    t2_status dummy;
    if (!err) err = &dummy;
    *err = T2_ERR_INVALID_ARG;
    if (!p || !uniform || p->dim < 1 || p->population < 2 || !(p->elite_ratio > 0 && p->elite_ratio <= 1) || p->generations < 1 ||
        !(p->lo <= p->hi) || !(p->init_std > 0) || !isfinite(p->init_std) || !(p->std_floor >= 0) || !isfinite(p->init_mean) ||
        p->population > (1 << 20) || (int64_t)p->dim * p->population > ((int64_t)1 << 31))
        return NULL;
    t2_cem *c = calloc(1, sizeof *c);
    size_t d = (size_t)p->dim, n = (size_t)p->population;
    *err = T2_ERR_NOMEM;
    if (!c) return NULL;
    c->p = *p;
    c->uniform = uniform;
    c->uniform_user = uniform_user;
    c->n_elite = (int)floor(p->elite_ratio * p->population + 1e-9);
    if (c->n_elite < 1) c->n_elite = 1;
    c->mean = malloc(d * sizeof *c->mean);
    c->std = malloc(d * sizeof *c->std);
    c->best = malloc(d * sizeof *c->best);
    c->pop = malloc(n * d * sizeof *c->pop);
    c->fit = malloc(n * sizeof *c->fit);
    c->tie = malloc(n * sizeof *c->tie);
    c->rank = malloc(n * sizeof *c->rank);
    c->tie_x = malloc(n * sizeof *c->tie_x);
    c->tie_idx = malloc(n * sizeof *c->tie_idx);
    c->tie_out = malloc(n * sizeof *c->tie_out);
    if (!c->mean || !c->std || !c->best || !c->pop || !c->fit || !c->tie || !c->rank || !c->tie_x || !c->tie_idx || !c->tie_out) {
        t2_cem_free(c);
        return NULL;
    }
    for (size_t i = 0; i < d; i++) {
        c->mean[i] = p->init_mean;
        c->std[i] = p->init_std;
    }
    c->best_fit = c->best_tie = NAN;
    c->stats = (t2_cem_stats){NAN, NAN, NAN, NAN};
    *err = T2_OK;
    return c;
}

void t2_cem_free(t2_cem *c) {
    if (!c) return;
    free(c->mean);
    free(c->std);
    free(c->best);
    free(c->pop);
    free(c->fit);
    free(c->tie);
    free(c->rank);
    free(c->tie_x);
    free(c->tie_idx);
    free(c->tie_out);
    free(c);
}

void t2_cem_set_mean(t2_cem *c, const float *mean) { memcpy(c->mean, mean, (size_t)c->p.dim * sizeof *c->mean); }

static float clampf(float x, float lo, float hi) { return x < lo ? lo : x > hi ? hi : x; }

/* N(0, 1) by Box–Muller; 1 − u keeps the log argument in (0, 1]. */
static double normal(t2_cem *c) {
    double u1 = c->uniform(c->uniform_user), u2 = c->uniform(c->uniform_user);
    return sqrt(-2.0 * log(1.0 - u1)) * cos(6.283185307179586 * u2);
}

static double key(double f) { return isnan(f) ? -INFINITY : f; }

/* qsort has no context pointer: the comparator reads the generation being ranked from here. Ranking runs
 * inside t2_cem_step only, so a thread-local is enough for several optimisers on several threads. */
static _Thread_local const t2_cem *s_ranking;

static int by_rank(const void *a, const void *b) {
    const t2_cem *c = s_ranking;
    int i = *(const int *)a, j = *(const int *)b;
    double fi = key(c->fit[i]), fj = key(c->fit[j]);
    if (fi != fj) return fi > fj ? -1 : 1;
    double ti = key(c->tie[i]), tj = key(c->tie[j]);
    if (ti != tj) return ti > tj ? -1 : 1;
    return (i > j) - (i < j);
}

static void rank_population(t2_cem *c) {
    for (int i = 0; i < c->p.population; i++) c->rank[i] = i;
    s_ranking = c;
    qsort(c->rank, (size_t)c->p.population, sizeof *c->rank, by_rank);
    s_ranking = NULL;
}

/* Add to the tie list every individual whose fitness equals f (once). */
static int collect_group(t2_cem *c, double f, int n_sel) {
    for (int r = 0; r < c->p.population; r++) {
        int i = c->rank[r];
        if (key(c->fit[i]) != f) continue;
        int seen = 0;
        for (int k = 0; k < n_sel && !seen; k++) seen = c->tie_idx[k] == i;
        if (!seen) c->tie_idx[n_sel++] = i;
    }
    return n_sel;
}

static int group_size(const t2_cem *c, double f) {
    int n = 0;
    for (int i = 0; i < c->p.population; i++) n += key(c->fit[i]) == f;
    return n;
}

t2_status t2_cem_step(t2_cem *c, t2_cem_eval_fn eval, t2_cem_tie_fn tie, void *user) {
    if (!c || !eval) return T2_ERR_INVALID_ARG;
    if (t2_cem_done(c)) return T2_ERR_RANGE;
    const int N = c->p.population, D = c->p.dim, K = c->n_elite;
    /* 1. sample */
    int first = 0;
    if (c->p.elitism && c->has_best) {
        memcpy(c->pop, c->best, (size_t)D * sizeof *c->pop);
        first = 1;
    }
    for (int i = first; i < N; i++)
        for (int d = 0; d < D; d++)
            c->pop[(size_t)i * D + d] = clampf((float)(c->mean[d] + c->std[d] * normal(c)), c->p.lo, c->p.hi);
    /* 2. evaluate */
    for (int i = 0; i < N; i++) c->fit[i] = NAN, c->tie[i] = NAN;
    t2_status st = eval(user, c->pop, N, D, c->fit);
    if (st != T2_OK) return st;
    /* 3. rank, with the second key only where it decides something */
    rank_population(c);
    if (tie) {
        double top = key(c->fit[c->rank[0]]), edge = key(c->fit[c->rank[K - 1]]);
        int n_sel = 0;
        if (group_size(c, top) > 1) n_sel = collect_group(c, top, n_sel);
        if (K < N && key(c->fit[c->rank[K]]) == edge) n_sel = collect_group(c, edge, n_sel);
        if (n_sel > 0) {
            for (int k = 0; k < n_sel; k++) c->tie_x[k] = c->pop + (size_t)c->tie_idx[k] * D;
            for (int k = 0; k < n_sel; k++) c->tie_out[k] = NAN;
            if ((st = tie(user, c->tie_x, n_sel, D, c->tie_out)) != T2_OK) return st;
            /* unscored individuals (NaN, ranked as −∞) never share a fitness with a scored one */
            for (int k = 0; k < n_sel; k++) c->tie[c->tie_idx[k]] = c->tie_out[k];
            rank_population(c);
        }
    }
    /* 4.–5. refit on the elite */
    double fsum = 0, esum = 0, ssum = 0;
    for (int i = 0; i < N; i++) fsum += key(c->fit[i]) == -INFINITY ? 0 : c->fit[i];
    for (int k = 0; k < K; k++) esum += key(c->fit[c->rank[k]]) == -INFINITY ? 0 : c->fit[c->rank[k]];
    for (int d = 0; d < D; d++) {
        double m = 0, v = 0;
        for (int k = 0; k < K; k++) m += c->pop[(size_t)c->rank[k] * D + d];
        m /= K;
        for (int k = 0; k < K; k++) {
            double e = c->pop[(size_t)c->rank[k] * D + d] - m;
            v += e * e;
        }
        double s = sqrt(v / K);
        c->mean[d] = (float)m;
        c->std[d] = (float)(s > c->p.std_floor ? s : c->p.std_floor);
        ssum += c->std[d];
    }
    /* 6. the best */
    int b = c->rank[0];
    memcpy(c->best, c->pop + (size_t)b * D, (size_t)D * sizeof *c->best);
    c->best_fit = c->fit[b];
    c->best_tie = c->tie[b];   /* NaN when it was never needed */
    c->has_best = 1;
    c->stats = (t2_cem_stats){.best = c->fit[b], .mean = fsum / N, .elite_mean = esum / K, .std_mean = ssum / D};
    c->gen++;
    return T2_OK;
}

t2_status t2_cem_run(t2_cem *c, t2_cem_eval_fn eval, t2_cem_tie_fn tie, void *user) {
    while (!t2_cem_done(c)) {
        t2_status st = t2_cem_step(c, eval, tie, user);
        if (st != T2_OK) return st;
    }
    return T2_OK;
}

int t2_cem_done(const t2_cem *c) { return c->gen >= c->p.generations; }
int t2_cem_generation(const t2_cem *c) { return c->gen; }
int t2_cem_dim(const t2_cem *c) { return c->p.dim; }
int t2_cem_n_elite(const t2_cem *c) { return c->n_elite; }

const float *t2_cem_best(const t2_cem *c, double *fitness, double *tie) {
    if (fitness) *fitness = c->has_best ? c->best_fit : NAN;
    if (tie) *tie = c->has_best ? c->best_tie : NAN;
    return c->has_best ? c->best : NULL;
}

const float *t2_cem_mean(const t2_cem *c) { return c->mean; }
const float *t2_cem_std(const t2_cem *c) { return c->std; }
t2_cem_stats t2_cem_last_stats(const t2_cem *c) { return c->stats; }

t2_status t2_cem_restore(t2_cem *c, int generation, const float *mean, const float *std, const float *best, double best_fitness,
                         double best_tie) {
    if (!c || !mean || !std || generation < 0 || generation > c->p.generations) return T2_ERR_INVALID_ARG;
    for (int d = 0; d < c->p.dim; d++)
        if (!(std[d] > 0) || !isfinite(std[d]) || !isfinite(mean[d]) || (best && !isfinite(best[d]))) return T2_ERR_INVALID_ARG;
    memcpy(c->mean, mean, (size_t)c->p.dim * sizeof *c->mean);
    memcpy(c->std, std, (size_t)c->p.dim * sizeof *c->std);
    c->has_best = best != NULL;
    if (best) memcpy(c->best, best, (size_t)c->p.dim * sizeof *c->best);
    c->best_fit = best ? best_fitness : NAN;
    c->best_tie = best ? best_tie : NAN;
    c->gen = generation;
    c->stats = (t2_cem_stats){NAN, NAN, NAN, NAN};
    return T2_OK;
}
