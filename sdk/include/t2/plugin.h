/* t2/plugin.h — the plugin ABI: what a dispatch, grader or trainer plugin exports, and the host API
 * table through which it reaches the model, the experts, the datasets, the graders and the job.
 *
 * A plugin is a shared object that exports exactly one symbol, T2_PLUGIN_ENTRY_SYMBOL:
 *
 *     T2_PLUGIN_EXPORT const t2_plugin *t2_plugin_entry(const t2_host_api *api);
 *
 * The host calls it once after dlopen, passing its API table. The plugin checks the table's abi_major
 * (use t2_host_api_compatible below) and returns a static description of itself, or NULL to refuse.
 * The host refuses a plugin whose abi_major differs from its own (and says both numbers), whose
 * struct_size is smaller than the host needs, or whose init fails; the daemon goes on without it.
 *
 * Versioning (the Redis-modules / sqlite3ext style): every table starts with abi_major, abi_minor and
 * struct_size. Tables are append-only: a new minor version adds members at the end, never moves or
 * removes one. A member beyond struct_size does not exist: check with T2_HAS_MEMBER before calling it.
 *
 * Threads: the host may call a plugin from several threads at once (one request or job per call); a
 * plugin's ops must be reentrant for different `state` pointers and, for dispatch and grader plugins,
 * for the same one. Host functions are thread-safe and may block (a generate call waits for the engine).
 *
 * Errors: an op that fails returns a t2_status and says why with api->log(h, T2_LOG_WARN or T2_LOG_ERROR,
 * ...): the host reports that last warning or error as the reason (to the client for a dispatch, in the
 * job's error for a trainer).
 *
 * Memory: whatever a host function hands out as "owned" is released with api->free (or the specific
 * free function named); whatever a plugin hands to the host stays the plugin's. Strings are UTF-8 and
 * NUL-terminated. A plugin never includes engine headers: everything comes through this table. */
#ifndef T2_PLUGIN_H
#define T2_PLUGIN_H

#include <stddef.h>
#include <stdint.h>
#include <t2/status.h>

#ifdef __cplusplus
extern "C" {
#endif

#define T2_ABI_MAJOR 1
#define T2_ABI_MINOR 0

#define T2_PLUGIN_ENTRY_SYMBOL "t2_plugin_entry"
#if defined(__GNUC__)
#define T2_PLUGIN_EXPORT __attribute__((visibility("default")))
#else
#define T2_PLUGIN_EXPORT
#endif

/* True when a versioned table `t` (host API or ops) is large enough to contain member `m`. */
#define T2_HAS_MEMBER(t, m) \
    ((t)->struct_size >= offsetof(__typeof__(*(t)), m) + sizeof(((__typeof__(*(t)) *)0)->m))

typedef enum t2_plugin_kind {
    T2_PLUGIN_DISPATCH = 1,   /* first pass: decides which expert or mixture answers a prompt */
    T2_PLUGIN_GRADER = 2,     /* scores a model output against a task */
    T2_PLUGIN_TRAINER = 3,    /* trains an expert as a job */
} t2_plugin_kind;

/* "dispatch", "grader", "trainer" or "unknown". Borrowed, static. */
static inline const char *t2_plugin_kind_name(t2_plugin_kind k)
{
    return k == T2_PLUGIN_DISPATCH ? "dispatch" : k == T2_PLUGIN_GRADER ? "grader"
         : k == T2_PLUGIN_TRAINER ? "trainer" : "unknown";
}

typedef enum t2_log_level { T2_LOG_DEBUG = 0, T2_LOG_INFO = 1, T2_LOG_WARN = 2, T2_LOG_ERROR = 3 } t2_log_level;

/* The context of one call into a plugin (a request, a job, a grading run): the tenant it acts for, the
 * job it reports to, its random stream. Opaque; borrowed, valid for the duration of the call that
 * received it (for trainers: until the job's state is freed). */
typedef struct t2_host t2_host;

/* An expert as the host holds it for a plugin: a registered expert opened by name, a new one (z = 1),
 * a mixture, or a trainer's policy. Opaque; owned by the plugin, released with api->expert_free. */
typedef struct t2_hexpert t2_hexpert;

/* A dataset opened through the host. Owned by the plugin, released with api->dataset_close. */
typedef struct t2_dataset t2_dataset;

/* One task of a dataset, in the common form every loader produces. Every string is NUL-terminated and
 * may be empty, never NULL. Borrowed from its dataset: valid until dataset_close. */
typedef struct t2_task {
    const char *id;           /* the task's own id (task_id, ARC id) or its 0-based line number */
    const char *family;       /* "gsm8k", "math", "humaneval", "mbpp", "arc", or the file's own */
    const char *label;        /* the expert label it belongs to: "math", "code", "reasoning", ... */
    const char *grader;       /* the grader that fits it: "math", "code", "choice", "label", ... */
    const char *question;     /* the raw question as the dataset has it */
    const char *prompt;       /* the user prompt built as the paper builds it for this task */
    const char *system;       /* the system prompt to pair with it ("" for none) */
    const char *answer;       /* the reference final answer ("42", "\frac{1}{2}", "B", a label) */
    const char *solution;     /* a reference full solution or completion, where the dataset has one */
    const char *tests;        /* code tasks: the test code run against the completion */
    const char *entry_point;  /* code tasks: the function the tests call */
    const char *extra;        /* anything else the loader keeps, as a JSON object text ("{}" if none) */
} t2_task;

/* ---------------- the host API table ---------------- */

/* A reference to experts by name plus weights: what a request or a plugin asks the model to run under. */
typedef struct t2_gen_params {
    int max_tokens;           /* ≤ 0: the host default */
    float temperature;        /* 0 = greedy */
    float top_p;              /* 1 = off */
    int top_k;                /* 0 = off */
    uint64_t seed;            /* 0: drawn from the caller's random stream */
    int chat;                 /* 1: wrap prompt (+ system) in the model's chat template */
    const char *system;       /* NULL or a system prompt (chat only) */
    const char *const *stop;  /* [n_stop] stop strings; the output ends before them */
    int n_stop;
    /* 1 (chat with a system prompt): the system turn is the same across many calls (a dispatch
     * instruction): its KV cache is computed once and reused, so a call costs only the rest. */
    int cache_system;
} t2_gen_params;

typedef struct t2_gen_result {
    char *text;               /* owned: the completion text (api->free) */
    int32_t *ids;             /* owned: prompt + completion token ids [n_ids] (api->free) */
    int n_ids;
    int n_prompt;             /* completion starts at ids[n_prompt] */
    double logprob;           /* Σ log p of the completion tokens under the expert */
    int stop;                 /* 0 length, 1 eos/end of turn, 2 stop string, 3 context full */
    double seconds;           /* wall time from submission to the last token */
} t2_gen_result;

typedef struct t2_progress {
    int64_t step, total;      /* total ≤ 0: unknown */
    double reward;            /* mean reward of the step (NAN: none) */
    double accuracy;          /* validation accuracy (NAN: not evaluated at this step) */
    double loss;              /* NAN: none */
    const char *message;      /* NULL or a short free text */
} t2_progress;

typedef struct t2_verdict {
    int correct;              /* 1 correct, 0 wrong */
    double score;             /* in [0, 1]; 1/0 for pass/fail graders */
    char extracted[256];      /* what the grader read as the answer ("" if none) */
    char detail[512];         /* why (a failing assertion, "no \boxed{}", "timeout 10 s", ...) */
} t2_verdict;

/* One scored rollout for a REINFORCE step. */
typedef struct t2_rollout_in {
    const int32_t *ids;       /* prompt + completion */
    int n_ids;
    int n_prompt;
    float reward;
} t2_rollout_in;

typedef struct t2_reinforce_settings {
    float lr;                 /* Adam learning rate (paper 2e-3) */
    float clip;               /* global gradient-norm clip (paper 1e-3), 0 = none */
    float kl_coef;            /* λ */
    float max_mult;           /* z = max_mult · sigmoid(p) */
    int normalize;            /* normalise rewards over the batch */
} t2_reinforce_settings;

typedef struct t2_step_stats {
    double mean_reward, mean_logprob, mean_kl, grad_norm;
} t2_step_stats;

/* A trainable SVF expert (raw parameters p, z = max_mult·sigmoid(p), its Adam state). Owned by the
 * plugin, released with api->policy_free. */
typedef struct t2_policy t2_policy;

typedef struct t2_host_api {
    uint32_t abi_major, abi_minor, struct_size;

    /* --- basics --- */
    /* h may be NULL where a plugin has no call context (grader ops, init): the line is then logged
     * without a tenant or job. */
    void (*log)(t2_host *h, t2_log_level level, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
    void (*free)(void *p);                 /* releases what the host handed out as owned */
    uint64_t (*rand_u64)(t2_host *h);      /* the caller's seeded stream (a job's: from its settings' integer "seed", else its id) */
    double (*rand_uniform)(t2_host *h);    /* [0, 1) */
    double (*rand_normal)(t2_host *h);     /* N(0, 1) */
    /* Nonzero once the job or request was cancelled or the daemon is draining: stop soon. */
    int (*cancelled)(t2_host *h);
    /* A persistent per-tenant key-value store for plugins (e.g. CEM's α per task id). get returns
     * T2_ERR_NOT_FOUND when absent; *value is owned (api->free). Keys ≤ 200 bytes, values ≤ 1 MiB. */
    t2_status (*kv_put)(t2_host *h, const char *key, const void *value, size_t len);
    t2_status (*kv_get)(t2_host *h, const char *key, void **value, size_t *len);

    /* --- the model and experts --- */
    /* Labels and names of the experts the caller's tenant may use (its own and published ones), as a
     * JSON array text [{"name":..., "label":..., "owner":..., "published":..., "kind": "svf"|"lora"}, ...].
     * Owned (api->free). */
    t2_status (*experts_json)(t2_host *h, char **json);
    /* Open a registered expert the tenant may use. */
    t2_status (*expert_open)(t2_host *h, const char *name, t2_hexpert **out);
    /* A new expert with z = 1 everywhere (the base model), labelled. */
    t2_status (*expert_new)(t2_host *h, const char *label, t2_hexpert **out);
    /* z' = Σₖ αₖ zₖ: alpha has k values, or k × n_matrices (per_matrix) in expert-major order. */
    t2_status (*expert_mix)(t2_host *h, const t2_hexpert *const *experts, const float *alpha, int k,
                            int per_matrix, t2_hexpert **out);
    void (*expert_free)(t2_hexpert *e);
    int (*n_matrices)(t2_host *h);         /* adapted matrices per expert */
    int64_t (*expert_n_params)(const t2_hexpert *e);
    /* The expert's z, all matrices concatenated in SVD-cache order [n_params]; writable (a plugin may
     * set z directly, e.g. CEM over z). Borrowed, valid until expert_free. */
    float *(*expert_z)(t2_hexpert *e);
    /* Register e under `name` for the caller's tenant (atomic write + registry row); meta_json is an
     * object of extra metadata (settings, metrics) or NULL. */
    t2_status (*expert_save)(t2_host *h, const t2_hexpert *e, const char *name, const char *label,
                             const char *meta_json);

    /* --- text --- */
    /* Generate completions for n prompts, prompt i under experts[i] (NULL entries, or experts NULL: the
     * base model). The rows join the engine's running batch with everyone else's requests. */
    t2_status (*generate)(t2_host *h, const char *const *prompts, const t2_hexpert *const *experts, int n,
                          const t2_gen_params *p, t2_gen_result *out);
    void (*gen_result_clear)(t2_gen_result *r);
    /* log p(completion | prompt) under e (NULL: base) and its token count; chat as in t2_gen_params. */
    t2_status (*score)(t2_host *h, const char *prompt, const char *completion, const t2_hexpert *e,
                       int chat, const char *system, double *logprob, int *n_tokens);

    /* --- datasets and graders --- */
    /* Open a dataset: a name the host knows ("gsm8k", "math500", "humaneval", "mbpp", "arc-easy", ...) or a
     * path to a JSONL file in the generic format; split is "train", "validation", "test" or NULL (all). */
    t2_status (*dataset_open)(t2_host *h, const char *spec, const char *split, t2_dataset **out);
    size_t (*dataset_size)(const t2_dataset *d);
    const t2_task *(*dataset_task)(const t2_dataset *d, size_t i);   /* NULL if out of range */
    void (*dataset_close)(t2_dataset *d);
    /* Grade one output with a loaded grader plugin (NULL name: the task's own grader). */
    t2_status (*grade)(t2_host *h, const char *grader, const t2_task *task, const char *output, t2_verdict *v);

    /* --- training primitives --- */
    t2_status (*policy_new)(t2_host *h, const t2_hexpert *init, const t2_reinforce_settings *s, t2_policy **out);
    void (*policy_free)(t2_policy *p);
    /* The policy's current z as an expert to generate under. Borrowed, changed by every step. */
    const t2_hexpert *(*policy_expert)(t2_policy *p);
    /* One REINFORCE step (paper §3.2) on B scored rollouts; runs on the engine between inference batches. */
    t2_status (*reinforce_step)(t2_host *h, t2_policy *p, const t2_rollout_in *rs, int B, t2_step_stats *st);
    /* The policy's full state (p and Adam moments) for checkpoints, and its restore. Owned (api->free). */
    t2_status (*policy_state)(t2_policy *p, void **blob, size_t *len);
    t2_status (*policy_restore)(t2_policy *p, const void *blob, size_t len);
    /* Σ log p(completion) and its gradient with respect to e's z, added to dz[n_params]. */
    t2_status (*logprob_grad)(t2_host *h, const t2_hexpert *e, const int32_t *ids, int n_ids, int n_prompt,
                              float weight, float *dz, double *logprob);

    /* --- jobs (trainers) --- */
    void (*progress)(t2_host *h, const t2_progress *p);
    /* Store the job's checkpoint (replacing the previous one); a restarted daemon hands it back to start. */
    t2_status (*checkpoint_save)(t2_host *h, const void *blob, size_t len);

    /* --- text (continued) --- */
    /* Token ids of prompt (chat-templated with system when chat, as generate builds them) followed by
     * completion (may be NULL or ""): what the model would see if it had answered `completion`. *ids
     * owned (api->free); the completion starts at (*ids)[*n_prompt]. For training on reference answers. */
    t2_status (*encode)(t2_host *h, const char *prompt, const char *system, int chat, const char *completion,
                        int32_t **ids, int *n_ids, int *n_prompt);

    /* --- LoRA, the baseline SVF is compared with --- */
    /* A trainable LoRA policy (W' = W + (alpha/rank)·B·A on the matrices of `modules`: "mlp", "attn" or
     * "all") instead of SVF's z. Everything else is the same: policy_expert gives it as an expert to
     * generate or score under, reinforce_step trains it (reward +1 on reference answers is next-token
     * training), policy_state/restore checkpoint it, expert_save stores it as a LoRA expert that requests
     * can name (alone, not in a mixture). expert_z of a LoRA expert is NULL. */
    t2_status (*policy_new_lora)(t2_host *h, int rank, float alpha, const char *modules, const t2_reinforce_settings *s,
                                 t2_policy **out);
} t2_host_api;

/* The plugin's check of the table it was given. */
static inline int t2_host_api_compatible(const t2_host_api *api)
{
    return api && api->abi_major == T2_ABI_MAJOR && api->struct_size >= sizeof(uint32_t) * 3;
}

/* ---------------- what a plugin provides ---------------- */

typedef struct t2_grader_ops {
    uint32_t struct_size;
    /* Grade `output` for `task`. Must be thread-safe; must not crash on any output. */
    t2_status (*grade)(void *state, const t2_task *task, const char *output, t2_verdict *v);
} t2_grader_ops;

/* What the first pass is asked. Strings may be NULL. */
typedef struct t2_dispatch_request {
    const char *prompt;        /* the user's prompt */
    const char *system;        /* the user's system prompt */
    const char *task_id;       /* a task id (cem: its cached α) */
    const char *examples;      /* a dataset spec with the task's solved examples (cem) */
    const char *settings_json; /* plugin settings from the request or the config ("{}" if none) */
} t2_dispatch_request;

typedef struct t2_dispatch_decision {
    t2_hexpert *expert;        /* what the second pass runs under; NULL = base. Ownership passes to the host. */
    char label[64];            /* the label decided ("" if none) */
    char detail[1024];         /* a JSON object text: experts and α, the first pass's raw answer, ... */
} t2_dispatch_decision;

typedef struct t2_dispatch_ops {
    uint32_t struct_size;
    t2_status (*decide)(void *state, t2_host *h, const t2_dispatch_request *rq, t2_dispatch_decision *out);
} t2_dispatch_ops;

/* A training job as the trainer sees it. */
typedef struct t2_job_spec {
    int64_t id;
    const char *expert_name;   /* the name to save the trained expert under */
    const char *label;         /* its label */
    const char *dataset;       /* dataset spec */
    const char *grader;        /* grader name ("" = each task's own) */
    const char *settings_json; /* trainer settings ("{}" if none) */
} t2_job_spec;

typedef struct t2_trainer_ops {
    uint32_t struct_size;
    /* Prepare a job; checkpoint (or NULL) is what the job last passed to checkpoint_save, to resume from. */
    t2_status (*start)(t2_host *h, const t2_job_spec *job, const void *checkpoint, size_t ck_len, void **state);
    /* One unit of work (one optimiser step); sets *done when training is over (the expert saved). */
    t2_status (*step)(void *state, t2_host *h, int *done);
    void (*stop)(void *state);  /* releases the state; NULL-safe */
} t2_trainer_ops;

typedef struct t2_plugin {
    uint32_t abi_major, abi_minor, struct_size;
    t2_plugin_kind kind;
    const char *name;          /* unique per kind: "math", "prompt", "reinforce" */
    const char *version;
    const char *description;
    /* Optional: set up a state from the config's settings for this plugin (JSON object text or "{}"). */
    t2_status (*init)(const t2_host_api *api, const char *config_json, void **state);
    void (*fini)(void *state);
    const void *ops;           /* t2_dispatch_ops, t2_grader_ops or t2_trainer_ops by kind */
} t2_plugin;

typedef const t2_plugin *(*t2_plugin_entry_fn)(const t2_host_api *api);

#ifdef __cplusplus
}
#endif
#endif
