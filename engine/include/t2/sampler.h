/* t2/sampler.h — choosing the next token from logits, and generation loops.
 *
 * Sampling order: temperature 0 is greedy (argmax, lowest id on ties). Otherwise logits are divided by
 * the temperature, restricted to the top_k most likely tokens (0 = all), then to the smallest set
 * whose probability reaches top_p (1 = all), renormalised, and drawn with a seeded generator: the same
 * seed and logits give the same tokens on every machine.
 * The log-probability reported for a chosen token is under the model's own distribution
 * (log_softmax of the raw logits, temperature 1), the quantity REINFORCE needs. */
#ifndef T2_SAMPLER_H
#define T2_SAMPLER_H

#include <stddef.h>
#include <stdint.h>
#include <t2/model.h>
#include <t2/svf.h>
#include <t2/status.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct t2_sampler_params {
    float temperature;   /* 0 = greedy */
    int top_k;           /* 0 = off */
    float top_p;         /* 1 = off */
    uint64_t seed;
} t2_sampler_params;

t2_sampler_params t2_sampler_default_params(void);

typedef struct t2_sampler t2_sampler;

/* Caller frees with t2_sampler_free. Scratch for n_vocab tokens is allocated here, not per call. */
t2_sampler *t2_sampler_new(const t2_sampler_params *p, int n_vocab, t2_status *err);
void t2_sampler_free(t2_sampler *s);

/* Choose a token from logits [n_vocab]; *logprob (if non-NULL) gets its log-probability. */
int t2_sampler_sample(t2_sampler *s, const float *logits, float *logprob);

/* log_softmax(logits)[tok], computed stably. */
float t2_logprob(const float *logits, int n_vocab, int tok);

/* Why generation ended: max_tokens reached, an eos token, a stop sequence, the callback asked, or the
 * context (n_ctx positions) is full. */
typedef enum t2_stop_reason { T2_STOP_LENGTH = 0, T2_STOP_EOS, T2_STOP_SEQUENCE, T2_STOP_CALLBACK, T2_STOP_CONTEXT } t2_stop_reason;

/* Called after each generated token; return nonzero to stop. */
typedef int (*t2_token_cb)(void *user, int token, float logprob);

typedef struct t2_generate_params {
    int max_tokens;
    int stop_at_eos;               /* stop at the config's eos_token_id(s) (the eos is kept in the output) */
    const int32_t *const *stops;   /* [n_stops] token sequences that end generation when produced */
    const int *stop_lens;          /* [n_stops] */
    int n_stops;
    t2_token_cb on_token;          /* optional */
    void *user;
    const t2_adapter *adapter;     /* optional SVF adapter (the context needs its SVD cache) */
} t2_generate_params;

typedef struct t2_generation {
    int32_t *tokens;      /* [n] generated ids; owned by the struct, freed by t2_generation_clear */
    float *logprobs;      /* [n] */
    int n;
    t2_stop_reason stop;
} t2_generation;

/* Run the prompt on sequence seq of ctx (from position 0, in chunks of the context's n_batch) and
 * generate up to max_tokens tokens. */
t2_status t2_generate(t2_ctx *ctx, int seq, const int32_t *prompt, int n_prompt, t2_sampler *smp,
                      const t2_generate_params *gp, t2_generation *out);
/* Free what a t2_generation owns; NULL-safe. */
void t2_generation_clear(t2_generation *g);

#ifdef __cplusplus
}
#endif
#endif
