/* The host API: what plugins (and the daemon's own request paths) call to generate, score, train, read
 * datasets and grade. Everything that touches the engine goes through the executor, so plugin calls
 * from many threads become rows of the same batches or work items between them. */
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <t2/error.h>
#include <t2/train.h>

#include "tasks.h"
#include "t2d.h"

/* ---------------- random numbers: the engine's xoshiro256** per call context ---------------- */

static uint64_t h_rand_u64(t2_host *h) { return t2_rng_u64(&h->rng); }
static double h_rand_uniform(t2_host *h) { return t2_rng_uniform(&h->rng); }
static double h_rand_normal(t2_host *h) { return t2_rng_normal(&h->rng); }

void t2d_host_init(t2_host *h, t2d *d, const char *tenant, int64_t job, uint64_t seed, atomic_int *cancel) {
    memset(h, 0, sizeof *h);
    h->d = d;
    h->tenant = tenant;
    h->job = job;
    h->cancel = cancel;
    t2_rng_seed(&h->rng, seed);
    h->eta_t0 = t2x_now();
    h->eta_step0 = -1;
}

/* ---------------- basics ---------------- */

static void h_log(t2_host *h, t2_log_level level, const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (h && level >= T2_LOG_WARN) {   /* kept (cut to fit) as the reason a failing call gives */
        size_t n = strlen(msg) < sizeof h->last_error - 1 ? strlen(msg) : sizeof h->last_error - 1;
        memcpy(h->last_error, msg, n);
        h->last_error[n] = 0;
    }
    if (h && h->job) {
        t2d_log(level, "tenant=%s job=%lld plugin: %s", h->tenant, (long long)h->job, msg);
        if (level >= T2_LOG_INFO) t2d_store_job_log(h->d->store, h->job, msg);
    } else {
        t2d_log(level, "tenant=%s plugin: %s", h ? h->tenant : "-", msg);
    }
}

static void h_free(void *p) { free(p); }

const char *t2d_host_error(const t2_host *h, t2_status st) {
    const char *e = t2_last_error();
    if (e && *e) return e;
    if (h && h->last_error[0]) return h->last_error;
    return t2_strerror(st);
}

static int h_cancelled(t2_host *h) {
    if (atomic_load(&h->d->draining)) return 1;
    if (h->cancel && atomic_load(h->cancel)) return 1;
    if (h->job && t2d_store_job_cancel_requested(h->d->store, h->job)) {
        if (h->cancel) atomic_store(h->cancel, 1);
        return 1;
    }
    return 0;
}

static t2_status h_kv_put(t2_host *h, const char *key, const void *value, size_t len) {
    t2_status st = t2d_store_kv_put(h->d->store, h->tenant, key, value, len);
    if (st != T2_OK) t2_set_error(st, "%s", t2d_store_errmsg());
    return st;
}

static t2_status h_kv_get(t2_host *h, const char *key, void **value, size_t *len) {
    return t2d_store_kv_get(h->d->store, h->tenant, key, value, len);
}

/* ---------------- experts ---------------- */

t2_hexpert *t2d_hexpert_wrap(t2_expert *e, const char *name) {
    t2_hexpert *he = calloc(1, sizeof *he);
    if (!he) {
        t2_expert_free(e);
        return NULL;
    }
    he->e = e;
    snprintf(he->name, sizeof he->name, "%s", name ? name : "");
    return he;
}

static t2_status h_experts_json(t2_host *h, char **json) {
    t2d_expert *ex = NULL;
    size_t n = 0;
    t2_status st = t2d_store_expert_list(h->d->store, h->tenant, 1, &ex, &n);
    if (st != T2_OK) return t2_set_error(st, "%s", t2d_store_errmsg());
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++) {
        json_t *meta = json_loads(ex[i].meta ? ex[i].meta : "", 0, NULL);
        const char *kind = json_string_value(json_object_get(meta, "kind"));
        json_array_append_new(arr, json_pack("{s:s, s:s, s:s, s:b, s:s}", "name", ex[i].name, "label", ex[i].label, "owner",
                                             ex[i].owner, "published", ex[i].published, "kind", kind ? kind : "svf"));
        json_decref(meta);
    }
    t2d_experts_free(ex, n);
    *json = json_dumps(arr, JSON_COMPACT);
    json_decref(arr);
    return *json ? T2_OK : t2_set_error(T2_ERR_NOMEM, "experts: out of memory");
}

static t2_status h_expert_open(t2_host *h, const char *name, t2_hexpert **out) {
    char err[512];
    t2_expert *e = NULL;
    t2_lora *lora = NULL;
    t2_status st = t2d_expert_open(h->d, h->tenant, name, &e, &lora, err, sizeof err);
    if (st != T2_OK) return t2_set_error(st, "%s", err);
    if (lora) {
        t2_hexpert *he = calloc(1, sizeof *he);
        if (!he) {
            t2_lora_free(lora);
            return t2_set_error(T2_ERR_NOMEM, "out of memory");
        }
        he->lora = lora;
        snprintf(he->name, sizeof he->name, "%s", name);
        *out = he;
        return T2_OK;
    }
    return (*out = t2d_hexpert_wrap(e, name)) ? T2_OK : t2_set_error(T2_ERR_NOMEM, "out of memory");
}

static t2_status h_expert_new(t2_host *h, const char *label, t2_hexpert **out) {
    t2_status st;
    t2_expert *e = t2_expert_new(t2x_svd(h->d->x), label ? label : "", &st);
    if (!e) return st;
    return (*out = t2d_hexpert_wrap(e, "")) ? T2_OK : t2_set_error(T2_ERR_NOMEM, "out of memory");
}

static t2_status h_expert_mix(t2_host *h, const t2_hexpert *const *experts, const float *alpha, int k, int per_matrix,
                              t2_hexpert **out) {
    (void)h;
    if (k < 1 || k > 64 || !experts || !alpha) return t2_set_error(T2_ERR_INVALID_ARG, "expert_mix: need 1..64 experts and their weights");
    const t2_expert *es[64];
    char name[160];
    size_t o = (size_t)snprintf(name, sizeof name, "mix(");
    for (int i = 0; i < k; i++) {
        if (!experts[i]) return t2_set_error(T2_ERR_INVALID_ARG, "expert_mix: expert %d is NULL", i);
        if (!experts[i]->e) return t2_set_error(T2_ERR_INVALID_ARG, "expert_mix: %s is a LoRA expert; LoRA experts are not mixed", experts[i]->name);
        es[i] = experts[i]->e;
        if (o < sizeof name)
            o += (size_t)snprintf(name + o, sizeof name - o, "%s%s:%.3g", i ? "," : "", experts[i]->name[0] ? experts[i]->name : "?",
                                  per_matrix ? NAN : alpha[i]);
    }
    if (o < sizeof name) snprintf(name + o, sizeof name - o, ")");
    t2_status st;
    t2_expert *m = t2_expert_mix(es, alpha, k, per_matrix, &st);
    if (!m) return st;
    return (*out = t2d_hexpert_wrap(m, name)) ? T2_OK : t2_set_error(T2_ERR_NOMEM, "out of memory");
}

/* A policy's expert view lives inside the policy (marked by a name no expert can have); expert_free on
 * it is a plugin mistake the host ignores. */
static int is_policy_view(const t2_hexpert *e);

static void h_expert_free(t2_hexpert *e) {
    if (!e || is_policy_view(e)) return;
    t2_expert_free(e->e);
    t2_lora_free(e->lora);
    free(e);
}

static int h_n_matrices(t2_host *h) { return t2_svd_count(t2x_svd(h->d->x)); }

static int64_t h_expert_n_params(const t2_hexpert *e) {
    if (e->lora) return (int64_t)t2_lora_n_params(e->lora);
    int64_t n = 0;
    for (int i = 0; i < t2_expert_count(e->e); i++) n += t2_expert_len(e->e, i);
    return n;
}

/* The expert's z, all matrices concatenated: experts keep one array per matrix, so the host keeps them
 * contiguous by construction (t2_expert_z of matrix 0 is the start: see expert.c's single allocation). */
static float *h_expert_z(t2_hexpert *e) { return e->e && t2_expert_count(e->e) ? t2_expert_z(e->e, 0) : NULL; }

static t2_status h_expert_save(t2_host *h, const t2_hexpert *e, const char *name, const char *label, const char *meta_json) {
    char err[512];
    t2_status st = t2d_expert_store(h->d, h->tenant, name, label, e->e, e->lora, meta_json, err, sizeof err);
    if (st != T2_OK) return t2_set_error(st, "%s", err);
    return T2_OK;
}

/* ---------------- generation ---------------- */

typedef struct gen_group {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int news;
} gen_group;

typedef struct gen_run {
    gen_group *g;
    t2x_seq *seq;
    t2_adapter *adapter;
    atomic_int n_tokens;
    int seen, streamed_bytes, stopped_by_text;
} gen_run;

static int on_token(void *user, int32_t token, float lp) {
    (void)token;
    (void)lp;
    gen_run *r = user;
    atomic_fetch_add(&r->n_tokens, 1);
    pthread_mutex_lock(&r->g->mu);
    r->g->news = 1;
    pthread_cond_signal(&r->g->cv);
    pthread_mutex_unlock(&r->g->mu);
    return 0;
}

void t2d_gen_clear(t2d_gen *g) {
    if (!g) return;
    free(g->text);
    free(g->ids);
    g->text = NULL;
    g->ids = NULL;
}

/* Prompt ids of a generation: chat-templated or raw. */
static t2_status encode_prompt(t2d *d, const t2d_gen *g, int32_t **ids, size_t *n) {
    if (!g->chat) return t2_tokenizer_encode(t2x_tokenizer(d->x), g->prompt, strlen(g->prompt), 1, ids, n);
    t2_chat_message two[2];
    const t2_chat_message *msgs = g->messages;
    size_t k = (size_t)g->n_messages;
    if (!msgs) {
        k = 0;
        if (g->system && *g->system) two[k++] = (t2_chat_message){.role = "system", .content = g->system};
        two[k++] = (t2_chat_message){.role = "user", .content = g->prompt ? g->prompt : ""};
        msgs = two;
    }
    return t2_chat_encode(t2x_template(d->x), t2x_tokenizer(d->x), msgs, k, 1, ids, n);
}

/* The identity of the weights a prefix ran under, for the executor's prefix cache: 0 for the base
 * model, else a hash of the expert's z (FNV-1a over its bytes; experts are small). */
static uint64_t fnv(uint64_t h, const void *data, size_t n) {
    const unsigned char *b = data;
    for (size_t k = 0; k < n; k++) h = (h ^ b[k]) * 1099511628211ull;
    return h;
}

static uint64_t weights_key(const t2_expert *e, const t2_lora *lora) {
    uint64_t h = 1469598103934665603ull;
    if (lora) return fnv(h, t2_lora_paramsc(lora), t2_lora_n_params(lora) * sizeof(float)) | 1;
    if (!e) return 0;
    for (int i = 0; i < t2_expert_count(e); i++) h = fnv(h, t2_expert_zc(e, i), (size_t)t2_expert_len(e, i) * sizeof(float));
    return h | 1;
}

/* The executor's fairness group of a tenant: a hash of its name. */
static uint64_t tenant_group(const char *tenant) {
    uint64_t h = 1469598103934665603ull;
    for (const char *p = tenant ? tenant : ""; *p; p++) h = (h ^ (unsigned char)*p) * 1099511628211ull;
    return h;
}

/* Tokens of the system turn alone (chat, cache_system): the reusable prefix of the prompt ids, or 0. */
static int system_prefix(t2d *d, const t2d_gen *g, const int32_t *ids, size_t n) {
    if (!g->chat || !g->cache_system || g->messages || !g->system || !*g->system) return 0;
    t2_chat_message sys = {.role = "system", .content = g->system};
    int32_t *p = NULL;
    size_t np = 0;
    if (t2_chat_encode(t2x_template(d->x), t2x_tokenizer(d->x), &sys, 1, 0, &p, &np) != T2_OK) return 0;
    int ok = np > 0 && np < n && !memcmp(p, ids, np * sizeof *p);
    free(p);
    return ok ? (int)np : 0;
}

/* The text of the tokens generated so far, special tokens dropped, cut at the first stop string. *hit is
 * set when a stop string was found. Caller frees. */
static char *completion_text(t2d *d, const t2d_gen *g, const int32_t *toks, int n, int *hit) {
    char *text = NULL;
    size_t len = 0;
    *hit = 0;
    if (t2_tokenizer_decode(t2x_tokenizer(d->x), toks, (size_t)n, T2_DECODE_SKIP_SPECIAL | T2_DECODE_NO_CLEANUP, &text, &len) != T2_OK)
        return strdup("");
    for (int i = 0; i < g->n_stop; i++) {
        char *at = *g->stop[i] ? strstr(text, g->stop[i]) : NULL;
        if (at) {
            *at = 0;
            *hit = 1;
        }
    }
    return text;
}

/* Stream what is safe to show of gens' text: hold back a possibly incomplete UTF-8 character (decoded as
 * U+FFFD at the end) and anything that could still become a stop string. */
static void stream_more(t2d *d, t2d_gen *g, gen_run *r, int final) {
    int n;
    const int32_t *toks = t2x_seq_tokens(r->seq, &n);
    int hit;
    char *text = completion_text(d, g, toks, n, &hit);
    size_t len = strlen(text), safe = len;
    if (!final && !hit) {
        if (len >= 3 && !memcmp(text + len - 3, "\xEF\xBF\xBD", 3)) safe = len - 3;
        size_t hold = 0;
        for (int i = 0; i < g->n_stop; i++) {
            size_t sl = strlen(g->stop[i]);
            if (sl > hold + 1) hold = sl - 1;
        }
        safe = safe > hold ? safe - hold : 0;
    }
    if ((int)safe > r->streamed_bytes && g->on_text) {
        g->on_text(g->user, text + r->streamed_bytes, safe - (size_t)r->streamed_bytes, n);
        r->streamed_bytes = (int)safe;
    }
    if (hit && !r->stopped_by_text) {
        r->stopped_by_text = 1;
        t2x_cancel(r->seq);
    }
    free(text);
}

t2_status t2d_generate(t2d *d, t2d_gen *gens, int n, char *err, size_t cap) {
    if (n <= 0) return T2_OK;
    gen_group grp = {.news = 0};
    pthread_mutex_init(&grp.mu, NULL);
    pthread_cond_init(&grp.cv, NULL);
    gen_run *runs = calloc((size_t)n, sizeof *runs);
    if (!runs) {
        snprintf(err, cap, "out of memory");
        return T2_ERR_NOMEM;
    }
    const t2_model_config *cfg = t2_model_get_config(t2x_model(d->x));
    int32_t stop_ids[T2_MAX_EOS + 1];
    int n_stop_ids = 0;
    for (int i = 0; i < cfg->n_eos; i++) stop_ids[n_stop_ids++] = cfg->eos_token_ids[i];
    int32_t eot = t2_chat_template_stop_id(t2x_template(d->x));
    if (eot >= 0) stop_ids[n_stop_ids++] = eot;

    t2_status st = T2_OK;
    int submitted = 0;
    for (int i = 0; i < n; i++) {
        t2d_gen *g = &gens[i];
        gen_run *r = &runs[i];
        r->g = &grp;
        atomic_init(&r->n_tokens, 0);
        int32_t *ids = NULL;
        size_t nid = 0;
        if ((st = encode_prompt(d, g, &ids, &nid)) != T2_OK) {
            snprintf(err, cap, "cannot tokenize the prompt: %s", t2_last_error());
            break;
        }
        if (nid == 0) {
            free(ids);
            st = T2_ERR_INVALID_ARG;
            snprintf(err, cap, "the prompt is empty");
            break;
        }
        g->ids = ids;
        g->n_prompt = g->n_ids = (int)nid;
        if (g->lora) r->adapter = t2_adapter_new_lora(g->lora, &st);
        else if (g->expert) r->adapter = t2_adapter_new(t2x_svd(d->x), g->expert, T2_APPLY_FACTORED, &st);
        if ((g->lora || g->expert) && !r->adapter) {
            snprintf(err, cap, "expert: %s", t2_last_error());
            break;
        }
        int maxt = g->max_tokens > 0 && g->max_tokens < d->cfg.max_tokens ? g->max_tokens : d->cfg.max_tokens;
        t2x_seq_params sp = {.prompt = ids, .n_prompt = (int)nid, .adapter = r->adapter, .sampling = g->sampling,
                             .max_tokens = maxt, .stop_ids = stop_ids, .n_stop_ids = n_stop_ids, .on_token = on_token, .user = r,
                             .n_prefix = system_prefix(d, g, ids, nid), .prefix_key = weights_key(g->expert, g->lora),
                             .group = tenant_group(g->tenant)};
        if (!(r->seq = t2x_seq_new(&sp, &st))) {
            snprintf(err, cap, "%s", t2_last_error());
            break;
        }
        if ((st = t2x_submit(d->x, r->seq)) != T2_OK) {
            snprintf(err, cap, "%s", t2_last_error());
            t2x_wait(r->seq);
            submitted++;
            break;
        }
        submitted++;
    }
    /* Wait, streaming and checking stop strings and cancellation as tokens arrive. */
    for (;;) {
        int live = 0;
        for (int i = 0; i < submitted; i++) {
            t2d_gen *g = &gens[i];
            gen_run *r = &runs[i];
            if (g->cancel && atomic_load(g->cancel)) t2x_cancel(r->seq);
            int nt = atomic_load(&r->n_tokens);
            if (nt != r->seen && (g->on_text || g->n_stop)) {
                r->seen = nt;
                stream_more(d, g, r, 0);
            }
        }
        for (int i = 0; i < submitted; i++) live += !t2x_seq_done(runs[i].seq);
        if (!live) break;
        pthread_mutex_lock(&grp.mu);
        if (!grp.news) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_nsec += 50 * 1000 * 1000;
            if (ts.tv_nsec >= 1000000000) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000;
            }
            pthread_cond_timedwait(&grp.cv, &grp.mu, &ts);
        }
        grp.news = 0;
        pthread_mutex_unlock(&grp.mu);
    }
    for (int i = 0; i < submitted; i++) {
        t2d_gen *g = &gens[i];
        gen_run *r = &runs[i];
        t2_status s2 = t2x_wait(r->seq);
        if (s2 != T2_OK && st == T2_OK) {
            st = s2;
            snprintf(err, cap, "%s", t2_last_error());
        }
        int nt;
        const int32_t *toks = t2x_seq_tokens(r->seq, &nt);
        if (g->on_text) stream_more(d, g, r, 1);
        int hit;
        g->text = completion_text(d, g, toks, nt, &hit);
        int32_t *all = realloc(g->ids, (size_t)(g->n_prompt + nt) * sizeof *all);
        if (all) {
            memcpy(all + g->n_prompt, toks, (size_t)nt * sizeof *all);
            g->ids = all;
            g->n_ids = g->n_prompt + nt;
        }
        g->n_tokens = nt;
        g->logprob = t2x_seq_logprob(r->seq);
        g->seconds = t2x_seq_seconds(r->seq);
        g->queued = t2x_seq_queued(r->seq);
        static const char *why[] = {"length", "eos", "stop", "context", "cancelled"};
        g->stop_reason = hit || r->stopped_by_text ? "stop" : why[t2x_seq_stop(r->seq)];
        if (g->cancel && atomic_load(g->cancel)) g->stop_reason = "cancelled";
    }
    for (int i = 0; i < n; i++) {
        t2x_seq_free(runs[i].seq);
        t2_adapter_free(runs[i].adapter);
    }
    free(runs);
    pthread_mutex_destroy(&grp.mu);
    pthread_cond_destroy(&grp.cv);
    return st;
}

/* Sampling settings of the plugin API → the engine's; seed 0 draws one from the caller's stream. */
static t2_sampler_params sampling_of(t2_host *h, const t2_gen_params *p) {
    t2_sampler_params sp = t2_sampler_default_params();
    if (!p) return sp;
    sp.temperature = p->temperature;
    sp.top_p = p->top_p > 0 && p->top_p <= 1 ? p->top_p : 1.0f;
    sp.top_k = p->top_k > 0 ? p->top_k : 0;
    sp.seed = p->seed ? p->seed : h_rand_u64(h);
    return sp;
}

static t2_status h_generate(t2_host *h, const char *const *prompts, const t2_hexpert *const *experts, int n,
                            const t2_gen_params *p, t2_gen_result *out) {
    if (n < 0 || (n > 0 && (!prompts || !out))) return t2_set_error(T2_ERR_INVALID_ARG, "generate: need prompts and results");
    if (n == 0) return T2_OK;
    t2d_gen *gens = calloc((size_t)n, sizeof *gens);
    if (!gens) return t2_set_error(T2_ERR_NOMEM, "generate: out of memory");
    for (int i = 0; i < n; i++) {
        if (!prompts[i]) {
            free(gens);
            return t2_set_error(T2_ERR_INVALID_ARG, "generate: prompt %d is NULL", i);
        }
        gens[i] = (t2d_gen){.prompt = prompts[i], .chat = p && p->chat, .system = p ? p->system : NULL,
                            .expert = experts && experts[i] ? experts[i]->e : NULL,
                            .lora = experts && experts[i] ? experts[i]->lora : NULL, .sampling = sampling_of(h, p),
                            .max_tokens = p ? p->max_tokens : 0, .stop = p ? p->stop : NULL, .n_stop = p ? p->n_stop : 0,
                            .cancel = h->cancel, .cache_system = p && p->cache_system, .tenant = h->tenant};
    }
    char err[512] = "";
    t2_status st = t2d_generate(h->d, gens, n, err, sizeof err);
    for (int i = 0; i < n; i++) {
        static const char *names[] = {"length", "eos", "stop", "context"};
        int stop = 0;
        for (int k = 0; k < 4; k++)
            if (gens[i].stop_reason && !strcmp(gens[i].stop_reason, names[k])) stop = k;
        out[i] = (t2_gen_result){.text = gens[i].text, .ids = gens[i].ids, .n_ids = gens[i].n_ids, .n_prompt = gens[i].n_prompt,
                                 .logprob = gens[i].logprob, .stop = stop, .seconds = gens[i].seconds};
        if (st != T2_OK) {
            t2d_gen_clear(&gens[i]);
            out[i].text = NULL;
            out[i].ids = NULL;
        }
    }
    free(gens);
    if (st != T2_OK) return t2_set_error(st, "generate: %s", err);
    return T2_OK;
}

static void h_gen_result_clear(t2_gen_result *r) {
    if (!r) return;
    free(r->text);
    free(r->ids);
    memset(r, 0, sizeof *r);
}

/* Prompt ids (chat or raw) followed by the completion's ids; *ids malloc'd. */
static t2_status encode_pair(t2d *d, const char *prompt, const char *system, int chat, const char *completion, int32_t **ids,
                             size_t *n_ids, size_t *n_prompt) {
    t2d_gen g = {.prompt = prompt, .chat = chat, .system = system};
    int32_t *pids = NULL, *cids = NULL;
    size_t np = 0, nc = 0;
    t2_status st = encode_prompt(d, &g, &pids, &np);
    if (st == T2_OK && completion && *completion)
        st = t2_tokenizer_encode(t2x_tokenizer(d->x), completion, strlen(completion), 0, &cids, &nc);
    int32_t *all = NULL;
    if (st == T2_OK && !(all = malloc((np + nc + 1) * sizeof *all))) st = t2_set_error(T2_ERR_NOMEM, "encode: out of memory");
    if (st == T2_OK) {
        if (np) memcpy(all, pids, np * sizeof *all);
        if (nc) memcpy(all + np, cids, nc * sizeof *all);
        *ids = all;
        *n_ids = np + nc;
        *n_prompt = np;
    }
    free(pids);
    free(cids);
    return st;
}

static t2_status h_encode(t2_host *h, const char *prompt, const char *system, int chat, const char *completion, int32_t **ids,
                          int *n_ids, int *n_prompt) {
    if (!prompt || !ids || !n_ids || !n_prompt) return t2_set_error(T2_ERR_INVALID_ARG, "encode: need a prompt and outputs");
    size_t n = 0, np = 0;
    t2_status st = encode_pair(h->d, prompt, system, chat, completion, ids, &n, &np);
    if (st == T2_OK) {
        *n_ids = (int)n;
        *n_prompt = (int)np;
    }
    return st;
}

static t2_status h_score(t2_host *h, const char *prompt, const char *completion, const t2_hexpert *e, int chat,
                         const char *system, double *logprob, int *n_tokens) {
    if (!prompt || !completion || !logprob) return t2_set_error(T2_ERR_INVALID_ARG, "score: need a prompt, a completion and an output");
    t2d *d = h->d;
    int32_t *all = NULL;
    size_t n = 0, np = 0;
    t2_status st = encode_pair(d, prompt, system, chat, completion, &all, &n, &np);
    if (st == T2_OK && (np == 0 || n == np)) st = t2_set_error(T2_ERR_INVALID_ARG, "score: the prompt and the completion must not be empty");
    t2_adapter *ad = NULL;
    if (st == T2_OK && e) ad = e->lora ? t2_adapter_new_lora(e->lora, &st) : t2_adapter_new(t2x_svd(d->x), e->e, T2_APPLY_FACTORED, &st);
    t2x_seq *s = NULL;
    if (st == T2_OK) {
        t2x_seq_params sp = {.prompt = all, .n_prompt = (int)n, .adapter = ad, .score_from = (int)np};
        if ((s = t2x_seq_new(&sp, &st))) {
            t2x_submit(d->x, s);
            st = t2x_wait(s);
            *logprob = t2x_seq_logprob(s);
            if (n_tokens) *n_tokens = (int)(n - np);
        }
    }
    t2x_seq_free(s);
    t2_adapter_free(ad);
    free(all);
    return st;
}

/* ---------------- datasets and graders ---------------- */

const char *t2d_data_dir(t2d *d) {
    if (*d->cfg.data_dir) return d->cfg.data_dir;
    const char *env = getenv("T2_DATA_DIR");
    return env ? env : "";
}

static t2_status h_dataset_open(t2_host *h, const char *spec, const char *split, t2_dataset **out) {
    return t2_dataset_open(spec, split, t2d_data_dir(h->d), out);
}

static t2_status h_grade(t2_host *h, const char *grader, const t2_task *task, const char *output, t2_verdict *v) {
    if (!task || !output || !v) return t2_set_error(T2_ERR_INVALID_ARG, "grade: need a task, an output and a verdict");
    const char *name = grader && *grader ? grader : task->grader;
    void *state = NULL;
    const t2_plugin *pl = t2_plugins_find(h->d->plugins, T2_PLUGIN_GRADER, name, &state);
    if (!pl) return t2_set_error(T2_ERR_NOT_FOUND, "no grader plugin \"%s\" is loaded", name);
    memset(v, 0, sizeof *v);
    const t2_grader_ops *ops = pl->ops;
    t2_status st = ops->grade(state, task, output, v);
    if (st != T2_OK) return t2_set_error(st, "grader %s failed on task %s: %s", name, task->id, v->detail);
    return T2_OK;
}

/* ---------------- training primitives ---------------- */

struct t2_policy {
    t2_hexpert view;             /* first: the policy's expert as plugins see it (borrowed) */
    t2_svf_policy *pol;          /* SVF: z = max_mult·σ(p) ... */
    t2_lora *lora;               /* ... or LoRA: A and B trained directly */
    t2_adam *adam;
    t2_reinforce_params rp;
};

/* The policy's trainable parameters and their count. */
static size_t policy_size(const t2_policy *p) { return p->lora ? t2_lora_n_params(p->lora) : t2_svf_policy_size(p->pol); }

static void policy_settings(t2_policy *p, const t2_reinforce_settings *s) {
    p->rp = t2_reinforce_default_params();
    if (s->lr > 0) p->rp.adam.lr = s->lr;
    p->rp.adam.clip = s->clip >= 0 ? s->clip : p->rp.adam.clip;
    p->rp.kl_coef = s->kl_coef;
    p->rp.normalize = s->normalize;
}

static int is_policy_view(const t2_hexpert *e) { return !strcmp(e->name, "\x01policy"); }

static t2_status h_policy_new(t2_host *h, const t2_hexpert *init, const t2_reinforce_settings *s, t2_policy **out) {
    if (!s || !out) return t2_set_error(T2_ERR_INVALID_ARG, "policy_new: need settings");
    t2_policy *p = calloc(1, sizeof *p);
    if (!p) return t2_set_error(T2_ERR_NOMEM, "policy: out of memory");
    t2_status st;
    policy_settings(p, s);
    float max_mult = s->max_mult > 1 ? s->max_mult : 2.0f;
    const t2_svd *svd = t2x_svd(h->d->x);
    if (init && !init->e) {
        free(p);
        return t2_set_error(T2_ERR_INVALID_ARG, "policy_new: the initial expert must be an SVF expert");
    }
    if (!(p->pol = t2_svf_policy_new(svd, init ? init->e : NULL, max_mult, &st))) goto fail;
    if (!(p->adam = t2_adam_new(t2_svf_policy_size(p->pol), &p->rp.adam, &st))) goto fail;
    p->view.e = (t2_expert *)t2_svf_policy_expert(p->pol);
    snprintf(p->view.name, sizeof p->view.name, "\x01policy");
    *out = p;
    return T2_OK;
fail:
    t2_svf_policy_free(p->pol);
    free(p);
    return st;
}

static t2_status h_policy_new_lora(t2_host *h, int rank, float alpha, const char *modules, const t2_reinforce_settings *s,
                                   t2_policy **out) {
    if (!s || !out) return t2_set_error(T2_ERR_INVALID_ARG, "policy_new_lora: need settings");
    t2_modules mods;
    t2_status st = t2_modules_parse(modules && *modules ? modules : "attn", &mods);
    if (st != T2_OK) return st;
    t2_policy *p = calloc(1, sizeof *p);
    if (!p) return t2_set_error(T2_ERR_NOMEM, "policy: out of memory");
    policy_settings(p, s);
    if (!(p->lora = t2_lora_new(t2x_model(h->d->x), mods, rank, alpha, h_rand_u64(h), &st)) ||
        !(p->adam = t2_adam_new(t2_lora_n_params(p->lora), &p->rp.adam, &st))) {
        t2_lora_free(p->lora);
        free(p);
        return st;
    }
    p->view.lora = p->lora;
    snprintf(p->view.name, sizeof p->view.name, "\x01policy");
    *out = p;
    return T2_OK;
}

static void h_policy_free(t2_policy *p) {
    if (!p) return;
    t2_svf_policy_free(p->pol);
    t2_lora_free(p->lora);
    t2_adam_free(p->adam);
    free(p);
}

static const t2_hexpert *h_policy_expert(t2_policy *p) { return &p->view; }

/* One sequence's log-probability gradient, run on the executor as its own work item. */
typedef struct grad_item {
    t2_grad_request rq;
    double lp, kl;
} grad_item;

static t2_status do_grad(void *user, t2_model *m, const t2_svd *svd) {
    (void)svd;
    grad_item *g = user;
    return t2_logprob_grad(m, &g->rq, &g->lp);
}

typedef struct update_item {
    t2_policy *p;
    float *dz;
    double gn;
} update_item;

static t2_status do_update(void *user, t2_model *m, const t2_svd *svd) {
    (void)m;
    (void)svd;
    update_item *u = user;
    if (u->p->lora) {   /* ascend: Adam descends −∂/∂θ */
        size_t n = t2_lora_n_params(u->p->lora);
        for (size_t i = 0; i < n; i++) u->dz[i] = -u->dz[i];
        u->gn = t2_adam_step(u->p->adam, t2_lora_params(u->p->lora), u->dz);
    } else {
        u->gn = t2_svf_policy_update(u->p->pol, u->p->adam, u->dz);
    }
    return T2_OK;
}

/* t2_reinforce_step, with every rollout's gradient a separate work item, so the executor serves
 * inference batches between them instead of stalling for the whole step. */
static t2_status h_reinforce_step(t2_host *h, t2_policy *p, const t2_rollout_in *rs, int B, t2_step_stats *st) {
    if (!p || !rs || B < 1) return t2_set_error(T2_ERR_INVALID_ARG, "reinforce_step: need a policy and B >= 1 rollouts");
    size_t n = policy_size(p);
    t2_rollout *r = malloc((size_t)B * sizeof *r);
    float *adv = malloc((size_t)B * sizeof *adv), *dz = calloc(n ? n : 1, sizeof *dz);
    t2_status s = r && adv && dz ? T2_OK : t2_set_error(T2_ERR_NOMEM, "reinforce_step: out of memory");
    t2_adapter *ad = NULL;
    if (s == T2_OK && !p->lora) ad = t2_adapter_new(t2x_svd(h->d->x), t2_svf_policy_expert(p->pol), T2_APPLY_FACTORED, &s);
    double mean = 0, lp_sum = 0, kl_sum = 0;
    long tokens = 0;
    if (s == T2_OK) {
        for (int i = 0; i < B; i++) r[i] = (t2_rollout){.ids = rs[i].ids, .n = rs[i].n_ids, .k0 = rs[i].n_prompt, .reward = rs[i].reward};
        mean = t2_reinforce_advantages(r, B, &p->rp, adv);
    }
    for (int i = 0; s == T2_OK && i < B; i++) {
        grad_item g = {.rq = {.ids = r[i].ids, .n = r[i].n, .k0 = r[i].k0, .weight = adv[i] / (float)B, .kl_coef = p->rp.kl_coef / (float)B}};
        if (p->lora) {
            g.rq.lora = p->lora;
            g.rq.dlora = dz;
        } else {
            g.rq.svd = t2x_svd(h->d->x);
            g.rq.adapter = ad;
            g.rq.dz = dz;
        }
        g.rq.kl = &g.kl;
        s = t2x_run(h->d->x, do_grad, &g);
        lp_sum += g.lp;
        kl_sum += g.kl;
        tokens += r[i].n - r[i].k0;
    }
    update_item u = {.p = p, .dz = dz};
    if (s == T2_OK) s = t2x_run(h->d->x, do_update, &u);
    if (s == T2_OK && st)
        *st = (t2_step_stats){mean, tokens ? lp_sum / (double)tokens : 0, tokens ? kl_sum / (double)tokens : 0, u.gn};
    t2_adapter_free(ad);
    free(r);
    free(adv);
    free(dz);
    return s;
}

/* Checkpoint blob: "T2PS" magic, version 1, n, adam t, then p, m, v as floats. */
typedef struct policy_blob_head {
    char magic[4];
    uint32_t version;
    uint64_t n;
    int64_t t;
} policy_blob_head;

static t2_status h_policy_state(t2_policy *p, void **blob, size_t *len) {
    size_t n = policy_size(p);
    size_t bytes = sizeof(policy_blob_head) + 3 * n * sizeof(float);
    char *b = malloc(bytes);
    if (!b) return t2_set_error(T2_ERR_NOMEM, "policy state: out of memory");
    long t;
    float *f = (float *)(b + sizeof(policy_blob_head));
    memcpy(f, p->lora ? t2_lora_paramsc(p->lora) : t2_svf_policy_params(p->pol), n * sizeof *f);
    t2_adam_get_state(p->adam, f + n, f + 2 * n, &t);
    policy_blob_head hd = {{'T', '2', 'P', p->lora ? 'L' : 'S'}, 1, n, t};
    memcpy(b, &hd, sizeof hd);
    *blob = b;
    *len = bytes;
    return T2_OK;
}

static t2_status h_policy_restore(t2_policy *p, const void *blob, size_t len) {
    size_t n = policy_size(p);
    policy_blob_head hd;
    if (!blob || len < sizeof hd) return t2_set_error(T2_ERR_FORMAT, "policy state: truncated (%zu bytes)", len);
    memcpy(&hd, blob, sizeof hd);
    if (memcmp(hd.magic, p->lora ? "T2PL" : "T2PS", 4)) return t2_set_error(T2_ERR_FORMAT, "policy state: bad magic (another kind of policy?)");
    if (hd.version != 1) return t2_set_error(T2_ERR_VERSION, "policy state: version %u, this build reads 1", hd.version);
    if (hd.n != n || len != sizeof hd + 3 * n * sizeof(float))
        return t2_set_error(T2_ERR_SHAPE, "policy state: %llu parameters, the model's experts have %zu", (unsigned long long)hd.n, n);
    const float *f = (const float *)((const char *)blob + sizeof hd);
    float *copy = malloc((3 * n + 1) * sizeof *copy);
    if (!copy) return t2_set_error(T2_ERR_NOMEM, "policy state: out of memory");
    memcpy(copy, f, 3 * n * sizeof *copy);   /* the blob may be unaligned */
    if (p->lora) memcpy(t2_lora_params(p->lora), copy, n * sizeof *copy);
    else t2_svf_policy_set_params(p->pol, copy);
    t2_adam_set_state(p->adam, copy + n, copy + 2 * n, (long)hd.t);
    free(copy);
    return T2_OK;
}

static t2_status h_logprob_grad(t2_host *h, const t2_hexpert *e, const int32_t *ids, int n_ids, int n_prompt, float weight,
                                float *dz, double *logprob) {
    if (!ids || n_prompt < 1 || n_prompt >= n_ids) return t2_set_error(T2_ERR_INVALID_ARG, "logprob_grad: need 1 <= n_prompt < n_ids");
    const t2_svd *svd = t2x_svd(h->d->x);
    t2_status st = T2_OK;
    if (e && e->lora) return t2_set_error(T2_ERR_UNSUPPORTED, "logprob_grad: z gradients need an SVF expert, not a LoRA");
    t2_adapter *ad = e ? t2_adapter_new(svd, e->e, T2_APPLY_FACTORED, &st) : NULL;
    if (st != T2_OK) return st;
    grad_item g = {.rq = {.ids = ids, .n = n_ids, .k0 = n_prompt, .weight = weight, .svd = svd, .adapter = ad, .dz = dz}};
    st = t2x_run(h->d->x, do_grad, &g);
    t2_adapter_free(ad);
    if (st == T2_OK && logprob) *logprob = g.lp;
    return st;
}

/* ---------------- jobs ---------------- */

static void h_progress(t2_host *h, const t2_progress *p) {
    if (!h->job || !p) return;
    double eta = 0, t = t2x_now();
    if (h->eta_step0 < 0) {
        h->eta_step0 = p->step;
        h->eta_t0 = t;
    } else if (p->total > 0 && p->step > h->eta_step0) {
        eta = (t - h->eta_t0) / (double)(p->step - h->eta_step0) * (double)(p->total - p->step);
    }
    t2d_progress pr = {.step = p->step, .total = p->total, .reward = p->reward, .accuracy = p->accuracy, .eta = eta,
                       .message = p->message};
    if (t2d_store_job_progress(h->d->store, h->job, &pr) != T2_OK)
        t2d_log(T2_LOG_WARN, "job=%lld progress not recorded: %s", (long long)h->job, t2d_store_errmsg());
    h->last_step = p->step;
}

static t2_status h_checkpoint_save(t2_host *h, const void *blob, size_t len) {
    if (!h->job) return t2_set_error(T2_ERR_INVALID_ARG, "checkpoint_save: not a job");
    t2_status st = t2d_store_checkpoint_save(h->d->store, h->job, h->last_step, blob, len);
    if (st != T2_OK) return t2_set_error(st, "checkpoint: %s", t2d_store_errmsg());
    return T2_OK;
}

/* ---------------- the table ---------------- */

static const t2_host_api API = {
    .abi_major = T2_ABI_MAJOR,
    .abi_minor = T2_ABI_MINOR,
    .struct_size = sizeof(t2_host_api),
    .log = h_log,
    .free = h_free,
    .rand_u64 = h_rand_u64,
    .rand_uniform = h_rand_uniform,
    .rand_normal = h_rand_normal,
    .cancelled = h_cancelled,
    .kv_put = h_kv_put,
    .kv_get = h_kv_get,
    .experts_json = h_experts_json,
    .expert_open = h_expert_open,
    .expert_new = h_expert_new,
    .expert_mix = h_expert_mix,
    .expert_free = h_expert_free,
    .n_matrices = h_n_matrices,
    .expert_n_params = h_expert_n_params,
    .expert_z = h_expert_z,
    .expert_save = h_expert_save,
    .generate = h_generate,
    .gen_result_clear = h_gen_result_clear,
    .score = h_score,
    .dataset_open = h_dataset_open,
    .dataset_size = t2_dataset_size,
    .dataset_task = t2_dataset_task,
    .dataset_close = t2_dataset_close,
    .grade = h_grade,
    .policy_new = h_policy_new,
    .policy_free = h_policy_free,
    .policy_expert = h_policy_expert,
    .reinforce_step = h_reinforce_step,
    .policy_state = h_policy_state,
    .policy_restore = h_policy_restore,
    .logprob_grad = h_logprob_grad,
    .progress = h_progress,
    .checkpoint_save = h_checkpoint_save,
    .encode = h_encode,
    .policy_new_lora = h_policy_new_lora,
};

const t2_host_api *t2d_host_api(void) { return &API; }
