/* Encoding: text → ids.
 *
 * Order of work, as in the reference: (1) invalid UTF-8 becomes U+FFFD; (2) added tokens are cut out
 * with a longest-match trie, honouring their lstrip/rstrip; (3) each remaining section is normalized
 * and (4) pre-tokenized; (5) each pre-token goes through BPE; (6) the post-processor template wraps
 * the ids. The pre-tokenizer steps stream — every piece one step produces is handed to the next step
 * (and finally to BPE) immediately — so memory does not grow with the number of pieces, only with
 * the length of the input. */
#include "tok_internal.h"

#include <stdlib.h>
#include <string.h>

#define NOMEM() t2_set_error(T2_ERR_NOMEM, "tokenizer: out of memory")

typedef struct enc_ctx {
    const t2_tokenizer *t;
    tb_ids *out;
    tb_buf *scratch;                /* one per pre-tokenizer step */
    pcre2_match_data **md;          /* one per pre-tokenizer step */
    pcre2_match_context *mctx;      /* with a big JIT stack, made only if a match needs it */
    pcre2_jit_stack *jstack;
    int first_section;
} enc_ctx;

static t2_status pre_step(enc_ctx *c, size_t k, const char *s, size_t n, int first_piece);

/* The end of the pre-tokenizer chain: BPE, then fuse runs of unknown tokens if the model asks. */
static t2_status model_step(enc_ctx *c, const char *s, size_t n) {
    const t2_tokenizer *t = c->t;
    size_t before = c->out->len;
    t2_status st = tok_bpe_word(t, s, n, c->out);
    if (st || !t->fuse_unk || t->model_unk_id < 0) return st;
    size_t w = before;
    for (size_t i = before; i < c->out->len; i++) {
        int32_t id = c->out->p[i];
        if (id == t->model_unk_id && w > 0 && c->out->p[w - 1] == t->model_unk_id) continue;
        c->out->p[w++] = id;
    }
    c->out->len = w;
    return T2_OK;
}

static t2_status next_step(enc_ctx *c, size_t k, const char *s, size_t n, int first_piece) {
    return k + 1 < c->t->n_pre ? pre_step(c, k + 1, s, n, first_piece) : model_step(c, s, n);
}

static int match_once(enc_ctx *c, pcre2_code *re, pcre2_match_data *md, const char *s, size_t n, size_t pos) {
    int rc = pcre2_match(re, (PCRE2_SPTR)s, n, pos, PCRE2_NO_UTF_CHECK, md, c->mctx);
    if (rc == PCRE2_ERROR_JIT_STACKLIMIT && !c->jstack) {
        /* Long runs of one class can exhaust the default 32 kB JIT stack; retry with 64 MB. */
        c->mctx = pcre2_match_context_create(NULL);
        c->jstack = pcre2_jit_stack_create(32 * 1024, 64 * 1024 * 1024, NULL);
        if (!c->mctx || !c->jstack) return PCRE2_ERROR_NOMEMORY;
        pcre2_jit_stack_assign(c->mctx, NULL, c->jstack);
        rc = pcre2_match(re, (PCRE2_SPTR)s, n, pos, PCRE2_NO_UTF_CHECK, md, c->mctx);
    }
    return rc;
}

/* Split s by a regex: matches and the gaps between them become pieces (Isolated), or only gaps
 * (Removed), or only matches (invert). Empty matches are skipped, as JavaScript's matchAll does. */
static t2_status split_regex(enc_ctx *c, size_t k, pcre2_code *re, int keep_gaps, int keep_matches,
                             const char *s, size_t n, int first_piece) {
    if (!c->md[k] && !(c->md[k] = pcre2_match_data_create_from_pattern(re, NULL))) return NOMEM();
    pcre2_match_data *md = c->md[k];
    size_t pos = 0, last = 0;
    t2_status st;
    while (pos <= n) {
        int rc = match_once(c, re, md, s, n, pos);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0) {
            PCRE2_UCHAR msg[128];
            pcre2_get_error_message(rc, msg, sizeof msg);
            return t2_set_error(rc == PCRE2_ERROR_NOMEMORY ? T2_ERR_NOMEM : T2_ERR_RANGE,
                                "tokenizer: split regex failed: %s", (const char *)msg);
        }
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        size_t ms = ov[0], me = ov[1];
        if (ms > last && keep_gaps) {
            if ((st = next_step(c, k, s + last, ms - last, first_piece && last == 0))) return st;
        }
        if (me > ms && keep_matches) {
            if ((st = next_step(c, k, s + ms, me - ms, first_piece && ms == 0))) return st;
        }
        last = me > last ? me : last;
        if (me == ms) {
            if (me >= n) break;
            uint32_t cp;
            pos = me + tok_utf8_next(s + me, n - me, &cp);
        } else {
            pos = me;
        }
    }
    if (last < n && keep_gaps) return next_step(c, k, s + last, n - last, first_piece && last == 0);
    return T2_OK;
}

static t2_status pre_step(enc_ctx *c, size_t k, const char *s, size_t n, int first_piece) {
    const tok_pre *p = &c->t->pre[k];
    tb_buf *b = &c->scratch[k];
    switch (p->kind) {
    case PRE_SPLIT:
        return split_regex(c, k, p->re, !p->invert, p->invert || p->behavior == SPLIT_ISOLATED, s, n,
                           first_piece);
    case PRE_BYTELEVEL:
        if (p->add_prefix_space && (n == 0 || s[0] != ' ')) {
            b->len = 0;
            if (tb_putc(b, ' ') || tb_put(b, s, n)) return NOMEM();
            s = b->p;
            n = b->len;
        }
        /* The mapping into GPT-2's byte alphabet is implicit: the vocabulary is keyed by raw bytes. */
        return p->re ? split_regex(c, k, p->re, 1, 1, s, n, first_piece) : next_step(c, k, s, n, first_piece);
    case PRE_METASPACE: {
        b->len = 0;
        int pre = p->prepend == 1 || (p->prepend == 2 && first_piece && c->first_section);
        if (pre && !(n >= p->repl_len && memcmp(s, p->repl, p->repl_len) == 0))
            if (tb_put(b, p->repl, p->repl_len)) return NOMEM();
        for (size_t i = 0; i < n; i++)
            if (s[i] == ' ' ? tb_put(b, p->repl, p->repl_len) : tb_putc(b, s[i])) return NOMEM();
        if (!p->split) return next_step(c, k, b->p ? b->p : "", b->len, first_piece);
        /* split=true: every replacement character starts a new piece (merged with what follows). */
        size_t a = 0;
        for (size_t i = p->repl_len ? 1 : b->len; i <= b->len; i++) {
            if (i == b->len || (b->len - i >= p->repl_len && memcmp(b->p + i, p->repl, p->repl_len) == 0)) {
                if (i > a) {
                    t2_status st = next_step(c, k, b->p + a, i - a, first_piece && a == 0);
                    if (st) return st;
                }
                a = i;
            }
        }
        return T2_OK;
    }
    case PRE_WHITESPACE_SPLIT: {
        size_t i = 0;
        while (i < n) {
            uint32_t cp;
            size_t a = i, q;
            while (a < n && (q = tok_utf8_next(s + a, n - a, &cp), tok_js_space(cp))) a += q;
            size_t e = a;
            while (e < n && (q = tok_utf8_next(s + e, n - e, &cp), !tok_js_space(cp))) e += q;
            if (e > a) {
                t2_status st = next_step(c, k, s + a, e - a, first_piece && a == 0);
                if (st) return st;
            }
            i = e;
        }
        return T2_OK;
    }
    }
    return t2_set_error(T2_ERR_INTERNAL, "tokenizer: unknown pre-tokenizer step");
}

/* One section of text between added tokens: normalize, pre-tokenize, BPE. */
static t2_status encode_section(enc_ctx *c, const char *s, size_t n, tb_buf *nb, tb_buf *rb) {
    const t2_tokenizer *t = c->t;
    if (n == 0) return T2_OK;
    if (t->remove_space) { /* x.trim().split(/\s+/).join(" ") */
        size_t a, b;
        tok_js_trim(s, n, 1, 1, &a, &b);
        rb->len = 0;
        for (size_t i = a; i < b;) {
            uint32_t cp;
            size_t q = tok_utf8_next(s + i, b - i, &cp);
            if (tok_js_space(cp)) {
                if (rb->len == 0 || rb->p[rb->len - 1] != ' ')
                    if (tb_putc(rb, ' ')) return NOMEM();
            } else if (tb_put(rb, s + i, q)) {
                return NOMEM();
            }
            i += q;
        }
        s = rb->p ? rb->p : "";
        n = rb->len;
    }
    if (t->n_norm) {
        nb->len = 0;
        t2_status st = tok_normalize(t, s, n, nb);
        if (st) return st;
        s = nb->p ? nb->p : "";
        n = nb->len;
    }
    if (n == 0) return T2_OK;
    return t->n_pre ? pre_step(c, 0, s, n, 1) : model_step(c, s, n);
}

/* Longest added token starting at s[i], or -1. */
static int32_t added_at(const t2_tokenizer *t, const unsigned char *s, size_t n, size_t i, size_t *len) {
    int32_t node = 0, best = -1;
    for (size_t j = i; j < n; j++) {
        int32_t ch = t->trie[node].first_child;
        while (ch >= 0 && t->trie[ch].byte != s[j]) ch = t->trie[ch].next_sibling;
        if (ch < 0) break;
        node = ch;
        if (t->trie[node].added >= 0) {
            best = t->trie[node].added;
            *len = j + 1 - i;
        }
    }
    return best;
}

t2_status t2_tokenizer_encode(const t2_tokenizer *t, const char *text, size_t len, int add_special,
                              int32_t **ids, size_t *n) {
    if (ids) *ids = NULL;
    if (n) *n = 0;
    if (!t || !ids || !n || (!text && len))
        return t2_set_error(T2_ERR_INVALID_ARG, "t2_tokenizer_encode: NULL argument");
    tb_buf clean = {0}, nb = {0}, rb = {0};
    tb_ids out = {0};
    enc_ctx c = {t, &out, NULL, NULL, NULL, NULL, 1};
    t2_status st = T2_OK;
    if (!text) text = "";
    if (tok_utf8_valid_prefix(text, len) != len) {
        if (tok_utf8_sanitize(text, len, &clean)) {
            st = NOMEM();
            goto done;
        }
        text = clean.p;
        len = clean.len;
    }
    c.scratch = calloc(t->n_pre + 1, sizeof *c.scratch);
    c.md = calloc(t->n_pre + 1, sizeof *c.md);
    if (!c.scratch || !c.md) {
        st = NOMEM();
        goto done;
    }
    size_t post_a = 0; /* index of sequence A in the template */
    if (add_special && t->post_single) {
        while (t->post_single[post_a] != -1) {
            if (ti_push(&out, t->post_single[post_a++])) {
                st = NOMEM();
                goto done;
            }
        }
    }

    const unsigned char *u = (const unsigned char *)text;
    size_t sec = 0, i = 0;
    int strip_next = 0; /* the previous added token has rstrip */
    while (i <= len && !st) {
        size_t mlen = 0;
        int32_t a = -1;
        /* find the next added token */
        while (i < len) {
            if ((t->trie_first[u[i] >> 3] >> (u[i] & 7)) & 1) {
                a = added_at(t, u, len, i, &mlen);
                if (a >= 0) break;
            }
            i++;
        }
        size_t s0 = sec, s1 = a >= 0 ? i : len;
        if (strip_next || (a >= 0 && t->added[a].lstrip)) {
            size_t x, y;
            tok_js_trim(text + s0, s1 - s0, strip_next, a >= 0 && t->added[a].lstrip, &x, &y);
            s1 = s0 + y;
            s0 = s0 + x;
        }
        if (s1 > s0) {
            st = encode_section(&c, text + s0, s1 - s0, &nb, &rb);
            c.first_section = 0;
        }
        if (a < 0 || st) break;
        c.first_section = 0;
        if (ti_push(&out, t->added[a].id)) st = NOMEM();
        strip_next = t->added[a].rstrip;
        i += mlen;
        sec = i;
    }
    if (!st && add_special && t->post_single) {
        for (size_t k = post_a + 1; k < t->n_post_single; k++)
            if (t->post_single[k] != -1 && ti_push(&out, t->post_single[k])) st = NOMEM();
    }
done:
    for (size_t k = 0; c.scratch && k < t->n_pre; k++) tb_free(&c.scratch[k]);
    for (size_t k = 0; c.md && k < t->n_pre; k++) pcre2_match_data_free(c.md[k]);
    free(c.scratch);
    free(c.md);
    pcre2_match_context_free(c.mctx);
    pcre2_jit_stack_free(c.jstack);
    tb_free(&clean);
    tb_free(&nb);
    tb_free(&rb);
    if (st) {
        free(out.p);
        return st;
    }
    if (out.len == 0) {
        free(out.p);
        out.p = NULL;
    }
    *ids = out.p;
    *n = out.len;
    return T2_OK;
}
