/* daemon/executor.h — the one thread that owns the engine.
 *
 * Every generation row of every client and every training job becomes a sequence of the executor. Each
 * step it forms one batch from all active sequences — single decode tokens and prompt chunks together,
 * each row under its own adapter (continuous batching) — runs one forward, samples, and reports tokens.
 * Other work on the engine (gradients, Adam steps, SVD access) is queued as work items and run between
 * batch steps: while sequences are active, one work item per step, so a training job never starves
 * queries and queries never starve a training job. */
#ifndef T2D_EXECUTOR_H
#define T2D_EXECUTOR_H

#include <stddef.h>
#include <stdint.h>
#include <t2/chat.h>
#include <t2/model.h>
#include <t2/sampler.h>
#include <t2/status.h>
#include <t2/svf.h>
#include <t2/tokenizer.h>

typedef struct t2x t2x;

typedef struct t2x_params {
    const char *model_path;    /* model folder */
    int n_threads;             /* engine kernel threads (0 = cores) */
    int max_seqs;              /* sequences in flight at once (KV slots) */
    int n_ctx;                 /* positions per sequence (≤ 0: min(model context, 4096)) */
    int n_batch;               /* most rows in one forward */
    int max_logit_rows;        /* most rows with logits in one forward (scoring rows are chunked to fit) */
    const char *modules;       /* adapted matrices: "mlp", "attn", "all" */
    const char *svd_path;      /* SVD cache file (NULL: the engine's default path) */
    int prefill_bf16;
    const char *chat_template; /* "auto", a kind name or a template file */
    int prefix_slots;          /* KV slots kept for shared prompt prefixes (0: no prefix cache) */
} t2x_params;

t2x_params t2x_default_params(void);

/* Load the model, tokenizer, chat template and SVD cache (built when missing), make the context and
 * start the executor thread. Caller frees with t2x_free. NULL on failure with *err and t2_last_error(). */
t2x *t2x_new(const t2x_params *p, t2_status *err);
/* Stop the thread (every pending and active sequence ends with T2_ERR_INTERNAL "shutting down"), free. */
void t2x_free(t2x *x);

/* Borrowed, valid until t2x_free; safe to use from any thread for read-only calls (encode, decode,
 * svd lookups). */
t2_model *t2x_model(t2x *x);
const t2_svd *t2x_svd(t2x *x);
const t2_tokenizer *t2x_tokenizer(t2x *x);
const t2_chat_template *t2x_template(t2x *x);
int t2x_n_ctx(const t2x *x);

/* A sequence: a prompt to continue, or (score_from ≥ 1) a text to score. Fill the inputs, submit, wait. */
typedef struct t2x_seq t2x_seq;
typedef struct t2x_seq_params {
    const int32_t *prompt;     /* [n_prompt] ids; copied at submission */
    int n_prompt;
    const t2_adapter *adapter; /* NULL = base; must stay valid until the sequence is done */
    t2_sampler_params sampling;
    int max_tokens;            /* 0 with score_from: scoring only */
    int score_from;            /* ≥ 1: sum log p(prompt[t] | prompt[<t]) for t ≥ score_from */
    const int32_t *stop_ids;   /* [n_stop_ids] single tokens that end generation (eos, end of turn) */
    int n_stop_ids;
    /* Optional, called on the executor thread after each generated token; return nonzero to stop. Keep
     * it short: it runs inside the batch loop. */
    int (*on_token)(void *user, int32_t token, float logprob);
    void *user;
    /* Prefix cache: prompt[0..n_prefix) is shared by many requests (a dispatch system prompt). Its KV is
     * computed once, kept in a prefix slot, and copied into later sequences with the same tokens and the
     * same prefix_key (the identity of the weights it ran under: 0 for the base model). 0: no caching. */
    int n_prefix;
    uint64_t prefix_key;
    /* Fairness group (the tenant): when slots are short, a free slot goes to the waiting sequence whose
     * group has the fewest sequences running, so one tenant's burst cannot hold every slot. */
    uint64_t group;
} t2x_seq_params;

/* Results of a finished sequence. */
typedef enum t2x_stop { T2X_STOP_LENGTH = 0, T2X_STOP_EOS, T2X_STOP_CALLBACK, T2X_STOP_CONTEXT, T2X_STOP_CANCELLED } t2x_stop;

/* Create a sequence (not yet submitted). Caller frees with t2x_seq_free after t2x_wait returned. */
t2x_seq *t2x_seq_new(const t2x_seq_params *p, t2_status *err);
void t2x_seq_free(t2x_seq *s);
/* Queue it; it starts when a slot is free. */
t2_status t2x_submit(t2x *x, t2x_seq *s);
/* Ask a submitted sequence to stop (safe from any thread); it ends with T2X_STOP_CANCELLED. */
void t2x_cancel(t2x_seq *s);
/* Nonzero once a submitted sequence has finished (does not block). */
int t2x_seq_done(t2x_seq *s);
/* Block until done; returns its status. */
t2_status t2x_wait(t2x_seq *s);
/* Results (valid after t2x_wait): generated ids (borrowed until t2x_seq_free), their Σ log p, why it
 * stopped, and for scoring the Σ log p of the scored tokens and their count. */
const int32_t *t2x_seq_tokens(const t2x_seq *s, int *n);
double t2x_seq_logprob(const t2x_seq *s);
t2x_stop t2x_seq_stop(const t2x_seq *s);
double t2x_seq_seconds(const t2x_seq *s);   /* submission → done */
double t2x_seq_queued(const t2x_seq *s);    /* submission → first forward */

/* Run fn on the executor thread between batch steps, and wait for it. fn may use the model freely
 * (t2_logprob_grad, Adam) but not the executor's context. Returns fn's status. */
typedef t2_status (*t2x_work_fn)(void *user, t2_model *m, const t2_svd *svd);
t2_status t2x_run(t2x *x, t2x_work_fn fn, void *user);

/* Monotonic seconds (the clock every timing of the daemon uses). */
double t2x_now(void);

typedef struct t2x_stats {
    uint64_t batches, rows, tokens_generated, tokens_prompt, work_items;
    uint64_t prefix_hits, prefix_tokens_reused;
    int active, pending;
    double busy_seconds, uptime_seconds;
} t2x_stats;
void t2x_get_stats(t2x *x, t2x_stats *st);

#endif
