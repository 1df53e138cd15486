/* Small building blocks of the tokenizer: growable buffers, hash maps, UTF-8 handling and GPT-2's
 * byte ↔ unicode alphabet. */
#include "tok_internal.h"

#include <stdlib.h>
#include <string.h>

/* ---- buffers ---------------------------------------------------------------------------------- */

int tb_reserve(tb_buf *b, size_t extra) {
    if (b->len + extra + 1 <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < b->len + extra + 1) cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) return -1;
    b->p = p;
    b->cap = cap;
    return 0;
}

int tb_put(tb_buf *b, const void *data, size_t n) {
    if (tb_reserve(b, n)) return -1;
    if (n) memcpy(b->p + b->len, data, n);
    b->len += n;
    b->p[b->len] = 0; /* always NUL-terminated, for convenience in messages */
    return 0;
}

int tb_putc(tb_buf *b, char c) { return tb_put(b, &c, 1); }

void tb_free(tb_buf *b) {
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

int ti_push(tb_ids *a, int32_t v) {
    if (a->len == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 64;
        int32_t *p = realloc(a->p, cap * sizeof *p);
        if (!p) return -1;
        a->p = p;
        a->cap = cap;
    }
    a->p[a->len++] = v;
    return 0;
}

int tp_push(tok_pieces *a, size_t off, size_t len) {
    if (a->len == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 64;
        tok_piece *p = realloc(a->p, cap * sizeof *p);
        if (!p) return -1;
        a->p = p;
        a->cap = cap;
    }
    a->p[a->len].off = off;
    a->p[a->len].len = len;
    a->len++;
    return 0;
}

/* ---- hashing ---------------------------------------------------------------------------------- */

static inline uint64_t mix64(uint64_t x) {
    x ^= x >> 32;
    x *= 0xd6e8feb86659fd93ULL;
    x ^= x >> 32;
    x *= 0xd6e8feb86659fd93ULL;
    x ^= x >> 32;
    return x;
}

/* Keys are short (words, vocabulary entries), so eight bytes at a time with a strong final mix is
 * plenty; it need not resist adversarial input because probing stays bounded by the load factor. */
uint64_t tok_hash(const void *data, size_t n) {
    const unsigned char *p = data;
    uint64_t h = 0x9e3779b97f4a7c15ULL ^ (n * 0xff51afd7ed558ccdULL);
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        h = mix64(h ^ w) + 0x9e3779b97f4a7c15ULL;
        p += 8;
        n -= 8;
    }
    if (n) {
        uint64_t w = 0;
        memcpy(&w, p, n);
        h = mix64(h ^ w ^ 0x5555);
    }
    return mix64(h);
}

/* ---- string → id map -------------------------------------------------------------------------- */

static size_t pow2_at_least(size_t n) {
    size_t c = 16;
    while (c < n) c *= 2;
    return c;
}

int tok_strmap_init(tok_strmap *m, size_t expected) {
    memset(m, 0, sizeof *m);
    size_t nslots = pow2_at_least(expected * 2 + 2);
    m->slots = calloc(nslots, sizeof *m->slots);
    m->hashes = malloc(nslots * sizeof *m->hashes);
    if (!m->slots || !m->hashes) return -1;
    m->mask = nslots - 1;
    return 0;
}

void tok_strmap_free(tok_strmap *m) {
    free(m->slots);
    free(m->hashes);
    free(m->key_off);
    free(m->key_len);
    free(m->val);
    tb_free(&m->keys);
    memset(m, 0, sizeof *m);
}

static int strmap_grow(tok_strmap *m) {
    size_t nslots = (m->mask + 1) * 2;
    uint32_t *slots = calloc(nslots, sizeof *slots);
    uint64_t *hashes = malloc(nslots * sizeof *hashes);
    if (!slots || !hashes) {
        free(slots);
        free(hashes);
        return -1;
    }
    for (size_t i = 0; i <= m->mask; i++) {
        if (!m->slots[i]) continue;
        size_t j = m->hashes[i] & (nslots - 1);
        while (slots[j]) j = (j + 1) & (nslots - 1);
        slots[j] = m->slots[i];
        hashes[j] = m->hashes[i];
    }
    free(m->slots);
    free(m->hashes);
    m->slots = slots;
    m->hashes = hashes;
    m->mask = nslots - 1;
    return 0;
}

static size_t strmap_find(const tok_strmap *m, const char *key, size_t n, uint64_t h) {
    size_t i = h & m->mask;
    for (;;) {
        uint32_t e = m->slots[i];
        if (!e) return i;
        if (m->hashes[i] == h && m->key_len[e - 1] == n &&
            memcmp(m->keys.p + m->key_off[e - 1], key, n) == 0)
            return i;
        i = (i + 1) & m->mask;
    }
}

int tok_strmap_put(tok_strmap *m, const char *key, size_t n, int32_t val) {
    if (n > UINT32_MAX) return -1;
    uint64_t h = tok_hash(key, n);
    size_t i = strmap_find(m, key, n, h);
    if (m->slots[i]) {
        m->val[m->slots[i] - 1] = val;
        return 0;
    }
    if ((m->count + 1) * 2 > m->mask + 1) {
        if (strmap_grow(m)) return -1;
        i = strmap_find(m, key, n, h);
    }
    if (m->count == m->cap_entries) {
        size_t cap = m->cap_entries ? m->cap_entries * 2 : 64;
        size_t *ko = realloc(m->key_off, cap * sizeof *ko);
        if (!ko) return -1;
        m->key_off = ko;
        uint32_t *kl = realloc(m->key_len, cap * sizeof *kl);
        if (!kl) return -1;
        m->key_len = kl;
        int32_t *v = realloc(m->val, cap * sizeof *v);
        if (!v) return -1;
        m->val = v;
        m->cap_entries = cap;
    }
    size_t off = m->keys.len;
    if (tb_put(&m->keys, key, n)) return -1;
    m->key_off[m->count] = off;
    m->key_len[m->count] = (uint32_t)n;
    m->val[m->count] = val;
    m->count++;
    m->slots[i] = (uint32_t)m->count;
    m->hashes[i] = h;
    return 0;
}

int32_t tok_strmap_get(const tok_strmap *m, const char *key, size_t n) {
    if (!m->slots) return -1;
    size_t i = strmap_find(m, key, n, tok_hash(key, n));
    return m->slots[i] ? m->val[m->slots[i] - 1] : -1;
}

/* ---- merge map -------------------------------------------------------------------------------- */

int tok_mergemap_init(tok_mergemap *m, size_t expected) {
    size_t nslots = pow2_at_least(expected * 2 + 2);
    m->slots = malloc(nslots * sizeof *m->slots);
    if (!m->slots) return -1;
    for (size_t i = 0; i < nslots; i++) m->slots[i].key = UINT64_MAX;
    m->mask = nslots - 1;
    return 0;
}

void tok_mergemap_put(tok_mergemap *m, int32_t left, int32_t right, int32_t rank, int32_t id) {
    uint64_t key = ((uint64_t)(uint32_t)left << 32) | (uint32_t)right;
    size_t i = mix64(key) & m->mask;
    while (m->slots[i].key != UINT64_MAX && m->slots[i].key != key) i = (i + 1) & m->mask;
    /* A pair listed twice keeps its last rank, as a JavaScript Map built from the list does. */
    m->slots[i].key = key;
    m->slots[i].rank = rank;
    m->slots[i].id = id;
}

const tok_merge *tok_mergemap_get(const tok_mergemap *m, int32_t left, int32_t right) {
    uint64_t key = ((uint64_t)(uint32_t)left << 32) | (uint32_t)right;
    size_t i = mix64(key) & m->mask;
    for (;;) {
        const tok_merge *e = &m->slots[i];
        if (e->key == key) return e;
        if (e->key == UINT64_MAX) return NULL;
        i = (i + 1) & m->mask;
    }
}

/* ---- UTF-8 ------------------------------------------------------------------------------------ */

/* Length of a valid sequence starting at s (0 if invalid), following the WHATWG decoder: the second
 * byte's range depends on the lead byte, which excludes overlongs, surrogates and > U+10FFFF. The
 * number of bytes a failed sequence swallows is returned in *bad. */
static size_t utf8_seq(const unsigned char *s, size_t n, size_t *bad) {
    unsigned b = s[0];
    size_t need;
    unsigned lo = 0x80, hi = 0xBF;
    if (b < 0x80) return 1;
    if (b >= 0xC2 && b <= 0xDF) need = 1;
    else if (b == 0xE0) need = 2, lo = 0xA0;
    else if (b == 0xED) need = 2, hi = 0x9F;
    else if (b >= 0xE1 && b <= 0xEF) need = 2;
    else if (b == 0xF0) need = 3, lo = 0x90;
    else if (b == 0xF4) need = 3, hi = 0x8F;
    else if (b >= 0xF1 && b <= 0xF3) need = 3;
    else {
        *bad = 1;
        return 0;
    }
    size_t j = 1;
    for (size_t k = 0; k < need; k++, j++) {
        if (j >= n || s[j] < lo || s[j] > hi) {
            *bad = j; /* the offending byte is examined again as a new lead byte */
            return 0;
        }
        lo = 0x80, hi = 0xBF;
    }
    return j;
}

size_t tok_utf8_valid_prefix(const char *s, size_t n) {
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        if (u[i] < 0x80) {
            i++;
            continue;
        }
        size_t bad, k = utf8_seq(u + i, n - i, &bad);
        if (!k) return i;
        i += k;
    }
    return n;
}

int tok_utf8_sanitize(const char *s, size_t n, tb_buf *out) {
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0, run = 0;
    while (i < n) {
        if (u[i] < 0x80) {
            i++;
            continue;
        }
        size_t bad, k = utf8_seq(u + i, n - i, &bad);
        if (k) {
            i += k;
            continue;
        }
        if (tb_put(out, s + run, i - run) || tb_put(out, "\xEF\xBF\xBD", 3)) return -1;
        i += bad;
        run = i;
    }
    return tb_put(out, s + run, n - run);
}

size_t tok_utf8_next(const char *s, size_t n, uint32_t *cp) {
    const unsigned char *u = (const unsigned char *)s;
    if (u[0] < 0x80 || n < 2) {
        *cp = u[0];
        return 1;
    }
    if (u[0] < 0xE0) {
        *cp = ((uint32_t)(u[0] & 0x1F) << 6) | (u[1] & 0x3F);
        return 2;
    }
    if (u[0] < 0xF0 || n < 4) {
        if (n < 3) {
            *cp = u[0];
            return 1;
        }
        *cp = ((uint32_t)(u[0] & 0x0F) << 12) | ((uint32_t)(u[1] & 0x3F) << 6) | (u[2] & 0x3F);
        return 3;
    }
    *cp = ((uint32_t)(u[0] & 0x07) << 18) | ((uint32_t)(u[1] & 0x3F) << 12) |
          ((uint32_t)(u[2] & 0x3F) << 6) | (u[3] & 0x3F);
    return 4;
}

size_t tok_utf8_encode(uint32_t cp, char out[4]) {
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* ECMAScript WhiteSpace + LineTerminator: what \s and trim() mean in the reference implementation.
 * (It differs from Unicode White_Space in U+0085 and U+FEFF.) */
int tok_js_space(uint32_t c) {
    return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
           c == 0x205F || c == 0x3000 || c == 0xFEFF;
}

/* ---- GPT-2 byte-level alphabet ---------------------------------------------------------------- */

/* Printable Latin-1 bytes stand for themselves; the other 68 bytes are shifted to U+0100.. in
 * order, so that every byte has a visible, non-space character (GPT-2's bytes_to_unicode). */
static int is_self_byte(unsigned b) {
    return (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
}

uint32_t tok_byte_to_cp(uint8_t b) {
    if (is_self_byte(b)) return b;
    if (b <= 32) return 256u + b;              /* 0..32   → U+0100..U+0120 */
    if (b >= 127 && b <= 160) return 289u + (b - 127u); /* 127..160 → U+0121..U+0142 */
    return 323;                                /* 173 (soft hyphen) → U+0143 */
}

int tok_cp_to_byte(uint32_t cp) {
    if (cp < 256) return is_self_byte(cp) ? (int)cp : -1;
    if (cp < 289) return (int)(cp - 256);
    if (cp < 323) return (int)(cp - 289 + 127);
    if (cp == 323) return 173;
    return -1;
}
