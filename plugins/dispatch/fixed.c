/* fixed — the simplest dispatch: always the same expert or mixture, or none (the base model).
 *
 * Settings (from the request's dispatch_settings, else the plugin's config):
 *   {"expert": "math"}                                      one expert
 *   {"mix": [{"expert": "math", "alpha": 0.7}, {"expert": "code", "alpha": 0.3}]}   a mixture
 *   {}                                                      the base model */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <t2/plugin.h>

#include "pconfig.h"

static const t2_host_api *api;

/* The label of expert `name` as the registry has it ("" if unknown). */
static void label_of(t2_host *h, const char *name, char *out, size_t cap) {
    char *js = NULL;
    out[0] = 0;
    if (api->experts_json(h, &js) != T2_OK) return;
    json_t *a = json_loads(js, 0, NULL);
    const char *l = t2p_expert_where(a, "name", name, "label");
    if (l) snprintf(out, cap, "%s", l);
    json_decref(a);
    api->free(js);
}

static t2_status decide(void *p, t2_host *h, const t2_dispatch_request *rq, t2_dispatch_decision *out) {
    json_t *o = json_loads(t2p_settings(p, rq->settings_json), 0, NULL);
    if (!json_is_object(o)) {
        json_decref(o);
        api->log(h, T2_LOG_WARN, "fixed: settings are not a JSON object");
        return T2_ERR_INVALID_ARG;
    }
    t2_status st = T2_OK;
    const char *one = json_string_value(json_object_get(o, "expert"));
    json_t *mix = json_object_get(o, "mix");
    if (one) {
        st = api->expert_open(h, one, &out->expert);
        snprintf(out->detail, sizeof out->detail, "{\"expert\": \"%s\"}", one);
        label_of(h, one, out->label, sizeof out->label);
    } else if (json_is_array(mix) && json_array_size(mix) > 0 && json_array_size(mix) <= 16) {
        size_t k = json_array_size(mix);
        t2_hexpert *parts[16] = {0};
        float alpha[16];
        for (size_t i = 0; st == T2_OK && i < k; i++) {
            json_t *m = json_array_get(mix, i);
            const char *name = json_string_value(json_object_get(m, "expert"));
            alpha[i] = json_is_number(json_object_get(m, "alpha")) ? (float)json_number_value(json_object_get(m, "alpha")) : 1.0f / (float)k;
            st = name ? api->expert_open(h, name, &parts[i]) : T2_ERR_INVALID_ARG;
        }
        if (st == T2_OK) st = api->expert_mix(h, (const t2_hexpert *const *)parts, alpha, (int)k, 0, &out->expert);
        for (size_t i = 0; i < k; i++) api->expert_free(parts[i]);
        char *dump = json_dumps(mix, JSON_COMPACT);
        snprintf(out->detail, sizeof out->detail, "{\"mix\": %s}", dump ? dump : "[]");
        free(dump);
    } else {
        snprintf(out->detail, sizeof out->detail, "{\"base\": true}");
    }
    json_decref(o);
    return st;
}

static const t2_dispatch_ops OPS = {.struct_size = sizeof(t2_dispatch_ops), .decide = decide};

static const t2_plugin PLUGIN = {
    .abi_major = T2_ABI_MAJOR,
    .abi_minor = T2_ABI_MINOR,
    .struct_size = sizeof(t2_plugin),
    .kind = T2_PLUGIN_DISPATCH,
    .name = "fixed",
    .version = "1.0",
    .description = "always the same expert or mixture (settings {\"expert\": ...} or {\"mix\": [...]}), or the base model",
    .init = t2p_config_init,
    .fini = t2p_config_fini,
    .ops = &OPS,
};

T2_PLUGIN_EXPORT const t2_plugin *t2_plugin_entry(const t2_host_api *host) {
    if (!t2_host_api_compatible(host)) return NULL;
    api = host;
    return &PLUGIN;
}
