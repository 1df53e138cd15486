/* daemon/t2d.h — the daemon's parts and how they reach each other.
 *
 *   main.c     command line, signals, start and orderly stop
 *   server.c   the ROUTER socket (I/O thread), request decoding and routing, ZAP authentication, watch
 *              streams, the worker threads that run long requests
 *   executor.c the engine's thread (continuous batching, work items)
 *   host.c     the host API table plugins call; generation and scoring for requests and plugins
 *   experts.c  expert files and their registry rows
 *   jobs.c     the job scheduler and runners (trainer plugins, evaluation)
 *   store/     SQLite state; loader/ plugins; tasks/ datasets */
#ifndef T2D_H
#define T2D_H

#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <t2/plugin.h>
#include <t2/lora.h>
#include <t2/rng.h>
#include <t2/svf.h>

#include "config.h"
#include "executor.h"
#include "loader.h"
#include "store.h"

typedef struct t2d_jobs t2d_jobs;

typedef struct t2d {
    t2d_config cfg;
    t2x *x;
    t2d_store *store;
    t2_plugins *plugins;
    t2d_jobs *jobs;
    const t2_host_api *api;
    char experts_dir[4096];
    atomic_int draining;        /* SIGTERM: no new work; in-flight work finishes */
    double started;
} t2d;

/* ---------------- logging (logfmt lines: ts=... level=... msg="..." key=value ...) ---------------- */
void t2d_log_open(const char *file, const char *level);
void t2d_log(t2_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void t2d_logv(t2_log_level level, const char *fmt, va_list ap);

/* ---------------- the host (host.c) ---------------- */

/* The context one plugin call runs in. */
struct t2_host {
    t2d *d;
    const char *tenant;
    int64_t job;                /* 0 when not a job */
    t2_rng rng;                 /* the plugin's random stream */
    atomic_int *cancel;         /* NULL or the request's / job's cancel flag */
    double eta_t0;              /* jobs: when progress counting started */
    int64_t eta_step0;
    int64_t last_step;          /* the step of the last progress report (checkpoints are taken at it) */
    char last_error[512];       /* the last warning or error a plugin logged through this context */
};
/* Why a plugin call failed: the host's error detail if a host function set one, else the last warning
 * or error the plugin logged, else the status's text. Borrowed, valid until the next call. */
const char *t2d_host_error(const t2_host *h, t2_status st);

/* The folder of named datasets: [daemon] data_dir, else $T2_DATA_DIR, else "". Borrowed. */
const char *t2d_data_dir(t2d *d);
/* The host API table of this daemon (static). */
const t2_host_api *t2d_host_api(void);
/* Initialise a host context for tenant (borrowed string, must outlive it), seeded. */
void t2d_host_init(t2_host *h, t2d *d, const char *tenant, int64_t job, uint64_t seed, atomic_int *cancel);

/* An expert as handed to plugins: an engine expert plus the names it came from (for replies). */
struct t2_hexpert {
    t2_expert *e;               /* an SVF expert, or NULL for a LoRA one */
    t2_lora *lora;              /* a LoRA expert (the baseline), or NULL */
    char name[160];             /* "math", "mix(math:0.5,code:0.5)", "policy", "" for new */
};
t2_hexpert *t2d_hexpert_wrap(t2_expert *e, const char *name);

/* A text generation as requests and plugins ask for it. */
typedef struct t2d_gen {
    /* in */
    const char *prompt;                 /* raw prompt text (chat = 0) or the user message (chat = 1) */
    const t2_chat_message *messages;    /* chat: explicit messages instead of prompt/system */
    int n_messages;
    int chat;
    const char *system;
    const t2_expert *expert;            /* NULL = base */
    const t2_lora *lora;                /* or a LoRA (exclusive with expert) */
    t2_sampler_params sampling;
    int max_tokens;
    const char *const *stop;
    int n_stop;
    atomic_int *cancel;
    int cache_system;                   /* chat: the system turn's KV is computed once and reused */
    const char *tenant;                 /* fairness group in the executor (NULL: one shared group) */
    /* streaming: called on the caller's thread with each new piece of text */
    void (*on_text)(void *user, const char *piece, size_t len, int n_tokens);
    void *user;
    /* out */
    char *text;                         /* malloc'd */
    int32_t *ids;                       /* malloc'd prompt + completion ids */
    int n_ids, n_prompt, n_tokens;
    double logprob, seconds, queued;
    const char *stop_reason;            /* "length", "eos", "stop", "context", "cancelled" */
} t2d_gen;

/* Run generations: all of them join the executor's batch at once; blocks until all are done.
 * Only gens[0] may stream. Frees nothing: call t2d_gen_clear on each. */
t2_status t2d_generate(t2d *d, t2d_gen *gens, int n, char *err, size_t cap);
void t2d_gen_clear(t2d_gen *g);

/* ---------------- experts (experts.c) ---------------- */

/* mkdir -p with mode 0750; T2_ERR_IO with the failing directory named in err. */
t2_status t2d_mkdirs(const char *path, char *err, size_t cap);
/* A safe expert name: 1..128 of [A-Za-z0-9._-], not starting with '.'. */
int t2d_expert_name_ok(const char *name);
/* Load tenant's visible expert `name`: an SVF expert into *e, or a LoRA expert into *lora (the other NULL).
 * Caller frees with t2_expert_free / t2_lora_free. */
t2_status t2d_expert_open(t2d *d, const char *tenant, const char *name, t2_expert **e, t2_lora **lora, char *err, size_t cap);
/* Write e (SVF) or lora for tenant as `name` (atomic), check the tenant's quota, register it. */
t2_status t2d_expert_store(t2d *d, const char *tenant, const char *name, const char *label, t2_expert *e, t2_lora *lora,
                           const char *meta_json, char *err, size_t cap);
/* Build the mixture of tenant's experts names[k] with alpha (k, or k × n_matrices when per_matrix).
 * Caller frees with t2_expert_free; *label gets a display name. */
t2_expert *t2d_expert_mix(t2d *d, const char *tenant, const char *const *names, const float *alpha, int k, int per_matrix,
                          char *display, size_t dcap, char *err, size_t cap, t2_status *st);

/* ---------------- the first pass (dispatch.c) ---------------- */

/* What a request or an eval job asks to answer under. */
typedef struct t2d_route {
    const char *dispatch;          /* a dispatch plugin, or NULL/"" */
    int base;                      /* force the base model */
    int n_mix;                     /* explicit mixture: names and one alpha each, or alpha_pm per matrix */
    const char *const *mix_names;
    const float *mix_alpha;
    const float *const *mix_alpha_pm;   /* NULL, or [n_mix] arrays of n_matrices weights */
    const char *prompt, *system, *task_id, *examples, *settings;
    atomic_int *cancel;
} t2d_route;

#define T2D_DECISION_MAX_PARTS 16
typedef struct t2d_decision {
    t2_expert *expert;             /* owned (t2d_decision_clear); NULL = base model */
    t2_lora *lora;                 /* owned; a LoRA expert instead */
    char dispatch[129];            /* the plugin that decided, "" if none */
    char label[64];
    char detail[1024];             /* JSON object text */
    int n_parts;                   /* what ran: expert names and their alpha */
    char names[T2D_DECISION_MAX_PARTS][160];
    float alpha[T2D_DECISION_MAX_PARTS];
    double seconds;                /* time the first pass took */
} t2d_decision;

/* Decide what the second pass runs under: base, the explicit mixture, or the dispatch plugin (the
 * request's, else [daemon] default_dispatch, else base). */
t2_status t2d_decide(t2d *d, const char *tenant, const t2d_route *r, t2d_decision *out, char *err, size_t cap);
void t2d_decision_clear(t2d_decision *dc);
/* Number of trained parameters behind a decision's expert (0 for the base model). */
int64_t t2d_decision_params(const t2d_decision *dc);

/* ---------------- jobs (jobs.c) ---------------- */
t2d_jobs *t2d_jobs_start(t2d *d, t2_status *err);
/* Wake the scheduler (a job was queued or cancelled). */
void t2d_jobs_kick(t2d_jobs *j);
/* Stop: running jobs are handed back to the queue with their checkpoints (they resume on restart). */
void t2d_jobs_stop(t2d_jobs *j);
int t2d_jobs_running(t2d_jobs *j);

/* ---------------- server (server.c) ---------------- */
int t2d_serve(t2d *d);   /* runs until SIGTERM/SIGINT; returns the exit code */

#endif
