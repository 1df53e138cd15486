/* wire.c — request decoding with a complete check of every field, encoding, reply helpers.
 *
 * The daemon treats every frame as hostile: protobuf-c bounds its allocations by the frame size, so
 * the frame size check comes first; after unpacking, every string is checked for its length limit and
 * for UTF-8 (the daemon stores and logs them as JSON, and jansson refuses invalid UTF-8), names that can
 * end up in file paths for a safe alphabet, and every float for being finite and in range. Whatever
 * is refused gets a message naming the field, in the dotted form of the .proto
 * ("generate.messages[2].role"). */
#include "wire.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct ck {
    char *msg;
    size_t cap;
    T2__ErrorCode code;
} ck;

__attribute__((format(printf, 3, 4))) static int fail(ck *k, T2__ErrorCode code, const char *fmt, ...) {
    k->code = code;
    if (k->msg && k->cap) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(k->msg, k->cap, fmt, ap);
        va_end(ap);
    }
    return -1;
}

/* Length of the valid UTF-8 prefix of s[0..n) (RFC 3629: no overlongs, no surrogates, ≤ U+10FFFF). */
static size_t utf8_valid_prefix(const unsigned char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        size_t len;
        unsigned lo = 0x80, hi = 0xBF;
        if (c < 0x80) { i++; continue; }
        else if (c >= 0xC2 && c <= 0xDF) len = 2;
        else if (c >= 0xE0 && c <= 0xEF) {
            len = 3;
            if (c == 0xE0) lo = 0xA0;
            if (c == 0xED) hi = 0x9F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            len = 4;
            if (c == 0xF0) lo = 0x90;
            if (c == 0xF4) hi = 0x8F;
        } else return i;
        if (i + len > n) return i;
        if (s[i + 1] < lo || s[i + 1] > hi) return i;
        for (size_t j = 2; j < len; j++)
            if (s[i + j] < 0x80 || s[i + j] > 0xBF) return i;
        i += len;
    }
    return n;
}

/* A string field: at most max bytes, valid UTF-8, and (when no_ctl) no control characters. */
static int check_str(ck *k, const char *field, const char *s, size_t max, int no_ctl) {
    if (!s) return 0;   /* protobuf-c never leaves strings NULL; a hand-built request may */
    size_t n = strlen(s);
    if (n > max) return fail(k, T2__ERROR_CODE__ERROR_TOO_LARGE, "%s is %zu bytes (at most %zu)", field, n, max);
    size_t ok = utf8_valid_prefix((const unsigned char *)s, n);
    if (ok != n) return fail(k, T2__ERROR_CODE__ERROR_BAD_REQUEST, "%s is not valid UTF-8 (at byte %zu)", field, ok);
    if (no_ctl)
        for (size_t i = 0; i < n; i++)
            if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
                return fail(k, T2__ERROR_CODE__ERROR_BAD_REQUEST, "%s contains a control character (at byte %zu)",
                            field, i);
    return 0;
}

static int name_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-' ||
           c == '.';
}

/* One segment of a name: [A-Za-z0-9_.-]+ not starting with '.' or '-'. */
static int segment_ok(const char *s, size_t n) {
    if (n == 0 || s[0] == '.' || s[0] == '-') return 0;
    for (size_t i = 0; i < n; i++)
        if (!name_char(s[i])) return 0;
    return 1;
}

/* A name that may reach a file path or a plugin lookup: ≤ T2W_MAX_NAME bytes of [A-Za-z0-9_.-], not
 * starting with '.' or '-'; with allow_owner, one "owner/name" qualification. */
static int check_name(ck *k, const char *field, const char *s, int required, int allow_owner) {
    if (!s || !*s) {
        if (required) return fail(k, T2__ERROR_CODE__ERROR_BAD_REQUEST, "%s is required", field);
        return 0;
    }
    size_t n = strlen(s);
    if (n > T2W_MAX_NAME)
        return fail(k, T2__ERROR_CODE__ERROR_TOO_LARGE, "%s is %zu bytes (at most %d)", field, n, T2W_MAX_NAME);
    const char *slash = allow_owner ? strchr(s, '/') : NULL;
    int ok = slash ? segment_ok(s, (size_t)(slash - s)) && segment_ok(slash + 1, n - (size_t)(slash - s) - 1)
                   : segment_ok(s, n);
    if (!ok)
        return fail(k, T2__ERROR_CODE__ERROR_BAD_REQUEST,
                    "%s \"%.*s\" is not a valid name (letters, digits, '_', '-', '.'; not starting with '.' or '-'%s)",
                    field, 64, s, allow_owner ? "; optionally owner/name" : "");
    return 0;
}

static int check_float(ck *k, const char *field, double v, double lo, double hi) {
    if (!isfinite(v)) return fail(k, T2__ERROR_CODE__ERROR_BAD_REQUEST, "%s is not a finite number", field);
    if (v < lo || v > hi) return fail(k, T2__ERROR_CODE__ERROR_BAD_REQUEST, "%s = %g is outside [%g, %g]", field, v, lo, hi);
    return 0;
}

static int check_count(ck *k, const char *field, size_t n, size_t max) {
    if (n > max) return fail(k, T2__ERROR_CODE__ERROR_TOO_LARGE, "%s has %zu entries (at most %zu)", field, n, max);
    return 0;
}

static int one_of(const char *s, const char *const *set) {
    for (; *set; set++)
        if (!strcmp(s, *set)) return 1;
    return 0;
}

static int check_sampling(ck *k, const char *pre, const T2__Sampling *s) {
    char f[96];
    if (!s) return 0;
    snprintf(f, sizeof f, "%s.sampling.max_tokens", pre);
    if (s->max_tokens > T2W_MAX_TOKENS)
        return fail(k, T2__ERROR_CODE__ERROR_BAD_REQUEST, "%s = %u is above %u", f, s->max_tokens, T2W_MAX_TOKENS);
    snprintf(f, sizeof f, "%s.sampling.temperature", pre);
    if (check_float(k, f, s->temperature, 0.0, T2W_MAX_TEMPERATURE)) return -1;
    snprintf(f, sizeof f, "%s.sampling.top_p", pre);
    if (check_float(k, f, s->top_p, 0.0, 1.0)) return -1;
    snprintf(f, sizeof f, "%s.sampling.top_k", pre);
    if (s->top_k > T2W_MAX_TOKENS)
        return fail(k, T2__ERROR_CODE__ERROR_BAD_REQUEST, "%s = %u is above %u", f, s->top_k, T2W_MAX_TOKENS);
    snprintf(f, sizeof f, "%s.sampling.stop", pre);
    if (check_count(k, f, s->n_stop, T2W_MAX_STOPS)) return -1;
    for (size_t i = 0; i < s->n_stop; i++) {
        snprintf(f, sizeof f, "%s.sampling.stop[%zu]", pre, i);
        if (!s->stop[i] || !*s->stop[i]) return fail(k, T2__ERROR_CODE__ERROR_BAD_REQUEST, "%s is empty", f);
        if (check_str(k, f, s->stop[i], T2W_MAX_STOP_LEN, 0)) return -1;
    }
    return 0;
}

static int check_mix(ck *k, const char *pre, T2__MixPart *const *mix, size_t n) {
    char f[96];
    snprintf(f, sizeof f, "%s.mix", pre);
    if (check_count(k, f, n, T2W_MAX_MIX)) return -1;
    for (size_t i = 0; i < n; i++) {
        const T2__MixPart *p = mix[i];
        snprintf(f, sizeof f, "%s.mix[%zu]", pre, i);
        if (!p) return fail(k, T2__ERROR_CODE__ERROR_BAD_REQUEST, "%s is missing", f);
        snprintf(f, sizeof f, "%s.mix[%zu].expert", pre, i);
        if (check_name(k, f, p->expert, 1, 1)) return -1;
        snprintf(f, sizeof f, "%s.mix[%zu].alpha", pre, i);
        if (!isfinite(p->alpha)) return fail(k, T2__ERROR_CODE__ERROR_BAD_REQUEST, "%s is not a finite number", f);
        snprintf(f, sizeof f, "%s.mix[%zu].alpha_per_matrix", pre, i);
        if (check_count(k, f, p->n_alpha_per_matrix, T2W_MAX_ALPHA)) return -1;
        for (size_t j = 0; j < p->n_alpha_per_matrix; j++)
            if (!isfinite(p->alpha_per_matrix[j])) {
                snprintf(f, sizeof f, "%s.mix[%zu].alpha_per_matrix[%zu]", pre, i, j);
                return fail(k, T2__ERROR_CODE__ERROR_BAD_REQUEST, "%s is not a finite number", f);
            }
    }
    return 0;
}

static int check_generate(ck *k, const T2__GenerateRequest *g) {
    static const char *const roles[] = {"system", "user", "assistant", NULL};
    char f[96];
    int has_prompt = g->prompt && *g->prompt;
    if (has_prompt && g->n_messages)
        return fail(k, T2__ERROR_CODE__ERROR_BAD_REQUEST, "generate: set prompt or messages, not both");
    if (!has_prompt && !g->n_messages)
        return fail(k, T2__ERROR_CODE__ERROR_BAD_REQUEST, "generate: prompt or messages is required");
    if (check_str(k, "generate.prompt", g->prompt, T2W_MAX_TEXT, 0)) return -1;
    if (check_count(k, "generate.messages", g->n_messages, T2W_MAX_MESSAGES)) return -1;
    for (size_t i = 0; i < g->n_messages; i++) {
        const T2__ChatMessage *m = g->messages[i];
        snprintf(f, sizeof f, "generate.messages[%zu]", i);
        if (!m) return fail(k, T2__ERROR_CODE__ERROR_BAD_REQUEST, "%s is missing", f);
        if (!m->role || !one_of(m->role, roles))
            return fail(k, T2__ERROR_CODE__ERROR_BAD_REQUEST, "%s.role \"%.32s\" is not system, user or assistant", f,
                        m->role ? m->role : "");
        snprintf(f, sizeof f, "generate.messages[%zu].content", i);
        if (check_str(k, f, m->content, T2W_MAX_TEXT, 0)) return -1;
    }
    if (check_sampling(k, "generate", g->sampling)) return -1;
    if (check_name(k, "generate.dispatch", g->dispatch, 0, 0)) return -1;
    if (check_mix(k, "generate", g->mix, g->n_mix)) return -1;
    if (g->dispatch && *g->dispatch && g->n_mix)
        return fail(k, T2__ERROR_CODE__ERROR_BAD_REQUEST, "generate: set dispatch or mix, not both");
    if (g->base_model && ((g->dispatch && *g->dispatch) || g->n_mix))
        return fail(k, T2__ERROR_CODE__ERROR_BAD_REQUEST, "generate: base_model excludes dispatch and mix");
    if (check_str(k, "generate.task_id", g->task_id, T2W_MAX_NAME, 1)) return -1;
    if (check_str(k, "generate.examples", g->examples, T2W_MAX_PATH, 1)) return -1;
    if (check_str(k, "generate.dispatch_settings", g->dispatch_settings, T2W_MAX_TEXT, 0)) return -1;
    return 0;
}

static int check_job_submit(ck *k, const T2__JobSubmit *j) {
    int train = j->kind && !strcmp(j->kind, "train"), eval = j->kind && !strcmp(j->kind, "eval");
    if (!train && !eval)
        return fail(k, T2__ERROR_CODE__ERROR_BAD_REQUEST, "job_submit.kind \"%.32s\" is not train or eval",
                    j->kind ? j->kind : "");
    if (check_name(k, "job_submit.trainer", j->trainer, 0, 0)) return -1;
    if (check_name(k, "job_submit.grader", j->grader, 0, 0)) return -1;
    if (!j->dataset || !*j->dataset) return fail(k, T2__ERROR_CODE__ERROR_BAD_REQUEST, "job_submit.dataset is required");
    if (check_str(k, "job_submit.dataset", j->dataset, T2W_MAX_PATH, 1)) return -1;
    if (check_name(k, "job_submit.expert", j->expert, train, 0)) return -1;
    if (check_str(k, "job_submit.label", j->label, T2W_MAX_NAME, 1)) return -1;
    if (check_str(k, "job_submit.settings", j->settings, T2W_MAX_TEXT, 0)) return -1;
    if (check_name(k, "job_submit.dispatch", j->dispatch, 0, 0)) return -1;
    if (check_mix(k, "job_submit", j->mix, j->n_mix)) return -1;
    if (j->dispatch && *j->dispatch && j->n_mix)
        return fail(k, T2__ERROR_CODE__ERROR_BAD_REQUEST, "job_submit: set dispatch or mix, not both");
    if (check_name(k, "job_submit.split", j->split, 0, 0)) return -1;
    if (j->limit > T2W_MAX_EVAL_LIMIT)
        return fail(k, T2__ERROR_CODE__ERROR_BAD_REQUEST, "job_submit.limit = %u is above %u", j->limit, T2W_MAX_EVAL_LIMIT);
    return check_sampling(k, "job_submit", j->sampling);
}

static int check_job_ref(ck *k, const char *field, const T2__JobRef *r) {
    if (r->id <= 0)
        return fail(k, T2__ERROR_CODE__ERROR_BAD_REQUEST, "%s.id = %lld is not a job id (positive)", field,
                    (long long)r->id);
    return 0;
}

static int check_body(ck *k, const T2__Request *r) {
    static const char *const states[] = {"", "queued", "running", "done", "failed", "cancelled", NULL};
    /* The oneof members share one pointer slot; a set case with a NULL message is a hand-built bug. */
    if (r->body_case != T2__REQUEST__BODY__NOT_SET && !r->ping)
        return fail(k, T2__ERROR_CODE__ERROR_BAD_REQUEST, "request body %d is set but empty", (int)r->body_case);
    switch (r->body_case) {
    case T2__REQUEST__BODY__NOT_SET:
        return fail(k, T2__ERROR_CODE__ERROR_BAD_REQUEST, "request has no body (an unknown request type?)");
    case T2__REQUEST__BODY_PING:
    case T2__REQUEST__BODY_INFO:
    case T2__REQUEST__BODY_PLUGIN_LIST:
    case T2__REQUEST__BODY_STATS:
    case T2__REQUEST__BODY_EXPERT_LIST:
        return 0;
    case T2__REQUEST__BODY_GENERATE: return check_generate(k, r->generate);
    case T2__REQUEST__BODY_JOB_SUBMIT: return check_job_submit(k, r->job_submit);
    case T2__REQUEST__BODY_JOB_GET: return check_job_ref(k, "job_get", r->job_get);
    case T2__REQUEST__BODY_JOB_CANCEL: return check_job_ref(k, "job_cancel", r->job_cancel);
    case T2__REQUEST__BODY_JOB_WATCH: return check_job_ref(k, "job_watch", r->job_watch);
    case T2__REQUEST__BODY_JOB_LOG: return check_job_ref(k, "job_log", r->job_log);
    case T2__REQUEST__BODY_JOB_LIST:
        if (!r->job_list->state || !one_of(r->job_list->state, states))
            return fail(k, T2__ERROR_CODE__ERROR_BAD_REQUEST,
                        "job_list.state \"%.32s\" is not queued, running, done, failed or cancelled",
                        r->job_list->state ? r->job_list->state : "");
        if (r->job_list->limit > T2W_MAX_JOB_LIST)
            return fail(k, T2__ERROR_CODE__ERROR_BAD_REQUEST, "job_list.limit = %u is above %d", r->job_list->limit,
                        T2W_MAX_JOB_LIST);
        return 0;
    case T2__REQUEST__BODY_EXPERT_SHOW: return check_name(k, "expert_show.name", r->expert_show->name, 1, 1);
    case T2__REQUEST__BODY_EXPERT_DELETE: return check_name(k, "expert_delete.name", r->expert_delete->name, 1, 0);
    case T2__REQUEST__BODY_EXPERT_EXPORT: return check_name(k, "expert_export.name", r->expert_export->name, 1, 1);
    case T2__REQUEST__BODY_EXPERT_PUBLISH:
        return check_name(k, "expert_publish.name", r->expert_publish->name, 1, 0);
    case T2__REQUEST__BODY_EXPERT_IMPORT:
        if (check_name(k, "expert_import.name", r->expert_import->name, 1, 0)) return -1;
        if (check_str(k, "expert_import.label", r->expert_import->label, T2W_MAX_NAME, 1)) return -1;
        if (r->expert_import->data.len == 0 || !r->expert_import->data.data)
            return fail(k, T2__ERROR_CODE__ERROR_BAD_REQUEST, "expert_import.data is empty");
        return 0;
    case T2__REQUEST__BODY_CANCEL:
        if (r->cancel->request_id == 0)
            return fail(k, T2__ERROR_CODE__ERROR_BAD_REQUEST, "cancel.request_id is required");
        return 0;
    default: break;
    }
    return fail(k, T2__ERROR_CODE__ERROR_BAD_REQUEST, "request body %d is not known", (int)r->body_case);
}

T2__ErrorCode t2w_request_check(const T2__Request *r, char *msg, size_t cap) {
    ck k = {msg, cap, T2__ERROR_CODE__ERROR_NONE};
    if (msg && cap) msg[0] = 0;
    if (!r) {
        fail(&k, T2__ERROR_CODE__ERROR_BAD_REQUEST, "no request");
        return k.code;
    }
    if (T2W_VERSION_MAJOR(r->version) != T2W_VERSION_MAJOR(T2W_VERSION)) {
        fail(&k, T2__ERROR_CODE__ERROR_VERSION, "protocol version %u.%02u is not supported (this side speaks %u.%02u)",
             r->version / 100, r->version % 100, T2W_VERSION / 100, T2W_VERSION % 100);
        return k.code;
    }
    check_body(&k, r);
    return k.code;
}

T2__Request *t2w_request_decode(const void *buf, size_t len, T2__ErrorCode *code, char *msg, size_t cap) {
    ck k = {msg, cap, T2__ERROR_CODE__ERROR_NONE};
    if (msg && cap) msg[0] = 0;
    T2__Request *r = NULL;
    if (len > T2W_MAX_FRAME)
        fail(&k, T2__ERROR_CODE__ERROR_TOO_LARGE, "request frame of %zu bytes is larger than %u", len, T2W_MAX_FRAME);
    else if (len > 0 && !buf)
        fail(&k, T2__ERROR_CODE__ERROR_BAD_REQUEST, "no request data");
    else if (!(r = t2__request__unpack(NULL, len, buf)))
        fail(&k, T2__ERROR_CODE__ERROR_BAD_REQUEST, "malformed or truncated request (%zu bytes)", len);
    else if ((k.code = t2w_request_check(r, msg, cap)) != T2__ERROR_CODE__ERROR_NONE) {
        t2__request__free_unpacked(r, NULL);
        r = NULL;
    }
    if (code) *code = k.code;
    return r;
}

/* Protobuf varint at *p (bounded by end); 0 on a truncated or over-long varint. */
static int read_varint(const unsigned char **p, const unsigned char *end, uint64_t *v) {
    uint64_t x = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (*p >= end) return 0;
        unsigned char b = *(*p)++;
        x |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *v = x;
            return 1;
        }
    }
    return 0;
}

uint64_t t2w_request_peek_id(const void *buf, size_t len) {
    if (!buf) return 0;
    const unsigned char *p = buf, *end = p + len;
    uint64_t id = 0, key, v;
    while (p < end && read_varint(&p, end, &key)) {
        uint64_t field = key >> 3;
        switch (key & 7) {
        case 0:
            if (!read_varint(&p, end, &v)) return id;
            if (field == 2) id = v;
            break;
        case 1:
            if ((size_t)(end - p) < 8) return id;
            p += 8;
            break;
        case 2:
            if (!read_varint(&p, end, &v) || v > (uint64_t)(end - p)) return id;
            p += v;
            break;
        case 5:
            if ((size_t)(end - p) < 4) return id;
            p += 4;
            break;
        default: return id;
        }
    }
    return id;
}

void t2w_request_free(T2__Request *r) {
    if (r) t2__request__free_unpacked(r, NULL);
}

void t2w_request_init(T2__Request *r, uint64_t id) {
    t2__request__init(r);
    r->version = T2W_VERSION;
    r->id = id;
}

static void *pack(const ProtobufCMessage *m, size_t *len) {
    size_t n = protobuf_c_message_get_packed_size(m);
    *len = n;
    if (n > T2W_MAX_FRAME) return NULL;
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf) return NULL;
    protobuf_c_message_pack(m, buf);
    return buf;
}

void *t2w_request_encode(const T2__Request *r, size_t *len) { return pack(&r->base, len); }

void t2w_reply_init(T2__Reply *r, uint64_t id, int final) {
    t2__reply__init(r);
    r->version = T2W_VERSION;
    r->id = id;
    r->final = final != 0;
}

void *t2w_reply_encode(const T2__Reply *r, size_t *len) { return pack(&r->base, len); }

void *t2w_error_reply(uint64_t id, T2__ErrorCode code, const char *message, size_t *len) {
    T2__Reply r;
    T2__Error e = T2__ERROR__INIT;
    t2w_reply_init(&r, id, 1);
    e.code = code;
    char *cut = NULL;
    if (message) {
        size_t n = strlen(message);
        /* At most T2W_MAX_TEXT bytes, ending on a character boundary, never invalid UTF-8. */
        size_t ok = utf8_valid_prefix((const unsigned char *)message, n > T2W_MAX_TEXT ? T2W_MAX_TEXT : n);
        if (ok != n) {
            if (!(cut = strndup(message, ok))) return NULL;
            message = cut;
        }
        e.message = (char *)message;
    }
    r.error = &e;
    void *buf = t2w_reply_encode(&r, len);
    free(cut);
    return buf;
}

T2__Reply *t2w_reply_decode(const void *buf, size_t len, char *msg, size_t cap) {
    if (msg && cap) msg[0] = 0;
    if (len > T2W_MAX_FRAME) {
        if (msg && cap) snprintf(msg, cap, "reply frame of %zu bytes is larger than %u", len, T2W_MAX_FRAME);
        return NULL;
    }
    T2__Reply *r = (len > 0 && !buf) ? NULL : t2__reply__unpack(NULL, len, buf);
    if (!r && msg && cap) snprintf(msg, cap, "malformed or truncated reply (%zu bytes)", len);
    return r;
}

void t2w_reply_free(T2__Reply *r) {
    if (r) t2__reply__free_unpacked(r, NULL);
}

const char *t2w_error_name(T2__ErrorCode code) {
    switch (code) {
    case T2__ERROR_CODE__ERROR_NONE: return "none";
    case T2__ERROR_CODE__ERROR_BAD_REQUEST: return "bad request";
    case T2__ERROR_CODE__ERROR_VERSION: return "version";
    case T2__ERROR_CODE__ERROR_NOT_FOUND: return "not found";
    case T2__ERROR_CODE__ERROR_DENIED: return "denied";
    case T2__ERROR_CODE__ERROR_QUOTA: return "quota";
    case T2__ERROR_CODE__ERROR_BUSY: return "busy";
    case T2__ERROR_CODE__ERROR_INTERNAL: return "internal";
    case T2__ERROR_CODE__ERROR_PLUGIN: return "plugin";
    case T2__ERROR_CODE__ERROR_TOO_LARGE: return "too large";
    case T2__ERROR_CODE__ERROR_CANCELLED: return "cancelled";
    default: return "unknown error";
    }
}
