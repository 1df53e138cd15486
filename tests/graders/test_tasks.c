/* Dataset loaders (daemon/tasks) on the real benchmark files: sizes, splits, ids, every field filled, the
 * prompts the paper builds; the generic JSONL format; malformed files and bad specs give errors that name
 * the file, the line and the field. */
#include "gtest.h"

#include <t2/error.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static size_t count(const char *spec, const char *split) {
    t2_dataset *d = gt_open(spec, split);
    size_t n = t2_dataset_size(d);
    t2_dataset_close(d);
    return n;
}

/* Every task has every field non-NULL, a non-empty id, prompt and grader (and label, for the benchmarks),
 * and an answer or tests. */
static void check_fields_(const t2_dataset *d, int need_label) {
    for (size_t i = 0; i < t2_dataset_size(d); i++) {
        const t2_task *t = t2_dataset_task(d, i);
        const char *f[] = {t->id, t->family, t->label, t->grader, t->question, t->prompt, t->system, t->answer,
                           t->solution, t->tests, t->entry_point, t->extra};
        for (size_t k = 0; k < sizeof f / sizeof *f; k++) ck_assert_msg(f[k] != NULL, "task %zu field %zu is NULL", i, k);
        ck_assert_msg(*t->id && *t->prompt && *t->grader && (*t->label || !need_label), "task %zu (%s) lacks id/prompt/grader/label", i, t->id);
        ck_assert_msg(*t->answer || *t->tests, "task %s has neither answer nor tests", t->id);
        ck_assert_msg(t->extra[0] == '{', "task %s extra is not an object: %s", t->id, t->extra);
        ck_assert_ptr_eq(t2_dataset_find(d, t->id), t);
    }
    ck_assert_ptr_null(t2_dataset_task(d, t2_dataset_size(d)));
}
#define check_fields(d) check_fields_(d, 1)

START_TEST(test_sizes_and_splits) {
    ck_assert_uint_eq(count("gsm8k", "test"), 1319);
    ck_assert_uint_eq(count("gsm8k", "train"), 3737);        /* even lines of 7,473 */
    ck_assert_uint_eq(count("gsm8k", "validation"), 3736);   /* odd lines */
    ck_assert_uint_eq(count("gsm8k", NULL), 1319 + 7473);
    ck_assert_uint_eq(count("math", "test"), 5000);
    ck_assert_uint_eq(count("math500", NULL), 500);
    ck_assert_uint_eq(count("humaneval", "test"), 164);
    ck_assert_uint_eq(count("humaneval-pro", NULL), 164);
    ck_assert_uint_eq(count("mbpp", NULL), 974);
    ck_assert_uint_eq(count("mbpp", "test"), 500);            /* task_ids 11-510 */
    ck_assert_uint_eq(count("mbpp", "validation"), 90);       /* 511-600 */
    ck_assert_uint_eq(count("mbpp", "train"), 384);           /* 1-10 and 601-974 */
    ck_assert_uint_eq(count("mbpp-sanitized", NULL), 427);
    ck_assert_uint_eq(count("mbpp-plus", NULL), 399);
    ck_assert_uint_eq(count("mbpp-plus", "test"), 99);
    ck_assert_uint_eq(count("mbpp-plus", "train") + count("mbpp-plus", "validation"), 300);
    ck_assert_uint_eq(count("mbpp-pro", NULL), 378);
    ck_assert_uint_eq(count("arc-easy", "test"), 2376);
    ck_assert_uint_eq(count("arc-easy", "train") + count("arc-easy", "validation"), 570);
    ck_assert_uint_eq(count("arc-challenge", "test"), 1172);
    ck_assert_uint_eq(count("arc-challenge", NULL), 1172 + 299);
    /* a split the dataset does not have */
    t2_dataset *d = NULL;
    ck_assert_int_eq(t2_dataset_open("math", "train", gt_data_dir(), &d), T2_ERR_NOT_FOUND);
    ck_assert_ptr_null(d);
    ck_assert_ptr_nonnull(strstr(t2_last_error(), "only a test split"));
    ck_assert_int_eq(t2_dataset_open("gsm8k", "dev-ish", gt_data_dir(), &d), T2_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(t2_last_error(), "unknown split"));
}
END_TEST

START_TEST(test_every_field_filled) {
    static const char *const names[] = {"gsm8k", "math", "math500", "humaneval", "humaneval-pro", "mbpp", "mbpp-sanitized",
                                        "mbpp-plus", "mbpp-pro", "arc-easy", "arc-challenge"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        t2_dataset *d = gt_open(names[i], NULL);
        check_fields(d);
        ck_assert_str_eq(t2_dataset_name(d), names[i]);
        t2_dataset_close(d);
    }
    const char *const *known = t2_dataset_known_names();
    size_t n = 0;
    while (known[n]) n++;
    ck_assert_uint_eq(n, sizeof names / sizeof *names);
}
END_TEST

START_TEST(test_gsm8k_tasks) {
    t2_dataset *d = gt_open("gsm8k", "test");
    const t2_task *t = t2_dataset_find(d, "0");
    ck_assert_ptr_nonnull(t);
    ck_assert_str_eq(t->answer, "18");
    ck_assert_str_eq(t->family, "gsm8k");
    ck_assert_str_eq(t->grader, "math");
    ck_assert_str_eq(t->label, "math");
    ck_assert_ptr_nonnull(strstr(t->prompt, "Janet"));
    ck_assert_ptr_nonnull(strstr(t->system, "#### N"));
    ck_assert_ptr_nonnull(strstr(t->solution, "#### 18"));
    ck_assert_ptr_nonnull(strstr(t->extra, "\"answer_format\":\"number\""));
    /* commas go from final answers ("#### 1,000" style) */
    for (size_t i = 0; i < t2_dataset_size(d); i++) ck_assert_ptr_null(strchr(t2_dataset_task(d, i)->answer, ','));
    t2_dataset_close(d);
    d = gt_open("gsm8k", "validation");
    ck_assert_str_eq(t2_dataset_task(d, 0)->id, "train/1");
    t2_dataset_close(d);
}
END_TEST

START_TEST(test_math_tasks) {
    t2_dataset *d = gt_open("math", NULL);
    const t2_task *t = t2_dataset_find(d, "0");
    ck_assert_str_eq(t->answer, "2");   /* the last \boxed{} of the solution */
    ck_assert_ptr_nonnull(strstr(t->system, "\\boxed{}"));
    ck_assert_ptr_nonnull(strstr(t->extra, "\"answer_format\":\"boxed\""));
    ck_assert_ptr_nonnull(strstr(t->extra, "\"type\":\"Algebra\""));
    t2_dataset_close(d);
    d = gt_open("math500", NULL);
    t = t2_dataset_find(d, "test/precalculus/807.json");
    ck_assert_ptr_nonnull(t);
    ck_assert_str_eq(t->answer, "\\left( 3, \\frac{\\pi}{2} \\right)");
    t2_dataset_close(d);
}
END_TEST

START_TEST(test_code_tasks) {
    t2_dataset *d = gt_open("humaneval", NULL);
    const t2_task *t = t2_dataset_find(d, "HumanEval/0");
    ck_assert_str_eq(t->entry_point, "has_close_elements");
    ck_assert_ptr_nonnull(strstr(t->prompt, "Write a solution to the following problem:\n```python\nfrom typing import List"));
    ck_assert_ptr_nonnull(strstr(t->tests, "check(has_close_elements)"));
    ck_assert_ptr_nonnull(strstr(t->extra, "\"code_prefix\":\"from typing import List"));
    ck_assert_ptr_nonnull(strstr(t->extra, "\"response_prefix\":\"```python\\nfrom typing"));
    ck_assert_ptr_nonnull(strstr(t->system, "coding assistant"));
    ck_assert_str_eq(t->label, "code");
    t2_dataset_close(d);
    d = gt_open("mbpp", "test");
    t = t2_dataset_find(d, "11");
    ck_assert_ptr_nonnull(t);
    ck_assert_ptr_nonnull(strstr(t->prompt, "Your code should satisfy the following assertion:\n```python\nassert "));
    ck_assert_str_eq(t->entry_point, "remove_Occ");
    ck_assert_ptr_null(t2_dataset_find(d, "10"));   /* a prompt example, not a test task */
    t2_dataset_close(d);
    d = gt_open("mbpp-plus", NULL);
    t = t2_dataset_find(d, "Mbpp/2");
    ck_assert_ptr_nonnull(t);
    ck_assert_str_eq(t->entry_point, "similar_elements");
    ck_assert_ptr_nonnull(strstr(t->prompt, "Write a function to find the shared elements"));
    t2_dataset_close(d);
    d = gt_open("humaneval-pro", NULL);
    t = t2_dataset_find(d, "46");   /* its new function is defined in new_solution only */
    ck_assert_str_eq(t->entry_point, "sum_fib4_values");
    ck_assert_ptr_nonnull(strstr(t->prompt, "requires single or multiple calls to the first solution"));
    t2_dataset_close(d);
}
END_TEST

START_TEST(test_arc_tasks) {
    t2_dataset *d = gt_open("arc-easy", "train");
    const t2_task *t = t2_dataset_find(d, "MCAS_2000_4_6");
    ck_assert_ptr_nonnull(t);
    ck_assert_str_eq(t->answer, "A");
    ck_assert_str_eq(t->grader, "choice");
    ck_assert_str_eq(t->label, "reasoning");
    ck_assert_str_eq(t->prompt, "Which technology was developed most recently?\nOptions:\nA. cellular telephone\n"
                                "B. television\nC. refrigerator\nD. airplane\n");
    ck_assert_ptr_nonnull(strstr(t->system, "the answer is (X)"));
    t2_dataset_close(d);
    /* rows labelled 1-4 are relettered, their key with them */
    d = gt_open("arc-challenge", NULL);
    int renamed = 0;
    for (size_t i = 0; i < t2_dataset_size(d); i++) {
        t = t2_dataset_task(d, i);
        ck_assert_msg(strlen(t->answer) == 1 && t->answer[0] >= 'A' && t->answer[0] <= 'E', "%s: %s", t->id, t->answer);
        if (strstr(t->extra, "\"original_labels\":[\"1\"")) {
            renamed++;
            ck_assert_ptr_nonnull(strstr(t->prompt, "\nA. "));
        }
    }
    ck_assert_int_ge(renamed, 25);
    t2_dataset_close(d);
}
END_TEST

/* ---------------- generic JSONL and malformed input ---------------- */

static char *s_dir;
static void setup(void) {
    char tmpl[] = "/tmp/t2-tasks-test-XXXXXX";
    s_dir = strdup(mkdtemp(tmpl));
}
static void teardown(void) {
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", s_dir);
    if (system(cmd) != 0) { /* a leftover temporary folder */ }
    free(s_dir);
}

static char *write_tmp(const char *name, const char *text) {
    char *p = NULL;
    ck_assert_int_ge(asprintf(&p, "%s/%s", s_dir, name), 0);
    FILE *f = fopen(p, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
    return p;
}

START_TEST(test_generic) {
    char *p = write_tmp("mine.jsonl",
                        "{\"id\": \"q1\", \"prompt\": \"2+2?\", \"answer\": 4, \"grader\": \"math\", \"label\": \"math\", \"difficulty\": 3}\n"
                        "\n"
                        "{\"question\": \"Say hi\", \"answer\": \"hi\", \"split\": \"train\", \"extra\": {\"pattern\": \"^hi$\"}}\n"
                        "{\"prompt\": \"write f\", \"tests\": \"assert f() == 1\", \"entry_point\": \"f\", \"split\": \"test\"}\n");
    t2_dataset *d = NULL;
    ck_assert_int_eq(t2_dataset_open(p, NULL, NULL, &d), T2_OK);
    ck_assert_uint_eq(t2_dataset_size(d), 3);
    check_fields_(d, 0);
    const t2_task *t = t2_dataset_find(d, "q1");
    ck_assert_str_eq(t->answer, "4");
    ck_assert_str_eq(t->grader, "math");
    ck_assert_str_eq(t->family, "generic");
    ck_assert_ptr_nonnull(strstr(t->extra, "\"difficulty\":3"));   /* unknown keys land in extra */
    t = t2_dataset_find(d, "2");                                    /* no id: its 0-based line number */
    ck_assert_ptr_nonnull(t);
    ck_assert_str_eq(t->prompt, "Say hi");
    ck_assert_str_eq(t->grader, "exact");
    ck_assert_ptr_nonnull(strstr(t->extra, "\"pattern\":\"^hi$\""));
    ck_assert_str_eq(t2_dataset_find(d, "3")->grader, "code");
    t2_dataset_close(d);
    ck_assert_int_eq(t2_dataset_open(p, "train", NULL, &d), T2_OK);   /* q1 has no split: in every split */
    ck_assert_uint_eq(t2_dataset_size(d), 2);
    t2_dataset_close(d);
    free(p);
}
END_TEST

static void expect_error(const char *text, t2_status want, const char *needle) {
    char *p = write_tmp("bad.jsonl", text);
    t2_dataset *d = (t2_dataset *)1;
    t2_status s = t2_dataset_open(p, NULL, NULL, &d);
    ck_assert_msg(s == want, "%s: got %s (%s), want %s", text, t2_strerror(s), t2_last_error(), t2_strerror(want));
    ck_assert_ptr_null(d);
    ck_assert_msg(strstr(t2_last_error(), needle) != NULL, "error \"%s\" lacks \"%s\"", t2_last_error(), needle);
    free(p);
}

START_TEST(test_malformed) {
    expect_error("{\"prompt\": \"a\", \"answer\": \"b\"}\n{\"prompt\": \"a\", \"answer\": \n", T2_ERR_FORMAT, "bad.jsonl:2: invalid JSON");
    expect_error("[1, 2]\n", T2_ERR_FORMAT, ":1: not a JSON object");
    expect_error("{\"answer\": \"b\"}\n", T2_ERR_FORMAT, ":1: missing field \"prompt\"");
    expect_error("{\"prompt\": \"a\"}\n", T2_ERR_FORMAT, "needs \"answer\" or \"tests\"");
    expect_error("{\"prompt\": 5, \"answer\": \"b\"}\n", T2_ERR_FORMAT, "field \"prompt\" must be a string");
    expect_error("{\"prompt\": \"a\", \"answer\": [1]}\n", T2_ERR_FORMAT, "field \"answer\" must be a string or a number");
    expect_error("{\"id\": \"x\", \"prompt\": \"a\", \"answer\": \"b\"}\n{\"id\": \"x\", \"prompt\": \"c\", \"answer\": \"d\"}\n",
                 T2_ERR_FORMAT, "duplicate task id \"x\"");
    expect_error("{\"prompt\": \"a\", \"answer\": \"b\", \"split\": \"dev\"}\n", T2_ERR_FORMAT, "field \"split\"");
    expect_error("{\"prompt\": \"a\", \"answer\": \"b\", \"extra\": 3}\n", T2_ERR_FORMAT, "field \"extra\" must be an object");
    expect_error("{\"prompt\": \"a\", \"prompt\": \"b\", \"answer\": \"c\"}\n", T2_ERR_FORMAT, "duplicate object key");
    expect_error("", T2_ERR_FORMAT, "no tasks");
    expect_error("{\"prompt\": \"a\\u0000b\", \"answer\": \"c\"}\n", T2_ERR_FORMAT, "NUL");

    t2_dataset *d = NULL;
    ck_assert_int_eq(t2_dataset_open("no-such-set", NULL, gt_data_dir(), &d), T2_ERR_NOT_FOUND);
    ck_assert_ptr_nonnull(strstr(t2_last_error(), "not a known name (gsm8k, math"));
    ck_assert_int_eq(t2_dataset_open(s_dir, NULL, NULL, &d), T2_ERR_IO);   /* a folder */
    unsetenv("T2_DATA_DIR");
    ck_assert_int_eq(t2_dataset_open("gsm8k", NULL, NULL, &d), T2_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(t2_last_error(), "T2_DATA_DIR"));
    setenv("T2_DATA_DIR", gt_data_dir(), 1);
    ck_assert_int_eq(t2_dataset_open("gsm8k", "test", NULL, &d), T2_OK);   /* the environment variable */
    t2_dataset_close(d);
    ck_assert_int_eq(t2_dataset_open("gsm8k", NULL, s_dir, &d), T2_ERR_NOT_FOUND);   /* a data dir without it */
    ck_assert_ptr_nonnull(strstr(t2_last_error(), "gsm8k/train.jsonl"));
    ck_assert_int_eq(t2_dataset_open(NULL, NULL, NULL, &d), T2_ERR_INVALID_ARG);
    t2_dataset_close(NULL);
    ck_assert_uint_eq(t2_dataset_size(NULL), 0);
    ck_assert_ptr_null(t2_dataset_task(NULL, 0));
}
END_TEST

/* A benchmark file that is malformed in the data dir layout: the loader names the file, line and field. */
START_TEST(test_malformed_benchmark) {
    char *sub = NULL;
    ck_assert_int_ge(asprintf(&sub, "%s/arc", s_dir), 0);
    ck_assert_int_eq(mkdir(sub, 0755), 0);
    char *p = write_tmp("arc/ARC-Easy-Test.jsonl",
                        "{\"id\":\"a\",\"question\":{\"stem\":\"s\",\"choices\":[{\"text\":\"x\",\"label\":\"A\"},"
                        "{\"text\":\"y\",\"label\":\"B\"}]},\"answerKey\":\"C\"}\n");
    t2_dataset *d = NULL;
    ck_assert_int_eq(t2_dataset_open("arc-easy", "test", s_dir, &d), T2_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(t2_last_error(), "ARC-Easy-Test.jsonl:1: answerKey \"C\" is not one of the choice labels"));
    free(p);
    p = write_tmp("arc/ARC-Easy-Test.jsonl", "{\"id\":\"a\",\"question\":\"s\",\"answerKey\":\"A\"}\n");
    ck_assert_int_eq(t2_dataset_open("arc-easy", "test", s_dir, &d), T2_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(t2_last_error(), "field \"question\" must be an object"));
    free(p);
    free(sub);
}
END_TEST

int main(void) {
    gt_require_data();
    Suite *s = suite_create("tasks");
    TCase *tc = tcase_create("benchmarks");
    tcase_add_test(tc, test_sizes_and_splits);
    tcase_add_test(tc, test_every_field_filled);
    tcase_add_test(tc, test_gsm8k_tasks);
    tcase_add_test(tc, test_math_tasks);
    tcase_add_test(tc, test_code_tasks);
    tcase_add_test(tc, test_arc_tasks);
    suite_add_tcase(s, tc);
    tc = tcase_create("generic");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_generic);
    tcase_add_test(tc, test_malformed);
    tcase_add_test(tc, test_malformed_benchmark);
    suite_add_tcase(s, tc);
    SRunner *r = srunner_create(s);
    srunner_run_all(r, CK_NORMAL);
    int failed = srunner_ntests_failed(r);
    srunner_free(r);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
