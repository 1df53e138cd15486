/* remote.c — what every remote command shares: finding the daemon (options, environment, config file),
 * connecting, calling, mapping failures and error replies to the documented exit codes, Ctrl-C, and
 * option helpers the single-value cli_str does not cover (repeatable options, short aliases,
 * positional words, mixtures). */
#include "remote.h"

#include <errno.h>
#include <fcntl.h>
#include <ini.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

volatile sig_atomic_t rm_interrupted;

/* The self-pipe that wakes a client wait on Ctrl-C (a flag alone would miss a signal that arrives just
 * before the wait starts). */
static int s_wake[2] = {-1, -1};

static void on_sigint(int sig) {
    (void)sig;
    if (rm_interrupted) _exit(T2_EXIT_INTERRUPTED);   /* a second Ctrl-C: leave now */
    rm_interrupted = 1;
    if (s_wake[1] >= 0) {
        int saved = errno;
        ssize_t w = write(s_wake[1], "i", 1);
        (void)w;
        errno = saved;
    }
}

static void drain_wake(void) {
    char b[16];
    while (s_wake[0] >= 0 && read(s_wake[0], b, sizeof b) > 0) {
    }
}

void rm_catch_sigint(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0;   /* no SA_RESTART: a blocked zmq_poll returns EINTR */
    sigaction(SIGINT, &sa, NULL);
}

/* ---------------- the config file ---------------- */

typedef struct cfg {
    char *client_connect, *daemon_listen, *key, *server_key;
    double timeout;
} cfg;

static int cfg_entry(void *user, const char *section, const char *name, const char *value) {
    cfg *c = user;
    char **slot = NULL;
    if (!strcmp(section, "client") && !strcmp(name, "connect")) slot = &c->client_connect;
    else if (!strcmp(section, "client") && !strcmp(name, "key")) slot = &c->key;
    else if (!strcmp(section, "client") && !strcmp(name, "server_key")) slot = &c->server_key;
    else if (!strcmp(section, "daemon") && !strcmp(name, "listen")) slot = &c->daemon_listen;
    else if (!strcmp(section, "client") && !strcmp(name, "timeout")) c->timeout = atof(value);
    if (slot && !*slot) *slot = strdup(value);
    return 1;   /* the rest of the file is the daemon's business */
}

/* A listen address as a connect address: the first of a comma/space separated list (an ipc:// one if
 * there is one: it works without CURVE), with a wildcard host replaced by the loopback address. */
static char *listen_to_connect(const char *listen) {
    char *copy = strdup(listen), *save = NULL, *pick = NULL;
    if (!copy) return NULL;
    for (char *t = strtok_r(copy, ", \t", &save); t; t = strtok_r(NULL, ", \t", &save)) {
        if (!pick) pick = t;
        if (!strncmp(t, "ipc://", 6)) {
            pick = t;
            break;
        }
    }
    char *out = NULL;
    if (pick) {
        const char *wild[] = {"tcp://*:", "tcp://0.0.0.0:", "tcp://[::]:"};
        for (int i = 0; i < 3 && !out; i++)
            if (!strncmp(pick, wild[i], strlen(wild[i])) && asprintf(&out, "tcp://127.0.0.1:%s", pick + strlen(wild[i])) < 0)
                out = NULL;
        if (!out) out = strdup(pick);
    }
    free(copy);
    return out;
}

static const char *env(const char *name) {
    const char *v = getenv(name);
    return v && *v ? v : NULL;
}

int rm_parse(rm_ctx *x, cli_opts *o, const char *cmd) {
    memset(x, 0, sizeof *x);
    x->cmd = cmd;
    x->json = cli_flag(o, "json");
    const char *connect = cli_str(o, "connect"), *key = cli_str(o, "key"), *skey = cli_str(o, "server-key");
    const char *config = cli_str(o, "config");
    double timeout = -1;
    if (cli_float(o, "timeout", 0.001, 86400 * 365.0, &timeout)) return T2_EXIT_USAGE;
    if (!connect) connect = env("T2_CONNECT");
    if (!key) key = env("T2_KEY");
    if (!skey) skey = env("T2_SERVER_KEY");
    /* The config file: needed for the endpoint unless given, and for keys not given otherwise. */
    cfg c = {0};
    int explicit_config = config != NULL;
    if (!config) config = env("T2_CONFIG"), explicit_config = config != NULL;
    if (!config) config = "/etc/t2/t2d.conf";
    if (!connect || !key || !skey || timeout < 0) {
        FILE *f = fopen(config, "re");
        if (!f && explicit_config) {
            fprintf(stderr, "t2 %s: cannot open config file %s: %s\n", cmd, config, strerror(errno));
            return T2_EXIT_USAGE;
        }
        if (f) {
            int line = ini_parse_file(f, cfg_entry, &c);
            fclose(f);
            /* A broken file is fatal when it was asked for or is where the endpoint must come from. */
            if (line > 0 && (explicit_config || !connect)) {
                fprintf(stderr, "t2 %s: %s: line %d is not \"name = value\"\n", cmd, config, line);
                free(c.client_connect), free(c.daemon_listen), free(c.key), free(c.server_key);
                return T2_EXIT_USAGE;
            }
        }
    }
    if (connect) x->endpoint = strdup(connect);
    else if (c.client_connect) x->endpoint = strdup(c.client_connect);
    else if (c.daemon_listen) x->endpoint = listen_to_connect(c.daemon_listen);
    if (key || c.key) x->key_file = strdup(key ? key : c.key);
    if (skey || c.server_key) x->server_key = strdup(skey ? skey : c.server_key);
    if (timeout < 0 && c.timeout > 0) timeout = c.timeout;
    free(c.client_connect), free(c.daemon_listen), free(c.key), free(c.server_key);
    if (!x->endpoint || !*x->endpoint) {
        fprintf(stderr,
                "t2 %s: no daemon address: give --connect ENDPOINT, set T2_CONNECT, or name it in %s ([client] "
                "connect)\n",
                cmd, config);
        return T2_EXIT_USAGE;
    }
    x->timeout_ms = timeout > 0 ? (int)fmin(timeout * 1000.0, 2e9) : 30000;
    x->stream_timeout_ms = timeout > 0 ? x->timeout_ms : -1;
    return 0;
}

int rm_connect(rm_ctx *x) {
    if (s_wake[0] < 0 && pipe2(s_wake, O_NONBLOCK | O_CLOEXEC)) s_wake[0] = s_wake[1] = -1;
    t2w_client_opts co = {.endpoint = x->endpoint, .key_file = x->key_file, .server_key = x->server_key,
                          .interrupt_fd = s_wake[0] > 0 ? s_wake[0] : 0};
    char msg[512];
    x->client = t2w_client_connect(&co, msg, sizeof msg);
    if (!x->client) {
        fprintf(stderr, "t2 %s: %s\n", x->cmd, msg);
        /* Bad keys or a bad address are the user's to fix: usage. */
        return T2_EXIT_USAGE;
    }
    return 0;
}

int rm_begin(rm_ctx *x, cli_opts *o, int argc, char **argv, const char *cmd) {
    memset(x, 0, sizeof *x);
    memset(o, 0, sizeof *o);
    x->cmd = cmd;
    if (cli_init(o, argc - 1, argv + 1)) return T2_EXIT_ERROR;
    return rm_parse(x, o, cmd);
}

int rm_ready(rm_ctx *x, cli_opts *o, int rc) {
    if (!rc && cli_done(o, x->cmd)) rc = T2_EXIT_USAGE;
    cli_free(o);
    o->used = NULL;
    if (!rc) rc = rm_connect(x);
    return rc;
}

const char *rm_one_arg(cli_opts *o, const char *cmd, const char *what) {
    int n;
    const char **v = rm_positional(o, &n);
    const char *a = v && n == 1 ? v[0] : NULL;
    if (!a) fprintf(stderr, "t2 %s: want exactly one %s (got %d)\n", cmd, what, v ? n : 0);
    free(v);
    return a;
}

void rm_close(rm_ctx *x) {
    t2w_client_free(x->client);
    free(x->endpoint);
    free(x->key_file);
    free(x->server_key);
    memset(x, 0, sizeof *x);
}

static void json_error(const char *kind, const char *message) {
    if (!message) message = "";
    rm_print_json(json_pack("{s:{s:s,s:s}}", "error", "code", kind, "message", message));
}

int rm_client_fail(rm_ctx *x) {
    t2w_fail f = t2w_client_failure(x->client);
    const char *err = t2w_client_error(x->client);
    int rc;
    const char *kind;
    switch (f) {
    case T2W_FAIL_UNREACHABLE: rc = T2_EXIT_UNREACHABLE, kind = "unreachable"; break;
    case T2W_FAIL_TIMEOUT: rc = T2_EXIT_UNREACHABLE, kind = "timeout"; break;
    case T2W_FAIL_HANDSHAKE: rc = T2_EXIT_UNREACHABLE, kind = "handshake"; break;
    case T2W_FAIL_DENIED: rc = T2_EXIT_DENIED, kind = "denied"; break;
    case T2W_FAIL_INTERRUPTED: rc = T2_EXIT_INTERRUPTED, kind = "interrupted"; break;
    default: rc = T2_EXIT_ERROR, kind = "client"; break;
    }
    if (x->json) json_error(kind, err);
    if (f != T2W_FAIL_INTERRUPTED) fprintf(stderr, "t2 %s: %s\n", x->cmd, err);
    return rc;
}

int rm_reply_error(rm_ctx *x, const T2__Error *e) {
    int rc;
    switch (e->code) {
    case T2__ERROR_CODE__ERROR_NOT_FOUND: rc = T2_EXIT_NOT_FOUND; break;
    case T2__ERROR_CODE__ERROR_DENIED:
    case T2__ERROR_CODE__ERROR_QUOTA: rc = T2_EXIT_DENIED; break;
    default: rc = T2_EXIT_ERROR; break;
    }
    if (x->json) json_error(t2w_error_name(e->code), e->message);
    fprintf(stderr, "t2 %s: %s: %s\n", x->cmd, t2w_error_name(e->code), e->message && *e->message ? e->message : "(no detail)");
    return rc;
}

static int checked(rm_ctx *x, T2__Reply **rep) {
    if ((*rep)->error) {
        int rc = rm_reply_error(x, (*rep)->error);
        t2w_reply_free(*rep);
        *rep = NULL;
        return rc;
    }
    return 0;
}

int rm_call(rm_ctx *x, T2__Request *req, T2__Reply **rep) {
    *rep = NULL;
    if (t2w_client_call(x->client, req, rep, x->timeout_ms) != T2_OK) return rm_client_fail(x);
    return checked(x, rep);
}

int rm_call_stream(rm_ctx *x, T2__Request *req, T2__Reply **rep) {
    *rep = NULL;
    x->sent = 0;
    if (t2w_client_send(x->client, req, x->timeout_ms) != T2_OK) return rm_client_fail(x);
    x->sent = 1;
    return rm_next(x, req->id, rep);
}

int rm_next(rm_ctx *x, uint64_t id, T2__Reply **rep) {
    *rep = NULL;
    if (t2w_client_next(x->client, id, rep, x->stream_timeout_ms) != T2_OK) return rm_client_fail(x);
    return checked(x, rep);
}

void rm_cancel_stream(rm_ctx *x, uint64_t id) {
    T2__Request r;
    T2__Cancel c = T2__CANCEL__INIT;
    t2w_request_init(&r, 0);
    c.request_id = id;
    r.body_case = T2__REQUEST__BODY_CANCEL;
    r.cancel = &c;
    drain_wake();
    rm_interrupted = 0;   /* a second Ctrl-C during the wait below ends it (and a third exits at once) */
    T2__Reply *rep = NULL;
    /* Our socket has LINGER 0: wait for the acknowledgement so that the Cancel is not dropped on close. */
    if (t2w_client_call(x->client, &r, &rep, 2000) == T2_OK) t2w_reply_free(rep);
    rm_interrupted = 1;
}

int rm_unexpected(rm_ctx *x, const T2__Reply *r) {
    fprintf(stderr, "t2 %s: unexpected reply from the daemon (body %d)\n", x->cmd, (int)r->body_case);
    if (x->json) json_error("protocol", "unexpected reply");
    return T2_EXIT_ERROR;
}

/* ---------------- options ---------------- */

const char **rm_multi(cli_opts *o, const char *name, const char *alias, int *n) {
    const char **v = malloc(((size_t)o->argc + 1) * sizeof *v);
    size_t nl = strlen(name);
    *n = 0;
    if (!v) return NULL;
    for (int i = 0; i < o->argc; i++) {
        const char *a = o->argv[i];
        int exact = (a[0] == '-' && a[1] == '-' && !strcmp(a + 2, name)) || (alias && !strcmp(a, alias));
        int inl = a[0] == '-' && a[1] == '-' && !strncmp(a + 2, name, nl) && a[2 + nl] == '=';
        if (o->used[i] || (!exact && !inl)) continue;
        o->used[i] = 1;
        if (inl) v[(*n)++] = a + 3 + nl;
        else if (i + 1 < o->argc) o->used[i + 1] = 1, v[(*n)++] = o->argv[++i];
        else fprintf(stderr, "t2: option %s needs a value\n", a);
    }
    return v;
}

const char *rm_str(cli_opts *o, const char *name, const char *alias) {
    int n;
    const char **v = rm_multi(o, name, alias, &n);
    const char *s = v && n ? v[n - 1] : NULL;
    free(v);
    return s;
}

const char **rm_positional(cli_opts *o, int *n) {
    const char **v = malloc(((size_t)o->argc + 1) * sizeof *v);
    *n = 0;
    if (!v) return NULL;
    for (int i = 0; i < o->argc; i++)
        if (!o->used[i] && (o->argv[i][0] != '-' || !o->argv[i][1])) o->used[i] = 1, v[(*n)++] = o->argv[i];
    return v;
}

void rm_mix_free(T2__MixPart **parts, size_t n) {
    for (size_t i = 0; parts && i < n; i++) {
        if (parts[i]) free(parts[i]->expert);
        free(parts[i]);
    }
    free(parts);
}

int rm_parse_mix(const char *spec, T2__MixPart ***parts, size_t *n) {
    *parts = NULL;
    *n = 0;
    size_t cap = 1;
    for (const char *p = spec; *p; p++) cap += *p == ',';
    if (cap > T2W_MAX_MIX) {
        fprintf(stderr, "t2: --mix: %zu experts (at most %d)\n", cap, T2W_MAX_MIX);
        return -1;
    }
    T2__MixPart **v = calloc(cap, sizeof *v);
    char *copy = strdup(spec), *save = NULL;
    if (!v || !copy) {
        free(v), free(copy);
        return -1;
    }
    size_t k = 0;
    for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        char *colon = strrchr(t, ':'), *end = NULL;
        double a = 1.0;
        if (colon) {
            *colon = 0;
            errno = 0;
            a = strtod(colon + 1, &end);
        }
        if (!*t || (colon && (errno || end == colon + 1 || *end || !isfinite(a)))) {
            fprintf(stderr, "t2: --mix: \"%s\" is not NAME:WEIGHT (e.g. math:0.7,code:0.3)\n", spec);
            free(copy);
            rm_mix_free(v, k);
            return -1;
        }
        v[k] = malloc(sizeof **v);
        if (!v[k]) break;
        t2__mix_part__init(v[k]);
        v[k]->expert = strdup(t);
        v[k]->alpha = (float)a;
        k++;
    }
    free(copy);
    if (k == 0) {
        fprintf(stderr, "t2: --mix: no experts in \"%s\"\n", spec);
        rm_mix_free(v, k);
        return -1;
    }
    *parts = v;
    *n = k;
    return 0;
}
