/* One SVF REINFORCE step (B rollouts: forward, backward, Adam update) — the C side of
 * bench/torch_reinforce.py, same work: MLP gate/up/down adapted, z = 2·sigmoid(p) starting at 1,
 * B rollouts of P prompt + C completion random ids (fixed seed), rewards ±1 alternating, λ = 0,
 * Adam lr 2e-3 with gradient-norm clip 1e-3.
 *
 *   bench_reinforce --model DIR [--threads 2] [--batch 8] [--prompt 64] [--completion 64] [--steps 3]
 *                   [--svd-cache FILE] [--json OUT]
 * Prints ms per step (median after a warm-up step) and the peak resident memory. Not a test. */
#include <t2/error.h>
#include <t2/model.h>
#include <t2/svf.h>
#include <t2/train.h>

#include "bench_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

int main(int argc, char **argv) {
    const char *dir = NULL, *cache = NULL, *json = NULL;
    int threads = 2, B = 8, P = 64, C = 64, steps = 3;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--model") && i + 1 < argc) dir = argv[++i];
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--batch") && i + 1 < argc) B = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--prompt") && i + 1 < argc) P = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--completion") && i + 1 < argc) C = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--steps") && i + 1 < argc) steps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--svd-cache") && i + 1 < argc) cache = argv[++i];
        else if (!strcmp(argv[i], "--json") && i + 1 < argc) json = argv[++i];
        else {
            fprintf(stderr, "usage: bench_reinforce --model DIR [--threads N] [--batch B] [--prompt P] [--completion C] "
                            "[--steps S] [--svd-cache FILE] [--json OUT]\n");
            return 2;
        }
    }
    if (!dir || B < 1 || P < 1 || C < 1 || steps < 1 || steps > 50) {
        fprintf(stderr, "bench_reinforce: --model is required; batch, prompt, completion, steps positive\n");
        return 2;
    }
    t2_status s;
    t2_model_params mp = t2_model_default_params();
    mp.path = dir;
    mp.n_threads = threads;
    t2_model *m = t2_model_load(&mp, &s);
    t2_svd_params sp = t2_svd_default_params();
    sp.path = cache;
    t2_svd *svd = m ? t2_svd_load(m, &sp, &s) : NULL;
    if (!svd) {
        fprintf(stderr, "bench_reinforce: %s\n", t2_last_error());
        return 1;
    }
    size_t n = 0;
    for (int i = 0; i < t2_svd_count(svd); i++) n += (size_t)t2_svd_rank(svd, i);
    t2_reinforce_params rp = t2_reinforce_default_params(); /* lr 2e-3, clip 1e-3, λ 0 */
    t2_svf_policy *pol = t2_svf_policy_new(svd, NULL, 2.0f, &s);
    t2_adam *adam = pol ? t2_adam_new(n, &rp.adam, &s) : NULL;
    if (!adam) {
        fprintf(stderr, "bench_reinforce: %s\n", t2_last_error());
        return 1;
    }
    int V = t2_model_get_config(m)->vocab_size, T = P + C;
    int32_t *ids = malloc((size_t)B * T * sizeof *ids);
    t2_rollout *rs = malloc((size_t)B * sizeof *rs);
    unsigned seed = 12345;
    for (int i = 0; i < B * T; i++) seed = seed * 1664525u + 1013904223u, ids[i] = (int32_t)((seed >> 8) % (unsigned)V);
    for (int i = 0; i < B; i++) rs[i] = (t2_rollout){.ids = ids + (size_t)i * T, .n = T, .k0 = P, .reward = i % 2 ? -1.0f : 1.0f};
    double times[51];
    t2_reinforce_stats st = {0};
    for (int k = -1; k < steps; k++) {
        double t0 = now();
        if (t2_reinforce_step(m, pol, adam, rs, B, &rp, &st)) {
            fprintf(stderr, "bench_reinforce: %s\n", t2_last_error());
            return 1;
        }
        if (k >= 0) times[k] = now() - t0;
    }
    double ms = 1e3 * median(times, steps);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double rss = ru.ru_maxrss / 1024.0;
    printf("T2 REINFORCE step: %s (%s weights), %d adapted matrices (%zu parameters), batch %d x (%d + %d) tokens, %d threads\n",
           dir, t2_dtype_name(t2_model_weight_dtype(m)), t2_svd_count(svd), n, B, P, C, threads);
    printf("  %.0f ms/step (median of %d), %.0f tokens/s, peak RSS %.0f MB (weights are mmap'd: %.0f MB of it is the page cache's)\n",
           ms, steps, B * T / (ms / 1e3), rss, t2_st_data_bytes(t2_model_tensors(m)) / 1e6);
    printf("  last step: mean log-prob per completion token %.3f, gradient norm %.3g\n", st.mean_logprob, st.grad_norm);
    if (json) {
        FILE *f = fopen(json, "w");
        if (f) {
            fprintf(f, "{\"ms_per_step\": %.1f, \"peak_rss_mb\": %.0f, \"tokens_per_step\": %d, \"threads\": %d, \"batch\": %d}\n", ms,
                    rss, B * T, threads, B);
            fclose(f);
        }
    }
    free(ids);
    free(rs);
    t2_adam_free(adam);
    t2_svf_policy_free(pol);
    t2_svd_free(svd);
    t2_model_free(m);
    return 0;
}
