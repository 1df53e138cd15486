/* grader_exact — the output equals the task's answer.
 *
 * Settings (plugin init JSON): "strip" (default true: ignore leading and trailing whitespace),
 * "collapse_whitespace" (default true: any run of whitespace counts as one space), "ignore_case" (default
 * false). The same processing applies to both sides. */
#include "gradelib.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

typedef struct exact_cfg {
    int strip, collapse, icase;
} exact_cfg;

static int flag(const json_t *o, const char *k, int dflt) {
    json_t *v = json_object_get(o, k);
    return json_is_boolean(v) ? json_is_true(v) : dflt;
}

static t2_status init(const t2_host_api *api, const char *config, void **state) {
    json_t *o;
    t2_status s = t2g_settings(api, "exact", config, &o);
    if (s) return s;
    exact_cfg *c = malloc(sizeof *c);
    if (!c) {
        json_decref(o);
        return T2_ERR_NOMEM;
    }
    c->strip = flag(o, "strip", 1);
    c->collapse = flag(o, "collapse_whitespace", 1);
    c->icase = flag(o, "ignore_case", 0);
    json_decref(o);
    *state = c;
    return T2_OK;
}

static void fini(void *state) { free(state); }

static char *process(const exact_cfg *c, const char *s) {
    char *r = malloc(strlen(s) + 1);
    if (!r) return NULL;
    size_t k = 0;
    int space = 0;
    for (const char *p = s; *p; p++) {
        unsigned char ch = (unsigned char)*p;
        if (c->collapse && isspace(ch)) {
            space = 1;
            continue;
        }
        if (space && (k || !c->strip)) r[k++] = ' ';
        space = 0;
        r[k++] = c->icase ? (char)tolower(ch) : (char)ch;
    }
    if (space && !c->strip) r[k++] = ' ';
    r[k] = 0;
    if (c->strip && !c->collapse) {
        size_t a = 0;
        while (isspace((unsigned char)r[a])) a++;
        while (k > a && isspace((unsigned char)r[k - 1])) k--;
        memmove(r, r + a, k - a);
        r[k - a] = 0;
    }
    return r;
}

static t2_status grade(void *state, const t2_task *t, const char *output, t2_verdict *v) {
    static const exact_cfg dflt = {1, 1, 0};
    const exact_cfg *c = state ? state : &dflt;
    t2_status s = t2g_check_args(t, output, v);
    if (s) return s;
    char *a = process(c, output), *b = process(c, t->answer ? t->answer : "");
    if (!a || !b) s = T2_ERR_NOMEM;
    else {
        int ok = !strcmp(a, b);
        t2g_verdict(v, ok, a, "%s%s", ok ? "exact match" : "differs from ", ok ? "" : b);
    }
    free(a);
    free(b);
    return s;
}

T2G_DEFINE_GRADER("exact", "the output equals the answer (whitespace and case handling in settings)", init, fini, grade)
