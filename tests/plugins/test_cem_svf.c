/* The cem-svf trainer (trainer_cem_svf.so) through the mock host.
 *
 * The synthetic task: the mock model answers task t correctly when the expert's z is within
 * tol_t = 0.006·(t + 1) (RMS) of a known z*; the base model (z = 1) is 0.04 away, so it solves 4 of
 * the 10 tasks; the reference answers' likelihood rises as z nears z*. Training must move z towards z* and
 * beat the base model on validation; its checkpoint must resume the search exactly (same next generation,
 * byte for byte). */
#include "mock_host.h"

#include <check.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NT 10

static const float ZSTAR[8] = {1.04f, 0.96f, 1.02f, 0.98f, 1.05f, 0.95f, 1.0f, 1.065f};
static const t2_host_api *A;
static const t2_plugin *PL;
static const t2_trainer_ops *OPS;
static void *SO;

static void setup(void) {
    char err[512];
    A = mock_host_api();
    PL = mock_plugin_open(T2_TEST_TRAINER_DIR "/trainer_cem_svf.so", &SO, err, sizeof err);
    ck_assert_msg(PL != NULL, "%s", err);
    ck_assert_str_eq(PL->name, "cem-svf");
    ck_assert_int_eq(PL->kind, T2_PLUGIN_TRAINER);
    OPS = PL->ops;
}

static void teardown(void) { mock_plugin_close(SO); }

/* RMS distance to z*. */
static double dist(const float *z) {
    double d = 0;
    for (int i = 0; i < 8; i++) d += (z[i] - ZSTAR[i]) * (double)(z[i] - ZSTAR[i]);
    return sqrt(d / 8);
}

static double tol(int t) { return 0.006 * (t + 1); }

/* Accuracy of z on the NT tasks. */
static double accuracy(const float *z) {
    int c = 0;
    for (int t = 0; t < NT; t++) c += dist(z) < tol(t);
    return (double)c / NT;
}

static char *answer(mock_host *m, const char *prompt, const t2_hexpert *e, const t2_gen_params *p, int row, double *lp) {
    (void)m, (void)p, (void)row, (void)lp;
    int t = -1;
    ck_assert(sscanf(prompt, "question %d", &t) == 1 && e != NULL);
    char *s = NULL;
    if (dist(mock_expert_z(e)) < tol(t)) ck_assert_int_ge(asprintf(&s, "\\boxed{%d}", 100 + t), 0);
    else s = strdup("no idea");
    return s;
}

/* The reference answers get likelier as z nears z* (the tie key's signal on a plateau). */
static double loglik(mock_host *m, const char *prompt, const char *completion, const t2_hexpert *e, int chat, const char *system,
                     int *n_tokens) {
    (void)m, (void)prompt, (void)completion, (void)chat, (void)system;
    *n_tokens = 5;
    return -5.0 * (1 + 10 * dist(mock_expert_z(e)));
}

static mock_host *make_world(int with_validation) {
    mock_host *m = mock_host_new();   /* 2 matrices × 4 values */
    t2_task ts[NT];
    char prompts[NT][32], answers[NT][16], ids[NT][8];
    for (int t = 0; t < NT; t++) {
        snprintf(prompts[t], sizeof prompts[t], "question %d", t);
        snprintf(answers[t], sizeof answers[t], "%d", 100 + t);
        snprintf(ids[t], sizeof ids[t], "%d", t);
        ts[t] = (t2_task){.id = ids[t], .prompt = prompts[t], .answer = answers[t], .grader = "math", .system = "Think."};
    }
    ck_assert_int_eq(mock_host_add_dataset(m, "toy", "train", ts, NT), T2_OK);
    if (with_validation) ck_assert_int_eq(mock_host_add_dataset(m, "toy", "validation", ts, NT), T2_OK);
    mock_host_add_dataset(m, "empty", "train", NULL, 0);
    m->generate = answer;
    m->score = loglik;
    return m;
}

static t2_job_spec job(const char *settings) {
    return (t2_job_spec){.id = 1, .expert_name = "svf-toy", .label = "math", .dataset = "toy", .grader = "", .settings_json = settings};
}

static const char *SETTINGS =
    "{\"generations\": 12, \"population\": 16, \"init_std\": 0.05, \"std_floor\": 0.006, \"batch\": 10, \"eval_every\": 4, \"seed\": 5}";

START_TEST(test_improves_and_saves) {
    mock_host *m = make_world(1);
    void *st = NULL;
    t2_job_spec j = job(SETTINGS);
    ck_assert_int_eq(OPS->start(mock_host_handle(m), &j, NULL, 0, &st), T2_OK);
    int done = 0, steps = 0;
    while (!done && steps < 100) {
        t2_status s = OPS->step(st, mock_host_handle(m), &done);
        ck_assert_msg(s == T2_OK, "step %d: %s; log %s", steps, mock_status_name(s), m->log);
        steps++;
    }
    ck_assert_int_eq(steps, 13);   /* 12 generations and the finishing step */
    /* progress: the base model first, then one event per generation */
    ck_assert_int_eq(m->n_progress, 13);
    ck_assert_str_eq(m->progress[0].message, "base validation");
    const float ones[8] = {1, 1, 1, 1, 1, 1, 1, 1};
    ck_assert_double_eq_tol(m->progress[0].accuracy, accuracy(ones), 1e-9);
    ck_assert(accuracy(ones) <= 0.5);
    for (int g = 1; g <= 12; g++) {
        ck_assert_int_eq(m->progress[g].step, g);
        ck_assert_int_eq(m->progress[g].total, 12);
        ck_assert(!isnan(m->progress[g].reward));
        ck_assert_int_eq(isnan(m->progress[g].accuracy), g % 4 != 0);   /* validation every 4 generations */
    }
    ck_assert_msg(m->progress[12].accuracy >= 0.8, "final validation accuracy %g", m->progress[12].accuracy);
    ck_assert_int_eq(m->n_checkpoints, 12);
    /* one generate call per generation with every candidate × task, plus 1 + 3 validations */
    ck_assert_int_eq(m->n_generate_calls, 12 + 4);
    ck_assert_int_eq(m->max_generate_rows, 16 * 10);
    ck_assert_str_eq(m->last_system, "Think.");
    /* the saved expert: better than the base, with its provenance */
    const mock_saved *sv = mock_host_saved(m, "svf-toy");
    ck_assert_ptr_nonnull(sv);
    ck_assert_str_eq(sv->label, "math");
    ck_assert_int_eq(sv->n, 8);
    json_t *meta = json_loads(sv->meta_json, 0, NULL);
    ck_assert_msg(dist(sv->z) < dist(ones) / 2, "saved z is %g from z* (base %g)", dist(sv->z), dist(ones));
    ck_assert_double_eq_tol(accuracy(sv->z), json_real_value(json_object_get(meta, "validation_accuracy")), 1e-6);
    ck_assert_str_eq(json_string_value(json_object_get(meta, "trainer")), "cem-svf");
    ck_assert(json_real_value(json_object_get(meta, "validation_accuracy")) >= 0.8);
    ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(meta, "settings"), "population")), 16);
    json_decref(meta);
    OPS->stop(st);
    ck_assert_int_eq(mock_host_live_experts(m), 0);
    ck_assert_int_eq(mock_host_open_datasets(m), 0);
    mock_host_free(m);
}
END_TEST

static void *copy(const void *p, size_t n) {
    void *c = malloc(n);
    memcpy(c, p, n);
    return c;
}

/* start → steps → checkpoint → start with it → the same state: the next generation's checkpoint is
 * identical byte for byte to the uninterrupted run's. */
START_TEST(test_checkpoint_round_trip) {
    mock_host *m = make_world(1);
    t2_job_spec j = job(SETTINGS);
    void *a = NULL;
    int done = 0;
    ck_assert_int_eq(OPS->start(mock_host_handle(m), &j, NULL, 0, &a), T2_OK);
    for (int i = 0; i < 4; i++) ck_assert_int_eq(OPS->step(a, mock_host_handle(m), &done), T2_OK);
    size_t len4 = m->checkpoint_len;
    void *ck4 = copy(m->checkpoint, len4);
    ck_assert_int_eq(OPS->step(a, mock_host_handle(m), &done), T2_OK);
    void *ck5 = copy(m->checkpoint, m->checkpoint_len);
    size_t len5 = m->checkpoint_len;
    mock_progress p5 = m->progress[m->n_progress - 1];
    OPS->stop(a);
    ck_assert_int_eq(len4, len5);
    ck_assert(memcmp(ck4, ck5, len4) != 0);   /* the search moved */

    mock_host_reset_counters(m);
    void *b = NULL;
    ck_assert_int_eq(OPS->start(mock_host_handle(m), &j, ck4, len4, &b), T2_OK);
    ck_assert(mock_host_log_contains(m, "resumed at generation 4"));
    ck_assert_int_eq(OPS->step(b, mock_host_handle(m), &done), T2_OK);
    ck_assert_int_eq(m->n_progress, 1);   /* no second base validation */
    ck_assert_int_eq(m->progress[0].step, 5);
    ck_assert_double_eq(m->progress[0].reward, p5.reward);
    ck_assert_str_eq(m->progress[0].message, p5.message);
    ck_assert_int_eq(m->checkpoint_len, len5);
    ck_assert_msg(!memcmp(m->checkpoint, ck5, len5), "the resumed run diverged");
    OPS->stop(b);

    /* broken checkpoints are refused with the reason */
    struct {
        size_t len;
        int corrupt;
        t2_status want;
        const char *msg;
    } bad[] = {{10, 0, T2_ERR_FORMAT, "checkpoint truncated"},
               {0, 1, T2_ERR_VERSION, "not a cem-svf checkpoint"},
               {0, 2, T2_ERR_FORMAT, "expected"}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *c = copy(ck4, len4);
        size_t len = bad[i].len ? bad[i].len : len4;
        if (bad[i].corrupt == 1) c[0] = 'X';
        if (bad[i].corrupt == 2) len -= 4;
        void *x = NULL;
        ck_assert_int_eq(OPS->start(mock_host_handle(m), &j, c, len, &x), bad[i].want);
        ck_assert_ptr_null(x);
        ck_assert_msg(mock_host_log_contains(m, bad[i].msg), "log lacks \"%s\": %s", bad[i].msg, m->log);
        free(c);
    }
    /* a checkpoint of another model (other z size) */
    mock_host *m2 = make_world(1);
    m2->matrix_len = 5;
    void *x = NULL;
    ck_assert_int_eq(OPS->start(mock_host_handle(m2), &j, ck4, len4, &x), T2_ERR_SHAPE);
    ck_assert(mock_host_log_contains(m2, "checkpoint is for another model"));
    mock_host_free(m2);
    free(ck4);
    free(ck5);
    ck_assert_int_eq(mock_host_live_experts(m), 0);
    ck_assert_int_eq(mock_host_open_datasets(m), 0);
    mock_host_free(m);
}
END_TEST

static void start_fails(mock_host *m, const char *dataset, const char *settings, t2_status want, const char *msg) {
    t2_job_spec j = job(settings);
    j.dataset = dataset;
    void *st = NULL;
    t2_status s = OPS->start(mock_host_handle(m), &j, NULL, 0, &st);
    ck_assert_msg(s == want, "%s: %s, want %s", settings, mock_status_name(s), mock_status_name(want));
    ck_assert_ptr_null(st);
    ck_assert_msg(mock_host_log_contains(m, msg), "log lacks \"%s\": %s", msg, m->log);
    ck_assert_int_eq(mock_host_open_datasets(m), 0);
}

START_TEST(test_bad_jobs) {
    mock_host *m = make_world(1);
    start_fails(m, "toy", "{\"generatons\": 3}", T2_ERR_INVALID_ARG, "unknown setting \"generatons\"");
    start_fails(m, "toy", "{\"population\": 2.5}", T2_ERR_INVALID_ARG, "\"population\" must be an integer");
    start_fails(m, "toy", "{\"init_std\": \"big\"}", T2_ERR_INVALID_ARG, "\"init_std\" must be a number");
    start_fails(m, "toy", "{\"fitness\": \"loss\"}", T2_ERR_INVALID_ARG, "\"fitness\" must be \"accuracy\" or \"reward\"");
    start_fails(m, "toy", "{\"z_max\": 0.5}", T2_ERR_INVALID_ARG, "settings out of range");
    start_fails(m, "toy", "{\"population\": 1}", T2_ERR_INVALID_ARG, "settings out of range");
    start_fails(m, "toy", "[]", T2_ERR_INVALID_ARG, "settings are not a JSON object");
    start_fails(m, "toy", "{", T2_ERR_INVALID_ARG, "settings are not a JSON object");
    start_fails(m, "missing", "{}", T2_ERR_NOT_FOUND, "dataset missing, split train cannot be opened");
    start_fails(m, "empty", "{}", T2_ERR_INVALID_ARG, "dataset empty has no train tasks");
    start_fails(m, NULL, "{}", T2_ERR_INVALID_ARG, "the job names no dataset");
    mock_host_free(m);
}
END_TEST

/* No validation split: validation on the training split, with a warning; a failing host call stops the
 * step with the reason; cancellation stops it too. */
START_TEST(test_fallbacks_and_failures) {
    mock_host *m = make_world(0);
    t2_job_spec j = job("{\"generations\": 2, \"population\": 4, \"batch\": 3, \"seed\": 1}");
    void *st = NULL;
    int done = 0;
    ck_assert_int_eq(OPS->start(mock_host_handle(m), &j, NULL, 0, &st), T2_OK);
    ck_assert(mock_host_log_contains(m, "no validation split in toy"));
    ck_assert_int_eq(OPS->step(st, mock_host_handle(m), &done), T2_OK);
    ck_assert_int_eq(m->n_generate_calls, 2);   /* the base validation over the training split, then a generation */
    ck_assert_int_eq(m->n_generate_rows, NT + 4 * 3);
    m->generate_status = T2_ERR_FULL;
    ck_assert_int_eq(OPS->step(st, mock_host_handle(m), &done), T2_ERR_FULL);
    ck_assert(mock_host_log_contains(m, "generate failed"));
    m->generate_status = T2_OK;
    m->cancelled = 1;
    ck_assert_int_eq(OPS->step(st, mock_host_handle(m), &done), T2_ERR_INTERNAL);
    m->cancelled = 0;
    ck_assert_int_eq(OPS->step(st, mock_host_handle(m), &done), T2_OK);   /* generation 2 of 2 */
    ck_assert_int_eq(done, 0);
    m->expert_save_status = T2_ERR_IO;
    ck_assert_int_eq(OPS->step(st, mock_host_handle(m), &done), T2_ERR_IO);
    ck_assert_int_eq(done, 0);
    ck_assert(mock_host_log_contains(m, "cannot be saved"));
    m->expert_save_status = T2_OK;
    ck_assert_int_eq(OPS->step(st, mock_host_handle(m), &done), T2_OK);
    ck_assert_int_eq(done, 1);
    ck_assert_ptr_nonnull(mock_host_saved(m, "svf-toy"));
    OPS->stop(st);
    OPS->stop(NULL);
    ck_assert_int_eq(mock_host_live_experts(m), 0);
    mock_host_free(m);
}
END_TEST

/* fitness "reward": the grader's score, not its verdict. */
static t2_status partial(mock_host *m, const char *grader, const t2_task *task, const char *output, t2_verdict *v) {
    (void)m, (void)grader, (void)task, (void)output;
    v->correct = 0;
    v->score = 0.25;
    return T2_OK;
}

START_TEST(test_reward_fitness) {
    mock_host *m = make_world(1);
    m->grade = partial;
    t2_job_spec j = job("{\"generations\": 1, \"population\": 4, \"batch\": 2, \"fitness\": \"reward\", \"seed\": 1}");
    void *st = NULL;
    int done = 0;
    ck_assert_int_eq(OPS->start(mock_host_handle(m), &j, NULL, 0, &st), T2_OK);
    ck_assert_int_eq(OPS->step(st, mock_host_handle(m), &done), T2_OK);
    ck_assert_double_eq_tol(m->progress[1].reward, 0.25, 1e-9);
    ck_assert_double_eq_tol(m->progress[1].accuracy, 0.0, 1e-9);   /* validation still counts correct answers */
    OPS->stop(st);
    mock_host_free(m);
}
END_TEST

int main(void) {
    Suite *s = suite_create("cem_svf");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_improves_and_saves);
    tcase_add_test(tc, test_checkpoint_round_trip);
    tcase_add_test(tc, test_bad_jobs);
    tcase_add_test(tc, test_fallbacks_and_failures);
    tcase_add_test(tc, test_reward_fitness);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
