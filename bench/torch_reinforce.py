#!/usr/bin/python3
"""PyTorch side of the SVF REINFORCE benchmark (Transformer², Sun et al. 2025, §3.2): the time of one
policy-gradient step, to compare with bench_reinforce (the C engine) on the same checkpoint.

  torch_reinforce.py --model DIR [--threads 2] [--batch 8] [--prompt 64] [--completion 64]
                     [--steps 3] [--dtype f32|bf16] [--seed 12345] [--svd-cache FILE] [--json OUT]

Adapted matrices: mlp.gate_proj, mlp.up_proj, mlp.down_proj of every layer.  Their thin SVDs
W = U diag(s) Vᵀ (torch.linalg.svd of W in float32, full_matrices=False) are computed once, in a
child process (so that its memory does not count in this process's peak), and cached to a .pt file
(next to --json, else in /tmp; the name is keyed by the model's path, file sizes and mtimes), so
that reruns skip it.  The base MLP weights are then never loaded: only U, s, Vᵀ are kept.

Trainable parameters: p [r] per matrix (r = min(out, in)), initialised to 0; z = 2·sigmoid(p)
(max_mult 2, so z = 1 at the start).  One step, as the Sakana reference implementation does it:

  1. recompose every adapted matrix with autograd:
       W'(z) = U diag(s ⊙ z) Vᵀ · Σs / Σ(s ⊙ z)
     computed as (U * (s ⊙ z · Σs / Σ(s ⊙ z))) @ Vᵀ — the same product without materialising diag()
     (the reference's U @ diag_embed(s ⊙ z) @ Vᵀ spends another m·r² multiply-adds per matrix);
     in float32, then cast to bfloat16 with --dtype bf16;
  2. one forward of the whole batch, B rollouts of P prompt + C completion token ids (teacher
     forcing over all P + C positions), logits for the C completion positions only (the hidden
     states at positions P-1 .. P+C-2 go through the final norm and lm_head; the others never
     do), log-softmax in float32;
  3. loss = −(1/B) Σᵢ rᵢ Σ_{t in completion} log π(y_t | y_<t), rewards +1, −1, +1, ... (λ = 0, no KL);
  4. backward to p, clip the global gradient norm to 1e-3, Adam (lr 2e-3, betas 0.9/0.999, eps 1e-8).

The token ids are those of bench_reinforce.c (an LCG seeded with --seed, default 12345, id =
(state >> 8) mod vocab), so the printed mean log-prob and gradient norm of the last step can be
checked against the C engine's.  --dtype f32 computes in float32 (BF16 checkpoints are widened);
bf16 keeps weights and activations in bfloat16 as torch does (norms, softmax and the log-softmax
in float32, as Hugging Face does), the SVD factors and z in float32.

Reports the median time per step over --steps after one untimed warm-up step (and its split into
recomposition / forward / backward / update), tokens processed per second (B·(P+C) per step), and
the peak resident memory of this process (getrusage ru_maxrss; weights are read into private
memory, not mmap'd).  torch keeps no peak-memory statistics for CPU tensors, so torch_peak_mb is
null.  Not a test.
"""

import argparse
import hashlib
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "ref"))

torch = F = np = t2ref = None  # imported after the BLAS thread count is in the environment

MLP = ("gate_proj", "up_proj", "down_proj")
MAX_MULT = 2.0
LR, CLIP = 2e-3, 1e-3


def import_torch(threads):
    # Debian's torch runs f32 GEMMs in OpenBLAS, whose pthread pool is sized from the environment
    # when the library loads, not by torch.set_num_threads
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(threads)
    global torch, F, np, t2ref
    try:
        import numpy as np
        import torch
        import torch.nn.functional as F
        import t2ref
    except ImportError as e:
        print("torch_reinforce: PyTorch unavailable (%s); run with /usr/bin/python3" % e)
        sys.exit(77)
    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass


# ---------------------------------------------------------------------------------------------
# checkpoint reading (plain reads into private memory: no mmap'd pages in the resident set)
# ---------------------------------------------------------------------------------------------

class Reader:
    def __init__(self, model_dir):
        self.where = t2ref.checkpoint_files(model_dir)
        self.headers = {}

    def has(self, name):
        return name in self.where

    def tensor(self, name, dtype):
        path = self.where[name]
        if path not in self.headers:
            self.headers[path] = t2ref.read_safetensors_header(path)
        header, _, start = self.headers[path]
        info = header[name]
        npdt = {"F32": np.float32, "F16": np.float16, "BF16": np.int16}.get(info["dtype"])
        if npdt is None:
            raise ValueError("%s: unsupported dtype %s" % (name, info["dtype"]))
        b, e = info["data_offsets"]
        arr = np.empty(tuple(info["shape"]), dtype=npdt)
        if arr.nbytes != e - b:
            raise ValueError("%s: %d bytes for shape %s" % (name, e - b, info["shape"]))
        with open(path, "rb") as f:
            f.seek(start + b)
            if f.readinto(memoryview(arr).cast("B")) != arr.nbytes:
                raise IOError("%s: short read" % name)
        t = torch.from_numpy(arr)
        if info["dtype"] == "BF16":
            t = t.view(torch.bfloat16)
        return t if t.dtype == dtype else t.to(dtype)


def adapted_names(cfg):
    return ["model.layers.%d.mlp.%s" % (i, p) for i in range(cfg["num_hidden_layers"]) for p in MLP]


def default_cache_path(model_dir, json_out):
    files = sorted(set(t2ref.checkpoint_files(model_dir).values()))
    key = [os.path.abspath(model_dir)]
    for p in files:
        st = os.stat(p)
        key.append("%s:%d:%d" % (os.path.basename(p), st.st_size, st.st_mtime_ns))
    h = hashlib.sha1("\n".join(key).encode()).hexdigest()[:16]
    d = os.path.dirname(os.path.abspath(json_out)) if json_out else "/tmp"
    return os.path.join(d, "torch_reinforce_svd-%s.pt" % h)


def build_svd(model_dir, out):
    """The thin SVD of every adapted matrix, float32, saved to `out` (runs in a child process)."""
    cfg = t2ref.load_config(model_dir)
    rd = Reader(model_dir)
    names = adapted_names(cfg)
    fac = {}
    t_all = time.time()
    for i, n in enumerate(names):
        t0 = time.time()
        W = rd.tensor(n + ".weight", torch.float32)
        U, s, Vh = torch.linalg.svd(W, full_matrices=False)
        fac[n] = (U.contiguous(), s.contiguous(), Vh.contiguous())
        del W, U, s, Vh
        print("\rsvd %d/%d %s %dx%d %.1fs (total %.0fs)   " % (i + 1, len(names), n, fac[n][0].shape[0],
              fac[n][2].shape[1], time.time() - t0, time.time() - t_all), end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    tmp = out + ".tmp"
    torch.save({"model": os.path.abspath(model_dir), "names": names, "factors": fac,
                "seconds": time.time() - t_all, "torch": torch.__version__}, tmp)
    os.replace(tmp, out)


# ---------------------------------------------------------------------------------------------
# the model: Hugging Face Llama / Mistral / Qwen2 semantics, batched, differentiable
# ---------------------------------------------------------------------------------------------

def layer_windows(cfg):
    L = cfg["num_hidden_layers"]
    mt, sw = cfg.get("model_type"), cfg.get("sliding_window")
    if mt == "mistral" and sw:
        return [int(sw)] * L
    if mt == "qwen2" and cfg.get("use_sliding_window") and sw:
        mwl = cfg.get("max_window_layers", L)
        return [int(sw) if i >= mwl else None for i in range(L)]
    return [None] * L


class Net:
    def __init__(self, cfg, rd, dtype, T):
        self.cfg, self.dtype = cfg, dtype
        self.H = cfg["hidden_size"]
        self.V = cfg["vocab_size"]
        self.nh = cfg["num_attention_heads"]
        self.nkv = cfg.get("num_key_value_heads") or self.nh
        self.hd = cfg.get("head_dim") or self.H // self.nh
        self.g = self.nh // self.nkv
        self.eps = float(cfg.get("rms_norm_eps", 1e-6))
        if cfg.get("hidden_act", "silu") != "silu":
            raise NotImplementedError("hidden_act %r" % cfg.get("hidden_act"))

        def w(name, required=True):
            if not rd.has(name):
                if required:
                    raise KeyError("checkpoint lacks tensor %s" % name)
                return None
            return rd.tensor(name, dtype)

        self.embed = w("model.embed_tokens.weight")
        self.layers = []
        for i in range(cfg["num_hidden_layers"]):
            a, m = "model.layers.%d.self_attn." % i, "model.layers.%d.mlp." % i
            lw = dict(ln1=w("model.layers.%d.input_layernorm.weight" % i),
                      ln2=w("model.layers.%d.post_attention_layernorm.weight" % i))
            for k in ("q", "k", "v", "o"):
                lw["w" + k] = w(a + k + "_proj.weight")
                lw["b" + k] = w(a + k + "_proj.bias", False)
            for k in MLP:  # weights come from the SVD (W'), biases stay
                lw["b_" + k] = w(m + k + ".bias", False)
            self.layers.append(lw)
        self.norm = w("model.norm.weight")
        lm = w("lm_head.weight", required=not cfg.get("tie_word_embeddings", False))
        self.lm_head = lm if lm is not None else self.embed

        inv = t2ref.rope_inv_freq(cfg, self.hd)
        ang = torch.arange(T, dtype=torch.float32)[:, None] * inv[None, :]
        emb = torch.cat((ang, ang), dim=-1)
        self.cos, self.sin = emb.cos().to(dtype), emb.sin().to(dtype)
        self.masks = {}
        i, j = torch.arange(T)[:, None], torch.arange(T)[None, :]
        for win in set(layer_windows(cfg)):
            allowed = j <= i
            if win is not None:
                allowed &= (i - j) < win
            self.masks[win] = torch.zeros(T, T).masked_fill_(~allowed, float("-inf"))
        self.windows = layer_windows(cfg)

    def rms(self, x, w):
        xf = x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return w * xf.to(self.dtype)

    def hidden(self, ids, Wmlp):
        """Final hidden states [B, T, H] (before the last norm) for ids [B, T]; Wmlp[i] = (W'gate, W'up,
        W'down) of layer i."""
        B, T = ids.shape
        nh, nkv, hd, g = self.nh, self.nkv, self.hd, self.g
        x = self.embed[ids]
        for li, lw in enumerate(self.layers):
            h = self.rms(x, lw["ln1"])
            q = F.linear(h, lw["wq"], lw["bq"]).view(B, T, nh, hd).transpose(1, 2)     # [B, nh, T, hd]
            k = F.linear(h, lw["wk"], lw["bk"]).view(B, T, nkv, hd).transpose(1, 2)    # [B, nkv, T, hd]
            v = F.linear(h, lw["wv"], lw["bv"]).view(B, T, nkv, hd).transpose(1, 2)
            q = q * self.cos + t2ref.rotate_half(q) * self.sin
            k = k * self.cos + t2ref.rotate_half(k) * self.sin
            # query head h uses kv head h // g: the g query heads of a kv head side by side
            qg = q.reshape(B, nkv, g * T, hd)
            s = torch.matmul(qg, k.transpose(2, 3)) * (hd ** -0.5)                    # [B, nkv, g*T, T]
            s = s.float().view(B, nkv, g, T, T) + self.masks[self.windows[li]]
            pr = torch.softmax(s, dim=-1).to(self.dtype).view(B, nkv, g * T, T)
            att = torch.matmul(pr, v).view(B, nh, T, hd).transpose(1, 2).reshape(B, T, nh * hd)
            x = x + F.linear(att, lw["wo"], lw["bo"])
            h = self.rms(x, lw["ln2"])
            wg, wu, wd = Wmlp[li]
            x = x + F.linear(F.silu(F.linear(h, wg, lw["b_gate_proj"])) * F.linear(h, wu, lw["b_up_proj"]),
                             wd, lw["b_down_proj"])
        return x


# ---------------------------------------------------------------------------------------------
# benchmark
# ---------------------------------------------------------------------------------------------

def lcg_ids(B, T, V, seed):
    """bench_reinforce.c's token ids: state = state·1664525 + 1013904223 (mod 2³²), id = (state >> 8) mod V."""
    out = []
    st = seed & 0xFFFFFFFF
    for _ in range(B * T):
        st = (st * 1664525 + 1013904223) & 0xFFFFFFFF
        out.append((st >> 8) % V)
    return torch.tensor(out, dtype=torch.long).view(B, T)


def rss_mb(field="VmRSS"):
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--prompt", type=int, default=64)
    ap.add_argument("--completion", type=int, default=64)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--dtype", default="f32", choices=["f32", "bf16"])
    ap.add_argument("--seed", type=int, default=12345, help="LCG seed of the token ids (as bench_reinforce.c)")
    ap.add_argument("--svd-cache", default=None, help="the .pt file of the SVD factors (default: keyed by the model)")
    ap.add_argument("--json", default=None, help="also write the results here")
    ap.add_argument("--build-svd", default=None, help=argparse.SUPPRESS)  # child-process mode
    a = ap.parse_args()
    if min(a.batch, a.prompt, a.completion, a.steps, a.threads) < 1:
        ap.error("--batch, --prompt, --completion, --steps and --threads must be positive")
    import_torch(a.threads)

    if a.build_svd:
        build_svd(a.model, a.build_svd)
        return 0

    load_avg = os.getloadavg()[0]
    if load_avg > 0.5:
        print("torch_reinforce: warning: the machine is not idle (load %.2f); timings will be pessimistic" % load_avg,
              file=sys.stderr)
    cfg = t2ref.load_config(a.model)
    cache = a.svd_cache or default_cache_path(a.model, a.json)
    svd_built_s = None
    if not os.path.exists(cache):
        print("torch_reinforce: SVD of the adapted matrices (once; cached to %s)" % cache, file=sys.stderr)
        t0 = time.time()
        subprocess.run([sys.executable, os.path.abspath(__file__), "--model", a.model, "--threads", str(a.threads),
                        "--build-svd", cache], check=True)
        svd_built_s = time.time() - t0

    dtype = torch.float32 if a.dtype == "f32" else torch.bfloat16
    B, P, C = a.batch, a.prompt, a.completion
    T = P + C
    t0 = time.time()
    net = Net(cfg, Reader(a.model), dtype, T)
    blob = torch.load(cache)
    names = adapted_names(cfg)
    if blob.get("names") != names:
        raise SystemExit("torch_reinforce: %s was made for other matrices; delete it" % cache)
    fac = blob["factors"]
    svd_seconds = blob.get("seconds")
    del blob
    load_s = time.time() - t0

    # policy parameters p (z = 2·sigmoid(p) = 1 at p = 0), the constant Σs of each matrix
    params = [torch.zeros(fac[n][1].numel(), dtype=torch.float32, requires_grad=True) for n in names]
    s_sum = [fac[n][1].sum() for n in names]
    opt = torch.optim.Adam(params, lr=LR, betas=(0.9, 0.999), eps=1e-8)
    n_params = sum(p.numel() for p in params)

    ids = lcg_ids(B, T, net.V, a.seed)
    target = ids[:, P:]                                               # y_t, t = P .. T-1
    reward = torch.tensor([1.0 if i % 2 == 0 else -1.0 for i in range(B)])

    def step():
        t0 = time.perf_counter()
        W = []
        for n, p, ss in zip(names, params, s_sum):
            U, s, Vh = fac[n]
            sz = s * (MAX_MULT * torch.sigmoid(p))
            Wn = (U * (sz * (ss / sz.sum()))) @ Vh                    # U diag(s⊙z) Vᵀ · Σs/Σ(s⊙z)
            W.append(Wn if dtype == torch.float32 else Wn.to(dtype))
        Wmlp = [W[3 * i:3 * i + 3] for i in range(len(net.layers))]
        t1 = time.perf_counter()
        x = net.hidden(ids, Wmlp)[:, P - 1:T - 1]                      # positions predicting the completion
        logits = F.linear(net.rms(x, net.norm), net.lm_head).float()  # [B, C, V]
        lp = torch.log_softmax(logits, dim=-1).gather(-1, target[..., None]).squeeze(-1).sum(-1)  # [B]
        loss = -(reward * lp).sum() / B
        t2 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        t3 = time.perf_counter()
        gn = torch.nn.utils.clip_grad_norm_(params, CLIP)
        opt.step()
        t4 = time.perf_counter()
        return dict(total=t4 - t0, recompose=t1 - t0, forward=t2 - t1, backward=t3 - t2, update=t4 - t3,
                    mean_logprob=float(lp.sum()) / (B * C), grad_norm=float(gn))

    rss_setup = rss_mb()
    print("torch_reinforce: %s, %d adapted matrices (%d parameters), loaded in %.1fs; warm-up step..."
          % (a.model, len(names), n_params, load_s), file=sys.stderr)
    st = step()  # warm-up: page faults, allocator, kernel selection
    runs = []
    for k in range(a.steps):
        runs.append(step())
        print("  step %d: %.0f ms" % (k + 1, 1e3 * runs[-1]["total"]), file=sys.stderr)
    last = runs[-1]
    med = {k: 1e3 * statistics.median(r[k] for r in runs) for k in ("total", "recompose", "forward", "backward", "update")}
    ms = med["total"]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    tok = B * T

    print("torch %s REINFORCE step: %s, --dtype %s, %d adapted matrices (%d parameters), batch %d x (%d + %d) tokens, "
          "%d threads" % (torch.__version__, a.model, a.dtype, len(names), n_params, B, P, C, a.threads))
    print("  %.0f ms/step (median of %d), %.0f tokens/s, peak RSS %.0f MB (%.0f MB after setup)"
          % (ms, a.steps, tok / (ms / 1e3), peak, rss_setup or 0))
    print("  split: recompose W' %.0f ms, forward %.0f ms, backward %.0f ms, clip + Adam %.0f ms"
          % (med["recompose"], med["forward"], med["backward"], med["update"]))
    print("  last step: mean log-prob per completion token %.3f, gradient norm %.3g" % (last["mean_logprob"], last["grad_norm"]))
    if a.json:
        res = {
            "engine": "torch", "torch_version": torch.__version__, "machine": platform.machine(),
            "model": os.path.abspath(a.model), "dtype": a.dtype, "threads": a.threads,
            "batch": B, "prompt": P, "completion": C, "steps": a.steps, "seed": a.seed,
            "ms_per_step": ms, "step_ms": [1e3 * r["total"] for r in runs],
            "recompose_ms": med["recompose"], "forward_ms": med["forward"], "backward_ms": med["backward"],
            "update_ms": med["update"],
            "tokens_per_step": tok, "tokens_per_s": tok / (ms / 1e3),
            "peak_rss_mb": peak, "rss_after_setup_mb": rss_setup, "torch_peak_mb": None,
            "adapted_matrices": len(names), "parameters": n_params,
            "logits": "completion positions only",
            "mean_logprob": last["mean_logprob"], "grad_norm": last["grad_norm"],
            "warmup_mean_logprob": st["mean_logprob"], "warmup_grad_norm": st["grad_norm"],
            "svd_cache": cache, "svd_seconds": svd_seconds, "svd_built_this_run_s": svd_built_s,
            "load_s": load_s, "load_average_before": load_avg,
        }
        with open(a.json, "w") as f:
            json.dump(res, f, indent=2)
            f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
