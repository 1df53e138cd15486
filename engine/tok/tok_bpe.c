/* Byte-pair encoding of one pre-token.
 *
 * The word starts as one symbol per byte (byte-level models) or per code point (SentencePiece-style
 * models). Repeatedly the adjacent pair with the lowest merge rank is merged, the leftmost one among
 * equal ranks — exactly the order the reference's priority queue produces. Symbols live in arrays
 * linked as a doubly-linked list; candidate pairs sit in a binary heap keyed by (rank, position).
 * A heap entry remembers the combined length of its pair, which lets a popped entry be recognised as
 * stale (one side already merged elsewhere) without any per-node version counters. Cost:
 * O(n log n) per word instead of the O(n²) rescans of naive BPE, which matters for SentencePiece
 * models where a whole line is one word.
 *
 * A cache of recent words (most text repeats its words) skips the merge loop entirely. */
#include "tok_internal.h"

#include <stdlib.h>
#include <string.h>

#define CACHE_MAX_WORD 128      /* longer words rarely repeat */
#define CACHE_MAX_ENTRIES 65536 /* then the cache is cleared: memory stays bounded */

typedef struct heap_ent {
    int32_t rank;
    int32_t left, right;
    uint32_t size; /* len[left] + len[right] when pushed */
} heap_ent;

typedef struct bpe_work {
    int32_t *id, *prev, *next;
    uint32_t *start, *len;
    heap_ent *heap;
    size_t nheap;
} bpe_work;

static inline int ent_less(const heap_ent *a, const heap_ent *b) {
    return a->rank < b->rank || (a->rank == b->rank && a->left < b->left);
}

static void heap_push(bpe_work *w, heap_ent e) {
    size_t i = w->nheap++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!ent_less(&e, &w->heap[p])) break;
        w->heap[i] = w->heap[p];
        i = p;
    }
    w->heap[i] = e;
}

static heap_ent heap_pop(bpe_work *w) {
    heap_ent top = w->heap[0], last = w->heap[--w->nheap];
    size_t i = 0, n = w->nheap;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && ent_less(&w->heap[c + 1], &w->heap[c])) c++;
        if (!ent_less(&w->heap[c], &last)) break;
        w->heap[i] = w->heap[c];
        i = c;
    }
    if (n) w->heap[i] = last;
    return top;
}

static void try_pair(const t2_tokenizer *t, bpe_work *w, int32_t l, int32_t r) {
    if (l < 0 || r < 0 || w->id[l] < 0 || w->id[r] < 0) return;
    const tok_merge *m = tok_mergemap_get(&t->merges, w->id[l], w->id[r]);
    if (m) heap_push(w, (heap_ent){m->rank, l, r, w->len[l] + w->len[r]});
}

/* Emit the ids of one final symbol: its id, or its bytes as byte-fallback tokens, or the unknown id. */
static t2_status emit_symbol(const t2_tokenizer *t, int32_t id, const unsigned char *s, size_t n, tb_ids *out) {
    if (id >= 0) return ti_push(out, id) ? T2_ERR_NOMEM : T2_OK;
    if (t->byte_fallback) {
        size_t k = 0;
        while (k < n && t->fallback_id[s[k]] >= 0) k++;
        if (k == n) {
            for (k = 0; k < n; k++)
                if (ti_push(out, t->fallback_id[s[k]])) return T2_ERR_NOMEM;
            return T2_OK;
        }
    }
    if (t->model_unk_id >= 0) return ti_push(out, t->model_unk_id) ? T2_ERR_NOMEM : T2_OK;
    return t2_set_error(T2_ERR_RANGE, "tokenizer: \"%.*s\" has no token and the model has no unknown token",
                        (int)(n > 40 ? 40 : n), (const char *)s);
}

/* The merge loop proper, on s[0..n), appending to out. */
static t2_status bpe_run(const t2_tokenizer *t, const char *s, size_t n, tb_ids *out) {
    enum { SMALL = 64 };
    int32_t s_id[SMALL], s_prev[SMALL], s_next[SMALL];
    uint32_t s_start[SMALL], s_len[SMALL];
    heap_ent s_heap[2 * SMALL];
    bpe_work w = {s_id, s_prev, s_next, s_start, s_len, s_heap, 0};
    void *blk = NULL;
    if (n > SMALL) {
        if (n > UINT32_MAX / 2) return t2_set_error(T2_ERR_RANGE, "tokenizer: a single pre-token over 2 GB");
        /* ints: id, prev, next, start, len = 20 bytes/symbol; heap: at most n entries live at once
         * (each live entry is a distinct adjacent pair) plus one per merge. */
        blk = malloc(n * (5 * sizeof(int32_t)) + 2 * n * sizeof(heap_ent));
        if (!blk) return t2_set_error(T2_ERR_NOMEM, "tokenizer: out of memory for a %zu-byte word", n);
        w.id = blk;
        w.prev = w.id + n;
        w.next = w.prev + n;
        w.start = (uint32_t *)(w.next + n);
        w.len = w.start + n;
        w.heap = (heap_ent *)(w.len + n);
    }
    /* Initial symbols. */
    int32_t ns = 0;
    if (t->byte_level) {
        for (size_t i = 0; i < n; i++) {
            w.id[ns] = t->byte_id[(unsigned char)s[i]];
            w.start[ns] = (uint32_t)i;
            w.len[ns] = 1;
            ns++;
        }
    } else {
        for (size_t i = 0; i < n;) {
            uint32_t cp;
            size_t k = tok_utf8_next(s + i, n - i, &cp);
            w.id[ns] = tok_strmap_get(&t->model_map, s + i, k);
            w.start[ns] = (uint32_t)i;
            w.len[ns] = (uint32_t)k;
            ns++;
            i += k;
        }
    }
    for (int32_t i = 0; i < ns; i++) {
        w.prev[i] = i - 1;
        w.next[i] = i + 1 < ns ? i + 1 : -1;
    }
    for (int32_t i = 0; i + 1 < ns; i++) try_pair(t, &w, i, i + 1);
    while (w.nheap) {
        heap_ent e = heap_pop(&w);
        if (w.len[e.left] == 0 || w.len[e.right] == 0 || w.next[e.left] != e.right ||
            w.len[e.left] + w.len[e.right] != e.size)
            continue; /* stale: one side has merged since */
        const tok_merge *m = tok_mergemap_get(&t->merges, w.id[e.left], w.id[e.right]);
        w.id[e.left] = m->id;
        w.len[e.left] += w.len[e.right];
        w.len[e.right] = 0;
        int32_t nx = w.next[e.right];
        w.next[e.left] = nx;
        if (nx >= 0) w.prev[nx] = e.left;
        try_pair(t, &w, w.prev[e.left], e.left);
        try_pair(t, &w, e.left, nx);
    }
    t2_status st = T2_OK;
    for (int32_t i = ns ? 0 : -1; i >= 0 && !st; i = w.next[i])
        st = emit_symbol(t, w.id[i], (const unsigned char *)s + w.start[i], w.len[i], out);
    free(blk);
    if (st == T2_ERR_NOMEM) t2_set_error(T2_ERR_NOMEM, "tokenizer: out of memory");
    return st;
}

/* ---- cache ------------------------------------------------------------------------------------ */

t2_status tok_cache_init(tok_cache *c) {
    memset(c, 0, sizeof *c);
    if (pthread_mutex_init(&c->lock, NULL) || tok_strmap_init(&c->map, 1024))
        return t2_set_error(T2_ERR_NOMEM, "tokenizer: cannot create the word cache");
    return T2_OK;
}

void tok_cache_free(tok_cache *c) {
    if (!c->map.slots) return;
    pthread_mutex_destroy(&c->lock);
    tok_strmap_free(&c->map);
    free(c->ids.p);
    free(c->starts);
    memset(c, 0, sizeof *c);
}

static int cache_get(tok_cache *c, const char *s, size_t n, tb_ids *out) {
    int hit = 0;
    pthread_mutex_lock(&c->lock);
    int32_t e = tok_strmap_get(&c->map, s, n);
    if (e >= 0) {
        size_t a = c->starts[e], b = c->starts[e + 1];
        hit = 1;
        for (size_t i = a; i < b; i++)
            if (ti_push(out, c->ids.p[i])) {
                hit = -1;
                break;
            }
    }
    pthread_mutex_unlock(&c->lock);
    return hit;
}

static void cache_put(tok_cache *c, const char *s, size_t n, const int32_t *ids, size_t k) {
    pthread_mutex_lock(&c->lock);
    if (!c->map.slots) goto out; /* a failed re-initialisation earlier: run uncached */
    if (c->n + 2 > c->cap || c->n >= CACHE_MAX_ENTRIES) {
        if (c->n >= CACHE_MAX_ENTRIES) { /* start over rather than track recency: cheap, bounded */
            tok_strmap_free(&c->map);
            if (tok_strmap_init(&c->map, 1024)) goto out;
            c->n = 0;
            c->ids.len = 0;
        }
        if (c->n + 2 > c->cap) {
            size_t cap = c->cap ? c->cap * 2 : 1024;
            size_t *p = realloc(c->starts, cap * sizeof *p);
            if (!p) goto out;
            c->starts = p;
            c->cap = cap;
        }
    }
    if (tok_strmap_get(&c->map, s, n) >= 0) goto out; /* another thread got there first */
    size_t base = c->ids.len;
    for (size_t i = 0; i < k; i++)
        if (ti_push(&c->ids, ids[i])) {
            c->ids.len = base;
            goto out;
        }
    if (tok_strmap_put(&c->map, s, n, (int32_t)c->n)) {
        c->ids.len = base;
        goto out;
    }
    c->starts[c->n] = base;
    c->starts[c->n + 1] = c->ids.len;
    c->n++;
out:
    pthread_mutex_unlock(&c->lock);
}

/* ---- one pre-token ---------------------------------------------------------------------------- */

/* Where a long SentencePiece word may be cut without changing the result: just before a run of
 * "▁" (U+2581) that follows some other character. No vocabulary entry has "▁" after another
 * character (checked by the caller), so no token — hence no merge — can straddle such a point, and
 * both halves merge independently to the same ids. This bounds memory on a 100 MB single line. */
static size_t sp_cut(const char *s, size_t n, size_t from) {
    for (size_t i = from; i + 3 <= n; i++)
        if ((unsigned char)s[i] == 0xE2 && (unsigned char)s[i + 1] == 0x96 && (unsigned char)s[i + 2] == 0x81 &&
            !(i >= 3 && (unsigned char)s[i - 3] == 0xE2 && (unsigned char)s[i - 2] == 0x96 &&
              (unsigned char)s[i - 1] == 0x81))
            return i;
    return n;
}

#define SP_CHUNK 8192

t2_status tok_bpe_word(const t2_tokenizer *t, const char *s, size_t n, tb_ids *out) {
    if (n == 0) return T2_OK;
    if (t->ignore_merges) {
        int32_t id = tok_strmap_get(&t->model_map, s, n);
        if (id >= 0) return ti_push(out, id) ? t2_set_error(T2_ERR_NOMEM, "tokenizer: out of memory") : T2_OK;
    }
    if (n <= CACHE_MAX_WORD) {
        int h = cache_get((tok_cache *)&t->cache, s, n, out);
        if (h > 0) return T2_OK;
        if (h < 0) return t2_set_error(T2_ERR_NOMEM, "tokenizer: out of memory");
        size_t before = out->len;
        t2_status st = bpe_run(t, s, n, out);
        if (!st) cache_put((tok_cache *)&t->cache, s, n, out->p + before, out->len - before);
        return st;
    }
    if (!t->byte_level && n > 2 * SP_CHUNK && t->sp_cuttable) {
        size_t a = 0;
        while (a < n) {
            size_t b = a + SP_CHUNK < n ? sp_cut(s, n, a + SP_CHUNK) : n;
            t2_status st = bpe_run(t, s + a, b - a, out);
            if (st) return st;
            a = b;
        }
        return T2_OK;
    }
    return bpe_run(t, s, n, out);
}
