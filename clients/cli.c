#include "cli.h"

#include <t2/error.h>

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cli_init(cli_opts *o, int argc, char **argv) {
    o->argc = argc;
    o->argv = argv;
    o->used = calloc((size_t)argc + 1, 1);
    return o->used ? 0 : -1;
}

void cli_free(cli_opts *o) { free(o->used); }

static int find(cli_opts *o, const char *name, const char **inline_val) {
    size_t n = strlen(name);
    for (int i = 0; i < o->argc; i++) {
        const char *a = o->argv[i];
        if (a[0] != '-' || a[1] != '-' || strncmp(a + 2, name, n)) continue;
        if (a[2 + n] == 0) {
            *inline_val = NULL;
            return i;
        }
        if (a[2 + n] == '=') {
            *inline_val = a + 3 + n;
            return i;
        }
    }
    return -1;
}

const char *cli_str(cli_opts *o, const char *name) {
    const char *iv;
    int i = find(o, name, &iv);
    if (i < 0) return NULL;
    o->used[i] = 1;
    if (iv) return iv;
    if (i + 1 >= o->argc) {
        fprintf(stderr, "t2: option --%s needs a value\n", name);
        return NULL;
    }
    o->used[i + 1] = 1;
    return o->argv[i + 1];
}

int cli_flag(cli_opts *o, const char *name) {
    const char *iv;
    int i = find(o, name, &iv);
    if (i < 0 || iv) return 0;
    o->used[i] = 1;
    return 1;
}

int cli_int(cli_opts *o, const char *name, long long lo, long long hi, long long *out) {
    const char *v = cli_str(o, name);
    if (!v) return 0;
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (errno || end == v || *end || x < lo || x > hi) {
        fprintf(stderr, "t2: --%s: \"%s\" is not an integer in [%lld, %lld]\n", name, v, lo, hi);
        return -1;
    }
    *out = x;
    return 0;
}

int cli_float(cli_opts *o, const char *name, double lo, double hi, double *out) {
    const char *v = cli_str(o, name);
    if (!v) return 0;
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (errno || end == v || *end || !(x >= lo && x <= hi)) {
        fprintf(stderr, "t2: --%s: \"%s\" is not a number in [%g, %g]\n", name, v, lo, hi);
        return -1;
    }
    *out = x;
    return 0;
}

int cli_done(cli_opts *o, const char *cmd) {
    for (int i = 0; i < o->argc; i++)
        if (!o->used[i]) {
            fprintf(stderr, "t2 %s: unknown option or argument \"%s\" (see t2 help)\n", cmd, o->argv[i]);
            return -1;
        }
    return 0;
}

int cli_parse_ids(const char *s, const char *what, int32_t **ids, int *n) {
    size_t cap = 1;
    for (const char *p = s; *p; p++) cap += *p == ',';
    *ids = malloc(cap * sizeof **ids);
    *n = 0;
    if (!*ids) return -1;
    const char *p = s;
    while (*p) {
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (errno || end == p || v < 0 || v > INT32_MAX || (*end && *end != ',')) {
            fprintf(stderr, "t2: %s: \"%s\" is not a comma-separated list of token ids\n", what, s);
            free(*ids);
            *ids = NULL;
            return -1;
        }
        (*ids)[(*n)++] = (int32_t)v;
        p = *end ? end + 1 : end;
    }
    if (!*n) {
        fprintf(stderr, "t2: %s: empty id list\n", what);
        free(*ids);
        *ids = NULL;
        return -1;
    }
    return 0;
}

int cli_fail(const char *what, t2_status s) {
    fprintf(stderr, "t2: %s: %s: %s\n", what, t2_strerror(s), t2_last_error());
    return T2_EXIT_ERROR;
}

t2_model *cli_load_model(const char *dir, int threads, int prefill_bf16, int *rc) {
    t2_model_params mp = t2_model_default_params();
    mp.path = dir;
    mp.n_threads = threads;
    mp.prefill_bf16 = prefill_bf16;
    t2_status s;
    t2_model *m = t2_model_load(&mp, &s);
    if (!m) *rc = cli_fail("cannot load model", s);
    return m;
}

t2_model *cli_open_model(cli_opts *o, int *rc) {
    const char *dir = cli_str(o, "model");
    long long threads = 0;
    if (!dir) {
        fprintf(stderr, "t2: --model DIR is required\n");
        *rc = T2_EXIT_USAGE;
        return NULL;
    }
    if (cli_int(o, "threads", 0, 1024, &threads)) {
        *rc = T2_EXIT_USAGE;
        return NULL;
    }
    return cli_load_model(dir, (int)threads, cli_flag(o, "prefill-bf16"), rc);
}
