#!/usr/bin/env python3
"""Rewrite a LLaMA GGUF with its matrices in K-quant types, for tests that
run a K-quant model end to end (the engine against ref_forward.py).

    requant-gguf.py IN.gguf OUT.gguf --type Q4_K_M|Q5_K_M|Q4_K|Q5_K|Q6_K

Every key is copied (general.file_type, where the source has it, set to
the new type; general.alignment kept as the writer's alignment). A matrix
whose rows are a multiple of 256 values is dequantized (gguf.quants) and
quantized again with kquants.py; other tensors (norms, and matrices of
rows that K-quants cannot hold, such as the default model's 576-wide
ones) keep their bytes and type. Q4_K, Q5_K and Q6_K put every eligible
matrix in that type. Q4_K_M and Q5_K_M follow the mixture llama.cpp
publishes under those names: Q6_K for the output matrix (the embedding
when it is tied) and for attn_v and ffn_down in the first and last
eighth of the layers and every third layer between, Q4_K (Q5_K) for the
rest.
"""
import argparse
import os
import re
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import kquants  # noqa: E402

try:
    import gguf
    from gguf.quants import dequantize
except ImportError:
    sys.exit("requant-gguf.py: the gguf package is missing (pip install gguf)")

FILE_TYPE = {"Q4_K": 14, "Q5_K": 16, "Q6_K": 18, "Q4_K_M": 15, "Q5_K_M": 17}  # llama_ftype


def more_bits(layer, n_layers):
    """The layers whose attn_v / ffn_down the _M mixtures keep in Q6_K."""
    e = n_layers // 8
    return layer < e or layer >= 7 * n_layers // 8 or (layer - e) % 3 == 2


def target_type(name, mix, n_layers, tied):
    if mix in ("Q4_K", "Q5_K", "Q6_K"):
        return mix
    base = mix[:4]
    if name == "output.weight" or (tied and name == "token_embd.weight"):
        return "Q6_K"
    m = re.match(r"blk\.(\d+)\.(attn_v|ffn_down)\.weight$", name)
    if m and more_bits(int(m.group(1)), n_layers):
        return "Q6_K"
    return base


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("src")
    ap.add_argument("dst")
    ap.add_argument("--type", required=True, choices=sorted(FILE_TYPE))
    a = ap.parse_args()

    r = gguf.GGUFReader(a.src)
    arch = r.fields["general.architecture"].contents()
    n_layers = int(r.fields[arch + ".block_count"].contents())
    names = {t.name for t in r.tensors}
    tied = "output.weight" not in names
    tmp = a.dst + ".tmp"
    try:
        write(r, a, arch, n_layers, tied, tmp)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    os.replace(tmp, a.dst)


def write(r, a, arch, n_layers, tied, tmp):
    w = gguf.GGUFWriter(tmp, arch)
    for name, f in r.fields.items():
        if name.startswith("GGUF.") or name == "general.architecture":
            continue
        if name == "general.file_type":
            w.add_file_type(FILE_TYPE[a.type])
            continue
        if name == "general.alignment":
            w.add_custom_alignment(int(f.contents()))
            continue
        main_t = f.types[0]
        sub = f.types[-1] if main_t == gguf.GGUFValueType.ARRAY else None
        w.add_key_value(name, f.contents(), main_t, sub)
    counts = {}
    for t in r.tensors:
        shape = [int(x) for x in t.shape]          # GGUF order: row length first
        qt = None
        if len(shape) == 2 and shape[0] % kquants.QK == 0 and t.name.endswith(".weight"):
            qt = target_type(t.name, a.type, n_layers, tied)
        if qt is None:
            w.add_tensor(t.name, t.data, raw_dtype=t.tensor_type)
            counts[t.tensor_type.name] = counts.get(t.tensor_type.name, 0) + 1
            continue
        x = dequantize(t.data, t.tensor_type).reshape(shape[1], shape[0])
        w.add_tensor(t.name, kquants.quantize(x, qt), raw_dtype=getattr(gguf.GGMLQuantizationType, qt))
        counts[qt] = counts.get(qt, 0) + 1
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    print(a.dst + ": " + ", ".join(f"{n} {k}" for k, n in sorted(counts.items())))


if __name__ == "__main__":
    main()
