/* Normalizers: Unicode normalization forms and case mapping via ICU (the library JavaScript engines
 * themselves use for String.prototype.normalize/toLowerCase), plus the simple string rewrites. */
#include "tok_internal.h"

#include <stdlib.h>
#include <string.h>
#include <unicode/unorm2.h>
#include <unicode/ustring.h>

#define NOMEM() t2_set_error(T2_ERR_NOMEM, "tokenizer: out of memory")

static int all_ascii(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] >= 0x80) return 0;
    return 1;
}

/* UTF-8 → UTF-16, apply f, → UTF-8 appended to out. */
typedef int32_t (*u16_fn)(const void *ctx, const UChar *src, int32_t n, UChar *dst, int32_t cap, UErrorCode *e);

static t2_status via_utf16(const char *s, size_t n, u16_fn f, const void *ctx, tb_buf *out) {
    if (n > INT32_MAX / 4) return t2_set_error(T2_ERR_RANGE, "tokenizer: normalization segment too long");
    UErrorCode e = U_ZERO_ERROR;
    int32_t n16 = 0, cap = (int32_t)n + 16, m = 0;
    UChar *src = malloc((size_t)cap * sizeof *src), *dst = NULL;
    t2_status st = T2_OK;
    if (!src) return NOMEM();
    u_strFromUTF8(src, cap, &n16, s, (int32_t)n, &e);
    if (U_FAILURE(e)) goto icu;
    for (int32_t dcap = n16 * 2 + 16;;) {
        free(dst);
        if (!(dst = malloc((size_t)dcap * sizeof *dst))) goto nomem;
        e = U_ZERO_ERROR;
        m = f(ctx, src, n16, dst, dcap, &e);
        if (e == U_BUFFER_OVERFLOW_ERROR && m > dcap) {
            dcap = m + 1;
            continue;
        }
        if (U_FAILURE(e)) goto icu;
        break;
    }
    int32_t n8 = 0;
    e = U_ZERO_ERROR;
    u_strToUTF8(NULL, 0, &n8, dst, m, &e);
    if (e != U_BUFFER_OVERFLOW_ERROR && U_FAILURE(e)) goto icu;
    if (tb_reserve(out, (size_t)n8 + 1)) goto nomem;
    e = U_ZERO_ERROR;
    u_strToUTF8(out->p + out->len, n8 + 1, &n8, dst, m, &e);
    if (U_FAILURE(e)) goto icu;
    out->len += (size_t)n8;
    out->p[out->len] = 0;
    goto done;
icu:
    st = t2_set_error(T2_ERR_INTERNAL, "tokenizer: ICU failed: %s", u_errorName(e));
    goto done;
nomem:
    st = NOMEM();
done:
    free(src);
    free(dst);
    return st;
}

static int32_t do_normalize(const void *ctx, const UChar *src, int32_t n, UChar *dst, int32_t cap, UErrorCode *e) {
    return unorm2_normalize((const UNormalizer2 *)ctx, src, n, dst, cap, e);
}

static int32_t do_lower(const void *ctx, const UChar *src, int32_t n, UChar *dst, int32_t cap, UErrorCode *e) {
    (void)ctx;
    return u_strToLower(dst, cap, src, n, "", e); /* root locale: what JavaScript's toLowerCase does */
}

#define NORM_SEGMENT 65536

/* Normalization is done in segments cut where ICU says a normalization boundary lies, so a huge
 * input never needs one UTF-16 copy of itself (and gives the same result as normalizing it whole). */
static t2_status unicode_norm(tok_norm_kind kind, const char *s, size_t n, tb_buf *out) {
    if (all_ascii(s, n)) return tb_put(out, s, n) ? NOMEM() : T2_OK; /* invariant under all forms */
    UErrorCode e = U_ZERO_ERROR;
    const UNormalizer2 *nz = kind == NORM_NFC ? unorm2_getNFCInstance(&e)
                             : kind == NORM_NFD ? unorm2_getNFDInstance(&e)
                             : kind == NORM_NFKC ? unorm2_getNFKCInstance(&e)
                                                 : unorm2_getNFKDInstance(&e);
    if (U_FAILURE(e)) return t2_set_error(T2_ERR_INTERNAL, "tokenizer: ICU normalizer: %s", u_errorName(e));
    size_t seg = 0, i = 0;
    while (i < n) {
        uint32_t cp;
        size_t k = tok_utf8_next(s + i, n - i, &cp);
        if (i - seg >= NORM_SEGMENT && unorm2_hasBoundaryBefore(nz, (UChar32)cp)) {
            t2_status st = all_ascii(s + seg, i - seg) ? (tb_put(out, s + seg, i - seg) ? NOMEM() : T2_OK)
                                                       : via_utf16(s + seg, i - seg, do_normalize, nz, out);
            if (st) return st;
            seg = i;
        }
        i += k;
    }
    return via_utf16(s + seg, n - seg, do_normalize, nz, out);
}

/* First occurrence of a[0..an) in s[0..n): memchr on the first byte, then compare. (memchr rather
 * than memmem: sanitizer builds check memmem's whole haystack per call, quadratic on long text.) */
static const char *find(const char *s, size_t n, const char *a, size_t an) {
    const char *e = s + n;
    while ((size_t)(e - s) >= an) {
        const char *p = memchr(s, a[0], (size_t)(e - s) - an + 1);
        if (!p) return NULL;
        if (memcmp(p, a, an) == 0) return p;
        s = p + 1;
    }
    return NULL;
}

/* Literal, non-overlapping, left-to-right replacement (JavaScript replaceAll with a string). */
static t2_status replace_literal(const char *s, size_t n, const char *a, size_t an, const char *b, size_t bn,
                                 tb_buf *out) {
    size_t i = 0;
    if (an == 0) return tb_put(out, s, n) ? NOMEM() : T2_OK;
    while (i < n) {
        const char *p = find(s + i, n - i, a, an);
        size_t j = p ? (size_t)(p - s) : n;
        if (tb_put(out, s + i, j - i)) return NOMEM();
        if (!p) break;
        if (tb_put(out, b, bn)) return NOMEM();
        i = j + an;
    }
    return T2_OK;
}

static t2_status replace_regex(pcre2_code *re, const char *s, size_t n, const char *b, size_t bn, tb_buf *out) {
    PCRE2_SIZE cap = n + n / 2 + 64;
    for (;;) {
        if (tb_reserve(out, cap)) return NOMEM();
        PCRE2_SIZE olen = cap;
        int rc = pcre2_substitute(re, (PCRE2_SPTR)s, n, 0,
                                  PCRE2_SUBSTITUTE_GLOBAL | PCRE2_SUBSTITUTE_LITERAL |
                                      PCRE2_SUBSTITUTE_OVERFLOW_LENGTH | PCRE2_NO_UTF_CHECK,
                                  NULL, NULL, (PCRE2_SPTR)b, bn, (PCRE2_UCHAR *)out->p + out->len, &olen);
        if (rc == PCRE2_ERROR_NOMEMORY) {
            cap = olen + 1;
            continue;
        }
        if (rc < 0) return t2_set_error(T2_ERR_INTERNAL, "tokenizer: regex replace failed (%d)", rc);
        out->len += olen;
        out->p[out->len] = 0;
        return T2_OK;
    }
}

/* JavaScript trim()/trimStart()/trimEnd() bounds. */
void tok_js_trim(const char *s, size_t n, int left, int right, size_t *a, size_t *b) {
    size_t i = 0, j = n;
    while (left && i < n) {
        uint32_t cp;
        size_t k = tok_utf8_next(s + i, n - i, &cp);
        if (!tok_js_space(cp)) break;
        i += k;
    }
    while (right && j > i) {
        size_t k = 1;
        while (k < j - i && ((unsigned char)s[j - k] & 0xC0) == 0x80) k++;
        uint32_t cp;
        tok_utf8_next(s + j - k, k, &cp);
        if (!tok_js_space(cp)) break;
        j -= k;
    }
    *a = i;
    *b = j;
}

t2_status tok_normalize(const t2_tokenizer *t, const char *s, size_t n, tb_buf *out) {
    tb_buf tmp[2] = {{0}, {0}};
    const char *cur = s;
    size_t cur_n = n;
    t2_status st = T2_OK;
    for (size_t k = 0; k < t->n_norm && !st; k++) {
        const tok_norm *z = &t->norm[k];
        tb_buf *dst = &tmp[k & 1];
        dst->len = 0;
        switch (z->kind) {
        case NORM_NFC: case NORM_NFD: case NORM_NFKC: case NORM_NFKD:
            st = unicode_norm(z->kind, cur, cur_n, dst);
            break;
        case NORM_LOWERCASE:
            st = all_ascii(cur, cur_n) ? T2_OK : via_utf16(cur, cur_n, do_lower, NULL, dst);
            if (!st && all_ascii(cur, cur_n)) {
                if (tb_reserve(dst, cur_n)) st = NOMEM();
                for (size_t i = 0; !st && i < cur_n; i++)
                    dst->p[i] = (char)((cur[i] >= 'A' && cur[i] <= 'Z') ? cur[i] + 32 : cur[i]);
                dst->len = cur_n;
            }
            break;
        case NORM_STRIP: {
            size_t a, b;
            tok_js_trim(cur, cur_n, z->strip_left, z->strip_right, &a, &b);
            st = tb_put(dst, cur + a, b - a) ? NOMEM() : T2_OK;
            break;
        }
        case NORM_PREPEND:
            st = (tb_put(dst, z->a, z->alen) || tb_put(dst, cur, cur_n)) ? NOMEM() : T2_OK;
            break;
        case NORM_REPLACE:
            st = z->re ? replace_regex(z->re, cur, cur_n, z->b, z->blen, dst)
                       : replace_literal(cur, cur_n, z->a, z->alen, z->b, z->blen, dst);
            break;
        }
        cur = dst->p ? dst->p : "";
        cur_n = dst->len;
    }
    if (!st && tb_put(out, cur, cur_n)) st = NOMEM();
    tb_free(&tmp[0]);
    tb_free(&tmp[1]);
    return st;
}
