/* The schema of t2d's state database, as the list of migrations that build it. A database records its
 * version in PRAGMA user_version and is stamped with PRAGMA application_id = T2D_STORE_APP_ID; opening
 * runs the migrations from its version up to T2D_STORE_SCHEMA_VERSION in one transaction.
 *
 * Rules for whoever changes the schema: never edit a released step, append a new one (and bump
 * T2D_STORE_SCHEMA_VERSION); a step must carry the existing rows over (ALTER TABLE ... ADD COLUMN with a
 * default, or a CREATE + INSERT ... SELECT + DROP + RENAME). */
#include "store_int.h"

/* Version 1: tenants, jobs, job events, checkpoints, experts. */
static const char v1[] =
    "CREATE TABLE tenants ("
    "  id INTEGER PRIMARY KEY,"
    "  name TEXT NOT NULL UNIQUE,"
    "  created REAL NOT NULL,"
    /* The value of the start counter when one of its jobs last started (0: never). The counter is
     * max(last_start) + 1, so the tenant with the smallest value has waited longest: round-robin. */
    "  last_start INTEGER NOT NULL DEFAULT 0"
    ");"
    "CREATE TABLE jobs ("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT,"   /* AUTOINCREMENT: an id is never reused */
    "  tenant_id INTEGER NOT NULL REFERENCES tenants(id),"
    "  kind TEXT NOT NULL CHECK (kind IN ('train', 'eval')),"
    "  state TEXT NOT NULL CHECK (state IN ('queued', 'running', 'done', 'failed', 'cancelled')),"
    "  trainer TEXT NOT NULL DEFAULT '',"
    "  grader TEXT NOT NULL DEFAULT '',"
    "  dataset TEXT NOT NULL DEFAULT '',"
    "  expert TEXT NOT NULL DEFAULT '',"
    "  label TEXT NOT NULL DEFAULT '',"
    "  settings TEXT NOT NULL DEFAULT '',"
    "  dispatch TEXT NOT NULL DEFAULT '',"
    "  mix TEXT NOT NULL DEFAULT '',"
    "  split TEXT NOT NULL DEFAULT '',"
    "  lim INTEGER NOT NULL DEFAULT 0,"
    "  sampling TEXT NOT NULL DEFAULT '',"
    "  priority INTEGER NOT NULL DEFAULT 0,"
    "  step INTEGER NOT NULL DEFAULT 0,"
    "  total INTEGER NOT NULL DEFAULT 0,"
    "  reward REAL,"                            /* NULL: none yet */
    "  accuracy REAL,"
    "  created REAL NOT NULL,"
    "  started REAL,"
    "  finished REAL,"
    "  error TEXT NOT NULL DEFAULT '',"
    "  result TEXT NOT NULL DEFAULT '',"
    "  eta REAL NOT NULL DEFAULT 0,"
    "  cancel_requested INTEGER NOT NULL DEFAULT 0"
    ");"
    "CREATE INDEX jobs_by_state ON jobs (state, tenant_id, priority DESC, id);"
    "CREATE INDEX jobs_by_tenant ON jobs (tenant_id, id);"
    "CREATE TABLE job_events ("
    "  seq INTEGER PRIMARY KEY AUTOINCREMENT,"  /* a watcher's cursor: never reused */
    "  job_id INTEGER NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,"
    "  time REAL NOT NULL,"
    "  type TEXT NOT NULL,"
    "  step INTEGER NOT NULL DEFAULT 0,"
    "  total INTEGER NOT NULL DEFAULT 0,"
    "  reward REAL,"
    "  accuracy REAL,"
    "  message TEXT NOT NULL DEFAULT '',"
    "  eta REAL NOT NULL DEFAULT 0,"
    "  state TEXT NOT NULL"
    ");"
    "CREATE INDEX job_events_by_job ON job_events (job_id, seq);"
    "CREATE TABLE checkpoints ("
    "  job_id INTEGER PRIMARY KEY REFERENCES jobs(id) ON DELETE CASCADE,"
    "  step INTEGER NOT NULL,"
    "  data BLOB NOT NULL,"
    "  saved REAL NOT NULL"
    ");"
    "CREATE TABLE experts ("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  owner_id INTEGER NOT NULL REFERENCES tenants(id),"
    "  name TEXT NOT NULL,"
    "  label TEXT NOT NULL DEFAULT '',"
    "  path TEXT NOT NULL,"
    "  n_params INTEGER NOT NULL DEFAULT 0,"
    "  bytes INTEGER NOT NULL DEFAULT 0,"
    "  created REAL NOT NULL,"
    "  published INTEGER NOT NULL DEFAULT 0,"
    "  meta TEXT NOT NULL DEFAULT '',"
    "  UNIQUE (owner_id, name)"
    ");"
    "CREATE INDEX experts_by_name ON experts (name, published);";

/* Version 2: the plugins' key-value store, and a per-job count of progress events (so that pruning them
 * does not have to count on every step); the count is filled in for the jobs already there. */
static const char v2[] =
    "CREATE TABLE kv ("
    "  tenant_id INTEGER NOT NULL REFERENCES tenants(id),"
    "  key TEXT NOT NULL,"
    "  value BLOB NOT NULL,"
    "  updated REAL NOT NULL,"
    "  PRIMARY KEY (tenant_id, key)"
    ") WITHOUT ROWID;"
    "ALTER TABLE jobs ADD COLUMN progress_events INTEGER NOT NULL DEFAULT 0;"
    "UPDATE jobs SET progress_events ="
    "  (SELECT COUNT(*) FROM job_events e WHERE e.job_id = jobs.id AND e.type = 'progress');";

const char *const t2d_store_migrations[T2D_STORE_SCHEMA_VERSION] = {v1, v2};
