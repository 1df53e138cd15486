/* The cem dispatch plugin (dispatch_cem.so) through the mock host.
 *
 * The setting: three experts whose z are unit vectors (expert j has z = 1 at position j of every matrix,
 * 0 elsewhere), so a mixture's z holds its α directly: z'[m·3 + j] = α of expert j on matrix m. The mock
 * model answers example t correctly when the mixture's α is within tol_t = 0.04·(t + 1) (max-norm) of a
 * known α*, so accuracy peaks at α*; the correct answers' log-likelihood falls with the distance to α*
 * (the tie key). The plugin must find α*, store it under the task id, and answer a second query of the
 * task from the store without generating anything. */
#include "mock_host.h"

#include <check.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define K 3
#define NM 2
#define N_EX 10

typedef struct world {
    float target[K][NM];   /* α* of expert j on matrix m */
    int per_matrix;        /* 1: the model's accuracy depends on every matrix's α separately */
} world;

static const t2_host_api *A;
static const t2_plugin *PL;
static void *SO;

static void setup(void) {
    char err[512];
    A = mock_host_api();
    PL = mock_plugin_open(T2_TEST_DISPATCH_DIR "/dispatch_cem.so", &SO, err, sizeof err);
    ck_assert_msg(PL != NULL, "%s", err);
    ck_assert_str_eq(PL->name, "cem");
    ck_assert_int_eq(PL->kind, T2_PLUGIN_DISPATCH);
}

static void teardown(void) { mock_plugin_close(SO); }

/* Max-norm distance of a mixture's α (read off its z) to α*. */
static double distance(const world *w, const t2_hexpert *e) {
    const float *z = mock_expert_z(e);
    double d = 0;
    for (int j = 0; j < K; j++)
        for (int m = 0; m < NM; m++) {
            double x = fabs(z[m * K + j] - w->target[j][w->per_matrix ? m : 0]);
            if (x > d) d = x;
        }
    return d;
}

static int example_index(const char *prompt) {
    int t = -1;
    return sscanf(prompt, "question %d", &t) == 1 ? t : -1;
}

static char *answer(mock_host *m, const char *prompt, const t2_hexpert *e, const t2_gen_params *p, int row, double *lp) {
    (void)p, (void)row, (void)lp;
    const world *w = m->user;
    int t = example_index(prompt);
    ck_assert_msg(t >= 0 && e != NULL, "prompt \"%s\" under %p", prompt, (const void *)e);
    char *s = NULL;
    if (distance(w, e) < 0.04 * (t + 1)) ck_assert_int_ge(asprintf(&s, "The answer is \\boxed{%d}.", 100 + t), 0);
    else s = strdup("I do not know.");
    return s;
}

static double loglik(mock_host *m, const char *prompt, const char *completion, const t2_hexpert *e, int chat, const char *system,
                     int *n_tokens) {
    (void)prompt, (void)system;
    ck_assert_int_eq(chat, 1);
    ck_assert_ptr_nonnull(strstr(completion, "answer"));   /* the solution is what gets scored */
    *n_tokens = 10;
    return -10.0 * (1 + 5 * distance(m->user, e));
}

/* A mock with the three unit-vector experts and the examples "few" (N_EX tasks, system prompt sys). */
static mock_host *make_world(world *w, const char *sys) {
    mock_host *m = mock_host_new();
    m->n_matrices = NM;
    m->matrix_len = K;
    static const char *names[K] = {"math", "code", "reasoning"};
    for (int j = 0; j < K; j++) {
        float z[NM * K] = {0};
        for (int mm = 0; mm < NM; mm++) z[mm * K + j] = 1;
        ck_assert_int_eq(mock_host_add_expert(m, names[j], names[j], z), T2_OK);
    }
    t2_task ts[N_EX];
    char prompts[N_EX][32], answers[N_EX][16], sols[N_EX][64], ids[N_EX][16];
    for (int t = 0; t < N_EX; t++) {
        snprintf(prompts[t], sizeof prompts[t], "question %d", t);
        snprintf(answers[t], sizeof answers[t], "%d", 100 + t);
        snprintf(sols[t], sizeof sols[t], "so the answer is \\boxed{%d}", 100 + t);
        snprintf(ids[t], sizeof ids[t], "ex%d", t);
        ts[t] = (t2_task){.id = ids[t], .prompt = prompts[t], .answer = answers[t], .solution = sols[t], .grader = "math", .system = sys};
    }
    ck_assert_int_eq(mock_host_add_dataset(m, "few", "train", ts, N_EX), T2_OK);
    m->generate = answer;
    m->score = loglik;
    m->user = w;
    return m;
}

static t2_status run(mock_host *m, void *state, const char *task_id, const char *examples, const char *settings, t2_dispatch_decision *dd) {
    memset(dd, 0, sizeof *dd);
    t2_dispatch_request rq = {.prompt = "the user's question", .task_id = task_id, .examples = examples, .settings_json = settings};
    return ((const t2_dispatch_ops *)PL->ops)->decide(state, mock_host_handle(m), &rq, dd);
}

static void *init_state(const char *config) {
    void *state = NULL;
    ck_assert_int_eq(PL->init(A, config, &state), T2_OK);
    return state;
}

START_TEST(test_finds_known_alpha_and_caches_it) {
    world w = {.target = {{0.7f}, {0.2f}, {0.0f}}};
    mock_host *m = make_world(&w, "Solve it.");
    void *state = init_state("{}");
    t2_dispatch_decision dd;
    t2_status st = run(m, state, "task-7", "few", "{}", &dd);
    ck_assert_msg(st == T2_OK, "%s: %s", mock_status_name(st), dd.detail);
    /* the mixture found is α* */
    ck_assert_ptr_nonnull(dd.expert);
    double d = distance(&w, dd.expert);
    ck_assert_msg(d < 0.08, "α is %g away from α*: %s", d, dd.detail);
    ck_assert_str_eq(dd.label, "cem");
    json_t *o = json_loads(dd.detail, 0, NULL);
    ck_assert_msg(json_is_object(o), "detail %s", dd.detail);
    ck_assert_int_eq(json_array_size(json_object_get(o, "experts")), 3);
    ck_assert_str_eq(json_string_value(json_array_get(json_object_get(o, "experts"), 0)), "math");
    ck_assert_int_eq(json_array_size(json_object_get(o, "alpha")), 3);
    ck_assert(json_is_false(json_object_get(o, "cached")));
    ck_assert_int_eq(json_integer_value(json_object_get(o, "generations")), 10);
    ck_assert(json_real_value(json_object_get(o, "fitness")) >= 0.8);
    json_decref(o);
    /* one generate call per generation, every candidate × example in it, greedy, chat, the examples' system prompt */
    ck_assert_int_eq(m->n_generate_calls, 10);
    ck_assert_int_eq(m->max_generate_rows, 32 * N_EX);
    ck_assert_int_eq(m->n_generate_rows, 10 * 32 * N_EX);
    ck_assert_int_eq(m->last_chat, 1);
    ck_assert_float_eq(m->last_gen.temperature, 0.0f);
    ck_assert_str_eq(m->last_system, "Solve it.");
    ck_assert_int_gt(m->n_score_calls, 0);   /* ties were broken by the correct answers' likelihood */
    /* stored under the task id */
    size_t len;
    const char *rec = mock_host_kv_find(m, "cem/task-7", &len);
    ck_assert_ptr_nonnull(rec);
    o = json_loadb(rec, len, 0, NULL);
    ck_assert_int_eq(json_integer_value(json_object_get(o, "version")), 1);
    ck_assert_int_eq(json_array_size(json_object_get(o, "alpha")), 3);
    for (int j = 0; j < K; j++)
        ck_assert_float_eq_tol(json_number_value(json_array_get(json_object_get(o, "alpha"), (size_t)j)), mock_expert_z(dd.expert)[j], 1e-6);
    json_decref(o);
    float z1[NM * K];
    memcpy(z1, mock_expert_z(dd.expert), sizeof z1);
    A->expert_free(dd.expert);

    /* a later query of the task: from the store, nothing generated or scored, examples not needed */
    mock_host_reset_counters(m);
    st = run(m, state, "task-7", NULL, "{}", &dd);
    ck_assert_msg(st == T2_OK, "%s: %s", mock_status_name(st), dd.detail);
    ck_assert_int_eq(m->n_generate_calls, 0);
    ck_assert_int_eq(m->n_score_calls, 0);
    ck_assert_int_eq(m->n_grade_calls, 0);
    ck_assert(!memcmp(mock_expert_z(dd.expert), z1, sizeof z1));
    o = json_loads(dd.detail, 0, NULL);
    ck_assert_msg(json_is_true(json_object_get(o, "cached")), "detail %s", dd.detail);
    ck_assert_int_eq(json_array_size(json_object_get(o, "alpha")), 3);
    json_decref(o);
    A->expert_free(dd.expert);

    /* refresh searches again */
    st = run(m, state, "task-7", "few", "{\"refresh\": true, \"generations\": 2}", &dd);
    ck_assert_int_eq(st, T2_OK);
    ck_assert_int_eq(m->n_generate_calls, 2);
    A->expert_free(dd.expert);
    ck_assert_int_eq(mock_host_live_experts(m), 0);
    ck_assert_int_eq(mock_host_open_datasets(m), 0);
    PL->fini(state);
    mock_host_free(m);
}
END_TEST

/* One α per expert per matrix: matrices want different α, only per_matrix can reach accuracy 1. */
/* By default the search mixes the tenant's SVF experts: not the classification expert, not a LoRA. */
START_TEST(test_default_experts) {
    world w = {.target = {{0.7f}, {0.2f}, {0.0f}}};
    mock_host *m = make_world(&w, "Solve it.");
    ck_assert_int_eq(mock_host_add_expert(m, "classifier", "classifier", NULL), T2_OK);
    ck_assert_int_eq(mock_host_add_expert(m, "lora-math", "math", NULL), T2_OK);
    ck_assert_int_eq(mock_host_set_expert_kind(m, "lora-math", "lora"), T2_OK);
    void *state = init_state("{}");
    t2_dispatch_decision dd;
    t2_status st = run(m, state, "task-d", "few", "{\"generations\": 2}", &dd);
    ck_assert_msg(st == T2_OK, "%s: %s", mock_status_name(st), dd.detail);
    json_t *o = json_loads(dd.detail, 0, NULL), *ex = json_object_get(o, "experts");
    ck_assert_int_eq(json_array_size(ex), 3);
    for (size_t i = 0; i < json_array_size(ex); i++) {
        ck_assert_str_ne(json_string_value(json_array_get(ex, i)), "classifier");
        ck_assert_str_ne(json_string_value(json_array_get(ex, i)), "lora-math");
    }
    json_decref(o);
    A->expert_free(dd.expert);
    PL->fini(state);
    mock_host_free(m);
}
END_TEST

START_TEST(test_per_matrix) {
    world w = {.target = {{0.9f, 0.1f}, {0.0f, 0.6f}, {0.4f, 1.0f}}, .per_matrix = 1};
    mock_host *m = make_world(&w, "");
    void *state = init_state("{}");
    t2_dispatch_decision dd;
    t2_status st = run(m, state, "pm", "few", "{\"per_matrix\": true, \"generations\": 20}", &dd);
    ck_assert_msg(st == T2_OK, "%s: %s", mock_status_name(st), dd.detail);
    double d = distance(&w, dd.expert);
    ck_assert_msg(d < 0.1, "α is %g away from α*: %s", d, dd.detail);
    json_t *o = json_loads(dd.detail, 0, NULL);
    ck_assert_int_eq(json_array_size(json_object_get(o, "alpha")), K * NM);
    ck_assert(json_is_true(json_object_get(o, "per_matrix")));
    json_decref(o);
    ck_assert_str_eq(m->last_system, "");
    ck_assert_ptr_null(m->last_gen.system);
    A->expert_free(dd.expert);
    /* reused per matrix too */
    st = run(m, state, "pm", NULL, "{}", &dd);
    ck_assert_int_eq(st, T2_OK);
    ck_assert(distance(&w, dd.expert) < 0.1);
    A->expert_free(dd.expert);
    ck_assert_int_eq(mock_host_live_experts(m), 0);
    PL->fini(state);
    mock_host_free(m);
}
END_TEST

/* "experts" restricts the mixture; "n" the examples; the config's settings apply under the request's. */
START_TEST(test_settings_restrict_and_merge) {
    world w = {.target = {{0.0f}, {0.5f}, {0.5f}}};
    mock_host *m = make_world(&w, "s");
    void *state = init_state("{\"generations\": 3, \"population\": 8}");
    t2_dispatch_decision dd;
    t2_status st = run(m, state, "t", "few", "{\"experts\": [\"code\", \"reasoning\"], \"n\": 4}", &dd);
    ck_assert_msg(st == T2_OK, "%s: %s", mock_status_name(st), dd.detail);
    ck_assert_int_eq(m->n_generate_calls, 3);
    ck_assert_int_eq(m->max_generate_rows, 8 * 4);
    json_t *o = json_loads(dd.detail, 0, NULL);
    ck_assert_int_eq(json_array_size(json_object_get(o, "experts")), 2);
    ck_assert_str_eq(json_string_value(json_array_get(json_object_get(o, "experts"), 0)), "code");
    ck_assert_int_eq(json_integer_value(json_object_get(o, "examples")), 4);
    json_decref(o);
    ck_assert_float_eq(mock_expert_z(dd.expert)[0], 0.0f);   /* math is not in the mixture */
    A->expert_free(dd.expert);
    PL->fini(state);
    mock_host_free(m);
}
END_TEST

/* Examples with two system prompts: one generate call per system prompt and generation. */
START_TEST(test_two_system_prompts) {
    world w = {.target = {{0.5f}, {0.5f}, {0.5f}}};
    mock_host *m = mock_host_new();
    m->n_matrices = NM;
    m->matrix_len = K;
    mock_host_add_expert(m, "a", "a", NULL);
    t2_task ts[3] = {{.id = "1", .prompt = "question 1", .answer = "101", .system = "A"},
                     {.id = "2", .prompt = "question 2", .answer = "102", .system = "B"},
                     {.id = "3", .prompt = "question 3", .answer = "103", .system = "A"}};
    mock_host_add_dataset(m, "mixed", NULL, ts, 3);
    m->generate = answer;
    m->user = &w;
    void *state = init_state("{}");
    t2_dispatch_decision dd;
    t2_status st = run(m, state, "t", "mixed", "{\"generations\": 2, \"population\": 4}", &dd);
    ck_assert_msg(st == T2_OK, "%s: %s", mock_status_name(st), dd.detail);
    ck_assert_int_eq(m->n_generate_calls, 4);
    ck_assert_int_eq(m->n_generate_rows, 2 * 4 * 3);
    A->expert_free(dd.expert);
    PL->fini(state);
    mock_host_free(m);
}
END_TEST

static void expect_error(mock_host *m, void *state, const char *task, const char *examples, const char *settings, t2_status want,
                         const char *msg) {
    t2_dispatch_decision dd;
    t2_status st = run(m, state, task, examples, settings, &dd);
    ck_assert_msg(st == want, "%s: %s, want %s (detail %s)", settings, mock_status_name(st), mock_status_name(want), dd.detail);
    json_t *o = json_loads(dd.detail, 0, NULL);
    const char *e = json_string_value(json_object_get(o, "error"));
    ck_assert_msg(e && strstr(e, msg), "detail %s lacks an error with \"%s\"", dd.detail, msg);
    json_decref(o);
    ck_assert_msg(mock_host_log_contains(m, msg), "log lacks \"%s\": %s", msg, m->log);
    ck_assert_ptr_null(dd.expert);
    ck_assert_int_eq(mock_host_live_experts(m), 0);
    ck_assert_int_eq(mock_host_open_datasets(m), 0);
}

START_TEST(test_errors) {
    world w = {.target = {{0.5f}, {0.5f}, {0.5f}}};
    mock_host *m = make_world(&w, "");
    void *state = init_state("{}");
    expect_error(m, state, NULL, "few", "{}", T2_ERR_INVALID_ARG, "cem needs a task id");
    expect_error(m, state, "", "few", "{}", T2_ERR_INVALID_ARG, "cem needs a task id");
    expect_error(m, state, "t", NULL, "{}", T2_ERR_INVALID_ARG, "no stored α and the request gives no examples");
    expect_error(m, state, "t", "nowhere", "{}", T2_ERR_NOT_FOUND, "examples \"nowhere\" cannot be opened");
    expect_error(m, state, "t", "few", "{\"split\": \"test\"}", T2_ERR_NOT_FOUND, "(split test) cannot be opened");
    expect_error(m, state, "t", "few", "{\"bogus\": 1}", T2_ERR_INVALID_ARG, "unknown setting \"bogus\"");
    expect_error(m, state, "t", "few", "{\"generations\": \"ten\"}", T2_ERR_INVALID_ARG, "\"generations\" must be an integer");
    expect_error(m, state, "t", "few", "{\"generations\": 0}", T2_ERR_INVALID_ARG, "settings out of range");
    expect_error(m, state, "t", "few", "{\"elite_ratio\": 1.5}", T2_ERR_INVALID_ARG, "settings out of range");
    expect_error(m, state, "t", "few", "{\"per_matrix\": 1}", T2_ERR_INVALID_ARG, "must be true or false");
    expect_error(m, state, "t", "few", "[1, 2]", T2_ERR_INVALID_ARG, "settings are not a JSON object");
    expect_error(m, state, "t", "few", "{\"experts\": []}", T2_ERR_INVALID_ARG, "\"experts\" must be an array");
    expect_error(m, state, "t", "few", "{\"experts\": [\"math\", 3]}", T2_ERR_INVALID_ARG, "item 1 is not an expert name");
    expect_error(m, state, "t", "few", "{\"experts\": [\"math\", \"nope\"]}", T2_ERR_NOT_FOUND, "expert \"nope\" cannot be opened");
    expect_error(m, state, "t", "few", "{\"experts\": [\"math\", \"math\"]}", T2_ERR_INVALID_ARG, "listed twice");
    char long_id[300];
    memset(long_id, 'x', sizeof long_id - 1);
    long_id[sizeof long_id - 1] = 0;
    expect_error(m, state, long_id, "few", "{}", T2_ERR_INVALID_ARG, "longer than 196 bytes");
    /* host failures come back with what failed */
    m->generate_status = T2_ERR_FULL;
    expect_error(m, state, "t", "few", "{}", T2_ERR_FULL, "generating the examples' answers failed");
    m->generate_status = T2_OK;
    m->cancelled = 1;
    expect_error(m, state, "t", "few", "{}", T2_ERR_INTERNAL, "cancelled");
    m->cancelled = 0;
    m->kv_put_status = T2_ERR_IO;
    expect_error(m, state, "t", "few", "{\"generations\": 1}", T2_ERR_IO, "cannot be stored");
    m->kv_put_status = T2_OK;
    mock_host_add_dataset(m, "empty", NULL, NULL, 0);
    expect_error(m, state, "t", "empty", "{}", T2_ERR_INVALID_ARG, "hold no tasks");
    ck_assert_int_eq(mock_host_kv_count(m), 0);   /* nothing stored by a failed search */
    PL->fini(state);
    mock_host_free(m);

    /* a tenant without experts */
    m = mock_host_new();
    t2_task one = {.id = "1", .prompt = "question 1", .answer = "101"};
    mock_host_add_dataset(m, "few", NULL, &one, 1);
    state = init_state("{}");
    expect_error(m, state, "t", "few", "{}", T2_ERR_NOT_FOUND, "no experts to mix");
    PL->fini(state);
    mock_host_free(m);

    /* a bad config is refused at init */
    state = NULL;
    ck_assert_int_eq(PL->init(A, "{\"population\": 1}", &state), T2_ERR_INVALID_ARG);
    ck_assert_int_eq(PL->init(A, "{\"nope\": 1}", &state), T2_ERR_INVALID_ARG);
    ck_assert_int_eq(PL->init(A, "not json", &state), T2_ERR_INVALID_ARG);
    ck_assert_ptr_null(state);
}
END_TEST

/* A stored α that no longer fits (expert gone, garbage) is searched again when examples are given, and an
 * error that says so otherwise. */
START_TEST(test_stale_record) {
    world w = {.target = {{0.3f}, {0.3f}, {0.3f}}};
    mock_host *m = make_world(&w, "");
    void *state = init_state("{\"generations\": 2, \"population\": 4}");
    const char *gone = "{\"version\":1,\"experts\":[\"math\",\"deleted\"],\"per_matrix\":false,\"alpha\":[0.5,0.5],\"fitness\":1,"
                       "\"generations\":2,\"examples\":3}";
    mock_host_kv_put(m, "cem/t", gone, strlen(gone));
    expect_error(m, state, "t", NULL, "{}", T2_ERR_FORMAT, "expert \"deleted\" cannot be opened");
    t2_dispatch_decision dd;
    t2_status st = run(m, state, "t", "few", "{}", &dd);
    ck_assert_msg(st == T2_OK, "%s: %s", mock_status_name(st), dd.detail);
    ck_assert_int_eq(m->n_generate_calls, 2);
    ck_assert(mock_host_log_contains(m, "stored α unusable"));
    A->expert_free(dd.expert);
    size_t len;
    const char *rec = mock_host_kv_find(m, "cem/t", &len);
    ck_assert_ptr_null(strstr(rec, "deleted"));   /* replaced */

    const char *bad[] = {"garbage", "{\"version\":2}", "{\"version\":1,\"experts\":[\"math\"],\"alpha\":[0.5,0.5]}",
                         "{\"version\":1,\"experts\":[\"math\"],\"alpha\":[\"x\"]}",
                         "{\"version\":1,\"experts\":[\"math\"],\"per_matrix\":true,\"alpha\":[0.5]}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        mock_host_kv_put(m, "cem/t", bad[i], strlen(bad[i]));
        st = run(m, state, "t", NULL, "{}", &dd);
        ck_assert_msg(st == T2_ERR_FORMAT, "%s accepted: %s", bad[i], mock_status_name(st));
        ck_assert_ptr_nonnull(strstr(dd.detail, "give examples to search again"));
        ck_assert_int_eq(mock_host_live_experts(m), 0);
    }
    PL->fini(state);
    mock_host_free(m);
}
END_TEST

int main(void) {
    Suite *s = suite_create("cem_dispatch");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_finds_known_alpha_and_caches_it);
    tcase_add_test(tc, test_default_experts);
    tcase_add_test(tc, test_per_matrix);
    tcase_add_test(tc, test_settings_restrict_and_merge);
    tcase_add_test(tc, test_two_system_prompts);
    tcase_add_test(tc, test_errors);
    tcase_add_test(tc, test_stale_record);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
