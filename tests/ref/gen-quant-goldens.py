#!/usr/bin/env python3
"""Write the goldens that tests/unit/test_quant.c checks the dequantisers against.

usage: tests/ref/gen-quant-goldens.py OUTDIR      (the committed set lives in tests/ref/goldens)

For each element type T (f32 f16 bf16 q8_0 q4_0 q4_1 q4_k q5_k q6_k) it writes

    quant-T.in    random blocks of T, laid out as stored in a GGUF file
    quant-T.out   their values as little-endian float32, from gguf.quants.dequantize

and for the float conversions

    f32-to-f16.in / .out    float32 values / numpy's float16 (round to nearest even)
    f32-to-bf16.in / .out   float32 values / gguf.quants.quantize(..., BF16) (ggml's rounding)

The random stream is numpy's PCG64 with a fixed seed, so a rerun writes the
same bytes.  Scales of the quantised blocks are finite half values drawn from
a spread of magnitudes, plus the edges (zero, negative zero, the smallest
subnormal, the largest finite half); their quants are uniformly random bits.
"""
import os
import sys

import numpy as np
from gguf import GGMLQuantizationType as QT
from gguf.constants import GGML_QUANT_SIZES
from gguf.quants import dequantize, quantize

SEED = 20240611
HALF_EDGES = [0x0000, 0x8000, 0x0001, 0x7BFF]  # 0, -0, min subnormal, max finite

# (file name, type, number of blocks)
QUANT_TYPES = [
    ("q8_0", QT.Q8_0, 64),
    ("q4_0", QT.Q4_0, 64),
    ("q4_1", QT.Q4_1, 64),
    ("q4_k", QT.Q4_K, 8),
    ("q5_k", QT.Q5_K, 8),
    ("q6_k", QT.Q6_K, 8),
]

# Byte offsets of the f16 scale fields within each block.
SCALE_FIELDS = {
    QT.Q8_0: [0],
    QT.Q4_0: [0],
    QT.Q4_1: [0, 2],         # d, m
    QT.Q4_K: [0, 2],         # d, dmin
    QT.Q5_K: [0, 2],         # d, dmin
    QT.Q6_K: [208],          # d (the last two bytes)
}


def random_halves(rng, n):
    """Finite half bit patterns: random signs, magnitudes from 2^-20 to 2^4."""
    mag = np.exp2(rng.uniform(-20.0, 4.0, n)).astype(np.float32)
    sign = np.where(rng.random(n) < 0.3, -1.0, 1.0).astype(np.float32)
    h = (mag * sign).astype(np.float16).view(np.uint16)
    return h


def make_blocks(rng, qtype, n_blocks):
    _, type_size = GGML_QUANT_SIZES[qtype]
    blocks = rng.integers(0, 256, size=(n_blocks, type_size), dtype=np.uint8)
    for off in SCALE_FIELDS[qtype]:
        h = random_halves(rng, n_blocks)
        for i, edge in enumerate(HALF_EDGES):
            h[(i + off) % n_blocks] = edge  # each scale field gets every edge, in different blocks
        blocks[:, off:off + 2] = h.view(np.uint8).reshape(n_blocks, 2)
    return blocks.reshape(-1)


def float_bits(rng, n):
    """Random float32 bit patterns, NaNs and infinities included."""
    bits = rng.integers(0, 2**32, size=n, dtype=np.uint64).astype(np.uint32)
    specials = [0x00000000, 0x80000000, 0x00000001, 0x007FFFFF, 0x00800000, 0x7F7FFFFF,
                0x7F800000, 0xFF800000, 0x7FC00000, 0x7F800001, 0xFFFFFFFF, 0x3F800000]
    bits[:len(specials)] = specials
    return bits


def f16_inputs(rng, n):
    """float32 values that exercise float -> half rounding: every exponent a half
    can reach (and some beyond), exact midpoints between neighbouring halves, and
    the subnormal range.  No NaNs (their half payload is implementation-defined)."""
    a = (np.exp2(rng.uniform(-27.0, 17.0, n // 2)) * np.where(rng.random(n // 2) < 0.5, -1, 1))
    a = a.astype(np.float32)
    h = rng.integers(0, 0x7BFF, size=n // 4, dtype=np.uint16)
    lo = h.view(np.float16).astype(np.float64)
    hi = (h + 1).view(np.float16).astype(np.float64)
    mid = ((lo + hi) / 2).astype(np.float32)  # exact: a half has 11 significant bits
    sub = (rng.integers(0, 2048, size=n - n // 2 - n // 4) * 2.0**-25).astype(np.float32)
    out = np.concatenate([a, mid, sub]).astype(np.float32)
    specials = np.array([0.0, -0.0, 65504.0, 65519.99, 65520.0, np.inf, -np.inf,
                         2.0**-24, 2.0**-25, 2.0**-25 * 1.0000001, 2.0**-26, 1e-30],
                        dtype=np.float32)
    out[:len(specials)] = specials
    return out


def write(outdir, name, arr):
    with open(os.path.join(outdir, name), "wb") as f:
        f.write(np.ascontiguousarray(arr).astype(arr.dtype.newbyteorder("<")).tobytes())


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: gen-quant-goldens.py OUTDIR")
    outdir = sys.argv[1]
    os.makedirs(outdir, exist_ok=True)
    rng = np.random.Generator(np.random.PCG64(SEED))

    raw = {
        "f32": (QT.F32, float_bits(rng, 512).view(np.uint8)),
        "f16": (QT.F16, np.concatenate([
            np.array([0x0000, 0x8000, 0x0001, 0x8001, 0x03FF, 0x0400, 0x3C00, 0x7BFF, 0x7C00,
                      0xFC00, 0x7C01, 0x7DFF, 0x7E00, 0xFFFF], dtype=np.uint16),
            rng.integers(0, 65536, size=2048 - 14, dtype=np.uint32).astype(np.uint16),
        ]).view(np.uint8)),
        "bf16": (QT.BF16, rng.integers(0, 65536, size=1024, dtype=np.uint32)
                 .astype(np.uint16).view(np.uint8)),
    }
    for name, qtype, n_blocks in QUANT_TYPES:
        raw[name] = (qtype, make_blocks(rng, qtype, n_blocks))

    for name, (qtype, data) in raw.items():
        data = np.ascontiguousarray(data, dtype=np.uint8)
        out = np.asarray(dequantize(data, qtype), dtype=np.float32).reshape(-1)
        block_elems, type_size = GGML_QUANT_SIZES[qtype]
        assert out.size == data.size // type_size * block_elems, name
        write(outdir, f"quant-{name}.in", data)
        write(outdir, f"quant-{name}.out", out)

    x = f16_inputs(rng, 1024)
    write(outdir, "f32-to-f16.in", x)
    with np.errstate(over="ignore"):
        write(outdir, "f32-to-f16.out", x.astype(np.float16).view(np.uint16))

    y = float_bits(rng, 1024).view(np.float32)
    write(outdir, "f32-to-bf16.in", y)
    write(outdir, "f32-to-bf16.out", quantize(y, QT.BF16).view(np.uint16))


if __name__ == "__main__":
    main()
