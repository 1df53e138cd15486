/* t2 grade: grade a file of model outputs against a dataset with a grader plugin loaded in-process
 * (options and rules in cmd_grade.h). */
#include "cmd_grade.h"

#include "cli.h"
#include "loader.h"
#include "tasks.h"

#include <t2/error.h>

#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>


typedef struct item {
    const t2_task *task;
    char *output;
    t2_verdict v;
    t2_status s;
} item;

typedef struct run {
    item *items;
    size_t n;
    _Atomic size_t next;
    const char *grader;   /* NULL: each task's own */
    const t2_plugins *plugins;
} run;

static int is_dir(const char *p) {
    struct stat st;
    return p && *p && stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static int is_file(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

static const char *plugin_dir(const char *opt) { return opt ? opt : t2_plugins_default_dir(); }

/* Read OUTPUTS.jsonl into items matched against the dataset. Returns 0, or prints the problem and returns -1. */
static int read_outputs(const char *path, const t2_dataset *d, item **out, size_t *n_out) {
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "t2 grade: %s: %s\n", path, strerror(errno));
        return -1;
    }
    size_t n_tasks = t2_dataset_size(d);
    unsigned char *seen = calloc(n_tasks ? n_tasks : 1, 1);
    item *items = NULL;
    size_t n = 0, cap = 0, lineno = 0;
    char *line = NULL;
    size_t lcap = 0;
    ssize_t len;
    int rc = 0;
    const t2_task *first = t2_dataset_task(d, 0);
    while (rc == 0 && seen && (len = getline(&line, &lcap, f)) >= 0) {
        lineno++;
        size_t k = 0;
        while (k < (size_t)len && strchr(" \t\r\n", line[k])) k++;
        if (k == (size_t)len) continue;
        json_error_t je;
        json_t *o = json_loadb(line, (size_t)len, JSON_REJECT_DUPLICATES, &je);
        char idbuf[64];
        const char *id = NULL;
        json_t *jid = o ? json_object_get(o, "id") : NULL, *jout = o ? json_object_get(o, "output") : NULL;
        if (!o) {
            fprintf(stderr, "t2 grade: %s:%zu: invalid JSON: %s (column %d)\n", path, lineno, je.text, je.column);
            rc = -1;
        } else if (!json_is_object(o)) {
            fprintf(stderr, "t2 grade: %s:%zu: not a JSON object\n", path, lineno);
            rc = -1;
        } else if (!jid || !(json_is_string(jid) || json_is_integer(jid))) {
            fprintf(stderr, "t2 grade: %s:%zu: missing \"id\" (a string or an integer)\n", path, lineno);
            rc = -1;
        } else if (!json_is_string(jout)) {
            fprintf(stderr, "t2 grade: %s:%zu: missing \"output\" (a string)\n", path, lineno);
            rc = -1;
        } else {
            if (json_is_integer(jid)) {
                snprintf(idbuf, sizeof idbuf, "%" JSON_INTEGER_FORMAT, json_integer_value(jid));
                id = idbuf;
            } else {
                id = json_string_value(jid);
            }
            const t2_task *t = t2_dataset_find(d, id);
            if (!t) {
                fprintf(stderr, "t2 grade: %s:%zu: id \"%s\" is not a task of %s\n", path, lineno, id, t2_dataset_name(d));
                rc = -1;
            } else if (seen[t - first]) {
                fprintf(stderr, "t2 grade: %s:%zu: id \"%s\" appears twice\n", path, lineno, id);
                rc = -1;
            } else if (strlen(json_string_value(jout)) != json_string_length(jout)) {
                fprintf(stderr, "t2 grade: %s:%zu: output of \"%s\" contains a NUL character\n", path, lineno, id);
                rc = -1;
            } else {
                seen[t - first] = 1;
                if (n == cap) {
                    cap = cap ? cap * 2 : 256;
                    item *ni = realloc(items, cap * sizeof *ni);
                    if (!ni) {
                        fprintf(stderr, "t2 grade: out of memory\n");
                        rc = -1;
                    } else items = ni;
                }
                if (rc == 0) {
                    items[n].task = t;
                    items[n].output = strdup(json_string_value(jout));
                    items[n].s = T2_OK;
                    memset(&items[n].v, 0, sizeof items[n].v);
                    if (!items[n].output) rc = -1;
                    n++;
                }
            }
        }
        json_decref(o);
    }
    if (!seen) rc = -1;
    if (rc == 0 && ferror(f)) {
        fprintf(stderr, "t2 grade: %s: read error\n", path);
        rc = -1;
    }
    if (rc == 0 && n == 0) {
        fprintf(stderr, "t2 grade: %s: no outputs\n", path);
        rc = -1;
    }
    free(line);
    free(seen);
    fclose(f);
    if (rc != 0) {
        for (size_t i = 0; i < n; i++) free(items[i].output);
        free(items);
        return -1;
    }
    *out = items;
    *n_out = n;
    return 0;
}

static void *worker(void *arg) {
    run *r = arg;
    for (;;) {
        size_t i = atomic_fetch_add(&r->next, 1);
        if (i >= r->n) break;
        item *it = &r->items[i];
        const char *name = r->grader ? r->grader : it->task->grader;
        void *state;
        const t2_plugin *pl = t2_plugins_find(r->plugins, T2_PLUGIN_GRADER, name, &state);
        if (!pl) {
            it->s = T2_ERR_NOT_FOUND;
            snprintf(it->v.detail, sizeof it->v.detail, "no grader plugin \"%s\" is loaded", name);
            continue;
        }
        const t2_grader_ops *ops = pl->ops;
        it->s = ops->grade(state, it->task, it->output, &it->v);
    }
    return NULL;
}

/* Load the grader(s): grader_<name>.so directly when it is there, else every plugin of the directory (its
 * graders/ subfolder when there is one). */
static int load_graders(t2_plugins *pl, const char *dir, const char *grader, const char *settings) {
    if (grader) {
        char a[4096], b[4096];
        snprintf(a, sizeof a, "%s/graders/grader_%s.so", dir, grader);
        snprintf(b, sizeof b, "%s/grader_%s.so", dir, grader);
        const char *file = is_file(a) ? a : is_file(b) ? b : NULL;
        if (file) {
            t2_status s = t2_plugins_load_file(pl, file, settings);
            return s == T2_OK ? 0 : cli_fail("cannot load the grader plugin", s);
        }
    }
    char sub[4096];
    snprintf(sub, sizeof sub, "%s/graders", dir);
    if (t2_plugins_load_dir(pl, is_dir(sub) ? sub : dir, NULL, NULL) < 0)
        return cli_fail("cannot read the plugin directory", T2_ERR_IO);
    return 0;
}

static const char *s_usage_grade =
    "usage: t2 grade [--grader NAME] --task SPEC [--split S] --outputs OUTPUTS.jsonl [--json]\n"
    "                [--plugin-dir DIR] [--data-dir DIR] [--workers N] [--settings JSON]\n";

int t2_cmd_grade(int argc, char **argv) {
    cli_opts o;
    if (cli_init(&o, argc - 1, argv + 1)) return T2_EXIT_ERROR;
    const char *grader = cli_str(&o, "grader"), *spec = cli_str(&o, "task"), *split = cli_str(&o, "split");
    const char *outputs = cli_str(&o, "outputs"), *pdir = cli_str(&o, "plugin-dir"), *data_dir = cli_str(&o, "data-dir");
    const char *settings = cli_str(&o, "settings");
    int as_json = cli_flag(&o, "json");
    long long workers = 1;
    int bad = cli_int(&o, "workers", 1, 256, &workers) || cli_done(&o, "grade");
    if (!bad && (!spec || !outputs)) {
        fprintf(stderr, "t2 grade: --task and --outputs are required\n%s", s_usage_grade);
        bad = 1;
    }
    if (!bad && settings && !grader) {
        fprintf(stderr, "t2 grade: --settings needs --grader (they are that grader's settings)\n");
        bad = 1;
    }
    cli_free(&o);
    if (bad) return T2_EXIT_USAGE;

    t2_dataset *d = NULL;
    t2_status s = t2_dataset_open(spec, split, data_dir, &d);
    if (s) return cli_fail("cannot open the task set", s);

    const char *dir = plugin_dir(pdir);
    t2_grade_host_configure(data_dir, NULL, T2_LOG_WARN);
    t2_plugins *pl = t2_plugins_new(t2_grade_host_api(), &s);
    if (!pl) {
        t2_dataset_close(d);
        return cli_fail("plugins", s);
    }
    int rc = load_graders(pl, dir, grader, settings);
    t2_grade_host_configure(data_dir, pl, T2_LOG_WARN);
    if (rc == 0 && grader && !t2_plugins_find(pl, T2_PLUGIN_GRADER, grader, NULL)) {
        fprintf(stderr, "t2 grade: no grader plugin \"%s\" in %s", grader, dir);
        for (int i = 0; i < t2_plugins_refused_count(pl); i++) fprintf(stderr, "%s%s", i ? "; " : " (refused: ", t2_plugins_refused(pl, i));
        fprintf(stderr, "%s\n", t2_plugins_refused_count(pl) ? ")" : "");
        rc = T2_EXIT_ERROR;
    }

    item *items = NULL;
    size_t n = 0;
    if (rc == 0 && read_outputs(outputs, d, &items, &n) != 0) rc = T2_EXIT_ERROR;
    if (rc == 0) {
        run r = {items, n, 0, grader, pl};
        int nt = (int)workers < (int)n ? (int)workers : (int)n;
        pthread_t th[256];
        int started = 0;
        for (int i = 1; i < nt; i++)
            if (pthread_create(&th[started], NULL, worker, &r) == 0) started++;
        worker(&r);
        for (int i = 0; i < started; i++) pthread_join(th[i], NULL);

        size_t correct = 0, failed = 0;
        const item *first_fail = NULL;
        for (size_t i = 0; i < n; i++) {
            if (items[i].s != T2_OK && !failed++) first_fail = &items[i];
            correct += items[i].s == T2_OK && items[i].v.correct;
        }
        if (failed) {
            fprintf(stderr, "t2 grade: %zu of %zu outputs could not be graded; first: task %s: %s: %s\n", failed, n,
                    first_fail->task->id, t2_strerror(first_fail->s), first_fail->v.detail);
            rc = T2_EXIT_ERROR;
        } else if (as_json) {
            json_t *root = json_pack("{s:f, s:I, s:I, s:s, s:s, s:s}", "accuracy", (double)correct / (double)n, "n",
                                     (json_int_t)n, "correct", (json_int_t)correct, "grader", grader ? grader : "",
                                     "task", spec, "split", split ? split : "all");
            json_t *arr = json_array();
            for (size_t i = 0; i < n; i++)
                json_array_append_new(arr, json_pack("{s:s, s:b, s:s, s:s}", "id", items[i].task->id, "correct",
                                                     items[i].v.correct, "extracted", items[i].v.extracted, "detail",
                                                     items[i].v.detail));
            json_object_set_new(root, "verdicts", arr);
            if (json_dumpf(root, stdout, JSON_COMPACT | JSON_ENSURE_ASCII) != 0) rc = T2_EXIT_ERROR;
            fputc('\n', stdout);
            json_decref(root);
        } else {
            printf("%s: %zu outputs, %zu correct, accuracy %.6f\n", grader ? grader : "each task's grader", n, correct,
                   (double)correct / (double)n);
        }
        if (fflush(stdout) != 0) rc = T2_EXIT_ERROR;
    }
    for (size_t i = 0; i < n; i++) free(items[i].output);
    free(items);
    t2_grade_host_configure(NULL, NULL, T2_LOG_WARN);
    t2_plugins_free(pl);
    t2_dataset_close(d);
    return rc;
}
