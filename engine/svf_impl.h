/* Private: what forward.c needs from the SVD cache and adapters. */
#ifndef T2_SVF_IMPL_H
#define T2_SVF_IMPL_H

#include <t2/svf.h>

#include "kernels.h"

/* The matrix adapted for (layer, kind), or -1. */
int t2__svd_index(const t2_svd *s, int layer, int kind);
/* Factors of matrix i: U [m × r], Vt [r × n], in the cache dtype. Borrowed. */
const t2_weight *t2__svd_U(const t2_svd *s, int i);
const t2_weight *t2__svd_Vt(const t2_svd *s, int i);
const t2_model *t2__svd_model(const t2_svd *s);
t2_dtype t2__svd_dtype(const t2_svd *s);

/* The adapter's c vector of matrix i, [rank]. Borrowed. */
const float *t2__adapter_c(const t2_adapter *a, int i);
/* The z' of matrix i the adapter was made from, [rank]. Borrowed. */
const float *t2__adapter_z(const t2_adapter *a, int i);
/* A number unique to this adapter for the life of the process (merged-cache key). */
uint64_t t2__adapter_id(const t2_adapter *a);
const t2_svd *t2__adapter_svd(const t2_adapter *a);

/* Recompose W' = U diag(c) Vt of matrix i into out ([m × n] in dtype, F32 or BF16). */
t2_status t2__svd_recompose(const t2_svd *s, int i, const float *c, t2_dtype dtype, void *out);

#endif
