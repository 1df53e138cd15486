/* `t2 model ...`: the engine in-process, no daemon. */
#include "cmd_model.h"
#include "cli.h"
#include "svf_opts.h"

#include <t2/error.h>
#include <t2/model.h>
#include <t2/npy.h>
#include <t2/sampler.h>
#include <t2/chat.h>
#include <t2/tokenizer.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int t2_cmd_model_info(int argc, char **argv) {
    cli_opts o;
    int rc = T2_EXIT_OK;
    if (cli_init(&o, argc - 1, argv + 1)) return T2_EXIT_ERROR;
    int json = cli_flag(&o, "json");
    t2_model *m = cli_open_model(&o, &rc);
    if (m && cli_done(&o, "model info")) rc = T2_EXIT_USAGE;
    if (m && !rc) {
        const t2_model_config *c = t2_model_get_config(m);
        const t2_st *st = t2_model_tensors(m);
        size_t by_dtype[T2_DTYPE_COUNT] = {0};
        for (size_t i = 0; i < t2_st_count(st); i++) by_dtype[t2_st_at(st, i)->dtype]++;
        const char *rope = c->rope_kind == T2_ROPE_LLAMA3 ? "llama3" : c->rope_kind == T2_ROPE_LINEAR ? "linear" : "default";
        if (json) {
            printf("{\"model_type\": \"%s\", \"params\": %lld, \"layers\": %d, \"hidden\": %d, \"ffn\": %d, \"heads\": %d, "
                   "\"kv_heads\": %d, \"head_dim\": %d, \"vocab\": %d, \"rope\": \"%s\", \"rope_theta\": %g, "
                   "\"tied_embeddings\": %s, \"weight_dtype\": \"%s\", \"tensors\": %zu, \"bytes\": %zu}\n",
                   c->model_type, (long long)t2_model_n_params(m), c->n_layers, c->hidden_size, c->intermediate_size,
                   c->n_heads, c->n_kv_heads, c->head_dim, c->vocab_size, rope, c->rope_theta,
                   c->tie_word_embeddings ? "true" : "false", t2_dtype_name(t2_model_weight_dtype(m)), t2_st_count(st),
                   t2_st_data_bytes(st));
        } else {
            printf("architecture   %s (%d layers, hidden %d, ffn %d)\n", c->model_type, c->n_layers, c->hidden_size,
                   c->intermediate_size);
            printf("attention      %d heads, %d kv heads (%s), head_dim %d%s\n", c->n_heads, c->n_kv_heads,
                   c->n_heads == c->n_kv_heads ? "MHA" : "GQA", c->head_dim, c->attention_bias ? ", q/k/v bias" : "");
            printf("rope           %s, theta %g", rope, c->rope_theta);
            if (c->rope_kind != T2_ROPE_DEFAULT) printf(", factor %g", c->rope_factor);
            printf("\n");
            if (c->sliding_window) printf("sliding window %d\n", c->sliding_window);
            printf("vocab          %d%s\n", c->vocab_size, c->tie_word_embeddings ? " (tied embeddings)" : "");
            printf("parameters     %lld (%.3f B)\n", (long long)t2_model_n_params(m), t2_model_n_params(m) / 1e9);
            printf("tensors        %zu:", t2_st_count(st));
            for (int d = 0; d < T2_DTYPE_COUNT; d++)
                if (by_dtype[d]) printf(" %zu %s", by_dtype[d], t2_dtype_name((t2_dtype)d));
            printf("\nweights        %.1f MB mapped, %.1f MB read per decoded token\n", t2_st_data_bytes(st) / 1e6,
                   t2_model_decode_bytes(m) / 1e6);
        }
    }
    t2_model_free(m);
    cli_free(&o);
    return rc;
}

int t2_cmd_model_logits(int argc, char **argv) {
    cli_opts o;
    int rc = T2_EXIT_OK;
    if (cli_init(&o, argc - 1, argv + 1)) return T2_EXIT_ERROR;
    const char *ids_s = cli_str(&o, "ids"), *out = cli_str(&o, "out");
    t2_model *m = cli_open_model(&o, &rc);
    svf_sel sel = {0};
    int32_t *ids = NULL;
    int n = 0;
    if (m) rc = svf_select(&o, m, 0, &sel);
    if (m && !rc && (!ids_s || !out)) {
        fprintf(stderr, "t2 model logits: --ids and --out are required\n");
        rc = T2_EXIT_USAGE;
    }
    if (m && !rc && (cli_done(&o, "model logits") || cli_parse_ids(ids_s, "--ids", &ids, &n))) rc = T2_EXIT_USAGE;
    if (m && !rc) {
        const t2_model_config *c = t2_model_get_config(m);
        t2_ctx_params cp = t2_ctx_default_params();
        cp.n_ctx = n;
        cp.n_batch = n;
        t2_status s;
        t2_ctx *ctx = t2_ctx_new(m, &cp, &s);
        float *logits = ctx ? malloc((size_t)n * (size_t)c->vocab_size * sizeof(float)) : NULL;
        int32_t *pos = malloc((size_t)n * sizeof *pos), *seq = calloc((size_t)n, sizeof *seq);
        uint8_t *want = malloc((size_t)n);
        const t2_adapter **ad = malloc((size_t)n * sizeof *ad);
        if (!ctx) rc = cli_fail("cannot create context", s);
        else if (!logits || !pos || !seq || !want || !ad) rc = cli_fail("logits", T2_ERR_NOMEM);
        else if (!(rc = svf_attach(&sel, ctx))) {
            for (int i = 0; i < n; i++) pos[i] = i, want[i] = 1, ad[i] = sel.adapter;
            t2_batch b = {.n = n, .token = ids, .pos = pos, .seq = seq, .want = want};
            int64_t shape[2] = {n, c->vocab_size};
            if ((s = t2_ctx_decode_adapted(ctx, &b, sel.adapter ? ad : NULL, logits))) rc = cli_fail("forward", s);
            else if ((s = t2_npy_write_f32(out, logits, shape, 2))) rc = cli_fail("cannot write logits", s);
        }
        free(logits);
        free(pos);
        free(seq);
        free(want);
        free(ad);
        t2_ctx_free(ctx);
    }
    free(ids);
    svf_sel_free(&sel);
    t2_model_free(m);
    cli_free(&o);
    return rc;
}

/* --stop-ids "1,2;7": token sequences that end generation. */
static int parse_stops(const char *s, int32_t ***stops, int **lens, int *n) {
    *n = 0;
    *stops = NULL;
    *lens = NULL;
    if (!s) return 0;
    int cap = 1;
    for (const char *p = s; *p; p++) cap += *p == ';';
    *stops = calloc((size_t)cap, sizeof **stops);
    *lens = calloc((size_t)cap, sizeof **lens);
    char *copy = strdup(s);
    if (!*stops || !*lens || !copy) {
        free(copy);
        return -1;
    }
    char *save = NULL;
    for (char *tok = strtok_r(copy, ";", &save); tok; tok = strtok_r(NULL, ";", &save)) {
        if (cli_parse_ids(tok, "--stop-ids", &(*stops)[*n], &(*lens)[*n])) {
            free(copy);
            return -1;
        }
        (*n)++;
    }
    free(copy);
    return 0;
}

/* Text mode of generate: the prompt from --prompt TEXT (encoded with the tokenizer's special tokens)
 * or --user TEXT [--system TEXT] [--template T] (chat-templated, with the generation prompt and the
 * end-of-turn token as a stop). */
typedef struct text_mode {
    t2_tokenizer *tok;
    t2_chat_template *tmpl;
    const char *stop_text;      /* --stop TEXT */
    int32_t *gen;               /* generated so far, for the text stop */
    int n_gen, cap;
    int hit_stop;
} text_mode;

static int on_token_text(void *user, int token, float logprob) {
    (void)logprob;
    text_mode *tm = user;
    if (tm->n_gen == tm->cap) {
        int nc = tm->cap ? 2 * tm->cap : 64;
        int32_t *g = realloc(tm->gen, (size_t)nc * sizeof *g);
        if (!g) return 1;
        tm->gen = g, tm->cap = nc;
    }
    tm->gen[tm->n_gen++] = token;
    if (!tm->stop_text || !*tm->stop_text) return 0;
    char *text = NULL;
    size_t len = 0;
    if (t2_tokenizer_decode(tm->tok, tm->gen, (size_t)tm->n_gen, T2_DECODE_SKIP_SPECIAL | T2_DECODE_NO_CLEANUP, &text, &len))
        return 0;
    tm->hit_stop = strstr(text, tm->stop_text) != NULL;
    free(text);
    return tm->hit_stop;
}

static int text_prompt(const char *dir, const char *prompt, const char *user, const char *system, const char *tmpl_spec,
                       text_mode *tm, int32_t **ids, int *n) {
    t2_status s;
    if (!(tm->tok = t2_tokenizer_load(dir, &s))) return cli_fail("cannot load tokenizer", s);
    size_t nn = 0;
    if (prompt) {
        s = t2_tokenizer_encode(tm->tok, prompt, strlen(prompt), 1, ids, &nn);
    } else {
        if (!(tm->tmpl = t2_chat_template_load(tmpl_spec ? tmpl_spec : "auto", tm->tok, &s))) return cli_fail("chat template", s);
        t2_chat_message msgs[2];
        size_t k = 0;
        if (system) msgs[k++] = (t2_chat_message){.role = "system", .content = system};
        msgs[k++] = (t2_chat_message){.role = "user", .content = user};
        s = t2_chat_encode(tm->tmpl, tm->tok, msgs, k, 1, ids, &nn);
    }
    if (s) return cli_fail("cannot encode the prompt", s);
    if (nn == 0) {
        fprintf(stderr, "t2 model generate: the prompt encodes to no tokens\n");
        return T2_EXIT_USAGE;
    }
    *n = (int)nn;
    return T2_EXIT_OK;
}

/* Print the generation as text (special tokens skipped), cut at the text stop if one was hit. */
static int print_text(const text_mode *tm, const t2_generation *g, int json) {
    char *text = NULL;
    size_t len = 0;
    t2_status s = t2_tokenizer_decode(tm->tok, g->tokens, (size_t)g->n, T2_DECODE_SKIP_SPECIAL, &text, &len);
    if (s) return cli_fail("cannot decode", s);
    if (tm->hit_stop) {
        char *at = strstr(text, tm->stop_text);
        if (at) *at = 0, len = (size_t)(at - text);
    }
    if (json) {
        json_t *str = json_stringn(text, len);
        char *enc = str ? json_dumps(str, JSON_ENCODE_ANY) : NULL;
        printf(", \"text\": %s", enc ? enc : "null");
        free(enc);
        json_decref(str);
    } else {
        fwrite(text, 1, len, stdout);
        printf("\n");
    }
    free(text);
    return T2_EXIT_OK;
}

int t2_cmd_model_generate(int argc, char **argv) {
    cli_opts o;
    int rc = T2_EXIT_OK;
    if (cli_init(&o, argc - 1, argv + 1)) return T2_EXIT_ERROR;
    const char *ids_s = cli_str(&o, "ids"), *stop_s = cli_str(&o, "stop-ids");
    const char *prompt = cli_str(&o, "prompt"), *user = cli_str(&o, "user"), *system = cli_str(&o, "system"),
               *tmpl_spec = cli_str(&o, "template"), *stop_text = cli_str(&o, "stop");
    text_mode tm = {.stop_text = stop_text};
    long long max_tokens = 32, seed = 0, top_k = 0, n_ctx = 0;
    double temp = 0.0, top_p = 1.0;
    int json = cli_flag(&o, "json"), stop_eos = cli_flag(&o, "stop-eos");
    int bad = cli_int(&o, "max-tokens", 0, 1 << 20, &max_tokens) || cli_int(&o, "seed", 0, INT64_MAX, &seed) ||
              cli_int(&o, "top-k", 0, 1 << 24, &top_k) || cli_int(&o, "n-ctx", 0, 1 << 24, &n_ctx) ||
              cli_float(&o, "temperature", 0, 100, &temp) || cli_float(&o, "top-p", 1e-6, 1, &top_p);
    t2_model *m = bad ? NULL : cli_open_model(&o, &rc);
    if (bad) rc = T2_EXIT_USAGE;
    int32_t *ids = NULL, **stops = NULL;
    int n = 0, n_stops = 0, *stop_lens = NULL;
    svf_sel sel = {0};
    if (m) rc = svf_select(&o, m, 0, &sel);
    int text = prompt || user;
    if (m && !rc && (!!ids_s + !!prompt + !!user != 1 || (system && !user) || (tmpl_spec && !user) || (stop_text && !text))) {
        fprintf(stderr, "t2 model generate: give one of --ids, --prompt TEXT or --user TEXT [--system TEXT] [--template T];"
                        " --stop needs text\n");
        rc = T2_EXIT_USAGE;
    }
    if (m && !rc &&
        (cli_done(&o, "model generate") || (ids_s && cli_parse_ids(ids_s, "--ids", &ids, &n)) ||
         parse_stops(stop_s, &stops, &stop_lens, &n_stops)))
        rc = T2_EXIT_USAGE;
    if (m && !rc && text) rc = text_prompt(cli_str(&o, "model"), prompt, user, system, tmpl_spec, &tm, &ids, &n);
    int32_t eot[1] = {-1};
    if (m && !rc && text) {
        /* text mode ends at eos and at the chat template's end of turn */
        stop_eos = 1;
        if (tm.tmpl && (eot[0] = t2_chat_template_stop_id(tm.tmpl)) >= 0) {
            int *lens = realloc(stop_lens, (size_t)(n_stops + 1) * sizeof *lens);
            int32_t **ns = lens ? realloc(stops, (size_t)(n_stops + 1) * sizeof *ns) : NULL;
            if (lens) stop_lens = lens;
            if (ns) {
                stops = ns;
                stop_lens[n_stops] = 1;
                stops[n_stops++] = eot;
            }
        }
    }
    if (m && !rc) {
        t2_ctx_params cp = t2_ctx_default_params();
        cp.n_ctx = n_ctx ? (int)n_ctx : n + (int)max_tokens;
        cp.n_batch = n < 512 ? n : 512;
        t2_sampler_params sp = t2_sampler_default_params();
        sp.temperature = (float)temp;
        sp.top_p = (float)top_p;
        sp.top_k = (int)top_k;
        sp.seed = (uint64_t)seed;
        t2_status s;
        t2_ctx *ctx = t2_ctx_new(m, &cp, &s);
        t2_sampler *smp = ctx ? t2_sampler_new(&sp, t2_model_get_config(m)->vocab_size, &s) : NULL;
        t2_generation g = {0};
        t2_generate_params gp = {.max_tokens = (int)max_tokens, .stop_at_eos = stop_eos,
                                 .stops = (const int32_t *const *)stops, .stop_lens = stop_lens, .n_stops = n_stops,
                                 .adapter = sel.adapter, .on_token = text ? on_token_text : NULL, .user = &tm};
        if (!ctx || !smp) rc = cli_fail("cannot set up generation", s);
        else if ((rc = svf_attach(&sel, ctx))) { /* message printed */
        } else if ((s = t2_generate(ctx, 0, ids, n, smp, &gp, &g))) rc = cli_fail("generate", s);
        else if (json) {
            static const char *why[] = {"length", "eos", "stop", "stop", "context"};
            printf("{\"ids\": [");
            for (int i = 0; i < g.n; i++) printf(i ? ", %d" : "%d", g.tokens[i]);
            printf("], \"logprobs\": [");
            for (int i = 0; i < g.n; i++) printf(i ? ", %.7g" : "%.7g", g.logprobs[i]);
            printf("], \"stop\": \"%s\"", why[g.stop]);
            if (text) rc = print_text(&tm, &g, 1);
            printf("}\n");
        } else if (text) {
            rc = print_text(&tm, &g, 0);
        } else {
            for (int i = 0; i < g.n; i++) printf(i ? " %d" : "%d", g.tokens[i]);
            printf("\n");
        }
        t2_generation_clear(&g);
        t2_sampler_free(smp);
        t2_ctx_free(ctx);
    }
    for (int i = 0; i < n_stops; i++)
        if (stops[i] != eot) free(stops[i]);
    free(tm.gen);
    t2_chat_template_free(tm.tmpl);
    t2_tokenizer_free(tm.tok);
    free(stops);
    free(stop_lens);
    free(ids);
    svf_sel_free(&sel);
    t2_model_free(m);
    cli_free(&o);
    return rc;
}
