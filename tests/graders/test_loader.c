/* Plugin loading (daemon/loader): every refusal reason with its message, directory loading and the
 * refusal list, duplicates, settings through the callback, init failures, fini on free, and concurrent
 * lookups. */
#include "gtest.h"

#include <t2/error.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char s_logged[8192];
static void log_cb(void *u, t2_log_level level, const char *msg) {
    (void)u;
    size_t n = strlen(s_logged);
    snprintf(s_logged + n, sizeof s_logged - n, "%d %s\n", (int)level, msg);
}

static char *tp(const char *variant) {
    char *p = NULL;
    ck_assert_int_ge(asprintf(&p, "%s/tp_%s.so", T2_TEST_TESTPLUGIN_DIR, variant), 0);
    return p;
}

static t2_plugins *registry(void) {
    t2_status s;
    t2_plugins *p = t2_plugins_new(t2_grade_host_api(), &s);
    ck_assert_ptr_nonnull(p);
    ck_assert_int_eq(s, T2_OK);
    s_logged[0] = 0;
    t2_plugins_set_log(p, log_cb, NULL);
    return p;
}

static void refused(const char *variant, t2_status want, const char *reason) {
    t2_plugins *p = registry();
    char *path = tp(variant);
    t2_status s = t2_plugins_load_file(p, path, NULL);
    ck_assert_msg(s == want, "%s: status %s, want %s (%s)", variant, t2_strerror(s), t2_strerror(want), t2_last_error());
    ck_assert_msg(strstr(t2_last_error(), reason) != NULL, "%s: \"%s\" lacks \"%s\"", variant, t2_last_error(), reason);
    ck_assert_int_eq(t2_plugins_count(p), 0);
    ck_assert_int_eq(t2_plugins_refused_count(p), 1);
    const char *r = t2_plugins_refused(p, 0);
    ck_assert_msg(!strncmp(r, path, strlen(path)) && strstr(r, reason), "refusal \"%s\"", r);
    ck_assert_msg(strstr(s_logged, "plugin refused") && strstr(s_logged, reason), "log: %s", s_logged);
    ck_assert_ptr_null(t2_plugins_refused(p, 1));
    free(path);
    t2_plugins_free(p);
}

START_TEST(test_refusals) {
    refused("bad_abi", T2_ERR_VERSION, "plugin ABI 2.0, host ABI 1.0");
    refused("no_entry", T2_ERR_NOT_FOUND, "no symbol t2_plugin_entry");
    refused("null_entry", T2_ERR_VERSION, "t2_plugin_entry returned NULL (the plugin refused host ABI 1.0)");
    refused("small_struct", T2_ERR_FORMAT, "t2_plugin struct_size 16, host needs at least");
    refused("bad_kind", T2_ERR_FORMAT, "unknown plugin kind 7");
    refused("null_ops", T2_ERR_FORMAT, "has no ops table");
    refused("small_ops", T2_ERR_FORMAT, "ops struct_size 2, host needs at least 16");
    refused("null_grade", T2_ERR_FORMAT, "ops->grade is NULL");
    refused("init_fail", T2_ERR_FORMAT, "init failed: malformed input");
    refused("bad_name", T2_ERR_FORMAT, "has no valid name");
    refused("garbage", T2_ERR_IO, "dlopen failed");
    refused("does_not_exist", T2_ERR_IO, "dlopen failed");
}
END_TEST

static const char *settings_cb(void *u, const char *kind, const char *name) {
    int *calls = u;
    (*calls)++;
    ck_assert_str_eq(kind, "grader");
    static char buf[700];
    if (!strcmp(name, "echo")) {
        snprintf(buf, sizeof buf, "{\"want\": \"hello\", \"fini_file\": \"%s/fini-ran\"}", T2_TEST_BUILD_DIR);
        return buf;
    }
    return NULL;
}

typedef struct finder {
    const t2_plugins *p;
    int ok;
} finder;

static void *find_many(void *arg) {
    finder *f = arg;
    f->ok = 1;
    for (int i = 0; i < 20000; i++) {
        void *st;
        const t2_plugin *pl = t2_plugins_find(f->p, T2_PLUGIN_GRADER, i % 2 ? "echo" : "math", &st);
        if (!pl || !st) f->ok = 0;
    }
    return NULL;
}

START_TEST(test_directory) {
    char fini_path[700];
    snprintf(fini_path, sizeof fini_path, "%s/fini-ran", T2_TEST_BUILD_DIR);
    unlink(fini_path);
    t2_plugins *p = registry();
    int calls = 0;
    int n = t2_plugins_load_dir(p, T2_TEST_TESTPLUGIN_DIR, settings_cb, &calls);
    ck_assert_int_eq(n, 2);                         /* echo and the grader named "math" */
    ck_assert_int_eq(calls, 3);                     /* + init_fail, which got past the checks */
    ck_assert_int_eq(t2_plugins_refused_count(p), 11);
    for (int i = 0; i < t2_plugins_refused_count(p); i++)
        ck_assert_msg(strstr(t2_plugins_refused(p, i), T2_TEST_TESTPLUGIN_DIR "/tp_"), "%s", t2_plugins_refused(p, i));
    /* the real graders: their "math" is refused as a duplicate of the test one, naming it */
    int real = t2_plugins_load_dir(p, gt_plugin_dir(), NULL, NULL);
    ck_assert_int_eq(real, 5);
    ck_assert_int_eq(t2_plugins_refused_count(p), 12);
    const char *dup = t2_plugins_refused(p, 11);
    ck_assert_msg(strstr(dup, "grader_math.so: a grader plugin named \"math\" is already loaded from ") &&
                      strstr(dup, "tp_dup.so"),
                  "%s", dup);
    ck_assert_int_eq(t2_plugins_count(p), 7);
    const char *path;
    void *st;
    const t2_plugin *pl = t2_plugins_at(p, 0, &path, &st);
    ck_assert_ptr_nonnull(pl);
    ck_assert_ptr_null(t2_plugins_at(p, 7, NULL, NULL));
    ck_assert_ptr_null(t2_plugins_at(p, -1, NULL, NULL));
    /* settings reached init: the echo grader wants "hello" */
    pl = t2_plugins_find(p, T2_PLUGIN_GRADER, "echo", &st);
    ck_assert_ptr_nonnull(pl);
    ck_assert_ptr_null(t2_plugins_find(p, T2_PLUGIN_DISPATCH, "echo", NULL));
    ck_assert_ptr_null(t2_plugins_find(p, T2_PLUGIN_GRADER, "nope", NULL));
    t2_task t = {"1", "", "", "", "", "", "", "", "", "", "", "{}"};
    t2_verdict v;
    ck_assert_int_eq(((const t2_grader_ops *)pl->ops)->grade(st, &t, "hello", &v), T2_OK);
    ck_assert_int_eq(v.correct, 1);
    ck_assert_int_eq(((const t2_grader_ops *)pl->ops)->grade(st, &t, "bye", &v), T2_OK);
    ck_assert_int_eq(v.correct, 0);
    /* lookups from several threads at once */
    pthread_t th[4];
    finder f[4];
    for (int i = 0; i < 4; i++) {
        f[i] = (finder){p, 0};
        ck_assert_int_eq(pthread_create(&th[i], NULL, find_many, &f[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        ck_assert(f[i].ok);
    }
    /* free runs fini */
    t2_plugins_free(p);
    ck_assert_int_eq(access(fini_path, F_OK), 0);
    unlink(fini_path);
}
END_TEST

START_TEST(test_bad_arguments) {
    t2_status s;
    ck_assert_ptr_null(t2_plugins_new(NULL, &s));
    ck_assert_int_eq(s, T2_ERR_INVALID_ARG);
    t2_plugins *p = registry();
    ck_assert_int_eq(t2_plugins_load_dir(p, "/nonexistent-plugin-dir", NULL, NULL), -1);
    ck_assert_int_eq(t2_plugins_refused_count(p), 1);
    ck_assert_ptr_nonnull(strstr(t2_plugins_refused(p, 0), "/nonexistent-plugin-dir: cannot read the plugin directory"));
    ck_assert_int_eq(t2_plugins_load_file(p, NULL, NULL), T2_ERR_INVALID_ARG);
    ck_assert_int_eq(t2_plugins_load_file(NULL, "x.so", NULL), T2_ERR_INVALID_ARG);
    ck_assert_ptr_null(t2_plugins_find(NULL, T2_PLUGIN_GRADER, "math", NULL));
    ck_assert_int_eq(t2_plugins_count(NULL), 0);
    /* a grader whose settings are not JSON fails its init, with the reason logged */
    char path[700];
    snprintf(path, sizeof path, "%s/grader_code.so", gt_plugin_dir());
    ck_assert_int_eq(t2_plugins_load_file(p, path, "{\"timeout\": \"soon\"}"), T2_ERR_FORMAT);
    ck_assert_int_eq(t2_plugins_load_file(p, path, "{\"timeuot\": 3}"), T2_ERR_FORMAT);
    ck_assert_int_eq(t2_plugins_load_file(p, path, "not json"), T2_ERR_FORMAT);
    ck_assert_int_eq(t2_plugins_count(p), 0);
    ck_assert_int_eq(t2_plugins_load_file(p, path, "{\"timeout\": 3}"), T2_OK);
    ck_assert_int_eq(t2_plugins_count(p), 1);
    t2_plugins_free(p);
    t2_plugins_free(NULL);
}
END_TEST

int main(void) {
    Suite *s = suite_create("loader");
    TCase *tc = tcase_create("loader");
    tcase_add_test(tc, test_refusals);
    tcase_add_test(tc, test_directory);
    tcase_add_test(tc, test_bad_arguments);
    suite_add_tcase(s, tc);
    SRunner *r = srunner_create(s);
    srunner_run_all(r, CK_NORMAL);
    int failed = srunner_ntests_failed(r);
    srunner_free(r);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
