#!/usr/bin/env python3
"""Independent numpy reference of the LLaMA forward pass.

llamad's engine is checked against this file.  It is written from the
equations of the LLaMA paper (and the later family members: grouped-query
attention, rope_theta, LLaMA-3 RoPE frequency scaling, tied embeddings) and
shares nothing with the C code.

    x = embed[tokens]
    for each layer:
        h = rmsnorm(x) * attn_norm
        q, k, v = Wq h, Wk h, Wv h          (W: [out, in])
        q, k = rope(q, pos), rope(k, pos)
        x = x + Wo attention(q, k, v)       (causal, GQA, scale 1/sqrt(head_dim))
        h = rmsnorm(x) * ffn_norm
        x = x + Wdown (silu(Wgate h) * (Wup h))
    logits = Wout (rmsnorm(x) * output_norm)

    rmsnorm(x) = x / sqrt(mean(x^2) + eps)

The RoPE pair layout depends on the file format, and each format is read
natively (nothing is un-permuted):

  * GGUF (llama.cpp's "llama" architecture): the converter permuted the rows
    of Wq and Wk so that RoPE rotates adjacent pairs (2i, 2i+1).
  * Hugging Face safetensors: RoPE rotates the pairs (i, i + n_rot/2)
    ("rotate_half").

So a GGUF file and its Hugging Face twin agree only if both the permutation
in the file and the matching rotation here are right.

Everything is computed in float64 by default (weights are dequantised to
float32 exactly as stored, then widened).

Library use:

    model = load_model(path)            # GGUF file or HF directory
    logits = forward_logits(model, [1, 2, 3], all_rows=True)
    tokens, margins = greedy(model, [1, 2, 3], 16)

Command line:

    ref_forward.py MODEL --tokens 1,2,3 [--all-logits] [--greedy N] --out OUT.npz

OUT.npz holds
    tokens         int32 [n_prompt]          the prompt
    rows           int32 [n_rows]            prompt positions of the logit rows
    logits         float32 [n_rows, n_vocab] last row, or every row with --all-logits
    greedy         int32 [N]                 argmax continuation (KV cache)
    greedy_margin  float64 [N]               top-1 minus top-2 logit at each step
    n_vocab        int64 scalar
"""

import argparse
import json
import math
import os
import struct
import sys
import time

# One BLAS thread unless the caller says otherwise: on a small machine shared
# with a test suite, OpenBLAS's spinning worker threads made decoding several
# times slower than one thread.  Must be set before numpy is imported.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

ROPE_INTERLEAVED = "interleaved"   # pairs (2i, 2i+1): GGUF llama
ROPE_HALF = "half"                 # pairs (i, i + n_rot/2): HF rotate_half


class RefError(Exception):
    """A model file the reference cannot read; the message names the field."""


# ---------------------------------------------------------------- model ---

class Model:
    """Hyper-parameters and weights of one LLaMA-family model.

    Weight shapes (innermost dimension last):
        embed       [n_vocab, n_embd]
        output      [n_vocab, n_embd]   (same array as embed when tied)
        output_norm [n_embd]
        layers[l]:  attn_norm [n_embd], ffn_norm [n_embd],
                    wq [n_head*head_dim, n_embd], wk/wv [n_head_kv*head_dim, n_embd],
                    wo [n_embd, n_head*head_dim],
                    w_gate/w_up [n_ff, n_embd], w_down [n_embd, n_ff],
                    optional bq/bk/bv/bo biases
    """

    def __init__(self):
        self.source = ""
        self.n_layer = 0
        self.n_embd = 0
        self.n_head = 0
        self.n_head_kv = 0
        self.head_dim = 0
        self.n_rot = 0
        self.n_ff = 0
        self.n_vocab = 0
        self.n_ctx = 0
        self.eps = 1e-5
        self.rope_theta = 10000.0
        self.rope_layout = ROPE_HALF
        self.inv_freq = None        # float64 [n_rot/2]
        self.embed = None
        self.output = None
        self.output_norm = None
        self.layers = []
        self.tied = False

    def describe(self):
        return ("%s: n_layer=%d n_embd=%d n_head=%d n_head_kv=%d head_dim=%d "
                "n_rot=%d n_ff=%d n_vocab=%d eps=%g rope_theta=%g rope=%s tied=%s"
                % (self.source, self.n_layer, self.n_embd, self.n_head,
                   self.n_head_kv, self.head_dim, self.n_rot, self.n_ff,
                   self.n_vocab, self.eps, self.rope_theta, self.rope_layout,
                   self.tied))


def rope_inv_freq(theta, n_rot):
    """theta_i = rope_theta^(-2i/n_rot), i in [0, n_rot/2), float64."""
    i = np.arange(n_rot // 2, dtype=np.float64)
    return theta ** (-2.0 * i / n_rot)


def llama3_scale_inv_freq(inv_freq, factor, low_freq_factor, high_freq_factor,
                          original_max_position_embeddings):
    """LLaMA-3.1 RoPE frequency scaling (Meta's published formula).

    With L = original context length, wavelength w = 2*pi/f:
      w < L/high_freq_factor  -> f unchanged (high frequencies)
      w > L/low_freq_factor   -> f / factor  (low frequencies)
      otherwise               -> (1-s) f/factor + s f,
                                 s = (L/w - low_freq_factor) / (high_freq_factor - low_freq_factor)
    """
    L = float(original_max_position_embeddings)
    if high_freq_factor == low_freq_factor:
        raise RefError("llama3 rope scaling: high_freq_factor == low_freq_factor")
    low_wavelen = L / low_freq_factor
    high_wavelen = L / high_freq_factor
    out = np.empty_like(inv_freq)
    for i, f in enumerate(inv_freq):
        w = 2.0 * math.pi / f
        if w < high_wavelen:
            out[i] = f
        elif w > low_wavelen:
            out[i] = f / factor
        else:
            s = (L / w - low_freq_factor) / (high_freq_factor - low_freq_factor)
            out[i] = (1.0 - s) * f / factor + s * f
    return out


def _check_shape(name, arr, shape):
    if tuple(arr.shape) != tuple(shape):
        raise RefError("tensor %s has shape %s, expected %s"
                       % (name, tuple(arr.shape), tuple(shape)))


def _finish(m, get, has):
    """Fill weights through get(kind, layer) and check every shape."""
    m.embed = get("embed", None)
    m.n_vocab, n_embd = m.embed.shape
    if n_embd != m.n_embd:
        raise RefError("token embedding width %d != n_embd %d" % (n_embd, m.n_embd))
    m.output_norm = get("output_norm", None)
    _check_shape("output_norm", m.output_norm, (m.n_embd,))
    if has("output", None):
        m.output = get("output", None)
        m.tied = False
    else:
        m.output = m.embed
        m.tied = True
    _check_shape("output", m.output, (m.n_vocab, m.n_embd))

    qd = m.n_head * m.head_dim
    kvd = m.n_head_kv * m.head_dim
    m.layers = []
    for l in range(m.n_layer):
        L = {}
        for kind in ("attn_norm", "ffn_norm", "wq", "wk", "wv", "wo",
                     "w_gate", "w_up", "w_down"):
            L[kind] = get(kind, l)
        for kind in ("bq", "bk", "bv", "bo"):
            L[kind] = get(kind, l) if has(kind, l) else None
        if l == 0:
            m.n_ff = L["w_gate"].shape[0]   # read from the weights, never computed
        _check_shape("layer %d attn_norm" % l, L["attn_norm"], (m.n_embd,))
        _check_shape("layer %d ffn_norm" % l, L["ffn_norm"], (m.n_embd,))
        _check_shape("layer %d wq" % l, L["wq"], (qd, m.n_embd))
        _check_shape("layer %d wk" % l, L["wk"], (kvd, m.n_embd))
        _check_shape("layer %d wv" % l, L["wv"], (kvd, m.n_embd))
        _check_shape("layer %d wo" % l, L["wo"], (m.n_embd, qd))
        _check_shape("layer %d w_gate" % l, L["w_gate"], (m.n_ff, m.n_embd))
        _check_shape("layer %d w_up" % l, L["w_up"], (m.n_ff, m.n_embd))
        _check_shape("layer %d w_down" % l, L["w_down"], (m.n_embd, m.n_ff))
        for kind, n in (("bq", qd), ("bk", kvd), ("bv", kvd), ("bo", m.n_embd)):
            if L[kind] is not None:
                _check_shape("layer %d %s" % (l, kind), L[kind], (n,))
        m.layers.append(L)
    if m.n_head % m.n_head_kv != 0:
        raise RefError("n_head %d is not a multiple of n_head_kv %d"
                       % (m.n_head, m.n_head_kv))
    if m.n_rot % 2 != 0 or m.n_rot > m.head_dim or m.n_rot <= 0:
        raise RefError("rope dimension %d invalid for head_dim %d" % (m.n_rot, m.head_dim))
    return m


# ----------------------------------------------------------------- GGUF ---

GGUF_NAMES = {
    "embed": "token_embd.weight",
    "output": "output.weight",
    "output_norm": "output_norm.weight",
    "attn_norm": "blk.%d.attn_norm.weight",
    "ffn_norm": "blk.%d.ffn_norm.weight",
    "wq": "blk.%d.attn_q.weight",
    "wk": "blk.%d.attn_k.weight",
    "wv": "blk.%d.attn_v.weight",
    "wo": "blk.%d.attn_output.weight",
    "bq": "blk.%d.attn_q.bias",
    "bk": "blk.%d.attn_k.bias",
    "bv": "blk.%d.attn_v.bias",
    "bo": "blk.%d.attn_output.bias",
    "w_gate": "blk.%d.ffn_gate.weight",
    "w_up": "blk.%d.ffn_up.weight",
    "w_down": "blk.%d.ffn_down.weight",
}


def _gguf_value(field):
    """The Python value of a GGUF metadata field (scalar, string or list)."""
    if hasattr(field, "contents"):
        return field.contents()
    from gguf import GGUFValueType
    vals = [field.parts[i] for i in field.data]
    t = field.types[-1] if field.types else None
    if t == GGUFValueType.STRING:
        vals = [bytes(v).decode("utf-8") for v in vals]
    else:
        vals = [v.tolist()[0] for v in vals]
    if field.types and field.types[0] == GGUFValueType.ARRAY:
        return vals
    return vals[0]


def load_gguf(path, dtype=np.float64):
    import gguf
    from gguf.quants import dequantize

    reader = gguf.GGUFReader(path)
    kv = {name: f for name, f in reader.fields.items()}

    def meta(key, default=None, required=False):
        if key in kv:
            return _gguf_value(kv[key])
        if required:
            raise RefError("%s: missing metadata key %s" % (path, key))
        return default

    arch = meta("general.architecture", required=True)
    if arch != "llama":
        # Other architectures differ in RoPE layout or layer structure.
        raise RefError("%s: general.architecture is %r, only 'llama' is supported"
                       % (path, arch))
    m = Model()
    m.source = path
    m.rope_layout = ROPE_INTERLEAVED
    m.n_layer = int(meta("llama.block_count", required=True))
    m.n_embd = int(meta("llama.embedding_length", required=True))
    m.n_head = int(meta("llama.attention.head_count", required=True))
    m.n_head_kv = int(meta("llama.attention.head_count_kv", m.n_head))
    m.head_dim = int(meta("llama.attention.key_length", m.n_embd // m.n_head))
    vdim = int(meta("llama.attention.value_length", m.head_dim))
    if vdim != m.head_dim:
        raise RefError("%s: value_length %d != key_length %d" % (path, vdim, m.head_dim))
    m.n_rot = int(meta("llama.rope.dimension_count", m.head_dim))
    m.eps = float(meta("llama.attention.layer_norm_rms_epsilon", required=True))
    m.rope_theta = float(meta("llama.rope.freq_base", 10000.0))
    m.n_ctx = int(meta("llama.context_length", 0))
    n_ff_key = meta("llama.feed_forward_length", None)

    tensors = {t.name: t for t in reader.tensors}

    def tensor(name):
        t = tensors[name]
        a = dequantize(t.data, t.tensor_type)
        shape = tuple(int(d) for d in reversed(list(t.shape)))   # ggml ne0 is innermost
        a = np.asarray(a, dtype=np.float32).reshape(shape)
        return a.astype(dtype)

    def name_of(kind, l):
        n = GGUF_NAMES[kind]
        return n % l if l is not None else n

    def has(kind, l):
        return name_of(kind, l) in tensors

    def get(kind, l):
        n = name_of(kind, l)
        if n not in tensors:
            raise RefError("%s: missing tensor %s" % (path, n))
        return tensor(n)

    _finish(m, get, has)
    if n_ff_key is not None and int(n_ff_key) != m.n_ff:
        raise RefError("%s: llama.feed_forward_length %s != ffn_gate rows %d"
                       % (path, n_ff_key, m.n_ff))
    n_vocab_key = meta("llama.vocab_size", None)
    if n_vocab_key is not None and int(n_vocab_key) != m.n_vocab:
        raise RefError("%s: llama.vocab_size %s != token_embd rows %d"
                       % (path, n_vocab_key, m.n_vocab))

    inv = rope_inv_freq(m.rope_theta, m.n_rot)
    stype = meta("llama.rope.scaling.type", "none")
    factor = float(meta("llama.rope.scaling.factor", 1.0))
    if stype == "linear" and factor != 1.0:
        inv = inv / factor
    elif stype == "llama3":
        inv = llama3_scale_inv_freq(
            inv, factor,
            float(meta("llama.rope.scaling.low_freq_factor", required=True)),
            float(meta("llama.rope.scaling.high_freq_factor", required=True)),
            float(meta("llama.rope.scaling.original_context_length", required=True)))
    elif stype not in ("none", "linear"):
        raise RefError("%s: llama.rope.scaling.type %r not supported" % (path, stype))
    if "rope_freqs.weight" in tensors:
        # llama.cpp's form of LLaMA-3 scaling: a per-frequency divisor.
        ff = tensor("rope_freqs.weight").astype(np.float64).reshape(-1)
        if ff.shape[0] != m.n_rot // 2:
            raise RefError("%s: rope_freqs.weight has %d entries, expected %d"
                           % (path, ff.shape[0], m.n_rot // 2))
        inv = inv / ff
    m.inv_freq = inv
    return m


# ----------------------------------------------------- HF safetensors ---

HF_NAMES = {
    "embed": "model.embed_tokens.weight",
    "output": "lm_head.weight",
    "output_norm": "model.norm.weight",
    "attn_norm": "model.layers.%d.input_layernorm.weight",
    "ffn_norm": "model.layers.%d.post_attention_layernorm.weight",
    "wq": "model.layers.%d.self_attn.q_proj.weight",
    "wk": "model.layers.%d.self_attn.k_proj.weight",
    "wv": "model.layers.%d.self_attn.v_proj.weight",
    "wo": "model.layers.%d.self_attn.o_proj.weight",
    "bq": "model.layers.%d.self_attn.q_proj.bias",
    "bk": "model.layers.%d.self_attn.k_proj.bias",
    "bv": "model.layers.%d.self_attn.v_proj.bias",
    "bo": "model.layers.%d.self_attn.o_proj.bias",
    "w_gate": "model.layers.%d.mlp.gate_proj.weight",
    "w_up": "model.layers.%d.mlp.up_proj.weight",
    "w_down": "model.layers.%d.mlp.down_proj.weight",
}

ST_DTYPES = {"F64": np.float64, "F32": np.float32, "F16": np.float16,
             "BF16": "bf16"}


def read_safetensors(path):
    """Parse one .safetensors file: u64 LE header length, JSON header, data.

    Returns {name: (dtype_str, shape, raw bytes view)}; tensors are decoded
    lazily by decode_st().
    """
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) != 8:
            raise RefError("%s: shorter than the 8-byte header length" % path)
        (hlen,) = struct.unpack("<Q", head)
        if hlen > size - 8:
            raise RefError("%s: header length %d passes the end of the file" % (path, hlen))
        header = json.loads(f.read(hlen).decode("utf-8"))
    data = np.memmap(path, dtype=np.uint8, mode="r", offset=8 + hlen)
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dt = info["dtype"]
        if dt not in ST_DTYPES:
            raise RefError("%s: tensor %s has dtype %s (F64/F32/F16/BF16 supported)"
                           % (path, name, dt))
        begin, end = info["data_offsets"]
        shape = tuple(int(d) for d in info["shape"])
        width = 2 if dt in ("F16", "BF16") else (8 if dt == "F64" else 4)
        n = int(np.prod(shape, dtype=np.int64)) if shape else 1
        if not (0 <= begin <= end <= data.shape[0]) or end - begin != n * width:
            raise RefError("%s: tensor %s has bad data_offsets [%d, %d) for shape %s %s"
                           % (path, name, begin, end, shape, dt))
        out[name] = (dt, shape, data[begin:end])
    return out


def decode_st(entry):
    dt, shape, raw = entry
    if dt == "BF16":
        bits = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
        a = bits.view(np.float32)
    else:
        a = np.frombuffer(raw, dtype=np.dtype(ST_DTYPES[dt]).newbyteorder("<"))
    return a.reshape(shape)


def load_hf(path, dtype=np.float64):
    cfg_path = os.path.join(path, "config.json")
    with open(cfg_path) as f:
        cfg = json.load(f)

    def c(key, default=None, required=False):
        if key in cfg and cfg[key] is not None:
            return cfg[key]
        if required:
            raise RefError("%s: missing key %s" % (cfg_path, key))
        return default

    m = Model()
    m.source = path
    m.rope_layout = ROPE_HALF
    m.n_layer = int(c("num_hidden_layers", required=True))
    m.n_embd = int(c("hidden_size", required=True))
    m.n_head = int(c("num_attention_heads", required=True))
    m.n_head_kv = int(c("num_key_value_heads", m.n_head))
    m.head_dim = int(c("head_dim", m.n_embd // m.n_head))
    m.n_rot = int(m.head_dim * float(c("partial_rotary_factor", 1.0)))
    m.eps = float(c("rms_norm_eps", 1e-6))
    m.rope_theta = float(c("rope_theta", 10000.0))
    m.n_ctx = int(c("max_position_embeddings", 0))

    entries = {}
    single = os.path.join(path, "model.safetensors")
    index = os.path.join(path, "model.safetensors.index.json")
    if os.path.exists(single):
        entries = read_safetensors(single)
    elif os.path.exists(index):
        with open(index) as f:
            wmap = json.load(f)["weight_map"]
        for shard in sorted(set(wmap.values())):
            if os.path.basename(shard) != shard:
                raise RefError("%s: shard name %r is not a plain file name" % (index, shard))
            entries.update(read_safetensors(os.path.join(path, shard)))
    else:
        raise RefError("%s: no model.safetensors or model.safetensors.index.json" % path)

    def name_of(kind, l):
        n = HF_NAMES[kind]
        return n % l if l is not None else n

    def has(kind, l):
        if kind == "output" and c("tie_word_embeddings", False):
            return False
        return name_of(kind, l) in entries

    def get(kind, l):
        n = name_of(kind, l)
        if n not in entries:
            raise RefError("%s: missing tensor %s" % (path, n))
        return decode_st(entries[n]).astype(np.float32).astype(dtype)

    _finish(m, get, has)
    if int(c("intermediate_size", m.n_ff)) != m.n_ff:
        raise RefError("%s: intermediate_size %s != gate_proj rows %d"
                       % (cfg_path, cfg["intermediate_size"], m.n_ff))

    inv = rope_inv_freq(m.rope_theta, m.n_rot)
    rs = c("rope_scaling", None)
    if rs:
        rtype = rs.get("rope_type", rs.get("type", "default"))
        if rtype == "llama3":
            inv = llama3_scale_inv_freq(inv, float(rs["factor"]),
                                        float(rs["low_freq_factor"]),
                                        float(rs["high_freq_factor"]),
                                        float(rs["original_max_position_embeddings"]))
        elif rtype == "linear":
            inv = inv / float(rs["factor"])
        elif rtype != "default":
            raise RefError("%s: rope_scaling type %r not supported" % (cfg_path, rtype))
    m.inv_freq = inv
    return m


def load_model(path, dtype=np.float64):
    """A GGUF file or a Hugging Face model directory."""
    if os.path.isdir(path):
        return load_hf(path, dtype)
    return load_gguf(path, dtype)


# ---------------------------------------------------------- the math ---

def rmsnorm(x, g, eps):
    """x: [T, n_embd] -> x / sqrt(mean(x^2) + eps) * g."""
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * g


def silu(x):
    return x / (1.0 + np.exp(-x))


def apply_rope(x, pos, inv_freq, layout, n_rot):
    """Rotate x: [T, n_heads, head_dim] at positions pos: [T].

    Pair i (i < n_rot/2) turns by angle pos * inv_freq[i]; dimensions at or
    past n_rot pass through.  layout picks which two dimensions form pair i.
    """
    ang = pos.astype(np.float64)[:, None] * inv_freq[None, :]   # [T, n_rot/2]
    cos = np.cos(ang)[:, None, :].astype(x.dtype)                # [T, 1, n_rot/2]
    sin = np.sin(ang)[:, None, :].astype(x.dtype)
    out = x.copy()
    if layout == ROPE_INTERLEAVED:
        a = x[..., 0:n_rot:2]
        b = x[..., 1:n_rot:2]
        out[..., 0:n_rot:2] = a * cos - b * sin
        out[..., 1:n_rot:2] = a * sin + b * cos
    else:
        h = n_rot // 2
        a = x[..., 0:h]
        b = x[..., h:n_rot]
        out[..., 0:h] = a * cos - b * sin
        out[..., h:n_rot] = a * sin + b * cos
    return out


class Session:
    """One sequence with its KV cache.  step() appends tokens and returns
    logits of every new position ([n_new, n_vocab], float64)."""

    def __init__(self, model, max_len):
        m = model
        self.m = m
        self.max_len = max_len
        self.n_past = 0
        dt = m.embed.dtype
        # k/v cache per layer: [n_head_kv, max_len, head_dim]
        self.k = [np.zeros((m.n_head_kv, max_len, m.head_dim), dtype=dt) for _ in m.layers]
        self.v = [np.zeros((m.n_head_kv, max_len, m.head_dim), dtype=dt) for _ in m.layers]

    def step(self, tokens, want="all"):
        m = self.m
        tokens = np.asarray(tokens, dtype=np.int64)
        T = tokens.shape[0]
        P = self.n_past
        if P + T > self.max_len:
            raise RefError("sequence of %d tokens passes the cache of %d" % (P + T, self.max_len))
        if tokens.min() < 0 or tokens.max() >= m.n_vocab:
            raise RefError("token id out of range [0, %d)" % m.n_vocab)
        S = P + T
        H, Hkv, D = m.n_head, m.n_head_kv, m.head_dim
        g = H // Hkv
        pos = np.arange(P, S)
        scale = 1.0 / math.sqrt(D)
        # causal mask over [T, S]: query t (position P+t) sees keys s <= P+t
        allowed = np.arange(S)[None, :] <= (P + np.arange(T))[:, None]

        x = m.embed[tokens].astype(m.embed.dtype)                    # [T, n_embd]
        for l, L in enumerate(m.layers):
            h = rmsnorm(x, L["attn_norm"], m.eps)
            q = h @ L["wq"].T                                         # [T, H*D]
            k = h @ L["wk"].T                                         # [T, Hkv*D]
            v = h @ L["wv"].T
            if L["bq"] is not None:
                q = q + L["bq"]
            if L["bk"] is not None:
                k = k + L["bk"]
            if L["bv"] is not None:
                v = v + L["bv"]
            q = apply_rope(q.reshape(T, H, D), pos, m.inv_freq, m.rope_layout, m.n_rot)
            k = apply_rope(k.reshape(T, Hkv, D), pos, m.inv_freq, m.rope_layout, m.n_rot)
            self.k[l][:, P:S] = k.transpose(1, 0, 2)
            self.v[l][:, P:S] = v.reshape(T, Hkv, D).transpose(1, 0, 2)
            K = self.k[l][:, :S]                                      # [Hkv, S, D]
            V = self.v[l][:, :S]
            # query head j reads kv head j // g
            qg = q.reshape(T, Hkv, g, D).transpose(1, 2, 0, 3)        # [Hkv, g, T, D]
            sc = np.matmul(qg.reshape(Hkv, g * T, D), K.transpose(0, 2, 1))
            sc = sc.reshape(Hkv, g, T, S).astype(np.float64) * scale
            sc = np.where(allowed[None, None], sc, -np.inf)
            sc -= sc.max(axis=-1, keepdims=True)
            p = np.exp(sc)
            p /= p.sum(axis=-1, keepdims=True)                        # softmax, float64
            o = np.matmul(p.astype(V.dtype).reshape(Hkv, g * T, S), V)  # [Hkv, g*T, D]
            o = o.reshape(Hkv, g, T, D).transpose(2, 0, 1, 3).reshape(T, H * D)
            a = o @ L["wo"].T
            if L["bo"] is not None:
                a = a + L["bo"]
            x = x + a
            h = rmsnorm(x, L["ffn_norm"], m.eps)
            f = silu(h @ L["w_gate"].T) * (h @ L["w_up"].T)          # [T, n_ff]
            x = x + f @ L["w_down"].T
        self.n_past = S
        if want == "last":
            x = x[-1:]
        x = rmsnorm(x, m.output_norm, m.eps)
        return x @ m.output.T                                         # [rows, n_vocab]


def forward_logits(model, tokens, all_rows=False):
    """Logits of the last prompt position ([1, n_vocab]) or of all ([T, n_vocab])."""
    s = Session(model, len(tokens))
    return s.step(tokens, "all" if all_rows else "last")


def greedy(model, tokens, n, session=None, first_logits=None):
    """Argmax continuation of n tokens with a KV cache.

    Returns (ids int32 [n], margin float64 [n]): margin is top-1 minus top-2
    logit at each step, so a caller can tell a real divergence from a near tie.
    """
    if session is None:
        session = Session(model, len(tokens) + n)
        first_logits = session.step(tokens, "last")
    ids = np.zeros(n, dtype=np.int32)
    margin = np.zeros(n, dtype=np.float64)
    logits = first_logits[-1]
    for i in range(n):
        top2 = np.argpartition(-logits, 1)[:2]
        t = int(np.argmax(logits))
        other = top2[0] if top2[0] != t else top2[1]
        ids[i] = t
        margin[i] = float(logits[t] - logits[other])
        if i + 1 < n:
            logits = session.step([t], "last")[-1]
    return ids, margin


# ---------------------------------------------------------------- CLI ---

def parse_tokens(text):
    parts = text.replace(",", " ").split()
    if not parts:
        raise RefError("empty token list")
    return [int(p) for p in parts]


def main(argv=None):
    ap = argparse.ArgumentParser(description="numpy reference forward pass of a LLaMA model")
    ap.add_argument("model", help="GGUF file or Hugging Face model directory")
    ap.add_argument("--tokens", help="prompt token ids, comma separated")
    ap.add_argument("--tokens-file", help="file with prompt token ids (commas or whitespace)")
    ap.add_argument("--all-logits", action="store_true", help="write every prompt row, not only the last")
    ap.add_argument("--greedy", type=int, default=0, metavar="N", help="greedy continuation of N tokens")
    ap.add_argument("--dtype", choices=("float64", "float32"), default="float64")
    ap.add_argument("--out", required=True, help="output .npz")
    ap.add_argument("-q", "--quiet", action="store_true")
    a = ap.parse_args(argv)

    try:
        if a.tokens_file:
            with open(a.tokens_file) as f:
                toks = parse_tokens(f.read())
        elif a.tokens:
            toks = parse_tokens(a.tokens)
        else:
            ap.error("one of --tokens or --tokens-file is needed")
        t0 = time.time()
        m = load_model(a.model, np.dtype(a.dtype).type)
        t1 = time.time()
        if not a.quiet:
            print(m.describe(), file=sys.stderr)
            print("loaded in %.1f s" % (t1 - t0), file=sys.stderr)
        if m.n_ctx and len(toks) + a.greedy > m.n_ctx:
            print("warning: %d tokens exceed context_length %d"
                  % (len(toks) + a.greedy, m.n_ctx), file=sys.stderr)
        sess = Session(m, len(toks) + max(a.greedy, 0))
        logits = sess.step(toks, "all" if a.all_logits else "last")
        rows = np.arange(len(toks)) if a.all_logits else np.array([len(toks) - 1])
        ids = np.zeros(0, dtype=np.int32)
        margin = np.zeros(0)
        if a.greedy > 0:
            ids, margin = greedy(m, toks, a.greedy, session=sess, first_logits=logits)
        t2 = time.time()
        np.savez(a.out,
                 tokens=np.asarray(toks, dtype=np.int32),
                 rows=rows.astype(np.int32),
                 logits=logits.astype(np.float32),
                 greedy=ids,
                 greedy_margin=margin,
                 n_vocab=np.int64(m.n_vocab))
        if not a.quiet:
            print("forward in %.1f s; wrote %s (%d x %d logits, %d greedy tokens)"
                  % (t2 - t1, a.out, logits.shape[0], logits.shape[1], len(ids)),
                  file=sys.stderr)
            if len(ids):
                print("greedy: " + ",".join(str(int(t)) for t in ids), file=sys.stderr)
    except (RefError, OSError, ValueError, KeyError, NotImplementedError) as e:
        print("ref_forward: %s" % e, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
