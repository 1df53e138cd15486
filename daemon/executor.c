/* The executor: one thread, one engine context, continuous batching.
 *
 * Each step builds one batch: first one decode row for every sequence that is generating (so tokens keep
 * flowing whatever else arrives), then prompt chunks of sequences still reading their prompt, up to
 * n_batch rows and max_logit_rows rows with logits. Prompt chunks are taken round-robin starting from a
 * rotating slot so a long prompt cannot hold the others back for ever. Each row carries its sequence's
 * adapter; the engine groups rows per projection (base / merged / factored), so a batch mixing experts
 * costs about what one expert costs.
 *
 * Work items (gradients, optimiser steps) run on this same thread between steps, one per step while
 * sequences are active, so neither kind of work starves the other. */
#include "executor.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <t2/error.h>

struct t2x_seq {
    t2x_seq_params p;
    int32_t *prompt;            /* owned copy [n_prompt] */
    int32_t *stop_ids;          /* owned copy */
    t2_sampler *smp;
    int32_t *out;               /* [cap_out] generated */
    int n_out, cap_out;
    double logprob;             /* Σ log p of generated tokens, or of scored tokens */
    t2x_stop stop;
    t2_status status;
    int slot, n_fed;
    int store_prefix;           /* its prefix was not cached: keep it once computed */
    double t_submit, t_first, t_done;
    atomic_int cancel;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int done;
    struct t2x_seq *next;
};

/* A cached prompt prefix: its KV lives in a slot of its own. */
typedef struct prefix_entry {
    int slot, len;              /* len 0: empty */
    int32_t *tokens;            /* [len] */
    uint64_t key, last_used;
} prefix_entry;

typedef struct work_item {
    t2x_work_fn fn;
    void *user;
    t2_status status;
    int done;
    struct work_item *next;
} work_item;

struct t2x {
    t2x_params p;
    t2_model *model;
    t2_tokenizer *tok;
    t2_chat_template *tmpl;
    t2_svd *svd;
    t2_ctx *ctx;
    int n_ctx, vocab;

    pthread_t thread;
    int thread_started;
    pthread_mutex_t mu;
    pthread_cond_t cv;          /* work arrived / work finished */
    int stopping;
    t2x_seq *pend_head, *pend_tail;
    work_item *work_head, *work_tail;
    int n_pending;

    /* executor-thread state */
    t2x_seq **active;           /* [max_seqs] */
    int n_active, rr;
    int32_t *b_tok, *b_pos, *b_seq;     /* [n_batch] */
    uint8_t *b_want;                     /* [n_batch] */
    const t2_adapter **b_ad;             /* [n_batch] */
    t2x_seq **row_seq;                   /* [max_logit_rows] which sequence each logits row belongs to */
    int *row_pos;                        /* [max_logit_rows] the position of that row */
    float *logits;                       /* [max_logit_rows × vocab] */

    prefix_entry *prefixes;              /* [prefix_slots] */
    uint64_t prefix_clock;

    t2x_stats st;               /* executor thread's counters */
    t2x_stats pub;              /* their copy for other threads, published under mu after every step */
    double t_start;
};

double t2x_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

t2x_params t2x_default_params(void) {
    return (t2x_params){.n_threads = 0, .max_seqs = 32, .n_ctx = 0, .n_batch = 512, .max_logit_rows = 64,
                        .modules = "mlp", .chat_template = "auto", .prefix_slots = 4};
}

/* ---------------- sequences ---------------- */

t2x_seq *t2x_seq_new(const t2x_seq_params *p, t2_status *err) {
    if (!p || !p->prompt || p->n_prompt < 1 || p->max_tokens < 0 || p->n_stop_ids < 0 ||
        (p->max_tokens == 0 && p->score_from < 1) || p->score_from < 0 || p->score_from > p->n_prompt) {
        *err = t2_set_error(T2_ERR_INVALID_ARG, "sequence: need a prompt, max_tokens >= 0, and max_tokens > 0 or 1 <= score_from <= n_prompt");
        return NULL;
    }
    t2x_seq *s = calloc(1, sizeof *s);
    if (!s) goto nomem;
    s->p = *p;
    s->prompt = malloc((size_t)p->n_prompt * sizeof *s->prompt);
    s->stop_ids = malloc((size_t)(p->n_stop_ids + 1) * sizeof *s->stop_ids);
    s->cap_out = p->max_tokens > 0 ? (p->max_tokens < 256 ? p->max_tokens : 256) : 1;
    s->out = malloc((size_t)s->cap_out * sizeof *s->out);
    if (!s->prompt || !s->stop_ids || !s->out) goto nomem;
    memcpy(s->prompt, p->prompt, (size_t)p->n_prompt * sizeof *s->prompt);
    if (p->n_stop_ids) memcpy(s->stop_ids, p->stop_ids, (size_t)p->n_stop_ids * sizeof *s->stop_ids);
    s->p.prompt = s->prompt;
    s->p.stop_ids = s->stop_ids;
    s->slot = -1;
    atomic_init(&s->cancel, 0);
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    *err = T2_OK;
    return s;
nomem:
    if (s) {
        free(s->prompt);
        free(s->stop_ids);
        free(s->out);
        free(s);
    }
    *err = t2_set_error(T2_ERR_NOMEM, "sequence: out of memory");
    return NULL;
}

void t2x_seq_free(t2x_seq *s) {
    if (!s) return;
    t2_sampler_free(s->smp);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    free(s->prompt);
    free(s->stop_ids);
    free(s->out);
    free(s);
}

void t2x_cancel(t2x_seq *s) {
    if (s) atomic_store(&s->cancel, 1);
}

int t2x_seq_done(t2x_seq *s) {
    pthread_mutex_lock(&s->mu);
    int d = s->done;
    pthread_mutex_unlock(&s->mu);
    return d;
}

t2_status t2x_wait(t2x_seq *s) {
    pthread_mutex_lock(&s->mu);
    while (!s->done) pthread_cond_wait(&s->cv, &s->mu);
    pthread_mutex_unlock(&s->mu);
    return s->status;
}

const int32_t *t2x_seq_tokens(const t2x_seq *s, int *n) {
    *n = s->n_out;
    return s->out;
}
double t2x_seq_logprob(const t2x_seq *s) { return s->logprob; }
t2x_stop t2x_seq_stop(const t2x_seq *s) { return s->stop; }
double t2x_seq_seconds(const t2x_seq *s) { return s->t_done - s->t_submit; }
double t2x_seq_queued(const t2x_seq *s) { return (s->t_first > 0 ? s->t_first : s->t_done) - s->t_submit; }

static void seq_finish(t2x_seq *s, t2_status status, t2x_stop stop) {
    s->status = status;
    s->stop = stop;
    s->t_done = t2x_now();
    pthread_mutex_lock(&s->mu);
    s->done = 1;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

t2_status t2x_submit(t2x *x, t2x_seq *s) {
    t2_status st = T2_OK;
    if (s->p.n_prompt > x->n_ctx || (s->p.max_tokens > 0 && s->p.n_prompt >= x->n_ctx)) {
        st = t2_set_error(T2_ERR_FULL, "the prompt has %d tokens; the context holds %d", s->p.n_prompt, x->n_ctx);
    } else {
        for (int i = 0; i < s->p.n_prompt; i++)
            if (s->prompt[i] < 0 || s->prompt[i] >= x->vocab) {
                st = t2_set_error(T2_ERR_RANGE, "token id %d at position %d is outside the vocabulary (%d)", s->prompt[i], i, x->vocab);
                break;
            }
    }
    if (st == T2_OK && s->p.max_tokens > 0 && !s->smp) {
        s->smp = t2_sampler_new(&s->p.sampling, x->vocab, &st);
    }
    s->t_submit = t2x_now();
    if (st != T2_OK) {
        seq_finish(s, st, T2X_STOP_LENGTH);
        return st;
    }
    pthread_mutex_lock(&x->mu);
    if (x->stopping) {
        pthread_mutex_unlock(&x->mu);
        st = t2_set_error(T2_ERR_INTERNAL, "the executor is shutting down");
        seq_finish(s, st, T2X_STOP_CANCELLED);
        return st;
    }
    s->next = NULL;
    if (x->pend_tail) x->pend_tail->next = s;
    else x->pend_head = s;
    x->pend_tail = s;
    x->n_pending++;
    pthread_cond_broadcast(&x->cv);
    pthread_mutex_unlock(&x->mu);
    return T2_OK;
}

t2_status t2x_run(t2x *x, t2x_work_fn fn, void *user) {
    work_item w = {.fn = fn, .user = user};
    pthread_mutex_lock(&x->mu);
    if (x->stopping) {
        pthread_mutex_unlock(&x->mu);
        return t2_set_error(T2_ERR_INTERNAL, "the executor is shutting down");
    }
    if (x->work_tail) x->work_tail->next = &w;
    else x->work_head = &w;
    x->work_tail = &w;
    pthread_cond_broadcast(&x->cv);
    while (!w.done) pthread_cond_wait(&x->cv, &x->mu);
    pthread_mutex_unlock(&x->mu);
    return w.status;
}

/* ---------------- the loop ---------------- */

static void release_slot(t2x *x, t2x_seq *s) {
    x->active[s->slot] = NULL;
    x->n_active--;
    s->slot = -1;
}

/* s leaves its slot and is finished; the waiter may free it at once, so s is not touched afterwards. */
static void end(t2x *x, t2x_seq *s, t2_status status, t2x_stop stop) {
    release_slot(x, s);
    pthread_mutex_lock(&x->mu);   /* whoever waits for s sees counters that include it */
    x->pub = x->st;
    pthread_mutex_unlock(&x->mu);
    seq_finish(s, status, stop);
}

/* A sampled token for s: record it and decide whether s goes on (it may end here). */
static void take_token(t2x *x, t2x_seq *s, const float *logits) {
    float lp = 0;
    int tok = t2_sampler_sample(s->smp, logits, &lp);
    if (s->n_out == s->cap_out) {
        int cap = s->cap_out * 2;
        int32_t *o = realloc(s->out, (size_t)cap * sizeof *o);
        if (!o) {
            end(x, s, t2_set_error(T2_ERR_NOMEM, "sequence: out of memory"), T2X_STOP_LENGTH);
            return;
        }
        s->out = o;
        s->cap_out = cap;
    }
    s->out[s->n_out++] = tok;
    s->logprob += lp;
    x->st.tokens_generated++;
    if (s->p.on_token && s->p.on_token(s->p.user, tok, lp)) {
        end(x, s, T2_OK, T2X_STOP_CALLBACK);
        return;
    }
    for (int i = 0; i < s->p.n_stop_ids; i++)
        if (tok == s->stop_ids[i]) {
            end(x, s, T2_OK, T2X_STOP_EOS);
            return;
        }
    if (s->n_out >= s->p.max_tokens) end(x, s, T2_OK, T2X_STOP_LENGTH);
    else if (s->p.n_prompt + s->n_out >= x->n_ctx) end(x, s, T2_OK, T2X_STOP_CONTEXT);
}

static prefix_entry *find_prefix(t2x *x, const t2x_seq *s) {
    for (int k = 0; k < x->p.prefix_slots; k++) {
        prefix_entry *e = &x->prefixes[k];
        if (e->len == s->p.n_prefix && e->key == s->p.prefix_key && !memcmp(e->tokens, s->prompt, (size_t)e->len * sizeof *e->tokens))
            return e;
    }
    return NULL;
}

/* Keep the computed prefix of s in the least recently used prefix slot. */
static void keep_prefix(t2x *x, t2x_seq *s) {
    s->store_prefix = 0;
    if (find_prefix(x, s)) return;   /* another sequence stored it meanwhile */
    prefix_entry *e = &x->prefixes[0];
    for (int k = 1; k < x->p.prefix_slots; k++)
        if (x->prefixes[k].last_used < e->last_used) e = &x->prefixes[k];
    int32_t *t = realloc(e->tokens, (size_t)s->p.n_prefix * sizeof *t);
    if (!t) return;
    e->tokens = t;
    if (t2_ctx_seq_copy(x->ctx, s->slot, e->slot, s->p.n_prefix) != T2_OK) {
        e->len = 0;
        return;
    }
    memcpy(e->tokens, s->prompt, (size_t)s->p.n_prefix * sizeof *t);
    e->len = s->p.n_prefix;
    e->key = s->p.prefix_key;
    e->last_used = ++x->prefix_clock;
}

static void step(t2x *x) {
    int n = 0, nw = 0;
    int max_seqs = x->p.max_seqs;
    /* cancelled sequences leave first */
    for (int i = 0; i < max_seqs; i++) {
        t2x_seq *s = x->active[i];
        if (s && atomic_load(&s->cancel)) end(x, s, T2_OK, T2X_STOP_CANCELLED);
    }
    /* decode rows */
    for (int i = 0; i < max_seqs && n < x->p.n_batch && nw < x->p.max_logit_rows; i++) {
        t2x_seq *s = x->active[i];
        if (!s || s->n_fed < s->p.n_prompt) continue;
        int pos = s->p.n_prompt + s->n_out - 1;
        x->b_tok[n] = s->out[s->n_out - 1];
        x->b_pos[n] = pos;
        x->b_seq[n] = s->slot;
        x->b_want[n] = 1;
        x->b_ad[n] = s->p.adapter;
        x->row_seq[nw] = s;
        x->row_pos[nw++] = pos;
        n++;
    }
    /* prompt chunks, round-robin from a rotating slot */
    for (int k = 0; k < max_seqs && n < x->p.n_batch; k++) {
        t2x_seq *s = x->active[(x->rr + k) % max_seqs];
        if (!s || s->n_fed >= s->p.n_prompt) continue;
        if (s->t_first == 0) s->t_first = t2x_now();
        while (s->n_fed < s->p.n_prompt && n < x->p.n_batch) {
            int pos = s->n_fed;
            /* logits at pos predict pos+1 (scoring) or the first generated token (last prompt row) */
            int want = (s->p.score_from >= 1 && pos + 1 >= s->p.score_from && pos + 1 < s->p.n_prompt) ||
                       (pos == s->p.n_prompt - 1);
            if (want && nw >= x->p.max_logit_rows) break;
            x->b_tok[n] = s->prompt[pos];
            x->b_pos[n] = pos;
            x->b_seq[n] = s->slot;
            x->b_want[n] = (uint8_t)want;
            x->b_ad[n] = s->p.adapter;
            if (want) {
                x->row_seq[nw] = s;
                x->row_pos[nw++] = pos;
            }
            n++;
            s->n_fed++;
            x->st.tokens_prompt++;
        }
        if (nw >= x->p.max_logit_rows) break;
    }
    x->rr = (x->rr + 1) % max_seqs;
    if (n == 0) return;
    t2_batch b = {.n = n, .token = x->b_tok, .pos = x->b_pos, .seq = x->b_seq, .want = x->b_want};
    t2_status st = t2_ctx_decode_adapted(x->ctx, &b, x->b_ad, x->logits);
    x->st.batches++;
    x->st.rows += (uint64_t)n;
    if (st != T2_OK) {
        /* an engine failure: every sequence of this batch ends with it, the others go on */
        for (int r = 0; r < n; r++) {
            t2x_seq *s = x->active[x->b_seq[r]];
            if (s) end(x, s, st, T2X_STOP_LENGTH);
        }
        return;
    }
    for (int i = 0; i < max_seqs; i++) {
        t2x_seq *s = x->active[i];
        if (s && s->store_prefix && s->n_fed >= s->p.n_prefix) keep_prefix(x, s);
    }
    /* A sequence's logits rows are in position order and it can only end at its last one, so no row
     * below refers to a sequence that already ended (and may have been freed). */
    for (int r = 0; r < nw; r++) {
        t2x_seq *s = x->row_seq[r];
        const float *lg = x->logits + (size_t)r * (size_t)x->vocab;
        int pos = x->row_pos[r];
        if (pos + 1 < s->p.n_prompt) {   /* a scored row */
            s->logprob += t2_logprob(lg, x->vocab, s->prompt[pos + 1]);
            continue;
        }
        if (s->p.max_tokens == 0) end(x, s, T2_OK, T2X_STOP_LENGTH);   /* scoring only */
        else take_token(x, s, lg);
    }
}

/* The waiting sequence to start next: the oldest of the group with the fewest running sequences.
 * Unlinks it from the pending list. */
static t2x_seq *next_pending(t2x *x) {
    t2x_seq *best = NULL, *best_prev = NULL, *prev = NULL;
    int best_running = 1 << 30;
    for (t2x_seq *s = x->pend_head; s; prev = s, s = s->next) {
        int running = 0;
        for (int i = 0; i < x->p.max_seqs; i++) running += x->active[i] && x->active[i]->p.group == s->p.group;
        if (running < best_running) {
            best = s;
            best_prev = prev;
            best_running = running;
            if (running == 0) break;
        }
    }
    if (!best) return NULL;
    if (best_prev) best_prev->next = best->next;
    else x->pend_head = best->next;
    if (x->pend_tail == best) x->pend_tail = best_prev;
    x->n_pending--;
    return best;
}

static void admit(t2x *x) {
    for (int i = 0; i < x->p.max_seqs && x->pend_head; i++) {
        if (x->active[i]) continue;
        t2x_seq *s = next_pending(x);
        t2_ctx_seq_clear(x->ctx, i);
        s->slot = i;
        x->active[i] = s;
        x->n_active++;
        if (s->p.n_prefix > 0 && s->p.n_prefix < s->p.n_prompt && x->p.prefix_slots > 0) {
            prefix_entry *e = find_prefix(x, s);
            if (e && t2_ctx_seq_copy(x->ctx, e->slot, i, e->len) == T2_OK) {
                s->n_fed = e->len;
                e->last_used = ++x->prefix_clock;
                x->st.prefix_hits++;
                x->st.prefix_tokens_reused += (uint64_t)e->len;
            } else {
                s->store_prefix = 1;
            }
        }
    }
}

static void *loop(void *arg) {
    t2x *x = arg;
    for (;;) {
        pthread_mutex_lock(&x->mu);
        while (!x->stopping && !x->pend_head && x->n_active == 0 && !x->work_head) pthread_cond_wait(&x->cv, &x->mu);
        if (x->stopping) {
            pthread_mutex_unlock(&x->mu);
            break;
        }
        admit(x);
        work_item *w = x->work_head;
        if (w) {
            x->work_head = w->next;
            if (!x->work_head) x->work_tail = NULL;
        }
        pthread_mutex_unlock(&x->mu);

        double t0 = t2x_now();
        if (x->n_active > 0) step(x);
        if (w) {
            w->status = w->fn(w->user, x->model, x->svd);
            x->st.work_items++;
            pthread_mutex_lock(&x->mu);
            x->pub = x->st;
            w->done = 1;
            pthread_cond_broadcast(&x->cv);
            pthread_mutex_unlock(&x->mu);
        }
        double dt = t2x_now() - t0;
        pthread_mutex_lock(&x->mu);
        x->st.busy_seconds += dt;
        x->st.active = x->n_active;
        x->pub = x->st;
        pthread_mutex_unlock(&x->mu);
    }
    /* shutting down: everything still here ends */
    t2_status st = t2_set_error(T2_ERR_INTERNAL, "the executor is shutting down");
    for (int i = 0; i < x->p.max_seqs; i++)
        if (x->active[i]) end(x, x->active[i], st, T2X_STOP_CANCELLED);
    pthread_mutex_lock(&x->mu);
    while (x->pend_head) {
        t2x_seq *s = x->pend_head;
        x->pend_head = s->next;
        seq_finish(s, st, T2X_STOP_CANCELLED);
    }
    x->pend_tail = NULL;
    for (work_item *w = x->work_head; w; w = w->next) {
        w->status = st;
        w->done = 1;
    }
    x->work_head = x->work_tail = NULL;
    pthread_cond_broadcast(&x->cv);
    pthread_mutex_unlock(&x->mu);
    return NULL;
}

/* ---------------- setup ---------------- */

t2x *t2x_new(const t2x_params *pp, t2_status *err) {
    t2x_params p = pp ? *pp : t2x_default_params();
    if (!p.model_path || p.max_seqs < 1 || p.max_seqs > 1024 || p.n_batch < 1 || p.max_logit_rows < 1) {
        *err = t2_set_error(T2_ERR_INVALID_ARG, "executor: need a model path, 1 <= max_seqs <= 1024, n_batch >= 1, max_logit_rows >= 1");
        return NULL;
    }
    t2x *x = calloc(1, sizeof *x);
    if (!x) {
        *err = t2_set_error(T2_ERR_NOMEM, "executor: out of memory");
        return NULL;
    }
    x->p = p;
    pthread_mutex_init(&x->mu, NULL);
    pthread_cond_init(&x->cv, NULL);
    t2_model_params mp = t2_model_default_params();
    mp.path = p.model_path;
    mp.n_threads = p.n_threads;
    mp.prefill_bf16 = p.prefill_bf16;
    t2_modules mods;
    if (!(x->model = t2_model_load(&mp, err))) goto fail;
    if (!(x->tok = t2_tokenizer_load(p.model_path, err))) {
        *err = t2_wrap_error(*err, "tokenizer of %s", p.model_path);
        goto fail;
    }
    if (!(x->tmpl = t2_chat_template_load(p.chat_template ? p.chat_template : "auto", x->tok, err))) goto fail;
    if ((*err = t2_modules_parse(p.modules ? p.modules : "mlp", &mods)) != T2_OK) goto fail;
    t2_svd_params sp = t2_svd_default_params();
    sp.modules = mods;
    sp.path = p.svd_path;
    if (!(x->svd = t2_svd_load(x->model, &sp, err))) goto fail;
    const t2_model_config *cfg = t2_model_get_config(x->model);
    x->vocab = cfg->vocab_size;
    x->n_ctx = p.n_ctx > 0 ? p.n_ctx : (cfg->max_position_embeddings > 0 && cfg->max_position_embeddings < 4096 ? cfg->max_position_embeddings : 4096);
    if (x->p.max_logit_rows > x->p.n_batch) x->p.max_logit_rows = x->p.n_batch;
    if (x->p.max_logit_rows < x->p.max_seqs) x->p.max_logit_rows = x->p.max_seqs;   /* every decode row fits */
    if (x->p.prefix_slots < 0) x->p.prefix_slots = 0;
    t2_ctx_params cp = {.n_ctx = x->n_ctx, .n_seq = p.max_seqs + x->p.prefix_slots, .n_batch = x->p.n_batch > x->p.max_seqs ? x->p.n_batch : x->p.max_seqs};
    x->p.n_batch = cp.n_batch;
    if (!(x->ctx = t2_ctx_new(x->model, &cp, err))) goto fail;
    if ((*err = t2_ctx_set_svd(x->ctx, x->svd, 0)) != T2_OK) goto fail;
    size_t nb = (size_t)x->p.n_batch, nl = (size_t)x->p.max_logit_rows;
    x->active = calloc((size_t)p.max_seqs, sizeof *x->active);
    x->b_tok = malloc(nb * sizeof *x->b_tok);
    x->b_pos = malloc(nb * sizeof *x->b_pos);
    x->b_seq = malloc(nb * sizeof *x->b_seq);
    x->b_want = malloc(nb);
    x->b_ad = malloc(nb * sizeof *x->b_ad);
    x->row_seq = malloc(nl * sizeof *x->row_seq);
    x->row_pos = malloc(nl * sizeof *x->row_pos);
    x->logits = malloc(nl * (size_t)x->vocab * sizeof *x->logits);
    x->prefixes = calloc((size_t)(x->p.prefix_slots ? x->p.prefix_slots : 1), sizeof *x->prefixes);
    for (int k = 0; x->prefixes && k < x->p.prefix_slots; k++) x->prefixes[k].slot = p.max_seqs + k;
    if (!x->prefixes || !x->active || !x->b_tok || !x->b_pos || !x->b_seq || !x->b_want || !x->b_ad || !x->row_seq || !x->row_pos || !x->logits) {
        *err = t2_set_error(T2_ERR_NOMEM, "executor: out of memory for batches of %d rows", x->p.n_batch);
        goto fail;
    }
    x->t_start = t2x_now();
    if (pthread_create(&x->thread, NULL, loop, x) != 0) {
        *err = t2_set_error(T2_ERR_INTERNAL, "executor: cannot start its thread");
        goto fail;
    }
    x->thread_started = 1;
    *err = T2_OK;
    return x;
fail:
    t2x_free(x);
    return NULL;
}

void t2x_free(t2x *x) {
    if (!x) return;
    if (x->thread_started) {
        pthread_mutex_lock(&x->mu);
        x->stopping = 1;
        pthread_cond_broadcast(&x->cv);
        pthread_mutex_unlock(&x->mu);
        pthread_join(x->thread, NULL);
    }
    t2_ctx_free(x->ctx);
    t2_svd_free(x->svd);
    t2_chat_template_free(x->tmpl);
    t2_tokenizer_free(x->tok);
    t2_model_free(x->model);
    free(x->active);
    free(x->b_tok);
    free(x->b_pos);
    free(x->b_seq);
    free(x->b_want);
    free(x->b_ad);
    free(x->row_seq);
    free(x->row_pos);
    free(x->logits);
    for (int k = 0; x->prefixes && k < x->p.prefix_slots; k++) free(x->prefixes[k].tokens);
    free(x->prefixes);
    pthread_mutex_destroy(&x->mu);
    pthread_cond_destroy(&x->cv);
    free(x);
}

t2_model *t2x_model(t2x *x) { return x->model; }
const t2_svd *t2x_svd(t2x *x) { return x->svd; }
const t2_tokenizer *t2x_tokenizer(t2x *x) { return x->tok; }
const t2_chat_template *t2x_template(t2x *x) { return x->tmpl; }
int t2x_n_ctx(const t2x *x) { return x->n_ctx; }

void t2x_get_stats(t2x *x, t2x_stats *st) {
    pthread_mutex_lock(&x->mu);
    *st = x->pub;
    st->pending = x->n_pending;
    st->uptime_seconds = t2x_now() - x->t_start;
    pthread_mutex_unlock(&x->mu);
}
