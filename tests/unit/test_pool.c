/* Thread pool: every task of every job runs exactly once, on a thread index in range, over many
 * back-to-back jobs of varying size (including fewer tasks than threads), with parking between some. */
#include "pool.h"

#include "util.h"

#include <check.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_TASKS 1000

typedef struct job {
    atomic_int count[MAX_TASKS];
    atomic_int bad_thread;
    atomic_int bad_task;
    int n_threads;
    int n_tasks;
    atomic_int *per_thread;   /* [n_threads] tasks run by each thread */
} job;

static void task_fn(void *arg, int task, int thread) {
    job *j = arg;
    if (thread < 0 || thread >= j->n_threads) atomic_fetch_add(&j->bad_thread, 1);
    else atomic_fetch_add(&j->per_thread[thread], 1);
    if (task < 0 || task >= j->n_tasks) {
        atomic_fetch_add(&j->bad_task, 1);
        return;
    }
    atomic_fetch_add(&j->count[task], 1);
}

/* Run n_jobs jobs on a pool of n_threads, sizes from the rng; park every park_every jobs (0 = never). */
static void stress(int n_threads, int n_jobs, int park_every, uint64_t seed) {
    t2_pool *p = t2_pool_new(n_threads);
    ck_assert_ptr_nonnull(p);
    ck_assert_int_eq(t2_pool_threads(p), n_threads);
    job *j = calloc(1, sizeof *j);
    j->per_thread = calloc((size_t)n_threads, sizeof *j->per_thread);
    j->n_threads = n_threads;
    tu_rng r = {seed};
    int prev_n = 0;
    for (int it = 0; it < n_jobs; it++) {
        int n;
        switch (it % 4) {
        case 0: n = 1 + (int)(tu_next(&r) % (uint64_t)n_threads); break;   /* at most one task per thread */
        case 1: n = 1 + (int)(tu_next(&r) % MAX_TASKS); break;
        case 2: n = 1 + (int)(tu_next(&r) % 16); break;
        default: n = it % 2 ? MAX_TASKS : 2; break;
        }
        for (int t = 0; t < n; t++) atomic_store(&j->count[t], 0);
        j->n_tasks = n;
        t2_pool_run(p, n, task_fn, j);
        /* (plain checks in the loop: a Check assertion costs a write to its pipe even when it passes) */
        for (int t = 0; t < n; t++) {
            int c = atomic_load(&j->count[t]);
            if (c != 1)
                ck_abort_msg("job %d (n_tasks %d after a job of %d, %d threads): task %d ran %d times", it, n, prev_n,
                             n_threads, t, c);
        }
        if (atomic_load(&j->bad_thread) || atomic_load(&j->bad_task))
            ck_abort_msg("job %d: %d calls with a bad thread index, %d with a bad task index", it,
                         atomic_load(&j->bad_thread), atomic_load(&j->bad_task));
        prev_n = n;
        if (park_every && it % park_every == park_every - 1) t2_pool_park(p);
    }
    /* zero tasks: nothing runs */
    j->n_tasks = 0;
    t2_pool_run(p, 0, task_fn, j);
    ck_assert_int_eq(atomic_load(&j->bad_task), 0);
    t2_pool_free(p);
    free(j->per_thread);
    free(j);
}

START_TEST(test_one_thread) { stress(1, 500, 0, 1); }
END_TEST

START_TEST(test_two_threads) { stress(2, 20000, 0, 2); }
END_TEST

START_TEST(test_four_threads) { stress(4, 3000, 0, 3); }
END_TEST

START_TEST(test_oversubscribed) { stress(6, 4000, 0, 6); }
END_TEST

START_TEST(test_park_between) { stress(3, 3000, 7, 4); }
END_TEST

START_TEST(test_park_every_job) { stress(2, 2000, 1, 5); }
END_TEST

START_TEST(test_one_thread_index) {
    /* a pool of one runs everything on the caller, thread 0 */
    t2_pool *p = t2_pool_new(1);
    job *j = calloc(1, sizeof *j);
    j->per_thread = calloc(1, sizeof *j->per_thread);
    j->n_threads = 1;
    j->n_tasks = 100;
    t2_pool_run(p, 100, task_fn, j);
    ck_assert_int_eq(atomic_load(&j->per_thread[0]), 100);
    ck_assert_int_eq(atomic_load(&j->bad_thread), 0);
    t2_pool_free(p);
    free(j->per_thread);
    free(j);
    /* n_threads < 1 is clamped to 1 */
    p = t2_pool_new(0);
    ck_assert_ptr_nonnull(p);
    ck_assert_int_eq(t2_pool_threads(p), 1);
    t2_pool_free(p);
    t2_pool_free(NULL);
}
END_TEST

START_TEST(test_sleeping_workers_wake) {
    /* workers that went to sleep (after the spin period) are woken for the next job */
    t2_pool *p = t2_pool_new(3);
    job *j = calloc(1, sizeof *j);
    j->per_thread = calloc(3, sizeof *j->per_thread);
    j->n_threads = 3;
    for (int it = 0; it < 3; it++) {
        t2_pool_park(p);
        struct timespec ts = {0, 20 * 1000 * 1000};
        nanosleep(&ts, NULL);
        j->n_tasks = 300;
        for (int t = 0; t < 300; t++) atomic_store(&j->count[t], 0);
        t2_pool_run(p, 300, task_fn, j);
        for (int t = 0; t < 300; t++)
            if (atomic_load(&j->count[t]) != 1) ck_abort_msg("task %d ran %d times", t, atomic_load(&j->count[t]));
    }
    t2_pool_free(p);
    free(j->per_thread);
    free(j);
}
END_TEST

static Suite *suite(void) {
    Suite *s = suite_create("pool");
    TCase *tc = tcase_create("run");
    tcase_add_test(tc, test_one_thread);
    tcase_add_test(tc, test_one_thread_index);
    tcase_add_test(tc, test_two_threads);
    tcase_add_test(tc, test_four_threads);
    tcase_add_test(tc, test_oversubscribed);
    tcase_add_test(tc, test_park_between);
    tcase_add_test(tc, test_park_every_job);
    tcase_add_test(tc, test_sleeping_workers_wake);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return tu_run(suite()); }
