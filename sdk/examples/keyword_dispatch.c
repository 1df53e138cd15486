/* keyword_dispatch — an example dispatch plugin, built out of tree against the installed SDK:
 *
 *     cc -shared -fPIC -O2 $(pkg-config --cflags t2-sdk) keyword_dispatch.c -o keyword_dispatch.so
 *
 * and copied into t2d's plugin_dir. It answers the first pass without running the model: it looks for
 * the label of each expert the tenant can use (from the host's experts_json) as a word in the prompt,
 * and picks the first expert whose label appears; no match means the base model.
 *
 * Everything a plugin needs comes through the host table it is given; it never links against t2. */
#define _POSIX_C_SOURCE 200809L   /* strncasecmp */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <t2/plugin.h>

static const t2_host_api *api;

/* Case-insensitive search for word as a whole word in text. */
static int has_word(const char *text, const char *word, size_t wl) {
    for (const char *p = text; *p; p++) {
        if ((p == text || !isalnum((unsigned char)p[-1])) && !strncasecmp(p, word, wl) && !isalnum((unsigned char)p[wl])) return 1;
    }
    return 0;
}

/* The experts_json array is [{"name":"...","label":"...",...},...]; read names and labels without a JSON
 * library (names and labels are plain tokens: the daemon restricts them to A-Z a-z 0-9 . _ -). */
static const char *next_field(const char *p, const char *key, char *out, size_t cap) {
    char pat[32];
    snprintf(pat, sizeof pat, "\"%s\":\"", key);
    const char *at = strstr(p, pat);
    if (!at) return NULL;
    at += strlen(pat);
    size_t n = 0;
    while (at[n] && at[n] != '"' && n + 1 < cap) n++;
    memcpy(out, at, n);
    out[n] = 0;
    return at + n;
}

static t2_status decide(void *state, t2_host *h, const t2_dispatch_request *rq, t2_dispatch_decision *out) {
    (void)state;
    char *json = NULL;
    t2_status st = api->experts_json(h, &json);
    if (st != T2_OK) return st;
    const char *p = json;
    char name[160], label[64];
    st = T2_OK;
    while ((p = next_field(p, "name", name, sizeof name)) && (p = next_field(p, "label", label, sizeof label))) {
        if (*label && rq->prompt && has_word(rq->prompt, label, strlen(label))) {
            st = api->expert_open(h, name, &out->expert);
            snprintf(out->label, sizeof out->label, "%s", label);
            snprintf(out->detail, sizeof out->detail, "{\"matched\": \"%s\", \"expert\": \"%s\"}", label, name);
            break;
        }
    }
    if (!out->expert) snprintf(out->detail, sizeof out->detail, "{\"matched\": null}");
    api->free(json);
    api->log(h, T2_LOG_DEBUG, "keyword dispatch chose %s", out->label[0] ? out->label : "the base model");
    return st;
}

static const t2_dispatch_ops OPS = {.struct_size = sizeof(t2_dispatch_ops), .decide = decide};

static const t2_plugin PLUGIN = {
    .abi_major = T2_ABI_MAJOR,
    .abi_minor = T2_ABI_MINOR,
    .struct_size = sizeof(t2_plugin),
    .kind = T2_PLUGIN_DISPATCH,
    .name = "keyword",
    .version = "1.0",
    .description = "example: the expert whose label appears as a word in the prompt",
    .ops = &OPS,
};

T2_PLUGIN_EXPORT const t2_plugin *t2_plugin_entry(const t2_host_api *host) {
    if (!t2_host_api_compatible(host) || !T2_HAS_MEMBER(host, expert_open)) return NULL;
    api = host;
    return &PLUGIN;
}
