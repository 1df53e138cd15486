#!/usr/bin/python3
"""svf_ref — the PyTorch reference for SVF experts (Transformer², Sun et al. 2025, §3.1).

For an adapted weight W (m×n) with thin SVD W = U diag(s) Vᵀ (r = min(m, n)) and an expert vector
z ∈ ℝʳ, the adapted weight is

    W' = U diag(s ⊙ z) Vᵀ · (Σs / Σ(s ⊙ z))

and a mixture of experts uses z' = Σₖ αₖ zₖ (mixture first, then the normalisation).

This module recomposes W' itself from the checkpoint's base weights with torch.linalg.svd in
float64 — independent of T2's SVD cache — and runs t2ref's float32 Hugging Face model with the
adapted weights substituted.  Only torch and numpy are used.

Library:
    names = adapted_names(cfg, "mlp" | "attn" | "all")       # ["model.layers.0.mlp.gate_proj", ...]
    z = read_z(path)                                          # {"model.layers.0.mlp.gate_proj": tensor[r]}
    z = mix_z([(z1, 0.3), (z2, 0.7)])                         # z' = Σ α z
    model = adapted_model(model_dir, z)                       # t2ref.Model with W' substituted
    write_z(path, z, metadata=None)                           # raw "<weight>.z" F32 tensors

CLI:
  svf_ref.py logits   --model DIR --ids 1,2,3 --out F.npy (--expert E | --mix E1:0.3,E2:0.7)
                      [--modules mlp|attn|all]
  svf_ref.py generate --model DIR --ids 1,2,3 --max-tokens N (--expert E | --mix ...) [--json]

--modules (default: every matrix the z files name) checks that the z vectors cover exactly the
matrices of those modules.  Expert files are read as plain safetensors: any tensor "<weight>.z".
"""

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
import torch  # noqa: E402

import t2ref  # noqa: E402

ATTN = ("q_proj", "k_proj", "v_proj", "o_proj")
MLP = ("gate_proj", "up_proj", "down_proj")


def adapted_names(cfg, modules="mlp"):
    """Weight names (without ".weight") adapted for `modules`, in T2's cache order: layer by
    layer, q k v o gate up down within a layer."""
    if modules not in ("mlp", "attn", "all"):
        raise ValueError("modules %r: expected mlp, attn or all" % modules)
    out = []
    for i in range(cfg["num_hidden_layers"]):
        if modules in ("attn", "all"):
            out += ["model.layers.%d.self_attn.%s" % (i, p) for p in ATTN]
        if modules in ("mlp", "all"):
            out += ["model.layers.%d.mlp.%s" % (i, p) for p in MLP]
    return out


def modules_of(names):
    """'mlp', 'attn' or 'all' from a set of adapted weight names."""
    has_attn = any(".self_attn." in n for n in names)
    has_mlp = any(".mlp." in n for n in names)
    return "all" if has_attn and has_mlp else "attn" if has_attn else "mlp"


def read_z(path):
    """{weight name: float32 tensor [r]} of every "<weight>.z" tensor of a safetensors file."""
    f = t2ref.SafetensorsFile(path)
    out = {}
    for name in f.names():
        if not name.endswith(".z"):
            raise ValueError("%s: tensor %r is not a z vector" % (path, name))
        out[name[:-2]] = f.tensor(name, torch.float32).clone()
    return out


def read_meta(path):
    return t2ref.read_safetensors_header(path)[1]


def write_z(path, z, metadata=None):
    """Write {weight name: tensor [r]} as "<weight>.z" F32 tensors (a raw z file for `t2 model expert
    new`, or with metadata an expert)."""
    entries = [t2ref.TensorEntry(name + ".z", [int(v.numel())], (lambda v=v: v.detach().float().reshape(-1)))
               for name, v in z.items()]
    t2ref.write_safetensors(path, entries, "F32", metadata)


def mix_z(parts):
    """z' = Σ α z over [(z dict, α)], α a number or a {name: α} dict (per matrix).  Accumulates
    in float64 like T2 and rounds to float32 once."""
    if not parts:
        raise ValueError("mix: no experts")
    names = list(parts[0][0].keys())
    for z, _ in parts[1:]:
        if set(z.keys()) != set(names):
            raise ValueError("mix: experts cover different matrices")
    out = {}
    for n in names:
        acc = torch.zeros_like(parts[0][0][n], dtype=torch.float64)
        for z, a in parts:
            alpha = a[n] if isinstance(a, dict) else a
            acc += float(np.float32(alpha)) * z[n].double()
        out[n] = acc.float()
    return out


class SVDCache:
    """Thin SVDs of a checkpoint's matrices, computed on first use: float64 (the reference), or
    float32 to see how much a single-precision SVD alone is off (factors returned as float64)."""

    def __init__(self, weights, dtype=torch.float64):
        self.weights = weights
        self.dtype = dtype
        self.f = {}

    def factors(self, name):
        if name not in self.f:
            w = self.weights[name + ".weight"].to(self.dtype)
            U, s, Vh = torch.linalg.svd(w, full_matrices=False)
            self.f[name] = (U.double(), s.double(), Vh.double())
        return self.f[name]

    def rank(self, name):
        w = self.weights[name + ".weight"]
        return min(w.shape)


def recompose(U, s, Vh, z):
    """W' = U diag(s ⊙ z) Vᵀ · Σs / Σ(s ⊙ z), in float64."""
    z = z.double()
    sz = s * z
    den = float(sz.sum())
    if not den > 0:
        raise ValueError("Σ(s ⊙ z) = %g: the normalisation needs it positive" % den)
    return (U * sz) @ Vh * (float(s.sum()) / den)


def adapted_weights(weights, z, modules=None, svd=None):
    """A copy of `weights` (name → float32 tensor) with every matrix named in z replaced by its
    recomposed W' (float32).  With modules, z must cover exactly those matrices."""
    svd = svd or SVDCache(weights)
    if modules is not None:
        n_layers = len({n.split(".")[2] for n in weights if n.startswith("model.layers.")})
        want = set(adapted_names({"num_hidden_layers": n_layers}, modules))
        have = set(z.keys())
        if have != want:
            raise ValueError("z covers the wrong matrices for modules %s (missing %s, extra %s)"
                             % (modules, sorted(want - have)[:3], sorted(have - want)[:3]))
    out = dict(weights)
    for name, zv in z.items():
        key = name + ".weight"
        if key not in weights:
            raise KeyError("z names %s, which the checkpoint does not have" % name)
        r = svd.rank(name)
        if zv.numel() != r:
            raise ValueError("%s: z has %d values, the matrix has rank %d" % (name, zv.numel(), r))
        U, s, Vh = svd.factors(name)
        out[key] = recompose(U, s, Vh, zv.reshape(-1)).float()
    return out


def load_base(model_dir):
    """(config, float32 weights) of a checkpoint (BF16/F16 widened exactly)."""
    return t2ref.load_config(model_dir), t2ref.load_weights(model_dir, torch.float32)


def adapted_model(model_dir, z, modules=None, base=None, svd=None):
    """t2ref.Model (float32) of model_dir with the weights adapted by z.  base: (cfg, weights)
    from load_base to avoid reloading; svd: an SVDCache of those weights to reuse."""
    cfg, weights = base if base is not None else load_base(model_dir)
    return t2ref.Model(cfg, adapted_weights(weights, z, modules, svd), torch.float32)


def parse_ids(s):
    ids = [int(x) for x in s.replace(" ", "").split(",") if x != ""]
    if not ids:
        raise SystemExit("--ids: need at least one token id")
    return ids


def parse_experts(expert, mix):
    """[(z dict, α)] from --expert FILE or --mix F1:a,F2:b."""
    if bool(expert) == bool(mix):
        raise SystemExit("give --expert or --mix (one of them)")
    if expert:
        return [(read_z(expert), 1.0)]
    parts = []
    for item in mix.split(","):
        path, sep, a = item.rpartition(":")
        if not sep or not path:
            raise SystemExit("--mix: %r is not FILE:WEIGHT" % item)
        parts.append((read_z(path), float(a)))
    return parts


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("logits", "generate"):
        p = sub.add_parser(name)
        p.add_argument("--model", required=True)
        p.add_argument("--ids", required=True)
        p.add_argument("--expert")
        p.add_argument("--mix")
        p.add_argument("--modules", choices=["mlp", "attn", "all"])
        if name == "logits":
            p.add_argument("--out", required=True)
        else:
            p.add_argument("--max-tokens", type=int, required=True)
            p.add_argument("--json", action="store_true")
    a = ap.parse_args()

    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    z = mix_z(parse_experts(a.expert, a.mix))
    model = adapted_model(a.model, z, a.modules)
    ids = parse_ids(a.ids)
    for t in ids:
        if not 0 <= t < model.V:
            raise SystemExit("token id %d out of range [0, %d)" % (t, model.V))
    if a.cmd == "logits":
        np.save(a.out, model.logits(ids).numpy().astype(np.float32))
        return
    out, step_logits = model.generate(ids, a.max_tokens)
    if a.json:
        lp = torch.log_softmax(step_logits.double(), dim=-1)
        print(json.dumps({"ids": out, "logprobs": [float(lp[i, t]) for i, t in enumerate(out)], "stop": "length"}))
    else:
        print(" ".join(str(t) for t in out))


if __name__ == "__main__":
    main()
