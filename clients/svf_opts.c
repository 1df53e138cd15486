#include "svf_opts.h"

#include <t2/error.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void progress(void *user, int i, int n, const char *name, double secs, double err) {
    int verbose = *(int *)user;
    if (isnan(err)) fprintf(stderr, "svd %3d/%d  %-40s  (done before, resumed)\n", i + 1, n, name);
    else if (verbose) fprintf(stderr, "svd %3d/%d  %-40s  %7.3f s  rel. error %.3g\n", i + 1, n, name, secs, err);
    else fprintf(stderr, "\rbuilding SVD cache: %d/%d", i + 1, n), fflush(stderr);
    if (!verbose && i + 1 == n) fputc('\n', stderr);
}

static void note(void *user, const char *msg) {
    (void)user;
    fprintf(stderr, "t2: %s\n", msg);
}

t2_svd *svf_load_svd(t2_model *m, t2_modules modules, const char *path, int dtype, int precision, int rebuild, int verify,
                     int verbose, t2_status *err) {
    static int s_verbose;
    s_verbose = verbose;
    t2_svd_params p = t2_svd_default_params();
    p.modules = modules;
    p.path = path;
    p.dtype = dtype;
    p.precision = precision;
    p.rebuild = rebuild;
    p.verify = verify;
    p.progress = progress;
    p.note = note;
    p.user = &s_verbose;
    return t2_svd_load(m, &p, err);
}

/* --lora FILE: the LoRA and its adapter; the SVF options do not apply. */
static int select_lora(const char *file, int svf_opts, t2_model *m, svf_sel *sel) {
    if (svf_opts) {
        fprintf(stderr, "t2: --lora does not combine with --expert, --mix, --apply, --modules or --svd-cache\n");
        return T2_EXIT_USAGE;
    }
    t2_status s;
    if (!(sel->lora = t2_lora_load(file, m, &s))) return cli_fail("cannot load LoRA", s);
    if (!(sel->adapter = t2_adapter_new_lora(sel->lora, &s))) {
        svf_sel_free(sel);
        return cli_fail("adapter", s);
    }
    return T2_EXIT_OK;
}

int svf_select(cli_opts *o, t2_model *m, int need_svd, svf_sel *sel) {
    memset(sel, 0, sizeof *sel);
    const char *ex = cli_str(o, "expert"), *mix = cli_str(o, "mix"), *apply = cli_str(o, "apply");
    const char *mods = cli_str(o, "modules"), *cache = cli_str(o, "svd-cache"), *lora = cli_str(o, "lora");
    if (lora) return select_lora(lora, ex || mix || apply || mods || cache, m, sel);
    if (!ex && !mix && need_svd) { /* the cache alone, e.g. for gradients at z = 1 */
        t2_modules modules = T2_MODULES_MLP;
        t2_status s;
        if (apply) fprintf(stderr, "t2: --apply needs --expert or --mix\n");
        else if (mods && t2_modules_parse(mods, &modules)) fprintf(stderr, "t2: --modules: %s\n", t2_last_error());
        else if (!(sel->svd = svf_load_svd(m, modules, cache, -1, 0, 0, 0, 0, &s))) return cli_fail("SVD cache", s);
        else return T2_EXIT_OK;
        return T2_EXIT_USAGE;
    }
    if (!ex && !mix) {
        if (apply || mods || cache) {
            fprintf(stderr, "t2: --apply, --modules and --svd-cache need --expert or --mix\n");
            return T2_EXIT_USAGE;
        }
        return T2_EXIT_OK;
    }
    if (ex && mix) {
        fprintf(stderr, "t2: give --expert or --mix, not both\n");
        return T2_EXIT_USAGE;
    }
    t2_apply mode = T2_APPLY_FACTORED;
    if (apply && !strcmp(apply, "merged")) mode = T2_APPLY_MERGED;
    else if (apply && strcmp(apply, "factored")) {
        fprintf(stderr, "t2: --apply must be factored or merged\n");
        return T2_EXIT_USAGE;
    }
    /* the experts and their weights */
    char *spec = strdup(ex ? ex : mix);
    int cap = 1;
    for (const char *p = spec; *p; p++) cap += *p == ',';
    char **files = calloc((size_t)cap, sizeof *files);
    float *alpha = calloc((size_t)cap, sizeof *alpha);
    int k = 0, rc = T2_EXIT_OK;
    char *save = NULL;
    for (char *tok = strtok_r(spec, ",", &save); tok && !rc; tok = strtok_r(NULL, ",", &save)) {
        files[k] = tok;
        alpha[k] = 1.0f;
        if (mix) {
            char *colon = strrchr(tok, ':'), *end;
            if (!colon || !colon[1] || (alpha[k] = strtof(colon + 1, &end), *end) || !isfinite(alpha[k])) {
                fprintf(stderr, "t2: --mix: \"%s\" is not FILE:WEIGHT\n", tok);
                rc = T2_EXIT_USAGE;
            }
            if (colon) *colon = 0;
        }
        k++;
    }
    t2_modules modules = T2_MODULES_MLP;
    t2_status s = T2_OK;
    if (!rc && mods && t2_modules_parse(mods, &modules)) {
        fprintf(stderr, "t2: --modules: %s\n", t2_last_error());
        rc = T2_EXIT_USAGE;
    }
    if (!rc && !mods) { /* the first expert says which matrices it adapts */
        t2_expert *e0 = t2_expert_load(files[0], NULL, &s);
        if (!e0) rc = cli_fail("cannot load expert", s);
        else if (t2_expert_meta(e0, "modules") && t2_modules_parse(t2_expert_meta(e0, "modules"), &modules))
            rc = cli_fail("expert metadata", T2_ERR_FORMAT);
        t2_expert_free(e0);
    }
    if (!rc && !(sel->svd = svf_load_svd(m, modules, cache, -1, 0, 0, 0, 0, &s))) rc = cli_fail("SVD cache", s);
    t2_expert **es = calloc((size_t)cap, sizeof *es);
    for (int j = 0; !rc && j < k; j++)
        if (!(es[j] = t2_expert_load(files[j], sel->svd, &s))) rc = cli_fail("cannot load expert", s);
    if (!rc) {
        sel->expert = mix ? t2_expert_mix((const t2_expert *const *)es, alpha, k, 0, &s) : es[0];
        if (!mix) es[0] = NULL;
        if (!sel->expert) rc = cli_fail("mix", s);
    }
    if (!rc && !(sel->adapter = t2_adapter_new(sel->svd, sel->expert, mode, &s))) rc = cli_fail("adapter", s);
    if (!rc && mix) { /* keep the components: gradients with respect to α need them */
        sel->n_parts = k, sel->parts = es, sel->alpha = alpha;
        es = NULL, alpha = NULL;
    } else {
        sel->n_parts = 0;
    }
    for (int j = 0; es && j < k; j++) t2_expert_free(es[j]);
    free(es);
    free(files);
    free(alpha);
    free(spec);
    if (rc) svf_sel_free(sel);
    return rc;
}

int svf_attach(const svf_sel *sel, t2_ctx *ctx) {
    if (!sel->svd) return T2_EXIT_OK;
    t2_status s = t2_ctx_set_svd(ctx, sel->svd, 0);
    return s ? cli_fail("SVD cache", s) : T2_EXIT_OK;
}

void svf_sel_free(svf_sel *sel) {
    for (int j = 0; j < sel->n_parts; j++) t2_expert_free(sel->parts[j]);
    free(sel->parts);
    free(sel->alpha);
    t2_adapter_free(sel->adapter);
    t2_lora_free(sel->lora);
    t2_expert_free(sel->expert);
    t2_svd_free(sel->svd);
    memset(sel, 0, sizeof *sel);
}
