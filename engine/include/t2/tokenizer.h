/* t2/tokenizer.h — Hugging Face tokenizers from tokenizer.json, with identical ids.
 *
 * A t2_tokenizer is loaded from a model folder holding tokenizer.json (the "fast" tokenizer file that
 * the Hugging Face `tokenizers` library writes) and, optionally, tokenizer_config.json (special-token
 * names, chat template, decode clean-up). The pipeline is the one Hugging Face defines:
 *
 *   added/special tokens are cut out first (longest match at each position)
 *   → normalizer (NFC/NFD/NFKC/NFKD, Replace, Prepend, Strip, Lowercase, Sequence)
 *   → pre-tokenizer (Split with the model's regex, ByteLevel, Metaspace, WhitespaceSplit, Sequence)
 *   → model (BPE: byte-level as in GPT-2/Llama 3/Qwen, or SentencePiece-style with byte fallback
 *     as in Llama 2/Mistral)
 *   → post-processor (TemplateProcessing adds BOS/EOS; ByteLevel; Sequence)
 *
 * and decoding runs the file's decoder chain (ByteLevel, Replace, ByteFallback, Fuse, Strip, Metaspace).
 * The reference for "identical" is the Hugging Face implementation as ported to JavaScript
 * (npm @lenml/tokenizers, i.e. transformers.js); tests/tok compares the two on thousands of strings.
 *
 * Text is UTF-8. Invalid UTF-8 in encode input is not an error: each maximal invalid subsequence is
 * replaced by U+FFFD exactly as the WHATWG/JavaScript TextDecoder does, so the ids are those Hugging
 * Face gives for the text a browser or Python's errors="replace" would have decoded. Embedded NUL bytes
 * are ordinary characters (lengths are explicit).
 *
 * Regex split patterns run on PCRE2 with JavaScript semantics for \s, \d and \w (as transformers.js
 * does): \p{..} classes follow PCRE2's Unicode tables, which may lag the newest Unicode version for
 * characters assigned in the last few releases.
 *
 * Thread safety: a loaded tokenizer is immutable apart from an internal, mutex-protected cache of
 * recently encoded words, so any number of threads may encode/decode with one tokenizer at once. */
#ifndef T2_TOKENIZER_H
#define T2_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include <t2/status.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct t2_tokenizer t2_tokenizer;

/* Load the tokenizer of a model folder: `model_dir`/tokenizer.json (required) and
 * `model_dir`/tokenizer_config.json (optional). On failure returns NULL, stores the status in *err
 * (if err is not NULL) and records a detail readable with t2_last_error(): T2_ERR_IO (missing or
 * unreadable file), T2_ERR_FORMAT (malformed JSON or fields), T2_ERR_UNSUPPORTED (e.g. a WordPiece or
 * Unigram model, or a normalizer/pre-tokenizer/decoder type we do not implement — the message names it).
 * Returns: caller frees with t2_tokenizer_free. */
t2_tokenizer *t2_tokenizer_load(const char *model_dir, t2_status *err);

/* Same as t2_tokenizer_load, from explicit file paths. `config_path` may be NULL.
 * Returns: caller frees with t2_tokenizer_free. */
t2_tokenizer *t2_tokenizer_load_files(const char *tokenizer_json_path, const char *config_path,
                                      t2_status *err);

/* Free a tokenizer. NULL-safe. */
void t2_tokenizer_free(t2_tokenizer *tok);

/* Encode `len` bytes of UTF-8 `text` into token ids. `add_special` non-zero runs the post-processor's
 * special tokens (e.g. Llama 2's BOS) as Hugging Face's encode(add_special_tokens=True) does; special
 * token strings inside the text ("<|eot_id|>") are always recognised as their single ids.
 * On success *ids is a malloc'd array of *n ids (caller frees with free(); *ids may be NULL when
 * *n == 0). On failure *ids = NULL, *n = 0 and the status is returned (T2_ERR_NOMEM, or
 * T2_ERR_RANGE if a piece has no id at all in a vocabulary without an unknown token). */
t2_status t2_tokenizer_encode(const t2_tokenizer *tok, const char *text, size_t len, int add_special,
                              int32_t **ids, size_t *n);

/* Flags for t2_tokenizer_decode. */
enum {
    T2_DECODE_SKIP_SPECIAL = 1, /* drop special tokens (BOS, EOS, <|eot_id|>, ...) */
    T2_DECODE_NO_CLEANUP = 2,   /* never apply clean_up_tokenization_spaces (" ." → "." etc.), even if
                                 * tokenizer_config.json asks for it (Llama 3's file does) */
};

/* Decode ids to UTF-8 text exactly as Hugging Face's decode() does with the file's settings, including
 * clean_up_tokenization_spaces from tokenizer_config.json unless T2_DECODE_NO_CLEANUP is given.
 * Incomplete UTF-8 byte sequences (e.g. decoding half of a multi-byte character) become U+FFFD.
 * On success *text is a malloc'd, NUL-terminated string of *len bytes (caller frees with free()).
 * Returns T2_ERR_RANGE (and *text = NULL) if an id is outside [0, t2_tokenizer_n_vocab()). */
t2_status t2_tokenizer_decode(const t2_tokenizer *tok, const int32_t *ids, size_t n, int flags,
                              char **text, size_t *len);

/* The raw bytes one token stands for, for streaming output: byte-level tokens give their bytes
 * (possibly an incomplete UTF-8 sequence), byte-fallback tokens "<0x0A>" give that byte, SentencePiece
 * "▁" gives a space, added tokens give their content. Writes up to `cap` bytes to `out` and returns the
 * full length (like snprintf, no NUL added), or -1 if `id` is out of range or a hole in the vocabulary. */
int t2_tokenizer_token_bytes(const t2_tokenizer *tok, int32_t id, char *out, size_t cap);

/* The vocabulary string of `id` as written in tokenizer.json (e.g. "Ġthe", "▁the", "<|eot_id|>").
 * Returns NULL if out of range or a hole. Borrowed: valid until t2_tokenizer_free. The string is
 * NUL-terminated; *len (if not NULL) receives its length. */
const char *t2_tokenizer_id_to_token(const t2_tokenizer *tok, int32_t id, size_t *len);

/* The id of a vocabulary or added-token string written as in tokenizer.json, or -1 if none. */
int32_t t2_tokenizer_token_to_id(const t2_tokenizer *tok, const char *token, size_t len);

/* Size of the id space: one more than the largest id (model vocabulary plus added tokens). */
int32_t t2_tokenizer_n_vocab(const t2_tokenizer *tok);

/* Special ids, or -1 where the tokenizer has none. bos/eos come from tokenizer_config.json's
 * bos_token/eos_token; end-of-turn is the token a chat model emits after its reply: <|eot_id|>
 * (Llama 3), <|im_end|> (ChatML/Qwen), <end_of_turn> (Gemma) if present, otherwise the EOS id. */
int32_t t2_tokenizer_bos_id(const t2_tokenizer *tok);
int32_t t2_tokenizer_eos_id(const t2_tokenizer *tok);
int32_t t2_tokenizer_eot_id(const t2_tokenizer *tok);
int32_t t2_tokenizer_pad_id(const t2_tokenizer *tok);
int32_t t2_tokenizer_unk_id(const t2_tokenizer *tok);

/* Non-zero if `id` is a special added token (BOS, EOS, <|eot_id|>, ...), as skip_special_tokens sees it. */
int t2_tokenizer_is_special(const t2_tokenizer *tok, int32_t id);

/* tokenizer_config.json's chat_template string (the first one if it is a list), or NULL.
 * Borrowed: valid until t2_tokenizer_free. */
const char *t2_tokenizer_chat_template(const t2_tokenizer *tok);

/* A token string named in tokenizer_config.json ("bos_token", "eos_token", "unk_token", "pad_token"),
 * or NULL. Borrowed: valid until t2_tokenizer_free. */
const char *t2_tokenizer_special_token(const t2_tokenizer *tok, const char *name);

#ifdef __cplusplus
}
#endif
#endif
