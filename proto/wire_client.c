/* wire_client.c — a small synchronous client: one DEALER socket, one request in flight.
 *
 * Why a socket monitor: with ZMQ_IMMEDIATE a DEALER queues nothing until a connection has completed its
 * handshake, so "cannot reach the daemon" shows as a send that never becomes possible. That alone
 * cannot tell a missing daemon from one that refuses our CURVE key (the ZAP handler says no) or a
 * handshake that fails because the server key is wrong. The monitor reports handshake results, so a
 * refused key fails at once with its own reason instead of after the whole timeout, and a connection
 * lost while a reply is awaited ends the wait instead of hanging. */
#include "wire.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

struct t2w_client {
    void *ctx, *sock, *mon;
    int own_ctx;
    char *endpoint;
    uint64_t next_id;
    t2w_fail fail;
    char err[512];
    unsigned hs_event;    /* the last handshake failure event seen (0: none since the last success) */
    unsigned hs_value;    /* its value (errno, protocol error or ZAP status code) */
    int lost;             /* a connection went down since the last send */
    int interrupt_fd;     /* see t2w_client_opts; 0: none */
};

static t2_status set_fail(t2w_client *c, t2w_fail f, t2_status st, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static t2_status set_fail(t2w_client *c, t2w_fail f, t2_status st, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->err, sizeof c->err, fmt, ap);
    va_end(ap);
    c->fail = f;
    return st;
}

static int64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void say(char *msg, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void say(char *msg, size_t cap, const char *fmt, ...) {
    if (!msg || !cap) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, cap, fmt, ap);
    va_end(ap);
}

void t2w_client_free(t2w_client *c) {
    if (!c) return;
    if (c->sock) {
        zmq_socket_monitor(c->sock, NULL, 0);
        zmq_close(c->sock);
    }
    if (c->mon) zmq_close(c->mon);
    if (c->own_ctx && c->ctx) zmq_ctx_term(c->ctx);
    free(c->endpoint);
    free(c);
}

static int setopt_int(void *s, int opt, int v) { return zmq_setsockopt(s, opt, &v, sizeof v); }

t2w_client *t2w_client_connect(const t2w_client_opts *o, char *msg, size_t cap) {
    if (!o || !o->endpoint || !*o->endpoint) {
        say(msg, cap, "no daemon endpoint (tcp://HOST:PORT or ipc://PATH)");
        return NULL;
    }
    if (strncmp(o->endpoint, "tcp://", 6) && strncmp(o->endpoint, "ipc://", 6)) {
        say(msg, cap, "endpoint \"%s\": want tcp://HOST:PORT or ipc://PATH", o->endpoint);
        return NULL;
    }
    if (o->key_file && (!o->server_key || !*o->server_key)) {
        say(msg, cap, "a client key (%s) needs the daemon's public key too (--server-key or T2_SERVER_KEY)",
            o->key_file);
        return NULL;
    }
    char server_pub[T2W_KEY_LEN + 1], pub[T2W_KEY_LEN + 1], sec[T2W_KEY_LEN + 1];
    int curve = o->server_key && *o->server_key;
    if (curve) {
        if (t2w_server_key_resolve(o->server_key, server_pub, msg, cap) != T2_OK) return NULL;
        if (o->key_file) {
            if (t2w_keyfile_read(o->key_file, pub, sec, msg, cap) != T2_OK) return NULL;
        } else if (zmq_curve_keypair(pub, sec)) {
            say(msg, cap, "cannot make a CURVE key pair: %s", zmq_strerror(zmq_errno()));
            return NULL;
        }
    }
    t2w_client *c = calloc(1, sizeof *c);
    if (!c || !(c->endpoint = strdup(o->endpoint))) {
        free(c);
        say(msg, cap, "out of memory");
        return NULL;
    }
    c->next_id = 1;
    c->interrupt_fd = o->interrupt_fd > 0 ? o->interrupt_fd : 0;
    c->ctx = o->zmq_ctx;
    if (!c->ctx) {
        c->own_ctx = 1;
        if (!(c->ctx = zmq_ctx_new())) goto zfail;
    }
    if (!(c->sock = zmq_socket(c->ctx, ZMQ_DEALER))) goto zfail;
    int64_t maxmsg = T2W_MAX_FRAME;
    if (setopt_int(c->sock, ZMQ_LINGER, 0) || setopt_int(c->sock, ZMQ_IMMEDIATE, 1) ||
        zmq_setsockopt(c->sock, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg))
        goto zfail;
    if (curve && (zmq_setsockopt(c->sock, ZMQ_CURVE_SERVERKEY, server_pub, T2W_KEY_LEN + 1) ||
                  zmq_setsockopt(c->sock, ZMQ_CURVE_PUBLICKEY, pub, T2W_KEY_LEN + 1) ||
                  zmq_setsockopt(c->sock, ZMQ_CURVE_SECRETKEY, sec, T2W_KEY_LEN + 1)))
        goto zfail;
    char addr[64];
    snprintf(addr, sizeof addr, "inproc://t2w-monitor-%p", (void *)c);
    if (zmq_socket_monitor(c->sock, addr,
                           ZMQ_EVENT_DISCONNECTED | ZMQ_EVENT_HANDSHAKE_SUCCEEDED | ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL |
                               ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL | ZMQ_EVENT_HANDSHAKE_FAILED_AUTH))
        goto zfail;
    if (!(c->mon = zmq_socket(c->ctx, ZMQ_PAIR)) || setopt_int(c->mon, ZMQ_LINGER, 0) || zmq_connect(c->mon, addr))
        goto zfail;
    if (zmq_connect(c->sock, o->endpoint)) {
        say(msg, cap, "cannot connect to %s: %s", o->endpoint, zmq_strerror(zmq_errno()));
        t2w_client_free(c);
        return NULL;
    }
    memset(sec, 0, sizeof sec);
    return c;
zfail:
    say(msg, cap, "ZeroMQ setup failed: %s", zmq_strerror(zmq_errno()));
    memset(sec, 0, sizeof sec);
    t2w_client_free(c);
    return NULL;
}

/* Read one monitor event (the monitor is readable). */
static void read_event(t2w_client *c) {
    zmq_msg_t m;
    zmq_msg_init(&m);
    int n = zmq_msg_recv(&m, c->mon, ZMQ_DONTWAIT);
    if (n >= 6) {
        const uint8_t *d = zmq_msg_data(&m);
        uint16_t ev;
        uint32_t val;
        memcpy(&ev, d, 2);
        memcpy(&val, d + 2, 4);
        if (ev == ZMQ_EVENT_HANDSHAKE_SUCCEEDED) c->hs_event = 0;
        else if (ev == ZMQ_EVENT_DISCONNECTED) c->lost = 1;
        else c->hs_event = ev, c->hs_value = val;
    }
    while (zmq_msg_more(&m)) {   /* the endpoint frame */
        zmq_msg_close(&m);
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, c->mon, ZMQ_DONTWAIT) < 0) break;
    }
    zmq_msg_close(&m);
}

/* Why a connection could not be used, from the last handshake failure; NULL when none was seen. */
static const char *hs_reason(const t2w_client *c, char *buf, size_t cap) {
    switch (c->hs_event) {
    case ZMQ_EVENT_HANDSHAKE_FAILED_AUTH:
        snprintf(buf, cap, "the daemon refused this client's key (authentication status %u)", c->hs_value);
        return buf;
    case ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL:
        snprintf(buf, cap,
                 "the security handshake failed (protocol error 0x%x): do client and daemon agree on CURVE, and is "
                 "the server key right?",
                 c->hs_value);
        return buf;
    case ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL:
        snprintf(buf, cap, "the daemon closed the connection during the handshake (wrong --server-key?)");
        return buf;
    default: return NULL;
    }
}

/* Wait until the socket has `events`. 1 ready, 0 deadline passed, -1 failure (c->fail set). Handshake
 * refusals end the wait at once; with fail_on_lost, so does a lost connection. */
static int wait_sock(t2w_client *c, short events, int64_t deadline, int fail_on_lost) {
    for (;;) {
        if (c->hs_event == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH || c->hs_event == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL) {
            char why[256];
            hs_reason(c, why, sizeof why);
            set_fail(c, c->hs_event == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH ? T2W_FAIL_DENIED : T2W_FAIL_HANDSHAKE, T2_ERR_IO,
                     "%s: %s", c->endpoint, why);
            c->hs_event = 0;   /* reported once; a later attempt may succeed (keys reloaded) */
            return -1;
        }
        if (fail_on_lost && c->lost) {
            set_fail(c, T2W_FAIL_UNREACHABLE, T2_ERR_IO, "%s: the connection to the daemon was lost", c->endpoint);
            return -1;
        }
        long timeout = -1;
        if (deadline >= 0) {
            int64_t left = deadline - now_ms();
            if (left <= 0) return 0;
            timeout = (long)left;
        }
        zmq_pollitem_t it[3] = {{c->sock, 0, events, 0}, {c->mon, 0, ZMQ_POLLIN, 0}, {NULL, c->interrupt_fd, ZMQ_POLLIN, 0}};
        int n = zmq_poll(it, c->interrupt_fd ? 3 : 2, timeout);
        if (n < 0) {
            if (zmq_errno() == EINTR) {
                set_fail(c, T2W_FAIL_INTERRUPTED, T2_ERR_IO, "interrupted");
                return -1;
            }
            set_fail(c, T2W_FAIL_SYSTEM, T2_ERR_IO, "zmq_poll: %s", zmq_strerror(zmq_errno()));
            return -1;
        }
        if (c->interrupt_fd && (it[2].revents & ZMQ_POLLIN)) {
            set_fail(c, T2W_FAIL_INTERRUPTED, T2_ERR_IO, "interrupted");
            return -1;
        }
        if (it[1].revents & ZMQ_POLLIN) read_event(c);
        if (it[0].revents & events) return 1;
    }
}

t2_status t2w_client_send(t2w_client *c, T2__Request *req, int timeout_ms) {
    if (!c || !req) return T2_ERR_INVALID_ARG;
    c->fail = T2W_FAIL_NONE;
    c->err[0] = 0;
    req->version = T2W_VERSION;
    if (req->id == 0) req->id = c->next_id++;
    size_t len;
    void *buf = t2w_request_encode(req, &len);
    if (!buf) {
        if (len > T2W_MAX_FRAME)
            return set_fail(c, T2W_FAIL_PROTOCOL, T2_ERR_RANGE, "the request is %zu bytes, more than the %u a frame may hold",
                            len, T2W_MAX_FRAME);
        return set_fail(c, T2W_FAIL_SYSTEM, T2_ERR_NOMEM, "out of memory");
    }
    int64_t deadline = timeout_ms < 0 ? -1 : now_ms() + timeout_ms;
    int w = wait_sock(c, ZMQ_POLLOUT, deadline, 0);
    t2_status st = T2_OK;
    if (w == 0) {
        char why[256];
        const char *r = hs_reason(c, why, sizeof why);
        st = set_fail(c, r ? T2W_FAIL_HANDSHAKE : T2W_FAIL_UNREACHABLE, T2_ERR_IO,
                      "cannot reach the daemon at %s within %d ms%s%s", c->endpoint, timeout_ms, r ? ": " : "",
                      r ? r : " (is t2d running there?)");
    } else if (w < 0) {
        st = T2_ERR_IO;
    } else {
        /* Events queued before this point belong to earlier connections: read them before the
         * lost-connection flag starts to count for this request. */
        zmq_pollitem_t mi = {c->mon, 0, ZMQ_POLLIN, 0};
        while (zmq_poll(&mi, 1, 0) > 0 && (mi.revents & ZMQ_POLLIN)) read_event(c);
        c->lost = 0;
        if (zmq_send(c->sock, "", 0, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0 || zmq_send(c->sock, buf, len, ZMQ_DONTWAIT) < 0)
            st = set_fail(c, zmq_errno() == EAGAIN ? T2W_FAIL_UNREACHABLE : T2W_FAIL_SYSTEM, T2_ERR_IO,
                          "sending to %s failed: %s", c->endpoint, zmq_strerror(zmq_errno()));
    }
    free(buf);
    return st;
}

/* Receive one message: [empty delimiter][reply]; NULL (and *bad set) for a message of another shape. */
static T2__Reply *recv_reply(t2w_client *c, int *bad, char *why, size_t cap) {
    zmq_msg_t m;
    zmq_msg_init(&m);
    T2__Reply *r = NULL;
    int part = 0, got = 0;
    *bad = 0;
    for (;;) {
        if (zmq_msg_recv(&m, c->sock, ZMQ_DONTWAIT) < 0) break;
        if (part == 0 && zmq_msg_size(&m) == 0) { /* the delimiter */
        } else if (!got) {
            got = 1;
            r = t2w_reply_decode(zmq_msg_data(&m), zmq_msg_size(&m), why, cap);
            if (!r) *bad = 1;
        } else {
            *bad = 1;   /* trailing frames: not ours */
        }
        part++;
        if (!zmq_msg_more(&m)) break;
    }
    zmq_msg_close(&m);
    if (!got) {
        *bad = 1;
        snprintf(why, cap, "a message without a reply frame");
    }
    if (*bad && r) {
        t2w_reply_free(r);
        r = NULL;
        snprintf(why, cap, "a message with extra frames");
    }
    return r;
}

t2_status t2w_client_next(t2w_client *c, uint64_t id, T2__Reply **out, int timeout_ms) {
    if (!c || !out) return T2_ERR_INVALID_ARG;
    *out = NULL;
    c->fail = T2W_FAIL_NONE;
    c->err[0] = 0;
    int64_t deadline = timeout_ms < 0 ? -1 : now_ms() + timeout_ms;
    for (;;) {
        int w = wait_sock(c, ZMQ_POLLIN, deadline, 1);
        if (w == 0)
            return set_fail(c, T2W_FAIL_TIMEOUT, T2_ERR_IO, "no reply from the daemon at %s within %d ms", c->endpoint,
                            timeout_ms);
        if (w < 0) return T2_ERR_IO;
        int bad;
        char why[256];
        T2__Reply *r = recv_reply(c, &bad, why, sizeof why);
        if (bad) return set_fail(c, T2W_FAIL_PROTOCOL, T2_ERR_FORMAT, "the daemon at %s sent %s", c->endpoint, why);
        if (r->id != id) {   /* a late reply to an earlier (timed out or cancelled) request */
            t2w_reply_free(r);
            continue;
        }
        *out = r;
        return T2_OK;
    }
}

t2_status t2w_client_call(t2w_client *c, T2__Request *req, T2__Reply **first, int timeout_ms) {
    if (!c || !req || !first) return T2_ERR_INVALID_ARG;
    *first = NULL;
    int64_t start = now_ms();
    t2_status st = t2w_client_send(c, req, timeout_ms);
    if (st != T2_OK) return st;
    int left = timeout_ms;
    if (timeout_ms >= 0) {
        int64_t used = now_ms() - start;
        left = used >= timeout_ms ? 0 : (int)(timeout_ms - used);
    }
    st = t2w_client_next(c, req->id, first, left);
    if (st != T2_OK && c->fail == T2W_FAIL_TIMEOUT)
        set_fail(c, T2W_FAIL_TIMEOUT, T2_ERR_IO, "no reply from the daemon at %s within %d ms", c->endpoint, timeout_ms);
    return st;
}

t2w_fail t2w_client_failure(const t2w_client *c) { return c ? c->fail : T2W_FAIL_SYSTEM; }
const char *t2w_client_error(const t2w_client *c) { return c ? c->err : "no client"; }
const char *t2w_client_endpoint(const t2w_client *c) { return c ? c->endpoint : ""; }
