/* t2d's configuration: one table of options drives the defaults, the INI reader (inih), the
 * command-line overrides and the printout, so an option is declared exactly once. */
#include "config.h"

#include <errno.h>
#include <ini.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef enum { OPT_STR, OPT_INT, OPT_LL, OPT_DBL, OPT_BOOL } opt_type;

typedef struct opt {
    const char *section, *key;
    opt_type type;
    size_t off;
    const char *def;
    long long lo, hi;        /* numeric range */
} opt;

#define O(sec, k, t, field, d, lo, hi) {sec, k, t, offsetof(t2d_config, field), d, lo, hi}
static const opt OPTS[] = {
    O("daemon", "listen", OPT_STR, listen, "ipc:///tmp/t2d.sock", 0, 0),
    O("daemon", "model", OPT_STR, model, "", 0, 0),
    O("daemon", "state_dir", OPT_STR, state_dir, "/var/lib/t2d", 0, 0),
    O("daemon", "plugin_dir", OPT_STR, plugin_dir, "", 0, 0),
    O("daemon", "data_dir", OPT_STR, data_dir, "", 0, 0),
    O("daemon", "log_file", OPT_STR, log_file, "", 0, 0),
    O("daemon", "log_level", OPT_STR, log_level, "info", 0, 0),
    O("daemon", "workers", OPT_INT, workers, "64", 1, 4096),
    O("daemon", "drain_seconds", OPT_DBL, drain_seconds, "30", 0, 86400),
    O("daemon", "default_dispatch", OPT_STR, default_dispatch, "", 0, 0),
    O("engine", "threads", OPT_INT, threads, "0", 0, 1024),
    O("engine", "max_seqs", OPT_INT, max_seqs, "32", 1, 1024),
    O("engine", "n_ctx", OPT_INT, n_ctx, "0", 0, 1 << 20),
    O("engine", "n_batch", OPT_INT, n_batch, "512", 1, 1 << 16),
    O("engine", "modules", OPT_STR, modules, "mlp", 0, 0),
    O("engine", "svd_cache", OPT_STR, svd_cache, "", 0, 0),
    O("engine", "max_tokens", OPT_INT, max_tokens, "512", 1, 1 << 20),
    O("engine", "chat_template", OPT_STR, chat_template, "auto", 0, 0),
    O("engine", "prefill_bf16", OPT_BOOL, prefill_bf16, "false", 0, 1),
    O("engine", "prefix_slots", OPT_INT, prefix_slots, "4", 0, 64),
    O("auth", "mode", OPT_STR, auth, "local", 0, 0),
    O("auth", "keys_dir", OPT_STR, keys_dir, "", 0, 0),
    O("auth", "server_key", OPT_STR, server_key, "", 0, 0),
    O("auth", "local_tenant", OPT_STR, local_tenant, "local", 0, 0),
    O("auth", "socket_mode", OPT_STR, socket_mode, "0600", 0, 0),
    O("limits", "max_running_jobs", OPT_INT, max_running_jobs, "1", 1, 1024),
    O("limits", "quota_queued_jobs", OPT_INT, quota_queued_jobs, "100", 0, 1 << 30),
    O("limits", "quota_running_jobs", OPT_INT, quota_running_jobs, "1", 1, 1024),
    O("limits", "quota_expert_bytes", OPT_LL, quota_expert_bytes, "1073741824", 0, LLONG_MAX),
    O("limits", "max_client_inflight", OPT_INT, max_clients_inflight, "64", 1, 1 << 20),
};
#undef O
#define N_OPTS (sizeof OPTS / sizeof OPTS[0])

static void say(char *err, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void say(char *err, size_t cap, const char *fmt, ...) {
    if (!err || !cap) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, cap, fmt, ap);
    va_end(ap);
}

static const opt *find(const char *section, const char *key) {
    for (size_t i = 0; i < N_OPTS; i++)
        if (!strcmp(OPTS[i].section, section) && !strcmp(OPTS[i].key, key)) return &OPTS[i];
    return NULL;
}

/* Parse value into cfg's field; 0 ok, -1 with a reason in why. */
static int set_value(t2d_config *cfg, const opt *o, const char *value, char *why, size_t cap) {
    char *field = (char *)cfg + o->off;
    char *end = NULL;
    errno = 0;
    switch (o->type) {
    case OPT_STR: {
        char *dup = strdup(value);
        if (!dup) return say(why, cap, "out of memory"), -1;
        free(*(char **)field);
        *(char **)field = dup;
        return 0;
    }
    case OPT_BOOL:
        if (!strcmp(value, "true") || !strcmp(value, "yes") || !strcmp(value, "1") || !strcmp(value, "on")) *(int *)field = 1;
        else if (!strcmp(value, "false") || !strcmp(value, "no") || !strcmp(value, "0") || !strcmp(value, "off")) *(int *)field = 0;
        else return say(why, cap, "'%s' is not a boolean (true/false)", value), -1;
        return 0;
    case OPT_INT:
    case OPT_LL: {
        long long v = strtoll(value, &end, 10);
        if (errno || end == value || *end) return say(why, cap, "'%s' is not an integer", value), -1;
        if (v < o->lo || v > o->hi) return say(why, cap, "%lld is outside [%lld, %lld]", v, o->lo, o->hi), -1;
        if (o->type == OPT_INT) *(int *)field = (int)v;
        else *(long long *)field = v;
        return 0;
    }
    case OPT_DBL: {
        double v = strtod(value, &end);
        if (errno || end == value || *end) return say(why, cap, "'%s' is not a number", value), -1;
        if (!(v >= (double)o->lo && v <= (double)o->hi)) return say(why, cap, "%g is outside [%lld, %lld]", v, o->lo, o->hi), -1;
        *(double *)field = v;
        return 0;
    }
    }
    return -1;
}

void t2d_config_defaults(t2d_config *cfg) {
    memset(cfg, 0, sizeof *cfg);
    for (size_t i = 0; i < N_OPTS; i++) {
        char why[64];
        if (set_value(cfg, &OPTS[i], OPTS[i].def, why, sizeof why) != 0) abort();   /* a bad default is a bug */
    }
}

void t2d_config_clear(t2d_config *cfg) {
    for (size_t i = 0; i < N_OPTS; i++)
        if (OPTS[i].type == OPT_STR) {
            char **f = (char **)((char *)cfg + OPTS[i].off);
            free(*f);
            *f = NULL;
        }
}

typedef struct load_ctx {
    t2d_config *cfg;
    int failed;
    char why[512];
} load_ctx;

static int on_ini(void *user, const char *section, const char *name, const char *value) {
    load_ctx *lc = user;
    const opt *o = find(section, name);
    if (!o) {
        say(lc->why, sizeof lc->why, "unknown option [%s] %s", section, name);
        lc->failed = 1;
        return 0;
    }
    char why[160];
    if (set_value(lc->cfg, o, value, why, sizeof why) != 0) {
        say(lc->why, sizeof lc->why, "[%s] %s: %s", section, name, why);
        lc->failed = 1;
        return 0;
    }
    return 1;
}

t2_status t2d_config_load(t2d_config *cfg, const char *path, char *err, size_t cap) {
    FILE *f = fopen(path, "r");
    if (!f) {
        say(err, cap, "config %s: %s", path, strerror(errno));
        return T2_ERR_IO;
    }
    load_ctx lc = {.cfg = cfg};
    int rc = ini_parse_file(f, on_ini, &lc);   /* the line of the first error, or 0 */
    fclose(f);
    if (rc != 0) {
        say(err, cap, "%s:%d: %s", path, rc, lc.failed ? lc.why : "not a 'key = value' line or a [section] header");
        return T2_ERR_FORMAT;
    }
    return T2_OK;
}

t2_status t2d_config_set(t2d_config *cfg, const char *assignment, char *err, size_t cap) {
    const char *dot = strchr(assignment, '.'), *eq = strchr(assignment, '=');
    if (!dot || !eq || dot > eq) {
        say(err, cap, "override '%s' is not section.key=value", assignment);
        return T2_ERR_INVALID_ARG;
    }
    char section[64], key[64];
    size_t ls = (size_t)(dot - assignment), lk = (size_t)(eq - dot - 1);
    if (ls >= sizeof section || lk >= sizeof key) {
        say(err, cap, "override '%s': unknown option", assignment);
        return T2_ERR_INVALID_ARG;
    }
    memcpy(section, assignment, ls);
    section[ls] = 0;
    memcpy(key, dot + 1, lk);
    key[lk] = 0;
    const opt *o = find(section, key);
    if (!o) {
        say(err, cap, "override '%s': unknown option [%s] %s", assignment, section, key);
        return T2_ERR_INVALID_ARG;
    }
    char why[160];
    if (set_value(cfg, o, eq + 1, why, sizeof why) != 0) {
        say(err, cap, "override %s.%s: %s", section, key, why);
        return T2_ERR_INVALID_ARG;
    }
    return T2_OK;
}

t2_status t2d_config_check(const t2d_config *c, char *err, size_t cap) {
    if (!*c->model) return say(err, cap, "no model: set [daemon] model or --model"), T2_ERR_INVALID_ARG;
    if (!*c->state_dir) return say(err, cap, "no state directory: set [daemon] state_dir"), T2_ERR_INVALID_ARG;
    if (strncmp(c->listen, "ipc://", 6) && strncmp(c->listen, "tcp://", 6))
        return say(err, cap, "[daemon] listen = %s: need ipc://PATH or tcp://HOST:PORT", c->listen), T2_ERR_INVALID_ARG;
    if (strcmp(c->auth, "local") && strcmp(c->auth, "curve"))
        return say(err, cap, "[auth] mode = %s: need local or curve", c->auth), T2_ERR_INVALID_ARG;
    if (!strcmp(c->auth, "local") && strncmp(c->listen, "ipc://", 6))
        return say(err, cap, "[auth] mode = local needs an ipc:// endpoint (guarded by file permissions); use curve for tcp://"),
               T2_ERR_INVALID_ARG;
    if (!strcmp(c->auth, "curve") && !*c->keys_dir)
        return say(err, cap, "[auth] mode = curve needs keys_dir (a folder of <tenant>.pub files)"), T2_ERR_INVALID_ARG;
    char *end;
    long mode = strtol(c->socket_mode, &end, 8);
    if (*end || mode < 0 || mode > 0777) return say(err, cap, "[auth] socket_mode = %s is not an octal file mode", c->socket_mode), T2_ERR_INVALID_ARG;
    if (strcmp(c->log_level, "debug") && strcmp(c->log_level, "info") && strcmp(c->log_level, "warn") && strcmp(c->log_level, "error"))
        return say(err, cap, "[daemon] log_level = %s: need debug, info, warn or error", c->log_level), T2_ERR_INVALID_ARG;
    return T2_OK;
}

void t2d_config_print(const t2d_config *cfg, void *file) {
    FILE *f = file;
    const char *last = "";
    for (size_t i = 0; i < N_OPTS; i++) {
        const opt *o = &OPTS[i];
        if (strcmp(last, o->section)) fprintf(f, "%s[%s]\n", i ? "\n" : "", last = o->section);
        const char *field = (const char *)cfg + o->off;
        switch (o->type) {
        case OPT_STR: fprintf(f, "%s = %s\n", o->key, *(char *const *)field); break;
        case OPT_INT: fprintf(f, "%s = %d\n", o->key, *(const int *)field); break;
        case OPT_LL: fprintf(f, "%s = %lld\n", o->key, *(const long long *)field); break;
        case OPT_DBL: fprintf(f, "%s = %g\n", o->key, *(const double *)field); break;
        case OPT_BOOL: fprintf(f, "%s = %s\n", o->key, *(const int *)field ? "true" : "false"); break;
        }
    }
}
