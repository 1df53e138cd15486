/* cem-svf — gradient-free SVF training: the cross-entropy method directly over an expert's z, the
 * alternative to REINFORCE that the Transformer² reference code offers.
 *
 * The search is over z ∈ [z_min, z_max]^P (P = every adapted singular value, as expert_z lays them out),
 * with a diagonal Gaussian starting at mean 1 (the base model) and std init_std (plugins/common/cem.c).
 * Each step() is one generation: `population` candidates z (the best of the last generation carried
 * over), each answering the same `batch` training tasks drawn at random (distinct while the split has
 * enough); fitness = the fraction the
 * job's grader accepts ("accuracy"), or the mean grader score ("reward", for graders with partial
 * credit). All population × batch answers go to the host in one generate call (one per distinct system
 * prompt). Where equal fitness decides the best or the elite (a plateau, common with a handful of tasks),
 * the candidates are ranked by the log-likelihood of the reference answers, as the few-shot CEM of the
 * paper does. The elite refits the Gaussian. Every eval_every generations and at the end, the current best
 * candidate answers the validation split greedily; the best by validation accuracy (the base model, z = 1,
 * included) is the expert saved when training ends. A checkpoint after every generation (the Gaussian,
 * the best candidate, the best validated z, the generation and the random stream) lets a restarted daemon
 * resume exactly where it stopped.
 *
 * Settings (JSON object; all optional; unknown keys are an error):
 *   generations 20      the budget (one step per generation)
 *   population 16       candidates per generation        elite_ratio 0.25
 *   init_std 0.05       the Gaussian's starting std       std_floor 0.005
 *   z_min 0, z_max 2    every z is clamped to this box (the reference's max_mult 2)
 *   batch 8             training tasks per generation (the same for every candidate)
 *   tie_break true      equal fitness is broken by the mean log-likelihood of the batch's reference answers
 *   fitness "accuracy"  or "reward" (the mean grader score in [0, 1])
 *   temperature 0       sampling of the training answers (0: greedy, a deterministic fitness)
 *   max_tokens 256      eval_every 5      val_size 64
 *   train_split "train" val_split "validation" (missing: validate on the training split)
 *   seed 0              the trainer's random stream (0: drawn from the job's stream) */
#include "cem.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <t2/plugin.h>

static const t2_host_api *api;

typedef struct settings {
    int generations, population, batch, max_tokens, eval_every, val_size, reward, tie_break;
    double elite_ratio, init_std, std_floor, z_min, z_max, temperature;
    uint64_t seed;
    char train_split[32], val_split[32];
} settings;

typedef struct state {
    settings s;
    char *expert_name, *label, *grader, *settings_text;
    t2_dataset *train, *val;
    int64_t n;              /* z values per expert */
    t2_cem *cem;
    uint64_t rng;           /* the trainer's stream: candidates and batches */
    float *best_z;          /* [n] the best by validation so far */
    double best_acc;        /* its validation accuracy (−1: none yet) */
    const t2_task **batch;  /* [s.batch] the current generation's training tasks */
    t2_host *h;             /* the host of the step running (for the fitness callback) */
    char why[512];
} state;

/* ---------------- settings ---------------- */

static t2_status parse_settings(const char *text, settings *s, char *why, size_t cap) {
    *s = (settings){.generations = 20, .population = 16, .batch = 8, .max_tokens = 256, .eval_every = 5, .val_size = 64,
                    .elite_ratio = 0.25, .init_std = 0.05, .std_floor = 0.005, .z_min = 0, .z_max = 2, .tie_break = 1};
    snprintf(s->train_split, sizeof s->train_split, "train");
    snprintf(s->val_split, sizeof s->val_split, "validation");
    json_error_t je;
    json_t *o = json_loads(text && *text ? text : "{}", 0, &je);
    if (!json_is_object(o)) {
        snprintf(why, cap, "settings are not a JSON object%s%s", o ? "" : ": ", o ? "" : je.text);
        json_decref(o);
        return T2_ERR_INVALID_ARG;
    }
    static const char *ints[] = {"generations", "population", "batch", "max_tokens", "eval_every", "val_size", "seed"};
    static const char *reals[] = {"elite_ratio", "init_std", "std_floor", "z_min", "z_max", "temperature"};
    int *iv[] = {&s->generations, &s->population, &s->batch, &s->max_tokens, &s->eval_every, &s->val_size, NULL};
    double *rv[] = {&s->elite_ratio, &s->init_std, &s->std_floor, &s->z_min, &s->z_max, &s->temperature};
    const char *key;
    json_t *v;
    t2_status st = T2_OK;
    json_object_foreach(o, key, v) {
        size_t i;
        for (i = 0; i < sizeof ints / sizeof ints[0] && strcmp(ints[i], key); i++) {}
        if (i < sizeof ints / sizeof ints[0]) {
            if (!json_is_integer(v) || (iv[i] && llabs((long long)json_integer_value(v)) > 100000000)) {
                snprintf(why, cap, "setting \"%s\" must be an integer", key);
                st = T2_ERR_INVALID_ARG;
                break;
            }
            if (iv[i]) *iv[i] = (int)json_integer_value(v);
            else s->seed = (uint64_t)json_integer_value(v);
            continue;
        }
        for (i = 0; i < sizeof reals / sizeof reals[0] && strcmp(reals[i], key); i++) {}
        if (i < sizeof reals / sizeof reals[0]) {
            if (!json_is_number(v)) {
                snprintf(why, cap, "setting \"%s\" must be a number", key);
                st = T2_ERR_INVALID_ARG;
                break;
            }
            *rv[i] = json_number_value(v);
            continue;
        }
        if (!strcmp(key, "tie_break")) {
            if (!json_is_boolean(v)) {
                snprintf(why, cap, "setting \"tie_break\" must be true or false");
                st = T2_ERR_INVALID_ARG;
                break;
            }
            s->tie_break = json_is_true(v);
            continue;
        }
        if (!strcmp(key, "fitness") && json_is_string(v) &&
            (!strcmp(json_string_value(v), "accuracy") || !strcmp(json_string_value(v), "reward"))) {
            s->reward = !strcmp(json_string_value(v), "reward");
            continue;
        }
        if (!strcmp(key, "fitness")) {
            snprintf(why, cap, "setting \"fitness\" must be \"accuracy\" or \"reward\"");
            st = T2_ERR_INVALID_ARG;
            break;
        }
        if ((!strcmp(key, "train_split") || !strcmp(key, "val_split")) && json_is_string(v) && json_string_length(v) < 32) {
            snprintf(!strcmp(key, "train_split") ? s->train_split : s->val_split, 32, "%s", json_string_value(v));
            continue;
        }
        if (!strcmp(key, "train_split") || !strcmp(key, "val_split"))
            snprintf(why, cap, "setting \"%s\" must be a short string", key);
        else
            snprintf(why, cap, "unknown setting \"%s\"", key);
        st = T2_ERR_INVALID_ARG;
        break;
    }
    json_decref(o);
    if (st != T2_OK) return st;
    if (s->generations < 1 || s->population < 2 || s->population > 1024 || s->batch < 1 || s->batch > 1024 ||
        !(s->elite_ratio > 0 && s->elite_ratio <= 1) || !(s->init_std > 0) || !(s->std_floor >= 0) || !(s->z_min < 1 && s->z_max > 1) ||
        s->temperature < 0 || s->max_tokens < 1 || s->eval_every < 0 || s->val_size < 0) {
        snprintf(why, cap, "settings out of range: need generations >= 1, 2 <= population <= 1024, 1 <= batch <= 1024, "
                           "0 < elite_ratio <= 1, init_std > 0, std_floor >= 0, z_min < 1 < z_max, temperature >= 0, max_tokens >= 1, "
                           "eval_every >= 0, val_size >= 0");
        return T2_ERR_INVALID_ARG;
    }
    return T2_OK;
}

/* ---------------- answering and grading ---------------- */

static double uniform(void *p) { return t2_cem_splitmix_uniform(p); }

/* An expert with z set to z[n]. */
static t2_status expert_with(state *st, t2_host *h, const float *z, t2_hexpert **out) {
    t2_status s = api->expert_new(h, st->label, out);
    if (s != T2_OK) return s;
    memcpy(api->expert_z(*out), z, (size_t)st->n * sizeof *z);
    return T2_OK;
}

/* Answer every task under every expert, grade, and add each answer's correctness (use_score: the grader's
 * score) to sums[its expert]. One generate call per distinct system prompt among the tasks. */
static t2_status answer_all(state *st, t2_host *h, t2_hexpert *const *experts, int ne, const t2_task *const *tasks, int nt, float temperature,
                            int use_score, double *sums) {
    size_t rows = (size_t)ne * (size_t)nt;
    const char **prompts = calloc(rows, sizeof *prompts);
    const t2_hexpert **ex = calloc(rows, sizeof *ex);
    t2_gen_result *res = calloc(rows, sizeof *res);
    int *ri = calloc(rows, sizeof *ri), *rt = calloc(rows, sizeof *rt);
    unsigned char *done = calloc((size_t)nt, 1);
    t2_status s = prompts && ex && res && ri && rt && done ? T2_OK : T2_ERR_NOMEM;
    for (int t0 = 0; s == T2_OK && t0 < nt; t0++) {
        if (done[t0]) continue;
        const char *system = tasks[t0]->system;
        size_t r = 0;
        for (int t = t0; t < nt; t++) {
            if (done[t] || strcmp(tasks[t]->system, system)) continue;
            done[t] = 1;
            for (int i = 0; i < ne; i++, r++) {
                prompts[r] = tasks[t]->prompt;
                ex[r] = experts[i];
                ri[r] = i;
                rt[r] = t;
            }
        }
        t2_gen_params gp = {.max_tokens = st->s.max_tokens, .temperature = temperature, .top_p = 1, .chat = 1,
                            .system = *system ? system : NULL};
        if ((s = api->generate(h, prompts, ex, (int)r, &gp, res)) != T2_OK) {
            snprintf(st->why, sizeof st->why, "generate failed (status %d)", (int)s);
            break;
        }
        for (size_t j = 0; j < r; j++) {
            t2_verdict v;
            if (s == T2_OK && (s = api->grade(h, *st->grader ? st->grader : NULL, tasks[rt[j]], res[j].text ? res[j].text : "", &v)) != T2_OK)
                snprintf(st->why, sizeof st->why, "grading task %s failed (status %d)", tasks[rt[j]]->id, (int)s);
            else if (s == T2_OK) sums[ri[j]] += use_score ? v.score : (v.correct != 0);
            api->gen_result_clear(&res[j]);
        }
    }
    free(prompts);
    free(ex);
    free(res);
    free(ri);
    free(rt);
    free(done);
    return s;
}

/* CEM fitness: every candidate answers the same random batch of training tasks. */
static t2_status fitness(void *user, const float *pop, int n, int dim, double *fit) {
    state *st = user;
    t2_host *h = st->h;
    (void)dim;
    int B = st->s.batch;
    size_t n_train = api->dataset_size(st->train);
    const t2_task **tasks = st->batch;
    t2_hexpert **ex = calloc((size_t)n, sizeof *ex);
    t2_status s = ex ? T2_OK : T2_ERR_NOMEM;
    /* the batch: distinct tasks while the training split has enough (a partial Fisher–Yates shuffle of the
     * indices), then with repetition */
    size_t *idx = s == T2_OK ? malloc(n_train * sizeof *idx) : NULL;
    if (s == T2_OK && !idx) s = T2_ERR_NOMEM;
    for (size_t i = 0; s == T2_OK && i < n_train; i++) idx[i] = i;
    for (int i = 0; s == T2_OK && i < B; i++) {
        size_t k = (size_t)i % n_train, left = n_train - k;
        size_t r = k + (size_t)(uniform(&st->rng) * (double)left);
        if (r >= n_train) r = n_train - 1;
        size_t t = idx[k];
        idx[k] = idx[r];
        idx[r] = t;
        tasks[i] = api->dataset_task(st->train, idx[k]);
    }
    free(idx);
    for (int i = 0; s == T2_OK && i < n; i++) s = expert_with(st, h, pop + (size_t)i * st->n, &ex[i]);
    for (int i = 0; i < n; i++) fit[i] = 0;
    if (s == T2_OK) s = answer_all(st, h, ex, n, tasks, B, (float)st->s.temperature, st->s.reward, fit);
    for (int i = 0; i < n; i++) fit[i] /= B;
    for (int i = 0; ex && i < n; i++) api->expert_free(ex[i]);
    free(ex);
    return s;
}

/* CEM's second key, asked only for candidates whose equal fitness decides something (all of them when a
 * plateau makes every candidate score the same): the mean per-token log-likelihood of the batch's
 * reference answers (task->solution, else task->answer) under the candidate. */
static t2_status tie(void *user, const float *const *xs, int n, int dim, double *out) {
    state *st = user;
    (void)dim;
    t2_status s = T2_OK;
    for (int i = 0; s == T2_OK && i < n; i++) {
        t2_hexpert *e = NULL;
        if ((s = expert_with(st, st->h, xs[i], &e)) != T2_OK) break;
        double sum = 0;
        int used = 0;
        for (int t = 0; s == T2_OK && t < st->s.batch; t++) {
            const t2_task *task = st->batch[t];
            const char *ref = *task->solution ? task->solution : task->answer;
            if (!*ref || !*task->prompt) continue;
            double lp = 0;
            int nt = 0;
            if ((s = api->score(st->h, task->prompt, ref, e, 1, *task->system ? task->system : NULL, &lp, &nt)) != T2_OK)
                snprintf(st->why, sizeof st->why, "scoring task %s failed (status %d)", task->id, (int)s);
            else {
                sum += lp / (nt > 0 ? nt : 1);
                used++;
            }
        }
        api->expert_free(e);
        out[i] = used ? sum / used : 0;
    }
    return s;
}

/* Greedy validation accuracy of z. */
static t2_status validate(state *st, t2_host *h, const float *z, double *acc) {
    size_t n = api->dataset_size(st->val);
    if (st->s.val_size > 0 && (size_t)st->s.val_size < n) n = (size_t)st->s.val_size;
    *acc = NAN;
    if (n == 0) return T2_OK;
    const t2_task **tasks = calloc(n, sizeof *tasks);
    t2_hexpert *e = NULL;
    t2_status s = tasks ? expert_with(st, h, z, &e) : T2_ERR_NOMEM;
    for (size_t i = 0; s == T2_OK && i < n; i++) tasks[i] = api->dataset_task(st->val, i);
    double correct = 0;
    if (s == T2_OK) s = answer_all(st, h, &e, 1, tasks, (int)n, 0, 0, &correct);   /* correct answers, whatever the fitness */
    api->expert_free(e);
    free(tasks);
    *acc = correct / (double)n;
    return s;
}

/* ---------------- checkpoints ---------------- */

/* "T2CS" v1: header, then mean, std, the CEM's best candidate, the best validated z (each [n] floats). */
typedef struct ck_head {
    char magic[4];
    uint32_t version;
    int64_t generation, n;
    uint64_t rng;
    double best_acc, cem_fit, cem_tie;
    int32_t has_cem_best, pad;
} ck_head;

static t2_status save_checkpoint(state *st, t2_host *h) {
    size_t zb = (size_t)st->n * sizeof(float), len = sizeof(ck_head) + 4 * zb;
    char *b = malloc(len);
    if (!b) return T2_ERR_NOMEM;
    double fit, tie;
    const float *cb = t2_cem_best(st->cem, &fit, &tie);
    ck_head hd = {{'T', '2', 'C', 'S'}, 1, t2_cem_generation(st->cem), st->n, st->rng, st->best_acc, fit, tie, cb != NULL, 0};
    memcpy(b, &hd, sizeof hd);
    memcpy(b + sizeof hd, t2_cem_mean(st->cem), zb);
    memcpy(b + sizeof hd + zb, t2_cem_std(st->cem), zb);
    if (cb) memcpy(b + sizeof hd + 2 * zb, cb, zb);
    else memset(b + sizeof hd + 2 * zb, 0, zb);
    memcpy(b + sizeof hd + 3 * zb, st->best_z, zb);
    t2_status s = api->checkpoint_save(h, b, len);
    free(b);
    return s;
}

static t2_status restore_checkpoint(state *st, const void *ck, size_t len, char *why, size_t cap) {
    ck_head hd;
    size_t zb = (size_t)st->n * sizeof(float);
    if (len < sizeof hd) return snprintf(why, cap, "checkpoint truncated (%zu bytes)", len), T2_ERR_FORMAT;
    memcpy(&hd, ck, sizeof hd);
    if (memcmp(hd.magic, "T2CS", 4) || hd.version != 1) return snprintf(why, cap, "not a cem-svf checkpoint (v1)"), T2_ERR_VERSION;
    if (hd.n != st->n)
        return snprintf(why, cap, "checkpoint is for another model (%lld values of z, not %lld)", (long long)hd.n, (long long)st->n),
               T2_ERR_SHAPE;
    if (len != sizeof hd + 4 * zb)
        return snprintf(why, cap, "checkpoint has %zu bytes, expected %zu", len, sizeof hd + 4 * zb), T2_ERR_FORMAT;
    const char *p = (const char *)ck + sizeof hd;
    float *mean = malloc(zb), *std = malloc(zb), *best = malloc(zb);
    t2_status s = mean && std && best ? T2_OK : T2_ERR_NOMEM;
    if (s == T2_OK) {
        memcpy(mean, p, zb);
        memcpy(std, p + zb, zb);
        memcpy(best, p + 2 * zb, zb);
        if (hd.generation < 0 || hd.generation > st->s.generations) {
            snprintf(why, cap, "checkpoint is at generation %lld, beyond this job's %d", (long long)hd.generation, st->s.generations);
            s = T2_ERR_RANGE;
        } else if ((s = t2_cem_restore(st->cem, (int)hd.generation, mean, std, hd.has_cem_best ? best : NULL, hd.cem_fit,
                                       hd.cem_tie)) != T2_OK) {
            snprintf(why, cap, "checkpoint holds an invalid search state");
        }
    }
    if (s == T2_OK) {
        memcpy(st->best_z, p + 3 * zb, zb);
        st->rng = hd.rng;
        st->best_acc = hd.best_acc;
    }
    free(mean);
    free(std);
    free(best);
    return s;
}

/* ---------------- the trainer ---------------- */

static void state_free(state *st) {
    if (!st) return;
    if (st->train) api->dataset_close(st->train);
    if (st->val) api->dataset_close(st->val);
    t2_cem_free(st->cem);
    free(st->batch);
    free(st->best_z);
    free(st->expert_name);
    free(st->label);
    free(st->grader);
    free(st->settings_text);
    free(st);
}

static t2_status start(t2_host *h, const t2_job_spec *job, const void *ck, size_t ck_len, void **out) {
    state *st = calloc(1, sizeof *st);
    char why[512] = "";
    if (!st) return T2_ERR_NOMEM;
    t2_status s = parse_settings(job->settings_json, &st->s, why, sizeof why);
    st->expert_name = strdup(job->expert_name ? job->expert_name : "");
    st->label = strdup(job->label ? job->label : "");
    st->grader = strdup(job->grader ? job->grader : "");
    st->settings_text = strdup(job->settings_json && *job->settings_json ? job->settings_json : "{}");
    st->best_acc = -1;
    if (s == T2_OK && (!st->expert_name || !st->label || !st->grader || !st->settings_text)) s = T2_ERR_NOMEM;
    if (s == T2_OK && !job->dataset) {
        s = T2_ERR_INVALID_ARG;
        snprintf(why, sizeof why, "the job names no dataset");
    }
    if (s == T2_OK && (s = api->dataset_open(h, job->dataset, st->s.train_split, &st->train)) != T2_OK)
        snprintf(why, sizeof why, "dataset %s, split %s cannot be opened (status %d)", job->dataset, st->s.train_split, (int)s);
    if (s == T2_OK && api->dataset_size(st->train) == 0) {
        s = T2_ERR_INVALID_ARG;
        snprintf(why, sizeof why, "dataset %s has no %s tasks", job->dataset, st->s.train_split);
    }
    if (s == T2_OK && api->dataset_open(h, job->dataset, st->s.val_split, &st->val) != T2_OK) {
        api->log(h, T2_LOG_WARN, "cem-svf: no %s split in %s: validating on the training split", st->s.val_split, job->dataset);
        if ((s = api->dataset_open(h, job->dataset, st->s.train_split, &st->val)) != T2_OK)
            snprintf(why, sizeof why, "dataset %s cannot be reopened", job->dataset);
    }
    t2_hexpert *probe = NULL;
    if (s == T2_OK && (s = api->expert_new(h, st->label, &probe)) != T2_OK)
        snprintf(why, sizeof why, "cannot create an expert (status %d)", (int)s);
    if (s == T2_OK) {
        st->n = api->expert_n_params(probe);
        if (st->n < 1 || st->n > ((int64_t)1 << 31) / st->s.population) {
            s = T2_ERR_UNSUPPORTED;
            snprintf(why, sizeof why, "the model's experts have %lld values of z: too many for a population of %d", (long long)st->n,
                     st->s.population);
        }
    }
    api->expert_free(probe);
    if (s == T2_OK) {
        t2_cem_params cp = t2_cem_default_params((int)st->n);
        cp.population = st->s.population;
        cp.elite_ratio = st->s.elite_ratio;
        cp.generations = st->s.generations;
        cp.lo = (float)st->s.z_min;
        cp.hi = (float)st->s.z_max;
        cp.init_mean = 1;
        cp.init_std = (float)st->s.init_std;
        cp.std_floor = (float)st->s.std_floor;
        st->best_z = malloc((size_t)st->n * sizeof *st->best_z);
        st->batch = calloc((size_t)st->s.batch, sizeof *st->batch);
        if (!st->batch) st->best_z = (free(st->best_z), NULL);
        if (!st->best_z || !(st->cem = t2_cem_new(&cp, uniform, &st->rng, &s))) {
            s = st->best_z ? s : T2_ERR_NOMEM;
            snprintf(why, sizeof why, "the optimiser cannot start (status %d)", (int)s);
        } else {
            for (int64_t i = 0; i < st->n; i++) st->best_z[i] = 1;
            st->rng = st->s.seed ? st->s.seed : api->rand_u64(h);
        }
    }
    if (s == T2_OK && ck && ck_len) {
        if ((s = restore_checkpoint(st, ck, ck_len, why, sizeof why)) == T2_OK)
            api->log(h, T2_LOG_INFO, "cem-svf: resumed at generation %d (best validation accuracy %.3f)", t2_cem_generation(st->cem),
                     st->best_acc);
    }
    if (s != T2_OK) {
        api->log(h, T2_LOG_ERROR, "cem-svf: %s", why[0] ? why : "cannot start");
        state_free(st);
        return s;
    }
    api->log(h, T2_LOG_INFO, "cem-svf: %d generations of %d candidates on %d tasks each, %lld values of z, %zu training tasks",
             st->s.generations, st->s.population, st->s.batch, (long long)st->n, api->dataset_size(st->train));
    *out = st;
    return T2_OK;
}

/* Validate z and keep it if it beats the best so far. */
static t2_status consider(state *st, t2_host *h, const float *z, double *acc) {
    t2_status s = validate(st, h, z, acc);
    if (s == T2_OK && !isnan(*acc) && *acc > st->best_acc) {
        st->best_acc = *acc;
        memcpy(st->best_z, z, (size_t)st->n * sizeof *z);
    }
    return s;
}

static t2_status finish(state *st, t2_host *h) {
    t2_hexpert *e = NULL;
    t2_status s = expert_with(st, h, st->best_z, &e);
    if (s != T2_OK) return s;
    json_error_t je;
    json_t *settings = json_loads(st->settings_text, 0, &je);
    json_t *meta = json_pack("{s:s, s:i, s:i, s:f, s:o}", "trainer", "cem-svf", "generations", t2_cem_generation(st->cem), "population",
                             st->s.population, "validation_accuracy", st->best_acc < 0 ? 0.0 : st->best_acc, "settings",
                             settings ? settings : json_object());
    char *text = meta ? json_dumps(meta, 0) : NULL;   /* "key": value, as the other trainers write it */
    json_decref(meta);
    s = text ? api->expert_save(h, e, st->expert_name, st->label, text) : T2_ERR_NOMEM;
    if (s != T2_OK) api->log(h, T2_LOG_ERROR, "cem-svf: the expert %s cannot be saved (status %d)", st->expert_name, (int)s);
    free(text);
    api->expert_free(e);
    return s;
}

static t2_status step(void *p, t2_host *h, int *done) {
    state *st = p;
    *done = 0;
    st->h = h;
    st->why[0] = 0;
    t2_status s = T2_OK;
    if (st->best_acc < 0) {   /* the base model (z = 1) is a candidate too */
        double acc;
        if ((s = consider(st, h, st->best_z, &acc)) != T2_OK) goto out;
        t2_progress pr = {.step = 0, .total = st->s.generations, .reward = NAN, .accuracy = acc, .loss = NAN, .message = "base validation"};
        api->progress(h, &pr);
        if (isnan(acc)) st->best_acc = 0;
    }
    if (t2_cem_done(st->cem)) {
        if ((s = finish(st, h)) == T2_OK) *done = 1;
        goto out;
    }
    if (api->cancelled(h)) {
        s = T2_ERR_INTERNAL;
        snprintf(st->why, sizeof st->why, "cancelled");
        goto out;
    }
    if ((s = t2_cem_step(st->cem, fitness, st->s.tie_break ? tie : NULL, st)) != T2_OK) goto out;
    int g = t2_cem_generation(st->cem);
    double acc = NAN;
    if ((st->s.eval_every > 0 && g % st->s.eval_every == 0) || g == st->s.generations)
        if ((s = consider(st, h, t2_cem_best(st->cem, NULL, NULL), &acc)) != T2_OK) goto out;
    t2_cem_stats cs = t2_cem_last_stats(st->cem);
    char msg[128];
    snprintf(msg, sizeof msg, "fitness best %.3f, mean %.3f, elite %.3f; std %.4f", cs.best, cs.mean, cs.elite_mean, cs.std_mean);
    t2_progress pr = {.step = g, .total = st->s.generations, .reward = cs.best, .accuracy = acc, .loss = NAN, .message = msg};
    api->progress(h, &pr);
    s = save_checkpoint(st, h);
out:
    if (s != T2_OK && st->why[0]) api->log(h, T2_LOG_ERROR, "cem-svf: %s", st->why);
    st->h = NULL;
    return s;
}

static void stop(void *p) { state_free(p); }

static const t2_trainer_ops OPS = {.struct_size = sizeof(t2_trainer_ops), .start = start, .step = step, .stop = stop};

static const t2_plugin PLUGIN = {
    .abi_major = T2_ABI_MAJOR,
    .abi_minor = T2_ABI_MINOR,
    .struct_size = sizeof(t2_plugin),
    .kind = T2_PLUGIN_TRAINER,
    .name = "cem-svf",
    .version = "1.0",
    .description = "SVF without gradients: the cross-entropy method over z, fitness from the job's grader, best expert by validation kept",
    .ops = &OPS,
};

T2_PLUGIN_EXPORT const t2_plugin *t2_plugin_entry(const t2_host_api *host) {
    if (!t2_host_api_compatible(host) || !T2_HAS_MEMBER(host, checkpoint_save)) return NULL;
    api = host;
    return &PLUGIN;
}
