#!/usr/bin/python3
"""Write a tiny random Llama-3-style model folder that t2d can serve: weights and config.json (by
tests/ref/make_checkpoint.py) plus a byte-level BPE tokenizer.json (256 byte tokens, no merges, Llama 3's
special tokens) and a tokenizer_config.json whose chat template is Llama 3's, so chat prompts, end of
turn and streaming behave as with a real model.

  make_model.py --out DIR [--seed S] [--layers L] [--hidden H] [--ffn F] [--max-pos P]
"""
import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "recipe"))
import tokenizer as bpe  # noqa: E402  (recipe/tokenizer.py: the same files with learned merges)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--ffn", type=int, default=160)
    ap.add_argument("--max-pos", type=int, default=1024)
    a = ap.parse_args()
    mk = os.path.join(HERE, "..", "ref", "make_checkpoint.py")
    subprocess.run([sys.executable, mk, "--family", "llama3", "--out", a.out, "--seed", str(a.seed), "--vocab", "264",
                    "--layers", str(a.layers), "--hidden", str(a.hidden), "--ffn", str(a.ffn), "--max-pos", str(a.max_pos)],
                   check=True)
    cfg_path = os.path.join(a.out, "config.json")
    with open(cfg_path) as f:
        cfg = json.load(f)
    cfg["bos_token_id"] = 256
    cfg["eos_token_id"] = [257, 260]
    with open(cfg_path, "w") as f:
        json.dump(cfg, f, indent=1)
    # no merges: the 256 byte tokens, then the specials (ids 256..260)
    bpe.write_json(os.path.join(a.out, "tokenizer.json"), bpe.tokenizer_json([bytes([b]) for b in range(256)], []))
    bpe.write_json(os.path.join(a.out, "tokenizer_config.json"), bpe.tokenizer_config(a.max_pos), indent=1)


if __name__ == "__main__":
    main()
