#!/usr/bin/python3
"""Check T2's SVF experts and mixtures (`t2 model logits|generate --expert/--mix`, `t2 model expert new|mix`)
against the PyTorch reference in svf_ref.py, which recomposes every adapted weight itself from the base
weights (torch.linalg.svd in float64, independent of T2's SVD cache).

  check_svf.py --t2 PATH_TO_T2_BINARY --workdir DIR [--only SUBSTR] [--timeout S] [-v]

Small random checkpoints: llama3 (f32), qwen2 (f32, q/k/v biases, tied embeddings) and llama3 (bf16).
For each checkpoint and each of the modules mlp, attn and all, on two token sequences (6 and 21 rows:
below and above the GEMM threshold of 16 rows):

 1. z = 1 reproduces the base logits with --apply factored and with --apply merged, and the two agree.
 2. a random expert (z uniform in [0.5, 1.5]), a mixture of 2 experts with α summing to 1 and a mixture
    of 3 with α summing to something else match the reference, factored and merged.
 3. `t2 model expert mix --out F E1:a E2:b E3:c` writes z' = Σ αz, and `--expert F` gives the same logits as
    `--mix E1:a,E2:b,E3:c`.
 4. `t2 model expert new` rejects a z file with a wrong tensor name or a wrong length (exit 1, the message
    names the tensor).
Per checkpoint: greedy generation (16 tokens) with an expert (mlp, factored) and with a mixture (all,
merged) matches the reference's greedy tokens (a differing step is an ambiguous tie, not a failure, if
the reference's logit for t2's token is within 1e-4·max|logit| of its top one; logprobs within 1e-3).

All logits bounds: max|t2 − ref| ≤ 1e-4 · max|ref|.  The BF16 checkpoint's default SVD cache stores U
and Vᵀ in BF16 (≈ 3 significant digits), so there every check above uses `--svd-cache` with a cache
built by `t2 model svd --dtype f32`; the error of the default BF16 cache is reported separately (as
INFO lines) and only fails beyond 1e-2.

One line per check, then `P passed, F failed`.  Exit 0 iff nothing failed; exit 77 (meson's skip code)
when torch is not available.
"""

import os
import shutil
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import harness  # noqa: E402 - after the path
from harness import Failure, parse_json_output, tail  # noqa: E402

try:
    import numpy as np
    import torch
    import t2ref
    import svf_ref
except ImportError as e:  # pragma: no cover - depends on the machine
    harness.skip_without_torch("check_svf", e)

REL_TOL = 1e-4          # logits, relative to max|ref logit|; also the greedy tie margin
BF16_CACHE_TOL = 1e-2   # the default BF16 SVD cache (U, Vt rounded to BF16)
LOGPROB_TOL = 1e-3
GEN_TOKENS = 16
LENGTHS = (6, 21)
MODULES = ("mlp", "attn", "all")

# name, family, dtype
CASES = [
    ("llama3-f32", "llama3", "f32"),
    ("qwen2-f32", "qwen2", "f32"),
    ("llama3-bf16", "llama3", "bf16"),
]


class Model:
    """One checkpoint: its reference weights, float64 SVDs, and how t2 is told about caches."""

    def __init__(self, name, family, dtype, model_dir, seed):
        self.name = name
        self.dir = model_dir
        self.dtype = dtype
        cfg = t2ref.make_config(family, dtype)
        t2ref.write_checkpoint(model_dir, cfg, dtype, seed=seed)
        self.cfg, self.weights = svf_ref.load_base(model_dir)
        self.svd = svf_ref.SVDCache(self.weights)
        self.svd32 = svf_ref.SVDCache(self.weights, torch.float32)   # diagnostics only
        self.base = t2ref.Model(self.cfg, self.weights)
        self.V = self.base.V
        self.f32_cache = {}     # modules -> pristine f32 SVD cache (bf16 checkpoint only)

    def ref(self, z):
        return t2ref.Model(self.cfg, svf_ref.adapted_weights(self.weights, z, svd=self.svd))

    def ranks(self, modules):
        return [(n, self.svd.rank(n)) for n in svf_ref.adapted_names(self.cfg, modules)]


class Checker(harness.Checker):
    # -- t2 invocations ---------------------------------------------------------------------

    def cache_args(self, m, modules, default_cache=False):
        """--svd-cache for the bf16 checkpoint: a fresh copy of its f32 cache (so that a t2 that
        rewrote the file cannot spoil the next check)."""
        if m.dtype != "bf16" or default_cache:
            return [], None
        if modules not in m.f32_cache:
            p = os.path.join(self.workdir, "files", "%s-%s-f32.svd.safetensors" % (m.name, modules))
            self.r.ok(["model", "svd", "--model", m.dir, "--modules", modules, "--dtype", "f32", "--cache", p])
            meta = t2ref.read_safetensors_header(p)[1]
            if meta.get("dtype") != "F32" or meta.get("modules") != modules:
                raise Failure("t2 model svd --dtype f32 wrote dtype %s modules %s"
                              % (meta.get("dtype"), meta.get("modules")))
            m.f32_cache[modules] = p
        use = m.f32_cache[modules] + ".use"
        shutil.copyfile(m.f32_cache[modules], use)
        return ["--svd-cache", use], use

    def after_cache(self, use, err):
        """The f32 cache handed to t2 must have been used as it was, not rebuilt."""
        if use is None:
            return
        meta = t2ref.read_safetensors_header(use)[1]
        if meta.get("dtype") != "F32" or "rebuilding" in err:
            why = [line for line in err.splitlines() if "rebuilding" in line]
            raise Failure("t2 did not use the F32 --svd-cache it was given but rebuilt it as %s (%s)"
                          % (meta.get("dtype"), tail(why[0] if why else err, 160)))

    def t2_logits(self, m, ids, sel, apply=None, modules="mlp", default_cache=False):
        out = self.path("logits", ".npy")
        cargs, use = self.cache_args(m, modules, default_cache or not sel)
        args = ["model", "logits", "--model", m.dir, "--ids", ",".join(map(str, ids)), "--out", out] + sel + cargs
        if apply:
            args += ["--apply", apply]
        _, err = self.r.ok(args)
        self.after_cache(use, err)
        got = np.load(out)
        if got.dtype != np.float32 or got.shape != (len(ids), m.V):
            raise Failure("logits %s %s, want float32 %s" % (got.dtype, got.shape, (len(ids), m.V)))
        if not np.all(np.isfinite(got)):
            raise Failure("non-finite logits")
        return got

    def make_expert(self, m, z, modules, label):
        raw = self.path("z-%s" % label)
        svf_ref.write_z(raw, z)
        e = self.path("expert-%s" % label)
        self.r.ok(["model", "expert", "new", "--model", m.dir, "--from", raw, "--out", e, "--modules", modules,
                   "--label", label])
        meta = svf_ref.read_meta(e)
        if meta.get("format") != "t2-expert" or meta.get("modules") != modules or meta.get("label") != label:
            raise Failure("t2 model expert new wrote metadata %s" % meta)
        return e

    # -- comparisons ------------------------------------------------------------------------

    @staticmethod
    def rel(got, ref):
        diff = float(np.max(np.abs(got.astype(np.float64) - ref.astype(np.float64))))
        mx = float(np.max(np.abs(ref)))
        return diff / mx, diff, mx

    def close(self, what, pairs, tol=REL_TOL, info_only=None, context=None):
        """pairs: [(t2 logits, reference logits)] (one per token sequence); reports the worst.
        info_only: report as INFO unless the ratio exceeds that bound.  context: a function whose
        text is added to a failure's line."""
        worst = max((self.rel(g, r) for g, r in pairs), key=lambda x: x[0])
        ratio, diff, mx = worst
        detail = "max|diff|=%.3e max|logit|=%.3f ratio=%.2e (tol %.0e)" % (diff, mx, ratio, tol)
        if info_only is not None:
            if ratio <= info_only:
                self.res.report("INFO", what, detail.replace("(tol %.0e)" % tol, "(fails > %.0e)" % info_only))
            else:
                self.res.report("FAIL", what, detail.replace("(tol %.0e)" % tol, "(> %.0e)" % info_only))
            return ratio
        if ratio > tol and context is not None:
            detail += "; " + context()
        self.res.report("PASS" if ratio <= tol else "FAIL", what, detail)
        return ratio

    # -- the checks -------------------------------------------------------------------------

    def modules_checks(self, m, modules, seqs, base_ref, rng):
        tag = "%s %s" % (m.name, modules)
        ranks = m.ranks(modules)

        def rand_z():
            return {n: torch.from_numpy(rng.uniform(0.5, 1.5, r).astype(np.float32)) for n, r in ranks}

        z1 = {n: torch.ones(r) for n, r in ranks}
        zs = {"one": z1, "rand": rand_z(), "A": rand_z(), "B": rand_z(), "C": rand_z()}
        files = {}
        for k, z in zs.items():
            p = self.attempt("%s expert new (%s)" % (tag, k), lambda z=z, k=k: self.make_expert(m, z, modules, k))
            if p is None:
                return
            files[k] = p

        # 1. z = 1 is the base model, on both paths, and the paths agree
        outs = {}
        for apply in ("factored", "merged"):
            got = self.attempt("%s z=1 %s" % (tag, apply), lambda apply=apply: [
                self.t2_logits(m, ids, ["--expert", files["one"]], apply, modules) for ids in seqs])
            if got is not None:
                outs[apply] = got
                self.close("%s z=1 %s = base" % (tag, apply), list(zip(got, base_ref)))
        if len(outs) == 2:
            self.close("%s z=1 merged = factored" % tag, list(zip(outs["merged"], outs["factored"])))
        if m.dtype == "bf16":
            got = self.attempt("%s z=1 default BF16 cache" % tag, lambda: [
                self.t2_logits(m, ids, ["--expert", files["one"]], None, modules, default_cache=True) for ids in seqs])
            if got is not None:
                self.close("%s z=1 default BF16 cache" % tag, list(zip(got, base_ref)), info_only=BF16_CACHE_TOL)

        # 2. a random expert and mixtures against the reference recomposition
        def alphas(k, total_one):
            a = rng.uniform(0.1, 1.0, k) if total_one else rng.uniform(0.2, 1.2, k)
            if total_one:
                a = a / a.sum()
            elif abs(a.sum() - 1) < 0.1:
                a[0] += 0.5
            return ["%.6g" % x for x in a]

        a2 = alphas(2, True)
        a3 = alphas(3, False)
        mixes = [
            ("rand expert", ["--expert", files["rand"]], [(zs["rand"], 1.0)]),
            ("mix2 (Σα=1)", ["--mix", ",".join("%s:%s" % (files[k], a) for k, a in zip("AB", a2))],
             [(zs[k], float(a)) for k, a in zip("AB", a2)]),
            ("mix3 (Σα=%.3g)" % sum(map(float, a3)),
             ["--mix", ",".join("%s:%s" % (files[k], a) for k, a in zip("ABC", a3))],
             [(zs[k], float(a)) for k, a in zip("ABC", a3)]),
        ]
        for label, sel, parts in mixes:
            zmix = svf_ref.mix_z(parts)
            ref_model = m.ref(zmix)
            refs = [ref_model.logits(ids).numpy() for ids in seqs]

            def f32_svd_error(zmix=zmix, refs=refs):
                # how far a float32 SVD alone gets (nearly equal singular values make single
                # singular vectors, and so W' for z != 1, ill-conditioned)
                alt = t2ref.Model(m.cfg, svf_ref.adapted_weights(m.weights, zmix, svd=m.svd32))
                r = max(self.rel(alt.logits(ids).numpy(), ref)[0] for ids, ref in zip(seqs, refs))
                return "torch.linalg.svd in float32 alone is off by %.2e here" % r
            for apply in ("factored", "merged"):
                got = self.attempt("%s %s %s" % (tag, label, apply), lambda sel=sel, apply=apply: [
                    self.t2_logits(m, ids, sel, apply, modules) for ids in seqs])
                if got is not None:
                    self.close("%s %s %s" % (tag, label, apply), list(zip(got, refs)), context=f32_svd_error)
            if m.dtype == "bf16":
                got = self.attempt("%s %s default BF16 cache" % (tag, label), lambda sel=sel: [
                    self.t2_logits(m, ids, sel, None, modules, default_cache=True) for ids in seqs])
                if got is not None:
                    self.close("%s %s default BF16 cache" % (tag, label), list(zip(got, refs)),
                               info_only=BF16_CACHE_TOL)

        # 3. t2 model expert mix == --mix on the command line
        def expert_mix():
            out = self.path("mixed")
            self.r.ok(["model", "expert", "mix", "--out", out] + ["%s:%s" % (files[k], a) for k, a in zip("ABC", a3)])
            zf = svf_ref.read_z(out)
            want = svf_ref.mix_z([(zs[k], float(a)) for k, a in zip("ABC", a3)])
            if set(zf) != set(want):
                raise Failure("mixed file covers %d matrices, want %d" % (len(zf), len(want)))
            zerr = max(float((zf[n] - want[n]).abs().max() / want[n].abs().max()) for n in want)
            meta = svf_ref.read_meta(out)
            if zerr > 1e-6 or meta.get("format") != "t2-expert" or meta.get("modules") != modules:
                raise Failure("mixed z off by %.2e (relative), metadata %s" % (zerr, meta))
            a = [self.t2_logits(m, ids, ["--expert", out], None, modules) for ids in seqs]
            b = [self.t2_logits(m, ids, ["--mix", ",".join("%s:%s" % (files[k], x) for k, x in zip("ABC", a3))],
                                None, modules) for ids in seqs]
            ratio = max(self.rel(x, y)[0] for x, y in zip(a, b))
            status = "PASS" if ratio <= 1e-6 else "FAIL"
            self.res.report(status, "%s expert mix file = --mix" % tag,
                            "z' max rel err %.1e; logits ratio %.2e (tol 1e-06)" % (zerr, ratio))

        self.attempt("%s expert mix file = --mix" % tag, expert_mix)

        # 4. t2 model expert new rejects bad z files, naming the tensor
        name0, r0 = ranks[0]
        bad_name = name0.replace("_proj", "_prj") + ".z"
        z_bad_name = {(name0.replace("_proj", "_prj") if n == name0 else n): v for n, v in z1.items()}
        z_bad_len = dict(z1)
        z_bad_len[name0] = torch.ones(r0 - 1)
        for label, z, needle in (("wrong name", z_bad_name, bad_name), ("wrong length", z_bad_len, name0 + ".z")):
            def reject(z=z, needle=needle, label=label):
                raw = self.path("z-bad")
                svf_ref.write_z(raw, z)
                rc, out, err, _ = self.r.run(["model", "expert", "new", "--model", m.dir, "--from", raw, "--out",
                                              self.path("bad-expert"), "--modules", modules])
                if rc != 1 or needle not in err:
                    raise Failure("exit %s, message %r (want exit 1 naming %s)" % (rc, tail(err or out, 200), needle))
                self.res.report("PASS", "%s expert new rejects %s" % (tag, label), tail(err, 110))
            self.attempt("%s expert new rejects %s" % (tag, label), reject)
        return files, zs

    def generation(self, m, what, sel, z, apply, modules, ids):
        ref_model = m.ref(z)
        cargs, use = self.cache_args(m, modules)
        args = ["model", "generate", "--model", m.dir, "--ids", ",".join(map(str, ids)), "--max-tokens",
                str(GEN_TOKENS), "--json", "--apply", apply] + sel + cargs
        out, err = self.r.ok(args)
        self.after_cache(use, err)
        obj = parse_json_output(out)
        got = [int(t) for t in obj["ids"]]
        logprobs = [float(x) for x in obj["logprobs"]]
        if len(got) != GEN_TOKENS or len(logprobs) != len(got) or any(not 0 <= t < m.V for t in got):
            raise Failure("got %d ids %s, %d logprobs" % (len(got), got, len(logprobs)))
        ref_ids, _ = ref_model.generate(ids, GEN_TOKENS)
        full = ref_model.logits(list(ids) + got[:-1])[len(ids) - 1:].double()
        lsm = torch.log_softmax(full, dim=-1)
        problems, ties = [], []
        for k, tok in enumerate(got):
            row = full[k]
            top = int(torch.argmax(row))
            if tok == top:
                continue
            gap = float(row[top] - row[tok])
            tol = REL_TOL * float(row.abs().max())
            (ties if gap <= tol else problems).append("step %d: t2 %d, ref %d (gap %.2e, tol %.1e)"
                                                      % (k, tok, top, gap, tol))
        lp_err = max(abs(logprobs[k] - float(lsm[k, t])) for k, t in enumerate(got))
        if not lp_err <= LOGPROB_TOL:
            problems.append("logprob error %.2e > %.0e" % (lp_err, LOGPROB_TOL))
        matched = next((k for k in range(GEN_TOKENS) if got[k] != ref_ids[k]), GEN_TOKENS)
        detail = "%d/%d ids match reference greedy, max logprob err %.1e" % (matched, GEN_TOKENS, lp_err)
        if ties:
            detail += "; ambiguous tie at " + ", ".join(ties[:2])
        if problems:
            raise Failure(detail + "; " + "; ".join(problems[:3]))
        self.res.report("PASS", what, detail)

    def model_checks(self, m, seed):
        rng = np.random.default_rng(seed)
        seqs = [[int(x) for x in rng.integers(0, m.V, n)] for n in LENGTHS]
        base_ref = [m.base.logits(ids).numpy() for ids in seqs]
        # t2 without an expert, as a sanity anchor for the rest
        got = self.attempt("%s base" % m.name, lambda: [self.t2_logits(m, ids, []) for ids in seqs])
        if got is not None:
            self.close("%s base (no expert)" % m.name, list(zip(got, base_ref)))
        made = {}
        for modules in MODULES:
            r = self.modules_checks(m, modules, seqs, base_ref, rng)
            if r:
                made[modules] = r
        prompt = seqs[0]
        if "mlp" in made:
            files, zs = made["mlp"]
            self.attempt("%s generate mlp expert factored" % m.name, lambda: self.generation(
                m, "%s generate mlp expert factored" % m.name, ["--expert", files["rand"]], zs["rand"],
                "factored", "mlp", prompt))
        if "all" in made:
            files, zs = made["all"]
            mix = [("A", "0.5"), ("C", "0.75")]
            z = svf_ref.mix_z([(zs[k], float(a)) for k, a in mix])
            self.attempt("%s generate all mix merged" % m.name, lambda: self.generation(
                m, "%s generate all mix merged" % m.name,
                ["--mix", ",".join("%s:%s" % (files[k], a) for k, a in mix)], z, "merged", "all", prompt))


def main():
    a = harness.parse_args(__doc__, "scratch directory for checkpoints, caches and outputs",
                           "run only checkpoints whose name contains this")
    t2 = harness.t2_binary("check_svf", a.t2)
    if t2 is None:
        return 2
    workdir = os.path.abspath(a.workdir)
    torch.set_num_threads(1)
    t_start = time.time()
    harness.fresh_workdir(workdir)      # fresh caches and files every run
    res = harness.Result(52)
    runner = harness.Runner(t2, workdir, a.timeout)
    chk = Checker(runner, res, workdir)
    for ci, (name, family, dtype) in enumerate(CASES):
        if a.only and a.only not in name:
            continue
        m = Model(name, family, dtype, os.path.join(workdir, name), seed=2000 + ci)
        chk.model_checks(m, seed=ci)
    if a.verbose:
        print("(%.1fs, %d t2 runs)" % (time.time() - t_start, runner.calls))
    print(res.summary())
    return 0 if res.failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
