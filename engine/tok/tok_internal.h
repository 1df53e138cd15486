/* Private structures of the tokenizer module (engine/tok). Not installed. */
#ifndef T2_TOK_INTERNAL_H
#define T2_TOK_INTERNAL_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <t2/error.h>
#include <t2/tokenizer.h>

/* ---- growable byte buffer -------------------------------------------------------------------- */
typedef struct tb_buf {
    char *p;
    size_t len, cap;
} tb_buf;

int tb_reserve(tb_buf *b, size_t extra); /* 0 ok, -1 out of memory */
int tb_put(tb_buf *b, const void *data, size_t n);
int tb_putc(tb_buf *b, char c);
void tb_free(tb_buf *b);

/* growable int32 array */
typedef struct tb_ids {
    int32_t *p;
    size_t len, cap;
} tb_ids;
int ti_push(tb_ids *a, int32_t v);

/* A list of pieces (offset, length) into one buffer: the data passed between pre-tokenizer steps. */
typedef struct tok_piece {
    size_t off, len;
} tok_piece;
typedef struct tok_pieces {
    tok_piece *p;
    size_t len, cap;
} tok_pieces;
int tp_push(tok_pieces *a, size_t off, size_t len);

/* ---- hashing and the string → id map --------------------------------------------------------- */
uint64_t tok_hash(const void *data, size_t n);

/* Open-addressing map from byte strings to int32 ids. Keys are copied into the map's own arena. */
typedef struct tok_strmap {
    uint32_t *slots; /* entry index + 1; 0 = empty */
    uint64_t *hashes;
    size_t mask;
    size_t count;
    size_t *key_off;
    uint32_t *key_len;
    int32_t *val;
    size_t cap_entries;
    tb_buf keys;
} tok_strmap;
int tok_strmap_init(tok_strmap *m, size_t expected);
void tok_strmap_free(tok_strmap *m);
int tok_strmap_put(tok_strmap *m, const char *key, size_t n, int32_t val); /* overwrites */
int32_t tok_strmap_get(const tok_strmap *m, const char *key, size_t n); /* -1 if absent */

/* Map from a pair of ids to (rank, merged id): the BPE merge table. */
typedef struct tok_merge {
    uint64_t key; /* (left << 32) | right, UINT64_MAX = empty */
    int32_t rank;
    int32_t id;
} tok_merge;
typedef struct tok_mergemap {
    tok_merge *slots;
    size_t mask;
} tok_mergemap;
int tok_mergemap_init(tok_mergemap *m, size_t expected);
void tok_mergemap_put(tok_mergemap *m, int32_t left, int32_t right, int32_t rank, int32_t id);
const tok_merge *tok_mergemap_get(const tok_mergemap *m, int32_t left, int32_t right);

/* ---- UTF-8 helpers ---------------------------------------------------------------------------- */
/* Length of the longest valid UTF-8 prefix of s[0..n). */
size_t tok_utf8_valid_prefix(const char *s, size_t n);
/* Append s to out with every maximal invalid subsequence replaced by U+FFFD (WHATWG decoder rules). */
int tok_utf8_sanitize(const char *s, size_t n, tb_buf *out);
/* Decode one code point at s (valid UTF-8 assumed); returns its byte length, code point in *cp. */
size_t tok_utf8_next(const char *s, size_t n, uint32_t *cp);
size_t tok_utf8_encode(uint32_t cp, char out[4]);
/* JavaScript's definition of whitespace (\s, String.prototype.trim). */
int tok_js_space(uint32_t cp);

/* GPT-2's bytes_to_unicode table: byte → code point, and the reverse (-1 if not in the alphabet). */
uint32_t tok_byte_to_cp(uint8_t b);
int tok_cp_to_byte(uint32_t cp);

/* ---- pipeline components ---------------------------------------------------------------------- */
typedef enum {
    NORM_NFC, NORM_NFD, NORM_NFKC, NORM_NFKD,
    NORM_REPLACE, NORM_PREPEND, NORM_STRIP, NORM_LOWERCASE,
} tok_norm_kind;

typedef struct tok_norm {
    tok_norm_kind kind;
    char *a; size_t alen;       /* Replace: literal pattern; Prepend: text */
    char *b; size_t blen;       /* Replace: content */
    pcre2_code *re;             /* Replace with a Regex pattern */
    int strip_left, strip_right;
} tok_norm;

typedef enum {
    PRE_SPLIT, PRE_BYTELEVEL, PRE_METASPACE, PRE_WHITESPACE_SPLIT,
} tok_pre_kind;

typedef enum { SPLIT_ISOLATED, SPLIT_REMOVED } tok_split_behavior;

typedef struct tok_pre {
    tok_pre_kind kind;
    pcre2_code *re;             /* Split pattern, or ByteLevel's GPT-2 pattern when use_regex */
    int invert;
    tok_split_behavior behavior;
    int add_prefix_space;       /* ByteLevel, Metaspace */
    char *repl; size_t repl_len;/* Metaspace replacement (UTF-8) */
    int prepend;                /* Metaspace: 0 never, 1 always, 2 first */
    int split;                  /* Metaspace: split on the replacement */
} tok_pre;

typedef enum {
    DEC_BYTELEVEL, DEC_REPLACE, DEC_BYTEFALLBACK, DEC_FUSE, DEC_STRIP, DEC_METASPACE,
} tok_dec_kind;

typedef struct tok_dec {
    tok_dec_kind kind;
    char *a; size_t alen;       /* Replace pattern / Strip content / Metaspace replacement */
    char *b; size_t blen;       /* Replace content */
    int start, stop;            /* Strip */
    int add_prefix_space;       /* Metaspace */
} tok_dec;

typedef struct tok_added {
    int32_t id;
    uint32_t off, len;          /* content in tok->strings */
    unsigned lstrip : 1, rstrip : 1, special : 1;
} tok_added;

/* A byte trie over added-token contents, for leftmost-longest matching. */
typedef struct tok_trie_node {
    int32_t first_child;        /* index into nodes, -1 none */
    int32_t next_sibling;
    int32_t added;              /* index into tok->added of a token ending here, -1 none */
    uint8_t byte;
} tok_trie_node;

/* Cache of recently encoded words: key bytes → ids. Cleared wholesale when full (bounded memory). */
typedef struct tok_cache {
    pthread_mutex_t lock;
    tok_strmap map;             /* word → index into starts */
    tb_ids ids;                 /* concatenated results */
    size_t *starts;             /* per entry: offset into ids; ends at starts[i + 1] */
    size_t n, cap;
} tok_cache;

#define TOK_FLAG_ADDED 1
#define TOK_FLAG_SPECIAL 2

struct t2_tokenizer {
    /* id space */
    int32_t n_ids;
    size_t *tok_off;            /* per id: offset of the tokenizer.json spelling in `strings` */
    uint32_t *tok_len;          /* per id: its length; UINT32_MAX = hole */
    uint8_t *tok_flags;
    size_t *raw_off;            /* per id: bytes the token stands for in the model's own space */
    uint32_t *raw_len;          /* (byte-level: decoded bytes; otherwise same as the spelling) */
    tb_buf strings;
    tok_strmap model_map;       /* model-space bytes → id (model vocabulary + added tokens) */
    tok_strmap spell_map;       /* tokenizer.json spelling → id */

    /* BPE model */
    tok_mergemap merges;
    int byte_level;             /* a ByteLevel pre-tokenizer: pieces are raw bytes, ids via byte_id */
    int32_t byte_id[256];       /* byte-level: id of the one-byte token */
    int32_t fallback_id[256];   /* byte fallback: id of "<0xXX>", -1 if absent */
    int byte_fallback, fuse_unk, ignore_merges;
    int sp_cuttable;            /* no token has "▁" after another character (see tok_bpe.c) */
    int32_t model_unk_id;

    /* added tokens */
    tok_added *added;
    size_t n_added;
    tok_trie_node *trie;
    size_t n_trie;
    uint8_t trie_first[32];     /* bitset of first bytes of added tokens */

    tok_norm *norm;
    size_t n_norm;
    tok_pre *pre;
    size_t n_pre;
    int32_t *post_single;       /* TemplateProcessing "single": ids, with -1 standing for sequence A */
    size_t n_post_single;
    tok_dec *dec;
    size_t n_dec;

    /* tokenizer_config.json */
    char *bos_token, *eos_token, *unk_token, *pad_token, *chat_template;
    int32_t bos_id, eos_id, eot_id, pad_id, unk_id;
    int clean_up;
    int remove_space;

    tok_cache cache;
};

/* loading (tok_load.c, tok_components.c) */
t2_status tok_load_components(t2_tokenizer *t, void *root_json);
t2_status tok_compile_regex(const char *pattern, size_t len, int literal, pcre2_code **out);

/* normalizers (tok_normalize.c) */
t2_status tok_normalize(const t2_tokenizer *t, const char *s, size_t n, tb_buf *out);
/* JavaScript trim bounds of s[0..n): [*a, *b). */
void tok_js_trim(const char *s, size_t n, int left, int right, size_t *a, size_t *b);

/* BPE (tok_bpe.c): append the ids of one pre-token (model-space bytes) to out. */
t2_status tok_bpe_word(const t2_tokenizer *t, const char *s, size_t n, tb_ids *out);
t2_status tok_cache_init(tok_cache *c);
void tok_cache_free(tok_cache *c);

/* the bytes of a JSON string member, or NULL */
const char *tok_json_str(void *obj, const char *key);

#endif
