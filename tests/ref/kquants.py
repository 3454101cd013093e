"""Quantize float matrices to the GGUF K-quant block types Q4_K, Q5_K and
Q6_K with numpy, for test models (the gguf package dequantizes these types
but does not quantize them).

The block layouts are those of the GGUF format (256 values a super-block):

  Q4_K (144 bytes): d, dmin (f16), 12 bytes of eight 6-bit scales and
        mins, 128 bytes of 4-bit values; x = d * sc[j] * q - dmin * m[j]
        for sub-block j of 32 values.
  Q5_K (176 bytes): as Q4_K with 32 bytes of fifth bits before the 128
        nibble bytes (q in 0..31).
  Q6_K (210 bytes): 128 bytes of low nibbles, 64 of high bit pairs,
        sixteen int8 scales, d (f16); x = d * sc[j] * (q - 32) for
        sub-block j of 16 values.

The rounding here is plain (per sub-block range, then the scales rounded
to 6 or 8 bits); it aims at a valid file of reasonable fidelity, not at
the least error.  What matters to the tests is that the engine and the
reference (ref_forward.py, which dequantizes with gguf.quants) read the
same bytes; check() proves the layout by dequantizing with gguf.quants.

    quantize(x, "Q4_K") -> uint8 [rows, row_bytes]   (x: [rows, n], n % 256 == 0)
"""
import numpy as np

QK = 256
ROW_BYTES = {"Q4_K": 144, "Q5_K": 176, "Q6_K": 210}


def _f16(x):
    return x.astype(np.float16)


def _pack_scales_mins(sc, mn):
    """Eight 6-bit scales and mins per block ([nb, 8] each, 0..63) into
    the 12-byte form: bytes 0..3 scales 0..3, 4..7 mins 0..3 (their top
    two bits the high bits of scales / mins 4..7), 8..11 the low nibbles
    of scales 4..7 (low) and mins 4..7 (high)."""
    sc = sc.astype(np.uint8)
    mn = mn.astype(np.uint8)
    out = np.empty((sc.shape[0], 12), np.uint8)
    out[:, 0:4] = sc[:, 0:4] | ((sc[:, 4:8] >> 4) << 6)
    out[:, 4:8] = mn[:, 0:4] | ((mn[:, 4:8] >> 4) << 6)
    out[:, 8:12] = (sc[:, 4:8] & 0xF) | ((mn[:, 4:8] & 0xF) << 4)
    return out


def _asym(x, nmax):
    """Q4_K / Q5_K: x [nb, 256] -> d, dmin (f16 [nb]), sc, mn ([nb, 8],
    0..63), q ([nb, 256], 0..nmax)."""
    nb = x.shape[0]
    xs = x.reshape(nb, 8, 32)
    lo = np.minimum(xs.min(axis=2), 0.0)
    hi = xs.max(axis=2)
    scale = (hi - lo) / nmax
    mins = -lo
    d = _f16(scale.max(axis=1) / 63.0)
    dmin = _f16(mins.max(axis=1) / 63.0)
    df = d.astype(np.float64)[:, None]
    mf = dmin.astype(np.float64)[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        sc = np.where(df > 0, np.clip(np.ceil(scale / df), 0, 63), 0)
        mn = np.where(mf > 0, np.clip(np.rint(mins / mf), 0, 63), 0)
    s_eff = (df * sc)[:, :, None]
    m_eff = (mf * mn)[:, :, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        q = np.where(s_eff > 0, np.rint((xs + m_eff) / s_eff), 0)
    q = np.clip(q, 0, nmax).astype(np.uint8).reshape(nb, QK)
    return d, dmin, sc, mn, q


def _q4_k(x):
    d, dmin, sc, mn, q = _asym(x, 15)
    nb = x.shape[0]
    q = q.reshape(nb, 4, 2, 32)
    qs = (q[:, :, 0, :] | (q[:, :, 1, :] << 4)).reshape(nb, 128)
    return np.concatenate([d.view(np.uint8).reshape(nb, 2), dmin.view(np.uint8).reshape(nb, 2),
                           _pack_scales_mins(sc, mn), qs], axis=1)


def _q5_k(x):
    d, dmin, sc, mn, q = _asym(x, 31)
    nb = x.shape[0]
    q = q.reshape(nb, 4, 2, 32)
    lo = q & 0xF
    qs = (lo[:, :, 0, :] | (lo[:, :, 1, :] << 4)).reshape(nb, 128)
    hb = (q >> 4).astype(np.uint8)                  # [nb, 4 chunks, 2 halves, 32]
    qh = np.zeros((nb, 32), np.uint8)
    for c in range(4):
        qh |= hb[:, c, 0, :] << (2 * c)
        qh |= hb[:, c, 1, :] << (2 * c + 1)
    return np.concatenate([d.view(np.uint8).reshape(nb, 2), dmin.view(np.uint8).reshape(nb, 2),
                           _pack_scales_mins(sc, mn), qh, qs], axis=1)


def _q6_k(x):
    nb = x.shape[0]
    xs = x.reshape(nb, 16, 16)
    scale = np.abs(xs).max(axis=2) / 31.0
    d = _f16(scale.max(axis=1) / 127.0)
    df = d.astype(np.float64)[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        sc = np.where(df > 0, np.clip(np.rint(scale / df), -128, 127), 0)
    s_eff = (df * sc)[:, :, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        q = np.where(s_eff != 0, np.rint(xs / s_eff), 0)
    q = (np.clip(q, -32, 31) + 32).astype(np.uint8).reshape(nb, 2, 4, 32)
    # per half of 128: q[.., 0..3, l] are values l, l+32, l+64, l+96
    lo = q & 0xF
    ql = np.concatenate([lo[:, :, 0, :] | (lo[:, :, 2, :] << 4),
                         lo[:, :, 1, :] | (lo[:, :, 3, :] << 4)], axis=2).reshape(nb, 128)
    hb = q >> 4
    qh = (hb[:, :, 0, :] | (hb[:, :, 1, :] << 2) | (hb[:, :, 2, :] << 4)
          | (hb[:, :, 3, :] << 6)).reshape(nb, 64)
    return np.concatenate([ql, qh, sc.astype(np.int8).view(np.uint8),
                           d.view(np.uint8).reshape(nb, 2)], axis=1)


_QUANT = {"Q4_K": _q4_k, "Q5_K": _q5_k, "Q6_K": _q6_k}


def quantize(x, qtype):
    """x: float [rows, n] with n a multiple of 256 -> uint8 [rows, n / 256 * ROW_BYTES[qtype]]."""
    x = np.asarray(x, dtype=np.float64)
    rows, n = x.shape
    if n % QK:
        raise ValueError(f"{qtype} needs rows of a multiple of {QK} values, not {n}")
    blocks = _QUANT[qtype](x.reshape(-1, QK))
    return np.ascontiguousarray(blocks.reshape(rows, n // QK * ROW_BYTES[qtype]))


def check(qtype, rows=64, n=512, seed=7):
    """Quantize random data and dequantize it with gguf.quants (which
    knows the layout independently): returns the relative L2 error of the
    round trip, which is small only when every field lands in its place."""
    from gguf import GGMLQuantizationType
    from gguf.quants import dequantize
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((rows, n)) * rng.uniform(0.01, 2.0, (rows, 1))
    x[0] = np.abs(x[0])                   # one row with no negative values
    x[1, :32] = 0.0                       # a zero sub-block
    raw = quantize(x, qtype)
    y = dequantize(raw, getattr(GGMLQuantizationType, qtype)).reshape(rows, n)
    return float(np.linalg.norm(y - x) / np.linalg.norm(x))
