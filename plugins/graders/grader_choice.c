/* grader_choice — multiple choice (ARC): the answer letter from "the answer is (X)".
 *
 * Reading order, the first that yields one of the task's labels wins:
 *   1. the last "answer is" followed by a label: "(B)", "B", "**B**", "\boxed{B}", or by the exact text of
 *      one choice ("the answer is television");
 *   2. the last "answer:" followed by a label the same way;
 *   3. the last \boxed{} holding just a label;
 *   4. an output that is just a label ("B", "(B)", "B.") or starts with one followed by a delimiter
 *      ("B. television", "(B) television").
 * Fallbacks never guess: no random pick, and no "last capital letter" scan (which would read the article
 * "A" or the pronoun "I" as an answer). Without a label the verdict is wrong with the reason. Labels come
 * from extra.labels; without them, A to J. A single-letter label is matched in upper case unless it is
 * inside parentheses. */
#include "gradelib.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

enum { MAX_LABELS = 26 };

typedef struct labels {
    char lab[MAX_LABELS][16];
    char *text[MAX_LABELS];   /* choice texts or NULL */
    int n;
} labels;

static void labels_load(labels *L, const t2_task *t) {
    memset(L, 0, sizeof *L);
    json_t *ex = t2g_task_extra(t);
    json_t *a = ex ? json_object_get(ex, "labels") : NULL, *c = ex ? json_object_get(ex, "choices") : NULL;
    for (size_t i = 0; json_is_array(a) && i < json_array_size(a) && L->n < MAX_LABELS; i++) {
        json_t *e = json_array_get(a, i);
        if (!json_is_string(e) || !*json_string_value(e) || strlen(json_string_value(e)) >= sizeof L->lab[0]) continue;
        snprintf(L->lab[L->n], sizeof L->lab[0], "%s", json_string_value(e));
        json_t *tx = json_is_array(c) ? json_array_get(c, i) : NULL;
        L->text[L->n] = json_is_string(tx) && *json_string_value(tx) ? strdup(json_string_value(tx)) : NULL;
        L->n++;
    }
    if (!L->n)
        for (int i = 0; i < 10; i++) snprintf(L->lab[L->n++], sizeof L->lab[0], "%c", 'A' + i);
    json_decref(ex);
}

static void labels_free(labels *L) {
    for (int i = 0; i < L->n; i++) free(L->text[i]);
}

/* A label at p followed by a non-alphanumeric character; -1 if none. `paren`: inside "(...)", where a
 * lowercase single letter also counts. */
static int label_at(const labels *L, const char *p, int paren) {
    for (int i = 0; i < L->n; i++) {
        size_t n = strlen(L->lab[i]);
        int same = paren && n == 1 ? toupper((unsigned char)p[0]) == toupper((unsigned char)L->lab[i][0])
                                   : !strncmp(p, L->lab[i], n);
        if (same && !isalnum((unsigned char)p[n])) return i;
    }
    return -1;
}

/* The label stated at p (just after "answer is" / "answer:"). */
static int label_after(const labels *L, const char *p) {
    while (*p == ' ' || *p == ':' || *p == '*' || *p == '\t' || *p == '$') p++;
    if (!strncmp(p, "\\boxed{", 7)) p += 7;
    if (!strncmp(p, "\\text{", 6)) p += 6;
    if (!strncasecmp(p, "option ", 7)) p += 7;
    if (!strncasecmp(p, "choice ", 7)) p += 7;
    int paren = *p == '(' || *p == '[';
    if (paren) p++;
    int i = label_at(L, p, paren);
    if (i >= 0) return i;
    /* the exact text of one choice */
    int hit = -1;
    for (int k = 0; k < L->n; k++) {
        if (!L->text[k]) continue;
        size_t n = strlen(L->text[k]);
        if (!strncasecmp(p, L->text[k], n) && !isalnum((unsigned char)p[n])) {
            if (hit >= 0 && strlen(L->text[hit]) != n) return -1;   /* two choices fit: no guess */
            if (hit < 0 || strlen(L->text[k]) > strlen(L->text[hit])) hit = k;
        }
    }
    return hit;
}

/* Scan every occurrence of `key` (case-insensitive); the last one naming a label wins. */
static int last_stated(const labels *L, const char *s, const char *key) {
    int r = -1;
    size_t kl = strlen(key);
    for (const char *p = s; (p = strcasestr(p, key)); p += kl) {
        int i = label_after(L, p + kl);
        if (i >= 0) r = i;
    }
    return r;
}

static int boxed_label(const labels *L, const char *s) {
    char *b = t2g_last_boxed(s);
    if (!b) return -1;
    char *p = b;
    while (*p == ' ') p++;
    if (!strncmp(p, "\\text{", 6)) p += 6;
    int paren = *p == '(';
    if (paren) p++;
    int i = label_at(L, p, paren);
    if (i >= 0) {
        const char *e = p + strlen(L->lab[i]);
        while (*e == ')' || *e == '}' || *e == ' ' || *e == '.') e++;
        if (*e) i = -1;   /* more than a label in the box */
    }
    free(b);
    return i;
}

static int leading_label(const labels *L, const char *s) {
    while (isspace((unsigned char)*s) || *s == '*') s++;
    int paren = *s == '(';
    const char *p = s + paren;
    int i = label_at(L, p, paren);
    if (i < 0) return -1;
    const char *e = p + strlen(L->lab[i]);
    if (paren) {
        if (*e != ')') return -1;
        e++;
    } else if (*e == '.' || *e == ')' || *e == ':') {
        e++;
    } else if (*e) {
        while (*e == '*') e++;
        if (*e) return -1;   /* "A student..." is not an answer */
    }
    while (*e == '*') e++;
    return !*e || isspace((unsigned char)*e) ? i : -1;
}

static t2_status grade(void *state, const t2_task *t, const char *output, t2_verdict *v) {
    (void)state;
    t2_status s = t2g_check_args(t, output, v);
    if (s) return s;
    labels L;
    labels_load(&L, t);
    int want = -1;
    for (int i = 0; i < L.n; i++)
        if (t->answer && !strcmp(t->answer, L.lab[i])) want = i;
    if (want < 0) {
        t2g_verdict(v, 0, "", "task %s: answer \"%s\" is not one of its labels", t->id ? t->id : "?", t->answer ? t->answer : "");
        labels_free(&L);
        return T2_ERR_INVALID_ARG;
    }
    const char *how = "\"answer is\"";
    int got = last_stated(&L, output, "answer is");
    if (got < 0) got = last_stated(&L, output, "answer:"), how = "\"answer:\"";
    if (got < 0) got = boxed_label(&L, output), how = "\\boxed{}";
    if (got < 0) got = leading_label(&L, output), how = "the output itself";
    if (got < 0)
        t2g_verdict(v, 0, "", "no answer letter found (expected \"the answer is (X)\" with X in %s..%s)", L.lab[0], L.lab[L.n - 1]);
    else
        t2g_verdict(v, got == want, L.lab[got], "read from %s%s%s", how, got == want ? "" : "; expected ",
                    got == want ? "" : L.lab[want]);
    labels_free(&L);
    return T2_OK;
}

T2G_DEFINE_GRADER("choice", "multiple choice: the letter from \"the answer is (X)\", fallbacks that never guess", NULL,
                  NULL, grade)
