/* store.h — t2d's persistent state in one SQLite database (WAL): tenants, jobs and their events,
 * checkpoints, the experts registry and the plugins' per-tenant key-value store.
 *
 * Threads: a store is one SQLite connection guarded by a mutex; every function below may be called from
 * any thread, and calls are serialized. Several processes may open the same file (SQLite's own locking,
 * busy_timeout 5 s); only one daemon should run jobs from it.
 *
 * Errors: functions return a t2_status; on failure t2d_store_errmsg() holds a message naming what failed
 * (the file, the job id, the field). It is per thread, so it is the failure of this thread's last call.
 *
 * Durability: every write is one transaction (BEGIN IMMEDIATE ... COMMIT, synchronous=FULL), so a crash
 * loses nothing that was acknowledged and leaves nothing half-written. All SQL uses bound parameters.
 *
 * Strings handed out in structs are owned by the struct and released by its clear/free function; a
 * string field is never NULL in a struct the store filled ("" for none). In structs passed in, NULL
 * string fields mean "". Times are unix seconds (double); 0 means "not yet". */
#ifndef T2D_STORE_H
#define T2D_STORE_H

#include <stddef.h>
#include <stdint.h>
#include <t2/status.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct t2d_store t2d_store;

/* The schema version this build writes (PRAGMA user_version). Older versions are migrated on open. */
#define T2D_STORE_SCHEMA_VERSION 2

/* Progress events kept per job: the newest T2D_STORE_PROGRESS_KEEP are always kept; older ones are
 * pruned in batches once a job has more than KEEP + KEEP/10 (so between KEEP and 1.1·KEEP remain).
 * Events of other types are never pruned. Changeable per store for tests. */
#define T2D_STORE_PROGRESS_KEEP 10000

/* Longest tenant name, expert name and plugin key (bytes); largest plugin value (plugin.h's limits). */
#define T2D_STORE_NAME_MAX 128
#define T2D_STORE_KEY_MAX 200
#define T2D_STORE_VALUE_MAX (1u << 20)

/* ---------------- opening ---------------- */

/* Open or create the database at path: WAL journal, foreign keys on, busy timeout, schema created or
 * migrated to T2D_STORE_SCHEMA_VERSION. Errors (in *err if err is non-NULL, detail in t2d_store_errmsg):
 * T2_ERR_FORMAT: the file is not an SQLite database, is a damaged one, or is one that is not t2d's (names
 *   the path; damage found later, by a query, is also T2_ERR_FORMAT naming the path);
 * T2_ERR_VERSION: its schema is newer than this build knows (names both versions);
 * T2_ERR_IO: it cannot be opened or created. Returns NULL on failure.
 * Owned: caller frees with t2d_store_close. */
t2d_store *t2d_store_open(const char *path, t2_status *err);

/* Close the connection and free the store. NULL-safe. No call may be running on it concurrently. */
void t2d_store_close(t2d_store *s);

/* The detail of this thread's last failed store call ("" if none yet). Borrowed: valid until this thread's
 * next store call. */
const char *t2d_store_errmsg(void);

/* Keep this many progress events per job instead of T2D_STORE_PROGRESS_KEEP (n >= 1). */
void t2d_store_set_progress_keep(t2d_store *s, int n);

/* Called after a committed write that added an event to a job (insert, claim, state change, progress, log,
 * cancel), with the job id and the event's seq: lets the daemon wake its watch streams instead of polling.
 * It runs on the writing thread after the store's mutex is released; it may call the store. Not called by
 * t2d_store_recover. fn NULL removes the hook. */
typedef void (*t2d_store_event_hook)(void *ud, int64_t job_id, int64_t seq);
void t2d_store_set_event_hook(t2d_store *s, t2d_store_event_hook fn, void *ud);

/* ---------------- tenants ---------------- */

typedef struct t2d_tenant {
    int64_t id;
    char *name;
    double created;
} t2d_tenant;

/* The id of the tenant called name, creating it if new (names: 1..T2D_STORE_NAME_MAX bytes).
 * id may be NULL. */
t2_status t2d_store_tenant_ensure(t2d_store *s, const char *name, int64_t *id);

/* Every tenant, by id. *out is owned: caller frees with t2d_tenants_free(*out, *n). */
t2_status t2d_store_tenant_list(t2d_store *s, t2d_tenant **out, size_t *n);
void t2d_tenants_free(t2d_tenant *t, size_t n);

/* What the daemon needs to check a tenant's quotas (the quotas themselves are its configuration). */
typedef struct t2d_tenant_usage {
    int64_t queued;        /* jobs queued */
    int64_t running;       /* jobs running */
    int64_t experts;       /* experts owned (published or not) */
    uint64_t expert_bytes; /* sum of their sizes */
} t2d_tenant_usage;

/* The usage of tenant name; all zero for a tenant that does not exist yet. */
t2_status t2d_store_tenant_usage(t2d_store *s, const char *tenant, t2d_tenant_usage *out);

/* ---------------- jobs ---------------- */

typedef enum t2d_job_state {
    T2D_JOB_QUEUED = 0,
    T2D_JOB_RUNNING = 1,
    T2D_JOB_DONE = 2,
    T2D_JOB_FAILED = 3,
    T2D_JOB_CANCELLED = 4,
    T2D_JOB_N_STATES = 5
} t2d_job_state;

/* "queued", "running", "done", "failed", "cancelled" (proto Job.state); "?" out of range. Borrowed, static. */
const char *t2d_job_state_name(t2d_job_state st);
/* The state named name; T2_ERR_INVALID_ARG for anything else. */
t2_status t2d_job_state_parse(const char *name, t2d_job_state *st);

/* A job, mirroring proto Job (plus the fields of JobSubmit the runner needs). */
typedef struct t2d_job {
    int64_t id;
    char *tenant;       /* owner: only it may see or cancel the job (the daemon checks) */
    char *kind;         /* "train" or "eval" */
    t2d_job_state state;
    char *trainer, *grader, *dataset, *expert, *label;
    char *settings;     /* JSON object text or "" */
    char *dispatch;
    char *mix;          /* JSON array text (the MixParts) or "" */
    char *split;
    int64_t limit;      /* eval: at most this many tasks (0 = all) */
    char *sampling;     /* JSON object text or "" */
    int64_t priority;   /* within the tenant's queue, higher first */
    int64_t step, total;
    double reward, accuracy; /* NaN: none yet (stored as NULL) */
    double created, started, finished;
    char *error;        /* why it failed, or "" */
    char *result;       /* JSON object text or "" */
    double eta;         /* seconds left (0: unknown) */
    int cancel_requested; /* a running job whose tenant asked to cancel: the runner stops it */
} t2d_job;

/* Zero every field, reward and accuracy NaN. Use before filling a job to insert. */
void t2d_job_init(t2d_job *j);
/* Free the strings of j and re-init it. NULL-safe. */
void t2d_job_clear(t2d_job *j);
/* Free an array of n jobs from t2d_store_job_list. NULL-safe. */
void t2d_jobs_free(t2d_job *jobs, size_t n);

/* Queue a new job from j's tenant (created if new), kind, trainer, grader, dataset, expert, label,
 * settings, dispatch, mix, split, limit, sampling, priority and total; the other fields are ignored.
 * kind must be "train" or "eval"; settings and sampling must be JSON objects, mix a JSON array (or empty).
 * Records a "queued" event. *id (if non-NULL) gets the new id. T2_ERR_INVALID_ARG names a bad field. */
t2_status t2d_store_job_insert(t2d_store *s, const t2d_job *j, int64_t *id);

/* Fill *out with job id (overwritten without freeing: clear it before reuse; its strings are owned by it,
 * t2d_job_clear). T2_ERR_NOT_FOUND if there is no such job. */
t2_status t2d_store_job_get(t2d_store *s, int64_t id, t2d_job *out);

/* Jobs newest first (by id): tenant NULL = every tenant's; state NULL = any state (else one of the names
 * above); at most limit (<= 0: 100). *out owned: t2d_jobs_free(*out, *n). */
t2_status t2d_store_job_list(t2d_store *s, const char *tenant, const char *state, int limit, t2d_job **out,
                             size_t *n);

/* Move job id to state st and record an event of that type ("started" for running; a failed event's message
 * is error). running sets started; done, failed and cancelled set finished, store error and result (NULL:
 * keep; result must be a JSON object) and delete the job's checkpoint; queued (a runner giving a job back,
 * e.g. when the daemon drains) clears started and keeps the checkpoint — but a job whose cancel was
 * requested goes to cancelled instead. Allowed: queued -> running, failed, cancelled; running -> queued,
 * done, failed, cancelled. Anything else (in particular any change of a finished job) is
 * T2_ERR_INVALID_ARG naming both states; T2_ERR_NOT_FOUND for an unknown id. */
t2_status t2d_store_job_set_state(t2d_store *s, int64_t id, t2d_job_state st, const char *error,
                                  const char *result);

/* Progress of a running job: step, total (<= 0: keep the job's), reward and accuracy (NaN: none in this
 * report — the job keeps its last value, the event stores none), eta seconds (0 = unknown), message (NULL
 * or ""). Updates the job and records a "progress" event (pruned: see T2D_STORE_PROGRESS_KEEP).
 * T2_ERR_INVALID_ARG if the job is not running. */
typedef struct t2d_progress {
    int64_t step, total;
    double reward, accuracy, eta;
    const char *message;
} t2d_progress;
t2_status t2d_store_job_progress(t2d_store *s, int64_t id, const t2d_progress *p);

/* Record a "log" event with message on job id (any state). T2_ERR_NOT_FOUND for an unknown id. */
t2_status t2d_store_job_log(t2d_store *s, int64_t id, const char *message);

typedef enum t2d_cancel_result {
    T2D_CANCEL_DONE = 1,      /* it was queued: it is now cancelled (a "cancelled" event recorded) */
    T2D_CANCEL_REQUESTED = 2, /* it is running: cancel_requested is set (a "log" event); the runner stops it
                                 and sets the state to cancelled */
    T2D_CANCEL_FINISHED = 3,  /* it had already finished (done, failed or cancelled): nothing changed */
} t2d_cancel_result;

/* Cancel job id. The daemon checks first that the caller is the job's tenant. *what may be NULL.
 * Asking twice for a running job is T2D_CANCEL_REQUESTED again, without a second event. */
t2_status t2d_store_job_cancel(t2d_store *s, int64_t id, t2d_cancel_result *what);

/* Whether job id has cancel_requested set (for the runner's poll; a cheap query): 1 yes, 0 no or no such
 * job. */
int t2d_store_job_cancel_requested(t2d_store *s, int64_t id);

/* Atomically pick the next job to run and mark it running ("started" event), filling *out (overwritten;
 * t2d_job_clear it after use).
 * max_running_total: jobs running at once over all tenants; max_running_per_tenant: per tenant
 * (either <= 0: no limit). Fairness: among tenants with queued jobs and below their limit, the one with the
 * fewest running jobs; ties go to the tenant whose last job was started longest ago (never = first), then
 * to the one whose oldest queued job is oldest. Within the tenant: highest priority, then oldest id.
 * T2_ERR_NOT_FOUND (not an error to log) when no job may start now. */
t2_status t2d_store_job_claim_next(t2d_store *s, int max_running_total, int max_running_per_tenant, t2d_job *out);

/* Number of jobs in each state (indexed by t2d_job_state), of tenant (NULL: all tenants). */
t2_status t2d_store_job_counts(t2d_store *s, const char *tenant, int64_t counts[T2D_JOB_N_STATES]);

/* ---------------- job events ---------------- */

typedef struct t2d_job_event {
    int64_t seq;      /* increasing over the whole database */
    int64_t job;
    double time;
    char *type;       /* "queued", "started", "progress", "log", "done", "failed", "cancelled" */
    int64_t step, total;
    double reward, accuracy; /* NaN: none */
    char *message;
    double eta;
    t2d_job_state state; /* the job's state after the event */
} t2d_job_event;

/* Events of job id with seq > after_seq, oldest first, at most limit (<= 0: 1000). A watcher passes the
 * seq of the last event it saw. T2_ERR_NOT_FOUND if there is no such job. *out owned:
 * t2d_job_events_free(*out, *n). */
t2_status t2d_store_job_events(t2d_store *s, int64_t id, int64_t after_seq, int limit, t2d_job_event **out,
                               size_t *n);
void t2d_job_events_free(t2d_job_event *ev, size_t n);

/* ---------------- checkpoints ---------------- */

/* Save (replacing any previous one) the checkpoint of job id, taken at step. len may be 0 (data may then be
 * NULL), at most 1e9 bytes. T2_ERR_NOT_FOUND for an unknown job, T2_ERR_INVALID_ARG for a finished one. */
t2_status t2d_store_checkpoint_save(t2d_store *s, int64_t id, int64_t step, const void *data, size_t len);
/* Load it: *data owned (free()), never NULL on success even for len 0. T2_ERR_NOT_FOUND if none. step, data
 * and len may each be NULL when not wanted. */
t2_status t2d_store_checkpoint_load(t2d_store *s, int64_t id, int64_t *step, void **data, size_t *len);

/* ---------------- recovery ---------------- */

/* For a job found running without a checkpoint: nonzero to queue it again from the start, 0 to mark it
 * failed. Called inside the store's transaction: must not call the store. */
typedef int (*t2d_store_restart_fn)(void *ud, const t2d_job *job);

typedef struct t2d_recover_counts {
    int64_t queued;    /* jobs that were (and stay) queued */
    int64_t resumed;   /* running, with a checkpoint: queued again, resuming from it */
    int64_t requeued;  /* running, no checkpoint, restartable: queued again from step 0 */
    int64_t failed;    /* running, no checkpoint, not restartable: failed */
    int64_t cancelled; /* running with cancel_requested: cancelled */
} t2d_recover_counts;

/* At daemon start, before any claim: every job left running by a previous daemon is
 * - cancelled if its tenant had asked to cancel it;
 * - queued again keeping its checkpoint (step set back to the checkpoint's), with a "log" event
 *   "daemon restarted; resuming from checkpoint at step N";
 * - without a checkpoint, queued again from scratch (step 0, "log" event) if can_restart says so, else
 *   failed with "daemon restarted while the job was running and it had no checkpoint".
 *   can_restart NULL: never restart (fail them all).
 * One transaction. out may be NULL. */
t2_status t2d_store_recover(t2d_store *s, t2d_store_restart_fn can_restart, void *ud, t2d_recover_counts *out);

/* ---------------- experts ---------------- */

typedef struct t2d_expert {
    int64_t id;
    char *name;        /* unique per owner */
    char *owner;       /* tenant */
    char *label;
    char *path;        /* the expert file on disk */
    uint64_t n_params;
    uint64_t bytes;
    double created;
    int published;     /* visible to (and usable by) every tenant */
    char *meta;        /* JSON object text or "" */
} t2d_expert;

/* Free the strings of e and zero it. NULL-safe. */
void t2d_expert_clear(t2d_expert *e);
void t2d_experts_free(t2d_expert *e, size_t n);

/* Register e (owner created if new; name 1..T2D_STORE_NAME_MAX bytes, path non-empty, meta a JSON object or
 * ""); created is set to now, id is ignored. T2_ERR_INVALID_ARG if the owner already has an expert of that
 * name (the message says so) or a field is bad. *id may be NULL. */
t2_status t2d_store_expert_add(t2d_store *s, const t2d_expert *e, int64_t *id);

/* The expert called name that tenant may use: its own if it has one, else one published by another tenant
 * (the oldest if several tenants published that name). *out strings owned (t2d_expert_clear).
 * T2_ERR_NOT_FOUND if none is visible (another tenant's unpublished expert is not visible). */
t2_status t2d_store_expert_get(t2d_store *s, const char *tenant, const char *name, t2d_expert *out);

/* The tenant's own experts by name, then (with_published) other tenants' published ones by owner and
 * name. *out owned: t2d_experts_free(*out, *n). */
t2_status t2d_store_expert_list(t2d_store *s, const char *tenant, int with_published, t2d_expert **out,
                                size_t *n);

/* Delete tenant's own expert name from the registry; *path (if non-NULL) gets its file path (owned,
 * free()) so that the caller can remove the file. T2_ERR_NOT_FOUND if tenant owns none of that name
 * (even if another tenant published one: only the owner deletes). */
t2_status t2d_store_expert_delete(t2d_store *s, const char *tenant, const char *name, char **path);

/* Publish (publish != 0) or withdraw tenant's own expert name. T2_ERR_NOT_FOUND as for delete. */
t2_status t2d_store_expert_publish(t2d_store *s, const char *tenant, const char *name, int publish);

/* ---------------- plugin key-value (host API kv_put / kv_get) ---------------- */

/* Store value (len bytes, len <= T2D_STORE_VALUE_MAX) under key (1..T2D_STORE_KEY_MAX bytes) for tenant,
 * replacing any previous value. */
t2_status t2d_store_kv_put(t2d_store *s, const char *tenant, const char *key, const void *value, size_t len);
/* The value of key for tenant: *value owned (free()), never NULL on success even for len 0.
 * T2_ERR_NOT_FOUND if absent. */
t2_status t2d_store_kv_get(t2d_store *s, const char *tenant, const char *key, void **value, size_t *len);

#ifdef __cplusplus
}
#endif
#endif
