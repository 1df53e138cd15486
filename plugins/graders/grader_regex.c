/* grader_regex — the output matches a regular expression (PCRE2, UTF-8).
 *
 * The pattern is the task's extra.pattern, else the plugin setting "pattern", else the task's answer.
 * Correct when it matches anywhere in the output (anchor with ^...$ for a whole-output match; (?i) etc.
 * for flags). extracted is capture group 1 when the pattern has one, else the whole match. Settings:
 * "pattern", "caseless" (default false), "multiline" (default true: ^ and $ at line ends). Matching is
 * bounded (match and depth limits), so a pathological pattern gives a wrong verdict, not a hang. */
#define PCRE2_CODE_UNIT_WIDTH 8
#include "gradelib.h"

#include <pcre2.h>
#include <stdlib.h>
#include <string.h>

typedef struct regex_cfg {
    char *pattern;   /* NULL: none in settings */
    uint32_t options;
} regex_cfg;

static t2_status init(const t2_host_api *api, const char *config, void **state) {
    json_t *o;
    t2_status s = t2g_settings(api, "regex", config, &o);
    if (s) return s;
    regex_cfg *c = calloc(1, sizeof *c);
    if (!c) {
        json_decref(o);
        return T2_ERR_NOMEM;
    }
    const char *p = t2g_json_str(o, "pattern");
    c->pattern = p ? strdup(p) : NULL;
    c->options = PCRE2_UTF | PCRE2_MATCH_INVALID_UTF;
    if (json_is_true(json_object_get(o, "caseless"))) c->options |= PCRE2_CASELESS;
    if (!json_is_false(json_object_get(o, "multiline"))) c->options |= PCRE2_MULTILINE;
    json_decref(o);
    *state = c;
    return T2_OK;
}

static void fini(void *state) {
    regex_cfg *c = state;
    if (c) free(c->pattern);
    free(c);
}

static t2_status grade(void *state, const t2_task *t, const char *output, t2_verdict *v) {
    static const regex_cfg dflt = {NULL, PCRE2_UTF | PCRE2_MATCH_INVALID_UTF | PCRE2_MULTILINE};
    const regex_cfg *c = state ? state : &dflt;
    t2_status s = t2g_check_args(t, output, v);
    if (s) return s;
    json_t *ex = t2g_task_extra(t);
    const char *pat = ex ? t2g_json_str(ex, "pattern") : NULL;
    if (!pat) pat = c->pattern;
    if (!pat) pat = t->answer;
    if (!pat || !*pat) {
        json_decref(ex);
        t2g_verdict(v, 0, "", "task %s: no pattern (extra.pattern, the \"pattern\" setting or the answer)", t->id ? t->id : "?");
        return T2_ERR_INVALID_ARG;
    }
    int err;
    PCRE2_SIZE off;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pat, PCRE2_ZERO_TERMINATED, c->options, &err, &off, NULL);
    if (!re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(err, msg, sizeof msg);
        t2g_verdict(v, 0, "", "task %s: bad pattern at offset %zu: %s", t->id ? t->id : "?", (size_t)off, (char *)msg);
        json_decref(ex);
        return T2_ERR_INVALID_ARG;
    }
    json_decref(ex);
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(re, NULL);
    pcre2_match_context *mc = pcre2_match_context_create(NULL);
    if (!md || !mc) {
        s = T2_ERR_NOMEM;
    } else {
        pcre2_set_match_limit(mc, 1000000);
        pcre2_set_depth_limit(mc, 10000);
        int rc = pcre2_match(re, (PCRE2_SPTR)output, strlen(output), 0, 0, md, mc);
        if (rc > 0) {
            PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
            int g = rc > 1 && ov[2] != PCRE2_UNSET ? 1 : 0;
            size_t a = ov[2 * g], b = ov[2 * g + 1];
            char *ext = strndup(output + a, b - a < 1024 ? b - a : 1024);
            t2g_verdict(v, 1, ext ? ext : "", "matches");
            free(ext);
        } else if (rc == PCRE2_ERROR_NOMATCH) {
            t2g_verdict(v, 0, "", "no match");
        } else {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(rc, msg, sizeof msg);
            t2g_verdict(v, 0, "", "match failed: %s", (char *)msg);
        }
    }
    pcre2_match_context_free(mc);
    pcre2_match_data_free(md);
    pcre2_code_free(re);
    return s;
}

T2G_DEFINE_GRADER("regex", "the output matches a PCRE2 pattern (extra.pattern, settings or the answer)", init, fini, grade)
