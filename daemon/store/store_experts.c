/* The experts registry: which expert files exist, who owns them, who may use them.
 *
 * Visibility: a tenant sees its own experts and those other tenants published. Names are unique per
 * owner only, so a name can be ambiguous across tenants; the rule is "own first, then the oldest
 * published one" — a tenant publishing an expert can never shadow another tenant's own expert of the
 * same name, and which published one wins does not change when more are published later. */
#include "store_int.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define EXPERT_SELECT                                                                                               \
    "SELECT e.id, e.name, t.name, e.label, e.path, e.n_params, e.bytes, e.created, e.published, e.meta"           \
    " FROM experts e JOIN tenants t ON t.id = e.owner_id "

void t2d_expert_clear(t2d_expert *e) {
    if (!e) return;
    free(e->name);
    free(e->owner);
    free(e->label);
    free(e->path);
    free(e->meta);
    memset(e, 0, sizeof *e);
}

void t2d_experts_free(t2d_expert *e, size_t n) {
    if (!e) return;
    for (size_t i = 0; i < n; i++) t2d_expert_clear(&e[i]);
    free(e);
}

static t2_status read_expert(sqlite3_stmt *st, t2d_expert *e) {
    memset(e, 0, sizeof *e);
    e->id = sqlite3_column_int64(st, 0);
    e->n_params = (uint64_t)sqlite3_column_int64(st, 5);
    e->bytes = (uint64_t)sqlite3_column_int64(st, 6);
    e->created = sqlite3_column_double(st, 7);
    e->published = sqlite3_column_int(st, 8) != 0;
    e->name = st_col_dup(st, 1);
    e->owner = st_col_dup(st, 2);
    e->label = st_col_dup(st, 3);
    e->path = st_col_dup(st, 4);
    e->meta = st_col_dup(st, 9);
    if (!e->name || !e->owner || !e->label || !e->path || !e->meta) {
        t2d_expert_clear(e);
        return st_err(T2_ERR_NOMEM, "out of memory reading an expert");
    }
    return T2_OK;
}

t2_status t2d_store_expert_add(t2d_store *s, const t2d_expert *e, int64_t *id) {
    if (!s || !e) return st_err(T2_ERR_INVALID_ARG, "expert add: NULL argument");
    t2_status r = st_check_name("expert name", e->name, T2D_STORE_NAME_MAX);
    if (r == T2_OK) r = st_check_text("expert label", e->label);
    if (r == T2_OK && (!e->path || !*e->path)) r = st_err(T2_ERR_INVALID_ARG, "expert '%s' has no file path", e->name);
    if (r == T2_OK) r = st_check_text("expert path", e->path);
    if (r == T2_OK) r = st_check_json("expert meta", e->meta, 'o');
    if (r == T2_OK && (e->n_params > INT64_MAX || e->bytes > INT64_MAX))
        r = st_err(T2_ERR_INVALID_ARG, "expert '%s': n_params or bytes is out of range", e->name);
    if (r != T2_OK) return r;
    int64_t eid = 0;
    st_lock(s);
    if ((r = st_begin(s)) != T2_OK) {
        st_unlock(s);
        return r;
    }
    int64_t tid = 0;
    sqlite3_stmt *st;
    r = st_tenant_id(s, e->owner, 1, &tid);
    if (r == T2_OK) r = st_prepare(s, "SELECT 1 FROM experts WHERE owner_id = ?1 AND name = ?2", &st, "add an expert");
    if (r == T2_OK) {
        sqlite3_bind_int64(st, 1, tid);
        st_bind_text(st, 2, e->name);
        int rc = sqlite3_step(st);
        if (rc == SQLITE_ROW)
            r = st_err(T2_ERR_INVALID_ARG, "tenant '%s' already has an expert named '%s'", e->owner, e->name);
        else if (rc != SQLITE_DONE)
            r = st_sqlerr(s, rc, "add an expert");
        sqlite3_finalize(st);
    }
    if (r == T2_OK)
        r = st_prepare(s,
                       "INSERT INTO experts (owner_id, name, label, path, n_params, bytes, created, published, meta)"
                       " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                       &st, "add an expert");
    if (r == T2_OK) {
        sqlite3_bind_int64(st, 1, tid);
        st_bind_text(st, 2, e->name);
        st_bind_text(st, 3, e->label);
        st_bind_text(st, 4, e->path);
        sqlite3_bind_int64(st, 5, (int64_t)e->n_params);
        sqlite3_bind_int64(st, 6, (int64_t)e->bytes);
        sqlite3_bind_double(st, 7, st_now());
        sqlite3_bind_int(st, 8, e->published != 0);
        st_bind_text(st, 9, e->meta);
        r = st_run(s, st, "add an expert");
        eid = sqlite3_last_insert_rowid(s->db);
    }
    r = st_end(s, r);
    st_unlock(s);
    if (r == T2_OK && id) *id = eid;
    return r;
}

t2_status t2d_store_expert_get(t2d_store *s, const char *tenant, const char *name, t2d_expert *out) {
    if (!s || !out) return st_err(T2_ERR_INVALID_ARG, "expert get: NULL argument");
    t2_status r = st_check_name("tenant name", tenant, T2D_STORE_NAME_MAX);
    if (r == T2_OK) r = st_check_name("expert name", name, T2D_STORE_NAME_MAX);
    if (r != T2_OK) return r;
    st_lock(s);
    sqlite3_stmt *st;
    r = st_prepare(s, EXPERT_SELECT "WHERE e.name = ?2 AND (t.name = ?1 OR e.published != 0)"
                                    " ORDER BY (t.name = ?1) DESC, e.id LIMIT 1", &st, "look up an expert");
    if (r == T2_OK) {
        st_bind_text(st, 1, tenant);
        st_bind_text(st, 2, name);
        int rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) r = read_expert(st, out);
        else if (rc == SQLITE_DONE)
            r = st_err(T2_ERR_NOT_FOUND, "tenant '%s' has no expert named '%s' and none of that name is published",
                       tenant, name);
        else r = st_sqlerr(s, rc, "look up an expert");
        sqlite3_finalize(st);
    }
    st_unlock(s);
    return r;
}

t2_status t2d_store_expert_list(t2d_store *s, const char *tenant, int with_published, t2d_expert **out,
                                size_t *n) {
    if (!s || !out || !n) return st_err(T2_ERR_INVALID_ARG, "expert list: NULL argument");
    *out = NULL;
    *n = 0;
    t2_status r = st_check_name("tenant name", tenant, T2D_STORE_NAME_MAX);
    if (r != T2_OK) return r;
    st_lock(s);
    sqlite3_stmt *st;
    r = st_prepare(s, EXPERT_SELECT "WHERE t.name = ?1 OR (?2 AND e.published != 0)"
                                    " ORDER BY (t.name = ?1) DESC, t.name, e.name", &st, "list experts");
    t2d_expert *v = NULL;
    size_t cnt = 0, cap = 0;
    if (r == T2_OK) {
        st_bind_text(st, 1, tenant);
        sqlite3_bind_int(st, 2, with_published != 0);
        int rc;
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
            if (cnt == cap) {
                size_t nc = cap ? 2 * cap : 16;
                t2d_expert *nv = realloc(v, nc * sizeof *nv);
                if (!nv) {
                    r = st_err(T2_ERR_NOMEM, "out of memory listing experts");
                    break;
                }
                v = nv;
                cap = nc;
            }
            if ((r = read_expert(st, &v[cnt])) != T2_OK) break;
            cnt++;
        }
        if (r == T2_OK && rc != SQLITE_DONE) r = st_sqlerr(s, rc, "list experts");
        sqlite3_finalize(st);
    }
    st_unlock(s);
    if (r != T2_OK) {
        t2d_experts_free(v, cnt);
        return r;
    }
    *out = v;
    *n = cnt;
    return T2_OK;
}

/* The id of tenant's own expert name (inside a transaction), with the owner-only NOT_FOUND message. */
static t2_status own_expert(t2d_store *s, const char *tenant, const char *name, const char *verb, int64_t *id,
                            char **path) {
    t2_status r = st_check_name("expert name", name, T2D_STORE_NAME_MAX);
    if (r != T2_OK) return r;
    sqlite3_stmt *st;
    r = st_prepare(s, "SELECT e.id, e.path FROM experts e JOIN tenants t ON t.id = e.owner_id"
                      " WHERE t.name = ?1 AND e.name = ?2", &st, "look up an expert");
    if (r != T2_OK) return r;
    st_bind_text(st, 1, tenant);
    st_bind_text(st, 2, name);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *id = sqlite3_column_int64(st, 0);
        if (path && !(*path = st_col_dup(st, 1))) r = st_err(T2_ERR_NOMEM, "out of memory");
    } else if (rc == SQLITE_DONE) {
        r = st_err(T2_ERR_NOT_FOUND, "tenant '%s' owns no expert named '%s' (only its owner may %s an expert)", tenant,
                   name, verb);
    } else {
        r = st_sqlerr(s, rc, "look up an expert");
    }
    sqlite3_finalize(st);
    return r;
}

/* Run one statement on expert id inside a write transaction: the common body of delete and publish. */
static t2_status change_own(t2d_store *s, const char *tenant, const char *name, const char *verb, const char *sql,
                            int publish, char **path) {
    t2_status r = st_check_name("tenant name", tenant, T2D_STORE_NAME_MAX);
    if (r != T2_OK) return r;
    st_lock(s);
    if ((r = st_begin(s)) == T2_OK) {
        int64_t id = 0;
        sqlite3_stmt *st;
        r = own_expert(s, tenant, name, verb, &id, path);
        if (r == T2_OK && (r = st_prepare(s, sql, &st, verb)) == T2_OK) {
            sqlite3_bind_int64(st, 1, id);
            if (sqlite3_bind_parameter_count(st) >= 2) sqlite3_bind_int(st, 2, publish != 0);
            r = st_run(s, st, verb);
        }
        r = st_end(s, r);
    }
    st_unlock(s);
    return r;
}

t2_status t2d_store_expert_delete(t2d_store *s, const char *tenant, const char *name, char **path) {
    if (!s) return st_err(T2_ERR_INVALID_ARG, "expert delete: NULL store");
    char *p = NULL;
    t2_status r = change_own(s, tenant, name, "delete", "DELETE FROM experts WHERE id = ?1", 0, &p);
    if (r == T2_OK && path) *path = p;
    else free(p);
    return r;
}

t2_status t2d_store_expert_publish(t2d_store *s, const char *tenant, const char *name, int publish) {
    if (!s) return st_err(T2_ERR_INVALID_ARG, "expert publish: NULL store");
    return change_own(s, tenant, name, publish ? "publish" : "withdraw", "UPDATE experts SET published = ?2 WHERE id = ?1",
                      publish, NULL);
}
