/* `t2 model logprob-grad`: the log-probability of a completion and its gradient with respect to the
 * SVF z vectors, the mixture weights α, or every weight, written as safetensors. */
#include "cmd_train.h"
#include "cli.h"
#include "svf_opts.h"

#include <t2/error.h>
#include <t2/model.h>
#include <t2/svf.h>
#include <t2/train.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* dz' [Σ ranks] → the tensors "<matrix>.z". */
static t2_status write_dz(const char *out, const t2_svd *svd, const float *dz, const char *const *meta) {
    int n = t2_svd_count(svd);
    t2_tensor_info *t = calloc((size_t)n, sizeof *t);
    char (*names)[160] = calloc((size_t)n, sizeof *names);
    t2_status s = T2_OK;
    if (!t || !names) s = t2_set_error(T2_ERR_NOMEM, "out of memory");
    size_t off = 0;
    for (int i = 0; !s && i < n; i++) {
        snprintf(names[i], sizeof names[i], "%s.z", t2_svd_name(svd, i));
        t[i] = (t2_tensor_info){.name = names[i], .dtype = T2_F32, .ndim = 1, .shape = {t2_svd_rank(svd, i)}, .data = dz + off};
        off += (size_t)t2_svd_rank(svd, i);
    }
    if (!s) s = t2_st_write(out, t, (size_t)n, meta);
    free(t);
    free(names);
    return s;
}

int t2_cmd_model_logprob_grad(int argc, char **argv) {
    cli_opts o;
    if (cli_init(&o, argc - 1, argv + 1)) return T2_EXIT_ERROR;
    const char *dir = cli_str(&o, "model"), *ids_s = cli_str(&o, "ids"), *out = cli_str(&o, "out"),
               *wrt = cli_str(&o, "wrt");
    long long k0 = -1;
    int rc = T2_EXIT_OK;
    if (!wrt) wrt = "z";
    if (!dir || !ids_s || !out || cli_int(&o, "completion-start", 1, 1 << 24, &k0) || k0 < 1) {
        fprintf(stderr, "t2 model logprob-grad: --model DIR --ids P1,P2,... --completion-start K --out FILE are required\n");
        rc = T2_EXIT_USAGE;
    } else if (strcmp(wrt, "z") && strcmp(wrt, "alpha") && strcmp(wrt, "weights")) {
        fprintf(stderr, "t2 model logprob-grad: --wrt must be z, alpha or weights\n");
        rc = T2_EXIT_USAGE;
    }
    t2_model *m = NULL;
    t2_status s = T2_OK;
    svf_sel sel = {0};
    int32_t *ids = NULL;
    int n = 0;
    if (!rc && cli_parse_ids(ids_s, "--ids", &ids, &n)) rc = T2_EXIT_USAGE;
    if (!rc) m = cli_load_model(dir, 0, 0, &rc);
    if (!rc) rc = svf_select(&o, m, strcmp(wrt, "weights") != 0, &sel);
    if (!rc && cli_done(&o, "model logprob-grad")) rc = T2_EXIT_USAGE;
    if (!rc && !strcmp(wrt, "alpha") && sel.n_parts < 1) {
        fprintf(stderr, "t2 model logprob-grad: --wrt alpha needs --mix\n");
        rc = T2_EXIT_USAGE;
    }
    if (!rc && !strcmp(wrt, "weights") && sel.adapter) {
        fprintf(stderr, "t2 model logprob-grad: --wrt weights is for the base model (no --expert or --mix)\n");
        rc = T2_EXIT_USAGE;
    }
    if (!rc && k0 >= n) {
        fprintf(stderr, "t2 model logprob-grad: --completion-start %lld must be below the %d ids\n", k0, n);
        rc = T2_EXIT_USAGE;
    }
    if (!rc) {
        size_t total = 0;
        for (int i = 0; sel.svd && i < t2_svd_count(sel.svd); i++) total += (size_t)t2_svd_rank(sel.svd, i);
        float *dz = strcmp(wrt, "weights") ? calloc(total ? total : 1, sizeof *dz) : NULL;
        t2_weight_grads *dw = strcmp(wrt, "weights") ? NULL : t2_weight_grads_new(m, &s);
        double J = 0;
        t2_grad_request rq = {.ids = ids, .n = n, .k0 = (int)k0, .weight = 1.0f, .svd = sel.svd, .adapter = sel.adapter,
                              .dz = dz, .dw = dw};
        char jbuf[64];
        if (!dz && !dw) rc = cli_fail("logprob-grad", s ? s : T2_ERR_NOMEM);
        else if ((s = t2_logprob_grad(m, &rq, &J))) rc = cli_fail("logprob-grad", s);
        snprintf(jbuf, sizeof jbuf, "%.9g", J);
        const char *meta[] = {"logprob", jbuf, "wrt", wrt, NULL};
        if (!rc && !strcmp(wrt, "z")) {
            if ((s = write_dz(out, sel.svd, dz, meta))) rc = cli_fail("cannot write gradients", s);
        } else if (!rc && !strcmp(wrt, "alpha")) {
            /* z' = Σ αₖ zₖ  ⇒  ∂J/∂αₖ = Σ ∂J/∂z' ⊙ zₖ */
            float *da = calloc((size_t)sel.n_parts, sizeof *da);
            t2_tensor_info t = {.name = "alpha", .dtype = T2_F32, .ndim = 1, .shape = {sel.n_parts}, .data = da};
            if (!da) rc = cli_fail("logprob-grad", T2_ERR_NOMEM);
            else if ((s = t2_expert_mix_grad((const t2_expert *const *)sel.parts, sel.n_parts, 0, dz, da))) rc = cli_fail("alpha", s);
            else if ((s = t2_st_write(out, &t, 1, meta))) rc = cli_fail("cannot write gradients", s);
            free(da);
        } else if (!rc) {
            int nt = t2_weight_grads_count(dw);
            t2_tensor_info *t = calloc((size_t)nt, sizeof *t);
            for (int i = 0; t && i < nt; i++) {
                t[i].dtype = T2_F32;
                t[i].name = t2_weight_grads_name(dw, i, t[i].shape, &t[i].ndim);
                t[i].data = t2_weight_grads_data(dw, i);
            }
            if (!t) rc = cli_fail("logprob-grad", T2_ERR_NOMEM);
            else if ((s = t2_st_write(out, t, (size_t)nt, meta))) rc = cli_fail("cannot write gradients", s);
            free(t);
        }
        if (!rc) printf("logprob %.9g (%d completion tokens); gradients with respect to %s written to %s\n", J, n - (int)k0,
                        wrt, out);
        free(dz);
        t2_weight_grads_free(dw);
    }
    free(ids);
    svf_sel_free(&sel);
    t2_model_free(m);
    cli_free(&o);
    return rc;
}
