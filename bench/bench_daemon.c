/* bench_daemon — the daemon as clients see it, against a running t2d:
 *
 *   1. round-trip latency of an empty request (Ping), sequential, over one connection: median, p99, mean;
 *   2. generation throughput with 1, 8 and 32 concurrent clients (threads, each with its own DEALER
 *      socket), each issuing the same greedy generate request one after another: tokens/s and
 *      requests/s over the wall time of the level, per-request latency, and the ratio of each level's
 *      tokens/s to the single client's (measured in the same run), which is what batching buys.
 *
 * usage: bench_daemon --connect ENDPOINT [--key FILE --server-key Z85|FILE] [--pings N] [--per-client N]
 *                     [--max-tokens N] [--prompt TEXT] [--expert NAME[,NAME...] | --dispatch NAME] [--levels 1,8,32]
 *                     [--timeout SECS]
 * --expert with several names gives client i the expert i mod n: many experts served in the same batches.
 * Not a test: it needs a daemon with a model, and its numbers depend on the machine. */
#include "bench_util.h"
#include "wire.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

typedef struct opts {
    const char *endpoint, *key, *server_key, *prompt, *expert, *dispatch;
    int pings, per_client, max_tokens, timeout_ms;
    char *expert_list[64];     /* --expert split at commas */
    int n_experts;
    int levels[8], n_levels;
} opts;

typedef struct worker {
    const opts *o;
    void *ctx;
    pthread_barrier_t *start;
    int ok;
    char err[512];
    long long tokens, requests;
    double *lat;           /* [o->per_client] seconds per request */
    double t_end;          /* when this worker finished its last request */
    int index;             /* which client: picks its expert */
} worker;

static t2w_client *connect_client(const opts *o, void *ctx, char *err, size_t cap) {
    t2w_client_opts co = {.endpoint = o->endpoint, .key_file = o->key, .server_key = o->server_key, .zmq_ctx = ctx};
    return t2w_client_connect(&co, err, cap);
}

/* One Ping; 0 or -1 with a message. */
static int ping(t2w_client *c, int timeout_ms, char *err, size_t cap) {
    T2__Request r;
    T2__Ping p = T2__PING__INIT;
    t2w_request_init(&r, 0);
    r.body_case = T2__REQUEST__BODY_PING;
    r.ping = &p;
    T2__Reply *rep = NULL;
    if (t2w_client_call(c, &r, &rep, timeout_ms) != T2_OK) {
        snprintf(err, cap, "%s", t2w_client_error(c));
        return -1;
    }
    int bad = rep->error || rep->body_case != T2__REPLY__BODY_PONG;
    if (bad) snprintf(err, cap, "ping: %s", rep->error ? rep->error->message : "unexpected reply");
    t2w_reply_free(rep);
    return bad ? -1 : 0;
}

/* One greedy generate request without streaming; the number of tokens generated, or -1. */
static long long generate(t2w_client *c, const opts *o, int index, char *err, size_t cap) {
    T2__Request r;
    T2__GenerateRequest g = T2__GENERATE_REQUEST__INIT;
    T2__Sampling s = T2__SAMPLING__INIT;
    T2__ChatMessage m = T2__CHAT_MESSAGE__INIT, *mp = &m;
    T2__MixPart part = T2__MIX_PART__INIT, *pp = &part;
    m.role = "user";
    m.content = (char *)o->prompt;
    g.messages = &mp;
    g.n_messages = 1;
    s.max_tokens = (uint32_t)o->max_tokens;   /* temperature 0: greedy */
    g.sampling = &s;
    if (o->expert) {
        part.expert = o->expert_list[index % o->n_experts];
        part.alpha = 1;
        g.mix = &pp;
        g.n_mix = 1;
    } else if (o->dispatch) {
        g.dispatch = (char *)o->dispatch;
    } else {
        g.base_model = 1;
    }
    t2w_request_init(&r, 0);
    r.body_case = T2__REQUEST__BODY_GENERATE;
    r.generate = &g;
    T2__Reply *rep = NULL;
    if (t2w_client_call(c, &r, &rep, o->timeout_ms) != T2_OK) {
        snprintf(err, cap, "%s", t2w_client_error(c));
        return -1;
    }
    /* Without stream the first reply is the final one; skip partial replies a daemon might still send. */
    while (!rep->final && !rep->error) {
        t2w_reply_free(rep);
        if (t2w_client_next(c, r.id, &rep, o->timeout_ms) != T2_OK) {
            snprintf(err, cap, "%s", t2w_client_error(c));
            return -1;
        }
    }
    long long n = -1;
    if (rep->error) snprintf(err, cap, "generate: %s: %s", t2w_error_name(rep->error->code), rep->error->message);
    else if (rep->body_case != T2__REPLY__BODY_DONE || !rep->done) snprintf(err, cap, "generate: unexpected reply");
    else n = rep->done->n_tokens;
    t2w_reply_free(rep);
    return n;
}

static void *worker_main(void *arg) {
    worker *w = arg;
    char err[512] = "";
    t2w_client *c = connect_client(w->o, w->ctx, err, sizeof err);
    /* Connect and warm up before the clock starts: the first round trip pays for the handshake. */
    int ok = c && ping(c, w->o->timeout_ms, err, sizeof err) == 0;
    pthread_barrier_wait(w->start);
    for (int i = 0; ok && i < w->o->per_client; i++) {
        double t0 = now();
        long long n = generate(c, w->o, w->index, err, sizeof err);
        if (n < 0) ok = 0;
        else w->tokens += n, w->requests++, w->lat[i] = now() - t0;
    }
    w->t_end = now();
    w->ok = ok;
    if (!ok) snprintf(w->err, sizeof w->err, "%s", err);
    t2w_client_free(c);
    return NULL;
}

static double pct(double *sorted, int n, double p) {
    int i = (int)(p * (n - 1) + 0.5);
    return sorted[i < 0 ? 0 : i >= n ? n - 1 : i];
}

static int parse_levels(const char *s, opts *o) {
    o->n_levels = 0;
    char *copy = strdup(s), *save = NULL;
    for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        int v = atoi(t);
        if (v < 1 || v > 1024 || o->n_levels == 8) {
            free(copy);
            return -1;
        }
        o->levels[o->n_levels++] = v;
    }
    free(copy);
    return o->n_levels ? 0 : -1;
}

int main(int argc, char **argv) {
    opts o = {.prompt = "Write one sentence about the sea.", .pings = 2000, .per_client = 4, .max_tokens = 32,
              .timeout_ms = 600000, .levels = {1, 8, 32}, .n_levels = 3};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int used = 1;
        if (!strcmp(a, "--connect") && v) o.endpoint = v;
        else if (!strcmp(a, "--key") && v) o.key = v;
        else if (!strcmp(a, "--server-key") && v) o.server_key = v;
        else if (!strcmp(a, "--prompt") && v) o.prompt = v;
        else if (!strcmp(a, "--expert") && v) {
            o.expert = v;
            char *copy = strdup(v), *save = NULL;   /* kept for the whole run */
            for (char *t = strtok_r(copy, ",", &save); t && o.n_experts < 64; t = strtok_r(NULL, ",", &save)) o.expert_list[o.n_experts++] = t;
        }
        else if (!strcmp(a, "--dispatch") && v) o.dispatch = v;
        else if (!strcmp(a, "--pings") && v) o.pings = atoi(v);
        else if (!strcmp(a, "--per-client") && v) o.per_client = atoi(v);
        else if (!strcmp(a, "--max-tokens") && v) o.max_tokens = atoi(v);
        else if (!strcmp(a, "--timeout") && v) o.timeout_ms = (int)(atof(v) * 1000);
        else if (!strcmp(a, "--levels") && v) {
            if (parse_levels(v, &o)) {
                fprintf(stderr, "bench_daemon: --levels wants a list like 1,8,32\n");
                return 2;
            }
        } else used = 0;
        if (!used) {
            fprintf(stderr, "bench_daemon: unknown or incomplete option %s (see the comment at the top of bench_daemon.c)\n", a);
            return 2;
        }
        i++;
    }
    if (!o.endpoint || o.pings < 1 || o.per_client < 1 || o.max_tokens < 1 || o.timeout_ms < 1 || (o.expert && o.dispatch)) {
        fprintf(stderr, "usage: bench_daemon --connect ENDPOINT [--key F --server-key K] [--pings N] [--per-client N]\n"
                        "                    [--max-tokens N] [--prompt TEXT] [--expert NAME | --dispatch NAME]\n"
                        "                    [--levels 1,8,32] [--timeout SECS]\n");
        return 2;
    }
    void *ctx = zmq_ctx_new();
    char err[512];

    /* 1. Ping latency. */
    t2w_client *c = connect_client(&o, ctx, err, sizeof err);
    if (!c || ping(c, o.timeout_ms, err, sizeof err)) {
        fprintf(stderr, "bench_daemon: %s\n", err);
        t2w_client_free(c);
        zmq_ctx_term(ctx);
        return 1;
    }
    double *rt = malloc((size_t)o.pings * sizeof *rt);
    double sum = 0;
    for (int i = 0; i < o.pings; i++) {
        double t0 = now();
        if (ping(c, o.timeout_ms, err, sizeof err)) {
            fprintf(stderr, "bench_daemon: ping %d: %s\n", i, err);
            return 1;
        }
        rt[i] = now() - t0;
        sum += rt[i];
    }
    t2w_client_free(c);
    double med = median(rt, o.pings);   /* sorts rt */
    printf("t2d at %s\n\n", o.endpoint);
    printf("ping round trip over %d requests: median %.3f ms, p99 %.3f ms, mean %.3f ms, min %.3f ms\n\n", o.pings,
           med * 1e3, pct(rt, o.pings, 0.99) * 1e3, sum / o.pings * 1e3, rt[0] * 1e3);
    free(rt);

    /* 2. Generation throughput per concurrency level. */
    printf("generate: %s, greedy, max_tokens %d, %d requests per client, prompt \"%.40s%s\"\n",
           o.expert ? o.expert : o.dispatch ? o.dispatch : "base model", o.max_tokens, o.per_client, o.prompt,
           strlen(o.prompt) > 40 ? "..." : "");
    printf("%8s %9s %8s %9s %10s %11s %12s %10s %10s\n", "clients", "requests", "tokens", "seconds", "tokens/s",
           "requests/s", "vs 1 client", "lat med s", "lat p99 s");
    double ref_tps = 0;
    int rc = 0;
    for (int l = 0; l < o.n_levels && !rc; l++) {
        int n = o.levels[l];
        worker *w = calloc((size_t)n, sizeof *w);
        pthread_t *th = calloc((size_t)n, sizeof *th);
        double *lat = calloc((size_t)n * (size_t)o.per_client, sizeof *lat);
        pthread_barrier_t start;
        pthread_barrier_init(&start, NULL, (unsigned)n + 1);
        for (int i = 0; i < n; i++) {
            w[i] = (worker){.o = &o, .ctx = ctx, .start = &start, .lat = lat + (size_t)i * (size_t)o.per_client, .index = i};
            pthread_create(&th[i], NULL, worker_main, &w[i]);
        }
        pthread_barrier_wait(&start);
        double t0 = now(), t1 = t0;
        long long tokens = 0, requests = 0;
        for (int i = 0; i < n; i++) {
            pthread_join(th[i], NULL);
            if (!w[i].ok) {
                fprintf(stderr, "bench_daemon: %d clients: client %d: %s\n", n, i, w[i].err);
                rc = 1;
            }
            tokens += w[i].tokens;
            requests += w[i].requests;
            if (w[i].t_end > t1) t1 = w[i].t_end;
        }
        pthread_barrier_destroy(&start);
        if (!rc) {
            double secs = t1 - t0, tps = tokens / secs;
            if (n == 1 && ref_tps == 0) ref_tps = tps;   /* the reference: one client, this run */
            int nl = (int)requests;
            double lmed = median(lat, nl);
            char ratio[32];
            if (ref_tps > 0) snprintf(ratio, sizeof ratio, "%.2fx", tps / ref_tps);
            else snprintf(ratio, sizeof ratio, "-");
            printf("%8d %9lld %8lld %9.2f %10.1f %11.2f %12s %10.3f %10.3f\n", n, requests, tokens, secs, tps,
                   requests / secs, ratio, lmed, pct(lat, nl, 0.99));
            fflush(stdout);
        }
        free(lat);
        free(th);
        free(w);
    }
    zmq_ctx_term(ctx);
    return rc;
}
