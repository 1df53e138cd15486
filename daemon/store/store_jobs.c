/* Jobs: the struct, insert / get / list, state changes, progress and log events, cancel, counts, and
 * reading a job's events. Scheduling, checkpoints and recovery are in store_sched.c.
 *
 * Every state change and every progress report appends a row to job_events in the same transaction as the
 * change itself, so a watcher reading events after a seq never misses a change and never sees one that
 * did not happen. */
#include "store_int.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *const state_names[T2D_JOB_N_STATES] = {"queued", "running", "done", "failed", "cancelled"};

const char *t2d_job_state_name(t2d_job_state st) {
    return (unsigned)st < T2D_JOB_N_STATES ? state_names[st] : "?";
}

t2_status t2d_job_state_parse(const char *name, t2d_job_state *st) {
    for (int i = 0; name && i < T2D_JOB_N_STATES; i++)
        if (strcmp(name, state_names[i]) == 0) {
            *st = (t2d_job_state)i;
            return T2_OK;
        }
    return st_err(T2_ERR_INVALID_ARG, "unknown job state '%s' (expected queued, running, done, failed or cancelled)",
                  name ? name : "(null)");
}

void t2d_job_init(t2d_job *j) {
    memset(j, 0, sizeof *j);
    j->reward = NAN;
    j->accuracy = NAN;
}

void t2d_job_clear(t2d_job *j) {
    if (!j) return;
    char **strs[] = {&j->tenant, &j->kind,  &j->trainer, &j->grader, &j->dataset, &j->expert, &j->label,
                     &j->settings, &j->dispatch, &j->mix, &j->split,  &j->sampling, &j->error,  &j->result};
    for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++) free(*strs[i]);
    t2d_job_init(j);
}

void t2d_jobs_free(t2d_job *jobs, size_t n) {
    if (!jobs) return;
    for (size_t i = 0; i < n; i++) t2d_job_clear(&jobs[i]);
    free(jobs);
}

static t2_status state_col(sqlite3_stmt *st, int i, t2d_job_state *out) {
    const char *name = (const char *)sqlite3_column_text(st, i);
    for (int k = 0; name && k < T2D_JOB_N_STATES; k++)
        if (strcmp(name, state_names[k]) == 0) {
            *out = (t2d_job_state)k;
            return T2_OK;
        }
    return st_err(T2_ERR_FORMAT, "the state database holds an unknown job state '%s'", name ? name : "NULL");
}

t2_status st_job_read(sqlite3_stmt *st, t2d_job *j) {
    t2d_job_init(j);
    j->id = sqlite3_column_int64(st, 0);
    /* column index of each string field, in ST_JOB_SELECT's order */
    struct { char **dst; int col; } strs[] = {
        {&j->tenant, 1},   {&j->kind, 2},  {&j->trainer, 4}, {&j->grader, 5},    {&j->dataset, 6},
        {&j->expert, 7},   {&j->label, 8}, {&j->settings, 9}, {&j->dispatch, 10}, {&j->mix, 11},
        {&j->split, 12},   {&j->sampling, 14}, {&j->error, 23}, {&j->result, 24},
    };
    for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++)
        if (!(*strs[i].dst = st_col_dup(st, strs[i].col))) {
            t2d_job_clear(j);
            return st_err(T2_ERR_NOMEM, "out of memory reading a job");
        }
    t2_status r = state_col(st, 3, &j->state);
    if (r != T2_OK) {
        t2d_job_clear(j);
        return r;
    }
    j->limit = sqlite3_column_int64(st, 13);
    j->priority = sqlite3_column_int64(st, 15);
    j->step = sqlite3_column_int64(st, 16);
    j->total = sqlite3_column_int64(st, 17);
    j->reward = st_col_real(st, 18, NAN);
    j->accuracy = st_col_real(st, 19, NAN);
    j->created = st_col_real(st, 20, 0);
    j->started = st_col_real(st, 21, 0);
    j->finished = st_col_real(st, 22, 0);
    j->eta = st_col_real(st, 25, 0);
    j->cancel_requested = sqlite3_column_int(st, 26) != 0;
    return T2_OK;
}

t2_status st_job_load(t2d_store *s, int64_t id, t2d_job *j) {
    sqlite3_stmt *st;
    t2_status r = st_prepare(s, ST_JOB_SELECT "WHERE j.id = ?1", &st, "read a job");
    if (r != T2_OK) return r;
    sqlite3_bind_int64(st, 1, id);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) r = st_job_read(st, j);
    else if (rc == SQLITE_DONE) r = st_err(T2_ERR_NOT_FOUND, "no job with id %lld", (long long)id);
    else r = st_sqlerr(s, rc, "read a job");
    sqlite3_finalize(st);
    return r;
}

t2_status st_job_state(t2d_store *s, int64_t id, t2d_job_state *state, int *cancel_requested) {
    sqlite3_stmt *st;
    t2_status r = st_prepare(s, "SELECT state, cancel_requested FROM jobs WHERE id = ?1", &st, "read a job's state");
    if (r != T2_OK) return r;
    sqlite3_bind_int64(st, 1, id);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        r = state_col(st, 0, state);
        if (cancel_requested) *cancel_requested = sqlite3_column_int(st, 1) != 0;
    } else if (rc == SQLITE_DONE) {
        r = st_err(T2_ERR_NOT_FOUND, "no job with id %lld", (long long)id);
    } else {
        r = st_sqlerr(s, rc, "read a job's state");
    }
    sqlite3_finalize(st);
    return r;
}

/* Drop the oldest progress events of job id once it has more than keep + keep/10 of them. */
static t2_status prune_progress(t2d_store *s, int64_t id) {
    sqlite3_stmt *st;
    t2_status r = st_prepare(s, "UPDATE jobs SET progress_events = progress_events + 1 WHERE id = ?1"
                                " RETURNING progress_events", &st, "count progress events");
    if (r != T2_OK) return r;
    sqlite3_bind_int64(st, 1, id);
    int64_t count = 0;
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        count = sqlite3_column_int64(st, 0);
        rc = sqlite3_step(st);
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) return st_sqlerr(s, rc, "count progress events");
    int64_t keep = s->progress_keep;
    if (count <= keep + keep / 10) return T2_OK;
    r = st_prepare(s, "DELETE FROM job_events WHERE seq IN (SELECT seq FROM job_events WHERE job_id = ?1"
                      " AND type = 'progress' ORDER BY seq LIMIT ?2)", &st, "prune progress events");
    if (r != T2_OK) return r;
    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_int64(st, 2, count - keep);
    if ((r = st_run(s, st, "prune progress events")) != T2_OK) return r;
    int64_t removed = sqlite3_changes64(s->db);
    r = st_prepare(s, "UPDATE jobs SET progress_events = progress_events - ?2 WHERE id = ?1", &st,
                   "count progress events");
    if (r != T2_OK) return r;
    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_int64(st, 2, removed);
    return st_run(s, st, "count progress events");
}

t2_status st_add_event(t2d_store *s, int64_t id, const char *type, t2d_job_state state, int64_t step,
                       int64_t total, double reward, double accuracy, const char *message, double eta,
                       int64_t *seq) {
    sqlite3_stmt *st;
    t2_status r = st_prepare(s,
                             "INSERT INTO job_events (job_id, time, type, step, total, reward, accuracy, message,"
                             " eta, state) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                             &st, "record a job event");
    if (r != T2_OK) return r;
    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_double(st, 2, st_now());
    st_bind_text(st, 3, type);
    sqlite3_bind_int64(st, 4, step);
    sqlite3_bind_int64(st, 5, total);
    st_bind_real_or_null(st, 6, reward);
    st_bind_real_or_null(st, 7, accuracy);
    st_bind_text(st, 8, message);
    sqlite3_bind_double(st, 9, eta == eta ? eta : 0);
    st_bind_text(st, 10, t2d_job_state_name(state));
    if ((r = st_run(s, st, "record a job event")) != T2_OK) return r;
    if (seq) *seq = sqlite3_last_insert_rowid(s->db);
    return strcmp(type, "progress") == 0 ? prune_progress(s, id) : T2_OK;
}

t2_status st_add_job_event(t2d_store *s, int64_t id, const char *type, const char *message, int64_t *seq) {
    sqlite3_stmt *st;
    t2_status r = st_prepare(s,
                             "INSERT INTO job_events (job_id, time, type, step, total, reward, accuracy, message,"
                             " eta, state) SELECT id, ?2, ?3, step, total, reward, accuracy, ?4, eta, state"
                             " FROM jobs WHERE id = ?1",
                             &st, "record a job event");
    if (r != T2_OK) return r;
    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_double(st, 2, st_now());
    st_bind_text(st, 3, type);
    st_bind_text(st, 4, message);
    if ((r = st_run(s, st, "record a job event")) != T2_OK) return r;
    if (seq) *seq = sqlite3_last_insert_rowid(s->db);
    return T2_OK;
}

/* ---------------- insert, get, list ---------------- */

static t2_status check_job(const t2d_job *j) {
    t2_status r;
    if (!j->kind || (strcmp(j->kind, "train") != 0 && strcmp(j->kind, "eval") != 0))
        return st_err(T2_ERR_INVALID_ARG, "job kind '%s' is neither 'train' nor 'eval'", j->kind ? j->kind : "");
    struct { const char *what, *v; } texts[] = {
        {"job trainer", j->trainer}, {"job grader", j->grader}, {"job dataset", j->dataset},
        {"job expert", j->expert},   {"job label", j->label},   {"job dispatch", j->dispatch},
        {"job split", j->split},
    };
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++)
        if ((r = st_check_text(texts[i].what, texts[i].v)) != T2_OK) return r;
    if ((r = st_check_json("job settings", j->settings, 'o')) != T2_OK) return r;
    if ((r = st_check_json("job mix", j->mix, 'a')) != T2_OK) return r;
    if ((r = st_check_json("job sampling", j->sampling, 'o')) != T2_OK) return r;
    if (j->limit < 0) return st_err(T2_ERR_INVALID_ARG, "job limit %lld is negative", (long long)j->limit);
    if (j->total < 0) return st_err(T2_ERR_INVALID_ARG, "job total %lld is negative", (long long)j->total);
    return T2_OK;
}

t2_status t2d_store_job_insert(t2d_store *s, const t2d_job *j, int64_t *id) {
    if (!s || !j) return st_err(T2_ERR_INVALID_ARG, "job insert: NULL argument");
    t2_status r = check_job(j);
    if (r != T2_OK) return r;
    int64_t jid = 0, seq = 0;
    st_lock(s);
    if ((r = st_begin(s)) != T2_OK) return st_unlock_notify(s, r, 0, 0);
    int64_t tid = 0;
    sqlite3_stmt *st = NULL;
    r = st_tenant_id(s, j->tenant, 1, &tid);
    if (r == T2_OK)
        r = st_prepare(s,
                       "INSERT INTO jobs (tenant_id, kind, state, trainer, grader, dataset, expert, label, settings,"
                       " dispatch, mix, split, lim, sampling, priority, total, created)"
                       " VALUES (?1, ?2, 'queued', ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)",
                       &st, "insert a job");
    if (r == T2_OK) {
        sqlite3_bind_int64(st, 1, tid);
        const char *texts[] = {j->kind, j->trainer, j->grader,   j->dataset, j->expert,
                               j->label, j->settings, j->dispatch, j->mix,   j->split};
        for (int i = 0; i < 10; i++) st_bind_text(st, 2 + i, texts[i]);
        sqlite3_bind_int64(st, 12, j->limit);
        st_bind_text(st, 13, j->sampling);
        sqlite3_bind_int64(st, 14, j->priority);
        sqlite3_bind_int64(st, 15, j->total);
        sqlite3_bind_double(st, 16, st_now());
        r = st_run(s, st, "insert a job");
    }
    if (r == T2_OK) {
        jid = sqlite3_last_insert_rowid(s->db);
        r = st_add_job_event(s, jid, "queued", "", &seq);
    }
    r = st_end(s, r);
    if (r == T2_OK && id) *id = jid;
    return st_unlock_notify(s, r, jid, seq);
}

t2_status t2d_store_job_get(t2d_store *s, int64_t id, t2d_job *out) {
    if (!s || !out) return st_err(T2_ERR_INVALID_ARG, "job get: NULL argument");
    st_lock(s);
    t2_status r = st_job_load(s, id, out);
    st_unlock(s);
    return r;
}

t2_status t2d_store_job_list(t2d_store *s, const char *tenant, const char *state, int limit, t2d_job **out,
                             size_t *n) {
    if (!s || !out || !n) return st_err(T2_ERR_INVALID_ARG, "job list: NULL argument");
    *out = NULL;
    *n = 0;
    t2d_job_state sf;
    t2_status r = state ? t2d_job_state_parse(state, &sf) : T2_OK;
    if (r != T2_OK) return r;
    if (limit <= 0) limit = 100;
    st_lock(s);
    sqlite3_stmt *st;
    r = st_prepare(s, ST_JOB_SELECT "WHERE (?1 IS NULL OR t.name = ?1) AND (?2 IS NULL OR j.state = ?2)"
                                    " ORDER BY j.id DESC LIMIT ?3", &st, "list jobs");
    t2d_job *v = NULL;
    size_t cnt = 0, cap = 0;
    if (r == T2_OK) {
        st_bind_text_or_null(st, 1, tenant);
        st_bind_text_or_null(st, 2, state);
        sqlite3_bind_int(st, 3, limit);
        int rc;
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
            if (cnt == cap) {
                size_t nc = cap ? 2 * cap : 16;
                t2d_job *nv = realloc(v, nc * sizeof *nv);
                if (!nv) {
                    r = st_err(T2_ERR_NOMEM, "out of memory listing jobs");
                    break;
                }
                v = nv;
                cap = nc;
            }
            if ((r = st_job_read(st, &v[cnt])) != T2_OK) break;
            cnt++;
        }
        if (r == T2_OK && rc != SQLITE_DONE) r = st_sqlerr(s, rc, "list jobs");
        sqlite3_finalize(st);
    }
    st_unlock(s);
    if (r != T2_OK) {
        t2d_jobs_free(v, cnt);
        return r;
    }
    *out = v;
    *n = cnt;
    return T2_OK;
}

/* ---------------- state changes ---------------- */

static int allowed(t2d_job_state from, t2d_job_state to) {
    if (from == T2D_JOB_QUEUED) return to == T2D_JOB_RUNNING || to == T2D_JOB_FAILED || to == T2D_JOB_CANCELLED;
    if (from == T2D_JOB_RUNNING) return to != T2D_JOB_RUNNING;
    return 0;
}

static const char *event_type(t2d_job_state st) { return st == T2D_JOB_RUNNING ? "started" : t2d_job_state_name(st); }

/* The state change itself, inside the transaction: validated, applied, with its event. */
static t2_status set_state(t2d_store *s, int64_t id, t2d_job_state to, const char *error, const char *result,
                           int64_t *seq) {
    t2d_job_state from;
    int cancel = 0;
    t2_status r = st_job_state(s, id, &from, &cancel);
    if (r != T2_OK) return r;
    if (!allowed(from, to))
        return st_err(T2_ERR_INVALID_ARG, "job %lld cannot go from %s to %s", (long long)id, t2d_job_state_name(from),
                      t2d_job_state_name(to));
    /* A runner giving back a job its tenant asked to cancel: it is cancelled, not queued again. */
    if (from == T2D_JOB_RUNNING && to == T2D_JOB_QUEUED && cancel) to = T2D_JOB_CANCELLED;
    const char *sql;
    if (to == T2D_JOB_RUNNING) sql = "UPDATE jobs SET state = ?2, started = ?3 WHERE id = ?1";
    else if (to == T2D_JOB_QUEUED) sql = "UPDATE jobs SET state = ?2, started = NULL, eta = 0 WHERE id = ?1";
    else
        sql = "UPDATE jobs SET state = ?2, finished = ?3, eta = 0, error = COALESCE(?4, error),"
              " result = COALESCE(?5, result) WHERE id = ?1";
    sqlite3_stmt *st;
    if ((r = st_prepare(s, sql, &st, "change a job's state")) != T2_OK) return r;
    sqlite3_bind_int64(st, 1, id);
    st_bind_text(st, 2, t2d_job_state_name(to));
    if (to != T2D_JOB_QUEUED) sqlite3_bind_double(st, 3, st_now());
    if (to >= T2D_JOB_DONE) {
        st_bind_text_or_null(st, 4, error);
        st_bind_text_or_null(st, 5, result);
    }
    if ((r = st_run(s, st, "change a job's state")) != T2_OK) return r;
    if (to >= T2D_JOB_DONE) {
        if ((r = st_prepare(s, "DELETE FROM checkpoints WHERE job_id = ?1", &st, "delete a checkpoint")) != T2_OK)
            return r;
        sqlite3_bind_int64(st, 1, id);
        if ((r = st_run(s, st, "delete a checkpoint")) != T2_OK) return r;
    }
    return st_add_job_event(s, id, event_type(to), error ? error : "", seq);
}

t2_status t2d_store_job_set_state(t2d_store *s, int64_t id, t2d_job_state st, const char *error,
                                  const char *result) {
    if (!s) return st_err(T2_ERR_INVALID_ARG, "job set state: NULL store");
    if ((unsigned)st >= T2D_JOB_N_STATES) return st_err(T2_ERR_INVALID_ARG, "job state %d is out of range", (int)st);
    t2_status r = st_check_text("job error", error);
    if (r == T2_OK) r = st_check_json("job result", result, 'o');
    if (r != T2_OK) return r;
    int64_t seq = 0;
    st_lock(s);
    if ((r = st_begin(s)) == T2_OK) r = st_end(s, set_state(s, id, st, error, result, &seq));
    return st_unlock_notify(s, r, id, seq);
}

t2_status t2d_store_job_progress(t2d_store *s, int64_t id, const t2d_progress *p) {
    if (!s || !p) return st_err(T2_ERR_INVALID_ARG, "job progress: NULL argument");
    t2_status r = st_check_text("progress message", p->message);
    if (r != T2_OK) return r;
    int64_t seq = 0;
    st_lock(s);
    if ((r = st_begin(s)) != T2_OK) return st_unlock_notify(s, r, id, 0);
    t2d_job_state state;
    r = st_job_state(s, id, &state, NULL);
    if (r == T2_OK && state != T2D_JOB_RUNNING)
        r = st_err(T2_ERR_INVALID_ARG, "job %lld is %s, not running: no progress can be reported", (long long)id,
                   t2d_job_state_name(state));
    sqlite3_stmt *st;
    if (r == T2_OK)
        r = st_prepare(s,
                       "UPDATE jobs SET step = ?2, total = CASE WHEN ?3 > 0 THEN ?3 ELSE total END,"
                       " reward = COALESCE(?4, reward), accuracy = COALESCE(?5, accuracy), eta = ?6 WHERE id = ?1"
                       " RETURNING total",
                       &st, "record a job's progress");
    if (r == T2_OK) {
        double eta = p->eta == p->eta && p->eta > 0 ? p->eta : 0;
        sqlite3_bind_int64(st, 1, id);
        sqlite3_bind_int64(st, 2, p->step);
        sqlite3_bind_int64(st, 3, p->total);
        st_bind_real_or_null(st, 4, p->reward);
        st_bind_real_or_null(st, 5, p->accuracy);
        sqlite3_bind_double(st, 6, eta);
        /* the event carries the job's total (which a 0 in p->total kept) and only this report's metrics */
        int64_t total = 0;
        int rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
            total = sqlite3_column_int64(st, 0);
            rc = sqlite3_step(st);
        }
        if (rc != SQLITE_DONE) r = st_sqlerr(s, rc, "record a job's progress");
        sqlite3_finalize(st);
        if (r == T2_OK)
            r = st_add_event(s, id, "progress", T2D_JOB_RUNNING, p->step, total, p->reward, p->accuracy, p->message,
                             eta, &seq);
    }
    r = st_end(s, r);
    return st_unlock_notify(s, r, id, seq);
}

t2_status t2d_store_job_log(t2d_store *s, int64_t id, const char *message) {
    if (!s) return st_err(T2_ERR_INVALID_ARG, "job log: NULL store");
    t2_status r = st_check_text("log message", message);
    if (r != T2_OK) return r;
    int64_t seq = 0;
    st_lock(s);
    if ((r = st_begin(s)) == T2_OK) {
        r = st_job_state(s, id, &(t2d_job_state){0}, NULL);
        if (r == T2_OK) r = st_add_job_event(s, id, "log", message, &seq);
        r = st_end(s, r);
    }
    return st_unlock_notify(s, r, id, seq);
}

t2_status t2d_store_job_cancel(t2d_store *s, int64_t id, t2d_cancel_result *what) {
    if (!s) return st_err(T2_ERR_INVALID_ARG, "job cancel: NULL store");
    int64_t seq = 0;
    t2d_cancel_result res = T2D_CANCEL_FINISHED;
    st_lock(s);
    t2_status r = st_begin(s);
    if (r == T2_OK) {
        t2d_job_state state;
        int requested = 0;
        r = st_job_state(s, id, &state, &requested);
        if (r == T2_OK && state == T2D_JOB_QUEUED) {
            res = T2D_CANCEL_DONE;
            r = set_state(s, id, T2D_JOB_CANCELLED, NULL, NULL, &seq);
        } else if (r == T2_OK && state == T2D_JOB_RUNNING) {
            res = T2D_CANCEL_REQUESTED;
            sqlite3_stmt *st;
            if (!requested && (r = st_prepare(s, "UPDATE jobs SET cancel_requested = 1 WHERE id = ?1", &st,
                                              "request a job's cancellation")) == T2_OK) {
                sqlite3_bind_int64(st, 1, id);
                r = st_run(s, st, "request a job's cancellation");
                if (r == T2_OK) r = st_add_job_event(s, id, "log", "cancel requested; the job stops at its next step", &seq);
            }
        }
        r = st_end(s, r);
    }
    if (r == T2_OK && what) *what = res;
    return st_unlock_notify(s, r, id, seq);
}

int t2d_store_job_cancel_requested(t2d_store *s, int64_t id) {
    if (!s) return 0;
    int requested = 0;
    t2d_job_state state;
    st_lock(s);
    t2_status r = st_job_state(s, id, &state, &requested);
    st_unlock(s);
    return r == T2_OK && requested;
}

t2_status t2d_store_job_counts(t2d_store *s, const char *tenant, int64_t counts[T2D_JOB_N_STATES]) {
    if (!s || !counts) return st_err(T2_ERR_INVALID_ARG, "job counts: NULL argument");
    for (int i = 0; i < T2D_JOB_N_STATES; i++) counts[i] = 0;
    st_lock(s);
    sqlite3_stmt *st;
    t2_status r = st_prepare(s, "SELECT j.state, COUNT(*) FROM jobs j JOIN tenants t ON t.id = j.tenant_id"
                                " WHERE ?1 IS NULL OR t.name = ?1 GROUP BY j.state", &st, "count jobs");
    if (r == T2_OK) {
        st_bind_text_or_null(st, 1, tenant);
        int rc;
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
            t2d_job_state k = T2D_JOB_QUEUED;
            if ((r = state_col(st, 0, &k)) != T2_OK) break;
            counts[k] = sqlite3_column_int64(st, 1);
        }
        if (r == T2_OK && rc != SQLITE_DONE) r = st_sqlerr(s, rc, "count jobs");
        sqlite3_finalize(st);
    }
    st_unlock(s);
    return r;
}

/* ---------------- events ---------------- */

void t2d_job_events_free(t2d_job_event *ev, size_t n) {
    if (!ev) return;
    for (size_t i = 0; i < n; i++) {
        free(ev[i].type);
        free(ev[i].message);
    }
    free(ev);
}

t2_status t2d_store_job_events(t2d_store *s, int64_t id, int64_t after_seq, int limit, t2d_job_event **out,
                               size_t *n) {
    if (!s || !out || !n) return st_err(T2_ERR_INVALID_ARG, "job events: NULL argument");
    *out = NULL;
    *n = 0;
    if (limit <= 0) limit = 1000;
    if (limit > 100000) limit = 100000;
    st_lock(s);
    t2_status r = st_begin_read(s);
    if (r != T2_OK) {
        st_unlock(s);
        return r;
    }
    t2d_job_event *v = NULL;
    size_t cnt = 0;
    sqlite3_stmt *st = NULL;
    r = st_job_state(s, id, &(t2d_job_state){0}, NULL);
    if (r == T2_OK)
        r = st_prepare(s, "SELECT seq, job_id, time, type, step, total, reward, accuracy, message, eta, state"
                          " FROM job_events WHERE job_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3", &st,
                       "read job events");
    if (r == T2_OK) {
        sqlite3_bind_int64(st, 1, id);
        sqlite3_bind_int64(st, 2, after_seq);
        sqlite3_bind_int(st, 3, limit);
        size_t cap = 0;
        int rc;
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
            if (cnt == cap) {
                size_t nc = cap ? 2 * cap : 16;
                t2d_job_event *nv = realloc(v, nc * sizeof *nv);
                if (!nv) {
                    r = st_err(T2_ERR_NOMEM, "out of memory reading job events");
                    break;
                }
                v = nv;
                cap = nc;
            }
            t2d_job_event *e = &v[cnt];
            memset(e, 0, sizeof *e);
            e->seq = sqlite3_column_int64(st, 0);
            e->job = sqlite3_column_int64(st, 1);
            e->time = sqlite3_column_double(st, 2);
            e->step = sqlite3_column_int64(st, 4);
            e->total = sqlite3_column_int64(st, 5);
            e->reward = st_col_real(st, 6, NAN);
            e->accuracy = st_col_real(st, 7, NAN);
            e->eta = sqlite3_column_double(st, 9);
            e->type = st_col_dup(st, 3);
            e->message = st_col_dup(st, 8);
            cnt++;
            if (!e->type || !e->message) {
                r = st_err(T2_ERR_NOMEM, "out of memory reading job events");
                break;
            }
            if ((r = state_col(st, 10, &e->state)) != T2_OK) break;
        }
        if (r == T2_OK && rc != SQLITE_DONE) r = st_sqlerr(s, rc, "read job events");
        sqlite3_finalize(st);
    }
    r = st_end(s, r);
    st_unlock(s);
    if (r != T2_OK) {
        t2d_job_events_free(v, cnt);
        return r;
    }
    *out = v;
    *n = cnt;
    return T2_OK;
}
