/* reinforce — the paper's SVF trainer (§3.2): REINFORCE on z with Adam, rewards from the job's grader.
 * The same file builds two more trainers:
 *   cls (T2_TRAINER_CLS): the classification expert of the classifier dispatch — REINFORCE on the first
 *     pass's classification prompt (plugins/common/classify.h) around each training task's prompt, the
 *     task's label as the answer, graded by the label grader. The labels listed in the prompt are the
 *     settings' "labels", else those of the tenant's experts (what the classifier will be asked).
 *   sft (T2_TRAINER_SFT): next-token training of z on the reference answers (task solution, else answer):
 *     each rollout is (prompt, reference) with reward +1, so the step ascends the mean log-likelihood of
 *     the references (the paper's ablation of the objective). No sampling.
 *   lora (T2_TRAINER_LORA): the LoRA baseline (paper Tables 1 and 4): the same loop training LoRA's A and B
 *     instead of z, by "objective": "reinforce" (default) or "sft"; settings rank (16), alpha (32),
 *     modules ("attn": q, k, v, o; or "mlp", "all").
 *
 * Each step samples `batch` / `group` training tasks, generates `group` answers per task under the current
 * expert (temperature sampling: `batch` rollouts in all), grades them (+1 correct, −1 wrong), and takes one
 * REINFORCE step through the host (which runs it on the engine between inference batches). With group > 1
 * each rollout's reward is taken relative to the mean of its task's group (a per-task baseline, as in RLOO
 * and GRPO): a task answered alike every time carries no signal and its rollouts are dropped, so the step
 * follows what separates right from wrong answers to the same question. Every `eval_every` steps and at the end
 * the expert answers the validation split greedily; the best expert by validation accuracy is kept and
 * saved when training ends (the paper's model selection). A checkpoint after every step (policy, Adam
 * state, best z, step) lets a restarted daemon resume the job exactly where it stopped.
 *
 * Settings (JSON object; all optional):
 *   steps 50, batch 8, group 1 (must divide batch), lr 2e-3, clip 1e-3, kl_coef 0, max_mult 2, normalize false, temperature 1.0,
 *   max_tokens 256, eval_every 10, val_size 64, train_split "train", val_split "validation",
 *   seed (an integer: the daemon seeds the job's stream, which picks the tasks and samples, from it; without
 *   it, from the job's id), target "z" ("weights" is refused with a pointer to `t2 model sft`, the offline
 *   tool that trains every weight) */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <t2/plugin.h>

#ifdef T2_TRAINER_CLS
#include "classify.h"
#define TRAINER "cls"
#define DESCRIPTION "the classification expert: REINFORCE on the first-pass classification prompt, graded by the label grader"
#elif defined(T2_TRAINER_LORA)
#define TRAINER "lora"
#define DESCRIPTION "the LoRA baseline: A and B trained by REINFORCE or on reference answers, best by validation kept"
#elif defined(T2_TRAINER_SFT)
#define TRAINER "sft"
#define DESCRIPTION "SVF by next-token likelihood of the reference answers (no sampling), best expert by validation kept"
#else
#define TRAINER "reinforce"
#define DESCRIPTION "SVF by REINFORCE (paper 3.2): rollouts graded by the job's grader, Adam on z, best expert by validation kept"
#endif

static const t2_host_api *api;

typedef struct settings {
    int steps, batch, group, max_tokens, eval_every, val_size, normalize;
    int references;          /* train on (prompt, reference) with reward +1 instead of sampled rollouts */
    int rank;                /* lora */
    double alpha;            /* lora */
    char modules[8];         /* lora */
    double lr, clip, kl_coef, max_mult, temperature;
    char train_split[32], val_split[32];
} settings;

typedef struct state {
    settings s;
    t2_job_spec job;
    char *expert_name, *label, *grader, *settings_text;
    t2_dataset *train, *val;
    t2_policy *pol;
    int64_t n_params;
    void *best;              /* policy_state of the best expert by validation accuracy so far (host-owned) */
    size_t best_len;
    double best_acc;
    int step;
#ifdef T2_TRAINER_CLS
    char *system;            /* the classification prompt */
    char *label_pool;
    const char *labels[T2_CLASSIFY_MAX_LABELS];
    int n_labels;
#endif
} state;

/* The task a trainer works on for dataset task t: itself, or for cls the classification question about
 * it (same prompt, the classification system prompt, its label as the answer, the label grader). */
static t2_task view(const state *st, const t2_task *t) {
    t2_task v = *t;
#ifdef T2_TRAINER_CLS
    v.system = st->system;
    v.answer = t->label;
    v.grader = "label";
#else
    (void)st;
#endif
    return v;
}

static double num(json_t *o, const char *k, double def) {
    json_t *v = json_object_get(o, k);
    return json_is_number(v) ? json_number_value(v) : def;
}

static t2_status parse_settings(const char *text, settings *s, char *why, size_t cap) {
    *s = (settings){.steps = 50, .batch = 8, .group = 1, .max_tokens = 256, .eval_every = 10, .val_size = 64, .lr = 2e-3, .clip = 1e-3,
                    .kl_coef = 0, .max_mult = 2, .temperature = 1.0};
    snprintf(s->train_split, sizeof s->train_split, "train");
    snprintf(s->val_split, sizeof s->val_split, "validation");
    json_error_t je;
    json_t *o = json_loads(text && *text ? text : "{}", 0, &je);
    if (!json_is_object(o)) {
        snprintf(why, cap, "settings are not a JSON object: %s", je.text);
        json_decref(o);
        return T2_ERR_INVALID_ARG;
    }
    static const char *known[] = {"steps", "batch", "group", "lr", "clip", "kl_coef", "max_mult", "normalize", "temperature", "max_tokens",
                                  "eval_every", "val_size", "train_split", "val_split", "seed", "labels", "rank", "alpha", "modules", "objective", "target"};
    const char *key;
    json_t *v;
    json_object_foreach(o, key, v) {
        size_t i = 0;
        while (i < sizeof known / sizeof known[0] && strcmp(known[i], key)) i++;
        if (i == sizeof known / sizeof known[0]) {
            snprintf(why, cap, "unknown setting \"%s\"", key);
            json_decref(o);
            return T2_ERR_INVALID_ARG;
        }
    }
    json_t *seed = json_object_get(o, "seed");
    if (seed && !(json_is_integer(seed) && json_integer_value(seed) >= 0)) {
        snprintf(why, cap, "seed: need an integer >= 0");
        json_decref(o);
        return T2_ERR_INVALID_ARG;
    }
    s->steps = (int)num(o, "steps", s->steps);
    s->batch = (int)num(o, "batch", s->batch);
    s->group = (int)num(o, "group", s->group);
    s->lr = num(o, "lr", s->lr);
    s->clip = num(o, "clip", s->clip);
    s->kl_coef = num(o, "kl_coef", s->kl_coef);
    s->max_mult = num(o, "max_mult", s->max_mult);
    s->normalize = json_is_true(json_object_get(o, "normalize"));
    s->temperature = num(o, "temperature", s->temperature);
    s->max_tokens = (int)num(o, "max_tokens", s->max_tokens);
    s->eval_every = (int)num(o, "eval_every", s->eval_every);
    s->val_size = (int)num(o, "val_size", s->val_size);
#ifdef T2_TRAINER_SFT
    s->references = 1;
#endif
    s->rank = (int)num(o, "rank", 16);
    s->alpha = num(o, "alpha", 2.0 * s->rank);
    const char *mods = json_string_value(json_object_get(o, "modules")), *obj = json_string_value(json_object_get(o, "objective"));
    snprintf(s->modules, sizeof s->modules, "%s", mods ? mods : "attn");
    if (obj && !strcmp(obj, "sft")) s->references = 1;
    else if (obj && strcmp(obj, "reinforce")) {
        snprintf(why, cap, "objective \"%s\": use reinforce or sft", obj);
        json_decref(o);
        return T2_ERR_INVALID_ARG;
    }
    /* sft trains z; every weight is trained offline by `t2 model sft` into a new model folder, because the served
     * base model is shared by every tenant and every expert's SVD is of its weights */
    const char *target = json_string_value(json_object_get(o, "target"));
    if (target && strcmp(target, "z")) {
        snprintf(why, cap,
                 strcmp(target, "weights") ? "target \"%s\": use z"
                                           : "target \"%s\": every weight of the shared base model cannot be trained in the daemon "
                                             "(every tenant's experts are built on it); run `t2 model sft`, which writes a new model folder",
                 target);
        json_decref(o);
        return T2_ERR_INVALID_ARG;
    }
    const char *ts = json_string_value(json_object_get(o, "train_split")), *vs = json_string_value(json_object_get(o, "val_split"));
    if (ts) snprintf(s->train_split, sizeof s->train_split, "%s", ts);
    if (vs) snprintf(s->val_split, sizeof s->val_split, "%s", vs);
    json_decref(o);
    if (s->steps < 1 || s->batch < 1 || s->batch > 1024 || !(s->lr > 0) || s->clip < 0 || s->kl_coef < 0 || !(s->max_mult > 1) ||
        s->temperature < 0 || s->max_tokens < 1 || s->eval_every < 0 || s->val_size < 0) {
        snprintf(why, cap, "settings out of range: need steps >= 1, 1 <= batch <= 1024, lr > 0, clip >= 0, kl_coef >= 0, max_mult > 1, "
                           "temperature >= 0, max_tokens >= 1, eval_every >= 0, val_size >= 0");
        return T2_ERR_INVALID_ARG;
    }
    if (s->group < 1 || s->batch % s->group) {
        snprintf(why, cap, "group %d: need group >= 1 dividing batch (%d rollouts per step)", s->group, s->batch);
        return T2_ERR_INVALID_ARG;
    }
    if (s->group > 1 && s->references) {
        snprintf(why, cap, "group %d: the sft objective has no sampling to group (use group 1)", s->group);
        return T2_ERR_INVALID_ARG;
    }
    return T2_OK;
}

static void state_free(state *st) {
    if (!st) return;
    if (st->train) api->dataset_close(st->train);
    if (st->val) api->dataset_close(st->val);
    api->policy_free(st->pol);
    if (st->best) api->free(st->best);
    free(st->expert_name);
    free(st->label);
    free(st->grader);
    free(st->settings_text);
#ifdef T2_TRAINER_CLS
    free(st->system);
    free(st->label_pool);
#endif
    free(st);
}

/* The grader: cls always grades labels; the others the job's grader, else each task's own. */
static const char *grader_of(const state *st) {
#ifdef T2_TRAINER_CLS
    (void)st;
    return "label";
#else
    return *st->grader ? st->grader : NULL;
#endif
}

/* Greedy accuracy of the current policy on the validation tasks. */
static t2_status validate(state *st, t2_host *h, double *acc) {
    size_t n = api->dataset_size(st->val);
    if (st->s.val_size > 0 && (size_t)st->s.val_size < n) n = (size_t)st->s.val_size;
    if (n == 0) {
        *acc = NAN;
        return T2_OK;
    }
    const char **prompts = calloc(n, sizeof *prompts);
    const t2_hexpert **ex = calloc(n, sizeof *ex);
    t2_gen_result *res = calloc(n, sizeof *res);
    t2_status s = prompts && ex && res ? T2_OK : T2_ERR_NOMEM;
    t2_task first = view(st, api->dataset_task(st->val, 0));
    for (size_t i = 0; s == T2_OK && i < n; i++) {
        prompts[i] = api->dataset_task(st->val, i)->prompt;
        ex[i] = api->policy_expert(st->pol);
    }
    t2_gen_params gp = {.max_tokens = st->s.max_tokens, .temperature = 0, .top_p = 1, .chat = 1, .system = *first.system ? first.system : NULL,
                        .cache_system = 1};
    if (s == T2_OK) s = api->generate(h, prompts, ex, (int)n, &gp, res);
    size_t correct = 0;
    for (size_t i = 0; s == T2_OK && i < n; i++) {
        t2_verdict v;
        t2_task t = view(st, api->dataset_task(st->val, i));
        if ((s = api->grade(h, grader_of(st), &t, res[i].text, &v)) == T2_OK) correct += v.correct != 0;
    }
    if (res)
        for (size_t i = 0; i < n; i++) api->gen_result_clear(&res[i]);
    free(prompts);
    free(ex);
    free(res);
    *acc = (double)correct / (double)n;
    return s;
}

/* checkpoint: "T2RF" v2, step, best_acc, the best state's length, the best state, then the current
 * state (both policy_state blobs: parameters and Adam moments). */
typedef struct ck_head {
    char magic[4];
    uint32_t version;
    int64_t step;
    double best_acc;
    uint64_t best_len;
} ck_head;

static t2_status save_checkpoint(state *st, t2_host *h) {
    void *ps = NULL;
    size_t pl = 0;
    t2_status s = api->policy_state(st->pol, &ps, &pl);
    if (s != T2_OK) return s;
    size_t len = sizeof(ck_head) + st->best_len + pl;
    char *b = malloc(len);
    if (!b) {
        api->free(ps);
        return T2_ERR_NOMEM;
    }
    ck_head hd = {{'T', '2', 'R', 'F'}, 2, st->step, st->best_acc, st->best_len};
    memcpy(b, &hd, sizeof hd);
    memcpy(b + sizeof hd, st->best, st->best_len);
    memcpy(b + sizeof hd + st->best_len, ps, pl);
    api->free(ps);
    s = api->checkpoint_save(h, b, len);
    free(b);
    return s;
}

/* Keep the policy's current state as the best one. */
static t2_status keep_best(state *st) {
    void *b = NULL;
    size_t n = 0;
    t2_status s = api->policy_state(st->pol, &b, &n);
    if (s != T2_OK) return s;
    if (st->best) api->free(st->best);
    st->best = b;
    st->best_len = n;
    return T2_OK;
}

static t2_status restore_checkpoint(state *st, const void *ck, size_t len, char *why, size_t cap) {
    ck_head hd;
    if (len < sizeof hd) return snprintf(why, cap, "checkpoint truncated"), T2_ERR_FORMAT;
    memcpy(&hd, ck, sizeof hd);
    if (memcmp(hd.magic, "T2RF", 4) || hd.version != 2) return snprintf(why, cap, "not a " TRAINER " checkpoint (v2)"), T2_ERR_VERSION;
    if (hd.best_len > len - sizeof hd) return snprintf(why, cap, "checkpoint truncated"), T2_ERR_FORMAT;
    const char *best = (const char *)ck + sizeof hd, *cur = best + hd.best_len;
    /* the best state: restored into the policy, kept, then the current state on top */
    t2_status s = api->policy_restore(st->pol, best, (size_t)hd.best_len);
    if (s == T2_OK) s = keep_best(st);
    if (s == T2_OK) s = api->policy_restore(st->pol, cur, len - sizeof hd - (size_t)hd.best_len);
    if (s != T2_OK) return snprintf(why, cap, "the checkpoint's policy state does not restore (another model?)"), s;
    st->step = (int)hd.step;
    st->best_acc = hd.best_acc;
    return T2_OK;
}

#ifdef T2_TRAINER_CLS
/* The labels the classifier will choose among (settings "labels", else the tenant's experts' labels),
 * and the classification system prompt built from them. */
static t2_status cls_prompt(state *st, t2_host *h, const char *settings, char *why, size_t cap) {
    json_t *o = json_loads(settings && *settings ? settings : "{}", 0, NULL);
    json_t *given = json_object_get(o, "labels");
    int explicit_labels = json_is_array(given);
    char *text = NULL;
    t2_status s = T2_OK;
    if (explicit_labels) {
        /* the same form experts_json has, so one parser reads both */
        json_t *arr = json_array();
        size_t i;
        json_t *v;
        json_array_foreach(given, i, v) if (json_is_string(v)) json_array_append_new(arr, json_pack("{s:O}", "label", v));
        text = json_dumps(arr, JSON_COMPACT);
        json_decref(arr);
    } else {
        s = api->experts_json(h, &text);
    }
    json_decref(o);
    if (s != T2_OK) {
        snprintf(why, cap, "cannot list the experts");
        return s;
    }
    st->label_pool = malloc(strlen(text ? text : "") + 1);
    st->n_labels = st->label_pool ? t2_classify_labels(text, "classifier", st->label_pool, st->labels, T2_CLASSIFY_MAX_LABELS) : 0;
    if (explicit_labels) free(text);
    else api->free(text);
    if (st->n_labels == 0) {
        snprintf(why, cap, "no labels to classify into: give settings \"labels\" or train the experts first");
        return T2_ERR_INVALID_ARG;
    }
    st->system = t2_classify_system(st->labels, st->n_labels);
    return st->system ? T2_OK : T2_ERR_NOMEM;
}
#endif

static t2_status start(t2_host *h, const t2_job_spec *job, const void *ck, size_t ck_len, void **out) {
    state *st = calloc(1, sizeof *st);
    char why[512] = "";
    if (!st) return T2_ERR_NOMEM;
    t2_status s = parse_settings(job->settings_json, &st->s, why, sizeof why);
    st->expert_name = strdup(job->expert_name ? job->expert_name : "");
    st->label = strdup(job->label ? job->label : "");
    st->grader = strdup(job->grader ? job->grader : "");
    st->settings_text = strdup(job->settings_json ? job->settings_json : "{}");
    st->best_acc = -1;
    if (s == T2_OK && (s = api->dataset_open(h, job->dataset, st->s.train_split, &st->train)) != T2_OK)
        snprintf(why, sizeof why, "dataset %s, split %s cannot be opened", job->dataset, st->s.train_split);
    if (s == T2_OK && api->dataset_size(st->train) == 0) {
        s = T2_ERR_INVALID_ARG;
        snprintf(why, sizeof why, "dataset %s has no %s tasks", job->dataset, st->s.train_split);
    }
    if (s == T2_OK && api->dataset_open(h, job->dataset, st->s.val_split, &st->val) != T2_OK) {
        api->log(h, T2_LOG_WARN, "no %s split in %s: validating on the training split", st->s.val_split, job->dataset);
        s = api->dataset_open(h, job->dataset, st->s.train_split, &st->val);
    }
#ifdef T2_TRAINER_CLS
    if (s == T2_OK) s = cls_prompt(st, h, job->settings_json, why, sizeof why);
#endif
    if (s == T2_OK && st->s.references && (!T2_HAS_MEMBER(api, encode) || !api->encode)) {
        s = T2_ERR_UNSUPPORTED;
        snprintf(why, sizeof why, "the host has no encode() (ABI %u.%u)", api->abi_major, api->abi_minor);
    }
    t2_reinforce_settings rs = {.lr = (float)st->s.lr, .clip = (float)st->s.clip, .kl_coef = (float)st->s.kl_coef,
                                .max_mult = (float)st->s.max_mult, .normalize = st->s.normalize};
#ifdef T2_TRAINER_LORA
    if (s == T2_OK && (!T2_HAS_MEMBER(api, policy_new_lora) || !api->policy_new_lora)) {
        s = T2_ERR_UNSUPPORTED;
        snprintf(why, sizeof why, "the host cannot train LoRA (ABI %u.%u)", api->abi_major, api->abi_minor);
    }
    if (s == T2_OK && (s = api->policy_new_lora(h, st->s.rank, (float)st->s.alpha, st->s.modules, &rs, &st->pol)) != T2_OK)
        snprintf(why, sizeof why, "LoRA: cannot create rank %d on %s", st->s.rank, st->s.modules);
#else
    if (s == T2_OK && (s = api->policy_new(h, NULL, &rs, &st->pol)) != T2_OK) snprintf(why, sizeof why, "policy: cannot create it");
#endif
    if (s == T2_OK) {
        st->n_params = api->expert_n_params(api->policy_expert(st->pol));
        s = keep_best(st);   /* the starting point (the base model) is the first candidate */
    }
    if (s == T2_OK && ck && ck_len) {
        if ((s = restore_checkpoint(st, ck, ck_len, why, sizeof why)) == T2_OK)
            api->log(h, T2_LOG_INFO, "resumed at step %d (best validation accuracy %.3f)", st->step, st->best_acc);
    }
    if (s != T2_OK) {
        if (why[0]) api->log(h, T2_LOG_ERROR, TRAINER ": %s", why);
        state_free(st);
        return s;
    }
    api->log(h, T2_LOG_INFO, TRAINER ": %d steps of %d rollouts, lr %g, clip %g, kl %g, %lld parameters, %zu training tasks", st->s.steps,
             st->s.batch, st->s.lr, st->s.clip, st->s.kl_coef, (long long)st->n_params, api->dataset_size(st->train));
    *out = st;
    return T2_OK;
}

/* Keep z if its validation accuracy beats the best so far. */
static t2_status evaluate(state *st, t2_host *h, double *acc) {
    t2_status s = validate(st, h, acc);
    if (s == T2_OK && !isnan(*acc) && *acc > st->best_acc) {
        st->best_acc = *acc;
        s = keep_best(st);
    }
    return s;
}

static t2_status finish(state *st, t2_host *h) {
    /* the policy goes back to its best state, and is saved as the expert */
    t2_status s = api->policy_restore(st->pol, st->best, st->best_len);
    if (s != T2_OK) return s;
    char meta[2048];
    snprintf(meta, sizeof meta, "{\"trainer\": \"" TRAINER "\", \"steps\": %d, \"validation_accuracy\": %.6f, \"settings\": %s}", st->s.steps,
             st->best_acc, st->settings_text);
    return api->expert_save(h, api->policy_expert(st->pol), st->expert_name, st->label, meta);
}

static t2_status step(void *p, t2_host *h, int *done) {
    state *st = p;
    *done = 0;
    if (st->step == 0 && st->best_acc < 0) {   /* the starting point (z = 1, the base model) is a candidate too */
        double acc;
        t2_status s = evaluate(st, h, &acc);
        if (s != T2_OK) return s;
        t2_progress pr = {.step = 0, .total = st->s.steps, .reward = NAN, .accuracy = acc, .loss = NAN, .message = "base validation"};
        api->progress(h, &pr);
    }
    if (st->step >= st->s.steps) {
        *done = 1;
        return finish(st, h);
    }
    int B = st->s.batch;
    size_t n_train = api->dataset_size(st->train);
    const char **prompts = calloc((size_t)B, sizeof *prompts);
    const t2_hexpert **ex = calloc((size_t)B, sizeof *ex);
    t2_task *tasks = calloc((size_t)B, sizeof *tasks);
    t2_gen_result *res = calloc((size_t)B, sizeof *res);
    t2_rollout_in *ro = calloc((size_t)B, sizeof *ro);
    t2_status s = prompts && ex && tasks && res && ro ? T2_OK : T2_ERR_NOMEM;
    int G = st->s.group;
    for (int i = 0; s == T2_OK && i < B; i++) {
        tasks[i] = i % G ? tasks[i - 1] : view(st, api->dataset_task(st->train, (size_t)(api->rand_u64(h) % n_train)));
        prompts[i] = tasks[i].prompt;
        ex[i] = api->policy_expert(st->pol);
    }
    double reward = 0;
    /* sft objective: the rollouts are the references themselves, each with reward +1 */
    for (int i = 0; s == T2_OK && st->s.references && i < B; i++) {
        const char *ref = *tasks[i].solution ? tasks[i].solution : tasks[i].answer;
        s = api->encode(h, tasks[i].prompt, *tasks[i].system ? tasks[i].system : NULL, 1, ref, &res[i].ids, &res[i].n_ids, &res[i].n_prompt);
        ro[i] = (t2_rollout_in){.ids = res[i].ids, .n_ids = res[i].n_ids, .n_prompt = res[i].n_prompt, .reward = 1.0f};
        reward += 1;
    }
    t2_gen_params gp = {.max_tokens = st->s.max_tokens, .temperature = (float)st->s.temperature, .top_p = 1, .chat = 1,
                        .system = s == T2_OK && *tasks[0].system ? tasks[0].system : NULL, .cache_system = 1};
    if (s == T2_OK && !st->s.references) s = api->generate(h, prompts, ex, B, &gp, res);
    for (int i = 0; s == T2_OK && !st->s.references && i < B; i++) {
        t2_verdict v;
        if ((s = api->grade(h, grader_of(st), &tasks[i], res[i].text, &v)) != T2_OK) break;
        ro[i] = (t2_rollout_in){.ids = res[i].ids, .n_ids = res[i].n_ids, .n_prompt = res[i].n_prompt, .reward = v.correct ? 1.0f : -1.0f};
        reward += ro[i].reward;
    }
    /* group > 1: each reward relative to its task's mean; a task answered alike every time has none left */
    for (int g = 0; s == T2_OK && G > 1 && g < B; g += G) {
        float mean = 0;
        for (int i = g; i < g + G; i++) mean += ro[i].reward / (float)G;
        for (int i = g; i < g + G; i++) ro[i].reward -= mean;
    }
    /* a rollout that generated nothing, or whose reward is its group's mean, carries no gradient: drop it */
    int kept = 0;
    for (int i = 0; s == T2_OK && i < B; i++)
        if (ro[i].n_ids > ro[i].n_prompt && (G == 1 || fabsf(ro[i].reward) > 1e-6f)) ro[kept++] = ro[i];
    t2_step_stats ss = {0};
    if (s == T2_OK && kept > 0) s = api->reinforce_step(h, st->pol, ro, kept, &ss);
    for (int i = 0; res && i < B; i++) api->gen_result_clear(&res[i]);
    free(prompts);
    free(ex);
    free(tasks);
    free(res);
    free(ro);
    if (s != T2_OK) return s;
    st->step++;
    double acc = NAN;
    if ((st->s.eval_every > 0 && st->step % st->s.eval_every == 0) || st->step == st->s.steps) {
        if ((s = evaluate(st, h, &acc)) != T2_OK) return s;
    }
    t2_progress pr = {.step = st->step, .total = st->s.steps, .reward = reward / B, .accuracy = acc, .loss = NAN};
    api->progress(h, &pr);
    return save_checkpoint(st, h);
}

static void stop(void *p) { state_free(p); }

static const t2_trainer_ops OPS = {.struct_size = sizeof(t2_trainer_ops), .start = start, .step = step, .stop = stop};

static const t2_plugin PLUGIN = {
    .abi_major = T2_ABI_MAJOR,
    .abi_minor = T2_ABI_MINOR,
    .struct_size = sizeof(t2_plugin),
    .kind = T2_PLUGIN_TRAINER,
    .name = TRAINER,
    .version = "1.0",
    .description = DESCRIPTION,
    .ops = &OPS,
};

T2_PLUGIN_EXPORT const t2_plugin *t2_plugin_entry(const t2_host_api *host) {
    if (!t2_host_api_compatible(host) || !T2_HAS_MEMBER(host, checkpoint_save)) return NULL;
    api = host;
    return &PLUGIN;
}
