/* Shared helpers of the grader and dataset Check suites (see gtest.h). */
#include "gtest.h"

#include <t2/error.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

const char *gt_data_dir(void) {
    const char *e = getenv("T2_TEST_DATA_DIR");
    return e && *e ? e : T2_TEST_DATA_DIR;
}

void gt_require_data(void) {
    struct stat st;
    char p[4096];
    snprintf(p, sizeof p, "%s/gsm8k/test.jsonl", gt_data_dir());
    if (stat(p, &st) != 0) {
        printf("SKIP: benchmark data not found at %s (expected ../shared/data next to the repository)\n", gt_data_dir());
        exit(77);
    }
}

const char *gt_plugin_dir(void) { return T2_TEST_PLUGIN_DIR; }

static pthread_mutex_t s_log_lock = PTHREAD_MUTEX_INITIALIZER;
static char s_log[16384];

static void sink(void *u, t2_log_level level, const char *msg) {
    (void)u;
    pthread_mutex_lock(&s_log_lock);
    size_t n = strlen(s_log);
    snprintf(s_log + n, sizeof s_log - n, "[%d] %s\n", (int)level, msg);
    pthread_mutex_unlock(&s_log_lock);
}

const char *gt_log(void) { return s_log; }
void gt_log_clear(void) { s_log[0] = 0; }

static const char *s_code_settings;
static const char *settings_cb(void *u, const char *kind, const char *name) {
    (void)u;
    return !strcmp(kind, "grader") && !strcmp(name, "code") ? s_code_settings : NULL;
}

t2_plugins *gt_registry(const char *code_settings) {
    t2_grade_host_set_log_sink(sink, NULL);
    t2_status s;
    t2_plugins *p = t2_plugins_new(t2_grade_host_api(), &s);
    ck_assert_ptr_nonnull(p);
    s_code_settings = code_settings;
    int n = t2_plugins_load_dir(p, gt_plugin_dir(), settings_cb, NULL);
    ck_assert_msg(n >= 6, "loaded %d graders from %s; log: %s", n, gt_plugin_dir(), gt_log());
    t2_grade_host_configure(gt_data_dir(), p, T2_LOG_WARN);
    return p;
}

t2_dataset *gt_open(const char *spec, const char *split) {
    t2_dataset *d = NULL;
    t2_status s = t2_dataset_open(spec, split, gt_data_dir(), &d);
    ck_assert_msg(s == T2_OK && d, "open %s (%s): %s: %s", spec, split ? split : "all", t2_strerror(s), t2_last_error());
    return d;
}

t2_verdict gt_grade(const t2_plugins *reg, const char *grader, const t2_task *t, const char *output) {
    void *state;
    const t2_plugin *pl = t2_plugins_find(reg, T2_PLUGIN_GRADER, grader, &state);
    ck_assert_msg(pl != NULL, "no grader %s", grader);
    t2_verdict v;
    memset(&v, 0, sizeof v);
    t2_status s = ((const t2_grader_ops *)pl->ops)->grade(state, t, output, &v);
    ck_assert_msg(s == T2_OK, "grader %s on task %s: %s (%s)", grader, t->id, t2_strerror(s), v.detail);
    return v;
}

typedef struct job {
    const t2_plugins *reg;
    const char *grader;
    const t2_task *const *tasks;
    const char *const *outputs;
    size_t n;
    _Atomic size_t next;
    t2_verdict *v;
    t2_status *st;
} job;

static void *work(void *arg) {
    job *j = arg;
    void *state;
    const t2_plugin *pl = t2_plugins_find(j->reg, T2_PLUGIN_GRADER, j->grader, &state);
    for (size_t i; (i = atomic_fetch_add(&j->next, 1)) < j->n;) {
        memset(&j->v[i], 0, sizeof j->v[i]);
        t2_status s = pl ? ((const t2_grader_ops *)pl->ops)->grade(state, j->tasks[i], j->outputs[i], &j->v[i]) : T2_ERR_NOT_FOUND;
        if (j->st) j->st[i] = s;
    }
    return NULL;
}

void gt_grade_all(const t2_plugins *reg, const char *grader, const t2_task *const *tasks, const char *const *outputs,
                  size_t n, int workers, t2_verdict *v, t2_status *st) {
    ck_assert_ptr_nonnull(t2_plugins_find(reg, T2_PLUGIN_GRADER, grader, NULL));
    job j = {reg, grader, tasks, outputs, n, 0, v, st};
    pthread_t th[16];
    int k = workers > 16 ? 16 : workers;
    for (int i = 1; i < k; i++) ck_assert_int_eq(pthread_create(&th[i], NULL, work, &j), 0);
    work(&j);
    for (int i = 1; i < k; i++) pthread_join(th[i], NULL);
}
