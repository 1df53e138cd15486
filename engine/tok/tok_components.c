/* Parsing the pipeline components of tokenizer.json: normalizer, pre_tokenizer, post_processor and
 * decoder. Each becomes a flat list of steps (Sequence nodes are flattened). A type we do not
 * implement is a clear T2_ERR_UNSUPPORTED naming it, never a silent difference in ids. */
#include "tok_internal.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#define NOMEM() t2_set_error(T2_ERR_NOMEM, "tokenizer: out of memory")

/* ---- regular expressions ---------------------------------------------------------------------- */

/* ECMAScript's \s set, written for the inside of a PCRE2 character class. */
static const char JS_WS[] =
    "\\t\\n\\x{0B}\\f\\r \\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}\\x{205F}"
    "\\x{3000}\\x{FEFF}";

/* The reference rewrites this group (JavaScript has no inline (?i:...)) into an explicitly
 * case-spelled one; doing the same keeps e.g. U+017F LATIN SMALL LETTER LONG S from matching 's'. */
static const char CASE_GROUP[] = "(?i:'s|'t|'re|'ve|'m|'ll|'d)";
static const char CASE_GROUP_JS[] = "(?:'([sS]|[tT]|[rR][eE]|[vV][eE]|[mM]|[lL][lL]|[dD]))";

/* Translate a tokenizer.json regex into PCRE2 syntax with the reference's (JavaScript, "u" flag)
 * meaning: \s/\S become the ECMAScript whitespace set; \d and \w stay ASCII because we compile without
 * PCRE2_UCP; \p{L}, \p{N} work in UTF mode either way. */
static int rewrite_regex(const char *p, size_t n, tb_buf *out) {
    int in_class = 0;
    size_t cl = sizeof CASE_GROUP - 1;
    for (size_t i = 0; i < n;) {
        if (!in_class && n - i >= cl && memcmp(p + i, CASE_GROUP, cl) == 0) {
            if (tb_put(out, CASE_GROUP_JS, sizeof CASE_GROUP_JS - 1)) return -1;
            i += cl;
            continue;
        }
        char c = p[i];
        if (c == '\\' && i + 1 < n) {
            char d = p[i + 1];
            int r;
            if (d == 's')
                r = in_class ? tb_put(out, JS_WS, sizeof JS_WS - 1)
                             : (tb_putc(out, '[') || tb_put(out, JS_WS, sizeof JS_WS - 1) || tb_putc(out, ']'));
            else if (d == 'S' && !in_class)
                r = tb_put(out, "[^", 2) || tb_put(out, JS_WS, sizeof JS_WS - 1) || tb_putc(out, ']');
            else
                r = tb_put(out, p + i, 2);
            if (r) return -1;
            i += 2;
            continue;
        }
        if (c == '[' && !in_class) {
            in_class = 1;
            if (tb_putc(out, c)) return -1;
            i++;
            if (i < n && p[i] == '^') {
                if (tb_putc(out, '^')) return -1;
                i++;
            }
            continue;
        }
        if (c == ']' && in_class) in_class = 0;
        if (tb_putc(out, c)) return -1;
        i++;
    }
    return 0;
}

t2_status tok_compile_regex(const char *pattern, size_t len, int literal, pcre2_code **out) {
    tb_buf b = {0};
    if (literal) {
        if (tb_put(&b, pattern, len)) return NOMEM();
    } else if (rewrite_regex(pattern, len, &b)) {
        tb_free(&b);
        return NOMEM();
    }
    int ec;
    PCRE2_SIZE eo;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)(b.p ? b.p : ""), b.len,
                                   PCRE2_UTF | (literal ? PCRE2_LITERAL : 0), &ec, &eo, NULL);
    tb_free(&b);
    if (!re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(ec, msg, sizeof msg);
        return t2_set_error(T2_ERR_FORMAT, "tokenizer.json: regex \"%.*s\" does not compile: %s",
                            (int)(len > 200 ? 200 : len), pattern, (const char *)msg);
    }
    /* JIT makes the split about an order of magnitude faster; if unavailable the interpreter is
     * used transparently. */
    pcre2_jit_compile(re, PCRE2_JIT_COMPLETE);
    *out = re;
    return T2_OK;
}

/* A {"String": s} or {"Regex": r} pattern object. */
static t2_status pattern_of(json_t *obj, const char *what, pcre2_code **re, char **lit, size_t *lit_len) {
    json_t *pat = json_object_get(obj, "pattern");
    json_t *s = json_object_get(pat, "String"), *r = json_object_get(pat, "Regex");
    if (json_is_string(s)) {
        if (lit) {
            *lit_len = json_string_length(s);
            *lit = malloc(*lit_len + 1);
            if (!*lit) return NOMEM();
            memcpy(*lit, json_string_value(s), *lit_len + 1);
            return T2_OK;
        }
        return tok_compile_regex(json_string_value(s), json_string_length(s), 1, re);
    }
    if (json_is_string(r)) return tok_compile_regex(json_string_value(r), json_string_length(r), 0, re);
    return t2_set_error(T2_ERR_FORMAT, "tokenizer.json: %s has no String or Regex pattern", what);
}

static char *dup_str(json_t *v, size_t *len) {
    if (!json_is_string(v)) return NULL;
    size_t n = json_string_length(v);
    char *p = malloc(n + 1);
    if (p) memcpy(p, json_string_value(v), n + 1);
    if (len) *len = n;
    return p;
}

/* ---- normalizers ------------------------------------------------------------------------------ */

static t2_status add_norm(t2_tokenizer *t, json_t *cfg) {
    if (json_is_null(cfg) || !cfg) return T2_OK;
    const char *type = tok_json_str(cfg, "type");
    if (!type) return t2_set_error(T2_ERR_FORMAT, "tokenizer.json: normalizer without a type");
    if (strcmp(type, "Sequence") == 0) {
        json_t *list = json_object_get(cfg, "normalizers"), *e;
        size_t i;
        json_array_foreach(list, i, e) {
            t2_status st = add_norm(t, e);
            if (st) return st;
        }
        return T2_OK;
    }
    tok_norm *arr = realloc(t->norm, (t->n_norm + 1) * sizeof *arr);
    if (!arr) return NOMEM();
    t->norm = arr;
    tok_norm *n = &t->norm[t->n_norm];
    memset(n, 0, sizeof *n);
    if (strcmp(type, "NFC") == 0) n->kind = NORM_NFC;
    else if (strcmp(type, "NFD") == 0) n->kind = NORM_NFD;
    else if (strcmp(type, "NFKC") == 0) n->kind = NORM_NFKC;
    else if (strcmp(type, "NFKD") == 0) n->kind = NORM_NFKD;
    else if (strcmp(type, "Lowercase") == 0) n->kind = NORM_LOWERCASE;
    else if (strcmp(type, "Strip") == 0) {
        n->kind = NORM_STRIP;
        n->strip_left = json_is_true(json_object_get(cfg, "strip_left"));
        n->strip_right = json_is_true(json_object_get(cfg, "strip_right"));
    } else if (strcmp(type, "Prepend") == 0) {
        n->kind = NORM_PREPEND;
        if (!(n->a = dup_str(json_object_get(cfg, "prepend"), &n->alen)))
            return t2_set_error(T2_ERR_FORMAT, "tokenizer.json: Prepend normalizer without prepend");
    } else if (strcmp(type, "Replace") == 0) {
        n->kind = NORM_REPLACE;
        t2_status st = pattern_of(cfg, "Replace normalizer", &n->re, &n->a, &n->alen);
        if (st) return st;
        if (!(n->b = dup_str(json_object_get(cfg, "content"), &n->blen)))
            return t2_set_error(T2_ERR_FORMAT, "tokenizer.json: Replace normalizer without content");
    } else {
        return t2_set_error(T2_ERR_UNSUPPORTED, "tokenizer.json: normalizer type \"%s\" is not supported", type);
    }
    t->n_norm++;
    return T2_OK;
}

/* ---- pre-tokenizers --------------------------------------------------------------------------- */

static const char GPT2_PATTERN[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

static t2_status add_pre(t2_tokenizer *t, json_t *cfg) {
    if (json_is_null(cfg) || !cfg) return T2_OK;
    const char *type = tok_json_str(cfg, "type");
    if (!type) return t2_set_error(T2_ERR_FORMAT, "tokenizer.json: pre_tokenizer without a type");
    if (strcmp(type, "Sequence") == 0) {
        json_t *list = json_object_get(cfg, "pretokenizers"), *e;
        size_t i;
        json_array_foreach(list, i, e) {
            t2_status st = add_pre(t, e);
            if (st) return st;
        }
        return T2_OK;
    }
    /* ByteLevel maps pieces into raw-byte model space (see tok_load.c), so it must be the last step:
     * a later step would see bytes where the reference sees the printable alphabet. */
    if (t->byte_level)
        return t2_set_error(T2_ERR_UNSUPPORTED,
                            "tokenizer.json: pre_tokenizer \"%s\" after ByteLevel is not supported", type);
    tok_pre *arr = realloc(t->pre, (t->n_pre + 1) * sizeof *arr);
    if (!arr) return NOMEM();
    t->pre = arr;
    tok_pre *p = &t->pre[t->n_pre];
    memset(p, 0, sizeof *p);
    t2_status st = T2_OK;
    if (strcmp(type, "Split") == 0) {
        p->kind = PRE_SPLIT;
        p->invert = json_is_true(json_object_get(cfg, "invert"));
        const char *beh = tok_json_str(cfg, "behavior");
        if (!beh || strcmp(beh, "Isolated") == 0) p->behavior = SPLIT_ISOLATED;
        else if (strcmp(beh, "Removed") == 0) p->behavior = SPLIT_REMOVED;
        else
            return t2_set_error(T2_ERR_UNSUPPORTED, "tokenizer.json: Split behavior \"%s\" is not supported", beh);
        st = pattern_of(cfg, "Split pre_tokenizer", &p->re, NULL, NULL);
    } else if (strcmp(type, "ByteLevel") == 0) {
        p->kind = PRE_BYTELEVEL;
        p->add_prefix_space = json_is_true(json_object_get(cfg, "add_prefix_space"));
        json_t *ur = json_object_get(cfg, "use_regex");
        if (!ur || json_is_true(ur)) st = tok_compile_regex(GPT2_PATTERN, sizeof GPT2_PATTERN - 1, 0, &p->re);
        t->byte_level = 1;
    } else if (strcmp(type, "Metaspace") == 0) {
        p->kind = PRE_METASPACE;
        if (!(p->repl = dup_str(json_object_get(cfg, "replacement"), &p->repl_len)))
            return t2_set_error(T2_ERR_FORMAT, "tokenizer.json: Metaspace without replacement");
        /* Older files say add_prefix_space; newer ones prepend_scheme (always/first/never). */
        const char *scheme = tok_json_str(cfg, "prepend_scheme");
        json_t *aps = json_object_get(cfg, "add_prefix_space");
        int add = aps ? json_is_true(aps) : (scheme && strcmp(scheme, "never") != 0);
        p->prepend = !add ? 0 : (scheme && strcmp(scheme, "first") == 0) ? 2 : 1;
        json_t *sp = json_object_get(cfg, "split");
        p->split = sp ? json_is_true(sp) : 0;
    } else if (strcmp(type, "WhitespaceSplit") == 0) {
        p->kind = PRE_WHITESPACE_SPLIT;
    } else {
        return t2_set_error(T2_ERR_UNSUPPORTED, "tokenizer.json: pre_tokenizer type \"%s\" is not supported", type);
    }
    t->n_pre++;
    return st;
}

/* ---- post-processor --------------------------------------------------------------------------- */

static t2_status add_post(t2_tokenizer *t, json_t *cfg) {
    if (json_is_null(cfg) || !cfg) return T2_OK;
    const char *type = tok_json_str(cfg, "type");
    if (!type) return t2_set_error(T2_ERR_FORMAT, "tokenizer.json: post_processor without a type");
    if (strcmp(type, "ByteLevel") == 0) return T2_OK; /* offsets only: no effect on ids */
    if (strcmp(type, "Sequence") == 0) {
        json_t *list = json_object_get(cfg, "processors"), *e;
        size_t i;
        json_array_foreach(list, i, e) {
            t2_status st = add_post(t, e);
            if (st) return st;
        }
        return T2_OK;
    }
    if (strcmp(type, "TemplateProcessing") != 0)
        return t2_set_error(T2_ERR_UNSUPPORTED, "tokenizer.json: post_processor type \"%s\" is not supported", type);
    if (t->post_single)
        return t2_set_error(T2_ERR_UNSUPPORTED, "tokenizer.json: more than one TemplateProcessing");
    json_t *single = json_object_get(cfg, "single"), *e;
    size_t i;
    t->post_single = malloc((json_array_size(single) + 1) * sizeof *t->post_single);
    if (!t->post_single) return NOMEM();
    int have_a = 0;
    json_array_foreach(single, i, e) {
        json_t *sp = json_object_get(e, "SpecialToken"), *sq = json_object_get(e, "Sequence");
        if (json_is_object(sp) && json_is_string(json_object_get(sp, "id"))) {
            /* Resolved to an id once the vocabulary is loaded: stash the name as -2 - offset. */
            size_t off = t->strings.len;
            const char *name = json_string_value(json_object_get(sp, "id"));
            if (tb_put(&t->strings, name, strlen(name) + 1)) return NOMEM();
            t->post_single[t->n_post_single++] = -2 - (int32_t)off;
        } else if (json_is_object(sq)) {
            const char *id = tok_json_str(sq, "id");
            if (id && strcmp(id, "A") == 0) {
                t->post_single[t->n_post_single++] = -1;
                have_a = 1;
            }
        } else {
            return t2_set_error(T2_ERR_FORMAT, "tokenizer.json: TemplateProcessing.single[%zu] is malformed", i);
        }
    }
    if (!have_a) return t2_set_error(T2_ERR_FORMAT, "tokenizer.json: TemplateProcessing.single has no sequence A");
    return T2_OK;
}

/* ---- decoders --------------------------------------------------------------------------------- */

static t2_status add_dec(t2_tokenizer *t, json_t *cfg) {
    if (json_is_null(cfg) || !cfg) return T2_OK;
    const char *type = tok_json_str(cfg, "type");
    if (!type) return t2_set_error(T2_ERR_FORMAT, "tokenizer.json: decoder without a type");
    if (strcmp(type, "Sequence") == 0) {
        json_t *list = json_object_get(cfg, "decoders"), *e;
        size_t i;
        json_array_foreach(list, i, e) {
            t2_status st = add_dec(t, e);
            if (st) return st;
        }
        return T2_OK;
    }
    tok_dec *arr = realloc(t->dec, (t->n_dec + 1) * sizeof *arr);
    if (!arr) return NOMEM();
    t->dec = arr;
    tok_dec *d = &t->dec[t->n_dec];
    memset(d, 0, sizeof *d);
    if (strcmp(type, "ByteLevel") == 0) {
        d->kind = DEC_BYTELEVEL;
    } else if (strcmp(type, "ByteFallback") == 0) {
        d->kind = DEC_BYTEFALLBACK;
    } else if (strcmp(type, "Fuse") == 0) {
        d->kind = DEC_FUSE;
    } else if (strcmp(type, "Replace") == 0) {
        d->kind = DEC_REPLACE;
        if (!json_is_string(json_object_get(json_object_get(cfg, "pattern"), "String")))
            return t2_set_error(T2_ERR_UNSUPPORTED, "tokenizer.json: Replace decoder with a Regex pattern");
        d->a = dup_str(json_object_get(json_object_get(cfg, "pattern"), "String"), &d->alen);
        d->b = dup_str(json_object_get(cfg, "content"), &d->blen);
        if (!d->a || !d->b || d->alen == 0)
            return t2_set_error(T2_ERR_FORMAT, "tokenizer.json: Replace decoder lacks pattern or content");
    } else if (strcmp(type, "Strip") == 0) {
        d->kind = DEC_STRIP;
        d->a = dup_str(json_object_get(cfg, "content"), &d->alen);
        d->start = (int)json_integer_value(json_object_get(cfg, "start"));
        d->stop = (int)json_integer_value(json_object_get(cfg, "stop"));
        if (!d->a) return t2_set_error(T2_ERR_FORMAT, "tokenizer.json: Strip decoder without content");
    } else if (strcmp(type, "Metaspace") == 0) {
        d->kind = DEC_METASPACE;
        d->a = dup_str(json_object_get(cfg, "replacement"), &d->alen);
        if (!d->a || d->alen == 0) return t2_set_error(T2_ERR_FORMAT, "tokenizer.json: Metaspace decoder without replacement");
        const char *scheme = tok_json_str(cfg, "prepend_scheme");
        json_t *aps = json_object_get(cfg, "add_prefix_space");
        d->add_prefix_space = aps ? json_is_true(aps) : (scheme && strcmp(scheme, "never") != 0);
    } else {
        return t2_set_error(T2_ERR_UNSUPPORTED, "tokenizer.json: decoder type \"%s\" is not supported", type);
    }
    t->n_dec++;
    return T2_OK;
}

t2_status tok_load_components(t2_tokenizer *t, void *root_json) {
    json_t *root = root_json;
    t2_status st;
    if ((st = add_norm(t, json_object_get(root, "normalizer")))) return st;
    if ((st = add_pre(t, json_object_get(root, "pre_tokenizer")))) return st;
    if ((st = add_post(t, json_object_get(root, "post_processor")))) return st;
    if ((st = add_dec(t, json_object_get(root, "decoder")))) return st;
    for (size_t i = 0; i < t->n_dec; i++)
        if (t->dec[i].kind == DEC_BYTELEVEL && (i != 0 || !t->byte_level))
            return t2_set_error(T2_ERR_UNSUPPORTED,
                                "tokenizer.json: a ByteLevel decoder needs a ByteLevel pre_tokenizer and must come first");
    return T2_OK;
}
