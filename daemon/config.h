/* daemon/config.h — t2d's configuration: an INI file (etc/t2d.conf documents every option) read with
 * inih, then `section.key=value` overrides from the command line. Unknown sections or keys and values
 * that do not parse are errors that name the file, line and key. */
#ifndef T2D_CONFIG_H
#define T2D_CONFIG_H

#include <stddef.h>
#include <t2/status.h>

typedef struct t2d_config {
    /* [daemon] */
    char *listen;             /* endpoint: ipc://PATH or tcp://HOST:PORT */
    char *model;              /* model folder */
    char *state_dir;          /* SQLite database, experts, keys */
    char *plugin_dir;         /* *.so plugins, loaded at start */
    char *data_dir;           /* named datasets (gsm8k, math, ...) */
    char *log_file;           /* "" = stderr */
    char *log_level;          /* debug, info, warn, error */
    int workers;              /* request threads (each one in-flight generate) */
    double drain_seconds;     /* SIGTERM: how long in-flight requests may finish */
    char *default_dispatch;   /* dispatch plugin when a request names none ("" = base model) */
    /* [engine] */
    int threads;              /* kernel threads (0 = cores) */
    int max_seqs;             /* sequences in one batch */
    int n_ctx;                /* positions per sequence (0 = model, at most 4096) */
    int n_batch;              /* rows per forward */
    char *modules;            /* adapted matrices: mlp, attn, all */
    char *svd_cache;          /* SVD cache file ("" = default path) */
    int max_tokens;           /* default and largest max_tokens of a request */
    char *chat_template;      /* auto, a kind, or a file */
    int prefill_bf16;
    int prefix_slots;         /* KV slots for shared prompt prefixes (dispatch system prompts) */
    /* [auth] */
    char *auth;               /* "local" (ipc:// guarded by file mode) or "curve" */
    char *keys_dir;           /* curve: <tenant>.pub client keys */
    char *server_key;         /* curve: the server's key file (created if missing) */
    char *local_tenant;       /* local mode: the one tenant's name */
    char *socket_mode;        /* octal file mode of an ipc:// socket ("0600") */
    /* [limits] */
    int max_running_jobs;     /* jobs running at once, all tenants */
    int quota_queued_jobs;    /* per tenant */
    int quota_running_jobs;   /* per tenant */
    long long quota_expert_bytes; /* per tenant */
    int max_clients_inflight; /* per client identity: requests in flight */
} t2d_config;

/* Defaults (every string owned by cfg). */
void t2d_config_defaults(t2d_config *cfg);
/* Read an INI file over the current values. T2_ERR_IO / T2_ERR_FORMAT with a message in err. */
t2_status t2d_config_load(t2d_config *cfg, const char *path, char *err, size_t cap);
/* Apply one "section.key=value" override. */
t2_status t2d_config_set(t2d_config *cfg, const char *assignment, char *err, size_t cap);
/* Check values that depend on each other (a model is given, an endpoint parses, ...). */
t2_status t2d_config_check(const t2d_config *cfg, char *err, size_t cap);
/* Print every option and its value as an INI file. */
void t2d_config_print(const t2d_config *cfg, void *file);
void t2d_config_clear(t2d_config *cfg);

#endif
