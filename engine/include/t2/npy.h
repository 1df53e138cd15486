/* t2/npy.h — write float32 arrays in numpy's .npy format (version 1.0, little-endian, C order). */
#ifndef T2_NPY_H
#define T2_NPY_H

#include <stddef.h>
#include <stdint.h>
#include <t2/status.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Write data (prod(shape) floats) to path, atomically (temporary file + rename). */
t2_status t2_npy_write_f32(const char *path, const float *data, const int64_t *shape, int ndim);

#ifdef __cplusplus
}
#endif
#endif
