/* gradelib.h — what every grader plugin shares: filling a verdict, reading a task's extra JSON and the
 * plugin's settings, and the boilerplate of the plugin description. Compiled into each grader .so (a
 * static helper library); sees only the SDK headers and jansson. */
#ifndef T2G_GRADELIB_H
#define T2G_GRADELIB_H

#include <jansson.h>
#include <stddef.h>

#include <t2/plugin.h>

#include "answer.h"

/* Set a verdict: correct (score 1/0), extracted (NULL: "") and a printf detail, each truncated to its
 * field at a UTF-8 character boundary. Returns T2_OK so that graders can `return t2g_verdict(...)`. */
t2_status t2g_verdict(t2_verdict *v, int correct, const char *extracted, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Copy src into dst[cap] whole or cut at a UTF-8 character boundary, NUL-terminated. */
void t2g_copy_utf8(char *dst, size_t cap, const char *src);

/* The task's extra as a JSON object (an empty object when extra is empty or not an object). Caller
 * releases with json_decref; NULL only when out of memory. */
json_t *t2g_task_extra(const t2_task *t);

/* obj[key] if it is a string, else NULL. Borrowed from obj. */
const char *t2g_json_str(const json_t *obj, const char *key);

/* Parse plugin settings ("{}" when NULL or empty). T2_ERR_FORMAT when not a JSON object; the reason is
 * logged through api->log. *out: caller releases with json_decref. */
t2_status t2g_settings(const t2_host_api *api, const char *plugin, const char *json, json_t **out);

/* Check the common arguments of a grade call; fills v with the reason when something is missing. */
t2_status t2g_check_args(const t2_task *task, const char *output, t2_verdict *v);

/* A lowercased, trimmed copy of s with \text{}/\mathrm{} wrappers, quotes and surrounding punctuation
 * removed ("\text{Math}." -> "math"). Caller frees. */
char *t2g_label_norm(const char *s);

/* Define the plugin entry point for a grader (name, description, init, fini, grade). */
#define T2G_DEFINE_GRADER(NAME, DESC, INIT, FINI, GRADE)                                                          \
    static const t2_grader_ops s_grader_ops = {sizeof(t2_grader_ops), GRADE};                                    \
    static const t2_plugin s_plugin = {T2_ABI_MAJOR, T2_ABI_MINOR, sizeof(t2_plugin), T2_PLUGIN_GRADER, NAME,      \
                                       "1.0", DESC, INIT, FINI, &s_grader_ops};                                    \
    T2_PLUGIN_EXPORT const t2_plugin *t2_plugin_entry(const t2_host_api *api);                                    \
    T2_PLUGIN_EXPORT const t2_plugin *t2_plugin_entry(const t2_host_api *api) {                                   \
        return t2_host_api_compatible(api) ? &s_plugin : NULL;                                                    \
    }

#endif
