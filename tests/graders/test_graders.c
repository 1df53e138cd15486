/* The math, choice, label, exact and regex graders on the real benchmarks and on hand-written cases:
 * every GSM8K reference answer right and a perturbed one wrong; MATH-500 boxed answers against the answer
 * field; the boxed answer of all 5,000 MATH solutions; equivalent and non-equivalent MATH answer pairs;
 * ARC keys round-tripping through the choice grader; fallbacks that never guess; hostile inputs. */
#include "answer.h"
#include "gtest.h"

#include <t2/error.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static t2_plugins *s_reg;
static void setup(void) { s_reg = gt_registry(NULL); }
static void teardown(void) { t2_plugins_free(s_reg); }

/* A synthetic task. */
static t2_task mk(const char *id, const char *answer, const char *extra) {
    t2_task t = {id, "test", "", "", "", "", "", answer, "", "", "", extra ? extra : "{}"};
    return t;
}

/* ---------------- GSM8K ---------------- */

START_TEST(test_gsm8k_references) {
    size_t n = 0, right = 0, perturbed_wrong = 0;
    t2_dataset *d = gt_open("gsm8k", NULL);   /* train and test */
    for (size_t i = 0; i < t2_dataset_size(d); i++) {
        const t2_task *t = t2_dataset_task(d, i);
        t2_verdict v = gt_grade(s_reg, "math", t, t->solution);
        n++;
        if (v.correct) right++;
        else printf("gsm8k %s: reference graded wrong: %s\n", t->id, v.detail);
        /* the same solution with its final number changed */
        const char *h = strstr(t->solution, "####");
        ck_assert_ptr_nonnull(h);
        double x = strtod(t->answer, NULL);
        char *bad = NULL;
        ck_assert_int_ge(asprintf(&bad, "%.*s#### %.17g", (int)(h - t->solution), t->solution, x + 1), 0);
        v = gt_grade(s_reg, "math", t, bad);
        if (!v.correct) perturbed_wrong++;
        else printf("gsm8k %s: perturbed answer graded right: %s\n", t->id, bad);
        free(bad);
    }
    t2_dataset_close(d);
    printf("gsm8k: %zu of %zu reference answers right, %zu of %zu perturbed ones wrong\n", right, n, perturbed_wrong, n);
    ck_assert_uint_eq(n, 8792);
    ck_assert_uint_eq(right, n);
    ck_assert_uint_eq(perturbed_wrong, n);
}
END_TEST

static void num_case(const char *answer, const char *output, int want, const char *extracted) {
    t2_task t = mk("n", answer, "{\"answer_format\":\"number\"}");
    t2_verdict v = gt_grade(s_reg, "math", &t, output);
    ck_assert_msg(v.correct == want, "\"%s\" vs %s: got %d (%s)", output, answer, v.correct, v.detail);
    if (extracted) ck_assert_str_eq(v.extracted, extracted);
}

START_TEST(test_gsm8k_extraction) {
    num_case("18", "She makes 9 * 2 = $18 every day.\n#### 18", 1, "18");
    num_case("1234", "The total is 1,234 dollars.", 1, "1234");
    num_case("1234", "#### 1,234", 1, "1234");
    num_case("-5", "The temperature drops to -5 degrees.", 1, "-5");
    num_case("-5", "#### \xe2\x88\x92" "5", 1, "-5");   /* a Unicode minus */
    num_case("18", "#### $18.00", 1, "18");
    num_case("0.5", "So it is 0.50 of the cake.", 1, "0.5");
    num_case("3.75", "The answer is 3.75.", 1, "3.75");
    num_case("7", "10-3=7", 1, "7");                      /* a binary minus is not a sign */
    num_case("7", "So \\boxed{7} apples.", 1, "7");
    num_case("7", "#### 7\nThen I say 12 more things.", 1, "7");   /* #### wins over the last number */
    num_case("12", "Step 1: 5 + 7 = 12. The answer is 12 and not 13", 1, "12");
    num_case("1000000", "#### 1,000,000", 1, "1000000");
    num_case("18", "The answer is eighteen.", 0, "");
    num_case("18", "#### 19", 0, "19");
    num_case("18", "", 0, "");
    num_case("5", "x2 and 3rd", 0, NULL);
    num_case("1", "1,2,3", 0, "3");                        /* a list: the last number */
}
END_TEST

/* ---------------- MATH ---------------- */

START_TEST(test_math500_boxed_vs_answer) {
    t2_dataset *d = gt_open("math500", NULL);
    size_t n = t2_dataset_size(d), right = 0;
    for (size_t i = 0; i < n; i++) {
        const t2_task *t = t2_dataset_task(d, i);
        t2_verdict v = gt_grade(s_reg, "math", t, t->solution);
        if (v.correct) right++;
        else printf("math500 %s: boxed \"%s\" not equal to answer \"%s\": %s\n", t->id, v.extracted, t->answer, v.detail);
    }
    printf("math500: the boxed answer of %zu of %zu reference solutions equals the answer field\n", right, n);
    ck_assert_uint_eq(n, 500);
    ck_assert_uint_ge(right * 100, n * 99);
    t2_dataset_close(d);
}
END_TEST

START_TEST(test_math_all_boxed) {
    t2_dataset *d = gt_open("math", NULL);
    size_t n = t2_dataset_size(d), with_box = 0, extracted = 0, right = 0, numeric = 0, numeric_wrong = 0;
    for (size_t i = 0; i < n; i++) {
        const t2_task *t = t2_dataset_task(d, i);
        int has = strstr(t->solution, "\\boxed") || strstr(t->solution, "\\fbox");
        with_box += has;
        char *b = t2g_last_boxed(t->solution);
        if (has && b && *b) extracted++;
        else if (has) printf("math %s: \\boxed present but not extracted\n", t->id);
        ck_assert_msg(!b || !strcmp(b, t->answer), "math %s: loader answer \"%s\" vs extraction \"%s\"", t->id, t->answer, b);
        free(b);
        t2_verdict v = gt_grade(s_reg, "math", t, t->solution);
        if (v.correct) right++;
        else printf("math %s: its own solution graded wrong: %s\n", t->id, v.detail);
        /* a numeric answer shifted by one is not equivalent */
        double x;
        if (t2g_parse_number(t->answer, &x)) {
            numeric++;
            char out[128];
            snprintf(out, sizeof out, "so \\boxed{%.17g}", x + 1);
            if (!gt_grade(s_reg, "math", t, out).correct) numeric_wrong++;
            else printf("math %s: %s graded equal to %s\n", t->id, out, t->answer);
        }
    }
    printf("math: %zu of %zu solutions have \\boxed{}, extracted from %zu; %zu graded right; %zu of %zu numeric answers + 1 "
           "graded wrong\n",
           with_box, n, extracted, right, numeric_wrong, numeric);
    ck_assert_uint_eq(n, 5000);
    ck_assert_uint_eq(extracted, with_box);
    ck_assert_uint_eq(right, n);
    ck_assert_uint_eq(numeric_wrong, numeric);
    t2_dataset_close(d);
}
END_TEST

static const char *const s_equal[][2] = {
    {"0.5", "\\frac{1}{2}"},
    {"\\dfrac{1}{2}", "\\frac12"},
    {"\\tfrac{3}{4}", "0.75"},
    {"1/2", "\\frac{1}{2}"},
    {"10\\%", "10"},
    {"50\\%", "50"},
    {"90^\\circ", "90"},
    {"90^{\\circ}", "90"},
    {"45^\\circ", "45"},
    {"\\left(1, 2\\right)", "(1,2)"},
    {"(1, -2)", "\\left( 1, -2 \\right)"},
    {"\\sqrt2", "\\sqrt{2}"},
    {"2\\sqrt{2}", "\\sqrt{8}"},
    {"4\\sqrt{3}", "\\sqrt{48}"},
    {"\\frac{\\sqrt{3}}{2}", "\\frac{1}{2}\\sqrt{3}"},
    {"\\frac{1}{\\sqrt{2}}", "\\frac{\\sqrt{2}}{2}"},
    {"1,000", "1000"},
    {"1{,}000", "1000"},
    {"\\$1,000", "1000"},
    {"x = 5", "5"},
    {"k=3", "3"},
    {"y = 2x + 3", "2x+3"},
    {"\\$5", "5"},
    {"5\\text{ cm}", "5"},
    {"10\\text{ inches}^2", "10"},
    {"5 \\mbox{ units}", "5"},
    {"\\text{(B)}", "B"},
    {"(C)", "C"},
    {"\\text{Evelyn}", "Evelyn"},
    {"\\text{east}", "east"},
    {"-\\frac{2}{3}", "-2/3"},
    {"\\frac{-2}{3}", "-\\frac{2}{3}"},
    {".5", "0.5"},
    {"3.0", "3"},
    {"-0", "0"},
    {"\\pi", "\\pi"},
    {"2\\pi", "2 \\pi"},
    {"\\frac{\\pi}{2}", "\\frac12\\pi"},
    {"[1,2)", "[1, 2)"},
    {"(-\\infty, 3]", "(-\\infty,3]"},
    {"1, 2, 3", "3, 2, 1"},
    {"\\{1,2\\}", "\\{2,1\\}"},
    {"\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}", "\\begin{pmatrix}1\\\\2\\end{pmatrix}"},
    {"2^{10}", "1024"},
    {"\\sqrt[3]{27}", "3"},
    {"6 \\cdot 7", "42"},
    {"2 \\times 3", "6"},
    {"\\displaystyle\\frac{1}{4}", "0.25"},
    {"\\frac{1}{3}", "\\frac{2}{6}"},
    {"\\frac{9}{2}", "4.5"},
    {"\\boxed{7}", "7"},
    {"\\infty", "\\infty"},
    {"\\frac{3}{4}.", "0.75"},
};

static const char *const s_unequal[][2] = {
    {"0.5", "\\frac{1}{3}"},
    {"0.33", "\\frac{1}{3}"},
    {"(1,2)", "[1,2]"},
    {"(1,2]", "(1,2)"},
    {"(1,2)", "(2,1)"},
    {"2\\sqrt{2}", "\\sqrt{2}"},
    {"10", "100"},
    {"\\frac{2}{3}", "\\frac{3}{2}"},
    {"-5", "5"},
    {"x+1", "x-1"},
    {"\\pi", "3.14"},
    {"1,2,3", "1,2"},
    {"A", "B"},
    {"\\text{(A)}", "B"},
    {"2^{10}", "2^{11}"},
    {"\\sqrt{3}", "3"},
    {"1001", "1000"},
    {"y=2x+3", "y=2x-3"},
    {"0", ""},
    {"\\frac{1}{2}", "\\frac{1}{2}x"},
    {"12", "1,2"},
    {"1,000", "1"},
    {"\\infty", "-\\infty"},
    {"4.5", "4.05"},
    {"e", "2.718"},
};

START_TEST(test_equivalence_pairs) {
    size_t n = 0, ok = 0;
    for (int which = 0; which < 2; which++) {
        size_t count = which ? sizeof s_unequal / sizeof *s_unequal : sizeof s_equal / sizeof *s_equal;
        for (size_t i = 0; i < count; i++) {
            const char *a = which ? s_unequal[i][0] : s_equal[i][0], *b = which ? s_unequal[i][1] : s_equal[i][1];
            /* both directions, through the grader: the reference is one side, the output boxes the other */
            for (int dir = 0; dir < 2; dir++) {
                const char *ref = dir ? b : a, *got = dir ? a : b;
                if (!*ref) continue;   /* the grader refuses an empty reference answer */
                t2_task t = mk("p", ref, "{\"answer_format\":\"boxed\"}");
                char out[512];
                snprintf(out, sizeof out, "Therefore the answer is $\\boxed{%s}$.", got);
                t2_verdict v = gt_grade(s_reg, "math", &t, out);
                n++;
                if (v.correct == !which) ok++;
                else printf("pair %s / %s: graded %s\n", ref, got, v.correct ? "equivalent" : "not equivalent");
            }
            ck_assert_int_eq(t2g_math_equal(a, b), !which);
        }
    }
    printf("equivalence: %zu hand-written pairs (%zu equivalent, %zu not), %zu of %zu graded right (both directions)\n",
           sizeof s_equal / sizeof *s_equal + sizeof s_unequal / sizeof *s_unequal, sizeof s_equal / sizeof *s_equal,
           sizeof s_unequal / sizeof *s_unequal, ok, n);
    ck_assert_uint_ge(sizeof s_equal / sizeof *s_equal + sizeof s_unequal / sizeof *s_unequal, 50);
    ck_assert_uint_eq(ok, n);
}
END_TEST

START_TEST(test_math_boxed_extraction) {
    char *b;
    ck_assert_str_eq((b = t2g_last_boxed("a \\boxed{\\frac{1}{2}} b")), "\\frac{1}{2}");
    free(b);
    ck_assert_str_eq((b = t2g_last_boxed("\\boxed{1} then \\boxed{\\{x : x^{2} > 1\\}}")), "\\{x : x^{2} > 1\\}");
    free(b);
    ck_assert_str_eq((b = t2g_last_boxed("\\boxed 5$ done")), "5");
    free(b);
    ck_assert_str_eq((b = t2g_last_boxed("\\fbox{3}")), "3");
    free(b);
    ck_assert_str_eq((b = t2g_last_boxed("\\boxed{2} and cut off \\boxed{\\frac{1")), "2");   /* incomplete last box */
    free(b);
    ck_assert_ptr_null(t2g_last_boxed("no box here"));
    ck_assert_ptr_null(t2g_last_boxed("\\boxed{never closed"));
    ck_assert_ptr_null(t2g_last_boxed("\\boxedfoo{1}"));
    /* the grader: no box is wrong and says so; an unknown answer_format is an error */
    t2_task t = mk("m", "2", "{\"answer_format\":\"boxed\"}");
    t2_verdict v = gt_grade(s_reg, "math", &t, "The answer is 2.");
    ck_assert_int_eq(v.correct, 0);
    ck_assert_ptr_nonnull(strstr(v.detail, "no \\boxed{}"));
    /* auto: a box when there is one, else the number rules */
    t = mk("m", "2", "{}");
    ck_assert_int_eq(gt_grade(s_reg, "math", &t, "so \\boxed{2}").correct, 1);
    ck_assert_int_eq(gt_grade(s_reg, "math", &t, "so #### 2").correct, 1);
    t = mk("m", "2", "{\"answer_format\":\"letters\"}");
    void *st;
    const t2_plugin *pl = t2_plugins_find(s_reg, T2_PLUGIN_GRADER, "math", &st);
    ck_assert_int_eq(((const t2_grader_ops *)pl->ops)->grade(st, &t, "2", &v), T2_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(v.detail, "unknown answer_format"));
}
END_TEST

/* ---------------- choice (ARC) ---------------- */

START_TEST(test_arc_round_trip) {
    static const char *const sets[] = {"arc-easy", "arc-challenge"};
    size_t n = 0, right = 0, wrong_letter_wrong = 0, bare = 0;
    for (int s = 0; s < 2; s++) {
        t2_dataset *d = gt_open(sets[s], NULL);
        for (size_t i = 0; i < t2_dataset_size(d); i++) {
            const t2_task *t = t2_dataset_task(d, i);
            char out[256];
            snprintf(out, sizeof out, "Let me think step by step. ... Therefore, the answer is (%s).", t->answer);
            t2_verdict v = gt_grade(s_reg, "choice", t, out);
            n++;
            if (v.correct && !strcmp(v.extracted, t->answer)) right++;
            else printf("%s %s: key %s graded %s (%s)\n", sets[s], t->id, t->answer, v.extracted, v.detail);
            char other = t->answer[0] == 'A' ? 'B' : 'A';
            snprintf(out, sizeof out, "the answer is (%c)", other);
            if (!gt_grade(s_reg, "choice", t, out).correct) wrong_letter_wrong++;
            snprintf(out, sizeof out, "%s", t->answer);
            if (gt_grade(s_reg, "choice", t, out).correct) bare++;
        }
        t2_dataset_close(d);
    }
    printf("arc: %zu of %zu answer keys round-trip through the choice grader; %zu other letters graded wrong; %zu bare "
           "letters right\n",
           right, n, wrong_letter_wrong, bare);
    ck_assert_uint_eq(n, 570 + 2376 + 299 + 1172);
    ck_assert_uint_eq(right, n);
    ck_assert_uint_eq(wrong_letter_wrong, n);
    ck_assert_uint_eq(bare, n);
}
END_TEST

static const char *s_arc_extra =
    "{\"labels\":[\"A\",\"B\",\"C\",\"D\"],\"choices\":[\"cellular telephone\",\"television\",\"refrigerator\",\"airplane\"]}";

static void choice_case(const char *output, const char *want_extracted, int correct) {
    t2_task t = mk("c", "B", s_arc_extra);
    t2_verdict v = gt_grade(s_reg, "choice", &t, output);
    ck_assert_msg(!strcmp(v.extracted, want_extracted) && v.correct == correct, "\"%s\": read \"%s\" (%s), want \"%s\"",
                  output, v.extracted, v.detail, want_extracted);
}

START_TEST(test_choice_fallbacks) {
    choice_case("The answer is (B).", "B", 1);
    choice_case("I first thought the answer is (A), but on reflection the answer is (B)", "B", 1);
    choice_case("the answer is B", "B", 1);
    choice_case("The answer is: **B**", "B", 1);
    choice_case("the answer is (b)", "B", 1);
    choice_case("So the answer is television.", "B", 1);
    choice_case("Answer: B", "B", 1);
    choice_case("Final: \\boxed{B}", "B", 1);
    choice_case("\\boxed{\\text{(B)}}", "B", 1);
    choice_case("B", "B", 1);
    choice_case("(B)", "B", 1);
    choice_case("B. television", "B", 1);
    choice_case("the answer is (C)", "C", 0);
    /* never guess */
    choice_case("A student could argue either way.", "", 0);
    choice_case("I am not sure.", "", 0);
    choice_case("the answer is (F)", "", 0);          /* not one of the choices */
    choice_case("The answer is a bit unclear", "", 0); /* the article, not a label */
    choice_case("", "", 0);
    choice_case("\\boxed{B or C}", "", 0);
    t2_task t = mk("c", "B", s_arc_extra);
    t2_verdict v = gt_grade(s_reg, "choice", &t, "nothing");
    ck_assert_ptr_nonnull(strstr(v.detail, "no answer letter found"));
    /* labels default to A-J; an answer outside the labels is the task's fault */
    t = mk("c", "E", "{}");
    ck_assert_int_eq(gt_grade(s_reg, "choice", &t, "the answer is (E)").correct, 1);
    t = mk("c", "Z", s_arc_extra);
    void *st;
    const t2_plugin *pl = t2_plugins_find(s_reg, T2_PLUGIN_GRADER, "choice", &st);
    ck_assert_int_eq(((const t2_grader_ops *)pl->ops)->grade(st, &t, "Z", &v), T2_ERR_INVALID_ARG);
}
END_TEST

/* ---------------- label, exact, regex ---------------- */

START_TEST(test_label) {
    t2_task t = mk("l", "math", "{}");
    ck_assert_int_eq(gt_grade(s_reg, "label", &t, "Classification: \\boxed{math}").correct, 1);
    ck_assert_int_eq(gt_grade(s_reg, "label", &t, "Classification: \\boxed{Math}").correct, 1);
    ck_assert_int_eq(gt_grade(s_reg, "label", &t, "\\boxed{\\text{math}}").correct, 1);
    ck_assert_int_eq(gt_grade(s_reg, "label", &t, "e.g. \\boxed{reasoning}... Classification: \\boxed{math}").correct, 1);
    ck_assert_int_eq(gt_grade(s_reg, "label", &t, "Classification: \\boxed{code}").correct, 0);
    t2_verdict v = gt_grade(s_reg, "label", &t, "Classification: math");
    ck_assert_int_eq(v.correct, 0);
    ck_assert_ptr_nonnull(strstr(v.detail, "no \\boxed{label}"));
    t = (t2_task){"l", "", "reasoning", "", "", "", "", "", "", "", "", "{}"};   /* no answer: the task's label */
    ck_assert_int_eq(gt_grade(s_reg, "label", &t, "\\boxed{reasoning}").correct, 1);
}
END_TEST

static t2_plugins *with_settings(const char *so, const char *settings) {
    t2_status s;
    t2_plugins *p = t2_plugins_new(t2_grade_host_api(), &s);
    char path[700];
    snprintf(path, sizeof path, "%s/%s", gt_plugin_dir(), so);
    ck_assert_int_eq(t2_plugins_load_file(p, path, settings), T2_OK);
    return p;
}

START_TEST(test_exact) {
    t2_task t = mk("e", "Paris", "{}");
    ck_assert_int_eq(gt_grade(s_reg, "exact", &t, "Paris").correct, 1);
    ck_assert_int_eq(gt_grade(s_reg, "exact", &t, "  Paris \n").correct, 1);
    ck_assert_int_eq(gt_grade(s_reg, "exact", &t, "paris").correct, 0);
    ck_assert_int_eq(gt_grade(s_reg, "exact", &t, "Paris, France").correct, 0);
    t = mk("e", "New  York", "{}");
    ck_assert_int_eq(gt_grade(s_reg, "exact", &t, "New York").correct, 1);   /* whitespace runs collapse */
    t2_plugins *p = with_settings("grader_exact.so", "{\"ignore_case\": true, \"collapse_whitespace\": false}");
    t = mk("e", "Paris", "{}");
    ck_assert_int_eq(gt_grade(p, "exact", &t, " PARIS ").correct, 1);
    t = mk("e", "New  York", "{}");
    ck_assert_int_eq(gt_grade(p, "exact", &t, "new york").correct, 0);
    t2_plugins_free(p);
}
END_TEST

START_TEST(test_regex) {
    t2_task t = mk("r", "^4[0-9]$", "{}");   /* the answer as the pattern */
    t2_verdict v = gt_grade(s_reg, "regex", &t, "42");
    ck_assert_int_eq(v.correct, 1);
    ck_assert_str_eq(v.extracted, "42");
    ck_assert_int_eq(gt_grade(s_reg, "regex", &t, "52").correct, 0);
    t = mk("r", "", "{\"pattern\": \"answer: (\\\\w+)\"}");   /* extra.pattern with a capture group */
    v = gt_grade(s_reg, "regex", &t, "... final answer: blue.");
    ck_assert_int_eq(v.correct, 1);
    ck_assert_str_eq(v.extracted, "blue");
    t = mk("r", "(a+)+$", "{}");   /* catastrophic backtracking is bounded */
    v = gt_grade(s_reg, "regex", &t, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaab");
    ck_assert_int_eq(v.correct, 0);
    t = mk("r", "([", "{}");
    void *st;
    const t2_plugin *pl = t2_plugins_find(s_reg, T2_PLUGIN_GRADER, "regex", &st);
    ck_assert_int_eq(((const t2_grader_ops *)pl->ops)->grade(st, &t, "x", &v), T2_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(v.detail, "bad pattern"));
    t2_plugins *p = with_settings("grader_regex.so", "{\"pattern\": \"^yes$\", \"caseless\": true}");
    t = mk("r", "", "{}");
    ck_assert_int_eq(gt_grade(p, "regex", &t, "YES").correct, 1);
    ck_assert_int_eq(gt_grade(p, "regex", &t, "no").correct, 0);
    t2_plugins_free(p);
}
END_TEST

/* ---------------- hostile outputs never crash a grader ---------------- */

START_TEST(test_hostile_outputs) {
    size_t big = 1 << 20;
    char *braces = malloc(big + 1), *junk = malloc(big + 1), *nums = malloc(big + 1);
    for (size_t i = 0; i < big; i++) {
        braces[i] = i < 8 ? "\\boxed{{"[i] : '{';
        junk[i] = (char)(1 + (i * 2654435761u >> 7) % 255);   /* invalid UTF-8, control bytes */
        nums[i] = "9,"[i % 2];
    }
    braces[big] = junk[big] = nums[big] = 0;
    const char *outs[] = {braces, junk, nums, "\\boxed{", "####", "\\boxed{}", "the answer is (", "\\frac{", "\\sqrt[",
                          "((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((1"};
    static const char *const graders[] = {"math", "choice", "label", "exact", "regex"};
    const char *answers[] = {"\\frac{1}{2}", "B", "math", "x", "^x$"};
    for (size_t g = 0; g < 5; g++)
        for (size_t o = 0; o < sizeof outs / sizeof *outs; o++) {
            t2_task t = mk("h", answers[g], g == 1 ? s_arc_extra : "{\"answer_format\":\"boxed\"}");
            t2_verdict v = gt_grade(s_reg, graders[g], &t, outs[o]);
            ck_assert_int_eq(v.correct, 0);
            ck_assert(strlen(v.detail) < sizeof v.detail && strlen(v.extracted) < sizeof v.extracted);
        }
    /* NULL arguments are errors, not crashes */
    for (size_t g = 0; g < 5; g++) {
        void *st;
        const t2_plugin *pl = t2_plugins_find(s_reg, T2_PLUGIN_GRADER, graders[g], &st);
        t2_task t = mk("h", "1", "{}");
        t2_verdict v;
        ck_assert_int_eq(((const t2_grader_ops *)pl->ops)->grade(st, &t, NULL, &v), T2_ERR_INVALID_ARG);
        ck_assert_int_eq(((const t2_grader_ops *)pl->ops)->grade(st, NULL, "x", &v), T2_ERR_INVALID_ARG);
        ck_assert_int_eq(((const t2_grader_ops *)pl->ops)->grade(st, &t, "x", NULL), T2_ERR_INVALID_ARG);
    }
    /* a malformed extra is read as {} */
    t2_task t = mk("h", "2", "not json");
    ck_assert_int_eq(gt_grade(s_reg, "math", &t, "#### 2").correct, 1);
    free(braces);
    free(junk);
    free(nums);
}
END_TEST

int main(void) {
    gt_require_data();
    Suite *s = suite_create("graders");
    TCase *tc = tcase_create("math");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_gsm8k_references);
    tcase_add_test(tc, test_gsm8k_extraction);
    tcase_add_test(tc, test_math500_boxed_vs_answer);
    tcase_add_test(tc, test_math_all_boxed);
    tcase_add_test(tc, test_equivalence_pairs);
    tcase_add_test(tc, test_math_boxed_extraction);
    suite_add_tcase(s, tc);
    tc = tcase_create("choice");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_arc_round_trip);
    tcase_add_test(tc, test_choice_fallbacks);
    suite_add_tcase(s, tc);
    tc = tcase_create("others");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_label);
    tcase_add_test(tc, test_exact);
    tcase_add_test(tc, test_regex);
    tcase_add_test(tc, test_hostile_outputs);
    suite_add_tcase(s, tc);
    SRunner *r = srunner_create(s);
    srunner_run_all(r, CK_NORMAL);
    int failed = srunner_ntests_failed(r);
    srunner_free(r);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
