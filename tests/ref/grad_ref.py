#!/usr/bin/python3
"""grad_ref — the PyTorch autograd reference for `t2 model logprob-grad` (issue 5).

For token ids[0..n-1] and a completion starting at K (1 ≤ K < n) the objective is

    J = Σ_{t=K}^{n-1} log p(ids[t] | ids[0..t-1])

under the base model or the model adapted by an SVF expert or mixture (svf_ref.py):

    W'(z) = U diag(s ⊙ z) Vᵀ · Σs / Σ(s ⊙ z),    z' = Σₖ αₖ zₖ for a mixture,

with the thin SVD W = U diag(s) Vᵀ of each adapted base matrix from torch.linalg.svd in float64.
Gradients come from torch autograd through a Hugging Face semantics Llama / Mistral / Qwen2 forward
(the same semantics as t2ref.Model — RMSNorm, rotary embeddings with llama3 / linear scaling,
grouped-query attention with a causal and optionally sliding-window mask, SwiGLU, tied or untied
lm_head — written here again without inference_mode and KV cache so that autograd can run through
it), computed by default entirely in float64: the checkpoint's weights (F32 or BF16, widened exactly)
converted to float64, z and α in float64.

  wrt z        dJ/dz for every adapted matrix, at the expert's z (z = 1 without an expert; with a
               mixture, at z' and with respect to z').  Tensors "<weight base name>.z" of shape [r].
  wrt alpha    dJ/dαₖ of a mixture.  One tensor "alpha" of shape [k].
  wrt weights  dJ/dW for every tensor of the checkpoint (base model, no expert), same names and
               shapes; with tied embeddings "model.embed_tokens.weight" gets both uses.

Library:
    J, grads = logprob_grad(cfg, weights, ids, K, wrt="z", expert=None, mix=None, modules=None)
    logits = forward(cfg, params, ids)                    # differentiable, [n, vocab]
    W = recompose_t(U, s, Vh, z)                          # differentiable in z

CLI (mirrors `t2 model logprob-grad`, writes the same safetensors layout: F32 tensors and
__metadata__ {"logprob": "%.9g", "wrt": ...}):

  grad_ref.py --model DIR --ids P1,P2,... --completion-start K
              [--expert E.safetensors | --mix E1.safetensors:a1,E2.safetensors:a2] [--modules mlp|attn|all]
              [--wrt z|alpha|weights] [--svd-cache FILE] --out GRAD.safetensors [--precision f64|f32]

--svd-cache is accepted and ignored (the reference always makes its own SVD).  --modules defaults
to the matrices the expert's z vectors cover (its metadata "modules" is checked against them), or
mlp without an expert.  --precision f32 runs the forward, backward and SVD in float32 instead (a
diagnostic: how far a single-precision implementation lands from the float64 reference).
Only torch and numpy are used.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import svf_ref  # noqa: E402
import t2ref  # noqa: E402

WRT = ("z", "alpha", "weights")


# ---------------------------------------------------------------------------------------------
# differentiable pieces
# ---------------------------------------------------------------------------------------------

def recompose_t(U, s, Vh, z):
    """W'(z) = U diag(s ⊙ z) Vᵀ · Σs / Σ(s ⊙ z) as a tensor that autograd can differentiate in z
    (the normalisation factor included).  Computed in z's dtype."""
    dt = z.dtype
    U, s, Vh = U.to(dt), s.to(dt), Vh.to(dt)
    sz = s * z
    return (U * sz) @ Vh * (s.sum() / sz.sum())


def layer_windows(cfg):
    """Sliding window per layer (None = full causal attention), as t2ref.Model / HF decide it."""
    L = cfg["num_hidden_layers"]
    mt = cfg.get("model_type")
    sw = cfg.get("sliding_window")
    if mt == "mistral" and sw:
        return [int(sw)] * L
    if mt == "qwen2" and cfg.get("use_sliding_window") and sw:
        mwl = cfg.get("max_window_layers", L)
        return [int(sw) if i >= mwl else None for i in range(L)]
    return [None] * L


def _mask(n, window, dtype):
    """Additive causal (and sliding-window) mask [n, n]."""
    i = torch.arange(n)[:, None]
    j = torch.arange(n)[None, :]
    allowed = j <= i
    if window is not None:
        allowed &= (i - j) < window
    m = torch.zeros(n, n, dtype=dtype)
    m.masked_fill_(~allowed, float("-inf"))
    return m


def _rope(cfg, hd, n, dtype):
    """cos, sin [n, hd]: angles in float32 from float32 inverse frequencies, as HF computes them."""
    inv = t2ref.rope_inv_freq(cfg, hd)
    ang = torch.arange(n, dtype=torch.float32)[:, None] * inv[None, :]
    emb = torch.cat((ang, ang), dim=-1)
    return emb.cos().to(dtype), emb.sin().to(dtype)


def _rot(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


def forward(cfg, P, ids):
    """Logits [n, vocab] for ids (from position 0) with the parameters P (name → tensor, all of one
    floating dtype, any of them may require grad).  Hugging Face Llama / Mistral / Qwen2 semantics."""
    H = cfg["hidden_size"]
    nh = cfg["num_attention_heads"]
    nkv = cfg.get("num_key_value_heads") or nh
    hd = cfg.get("head_dim") or H // nh
    eps = float(cfg.get("rms_norm_eps", 1e-6))
    if cfg.get("hidden_act", "silu") != "silu":
        raise NotImplementedError("hidden_act %r" % cfg.get("hidden_act"))
    g = nh // nkv
    ids = torch.as_tensor(ids, dtype=torch.long).reshape(-1)
    n = ids.numel()
    emb = P["model.embed_tokens.weight"]
    dt = emb.dtype
    cos, sin = _rope(cfg, hd, n, dt)
    masks = {}

    def rms(x, w):
        return w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))

    def lin(x, base):
        return F.linear(x, P[base + ".weight"], P.get(base + ".bias"))

    x = emb[ids]                                                           # [n, H]
    for li, win in enumerate(layer_windows(cfg)):
        a = "model.layers.%d.self_attn." % li
        m = "model.layers.%d.mlp." % li
        h = rms(x, P["model.layers.%d.input_layernorm.weight" % li])
        q = lin(h, a + "q_proj").view(n, nh, hd).transpose(0, 1)            # [nh, n, hd]
        k = lin(h, a + "k_proj").view(n, nkv, hd).transpose(0, 1)           # [nkv, n, hd]
        v = lin(h, a + "v_proj").view(n, nkv, hd).transpose(0, 1)
        q = q * cos + _rot(q) * sin
        k = k * cos + _rot(k) * sin
        k = k.repeat_interleave(g, dim=0)                                   # query head h -> kv head h // g
        v = v.repeat_interleave(g, dim=0)
        if win not in masks:
            masks[win] = _mask(n, win, dt)
        s = torch.matmul(q, k.transpose(1, 2)) * (hd ** -0.5) + masks[win]  # [nh, n, n]
        att = torch.matmul(torch.softmax(s, dim=-1), v)                     # [nh, n, hd]
        x = x + lin(att.transpose(0, 1).reshape(n, nh * hd), a + "o_proj")
        h = rms(x, P["model.layers.%d.post_attention_layernorm.weight" % li])
        x = x + lin(F.silu(lin(h, m + "gate_proj")) * lin(h, m + "up_proj"), m + "down_proj")
    x = rms(x, P["model.norm.weight"])
    lm = P.get("lm_head.weight")
    if lm is None:
        if not cfg.get("tie_word_embeddings", False):
            raise KeyError("checkpoint lacks tensor lm_head.weight")
        lm = emb
    return F.linear(x, lm)


def completion_logprob(logits, ids, K):
    """J = Σ_{t=K}^{n-1} log softmax(logits[t-1])[ids[t]] (a 0-d tensor in logits' dtype)."""
    ids = torch.as_tensor(ids, dtype=torch.long).reshape(-1)
    n = ids.numel()
    if not 1 <= K < n:
        raise ValueError("completion start %d: need 1 <= K < n = %d" % (K, n))
    lp = torch.log_softmax(logits[K - 1:n - 1], dim=-1)
    return lp.gather(1, ids[K:, None]).sum()


def logprob_from_logits(logits, ids, K):
    """J in float64 from (e.g. t2's float32) logits [n, vocab] as a numpy array or tensor."""
    t = torch.as_tensor(np.asarray(logits)).double()
    return float(completion_logprob(t, ids, K))


# ---------------------------------------------------------------------------------------------
# the library entry point
# ---------------------------------------------------------------------------------------------

def logprob_grad(cfg, weights, ids, K, wrt="z", expert=None, mix=None, modules=None, svd=None,
                 dtype=torch.float64):
    """J and its gradient, as `t2 model logprob-grad` defines them.

    cfg, weights: a checkpoint's config and {name: tensor} (t2ref.load_weights / svf_ref.load_base).
    expert: {weight base name: z [r]} (an --expert), or mix: [(z dict, α)] (a --mix); at most one.
    modules: mlp|attn|all — without an expert the matrices held at z = 1 (default mlp); with one,
    checked against the matrices the z vectors cover.
    svd: an svf_ref.SVDCache of `weights` to reuse (default: a new float64 one; with dtype float32 a
    float32 one).  dtype: the compute dtype (float64 is the reference).

    Returns (J as a Python float, {output tensor name: gradient tensor (dtype)}), the names being
    "<base>.z", "alpha" or the checkpoint's tensor names."""
    if wrt not in WRT:
        raise ValueError("wrt %r: expected z, alpha or weights" % wrt)
    if expert is not None and mix is not None:
        raise ValueError("give an expert or a mixture, not both")
    if wrt == "alpha" and mix is None:
        raise ValueError("wrt alpha needs a mixture")
    if wrt == "weights" and (expert is not None or mix is not None):
        raise ValueError("wrt weights is for the base model (no expert)")
    ids = [int(t) for t in ids]
    V = cfg["vocab_size"]
    for t in ids:
        if not 0 <= t < V:
            raise ValueError("token id %d out of range [0, %d)" % (t, V))
    if not 1 <= K < len(ids):
        raise ValueError("completion start %d: need 1 <= K < n = %d" % (K, len(ids)))

    P = {name: w.to(dtype) for name, w in weights.items()}
    if wrt == "weights":
        # copies (never flag the caller's tensors), leaves of the graph
        leaves = {name: weights[name].detach().to(dtype, copy=True).requires_grad_(True) for name in weights}
        P = dict(leaves)
        J = completion_logprob(forward(cfg, P, ids), ids, K)
        grads = torch.autograd.grad(J, list(leaves.values()), allow_unused=True)
        out = {}
        for name, gr in zip(leaves, grads):
            out[name] = gr if gr is not None else torch.zeros_like(leaves[name])
        return float(J), out

    # z dicts involved (float, [r] each)
    if mix is not None:
        if not mix:
            raise ValueError("mix: no experts")
        names = list(mix[0][0].keys())
        for z, _ in mix[1:]:
            if set(z.keys()) != set(names):
                raise ValueError("mix: experts cover different matrices")
    elif expert is not None:
        names = list(expert.keys())
    else:
        names = svf_ref.adapted_names(cfg, modules or "mlp")
    if modules is not None:
        want = svf_ref.adapted_names(cfg, modules)
        if set(names) != set(want):
            raise ValueError("the expert covers the wrong matrices for modules %s (missing %s, extra %s)"
                             % (modules, sorted(set(want) - set(names))[:3], sorted(set(names) - set(want))[:3]))
    if svd is None:
        svd = svf_ref.SVDCache(weights, torch.float64 if dtype == torch.float64 else torch.float32)
    for name in names:
        if name + ".weight" not in weights:
            raise KeyError("z names %s, which the checkpoint does not have" % name)

    alpha = None
    if mix is not None:
        # α as T2 reads them (float32), then z' = Σ α z in the compute dtype
        alpha = torch.tensor([float(np.float32(a)) for _, a in mix], dtype=dtype,
                             requires_grad=(wrt == "alpha"))
        zs = {n: sum(alpha[k] * z[n].to(dtype).reshape(-1) for k, (z, _) in enumerate(mix)) for n in names}
        if wrt == "z":
            zs = {n: v.detach().requires_grad_(True) for n, v in zs.items()}
    elif expert is not None:
        zs = {n: expert[n].to(dtype).reshape(-1).clone().requires_grad_(True) for n in names}
    else:
        zs = {n: torch.ones(svd.rank(n), dtype=dtype, requires_grad=True) for n in names}

    for n in names:
        r = svd.rank(n)
        if zs[n].numel() != r:
            raise ValueError("%s: z has %d values, the matrix has rank %d" % (n, zs[n].numel(), r))
        U, s, Vh = svd.factors(n)
        P[n + ".weight"] = recompose_t(U, s, Vh, zs[n])
    J = completion_logprob(forward(cfg, P, ids), ids, K)
    if wrt == "alpha":
        (ga,) = torch.autograd.grad(J, [alpha])
        return float(J), {"alpha": ga}
    grads = torch.autograd.grad(J, [zs[n] for n in names])
    return float(J), {n + ".z": gr for n, gr in zip(names, grads)}


def write_grads(path, J, wrt, grads):
    """The output file of `t2 model logprob-grad`: F32 tensors, __metadata__ logprob (%.9g) and wrt."""
    entries = [t2ref.TensorEntry(name, list(g.shape), (lambda g=g: g.detach().float()))
               for name, g in grads.items()]
    t2ref.write_safetensors(path, entries, "F32", {"logprob": "%.9g" % J, "wrt": wrt})


def read_grads(path):
    """({name: float32 tensor}, metadata, {name: stored dtype}) of a gradient file."""
    f = t2ref.SafetensorsFile(path)
    out = {n: f.tensor(n, torch.float32).clone() for n in f.names()}
    return out, dict(f.metadata), {n: f.header[n]["dtype"] for n in f.names()}


# ---------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--ids", required=True)
    ap.add_argument("--completion-start", type=int, required=True)
    ap.add_argument("--expert")
    ap.add_argument("--mix")
    ap.add_argument("--modules", choices=["mlp", "attn", "all"])
    ap.add_argument("--wrt", choices=list(WRT), default="z")
    ap.add_argument("--svd-cache", help="accepted and ignored: the reference makes its own SVD")
    ap.add_argument("--out", required=True)
    ap.add_argument("--precision", choices=["f64", "f32"], default="f64")
    ap.add_argument("--threads", type=int, default=None)
    a = ap.parse_args(argv)

    torch.set_num_threads(a.threads or max(1, min(4, os.cpu_count() or 1)))
    dtype = torch.float64 if a.precision == "f64" else torch.float32
    if a.expert and a.mix:
        print("grad_ref: give --expert or --mix, not both", file=sys.stderr)
        return 2
    if a.wrt == "alpha" and not a.mix:
        print("grad_ref: --wrt alpha needs --mix", file=sys.stderr)
        return 2
    if a.wrt == "weights" and (a.expert or a.mix):
        print("grad_ref: --wrt weights is for the base model (no --expert / --mix)", file=sys.stderr)
        return 2
    expert = mix = None
    modules = a.modules
    try:
        if a.expert:
            expert = svf_ref.read_z(a.expert)
            meta_mod = svf_ref.read_meta(a.expert).get("modules")
            if modules is None:
                modules = meta_mod or svf_ref.modules_of(expert.keys())
        elif a.mix:
            mix = svf_ref.parse_experts(None, a.mix)
            if modules is None:
                modules = svf_ref.modules_of(mix[0][0].keys())
        cfg, weights = svf_ref.load_base(a.model)
        ids = svf_ref.parse_ids(a.ids)
        J, grads = logprob_grad(cfg, weights, ids, a.completion_start, a.wrt, expert, mix, modules,
                                dtype=dtype)
    except (ValueError, KeyError, OSError) as e:
        print("grad_ref: %s" % e, file=sys.stderr)
        return 1
    write_grads(a.out, J, a.wrt, grads)
    return 0


if __name__ == "__main__":
    sys.exit(main())
