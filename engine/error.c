/* Status strings and the per-thread failure detail (see t2/error.h). */
#include <t2/error.h>

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static _Thread_local char s_detail[1024];

const char *t2_strerror(t2_status s) {
    switch (s) {
    case T2_OK: return "ok";
    case T2_ERR_INVALID_ARG: return "invalid argument";
    case T2_ERR_NOMEM: return "out of memory";
    case T2_ERR_IO: return "input/output error";
    case T2_ERR_FORMAT: return "malformed input";
    case T2_ERR_UNSUPPORTED: return "unsupported";
    case T2_ERR_NOT_FOUND: return "not found";
    case T2_ERR_SHAPE: return "wrong shape or dtype";
    case T2_ERR_RANGE: return "out of range";
    case T2_ERR_FULL: return "capacity exhausted";
    case T2_ERR_VERSION: return "version mismatch";
    case T2_ERR_INTERNAL: return "internal error";
    }
    return "unknown status";
}

const char *t2_last_error(void) { return s_detail; }

void t2_clear_error(void) { s_detail[0] = 0; }

t2_status t2_set_error(t2_status s, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s_detail, sizeof s_detail, fmt, ap);
    va_end(ap);
    return s;
}

t2_status t2_wrap_error(t2_status s, const char *fmt, ...) {
    char prefix[512], old[sizeof s_detail];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, s_detail, sizeof old);
    /* truncation of an over-long detail is fine: it is a message */
    size_t n = strnlen(prefix, sizeof s_detail - 1);
    memcpy(s_detail, prefix, n);
    size_t m = strnlen(old, sizeof s_detail - 1 - n);
    memcpy(s_detail + n, old, m);
    s_detail[n + m] = 0;
    return s;
}
