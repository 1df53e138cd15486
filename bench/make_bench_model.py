#!/usr/bin/python3
"""Write a random checkpoint shaped like Llama-3.2-1B, for the speed benchmark.

  make_bench_model.py --dtype f32|bf16 --out DIR [--seed S] [--force]

hidden 2048, 16 layers, 32 heads, 8 kv heads, head_dim 64, ffn 8192, vocab 128256, tied embeddings,
rope_theta 500000 with llama3 rope scaling (factor 32, low 1, high 4, original 8192), eps 1e-5.
About 1.24 G parameters: 4.9 GB as f32, 2.5 GB as bf16.  Tensors are generated and written one
row block at a time.  Does nothing when DIR already holds the same config.json and a complete
model.safetensors (use --force to rewrite).
"""

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "ref"))

import t2ref  # noqa: E402


def bench_config(dtype):
    return t2ref.make_config(
        "llama3", dtype,
        vocab_size=128256, hidden_size=2048, num_hidden_layers=16, num_attention_heads=32,
        num_key_value_heads=8, head_dim=64, intermediate_size=8192, max_position_embeddings=131072,
        rope_theta=500000.0, rms_norm_eps=1e-5, tie_word_embeddings=True,
        rope_scaling={"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0,
                      "high_freq_factor": 4.0, "original_max_position_embeddings": 8192},
        bos_token_id=128000, eos_token_id=128001)


def is_complete(out_dir, cfg, dtype):
    """True when out_dir has exactly this config and a model.safetensors with every tensor of it."""
    cpath = os.path.join(out_dir, "config.json")
    mpath = os.path.join(out_dir, "model.safetensors")
    if not (os.path.exists(cpath) and os.path.exists(mpath)):
        return False
    try:
        with open(cpath) as f:
            if json.load(f) != cfg:
                return False
        header, _, start = t2ref.read_safetensors_header(mpath)
    except (OSError, ValueError):
        return False
    st = t2ref.st_dtype(dtype)
    end = 0
    for name, shape, _ in t2ref.tensor_plan(cfg):
        info = header.get(name)
        if info is None or info["dtype"] != st or info["shape"] != shape:
            return False
        end = max(end, info["data_offsets"][1])
    return os.path.getsize(mpath) == start + end


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dtype", default="bf16", choices=["f32", "bf16"])
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--force", action="store_true")
    a = ap.parse_args()

    cfg = bench_config(a.dtype)
    if not a.force and is_complete(a.out, cfg, a.dtype):
        print("%s: already complete, skipping" % a.out)
        return
    # config.json is written last by write_checkpoint, so an interrupted run is never "complete"
    cpath = os.path.join(a.out, "config.json")
    if os.path.exists(cpath):
        os.remove(cpath)
    t0 = time.time()
    files = t2ref.write_checkpoint(a.out, cfg, a.dtype, seed=a.seed, chunk_rows=4096,
                                   metadata={"purpose": "t2 benchmark, random weights"})
    size = sum(os.path.getsize(f) for f in files)
    print("%s: wrote %.2f GB in %.0fs" % (a.out, size / 1e9, time.time() - t0))


if __name__ == "__main__":
    main()
