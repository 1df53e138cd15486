/* Chat templates (see t2/chat.h for the formats and the custom template syntax).
 *
 * Llama 3, ChatML and the plain fallback are "one template per role" formats, so they are written
 * as built-in instances of the custom-template structure and share its renderer. The [INST] families
 * are not: Llama 2 folds the system prompt into the first user turn and wraps turns in pairs, so those
 * two have their own small renderers, transcribed from the canonical Jinja templates. */
#include <t2/chat.h>

#include "tok_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NOMEM() t2_set_error(T2_ERR_NOMEM, "chat template: out of memory")

struct t2_chat_template {
    t2_chat_kind kind;
    char *bos, *eos, *stop;
    int32_t stop_id;
    int trim;
    char *begin, *generation, *message; /* NULL = none */
    size_t n_roles;
    char **role_names, **role_tmpls;
};

static const char *const KIND_NAMES[] = {"auto", "llama3", "chatml", "llama2", "mistral", "plain", "custom"};

const char *t2_chat_kind_name(t2_chat_kind k) {
    return (unsigned)k < sizeof KIND_NAMES / sizeof *KIND_NAMES ? KIND_NAMES[k] : "unknown";
}

int t2_chat_kind_parse(const char *name) {
    if (!name) return -1;
    if (strcmp(name, "qwen") == 0 || strcmp(name, "qwen3") == 0) return T2_CHAT_CHATML;
    for (size_t i = 0; i < sizeof KIND_NAMES / sizeof *KIND_NAMES; i++)
        if (strcmp(name, KIND_NAMES[i]) == 0) return (int)i;
    return -1;
}

t2_chat_kind t2_chat_detect(const char *j) {
    if (!j) return T2_CHAT_PLAIN;
    if (strstr(j, "<|start_header_id|>")) return T2_CHAT_LLAMA3;
    if (strstr(j, "<|im_start|>")) return T2_CHAT_CHATML;
    if (strstr(j, "<<SYS>>")) return T2_CHAT_LLAMA2;
    if (strstr(j, "[INST]")) return T2_CHAT_MISTRAL;
    return T2_CHAT_PLAIN;
}

void t2_chat_template_free(t2_chat_template *c) {
    if (!c) return;
    free(c->bos);
    free(c->eos);
    free(c->stop);
    free(c->begin);
    free(c->generation);
    free(c->message);
    for (size_t i = 0; i < c->n_roles; i++) {
        free(c->role_names[i]);
        free(c->role_tmpls[i]);
    }
    free(c->role_names);
    free(c->role_tmpls);
    free(c);
}

static char *sdup(const char *s) { return strdup(s ? s : ""); }

/* A fresh template carrying the tokenizer's BOS/EOS strings. */
static t2_chat_template *new_template(t2_chat_kind kind, const t2_tokenizer *tok) {
    t2_chat_template *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->kind = kind;
    c->stop_id = -1;
    c->bos = sdup(tok ? t2_tokenizer_special_token(tok, "bos_token") : NULL);
    c->eos = sdup(tok ? t2_tokenizer_special_token(tok, "eos_token") : NULL);
    if (!c->bos || !c->eos) {
        t2_chat_template_free(c);
        return NULL;
    }
    return c;
}

/* Resolve the stop string (default EOS) to an id in `tok`. */
static int finish_stop(t2_chat_template *c, const char *stop, const t2_tokenizer *tok) {
    free(c->stop);
    c->stop = sdup(stop && *stop ? stop : c->eos);
    if (!c->stop) return -1;
    if (tok && *c->stop) c->stop_id = t2_tokenizer_token_to_id(tok, c->stop, strlen(c->stop));
    if (tok && c->stop_id < 0 && !(stop && *stop)) c->stop_id = t2_tokenizer_eos_id(tok);
    return 0;
}

static int add_role(t2_chat_template *c, const char *name, const char *tmpl) {
    char **n = realloc(c->role_names, (c->n_roles + 1) * sizeof *n);
    if (!n) return -1;
    c->role_names = n;
    char **t = realloc(c->role_tmpls, (c->n_roles + 1) * sizeof *t);
    if (!t) return -1;
    c->role_tmpls = t;
    if (!(c->role_names[c->n_roles] = strdup(name))) return -1;
    if (!(c->role_tmpls[c->n_roles] = strdup(tmpl))) {
        free(c->role_names[c->n_roles]);
        return -1;
    }
    c->n_roles++;
    return 0;
}

t2_chat_template *t2_chat_template_builtin(t2_chat_kind kind, const t2_tokenizer *tok, t2_status *err) {
    if (kind == T2_CHAT_AUTO) kind = t2_chat_detect(tok ? t2_tokenizer_chat_template(tok) : NULL);
    if (kind <= T2_CHAT_AUTO || kind >= T2_CHAT_CUSTOM) {
        t2_status st = t2_set_error(T2_ERR_INVALID_ARG, "chat template: %d is not a built-in kind", (int)kind);
        if (err) *err = st;
        return NULL;
    }
    t2_chat_template *c = new_template(kind, tok);
    int bad = !c;
    const char *stop = NULL;
    switch (bad ? T2_CHAT_AUTO : kind) {
    case T2_CHAT_LLAMA3:
        c->trim = 1;
        bad = !(c->begin = strdup("{bos}")) ||
              !(c->message = strdup("<|start_header_id|>{role}<|end_header_id|>\n\n{content}<|eot_id|>")) ||
              !(c->generation = strdup("<|start_header_id|>assistant<|end_header_id|>\n\n"));
        stop = "<|eot_id|>";
        break;
    case T2_CHAT_CHATML:
        bad = !(c->message = strdup("<|im_start|>{role}\n{content}<|im_end|>\n")) ||
              !(c->generation = strdup("<|im_start|>assistant\n"));
        stop = "<|im_end|>";
        break;
    case T2_CHAT_PLAIN:
        bad = !(c->begin = strdup("{bos}")) || add_role(c, "system", "{content}\n\n") ||
              add_role(c, "user", "User: {content}\n\n") || add_role(c, "assistant", "Assistant: {content}\n\n") ||
              !(c->generation = strdup("Assistant:"));
        break;
    default: /* LLAMA2, MISTRAL: own renderers */
        break;
    }
    if (bad || finish_stop(c, stop, tok)) {
        t2_chat_template_free(c);
        t2_status st = NOMEM();
        if (err) *err = st;
        return NULL;
    }
    if (err) *err = T2_OK;
    return c;
}

/* ---- custom templates ------------------------------------------------------------------------- */

/* Check a value's placeholders: only {content} {role} {bos} {eos} and {{ }}. */
static int check_placeholders(const char *v, char *bad, size_t badn) {
    for (const char *p = v; *p; p++) {
        if (p[0] == '{' && p[1] == '{') {
            p++;
            continue;
        }
        if (p[0] == '}' && p[1] == '}') {
            p++;
            continue;
        }
        if (*p != '{') continue;
        const char *e = strchr(p, '}');
        size_t n = e ? (size_t)(e - p - 1) : strlen(p + 1);
        if (e && ((n == 7 && !memcmp(p + 1, "content", 7)) || (n == 4 && !memcmp(p + 1, "role", 4)) ||
                  (n == 3 && (!memcmp(p + 1, "bos", 3) || !memcmp(p + 1, "eos", 3))))) {
            p = e;
            continue;
        }
        snprintf(bad, badn, "%.*s", (int)(n > 40 ? 40 : n + (e ? 2 : 1)), p);
        return -1;
    }
    return 0;
}

static char *unescape(const char *s, size_t n) {
    char *o = malloc(n + 1), *w = o;
    if (!o) return NULL;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '\\' && i + 1 < n) {
            char c = s[++i];
            *w++ = c == 'n' ? '\n' : c == 't' ? '\t' : c == 'r' ? '\r' : c == 's' ? ' ' : c;
        } else {
            *w++ = s[i];
        }
    }
    *w = 0;
    return o;
}

t2_chat_template *t2_chat_template_parse(const char *text, size_t len, const t2_tokenizer *tok, t2_status *err) {
    t2_status st = T2_OK;
    t2_chat_template *c = new_template(T2_CHAT_CUSTOM, tok);
    char *stop = NULL;
    if (!c || !text) {
        st = c ? t2_set_error(T2_ERR_INVALID_ARG, "chat template: no text") : NOMEM();
        goto fail;
    }
    size_t lineno = 0;
    for (size_t i = 0; i < len;) {
        size_t e = i;
        while (e < len && text[e] != '\n') e++;
        lineno++;
        size_t a = i, b = e;
        i = e + 1;
        while (a < b && (text[a] == ' ' || text[a] == '\t' || text[a] == '\r')) a++;
        while (b > a && (text[b - 1] == ' ' || text[b - 1] == '\t' || text[b - 1] == '\r')) b--;
        if (a == b || text[a] == '#') continue;
        const char *eq = memchr(text + a, '=', b - a);
        if (!eq) {
            st = t2_set_error(T2_ERR_FORMAT, "chat template line %zu: expected `key = value`", lineno);
            goto fail;
        }
        size_t ke = (size_t)(eq - text), vs = ke + 1;
        while (ke > a && (text[ke - 1] == ' ' || text[ke - 1] == '\t')) ke--;
        while (vs < b && (text[vs] == ' ' || text[vs] == '\t')) vs++;
        char key[64];
        if (ke == a || ke - a >= sizeof key) {
            st = t2_set_error(T2_ERR_FORMAT, "chat template line %zu: missing or overlong key", lineno);
            goto fail;
        }
        memcpy(key, text + a, ke - a);
        key[ke - a] = 0;
        char *val = unescape(text + vs, b - vs), badph[48];
        if (!val) {
            st = NOMEM();
            goto fail;
        }
        if (check_placeholders(val, badph, sizeof badph)) {
            st = t2_set_error(T2_ERR_FORMAT, "chat template line %zu: unknown placeholder %s", lineno, badph);
            free(val);
            goto fail;
        }
        char **slot = strcmp(key, "begin") == 0        ? &c->begin
                      : strcmp(key, "generation") == 0 ? &c->generation
                      : strcmp(key, "message") == 0    ? &c->message
                      : strcmp(key, "stop") == 0       ? &stop
                                                       : NULL;
        if (strcmp(key, "trim") == 0) {
            c->trim = strcmp(val, "yes") == 0 || strcmp(val, "true") == 0 || strcmp(val, "1") == 0;
            free(val);
        } else if (slot) {
            free(*slot);
            *slot = val;
        } else {
            int r = add_role(c, key, val);
            free(val);
            if (r) {
                st = NOMEM();
                goto fail;
            }
        }
    }
    if (finish_stop(c, stop, tok)) {
        st = NOMEM();
        goto fail;
    }
    free(stop);
    if (err) *err = T2_OK;
    return c;
fail:
    free(stop);
    t2_chat_template_free(c);
    if (err) *err = st;
    return NULL;
}

t2_chat_template *t2_chat_template_load(const char *spec, const t2_tokenizer *tok, t2_status *err) {
    int k = t2_chat_kind_parse(spec ? spec : "auto");
    if (k >= 0 && k != T2_CHAT_CUSTOM) return t2_chat_template_builtin((t2_chat_kind)k, tok, err);
    FILE *f = fopen(spec, "rb");
    if (!f) {
        t2_status st = t2_set_error(T2_ERR_NOT_FOUND,
                                    "chat template \"%s\": not a kind (auto, llama3, chatml, llama2, mistral, "
                                    "plain) nor a readable file: %s", spec, strerror(errno));
        if (err) *err = st;
        return NULL;
    }
    tb_buf b = {0};
    char chunk[4096];
    size_t got;
    int bad = 0;
    while ((got = fread(chunk, 1, sizeof chunk, f)) > 0)
        if (tb_put(&b, chunk, got)) bad = 1;
    fclose(f);
    t2_chat_template *c = NULL;
    if (bad) {
        t2_status st = NOMEM();
        if (err) *err = st;
    } else {
        t2_status st;
        c = t2_chat_template_parse(b.p ? b.p : "", b.len, tok, &st);
        if (!c) t2_wrap_error(st, "%s: ", spec);
        if (err) *err = st;
    }
    tb_free(&b);
    return c;
}

/* ---- rendering -------------------------------------------------------------------------------- */

static int expand(tb_buf *o, const t2_chat_template *c, const char *tmpl, const char *role, const char *content,
                  size_t clen) {
    for (const char *p = tmpl; *p; p++) {
        if ((p[0] == '{' && p[1] == '{') || (p[0] == '}' && p[1] == '}')) {
            if (tb_putc(o, *p++)) return -1;
            continue;
        }
        if (*p == '{') {
            int r = 0;
            if (!strncmp(p, "{content}", 9)) r = tb_put(o, content, clen), p += 8;
            else if (!strncmp(p, "{role}", 6)) r = tb_put(o, role, strlen(role)), p += 5;
            else if (!strncmp(p, "{bos}", 5)) r = tb_put(o, c->bos, strlen(c->bos)), p += 4;
            else if (!strncmp(p, "{eos}", 5)) r = tb_put(o, c->eos, strlen(c->eos)), p += 4;
            else r = tb_putc(o, *p);
            if (r) return -1;
            continue;
        }
        if (tb_putc(o, *p)) return -1;
    }
    return 0;
}

static t2_status render_roles(const t2_chat_template *c, const t2_chat_message *m, size_t n, int gen, tb_buf *o) {
    if (c->begin && expand(o, c, c->begin, "", "", 0)) return NOMEM();
    for (size_t i = 0; i < n; i++) {
        const char *tmpl = c->message;
        for (size_t r = 0; r < c->n_roles; r++)
            if (strcmp(c->role_names[r], m[i].role) == 0) tmpl = c->role_tmpls[r];
        if (!tmpl)
            return t2_set_error(T2_ERR_INVALID_ARG, "chat template (%s): no format for role \"%s\"",
                                t2_chat_kind_name(c->kind), m[i].role);
        size_t a = 0, b = strlen(m[i].content);
        if (c->trim) tok_js_trim(m[i].content, b, 1, 1, &a, &b);
        if (expand(o, c, tmpl, m[i].role, m[i].content + a, b - a)) return NOMEM();
    }
    if (gen && c->generation && expand(o, c, c->generation, "assistant", "", 0)) return NOMEM();
    return T2_OK;
}

static int put_stripped(tb_buf *o, const char *s, size_t n) {
    size_t a, b;
    tok_js_trim(s, n, 1, 1, &a, &b);
    return tb_put(o, s + a, b - a);
}

/* Meta's Llama 2 chat template: system folded into the first turn inside <<SYS>>; every user turn
 * is BOS[INST] ... [/INST], every assistant turn " ... EOS"; contents stripped. */
static t2_status render_llama2(const t2_chat_template *c, const t2_chat_message *m, size_t n, tb_buf *o) {
    const char *sys = NULL;
    size_t start = 0;
    if (n && strcmp(m[0].role, "system") == 0) sys = m[0].content, start = 1;
    tb_buf tmp = {0};
    int bad = 0;
    for (size_t i = start; i < n && !bad; i++) {
        const char *content = m[i].content;
        size_t clen = strlen(content);
        if (i == start && sys) {
            tmp.len = 0;
            bad = tb_put(&tmp, "<<SYS>>\n", 8) || tb_put(&tmp, sys, strlen(sys)) ||
                  tb_put(&tmp, "\n<</SYS>>\n\n", 11) || tb_put(&tmp, content, clen);
            content = tmp.p;
            clen = tmp.len;
        }
        if (bad) break;
        if (strcmp(m[i].role, "user") == 0)
            bad = tb_put(o, c->bos, strlen(c->bos)) || tb_put(o, "[INST] ", 7) || put_stripped(o, content, clen) ||
                  tb_put(o, " [/INST]", 8);
        else if (strcmp(m[i].role, "assistant") == 0)
            bad = tb_putc(o, ' ') || put_stripped(o, content, clen) || tb_putc(o, ' ') ||
                  tb_put(o, c->eos, strlen(c->eos));
        else {
            tb_free(&tmp);
            return t2_set_error(T2_ERR_INVALID_ARG, "chat template (llama2): role \"%s\" is not supported", m[i].role);
        }
    }
    tb_free(&tmp);
    return bad ? NOMEM() : T2_OK;
}

/* Mistral's template: BOS once, [INST] USER [/INST] and ASSISTANT EOS, contents as given; the system
 * message (which Mistral's own templates lack or move around) goes before the first user message. */
static t2_status render_mistral(const t2_chat_template *c, const t2_chat_message *m, size_t n, tb_buf *o) {
    const char *sys = NULL;
    if (tb_put(o, c->bos, strlen(c->bos))) return NOMEM();
    for (size_t i = 0; i < n; i++) {
        int bad = 0;
        if (strcmp(m[i].role, "system") == 0) {
            sys = m[i].content;
        } else if (strcmp(m[i].role, "user") == 0) {
            bad = tb_put(o, "[INST] ", 7) || (sys && (tb_put(o, sys, strlen(sys)) || tb_put(o, "\n\n", 2))) ||
                  tb_put(o, m[i].content, strlen(m[i].content)) || tb_put(o, " [/INST]", 8);
            sys = NULL;
        } else if (strcmp(m[i].role, "assistant") == 0) {
            bad = tb_put(o, m[i].content, strlen(m[i].content)) || tb_put(o, c->eos, strlen(c->eos));
        } else {
            return t2_set_error(T2_ERR_INVALID_ARG, "chat template (mistral): role \"%s\" is not supported", m[i].role);
        }
        if (bad) return NOMEM();
    }
    return T2_OK;
}

t2_status t2_chat_render(const t2_chat_template *c, const t2_chat_message *msgs, size_t n, int gen, char **out,
                         size_t *len) {
    if (out) *out = NULL;
    if (len) *len = 0;
    if (!c || !out || (!msgs && n)) return t2_set_error(T2_ERR_INVALID_ARG, "t2_chat_render: NULL argument");
    for (size_t i = 0; i < n; i++)
        if (!msgs[i].role || !msgs[i].content)
            return t2_set_error(T2_ERR_INVALID_ARG, "t2_chat_render: message %zu has no role or content", i);
    tb_buf o = {0};
    t2_status st = c->kind == T2_CHAT_LLAMA2    ? render_llama2(c, msgs, n, &o)
                   : c->kind == T2_CHAT_MISTRAL ? render_mistral(c, msgs, n, &o)
                                                : render_roles(c, msgs, n, gen, &o);
    if (!st && tb_reserve(&o, 0)) st = NOMEM();
    if (st) {
        tb_free(&o);
        return st;
    }
    o.p[o.len] = 0;
    *out = o.p;
    if (len) *len = o.len;
    return T2_OK;
}

t2_status t2_chat_encode(const t2_chat_template *c, const t2_tokenizer *tok, const t2_chat_message *msgs, size_t n,
                         int gen, int32_t **ids, size_t *n_ids) {
    char *text;
    size_t len;
    t2_status st = t2_chat_render(c, msgs, n, gen, &text, &len);
    if (st) return st;
    st = t2_tokenizer_encode(tok, text, len, 0, ids, n_ids);
    free(text);
    return st;
}

t2_chat_kind t2_chat_template_kind(const t2_chat_template *c) { return c ? c->kind : T2_CHAT_PLAIN; }
const char *t2_chat_template_stop(const t2_chat_template *c) { return c && c->stop ? c->stop : ""; }
int32_t t2_chat_template_stop_id(const t2_chat_template *c) { return c ? c->stop_id : -1; }
