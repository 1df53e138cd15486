/* The mock host itself (experts and mixtures, datasets, replies, grading, kv, records) and, as the smallest
 * example of driving a real plugin through it, the fixed dispatch plugin. */
#include "mock_host.h"

#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const t2_host_api *A;

static t2_task task(const char *id, const char *prompt, const char *answer) {
    return (t2_task){.id = id, .prompt = prompt, .answer = answer, .grader = "exact"};
}

START_TEST(test_experts_and_mix) {
    mock_host *m = mock_host_new();
    A = mock_host_api();
    t2_host *h = mock_host_handle(m);
    ck_assert_ptr_eq(mock_host_of(h), m);
    ck_assert_int_eq(mock_host_n_params(m), 8);
    float za[8] = {1, 2, 3, 4, 5, 6, 7, 8}, zb[8] = {0};
    ck_assert_int_eq(mock_host_add_expert(m, "a", "math", za), T2_OK);
    ck_assert_int_eq(mock_host_add_expert(m, "b", "code", zb), T2_OK);
    ck_assert_int_eq(mock_host_add_expert(m, "a", "x", NULL), T2_ERR_INVALID_ARG);
    char *js = NULL;
    ck_assert_int_eq(A->experts_json(h, &js), T2_OK);
    ck_assert_str_eq(js, "[{\"name\":\"a\",\"label\":\"math\",\"owner\":\"test\",\"published\":false,\"kind\":\"svf\"},"
                         "{\"name\":\"b\",\"label\":\"code\",\"owner\":\"test\",\"published\":false,\"kind\":\"svf\"}]");
    A->free(js);
    t2_hexpert *a, *b, *mx, *pm, *nw;
    ck_assert_int_eq(A->expert_open(h, "nope", &a), T2_ERR_NOT_FOUND);
    ck_assert_int_eq(A->expert_open(h, "a", &a), T2_OK);
    ck_assert_int_eq(A->expert_open(h, "b", &b), T2_OK);
    ck_assert_str_eq(mock_expert_label(a), "math");
    const t2_hexpert *ab[2] = {a, b};
    float alpha[2] = {0.5f, 1}, per[4] = {1, 0, 0.25f, 1};   /* a: matrix 0 ×1, matrix 1 ×0 */
    ck_assert_int_eq(A->expert_mix(h, ab, alpha, 2, 0, &mx), T2_OK);
    ck_assert_int_eq(A->expert_mix(h, ab, per, 2, 1, &pm), T2_OK);
    ck_assert_str_eq(mock_expert_name(mx), "mix(a:0.5,b:1)");
    for (int i = 0; i < 8; i++) {
        ck_assert_float_eq_tol(mock_expert_z(mx)[i], 0.5f * za[i], 1e-6);
        ck_assert_float_eq_tol(mock_expert_z(pm)[i], i < 4 ? za[i] : 0, 1e-6);
    }
    ck_assert_int_eq(A->expert_new(h, "new", &nw), T2_OK);
    ck_assert_int_eq(A->expert_n_params(nw), 8);
    ck_assert_float_eq(A->expert_z(nw)[7], 1.0f);
    A->expert_z(nw)[0] = 3;
    ck_assert_int_eq(A->expert_save(h, nw, "saved", "lbl", "{\"k\": 1}"), T2_OK);
    ck_assert_int_eq(A->expert_save(h, nw, "saved2", "lbl", "not json"), T2_ERR_INVALID_ARG);
    ck_assert_int_eq(mock_host_n_saved(m), 1);
    ck_assert_float_eq(mock_host_saved(m, "saved")->z[0], 3.0f);
    ck_assert_str_eq(mock_host_saved(m, "saved")->meta_json, "{\"k\": 1}");
    ck_assert_int_eq(mock_host_live_experts(m), 5);
    A->expert_free(a);
    A->expert_free(b);
    A->expert_free(mx);
    A->expert_free(pm);
    A->expert_free(nw);
    ck_assert_int_eq(A->expert_open(h, "saved", &a), T2_OK);   /* saved experts can be opened */
    A->expert_free(a);
    ck_assert_int_eq(mock_host_live_experts(m), 0);
    mock_host_free(m);
}
END_TEST

static char *echo_alpha(mock_host *m, const char *prompt, const t2_hexpert *e, const t2_gen_params *p, int row, double *lp) {
    (void)m, (void)p, (void)row, (void)prompt;
    *lp = -2.5;
    char *s = NULL;
    if (asprintf(&s, "%g", e ? mock_expert_z(e)[0] : -1.0) < 0) return NULL;
    return s;
}

START_TEST(test_text_data_kv) {
    mock_host *m = mock_host_new();
    A = mock_host_api();
    t2_host *h = mock_host_handle(m);
    t2_task ts[2] = {task("1", "what is 2+2", "4"), task("2", "capital of France", "Paris")};
    ts[1].system = "be brief";
    ck_assert_int_eq(mock_host_add_dataset(m, "few", "train", ts, 2), T2_OK);
    t2_dataset *d;
    ck_assert_int_eq(A->dataset_open(h, "few", "test", &d), T2_ERR_NOT_FOUND);
    ck_assert_int_eq(A->dataset_open(h, "other", NULL, &d), T2_ERR_NOT_FOUND);
    ck_assert_int_eq(A->dataset_open(h, "few", NULL, &d), T2_OK);
    ck_assert_int_eq(A->dataset_size(d), 2);
    ck_assert_str_eq(A->dataset_task(d, 1)->system, "be brief");
    ck_assert_str_eq(A->dataset_task(d, 0)->system, "");
    ck_assert_str_eq(A->dataset_task(d, 0)->extra, "{}");
    ck_assert_ptr_null(A->dataset_task(d, 2));
    ck_assert_int_eq(mock_host_open_datasets(m), 1);

    /* canned replies, then a computed one */
    mock_host_add_reply(m, "2+2", "\\boxed{4}");
    m->default_reply = "dunno";
    const char *prompts[2] = {A->dataset_task(d, 0)->prompt, A->dataset_task(d, 1)->prompt};
    t2_gen_result r[2];
    t2_gen_params gp = {.chat = 1, .system = "sys", .top_p = 1};
    ck_assert_int_eq(A->generate(h, prompts, NULL, 2, &gp, r), T2_OK);
    ck_assert_str_eq(r[0].text, "\\boxed{4}");
    ck_assert_str_eq(r[1].text, "dunno");
    ck_assert_int_eq(r[0].n_prompt, (int)strlen(prompts[0]));
    ck_assert_int_eq(m->n_generate_calls, 1);
    ck_assert_int_eq(m->n_generate_rows, 2);
    ck_assert_str_eq(m->last_system, "sys");
    t2_verdict v;
    ck_assert_int_eq(A->grade(h, NULL, A->dataset_task(d, 0), r[0].text, &v), T2_OK);
    ck_assert_int_eq(v.correct, 1);
    ck_assert_int_eq(A->grade(h, NULL, A->dataset_task(d, 1), r[1].text, &v), T2_OK);
    ck_assert_int_eq(v.correct, 0);
    ck_assert_int_eq(A->grade(h, NULL, A->dataset_task(d, 1), " Paris\n", &v), T2_OK);
    ck_assert_int_eq(v.correct, 1);
    A->gen_result_clear(&r[0]);
    A->gen_result_clear(&r[1]);
    m->generate = echo_alpha;
    t2_hexpert *e;
    ck_assert_int_eq(A->expert_new(h, "", &e), T2_OK);
    const t2_hexpert *es[1] = {e};
    ck_assert_int_eq(A->generate(h, prompts, es, 1, &gp, r), T2_OK);
    ck_assert_str_eq(r[0].text, "1");
    ck_assert_double_eq(r[0].logprob, -2.5);
    A->gen_result_clear(&r[0]);
    m->generate_status = T2_ERR_FULL;
    ck_assert_int_eq(A->generate(h, prompts, es, 1, &gp, r), T2_ERR_FULL);
    A->expert_free(e);
    double lp;
    int nt;
    ck_assert_int_eq(A->score(h, "p", "abcd", NULL, 1, NULL, &lp, &nt), T2_OK);
    ck_assert_double_eq_tol(lp, -0.4, 1e-12);
    ck_assert_int_eq(nt, 4);
    ck_assert_int_eq(A->score(h, "p", "", NULL, 1, NULL, &lp, &nt), T2_ERR_INVALID_ARG);
    A->dataset_close(d);
    ck_assert_int_eq(mock_host_open_datasets(m), 0);

    /* kv */
    void *val;
    size_t len;
    ck_assert_int_eq(A->kv_get(h, "k", &val, &len), T2_ERR_NOT_FOUND);
    ck_assert_int_eq(A->kv_put(h, "k", "abc", 3), T2_OK);
    ck_assert_int_eq(A->kv_put(h, "k", "xy", 2), T2_OK);
    ck_assert_int_eq(A->kv_get(h, "k", &val, &len), T2_OK);
    ck_assert_int_eq(len, 2);
    ck_assert_str_eq(val, "xy");
    A->free(val);
    ck_assert_int_eq(mock_host_kv_count(m), 1);
    ck_assert_int_eq(m->n_kv_put, 2);

    /* log, progress, checkpoint */
    A->log(h, T2_LOG_WARN, "hello %d", 42);
    ck_assert(mock_host_log_contains(m, "W hello 42"));
    t2_progress pr = {.step = 3, .total = 9, .reward = 0.5, .accuracy = NAN, .message = "msg"};
    A->progress(h, &pr);
    ck_assert_int_eq(m->n_progress, 1);
    ck_assert_int_eq(m->progress[0].step, 3);
    ck_assert_str_eq(m->progress[0].message, "msg");
    ck_assert_int_eq(A->checkpoint_save(h, "blob", 4), T2_OK);
    ck_assert_int_eq(m->checkpoint_len, 4);
    ck_assert(!memcmp(m->checkpoint, "blob", 4));

    /* the random stream is reproducible */
    mock_host_reseed(m, 7);
    uint64_t x = A->rand_u64(h);
    mock_host_reseed(m, 7);
    ck_assert_uint_eq(A->rand_u64(h), x);
    double u = A->rand_uniform(h);
    ck_assert(u >= 0 && u < 1);
    mock_host_free(m);
}
END_TEST

/* The fixed dispatch plugin, loaded from the build tree and driven through the mock. */
START_TEST(test_fixed_plugin) {
    char err[512];
    void *so;
    const t2_plugin *pl = mock_plugin_open(T2_TEST_DISPATCH_DIR "/dispatch_fixed.so", &so, err, sizeof err);
    ck_assert_msg(pl != NULL, "%s", err);
    ck_assert_str_eq(pl->name, "fixed");
    ck_assert_int_eq(pl->kind, T2_PLUGIN_DISPATCH);
    void *state = NULL;
    ck_assert_int_eq(pl->init(mock_host_api(), "{}", &state), T2_OK);
    const t2_dispatch_ops *ops = pl->ops;
    mock_host *m = mock_host_new();
    float za[8] = {2, 2, 2, 2, 2, 2, 2, 2};
    mock_host_add_expert(m, "math", "math", za);
    mock_host_add_expert(m, "code", "code", NULL);
    t2_dispatch_decision dd;
    t2_dispatch_request rq = {.prompt = "hi", .settings_json = "{\"expert\": \"math\"}"};
    memset(&dd, 0, sizeof dd);
    ck_assert_int_eq(ops->decide(state, mock_host_handle(m), &rq, &dd), T2_OK);
    ck_assert_ptr_nonnull(dd.expert);
    ck_assert_float_eq(mock_expert_z(dd.expert)[0], 2.0f);
    mock_host_api()->expert_free(dd.expert);

    rq.settings_json = "{\"mix\": [{\"expert\": \"math\", \"alpha\": 0.25}, {\"expert\": \"code\", \"alpha\": 0.5}]}";
    memset(&dd, 0, sizeof dd);
    ck_assert_int_eq(ops->decide(state, mock_host_handle(m), &rq, &dd), T2_OK);
    ck_assert_float_eq_tol(mock_expert_z(dd.expert)[3], 0.25f * 2 + 0.5f, 1e-6);
    mock_host_api()->expert_free(dd.expert);

    rq.settings_json = "{}";
    memset(&dd, 0, sizeof dd);
    ck_assert_int_eq(ops->decide(state, mock_host_handle(m), &rq, &dd), T2_OK);
    ck_assert_ptr_null(dd.expert);
    ck_assert_str_eq(dd.detail, "{\"base\": true}");

    rq.settings_json = "[1";
    ck_assert_int_eq(ops->decide(state, mock_host_handle(m), &rq, &dd), T2_ERR_INVALID_ARG);
    ck_assert(mock_host_log_contains(m, "not a JSON object"));
    ck_assert_int_eq(mock_host_live_experts(m), 0);
    pl->fini(state);
    mock_host_free(m);
    mock_plugin_close(so);
}
END_TEST

START_TEST(test_open_failures) {
    char err[512];
    void *so;
    ck_assert_ptr_null(mock_plugin_open("/nonexistent/x.so", &so, err, sizeof err));
    ck_assert_ptr_nonnull(strstr(err, "dlopen /nonexistent/x.so"));
    ck_assert_ptr_null(so);
    ck_assert_str_eq(mock_status_name(T2_ERR_NOT_FOUND), "T2_ERR_NOT_FOUND");
}
END_TEST

int main(void) {
    Suite *s = suite_create("mock_host");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_experts_and_mix);
    tcase_add_test(tc, test_text_data_kv);
    tcase_add_test(tc, test_fixed_plugin);
    tcase_add_test(tc, test_open_failures);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
