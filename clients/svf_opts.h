/* The adapter options shared by `t2 model logits`, `t2 model generate` and `t2 model logprob-grad`:
 *   --expert E.safetensors | --mix E1.safetensors:0.3,E2.safetensors:0.7
 *   [--apply factored|merged] [--modules mlp|attn|all] [--svd-cache FILE]
 * (the modules default to the expert's own metadata, else mlp), or
 *   --lora L.safetensors          (a LoRA made for this model; no SVD cache) */
#ifndef T2_SVF_OPTS_H
#define T2_SVF_OPTS_H

#include "cli.h"

#include <t2/lora.h>
#include <t2/model.h>
#include <t2/svf.h>

typedef struct svf_sel {
    t2_svd *svd;          /* NULL when no expert was asked for */
    t2_lora *lora;        /* --lora (then svd and expert are NULL) */
    t2_expert *expert;    /* the expert or the mixture */
    t2_adapter *adapter;  /* the expert's, the mixture's or the LoRA's */
    int n_parts;          /* --mix: the component experts and their weights */
    t2_expert **parts;
    float *alpha;
} svf_sel;

/* Parse the options (before cli_done); if an expert or mixture was asked for, load the SVD cache
 * (building it, with progress on stderr, if needed) and compile the adapter (factored unless
 * --apply merged); a mixture's components and weights are kept in parts/alpha. With --lora, load the
 * LoRA (checked against m) and make its adapter instead. Returns an exit code. */
/* need_svd: load the SVD cache (from --modules / --svd-cache) even when no expert is asked for. */
int svf_select(cli_opts *o, t2_model *m, int need_svd, svf_sel *sel);
/* Attach sel's SVD cache to ctx if there is one. Returns an exit code. */
int svf_attach(const svf_sel *sel, t2_ctx *ctx);
void svf_sel_free(svf_sel *sel);

/* Load the SVD cache with progress lines on stderr (quiet: only notes). */
t2_svd *svf_load_svd(t2_model *m, t2_modules modules, const char *path, int dtype, int precision, int rebuild, int verify,
                     int verbose, t2_status *err);

#endif
