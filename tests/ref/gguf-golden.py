#!/usr/bin/env python3
"""Write the facts tests/unit/test_gguf.c checks about a GGUF file, read with the gguf package.

usage: tests/ref/gguf-golden.py MODEL OUT.json

The JSON holds the header (version, counts, alignment, data offset), every
scalar metadata value (strings as hex as well as text), every array's element
type and length with a sample of its elements, and every tensor's name, type
id, ne (innermost first), offset in the data section and byte size.  For the
first, the last and every 25th tensor it also holds the first 16 bytes of the
data (hex) and the first eight dequantised values (gguf.quants.dequantize).

The committed golden for the default model is
tests/ref/goldens/SmolLM2-135M-Instruct.Q4_1.gguf.json.
"""
import json
import os
import sys

import numpy as np
from gguf import GGUFReader, GGUFValueType
from gguf.constants import GGML_QUANT_SIZES
from gguf.quants import dequantize

N_SAMPLES = 12  # sampled elements per array (plus the first two and the last)


def scalar(field, vtype, part):
    v = part[0]
    if vtype in (GGUFValueType.FLOAT32, GGUFValueType.FLOAT64):
        return float(v)           # a float32 widened to double is exact
    if vtype == GGUFValueType.BOOL:
        return bool(v)
    return int(v)


def string_entry(raw):
    b = bytes(raw)
    return {"hex": b.hex(), "text": b.decode("utf-8", errors="replace")}


def array_samples(n, seed):
    if n == 0:
        return []
    rng = np.random.Generator(np.random.PCG64(seed))
    idx = {0, min(1, n - 1), n // 2, n - 1}
    idx.update(int(i) for i in rng.integers(0, n, size=min(N_SAMPLES, n)))
    return sorted(idx)


def field_entry(field, seed):
    vtype = field.types[0]
    e = {"type": vtype.name}
    if vtype == GGUFValueType.STRING:
        e.update(string_entry(field.parts[field.data[0]]))
    elif vtype == GGUFValueType.ARRAY:
        et = field.types[-1]
        if len(field.types) != 2:
            raise SystemExit(f"{field.name}: nested arrays are not expected here")
        n = len(field.data)
        e.update({"elem_type": et.name, "n": n, "samples": []})
        for i in array_samples(n, seed):
            part = field.parts[field.data[i]]
            if et == GGUFValueType.STRING:
                val = string_entry(part)
            else:
                val = scalar(field, et, part)
            e["samples"].append({"i": i, "value": val})
    else:
        e["value"] = scalar(field, vtype, field.parts[field.data[0]])
    return e


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: gguf-golden.py MODEL OUT.json")
    path, out = sys.argv[1], sys.argv[2]
    r = GGUFReader(path)

    version = int(r.fields["GGUF.version"].parts[0][0])
    kvs = {}
    n_kv = 0
    for seed, (name, field) in enumerate(r.fields.items()):
        if name.startswith("GGUF."):
            continue  # the reader's pseudo-fields for the header
        n_kv += 1
        kvs[name] = field_entry(field, seed)

    tensors = []
    for i, t in enumerate(r.tensors):
        ne = [int(x) for x in t.shape]
        e = {
            "name": t.name,
            "type": int(t.tensor_type),
            "type_name": t.tensor_type.name,
            "ne": ne,
            "offset": int(t.data_offset - r.data_offset),
            "nbytes": int(t.n_bytes),
        }
        if i == 0 or i == len(r.tensors) - 1 or i % 25 == 0:
            raw = np.asarray(t.data).reshape(-1).view(np.uint8)
            block_elems, block_bytes = GGML_QUANT_SIZES[t.tensor_type]
            n = max(block_elems, 8)
            first = dequantize(np.ascontiguousarray(raw[:n // block_elems * block_bytes]),
                               t.tensor_type)
            e["head_hex"] = bytes(raw[:16]).hex()
            e["first_values"] = [float(x) for x in np.asarray(first, np.float32).reshape(-1)[:8]]
        tensors.append(e)

    golden = {
        "file": os.path.basename(path),
        "version": version,
        "tensor_count": len(r.tensors),
        "kv_count": n_kv,
        "alignment": int(r.alignment),
        "data_offset": int(r.data_offset),
        "kv": kvs,
        "tensors": tensors,
    }
    with open(out, "w", encoding="utf-8") as f:
        json.dump(golden, f, indent=1, ensure_ascii=True)
        f.write("\n")


if __name__ == "__main__":
    main()
