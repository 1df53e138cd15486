/* The dataset object: a growable task array whose strings live in one arena, an id index, the JSON(L)
 * readers every loader uses, spec resolution, and the generic JSONL format (documented in tasks.h). */
#include "tasks_impl.h"

#include <t2/error.h>

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* ---------------- the string arena ---------------- */

struct ds_block {
    ds_block *next;
    size_t used, size;
    char data[];
};

enum { DS_BLOCK = 256 * 1024 };

static char *arena_alloc(t2_dataset *d, size_t len) {
    ds_block *b = d->blocks;
    if (!b || b->size - b->used < len) {
        size_t size = len > DS_BLOCK ? len : DS_BLOCK;
        b = malloc(sizeof *b + size);
        if (!b) return NULL;
        b->used = 0;
        b->size = size;
        if (len > DS_BLOCK / 4 && d->blocks) {   /* a big string gets its own block behind the current one */
            b->next = d->blocks->next;
            d->blocks->next = b;
        } else {
            b->next = d->blocks;
            d->blocks = b;
        }
    }
    char *p = b->data + b->used;
    b->used += len;
    return p;
}

const char *ds_str(t2_dataset *d, const char *s) {
    if (!s || !*s) return "";
    size_t n = strlen(s) + 1;
    char *p = arena_alloc(d, n);
    if (p) memcpy(p, s, n);
    return p;
}

const char *ds_printf(t2_dataset *d, const char *fmt, ...) {
    va_list ap, ap2;
    va_start(ap, fmt);
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *p = n >= 0 ? arena_alloc(d, (size_t)n + 1) : NULL;
    if (p) vsnprintf(p, (size_t)n + 1, fmt, ap2);
    va_end(ap2);
    return p;
}

const char *ds_json(t2_dataset *d, const json_t *v) {
    if (!v) return "{}";
    char *s = json_dumps(v, JSON_COMPACT | JSON_ENSURE_ASCII);
    const char *r = s ? ds_str(d, s) : NULL;
    free(s);
    return r;
}

t2_task *ds_add(t2_dataset *d) {
    if (d->n == d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 256;
        t2_task *t = realloc(d->tasks, cap * sizeof *t);
        if (!t) return NULL;
        d->tasks = t;
        d->cap = cap;
    }
    t2_task *t = &d->tasks[d->n++];
    t->id = t->family = t->label = t->grader = t->question = t->prompt = t->system = "";
    t->answer = t->solution = t->tests = t->entry_point = "";
    t->extra = "{}";
    return t;
}

/* qsort has no context argument: the comparison reads the task array through this thread-local. */
static _Thread_local const t2_task *s_sort_tasks;
static int cmp_id(const void *a, const void *b) {
    return strcmp(s_sort_tasks[*(const size_t *)a].id, s_sort_tasks[*(const size_t *)b].id);
}

t2_status ds_finish(t2_dataset *d, const char *what) {
    free(d->by_id);
    d->by_id = malloc((d->n ? d->n : 1) * sizeof *d->by_id);
    if (!d->by_id) return t2_set_error(T2_ERR_NOMEM, "%s: out of memory", what);
    for (size_t i = 0; i < d->n; i++) {
        const t2_task *t = &d->tasks[i];
        if (!t->id || !t->family || !t->label || !t->grader || !t->question || !t->prompt || !t->system ||
            !t->answer || !t->solution || !t->tests || !t->entry_point || !t->extra)
            return t2_set_error(T2_ERR_NOMEM, "%s: out of memory", what);
        d->by_id[i] = i;
    }
    s_sort_tasks = d->tasks;
    qsort(d->by_id, d->n, sizeof *d->by_id, cmp_id);
    for (size_t i = 1; i < d->n; i++)
        if (!strcmp(d->tasks[d->by_id[i]].id, d->tasks[d->by_id[i - 1]].id))
            return t2_set_error(T2_ERR_FORMAT, "%s: duplicate task id \"%s\"", what, d->tasks[d->by_id[i]].id);
    return T2_OK;
}

/* ---------------- readers ---------------- */

t2_status ds_read_jsonl(const char *path, ds_line_fn fn, void *u) { return ds_read_jsonl_ex(path, fn, NULL, u); }

t2_status ds_read_jsonl_ex(const char *path, ds_line_fn fn, ds_prep_fn prep, void *u) {
    FILE *f = fopen(path, "r");
    if (!f) return t2_set_error(errno == ENOENT ? T2_ERR_NOT_FOUND : T2_ERR_IO, "%s: %s", path, strerror(errno));
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    size_t lineno = 0;
    t2_status s = T2_OK;
    char where[600];
    while (s == T2_OK && (len = getline(&line, &cap, f)) >= 0) {
        lineno++;
        snprintf(where, sizeof where, "%s:%zu", path, lineno);
        size_t k = 0;
        while (k < (size_t)len && (line[k] == ' ' || line[k] == '\t' || line[k] == '\r' || line[k] == '\n')) k++;
        if (k == (size_t)len) continue;
        if (memchr(line, 0, (size_t)len)) {
            s = t2_set_error(T2_ERR_FORMAT, "%s: NUL byte in the line", where);
            break;
        }
        char *alt = NULL;
        if (prep) {
            alt = prep(u, line, (size_t)len, where, &s);
            if (s) break;
        }
        json_error_t je;
        json_t *o = json_loadb(alt ? alt : line, alt ? strlen(alt) : (size_t)len, JSON_REJECT_DUPLICATES, &je);
        free(alt);
        if (!o) {
            s = t2_set_error(T2_ERR_FORMAT, "%s: invalid JSON: %s (column %d)", where, je.text, je.column);
            break;
        }
        if (!json_is_object(o))
            s = t2_set_error(T2_ERR_FORMAT, "%s: not a JSON object", where);
        else
            s = fn(u, o, lineno - 1, where);
        json_decref(o);
    }
    if (s == T2_OK && ferror(f)) s = t2_set_error(T2_ERR_IO, "%s: read error", path);
    free(line);
    fclose(f);
    return s;
}

t2_status ds_read_json_array(const char *path, ds_line_fn fn, void *u) {
    json_error_t je;
    json_t *a = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
    if (!a) {
        struct stat sb;
        if (stat(path, &sb) != 0) return t2_set_error(T2_ERR_NOT_FOUND, "%s: %s", path, strerror(errno));
        return t2_set_error(T2_ERR_FORMAT, "%s: invalid JSON: %s (line %d, column %d)", path, je.text, je.line, je.column);
    }
    t2_status s = T2_OK;
    if (!json_is_array(a)) s = t2_set_error(T2_ERR_FORMAT, "%s: expected a JSON array of objects", path);
    char where[600];
    for (size_t i = 0; s == T2_OK && i < json_array_size(a); i++) {
        json_t *o = json_array_get(a, i);
        snprintf(where, sizeof where, "%s: element %zu", path, i);
        if (!json_is_object(o))
            s = t2_set_error(T2_ERR_FORMAT, "%s: not a JSON object", where);
        else
            s = fn(u, o, i, where);
    }
    json_decref(a);
    return s;
}

t2_status ds_get_str(const json_t *obj, const char *key, int required, int numbers, const char *where, const char **out) {
    static _Thread_local char num[64];
    json_t *v = json_object_get(obj, key);
    *out = "";
    if (!v || json_is_null(v))
        return required ? t2_set_error(T2_ERR_FORMAT, "%s: missing field \"%s\"", where, key) : T2_OK;
    if (json_is_string(v)) {
        if (strlen(json_string_value(v)) != json_string_length(v))
            return t2_set_error(T2_ERR_FORMAT, "%s: field \"%s\" contains a NUL character", where, key);
        *out = json_string_value(v);
        return T2_OK;
    }
    if (numbers && json_is_integer(v)) {
        snprintf(num, sizeof num, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        *out = num;
        return T2_OK;
    }
    if (numbers && json_is_real(v)) {
        snprintf(num, sizeof num, "%.17g", json_real_value(v));
        *out = num;
        return T2_OK;
    }
    return t2_set_error(T2_ERR_FORMAT, "%s: field \"%s\" must be a string%s", where, key, numbers ? " or a number" : "");
}

const char *ds_split_name(ds_split s) {
    return s == DS_TRAIN ? "train" : s == DS_VALIDATION ? "validation" : s == DS_TEST ? "test" : "all";
}

/* ---------------- the generic JSONL format ---------------- */

typedef struct generic_ctx {
    t2_dataset *d;
    ds_split split;
} generic_ctx;

static const char *const s_generic_fields[] = {"id", "prompt", "question", "system", "answer", "solution", "tests",
                                               "entry_point", "grader", "label", "family", "split", "extra", NULL};

static int is_generic_field(const char *k) {
    for (int i = 0; s_generic_fields[i]; i++)
        if (!strcmp(k, s_generic_fields[i])) return 1;
    return 0;
}

static t2_status generic_line(void *u, json_t *o, size_t line, const char *where) {
    generic_ctx *g = u;
    t2_dataset *d = g->d;
    const char *v[12];
    static const char *const keys[12] = {"id", "prompt", "question", "system", "answer", "solution",
                                         "tests", "entry_point", "grader", "label", "family", "split"};
    t2_status s;
    /* id and answer may be numbers; they are read one at a time because ds_get_str's number buffer is shared */
    const char *idv, *ansv;
    if ((s = ds_get_str(o, "id", 0, 1, where, &idv))) return s;
    char idbuf[64];
    snprintf(idbuf, sizeof idbuf, "%s", idv);
    if ((s = ds_get_str(o, "answer", 0, 1, where, &ansv))) return s;
    for (int i = 0; i < 12; i++) {
        if (i == 0 || i == 4) continue;
        if ((s = ds_get_str(o, keys[i], 0, 0, where, &v[i]))) return s;
    }
    const char *split = v[11];
    if (*split && strcmp(split, "train") && strcmp(split, "validation") && strcmp(split, "test"))
        return t2_set_error(T2_ERR_FORMAT, "%s: field \"split\" is \"%s\"; expected train, validation or test", where, split);
    if (g->split != DS_ALL && *split && strcmp(split, ds_split_name(g->split))) return T2_OK;
    if (!*v[1] && !*v[2]) return t2_set_error(T2_ERR_FORMAT, "%s: missing field \"prompt\" (or \"question\")", where);
    if (!*ansv && !*v[6]) return t2_set_error(T2_ERR_FORMAT, "%s: needs \"answer\" or \"tests\"", where);
    json_t *extra = json_object_get(o, "extra");
    if (extra && !json_is_object(extra) && !json_is_null(extra))
        return t2_set_error(T2_ERR_FORMAT, "%s: field \"extra\" must be an object", where);
    json_t *ex = extra && json_is_object(extra) ? json_deep_copy(extra) : json_object();
    const char *k;
    json_t *val;
    json_object_foreach(o, k, val) if (!is_generic_field(k)) json_object_set(ex, k, val);

    t2_task *t = ds_add(d);
    if (!t) {
        json_decref(ex);
        return t2_set_error(T2_ERR_NOMEM, "%s: out of memory", where);
    }
    t->id = *idbuf ? ds_str(d, idbuf) : ds_printf(d, "%zu", line);
    t->prompt = ds_str(d, *v[1] ? v[1] : v[2]);
    t->question = ds_str(d, *v[2] ? v[2] : v[1]);
    t->system = ds_str(d, v[3]);
    t->answer = ds_str(d, ansv);
    t->solution = ds_str(d, v[5]);
    t->tests = ds_str(d, v[6]);
    t->entry_point = ds_str(d, v[7]);
    t->grader = ds_str(d, *v[8] ? v[8] : *v[6] ? "code" : "exact");
    t->label = ds_str(d, v[9]);
    t->family = ds_str(d, *v[10] ? v[10] : "generic");
    t->extra = ds_json(d, ex);
    json_decref(ex);
    return T2_OK;
}

t2_status ds_load_generic(t2_dataset *d, const char *path, ds_split split) {
    generic_ctx g = {d, split};
    return ds_read_jsonl(path, generic_line, &g);
}

/* ---------------- the public API ---------------- */

static int parse_split(const char *s, ds_split *out) {
    if (!s || !strcmp(s, "all")) *out = DS_ALL;
    else if (!strcmp(s, "train")) *out = DS_TRAIN;
    else if (!strcmp(s, "validation") || !strcmp(s, "valid") || !strcmp(s, "dev")) *out = DS_VALIDATION;
    else if (!strcmp(s, "test")) *out = DS_TEST;
    else return -1;
    return 0;
}

t2_status t2_dataset_open(const char *spec, const char *split, const char *data_dir, t2_dataset **out) {
    if (!out) return t2_set_error(T2_ERR_INVALID_ARG, "t2_dataset_open: out is NULL");
    *out = NULL;
    if (!spec || !*spec) return t2_set_error(T2_ERR_INVALID_ARG, "dataset: empty spec");
    ds_split sp;
    if (parse_split(split, &sp))
        return t2_set_error(T2_ERR_INVALID_ARG, "dataset %s: unknown split \"%s\" (train, validation, test or all)", spec, split);

    const ds_known *k = NULL;
    for (const ds_known *e = ds_known_datasets; e->name; e++)
        if (!strcmp(spec, e->name)) k = e;
    struct stat sb;
    if (!k && stat(spec, &sb) != 0) {
        char names[512] = "";
        for (const ds_known *e = ds_known_datasets; e->name; e++) {
            strncat(names, e->name, sizeof names - strlen(names) - 1);
            if (e[1].name) strncat(names, ", ", sizeof names - strlen(names) - 1);
        }
        return t2_set_error(T2_ERR_NOT_FOUND, "dataset \"%s\": not a known name (%s) and not a readable file (%s)", spec,
                            names, strerror(errno));
    }
    if (!k && !S_ISREG(sb.st_mode)) return t2_set_error(T2_ERR_IO, "dataset \"%s\": not a regular file", spec);
    if (k && (!data_dir || !*data_dir)) data_dir = getenv("T2_DATA_DIR");
    if (k && (!data_dir || !*data_dir))
        return t2_set_error(T2_ERR_INVALID_ARG, "dataset %s: no data directory (pass one or set T2_DATA_DIR)", spec);

    t2_dataset *d = calloc(1, sizeof *d);
    if (!d || !(d->name = strdup(spec))) {
        free(d);
        return t2_set_error(T2_ERR_NOMEM, "dataset %s: out of memory", spec);
    }
    t2_status s = k ? k->load(d, data_dir, sp) : ds_load_generic(d, spec, sp);
    if (s == T2_OK && d->n == 0)
        s = t2_set_error(T2_ERR_FORMAT, "dataset %s: no tasks%s%s", spec, sp != DS_ALL ? " in split " : "",
                         sp != DS_ALL ? ds_split_name(sp) : "");
    if (s == T2_OK) s = ds_finish(d, spec);
    if (s != T2_OK) {
        t2_dataset_close(d);
        return s;
    }
    *out = d;
    return T2_OK;
}

size_t t2_dataset_size(const t2_dataset *d) { return d ? d->n : 0; }

const t2_task *t2_dataset_task(const t2_dataset *d, size_t i) { return d && i < d->n ? &d->tasks[i] : NULL; }

const t2_task *t2_dataset_find(const t2_dataset *d, const char *id) {
    if (!d || !id || !d->by_id) return NULL;
    size_t lo = 0, hi = d->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(d->tasks[d->by_id[mid]].id, id);
        if (c == 0) return &d->tasks[d->by_id[mid]];
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

const char *t2_dataset_name(const t2_dataset *d) { return d ? d->name : ""; }

void t2_dataset_close(t2_dataset *d) {
    if (!d) return;
    for (ds_block *b = d->blocks, *nx; b; b = nx) {
        nx = b->next;
        free(b);
    }
    free(d->tasks);
    free(d->by_id);
    free(d->name);
    free(d);
}
