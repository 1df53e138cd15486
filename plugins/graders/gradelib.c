/* Shared grader helpers (see gradelib.h). */
#include "gradelib.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void t2g_copy_utf8(char *dst, size_t cap, const char *src) {
    if (!cap) return;
    if (!src) src = "";
    size_t n = strlen(src);
    if (n >= cap) {
        n = cap - 1;
        /* back off over continuation bytes so that no character is cut in half */
        while (n > 0 && ((unsigned char)src[n] & 0xC0) == 0x80) n--;
    }
    memcpy(dst, src, n);
    dst[n] = 0;
}

t2_status t2g_verdict(t2_verdict *v, int correct, const char *extracted, const char *fmt, ...) {
    v->correct = correct ? 1 : 0;
    v->score = correct ? 1.0 : 0.0;
    t2g_copy_utf8(v->extracted, sizeof v->extracted, extracted);
    char tmp[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    t2g_copy_utf8(v->detail, sizeof v->detail, tmp);
    return T2_OK;
}

json_t *t2g_task_extra(const t2_task *t) {
    json_t *o = NULL;
    if (t && t->extra && *t->extra) o = json_loads(t->extra, 0, NULL);
    if (o && !json_is_object(o)) {
        json_decref(o);
        o = NULL;
    }
    return o ? o : json_object();
}

const char *t2g_json_str(const json_t *obj, const char *key) {
    json_t *v = json_object_get(obj, key);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

t2_status t2g_settings(const t2_host_api *api, const char *plugin, const char *json, json_t **out) {
    json_error_t je;
    *out = NULL;
    if (!json || !*json) json = "{}";
    json_t *o = json_loads(json, 0, &je);
    if (!o || !json_is_object(o)) {
        if (api && api->log)
            api->log(NULL, T2_LOG_ERROR, "grader %s: settings are not a JSON object: %s", plugin, o ? "not an object" : je.text);
        json_decref(o);
        return T2_ERR_FORMAT;
    }
    *out = o;
    return T2_OK;
}

t2_status t2g_check_args(const t2_task *task, const char *output, t2_verdict *v) {
    if (!v) return T2_ERR_INVALID_ARG;
    if (!task || !output) {
        t2g_verdict(v, 0, "", "grader called without a %s", !task ? "task" : "output");
        return T2_ERR_INVALID_ARG;
    }
    return T2_OK;
}

char *t2g_label_norm(const char *s) {
    char *b = t2g_math_normalize(s ? s : "");   /* unwraps \text{}, drops spaces and a final full stop */
    if (!b) return NULL;
    size_t k = 0;
    for (size_t i = 0; b[i]; i++) {
        unsigned char c = (unsigned char)b[i];
        if (c == '"' || c == '\'' || c == '`' || c == '*') continue;
        b[k++] = (char)tolower(c);
    }
    b[k] = 0;
    while (k && strchr(".,;:!", b[k - 1])) b[--k] = 0;
    return b;
}
