/* Private: pieces of the forward pass that the backward pass (backward.c) reuses. */
#ifndef T2_FORWARD_IMPL_H
#define T2_FORWARD_IMPL_H

#include <t2/model.h>

/* cos/sin of every position in [0, n) and frequency in [0, head_dim/2), HF semantics, f32. */
void t2__rope_tables(const t2_model_config *cfg, int n, float *cs, float *sn);
/* Rotate n_heads vectors of head_dim by the angles of one position (rotate_half convention). */
void t2__rope(float *v, int n_heads, int hd, const float *cs, const float *sn);
/* The embedding row of token tok, widened to f32, into out [hidden]. */
void t2__embed_row(const t2_model *m, int tok, float *out);
/* out = w ⊙ x / sqrt(mean(x²) + eps); returns the 1/rms factor. */
float t2__rmsnorm(float *out, const float *x, const float *w, int n, float eps);

#endif
