#!/usr/bin/python3
"""Check `t2 model logprob-grad` (the log-probability of a completion and its gradient with respect to
the expert vectors z, the mixture weights α or all weights) against the PyTorch autograd reference in
grad_ref.py (float64 throughout, its own float64 SVD of every adapted matrix).

  check_grad.py --t2 PATH_TO_T2_BINARY --workdir DIR [--only SUBSTR] [--timeout S] [-v]

Small random checkpoints: llama3 (GQA, llama3 rope scaling, explicit head_dim), llama2 (MHA), mistral
(sliding window 16), qwen2 (q/k/v biases, tied embeddings), all F32, and llama3 in BF16.  Two token
sequences per checkpoint, of 6 and 24 ids (24 > the sliding window), completion start K = n // 2.
Per checkpoint:

 1. --wrt z at z = 1 (no expert) for the modules mlp (the default, no --modules), attn and all;
 2. --wrt z at a random expert (z uniform in [0.5, 1.5], written by `t2 model expert new`) for mlp, attn
    and all (modules from the expert; given again as --modules for all);
 3. a 2-expert mixture (modules all): --wrt alpha (dJ/dα) and --wrt z (dJ/dz' at z' = Σ αz);
 4. --wrt weights: dJ/dW for every tensor of the checkpoint (tied embeddings: one tensor for both).
Each output file must hold exactly the expected tensors (names, shapes, F32) and __metadata__ wrt and
logprob; J must match within 1e-4 relative, every gradient tensor within
max|g_t2 − g_ref| / max|g_ref| ≤ 1e-3 (the worst tensor is reported).
Once: bad invocations (K = 0, K = n, --wrt alpha without --mix, --wrt weights with --expert) must be
refused with exit 1 or 2.
Finite differences (llama3-f32 and mistral-f32, 24 ids, the random `all` expert, two coordinates:
the largest |dJ/dz| of layer 0's gate_proj and of layer 1's v_proj): z ± 1e-2 written with
`t2 model expert new --from`, J from `t2 model logits --expert` — a check of the reference itself against
t2's forward (≤ 2e-3 relative; the f32 logits limit it to ~1e-4) — and the same difference quotient
from the reference's own float64 J (step 1e-4, ≤ 1e-6 relative).

The BF16 checkpoint's default SVD cache stores U and Vᵀ in BF16, so its z and α checks pass
`--svd-cache` with a cache built by `t2 model svd --dtype f32` (as check_svf.py does).

One line per check, then `P passed, F failed`.  Exit 0 iff nothing failed; exit 77 (meson's skip code)
when torch is not available.
"""

import os
import shutil
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import harness  # noqa: E402 - after the path
from harness import Failure, tail  # noqa: E402

try:
    import numpy as np
    import torch
    import t2ref
    import svf_ref
    import grad_ref
except ImportError as e:  # pragma: no cover - depends on the machine
    harness.skip_without_torch("check_grad", e)

J_TOL = 1e-4            # |J_t2 − J_ref| / |J_ref|
GRAD_TOL = 1e-3         # per tensor: max|g_t2 − g_ref| / max|g_ref|
FD_STEP = 1e-2          # z step for the finite differences through t2 model logits
FD_TOL = 2e-3           # those against the reference gradient (f32 logits: ~1e-4 reached)
FD_REF_STEP = 1e-4      # the reference's own float64 finite differences
FD_REF_TOL = 1e-6
LENGTHS = (6, 24)
MODULES = ("mlp", "attn", "all")
FD_MATRICES = ("model.layers.0.mlp.gate_proj", "model.layers.1.self_attn.v_proj")

# name, family, dtype, finite differences
CASES = [
    ("llama3-f32", "llama3", "f32", True),      # GQA, llama3 rope scaling, explicit head_dim 32
    ("llama2-f32", "llama2", "f32", False),     # MHA
    ("mistral-f32", "mistral", "f32", True),    # GQA, sliding window 16
    ("qwen2-f32", "qwen2", "f32", False),       # q/k/v biases, tied embeddings
    ("llama3-bf16", "llama3", "bf16", False),
]


class Model:
    """One checkpoint: its config and weights (float32, BF16 widened exactly), float64 SVDs."""

    def __init__(self, name, family, dtype, model_dir, seed):
        self.name = name
        self.dir = model_dir
        self.dtype = dtype
        cfg = t2ref.make_config(family, dtype)
        t2ref.write_checkpoint(model_dir, cfg, dtype, seed=seed)
        self.cfg, self.weights = svf_ref.load_base(model_dir)
        self.svd = svf_ref.SVDCache(self.weights)
        self.svd32 = None       # float32 SVDs, for failure diagnostics only
        self.V = self.cfg["vocab_size"]
        self.f32_cache = {}     # modules -> f32 SVD cache file (bf16 checkpoint only)

    def ranks(self, modules):
        return [(n, self.svd.rank(n)) for n in svf_ref.adapted_names(self.cfg, modules)]

    def ref(self, ids, K, wrt, expert=None, mix=None, modules=None):
        return grad_ref.logprob_grad(self.cfg, self.weights, ids, K, wrt, expert, mix, modules, self.svd)

    def ref_svd32(self, ids, K, wrt, expert=None, mix=None, modules=None):
        """The same with a float32 SVD (what t2's sgesdd cache holds), computed in float64."""
        if self.svd32 is None:
            self.svd32 = svf_ref.SVDCache(self.weights, torch.float32)
        return grad_ref.logprob_grad(self.cfg, self.weights, ids, K, wrt, expert, mix, modules, self.svd32)


class Checker(harness.Checker):
    def __init__(self, runner, res, workdir):
        super().__init__(runner, res, workdir)
        self.worst = {}     # kind -> (ratio, where)

    def note(self, kind, ratio, where):
        if kind not in self.worst or ratio > self.worst[kind][0]:
            self.worst[kind] = (ratio, where)

    # -- t2 invocations ---------------------------------------------------------------------

    def cache_args(self, m, modules):
        """--svd-cache for the bf16 checkpoint: a fresh copy of an f32 cache built by t2."""
        if m.dtype != "bf16":
            return []
        if modules not in m.f32_cache:
            p = os.path.join(self.workdir, "files", "%s-%s-f32.svd.safetensors" % (m.name, modules))
            self.r.ok(["model", "svd", "--model", m.dir, "--modules", modules, "--dtype", "f32", "--cache", p])
            meta = t2ref.read_safetensors_header(p)[1]
            if meta.get("dtype") != "F32":
                raise Failure("t2 model svd --dtype f32 wrote dtype %s" % meta.get("dtype"))
            m.f32_cache[modules] = p
        use = self.path("%s-%s-f32.svd.use" % (m.name, modules))
        shutil.copyfile(m.f32_cache[modules], use)
        return ["--svd-cache", use]

    def make_expert(self, m, z, modules, label):
        raw = self.path("z-%s" % label)
        svf_ref.write_z(raw, z)
        e = self.path("expert-%s" % label)
        self.r.ok(["model", "expert", "new", "--model", m.dir, "--from", raw, "--out", e, "--modules", modules,
                   "--label", label])
        return e

    def t2_grad(self, m, ids, K, sel, wrt, modules_arg=None, cache_modules=None):
        """Run logprob-grad; returns (J, {name: float64 numpy}, metadata)."""
        out = self.path("grad")
        args = ["model", "logprob-grad", "--model", m.dir, "--ids", ",".join(map(str, ids)),
                "--completion-start", str(K), "--out", out] + sel
        if wrt is not None:
            args += ["--wrt", wrt]
        if modules_arg:
            args += ["--modules", modules_arg]
        if cache_modules:
            args += self.cache_args(m, cache_modules)
        self.r.ok(args)
        if not os.path.exists(out):
            raise Failure("t2 exited 0 but wrote no %s" % os.path.basename(out))
        grads, meta, dtypes = grad_ref.read_grads(out)
        want_wrt = wrt or "z"
        if meta.get("wrt") != want_wrt:
            raise Failure("__metadata__ wrt = %r, want %r" % (meta.get("wrt"), want_wrt))
        try:
            J = float(meta["logprob"])
        except (KeyError, ValueError):
            raise Failure("__metadata__ logprob = %r is not a number" % meta.get("logprob"))
        bad = sorted(n for n, d in dtypes.items() if d != "F32")
        if bad:
            raise Failure("tensors not F32: %s (%s)" % (", ".join(bad[:3]), dtypes[bad[0]]))
        out_np = {}
        for n, t in grads.items():
            a = t.double().numpy()
            if not np.all(np.isfinite(a)):
                raise Failure("%s has non-finite values" % n)
            out_np[n] = a
        return J, out_np, meta

    # -- comparisons ------------------------------------------------------------------------

    @staticmethod
    def tensor_rel(got, ref):
        diff = float(np.max(np.abs(got - ref))) if ref.size else 0.0
        mx = float(np.max(np.abs(ref))) if ref.size else 0.0
        return (diff / mx if mx > 0 else (0.0 if diff == 0 else float("inf"))), diff, mx

    def compare(self, what, kind, m, runs):
        """runs: [(ids, K, t2 args (sel, wrt, modules_arg, cache_modules), reference kwargs)].
        One line: the worst J and the worst gradient tensor over the runs."""
        jw = (0.0, None)
        gw = (0.0, None, 0.0, 0.0, None)
        for ids, K, t2a, refk in runs:
            J_ref, g_ref = m.ref(ids, K, **refk)
            J, got, _ = self.t2_grad(m, ids, K, *t2a)
            g_ref = {n: g.detach().numpy() for n, g in g_ref.items()}
            missing = sorted(set(g_ref) - set(got))
            extra = sorted(set(got) - set(g_ref))
            if missing or extra:
                raise Failure("n=%d: %d tensors, want %d (missing %s, unexpected %s)"
                              % (len(ids), len(got), len(g_ref), missing[:3], extra[:3]))
            for n in g_ref:
                if got[n].shape != g_ref[n].shape:
                    raise Failure("%s has shape %s, want %s" % (n, list(got[n].shape), list(g_ref[n].shape)))
            jr = abs(J - J_ref) / abs(J_ref)
            if jr >= jw[0]:
                jw = (jr, "n=%d J=%.6f ref %.6f" % (len(ids), J, J_ref))
            for n in g_ref:
                ratio, diff, mx = self.tensor_rel(got[n], g_ref[n])
                if ratio >= gw[0]:
                    gw = (ratio, "%s n=%d" % (n, len(ids)), diff, mx, (ids, K, refk, n, g_ref[n]))
        self.note("J", jw[0], "%s: %s" % (what, jw[1]))
        self.note(kind, gw[0], "%s: %s" % (what, gw[1]))
        ok = jw[0] <= J_TOL and gw[0] <= GRAD_TOL
        detail = "J rel %.1e; worst %s rel %.2e (max|diff| %.2e, max|g| %.3g) at %s" % (
            jw[0], kind, gw[0], gw[2], gw[3], gw[1])
        if jw[0] > J_TOL:
            detail += "; J off: %s (tol %.0e)" % (jw[1], J_TOL)
        if gw[0] > GRAD_TOL:
            detail += " (tol %.0e)" % GRAD_TOL
            ids, K, refk, n, g64 = gw[4]
            if refk["wrt"] in ("z", "alpha"):
                # singular vectors of nearly equal singular values are ill-conditioned: say how
                # far a float32 SVD alone moves this gradient
                g32 = m.ref_svd32(ids, K, **refk)[1][n].detach().numpy()
                detail += "; a float32 SVD alone moves the reference by %.1e here" % self.tensor_rel(g32, g64)[0]
        self.res.report("PASS" if ok else "FAIL", what, detail)

    # -- the checks -------------------------------------------------------------------------

    def model_checks(self, m, seed, fd, usage):
        rng = np.random.default_rng(seed)
        seqs = [([int(x) for x in rng.integers(0, m.V, n)], n // 2) for n in LENGTHS]
        cm = (lambda mod: mod) if m.dtype == "bf16" else (lambda mod: None)
        experts = {}

        def rand_z(modules):
            return {n: torch.from_numpy(rng.uniform(0.5, 1.5, r).astype(np.float32)) for n, r in m.ranks(modules)}

        for modules in MODULES:
            tag = "%s %s" % (m.name, modules)
            # 1. z = 1, no expert (mlp: the default, without --modules)
            mod_arg = None if modules == "mlp" else modules
            self.attempt("%s z=1 dz" % tag, lambda modules=modules, mod_arg=mod_arg: self.compare(
                "%s z=1 dz" % tag, "dz", m,
                [(ids, K, ([], None, mod_arg, cm(modules)), dict(wrt="z", modules=modules)) for ids, K in seqs]))

            # 2. a random expert
            def expert_check(modules=modules, tag=tag):
                e = self.make_expert(m, rand_z(modules), modules, "rand-" + modules)
                z = svf_ref.read_z(e)           # what t2 stored is what the reference uses
                experts[modules] = (e, z)
                self.compare("%s expert dz" % tag, "dz", m,
                             [(ids, K, (["--expert", e], "z", modules if modules == "all" else None, cm(modules)),
                               dict(wrt="z", expert=z)) for ids, K in seqs])
            self.attempt("%s expert dz" % tag, expert_check)

        # 3. a 2-expert mixture over all modules: dα and dz'
        def mixture():
            if "all" not in experts:
                raise Failure("no `all` expert (see above)")
            eA, zA = experts["all"]
            eB = self.make_expert(m, rand_z("all"), "all", "B")
            zB = svf_ref.read_z(eB)
            alphas = ["%.6g" % a for a in rng.uniform(0.2, 1.2, 2)]
            sel = ["--mix", "%s:%s,%s:%s" % (eA, alphas[0], eB, alphas[1])]
            mix = [(zA, float(alphas[0])), (zB, float(alphas[1]))]
            lbl = "mix2 (a=%s,%s)" % tuple(alphas)
            self.attempt("%s %s dalpha" % (m.name, lbl), lambda: self.compare(
                "%s %s dalpha" % (m.name, lbl), "dalpha", m,
                [(ids, K, (sel, "alpha", None, cm("all")), dict(wrt="alpha", mix=mix)) for ids, K in seqs]))
            self.attempt("%s %s dz'" % (m.name, lbl), lambda: self.compare(
                "%s %s dz'" % (m.name, lbl), "dz", m,
                [(ids, K, (sel, "z", None, cm("all")), dict(wrt="z", mix=mix)) for ids, K in seqs]))
        self.attempt("%s mix2" % m.name, mixture)

        # 4. every weight of the base model
        self.attempt("%s dW" % m.name, lambda: self.compare(
            "%s dW (%s)" % (m.name, "tied embeddings" if m.cfg.get("tie_word_embeddings") else "untied"), "dW", m,
            [(ids, K, ([], "weights", None, None), dict(wrt="weights")) for ids, K in seqs]))

        if usage:
            self.usage_checks(m, seqs[0][0], experts.get("mlp"))
        if fd and "all" in experts:
            ids, K = seqs[-1]
            for name in FD_MATRICES:
                self.attempt("%s finite diff %s" % (m.name, name),
                             lambda name=name: self.finite_diff(m, ids, K, experts["all"][1], name))

    def usage_checks(self, m, ids, expert):
        """Invocations the contract rules out must be refused (exit 1 or 2), not crash or succeed."""
        base = ["model", "logprob-grad", "--model", m.dir, "--ids", ",".join(map(str, ids))]
        n = len(ids)
        cases = [("K = 0", ["--completion-start", "0"]),
                 ("K = n", ["--completion-start", str(n)])]
        if expert is not None:
            cases += [("--wrt alpha without --mix", ["--completion-start", "2", "--expert", expert[0], "--wrt", "alpha"]),
                      ("--wrt weights with --expert", ["--completion-start", "2", "--expert", expert[0], "--wrt", "weights"])]
        for label, extra in cases:
            what = "%s refuses %s" % (m.name, label)

            def one(extra=extra, what=what):
                rc, out, err, _ = self.r.run(base + extra + ["--out", self.path("bad-grad")])
                if rc not in (1, 2):
                    raise Failure("exit %s (want 1 or 2): %s" % (rc, tail(err or out, 200)))
                self.res.report("PASS", what, "exit %d: %s" % (rc, tail(err or out, 100)))
            self.attempt(what, one)

    def finite_diff(self, m, ids, K, z, name):
        """dJ/dz_j of the largest |g| of matrix `name` at expert z: reference autograd against
        (a) central differences of J from t2's logits with z_j ± FD_STEP written by `t2 model expert new`,
        (b) central differences of the reference's own float64 J."""
        _, g = m.ref(ids, K, "z", expert=z)
        gz = g[name + ".z"].numpy()
        j = int(np.argmax(np.abs(gz)))
        gj = float(gz[j])

        def shifted(step):
            zz = {n: v.clone() for n, v in z.items()}
            zz[name][j] = float(np.float32(float(z[name][j]) + step))
            return zz, float(zz[name][j])

        def t2_J(zz, label):
            raw = self.path("z-fd")
            svf_ref.write_z(raw, zz)
            e = self.path("expert-fd")
            self.r.ok(["model", "expert", "new", "--model", m.dir, "--from", raw, "--out", e, "--modules", "all",
                       "--label", label])
            out = self.path("logits-fd", ".npy")
            args = ["model", "logits", "--model", m.dir, "--ids", ",".join(map(str, ids)), "--out", out,
                    "--expert", e]
            if m.dtype == "bf16":
                args += self.cache_args(m, "all")
            self.r.ok(args)
            lg = np.load(out)
            if lg.shape != (len(ids), m.V) or not np.all(np.isfinite(lg)):
                raise Failure("t2 model logits gave %s %s" % (lg.dtype, lg.shape))
            return grad_ref.logprob_from_logits(lg, ids, K)

        zp, vp = shifted(FD_STEP)
        zm, vm = shifted(-FD_STEP)
        fd_t2 = (t2_J(zp, "fd-plus") - t2_J(zm, "fd-minus")) / (vp - vm)
        zp, vp = shifted(FD_REF_STEP)
        zm, vm = shifted(-FD_REF_STEP)
        Jp = m.ref(ids, K, "z", expert=zp)[0]
        Jm = m.ref(ids, K, "z", expert=zm)[0]
        fd_ref = (Jp - Jm) / (vp - vm)
        r_t2 = abs(fd_t2 - gj) / abs(gj)
        r_ref = abs(fd_ref - gj) / abs(gj)
        self.note("finite diff (t2 logits)", r_t2, "%s %s[%d]" % (m.name, name, j))
        ok = r_t2 <= FD_TOL and r_ref <= FD_REF_TOL
        self.res.report("PASS" if ok else "FAIL", "%s finite diff %s" % (m.name, name.replace("model.layers.", "L")),
                        "z[%d]: autograd %.7f; t2 logits FD %.7f (rel %.1e, tol %.0e); ref f64 FD %.9f "
                        "(rel %.1e, tol %.0e)" % (j, gj, fd_t2, r_t2, FD_TOL, fd_ref, r_ref, FD_REF_TOL))


def main():
    ses = harness.Session("check_grad", __doc__, "scratch directory for checkpoints, caches and outputs",
                          "run only checkpoints whose name contains this", 44)
    if ses.t2 is None:
        return 2
    torch.set_num_threads(1)
    chk = Checker(ses.runner, ses.res, ses.workdir)
    first = True
    for ci, (name, family, dtype, fd) in enumerate(CASES):
        if ses.args.only and ses.args.only not in name:
            continue
        m = Model(name, family, dtype, os.path.join(ses.workdir, name), seed=3000 + ci)
        chk.model_checks(m, seed=ci, fd=fd, usage=first)
        first = False
    return ses.finish(chk.worst, 38)


if __name__ == "__main__":
    sys.exit(main())
