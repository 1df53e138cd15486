#!/usr/bin/python3
"""PyTorch side of the speed benchmark: prefill and greedy decode of a Llama-family checkpoint.

  torch_llama.py --model DIR [--threads 2] [--prompt 128] [--gen 32] [--reps 3]
                 [--dtype f32|bf16] [--seed S] [--json OUT]

Each repetition: prefill a random P-token prompt (logits for the last token only), then G greedy
decode steps of one token each with a preallocated KV cache.  One untimed warm-up repetition
first; reports the median over the repetitions of prefill tok/s (P / prefill time) and decode
tok/s (G / decode time).  --dtype bf16 keeps weights and activations in bfloat16 (norms and
softmax in f32, as Hugging Face does); f32 computes in float32.  The model code is the test
reference (tests/ref/t2ref.py).
"""

import argparse
import json
import os
import platform
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "ref"))

torch = t2ref = None  # imported in main(), after the BLAS thread count is in the environment


def load_model(model_dir, dtype):
    """Model with every weight in freshly allocated (aligned, resident) memory of `dtype`."""
    cfg = t2ref.load_config(model_dir)
    where = t2ref.checkpoint_files(model_dir)
    files = {}
    weights = {}
    for name, path in where.items():
        f = files.get(path) or files.setdefault(path, t2ref.SafetensorsFile(path))
        t = f.tensor(name, dtype)
        stored = f.header[name]["dtype"]
        same = (stored == "F32" and dtype == torch.float32) or (stored == "BF16" and dtype == torch.bfloat16)
        weights[name] = t.clone() if same else t  # clone: off the mmap; conversion already copied
    files.clear()
    return t2ref.Model(cfg, weights, dtype)


def one_run(model, cache, prompt, gen):
    cache.reset()
    t0 = time.perf_counter()
    logits = model.forward(prompt, cache, last_only=True)
    tok = int(torch.argmax(logits[0]))
    t1 = time.perf_counter()
    out = [tok]
    for _ in range(gen):
        logits = model.forward([tok], cache)
        tok = int(torch.argmax(logits[0]))
        out.append(tok)
    t2 = time.perf_counter()
    return t1 - t0, t2 - t1, out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prompt", type=int, default=128)
    ap.add_argument("--gen", type=int, default=32)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--dtype", default="f32", choices=["f32", "bf16"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None, help="also write the results here")
    a = ap.parse_args()
    if a.prompt < 1 or a.gen < 1 or a.reps < 1:
        ap.error("--prompt, --gen and --reps must be positive")

    # Debian's torch does single-row and f32 GEMMs in OpenBLAS, whose pthread pool is sized from
    # the environment when the library loads, not by torch.set_num_threads
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
        os.environ[var] = str(a.threads)
    global torch, t2ref
    try:
        import torch
        import t2ref
    except ImportError as e:
        print("torch_llama: PyTorch unavailable (%s); run with /usr/bin/python3" % e)
        sys.exit(77)
    torch.set_num_threads(a.threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass
    dtype = torch.float32 if a.dtype == "f32" else torch.bfloat16
    t0 = time.time()
    model = load_model(a.model, dtype)
    load_s = time.time() - t0
    g = torch.Generator().manual_seed(a.seed)
    prompt = torch.randint(0, model.V, (a.prompt,), generator=g)
    cache = model.new_cache(a.prompt + a.gen)

    with torch.inference_mode():
        one_run(model, cache, prompt, a.gen)  # warm-up: page faults, allocator, kernel selection
        pre, dec = [], []
        for _ in range(a.reps):
            p, d, out = one_run(model, cache, prompt, a.gen)
            pre.append(p)
            dec.append(d)
    prefill = a.prompt / statistics.median(pre)
    decode = a.gen / statistics.median(dec)
    print("torch %s %s threads=%d prompt=%d gen=%d reps=%d (load %.1fs)"
          % (torch.__version__, a.dtype, a.threads, a.prompt, a.gen, a.reps, load_s))
    print("prefill: %.1f tok/s" % prefill)
    print("decode:  %.2f tok/s" % decode)
    if a.json:
        res = {
            "engine": "torch", "torch_version": torch.__version__, "machine": platform.machine(),
            "model": os.path.abspath(a.model), "dtype": a.dtype, "threads": a.threads,
            "prompt": a.prompt, "gen": a.gen, "reps": a.reps,
            "prefill_tok_s": prefill, "decode_tok_s": decode,
            "prefill_s": pre, "decode_s": dec, "tokens": out,
        }
        with open(a.json, "w") as f:
            json.dump(res, f, indent=2)
            f.write("\n")


if __name__ == "__main__":
    main()
