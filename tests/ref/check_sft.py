#!/usr/bin/python3
"""Check `t2 model sft` (next-token training of every weight with Adam) and `t2 model init` against a
PyTorch reference: the loss and its gradient by autograd through grad_ref.forward in float64, and an
Adam step written here from the textbook formulas.

  check_sft.py --t2 PATH_TO_T2_BINARY --workdir DIR [--only SUBSTR] [--timeout S] [-v]

Models (llama3 layout, 2 layers, hidden 64, the byte-level tokenizer and Llama 3 chat template of
tests/integration/make_model.py, vocabulary 264, all F32):
  untied   make_model.py's random checkpoint;
  tied     the same folder with tie_word_embeddings and a tied checkpoint by t2ref.write_checkpoint;
  init     the same config and tokenizer with weights by `t2 model init --seed 7` (std 0.02).
A generic JSONL data set of 3 tasks (a system prompt or none, a solution, an answer only, an empty
solution; non-ASCII text, whitespace the template trims, a blank line).

 1. Token ids, found without sft: the prompt rendered by `t2 model chat` (which adds the generation
    prompt) and tokenised by `t2 model tokenize --no-special`, the target (solution, else answer)
    tokenised the same way, then the id of <|eot_id|> (also the stop id `t2 model chat` names); they
    must equal the ids made here from the Llama 3 template over the byte-level vocabulary.
 2. Per model, `t2 model sft --steps 3 --batch 3 --lr LR --min-lr LR --warmup 0 --log-every 1` with
    --clip 0 and --clip 0.5 (below every first gradient norm: clipping acts, checked), the first on one
    replica (--workers 1), the second data parallel on one replica per example (--workers 3: their
    gradients summed, replica 0's weights copied to the others after each step) and with --prompt-loss
    (the targets start at the user's turn: right after the system turn, or after <|begin_of_text|>
    when there is no system prompt); LR 1e-2, and
    1e-3 for init (whose std-0.02 weights 1e-2 steps move by half their size: a trajectory so
    sensitive that float32 rounding in step 1 shows in step 3).  Reference: loss = −Σ log p(target
    tokens + eot) / their number over the 3 examples, torch gradients, Adam (β1 0.9, β2 0.999, ε 1e-8,
    bias correction; the gradient times clip/‖g‖ when the global norm ‖g‖ exceeds clip > 0), 3 steps.
    Weights: every saved tensor (the checkpoint's names, F32; t2 writes them in its own order) within
    |w_t2 − w_ref| ≤ 1e-4·max|w_ref| + allowance, element by element.  The allowance is the change
    a float32 gradient error of 1e-6·max|g| (per tensor and step) makes through Adam's 1/(√v̂ + ε):
    negligible except for the few elements whose first gradient is within a few ε of zero, whose
    first step lr·g/(|g| + ε) float32 rounding alone decides (t2's own gradients from `t2 model
    logprob-grad --wrt weights` give the same spread there).  The plain max|diff|/max|w| is printed too.
    Log: every step's loss (before its update) within 1e-4 relative plus half a unit of the printed
    %.4f, the gradient norm (before clipping; Adam cannot see a wrong gradient scale, this can) within
    1e-4 relative plus half a unit of %.3f, the lr constant; metadata t2_sft_step = 3, t2_sft_loss the
    last loss (1e-4 relative); config.json and the tokenizer files copied unchanged.
 3. `--dtype bf16` (untied, clip 0): every tensor BF16 and equal to the F32 save rounded to nearest even
    (so training is deterministic, too); `t2 model logits` of both folders within 1e-4·max|logit| of the
    reference forward of their weights, and (BF16 − F32 logits) equal to the reference's difference —
    what the BF16 rounding of the weights predicts — within 2e-4·max|logit|.
 4. `t2 model init`: same seed → byte-identical file, the checkpoint's tensor names and shapes, std 0.02
    (o_proj and down_proj 0.02/√(2·layers)), norms 1; on a folder that already has model.safetensors
    it must refuse (exit 1) and leave the file untouched.
 5. Refusals: missing --data, --batch 0, --dtype f16 (exit 2, the message naming the option); a data
    file whose line 2 has no prompt (exit 1, the message naming the file and line 2); --prompt-loss
    under the llama2 template, which has no system turn of its own (exit 1, naming the task and the
    option); none of them may create the --out folder.

One line per check, then the worst errors and `P passed, F failed`.  Exit 0 iff nothing failed; exit 77
(meson's skip code) when torch is not available.
"""

import hashlib
import json
import math
import os
import re
import shutil
import subprocess
import sys
import time

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
    harness.skip_without_torch("check_sft", e)

MAKE_MODEL = os.path.join(HERE, "..", "integration", "make_model.py")
sys.path.insert(0, os.path.join(HERE, "..", "..", "recipe"))
import tokenizer as bpe  # noqa: E402 - the byte -> character map of ByteLevel tokenizers (make_model.py's too)

W_TOL = 1e-4            # per tensor: max|w_t2 − w_ref| / max|w_ref| (plus the noise allowance)
NOISE = 1e-6            # float32 gradient error assumed per element, relative to max|g| of the tensor
LOSS_TOL = 1e-4         # relative, plus half a unit of the printed digits
LOGIT_TOL = 1e-4        # BF16 folder's logits against the reference (relative to max|logit|)
BF16_DIFF_TOL = 2e-4    # (t2 bf16 − t2 f32) against (ref bf16 − ref f32), relative to max|logit|
STEPS, BATCH, LR = 3, 3, 1e-2
CLIPS = (0.0, 0.5)      # 0: no clipping; 0.5 is below every first gradient norm here (checked)
WORKERS = {0.0: 1, 0.5: BATCH}   # data-parallel replicas of each run: one, and one per example
PROMPT_LOSS = {0.0: False, 0.5: True}   # the second run trains on the user's turn too
BETA1, BETA2, EPS = 0.9, 0.999, 1e-8
INIT_SEED, INIT_STD = 7, 0.02
INIT_LR = 1e-3          # lr 1e-2 is half the init's weight scale per step: a chaotic trajectory
SFT_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json")

SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]

# The data set: a system prompt or none, a solution (trained on) next to an answer, an answer only, an
# empty solution (the answer is used); non-ASCII bytes and whitespace the template trims.
TASKS = [
    {"id": "t-sol", "system": "You are terse.", "prompt": "What is 2+2?", "solution": "2+2 = 4, so 4.",
     "answer": "4"},
    {"id": "t-ans", "prompt": "Name a colour, café style. ", "answer": "bleu clair"},
    {"id": "t-empty", "system": "Count things.\n", "prompt": "How many legs has a spider?", "solution": "",
     "answer": "8"},
]


def run_name(m, clip):
    return "%s sft lr %g clip %g workers %d%s" % (m.name, m.lr, clip, WORKERS[clip],
                                                  " prompt-loss" if PROMPT_LOSS[clip] else "")


def target_of(task):
    return task.get("solution") or str(task["answer"])


def rel(got, ref):
    got = np.asarray(got, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    mx = float(np.max(np.abs(ref))) if ref.size else 0.0
    d = float(np.max(np.abs(got - ref))) if ref.size else 0.0
    return d / mx if mx > 0 else (0.0 if d == 0 else math.inf)


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def read_weights(path):
    """({name: float64 tensor}, {name: stored dtype}, metadata, names in file order)."""
    f = t2ref.SafetensorsFile(path)
    w = {n: f.tensor(n, torch.float64).clone() for n in f.names()}
    return w, {n: f.header[n]["dtype"] for n in f.names()}, dict(f.metadata), f.names()


# ---------------------------------------------------------------------------------------------
# the reference
# ---------------------------------------------------------------------------------------------

def python_ids(tok_json, system, prompt, target, eot):
    """(ids, k0, user): the ids of chat prompt + target + eot made here, Llama 3's template (messages trimmed,
    generation prompt) over make_model's byte-level vocabulary (one token per byte, no merges) and its
    specials; k0 the first target id, user the first id of the user's turn (after the system turn)."""
    added = {t["content"]: t["id"] for t in tok_json["added_tokens"]}
    vocab = tok_json["model"]["vocab"]
    byte_id = {b: vocab[c] for b, c in bpe.byte_chars().items()}

    def enc(text):
        out = []
        pat = "(" + "|".join(re.escape(s) for s in SPECIALS) + ")"
        for piece in re.split(pat, text):
            if piece in added:
                out.append(added[piece])
            else:
                out += [byte_id[b] for b in piece.encode("utf-8")]
        return out

    s = "<|begin_of_text|>"
    if system:
        s += "<|start_header_id|>system<|end_header_id|>\n\n" + system.strip() + "<|eot_id|>"
    user = len(enc(s))      # where the user's turn starts (the first target of --prompt-loss)
    s += "<|start_header_id|>user<|end_header_id|>\n\n" + prompt.strip() + "<|eot_id|>"
    s += "<|start_header_id|>assistant<|end_header_id|>\n\n"
    p = enc(s)
    return p + enc(target) + [added[eot]], len(p), user


def reference_sft(cfg, w0, examples, steps, lr, clip):
    """Full-batch training as `t2 model sft` defines it, in float64.  Returns (final weights, [loss at
    each step, before its update], [gradient norm before clipping], {name: noise allowance}).

    The allowance of an element is Σ_t 2·lr·σ_t / (√v̂_t + ε) with σ_t = NOISE · max|g_t| of its tensor:
    about how far the Adam steps move that element when each gradient carries an error σ_t (a float32
    gradient is within ~1e-6·max|g| of the float64 one, as check_grad.py finds).  It is negligible
    unless √v̂ is tiny: an element whose first gradient is within a few ε of zero takes a first step of
    lr·g/(|g| + ε), whose size float32 rounding alone decides."""
    P = {n: w.double().clone().requires_grad_(True) for n, w in w0.items()}
    m = {n: torch.zeros_like(p) for n, p in P.items()}
    v = {n: torch.zeros_like(p) for n, p in P.items()}
    allow = {n: torch.zeros_like(p) for n, p in P.items()}
    ntok = sum(len(ids) - k0 for ids, k0 in examples)
    losses, norms = [], []
    names = list(P)
    for t in range(1, steps + 1):
        J = 0
        for ids, k0 in examples:
            J = J + grad_ref.completion_logprob(grad_ref.forward(cfg, P, ids), ids, k0)
        loss = -J / ntok
        grads = torch.autograd.grad(loss, [P[n] for n in names], allow_unused=True)
        g = {n: (gr if gr is not None else torch.zeros_like(P[n])) for n, gr in zip(names, grads)}
        norm = math.sqrt(sum(float((x * x).sum()) for x in g.values()))
        losses.append(float(loss))
        norms.append(norm)
        scale = clip / norm if clip > 0 and norm > clip else 1.0
        c1, c2 = 1.0 - BETA1 ** t, 1.0 - BETA2 ** t
        with torch.no_grad():
            for n in names:
                gs = g[n] * scale
                m[n].mul_(BETA1).add_((1 - BETA1) * gs)
                v[n].mul_(BETA2).add_((1 - BETA2) * gs * gs)
                den = torch.sqrt(v[n] / c2) + EPS
                P[n].sub_(lr * (m[n] / c1) / den)
                allow[n].add_(2 * lr * NOISE * float(gs.abs().max()) / den)
    return {n: p.detach() for n, p in P.items()}, losses, norms, allow


# ---------------------------------------------------------------------------------------------
# the checks
# ---------------------------------------------------------------------------------------------

class Model:
    def __init__(self, name, path):
        self.name = name
        self.dir = path
        self.cfg, w = svf_ref.load_base(path)
        self.w0 = {n: t.double() for n, t in w.items()}
        self.names = list(t2ref.read_safetensors_header(os.path.join(path, "model.safetensors"))[0])
        with open(os.path.join(path, "tokenizer.json"), encoding="utf-8") as f:
            self.tok_json = json.load(f)
        self.examples = None     # [(ids, k0)] once the token ids are known
        self.lr = INIT_LR if name == "init" else LR


class Checker(harness.Checker):
    def __init__(self, runner, res, workdir):
        super().__init__(runner, res, workdir)
        self.worst = {}
        self.data = os.path.join(workdir, "files", "tasks.jsonl")

    def note(self, kind, ratio, where):
        if kind not in self.worst or ratio > self.worst[kind][0]:
            self.worst[kind] = (ratio, where)

    def run_bytes(self, args, data=b""):
        """Run t2 with stdin data and require exit 0; (stdout bytes, stderr text)."""
        self.r.calls += 1
        t0 = time.time()
        try:
            p = subprocess.run([self.r.t2] + args, input=data, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               timeout=self.r.timeout, env=self.r.env)
        except subprocess.TimeoutExpired:
            raise Failure("t2 %s timed out" % " ".join(args[:2]))
        finally:
            self.r.seconds += time.time() - t0
        if p.returncode != 0:
            raise Failure("t2 %s exited %d: %s" % (" ".join(args[:2]), p.returncode,
                                                   tail(p.stderr.decode("utf-8", "replace"))))
        return p.stdout, p.stderr.decode("utf-8", "replace")

    # -- models and data ------------------------------------------------------------------------

    def make_models(self, only):
        base = os.path.join(self.workdir, "files", "models")
        out = []
        untied = os.path.join(base, "untied")
        subprocess.run([sys.executable, MAKE_MODEL, "--out", untied, "--seed", "11", "--layers", "2",
                        "--hidden", "64"], check=True, stdout=subprocess.DEVNULL)
        if not only or only in "untied":
            out.append(Model("untied", untied))
        if not only or only in "tied":
            tied = os.path.join(base, "tied")
            subprocess.run([sys.executable, MAKE_MODEL, "--out", tied, "--seed", "12", "--layers", "2",
                            "--hidden", "64"], check=True, stdout=subprocess.DEVNULL)
            cfg = t2ref.load_config(tied)
            cfg["tie_word_embeddings"] = True
            t2ref.write_checkpoint(tied, cfg, "f32", seed=12)   # rewrites config.json and the weights
            out.append(Model("tied", tied))
        if not only or only in "init":
            m = self.attempt("init (training from scratch)", lambda: self.init_checks(untied, base))
            if m is not None:
                out.append(m)
        return out

    def write_data(self):
        with open(self.data, "w", encoding="utf-8") as f:
            for i, t in enumerate(TASKS):
                f.write(json.dumps(t, ensure_ascii=False) + "\n")
                if i == 0:
                    f.write("\n")       # blank lines are skipped

    def token_ids(self, m):
        """[(ids, k0, user)] of the tasks from t2 model chat + tokenize, checked against python_ids (which
        gives user, the first target of --prompt-loss)."""
        eot_out, _ = self.run_bytes(["model", "tokenize", "--model", m.dir, "--no-special"], b"<|eot_id|>")
        eot = [int(x) for x in eot_out.split()]
        if len(eot) != 1:
            raise Failure("<|eot_id|> tokenises to %s" % eot)
        examples, mism = [], []
        for task in TASKS:
            args = ["model", "chat", "--model", m.dir]
            if task.get("system"):
                args += ["--system", task["system"]]
            args += ["--user", task["prompt"]]
            text, err = self.run_bytes(args)
            stop = re.search(r"stop: (\S+) \(id (-?\d+)\)", err)
            if not stop or stop.group(1) != "<|eot_id|>" or int(stop.group(2)) != eot[0]:
                raise Failure("t2 model chat names the stop token %r, want <|eot_id|> (id %d)"
                              % (stop.group(0) if stop else err.strip(), eot[0]))
            p_out, _ = self.run_bytes(["model", "tokenize", "--model", m.dir, "--no-special"], text)
            t_out, _ = self.run_bytes(["model", "tokenize", "--model", m.dir, "--no-special"],
                                      target_of(task).encode("utf-8"))
            p = [int(x) for x in p_out.split()]
            a = [int(x) for x in t_out.split()]
            ids, k0 = p + a + eot, len(p)
            want = python_ids(m.tok_json, task.get("system"), task["prompt"], target_of(task), "<|eot_id|>")
            if (ids, k0) != want[:2]:
                mism.append(task["id"])
            examples.append((ids, k0, want[2]))
        if mism:
            raise Failure("t2's ids differ from the Python rendering for %s" % ", ".join(mism))
        n = [len(ids) for ids, _, _ in examples]
        tgt = [len(ids) - k0 for ids, k0, _ in examples]
        self.res.report("PASS", "%s token ids" % m.name, "3 examples of %s ids, %s target tokens (eot id %d); "
                        "equal to the Python rendering" % (n, tgt, eot[0]))
        m.examples = examples

    # -- sft against the reference -----------------------------------------------------------------

    def sft(self, m, out, clip, extra=()):
        args = ["model", "sft", "--model", m.dir, "--data", self.data, "--out", out, "--steps", str(STEPS),
                "--batch", str(BATCH), "--lr", "%g" % m.lr, "--min-lr", "%g" % m.lr, "--warmup", "0",
                "--clip", "%g" % clip, "--log-every", "1", "--seed", "0", "--workers", str(WORKERS[clip])] + list(extra)
        stdout, stderr = self.r.ok(args)
        logs = {}
        for line in stdout.splitlines():
            g = re.match(r"step (\d+)/(\d+)\s+loss (\S+)\s+grad-norm (\S+)\s+lr (\S+)", line)
            if g:
                logs[int(g.group(1))] = (float(g.group(3)), float(g.group(4)), float(g.group(5)))
        return logs, stdout, stderr

    def compare_weights(self, m, got, ref_w, allow):
        """Per tensor: max|diff| / max|w_ref| (the plain measure), the elements beyond W_TOL·max|w_ref|,
        and the worst |diff| / (W_TOL·max|w_ref| + allowance) (the pass measure, ≤ 1)."""
        plain, plain_at, ratio, ratio_at, over, moved = 0.0, "", 0.0, "", 0, math.inf
        for n in ref_w:
            if list(got[n].shape) != list(ref_w[n].shape):
                raise Failure("%s has shape %s, want %s" % (n, list(got[n].shape), list(ref_w[n].shape)))
            mx = float(ref_w[n].abs().max())
            d = (got[n] - ref_w[n]).abs()
            r = float(d.max()) / mx
            if r >= plain:
                plain, plain_at = r, n
            over += int((d > W_TOL * mx).sum())
            q = d / (W_TOL * mx + allow[n])
            k = int(torch.argmax(q))
            if float(q.reshape(-1)[k]) >= ratio:
                ratio = float(q.reshape(-1)[k])
                ratio_at = "%s[%d] (t2 %.7g, ref %.7g, allowance %.1e)" % (
                    n, k, float(got[n].reshape(-1)[k]), float(ref_w[n].reshape(-1)[k]), float(allow[n].reshape(-1)[k]))
            moved = min(moved, rel(m.w0[n].numpy(), ref_w[n].numpy()))
        return plain, plain_at, ratio, ratio_at, over, moved

    def sft_check(self, m, clip):
        if m.examples is None:
            raise Failure("no token ids (see above)")
        what = run_name(m, clip)
        out = os.path.join(self.workdir, "files", "%s-clip%g" % (m.name, clip))
        logs, stdout, _ = self.sft(m, out, clip, ["--prompt-loss"] if PROMPT_LOSS[clip] else [])
        examples = [(ids, user if PROMPT_LOSS[clip] else k0) for ids, k0, user in m.examples]
        ref_w, losses, norms, allow = reference_sft(m.cfg, m.w0, examples, STEPS, m.lr, clip)
        got, dtypes, meta, order = read_weights(os.path.join(out, "model.safetensors"))
        if set(order) != set(m.names):
            raise Failure("tensors %s, want the checkpoint's (difference %s)"
                          % (len(order), sorted(set(order) ^ set(m.names))[:4]))
        bad = [n for n in order if dtypes[n] != "F32"]
        if bad:
            raise Failure("not F32: %s (%s)" % (bad[:3], dtypes[bad[0]]))
        plain, plain_at, ratio, ratio_at, over, moved = self.compare_weights(m, got, ref_w, allow)
        self.note("weights (plain)", plain, "%s: %s" % (what, plain_at))
        self.note("weights / tolerance", ratio, "%s: %s" % (what, ratio_at))
        problems = []
        if ratio > 1:
            problems.append("weights off: %s is %.2f × its tolerance" % (ratio_at, ratio))
        if moved < 20 * W_TOL:
            problems.append("training moves a tensor by only %.1e relative: too little to test" % moved)
        # the log: every step's loss (before its update) and gradient norm (before clipping)
        lw, nw = 0.0, 0.0
        for s in range(1, STEPS + 1):
            if s not in logs:
                problems.append("no log line for step %d in %r" % (s, tail(stdout, 200)))
                continue
            loss, gn, lr = logs[s]
            # allowed: LOSS_TOL relative plus half a unit of the printed %.4f (%.4g: 4 significant digits for the norm)
            if abs(loss - losses[s - 1]) > LOSS_TOL * abs(losses[s - 1]) + 0.5e-4:
                problems.append("step %d loss %.4f, ref %.6f" % (s, loss, losses[s - 1]))
            if abs(gn - norms[s - 1]) > LOSS_TOL * norms[s - 1] + 0.5e-3 * norms[s - 1]:
                problems.append("step %d grad-norm %.3f, ref %.6f" % (s, gn, norms[s - 1]))
            if abs(lr - m.lr) > 1e-3 * m.lr:
                problems.append("step %d lr %g, want constant %g" % (s, lr, m.lr))
            lw = max(lw, abs(loss - losses[s - 1]) / abs(losses[s - 1]))
            nw = max(nw, abs(gn - norms[s - 1]) / norms[s - 1])
        self.note("printed loss", lw, what)
        self.note("printed grad-norm", nw, what)
        try:
            ml = float(meta.get("t2_sft_loss"))
        except (TypeError, ValueError):
            ml = math.nan
        mlr = abs(ml - losses[-1]) / abs(losses[-1])
        self.note("metadata loss", mlr, what)
        if meta.get("t2_sft_step") != str(STEPS) or not mlr <= LOSS_TOL:
            problems.append("metadata t2_sft_step %r, t2_sft_loss %r (ref %.6f)"
                            % (meta.get("t2_sft_step"), meta.get("t2_sft_loss"), losses[-1]))
        for fn in SFT_FILES:
            src, dst = os.path.join(m.dir, fn), os.path.join(out, fn)
            if not os.path.exists(dst) or sha256(src) != sha256(dst):
                problems.append("%s not copied unchanged" % fn)
        clipped = sum(1 for n in norms if clip > 0 and n > clip)
        if clip > 0 and clipped == 0:
            problems.append("clipping never acts (norms %s)" % ", ".join("%.3g" % n for n in norms))
        detail = ("weights: worst max|diff|/max|w| %.2e at %s, %d element%s beyond %.0e·max|w| (worst diff / "
                  "tolerance with allowance %.2f); loss %s (ref %s, rel %.1e); grad-norm rel %.1e%s"
                  % (plain, plain_at.replace("model.", ""), over, "" if over == 1 else "s", W_TOL, ratio,
                     "/".join("%.4f" % logs[s][0] for s in sorted(logs)), "/".join("%.5f" % x for x in losses),
                     lw, nw, "; clipped at %d of %d steps" % (clipped, STEPS) if clip > 0 else ""))
        if problems:
            raise Failure(detail + "; " + "; ".join(problems))
        self.res.report("PASS", what, detail)
        return out, ref_w

    # -- BF16 save ---------------------------------------------------------------------------------

    def t2_logits(self, model_dir, ids, V):
        path = self.path("logits", ".npy")
        self.r.ok(["model", "logits", "--model", model_dir, "--ids", ",".join(map(str, ids)), "--out", path])
        lg = np.load(path)
        if lg.shape != (len(ids), V) or lg.dtype != np.float32 or not np.all(np.isfinite(lg)):
            raise Failure("logits file holds %s %s" % (lg.dtype, lg.shape))
        return lg.astype(np.float64)

    def bf16_check(self, m, f32_out):
        out = os.path.join(self.workdir, "files", "%s-bf16" % m.name)
        self.sft(m, out, 0.0, ["--dtype", "bf16"])
        got, dtypes, meta, order = read_weights(os.path.join(out, "model.safetensors"))
        f32, _, _, _ = read_weights(os.path.join(f32_out, "model.safetensors"))
        if set(order) != set(m.names):
            raise Failure("tensors %s, want the checkpoint's (difference %s)"
                          % (len(order), sorted(set(order) ^ set(m.names))[:4]))
        bad = [n for n in order if dtypes[n] != "BF16"]
        if bad:
            raise Failure("not BF16: %s (%s)" % (bad[:3], dtypes[bad[0]]))
        n_diff = 0
        for n in order:
            rounded = f32[n].float().to(torch.bfloat16).double()
            n_diff += int((rounded != got[n]).sum())
        if n_diff:
            raise Failure("%d values differ from the F32 save rounded to nearest even" % n_diff)
        self.res.report("PASS", "%s sft --dtype bf16 save" % m.name,
                        "%d BF16 tensors, every value the F32 save's rounded to nearest even" % len(order))
        ids = m.examples[0][0]
        V = m.cfg["vocab_size"]
        l16 = self.t2_logits(out, ids, V)
        l32 = self.t2_logits(f32_out, ids, V)
        r16 = grad_ref.forward(m.cfg, got, ids).detach().numpy()
        r32 = grad_ref.forward(m.cfg, f32, ids).detach().numpy()
        mx = float(np.max(np.abs(r32)))
        e16 = rel(l16, r16)
        e32 = rel(l32, r32)
        ediff = float(np.max(np.abs((l16 - l32) - (r16 - r32)))) / mx
        shift = float(np.max(np.abs(r16 - r32))) / mx
        self.note("bf16 logits", e16, m.name)
        self.note("bf16 - f32 logits", ediff, m.name)
        detail = ("BF16 folder vs reference rel %.1e, F32 folder %.1e (tol %.0e); BF16 rounding moves the logits "
                  "by %.2e relative, t2's move differs from the reference's by %.1e (tol %.0e)"
                  % (e16, e32, LOGIT_TOL, shift, ediff, BF16_DIFF_TOL))
        ok = e16 <= LOGIT_TOL and e32 <= LOGIT_TOL and ediff <= BF16_DIFF_TOL and shift < 2.0 ** -6
        self.res.report("PASS" if ok else "FAIL", "%s bf16 logits" % m.name, detail)

    # -- init ----------------------------------------------------------------------------------------

    def init_checks(self, template_dir, base):
        """A model folder from `t2 model init` (config and tokenizer of template_dir); returns its Model."""
        dirs = []
        for k in ("init", "init-again"):
            d = os.path.join(base, k)
            os.makedirs(d, exist_ok=True)
            for fn in SFT_FILES:
                shutil.copyfile(os.path.join(template_dir, fn), os.path.join(d, fn))
            self.r.ok(["model", "init", "--model", d, "--seed", str(INIT_SEED), "--std", "%g" % INIT_STD])
            dirs.append(d)
        p0, p1 = (os.path.join(d, "model.safetensors") for d in dirs)
        if sha256(p0) != sha256(p1):
            raise Failure("two inits with seed %d differ" % INIT_SEED)
        cfg = t2ref.load_config(dirs[0])
        w, dtypes, _, order = read_weights(p0)
        plan = {n: s for n, s, _ in t2ref.tensor_plan(cfg)}
        if set(order) != set(plan):
            raise Failure("tensors %s, want %s" % (sorted(set(order) ^ set(plan))[:4], "the checkpoint's"))
        problems = []
        L = cfg["num_hidden_layers"]
        for n in order:
            t = w[n]
            if list(t.shape) != plan[n] or dtypes[n] != "F32":
                problems.append("%s %s %s" % (n, dtypes[n], list(t.shape)))
            elif t.dim() == 1:
                if not bool((t == 1).all()):
                    problems.append("%s not all 1" % n)
            else:
                want = INIT_STD / math.sqrt(2 * L) if (".o_proj." in n or ".down_proj." in n) else INIT_STD
                sd = float(t.std())
                if abs(sd / want - 1) > 0.1 or abs(float(t.mean())) > 0.1 * want:
                    problems.append("%s std %.4g mean %.2g (want std %.4g)" % (n, sd, float(t.mean()), want))
        if problems:
            raise Failure("; ".join(problems[:4]))
        self.res.report("PASS", "init writes the model", "seed %d twice byte-identical; %d F32 tensors, the "
                        "checkpoint's names/shapes; std %g (o/down %.3g), norms 1"
                        % (INIT_SEED, len(order), INIT_STD, INIT_STD / math.sqrt(2 * L)))

        def refuse():
            h, mt = sha256(p0), os.stat(p0).st_mtime_ns
            rc, out, err, _ = self.r.run(["model", "init", "--model", dirs[0], "--seed", "99"])
            if rc != 1:
                raise Failure("exit %s (want 1): %s" % (rc, tail(err or out, 200)))
            if sha256(p0) != h or os.stat(p0).st_mtime_ns != mt:
                raise Failure("exit 1 but model.safetensors changed")
            if not err.strip():
                raise Failure("exit 1 without a message")
            self.res.report("PASS", "init refuses an existing model", "exit 1, file unchanged: %s" % tail(err, 100))
        self.attempt("init refuses an existing model", refuse)
        return Model("init", dirs[0])

    # -- refusals -----------------------------------------------------------------------------------

    def refusals(self, m):
        bad = os.path.join(self.workdir, "files", "bad.jsonl")
        with open(bad, "w", encoding="utf-8") as f:
            f.write(json.dumps(TASKS[0]) + "\n")
            f.write(json.dumps({"id": "no-prompt", "system": "s", "solution": "x", "answer": "y"}) + "\n")
            f.write(json.dumps(TASKS[1]) + "\n")
        out = os.path.join(self.workdir, "files", "refused-out")
        common = ["--out", out, "--steps", "1", "--batch", "1"]
        cases = [
            ("missing --data", ["model", "sft", "--model", m.dir] + common, 2, ["--data"]),
            ("--batch 0", ["model", "sft", "--model", m.dir, "--data", self.data, "--out", out, "--steps", "1",
                           "--batch", "0"], 2, ["--batch"]),
            ("--dtype f16", ["model", "sft", "--model", m.dir, "--data", self.data, "--dtype", "f16"] + common, 2,
             ["--dtype"]),
            ("a line without prompt", ["model", "sft", "--model", m.dir, "--data", bad] + common, 1,
             ["bad.jsonl", "prompt"]),
            # Llama 2 folds the system prompt into the first user turn: no system turn to start the targets after
            ("--prompt-loss under llama2", ["model", "sft", "--model", m.dir, "--data", self.data, "--prompt-loss",
                                            "--template", "llama2"] + common, 1, ["task t-sol", "--prompt-loss"]),
        ]
        for label, args, want_rc, needles in cases:
            what = "sft refuses %s" % label

            def one(args=args, want_rc=want_rc, needles=needles, label=label, what=what):
                rc, o, err, _ = self.r.run(args)
                if rc != want_rc:
                    raise Failure("exit %s (want %d): %s" % (rc, want_rc, tail(err or o, 200)))
                missing = [s for s in needles if s not in err]
                if label == "a line without prompt" and not re.search(r"bad\.jsonl:2\b|line 2\b", err):
                    missing.append("line 2")
                if missing:
                    raise Failure("message does not name %s: %s" % (", ".join(missing), tail(err, 200)))
                if os.path.exists(out):
                    raise Failure("exit %d but %s was created" % (rc, os.path.basename(out)))
                self.res.report("PASS", what, "exit %d: %s" % (rc, tail(err, 110)))
            self.attempt(what, one)


def main():
    ses = harness.Session("check_sft", __doc__, "scratch directory for models, data and outputs",
                          "run only models whose name contains this (untied, tied, init)", 40)
    if ses.t2 is None:
        return 2
    torch.set_num_threads(1)
    chk = Checker(ses.runner, ses.res, ses.workdir)
    chk.write_data()
    models = chk.make_models(ses.args.only)
    for m in models:
        chk.attempt("%s token ids" % m.name, lambda m=m: chk.token_ids(m))
        f32_out = None
        for clip in CLIPS:
            r = chk.attempt(run_name(m, clip), lambda m=m, clip=clip: chk.sft_check(m, clip))
            if clip == 0.0 and r is not None:
                f32_out = r[0]
        if m.name == "untied":
            if f32_out is None:
                ses.res.report("FAIL", "untied bf16", "no F32 save to compare with (see above)")
            else:
                chk.attempt("untied bf16", lambda m=m: chk.bf16_check(m, f32_out))
            chk.refusals(m)
    return ses.finish(chk.worst, 18)


if __name__ == "__main__":
    sys.exit(main())
