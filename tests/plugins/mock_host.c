/* mock_host.c — the in-memory host API table of mock_host.h. Each function checks its arguments as the
 * daemon's host does (daemon/host.c), so a plugin that passes garbage fails here too, and records what it
 * was asked. */
#include "mock_host.h"

#include <dlfcn.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct t2_hexpert {
    mock_host *m;
    char name[160], label[64];
    float *z;        /* [n] */
    int64_t n;
    int policy_view; /* lives inside a t2_policy: expert_free ignores it */
};

struct t2_dataset {
    mock_host *m;
    const t2_task *tasks;   /* borrowed from the registered dataset */
    size_t n;
};

struct t2_policy {
    t2_hexpert view;
    t2_reinforce_settings s;
};

typedef struct mexpert {
    char name[64], label[64], kind[8];
    float *z;
} mexpert;

typedef struct mdataset {
    char *spec, *split;     /* split NULL: any */
    t2_task *tasks;
    size_t n;
} mdataset;

typedef struct mkv {
    char *key;
    void *val;
    size_t len;
} mkv;

typedef struct mreply {
    char *match, *reply;
} mreply;

struct mock_internal {
    mexpert *experts;
    int n_experts;
    mdataset *datasets;
    int n_datasets;
    mkv *kv;
    int n_kv;
    mock_saved *saved;
    int n_saved;
    mreply replies[MOCK_MAX_REPLIES];
    int n_replies;
    int live_experts, open_datasets;
    uint64_t rng;
    size_t log_cap;
};

/* ---------------- helpers ---------------- */

static void *grow(void *p, int n, size_t size) { return realloc(p, (size_t)(n + 1) * size); }

static void log_append(mock_host *m, char level, const char *msg) {
    struct mock_internal *in = m->in;
    size_t need = m->log_len + strlen(msg) + 4;
    if (need > in->log_cap) {
        size_t cap = need * 2;
        char *p = realloc(m->log, cap);
        if (!p) return;
        m->log = p;
        in->log_cap = cap;
    }
    m->log_len += (size_t)sprintf(m->log + m->log_len, "%c %s\n", level, msg);
    if (getenv("MOCK_HOST_VERBOSE")) fprintf(stderr, "[mock %c] %s\n", level, msg);
}

static t2_hexpert *hexpert_new(mock_host *m, const char *name, const char *label, const float *z) {
    t2_hexpert *e = calloc(1, sizeof *e);
    int64_t n = mock_host_n_params(m);
    if (!e || !(e->z = malloc((size_t)n * sizeof *e->z))) {
        free(e);
        return NULL;
    }
    e->m = m;
    e->n = n;
    snprintf(e->name, sizeof e->name, "%s", name ? name : "");
    snprintf(e->label, sizeof e->label, "%s", label ? label : "");
    for (int64_t i = 0; i < n; i++) e->z[i] = z ? z[i] : 1.0f;
    m->in->live_experts++;
    return e;
}

static mexpert *find_expert(const mock_host *m, const char *name) {
    for (int i = 0; i < m->in->n_experts; i++)
        if (!strcmp(m->in->experts[i].name, name)) return &m->in->experts[i];
    return NULL;
}

static mock_host *M(t2_host *h) { return (mock_host *)h; }

static uint64_t splitmix(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static char *xstrdup(const char *s) { return strdup(s ? s : ""); }

/* ---------------- the table: basics ---------------- */

static void h_log(t2_host *h, t2_log_level level, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void h_log(t2_host *h, t2_log_level level, const char *fmt, ...) {
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    static const char lv[] = "DIWE";
    if (h) log_append(M(h), lv[level >= 0 && level <= 3 ? level : 3], msg);
    else if (getenv("MOCK_HOST_VERBOSE")) fprintf(stderr, "[mock -] %s\n", msg);
}

static void h_free(void *p) { free(p); }
static uint64_t h_rand_u64(t2_host *h) { return splitmix(&M(h)->in->rng); }
static double h_rand_uniform(t2_host *h) { return (double)(h_rand_u64(h) >> 11) * 0x1.0p-53; }
static double h_rand_normal(t2_host *h) {
    double u1 = h_rand_uniform(h), u2 = h_rand_uniform(h);
    return sqrt(-2.0 * log(1.0 - u1)) * cos(6.283185307179586 * u2);
}
static int h_cancelled(t2_host *h) { return M(h)->cancelled; }

static t2_status h_kv_put(t2_host *h, const char *key, const void *value, size_t len) {
    mock_host *m = M(h);
    m->n_kv_put++;
    if (m->kv_put_status != T2_OK) return m->kv_put_status;
    if (!key || !*key || strlen(key) > 200 || (len && !value) || len > (1u << 20)) return T2_ERR_INVALID_ARG;
    return mock_host_kv_put(m, key, value, len);
}

static t2_status h_kv_get(t2_host *h, const char *key, void **value, size_t *len) {
    mock_host *m = M(h);
    m->n_kv_get++;
    if (m->kv_get_status != T2_OK) return m->kv_get_status;
    if (!key || !value || !len) return T2_ERR_INVALID_ARG;
    size_t n;
    const void *v = mock_host_kv_find(m, key, &n);
    if (!v) return T2_ERR_NOT_FOUND;
    char *c = malloc(n + 1);   /* one spare NUL so a text value can be used as a string */
    if (!c) return T2_ERR_NOMEM;
    memcpy(c, v, n);
    c[n] = 0;
    *value = c;
    *len = n;
    return T2_OK;
}

/* ---------------- experts ---------------- */

static t2_status h_experts_json(t2_host *h, char **json) {
    mock_host *m = M(h);
    if (!json) return T2_ERR_INVALID_ARG;
    if (m->omit_experts_json) return T2_ERR_IO;
    json_t *arr = json_array();
    for (int i = 0; i < m->in->n_experts; i++)
        json_array_append_new(arr, json_pack("{s:s, s:s, s:s, s:b, s:s}", "name", m->in->experts[i].name, "label",
                                             m->in->experts[i].label, "owner", "test", "published", 0, "kind",
                                             *m->in->experts[i].kind ? m->in->experts[i].kind : "svf"));
    char *d = json_dumps(arr, JSON_COMPACT);
    json_decref(arr);
    if (!d) return T2_ERR_NOMEM;
    *json = strdup(d);   /* released with api->free = free; jansson's allocator is malloc too, but be explicit */
    free(d);
    return *json ? T2_OK : T2_ERR_NOMEM;
}

static t2_status h_expert_open(t2_host *h, const char *name, t2_hexpert **out) {
    mock_host *m = M(h);
    m->n_expert_open++;
    if (!name || !out) return T2_ERR_INVALID_ARG;
    mexpert *x = find_expert(m, name);
    if (!x) return T2_ERR_NOT_FOUND;
    return (*out = hexpert_new(m, x->name, x->label, x->z)) ? T2_OK : T2_ERR_NOMEM;
}

static t2_status h_expert_new(t2_host *h, const char *label, t2_hexpert **out) {
    if (!out) return T2_ERR_INVALID_ARG;
    return (*out = hexpert_new(M(h), "", label, NULL)) ? T2_OK : T2_ERR_NOMEM;
}

static t2_status h_expert_mix(t2_host *h, const t2_hexpert *const *experts, const float *alpha, int k, int per_matrix,
                              t2_hexpert **out) {
    mock_host *m = M(h);
    m->n_expert_mix++;
    if (k < 1 || k > 64 || !experts || !alpha || !out) return T2_ERR_INVALID_ARG;
    int nm = m->n_matrices, len = m->matrix_len;
    char name[160];
    size_t o = (size_t)snprintf(name, sizeof name, "mix(");
    for (int i = 0; i < k; i++) {
        if (!experts[i] || experts[i]->n != mock_host_n_params(m)) return T2_ERR_INVALID_ARG;
        if (o < sizeof name)
            o += per_matrix ? (size_t)snprintf(name + o, sizeof name - o, "%s%s", i ? "," : "", experts[i]->name)
                            : (size_t)snprintf(name + o, sizeof name - o, "%s%s:%.3g", i ? "," : "", experts[i]->name, alpha[i]);
    }
    if (o < sizeof name) snprintf(name + o, sizeof name - o, ")");
    t2_hexpert *e = hexpert_new(m, name, "", NULL);
    if (!e) return T2_ERR_NOMEM;
    for (int j = 0; j < nm; j++)
        for (int t = 0; t < len; t++) {
            double acc = 0;
            for (int i = 0; i < k; i++) acc += (double)(per_matrix ? alpha[i * nm + j] : alpha[i]) * experts[i]->z[j * len + t];
            e->z[j * len + t] = (float)acc;
        }
    *out = e;
    return T2_OK;
}

static void h_expert_free(t2_hexpert *e) {
    if (!e || e->policy_view) return;
    e->m->in->live_experts--;
    free(e->z);
    free(e);
}

static int h_n_matrices(t2_host *h) { return M(h)->n_matrices; }
static int64_t h_expert_n_params(const t2_hexpert *e) { return e ? e->n : 0; }
static float *h_expert_z(t2_hexpert *e) { return e ? e->z : NULL; }

static t2_status h_expert_save(t2_host *h, const t2_hexpert *e, const char *name, const char *label, const char *meta_json) {
    mock_host *m = M(h);
    if (m->expert_save_status != T2_OK) return m->expert_save_status;
    if (!e || !name || !*name || strlen(name) >= 64) return T2_ERR_INVALID_ARG;
    if (meta_json) {
        json_t *o = json_loads(meta_json, 0, NULL);
        int ok = json_is_object(o);
        json_decref(o);
        if (!ok) {
            log_append(m, 'E', "mock expert_save: meta_json is not a JSON object");
            return T2_ERR_INVALID_ARG;
        }
    }
    struct mock_internal *in = m->in;
    mock_saved *s = grow(in->saved, in->n_saved, sizeof *s);
    if (!s) return T2_ERR_NOMEM;
    in->saved = s;
    s = &in->saved[in->n_saved];
    *s = (mock_saved){.name = xstrdup(name), .label = xstrdup(label), .meta_json = meta_json ? strdup(meta_json) : NULL,
                      .z = malloc((size_t)e->n * sizeof(float)), .n = e->n};
    if (!s->name || !s->label || !s->z) return T2_ERR_NOMEM;
    memcpy(s->z, e->z, (size_t)e->n * sizeof(float));
    in->n_saved++;
    mexpert *x = find_expert(m, name);
    if (x) {
        memcpy(x->z, e->z, (size_t)e->n * sizeof(float));
        snprintf(x->label, sizeof x->label, "%s", label ? label : "");
        return T2_OK;
    }
    return mock_host_add_expert(m, name, label, e->z);
}

/* ---------------- text ---------------- */

static char *default_generate(mock_host *m, const char *prompt) {
    for (int i = 0; i < m->in->n_replies; i++)
        if (strstr(prompt, m->in->replies[i].match)) return strdup(m->in->replies[i].reply);
    return strdup(m->default_reply ? m->default_reply : "");
}

static t2_status h_generate(t2_host *h, const char *const *prompts, const t2_hexpert *const *experts, int n, const t2_gen_params *p,
                            t2_gen_result *out) {
    mock_host *m = M(h);
    m->n_generate_calls++;
    if (m->generate_status != T2_OK) return m->generate_status;
    if (n < 0 || (n > 0 && (!prompts || !out))) return T2_ERR_INVALID_ARG;
    m->n_generate_rows += n;
    if (n > m->max_generate_rows) m->max_generate_rows = n;
    t2_gen_params gp = p ? *p : (t2_gen_params){.top_p = 1};
    m->last_gen = gp;
    m->last_chat = gp.chat;
    snprintf(m->last_system, sizeof m->last_system, "%s", gp.system ? gp.system : "");
    for (int i = 0; i < n; i++)
        if (!prompts[i]) return T2_ERR_INVALID_ARG;
    for (int i = 0; i < n; i++) {
        const t2_hexpert *e = experts ? experts[i] : NULL;
        double lp = 0;
        char *text = NULL;
        if (m->generate) {
            lp = NAN;
            text = m->generate(m, prompts[i], e, &gp, i, &lp);
        } else {
            text = default_generate(m, prompts[i]);
            lp = NAN;
        }
        size_t tl = text ? strlen(text) : 0, pl = strlen(prompts[i]);
        int32_t *ids = malloc((pl + tl + 1) * sizeof *ids);   /* byte-level "tokens" */
        if (!text || !ids) {
            free(text);
            free(ids);
            for (int j = 0; j < i; j++) {
                free(out[j].text);
                free(out[j].ids);
                memset(&out[j], 0, sizeof out[j]);
            }
            return T2_ERR_NOMEM;
        }
        for (size_t t = 0; t < pl; t++) ids[t] = (unsigned char)prompts[i][t];
        for (size_t t = 0; t < tl; t++) ids[pl + t] = (unsigned char)text[t];
        out[i] = (t2_gen_result){.text = text, .ids = ids, .n_ids = (int)(pl + tl), .n_prompt = (int)pl,
                                 .logprob = isnan(lp) ? -(double)tl : lp, .stop = 1, .seconds = 0.001};
    }
    return T2_OK;
}

static void h_gen_result_clear(t2_gen_result *r) {
    if (!r) return;
    free(r->text);
    free(r->ids);
    memset(r, 0, sizeof *r);
}

static t2_status h_score(t2_host *h, const char *prompt, const char *completion, const t2_hexpert *e, int chat, const char *system,
                         double *logprob, int *n_tokens) {
    mock_host *m = M(h);
    m->n_score_calls++;
    if (m->score_status != T2_OK) return m->score_status;
    if (!prompt || !completion || !logprob) return T2_ERR_INVALID_ARG;
    if (!*prompt || !*completion) return T2_ERR_INVALID_ARG;
    int nt = (int)strlen(completion);
    *logprob = m->score ? m->score(m, prompt, completion, e, chat, system, &nt) : -0.1 * (double)strlen(completion);
    if (n_tokens) *n_tokens = nt;
    return T2_OK;
}

/* ---------------- datasets and graders ---------------- */

static t2_status h_dataset_open(t2_host *h, const char *spec, const char *split, t2_dataset **out) {
    mock_host *m = M(h);
    if (m->dataset_status != T2_OK) return m->dataset_status;
    if (!spec || !out) return T2_ERR_INVALID_ARG;
    int any = !split || !strcmp(split, "all");
    for (int i = 0; i < m->in->n_datasets; i++) {
        mdataset *d = &m->in->datasets[i];
        if (strcmp(d->spec, spec) || !(any || !d->split || !strcmp(d->split, split))) continue;
        t2_dataset *ds = calloc(1, sizeof *ds);
        if (!ds) return T2_ERR_NOMEM;
        *ds = (t2_dataset){.m = m, .tasks = d->tasks, .n = d->n};
        m->in->open_datasets++;
        *out = ds;
        return T2_OK;
    }
    return T2_ERR_NOT_FOUND;
}

static size_t h_dataset_size(const t2_dataset *d) { return d ? d->n : 0; }
static const t2_task *h_dataset_task(const t2_dataset *d, size_t i) { return d && i < d->n ? &d->tasks[i] : NULL; }
static void h_dataset_close(t2_dataset *d) {
    if (!d) return;
    d->m->in->open_datasets--;
    free(d);
}

static t2_status default_grade(const t2_task *task, const char *output, t2_verdict *v) {
    while (*output == ' ' || *output == '\n' || *output == '\t') output++;
    size_t n = strlen(output);
    while (n && (output[n - 1] == ' ' || output[n - 1] == '\n' || output[n - 1] == '\t')) n--;
    snprintf(v->extracted, sizeof v->extracted, "%.*s", (int)(n < 255 ? n : 255), output);
    char boxed[300];
    snprintf(boxed, sizeof boxed, "\\boxed{%s}", task->answer);
    v->correct = (strlen(task->answer) == n && !strncmp(output, task->answer, n)) || (*task->answer && strstr(output, boxed));
    v->score = v->correct ? 1 : 0;
    snprintf(v->detail, sizeof v->detail, "%s", v->correct ? "matches" : "differs from the answer");
    return T2_OK;
}

static t2_status h_grade(t2_host *h, const char *grader, const t2_task *task, const char *output, t2_verdict *v) {
    mock_host *m = M(h);
    m->n_grade_calls++;
    if (m->grade_status != T2_OK) return m->grade_status;
    if (!task || !output || !v) return T2_ERR_INVALID_ARG;
    memset(v, 0, sizeof *v);
    return m->grade ? m->grade(m, grader, task, output, v) : default_grade(task, output, v);
}

/* ---------------- training primitives ---------------- */

static t2_status h_policy_new(t2_host *h, const t2_hexpert *init, const t2_reinforce_settings *s, t2_policy **out) {
    mock_host *m = M(h);
    if (!s || !out) return T2_ERR_INVALID_ARG;
    t2_policy *p = calloc(1, sizeof *p);
    int64_t n = mock_host_n_params(m);
    if (!p || !(p->view.z = malloc((size_t)n * sizeof(float)))) {
        free(p);
        return T2_ERR_NOMEM;
    }
    p->view = (t2_hexpert){.m = m, .n = n, .z = p->view.z, .policy_view = 1};
    snprintf(p->view.name, sizeof p->view.name, "policy");
    for (int64_t i = 0; i < n; i++) p->view.z[i] = init ? init->z[i] : 1.0f;
    p->s = *s;
    *out = p;
    return T2_OK;
}

static void h_policy_free(t2_policy *p) {
    if (!p) return;
    free(p->view.z);
    free(p);
}

static const t2_hexpert *h_policy_expert(t2_policy *p) { return p ? &p->view : NULL; }

static t2_status h_reinforce_step(t2_host *h, t2_policy *p, const t2_rollout_in *rs, int B, t2_step_stats *st) {
    mock_host *m = M(h);
    if (!p || !rs || B < 1) return T2_ERR_INVALID_ARG;
    t2_step_stats s = {0};
    t2_status r = T2_OK;
    if (m->reinforce) r = m->reinforce(m, p->view.z, p->view.n, rs, B, &s);
    else
        for (int i = 0; i < B; i++) s.mean_reward += rs[i].reward / (double)B;
    if (st) *st = s;
    return r;
}

static t2_status h_policy_state(t2_policy *p, void **blob, size_t *len) {
    if (!p || !blob || !len) return T2_ERR_INVALID_ARG;
    size_t n = (size_t)p->view.n * sizeof(float);
    if (!(*blob = malloc(n))) return T2_ERR_NOMEM;
    memcpy(*blob, p->view.z, n);
    *len = n;
    return T2_OK;
}

static t2_status h_policy_restore(t2_policy *p, const void *blob, size_t len) {
    if (!p || !blob) return T2_ERR_INVALID_ARG;
    if (len != (size_t)p->view.n * sizeof(float)) return T2_ERR_FORMAT;
    memcpy(p->view.z, blob, len);
    return T2_OK;
}

static t2_status h_logprob_grad(t2_host *h, const t2_hexpert *e, const int32_t *ids, int n_ids, int n_prompt, float weight,
                                float *dz, double *logprob) {
    (void)h, (void)e, (void)ids, (void)n_ids, (void)n_prompt, (void)weight, (void)dz, (void)logprob;
    return T2_ERR_UNSUPPORTED;
}

/* Byte-level "tokens": with chat and a system prompt, the system text and a '\n' come first. */
static t2_status h_encode(t2_host *h, const char *prompt, const char *system, int chat, const char *completion, int32_t **ids,
                          int *n_ids, int *n_prompt) {
    (void)h;
    if (!prompt || !ids || !n_ids || !n_prompt) return T2_ERR_INVALID_ARG;
    const char *sys = chat && system && *system ? system : "";
    size_t ns = strlen(sys), np = strlen(prompt), nc = completion ? strlen(completion) : 0, o = 0;
    int32_t *v = malloc((ns + 1 + np + nc + 1) * sizeof *v);
    if (!v) return T2_ERR_NOMEM;
    for (size_t i = 0; i < ns; i++) v[o++] = (unsigned char)sys[i];
    if (ns) v[o++] = '\n';
    for (size_t i = 0; i < np; i++) v[o++] = (unsigned char)prompt[i];
    *n_prompt = (int)o;
    for (size_t i = 0; i < nc; i++) v[o++] = (unsigned char)completion[i];
    *ids = v;
    *n_ids = (int)o;
    return T2_OK;
}

/* ---------------- jobs ---------------- */

static void h_progress(t2_host *h, const t2_progress *p) {
    mock_host *m = M(h);
    if (!p) return;
    mock_progress *a = grow(m->progress, m->n_progress, sizeof *a);
    if (!a) return;
    m->progress = a;
    a[m->n_progress] = (mock_progress){.step = p->step, .total = p->total, .reward = p->reward, .accuracy = p->accuracy, .loss = p->loss};
    snprintf(a[m->n_progress].message, sizeof a[m->n_progress].message, "%s", p->message ? p->message : "");
    m->n_progress++;
}

static t2_status h_checkpoint_save(t2_host *h, const void *blob, size_t len) {
    mock_host *m = M(h);
    m->n_checkpoints++;
    if (m->checkpoint_status != T2_OK) return m->checkpoint_status;
    if (!blob && len) return T2_ERR_INVALID_ARG;
    void *c = malloc(len ? len : 1);
    if (!c) return T2_ERR_NOMEM;
    if (len) memcpy(c, blob, len);
    free(m->checkpoint);
    m->checkpoint = c;
    m->checkpoint_len = len;
    return T2_OK;
}

static const t2_host_api API = {
    .abi_major = T2_ABI_MAJOR,
    .abi_minor = T2_ABI_MINOR,
    .struct_size = sizeof(t2_host_api),
    .log = h_log,
    .free = h_free,
    .rand_u64 = h_rand_u64,
    .rand_uniform = h_rand_uniform,
    .rand_normal = h_rand_normal,
    .cancelled = h_cancelled,
    .kv_put = h_kv_put,
    .kv_get = h_kv_get,
    .experts_json = h_experts_json,
    .expert_open = h_expert_open,
    .expert_new = h_expert_new,
    .expert_mix = h_expert_mix,
    .expert_free = h_expert_free,
    .n_matrices = h_n_matrices,
    .expert_n_params = h_expert_n_params,
    .expert_z = h_expert_z,
    .expert_save = h_expert_save,
    .generate = h_generate,
    .gen_result_clear = h_gen_result_clear,
    .score = h_score,
    .dataset_open = h_dataset_open,
    .dataset_size = h_dataset_size,
    .dataset_task = h_dataset_task,
    .dataset_close = h_dataset_close,
    .grade = h_grade,
    .policy_new = h_policy_new,
    .policy_free = h_policy_free,
    .policy_expert = h_policy_expert,
    .reinforce_step = h_reinforce_step,
    .policy_state = h_policy_state,
    .policy_restore = h_policy_restore,
    .logprob_grad = h_logprob_grad,
    .progress = h_progress,
    .checkpoint_save = h_checkpoint_save,
    .encode = h_encode,
};

/* ---------------- the test-facing side ---------------- */

const t2_host_api *mock_host_api(void) { return &API; }
t2_host *mock_host_handle(mock_host *m) { return (t2_host *)m; }
mock_host *mock_host_of(t2_host *h) { return M(h); }

mock_host *mock_host_new(void) {
    mock_host *m = calloc(1, sizeof *m);
    if (!m || !(m->in = calloc(1, sizeof *m->in)) || !(m->log = calloc(1, 64))) {
        if (m) free(m->in);
        free(m);
        return NULL;
    }
    m->in->log_cap = 64;
    m->n_matrices = 2;
    m->matrix_len = 4;
    m->seed = 1;
    m->in->rng = 1;
    return m;
}

void mock_host_free(mock_host *m) {
    if (!m) return;
    struct mock_internal *in = m->in;
    for (int i = 0; i < in->n_experts; i++) free(in->experts[i].z);
    free(in->experts);
    for (int i = 0; i < in->n_datasets; i++) {
        mdataset *d = &in->datasets[i];
        for (size_t t = 0; t < d->n; t++) {
            t2_task *k = &d->tasks[t];
            const char *f[] = {k->id, k->family, k->label, k->grader, k->question, k->prompt, k->system, k->answer,
                               k->solution, k->tests, k->entry_point, k->extra};
            for (size_t j = 0; j < sizeof f / sizeof f[0]; j++) free((char *)f[j]);
        }
        free(d->tasks);
        free(d->spec);
        free(d->split);
    }
    free(in->datasets);
    for (int i = 0; i < in->n_kv; i++) {
        free(in->kv[i].key);
        free(in->kv[i].val);
    }
    free(in->kv);
    for (int i = 0; i < in->n_saved; i++) {
        free(in->saved[i].name);
        free(in->saved[i].label);
        free(in->saved[i].meta_json);
        free(in->saved[i].z);
    }
    free(in->saved);
    for (int i = 0; i < in->n_replies; i++) {
        free(in->replies[i].match);
        free(in->replies[i].reply);
    }
    free(in);
    free(m->progress);
    free(m->checkpoint);
    free(m->log);
    free(m);
}

void mock_host_reseed(mock_host *m, uint64_t seed) {
    m->seed = seed;
    m->in->rng = seed;
}

void mock_host_reset_counters(mock_host *m) {
    m->n_generate_calls = m->n_score_calls = m->n_grade_calls = m->n_kv_put = m->n_kv_get = 0;
    m->n_expert_open = m->n_expert_mix = m->n_checkpoints = m->max_generate_rows = 0;
    m->n_generate_rows = 0;
    free(m->progress);
    m->progress = NULL;
    m->n_progress = 0;
    free(m->checkpoint);
    m->checkpoint = NULL;
    m->checkpoint_len = 0;
    m->log_len = 0;
    m->log[0] = 0;
}

int64_t mock_host_n_params(const mock_host *m) { return (int64_t)m->n_matrices * m->matrix_len; }

t2_status mock_host_set_expert_kind(mock_host *m, const char *name, const char *kind) {
    mexpert *x = find_expert(m, name);
    if (!x || !kind || strlen(kind) >= sizeof x->kind) return T2_ERR_INVALID_ARG;
    snprintf(x->kind, sizeof x->kind, "%s", kind);
    return T2_OK;
}

t2_status mock_host_add_expert(mock_host *m, const char *name, const char *label, const float *z) {
    if (!name || !*name || strlen(name) >= 64 || find_expert(m, name)) return T2_ERR_INVALID_ARG;
    struct mock_internal *in = m->in;
    mexpert *a = grow(in->experts, in->n_experts, sizeof *a);
    if (!a) return T2_ERR_NOMEM;
    in->experts = a;
    mexpert *x = &a[in->n_experts];
    memset(x, 0, sizeof *x);
    int64_t n = mock_host_n_params(m);
    if (!(x->z = malloc((size_t)n * sizeof *x->z))) return T2_ERR_NOMEM;
    for (int64_t i = 0; i < n; i++) x->z[i] = z ? z[i] : 1.0f;
    snprintf(x->name, sizeof x->name, "%s", name);
    snprintf(x->label, sizeof x->label, "%s", label ? label : "");
    in->n_experts++;
    return T2_OK;
}

t2_status mock_host_add_dataset(mock_host *m, const char *spec, const char *split, const t2_task *tasks, size_t n) {
    if (!spec || (n && !tasks)) return T2_ERR_INVALID_ARG;
    struct mock_internal *in = m->in;
    mdataset *a = grow(in->datasets, in->n_datasets, sizeof *a);
    if (!a) return T2_ERR_NOMEM;
    in->datasets = a;
    mdataset *d = &a[in->n_datasets];
    *d = (mdataset){.spec = xstrdup(spec), .split = split ? strdup(split) : NULL, .tasks = calloc(n ? n : 1, sizeof(t2_task)), .n = n};
    for (size_t i = 0; i < n; i++) {
        const t2_task *s = &tasks[i];
        d->tasks[i] = (t2_task){.id = xstrdup(s->id), .family = xstrdup(s->family), .label = xstrdup(s->label),
                                .grader = xstrdup(s->grader), .question = xstrdup(s->question), .prompt = xstrdup(s->prompt),
                                .system = xstrdup(s->system), .answer = xstrdup(s->answer), .solution = xstrdup(s->solution),
                                .tests = xstrdup(s->tests), .entry_point = xstrdup(s->entry_point),
                                .extra = xstrdup(s->extra ? s->extra : "{}")};
    }
    in->n_datasets++;
    return d->spec && d->tasks ? T2_OK : T2_ERR_NOMEM;
}

t2_status mock_host_add_reply(mock_host *m, const char *match, const char *reply) {
    struct mock_internal *in = m->in;
    if (!match || !reply || in->n_replies >= MOCK_MAX_REPLIES) return T2_ERR_INVALID_ARG;
    in->replies[in->n_replies] = (mreply){strdup(match), strdup(reply)};
    in->n_replies++;
    return T2_OK;
}

t2_status mock_host_kv_put(mock_host *m, const char *key, const void *value, size_t len) {
    struct mock_internal *in = m->in;
    char *c = malloc(len + 1);   /* a NUL after the value, so tests can read text values as strings */
    if (!c) return T2_ERR_NOMEM;
    if (len) memcpy(c, value, len);
    c[len] = 0;
    for (int i = 0; i < in->n_kv; i++)
        if (!strcmp(in->kv[i].key, key)) {
            free(in->kv[i].val);
            in->kv[i].val = c;
            in->kv[i].len = len;
            return T2_OK;
        }
    mkv *a = grow(in->kv, in->n_kv, sizeof *a);
    if (!a) {
        free(c);
        return T2_ERR_NOMEM;
    }
    in->kv = a;
    a[in->n_kv] = (mkv){strdup(key), c, len};
    in->n_kv++;
    return T2_OK;
}

const void *mock_host_kv_find(const mock_host *m, const char *key, size_t *len) {
    for (int i = 0; i < m->in->n_kv; i++)
        if (!strcmp(m->in->kv[i].key, key)) {
            if (len) *len = m->in->kv[i].len;
            return m->in->kv[i].val;
        }
    return NULL;
}

int mock_host_kv_count(const mock_host *m) { return m->in->n_kv; }

const mock_saved *mock_host_saved(const mock_host *m, const char *name) {
    for (int i = m->in->n_saved - 1; i >= 0; i--)
        if (!strcmp(m->in->saved[i].name, name)) return &m->in->saved[i];
    return NULL;
}

int mock_host_n_saved(const mock_host *m) { return m->in->n_saved; }
int mock_host_live_experts(const mock_host *m) { return m->in->live_experts; }
int mock_host_open_datasets(const mock_host *m) { return m->in->open_datasets; }
int mock_host_log_contains(const mock_host *m, const char *substr) { return strstr(m->log, substr) != NULL; }

const float *mock_expert_z(const t2_hexpert *e) { return e ? e->z : NULL; }
int64_t mock_expert_n(const t2_hexpert *e) { return e ? e->n : 0; }
const char *mock_expert_name(const t2_hexpert *e) { return e ? e->name : ""; }
const char *mock_expert_label(const t2_hexpert *e) { return e ? e->label : ""; }

const char *mock_status_name(t2_status s) {
    static const char *names[] = {"T2_OK", "T2_ERR_INVALID_ARG", "T2_ERR_NOMEM", "T2_ERR_IO", "T2_ERR_FORMAT", "T2_ERR_UNSUPPORTED",
                                  "T2_ERR_NOT_FOUND", "T2_ERR_SHAPE", "T2_ERR_RANGE", "T2_ERR_FULL", "T2_ERR_VERSION",
                                  "T2_ERR_INTERNAL"};
    int i = -(int)s;
    return i >= 0 && i < (int)(sizeof names / sizeof names[0]) ? names[i] : "T2_ERR_?";
}

const t2_plugin *mock_plugin_open(const char *path, void **handle, char *err, size_t cap) {
    *handle = NULL;
    void *so = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!so) {
        snprintf(err, cap, "dlopen %s: %s", path, dlerror());
        return NULL;
    }
    t2_plugin_entry_fn entry;
    void *sym = dlsym(so, T2_PLUGIN_ENTRY_SYMBOL);
    memcpy(&entry, &sym, sizeof entry);   /* object pointer → function pointer without a pedantic warning */
    if (!entry) {
        snprintf(err, cap, "%s: no symbol %s", path, T2_PLUGIN_ENTRY_SYMBOL);
        dlclose(so);
        return NULL;
    }
    const t2_plugin *pl = entry(&API);
    if (!pl) {
        snprintf(err, cap, "%s: the plugin refused the mock host (ABI %d.%d)", path, T2_ABI_MAJOR, T2_ABI_MINOR);
        dlclose(so);
        return NULL;
    }
    *handle = so;
    return pl;
}

void mock_plugin_close(void *handle) {
    if (handle) dlclose(handle);
}
