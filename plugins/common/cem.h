/* cem.h — the cross-entropy method (CEM) as a small reusable optimiser for plugins (no host calls).
 *
 * A diagonal Gaussian N(mean, std²) over [lo, hi]^dim samples a population each generation; the caller's
 * evaluate callback scores the whole population at once (so it can batch the work, e.g. one host generate
 * call per generation); the elite fraction refits mean and std (std never below a floor); the best
 * individual of a generation is carried unchanged into the next (elitism) and re-evaluated with it. Equal
 * fitness is broken by a second key (a tie callback, asked only for the individuals whose order matters).
 * The run ends after a generation budget. Randomness comes only from the uniform callback given to
 * t2_cem_new, so a seeded callback makes a run reproducible.
 *
 * Used by the cem dispatch plugin (α of a mixture of experts, paper §3.3) and the cem-svf trainer (z). */
#ifndef T2_PLUGIN_CEM_H
#define T2_PLUGIN_CEM_H

#include <stdint.h>
#include <t2/status.h>

typedef struct t2_cem t2_cem;

typedef struct t2_cem_params {
    int dim;             /* values per individual, ≥ 1 */
    int population;      /* individuals per generation, ≥ 2 (paper: 32) */
    double elite_ratio;  /* fraction that refits the Gaussian, in (0, 1]; n_elite = max(1, ⌊ratio·population⌋) (paper 0.2 → 6) */
    int generations;     /* the budget: t2_cem_done after this many, ≥ 1 */
    float lo, hi;        /* every sampled value is clamped to [lo, hi] (α: [0, 1]) */
    float init_mean;     /* the starting mean of every dimension, unless t2_cem_set_mean is called */
    float init_std;      /* the starting std, > 0 */
    float std_floor;     /* the refitted std never goes below this, ≥ 0 */
    int elitism;         /* 1: the best individual is carried into the next generation */
} t2_cem_params;

/* dim as given; population 32, elite_ratio 0.2, generations 10, [0, 1], mean 0.5, std 0.3, floor 0.02,
 * elitism on. */
t2_cem_params t2_cem_default_params(int dim);

/* Uniform in [0, 1). */
typedef double (*t2_cem_uniform_fn)(void *user);

/* Scores pop[n × dim] (row i is individual i): fitness[n], higher is better (NaN counts as −∞). A non-OK
 * status stops the generation and is returned by t2_cem_step. */
typedef t2_status (*t2_cem_eval_fn)(void *user, const float *pop, int n, int dim, double *fitness);

/* The second key of the n individuals xs[i] (each [dim]): tie[n], higher is better. */
typedef t2_status (*t2_cem_tie_fn)(void *user, const float *const *xs, int n, int dim, double *tie);

/* A ready generator for t2_cem_new: splitmix64 on *(uint64_t *)state. */
double t2_cem_splitmix_uniform(void *state);

/* A new optimiser; NULL with *err set (T2_ERR_INVALID_ARG for parameters out of range, T2_ERR_NOMEM).
 * uniform is required; its user pointer must outlive the optimiser. Caller frees with t2_cem_free. */
t2_cem *t2_cem_new(const t2_cem_params *p, t2_cem_uniform_fn uniform, void *uniform_user, t2_status *err);
void t2_cem_free(t2_cem *c);   /* NULL-safe */

/* Replace the starting mean (before the first generation) — e.g. z = 1 for SVF. */
void t2_cem_set_mean(t2_cem *c, const float *mean);

/* One generation: sample (the carried best first), evaluate, break ties where they matter (tie may be
 * NULL: ties keep the lower index, so the carried best), keep the best, refit. T2_ERR_RANGE when the
 * budget is spent; the callbacks' own errors otherwise (mean, std, best and the generation count are then
 * unchanged; the random stream has moved on). */
t2_status t2_cem_step(t2_cem *c, t2_cem_eval_fn eval, t2_cem_tie_fn tie, void *user);
/* Generations until the budget is spent (or a callback fails). */
t2_status t2_cem_run(t2_cem *c, t2_cem_eval_fn eval, t2_cem_tie_fn tie, void *user);

int t2_cem_done(const t2_cem *c);
int t2_cem_generation(const t2_cem *c);   /* generations completed */
int t2_cem_dim(const t2_cem *c);
int t2_cem_n_elite(const t2_cem *c);
/* The best individual so far [dim], its fitness and second key (NAN if never computed); NULL before the
 * first generation. Borrowed, valid until the next step or restore. */
const float *t2_cem_best(const t2_cem *c, double *fitness, double *tie);
/* The Gaussian [dim] (borrowed, valid until t2_cem_free). */
const float *t2_cem_mean(const t2_cem *c);
const float *t2_cem_std(const t2_cem *c);

/* Statistics of the last generation (all NAN before the first). */
typedef struct t2_cem_stats {
    double best, mean, elite_mean;   /* fitness: the generation's best, the population mean, the elite mean */
    double std_mean;                 /* mean std after the refit */
} t2_cem_stats;
t2_cem_stats t2_cem_last_stats(const t2_cem *c);

/* Set the whole state (for checkpoints): generations done, mean and std [dim], the best [dim] or NULL
 * (none yet) with its fitness and key. T2_ERR_INVALID_ARG if generation is negative, beyond the budget,
 * or a std is not positive and finite. */
t2_status t2_cem_restore(t2_cem *c, int generation, const float *mean, const float *std, const float *best, double best_fitness,
                         double best_tie);

#endif
