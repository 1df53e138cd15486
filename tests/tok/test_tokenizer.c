/* Unit tests of the tokenizer and chat templates on small tokenizer.json files the test writes itself
 * (a byte-level BPE like Llama 3/Qwen and a SentencePiece-style BPE with byte fallback like Llama 2),
 * so they need nothing from the network. Exactness against the real files is tests/tok/compare. */
#include <t2/chat.h>
#include <t2/error.h>
#include <t2/tokenizer.h>

#include "util.h"

#include <check.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

static char g_dir[200];

static void write_file(const char *dir, const char *name, const char *text) {
    char *p = tu_join(dir, name);
    tu_write_str(p, text);
    free(p);
}

/* dir/tokenizer.json from root (released here) and dir/tokenizer_config.json with the text config. */
static void write_tokenizer(const char *dir, json_t *root, const char *config) {
    ck_assert_ptr_nonnull(root);
    char *p = tu_join(dir, "tokenizer.json");
    ck_assert_int_eq(json_dump_file(root, p, 0), 0);
    free(p);
    json_decref(root);
    write_file(dir, "tokenizer_config.json", config);
}

static char *make_dir(const char *name) {
    static char p[300];
    mkdir(g_dir, 0700);
    snprintf(p, sizeof p, "%s/%s", g_dir, name);
    mkdir(p, 0700); /* may exist already: fine */
    return p;
}

/* GPT-2's byte alphabet for byte b, as UTF-8. */
static void byte_char(unsigned b, char out[4]) {
    unsigned cp;
    int self = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174);
    if (self) cp = b;
    else if (b <= 32) cp = 256 + b;
    else if (b >= 127 && b <= 160) cp = 289 + (b - 127);
    else cp = 323;
    if (cp < 0x80) out[0] = (char)cp, out[1] = 0;
    else out[0] = (char)(0xC0 | (cp >> 6)), out[1] = (char)(0x80 | (cp & 0x3F)), out[2] = 0;
}

static const char *LLAMA3_RE =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

/* A byte-level BPE: 256 byte tokens, merges spelling "hello" and "Ġworld", one special token. */
static const char *byte_level_dir(void) {
    char *dir = make_dir("bytelevel");
    json_t *vocab = json_object(), *merges = json_array();
    char c[4];
    for (unsigned b = 0; b < 256; b++) {
        byte_char(b, c);
        json_object_set_new(vocab, c, json_integer(b));
    }
    const char *m[][2] = {{"h", "e"}, {"he", "l"}, {"hel", "l"}, {"hell", "o"}, {"Ġ", "w"}, {"Ġw", "o"},
                          {"Ġwo", "r"}, {"Ġwor", "l"}, {"Ġworl", "d"}};
    int id = 256;
    for (size_t i = 0; i < sizeof m / sizeof *m; i++) {
        char s[32];
        snprintf(s, sizeof s, "%s %s", m[i][0], m[i][1]);
        json_array_append_new(merges, json_string(s));
        snprintf(s, sizeof s, "%s%s", m[i][0], m[i][1]);
        json_object_set_new(vocab, s, json_integer(id++));
    }
    json_t *root = json_pack(
        "{s:s, s:[{s:i, s:s, s:b, s:b, s:b}], s:n, s:{s:s, s:[{s:s, s:{s:s}, s:s, s:b}, {s:s, s:b, s:b}]},"
        " s:n, s:{s:s}, s:{s:s, s:o, s:o, s:b}}",
        "version", "1.0", "added_tokens", "id", 300, "content", "<|end|>", "special", 1, "lstrip", 0, "rstrip", 0,
        "normalizer", "pre_tokenizer", "type", "Sequence", "pretokenizers", "type", "Split", "pattern", "Regex",
        LLAMA3_RE, "behavior", "Isolated", "invert", 0, "type", "ByteLevel", "add_prefix_space", 0, "use_regex", 0,
        "post_processor", "decoder", "type", "ByteLevel", "model", "type", "BPE", "vocab", vocab, "merges", merges,
        "ignore_merges", 0);
    write_tokenizer(dir, root,
                    "{\"eos_token\": \"<|end|>\", \"clean_up_tokenization_spaces\": false,"
                    " \"chat_template\": \"{% for m in messages %}<|im_start|>{{ m.role }}...{% endfor %}\"}");
    return dir;
}

/* A SentencePiece-style BPE: Prepend/Replace "▁" normalizer, byte fallback, <s> template. */
static const char *sentencepiece_dir(void) {
    char *dir = make_dir("spm");
    json_t *vocab = json_object(), *merges = json_array();
    json_object_set_new(vocab, "<unk>", json_integer(0));
    json_object_set_new(vocab, "<s>", json_integer(1));
    json_object_set_new(vocab, "</s>", json_integer(2));
    for (unsigned b = 0; b < 256; b++) {
        char s[8];
        snprintf(s, sizeof s, "<0x%02X>", b);
        json_object_set_new(vocab, s, json_integer(3 + b));
    }
    int id = 259;
    const char *chars[] = {"▁", "h", "e", "l", "o", "w", "r", "d"};
    for (size_t i = 0; i < 8; i++) json_object_set_new(vocab, chars[i], json_integer(id++));
    const char *m[][2] = {{"▁", "h"}, {"▁h", "e"}, {"▁he", "l"}, {"▁hel", "l"}, {"▁hell", "o"}, {"▁", "w"},
                          {"▁w", "o"}, {"▁wo", "r"}, {"▁wor", "l"}, {"▁worl", "d"}, {"▁", "▁"}};
    for (size_t i = 0; i < sizeof m / sizeof *m; i++) {
        char s[32];
        json_array_append_new(merges, json_pack("[s,s]", m[i][0], m[i][1]));
        snprintf(s, sizeof s, "%s%s", m[i][0], m[i][1]);
        json_object_set_new(vocab, s, json_integer(id++));
    }
    json_t *root = json_pack(
        "{s:[{s:i,s:s,s:b},{s:i,s:s,s:b},{s:i,s:s,s:b}],"
        " s:{s:s, s:[{s:s, s:s}, {s:s, s:{s:s}, s:s}]}, s:n,"
        " s:{s:s, s:[{s:{s:s,s:i}}, {s:{s:s,s:i}}]},"
        " s:{s:s, s:[{s:s, s:{s:s}, s:s}, {s:s}, {s:s}, {s:s, s:s, s:i, s:i}]},"
        " s:{s:s, s:o, s:o, s:s, s:b, s:b}}",
        "added_tokens", "id", 0, "content", "<unk>", "special", 1, "id", 1, "content", "<s>", "special", 1, "id", 2,
        "content", "</s>", "special", 1, "normalizer", "type", "Sequence", "normalizers", "type", "Prepend", "prepend",
        "▁", "type", "Replace", "pattern", "String", " ", "content", "▁", "pre_tokenizer", "post_processor", "type",
        "TemplateProcessing", "single", "SpecialToken", "id", "<s>", "type_id", 0, "Sequence", "id", "A", "type_id", 0,
        "decoder", "type", "Sequence", "decoders", "type", "Replace", "pattern", "String", "▁", "content", " ", "type",
        "ByteFallback", "type", "Fuse", "type", "Strip", "content", " ", "start", 1, "stop", 0, "model", "type", "BPE",
        "vocab", vocab, "merges", merges, "unk_token", "<unk>", "byte_fallback", 1, "fuse_unk", 1);
    write_tokenizer(dir, root,
                    "{\"bos_token\": \"<s>\", \"eos_token\": \"</s>\", \"unk_token\": \"<unk>\","
                    " \"clean_up_tokenization_spaces\": false, \"model_max_length\": 1000000000000000019884624838656}");
    return dir;
}

static t2_tokenizer *load_ok(const char *dir) {
    t2_status st;
    t2_tokenizer *t = t2_tokenizer_load(dir, &st);
    if (!t) ck_abort_msg("load %s: %s", dir, t2_last_error());
    ck_assert_int_eq(st, T2_OK);
    return t;
}

static size_t enc(const t2_tokenizer *t, const char *s, size_t n, int special, int32_t *out, size_t cap) {
    int32_t *ids;
    size_t k;
    t2_status st = t2_tokenizer_encode(t, s, n, special, &ids, &k);
    if (st) ck_abort_msg("encode: %s", t2_last_error());
    ck_assert_uint_le(k, cap);
    if (k) memcpy(out, ids, k * sizeof *ids);
    free(ids);
    return k;
}

static char *dec(const t2_tokenizer *t, const int32_t *ids, size_t n, int flags) {
    char *s;
    size_t len;
    t2_status st = t2_tokenizer_decode(t, ids, n, flags, &s, &len);
    if (st) ck_abort_msg("decode: %s", t2_last_error());
    ck_assert_uint_eq(strlen(s), len);
    return s;
}

/* ---- loading errors --------------------------------------------------------------------------- */

START_TEST(test_missing_dir) {
    t2_status st = T2_OK;
    ck_assert_ptr_null(t2_tokenizer_load("/nonexistent/t2-model", &st));
    ck_assert_int_eq(st, T2_ERR_IO);
    ck_assert_ptr_nonnull(strstr(t2_last_error(), "tokenizer.json"));
    ck_assert_ptr_null(t2_tokenizer_load(NULL, &st));
    ck_assert_int_eq(st, T2_ERR_INVALID_ARG);
    t2_tokenizer_free(NULL);
}
END_TEST

START_TEST(test_bad_json) {
    const char *dir = make_dir("badjson");
    write_file(dir, "tokenizer.json", "{\"model\": {\"type\": \"BPE\", \"vocab\": {");
    t2_status st = T2_OK;
    ck_assert_ptr_null(t2_tokenizer_load(dir, &st));
    ck_assert_int_eq(st, T2_ERR_FORMAT);
    write_file(dir, "tokenizer.json", "[1, 2]");
    ck_assert_ptr_null(t2_tokenizer_load(dir, &st));
    ck_assert_int_eq(st, T2_ERR_FORMAT);
    write_file(dir, "tokenizer.json", "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": -4}, \"merges\": []}}");
    ck_assert_ptr_null(t2_tokenizer_load(dir, &st));
    ck_assert_int_eq(st, T2_ERR_FORMAT);
}
END_TEST

START_TEST(test_unsupported_types) {
    const char *dir = make_dir("unsupported");
    t2_status st = T2_OK;
    write_file(dir, "tokenizer.json", "{\"model\": {\"type\": \"WordPiece\", \"vocab\": {\"a\": 0}}}");
    ck_assert_ptr_null(t2_tokenizer_load(dir, &st));
    ck_assert_int_eq(st, T2_ERR_UNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(t2_last_error(), "WordPiece"));
    write_file(dir, "tokenizer.json", "{\"model\": {\"type\": \"Unigram\", \"vocab\": [[\"a\", 0.0]]}}");
    ck_assert_ptr_null(t2_tokenizer_load(dir, &st));
    ck_assert_int_eq(st, T2_ERR_UNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(t2_last_error(), "Unigram"));
    write_file(dir, "tokenizer.json",
               "{\"pre_tokenizer\": {\"type\": \"BertPreTokenizer\"},"
               " \"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}}");
    ck_assert_ptr_null(t2_tokenizer_load(dir, &st));
    ck_assert_int_eq(st, T2_ERR_UNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(t2_last_error(), "BertPreTokenizer"));
    write_file(dir, "tokenizer.json",
               "{\"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": {\"Regex\": \"(\"}, \"behavior\": \"Isolated\"},"
               " \"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}}");
    ck_assert_ptr_null(t2_tokenizer_load(dir, &st));
    ck_assert_int_eq(st, T2_ERR_FORMAT);
}
END_TEST

/* ---- byte-level BPE --------------------------------------------------------------------------- */

START_TEST(test_bytelevel_basic) {
    t2_tokenizer *t = load_ok(byte_level_dir());
    int32_t ids[64];
    size_t n = enc(t, "hello world", 11, 1, ids, 64);
    ck_assert_uint_eq(n, 2);
    ck_assert_int_eq(ids[0], 259); /* "hello" */
    ck_assert_int_eq(ids[1], 264); /* "Ġworld" */
    char *s = dec(t, ids, n, 0);
    ck_assert_str_eq(s, "hello world");
    free(s);
    /* special token in text, skip-special decode */
    n = enc(t, "hello<|end|> world", 18, 1, ids, 64);
    ck_assert_uint_eq(n, 3);
    ck_assert_int_eq(ids[1], 300);
    ck_assert(t2_tokenizer_is_special(t, 300));
    s = dec(t, ids, n, T2_DECODE_SKIP_SPECIAL);
    ck_assert_str_eq(s, "hello world");
    free(s);
    ck_assert_int_eq(t2_tokenizer_eos_id(t), 300);
    ck_assert_int_eq(t2_tokenizer_eot_id(t), 300);
    ck_assert_int_eq(t2_tokenizer_bos_id(t), -1);
    ck_assert_int_eq(t2_tokenizer_token_to_id(t, "Ġworld", strlen("Ġworld")), 264);
    size_t len;
    ck_assert_str_eq(t2_tokenizer_id_to_token(t, 264, &len), "Ġworld");
    char raw[16];
    ck_assert_int_eq(t2_tokenizer_token_bytes(t, 264, raw, sizeof raw), 6);
    ck_assert(memcmp(raw, " world", 6) == 0);
    ck_assert_int_eq(t2_tokenizer_token_bytes(t, 99999, raw, sizeof raw), -1);
    /* empty input, NULL arguments, out-of-range ids */
    int32_t *p = (int32_t *)1;
    ck_assert_int_eq(t2_tokenizer_encode(t, "", 0, 1, &p, &n), T2_OK);
    ck_assert_uint_eq(n, 0);
    ck_assert_int_eq(t2_tokenizer_encode(t, NULL, 3, 1, &p, &n), T2_ERR_INVALID_ARG);
    ck_assert_int_eq(t2_tokenizer_encode(NULL, "a", 1, 1, &p, &n), T2_ERR_INVALID_ARG);
    int32_t bad[2] = {5, 123456};
    char *out = (char *)1;
    ck_assert_int_eq(t2_tokenizer_decode(t, bad, 2, 0, &out, &len), T2_ERR_RANGE);
    ck_assert_ptr_null(out);
    bad[1] = -1;
    ck_assert_int_eq(t2_tokenizer_decode(t, bad, 2, 0, &out, &len), T2_ERR_RANGE);
    t2_tokenizer_free(t);
}
END_TEST

/* Invalid UTF-8 is documented to behave as if each maximal invalid subsequence were U+FFFD. */
START_TEST(test_invalid_utf8) {
    t2_tokenizer *t = load_ok(byte_level_dir());
    static const struct { const char *bad, *good; } cases[] = {
        {"a\xff" "b", "a\xEF\xBF\xBD" "b"},
        {"\xE2\x82", "\xEF\xBF\xBD"},                       /* truncated: one replacement */
        {"\xE2\x82(", "\xEF\xBF\xBD("},
        {"\xED\xA0\x80", "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD"}, /* surrogate: one per byte */
        {"\xC0\xAF", "\xEF\xBF\xBD\xEF\xBF\xBD"},           /* overlong */
        {"\xF0\x9F\x98", "\xEF\xBF\xBD"},
        {"x\x80\x80y", "x\xEF\xBF\xBD\xEF\xBF\xBDy"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        int32_t a[64], b[64];
        size_t na = enc(t, cases[i].bad, strlen(cases[i].bad), 0, a, 64);
        size_t nb = enc(t, cases[i].good, strlen(cases[i].good), 0, b, 64);
        ck_assert_uint_eq(na, nb);
        ck_assert(memcmp(a, b, na * sizeof *a) == 0);
        char *s = dec(t, a, na, 0);
        ck_assert_str_eq(s, cases[i].good);
        free(s);
    }
    /* decoding half of a multi-byte character gives U+FFFD, like the reference's TextDecoder */
    int32_t one = 0xE2; /* byte token for 0xE2 */
    char *s = dec(t, &one, 1, 0);
    ck_assert_str_eq(s, "\xEF\xBF\xBD");
    free(s);
    /* embedded NUL is an ordinary character */
    int32_t ids[8];
    size_t n = enc(t, "a\0b", 3, 0, ids, 8);
    ck_assert_uint_eq(n, 3);
    ck_assert_int_eq(ids[1], 0);
    t2_tokenizer_free(t);
}
END_TEST

/* ---- SentencePiece-style BPE ------------------------------------------------------------------ */

START_TEST(test_sentencepiece) {
    t2_tokenizer *t = load_ok(sentencepiece_dir());
    int32_t ids[64];
    size_t n = enc(t, "hello world", 11, 1, ids, 64);
    ck_assert_uint_eq(n, 3);
    ck_assert_int_eq(ids[0], 1); /* <s> from TemplateProcessing */
    ck_assert_int_eq(ids[1], t2_tokenizer_token_to_id(t, "▁hello", strlen("▁hello")));
    ck_assert_int_eq(ids[2], t2_tokenizer_token_to_id(t, "▁world", strlen("▁world")));
    char *s = dec(t, ids, n, T2_DECODE_SKIP_SPECIAL);
    ck_assert_str_eq(s, "hello world");
    free(s);
    /* unknown characters fall back to bytes: é = C3 A9 */
    n = enc(t, "hé", strlen("hé"), 0, ids, 64); /* "▁h", <0xC3>, <0xA9> */
    ck_assert_uint_eq(n, 3);
    ck_assert_int_eq(ids[0], t2_tokenizer_token_to_id(t, "▁h", strlen("▁h")));
    ck_assert_int_eq(ids[1], 3 + 0xC3);
    ck_assert_int_eq(ids[2], 3 + 0xA9);
    s = dec(t, ids, n, 0);
    ck_assert_str_eq(s, "hé");
    free(s);
    char raw[8];
    ck_assert_int_eq(t2_tokenizer_token_bytes(t, 3 + 0xC3, raw, sizeof raw), 1);
    ck_assert_int_eq((unsigned char)raw[0], 0xC3);
    ck_assert_int_eq(t2_tokenizer_token_bytes(t, ids[0], raw, sizeof raw), 2); /* "▁h" streams as " h" */
    ck_assert(memcmp(raw, " h", 2) == 0);
    ck_assert_int_eq(t2_tokenizer_bos_id(t), 1);
    ck_assert_int_eq(t2_tokenizer_eos_id(t), 2);
    ck_assert_int_eq(t2_tokenizer_eot_id(t), 2);
    t2_tokenizer_free(t);
}
END_TEST

/* ---- a single 100 MB line ---------------------------------------------------------------------- */

static long max_rss_mb(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss / 1024;
}

static void huge_line(const char *dir, size_t per_unit, size_t extra) {
    t2_tokenizer *t = load_ok(dir);
    const char unit[] = "hello world ";
    size_t ul = sizeof unit - 1, total = 100u * 1024 * 1024 / ul * ul;
    char *text = malloc(total);
    ck_assert_ptr_nonnull(text);
    for (size_t i = 0; i < total; i += ul) memcpy(text + i, unit, ul);
    long before = max_rss_mb();
    int32_t *ids;
    size_t n;
    t2_status st = t2_tokenizer_encode(t, text, total, 0, &ids, &n);
    if (st) ck_abort_msg("encode 100 MB: %s", t2_last_error());
    /* every "hello world " is the same few tokens */
    ck_assert_uint_eq(n, total / ul * per_unit + extra);
    long grew = max_rss_mb() - before;
    /* ids (4 bytes per token, with growth slack) plus normalized copies of the input: bounded by a
     * small multiple of the input, not by the number of pieces */
    ck_assert_msg(grew < 700, "encoding 100 MB grew the resident set by %ld MB", grew);
    free(ids);
    free(text);
    t2_tokenizer_free(t);
}

/* "hello", then per unit "Ġ"+"hello" and "Ġworld"; the first unit has no "Ġ", the final space adds one */
START_TEST(test_100mb_bytelevel) { huge_line(byte_level_dir(), 3, 0); }
END_TEST

/* "▁hello" "▁world" per unit, plus the final lone "▁" */
START_TEST(test_100mb_sentencepiece) { huge_line(sentencepiece_dir(), 2, 1); }
END_TEST

/* ---- chat templates --------------------------------------------------------------------------- */

static char *render(const t2_chat_template *c, const t2_chat_message *m, size_t n, int gen) {
    char *s;
    size_t len;
    t2_status st = t2_chat_render(c, m, n, gen, &s, &len);
    if (st) ck_abort_msg("render: %s", t2_last_error());
    return s;
}

static const t2_chat_message CONV[] = {
    {"system", "Be brief."}, {"user", " Hi "}, {"assistant", "Hello."}, {"user", "2+2?"}};

START_TEST(test_chat_builtin) {
    t2_tokenizer *spm = load_ok(sentencepiece_dir());
    t2_status st;
    t2_chat_template *c = t2_chat_template_builtin(T2_CHAT_LLAMA3, spm, &st);
    ck_assert_ptr_nonnull(c);
    char *s = render(c, CONV, 4, 1);
    ck_assert_str_eq(s, "<s><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
                        "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
                        "<|start_header_id|>assistant<|end_header_id|>\n\nHello.<|eot_id|>"
                        "<|start_header_id|>user<|end_header_id|>\n\n2+2?<|eot_id|>"
                        "<|start_header_id|>assistant<|end_header_id|>\n\n");
    ck_assert_str_eq(t2_chat_template_stop(c), "<|eot_id|>");
    free(s);
    t2_chat_template_free(c);

    c = t2_chat_template_builtin(T2_CHAT_CHATML, spm, &st);
    s = render(c, CONV + 1, 1, 1);
    ck_assert_str_eq(s, "<|im_start|>user\n Hi <|im_end|>\n<|im_start|>assistant\n");
    free(s);
    t2_chat_template_free(c);

    c = t2_chat_template_builtin(T2_CHAT_LLAMA2, spm, &st);
    s = render(c, CONV, 4, 1);
    ck_assert_str_eq(s, "<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\n Hi [/INST] Hello. </s><s>[INST] 2+2? [/INST]");
    free(s);
    ck_assert_int_eq(t2_chat_template_stop_id(c), 2);
    t2_chat_template_free(c);

    c = t2_chat_template_builtin(T2_CHAT_MISTRAL, spm, &st);
    s = render(c, CONV, 4, 1);
    ck_assert_str_eq(s, "<s>[INST] Be brief.\n\n Hi  [/INST]Hello.</s>[INST] 2+2? [/INST]");
    free(s);
    t2_chat_template_free(c);

    c = t2_chat_template_builtin(T2_CHAT_PLAIN, spm, &st);
    s = render(c, CONV, 2, 1);
    ck_assert_str_eq(s, "<s>Be brief.\n\nUser:  Hi \n\nAssistant:");
    free(s);
    /* chat_encode = render + encode without extra specials: <s> appears once */
    int32_t *ids;
    size_t n;
    ck_assert_int_eq(t2_chat_encode(c, spm, CONV, 2, 1, &ids, &n), T2_OK);
    ck_assert_int_eq(ids[0], 1);
    ck_assert_int_ne(ids[1], 1);
    free(ids);
    t2_chat_template_free(c);
    /* a role Llama 2 cannot place */
    c = t2_chat_template_builtin(T2_CHAT_LLAMA2, spm, &st);
    t2_chat_message tool = {"tool", "x"};
    char *o;
    size_t ol;
    ck_assert_int_eq(t2_chat_render(c, &tool, 1, 1, &o, &ol), T2_ERR_INVALID_ARG);
    t2_chat_message nul = {"user", NULL};
    ck_assert_int_eq(t2_chat_render(c, &nul, 1, 1, &o, &ol), T2_ERR_INVALID_ARG);
    t2_chat_template_free(c);
    ck_assert_ptr_null(t2_chat_template_builtin(T2_CHAT_CUSTOM, spm, &st));
    t2_tokenizer_free(spm);
}
END_TEST

START_TEST(test_chat_detect) {
    ck_assert_int_eq(t2_chat_detect("{{ '<|start_header_id|>' }}"), T2_CHAT_LLAMA3);
    ck_assert_int_eq(t2_chat_detect("{{ '<|im_start|>' + role }}"), T2_CHAT_CHATML);
    ck_assert_int_eq(t2_chat_detect("[INST] <<SYS>>"), T2_CHAT_LLAMA2);
    ck_assert_int_eq(t2_chat_detect("{{ '[INST] ' + content }}"), T2_CHAT_MISTRAL);
    ck_assert_int_eq(t2_chat_detect("{{ whatever }}"), T2_CHAT_PLAIN);
    ck_assert_int_eq(t2_chat_detect(NULL), T2_CHAT_PLAIN);
    ck_assert_int_eq(t2_chat_kind_parse("qwen"), T2_CHAT_CHATML);
    ck_assert_int_eq(t2_chat_kind_parse("nope"), -1);
    /* auto: the byte-level fixture's config has a ChatML-looking template */
    t2_tokenizer *t = load_ok(byte_level_dir());
    t2_status st;
    t2_chat_template *c = t2_chat_template_load("auto", t, &st);
    ck_assert_ptr_nonnull(c);
    ck_assert_int_eq(t2_chat_template_kind(c), T2_CHAT_CHATML);
    ck_assert_int_eq(t2_chat_template_stop_id(c), -1); /* no <|im_end|> in this vocab */
    t2_chat_template_free(c);
    ck_assert_ptr_null(t2_chat_template_load("/nonexistent/template.txt", t, &st));
    ck_assert_int_eq(st, T2_ERR_NOT_FOUND);
    t2_tokenizer_free(t);
}
END_TEST

START_TEST(test_chat_custom) {
    t2_tokenizer *spm = load_ok(sentencepiece_dir());
    const char *text = "# a custom format\n"
                       "begin = {bos}\n"
                       "system = SYS: {content}\\n\n"
                       "message = <{role}> {content}\\n\n"
                       "generation = <assistant>\\s\n"
                       "stop = </s>\n"
                       "trim = yes\n"
                       "user = {{literal}} {content}\\n\n";
    t2_status st;
    t2_chat_template *c = t2_chat_template_parse(text, strlen(text), spm, &st);
    if (!c) ck_abort_msg("parse: %s", t2_last_error());
    char *s = render(c, CONV, 4, 1);
    ck_assert_str_eq(s, "<s>SYS: Be brief.\n{literal} Hi\n<assistant> Hello.\n{literal} 2+2?\n<assistant> ");
    free(s);
    ck_assert_int_eq(t2_chat_template_stop_id(c), 2);
    ck_assert_int_eq(t2_chat_template_kind(c), T2_CHAT_CUSTOM);
    t2_chat_template_free(c);
    /* a role with no format and no fallback */
    c = t2_chat_template_parse("user = {content}", 16, spm, &st);
    char *o;
    size_t ol;
    ck_assert_int_eq(t2_chat_render(c, CONV, 1, 0, &o, &ol), T2_ERR_INVALID_ARG);
    t2_chat_template_free(c);
    /* errors name the line */
    ck_assert_ptr_null(t2_chat_template_parse("begin = x\nuser = {bogus}\n", 25, spm, &st));
    ck_assert_int_eq(st, T2_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(t2_last_error(), "line 2"));
    ck_assert_ptr_null(t2_chat_template_parse("just text\n", 10, spm, &st));
    ck_assert_int_eq(st, T2_ERR_FORMAT);
    /* from a file */
    const char *dir = make_dir("chat");
    write_file(dir, "tmpl.txt", "message = [{role}] {content}\ngeneration = [assistant]\n");
    char p[512];
    snprintf(p, sizeof p, "%s/tmpl.txt", dir);
    c = t2_chat_template_load(p, spm, &st);
    ck_assert_ptr_nonnull(c);
    s = render(c, CONV + 1, 1, 1);
    ck_assert_str_eq(s, "[user]  Hi [assistant]");
    free(s);
    ck_assert_str_eq(t2_chat_template_stop(c), "</s>"); /* default: EOS */
    t2_chat_template_free(c);
    t2_tokenizer_free(spm);
}
END_TEST

static Suite *suite(void) {
    Suite *s = suite_create("tokenizer");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_missing_dir);
    tcase_add_test(tc, test_bad_json);
    tcase_add_test(tc, test_unsupported_types);
    tcase_add_test(tc, test_bytelevel_basic);
    tcase_add_test(tc, test_invalid_utf8);
    tcase_add_test(tc, test_sentencepiece);
    suite_add_tcase(s, tc);
    TCase *big = tcase_create("huge");
    tcase_set_timeout(big, 300);
    tcase_add_test(big, test_100mb_bytelevel);
    tcase_add_test(big, test_100mb_sentencepiece);
    suite_add_tcase(s, big);
    TCase *chat = tcase_create("chat");
    tcase_add_test(chat, test_chat_builtin);
    tcase_add_test(chat, test_chat_detect);
    tcase_add_test(chat, test_chat_custom);
    suite_add_tcase(s, chat);
    return s;
}

int main(void) {
    snprintf(g_dir, sizeof g_dir, "/tmp/t2-tok-test-%ld", (long)getpid());
    int rc = tu_run(suite());
    if (tu_rm_rf(g_dir) != 0) fprintf(stderr, "could not remove %s\n", g_dir);
    return rc;
}
