/* safetensors reader (mmap, validated) and atomic writer. See t2/safetensors.h. */
#include <t2/safetensors.h>
#include <t2/error.h>

#include "json.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* A header larger than this is refused outright: real headers are well under 1 MB per thousand
 * tensors, and a corrupt length must not make us allocate gigabytes. */
#define MAX_HEADER_BYTES (100u << 20)

static const struct { const char *name; size_t size; } s_dtypes[T2_DTYPE_COUNT] = {
    [T2_F32] = {"F32", 4}, [T2_F16] = {"F16", 2}, [T2_BF16] = {"BF16", 2}, [T2_F64] = {"F64", 8},
    [T2_I64] = {"I64", 8}, [T2_I32] = {"I32", 4}, [T2_I16] = {"I16", 2}, [T2_I8] = {"I8", 1},
    [T2_U8] = {"U8", 1},   [T2_BOOL] = {"BOOL", 1},
};

size_t t2_dtype_size(t2_dtype t) { return (unsigned)t < T2_DTYPE_COUNT ? s_dtypes[t].size : 0; }
const char *t2_dtype_name(t2_dtype t) { return (unsigned)t < T2_DTYPE_COUNT ? s_dtypes[t].name : "?"; }

typedef struct shard {
    char *path;
    void *map;
    size_t size;
} shard;

struct t2_st {
    shard *shards;
    size_t n_shards;
    t2_tensor_info *t;
    size_t n, cap;
    char **names;          /* owned copies, parallel to t */
    size_t *hash;          /* open addressing: index+1, 0 = empty */
    size_t hcap;
    json_t *meta;          /* __metadata__ of the first shard, or NULL */
    size_t data_bytes;
};

static size_t str_hash(const char *s) {
    size_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static t2_status build_hash(t2_st *st) {
    st->hcap = 16;
    while (st->hcap < st->n * 2) st->hcap *= 2;
    st->hash = calloc(st->hcap, sizeof *st->hash);
    if (!st->hash) return t2_set_error(T2_ERR_NOMEM, "safetensors: out of memory");
    for (size_t i = 0; i < st->n; i++) {
        size_t h = str_hash(st->t[i].name) & (st->hcap - 1);
        while (st->hash[h]) {
            if (!strcmp(st->t[st->hash[h] - 1].name, st->t[i].name))
                return t2_set_error(T2_ERR_FORMAT, "safetensors: tensor \"%s\" appears twice", st->t[i].name);
            h = (h + 1) & (st->hcap - 1);
        }
        st->hash[h] = i + 1;
    }
    return T2_OK;
}

const t2_tensor_info *t2_st_find(const t2_st *st, const char *name) {
    if (!st || !name || !st->hcap) return NULL;
    for (size_t h = str_hash(name) & (st->hcap - 1); st->hash[h]; h = (h + 1) & (st->hcap - 1))
        if (!strcmp(st->t[st->hash[h] - 1].name, name)) return &st->t[st->hash[h] - 1];
    return NULL;
}

size_t t2_st_count(const t2_st *st) { return st ? st->n : 0; }
size_t t2_st_meta_count(const t2_st *st) { return st && st->meta ? json_object_size(st->meta) : 0; }

const char *t2_st_meta_key(const t2_st *st, size_t i) {
    const char *k;
    json_t *v;
    size_t j = 0;
    if (!st || !st->meta) return NULL;
    json_object_foreach(st->meta, k, v) if (j++ == i) return k;
    return NULL;
}
const t2_tensor_info *t2_st_at(const t2_st *st, size_t i) { return st && i < st->n ? &st->t[i] : NULL; }
size_t t2_st_data_bytes(const t2_st *st) { return st ? st->data_bytes : 0; }

const char *t2_st_meta(const t2_st *st, const char *key) {
    if (!st || !st->meta) return NULL;
    json_t *v = json_object_get(st->meta, key);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

void t2_st_free(t2_st *st) {
    if (!st) return;
    for (size_t i = 0; i < st->n_shards; i++) {
        if (st->shards[i].map) munmap(st->shards[i].map, st->shards[i].size);
        free(st->shards[i].path);
    }
    for (size_t i = 0; i < st->n; i++) free(st->names[i]);
    free(st->shards);
    free(st->t);
    free(st->names);
    free(st->hash);
    json_decref(st->meta);
    free(st);
}

static int parse_dtype(const char *s, t2_dtype *out) {
    for (int i = 0; i < T2_DTYPE_COUNT; i++)
        if (!strcmp(s, s_dtypes[i].name)) { *out = (t2_dtype)i; return 1; }
    return 0;
}

static t2_status push_tensor(t2_st *st, const char *name, t2_tensor_info *ti) {
    if (st->n == st->cap) {
        size_t nc = st->cap ? st->cap * 2 : 64;
        t2_tensor_info *t = realloc(st->t, nc * sizeof *t);
        if (!t) return t2_set_error(T2_ERR_NOMEM, "safetensors: out of memory");
        st->t = t;
        char **nm = realloc(st->names, nc * sizeof *nm);
        if (!nm) return t2_set_error(T2_ERR_NOMEM, "safetensors: out of memory");
        st->names = nm;
        st->cap = nc;
    }
    st->names[st->n] = strdup(name);
    if (!st->names[st->n]) return t2_set_error(T2_ERR_NOMEM, "safetensors: out of memory");
    ti->name = st->names[st->n];
    st->t[st->n++] = *ti;
    return T2_OK;
}

/* Validate one tensor entry of a header and append it. */
static t2_status parse_entry(t2_st *st, const char *path, const char *name, json_t *e, const uint8_t *data,
                             size_t data_len) {
    if (!json_is_object(e)) return t2_set_error(T2_ERR_FORMAT, "%s: tensor \"%s\": entry is not an object", path, name);
    t2_tensor_info ti = {0};
    json_t *dt = json_object_get(e, "dtype"), *sh = json_object_get(e, "shape"), *off = json_object_get(e, "data_offsets");
    if (!json_is_string(dt)) return t2_set_error(T2_ERR_FORMAT, "%s: tensor \"%s\": missing dtype", path, name);
    if (!parse_dtype(json_string_value(dt), &ti.dtype))
        return t2_set_error(T2_ERR_UNSUPPORTED, "%s: tensor \"%s\": unsupported dtype \"%s\"", path, name, json_string_value(dt));
    if (!json_is_array(sh) || json_array_size(sh) > T2_MAX_DIMS)
        return t2_set_error(T2_ERR_FORMAT, "%s: tensor \"%s\": shape must be an array of at most %d integers", path, name, T2_MAX_DIMS);
    ti.ndim = (int)json_array_size(sh);
    uint64_t numel = 1;
    for (int d = 0; d < ti.ndim; d++) {
        json_t *v = json_array_get(sh, (size_t)d);
        if (!json_is_integer(v) || json_integer_value(v) < 0)
            return t2_set_error(T2_ERR_FORMAT, "%s: tensor \"%s\": shape[%d] is not a non-negative integer", path, name, d);
        ti.shape[d] = json_integer_value(v);
        if (ti.shape[d] && numel > UINT64_MAX / (uint64_t)ti.shape[d])
            return t2_set_error(T2_ERR_FORMAT, "%s: tensor \"%s\": shape overflows", path, name);
        numel *= (uint64_t)ti.shape[d];
    }
    if (!json_is_array(off) || json_array_size(off) != 2 || !json_is_integer(json_array_get(off, 0)) ||
        !json_is_integer(json_array_get(off, 1)))
        return t2_set_error(T2_ERR_FORMAT, "%s: tensor \"%s\": data_offsets must be [begin, end]", path, name);
    json_int_t b = json_integer_value(json_array_get(off, 0)), en = json_integer_value(json_array_get(off, 1));
    if (b < 0 || en < b || (uint64_t)en > data_len)
        return t2_set_error(T2_ERR_FORMAT, "%s: tensor \"%s\": data_offsets [%lld, %lld] outside the %zu data bytes", path,
                            name, (long long)b, (long long)en, data_len);
    size_t es = t2_dtype_size(ti.dtype);
    if (numel > UINT64_MAX / es || numel * es != (uint64_t)(en - b))
        return t2_set_error(T2_ERR_SHAPE, "%s: tensor \"%s\": %s shape needs %llu bytes but data_offsets span %lld", path,
                            name, t2_dtype_name(ti.dtype), (unsigned long long)(numel * es), (long long)(en - b));
    ti.data = data + b;
    ti.nbytes = (size_t)(en - b);
    st->data_bytes += ti.nbytes;
    return push_tensor(st, name, &ti);
}

/* Map one file, validate its header and append its tensors. */
static t2_status open_file(t2_st *st, const char *path) {
    shard *sh = &st->shards[st->n_shards];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return t2_set_error(T2_ERR_IO, "%s: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) < 0) {
        close(fd);
        return t2_set_error(T2_ERR_IO, "%s: %s", path, strerror(errno));
    }
    if (!S_ISREG(sb.st_mode)) {
        close(fd);
        return t2_set_error(T2_ERR_IO, "%s: not a regular file", path);
    }
    sh->path = strdup(path);
    sh->size = (size_t)sb.st_size;
    st->n_shards++;
    if (sh->size < 8) {
        close(fd);
        return t2_set_error(T2_ERR_FORMAT, "%s: truncated: %zu bytes, not even the 8-byte header length", path, sh->size);
    }
    sh->map = mmap(NULL, sh->size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (sh->map == MAP_FAILED) {
        sh->map = NULL;
        return t2_set_error(T2_ERR_IO, "%s: mmap: %s", path, strerror(errno));
    }
    const uint8_t *p = sh->map;
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | p[i];
    if (hlen > sh->size - 8)
        return t2_set_error(T2_ERR_FORMAT, "%s: header length %llu is larger than the file (%zu bytes): truncated or not safetensors",
                            path, (unsigned long long)hlen, sh->size);
    if (hlen > MAX_HEADER_BYTES)
        return t2_set_error(T2_ERR_FORMAT, "%s: header length %llu exceeds the %u-byte limit", path,
                            (unsigned long long)hlen, MAX_HEADER_BYTES);
    t2_status s;
    json_t *h = t2_json_load_buf((const char *)p + 8, (size_t)hlen, path, &s);
    if (!h) return t2_wrap_error(s, "safetensors header: ");
    if (!json_is_object(h)) {
        json_decref(h);
        return t2_set_error(T2_ERR_FORMAT, "%s: header is not a JSON object", path);
    }
    const uint8_t *data = p + 8 + hlen;
    size_t data_len = sh->size - 8 - (size_t)hlen;
    const char *name;
    json_t *e;
    s = T2_OK;
    json_object_foreach(h, name, e) {
        if (!strcmp(name, "__metadata__")) {
            if (!json_is_object(e)) {
                s = t2_set_error(T2_ERR_FORMAT, "%s: __metadata__ is not an object", path);
                break;
            }
            const char *k;
            json_t *v;
            json_object_foreach(e, k, v) if (!json_is_string(v)) {
                s = t2_set_error(T2_ERR_FORMAT, "%s: __metadata__ value \"%s\" is not a string", path, k);
                break;
            }
            if (s) break;
            if (!st->meta) st->meta = json_incref(e);
            continue;
        }
        if ((s = parse_entry(st, path, name, e, data, data_len))) break;
    }
    json_decref(h);
    return s;
}

static int is_dir(const char *p) {
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISDIR(sb.st_mode);
}
static int exists(const char *p) { return access(p, F_OK) == 0; }

/* Sharded set: open every file named by weight_map once, then check each name maps to its file. */
static t2_status open_index(t2_st *st, const char *dir, const char *index_path) {
    t2_status s;
    json_t *idx = t2_json_load_file(index_path, &s);
    if (!idx) return s;
    json_t *wm = json_object_get(idx, "weight_map");
    if (!json_is_object(wm) || json_object_size(wm) == 0) {
        json_decref(idx);
        return t2_set_error(T2_ERR_FORMAT, "%s: missing or empty \"weight_map\"", index_path);
    }
    /* distinct file names, in first-seen order */
    const char **files = calloc(json_object_size(wm), sizeof *files);
    size_t nf = 0;
    const char *k;
    json_t *v;
    s = T2_OK;
    if (!files) s = t2_set_error(T2_ERR_NOMEM, "safetensors: out of memory");
    json_object_foreach(wm, k, v) {
        if (s) break;
        if (!json_is_string(v) || strchr(json_string_value(v), '/')) {
            s = t2_set_error(T2_ERR_FORMAT, "%s: weight_map[\"%s\"] must be a file name in the same folder", index_path, k);
            break;
        }
        size_t j = 0;
        while (j < nf && strcmp(files[j], json_string_value(v))) j++;
        if (j == nf) files[nf++] = json_string_value(v);
    }
    if (!s) {
        st->shards = calloc(nf, sizeof *st->shards);
        if (!st->shards) s = t2_set_error(T2_ERR_NOMEM, "safetensors: out of memory");
    }
    size_t *first = calloc(nf + 1, sizeof *first);   /* tensors of file i: [first[i], first[i+1]) */
    if (!s && !first) s = t2_set_error(T2_ERR_NOMEM, "safetensors: out of memory");
    for (size_t i = 0; !s && i < nf; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        first[i] = st->n;
        s = open_file(st, path);
        first[i + 1] = st->n;
    }
    if (!s) s = build_hash(st);
    json_object_foreach(wm, k, v) {
        if (s) break;
        const t2_tensor_info *ti = t2_st_find(st, k);
        size_t f = 0;
        while (f < nf && strcmp(files[f], json_string_value(v))) f++;
        if (ti && !((size_t)(ti - st->t) >= first[f] && (size_t)(ti - st->t) < first[f + 1])) ti = NULL;
        if (!ti) {
            s = t2_set_error(T2_ERR_NOT_FOUND, "%s: tensor \"%s\" is listed in the index but missing from %s", index_path, k,
                             json_string_value(v));
            break;
        }
    }
    free(first);
    free(files);
    json_decref(idx);
    return s;
}

t2_st *t2_st_open(const char *path, t2_status *err) {
    t2_status s;
    t2_st *st = calloc(1, sizeof *st);
    if (!st) {
        *err = t2_set_error(T2_ERR_NOMEM, "safetensors: out of memory");
        return NULL;
    }
    if (is_dir(path)) {
        char p[4096];
        snprintf(p, sizeof p, "%s/model.safetensors.index.json", path);
        if (exists(p)) {
            s = open_index(st, path, p);
        } else {
            snprintf(p, sizeof p, "%s/model.safetensors", path);
            if (!exists(p)) {
                s = t2_set_error(T2_ERR_NOT_FOUND, "%s: no model.safetensors or model.safetensors.index.json", path);
            } else if (!(st->shards = calloc(1, sizeof *st->shards))) {
                s = t2_set_error(T2_ERR_NOMEM, "safetensors: out of memory");
            } else if (!(s = open_file(st, p))) {
                s = build_hash(st);
            }
        }
    } else {
        st->shards = calloc(1, sizeof *st->shards);
        s = st->shards ? open_file(st, path) : t2_set_error(T2_ERR_NOMEM, "safetensors: out of memory");
        if (!s) s = build_hash(st);
    }
    if (s) {
        t2_st_free(st);
        *err = s;
        return NULL;
    }
    *err = T2_OK;
    return st;
}

/* ---- writer ---- */

static t2_status write_all(int fd, const void *buf, size_t n, const char *path) {
    const char *p = buf;
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            return t2_set_error(T2_ERR_IO, "%s: write: %s", path, strerror(errno));
        }
        p += w;
        n -= (size_t)w;
    }
    return T2_OK;
}

t2_status t2_st_write(const char *path, const t2_tensor_info *tensors, size_t n, const char *const *meta) {
    json_t *h = json_object();
    if (!h) return t2_set_error(T2_ERR_NOMEM, "safetensors: out of memory");
    if (meta && meta[0]) {
        json_t *m = json_object();
        for (size_t i = 0; meta[i] && meta[i + 1]; i += 2) json_object_set_new(m, meta[i], json_string(meta[i + 1]));
        json_object_set_new(h, "__metadata__", m);
    }
    size_t off = 0;
    for (size_t i = 0; i < n; i++) {
        const t2_tensor_info *t = &tensors[i];
        size_t numel = 1;
        json_t *shape = json_array();
        for (int d = 0; d < t->ndim; d++) {
            numel *= (size_t)t->shape[d];
            json_array_append_new(shape, json_integer(t->shape[d]));
        }
        size_t nb = numel * t2_dtype_size(t->dtype);
        json_t *e = json_pack("{s:s, s:o, s:[I,I]}", "dtype", t2_dtype_name(t->dtype), "shape", shape, "data_offsets",
                              (json_int_t)off, (json_int_t)(off + nb));
        if (e && (!strcmp(t->name, "__metadata__") || json_object_get(h, t->name))) {   /* set_new would replace */
            json_decref(e);
            e = NULL;
        }
        if (!e || json_object_set_new(h, t->name, e)) {
            json_decref(h);
            return t2_set_error(T2_ERR_INVALID_ARG, "safetensors: cannot add tensor \"%s\" (duplicate name?)", t->name);
        }
        off += nb;
    }
    char *hs = json_dumps(h, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(h);
    if (!hs) return t2_set_error(T2_ERR_NOMEM, "safetensors: out of memory");
    size_t hl = strlen(hs), padded = (hl + 7) & ~(size_t)7;

    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        free(hs);
        return t2_set_error(T2_ERR_IO, "%s: %s", tmp, strerror(errno));
    }
    uint8_t len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (uint8_t)((uint64_t)padded >> (8 * i));
    t2_status s = write_all(fd, len8, 8, tmp);
    if (!s) s = write_all(fd, hs, hl, tmp);
    for (size_t i = hl; !s && i < padded; i++) s = write_all(fd, " ", 1, tmp);
    free(hs);
    for (size_t i = 0; !s && i < n; i++) {
        size_t numel = 1;
        for (int d = 0; d < tensors[i].ndim; d++) numel *= (size_t)tensors[i].shape[d];
        s = write_all(fd, tensors[i].data, numel * t2_dtype_size(tensors[i].dtype), tmp);
    }
    if (!s && fsync(fd) < 0) s = t2_set_error(T2_ERR_IO, "%s: fsync: %s", tmp, strerror(errno));
    if (close(fd) < 0 && !s) s = t2_set_error(T2_ERR_IO, "%s: close: %s", tmp, strerror(errno));
    if (!s && rename(tmp, path) < 0) s = t2_set_error(T2_ERR_IO, "rename %s -> %s: %s", tmp, path, strerror(errno));
    if (s) {
        unlink(tmp);
        return s;
    }
    /* make the rename durable */
    char dirbuf[4096];
    snprintf(dirbuf, sizeof dirbuf, "%s", path);
    int dfd = open(dirname(dirbuf), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    return T2_OK;
}
