/* The code grader's sandbox (see sandbox.h for what it guarantees).
 *
 * Everything the two child processes need (paths, argv, environment, limits) is prepared before fork: the
 * grader may run in a multi-threaded host, where a forked child should only make system calls. Setup
 * failures travel back on a close-on-exec status pipe as "ERROR <ns|run> <stage>: <reason>" lines; the
 * intermediate process S reports P's wait status as "STATUS <n>". A failure in a namespace stage makes
 * the parent fall back to the next weaker mode (and remember the mode that works). */
#include "sandbox.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <grp.h>
#include <limits.h>
#include <poll.h>
#include <stdarg.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* snprintf whose truncation is reported (0 fits, -1 cut) instead of warned about at every call site. */
static int fmt(char *buf, size_t n, const char *f, ...) __attribute__((format(printf, 3, 4)));
static int fmt(char *buf, size_t n, const char *f, ...) {
    va_list ap;
    va_start(ap, f);
    int k = vsnprintf(buf, n, f, ap);
    va_end(ap);
    return k >= 0 && (size_t)k < n ? 0 : -1;
}

struct t2g_sandbox {
    t2g_sandbox_cfg cfg;
    char *python, *tmp_dir;
    _Atomic int mode;          /* t2g_isolation settled on; AUTO until a run worked */
    _Atomic int warned[4];
    _Atomic unsigned counter;  /* per-run uid */
    int switch_uid;            /* root that may take the per-run uids (not, e.g., root of a one-uid namespace) */
    int nproc_binds;           /* RLIMIT_NPROC limits this process's own uid (it does not bind uid 0) */
    void (*warn)(void *u, const char *msg);
    void *warn_u;
};

const char *t2g_isolation_name(t2g_isolation i) {
    return i == T2G_ISO_USERNS ? "userns" : i == T2G_ISO_ROOTNS ? "rootns" : i == T2G_ISO_NONE ? "none" : "auto";
}

t2g_sandbox *t2g_sandbox_new(const t2g_sandbox_cfg *cfg, void (*warn)(void *u, const char *msg), void *u) {
    t2g_sandbox *sb = calloc(1, sizeof *sb);
    if (!sb) return NULL;
    sb->cfg = *cfg;
    const char *tmp = cfg->tmp_dir && *cfg->tmp_dir ? cfg->tmp_dir : getenv("TMPDIR");
    sb->python = strdup(cfg->python && *cfg->python ? cfg->python : "/usr/bin/python3");
    sb->tmp_dir = strdup(tmp && *tmp ? tmp : "/tmp");
    if (!sb->python || !sb->tmp_dir) {
        t2g_sandbox_free(sb);
        return NULL;
    }
    sb->cfg.python = sb->python;
    sb->cfg.tmp_dir = sb->tmp_dir;
    sb->warn = warn;
    sb->warn_u = u;
    atomic_store(&sb->mode, cfg->isolation);
    unsigned seed;
    if (getrandom(&seed, sizeof seed, 0) != (ssize_t)sizeof seed) seed = (unsigned)getpid();
    atomic_store(&sb->counter, seed);
    /* can this process switch to an arbitrary uid? (root inside a user namespace that maps one uid cannot) */
    if (geteuid() == 0) {
        pid_t pid = fork();
        if (pid == 0) {
            uid_t u = (uid_t)200000000u;
            _exit(setgroups(0, NULL) == 0 && setresgid(u, u, u) == 0 && setresuid(u, u, u) == 0 ? 0 : 1);
        }
        int ws = 0;
        if (pid > 0)
            while (waitpid(pid, &ws, 0) < 0 && errno == EINTR) {}
        sb->switch_uid = pid > 0 && WIFEXITED(ws) && WEXITSTATUS(ws) == 0;
    }
    /* does RLIMIT_NPROC stop our own uid from forking? (the kernel never applies it to uid 0, which a
     * process can be while seeing another uid inside a user namespace) */
    pid_t pid = fork();
    if (pid == 0) {
        struct rlimit one = {1, 1};
        if (setrlimit(RLIMIT_NPROC, &one) != 0) _exit(1);
        pid_t c = fork();
        if (c == 0) _exit(0);
        if (c > 0) {
            while (waitpid(c, NULL, 0) < 0 && errno == EINTR) {}
            _exit(1);   /* the fork went through: not enforced */
        }
        _exit(0);
    }
    int ws = 0;
    if (pid > 0)
        while (waitpid(pid, &ws, 0) < 0 && errno == EINTR) {}
    sb->nproc_binds = pid > 0 && WIFEXITED(ws) && WEXITSTATUS(ws) == 0;
    return sb;
}

void t2g_sandbox_free(t2g_sandbox *sb) {
    if (!sb) return;
    free(sb->python);
    free(sb->tmp_dir);
    free(sb);
}

t2g_isolation t2g_sandbox_isolation(const t2g_sandbox *sb) { return (t2g_isolation)atomic_load(&sb->mode); }

void t2g_run_clear(t2g_run *r) {
    if (!r) return;
    free(r->out);
    free(r->err);
    free(r->res);
    r->out = r->err = r->res = NULL;
}

/* ---------------- the child side: system calls only ---------------- */

enum { MAXP = 4096, N_ENV = 8 };

typedef struct plan {
    t2g_isolation mode;
    char dir[MAXP], root[MAXP], in[MAXP], work[MAXP], python[MAXP], script[MAXP], in_arg[MAXP];
    char *argv[8];
    char *envp[N_ENV];
    char env[N_ENV][MAXP + 16];
    char tmpfs_opts[128];
    uid_t uid;                 /* the per-run uid (host root) or our own */
    gid_t gid;
    int as_root;
    int no_fork;               /* seccomp refuses new processes (RLIMIT_NPROC cannot bind this uid) */
    struct rlimit cpu, as, nproc, fsize, nofile;
    int fd_in, fd_out, fd_err, fd_res, fd_status;
} plan;

static void say(int fd, const char *what, const char *stage, int err) {
    char buf[400];
    fmt(buf, sizeof buf, "ERROR %s %s: %s\n", what, stage, strerror(err));
    if (write(fd, buf, strlen(buf)) < 0) { /* nothing left to tell */ }
}

__attribute__((noreturn)) static void fail_ns(const plan *p, const char *stage) {
    say(p->fd_status, "ns", stage, errno);
    _exit(125);
}

__attribute__((noreturn)) static void fail_run(const plan *p, const char *stage) {
    say(p->fd_status, "run", stage, errno);
    _exit(125);
}

static int write_text(const char *path, const char *text) {
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    ssize_t n = write(fd, text, strlen(text));
    close(fd);
    return n == (ssize_t)strlen(text) ? 0 : -1;
}

/* Close every descriptor except those in keep[] (n small). */
static void close_except(const int *keep, int n) {
    int sorted[8], m = 0;
    for (int i = 0; i < n && m < 8; i++)
        if (keep[i] >= 0) sorted[m++] = keep[i];
    for (int i = 1; i < m; i++)
        for (int j = i; j > 0 && sorted[j - 1] > sorted[j]; j--) {
            int t = sorted[j];
            sorted[j] = sorted[j - 1];
            sorted[j - 1] = t;
        }
    unsigned lo = 0;
    for (int i = 0; i < m; i++) {
        if ((unsigned)sorted[i] > lo) close_range(lo, (unsigned)sorted[i] - 1, 0);
        lo = (unsigned)sorted[i] + 1;
    }
    close_range(lo, ~0U, 0);
}

/* Bind src read-only onto dst (dst exists). The remount keeps the flags the source mount has, as the
 * kernel demands inside a user namespace. A bind that stays writable is a failure: a program running as
 * the files' owner (uid 0 seen from a one-uid user namespace) could otherwise write to the host's /usr. */
static int bind_ro(const char *src, const char *dst) {
    if (mount(src, dst, NULL, MS_BIND | MS_REC, NULL) != 0) return -1;
    struct statvfs sv;
    unsigned long fl = MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID;
    if (statvfs(src, &sv) == 0) {
        if (sv.f_flag & ST_NODEV) fl |= MS_NODEV;
        if (sv.f_flag & ST_NOEXEC) fl |= MS_NOEXEC;
        if (sv.f_flag & ST_NOATIME) fl |= MS_NOATIME;
        if (sv.f_flag & ST_NODIRATIME) fl |= MS_NODIRATIME;
        if (sv.f_flag & ST_RELATIME) fl |= MS_RELATIME;
    }
    if (mount(NULL, dst, NULL, fl, NULL) != 0 && mount(NULL, dst, NULL, fl | MS_NODEV, NULL) != 0) return -1;
    return 0;
}

/* The new root: a tmpfs with /usr and the /bin, /lib* links or binds, a few devices, /in, /work, /tmp. */
static void setup_root(const plan *p) {
    char a[MAXP + 64], b[MAXP + 64];
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0) fail_ns(p, "make mounts private");
    if (mount("t2sandbox", p->root, "tmpfs", MS_NOSUID | MS_NODEV, p->tmpfs_opts) != 0) fail_ns(p, "mount tmpfs");
    static const char *const dirs[] = {"usr", "in", "work", "tmp", "dev", "etc"};
    for (size_t i = 0; i < sizeof dirs / sizeof *dirs; i++) {
        fmt(a, sizeof a, "%s/%s", p->root, dirs[i]);
        if (mkdir(a, 0755) != 0) fail_ns(p, "mkdir in the new root");
    }
    fmt(a, sizeof a, "%s/usr", p->root);
    if (bind_ro("/usr", a) != 0) fail_ns(p, "bind /usr");
    static const char *const links[] = {"bin", "sbin", "lib", "lib32", "lib64", "libx32"};
    for (size_t i = 0; i < sizeof links / sizeof *links; i++) {
        struct stat st;
        fmt(b, sizeof b, "/%s", links[i]);
        if (lstat(b, &st) != 0) continue;
        fmt(a, sizeof a, "%s/%s", p->root, links[i]);
        if (S_ISLNK(st.st_mode)) {
            char target[MAXP];
            ssize_t n = readlink(b, target, sizeof target - 1);
            if (n <= 0) continue;
            target[n] = 0;
            if (symlink(target, a) != 0) fail_ns(p, "symlink in the new root");
        } else if (S_ISDIR(st.st_mode)) {
            if (mkdir(a, 0755) != 0 || bind_ro(b, a) != 0) fail_ns(p, "bind a library directory");
        }
    }
    static const char *const devs[] = {"null", "zero", "urandom", "random"};
    for (size_t i = 0; i < sizeof devs / sizeof *devs; i++) {
        fmt(a, sizeof a, "%s/dev/%s", p->root, devs[i]);
        fmt(b, sizeof b, "/dev/%s", devs[i]);
        int fd = open(a, O_WRONLY | O_CREAT | O_CLOEXEC, 0666);
        if (fd >= 0) close(fd);
        if (mount(b, a, NULL, MS_BIND, NULL) != 0) unlink(a);   /* best effort: Python does not need them */
    }
    fmt(a, sizeof a, "%s/in", p->root);
    if (bind_ro(p->in, a) != 0) fail_ns(p, "bind the input directory");
    fmt(a, sizeof a, "%s/tmp", p->root);
    if (chmod(a, 01777) != 0) fail_ns(p, "chmod /tmp");
    fmt(a, sizeof a, "%s/work", p->root);
    if (p->mode == T2G_ISO_ROOTNS && chown(a, p->uid, p->gid) != 0) fail_ns(p, "chown /work");
    if (chdir(p->root) != 0) fail_ns(p, "chdir to the new root");
    if (chroot(".") != 0) fail_ns(p, "chroot");
    if (chdir("/work") != 0) fail_ns(p, "chdir /work");
}

static void drop_to_uid(const plan *p) {
    if (!p->as_root) return;
    if (setgroups(0, NULL) != 0 || setresgid(p->gid, p->gid, p->gid) != 0 || setresuid(p->uid, p->uid, p->uid) != 0)
        fail_run(p, "drop to the sandbox uid");
    /* a uid change makes the process non-dumpable, which leaves /proc/self (uid_map) owned by root */
    prctl(PR_SET_DUMPABLE, 1, 0, 0, 0);
}

/* Refuse fork, vfork and clone without CLONE_THREAD with EAGAIN (Python raises BlockingIOError, as at
 * an NPROC limit); clone3 answers ENOSYS so that thread creation falls back to clone, whose flags a filter
 * can read. Threads stay allowed. */
static int deny_fork(void) {
#if defined(__x86_64__)
#define T2G_AUDIT_ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define T2G_AUDIT_ARCH AUDIT_ARCH_AARCH64
#endif
#ifdef T2G_AUDIT_ARCH
    struct sock_filter f[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, T2G_AUDIT_ARCH, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),   /* another ABI (x32, i386): not ours */
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
#if defined(__x86_64__)
        BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, 0x40000000u, 0, 1),   /* x32 system calls: refused */
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOSYS),
#endif
#ifdef __NR_fork
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_fork, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EAGAIN),
#endif
#ifdef __NR_vfork
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_vfork, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EAGAIN),
#endif
#ifdef __NR_clone3
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_clone3, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOSYS),
#endif
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_clone, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[0])),
        BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, CLONE_THREAD, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EAGAIN),
    };
    struct sock_fprog prog = {(unsigned short)(sizeof f / sizeof *f), f};
    return prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog, 0, 0);
#else
    errno = ENOSYS;
    return -1;
#endif
}

__attribute__((noreturn)) static void run_p(const plan *p) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (setrlimit(RLIMIT_CPU, &p->cpu) || setrlimit(RLIMIT_AS, &p->as) || setrlimit(RLIMIT_FSIZE, &p->fsize) ||
        setrlimit(RLIMIT_NOFILE, &p->nofile) || setrlimit(RLIMIT_CORE, &(struct rlimit){0, 0}))
        fail_run(p, "setrlimit");
    /* NPROC last: it may fail for an unprivileged user already above it, which is not ours to fix */
    if (setrlimit(RLIMIT_NPROC, &p->nproc) != 0) fail_run(p, "setrlimit NPROC");
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) fail_run(p, "no_new_privs");
    if (p->no_fork && deny_fork() != 0) fail_run(p, "seccomp filter against fork (needed: RLIMIT_NPROC does not bind uid 0)");
    if (dup2(p->fd_in, 0) < 0 || dup2(p->fd_out, 1) < 0 || dup2(p->fd_err, 2) < 0 || dup2(p->fd_res, 3) < 0)
        fail_run(p, "dup2");
    /* the status pipe stays open until exec (close-on-exec) to report a failing exec */
    int st = p->fd_status;
    if (st <= 3) {
        st = fcntl(st, F_DUPFD_CLOEXEC, 4);
        if (st < 0) _exit(125);
    }
    int keep[5] = {0, 1, 2, 3, st};
    close_except(keep, 5);
    signal(SIGPIPE, SIG_DFL);
    execve(p->python, p->argv, p->envp);
    say(st, "run", "exec python", errno);
    _exit(127);
}

/* S's SIGTERM (the parent's wall-clock timeout): kill P; S then cleans up as after any end of P. */
static volatile pid_t s_p_pid;
static void on_term(int sig) {
    (void)sig;
    pid_t p = s_p_pid;
    if (p > 0) kill(p, SIGKILL);
}

__attribute__((noreturn)) static void run_s(plan *p, pid_t host_parent) {
    int keep[5] = {p->fd_in, p->fd_out, p->fd_err, p->fd_res, p->fd_status};
    close_except(keep, 5);
    setsid();
    sigset_t all;
    sigemptyset(&all);
    sigprocmask(SIG_SETMASK, &all, NULL);
    signal(SIGCHLD, SIG_DFL);   /* waitpid needs it, whatever the host set */
    if (p->mode == T2G_ISO_USERNS) {
        drop_to_uid(p);
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != host_parent) _exit(125);
        if (unshare(CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWPID) != 0) fail_ns(p, "unshare");
        char map[64];
        fmt(map, sizeof map, "%u %u 1\n", (unsigned)p->uid, (unsigned)p->uid);
        if (write_text("/proc/self/setgroups", "deny") != 0) fail_ns(p, "write setgroups");
        if (write_text("/proc/self/uid_map", map) != 0) fail_ns(p, "write uid_map");
        fmt(map, sizeof map, "%u %u 1\n", (unsigned)p->gid, (unsigned)p->gid);
        if (write_text("/proc/self/gid_map", map) != 0) fail_ns(p, "write gid_map");
        setup_root(p);
    } else if (p->mode == T2G_ISO_ROOTNS) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != host_parent) _exit(125);
        if (unshare(CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWPID) != 0) fail_ns(p, "unshare");
        setup_root(p);
        drop_to_uid(p);
        prctl(PR_SET_PDEATHSIG, SIGKILL);   /* a uid change clears it */
    } else {
        drop_to_uid(p);
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != host_parent) _exit(125);
        if (chdir(p->work) != 0) fail_run(p, "chdir to the work directory");
    }
    /* S adopts whatever P leaves behind (it matters without namespaces; with them P is pid 1 of its own
     * namespace and the kernel ends the rest with it) */
    prctl(PR_SET_CHILD_SUBREAPER, 1);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_term;
    sigaction(SIGTERM, &sa, NULL);
    pid_t pid = fork();
    if (pid < 0) fail_run(p, "fork");
    if (pid == 0) run_p(p);
    s_p_pid = pid;
    /* S keeps only the status pipe: P's output must reach EOF when P and its children are gone */
    close(p->fd_in);
    close(p->fd_out);
    close(p->fd_err);
    close(p->fd_res);
    int ws = 0;
    for (;;) {
        int st;
        pid_t w = waitpid(-1, &st, 0);
        if (w == pid) {
            ws = st;
            break;
        }
        if (w < 0 && errno != EINTR) _exit(125);
    }
    s_p_pid = 0;
    char buf[64];
    fmt(buf, sizeof buf, "STATUS %d\n", ws);
    if (write(p->fd_status, buf, strlen(buf)) < 0) { /* the parent reads P's fate as unknown */ }
    /* the leftovers: with the per-run uid, everything of that uid but S itself; otherwise S's process group
     * (S included, so after the status is written) */
    if (p->as_root && p->uid != 0 && getuid() == p->uid) {
        /* every leftover is a descendant of S (the subreaper), so it ends up as S's child: kill all of the
         * uid (kill(-1) reports success whenever any process exists, so it cannot tell when to stop), then
         * wait for a child; ECHILD means none is left */
        for (;;) {
            kill(-1, SIGKILL);
            if (waitpid(-1, NULL, 0) < 0 && errno == ECHILD) break;
        }
    } else {
        kill(0, SIGKILL);
    }
    _exit(0);
}

/* ---------------- the parent side ---------------- */

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb;
    (void)ftw;
    if (flag == FTW_DP || flag == FTW_D || flag == FTW_DNR) {
        if (rmdir(path) != 0 && flag == FTW_DNR && chmod(path, 0700) == 0) rmdir(path);
    } else {
        unlink(path);
    }
    return 0;
}

/* Remove a directory tree without following links; a directory the program made unreadable is opened up
 * and the walk repeated. */
static void rm_tree(const char *dir) {
    for (int pass = 0; pass < 3; pass++) {
        nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS | FTW_MOUNT);
        struct stat st;
        if (lstat(dir, &st) != 0) return;
        DIR *d = opendir(dir);
        if (!d) {
            chmod(dir, 0700);
            continue;
        }
        struct dirent *e;
        while ((e = readdir(d))) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
            char sub[MAXP];
            fmt(sub, sizeof sub, "%s/%s", dir, e->d_name);
            chmod(sub, 0700);
        }
        closedir(d);
    }
}

/* Whether a live (not zombie) process other than the caller runs as uid. */
static int uid_has_processes(uid_t uid) {
    DIR *d = opendir("/proc");
    if (!d) return 0;
    int found = 0;
    struct dirent *e;
    while (!found && (e = readdir(d))) {
        char *end;
        long pid = strtol(e->d_name, &end, 10);
        if (*end || pid <= 0 || pid == getpid()) continue;
        char path[64], line[256];
        fmt(path, sizeof path, "/proc/%ld/status", pid);
        FILE *f = fopen(path, "re");
        if (!f) continue;
        int zombie = 0;
        unsigned long ruid = (unsigned long)-1;
        while (fgets(line, sizeof line, f)) {
            if (!strncmp(line, "State:", 6)) zombie = strchr(line, 'Z') != NULL;
            else if (!strncmp(line, "Uid:", 4)) ruid = strtoul(line + 4, NULL, 10);
        }
        fclose(f);
        found = ruid == (unsigned long)uid && !zombie;
    }
    closedir(d);
    return found;
}

/* Kill every process of uid (never 0): a child that takes the uid signals -1, which reaches exactly the
 * processes that uid may signal, i.e. its own; repeated until /proc shows none (at most ~1 s). Only for
 * runs whose S was killed before it could clean up. */
static void reap_uid(uid_t uid, gid_t gid) {
    if (uid == 0 || geteuid() != 0) return;
    pid_t pid = fork();
    if (pid == 0) {
        if (setgroups(0, NULL) != 0 || setresgid(gid, gid, gid) != 0 || setresuid(uid, uid, uid) != 0) _exit(1);
        for (int i = 0; i < 1000; i++) {
            kill(-1, SIGKILL);
            if (!uid_has_processes(uid)) break;
            usleep(1000);
        }
        _exit(0);
    }
    if (pid > 0)
        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {}
}

typedef struct cap_buf {
    char *p;
    size_t n, cap, dropped;
} cap_buf;

static void cap_add(cap_buf *b, const char *data, size_t n) {
    size_t room = b->cap > b->n ? b->cap - b->n : 0;
    size_t take = n < room ? n : room;
    if (take) {
        memcpy(b->p + b->n, data, take);
        b->n += take;
        b->p[b->n] = 0;
    }
    b->dropped += n - take;
}

/* Read what is there; 1 when the pipe reached EOF. */
static int drain(int fd, cap_buf *b) {
    char buf[65536];
    for (;;) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n > 0) {
            cap_add(b, buf, (size_t)n);
            continue;
        }
        if (n == 0) return 1;
        if (errno == EINTR) continue;
        return errno == EAGAIN ? 0 : 1;
    }
}

static int make_pipe(int fds[2]) { return pipe2(fds, O_CLOEXEC); }

static int write_file(const char *dir, const char *name, const char *data) {
    char path[MAXP];
    fmt(path, sizeof path, "%s/%s", dir, name);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) return -1;
    size_t len = strlen(data), off = 0;
    while (off < len) {
        ssize_t n = write(fd, data + off, len - off);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            close(fd);
            return -1;
        }
        off += (size_t)n;
    }
    return close(fd);
}

static void rl(struct rlimit *r, rlim_t soft, rlim_t hard) {
    r->rlim_cur = soft;
    r->rlim_max = hard;
}

/* One attempt in one mode. Returns 0 ran, -1 failed to start, -2 a namespace stage failed (try weaker). */
static int run_once(t2g_sandbox *sb, t2g_isolation mode, const t2g_file *files, int n_files, const char *script,
                    const char *stdin_data, t2g_run *r) {
    const t2g_sandbox_cfg *c = &sb->cfg;
    plan *p = calloc(1, sizeof *p);
    if (!p) {
        fmt(r->error, sizeof r->error, "out of memory");
        return -1;
    }
    int ret = -1;
    int pin[2] = {-1, -1}, pout[2] = {-1, -1}, perr[2] = {-1, -1}, pres[2] = {-1, -1}, pst[2] = {-1, -1};
    cap_buf out = {0}, err = {0}, res = {0}, st = {0};
    pid_t pid = -1;
    int pidfd = -1, hard_killed = 0;

    p->mode = mode;
    if (fmt(p->dir, sizeof p->dir - 16, "%s/t2-sandbox-XXXXXX", sb->tmp_dir) != 0 || !mkdtemp(p->dir)) {
        fmt(r->error, sizeof r->error, "mkdtemp in %s: %s", sb->tmp_dir, strerror(errno));
        free(p);
        return -1;
    }
    fmt(p->root, sizeof p->root, "%s/root", p->dir);
    fmt(p->in, sizeof p->in, "%s/in", p->dir);
    fmt(p->work, sizeof p->work, "%s/work", p->dir);
    p->as_root = geteuid() == 0 && sb->switch_uid;
    /* NPROC not binding our uid means it is uid 0 (the kernel exempts it) */
    int uid0 = !p->as_root && !sb->nproc_binds;
    p->no_fork = sb->cfg.no_fork || uid0;
    if (mode == T2G_ISO_NONE && uid0 && sb->cfg.isolation != T2G_ISO_NONE) {
        /* uid 0 without namespaces owns the host's files: only when "none" was asked for explicitly */
        fmt(r->error, sizeof r->error,
            "no sandbox possible: no namespaces, and the grader runs as uid 0 with no other uid to switch to "
            "(set isolation \"none\" to run untrusted code this way anyway)");
        rmdir(p->dir);
        free(p);
        return -1;
    }
    if (p->as_root) {
        unsigned k = atomic_fetch_add(&sb->counter, 1);
        p->uid = (uid_t)(200000000u + ((((unsigned)getpid() & 0xffffu) << 12) | (k & 0xfffu)));
        p->gid = (gid_t)p->uid;
    } else {
        p->uid = geteuid();
        p->gid = getegid();
    }
    if (chmod(p->dir, 0711) != 0 || mkdir(p->in, 0755) != 0 || mkdir(p->root, 0755) != 0 || mkdir(p->work, 0700) != 0 ||
        (p->as_root && chown(p->work, p->uid, p->gid) != 0)) {
        fmt(r->error, sizeof r->error, "preparing %s: %s", p->dir, strerror(errno));
        goto done;
    }
    for (int i = 0; i < n_files; i++)
        if (strchr(files[i].name, '/') || write_file(p->in, files[i].name, files[i].data) != 0) {
            fmt(r->error, sizeof r->error, "writing %s: %s", files[i].name, strerror(errno));
            goto done;
        }

    const char *in_dir = mode == T2G_ISO_NONE ? p->in : "/in";
    const char *work = mode == T2G_ISO_NONE ? p->work : "/work";
    fmt(p->python, sizeof p->python, "%s", sb->python);
    fmt(p->script, sizeof p->script, "%s/%s", in_dir, script);
    fmt(p->in_arg, sizeof p->in_arg, "%s", in_dir);
    p->argv[0] = p->python;
    p->argv[1] = "-I";
    p->argv[2] = "-B";
    p->argv[3] = p->script;
    p->argv[4] = p->in_arg;
    p->argv[5] = NULL;
    fmt(p->env[0], sizeof p->env[0], "PATH=/usr/bin:/bin");
    fmt(p->env[1], sizeof p->env[1], "HOME=%s", work);
    fmt(p->env[2], sizeof p->env[2], "TMPDIR=%s", mode == T2G_ISO_NONE ? p->work : "/tmp");
    fmt(p->env[3], sizeof p->env[3], "LANG=C.UTF-8");
    fmt(p->env[4], sizeof p->env[4], "PYTHONIOENCODING=utf-8");
    for (int i = 0; i < 5; i++) p->envp[i] = p->env[i];
    p->envp[5] = NULL;
    fmt(p->tmpfs_opts, sizeof p->tmpfs_opts, "size=%ldm,mode=0755,nr_inodes=4096", c->tmpfs_mb);
    rl(&p->cpu, (rlim_t)c->cpu_seconds, (rlim_t)c->cpu_seconds + 1);
    rl(&p->as, (rlim_t)c->memory_mb << 20, (rlim_t)c->memory_mb << 20);
    rl(&p->fsize, (rlim_t)c->fsize_mb << 20, (rlim_t)c->fsize_mb << 20);
    rl(&p->nproc, (rlim_t)c->nproc, (rlim_t)c->nproc);
    rl(&p->nofile, (rlim_t)c->nofile, (rlim_t)c->nofile);

    if (make_pipe(pin) || make_pipe(pout) || make_pipe(perr) || make_pipe(pres) || make_pipe(pst)) {
        fmt(r->error, sizeof r->error, "pipe: %s", strerror(errno));
        goto done;
    }
    /* stdin is written before fork (it fits a pipe buffer), so the parent never writes to a dead child */
    {
        char line[512];
        fmt(line, sizeof line, "%s", stdin_data ? stdin_data : "");
        size_t len = strlen(line);
        if (len && write(pin[1], line, len) != (ssize_t)len) {
            fmt(r->error, sizeof r->error, "writing stdin: %s", strerror(errno));
            goto done;
        }
        close(pin[1]);
        pin[1] = -1;
    }
    p->fd_in = pin[0];
    p->fd_out = pout[1];
    p->fd_err = perr[1];
    p->fd_res = pres[1];
    p->fd_status = pst[1];

    out.cap = err.cap = c->output_bytes;
    res.cap = 4096;
    st.cap = 4096;
    if (!(out.p = malloc(out.cap + 1)) || !(err.p = malloc(err.cap + 1)) || !(res.p = malloc(res.cap + 1)) ||
        !(st.p = malloc(st.cap + 1))) {
        fmt(r->error, sizeof r->error, "out of memory");
        goto done;
    }
    out.p[0] = err.p[0] = res.p[0] = st.p[0] = 0;

    pid_t me = getpid();
    double t0 = now_s();
    pid = fork();
    if (pid < 0) {
        fmt(r->error, sizeof r->error, "fork: %s", strerror(errno));
        goto done;
    }
    if (pid == 0) run_s(p, me);
    close(pin[0]);
    close(pout[1]);
    close(perr[1]);
    close(pres[1]);
    close(pst[1]);
    pin[0] = pout[1] = perr[1] = pres[1] = pst[1] = -1;
    int fds[4] = {pout[0], perr[0], pres[0], pst[0]};
    cap_buf *bufs[4] = {&out, &err, &res, &st};
    int open_[4] = {1, 1, 1, 1};
    for (int i = 0; i < 4; i++) fcntl(fds[i], F_SETFL, O_NONBLOCK);
    pidfd = (int)syscall(SYS_pidfd_open, pid, 0);

    int s_done = 0, timed_out = 0;
    double deadline = t0 + c->wall_seconds, grace_end = 0, kill_at = 0;
    for (;;) {
        struct pollfd pf[5];
        int map[5], n = 0;
        for (int i = 0; i < 4; i++)
            if (open_[i]) {
                pf[n].fd = fds[i];
                pf[n].events = POLLIN;
                map[n++] = i;
            }
        if (!s_done && pidfd >= 0) {
            pf[n].fd = pidfd;
            pf[n].events = POLLIN;
            map[n++] = -1;
        }
        double t = now_s();
        if (!s_done && !timed_out && t >= deadline) {
            /* S kills P and cleans up; if S itself does not end soon, its whole group is killed */
            timed_out = 1;
            kill(pid, SIGTERM);
            kill_at = t + 2.0;
        }
        if (!s_done && timed_out && kill_at > 0 && t >= kill_at) {
            kill(-pid, SIGKILL);
            kill(pid, SIGKILL);
            hard_killed = 1;
            kill_at = 0;
        }
        if (s_done && (n == 0 || t >= grace_end)) break;
        double until = s_done ? grace_end : timed_out ? (kill_at > 0 ? kill_at : t + 0.05) : deadline;
        if (pidfd < 0 && !s_done) until = t + 0.02 < until ? t + 0.02 : until;   /* no pidfd: poll waitpid */
        int ms = (int)((until - t) * 1000) + 1;
        if (ms < 0) ms = 0;
        int k = poll(pf, (nfds_t)n, ms);
        if (k < 0 && errno != EINTR) break;
        for (int i = 0; k > 0 && i < n; i++) {
            if (!pf[i].revents) continue;
            if (map[i] < 0) continue;
            if (drain(fds[map[i]], bufs[map[i]])) open_[map[i]] = 0;
        }
        if (!s_done) {
            int ws;
            pid_t w = waitpid(pid, &ws, WNOHANG);
            if (w == pid) {
                s_done = 1;
                pid = -1;
                /* P and everything in its namespaces are gone; without namespaces, leftovers may hold the
                 * pipes: give them a moment, then they are killed below */
                grace_end = now_s() + (mode == T2G_ISO_NONE ? 0.2 : 2.0);
            }
        }
    }
    r->seconds = now_s() - t0;
    r->timed_out = timed_out;
    for (int i = 0; i < 4; i++)
        if (open_[i]) drain(fds[i], bufs[i]);

    /* S's report */
    r->isolation = mode;
    const char *e = strstr(st.p, "ERROR ");
    if (e) {
        int ns = !strncmp(e, "ERROR ns ", 9);
        const char *nl = strchr(e, '\n');
        fmt(r->error, sizeof r->error, "sandbox setup (%s): %.*s", t2g_isolation_name(mode),
                 (int)(nl ? nl - e - 6 : (long)strlen(e) - 6), e + 6);
        ret = ns ? -2 : -1;
    } else {
        const char *s = strstr(st.p, "STATUS ");
        if (s) {
            int ws = atoi(s + 7);
            if (WIFEXITED(ws)) {
                r->exited = 1;
                r->exit_code = WEXITSTATUS(ws);
            } else if (WIFSIGNALED(ws)) {
                r->signal = WTERMSIG(ws);
            }
        } else if (timed_out) {
            r->signal = SIGKILL;
        }
        ret = 0;
    }

done:
    if (pid > 0) {
        hard_killed = 1;
        kill(-pid, SIGKILL);
        kill(pid, SIGKILL);
        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {}
    }
    if (hard_killed || ret != 0) {
        /* S did not get to clean up: kill what is left of the run's uid (its orphans go to init) */
        reap_uid(p->uid, p->gid);
    }
    if (pidfd >= 0) close(pidfd);
    int all[] = {pin[0], pin[1], pout[0], pout[1], perr[0], perr[1], pres[0], pres[1], pst[0], pst[1]};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++)
        if (all[i] >= 0) close(all[i]);
    rm_tree(p->dir);
    r->out = out.p;
    r->err = err.p;
    r->res = res.p;
    r->out_dropped = out.dropped;
    r->err_dropped = err.dropped;
    free(st.p);
    if (ret != 0) t2g_run_clear(r);
    free(p);
    return ret;
}

int t2g_sandbox_run(t2g_sandbox *sb, const t2g_file *files, int n_files, const char *script, const char *stdin_data,
                    t2g_run *r) {
    memset(r, 0, sizeof *r);
    int mode = atomic_load(&sb->mode);
    t2g_isolation order[3];
    int n = 0;
    if (mode != T2G_ISO_AUTO) order[n++] = (t2g_isolation)mode;
    else {
        order[n++] = T2G_ISO_USERNS;
        if (geteuid() == 0) order[n++] = T2G_ISO_ROOTNS;
        order[n++] = T2G_ISO_NONE;
    }
    char first_error[256] = "";
    for (int i = 0; i < n; i++) {
        memset(r, 0, sizeof *r);
        int rc = run_once(sb, order[i], files, n_files, script, stdin_data, r);
        if (rc == 0) {
            if (sb->cfg.isolation == T2G_ISO_AUTO) {
                int expected = T2G_ISO_AUTO;
                atomic_compare_exchange_strong(&sb->mode, &expected, (int)order[i]);
            }
            return 0;
        }
        if (rc == -1 || i + 1 == n) return -1;
        if (!first_error[0]) fmt(first_error, sizeof first_error, "%s", r->error);
        /* a namespace stage failed: say so once, then try the next weaker mode */
        int next = order[i + 1];
        if (sb->warn && !atomic_exchange(&sb->warned[next], 1)) {
            char msg[600];
            fmt(msg, sizeof msg,
                     "code sandbox: %s isolation unavailable (%s); falling back to %s%s", t2g_isolation_name(order[i]),
                     r->error, t2g_isolation_name((t2g_isolation)next),
                     next == T2G_ISO_NONE ? ": NO network namespace and NO private file system -- untrusted code can "
                                            "reach the network and read the host's world-readable files (every "
                                            "resource limit still applies)"
                                          : "");
            sb->warn(sb->warn_u, msg);
        }
    }
    return -1;
}
