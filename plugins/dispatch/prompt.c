/* prompt / classifier — the paper's first pass by classification.
 *
 * prompt: the base model is asked which kind of expert the question needs (the classification prompt of
 * plugins/common/classify.h, built from the labels of the experts the tenant can use) and answers
 * `Classification: \boxed{label}`; the expert with that label answers the second pass. An unknown label,
 * "others" or no answer means the base model.
 *
 * classifier (this file built with T2_CLASSIFIER): the same question, asked under a classification
 * expert trained for it by the cls trainer: settings {"expert": NAME}, else the tenant's expert
 * labelled "classifier".
 *
 * Settings (request dispatch_settings, else the plugin config): max_tokens (default 24), expert
 * (classifier only). The system prompt is the same for every query, so its KV cache is computed once
 * (cache_system) and each first pass costs only the question and a few generated tokens. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <t2/plugin.h>

#include "classify.h"
#include "pconfig.h"

#ifdef T2_CLASSIFIER
#define NAME "classifier"
#define DESCRIPTION "first pass: a classification expert names the label of the expert to answer with"
#else
#define NAME "prompt"
#define DESCRIPTION "first pass: the base model names the label of the expert to answer with (Classification: \\boxed{label})"
#endif

static const t2_host_api *api;

static void put_detail(t2_dispatch_decision *out, json_t *d) {
    char *text = json_dumps(d, JSON_COMPACT);
    snprintf(out->detail, sizeof out->detail, "%s", text && strlen(text) < sizeof out->detail ? text : "{}");
    free(text);
    json_decref(d);
}

static t2_status decide(void *p, t2_host *h, const t2_dispatch_request *rq, t2_dispatch_decision *out) {
    json_t *settings = json_loads(t2p_settings(p, rq->settings_json), 0, NULL);
    if (!json_is_object(settings)) {
        json_decref(settings);
        api->log(h, T2_LOG_WARN, NAME ": settings are not a JSON object");
        return T2_ERR_INVALID_ARG;
    }
    int max_tokens = json_is_integer(json_object_get(settings, "max_tokens")) ? (int)json_integer_value(json_object_get(settings, "max_tokens")) : 24;
    char *ej = NULL;
    t2_status st = api->experts_json(h, &ej);
    if (st != T2_OK) {
        json_decref(settings);
        return st;
    }
    json_t *arr = json_loads(ej, 0, NULL);
    char *pool = malloc(strlen(ej) + 1);
    const char *labels[T2_CLASSIFY_MAX_LABELS];
    int n = pool ? t2_classify_labels(ej, T2_CLASSIFY_EXPERT_LABEL, pool, labels, T2_CLASSIFY_MAX_LABELS) : 0;
    json_t *detail = json_object();
    json_t *jl = json_array();
    for (int i = 0; i < n; i++) json_array_append_new(jl, json_string(labels[i]));
    json_object_set_new(detail, "labels", jl);
    t2_hexpert *classifier = NULL;
#ifdef T2_CLASSIFIER
    const char *cname = json_string_value(json_object_get(settings, "expert"));
    if (!cname) cname = json_is_array(arr) ? t2p_expert_where(arr, "label", T2_CLASSIFY_EXPERT_LABEL, "name") : NULL;
    if (!cname) {
        api->log(h, T2_LOG_WARN, "classifier: no classification expert (settings \"expert\", or an expert labelled \"classifier\")");
        st = T2_ERR_NOT_FOUND;
    } else if ((st = api->expert_open(h, cname, &classifier)) == T2_OK) {
        json_object_set_new(detail, "classifier", json_string(cname));
    }
#endif
    char *system = st == T2_OK && n > 0 ? t2_classify_system(labels, n) : NULL;
    if (st == T2_OK && n > 0 && !system) st = T2_ERR_NOMEM;
    if (st == T2_OK && n > 0) {
        const char *prompts[1] = {rq->prompt ? rq->prompt : ""};
        const t2_hexpert *ex[1] = {classifier};
        /* the answer is complete at the box's closing brace: stop there (the parser accepts the cut box) */
        static const char *const stop[] = {"}"};
        t2_gen_params gp = {.max_tokens = max_tokens, .temperature = 0, .top_p = 1, .chat = 1, .system = system, .cache_system = 1,
                            .stop = stop, .n_stop = 1};
        t2_gen_result res;
        memset(&res, 0, sizeof res);
        if ((st = api->generate(h, prompts, ex, 1, &gp, &res)) == T2_OK) {
            int k = t2_classify_parse(res.text, labels, n);
            char first[201];
            snprintf(first, sizeof first, "%s", res.text ? res.text : "");
            json_object_set_new(detail, "first_pass", json_string(first));
            if (k >= 0) {
                const char *name = t2p_expert_where(arr, "label", labels[k], "name");
                snprintf(out->label, sizeof out->label, "%s", labels[k]);
                if (name && (st = api->expert_open(h, name, &out->expert)) == T2_OK) json_object_set_new(detail, "expert", json_string(name));
            } else {
                json_object_set_new(detail, "expert", json_null());
            }
            api->gen_result_clear(&res);
        }
    } else if (st == T2_OK) {
        json_object_set_new(detail, "reason", json_string("no labelled experts: the base model answers"));
    }
    api->expert_free(classifier);
    free(system);
    free(pool);
    json_decref(arr);
    api->free(ej);
    json_decref(settings);
    put_detail(out, detail);
    return st;
}

static const t2_dispatch_ops OPS = {.struct_size = sizeof(t2_dispatch_ops), .decide = decide};

static const t2_plugin PLUGIN = {
    .abi_major = T2_ABI_MAJOR,
    .abi_minor = T2_ABI_MINOR,
    .struct_size = sizeof(t2_plugin),
    .kind = T2_PLUGIN_DISPATCH,
    .name = NAME,
    .version = "1.0",
    .description = DESCRIPTION,
    .init = t2p_config_init,
    .fini = t2p_config_fini,
    .ops = &OPS,
};

T2_PLUGIN_EXPORT const t2_plugin *t2_plugin_entry(const t2_host_api *host) {
    if (!t2_host_api_compatible(host) || !T2_HAS_MEMBER(host, generate)) return NULL;
    api = host;
    return &PLUGIN;
}
