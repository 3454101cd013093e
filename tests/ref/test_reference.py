#!/usr/bin/env python3
"""The engine's forward pass against the independent numpy reference.

Run by tests/run-suite.sh (part "ref") with the venv's python:

    test_reference.py FORWARD_DUMP WORKDIR

* The default model (when fetched): for several prompts, the last-position
  logits agree within 1e-3 relative L2, and the greedy continuation of 64
  tokens is identical (prefilled in chunks of 7 tokens, so chunked prefill
  is covered too).
* cpu-precision fast on the default model: the first 256 ids of the
  fidelity text (goldens/fidelity-tokens.txt), every position against the
  reference; its divergence is printed (top-1 agreement, mean KL) and held
  to llama.cpp-like bounds (top-1 >= 90%, mean KL < 2e-2; fidelity.py
  measures 95.9% and 3.7e-3 on 2,048 ids), and its logits are the same
  bits prefilled whole and in chunks of 7 (batch invariance).
* Random-weight models made by make-hf-model.py, each in Hugging Face layout
  (half-split RoPE) and as its GGUF twin (Q/K rows permuted, interleaved
  RoPE): every position's logits agree with the reference within 1e-3, for
  GQA ratios 1, 3 and 8, tied and separate output embeddings, LLaMA-3 RoPE
  scaling, head sizes 64 and 128, and safetensors data that does not
  start on a float.
* K-quant models (no K-quant file is fetched; they are written here):
  kquants.py's Q4_K / Q5_K / Q6_K blocks read back by gguf.quants; the
  default model rewritten by requant-gguf.py in the Q4_K_M and Q5_K_M
  mixtures (its ffn_down in Q4_K or Q5_K and Q6_K: the only matrices of
  rows a multiple of 256), checked as the default model is (two prompts,
  then the fast checks); and two random models whose every matrix is a
  K-quant, every position against the reference, fast's bits whole, in
  chunks and unpacked.

Prints PASS/FAIL/SKIP lines.
"""
import os
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
import ref_forward  # noqa: E402
from fidelity import Stats  # noqa: E402
import kquants  # noqa: E402

fwd, work = sys.argv[1], sys.argv[2]
os.makedirs(work, exist_ok=True)
failed = 0


def report(ok, name, detail):
    global failed
    print(f"{'PASS' if ok else 'FAIL'}: {name} ({detail})", flush=True)
    failed += not ok


def rel_l2(ours, ref):
    err = np.linalg.norm(ours - ref, axis=1) / np.linalg.norm(ref, axis=1)
    return float(err.max()) if np.all(np.isfinite(ours)) else float("inf")


last_log = ""  # the last dump's stderr (the engine's log lines)


def dump(model, tokens, *extra):
    global last_log
    out = os.path.join(work, "ours.f32")
    toks = os.path.join(work, "ours.txt")
    r = subprocess.run([fwd, model, "--tokens", ",".join(map(str, tokens)), "--out", out,
                        "--tokens-out", toks, *extra], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(r.stderr[-2000:])
    last_log = r.stderr
    logits = np.fromfile(out, dtype=np.float32)
    ids = []
    if os.path.exists(toks):
        with open(toks) as f:
            ids = [int(x) for x in f.read().replace(",", " ").split()]
        os.unlink(toks)
    return logits, ids


def prompt_checks(model, model_path, label, prompts):
    """Each prompt's last-position logits within 1e-3 of the reference and
    its greedy continuation of 64 tokens identical, prefilled in chunks of
    7 (cpu-precision exact)."""
    V = model.n_vocab
    for i, toks in enumerate(prompts):
        name = f"reference {label} prompt {i} ({len(toks)} tokens)"
        try:
            ref_ids, margin = ref_forward.greedy(model, toks, 64)
            ref_last = ref_forward.forward_logits(model, toks)
            ours, ids = dump(model_path, toks, "--greedy", "64", "--chunk", "7")
            e = rel_l2(ours.reshape(-1, V)[-1:], ref_last[-1:])
            report(e < 1e-3, name + " logits", f"rel_l2 {e:.2e}, tol 1e-3")
            same = ids == [int(x) for x in ref_ids]
            first = next((k for k in range(64) if k >= len(ids) or ids[k] != ref_ids[k]), 64)
            report(same, name + " greedy 64 tokens",
                   "identical" if same else f"first difference at {first}, reference margin {margin[first]:.3f}")
        except RuntimeError as ex:
            report(False, name, str(ex))


def cpu_has_avx2():
    """Whether this CPU runs the avx2 level (AVX2, FMA and F16C)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line for line in f if line.startswith("flags")), "").split()
    except OSError:
        return False
    return {"avx2", "fma", "f16c"} <= set(flags)


def avx2_packed_check(path, tokens, whole, best_log, name):
    """The avx2 level's kernels on their own packed copy (each tile two
    halves of eight rows) against `whole`, the best level's fast bits,
    where the best level is another (avxvnni, avx512, amx); where it is
    avx2 itself, the checks on `whole` were this one."""
    if "for the avx2 fast" in best_log:
        return
    if not cpu_has_avx2():
        print(f"SKIP: {name}: the avx2 level packed (skipped: this CPU lacks AVX2, FMA or F16C)")
        return
    low, _ = dump(path, tokens, "--all", "--precision", "fast", "--isa", "avx2")
    packed, same = "for the avx2 fast" in last_log, low.tobytes() == whole.tobytes()
    report(packed and same, f"{name}: the avx2 level packed gives the same bits",
           "not packed at avx2" if not packed else "identical" if same else
           f"max difference {float(np.max(np.abs(low - whole))):.3e}")


def fast_checks(model, model_path, label):
    """cpu-precision fast on a model: the first 256 ids of the fidelity
    text, every position against the reference (exact beside it), its
    divergence printed and bounded; the same bits whole and in chunks of
    7, and packed and mapped (where this CPU packs)."""
    V = model.n_vocab
    name = f"reference {label}, cpu-precision fast, 256 positions"
    try:
        with open(os.path.join(HERE, "goldens", "fidelity-tokens.txt")) as f:
            fid = [int(t) for t in f.read().replace(",", " ").split()][:256]
        ref_all = ref_forward.forward_logits(model, fid, all_rows=True)
        st = {}
        for prec in ("exact", "fast"):
            ours, _ = dump(model_path, fid, "--all", "--precision", prec)
            st[prec] = Stats()
            st[prec].add(ref_all, ours.reshape(len(fid), V).astype(np.float64))
        ex, fa = st["exact"], st["fast"]
        top1 = fa.agree / fa.rows
        kl = float(np.mean(fa.kl))
        print(f"  info: {ex.line('exact')}")
        print(f"  info: {fa.line('fast')}")
        report(ex.agree == ex.rows and max(ex.rel) < 1e-3, name + ": exact beside it",
               f"top-1 {100 * ex.agree / ex.rows:.2f}%, max rel_l2 {max(ex.rel):.2e}")
        report(top1 >= 0.90 and kl < 2e-2, name,
               f"top-1 {100 * top1:.2f}% (>= 90%), mean KL {kl:.2e} nats (< 2e-2)")
        whole, _ = dump(model_path, fid, "--all", "--precision", "fast")
        packs, best_log = "matrices packed" in last_log, last_log
        chunked, _ = dump(model_path, fid, "--all", "--precision", "fast", "--chunk", "7")
        report(whole.tobytes() == chunked.tobytes(), name + ": chunks of 7 give the same bits",
               "identical" if whole.tobytes() == chunked.tobytes() else
               f"max difference {float(np.max(np.abs(whole - chunked))):.3e}")
        # the matrices packed at start (cpu-repack) against the mapped rows,
        # whole and in chunks of 7, where this CPU's level packs them
        if not packs:
            print(f"SKIP: {name}: packed matrices (skipped: this CPU's level packs none)")
        for packed, args, what in ((whole, (), "whole"), (chunked, ("--chunk", "7"), "chunks of 7")):
            if not packs:
                break
            plain, _ = dump(model_path, fid, "--all", "--precision", "fast", "--no-repack", *args)
            report(packed.tobytes() == plain.tobytes(),
                   f"{name}: packed matrices give the mapped rows' bits ({what})",
                   "identical" if packed.tobytes() == plain.tobytes() else
                   f"max difference {float(np.max(np.abs(packed - plain))):.3e}")
        avx2_packed_check(model_path, fid, whole, best_log, name)
    except RuntimeError as ex:
        report(False, name, str(ex))


# ---------------------------------------------------------------- the default model

model_path = os.environ.get("LLAMAD_TEST_MODEL") or os.path.join(
    os.environ.get("LLAMAD_SRCDIR", os.path.join(HERE, "..", "..")), "models",
    "SmolLM2-135M-Instruct.Q4_1.gguf")
PROMPTS = [
    [504, 3458, 282, 4649, 314],                                   # "The capital of France is"
    [1, 9690, 198, 2683, 359, 253, 5356, 5646, 11173, 3365, 3511, 308, 34519, 28, 7018, 411, 407, 19712,
     8182, 2, 198, 1, 4093, 198, 1780, 359, 260, 1345, 2790, 282, 260, 4649, 47, 2, 198, 1, 520, 9531, 198],
    [23711, 2464, 253, 655, 28, 665, 2117, 30, 1035, 260, 6134, 28, 253, 5148, 9144, 1116, 282],
]
if os.path.exists(model_path):
    model = ref_forward.load_model(model_path)
    prompt_checks(model, model_path, "default model", PROMPTS)
    fast_checks(model, model_path, "default model")
else:
    print(f"SKIP: reference default model (skipped: {model_path} not fetched)")

# ---------------------------------------------------------------- random models, both layouts

CONFIGS = [
    ("gqa1-hd64", ["--dim", "256", "--heads", "4", "--kv-heads", "4", "--ff", "512"]),
    # the same shapes with the safetensors data starting 2 bytes off a float:
    # the F32 matrices are read through the copying tile fill
    ("gqa1-hd64-unaligned", ["--dim", "256", "--heads", "4", "--kv-heads", "4", "--ff", "512",
                             "--header-pad", "2"]),
    ("gqa3-hd64-tied", ["--dim", "384", "--heads", "6", "--kv-heads", "2", "--ff", "768", "--tied"]),
    ("gqa8-hd128", ["--dim", "1024", "--heads", "8", "--kv-heads", "1", "--head-dim", "128", "--ff", "1024"]),
    ("gqa2-hd128-llama3", ["--dim", "512", "--heads", "4", "--kv-heads", "2", "--head-dim", "128", "--ff", "768",
                           "--llama3-rope"]),
]
tok_json = os.path.join(work, "tokenizer.json")
if not os.path.exists(tok_json) and os.path.exists(model_path):
    subprocess.run([sys.executable, os.path.join(HERE, "gguf-to-tokenizer-json.py"), model_path, tok_json],
                   check=True)
tokens = [int(t) for t in np.random.default_rng(3).integers(3, 255, size=37)]


def make_random(name, *args):
    """make-hf-model.py WORK/NAME (and WORK/NAME.gguf); the directory, or
    None after reporting the failure."""
    d = os.path.join(work, name)
    cmd = [sys.executable, os.path.join(HERE, "make-hf-model.py"), d, "--gguf", d + ".gguf", *args]
    if os.path.exists(tok_json):
        cmd += ["--tokenizer-json", tok_json, "--gguf-tokenizer-from", model_path]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        report(False, f"reference random {name}", "make-hf-model.py failed: " + r.stderr[-500:])
        return None
    return d


for name, args in CONFIGS:
    d = make_random(name, "--layers", "2", "--seed", "5", *args)
    if not d:
        continue
    gg = d + ".gguf"
    ref = ref_forward.forward_logits(ref_forward.load_model(d), tokens, all_rows=True)
    for layout, path in (("hf", d), ("gguf", gg)):
        try:
            ours, _ = dump(path, tokens, "--all", "--chunk", "7")
            e = rel_l2(ours.reshape(len(tokens), -1), ref)
            report(e < 1e-3, f"reference random {name} {layout} layout", f"all {len(tokens)} positions, "
                   f"rel_l2 {e:.2e}, tol 1e-3")
        except RuntimeError as ex:
            report(False, f"reference random {name} {layout} layout", str(ex))
# ---------------------------------------------------------------- K-quant models

# The writer of tests/ref/kquants.py against gguf.quants, which knows the
# block layouts independently: a misplaced field gives errors of 0.2-1.4.
for qt, bound in (("Q4_K", 0.12), ("Q5_K", 0.06), ("Q6_K", 0.03)):
    e = kquants.check(qt)
    report(e < bound, f"K-quant writer {qt} read back by gguf.quants", f"rel_l2 {e:.3f} (< {bound})")


def requant(src, dst, mix):
    r = subprocess.run([sys.executable, os.path.join(HERE, "requant-gguf.py"), src, dst, "--type", mix],
                       capture_output=True, text=True)
    if r.returncode != 0:
        report(False, f"requant-gguf.py {mix} {os.path.basename(src)}", r.stderr[-500:])
        return None
    print("  info: " + r.stdout.strip())
    return dst


# The default model with its ffn_down (the only matrices whose 1536-value
# rows K-quants can hold) in the Q4_K_M and Q5_K_M mixtures: real weights,
# both K types of each mixture in every step.
if os.path.exists(model_path):
    for mix in ("Q4_K_M", "Q5_K_M"):
        path = requant(model_path, os.path.join(work, f"default.{mix}.gguf"), mix)
        if path:
            kq = ref_forward.load_model(path)
            prompt_checks(kq, path, f"default model {mix}", PROMPTS[:2])
            fast_checks(kq, path, f"default model {mix}")
            os.unlink(path)
else:
    print(f"SKIP: reference default model K-quant mixtures (skipped: {model_path} not fetched)")

# Random models whose every matrix is a K-quant (512- and 1024-value rows;
# the tied one's embedding in Q6_K): every position within 1e-3 of the
# reference, and fast's bits the same whole, in chunks of 7 and unpacked.
KQ_CONFIGS = [
    ("kq-gqa4-tied", ["--dim", "512", "--heads", "8", "--kv-heads", "2", "--ff", "1024", "--tied",
                      "--layers", "3"], "Q4_K_M"),
    ("kq-gqa2-hd128", ["--dim", "512", "--heads", "4", "--kv-heads", "2", "--head-dim", "128", "--ff", "768",
                       "--layers", "3"], "Q5_K_M"),
]
for name, args, mix in KQ_CONFIGS:
    d = make_random(name, "--seed", "11", *args)
    path = d and requant(d + ".gguf", d + f".{mix}.gguf", mix)
    if not path:
        continue
    label = f"reference random {name} {mix}"
    try:
        ref = ref_forward.forward_logits(ref_forward.load_model(path), tokens, all_rows=True)
        ours, _ = dump(path, tokens, "--all", "--chunk", "7")
        e = rel_l2(ours.reshape(len(tokens), -1), ref)
        report(e < 1e-3, label, f"all {len(tokens)} positions, rel_l2 {e:.2e}, tol 1e-3")
        whole, _ = dump(path, tokens, "--all", "--precision", "fast")
        packs, best_log = "matrices packed" in last_log, last_log
        chunked, _ = dump(path, tokens, "--all", "--precision", "fast", "--chunk", "7")
        plain, _ = dump(path, tokens, "--all", "--precision", "fast", "--no-repack")
        st = Stats()
        st.add(ref, whole.reshape(len(tokens), -1).astype(np.float64))
        print(f"  info: {st.line('fast')}")
        report(whole.tobytes() == chunked.tobytes(), label + ", fast: chunks of 7 give the same bits",
               "identical" if whole.tobytes() == chunked.tobytes() else "differ")
        if packs:
            same = whole.tobytes() == plain.tobytes()
            report(same, label + ", fast: packed matrices give the mapped rows' bits",
                   "identical" if same else "differ")
        else:
            print(f"SKIP: {label}, fast: packed matrices (skipped: this CPU's level packs none)")
        avx2_packed_check(path, tokens, whole, best_log, label + ", fast")
    except RuntimeError as ex:
        report(False, label, str(ex))
sys.exit(1 if failed else 0)
