/* Private: a context's cache of merged adapted weights W' (see adapter.c). Keys are (adapter id,
 * matrix); an adapter id is never reused, so a freed adapter's entries simply age out. */
#ifndef T2_ADAPTER_CACHE_H
#define T2_ADAPTER_CACHE_H

#include <t2/svf.h>

#include "kernels.h"

typedef struct t2_mcache t2_mcache;

/* Caller frees with t2_mcache_free. NULL when out of memory. */
t2_mcache *t2_mcache_new(size_t budget);
void t2_mcache_free(t2_mcache *c);
/* W' of matrix mat under adapter a, recomposed on first use. Borrowed, valid until the next
 * t2_mcache_get (which may evict it). NULL with *err == T2_OK if the matrix alone exceeds the
 * budget; NULL with *err set on failure. */
const t2_weight *t2_mcache_get(t2_mcache *c, const t2_adapter *a, int mat, t2_status *err);
size_t t2_mcache_used(const t2_mcache *c);

#endif
