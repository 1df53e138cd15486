/* The store's core: opening (format and version checks, WAL, migrations), errors, transactions,
 * statement helpers, tenants and the plugins' key-value store. Jobs are in store_jobs.c, experts in
 * store_experts.c.
 *
 * One connection, one mutex: SQLite serializes writers anyway, the daemon's store traffic is small next
 * to the engine's work, and a single connection keeps every multi-statement operation (claim, recover)
 * trivially atomic with respect to the other threads. BEGIN IMMEDIATE takes the write lock up front, so a
 * second process writing the same file makes us wait (busy_timeout) instead of failing half-way. */
#include "store_int.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BUSY_TIMEOUT_MS 5000
#define TEXT_MAX (1u << 20)

static _Thread_local char s_msg[1024];

const char *t2d_store_errmsg(void) { return s_msg; }

t2_status st_err(t2_status st, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s_msg, sizeof s_msg, fmt, ap);
    va_end(ap);
    return st;
}

static t2_status map_rc(int rc) {
    switch (rc & 0xff) {
    case SQLITE_OK: return T2_OK;
    case SQLITE_NOMEM: return T2_ERR_NOMEM;
    case SQLITE_NOTADB:
    case SQLITE_CORRUPT: return T2_ERR_FORMAT;
    case SQLITE_CONSTRAINT:
    case SQLITE_TOOBIG:
    case SQLITE_RANGE:
    case SQLITE_MISMATCH: return T2_ERR_INVALID_ARG;
    case SQLITE_NOTFOUND: return T2_ERR_NOT_FOUND;
    case SQLITE_FULL: return T2_ERR_FULL;
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
    case SQLITE_IOERR:
    case SQLITE_CANTOPEN:
    case SQLITE_READONLY:
    case SQLITE_PERM:
    case SQLITE_PROTOCOL: return T2_ERR_IO;
    default: return T2_ERR_INTERNAL;
    }
}

t2_status st_sqlerr(t2d_store *s, int rc, const char *what) {
    const char *m = s && s->db ? sqlite3_errmsg(s->db) : sqlite3_errstr(rc);
    return st_err(map_rc(rc), "%s: %s (state database %s)", what, m, s && s->path ? s->path : "?");
}

/* ---------------- locking and transactions ---------------- */

void st_lock(t2d_store *s) { pthread_mutex_lock(&s->mu); }
void st_unlock(t2d_store *s) { pthread_mutex_unlock(&s->mu); }

static t2_status exec(t2d_store *s, const char *sql, const char *what) {
    int rc = sqlite3_exec(s->db, sql, NULL, NULL, NULL);
    return rc == SQLITE_OK ? T2_OK : st_sqlerr(s, rc, what);
}

t2_status st_begin(t2d_store *s) { return exec(s, "BEGIN IMMEDIATE", "begin a write transaction"); }
t2_status st_begin_read(t2d_store *s) { return exec(s, "BEGIN", "begin a read transaction"); }

t2_status st_end(t2d_store *s, t2_status r) {
    if (r == T2_OK) {
        r = exec(s, "COMMIT", "commit");
        if (r == T2_OK) return T2_OK;
    }
    /* Keep the first failure's message: the rollback's own outcome is not news. Some errors (a full
     * disk) roll the transaction back by themselves, hence the autocommit check. */
    if (!sqlite3_get_autocommit(s->db)) sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
    return r;
}

t2_status st_unlock_notify(t2d_store *s, t2_status r, int64_t job, int64_t seq) {
    t2d_store_event_hook fn = s->hook;
    void *ud = s->hook_ud;
    st_unlock(s);
    if (r == T2_OK && seq > 0 && fn) fn(ud, job, seq);
    return r;
}

void t2d_store_set_event_hook(t2d_store *s, t2d_store_event_hook fn, void *ud) {
    if (!s) return;
    st_lock(s);
    s->hook = fn;
    s->hook_ud = ud;
    st_unlock(s);
}

void t2d_store_set_progress_keep(t2d_store *s, int n) {
    if (!s || n < 1) return;
    st_lock(s);
    s->progress_keep = n;
    st_unlock(s);
}

/* ---------------- statements ---------------- */

t2_status st_prepare(t2d_store *s, const char *sql, sqlite3_stmt **stmt, const char *what) {
    int rc = sqlite3_prepare_v2(s->db, sql, -1, stmt, NULL);
    if (rc != SQLITE_OK) {
        *stmt = NULL;
        return st_sqlerr(s, rc, what);
    }
    return T2_OK;
}

t2_status st_run(t2d_store *s, sqlite3_stmt *stmt, const char *what) {
    int rc;
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
    }
    t2_status r = rc == SQLITE_DONE ? T2_OK : st_sqlerr(s, rc, what);
    sqlite3_finalize(stmt);
    return r;
}

int st_bind_text(sqlite3_stmt *st, int i, const char *v) { return sqlite3_bind_text(st, i, v ? v : "", -1, SQLITE_STATIC); }

int st_bind_text_or_null(sqlite3_stmt *st, int i, const char *v) {
    return v ? sqlite3_bind_text(st, i, v, -1, SQLITE_STATIC) : sqlite3_bind_null(st, i);
}

int st_bind_real_or_null(sqlite3_stmt *st, int i, double v) {
    return v != v ? sqlite3_bind_null(st, i) : sqlite3_bind_double(st, i, v);
}

char *st_col_dup(sqlite3_stmt *st, int i) {
    const unsigned char *t = sqlite3_column_text(st, i);
    return strdup(t ? (const char *)t : "");
}

double st_col_real(sqlite3_stmt *st, int i, double null_value) {
    return sqlite3_column_type(st, i) == SQLITE_NULL ? null_value : sqlite3_column_double(st, i);
}

double st_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* ---------------- input checks ---------------- */

t2_status st_check_name(const char *what, const char *name, size_t max) {
    if (!name || !*name) return st_err(T2_ERR_INVALID_ARG, "%s is empty", what);
    size_t n = strnlen(name, max + 1);
    if (n > max) return st_err(T2_ERR_INVALID_ARG, "%s is longer than %zu bytes", what, max);
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)name[i] < 0x20 || name[i] == 0x7f)
            return st_err(T2_ERR_INVALID_ARG, "%s contains a control character (byte %zu)", what, i);
    return T2_OK;
}

t2_status st_check_text(const char *what, const char *text) {
    if (text && strnlen(text, TEXT_MAX + 1) > TEXT_MAX)
        return st_err(T2_ERR_INVALID_ARG, "%s is longer than %u bytes", what, TEXT_MAX);
    return T2_OK;
}

t2_status st_check_json(const char *what, const char *text, char kind) {
    t2_status r = st_check_text(what, text);
    if (r != T2_OK || !text || !*text) return r;
    json_error_t e;
    json_t *j = json_loads(text, JSON_DECODE_ANY, &e);
    if (!j)
        return st_err(T2_ERR_INVALID_ARG, "%s is not valid JSON (line %d, column %d: %s)", what, e.line, e.column,
                      e.text);
    int ok = kind == 'o' ? json_is_object(j) : json_is_array(j);
    json_decref(j);
    if (!ok) return st_err(T2_ERR_INVALID_ARG, "%s must be a JSON %s", what, kind == 'o' ? "object" : "array");
    return T2_OK;
}

/* ---------------- opening ---------------- */

static t2_status pragma_int(t2d_store *s, const char *sql, int64_t *v) {
    sqlite3_stmt *st;
    t2_status r = st_prepare(s, sql, &st, "read the database header");
    if (r != T2_OK) return r;
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *v = sqlite3_column_int64(st, 0);
        rc = SQLITE_OK;
    }
    if (rc != SQLITE_OK) r = st_sqlerr(s, rc, "read the database header");
    sqlite3_finalize(st);
    return r;
}

/* Refuse what is not ours (or too new) before anything writes to the file. */
static t2_status check_header(t2d_store *s, int64_t *version) {
    int64_t app = 0, tables = 0;
    t2_status r = pragma_int(s, "PRAGMA application_id", &app);
    if (r == T2_OK) r = pragma_int(s, "PRAGMA user_version", version);
    if (r == T2_OK) r = pragma_int(s, "SELECT COUNT(*) FROM sqlite_master", &tables);
    if (r == T2_ERR_FORMAT && (sqlite3_errcode(s->db) & 0xff) == SQLITE_NOTADB)
        return st_err(r, "%s is not an SQLite database (%s), so not a t2d state database", s->path,
                      sqlite3_errmsg(s->db));
    if (r == T2_ERR_FORMAT)
        return st_err(r, "%s is a damaged SQLite database (%s): restore it from a backup", s->path,
                      sqlite3_errmsg(s->db));
    if (r != T2_OK) return r;
    if (app != 0 && app != T2D_STORE_APP_ID)
        return st_err(T2_ERR_FORMAT, "%s is an SQLite database of another application (application_id 0x%08llx)",
                      s->path, (unsigned long long)app);
    if (app == 0 && (*version != 0 || tables != 0))
        return st_err(T2_ERR_FORMAT, "%s is an SQLite database but not a t2d state database (no t2d application_id)",
                      s->path);
    if (*version > T2D_STORE_SCHEMA_VERSION)
        return st_err(T2_ERR_VERSION,
                      "%s has schema version %lld, newer than this t2d understands (%d): use a newer t2d",
                      s->path, (long long)*version, T2D_STORE_SCHEMA_VERSION);
    if (*version < 0)
        return st_err(T2_ERR_FORMAT, "%s has a negative schema version %lld", s->path, (long long)*version);
    return T2_OK;
}

static t2_status migrate(t2d_store *s) {
    t2_status r = st_begin(s);
    if (r != T2_OK) return r;
    int64_t v = 0;
    /* Read again under the write lock: another process may have migrated in the meantime. */
    r = check_header(s, &v);
    char sql[96];
    for (; r == T2_OK && v < T2D_STORE_SCHEMA_VERSION; v++) {
        char what[64];
        snprintf(what, sizeof what, "migrate the schema from version %lld", (long long)v);
        r = exec(s, t2d_store_migrations[v], what);
    }
    if (r == T2_OK) {
        /* PRAGMAs take no bound parameters; these are our own integer constants. */
        snprintf(sql, sizeof sql, "PRAGMA application_id = %d; PRAGMA user_version = %d", T2D_STORE_APP_ID,
                 T2D_STORE_SCHEMA_VERSION);
        r = exec(s, sql, "stamp the schema version");
    }
    return st_end(s, r);
}

static t2_status set_wal(t2d_store *s) {
    sqlite3_stmt *st;
    t2_status r = st_prepare(s, "PRAGMA journal_mode = WAL", &st, "switch to the WAL journal");
    if (r != T2_OK) return r;
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        const char *mode = (const char *)sqlite3_column_text(st, 0);
        if (!mode || (strcmp(mode, "wal") != 0 && strcmp(mode, "memory") != 0))
            r = st_err(T2_ERR_IO, "%s: cannot use the WAL journal (journal mode stays %s)", s->path,
                       mode ? mode : "unknown");
    } else {
        r = st_sqlerr(s, rc, "switch to the WAL journal");
    }
    sqlite3_finalize(st);
    return r;
}

t2d_store *t2d_store_open(const char *path, t2_status *err) {
    t2_status r = T2_OK;
    t2d_store *s = NULL;
    if (!path || !*path) {
        r = st_err(T2_ERR_INVALID_ARG, "state database path is empty");
        goto out;
    }
    s = calloc(1, sizeof *s);
    if (!s || !(s->path = strdup(path))) {
        r = st_err(T2_ERR_NOMEM, "out of memory opening %s", path);
        goto out;
    }
    pthread_mutex_init(&s->mu, NULL);
    s->progress_keep = T2D_STORE_PROGRESS_KEEP;
    int rc = sqlite3_open_v2(path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        r = st_err(rc == SQLITE_NOMEM ? T2_ERR_NOMEM : T2_ERR_IO, "cannot open state database %s: %s", path,
                   s->db ? sqlite3_errmsg(s->db) : sqlite3_errstr(rc));
        goto out;
    }
    sqlite3_extended_result_codes(s->db, 1);
    sqlite3_busy_timeout(s->db, BUSY_TIMEOUT_MS);
    int64_t version = 0;
    if ((r = check_header(s, &version)) != T2_OK) goto out;
    if ((r = set_wal(s)) != T2_OK) goto out;
    if ((r = exec(s, "PRAGMA foreign_keys = ON; PRAGMA synchronous = FULL", "set the connection options")) != T2_OK)
        goto out;
    if (version < T2D_STORE_SCHEMA_VERSION && (r = migrate(s)) != T2_OK) goto out;
out:
    if (err) *err = r;
    if (r != T2_OK) {
        t2d_store_close(s);
        return NULL;
    }
    return s;
}

void t2d_store_close(t2d_store *s) {
    if (!s) return;
    if (s->db) sqlite3_close_v2(s->db);
    pthread_mutex_destroy(&s->mu);
    free(s->path);
    free(s);
}

/* ---------------- tenants ---------------- */

t2_status st_tenant_id(t2d_store *s, const char *name, int create, int64_t *id) {
    t2_status r = st_check_name("tenant name", name, T2D_STORE_NAME_MAX);
    if (r != T2_OK) return r;
    sqlite3_stmt *st;
    if ((r = st_prepare(s, "SELECT id FROM tenants WHERE name = ?1", &st, "look up a tenant")) != T2_OK) return r;
    st_bind_text(st, 1, name);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) *id = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    if (rc == SQLITE_ROW) return T2_OK;
    if (rc != SQLITE_DONE) return st_sqlerr(s, rc, "look up a tenant");
    if (!create) return st_err(T2_ERR_NOT_FOUND, "no tenant named '%s'", name);
    if ((r = st_prepare(s, "INSERT INTO tenants (name, created) VALUES (?1, ?2)", &st, "create a tenant")) != T2_OK)
        return r;
    st_bind_text(st, 1, name);
    sqlite3_bind_double(st, 2, st_now());
    if ((r = st_run(s, st, "create a tenant")) != T2_OK) return r;
    *id = sqlite3_last_insert_rowid(s->db);
    return T2_OK;
}

t2_status t2d_store_tenant_ensure(t2d_store *s, const char *name, int64_t *id) {
    if (!s) return st_err(T2_ERR_INVALID_ARG, "store is NULL");
    int64_t tid = 0;
    st_lock(s);
    t2_status r = st_begin(s);
    if (r == T2_OK) r = st_end(s, st_tenant_id(s, name, 1, &tid));
    st_unlock(s);
    if (r == T2_OK && id) *id = tid;
    return r;
}

void t2d_tenants_free(t2d_tenant *t, size_t n) {
    if (!t) return;
    for (size_t i = 0; i < n; i++) free(t[i].name);
    free(t);
}

t2_status t2d_store_tenant_list(t2d_store *s, t2d_tenant **out, size_t *n) {
    if (!s || !out || !n) return st_err(T2_ERR_INVALID_ARG, "tenant list: NULL argument");
    *out = NULL;
    *n = 0;
    st_lock(s);
    sqlite3_stmt *st;
    t2_status r = st_prepare(s, "SELECT id, name, created FROM tenants ORDER BY id", &st, "list tenants");
    t2d_tenant *v = NULL;
    size_t cnt = 0, cap = 0;
    int rc = SQLITE_DONE;
    while (r == T2_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (cnt == cap) {
            size_t nc = cap ? 2 * cap : 8;
            t2d_tenant *nv = realloc(v, nc * sizeof *nv);
            if (!nv) {
                r = st_err(T2_ERR_NOMEM, "out of memory listing tenants");
                break;
            }
            v = nv;
            cap = nc;
        }
        v[cnt].id = sqlite3_column_int64(st, 0);
        v[cnt].created = sqlite3_column_double(st, 2);
        if (!(v[cnt].name = st_col_dup(st, 1))) r = st_err(T2_ERR_NOMEM, "out of memory listing tenants");
        else cnt++;
    }
    if (r == T2_OK && rc != SQLITE_DONE) r = st_sqlerr(s, rc, "list tenants");
    sqlite3_finalize(st);
    st_unlock(s);
    if (r != T2_OK) {
        t2d_tenants_free(v, cnt);
        return r;
    }
    *out = v;
    *n = cnt;
    return T2_OK;
}

t2_status t2d_store_tenant_usage(t2d_store *s, const char *tenant, t2d_tenant_usage *out) {
    if (!s || !out) return st_err(T2_ERR_INVALID_ARG, "tenant usage: NULL argument");
    memset(out, 0, sizeof *out);
    st_lock(s);
    t2_status r = st_begin_read(s);
    if (r != T2_OK) {
        st_unlock(s);
        return r;
    }
    int64_t tid = 0;
    r = st_tenant_id(s, tenant, 0, &tid);
    if (r == T2_ERR_NOT_FOUND) { /* a tenant with nothing yet: no row has id 0, so every count is 0 */
        r = T2_OK;
        tid = 0;
    }
    sqlite3_stmt *st = NULL;
    if (r == T2_OK)
        r = st_prepare(s,
                       "SELECT (SELECT COUNT(*) FROM jobs WHERE tenant_id = ?1 AND state = 'queued'),"
                       "       (SELECT COUNT(*) FROM jobs WHERE tenant_id = ?1 AND state = 'running'),"
                       "       (SELECT COUNT(*) FROM experts WHERE owner_id = ?1),"
                       "       (SELECT COALESCE(SUM(bytes), 0) FROM experts WHERE owner_id = ?1)",
                       &st, "count a tenant's usage");
    if (r == T2_OK) {
        sqlite3_bind_int64(st, 1, tid);
        int rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
            out->queued = sqlite3_column_int64(st, 0);
            out->running = sqlite3_column_int64(st, 1);
            out->experts = sqlite3_column_int64(st, 2);
            out->expert_bytes = (uint64_t)sqlite3_column_int64(st, 3);
        } else {
            r = st_sqlerr(s, rc, "count a tenant's usage");
        }
        sqlite3_finalize(st);
    }
    r = st_end(s, r);
    st_unlock(s);
    return r;
}

/* ---------------- plugin key-value ---------------- */

t2_status t2d_store_kv_put(t2d_store *s, const char *tenant, const char *key, const void *value, size_t len) {
    if (!s || (!value && len)) return st_err(T2_ERR_INVALID_ARG, "kv put: NULL argument");
    t2_status r = st_check_name("plugin key", key, T2D_STORE_KEY_MAX);
    if (r != T2_OK) return r;
    if (len > T2D_STORE_VALUE_MAX)
        return st_err(T2_ERR_INVALID_ARG, "plugin value for key '%s' is %zu bytes, more than the limit %u", key, len,
                      T2D_STORE_VALUE_MAX);
    st_lock(s);
    r = st_begin(s);
    if (r == T2_OK) {
        int64_t tid = 0;
        sqlite3_stmt *st = NULL;
        r = st_tenant_id(s, tenant, 1, &tid);
        if (r == T2_OK)
            r = st_prepare(s, "INSERT OR REPLACE INTO kv (tenant_id, key, value, updated) VALUES (?1, ?2, ?3, ?4)", &st,
                           "store a plugin value");
        if (r == T2_OK) {
            sqlite3_bind_int64(st, 1, tid);
            st_bind_text(st, 2, key);
            /* zeroblob-safe: a 0-byte value must still be a (non-NULL) blob */
            sqlite3_bind_blob(st, 3, len ? value : "", (int)len, SQLITE_STATIC);
            sqlite3_bind_double(st, 4, st_now());
            r = st_run(s, st, "store a plugin value");
        }
        r = st_end(s, r);
    }
    st_unlock(s);
    return r;
}

t2_status t2d_store_kv_get(t2d_store *s, const char *tenant, const char *key, void **value, size_t *len) {
    if (!s || !value || !len) return st_err(T2_ERR_INVALID_ARG, "kv get: NULL argument");
    *value = NULL;
    *len = 0;
    t2_status r = st_check_name("plugin key", key, T2D_STORE_KEY_MAX);
    if (r == T2_OK) r = st_check_name("tenant name", tenant, T2D_STORE_NAME_MAX);
    if (r != T2_OK) return r;
    st_lock(s);
    sqlite3_stmt *st;
    r = st_prepare(s, "SELECT k.value FROM kv k JOIN tenants t ON t.id = k.tenant_id WHERE t.name = ?1 AND k.key = ?2",
                   &st, "read a plugin value");
    if (r == T2_OK) {
        st_bind_text(st, 1, tenant);
        st_bind_text(st, 2, key);
        int rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
            size_t n = (size_t)sqlite3_column_bytes(st, 0);
            const void *b = sqlite3_column_blob(st, 0);
            void *copy = malloc(n ? n : 1);
            if (!copy) {
                r = st_err(T2_ERR_NOMEM, "out of memory reading plugin value '%s'", key);
            } else {
                if (n) memcpy(copy, b, n);
                *value = copy;
                *len = n;
            }
        } else if (rc == SQLITE_DONE) {
            r = st_err(T2_ERR_NOT_FOUND, "tenant '%s' has no plugin value for key '%s'", tenant, key);
        } else {
            r = st_sqlerr(s, rc, "read a plugin value");
        }
        sqlite3_finalize(st);
    }
    st_unlock(s);
    return r;
}
