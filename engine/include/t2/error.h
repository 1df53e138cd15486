/* t2/error.h — status codes plus a per-thread detail message.
 *
 * Every engine function that fails returns (or stores) a t2_status and records a human-readable
 * detail naming what was wrong ("model.layers.3.mlp.up_proj.weight: shape [64,32], expected [128,32]").
 * The detail belongs to the calling thread and stays until that thread's next failure, like dlerror(). */
#ifndef T2_ERROR_H
#define T2_ERROR_H

#include <t2/status.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The detail of the last failure recorded on this thread, or "" if none.
 * Borrowed: valid until this thread records another failure. */
const char *t2_last_error(void);

/* Forget this thread's detail (before a call whose own failure detail should not be confused with an
 * older one). */
void t2_clear_error(void);

/* Record a failure with a printf-style detail on this thread; returns s so callers can write
 * `return t2_set_error(T2_ERR_FORMAT, "...", ...);`. */
t2_status t2_set_error(t2_status s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Prefix the current detail with more context: "config.json: " + old detail. Returns s. */
t2_status t2_wrap_error(t2_status s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#ifdef __cplusplus
}
#endif
#endif
