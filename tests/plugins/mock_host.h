/* mock_host.h — a programmable, in-memory host API table for driving plugins without a model or a daemon.
 *
 * A test builds a mock_host, programs it (experts with labels and z arrays, datasets of tasks, canned or
 * computed replies, scores, a grader, failures to inject), loads a plugin .so with mock_plugin_open (its
 * entry point receives mock_host_api()), and calls the plugin's ops with mock_host_handle(m) as the
 * t2_host. Everything the plugin does through the table is recorded on the mock for the test to assert:
 * call counters, the log, progress events, the last checkpoint, the key-value store, saved experts.
 *
 *     mock_host *m = mock_host_new();            // 2 matrices of 4 values each, seed 1
 *     mock_host_add_expert(m, "math", "math", z_math);
 *     mock_host_add_dataset(m, "few", NULL, tasks, 10);
 *     m->generate = my_generate;                 // or mock_host_add_reply(m, "2+2", "\\boxed{4}")
 *     void *so; char err[256];
 *     const t2_plugin *pl = mock_plugin_open(T2_TEST_PLUGIN_BUILD_DIR "/dispatch/dispatch_cem.so", &so, err, sizeof err);
 *     ... ((const t2_dispatch_ops *)pl->ops)->decide(state, mock_host_handle(m), &rq, &dd) ...
 *     mock_host_free(m); mock_plugin_close(so);
 *
 * The mock model: every expert has n_matrices × matrix_len values of z (all matrices the same length),
 * concatenated matrix-major as api->expert_z hands them out. expert_mix computes z' = Σₖ αₖ zₖ exactly
 * (per_matrix: α has k × n_matrices values, expert-major, α[k·n_matrices + j] scales matrix j of expert
 * k) — so a generate callback can read the mixture's α straight off z when the experts' z are unit
 * vectors. Set n_matrices / matrix_len before adding experts.
 *
 * api->encode returns byte-level ids: the system prompt and '\n' (chat with a system prompt), the prompt,
 * then the completion. Mock generate results carry byte-level ids of prompt + completion the same way
 * (without the system prompt), logprob −1 per byte unless the generate callback sets it.
 *
 * Memory follows plugin.h: what the mock hands out as owned is malloc'd and released by api->free
 * (free), so ASan/LSan see a plugin's leaks. Live experts and open datasets are counted per mock so a
 * test can also assert that a plugin released everything (mock_host_live_experts == 0 at the end).
 *
 * Not thread-safe: one mock per test, driven from one thread. */
#ifndef T2_MOCK_HOST_H
#define T2_MOCK_HOST_H

#include <stddef.h>
#include <stdint.h>
#include <t2/plugin.h>

typedef struct mock_host mock_host;

/* Computes the completion of one generated row (prompt i under expert e; e NULL = the base model).
 * Return a malloc'd NUL-terminated text (NULL: out of memory → the generate call fails); *logprob may be
 * set (it starts at −1 per character of the reply). row is the row's index within this generate call. */
typedef char *(*mock_generate_fn)(mock_host *m, const char *prompt, const t2_hexpert *e, const t2_gen_params *p, int row,
                                  double *logprob);

/* log p(completion | prompt) under e (NULL: base); *n_tokens may be set (it starts at strlen(completion)). */
typedef double (*mock_score_fn)(mock_host *m, const char *prompt, const char *completion, const t2_hexpert *e, int chat,
                                const char *system, int *n_tokens);

/* Grades output for task (grader: the name asked for, NULL or "" = the task's own). Fill v; v arrives zeroed. */
typedef t2_status (*mock_grade_fn)(mock_host *m, const char *grader, const t2_task *task, const char *output, t2_verdict *v);

/* One REINFORCE step on the mock policy: change z (n values) as the test likes; st arrives zeroed. NULL on
 * the mock: z is left unchanged and only st->mean_reward is filled in. */
typedef t2_status (*mock_reinforce_fn)(mock_host *m, float *z, int64_t n, const t2_rollout_in *rs, int B, t2_step_stats *st);

#define MOCK_MAX_REPLIES 64

/* One recorded progress event (message copied, truncated to 127 bytes). */
typedef struct mock_progress {
    int64_t step, total;
    double reward, accuracy, loss;
    char message[128];
} mock_progress;

/* An expert the plugin registered with expert_save (also openable by name afterwards). */
typedef struct mock_saved {
    char *name, *label, *meta_json;   /* meta_json NULL when none was given */
    float *z;                         /* [n] */
    int64_t n;
} mock_saved;

struct mock_host {
    /* --- the model (set before adding experts; defaults 2 and 4) --- */
    int n_matrices, matrix_len;
    uint64_t seed;                    /* the host's random stream (rand_*); default 1. Reseed with mock_host_reseed. */

    /* --- programmable behaviour; NULL / 0 means the documented default --- */
    mock_generate_fn generate;        /* default: the first reply (mock_host_add_reply) whose match occurs in
                                         the prompt, else default_reply, else "" */
    mock_score_fn score;              /* default: −0.1 per byte of the completion */
    mock_grade_fn grade;              /* default: correct when the output, trimmed, equals task->answer or
                                         contains \boxed{answer}; score 1/0; extracted = the trimmed output */
    mock_reinforce_fn reinforce;      /* see mock_reinforce_fn */
    void *user;                       /* free for the callbacks */
    const char *default_reply;        /* borrowed */
    int cancelled;                    /* what api->cancelled returns */
    int omit_experts_json;            /* 1: experts_json fails with T2_ERR_IO (a broken registry) */

    /* Failure injection: a non-OK value makes that host function return it (and count the call). */
    t2_status generate_status, score_status, grade_status, kv_put_status, kv_get_status, expert_save_status,
        checkpoint_status, dataset_status;

    /* --- records, read by tests (reset with mock_host_reset_counters) --- */
    int n_generate_calls;             /* api->generate calls */
    int64_t n_generate_rows;          /* rows over all generate calls */
    int max_generate_rows;            /* the largest single generate call */
    int n_score_calls, n_grade_calls, n_kv_put, n_kv_get, n_expert_open, n_expert_mix, n_checkpoints;
    t2_gen_params last_gen;           /* the last generate call's params (its strings are NOT kept valid) */
    char last_system[512];            /* its system prompt ("" for NULL), copied */
    int last_chat;
    mock_progress *progress;          /* [n_progress] every progress event, in order */
    int n_progress;
    void *checkpoint;                 /* the last checkpoint_save blob (owned by the mock) [checkpoint_len] */
    size_t checkpoint_len;
    char *log;                        /* every log line, "LEVEL message\n" (LEVEL = D/I/W/E); never NULL */
    size_t log_len;

    struct mock_internal *in;         /* private: experts, datasets, kv, saved experts, replies */
};

/* A mock with the defaults above; NULL on out of memory. Caller frees with mock_host_free. */
mock_host *mock_host_new(void);
/* Releases the mock and everything it owns (not the experts or datasets a plugin still holds: those are
 * leaks the test should catch with mock_host_live_experts / mock_host_open_datasets first). NULL-safe. */
void mock_host_free(mock_host *m);

/* The t2_host to pass to plugin ops for this mock. Borrowed, valid until mock_host_free. */
t2_host *mock_host_handle(mock_host *m);
/* The mock from a t2_host that mock_host_handle made (callbacks receive the mock directly, this is for
 * code that only has the handle). Borrowed. */
mock_host *mock_host_of(t2_host *h);
/* The host API table (ABI T2_ABI_MAJOR.T2_ABI_MINOR, every member set). Borrowed, static. */
const t2_host_api *mock_host_api(void);

/* Restart the random stream from seed. */
void mock_host_reseed(mock_host *m, uint64_t seed);
void mock_host_reset_counters(mock_host *m);   /* counters, progress, log and checkpoint back to empty */

/* Values of z per expert: n_matrices × matrix_len. */
int64_t mock_host_n_params(const mock_host *m);

/* Register an expert the tenant may use: name (unique, < 64 bytes), label, z[mock_host_n_params] copied
 * (NULL: all ones). T2_ERR_INVALID_ARG on a duplicate or bad name. */
t2_status mock_host_add_expert(mock_host *m, const char *name, const char *label, const float *z);
/* The kind experts_json reports for an expert ("svf" unless set; "lora" for a LoRA). */
t2_status mock_host_set_expert_kind(mock_host *m, const char *name, const char *kind);

/* Register a dataset: api->dataset_open(spec, split) finds it when split matches (the mock's split NULL
 * matches any request; a request with split NULL or "all" matches any registered split of that spec,
 * the first one registered). Tasks are deep-copied; NULL strings become "" (extra becomes "{}"). An
 * empty dataset (n = 0) is allowed. */
t2_status mock_host_add_dataset(mock_host *m, const char *spec, const char *split, const t2_task *tasks, size_t n);

/* A canned reply for the default generate: prompts containing `match` get `reply` (both copied). */
t2_status mock_host_add_reply(mock_host *m, const char *match, const char *reply);

/* The key-value store as plugins see it (one tenant). put copies; find returns the stored value followed
 * by a NUL not counted in *len (so a text value reads as a string; borrowed, valid until the key is put
 * again or the mock is freed) or NULL. api->kv_get hands out the same (value + NUL) as an owned copy. */
t2_status mock_host_kv_put(mock_host *m, const char *key, const void *value, size_t len);
const void *mock_host_kv_find(const mock_host *m, const char *key, size_t *len);
int mock_host_kv_count(const mock_host *m);

/* Experts saved by the plugin, in order; NULL when there is no such one. Borrowed, valid until mock_host_free. */
const mock_saved *mock_host_saved(const mock_host *m, const char *name);
int mock_host_n_saved(const mock_host *m);

/* Experts handed out (expert_open/new/mix, policies excluded) and not yet freed; datasets open. */
int mock_host_live_experts(const mock_host *m);
int mock_host_open_datasets(const mock_host *m);

/* 1 when the log holds substr (case-sensitive). */
int mock_host_log_contains(const mock_host *m, const char *substr);

/* What the mock knows about an expert handed to a plugin: its z [mock_expert_n] (borrowed, valid until
 * expert_free), its name ("mix(a:0.5,b:0.5)" for mixtures with per-expert α, "mix(a,b)" per-matrix; ""
 * for expert_new) and label. */
const float *mock_expert_z(const t2_hexpert *e);
int64_t mock_expert_n(const t2_hexpert *e);
const char *mock_expert_name(const t2_hexpert *e);
const char *mock_expert_label(const t2_hexpert *e);

/* A short name for a status ("T2_ERR_INVALID_ARG"), for assertion messages. Borrowed, static. */
const char *mock_status_name(t2_status s);

/* dlopen path, call its entry point with mock_host_api(); on success *handle receives the dlopen handle
 * (release with mock_plugin_close after the last use of the plugin) and the plugin is returned. NULL with
 * a message in err otherwise. The plugin's init (if any) is NOT called: call pl->init yourself. */
const t2_plugin *mock_plugin_open(const char *path, void **handle, char *err, size_t cap);
void mock_plugin_close(void *handle);   /* NULL-safe */

#endif
