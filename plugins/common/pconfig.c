/* See pconfig.h. */
#include "pconfig.h"

#include <stdlib.h>
#include <string.h>

t2_status t2p_config_init(const t2_host_api *api, const char *config_json, void **state) {
    (void)api;
    t2p_config *c = calloc(1, sizeof *c);
    if (!c || !(c->json = strdup(config_json && *config_json ? config_json : "{}"))) {
        free(c);
        return T2_ERR_NOMEM;
    }
    *state = c;
    return T2_OK;
}

void t2p_config_fini(void *state) {
    t2p_config *c = state;
    if (c) free(c->json);
    free(c);
}

const char *t2p_settings(const void *state, const char *request_settings) {
    const t2p_config *c = state;
    if (request_settings && *request_settings && strcmp(request_settings, "{}")) return request_settings;
    return c && c->json ? c->json : "{}";
}

const char *t2p_expert_where(json_t *experts, const char *key, const char *value, const char *want) {
    size_t i;
    json_t *v;
    json_array_foreach(experts, i, v) {
        const char *x = json_string_value(json_object_get(v, key)), *kind = json_string_value(json_object_get(v, "kind"));
        if (!strcmp(key, "label") && kind && !strcmp(kind, "lora")) continue;
        if (x && value && !strcmp(x, value)) return json_string_value(json_object_get(v, want));
    }
    return NULL;
}
