#!/usr/bin/python3
"""Check the T2 engine (`t2 model ...`) against the PyTorch reference in t2ref.py.

  check_vs_torch.py --t2 PATH_TO_T2_BINARY --workdir DIR [--only SUBSTR] [--timeout S] [-v]

Writes small random checkpoints into DIR (one per model family / dtype / layout), then for a few
random token sequences of lengths 1, 7 and 40 (40 > the mistral sliding window of 16):

 1. logits:   `t2 model logits --model M --ids a,b,c --out X.npy` must give float32 [n, vocab]
              with max|t2 - ref| <= 1e-4 * max|ref|.  BF16/F16 checkpoints are compared with the
              reference computed in float32 from the same rounded weights, so the same bound holds.
 2. generate: `t2 model generate --model M --ids a,b,c --max-tokens 32 --json` must print
              {"ids": [...32 ids], "logprobs": [...], "stop": "length"}.  The ids are compared with the
              reference's greedy ids (KV-cache decoding); where they differ, the step counts as an
              ambiguous tie (not a failure) if the reference's logit for t2's token is within
              1e-4 * max|logit| of its top logit.  Every later step is checked the same way with the
              reference teacher-forced on t2's own tokens, and every logprob must equal
              log_softmax(reference logits)[chosen id] within 1e-3.

One line per check, then `P passed, F failed[, S skipped]`.  Exit 0 iff nothing failed; exit 77
(meson's skip code) when torch is not available.  A t2 invocation that exits with 77 counts as
skipped (the engine declaring a configuration unsupported).
"""

import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import harness  # noqa: E402 - after the path
from harness import parse_json_output, run_t2, tail  # noqa: E402

try:
    import numpy as np
    import torch
    import t2ref
except ImportError as e:  # pragma: no cover - depends on the machine
    harness.skip_without_torch("check_vs_torch", e)

REL_TOL = 1e-4        # logits: max|diff| <= REL_TOL * max|ref logit|; also the greedy tie margin
LOGPROB_TOL = 1e-3    # absolute, per generated token
GEN_TOKENS = 32
LENGTHS = (1, 7, 40)

# name, family, dtype, shards
CASES = [
    ("llama3-f32", "llama3", "f32", 1),          # GQA, llama3 rope scaling, explicit head_dim 32
    ("llama2-f32", "llama2", "f32", 1),          # MHA
    ("mistral-f32", "mistral", "f32", 1),        # GQA, sliding window 16
    ("qwen2-f32", "qwen2", "f32", 1),            # q/k/v biases, tied embeddings
    ("llama3-bf16", "llama3", "bf16", 1),
    ("qwen2-bf16", "qwen2", "bf16", 1),
    ("llama2-f16", "llama2", "f16", 1),
    ("llama3-f32-sharded", "llama3", "f32", 3),
]


def report_exit(res, what, rc, out, err):
    """Report a t2 run that did not exit 0: SKIP for 77 (t2 declared the configuration unsupported),
    else FAIL."""
    if rc == 77:
        return res.report("SKIP", what, "t2 declared it unsupported: " + tail(err or out))
    return res.report("FAIL", what, "t2 exited %s: %s" % (rc, tail(err or out)))


def check_logits(res, what, t2, model_dir, model, ids, out_path, timeout, verbose):
    ref = model.logits(ids).numpy()
    if os.path.exists(out_path):
        os.remove(out_path)
    args = ["model", "logits", "--model", model_dir, "--ids", ",".join(map(str, ids)), "--out", out_path]
    rc, out, err, secs = run_t2(t2, args, timeout)
    if rc != 0:
        return report_exit(res, what, rc, out, err)
    try:
        got = np.load(out_path)
    except Exception as e:  # noqa: BLE001 - any unreadable output is a failure
        return res.report("FAIL", what, "cannot read %s: %s" % (out_path, e))
    if got.dtype != np.float32 or got.shape != ref.shape:
        return res.report("FAIL", what, "got %s %s, want float32 %s" % (got.dtype, got.shape, ref.shape))
    if not np.all(np.isfinite(got)):
        return res.report("FAIL", what, "non-finite logits")
    diff = float(np.max(np.abs(got.astype(np.float64) - ref.astype(np.float64))))
    mx = float(np.max(np.abs(ref)))
    ratio = diff / mx
    detail = "max|diff|=%.3e max|logit|=%.3f ratio=%.2e (tol %.0e)" % (diff, mx, ratio, REL_TOL)
    if verbose:
        detail += " [%.2fs]" % secs
    if ratio <= REL_TOL:
        res.report("PASS", what, detail)
    else:
        row = int(np.argmax(np.max(np.abs(got - ref), axis=1)))
        res.report("FAIL", what, detail + " worst at position %d" % row)


def check_generate(res, what, t2, model_dir, model, ids, timeout, verbose):
    args = ["model", "generate", "--model", model_dir, "--ids", ",".join(map(str, ids)),
            "--max-tokens", str(GEN_TOKENS), "--json"]
    rc, out, err, secs = run_t2(t2, args, timeout)
    if rc != 0:
        return report_exit(res, what, rc, out, err)
    try:
        obj = parse_json_output(out)
        got = [int(t) for t in obj["ids"]]
        logprobs = [float(x) for x in obj["logprobs"]]
        stop = obj.get("stop")
    except Exception as e:  # noqa: BLE001
        return res.report("FAIL", what, "bad JSON output (%s): %s" % (e, tail(out)))
    problems = []
    if len(got) != GEN_TOKENS:
        problems.append("%d ids, want %d" % (len(got), GEN_TOKENS))
    if stop != "length":
        problems.append("stop=%r, want 'length'" % stop)
    if len(logprobs) != len(got):
        problems.append("%d logprobs for %d ids" % (len(logprobs), len(got)))
    if any(not 0 <= t < model.V for t in got):
        return res.report("FAIL", what, "token id out of range: %s" % got)
    if not got:
        return res.report("FAIL", what, "; ".join(problems))

    ref_ids, _ = model.generate(ids, GEN_TOKENS)
    # reference logits along t2's own trajectory (teacher forcing): row k predicts got[k]
    full = model.logits(list(ids) + got[:-1])[len(ids) - 1:].double()
    lsm = torch.log_softmax(full, dim=-1)
    ties = []
    mismatches = []
    first_div = None
    for k, tok in enumerate(got):
        row = full[k]
        top = int(torch.argmax(row))
        if first_div is None and k < len(ref_ids) and ref_ids[k] != tok:
            first_div = k
        if tok == top:
            continue
        gap = float(row[top] - row[tok])
        tol = REL_TOL * float(row.abs().max())
        if gap <= tol:
            ties.append("step %d (t2 %d vs ref %d, gap %.1e <= %.1e)" % (k, tok, top, gap, tol))
        else:
            mismatches.append("step %d: t2 %d, ref %d (gap %.3e > %.1e)" % (k, tok, top, gap, tol))
    lp_err = [abs(logprobs[k] - float(lsm[k, t])) for k, t in enumerate(got) if k < len(logprobs)]
    worst_lp = max(lp_err) if lp_err else 0.0
    if worst_lp > LOGPROB_TOL or any(x != x for x in lp_err):
        k = max(range(len(lp_err)), key=lambda i: lp_err[i] if lp_err[i] == lp_err[i] else float("inf"))
        problems.append("logprob step %d: t2 %.6f ref %.6f" % (k, logprobs[k], float(lsm[k, got[k]])))
    problems += mismatches[:3]
    if len(mismatches) > 3:
        problems.append("... %d mismatches in all" % len(mismatches))
    matched = first_div if first_div is not None else min(len(got), len(ref_ids))
    detail = "%d/%d ids match reference greedy, max logprob err %.1e" % (matched, GEN_TOKENS, worst_lp)
    if ties:
        detail += "; ambiguous tie at " + ", ".join(ties[:2])
    if verbose:
        detail += " [%.2fs]" % secs
    if problems:
        res.report("FAIL", what, detail + "; " + "; ".join(problems))
    else:
        res.report("PASS", what, detail)


def main():
    a = harness.parse_args(__doc__, "scratch directory for checkpoints and outputs",
                           "run only cases whose name contains this")
    t2 = harness.t2_binary("check_vs_torch", a.t2)
    if t2 is None:
        return 2
    torch.set_num_threads(1)
    t_start = time.time()
    res = harness.Result(40)
    outdir = os.path.join(a.workdir, "out")
    os.makedirs(outdir, exist_ok=True)
    for ci, (name, family, dtype, shards) in enumerate(CASES):
        if a.only and a.only not in name:
            continue
        model_dir = os.path.abspath(os.path.join(a.workdir, name))
        cfg = t2ref.make_config(family, dtype)
        t2ref.write_checkpoint(model_dir, cfg, dtype, seed=1000 + ci, shards=shards)
        model = t2ref.Model.load(model_dir)
        rng = np.random.default_rng(ci)
        for n in LENGTHS:
            ids = [int(x) for x in rng.integers(0, model.V, n)]
            out_path = os.path.join(outdir, "%s-%d.npy" % (name, n))
            check_logits(res, "%s logits n=%d" % (name, n), t2, model_dir, model, ids, out_path,
                         a.timeout, a.verbose)
            check_generate(res, "%s generate n=%d" % (name, n), t2, model_dir, model, ids,
                           a.timeout, a.verbose)
    if a.verbose:
        print("(%.1fs)" % (time.time() - t_start))
    print(res.summary())
    return 0 if res.failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
