/* Loading tokenizer.json and tokenizer_config.json into a t2_tokenizer.
 *
 * The model vocabulary is re-keyed into "model space": for byte-level BPE (GPT-2, Llama 3, Qwen) each
 * vocabulary string is written in GPT-2's printable byte alphabet ("Ġthe" is " the"), and we store the
 * raw bytes instead. Pre-tokens then never need to be mapped into that alphabet and back — the BPE
 * works on the text's own bytes, and merges and lookups give the same ids because the alphabet is a
 * bijection. The tokenizer.json spelling is kept as well for id ↔ token-string lookups. */
#include "tok_internal.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *tok_json_str(void *obj, const char *key) {
    json_t *v = json_object_get((json_t *)obj, key);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

/* Model-space bytes of a vocabulary spelling: byte-level spellings are decoded through the GPT-2
 * alphabet when every character belongs to it; anything else stays as written. */
static int to_model_space(const t2_tokenizer *t, const char *s, size_t n, tb_buf *out) {
    out->len = 0;
    if (t->byte_level) {
        size_t i = 0;
        while (i < n) {
            uint32_t cp;
            size_t k = tok_utf8_next(s + i, n - i, &cp);
            int b = tok_cp_to_byte(cp);
            if (b < 0) break;
            if (tb_putc(out, (char)b)) return -1;
            i += k;
        }
        if (i == n) return 0;
        out->len = 0;
    }
    return tb_put(out, s, n);
}

static json_t *load_json(const char *path, int required, t2_status *st) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        if (!required && errno == ENOENT) {
            *st = T2_OK;
            return NULL;
        }
        *st = t2_set_error(T2_ERR_IO, "%s: %s", path, strerror(errno));
        return NULL;
    }
    json_error_t je;
    /* tokenizer_config.json holds model_max_length = 1e30 as an integer literal: read numbers as
     * reals there (we take no integers from it); tokenizer.json's ids must stay integers. */
    json_t *root = json_loadf(f, required ? 0 : JSON_DECODE_INT_AS_REAL, &je);
    fclose(f);
    if (!root) {
        *st = t2_set_error(T2_ERR_FORMAT, "%s:%d:%d: %s", path, je.line, je.column, je.text);
        return NULL;
    }
    if (!json_is_object(root)) {
        json_decref(root);
        *st = t2_set_error(T2_ERR_FORMAT, "%s: top level is not a JSON object", path);
        return NULL;
    }
    *st = T2_OK;
    return root;
}

/* Record the spelling and model-space bytes of one id. */
static t2_status set_token(t2_tokenizer *t, int32_t id, const char *spell, size_t n, const char *raw,
                           size_t rn) {
    if (id < 0 || id >= t->n_ids) return t2_set_error(T2_ERR_FORMAT, "token id %d out of range", id);
    size_t off = t->strings.len;
    if (tb_put(&t->strings, spell, n) || tb_putc(&t->strings, 0)) goto nomem;
    size_t roff = t->strings.len;
    if (tb_put(&t->strings, raw, rn) || tb_putc(&t->strings, 0)) goto nomem;
    t->tok_off[id] = off;
    t->tok_len[id] = (uint32_t)n;
    t->raw_off[id] = roff;
    t->raw_len[id] = (uint32_t)rn;
    return T2_OK;
nomem:
    return t2_set_error(T2_ERR_NOMEM, "tokenizer: out of memory");
}

/* Ids of both halves of a merge and of their concatenation; a merge whose pieces are not all in the
 * vocabulary can never fire (Hugging Face refuses such files), so it is skipped. */
static t2_status add_merge(t2_tokenizer *t, const char *a, size_t an, const char *b, size_t bn,
                           int32_t rank, tb_buf *s1, tb_buf *s2) {
    if (to_model_space(t, a, an, s1) || to_model_space(t, b, bn, s2))
        return t2_set_error(T2_ERR_NOMEM, "tokenizer: out of memory");
    int32_t l = tok_strmap_get(&t->model_map, s1->p, s1->len);
    int32_t r = tok_strmap_get(&t->model_map, s2->p, s2->len);
    if (l < 0 || r < 0) return T2_OK;
    if (tb_put(s1, s2->p, s2->len)) return t2_set_error(T2_ERR_NOMEM, "tokenizer: out of memory");
    int32_t m = tok_strmap_get(&t->model_map, s1->p, s1->len);
    if (m >= 0) tok_mergemap_put(&t->merges, l, r, rank, m);
    return T2_OK;
}

static t2_status load_model(t2_tokenizer *t, json_t *root) {
    json_t *model = json_object_get(root, "model");
    if (!json_is_object(model)) return t2_set_error(T2_ERR_FORMAT, "tokenizer.json: no \"model\" object");
    const char *type = tok_json_str(model, "type");
    json_t *vocab = json_object_get(model, "vocab");
    json_t *merges = json_object_get(model, "merges");
    if (type && strcmp(type, "BPE") != 0)
        return t2_set_error(T2_ERR_UNSUPPORTED,
                            "tokenizer.json: model.type \"%s\" is not supported (only BPE)", type);
    if (!json_is_object(vocab) || !json_is_array(merges))
        return t2_set_error(type ? T2_ERR_FORMAT : T2_ERR_UNSUPPORTED,
                            "tokenizer.json: model is not a BPE model with a vocab object and merges");
    const char *eow = tok_json_str(model, "end_of_word_suffix");
    const char *csp = tok_json_str(model, "continuing_subword_prefix");
    if ((eow && *eow) || (csp && *csp))
        return t2_set_error(T2_ERR_UNSUPPORTED,
                            "tokenizer.json: BPE end_of_word_suffix/continuing_subword_prefix not supported");
    t->byte_fallback = json_is_true(json_object_get(model, "byte_fallback"));
    t->fuse_unk = json_is_true(json_object_get(model, "fuse_unk"));
    t->ignore_merges = json_is_true(json_object_get(model, "ignore_merges"));

    /* The id space covers the model vocabulary and every added token. */
    json_t *added = json_object_get(root, "added_tokens");
    int64_t max_id = -1;
    const char *key;
    json_t *val;
    json_object_foreach(vocab, key, val) {
        if (!json_is_integer(val) || json_integer_value(val) < 0 || json_integer_value(val) > INT32_MAX / 2)
            return t2_set_error(T2_ERR_FORMAT, "tokenizer.json: vocab entry \"%s\" has no valid id", key);
        if (json_integer_value(val) > max_id) max_id = json_integer_value(val);
    }
    size_t i;
    json_array_foreach(added, i, val) {
        json_t *id = json_object_get(val, "id");
        if (!json_is_integer(id) || json_integer_value(id) < 0 || json_integer_value(id) > INT32_MAX / 2 ||
            !json_is_string(json_object_get(val, "content")))
            return t2_set_error(T2_ERR_FORMAT, "tokenizer.json: added_tokens[%zu] lacks id or content", i);
        if (json_integer_value(id) > max_id) max_id = json_integer_value(id);
    }
    t->n_ids = (int32_t)(max_id + 1);
    size_t n = (size_t)t->n_ids;
    t->tok_off = calloc(n ? n : 1, sizeof *t->tok_off);
    t->tok_len = malloc((n ? n : 1) * sizeof *t->tok_len);
    t->raw_off = calloc(n ? n : 1, sizeof *t->raw_off);
    t->raw_len = malloc((n ? n : 1) * sizeof *t->raw_len);
    t->tok_flags = calloc(n ? n : 1, 1);
    if (!t->tok_off || !t->tok_len || !t->raw_off || !t->raw_len || !t->tok_flags ||
        tok_strmap_init(&t->model_map, n) || tok_strmap_init(&t->spell_map, n) ||
        tok_mergemap_init(&t->merges, json_array_size(merges)))
        return t2_set_error(T2_ERR_NOMEM, "tokenizer: out of memory");
    for (i = 0; i < n; i++) t->tok_len[i] = t->raw_len[i] = UINT32_MAX;

    tb_buf s1 = {0}, s2 = {0};
    t2_status st = T2_OK;
    json_object_foreach(vocab, key, val) {
        size_t kn = strlen(key); /* jansson keys are NUL-free unless JSON had \u0000: harmless */
        int32_t id = (int32_t)json_integer_value(val);
        if (to_model_space(t, key, kn, &s1)) goto nomem;
        if ((st = set_token(t, id, key, kn, s1.p, s1.len))) goto out;
        if (tok_strmap_put(&t->model_map, s1.p, s1.len, id) || tok_strmap_put(&t->spell_map, key, kn, id))
            goto nomem;
    }

    /* Added tokens override the vocabulary entry of the same string, as in the reference. */
    t->added = calloc(json_array_size(added) + 1, sizeof *t->added);
    if (!t->added) goto nomem;
    json_array_foreach(added, i, val) {
        const char *c = json_string_value(json_object_get(val, "content"));
        size_t cn = json_string_length(json_object_get(val, "content"));
        int32_t id = (int32_t)json_integer_value(json_object_get(val, "id"));
        if (cn == 0) continue;
        if ((st = set_token(t, id, c, cn, c, cn))) goto out;
        if (to_model_space(t, c, cn, &s1)) goto nomem;
        if (tok_strmap_put(&t->model_map, s1.p, s1.len, id) || tok_strmap_put(&t->spell_map, c, cn, id))
            goto nomem;
        tok_added *a = &t->added[t->n_added++];
        a->id = id;
        a->off = (uint32_t)t->tok_off[id];
        a->len = (uint32_t)cn;
        a->lstrip = json_is_true(json_object_get(val, "lstrip"));
        a->rstrip = json_is_true(json_object_get(val, "rstrip"));
        a->special = json_is_true(json_object_get(val, "special"));
        t->tok_flags[id] = TOK_FLAG_ADDED | (a->special ? TOK_FLAG_SPECIAL : 0);
    }

    /* Merges: "a b" strings (tokenizers < 0.20) or ["a", "b"] pairs; rank = position in the list. */
    json_array_foreach(merges, i, val) {
        if (i > INT32_MAX) break;
        if (json_is_string(val)) {
            const char *m = json_string_value(val);
            const char *sp = strchr(m, ' ');
            if (!sp) continue;
            const char *b = sp + 1, *e = strchr(b, ' '); /* like JS split(" ", 2) */
            size_t bn = e ? (size_t)(e - b) : strlen(b);
            if ((st = add_merge(t, m, (size_t)(sp - m), b, bn, (int32_t)i, &s1, &s2))) goto out;
        } else if (json_is_array(val) && json_array_size(val) == 2 &&
                   json_is_string(json_array_get(val, 0)) && json_is_string(json_array_get(val, 1))) {
            json_t *a = json_array_get(val, 0), *b = json_array_get(val, 1);
            if ((st = add_merge(t, json_string_value(a), json_string_length(a), json_string_value(b),
                                json_string_length(b), (int32_t)i, &s1, &s2)))
                goto out;
        } else {
            st = t2_set_error(T2_ERR_FORMAT, "tokenizer.json: model.merges[%zu] is malformed", i);
            goto out;
        }
    }

    for (int b = 0; b < 256; b++) {
        char c = (char)b, name[8];
        t->byte_id[b] = tok_strmap_get(&t->model_map, &c, 1);
        snprintf(name, sizeof name, "<0x%02X>", b);
        t->fallback_id[b] = tok_strmap_get(&t->spell_map, name, 6);
    }
    /* May long SentencePiece words be cut before a "▁" run? Only if no token has "▁" after another
     * character (tok_bpe.c relies on it). */
    t->sp_cuttable = 1;
    for (size_t id = 0; id < n && t->sp_cuttable; id++) {
        if (t->raw_len[id] == UINT32_MAX) continue;
        const char *p = t->strings.p + t->raw_off[id], *e = p + t->raw_len[id];
        while (p + 3 <= e && memcmp(p, "\xE2\x96\x81", 3) == 0) p += 3;
        for (; p + 3 <= e; p++)
            if (memcmp(p, "\xE2\x96\x81", 3) == 0) {
                t->sp_cuttable = 0;
                break;
            }
    }
    const char *unk = tok_json_str(model, "unk_token");
    t->model_unk_id = unk ? tok_strmap_get(&t->spell_map, unk, strlen(unk)) : -1;
    goto out;
nomem:
    st = t2_set_error(T2_ERR_NOMEM, "tokenizer: out of memory");
out:
    tb_free(&s1);
    tb_free(&s2);
    return st;
}

/* The trie of added-token contents used to cut them out of the text before anything else runs. */
static t2_status build_trie(t2_tokenizer *t) {
    size_t total = 1;
    for (size_t i = 0; i < t->n_added; i++) total += t->added[i].len;
    t->trie = malloc(total * sizeof *t->trie);
    if (!t->trie) return t2_set_error(T2_ERR_NOMEM, "tokenizer: out of memory");
    t->trie[0] = (tok_trie_node){-1, -1, -1, 0};
    t->n_trie = 1;
    for (size_t i = 0; i < t->n_added; i++) {
        const unsigned char *s = (const unsigned char *)t->strings.p + t->added[i].off;
        int32_t node = 0;
        t->trie_first[s[0] >> 3] |= (uint8_t)(1u << (s[0] & 7));
        for (uint32_t k = 0; k < t->added[i].len; k++) {
            int32_t c = t->trie[node].first_child;
            while (c >= 0 && t->trie[c].byte != s[k]) c = t->trie[c].next_sibling;
            if (c < 0) {
                c = (int32_t)t->n_trie++;
                t->trie[c] = (tok_trie_node){-1, t->trie[node].first_child, -1, s[k]};
                t->trie[node].first_child = c;
            }
            node = c;
        }
        t->trie[node].added = (int32_t)i;
    }
    return T2_OK;
}

/* A special-token name in tokenizer_config.json: a string, or an AddedToken object with "content". */
static char *config_token(json_t *cfg, const char *name) {
    json_t *v = json_object_get(cfg, name);
    if (json_is_object(v)) v = json_object_get(v, "content");
    return json_is_string(v) ? strdup(json_string_value(v)) : NULL;
}

static int32_t spell_id(const t2_tokenizer *t, const char *s) {
    return s ? tok_strmap_get(&t->spell_map, s, strlen(s)) : -1;
}

static t2_status load_config(t2_tokenizer *t, json_t *cfg) {
    t->clean_up = 1; /* the reference's default when the key is absent */
    if (!cfg) return T2_OK;
    t->bos_token = config_token(cfg, "bos_token");
    t->eos_token = config_token(cfg, "eos_token");
    t->unk_token = config_token(cfg, "unk_token");
    t->pad_token = config_token(cfg, "pad_token");
    json_t *cu = json_object_get(cfg, "clean_up_tokenization_spaces");
    if (json_is_boolean(cu)) t->clean_up = json_is_true(cu);
    t->remove_space = json_is_true(json_object_get(cfg, "remove_space"));
    json_t *ct = json_object_get(cfg, "chat_template");
    if (json_is_array(ct)) { /* [{name, template}, ...]: prefer "default" */
        json_t *pick = NULL, *e;
        size_t i;
        json_array_foreach(ct, i, e) {
            const char *nm = tok_json_str(e, "name");
            if (!pick || (nm && strcmp(nm, "default") == 0)) pick = e;
        }
        ct = pick ? json_object_get(pick, "template") : NULL;
    }
    if (json_is_string(ct)) t->chat_template = strdup(json_string_value(ct));
    /* additional_special_tokens count as special for skip_special_tokens. */
    json_t *extra = json_object_get(cfg, "additional_special_tokens"), *e;
    size_t i;
    json_array_foreach(extra, i, e) {
        const char *s = json_is_object(e) ? tok_json_str(e, "content") : json_string_value(e);
        int32_t id = spell_id(t, s);
        if (id >= 0) t->tok_flags[id] |= TOK_FLAG_SPECIAL;
    }
    return T2_OK;
}

t2_tokenizer *t2_tokenizer_load_files(const char *tokenizer_json_path, const char *config_path,
                                      t2_status *err) {
    t2_status st;
    json_t *cfg = NULL, *root = NULL;
    t2_tokenizer *t = NULL;
    if (!tokenizer_json_path) {
        st = t2_set_error(T2_ERR_INVALID_ARG, "t2_tokenizer_load: no path");
        goto fail;
    }
    root = load_json(tokenizer_json_path, 1, &st);
    if (!root) goto fail;
    if (config_path && !(cfg = load_json(config_path, 0, &st)) && st) goto fail;
    t = calloc(1, sizeof *t);
    if (!t) {
        st = t2_set_error(T2_ERR_NOMEM, "tokenizer: out of memory");
        goto fail;
    }
    t->bos_id = t->eos_id = t->eot_id = t->pad_id = t->unk_id = t->model_unk_id = -1;
    if ((st = tok_cache_init(&t->cache))) goto fail;
    /* Components first: they decide whether the vocabulary is byte-level. */
    if ((st = tok_load_components(t, root)) || (st = load_model(t, root)) || (st = build_trie(t)) ||
        (st = load_config(t, cfg)))
        goto fail;
    /* TemplateProcessing names its special tokens by string; resolve them now the vocab is known. */
    for (size_t i = 0; i < t->n_post_single; i++) {
        if (t->post_single[i] == -1) continue;
        /* -2 - k encodes "the k-th name in strings" (see tok_components.c) */
        size_t off = (size_t)(-(t->post_single[i] + 2));
        const char *name = t->strings.p + off;
        int32_t id = spell_id(t, name);
        if (id < 0) {
            st = t2_set_error(T2_ERR_FORMAT, "tokenizer.json: post_processor token \"%s\" not in vocab", name);
            goto fail;
        }
        t->post_single[i] = id;
    }
    t->bos_id = spell_id(t, t->bos_token);
    t->eos_id = spell_id(t, t->eos_token);
    t->pad_id = spell_id(t, t->pad_token ? t->pad_token : t->eos_token);
    t->unk_id = t->unk_token ? spell_id(t, t->unk_token) : t->model_unk_id;
    static const char *const eot_names[] = {"<|eot_id|>", "<|im_end|>", "<end_of_turn>", "<|end|>"};
    for (size_t i = 0; i < sizeof eot_names / sizeof *eot_names && t->eot_id < 0; i++)
        t->eot_id = spell_id(t, eot_names[i]);
    if (t->eot_id < 0) t->eot_id = t->eos_id;
    json_decref(root);
    json_decref(cfg);
    if (err) *err = T2_OK;
    return t;
fail:
    if (t && st != T2_ERR_NOMEM)
        t2_wrap_error(st, "%s: ", tokenizer_json_path ? tokenizer_json_path : "tokenizer");
    json_decref(root);
    json_decref(cfg);
    t2_tokenizer_free(t);
    if (err) *err = st;
    return NULL;
}

t2_tokenizer *t2_tokenizer_load(const char *model_dir, t2_status *err) {
    if (!model_dir) {
        t2_status st = t2_set_error(T2_ERR_INVALID_ARG, "t2_tokenizer_load: no model folder");
        if (err) *err = st;
        return NULL;
    }
    size_t n = strlen(model_dir) + 32;
    char *a = malloc(n), *b = malloc(n);
    t2_tokenizer *t = NULL;
    if (a && b) {
        snprintf(a, n, "%s/tokenizer.json", model_dir);
        snprintf(b, n, "%s/tokenizer_config.json", model_dir);
        t = t2_tokenizer_load_files(a, b, err);
    } else {
        t2_status st = t2_set_error(T2_ERR_NOMEM, "tokenizer: out of memory");
        if (err) *err = st;
    }
    free(a);
    free(b);
    return t;
}

static void free_components(t2_tokenizer *t) {
    for (size_t i = 0; i < t->n_norm; i++) {
        free(t->norm[i].a);
        free(t->norm[i].b);
        pcre2_code_free(t->norm[i].re);
    }
    for (size_t i = 0; i < t->n_pre; i++) {
        pcre2_code_free(t->pre[i].re);
        free(t->pre[i].repl);
    }
    for (size_t i = 0; i < t->n_dec; i++) {
        free(t->dec[i].a);
        free(t->dec[i].b);
    }
    free(t->norm);
    free(t->pre);
    free(t->dec);
    free(t->post_single);
}

void t2_tokenizer_free(t2_tokenizer *t) {
    if (!t) return;
    free_components(t);
    free(t->tok_off);
    free(t->tok_len);
    free(t->raw_off);
    free(t->raw_len);
    free(t->tok_flags);
    tb_free(&t->strings);
    tok_strmap_free(&t->model_map);
    tok_strmap_free(&t->spell_map);
    free(t->merges.slots);
    free(t->added);
    free(t->trie);
    free(t->bos_token);
    free(t->eos_token);
    free(t->unk_token);
    free(t->pad_token);
    free(t->chat_template);
    tok_cache_free(&t->cache);
    free(t);
}
