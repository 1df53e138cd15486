/* t2d — the T2 daemon: one base model, its SVD cache, experts, plugins, jobs and many clients.
 *
 *   t2d [--config FILE] [--model DIR] [--listen ENDPOINT] [--state-dir DIR] [--plugin-dir DIR]
 *       [--set section.key=value ...] [--print-config] [--version]
 *
 * Exit codes: 0 stopped cleanly (SIGTERM/SIGINT), 1 could not start, 2 usage. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <t2/error.h>

#include "t2d.h"
#include "tasks.h"

volatile sig_atomic_t t2d_signal = 0;

static void on_signal(int sig) { t2d_signal = sig; }

static void usage(FILE *f) {
    fprintf(f,
            "usage: t2d [--config FILE] [--model DIR] [--listen ENDPOINT] [--state-dir DIR]\n"
            "           [--plugin-dir DIR] [--data-dir DIR] [--set section.key=value ...]\n"
            "           [--print-config] [--version]\n"
            "Options override the config file (default $T2_CONFIG, else /etc/t2/t2d.conf if present);\n"
            "every option is documented in etc/t2d.conf. SIGTERM drains in-flight requests and hands\n"
            "running jobs back to the queue (they resume from their checkpoints at the next start).\n");
}

static const char *plugin_settings(void *u, const char *kind, const char *name) {
    (void)u;
    (void)kind;
    (void)name;
    return "{}";
}

static void plugin_log(void *u, t2_log_level level, const char *msg) {
    (void)u;
    t2d_log(level, "plugins: %s", msg);
}

int main(int argc, char **argv) {
    static t2d d;
    t2d_config_defaults(&d.cfg);
    char err[2048];
    const char *config = getenv("T2_CONFIG");
    int print = 0;
    if (!config) {
        struct stat sb;
        if (stat("/etc/t2/t2d.conf", &sb) == 0) config = "/etc/t2/t2d.conf";
    }
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--config") && i + 1 < argc) config = argv[++i];
    if (config && t2d_config_load(&d.cfg, config, err, sizeof err) != T2_OK) {
        fprintf(stderr, "t2d: %s\n", err);
        return 2;
    }
    static const struct { const char *flag, *key; } shortcuts[] = {
        {"--model", "daemon.model"}, {"--listen", "daemon.listen"}, {"--state-dir", "daemon.state_dir"},
        {"--plugin-dir", "daemon.plugin_dir"}, {"--data-dir", "daemon.data_dir"}, {"--log-level", "daemon.log_level"},
    };
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--config")) {
            i++;
            continue;
        }
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) return usage(stdout), 0;
        if (!strcmp(a, "--version")) return printf("t2d 0.1.0 (plugin ABI %d.%d)\n", T2_ABI_MAJOR, T2_ABI_MINOR), 0;
        if (!strcmp(a, "--print-config")) {
            print = 1;
            continue;
        }
        const char *assign = NULL;
        char buf[4200];
        for (size_t k = 0; k < sizeof shortcuts / sizeof shortcuts[0]; k++)
            if (!strcmp(a, shortcuts[k].flag)) {
                if (i + 1 >= argc) return fprintf(stderr, "t2d: %s needs a value\n", a), 2;
                snprintf(buf, sizeof buf, "%s=%s", shortcuts[k].key, argv[++i]);
                assign = buf;
            }
        if (!assign && !strcmp(a, "--set")) {
            if (i + 1 >= argc) return fprintf(stderr, "t2d: --set needs section.key=value\n"), 2;
            assign = argv[++i];
        }
        if (!assign) {
            fprintf(stderr, "t2d: unknown argument %s\n", a);
            usage(stderr);
            return 2;
        }
        if (t2d_config_set(&d.cfg, assign, err, sizeof err) != T2_OK) return fprintf(stderr, "t2d: %s\n", err), 2;
    }
    if (print) {
        t2d_config_print(&d.cfg, stdout);
        return 0;
    }
    if (t2d_config_check(&d.cfg, err, sizeof err) != T2_OK) return fprintf(stderr, "t2d: %s\n", err), 2;
    t2d_log_open(d.cfg.log_file, d.cfg.log_level);
    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa = {0};
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);

    int rc = 1;
    t2_status st;
    snprintf(d.experts_dir, sizeof d.experts_dir, "%s/experts", d.cfg.state_dir);
    if (t2d_mkdirs(d.experts_dir, err, sizeof err) != T2_OK) {   /* state_dir and its experts/ */
        t2d_log(T2_LOG_ERROR, "state_dir: %s", err);
        goto out;
    }
    char dbpath[4200];
    snprintf(dbpath, sizeof dbpath, "%s/t2d.sqlite", d.cfg.state_dir);
    if (!(d.store = t2d_store_open(dbpath, &st))) {
        t2d_log(T2_LOG_ERROR, "state: %s", t2d_store_errmsg());
        goto out;
    }
    d.api = t2d_host_api();
    if (!(d.plugins = t2_plugins_new(d.api, &st))) {
        t2d_log(T2_LOG_ERROR, "plugins: %s", t2_strerror(st));
        goto out;
    }
    t2_plugins_set_log(d.plugins, plugin_log, NULL);
    {
        const char *dir = *d.cfg.plugin_dir ? d.cfg.plugin_dir : t2_plugins_default_dir();
        int n = t2_plugins_load_dir(d.plugins, dir, plugin_settings, NULL);
        t2d_log(T2_LOG_INFO, "plugins loaded=%d refused=%d dir=%s", n, t2_plugins_refused_count(d.plugins), dir);
    }
    t2x_params xp = t2x_default_params();
    xp.model_path = d.cfg.model;
    xp.n_threads = d.cfg.threads;
    xp.max_seqs = d.cfg.max_seqs;
    xp.n_ctx = d.cfg.n_ctx;
    xp.n_batch = d.cfg.n_batch;
    xp.modules = d.cfg.modules;
    xp.svd_path = *d.cfg.svd_cache ? d.cfg.svd_cache : NULL;
    xp.prefill_bf16 = d.cfg.prefill_bf16;
    xp.chat_template = d.cfg.chat_template;
    xp.prefix_slots = d.cfg.prefix_slots;
    t2d_log(T2_LOG_INFO, "loading model=%s", d.cfg.model);
    if (!(d.x = t2x_new(&xp, &st))) {
        t2d_log(T2_LOG_ERROR, "model %s: %s", d.cfg.model, t2_last_error());
        goto out;
    }
    t2d_log(T2_LOG_INFO, "model ready params=%lld n_ctx=%d matrices=%d", (long long)t2_model_n_params(t2x_model(d.x)), t2x_n_ctx(d.x),
            t2_svd_count(t2x_svd(d.x)));
    if (!(d.jobs = t2d_jobs_start(&d, &st))) {
        t2d_log(T2_LOG_ERROR, "jobs: %s", t2_last_error());
        goto out;
    }
    rc = t2d_serve(&d);
    t2d_log(T2_LOG_INFO, "stopping: handing running jobs back to the queue");
out:
    atomic_store(&d.draining, 1);
    t2d_jobs_stop(d.jobs);
    t2x_free(d.x);
    t2_plugins_free(d.plugins);
    t2d_store_close(d.store);
    t2d_config_clear(&d.cfg);
    t2d_log(T2_LOG_INFO, "stopped rc=%d", rc);
    return rc;
}
