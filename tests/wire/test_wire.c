/* The wire helpers (proto/wire*.c): request decoding and every field limit, hostile frames (every
 * prefix of a valid encoding, random bytes, bit flips, oversized frames), replies, CURVE key files, and
 * the synchronous client against a small ROUTER server in a thread (plain and CURVE with a ZAP handler). */
#include "wire.h"

#include "util.h"

#include <check.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

static char *g_dir;
static void setup(void) { g_dir = tu_mkdtemp(); }
static void teardown(void) {
    tu_rm_rf(g_dir);
    free(g_dir);
}

/* ---------------- a rich valid request ---------------- */

/* Everything a generate request can carry, on the stack of the caller (fields point into rg). */
typedef struct rich {
    T2__Request req;
    T2__GenerateRequest gen;
    T2__ChatMessage m[3];
    T2__ChatMessage *mp[3];
    T2__Sampling s;
    char *stops[2];
    T2__MixPart parts[2];
    T2__MixPart *pp[2];
    float apm[4];
} rich;

static void rich_init(rich *r) {
    memset(r, 0, sizeof *r);
    t2w_request_init(&r->req, 0x123456789abcdefULL);
    t2__generate_request__init(&r->gen);
    static const char *roles[] = {"system", "user", "assistant"};
    static const char *texts[] = {"You are terse.", "What is 2+2? \xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", "4"};
    for (int i = 0; i < 3; i++) {
        t2__chat_message__init(&r->m[i]);
        r->m[i].role = (char *)roles[i];
        r->m[i].content = (char *)texts[i];
        r->mp[i] = &r->m[i];
    }
    r->gen.n_messages = 3;
    r->gen.messages = r->mp;
    t2__sampling__init(&r->s);
    r->s.max_tokens = 64;
    r->s.temperature = 0.7f;
    r->s.top_p = 0.9f;
    r->s.top_k = 40;
    r->s.seed = 42;
    r->stops[0] = "\n\n";
    r->stops[1] = "</s>";
    r->s.n_stop = 2;
    r->s.stop = r->stops;
    r->gen.sampling = &r->s;
    for (int i = 0; i < 2; i++) {
        t2__mix_part__init(&r->parts[i]);
        r->pp[i] = &r->parts[i];
    }
    r->parts[0].expert = "math";
    r->parts[0].alpha = 0.25f;
    r->parts[1].expert = "alice/code-v2";
    for (int i = 0; i < 4; i++) r->apm[i] = 0.1f * (float)i;
    r->parts[1].n_alpha_per_matrix = 4;
    r->parts[1].alpha_per_matrix = r->apm;
    r->gen.n_mix = 2;
    r->gen.mix = r->pp;
    r->gen.task_id = "task-17";
    r->gen.examples = "/data/few.jsonl";
    r->gen.dispatch_settings = "{\"k\": 3}";
    r->gen.stream = 1;
    r->req.body_case = T2__REQUEST__BODY_GENERATE;
    r->req.generate = &r->gen;
}

static uint8_t *encode(const T2__Request *r, size_t *len) {
    uint8_t *b = t2w_request_encode(r, len);
    ck_assert_ptr_nonnull(b);
    return b;
}

START_TEST(test_roundtrip_generate) {
    rich r;
    rich_init(&r);
    char msg[256];
    ck_assert_int_eq(t2w_request_check(&r.req, msg, sizeof msg), T2__ERROR_CODE__ERROR_NONE);
    size_t len;
    uint8_t *b = encode(&r.req, &len);
    T2__ErrorCode code = 99;
    T2__Request *d = t2w_request_decode(b, len, &code, msg, sizeof msg);
    ck_assert_msg(d != NULL, "decode: %s", msg);
    ck_assert_int_eq(code, T2__ERROR_CODE__ERROR_NONE);
    ck_assert_uint_eq(d->version, T2W_VERSION);
    ck_assert_uint_eq(d->id, 0x123456789abcdefULL);
    ck_assert_uint_eq(t2w_request_peek_id(b, len), 0x123456789abcdefULL);
    ck_assert_int_eq(d->body_case, T2__REQUEST__BODY_GENERATE);
    const T2__GenerateRequest *g = d->generate;
    ck_assert_uint_eq(g->n_messages, 3);
    for (int i = 0; i < 3; i++) {
        ck_assert_str_eq(g->messages[i]->role, r.m[i].role);
        ck_assert_str_eq(g->messages[i]->content, r.m[i].content);
    }
    ck_assert_str_eq(g->prompt, "");
    ck_assert_uint_eq(g->sampling->max_tokens, 64);
    ck_assert_float_eq(g->sampling->temperature, 0.7f);
    ck_assert_float_eq(g->sampling->top_p, 0.9f);
    ck_assert_uint_eq(g->sampling->top_k, 40);
    ck_assert_uint_eq(g->sampling->seed, 42);
    ck_assert_uint_eq(g->sampling->n_stop, 2);
    ck_assert_str_eq(g->sampling->stop[1], "</s>");
    ck_assert_uint_eq(g->n_mix, 2);
    ck_assert_str_eq(g->mix[1]->expert, "alice/code-v2");
    ck_assert_float_eq(g->mix[0]->alpha, 0.25f);
    ck_assert_uint_eq(g->mix[1]->n_alpha_per_matrix, 4);
    ck_assert_float_eq(g->mix[1]->alpha_per_matrix[3], 0.3f);
    ck_assert_str_eq(g->task_id, "task-17");
    ck_assert_str_eq(g->dispatch_settings, "{\"k\": 3}");
    ck_assert(g->stream);
    ck_assert(!g->base_model);
    t2w_request_free(d);
    free(b);
}
END_TEST

/* One minimal valid request of every kind round-trips and passes the checks. */
START_TEST(test_roundtrip_every_kind) {
    T2__Request r;
    T2__Ping ping = T2__PING__INIT;
    T2__JobSubmit js = T2__JOB_SUBMIT__INIT;
    T2__JobRef jr = T2__JOB_REF__INIT;
    T2__JobList jl = T2__JOB_LIST__INIT;
    T2__ExpertRef er = T2__EXPERT_REF__INIT;
    T2__ExpertImport ei = T2__EXPERT_IMPORT__INIT;
    T2__ExpertPublish ep = T2__EXPERT_PUBLISH__INIT;
    T2__Cancel cn = T2__CANCEL__INIT;
    T2__GenerateRequest g = T2__GENERATE_REQUEST__INIT;
    js.kind = "train";
    js.trainer = "reinforce";
    js.dataset = "gsm8k";
    js.expert = "math";
    js.settings = "{\"steps\": 10}";
    jr.id = 5;
    jl.state = "running";
    jl.limit = 20;
    er.name = "math";
    ei.name = "imported";
    uint8_t data[3] = {1, 2, 3};
    ei.data.data = data;
    ei.data.len = 3;
    ep.name = "math";
    ep.publish = 1;
    cn.request_id = 9;
    g.prompt = "raw prompt";
    g.base_model = 1;
    struct { T2__Request__BodyCase c; void *body; } kinds[] = {
        {T2__REQUEST__BODY_PING, &ping},        {T2__REQUEST__BODY_INFO, &ping},
        {T2__REQUEST__BODY_STATS, &ping},       {T2__REQUEST__BODY_PLUGIN_LIST, &ping},
        {T2__REQUEST__BODY_EXPERT_LIST, &ping}, {T2__REQUEST__BODY_GENERATE, &g},
        {T2__REQUEST__BODY_JOB_SUBMIT, &js},    {T2__REQUEST__BODY_JOB_GET, &jr},
        {T2__REQUEST__BODY_JOB_CANCEL, &jr},    {T2__REQUEST__BODY_JOB_WATCH, &jr},
        {T2__REQUEST__BODY_JOB_LOG, &jr},       {T2__REQUEST__BODY_JOB_LIST, &jl},
        {T2__REQUEST__BODY_EXPERT_SHOW, &er},   {T2__REQUEST__BODY_EXPERT_DELETE, &er},
        {T2__REQUEST__BODY_EXPERT_EXPORT, &er}, {T2__REQUEST__BODY_EXPERT_IMPORT, &ei},
        {T2__REQUEST__BODY_EXPERT_PUBLISH, &ep}, {T2__REQUEST__BODY_CANCEL, &cn},
    };
    /* The empty messages (Ping, InfoRequest, ...) share one layout, so a Ping stands in for each. */
    for (size_t i = 0; i < sizeof kinds / sizeof *kinds; i++) {
        t2w_request_init(&r, 100 + i);
        r.body_case = kinds[i].c;
        r.ping = kinds[i].body;
        size_t len;
        uint8_t *b = encode(&r, &len);
        char msg[256];
        T2__ErrorCode code;
        T2__Request *d = t2w_request_decode(b, len, &code, msg, sizeof msg);
        ck_assert_msg(d != NULL, "kind %d: %s", (int)kinds[i].c, msg);
        ck_assert_int_eq(d->body_case, kinds[i].c);
        ck_assert_uint_eq(d->id, 100 + i);
        if (kinds[i].c == T2__REQUEST__BODY_EXPERT_IMPORT) {
            ck_assert_uint_eq(d->expert_import->data.len, 3);
            ck_assert_int_eq(memcmp(d->expert_import->data.data, data, 3), 0);
        }
        if (kinds[i].c == T2__REQUEST__BODY_JOB_SUBMIT) ck_assert_str_eq(d->job_submit->settings, "{\"steps\": 10}");
        t2w_request_free(d);
        free(b);
    }
}
END_TEST

/* ---------------- hostile frames ---------------- */

START_TEST(test_every_prefix) {
    rich r;
    rich_init(&r);
    size_t len;
    uint8_t *b = encode(&r.req, &len);
    int decoded = 0;
    for (size_t n = 0; n < len; n++) {
        /* A copy of exactly n bytes, so that ASan sees any read past the prefix. */
        uint8_t *p = malloc(n ? n : 1);
        memcpy(p, b, n);
        char msg[256] = "";
        T2__ErrorCode code = 99;
        T2__Request *d = t2w_request_decode(p, n, &code, msg, sizeof msg);
        if (d) {
            decoded++;
            ck_assert_int_eq(code, T2__ERROR_CODE__ERROR_NONE);
            ck_assert_int_eq(t2w_request_check(d, NULL, 0), T2__ERROR_CODE__ERROR_NONE);
            t2w_request_free(d);
        } else {
            ck_assert_msg(code == T2__ERROR_CODE__ERROR_BAD_REQUEST || code == T2__ERROR_CODE__ERROR_VERSION,
                          "prefix %zu: code %d", n, code);
            ck_assert_msg(msg[0] != 0, "prefix %zu: no message", n);
        }
        /* The id (field 2) follows the version (field 1, 2 bytes): every prefix past it knows the id. */
        uint64_t id = t2w_request_peek_id(p, n);
        if (n >= 12) ck_assert_uint_eq(id, r.req.id);
        free(p);
    }
    /* The body is the last field; a cut inside it never yields a complete request. */
    ck_assert_int_eq(decoded, 0);
    free(b);
}
END_TEST

START_TEST(test_random_garbage) {
    tu_rng rng = {0x9e3779b97f4a7c15ULL};
    for (int it = 0; it < 20000; it++) {
        size_t n = (size_t)(tu_next(&rng) % 300);
        uint8_t *p = malloc(n ? n : 1);
        for (size_t i = 0; i < n; i++) p[i] = (uint8_t)tu_next(&rng);
        char msg[256];
        T2__ErrorCode code;
        T2__Request *d = t2w_request_decode(p, n, &code, msg, sizeof msg);
        if (d) {
            ck_assert_int_eq(t2w_request_check(d, NULL, 0), T2__ERROR_CODE__ERROR_NONE);
            t2w_request_free(d);
        } else {
            ck_assert_int_ne(code, T2__ERROR_CODE__ERROR_NONE);
        }
        (void)t2w_request_peek_id(p, n);
        T2__Reply *rp = t2w_reply_decode(p, n, msg, sizeof msg);
        t2w_reply_free(rp);
        free(p);
    }
}
END_TEST

START_TEST(test_bit_flips) {
    rich r;
    rich_init(&r);
    size_t len;
    uint8_t *b = encode(&r.req, &len);
    tu_rng rng = {77};
    int refused = 0, accepted = 0;
    for (int it = 0; it < 20000; it++) {
        uint8_t *p = malloc(len);
        memcpy(p, b, len);
        int flips = 1 + (int)(tu_next(&rng) % 4);
        for (int f = 0; f < flips; f++) p[tu_next(&rng) % len] ^= (uint8_t)(1u << (tu_next(&rng) % 8));
        char msg[256];
        T2__ErrorCode code;
        T2__Request *d = t2w_request_decode(p, len, &code, msg, sizeof msg);
        if (d) {
            accepted++;
            ck_assert_int_eq(t2w_request_check(d, NULL, 0), T2__ERROR_CODE__ERROR_NONE);
            t2w_request_free(d);
        } else {
            refused++;
            ck_assert_int_ne(code, T2__ERROR_CODE__ERROR_NONE);
            ck_assert(msg[0] != 0);
        }
        free(p);
    }
    ck_assert_int_gt(refused, 0);
    ck_assert_int_gt(accepted, 0);   /* a flip inside a text field can leave a valid request */
    free(b);
}
END_TEST

START_TEST(test_oversized_frame) {
    size_t n = (size_t)T2W_MAX_FRAME + 1;
    uint8_t *p = calloc(n, 1);
    ck_assert_ptr_nonnull(p);
    char msg[256];
    T2__ErrorCode code;
    ck_assert_ptr_null(t2w_request_decode(p, n, &code, msg, sizeof msg));
    ck_assert_int_eq(code, T2__ERROR_CODE__ERROR_TOO_LARGE);
    ck_assert_ptr_nonnull(strstr(msg, "larger than"));
    ck_assert_ptr_null(t2w_reply_decode(p, n, msg, sizeof msg));
    ck_assert_ptr_nonnull(strstr(msg, "larger than"));
    /* Encoding refuses a request beyond the frame limit and says how large it would be. */
    T2__Request r;
    T2__ExpertImport ei = T2__EXPERT_IMPORT__INIT;
    t2w_request_init(&r, 1);
    ei.name = "big";
    ei.data.data = p;
    ei.data.len = n;
    r.body_case = T2__REQUEST__BODY_EXPERT_IMPORT;
    r.expert_import = &ei;
    size_t len = 0;
    ck_assert_ptr_null(t2w_request_encode(&r, &len));
    ck_assert_uint_gt(len, T2W_MAX_FRAME);
    free(p);
}
END_TEST

START_TEST(test_empty_and_unknown_body) {
    char msg[256];
    T2__ErrorCode code;
    /* An empty frame is a valid protobuf encoding of an all-default Request: version 0. */
    ck_assert_ptr_null(t2w_request_decode("", 0, &code, msg, sizeof msg));
    ck_assert_int_eq(code, T2__ERROR_CODE__ERROR_VERSION);
    /* version 100, id 3, and field 99 (unknown to this build) as an empty message. */
    const uint8_t unknown[] = {0x08, 100, 0x10, 3, 0x9a, 0x06, 0x00};
    ck_assert_ptr_null(t2w_request_decode(unknown, sizeof unknown, &code, msg, sizeof msg));
    ck_assert_int_eq(code, T2__ERROR_CODE__ERROR_BAD_REQUEST);
    ck_assert_ptr_nonnull(strstr(msg, "no body"));
    ck_assert_uint_eq(t2w_request_peek_id(unknown, sizeof unknown), 3);
    ck_assert_ptr_null(t2w_request_decode(NULL, 5, &code, msg, sizeof msg));
    ck_assert_int_eq(code, T2__ERROR_CODE__ERROR_BAD_REQUEST);
}
END_TEST

START_TEST(test_version) {
    T2__Request r;
    T2__Ping ping = T2__PING__INIT;
    char msg[256];
    T2__ErrorCode code;
    uint32_t versions[] = {200, 0, 99, 100, 199, 150};
    int ok[] = {0, 0, 0, 1, 1, 1};
    for (int i = 0; i < 6; i++) {
        t2w_request_init(&r, 1);
        r.version = versions[i];
        r.body_case = T2__REQUEST__BODY_PING;
        r.ping = &ping;
        size_t len;
        uint8_t *b = encode(&r, &len);
        T2__Request *d = t2w_request_decode(b, len, &code, msg, sizeof msg);
        if (ok[i]) {
            ck_assert_msg(d != NULL, "version %u: %s", versions[i], msg);
            t2w_request_free(d);
        } else {
            ck_assert_ptr_null(d);
            ck_assert_int_eq(code, T2__ERROR_CODE__ERROR_VERSION);
            ck_assert_ptr_nonnull(strstr(msg, "1.00"));   /* ours */
            char theirs[16];
            snprintf(theirs, sizeof theirs, "%u.%02u", versions[i] / 100, versions[i] % 100);
            ck_assert_msg(strstr(msg, theirs) != NULL, "\"%s\" does not name %s", msg, theirs);
            ck_assert_uint_eq(t2w_request_peek_id(b, len), 1);
        }
        free(b);
    }
}
END_TEST

/* ---------------- every limit ---------------- */

static char *repeat(char c, size_t n) {
    char *s = malloc(n + 1);
    memset(s, c, n);
    s[n] = 0;
    return s;
}

/* Check (and, through an encode/decode round trip, decode) a request: the code and a message naming
 * `field`. */
static void expect(const T2__Request *r, T2__ErrorCode want, const char *field) {
    char msg[512];
    T2__ErrorCode got = t2w_request_check(r, msg, sizeof msg);
    ck_assert_msg(got == want, "%s: code %d (%s), want %d: %s", field, got, t2w_error_name(got), want, msg);
    if (want != T2__ERROR_CODE__ERROR_NONE)
        ck_assert_msg(strstr(msg, field) != NULL, "message \"%s\" does not name \"%s\"", msg, field);
    size_t len;
    uint8_t *b = t2w_request_encode(r, &len);
    ck_assert_ptr_nonnull(b);
    T2__ErrorCode code;
    T2__Request *d = t2w_request_decode(b, len, &code, msg, sizeof msg);
    ck_assert_int_eq(code, want);
    ck_assert(want == T2__ERROR_CODE__ERROR_NONE ? d != NULL : d == NULL);
    if (want != T2__ERROR_CODE__ERROR_NONE) ck_assert_ptr_nonnull(strstr(msg, field));
    t2w_request_free(d);
    free(b);
}

#define BAD T2__ERROR_CODE__ERROR_BAD_REQUEST
#define BIG T2__ERROR_CODE__ERROR_TOO_LARGE
#define OK T2__ERROR_CODE__ERROR_NONE

START_TEST(test_generate_limits) {
    rich r;
    char *s;

    rich_init(&r);
    r.gen.n_messages = 0;
    r.gen.prompt = s = repeat('x', T2W_MAX_TEXT);
    expect(&r.req, OK, "");
    free(s);
    r.gen.prompt = s = repeat('x', T2W_MAX_TEXT + 1);
    expect(&r.req, BIG, "generate.prompt");
    free(s);
    r.gen.prompt = "\xff\xfe";
    expect(&r.req, BAD, "generate.prompt");
    r.gen.prompt = "";
    expect(&r.req, BAD, "prompt or messages is required");

    rich_init(&r);
    r.gen.prompt = "both";
    expect(&r.req, BAD, "not both");

    rich_init(&r);
    T2__ChatMessage many[T2W_MAX_MESSAGES + 1], *mp[T2W_MAX_MESSAGES + 1];
    for (int i = 0; i <= T2W_MAX_MESSAGES; i++) {
        t2__chat_message__init(&many[i]);
        many[i].role = "user";
        many[i].content = "hi";
        mp[i] = &many[i];
    }
    r.gen.messages = mp;
    r.gen.n_messages = T2W_MAX_MESSAGES;
    expect(&r.req, OK, "");
    r.gen.n_messages = T2W_MAX_MESSAGES + 1;
    expect(&r.req, BIG, "generate.messages");

    rich_init(&r);
    r.m[0].role = "robot";
    expect(&r.req, BAD, "generate.messages[0].role");
    rich_init(&r);
    r.m[1].content = "ok \xed\xa0\x80 surrogate";
    expect(&r.req, BAD, "generate.messages[1].content");
    rich_init(&r);
    r.m[2].content = s = repeat('y', T2W_MAX_TEXT + 1);
    expect(&r.req, BIG, "generate.messages[2].content");
    free(s);

    rich_init(&r);
    r.s.temperature = -0.5f;
    expect(&r.req, BAD, "generate.sampling.temperature");
    r.s.temperature = NAN;
    expect(&r.req, BAD, "generate.sampling.temperature");
    r.s.temperature = 1000.0f;
    expect(&r.req, BAD, "generate.sampling.temperature");
    rich_init(&r);
    r.s.top_p = 1.5f;
    expect(&r.req, BAD, "generate.sampling.top_p");
    r.s.top_p = -INFINITY;
    expect(&r.req, BAD, "generate.sampling.top_p");
    r.s.top_p = 1.0f;
    expect(&r.req, OK, "");
    rich_init(&r);
    r.s.max_tokens = T2W_MAX_TOKENS + 1;
    expect(&r.req, BAD, "generate.sampling.max_tokens");
    rich_init(&r);
    r.s.top_k = T2W_MAX_TOKENS + 1;
    expect(&r.req, BAD, "generate.sampling.top_k");

    rich_init(&r);
    char *stops[T2W_MAX_STOPS + 1];
    for (int i = 0; i <= T2W_MAX_STOPS; i++) stops[i] = "x";
    r.s.stop = stops;
    r.s.n_stop = T2W_MAX_STOPS;
    expect(&r.req, OK, "");
    r.s.n_stop = T2W_MAX_STOPS + 1;
    expect(&r.req, BIG, "generate.sampling.stop");
    r.s.n_stop = 3;
    stops[2] = "";
    expect(&r.req, BAD, "generate.sampling.stop[2]");
    stops[2] = s = repeat('z', T2W_MAX_STOP_LEN + 1);
    expect(&r.req, BIG, "generate.sampling.stop[2]");
    free(s);

    rich_init(&r);
    T2__MixPart parts[T2W_MAX_MIX + 1], *pp[T2W_MAX_MIX + 1];
    for (int i = 0; i <= T2W_MAX_MIX; i++) {
        t2__mix_part__init(&parts[i]);
        parts[i].expert = "e";
        parts[i].alpha = 1.0f / 17;
        pp[i] = &parts[i];
    }
    r.gen.mix = pp;
    r.gen.n_mix = T2W_MAX_MIX;
    expect(&r.req, OK, "");
    r.gen.n_mix = T2W_MAX_MIX + 1;
    expect(&r.req, BIG, "generate.mix");
    r.gen.n_mix = 2;
    parts[1].expert = "";
    expect(&r.req, BAD, "generate.mix[1].expert is required");
    parts[1].expert = "../../etc/passwd";
    expect(&r.req, BAD, "generate.mix[1].expert");
    parts[1].expert = ".hidden";
    expect(&r.req, BAD, "generate.mix[1].expert");
    parts[1].expert = "a/b/c";
    expect(&r.req, BAD, "generate.mix[1].expert");
    parts[1].expert = "sp ace";
    expect(&r.req, BAD, "generate.mix[1].expert");
    parts[1].expert = s = repeat('n', T2W_MAX_NAME + 1);
    expect(&r.req, BIG, "generate.mix[1].expert");
    free(s);
    parts[1].expert = s = repeat('n', T2W_MAX_NAME);
    expect(&r.req, OK, "");
    free(s);
    parts[1].expert = "e";
    parts[1].alpha = INFINITY;
    expect(&r.req, BAD, "generate.mix[1].alpha");
    parts[1].alpha = -2.0f;   /* negative weights extrapolate: allowed */
    expect(&r.req, OK, "");
    float *apm = calloc(T2W_MAX_ALPHA + 1, sizeof *apm);
    parts[0].alpha_per_matrix = apm;
    parts[0].n_alpha_per_matrix = T2W_MAX_ALPHA;
    expect(&r.req, OK, "");
    parts[0].n_alpha_per_matrix = T2W_MAX_ALPHA + 1;
    expect(&r.req, BIG, "generate.mix[0].alpha_per_matrix");
    parts[0].n_alpha_per_matrix = 10;
    apm[7] = NAN;
    expect(&r.req, BAD, "generate.mix[0].alpha_per_matrix[7]");
    free(apm);

    rich_init(&r);
    r.gen.dispatch = "cem";
    expect(&r.req, BAD, "set dispatch or mix, not both");
    r.gen.n_mix = 0;
    expect(&r.req, OK, "");
    r.gen.dispatch = "my plugin";
    expect(&r.req, BAD, "generate.dispatch");
    r.gen.dispatch = "alice/cem";   /* plugin names have no owner part */
    expect(&r.req, BAD, "generate.dispatch");
    rich_init(&r);
    r.gen.base_model = 1;
    expect(&r.req, BAD, "base_model excludes dispatch and mix");
    rich_init(&r);
    r.gen.task_id = "a\nb";
    expect(&r.req, BAD, "generate.task_id");
    r.gen.task_id = s = repeat('t', T2W_MAX_NAME + 1);
    expect(&r.req, BIG, "generate.task_id");
    free(s);
    rich_init(&r);
    r.gen.examples = s = repeat('/', T2W_MAX_PATH + 1);
    expect(&r.req, BIG, "generate.examples");
    free(s);
    rich_init(&r);
    r.gen.dispatch_settings = s = repeat('{', T2W_MAX_TEXT + 1);
    expect(&r.req, BIG, "generate.dispatch_settings");
    free(s);
}
END_TEST

START_TEST(test_other_limits) {
    T2__Request r;
    T2__JobSubmit js = T2__JOB_SUBMIT__INIT;
    T2__Sampling smp = T2__SAMPLING__INIT;
    char *s;
    t2w_request_init(&r, 1);
    r.body_case = T2__REQUEST__BODY_JOB_SUBMIT;
    r.job_submit = &js;
    js.kind = "train";
    js.trainer = "reinforce";
    js.dataset = "gsm8k";
    js.expert = "math";
    expect(&r, OK, "");
    js.kind = "sleep";
    expect(&r, BAD, "job_submit.kind");
    js.kind = "train";
    js.expert = "";
    expect(&r, BAD, "job_submit.expert is required");
    js.kind = "eval";   /* eval needs no expert name */
    expect(&r, OK, "");
    js.dataset = "";
    expect(&r, BAD, "job_submit.dataset is required");
    js.dataset = s = repeat('d', T2W_MAX_PATH + 1);
    expect(&r, BIG, "job_submit.dataset");
    free(s);
    js.dataset = "gsm8k";
    js.trainer = "rein force";
    expect(&r, BAD, "job_submit.trainer");
    js.trainer = "";
    js.grader = "../x";
    expect(&r, BAD, "job_submit.grader");
    js.grader = "";
    js.settings = s = repeat(' ', T2W_MAX_TEXT + 1);
    expect(&r, BIG, "job_submit.settings");
    free(s);
    js.settings = "";
    js.label = "bad\tlabel";
    expect(&r, BAD, "job_submit.label");
    js.label = "math word problems";
    js.split = "../test";
    expect(&r, BAD, "job_submit.split");
    js.split = "test";
    js.limit = T2W_MAX_EVAL_LIMIT + 1;
    expect(&r, BAD, "job_submit.limit");
    js.limit = 100;
    js.sampling = &smp;
    smp.top_p = 2;
    expect(&r, BAD, "job_submit.sampling.top_p");
    smp.top_p = 0;
    T2__MixPart p = T2__MIX_PART__INIT, *pp = &p;
    p.expert = "math";
    p.alpha = 1;
    js.mix = &pp;
    js.n_mix = 1;
    expect(&r, OK, "");
    js.dispatch = "prompt";
    expect(&r, BAD, "job_submit: set dispatch or mix");

    T2__JobRef jr = T2__JOB_REF__INIT;
    struct { T2__Request__BodyCase c; const char *name; } refs[] = {
        {T2__REQUEST__BODY_JOB_GET, "job_get.id"},
        {T2__REQUEST__BODY_JOB_CANCEL, "job_cancel.id"},
        {T2__REQUEST__BODY_JOB_WATCH, "job_watch.id"},
        {T2__REQUEST__BODY_JOB_LOG, "job_log.id"},
    };
    for (int i = 0; i < 4; i++) {
        t2w_request_init(&r, 2);
        r.body_case = refs[i].c;
        r.job_get = &jr;
        jr.id = 0;
        expect(&r, BAD, refs[i].name);
        jr.id = -3;
        expect(&r, BAD, refs[i].name);
        jr.id = 3;
        expect(&r, OK, "");
    }

    T2__JobList jl = T2__JOB_LIST__INIT;
    t2w_request_init(&r, 3);
    r.body_case = T2__REQUEST__BODY_JOB_LIST;
    r.job_list = &jl;
    expect(&r, OK, "");
    jl.state = "sleeping";
    expect(&r, BAD, "job_list.state");
    jl.state = "failed";
    jl.limit = T2W_MAX_JOB_LIST + 1;
    expect(&r, BAD, "job_list.limit");

    T2__ExpertRef er = T2__EXPERT_REF__INIT;
    struct { T2__Request__BodyCase c; const char *name; int owner; } names[] = {
        {T2__REQUEST__BODY_EXPERT_SHOW, "expert_show.name", 1},
        {T2__REQUEST__BODY_EXPERT_DELETE, "expert_delete.name", 0},
        {T2__REQUEST__BODY_EXPERT_EXPORT, "expert_export.name", 1},
    };
    for (int i = 0; i < 3; i++) {
        t2w_request_init(&r, 4);
        r.body_case = names[i].c;
        r.expert_show = &er;
        er.name = "";
        expect(&r, BAD, names[i].name);
        er.name = "a/../b";
        expect(&r, BAD, names[i].name);
        er.name = "bob/math";   /* another tenant's published expert: show and export only */
        expect(&r, names[i].owner ? OK : BAD, names[i].owner ? "" : names[i].name);
        er.name = s = repeat('e', T2W_MAX_NAME + 1);
        expect(&r, BIG, names[i].name);
        free(s);
    }
    T2__ExpertPublish ep = T2__EXPERT_PUBLISH__INIT;
    t2w_request_init(&r, 5);
    r.body_case = T2__REQUEST__BODY_EXPERT_PUBLISH;
    r.expert_publish = &ep;
    expect(&r, BAD, "expert_publish.name");

    T2__ExpertImport ei = T2__EXPERT_IMPORT__INIT;
    t2w_request_init(&r, 6);
    r.body_case = T2__REQUEST__BODY_EXPERT_IMPORT;
    r.expert_import = &ei;
    ei.name = "imp";
    expect(&r, BAD, "expert_import.data");
    uint8_t byte = 1;
    ei.data.data = &byte;
    ei.data.len = 1;
    ei.label = s = repeat('l', T2W_MAX_NAME + 1);
    expect(&r, BIG, "expert_import.label");
    free(s);
    ei.label = "";
    ei.name = "-x";
    expect(&r, BAD, "expert_import.name");

    T2__Cancel cn = T2__CANCEL__INIT;
    t2w_request_init(&r, 7);
    r.body_case = T2__REQUEST__BODY_CANCEL;
    r.cancel = &cn;
    expect(&r, BAD, "cancel.request_id");

    t2w_request_init(&r, 8);
    expect(&r, BAD, "no body");
}
END_TEST

/* ---------------- replies ---------------- */

START_TEST(test_replies) {
    size_t len;
    uint8_t *b = t2w_error_reply(77, T2__ERROR_CODE__ERROR_NOT_FOUND, "no expert \"x\"", &len);
    ck_assert_ptr_nonnull(b);
    char msg[256];
    T2__Reply *r = t2w_reply_decode(b, len, msg, sizeof msg);
    ck_assert_msg(r != NULL, "%s", msg);
    ck_assert_uint_eq(r->id, 77);
    ck_assert_uint_eq(r->version, T2W_VERSION);
    ck_assert(r->final);
    ck_assert_ptr_nonnull(r->error);
    ck_assert_int_eq(r->error->code, T2__ERROR_CODE__ERROR_NOT_FOUND);
    ck_assert_str_eq(r->error->message, "no expert \"x\"");
    ck_assert_str_eq(t2w_error_name(r->error->code), "not found");
    t2w_reply_free(r);
    free(b);

    /* A message that is too long, or not UTF-8, is cut to a valid prefix. */
    char *big = repeat('m', T2W_MAX_TEXT + 10);
    big[5] = (char)0xff;
    b = t2w_error_reply(1, T2__ERROR_CODE__ERROR_INTERNAL, big, &len);
    r = t2w_reply_decode(b, len, msg, sizeof msg);
    ck_assert_ptr_nonnull(r);
    ck_assert_str_eq(r->error->message, "mmmmm");
    t2w_reply_free(r);
    free(b);
    free(big);

    T2__Reply rep;
    T2__GenerateDone done = T2__GENERATE_DONE__INIT;
    T2__Decision dec = T2__DECISION__INIT;
    t2w_reply_init(&rep, 5, 0);
    ck_assert(!rep.final);
    done.text = "four";
    done.n_tokens = 2;
    done.stop = "eos";
    done.first_pass_seconds = 0.125;
    dec.dispatch = "prompt";
    dec.label = "math";
    done.decision = &dec;
    rep.body_case = T2__REPLY__BODY_DONE;
    rep.done = &done;
    rep.final = 1;
    b = t2w_reply_encode(&rep, &len);
    r = t2w_reply_decode(b, len, msg, sizeof msg);
    ck_assert_ptr_nonnull(r);
    ck_assert_int_eq(r->body_case, T2__REPLY__BODY_DONE);
    ck_assert_str_eq(r->done->text, "four");
    ck_assert_str_eq(r->done->decision->label, "math");
    ck_assert_double_eq(r->done->first_pass_seconds, 0.125);
    ck_assert_ptr_null(r->error);
    t2w_reply_free(r);
    /* Every prefix of a reply decodes or is refused with a message, without crashing. */
    for (size_t n = 0; n < len; n++) {
        uint8_t *p = malloc(n ? n : 1);
        memcpy(p, b, n);
        msg[0] = 0;
        r = t2w_reply_decode(p, n, msg, sizeof msg);
        if (!r) ck_assert_ptr_nonnull(strstr(msg, "malformed or truncated reply"));
        t2w_reply_free(r);
        free(p);
    }
    free(b);
    ck_assert_str_eq(t2w_error_name((T2__ErrorCode)1234), "unknown error");
}
END_TEST

/* ---------------- key files ---------------- */

static mode_t file_mode(const char *p) {
    struct stat st;
    ck_assert_int_eq(stat(p, &st), 0);
    return st.st_mode & 0777;
}

START_TEST(test_keys_roundtrip) {
    umask(022);
    char *key = tu_join(g_dir, "alice.key"), *pubf = tu_join(g_dir, "alice.pub");
    char msg[512];
    /* Many pairs, so that Z85's punctuation (= : # ; [ ...) lands at every position of a value. */
    for (int i = 0; i < 300; i++) {
        char pub[41], sec[41], rp[41], rs[41];
        ck_assert_int_eq(zmq_curve_keypair(pub, sec), 0);
        ck_assert(t2w_key_valid(pub) && t2w_key_valid(sec));
        ck_assert_msg(t2w_keyfile_write(key, pub, sec, msg, sizeof msg) == T2_OK, "%s", msg);
        ck_assert_msg(t2w_keyfile_write(pubf, pub, NULL, msg, sizeof msg) == T2_OK, "%s", msg);
        ck_assert_msg(t2w_keyfile_read(key, rp, rs, msg, sizeof msg) == T2_OK, "pair %d (%s %s): %s", i, pub, sec, msg);
        ck_assert_str_eq(rp, pub);
        ck_assert_str_eq(rs, sec);
        ck_assert_msg(t2w_keyfile_read(pubf, rp, NULL, msg, sizeof msg) == T2_OK, "%s", msg);
        ck_assert_str_eq(rp, pub);
        ck_assert_int_eq(t2w_server_key_resolve(pubf, rp, msg, sizeof msg), T2_OK);
        ck_assert_str_eq(rp, pub);
        ck_assert_int_eq(t2w_server_key_resolve(pub, rp, msg, sizeof msg), T2_OK);
        ck_assert_str_eq(rp, pub);
        ck_assert_int_eq(t2w_server_key_resolve(key, rp, msg, sizeof msg), T2_OK);   /* a .key has the public too */
        ck_assert_str_eq(rp, pub);
    }
    ck_assert_int_eq(file_mode(key), 0600);
    ck_assert_int_eq(file_mode(pubf), 0644);
    /* The .pub has no secret. */
    char rp[41], rs[41];
    ck_assert_int_eq(t2w_keyfile_read(pubf, rp, rs, msg, sizeof msg), T2_ERR_NOT_FOUND);
    ck_assert_ptr_nonnull(strstr(msg, "no secret key"));
    /* No temporary files are left behind. */
    char *tmpl = tu_join(g_dir, "alice.key.tmp");
    ck_assert_int_ne(access(tmpl, F_OK), 0);
    free(tmpl);
    free(key);
    free(pubf);
}
END_TEST

static void expect_bad_keyfile(const char *text, t2_status want, const char *needle) {
    char *p = tu_join(g_dir, "k.key");
    tu_write_str(p, text);
    char pub[41], sec[41], msg[512] = "";
    t2_status st = t2w_keyfile_read(p, pub, sec, msg, sizeof msg);
    ck_assert_msg(st == want, "\"%s\": status %d, want %d (%s)", text, st, want, msg);
    ck_assert_msg(strstr(msg, needle) != NULL, "\"%s\": message \"%s\" lacks \"%s\"", text, msg, needle);
    free(p);
}

START_TEST(test_keys_bad_files) {
    char pub[41], sec[41], pub2[41], sec2[41], text[512], msg[512];
    zmq_curve_keypair(pub, sec);
    zmq_curve_keypair(pub2, sec2);
    expect_bad_keyfile("", T2_ERR_FORMAT, "not a key file");
    expect_bad_keyfile("hello world\n", T2_ERR_FORMAT, "not a key file");
    expect_bad_keyfile("public = tooshort\n", T2_ERR_FORMAT, "bad Z85 key");
    snprintf(text, sizeof text, "public = %.39s~\n", pub);   /* '~' is not a Z85 character */
    expect_bad_keyfile(text, T2_ERR_FORMAT, "bad Z85 key");
    snprintf(text, sizeof text, "public = %s\nsecret = %s\n", pub, sec2);
    expect_bad_keyfile(text, T2_ERR_FORMAT, "does not belong");
    snprintf(text, sizeof text, "public = %s\ncolour = blue\n", pub);
    expect_bad_keyfile(text, T2_ERR_FORMAT, "line 2: not a key file: unknown key \"colour\"");
    snprintf(text, sizeof text, "[keys]\npublic = %s\n", pub);
    expect_bad_keyfile(text, T2_ERR_FORMAT, "unexpected section");
    snprintf(text, sizeof text, "public = %s\npublic = %s\n", pub, pub2);
    expect_bad_keyfile(text, T2_ERR_FORMAT, "given twice");
    snprintf(text, sizeof text, "secret = %s\n", sec);
    expect_bad_keyfile(text, T2_ERR_FORMAT, "no public key");
    /* Binary junk and a large file. */
    char *p = tu_join(g_dir, "junk.key");
    unsigned char junk[600];
    for (int i = 0; i < 600; i++) junk[i] = (unsigned char)(i * 37 + 11);
    tu_write_bytes(p, junk, sizeof junk);
    ck_assert_int_eq(t2w_keyfile_read(p, pub2, sec2, msg, sizeof msg), T2_ERR_FORMAT);
    char *large = repeat('#', 10000);
    tu_write_str(p, large);
    ck_assert_int_eq(t2w_keyfile_read(p, pub2, sec2, msg, sizeof msg), T2_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(msg, "larger than"));
    free(large);
    free(p);
    /* Not there, a folder. */
    p = tu_join(g_dir, "missing.key");
    ck_assert_int_eq(t2w_keyfile_read(p, pub2, sec2, msg, sizeof msg), T2_ERR_IO);
    ck_assert_ptr_nonnull(strstr(msg, "missing.key"));
    free(p);
    ck_assert_int_eq(t2w_keyfile_read(g_dir, pub2, sec2, msg, sizeof msg), T2_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(msg, "not a regular file"));
    /* Writing refuses bad keys and unwritable places. */
    p = tu_join(g_dir, "w.key");
    ck_assert_int_eq(t2w_keyfile_write(p, "short", NULL, msg, sizeof msg), T2_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(msg, "bad Z85 key"));
    free(p);
    p = tu_join(g_dir, "no/such/dir.key");
    ck_assert_int_eq(t2w_keyfile_write(p, pub, sec, msg, sizeof msg), T2_ERR_IO);
    free(p);
    /* A server key that is neither a key nor a file. */
    ck_assert_int_eq(t2w_server_key_resolve("not-a-key", pub2, msg, sizeof msg), T2_ERR_IO);
    ck_assert_ptr_nonnull(strstr(msg, "not-a-key"));
    ck_assert_int_eq(t2w_server_key_resolve("012345678901234567890123456789012345678~", pub2, msg, sizeof msg),
                     T2_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(msg, "bad Z85 key"));
}
END_TEST

/* ---------------- the client against a small server ---------------- */

enum { SRV_NORMAL = 0, SRV_CLOSE_ON_REQUEST = 1 };

typedef struct server {
    void *ctx;
    char endpoint[512];
    int mode;
    int curve;
    char pub[41], sec[41];        /* the server's keys (curve) */
    char client_pub[41];          /* the one client key the ZAP handler accepts */
    pthread_t thread, zap_thread;
    void *sock, *zap;
    int n_requests;
} server;

static void send_reply(void *sock, zmq_msg_t *ident, const T2__Reply *r) {
    size_t len;
    void *b = t2w_reply_encode(r, &len);
    zmq_msg_t id;
    zmq_msg_init(&id);
    zmq_msg_copy(&id, ident);
    zmq_msg_send(&id, sock, ZMQ_SNDMORE);
    zmq_send(sock, "", 0, ZMQ_SNDMORE);
    zmq_send(sock, b, len, 0);
    free(b);
}

static void *server_main(void *arg) {
    server *s = arg;
    for (;;) {
        /* [identity][empty][request]: the request is the last frame. */
        zmq_msg_t ident, part;
        zmq_msg_init(&ident);
        if (zmq_msg_recv(&ident, s->sock, 0) < 0) break;
        uint8_t *payload = NULL;
        size_t plen = 0;
        int more = zmq_msg_more(&ident);
        while (more) {
            zmq_msg_init(&part);
            if (zmq_msg_recv(&part, s->sock, 0) < 0) break;
            more = zmq_msg_more(&part);
            free(payload);
            plen = zmq_msg_size(&part);
            payload = malloc(plen ? plen : 1);
            memcpy(payload, zmq_msg_data(&part), plen);
            zmq_msg_close(&part);
        }
        s->n_requests++;
        if (s->mode == SRV_CLOSE_ON_REQUEST) {
            free(payload);
            zmq_msg_close(&ident);
            break;
        }
        char msg[256];
        T2__ErrorCode code;
        T2__Request *q = t2w_request_decode(payload, plen, &code, msg, sizeof msg);
        T2__Reply r;
        if (!q) {
            size_t len;
            void *b = t2w_error_reply(t2w_request_peek_id(payload, plen), code, msg, &len);
            zmq_msg_t id;
            zmq_msg_init(&id);
            zmq_msg_copy(&id, &ident);
            zmq_msg_send(&id, s->sock, ZMQ_SNDMORE);
            zmq_send(s->sock, "", 0, ZMQ_SNDMORE);
            zmq_send(s->sock, b, len, 0);
            free(b);
        } else if (q->body_case == T2__REQUEST__BODY_PING) {
            T2__Pong pong = T2__PONG__INIT;
            t2w_reply_init(&r, q->id, 1);
            r.body_case = T2__REPLY__BODY_PONG;
            r.pong = &pong;
            send_reply(s->sock, &ident, &r);
        } else if (q->body_case == T2__REQUEST__BODY_INFO) {
            /* First a stray reply to another id (the client must skip it), then the answer. */
            T2__Pong pong = T2__PONG__INIT;
            t2w_reply_init(&r, q->id + 1000, 1);
            r.body_case = T2__REPLY__BODY_PONG;
            r.pong = &pong;
            send_reply(s->sock, &ident, &r);
            T2__InfoReply info = T2__INFO_REPLY__INIT;
            info.tenant = "tester";
            info.protocol_version = T2W_VERSION;
            t2w_reply_init(&r, q->id, 1);
            r.body_case = T2__REPLY__BODY_INFO;
            r.info = &info;
            send_reply(s->sock, &ident, &r);
        } else if (q->body_case == T2__REQUEST__BODY_GENERATE) {
            static const char *pieces[] = {"The ", "answer ", "is 4."};
            for (int i = 0; i < 3; i++) {
                T2__GenerateChunk ch = T2__GENERATE_CHUNK__INIT;
                ch.text = (char *)pieces[i];
                ch.n_tokens = (uint32_t)i + 1;
                t2w_reply_init(&r, q->id, 0);
                r.body_case = T2__REPLY__BODY_CHUNK;
                r.chunk = &ch;
                send_reply(s->sock, &ident, &r);
            }
            T2__GenerateDone done = T2__GENERATE_DONE__INIT;
            done.text = "The answer is 4.";
            done.stop = "eos";
            t2w_reply_init(&r, q->id, 1);
            r.body_case = T2__REPLY__BODY_DONE;
            r.done = &done;
            send_reply(s->sock, &ident, &r);
        } else {
            size_t len;
            void *b = t2w_error_reply(q->id, T2__ERROR_CODE__ERROR_NOT_FOUND, "not in this test server", &len);
            zmq_msg_t id;
            zmq_msg_init(&id);
            zmq_msg_copy(&id, &ident);
            zmq_msg_send(&id, s->sock, ZMQ_SNDMORE);
            zmq_send(s->sock, "", 0, ZMQ_SNDMORE);
            zmq_send(s->sock, b, len, 0);
            free(b);
        }
        t2w_request_free(q);
        free(payload);
        zmq_msg_close(&ident);
    }
    zmq_close(s->sock);
    return NULL;
}

/* ZAP (RFC 27): accept exactly s->client_pub. */
static void *zap_main(void *arg) {
    server *s = arg;
    void *rep = s->zap;
    for (;;) {
        char f[7][256];
        size_t fl[7];
        int n = 0, more = 1;
        while (more) {
            int k = zmq_recv(rep, n < 7 ? f[n] : f[6], 255, 0);
            if (k < 0) goto out;
            if (n < 7) fl[n] = (size_t)k;
            n++;
            int m;
            size_t ml = sizeof m;
            zmq_getsockopt(rep, ZMQ_RCVMORE, &m, &ml);
            more = m;
        }
        /* version, request id, domain, address, identity, mechanism, credentials (32-byte key) */
        char z85[41] = "";
        if (n >= 7 && fl[6] == 32) zmq_z85_encode(z85, (uint8_t *)f[6], 32);
        int ok = !strcmp(z85, s->client_pub);
        zmq_send(rep, "1.0", 3, ZMQ_SNDMORE);
        zmq_send(rep, f[1], fl[1], ZMQ_SNDMORE);
        zmq_send(rep, ok ? "200" : "400", 3, ZMQ_SNDMORE);
        zmq_send(rep, ok ? "OK" : "unknown key", ok ? 2 : 11, ZMQ_SNDMORE);
        zmq_send(rep, ok ? "tester" : "", ok ? 6 : 0, ZMQ_SNDMORE);
        zmq_send(rep, "", 0, 0);
    }
out:
    zmq_close(rep);
    return NULL;
}

static void server_start(server *s, int mode, int curve) {
    memset(s, 0, sizeof *s);
    s->mode = mode;
    s->curve = curve;
    s->ctx = zmq_ctx_new();
    snprintf(s->endpoint, sizeof s->endpoint, "ipc://%s/t2d.sock", g_dir);
    if (curve) {
        zmq_curve_keypair(s->pub, s->sec);
        /* Bound before the server socket exists: without a ZAP handler CURVE would let anyone in. */
        s->zap = zmq_socket(s->ctx, ZMQ_REP);
        int zero = 0;
        zmq_setsockopt(s->zap, ZMQ_LINGER, &zero, sizeof zero);
        ck_assert_int_eq(zmq_bind(s->zap, "inproc://zeromq.zap.01"), 0);
        pthread_create(&s->zap_thread, NULL, zap_main, s);
    }
    s->sock = zmq_socket(s->ctx, ZMQ_ROUTER);
    int zero = 0, one = 1;
    zmq_setsockopt(s->sock, ZMQ_LINGER, &zero, sizeof zero);
    if (curve) {
        zmq_setsockopt(s->sock, ZMQ_CURVE_SERVER, &one, sizeof one);
        zmq_setsockopt(s->sock, ZMQ_CURVE_SECRETKEY, s->sec, 41);
    }
    ck_assert_int_eq(zmq_bind(s->sock, s->endpoint), 0);
    pthread_create(&s->thread, NULL, server_main, s);
}

static void server_stop(server *s) {
    zmq_ctx_shutdown(s->ctx);
    pthread_join(s->thread, NULL);
    if (s->curve) pthread_join(s->zap_thread, NULL);
    zmq_ctx_term(s->ctx);
}

static t2w_client *connect_or_fail(const t2w_client_opts *o) {
    char msg[512];
    t2w_client *c = t2w_client_connect(o, msg, sizeof msg);
    ck_assert_msg(c != NULL, "connect: %s", msg);
    return c;
}

static T2__Request ping_request(T2__Ping *ping) {
    T2__Request r;
    t2__ping__init(ping);
    t2w_request_init(&r, 0);
    r.body_case = T2__REQUEST__BODY_PING;
    r.ping = ping;
    return r;
}

START_TEST(test_client_unreachable) {
    char ep[600];
    snprintf(ep, sizeof ep, "ipc://%s/nobody.sock", g_dir);
    t2w_client_opts o = {.endpoint = ep};
    t2w_client *c = connect_or_fail(&o);
    T2__Ping ping;
    T2__Request r = ping_request(&ping);
    T2__Reply *rep = (T2__Reply *)1;
    ck_assert_int_eq(t2w_client_call(c, &r, &rep, 200), T2_ERR_IO);
    ck_assert_ptr_null(rep);
    ck_assert_int_eq(t2w_client_failure(c), T2W_FAIL_UNREACHABLE);
    ck_assert_ptr_nonnull(strstr(t2w_client_error(c), "cannot reach the daemon"));
    ck_assert_ptr_nonnull(strstr(t2w_client_error(c), ep));
    t2w_client_free(c);
}
END_TEST

/* A readable interrupt descriptor (a signal handler's self-pipe) ends a wait that would last forever. */
START_TEST(test_client_interrupt_fd) {
    char ep[600];
    snprintf(ep, sizeof ep, "ipc://%s/nobody.sock", g_dir);
    int fds[2];
    ck_assert_int_eq(pipe(fds), 0);
    ck_assert_int_eq(write(fds[1], "i", 1), 1);
    t2w_client_opts o = {.endpoint = ep, .interrupt_fd = fds[0]};
    t2w_client *c = connect_or_fail(&o);
    T2__Ping ping;
    T2__Request r = ping_request(&ping);
    T2__Reply *rep;
    ck_assert_int_eq(t2w_client_call(c, &r, &rep, -1), T2_ERR_IO);
    ck_assert_int_eq(t2w_client_failure(c), T2W_FAIL_INTERRUPTED);
    ck_assert_int_eq(t2w_client_next(c, 1, &rep, -1), T2_ERR_IO);   /* not drained: still interrupted */
    ck_assert_int_eq(t2w_client_failure(c), T2W_FAIL_INTERRUPTED);
    t2w_client_free(c);
    close(fds[0]);
    close(fds[1]);
}
END_TEST

START_TEST(test_client_bad_options) {
    char msg[512];
    t2w_client_opts o = {.endpoint = "http://x"};
    ck_assert_ptr_null(t2w_client_connect(&o, msg, sizeof msg));
    ck_assert_ptr_nonnull(strstr(msg, "tcp://"));
    o.endpoint = NULL;
    ck_assert_ptr_null(t2w_client_connect(&o, msg, sizeof msg));
    o.endpoint = "tcp://127.0.0.1:1";
    o.key_file = "/nonexistent.key";
    ck_assert_ptr_null(t2w_client_connect(&o, msg, sizeof msg));
    ck_assert_ptr_nonnull(strstr(msg, "server-key"));
    o.server_key = "bad";
    ck_assert_ptr_null(t2w_client_connect(&o, msg, sizeof msg));
    ck_assert_ptr_nonnull(strstr(msg, "bad"));
    o.endpoint = "tcp://";   /* ZeroMQ refuses it */
    o.key_file = NULL;
    o.server_key = NULL;
    ck_assert_ptr_null(t2w_client_connect(&o, msg, sizeof msg));
    ck_assert_ptr_nonnull(strstr(msg, "cannot connect"));
}
END_TEST

START_TEST(test_client_calls) {
    server s;
    server_start(&s, SRV_NORMAL, 0);
    t2w_client_opts o = {.endpoint = s.endpoint};
    t2w_client *c = connect_or_fail(&o);
    T2__Ping ping;
    T2__Request r = ping_request(&ping);
    T2__Reply *rep;
    ck_assert_msg(t2w_client_call(c, &r, &rep, 10000) == T2_OK, "%s", t2w_client_error(c));
    ck_assert_uint_ne(r.id, 0);
    ck_assert_uint_eq(rep->id, r.id);
    ck_assert_int_eq(rep->body_case, T2__REPLY__BODY_PONG);
    ck_assert(rep->final);
    t2w_reply_free(rep);

    /* The stray reply to another id is skipped. */
    T2__InfoRequest ir = T2__INFO_REQUEST__INIT;
    t2w_request_init(&r, 0);
    r.body_case = T2__REQUEST__BODY_INFO;
    r.info = &ir;
    ck_assert_int_eq(t2w_client_call(c, &r, &rep, 10000), T2_OK);
    ck_assert_int_eq(rep->body_case, T2__REPLY__BODY_INFO);
    ck_assert_str_eq(rep->info->tenant, "tester");
    t2w_reply_free(rep);

    /* A stream: three chunks, then the final reply. */
    T2__GenerateRequest g = T2__GENERATE_REQUEST__INIT;
    g.prompt = "2+2?";
    g.stream = 1;
    t2w_request_init(&r, 0);
    r.body_case = T2__REQUEST__BODY_GENERATE;
    r.generate = &g;
    ck_assert_int_eq(t2w_client_call(c, &r, &rep, 10000), T2_OK);
    char text[64] = "";
    int chunks = 0;
    while (!rep->final) {
        ck_assert_int_eq(rep->body_case, T2__REPLY__BODY_CHUNK);
        strcat(text, rep->chunk->text);
        chunks++;
        t2w_reply_free(rep);
        ck_assert_int_eq(t2w_client_next(c, r.id, &rep, 10000), T2_OK);
    }
    ck_assert_int_eq(chunks, 3);
    ck_assert_str_eq(text, "The answer is 4.");
    ck_assert_int_eq(rep->body_case, T2__REPLY__BODY_DONE);
    ck_assert_str_eq(rep->done->text, text);
    t2w_reply_free(rep);

    /* An error from the daemon is a reply, not a failure. */
    T2__ExpertRef er = T2__EXPERT_REF__INIT;
    er.name = "nope";
    t2w_request_init(&r, 0);
    r.body_case = T2__REQUEST__BODY_EXPERT_SHOW;
    r.expert_show = &er;
    ck_assert_int_eq(t2w_client_call(c, &r, &rep, 10000), T2_OK);
    ck_assert_ptr_nonnull(rep->error);
    ck_assert_int_eq(rep->error->code, T2__ERROR_CODE__ERROR_NOT_FOUND);
    t2w_reply_free(rep);

    /* Nothing more comes for that id: a timeout, not a hang. */
    ck_assert_int_eq(t2w_client_next(c, r.id, &rep, 50), T2_ERR_IO);
    ck_assert_int_eq(t2w_client_failure(c), T2W_FAIL_TIMEOUT);
    t2w_client_free(c);

    /* A raw DEALER sending garbage and a truncated request gets error replies with the id it could read. */
    void *ctx = zmq_ctx_new(), *d = zmq_socket(ctx, ZMQ_DEALER);
    int zero = 0;
    zmq_setsockopt(d, ZMQ_LINGER, &zero, sizeof zero);
    ck_assert_int_eq(zmq_connect(d, s.endpoint), 0);
    rich rr;
    rich_init(&rr);
    size_t len;
    uint8_t *b = encode(&rr.req, &len);
    const struct { const void *p; size_t n; T2__ErrorCode code; uint64_t id; } cases[] = {
        {"\xff\xff\xff\xff", 4, T2__ERROR_CODE__ERROR_BAD_REQUEST, 0},
        {b, len / 2, T2__ERROR_CODE__ERROR_BAD_REQUEST, rr.req.id},
    };
    for (int i = 0; i < 2; i++) {
        zmq_send(d, "", 0, ZMQ_SNDMORE);
        zmq_send(d, cases[i].p, cases[i].n, 0);
        char empty[8];
        ck_assert_int_eq(zmq_recv(d, empty, sizeof empty, 0), 0);
        zmq_msg_t m;
        zmq_msg_init(&m);
        ck_assert_int_gt(zmq_msg_recv(&m, d, 0), 0);
        char msg[256];
        T2__Reply *er2 = t2w_reply_decode(zmq_msg_data(&m), zmq_msg_size(&m), msg, sizeof msg);
        ck_assert_ptr_nonnull(er2);
        ck_assert_ptr_nonnull(er2->error);
        ck_assert_int_eq(er2->error->code, cases[i].code);
        ck_assert_uint_eq(er2->id, cases[i].id);
        ck_assert_ptr_nonnull(strstr(er2->error->message, "malformed or truncated"));
        t2w_reply_free(er2);
        zmq_msg_close(&m);
    }
    free(b);
    zmq_close(d);
    zmq_ctx_term(ctx);
    server_stop(&s);
}
END_TEST

START_TEST(test_client_connection_lost) {
    server s;
    server_start(&s, SRV_CLOSE_ON_REQUEST, 0);
    t2w_client_opts o = {.endpoint = s.endpoint};
    t2w_client *c = connect_or_fail(&o);
    T2__Ping ping;
    T2__Request r = ping_request(&ping);
    T2__Reply *rep;
    /* The server closes its socket on the request: the client notices instead of waiting forever. */
    ck_assert_int_eq(t2w_client_call(c, &r, &rep, -1), T2_ERR_IO);
    ck_assert_int_eq(t2w_client_failure(c), T2W_FAIL_UNREACHABLE);
    ck_assert_ptr_nonnull(strstr(t2w_client_error(c), "lost"));
    t2w_client_free(c);
    server_stop(&s);
}
END_TEST

START_TEST(test_client_curve) {
    server s;
    server_start(&s, SRV_NORMAL, 1);
    char msg[512];
    char cpub[41], csec[41], opub[41], osec[41];
    zmq_curve_keypair(cpub, csec);
    zmq_curve_keypair(opub, osec);
    memcpy(s.client_pub, cpub, 41);
    char *good = tu_join(g_dir, "good.key"), *other = tu_join(g_dir, "other.key"), *spub = tu_join(g_dir, "server.pub");
    ck_assert_int_eq(t2w_keyfile_write(good, cpub, csec, msg, sizeof msg), T2_OK);
    ck_assert_int_eq(t2w_keyfile_write(other, opub, osec, msg, sizeof msg), T2_OK);
    ck_assert_int_eq(t2w_keyfile_write(spub, s.pub, NULL, msg, sizeof msg), T2_OK);

    /* The known key (server key from its .pub file) gets through. */
    t2w_client_opts o = {.endpoint = s.endpoint, .key_file = good, .server_key = spub};
    t2w_client *c = connect_or_fail(&o);
    T2__Ping ping;
    T2__Request r = ping_request(&ping);
    T2__Reply *rep;
    ck_assert_msg(t2w_client_call(c, &r, &rep, 10000) == T2_OK, "%s", t2w_client_error(c));
    ck_assert_int_eq(rep->body_case, T2__REPLY__BODY_PONG);
    t2w_reply_free(rep);
    t2w_client_free(c);

    /* Another key is refused by the ZAP handler: DENIED, at once (not after the long timeout). */
    o.key_file = other;
    o.server_key = s.pub;
    c = connect_or_fail(&o);
    r = ping_request(&ping);
    ck_assert_int_eq(t2w_client_call(c, &r, &rep, 60000), T2_ERR_IO);
    ck_assert_int_eq(t2w_client_failure(c), T2W_FAIL_DENIED);
    ck_assert_ptr_nonnull(strstr(t2w_client_error(c), "refused"));
    t2w_client_free(c);

    /* A fresh key pair (no key file) is unknown too. */
    o.key_file = NULL;
    c = connect_or_fail(&o);
    r = ping_request(&ping);
    ck_assert_int_eq(t2w_client_call(c, &r, &rep, 60000), T2_ERR_IO);
    ck_assert_int_eq(t2w_client_failure(c), T2W_FAIL_DENIED);
    t2w_client_free(c);

    /* The wrong server key, and no CURVE at all: the handshake fails; never a reply. */
    o.key_file = good;
    o.server_key = opub;
    c = connect_or_fail(&o);
    r = ping_request(&ping);
    ck_assert_int_eq(t2w_client_call(c, &r, &rep, 300), T2_ERR_IO);
    ck_assert(t2w_client_failure(c) == T2W_FAIL_HANDSHAKE || t2w_client_failure(c) == T2W_FAIL_UNREACHABLE);
    t2w_client_free(c);
    o.key_file = NULL;
    o.server_key = NULL;
    c = connect_or_fail(&o);
    r = ping_request(&ping);
    ck_assert_int_eq(t2w_client_call(c, &r, &rep, 300), T2_ERR_IO);
    ck_assert(t2w_client_failure(c) == T2W_FAIL_HANDSHAKE || t2w_client_failure(c) == T2W_FAIL_UNREACHABLE);
    t2w_client_free(c);
    free(good);
    free(other);
    free(spub);
    server_stop(&s);
    ck_assert_int_eq(s.n_requests, 1);   /* only the accepted client got a request through */
}
END_TEST

static Suite *wire_suite(void) {
    Suite *s = suite_create("wire");
    TCase *t = tcase_create("requests");
    tcase_add_test(t, test_roundtrip_generate);
    tcase_add_test(t, test_roundtrip_every_kind);
    tcase_add_test(t, test_every_prefix);
    tcase_add_test(t, test_random_garbage);
    tcase_add_test(t, test_bit_flips);
    tcase_add_test(t, test_oversized_frame);
    tcase_add_test(t, test_empty_and_unknown_body);
    tcase_add_test(t, test_version);
    tcase_add_test(t, test_generate_limits);
    tcase_add_test(t, test_other_limits);
    tcase_add_test(t, test_replies);
    suite_add_tcase(s, t);
    t = tcase_create("keys");
    tcase_add_checked_fixture(t, setup, teardown);
    tcase_add_test(t, test_keys_roundtrip);
    tcase_add_test(t, test_keys_bad_files);
    suite_add_tcase(s, t);
    t = tcase_create("client");
    tcase_add_checked_fixture(t, setup, teardown);
    tcase_add_test(t, test_client_unreachable);
    tcase_add_test(t, test_client_bad_options);
    tcase_add_test(t, test_client_interrupt_fd);
    tcase_add_test(t, test_client_calls);
    tcase_add_test(t, test_client_connection_lost);
    tcase_add_test(t, test_client_curve);
    suite_add_tcase(s, t);
    return s;
}

int main(void) { return tu_run(wire_suite()); }
