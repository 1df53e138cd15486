/* t2/safetensors.h — memory-mapped safetensors files (one file, or a sharded set with
 * model.safetensors.index.json), and an atomic writer.
 *
 * Format: 8-byte little-endian header length N, N bytes of JSON ({"name": {"dtype", "shape",
 * "data_offsets": [begin, end]}, "__metadata__": {string: string}}), then the raw data; offsets are
 * relative to the first byte after the header. Every field is validated before any tensor is
 * handed out: a truncated file, bad JSON, a header longer than the file, an unknown dtype or a
 * shape that does not match its byte range is an error naming the file and tensor. */
#ifndef T2_SAFETENSORS_H
#define T2_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>
#include <t2/status.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum t2_dtype {
    T2_F32 = 0, T2_F16, T2_BF16, T2_F64, T2_I64, T2_I32, T2_I16, T2_I8, T2_U8, T2_BOOL,
    T2_DTYPE_COUNT
} t2_dtype;

/* Bytes per element. */
size_t t2_dtype_size(t2_dtype t);
/* The safetensors spelling ("F32", "BF16", ...). Borrowed, static. */
const char *t2_dtype_name(t2_dtype t);

#define T2_MAX_DIMS 8

typedef struct t2_tensor_info {
    const char *name;           /* borrowed from the owning t2_st */
    t2_dtype dtype;
    int ndim;
    int64_t shape[T2_MAX_DIMS];
    const void *data;           /* points into the read-only mapping; may be unaligned */
    size_t nbytes;
} t2_tensor_info;

typedef struct t2_st t2_st;

/* Open path: a .safetensors file, or a model folder holding model.safetensors or
 * model.safetensors.index.json (shards). Caller frees with t2_st_free. NULL on failure, with
 * *err set and the detail in t2_last_error(). */
t2_st *t2_st_open(const char *path, t2_status *err);
/* Unmap and free; NULL-safe. Every pointer handed out by this t2_st becomes invalid. */
void t2_st_free(t2_st *st);

/* Number of tensors over all shards. */
size_t t2_st_count(const t2_st *st);
/* Tensor i in file order (shards in index order). Borrowed, valid until t2_st_free. */
const t2_tensor_info *t2_st_at(const t2_st *st, size_t i);
/* Tensor by name, or NULL. Borrowed, valid until t2_st_free. */
const t2_tensor_info *t2_st_find(const t2_st *st, const char *name);
/* A __metadata__ value of the first file, or NULL. Borrowed, valid until t2_st_free. */
const char *t2_st_meta(const t2_st *st, const char *key);
/* Number of __metadata__ entries of the first file, and the i-th key (file order). Borrowed, valid
 * until t2_st_free. */
size_t t2_st_meta_count(const t2_st *st);
const char *t2_st_meta_key(const t2_st *st, size_t i);
/* Total bytes of tensor data over all shards. */
size_t t2_st_data_bytes(const t2_st *st);

/* Write tensors to path atomically (temporary file in the same folder, fsync, rename).
 * meta: NULL or a NULL-terminated list of key, value, key, value, ... strings for __metadata__.
 * Each tensor's data must hold prod(shape) elements of its dtype. */
t2_status t2_st_write(const char *path, const t2_tensor_info *tensors, size_t n, const char *const *meta);

#ifdef __cplusplus
}
#endif
#endif
