#!/usr/bin/python3
"""Write a small random Hugging Face style checkpoint for one model family.

  make_checkpoint.py --family llama3|llama2|mistral|qwen2 --dtype f32|bf16|f16 --out DIR
                     [--shards N] [--seed S] [--vocab V] [--hidden H] [--layers L] [--heads NH]
                     [--kv-heads NKV] [--head-dim HD] [--ffn F] [--max-pos P]
                     [--sliding-window W] [--tie | --no-tie] [--rope-theta T]

Defaults: vocab 256, hidden 64, 2 layers, 4 heads, 2 kv heads (llama2: MHA), ffn 160,
max_position_embeddings 256; llama3 has an explicit head_dim of 32 and llama3 rope scaling,
mistral a sliding window of 16, qwen2 q/k/v biases and tied embeddings.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import t2ref  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--family", required=True, choices=sorted(t2ref.FAMILY_DEFAULTS))
    ap.add_argument("--dtype", default="f32", choices=["f32", "bf16", "f16"])
    ap.add_argument("--out", required=True)
    ap.add_argument("--shards", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--vocab", type=int, default=256)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--kv-heads", type=int, default=None)
    ap.add_argument("--head-dim", type=int, default=None)
    ap.add_argument("--ffn", type=int, default=160)
    ap.add_argument("--max-pos", type=int, default=256)
    ap.add_argument("--sliding-window", type=int, default=None)
    ap.add_argument("--rope-theta", type=float, default=None)
    tie = ap.add_mutually_exclusive_group()
    tie.add_argument("--tie", dest="tie", action="store_true", default=None)
    tie.add_argument("--no-tie", dest="tie", action="store_false")
    a = ap.parse_args()

    cfg = t2ref.make_config(
        a.family, a.dtype, vocab_size=a.vocab, hidden_size=a.hidden, num_hidden_layers=a.layers,
        num_attention_heads=a.heads, num_key_value_heads=a.kv_heads, head_dim=a.head_dim,
        intermediate_size=a.ffn, max_position_embeddings=a.max_pos,
        sliding_window=a.sliding_window, rope_theta=a.rope_theta, tie_word_embeddings=a.tie)
    files = t2ref.write_checkpoint(a.out, cfg, a.dtype, seed=a.seed, shards=a.shards)
    for f in files:
        print(f)


if __name__ == "__main__":
    main()
