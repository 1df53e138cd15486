#!/usr/bin/python3
"""bench_first_pass — what the prefix cache saves in the first pass of the prompt dispatch.

  bench_first_pass.py --t2 build/clients/t2 --t2d build/daemon/t2d --model DIR [--queries N] [--workdir DIR]

Starts t2d on MODEL twice — with the prefix cache (engine.prefix_slots = 4) and without (0) — registers
three experts (labels math, code, reasoning; random z), and sends the same N questions through
`t2 generate --dispatch prompt` one at a time. Prints the median first-pass and second-pass seconds of
each run and their ratio, measured in the same script. The SVD cache comes from $T2_CACHE_DIR (built on
the first start if missing). Not a test.
"""
import argparse
import json
import os
import shutil
import statistics
import struct
import subprocess
import sys
import time

import numpy as np

QUESTIONS = [
    "What is the sum of the first twenty odd numbers?",
    "Write a Python function that reverses a linked list.",
    "If all bloops are razzies and all razzies are lazzies, are all bloops lazzies?",
    "Solve for x: 3x + 7 = 22.",
    "Implement binary search in C.",
    "Which is heavier, a kilogram of feathers or a kilogram of iron?",
    "How many ways can 5 people sit in a row?",
    "Write a SQL query that counts orders per customer.",
]


def write_z(path, cfg, seed):
    r = min(cfg["hidden_size"], cfg["intermediate_size"])
    rng = np.random.default_rng(seed)
    header, blobs, off = {}, [], 0
    for layer in range(cfg["num_hidden_layers"]):
        for p in ("gate_proj", "up_proj", "down_proj"):
            b = (0.8 + 0.4 * rng.random(r)).astype(np.float32).tobytes()
            header[f"model.layers.{layer}.mlp.{p}.z"] = {"dtype": "F32", "shape": [r], "data_offsets": [off, off + len(b)]}
            off += len(b)
            blobs.append(b)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def run(a, slots, experts):
    state = os.path.join(a.workdir, f"state-{slots}")
    shutil.rmtree(state, ignore_errors=True)
    sock = os.path.join(a.workdir, f"t2d-{slots}.sock")
    env = dict(os.environ, T2_CONNECT="ipc://" + sock)
    d = subprocess.Popen([a.t2d, "--model", a.model, "--state-dir", state, "--listen", "ipc://" + sock, "--set",
                          f"engine.prefix_slots={slots}", "--set", "engine.n_ctx=1024", "--log-level", "warn"])
    try:
        for _ in range(600):
            if subprocess.run([a.t2, "ping", "--timeout", "1"], env=env, capture_output=True).returncode == 0:
                break
            time.sleep(0.5)
        for name, label, path in experts:
            subprocess.run([a.t2, "expert", "import", path, "--name", name, "--label", label], env=env, check=True,
                           capture_output=True)
        first, second, decisions = [], [], []
        for i in range(a.queries):
            q = QUESTIONS[i % len(QUESTIONS)]
            r = subprocess.run([a.t2, "generate", "--dispatch", "prompt", "--max-tokens", "1", "--json", q], env=env,
                               capture_output=True, text=True, check=True)
            g = json.loads(r.stdout.splitlines()[-1])
            first.append(g["first_pass_seconds"])
            second.append(g["second_pass_seconds"])
            decisions.append(json.loads(g["decision"]["detail"]).get("first_pass", ""))
        stats = json.loads(subprocess.run([a.t2, "stats", "--json"], env=env, capture_output=True, text=True).stdout)
        return first, second, decisions, stats
    finally:
        d.terminate()
        d.wait()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--t2", required=True)
    ap.add_argument("--t2d", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--queries", type=int, default=8)
    ap.add_argument("--workdir", default="/tmp/t2-bench/first-pass")
    a = ap.parse_args()
    os.makedirs(a.workdir, exist_ok=True)
    cfg = json.load(open(os.path.join(a.model, "config.json")))
    experts = []
    for k, (name, label) in enumerate((("m", "math"), ("c", "code"), ("r", "reasoning"))):
        z, e = os.path.join(a.workdir, f"z-{name}.safetensors"), os.path.join(a.workdir, f"{name}.safetensors")
        if not os.path.exists(e):
            write_z(z, cfg, k)
            subprocess.run([a.t2, "model", "expert", "new", "--model", a.model, "--from", z, "--out", e, "--label", label],
                           check=True, capture_output=True)
        experts.append((name, label, e))
    res = {}
    for slots in (4, 0):
        res[slots] = run(a, slots, experts)
    f4, s4, d4, st4 = res[4]
    f0, s0, d0, st0 = res[0]
    same = sum(x == y for x, y in zip(d4, d0))
    print(f"model {a.model}, {a.queries} prompt-dispatch queries, 1 answer token each")
    print(f"{'':24s}{'first pass med s':>18s}{'second pass med s':>19s}")
    print(f"{'prefix cache (4 slots)':24s}{statistics.median(f4):18.3f}{statistics.median(s4):19.3f}"
          f"   hits {st4.get('prefix_hits', 0)}, reused tokens {st4.get('prefix_tokens_reused', 0)}")
    print(f"{'no prefix cache':24s}{statistics.median(f0):18.3f}{statistics.median(s0):19.3f}")
    print(f"first pass with the cache: {statistics.median(f0) / statistics.median(f4):.2f}x faster; "
          f"first-pass answers identical in {same} of {a.queries}")


if __name__ == "__main__":
    sys.exit(main())
