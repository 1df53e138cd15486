/* The reinforce trainer's rollout groups (trainer_reinforce.so, settings "group") through the mock host.
 *
 * The mock model answers task t ("question t", answer 100 + t) correctly in a sampled row when the row's
 * place in its group is below t's count of right answers (RIGHT[t] of GROUP), and always wrongly at
 * temperature 0 (validation). The mock REINFORCE step records the rollouts it is given. A step with group
 * G must ask for G answers to each of batch/G tasks (consecutive rows, the same prompt), hand over each
 * rollout's reward minus its task's mean, and leave out the rollouts of tasks answered alike every time.
 * Bad group settings are refused with a message that names them. */
#include "mock_host.h"

#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NT 4
#define GROUP 3
#define BATCH 12

static const int RIGHT[NT] = {0, 1, 2, 3};   /* right answers of GROUP to task t: none, one, two, all */
static const t2_trainer_ops *OPS;
static void *SO;

typedef struct record {
    char prompts[BATCH][32];   /* the training rows' prompts, in row order */
    int n_rows;
    float rewards[BATCH];      /* the rollouts the step was given */
    char rollout_prompts[BATCH][32];
    int n_rollouts, n_steps;
} record;

static void setup(void) {
    char err[512];
    const t2_plugin *pl = mock_plugin_open(T2_TEST_TRAINER_DIR "/trainer_reinforce.so", &SO, err, sizeof err);
    ck_assert_msg(pl != NULL, "%s", err);
    ck_assert_str_eq(pl->name, "reinforce");
    OPS = pl->ops;
}

static void teardown(void) { mock_plugin_close(SO); }

static char *answer(mock_host *m, const char *prompt, const t2_hexpert *e, const t2_gen_params *p, int row, double *lp) {
    (void)e, (void)lp;
    record *r = m->user;
    int t = -1;
    ck_assert(sscanf(prompt, "question %d", &t) == 1 && t >= 0 && t < NT);
    char *s = NULL;
    if (p->temperature > 0) {
        ck_assert_int_lt(row, BATCH);
        snprintf(r->prompts[row], sizeof r->prompts[row], "%s", prompt);
        r->n_rows = row + 1 > r->n_rows ? row + 1 : r->n_rows;
        if (row % GROUP < RIGHT[t]) ck_assert_int_ge(asprintf(&s, "%d", 100 + t), 0);
    }
    return s ? s : strdup("no idea");
}

/* The rollout's prompt: the mock's ids are the prompt's bytes, then the completion's. */
static t2_status step_records(mock_host *m, float *z, int64_t n, const t2_rollout_in *rs, int B, t2_step_stats *st) {
    (void)z, (void)n, (void)st;
    record *r = m->user;
    r->n_steps++;
    r->n_rollouts = B;
    for (int i = 0; i < B && i < BATCH; i++) {
        r->rewards[i] = rs[i].reward;
        int k = 0;
        for (; k < rs[i].n_prompt && k < 31; k++) r->rollout_prompts[i][k] = (char)rs[i].ids[k];
        r->rollout_prompts[i][k] = 0;
    }
    return T2_OK;
}

static mock_host *make_world(record *r) {
    mock_host *m = mock_host_new();
    static char prompts[NT][32], answers[NT][16], ids[NT][8];
    t2_task ts[NT];
    for (int t = 0; t < NT; t++) {
        snprintf(prompts[t], sizeof prompts[t], "question %d", t);
        snprintf(answers[t], sizeof answers[t], "%d", 100 + t);
        snprintf(ids[t], sizeof ids[t], "%d", t);
        ts[t] = (t2_task){.id = ids[t], .prompt = prompts[t], .answer = answers[t], .grader = "", .system = ""};
    }
    ck_assert_int_eq(mock_host_add_dataset(m, "toy", "train", ts, NT), T2_OK);
    ck_assert_int_eq(mock_host_add_dataset(m, "toy", "validation", ts, NT), T2_OK);
    memset(r, 0, sizeof *r);
    m->user = r;
    m->generate = answer;
    m->reinforce = step_records;
    return m;
}

static t2_job_spec job(const char *settings) {
    return (t2_job_spec){.id = 1, .expert_name = "rl-toy", .label = "math", .dataset = "toy", .grader = "", .settings_json = settings};
}

static void run_one_step(mock_host *m, const char *settings) {
    t2_job_spec j = job(settings);
    void *st = NULL;
    ck_assert_int_eq(OPS->start(mock_host_handle(m), &j, NULL, 0, &st), T2_OK);
    int done = 0;
    for (int k = 0; k < 4 && !done; k++) ck_assert_int_eq(OPS->step(st, mock_host_handle(m), &done), T2_OK);
    ck_assert(done);
    OPS->stop(st);
    ck_assert_int_eq(mock_host_open_datasets(m), 0);
}

/* group 3 of batch 12: four tasks, three rows each; per task the rewards minus the task's mean; tasks all
 * right or all wrong carry nothing. */
START_TEST(test_groups) {
    record r;
    mock_host *m = make_world(&r);
    run_one_step(m, "{\"steps\": 1, \"batch\": 12, \"group\": 3, \"eval_every\": 0, \"seed\": 3}");
    ck_assert_int_eq(r.n_steps, 1);
    ck_assert_int_eq(r.n_rows, BATCH);
    for (int g = 0; g < BATCH; g += GROUP)
        for (int i = g + 1; i < g + GROUP; i++) ck_assert_str_eq(r.prompts[i], r.prompts[g]);
    /* what each sampled group should give: its task's rewards, centred, unless they are all alike */
    int want_n = 0;
    float want[BATCH];
    char want_prompt[BATCH][32];
    for (int g = 0; g < BATCH; g += GROUP) {
        int t = -1;
        ck_assert(sscanf(r.prompts[g], "question %d", &t) == 1);
        if (RIGHT[t] == 0 || RIGHT[t] == GROUP) continue;
        float mean = (float)(2 * RIGHT[t] - GROUP) / GROUP;
        for (int i = 0; i < GROUP; i++) {
            want[want_n] = (i < RIGHT[t] ? 1.0f : -1.0f) - mean;
            snprintf(want_prompt[want_n++], 32, "%s", r.prompts[g]);
        }
    }
    ck_assert_int_eq(r.n_rollouts, want_n);
    double sum = 0;
    for (int i = 0; i < want_n; i++) {
        ck_assert_msg(fabsf(r.rewards[i] - want[i]) < 1e-6f, "rollout %d: reward %g, want %g", i, r.rewards[i], want[i]);
        ck_assert_str_eq(r.rollout_prompts[i], want_prompt[i]);
        sum += r.rewards[i];
    }
    ck_assert(fabs(sum) < 1e-5);
    /* the progress event reports the raw mean reward of all 12 rows */
    int right = 0;
    for (int g = 0; g < BATCH; g += GROUP) {
        int t = -1;
        ck_assert(sscanf(r.prompts[g], "question %d", &t) == 1);
        right += RIGHT[t];
    }
    int last = m->n_progress - 1;
    ck_assert_int_ge(last, 0);
    ck_assert_double_eq_tol(m->progress[last].reward, (2.0 * right - BATCH) / BATCH, 1e-9);
    mock_host_free(m);
}
END_TEST

/* group 1 (the default): every row its own task, rewards ±1 as graded, nothing dropped. */
START_TEST(test_no_groups) {
    record r;
    mock_host *m = make_world(&r);
    run_one_step(m, "{\"steps\": 1, \"batch\": 12, \"eval_every\": 0, \"seed\": 3}");
    ck_assert_int_eq(r.n_rollouts, BATCH);
    for (int i = 0; i < BATCH; i++) ck_assert(r.rewards[i] == 1.0f || r.rewards[i] == -1.0f);
    mock_host_free(m);
}
END_TEST

static void start_fails(const char *settings, const char *msg) {
    record r;
    mock_host *m = make_world(&r);
    t2_job_spec j = job(settings);
    void *st = NULL;
    ck_assert_int_eq(OPS->start(mock_host_handle(m), &j, NULL, 0, &st), T2_ERR_INVALID_ARG);
    ck_assert_ptr_null(st);
    ck_assert_msg(mock_host_log_contains(m, msg), "log lacks \"%s\": %s", msg, m->log);
    ck_assert_int_eq(mock_host_open_datasets(m), 0);
    mock_host_free(m);
}

START_TEST(test_bad_groups) {
    start_fails("{\"batch\": 12, \"group\": 5}", "group 5: need group >= 1 dividing batch (12 rollouts per step)");
    start_fails("{\"batch\": 12, \"group\": 0}", "group 0: need group >= 1");
    start_fails("{\"batch\": 12, \"group\": 3, \"objective\": \"sft\"}", "group 3: the sft objective has no sampling to group");
}
END_TEST

int main(void) {
    Suite *s = suite_create("reinforce");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_groups);
    tcase_add_test(tc, test_no_groups);
    tcase_add_test(tc, test_bad_groups);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
