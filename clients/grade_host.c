/* The small in-process host API table of `t2 grade` (see cmd_grade.h): enough for grader plugins, which
 * log, draw random numbers, open datasets and may call other graders; everything that needs a model or
 * the daemon answers T2_ERR_UNSUPPORTED. */
#include "cmd_grade.h"

#include "loader.h"
#include "tasks.h"

#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static pthread_mutex_t s_lock = PTHREAD_MUTEX_INITIALIZER;
static char *s_data_dir;
static const t2_plugins *s_plugins;
static t2_log_level s_min_level = T2_LOG_WARN;
static void (*s_sink)(void *u, t2_log_level level, const char *msg);
static void *s_sink_u;
static uint64_t s_rng = 0x9E3779B97F4A7C15ull;

void t2_grade_host_configure(const char *data_dir, const t2_plugins *plugins, t2_log_level min_level) {
    pthread_mutex_lock(&s_lock);
    free(s_data_dir);
    s_data_dir = data_dir ? strdup(data_dir) : NULL;
    s_plugins = plugins;
    s_min_level = min_level;
    pthread_mutex_unlock(&s_lock);
}

void t2_grade_host_set_log_sink(void (*fn)(void *u, t2_log_level level, const char *msg), void *u) {
    pthread_mutex_lock(&s_lock);
    s_sink = fn;
    s_sink_u = u;
    pthread_mutex_unlock(&s_lock);
}

/* ---- basics ---- */

__attribute__((format(printf, 3, 4))) static void h_log(t2_host *h, t2_log_level level, const char *fmt, ...) {
    (void)h;
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    pthread_mutex_lock(&s_lock);
    if (s_sink) s_sink(s_sink_u, level, msg);
    else if (level >= s_min_level) {
        static const char *const names[] = {"debug", "info", "warning", "error"};
        fprintf(stderr, "t2: %s: %s\n", names[level >= 0 && level <= 3 ? level : 3], msg);
    }
    pthread_mutex_unlock(&s_lock);
}

static void h_free(void *p) { free(p); }

/* xorshift64*: one stream for the whole process (grading does not need per-call reproducibility) */
static uint64_t h_rand_u64(t2_host *h) {
    (void)h;
    pthread_mutex_lock(&s_lock);
    s_rng ^= s_rng >> 12;
    s_rng ^= s_rng << 25;
    s_rng ^= s_rng >> 27;
    uint64_t r = s_rng * 0x2545F4914F6CDD1Dull;
    pthread_mutex_unlock(&s_lock);
    return r;
}

static double h_rand_uniform(t2_host *h) { return (double)(h_rand_u64(h) >> 11) * 0x1.0p-53; }

static double h_rand_normal(t2_host *h) {
    /* Box-Muller */
    double u1 = h_rand_uniform(h), u2 = h_rand_uniform(h);
    if (u1 < 1e-300) u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

static int h_cancelled(t2_host *h) {
    (void)h;
    return 0;
}

static t2_status h_kv_put(t2_host *h, const char *key, const void *value, size_t len) {
    (void)h, (void)key, (void)value, (void)len;
    return T2_ERR_UNSUPPORTED;
}
static t2_status h_kv_get(t2_host *h, const char *key, void **value, size_t *len) {
    (void)h, (void)key;
    if (value) *value = NULL;
    if (len) *len = 0;
    return T2_ERR_UNSUPPORTED;
}

/* ---- the model and experts: not here ---- */

static t2_status h_experts_json(t2_host *h, char **json) {
    (void)h;
    if (json) *json = NULL;
    return T2_ERR_UNSUPPORTED;
}
static t2_status h_expert_open(t2_host *h, const char *name, t2_hexpert **out) {
    (void)h, (void)name;
    if (out) *out = NULL;
    return T2_ERR_UNSUPPORTED;
}
static t2_status h_expert_new(t2_host *h, const char *label, t2_hexpert **out) {
    (void)h, (void)label;
    if (out) *out = NULL;
    return T2_ERR_UNSUPPORTED;
}
static t2_status h_expert_mix(t2_host *h, const t2_hexpert *const *e, const float *alpha, int k, int per_matrix,
                              t2_hexpert **out) {
    (void)h, (void)e, (void)alpha, (void)k, (void)per_matrix;
    if (out) *out = NULL;
    return T2_ERR_UNSUPPORTED;
}
static void h_expert_free(t2_hexpert *e) { (void)e; }
static int h_n_matrices(t2_host *h) {
    (void)h;
    return 0;
}
static int64_t h_expert_n_params(const t2_hexpert *e) {
    (void)e;
    return 0;
}
static float *h_expert_z(t2_hexpert *e) {
    (void)e;
    return NULL;
}
static t2_status h_expert_save(t2_host *h, const t2_hexpert *e, const char *name, const char *label, const char *meta) {
    (void)h, (void)e, (void)name, (void)label, (void)meta;
    return T2_ERR_UNSUPPORTED;
}
static t2_status h_generate(t2_host *h, const char *const *prompts, const t2_hexpert *const *experts, int n,
                            const t2_gen_params *p, t2_gen_result *out) {
    (void)h, (void)prompts, (void)experts, (void)p;
    if (out && n > 0) memset(out, 0, (size_t)n * sizeof *out);
    return T2_ERR_UNSUPPORTED;
}
static void h_gen_result_clear(t2_gen_result *r) {
    if (!r) return;
    free(r->text);
    free(r->ids);
    memset(r, 0, sizeof *r);
}
static t2_status h_score(t2_host *h, const char *prompt, const char *completion, const t2_hexpert *e, int chat,
                         const char *system, double *logprob, int *n_tokens) {
    (void)h, (void)prompt, (void)completion, (void)e, (void)chat, (void)system;
    if (logprob) *logprob = 0;
    if (n_tokens) *n_tokens = 0;
    return T2_ERR_UNSUPPORTED;
}

/* ---- datasets and graders ---- */

static t2_status h_dataset_open(t2_host *h, const char *spec, const char *split, t2_dataset **out) {
    (void)h;
    pthread_mutex_lock(&s_lock);
    char *dir = s_data_dir ? strdup(s_data_dir) : NULL;
    pthread_mutex_unlock(&s_lock);
    t2_status s = t2_dataset_open(spec, split, dir, out);
    free(dir);
    return s;
}
static size_t h_dataset_size(const t2_dataset *d) { return t2_dataset_size(d); }
static const t2_task *h_dataset_task(const t2_dataset *d, size_t i) { return t2_dataset_task(d, i); }
static void h_dataset_close(t2_dataset *d) { t2_dataset_close(d); }

static t2_status h_grade(t2_host *h, const char *grader, const t2_task *task, const char *output, t2_verdict *v) {
    (void)h;
    if (!task || !output || !v) return T2_ERR_INVALID_ARG;
    const char *name = grader && *grader ? grader : task->grader;
    pthread_mutex_lock(&s_lock);
    const t2_plugins *reg = s_plugins;
    pthread_mutex_unlock(&s_lock);
    void *state;
    const t2_plugin *pl = t2_plugins_find(reg, T2_PLUGIN_GRADER, name, &state);
    if (!pl) {
        memset(v, 0, sizeof *v);
        snprintf(v->detail, sizeof v->detail, "no grader plugin \"%s\" is loaded", name);
        return T2_ERR_NOT_FOUND;
    }
    const t2_grader_ops *ops = pl->ops;
    return ops->grade(state, task, output, v);
}

/* ---- training and jobs: not here ---- */

static t2_status h_policy_new(t2_host *h, const t2_hexpert *init, const t2_reinforce_settings *s, t2_policy **out) {
    (void)h, (void)init, (void)s;
    if (out) *out = NULL;
    return T2_ERR_UNSUPPORTED;
}
static void h_policy_free(t2_policy *p) { (void)p; }
static const t2_hexpert *h_policy_expert(t2_policy *p) {
    (void)p;
    return NULL;
}
static t2_status h_reinforce_step(t2_host *h, t2_policy *p, const t2_rollout_in *rs, int B, t2_step_stats *st) {
    (void)h, (void)p, (void)rs, (void)B, (void)st;
    return T2_ERR_UNSUPPORTED;
}
static t2_status h_policy_state(t2_policy *p, void **blob, size_t *len) {
    (void)p;
    if (blob) *blob = NULL;
    if (len) *len = 0;
    return T2_ERR_UNSUPPORTED;
}
static t2_status h_policy_restore(t2_policy *p, const void *blob, size_t len) {
    (void)p, (void)blob, (void)len;
    return T2_ERR_UNSUPPORTED;
}
static t2_status h_logprob_grad(t2_host *h, const t2_hexpert *e, const int32_t *ids, int n_ids, int n_prompt,
                                float weight, float *dz, double *logprob) {
    (void)h, (void)e, (void)ids, (void)n_ids, (void)n_prompt, (void)weight, (void)dz;
    if (logprob) *logprob = 0;
    return T2_ERR_UNSUPPORTED;
}
static void h_progress(t2_host *h, const t2_progress *p) { (void)h, (void)p; }
static t2_status h_checkpoint_save(t2_host *h, const void *blob, size_t len) {
    (void)h, (void)blob, (void)len;
    return T2_ERR_UNSUPPORTED;
}

static const t2_host_api s_api = {
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
};

const t2_host_api *t2_grade_host_api(void) { return &s_api; }
