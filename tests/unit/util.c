#include "util.h"

#include <check.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

char *tu_mkdtemp(void) {
    const char *base = getenv("TMPDIR");
    if (!base || !*base) base = "/tmp";
    size_t n = strlen(base) + 32;
    char *p = malloc(n);
    ck_assert_ptr_nonnull(p);
    snprintf(p, n, "%s/t2unit.XXXXXX", base);
    ck_assert_msg(mkdtemp(p) != NULL, "mkdtemp failed under %s", base);
    return p;
}

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

void tu_rm_rf(const char *path) {
    if (path) nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

char *tu_join(const char *dir, const char *name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    ck_assert_ptr_nonnull(p);
    snprintf(p, n, "%s/%s", dir, name);
    return p;
}

void tu_write_bytes(const char *path, const void *data, size_t len) {
    FILE *f = fopen(path, "wb");
    ck_assert_msg(f != NULL, "cannot create %s", path);
    if (len) ck_assert_uint_eq(fwrite(data, 1, len, f), len);
    ck_assert_int_eq(fclose(f), 0);
}

void tu_write_str(const char *path, const char *s) { tu_write_bytes(path, s, strlen(s)); }

void tu_write_st_raw(const char *path, const char *header, uint64_t hlen_override, const void *data, size_t data_len) {
    size_t hl = strlen(header);
    uint64_t n = hlen_override ? hlen_override : hl;
    size_t total = 8 + hl + data_len;
    unsigned char *buf = malloc(total ? total : 1);
    ck_assert_ptr_nonnull(buf);
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)(n >> (8 * i));
    memcpy(buf + 8, header, hl);
    if (data_len) memcpy(buf + 8 + hl, data, data_len);
    tu_write_bytes(path, buf, total);
    free(buf);
}

uint64_t tu_next(tu_rng *r) {
    uint64_t x = r->s ? r->s : 0x9e3779b97f4a7c15ull;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    r->s = x;
    return x * 0x2545f4914f6cdd1dull;
}

float tu_uniform(tu_rng *r) { return (float)((double)(tu_next(r) >> 11) * 0x1.0p-53 * 2.0 - 1.0); }
