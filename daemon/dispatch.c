/* The first pass: turn a request's routing (base, an explicit mixture, or a dispatch plugin) into the
 * expert the second pass runs under. Plugins decide through the host API, so their own generations
 * (the classification prompt) run in the same batches as everyone else's requests. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <t2/error.h>

#include "t2d.h"

void t2d_decision_clear(t2d_decision *dc) {
    if (!dc) return;
    t2_expert_free(dc->expert);
    t2_lora_free(dc->lora);
    memset(dc, 0, sizeof *dc);
}

int64_t t2d_decision_params(const t2d_decision *dc) {
    int64_t n = 0;
    if (dc->lora) return (int64_t)t2_lora_n_params(dc->lora);
    if (dc->expert)
        for (int i = 0; i < t2_expert_count(dc->expert); i++) n += t2_expert_len(dc->expert, i);
    return n;
}

static t2_status explicit_mix(t2d *d, const char *tenant, const t2d_route *r, t2d_decision *out, char *err, size_t cap) {
    int k = r->n_mix, nm = t2_svd_count(t2x_svd(d->x));
    if (k > T2D_DECISION_MAX_PARTS) {
        snprintf(err, cap, "a mixture has at most %d experts", T2D_DECISION_MAX_PARTS);
        return T2_ERR_INVALID_ARG;
    }
    int per_matrix = 0;
    for (int i = 0; i < k; i++) per_matrix |= r->mix_alpha_pm && r->mix_alpha_pm[i];
    float *alpha = malloc((size_t)k * (size_t)(per_matrix ? nm : 1) * sizeof *alpha);
    if (!alpha) {
        snprintf(err, cap, "out of memory");
        return T2_ERR_NOMEM;
    }
    for (int i = 0; i < k; i++) {
        if (per_matrix) {
            for (int j = 0; j < nm; j++) alpha[i * nm + j] = r->mix_alpha_pm[i] ? r->mix_alpha_pm[i][j] : r->mix_alpha[i];
        } else {
            alpha[i] = r->mix_alpha[i];
        }
        snprintf(out->names[i], sizeof out->names[i], "%s", r->mix_names[i]);
        out->alpha[i] = r->mix_alpha[i];
    }
    out->n_parts = k;
    char display[512];
    t2_status st;
    if (k == 1 && !per_matrix && alpha[0] == 1.0f) {   /* one expert as it is: SVF or LoRA */
        free(alpha);
        st = t2d_expert_open(d, tenant, r->mix_names[0], &out->expert, &out->lora, err, cap);
        if (st == T2_OK) snprintf(out->detail, sizeof out->detail, "{\"expert\": \"%s\"%s}", r->mix_names[0], out->lora ? ", \"kind\": \"lora\"" : "");
        return st;
    }
    out->expert = t2d_expert_mix(d, tenant, r->mix_names, alpha, k, per_matrix, display, sizeof display, err, cap, &st);
    free(alpha);
    if (out->expert) snprintf(out->detail, sizeof out->detail, "{\"mix\": \"%s\"}", display);
    return st;
}

t2_status t2d_decide(t2d *d, const char *tenant, const t2d_route *r, t2d_decision *out, char *err, size_t cap) {
    memset(out, 0, sizeof *out);
    double t0 = t2x_now();
    t2_status st = T2_OK;
    if (r->base) {
        snprintf(out->detail, sizeof out->detail, "{\"base\": true}");
    } else if (r->n_mix > 0) {
        st = explicit_mix(d, tenant, r, out, err, cap);
    } else {
        const char *name = r->dispatch && *r->dispatch ? r->dispatch : d->cfg.default_dispatch;
        if (name && *name) {
            void *state = NULL;
            const t2_plugin *pl = t2_plugins_find(d->plugins, T2_PLUGIN_DISPATCH, name, &state);
            if (!pl) {
                snprintf(err, cap, "no dispatch plugin \"%s\" is loaded (see t2 plugins)", name);
                out->seconds = t2x_now() - t0;
                return T2_ERR_NOT_FOUND;
            }
            snprintf(out->dispatch, sizeof out->dispatch, "%s", name);
            t2_host h;
            t2d_host_init(&h, d, tenant, 0, (uint64_t)(t0 * 1e6), r->cancel);
            t2_dispatch_request rq = {.prompt = r->prompt, .system = r->system, .task_id = r->task_id, .examples = r->examples,
                                      .settings_json = r->settings && *r->settings ? r->settings : "{}"};
            t2_dispatch_decision dd;
            memset(&dd, 0, sizeof dd);
            const t2_dispatch_ops *ops = pl->ops;
            t2_clear_error();
            st = ops->decide(state, &h, &rq, &dd);
            if (st != T2_OK) {
                snprintf(err, cap, "dispatch %s: %s", name, t2d_host_error(&h, st));
                d->api->expert_free(dd.expert);
            } else {
                dd.label[sizeof dd.label - 1] = 0;
                dd.detail[sizeof dd.detail - 1] = 0;
                snprintf(out->label, sizeof out->label, "%s", dd.label);
                snprintf(out->detail, sizeof out->detail, "%s", dd.detail[0] ? dd.detail : "{}");
                if (dd.expert) {
                    out->expert = dd.expert->e;
                    out->lora = dd.expert->lora;
                    dd.expert->e = NULL;
                    dd.expert->lora = NULL;
                    out->n_parts = 1;
                    snprintf(out->names[0], sizeof out->names[0], "%s", dd.expert->name);
                    out->alpha[0] = 1;
                    d->api->expert_free(dd.expert);
                }
            }
        }
    }
    out->seconds = t2x_now() - t0;
    return st;
}
