#!/usr/bin/python3
"""lora_ref — the PyTorch reference for T2's LoRA adapters (engine/include/t2/lora.h).

For each adapted weight W (rows × cols) a LoRA holds A (rank × cols) and B (rows × rank) and the
adapted weight is

    W' = W + (alpha / rank) · B·A

which this module forms itself, in float64, from the checkpoint's base weights (F32, or BF16 widened
exactly) and runs through grad_ref.forward (Hugging Face Llama / Mistral / Qwen2 semantics, differentiable).

    J  = Σ_{t=K}^{n-1} log p'(ids[t] | ids[:t])                         (p' under W')
    KL = Σ_{t=K}^{n-1} KL(p'(·|ids[:t]) ‖ p(·|ids[:t]))                 (p under the base weights)

and the gradient of J − λ·KL with respect to every A and B comes from torch autograd.

Library:
    lora, meta = read_lora(path)                 # {weight base name: (A, B)} float32 tensors, metadata
    write_lora(path, lora, meta)                 # "<name>.lora_A" / ".lora_B" F32 tensors + __metadata__
    logits = lora_logits(cfg, weights, lora, scale, ids)             # float64 [n, vocab]
    J, KL, grads = logprob_grad(cfg, weights, ids, K, lora, scale, kl_coef)
        grads: {"<name>.lora_A": dJ'/dA, "<name>.lora_B": dJ'/dB} with J' = J − kl_coef·KL

Only torch and numpy are used (the safetensors container through t2ref).
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402

import grad_ref  # noqa: E402
import t2ref  # noqa: E402


def read_lora(path):
    """({base name: (A [rank, cols], B [rows, rank]) float32}, metadata) of a LoRA file."""
    f = t2ref.SafetensorsFile(path)
    parts = {}
    for name in f.names():
        for suffix, slot in ((".lora_A", 0), (".lora_B", 1)):
            if name.endswith(suffix):
                parts.setdefault(name[:-len(suffix)], [None, None])[slot] = f.tensor(name, torch.float32).clone()
                break
        else:
            raise ValueError("%s: tensor %r is not a LoRA factor" % (path, name))
    for base, (a, b) in parts.items():
        if a is None or b is None:
            raise ValueError("%s: %s lacks its %s" % (path, base, "lora_A" if a is None else "lora_B"))
    return {k: (v[0], v[1]) for k, v in parts.items()}, dict(f.metadata)


def write_lora(path, lora, meta):
    """A LoRA file: for each matrix (in the given order) "<name>.lora_A", "<name>.lora_B" as F32, and
    __metadata__ meta (format, version, fingerprint, rank, alpha, modules, ...)."""
    entries = []
    for name, (a, b) in lora.items():
        entries.append(t2ref.TensorEntry(name + ".lora_A", list(a.shape), (lambda a=a: a.float())))
        entries.append(t2ref.TensorEntry(name + ".lora_B", list(b.shape), (lambda b=b: b.float())))
    t2ref.write_safetensors(path, entries, "F32", meta)


def adapted_params(weights, lora, scale, dtype=torch.float64, leaves=None):
    """The parameters with W' = W + scale·B·A substituted (leaves: {name: (A, B)} tensors that
    require grad, else lora's values converted to dtype)."""
    P = {name: w.to(dtype) for name, w in weights.items()}
    for name, (a, b) in lora.items():
        key = name + ".weight"
        if key not in P:
            raise KeyError("LoRA names %s, which the checkpoint does not have" % name)
        A, B = leaves[name] if leaves else (a.to(dtype), b.to(dtype))
        if B.shape[0] != P[key].shape[0] or A.shape[1] != P[key].shape[1] or A.shape[0] != B.shape[1]:
            raise ValueError("%s: A %s and B %s do not fit W %s" % (name, list(A.shape), list(B.shape),
                                                                      list(P[key].shape)))
        P[key] = P[key] + scale * (B @ A)
    return P


def lora_logits(cfg, weights, lora, scale, ids):
    """float64 logits [n, vocab] of ids under W + scale·B·A."""
    with torch.no_grad():
        return grad_ref.forward(cfg, adapted_params(weights, lora, scale), ids)


def logprob_grad(cfg, weights, ids, K, lora, scale, kl_coef=0.0):
    """(J, KL, {factor name: gradient of J − kl_coef·KL}) in float64."""
    ids = [int(t) for t in ids]
    n = len(ids)
    if not 1 <= K < n:
        raise ValueError("completion start %d: need 1 <= K < n = %d" % (K, n))
    leaves = {name: (a.to(torch.float64).clone().requires_grad_(True), b.to(torch.float64).clone().requires_grad_(True))
              for name, (a, b) in lora.items()}
    logits = grad_ref.forward(cfg, adapted_params(weights, lora, scale, leaves=leaves), ids)
    J = grad_ref.completion_logprob(logits, ids, K)
    with torch.no_grad():
        base = grad_ref.forward(cfg, {k: w.to(torch.float64) for k, w in weights.items()}, ids)
    lp = torch.log_softmax(logits[K - 1:n - 1], dim=-1)
    lq = torch.log_softmax(base[K - 1:n - 1], dim=-1)
    KL = (lp.exp() * (lp - lq)).sum()
    obj = J - kl_coef * KL
    flat = [t for pair in leaves.values() for t in pair]
    grads = torch.autograd.grad(obj, flat)
    out = {}
    for i, name in enumerate(leaves):
        out[name + ".lora_A"] = grads[2 * i]
        out[name + ".lora_B"] = grads[2 * i + 1]
    return float(J), float(KL), out
