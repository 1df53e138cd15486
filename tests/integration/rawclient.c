/* rawclient — sends hostile frames to a running t2d and checks each gets an error reply, while a
 * well-behaved client on another socket keeps being served between them.
 *
 *   rawclient ENDPOINT
 *
 * Cases: garbage bytes, every truncation of a valid request, a request without a body, a wrong protocol
 * version, a field beyond its limit (name, prompt), NaN sampling, a message with two payload frames, a
 * message without the empty delimiter, and an oversized frame (ZeroMQ drops that connection: the test
 * checks that the daemon still serves the good client afterwards). Exit 0 when every check passed. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "wire.h"

static int failures;

#define CHECK(cond, ...)                            \
    do {                                            \
        if (!(cond)) {                              \
            failures++;                             \
            fprintf(stderr, "FAIL: " __VA_ARGS__);  \
            fputc('\n', stderr);                    \
        }                                           \
    } while (0)

static void *dealer(void *ctx, const char *ep) {
    void *s = zmq_socket(ctx, ZMQ_DEALER);
    int linger = 0, tmo = 10000;
    zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(s, ZMQ_RCVTIMEO, &tmo, sizeof tmo);
    zmq_connect(s, ep);
    return s;
}

/* Receive one reply ([empty][frame]); NULL on timeout. */
static T2__Reply *recv_reply(void *s) {
    char buf[1 << 16];
    zmq_msg_t m;
    zmq_msg_init(&m);
    int more = 1, n = 0;
    T2__Reply *r = NULL;
    while (more) {
        if (zmq_msg_recv(&m, s, 0) < 0) {
            zmq_msg_close(&m);
            return NULL;
        }
        more = zmq_msg_more(&m);
        if (n++ == 1) r = t2w_reply_decode(zmq_msg_data(&m), zmq_msg_size(&m), buf, sizeof buf);
    }
    zmq_msg_close(&m);
    return r;
}

static void send_frames(void *s, const void *a, size_t al, const void *b, size_t bl, int two) {
    zmq_send(s, "", 0, ZMQ_SNDMORE);
    zmq_send(s, a, al, two ? ZMQ_SNDMORE : 0);
    if (two) zmq_send(s, b, bl, 0);
}

/* The good client: a ping must come back. */
static void ping_ok(void *good, const char *after) {
    T2__Request rq;
    t2w_request_init(&rq, 4242);
    T2__Ping ping = T2__PING__INIT;
    rq.body_case = T2__REQUEST__BODY_PING;
    rq.ping = &ping;
    size_t len;
    void *buf = t2w_request_encode(&rq, &len);
    send_frames(good, buf, len, NULL, 0, 0);
    free(buf);
    T2__Reply *r = recv_reply(good);
    CHECK(r && r->id == 4242 && r->body_case == T2__REPLY__BODY_PONG, "the good client was not served after %s", after);
    t2w_reply_free(r);
}

/* Expect an error reply with code (0 = any error). */
static void expect_error(void *s, T2__ErrorCode code, const char *what) {
    T2__Reply *r = recv_reply(s);
    CHECK(r && r->error && r->error->code != T2__ERROR_CODE__ERROR_NONE, "%s: no error reply", what);
    if (r && r->error && code) CHECK(r->error->code == code, "%s: error code %d, expected %d (%s)", what, r->error->code, code, r->error->message);
    if (r && r->error) printf("ok   %-40s -> %s: %s\n", what, t2w_error_name(r->error->code), r->error->message);
    t2w_reply_free(r);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: rawclient ENDPOINT\n");
        return 2;
    }
    void *ctx = zmq_ctx_new();
    void *bad = dealer(ctx, argv[1]), *good = dealer(ctx, argv[1]);
    ping_ok(good, "start");

    /* a valid generate request, for truncation */
    T2__Request rq;
    t2w_request_init(&rq, 77);
    T2__GenerateRequest g = T2__GENERATE_REQUEST__INIT;
    g.prompt = "hello there";
    g.base_model = 1;
    rq.body_case = T2__REQUEST__BODY_GENERATE;
    rq.generate = &g;
    size_t len, valid_len;
    uint8_t *valid = t2w_request_encode(&rq, &valid_len);
    len = valid_len;

    const char garbage[] = "\xff\xfe\x01 this is not protobuf \x00\x07";
    send_frames(bad, garbage, sizeof garbage, NULL, 0, 0);
    expect_error(bad, T2__ERROR_CODE__ERROR_BAD_REQUEST, "garbage bytes");
    ping_ok(good, "garbage");

    int trunc_errors = 0, trunc_n = 0;
    for (size_t k = 1; k < valid_len; k++) {
        send_frames(bad, valid, k, NULL, 0, 0);
        T2__Reply *r = recv_reply(bad);
        trunc_n++;
        /* a prefix may happen to be a valid shorter request; it must then be answered normally or refused */
        CHECK(r != NULL, "truncated to %zu bytes: no reply", k);
        if (r && r->error) trunc_errors++;
        /* a prefix that decodes to a valid generate request is served: drain its stream */
        while (r && !r->final) {
            t2w_reply_free(r);
            r = recv_reply(bad);
        }
        t2w_reply_free(r);
    }
    printf("ok   %-40s -> %d of %d prefixes refused, every one answered\n", "every truncation", trunc_errors, trunc_n);
    ping_ok(good, "truncations");

    T2__Request empty;
    t2w_request_init(&empty, 5);
    uint8_t *eb = t2w_request_encode(&empty, &len);
    send_frames(bad, eb, len, NULL, 0, 0);
    expect_error(bad, T2__ERROR_CODE__ERROR_BAD_REQUEST, "no body");
    free(eb);

    T2__Request wrong = rq;
    wrong.version = 900;
    eb = t2w_request_encode(&wrong, &len);
    send_frames(bad, eb, len, NULL, 0, 0);
    expect_error(bad, T2__ERROR_CODE__ERROR_VERSION, "protocol version 9.00");
    free(eb);

    char longname[400];
    memset(longname, 'x', sizeof longname - 1);
    longname[sizeof longname - 1] = 0;
    T2__Request sub;
    t2w_request_init(&sub, 6);
    T2__JobSubmit js = T2__JOB_SUBMIT__INIT;
    js.kind = "train";
    js.trainer = longname;
    js.dataset = "gsm8k";
    sub.body_case = T2__REQUEST__BODY_JOB_SUBMIT;
    sub.job_submit = &js;
    eb = t2w_request_encode(&sub, &len);
    send_frames(bad, eb, len, NULL, 0, 0);
    expect_error(bad, T2__ERROR_CODE__ERROR_TOO_LARGE, "trainer name of 399 bytes");
    free(eb);

    T2__Sampling sm = T2__SAMPLING__INIT;
    sm.temperature = NAN;
    g.sampling = &sm;
    eb = t2w_request_encode(&rq, &len);
    send_frames(bad, eb, len, NULL, 0, 0);
    expect_error(bad, T2__ERROR_CODE__ERROR_BAD_REQUEST, "temperature NaN");
    free(eb);
    g.sampling = NULL;

    size_t big = (2u << 20);
    char *prompt = malloc(big + 1);
    memset(prompt, 'a', big);
    prompt[big] = 0;
    g.prompt = prompt;
    eb = t2w_request_encode(&rq, &len);
    send_frames(bad, eb, len, NULL, 0, 0);
    expect_error(bad, T2__ERROR_CODE__ERROR_TOO_LARGE, "prompt of 2 MiB");
    free(eb);
    free(prompt);
    g.prompt = "hello there";

    send_frames(bad, valid, valid_len, valid, 4, 1);
    expect_error(bad, T2__ERROR_CODE__ERROR_BAD_REQUEST, "two payload frames");
    zmq_send(bad, valid, 3, 0);   /* no empty delimiter */
    expect_error(bad, T2__ERROR_CODE__ERROR_BAD_REQUEST, "missing delimiter");
    ping_ok(good, "framing errors");

    /* oversized: beyond ZMQ_MAXMSGSIZE the daemon's socket drops this connection */
    size_t huge = (17u << 20);
    char *hb = calloc(1, huge);
    void *hog = dealer(ctx, argv[1]);
    int quick = 2000;
    zmq_setsockopt(hog, ZMQ_RCVTIMEO, &quick, sizeof quick);
    send_frames(hog, hb, huge, NULL, 0, 0);
    free(hb);
    T2__Reply *r = recv_reply(hog);
    CHECK(r == NULL || r->error, "a 17 MiB frame was answered without an error");
    printf("ok   %-40s -> %s\n", "frame of 17 MiB", r ? "error reply" : "connection dropped, no reply");
    t2w_reply_free(r);
    zmq_close(hog);
    ping_ok(good, "an oversized frame");

    free(valid);
    zmq_close(bad);
    zmq_close(good);
    zmq_ctx_term(ctx);
    if (failures) fprintf(stderr, "rawclient: %d check(s) failed\n", failures);
    else printf("rawclient: all checks passed\n");
    return failures ? 1 : 0;
}
