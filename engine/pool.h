/* Private: the engine's thread pool. One pool per model, sized to the cores; the caller's thread
 * takes part. Workers spin briefly between jobs (decode issues hundreds of small jobs per token) and
 * sleep otherwise; t2_pool_park sends them to sleep at once, before OpenBLAS takes the cores. */
#ifndef T2_POOL_H
#define T2_POOL_H

typedef struct t2_pool t2_pool;

/* task in [0, n_tasks), thread in [0, n_threads). */
typedef void (*t2_task_fn)(void *arg, int task, int thread);

/* n_threads counts the caller. Caller frees with t2_pool_free. NULL on failure. */
t2_pool *t2_pool_new(int n_threads);
void t2_pool_free(t2_pool *p);
int t2_pool_threads(const t2_pool *p);

/* Run fn for every task, spread over the threads; returns when all are done. Not reentrant: one
 * caller at a time. */
void t2_pool_run(t2_pool *p, int n_tasks, t2_task_fn fn, void *arg);
/* Let the workers sleep now instead of spinning. */
void t2_pool_park(t2_pool *p);

#endif
