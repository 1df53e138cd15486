/* grader_math — GSM8K and MATH answers.
 *
 * Which reading applies comes from the task's extra.answer_format:
 *   "number" (GSM8K): the number after the last "####", else in the last \boxed{}, else after the last
 *            "answer is", else the last number of the output; compared numerically with the reference.
 *   "boxed"  (MATH):  the last \boxed{} of the output, compared with t2g_math_equal (normalised LaTeX,
 *            numeric forms, tuples and intervals). No \boxed{} is wrong, as in the reference evaluation.
 *   absent (generic tasks): "boxed" when the output has a \boxed{}, else "number". */
#include "gradelib.h"

#include <stdlib.h>
#include <string.h>

static const char *how_text(t2g_num_how h) {
    switch (h) {
    case T2G_NUM_HASHES: return "after ####";
    case T2G_NUM_BOXED: return "in \\boxed{}";
    case T2G_NUM_ANSWER_IS: return "after \"answer is\"";
    case T2G_NUM_LAST: return "last number";
    default: return "none";
    }
}

static t2_status grade_number(const t2_task *t, const char *output, t2_verdict *v) {
    char num[128];
    t2g_num_how how = t2g_find_number(output, num, sizeof num);
    if (how == T2G_NUM_NONE) return t2g_verdict(v, 0, "", "no number in the output");
    double got, want;
    int ok;
    if (t2g_parse_number(t->answer, &want) && t2g_parse_number(num, &got)) ok = t2g_num_equal(got, want);
    else ok = t2g_math_equal(num, t->answer);
    return t2g_verdict(v, ok, num, "%s (%s)%s%s", ok ? "equal" : "not equal", how_text(how), ok ? "" : "; expected ",
                       ok ? "" : t->answer);
}

static t2_status grade_boxed(const t2_task *t, const char *output, t2_verdict *v) {
    char *b = t2g_last_boxed(output);
    if (!b) return t2g_verdict(v, 0, "", "no \\boxed{} in the output");
    int ok = t2g_math_equal(b, t->answer);
    t2g_verdict(v, ok, b, "%s%s", ok ? "equivalent" : "not equivalent to ", ok ? "" : t->answer);
    free(b);
    return T2_OK;
}

static t2_status grade(void *state, const t2_task *t, const char *output, t2_verdict *v) {
    (void)state;
    t2_status s = t2g_check_args(t, output, v);
    if (s) return s;
    if (!t->answer || !*t->answer) {
        t2g_verdict(v, 0, "", "task %s has no reference answer", t->id ? t->id : "?");
        return T2_ERR_INVALID_ARG;
    }
    json_t *ex = t2g_task_extra(t);
    const char *fmt = ex ? t2g_json_str(ex, "answer_format") : NULL;
    char buf[16];
    snprintf(buf, sizeof buf, "%s", fmt ? fmt : "");
    json_decref(ex);
    if (!strcmp(buf, "number")) return grade_number(t, output, v);
    if (!strcmp(buf, "boxed")) return grade_boxed(t, output, v);
    if (*buf) {
        t2g_verdict(v, 0, "", "task %s: unknown answer_format \"%s\" (number or boxed)", t->id, buf);
        return T2_ERR_INVALID_ARG;
    }
    if (strstr(output, "\\boxed") || strstr(output, "\\fbox")) return grade_boxed(t, output, v);
    return grade_number(t, output, v);
}

T2G_DEFINE_GRADER("math", "GSM8K (#### N or last number) and MATH (\\boxed{} with LaTeX normalisation) answers",
                  NULL, NULL, grade)
