#!/usr/bin/python3
"""Check T2's LoRA adapters (`t2 model lora new`, `t2 model logits|generate --lora`, `t2 model logprob-grad
--lora --wrt lora [--kl-coef λ]`) against the PyTorch reference in lora_ref.py, which forms
W' = W + (alpha/rank)·B·A itself in float64 and differentiates through it with autograd.

  check_lora.py --t2 PATH_TO_T2_BINARY --workdir DIR [--only SUBSTR] [--timeout S] [-v]

Small random checkpoints: llama3 (f32; GQA, llama3 rope scaling), qwen2 (f32; q/k/v biases, tied
embeddings) and llama3 in BF16.  For each checkpoint and the modules mlp and all:

 1. `t2 model lora new` writes the contract's file: format t2-lora, version 1, the model's fingerprint,
    rank, alpha, modules; one F32 "<weight>.lora_A" [rank, cols] and ".lora_B" [rows, rank] per adapted
    matrix in model order; A non-zero within ±1/√cols, B = 0 — and its logits equal the base model's.
 2. A LoRA with random non-zero A and B, written here (the metadata copied from the file of step 1):
    logits on sequences of 6 and 21 ids (below and above the GEMM threshold of 16 rows) against the
    reference, max|t2 − ref| ≤ 1e-4 · max|ref| (and the LoRA must move the logits well beyond that).
 3. log p of the completion (K = n // 2) and its gradient with respect to every A and B (`--wrt lora`):
    J within 1e-4 relative, every tensor within max|g_t2 − g_ref| / max|g_ref| ≤ 1e-3; the file holds
    exactly the expected tensors (F32, the LoRA file's names and shapes) and __metadata__ wrt, logprob.
 4. The same with --kl-coef 0.3: the gradient of J − 0.3·KL(π_LoRA ‖ π_base), and KL itself (metadata
    "kl") within 1e-3 relative.
Per checkpoint: greedy generation (12 tokens) with the `all` LoRA against the reference (a differing
step is an ambiguous tie, not a failure, when the reference's logits of the two tokens are within
1e-4·max|logit|; logprobs within 1e-3).
Once: refusals (exit 1 or 2, never a crash): --wrt lora without --lora, --lora with --wrt z, --lora with
--expert, --kl-coef without an adapter, a LoRA made for another model (the message names the
fingerprint), a file that is not a LoRA (names the format).

One line per check, then the worst relative errors and `P passed, F failed`.  Exit 0 iff nothing failed;
exit 77 (meson's skip code) when torch is not available.
"""

import math
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import harness  # noqa: E402 - after the path
from harness import Failure, parse_json_output, tail  # noqa: E402

try:
    import numpy as np
    import torch
    import t2ref
    import svf_ref
    import grad_ref
    import lora_ref
except ImportError as e:  # pragma: no cover - depends on the machine
    harness.skip_without_torch("check_lora", e)

LOGIT_TOL = 1e-4        # max|t2 − ref| / max|ref|; also the greedy tie margin
J_TOL = 1e-4
GRAD_TOL = 1e-3
KL_TOL = 1e-3
KL_COEF = 0.3
GEN_TOKENS = 12
LENGTHS = (6, 21)
# modules, rank, alpha
SETUPS = (("mlp", 4, 8.0), ("all", 3, 5.0))

# name, family, dtype
CASES = [
    ("llama3-f32", "llama3", "f32"),
    ("qwen2-f32", "qwen2", "f32"),
    ("llama3-bf16", "llama3", "bf16"),
]


class Model:
    def __init__(self, name, family, dtype, model_dir, seed):
        self.name = name
        self.dir = model_dir
        cfg = t2ref.make_config(family, dtype)
        t2ref.write_checkpoint(model_dir, cfg, dtype, seed=seed)
        self.cfg, self.weights = svf_ref.load_base(model_dir)
        self.V = self.cfg["vocab_size"]

    def shape(self, name):
        return list(self.weights[name + ".weight"].shape)


def rel(got, ref):
    got = np.asarray(got, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    mx = float(np.max(np.abs(ref))) if ref.size else 0.0
    d = float(np.max(np.abs(got - ref))) if ref.size else 0.0
    return d / mx if mx > 0 else (0.0 if d == 0 else math.inf)


class Checker(harness.Checker):
    def __init__(self, runner, res, workdir):
        super().__init__(runner, res, workdir)
        self.worst = {}

    def note(self, kind, ratio, where):
        if kind not in self.worst or ratio > self.worst[kind][0]:
            self.worst[kind] = (ratio, where)

    def t2_logits(self, m, ids, sel):
        out = self.path("logits", ".npy")
        self.r.ok(["model", "logits", "--model", m.dir, "--ids", ",".join(map(str, ids)), "--out", out] + sel)
        lg = np.load(out)
        if lg.shape != (len(ids), m.V) or lg.dtype != np.float32 or not np.all(np.isfinite(lg)):
            raise Failure("logits file holds %s %s" % (lg.dtype, lg.shape))
        return lg

    # -- 1. a new LoRA ------------------------------------------------------------------------

    def new_lora(self, m, modules, rank, alpha):
        path = self.path("new-%s" % modules)
        self.r.ok(["model", "lora", "new", "--model", m.dir, "--rank", str(rank), "--alpha", "%g" % alpha,
                   "--modules", modules, "--seed", "7", "--out", path])
        lora, meta = lora_ref.read_lora(path)
        header = t2ref.read_safetensors_header(path)[0]
        want = {"format": "t2-lora", "version": "1", "rank": str(rank), "modules": modules}
        bad = {k: meta.get(k) for k, v in want.items() if meta.get(k) != v}
        if bad or float(meta.get("alpha", "nan")) != alpha or len(meta.get("fingerprint", "")) != 16:
            raise Failure("metadata %s" % {k: meta.get(k) for k in list(want) + ["alpha", "fingerprint"]})
        names = svf_ref.adapted_names(m.cfg, modules)
        order = [n for n in header]
        want_order = [n + s for n in names for s in (".lora_A", ".lora_B")]
        if order != want_order:
            raise Failure("tensors %s..., want %s..." % (order[:3], want_order[:3]))
        for n in names:
            rows, cols = m.shape(n)
            a, b = lora[n]
            if list(a.shape) != [rank, cols] or list(b.shape) != [rows, rank]:
                raise Failure("%s: A %s, B %s for W [%d, %d]" % (n, list(a.shape), list(b.shape), rows, cols))
            if header[n + ".lora_A"]["dtype"] != "F32" or header[n + ".lora_B"]["dtype"] != "F32":
                raise Failure("%s: factors not F32" % n)
            bound = 1.0 / math.sqrt(cols)
            if float(b.abs().max()) != 0.0 or float(a.abs().max()) > bound or float(a.abs().max()) < 0.5 * bound:
                raise Failure("%s: max|A| %.4g (bound %.4g), max|B| %.3g (want 0)"
                              % (n, float(a.abs().max()), bound, float(b.abs().max())))
        self.res.report("PASS", "%s %s lora new" % (m.name, modules),
                        "rank %d alpha %g, %d matrices, A within ±1/√cols, B = 0" % (rank, alpha, len(names)))
        return path, meta

    def fresh_is_base(self, m, modules, path, seqs):
        worst = 0.0
        for ids in seqs:
            base = self.t2_logits(m, ids, [])
            got = self.t2_logits(m, ids, ["--lora", path])
            worst = max(worst, float(np.max(np.abs(got.astype(np.float64) - base))))
        if worst != 0.0:
            raise Failure("new LoRA (B = 0) moves the logits by %.3g" % worst)
        self.res.report("PASS", "%s %s new LoRA = base" % (m.name, modules), "logits identical (max|diff| 0)")

    # -- 2.–4. a random LoRA ---------------------------------------------------------------------

    def random_lora(self, m, modules, rank, meta, rng):
        lora = {}
        for n in svf_ref.adapted_names(m.cfg, modules):
            rows, cols = m.shape(n)
            a = rng.uniform(-1.0, 1.0, (rank, cols)) / math.sqrt(cols)
            b = rng.normal(0.0, 0.15, (rows, rank))
            lora[n] = (torch.from_numpy(a.astype(np.float32)), torch.from_numpy(b.astype(np.float32)))
        path = self.path("rand-%s" % modules)
        meta = dict(meta)
        meta["label"] = "random (check_lora.py)"
        lora_ref.write_lora(path, lora, meta)
        return path, lora_ref.read_lora(path)[0]

    def logits_check(self, m, modules, path, lora, scale, seqs):
        worst, moved = 0.0, math.inf
        for ids in seqs:
            got = self.t2_logits(m, ids, ["--lora", path])
            ref = lora_ref.lora_logits(m.cfg, m.weights, lora, scale, ids).numpy()
            base = grad_ref.forward(m.cfg, {k: w.double() for k, w in m.weights.items()}, ids).detach().numpy()
            worst = max(worst, rel(got, ref))
            moved = min(moved, rel(base, ref))
        what = "%s %s logits --lora" % (m.name, modules)
        self.note("logits", worst, what)
        detail = "rel err %.2e (tol %.0e); the LoRA moves the logits by %.2g relative" % (worst, LOGIT_TOL, moved)
        if moved < 100 * LOGIT_TOL:
            raise Failure(detail + ": too little to test anything")
        self.res.report("PASS" if worst <= LOGIT_TOL else "FAIL", what, detail)

    def t2_grad(self, m, ids, K, path, kl):
        out = self.path("grad")
        args = ["model", "logprob-grad", "--model", m.dir, "--ids", ",".join(map(str, ids)), "--completion-start",
                str(K), "--lora", path, "--wrt", "lora", "--out", out]
        if kl is not None:
            args += ["--kl-coef", "%g" % kl]
        self.r.ok(args)
        grads, meta, dtypes = grad_ref.read_grads(out)
        if meta.get("wrt") != "lora":
            raise Failure("__metadata__ wrt = %r" % meta.get("wrt"))
        bad = sorted(n for n, d in dtypes.items() if d != "F32")
        if bad:
            raise Failure("tensors not F32: %s" % bad[:3])
        return float(meta["logprob"]), (float(meta["kl"]) if kl is not None else None), grads, \
            list(t2ref.read_safetensors_header(out)[0])

    def grad_check(self, m, modules, path, lora, scale, seqs, kl):
        what = "%s %s dA,dB%s" % (m.name, modules, " kl=%g" % kl if kl is not None else "")
        jw = gw = klw = 0.0
        gwhere = ""
        for ids in seqs:
            K = len(ids) // 2
            J_ref, KL_ref, g_ref = lora_ref.logprob_grad(m.cfg, m.weights, ids, K, lora, scale, kl or 0.0)
            J, KL, got, order = self.t2_grad(m, ids, K, path, kl)
            want_order = [n + s for n in lora for s in (".lora_A", ".lora_B")]
            if order != want_order:
                raise Failure("gradient tensors %s..., want %s..." % (order[:3], want_order[:3]))
            jw = max(jw, abs(J - J_ref) / abs(J_ref))
            if kl is not None:
                klw = max(klw, abs(KL - KL_ref) / abs(KL_ref))
            for n, g in g_ref.items():
                if list(got[n].shape) != list(g.shape):
                    raise Failure("%s has shape %s, want %s" % (n, list(got[n].shape), list(g.shape)))
                r = rel(got[n].double().numpy(), g.detach().numpy())
                if r >= gw:
                    gw, gwhere = r, "%s n=%d" % (n, len(ids))
        self.note("J", jw, what)
        self.note("dA/dB" if kl is None else "dA/dB with KL", gw, "%s: %s" % (what, gwhere))
        if kl is not None:
            self.note("KL", klw, what)
        ok = jw <= J_TOL and gw <= GRAD_TOL and klw <= KL_TOL
        detail = "J rel %.1e; worst grad rel %.2e at %s" % (jw, gw, gwhere)
        if kl is not None:
            detail += "; KL rel %.1e" % klw
        self.res.report("PASS" if ok else "FAIL", what, detail + ("" if ok else " (tol J %.0e, grad %.0e, KL %.0e)"
                                                                  % (J_TOL, GRAD_TOL, KL_TOL)))

    def generation(self, m, path, lora, scale, ids):
        out, _ = self.r.ok(["model", "generate", "--model", m.dir, "--ids", ",".join(map(str, ids)), "--max-tokens",
                            str(GEN_TOKENS), "--json", "--lora", path])
        obj = parse_json_output(out)
        got = [int(t) for t in obj["ids"]]
        lps = [float(x) for x in obj["logprobs"]]
        if len(got) != GEN_TOKENS or len(lps) != GEN_TOKENS:
            raise Failure("got %d ids, %d logprobs" % (len(got), len(lps)))
        full = lora_ref.lora_logits(m.cfg, m.weights, lora, scale, list(ids) + got[:-1])[len(ids) - 1:]
        lsm = torch.log_softmax(full, dim=-1)
        problems, ties = [], []
        for k, tok in enumerate(got):
            row = full[k]
            top = int(torch.argmax(row))
            if tok != top:
                gap, tol = float(row[top] - row[tok]), LOGIT_TOL * float(row.abs().max())
                (ties if gap <= tol else problems).append("step %d: t2 %d, ref %d (gap %.2e)" % (k, tok, top, gap))
        lp_err = max(abs(lps[k] - float(lsm[k, t])) for k, t in enumerate(got))
        if lp_err > 1e-3:
            problems.append("logprob error %.2e" % lp_err)
        detail = "%d tokens are the reference's greedy choices, max logprob err %.1e" % (GEN_TOKENS, lp_err)
        if ties:
            detail += "; ambiguous tie at " + ", ".join(ties[:2])
        if problems:
            raise Failure(detail + "; " + "; ".join(problems[:3]))
        self.res.report("PASS", "%s generate --lora (all)" % m.name, detail)

    # -- refusals --------------------------------------------------------------------------------

    def refusals(self, m, lora_path, other):
        ids = "1,2,3,4,5,6"
        base = ["model", "logprob-grad", "--model", m.dir, "--ids", ids, "--completion-start", "3",
                "--out", self.path("bad")]
        expert = self.path("expert-ones")
        z = {n: torch.ones(min(m.shape(n))) for n in svf_ref.adapted_names(m.cfg, "mlp")}
        svf_ref.write_z(expert, z)
        cases = [
            ("--wrt lora without --lora", base + ["--wrt", "lora"], None),
            ("--lora with --wrt z", base + ["--lora", lora_path, "--wrt", "z"], None),
            ("--lora with --expert", ["model", "logits", "--model", m.dir, "--ids", ids, "--out",
                                      self.path("bad", ".npy"), "--lora", lora_path, "--expert", expert], None),
            ("--kl-coef without an adapter", base + ["--wrt", "weights", "--kl-coef", "0.1"], None),
            ("a LoRA of another model", ["model", "logits", "--model", other.dir, "--ids", ids, "--out",
                                         self.path("bad", ".npy"), "--lora", lora_path], "fingerprint"),
            ("a file that is not a LoRA", ["model", "logits", "--model", m.dir, "--ids", ids, "--out",
                                           self.path("bad", ".npy"), "--lora", expert], "format"),
        ]
        for label, args, needle in cases:
            what = "refuses %s" % label

            def one(args=args, needle=needle, what=what):
                rc, out, err, _ = self.r.run(args)
                if rc not in (1, 2):
                    raise Failure("exit %s (want 1 or 2): %s" % (rc, tail(err or out, 200)))
                if needle and needle not in err:
                    raise Failure("message does not mention %s: %s" % (needle, tail(err, 200)))
                self.res.report("PASS", what, "exit %d: %s" % (rc, tail(err or out, 110)))
            self.attempt(what, one)

    # -- per checkpoint ----------------------------------------------------------------------------

    def model_checks(self, m, seed):
        rng = np.random.default_rng(seed)
        seqs = [[int(x) for x in rng.integers(0, m.V, n)] for n in LENGTHS]
        made = {}
        for modules, rank, alpha in SETUPS:
            tag = "%s %s" % (m.name, modules)
            got = self.attempt("%s lora new" % tag, lambda: self.new_lora(m, modules, rank, alpha))
            if got is None:
                continue
            path, meta = got
            self.attempt("%s new LoRA = base" % tag, lambda: self.fresh_is_base(m, modules, path, seqs))
            rpath, lora = self.random_lora(m, modules, rank, meta, rng)
            scale = float(np.float32(alpha) / np.float32(rank))
            made[modules] = (rpath, lora, scale)
            self.attempt("%s logits --lora" % tag, lambda: self.logits_check(m, modules, rpath, lora, scale, seqs))
            for kl in (None, KL_COEF):
                self.attempt("%s dA,dB" % tag, lambda kl=kl: self.grad_check(m, modules, rpath, lora, scale, seqs, kl))
        if "all" in made:
            rpath, lora, scale = made["all"]
            self.attempt("%s generate --lora" % m.name, lambda: self.generation(m, rpath, lora, scale, seqs[0]))
        return made


def main():
    ses = harness.Session("check_lora", __doc__, "scratch directory for checkpoints and outputs",
                          "run only checkpoints whose name contains this", 40)
    if ses.t2 is None:
        return 2
    torch.set_num_threads(1)
    chk = Checker(ses.runner, ses.res, ses.workdir)
    models = []
    for ci, (name, family, dtype) in enumerate(CASES):
        if ses.args.only and ses.args.only not in name:
            continue
        m = Model(name, family, dtype, os.path.join(ses.workdir, name), seed=4000 + ci)
        made = chk.model_checks(m, seed=ci)
        models.append((m, made))
    if len(models) >= 2 and "mlp" in models[0][1]:
        chk.refusals(models[0][0], models[0][1]["mlp"][0], models[1][0])
    return ses.finish(chk.worst, 14)


if __name__ == "__main__":
    sys.exit(main())
