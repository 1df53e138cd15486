/* Structured logs: one logfmt line per event (ts=... level=... then the message's own key=value pairs or
 * text), to stderr or a file, serialised by a mutex so lines from many threads never interleave. */
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "t2d.h"

static FILE *log_f;
static t2_log_level log_min = T2_LOG_INFO;
static pthread_mutex_t log_mu = PTHREAD_MUTEX_INITIALIZER;

void t2d_log_open(const char *file, const char *level) {
    if (file && *file) {
        FILE *f = fopen(file, "a");
        if (f) {
            setvbuf(f, NULL, _IOLBF, 0);
            log_f = f;
        } else {
            fprintf(stderr, "t2d: cannot open log file %s; logging to stderr\n", file);
        }
    }
    if (level) {
        if (!strcmp(level, "debug")) log_min = T2_LOG_DEBUG;
        else if (!strcmp(level, "warn")) log_min = T2_LOG_WARN;
        else if (!strcmp(level, "error")) log_min = T2_LOG_ERROR;
        else log_min = T2_LOG_INFO;
    }
}

void t2d_logv(t2_log_level level, const char *fmt, va_list ap) {
    if (level < log_min) return;
    static const char *names[] = {"debug", "info", "warn", "error"};
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char when[32];
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
    pthread_mutex_lock(&log_mu);
    FILE *f = log_f ? log_f : stderr;
    fprintf(f, "ts=%s.%03ldZ level=%s ", when, ts.tv_nsec / 1000000, names[level < 0 || level > 3 ? 1 : level]);
    vfprintf(f, fmt, ap);
    fputc('\n', f);
    fflush(f);
    pthread_mutex_unlock(&log_mu);
}

void t2d_log(t2_log_level level, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    t2d_logv(level, fmt, ap);
    va_end(ap);
}
