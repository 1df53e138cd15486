/* fake_t2d — a stand-in daemon for the client tests (test_cli.py): a ROUTER socket that answers every
 * request kind with canned replies, so that the t2 command line's requests, streams, error mapping and
 * output can be checked without a model. It logs what it received, one line per request, to LOG.
 *
 * usage: fake_t2d ENDPOINT LOG
 *
 * Canned world: experts "math" (own) and "shared" (published by bob; with ExpertList.all); "secret"
 * is someone else's (DENIED); jobs 7 (train, done), 8 (eval, done, accuracy 0.75), 9 (fails); trainer
 * "nosuch" is NOT_FOUND; a generate whose user message is "hang" streams one chunk and then waits for a
 * Cancel. It runs until killed. */
#include "wire.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

static void *g_sock;
static FILE *g_log;
static zmq_msg_t g_hang_ident;   /* the client with a pending "hang" stream */
static uint64_t g_hang_id;

static void logf_(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void logf_(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vfprintf(g_log, fmt, ap);
    va_end(ap);
    fputc('\n', g_log);
    fflush(g_log);
}

static void send_to(zmq_msg_t *ident, const T2__Reply *r) {
    size_t len;
    void *b = t2w_reply_encode(r, &len);
    zmq_msg_t id;
    zmq_msg_init(&id);
    zmq_msg_copy(&id, ident);
    zmq_msg_send(&id, g_sock, ZMQ_SNDMORE);
    zmq_send(g_sock, "", 0, ZMQ_SNDMORE);
    zmq_send(g_sock, b, len, 0);
    free(b);
}

static void send_error(zmq_msg_t *ident, uint64_t id, T2__ErrorCode code, const char *msg) {
    size_t len;
    void *b = t2w_error_reply(id, code, msg, &len);
    zmq_msg_t m;
    zmq_msg_init(&m);
    zmq_msg_copy(&m, ident);
    zmq_msg_send(&m, g_sock, ZMQ_SNDMORE);
    zmq_send(g_sock, "", 0, ZMQ_SNDMORE);
    zmq_send(g_sock, b, len, 0);
    free(b);
}

static void fill_job(T2__Job *j, int64_t id) {
    t2__job__init(j);
    j->id = id;
    j->tenant = "tester";
    j->kind = id == 8 ? "eval" : "train";
    j->state = id == 9 ? "failed" : "done";
    j->trainer = id == 8 ? "" : "reinforce";
    j->dataset = id == 9 ? "fail" : "letters.jsonl";
    j->expert = id == 8 ? "" : "letters1";
    j->step = 3;
    j->total = 3;
    j->reward = 0.5;
    j->accuracy = 0.75;
    j->created = 1700000000;
    j->started = 1700000001;
    j->finished = 1700000060;
    if (id == 9) j->error = "grader crashed";
    if (id == 8) j->result = "{\"accuracy\": 0.75, \"n\": 4}";
}

static void mix_text(char *buf, size_t cap, T2__MixPart **mix, size_t n) {
    buf[0] = 0;
    for (size_t i = 0; i < n; i++) {
        size_t l = strlen(buf);
        snprintf(buf + l, cap - l, "%s%s:%g", i ? "," : "", mix[i]->expert, mix[i]->alpha);
    }
}

static void on_generate(zmq_msg_t *ident, const T2__Request *q) {
    const T2__GenerateRequest *g = q->generate;
    const T2__Sampling *s = g->sampling;
    char roles[128] = "", mix[512];
    for (size_t i = 0; i < g->n_messages; i++) {
        size_t l = strlen(roles);
        snprintf(roles + l, sizeof roles - l, "%s%s", i ? "," : "", g->messages[i]->role);
    }
    mix_text(mix, sizeof mix, g->mix, g->n_mix);
    const char *user = g->n_messages ? g->messages[g->n_messages - 1]->content : g->prompt;
    logf_("generate stream=%d base=%d prompt=%s roles=%s user=%s max_tokens=%u temperature=%g top_p=%g top_k=%u "
          "seed=%llu stops=%zu dispatch=%s mix=%s task_id=%s settings=%s",
          g->stream, g->base_model, g->prompt, roles, user, s ? s->max_tokens : 0, s ? s->temperature : 0,
          s ? s->top_p : 0, s ? s->top_k : 0, s ? (unsigned long long)s->seed : 0ULL, s ? s->n_stop : 0, g->dispatch,
          mix, g->task_id, g->dispatch_settings);
    for (size_t i = 0; i < g->n_mix; i++)
        if (strcmp(g->mix[i]->expert, "math")) {
            send_error(ident, q->id, T2__ERROR_CODE__ERROR_NOT_FOUND, "no such expert");
            return;
        }
    T2__Reply r;
    if (!strcmp(user, "hang")) {
        T2__GenerateChunk ch = T2__GENERATE_CHUNK__INIT;
        ch.text = "partial";
        ch.n_tokens = 1;
        t2w_reply_init(&r, q->id, 0);
        r.body_case = T2__REPLY__BODY_CHUNK;
        r.chunk = &ch;
        send_to(ident, &r);
        zmq_msg_copy(&g_hang_ident, ident);
        g_hang_id = q->id;
        return;
    }
    static const char *pieces[] = {"Hello", ", ", "world"};
    for (int i = 0; g->stream && i < 3; i++) {
        T2__GenerateChunk ch = T2__GENERATE_CHUNK__INIT;
        ch.text = (char *)pieces[i];
        ch.n_tokens = (uint32_t)i + 1;
        t2w_reply_init(&r, q->id, 0);
        r.body_case = T2__REPLY__BODY_CHUNK;
        r.chunk = &ch;
        send_to(ident, &r);
    }
    T2__GenerateDone d = T2__GENERATE_DONE__INIT;
    T2__Decision dec = T2__DECISION__INIT;
    T2__MixPart p = T2__MIX_PART__INIT, *pp = &p;
    p.expert = "math";
    p.alpha = 1;
    dec.dispatch = g->n_mix || g->base_model ? "" : "prompt";
    dec.label = g->base_model ? "" : "math";
    if (!g->base_model) dec.mix = &pp, dec.n_mix = 1;
    d.text = "Hello, world";
    d.decision = &dec;
    d.n_prompt = 5;
    d.n_tokens = 3;
    d.stop = "eos";
    d.first_pass_seconds = 0.25;
    d.second_pass_seconds = 0.5;
    t2w_reply_init(&r, q->id, 1);
    r.body_case = T2__REPLY__BODY_DONE;
    r.done = &d;
    send_to(ident, &r);
}

static void on_watch(zmq_msg_t *ident, uint64_t rid, int64_t id) {
    T2__Reply r;
    for (int step = 1; step <= 3; step++) {
        T2__JobEvent e = T2__JOB_EVENT__INIT;
        e.job = id;
        e.time = 1700000000 + step;
        e.type = "progress";
        e.step = step;
        e.total = 3;
        e.reward = 0.1 * step;
        e.accuracy = 0.25 * step;
        e.eta_seconds = 3 - step;
        e.state = "running";
        t2w_reply_init(&r, rid, 0);
        r.body_case = T2__REPLY__BODY_EVENT;
        r.event = &e;
        send_to(ident, &r);
    }
    T2__JobEvent e = T2__JOB_EVENT__INIT;
    e.job = id;
    e.time = 1700000060;
    e.type = id == 9 ? "failed" : "done";
    e.state = e.type;
    e.message = id == 9 ? "grader crashed" : "";
    t2w_reply_init(&r, rid, 1);
    r.body_case = T2__REPLY__BODY_EVENT;
    r.event = &e;
    send_to(ident, &r);
}

static void on_expert(zmq_msg_t *ident, const T2__Request *q, const char *name, int published, const char *label,
                      uint64_t bytes) {
    if (!strcmp(name, "secret")) {
        send_error(ident, q->id, T2__ERROR_CODE__ERROR_DENIED, "expert secret belongs to another tenant");
        return;
    }
    if (strcmp(name, "math") && q->body_case != T2__REQUEST__BODY_EXPERT_IMPORT) {
        send_error(ident, q->id, T2__ERROR_CODE__ERROR_NOT_FOUND, "no such expert");
        return;
    }
    T2__Reply r;
    T2__Expert e = T2__EXPERT__INIT;
    e.name = (char *)name;
    e.owner = "tester";
    e.label = (char *)label;
    e.published = published;
    e.n_params = 192;
    e.bytes = bytes;
    e.created = 1700000000;
    e.meta = "{\"trainer\": \"reinforce\"}";
    t2w_reply_init(&r, q->id, 1);
    r.body_case = T2__REPLY__BODY_EXPERT;
    r.expert = &e;
    send_to(ident, &r);
}

static void handle(zmq_msg_t *ident, const T2__Request *q) {
    T2__Reply r;
    t2w_reply_init(&r, q->id, 1);
    T2__Pong pong = T2__PONG__INIT;
    switch (q->body_case) {
    case T2__REQUEST__BODY_PING:
        logf_("ping");
        r.body_case = T2__REPLY__BODY_PONG;
        r.pong = &pong;
        send_to(ident, &r);
        return;
    case T2__REQUEST__BODY_INFO: {
        T2__InfoReply i = T2__INFO_REPLY__INIT;
        i.daemon_version = "fake";
        i.protocol_version = T2W_VERSION;
        i.model = "/models/tiny";
        i.arch = "llama";
        i.fingerprint = "0123456789abcdef";
        i.n_params = 1000;
        i.n_ctx = 64;
        i.tenant = "tester";
        i.modules = "mlp";
        i.n_matrices = 6;
        i.expert_params = 192;
        i.default_dispatch = "prompt";
        i.abi_major = 1;
        r.body_case = T2__REPLY__BODY_INFO;
        r.info = &i;
        send_to(ident, &r);
        return;
    }
    case T2__REQUEST__BODY_STATS: {
        T2__StatsReply s = T2__STATS_REPLY__INIT;
        s.uptime_seconds = 3725;
        s.requests = 10;
        s.batches = 4;
        s.mean_batch_rows = 2.5;
        r.body_case = T2__REPLY__BODY_STATS;
        r.stats = &s;
        send_to(ident, &r);
        return;
    }
    case T2__REQUEST__BODY_PLUGIN_LIST: {
        T2__PluginListReply pl = T2__PLUGIN_LIST_REPLY__INIT;
        T2__Plugin a = T2__PLUGIN__INIT, *pp = &a;
        char *refused = "bad.so: plugin ABI 2.0, host 1.0";
        a.name = "fixed";
        a.kind = "dispatch";
        a.version = "1.0";
        a.abi_major = 1;
        pl.plugins = &pp;
        pl.n_plugins = 1;
        pl.refused = &refused;
        pl.n_refused = 1;
        r.body_case = T2__REPLY__BODY_PLUGINS;
        r.plugins = &pl;
        send_to(ident, &r);
        return;
    }
    case T2__REQUEST__BODY_GENERATE: on_generate(ident, q); return;
    case T2__REQUEST__BODY_CANCEL:
        logf_("cancel %llu", (unsigned long long)q->cancel->request_id);
        if (g_hang_id && q->cancel->request_id == g_hang_id) {
            T2__Reply d;
            T2__GenerateDone gd = T2__GENERATE_DONE__INIT;
            gd.text = "partial";
            gd.stop = "cancelled";
            t2w_reply_init(&d, g_hang_id, 1);
            d.body_case = T2__REPLY__BODY_DONE;
            d.done = &gd;
            send_to(&g_hang_ident, &d);
            g_hang_id = 0;
        }
        {
            T2__Ack ack = T2__ACK__INIT;
            ack.message = "cancelled";
            r.body_case = T2__REPLY__BODY_ACK;
            r.ack = &ack;
            send_to(ident, &r);
        }
        return;
    case T2__REQUEST__BODY_JOB_SUBMIT: {
        const T2__JobSubmit *s = q->job_submit;
        char mix[512];
        mix_text(mix, sizeof mix, s->mix, s->n_mix);
        logf_("submit kind=%s trainer=%s grader=%s dataset=%s expert=%s label=%s settings=%s dispatch=%s mix=%s "
              "split=%s limit=%u priority=%u",
              s->kind, s->trainer, s->grader, s->dataset, s->expert, s->label, s->settings, s->dispatch, mix, s->split,
              s->limit, s->priority);
        if (!strcmp(s->trainer, "nosuch")) {
            send_error(ident, q->id, T2__ERROR_CODE__ERROR_NOT_FOUND, "no trainer plugin \"nosuch\"");
            return;
        }
        if (!strcmp(s->dataset, "quota")) {
            send_error(ident, q->id, T2__ERROR_CODE__ERROR_QUOTA, "at most 2 queued jobs");
            return;
        }
        T2__Job j;
        fill_job(&j, !strcmp(s->dataset, "fail") ? 9 : !strcmp(s->kind, "eval") ? 8 : 7);
        j.state = "queued";
        r.body_case = T2__REPLY__BODY_JOB;
        r.job = &j;
        send_to(ident, &r);
        return;
    }
    case T2__REQUEST__BODY_JOB_GET:
    case T2__REQUEST__BODY_JOB_CANCEL:
    case T2__REQUEST__BODY_JOB_WATCH:
    case T2__REQUEST__BODY_JOB_LOG: {
        int64_t id = q->job_get->id;
        logf_("job %d %lld", (int)q->body_case, (long long)id);
        if (id < 7 || id > 9) {
            send_error(ident, q->id, T2__ERROR_CODE__ERROR_NOT_FOUND, "no such job");
            return;
        }
        if (q->body_case == T2__REQUEST__BODY_JOB_WATCH) {
            on_watch(ident, q->id, id);
            return;
        }
        if (q->body_case == T2__REQUEST__BODY_JOB_LOG) {
            T2__JobLogReply lr = T2__JOB_LOG_REPLY__INIT;
            T2__JobEvent ev[2], *ep[2];
            const char *types[] = {"queued", "done"};
            for (int i = 0; i < 2; i++) {
                t2__job_event__init(&ev[i]);
                ev[i].job = id;
                ev[i].type = (char *)types[i];
                ev[i].time = 1700000000 + i;
                ep[i] = &ev[i];
            }
            lr.events = ep;
            lr.n_events = 2;
            r.body_case = T2__REPLY__BODY_LOG;
            r.log = &lr;
            send_to(ident, &r);
            return;
        }
        T2__Job j;
        fill_job(&j, id);
        if (q->body_case == T2__REQUEST__BODY_JOB_CANCEL) j.state = "cancelled";
        r.body_case = T2__REPLY__BODY_JOB;
        r.job = &j;
        send_to(ident, &r);
        return;
    }
    case T2__REQUEST__BODY_JOB_LIST: {
        logf_("jobs state=%s limit=%u", q->job_list->state, q->job_list->limit);
        T2__JobListReply jl = T2__JOB_LIST_REPLY__INIT;
        T2__Job j[2], *jp[2];
        fill_job(&j[0], 7);
        fill_job(&j[1], 8);
        jp[0] = &j[0], jp[1] = &j[1];
        jl.jobs = jp;
        jl.n_jobs = 2;
        r.body_case = T2__REPLY__BODY_JOBS;
        r.jobs = &jl;
        send_to(ident, &r);
        return;
    }
    case T2__REQUEST__BODY_EXPERT_LIST: {
        T2__ExpertListReply el = T2__EXPERT_LIST_REPLY__INIT;
        T2__Expert e[2], *ep[2];
        for (int i = 0; i < 2; i++) {
            t2__expert__init(&e[i]);
            e[i].name = i ? "shared" : "math";
            e[i].owner = i ? "bob" : "tester";
            e[i].label = "math";
            e[i].published = i;
            e[i].n_params = 192;
            e[i].bytes = 2048;
            ep[i] = &e[i];
        }
        el.experts = ep;
        el.n_experts = q->expert_list->all ? 2 : 1;
        r.body_case = T2__REPLY__BODY_EXPERTS;
        r.experts = &el;
        send_to(ident, &r);
        return;
    }
    case T2__REQUEST__BODY_EXPERT_SHOW: on_expert(ident, q, q->expert_show->name, 0, "math", 2048); return;
    case T2__REQUEST__BODY_EXPERT_PUBLISH:
        logf_("publish %s %d", q->expert_publish->name, q->expert_publish->publish);
        on_expert(ident, q, q->expert_publish->name, q->expert_publish->publish, "math", 2048);
        return;
    case T2__REQUEST__BODY_EXPERT_IMPORT: {
        const T2__ExpertImport *im = q->expert_import;
        unsigned long sum = 0;
        for (size_t i = 0; i < im->data.len; i++) sum += im->data.data[i];
        logf_("import name=%s label=%s bytes=%zu sum=%lu", im->name, im->label, im->data.len, sum);
        on_expert(ident, q, im->name, 0, im->label, im->data.len);
        return;
    }
    case T2__REQUEST__BODY_EXPERT_DELETE:
    case T2__REQUEST__BODY_EXPERT_EXPORT: {
        const char *name = q->expert_delete->name;
        if (strcmp(name, "math")) {
            send_error(ident, q->id, !strcmp(name, "secret") ? T2__ERROR_CODE__ERROR_DENIED : T2__ERROR_CODE__ERROR_NOT_FOUND,
                       "not yours or not there");
            return;
        }
        if (q->body_case == T2__REQUEST__BODY_EXPERT_DELETE) {
            T2__Ack ack = T2__ACK__INIT;
            ack.message = "deleted math";
            r.body_case = T2__REPLY__BODY_ACK;
            r.ack = &ack;
            send_to(ident, &r);
            return;
        }
        static uint8_t data[1000];
        for (int i = 0; i < 1000; i++) data[i] = (uint8_t)(i * 7);
        T2__ExpertData ed = T2__EXPERT_DATA__INIT;
        ed.name = "math";
        ed.data.data = data;
        ed.data.len = sizeof data;
        r.body_case = T2__REPLY__BODY_EXPERT_DATA;
        r.expert_data = &ed;
        send_to(ident, &r);
        return;
    }
    default: send_error(ident, q->id, T2__ERROR_CODE__ERROR_INTERNAL, "not in the fake daemon"); return;
    }
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: fake_t2d ENDPOINT LOG\n");
        return 2;
    }
    g_log = fopen(argv[2], "a");
    void *ctx = zmq_ctx_new();
    g_sock = zmq_socket(ctx, ZMQ_ROUTER);
    int zero = 0;
    zmq_setsockopt(g_sock, ZMQ_LINGER, &zero, sizeof zero);
    if (!g_log || zmq_bind(g_sock, argv[1])) {
        fprintf(stderr, "fake_t2d: cannot bind %s or open %s\n", argv[1], argv[2]);
        return 1;
    }
    zmq_msg_init(&g_hang_ident);
    logf_("ready");
    for (;;) {
        zmq_msg_t ident, part;
        zmq_msg_init(&ident);
        if (zmq_msg_recv(&ident, g_sock, 0) < 0) break;
        uint8_t *payload = NULL;
        size_t plen = 0;
        int more = zmq_msg_more(&ident);
        while (more) {
            zmq_msg_init(&part);
            if (zmq_msg_recv(&part, g_sock, 0) < 0) break;
            more = zmq_msg_more(&part);
            free(payload);
            plen = zmq_msg_size(&part);
            payload = malloc(plen ? plen : 1);
            memcpy(payload, zmq_msg_data(&part), plen);
            zmq_msg_close(&part);
        }
        char msg[512];
        T2__ErrorCode code;
        T2__Request *q = t2w_request_decode(payload, plen, &code, msg, sizeof msg);
        if (!q) {
            logf_("refused %s", msg);
            send_error(&ident, t2w_request_peek_id(payload, plen), code, msg);
        } else {
            handle(&ident, q);
        }
        t2w_request_free(q);
        free(payload);
        zmq_msg_close(&ident);
    }
    return 0;
}
