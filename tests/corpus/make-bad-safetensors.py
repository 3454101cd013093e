#!/usr/bin/env python3
"""Write malformed safetensors files, sharded model directories and
config.json files for llamad's loader tests (shared/THREATS.md A8, A9).

Usage: make-bad-safetensors.py OUTDIR

Writes into OUTDIR:
  st-*.safetensors      single files, each broken in one way
  st-dir-*/             model directories (sharded index or a single file)
  cfg-*/config.json     Hugging Face configs, each broken in one way
  manifest-st.tsv       NAME<TAB>SUBSTRING for st-*: the reader (st_create
                        on OUTDIR/NAME) must fail with a message holding
                        both NAME and SUBSTRING
  manifest-hf.tsv       the same for cfg-* (hf_config_load on OUTDIR/NAME)

Only the Python standard library is used.
"""
import json
import os
import struct
import sys


def header_bytes(text, pad=True):
    raw = text.encode("utf-8") if isinstance(text, str) else text
    if pad:
        raw += b" " * (-len(raw) % 8)
    return raw


def st_blob(header, data=b"", length=None, pad=True):
    """A safetensors image: u64 LE length, header, data. `header` is a dict
    (serialised), a str or raw bytes (written as given)."""
    if isinstance(header, dict):
        header = json.dumps(header, separators=(",", ":"))
    raw = header_bytes(header, pad)
    n = len(raw) if length is None else length
    return struct.pack("<Q", n) + raw + data


def f32(n, start=0.0):
    return b"".join(struct.pack("<f", start + i) for i in range(n))


def entry(dtype, shape, begin, end):
    return {"dtype": dtype, "shape": shape, "data_offsets": [begin, end]}


def good_file(names):
    """A valid file holding one F32 [2] tensor per name."""
    hdr, data = {}, b""
    for i, name in enumerate(names):
        hdr[name] = entry("F32", [2], 8 * i, 8 * i + 8)
        data += f32(2, 10.0 * i)
    return st_blob(hdr, data)


def write(path, blob):
    with open(path, "wb") as f:
        f.write(blob)


def single_cases():
    """(name, bytes, expected substring) for single files."""
    one = {"a": entry("F32", [2], 0, 8)}
    c = []
    c.append(("st-hdrlen-zero", struct.pack("<Q", 0) + b"{}", "header length 0"))
    c.append(("st-short-7-bytes", b"\x10\x00\x00\x00\x00\x00\x00",
              "shorter than the 8-byte header length"))
    c.append(("st-hdrlen-max", st_blob(one, f32(2), length=2**64 - 1), "exceeds the cap"))
    c.append(("st-hdrlen-past-eof", st_blob(one, f32(2), length=4096),
              "runs past the end of the file"))
    c.append(("st-hdrlen-over-100mb", st_blob(one, f32(2), length=100_000_001),
              "exceeds the cap"))
    c.append(("st-not-utf8", st_blob(b'{"a\xff\xfe":{"dtype":"F32","shape":[2],'
                                     b'"data_offsets":[0,8]}}', f32(2)),
              "not valid UTF-8"))
    c.append(("st-overlong-utf8", st_blob(b'{"a\xc0\xaf":{"dtype":"F32","shape":[2],'
                                          b'"data_offsets":[0,8]}}', f32(2)),
              "not valid UTF-8"))
    c.append(("st-no-brace", st_blob('[{"a":1}]'), "does not start with '{'"))
    c.append(("st-leading-space", st_blob(' {"a":{"dtype":"F32","shape":[2],'
                                          '"data_offsets":[0,8]}}', f32(2)),
              "does not start with '{'"))
    c.append(("st-control-byte", st_blob('{"a\x01":{"dtype":"F32","shape":[2],'
                                         '"data_offsets":[0,8]}}', f32(2)),
              "control byte 0x01"))
    c.append(("st-bad-json", st_blob('{"a":{"dtype":"F32",'), "not valid JSON"))
    c.append(("st-trailing-json", st_blob('{} {}'), "trailing characters"))
    c.append(("st-duplicate-key", st_blob(
        '{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},'
        '"a":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}}', f32(4)),
        "duplicate key 'a'"))
    c.append(("st-duplicate-field", st_blob(
        '{"a":{"dtype":"F32","dtype":"F16","shape":[2],"data_offsets":[0,8]}}', f32(2)),
        "duplicate key 'dtype'"))
    c.append(("st-duplicate-metadata", st_blob(
        '{"__metadata__":{"format":"pt"},"__metadata__":{"format":"np"}}'),
        "duplicate key '__metadata__'"))
    c.append(("st-metadata-not-string", st_blob({"__metadata__": {"n": 1}}),
              "__metadata__ value of 'n' is not a string"))
    c.append(("st-begin-gt-end", st_blob({"a": entry("F32", [2], 8, 0)}, f32(2)),
              "begin 8 > end 0"))
    c.append(("st-end-past-data", st_blob({"a": entry("F32", [2], 0, 8)}, f32(1)),
              "past the data section"))
    c.append(("st-huge-offset", st_blob({"a": entry("F32", [2], 2**60, 2**60 + 8)}, f32(2)),
              "data_offsets is not [begin, end]"))
    c.append(("st-negative-offset", st_blob({"a": entry("F32", [2], -8, 0)}, f32(2)),
              "data_offsets is not [begin, end]"))
    c.append(("st-overlap", st_blob({"a": entry("F32", [2], 0, 8),
                                     "b": entry("F32", [2], 4, 12)}, f32(3)),
              "overlap at data offset 4"))
    c.append(("st-hole", st_blob({"a": entry("F32", [2], 0, 8),
                                  "b": entry("F32", [2], 12, 20)}, f32(5)),
              "hole of 4 bytes"))
    c.append(("st-trailing-bytes", st_blob(one, f32(3)), "4 trailing bytes"))
    c.append(("st-data-without-tensors", st_blob({}, f32(1)), "4 trailing bytes"))
    c.append(("st-shape-dtype-mismatch", st_blob({"a": entry("F32", [3], 0, 8)}, f32(2)),
              "shape x dtype is 12 bytes"))
    c.append(("st-shape-overflow", st_blob({"a": entry("F32", [2**32, 2**32], 0, 8)}, f32(2)),
              "element count overflows"))
    c.append(("st-bytes-overflow", st_blob({"a": entry("F32", [2**40, 2**23], 0, 8)}, f32(2)),
              "byte size overflows"))
    c.append(("st-unknown-dtype", st_blob({"a": entry("Q4", [2], 0, 8)}, f32(2)),
              "unknown dtype 'Q4'"))
    c.append(("st-unsupported-dtype", st_blob({"a": entry("I8", [8], 0, 8)}, f32(2)),
              "dtype I8 not supported"))
    c.append(("st-negative-shape", st_blob({"a": entry("F32", [-1], 0, 8)}, f32(2)),
              "shape[0] is not a non-negative integer"))
    c.append(("st-fraction-shape", st_blob({"a": entry("F32", [2.5], 0, 10)}, f32(2)),
              "shape[0] is not a non-negative integer"))
    c.append(("st-five-dims", st_blob({"a": entry("F32", [1, 1, 1, 1, 2], 0, 8)}, f32(2)),
              "5 dims"))
    c.append(("st-missing-offsets", st_blob({"a": {"dtype": "F32", "shape": [2]}}, f32(2)),
              "missing 'data_offsets'"))
    c.append(("st-unknown-field", st_blob({"a": dict(entry("F32", [2], 0, 8), extra=1)},
                                          f32(2)),
              "unknown key 'extra'"))
    c.append(("st-entry-not-object", st_blob({"a": [1, 2]}), "entry is not an object"))
    c.append(("st-deep-nesting", st_blob('{"__metadata__":' + "[" * 10000 + "]" * 10000 + "}"),
              "nests deeper than 64 levels"))
    return c


def dir_cases(out):
    """Model directories; returns (name, expected substring)."""
    cases = []

    def mkdir(name):
        d = os.path.join(out, name)
        os.makedirs(d, exist_ok=True)
        for f in os.listdir(d):
            os.unlink(os.path.join(d, f))
        return d

    def index(d, weight_map, raw=None):
        text = raw if raw is not None else json.dumps(
            {"metadata": {"total_size": 0}, "weight_map": weight_map})
        with open(os.path.join(d, "model.safetensors.index.json"), "w") as f:
            f.write(text)

    shard1, shard2 = "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"

    d = mkdir("st-dir-index-dotdot")
    write(os.path.join(d, shard1), good_file(["a"]))
    index(d, {"a": shard1, "b": "../x.safetensors"})
    cases.append(("st-dir-index-dotdot", "shard '../x.safetensors' is not a plain file name"))

    d = mkdir("st-dir-index-absolute")
    write(os.path.join(d, shard1), good_file(["a"]))
    index(d, {"a": shard1, "b": "/etc/passwd"})
    cases.append(("st-dir-index-absolute", "shard '/etc/passwd' is not a plain file name"))

    d = mkdir("st-dir-index-dot")
    index(d, {"a": "."})
    cases.append(("st-dir-index-dot", "shard '.' is not a plain file name"))

    d = mkdir("st-dir-index-not-string")
    index(d, {"a": 1})
    cases.append(("st-dir-index-not-string", "is not a plain file name"))

    d = mkdir("st-dir-index-symlink")
    write(os.path.join(d, "real.safetensors"), good_file(["a"]))
    os.symlink("real.safetensors", os.path.join(d, shard1))
    index(d, {"a": shard1})
    cases.append(("st-dir-index-symlink", "is a symlink"))

    d = mkdir("st-dir-index-missing-tensor")
    write(os.path.join(d, shard1), good_file(["a"]))
    write(os.path.join(d, shard2), good_file(["b"]))
    index(d, {"a": shard1, "b": shard2, "c": shard2})
    cases.append(("st-dir-index-missing-tensor", "tensor 'c' is missing from shard"))

    d = mkdir("st-dir-index-extra-tensor")
    write(os.path.join(d, shard1), good_file(["a"]))
    write(os.path.join(d, shard2), good_file(["b", "c"]))
    index(d, {"a": shard1, "b": shard2})
    cases.append(("st-dir-index-extra-tensor", "tensor 'c' of shard"))

    d = mkdir("st-dir-index-wrong-shard")
    write(os.path.join(d, shard1), good_file(["a", "b"]))
    write(os.path.join(d, shard2), good_file(["b2"]))
    index(d, {"a": shard1, "b": shard1, "b2": shard1})
    cases.append(("st-dir-index-wrong-shard", "tensor 'b2' is missing from shard"))

    d = mkdir("st-dir-index-duplicate")
    write(os.path.join(d, shard1), good_file(["a"]))
    index(d, None, raw='{"weight_map":{"a":"%s","a":"%s"}}' % (shard1, shard1))
    cases.append(("st-dir-index-duplicate", "weight_map has duplicate key 'a'"))

    d = mkdir("st-dir-index-missing-shard")
    write(os.path.join(d, shard1), good_file(["a"]))
    index(d, {"a": shard1, "b": shard2})
    cases.append(("st-dir-index-missing-shard", "No such file"))

    d = mkdir("st-dir-index-no-weight-map")
    index(d, None, raw='{"metadata":{}}')
    cases.append(("st-dir-index-no-weight-map", "'weight_map' missing"))

    d = mkdir("st-dir-index-deep")
    index(d, None, raw='{"weight_map":' + "[" * 10000 + "]" * 10000 + "}")
    cases.append(("st-dir-index-deep", "nests deeper than 64 levels"))

    d = mkdir("st-dir-bad-shard")
    write(os.path.join(d, shard1), good_file(["a"]))
    write(os.path.join(d, shard2), st_blob({"b": entry("F32", [2], 0, 8)}, f32(3)))
    index(d, {"a": shard1, "b": shard2})
    cases.append(("st-dir-bad-shard", "trailing bytes"))

    d = mkdir("st-dir-single-bad")
    write(os.path.join(d, "model.safetensors"), struct.pack("<Q", 0) + b"{}")
    cases.append(("st-dir-single-bad", "header length 0"))

    mkdir("st-dir-empty")
    cases.append(("st-dir-empty", "no model.safetensors or model.safetensors.index.json"))
    return cases


GOOD_CONFIG = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "vocab_size": 49152,
    "hidden_size": 576,
    "intermediate_size": 1536,
    "num_hidden_layers": 30,
    "num_attention_heads": 9,
    "num_key_value_heads": 3,
    "max_position_embeddings": 8192,
    "rms_norm_eps": 1e-5,
    "rope_theta": 100000,
    "hidden_act": "silu",
    "tie_word_embeddings": True,
    "bos_token_id": 1,
    "eos_token_id": 2,
}


def config_cases(out):
    def cfg(name, change=None, drop=(), raw=None):
        d = os.path.join(out, name)
        os.makedirs(d, exist_ok=True)
        c = dict(GOOD_CONFIG)
        c.update(change or {})
        for k in drop:
            del c[k]
        with open(os.path.join(d, "config.json"), "w") as f:
            f.write(raw if raw is not None else json.dumps(c, indent=2))
        return name

    return [
        (cfg("cfg-missing-hidden-size", drop=["hidden_size"]), "key 'hidden_size' missing"),
        (cfg("cfg-heads-not-dividing", {"num_key_value_heads": 4}),
         "'num_attention_heads' = 9 is not a multiple of 'num_key_value_heads' = 4"),
        (cfg("cfg-hidden-not-dividing", {"hidden_size": 577}),
         "'hidden_size' = 577 is not a multiple of 'num_attention_heads' = 9"),
        (cfg("cfg-negative-layers", {"num_hidden_layers": -2}),
         "key 'num_hidden_layers' = -2 out of range"),
        (cfg("cfg-wrong-type", {"hidden_size": "576"}),
         "key 'hidden_size' must be an integer, not a string"),
        (cfg("cfg-fraction", {"intermediate_size": 1536.5}),
         "key 'intermediate_size' = 1536.5 is not an integer"),
        (cfg("cfg-rope-yarn", {"rope_scaling": {"rope_type": "yarn", "factor": 4.0}}),
         "key 'rope_scaling.rope_type' = 'yarn' not supported"),
        (cfg("cfg-rope-llama3-missing", {"rope_scaling": {"rope_type": "llama3", "factor": 8.0}}),
         "key 'rope_scaling.low_freq_factor' missing"),
        (cfg("cfg-rope-llama3-freqs", {"rope_scaling": {
            "rope_type": "llama3", "factor": 8.0, "low_freq_factor": 4.0,
            "high_freq_factor": 1.0, "original_max_position_embeddings": 8192}}),
         "must exceed low_freq_factor"),
        (cfg("cfg-odd-head-dim", {"head_dim": 63}), "key 'head_dim' = 63 must be even"),
        (cfg("cfg-model-type", {"model_type": "gpt2"}), "key 'model_type' = 'gpt2' not supported"),
        (cfg("cfg-eos-out-of-range", {"eos_token_id": [2, 49152]}),
         "key 'eos_token_id[]' = 49152 out of range"),
        (cfg("cfg-tie-not-bool", {"tie_word_embeddings": 1}),
         "key 'tie_word_embeddings' must be a boolean"),
        (cfg("cfg-duplicate-key", raw='{"model_type":"llama","hidden_size":576,"hidden_size":64}'),
         "duplicate key 'hidden_size'"),
        (cfg("cfg-deep", raw='{"model_type":"llama","x":' + "[" * 10000 + "]" * 10000 + "}"),
         "nests deeper than 64 levels"),
        (cfg("cfg-not-json", raw='{"model_type": "llama",'), "not a valid JSON object"),
        (cfg("cfg-sliding-window", {"sliding_window": 4096}),
         "key 'sliding_window' = 4096: llamad does not implement sliding-window attention"),
        (cfg("cfg-local-experts", {"num_local_experts": 8, "num_experts_per_tok": 2}),
         "key 'num_local_experts' = 8: llamad does not implement mixture-of-experts layers"),
        (cfg("cfg-final-softcap", {"final_logit_softcapping": 30.0}),
         "key 'final_logit_softcapping' = 30: llamad does not implement"),
        (cfg("cfg-partial-rotary", {"partial_rotary_factor": 0.5}),
         "key 'partial_rotary_factor' = 0.5: llamad does not implement"),
    ]


def main():
    if len(sys.argv) != 2:
        sys.stderr.write(__doc__)
        return 2
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    st_lines = []
    for name, blob, expect in single_cases():
        fname = name + ".safetensors"
        write(os.path.join(out, fname), blob)
        st_lines.append((fname, expect))
    st_lines += dir_cases(out)
    hf_lines = config_cases(out)
    for manifest, lines in (("manifest-st.tsv", st_lines), ("manifest-hf.tsv", hf_lines)):
        with open(os.path.join(out, manifest), "w") as f:
            for name, expect in lines:
                assert "\t" not in expect and "\n" not in expect
                f.write("%s\t%s\n" % (name, expect))
    print("%s: %d safetensors cases, %d config cases" % (out, len(st_lines), len(hf_lines)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
