/* The daemon's SQLite state store: opening (garbage, foreign, newer and older files), persistence,
 * jobs and their events, cancel, fair claiming, checkpoints, recovery after a restart, experts and their
 * visibility, quotas' counts, the plugin key-value store, and use from several threads at once. */
#include "store.h"
#include "store_int.h" /* t2d_store_migrations, T2D_STORE_APP_ID: to build an old database by hand */

#include <check.h>
#include <errno.h>
#include <ftw.h>
#include <math.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char g_dir[256], g_db[300];
static t2d_store *g_s;

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

static void setup(void) {
    const char *base = getenv("TMPDIR");
    snprintf(g_dir, sizeof g_dir, "%s/t2store.XXXXXX", base && *base ? base : "/tmp");
    ck_assert_ptr_nonnull(mkdtemp(g_dir));
    snprintf(g_db, sizeof g_db, "%s/state.db", g_dir);
    g_s = NULL;
}

static void teardown(void) {
    t2d_store_close(g_s);
    g_s = NULL;
    nftw(g_dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

#define ASSERT_OK(expr)                                                                                             \
    do {                                                                                                            \
        t2_status st_ = (expr);                                                                                     \
        ck_assert_msg(st_ == T2_OK, "%s: status %d: %s", #expr, (int)st_, t2d_store_errmsg());                    \
    } while (0)
#define ASSERT_ERR_HAS(needle)                                                                                      \
    ck_assert_msg(strstr(t2d_store_errmsg(), (needle)) != NULL, "error \"%s\" does not mention \"%s\"",           \
                  t2d_store_errmsg(), (needle))

static t2d_store *open_ok(void) {
    t2_status err = T2_ERR_INTERNAL;
    t2d_store *s = t2d_store_open(g_db, &err);
    ck_assert_msg(s != NULL && err == T2_OK, "open %s: %d %s", g_db, (int)err, t2d_store_errmsg());
    return s;
}

/* Queue a job of tenant with the given kind and priority; returns its id. */
static int64_t submit(t2d_store *s, const char *tenant, const char *kind, int64_t priority) {
    t2d_job j;
    t2d_job_init(&j);
    j.tenant = (char *)tenant;
    j.kind = (char *)kind;
    j.trainer = (char *)"reinforce";
    j.dataset = (char *)"gsm8k";
    j.expert = (char *)"math";
    j.priority = priority;
    j.total = 100;
    int64_t id = 0;
    ASSERT_OK(t2d_store_job_insert(s, &j, &id));
    ck_assert_int_gt(id, 0);
    return id;
}

/* Claim the next job; returns its id, or 0 when none may start. */
static int64_t claim(t2d_store *s, int max_total, int max_per_tenant) {
    t2d_job j;
    t2d_job_init(&j);
    t2_status r = t2d_store_job_claim_next(s, max_total, max_per_tenant, &j);
    if (r == T2_ERR_NOT_FOUND) return 0;
    ck_assert_msg(r == T2_OK, "claim: %s", t2d_store_errmsg());
    ck_assert_int_eq(j.state, T2D_JOB_RUNNING);
    ck_assert(j.started > 0);
    int64_t id = j.id;
    t2d_job_clear(&j);
    return id;
}

static t2d_job get(t2d_store *s, int64_t id) {
    t2d_job j;
    t2d_job_init(&j);
    ASSERT_OK(t2d_store_job_get(s, id, &j));
    return j;
}

static int64_t sql_int(const char *path, const char *sql) {
    sqlite3 *db;
    ck_assert_int_eq(sqlite3_open(path, &db), SQLITE_OK);
    sqlite3_stmt *st;
    ck_assert_int_eq(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
    int64_t v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v;
}

static void sql_exec(const char *path, const char *sql) {
    sqlite3 *db;
    ck_assert_int_eq(sqlite3_open(path, &db), SQLITE_OK);
    char *msg = NULL;
    int rc = sqlite3_exec(db, sql, NULL, NULL, &msg);
    ck_assert_msg(rc == SQLITE_OK, "%s: %s", sql, msg ? msg : "");
    sqlite3_close(db);
}

static void write_file(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(data, 1, n, f), n);
    fclose(f);
}

/* ---------------- opening ---------------- */

START_TEST(test_open_creates_wal_and_version) {
    g_s = open_ok();
    t2d_store_close(g_s);
    g_s = NULL;
    ck_assert_int_eq(sql_int(g_db, "PRAGMA user_version"), T2D_STORE_SCHEMA_VERSION);
    ck_assert_int_eq(sql_int(g_db, "PRAGMA application_id"), T2D_STORE_APP_ID);
    /* WAL is persistent: a plain connection sees it */
    sqlite3 *db;
    ck_assert_int_eq(sqlite3_open(g_db, &db), SQLITE_OK);
    sqlite3_stmt *st;
    ck_assert_int_eq(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &st, NULL), SQLITE_OK);
    ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
    ck_assert_str_eq((const char *)sqlite3_column_text(st, 0), "wal");
    sqlite3_finalize(st);
    sqlite3_close(db);
    /* reopening an up-to-date file works and changes nothing */
    g_s = open_ok();
}
END_TEST

START_TEST(test_open_garbage_is_format_error) {
    char junk[4096];
    for (size_t i = 0; i < sizeof junk; i++) junk[i] = (char)(i * 7 + 3);
    write_file(g_db, junk, sizeof junk);
    t2_status err = T2_OK;
    ck_assert_ptr_null(t2d_store_open(g_db, &err));
    ck_assert_int_eq(err, T2_ERR_FORMAT);
    ASSERT_ERR_HAS(g_db);
    ASSERT_ERR_HAS("not an SQLite database");
    /* a short text file too */
    write_file(g_db, "hello, I am not a database\n", 27);
    ck_assert_ptr_null(t2d_store_open(g_db, &err));
    ck_assert_int_eq(err, T2_ERR_FORMAT);
    ASSERT_ERR_HAS(g_db);
}
END_TEST

START_TEST(test_open_foreign_sqlite_is_format_error) {
    sql_exec(g_db, "CREATE TABLE photos (id INTEGER PRIMARY KEY, path TEXT)");
    t2_status err = T2_OK;
    ck_assert_ptr_null(t2d_store_open(g_db, &err));
    ck_assert_int_eq(err, T2_ERR_FORMAT);
    ASSERT_ERR_HAS(g_db);
    ASSERT_ERR_HAS("not a t2d state database");
    /* the other application's data is untouched */
    ck_assert_int_eq(sql_int(g_db, "SELECT COUNT(*) FROM sqlite_master"), 1);
    ck_assert_int_eq(sql_int(g_db, "PRAGMA application_id"), 0);
    /* another application's id */
    char path2[320];
    snprintf(path2, sizeof path2, "%s/other.db", g_dir);
    sql_exec(path2, "PRAGMA application_id = 1234");
    ck_assert_ptr_null(t2d_store_open(path2, &err));
    ck_assert_int_eq(err, T2_ERR_FORMAT);
    ASSERT_ERR_HAS("another application");
}
END_TEST

START_TEST(test_open_newer_version) {
    g_s = open_ok();
    t2d_store_close(g_s);
    g_s = NULL;
    sql_exec(g_db, "PRAGMA user_version = 99");
    t2_status err = T2_OK;
    ck_assert_ptr_null(t2d_store_open(g_db, &err));
    ck_assert_int_eq(err, T2_ERR_VERSION);
    ASSERT_ERR_HAS(g_db);
    ASSERT_ERR_HAS("99");
    ck_assert_int_eq(sql_int(g_db, "PRAGMA user_version"), 99); /* not "fixed" behind the user's back */
}
END_TEST

START_TEST(test_open_bad_path) {
    char path[400];
    snprintf(path, sizeof path, "%s/no/such/dir/state.db", g_dir);
    t2_status err = T2_OK;
    ck_assert_ptr_null(t2d_store_open(path, &err));
    ck_assert_int_eq(err, T2_ERR_IO);
    ASSERT_ERR_HAS(path);
    ck_assert_ptr_null(t2d_store_open("", &err));
    ck_assert_int_eq(err, T2_ERR_INVALID_ARG);
    ck_assert_ptr_null(t2d_store_open(NULL, NULL)); /* err may be NULL */
}
END_TEST

/* A t2d database with n jobs, closed. */
static void make_db_with_jobs(int n) {
    g_s = open_ok();
    for (int i = 0; i < n; i++) submit(g_s, i % 2 ? "alice" : "bob", "train", 0);
    t2d_store_close(g_s);
    g_s = NULL;
}

START_TEST(test_truncated_file) {
    /* a t2d database cut short (a bad copy) */
    make_db_with_jobs(200);
    ck_assert_int_eq(truncate(g_db, 4096 * 3), 0);
    t2_status err = T2_OK;
    ck_assert_ptr_null(t2d_store_open(g_db, &err));
    ck_assert_int_eq(err, T2_ERR_FORMAT);
    ASSERT_ERR_HAS(g_db);
    ASSERT_ERR_HAS("damaged");
}
END_TEST

START_TEST(test_damaged_pages) {
    /* the first page (the header and the schema) intact, every other page garbage: the damage shows at the
     * first query, as an error naming the file; nothing crashes */
    make_db_with_jobs(200);
    FILE *f = fopen(g_db, "r+b");
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(fseek(f, 0, SEEK_END), 0);
    long size = ftell(f);
    ck_assert_int_gt(size, 4 * 4096);
    ck_assert_int_eq(fseek(f, 4096, SEEK_SET), 0);
    for (long i = 4096; i < size; i++) fputc((int)((i * 131) & 0xff), f);
    fclose(f);
    g_s = open_ok();
    t2d_job *v = NULL;
    size_t n = 0;
    ck_assert_int_eq(t2d_store_job_list(g_s, NULL, NULL, 1000, &v, &n), T2_ERR_FORMAT);
    ck_assert_ptr_null(v);
    ASSERT_ERR_HAS(g_db);
    ASSERT_ERR_HAS("malformed");
    t2d_job j;
    t2d_job_init(&j);
    j.tenant = "alice";
    j.kind = "train";
    ck_assert_int_ne(t2d_store_job_insert(g_s, &j, NULL), T2_OK);
    ASSERT_ERR_HAS(g_db);
}
END_TEST

START_TEST(test_migrate_from_v1) {
    /* a version-1 database as the first t2d wrote it, with a job that has 3 progress events */
    sqlite3 *db;
    ck_assert_int_eq(sqlite3_open(g_db, &db), SQLITE_OK);
    ck_assert_int_eq(sqlite3_exec(db, t2d_store_migrations[0], NULL, NULL, NULL), SQLITE_OK);
    char stamp[96];
    snprintf(stamp, sizeof stamp, "PRAGMA application_id = %d; PRAGMA user_version = 1", T2D_STORE_APP_ID);
    ck_assert_int_eq(sqlite3_exec(db, stamp, NULL, NULL, NULL), SQLITE_OK);
    const char *rows =
        "INSERT INTO tenants (id, name, created) VALUES (1, 'alice', 1.0);"
        "INSERT INTO jobs (id, tenant_id, kind, state, trainer, created, step, total)"
        "  VALUES (7, 1, 'train', 'running', 'reinforce', 2.0, 3, 10);"
        "INSERT INTO job_events (job_id, time, type, state) VALUES (7, 2.0, 'queued', 'queued');"
        "INSERT INTO job_events (job_id, time, type, state, step) VALUES (7, 3.0, 'progress', 'running', 1);"
        "INSERT INTO job_events (job_id, time, type, state, step) VALUES (7, 4.0, 'progress', 'running', 2);"
        "INSERT INTO job_events (job_id, time, type, state, step) VALUES (7, 5.0, 'progress', 'running', 3);";
    ck_assert_int_eq(sqlite3_exec(db, rows, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);

    g_s = open_ok();
    t2d_job j = get(g_s, 7);
    ck_assert_str_eq(j.tenant, "alice");
    ck_assert_str_eq(j.trainer, "reinforce");
    ck_assert_int_eq(j.state, T2D_JOB_RUNNING);
    ck_assert_int_eq(j.step, 3);
    ck_assert(isnan(j.reward));
    t2d_job_clear(&j);
    /* the table version 2 added works */
    ASSERT_OK(t2d_store_kv_put(g_s, "alice", "k", "v", 1));
    /* new ids continue after the old ones */
    ck_assert_int_gt(submit(g_s, "alice", "eval", 0), 7);
    t2d_store_close(g_s);
    g_s = NULL;
    ck_assert_int_eq(sql_int(g_db, "PRAGMA user_version"), 2);
    ck_assert_int_eq(sql_int(g_db, "SELECT progress_events FROM jobs WHERE id = 7"), 3);
    ck_assert_int_eq(sql_int(g_db, "SELECT COUNT(*) FROM job_events WHERE job_id = 7"), 4);
}
END_TEST

/* ---------------- persistence ---------------- */

START_TEST(test_persistence_across_reopen) {
    g_s = open_ok();
    int64_t id = submit(g_s, "alice", "train", 3);
    ASSERT_OK(t2d_store_job_set_state(g_s, id, T2D_JOB_RUNNING, NULL, NULL));
    ASSERT_OK(t2d_store_job_progress(g_s, id, &(t2d_progress){.step = 5, .total = 50, .reward = 0.25, .accuracy = NAN,
                                                                .eta = 12.5, .message = "ok"}));
    ASSERT_OK(t2d_store_checkpoint_save(g_s, id, 5, "ckpt-bytes", 10));
    t2d_expert e = {.name = "math", .owner = "alice", .label = "math", .path = "/x/math.safetensors",
                    .n_params = 393216, .bytes = 1572864, .meta = "{\"trainer\":\"reinforce\"}"};
    ASSERT_OK(t2d_store_expert_add(g_s, &e, NULL));
    ASSERT_OK(t2d_store_kv_put(g_s, "alice", "cem/task1", "\x01\x02\x00\x03", 4));
    t2d_store_close(g_s);

    g_s = open_ok();
    t2d_job j = get(g_s, id);
    ck_assert_int_eq(j.state, T2D_JOB_RUNNING);
    ck_assert_int_eq(j.step, 5);
    ck_assert_int_eq(j.total, 50);
    ck_assert_double_eq(j.reward, 0.25);
    ck_assert(isnan(j.accuracy));
    ck_assert_double_eq(j.eta, 12.5);
    ck_assert_int_eq(j.priority, 3);
    t2d_job_clear(&j);
    int64_t step = 0;
    void *data = NULL;
    size_t len = 0;
    ASSERT_OK(t2d_store_checkpoint_load(g_s, id, &step, &data, &len));
    ck_assert_int_eq(step, 5);
    ck_assert_uint_eq(len, 10);
    ck_assert_int_eq(memcmp(data, "ckpt-bytes", 10), 0);
    free(data);
    t2d_expert got;
    ASSERT_OK(t2d_store_expert_get(g_s, "alice", "math", &got));
    ck_assert_str_eq(got.path, "/x/math.safetensors");
    ck_assert_uint_eq(got.n_params, 393216);
    ck_assert_uint_eq(got.bytes, 1572864);
    ck_assert_str_eq(got.meta, "{\"trainer\":\"reinforce\"}");
    t2d_expert_clear(&got);
    ASSERT_OK(t2d_store_kv_get(g_s, "alice", "cem/task1", &data, &len));
    ck_assert_uint_eq(len, 4);
    ck_assert_int_eq(memcmp(data, "\x01\x02\x00\x03", 4), 0);
    free(data);
    t2d_job_event *ev;
    size_t n;
    ASSERT_OK(t2d_store_job_events(g_s, id, 0, 0, &ev, &n));
    ck_assert_uint_eq(n, 3);
    ck_assert_str_eq(ev[2].type, "progress");
    ck_assert_str_eq(ev[2].message, "ok");
    t2d_job_events_free(ev, n);
}
END_TEST

/* ---------------- jobs ---------------- */

START_TEST(test_job_roundtrip_and_validation) {
    g_s = open_ok();
    t2d_job j;
    t2d_job_init(&j);
    j.tenant = "bob";
    j.kind = "eval";
    j.grader = "math";
    j.dataset = "/data/gsm8k.jsonl";
    j.dispatch = "cem";
    j.mix = "[{\"expert\":\"math\",\"alpha\":0.5}]";
    j.split = "test";
    j.limit = 200;
    j.sampling = "{\"temperature\":0}";
    j.settings = "{}";
    int64_t id = 0;
    ASSERT_OK(t2d_store_job_insert(g_s, &j, &id));
    t2d_job g = get(g_s, id);
    ck_assert_int_eq(g.id, id);
    ck_assert_str_eq(g.tenant, "bob");
    ck_assert_str_eq(g.kind, "eval");
    ck_assert_int_eq(g.state, T2D_JOB_QUEUED);
    ck_assert_str_eq(g.grader, "math");
    ck_assert_str_eq(g.dataset, "/data/gsm8k.jsonl");
    ck_assert_str_eq(g.dispatch, "cem");
    ck_assert_str_eq(g.mix, "[{\"expert\":\"math\",\"alpha\":0.5}]");
    ck_assert_str_eq(g.split, "test");
    ck_assert_int_eq(g.limit, 200);
    ck_assert_str_eq(g.sampling, "{\"temperature\":0}");
    ck_assert_str_eq(g.trainer, ""); /* NULL in, "" out */
    ck_assert_str_eq(g.error, "");
    ck_assert(isnan(g.reward) && isnan(g.accuracy));
    ck_assert(g.created > 1e9);
    ck_assert_double_eq(g.started, 0);
    ck_assert_double_eq(g.finished, 0);
    ck_assert_int_eq(g.cancel_requested, 0);
    t2d_job_clear(&g);
    t2d_job_clear(&g); /* clear twice is harmless */

    /* refusals name the field */
    j.kind = "finetune";
    ck_assert_int_eq(t2d_store_job_insert(g_s, &j, NULL), T2_ERR_INVALID_ARG);
    ASSERT_ERR_HAS("finetune");
    j.kind = "train";
    j.settings = "{\"steps\": 10,";
    ck_assert_int_eq(t2d_store_job_insert(g_s, &j, NULL), T2_ERR_INVALID_ARG);
    ASSERT_ERR_HAS("job settings is not valid JSON");
    j.settings = "[1]";
    ck_assert_int_eq(t2d_store_job_insert(g_s, &j, NULL), T2_ERR_INVALID_ARG);
    ASSERT_ERR_HAS("job settings must be a JSON object");
    j.settings = NULL;
    j.mix = "{\"expert\":\"x\"}";
    ck_assert_int_eq(t2d_store_job_insert(g_s, &j, NULL), T2_ERR_INVALID_ARG);
    ASSERT_ERR_HAS("job mix must be a JSON array");
    j.mix = NULL;
    j.tenant = "";
    ck_assert_int_eq(t2d_store_job_insert(g_s, &j, NULL), T2_ERR_INVALID_ARG);
    ASSERT_ERR_HAS("tenant name is empty");
    char longname[300];
    memset(longname, 'x', sizeof longname - 1);
    longname[sizeof longname - 1] = 0;
    j.tenant = longname;
    ck_assert_int_eq(t2d_store_job_insert(g_s, &j, NULL), T2_ERR_INVALID_ARG);
    ASSERT_ERR_HAS("longer than 128");
    j.tenant = "bob";
    j.limit = -1;
    ck_assert_int_eq(t2d_store_job_insert(g_s, &j, NULL), T2_ERR_INVALID_ARG);
    ASSERT_ERR_HAS("limit");
    /* none of the refused ones was stored */
    int64_t counts[T2D_JOB_N_STATES];
    ASSERT_OK(t2d_store_job_counts(g_s, NULL, counts));
    ck_assert_int_eq(counts[T2D_JOB_QUEUED], 1);

    ck_assert_int_eq(t2d_store_job_get(g_s, 424242, &g), T2_ERR_NOT_FOUND);
    ASSERT_ERR_HAS("424242");
    ck_assert_int_eq(t2d_store_job_insert(NULL, &j, NULL), T2_ERR_INVALID_ARG);
    ck_assert_int_eq(t2d_store_job_insert(g_s, NULL, NULL), T2_ERR_INVALID_ARG);
}
END_TEST

START_TEST(test_job_list_filters) {
    g_s = open_ok();
    int64_t a1 = submit(g_s, "alice", "train", 0);
    int64_t b1 = submit(g_s, "bob", "train", 0);
    int64_t a2 = submit(g_s, "alice", "eval", 0);
    int64_t a3 = submit(g_s, "alice", "train", 0);
    ASSERT_OK(t2d_store_job_set_state(g_s, a2, T2D_JOB_RUNNING, NULL, NULL));
    t2d_job *v;
    size_t n;
    ASSERT_OK(t2d_store_job_list(g_s, NULL, NULL, 0, &v, &n));
    ck_assert_uint_eq(n, 4);
    ck_assert_int_eq(v[0].id, a3); /* newest first */
    ck_assert_int_eq(v[1].id, a2);
    ck_assert_int_eq(v[2].id, b1);
    ck_assert_int_eq(v[3].id, a1);
    t2d_jobs_free(v, n);
    ASSERT_OK(t2d_store_job_list(g_s, "alice", NULL, 0, &v, &n));
    ck_assert_uint_eq(n, 3);
    for (size_t i = 0; i < n; i++) ck_assert_str_eq(v[i].tenant, "alice");
    t2d_jobs_free(v, n);
    ASSERT_OK(t2d_store_job_list(g_s, "alice", "queued", 0, &v, &n));
    ck_assert_uint_eq(n, 2);
    ck_assert_int_eq(v[0].id, a3);
    ck_assert_int_eq(v[1].id, a1);
    t2d_jobs_free(v, n);
    ASSERT_OK(t2d_store_job_list(g_s, NULL, "running", 0, &v, &n));
    ck_assert_uint_eq(n, 1);
    ck_assert_int_eq(v[0].id, a2);
    t2d_jobs_free(v, n);
    ASSERT_OK(t2d_store_job_list(g_s, NULL, NULL, 2, &v, &n));
    ck_assert_uint_eq(n, 2);
    t2d_jobs_free(v, n);
    ASSERT_OK(t2d_store_job_list(g_s, "nobody", NULL, 0, &v, &n));
    ck_assert_uint_eq(n, 0);
    t2d_jobs_free(v, n);
    ck_assert_int_eq(t2d_store_job_list(g_s, NULL, "sleeping", 0, &v, &n), T2_ERR_INVALID_ARG);
    ASSERT_ERR_HAS("sleeping");
    /* an injection attempt is just a name that matches nothing */
    ASSERT_OK(t2d_store_job_list(g_s, "x' OR '1'='1", NULL, 0, &v, &n));
    ck_assert_uint_eq(n, 0);
    t2d_jobs_free(v, n);
}
END_TEST

START_TEST(test_job_lifecycle_and_events) {
    g_s = open_ok();
    int64_t id = submit(g_s, "alice", "train", 0);
    /* progress on a queued job is refused */
    t2d_progress p = {.step = 1, .total = 0, .reward = 0.5, .accuracy = NAN, .eta = 30};
    ck_assert_int_eq(t2d_store_job_progress(g_s, id, &p), T2_ERR_INVALID_ARG);
    ASSERT_ERR_HAS("not running");
    ASSERT_OK(t2d_store_job_set_state(g_s, id, T2D_JOB_RUNNING, NULL, NULL));
    ASSERT_OK(t2d_store_job_progress(g_s, id, &p));
    p.step = 2;
    p.reward = NAN; /* no new reward: the job keeps the last one */
    p.accuracy = 0.75;
    ASSERT_OK(t2d_store_job_progress(g_s, id, &p));
    t2d_job j = get(g_s, id);
    ck_assert_int_eq(j.step, 2);
    ck_assert_int_eq(j.total, 100); /* total 0 in a report keeps the job's */
    ck_assert_double_eq(j.reward, 0.5);
    ck_assert_double_eq(j.accuracy, 0.75);
    ck_assert_double_eq(j.eta, 30);
    t2d_job_clear(&j);
    ASSERT_OK(t2d_store_job_log(g_s, id, "loaded 7473 tasks"));
    ASSERT_OK(t2d_store_job_set_state(g_s, id, T2D_JOB_DONE, NULL, "{\"accuracy\":0.75}"));
    j = get(g_s, id);
    ck_assert_int_eq(j.state, T2D_JOB_DONE);
    ck_assert(j.started > 0 && j.finished >= j.started);
    ck_assert_str_eq(j.result, "{\"accuracy\":0.75}");
    ck_assert_double_eq(j.eta, 0);
    t2d_job_clear(&j);
    /* a finished job does not change */
    ck_assert_int_eq(t2d_store_job_set_state(g_s, id, T2D_JOB_RUNNING, NULL, NULL), T2_ERR_INVALID_ARG);
    ASSERT_ERR_HAS("from done to running");
    ck_assert_int_eq(t2d_store_job_set_state(g_s, id, T2D_JOB_FAILED, "x", NULL), T2_ERR_INVALID_ARG);
    ck_assert_int_eq(t2d_store_job_set_state(g_s, id, (t2d_job_state)17, NULL, NULL), T2_ERR_INVALID_ARG);
    ck_assert_int_eq(t2d_store_job_set_state(g_s, 999, T2D_JOB_RUNNING, NULL, NULL), T2_ERR_NOT_FOUND);
    ck_assert_int_eq(t2d_store_job_log(g_s, 999, "x"), T2_ERR_NOT_FOUND);

    t2d_job_event *ev;
    size_t n;
    ASSERT_OK(t2d_store_job_events(g_s, id, 0, 0, &ev, &n));
    const char *types[] = {"queued", "started", "progress", "progress", "log", "done"};
    const t2d_job_state states[] = {T2D_JOB_QUEUED,  T2D_JOB_RUNNING, T2D_JOB_RUNNING,
                                    T2D_JOB_RUNNING, T2D_JOB_RUNNING, T2D_JOB_DONE};
    ck_assert_uint_eq(n, 6);
    for (size_t i = 0; i < n; i++) {
        ck_assert_str_eq(ev[i].type, types[i]);
        ck_assert_int_eq(ev[i].state, states[i]);
        ck_assert_int_eq(ev[i].job, id);
        if (i) ck_assert_int_gt(ev[i].seq, ev[i - 1].seq);
    }
    ck_assert_int_eq(ev[2].step, 1);
    ck_assert_int_eq(ev[2].total, 100);
    ck_assert_double_eq(ev[2].reward, 0.5);
    ck_assert(isnan(ev[2].accuracy));
    ck_assert(isnan(ev[3].reward)); /* the event has only what that report said */
    ck_assert_double_eq(ev[3].accuracy, 0.75);
    ck_assert_str_eq(ev[4].message, "loaded 7473 tasks");
    int64_t after = ev[3].seq;
    t2d_job_events_free(ev, n);
    /* a watcher's cursor, and a limit */
    ASSERT_OK(t2d_store_job_events(g_s, id, after, 0, &ev, &n));
    ck_assert_uint_eq(n, 2);
    ck_assert_str_eq(ev[0].type, "log");
    t2d_job_events_free(ev, n);
    ASSERT_OK(t2d_store_job_events(g_s, id, 0, 2, &ev, &n));
    ck_assert_uint_eq(n, 2);
    ck_assert_str_eq(ev[1].type, "started");
    t2d_job_events_free(ev, n);
    ck_assert_int_eq(t2d_store_job_events(g_s, 999, 0, 0, &ev, &n), T2_ERR_NOT_FOUND);

    /* a failure keeps its reason, in the job and in the event */
    int64_t id2 = submit(g_s, "alice", "train", 0);
    ASSERT_OK(t2d_store_job_set_state(g_s, id2, T2D_JOB_RUNNING, NULL, NULL));
    ASSERT_OK(t2d_store_job_set_state(g_s, id2, T2D_JOB_FAILED, "grader 'math' crashed", NULL));
    j = get(g_s, id2);
    ck_assert_str_eq(j.error, "grader 'math' crashed");
    t2d_job_clear(&j);
    ASSERT_OK(t2d_store_job_events(g_s, id2, 0, 0, &ev, &n));
    ck_assert_str_eq(ev[n - 1].type, "failed");
    ck_assert_str_eq(ev[n - 1].message, "grader 'math' crashed");
    t2d_job_events_free(ev, n);
    /* a bad result is refused */
    int64_t id3 = submit(g_s, "alice", "eval", 0);
    ck_assert_int_eq(t2d_store_job_set_state(g_s, id3, T2D_JOB_FAILED, NULL, "not json"), T2_ERR_INVALID_ARG);
    ASSERT_ERR_HAS("job result");
}
END_TEST

START_TEST(test_progress_pruning) {
    g_s = open_ok();
    t2d_store_set_progress_keep(g_s, 10);
    int64_t id = submit(g_s, "alice", "train", 0);
    ASSERT_OK(t2d_store_job_set_state(g_s, id, T2D_JOB_RUNNING, NULL, NULL));
    ASSERT_OK(t2d_store_job_log(g_s, id, "first log"));
    for (int k = 1; k <= 35; k++)
        ASSERT_OK(t2d_store_job_progress(g_s, id, &(t2d_progress){.step = k, .reward = NAN, .accuracy = NAN}));
    t2d_job_event *ev;
    size_t n;
    ASSERT_OK(t2d_store_job_events(g_s, id, 0, 0, &ev, &n));
    size_t progress = 0;
    int64_t last_step = 0, first_step = 0;
    for (size_t i = 0; i < n; i++)
        if (strcmp(ev[i].type, "progress") == 0) {
            if (!progress) first_step = ev[i].step;
            progress++;
            last_step = ev[i].step;
        }
    ck_assert_msg(progress >= 10 && progress <= 11, "kept %zu progress events", progress);
    ck_assert_int_eq(last_step, 35);
    ck_assert_int_eq(first_step, 35 - (int64_t)progress + 1); /* the newest ones, contiguous */
    /* other events are never pruned */
    ck_assert_str_eq(ev[0].type, "queued");
    ck_assert_str_eq(ev[1].type, "started");
    ck_assert_str_eq(ev[2].type, "log");
    ck_assert_uint_eq(n, progress + 3);
    t2d_job_events_free(ev, n);
}
END_TEST

START_TEST(test_cancel) {
    g_s = open_ok();
    int64_t q = submit(g_s, "alice", "train", 0);
    int64_t r = submit(g_s, "alice", "train", 0);
    ASSERT_OK(t2d_store_job_set_state(g_s, r, T2D_JOB_RUNNING, NULL, NULL));
    t2d_cancel_result what = 0;
    ASSERT_OK(t2d_store_job_cancel(g_s, q, &what));
    ck_assert_int_eq(what, T2D_CANCEL_DONE);
    t2d_job j = get(g_s, q);
    ck_assert_int_eq(j.state, T2D_JOB_CANCELLED);
    ck_assert(j.finished > 0);
    ck_assert_str_eq(j.tenant, "alice"); /* what the daemon checks before cancelling */
    t2d_job_clear(&j);

    ck_assert_int_eq(t2d_store_job_cancel_requested(g_s, r), 0);
    ASSERT_OK(t2d_store_job_cancel(g_s, r, &what));
    ck_assert_int_eq(what, T2D_CANCEL_REQUESTED);
    j = get(g_s, r);
    ck_assert_int_eq(j.state, T2D_JOB_RUNNING);
    ck_assert_int_eq(j.cancel_requested, 1);
    t2d_job_clear(&j);
    ck_assert_int_eq(t2d_store_job_cancel_requested(g_s, r), 1);
    ASSERT_OK(t2d_store_job_cancel(g_s, r, &what)); /* twice: same answer, one event */
    ck_assert_int_eq(what, T2D_CANCEL_REQUESTED);
    t2d_job_event *ev;
    size_t n;
    ASSERT_OK(t2d_store_job_events(g_s, r, 0, 0, &ev, &n));
    ck_assert_uint_eq(n, 3); /* queued, started, log "cancel requested" */
    ck_assert_str_eq(ev[2].type, "log");
    t2d_job_events_free(ev, n);
    /* a runner handing the job back does not queue it again: it was to be cancelled */
    ASSERT_OK(t2d_store_job_set_state(g_s, r, T2D_JOB_QUEUED, NULL, NULL));
    j = get(g_s, r);
    ck_assert_int_eq(j.state, T2D_JOB_CANCELLED);
    t2d_job_clear(&j);
    ASSERT_OK(t2d_store_job_cancel(g_s, r, &what));
    ck_assert_int_eq(what, T2D_CANCEL_FINISHED);
    ck_assert_int_eq(t2d_store_job_cancel(g_s, 12345, &what), T2_ERR_NOT_FOUND);
    ck_assert_int_eq(t2d_store_job_cancel_requested(g_s, 12345), 0);
}
END_TEST

/* ---------------- scheduling ---------------- */

START_TEST(test_claim_fairness) {
    g_s = open_ok();
    int64_t a[10];
    for (int i = 0; i < 10; i++) a[i] = submit(g_s, "alice", "train", 0);
    int64_t b = submit(g_s, "bob", "train", 0);
    /* all may run at once: alice's first, then bob's (fewest running), then alice's in order */
    ck_assert_int_eq(claim(g_s, 0, 0), a[0]);
    ck_assert_int_eq(claim(g_s, 0, 0), b);
    ck_assert_int_eq(claim(g_s, 0, 0), a[1]);
    ck_assert_int_eq(claim(g_s, 0, 0), a[2]);
}
END_TEST

START_TEST(test_claim_one_at_a_time_round_robin) {
    g_s = open_ok();
    int64_t a[10];
    for (int i = 0; i < 10; i++) a[i] = submit(g_s, "alice", "train", 0);
    int64_t b = submit(g_s, "bob", "train", 0);
    /* one job at a time: bob's single job runs second, not eleventh */
    int64_t first = claim(g_s, 1, 0);
    ck_assert_int_eq(first, a[0]);
    ck_assert_int_eq(claim(g_s, 1, 0), 0); /* the total limit is reached */
    ASSERT_OK(t2d_store_job_set_state(g_s, first, T2D_JOB_DONE, NULL, NULL));
    int64_t second = claim(g_s, 1, 0);
    ck_assert_int_eq(second, b);
    ASSERT_OK(t2d_store_job_set_state(g_s, second, T2D_JOB_DONE, NULL, NULL));
    ck_assert_int_eq(claim(g_s, 1, 0), a[1]);

    /* three tenants with three jobs each take turns */
    t2d_store_close(g_s);
    unlink(g_db);
    g_s = open_ok();
    const char *names[3] = {"t1", "t2", "t3"};
    int64_t ids[3][3];
    for (int k = 0; k < 3; k++)
        for (int t = 0; t < 3; t++) ids[t][k] = submit(g_s, names[t], "eval", 0);
    for (int k = 0; k < 3; k++)
        for (int t = 0; t < 3; t++) {
            int64_t id = claim(g_s, 1, 0);
            ck_assert_msg(id == ids[t][k], "turn %d of %s: got job %lld", k, names[t], (long long)id);
            ASSERT_OK(t2d_store_job_set_state(g_s, id, T2D_JOB_DONE, NULL, NULL));
        }
    ck_assert_int_eq(claim(g_s, 1, 0), 0); /* empty queue */
    ASSERT_ERR_HAS("no job may start");
}
END_TEST

START_TEST(test_claim_priority_and_limits) {
    g_s = open_ok();
    int64_t low = submit(g_s, "alice", "train", 0);
    int64_t high = submit(g_s, "alice", "train", 5);
    int64_t mid = submit(g_s, "alice", "train", 2);
    int64_t b1 = submit(g_s, "bob", "train", 0);
    int64_t b2 = submit(g_s, "bob", "train", 0);
    ck_assert_int_eq(claim(g_s, 0, 2), high); /* priority within the tenant */
    ck_assert_int_eq(claim(g_s, 0, 2), b1);
    ck_assert_int_eq(claim(g_s, 0, 2), mid);
    ck_assert_int_eq(claim(g_s, 0, 2), b2);
    ck_assert_int_eq(claim(g_s, 0, 2), 0); /* both at their limit of 2 */
    ASSERT_ERR_HAS("running limit");
    t2d_tenant_usage u;
    ASSERT_OK(t2d_store_tenant_usage(g_s, "alice", &u));
    ck_assert_int_eq(u.running, 2);
    ck_assert_int_eq(u.queued, 1);
    ASSERT_OK(t2d_store_job_set_state(g_s, high, T2D_JOB_DONE, NULL, NULL));
    ck_assert_int_eq(claim(g_s, 4, 2), low); /* alice is below its limit again, 3 of 4 running */
    ck_assert_int_eq(claim(g_s, 4, 2), 0);   /* nothing queued */
}
END_TEST

START_TEST(test_claim_total_limit) {
    g_s = open_ok();
    int64_t a1 = submit(g_s, "alice", "train", 0);
    int64_t a2 = submit(g_s, "alice", "train", 0);
    int64_t a3 = submit(g_s, "alice", "train", 0);
    ck_assert_int_eq(claim(g_s, 2, 0), a1);
    ck_assert_int_eq(claim(g_s, 2, 0), a2);
    ck_assert_int_eq(claim(g_s, 2, 0), 0);
    ASSERT_ERR_HAS("2 of at most 2");
    ASSERT_OK(t2d_store_job_set_state(g_s, a1, T2D_JOB_FAILED, "boom", NULL));
    ck_assert_int_eq(claim(g_s, 2, 0), a3);
    int64_t counts[T2D_JOB_N_STATES];
    ASSERT_OK(t2d_store_job_counts(g_s, NULL, counts));
    ck_assert_int_eq(counts[T2D_JOB_RUNNING], 2);
    ck_assert_int_eq(counts[T2D_JOB_FAILED], 1);
    ck_assert_int_eq(counts[T2D_JOB_QUEUED], 0);
    ck_assert_int_eq(counts[T2D_JOB_DONE], 0);
}
END_TEST

/* ---------------- checkpoints and recovery ---------------- */

START_TEST(test_checkpoints) {
    g_s = open_ok();
    int64_t id = submit(g_s, "alice", "train", 0);
    int64_t step = -1;
    void *data = NULL;
    size_t len = 0;
    ck_assert_int_eq(t2d_store_checkpoint_load(g_s, id, &step, &data, &len), T2_ERR_NOT_FOUND);
    ASSERT_ERR_HAS("no checkpoint");
    ck_assert_ptr_null(data);
    unsigned char big[100000];
    for (size_t i = 0; i < sizeof big; i++) big[i] = (unsigned char)(i * 31);
    ASSERT_OK(t2d_store_checkpoint_save(g_s, id, 10, big, sizeof big));
    ASSERT_OK(t2d_store_checkpoint_save(g_s, id, 20, "new", 3)); /* replaces */
    ASSERT_OK(t2d_store_checkpoint_load(g_s, id, &step, &data, &len));
    ck_assert_int_eq(step, 20);
    ck_assert_uint_eq(len, 3);
    ck_assert_int_eq(memcmp(data, "new", 3), 0);
    free(data);
    ASSERT_OK(t2d_store_checkpoint_save(g_s, id, 21, NULL, 0)); /* empty is allowed */
    ASSERT_OK(t2d_store_checkpoint_load(g_s, id, &step, &data, &len));
    ck_assert_uint_eq(len, 0);
    ck_assert_ptr_nonnull(data);
    free(data);
    ASSERT_OK(t2d_store_checkpoint_load(g_s, id, &step, NULL, NULL)); /* just the step */
    ck_assert_int_eq(step, 21);
    ck_assert_int_eq(t2d_store_checkpoint_save(g_s, 999, 1, "x", 1), T2_ERR_NOT_FOUND);
    ck_assert_int_eq(t2d_store_checkpoint_save(g_s, id, 1, NULL, 5), T2_ERR_INVALID_ARG);
    /* a finished job's checkpoint goes away, and it takes no new one */
    ASSERT_OK(t2d_store_job_set_state(g_s, id, T2D_JOB_RUNNING, NULL, NULL));
    ASSERT_OK(t2d_store_job_set_state(g_s, id, T2D_JOB_DONE, NULL, NULL));
    ck_assert_int_eq(t2d_store_checkpoint_load(g_s, id, &step, NULL, NULL), T2_ERR_NOT_FOUND);
    ck_assert_int_eq(t2d_store_checkpoint_save(g_s, id, 1, "x", 1), T2_ERR_INVALID_ARG);
    ASSERT_ERR_HAS("finished");
}
END_TEST

static int restart_evals(void *ud, const t2d_job *job) {
    (*(int *)ud)++;
    return strcmp(job->kind, "eval") == 0;
}

START_TEST(test_recover) {
    g_s = open_ok();
    int64_t with_ckpt = submit(g_s, "alice", "train", 0);
    int64_t train_no_ckpt = submit(g_s, "alice", "train", 0);
    int64_t eval_no_ckpt = submit(g_s, "bob", "eval", 0);
    int64_t to_cancel = submit(g_s, "bob", "train", 0);
    int64_t done = submit(g_s, "bob", "train", 0);
    for (int i = 0; i < 5; i++) ck_assert_int_gt(claim(g_s, 0, 0), 0);
    int64_t queued = submit(g_s, "alice", "train", 0);
    ASSERT_OK(t2d_store_job_progress(g_s, with_ckpt, &(t2d_progress){.step = 9, .reward = 0.1, .accuracy = NAN}));
    ASSERT_OK(t2d_store_checkpoint_save(g_s, with_ckpt, 7, "z-and-adam", 10));
    ASSERT_OK(t2d_store_job_progress(g_s, eval_no_ckpt, &(t2d_progress){.step = 40, .reward = NAN, .accuracy = 0.5}));
    ASSERT_OK(t2d_store_job_cancel(g_s, to_cancel, NULL));
    ASSERT_OK(t2d_store_job_set_state(g_s, done, T2D_JOB_DONE, NULL, NULL));
    /* the daemon dies: nothing more is written */
    t2d_store_close(g_s);

    g_s = open_ok();
    int calls = 0;
    t2d_recover_counts c;
    ASSERT_OK(t2d_store_recover(g_s, restart_evals, &calls, &c));
    ck_assert_int_eq(c.queued, 1);
    ck_assert_int_eq(c.resumed, 1);
    ck_assert_int_eq(c.requeued, 1);
    ck_assert_int_eq(c.failed, 1);
    ck_assert_int_eq(c.cancelled, 1);
    ck_assert_int_eq(calls, 2); /* asked only about the running jobs without a checkpoint */

    t2d_job j = get(g_s, with_ckpt);
    ck_assert_int_eq(j.state, T2D_JOB_QUEUED);
    ck_assert_int_eq(j.step, 7); /* back to the checkpoint's step */
    ck_assert_double_eq(j.started, 0);
    t2d_job_clear(&j);
    t2d_job_event *ev;
    size_t n;
    ASSERT_OK(t2d_store_job_events(g_s, with_ckpt, 0, 0, &ev, &n));
    ck_assert_str_eq(ev[n - 1].type, "log");
    ck_assert_str_eq(ev[n - 1].message, "daemon restarted; resuming from checkpoint at step 7");
    ck_assert_int_eq(ev[n - 1].state, T2D_JOB_QUEUED);
    t2d_job_events_free(ev, n);

    j = get(g_s, train_no_ckpt);
    ck_assert_int_eq(j.state, T2D_JOB_FAILED);
    ck_assert_str_eq(j.error, "daemon restarted while the job was running and it had no checkpoint");
    ck_assert(j.finished > 0);
    t2d_job_clear(&j);
    j = get(g_s, eval_no_ckpt);
    ck_assert_int_eq(j.state, T2D_JOB_QUEUED);
    ck_assert_int_eq(j.step, 0);
    ck_assert(isnan(j.accuracy));
    t2d_job_clear(&j);
    j = get(g_s, to_cancel);
    ck_assert_int_eq(j.state, T2D_JOB_CANCELLED);
    t2d_job_clear(&j);
    j = get(g_s, done);
    ck_assert_int_eq(j.state, T2D_JOB_DONE);
    t2d_job_clear(&j);
    j = get(g_s, queued);
    ck_assert_int_eq(j.state, T2D_JOB_QUEUED);
    t2d_job_clear(&j);

    /* the resumed job finds its checkpoint when it runs again */
    int64_t again = 0;
    for (int i = 0; i < 3 && again != with_ckpt; i++) again = claim(g_s, 0, 0);
    ck_assert_int_eq(again, with_ckpt);
    int64_t step = 0;
    void *data;
    size_t len;
    ASSERT_OK(t2d_store_checkpoint_load(g_s, with_ckpt, &step, &data, &len));
    ck_assert_int_eq(step, 7);
    ck_assert_int_eq(memcmp(data, "z-and-adam", 10), 0);
    free(data);

    /* nothing left running: a second recovery changes nothing; NULL callback fails what cannot resume */
    t2d_store_close(g_s);
    g_s = open_ok();
    ASSERT_OK(t2d_store_recover(g_s, NULL, NULL, &c));
    ck_assert_int_eq(c.resumed, 1); /* with_ckpt was running again and still has its checkpoint */
    ck_assert_int_eq(c.failed, 0);
    ck_assert_int_eq(c.requeued, 0);
}
END_TEST

/* ---------------- experts ---------------- */

static void add_expert(const char *owner, const char *name, uint64_t bytes, int published) {
    char path[256];
    snprintf(path, sizeof path, "/experts/%s/%s.safetensors", owner, name);
    t2d_expert e = {.name = (char *)name, .owner = (char *)owner, .label = (char *)name, .path = path,
                    .n_params = bytes / 4, .bytes = bytes, .published = published};
    ASSERT_OK(t2d_store_expert_add(g_s, &e, NULL));
}

START_TEST(test_experts_visibility) {
    g_s = open_ok();
    add_expert("alice", "math", 1000, 0);
    add_expert("alice", "code", 2000, 0);
    add_expert("bob", "math", 500, 0); /* same name, other owner: fine */
    t2d_expert dup = {.name = "math", .owner = "alice", .path = "/p"};
    ck_assert_int_eq(t2d_store_expert_add(g_s, &dup, NULL), T2_ERR_INVALID_ARG);
    ASSERT_ERR_HAS("already has an expert named 'math'");
    t2d_expert bad = {.name = "x", .owner = "alice", .path = ""};
    ck_assert_int_eq(t2d_store_expert_add(g_s, &bad, NULL), T2_ERR_INVALID_ARG);
    ASSERT_ERR_HAS("no file path");
    bad.path = "/p";
    bad.meta = "{oops";
    ck_assert_int_eq(t2d_store_expert_add(g_s, &bad, NULL), T2_ERR_INVALID_ARG);
    ASSERT_ERR_HAS("expert meta");

    t2d_expert e;
    /* carol sees nothing unpublished */
    ck_assert_int_eq(t2d_store_expert_get(g_s, "carol", "code", &e), T2_ERR_NOT_FOUND);
    ASSERT_ERR_HAS("code");
    ASSERT_OK(t2d_store_expert_publish(g_s, "alice", "code", 1));
    ASSERT_OK(t2d_store_expert_get(g_s, "carol", "code", &e));
    ck_assert_str_eq(e.owner, "alice");
    ck_assert_int_eq(e.published, 1);
    t2d_expert_clear(&e);
    /* own wins over a published one of the same name */
    ASSERT_OK(t2d_store_expert_publish(g_s, "alice", "math", 1));
    ASSERT_OK(t2d_store_expert_get(g_s, "bob", "math", &e));
    ck_assert_str_eq(e.owner, "bob");
    ck_assert_uint_eq(e.bytes, 500);
    t2d_expert_clear(&e);
    /* with two published of the same name, the oldest */
    ASSERT_OK(t2d_store_expert_publish(g_s, "bob", "math", 1));
    ASSERT_OK(t2d_store_expert_get(g_s, "carol", "math", &e));
    ck_assert_str_eq(e.owner, "alice");
    t2d_expert_clear(&e);

    t2d_expert *v;
    size_t n;
    ASSERT_OK(t2d_store_expert_list(g_s, "bob", 0, &v, &n));
    ck_assert_uint_eq(n, 1);
    ck_assert_str_eq(v[0].name, "math");
    ck_assert_str_eq(v[0].owner, "bob");
    t2d_experts_free(v, n);
    ASSERT_OK(t2d_store_expert_list(g_s, "bob", 1, &v, &n));
    ck_assert_uint_eq(n, 3); /* own math, then alice's code and math */
    ck_assert_str_eq(v[0].owner, "bob");
    ck_assert_str_eq(v[1].owner, "alice");
    ck_assert_str_eq(v[1].name, "code");
    ck_assert_str_eq(v[2].name, "math");
    t2d_experts_free(v, n);
    ASSERT_OK(t2d_store_expert_list(g_s, "carol", 0, &v, &n));
    ck_assert_uint_eq(n, 0);
    t2d_experts_free(v, n);

    /* only the owner withdraws or deletes */
    ck_assert_int_eq(t2d_store_expert_publish(g_s, "carol", "code", 0), T2_ERR_NOT_FOUND);
    ASSERT_ERR_HAS("only its owner");
    ck_assert_int_eq(t2d_store_expert_delete(g_s, "bob", "code", NULL), T2_ERR_NOT_FOUND);
    ASSERT_OK(t2d_store_expert_get(g_s, "alice", "code", &e));
    t2d_expert_clear(&e);
    ASSERT_OK(t2d_store_expert_publish(g_s, "alice", "code", 0));
    ck_assert_int_eq(t2d_store_expert_get(g_s, "carol", "code", &e), T2_ERR_NOT_FOUND);
    char *path = NULL;
    ASSERT_OK(t2d_store_expert_delete(g_s, "alice", "code", &path));
    ck_assert_str_eq(path, "/experts/alice/code.safetensors");
    free(path);
    ck_assert_int_eq(t2d_store_expert_get(g_s, "alice", "code", &e), T2_ERR_NOT_FOUND);
    /* the name is free again */
    add_expert("alice", "code", 10, 0);
}
END_TEST

START_TEST(test_usage_counts) {
    g_s = open_ok();
    t2d_tenant_usage u;
    ASSERT_OK(t2d_store_tenant_usage(g_s, "ghost", &u)); /* unknown: all zero */
    ck_assert_int_eq(u.queued + u.running + u.experts, 0);
    ck_assert_uint_eq(u.expert_bytes, 0);
    ck_assert_int_eq(t2d_store_tenant_usage(g_s, "", &u), T2_ERR_INVALID_ARG);

    for (int i = 0; i < 4; i++) submit(g_s, "alice", "train", 0);
    submit(g_s, "bob", "train", 0);
    int64_t r1 = claim(g_s, 0, 0); /* alice */
    claim(g_s, 0, 0);              /* bob */
    claim(g_s, 0, 0);              /* alice */
    ASSERT_OK(t2d_store_job_set_state(g_s, r1, T2D_JOB_DONE, NULL, NULL));
    add_expert("alice", "a", 3000000000ull, 0); /* beyond 32 bits */
    add_expert("alice", "b", 5, 1);
    add_expert("bob", "c", 7, 0);
    ASSERT_OK(t2d_store_tenant_usage(g_s, "alice", &u));
    ck_assert_int_eq(u.queued, 2);
    ck_assert_int_eq(u.running, 1);
    ck_assert_int_eq(u.experts, 2);
    ck_assert_uint_eq(u.expert_bytes, 3000000005ull);
    ASSERT_OK(t2d_store_tenant_usage(g_s, "bob", &u));
    ck_assert_int_eq(u.queued, 0);
    ck_assert_int_eq(u.running, 1);
    ck_assert_uint_eq(u.expert_bytes, 7);

    int64_t counts[T2D_JOB_N_STATES];
    ASSERT_OK(t2d_store_job_counts(g_s, "alice", counts));
    ck_assert_int_eq(counts[T2D_JOB_QUEUED], 2);
    ck_assert_int_eq(counts[T2D_JOB_RUNNING], 1);
    ck_assert_int_eq(counts[T2D_JOB_DONE], 1);
    ASSERT_OK(t2d_store_job_counts(g_s, NULL, counts));
    ck_assert_int_eq(counts[T2D_JOB_RUNNING], 2);

    t2d_tenant *t;
    size_t n;
    int64_t id = 0;
    ASSERT_OK(t2d_store_tenant_ensure(g_s, "carol", &id));
    int64_t id2 = 0;
    ASSERT_OK(t2d_store_tenant_ensure(g_s, "carol", &id2));
    ck_assert_int_eq(id, id2);
    ASSERT_OK(t2d_store_tenant_list(g_s, &t, &n));
    ck_assert_uint_eq(n, 3);
    ck_assert_str_eq(t[0].name, "alice");
    ck_assert_str_eq(t[1].name, "bob");
    ck_assert_str_eq(t[2].name, "carol");
    ck_assert_int_eq(t[2].id, id);
    t2d_tenants_free(t, n);
    ck_assert_int_eq(t2d_store_tenant_ensure(g_s, "bad\nname", NULL), T2_ERR_INVALID_ARG);
    ASSERT_ERR_HAS("control character");
}
END_TEST

/* ---------------- plugin key-value ---------------- */

START_TEST(test_kv) {
    g_s = open_ok();
    void *v = NULL;
    size_t len = 0;
    ck_assert_int_eq(t2d_store_kv_get(g_s, "alice", "alpha/t1", &v, &len), T2_ERR_NOT_FOUND);
    ASSERT_ERR_HAS("alpha/t1");
    ASSERT_OK(t2d_store_kv_put(g_s, "alice", "alpha/t1", "first", 5));
    ASSERT_OK(t2d_store_kv_put(g_s, "alice", "alpha/t1", "second!", 7));
    ASSERT_OK(t2d_store_kv_put(g_s, "bob", "alpha/t1", "bob's", 5));
    ASSERT_OK(t2d_store_kv_get(g_s, "alice", "alpha/t1", &v, &len));
    ck_assert_uint_eq(len, 7);
    ck_assert_int_eq(memcmp(v, "second!", 7), 0);
    free(v);
    ASSERT_OK(t2d_store_kv_get(g_s, "bob", "alpha/t1", &v, &len));
    ck_assert_int_eq(memcmp(v, "bob's", 5), 0);
    free(v);
    ck_assert_int_eq(t2d_store_kv_get(g_s, "carol", "alpha/t1", &v, &len), T2_ERR_NOT_FOUND);
    ASSERT_OK(t2d_store_kv_put(g_s, "alice", "empty", NULL, 0));
    ASSERT_OK(t2d_store_kv_get(g_s, "alice", "empty", &v, &len));
    ck_assert_uint_eq(len, 0);
    ck_assert_ptr_nonnull(v);
    free(v);
    /* the limits of plugin.h */
    char key[T2D_STORE_KEY_MAX + 2];
    memset(key, 'k', sizeof key - 1);
    key[sizeof key - 1] = 0;
    ck_assert_int_eq(t2d_store_kv_put(g_s, "alice", key, "x", 1), T2_ERR_INVALID_ARG);
    ASSERT_ERR_HAS("plugin key is longer than 200");
    key[T2D_STORE_KEY_MAX] = 0; /* exactly 200 is fine */
    ASSERT_OK(t2d_store_kv_put(g_s, "alice", key, "x", 1));
    size_t big = T2D_STORE_VALUE_MAX + 1;
    char *buf = calloc(1, big);
    ck_assert_int_eq(t2d_store_kv_put(g_s, "alice", "big", buf, big), T2_ERR_INVALID_ARG);
    ASSERT_ERR_HAS("more than the limit");
    ASSERT_OK(t2d_store_kv_put(g_s, "alice", "big", buf, big - 1));
    free(buf);
    ck_assert_int_eq(t2d_store_kv_put(g_s, "alice", "", "x", 1), T2_ERR_INVALID_ARG);
    ck_assert_int_eq(t2d_store_kv_put(g_s, "alice", "k", NULL, 3), T2_ERR_INVALID_ARG);
}
END_TEST

/* ---------------- threads and the event hook ---------------- */

typedef struct hook_state {
    pthread_mutex_t mu;
    int64_t calls, last_seq;
    int out_of_order;
} hook_state;

static void on_event(void *ud, int64_t job, int64_t seq) {
    hook_state *h = ud;
    (void)job;
    pthread_mutex_lock(&h->mu);
    h->calls++;
    if (seq <= 0) h->out_of_order++;
    if (seq > h->last_seq) h->last_seq = seq;
    pthread_mutex_unlock(&h->mu);
}

START_TEST(test_event_hook) {
    g_s = open_ok();
    hook_state h = {.mu = PTHREAD_MUTEX_INITIALIZER};
    t2d_store_set_event_hook(g_s, on_event, &h);
    int64_t id = submit(g_s, "alice", "train", 0);
    ck_assert_int_eq(h.calls, 1);
    ASSERT_OK(t2d_store_job_set_state(g_s, id, T2D_JOB_RUNNING, NULL, NULL));
    ASSERT_OK(t2d_store_job_progress(g_s, id, &(t2d_progress){.step = 1, .reward = NAN, .accuracy = NAN}));
    ASSERT_OK(t2d_store_job_log(g_s, id, "hi"));
    ck_assert_int_eq(h.calls, 4);
    t2d_job_event *ev;
    size_t n;
    ASSERT_OK(t2d_store_job_events(g_s, id, 0, 0, &ev, &n));
    ck_assert_int_eq(h.last_seq, ev[n - 1].seq); /* the hook saw the newest event */
    t2d_job_events_free(ev, n);
    /* a refused call does not notify */
    ck_assert_int_eq(t2d_store_job_set_state(g_s, id, T2D_JOB_RUNNING, NULL, NULL), T2_ERR_INVALID_ARG);
    ck_assert_int_eq(h.calls, 4);
    t2d_store_set_event_hook(g_s, NULL, NULL);
    ASSERT_OK(t2d_store_job_log(g_s, id, "quiet"));
    ck_assert_int_eq(h.calls, 4);
}
END_TEST

enum { N_THREADS = 4, JOBS_PER_THREAD = 15, STEPS = 4 };

typedef struct worker {
    t2d_store *s;
    int index;
    int failures;
    char msg[256];
} worker;

static void *work(void *arg) {
    worker *w = arg;
    char tenant[32];
    snprintf(tenant, sizeof tenant, "tenant%d", w->index);
#define W_CHECK(expr)                                                                                               \
    do {                                                                                                            \
        if ((expr) != T2_OK) {                                                                                      \
            w->failures++;                                                                                          \
            snprintf(w->msg, sizeof w->msg, "%s: %s", #expr, t2d_store_errmsg());                                  \
        }                                                                                                           \
    } while (0)
    for (int i = 0; i < JOBS_PER_THREAD; i++) {
        t2d_job j;
        t2d_job_init(&j);
        j.tenant = tenant;
        j.kind = "train";
        j.settings = "{\"steps\": 4}";
        int64_t id = 0;
        W_CHECK(t2d_store_job_insert(w->s, &j, &id));
        W_CHECK(t2d_store_job_set_state(w->s, id, T2D_JOB_RUNNING, NULL, NULL));
        for (int k = 1; k <= STEPS; k++)
            W_CHECK(t2d_store_job_progress(w->s, id, &(t2d_progress){.step = k, .total = STEPS, .reward = k * 0.1,
                                                                        .accuracy = NAN}));
        W_CHECK(t2d_store_checkpoint_save(w->s, id, STEPS, tenant, strlen(tenant)));
        t2d_job *v;
        size_t n;
        W_CHECK(t2d_store_job_list(w->s, tenant, NULL, 0, &v, &n));
        if (n != (size_t)i + 1) {
            w->failures++;
            snprintf(w->msg, sizeof w->msg, "%s sees %zu jobs after %d inserts", tenant, n, i + 1);
        }
        for (size_t k = 0; k < n; k++)
            if (strcmp(v[k].tenant, tenant) != 0) w->failures++;
        t2d_jobs_free(v, n);
        t2d_tenant_usage u;
        W_CHECK(t2d_store_tenant_usage(w->s, tenant, &u));
        if (u.running != i + 1) w->failures++;
        W_CHECK(t2d_store_kv_put(w->s, tenant, "count", &i, sizeof i));
    }
#undef W_CHECK
    return NULL;
}

START_TEST(test_threads) {
    g_s = open_ok();
    hook_state h = {.mu = PTHREAD_MUTEX_INITIALIZER};
    t2d_store_set_event_hook(g_s, on_event, &h);
    pthread_t th[N_THREADS];
    worker w[N_THREADS];
    for (int i = 0; i < N_THREADS; i++) {
        w[i] = (worker){.s = g_s, .index = i};
        ck_assert_int_eq(pthread_create(&th[i], NULL, work, &w[i]), 0);
    }
    for (int i = 0; i < N_THREADS; i++) {
        pthread_join(th[i], NULL);
        ck_assert_msg(w[i].failures == 0, "thread %d: %d failures, last: %s", i, w[i].failures, w[i].msg);
    }
    int64_t counts[T2D_JOB_N_STATES];
    ASSERT_OK(t2d_store_job_counts(g_s, NULL, counts));
    ck_assert_int_eq(counts[T2D_JOB_RUNNING], N_THREADS * JOBS_PER_THREAD);
    /* every job has its queued, started and STEPS progress events; the hook saw each one */
    t2d_job *v;
    size_t n;
    ASSERT_OK(t2d_store_job_list(g_s, NULL, NULL, 1000, &v, &n));
    ck_assert_uint_eq(n, N_THREADS * JOBS_PER_THREAD);
    for (size_t i = 0; i < n; i++) {
        ck_assert_int_eq(v[i].step, STEPS);
        t2d_job_event *ev;
        size_t ne;
        ASSERT_OK(t2d_store_job_events(g_s, v[i].id, 0, 0, &ev, &ne));
        ck_assert_uint_eq(ne, 2 + STEPS);
        t2d_job_events_free(ev, ne);
    }
    t2d_jobs_free(v, n);
    ck_assert_int_eq(h.calls, N_THREADS * JOBS_PER_THREAD * (2 + STEPS));
    ck_assert_int_eq(h.out_of_order, 0);
    for (int i = 0; i < N_THREADS; i++) {
        char tenant[32];
        snprintf(tenant, sizeof tenant, "tenant%d", i);
        void *val;
        size_t len;
        ASSERT_OK(t2d_store_kv_get(g_s, tenant, "count", &val, &len));
        ck_assert_uint_eq(len, sizeof(int));
        ck_assert_int_eq(*(int *)val, JOBS_PER_THREAD - 1);
        free(val);
    }
}
END_TEST

START_TEST(test_two_connections) {
    /* two stores on one file (say, t2d and an admin tool): each sees the other's commits */
    g_s = open_ok();
    t2d_store *other = open_ok();
    int64_t id = submit(g_s, "alice", "train", 0);
    t2d_job j = get(other, id);
    ck_assert_str_eq(j.tenant, "alice");
    t2d_job_clear(&j);
    ck_assert_int_eq(claim(other, 0, 0), id);
    ck_assert_int_eq(claim(g_s, 0, 0), 0); /* claimed once only */
    t2d_store_close(other);
}
END_TEST

static Suite *store_suite(void) {
    Suite *s = suite_create("store");
    TCase *tc = tcase_create("store");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_open_creates_wal_and_version);
    tcase_add_test(tc, test_open_garbage_is_format_error);
    tcase_add_test(tc, test_open_foreign_sqlite_is_format_error);
    tcase_add_test(tc, test_open_newer_version);
    tcase_add_test(tc, test_open_bad_path);
    tcase_add_test(tc, test_truncated_file);
    tcase_add_test(tc, test_damaged_pages);
    tcase_add_test(tc, test_migrate_from_v1);
    tcase_add_test(tc, test_persistence_across_reopen);
    tcase_add_test(tc, test_job_roundtrip_and_validation);
    tcase_add_test(tc, test_job_list_filters);
    tcase_add_test(tc, test_job_lifecycle_and_events);
    tcase_add_test(tc, test_progress_pruning);
    tcase_add_test(tc, test_cancel);
    tcase_add_test(tc, test_claim_fairness);
    tcase_add_test(tc, test_claim_one_at_a_time_round_robin);
    tcase_add_test(tc, test_claim_priority_and_limits);
    tcase_add_test(tc, test_claim_total_limit);
    tcase_add_test(tc, test_checkpoints);
    tcase_add_test(tc, test_recover);
    tcase_add_test(tc, test_experts_visibility);
    tcase_add_test(tc, test_usage_counts);
    tcase_add_test(tc, test_kv);
    tcase_add_test(tc, test_event_hook);
    tcase_add_test(tc, test_threads);
    tcase_add_test(tc, test_two_connections);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) {
    SRunner *sr = srunner_create(store_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
