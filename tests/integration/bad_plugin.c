/* Deliberately broken plugins for the integration tests, one per BAD_KIND:
 *   1  built for ABI major 99 (the host must refuse it and name both versions)
 *   2  no t2_plugin_entry symbol at all
 *   3  an init that fails
 * The daemon must log and list each as refused and keep running. */
#include <t2/plugin.h>

#if BAD_KIND == 2
T2_PLUGIN_EXPORT int t2_plugin_entry_misspelt(void) { return 0; }
#else
static t2_status decide(void *state, t2_host *h, const t2_dispatch_request *rq, t2_dispatch_decision *out) {
    (void)state;
    (void)h;
    (void)rq;
    (void)out;
    return T2_OK;
}

#if BAD_KIND == 3
static t2_status failing_init(const t2_host_api *api, const char *config_json, void **state) {
    (void)api;
    (void)config_json;
    (void)state;
    return T2_ERR_INVALID_ARG;
}
#endif

static const t2_dispatch_ops OPS = {.struct_size = sizeof(t2_dispatch_ops), .decide = decide};

static const t2_plugin PLUGIN = {
#if BAD_KIND == 1
    .abi_major = 99,
    .name = "future",
#else
    .abi_major = T2_ABI_MAJOR,
    .name = "broken_init",
    .init = failing_init,
#endif
    .abi_minor = 0,
    .struct_size = sizeof(t2_plugin),
    .kind = T2_PLUGIN_DISPATCH,
    .version = "0",
    .description = "a test plugin that must be refused",
    .ops = &OPS,
};

T2_PLUGIN_EXPORT const t2_plugin *t2_plugin_entry(const t2_host_api *api) {
    (void)api;
    return &PLUGIN;
}
#endif
