/* store_int.h — what the store's .c files share: the store object, error and transaction helpers,
 * column readers, and the schema migrations (also used by the test suite to build an old database). */
#ifndef T2D_STORE_INT_H
#define T2D_STORE_INT_H

#include "store.h"

#include <pthread.h>
#include <sqlite3.h>

struct t2d_store {
    sqlite3 *db;
    pthread_mutex_t mu; /* guards db and everything below */
    char *path;
    int progress_keep;
    t2d_store_event_hook hook;
    void *hook_ud;
};

/* The application_id stamped in t2d's databases ("T2dS"). */
#define T2D_STORE_APP_ID 0x54326453

/* migrations[v] turns a version-v schema into version v + 1 (v = 0: an empty file). Exactly
 * T2D_STORE_SCHEMA_VERSION entries. Borrowed, static. */
extern const char *const t2d_store_migrations[T2D_STORE_SCHEMA_VERSION];

/* ---- errors (store.c) ---- */

/* Set this thread's message (printf-style) and return st. */
t2_status st_err(t2_status st, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Map an SQLite result code to a status and set the message "<what>: <sqlite's message>". */
t2_status st_sqlerr(t2d_store *s, int rc, const char *what);

/* ---- locking and transactions ---- */

void st_lock(t2d_store *s);
void st_unlock(t2d_store *s);
/* BEGIN IMMEDIATE (a write transaction: waits for other writers up to the busy timeout). */
t2_status st_begin(t2d_store *s);
/* BEGIN (deferred: a consistent read of several statements). */
t2_status st_begin_read(t2d_store *s);
/* Commit if r is T2_OK (returning the commit's status), else roll back and return r. */
t2_status st_end(t2d_store *s, t2_status r);
/* Release the lock and, when an event was written (seq > 0) and r is T2_OK, call the event hook. */
t2_status st_unlock_notify(t2d_store *s, t2_status r, int64_t job, int64_t seq);

/* ---- statements ---- */

/* Prepare sql; *stmt is owned: sqlite3_finalize. what names the operation for the message. */
t2_status st_prepare(t2d_store *s, const char *sql, sqlite3_stmt **stmt, const char *what);
/* Step a statement that returns no row (or whose rows are ignored) to completion, then finalize it. */
t2_status st_run(t2d_store *s, sqlite3_stmt *stmt, const char *what);
/* Bind helpers: text (NULL binds ""), text or SQL NULL, a double or NULL when NaN. */
int st_bind_text(sqlite3_stmt *st, int i, const char *v);
int st_bind_text_or_null(sqlite3_stmt *st, int i, const char *v);
int st_bind_real_or_null(sqlite3_stmt *st, int i, double v);
/* A malloc'd copy of a text column ("" for NULL); NULL only when out of memory. Owned: free(). */
char *st_col_dup(sqlite3_stmt *st, int i);
/* A real column, or nan_value when the column is NULL. */
double st_col_real(sqlite3_stmt *st, int i, double null_value);

/* Unix time now, in seconds. */
double st_now(void);

/* ---- checks on caller input (they set the message) ---- */

/* A name of 1..max bytes without control characters; what names it in the message ("tenant name"). */
t2_status st_check_name(const char *what, const char *name, size_t max);
/* Empty/NULL, or JSON text of the given kind ('o' object, 'a' array), at most 1 MiB. */
t2_status st_check_json(const char *what, const char *text, char kind);
/* NULL or at most 1 MiB of text. */
t2_status st_check_text(const char *what, const char *text);

/* ---- tenants (store.c), inside a transaction ---- */

/* The id of tenant name; create != 0 creates it when absent, else T2_ERR_NOT_FOUND. */
t2_status st_tenant_id(t2d_store *s, const char *name, int create, int64_t *id);

/* ---- jobs (store_jobs.c), called with the lock held ---- */

/* The columns st_job_read expects, and the FROM clause they need (tenant names joined in). */
#define ST_JOB_SELECT                                                                                               \
    "SELECT j.id, t.name, j.kind, j.state, j.trainer, j.grader, j.dataset, j.expert, j.label, j.settings,"          \
    " j.dispatch, j.mix, j.split, j.lim, j.sampling, j.priority, j.step, j.total, j.reward, j.accuracy,"          \
    " j.created, j.started, j.finished, j.error, j.result, j.eta, j.cancel_requested"                              \
    " FROM jobs j JOIN tenants t ON t.id = j.tenant_id "
/* Fill *j (t2d_job_init'ed or cleared) from the current row of a ST_JOB_SELECT statement. */
t2_status st_job_read(sqlite3_stmt *st, t2d_job *j);
/* Load job id into *j (overwritten). T2_ERR_NOT_FOUND names the id. */
t2_status st_job_load(t2d_store *s, int64_t id, t2d_job *j);
/* The state and cancel flag of job id. T2_ERR_NOT_FOUND names the id. */
t2_status st_job_state(t2d_store *s, int64_t id, t2d_job_state *state, int *cancel_requested);
/* Append an event to job id (inside a write transaction); *seq (may be NULL) gets its seq. reward and
 * accuracy NaN are stored as NULL. Progress events are counted and pruned here. */
t2_status st_add_event(t2d_store *s, int64_t id, const char *type, t2d_job_state state, int64_t step,
                       int64_t total, double reward, double accuracy, const char *message, double eta,
                       int64_t *seq);
/* Append an event of type with message to job id that snapshots the job as it is now (after the change
 * the event reports): its state, step, total, reward, accuracy and eta. */
t2_status st_add_job_event(t2d_store *s, int64_t id, const char *type, const char *message, int64_t *seq);

#endif
