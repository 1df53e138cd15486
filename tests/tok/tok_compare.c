/* C side of the tokenizer comparison against the Hugging Face reference (see compare.mjs).
 *
 * usage: tok_compare CASES.json NAME=MODEL_DIR...
 *
 * For every string and every named tokenizer it checks, against the reference's answers:
 *   - encode with special tokens (the post-processor's BOS etc.) and without: identical ids;
 *   - decode of those ids, and decode skipping special tokens: identical text;
 *   - decode(encode(x)) == x (no clean-up) wherever the reference says the tokenizer is lossless;
 * and for the chat cases, that our template renders the same prompt and the same ids.
 * Prints each failure (first few), a line per tokenizer, and a final "N passed, M failed". */
#include <t2/chat.h>
#include <t2/error.h>
#include <t2/tokenizer.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int shown = 0;

static void show(const char *tok, size_t idx, const char *what, const char *text) {
    if (shown++ >= 25) return;
    fprintf(stderr, "FAIL %s case %zu (%s): %.120s\n", tok, idx, what, text);
}

static int same_ids(const int32_t *ids, size_t n, json_t *want) {
    if (!json_is_array(want) || json_array_size(want) != n) return 0;
    for (size_t i = 0; i < n; i++)
        if (json_integer_value(json_array_get(want, i)) != ids[i]) return 0;
    return 1;
}

static void print_ids(const char *label, const int32_t *ids, size_t n, json_t *want) {
    if (shown > 25) return;
    fprintf(stderr, "  %s ours:", label);
    for (size_t i = 0; i < n && i < 40; i++) fprintf(stderr, " %d", ids[i]);
    fprintf(stderr, "\n  %s want:", label);
    for (size_t i = 0; i < json_array_size(want) && i < 40; i++)
        fprintf(stderr, " %lld", (long long)json_integer_value(json_array_get(want, i)));
    fprintf(stderr, "\n");
}

static int hexval(char c) { return c <= '9' ? c - '0' : (c | 32) - 'a' + 10; }

static int same_text(const char *got, size_t n, json_t *want) {
    return json_is_string(want) && json_string_length(want) == n && memcmp(json_string_value(want), got, n) == 0;
}

static int check_case(const t2_tokenizer *t, const char *name, size_t idx, json_t *c, json_t *r) {
    char buf[4096];
    const char *text = json_string_value(json_object_get(c, "text"));
    size_t len = json_string_length(json_object_get(c, "text"));
    const char *hex = json_string_value(json_object_get(c, "bytes_hex"));
    if (hex) { /* invalid UTF-8: feed the raw bytes; the reference saw their TextDecoder decoding */
        len = strlen(hex) / 2;
        for (size_t i = 0; i < len && i < sizeof buf; i++) buf[i] = (char)(hexval(hex[2 * i]) * 16 + hexval(hex[2 * i + 1]));
        text = buf;
    }
    int ok = 1;
    int32_t *ids = NULL, *ids_ns = NULL;
    size_t n = 0, n_ns = 0;
    if (t2_tokenizer_encode(t, text, len, 1, &ids, &n) || t2_tokenizer_encode(t, text, len, 0, &ids_ns, &n_ns)) {
        show(name, idx, t2_last_error(), text);
        free(ids);
        free(ids_ns);
        return 0;
    }
    if (!same_ids(ids, n, json_object_get(r, "ids"))) {
        show(name, idx, "ids", text);
        print_ids("ids", ids, n, json_object_get(r, "ids"));
        ok = 0;
    }
    if (!same_ids(ids_ns, n_ns, json_object_get(r, "ids_ns"))) {
        show(name, idx, "ids without special", text);
        ok = 0;
    }
    /* Decode the reference's ids so a decode check does not depend on the encode check. */
    json_t *want_ids = json_object_get(r, "ids");
    size_t wn = json_array_size(want_ids);
    int32_t *wids = malloc((wn + 1) * sizeof *wids);
    for (size_t i = 0; i < wn; i++) wids[i] = (int32_t)json_integer_value(json_array_get(want_ids, i));
    static const struct { const char *key; int flags; } decs[] = {{"dec", 0}, {"dec_skip", T2_DECODE_SKIP_SPECIAL}};
    for (size_t d = 0; d < 2; d++) {
        char *out = NULL;
        size_t olen = 0;
        if (t2_tokenizer_decode(t, wids, wn, decs[d].flags, &out, &olen) ||
            !same_text(out, olen, json_object_get(r, decs[d].key))) {
            show(name, idx, decs[d].key, text);
            if (shown <= 25) fprintf(stderr, "  ours: %.200s\n  want: %.200s\n", out ? out : t2_last_error(),
                                     json_string_value(json_object_get(r, decs[d].key)));
            ok = 0;
        }
        free(out);
    }
    json_t *lossless = json_object_get(r, "lossless");
    if (json_is_string(lossless)) {
        char *out = NULL;
        size_t olen = 0;
        if (t2_tokenizer_decode(t, ids_ns, n_ns, T2_DECODE_NO_CLEANUP, &out, &olen) || !same_text(out, olen, lossless)) {
            show(name, idx, "decode(encode(x)) != x", text);
            ok = 0;
        }
        free(out);
    }
    free(wids);
    free(ids);
    free(ids_ns);
    return ok;
}

static int check_chat(t2_tokenizer *t, json_t *ch, size_t idx) {
    const char *name = json_string_value(json_object_get(ch, "tok"));
    const char *kind = json_string_value(json_object_get(ch, "kind"));
    json_t *msgs = json_object_get(ch, "messages");
    size_t n = json_array_size(msgs);
    t2_chat_message *m = calloc(n + 1, sizeof *m);
    for (size_t i = 0; i < n; i++) {
        m[i].role = json_string_value(json_object_get(json_array_get(msgs, i), "role"));
        m[i].content = json_string_value(json_object_get(json_array_get(msgs, i), "content"));
    }
    t2_status st;
    t2_chat_template *tm = t2_chat_template_load(kind, t, &st);
    int ok = tm != NULL;
    char *text = NULL;
    size_t len = 0;
    int32_t *ids = NULL;
    size_t nid = 0;
    int gen = json_is_true(json_object_get(ch, "add_generation_prompt"));
    if (ok && (t2_chat_render(tm, m, n, gen, &text, &len) || t2_chat_encode(tm, t, m, n, gen, &ids, &nid))) ok = 0;
    if (!ok) {
        show(name, idx, t2_last_error(), kind);
    } else if (!same_text(text, len, json_object_get(ch, "text")) || !same_ids(ids, nid, json_object_get(ch, "ids"))) {
        show(name, idx, "chat", kind);
        if (shown <= 25) fprintf(stderr, "  ours: %s\n  want: %s\n", text, json_string_value(json_object_get(ch, "text")));
        ok = 0;
    }
    free(text);
    free(ids);
    free(m);
    t2_chat_template_free(tm);
    return ok;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s CASES.json NAME=MODEL_DIR...\n", argv[0]);
        return 2;
    }
    json_error_t je;
    json_t *root = json_load_file(argv[1], JSON_ALLOW_NUL, &je);
    if (!root) {
        fprintf(stderr, "%s:%d: %s\n", argv[1], je.line, je.text);
        return 1;
    }
    json_t *cases = json_object_get(root, "cases"), *results = json_object_get(root, "results");
    json_t *chats = json_object_get(root, "chats");
    size_t total_pass = 0, total_fail = 0;
    for (int a = 2; a < argc; a++) {
        char *eq = strchr(argv[a], '=');
        if (!eq) {
            fprintf(stderr, "bad argument %s (want NAME=DIR)\n", argv[a]);
            return 2;
        }
        *eq = 0;
        const char *name = argv[a], *dir = eq + 1;
        json_t *res = json_object_get(results, name);
        t2_status st;
        t2_tokenizer *t = t2_tokenizer_load(dir, &st);
        if (!t || !json_is_array(res)) {
            fprintf(stderr, "%s: %s\n", name, t ? "no reference results" : t2_last_error());
            total_fail += json_array_size(cases);
            t2_tokenizer_free(t);
            continue;
        }
        size_t pass = 0, fail = 0;
        for (size_t i = 0; i < json_array_size(cases); i++) {
            if (check_case(t, name, i, json_array_get(cases, i), json_array_get(res, i))) pass++;
            else fail++;
        }
        size_t cpass = 0, cfail = 0;
        for (size_t i = 0; i < json_array_size(chats); i++) {
            json_t *ch = json_array_get(chats, i);
            if (strcmp(json_string_value(json_object_get(ch, "tok")), name) != 0) continue;
            if (check_chat(t, ch, i)) cpass++;
            else cfail++;
        }
        printf("%s: strings %zu passed, %zu failed; chat templates %zu passed, %zu failed\n", name, pass, fail,
               cpass, cfail);
        total_pass += pass + cpass;
        total_fail += fail + cfail;
        t2_tokenizer_free(t);
    }
    json_decref(root);
    printf("%zu passed, %zu failed\n", total_pass, total_fail);
    return total_fail ? 1 : 0;
}
