/* One source, many test plugins: each VARIANT_* define builds a plugin that the loader must refuse for one
 * reason (or, VARIANT_GOOD, an "echo" grader that accepts). Built by testplugins/meson.build. */
#include <t2/plugin.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef KIND
#define KIND T2_PLUGIN_GRADER
#endif

typedef struct echo_state {
    char want[64];
    char fini_file[512];
} echo_state;

__attribute__((unused)) static t2_status grade(void *state, const t2_task *t, const char *output, t2_verdict *v) {
    (void)t;
    echo_state *st = state;
    memset(v, 0, sizeof *v);
    v->correct = st && !strcmp(output, st->want);
    v->score = v->correct;
    snprintf(v->extracted, sizeof v->extracted, "%s", output);
    return T2_OK;
}

/* settings {"want": "...", "fini_file": "..."}, read without a JSON library (a test plugin) */
__attribute__((unused)) static void field(const char *json, const char *key, char *out, size_t cap) {
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\": \"", key);
    const char *p = strstr(json, pat);
    out[0] = 0;
    if (!p) return;
    p += strlen(pat);
    const char *e = strchr(p, '"');
    if (e) snprintf(out, cap, "%.*s", (int)(e - p), p);
}

static t2_status init(const t2_host_api *api, const char *config, void **state) {
    (void)api;
#ifdef VARIANT_INIT_FAIL
    (void)config;
    (void)state;
    return T2_ERR_FORMAT;
#else
    echo_state *st = calloc(1, sizeof *st);
    if (!st) return T2_ERR_NOMEM;
    field(config, "want", st->want, sizeof st->want);
    field(config, "fini_file", st->fini_file, sizeof st->fini_file);
    *state = st;
    return T2_OK;
#endif
}

static void fini(void *state) {
    echo_state *st = state;
    if (st && st->fini_file[0]) {
        FILE *f = fopen(st->fini_file, "w");
        if (f) fclose(f);
    }
    free(st);
}

#if defined(VARIANT_SMALL_OPS)
__attribute__((unused)) static const t2_grader_ops s_ops = {2, grade};
#elif defined(VARIANT_NULL_GRADE)
__attribute__((unused)) static const t2_grader_ops s_ops = {sizeof(t2_grader_ops), NULL};
#else
__attribute__((unused)) static const t2_grader_ops s_ops = {sizeof(t2_grader_ops), grade};
#endif

__attribute__((unused)) static const t2_plugin s_plugin = {
#ifdef VARIANT_BAD_ABI
    2, 0,
#else
    T2_ABI_MAJOR, T2_ABI_MINOR,
#endif
#ifdef VARIANT_SMALL_STRUCT
    16,
#else
    sizeof(t2_plugin),
#endif
#ifdef VARIANT_BAD_KIND
    (t2_plugin_kind)7,
#else
    KIND,
#endif
#if defined(VARIANT_DUP)
    "math",
#elif defined(VARIANT_BAD_NAME)
    "no spaces/allowed",
#elif defined(VARIANT_INIT_FAIL)
    "failing",
#else
    "echo",
#endif
    "0.1", "a test plugin", init, fini,
#ifdef VARIANT_NULL_OPS
    NULL,
#else
    &s_ops,
#endif
};

#ifdef VARIANT_NO_ENTRY
T2_PLUGIN_EXPORT int not_the_entry(void);
T2_PLUGIN_EXPORT int not_the_entry(void) { return s_plugin.kind; }
#else
T2_PLUGIN_EXPORT const t2_plugin *t2_plugin_entry(const t2_host_api *api);
T2_PLUGIN_EXPORT const t2_plugin *t2_plugin_entry(const t2_host_api *api) {
#ifdef VARIANT_NULL_ENTRY
    (void)api;
    return NULL;
#else
    return t2_host_api_compatible(api) ? &s_plugin : NULL;
#endif
}
#endif
