"""t2ref — the independent PyTorch reference that the T2 C engine is checked against.

Two halves:

* Checkpoint writing: random, seeded Hugging Face style model folders (config.json plus
  model.safetensors or model-0000k-of-0000N.safetensors + model.safetensors.index.json), with the
  safetensors container written here by hand (no safetensors / transformers packages needed).
  Tensors are produced and written one at a time, so multi-GB checkpoints stream to disk.

* A reference forward pass with Hugging Face Llama / Mistral / Qwen2 semantics in plain torch:
  RMSNorm, rotary embeddings (default, linear and llama3 rope scaling), grouped-query attention
  with a causal (and optionally sliding-window) mask, SwiGLU MLP, tied or untied lm_head.
  The same code runs in float32 (the reference) or bfloat16 (the benchmark), with a preallocated
  KV cache so that decoding costs one token per step.

Only torch and numpy are used.  Written from the published HF semantics, not copied.
"""

import json
import math
import os
import struct
import zlib

import numpy as np
import torch
import torch.nn.functional as F

# ---------------------------------------------------------------------------------------------
# safetensors
# ---------------------------------------------------------------------------------------------

ST_DTYPES = {"F32": 4, "BF16": 2, "F16": 2}
DTYPE_ALIASES = {
    "f32": "F32", "float32": "F32", "fp32": "F32",
    "bf16": "BF16", "bfloat16": "BF16",
    "f16": "F16", "float16": "F16", "fp16": "F16",
}
TORCH_DTYPE_NAME = {"F32": "float32", "BF16": "bfloat16", "F16": "float16"}


def st_dtype(name):
    """Normalise 'bf16' / 'bfloat16' / 'BF16' ... to the safetensors dtype string."""
    key = name if name in ST_DTYPES else DTYPE_ALIASES.get(name.lower())
    if key is None:
        raise ValueError("unsupported dtype %r (want f32, bf16 or f16)" % name)
    return key


def _tensor_bytes(t, dtype):
    """Little-endian raw bytes (as a numpy array, to write without another copy) of tensor t
    converted to safetensors dtype `dtype`."""
    t = t.detach().contiguous()
    if dtype == "F32":
        arr = t.to(torch.float32).numpy()
    elif dtype == "F16":
        arr = t.to(torch.float16).numpy()
    elif dtype == "BF16":
        arr = t.to(torch.bfloat16).view(torch.int16).numpy()
    else:
        raise ValueError(dtype)
    if arr.dtype.byteorder == ">":  # never on x86/arm64 linux, but be explicit
        arr = arr.byteswap().newbyteorder()
    return arr


class TensorEntry:
    """One tensor to write: name, shape and a producer.

    producer() returns either a torch tensor of the full shape, or an iterator of tensors that
    concatenated along dim 0 give the full shape (to stream very large tensors)."""

    def __init__(self, name, shape, producer):
        self.name = name
        self.shape = [int(s) for s in shape]
        self.producer = producer

    def numel(self):
        n = 1
        for s in self.shape:
            n *= s
        return n


def write_safetensors(path, entries, dtype, metadata=None):
    """Write `entries` (list of TensorEntry) to `path` in safetensors format, all as `dtype`.

    The header is computed from the shapes before any data is produced, then tensors are
    produced and written one by one.  Written to path + '.tmp' and renamed at the end."""
    dtype = st_dtype(dtype)
    esize = ST_DTYPES[dtype]
    header = {}
    off = 0
    for e in entries:
        nbytes = e.numel() * esize
        header[e.name] = {"dtype": dtype, "shape": e.shape, "data_offsets": [off, off + nbytes]}
        off += nbytes
    meta = {"format": "pt"}
    if metadata:
        meta.update({str(k): str(v) for k, v in metadata.items()})
    header["__metadata__"] = meta
    hjson = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hjson += b" " * ((-(8 + len(hjson))) % 8)  # data section starts 8-byte aligned
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(hjson)))
        f.write(hjson)
        for e in entries:
            want = e.numel() * esize
            got = 0
            out = e.producer()
            chunks = [out] if isinstance(out, torch.Tensor) else out
            for chunk in chunks:
                arr = _tensor_bytes(chunk, dtype)
                f.write(memoryview(arr).cast("B"))
                got += arr.nbytes
            if got != want:
                raise RuntimeError("%s: produced %d bytes, expected %d" % (e.name, got, want))
    os.replace(tmp, path)
    return off


def read_safetensors_header(path):
    """Return (header dict without __metadata__, metadata dict, data section offset)."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        if n > 100 * 1024 * 1024:
            raise ValueError("%s: implausible safetensors header length %d" % (path, n))
        header = json.loads(f.read(n).decode("utf-8"))
    meta = header.pop("__metadata__", {}) or {}
    return header, meta, 8 + n


class SafetensorsFile:
    """Memory-mapped read access to one safetensors file."""

    _NP = {"F32": np.dtype("<f4"), "F16": np.dtype("<f2"), "BF16": np.dtype("<u2")}

    def __init__(self, path):
        self.path = path
        self.header, self.metadata, self.data_start = read_safetensors_header(path)
        # copy-on-write mapping: writable numpy views (torch.from_numpy wants that), file untouched
        self.mm = np.memmap(path, dtype=np.uint8, mode="c")

    def names(self):
        return list(self.header.keys())

    def raw(self, name):
        """numpy view of the stored data (BF16 as uint16), shaped."""
        info = self.header[name]
        dt = info["dtype"]
        if dt not in self._NP:
            raise ValueError("%s: tensor %s has unsupported dtype %s" % (self.path, name, dt))
        b, e = info["data_offsets"]
        shape = tuple(info["shape"])
        npdt = self._NP[dt]
        n = int(np.prod(shape)) if shape else 1
        if e - b != n * npdt.itemsize:
            raise ValueError("%s: tensor %s has %d bytes for shape %s" % (self.path, name, e - b, shape))
        buf = self.mm[self.data_start + b:self.data_start + e]
        return dt, buf.view(npdt).reshape(shape)

    def tensor(self, name, dtype=torch.float32):
        """The tensor converted to torch `dtype` (float32 default).  Zero-copy when the stored
        dtype already matches."""
        dt, arr = self.raw(name)
        if dt == "BF16":
            t = torch.from_numpy(arr.view(np.int16)).view(torch.bfloat16)
        else:
            t = torch.from_numpy(arr)
        return t if t.dtype == dtype else t.to(dtype)


def checkpoint_files(model_dir):
    """The safetensors files of an HF model folder and which tensor lives where."""
    idx = os.path.join(model_dir, "model.safetensors.index.json")
    if os.path.exists(idx):
        with open(idx) as f:
            wm = json.load(f)["weight_map"]
        return {name: os.path.join(model_dir, fn) for name, fn in wm.items()}
    single = os.path.join(model_dir, "model.safetensors")
    if not os.path.exists(single):
        raise FileNotFoundError("%s: neither model.safetensors nor model.safetensors.index.json" % model_dir)
    return {name: single for name in read_safetensors_header(single)[0]}


def load_weights(model_dir, dtype=torch.float32):
    """All tensors of a checkpoint as a {name: torch tensor} dict converted to `dtype`."""
    where = checkpoint_files(model_dir)
    files = {}
    out = {}
    for name, path in where.items():
        if path not in files:
            files[path] = SafetensorsFile(path)
        out[name] = files[path].tensor(name, dtype)
    return out


def load_config(model_dir):
    with open(os.path.join(model_dir, "config.json")) as f:
        return json.load(f)


# ---------------------------------------------------------------------------------------------
# Random checkpoints
# ---------------------------------------------------------------------------------------------

FAMILY_DEFAULTS = {
    # small test models; the C engine is checked against these
    "llama3": dict(model_type="llama", architectures=["LlamaForCausalLM"], num_key_value_heads=2,
                   head_dim=32, rope_theta=500000.0, rms_norm_eps=1e-5, tie_word_embeddings=False,
                   rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                 "high_freq_factor": 4.0, "original_max_position_embeddings": 64}),
    "llama2": dict(model_type="llama", architectures=["LlamaForCausalLM"], num_key_value_heads=None,
                   rope_theta=10000.0, rms_norm_eps=1e-5, tie_word_embeddings=False, rope_scaling=None),
    "mistral": dict(model_type="mistral", architectures=["MistralForCausalLM"], num_key_value_heads=2,
                    rope_theta=10000.0, rms_norm_eps=1e-5, tie_word_embeddings=False, sliding_window=16),
    "qwen2": dict(model_type="qwen2", architectures=["Qwen2ForCausalLM"], num_key_value_heads=2,
                  rope_theta=1000000.0, rms_norm_eps=1e-6, tie_word_embeddings=True,
                  use_sliding_window=False, sliding_window=4096),
}


def make_config(family, dtype="f32", vocab_size=256, hidden_size=64, num_hidden_layers=2,
                num_attention_heads=4, num_key_value_heads=None, head_dim=None, intermediate_size=160,
                max_position_embeddings=256, **overrides):
    """config.json contents for a random model of `family` (llama3, llama2, mistral, qwen2).

    head_dim is only written for the llama3 family (default 32 there, i.e. != hidden/heads);
    the others get the implicit hidden_size // num_attention_heads."""
    if family not in FAMILY_DEFAULTS:
        raise ValueError("unknown family %r (want %s)" % (family, ", ".join(FAMILY_DEFAULTS)))
    d = dict(FAMILY_DEFAULTS[family])
    cfg = {
        "architectures": d.pop("architectures"),
        "model_type": d.pop("model_type"),
        "vocab_size": vocab_size,
        "hidden_size": hidden_size,
        "intermediate_size": intermediate_size,
        "num_hidden_layers": num_hidden_layers,
        "num_attention_heads": num_attention_heads,
        "hidden_act": "silu",
        "max_position_embeddings": max_position_embeddings,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "torch_dtype": TORCH_DTYPE_NAME[st_dtype(dtype)],
    }
    fam_kv = d.pop("num_key_value_heads")
    fam_hd = d.pop("head_dim", None)
    if num_key_value_heads is None:
        num_key_value_heads = fam_kv if fam_kv is not None else num_attention_heads
    cfg["num_key_value_heads"] = num_key_value_heads
    if family == "llama3":
        cfg["head_dim"] = head_dim if head_dim is not None else fam_hd
    elif head_dim is not None and head_dim != hidden_size // num_attention_heads:
        cfg["head_dim"] = head_dim
    if cfg["model_type"] == "llama":
        cfg["attention_bias"] = False
        cfg["mlp_bias"] = False
    if family == "qwen2":
        cfg["max_window_layers"] = num_hidden_layers
    cfg.update(d)
    cfg.update({k: v for k, v in overrides.items() if v is not None})
    if num_attention_heads % num_key_value_heads:
        raise ValueError("num_attention_heads must be a multiple of num_key_value_heads")
    return cfg


def tensor_plan(cfg):
    """[(name, shape, kind)] of every tensor of the checkpoint; kind is embed, linear, norm, bias."""
    H = cfg["hidden_size"]
    V = cfg["vocab_size"]
    Fd = cfg["intermediate_size"]
    nh = cfg["num_attention_heads"]
    nkv = cfg.get("num_key_value_heads") or nh
    hd = cfg.get("head_dim") or H // nh
    qkv_bias = cfg["model_type"] == "qwen2" or bool(cfg.get("attention_bias"))
    o_bias = cfg["model_type"] != "qwen2" and bool(cfg.get("attention_bias"))
    mlp_bias = bool(cfg.get("mlp_bias"))
    plan = [("model.embed_tokens.weight", [V, H], "embed")]
    for i in range(cfg["num_hidden_layers"]):
        p = "model.layers.%d." % i
        plan.append((p + "input_layernorm.weight", [H], "norm"))
        for proj, out in (("q", nh * hd), ("k", nkv * hd), ("v", nkv * hd)):
            plan.append((p + "self_attn.%s_proj.weight" % proj, [out, H], "linear"))
            if qkv_bias:
                plan.append((p + "self_attn.%s_proj.bias" % proj, [out], "bias"))
        plan.append((p + "self_attn.o_proj.weight", [H, nh * hd], "linear"))
        if o_bias:
            plan.append((p + "self_attn.o_proj.bias", [H], "bias"))
        plan.append((p + "post_attention_layernorm.weight", [H], "norm"))
        for proj, shape in (("gate", [Fd, H]), ("up", [Fd, H]), ("down", [H, Fd])):
            plan.append((p + "mlp.%s_proj.weight" % proj, shape, "linear"))
            if mlp_bias:
                plan.append((p + "mlp.%s_proj.bias" % proj, [shape[0]], "bias"))
    plan.append(("model.norm.weight", [H], "norm"))
    if not cfg.get("tie_word_embeddings", False):
        plan.append(("lm_head.weight", [V, H], "linear"))
    return plan


def random_producer(name, shape, kind, seed, chunk_rows=None, tied=False):
    """A producer for TensorEntry: seeded (by seed and tensor name, so independent of order)
    random values.  embed N(0,1) (N(0, 1/H) when tied); linear N(0, 1/sqrt(in)) (std);
    norm 1 + 0.1 N(0,1); bias 0.1 N(0,1).
    With chunk_rows, yields row blocks (for streaming multi-GB tensors)."""

    def gen():
        g = torch.Generator()
        g.manual_seed((seed * 1000003 + zlib.crc32(name.encode())) & 0x7FFFFFFFFFFFFFFF)
        if kind == "embed":
            # untied: N(0,1).  Tied, the same matrix is the lm_head: N(0, 1/H) keeps the logits
            # near unit spread instead of ~sqrt(H), where every softmax would be one-hot and the
            # logprob check trivial.  (Tied random models still like to repeat tokens greedily.)
            scale, shift = (1.0 / math.sqrt(shape[-1]) if tied else 1.0), 0.0
        elif kind == "linear":
            scale, shift = 1.0 / math.sqrt(shape[-1]), 0.0
        elif kind == "norm":
            scale, shift = 0.1, 1.0
        elif kind == "bias":
            scale, shift = 0.1, 0.0
        else:
            raise ValueError(kind)
        rows = shape[0]
        step = rows if not chunk_rows else chunk_rows
        for r in range(0, rows, step):
            n = min(step, rows - r)
            t = torch.randn([n] + list(shape[1:]), generator=g)
            if scale != 1.0:
                t.mul_(scale)
            if shift:
                t.add_(shift)
            yield t

    return gen


def _split_shards(entries, nshards, esize):
    """Contiguous split of entries into nshards non-empty groups of roughly equal bytes."""
    if nshards < 1 or nshards > len(entries):
        raise ValueError("cannot split %d tensors into %d shards" % (len(entries), nshards))
    total = sum(e.numel() for e in entries) * esize
    groups = [[] for _ in range(nshards)]
    k = 0
    acc = 0
    for i, e in enumerate(entries):
        remaining_tensors = len(entries) - i
        remaining_shards = nshards - k
        # move to the next shard when this one is full enough, or when the rest of the
        # tensors are just enough to give every remaining shard one
        if groups[k] and k < nshards - 1 and (acc >= total * (k + 1) / nshards
                                              or remaining_tensors < remaining_shards):
            k += 1
        groups[k].append(e)
        acc += e.numel() * esize
    return groups


def write_checkpoint(out_dir, cfg, dtype="f32", seed=0, shards=1, chunk_rows=None, metadata=None):
    """Write a random checkpoint for `cfg` (from make_config) into out_dir.  Returns the list of
    safetensors files written."""
    dtype = st_dtype(dtype)
    cfg = dict(cfg)
    cfg["torch_dtype"] = TORCH_DTYPE_NAME[dtype]
    os.makedirs(out_dir, exist_ok=True)
    # clear previous weights so a single/sharded switch cannot leave stale files behind
    for fn in os.listdir(out_dir):
        if fn.endswith(".safetensors") or fn == "model.safetensors.index.json":
            os.remove(os.path.join(out_dir, fn))
    tied = bool(cfg.get("tie_word_embeddings", False))
    entries = [TensorEntry(n, s, random_producer(n, s, k, seed, chunk_rows, tied))
               for n, s, k in tensor_plan(cfg)]
    meta = {"generator": "t2ref", "seed": seed}
    if metadata:
        meta.update(metadata)
    written = []
    if shards <= 1:
        path = os.path.join(out_dir, "model.safetensors")
        write_safetensors(path, entries, dtype, meta)
        written.append(path)
    else:
        groups = _split_shards(entries, shards, ST_DTYPES[dtype])
        weight_map = {}
        total = 0
        for k, group in enumerate(groups):
            fn = "model-%05d-of-%05d.safetensors" % (k + 1, shards)
            total += write_safetensors(os.path.join(out_dir, fn), group, dtype, meta)
            for e in group:
                weight_map[e.name] = fn
            written.append(os.path.join(out_dir, fn))
        with open(os.path.join(out_dir, "model.safetensors.index.json"), "w") as f:
            json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)
            f.write("\n")
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
        f.write("\n")
    return written


# ---------------------------------------------------------------------------------------------
# Reference model
# ---------------------------------------------------------------------------------------------

def rope_inv_freq(cfg, head_dim):
    """Per-pair inverse frequencies [head_dim/2] (float32) including rope_scaling, and the factor
    by which positions are divided (linear scaling)."""
    theta = float(cfg.get("rope_theta", 10000.0))
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim))
    rs = cfg.get("rope_scaling")
    if not rs:
        return inv_freq
    rtype = rs.get("rope_type", rs.get("type"))
    if rtype in (None, "default"):
        return inv_freq
    if rtype == "linear":
        return inv_freq / float(rs["factor"])
    if rtype == "llama3":
        factor = float(rs["factor"])
        low = float(rs.get("low_freq_factor", 1.0))
        high = float(rs.get("high_freq_factor", 4.0))
        orig = float(rs["original_max_position_embeddings"])
        low_freq_wavelen = orig / low
        high_freq_wavelen = orig / high
        wavelen = 2 * math.pi / inv_freq
        # long wavelengths (low frequencies) are slowed down by `factor`, short ones kept,
        # the band in between is interpolated linearly in orig/wavelen
        scaled = torch.where(wavelen > low_freq_wavelen, inv_freq / factor, inv_freq)
        smooth = (orig / wavelen - low) / (high - low)
        smoothed = (1 - smooth) * scaled / factor + smooth * scaled
        medium = (wavelen >= high_freq_wavelen) & (wavelen <= low_freq_wavelen)
        return torch.where(medium, smoothed, scaled)
    raise NotImplementedError("rope_scaling type %r is not supported by the reference" % rtype)


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


class KVCache:
    """Preallocated keys and values for one sequence: k, v [layers, n_kv_heads, max_len, head_dim]."""

    def __init__(self, n_layers, n_kv, max_len, head_dim, dtype):
        self.k = torch.zeros(n_layers, n_kv, max_len, head_dim, dtype=dtype)
        self.v = torch.zeros(n_layers, n_kv, max_len, head_dim, dtype=dtype)
        self.max_len = max_len
        self.n = 0  # positions filled

    def reset(self):
        self.n = 0


class Model:
    """Llama-family decoder (llama, mistral, qwen2) with HF semantics.

    dtype float32 is the reference; bfloat16 is for the benchmark (norms and softmax still in f32,
    as HF does)."""

    def __init__(self, cfg, weights, dtype=torch.float32):
        self.cfg = cfg
        self.dtype = dtype
        self.H = cfg["hidden_size"]
        self.V = cfg["vocab_size"]
        self.nh = cfg["num_attention_heads"]
        self.nkv = cfg.get("num_key_value_heads") or self.nh
        self.hd = cfg.get("head_dim") or self.H // self.nh
        self.L = cfg["num_hidden_layers"]
        self.eps = float(cfg.get("rms_norm_eps", 1e-6))
        self.scale = self.hd ** -0.5
        act = cfg.get("hidden_act", "silu")
        if act != "silu":
            raise NotImplementedError("hidden_act %r" % act)
        if self.nh % self.nkv:
            raise ValueError("num_attention_heads %% num_key_value_heads != 0")
        self.group = self.nh // self.nkv

        # sliding window per layer (None = full causal attention)
        mt = cfg.get("model_type")
        sw = cfg.get("sliding_window")
        self.window = [None] * self.L
        if mt == "mistral" and sw:
            self.window = [int(sw)] * self.L
        elif mt == "qwen2" and cfg.get("use_sliding_window") and sw:
            mwl = cfg.get("max_window_layers", self.L)
            self.window = [int(sw) if i >= mwl else None for i in range(self.L)]

        def w(name, required=True):
            t = weights.get(name)
            if t is None:
                if required:
                    raise KeyError("checkpoint lacks tensor %s" % name)
                return None
            return t.to(dtype).contiguous() if t.dtype != dtype else t

        self.embed = w("model.embed_tokens.weight")
        self.layers = []
        for i in range(self.L):
            p = "model.layers.%d." % i
            a = p + "self_attn."
            m = p + "mlp."
            self.layers.append(dict(
                ln1=w(p + "input_layernorm.weight"),
                ln2=w(p + "post_attention_layernorm.weight"),
                wq=w(a + "q_proj.weight"), bq=w(a + "q_proj.bias", False),
                wk=w(a + "k_proj.weight"), bk=w(a + "k_proj.bias", False),
                wv=w(a + "v_proj.weight"), bv=w(a + "v_proj.bias", False),
                wo=w(a + "o_proj.weight"), bo=w(a + "o_proj.bias", False),
                wg=w(m + "gate_proj.weight"), bg=w(m + "gate_proj.bias", False),
                wu=w(m + "up_proj.weight"), bu=w(m + "up_proj.bias", False),
                wd=w(m + "down_proj.weight"), bd=w(m + "down_proj.bias", False),
            ))
        self.norm = w("model.norm.weight")
        lm = w("lm_head.weight", required=not cfg.get("tie_word_embeddings", False))
        self.lm_head = lm if lm is not None else self.embed
        self.inv_freq = rope_inv_freq(cfg, self.hd)  # float32 [hd/2]
        self._rope_len = 0
        self._cos = self._sin = None

    @classmethod
    def load(cls, model_dir, dtype=torch.float32):
        cfg = load_config(model_dir)
        return cls(cfg, load_weights(model_dir, dtype), dtype)

    # -- pieces -------------------------------------------------------------------------------

    def new_cache(self, max_len):
        self._rope_tables(max_len)  # so decoding never rebuilds the tables
        return KVCache(self.L, self.nkv, max_len, self.hd, self.dtype)

    def _rope_tables(self, n):
        if n > self._rope_len:
            pos = torch.arange(n, dtype=torch.float32)
            ang = pos[:, None] * self.inv_freq[None, :]          # [n, hd/2], f32 like HF
            emb = torch.cat((ang, ang), dim=-1)                  # [n, hd]
            self._cos = emb.cos().to(self.dtype)
            self._sin = emb.sin().to(self.dtype)
            self._rope_len = n
        return self._cos, self._sin

    @staticmethod
    def linear(x, w, b=None):
        """x [T, in] @ w[out, in]^T (+ b).  A single f32 row goes through torch.mv: with the BLAS
        Debian's torch uses, sgemv runs several times faster than a 1-row sgemm (F.linear)."""
        if x.shape[0] == 1 and x.dtype == torch.float32:
            y = torch.mv(w, x[0]).unsqueeze(0)
            return y if b is None else y + b
        return F.linear(x, w, b)

    def rmsnorm(self, x, w):
        xf = x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return w * xf.to(self.dtype)

    def _mask(self, p0, T, S, window):
        """Additive mask [T, S] for queries at p0..p0+T-1 over keys 0..S-1, or None."""
        if T == 1 and (window is None or S <= window):
            return None
        i = torch.arange(p0, p0 + T)[:, None]
        j = torch.arange(S)[None, :]
        allowed = j <= i
        if window is not None:
            allowed &= (i - j) < window
        m = torch.zeros(T, S, dtype=torch.float32)
        m.masked_fill_(~allowed, float("-inf"))
        return m

    # -- forward ------------------------------------------------------------------------------

    @torch.inference_mode()
    def forward(self, ids, cache=None, last_only=False):
        """Logits for token ids (list or 1-D LongTensor) appended after what `cache` holds.

        Without a cache the sequence starts at position 0 and a temporary cache is used.
        Returns float32 logits [T, V] ([1, V] with last_only)."""
        ids = torch.as_tensor(ids, dtype=torch.long).reshape(-1)
        T = ids.numel()
        if cache is None:
            cache = self.new_cache(T)
        p0 = cache.n
        S = p0 + T
        if S > cache.max_len:
            raise ValueError("KV cache overflow: %d > %d" % (S, cache.max_len))
        cos_all, sin_all = self._rope_tables(max(S, cache.max_len))
        cos = cos_all[p0:S]
        sin = sin_all[p0:S]
        nh, nkv, hd, g = self.nh, self.nkv, self.hd, self.group
        masks = {}

        x = self.embed[ids]                                        # [T, H]
        for li, lw in enumerate(self.layers):
            h = self.rmsnorm(x, lw["ln1"])
            q = self.linear(h, lw["wq"], lw["bq"]).view(T, nh, hd).transpose(0, 1)   # [nh, T, hd]
            k = self.linear(h, lw["wk"], lw["bk"]).view(T, nkv, hd).transpose(0, 1)  # [nkv, T, hd]
            v = self.linear(h, lw["wv"], lw["bv"]).view(T, nkv, hd).transpose(0, 1)
            q = q * cos + rotate_half(q) * sin
            k = k * cos + rotate_half(k) * sin
            cache.k[li, :, p0:S] = k
            cache.v[li, :, p0:S] = v
            K = cache.k[li, :, :S]                                 # [nkv, S, hd]
            Vv = cache.v[li, :, :S]
            # query head h uses kv head h // g: group the g query heads of each kv head
            qg = q.reshape(nkv, g * T, hd)
            scores = torch.matmul(qg, K.transpose(1, 2)) * self.scale   # [nkv, g*T, S]
            win = self.window[li]
            if win not in masks:
                masks[win] = self._mask(p0, T, S, win)
            mask = masks[win]
            scores = scores.float().view(nkv, g, T, S)
            if mask is not None:
                scores = scores + mask
            probs = torch.softmax(scores, dim=-1).to(self.dtype).view(nkv, g * T, S)
            att = torch.matmul(probs, Vv)                          # [nkv, g*T, hd]
            att = att.view(nh, T, hd).transpose(0, 1).reshape(T, nh * hd)
            x = x + self.linear(att, lw["wo"], lw["bo"])

            h = self.rmsnorm(x, lw["ln2"])
            gate = self.linear(h, lw["wg"], lw["bg"])
            up = self.linear(h, lw["wu"], lw["bu"])
            x = x + self.linear(F.silu(gate) * up, lw["wd"], lw["bd"])
        cache.n = S
        if last_only:
            x = x[-1:]
        x = self.rmsnorm(x, self.norm)
        return self.linear(x, self.lm_head).float()

    def logits(self, ids):
        """Full-sequence logits [len(ids), V], float32, from position 0."""
        return self.forward(ids)

    def eos_ids(self):
        e = self.cfg.get("eos_token_id")
        if e is None:
            return set()
        return set(e) if isinstance(e, list) else {e}

    @torch.inference_mode()
    def generate(self, ids, max_tokens, stop_eos=False):
        """Greedy decoding with the KV cache.  Returns (generated ids, per-step float32 logits
        [n_generated, V] that each generated id was chosen from)."""
        ids = list(ids)
        cache = self.new_cache(len(ids) + max_tokens)
        out = []
        step_logits = []
        if max_tokens <= 0:
            return out, torch.zeros(0, self.V)
        logits = self.forward(ids, cache, last_only=True)[0]
        eos = self.eos_ids()
        for step in range(max_tokens):
            tok = int(torch.argmax(logits))
            out.append(tok)
            step_logits.append(logits)
            if stop_eos and tok in eos:
                break
            if step + 1 < max_tokens:
                logits = self.forward([tok], cache)[0]
        return out, torch.stack(step_logits)
