/* .npy v1.0: magic "\x93NUMPY", version 1.0, a little-endian u16 header length, then a Python
 * dict literal padded with spaces and a newline so that the data starts on a 64-byte boundary. */
#include <t2/npy.h>
#include <t2/error.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

t2_status t2_npy_write_f32(const char *path, const float *data, const int64_t *shape, int ndim) {
    char dict[512];
    size_t numel = 1;
    int o = snprintf(dict, sizeof dict, "{'descr': '<f4', 'fortran_order': False, 'shape': (");
    for (int d = 0; d < ndim; d++) {
        o += snprintf(dict + o, sizeof dict - (size_t)o, "%lld,%s", (long long)shape[d], d + 1 < ndim ? " " : "");
        numel *= (size_t)shape[d];
    }
    o += snprintf(dict + o, sizeof dict - (size_t)o, "), }");
    size_t total = 10 + (size_t)o + 1, pad = (64 - total % 64) % 64;
    size_t hlen = (size_t)o + pad + 1;
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    FILE *f = fopen(tmp, "wb");
    if (!f) return t2_set_error(T2_ERR_IO, "%s: %s", tmp, strerror(errno));
    unsigned char head[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, (unsigned char)(hlen & 0xff), (unsigned char)(hlen >> 8)};
    int ok = fwrite(head, 1, 10, f) == 10 && fwrite(dict, 1, (size_t)o, f) == (size_t)o;
    for (size_t i = 0; ok && i < pad; i++) ok = fputc(' ', f) != EOF;
    ok = ok && fputc('\n', f) != EOF && fwrite(data, sizeof(float), numel, f) == numel;
    if (fclose(f) != 0) ok = 0;
    if (!ok || rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return t2_set_error(T2_ERR_IO, "%s: write failed: %s", path, strerror(e));
    }
    return T2_OK;
}
