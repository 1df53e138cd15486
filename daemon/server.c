/* The server: one I/O thread owns the ROUTER socket. It decodes and checks every request, answers the
 * quick ones itself (state lookups, job submission, expert management) and hands generation to a pool of
 * worker threads, which may block for as long as the answer takes. Workers never touch the ROUTER: they
 * push their replies over inproc to the I/O thread, which forwards them. A reply that cannot be
 * delivered (the client is gone: ROUTER_MANDATORY reports it) cancels the request, so an abandoned
 * generation stops using the engine.
 *
 * Job watch streams are served by the I/O thread from the store's event log (polled every 100 ms).
 * A malformed, truncated, oversized or unauthorised frame gets an error reply; nothing a client sends
 * stops the daemon serving the others. */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <t2/error.h>
#include <zmq.h>

#include "auth.h"
#include "t2d.h"
#include "wire.h"

#define VERSION_STRING "0.1.0"

extern volatile sig_atomic_t t2d_signal;   /* main.c: SIGTERM / SIGINT received */

typedef struct inflight {
    atomic_int refs;
    uint8_t ident[256];
    size_t ident_len;
    uint64_t id;
    atomic_int cancel;
    char tenant[129];
    T2__Request *req;
    double t_received;
    struct inflight *next;      /* the I/O thread's list of requests in flight */
    struct inflight *qnext;     /* the workers' queue */
} inflight;

typedef struct watcher {
    uint8_t ident[256];
    size_t ident_len;
    uint64_t id;
    int64_t job, last_seq;
    struct watcher *next;
} watcher;

typedef struct server {
    t2d *d;
    void *zctx, *router, *pull;
    t2d_auth *auth;
    pthread_t *workers;
    int n_workers;
    pthread_mutex_t qmu;
    pthread_cond_t qcv;
    inflight *q_head, *q_tail;
    int q_stop;
    inflight *live;             /* I/O thread only */
    int n_live;
    watcher *watchers;          /* I/O thread only */
    uint64_t requests, errors;
    double t_start;
} server;

static double wall_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void inflight_unref(inflight *f) {
    if (f && atomic_fetch_sub(&f->refs, 1) == 1) {
        t2w_request_free(f->req);
        free(f);
    }
}

/* ---------------- sending (I/O thread) ---------------- */

/* Send an encoded reply to a client. Returns 0, or -1 when the client is gone. */
static int send_raw(server *s, const uint8_t *ident, size_t ilen, const void *buf, size_t len) {
    if (zmq_send(s->router, ident, ilen, ZMQ_SNDMORE) < 0) return -1;
    if (zmq_send(s->router, "", 0, ZMQ_SNDMORE) < 0) return -1;
    return zmq_send(s->router, buf, len, 0) < 0 ? -1 : 0;
}

static void send_reply(server *s, const uint8_t *ident, size_t ilen, const T2__Reply *r) {
    size_t len;
    void *buf = t2w_reply_encode(r, &len);
    if (!buf) {
        buf = t2w_error_reply(r->id, T2__ERROR_CODE__ERROR_TOO_LARGE, "the reply would exceed the frame limit", &len);
        if (!buf) return;
    }
    send_raw(s, ident, ilen, buf, len);
    free(buf);
}

static void send_error(server *s, const uint8_t *ident, size_t ilen, uint64_t id, T2__ErrorCode code, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));
static void send_error(server *s, const uint8_t *ident, size_t ilen, uint64_t id, T2__ErrorCode code, const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    size_t len;
    void *buf = t2w_error_reply(id, code, msg, &len);
    s->errors++;
    if (buf) send_raw(s, ident, ilen, buf, len);
    free(buf);
}

static T2__ErrorCode code_of(t2_status st) {
    switch (st) {
    case T2_ERR_NOT_FOUND: return T2__ERROR_CODE__ERROR_NOT_FOUND;
    case T2_ERR_INVALID_ARG:
    case T2_ERR_FORMAT:
    case T2_ERR_SHAPE:
    case T2_ERR_RANGE:
    case T2_ERR_VERSION: return T2__ERROR_CODE__ERROR_BAD_REQUEST;
    case T2_ERR_FULL: return T2__ERROR_CODE__ERROR_QUOTA;
    default: return T2__ERROR_CODE__ERROR_INTERNAL;
    }
}

/* ---------------- jobs and experts as messages ---------------- */

static void fill_job(T2__Job *pj, const t2d_job *j) {
    t2__job__init(pj);
    pj->id = j->id;
    pj->tenant = j->tenant;
    pj->kind = j->kind;
    pj->state = (char *)t2d_job_state_name(j->state);
    pj->trainer = j->trainer;
    pj->grader = j->grader;
    pj->dataset = j->dataset;
    pj->expert = j->expert;
    pj->label = j->label;
    pj->settings = j->settings;
    pj->step = j->step;
    pj->total = j->total;
    pj->reward = j->reward;
    pj->accuracy = j->accuracy;
    pj->created = j->created;
    pj->started = j->started;
    pj->finished = j->finished;
    pj->error = j->error;
    pj->result = j->result;
    pj->eta_seconds = j->eta;
    pj->dispatch = j->dispatch;
    pj->split = j->split;
}

static void fill_event(T2__JobEvent *pe, const t2d_job_event *e) {
    t2__job_event__init(pe);
    pe->job = e->job;
    pe->time = e->time;
    pe->type = e->type;
    pe->step = e->step;
    pe->total = e->total;
    pe->reward = e->reward;
    pe->accuracy = e->accuracy;
    pe->message = e->message;
    pe->eta_seconds = e->eta;
    pe->state = (char *)t2d_job_state_name(e->state);
}

static void fill_expert(T2__Expert *pe, const t2d_expert *e) {
    t2__expert__init(pe);
    pe->name = e->name;
    pe->owner = e->owner;
    pe->label = e->label;
    pe->published = e->published;
    pe->n_params = e->n_params;
    pe->bytes = e->bytes;
    pe->created = e->created;
    pe->meta = e->meta;
}

/* The job of this tenant, or an error reply (another tenant's job is "not found", not "denied": its
 * existence is not revealed). */
static int own_job(server *s, const uint8_t *ident, size_t ilen, uint64_t rid, const char *tenant, int64_t id, t2d_job *j) {
    t2d_job_init(j);
    t2_status st = t2d_store_job_get(s->d->store, id, j);
    if (st == T2_OK && !strcmp(j->tenant, tenant)) return 1;
    if (st == T2_OK || st == T2_ERR_NOT_FOUND) send_error(s, ident, ilen, rid, T2__ERROR_CODE__ERROR_NOT_FOUND, "no job %lld", (long long)id);
    else send_error(s, ident, ilen, rid, T2__ERROR_CODE__ERROR_INTERNAL, "%s", t2d_store_errmsg());
    t2d_job_clear(j);
    return 0;
}

static char *mix_json(T2__MixPart **parts, size_t n) {
    if (!n) return strdup("");
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++) json_array_append_new(a, json_pack("{s:s, s:f}", "expert", parts[i]->expert, "alpha", (double)parts[i]->alpha));
    char *t = json_dumps(a, JSON_COMPACT);
    json_decref(a);
    return t;
}

static char *sampling_json(const T2__Sampling *sm) {
    if (!sm) return strdup("");
    json_t *o = json_pack("{s:i, s:f, s:f, s:i, s:I}", "max_tokens", (int)sm->max_tokens, "temperature", (double)sm->temperature, "top_p",
                          (double)sm->top_p, "top_k", (int)sm->top_k, "seed", (json_int_t)sm->seed);
    char *t = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return t;
}

static void job_submit(server *s, const uint8_t *ident, size_t ilen, const T2__Request *rq, const char *tenant) {
    t2d *d = s->d;
    const T2__JobSubmit *js = rq->job_submit;
    uint64_t rid = rq->id;
    if (atomic_load(&d->draining)) return send_error(s, ident, ilen, rid, T2__ERROR_CODE__ERROR_BUSY, "the daemon is shutting down");
    int train = !strcmp(js->kind, "train");
    if (!train && strcmp(js->kind, "eval"))
        return send_error(s, ident, ilen, rid, T2__ERROR_CODE__ERROR_BAD_REQUEST, "job_submit.kind = \"%s\": need train or eval", js->kind);
    if (!*js->dataset) return send_error(s, ident, ilen, rid, T2__ERROR_CODE__ERROR_BAD_REQUEST, "job_submit.dataset is empty");
    if (train) {
        if (!t2_plugins_find(d->plugins, T2_PLUGIN_TRAINER, js->trainer, NULL))
            return send_error(s, ident, ilen, rid, T2__ERROR_CODE__ERROR_NOT_FOUND, "no trainer plugin \"%s\" is loaded", js->trainer);
        if (!t2d_expert_name_ok(js->expert))
            return send_error(s, ident, ilen, rid, T2__ERROR_CODE__ERROR_BAD_REQUEST,
                              "job_submit.expert \"%s\": name the expert to train (1-128 of A-Z a-z 0-9 . _ -)", js->expert);
        t2d_expert ex = {0};
        if (t2d_store_expert_get(d->store, tenant, js->expert, &ex) == T2_OK && !strcmp(ex.owner, tenant)) {
            t2d_expert_clear(&ex);
            return send_error(s, ident, ilen, rid, T2__ERROR_CODE__ERROR_BAD_REQUEST, "you already have an expert \"%s\"", js->expert);
        }
        t2d_expert_clear(&ex);
    } else if (*js->dispatch && !t2_plugins_find(d->plugins, T2_PLUGIN_DISPATCH, js->dispatch, NULL)) {
        return send_error(s, ident, ilen, rid, T2__ERROR_CODE__ERROR_NOT_FOUND, "no dispatch plugin \"%s\" is loaded", js->dispatch);
    }
    if (*js->grader && !t2_plugins_find(d->plugins, T2_PLUGIN_GRADER, js->grader, NULL))
        return send_error(s, ident, ilen, rid, T2__ERROR_CODE__ERROR_NOT_FOUND, "no grader plugin \"%s\" is loaded", js->grader);
    if (*js->settings) {
        json_t *o = json_loads(js->settings, 0, NULL);
        int ok = json_is_object(o);
        json_decref(o);
        if (!ok) return send_error(s, ident, ilen, rid, T2__ERROR_CODE__ERROR_BAD_REQUEST, "job_submit.settings is not a JSON object");
    }
    t2d_tenant_usage u;
    if (t2d_store_tenant_usage(d->store, tenant, &u) != T2_OK)
        return send_error(s, ident, ilen, rid, T2__ERROR_CODE__ERROR_INTERNAL, "%s", t2d_store_errmsg());
    if (u.queued >= d->cfg.quota_queued_jobs)
        return send_error(s, ident, ilen, rid, T2__ERROR_CODE__ERROR_QUOTA, "quota: tenant %s already has %lld queued jobs (limit %d)", tenant,
                          (long long)u.queued, d->cfg.quota_queued_jobs);
    t2d_job j;
    t2d_job_init(&j);
    char *mix = mix_json(js->mix, js->n_mix), *samp = sampling_json(js->sampling);
    j.tenant = (char *)tenant;
    j.kind = js->kind;
    j.trainer = js->trainer;
    j.grader = js->grader;
    j.dataset = js->dataset;
    j.expert = js->expert;
    j.label = js->label;
    j.settings = js->settings;
    j.dispatch = js->dispatch;
    j.mix = mix;
    j.split = js->split;
    j.limit = js->limit;
    j.sampling = samp;
    j.priority = js->priority;
    int64_t id = 0;
    t2_status st = t2d_store_job_insert(d->store, &j, &id);
    free(mix);
    free(samp);
    if (st != T2_OK) return send_error(s, ident, ilen, rid, code_of(st), "%s", t2d_store_errmsg());
    t2d_log(T2_LOG_INFO, "tenant=%s job=%lld kind=%s trainer=%s dataset=%s queued", tenant, (long long)id, js->kind, js->trainer, js->dataset);
    t2d_jobs_kick(d->jobs);
    t2d_job got;
    if (!own_job(s, ident, ilen, rid, tenant, id, &got)) return;
    T2__Reply r;
    T2__Job pj;
    t2w_reply_init(&r, rid, 1);
    fill_job(&pj, &got);
    r.body_case = T2__REPLY__BODY_JOB;
    r.job = &pj;
    send_reply(s, ident, ilen, &r);
    t2d_job_clear(&got);
}

/* ---------------- experts ---------------- */

static void expert_import(server *s, const uint8_t *ident, size_t ilen, const T2__Request *rq, const char *tenant) {
    const T2__ExpertImport *ei = rq->expert_import;
    t2d *d = s->d;
    if (!t2d_expert_name_ok(ei->name))
        return send_error(s, ident, ilen, rq->id, T2__ERROR_CODE__ERROR_BAD_REQUEST, "expert_import.name \"%s\" is not a valid name", ei->name);
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s/.import-XXXXXX", d->experts_dir);
    int fd = mkstemp(tmp);
    if (fd < 0) return send_error(s, ident, ilen, rq->id, T2__ERROR_CODE__ERROR_INTERNAL, "cannot write a temporary file: %s", strerror(errno));
    size_t off = 0;
    while (off < ei->data.len) {
        ssize_t w = write(fd, ei->data.data + off, ei->data.len - off);
        if (w <= 0) break;
        off += (size_t)w;
    }
    close(fd);
    t2_status st = T2_ERR_IO;
    /* an SVF expert (any producer's z tensors), else a LoRA file made for this model */
    t2_expert *e = off == ei->data.len ? t2_expert_import(tmp, t2x_svd(d->x), &st) : NULL;
    char err[1024];
    if (!e) snprintf(err, sizeof err, "not an expert for this model: %s", st == T2_ERR_IO ? "cannot write it" : t2_last_error());
    t2_status lst = T2_ERR_IO;
    t2_lora *lora = !e && off == ei->data.len ? t2_lora_load(tmp, t2x_model(d->x), &lst) : NULL;
    unlink(tmp);
    if (!e && !lora) return send_error(s, ident, ilen, rq->id, T2__ERROR_CODE__ERROR_BAD_REQUEST, "%s", err);
    const char *label = *ei->label ? ei->label : e ? t2_expert_meta(e, "label") : t2_lora_meta(lora, "label");
    char labelbuf[129];
    snprintf(labelbuf, sizeof labelbuf, "%s", label ? label : "");
    st = t2d_expert_store(d, tenant, ei->name, labelbuf, e, lora, "{\"imported\": true}", err, sizeof err);
    t2_expert_free(e);
    t2_lora_free(lora);
    if (st != T2_OK) return send_error(s, ident, ilen, rq->id, code_of(st), "%s", err);
    T2__Reply r;
    T2__Ack ack = T2__ACK__INIT;
    ack.message = "imported";
    t2w_reply_init(&r, rq->id, 1);
    r.body_case = T2__REPLY__BODY_ACK;
    r.ack = &ack;
    send_reply(s, ident, ilen, &r);
}

static void expert_request(server *s, const uint8_t *ident, size_t ilen, const T2__Request *rq, const char *tenant) {
    t2d *d = s->d;
    T2__Reply r;
    t2w_reply_init(&r, rq->id, 1);
    t2_status st;
    switch (rq->body_case) {
    case T2__REQUEST__BODY_EXPERT_LIST: {
        t2d_expert *ex = NULL;
        size_t n = 0;
        if ((st = t2d_store_expert_list(d->store, tenant, rq->expert_list->all, &ex, &n)) != T2_OK)
            return send_error(s, ident, ilen, rq->id, code_of(st), "%s", t2d_store_errmsg());
        T2__Expert *pe = calloc(n ? n : 1, sizeof *pe);
        T2__Expert **pp = calloc(n ? n : 1, sizeof *pp);
        T2__ExpertListReply lr = T2__EXPERT_LIST_REPLY__INIT;
        if (pe && pp) {
            for (size_t i = 0; i < n; i++) {
                fill_expert(&pe[i], &ex[i]);
                pp[i] = &pe[i];
            }
            lr.n_experts = n;
            lr.experts = pp;
            r.body_case = T2__REPLY__BODY_EXPERTS;
            r.experts = &lr;
            send_reply(s, ident, ilen, &r);
        }
        free(pe);
        free(pp);
        t2d_experts_free(ex, n);
        return;
    }
    case T2__REQUEST__BODY_EXPERT_SHOW:
    case T2__REQUEST__BODY_EXPERT_EXPORT: {
        const char *name = rq->body_case == T2__REQUEST__BODY_EXPERT_SHOW ? rq->expert_show->name : rq->expert_export->name;
        t2d_expert ex = {0};
        if ((st = t2d_store_expert_get(d->store, tenant, name, &ex)) != T2_OK)
            return send_error(s, ident, ilen, rq->id, code_of(st), "no expert \"%s\" (yours or published)", name);
        if (rq->body_case == T2__REQUEST__BODY_EXPERT_SHOW) {
            T2__Expert pe;
            fill_expert(&pe, &ex);
            r.body_case = T2__REPLY__BODY_EXPERT;
            r.expert = &pe;
            send_reply(s, ident, ilen, &r);
        } else {
            FILE *f = fopen(ex.path, "rb");
            void *buf = NULL;
            long len = -1;
            if (f && fseek(f, 0, SEEK_END) == 0 && (len = ftell(f)) >= 0 && len < (long)T2W_MAX_FRAME - 4096 && fseek(f, 0, SEEK_SET) == 0 &&
                (buf = malloc((size_t)len + 1)) && fread(buf, 1, (size_t)len, f) == (size_t)len) {
                T2__ExpertData data = T2__EXPERT_DATA__INIT;
                data.name = ex.name;
                data.data.data = buf;
                data.data.len = (size_t)len;
                r.body_case = T2__REPLY__BODY_EXPERT_DATA;
                r.expert_data = &data;
                send_reply(s, ident, ilen, &r);
            } else {
                send_error(s, ident, ilen, rq->id, T2__ERROR_CODE__ERROR_INTERNAL, "cannot read the expert file of \"%s\"", name);
            }
            free(buf);
            if (f) fclose(f);
        }
        t2d_expert_clear(&ex);
        return;
    }
    case T2__REQUEST__BODY_EXPERT_DELETE: {
        char *path = NULL;
        if ((st = t2d_store_expert_delete(d->store, tenant, rq->expert_delete->name, &path)) != T2_OK)
            return send_error(s, ident, ilen, rq->id, code_of(st), "you have no expert \"%s\"", rq->expert_delete->name);
        if (path && unlink(path) != 0) t2d_log(T2_LOG_WARN, "expert file %s: %s", path, strerror(errno));
        free(path);
        t2d_log(T2_LOG_INFO, "tenant=%s expert=%s deleted", tenant, rq->expert_delete->name);
        break;
    }
    case T2__REQUEST__BODY_EXPERT_PUBLISH:
        if ((st = t2d_store_expert_publish(d->store, tenant, rq->expert_publish->name, rq->expert_publish->publish)) != T2_OK)
            return send_error(s, ident, ilen, rq->id, code_of(st), "you have no expert \"%s\"", rq->expert_publish->name);
        t2d_log(T2_LOG_INFO, "tenant=%s expert=%s published=%d", tenant, rq->expert_publish->name, rq->expert_publish->publish);
        break;
    default: return;
    }
    T2__Ack ack = T2__ACK__INIT;
    ack.message = "ok";
    r.body_case = T2__REPLY__BODY_ACK;
    r.ack = &ack;
    send_reply(s, ident, ilen, &r);
}

/* ---------------- job requests ---------------- */

static void send_events(server *s, watcher *w, int *finished) {
    t2d_job_event *ev = NULL;
    size_t n = 0;
    *finished = 0;
    if (t2d_store_job_events(s->d->store, w->job, w->last_seq, 200, &ev, &n) != T2_OK) {
        *finished = 1;
        send_error(s, w->ident, w->ident_len, w->id, T2__ERROR_CODE__ERROR_NOT_FOUND, "job %lld is gone", (long long)w->job);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        int fin = ev[i].state == T2D_JOB_DONE || ev[i].state == T2D_JOB_FAILED || ev[i].state == T2D_JOB_CANCELLED;
        T2__Reply r;
        T2__JobEvent pe;
        t2w_reply_init(&r, w->id, fin);
        fill_event(&pe, &ev[i]);
        r.body_case = T2__REPLY__BODY_EVENT;
        r.event = &pe;
        send_reply(s, w->ident, w->ident_len, &r);
        w->last_seq = ev[i].seq;
        if (fin) {
            *finished = 1;
            break;
        }
    }
    t2d_job_events_free(ev, n);
}

static void job_request(server *s, const uint8_t *ident, size_t ilen, const T2__Request *rq, const char *tenant) {
    t2d *d = s->d;
    T2__Reply r;
    t2w_reply_init(&r, rq->id, 1);
    t2d_job j;
    switch (rq->body_case) {
    case T2__REQUEST__BODY_JOB_GET: {
        if (!own_job(s, ident, ilen, rq->id, tenant, rq->job_get->id, &j)) return;
        T2__Job pj;
        fill_job(&pj, &j);
        r.body_case = T2__REPLY__BODY_JOB;
        r.job = &pj;
        send_reply(s, ident, ilen, &r);
        t2d_job_clear(&j);
        return;
    }
    case T2__REQUEST__BODY_JOB_LIST: {
        t2d_job *jobs = NULL;
        size_t n = 0;
        const char *state = *rq->job_list->state ? rq->job_list->state : NULL;
        t2_status st = t2d_store_job_list(d->store, tenant, state, (int)rq->job_list->limit, &jobs, &n);
        if (st != T2_OK) return send_error(s, ident, ilen, rq->id, code_of(st), "%s", t2d_store_errmsg());
        T2__Job *pj = calloc(n ? n : 1, sizeof *pj);
        T2__Job **pp = calloc(n ? n : 1, sizeof *pp);
        if (pj && pp) {
            for (size_t i = 0; i < n; i++) {
                fill_job(&pj[i], &jobs[i]);
                pp[i] = &pj[i];
            }
            T2__JobListReply lr = T2__JOB_LIST_REPLY__INIT;
            lr.n_jobs = n;
            lr.jobs = pp;
            r.body_case = T2__REPLY__BODY_JOBS;
            r.jobs = &lr;
            send_reply(s, ident, ilen, &r);
        }
        free(pj);
        free(pp);
        t2d_jobs_free(jobs, n);
        return;
    }
    case T2__REQUEST__BODY_JOB_CANCEL: {
        if (!own_job(s, ident, ilen, rq->id, tenant, rq->job_cancel->id, &j)) return;
        t2d_cancel_result what;
        t2_status st = t2d_store_job_cancel(d->store, j.id, &what);
        t2d_job_clear(&j);
        if (st != T2_OK) return send_error(s, ident, ilen, rq->id, code_of(st), "%s", t2d_store_errmsg());
        t2d_jobs_kick(d->jobs);
        T2__Ack ack = T2__ACK__INIT;
        ack.message = what == T2D_CANCEL_DONE ? "cancelled" : what == T2D_CANCEL_REQUESTED ? "cancelling (it stops after its current step)"
                                                                                           : "already finished";
        r.body_case = T2__REPLY__BODY_ACK;
        r.ack = &ack;
        send_reply(s, ident, ilen, &r);
        return;
    }
    case T2__REQUEST__BODY_JOB_LOG: {
        if (!own_job(s, ident, ilen, rq->id, tenant, rq->job_log->id, &j)) return;
        t2d_job_clear(&j);
        /* the whole log, page by page; beyond LOG_MAX events only the newest are sent */
        enum { PAGE = 5000, LOG_MAX = 50000 };
        t2d_job_event *ev = NULL;
        size_t n = 0;
        int64_t after = 0;
        for (;;) {
            t2d_job_event *page = NULL;
            size_t np = 0;
            t2_status st = t2d_store_job_events(d->store, rq->job_log->id, after, PAGE, &page, &np);
            if (st != T2_OK) {
                t2d_job_events_free(ev, n);
                return send_error(s, ident, ilen, rq->id, code_of(st), "%s", t2d_store_errmsg());
            }
            if (np == 0) {
                free(page);
                break;
            }
            after = page[np - 1].seq;
            if (n + np > LOG_MAX) {   /* drop the oldest */
                size_t drop = n + np - LOG_MAX < n ? n + np - LOG_MAX : n;
                for (size_t i = 0; i < drop; i++) {   /* their strings; the array stays */
                    free(ev[i].type);
                    free(ev[i].message);
                }
                memmove(ev, ev + drop, (n - drop) * sizeof *ev);
                n -= drop;
            }
            t2d_job_event *grown = realloc(ev, (n + np) * sizeof *ev);
            if (!grown) {
                t2d_job_events_free(page, np);
                break;
            }
            ev = grown;
            memcpy(ev + n, page, np * sizeof *ev);
            n += np;
            free(page);
            if (np < PAGE) break;
        }
        T2__JobEvent *pe = calloc(n ? n : 1, sizeof *pe);
        T2__JobEvent **pp = calloc(n ? n : 1, sizeof *pp);
        if (pe && pp) {
            for (size_t i = 0; i < n; i++) {
                fill_event(&pe[i], &ev[i]);
                pp[i] = &pe[i];
            }
            T2__JobLogReply lr = T2__JOB_LOG_REPLY__INIT;
            lr.n_events = n;
            lr.events = pp;
            r.body_case = T2__REPLY__BODY_LOG;
            r.log = &lr;
            send_reply(s, ident, ilen, &r);
        }
        free(pe);
        free(pp);
        t2d_job_events_free(ev, n);
        return;
    }
    case T2__REQUEST__BODY_JOB_WATCH: {
        if (!own_job(s, ident, ilen, rq->id, tenant, rq->job_watch->id, &j)) return;
        t2d_job_clear(&j);
        watcher *w = calloc(1, sizeof *w);
        if (!w) return send_error(s, ident, ilen, rq->id, T2__ERROR_CODE__ERROR_INTERNAL, "out of memory");
        memcpy(w->ident, ident, ilen);
        w->ident_len = ilen;
        w->id = rq->id;
        w->job = rq->job_watch->id;
        int fin;
        send_events(s, w, &fin);
        if (fin) free(w);
        else {
            w->next = s->watchers;
            s->watchers = w;
        }
        return;
    }
    default: return;
    }
}

static void poll_watchers(server *s) {
    watcher **pw = &s->watchers;
    while (*pw) {
        watcher *w = *pw;
        int fin;
        send_events(s, w, &fin);
        if (fin) {
            *pw = w->next;
            free(w);
        } else {
            pw = &w->next;
        }
    }
}

/* ---------------- info, stats, plugins ---------------- */

static void info_request(server *s, const uint8_t *ident, size_t ilen, const T2__Request *rq, const char *tenant) {
    t2d *d = s->d;
    T2__Reply r;
    t2w_reply_init(&r, rq->id, 1);
    t2_model *m = t2x_model(d->x);
    const t2_model_config *cfg = t2_model_get_config(m);
    const t2_svd *svd = t2x_svd(d->x);
    static const char *arch[] = {"llama", "mistral", "qwen2"};
    T2__InfoReply info = T2__INFO_REPLY__INIT;
    info.daemon_version = VERSION_STRING;
    info.protocol_version = T2W_VERSION;
    info.model = d->cfg.model;
    info.arch = (char *)(cfg->arch <= T2_ARCH_QWEN2 ? arch[cfg->arch] : "?");
    info.fingerprint = (char *)t2_model_fingerprint(m);
    info.n_params = (uint64_t)t2_model_n_params(m);
    info.n_ctx = (uint32_t)t2x_n_ctx(d->x);
    info.tenant = (char *)tenant;
    info.modules = (char *)t2_modules_name(t2_svd_modules(svd));
    info.n_matrices = (uint32_t)t2_svd_count(svd);
    uint64_t ep = 0;
    for (int i = 0; i < t2_svd_count(svd); i++) ep += (uint64_t)t2_svd_rank(svd, i);
    info.expert_params = ep;
    info.default_dispatch = d->cfg.default_dispatch;
    info.abi_major = T2_ABI_MAJOR;
    info.abi_minor = T2_ABI_MINOR;
    r.body_case = T2__REPLY__BODY_INFO;
    r.info = &info;
    send_reply(s, ident, ilen, &r);
}

static void stats_request(server *s, const uint8_t *ident, size_t ilen, const T2__Request *rq) {
    t2x_stats xs;
    t2x_get_stats(s->d->x, &xs);
    int64_t counts[T2D_JOB_N_STATES] = {0};
    t2d_store_job_counts(s->d->store, NULL, counts);
    T2__Reply r;
    t2w_reply_init(&r, rq->id, 1);
    T2__StatsReply st = T2__STATS_REPLY__INIT;
    st.uptime_seconds = t2x_now() - s->t_start;
    st.requests = s->requests;
    st.errors = s->errors;
    st.tokens_generated = xs.tokens_generated;
    st.tokens_prompt = xs.tokens_prompt;
    st.active_sequences = (uint32_t)xs.active;
    st.queued_jobs = (uint32_t)counts[T2D_JOB_QUEUED];
    st.running_jobs = (uint32_t)counts[T2D_JOB_RUNNING];
    st.clients = (uint32_t)s->n_live;
    st.busy_fraction = xs.uptime_seconds > 0 ? xs.busy_seconds / xs.uptime_seconds : 0;
    st.batches = xs.batches;
    st.mean_batch_rows = xs.batches ? (double)xs.rows / (double)xs.batches : 0;
    st.prefix_hits = xs.prefix_hits;
    st.prefix_tokens_reused = xs.prefix_tokens_reused;
    r.body_case = T2__REPLY__BODY_STATS;
    r.stats = &st;
    send_reply(s, ident, ilen, &r);
}

static void plugins_request(server *s, const uint8_t *ident, size_t ilen, const T2__Request *rq) {
    t2_plugins *p = s->d->plugins;
    int n = t2_plugins_count(p), nr = t2_plugins_refused_count(p);
    T2__Plugin *pl = calloc((size_t)(n ? n : 1), sizeof *pl);
    T2__Plugin **pp = calloc((size_t)(n ? n : 1), sizeof *pp);
    char **refused = calloc((size_t)(nr ? nr : 1), sizeof *refused);
    if (pl && pp && refused) {
        for (int i = 0; i < n; i++) {
            const char *path;
            void *state;
            const t2_plugin *x = t2_plugins_at(p, i, &path, &state);
            t2__plugin__init(&pl[i]);
            pl[i].name = (char *)x->name;
            pl[i].kind = (char *)t2_plugin_kind_name(x->kind);
            pl[i].version = (char *)(x->version ? x->version : "");
            pl[i].description = (char *)(x->description ? x->description : "");
            pl[i].path = (char *)path;
            pl[i].abi_major = x->abi_major;
            pl[i].abi_minor = x->abi_minor;
            pp[i] = &pl[i];
        }
        for (int i = 0; i < nr; i++) refused[i] = (char *)t2_plugins_refused(p, i);
        T2__PluginListReply lr = T2__PLUGIN_LIST_REPLY__INIT;
        lr.n_plugins = (size_t)n;
        lr.plugins = pp;
        lr.n_refused = (size_t)nr;
        lr.refused = refused;
        T2__Reply r;
        t2w_reply_init(&r, rq->id, 1);
        r.body_case = T2__REPLY__BODY_PLUGINS;
        r.plugins = &lr;
        send_reply(s, ident, ilen, &r);
    }
    free(pl);
    free(pp);
    free(refused);
}

/* ---------------- generation (worker threads) ---------------- */

typedef struct worker_ctx {
    server *s;
    void *push;
    inflight *f;
    int n_chunks;
} worker_ctx;

/* Worker → I/O thread: [ident][reply][inflight pointer + final flag]. */
static void worker_send(worker_ctx *w, const T2__Reply *r, int final) {
    size_t len;
    void *buf = t2w_reply_encode(r, &len);
    if (!buf) buf = t2w_error_reply(r->id, T2__ERROR_CODE__ERROR_TOO_LARGE, "the reply would exceed the frame limit", &len);
    if (!buf) return;
    struct {
        inflight *f;
        uint8_t final;
    } ctl = {w->f, (uint8_t)final};
    zmq_send(w->push, w->f->ident, w->f->ident_len, ZMQ_SNDMORE);
    zmq_send(w->push, buf, len, ZMQ_SNDMORE);
    zmq_send(w->push, &ctl, sizeof ctl, 0);
    free(buf);
}

static void worker_error(worker_ctx *w, T2__ErrorCode code, const char *msg) {
    T2__Reply r;
    T2__Error e = T2__ERROR__INIT;
    t2w_reply_init(&r, w->f->id, 1);
    e.code = code;
    e.message = (char *)msg;
    r.error = &e;
    worker_send(w, &r, 1);
}

static void on_text(void *user, const char *piece, size_t len, int n_tokens) {
    worker_ctx *w = user;
    char *text = strndup(piece, len);
    if (!text) return;
    T2__Reply r;
    T2__GenerateChunk c = T2__GENERATE_CHUNK__INIT;
    t2w_reply_init(&r, w->f->id, 0);
    c.text = text;
    c.n_tokens = (uint32_t)n_tokens;
    r.body_case = T2__REPLY__BODY_CHUNK;
    r.chunk = &c;
    worker_send(w, &r, 0);
    w->n_chunks++;
    free(text);
}

static void do_generate(worker_ctx *w) {
    server *s = w->s;
    t2d *d = s->d;
    inflight *f = w->f;
    const T2__GenerateRequest *g = f->req->generate;
    char err[1024] = "";
    /* the route: explicit mixture, base, or a dispatch plugin */
    size_t k = g->n_mix;
    const char *names[T2D_DECISION_MAX_PARTS];
    float alpha[T2D_DECISION_MAX_PARTS];
    const float *alpha_pm[T2D_DECISION_MAX_PARTS];
    int nm = t2_svd_count(t2x_svd(d->x));
    for (size_t i = 0; i < k && i < T2D_DECISION_MAX_PARTS; i++) {
        names[i] = g->mix[i]->expert;
        alpha[i] = k == 1 && g->mix[i]->alpha == 0 && !g->mix[i]->n_alpha_per_matrix ? 1.0f : g->mix[i]->alpha;
        alpha_pm[i] = NULL;
        if (g->mix[i]->n_alpha_per_matrix) {
            if ((int)g->mix[i]->n_alpha_per_matrix != nm) {
                snprintf(err, sizeof err, "generate.mix[%zu].alpha_per_matrix has %zu values; this model's experts have %d matrices", i,
                         g->mix[i]->n_alpha_per_matrix, nm);
                return worker_error(w, T2__ERROR_CODE__ERROR_BAD_REQUEST, err);
            }
            alpha_pm[i] = g->mix[i]->alpha_per_matrix;
        }
    }
    /* the user's last message is what the first pass looks at */
    const char *user_text = g->prompt, *system = NULL;
    for (size_t i = 0; i < g->n_messages; i++) {
        if (!strcmp(g->messages[i]->role, "user")) user_text = g->messages[i]->content;
        if (!strcmp(g->messages[i]->role, "system")) system = g->messages[i]->content;
    }
    t2d_route route = {.dispatch = g->dispatch, .base = g->base_model, .n_mix = (int)k, .mix_names = names, .mix_alpha = alpha,
                       .mix_alpha_pm = alpha_pm, .prompt = user_text, .system = system, .task_id = g->task_id, .examples = g->examples,
                       .settings = g->dispatch_settings, .cancel = &f->cancel};
    t2d_decision dec;
    t2_status st = t2d_decide(d, f->tenant, &route, &dec, err, sizeof err);
    if (st != T2_OK) {
        t2d_decision_clear(&dec);
        return worker_error(w, st == T2_ERR_NOT_FOUND ? T2__ERROR_CODE__ERROR_NOT_FOUND : T2__ERROR_CODE__ERROR_PLUGIN, err);
    }
    /* the second pass */
    t2_chat_message *msgs = NULL;
    if (g->n_messages) {
        msgs = calloc(g->n_messages, sizeof *msgs);
        if (!msgs) {
            t2d_decision_clear(&dec);
            return worker_error(w, T2__ERROR_CODE__ERROR_INTERNAL, "out of memory");
        }
        for (size_t i = 0; i < g->n_messages; i++) msgs[i] = (t2_chat_message){.role = g->messages[i]->role, .content = g->messages[i]->content};
    }
    t2_sampler_params sp = t2_sampler_default_params();
    const T2__Sampling *sm = g->sampling;
    if (sm) {
        sp.temperature = sm->temperature;
        sp.top_p = sm->top_p > 0 ? sm->top_p : 1.0f;
        sp.top_k = (int)sm->top_k;
        sp.seed = sm->seed ? sm->seed : (uint64_t)(wall_s() * 1e6);
    }
    t2d_gen gen = {.prompt = g->prompt, .messages = msgs, .n_messages = (int)g->n_messages, .chat = g->n_messages > 0,
                   .expert = dec.expert, .lora = dec.lora, .sampling = sp, .max_tokens = sm ? (int)sm->max_tokens : 0,
                   .stop = sm ? (const char *const *)sm->stop : NULL, .n_stop = sm ? (int)sm->n_stop : 0, .cancel = &f->cancel,
                   .tenant = f->tenant,
                   .on_text = g->stream ? on_text : NULL, .user = w};
    st = t2d_generate(d, &gen, 1, err, sizeof err);
    free(msgs);
    if (st != T2_OK) {
        t2d_decision_clear(&dec);
        t2d_gen_clear(&gen);
        return worker_error(w, code_of(st) == T2__ERROR_CODE__ERROR_QUOTA ? T2__ERROR_CODE__ERROR_BAD_REQUEST : code_of(st), err);
    }
    T2__Reply r;
    T2__GenerateDone done = T2__GENERATE_DONE__INIT;
    T2__Decision pd = T2__DECISION__INIT;
    T2__MixPart parts[T2D_DECISION_MAX_PARTS], *pp[T2D_DECISION_MAX_PARTS];
    for (int i = 0; i < dec.n_parts; i++) {
        t2__mix_part__init(&parts[i]);
        parts[i].expert = dec.names[i];
        parts[i].alpha = dec.alpha[i];
        pp[i] = &parts[i];
    }
    pd.dispatch = dec.dispatch;
    pd.label = dec.label;
    pd.n_mix = (size_t)dec.n_parts;
    pd.mix = pp;
    pd.detail = dec.detail;
    done.text = gen.text;
    done.decision = &pd;
    done.n_prompt = (uint32_t)gen.n_prompt;
    done.n_tokens = (uint32_t)gen.n_tokens;
    done.stop = (char *)gen.stop_reason;
    done.first_pass_seconds = dec.seconds;
    done.second_pass_seconds = gen.seconds;
    done.queue_seconds = gen.queued;
    t2w_reply_init(&r, f->id, 1);
    r.body_case = T2__REPLY__BODY_DONE;
    r.done = &done;
    worker_send(w, &r, 1);
    t2d_log(T2_LOG_DEBUG, "tenant=%s generate dispatch=%s label=%s prompt=%d tokens=%d first=%.3f second=%.3f stop=%s", f->tenant,
            dec.dispatch, dec.label, gen.n_prompt, gen.n_tokens, dec.seconds, gen.seconds, gen.stop_reason);
    t2d_decision_clear(&dec);
    t2d_gen_clear(&gen);
}

static void *worker_main(void *arg) {
    server *s = arg;
    worker_ctx w = {.s = s};
    w.push = zmq_socket(s->zctx, ZMQ_PUSH);
    int linger = 0;
    zmq_setsockopt(w.push, ZMQ_LINGER, &linger, sizeof linger);
    zmq_connect(w.push, "inproc://t2d-replies");
    for (;;) {
        pthread_mutex_lock(&s->qmu);
        while (!s->q_stop && !s->q_head) pthread_cond_wait(&s->qcv, &s->qmu);
        inflight *f = s->q_head;
        if (f) {
            s->q_head = f->qnext;
            if (!s->q_head) s->q_tail = NULL;
        }
        pthread_mutex_unlock(&s->qmu);
        if (!f) break;   /* stopping and nothing left */
        w.f = f;
        w.n_chunks = 0;
        if (atomic_load(&f->cancel)) worker_error(&w, T2__ERROR_CODE__ERROR_CANCELLED, "cancelled before it started");
        else do_generate(&w);
        inflight_unref(f);
    }
    zmq_close(w.push);
    return NULL;
}

/* ---------------- the I/O loop ---------------- */

static inflight *find_live(server *s, const uint8_t *ident, size_t ilen, uint64_t id) {
    for (inflight *f = s->live; f; f = f->next)
        if (f->ident_len == ilen && !memcmp(f->ident, ident, ilen) && f->id == id) return f;
    return NULL;
}

static int count_live(server *s, const uint8_t *ident, size_t ilen) {
    int n = 0;
    for (inflight *f = s->live; f; f = f->next) n += f->ident_len == ilen && !memcmp(f->ident, ident, ilen);
    return n;
}

static void start_generate(server *s, const uint8_t *ident, size_t ilen, T2__Request *rq, const char *tenant) {
    if (atomic_load(&s->d->draining)) {
        send_error(s, ident, ilen, rq->id, T2__ERROR_CODE__ERROR_BUSY, "the daemon is shutting down");
        t2w_request_free(rq);
        return;
    }
    if (find_live(s, ident, ilen, rq->id)) {
        send_error(s, ident, ilen, rq->id, T2__ERROR_CODE__ERROR_BAD_REQUEST, "request id %llu is already in flight", (unsigned long long)rq->id);
        t2w_request_free(rq);
        return;
    }
    if (count_live(s, ident, ilen) >= s->d->cfg.max_clients_inflight) {
        send_error(s, ident, ilen, rq->id, T2__ERROR_CODE__ERROR_BUSY, "this client already has %d requests in flight",
                   s->d->cfg.max_clients_inflight);
        t2w_request_free(rq);
        return;
    }
    inflight *f = calloc(1, sizeof *f);
    if (!f) {
        send_error(s, ident, ilen, rq->id, T2__ERROR_CODE__ERROR_INTERNAL, "out of memory");
        t2w_request_free(rq);
        return;
    }
    atomic_init(&f->refs, 2);   /* the I/O thread's list and the worker */
    atomic_init(&f->cancel, 0);
    memcpy(f->ident, ident, ilen);
    f->ident_len = ilen;
    f->id = rq->id;
    f->req = rq;
    f->t_received = t2x_now();
    snprintf(f->tenant, sizeof f->tenant, "%s", tenant);
    f->next = s->live;
    s->live = f;
    s->n_live++;
    pthread_mutex_lock(&s->qmu);
    if (s->q_tail) s->q_tail->qnext = f;
    else s->q_head = f;
    s->q_tail = f;
    pthread_cond_signal(&s->qcv);
    pthread_mutex_unlock(&s->qmu);
}

static void handle_frame(server *s, const uint8_t *ident, size_t ilen, const void *buf, size_t len, const char *tenant) {
    s->requests++;
    T2__ErrorCode code;
    char msg[1024];
    T2__Request *rq = t2w_request_decode(buf, len, &code, msg, sizeof msg);
    if (!rq) {
        uint64_t id = t2w_request_peek_id(buf, len);
        t2d_log(T2_LOG_INFO, "tenant=%s refused a request: %s", tenant, msg);
        send_error(s, ident, ilen, id, code, "%s", msg);
        return;
    }
    switch (rq->body_case) {
    case T2__REQUEST__BODY_PING: {
        T2__Reply r;
        T2__Pong pong = T2__PONG__INIT;
        t2w_reply_init(&r, rq->id, 1);
        r.body_case = T2__REPLY__BODY_PONG;
        r.pong = &pong;
        send_reply(s, ident, ilen, &r);
        break;
    }
    case T2__REQUEST__BODY_INFO: info_request(s, ident, ilen, rq, tenant); break;
    case T2__REQUEST__BODY_STATS: stats_request(s, ident, ilen, rq); break;
    case T2__REQUEST__BODY_PLUGIN_LIST: plugins_request(s, ident, ilen, rq); break;
    case T2__REQUEST__BODY_GENERATE: start_generate(s, ident, ilen, rq, tenant); return;   /* rq now owned by the worker */
    case T2__REQUEST__BODY_JOB_SUBMIT: job_submit(s, ident, ilen, rq, tenant); break;
    case T2__REQUEST__BODY_JOB_GET:
    case T2__REQUEST__BODY_JOB_LIST:
    case T2__REQUEST__BODY_JOB_CANCEL:
    case T2__REQUEST__BODY_JOB_WATCH:
    case T2__REQUEST__BODY_JOB_LOG: job_request(s, ident, ilen, rq, tenant); break;
    case T2__REQUEST__BODY_EXPERT_IMPORT: expert_import(s, ident, ilen, rq, tenant); break;
    case T2__REQUEST__BODY_EXPERT_LIST:
    case T2__REQUEST__BODY_EXPERT_SHOW:
    case T2__REQUEST__BODY_EXPERT_DELETE:
    case T2__REQUEST__BODY_EXPERT_EXPORT:
    case T2__REQUEST__BODY_EXPERT_PUBLISH: expert_request(s, ident, ilen, rq, tenant); break;
    case T2__REQUEST__BODY_CANCEL: {
        inflight *f = find_live(s, ident, ilen, rq->cancel->request_id);
        int stopped = 0;
        if (f) atomic_store(&f->cancel, 1), stopped = 1;
        for (watcher **pw = &s->watchers; *pw;) {   /* a watch stream ends too */
            watcher *w = *pw;
            if (w->ident_len == ilen && !memcmp(w->ident, ident, ilen) && w->id == rq->cancel->request_id) {
                *pw = w->next;
                send_error(s, ident, ilen, w->id, T2__ERROR_CODE__ERROR_CANCELLED, "watch cancelled");
                free(w);
                stopped = 1;
            } else {
                pw = &w->next;
            }
        }
        T2__Reply r;
        T2__Ack ack = T2__ACK__INIT;
        ack.message = stopped ? "cancelling" : "no such request in flight";
        t2w_reply_init(&r, rq->id, 1);
        r.body_case = T2__REPLY__BODY_ACK;
        r.ack = &ack;
        send_reply(s, ident, ilen, &r);
        break;
    }
    default: send_error(s, ident, ilen, rq->id, T2__ERROR_CODE__ERROR_BAD_REQUEST, "unknown request"); break;
    }
    t2w_request_free(rq);
}

/* A reply from a worker: forward it; a final one ends the request's life in the I/O thread. */
static void forward_reply(server *s) {
    zmq_msg_t parts[3];
    int n = 0, more = 1;
    while (more) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, s->pull, 0) < 0) {
            zmq_msg_close(&m);
            break;
        }
        more = zmq_msg_more(&m);
        if (n < 3) parts[n++] = m;
        else zmq_msg_close(&m);
    }
    if (n == 3 && zmq_msg_size(&parts[2]) == sizeof(struct { inflight *f; uint8_t final; })) {
        struct {
            inflight *f;
            uint8_t final;
        } ctl;
        memcpy(&ctl, zmq_msg_data(&parts[2]), sizeof ctl);
        inflight *f = ctl.f;
        int final = ctl.final;
        if (send_raw(s, zmq_msg_data(&parts[0]), zmq_msg_size(&parts[0]), zmq_msg_data(&parts[1]), zmq_msg_size(&parts[1])) != 0 &&
            errno == EHOSTUNREACH) {
            atomic_store(&f->cancel, 1);   /* the client is gone: stop generating for it */
        }
        if (final) {
            for (inflight **pf = &s->live; *pf; pf = &(*pf)->next)
                if (*pf == f) {
                    *pf = f->next;
                    s->n_live--;
                    inflight_unref(f);
                    break;
                }
        }
    }
    for (int i = 0; i < n; i++) zmq_msg_close(&parts[i]);
}

/* A client message: [identity][empty][request]. Anything else is answered (if it has an identity) or dropped. */
static void receive_request(server *s) {
    zmq_msg_t parts[4];
    int n = 0, more = 1, extra = 0;
    while (more) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, s->router, 0) < 0) {
            zmq_msg_close(&m);
            break;
        }
        more = zmq_msg_more(&m);
        if (n < 4) parts[n++] = m;
        else {
            zmq_msg_close(&m);
            extra = 1;
        }
    }
    if (n < 1) return;
    const uint8_t *ident = zmq_msg_data(&parts[0]);
    size_t ilen = zmq_msg_size(&parts[0]);
    const char *tenant = s->d->cfg.local_tenant;
    if (!strcmp(s->d->cfg.auth, "curve")) {
        const char *user = n >= 2 ? zmq_msg_gets(&parts[n - 1], "User-Id") : NULL;
        tenant = user && *user ? user : NULL;
    }
    if (ilen > sizeof(((inflight *)0)->ident)) {
        /* not a DEALER/REQ peer we can answer */
    } else if (!tenant) {
        send_error(s, ident, ilen, 0, T2__ERROR_CODE__ERROR_DENIED, "unauthenticated");
    } else if (n != 3 || extra || zmq_msg_size(&parts[1]) != 0) {
        s->requests++;
        send_error(s, ident, ilen, 0, T2__ERROR_CODE__ERROR_BAD_REQUEST,
                   "expected [empty delimiter][one request frame] (a DEALER socket); got %d frame(s)", n - 1 + extra);
    } else {
        handle_frame(s, ident, ilen, zmq_msg_data(&parts[2]), zmq_msg_size(&parts[2]), tenant);
    }
    for (int i = 0; i < n; i++) zmq_msg_close(&parts[i]);
}

static int events_of(void *sock) {
    int ev = 0;
    size_t len = sizeof ev;
    zmq_getsockopt(sock, ZMQ_EVENTS, &ev, &len);
    return ev;
}

static int bind_router(server *s, char *err, size_t cap) {
    t2d_config *c = &s->d->cfg;
    s->router = zmq_socket(s->zctx, ZMQ_ROUTER);
    int one = 1, linger = 0, hwm = 100000;
    int64_t maxmsg = (int64_t)T2W_MAX_FRAME + 65536;
    zmq_setsockopt(s->router, ZMQ_ROUTER_MANDATORY, &one, sizeof one);
    zmq_setsockopt(s->router, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(s->router, ZMQ_SNDHWM, &hwm, sizeof hwm);
    zmq_setsockopt(s->router, ZMQ_RCVHWM, &hwm, sizeof hwm);
    /* an oversized frame never reaches us: ZeroMQ drops the connection that sends it */
    zmq_setsockopt(s->router, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg);
    if (!strcmp(c->auth, "curve")) {
        char pub[41], sec[41], path[4200];
        if (*c->server_key) snprintf(path, sizeof path, "%s", c->server_key);
        else snprintf(path, sizeof path, "%s/server.key", c->state_dir);
        if (t2d_server_keys(path, pub, sec, err, cap) != T2_OK) return -1;
        if (!(s->auth = t2d_auth_start(s->zctx, c->keys_dir, err, cap))) return -1;
        zmq_setsockopt(s->router, ZMQ_CURVE_SERVER, &one, sizeof one);
        zmq_setsockopt(s->router, ZMQ_CURVE_SECRETKEY, sec, 40);
        zmq_setsockopt(s->router, ZMQ_ZAP_DOMAIN, "t2", 2);
        t2d_log(T2_LOG_INFO, "auth=curve server_public_key=%s", pub);
    }
    mode_t mode = (mode_t)strtol(c->socket_mode, NULL, 8), old = 0;
    int ipc = !strncmp(c->listen, "ipc://", 6);
    if (ipc) {
        unlink(c->listen + 6);   /* a stale socket file of a daemon that died */
        old = umask((mode_t)(0777 & ~mode));
    }
    int rc = zmq_bind(s->router, c->listen);
    if (ipc) {
        umask(old);
        if (rc == 0) chmod(c->listen + 6, mode);
    }
    if (rc != 0) {
        snprintf(err, cap, "cannot listen on %s: %s", c->listen, zmq_strerror(errno));
        return -1;
    }
    return 0;
}

int t2d_serve(t2d *d) {
    server s = {.d = d};
    char err[1024];
    s.t_start = t2x_now();
    pthread_mutex_init(&s.qmu, NULL);
    pthread_cond_init(&s.qcv, NULL);
    s.zctx = zmq_ctx_new();
    int rc = 1;
    s.pull = zmq_socket(s.zctx, ZMQ_PULL);
    int linger = 0;
    zmq_setsockopt(s.pull, ZMQ_LINGER, &linger, sizeof linger);
    if (zmq_bind(s.pull, "inproc://t2d-replies") != 0 || bind_router(&s, err, sizeof err) != 0) {
        if (!err[0]) snprintf(err, sizeof err, "%s", zmq_strerror(errno));
        t2d_log(T2_LOG_ERROR, "%s", err);
        goto out;
    }
    s.n_workers = d->cfg.workers;
    s.workers = calloc((size_t)s.n_workers, sizeof *s.workers);
    for (int i = 0; s.workers && i < s.n_workers; i++)
        if (pthread_create(&s.workers[i], NULL, worker_main, &s) != 0) {
            s.n_workers = i;
            break;
        }
    t2d_log(T2_LOG_INFO, "listening on %s auth=%s workers=%d", d->cfg.listen, d->cfg.auth, s.n_workers);
    double drain_until = 0, last_watch = 0;
    for (;;) {
        if (t2d_signal && !atomic_load(&d->draining)) {
            atomic_store(&d->draining, 1);
            drain_until = t2x_now() + d->cfg.drain_seconds;
            t2d_log(T2_LOG_INFO, "draining: %d request(s) in flight, up to %.0f s", s.n_live, d->cfg.drain_seconds);
        }
        if (atomic_load(&d->draining) && (s.n_live == 0 || t2x_now() > drain_until)) break;
        zmq_pollitem_t items[2] = {{s.router, 0, ZMQ_POLLIN, 0}, {s.pull, 0, ZMQ_POLLIN, 0}};
        int n = zmq_poll(items, 2, 100);
        if (n < 0 && errno != EINTR) {
            t2d_log(T2_LOG_ERROR, "poll: %s", zmq_strerror(errno));
            break;
        }
        for (int k = 0; k < 256 && n > 0; k++) {   /* drain what is ready, replies first */
            int any = 0;
            if (events_of(s.pull) & ZMQ_POLLIN) forward_reply(&s), any = 1;
            if (events_of(s.router) & ZMQ_POLLIN) receive_request(&s), any = 1;
            if (!any) break;
        }
        if (t2x_now() - last_watch >= 0.1) {
            poll_watchers(&s);
            last_watch = t2x_now();
        }
    }
    rc = 0;
    if (s.n_live) t2d_log(T2_LOG_WARN, "stopping with %d request(s) still in flight (drain timeout)", s.n_live);
    /* cancel what is left, stop the workers */
    for (inflight *f = s.live; f; f = f->next) atomic_store(&f->cancel, 1);
    pthread_mutex_lock(&s.qmu);
    s.q_stop = 1;
    pthread_cond_broadcast(&s.qcv);
    pthread_mutex_unlock(&s.qmu);
    for (int i = 0; i < s.n_workers; i++) pthread_join(s.workers[i], NULL);
out:
    while (s.live) {
        inflight *f = s.live;
        s.live = f->next;
        inflight_unref(f);
    }
    while (s.watchers) {
        watcher *w = s.watchers;
        s.watchers = w->next;
        free(w);
    }
    free(s.workers);
    if (s.router) zmq_close(s.router);
    zmq_close(s.pull);
    zmq_ctx_term(s.zctx);
    t2d_auth_free(s.auth);
    pthread_mutex_destroy(&s.qmu);
    pthread_cond_destroy(&s.qcv);
    return rc;
}
