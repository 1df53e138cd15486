#!/usr/bin/python3
"""Tests for recipe/tokenizer.py (byte-level BPE training into Hugging Face tokenizer files).

Trains on a small built-in corpus in a temporary folder and checks: byte-identical output for the same
input (also with the lines in another order), the vocabulary size, that no merge involves a digit,
that merges stay inside pre-tokens, the special tokens placed after the BPE vocabulary, the
tokenizer_config.json fields; and, when the C client is built, that our C tokenizer loads the files,
gives the same ids as a small reference BPE encoder written here, and decodes them back to the text.

  python3 tests/recipe/test_tokenizer.py [-v]
The client is found at $T2_BIN, else build/clients/t2 under the repository root; without it those
checks are skipped.
"""
import importlib.util
import json
import os
import random
import subprocess
import sys
import tempfile
import unittest

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
SCRIPT = os.path.join(ROOT, "recipe", "tokenizer.py")
T2 = os.environ.get("T2_BIN") or os.path.join(ROOT, "build", "clients", "t2")
SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
VOCAB = 400

_spec = importlib.util.spec_from_file_location("recipe_tokenizer", SCRIPT)
rt = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(rt)


def corpus_lines(seed=7, n=300):
    """A small deterministic corpus: arithmetic word problems, Python snippets, multiple choice."""
    rng = random.Random(seed)
    names = ["Ava", "Ben", "Chloe", "Dan", "Ema"]
    things = ["apples", "books", "coins", "stamps"]
    out = []
    for i in range(n):
        k = i % 3
        if k == 0:
            who, what = rng.choice(names), rng.choice(things)
            a, b = rng.randint(10, 9999), rng.randint(2, 99)
            out.append({"system": "You are a math tutor. Think step by step.",
                        "prompt": f"{who} has {a} {what} and gets {b} more. How many {what} does {who} have?",
                        "solution": f"{who} has {a} + {b} = {a + b} {what}.\n#### {a + b}",
                        "meta": "zzzzqqqq " * 20})
        elif k == 1:
            fn, m = rng.choice(["total", "double", "count_even"]), rng.randint(1, 50)
            out.append({"system": "You write Python functions.",
                        "prompt": f"Write a function {fn}(xs) that returns the result.\nassert {fn}([{m}, 2]) == {m * 2}",
                        "solution": f"def {fn}(xs):\n    result = 0\n    for x in xs:\n        result += x * {m}\n"
                                    f"    return result\n",
                        "id": i})
        else:
            q = rng.choice(["Which planet is the largest?", "What do plants need to grow?", "What is 12 + 30?"])
            opts = "\n".join(f"{l}. {rng.choice(['Jupiter', 'sunlight', '42', 'Mars', 'water'])}" for l in "ABCD")
            out.append({"system": "Answer with the letter of the correct option.", "prompt": f"{q}\n{opts}",
                        "solution": f"The answer is {rng.choice('ABCD')}.", "answer": None})
    return out


def write_jsonl(path, rows):
    with open(path, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")


def train(out_dir, corpus_paths, vocab=VOCAB):
    subprocess.run([sys.executable, SCRIPT, "--quiet", "--out", out_dir, "--vocab", str(vocab)] + list(corpus_paths),
                   check=True)
    with open(os.path.join(out_dir, "tokenizer.json"), encoding="utf-8") as f:
        tj = json.load(f)
    with open(os.path.join(out_dir, "tokenizer_config.json"), encoding="utf-8") as f:
        cfg = json.load(f)
    return tj, cfg


def read_bytes(path):
    with open(path, "rb") as f:
        return f.read()


class Reference:
    """A plain byte-level BPE encoder over a tokenizer.json: split with the pre-tokenizer regex, then in
    each pre-token merge the lowest-ranked adjacent pair (leftmost first) until none applies."""

    def __init__(self, tj):
        self.bc = rt.byte_chars()
        self.rx = rt.split_regex()
        self.vocab = tj["model"]["vocab"]
        self.rank = {tuple(m.split(" ")): r for r, m in enumerate(tj["model"]["merges"])}

    def encode(self, text):
        ids = []
        for piece in self.rx.findall(text):
            syms = [self.bc[b] for b in piece.encode("utf-8")]
            while len(syms) > 1:
                best = None
                for i in range(len(syms) - 1):
                    r = self.rank.get((syms[i], syms[i + 1]))
                    if r is not None and (best is None or r < best[0]):
                        best = (r, i)
                if best is None:
                    break
                i = best[1]
                syms[i:i + 2] = [syms[i] + syms[i + 1]]
            ids.extend(self.vocab[s] for s in syms)
        return ids


class TokenizerTrainingTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        d = cls.tmp.name
        rows = corpus_lines()
        cls.corpus = os.path.join(d, "a.jsonl")
        write_jsonl(cls.corpus, rows)
        shuffled = rows[:]
        random.Random(3).shuffle(shuffled)
        cls.corpus_shuffled = [os.path.join(d, "b1.jsonl"), os.path.join(d, "b2.jsonl")]
        write_jsonl(cls.corpus_shuffled[0], shuffled[:120])
        write_jsonl(cls.corpus_shuffled[1], shuffled[120:])
        cls.out = os.path.join(d, "tok")
        cls.tj, cls.cfg = train(cls.out, [cls.corpus])
        cls.bc = rt.byte_chars()
        cls.unbc = {c: b for b, c in cls.bc.items()}

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def token_bytes(self, s):
        return bytes(self.unbc[c] for c in s)

    def test_deterministic(self):
        again = os.path.join(self.tmp.name, "again")
        train(again, [self.corpus])
        shuffled = os.path.join(self.tmp.name, "shuffled")
        train(shuffled, self.corpus_shuffled)
        for name in ("tokenizer.json", "tokenizer_config.json"):
            want = read_bytes(os.path.join(self.out, name))
            self.assertEqual(read_bytes(os.path.join(again, name)), want, name)
            self.assertEqual(read_bytes(os.path.join(shuffled, name)), want, name + " (lines in another order)")

    def test_vocab_size_and_bytes(self):
        vocab = self.tj["model"]["vocab"]
        self.assertEqual(len(vocab), VOCAB)
        self.assertEqual(sorted(vocab.values()), list(range(VOCAB)))
        for b in range(256):
            self.assertEqual(vocab[self.bc[b]], b)
        merges = self.tj["model"]["merges"]
        self.assertGreaterEqual(len(merges), VOCAB - 256)
        for m in merges:
            a, b = m.split(" ")
            self.assertIn(a, vocab)
            self.assertIn(b, vocab)
            self.assertIn(a + b, vocab)

    def test_no_digit_merges(self):
        for m in self.tj["model"]["merges"]:
            for side in m.split(" "):
                self.assertFalse(any(48 <= x <= 57 for x in self.token_bytes(side)), m)
        for s, i in self.tj["model"]["vocab"].items():
            if i >= 256:
                self.assertFalse(any(48 <= x <= 57 for x in self.token_bytes(s)), s)

    def test_merges_stay_inside_pretokens(self):
        rx = rt.split_regex()
        for s, i in self.tj["model"]["vocab"].items():
            if i >= 256:
                text = self.token_bytes(s).decode("utf-8", "replace")
                self.assertEqual(rx.findall(text), [text], s)

    def test_other_fields_ignored(self):
        for s in self.tj["model"]["vocab"]:
            self.assertNotIn("zz", s)
            self.assertNotIn("qq", s)

    def test_specials_after_bpe_vocab(self):
        added = self.tj["added_tokens"]
        self.assertEqual([a["content"] for a in added], SPECIALS)
        self.assertEqual([a["id"] for a in added], list(range(VOCAB, VOCAB + len(SPECIALS))))
        self.assertTrue(all(a["special"] for a in added))
        pp = self.tj["post_processor"]
        self.assertEqual(pp["type"], "TemplateProcessing")
        self.assertEqual(pp["special_tokens"]["<|begin_of_text|>"]["ids"], [VOCAB])
        self.assertEqual(self.tj["pre_tokenizer"]["type"], "ByteLevel")
        self.assertEqual(self.tj["decoder"]["type"], "ByteLevel")
        self.assertEqual(self.tj["model"]["type"], "BPE")
        self.assertEqual(self.cfg["bos_token"], "<|begin_of_text|>")
        self.assertEqual(self.cfg["eos_token"], "<|eot_id|>")
        self.assertIn("<|start_header_id|>", self.cfg["chat_template"])

    def test_split_regex(self):
        rx = rt.split_regex()
        self.assertEqual(rx.findall("I'll pay $12.50 now,  ok?\n\n  x"),
                         ["I", "'ll", " pay", " $", "12", ".", "50", " now", ",", " ", " ok", "?", "\n\n ", " x"])
        # The fast ASCII-only pattern splits ASCII text exactly as the full one does.
        fast = rt.ascii_split_regex()
        every = "".join(chr(c) for c in range(128))
        rng = random.Random(5)
        samples = [every, every[::-1]] + ["".join(rng.choice(every + "  aa11''sltvmrd\n") for _ in range(200))
                                          for _ in range(200)]
        samples += [r[f] for r in corpus_lines(n=30) for f in ("prompt", "solution")]
        for s in samples:
            self.assertEqual(fast.findall(s), rx.findall(s), repr(s))

    def test_digits_only_corpus_stops_early(self):
        d = os.path.join(self.tmp.name, "digits")
        os.makedirs(d, exist_ok=True)
        p = os.path.join(d, "c.jsonl")
        write_jsonl(p, [{"system": "", "prompt": "12 345 6789", "solution": "0 1 22"}] * 5)
        tj, _ = train(os.path.join(d, "out"), [p], vocab=300)
        self.assertEqual(len(tj["model"]["vocab"]), 256)
        self.assertEqual(tj["model"]["merges"], [])
        self.assertEqual(tj["added_tokens"][0]["id"], 256)


@unittest.skipUnless(os.access(T2, os.X_OK), f"{T2} not built")
class CTokenizerTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        corpus = os.path.join(cls.tmp.name, "c.jsonl")
        cls.rows = corpus_lines()
        write_jsonl(corpus, cls.rows)
        cls.dir = os.path.join(cls.tmp.name, "tok")
        cls.tj, _ = train(cls.dir, [corpus])
        cls.ref = Reference(cls.tj)

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def t2(self, args, data):
        r = subprocess.run([T2, "model"] + args + ["--model", self.dir], input=data, capture_output=True)
        self.assertEqual(r.returncode, 0, r.stderr.decode(errors="replace"))
        return r

    def tokenize(self, text, special=False):
        r = self.t2(["tokenize"] + ([] if special else ["--no-special"]), text.encode("utf-8"))
        return [int(x) for x in r.stdout.split()]

    def detokenize(self, ids):
        return self.t2(["detokenize", "--no-cleanup"], " ".join(map(str, ids)).encode()).stdout.decode("utf-8")

    def test_round_trip_and_reference_ids(self):
        texts = [r[f] for r in self.rows[:30] for f in ("system", "prompt", "solution")]
        texts += ["", "  leading and trailing  ", "caf\u00e9 \u6570\u5b66 \U0001f642", "x\t=\t[1,2]\r\n"]
        for text in texts:
            ids = self.tokenize(text)
            self.assertEqual(ids, self.ref.encode(text), text)
            self.assertEqual(self.detokenize(ids), text)

    def test_digits_are_single_tokens(self):
        bc = rt.byte_chars()
        vocab = self.tj["model"]["vocab"]
        self.assertEqual(self.tokenize("9876543210"), [vocab[bc[b]] for b in b"9876543210"])
        ids = self.tokenize("has 123 and 45")
        self.assertEqual(sum(1 for i in ids if 48 <= i <= 57), 5)

    def test_specials(self):
        v = len(self.tj["model"]["vocab"])
        self.assertEqual(self.tokenize("hello", special=True)[0], v)
        self.assertEqual(self.tokenize("<|eot_id|>"), [v + 4])
        r = self.t2(["chat", "--user", "What is 2+3?"], b"")
        self.assertIn(f"stop: <|eot_id|> (id {v + 4})", r.stderr.decode())
        self.assertEqual(r.stdout.decode(), "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nWhat is 2+3?"
                                            "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n")


if __name__ == "__main__":
    unittest.main()
