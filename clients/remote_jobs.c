/* remote_jobs.c — `t2 train`, `t2 eval`, `t2 jobs`, `t2 job show|cancel|watch|log`, and following a
 * job with a live progress bar. */
#include "remote.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

/* ---------------- showing jobs and events ---------------- */

static const char *job_what(const T2__Job *j, char *buf, size_t cap) {
    if (!strcmp(j->kind, "train")) snprintf(buf, cap, "%s -> %s", j->dataset, *j->expert ? j->expert : "?");
    else snprintf(buf, cap, "%s%s%s", j->dataset, *j->dispatch ? " / " : "", j->dispatch);
    return buf;
}

static void job_human(const T2__Job *j) {
    char a[64], b[64], c[64];
    printf("job %lld (%s) %s, tenant %s\n", (long long)j->id, j->kind, j->state, j->tenant);
    if (*j->trainer) printf("  trainer    %s\n", j->trainer);
    if (*j->grader) printf("  grader     %s\n", j->grader);
    printf("  dataset    %s%s%s\n", j->dataset, *j->split ? " split " : "", j->split);
    if (*j->expert) printf("  expert     %s%s%s\n", j->expert, *j->label ? " label " : "", j->label);
    if (*j->dispatch) printf("  dispatch   %s\n", j->dispatch);
    if (*j->settings) printf("  settings   %s\n", j->settings);
    printf("  progress   %lld/%lld, reward %s, accuracy %s, eta %s\n", (long long)j->step, (long long)j->total,
           rm_num(j->reward, "%.4f", a, sizeof a), rm_num(j->accuracy, "%.4f", b, sizeof b),
           j->eta_seconds > 0 ? rm_duration(j->eta_seconds, c, sizeof c) : "-");
    printf("  created    %s\n", rm_time(j->created, a, sizeof a));
    printf("  started    %s\n", rm_time(j->started, a, sizeof a));
    printf("  finished   %s\n", rm_time(j->finished, a, sizeof a));
    if (*j->error) printf("  error      %s\n", j->error);
    if (*j->result) printf("  result     %s\n", j->result);
}

static void event_line(const T2__JobEvent *e, FILE *f) {
    char t[64], a[32], b[32], c[32];
    fprintf(f, "%s  %-9s", rm_time(e->time, t, sizeof t), e->type);
    if (e->total > 0 || e->step > 0) fprintf(f, " step %lld/%lld", (long long)e->step, (long long)e->total);
    /* Unset numbers arrive as 0 (proto3) or NaN: show them for progress events, and elsewhere when set. */
    int progress = !strcmp(e->type, "progress");
    if (isfinite(e->reward) && (progress || e->reward != 0)) fprintf(f, " reward %s", rm_num(e->reward, "%.4f", a, sizeof a));
    if (isfinite(e->accuracy) && (progress || e->accuracy != 0))
        fprintf(f, " accuracy %s", rm_num(e->accuracy, "%.4f", b, sizeof b));
    if (e->eta_seconds > 0) fprintf(f, " eta %s", rm_duration(e->eta_seconds, c, sizeof c));
    if (*e->message) fprintf(f, "  %s", e->message);
    fputc('\n', f);
}

/* The live line: "job 12 [#######-------] 120/500 24% reward 0.312 acc 0.640 ETA 3m12s". */
static void bar(int64_t id, const T2__JobEvent *e) {
    char a[32], b[32], c[32], tail[160];
    struct winsize ws;
    int cols = ioctl(1, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 20 ? ws.ws_col : 80;
    double frac = e->total > 0 ? fmin(1.0, fmax(0.0, (double)e->step / (double)e->total)) : 0;
    int n = snprintf(tail, sizeof tail, " %lld/%lld %3.0f%% reward %s acc %s ETA %s", (long long)e->step,
                     (long long)e->total, 100 * frac, rm_num(e->reward, "%.3f", a, sizeof a),
                     rm_num(e->accuracy, "%.3f", b, sizeof b), e->eta_seconds > 0 ? rm_duration(e->eta_seconds, c, sizeof c) : "-");
    char head[40];
    int h = snprintf(head, sizeof head, "job %lld ", (long long)id);
    int w = cols - 1 - h - n - 2;
    if (w > 40) w = 40;
    printf("\r\033[K%s", head);
    if (w >= 5) {
        int fill = (int)(frac * w + 0.5);
        putchar('[');
        for (int i = 0; i < w; i++) putchar(i < fill ? '#' : '-');
        putchar(']');
    }
    fputs(tail, stdout);
    fflush(stdout);
}

static int get_job(rm_ctx *x, int64_t id, T2__Reply **rep) {
    T2__Request r;
    T2__JobRef ref = T2__JOB_REF__INIT;
    t2w_request_init(&r, 0);
    ref.id = id;
    r.body_case = T2__REQUEST__BODY_JOB_GET;
    r.job_get = &ref;
    int rc = rm_call(x, &r, rep);
    if (!rc && ((*rep)->body_case != T2__REPLY__BODY_JOB || !(*rep)->job)) {
        rc = rm_unexpected(x, *rep);
        t2w_reply_free(*rep);
        *rep = NULL;
    }
    return rc;
}

int rm_follow_job(rm_ctx *x, int64_t id, T2__Reply **final_reply) {
    if (final_reply) *final_reply = NULL;
    T2__Request r;
    T2__JobRef ref = T2__JOB_REF__INIT;
    t2w_request_init(&r, 0);
    ref.id = id;
    r.body_case = T2__REQUEST__BODY_JOB_WATCH;
    r.job_watch = &ref;
    rm_catch_sigint();
    int tty = !x->json && isatty(1), on_bar = 0;
    T2__Reply *rep = NULL;
    int rc = rm_call_stream(x, &r, &rep);
    while (!rc) {
        const T2__JobEvent *e = rep->body_case == T2__REPLY__BODY_EVENT ? rep->event : NULL;
        if (e && x->json) {
            rm_print_json(rm_to_json((const ProtobufCMessage *)e));
        } else if (e && tty && !strcmp(e->type, "progress")) {
            bar(id, e);
            on_bar = 1;
        } else if (e) {
            if (on_bar) printf("\r\033[K");
            event_line(e, stdout);
            fflush(stdout);
            on_bar = 0;
        }
        int final = rep->final;
        t2w_reply_free(rep);
        rep = NULL;
        if (final) break;
        rc = rm_next(x, r.id, &rep);
    }
    if (on_bar) putchar('\n');
    if (rm_interrupted) {
        if (x->sent) rm_cancel_stream(x, r.id);
        fprintf(stderr, "t2: stopped watching job %lld; it goes on (t2 job cancel %lld stops it)\n", (long long)id,
                (long long)id);
        return T2_EXIT_INTERRUPTED;
    }
    if (rc) return rc;
    /* The stream ended: the job's final state decides the exit code. */
    if ((rc = get_job(x, id, &rep))) return rc;
    const T2__Job *j = rep->job;
    if (x->json) rm_print_json(rm_to_json((const ProtobufCMessage *)j));
    else if (strcmp(j->state, "done")) fprintf(stderr, "job %lld %s%s%s\n", (long long)id, j->state, *j->error ? ": " : "", j->error);
    rc = !strcmp(j->state, "done") ? T2_EXIT_OK : T2_EXIT_ERROR;
    if (final_reply) *final_reply = rep;
    else t2w_reply_free(rep);
    return rc;
}

/* ---------------- train and eval ---------------- */

/* --set key=value ... into a JSON object text (values that parse as JSON stay JSON, others are strings),
 * or --settings JSON (an object). NULL with a message on bad input; "" when neither. Caller frees. */
static char *settings_json(cli_opts *o, const char *cmd) {
    int n;
    const char **sets = rm_multi(o, "set", NULL, &n);
    const char *whole = cli_str(o, "settings");
    char *out = NULL;
    json_error_t err;
    if (n && whole) {
        fprintf(stderr, "t2 %s: give --set key=value ... or --settings JSON, not both\n", cmd);
    } else if (whole) {
        json_t *j = json_loads(whole, 0, &err);
        if (!j || !json_is_object(j)) fprintf(stderr, "t2 %s: --settings: not a JSON object: %s\n", cmd, j ? "" : err.text);
        else out = json_dumps(j, JSON_COMPACT);
        json_decref(j);
    } else {
        json_t *obj = json_object();
        int ok = 1;
        for (int i = 0; i < n && ok; i++) {
            const char *eq = strchr(sets[i], '=');
            if (!eq || eq == sets[i]) {
                fprintf(stderr, "t2 %s: --set \"%s\" is not key=value\n", cmd, sets[i]);
                ok = 0;
                break;
            }
            char *key = strndup(sets[i], (size_t)(eq - sets[i]));
            json_t *v = json_loads(eq + 1, JSON_DECODE_ANY, &err);
            if (!v) v = json_string(eq + 1);
            if (!v) {
                fprintf(stderr, "t2 %s: --set %s: the value is not UTF-8\n", cmd, key);
                ok = 0;
            } else {
                json_object_set_new(obj, key, v);
            }
            free(key);
        }
        if (ok) out = n ? json_dumps(obj, JSON_COMPACT) : strdup("");
        json_decref(obj);
    }
    free(sets);
    return out;
}

static int submit(int argc, char **argv, const char *kind) {
    cli_opts o;
    rm_ctx x;
    int train = !strcmp(kind, "train");
    int rc = rm_begin(&x, &o, argc, argv, kind);
    T2__JobSubmit js = T2__JOB_SUBMIT__INIT;
    T2__Sampling smp = T2__SAMPLING__INIT;
    T2__MixPart **mix = NULL;
    size_t n_mix = 0;
    char *settings = NULL;
    long long priority = 0, limit = 0, max_tokens = 0;
    double temperature = 0;
    js.kind = (char *)kind;
    const char *trainer = cli_str(&o, "trainer"), *dataset = cli_str(&o, "dataset"), *grader = cli_str(&o, "grader");
    const char *expert = cli_str(&o, "expert"), *label = train ? cli_str(&o, "label") : NULL, *split = NULL,
               *dispatch = NULL, *mixs = NULL;
    int follow = cli_flag(&o, "follow");
    if (!rc && cli_int(&o, "priority", 0, UINT32_MAX, &priority)) rc = T2_EXIT_USAGE;
    if (train) {
        if (!rc && !(settings = settings_json(&o, kind))) rc = T2_EXIT_USAGE;
        if (!rc && (!trainer || !dataset || !expert)) {
            fprintf(stderr, "t2 train: --trainer NAME --dataset SPEC --expert NAME are required\n");
            rc = T2_EXIT_USAGE;
        }
    } else {
        split = cli_str(&o, "split");
        dispatch = cli_str(&o, "dispatch");
        mixs = cli_str(&o, "mix");
        if (!rc && (cli_int(&o, "limit", 0, T2W_MAX_EVAL_LIMIT, &limit) ||
                    cli_int(&o, "max-tokens", 0, T2W_MAX_TOKENS, &max_tokens) ||
                    cli_float(&o, "temperature", 0, T2W_MAX_TEMPERATURE, &temperature)))
            rc = T2_EXIT_USAGE;
        if (!rc && !dataset) fprintf(stderr, "t2 eval: --dataset SPEC is required\n"), rc = T2_EXIT_USAGE;
        if (!rc && (!!dispatch + !!expert + !!mixs) > 1)
            fprintf(stderr, "t2 eval: --dispatch, --expert and --mix exclude each other\n"), rc = T2_EXIT_USAGE;
        if (!rc && (mixs || expert) && rm_parse_mix(mixs ? mixs : expert, &mix, &n_mix)) rc = T2_EXIT_USAGE;
        expert = NULL;   /* eval: the expert answers (a mixture of one); JobSubmit.expert names a train output */
    }
    if (!rc) {
        js.trainer = (char *)(trainer ? trainer : "");
        js.grader = (char *)(grader ? grader : "");
        js.dataset = (char *)dataset;
        js.expert = (char *)(expert ? expert : "");
        js.label = (char *)(label ? label : "");
        js.settings = settings ? settings : "";
        js.dispatch = (char *)(dispatch ? dispatch : "");
        js.mix = mix;
        js.n_mix = n_mix;
        js.split = (char *)(split ? split : "");
        js.limit = (uint32_t)limit;
        js.priority = (uint32_t)priority;
        if (max_tokens || temperature > 0) {
            smp.max_tokens = (uint32_t)max_tokens;
            smp.temperature = (float)temperature;
            js.sampling = &smp;
        }
    }
    T2__Request r;
    t2w_request_init(&r, 0);
    r.body_case = T2__REQUEST__BODY_JOB_SUBMIT;
    r.job_submit = &js;
    char why[512];
    if (!rc && t2w_request_check(&r, why, sizeof why) != T2__ERROR_CODE__ERROR_NONE) {
        fprintf(stderr, "t2 %s: %s\n", kind, why);
        rc = T2_EXIT_USAGE;
    }
    rc = rm_ready(&x, &o, rc);
    T2__Reply *rep = NULL;
    if (!rc) rc = rm_call(&x, &r, &rep);
    if (!rc && (rep->body_case != T2__REPLY__BODY_JOB || !rep->job)) rc = rm_unexpected(&x, rep);
    if (!rc) {
        int64_t id = rep->job->id;
        if (x.json) rm_print_json(rm_to_json((const ProtobufCMessage *)rep->job));
        else if (follow) printf("job %lld queued\n", (long long)id);
        else printf("%lld\n", (long long)id);
        fflush(stdout);
        if (follow) {
            T2__Reply *fin = NULL;
            rc = rm_follow_job(&x, id, &fin);
            if (rc || !fin || x.json) {
                /* failed, cancelled or interrupted: rm_follow_job said so */
            } else if (!train) {
                /* eval: the accuracy from the result JSON (else the job's own field). */
                json_error_t err;
                json_t *res = *fin->job->result ? json_loads(fin->job->result, 0, &err) : NULL;
                json_t *acc = res ? json_object_get(res, "accuracy") : NULL;
                char b[32];
                if (acc && json_is_number(acc)) printf("accuracy %.4f\n", json_number_value(acc));
                else printf("accuracy %s\n", rm_num(fin->job->accuracy, "%.4f", b, sizeof b));
                if (res) printf("result %s\n", fin->job->result);
                json_decref(res);
            } else {
                char b[32];
                printf("job %lld done: expert %s, accuracy %s\n", (long long)id, fin->job->expert,
                       rm_num(fin->job->accuracy, "%.4f", b, sizeof b));
            }
            t2w_reply_free(fin);
        }
    }
    t2w_reply_free(rep);
    free(settings);
    rm_mix_free(mix, n_mix);
    cli_free(&o);
    rm_close(&x);
    return rc;
}

int t2_cmd_train(int argc, char **argv) { return submit(argc, argv, "train"); }
int t2_cmd_eval(int argc, char **argv) { return submit(argc, argv, "eval"); }

/* ---------------- jobs, job show|cancel|watch|log ---------------- */

int t2_cmd_jobs(int argc, char **argv) {
    cli_opts o;
    rm_ctx x;
    int rc = rm_begin(&x, &o, argc, argv, "jobs");
    T2__JobList jl = T2__JOB_LIST__INIT;
    long long limit = 0;
    const char *state = cli_str(&o, "state");
    if (!rc && cli_int(&o, "limit", 0, T2W_MAX_JOB_LIST, &limit)) rc = T2_EXIT_USAGE;
    jl.state = (char *)(state ? state : "");
    jl.limit = (uint32_t)limit;
    T2__Request r;
    t2w_request_init(&r, 0);
    r.body_case = T2__REQUEST__BODY_JOB_LIST;
    r.job_list = &jl;
    char why[512];
    if (!rc && t2w_request_check(&r, why, sizeof why) != T2__ERROR_CODE__ERROR_NONE)
        fprintf(stderr, "t2 jobs: %s\n", why), rc = T2_EXIT_USAGE;
    rc = rm_ready(&x, &o, rc);
    T2__Reply *rep = NULL;
    if (!rc) rc = rm_call(&x, &r, &rep);
    if (!rc && (rep->body_case != T2__REPLY__BODY_JOBS || !rep->jobs)) rc = rm_unexpected(&x, rep);
    if (!rc && x.json) {
        rm_print_json(rm_to_json((const ProtobufCMessage *)rep->jobs));
    } else if (!rc) {
        printf("%-6s %-5s %-9s %-12s %-32s %-13s %-8s %-8s %s\n", "ID", "KIND", "STATE", "TENANT", "WHAT", "PROGRESS",
               "REWARD", "ACC", "CREATED");
        for (size_t i = 0; i < rep->jobs->n_jobs; i++) {
            const T2__Job *j = rep->jobs->jobs[i];
            char w[128], p[32], a[32], b[32], t[32];
            snprintf(p, sizeof p, "%lld/%lld", (long long)j->step, (long long)j->total);
            printf("%-6lld %-5s %-9s %-12s %-32s %-13s %-8s %-8s %s\n", (long long)j->id, j->kind, j->state, j->tenant,
                   job_what(j, w, sizeof w), p, rm_num(j->reward, "%.4f", a, sizeof a),
                   rm_num(j->accuracy, "%.4f", b, sizeof b), rm_time(j->created, t, sizeof t));
        }
    }
    t2w_reply_free(rep);
    rm_close(&x);
    return rc;
}

/* The job id argument of `t2 job ...`; -1 with a usage message. */
static int64_t job_id(cli_opts *o, const char *cmd) {
    const char *a = rm_one_arg(o, cmd, "job ID");
    if (!a) return -1;
    char *end;
    errno = 0;
    long long v = strtoll(a, &end, 10);
    if (errno || end == a || *end || v <= 0) {
        fprintf(stderr, "t2 %s: \"%s\" is not a job id\n", cmd, a);
        return -1;
    }
    return v;
}

static int job_cmd(int argc, char **argv, const char *cmd, T2__Request__BodyCase body) {
    cli_opts o;
    rm_ctx x;
    int rc = rm_begin(&x, &o, argc, argv, cmd);
    int64_t id = rc ? 0 : job_id(&o, cmd);
    if (id < 0) rc = T2_EXIT_USAGE;
    rc = rm_ready(&x, &o, rc);
    if (rc) {
        rm_close(&x);
        return rc;
    }
    if (body == T2__REQUEST__BODY_JOB_WATCH) {
        rc = rm_follow_job(&x, id, NULL);
        rm_close(&x);
        return rc;
    }
    T2__Request r;
    T2__JobRef ref = T2__JOB_REF__INIT;
    t2w_request_init(&r, 0);
    ref.id = id;
    r.body_case = body;
    r.job_get = &ref;
    T2__Reply *rep = NULL;
    rc = rm_call(&x, &r, &rep);
    if (!rc) {
        if (rep->body_case == T2__REPLY__BODY_JOB && rep->job) {
            if (x.json) rm_print_json(rm_to_json((const ProtobufCMessage *)rep->job));
            else if (body == T2__REQUEST__BODY_JOB_CANCEL) printf("job %lld %s\n", (long long)id, rep->job->state);
            else job_human(rep->job);
        } else if (rep->body_case == T2__REPLY__BODY_LOG && rep->log) {
            if (x.json) rm_print_json(rm_to_json((const ProtobufCMessage *)rep->log));   /* {"events": [...]} */
            else
                for (size_t i = 0; i < rep->log->n_events; i++) event_line(rep->log->events[i], stdout);
        } else if (rep->body_case == T2__REPLY__BODY_ACK && rep->ack) {
            if (x.json) rm_print_json(rm_to_json((const ProtobufCMessage *)rep->ack));
            else printf("%s\n", *rep->ack->message ? rep->ack->message : "ok");
        } else {
            rc = rm_unexpected(&x, rep);
        }
        t2w_reply_free(rep);
    }
    rm_close(&x);
    return rc;
}

int t2_cmd_job_show(int argc, char **argv) { return job_cmd(argc, argv, "job show", T2__REQUEST__BODY_JOB_GET); }
int t2_cmd_job_cancel(int argc, char **argv) { return job_cmd(argc, argv, "job cancel", T2__REQUEST__BODY_JOB_CANCEL); }
int t2_cmd_job_watch(int argc, char **argv) { return job_cmd(argc, argv, "job watch", T2__REQUEST__BODY_JOB_WATCH); }
int t2_cmd_job_log(int argc, char **argv) { return job_cmd(argc, argv, "job log", T2__REQUEST__BODY_JOB_LOG); }
