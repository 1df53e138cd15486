/* Scheduling (claiming the next job fairly), checkpoints, and recovery after a restart.
 *
 * Fairness between tenants: a tenant that queues a hundred jobs must not make another tenant's single job
 * wait behind all of them. So the next job is chosen in two steps: first the tenant (fewest running jobs,
 * then the one whose last start is longest ago, then the one whose oldest queued job is oldest), then that
 * tenant's own next job (priority, then age). "Longest ago" uses a start counter rather than the clock,
 * so that two starts within the same clock tick are still ordered. */
#include "store_int.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------- claim ---------------- */

static t2_status count_running(t2d_store *s, int64_t *n) {
    sqlite3_stmt *st;
    t2_status r = st_prepare(s, "SELECT COUNT(*) FROM jobs WHERE state = 'running'", &st, "count running jobs");
    if (r != T2_OK) return r;
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) *n = sqlite3_column_int64(st, 0);
    else r = st_sqlerr(s, rc, "count running jobs");
    sqlite3_finalize(st);
    return r;
}

/* Run a one-row, one-integer query with up to two integer parameters; *found 0 when it has no row. */
static t2_status query_id(t2d_store *s, const char *sql, int64_t a, int64_t b, int64_t *v, int *found,
                          const char *what) {
    sqlite3_stmt *st;
    t2_status r = st_prepare(s, sql, &st, what);
    if (r != T2_OK) return r;
    int np = sqlite3_bind_parameter_count(st);
    if (np >= 1) sqlite3_bind_int64(st, 1, a);
    if (np >= 2) sqlite3_bind_int64(st, 2, b);
    int rc = sqlite3_step(st);
    *found = rc == SQLITE_ROW;
    if (rc == SQLITE_ROW) *v = sqlite3_column_int64(st, 0);
    else if (rc != SQLITE_DONE) r = st_sqlerr(s, rc, what);
    sqlite3_finalize(st);
    return r;
}

static t2_status claim(t2d_store *s, int max_total, int max_per_tenant, int64_t *job_id, int64_t *seq) {
    int64_t running = 0, tid = 0;
    int found = 0;
    t2_status r = count_running(s, &running);
    if (r != T2_OK) return r;
    if (max_total > 0 && running >= max_total)
        return st_err(T2_ERR_NOT_FOUND, "no job may start: %lld of at most %d jobs are running", (long long)running,
                      max_total);
    r = query_id(s,
                 "SELECT q.tenant_id FROM"
                 " (SELECT tenant_id, MIN(id) AS first_id FROM jobs WHERE state = 'queued' GROUP BY tenant_id) q"
                 " JOIN tenants t ON t.id = q.tenant_id"
                 " LEFT JOIN (SELECT tenant_id, COUNT(*) AS n FROM jobs WHERE state = 'running' GROUP BY tenant_id) r"
                 "   ON r.tenant_id = q.tenant_id"
                 " WHERE ?1 <= 0 OR COALESCE(r.n, 0) < ?1"
                 " ORDER BY COALESCE(r.n, 0), t.last_start, q.first_id LIMIT 1",
                 max_per_tenant, 0, &tid, &found, "pick the next tenant");
    if (r != T2_OK) return r;
    if (!found) return st_err(T2_ERR_NOT_FOUND, "no job may start: no queued job of a tenant below its running limit");
    r = query_id(s, "SELECT id FROM jobs WHERE tenant_id = ?1 AND state = 'queued' ORDER BY priority DESC, id LIMIT 1",
                 tid, 0, job_id, &found, "pick the tenant's next job");
    if (r != T2_OK) return r;
    if (!found) return st_err(T2_ERR_INTERNAL, "claim: the chosen tenant has no queued job");
    sqlite3_stmt *st;
    r = st_prepare(s, "UPDATE tenants SET last_start = (SELECT MAX(last_start) FROM tenants) + 1 WHERE id = ?1", &st,
                   "record a tenant's start");
    if (r != T2_OK) return r;
    sqlite3_bind_int64(st, 1, tid);
    if ((r = st_run(s, st, "record a tenant's start")) != T2_OK) return r;
    r = st_prepare(s, "UPDATE jobs SET state = 'running', started = ?2, eta = 0 WHERE id = ?1", &st, "start a job");
    if (r != T2_OK) return r;
    sqlite3_bind_int64(st, 1, *job_id);
    sqlite3_bind_double(st, 2, st_now());
    if ((r = st_run(s, st, "start a job")) != T2_OK) return r;
    return st_add_job_event(s, *job_id, "started", "", seq);
}

t2_status t2d_store_job_claim_next(t2d_store *s, int max_running_total, int max_running_per_tenant, t2d_job *out) {
    if (!s || !out) return st_err(T2_ERR_INVALID_ARG, "job claim: NULL argument");
    int64_t id = 0, seq = 0;
    int loaded = 0;
    st_lock(s);
    t2_status r = st_begin(s);
    if (r == T2_OK) {
        r = claim(s, max_running_total, max_running_per_tenant, &id, &seq);
        if (r == T2_OK) loaded = (r = st_job_load(s, id, out)) == T2_OK;
        r = st_end(s, r);
        if (r != T2_OK && loaded) t2d_job_clear(out); /* loaded, then the commit failed */
    }
    return st_unlock_notify(s, r, id, seq);
}

/* ---------------- checkpoints ---------------- */

/* SQLite's default limit on one value is 1e9 bytes. */
#define CHECKPOINT_MAX 1000000000u

t2_status t2d_store_checkpoint_save(t2d_store *s, int64_t id, int64_t step, const void *data, size_t len) {
    if (!s || (!data && len)) return st_err(T2_ERR_INVALID_ARG, "checkpoint save: NULL argument");
    if (len > CHECKPOINT_MAX)
        return st_err(T2_ERR_INVALID_ARG, "checkpoint of job %lld is %zu bytes, more than the limit %u",
                      (long long)id, len, CHECKPOINT_MAX);
    st_lock(s);
    t2_status r = st_begin(s);
    if (r == T2_OK) {
        t2d_job_state state;
        r = st_job_state(s, id, &state, NULL);
        if (r == T2_OK && state >= T2D_JOB_DONE)
            r = st_err(T2_ERR_INVALID_ARG, "job %lld is %s: a finished job takes no checkpoint", (long long)id,
                       t2d_job_state_name(state));
        sqlite3_stmt *st;
        if (r == T2_OK)
            r = st_prepare(s, "INSERT OR REPLACE INTO checkpoints (job_id, step, data, saved) VALUES (?1, ?2, ?3, ?4)",
                           &st, "save a checkpoint");
        if (r == T2_OK) {
            sqlite3_bind_int64(st, 1, id);
            sqlite3_bind_int64(st, 2, step);
            sqlite3_bind_blob64(st, 3, len ? data : "", len, SQLITE_STATIC);
            sqlite3_bind_double(st, 4, st_now());
            r = st_run(s, st, "save a checkpoint");
        }
        r = st_end(s, r);
    }
    st_unlock(s);
    return r;
}

t2_status t2d_store_checkpoint_load(t2d_store *s, int64_t id, int64_t *step, void **data, size_t *len) {
    if (!s) return st_err(T2_ERR_INVALID_ARG, "checkpoint load: NULL store");
    if (data) *data = NULL;
    if (len) *len = 0;
    st_lock(s);
    sqlite3_stmt *st;
    t2_status r = st_prepare(s, "SELECT step, data FROM checkpoints WHERE job_id = ?1", &st, "load a checkpoint");
    if (r == T2_OK) {
        sqlite3_bind_int64(st, 1, id);
        int rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
            size_t n = (size_t)sqlite3_column_bytes(st, 1);
            const void *b = sqlite3_column_blob(st, 1);
            if (step) *step = sqlite3_column_int64(st, 0);
            if (len) *len = n;
            if (data) {
                void *copy = malloc(n ? n : 1);
                if (!copy) {
                    r = st_err(T2_ERR_NOMEM, "out of memory loading the checkpoint of job %lld (%zu bytes)",
                               (long long)id, n);
                } else {
                    if (n) memcpy(copy, b, n);
                    *data = copy;
                }
            }
        } else if (rc == SQLITE_DONE) {
            r = st_err(T2_ERR_NOT_FOUND, "job %lld has no checkpoint", (long long)id);
        } else {
            r = st_sqlerr(s, rc, "load a checkpoint");
        }
        sqlite3_finalize(st);
    }
    st_unlock(s);
    return r;
}

/* ---------------- recovery ---------------- */

typedef struct orphan {
    t2d_job job;
    int has_checkpoint;
    int64_t checkpoint_step;
} orphan;

static t2_status list_orphans(t2d_store *s, orphan **out, size_t *n) {
    sqlite3_stmt *st;
    t2_status r = st_prepare(s, ST_JOB_SELECT "WHERE j.state = 'running' ORDER BY j.id", &st,
                             "list the jobs left running");
    if (r != T2_OK) return r;
    /* The checkpoint step is read by a second query per job, which keeps ST_JOB_SELECT's column list
     * the only one there is. */
    orphan *v = NULL;
    size_t cnt = 0, cap = 0;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (cnt == cap) {
            size_t nc = cap ? 2 * cap : 8;
            orphan *nv = realloc(v, nc * sizeof *nv);
            if (!nv) {
                r = st_err(T2_ERR_NOMEM, "out of memory listing the jobs left running");
                break;
            }
            v = nv;
            cap = nc;
        }
        memset(&v[cnt], 0, sizeof v[cnt]);
        if ((r = st_job_read(st, &v[cnt].job)) != T2_OK) break;
        cnt++;
    }
    if (r == T2_OK && rc != SQLITE_DONE) r = st_sqlerr(s, rc, "list the jobs left running");
    sqlite3_finalize(st);
    for (size_t i = 0; r == T2_OK && i < cnt; i++)
        r = query_id(s, "SELECT step FROM checkpoints WHERE job_id = ?1", v[i].job.id, 0, &v[i].checkpoint_step,
                     &v[i].has_checkpoint, "look up a checkpoint");
    *out = v;
    *n = cnt;
    return r;
}

static void free_orphans(orphan *v, size_t n) {
    for (size_t i = 0; i < n; i++) t2d_job_clear(&v[i].job);
    free(v);
}

/* Put job id back in the queue at step (a checkpoint's, or 0), with a log event saying why. */
static t2_status requeue(t2d_store *s, int64_t id, int64_t step, int from_scratch, const char *msg) {
    sqlite3_stmt *st;
    t2_status r = st_prepare(s,
                             from_scratch
                                 ? "UPDATE jobs SET state = 'queued', started = NULL, eta = 0, step = 0,"
                                   " reward = NULL, accuracy = NULL WHERE id = ?1"
                                 : "UPDATE jobs SET state = 'queued', started = NULL, eta = 0, step = ?2 WHERE id = ?1",
                             &st, "queue a job again");
    if (r != T2_OK) return r;
    sqlite3_bind_int64(st, 1, id);
    if (!from_scratch) sqlite3_bind_int64(st, 2, step);
    if ((r = st_run(s, st, "queue a job again")) != T2_OK) return r;
    return st_add_job_event(s, id, "log", msg, NULL);
}

static t2_status finish(t2d_store *s, int64_t id, const char *state, const char *error) {
    sqlite3_stmt *st;
    t2_status r = st_prepare(s, "UPDATE jobs SET state = ?2, finished = ?3, eta = 0, error = ?4 WHERE id = ?1", &st,
                             "end a job left running");
    if (r != T2_OK) return r;
    sqlite3_bind_int64(st, 1, id);
    st_bind_text(st, 2, state);
    sqlite3_bind_double(st, 3, st_now());
    st_bind_text(st, 4, error);
    if ((r = st_run(s, st, "end a job left running")) != T2_OK) return r;
    if ((r = st_prepare(s, "DELETE FROM checkpoints WHERE job_id = ?1", &st, "delete a checkpoint")) != T2_OK) return r;
    sqlite3_bind_int64(st, 1, id);
    if ((r = st_run(s, st, "delete a checkpoint")) != T2_OK) return r;
    return st_add_job_event(s, id, state, error, NULL);
}

static const char no_checkpoint_reason[] = "daemon restarted while the job was running and it had no checkpoint";

t2_status t2d_store_recover(t2d_store *s, t2d_store_restart_fn can_restart, void *ud, t2d_recover_counts *out) {
    if (!s) return st_err(T2_ERR_INVALID_ARG, "recover: NULL store");
    t2d_recover_counts c = {0};
    orphan *v = NULL;
    size_t n = 0;
    st_lock(s);
    t2_status r = st_begin(s);
    if (r != T2_OK) {
        st_unlock(s);
        return r;
    }
    int found = 0;
    r = query_id(s, "SELECT COUNT(*) FROM jobs WHERE state = 'queued'", 0, 0, &c.queued, &found, "count queued jobs");
    if (r == T2_OK) r = list_orphans(s, &v, &n);
    for (size_t i = 0; r == T2_OK && i < n; i++) {
        const orphan *o = &v[i];
        char msg[160];
        if (o->job.cancel_requested) {
            r = finish(s, o->job.id, "cancelled", "");
            c.cancelled++;
        } else if (o->has_checkpoint) {
            snprintf(msg, sizeof msg, "daemon restarted; resuming from checkpoint at step %lld",
                     (long long)o->checkpoint_step);
            r = requeue(s, o->job.id, o->checkpoint_step, 0, msg);
            c.resumed++;
        } else if (can_restart && can_restart(ud, &o->job)) {
            r = requeue(s, o->job.id, 0, 1, "daemon restarted; the job had no checkpoint and starts again from step 0");
            c.requeued++;
        } else {
            r = finish(s, o->job.id, "failed", no_checkpoint_reason);
            c.failed++;
        }
    }
    r = st_end(s, r);
    st_unlock(s);
    free_orphans(v, n);
    if (r == T2_OK && out) *out = c;
    return r;
}
