#include "json.h"

#include <sys/stat.h>

json_t *t2_json_load_file(const char *path, t2_status *err) {
    json_error_t je;
    json_t *j = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
    if (!j) {
        /* cannot open, or not a file (jansson reads a folder as empty input): I/O; anything else: malformed */
        struct stat sb;
        int io = json_error_code(&je) == json_error_cannot_open_file || stat(path, &sb) != 0 || !S_ISREG(sb.st_mode);
        *err = t2_set_error(io ? T2_ERR_IO : T2_ERR_FORMAT,
                            "%s: %s (line %d, column %d)", path, je.text, je.line, je.column);
        return NULL;
    }
    *err = T2_OK;
    return j;
}

json_t *t2_json_load_buf(const char *buf, size_t len, const char *what, t2_status *err) {
    json_error_t je;
    json_t *j = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &je);
    if (!j) {
        *err = t2_set_error(T2_ERR_FORMAT, "%s: invalid JSON: %s (at byte %d)", what, je.text, je.position);
        return NULL;
    }
    *err = T2_OK;
    return j;
}

static t2_status field(const json_t *obj, const char *key, int required, const char *what, json_t **v) {
    *v = json_object_get(obj, key);
    if (!*v || json_is_null(*v)) {
        *v = NULL;
        return required ? t2_set_error(T2_ERR_NOT_FOUND, "%s: missing field \"%s\"", what, key) : T2_OK;
    }
    return T2_OK;
}

t2_status t2_json_int(const json_t *obj, const char *key, int required, const char *what, long long *out) {
    json_t *v;
    t2_status s = field(obj, key, required, what, &v);
    if (s || !v) return s;
    if (json_is_integer(v)) { *out = json_integer_value(v); return T2_OK; }
    if (json_is_real(v) && json_real_value(v) == (double)(long long)json_real_value(v)) {
        *out = (long long)json_real_value(v);
        return T2_OK;
    }
    return t2_set_error(T2_ERR_FORMAT, "%s: field \"%s\" must be an integer", what, key);
}

t2_status t2_json_num(const json_t *obj, const char *key, int required, const char *what, double *out) {
    json_t *v;
    t2_status s = field(obj, key, required, what, &v);
    if (s || !v) return s;
    if (!json_is_number(v)) return t2_set_error(T2_ERR_FORMAT, "%s: field \"%s\" must be a number", what, key);
    *out = json_number_value(v);
    return T2_OK;
}

t2_status t2_json_bool(const json_t *obj, const char *key, int required, const char *what, int *out) {
    json_t *v;
    t2_status s = field(obj, key, required, what, &v);
    if (s || !v) return s;
    if (!json_is_boolean(v)) return t2_set_error(T2_ERR_FORMAT, "%s: field \"%s\" must be true or false", what, key);
    *out = json_is_true(v);
    return T2_OK;
}
