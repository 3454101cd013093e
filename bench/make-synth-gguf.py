#!/usr/bin/env python3
"""make-synth-gguf.py - a LLaMA-shaped GGUF of about 1B parameters with
random weights, for speed measurements where a step is no longer dominated
by per-layer overheads (the default 135M model is).  Its outputs are
meaningless; its shapes and storage types are those of a real model.

    make-synth-gguf.py --type Q4_0|Q8_0|Q4_K|Q6_K|Q4_K_M|Q5_K_M [--out DIR]
                       [--tokenizer GGUF] [--quantize PATH/llama-quantize]
                       [--seed N]

Shape (TinyLlama-like): dim 2048, 16 layers, 32 query heads, 8 KV heads
(head_dim 64), feed-forward 5632, untied output matrix.  The tokenizer
(and so the vocabulary, 49152 entries) is copied from --tokenizer
(default: the default model), so that both llamad and llama.cpp load the
file as an ordinary model.  Weights are N(0, 0.02), norms near 1.

Q4_0 and Q8_0 are quantized here with the gguf package (gguf.quants).
The gguf package cannot quantize the K-quants, so for those an F16 file
is written first and llama.cpp's llama-quantize (built by
bench_llamacpp.py) turns it into Q4_K or Q6_K with --pure (every matrix
that type), or into Q4_K_M or Q5_K_M without it (llama.cpp's mixtures,
the forms most K-quant files are published in: Q4_K or Q5_K, with Q6_K
for the output and about half of ffn_down and attn_v); the F16 file is
removed afterwards.
Output: DIR/synth-1b.TYPE.gguf (DIR defaults to bench/.cache/synth, which
is gitignored); an existing file is kept.
"""

import argparse
import os
import subprocess
import sys
import time

import numpy as np

try:
    import gguf
except ImportError:
    sys.exit("make-synth-gguf.py: the gguf package is missing (pip install gguf)")

HERE = os.path.dirname(os.path.abspath(__file__))
SRCDIR = os.path.dirname(HERE)

DIM, LAYERS, HEADS, KV_HEADS, FFN = 2048, 16, 32, 8, 5632
HEAD_DIM = DIM // HEADS


def copy_tokenizer(w, path):
    """Copy every tokenizer.* key of the GGUF at path into writer w; return
    the vocabulary size."""
    r = gguf.GGUFReader(path)
    n_vocab = None
    for name, f in r.fields.items():
        if not name.startswith("tokenizer."):
            continue
        main = f.types[0]
        sub = f.types[-1] if main == gguf.GGUFValueType.ARRAY else None
        w.add_key_value(name, f.contents(), main, sub)
        if name == "tokenizer.ggml.tokens":
            n_vocab = len(f.data)
    if n_vocab is None:
        sys.exit("make-synth-gguf.py: %s has no tokenizer.ggml.tokens" % path)
    return n_vocab


def tensor_data(rng, n_out, n_in, qtype):
    """A random [n_out, n_in] matrix stored as qtype (F16 when the file is
    to be quantized to Q4_K afterwards)."""
    x = rng.standard_normal((n_out, n_in), dtype=np.float32) * np.float32(0.02)
    if qtype == gguf.GGMLQuantizationType.F16:
        return x.astype(np.float16), None
    return gguf.quants.quantize(x, qtype), qtype


def write_model(path, qtype, tokenizer, seed):
    rng = np.random.default_rng(seed)
    w = gguf.GGUFWriter(path, "llama")
    w.add_name("synth-1b")
    n_vocab = copy_tokenizer(w, tokenizer)
    w.add_vocab_size(n_vocab)
    w.add_context_length(4096)
    w.add_embedding_length(DIM)
    w.add_block_count(LAYERS)
    w.add_feed_forward_length(FFN)
    w.add_head_count(HEADS)
    w.add_head_count_kv(KV_HEADS)
    w.add_rope_dimension_count(HEAD_DIM)
    w.add_rope_freq_base(10000.0)
    w.add_layer_norm_rms_eps(1e-5)
    ftype = {gguf.GGMLQuantizationType.Q4_0: gguf.LlamaFileType.MOSTLY_Q4_0,
             gguf.GGMLQuantizationType.Q8_0: gguf.LlamaFileType.MOSTLY_Q8_0,
             gguf.GGMLQuantizationType.F16: gguf.LlamaFileType.MOSTLY_F16}[qtype]
    w.add_file_type(ftype)

    def mat(name, n_out, n_in):
        data, raw = tensor_data(rng, n_out, n_in, qtype)
        w.add_tensor(name, data, raw_dtype=raw)

    def norm(name):
        w.add_tensor(name, (1.0 + 0.1 * rng.standard_normal(DIM)).astype(np.float32))

    mat("token_embd.weight", n_vocab, DIM)
    for l in range(LAYERS):
        p = "blk.%d." % l
        norm(p + "attn_norm.weight")
        mat(p + "attn_q.weight", DIM, DIM)
        mat(p + "attn_k.weight", KV_HEADS * HEAD_DIM, DIM)
        mat(p + "attn_v.weight", KV_HEADS * HEAD_DIM, DIM)
        mat(p + "attn_output.weight", DIM, DIM)
        norm(p + "ffn_norm.weight")
        mat(p + "ffn_gate.weight", FFN, DIM)
        mat(p + "ffn_up.weight", FFN, DIM)
        mat(p + "ffn_down.weight", DIM, FFN)
    norm("output_norm.weight")
    mat("output.weight", n_vocab, DIM)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--type", required=True, choices=["Q4_0", "Q8_0", "Q4_K", "Q6_K", "Q4_K_M", "Q5_K_M"])
    ap.add_argument("--out", default=os.path.join(HERE, ".cache", "synth"))
    ap.add_argument("--tokenizer",
                    default=os.path.join(SRCDIR, "models", "SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--quantize", default=None,
                    help="llama-quantize binary (K-quants only; default: the one bench_llamacpp.py builds)")
    ap.add_argument("--seed", type=int, default=19)
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    out = os.path.join(a.out, "synth-1b.%s.gguf" % a.type)
    if os.path.exists(out):
        print(out)
        return
    t0 = time.monotonic()
    if a.type in ("Q4_K", "Q6_K", "Q4_K_M", "Q5_K_M"):
        q = a.quantize
        if q is None:
            import glob
            found = sorted(glob.glob(os.path.join(HERE, ".cache", "build-*", "bin", "llama-quantize")))
            q = found[-1] if found else None
        if q is None or not os.access(q, os.X_OK):
            sys.exit("make-synth-gguf.py: %s needs llama-quantize (run bench/bench_llamacpp.py "
                     "--build-only, or pass --quantize)" % a.type)
        f16 = out + ".f16.tmp"
        write_model(f16, gguf.GGMLQuantizationType.F16, a.tokenizer, a.seed)
        try:
            pure = [] if a.type.endswith("_M") else ["--pure"]
            r = subprocess.run([q] + pure + [f16, out + ".tmp", a.type], capture_output=True, text=True)
            if r.returncode != 0:
                sys.exit("make-synth-gguf.py: llama-quantize failed:\n" + r.stderr[-4000:])
        finally:
            os.unlink(f16)
    else:
        write_model(out + ".tmp", getattr(gguf.GGMLQuantizationType, a.type), a.tokenizer, a.seed)
    os.replace(out + ".tmp", out)
    print("%s (%.0f MiB, %.0f s)" % (out, os.path.getsize(out) / 1048576.0, time.monotonic() - t0),
          file=sys.stderr)
    print(out)


if __name__ == "__main__":
    main()
