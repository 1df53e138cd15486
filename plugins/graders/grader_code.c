/* grader_code — run a completion against the task's tests in the sandbox (sandbox.h).
 *
 * The completion is cut out of its markdown first: with fences, the fenced block that defines the task's
 * entry point (else the longest Python block); a completion that continues a pre-filled "```python" and
 * closes it ("    return x\n```\nExplanation...") keeps the text before the closing fence. Prose around
 * unfenced code is dropped by the runner (code_runner.c), which also joins the code with the task's
 * extra.code_prefix and tests. Pass needs the runner's own report with the run's random nonce: a program
 * that prints "pass" or exits early with status 0 does not pass.
 *
 * Settings (plugin init JSON, all optional): "timeout" (wall-clock seconds, default 10), "cpu_seconds"
 * (default: the timeout rounded up), "memory_mb" (address space, default 1024), "fsize_mb" (largest file,
 * default 16), "tmpfs_mb" (the sandbox's file system, default 64), "nproc" (default 64), "nofile"
 * (default 64), "output_kb" (stdout/stderr kept per stream, default 16), "python" (default
 * /usr/bin/python3), "tmp_dir" (default $TMPDIR or /tmp), "isolation" ("auto", "userns", "rootns" or
 * "none"; default auto: the strongest the host allows, with a logged warning when it has to fall back to
 * no namespaces), "no_fork" (default false: true refuses every new process, not only beyond nproc).
 * Unknown keys are an error, so that a misspelt limit is not silently ignored. */
#include "code_runner.h"
#include "gradelib.h"
#include "sandbox.h"

#include <ctype.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>

typedef struct code_state {
    const t2_host_api *api;
    t2g_sandbox_cfg cfg;
    t2g_sandbox *sb;
} code_state;

/* ---------------- settings ---------------- */

static t2_status num_setting(const t2_host_api *api, json_t *o, const char *key, double lo, double hi, double *out) {
    json_t *v = json_object_get(o, key);
    if (!v) return T2_OK;
    if (!json_is_number(v) || json_number_value(v) < lo || json_number_value(v) > hi) {
        if (api && api->log) api->log(NULL, T2_LOG_ERROR, "grader code: setting \"%s\" must be a number in [%g, %g]", key, lo, hi);
        return T2_ERR_FORMAT;
    }
    *out = json_number_value(v);
    return T2_OK;
}

static void log_warn(void *u, const char *msg) {
    const t2_host_api *api = u;
    if (api && api->log) api->log(NULL, T2_LOG_WARN, "grader code: %s", msg);
}

static t2_status init(const t2_host_api *api, const char *config, void **state) {
    json_t *o;
    t2_status s = t2g_settings(api, "code", config, &o);
    if (s) return s;
    static const char *const known[] = {"timeout", "cpu_seconds", "memory_mb", "fsize_mb", "tmpfs_mb", "nproc",
                                        "nofile", "output_kb", "python", "tmp_dir", "isolation", "no_fork", NULL};
    const char *k;
    json_t *val;
    json_object_foreach(o, k, val) {
        int ok = 0;
        for (int i = 0; known[i]; i++) ok |= !strcmp(k, known[i]);
        if (!ok) {
            if (api && api->log) api->log(NULL, T2_LOG_ERROR, "grader code: unknown setting \"%s\"", k);
            json_decref(o);
            return T2_ERR_FORMAT;
        }
    }
    double timeout = 10, cpu = -1, mem = 1024, fsize = 16, tmpfs = 64, nproc = 64, nofile = 64, outkb = 16;
    if ((s = num_setting(api, o, "timeout", 0.1, 3600, &timeout)) || (s = num_setting(api, o, "cpu_seconds", 1, 3600, &cpu)) ||
        (s = num_setting(api, o, "memory_mb", 64, 1 << 20, &mem)) || (s = num_setting(api, o, "fsize_mb", 1, 1 << 20, &fsize)) ||
        (s = num_setting(api, o, "tmpfs_mb", 1, 1 << 20, &tmpfs)) || (s = num_setting(api, o, "nproc", 1, 1 << 20, &nproc)) ||
        (s = num_setting(api, o, "nofile", 8, 1 << 20, &nofile)) || (s = num_setting(api, o, "output_kb", 1, 1 << 16, &outkb))) {
        json_decref(o);
        return s;
    }
    const char *iso = t2g_json_str(o, "isolation");
    t2g_isolation mode = T2G_ISO_AUTO;
    if (iso && !strcmp(iso, "userns")) mode = T2G_ISO_USERNS;
    else if (iso && !strcmp(iso, "rootns")) mode = T2G_ISO_ROOTNS;
    else if (iso && !strcmp(iso, "none")) mode = T2G_ISO_NONE;
    else if (iso && strcmp(iso, "auto")) {
        if (api && api->log) api->log(NULL, T2_LOG_ERROR, "grader code: isolation \"%s\" is not auto, userns, rootns or none", iso);
        json_decref(o);
        return T2_ERR_FORMAT;
    }
    code_state *st = calloc(1, sizeof *st);
    if (!st) {
        json_decref(o);
        return T2_ERR_NOMEM;
    }
    st->api = api;
    st->cfg.python = t2g_json_str(o, "python");
    st->cfg.tmp_dir = t2g_json_str(o, "tmp_dir");
    st->cfg.wall_seconds = timeout;
    st->cfg.cpu_seconds = cpu > 0 ? (int)cpu : (int)ceil(timeout);
    st->cfg.memory_mb = (long)mem;
    st->cfg.fsize_mb = (long)fsize;
    st->cfg.tmpfs_mb = (long)tmpfs;
    st->cfg.nproc = (int)nproc;
    st->cfg.nofile = (int)nofile;
    st->cfg.output_bytes = (size_t)outkb * 1024;
    st->cfg.isolation = mode;
    st->cfg.no_fork = json_is_true(json_object_get(o, "no_fork"));
    if (mode == T2G_ISO_NONE && api && api->log)
        api->log(NULL, T2_LOG_WARN, "grader code: isolation \"none\" set: untrusted code runs without network or file "
                                    "system isolation (resource limits still apply)");
    st->sb = t2g_sandbox_new(&st->cfg, log_warn, (void *)api);   /* copies the strings it keeps */
    st->cfg.python = st->cfg.tmp_dir = NULL;
    json_decref(o);
    if (!st->sb) {
        free(st);
        return T2_ERR_NOMEM;
    }
    *state = st;
    return T2_OK;
}

static void fini(void *state) {
    code_state *st = state;
    if (!st) return;
    t2g_sandbox_free(st->sb);
    free(st);
}

/* ---------------- markdown ---------------- */

typedef struct fence {
    const char *line;      /* start of the fence line */
    const char *next;      /* start of the line after it */
    const char *info;      /* info string ("python") */
    size_t info_len;
} fence;

static int pythonish(const fence *f) {
    return f->info_len == 0 || !strncasecmp(f->info, "py", 2);
}

/* The code of a completion, markdown fences removed. Caller frees. */
static char *extract_code(const char *s, const char *entry) {
    enum { MAXF = 64 };
    fence f[MAXF];
    int nf = 0;
    for (const char *line = s; *line && nf < MAXF;) {
        const char *p = line;
        while (*p == ' ' || *p == '\t') p++;
        const char *eol = strchr(p, '\n');
        const char *next = eol ? eol + 1 : p + strlen(p);
        if (!strncmp(p, "```", 3) || !strncmp(p, "~~~", 3)) {
            const char *i = p + 3;
            while (*i == '`' || *i == '~') i++;
            while (*i == ' ') i++;
            const char *ie = eol ? eol : i + strlen(i);
            while (ie > i && isspace((unsigned char)ie[-1])) ie--;
            f[nf++] = (fence){line, next, i, (size_t)(ie - i)};
        }
        line = next;
    }
    if (nf == 0) return strdup(s);
    /* a pre-filled "```python" continued and closed: the code is what precedes the closing fence */
    int before = 0;
    for (const char *p = s; p < f[0].line; p++)
        if (!isspace((unsigned char)*p)) before = 1;
    if (nf % 2 == 1 && f[0].info_len == 0 && before) return strndup(s, (size_t)(f[0].line - s));
    const char *best = NULL, *best_end = NULL;
    int best_py = 0, best_entry = 0;
    char def[300] = "";
    if (entry && *entry) snprintf(def, sizeof def, "def %s(", entry);
    for (int i = 0; i < nf; i += 2) {
        const char *a = f[i].next, *b = i + 1 < nf ? f[i + 1].line : s + strlen(s);
        if (b < a) b = a;
        int py = pythonish(&f[i]);
        int has_entry = 0;
        if (*def) {
            char *blk = strndup(a, (size_t)(b - a));
            has_entry = blk && strstr(blk, def) != NULL;
            free(blk);
        }
        /* preference: defines the entry point, then Python, then length; the first such block wins */
        int better = !best || (has_entry && !best_entry) ||
                     (has_entry == best_entry && ((py && !best_py) || (py == best_py && !best_entry && b - a > best_end - best)));
        if (better) {
            best = a;
            best_end = b;
            best_py = py;
            best_entry = has_entry;
        }
    }
    return strndup(best, (size_t)(best_end - best));
}

/* ---------------- grading ---------------- */

static const char *last_line(const char *s, char *buf, size_t cap) {
    size_t n = strlen(s);
    while (n && isspace((unsigned char)s[n - 1])) n--;
    size_t a = n;
    while (a && s[a - 1] != '\n') a--;
    snprintf(buf, cap, "%.*s", (int)(n - a), s + a);
    return buf;
}

static t2_status grade(void *state, const t2_task *t, const char *output, t2_verdict *v) {
    code_state *st = state;
    t2_status s = t2g_check_args(t, output, v);
    if (s) return s;
    if (!st) {
        t2g_verdict(v, 0, "", "code grader used without init");
        return T2_ERR_INVALID_ARG;
    }
    if (!t->tests || !*t->tests) {
        t2g_verdict(v, 0, "", "task %s has no tests", t->id ? t->id : "?");
        return T2_ERR_INVALID_ARG;
    }
    json_t *ex = t2g_task_extra(t);
    const char *prefix = ex ? t2g_json_str(ex, "code_prefix") : NULL;
    char *pre = NULL;
    if (prefix && *prefix) {
        size_t n = strlen(prefix);
        if (asprintf(&pre, "%s%s", prefix, prefix[n - 1] == '\n' ? "" : "\n") < 0) pre = NULL;
    } else {
        pre = strdup("");
    }
    json_decref(ex);
    char *code = extract_code(output, t->entry_point);
    unsigned char rnd[16];
    char nonce[40];
    if (getrandom(rnd, sizeof rnd, 0) != (ssize_t)sizeof rnd) {
        for (size_t i = 0; i < sizeof rnd; i++) rnd[i] = (unsigned char)rand();
    }
    for (size_t i = 0; i < sizeof rnd; i++) snprintf(nonce + 2 * i, 3, "%02x", rnd[i]);
    if (!pre || !code) {
        free(pre);
        free(code);
        t2g_verdict(v, 0, "", "out of memory");
        return T2_ERR_NOMEM;
    }
    char stdin_line[64];
    snprintf(stdin_line, sizeof stdin_line, "%s\n", nonce);
    t2g_file files[4] = {
        {"runner.py", t2g_code_runner_py}, {"code.py", code}, {"prefix.py", pre}, {"tests.py", t->tests}};
    t2g_run r;
    int rc = t2g_sandbox_run(st->sb, files, 4, "runner.py", stdin_line, &r);
    free(pre);
    if (rc != 0) {
        t2g_verdict(v, 0, code, "not run: %s", r.error);
        free(code);
        return T2_ERR_IO;
    }

    /* the runner's report: "kind<TAB>message" */
    char kind[32] = "", msg[1024] = "";
    for (const char *line = r.res; line && *line;) {
        const char *tab = strchr(line, '\t'), *eol = strchr(line, '\n');
        if (!eol) eol = line + strlen(line);
        if (tab && tab < eol && !kind[0]) {
            snprintf(kind, sizeof kind, "%.*s", (int)(tab - line), line);
            snprintf(msg, sizeof msg, "%.*s", (int)(eol - tab - 1), tab + 1);
        }
        line = *eol ? eol + 1 : eol;
    }
    const t2g_sandbox_cfg *c = &st->cfg;
    char tail[256];
    if (!strcmp(kind, "pass") && !strcmp(msg, nonce))
        t2g_verdict(v, 1, code, "passed (%.2f s)", r.seconds);
    else if (!strcmp(kind, "pass"))
        t2g_verdict(v, 0, code, "the program claimed a pass without the run's nonce");
    else if (!strcmp(kind, "memory"))
        t2g_verdict(v, 0, code, "memory limit (%ld MiB) exceeded: %s", c->memory_mb, msg);
    else if (!strcmp(kind, "syntax"))
        t2g_verdict(v, 0, code, "syntax error: %s", msg);
    else if (!strcmp(kind, "assertion"))
        t2g_verdict(v, 0, code, "assertion failed: %s", *msg ? msg : "(no message)");
    else if (!strcmp(kind, "exception") && strstr(msg, "File too large"))
        t2g_verdict(v, 0, code, "file size limit (%ld MiB) exceeded: %s", c->fsize_mb, msg);
    else if (!strcmp(kind, "exception") || !strcmp(kind, "exit"))
        t2g_verdict(v, 0, code, "%s%s", !strcmp(kind, "exit") ? "" : "exception: ", msg);
    else if (r.timed_out)
        t2g_verdict(v, 0, code, "timeout: still running after %g s wall clock (killed)", c->wall_seconds);
    else if (r.signal == SIGXCPU || (r.signal == SIGKILL && r.seconds >= c->cpu_seconds))
        t2g_verdict(v, 0, code, "CPU time limit (%d s) exceeded", c->cpu_seconds);
    else if (r.signal == SIGXFSZ)
        t2g_verdict(v, 0, code, "file size limit (%ld MiB) exceeded", c->fsize_mb);
    else if (r.signal)
        t2g_verdict(v, 0, code, "killed by signal %d (%s)%s", r.signal, strsignal(r.signal),
                    r.signal == SIGSEGV ? ": stack overflow or memory limit" : "");
    else
        t2g_verdict(v, 0, code, "ended without a result (exit status %d): %s", r.exit_code,
                    *r.err ? last_line(r.err, tail, sizeof tail) : "no output");
    t2g_run_clear(&r);
    free(code);
    return T2_OK;
}

T2G_DEFINE_GRADER("code", "runs code completions against the task's tests in a sandboxed python3", init, fini, grade)
