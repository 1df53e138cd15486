/* sandbox.h — run an untrusted Python program with limits (the code grader's process runner).
 *
 * Each run gets a private temporary directory (removed afterwards) holding the input files, and a fresh
 * process tree:
 *
 *   grader thread ──fork──> S (setsid; namespaces; mounts; chroot) ──fork──> P (limits; exec python3)
 *
 * Isolation, strongest first (T2G_ISO_AUTO tries them in this order and keeps the first that works):
 *   USERNS: S drops to a per-run uid (when the host runs as root), then unshare(CLONE_NEWUSER | NEWNS |
 *           NEWNET | NEWPID): no network (a new, unconfigured network namespace), a new root that is a
 *           size-limited tmpfs holding read-only binds of /usr (and the /bin, /lib* links), /dev/null,
 *           /dev/zero, /dev/urandom, the inputs at /in, a writable /work (the cwd) and /tmp. Nothing else of
 *           the host's files is visible. P is pid 1 of its own pid namespace, so when it ends the kernel
 *           kills whatever it left behind (fork bombs, setsid escapes).
 *   ROOTNS: the same without the user namespace (host root only: when user namespaces are disabled), the
 *           uid dropped after the chroot.
 *   NONE:   no namespaces (logged as a warning by the caller): cwd in the private directory, the per-run
 *           uid when root, every limit below still applied; the network and the host's world-readable
 *           files stay reachable.
 * In every mode P gets setrlimit CPU (soft, SIGXCPU; hard = soft + 1), AS (memory), NPROC, FSIZE, NOFILE
 * and CORE = 0, PR_SET_NO_NEW_PRIVS and PR_SET_PDEATHSIG; the caller enforces a wall-clock timeout and
 * then kills S's process group. With the per-run uid (root hosts) a reaper also kills every process of
 * that uid afterwards, and NPROC counts only this run's processes. Without root, NPROC counts all of the
 * user's processes (a kernel rule), so set it with that in mind. The kernel never applies NPROC to uid 0:
 * when the program would run as uid 0 (root that cannot switch uids, e.g. inside a one-uid user
 * namespace), a seccomp filter refuses fork/vfork/clone of new processes instead (threads still work). */
#ifndef T2G_SANDBOX_H
#define T2G_SANDBOX_H

#include <stddef.h>

typedef enum t2g_isolation {
    T2G_ISO_AUTO = 0,
    T2G_ISO_USERNS = 1,
    T2G_ISO_ROOTNS = 2,
    T2G_ISO_NONE = 3,
} t2g_isolation;

/* "auto", "userns", "rootns", "none". Borrowed, static. */
const char *t2g_isolation_name(t2g_isolation i);

typedef struct t2g_sandbox_cfg {
    const char *python;      /* interpreter on the host (default /usr/bin/python3) */
    const char *tmp_dir;     /* where the private directories are made (default $TMPDIR or /tmp) */
    double wall_seconds;     /* wall-clock timeout of a run */
    int cpu_seconds;         /* RLIMIT_CPU */
    long memory_mb;          /* RLIMIT_AS */
    long fsize_mb;           /* RLIMIT_FSIZE */
    long tmpfs_mb;           /* size of the sandbox's root file system (namespaced modes) */
    int nproc;               /* RLIMIT_NPROC */
    int nofile;              /* RLIMIT_NOFILE */
    size_t output_bytes;     /* stdout and stderr are each kept up to this many bytes */
    t2g_isolation isolation; /* AUTO: the strongest that works on this host */
    int no_fork;             /* refuse new processes (seccomp) even where RLIMIT_NPROC works */
} t2g_sandbox_cfg;

typedef struct t2g_sandbox t2g_sandbox;

/* warn(u, message) is called for fallbacks to weaker isolation (at most once per mode). Returns NULL when
 * out of memory. Caller frees with t2g_sandbox_free. */
t2g_sandbox *t2g_sandbox_new(const t2g_sandbox_cfg *cfg, void (*warn)(void *u, const char *msg), void *u);
void t2g_sandbox_free(t2g_sandbox *sb);

/* The isolation the sandbox settled on (AUTO until the first run). */
t2g_isolation t2g_sandbox_isolation(const t2g_sandbox *sb);

typedef struct t2g_file {
    const char *name;        /* plain file name, no '/' */
    const char *data;        /* NUL-terminated contents */
} t2g_file;

typedef struct t2g_run {
    int timed_out;           /* killed at the wall-clock timeout */
    int exited, exit_code;   /* P exited normally with exit_code */
    int signal;              /* P was killed by this signal (0: not) */
    double seconds;          /* wall time of the run */
    char *out, *err, *res;   /* P's stdout, stderr, and what it wrote to fd 3; owned (t2g_run_clear) */
    size_t out_dropped, err_dropped;   /* bytes beyond output_bytes that were discarded */
    t2g_isolation isolation; /* the mode this run used */
    char error[256];         /* why the run could not start ("" when it ran) */
} t2g_run;

/* Write files into a fresh private directory (visible to the program as in_dir: "/in", or the host path
 * without namespaces), run `python -I -B <in_dir>/<script> <in_dir>` with stdin_data on stdin, and
 * collect the outcome. Returns 0 when the program ran (whatever its fate), -1 when it could not be started
 * (r->error says why). Thread-safe: concurrent runs use separate directories, uids and pipes. */
int t2g_sandbox_run(t2g_sandbox *sb, const t2g_file *files, int n_files, const char *script, const char *stdin_data,
                    t2g_run *r);

/* Release what a run holds. */
void t2g_run_clear(t2g_run *r);

#endif
