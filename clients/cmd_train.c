/* `t2 model logprob-grad`: the log-probability of a completion and its gradient with respect to the
 * SVF z vectors, the mixture weights α, a LoRA's factors, or every weight, written as safetensors;
 * with --kl-coef λ the gradient is of J − λ·Σ_t KL(π_adapted ‖ π_base) (the paper's regulariser). */
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

/* dlora [t2_lora_n_params] → "<matrix>.lora_A" [rank × cols], "<matrix>.lora_B" [rows × rank] (shapes from
 * the model's weights, layout of t2_lora_params). */
static t2_status write_dlora(const char *out, const t2_model *m, const t2_lora *l, const float *dl, const char *const *meta) {
    int n = t2_lora_count(l), rank = t2_lora_rank(l);
    t2_tensor_info *t = calloc(2 * (size_t)n + 1, sizeof *t);
    char (*names)[160] = calloc(2 * (size_t)n + 1, sizeof *names);
    t2_status s = T2_OK;
    if (!t || !names) s = t2_set_error(T2_ERR_NOMEM, "out of memory");
    size_t off = 0;
    for (int i = 0; !s && i < n; i++) {
        char wn[160];
        snprintf(wn, sizeof wn, "%s.weight", t2_lora_name(l, i));
        const t2_tensor_info *w = t2_st_find(t2_model_tensors(m), wn);
        if (!w || w->ndim != 2) {
            s = t2_set_error(T2_ERR_NOT_FOUND, "no 2-D weight %s in the model", wn);
            break;
        }
        int64_t rows = w->shape[0], cols = w->shape[1];
        snprintf(names[2 * i], sizeof names[0], "%s.lora_A", t2_lora_name(l, i));
        snprintf(names[2 * i + 1], sizeof names[0], "%s.lora_B", t2_lora_name(l, i));
        t[2 * i] = (t2_tensor_info){.name = names[2 * i], .dtype = T2_F32, .ndim = 2, .shape = {rank, cols}, .data = dl + off};
        off += (size_t)rank * (size_t)cols;
        t[2 * i + 1] = (t2_tensor_info){.name = names[2 * i + 1], .dtype = T2_F32, .ndim = 2, .shape = {rows, rank},
                                        .data = dl + off};
        off += (size_t)rows * (size_t)rank;
    }
    if (!s && off != t2_lora_n_params(l))
        s = t2_set_error(T2_ERR_SHAPE, "LoRA layout: %zu parameters, counted %zu", t2_lora_n_params(l), off);
    if (!s) s = t2_st_write(out, t, 2 * (size_t)n, meta);
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
    double kl_coef = 0;
    int rc = T2_EXIT_OK, has_lora = cli_str(&o, "lora") != NULL, want_kl = cli_str(&o, "kl-coef") != NULL;
    if (!wrt) wrt = has_lora ? "lora" : "z";
    int is_lora = !strcmp(wrt, "lora");
    if (!dir || !ids_s || !out || cli_int(&o, "completion-start", 1, 1 << 24, &k0) || k0 < 1) {
        fprintf(stderr, "t2 model logprob-grad: --model DIR --ids P1,P2,... --completion-start K --out FILE are required\n");
        rc = T2_EXIT_USAGE;
    } else if (strcmp(wrt, "z") && strcmp(wrt, "alpha") && strcmp(wrt, "weights") && !is_lora) {
        fprintf(stderr, "t2 model logprob-grad: --wrt must be z, alpha, weights or lora\n");
        rc = T2_EXIT_USAGE;
    } else if (is_lora != has_lora) {
        fprintf(stderr, "t2 model logprob-grad: --wrt lora goes with --lora FILE (and --lora with --wrt lora)\n");
        rc = T2_EXIT_USAGE;
    } else if (cli_float(&o, "kl-coef", 0, 1e9, &kl_coef)) {
        rc = T2_EXIT_USAGE;
    }
    t2_model *m = NULL;
    t2_status s = T2_OK;
    svf_sel sel = {0};
    int32_t *ids = NULL;
    int n = 0;
    if (!rc && cli_parse_ids(ids_s, "--ids", &ids, &n)) rc = T2_EXIT_USAGE;
    if (!rc) m = cli_load_model(dir, 0, 0, &rc);
    if (!rc) rc = svf_select(&o, m, strcmp(wrt, "weights") && !is_lora, &sel);
    if (!rc && cli_done(&o, "model logprob-grad")) rc = T2_EXIT_USAGE;
    if (!rc && !strcmp(wrt, "alpha") && sel.n_parts < 1) {
        fprintf(stderr, "t2 model logprob-grad: --wrt alpha needs --mix\n");
        rc = T2_EXIT_USAGE;
    }
    if (!rc && !strcmp(wrt, "weights") && sel.adapter) {
        fprintf(stderr, "t2 model logprob-grad: --wrt weights is for the base model (no --expert or --mix)\n");
        rc = T2_EXIT_USAGE;
    }
    if (!rc && want_kl && !sel.adapter) {
        fprintf(stderr, "t2 model logprob-grad: --kl-coef needs --expert, --mix or --lora (KL to the base model)\n");
        rc = T2_EXIT_USAGE;
    }
    if (!rc && k0 >= n) {
        fprintf(stderr, "t2 model logprob-grad: --completion-start %lld must be below the %d ids\n", k0, n);
        rc = T2_EXIT_USAGE;
    }
    if (!rc) {
        size_t total = 0;
        for (int i = 0; sel.svd && i < t2_svd_count(sel.svd); i++) total += (size_t)t2_svd_rank(sel.svd, i);
        size_t np = is_lora ? t2_lora_n_params(sel.lora) : 0;
        float *dz = strcmp(wrt, "weights") && !is_lora ? calloc(total ? total : 1, sizeof *dz) : NULL;
        float *dl = is_lora ? calloc(np ? np : 1, sizeof *dl) : NULL;
        t2_weight_grads *dw = strcmp(wrt, "weights") ? NULL : t2_weight_grads_new(m, &s);
        double J = 0, kl = 0;
        t2_grad_request rq = {.ids = ids, .n = n, .k0 = (int)k0, .weight = 1.0f, .svd = sel.svd,
                              .adapter = is_lora ? NULL : sel.adapter, .dz = dz, .dw = dw, .kl_coef = (float)kl_coef,
                              .kl = want_kl ? &kl : NULL, .lora = sel.lora, .dlora = dl};
        char jbuf[64], klbuf[64], lbuf[64];
        if (!dz && !dw && !dl) rc = cli_fail("logprob-grad", s ? s : T2_ERR_NOMEM);
        else if ((s = t2_logprob_grad(m, &rq, &J))) rc = cli_fail("logprob-grad", s);
        snprintf(jbuf, sizeof jbuf, "%.9g", J);
        snprintf(klbuf, sizeof klbuf, "%.9g", kl);
        snprintf(lbuf, sizeof lbuf, "%.9g", kl_coef);
        /* with --kl-coef: kl = Σ_t KL(π_adapted ‖ π_base) over the completion */
        const char *meta[] = {"logprob", jbuf, "wrt", wrt, want_kl ? "kl" : NULL, klbuf, "kl_coef", lbuf, NULL};
        if (!rc && is_lora) {
            if ((s = write_dlora(out, m, sel.lora, dl, meta))) rc = cli_fail("cannot write gradients", s);
        } else if (!rc && !strcmp(wrt, "z")) {
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
        if (!rc && want_kl) printf("kl %.9g; ", kl);
        if (!rc) printf("logprob %.9g (%d completion tokens); gradients with respect to %s written to %s\n", J, n - (int)k0,
                        wrt, out);
        free(dz);
        free(dl);
        t2_weight_grads_free(dw);
    }
    free(ids);
    svf_sel_free(&sel);
    t2_model_free(m);
    cli_free(&o);
    return rc;
}
