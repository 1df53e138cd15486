/* remote_gen.c — `t2 info`, `t2 plugins`, `t2 stats`, `t2 ping` and `t2 generate`. */
#include "remote.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Parse the common options, check for leftovers, connect. 0 or an exit code. */
static int open_simple(rm_ctx *x, cli_opts *o, int argc, char **argv, const char *cmd) {
    memset(x, 0, sizeof *x);
    memset(o, 0, sizeof *o);
    if (cli_init(o, argc - 1, argv + 1)) return T2_EXIT_ERROR;
    int rc = rm_parse(x, o, cmd);
    if (!rc && cli_done(o, cmd)) rc = T2_EXIT_USAGE;
    if (!rc) rc = rm_connect(x);
    return rc;
}

static int simple(int argc, char **argv, const char *cmd, T2__Request__BodyCase body, T2__Reply__BodyCase want,
                  void (*human)(const T2__Reply *)) {
    cli_opts o;
    rm_ctx x;
    int rc = open_simple(&x, &o, argc, argv, cmd);
    cli_free(&o);
    if (!rc) {
        T2__Request r;
        T2__Ping empty = T2__PING__INIT;   /* Ping, InfoRequest, StatsRequest, PluginList: all empty */
        t2w_request_init(&r, 0);
        r.body_case = body;
        r.ping = &empty;
        T2__Reply *rep;
        rc = rm_call(&x, &r, &rep);
        if (!rc) {
            if (rep->body_case != want || !rep->pong) rc = rm_unexpected(&x, rep);
            else if (x.json) rm_print_json(rm_to_json((const ProtobufCMessage *)rep->pong));
            else human(rep);
            t2w_reply_free(rep);
        }
    }
    rm_close(&x);
    return rc;
}

static void info_human(const T2__Reply *r) {
    const T2__InfoReply *i = r->info;
    printf("daemon        t2d %s (protocol %u.%02u, plugin ABI %u.%u)\n", i->daemon_version, i->protocol_version / 100,
           i->protocol_version % 100, i->abi_major, i->abi_minor);
    printf("model         %s (%s, %llu parameters, context %u)\n", i->model, i->arch, (unsigned long long)i->n_params,
           i->n_ctx);
    printf("fingerprint   %s\n", i->fingerprint);
    printf("experts       %s matrices (%u), %llu parameters each\n", i->modules, i->n_matrices,
           (unsigned long long)i->expert_params);
    printf("dispatch      %s (default)\n", i->default_dispatch);
    printf("tenant        %s\n", i->tenant);
}

static void plugins_human(const T2__Reply *r) {
    const T2__PluginListReply *p = r->plugins;
    printf("%-20s %-9s %-10s %-6s %s\n", "NAME", "KIND", "VERSION", "ABI", "DESCRIPTION");
    for (size_t i = 0; i < p->n_plugins; i++) {
        const T2__Plugin *g = p->plugins[i];
        char abi[24];
        snprintf(abi, sizeof abi, "%u.%u", g->abi_major, g->abi_minor);
        printf("%-20s %-9s %-10s %-6s %s\n", g->name, g->kind, g->version, abi, g->description);
    }
    for (size_t i = 0; i < p->n_refused; i++) printf("refused: %s\n", p->refused[i]);
}

static void stats_human(const T2__Reply *r) {
    const T2__StatsReply *s = r->stats;
    char b[32];
    printf("uptime            %s\n", rm_duration(s->uptime_seconds, b, sizeof b));
    printf("requests          %llu (%llu errors)\n", (unsigned long long)s->requests, (unsigned long long)s->errors);
    printf("tokens            %llu generated, %llu prompt\n", (unsigned long long)s->tokens_generated,
           (unsigned long long)s->tokens_prompt);
    printf("sequences         %u active\n", s->active_sequences);
    printf("jobs              %u queued, %u running\n", s->queued_jobs, s->running_jobs);
    printf("clients           %u\n", s->clients);
    printf("executor          %.1f%% busy, %llu batches, %.2f rows per batch\n", 100.0 * s->busy_fraction,
           (unsigned long long)s->batches, s->mean_batch_rows);
}

int t2_cmd_info(int argc, char **argv) {
    return simple(argc, argv, "info", T2__REQUEST__BODY_INFO, T2__REPLY__BODY_INFO, info_human);
}
int t2_cmd_plugins(int argc, char **argv) {
    return simple(argc, argv, "plugins", T2__REQUEST__BODY_PLUGIN_LIST, T2__REPLY__BODY_PLUGINS, plugins_human);
}
int t2_cmd_stats(int argc, char **argv) {
    return simple(argc, argv, "stats", T2__REQUEST__BODY_STATS, T2__REPLY__BODY_STATS, stats_human);
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

int t2_cmd_ping(int argc, char **argv) {
    cli_opts o;
    rm_ctx x;
    long long count = 1;
    if (cli_init(&o, argc - 1, argv + 1)) return T2_EXIT_ERROR;
    int rc = rm_parse(&x, &o, "ping");
    if (!rc && cli_int(&o, "count", 1, 1000000, &count)) rc = T2_EXIT_USAGE;
    if (!rc && cli_done(&o, "ping")) rc = T2_EXIT_USAGE;
    cli_free(&o);
    if (!rc) rc = rm_connect(&x);
    for (long long i = 0; !rc && i < count; i++) {
        T2__Request r;
        T2__Ping p = T2__PING__INIT;
        t2w_request_init(&r, 0);
        r.body_case = T2__REQUEST__BODY_PING;
        r.ping = &p;
        T2__Reply *rep;
        double t0 = now_s();
        rc = rm_call(&x, &r, &rep);
        double ms = (now_s() - t0) * 1e3;
        if (rc) break;
        if (rep->body_case != T2__REPLY__BODY_PONG) rc = rm_unexpected(&x, rep);
        else if (x.json) rm_print_json(json_pack("{s:s,s:f}", "endpoint", x.endpoint, "ms", ms));
        else printf("pong from %s in %.3f ms\n", x.endpoint, ms);
        t2w_reply_free(rep);
    }
    rm_close(&x);
    return rc;
}

/* ---------------- generate ---------------- */

/* The whole of stdin (a prompt piped in), at most T2W_MAX_TEXT bytes. Caller frees. */
static char *read_stdin(void) {
    size_t cap = 4096, n = 0;
    char *b = malloc(cap);
    while (b) {
        if (n + 1 >= cap) {
            if (cap > T2W_MAX_TEXT + 2) break;
            char *nb = realloc(b, cap * 2);
            if (!nb) break;
            b = nb, cap *= 2;
        }
        size_t k = fread(b + n, 1, cap - n - 1, stdin);
        if (k == 0) break;
        n += k;
    }
    if (b) b[n] = 0;
    return b;
}

static void print_decision(const T2__GenerateDone *d) {
    const T2__Decision *dec = d->decision;
    fputs("[", stderr);
    if (dec && *dec->dispatch) fprintf(stderr, "dispatch %s -> %s: ", dec->dispatch, *dec->label ? dec->label : "?");
    if (!dec || dec->n_mix == 0) fputs("base model", stderr);
    for (size_t i = 0; dec && i < dec->n_mix; i++) {
        const T2__MixPart *p = dec->mix[i];
        if (p->n_alpha_per_matrix) fprintf(stderr, "%s%s (per matrix)", i ? " + " : "", p->expert);
        else fprintf(stderr, "%s%s %.3g", i ? " + " : "", p->expert, p->alpha);
    }
    fprintf(stderr, " | first pass %.2f s, second pass %.2f s, queued %.2f s | %u prompt + %u tokens, stop %s]\n",
            d->first_pass_seconds, d->second_pass_seconds, d->queue_seconds, d->n_prompt, d->n_tokens, d->stop);
}

int t2_cmd_generate(int argc, char **argv) {
    cli_opts o;
    rm_ctx x;
    if (cli_init(&o, argc - 1, argv + 1)) return T2_EXIT_ERROR;
    int rc = rm_parse(&x, &o, "generate");
    T2__GenerateRequest g = T2__GENERATE_REQUEST__INIT;
    T2__Sampling s = T2__SAMPLING__INIT;
    T2__ChatMessage msgs[2], *mp[2];
    T2__MixPart **mix = NULL;
    size_t n_mix = 0;
    int n_stop = 0, n_words = 0;
    const char **stops = NULL, **words = NULL;
    char *prompt = NULL;
    long long max_tokens = 0, top_k = 0, seed = 0;
    double temperature = 0, top_p = 0;
    const char *dispatch = cli_str(&o, "dispatch"), *expert = cli_str(&o, "expert"), *mixs = cli_str(&o, "mix");
    const char *system = cli_str(&o, "system");
    int base = cli_flag(&o, "base"), raw = cli_flag(&o, "raw"), no_stream = cli_flag(&o, "no-stream");
    g.task_id = (char *)cli_str(&o, "task-id");
    g.examples = (char *)cli_str(&o, "examples");
    g.dispatch_settings = (char *)cli_str(&o, "dispatch-settings");
    if (!rc && (cli_int(&o, "max-tokens", 0, T2W_MAX_TOKENS, &max_tokens) ||
                cli_float(&o, "temperature", 0, T2W_MAX_TEMPERATURE, &temperature) ||
                cli_float(&o, "top-p", 0, 1, &top_p) || cli_int(&o, "top-k", 0, T2W_MAX_TOKENS, &top_k) ||
                cli_int(&o, "seed", 0, INT64_MAX, &seed)))
        rc = T2_EXIT_USAGE;
    stops = rm_multi(&o, "stop", NULL, &n_stop);
    if (!rc) words = rm_positional(&o, &n_words);
    if (!rc && cli_done(&o, "generate")) rc = T2_EXIT_USAGE;
    if (!rc && (!!dispatch + !!expert + !!mixs + base) > 1) {
        fprintf(stderr, "t2 generate: --dispatch, --expert, --mix and --base exclude each other\n");
        rc = T2_EXIT_USAGE;
    }
    if (!rc && n_stop > T2W_MAX_STOPS) {
        fprintf(stderr, "t2 generate: %d --stop strings (at most %d)\n", n_stop, T2W_MAX_STOPS);
        rc = T2_EXIT_USAGE;
    }
    if (!rc && raw && system) {
        fprintf(stderr, "t2 generate: --system needs chat messages (leave out --raw)\n");
        rc = T2_EXIT_USAGE;
    }
    if (!rc && mixs && rm_parse_mix(mixs, &mix, &n_mix)) rc = T2_EXIT_USAGE;
    if (!rc && expert && rm_parse_mix(expert, &mix, &n_mix)) rc = T2_EXIT_USAGE;
    if (!rc && expert && (n_mix != 1 || strchr(expert, ':'))) {
        fprintf(stderr, "t2 generate: --expert takes one expert NAME (use --mix for weights)\n");
        rc = T2_EXIT_USAGE;
    }
    if (!rc) {
        /* The prompt: the words after the options, else stdin when it is not a terminal. */
        size_t len = 0;
        for (int i = 0; i < n_words; i++) len += strlen(words[i]) + 1;
        if (n_words) {
            prompt = calloc(len + 1, 1);
            for (int i = 0; prompt && i < n_words; i++) strcat(strcat(prompt, i ? " " : ""), words[i]);
        } else if (!isatty(0)) {
            prompt = read_stdin();
        }
        if (!prompt || !*prompt) {
            fprintf(stderr, "t2 generate: no prompt (give it as arguments or on stdin)\n");
            rc = T2_EXIT_USAGE;
        } else if (strlen(prompt) > T2W_MAX_TEXT) {
            fprintf(stderr, "t2 generate: the prompt is longer than %u bytes\n", T2W_MAX_TEXT);
            rc = T2_EXIT_USAGE;
        }
    }
    cli_free(&o);
    if (!rc) {
        s.max_tokens = (uint32_t)max_tokens;
        s.temperature = (float)temperature;
        s.top_p = (float)top_p;
        s.top_k = (uint32_t)top_k;
        s.seed = (uint64_t)seed;
        s.n_stop = (size_t)n_stop;
        s.stop = (char **)stops;
        g.sampling = &s;
        if (raw) {
            g.prompt = prompt;
        } else {
            size_t k = 0;
            if (system) {
                t2__chat_message__init(&msgs[k]);
                msgs[k].role = "system";
                msgs[k].content = (char *)system;
                mp[k] = &msgs[k], k++;
            }
            t2__chat_message__init(&msgs[k]);
            msgs[k].role = "user";
            msgs[k].content = prompt;
            mp[k] = &msgs[k], k++;
            g.messages = mp;
            g.n_messages = k;
        }
        g.dispatch = (char *)dispatch;
        g.mix = mix;
        g.n_mix = n_mix;
        g.base_model = base;
        g.stream = !no_stream && !x.json;   /* --json prints only the final GenerateDone */
        if (!g.task_id) g.task_id = "";
        if (!g.examples) g.examples = "";
        if (!g.dispatch_settings) g.dispatch_settings = "";
        T2__Request r;
        t2w_request_init(&r, 0);
        r.body_case = T2__REQUEST__BODY_GENERATE;
        r.generate = &g;
        /* Refuse here what the daemon would refuse, with the same message. */
        char why[512];
        if (t2w_request_check(&r, why, sizeof why) != T2__ERROR_CODE__ERROR_NONE) {
            fprintf(stderr, "t2 generate: %s\n", why);
            rc = T2_EXIT_USAGE;
        }
        if (!rc) rc = rm_connect(&x);
        if (!rc) {
            rm_catch_sigint();
            T2__Reply *rep = NULL;
            int ended_nl = 1;
            rc = rm_call_stream(&x, &r, &rep);
            while (!rc) {
                if (rep->body_case == T2__REPLY__BODY_CHUNK && rep->chunk) {
                    if (!x.json && *rep->chunk->text) {
                        fputs(rep->chunk->text, stdout);
                        fflush(stdout);
                        ended_nl = rep->chunk->text[strlen(rep->chunk->text) - 1] == '\n';
                    }
                } else if (rep->body_case == T2__REPLY__BODY_DONE && rep->done) {
                    if (x.json) {
                        rm_print_json(rm_to_json((const ProtobufCMessage *)rep->done));
                    } else {
                        if (!g.stream) fputs(rep->done->text, stdout), ended_nl = !*rep->done->text ||
                                                                         rep->done->text[strlen(rep->done->text) - 1] == '\n';
                        if (!ended_nl) putchar('\n');
                        fflush(stdout);
                        print_decision(rep->done);
                    }
                    if (!strcmp(rep->done->stop, "cancelled")) rc = T2_EXIT_ERROR;
                } else if (!rep->final) {
                    /* an unknown partial reply (a newer daemon): skip it */
                } else {
                    rc = rm_unexpected(&x, rep);
                }
                int final = rep->final;
                t2w_reply_free(rep);
                rep = NULL;
                if (final || rc) break;
                rc = rm_next(&x, r.id, &rep);
            }
            if (rm_interrupted) {
                if (!ended_nl && !x.json) putchar('\n'), fflush(stdout);
                if (x.sent) rm_cancel_stream(&x, r.id);
                rc = T2_EXIT_INTERRUPTED;
            }
        }
    }
    free(stops);
    free(words);
    free(prompt);
    rm_mix_free(mix, n_mix);
    rm_close(&x);
    return rc;
}
