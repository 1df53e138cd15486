/* The executor: continuous batching gives each sequence what it would get alone; scoring equals the
 * teacher-forced log-likelihood; the prefix cache changes nothing but the work done; cancellation;
 * work items between steps; and fair admission between groups (tenants). Token ids are used directly,
 * on a tiny random checkpoint (tests/unit/util.h). */
#include <check.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <t2/sampler.h>

#include "executor.h"
#include "util.h"

static char *s_dir;

/* A minimal tokenizer.json (single letters, no merges): the executor loads one, the tests use ids. */
static void write_tokenizer(const char *dir) {
    char *p = tu_join(dir, "tokenizer.json");
    char vocab[2048];
    size_t o = 0;
    for (int i = 0; i < 26; i++) o += (size_t)snprintf(vocab + o, sizeof vocab - o, "%s\"%c\": %d", i ? ", " : "", 'a' + i, i + 3);
    char text[4096];
    snprintf(text, sizeof text,
             "{\"version\": \"1.0\", \"added_tokens\": [{\"id\": 0, \"content\": \"<unk>\", \"special\": true, \"single_word\": false, "
             "\"lstrip\": false, \"rstrip\": false, \"normalized\": false}], \"normalizer\": null, \"pre_tokenizer\": null, "
             "\"post_processor\": null, \"decoder\": null, \"model\": {\"type\": \"BPE\", \"unk_token\": \"<unk>\", \"vocab\": {\"<unk>\": 0, %s}, "
             "\"merges\": []}}",
             vocab);
    tu_write_str(p, text);
    free(p);
}

static void setup(void) {
    s_dir = tu_mkdtemp();
    tu_ckpt o = {.dtype = T2_F32, .seed = 77};
    tu_write_checkpoint(s_dir, &o);
    write_tokenizer(s_dir);
    char *cache = tu_join(s_dir, "svd.safetensors");
    setenv("T2_TEST_SVD", cache, 1);
    free(cache);
}

static void teardown(void) {
    tu_rm_rf(s_dir);
    free(s_dir);
}

static t2x *executor(int max_seqs, int prefix_slots) {
    t2x_params p = t2x_default_params();
    p.model_path = s_dir;
    p.n_threads = 2;
    p.max_seqs = max_seqs;
    p.n_ctx = 64;
    p.n_batch = 32;
    p.prefix_slots = prefix_slots;
    p.svd_path = getenv("T2_TEST_SVD");
    t2_status st;
    t2x *x = t2x_new(&p, &st);
    ck_assert_msg(x != NULL, "t2x_new: %s", t2_strerror(st));
    return x;
}

static void prompt_of(int32_t *ids, int n, int seed) {
    for (int i = 0; i < n; i++) ids[i] = 3 + (int32_t)((i * 7 + seed * 13) % 26);
}

/* Greedy tokens of a prompt run alone, with the engine's own generate. */
static int alone(t2x *x, const int32_t *ids, int n, int max_tokens, int32_t *out) {
    t2_ctx_params cp = {.n_ctx = 64, .n_seq = 1, .n_batch = 32};
    t2_status st;
    t2_ctx *c = t2_ctx_new(t2x_model(x), &cp, &st);
    t2_sampler_params sp = t2_sampler_default_params();
    t2_sampler *smp = t2_sampler_new(&sp, TU_V, &st);
    t2_generate_params gp = {.max_tokens = max_tokens};
    t2_generation g = {0};
    ck_assert_int_eq(t2_generate(c, 0, ids, n, smp, &gp, &g), T2_OK);
    int k = g.n;
    memcpy(out, g.tokens, (size_t)k * sizeof *out);
    t2_generation_clear(&g);
    t2_sampler_free(smp);
    t2_ctx_free(c);
    return k;
}

static t2x_seq *submit(t2x *x, const int32_t *ids, int n, int max_tokens, int n_prefix, uint64_t group) {
    t2x_seq_params p = {.prompt = ids, .n_prompt = n, .sampling = t2_sampler_default_params(), .max_tokens = max_tokens,
                        .n_prefix = n_prefix, .group = group};
    t2_status st;
    t2x_seq *s = t2x_seq_new(&p, &st);
    ck_assert_ptr_nonnull(s);
    ck_assert_int_eq(t2x_submit(x, s), T2_OK);
    return s;
}

START_TEST(test_batched_equals_alone) {
    t2x *x = executor(8, 0);
    enum { K = 8, N = 11, T = 12 };
    int32_t ids[K][N], want[K][T];
    t2x_seq *s[K];
    for (int k = 0; k < K; k++) {
        prompt_of(ids[k], N - k, k);   /* different lengths: prompt chunks and decode rows mix */
        ck_assert_int_eq(alone(x, ids[k], N - k, T, want[k]), T);
    }
    for (int k = 0; k < K; k++) s[k] = submit(x, ids[k], N - k, T, 0, 0);
    for (int k = 0; k < K; k++) {
        ck_assert_int_eq(t2x_wait(s[k]), T2_OK);
        int n;
        const int32_t *got = t2x_seq_tokens(s[k], &n);
        ck_assert_int_eq(n, T);
        for (int i = 0; i < T; i++) ck_assert_msg(got[i] == want[k][i], "sequence %d token %d: %d, alone %d", k, i, got[i], want[k][i]);
        ck_assert_int_eq(t2x_seq_stop(s[k]), T2X_STOP_LENGTH);
        t2x_seq_free(s[k]);
    }
    t2x_stats st;
    t2x_get_stats(x, &st);
    ck_assert_uint_eq(st.tokens_generated, K * T);
    ck_assert_uint_gt(st.rows, st.batches);   /* rows were batched */
    t2x_free(x);
}
END_TEST

START_TEST(test_score) {
    t2x *x = executor(4, 0);
    enum { N = 10, FROM = 4 };
    int32_t ids[N];
    prompt_of(ids, N, 5);
    t2x_seq_params p = {.prompt = ids, .n_prompt = N, .score_from = FROM};
    t2_status st;
    t2x_seq *s = t2x_seq_new(&p, &st);
    ck_assert_int_eq(t2x_submit(x, s), T2_OK);
    ck_assert_int_eq(t2x_wait(s), T2_OK);
    /* the reference: logits of every position in one context, log p of the next token summed */
    t2_ctx_params cp = {.n_ctx = 64, .n_seq = 1, .n_batch = 32};
    t2_ctx *c = t2_ctx_new(t2x_model(x), &cp, &st);
    int32_t pos[N], sq[N] = {0};
    uint8_t wantr[N];
    for (int i = 0; i < N; i++) pos[i] = i, wantr[i] = 1;
    float *lg = malloc((size_t)N * TU_V * sizeof *lg);
    t2_batch b = {.n = N, .token = ids, .pos = pos, .seq = sq, .want = wantr};
    ck_assert_int_eq(t2_ctx_decode(c, &b, lg), T2_OK);
    double ref = 0;
    for (int t = FROM; t < N; t++) ref += t2_logprob(lg + (size_t)(t - 1) * TU_V, TU_V, ids[t]);
    ck_assert_double_eq_tol(t2x_seq_logprob(s), ref, 1e-4);
    free(lg);
    t2_ctx_free(c);
    t2x_seq_free(s);
    /* bad sequences are refused at creation or submission with a reason */
    t2x_seq_params bad = {.prompt = ids, .n_prompt = N, .max_tokens = 0, .score_from = 0};
    ck_assert_ptr_null(t2x_seq_new(&bad, &st));
    int32_t out_of_vocab[2] = {3, 9999};
    t2x_seq_params oov = {.prompt = out_of_vocab, .n_prompt = 2, .max_tokens = 1, .sampling = t2_sampler_default_params()};
    s = t2x_seq_new(&oov, &st);
    ck_assert_int_eq(t2x_submit(x, s), T2_ERR_RANGE);
    ck_assert_int_eq(t2x_wait(s), T2_ERR_RANGE);
    t2x_seq_free(s);
    t2x_free(x);
}
END_TEST

START_TEST(test_prefix_cache) {
    t2x *cached = executor(4, 2), *plain = executor(4, 0);
    enum { P = 20, N = 26, T = 8 };
    int32_t a[N], b[N];
    prompt_of(a, N, 1);
    memcpy(b, a, P * sizeof *b);
    prompt_of(b + P, N - P, 9);
    int32_t *prompts[3] = {a, b, a};
    for (int k = 0; k < 3; k++) {
        t2x_seq *sc = submit(cached, prompts[k], N, T, P, 0), *sp = submit(plain, prompts[k], N, T, 0, 0);
        ck_assert_int_eq(t2x_wait(sc), T2_OK);
        ck_assert_int_eq(t2x_wait(sp), T2_OK);
        int nc, np;
        const int32_t *tc = t2x_seq_tokens(sc, &nc), *tp = t2x_seq_tokens(sp, &np);
        ck_assert_int_eq(nc, np);
        for (int i = 0; i < nc; i++) ck_assert_msg(tc[i] == tp[i], "prompt %d token %d: %d with the prefix cache, %d without", k, i, tc[i], tp[i]);
        t2x_seq_free(sc);
        t2x_seq_free(sp);
    }
    t2x_stats st;
    t2x_get_stats(cached, &st);
    ck_assert_uint_eq(st.prefix_hits, 2);   /* the first computed it, the other two reused it */
    ck_assert_uint_eq(st.prefix_tokens_reused, 2 * P);
    /* another weights key does not reuse it */
    t2x_seq_params p = {.prompt = a, .n_prompt = N, .sampling = t2_sampler_default_params(), .max_tokens = 2, .n_prefix = P, .prefix_key = 42};
    t2_status s;
    t2x_seq *q = t2x_seq_new(&p, &s);
    t2x_submit(cached, q);
    t2x_wait(q);
    t2x_seq_free(q);
    t2x_get_stats(cached, &st);
    ck_assert_uint_eq(st.prefix_hits, 2);
    t2x_free(cached);
    t2x_free(plain);
}
END_TEST

static int s_stop_after;
static int stop_cb(void *user, int32_t token, float lp) {
    (void)token;
    (void)lp;
    return ++*(int *)user >= s_stop_after;
}

/* cancels its own sequence from the token callback at the second token, as another thread would mid-decode */
typedef struct cancel_at {
    t2x_seq *seq;
    int seen;
} cancel_at;
static int cancel_cb(void *user, int32_t token, float lp) {
    (void)token;
    (void)lp;
    cancel_at *c = user;
    if (++c->seen == 2) t2x_cancel(c->seq);
    return 0;
}

START_TEST(test_cancel_and_callback) {
    t2x *x = executor(2, 0);
    int32_t ids[6];
    prompt_of(ids, 6, 3);
    t2_status st;
    /* cancelled before it runs: it never decodes (a cancel racing a short run could otherwise lose) */
    t2x_seq_params p0 = {.prompt = ids, .n_prompt = 6, .sampling = t2_sampler_default_params(), .max_tokens = 50};
    t2x_seq *s = t2x_seq_new(&p0, &st);
    t2x_cancel(s);
    ck_assert_int_eq(t2x_submit(x, s), T2_OK);
    ck_assert_int_eq(t2x_wait(s), T2_OK);
    ck_assert_int_eq(t2x_seq_stop(s), T2X_STOP_CANCELLED);
    int n;
    t2x_seq_tokens(s, &n);
    ck_assert_int_lt(n, 50);
    t2x_seq_free(s);
    /* cancelled while decoding: it stops at the next step, long before max_tokens */
    cancel_at c = {0};
    t2x_seq_params pc = p0;
    pc.on_token = cancel_cb;
    pc.user = &c;
    s = c.seq = t2x_seq_new(&pc, &st);
    ck_assert_int_eq(t2x_submit(x, s), T2_OK);
    ck_assert_int_eq(t2x_wait(s), T2_OK);
    ck_assert_int_eq(t2x_seq_stop(s), T2X_STOP_CANCELLED);
    t2x_seq_tokens(s, &n);
    ck_assert_int_ge(n, 2);
    ck_assert_int_le(n, 3);
    t2x_seq_free(s);
    int count = 0;
    s_stop_after = 3;
    t2x_seq_params p = {.prompt = ids, .n_prompt = 6, .sampling = t2_sampler_default_params(), .max_tokens = 50, .on_token = stop_cb,
                        .user = &count};
    s = t2x_seq_new(&p, &st);
    t2x_submit(x, s);
    t2x_wait(s);
    t2x_seq_tokens(s, &n);
    ck_assert_int_eq(n, 3);
    ck_assert_int_eq(t2x_seq_stop(s), T2X_STOP_CALLBACK);
    t2x_seq_free(s);
    /* a prompt that fills the context cannot generate */
    int32_t longp[64];
    prompt_of(longp, 64, 2);
    s = submit(x, longp, 60, 10, 0, 0);
    ck_assert_int_eq(t2x_wait(s), T2_OK);
    ck_assert_int_eq(t2x_seq_stop(s), T2X_STOP_CONTEXT);
    t2x_seq_free(s);
    t2x_free(x);
}
END_TEST

/* work items run while sequences decode */
typedef struct work {
    t2x *x;
    int runs;
    uint64_t batches_seen;
} work;

static t2_status count_work(void *user, t2_model *m, const t2_svd *svd) {
    work *w = user;
    ck_assert_ptr_nonnull(m);
    ck_assert_ptr_nonnull(svd);
    w->runs++;
    return T2_OK;
}

START_TEST(test_work_items) {
    t2x *x = executor(2, 0);
    int32_t ids[6];
    prompt_of(ids, 6, 4);
    t2x_seq *s = submit(x, ids, 6, 40, 0, 0);
    work w = {.x = x};
    for (int i = 0; i < 5; i++) ck_assert_int_eq(t2x_run(x, count_work, &w), T2_OK);
    ck_assert_int_eq(w.runs, 5);
    ck_assert_int_eq(t2x_wait(s), T2_OK);
    t2x_seq_free(s);
    t2x_stats st;
    t2x_get_stats(x, &st);
    ck_assert_uint_eq(st.work_items, 5);
    t2x_free(x);
}
END_TEST

/* Admission order: record the sequence of first tokens per group. */
static int s_order[16], s_n_order;
static int first_token(void *user, int32_t token, float lp) {
    (void)token;
    (void)lp;
    int *seen = user;
    if (!seen[1]) {
        seen[1] = 1;
        s_order[s_n_order++] = seen[0];
    }
    return 0;
}

/* A work item that holds the executor until the test opens the gate: everything submitted meanwhile
 * is waiting together at the next admission, so the order does not depend on timing. */
typedef struct gate {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int entered, open;
    t2x *x;
} gate;

static t2_status hold(void *user, t2_model *m, const t2_svd *svd) {
    (void)m;
    (void)svd;
    gate *g = user;
    pthread_mutex_lock(&g->mu);
    g->entered = 1;
    pthread_cond_broadcast(&g->cv);
    while (!g->open) pthread_cond_wait(&g->cv, &g->mu);
    pthread_mutex_unlock(&g->mu);
    return T2_OK;
}

static void *run_hold(void *arg) {
    gate *g = arg;
    t2x_run(g->x, hold, g);
    return NULL;
}

START_TEST(test_fair_admission) {
    /* two slots; group A (1) queues five sequences, then group B (2) one: at the admission both slots are
     * free, the first goes to A's oldest, the second to B (it has none running) before A's others */
    t2x *x = executor(2, 0);
    gate g = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER, .x = x};
    pthread_t t;
    pthread_create(&t, NULL, run_hold, &g);
    pthread_mutex_lock(&g.mu);
    while (!g.entered) pthread_cond_wait(&g.cv, &g.mu);
    pthread_mutex_unlock(&g.mu);
    int32_t ids[6];
    prompt_of(ids, 6, 6);
    int seen[6][2] = {{0}};
    t2x_seq *s[6];
    s_n_order = 0;
    for (int k = 0; k < 6; k++) {
        seen[k][0] = k;
        t2x_seq_params p = {.prompt = ids, .n_prompt = 6, .sampling = t2_sampler_default_params(), .max_tokens = 4,
                            .on_token = first_token, .user = seen[k], .group = k < 5 ? 1 : 2};
        t2_status st;
        s[k] = t2x_seq_new(&p, &st);
        ck_assert_int_eq(t2x_submit(x, s[k]), T2_OK);
    }
    pthread_mutex_lock(&g.mu);
    g.open = 1;
    pthread_cond_broadcast(&g.cv);
    pthread_mutex_unlock(&g.mu);
    pthread_join(t, NULL);
    for (int k = 0; k < 6; k++) ck_assert_int_eq(t2x_wait(s[k]), T2_OK);
    ck_assert_int_eq(s_n_order, 6);
    ck_assert_int_eq(s_order[0], 0);
    ck_assert_msg(s_order[1] == 5, "the second sequence to start was %d, not group B's 5", s_order[1]);
    for (int k = 0; k < 6; k++) t2x_seq_free(s[k]);
    t2x_free(x);
}
END_TEST

int main(void) {
    Suite *s = suite_create("executor");
    TCase *tc = tcase_create("executor");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_batched_equals_alone);
    tcase_add_test(tc, test_score);
    tcase_add_test(tc, test_prefix_cache);
    tcase_add_test(tc, test_cancel_and_callback);
    tcase_add_test(tc, test_work_items);
    tcase_add_test(tc, test_fair_admission);
    suite_add_tcase(s, tc);
    return tu_run(s);
}
