/* `t2 model tokenize | detokenize | chat` (see cmd_tok.h). */
#include "cmd_tok.h"

#include <t2/chat.h>
#include <t2/error.h>
#include <t2/tokenizer.h>

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* All of stdin; NULL (with a message) on failure. */
static char *read_stdin(size_t *len) {
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    if (!buf) goto nomem;
    for (;;) {
        if (n == cap) {
            char *p = realloc(buf, cap *= 2);
            if (!p) goto nomem;
            buf = p;
        }
        size_t got = fread(buf + n, 1, cap - n, stdin);
        n += got;
        if (got == 0) break;
    }
    if (ferror(stdin)) {
        fprintf(stderr, "t2: reading stdin: %s\n", strerror(errno));
        free(buf);
        return NULL;
    }
    *len = n;
    return buf;
nomem:
    free(buf);
    fprintf(stderr, "t2: out of memory reading stdin\n");
    return NULL;
}

static t2_tokenizer *open_model(const char *cmd, const char *dir) {
    if (!dir) {
        fprintf(stderr, "t2 model %s: --model DIR is required\n", cmd);
        return NULL;
    }
    t2_status st;
    t2_tokenizer *t = t2_tokenizer_load(dir, &st);
    if (!t) fprintf(stderr, "t2 model %s: %s\n", cmd, t2_last_error());
    return t;
}

static int print_ids(const int32_t *ids, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (printf(i ? " %d" : "%d", ids[i]) < 0) return 1;
    return printf("\n") < 0 || fflush(stdout) ? 1 : 0;
}

int t2_cmd_model_tokenize(int argc, char **argv) {
    const char *dir = NULL;
    int special = 1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--model") && i + 1 < argc) dir = argv[++i];
        else if (!strcmp(argv[i], "--no-special")) special = 0;
        else {
            fprintf(stderr, "usage: t2 model tokenize --model DIR [--no-special] < text\n");
            return 2;
        }
    }
    t2_tokenizer *t = open_model("tokenize", dir);
    if (!t) return dir ? 1 : 2;
    size_t len;
    char *text = read_stdin(&len);
    int32_t *ids = NULL;
    size_t n = 0;
    int rc = 1;
    if (text) {
        if (t2_tokenizer_encode(t, text, len, special, &ids, &n))
            fprintf(stderr, "t2 model tokenize: %s\n", t2_last_error());
        else
            rc = print_ids(ids, n);
    }
    free(ids);
    free(text);
    t2_tokenizer_free(t);
    return rc;
}

int t2_cmd_model_detokenize(int argc, char **argv) {
    const char *dir = NULL;
    int flags = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--model") && i + 1 < argc) dir = argv[++i];
        else if (!strcmp(argv[i], "--skip-special")) flags |= T2_DECODE_SKIP_SPECIAL;
        else if (!strcmp(argv[i], "--no-cleanup")) flags |= T2_DECODE_NO_CLEANUP;
        else {
            fprintf(stderr, "usage: t2 model detokenize --model DIR [--skip-special] [--no-cleanup] < ids\n");
            return 2;
        }
    }
    t2_tokenizer *t = open_model("detokenize", dir);
    if (!t) return dir ? 1 : 2;
    size_t len, n = 0;
    char *in = read_stdin(&len), *text = NULL;
    int32_t *ids = NULL;
    int rc = 1;
    if (!in) goto out;
    ids = malloc((len / 2 + 1) * sizeof *ids); /* at most one id per two bytes ("1 ") */
    if (!ids) {
        fprintf(stderr, "t2 model detokenize: out of memory\n");
        goto out;
    }
    for (char *p = in, *e = in + len; p < e;) {
        while (p < e && strchr(" \t\r\n", *p)) p++;
        if (p == e) break;
        char *q = p;
        while (q < e && !strchr(" \t\r\n", *q)) q++;
        char tokbuf[24];
        size_t k = (size_t)(q - p);
        char *end;
        if (k >= sizeof tokbuf) goto bad;
        memcpy(tokbuf, p, k);
        tokbuf[k] = 0;
        errno = 0;
        long v = strtol(tokbuf, &end, 10);
        if (*end || errno || v < INT32_MIN || v > INT32_MAX) goto bad;
        ids[n++] = (int32_t)v;
        p = q;
        continue;
    bad:
        fprintf(stderr, "t2 model detokenize: \"%.*s\" is not a token id\n", (int)(k > 40 ? 40 : k), p);
        goto out;
    }
    size_t tlen;
    if (t2_tokenizer_decode(t, ids, n, flags, &text, &tlen)) {
        fprintf(stderr, "t2 model detokenize: %s\n", t2_last_error());
        goto out;
    }
    rc = (fwrite(text, 1, tlen, stdout) != tlen || fflush(stdout)) ? 1 : 0;
out:
    free(text);
    free(ids);
    free(in);
    t2_tokenizer_free(t);
    return rc;
}

int t2_cmd_model_chat(int argc, char **argv) {
    const char *dir = NULL, *tmpl_spec = "auto";
    int gen = 1, want_ids = 0, rc = 1;
    t2_chat_message *msgs = calloc((size_t)argc + 1, sizeof *msgs);
    size_t n = 0;
    if (!msgs) {
        fprintf(stderr, "t2 model chat: out of memory\n");
        return 1;
    }
    for (int i = 1; i < argc; i++) {
        const char *role = !strcmp(argv[i], "--system")      ? "system"
                           : !strcmp(argv[i], "--user")      ? "user"
                           : !strcmp(argv[i], "--assistant") ? "assistant"
                                                             : NULL;
        if (role && i + 1 < argc) {
            msgs[n].role = role;
            msgs[n++].content = argv[++i];
        } else if (!strcmp(argv[i], "--model") && i + 1 < argc) dir = argv[++i];
        else if (!strcmp(argv[i], "--template") && i + 1 < argc) tmpl_spec = argv[++i];
        else if (!strcmp(argv[i], "--no-generation-prompt")) gen = 0;
        else if (!strcmp(argv[i], "--ids")) want_ids = 1;
        else {
            fprintf(stderr, "usage: t2 model chat --model DIR [--template NAME|FILE] [--system TEXT] --user TEXT\n"
                            "                     [--assistant TEXT --user TEXT ...] [--no-generation-prompt] [--ids]\n"
                            "templates: auto llama3 chatml llama2 mistral plain, or a file (see t2/chat.h)\n");
            free(msgs);
            return 2;
        }
    }
    if (!n) {
        fprintf(stderr, "t2 model chat: give at least one --user TEXT\n");
        free(msgs);
        return 2;
    }
    t2_tokenizer *t = open_model("chat", dir);
    if (!t) {
        free(msgs);
        return dir ? 1 : 2;
    }
    t2_status st;
    t2_chat_template *c = t2_chat_template_load(tmpl_spec, t, &st);
    char *text = NULL;
    int32_t *ids = NULL;
    size_t len, nid;
    if (!c) {
        fprintf(stderr, "t2 model chat: %s\n", t2_last_error());
    } else if (want_ids ? t2_chat_encode(c, t, msgs, n, gen, &ids, &nid) : t2_chat_render(c, msgs, n, gen, &text, &len)) {
        fprintf(stderr, "t2 model chat: %s\n", t2_last_error());
    } else {
        fprintf(stderr, "template: %s, stop: %s (id %d)\n", t2_chat_kind_name(t2_chat_template_kind(c)),
                t2_chat_template_stop(c), t2_chat_template_stop_id(c));
        rc = want_ids ? print_ids(ids, nid) : ((fwrite(text, 1, len, stdout) != len || fflush(stdout)) ? 1 : 0);
    }
    free(text);
    free(ids);
    t2_chat_template_free(c);
    t2_tokenizer_free(t);
    free(msgs);
    return rc;
}
