/* `t2 model svd` and `t2 model expert show|mix|new` (local expert files). */
#include "cmd_svf.h"
#include "cli.h"
#include "svf_opts.h"

#include <t2/error.h>
#include <t2/model.h>
#include <t2/svf.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int t2_cmd_model_svd(int argc, char **argv) {
    cli_opts o;
    if (cli_init(&o, argc - 1, argv + 1)) return T2_EXIT_ERROR;
    const char *dir = cli_str(&o, "model"), *mods = cli_str(&o, "modules"), *cache = cli_str(&o, "cache"),
               *dts = cli_str(&o, "dtype"), *prec = cli_str(&o, "precision");
    int rebuild = cli_flag(&o, "rebuild"), verify = cli_flag(&o, "verify");
    t2_modules modules = T2_MODULES_MLP;
    int dtype = -1, rc = T2_EXIT_OK;
    if (!dir) fprintf(stderr, "t2 model svd: --model DIR is required\n"), rc = T2_EXIT_USAGE;
    else if (mods && t2_modules_parse(mods, &modules)) fprintf(stderr, "t2: --modules: %s\n", t2_last_error()), rc = T2_EXIT_USAGE;
    else if (dts && strcmp(dts, "f32") && strcmp(dts, "bf16")) fprintf(stderr, "t2: --dtype must be f32 or bf16\n"), rc = T2_EXIT_USAGE;
    else if (prec && strcmp(prec, "single") && strcmp(prec, "double"))
        fprintf(stderr, "t2: --precision must be single or double\n"), rc = T2_EXIT_USAGE;
    else if (cli_done(&o, "model svd")) rc = T2_EXIT_USAGE;
    cli_free(&o);
    if (rc) return rc;
    if (dts) dtype = !strcmp(dts, "f32") ? T2_F32 : T2_BF16;
    t2_status s;
    t2_model *m = cli_load_model(dir, 0, 0, &rc);
    if (!m) return rc;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    t2_svd *svd = svf_load_svd(m, modules, cache, dtype, prec && !strcmp(prec, "double"), rebuild, verify, 1, &s);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    if (!svd) {
        rc = cli_fail("SVD cache", s);
    } else {
        double worst = 0;
        for (int i = 0; i < t2_svd_count(svd); i++)
            if (t2_svd_error(svd, i) > worst) worst = t2_svd_error(svd, i);
        printf("svd cache   %s\n", t2_svd_path(svd));
        printf("matrices    %d (%s), fingerprint %s\n", t2_svd_count(svd), t2_modules_name(modules), t2_model_fingerprint(m));
        printf("worst relative reconstruction error %.3g; %.2f s\n", worst,
               (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) * 1e-9);
    }
    t2_svd_free(svd);
    t2_model_free(m);
    return rc;
}

int t2_cmd_expert_show(int argc, char **argv) {
    cli_opts o;
    if (cli_init(&o, argc - 1, argv + 1)) return T2_EXIT_ERROR;
    int json = cli_flag(&o, "json");
    const char *file = NULL;
    for (int i = 0; i < o.argc; i++)
        if (!o.used[i] && o.argv[i][0] != '-' && !file) file = o.argv[i], o.used[i] = 1;
    int rc = !file ? (fprintf(stderr, "t2 model expert show: FILE is required\n"), T2_EXIT_USAGE)
                   : cli_done(&o, "model expert show") ? T2_EXIT_USAGE : T2_EXIT_OK;
    cli_free(&o);
    if (rc) return rc;
    t2_status s;
    t2_expert *e = t2_expert_load(file, NULL, &s);
    if (!e) return cli_fail("cannot load expert", s);
    size_t params = 0;
    for (int i = 0; i < t2_expert_count(e); i++) params += (size_t)t2_expert_len(e, i);
    if (json) {
        printf("{\"file\": \"%s\", \"matrices\": %d, \"parameters\": %zu, \"metadata\": {", file, t2_expert_count(e), params);
        for (int i = 0; i < t2_expert_meta_count(e); i++) {
            const char *k = t2_expert_meta_key(e, i), *v = t2_expert_meta(e, k);
            printf("%s\"%s\": \"", i ? ", " : "", k);
            for (const char *p = v; *p; p++)
                if (*p == '"' || *p == '\\') printf("\\%c", *p);
                else if ((unsigned char)*p < 0x20) printf("\\u%04x", *p);
                else putchar(*p);
            printf("\"");
        }
        printf("}}\n");
    } else {
        printf("expert      %s\n", file);
        for (int i = 0; i < t2_expert_meta_count(e); i++) {
            const char *k = t2_expert_meta_key(e, i);
            printf("%-11s %s\n", k, t2_expert_meta(e, k));
        }
        printf("matrices    %d, %zu parameters\n", t2_expert_count(e), params);
        for (int i = 0; i < t2_expert_count(e); i++) {
            const float *z = t2_expert_zc(e, i);
            double mn = INFINITY, mx = -INFINITY, mean = 0;
            for (int j = 0; j < t2_expert_len(e, i); j++) {
                mn = z[j] < mn ? z[j] : mn;
                mx = z[j] > mx ? z[j] : mx;
                mean += z[j];
            }
            printf("  %-40s r=%-5d z mean %.4f  min %.4f  max %.4f\n", t2_expert_name(e, i), t2_expert_len(e, i),
                   mean / t2_expert_len(e, i), mn, mx);
        }
    }
    t2_expert_free(e);
    return T2_EXIT_OK;
}

int t2_cmd_expert_mix(int argc, char **argv) {
    cli_opts o;
    if (cli_init(&o, argc - 1, argv + 1)) return T2_EXIT_ERROR;
    const char *out = cli_str(&o, "out");
    int per_matrix = 0, k = 0, rc = T2_EXIT_OK;
    char **files = calloc((size_t)o.argc + 1, sizeof *files);
    float *alpha = calloc((size_t)o.argc + 1, sizeof *alpha);
    for (int i = 0; i < o.argc && !rc; i++) {
        if (o.used[i] || o.argv[i][0] == '-') continue;
        o.used[i] = 1;
        char *colon = strrchr(o.argv[i], ':'), *end;
        if (!colon || !colon[1] || (alpha[k] = strtof(colon + 1, &end), *end) || !isfinite(alpha[k])) {
            fprintf(stderr, "t2 model expert mix: \"%s\" is not FILE:WEIGHT\n", o.argv[i]);
            rc = T2_EXIT_USAGE;
            break;
        }
        *colon = 0;
        files[k++] = o.argv[i];
    }
    if (!rc && (!out || k < 1)) fprintf(stderr, "t2 model expert mix: --out FILE and at least one FILE:WEIGHT are required\n"), rc = T2_EXIT_USAGE;
    if (!rc && cli_done(&o, "model expert mix")) rc = T2_EXIT_USAGE;
    t2_expert **es = calloc((size_t)k + 1, sizeof *es);
    t2_status s;
    for (int j = 0; !rc && j < k; j++)
        if (!(es[j] = t2_expert_load(files[j], NULL, &s))) rc = cli_fail("cannot load expert", s);
    t2_expert *mix = NULL;
    if (!rc && !(mix = t2_expert_mix((const t2_expert *const *)es, alpha, k, per_matrix, &s))) rc = cli_fail("mix", s);
    if (!rc && (s = t2_expert_save(mix, out))) rc = cli_fail("cannot write expert", s);
    if (!rc) printf("wrote %s (%d experts mixed)\n", out, k);
    t2_expert_free(mix);
    for (int j = 0; j < k; j++) t2_expert_free(es[j]);
    free(es);
    free(files);
    free(alpha);
    cli_free(&o);
    return rc;
}

int t2_cmd_expert_new(int argc, char **argv) {
    cli_opts o;
    if (cli_init(&o, argc - 1, argv + 1)) return T2_EXIT_ERROR;
    const char *dir = cli_str(&o, "model"), *from = cli_str(&o, "from"), *out = cli_str(&o, "out"),
               *label = cli_str(&o, "label"), *mods = cli_str(&o, "modules"), *cache = cli_str(&o, "svd-cache");
    t2_modules modules = T2_MODULES_MLP;
    int rc = T2_EXIT_OK;
    if (!dir || !from || !out) fprintf(stderr, "t2 model expert new: --model DIR --from Z.safetensors --out FILE are required\n"), rc = T2_EXIT_USAGE;
    else if (mods && t2_modules_parse(mods, &modules)) fprintf(stderr, "t2: --modules: %s\n", t2_last_error()), rc = T2_EXIT_USAGE;
    else if (cli_done(&o, "model expert new")) rc = T2_EXIT_USAGE;
    cli_free(&o);
    if (rc) return rc;
    t2_status s;
    t2_model *m = cli_load_model(dir, 0, 0, &rc);
    if (!m) return rc;
    t2_svd *svd = svf_load_svd(m, modules, cache, -1, 0, 0, 0, 0, &s);
    t2_expert *e = NULL;
    if (!svd) rc = cli_fail("SVD cache", s);
    else if (!(e = t2_expert_import(from, svd, &s))) rc = cli_fail("cannot import z tensors", s);
    else {
        if (label) t2_expert_set_meta(e, "label", label);
        t2_expert_set_meta(e, "trainer", "import");
        if ((s = t2_expert_save(e, out))) rc = cli_fail("cannot write expert", s);
        else printf("wrote %s: %d z vectors for %s\n", out, t2_expert_count(e), dir);
    }
    t2_expert_free(e);
    t2_svd_free(svd);
    t2_model_free(m);
    return rc;
}

int t2_cmd_model_expert(int argc, char **argv) {
    static const struct { const char *name; int (*fn)(int, char **); } subs[] = {
        {"show", t2_cmd_expert_show}, {"mix", t2_cmd_expert_mix}, {"new", t2_cmd_expert_new}};
    for (size_t i = 0; argc >= 2 && i < sizeof subs / sizeof *subs; i++)
        if (!strcmp(argv[1], subs[i].name)) return subs[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "t2 model expert: want show, mix or new (see t2 help)\n");
    return T2_EXIT_USAGE;
}
