#!/usr/bin/env python3
"""Write llamad's corpus of hand-made bad GGUF files (shared/THREATS.md part A).

usage: tests/corpus/make-bad-ggufs.py OUTDIR     (the tests use tests/corpus/bad-models)

Every file starts from one valid tiny LLaMA model (one layer, n_embd 32, a
byte-level BPE vocabulary of 260 tokens), which is also written as
OUTDIR/ok-tiny-llama.gguf and checked with the gguf package's reader; the
package's writer also makes OUTDIR/ok-writer-mini.gguf.  Each
bad file changes one thing and is named after its case: a1-... to a6-...
after the THREATS.md row, trunc-... for files cut short, hdr-... for the
header.

OUTDIR/manifest.tsv has one line per bad file:

    filename <TAB> substring the error message must contain <TAB> gguf|model

"gguf": the GGUF reader itself must reject the file.  "model": the file is a
well-formed GGUF file whose defect only the model loader can see (a token id
past the vocabulary, a wrong tokenizer array type, a tensor of the wrong
shape); the reader must accept it and the loader must reject it.
"""
import os
import struct
import sys

import numpy as np

# value types (GGUF specification)
U8, I8, U16, I16, U32, I32, F32, BOOL, STR, ARR, U64, I64, F64 = range(13)
FMT = {U8: "<B", I8: "<b", U16: "<H", I16: "<h", U32: "<I", I32: "<i", F32: "<f",
       BOOL: "<B", U64: "<Q", I64: "<q", F64: "<d"}
# tensor types (ggml numbering) and their (block elements, block bytes)
T_F32, T_F16, T_Q4_0, T_Q5_0, T_Q8_0, T_Q6_K, T_I8 = 0, 1, 2, 6, 8, 14, 24
BLOCK = {T_F32: (1, 4), T_F16: (1, 2), T_Q4_0: (32, 18), T_Q8_0: (32, 34), T_Q6_K: (256, 210)}

N_EMBD, N_FF, N_HEAD, N_HEAD_KV = 32, 64, 2, 1
HEAD_DIM = N_EMBD // N_HEAD


class Raw:
    """Bytes written as they are, in place of an encoded value."""

    def __init__(self, b):
        self.b = b


def enc_str(s):
    b = s.encode("utf-8") if isinstance(s, str) else s
    return struct.pack("<Q", len(b)) + b


def enc_val(t, v):
    if isinstance(v, Raw):
        return v.b
    if t == STR:
        return enc_str(v)
    if t == ARR:
        et, items = v
        return struct.pack("<IQ", et, len(items)) + b"".join(enc_val(et, x) for x in items)
    return struct.pack(FMT[t], v)


def byte_level_chars():
    """GPT-2's byte -> printable character table."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    out, extra = {}, 0
    for b in range(256):
        if b in keep:
            out[b] = chr(b)
        else:
            out[b] = chr(256 + extra)
            extra += 1
    return [out[b] for b in range(256)]


def base_kvs():
    tokens = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"] + byte_level_chars() + ["\u0120t"]
    types = [3, 3, 3] + [1] * 257
    return [
        ("general.architecture", STR, "llama"),
        ("general.description", STR, "a tiny model for llamad's negative corpus. " * 20),
        ("general.name", STR, "tiny"),
        ("general.alignment", U32, 32),
        ("llama.block_count", U32, 1),
        ("llama.context_length", U32, 256),
        ("llama.embedding_length", U32, N_EMBD),
        ("llama.feed_forward_length", U32, N_FF),
        ("llama.attention.head_count", U32, N_HEAD),
        ("llama.attention.head_count_kv", U32, N_HEAD_KV),
        ("llama.rope.freq_base", F32, 10000.0),
        ("llama.attention.layer_norm_rms_epsilon", F32, 1e-5),
        ("llama.vocab_size", U32, len(tokens)),
        ("tokenizer.ggml.model", STR, "gpt2"),
        ("tokenizer.ggml.pre", STR, "smollm"),
        ("tokenizer.ggml.tokens", ARR, (STR, tokens)),
        ("tokenizer.ggml.token_type", ARR, (I32, types)),
        ("tokenizer.ggml.merges", ARR, (STR, ["\u0120 t"])),
        ("tokenizer.ggml.bos_token_id", U32, 1),
        ("tokenizer.ggml.eos_token_id", U32, 2),
        ("tokenizer.ggml.padding_token_id", U32, 2),
        ("tokenizer.ggml.add_bos_token", BOOL, 0),
    ]


N_VOCAB = 260


def base_tensors():
    t = [("token_embd.weight", [N_EMBD, N_VOCAB], T_Q8_0),
         ("output_norm.weight", [N_EMBD], T_F32),
         ("blk.0.attn_norm.weight", [N_EMBD], T_F32),
         ("blk.0.attn_q.weight", [N_EMBD, N_HEAD * HEAD_DIM], T_Q4_0),
         ("blk.0.attn_k.weight", [N_EMBD, N_HEAD_KV * HEAD_DIM], T_Q4_0),
         ("blk.0.attn_v.weight", [N_EMBD, N_HEAD_KV * HEAD_DIM], T_Q4_0),
         ("blk.0.attn_output.weight", [N_HEAD * HEAD_DIM, N_EMBD], T_Q4_0),
         ("blk.0.ffn_norm.weight", [N_EMBD], T_F32),
         ("blk.0.ffn_gate.weight", [N_EMBD, N_FF], T_Q4_0),
         ("blk.0.ffn_up.weight", [N_EMBD, N_FF], T_Q4_0),
         ("blk.0.ffn_down.weight", [N_FF, N_EMBD], T_Q4_0)]
    return [dict(name=n, ne=ne, type=ty) for n, ne, ty in t]


def nbytes(ne, ty):
    n = 1
    for x in ne:
        n *= x
    be, bb = BLOCK[ty]
    return n // be * bb


def sane_nbytes(t):
    """The byte size of a tensor that a test file can hold, else None (absurd
    shapes and unknown types get 32 zero bytes of room and no data)."""
    ne, ty = t["ne"], t["type"]
    if ty not in BLOCK or not ne or min(ne) <= 0 or ne[0] % BLOCK[ty][0] != 0:
        return None
    n = nbytes(ne, ty)
    return n if n <= 1 << 20 else None


def tensor_data(ne, ty, rng):
    n = 1
    for x in ne:
        n *= x
    if ty == T_F32:
        return np.ones(n, np.float32).tobytes()
    be, bb = BLOCK[ty]
    blocks = rng.integers(0, 256, size=(n // be, bb), dtype=np.uint8)
    blocks[:, 0:2] = np.full(n // be, 0.02, np.float16).view(np.uint8).reshape(-1, 2)
    return blocks.tobytes()


def build(kvs=None, tensors=None, magic=b"GGUF", version=3, n_kv=None, n_tensors=None,
          align=32, data_len=None):
    """A GGUF file and the byte offsets of its fields (for truncation cases).
    A tensor dict may give 'offset' (else packed in order at `align`),
    'n_dims' (else len(ne)) and 'nodata' (no bytes written for it)."""
    kvs = base_kvs() if kvs is None else kvs
    tensors = base_tensors() if tensors is None else tensors
    rng = np.random.Generator(np.random.PCG64(7))
    marks = {}
    out = bytearray(magic)
    out += struct.pack("<I", version)
    out += struct.pack("<QQ", len(tensors) if n_tensors is None else n_tensors,
                       len(kvs) if n_kv is None else n_kv)
    for i, (k, t, v) in enumerate(kvs):
        marks[f"kv{i}"] = len(out)
        out += enc_str(k)
        marks[f"kv{i}.type"] = len(out)
        out += struct.pack("<I", t)
        marks[f"kv{i}.value"] = len(out)
        out += enc_val(t, v)
    pos, placed = 0, []
    for i, t in enumerate(tensors):
        if "offset" in t:
            off = t["offset"]
        else:
            off = pos
            size = sane_nbytes(t) or 32
            pos += (size + align - 1) // align * align
        placed.append(off)
        marks[f"t{i}"] = len(out)
        out += enc_str(t["name"])
        marks[f"t{i}.n_dims"] = len(out)
        out += struct.pack("<I", t.get("n_dims", len(t["ne"])))
        marks[f"t{i}.ne"] = len(out)
        out += b"".join(struct.pack("<Q", x) for x in t["ne"])
        marks[f"t{i}.type"] = len(out)
        out += struct.pack("<I", t["type"])
        marks[f"t{i}.offset"] = len(out)
        out += struct.pack("<Q", off)
    marks["infos_end"] = len(out)
    out += b"\0" * (-len(out) % align)
    marks["data"] = len(out)
    data = bytearray()
    for t, off in zip(tensors, placed):
        if t.get("nodata") or "offset" in t:
            continue
        data += b"\0" * (off - len(data))
        if sane_nbytes(t) is None:
            data += b"\0" * 32
        else:
            data += tensor_data(t["ne"], t["type"], rng)
    if data_len is not None:
        data = (data + b"\0" * data_len)[:data_len]
    return bytes(out + data), marks


def kvs_with(key, t, v):
    """The base kvs with `key` set to (t, v), or dropped when t is None."""
    out = []
    for k, kt, kv in base_kvs():
        if k == key:
            if t is not None:
                out.append((k, t, v))
        else:
            out.append((k, kt, kv))
    return out


def kvs_plus(*extra):
    return base_kvs() + list(extra)


def tensors_with(i, **changes):
    t = base_tensors()
    t[i] = dict(t[i], **changes)
    return t


def tiny(name, ne, ty, **kw):
    return dict(name=name, ne=ne, type=ty, **kw)


HUGE_NE0 = 0x7FFFFFFFFFFFFFC0  # llama.cpp's HANDCRAFTED_DATA_MEM_SIZE_OVERFLOW shape


def cases():
    """(file name, bytes, expected substring, gguf|model)"""
    c = []

    def add(name, data, want, who="gguf"):
        c.append((name, data, want, who))

    good, m = build()

    # ---- header
    add("hdr-empty.gguf", b"", "magic")
    add("hdr-3-bytes.gguf", b"GGU", "magic")
    add("hdr-bad-magic.gguf", build(magic=b"GGUG")[0], "magic")
    add("hdr-ggml-magic.gguf", build(magic=b"lmgg")[0], "magic")
    add("hdr-version-0.gguf", build(version=0)[0], "version 0")
    add("hdr-version-1.gguf", build(version=1)[0], "version 1")
    add("hdr-version-4.gguf", build(version=4)[0], "version 4")
    add("hdr-version-big-endian.gguf", build(version=0x03000000)[0], "version")

    # ---- A1: counts and lengths
    add("a1-n-kv-huge.gguf", build(n_kv=2**64 - 1)[0], "n_kv")
    add("a1-n-kv-over-cap.gguf", build(n_kv=65537)[0], "n_kv")
    add("a1-n-kv-past-file.gguf", build(n_kv=60000)[0], "n_kv")
    add("a1-n-tensors-huge.gguf", build(n_tensors=2**63)[0], "n_tensors")
    add("a1-n-tensors-over-cap.gguf", build(n_tensors=65537)[0], "n_tensors")
    add("a1-n-tensors-past-file.gguf", build(n_tensors=5000)[0], "n_tensors")
    add("a1-n-kv-too-many-by-one.gguf", build(n_kv=len(base_kvs()) + 1)[0], "tensor")
    add("a1-key-len-huge.gguf",
        good[:m["kv0"]] + struct.pack("<Q", 2**64 - 1) + good[m["kv0"] + 8:], "key length")
    add("a1-key-len-over-cap.gguf",
        good[:m["kv2"]] + struct.pack("<Q", 70000) + good[m["kv2"] + 8:], "key length 70000")
    add("a1-key-empty.gguf", build(kvs_plus(("", U32, 1)))[0], "key is empty")
    add("a1-string-len-huge.gguf",
        build(kvs_with("general.name", STR, Raw(struct.pack("<Q", 2**63) + b"tiny")))[0],
        "string length")
    add("a1-string-len-over-cap.gguf",
        build(kvs_with("general.name", STR, Raw(struct.pack("<Q", (1 << 20) + 1) + b"x")))[0],
        "string length 1048577")
    add("a1-string-len-past-file.gguf",
        good[:m["kv2.value"]] + struct.pack("<Q", len(good)) + good[m["kv2.value"] + 8:],
        "string bytes")
    add("a1-array-len-huge.gguf",
        build(kvs_plus(("x.arr", ARR, Raw(struct.pack("<IQ", U32, 2**62)))))[0], "array length")
    add("a1-array-len-over-cap.gguf",
        build(kvs_plus(("x.arr", ARR, Raw(struct.pack("<IQ", U8, (1 << 24) + 1)))))[0],
        "array length 16777217")
    add("a1-array-len-past-file.gguf",
        build(kvs_plus(("x.arr", ARR, Raw(struct.pack("<IQ", U32, 1000000)))))[0], "array data")
    add("a1-string-array-len-past-file.gguf",
        build(kvs_plus(("x.arr", ARR, Raw(struct.pack("<IQ", STR, 1000000)))))[0],
        "array length 1000000 of strings")
    add("a1-string-array-elem-len-huge.gguf",
        build(kvs_plus(("x.arr", ARR, Raw(struct.pack("<IQ", STR, 4) + enc_str("a") + enc_str("b")
                                          + enc_str("c") + struct.pack("<Q", 2**64 - 2)))))[0],
        "element 3 string length")
    add("a1-nested-array.gguf",
        build(kvs_plus(("x.arr", ARR, Raw(struct.pack("<IQ", ARR, 1) + struct.pack("<IQ", U8, 1)
                                          + b"\1"))))[0], "nested array")
    add("a1-nested-array-deep.gguf",
        build(kvs_plus(("x.arr", ARR, Raw(struct.pack("<IQ", ARR, 1) * 10000))))[0], "nested array")
    add("a1-value-type-unknown.gguf", build(kvs_plus(("x.v", 13, Raw(b"\0" * 8))))[0], "value type 13")
    add("a1-value-type-huge.gguf", build(kvs_plus(("x.v", 0xFFFFFFFF, Raw(b"\0" * 8))))[0],
        "value type 4294967295")
    add("a1-array-elem-type-unknown.gguf",
        build(kvs_plus(("x.arr", ARR, Raw(struct.pack("<IQ", 77, 1) + b"\0" * 8))))[0],
        "array element type 77")
    add("a1-bool-not-0-or-1.gguf", build(kvs_with("tokenizer.ggml.add_bos_token", BOOL, 2))[0],
        "bool value 2")
    add("a1-n-dims-huge.gguf", build(tensors=tensors_with(1, n_dims=0xFFFFFFFF))[0], "n_dims 4294967295")
    add("a1-n-dims-5.gguf", build(tensors=tensors_with(3, ne=[32, 32, 1, 1, 1]))[0], "n_dims 5")
    add("a1-n-dims-0.gguf", build(tensors=tensors_with(1, ne=[], n_dims=0))[0], "n_dims 0")
    add("a1-tensor-name-len-huge.gguf",
        good[:m["t2"]] + struct.pack("<Q", 2**64 - 1) + good[m["t2"] + 8:], "name length")
    add("a1-tensor-name-65-bytes.gguf", build(tensors=tensors_with(1, name="n" * 65))[0],
        "name length 65")

    # ---- A2: sizes that wrap
    add("a2-mem-size-overflow-f32-pair.gguf",
        build(tensors=[tiny("a", [HUGE_NE0], T_F32, offset=0), tiny("b", [HUGE_NE0], T_F32, offset=0)],
              kvs=base_kvs()[:1])[0], "overflows")
    add("a2-mem-size-overflow-f16-pair.gguf",
        build(tensors=[tiny("a", [HUGE_NE0], T_F16, offset=0),
                       tiny("b", [HUGE_NE0], T_F16, offset=0xFFFFFFFFFFFFFF80)],
              kvs=base_kvs()[:1])[0], "overflows")
    q4 = HUGE_NE0 // 32 * 18
    add("a2-mem-size-wrap-q4_0-pair.gguf",
        build(tensors=[tiny("a", [HUGE_NE0], T_Q4_0, offset=0),
                       tiny("b", [HUGE_NE0], T_Q4_0, offset=(q4 + 31) // 32 * 32)],
              kvs=base_kvs()[:1])[0], "past end of data")
    add("a2-mem-size-i8-pair.gguf",
        build(tensors=[tiny("a", [HUGE_NE0], T_I8, offset=0), tiny("b", [HUGE_NE0], T_I8, offset=0)],
              kvs=base_kvs()[:1])[0], "type id 24")
    add("a2-offset-plus-size-wraps.gguf",
        build(tensors=tensors_with(1, offset=2**64 - 64))[0], "past end of data")

    # ---- A3: tensor sizes, offsets, shapes
    add("a3-element-count-overflow.gguf", build(tensors=tensors_with(3, ne=[2**32, 2**32]))[0],
        "element count overflows")
    add("a3-element-count-overflow-4d.gguf",
        build(tensors=tensors_with(3, ne=[2**16, 2**16, 2**16, 2**16]))[0], "element count overflows")
    add("a3-element-count-over-int64.gguf", build(tensors=tensors_with(3, ne=[2**32, 2**31]))[0],
        "element count overflows")
    add("a3-nbytes-overflow-q8_0.gguf",
        build(tensors=tensors_with(0, ne=[2**64 - 32]))[0], "ne[0]")
    add("a3-nbytes-overflow.gguf", build(tensors=tensors_with(1, ne=[2**62]))[0], "overflows")
    add("a3-ne0-zero.gguf", build(tensors=tensors_with(1, ne=[0]))[0], "ne[0] 0")
    add("a3-ne1-zero.gguf", build(tensors=tensors_with(3, ne=[32, 0]))[0], "ne[1] 0")
    add("a3-ne0-over-int64.gguf", build(tensors=tensors_with(1, ne=[2**63 + 32]))[0], "ne[0]")
    add("a3-offset-past-end.gguf", build(tensors=tensors_with(1, offset=1 << 30))[0], "past end of data")
    add("a3-offset-unaligned.gguf", build(tensors=tensors_with(2, offset=8))[0],
        "not a multiple of the alignment")
    t = base_tensors()
    add("a3-tensors-overlap.gguf",
        build(tensors=t[:1] + [dict(t[1], offset=nbytes(t[0]["ne"], t[0]["type"]) // 32 * 32)] + t[2:])[0],
        "overlaps")
    add("a3-tensors-same-offset.gguf", build(tensors=tensors_with(2, offset=0))[0], "overlaps")
    add("a3-ne0-not-multiple-of-block.gguf", build(tensors=tensors_with(3, ne=[33, 32]))[0],
        "block size 32")
    add("a3-ne0-not-multiple-of-superblock.gguf",
        build(tensors=tensors_with(3, ne=[128, 32], type=T_Q6_K))[0], "block size 256")
    add("a3-type-unknown.gguf", build(tensors=tensors_with(1, type=99))[0], "type id 99")
    add("a3-type-huge.gguf", build(tensors=tensors_with(1, type=0xFFFFFFFF))[0], "type id 4294967295")
    add("a3-type-q5_0-unsupported.gguf", build(tensors=tensors_with(3, type=T_Q5_0))[0], "type id 6")
    add("a3-duplicate-tensor-name.gguf", build(tensors=tensors_with(2, name="output_norm.weight"))[0],
        "duplicate tensor name")
    add("a3-duplicate-key.gguf", build(kvs_plus(("llama.block_count", U32, 2)))[0], "duplicate key")
    add("a3-duplicate-key-other-type.gguf", build(kvs_plus(("general.name", U8, 1)))[0],
        "duplicate key")
    add("a3-model-token-embd-shape.gguf",
        build(tensors=tensors_with(0, ne=[N_EMBD, N_VOCAB + 40]))[0], "token_embd.weight", "model")
    add("a3-model-attn-q-shape.gguf",
        build(tensors=tensors_with(3, ne=[N_EMBD, 64]))[0], "blk.0.attn_q.weight", "model")
    add("a3-model-missing-tensor.gguf", build(tensors=base_tensors()[:-1])[0],
        "blk.0.ffn_down.weight", "model")

    # ---- A4: alignment
    add("a4-alignment-0.gguf", build(kvs_with("general.alignment", U32, 0))[0], "general.alignment 0")
    add("a4-alignment-3.gguf", build(kvs_with("general.alignment", U32, 3))[0], "general.alignment 3")
    add("a4-alignment-2-21.gguf", build(kvs_with("general.alignment", U32, 1 << 21))[0],
        "general.alignment 2097152")
    add("a4-alignment-2-31.gguf", build(kvs_with("general.alignment", U32, 1 << 31))[0],
        "general.alignment 2147483648")
    add("a4-alignment-uint64.gguf", build(kvs_with("general.alignment", U64, 32))[0],
        "general.alignment has type UINT64")
    add("a4-alignment-string.gguf", build(kvs_with("general.alignment", STR, "32"))[0],
        "general.alignment has type STRING")
    add("a4-alignment-int32.gguf", build(kvs_with("general.alignment", I32, 32))[0],
        "general.alignment has type INT32")
    add("a4-alignment-64-offsets-32.gguf", build(kvs_with("general.alignment", U32, 64))[0],
        "not a multiple of the alignment 64")

    # ---- A5: tensors past the end of the file
    add("a5-data-cut-short.gguf", good[:-100], "past end of data")
    add("a5-no-data.gguf", good[:m["data"]], "past end of data")
    add("a5-offset-huge.gguf", build(tensors=tensors_with(4, offset=2**63))[0], "past end of data")

    # ---- A6: vocabulary (the model loader's checks; the reader accepts these)
    toks = base_kvs()[15][2][1]
    add("a6-tokens-wrong-elem-type.gguf",
        build(kvs_with("tokenizer.ggml.tokens", ARR, (I32, list(range(N_VOCAB)))))[0],
        "tokenizer.ggml.tokens", "model")
    add("a6-tokens-not-array.gguf", build(kvs_with("tokenizer.ggml.tokens", STR, "abc"))[0],
        "tokenizer.ggml.tokens", "model")
    # tokens and token_type disagree in length: either key may be named
    add("a6-tokens-count-mismatch.gguf",
        build(kvs_with("tokenizer.ggml.tokens", ARR, (STR, toks[:-10])))[0],
        "tokenizer.ggml.token", "model")
    add("a6-token-string-too-long.gguf",
        build(kvs_with("tokenizer.ggml.tokens", ARR, (STR, toks[:5] + ["x" * 600] + toks[6:])))[0],
        "tokenizer.ggml.tokens", "model")
    add("a6-token-invalid-utf8.gguf",
        build(kvs_with("tokenizer.ggml.tokens", ARR,
                       (STR, toks[:5] + [b"\xff\xfe"] + toks[6:])))[0],
        "tokenizer.ggml.tokens", "model")
    add("a6-token-type-wrong-elem-type.gguf",
        build(kvs_with("tokenizer.ggml.token_type", ARR, (U8, [1] * N_VOCAB)))[0],
        "tokenizer.ggml.token_type", "model")
    add("a6-token-type-count-mismatch.gguf",
        build(kvs_with("tokenizer.ggml.token_type", ARR, (I32, [1] * (N_VOCAB - 1))))[0],
        "tokenizer.ggml.token_type", "model")
    add("a6-merges-wrong-elem-type.gguf",
        build(kvs_with("tokenizer.ggml.merges", ARR, (U32, [1, 2])))[0], "tokenizer.ggml.merges", "model")
    add("a6-bos-id-past-vocab.gguf", build(kvs_with("tokenizer.ggml.bos_token_id", U32, N_VOCAB))[0],
        "tokenizer.ggml.bos_token_id", "model")
    add("a6-eos-id-huge.gguf", build(kvs_with("tokenizer.ggml.eos_token_id", U32, 0xFFFFFFFF))[0],
        "tokenizer.ggml.eos_token_id", "model")
    # -1 is the common spelling of "no such token" and is accepted; other negatives are not
    add("a6-eos-id-negative.gguf", build(kvs_with("tokenizer.ggml.eos_token_id", I32, -2))[0],
        "tokenizer.ggml.eos_token_id", "model")
    add("a6-padding-id-past-vocab.gguf",
        build(kvs_with("tokenizer.ggml.padding_token_id", U32, 100000))[0],
        "tokenizer.ggml.padding_token_id", "model")
    spm = [("tokenizer.ggml.model", STR, "llama")]
    spm_tokens = ["<unk>", "<s>", "</s>"] + ["<0x%02X>" % b for b in range(256)] + ["\u2581t"]
    spm_tokens[3 + 0x41] = "<0x-1>"
    add("a6-byte-token-bad-hex.gguf",
        build([(k, t, v) for k, t, v in base_kvs() if k != "tokenizer.ggml.model"
               and k != "tokenizer.ggml.tokens" and k != "tokenizer.ggml.token_type"
               and k != "tokenizer.ggml.merges" and k != "tokenizer.ggml.pre"] + spm +
              [("tokenizer.ggml.tokens", ARR, (STR, spm_tokens)),
               ("tokenizer.ggml.token_type", ARR, (I32, [2, 3, 3] + [6] * 256 + [1]))])[0],
        "tokenizer.ggml.tokens", "model")

    # ---- A7: well-formed models that need what llamad does not implement (the
    # loader names the key and its value; ok-neutral-keys.gguf holds the neutral values)
    def refused(name, want, *kvs):
        add(name, build(kvs_plus(*kvs))[0], want + ": llamad does not implement", "model")

    refused("a7-sliding-window.gguf", "llama.attention.sliding_window = 64",
            ("llama.attention.sliding_window", U32, 64))
    refused("a7-expert-count.gguf", "llama.expert_count = 8", ("llama.expert_count", U32, 8))
    refused("a7-expert-used-count.gguf", "llama.expert_used_count = 2",
            ("llama.expert_used_count", U32, 2))
    refused("a7-value-length.gguf", "llama.attention.value_length = 32",
            ("llama.attention.key_length", U32, HEAD_DIM), ("llama.attention.value_length", U32, 32))
    refused("a7-alibi.gguf", "llama.attention.max_alibi_bias = 8",
            ("llama.attention.max_alibi_bias", F32, 8.0))
    refused("a7-clamp-kqv.gguf", "llama.attention.clamp_kqv = 8", ("llama.attention.clamp_kqv", F32, 8.0))
    refused("a7-layer-norm.gguf", "llama.attention.layer_norm_epsilon = 0.0078125",
            ("llama.attention.layer_norm_epsilon", F32, 2.0 ** -7))
    refused("a7-attn-softcap.gguf", "llama.attn_logit_softcapping = 50",
            ("llama.attn_logit_softcapping", F32, 50.0))
    refused("a7-final-softcap.gguf", "llama.final_logit_softcapping = 30",
            ("llama.final_logit_softcapping", F32, 30.0))
    refused("a7-non-causal.gguf", "llama.attention.causal = false", ("llama.attention.causal", BOOL, 0))
    refused("a7-logit-scale.gguf", "llama.logit_scale = 0.5", ("llama.logit_scale", F32, 0.5))
    refused("a7-parallel-residual.gguf", "llama.use_parallel_residual = true",
            ("llama.use_parallel_residual", BOOL, 1))
    refused("a7-rope-linear.gguf", "llama.rope.scaling.type = \"linear\"",
            ("llama.rope.scaling.type", STR, "linear"), ("llama.rope.scaling.factor", F32, 4.0))
    refused("a7-rope-factor.gguf", "llama.rope.scaling.factor = 4", ("llama.rope.scaling.factor", F32, 4.0))
    refused("a7-rope-yarn-multiplier.gguf", "llama.rope.scaling.yarn_log_multiplier = 0.25",
            ("llama.rope.scaling.yarn_log_multiplier", F32, 0.25))
    refused("a7-split-count.gguf", "split.count = 3", ("split.count", U16, 3))
    # two ids for one normal token: "\u0120t" (id 259) also in place of "a" (id 100)
    add("a7-duplicate-token.gguf",
        build(kvs_with("tokenizer.ggml.tokens", ARR, (STR, toks[:100] + ["\u0120t"] + toks[101:])))[0],
        "tokenizer.ggml.tokens[100] = tokenizer.ggml.tokens[259] = \"\u0120t\": llamad does not implement",
        "model")

    # ---- truncations of the valid file
    def cut(name, at, want):
        add(name, good[:at], want)

    cut("trunc-in-magic.gguf", 2, "magic")
    cut("trunc-in-version.gguf", 6, "version")
    cut("trunc-in-n-tensors.gguf", 12, "n_tensors")
    cut("trunc-in-n-kv.gguf", 20, "n_kv")
    cut("trunc-after-header.gguf", 24, "n_kv")
    cut("trunc-in-first-key.gguf", m["kv0"] + 10, "n_kv")
    cut("trunc-in-key-length.gguf", m["kv2"] + 3, "key length: truncated")
    cut("trunc-in-key-bytes.gguf", m["kv2"] + 10, "key bytes: truncated")
    cut("trunc-in-value-type.gguf", m["kv4.type"] + 2, "value type: truncated")
    cut("trunc-in-u32-value.gguf", m["kv4.value"] + 1, "'llama.block_count': value: truncated")
    cut("trunc-in-f32-value.gguf", m["kv10.value"] + 3, "value: truncated")
    cut("trunc-in-string-length.gguf", m["kv13.value"] + 5, "string length: truncated")
    cut("trunc-in-string-bytes.gguf", m["kv13.value"] + 10, "string bytes: truncated")
    cut("trunc-in-array-elem-type.gguf", m["kv15.value"] + 1, "array element type: truncated")
    cut("trunc-in-array-length.gguf", m["kv15.value"] + 7, "array length: truncated")
    cut("trunc-in-string-array.gguf", m["kv15.value"] + 500, "'tokenizer.ggml.tokens': array length 260")
    cut("trunc-in-int-array-data.gguf", m["kv16.value"] + 12 + 400, "array data (260 x INT32): truncated")
    cut("trunc-in-last-kv.gguf", m["kv21.value"], "'tokenizer.ggml.add_bos_token': value: truncated")
    cut("trunc-in-tensor-name-length.gguf", m["t0"] + 4, "name length: truncated")
    cut("trunc-in-tensor-name.gguf", m["t0"] + 12, "name bytes: truncated")
    cut("trunc-in-n-dims.gguf", m["t3.n_dims"] + 1, "n_dims: truncated")
    cut("trunc-in-ne.gguf", m["t3.ne"] + 12, "ne[1]: truncated")
    cut("trunc-in-tensor-type.gguf", m["t3.type"] + 3, "type: truncated")
    cut("trunc-in-tensor-offset.gguf", m["t10.offset"] + 7, "offset: truncated")
    cut("trunc-in-padding.gguf", m["infos_end"] + 1, "past end of data")
    cut("trunc-in-data.gguf", m["data"] + 4000, "past end of data")
    cut("trunc-last-byte.gguf", len(good) - 1, "past end of data")
    return good, c


def neutral_keys_file():
    """The A7 keys with the values that leave plain LLaMA unchanged, and two
    control tokens with one string (a repeat the loader keeps): must load."""
    kvs = [(k, t, v) for k, t, v in base_kvs() if k != "tokenizer.ggml.tokens"]
    toks = base_kvs()[15][2][1]
    kvs.append(("tokenizer.ggml.tokens", ARR, (STR, [toks[0], toks[0]] + toks[2:])))
    kvs += [("llama.attention.sliding_window", U32, 0), ("llama.expert_count", U32, 0),
            ("llama.expert_used_count", U32, 0), ("llama.attention.key_length", U32, HEAD_DIM),
            ("llama.attention.value_length", U32, HEAD_DIM), ("llama.attention.causal", BOOL, 1),
            ("llama.attention.max_alibi_bias", F32, 0.0), ("llama.logit_scale", F32, 1.0),
            ("llama.rope.scaling.type", STR, "none"), ("llama.rope.scaling.factor", F32, 1.0),
            ("llama.rope.scaling.original_context_length", U32, 256), ("split.count", U16, 1)]
    return build(kvs)[0]


def write_reference_file(path):
    """A small valid file written by the gguf package's own writer: every
    scalar type, three arrays and F32, F16 and Q4_0 tensors.
    tests/unit/test_gguf_corpus.c reads these values back."""
    import gguf
    w = gguf.GGUFWriter(path, "llama")
    w.add_uint8("t.u8", 200)
    w.add_int8("t.i8", -7)
    w.add_uint16("t.u16", 60000)
    w.add_int16("t.i16", -30000)
    w.add_uint32("t.u32", 4000000000)
    w.add_int32("t.i32", -2000000000)
    w.add_float32("t.f32", 0.5)
    w.add_bool("t.bool", True)
    w.add_string("t.str", "hi")
    w.add_uint64("t.u64", 2**63 + 5)
    w.add_int64("t.i64", -7)
    w.add_float64("t.f64", 0.25)
    w.add_array("t.astr", ["a", "bc", ""])
    w.add_array("t.aint", [1, 2, 3])
    w.add_array("t.af32", [0.5, 1.5])
    w.add_tensor("a", np.arange(64, dtype=np.float32).reshape(2, 32))
    w.add_tensor("b", np.full(32, -2.0, dtype=np.float16))
    q = gguf.quants.quantize(np.linspace(-1, 1, 64, dtype=np.float32).reshape(1, 64),
                             gguf.GGMLQuantizationType.Q4_0)
    w.add_tensor("c", q, raw_shape=q.shape, raw_dtype=gguf.GGMLQuantizationType.Q4_0)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: make-bad-ggufs.py OUTDIR")
    outdir = sys.argv[1]
    os.makedirs(outdir, exist_ok=True)
    good, all_cases = cases()
    names = [n for n, _, _, _ in all_cases]
    assert len(names) == len(set(names)), "duplicate case names"
    ok = os.path.join(outdir, "ok-tiny-llama.gguf")
    with open(ok, "wb") as f:
        f.write(good)
    try:  # the valid file must read back with the reference reader
        from gguf import GGUFReader
        r = GGUFReader(ok)
        assert len(r.tensors) == len(base_tensors()), "reference reader disagrees"
        assert len(r.fields["tokenizer.ggml.tokens"].data) == N_VOCAB, "reference reader disagrees"
        write_reference_file(os.path.join(outdir, "ok-writer-mini.gguf"))
    except ImportError:
        print("note: gguf package not installed; ok-tiny-llama.gguf not cross-checked and "
              "ok-writer-mini.gguf not written", file=sys.stderr)
    with open(os.path.join(outdir, "ok-neutral-keys.gguf"), "wb") as f:
        f.write(neutral_keys_file())
    with open(os.path.join(outdir, "manifest.tsv"), "w") as mf:
        for name, data, want, who in all_cases:
            assert "\t" not in want and "\n" not in want
            with open(os.path.join(outdir, name), "wb") as f:
                f.write(data)
            mf.write(f"{name}\t{want}\t{who}\n")
    print(f"{len(all_cases)} bad files (+ ok-tiny-llama.gguf) in {outdir}")


if __name__ == "__main__":
    main()
