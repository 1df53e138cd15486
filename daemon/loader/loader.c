/* Plugin loading and the registry (see loader.h for the checks and the threading rules). */
#include "loader.h"

#include <t2/error.h>

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

typedef struct entry {
    char *path;
    void *handle;
    const t2_plugin *pl;
    void *state;
} entry;

struct t2_plugins {
    const t2_host_api *api;
    entry *v;
    int n, cap;
    char **refused;
    int n_refused, cap_refused;
    t2_plugins_log_fn log;
    void *log_u;
    pthread_mutex_t lock;   /* serialises loading (dlerror is per-thread, the arrays are not) */
};

static void default_log(void *u, t2_log_level level, const char *msg) {
    const t2_host_api *api = u;
    if (api && api->log && T2_HAS_MEMBER(api, log)) api->log(NULL, level, "%s", msg);
}

t2_plugins *t2_plugins_new(const t2_host_api *api, t2_status *err) {
    t2_status s = T2_OK;
    t2_plugins *p = NULL;
    if (!api) s = t2_set_error(T2_ERR_INVALID_ARG, "t2_plugins_new: no host API table");
    else if (!(p = calloc(1, sizeof *p))) s = t2_set_error(T2_ERR_NOMEM, "t2_plugins_new: out of memory");
    if (p) {
        p->api = api;
        p->log = default_log;
        p->log_u = (void *)api;
        pthread_mutex_init(&p->lock, NULL);
    }
    if (err) *err = s;
    return p;
}

void t2_plugins_set_log(t2_plugins *p, t2_plugins_log_fn fn, void *u) {
    if (!p) return;
    p->log = fn;
    p->log_u = u;
}

void t2_plugins_free(t2_plugins *p) {
    if (!p) return;
    for (int i = p->n - 1; i >= 0; i--) {
        entry *e = &p->v[i];
        if (e->pl->fini) e->pl->fini(e->state);
        dlclose(e->handle);
        free(e->path);
    }
    for (int i = 0; i < p->n_refused; i++) free(p->refused[i]);
    free(p->refused);
    free(p->v);
    pthread_mutex_destroy(&p->lock);
    free(p);
}

/* Record and log a refusal; returns s with the reason as the thread's error detail. */
static t2_status refuse(t2_plugins *p, t2_status s, const char *path, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static t2_status refuse(t2_plugins *p, t2_status s, const char *path, const char *fmt, ...) {
    char reason[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof reason, fmt, ap);
    va_end(ap);
    char *line = NULL;
    if (asprintf(&line, "%s: %s", path, reason) < 0) line = NULL;
    if (line && p->n_refused == p->cap_refused) {
        int cap = p->cap_refused ? p->cap_refused * 2 : 8;
        char **r = realloc(p->refused, (size_t)cap * sizeof *r);
        if (r) {
            p->refused = r;
            p->cap_refused = cap;
        }
    }
    int stored = 0;
    if (line && p->n_refused < p->cap_refused) {
        p->refused[p->n_refused++] = line;
        stored = 1;
    }
    if (p->log) {
        char msg[1100];
        snprintf(msg, sizeof msg, "plugin refused: %s: %s", path, reason);
        p->log(p->log_u, T2_LOG_WARN, msg);
    }
    if (!stored) free(line);
    return t2_set_error(s, "%s: %s", path, reason);
}

static int valid_name(const char *s) {
    if (!s || !*s || strlen(s) > 64) return 0;
    for (const char *c = s; *c; c++)
        if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') || *c == '_' ||
              *c == '-' || *c == '.'))
            return 0;
    return 1;
}

/* The ops table a kind needs: the size of the host's version and whether its functions are set. */
static int check_ops(t2_plugin_kind kind, const void *ops, uint32_t *need, const char **missing) {
    uint32_t have = *(const uint32_t *)ops;
    *missing = NULL;
    switch (kind) {
    case T2_PLUGIN_GRADER: {
        const t2_grader_ops *o = ops;
        *need = (uint32_t)(offsetof(t2_grader_ops, grade) + sizeof o->grade);
        if (have < *need) return 0;
        if (!o->grade) *missing = "grade";
        break;
    }
    case T2_PLUGIN_DISPATCH: {
        const t2_dispatch_ops *o = ops;
        *need = (uint32_t)(offsetof(t2_dispatch_ops, decide) + sizeof o->decide);
        if (have < *need) return 0;
        if (!o->decide) *missing = "decide";
        break;
    }
    case T2_PLUGIN_TRAINER: {
        const t2_trainer_ops *o = ops;
        *need = (uint32_t)(offsetof(t2_trainer_ops, stop) + sizeof o->stop);
        if (have < *need) return 0;
        if (!o->start) *missing = "start";
        else if (!o->step) *missing = "step";
        else if (!o->stop) *missing = "stop";
        break;
    }
    }
    return 1;
}

/* Everything of load_file, with settings either fixed or from a callback; the caller holds the lock. */
static t2_status load_locked(t2_plugins *p, const char *path, const char *fixed, t2_plugins_settings_fn fn, void *u) {
    dlerror();
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        const char *e = dlerror();
        return refuse(p, T2_ERR_IO, path, "dlopen failed: %s", e ? e : "unknown error");
    }
    t2_status s = T2_OK;
    void *sym = dlsym(h, T2_PLUGIN_ENTRY_SYMBOL);
    const t2_plugin *pl = NULL;
    uint32_t need;
    const char *missing;
    if (!sym) {
        s = refuse(p, T2_ERR_NOT_FOUND, path, "no symbol %s (not a T2 plugin)", T2_PLUGIN_ENTRY_SYMBOL);
        goto fail;
    }
    t2_plugin_entry_fn entry_fn;
    *(void **)&entry_fn = sym;
    pl = entry_fn(p->api);
    if (!pl) {
        s = refuse(p, T2_ERR_VERSION, path, "%s returned NULL (the plugin refused host ABI %u.%u)", T2_PLUGIN_ENTRY_SYMBOL,
                   p->api->abi_major, p->api->abi_minor);
        goto fail;
    }
    if (pl->abi_major != T2_ABI_MAJOR) {
        s = refuse(p, T2_ERR_VERSION, path, "plugin ABI %u.%u, host ABI %d.%d", pl->abi_major, pl->abi_minor, T2_ABI_MAJOR,
                   T2_ABI_MINOR);
        goto fail;
    }
    need = (uint32_t)(offsetof(t2_plugin, ops) + sizeof pl->ops);
    if (pl->struct_size < need) {
        s = refuse(p, T2_ERR_FORMAT, path, "t2_plugin struct_size %u, host needs at least %u", pl->struct_size, need);
        goto fail;
    }
    if (pl->kind != T2_PLUGIN_DISPATCH && pl->kind != T2_PLUGIN_GRADER && pl->kind != T2_PLUGIN_TRAINER) {
        s = refuse(p, T2_ERR_FORMAT, path, "unknown plugin kind %d (1 dispatch, 2 grader, 3 trainer)", (int)pl->kind);
        goto fail;
    }
    const char *kind = t2_plugin_kind_name(pl->kind);
    if (!valid_name(pl->name)) {
        s = refuse(p, T2_ERR_FORMAT, path, "%s plugin has no valid name (1-64 characters of A-Z a-z 0-9 _ . -)", kind);
        goto fail;
    }
    if (!pl->ops) {
        s = refuse(p, T2_ERR_FORMAT, path, "%s plugin \"%s\" has no ops table", kind, pl->name);
        goto fail;
    }
    if (!check_ops(pl->kind, pl->ops, &need, &missing)) {
        s = refuse(p, T2_ERR_FORMAT, path, "%s plugin \"%s\": ops struct_size %u, host needs at least %u", kind, pl->name,
                   *(const uint32_t *)pl->ops, need);
        goto fail;
    }
    if (missing) {
        s = refuse(p, T2_ERR_FORMAT, path, "%s plugin \"%s\": ops->%s is NULL", kind, pl->name, missing);
        goto fail;
    }
    for (int i = 0; i < p->n; i++)
        if (p->v[i].pl->kind == pl->kind && !strcmp(p->v[i].pl->name, pl->name)) {
            s = refuse(p, T2_ERR_INVALID_ARG, path, "a %s plugin named \"%s\" is already loaded from %s", kind, pl->name,
                       p->v[i].path);
            goto fail;
        }
    if (p->n == p->cap) {
        int cap = p->cap ? p->cap * 2 : 8;
        entry *v = realloc(p->v, (size_t)cap * sizeof *v);
        if (!v) {
            s = refuse(p, T2_ERR_NOMEM, path, "out of memory");
            goto fail;
        }
        p->v = v;
        p->cap = cap;
    }
    char *copy = strdup(path);
    if (!copy) {
        s = refuse(p, T2_ERR_NOMEM, path, "out of memory");
        goto fail;
    }
    void *state = NULL;
    if (pl->init) {
        const char *settings = fn ? fn(u, kind, pl->name) : fixed;
        if (!settings || !*settings) settings = "{}";
        t2_status is = pl->init(p->api, settings, &state);
        if (is != T2_OK) {
            free(copy);
            s = refuse(p, is, path, "%s plugin \"%s\": init failed: %s (status %d)", kind, pl->name, t2_strerror(is), (int)is);
            goto fail;
        }
    }
    p->v[p->n++] = (entry){copy, h, pl, state};
    if (p->log) {
        char msg[700];
        snprintf(msg, sizeof msg, "loaded %s plugin \"%s\" %s from %s", kind, pl->name, pl->version ? pl->version : "", path);
        p->log(p->log_u, T2_LOG_INFO, msg);
    }
    return T2_OK;
fail:
    dlclose(h);
    return s;
}

t2_status t2_plugins_load_file(t2_plugins *p, const char *path, const char *settings_json) {
    if (!p || !path || !*path) return t2_set_error(T2_ERR_INVALID_ARG, "t2_plugins_load_file: no registry or path");
    pthread_mutex_lock(&p->lock);
    t2_status s = load_locked(p, path, settings_json, NULL, NULL);
    pthread_mutex_unlock(&p->lock);
    return s;
}

static int is_so(const char *name) {
    size_t n = strlen(name);
    return n > 3 && !strcmp(name + n - 3, ".so") && name[0] != '.';
}

static int sel_visible(const struct dirent *e) { return e->d_name[0] != '.'; }

/* Load the .so files of dir; recurse into subdirectories while depth > 0. */
static int load_dir_locked(t2_plugins *p, const char *dir, t2_plugins_settings_fn fn, void *u, int depth) {
    struct dirent **names;
    int n = scandir(dir, &names, sel_visible, alphasort);
    if (n < 0) {
        refuse(p, errno == ENOENT ? T2_ERR_NOT_FOUND : T2_ERR_IO, dir, "cannot read the plugin directory: %s", strerror(errno));
        return -1;
    }
    int loaded = 0;
    for (int i = 0; i < n; i++) {
        char *path = NULL;
        if (asprintf(&path, "%s/%s", dir, names[i]->d_name) >= 0) {
            struct stat st;
            if (stat(path, &st) == 0) {
                if (S_ISDIR(st.st_mode) && depth > 0) {
                    int k = load_dir_locked(p, path, fn, u, depth - 1);
                    if (k > 0) loaded += k;
                } else if (S_ISREG(st.st_mode) && is_so(names[i]->d_name)) {
                    if (load_locked(p, path, NULL, fn, u) == T2_OK) loaded++;
                }
            }
            free(path);
        }
        free(names[i]);
    }
    free(names);
    return loaded;
}

int t2_plugins_load_dir(t2_plugins *p, const char *dir, t2_plugins_settings_fn settings, void *u) {
    if (!p || !dir || !*dir) {
        t2_set_error(T2_ERR_INVALID_ARG, "t2_plugins_load_dir: no registry or directory");
        return -1;
    }
    pthread_mutex_lock(&p->lock);
    int k = load_dir_locked(p, dir, settings, u, 1);
    pthread_mutex_unlock(&p->lock);
    return k;
}

const t2_plugin *t2_plugins_find(const t2_plugins *p, t2_plugin_kind kind, const char *name, void **state) {
    if (state) *state = NULL;
    if (!p || !name) return NULL;
    for (int i = 0; i < p->n; i++)
        if (p->v[i].pl->kind == kind && !strcmp(p->v[i].pl->name, name)) {
            if (state) *state = p->v[i].state;
            return p->v[i].pl;
        }
    return NULL;
}

int t2_plugins_count(const t2_plugins *p) { return p ? p->n : 0; }

const t2_plugin *t2_plugins_at(const t2_plugins *p, int i, const char **path, void **state) {
    if (!p || i < 0 || i >= p->n) return NULL;
    if (path) *path = p->v[i].path;
    if (state) *state = p->v[i].state;
    return p->v[i].pl;
}

int t2_plugins_refused_count(const t2_plugins *p) { return p ? p->n_refused : 0; }

const char *t2_plugins_refused(const t2_plugins *p, int i) {
    return p && i >= 0 && i < p->n_refused ? p->refused[i] : NULL;
}

const char *t2_plugins_default_dir(void) {
    const char *env = getenv("T2_PLUGIN_DIR");
    if (env && *env) return env;
    struct stat st;
    if (stat(T2_BUILD_PLUGIN_DIR, &st) == 0 && S_ISDIR(st.st_mode)) return T2_BUILD_PLUGIN_DIR;
    return T2_PLUGIN_INSTALL_DIR;
}
