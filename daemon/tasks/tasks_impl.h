/* tasks_impl.h — what the dataset core (dataset.c) shares with the benchmark loaders (loaders.c). */
#ifndef T2_TASKS_IMPL_H
#define T2_TASKS_IMPL_H

#include "tasks.h"

#include <jansson.h>
#include <stddef.h>
#include <stdio.h>

typedef enum ds_split { DS_ALL = 0, DS_TRAIN, DS_VALIDATION, DS_TEST } ds_split;

typedef struct ds_block ds_block;

struct t2_dataset {
    t2_task *tasks;        /* [n] */
    size_t n, cap;
    size_t *by_id;         /* [n] task indices sorted by id (built by ds_finish) */
    ds_block *blocks;      /* the string arena every task field points into */
    char *name;
};

/* A copy of s (NULL: "") in the dataset's arena; NULL only when out of memory. */
const char *ds_str(t2_dataset *d, const char *s);
/* printf into the arena. */
const char *ds_printf(t2_dataset *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A JSON value as compact text in the arena ("{}" for NULL). */
const char *ds_json(t2_dataset *d, const json_t *v);

/* Append a task with every field "" and extra "{}"; NULL when out of memory. Pointers to earlier tasks
 * may move. */
t2_task *ds_add(t2_dataset *d);

/* Check that ids are unique and build the id index; T2_ERR_FORMAT naming the duplicate. */
t2_status ds_finish(t2_dataset *d, const char *what);

/* Parse every line of a JSONL file: fn(u, obj, line_index_0_based, "path:line N") per non-blank line.
 * Invalid JSON or a non-object line is T2_ERR_FORMAT naming path and line. */
typedef t2_status (*ds_line_fn)(void *u, json_t *obj, size_t line, const char *where);
t2_status ds_read_jsonl(const char *path, ds_line_fn fn, void *u);
/* The same, with prep(u, line, len, where) run on each raw line first: it may return a malloc'd
 * replacement to parse instead (NULL: parse the line as it is; set *err to fail the read). */
typedef char *(*ds_prep_fn)(void *u, const char *line, size_t len, const char *where, t2_status *err);
t2_status ds_read_jsonl_ex(const char *path, ds_line_fn fn, ds_prep_fn prep, void *u);
/* Parse a file holding one JSON array of objects: fn per element (line = element index). */
t2_status ds_read_json_array(const char *path, ds_line_fn fn, void *u);

/* A string field of obj ("" when absent if !required); T2_ERR_FORMAT / NOT_FOUND naming where and key.
 * Numbers are accepted and printed as text when `numbers` is set. *out borrowed from obj (or static). */
t2_status ds_get_str(const json_t *obj, const char *key, int required, int numbers, const char *where, const char **out);

/* Benchmark loaders (loaders.c): each reads its files under dir and appends the tasks of split. */
typedef t2_status (*ds_loader_fn)(t2_dataset *d, const char *dir, ds_split split);
typedef struct ds_known {
    const char *name;
    ds_loader_fn load;
} ds_known;
extern const ds_known ds_known_datasets[];   /* NULL-name terminated */

/* The generic JSONL loader (dataset.c). */
t2_status ds_load_generic(t2_dataset *d, const char *path, ds_split split);

/* "train", "validation", "test", "all". */
const char *ds_split_name(ds_split s);

#endif
