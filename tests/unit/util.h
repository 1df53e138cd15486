/* Shared helpers for the unit suites: temporary folders, raw file writing, message checks. */
#ifndef T2_TEST_UTIL_H
#define T2_TEST_UTIL_H

#include <stddef.h>
#include <stdint.h>

/* Make a fresh temporary folder (mkdtemp under $TMPDIR or /tmp); returns a malloc'd path. */
char *tu_mkdtemp(void);
/* Remove a folder tree; NULL-safe. Frees nothing. */
void tu_rm_rf(const char *path);
/* dir + "/" + name into a malloc'd string. */
char *tu_join(const char *dir, const char *name);
/* Write exactly len bytes to path (created or truncated); aborts the test on failure. */
void tu_write_bytes(const char *path, const void *data, size_t len);
/* Write a NUL-terminated string to path. */
void tu_write_str(const char *path, const char *s);
/* Write a safetensors file by hand: 8-byte little-endian length (hlen_override if nonzero, else
 * strlen(header)), the header text, then data_len bytes of data. */
void tu_write_st_raw(const char *path, const char *header, uint64_t hlen_override, const void *data, size_t data_len);
/* Deterministic pseudo-random numbers (xorshift). */
typedef struct tu_rng { uint64_t s; } tu_rng;
uint64_t tu_next(tu_rng *r);
/* Uniform in [-1, 1). */
float tu_uniform(tu_rng *r);

#endif
