/* cem — few-shot dispatch (paper §3.3, "few-shot adaptation"): for a task with a handful of solved
 * examples, the cross-entropy method searches the mixture weights α of the tenant's experts,
 * z' = Σₖ αₖ zₖ (one α per expert, or one per expert per matrix), to maximise the accuracy of the
 * mixture's greedy answers on those examples. The result is stored per task id (kv "cem/<task id>") and
 * later queries of that task reuse it without searching.
 *
 * The search (plugins/common/cem.c): population 32, elite ratio 0.2, α clamped to [0, 1], the best of
 * each generation carried into the next, a generation budget. Fitness of a candidate α = the fraction of
 * the examples whose greedy answer under the mixture (chat template, the example's system prompt) the
 * task's grader accepts. All population × examples answers of a generation go to the host in one generate
 * call (one per distinct system prompt), so they share the engine's batch. Candidates with equal accuracy
 * where it matters (the best, the elite boundary) are told apart by the mean per-token log-likelihood of
 * the examples' correct answers (task->solution, else task->answer) under the mixture.
 *
 * Request: task_id (required), examples (a dataset spec; needed unless the task has a stored α).
 * Settings (the request's dispatch settings over the plugin's config; all optional, unknown keys are an
 * error):
 *   split null        the examples' split (null: every task of the spec)
 *   n 10              examples used (the first n)
 *   experts [...]     names of the experts to mix (default: every SVF expert the tenant may use, except the
 *                     classification expert, labelled "classifier")
 *   per_matrix false  one α per expert per adapted matrix
 *   generations 10    the budget          population 32    elite_ratio 0.2
 *   init_mean 0.5     init_std 0.3        std_floor 0.02   (the Gaussian over α)
 *   max_tokens 0      answer length for the examples (0: the host's default)
 *   seed 0            the search's random seed (0: a hash of the task id, so a search is reproducible)
 *   refresh false     search again even when an α is stored for the task
 *
 * The decision: the mixture, label "cem", detail {"experts": [...], "alpha": [...], "per_matrix": b,
 * "fitness": accuracy, "generations": g, "examples": n, "cached": b} (per-matrix α too long for the
 * detail is summarised as "alpha_mean" per expert; the full α stays in the store). On failure the detail
 * is {"error": "..."} and the same message is logged. */
#include "cem.h"
#include "classify.h"

#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <t2/plugin.h>

static const t2_host_api *api;

#define MAX_EXPERTS 64
#define MAX_EXAMPLES 256

typedef struct settings {
    char split[32];
    int has_split, n, per_matrix, generations, population, max_tokens, refresh;
    double elite_ratio, init_mean, init_std, std_floor;
    uint64_t seed;
    json_t *experts;   /* borrowed from the parsed settings object, or NULL */
} settings;

typedef struct state {
    char *config;
} state;

/* Everything one search needs, shared by the CEM callbacks. */
typedef struct search {
    t2_host *h;
    const settings *s;
    t2_hexpert *experts[MAX_EXPERTS];
    char *names[MAX_EXPERTS];
    int k, nm, dim, per_matrix;
    t2_dataset *ds;
    const t2_task *ex[MAX_EXAMPLES];
    int n_ex;
    char why[512];
} search;

/* ---------------- errors ---------------- */

static t2_status fail(t2_host *h, t2_dispatch_decision *out, t2_status st, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static t2_status fail(t2_host *h, t2_dispatch_decision *out, t2_status st, const char *fmt, ...) {
    char msg[700];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    api->log(h, T2_LOG_WARN, "cem: %s", msg);
    json_t *o = json_pack("{s:s}", "error", msg);
    char *d = o ? json_dumps(o, JSON_COMPACT) : NULL;
    snprintf(out->detail, sizeof out->detail, "%s", d ? d : "{}");
    free(d);
    json_decref(o);
    return st;
}

/* ---------------- settings ---------------- */

static t2_status parse_settings(json_t *o, settings *s, char *why, size_t cap) {
    *s = (settings){.n = 10, .generations = 10, .population = 32, .elite_ratio = 0.2, .init_mean = 0.5, .init_std = 0.3,
                    .std_floor = 0.02};
    static const char *known[] = {"split", "n", "experts", "per_matrix", "generations", "population", "elite_ratio", "init_mean",
                                  "init_std", "std_floor", "max_tokens", "seed", "refresh"};
    const char *key;
    json_t *v;
    json_object_foreach(o, key, v) {
        size_t i = 0;
        while (i < sizeof known / sizeof known[0] && strcmp(known[i], key)) i++;
        if (i == sizeof known / sizeof known[0]) return snprintf(why, cap, "unknown setting \"%s\"", key), T2_ERR_INVALID_ARG;
        int is_int = !strcmp(key, "n") || !strcmp(key, "generations") || !strcmp(key, "population") || !strcmp(key, "max_tokens") ||
                     !strcmp(key, "seed");
        if (!strcmp(key, "split")) {
            if (json_is_null(v)) continue;
            if (!json_is_string(v) || json_string_length(v) >= sizeof s->split)
                return snprintf(why, cap, "setting \"split\" must be a short string"), T2_ERR_INVALID_ARG;
            snprintf(s->split, sizeof s->split, "%s", json_string_value(v));
            s->has_split = 1;
        } else if (!strcmp(key, "experts")) {
            if (!json_is_array(v) || json_array_size(v) < 1 || json_array_size(v) > MAX_EXPERTS)
                return snprintf(why, cap, "setting \"experts\" must be an array of 1 to %d expert names", MAX_EXPERTS), T2_ERR_INVALID_ARG;
            for (size_t j = 0; j < json_array_size(v); j++)
                if (!json_is_string(json_array_get(v, j)) || !*json_string_value(json_array_get(v, j)))
                    return snprintf(why, cap, "setting \"experts\": item %zu is not an expert name", j), T2_ERR_INVALID_ARG;
            s->experts = v;
        } else if (!strcmp(key, "per_matrix") || !strcmp(key, "refresh")) {
            if (!json_is_boolean(v)) return snprintf(why, cap, "setting \"%s\" must be true or false", key), T2_ERR_INVALID_ARG;
            *(!strcmp(key, "per_matrix") ? &s->per_matrix : &s->refresh) = json_is_true(v);
        } else if (is_int) {
            if (!json_is_integer(v)) return snprintf(why, cap, "setting \"%s\" must be an integer", key), T2_ERR_INVALID_ARG;
            json_int_t x = json_integer_value(v);
            if (!strcmp(key, "seed")) s->seed = (uint64_t)x;
            else if (x < -1000000 || x > 1000000) return snprintf(why, cap, "setting \"%s\" is out of range", key), T2_ERR_INVALID_ARG;
            else *(!strcmp(key, "n") ? &s->n : !strcmp(key, "generations") ? &s->generations
                   : !strcmp(key, "population") ? &s->population : &s->max_tokens) = (int)x;
        } else {
            if (!json_is_number(v)) return snprintf(why, cap, "setting \"%s\" must be a number", key), T2_ERR_INVALID_ARG;
            *(!strcmp(key, "elite_ratio") ? &s->elite_ratio : !strcmp(key, "init_mean") ? &s->init_mean
              : !strcmp(key, "init_std") ? &s->init_std : &s->std_floor) = json_number_value(v);
        }
    }
    if (s->n < 1 || s->n > MAX_EXAMPLES || s->generations < 1 || s->generations > 1000 || s->population < 2 || s->population > 1024 ||
        !(s->elite_ratio > 0 && s->elite_ratio <= 1) || !(s->init_mean >= 0 && s->init_mean <= 1) || !(s->init_std > 0) ||
        !(s->std_floor >= 0) || s->max_tokens < 0)
        return snprintf(why, cap, "settings out of range: need 1 <= n <= %d, 1 <= generations <= 1000, 2 <= population <= 1024, "
                                  "0 < elite_ratio <= 1, 0 <= init_mean <= 1, init_std > 0, std_floor >= 0, max_tokens >= 0",
                        MAX_EXAMPLES),
               T2_ERR_INVALID_ARG;
    return T2_OK;
}

/* The plugin's config with the request's settings laid over it. */
static json_t *merged_settings(const state *st, const char *request, char *why, size_t cap) {
    json_error_t je;
    json_t *base = json_loads(st->config, 0, &je);
    json_t *req = json_loads(request && *request ? request : "{}", 0, &je);
    if (!json_is_object(req)) {
        snprintf(why, cap, "settings are not a JSON object: %s", req ? "not an object" : je.text);
        json_decref(base);
        json_decref(req);
        return NULL;
    }
    if (!json_is_object(base)) {   /* checked by init: only out of memory gets here */
        json_decref(base);
        return req;
    }
    json_object_update(base, req);
    json_decref(req);
    return base;
}

/* ---------------- the search ---------------- */

static void search_free(search *se) {
    for (int i = 0; i < se->k; i++) {
        api->expert_free(se->experts[i]);
        free(se->names[i]);
    }
    se->k = 0;
    if (se->ds) api->dataset_close(se->ds);
    se->ds = NULL;
}

static t2_status mix_rows(search *se, const float *pop, int n, t2_hexpert **mix) {
    for (int i = 0; i < n; i++) mix[i] = NULL;
    for (int i = 0; i < n; i++) {
        t2_status st = api->expert_mix(se->h, (const t2_hexpert *const *)se->experts, pop + (size_t)i * se->dim, se->k, se->per_matrix,
                                       &mix[i]);
        if (st != T2_OK) return snprintf(se->why, sizeof se->why, "cannot mix the experts (status %d)", (int)st), st;
    }
    return T2_OK;
}

static void free_rows(t2_hexpert **mix, int n) {
    for (int i = 0; i < n; i++) api->expert_free(mix[i]);
}

/* Fitness: accuracy of the greedy answers to the examples under each candidate's mixture. */
static t2_status eval(void *user, const float *pop, int n, int dim, double *fit) {
    search *se = user;
    (void)dim;
    if (api->cancelled(se->h)) return snprintf(se->why, sizeof se->why, "cancelled"), T2_ERR_INTERNAL;
    t2_hexpert **mix = calloc((size_t)n, sizeof *mix);
    size_t rows = (size_t)n * (size_t)se->n_ex;
    const char **prompts = calloc(rows, sizeof *prompts);
    const t2_hexpert **ex = calloc(rows, sizeof *ex);
    t2_gen_result *res = calloc(rows, sizeof *res);
    int *correct = calloc((size_t)n, sizeof *correct), *row_i = calloc(rows, sizeof *row_i), *row_t = calloc(rows, sizeof *row_t);
    unsigned char *done = calloc((size_t)se->n_ex, 1);
    t2_status st = mix && prompts && ex && res && correct && row_i && row_t && done ? T2_OK : T2_ERR_NOMEM;
    if (st == T2_OK) st = mix_rows(se, pop, n, mix);
    /* one generate call per distinct system prompt (in practice: one) */
    for (int t0 = 0; st == T2_OK && t0 < se->n_ex; t0++) {
        if (done[t0]) continue;
        const char *system = se->ex[t0]->system;
        size_t r = 0;
        for (int t = t0; t < se->n_ex; t++) {
            if (done[t] || strcmp(se->ex[t]->system, system)) continue;
            done[t] = 1;
            for (int i = 0; i < n; i++, r++) {
                prompts[r] = se->ex[t]->prompt;
                ex[r] = mix[i];
                row_i[r] = i;
                row_t[r] = t;
            }
        }
        t2_gen_params gp = {.max_tokens = se->s->max_tokens, .temperature = 0, .top_p = 1, .seed = 1, .chat = 1,
                            .system = *system ? system : NULL};
        if ((st = api->generate(se->h, prompts, ex, (int)r, &gp, res)) != T2_OK) {
            snprintf(se->why, sizeof se->why, "generating the examples' answers failed (status %d)", (int)st);
            break;
        }
        for (size_t j = 0; j < r; j++) {
            t2_verdict v;
            const t2_task *task = se->ex[row_t[j]];
            if (st == T2_OK && (st = api->grade(se->h, NULL, task, res[j].text ? res[j].text : "", &v)) != T2_OK)
                snprintf(se->why, sizeof se->why, "grading example %s with grader \"%s\" failed (status %d)", task->id, task->grader, (int)st);
            else if (st == T2_OK) correct[row_i[j]] += v.correct != 0;
            api->gen_result_clear(&res[j]);
        }
    }
    for (int i = 0; st == T2_OK && i < n; i++) fit[i] = (double)correct[i] / se->n_ex;
    if (mix) free_rows(mix, n);
    free(mix);
    free(prompts);
    free(ex);
    free(res);
    free(correct);
    free(row_i);
    free(row_t);
    free(done);
    return st;
}

/* Second key: mean over the examples of the per-token log-likelihood of the correct answer. */
static t2_status tie(void *user, const float *const *xs, int n, int dim, double *out) {
    search *se = user;
    t2_status st = T2_OK;
    for (int i = 0; st == T2_OK && i < n; i++) {
        if (api->cancelled(se->h)) return snprintf(se->why, sizeof se->why, "cancelled"), T2_ERR_INTERNAL;
        t2_hexpert *mix = NULL;
        if ((st = mix_rows(se, xs[i], 1, &mix)) != T2_OK) break;
        (void)dim;
        double sum = 0;
        int used = 0;
        for (int t = 0; st == T2_OK && t < se->n_ex; t++) {
            const t2_task *task = se->ex[t];
            const char *ref = *task->solution ? task->solution : task->answer;
            if (!*ref || !*task->prompt) continue;
            double lp = 0;
            int nt = 0;
            st = api->score(se->h, task->prompt, ref, mix, 1, *task->system ? task->system : NULL, &lp, &nt);
            if (st != T2_OK) snprintf(se->why, sizeof se->why, "scoring example %s failed (status %d)", task->id, (int)st);
            else {
                sum += lp / (nt > 0 ? nt : 1);
                used++;
            }
        }
        api->expert_free(mix);
        out[i] = used ? sum / used : 0;
    }
    return st;
}

static double uniform(void *p) { return t2_cem_splitmix_uniform(p); }

static uint64_t fnv1a(const char *s) {
    uint64_t x = 0xcbf29ce484222325ULL;
    for (; *s; s++) x = (x ^ (unsigned char)*s) * 0x100000001b3ULL;
    return x;
}

/* The experts to mix: the settings' list, or every SVF expert the tenant may use (registry order) except the
 * classification expert (a LoRA cannot be mixed; the classifier answers the first pass, not tasks). */
static t2_status open_experts(search *se, char *why, size_t cap) {
    json_t *list = se->s->experts, *all = NULL;
    if (!list) {
        char *text = NULL;
        t2_status st = api->experts_json(se->h, &text);
        if (st != T2_OK) return snprintf(why, cap, "cannot list the experts (status %d)", (int)st), st;
        all = json_loads(text, 0, NULL);
        api->free(text);
        if (!json_is_array(all)) {
            json_decref(all);
            return snprintf(why, cap, "the host's expert list is not a JSON array"), T2_ERR_FORMAT;
        }
        list = json_array();
        for (size_t i = 0; i < json_array_size(all); i++) {
            json_t *e = json_array_get(all, i), *name = json_object_get(e, "name");
            const char *kind = json_string_value(json_object_get(e, "kind")), *label = json_string_value(json_object_get(e, "label"));
            if ((kind && strcmp(kind, "svf")) || (label && !strcmp(label, T2_CLASSIFY_EXPERT_LABEL))) continue;
            if (json_is_string(name)) json_array_append(list, name);
        }
        json_decref(all);
        if (json_array_size(list) == 0) {
            json_decref(list);
            return snprintf(why, cap, "no experts to mix: the tenant has none (train or import one, or use another dispatch)"),
                   T2_ERR_NOT_FOUND;
        }
        if (json_array_size(list) > MAX_EXPERTS) {
            json_decref(list);
            return snprintf(why, cap, "too many experts to mix (more than %d): restrict them with the \"experts\" setting", MAX_EXPERTS),
                   T2_ERR_INVALID_ARG;
        }
    } else {
        json_incref(list);
    }
    t2_status st = T2_OK;
    for (size_t i = 0; st == T2_OK && i < json_array_size(list); i++) {
        const char *name = json_string_value(json_array_get(list, i));
        for (int j = 0; j < se->k; j++)
            if (!strcmp(se->names[j], name)) st = T2_ERR_INVALID_ARG;
        if (st != T2_OK) {
            snprintf(why, cap, "expert \"%s\" is listed twice", name);
            break;
        }
        if ((st = api->expert_open(se->h, name, &se->experts[se->k])) != T2_OK) {
            snprintf(why, cap, "expert \"%s\" cannot be opened (%s)", name, st == T2_ERR_NOT_FOUND ? "no such expert for this tenant" : "error");
            break;
        }
        if (!(se->names[se->k] = strdup(name))) {
            api->expert_free(se->experts[se->k]);
            st = T2_ERR_NOMEM;
            break;
        }
        se->k++;
    }
    json_decref(list);
    return st;
}

static t2_status open_examples(search *se, const char *spec, char *why, size_t cap) {
    const char *split = se->s->has_split ? se->s->split : NULL;
    t2_status st = api->dataset_open(se->h, spec, split, &se->ds);
    if (st != T2_OK)
        return snprintf(why, cap, "examples \"%s\"%s%s%s cannot be opened (status %d)", spec, split ? " (split " : "", split ? split : "",
                        split ? ")" : "", (int)st),
               st;
    size_t n = api->dataset_size(se->ds);
    if (n == 0) return snprintf(why, cap, "examples \"%s\" hold no tasks", spec), T2_ERR_INVALID_ARG;
    se->n_ex = (int)(n < (size_t)se->s->n ? n : (size_t)se->s->n);
    for (int i = 0; i < se->n_ex; i++)
        if (!(se->ex[i] = api->dataset_task(se->ds, (size_t)i))) return snprintf(why, cap, "example %d is missing", i), T2_ERR_FORMAT;
    return T2_OK;
}

/* ---------------- the stored result and the decision ---------------- */

/* {"version": 1, "experts": [...], "per_matrix": b, "n_matrices": m, "alpha": [...], "fitness": f,
 *  "generations": g, "examples": n} */
static char *record_json(const search *se, const float *alpha, double fitness, int generations) {
    json_t *names = json_array(), *a = json_array();
    for (int i = 0; i < se->k; i++) json_array_append_new(names, json_string(se->names[i]));
    for (int i = 0; i < se->dim; i++) json_array_append_new(a, json_real(alpha[i]));
    json_t *o = json_pack("{s:i, s:o, s:b, s:i, s:o, s:f, s:i, s:i}", "version", 1, "experts", names, "per_matrix", se->per_matrix,
                          "n_matrices", se->nm, "alpha", a, "fitness", fitness, "generations", generations, "examples", se->n_ex);
    char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    return text;
}

static void fill_detail(const search *se, const float *alpha, double fitness, int generations, int cached, t2_dispatch_decision *out) {
    json_t *names = json_array(), *a = json_array();
    for (int i = 0; i < se->k; i++) json_array_append_new(names, json_string(se->names[i]));
    for (int i = 0; i < se->dim; i++) json_array_append_new(a, json_real(round(alpha[i] * 1e4) / 1e4));
    json_t *o = json_pack("{s:o, s:o, s:b, s:f, s:i, s:i, s:b}", "experts", names, "alpha", a, "per_matrix", se->per_matrix, "fitness",
                          fitness, "generations", generations, "examples", se->n_ex, "cached", cached);
    char *text = o ? json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(6)) : NULL;
    if (text && strlen(text) >= sizeof out->detail) {   /* per-matrix α of a big model: one mean per expert */
        free(text);
        json_t *mean = json_array();
        for (int i = 0; i < se->k; i++) {
            double s = 0;
            for (int j = 0; j < se->nm; j++) s += alpha[i * se->nm + j];
            json_array_append_new(mean, json_real(round(s / se->nm * 1e4) / 1e4));
        }
        json_object_del(o, "alpha");
        json_object_set_new(o, "alpha_mean", mean);
        text = json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(6));
    }
    snprintf(out->detail, sizeof out->detail, "%s", text && strlen(text) < sizeof out->detail ? text : "{\"label\": \"cem\"}");
    free(text);
    json_decref(o);
    snprintf(out->label, sizeof out->label, "cem");
}

/* Reuse a stored result: 1 used, 0 stale (an expert is gone, the model changed) with why set, <0 error. */
static int use_record(search *se, const char *text, size_t len, t2_dispatch_decision *out, char *why, size_t cap) {
    json_t *o = json_loadb(text, len, 0, NULL);
    json_t *names = json_object_get(o, "experts"), *a = json_object_get(o, "alpha");
    int pm = json_is_true(json_object_get(o, "per_matrix"));
    if (!json_is_object(o) || json_integer_value(json_object_get(o, "version")) != 1 || !json_is_array(names) || !json_is_array(a) ||
        json_array_size(names) < 1 || json_array_size(names) > MAX_EXPERTS) {
        json_decref(o);
        return snprintf(why, cap, "the stored α is not a cem record (version 1)"), 0;
    }
    se->per_matrix = pm;
    settings s2 = *se->s;
    s2.experts = names;
    const settings *keep = se->s;
    se->s = &s2;
    t2_status st = open_experts(se, why, cap);
    se->s = keep;
    int ok = st == T2_OK;
    se->dim = se->k * (pm ? se->nm : 1);
    float *al = malloc((size_t)(se->dim > 0 ? se->dim : 1) * sizeof *al);
    if (ok && (!al || json_array_size(a) != (size_t)se->dim)) {
        snprintf(why, cap, "the stored α has %zu values, the experts and model need %d", json_array_size(a), se->dim);
        ok = 0;
    }
    for (int i = 0; ok && i < se->dim; i++) {
        json_t *v = json_array_get(a, (size_t)i);
        if (!json_is_number(v) || !isfinite(json_number_value(v))) {
            snprintf(why, cap, "the stored α has a non-number at %d", i);
            ok = 0;
        } else {
            al[i] = (float)json_number_value(v);
        }
    }
    if (ok) st = api->expert_mix(se->h, (const t2_hexpert *const *)se->experts, al, se->k, pm, &out->expert);
    if (ok && st == T2_OK) {
        json_t *gen = json_object_get(o, "generations"), *nex = json_object_get(o, "examples");
        se->n_ex = (int)json_integer_value(nex);
        fill_detail(se, al, json_number_value(json_object_get(o, "fitness")), (int)json_integer_value(gen), 1, out);
    }
    free(al);
    json_decref(o);
    if (ok && st != T2_OK) return snprintf(why, cap, "cannot mix the stored experts (status %d)", (int)st), -1;
    return ok;
}

static t2_status decide(void *p, t2_host *h, const t2_dispatch_request *rq, t2_dispatch_decision *out) {
    state *stt = p;
    char why[700] = "";
    json_t *so = merged_settings(stt, rq->settings_json, why, sizeof why);
    if (!so) return fail(h, out, T2_ERR_INVALID_ARG, "%s", why);
    settings s;
    search se = {.h = h, .s = &s};
    t2_status st = parse_settings(so, &s, why, sizeof why);
    if (st != T2_OK) {
        json_decref(so);
        return fail(h, out, st, "%s", why);
    }
    if (!rq->task_id || !*rq->task_id) {
        json_decref(so);
        return fail(h, out, T2_ERR_INVALID_ARG, "cem needs a task id: its α is searched on the task's examples and stored per task "
                                                "(give --task-id and, the first time, --examples)");
    }
    char key[256];
    if (strlen(rq->task_id) > 196) {
        json_decref(so);
        return fail(h, out, T2_ERR_INVALID_ARG, "task id is longer than 196 bytes");
    }
    snprintf(key, sizeof key, "cem/%s", rq->task_id);
    se.nm = api->n_matrices(h);
    int have_examples = rq->examples && *rq->examples;

    /* a stored α for this task? */
    if (!s.refresh) {
        void *val = NULL;
        size_t len = 0;
        st = api->kv_get(h, key, &val, &len);
        if (st == T2_OK) {
            int r = use_record(&se, val, len, out, why, sizeof why);
            api->free(val);
            search_free(&se);
            if (r > 0) {
                json_decref(so);
                api->log(h, T2_LOG_DEBUG, "cem: task %s: stored α reused", rq->task_id);
                return T2_OK;
            }
            if (r < 0 || !have_examples) {
                json_decref(so);
                return fail(h, out, r < 0 ? T2_ERR_INTERNAL : T2_ERR_FORMAT, "task %s: %s%s", rq->task_id, why,
                            r < 0 ? "" : "; give examples to search again");
            }
            api->log(h, T2_LOG_WARN, "cem: task %s: stored α unusable (%s): searching again", rq->task_id, why);
        } else if (st != T2_ERR_NOT_FOUND) {
            json_decref(so);
            return fail(h, out, st, "task %s: the stored α cannot be read (status %d)", rq->task_id, (int)st);
        }
    }
    if (!have_examples) {
        json_decref(so);
        return fail(h, out, T2_ERR_INVALID_ARG, "task %s has no stored α and the request gives no examples to search it on", rq->task_id);
    }

    /* search */
    se.per_matrix = s.per_matrix;
    if ((st = open_examples(&se, rq->examples, why, sizeof why)) == T2_OK) st = open_experts(&se, why, sizeof why);
    if (st == T2_OK && se.per_matrix && se.nm < 1) {
        st = T2_ERR_UNSUPPORTED;
        snprintf(why, sizeof why, "per_matrix: the model has no adapted matrices");
    }
    se.dim = se.k * (se.per_matrix ? se.nm : 1);
    t2_cem *c = NULL;
    uint64_t seed = s.seed ? s.seed : fnv1a(rq->task_id);
    if (st == T2_OK) {
        t2_cem_params cp = t2_cem_default_params(se.dim);
        cp.population = s.population;
        cp.elite_ratio = s.elite_ratio;
        cp.generations = s.generations;
        cp.init_mean = (float)s.init_mean;
        cp.init_std = (float)s.init_std;
        cp.std_floor = (float)s.std_floor;
        if (!(c = t2_cem_new(&cp, uniform, &seed, &st))) snprintf(why, sizeof why, "the optimiser cannot start (status %d)", (int)st);
    }
    if (st == T2_OK) {
        api->log(h, T2_LOG_INFO, "cem: task %s: searching %d α (%d experts%s) on %d examples, population %d, %d generations",
                 rq->task_id, se.dim, se.k, se.per_matrix ? " × matrices" : "", se.n_ex, s.population, s.generations);
        se.why[0] = 0;
        if ((st = t2_cem_run(c, eval, tie, &se)) != T2_OK) snprintf(why, sizeof why, "search failed: %s", se.why[0] ? se.why : "error");
    }
    if (st == T2_OK) {
        double fitness;
        const float *best = t2_cem_best(c, &fitness, NULL);
        char *rec = record_json(&se, best, fitness, t2_cem_generation(c));
        if (!rec) st = T2_ERR_NOMEM;
        else if ((st = api->kv_put(h, key, rec, strlen(rec))) != T2_OK)
            snprintf(why, sizeof why, "the α cannot be stored (status %d)", (int)st);
        free(rec);
        if (st == T2_OK && (st = api->expert_mix(h, (const t2_hexpert *const *)se.experts, best, se.k, se.per_matrix, &out->expert)) != T2_OK)
            snprintf(why, sizeof why, "cannot mix the experts (status %d)", (int)st);
        if (st == T2_OK) {
            fill_detail(&se, best, fitness, t2_cem_generation(c), 0, out);
            api->log(h, T2_LOG_INFO, "cem: task %s: accuracy %.3f on %d examples after %d generations", rq->task_id, fitness, se.n_ex,
                     t2_cem_generation(c));
        }
    }
    t2_cem_free(c);
    search_free(&se);
    json_decref(so);
    if (st != T2_OK) return fail(h, out, st, "task %s: %s", rq->task_id, why[0] ? why : "failed");
    return T2_OK;
}

/* ---------------- the plugin ---------------- */

static t2_status init(const t2_host_api *a, const char *config_json, void **out) {
    (void)a;
    const char *text = config_json && *config_json ? config_json : "{}";
    json_t *o = json_loads(text, 0, NULL);
    settings s;
    char why[512] = "the config is not a JSON object";
    t2_status st = json_is_object(o) ? parse_settings(o, &s, why, sizeof why) : T2_ERR_INVALID_ARG;
    json_decref(o);
    if (st != T2_OK) {
        api->log(NULL, T2_LOG_ERROR, "cem: config: %s", why);
        return st;
    }
    state *stt = calloc(1, sizeof *stt);
    if (!stt || !(stt->config = strdup(text))) {
        free(stt);
        return T2_ERR_NOMEM;
    }
    *out = stt;
    return T2_OK;
}

static void fini(void *p) {
    state *s = p;
    if (s) free(s->config);
    free(s);
}

static const t2_dispatch_ops OPS = {.struct_size = sizeof(t2_dispatch_ops), .decide = decide};

static const t2_plugin PLUGIN = {
    .abi_major = T2_ABI_MAJOR,
    .abi_minor = T2_ABI_MINOR,
    .struct_size = sizeof(t2_plugin),
    .kind = T2_PLUGIN_DISPATCH,
    .name = "cem",
    .version = "1.0",
    .description = "few-shot: CEM searches the mixture weights of the experts on a task's solved examples; stored per task id",
    .init = init,
    .fini = fini,
    .ops = &OPS,
};

T2_PLUGIN_EXPORT const t2_plugin *t2_plugin_entry(const t2_host_api *host) {
    if (!t2_host_api_compatible(host) || !T2_HAS_MEMBER(host, score)) return NULL;
    api = host;
    return &PLUGIN;
}
