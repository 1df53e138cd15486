/* pconfig.h — small pieces every dispatch plugin needs: its configuration text as state, the settings a
 * call uses (the request's, else the configuration), and looking an expert up in experts_json. */
#ifndef T2_PLUGIN_PCONFIG_H
#define T2_PLUGIN_PCONFIG_H

#include <jansson.h>
#include <t2/plugin.h>

/* A plugin state holding a copy of its configuration JSON text ("{}" when none). */
typedef struct t2p_config {
    char *json;
} t2p_config;

/* For t2_plugin.init / .fini: *state becomes a t2p_config. */
t2_status t2p_config_init(const t2_host_api *api, const char *config_json, void **state);
void t2p_config_fini(void *state);

/* The settings text a call uses: the request's when it says anything, else the configuration. Borrowed. */
const char *t2p_settings(const void *state, const char *request_settings);

/* The value of `want` in the first entry of an experts_json array whose `key` equals value, or NULL
 * (borrowed from experts). Looked up by "label", LoRA experts are skipped: a label names the SVF expert
 * the second pass runs under. */
const char *t2p_expert_where(json_t *experts, const char *key, const char *value, const char *want);

#endif
