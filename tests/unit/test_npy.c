/* .npy writer: the bytes numpy.load expects (format 1.0): magic, version, little-endian header
 * length, a Python dict literal ending in a newline with the data 64-byte aligned, then the data. */
#include <t2/error.h>
#include <t2/npy.h>

#include "util.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *g_dir;
static void setup(void) { g_dir = tu_mkdtemp(); }
static void teardown(void) {
    tu_rm_rf(g_dir);
    free(g_dir);
}

/* Write prod(shape) floats, read the file back and check every byte; want_shape must appear after "'shape': ". */
static void check_file(const int64_t *shape, int ndim, const char *want_shape) {
    size_t numel = 1;
    for (int d = 0; d < ndim; d++) numel *= (size_t)shape[d];
    float *data = malloc((numel ? numel : 1) * sizeof *data);
    for (size_t i = 0; i < numel; i++) data[i] = (float)i * 0.5f - 3.0f;
    char *p = tu_join(g_dir, "a.npy");
    ck_assert_msg(t2_npy_write_f32(p, data, shape, ndim) == T2_OK, "write: %s", t2_last_error());
    size_t len;
    unsigned char *b = tu_read_file(p, &len);
    ck_assert_uint_ge(len, 10);
    ck_assert_int_eq(memcmp(b, "\x93NUMPY", 6), 0);
    ck_assert_int_eq(b[6], 1);
    ck_assert_int_eq(b[7], 0);
    size_t hlen = (size_t)b[8] | (size_t)b[9] << 8;
    size_t off = 10 + hlen;
    ck_assert_msg(off % 64 == 0, "data offset %zu is not a multiple of 64", off);
    ck_assert_uint_eq(len, off + numel * sizeof(float));
    ck_assert_int_eq(b[off - 1], '\n');
    /* the header is printable ASCII, a dict literal padded with spaces */
    char *hdr = strndup((const char *)b + 10, hlen);
    for (size_t i = 0; i + 1 < hlen; i++) ck_assert_msg(hdr[i] >= 0x20 && hdr[i] < 0x7f, "byte %zu of the header is %#x", i, hdr[i]);
    size_t e = hlen - 1;
    while (e > 0 && hdr[e - 1] == ' ') e--;
    hdr[e] = 0;
    ck_assert_msg(hdr[0] == '{' && hdr[e - 1] == '}', "header is not a dict: %s", hdr);
    ck_assert_ptr_nonnull(strstr(hdr, "'descr': '<f4'"));
    ck_assert_ptr_nonnull(strstr(hdr, "'fortran_order': False"));
    char want[256];
    snprintf(want, sizeof want, "'shape': %s", want_shape);
    ck_assert_msg(strstr(hdr, want) != NULL, "header %s lacks %s", hdr, want);
    ck_assert_int_eq(memcmp(b + off, data, numel * sizeof(float)), 0);
    free(hdr);
    free(b);
    free(p);
    free(data);
}

START_TEST(test_1d) {
    int64_t s[1] = {5};
    check_file(s, 1, "(5,)");   /* numpy needs the trailing comma for a 1-tuple */
}
END_TEST

START_TEST(test_2d) {
    int64_t s[2] = {3, 7};
    /* "(3, 7)" and "(3, 7,)" are the same tuple to Python; accept what numpy itself writes or the
     * trailing-comma form */
    check_file(s, 2, "(3, 7");
    size_t len;
    char *p = tu_join(g_dir, "a.npy");
    unsigned char *b = tu_read_file(p, &len);
    ck_assert_msg(strstr((const char *)b + 10, "(3, 7)") || strstr((const char *)b + 10, "(3, 7,)"), "shape text");
    free(b);
    free(p);
}
END_TEST

START_TEST(test_3d) {
    int64_t s[3] = {2, 3, 4};
    check_file(s, 3, "(2, 3, 4");
}
END_TEST

START_TEST(test_0d) {
    check_file(NULL, 0, "()");
}
END_TEST

START_TEST(test_empty) {
    int64_t s[2] = {0, 4};
    check_file(s, 2, "(0, 4");
}
END_TEST

START_TEST(test_header_lengths) {
    /* every header length lands the data on a 64-byte boundary (shapes with growing digit counts) */
    for (int64_t n = 1; n < 100000; n = n * 10 + 1) {
        int64_t s[1] = {n};
        char want[64];
        snprintf(want, sizeof want, "(%lld,)", (long long)n);
        check_file(s, 1, want);
    }
}
END_TEST

START_TEST(test_bad_path) {
    float x = 1;
    int64_t s[1] = {1};
    char *p = tu_join(g_dir, "missing/dir/a.npy");
    ck_assert_int_eq(t2_npy_write_f32(p, &x, s, 1), T2_ERR_IO);
    ck_assert_ptr_nonnull(strstr(t2_last_error(), "a.npy"));
    free(p);
}
END_TEST

static Suite *suite(void) {
    Suite *s = suite_create("npy");
    TCase *tc = tcase_create("write");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_1d);
    tcase_add_test(tc, test_2d);
    tcase_add_test(tc, test_3d);
    tcase_add_test(tc, test_0d);
    tcase_add_test(tc, test_empty);
    tcase_add_test(tc, test_header_lengths);
    tcase_add_test(tc, test_bad_path);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return tu_run(suite()); }
