#!/usr/bin/python3
"""SVD cache build time: `t2 model svd` against numpy.linalg.svd and torch.linalg.svd, same matrices,
same run, same thread count.

  bench_svd.py [--model /tmp/t2-bench/llama1b-bf16] [--t2 build/clients/t2] [--threads 2]
               [--layers K] [--impl t2,numpy,torch] [--workdir /tmp/t2-bench/svd] [--json OUT]

The matrices are the MLP weights (gate, up, down: 8192×2048, 8192×2048, 2048×8192) of the
Llama-3.2-1B-shaped checkpoint that make_bench_model.py writes (--dtype bf16).  All 16 layers (48
matrices) by default; --layers K takes the first K layers only (a derived checkpoint with K layers
and the same shapes is written to the work folder, since `t2 model svd` always decomposes every
layer of the model it is given).

* t2: wall-clock of `t2 model svd --model M --modules mlp --cache FILE --rebuild`
  (a fresh cache, no partial build to resume): model load, fingerprint, per matrix LAPACKE sgesdd
  + rounding to the cache dtype + the reconstruction-error check + an atomic partial file, then the
  final atomic write.  Also reported: the sum of the per-matrix times it prints (decomposition,
  rounding, error check, partial write), so the fixed overhead is visible.
* numpy / torch: the sum over the same matrices (widened from BF16 to float32 exactly, outside the
  timed region) of numpy.linalg.svd(W, full_matrices=False) and torch.linalg.svd(W,
  full_matrices=False) on float32.  Their singular values are compared with those in t2's cache.

OPENBLAS_NUM_THREADS / OMP_NUM_THREADS / MKL_NUM_THREADS are set to --threads before numpy and
torch are imported, and torch.set_num_threads(--threads).  `t2 model svd` has no thread option: the
engine uses every online core, so --threads should equal the core count (a warning says otherwise).  Not a test: prints a table with the ratio
of each implementation's time to ours (> 1: slower than t2).
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time


def parse_args():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="/tmp/t2-bench/llama1b-bf16")
    ap.add_argument("--t2", default=os.path.join(here, "..", "build", "clients", "t2"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--layers", type=int, default=None, help="first K layers only (default: all)")
    ap.add_argument("--impl", default="t2,numpy,torch")
    ap.add_argument("--workdir", default="/tmp/t2-bench/svd")
    ap.add_argument("--json", default=None, help="also write the results here")
    return ap.parse_args()


A = parse_args()
for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = str(A.threads)

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "ref"))

import numpy as np  # noqa: E402
import torch  # noqa: E402

import t2ref  # noqa: E402

MLP = ("gate_proj", "up_proj", "down_proj")


def subset_model(src, dst, k):
    """A checkpoint with the first k layers of src (same tensors, same dtype), written once."""
    cfg = t2ref.load_config(src)
    if k >= cfg["num_hidden_layers"]:
        return src
    cfg = dict(cfg)
    cfg["num_hidden_layers"] = k
    done = os.path.join(dst, "config.json")
    if os.path.exists(done):
        with open(done) as f:
            if json.load(f) == cfg:
                return dst
    os.makedirs(dst, exist_ok=True)
    where = t2ref.checkpoint_files(src)
    files = {}
    entries = []
    dtype = None
    for name, path in where.items():
        if name.startswith("model.layers.") and int(name.split(".")[2]) >= k:
            continue
        f = files.setdefault(path, t2ref.SafetensorsFile(path))
        info = f.header[name]
        dtype = dtype or info["dtype"]
        if info["dtype"] != dtype:
            raise SystemExit("%s: mixed dtypes are not supported here" % src)
        entries.append(t2ref.TensorEntry(name, info["shape"], (lambda f=f, n=name: f.tensor(n, torch.float32))))
    t2ref.write_safetensors(os.path.join(dst, "model.safetensors"), entries, dtype)
    with open(done, "w") as fh:  # last: an interrupted write is never taken for complete
        json.dump(cfg, fh, indent=2)
    return dst


def matrix_names(model_dir):
    cfg = t2ref.load_config(model_dir)
    return ["model.layers.%d.mlp.%s" % (i, p) for i in range(cfg["num_hidden_layers"]) for p in MLP]


def load_matrix(model_dir, where, files, name):
    path = where[name + ".weight"]
    f = files.setdefault(path, t2ref.SafetensorsFile(path))
    return f.tensor(name + ".weight", torch.float32).contiguous()


def run_t2(model_dir, cache):
    for p in (cache, cache + ".partial"):
        if os.path.isdir(p):
            shutil.rmtree(p)
        elif os.path.exists(p):
            os.remove(p)
    # `t2 model svd` has no --threads: the engine sizes its pool and OpenBLAS to the online cores
    args = [os.path.abspath(A.t2), "model", "svd", "--model", model_dir, "--modules", "mlp", "--cache", cache,
            "--rebuild"]
    t0 = time.perf_counter()
    p = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        raise SystemExit("t2 model svd failed (%d): %s" % (p.returncode, p.stderr.strip()[-2000:]))
    per = [(m.group(1), float(m.group(2)), float(m.group(3)))
           for m in re.finditer(r"svd\s+\d+/\d+\s+(\S+)\s+([0-9.]+) s\s+rel\. error ([0-9.eE+-]+)", p.stderr)]
    return wall, per


def main():
    if not os.path.exists(os.path.join(A.model, "config.json")):
        raise SystemExit("%s: no checkpoint; write it with bench/make_bench_model.py --dtype bf16 --out %s"
                         % (A.model, A.model))
    impls = [x.strip() for x in A.impl.split(",") if x.strip()]
    os.makedirs(A.workdir, exist_ok=True)
    torch.set_num_threads(A.threads)
    model_dir = A.model
    if A.layers is not None:
        model_dir = subset_model(A.model, os.path.join(A.workdir, "model-%dlayers" % A.layers), A.layers)
    names = matrix_names(model_dir)
    where = t2ref.checkpoint_files(model_dir)
    files = {}
    shapes = sorted({tuple(load_matrix(model_dir, where, files, n).shape) for n in names[:3]})
    load = os.getloadavg()[0]
    print("matrices: %d MLP matrices of %s (%s), float32 SVD, %d threads; load average before: %.2f"
          % (len(names), model_dir, ", ".join("%dx%d" % s for s in shapes), A.threads, load), flush=True)
    if "t2" in impls and A.threads != os.cpu_count():
        print("warning: t2 model svd uses all %d cores, numpy and torch get --threads %d"
              % (os.cpu_count(), A.threads), flush=True)
    if load > 0.5:
        print("warning: the machine is not idle (load %.2f); timings will be pessimistic" % load, flush=True)

    results = {}
    cache_s = {}
    if "t2" in impls:
        cache = os.path.join(A.workdir, "svd-bench.safetensors")
        wall, per = run_t2(os.path.abspath(model_dir), cache)
        if len(per) != len(names):
            print("warning: parsed %d per-matrix lines from t2, expected %d" % (len(per), len(names)))
        results["t2"] = {"seconds": wall, "matrices": len(names), "per_matrix_sum": sum(s for _, s, _ in per),
                         "worst_rel_err": max((e for _, _, e in per), default=float("nan"))}
        print("t2      %7.1f s wall (%.1f s in the per-matrix steps), worst reconstruction error %.2e"
              % (wall, results["t2"]["per_matrix_sum"], results["t2"]["worst_rel_err"]), flush=True)
        cf = t2ref.SafetensorsFile(cache)
        cache_s = {n: cf.tensor(n + ".S", torch.float32).numpy().copy() for n in names}
        results["t2"]["cache_dtype"] = cf.metadata.get("dtype")
        del cf
        os.remove(cache)

    for impl in ("numpy", "torch"):
        if impl not in impls:
            continue
        total = 0.0
        worst_s = 0.0
        for n in names:
            w = load_matrix(model_dir, where, files, n)
            if impl == "numpy":
                a = w.numpy()
                t0 = time.perf_counter()
                _, s, _ = np.linalg.svd(a, full_matrices=False)
                total += time.perf_counter() - t0
            else:
                t0 = time.perf_counter()
                _, s, _ = torch.linalg.svd(w, full_matrices=False)
                total += time.perf_counter() - t0
                s = s.numpy()
            if n in cache_s:
                worst_s = max(worst_s, float(np.max(np.abs(s - cache_s[n])) / np.max(s)))
            del w
        results[impl] = {"seconds": total, "matrices": len(names)}
        if cache_s:
            results[impl]["max_rel_diff_singular_values_vs_t2"] = worst_s
        print("%-7s %7.1f s%s" % (impl, total, "  (singular values vs t2: max rel diff %.1e)" % worst_s
                                   if cache_s else ""), flush=True)

    ours = results.get("t2", {}).get("seconds")
    print()
    print("%-36s %8s %9s %11s %14s" % ("implementation", "matrices", "seconds", "s / matrix", "ratio vs ours"))
    labels = {"t2": "t2 model svd (ours, wall-clock)", "numpy": "numpy.linalg.svd (float32)",
              "torch": "torch.linalg.svd (float32)"}
    for impl in ("t2", "numpy", "torch"):
        if impl not in results:
            continue
        r = results[impl]
        ratio = "%.2fx" % (r["seconds"] / ours) if ours else "-"
        print("%-36s %8d %9.1f %11.2f %14s" % (labels[impl], r["matrices"], r["seconds"], r["seconds"] / r["matrices"],
                                               ratio))
    if "t2" in results:
        r = results["t2"]
        print("%-36s %8d %9.1f %11.2f %14s" % ("  of which per-matrix steps", r["matrices"], r["per_matrix_sum"],
                                               r["per_matrix_sum"] / r["matrices"],
                                               "%.2fx" % (r["per_matrix_sum"] / ours)))
    info = {"model": model_dir, "threads": A.threads, "shapes": [list(s) for s in shapes], "load_before": load,
            "torch": torch.__version__, "numpy": np.__version__, "results": results}
    if A.json:
        with open(A.json, "w") as f:
            json.dump(info, f, indent=2)
            f.write("\n")


if __name__ == "__main__":
    main()
