/* SVF decode speed: how much serving experts costs against the base model, same process.
 *
 *   bench_svf --model DIR [--threads 2] [--gen 32] [--prompt 16] [--svd-cache FILE]
 *
 * Rows (decode tokens/s after a short prompt, greedy):
 *   base                        no adapter
 *   merged, 1 expert            W' recomposed once and cached
 *   factored, mixture of 3      y = U (c ⊙ Vᵀx), c from z' = Σ αₖ zₖ
 *   batch 8, 1 expert           8 sequences decoded together, one factored expert for all
 *   batch 8, 8 experts          8 sequences decoded together, each its own factored expert
 *   batch 8, 1 expert merged    the merged reference for the batch
 * Experts have random z in [0.5, 1.5]. The SVD cache is built on first use (slow, cached).
 * Not a test. */
#include <t2/error.h>
#include <t2/model.h>
#include <t2/svf.h>

#include "bench_util.h"
#include "kernels.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void progress(void *user, int i, int n, const char *name, double secs, double err) {
    (void)user;
    fprintf(stderr, "\rsvd %d/%d %s %.1fs err %.2g      ", i + 1, n, name, secs, err);
    if (i + 1 == n) fputc('\n', stderr);
}

/* Decode G tokens on B sequences at once, row r under ad[r]; returns tokens/s (all rows). */
static double run(t2_ctx *ctx, int B, int P, int G, const t2_adapter *const *ad, int vocab) {
    int32_t tok[64], pos[64], seq[64];
    const t2_adapter *adr[64];
    float *logits = malloc((size_t)B * vocab * sizeof *logits);
    /* prompts: one batch of B×P rows */
    int n = 0;
    for (int s = 0; s < B; s++) {
        t2_ctx_seq_clear(ctx, s);
        for (int p = 0; p < P; p++, n++) tok[n] = (s * 31 + p * 7 + 1) % vocab, pos[n] = p, seq[n] = s, adr[n] = ad ? ad[s] : NULL;
    }
    uint8_t want[64] = {0};
    for (int s = 0; s < B; s++) want[s * P + P - 1] = 1;
    t2_batch b = {.n = n, .token = tok, .pos = pos, .seq = seq, .want = want};
    if (t2_ctx_decode_adapted(ctx, &b, ad ? adr : NULL, logits)) {
        fprintf(stderr, "bench_svf: %s\n", t2_last_error());
        exit(1);
    }
    double t0 = now();
    for (int g = 0; g < G; g++) {
        for (int s = 0; s < B; s++) {
            const float *l = logits + (size_t)s * vocab;
            int best = 0;
            for (int v = 1; v < vocab; v++)
                if (l[v] > l[best]) best = v;
            tok[s] = best, pos[s] = P + g, seq[s] = s, adr[s] = ad ? ad[s] : NULL, want[s] = 1;
        }
        t2_batch d = {.n = B, .token = tok, .pos = pos, .seq = seq, .want = want};
        if (t2_ctx_decode_adapted(ctx, &d, ad ? adr : NULL, logits)) {
            fprintf(stderr, "bench_svf: %s\n", t2_last_error());
            exit(1);
        }
    }
    double t = now() - t0;
    free(logits);
    return (double)B * G / t;
}

static t2_expert *random_expert(const t2_svd *svd, unsigned seed) {
    t2_status s;
    t2_expert *e = t2_expert_new(svd, "bench", &s);
    for (int i = 0; i < t2_expert_count(e); i++) {
        float *z = t2_expert_z(e, i);
        for (int j = 0; j < t2_expert_len(e, i); j++) {
            seed = seed * 1664525u + 1013904223u;
            z[j] = 0.5f + (float)(seed >> 8) / (float)(1u << 24);
        }
    }
    return e;
}

int main(int argc, char **argv) {
    const char *dir = NULL, *cache = NULL;
    int threads = 2, G = 32, P = 4;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--model") && i + 1 < argc) dir = argv[++i];
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--gen") && i + 1 < argc) G = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--prompt") && i + 1 < argc) P = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--svd-cache") && i + 1 < argc) cache = argv[++i];
        else {
            fprintf(stderr, "usage: bench_svf --model DIR [--threads N] [--gen G] [--prompt P] [--svd-cache FILE]\n");
            return 2;
        }
    }
    if (!dir || G < 1 || P < 1 || P > 8) {
        fprintf(stderr, "bench_svf: --model is required; 1 <= prompt <= 8\n");
        return 2;
    }
    t2_status s;
    t2_model_params mp = t2_model_default_params();
    mp.path = dir;
    mp.n_threads = threads;
    t2_model *m = t2_model_load(&mp, &s);
    if (!m) {
        fprintf(stderr, "bench_svf: %s\n", t2_last_error());
        return 1;
    }
    t2_svd_params sp = t2_svd_default_params();
    sp.path = cache;
    sp.progress = progress;
    double t0 = now();
    t2_svd *svd = t2_svd_load(m, &sp, &s);
    if (!svd) {
        fprintf(stderr, "bench_svf: %s\n", t2_last_error());
        return 1;
    }
    fprintf(stderr, "SVD cache ready in %.1f s: %s\n", now() - t0, t2_svd_path(svd));
    int vocab = t2_model_get_config(m)->vocab_size;
    t2_ctx_params cp = t2_ctx_default_params();
    cp.n_ctx = P + G + 1;
    cp.n_seq = 8;
    cp.n_batch = 8 * P;
    t2_ctx *ctx = t2_ctx_new(m, &cp, &s);
    if (!ctx || t2_ctx_set_svd(ctx, svd, (size_t)3 << 30)) {
        fprintf(stderr, "bench_svf: %s\n", t2_last_error());
        return 1;
    }
    t2_expert *ex[8];
    for (int i = 0; i < 8; i++) ex[i] = random_expert(svd, 100u + (unsigned)i);
    float alpha[3] = {0.5f, 0.3f, 0.2f};
    t2_expert *mix = t2_expert_mix((const t2_expert *const *)ex, alpha, 3, 0, &s);
    t2_adapter *merged = t2_adapter_new(svd, ex[0], T2_APPLY_MERGED, &s);
    t2_adapter *fmix = t2_adapter_new(svd, mix, T2_APPLY_FACTORED, &s);
    t2_adapter *fac[8];
    for (int i = 0; i < 8; i++) fac[i] = t2_adapter_new(svd, ex[i], T2_APPLY_FACTORED, &s);

    const t2_adapter *one_m[8], *one_f[8], *eight[8];
    for (int i = 0; i < 8; i++) one_m[i] = merged, one_f[i] = fac[0], eight[i] = fac[i];
    run(ctx, 1, P, 2, one_m, vocab); /* recompose the merged weights outside the timing */
    run(ctx, 8, P, 2, NULL, vocab);  /* warm-up */

    double base = run(ctx, 1, P, G, NULL, vocab);
    double mer = run(ctx, 1, P, G, one_m, vocab);
    const t2_adapter *mixrow[1] = {fmix};
    double fm = run(ctx, 1, P, G, mixrow, vocab);
    double b1 = run(ctx, 8, P, G, one_f, vocab);
    double b8 = run(ctx, 8, P, G, eight, vocab);
    double b1m = run(ctx, 8, P, G, one_m, vocab);
    double bb = run(ctx, 8, P, G, NULL, vocab);

    printf("model %s (%s weights, SVD cache %s factors), kernels %s, %d threads\n", dir,
           t2_dtype_name(t2_model_weight_dtype(m)), "model-dtype", t2_kernels_best()->name, threads);
    printf("| decode | tokens/s | ratio |\n|---|---|---|\n");
    printf("| base, 1 sequence | %.2f | 1.00 (base) |\n", base);
    printf("| merged, 1 expert | %.2f | %.2f of base |\n", mer, mer / base);
    printf("| factored, mixture of 3 experts | %.2f | %.2f of base |\n", fm, fm / base);
    printf("| batch of 8, base | %.2f | %.2f of base |\n", bb, bb / base);
    printf("| batch of 8, 1 expert merged | %.2f | %.2f of batch base |\n", b1m, b1m / bb);
    printf("| batch of 8, 1 expert factored | %.2f | %.2f of batch base |\n", b1, b1 / bb);
    printf("| batch of 8, 8 different experts (factored) | %.2f | %.2f of 1-expert factored, %.2f of 1-expert merged |\n", b8,
           b8 / b1, b8 / b1m);
    for (int i = 0; i < 8; i++) t2_adapter_free(fac[i]), t2_expert_free(ex[i]);
    t2_adapter_free(merged);
    t2_adapter_free(fmix);
    t2_expert_free(mix);
    t2_ctx_free(ctx);
    t2_svd_free(svd);
    t2_model_free(m);
    return 0;
}
