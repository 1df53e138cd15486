/* The single-sequence generation loop: prompt in chunks of n_batch (one GEMM pass each), then one
 * decode row per token. Logits of the last prompt row and of every decoded row land in one
 * [vocab] buffer allocated once per call. */
#include <t2/sampler.h>
#include <t2/error.h>

#include <stdlib.h>
#include <string.h>

void t2_generation_clear(t2_generation *g) {
    if (!g) return;
    free(g->tokens);
    free(g->logprobs);
    memset(g, 0, sizeof *g);
}

static int ends_with(const int32_t *toks, int n, const int32_t *stop, int len) {
    if (len <= 0 || len > n) return 0;
    return !memcmp(toks + n - len, stop, (size_t)len * sizeof *stop);
}

t2_status t2_generate(t2_ctx *ctx, int seq, const int32_t *prompt, int n_prompt, t2_sampler *smp,
                      const t2_generate_params *gp, t2_generation *out) {
    memset(out, 0, sizeof *out);
    if (n_prompt < 1 || !prompt || !gp || gp->max_tokens < 0)
        return t2_set_error(T2_ERR_INVALID_ARG, "generate: need a non-empty prompt and max_tokens >= 0");
    const t2_model_config *cfg = t2_model_get_config(t2_ctx_model(ctx));
    int V = cfg->vocab_size, nb = t2_ctx_get_params(ctx).n_batch;
    float *logits = malloc((size_t)V * sizeof *logits);
    int32_t *pos = malloc((size_t)nb * sizeof *pos), *sq = malloc((size_t)nb * sizeof *sq);
    const t2_adapter **ad = malloc((size_t)nb * sizeof *ad);
    out->tokens = malloc(((size_t)gp->max_tokens + 1) * sizeof *out->tokens);
    out->logprobs = malloc(((size_t)gp->max_tokens + 1) * sizeof *out->logprobs);
    t2_status s = T2_OK;
    if (!logits || !pos || !sq || !ad || !out->tokens || !out->logprobs) s = t2_set_error(T2_ERR_NOMEM, "generate: out of memory");
    for (int r = 0; !s && r < nb; r++) ad[r] = gp->adapter;
    t2_ctx_seq_clear(ctx, seq);
    for (int i = 0; !s && i < n_prompt; i += nb) {
        int n = n_prompt - i < nb ? n_prompt - i : nb;
        for (int r = 0; r < n; r++) {
            pos[r] = i + r;
            sq[r] = seq;
        }
        t2_batch b = {.n = n, .token = prompt + i, .pos = pos, .seq = sq, .want = NULL};
        s = t2_ctx_decode_adapted(ctx, &b, gp->adapter ? ad : NULL, logits);
    }
    out->stop = T2_STOP_LENGTH;
    for (int t = 0; !s && t < gp->max_tokens; t++) {
        float lp;
        int tok = t2_sampler_sample(smp, logits, &lp);
        out->tokens[out->n] = tok;
        out->logprobs[out->n] = lp;
        out->n++;
        if (gp->on_token && gp->on_token(gp->user, tok, lp)) {
            out->stop = T2_STOP_CALLBACK;
            break;
        }
        int stop = 0;
        for (int e = 0; gp->stop_at_eos && e < cfg->n_eos; e++) stop |= tok == cfg->eos_token_ids[e];
        if (stop) {
            out->stop = T2_STOP_EOS;
            break;
        }
        for (int k = 0; k < gp->n_stops && !stop; k++) stop = ends_with(out->tokens, out->n, gp->stops[k], gp->stop_lens[k]);
        if (stop) {
            out->stop = T2_STOP_SEQUENCE;
            break;
        }
        if (t + 1 == gp->max_tokens) break;
        if (n_prompt + t >= t2_ctx_get_params(ctx).n_ctx) {
            out->stop = T2_STOP_CONTEXT;
            break;
        }
        int32_t p = n_prompt + t, tk = tok, sq1 = seq;
        t2_batch b = {.n = 1, .token = &tk, .pos = &p, .seq = &sq1, .want = NULL};
        s = t2_ctx_decode_adapted(ctx, &b, gp->adapter ? ad : NULL, logits);
    }
    free(logits);
    free(pos);
    free(sq);
    free(ad);
    if (s) t2_generation_clear(out);
    return s;
}
