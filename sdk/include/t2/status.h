/* t2/status.h — the status codes shared by every T2 component and plugin.
 *
 * Values are part of the ABI: append new codes at the end, never renumber. */
#ifndef T2_STATUS_H
#define T2_STATUS_H

#ifdef __cplusplus
extern "C" {
#endif

typedef enum t2_status {
    T2_OK = 0,
    T2_ERR_INVALID_ARG = -1,   /* a caller passed something out of contract */
    T2_ERR_NOMEM = -2,         /* an allocation failed */
    T2_ERR_IO = -3,            /* open/read/write/mmap failed */
    T2_ERR_FORMAT = -4,        /* a file or message is malformed */
    T2_ERR_UNSUPPORTED = -5,   /* well-formed, but a feature we do not implement */
    T2_ERR_NOT_FOUND = -6,     /* a named thing (tensor, file, key) is missing */
    T2_ERR_SHAPE = -7,         /* a tensor has the wrong shape or dtype */
    T2_ERR_RANGE = -8,         /* an index, token id or position is out of range */
    T2_ERR_FULL = -9,          /* a fixed capacity (KV cache, batch) is exhausted */
    T2_ERR_VERSION = -10,      /* a format or ABI version does not match */
    T2_ERR_INTERNAL = -11,     /* a bug: please report it */
} t2_status;

/* A short, static English description of a status. Never NULL; borrowed, valid forever. */
const char *t2_strerror(t2_status s);

#ifdef __cplusplus
}
#endif
#endif
