/* t2/train.h — gradients for training: the log-probability of a completion and its gradient with
 * respect to the SVF expert vectors z (through the factored form and the normalisation Σs/Σ(s⊙z)),
 * or to every weight of the model.
 *
 * One sequence at a time: ids[0..n) is prompt + completion, the completion starts at k0, and
 *     J = Σ_{t=k0}^{n-1} log p(ids[t] | ids[0..t))
 * The forward keeps every activation of the sequence (memory ~ n × (14·hidden + 3·ffn) floats per
 * layer) and the backward runs through lm head, final norm, every layer (SwiGLU MLP, GQA attention
 * with the causal and sliding-window masks, RoPE with its scaling, RMSNorm) and the embedding. */
#ifndef T2_TRAIN_H
#define T2_TRAIN_H

#include <stddef.h>
#include <stdint.h>
#include <t2/lora.h>
#include <t2/model.h>
#include <t2/status.h>
#include <t2/svf.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Gradients of every weight, one f32 array per tensor of the model, in the model's tensor names. */
typedef struct t2_weight_grads t2_weight_grads;

/* Zeroed gradients shaped like m's weights. Caller frees with t2_weight_grads_free. */
t2_weight_grads *t2_weight_grads_new(const t2_model *m, t2_status *err);
void t2_weight_grads_free(t2_weight_grads *g);
/* Number of tensors, and tensor i: its name (borrowed), element count and data ([numel] f32,
 * shaped like the weight). Borrowed, valid until t2_weight_grads_free. */
int t2_weight_grads_count(const t2_weight_grads *g);
const char *t2_weight_grads_name(const t2_weight_grads *g, int i, int64_t shape[2], int *ndim);
float *t2_weight_grads_data(t2_weight_grads *g, int i);
/* Every gradient as one array ([*n] floats: tensor 0, tensor 1, ... in count order), laid out as
 * t2_model_trainable_params. Borrowed, valid until t2_weight_grads_free. */
float *t2_weight_grads_flat(t2_weight_grads *g, size_t *n);

typedef struct t2_grad_request {
    const int32_t *ids;        /* [n] prompt + completion */
    int n;
    int k0;                    /* first completion position, 1 ≤ k0 < n */
    float weight;              /* the gradient is of weight·J (REINFORCE: the advantage; 1 for plain J) */
    /* SVF: the adapter the sequence runs under (NULL = base weights). With dz, the gradient with respect
     * to the adapter's z (per matrix of its SVD cache, concatenated in cache order, [Σ ranks]) is added
     * to dz; without an adapter z = 1 is assumed (svd is then required). */
    const t2_svd *svd;
    const t2_adapter *adapter;
    float *dz;                 /* NULL or [Σ ranks], accumulated (+=) */
    t2_weight_grads *dw;       /* NULL or accumulated (+=); base weights only (adapter must be NULL) */
    /* λ > 0 (needs an adapter): the objective becomes weight·J − λ·Σ_t KL(π_adapted(·|t) ‖ π_base(·|t))
     * over the completion positions t, the paper's regulariser; its gradient is included in dz. */
    float kl_coef;
    double *kl;                /* NULL or out: Σ_t KL(π_adapted ‖ π_base) (computed when an adapter is given) */
    /* LoRA (t2/lora.h): the sequence runs under W + (alpha/rank)·B·A; with dlora the gradient with respect
     * to the LoRA's parameters (in t2_lora_params order, [t2_lora_n_params]) is added to dlora. Exclusive
     * with adapter, dz and dw; kl_coef / kl work as with an adapter (KL to the base model). */
    const t2_lora *lora;
    float *dlora;
} t2_grad_request;

/* Compute J (unweighted) into *logprob and accumulate the gradients of weight·J − λ·KL. */
t2_status t2_logprob_grad(t2_model *m, const t2_grad_request *rq, double *logprob);

/* ---------------- training every weight ---------------- */

/* Make every weight of m trainable: all matrices, norms and biases are copied (BF16/F16 widened) into one
 * owned f32 array laid out as t2_weight_grads_flat, and the model runs from it from then on (4 bytes per
 * parameter). The model must not be in use by another thread meanwhile. Calling it again does nothing. */
t2_status t2_model_make_trainable(t2_model *m);
/* The trainable parameters ([*n] floats), or NULL (*n = 0) before t2_model_make_trainable. Writing into
 * them changes the model (e.g. an optimiser step: t2_adam_step over the flat gradient). Borrowed, valid
 * until t2_model_free. */
float *t2_model_trainable_params(t2_model *m, size_t *n);
/* Write every weight of m (made trainable first if it is not) to one safetensors file at path, in the
 * tensor names and shapes the model was loaded from, as F32 or BF16 (rounded to nearest even); meta as for
 * t2_st_write. The folder's config.json and tokenizer files are the caller's to copy. */
t2_status t2_model_save_weights(t2_model *m, const char *path, t2_dtype dtype, const char *const *meta);
/* A freshly initialised model of config c, for training from scratch, written as F32 safetensors to path:
 * matrices drawn from N(0, std²) (the attention output and MLP down projections from N(0, std²/(2·layers)),
 * GPT-2's scaling of the residual branches), norm weights 1, biases 0; reproducible from seed. */
t2_status t2_model_write_init(const t2_model_config *c, const char *path, uint64_t seed, float std);

/* ---------------- optimisation ---------------- */

typedef struct t2_adam_params {
    float lr;          /* 2e-3 in the paper */
    float beta1, beta2, eps;
    float clip;        /* global gradient-norm clip; 0 = none (paper: 1e-3) */
} t2_adam_params;

t2_adam_params t2_adam_default_params(void);

typedef struct t2_adam t2_adam;

/* Adam state for n parameters. Caller frees with t2_adam_free. */
t2_adam *t2_adam_new(size_t n, const t2_adam_params *p, t2_status *err);
void t2_adam_free(t2_adam *a);
/* Change the learning rate from the next step on (for schedules: warm-up, cosine decay). */
void t2_adam_set_lr(t2_adam *a, float lr);
/* One step that decreases the loss whose gradient is grad: clip grad to the global norm, then the
 * bias-corrected Adam update of params. Returns the gradient norm before clipping. */
double t2_adam_step(t2_adam *a, float *params, const float *grad);
/* The optimiser's state, for checkpoints: number of parameters, first and second moments ([n] each) and
 * the step count. get copies out (any pointer may be NULL); set restores it. */
size_t t2_adam_size(const t2_adam *a);
void t2_adam_get_state(const t2_adam *a, float *m, float *v, long *t);
void t2_adam_set_state(t2_adam *a, const float *m, const float *v, long t);

/* ---------------- REINFORCE for SVF (paper §3.2) ---------------- */

/* The trainable form of an expert: raw parameters p, z = max_mult · sigmoid(p), as the reference does. */
typedef struct t2_svf_policy t2_svf_policy;

/* p starts where z = init's z (z = 1 without init); max_mult must exceed every initial z.
 * Caller frees with t2_svf_policy_free; svd must outlive it. */
t2_svf_policy *t2_svf_policy_new(const t2_svd *svd, const t2_expert *init, float max_mult, t2_status *err);
void t2_svf_policy_free(t2_svf_policy *p);
/* The current z as an expert (borrowed; rewritten by every step). */
const t2_expert *t2_svf_policy_expert(const t2_svf_policy *p);
/* The raw parameters p ([t2_svf_policy_size] floats, Σ ranks), for checkpoints. Borrowed, valid until the
 * next step or set. set copies p in and recomputes z. */
size_t t2_svf_policy_size(const t2_svf_policy *p);
const float *t2_svf_policy_params(const t2_svf_policy *p);
void t2_svf_policy_set_params(t2_svf_policy *p, const float *params);

typedef struct t2_rollout {
    const int32_t *ids;    /* prompt + sampled completion */
    int n;
    int k0;                /* first completion position */
    float reward;          /* +1 correct, −1 wrong (or any score) */
} t2_rollout;

typedef struct t2_reinforce_params {
    t2_adam_params adam;
    float kl_coef;         /* λ ∈ {0, 0.1, 0.2, 0.3} in the paper */
    int normalize;         /* rewards → (r − mean) / (std + 1e-6) over the batch */
    float reward_clip;     /* > 0: clip (normalised) rewards to [−c, c] */
} t2_reinforce_params;

t2_reinforce_params t2_reinforce_default_params(void);

typedef struct t2_reinforce_stats {
    double mean_reward;    /* before normalisation */
    double mean_logprob;   /* per completion token */
    double mean_kl;        /* per completion token */
    double grad_norm;      /* before clipping */
} t2_reinforce_stats;

/* One REINFORCE step on a batch of B scored rollouts: maximise
 *   (1/B) Σᵢ Aᵢ · log π_z(completionᵢ | promptᵢ) − λ · (1/B) Σᵢ KL(π_z ‖ π_base)
 * with respect to p through z = max_mult·sigmoid(p), by Adam with clipping (adam was made for
 * Σ ranks parameters). The policy's expert is updated. */
t2_status t2_reinforce_step(t2_model *m, t2_svf_policy *pol, t2_adam *adam, const t2_rollout *rs, int B,
                            const t2_reinforce_params *p, t2_reinforce_stats *stats);

/* The pieces of t2_reinforce_step, for callers that interleave its per-rollout gradients with other work
 * (the daemon runs each rollout's t2_logprob_grad as its own work item):
 * advantages: adv[i] from the rewards (normalised and clipped as p says); returns the mean reward.
 * Then for each rollout t2_logprob_grad with weight adv[i]/B, kl_coef λ/B, the policy's adapter, into dz.
 * update: dz (∂objective/∂z, [t2_svf_policy_size]) through z = max_mult·σ(p) into one Adam step on p
 * (dz is overwritten); z is updated; returns the gradient norm before clipping. */
double t2_reinforce_advantages(const t2_rollout *rs, int B, const t2_reinforce_params *p, float *adv);
double t2_svf_policy_update(t2_svf_policy *pol, t2_adam *adam, float *dz);

/* A training run: steps of REINFORCE on rollouts the caller samples and scores (generation and the
 * grader live outside the engine), evaluated on a validation split every eval_every steps; the expert
 * with the best validation score is kept (the paper's model selection). */
typedef struct t2_reinforce_loop {
    int steps;
    int batch;
    int eval_every;        /* 0: only at the start and the end */
    /* Fill rs[0..batch) with rollouts sampled under `current` and scored; their ids must stay valid until
     * the next call. */
    t2_status (*sample)(void *user, const t2_expert *current, t2_rollout *rs, int batch);
    /* Validation score of `current` (higher is better, e.g. accuracy). */
    t2_status (*validate)(void *user, const t2_expert *current, double *score);
    /* Optional: after each step (val is NAN when not evaluated at this step). */
    void (*progress)(void *user, int step, const t2_reinforce_stats *st, double val);
    void *user;
} t2_reinforce_loop;

/* Run the loop. *best (caller frees with t2_expert_free) gets a copy of the best expert by validation
 * (the initial one if training never beat it) and *best_score its score. */
t2_status t2_reinforce_train(t2_model *m, t2_svf_policy *pol, t2_adam *adam, const t2_reinforce_params *p,
                             const t2_reinforce_loop *loop, t2_expert **best, double *best_score);

#ifdef __cplusplus
}
#endif
#endif
