/* safetensors: round trips through t2_st_write, sharded folders, and malformed files written byte by
 * byte, each of which must fail with a status and a detail naming the file or tensor. */
#include <t2/error.h>
#include <t2/safetensors.h>

#include "util.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static char *g_dir;

static void setup(void) { g_dir = tu_mkdtemp(); }
static void teardown(void) {
    tu_rm_rf(g_dir);
    free(g_dir);
    g_dir = NULL;
}

/* ---- round trips ---- */

START_TEST(test_roundtrip_dtypes) {
    float a[6] = {1.0f, -2.5f, 3.25f, 0.0f, -0.0f, 1e-30f};
    uint16_t b[4] = {0x3f80, 0xc000, 0x7f80, 0x0001};             /* BF16: 1, -2, inf, tiny */
    uint16_t h[8] = {0x3c00, 0xc000, 0x7bff, 0x0001, 0, 0x8000, 0x7c00, 0x3555};
    float scalar = 42.0f;
    t2_tensor_info t[5] = {
        {.name = "layer.a", .dtype = T2_F32, .ndim = 2, .shape = {2, 3}, .data = a},
        {.name = "layer.b", .dtype = T2_BF16, .ndim = 1, .shape = {4}, .data = b},
        {.name = "layer.h", .dtype = T2_F16, .ndim = 3, .shape = {2, 2, 2}, .data = h},
        {.name = "scalar", .dtype = T2_F32, .ndim = 0, .data = &scalar},
        {.name = "empty", .dtype = T2_F32, .ndim = 2, .shape = {0, 5}, .data = a},
    };
    const char *meta[] = {"format", "pt", "t2.version", "7", NULL};
    char *p = tu_join(g_dir, "rt.safetensors");
    ck_assert_int_eq(t2_st_write(p, t, 5, meta), T2_OK);

    t2_status err = T2_ERR_INTERNAL;
    t2_st *st = t2_st_open(p, &err);
    ck_assert_msg(st != NULL, "open failed: %s", t2_last_error());
    ck_assert_int_eq(err, T2_OK);
    ck_assert_uint_eq(t2_st_count(st), 5);
    ck_assert_uint_eq(t2_st_data_bytes(st), sizeof a + sizeof b + sizeof h + sizeof scalar);
    ck_assert_str_eq(t2_st_meta(st, "format"), "pt");
    ck_assert_str_eq(t2_st_meta(st, "t2.version"), "7");
    ck_assert_ptr_null(t2_st_meta(st, "absent"));
    ck_assert_ptr_null(t2_st_find(st, "absent"));
    ck_assert_ptr_null(t2_st_at(st, 5));

    for (int i = 0; i < 5; i++) {
        /* file order is the order they were written in */
        const t2_tensor_info *ti = t2_st_at(st, (size_t)i);
        ck_assert_ptr_nonnull(ti);
        ck_assert_str_eq(ti->name, t[i].name);
        const t2_tensor_info *f = t2_st_find(st, t[i].name);
        ck_assert_ptr_eq(f, ti);
        ck_assert_int_eq(f->dtype, t[i].dtype);
        ck_assert_int_eq(f->ndim, t[i].ndim);
        size_t numel = 1;
        for (int d = 0; d < f->ndim; d++) {
            ck_assert_int_eq(f->shape[d], t[i].shape[d]);
            numel *= (size_t)f->shape[d];
        }
        ck_assert_uint_eq(f->nbytes, numel * t2_dtype_size(t[i].dtype));
        if (f->nbytes) ck_assert_int_eq(memcmp(f->data, t[i].data, f->nbytes), 0);
    }
    t2_st_free(st);

    /* the writer leaves no temporary files behind */
    char *tmp_glob = tu_join(g_dir, "rt.safetensors.tmp");
    struct stat sb;
    ck_assert_int_ne(stat(tmp_glob, &sb), 0);
    free(tmp_glob);
    free(p);
}
END_TEST

START_TEST(test_roundtrip_no_meta) {
    float a[3] = {1, 2, 3};
    t2_tensor_info t = {.name = "x", .dtype = T2_F32, .ndim = 1, .shape = {3}, .data = a};
    char *p = tu_join(g_dir, "model.safetensors");
    ck_assert_int_eq(t2_st_write(p, &t, 1, NULL), T2_OK);
    t2_status err;
    /* a folder holding model.safetensors opens too */
    t2_st *st = t2_st_open(g_dir, &err);
    ck_assert_msg(st != NULL, "open failed: %s", t2_last_error());
    ck_assert_ptr_null(t2_st_meta(st, "format"));
    const t2_tensor_info *ti = t2_st_find(st, "x");
    ck_assert_ptr_nonnull(ti);
    ck_assert_int_eq(memcmp(ti->data, a, sizeof a), 0);
    t2_st_free(st);
    t2_st_free(NULL);
    free(p);
}
END_TEST

START_TEST(test_hand_written_padded_header) {
    /* what Python's safetensors writes: header padded with spaces, data after it */
    const char *hdr = "{\"__metadata__\":{\"format\":\"pt\"},\"w\":{\"dtype\":\"BF16\",\"shape\":[2],\"data_offsets\":[0,4]}}   ";
    uint16_t d[2] = {0x3f80, 0x4000};
    char *p = tu_join(g_dir, "h.safetensors");
    tu_write_st_raw(p, hdr, 0, d, sizeof d);
    t2_status err;
    t2_st *st = t2_st_open(p, &err);
    ck_assert_msg(st != NULL, "open failed: %s", t2_last_error());
    const t2_tensor_info *ti = t2_st_find(st, "w");
    ck_assert_ptr_nonnull(ti);
    ck_assert_int_eq(ti->dtype, T2_BF16);
    ck_assert_int_eq(memcmp(ti->data, d, 4), 0);
    ck_assert_str_eq(t2_st_meta(st, "format"), "pt");
    t2_st_free(st);
    free(p);
}
END_TEST

/* ---- malformed single files ---- */

typedef struct bad_case {
    const char *what;
    const char *header;       /* NULL: raw bytes below instead */
    uint64_t hlen;            /* 0: strlen(header) */
    size_t data_len;          /* zero bytes of data after the header */
    const char *raw;          /* with header NULL: this many raw bytes ... */
    size_t raw_len;
    t2_status want;
    const char *needle;       /* must appear in the detail, besides the file name */
} bad_case;

static const bad_case s_bad[] = {
    {"empty file", NULL, 0, 0, "", 0, T2_ERR_FORMAT, NULL},
    {"shorter than 8 bytes", NULL, 0, 0, "\x02\x00\x00", 3, T2_ERR_FORMAT, NULL},
    {"exactly 7 bytes", NULL, 0, 0, "\x02\x00\x00\x00\x00\x00\x00", 7, T2_ERR_FORMAT, NULL},
    {"header length larger than file", "{}", 1000, 0, NULL, 0, T2_ERR_FORMAT, "1000"},
    {"header length 2^64-1", "{}", UINT64_MAX, 0, NULL, 0, T2_ERR_FORMAT, NULL},
    {"header length = file size - 7", "{}", 3, 0, NULL, 0, T2_ERR_FORMAT, NULL},
    {"truncated data", "{\"trunc_w\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 0, 8, NULL, 0,
     T2_ERR_FORMAT, "trunc_w"},
    {"offsets beyond data", "{\"far_w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[100,104]}}", 0, 16, NULL, 0,
     T2_ERR_FORMAT, "far_w"},
    {"offsets reversed", "{\"rev_w\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,0]}}", 0, 16, NULL, 0,
     T2_ERR_FORMAT, "rev_w"},
    {"negative offset", "{\"neg_off\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[-1,0]}}", 0, 16, NULL, 0,
     T2_ERR_FORMAT, "neg_off"},
    {"bad header JSON", "{\"a\": {\"dtype\": ", 0, 0, NULL, 0, T2_ERR_FORMAT, NULL},
    {"header of binary garbage", "\x01\x02garbage", 0, 0, NULL, 0, T2_ERR_FORMAT, NULL},
    {"header not an object", "[1, 2, 3]", 0, 0, NULL, 0, T2_ERR_FORMAT, NULL},
    {"header a bare string", "\"hello\"", 0, 0, NULL, 0, T2_ERR_FORMAT, NULL},
    {"duplicate key in header",
     "{\"dup\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},\"dup\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}",
     0, 1, NULL, 0, T2_ERR_FORMAT, "dup"},
    {"unknown dtype Q4", "{\"quant_w\":{\"dtype\":\"Q4\",\"shape\":[2],\"data_offsets\":[0,1]}}", 0, 1, NULL, 0,
     T2_ERR_UNSUPPORTED, "quant_w"},
    {"dtype not a string", "{\"dt_w\":{\"dtype\":4,\"shape\":[1],\"data_offsets\":[0,4]}}", 0, 4, NULL, 0, T2_ERR_FORMAT,
     "dt_w"},
    {"entry not an object", "{\"obj_w\":[1,2]}", 0, 0, NULL, 0, T2_ERR_FORMAT, "obj_w"},
    {"shape/offset mismatch", "{\"mis_w\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,16]}}", 0, 16, NULL, 0,
     T2_ERR_SHAPE, "mis_w"},
    {"shape/offset mismatch (dtype size)", "{\"bf_w\":{\"dtype\":\"BF16\",\"shape\":[4],\"data_offsets\":[0,16]}}", 0, 16,
     NULL, 0, T2_ERR_SHAPE, "bf_w"},
    {"negative shape", "{\"negs_w\":{\"dtype\":\"F32\",\"shape\":[-1,4],\"data_offsets\":[0,16]}}", 0, 16, NULL, 0,
     T2_ERR_FORMAT, "negs_w"},
    {"non-integer shape", "{\"real_w\":{\"dtype\":\"F32\",\"shape\":[2.5],\"data_offsets\":[0,8]}}", 0, 8, NULL, 0,
     T2_ERR_FORMAT, "real_w"},
    {"string shape", "{\"str_w\":{\"dtype\":\"F32\",\"shape\":[\"2\"],\"data_offsets\":[0,8]}}", 0, 8, NULL, 0,
     T2_ERR_FORMAT, "str_w"},
    {"shape not an array", "{\"sna_w\":{\"dtype\":\"F32\",\"shape\":2,\"data_offsets\":[0,8]}}", 0, 8, NULL, 0,
     T2_ERR_FORMAT, "sna_w"},
    {"shape overflows", "{\"big_w\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,16],\"data_offsets\":[0,8]}}", 0,
     8, NULL, 0, T2_ERR_FORMAT, "big_w"},
    {"shape times dtype overflows", "{\"ovf_w\":{\"dtype\":\"F64\",\"shape\":[1073741824,2147483648],\"data_offsets\":[0,8]}}",
     0, 8, NULL, 0, T2_ERR_SHAPE, "ovf_w"},
    {"too many dims", "{\"dims_w\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,1]}}", 0, 1, NULL,
     0, T2_ERR_FORMAT, "dims_w"},
    {"data_offsets arity 1", "{\"ar1_w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", 0, 4, NULL, 0,
     T2_ERR_FORMAT, "ar1_w"},
    {"data_offsets arity 3", "{\"ar3_w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,8]}}", 0, 8, NULL, 0,
     T2_ERR_FORMAT, "ar3_w"},
    {"data_offsets missing", "{\"nooff_w\":{\"dtype\":\"F32\",\"shape\":[1]}}", 0, 4, NULL, 0, T2_ERR_FORMAT, "nooff_w"},
    {"data_offsets not integers", "{\"offr_w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0.0,4.0]}}", 0, 4, NULL,
     0, T2_ERR_FORMAT, "offr_w"},
    {"__metadata__ value not a string", "{\"__metadata__\":{\"version\":1}}", 0, 0, NULL, 0, T2_ERR_FORMAT, "version"},
    {"__metadata__ not an object", "{\"__metadata__\":\"x\"}", 0, 0, NULL, 0, T2_ERR_FORMAT, "__metadata__"},
};

START_TEST(test_bad_file) {
    const bad_case *c = &s_bad[_i];
    char *p = tu_join(g_dir, "bad.safetensors");
    if (c->header) {
        void *zeros = calloc(1, c->data_len ? c->data_len : 1);
        tu_write_st_raw(p, c->header, c->hlen, zeros, c->data_len);
        free(zeros);
    } else {
        tu_write_bytes(p, c->raw, c->raw_len);
    }
    t2_status err = T2_OK;
    t2_st *st = t2_st_open(p, &err);
    ck_assert_msg(st == NULL, "%s: opened", c->what);
    ck_assert_msg(err == c->want, "%s: status %d (%s), want %d; detail: %s", c->what, err, t2_strerror(err), c->want,
                  t2_last_error());
    TU_ASSERT_ERR_HAS("bad.safetensors");
    if (c->needle) TU_ASSERT_ERR_HAS(c->needle);
    free(p);
}
END_TEST

START_TEST(test_missing_path) {
    char *p = tu_join(g_dir, "nope.safetensors");
    t2_status err = T2_OK;
    ck_assert_ptr_null(t2_st_open(p, &err));
    ck_assert_int_eq(err, T2_ERR_IO);
    TU_ASSERT_ERR_HAS("nope.safetensors");
    free(p);
}
END_TEST

START_TEST(test_empty_dir) {
    t2_status err = T2_OK;
    ck_assert_ptr_null(t2_st_open(g_dir, &err));
    ck_assert_int_eq(err, T2_ERR_NOT_FOUND);
    TU_ASSERT_ERR_HAS(g_dir);
    TU_ASSERT_ERR_HAS("model.safetensors");
}
END_TEST

/* ---- shards ---- */

static float s_a[4] = {1, 2, 3, 4}, s_b[2] = {5, 6}, s_c[3] = {7, 8, 9};

static void write_shards(const char *dir, int dup_b) {
    t2_tensor_info one[2] = {
        {.name = "a", .dtype = T2_F32, .ndim = 2, .shape = {2, 2}, .data = s_a},
        {.name = "b", .dtype = T2_F32, .ndim = 1, .shape = {2}, .data = s_b},
    };
    t2_tensor_info two[2] = {
        {.name = "c", .dtype = T2_F32, .ndim = 1, .shape = {3}, .data = s_c},
        {.name = "b", .dtype = T2_F32, .ndim = 1, .shape = {2}, .data = s_b},
    };
    const char *meta[] = {"format", "pt", NULL};
    char *p1 = tu_join(dir, "model-00001-of-00002.safetensors"), *p2 = tu_join(dir, "model-00002-of-00002.safetensors");
    ck_assert_int_eq(t2_st_write(p1, one, 2, meta), T2_OK);
    ck_assert_int_eq(t2_st_write(p2, two, dup_b ? 2 : 1, NULL), T2_OK);
    free(p1);
    free(p2);
}

static void write_index(const char *dir, const char *weight_map) {
    char *p = tu_join(dir, "model.safetensors.index.json");
    char buf[1024];
    snprintf(buf, sizeof buf, "{\"metadata\": {\"total_size\": 36}, \"weight_map\": %s}", weight_map);
    tu_write_str(p, buf);
    free(p);
}

static const char *s_good_map =
    "{\"a\": \"model-00001-of-00002.safetensors\", \"b\": \"model-00001-of-00002.safetensors\","
    " \"c\": \"model-00002-of-00002.safetensors\"}";

START_TEST(test_sharded_ok) {
    write_shards(g_dir, 0);
    write_index(g_dir, s_good_map);
    t2_status err;
    t2_st *st = t2_st_open(g_dir, &err);
    ck_assert_msg(st != NULL, "open failed: %s", t2_last_error());
    ck_assert_uint_eq(t2_st_count(st), 3);
    ck_assert_uint_eq(t2_st_data_bytes(st), sizeof s_a + sizeof s_b + sizeof s_c);
    const t2_tensor_info *a = t2_st_find(st, "a"), *b = t2_st_find(st, "b"), *c = t2_st_find(st, "c");
    ck_assert_ptr_nonnull(a);
    ck_assert_ptr_nonnull(b);
    ck_assert_ptr_nonnull(c);
    ck_assert_int_eq(memcmp(a->data, s_a, sizeof s_a), 0);
    ck_assert_int_eq(memcmp(b->data, s_b, sizeof s_b), 0);
    ck_assert_int_eq(memcmp(c->data, s_c, sizeof s_c), 0);
    ck_assert_int_eq(a->shape[0], 2);
    ck_assert_int_eq(c->shape[0], 3);
    ck_assert_str_eq(t2_st_meta(st, "format"), "pt");
    /* shards in index order */
    ck_assert_str_eq(t2_st_at(st, 2)->name, "c");
    t2_st_free(st);
}
END_TEST

START_TEST(test_sharded_duplicate) {
    write_shards(g_dir, 1);
    write_index(g_dir, s_good_map);
    t2_status err = T2_OK;
    ck_assert_ptr_null(t2_st_open(g_dir, &err));
    ck_assert_int_eq(err, T2_ERR_FORMAT);
    TU_ASSERT_ERR_HAS("\"b\"");
}
END_TEST

START_TEST(test_sharded_listed_missing) {
    write_shards(g_dir, 0);
    write_index(g_dir,
                "{\"a\": \"model-00001-of-00002.safetensors\", \"b\": \"model-00001-of-00002.safetensors\","
                " \"c\": \"model-00002-of-00002.safetensors\", \"ghost.weight\": \"model-00002-of-00002.safetensors\"}");
    t2_status err = T2_OK;
    ck_assert_ptr_null(t2_st_open(g_dir, &err));
    ck_assert_int_eq(err, T2_ERR_NOT_FOUND);
    TU_ASSERT_ERR_HAS("ghost.weight");
    TU_ASSERT_ERR_HAS("model-00002-of-00002.safetensors");
}
END_TEST

START_TEST(test_sharded_wrong_shard) {
    /* the index says "a" lives in shard 2, but shard 2 does not hold it (it is in shard 1) */
    write_shards(g_dir, 0);
    write_index(g_dir,
                "{\"a\": \"model-00002-of-00002.safetensors\", \"b\": \"model-00001-of-00002.safetensors\","
                " \"c\": \"model-00002-of-00002.safetensors\"}");
    t2_status err = T2_OK;
    t2_st *st = t2_st_open(g_dir, &err);
    int opened = st != NULL;
    t2_st_free(st);
    ck_assert_msg(!opened, "index maps \"a\" to a shard that does not hold it, yet the set opened");
    ck_assert_int_eq(err, T2_ERR_NOT_FOUND);
    TU_ASSERT_ERR_HAS("\"a\"");
}
END_TEST

START_TEST(test_sharded_missing_file) {
    write_shards(g_dir, 0);
    write_index(g_dir,
                "{\"a\": \"model-00001-of-00002.safetensors\", \"b\": \"model-00001-of-00002.safetensors\","
                " \"c\": \"model-00002-of-00002.safetensors\", \"d\": \"model-00003-of-00003.safetensors\"}");
    t2_status err = T2_OK;
    ck_assert_ptr_null(t2_st_open(g_dir, &err));
    ck_assert_int_eq(err, T2_ERR_IO);
    TU_ASSERT_ERR_HAS("model-00003-of-00003.safetensors");
}
END_TEST

START_TEST(test_sharded_bad_index) {
    write_shards(g_dir, 0);
    char *p = tu_join(g_dir, "model.safetensors.index.json");
    static const char *bodies[] = {
        "{\"weight_map\": ",                                 /* invalid JSON */
        "{\"metadata\": {}}",                                /* no weight_map */
        "{\"weight_map\": {}}",                              /* empty */
        "{\"weight_map\": {\"a\": 3}}",                      /* not a file name */
        "{\"weight_map\": {\"a\": \"../model-00001-of-00002.safetensors\"}}", /* outside the folder */
    };
    static const t2_status want[] = {T2_ERR_FORMAT, T2_ERR_FORMAT, T2_ERR_FORMAT, T2_ERR_FORMAT, T2_ERR_FORMAT};
    for (size_t i = 0; i < sizeof bodies / sizeof *bodies; i++) {
        tu_write_str(p, bodies[i]);
        t2_status err = T2_OK;
        ck_assert_ptr_null(t2_st_open(g_dir, &err));
        ck_assert_msg(err == want[i], "index %zu: status %d, detail %s", i, err, t2_last_error());
        TU_ASSERT_ERR_HAS("model.safetensors.index.json");
    }
    free(p);
}
END_TEST

START_TEST(test_sharded_bad_shard) {
    /* a malformed shard is named in the error */
    write_shards(g_dir, 0);
    char *p2 = tu_join(g_dir, "model-00002-of-00002.safetensors");
    tu_write_bytes(p2, "\x01\x02", 2);
    write_index(g_dir, s_good_map);
    t2_status err = T2_OK;
    ck_assert_ptr_null(t2_st_open(g_dir, &err));
    ck_assert_int_eq(err, T2_ERR_FORMAT);
    TU_ASSERT_ERR_HAS("model-00002-of-00002.safetensors");
    free(p2);
}
END_TEST

START_TEST(test_write_bad_path) {
    float a = 1;
    t2_tensor_info t = {.name = "x", .dtype = T2_F32, .ndim = 1, .shape = {1}, .data = &a};
    char *p = tu_join(g_dir, "no/such/dir/x.safetensors");
    ck_assert_int_eq(t2_st_write(p, &t, 1, NULL), T2_ERR_IO);
    free(p);
}
END_TEST

START_TEST(test_write_duplicate_name) {
    /* two tensors with one name cannot both be in a header: the writer must refuse, not drop one */
    float a[2] = {1, 2}, b[2] = {3, 4};
    t2_tensor_info t[2] = {
        {.name = "same", .dtype = T2_F32, .ndim = 1, .shape = {2}, .data = a},
        {.name = "same", .dtype = T2_F32, .ndim = 1, .shape = {2}, .data = b},
    };
    char *p = tu_join(g_dir, "dup.safetensors");
    t2_status s = t2_st_write(p, t, 2, NULL);
    free(p);
    ck_assert_msg(s == T2_ERR_INVALID_ARG, "t2_st_write with a duplicate name returned %d (%s)", s, t2_strerror(s));
    ck_assert_ptr_nonnull(strstr(t2_last_error(), "same"));
}
END_TEST

START_TEST(test_dtype_names) {
    ck_assert_str_eq(t2_dtype_name(T2_BF16), "BF16");
    ck_assert_str_eq(t2_dtype_name(T2_F16), "F16");
    ck_assert_uint_eq(t2_dtype_size(T2_F64), 8);
    ck_assert_uint_eq(t2_dtype_size(T2_BOOL), 1);
    ck_assert_uint_eq(t2_dtype_size(T2_DTYPE_COUNT), 0);
}
END_TEST

static Suite *suite(void) {
    Suite *s = suite_create("safetensors");
    TCase *tc = tcase_create("roundtrip");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_roundtrip_dtypes);
    tcase_add_test(tc, test_roundtrip_no_meta);
    tcase_add_test(tc, test_hand_written_padded_header);
    tcase_add_test(tc, test_write_bad_path);
    tcase_add_test(tc, test_write_duplicate_name);
    tcase_add_test(tc, test_dtype_names);
    suite_add_tcase(s, tc);

    tc = tcase_create("malformed");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_loop_test(tc, test_bad_file, 0, (int)(sizeof s_bad / sizeof *s_bad));
    tcase_add_test(tc, test_missing_path);
    tcase_add_test(tc, test_empty_dir);
    suite_add_tcase(s, tc);

    tc = tcase_create("sharded");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_sharded_ok);
    tcase_add_test(tc, test_sharded_duplicate);
    tcase_add_test(tc, test_sharded_listed_missing);
    tcase_add_test(tc, test_sharded_wrong_shard);
    tcase_add_test(tc, test_sharded_missing_file);
    tcase_add_test(tc, test_sharded_bad_index);
    tcase_add_test(tc, test_sharded_bad_shard);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return tu_run(suite()); }
