#!/usr/bin/env python3
"""Write a tiny random-weight LLaMA in Hugging Face layout, and optionally
the same weights as a GGUF file.

Usage:
  make-hf-model.py OUTDIR [--layers N] [--dim D] [--heads H] [--kv-heads K]
                   [--ff F] [--vocab V] [--head-dim HD] [--ctx C] [--tied]
                   [--llama3-rope] [--shards S] [--header-pad P] [--seed S] [--dtype f32|f16|bf16]
                   [--tokenizer-json PATH] [--gguf OUT.gguf]
                   [--gguf-tokenizer-from MODEL.gguf]

OUTDIR receives config.json, model.safetensors (or S shards named
model-0000i-of-0000S.safetensors plus model.safetensors.index.json),
tokenizer_config.json, and tokenizer.json when --tokenizer-json is given.
The safetensors files are written here with numpy alone (8-byte
little-endian header length, JSON header padded with spaces to a multiple
of 8, or P bytes past one with --header-pad P, then the tensors back to
back).

--gguf OUT.gguf also writes the same weights as a GGUF file (arch llama)
with the gguf package.  The HF checkpoint rotates pairs (i, i + d/2) of
each head ("rotate_half"); GGUF files made from HF checkpoints rotate
pairs (2i, 2i+1), so the rows of Q and K are permuted per head: the rows
of a head, split as (2, head_dim/2), are transposed to (head_dim/2, 2).
Both files must therefore give the same logits.  Llama-3 RoPE scaling is
written as the rope_freqs.weight tensor (one divisor per frequency).
--gguf-tokenizer-from copies every tokenizer.* key from another GGUF.
After writing, the GGUF is read back with gguf.GGUFReader and every tensor
is compared with the safetensors files (read back from disk), undoing the
permutation, and the permutation is checked against its definition.

Weights: linear layers and the embedding are normal(0, 1/sqrt(fan_in))
(--std S overrides), norm weights 1 + 0.1 * normal, so activations stay
near unit scale and logits are sane.  Everything is drawn from one
numpy Generator seeded with --seed in a fixed order: the same arguments
give the same files.
"""
import argparse
import json
import math
import os
import shutil
import struct
import sys

import numpy as np

ST_DTYPE = {"f32": "F32", "f16": "F16", "bf16": "BF16"}


# ---------------------------------------------------------------- dtypes

def f32_to_bf16_bits(x):
    """Round float32 to bfloat16 (nearest, ties to even); returns uint16 bits."""
    u = np.ascontiguousarray(x, dtype="<f4").view("<u4").astype(np.uint64)
    rounded = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    return rounded.astype("<u2")


def bf16_bits_to_f32(b):
    return (b.astype("<u4") << 16).view("<f4")


def to_storage(x, dtype):
    """(array as stored in the file, the float32 values it means)."""
    if dtype == "f32":
        s = np.ascontiguousarray(x, dtype="<f4")
        return s, s
    if dtype == "f16":
        s = np.ascontiguousarray(x, dtype="<f2")
        return s, s.astype("<f4")
    s = f32_to_bf16_bits(x)
    return s, bf16_bits_to_f32(s)


# ---------------------------------------------------------------- safetensors

def write_safetensors(path, tensors, pad=0):
    """tensors: list of (name, array already in storage dtype), st dtype name;
    pad: spaces past the multiple of 8 (the data then starts pad bytes off it)."""
    header, offset = {"__metadata__": {"format": "pt"}}, 0
    for name, arr, st_dtype in tensors:
        header[name] = {"dtype": st_dtype, "shape": list(arr.shape),
                        "data_offsets": [offset, offset + arr.nbytes]}
        offset += arr.nbytes
    raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
    raw += b" " * (-len(raw) % 8 + pad)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for _, arr, _ in tensors:
            f.write(np.ascontiguousarray(arr).tobytes())
    return offset


def read_safetensors(path):
    """name -> float32 array, parsed from the file (used to check our writer)."""
    with open(path, "rb") as f:
        blob = f.read()
    n = struct.unpack("<Q", blob[:8])[0]
    header = json.loads(blob[8:8 + n])
    data = blob[8 + n:]
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        b, end = e["data_offsets"]
        raw = data[b:end]
        if e["dtype"] == "F32":
            a = np.frombuffer(raw, dtype="<f4")
        elif e["dtype"] == "F16":
            a = np.frombuffer(raw, dtype="<f2").astype("<f4")
        else:
            a = bf16_bits_to_f32(np.frombuffer(raw, dtype="<u2"))
        out[name] = a.reshape(e["shape"])
    return out


# ---------------------------------------------------------------- the model

def make_weights(a):
    """Ordered list of (hf name, float32 array [out, in] or [n])."""
    rng = np.random.default_rng(a.seed)
    hd, q_rows, kv_rows = a.head_dim, a.heads * a.head_dim, a.kv_heads * a.head_dim

    def linear(rows, cols):
        std = a.std if a.std is not None else 1.0 / math.sqrt(cols)
        return (rng.standard_normal((rows, cols)) * std).astype(np.float32)

    def norm(n):
        return (1.0 + 0.1 * rng.standard_normal(n)).astype(np.float32)

    w = [("model.embed_tokens.weight", linear(a.vocab, a.dim))]
    for i in range(a.layers):
        p = "model.layers.%d." % i
        w += [
            (p + "input_layernorm.weight", norm(a.dim)),
            (p + "self_attn.q_proj.weight", linear(q_rows, a.dim)),
            (p + "self_attn.k_proj.weight", linear(kv_rows, a.dim)),
            (p + "self_attn.v_proj.weight", linear(kv_rows, a.dim)),
            (p + "self_attn.o_proj.weight", linear(a.dim, q_rows)),
            (p + "post_attention_layernorm.weight", norm(a.dim)),
            (p + "mlp.gate_proj.weight", linear(a.ff, a.dim)),
            (p + "mlp.up_proj.weight", linear(a.ff, a.dim)),
            (p + "mlp.down_proj.weight", linear(a.dim, a.ff)),
        ]
    w.append(("model.norm.weight", norm(a.dim)))
    if not a.tied:
        w.append(("lm_head.weight", linear(a.vocab, a.dim)))
    assert hd % 2 == 0
    return w


LLAMA3 = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
          "high_freq_factor": 4.0, "original_max_position_embeddings": 32}


def config_json(a):
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_act": "silu",
        "attention_bias": False,
        "mlp_bias": False,
        "vocab_size": a.vocab,
        "hidden_size": a.dim,
        "intermediate_size": a.ff,
        "num_hidden_layers": a.layers,
        "num_attention_heads": a.heads,
        "num_key_value_heads": a.kv_heads,
        "head_dim": a.head_dim,
        "max_position_embeddings": a.ctx,
        "rms_norm_eps": a.eps,
        "rope_theta": a.rope_theta,
        "rope_scaling": dict(LLAMA3) if a.llama3_rope else None,
        "tie_word_embeddings": a.tied,
        "bos_token_id": a.bos_id,
        "eos_token_id": a.eos_id,
        "torch_dtype": {"f32": "float32", "f16": "float16", "bf16": "bfloat16"}[a.dtype],
    }


def token_text(tok, tid):
    for t in tok.get("added_tokens", []):
        if t.get("id") == tid:
            return t.get("content")
    for text, i in tok.get("model", {}).get("vocab", {}).items():
        if i == tid:
            return text
    return None


def write_hf(a, weights):
    os.makedirs(a.outdir, exist_ok=True)
    st_dtype = ST_DTYPE[a.dtype]
    stored = [(n, to_storage(x, a.dtype)[0], st_dtype) for n, x in weights]
    for f in os.listdir(a.outdir):
        if f.endswith(".safetensors") or f == "model.safetensors.index.json":
            os.unlink(os.path.join(a.outdir, f))
    if a.shards == 1:
        write_safetensors(os.path.join(a.outdir, "model.safetensors"), stored, a.header_pad)
    else:
        per = -(-len(stored) // a.shards)
        weight_map, total = {}, 0
        for s in range(a.shards):
            part = stored[s * per:(s + 1) * per]
            fname = "model-%05d-of-%05d.safetensors" % (s + 1, a.shards)
            total += write_safetensors(os.path.join(a.outdir, fname), part, a.header_pad)
            for n, _, _ in part:
                weight_map[n] = fname
        with open(os.path.join(a.outdir, "model.safetensors.index.json"), "w") as f:
            json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)
    with open(os.path.join(a.outdir, "config.json"), "w") as f:
        json.dump(config_json(a), f, indent=2)
    tcfg = {"tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": a.ctx,
            "clean_up_tokenization_spaces": False}
    if a.tokenizer_json:
        shutil.copyfile(a.tokenizer_json, os.path.join(a.outdir, "tokenizer.json"))
        with open(a.tokenizer_json, encoding="utf-8") as f:
            tok = json.load(f)
        for key, tid in (("bos_token", a.bos_id), ("eos_token", a.eos_id)):
            text = token_text(tok, tid)
            if text is not None:
                tcfg[key] = text
    with open(os.path.join(a.outdir, "tokenizer_config.json"), "w") as f:
        json.dump(tcfg, f, indent=2)


def hf_files(outdir):
    return sorted(f for f in os.listdir(outdir) if f.endswith(".safetensors"))


# ---------------------------------------------------------------- GGUF

def permute_rows(w, n_head):
    """HF rotate_half row order -> interleaved (GGUF) row order, per head."""
    rows = w.shape[0]
    hd = rows // n_head
    return (w.reshape(n_head, 2, hd // 2, *w.shape[1:])
             .swapaxes(1, 2).reshape(w.shape))


def unpermute_rows(w, n_head):
    rows = w.shape[0]
    hd = rows // n_head
    return (w.reshape(n_head, hd // 2, 2, *w.shape[1:])
             .swapaxes(1, 2).reshape(w.shape))


def llama3_rope_freqs(a):
    """Per-frequency divisors of Llama-3 RoPE scaling (rope_freqs.weight)."""
    s = LLAMA3
    lo_wl = s["original_max_position_embeddings"] / s["low_freq_factor"]
    hi_wl = s["original_max_position_embeddings"] / s["high_freq_factor"]
    out = []
    for i in range(0, a.head_dim, 2):
        freq = 1.0 / (a.rope_theta ** (i / a.head_dim))
        wavelen = 2 * math.pi / freq
        if wavelen < hi_wl:
            out.append(1.0)
        elif wavelen > lo_wl:
            out.append(s["factor"])
        else:
            smooth = ((s["original_max_position_embeddings"] / wavelen - s["low_freq_factor"])
                      / (s["high_freq_factor"] - s["low_freq_factor"]))
            out.append(1.0 / ((1 - smooth) / s["factor"] + smooth))
    return np.array(out, dtype=np.float32)


def gguf_name(hf):
    fixed = {"model.embed_tokens.weight": "token_embd.weight",
             "model.norm.weight": "output_norm.weight",
             "lm_head.weight": "output.weight"}
    if hf in fixed:
        return fixed[hf]
    parts = hf.split(".")  # model.layers.N.<module...>.weight
    sub = {"input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm",
           "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k",
           "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output",
           "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down"}
    return "blk.%s.%s.weight" % (parts[2], sub[".".join(parts[3:-1])])


def gguf_tensor(a, hf, x):
    """(name, array to write, raw_dtype) for one HF tensor (float32 values x)."""
    import gguf
    if hf.endswith("q_proj.weight"):
        x = permute_rows(x, a.heads)
    elif hf.endswith("k_proj.weight"):
        x = permute_rows(x, a.kv_heads)
    stored, _ = to_storage(x, a.dtype)
    if x.ndim == 1 or a.dtype == "f32":
        return gguf_name(hf), to_storage(x, a.dtype)[1], None  # norms stay F32 (exact)
    if a.dtype == "f16":
        return gguf_name(hf), stored, None
    return gguf_name(hf), stored, gguf.GGMLQuantizationType.BF16


def copy_tokenizer(writer, path):
    import gguf
    r = gguf.GGUFReader(path)
    n_tokens = None
    for name, field in r.fields.items():
        if not name.startswith("tokenizer."):
            continue
        t = field.types[0]
        if t == gguf.GGUFValueType.ARRAY:
            sub = field.types[-1]
            if sub == gguf.GGUFValueType.STRING:
                val = [bytes(field.parts[i]) for i in field.data]
            else:
                val = field.contents()
            if name == "tokenizer.ggml.tokens":
                n_tokens = len(val)
            writer.add_key_value(name, val, t, sub_type=sub)
        elif t == gguf.GGUFValueType.STRING:
            writer.add_key_value(name, bytes(field.parts[-1]), t)
        else:
            writer.add_key_value(name, field.contents(), t)
    return n_tokens


def write_gguf(a, weights):
    import gguf
    w = gguf.GGUFWriter(a.gguf, "llama")
    w.add_name("llamad tiny random llama (seed %d)" % a.seed)
    w.add_context_length(a.ctx)
    w.add_embedding_length(a.dim)
    w.add_block_count(a.layers)
    w.add_feed_forward_length(a.ff)
    w.add_head_count(a.heads)
    w.add_head_count_kv(a.kv_heads)
    w.add_key_length(a.head_dim)
    w.add_value_length(a.head_dim)
    w.add_rope_dimension_count(a.head_dim)
    w.add_rope_freq_base(a.rope_theta)
    w.add_layer_norm_rms_eps(a.eps)
    w.add_vocab_size(a.vocab)
    w.add_file_type({"f32": 0, "f16": 1, "bf16": 32}[a.dtype])
    if a.gguf_tokenizer_from:
        n = copy_tokenizer(w, a.gguf_tokenizer_from)
        if n is not None and n != a.vocab:
            sys.exit("%s has %d tokens but --vocab is %d" % (a.gguf_tokenizer_from, n, a.vocab))
    for hf, x in weights:
        name, arr, raw = gguf_tensor(a, hf, x)
        w.add_tensor(name, arr, raw_dtype=raw)
    if a.llama3_rope:
        w.add_tensor("rope_freqs.weight", llama3_rope_freqs(a))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def gguf_values(t):
    """float32 values of a tensor read back with GGUFReader, numpy shape [rows, cols]."""
    import gguf
    shape = tuple(reversed([int(d) for d in t.shape]))
    if t.tensor_type == gguf.GGMLQuantizationType.BF16:
        return bf16_bits_to_f32(np.asarray(t.data).view("<u2")).reshape(shape)
    return np.asarray(t.data).astype(np.float32).reshape(shape)


def verify_gguf(a, weights):
    """Read both files back and check they hold the same weights."""
    import gguf
    hf = {}
    for f in hf_files(a.outdir):
        hf.update(read_safetensors(os.path.join(a.outdir, f)))
    assert set(hf) == {n for n, _ in weights}, "safetensors names differ"
    for n, x in weights:
        assert np.array_equal(hf[n], to_storage(x, a.dtype)[1]), n
    r = gguf.GGUFReader(a.gguf)
    g = {t.name: t for t in r.tensors}
    expect = {gguf_name(n) for n, _ in weights} | ({"rope_freqs.weight"} if a.llama3_rope else set())
    assert set(g) == expect, "GGUF tensor names differ: %s" % (set(g) ^ expect)
    for n, _ in weights:
        v = gguf_values(g[gguf_name(n)])
        ref = hf[n]
        assert v.shape == ref.shape, (n, v.shape, ref.shape)
        if n.endswith("q_proj.weight") or n.endswith("k_proj.weight"):
            nh = a.heads if "q_proj" in n else a.kv_heads
            assert np.array_equal(unpermute_rows(v, nh), ref), n
            # by definition: row 2i of a head is HF row i, row 2i+1 is HF row i + hd/2
            hd = a.head_dim
            for h in range(nh):
                for i in range(hd // 2):
                    assert np.array_equal(v[h * hd + 2 * i], ref[h * hd + i]), (n, h, i)
                    assert np.array_equal(v[h * hd + 2 * i + 1], ref[h * hd + hd // 2 + i]), (n, h, i)
            assert a.head_dim == 2 or not np.array_equal(v, ref), n + " not permuted"
        else:
            assert np.array_equal(v, ref), n
    arch = r.fields["general.architecture"].contents()
    assert arch == "llama", arch
    assert r.fields["llama.attention.head_count_kv"].contents() == a.kv_heads
    assert r.fields["llama.rope.dimension_count"].contents() == a.head_dim


# ---------------------------------------------------------------- main

def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("outdir")
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--kv-heads", type=int, default=None, help="default: --heads")
    p.add_argument("--head-dim", type=int, default=None, help="default: dim / heads")
    p.add_argument("--ff", type=int, default=None, help="default: 3 * dim")
    p.add_argument("--vocab", type=int, default=None,
                   help="default: the tokenizer's size, else 256")
    p.add_argument("--ctx", type=int, default=256, help="max_position_embeddings")
    p.add_argument("--rope-theta", type=float, default=10000.0)
    p.add_argument("--eps", type=float, default=1e-5, help="rms_norm_eps")
    p.add_argument("--tied", action="store_true", help="tie lm_head to the embedding")
    p.add_argument("--llama3-rope", action="store_true",
                   help="llama3 rope_scaling (factor 8, low 1, high 4, original ctx 32)")
    p.add_argument("--shards", type=int, default=1)
    p.add_argument("--header-pad", type=int, choices=range(8), default=0,
                   help="pad each safetensors header this many bytes past a multiple of 8, so "
                        "that the data starts off a float (the format allows any header length)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--std", type=float, default=None,
                   help="weight std (default 1/sqrt(fan_in))")
    p.add_argument("--dtype", choices=sorted(ST_DTYPE), default="f32")
    p.add_argument("--bos-id", type=int, default=1)
    p.add_argument("--eos-id", type=int, default=2)
    p.add_argument("--tokenizer-json", metavar="PATH")
    p.add_argument("--gguf", metavar="OUT.gguf", help="also write the weights as GGUF")
    p.add_argument("--gguf-tokenizer-from", metavar="MODEL.gguf",
                   help="copy tokenizer.* keys from this GGUF into --gguf")
    a = p.parse_args(argv)
    a.kv_heads = a.kv_heads or a.heads
    a.head_dim = a.head_dim or a.dim // a.heads
    a.ff = a.ff or 3 * a.dim
    if a.vocab is None:
        a.vocab = vocab_from_tokenizers(a) or 256
    if a.heads % a.kv_heads or a.head_dim % 2 or a.head_dim <= 0:
        p.error("need heads divisible by kv-heads and an even head_dim")
    if a.shards < 1 or a.shards > a.layers * 9 + 2:
        p.error("--shards must be between 1 and the number of tensors")
    if not (0 <= a.bos_id < a.vocab and 0 <= a.eos_id < a.vocab):
        p.error("--bos-id and --eos-id must be below --vocab")
    if a.gguf_tokenizer_from and not a.gguf:
        p.error("--gguf-tokenizer-from needs --gguf")
    return a


def vocab_from_tokenizers(a):
    if a.tokenizer_json:
        with open(a.tokenizer_json, encoding="utf-8") as f:
            tok = json.load(f)
        ids = list(tok.get("model", {}).get("vocab", {}).values())
        ids += [t["id"] for t in tok.get("added_tokens", [])]
        return max(ids) + 1 if ids else None
    if a.gguf_tokenizer_from:
        import gguf
        r = gguf.GGUFReader(a.gguf_tokenizer_from)
        f = r.fields.get("tokenizer.ggml.tokens")
        return len(f.data) if f is not None else None
    return None


def main(argv):
    a = parse_args(argv)
    weights = make_weights(a)
    write_hf(a, weights)
    if a.gguf:
        write_gguf(a, weights)
        verify_gguf(a, weights)
    print("%s: %d tensors, %d layers, dim %d, heads %d/%d, head_dim %d, ff %d, vocab %d, %s%s"
          % (a.outdir, len(weights), a.layers, a.dim, a.heads, a.kv_heads, a.head_dim, a.ff,
             a.vocab, a.dtype, (", gguf " + a.gguf) if a.gguf else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
