/* Sampling. top-p avoids sorting the whole vocabulary: a token whose probability is below
 * (1 - top_p) / (n - 1) can never be inside the nucleus (all such tokens together hold less than
 * 1 - top_p), so only the tokens above that bound are sorted. */
#include <t2/rng.h>
#include <t2/sampler.h>
#include <t2/error.h>

#include <math.h>
#include <stdlib.h>

struct t2_sampler {
    t2_sampler_params p;
    int n_vocab;
    t2_rng rng;
    float *prob;          /* [n_vocab] */
    int *idx;             /* [n_vocab] candidates */
};

t2_sampler_params t2_sampler_default_params(void) {
    return (t2_sampler_params){.temperature = 0.0f, .top_k = 0, .top_p = 1.0f, .seed = 0};
}

t2_sampler *t2_sampler_new(const t2_sampler_params *p, int n_vocab, t2_status *err) {
    if (!p || n_vocab < 1 || !(p->temperature >= 0) || p->top_k < 0 || !(p->top_p > 0 && p->top_p <= 1)) {
        *err = t2_set_error(T2_ERR_INVALID_ARG, "sampler: need temperature >= 0, top_k >= 0, 0 < top_p <= 1");
        return NULL;
    }
    t2_sampler *s = calloc(1, sizeof *s);
    if (s) {
        s->prob = malloc((size_t)n_vocab * sizeof *s->prob);
        s->idx = malloc((size_t)n_vocab * sizeof *s->idx);
    }
    if (!s || !s->prob || !s->idx) {
        t2_sampler_free(s);
        *err = t2_set_error(T2_ERR_NOMEM, "sampler: out of memory");
        return NULL;
    }
    s->p = *p;
    s->n_vocab = n_vocab;

    t2_rng_seed(&s->rng, p->seed);
    *err = T2_OK;
    return s;
}

void t2_sampler_free(t2_sampler *s) {
    if (!s) return;
    free(s->prob);
    free(s->idx);
    free(s);
}

float t2_logprob(const float *logits, int n, int tok) {
    float mx = logits[0];
    for (int i = 1; i < n; i++)
        if (logits[i] > mx) mx = logits[i];
    double sum = 0;
    for (int i = 0; i < n; i++) sum += exp((double)logits[i] - mx);
    return (float)((double)logits[tok] - mx - log(sum));
}

static int by_prob_desc(const void *a, const void *b, void *arg) {
    const float *prob = arg;
    float pa = prob[*(const int *)a], pb = prob[*(const int *)b];
    if (pa != pb) return pa < pb ? 1 : -1;
    return *(const int *)a - *(const int *)b;
}

/* Keep the k largest of idx[0..n) (by prob) at the front; returns k. Partial selection by a
 * min-heap of size k. */
static int top_k_select(const float *prob, int *idx, int n, int k) {
    if (k >= n) return n;
    /* heap over idx[0..k): smallest prob at the root */
#define LESS(a, b) (prob[a] < prob[b] || (prob[a] == prob[b] && (a) > (b)))
    for (int i = k / 2 - 1; i >= 0; i--)
        for (int j = i;;) {
            int l = 2 * j + 1, r = l + 1, m = j;
            if (l < k && LESS(idx[l], idx[m])) m = l;
            if (r < k && LESS(idx[r], idx[m])) m = r;
            if (m == j) break;
            int t = idx[j]; idx[j] = idx[m]; idx[m] = t; j = m;
        }
    for (int i = k; i < n; i++) {
        if (!LESS(idx[0], idx[i])) continue;
        idx[0] = idx[i];
        for (int j = 0;;) {
            int l = 2 * j + 1, r = l + 1, m = j;
            if (l < k && LESS(idx[l], idx[m])) m = l;
            if (r < k && LESS(idx[r], idx[m])) m = r;
            if (m == j) break;
            int t = idx[j]; idx[j] = idx[m]; idx[m] = t; j = m;
        }
    }
#undef LESS
    return k;
}

int t2_sampler_sample(t2_sampler *s, const float *logits, float *logprob) {
    int n = s->n_vocab, tok = 0;
    if (s->p.temperature == 0.0f) {
        for (int i = 1; i < n; i++)
            if (logits[i] > logits[tok]) tok = i;
    } else {
        float mx = logits[0];
        for (int i = 1; i < n; i++)
            if (logits[i] > mx) mx = logits[i];
        double sum = 0;
        for (int i = 0; i < n; i++) sum += (s->prob[i] = expf((logits[i] - mx) / s->p.temperature));
        for (int i = 0; i < n; i++) s->prob[i] = (float)(s->prob[i] / sum);
        int m = 0;
        if (s->p.top_p < 1.0f && n > 1) {
            float floor_p = (1.0f - s->p.top_p) / (float)(n - 1), pmax = 0;
            for (int i = 0; i < n; i++)
                if (s->prob[i] > pmax) pmax = s->prob[i];
            if (floor_p > pmax) floor_p = pmax;   /* the nucleus always holds the most likely token */
            for (int i = 0; i < n; i++)
                if (s->prob[i] >= floor_p) s->idx[m++] = i;
        } else {
            for (int i = 0; i < n; i++) s->idx[m++] = i;
        }
        if (s->p.top_k > 0) m = top_k_select(s->prob, s->idx, m, s->p.top_k);
        if (s->p.top_p < 1.0f) {
            qsort_r(s->idx, (size_t)m, sizeof *s->idx, by_prob_desc, s->prob);
            double cum = 0;
            for (int i = 0; i < m; i++) {
                cum += s->prob[s->idx[i]];
                if (cum >= s->p.top_p) {
                    m = i + 1;
                    break;
                }
            }
        }
        double total = 0;
        for (int i = 0; i < m; i++) total += s->prob[s->idx[i]];
        double u = t2_rng_uniform(&s->rng) * total, acc = 0;
        tok = s->idx[m - 1];
        for (int i = 0; i < m; i++) {
            acc += s->prob[s->idx[i]];
            if (u < acc) {
                tok = s->idx[i];
                break;
            }
        }
    }
    if (logprob) *logprob = t2_logprob(logits, n, tok);
    return tok;
}
