/* Thread pool: a generation counter announces a job; workers that are spinning see it within
 * nanoseconds, sleeping ones are woken through a condition variable. Tasks are claimed from an
 * atomic word holding (generation << 32 | next task), so a worker that is late out of one job can
 * never claim a task of the next: its compare-and-swap fails once the word moved on.
 *
 * A new job first closes the word (CLOSED: no index is below any n_tasks), then writes fn, arg and
 * n_tasks, then opens it at (gen, 0). Without the closing step a late worker holding (g, n_g) could
 * read the new, larger n_tasks and win its compare-and-swap on the still-unchanged word, running a
 * task that does not exist and counting it done, so the job would end one task early. fn and arg
 * are only read after a successful claim, which happens after the word was opened.
 *
 * The announce/sleep handshake is the store-then-load pattern on (gen, n_sleeping), so both are
 * sequentially consistent atomics. */
#include "pool.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define cpu_relax() _mm_pause()
#else
#define cpu_relax() ((void)0)
#endif

#define CLOSED UINT64_MAX

/* How long an idle worker spins before sleeping. Decode issues jobs every few microseconds. */
#define SPIN_NS 2000000L

struct t2_pool {
    int n_threads;
    pthread_t *threads;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    atomic_uint gen;          /* bumped for each job */
    atomic_int n_sleeping;
    atomic_int park;          /* nonzero: do not spin */
    atomic_int stop;
    /* the current job */
    t2_task_fn fn;
    void *arg;
    atomic_int n_tasks;
    _Atomic uint64_t claim;   /* gen << 32 | next task to claim */
    atomic_int done;          /* tasks finished */
};

typedef struct worker_arg {
    t2_pool *p;
    int id;
} worker_arg;

static long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000L + ts.tv_nsec;
}

static void work(t2_pool *p, unsigned gen, int thread) {
    for (;;) {
        uint64_t c = atomic_load(&p->claim);
        if (c == CLOSED || (unsigned)(c >> 32) != gen || (int)(uint32_t)c >= atomic_load(&p->n_tasks)) return;
        if (!atomic_compare_exchange_weak(&p->claim, &c, c + 1)) continue;
        p->fn(p->arg, (int)(uint32_t)c, thread);
        atomic_fetch_add(&p->done, 1);
    }
}

static void *worker_main(void *a) {
    worker_arg *wa = a;
    t2_pool *p = wa->p;
    int id = wa->id;
    free(wa);
    unsigned seen = atomic_load(&p->gen);
    for (;;) {
        /* spin for a while, then sleep */
        long deadline = 0;
        for (unsigned i = 0; atomic_load(&p->gen) == seen; i++) {
            if (atomic_load(&p->park) || atomic_load(&p->stop)) break;
            if ((i & 255) == 0) {
                long t = now_ns();
                if (!deadline) deadline = t + SPIN_NS;
                else if (t > deadline) break;
            }
            cpu_relax();
        }
        if (atomic_load(&p->gen) == seen) {
            pthread_mutex_lock(&p->mu);
            atomic_fetch_add(&p->n_sleeping, 1);
            while (atomic_load(&p->gen) == seen && !atomic_load(&p->stop)) pthread_cond_wait(&p->cv, &p->mu);
            atomic_fetch_sub(&p->n_sleeping, 1);
            pthread_mutex_unlock(&p->mu);
        }
        if (atomic_load(&p->stop)) return NULL;
        seen = atomic_load(&p->gen);
        work(p, seen, id);
    }
}

t2_pool *t2_pool_new(int n_threads) {
    if (n_threads < 1) n_threads = 1;
    t2_pool *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->n_threads = n_threads;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    p->threads = calloc((size_t)n_threads, sizeof *p->threads);
    if (!p->threads) {
        free(p);
        return NULL;
    }
    for (int i = 1; i < n_threads; i++) {
        worker_arg *wa = malloc(sizeof *wa);
        if (!wa || pthread_create(&p->threads[i], NULL, worker_main, (*wa = (worker_arg){p, i}, wa))) {
            free(wa);
            p->n_threads = i;
            break;
        }
    }
    return p;
}

int t2_pool_threads(const t2_pool *p) { return p->n_threads; }

void t2_pool_run(t2_pool *p, int n_tasks, t2_task_fn fn, void *arg) {
    if (n_tasks <= 0) return;
    if (p->n_threads == 1 || n_tasks == 1) {
        for (int t = 0; t < n_tasks; t++) fn(arg, t, 0);
        return;
    }
    atomic_store(&p->claim, CLOSED);
    p->fn = fn;
    p->arg = arg;
    atomic_store(&p->n_tasks, n_tasks);
    atomic_store(&p->done, 0);
    atomic_store(&p->park, 0);
    unsigned gen = atomic_load(&p->gen) + 1;
    atomic_store(&p->claim, (uint64_t)gen << 32);
    atomic_store(&p->gen, gen);
    if (atomic_load(&p->n_sleeping) > 0) {
        pthread_mutex_lock(&p->mu);
        pthread_cond_broadcast(&p->cv);
        pthread_mutex_unlock(&p->mu);
    }
    work(p, gen, 0);
    while (atomic_load(&p->done) < n_tasks) cpu_relax();
}

void t2_pool_park(t2_pool *p) { atomic_store(&p->park, 1); }

void t2_pool_free(t2_pool *p) {
    if (!p) return;
    atomic_store(&p->stop, 1);
    pthread_mutex_lock(&p->mu);
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    for (int i = 1; i < p->n_threads; i++) pthread_join(p->threads[i], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    free(p->threads);
    free(p);
}
