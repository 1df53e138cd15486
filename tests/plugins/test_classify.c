/* The first pass by classification: the prompt and classifier dispatch plugins pick the right expert in
 * settings built so the right answer is known (a mock model that answers the classification prompt
 * correctly only when it should), and the cls trainer trains on exactly the prompt they ask. */
#include "classify.h"
#include "mock_host.h"
#include "pconfig.h"

#include <jansson.h>

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const t2_host_api *A;

/* ---------------- the prompt and its parsing ---------------- */

START_TEST(test_parse) {
    const char *labels[] = {"math", "code", "reasoning"};
    ck_assert_int_eq(t2_classify_parse("Classification: \\boxed{math}", labels, 3), 0);
    ck_assert_int_eq(t2_classify_parse("Classification: \\boxed{ Code }", labels, 3), 1);
    ck_assert_int_eq(t2_classify_parse("first \\boxed{math} then \\boxed{reasoning}", labels, 3), 2);
    ck_assert_int_eq(t2_classify_parse("Classification: reasoning.", labels, 3), 2);
    ck_assert_int_eq(t2_classify_parse("Classification: \\boxed{others}", labels, 3), -1);
    ck_assert_int_eq(t2_classify_parse("Classification: \\boxed{poetry}", labels, 3), -1);
    ck_assert_int_eq(t2_classify_parse("\\boxed{math", labels, 3), 0);   /* cut off by max_tokens */
    ck_assert_int_eq(t2_classify_parse("no answer at all", labels, 3), -1);
    ck_assert_int_eq(t2_classify_parse("", labels, 3), -1);
    ck_assert_int_eq(t2_classify_parse(NULL, labels, 3), -1);
    ck_assert_int_eq(t2_classify_parse("\\boxed{mathematics}", labels, 3), -1);
}
END_TEST

START_TEST(test_system_and_labels) {
    const char *json = "[{\"name\":\"lm\",\"label\":\"math\",\"kind\":\"lora\"},{\"name\":\"lp\",\"label\":\"poetry\",\"kind\":\"lora\"},"
                       "{\"name\":\"m\",\"label\":\"math\"},{\"name\":\"c\",\"label\":\"code\",\"kind\":\"svf\"},{\"name\":\"m2\",\"label\":\"math\"},"
                       "{\"name\":\"k\",\"label\":\"classifier\"},{\"name\":\"x\",\"label\":\"\"}]";
    char pool[256];
    const char *labels[8];
    int n = t2_classify_labels(json, "classifier", pool, labels, 8);
    ck_assert_int_eq(n, 2);
    ck_assert_str_eq(labels[0], "math");
    ck_assert_str_eq(labels[1], "code");
    char *sys = t2_classify_system(labels, n);
    ck_assert_ptr_nonnull(strstr(sys, "math, code, or others"));
    ck_assert_ptr_nonnull(strstr(sys, "\\boxed{kind}"));
    free(sys);
    ck_assert_int_eq(t2_classify_labels("not json", NULL, pool, labels, 8), 0);
    /* a label names the SVF expert (LoRA experts are baselines, neither listed nor chosen); by name, any kind */
    json_t *arr = json_loads(json, 0, NULL);
    ck_assert_str_eq(t2p_expert_where(arr, "label", "math", "name"), "m");
    ck_assert_ptr_null(t2p_expert_where(arr, "label", "poetry", "name"));
    ck_assert_str_eq(t2p_expert_where(arr, "name", "lm", "label"), "math");
    json_decref(arr);
}
END_TEST

/* ---------------- dispatch through a mock model ---------------- */

/* The mock model knows the answer from keywords, but a classification answer only comes under `who`
 * (NULL: the base model answers it; else only the expert of that name does). */
typedef struct oracle {
    const char *who;
    int calls;
} oracle;

static char *classify_gen(mock_host *m, const char *prompt, const t2_hexpert *e, const t2_gen_params *p, int row, double *lp) {
    (void)row;
    (void)lp;
    oracle *o = m->user;
    o->calls++;
    int is_classify = p->system && strstr(p->system, "kind of specialist");
    int able = o->who ? e && !strcmp(mock_expert_name(e), o->who) : !e;
    if (!is_classify || !able) return strdup("I am not sure. \\boxed{others}");
    const char *label = strstr(prompt, "integral") ? "math" : strstr(prompt, "python") ? "code" : "poetry";
    char *out = malloc(64);
    snprintf(out, 64, "Classification: \\boxed{%s}", label);
    return out;
}

static const t2_plugin *open_plugin(const char *name, void **so) {
    char path[512], err[256];
    snprintf(path, sizeof path, "%s/dispatch_%s.so", T2_TEST_DISPATCH_DIR, name);
    const t2_plugin *pl = mock_plugin_open(path, so, err, sizeof err);
    ck_assert_msg(pl != NULL, "%s", err);
    return pl;
}

static mock_host *model_with_experts(oracle *o) {
    mock_host *m = mock_host_new();
    A = mock_host_api();
    ck_assert_int_eq(mock_host_add_expert(m, "algebra", "math", NULL), T2_OK);
    ck_assert_int_eq(mock_host_add_expert(m, "coder", "code", NULL), T2_OK);
    ck_assert_int_eq(mock_host_add_expert(m, "router", "classifier", NULL), T2_OK);
    m->generate = classify_gen;
    m->user = o;
    return m;
}

/* Run one decision; returns the chosen expert's name ("" for the base model) in a static buffer. */
static const char *decide(const t2_plugin *pl, void *state, mock_host *m, const char *prompt, const char *settings,
                          t2_dispatch_decision *dd, t2_status *st) {
    static char name[160];
    memset(dd, 0, sizeof *dd);
    t2_dispatch_request rq = {.prompt = prompt, .settings_json = settings ? settings : "{}"};
    *st = ((const t2_dispatch_ops *)pl->ops)->decide(state, mock_host_handle(m), &rq, dd);
    snprintf(name, sizeof name, "%s", dd->expert ? mock_expert_name(dd->expert) : "");
    A->expert_free(dd->expert);
    dd->expert = NULL;
    return name;
}

START_TEST(test_prompt_dispatch) {
    oracle o = {.who = NULL};
    mock_host *m = model_with_experts(&o);
    void *so, *state = NULL;
    const t2_plugin *pl = open_plugin("prompt", &so);
    ck_assert_str_eq(pl->name, "prompt");
    ck_assert_int_eq(pl->init(A, "{}", &state), T2_OK);
    t2_dispatch_decision dd;
    t2_status st;
    ck_assert_str_eq(decide(pl, state, m, "Compute the integral of x^2.", NULL, &dd, &st), "algebra");
    ck_assert_int_eq(st, T2_OK);
    ck_assert_str_eq(dd.label, "math");
    ck_assert_ptr_nonnull(strstr(dd.detail, "\"first_pass\":\"Classification: \\\\boxed{math}\""));
    /* the first pass: base model, greedy, chat, the classification system prompt cached, labels listed
     * without the classifier's own label */
    ck_assert_int_eq(m->last_chat, 1);
    ck_assert_int_eq(m->last_gen.cache_system, 1);
    ck_assert_float_eq(m->last_gen.temperature, 0);
    ck_assert_ptr_nonnull(strstr(m->last_system, "math, code, or others"));
    ck_assert_ptr_null(strstr(m->last_system, "classifier"));
    ck_assert_str_eq(decide(pl, state, m, "Write a python function that sorts a list.", NULL, &dd, &st), "coder");
    ck_assert_str_eq(dd.label, "code");
    /* an unknown label and "others" mean the base model */
    ck_assert_str_eq(decide(pl, state, m, "Write a sonnet about the sea.", NULL, &dd, &st), "");
    ck_assert_int_eq(st, T2_OK);
    ck_assert_str_eq(dd.label, "");
    ck_assert_int_eq(o.calls, 3);
    ck_assert_int_eq(mock_host_live_experts(m), 0);
    pl->fini(state);
    mock_host_free(m);
    mock_plugin_close(so);
}
END_TEST

START_TEST(test_prompt_dispatch_no_experts) {
    mock_host *m = mock_host_new();
    A = mock_host_api();
    void *so, *state = NULL;
    const t2_plugin *pl = open_plugin("prompt", &so);
    ck_assert_int_eq(pl->init(A, "{}", &state), T2_OK);
    t2_dispatch_decision dd;
    t2_status st;
    ck_assert_str_eq(decide(pl, state, m, "anything", NULL, &dd, &st), "");
    ck_assert_int_eq(st, T2_OK);
    ck_assert_int_eq(m->n_generate_calls, 0);   /* nothing to choose from: no first pass at all */
    ck_assert_ptr_nonnull(strstr(dd.detail, "no labelled experts"));
    /* a broken registry is an error, not a silent base-model answer */
    m->omit_experts_json = 1;
    decide(pl, state, m, "anything", NULL, &dd, &st);
    ck_assert_int_ne(st, T2_OK);
    /* settings that are not JSON */
    ck_assert_int_eq(decide(pl, state, m, "x", "[1,", &dd, &st)[0], 0);
    ck_assert_int_eq(st, T2_ERR_INVALID_ARG);
    pl->fini(state);
    mock_host_free(m);
    mock_plugin_close(so);
}
END_TEST

START_TEST(test_classifier_dispatch) {
    /* only the classification expert "router" knows how to classify */
    oracle o = {.who = "router"};
    mock_host *m = model_with_experts(&o);
    void *so, *state = NULL, *pso, *pstate = NULL;
    const t2_plugin *pl = open_plugin("classifier", &so), *prompt = open_plugin("prompt", &pso);
    ck_assert_str_eq(pl->name, "classifier");
    ck_assert_int_eq(pl->init(A, "{}", &state), T2_OK);
    ck_assert_int_eq(prompt->init(A, "{}", &pstate), T2_OK);
    t2_dispatch_decision dd;
    t2_status st;
    ck_assert_str_eq(decide(pl, state, m, "Compute the integral of x^2.", NULL, &dd, &st), "algebra");
    ck_assert_str_eq(decide(pl, state, m, "A python question.", NULL, &dd, &st), "coder");
    ck_assert_ptr_nonnull(strstr(dd.detail, "\"classifier\":\"router\""));
    /* the base model cannot: the prompt strategy falls back to the base model here */
    ck_assert_str_eq(decide(prompt, pstate, m, "Compute the integral of x^2.", NULL, &dd, &st), "");
    /* another classification expert named in the settings is used instead (and here it cannot classify) */
    ck_assert_str_eq(decide(pl, state, m, "Compute the integral of x^2.", "{\"expert\": \"coder\"}", &dd, &st), "");
    ck_assert_int_eq(st, T2_OK);
    ck_assert_int_eq(mock_host_live_experts(m), 0);
    pl->fini(state);
    prompt->fini(pstate);
    mock_host_free(m);
    mock_plugin_close(so);
    mock_plugin_close(pso);
}
END_TEST

START_TEST(test_classifier_missing) {
    mock_host *m = mock_host_new();
    A = mock_host_api();
    ck_assert_int_eq(mock_host_add_expert(m, "algebra", "math", NULL), T2_OK);
    void *so, *state = NULL;
    const t2_plugin *pl = open_plugin("classifier", &so);
    ck_assert_int_eq(pl->init(A, "{}", &state), T2_OK);
    t2_dispatch_decision dd;
    t2_status st;
    decide(pl, state, m, "Compute the integral.", NULL, &dd, &st);
    ck_assert_int_eq(st, T2_ERR_NOT_FOUND);
    ck_assert(mock_host_log_contains(m, "no classification expert"));
    decide(pl, state, m, "Compute the integral.", "{\"expert\": \"nosuch\"}", &dd, &st);
    ck_assert_int_eq(st, T2_ERR_NOT_FOUND);
    pl->fini(state);
    mock_host_free(m);
    mock_plugin_close(so);
}
END_TEST

/* ---------------- the cls trainer ---------------- */

typedef struct seen {
    int classify_prompts, label_grades, other_grades;
} seen;

static char *cls_gen(mock_host *m, const char *prompt, const t2_hexpert *e, const t2_gen_params *p, int row, double *lp) {
    (void)e;
    (void)row;
    (void)lp;
    seen *s = m->user;
    s->classify_prompts += p->system && strstr(p->system, "kind of specialist") && strstr(p->system, "math, code, or others");
    (void)prompt;
    return strdup("Classification: \\boxed{math}");   /* always math: right on half the tasks */
}

static t2_status cls_grade(mock_host *m, const char *grader, const t2_task *t, const char *out, t2_verdict *v) {
    seen *s = m->user;
    if (grader && !strcmp(grader, "label")) s->label_grades++;
    else s->other_grades++;
    v->correct = strstr(out, t->answer) != NULL;
    v->score = v->correct;
    return T2_OK;
}

START_TEST(test_cls_trainer) {
    mock_host *m = mock_host_new();
    A = mock_host_api();
    seen s = {0};
    m->user = &s;
    m->generate = cls_gen;
    m->grade = cls_grade;
    ck_assert_int_eq(mock_host_add_expert(m, "algebra", "math", NULL), T2_OK);
    ck_assert_int_eq(mock_host_add_expert(m, "coder", "code", NULL), T2_OK);
    t2_task tasks[4] = {{.id = "1", .prompt = "the integral of x", .label = "math", .answer = "2", .grader = "math"},
                        {.id = "2", .prompt = "a python loop", .label = "code", .answer = "def", .grader = "code"},
                        {.id = "3", .prompt = "the integral of y", .label = "math", .answer = "3", .grader = "math"},
                        {.id = "4", .prompt = "python sort", .label = "code", .answer = "def", .grader = "code"}};
    ck_assert_int_eq(mock_host_add_dataset(m, "mixed", NULL, tasks, 4), T2_OK);
    char path[512], err[256];
    snprintf(path, sizeof path, "%s/trainer_cls.so", T2_TEST_TRAINER_DIR);
    void *so;
    const t2_plugin *pl = mock_plugin_open(path, &so, err, sizeof err);
    ck_assert_msg(pl != NULL, "%s", err);
    ck_assert_str_eq(pl->name, "cls");
    const t2_trainer_ops *ops = pl->ops;
    t2_job_spec job = {.id = 1, .expert_name = "router", .label = "classifier", .dataset = "mixed", .grader = "",
                       .settings_json = "{\"steps\": 3, \"batch\": 4, \"eval_every\": 1, \"val_size\": 4}"};
    void *state = NULL;
    ck_assert_int_eq(ops->start(mock_host_handle(m), &job, NULL, 0, &state), T2_OK);
    int done = 0, steps = 0;
    while (!done && steps < 10) {
        ck_assert_int_eq(ops->step(state, mock_host_handle(m), &done), T2_OK);
        steps++;
    }
    ops->stop(state);
    ck_assert(done);
    /* every generation asked the classification question over the experts' labels, every grade was the
     * label grader's, against the label: half the tasks are math, the mock always says math */
    ck_assert_int_eq(s.classify_prompts, (int)m->n_generate_rows);
    ck_assert_int_gt(s.label_grades, 0);
    ck_assert_int_eq(s.other_grades, 0);
    const mock_saved *saved = mock_host_saved(m, "router");
    ck_assert_ptr_nonnull(saved);
    ck_assert_str_eq(saved->label, "classifier");
    ck_assert_ptr_nonnull(strstr(saved->meta_json, "\"trainer\": \"cls\""));
    ck_assert_float_eq_tol(m->progress[0].accuracy, 0.5, 1e-9);
    /* explicit labels override the experts' */
    job.settings_json = "{\"steps\": 1, \"batch\": 2, \"labels\": [\"math\"]}";
    job.expert_name = "router2";
    state = NULL;
    ck_assert_int_eq(ops->start(mock_host_handle(m), &job, NULL, 0, &state), T2_OK);
    ops->stop(state);
    /* no labels at all is an error that says so */
    mock_host *empty = mock_host_new();
    ck_assert_int_eq(mock_host_add_dataset(empty, "mixed", NULL, tasks, 4), T2_OK);
    job.settings_json = "{}";
    state = NULL;
    ck_assert_int_eq(ops->start(mock_host_handle(empty), &job, NULL, 0, &state), T2_ERR_INVALID_ARG);
    ck_assert(mock_host_log_contains(empty, "no labels"));
    mock_host_free(empty);
    ck_assert_int_eq(mock_host_live_experts(m), 0);
    mock_host_free(m);
    mock_plugin_close(so);
}
END_TEST

int main(void) {
    Suite *s = suite_create("classify");
    TCase *tc = tcase_create("classify");
    tcase_add_test(tc, test_parse);
    tcase_add_test(tc, test_system_and_labels);
    tcase_add_test(tc, test_prompt_dispatch);
    tcase_add_test(tc, test_prompt_dispatch_no_experts);
    tcase_add_test(tc, test_classifier_dispatch);
    tcase_add_test(tc, test_classifier_missing);
    tcase_add_test(tc, test_cls_trainer);
    suite_add_tcase(s, tc);
    SRunner *r = srunner_create(s);
    srunner_run_all(r, CK_NORMAL);
    int failed = srunner_ntests_failed(r);
    srunner_free(r);
    return failed ? 1 : 0;
}
