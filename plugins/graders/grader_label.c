/* grader_label — the classification expert's answer: the last \boxed{label} of the output, compared
 * case-insensitively (\text{} wrappers, quotes and spaces ignored) with the task's answer, or with its
 * label when the answer is empty. No \boxed{} is wrong (as the reference's classifier evaluation). */
#include "gradelib.h"

#include <stdlib.h>
#include <string.h>

static t2_status grade(void *state, const t2_task *t, const char *output, t2_verdict *v) {
    (void)state;
    t2_status s = t2g_check_args(t, output, v);
    if (s) return s;
    const char *want = t->answer && *t->answer ? t->answer : t->label;
    if (!want || !*want) {
        t2g_verdict(v, 0, "", "task %s has neither an answer nor a label", t->id ? t->id : "?");
        return T2_ERR_INVALID_ARG;
    }
    char *b = t2g_last_boxed(output);
    if (!b) return t2g_verdict(v, 0, "", "no \\boxed{label} in the output");
    char *got = t2g_label_norm(b), *exp = t2g_label_norm(want);
    if (!got || !exp) s = T2_ERR_NOMEM;
    else {
        int ok = !strcmp(got, exp) && *got;
        t2g_verdict(v, ok, got, "%s%s", ok ? "label matches" : "expected ", ok ? "" : exp);
    }
    free(b);
    free(got);
    free(exp);
    return s;
}

T2G_DEFINE_GRADER("label", "classification labels: \\boxed{label} against the task's answer or label", NULL, NULL, grade)
