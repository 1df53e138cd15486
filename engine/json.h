/* Private JSON helpers over jansson: read a whole file, typed field access with errors that name
 * the file and key. */
#ifndef T2_JSON_H
#define T2_JSON_H

#include <jansson.h>
#include <t2/error.h>

/* Parse the JSON file at path. On failure returns NULL and records the detail.
 * Caller frees with json_decref. */
json_t *t2_json_load_file(const char *path, t2_status *err);

/* Parse len bytes of JSON text; what names the source in errors. Caller frees with json_decref. */
json_t *t2_json_load_buf(const char *buf, size_t len, const char *what, t2_status *err);

/* Integer field: T2_ERR_NOT_FOUND if absent and required, T2_ERR_FORMAT if not an integer. When
 * absent and not required, *out keeps its value. */
t2_status t2_json_int(const json_t *obj, const char *key, int required, const char *what, long long *out);
/* Number field (integer or real), same rules. */
t2_status t2_json_num(const json_t *obj, const char *key, int required, const char *what, double *out);
/* Boolean field, same rules. */
t2_status t2_json_bool(const json_t *obj, const char *key, int required, const char *what, int *out);

#endif
