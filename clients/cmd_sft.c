/* `t2 model init` and `t2 model sft`: a model from scratch, and next-token training of every weight on
 * (prompt, answer) pairs, written as a new model folder.
 *
 * sft is an offline tool on purpose: the daemon's base model is shared by every tenant and every expert
 * (their SVD caches are of its weights), so changing its weights in place would break them all; a new
 * model folder is served by a new daemon (or compared with the old one). Training z by next-token loss is
 * the sft trainer plugin's job in the daemon.
 *
 * Each example is the task's system prompt and user prompt rendered by the model's chat template with the
 * generation prompt, then the target (the task's solution, else its answer) and the end-of-turn token;
 * with --time-limit the cosine decay follows the elapsed fraction of the limit when that is ahead of the steps,
 * so a run cut short by the clock still ends at --min-lr;
 * the loss is the mean negative log-likelihood of the target tokens over the batch; with --prompt-loss the
 * user's turn is a target too (every token after the system turn: the user's question, the template's
 * headers, the answer and the end of turn), as pretraining on whole documents would: a small model learns
 * to read its questions (to copy their numbers and names) sooner when it also has to predict them. Adam
 * (t2_adam, no weight decay) with global-norm clipping, linear warm-up then cosine decay to --min-lr.
 *
 * Data parallel: --workers W model replicas (each its own f32 weights and gradients, --threads split
 * between them) take the batch's examples in turn (example i on replica i mod W); their gradients are
 * summed in replica order, replica 0 takes the Adam step and the others copy its weights. On small
 * models this beats one model over every core (a 4.7 M-parameter model here: 334 target tokens/s on one
 * core, 415 with both cores on one model, two one-core replicas side by side nearly twice the first), and
 * it is deterministic for a given W. */
#include "cmd_sft.h"
#include "cli.h"

#include <t2/chat.h>
#include <t2/error.h>
#include <t2/model.h>
#include <t2/rng.h>
#include "tasks.h"
#include <t2/tokenizer.h>
#include <t2/train.h>

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ---------------- t2 model init ---------------- */

int t2_cmd_model_init(int argc, char **argv) {
    cli_opts o;
    if (cli_init(&o, argc - 1, argv + 1)) return T2_EXIT_ERROR;
    const char *dir = cli_str(&o, "model");
    long long seed = 0;
    double std = 0.02;
    int rc = T2_EXIT_OK;
    if (!dir) {
        fprintf(stderr, "t2 model init: --model DIR (a folder with config.json) is required\n");
        rc = T2_EXIT_USAGE;
    } else if (cli_int(&o, "seed", 0, INT64_MAX, &seed) || cli_float(&o, "std", 1e-6, 10, &std) ||
               cli_done(&o, "model init")) {
        rc = T2_EXIT_USAGE;
    }
    char cfg_path[4096], out[4096];
    t2_model_config cfg;
    t2_status s = T2_OK;
    if (!rc) {
        snprintf(cfg_path, sizeof cfg_path, "%s/config.json", dir);
        snprintf(out, sizeof out, "%s/model.safetensors", dir);
        struct stat sb;
        if (stat(out, &sb) == 0) {
            fprintf(stderr, "t2 model init: %s exists; not overwriting a model's weights\n", out);
            rc = T2_EXIT_ERROR;
        } else if ((s = t2_model_config_load(cfg_path, &cfg))) {
            rc = cli_fail("cannot read config", s);
        } else if ((s = t2_model_write_init(&cfg, out, (uint64_t)seed, (float)std))) {
            rc = cli_fail("cannot write the initial weights", s);
        } else {
            printf("wrote %s (seed %lld, std %g)\n", out, seed, std);
        }
    }
    cli_free(&o);
    return rc;
}

/* ---------------- t2 model sft ---------------- */

#define MAX_BATCH 1024
#define MAX_WORKERS 64

typedef struct example {
    int32_t *ids;
    int n, k0;
} example;

typedef struct sft_set {
    example *ex;
    size_t n, cap;
    size_t skipped_long, skipped_empty;
} sft_set;

/* Where the user's turn starts in the rendered prompt p[0..np): after the system turn (the system message
 * rendered alone, which must be a prefix of p), else after the first token (the template's begin-of-text). */
static t2_status user_turn_start(const t2_chat_template *tmpl, const t2_tokenizer *tok, const t2_task *t, const int32_t *p,
                                 size_t np, size_t *k0) {
    *k0 = 1;
    if (!t->system || !*t->system) return np > 1 ? T2_OK : t2_set_error(T2_ERR_FORMAT, "the rendered prompt is a single token");
    t2_chat_message sys = {.role = "system", .content = t->system};
    int32_t *q = NULL;
    size_t nq = 0;
    t2_status s = t2_chat_encode(tmpl, tok, &sys, 1, 0, &q, &nq);
    if (!s && (nq == 0 || nq >= np || memcmp(q, p, nq * sizeof *q)))
        s = t2_set_error(T2_ERR_FORMAT, "the chat template's system turn is not a prefix of the rendered prompt: "
                                        "--prompt-loss cannot find where the user's turn starts");
    if (!s) *k0 = nq;
    free(q);
    return s;
}

/* Tokenise every task of one dataset spec into examples (prompt + target + end of turn; k0, the first
 * target, after the system turn with prompt_loss). */
static t2_status add_examples(sft_set *set, const char *spec, const char *split, const char *data_dir,
                              const t2_tokenizer *tok, const t2_chat_template *tmpl, int max_len, int prompt_loss) {
    t2_dataset *d = NULL;
    t2_status s = t2_dataset_open(spec, split, data_dir, &d);
    if (s) return s;
    int32_t stop = t2_chat_template_stop_id(tmpl);
    for (size_t i = 0; !s && i < t2_dataset_size(d); i++) {
        const t2_task *t = t2_dataset_task(d, i);
        const char *target = t->solution && *t->solution ? t->solution : t->answer;
        if (!target || !*target) {
            s = t2_set_error(T2_ERR_FORMAT, "%s: task %s has neither a solution nor an answer to train on", spec, t->id);
            break;
        }
        t2_chat_message msgs[2];
        size_t k = 0, np = 0, nt = 0;
        if (t->system && *t->system) msgs[k++] = (t2_chat_message){.role = "system", .content = t->system};
        msgs[k++] = (t2_chat_message){.role = "user", .content = t->prompt};
        int32_t *p = NULL, *a = NULL;
        if ((s = t2_chat_encode(tmpl, tok, msgs, k, 1, &p, &np)) ||
            (s = t2_tokenizer_encode(tok, target, strlen(target), 0, &a, &nt))) {
            free(p);
            break;
        }
        size_t k0 = np;
        if (prompt_loss && (s = user_turn_start(tmpl, tok, t, p, np, &k0))) {
            s = t2_wrap_error(s, "%s: task %s: ", spec, t->id);
            free(p);
            free(a);
            break;
        }
        int n = (int)(np + nt) + (stop >= 0);
        if (n > max_len || nt == 0) {
            if (nt == 0) set->skipped_empty++;
            else set->skipped_long++;
            free(p);
            free(a);
            continue;
        }
        if (set->n == set->cap) {
            size_t cap = set->cap ? 2 * set->cap : 1024;
            example *e = realloc(set->ex, cap * sizeof *e);
            if (!e) {
                free(p);
                free(a);
                s = t2_set_error(T2_ERR_NOMEM, "out of memory");
                break;
            }
            set->ex = e, set->cap = cap;
        }
        int32_t *ids = realloc(p, (size_t)n * sizeof *ids);
        if (!ids) {
            free(p);
            free(a);
            s = t2_set_error(T2_ERR_NOMEM, "out of memory");
            break;
        }
        memcpy(ids + np, a, nt * sizeof *ids);
        if (stop >= 0) ids[n - 1] = stop;
        free(a);
        set->ex[set->n++] = (example){.ids = ids, .n = n, .k0 = (int)k0};
    }
    t2_dataset_close(d);
    return s;
}

static int copy_file(const char *from, const char *to) {
    FILE *in = fopen(from, "rb");
    if (!in) return errno == ENOENT ? 0 : -1; /* optional files may be absent */
    FILE *out = fopen(to, "wb");
    int rc = out ? 0 : -1;
    char buf[65536];
    size_t k;
    while (!rc && (k = fread(buf, 1, sizeof buf, in)) > 0)
        if (fwrite(buf, 1, k, out) != k) rc = -1;
    if (ferror(in)) rc = -1;
    fclose(in);
    if (out && fclose(out)) rc = -1;
    return rc;
}

/* The weights to OUT/model.safetensors and the source folder's config and tokenizer files beside them. */
static int save_model(t2_model *m, const char *src, const char *out, t2_dtype dtype, long step, double loss) {
    char path[4096], from[4096], sbuf[32], lbuf[32];
    if (mkdir(out, 0755) && errno != EEXIST) {
        fprintf(stderr, "t2 model sft: cannot create %s: %s\n", out, strerror(errno));
        return T2_EXIT_ERROR;
    }
    static const char *files[] = {"config.json", "tokenizer.json", "tokenizer_config.json", "generation_config.json",
                                  "special_tokens_map.json"};
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        snprintf(from, sizeof from, "%s/%s", src, files[i]);
        snprintf(path, sizeof path, "%s/%s", out, files[i]);
        if (strcmp(from, path) && copy_file(from, path)) {
            fprintf(stderr, "t2 model sft: cannot copy %s to %s\n", from, path);
            return T2_EXIT_ERROR;
        }
    }
    snprintf(path, sizeof path, "%s/model.safetensors", out);
    snprintf(sbuf, sizeof sbuf, "%ld", step);
    snprintf(lbuf, sizeof lbuf, "%.6f", loss);
    const char *meta[] = {"format", "pt", "t2_sft_step", sbuf, "t2_sft_loss", lbuf, NULL};
    t2_status s = t2_model_save_weights(m, path, dtype, meta);
    return s ? cli_fail("cannot save the model", s) : T2_EXIT_OK;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Learning rate at step (0-based): linear warm-up, then cosine from lr down to min_lr at the last step, or at
 * the time limit if that comes first (time_frac: the fraction of it elapsed, 0 without one). */
static float lr_at(long step, long steps, long warmup, double lr, double min_lr, double time_frac) {
    if (step < warmup) return (float)(lr * (double)(step + 1) / (double)warmup);
    double p = steps - 1 > warmup ? (double)(step - warmup) / (double)(steps - 1 - warmup) : 1.0;
    if (time_frac > p) p = time_frac < 1 ? time_frac : 1;
    return (float)(min_lr + 0.5 * (lr - min_lr) * (1.0 + cos(M_PI * p)));
}

/* One data-parallel replica: its model, its gradients, and its share of the current batch. */
typedef struct replica {
    t2_model *m;
    t2_weight_grads *g;
    float *params, *grad;
    size_t np, ng;
    const sft_set *set;
    int first, stride;      /* its examples of each batch: first, first + stride, ... */
    /* per step */
    const size_t *idx;
    long nb, ntok;
    double sum_lp;
    t2_status s;
    char err[512]; /* the failure's detail (t2_last_error belongs to the thread that failed) */
    pthread_t th;
} replica;

/* The replica's examples of the batch (first, first + stride, ...) into its zeroed gradients. */
static void *replica_step(void *arg) {
    replica *r = arg;
    memset(r->grad, 0, r->ng * sizeof *r->grad);
    r->sum_lp = 0;
    r->s = T2_OK;
    for (long i = r->first; !r->s && i < r->nb; i += r->stride) {
        const example *e = &r->set->ex[r->idx[i]];
        t2_grad_request rq = {.ids = e->ids, .n = e->n, .k0 = e->k0, .weight = -1.0f / (float)r->ntok, .dw = r->g};
        double lp = 0;
        r->s = t2_logprob_grad(r->m, &rq, &lp);
        r->sum_lp += lp;
    }
    if (r->s) snprintf(r->err, sizeof r->err, "%s", t2_last_error());
    return NULL;
}

/* The loaded model r->m made trainable, with its gradients. */
static t2_status replica_prepare(replica *r) {
    t2_status s = t2_model_make_trainable(r->m);
    if (s) return s;
    if (!(r->g = t2_weight_grads_new(r->m, &s))) return s;
    r->params = t2_model_trainable_params(r->m, &r->np);
    r->grad = t2_weight_grads_flat(r->g, &r->ng);
    if (r->np != r->ng) return t2_set_error(T2_ERR_SHAPE, "%zu parameters, %zu gradients", r->np, r->ng);
    return T2_OK;
}

int t2_cmd_model_sft(int argc, char **argv) {
    cli_opts o;
    if (cli_init(&o, argc - 1, argv + 1)) return T2_EXIT_ERROR;
    const char *dir = cli_str(&o, "model"), *data = cli_str(&o, "data"), *out = cli_str(&o, "out"),
               *split = cli_str(&o, "split"), *data_dir = cli_str(&o, "data-dir"), *dt = cli_str(&o, "dtype"),
               *tmpl_spec = cli_str(&o, "template");
    long long steps = 1000, batch = 16, warmup = -1, seed = 0, max_len = 1024, save_every = 0, log_every = 10, threads = 0,
              workers = 0;
    double lr = 1e-3, min_lr = -1, clip = 1.0, time_limit = 0;
    int rc = T2_EXIT_OK, prompt_loss = cli_flag(&o, "prompt-loss");
    if (!dir || !data || !out) {
        fprintf(stderr, "t2 model sft: --model DIR --data SPEC[,SPEC...] --out DIR are required\n");
        rc = T2_EXIT_USAGE;
    } else if (cli_int(&o, "steps", 1, 100000000, &steps) || cli_int(&o, "batch", 1, MAX_BATCH, &batch) ||
               cli_int(&o, "warmup", 0, 100000000, &warmup) || cli_int(&o, "seed", 0, INT64_MAX, &seed) ||
               cli_int(&o, "max-len", 2, 1 << 20, &max_len) || cli_int(&o, "save-every", 0, 100000000, &save_every) ||
               cli_int(&o, "log-every", 1, 100000000, &log_every) || cli_int(&o, "threads", 0, 1024, &threads) ||
               cli_int(&o, "workers", 0, MAX_WORKERS, &workers) || cli_float(&o, "lr", 1e-9, 10, &lr) || cli_float(&o, "min-lr", 0, 10, &min_lr) ||
               cli_float(&o, "clip", 0, 1e9, &clip) || cli_float(&o, "time-limit", 0, 1e7, &time_limit) ||
               cli_done(&o, "model sft")) {
        rc = T2_EXIT_USAGE;
    } else if (dt && strcmp(dt, "f32") && strcmp(dt, "bf16")) {
        fprintf(stderr, "t2 model sft: --dtype must be f32 or bf16\n");
        rc = T2_EXIT_USAGE;
    }
    struct stat in_st, out_st;
    if (!rc && stat(out, &out_st) == 0 && stat(dir, &in_st) == 0 && in_st.st_dev == out_st.st_dev && in_st.st_ino == out_st.st_ino) {
        fprintf(stderr, "t2 model sft: --out %s is the model folder itself; sft writes a new model folder\n", out);
        rc = T2_EXIT_USAGE;
    }
    if (rc) {
        cli_free(&o);
        return rc;
    }
    if (warmup < 0) warmup = steps / 20;
    if (min_lr < 0) min_lr = lr / 10;
    t2_dtype dtype = dt && !strcmp(dt, "bf16") ? T2_BF16 : T2_F32;

    t2_status s = T2_OK;
    t2_tokenizer *tok = t2_tokenizer_load(dir, &s);
    t2_chat_template *tmpl = tok ? t2_chat_template_load(tmpl_spec ? tmpl_spec : "auto", tok, &s) : NULL;
    if (!tmpl) rc = cli_fail(tok ? "chat template" : "cannot load tokenizer", s);
    sft_set set = {0};
    char *specs = strdup(data);
    for (char *save = NULL, *sp = strtok_r(specs, ",", &save); !rc && sp; sp = strtok_r(NULL, ",", &save)) {
        size_t before = set.n;
        if ((s = add_examples(&set, sp, split, data_dir, tok, tmpl, (int)max_len, prompt_loss))) rc = cli_fail(sp, s);
        else fprintf(stderr, "sft: %s: %zu examples\n", sp, set.n - before);
    }
    free(specs);
    if (!rc && set.n == 0) {
        fprintf(stderr, "t2 model sft: no examples to train on (%zu longer than --max-len %lld, %zu with an empty target)\n",
                set.skipped_long, max_len, set.skipped_empty);
        rc = T2_EXIT_ERROR;
    }
    /* replicas: by default one per core (at most one per example of the batch), the cores split between them */
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    if (cores < 1) cores = 1;
    if (threads <= 0) threads = cores;
    if (workers <= 0) workers = threads;
    if (workers > batch) workers = batch;
    if (workers > threads) threads = workers;
    replica *rep = rc ? NULL : calloc((size_t)workers, sizeof *rep);
    if (!rc && !rep) rc = cli_fail("sft", T2_ERR_NOMEM);
    for (long long w = 0; !rc && w < workers; w++) {
        int th = (int)(threads / workers + (w < threads % workers));
        rep[w] = (replica){.set = &set, .first = (int)w, .stride = (int)workers};
        rep[w].m = cli_load_model(dir, th, 0, &rc);
        if (!rc && (s = replica_prepare(&rep[w]))) rc = cli_fail("cannot make the model a trainable replica", s);
    }
    t2_model *m = rc ? NULL : rep[0].m;
    t2_adam *adam = NULL;
    size_t np = rc ? 0 : rep[0].np, ng = np;
    float *params = rc ? NULL : rep[0].params, *grad = rc ? NULL : rep[0].grad;
    if (!rc) {
        t2_adam_params ap = t2_adam_default_params();
        ap.lr = (float)lr;
        ap.clip = (float)clip;
        if (!(adam = t2_adam_new(np, &ap, &s))) rc = cli_fail("optimiser", s);
    }
    if (!rc) {
        size_t tokens = 0;
        for (size_t i = 0; i < set.n; i++) tokens += (size_t)(set.ex[i].n - set.ex[i].k0);
        fprintf(stderr, "sft: %zu examples (%zu target tokens, %zu skipped as longer than %lld), %zu parameters; "
                        "%lld steps of %lld, lr %g -> %g, warm-up %lld; %lld replica(s) over %lld thread(s)\n",
                set.n, tokens, set.skipped_long, max_len, np, steps, batch, lr, min_lr, warmup, workers, threads);
    }
    /* epochs over a seeded permutation */
    size_t *order = rc ? NULL : malloc(set.n * sizeof *order), pos = set.n;
    t2_rng rng;
    t2_rng_seed(&rng, (uint64_t)seed);
    double t0 = now_s(), win_loss = 0, last_loss = NAN;
    long win_tok = 0, all_tok = 0, step = 0;
    if (!rc && !order) rc = cli_fail("sft", T2_ERR_NOMEM);
    for (; !rc && step < steps; step++) {
        long ntok = 0, nb = (long)batch;
        /* the batch's examples: the next `batch` of the permutation (reshuffled at each epoch) */
        size_t idx[MAX_BATCH];
        for (long i = 0; i < nb; i++) {
            if (pos >= set.n) {
                for (size_t j = 0; j < set.n; j++) order[j] = j;
                for (size_t j = set.n; j > 1; j--) {
                    size_t r = (size_t)(t2_rng_u64(&rng) % j), tmp = order[j - 1];
                    order[j - 1] = order[r], order[r] = tmp;
                }
                pos = 0;
            }
            idx[i] = order[pos++];
            ntok += set.ex[idx[i]].n - set.ex[idx[i]].k0;
        }
        for (long long w = 0; w < workers; w++) rep[w].idx = idx, rep[w].nb = nb, rep[w].ntok = ntok;
        int threaded[MAX_WORKERS] = {0}; /* a replica that gets no thread runs on this one */
        for (long long w = 1; w < workers; w++) threaded[w] = !pthread_create(&rep[w].th, NULL, replica_step, &rep[w]);
        replica_step(&rep[0]);
        for (long long w = 1; w < workers; w++) threaded[w] ? (void)pthread_join(rep[w].th, NULL) : (void)replica_step(&rep[w]);
        double sum_lp = 0;
        for (long long w = 0; w < workers; w++) {
            if (!rc && rep[w].s) rc = cli_fail("logprob-grad", t2_set_error(rep[w].s, "%s", rep[w].err));
            sum_lp += rep[w].sum_lp;
            if (w) for (size_t j = 0; j < ng; j++) grad[j] += rep[w].grad[j];
        }
        if (rc) break;
        /* grad holds ∂(mean NLL)/∂θ: the weight −1/ntok made it the gradient of the loss to decrease */
        double tf = time_limit > 0 ? (now_s() - t0) / time_limit : 0;
        float cur_lr = lr_at(step, steps, warmup, lr, min_lr, tf);
        t2_adam_set_lr(adam, cur_lr);
        double gn = t2_adam_step(adam, params, grad);
        for (long long w = 1; w < workers; w++) memcpy(rep[w].params, params, np * sizeof *params);
        win_loss += -sum_lp;
        win_tok += ntok;
        all_tok += ntok;
        double el = now_s() - t0;
        int stop_time = time_limit > 0 && el >= time_limit;
        if ((step + 1) % log_every == 0 || step + 1 == steps || stop_time) {
            last_loss = win_loss / (double)win_tok;
            printf("step %ld/%lld  loss %.4f  grad-norm %.4g  lr %.2e  %.0f tok/s  %.0fs\n", step + 1, steps, last_loss,
                   gn, (double)cur_lr, (double)all_tok / el, el);
            fflush(stdout);
            win_loss = 0, win_tok = 0;
        }
        if (save_every > 0 && (step + 1) % save_every == 0 && step + 1 < steps)
            rc = save_model(m, dir, out, dtype, step + 1, win_tok ? win_loss / (double)win_tok : last_loss);
        if (stop_time) {
            printf("time limit of %.0f s reached at step %ld\n", time_limit, step + 1);
            step++;
            break;
        }
    }
    if (!rc) rc = save_model(m, dir, out, dtype, step, last_loss);
    if (!rc) printf("saved %s/model.safetensors after %ld steps (%ld target tokens, %.0f s)\n", out, step, all_tok, now_s() - t0);
    free(order);
    for (size_t i = 0; i < set.n; i++) free(set.ex[i].ids);
    free(set.ex);
    t2_adam_free(adam);
    for (long long w = 0; rep && w < workers; w++) {
        t2_weight_grads_free(rep[w].g);
        t2_model_free(rep[w].m);
    }
    free(rep);
    t2_chat_template_free(tmpl);
    t2_tokenizer_free(tok);
    cli_free(&o);
    return rc;
}
