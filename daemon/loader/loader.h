/* loader.h — loading plugins (dlopen) and the registry of the loaded ones.
 *
 * A plugin is accepted only when every check passes; otherwise it is refused with a reason, the refusal is
 * recorded ("path: reason") and logged, and the host goes on without it. The checks, in order:
 *   dlopen(path, RTLD_NOW | RTLD_LOCAL) succeeds                     (else: the dlerror text)
 *   it exports T2_PLUGIN_ENTRY_SYMBOL                                 (else: "no symbol t2_plugin_entry")
 *   the entry point returns a description                            (else: "... returned NULL (refused host ABI 1.0)")
 *   abi_major equals the host's                                       (else: "plugin ABI 2.0, host ABI 1.0")
 *   struct_size covers the t2_plugin the host knows                   (else: "struct_size 24, host needs at least 72")
 *   kind is dispatch, grader or trainer; name is a non-empty [A-Za-z0-9_.-] string
 *   ops is set, ops->struct_size covers the host's ops table and its functions are set
 *   no plugin of the same kind and name is loaded yet                 (else: names the path of the first one)
 *   init (when set) returns T2_OK                                     (else: "init failed: <status>")
 *
 * Threads: loading and freeing are for one thread at a time (they also serialise on an internal lock);
 * once loading is done, find/count/at may be called from any number of threads concurrently (the registry
 * is not modified by them). */
#ifndef T2_LOADER_H
#define T2_LOADER_H

#include <t2/plugin.h>
#include <t2/status.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct t2_plugins t2_plugins;

/* Where refusals and load events go: (u, level, message). The default logs through api->log with a NULL
 * host (when the table has one). */
typedef void (*t2_plugins_log_fn)(void *u, t2_log_level level, const char *msg);

/* An empty registry for plugins that will be handed `api` (which must outlive the registry). NULL (with
 * *err set, when err is non-NULL) when api is NULL or memory runs out. Caller frees with t2_plugins_free. */
t2_plugins *t2_plugins_new(const t2_host_api *api, t2_status *err);

/* Replace the log callback (NULL: no logging). */
void t2_plugins_set_log(t2_plugins *p, t2_plugins_log_fn fn, void *u);

/* Calls each plugin's fini (last loaded first), then dlcloses it. NULL-safe. */
void t2_plugins_free(t2_plugins *p);

/* Settings for a plugin: a JSON object text, or NULL for "{}". Called once per plugin that passed the
 * checks, before its init; the returned text is only read during that call. */
/* The plugin folder to use when none is configured: $T2_PLUGIN_DIR, else the build tree's plugins/ (when
 * running from a build that has one), else the installed folder. Borrowed, static or from the environment. */
const char *t2_plugins_default_dir(void);

typedef const char *(*t2_plugins_settings_fn)(void *u, const char *kind, const char *name);

/* Load every *.so in dir and in its immediate subdirectories (in name order). settings may be NULL.
 * Returns how many were loaded (refusals are recorded, not fatal), or -1 when dir cannot be read (the
 * reason is recorded as a refusal of dir and in t2_last_error). */
int t2_plugins_load_dir(t2_plugins *p, const char *dir, t2_plugins_settings_fn settings, void *u);

/* Load one plugin with the given settings (NULL: "{}"). On refusal returns the reason's status
 * (T2_ERR_IO dlopen, T2_ERR_NOT_FOUND no entry symbol, T2_ERR_VERSION ABI, T2_ERR_FORMAT bad description,
 * T2_ERR_INVALID_ARG duplicate, or init's own status) with the reason in t2_last_error and recorded. */
t2_status t2_plugins_load_file(t2_plugins *p, const char *path, const char *settings_json);

/* The plugin of that kind and name, or NULL; *state (when state is non-NULL) receives its init state.
 * Borrowed: valid until t2_plugins_free. */
const t2_plugin *t2_plugins_find(const t2_plugins *p, t2_plugin_kind kind, const char *name, void **state);

/* Number of loaded plugins, and plugin i (load order) with its path and state (each out-pointer may be
 * NULL). NULL when i is out of range. Borrowed: valid until t2_plugins_free. */
int t2_plugins_count(const t2_plugins *p);
const t2_plugin *t2_plugins_at(const t2_plugins *p, int i, const char **path, void **state);

/* Number of refusals, and refusal i as "path: reason". Borrowed: valid until t2_plugins_free. */
int t2_plugins_refused_count(const t2_plugins *p);
const char *t2_plugins_refused(const t2_plugins *p, int i);

#ifdef __cplusplus
}
#endif
#endif
