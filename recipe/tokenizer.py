#!/usr/bin/python3
"""Train a small byte-level BPE tokenizer on a JSONL corpus and write it in Hugging Face form.

  tokenizer.py --out DIR [--vocab 1024] [--model-max-length N] CORPUS.jsonl [CORPUS2.jsonl ...]

Every corpus line is a JSON object; its string fields "system", "prompt" and "solution" are the
training texts (other fields are ignored, missing or non-string ones skipped). Writes
DIR/tokenizer.json and DIR/tokenizer_config.json in the form tests/integration/make_model.py uses:

  - a ByteLevel pre-tokenizer (GPT-2 split regex) and ByteLevel decoder;
  - a BPE model whose ids 0..255 are the 256 bytes (byte b has id b, spelled in GPT-2's printable
    byte alphabet), then the learned merges' tokens, --vocab BPE tokens in all;
  - Llama 3's special tokens <|begin_of_text|> <|end_of_text|> <|start_header_id|> <|end_header_id|>
    <|eot_id|> as added tokens with the ids right after the BPE vocabulary;
  - a post-processor that puts BOS first, Llama 3's chat template, bos_token <|begin_of_text|> and
    eos_token <|eot_id|> (the end of an assistant turn, as in Llama 3 instruct).

Training is classic BPE: the text is split into pre-tokens exactly as the pre-tokenizer will split
it at run time (so a merge never crosses a pre-token boundary), and the most frequent adjacent pair
is merged, again and again. Pairs with a digit on either side are never merged, so every number is
one token per digit. Equal counts are broken by the pair's bytes (left token's bytes, then right
token's, smallest first), so the output is byte-identical for the same input.
"""
import argparse
import functools
import heapq
import json
import os
import re
import sys
import time
import unicodedata
from collections import Counter

SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
FIELDS = ("system", "prompt", "solution")

LLAMA3_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' "
    "+ message['content'] | trim + '<|eot_id|>' }}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}"
)

DIGIT_BYTES = frozenset(range(ord("0"), ord("9") + 1))


def byte_chars():
    """GPT-2's reversible byte -> printable character map used by ByteLevel pre-tokenizers: printable
    Latin-1 bytes stand for themselves, the other 68 bytes get U+0100 onwards in byte order."""
    keep = set(range(0x21, 0x7F)) | set(range(0xA1, 0xAD)) | set(range(0xAE, 0x100))
    out, extra = {}, 0
    for b in range(256):
        if b in keep:
            out[b] = chr(b)
        else:
            out[b] = chr(0x100 + extra)
            extra += 1
    return out


def _class_of(pred):
    """A regex character class body (no brackets) for all code points where pred(category) holds."""
    ranges, start, prev = [], None, None
    for cp in range(0x110000):
        if 0xD800 <= cp <= 0xDFFF:
            ok = False
        else:
            ok = pred(unicodedata.category(chr(cp)))
        if ok:
            if start is None:
                start = cp
            prev = cp
        elif start is not None:
            ranges.append((start, prev))
            start = None
    if start is not None:
        ranges.append((start, prev))
    esc = lambda c: "\\U%08x" % c  # noqa: E731
    return "".join(esc(a) if a == b else esc(a) + "-" + esc(b) for a, b in ranges)


_SPACE = "\\t\\n\\x0b\\x0c\\r \\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000\\ufeff"
_ASCII_SPACE = "\\t\\n\\x0b\\x0c\\r "


def _split_pattern(space, letters, numbers):
    return (f"'s|'t|'re|'ve|'m|'ll|'d| ?[{letters}]+| ?[{numbers}]+| ?[^{space}{letters}{numbers}]+"
            f"|[{space}]+(?![^{space}])|[{space}]+")


@functools.lru_cache(maxsize=None)
def split_regex():
    """The ByteLevel pre-tokenizer's split pattern
        's|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+
    in Python's re: \\p{L}/\\p{N} become classes built from the Unicode database, \\s the white space
    JavaScript's \\s (and so our C tokenizer's PCRE2 set-up) matches."""
    return re.compile(_split_pattern(_SPACE, _class_of(lambda c: c[0] == "L"), _class_of(lambda c: c[0] == "N")))


@functools.lru_cache(maxsize=None)
def ascii_split_regex():
    """The same split for ASCII-only text (where it gives exactly what split_regex() gives), ~8x faster."""
    return re.compile(_split_pattern(_ASCII_SPACE, "A-Za-z", "0-9"))


def read_texts(paths):
    """Yield the training texts of the corpus files, in file and line order."""
    for path in paths:
        with open(path, encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as e:
                    raise SystemExit(f"{path}:{lineno}: not JSON: {e}")
                if not isinstance(obj, dict):
                    continue
                for k in FIELDS:
                    v = obj.get(k)
                    if isinstance(v, str) and v:
                        yield v


def to_utf8(s):
    """UTF-8 bytes of s; lone surrogates (possible in JSON) become U+FFFD as the C tokenizer reads them."""
    try:
        return s.encode("utf-8")
    except UnicodeEncodeError:
        return s.encode("utf-8", "surrogatepass").decode("utf-8", "replace").encode("utf-8")


def count_pretokens(texts):
    """Frequency of each pre-token (as UTF-8 bytes) and the number of texts and bytes seen."""
    rx_ascii = ascii_split_regex()
    counts = Counter()
    n_texts = n_bytes = 0
    for t in texts:
        n_texts += 1
        if t.isascii():
            n_bytes += len(t)
            counts.update(rx_ascii.findall(t))
        else:
            n_bytes += len(to_utf8(t))
            counts.update(split_regex().findall(t))
    words = Counter()
    for w, c in counts.items():
        words[to_utf8(w)] += c
    return words, n_texts, n_bytes


def train(words, vocab_size, log=None):
    """Learn merges over {pre-token bytes: frequency}. Returns (token bytes by id, merges as id pairs).

    Pair counts are kept over unique pre-tokens weighted by frequency and updated incrementally: a
    merge rewrites only the words that contain its pair. The best pair comes from a heap of
    (-count, left bytes, right bytes) with stale entries skipped when popped."""
    if vocab_size < 256:
        raise SystemExit("--vocab must be at least 256 (the byte tokens)")
    tokens = [bytes([b]) for b in range(256)]
    token_id = {t: i for i, t in enumerate(tokens)}
    order = sorted(words)
    seqs = [list(w) for w in order]
    freqs = [words[w] for w in order]

    pair_count = {}
    where = {}
    for wi, seq in enumerate(seqs):
        f = freqs[wi]
        for a, b in zip(seq, seq[1:]):
            if a in DIGIT_BYTES or b in DIGIT_BYTES:
                continue
            p = (a, b)
            pair_count[p] = pair_count.get(p, 0) + f
            s = where.get(p)
            if s is None:
                where[p] = {wi}
            else:
                s.add(wi)

    heap = [(-c, tokens[a], tokens[b], a, b) for (a, b), c in pair_count.items()]
    heapq.heapify(heap)
    merges = []
    t0 = time.time()
    while len(tokens) < vocab_size:
        best = None
        while heap:
            negc, _, _, a, b = heapq.heappop(heap)
            if pair_count.get((a, b), 0) == -negc and negc < 0:
                best = (a, b)
                break
        if best is None:
            if log:
                log(f"tokenizer: no pair left to merge; vocabulary stops at {len(tokens)}")
            break
        a, b = best
        new_bytes = tokens[a] + tokens[b]
        c = token_id.get(new_bytes)
        if c is None:  # a token the merges already made another way keeps its id
            c = len(tokens)
            tokens.append(new_bytes)
            token_id[new_bytes] = c
        merges.append((a, b))
        changed = set()
        for wi in sorted(where.pop(best)):
            seq = seqs[wi]
            n = len(seq)
            i = 0
            new = []
            hit = False
            while i < n:
                if i + 1 < n and seq[i] == a and seq[i + 1] == b:
                    new.append(c)
                    i += 2
                    hit = True
                else:
                    new.append(seq[i])
                    i += 1
            if not hit:
                continue
            f = freqs[wi]
            for x, y in zip(seq, seq[1:]):
                if x in DIGIT_BYTES or y in DIGIT_BYTES:
                    continue
                p = (x, y)
                pair_count[p] -= f
                changed.add(p)
            for x, y in zip(new, new[1:]):
                if x in DIGIT_BYTES or y in DIGIT_BYTES:
                    continue
                p = (x, y)
                pair_count[p] = pair_count.get(p, 0) + f
                changed.add(p)
                s = where.get(p)
                if s is None:
                    where[p] = {wi}
                else:
                    s.add(wi)
            seqs[wi] = new
        pair_count.pop(best, None)
        changed.discard(best)
        for p in changed:
            cnt = pair_count[p]
            if cnt > 0:
                heapq.heappush(heap, (-cnt, tokens[p[0]], tokens[p[1]], p[0], p[1]))
            else:
                del pair_count[p]
                where.pop(p, None)
        if log and len(merges) % 256 == 0:
            log(f"tokenizer: {len(merges)} merges, vocabulary {len(tokens)}, {time.time() - t0:.1f}s")
    return tokens, merges


def tokenizer_json(tokens, merges):
    bc = byte_chars()
    spell = ["".join(bc[x] for x in t) for t in tokens]
    n = len(tokens)
    bos = n + SPECIALS.index("<|begin_of_text|>")
    added = [{"id": n + i, "content": s, "single_word": False, "lstrip": False, "rstrip": False,
              "normalized": False, "special": True} for i, s in enumerate(SPECIALS)]
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": None,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 0}},
                       {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 0}},
                     {"Sequence": {"id": "A", "type_id": 0}},
                     {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {"<|begin_of_text|>": {"id": "<|begin_of_text|>", "ids": [bos],
                                                     "tokens": ["<|begin_of_text|>"]}},
        },
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                  "vocab": {s: i for i, s in enumerate(spell)},
                  "merges": [spell[a] + " " + spell[b] for a, b in merges]},
    }


def tokenizer_config(max_len):
    return {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>", "chat_template": LLAMA3_TEMPLATE,
            "clean_up_tokenization_spaces": False, "model_max_length": max_len}


def write_json(path, obj, indent=None):
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, ensure_ascii=False, indent=indent)
        f.write("\n")
    os.replace(tmp, path)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="output folder (created if missing)")
    ap.add_argument("--vocab", type=int, default=1024, help="BPE tokens in all, bytes included (specials come after)")
    ap.add_argument("--model-max-length", type=int, default=2048, help="model_max_length in tokenizer_config.json")
    ap.add_argument("--quiet", action="store_true")
    ap.add_argument("corpus", nargs="+", help="JSONL files with system/prompt/solution fields")
    a = ap.parse_args(argv)
    log = None if a.quiet else (lambda m: print(m, file=sys.stderr, flush=True))
    t0 = time.time()
    words, n_texts, n_bytes = count_pretokens(read_texts(a.corpus))
    if log:
        log(f"tokenizer: {n_texts} texts, {n_bytes} bytes, {len(words)} distinct pre-tokens "
            f"({time.time() - t0:.1f}s)")
    tokens, merges = train(words, a.vocab, log)
    os.makedirs(a.out, exist_ok=True)
    write_json(os.path.join(a.out, "tokenizer.json"), tokenizer_json(tokens, merges))
    write_json(os.path.join(a.out, "tokenizer_config.json"), tokenizer_config(a.model_max_length), indent=1)
    if log:
        log(f"tokenizer: {len(tokens)} BPE tokens ({len(merges)} merges) + {len(SPECIALS)} specials "
            f"-> {a.out} ({time.time() - t0:.1f}s)")


if __name__ == "__main__":
    main()
