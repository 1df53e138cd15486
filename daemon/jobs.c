/* Jobs: a scheduler thread claims queued jobs from the store (fair between tenants, within the running
 * limits) and gives each one a runner thread. A training job is driven step by step through its trainer
 * plugin; an evaluation job runs a dataset through the base model, an expert, a mixture or a dispatch
 * plugin and grades every answer. The heavy work of both goes to the executor as batch rows and work
 * items, interleaved with everyone's queries.
 *
 * Stopping: a cancelled job ends after its current step (state cancelled); a daemon that stops hands its
 * running jobs back to the queue, and the next daemon resumes them from their last checkpoint. */
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <t2/error.h>

#include "tasks.h"
#include "t2d.h"

struct t2d_jobs {
    t2d *d;
    pthread_t sched;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int stop, kicked, running;
};

typedef struct runner {
    t2d_jobs *js;
    t2d_job job;
    atomic_int cancel;
} runner;

static int stopping(t2d_jobs *js) {
    pthread_mutex_lock(&js->mu);
    int s = js->stop;
    pthread_mutex_unlock(&js->mu);
    return s;
}

/* How a runner's job ends: done (result), failed (why), cancelled, or handed back to the queue. */
static void finish(runner *r, t2_status st, const char *why, const char *result) {
    t2d *d = r->js->d;
    t2d_job_state to;
    char msg[1024];
    if (stopping(r->js) && st != T2_OK) {
        to = T2D_JOB_QUEUED;
        snprintf(msg, sizeof msg, "daemon stopping; the job will resume from its last checkpoint");
    } else if (atomic_load(&r->cancel) || t2d_store_job_cancel_requested(d->store, r->job.id)) {
        to = T2D_JOB_CANCELLED;
        snprintf(msg, sizeof msg, "cancelled");
    } else if (st != T2_OK) {
        to = T2D_JOB_FAILED;
        snprintf(msg, sizeof msg, "%s", why && *why ? why : t2_strerror(st));
    } else {
        to = T2D_JOB_DONE;
        msg[0] = 0;
    }
    if (t2d_store_job_set_state(d->store, r->job.id, to, msg, to == T2D_JOB_DONE ? result : NULL) != T2_OK)
        t2d_log(T2_LOG_ERROR, "job=%lld cannot record its end: %s", (long long)r->job.id, t2d_store_errmsg());
    t2d_log(to == T2D_JOB_FAILED ? T2_LOG_WARN : T2_LOG_INFO, "job=%lld tenant=%s kind=%s state=%s msg=\"%s\"", (long long)r->job.id,
            r->job.tenant, r->job.kind, t2d_job_state_name(to), msg);
}

/* ---------------- training ---------------- */

static void run_train(runner *r, t2_host *h) {
    t2d *d = r->js->d;
    void *pstate = NULL;
    const t2_plugin *pl = t2_plugins_find(d->plugins, T2_PLUGIN_TRAINER, r->job.trainer, &pstate);
    char why[1024];
    if (!pl) {
        snprintf(why, sizeof why, "no trainer plugin \"%s\" is loaded", r->job.trainer);
        finish(r, T2_ERR_NOT_FOUND, why, NULL);
        return;
    }
    (void)pstate;
    const t2_trainer_ops *ops = pl->ops;
    void *ck = NULL;
    size_t ck_len = 0;
    int64_t ck_step = 0;
    if (t2d_store_checkpoint_load(d->store, r->job.id, &ck_step, &ck, &ck_len) == T2_OK) {
        h->last_step = ck_step;
        t2d_log(T2_LOG_INFO, "job=%lld resuming from its checkpoint at step %lld (%zu bytes)", (long long)r->job.id, (long long)ck_step, ck_len);
    } else {
        ck = NULL;
        ck_len = 0;
    }
    t2_job_spec spec = {.id = r->job.id, .expert_name = r->job.expert, .label = r->job.label, .dataset = r->job.dataset,
                        .grader = r->job.grader, .settings_json = *r->job.settings ? r->job.settings : "{}"};
    void *state = NULL;
    t2_clear_error();
    t2_status st = ops->start(h, &spec, ck, ck_len, &state);
    free(ck);
    if (st != T2_OK) {
        snprintf(why, sizeof why, "trainer %s could not start: %s", r->job.trainer, t2d_host_error(h, st));
        if (ops->stop) ops->stop(state);
        finish(r, st, why, NULL);
        return;
    }
    int done = 0;
    while (!done) {
        if (stopping(r->js)) {
            st = T2_ERR_INTERNAL;
            break;
        }
        if (atomic_load(&r->cancel) || t2d_store_job_cancel_requested(d->store, r->job.id)) {
            atomic_store(&r->cancel, 1);
            st = T2_ERR_INTERNAL;
            break;
        }
        t2_clear_error();
        if ((st = ops->step(state, h, &done)) != T2_OK) {
            snprintf(why, sizeof why, "trainer %s: %s", r->job.trainer, t2d_host_error(h, st));
            break;
        }
    }
    if (ops->stop) ops->stop(state);
    char result[512];
    snprintf(result, sizeof result, "{\"expert\": \"%s\", \"step\": %lld}", r->job.expert, (long long)h->last_step);
    finish(r, st, st == T2_OK ? NULL : why, result);
}

/* ---------------- evaluation ---------------- */

/* The explicit mixture of an eval job, from its JSON text [{"expert": ..., "alpha": ...}, ...]. */
static int parse_mix(const char *text, const char **names, float *alpha, int max, json_t **keep) {
    *keep = NULL;
    if (!text || !*text) return 0;
    json_t *a = json_loads(text, 0, NULL);
    if (!json_is_array(a)) {
        json_decref(a);
        return -1;
    }
    int n = 0;
    size_t i;
    json_t *v;
    json_array_foreach(a, i, v) {
        if (n >= max) break;
        const char *nm = json_string_value(json_object_get(v, "expert"));
        json_t *al = json_object_get(v, "alpha");
        if (!nm) continue;
        names[n] = nm;
        alpha[n++] = al ? (float)json_number_value(al) : 1.0f;
    }
    *keep = a;
    return n;
}

static void run_eval(runner *r, t2_host *h) {
    t2d *d = r->js->d;
    char why[1024] = "";
    t2_dataset *ds = NULL;
    const char *split = *r->job.split ? r->job.split : "test";
    t2_status st = t2_dataset_open(r->job.dataset, split, t2d_data_dir(d), &ds);
    if (st != T2_OK) {
        snprintf(why, sizeof why, "dataset %s (%s): %s", r->job.dataset, split, t2_last_error());
        finish(r, st, why, NULL);
        return;
    }
    size_t n = t2_dataset_size(ds);
    if (r->job.limit > 0 && (size_t)r->job.limit < n) n = (size_t)r->job.limit;
    const char *names[T2D_DECISION_MAX_PARTS];
    float alpha[T2D_DECISION_MAX_PARTS];
    json_t *mixkeep = NULL;
    int n_mix = parse_mix(r->job.mix, names, alpha, T2D_DECISION_MAX_PARTS, &mixkeep);
    json_t *samp = *r->job.sampling ? json_loads(r->job.sampling, 0, NULL) : NULL;
    t2_sampler_params sp = t2_sampler_default_params();
    int max_tokens = 0;
    if (samp) {
        sp.temperature = (float)json_number_value(json_object_get(samp, "temperature"));
        max_tokens = (int)json_integer_value(json_object_get(samp, "max_tokens"));
        json_t *tp = json_object_get(samp, "top_p");
        if (tp && json_number_value(tp) > 0) sp.top_p = (float)json_number_value(tp);
        sp.top_k = (int)json_integer_value(json_object_get(samp, "top_k"));
        sp.seed = (uint64_t)json_integer_value(json_object_get(samp, "seed"));
    }
    json_t *verdicts = json_array();
    size_t correct = 0, graded = 0;
    double first = 0, second = 0;
    int64_t params = 0;
    const int chunk = d->cfg.max_seqs < 8 ? d->cfg.max_seqs : 8;
    for (size_t i0 = 0; i0 < n && st == T2_OK; i0 += (size_t)chunk) {
        if (stopping(r->js) || atomic_load(&r->cancel) || t2d_store_job_cancel_requested(d->store, r->job.id)) {
            atomic_store(&r->cancel, 1);
            st = T2_ERR_INTERNAL;
            break;
        }
        int m = (int)(n - i0 < (size_t)chunk ? n - i0 : (size_t)chunk);
        t2d_decision dec[8];
        t2d_gen gens[8];
        memset(gens, 0, sizeof gens);
        int made = 0;
        for (int k = 0; k < m && st == T2_OK; k++, made++) {
            const t2_task *t = t2_dataset_task(ds, i0 + (size_t)k);
            t2d_route route = {.dispatch = r->job.dispatch, .base = n_mix == 0 && !*r->job.dispatch, .n_mix = n_mix > 0 ? n_mix : 0,
                               .mix_names = names, .mix_alpha = alpha, .prompt = t->prompt, .system = t->system, .task_id = r->job.dataset,
                               .settings = "{}", .cancel = &r->cancel};
            if ((st = t2d_decide(d, r->job.tenant, &route, &dec[k], why, sizeof why)) != T2_OK) break;
            first += dec[k].seconds;
            if (t2d_decision_params(&dec[k]) > params) params = t2d_decision_params(&dec[k]);
            gens[k] = (t2d_gen){.prompt = t->prompt, .chat = 1, .system = *t->system ? t->system : NULL, .expert = dec[k].expert, .lora = dec[k].lora,
                                .sampling = sp, .max_tokens = max_tokens, .cancel = &r->cancel, .tenant = r->job.tenant};
        }
        if (st == T2_OK) st = t2d_generate(d, gens, m, why, sizeof why);
        for (int k = 0; k < m && st == T2_OK; k++) {
            const t2_task *t = t2_dataset_task(ds, i0 + (size_t)k);
            second += gens[k].seconds;
            t2_verdict v;
            st = d->api->grade(h, *r->job.grader ? r->job.grader : NULL, t, gens[k].text, &v);
            if (st != T2_OK) {
                snprintf(why, sizeof why, "%s", t2_last_error());
                break;
            }
            graded++;
            correct += v.correct != 0;
            json_array_append_new(verdicts, json_pack("{s:s, s:b, s:s, s:s, s:s, s:s, s:s}", "id", t->id, "correct", v.correct,
                                                      "extracted", v.extracted, "detail", v.detail, "label", dec[k].label,
                                                      "expert", dec[k].n_parts ? dec[k].names[0] : "", "output", gens[k].text));
        }
        for (int k = 0; k < made; k++) {
            t2d_decision_clear(&dec[k]);
            t2d_gen_clear(&gens[k]);
        }
        t2_progress pr = {.step = (int64_t)graded, .total = (int64_t)n, .reward = NAN,
                          .accuracy = graded ? (double)correct / (double)graded : NAN, .loss = NAN};
        d->api->progress(h, &pr);
    }
    json_t *result = json_object();
    json_object_set_new(result, "accuracy", json_real(graded ? (double)correct / (double)graded : 0.0));
    json_object_set_new(result, "n", json_integer((json_int_t)graded));
    json_object_set_new(result, "correct", json_integer((json_int_t)correct));
    json_object_set_new(result, "first_pass_seconds", json_real(graded ? first / (double)graded : 0.0));
    json_object_set_new(result, "second_pass_seconds", json_real(graded ? second / (double)graded : 0.0));
    json_object_set_new(result, "trained_params", json_integer((json_int_t)params));
    json_object_set_new(result, "dataset", json_string(r->job.dataset));
    json_object_set_new(result, "split", json_string(split));
    json_object_set_new(result, "dispatch", json_string(r->job.dispatch));
    json_object_set_new(result, "verdicts", verdicts);
    char *text = json_dumps(result, JSON_COMPACT);
    json_decref(result);
    json_decref(samp);
    json_decref(mixkeep);
    t2_dataset_close(ds);
    finish(r, st, why, text);
    free(text);
}

/* ---------------- threads ---------------- */

/* The seed of a job's random stream (its batches, its samples): the integer "seed" of its settings, so that
 * the same job on the same model runs the same whatever its id; without one, its id. */
static uint64_t job_seed(const t2d_job *j) {
    json_t *o = *j->settings ? json_loads(j->settings, 0, NULL) : NULL, *v = json_object_get(o, "seed");
    uint64_t seed = json_is_integer(v) ? (uint64_t)json_integer_value(v) : (uint64_t)j->id * 0x9e3779b97f4a7c15ull;
    json_decref(o);
    return seed;
}

static void *run_job(void *arg) {
    runner *r = arg;
    t2d_jobs *js = r->js;
    t2_host h;
    t2d_host_init(&h, js->d, r->job.tenant, r->job.id, job_seed(&r->job), &r->cancel);
    t2d_log(T2_LOG_INFO, "job=%lld tenant=%s kind=%s started", (long long)r->job.id, r->job.tenant, r->job.kind);
    if (!strcmp(r->job.kind, "train")) run_train(r, &h);
    else run_eval(r, &h);
    t2d_job_clear(&r->job);
    free(r);
    pthread_mutex_lock(&js->mu);
    js->running--;
    js->kicked = 1;
    pthread_cond_broadcast(&js->cv);
    pthread_mutex_unlock(&js->mu);
    return NULL;
}

static void *schedule(void *arg) {
    t2d_jobs *js = arg;
    t2d *d = js->d;
    pthread_mutex_lock(&js->mu);
    while (!js->stop) {
        while (!js->stop && !atomic_load(&d->draining) && js->running < d->cfg.max_running_jobs) {
            runner *r = calloc(1, sizeof *r);
            if (!r) break;
            t2d_job_init(&r->job);
            pthread_mutex_unlock(&js->mu);
            t2_status st = t2d_store_job_claim_next(d->store, d->cfg.max_running_jobs, d->cfg.quota_running_jobs, &r->job);
            pthread_mutex_lock(&js->mu);
            if (st != T2_OK) {
                if (st != T2_ERR_NOT_FOUND) t2d_log(T2_LOG_ERROR, "scheduler: %s", t2d_store_errmsg());
                t2d_job_clear(&r->job);
                free(r);
                break;
            }
            r->js = js;
            atomic_init(&r->cancel, 0);
            pthread_t t;
            pthread_attr_t at;
            pthread_attr_init(&at);
            pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
            if (pthread_create(&t, &at, run_job, r) != 0) {
                t2d_store_job_set_state(d->store, r->job.id, T2D_JOB_QUEUED, "no thread for the job; queued again", NULL);
                t2d_job_clear(&r->job);
                free(r);
                pthread_attr_destroy(&at);
                break;
            }
            pthread_attr_destroy(&at);
            js->running++;
        }
        if (js->stop) break;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += 1;
        if (!js->kicked) pthread_cond_timedwait(&js->cv, &js->mu, &ts);
        js->kicked = 0;
    }
    pthread_mutex_unlock(&js->mu);
    return NULL;
}

/* Recovery policy: a running training job without a checkpoint cannot resume (it fails with the reason);
 * an evaluation is deterministic and starts again. */
static int can_restart(void *ud, const t2d_job *job) {
    (void)ud;
    return !strcmp(job->kind, "eval");
}

t2d_jobs *t2d_jobs_start(t2d *d, t2_status *err) {
    t2d_recover_counts rc;
    if ((*err = t2d_store_recover(d->store, can_restart, NULL, &rc)) != T2_OK) {
        t2_set_error(*err, "recovering jobs: %s", t2d_store_errmsg());
        return NULL;
    }
    t2d_log(T2_LOG_INFO, "jobs recovered queued=%lld resumed=%lld requeued=%lld failed=%lld cancelled=%lld", (long long)rc.queued,
            (long long)rc.resumed, (long long)rc.requeued, (long long)rc.failed, (long long)rc.cancelled);
    t2d_jobs *js = calloc(1, sizeof *js);
    if (!js) {
        *err = t2_set_error(T2_ERR_NOMEM, "jobs: out of memory");
        return NULL;
    }
    js->d = d;
    pthread_mutex_init(&js->mu, NULL);
    pthread_cond_init(&js->cv, NULL);
    if (pthread_create(&js->sched, NULL, schedule, js) != 0) {
        free(js);
        *err = t2_set_error(T2_ERR_INTERNAL, "jobs: cannot start the scheduler");
        return NULL;
    }
    *err = T2_OK;
    return js;
}

void t2d_jobs_kick(t2d_jobs *js) {
    pthread_mutex_lock(&js->mu);
    js->kicked = 1;
    pthread_cond_broadcast(&js->cv);
    pthread_mutex_unlock(&js->mu);
}

int t2d_jobs_running(t2d_jobs *js) {
    pthread_mutex_lock(&js->mu);
    int n = js->running;
    pthread_mutex_unlock(&js->mu);
    return n;
}

void t2d_jobs_stop(t2d_jobs *js) {
    if (!js) return;
    pthread_mutex_lock(&js->mu);
    js->stop = 1;
    pthread_cond_broadcast(&js->cv);
    pthread_mutex_unlock(&js->mu);
    pthread_join(js->sched, NULL);
    /* runners notice `stop` after their current step and hand their jobs back */
    pthread_mutex_lock(&js->mu);
    while (js->running > 0) pthread_cond_wait(&js->cv, &js->mu);
    pthread_mutex_unlock(&js->mu);
    pthread_mutex_destroy(&js->mu);
    pthread_cond_destroy(&js->cv);
    free(js);
}
