/* Decoding: ids → text, through the decoder chain of tokenizer.json, plus the id/token lookups.
 *
 * The decoder steps work on a list of strings, as the reference's decode_chain does, because some
 * steps look at token boundaries (ByteFallback groups consecutive byte tokens; Strip and Metaspace
 * treat the first token specially). */
#include "tok_internal.h"

#include <stdlib.h>
#include <string.h>

#define NOMEM() t2_set_error(T2_ERR_NOMEM, "tokenizer: out of memory")

typedef struct strlist {
    tb_buf b;
    tok_pieces p;
} strlist;

static void sl_free(strlist *l) {
    tb_free(&l->b);
    free(l->p.p);
    memset(l, 0, sizeof *l);
}

static int sl_add(strlist *l, const char *s, size_t n) {
    size_t off = l->b.len;
    return tb_put(&l->b, s, n) || tp_push(&l->p, off, n);
}

#define SL_STR(l, i) ((l)->b.p + (l)->p.p[i].off)
#define SL_LEN(l, i) ((l)->p.p[i].len)

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* "<0xHH>" → HH, else -1 (parsed like JavaScript's parseInt(s, 16) on the two characters). */
static int byte_token(const char *s, size_t n) {
    if (n != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>') return -1;
    int h = hexval(s[3]), l = hexval(s[4]);
    if (h < 0) return -1;
    return l < 0 ? h : h * 16 + l;
}

/* Flush collected raw bytes as UTF-8 text (invalid sequences → U+FFFD, like TextDecoder). */
static int flush_bytes(strlist *out, tb_buf *bytes) {
    if (!bytes->len) return 0;
    tb_buf txt = {0};
    int r = tok_utf8_sanitize(bytes->p, bytes->len, &txt) || sl_add(out, txt.p ? txt.p : "", txt.len);
    tb_free(&txt);
    bytes->len = 0;
    return r;
}

static t2_status dec_step(const tok_dec *d, const strlist *in, strlist *out) {
    tb_buf bytes = {0};
    int r = 0;
    size_t n = in->p.len;
    switch (d->kind) {
    case DEC_BYTELEVEL: /* handled when the list is built (raw bytes already) */
        for (size_t i = 0; i < n && !r; i++) r = sl_add(out, SL_STR(in, i), SL_LEN(in, i));
        break;
    case DEC_REPLACE:
    case DEC_METASPACE:
        for (size_t i = 0; i < n && !r; i++) {
            const char *s = SL_STR(in, i);
            size_t len = SL_LEN(in, i), off = out->b.len;
            const char *pat = d->a, *rep = d->kind == DEC_REPLACE ? d->b : " ";
            size_t pn = d->alen, rn = d->kind == DEC_REPLACE ? d->blen : 1;
            for (size_t j = 0; j < len && !r;) {
                if (len - j >= pn && memcmp(s + j, pat, pn) == 0) {
                    r = tb_put(&out->b, rep, rn);
                    j += pn;
                } else {
                    r = tb_putc(&out->b, s[j++]);
                }
            }
            size_t start = off;
            if (d->kind == DEC_METASPACE && d->add_prefix_space && i == 0 && out->b.len > off && out->b.p[off] == ' ')
                start++;
            if (!r) r = tp_push(&out->p, start, out->b.len - start);
        }
        break;
    case DEC_BYTEFALLBACK:
        for (size_t i = 0; i < n && !r; i++) {
            int b = byte_token(SL_STR(in, i), SL_LEN(in, i));
            if (b >= 0) {
                r = tb_putc(&bytes, (char)b);
                continue;
            }
            r = flush_bytes(out, &bytes) || sl_add(out, SL_STR(in, i), SL_LEN(in, i));
        }
        if (!r) r = flush_bytes(out, &bytes);
        break;
    case DEC_FUSE: {
        size_t off = out->b.len;
        for (size_t i = 0; i < n && !r; i++) r = tb_put(&out->b, SL_STR(in, i), SL_LEN(in, i));
        if (!r) r = tp_push(&out->p, off, out->b.len - off);
        break;
    }
    case DEC_STRIP:
        for (size_t i = 0; i < n && !r; i++) {
            const char *s = SL_STR(in, i);
            size_t a = 0, e = SL_LEN(in, i), c = d->alen;
            for (int k = 0; k < d->start && c && e - a >= c && memcmp(s + a, d->a, c) == 0; k++) a += c;
            for (int k = 0; k < d->stop && c && e - a >= c && memcmp(s + e - c, d->a, c) == 0; k++) e -= c;
            r = sl_add(out, s + a, e - a);
        }
        break;
    }
    tb_free(&bytes);
    return r ? NOMEM() : T2_OK;
}

/* The reference's clean_up_tokenization: these literal replacements, in this order. */
static t2_status clean_up(tb_buf *s) {
    static const char *const from[] = {" .", " ?", " !", " ,", " ' ", " n't", " 'm", " 's", " 've", " 're"};
    static const char *const to[] = {".", "?", "!", ",", "'", "n't", "'m", "'s", "'ve", "'re"};
    for (size_t k = 0; k < sizeof from / sizeof *from; k++) {
        size_t fn = strlen(from[k]), tn = strlen(to[k]), w = 0;
        for (size_t i = 0; i < s->len;) {
            if (s->len - i >= fn && memcmp(s->p + i, from[k], fn) == 0) {
                memmove(s->p + w, to[k], tn);
                w += tn;
                i += fn;
            } else {
                s->p[w++] = s->p[i++];
            }
        }
        s->len = w;
    }
    if (s->p) s->p[s->len] = 0;
    return T2_OK;
}

t2_status t2_tokenizer_decode(const t2_tokenizer *t, const int32_t *ids, size_t n, int flags, char **text,
                              size_t *len) {
    if (text) *text = NULL;
    if (len) *len = 0;
    if (!t || !text || (!ids && n)) return t2_set_error(T2_ERR_INVALID_ARG, "t2_tokenizer_decode: NULL argument");
    strlist cur = {0}, nxt = {0};
    tb_buf bytes = {0}, res = {0};
    t2_status st = T2_OK;
    int raw = t->byte_level && t->n_dec && t->dec[0].kind == DEC_BYTELEVEL;
    for (size_t i = 0; i < n; i++) {
        int32_t id = ids[i];
        if (id < 0 || id >= t->n_ids || t->tok_len[id] == UINT32_MAX) {
            st = t2_set_error(T2_ERR_RANGE, "tokenizer: id %d is not in the vocabulary (size %d)", id, t->n_ids);
            goto done;
        }
        if ((flags & T2_DECODE_SKIP_SPECIAL) && (t->tok_flags[id] & TOK_FLAG_SPECIAL)) continue;
        int r;
        if (raw && !(t->tok_flags[id] & TOK_FLAG_ADDED)) {
            /* ByteLevel decoder: runs of ordinary tokens are joined as bytes, then read as UTF-8. */
            r = tb_put(&bytes, t->strings.p + t->raw_off[id], t->raw_len[id]);
        } else {
            r = (raw && flush_bytes(&cur, &bytes)) || sl_add(&cur, t->strings.p + t->tok_off[id], t->tok_len[id]);
        }
        if (r) {
            st = NOMEM();
            goto done;
        }
    }
    if (raw && flush_bytes(&cur, &bytes)) {
        st = NOMEM();
        goto done;
    }
    for (size_t k = raw ? 1 : 0; k < t->n_dec; k++) {
        if ((st = dec_step(&t->dec[k], &cur, &nxt))) goto done;
        strlist tmp = cur;
        cur = nxt;
        nxt = tmp;
        nxt.b.len = 0;
        nxt.p.len = 0;
    }
    /* With no decoder the reference joins tokens with spaces. */
    for (size_t i = 0; i < cur.p.len; i++)
        if ((i && !t->n_dec && tb_putc(&res, ' ')) || tb_put(&res, SL_STR(&cur, i), SL_LEN(&cur, i))) {
            st = NOMEM();
            goto done;
        }
    if (tb_reserve(&res, 0)) {
        st = NOMEM();
        goto done;
    }
    res.p[res.len] = 0;
    if (t->clean_up && !(flags & T2_DECODE_NO_CLEANUP)) clean_up(&res);
    *text = res.p;
    if (len) *len = res.len;
    res.p = NULL;
done:
    sl_free(&cur);
    sl_free(&nxt);
    tb_free(&bytes);
    tb_free(&res);
    return st;
}

int t2_tokenizer_token_bytes(const t2_tokenizer *t, int32_t id, char *out, size_t cap) {
    if (!t || id < 0 || id >= t->n_ids || t->tok_len[id] == UINT32_MAX) return -1;
    const char *s;
    size_t n;
    char one;
    if (t->tok_flags[id] & TOK_FLAG_ADDED) {
        s = t->strings.p + t->tok_off[id];
        n = t->tok_len[id];
    } else if (t->byte_level) {
        s = t->strings.p + t->raw_off[id];
        n = t->raw_len[id];
    } else {
        s = t->strings.p + t->tok_off[id];
        n = t->tok_len[id];
        int b = t->byte_fallback ? byte_token(s, n) : -1;
        if (b >= 0) {
            one = (char)b;
            s = &one;
            n = 1;
        } else {
            /* The SentencePiece word marker stands for a space (Replace/Metaspace decoders). */
            size_t w = 0;
            for (size_t i = 0; i < n;) {
                if (n - i >= 3 && memcmp(s + i, "\xE2\x96\x81", 3) == 0) {
                    if (w < cap) out[w] = ' ';
                    w++;
                    i += 3;
                } else {
                    if (w < cap) out[w] = s[i];
                    w++;
                    i++;
                }
            }
            return (int)w;
        }
    }
    memcpy(out, s, n < cap ? n : cap);
    return (int)n;
}

const char *t2_tokenizer_id_to_token(const t2_tokenizer *t, int32_t id, size_t *len) {
    if (!t || id < 0 || id >= t->n_ids || t->tok_len[id] == UINT32_MAX) return NULL;
    if (len) *len = t->tok_len[id];
    return t->strings.p + t->tok_off[id];
}

int32_t t2_tokenizer_token_to_id(const t2_tokenizer *t, const char *token, size_t len) {
    if (!t || !token) return -1;
    return tok_strmap_get(&t->spell_map, token, len);
}

int32_t t2_tokenizer_n_vocab(const t2_tokenizer *t) { return t ? t->n_ids : 0; }
int32_t t2_tokenizer_bos_id(const t2_tokenizer *t) { return t ? t->bos_id : -1; }
int32_t t2_tokenizer_eos_id(const t2_tokenizer *t) { return t ? t->eos_id : -1; }
int32_t t2_tokenizer_eot_id(const t2_tokenizer *t) { return t ? t->eot_id : -1; }
int32_t t2_tokenizer_pad_id(const t2_tokenizer *t) { return t ? t->pad_id : -1; }
int32_t t2_tokenizer_unk_id(const t2_tokenizer *t) { return t ? t->unk_id : -1; }

int t2_tokenizer_is_special(const t2_tokenizer *t, int32_t id) {
    return t && id >= 0 && id < t->n_ids && (t->tok_flags[id] & TOK_FLAG_SPECIAL);
}

const char *t2_tokenizer_chat_template(const t2_tokenizer *t) { return t ? t->chat_template : NULL; }

const char *t2_tokenizer_special_token(const t2_tokenizer *t, const char *name) {
    if (!t || !name) return NULL;
    if (strcmp(name, "bos_token") == 0) return t->bos_token;
    if (strcmp(name, "eos_token") == 0) return t->eos_token;
    if (strcmp(name, "unk_token") == 0) return t->unk_token;
    if (strcmp(name, "pad_token") == 0) return t->pad_token;
    return NULL;
}
