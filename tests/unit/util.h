/* Shared helpers for the Check suites (tests/unit, tests/svf, tests/tok): running a suite, temporary
 * folders, raw file reading and writing, message checks, random numbers, tiny random checkpoints. */
#ifndef T2_TEST_UTIL_H
#define T2_TEST_UTIL_H

#include <t2/model.h>
#include <t2/safetensors.h>

#include <check.h>
#include <stddef.h>
#include <stdint.h>

/* Run every test of s (CK_NORMAL) and free the runner; EXIT_SUCCESS if none failed, else EXIT_FAILURE. */
int tu_run(Suite *s);

/* Make a fresh temporary folder (mkdtemp under $TMPDIR or /tmp); returns a malloc'd path. */
char *tu_mkdtemp(void);
/* Remove a folder tree; NULL-safe. Frees nothing. 0 if it is gone (or never was), -1 if not; never aborts. */
int tu_rm_rf(const char *path);
/* dir + "/" + name into a malloc'd string. */
char *tu_join(const char *dir, const char *name);
/* Create the folder dir/name (mode 0755; it must not exist yet); returns the malloc'd path. */
char *tu_mkdir(const char *dir, const char *name);
/* Write exactly len bytes to path (created or truncated); aborts the test on failure. */
void tu_write_bytes(const char *path, const void *data, size_t len);
/* Write a NUL-terminated string to path. */
void tu_write_str(const char *path, const char *s);
/* The whole file, with a NUL after its last byte; *len its size. Caller frees. */
unsigned char *tu_read_file(const char *path, size_t *len);
/* Write a safetensors file by hand: 8-byte little-endian length (hlen_override if nonzero, else
 * strlen(header)), the header text, then data_len bytes of data. */
void tu_write_st_raw(const char *path, const char *header, uint64_t hlen_override, const void *data, size_t data_len);

/* Assert that t2_last_error() contains needle (the caller includes <t2/error.h> and <string.h>). */
#define TU_ASSERT_ERR_HAS(needle)                                                                                   \
    ck_assert_msg(strstr(t2_last_error(), (needle)) != NULL, "error detail \"%s\" does not mention \"%s\"",        \
                  t2_last_error(), (needle))

/* Deterministic pseudo-random numbers (xorshift). */
typedef struct tu_rng { uint64_t s; } tu_rng;
uint64_t tu_next(tu_rng *r);
/* Uniform in [-1, 1). */
float tu_uniform(tu_rng *r);
/* Uniform in [lo, hi): lo + (hi - lo)·u in float arithmetic (not the same numbers as lo + hi·tu_uniform). */
float tu_uniform_in(tu_rng *r, float lo, float hi);

/* Load the model in dir with n_threads threads; aborts the test on failure. */
t2_model *tu_load(const char *dir, int n_threads);
/* A context; aborts the test on failure. */
t2_ctx *tu_ctx_new(t2_model *m, int n_ctx, int n_seq, int n_batch);

/* ---- tiny random checkpoints ---- */

/* Their dimensions: vocab, hidden, layers, heads, kv heads, ffn. */
enum { TU_V = 64, TU_H = 32, TU_L = 2, TU_NH = 4, TU_NKV = 2, TU_F = 48 };

typedef struct tu_ckpt {
    const char *model_type; /* NULL = "llama"; "qwen2" adds q/k/v biases */
    int tie;                /* tie_word_embeddings (and no lm_head.weight) */
    t2_dtype dtype;         /* T2_F32, T2_BF16 or T2_F16 (F16 needs exact16) */
    uint64_t seed;          /* 0 = 1234 */
    /* How the values are drawn (both in the same tensor order, each tensor with its own scale and offset):
     * 0: offset + tu_uniform_in(-scale, scale), as float (test_svf's models);
     * 1: offset + scale·tu_uniform, rounded so that it is exact in BF16 and F16 (test_model's models). */
    int exact16;
    const char *skip;       /* leave this tensor out */
    const char *bad_shape;  /* write this tensor with 8 extra rows (filled with 0.25) */
    const char *i32;        /* write this tensor as I32 (value × 100) */
    int sliding_window;     /* nonzero: "sliding_window" in config.json (mistral) */
    int eos;                /* eos_token_id; 0 = 2 */
} tu_ckpt;

/* Write config.json and model.safetensors of a random checkpoint into the existing folder dir. */
void tu_write_checkpoint(const char *dir, const tu_ckpt *o);

#endif
