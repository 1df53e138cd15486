/* wire.h — what the daemon and the client share on top of the generated protobuf-c code (t2.pb-c.h):
 * the size limits of the protocol, a request decoder that checks every field against them, encoding
 * and reply-building helpers, CURVE key files, and a small synchronous client (DEALER socket).
 *
 * Framing (see proto/t2.proto): a client DEALER sends [empty delimiter frame][serialized Request]; the
 * daemon's ROUTER sees [identity][empty][Request] and answers [identity][empty][Reply] — one or more
 * replies per request, all with its id, the last with final = true.
 *
 * Statuses are t2_status (t2/status.h). Messages go into a caller buffer (msg, cap) where given; they
 * name the offending field ("generate.sampling.top_p = 1.5 is outside [0, 1]"). */
#ifndef T2_WIRE_H
#define T2_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include <t2/status.h>

#include "t2.pb-c.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------- limits (the header comment of t2.proto) ---------------- */

#define T2W_MAX_FRAME (16u << 20)     /* bytes of one serialized Request or Reply */
#define T2W_MAX_TEXT (1u << 20)       /* bytes of a prompt, message content, settings JSON, label text */
#define T2W_MAX_NAME 128              /* bytes of a name: expert, plugin, trainer, grader, role, task id */
#define T2W_MAX_PATH 4096             /* bytes of a dataset spec (a known name or a path on the daemon) */
#define T2W_MAX_MESSAGES 64           /* chat messages in one generate request */
#define T2W_MAX_STOPS 16              /* stop strings */
#define T2W_MAX_STOP_LEN 256          /* bytes of one stop string */
#define T2W_MAX_MIX 16                /* experts in one mixture */
#define T2W_MAX_ALPHA 65536           /* alpha_per_matrix entries of one mixture part */
#define T2W_MAX_TOKENS (1u << 20)     /* sanity bound on max_tokens (the daemon also checks its context) */
#define T2W_MAX_TEMPERATURE 100.0f    /* sampling temperature, [0, this] */
#define T2W_MAX_JOB_LIST 10000        /* JobList.limit */
#define T2W_MAX_EVAL_LIMIT 100000000u /* JobSubmit.limit */

/* The protocol version this build speaks (T2__CONSTANTS__PROTOCOL_VERSION) and its major part. */
#define T2W_VERSION ((uint32_t)T2__CONSTANTS__PROTOCOL_VERSION)
#define T2W_VERSION_MAJOR(v) ((uint32_t)(v) / 100u)

/* ---------------- requests ---------------- */

/* Decode one request frame and check it completely: the frame size (ERROR_TOO_LARGE), the protobuf
 * encoding (ERROR_BAD_REQUEST, "malformed or truncated request"), the protocol major version
 * (ERROR_VERSION, naming both versions), that a body is set, and every field against the limits above
 * and the protocol's own rules (ERROR_TOO_LARGE for an over-long field or list, ERROR_BAD_REQUEST for
 * anything else: non-finite floats, temperature < 0, top_p outside [0, 1], an unknown role or job kind,
 * an unsafe expert name, prompt and messages both set ...). On failure returns NULL, sets *code (if
 * code) and writes a message naming the field into msg (if cap > 0). On success *code = ERROR_NONE.
 * Caller frees with t2w_request_free. */
T2__Request *t2w_request_decode(const void *buf, size_t len, T2__ErrorCode *code, char *msg, size_t cap);

/* Best-effort id of a request frame that t2w_request_decode refused (truncated, malformed, wrong
 * version), so the error reply can still carry it: scans the top-level fields for field 2 (id).
 * 0 when it cannot be found. Never reads beyond buf[len). */
uint64_t t2w_request_peek_id(const void *buf, size_t len);

/* Check an already-unpacked request the way t2w_request_decode does (everything except the frame
 * size and the encoding). Returns ERROR_NONE or the error code with a message in msg. Used by the
 * decoder and by clients that want to refuse a bad request before sending it. */
T2__ErrorCode t2w_request_check(const T2__Request *r, char *msg, size_t cap);

/* Free a request from t2w_request_decode (NULL-safe). */
void t2w_request_free(T2__Request *r);

/* t2__request__init(r) plus version = T2W_VERSION and the id. */
void t2w_request_init(T2__Request *r, uint64_t id);

/* Serialize a request (a message built on the stack with the generated _init functions is fine).
 * Returns a malloc'd buffer of *len bytes, or NULL when out of memory or larger than T2W_MAX_FRAME
 * (then *len is the size it would have had). Caller frees with free(). */
void *t2w_request_encode(const T2__Request *r, size_t *len);

/* ---------------- replies ---------------- */

/* t2__reply__init(r) plus version = T2W_VERSION, the request id and final. */
void t2w_reply_init(T2__Reply *r, uint64_t id, int final);

/* Serialize a reply. Returns a malloc'd buffer of *len bytes, or NULL when out of memory or larger than
 * T2W_MAX_FRAME (then *len is the size it would have had). Caller frees with free(). */
void *t2w_reply_encode(const T2__Reply *r, size_t *len);

/* Encode a final error reply for request `id` (message may be NULL; it is cut to T2W_MAX_TEXT).
 * Returns a malloc'd buffer of *len bytes or NULL when out of memory. Caller frees with free(). */
void *t2w_error_reply(uint64_t id, T2__ErrorCode code, const char *message, size_t *len);

/* Decode a reply frame: frame size and protobuf encoding only (a client should look at r->error and
 * r->body_case itself; submessages may be NULL, strings never are). NULL with a message on failure.
 * Caller frees with t2w_reply_free. */
T2__Reply *t2w_reply_decode(const void *buf, size_t len, char *msg, size_t cap);

/* Free a reply from t2w_reply_decode or the client (NULL-safe). */
void t2w_reply_free(T2__Reply *r);

/* "none", "bad request", "version", "not found", "denied", "quota", "busy", "internal", "plugin",
 * "too large", "cancelled", or "unknown error" for a code this build does not know. Borrowed, static. */
const char *t2w_error_name(T2__ErrorCode code);

/* ---------------- CURVE key files ----------------
 *
 * A key file is a small INI text:
 *
 *     # T2 CURVE key pair (ZeroMQ Z85)
 *     public = <40 Z85 characters>
 *     secret = <40 Z85 characters>
 *
 * NAME.key holds both (mode 0600); NAME.pub only the public line. Comments (#, ;) and blank lines are
 * allowed; any other key, a section, a line without '=', a repeated key or a key that is not 40 valid
 * Z85 characters is an error. */

#define T2W_KEY_LEN 40   /* Z85 characters of a 32-byte CURVE key; buffers are T2W_KEY_LEN + 1 */

/* 1 if s is exactly 40 characters that decode as Z85, else 0. */
int t2w_key_valid(const char *s);

/* Write a key file atomically (temporary file in the same directory, fsync, rename): the public key,
 * and the secret key when sec is non-NULL (the file is then created with mode 0600, else 0644).
 * Refuses invalid keys. Returns T2_OK or an error with a message. */
t2_status t2w_keyfile_write(const char *path, const char *pub, const char *sec, char *msg, size_t cap);

/* Read a key file. pub (41 bytes) receives the public key; sec (41 bytes, may be NULL) the secret key,
 * which must then be present, and must match the public key. Errors: T2_ERR_IO (cannot open),
 * T2_ERR_FORMAT ("not a key file", "bad Z85 key", unknown keys, mismatch), T2_ERR_NOT_FOUND (no secret
 * key in a file where one was asked for). */
t2_status t2w_keyfile_read(const char *path, char pub[T2W_KEY_LEN + 1], char sec[T2W_KEY_LEN + 1],
                           char *msg, size_t cap);

/* A server public key given as 40 Z85 characters or as the path of a key file (.pub or .key). */
t2_status t2w_server_key_resolve(const char *text_or_path, char pub[T2W_KEY_LEN + 1], char *msg, size_t cap);

/* ---------------- a small synchronous client ---------------- */

typedef struct t2w_client t2w_client;

typedef struct t2w_client_opts {
    const char *endpoint;     /* tcp://host:port or ipc://path (required) */
    const char *key_file;     /* client key file with the secret key (CURVE); NULL: none */
    const char *server_key;   /* the daemon's public key: Z85 text or a key file; NULL: plain (no CURVE).
                               * With server_key but no key_file the client uses a fresh key pair. */
    void *zmq_ctx;            /* a ZeroMQ context to share (threads of one process); NULL: its own */
    int interrupt_fd;         /* > 0: a descriptor (the read end of a self-pipe a signal handler writes to)
                               * whose readability ends every wait with T2W_FAIL_INTERRUPTED; the caller
                               * drains it. Race-free, unlike relying on EINTR. 0: none. */
} t2w_client_opts;

/* Why the last call failed, for mapping to exit codes. */
typedef enum t2w_fail {
    T2W_FAIL_NONE = 0,
    T2W_FAIL_UNREACHABLE,     /* no connection to the daemon came up within the timeout */
    T2W_FAIL_TIMEOUT,         /* the request went out but no (further) reply came within the timeout */
    T2W_FAIL_DENIED,          /* the CURVE handshake was refused by the daemon's authentication */
    T2W_FAIL_HANDSHAKE,       /* the handshake failed otherwise (wrong server key, plain vs CURVE) */
    T2W_FAIL_INTERRUPTED,     /* a signal interrupted the wait (the caller's handler decides) */
    T2W_FAIL_PROTOCOL,        /* a malformed reply or a request that could not be encoded */
    T2W_FAIL_SYSTEM,          /* a local error: out of memory, bad options, ZeroMQ setup */
} t2w_fail;

/* Create a DEALER socket and connect it (ZMQ_LINGER 0, ZMQ_IMMEDIATE 1 so that nothing is queued for
 * a daemon that is not there, and CURVE keys when asked). Connecting is asynchronous: an unreachable
 * daemon shows at the first call. NULL with a message on bad options or unreadable keys.
 * Caller frees with t2w_client_free. */
t2w_client *t2w_client_connect(const t2w_client_opts *o, char *msg, size_t cap);

/* Close the socket (and the context when it is the client's own). NULL-safe. */
void t2w_client_free(t2w_client *c);

/* Send a request without waiting. Sets req->version; assigns req->id a fresh id when it is 0 (and
 * leaves a given id alone). Waits at most timeout_ms (< 0: forever) for a connection. T2_OK, or
 * T2_ERR_IO (unreachable, handshake failure, interrupted), T2_ERR_RANGE (request too large), T2_ERR_NOMEM;
 * see t2w_client_failure and t2w_client_error. */
t2_status t2w_client_send(t2w_client *c, T2__Request *req, int timeout_ms);

/* Send a request and wait for its first reply (timeout_ms covers both; < 0: forever). On T2_OK,
 * *first is the reply (caller frees with t2w_reply_free) — which may carry an error from the daemon;
 * if it is not final, fetch the rest with t2w_client_next(c, req->id, ...). */
t2_status t2w_client_call(t2w_client *c, T2__Request *req, T2__Reply **first, int timeout_ms);

/* Wait for the next reply to request `id` (replies to other ids are dropped: this client has one
 * request in flight at a time, plus perhaps a Cancel). Caller frees *r with t2w_reply_free. */
t2_status t2w_client_next(t2w_client *c, uint64_t id, T2__Reply **r, int timeout_ms);

/* Why the last call failed (T2W_FAIL_NONE after a success), and a message saying so (borrowed, valid
 * until the next call on c). */
t2w_fail t2w_client_failure(const t2w_client *c);
const char *t2w_client_error(const t2w_client *c);

/* The endpoint the client connects to. Borrowed, valid until t2w_client_free. */
const char *t2w_client_endpoint(const t2w_client *c);

#ifdef __cplusplus
}
#endif
#endif
