#!/usr/bin/env python3
"""bench_llamacpp.py - llamad's CPU backend beside llama.cpp on the same GGUF:
prefill of 128 and 512 tokens and batch-1 decode, tokens/s, at the same
thread counts, interleaved rounds, one table of ratios llamad / llama.cpp.

    bench_llamacpp.py [--model GGUF ...] [--threads 1,2] [--rounds 3] [--reps 3]
                      [--precision exact,fast] [--no-warmup] [--build-only] [--cache DIR]
                      [--no-amx | --avx2] [--llama-bench-arg ARG ...]

llama.cpp: its llama-bench (and llama-quantize, which make-synth-gguf.py
uses for Q4_K) is built once, CPU only with native flags, from the source
distribution of the llama-cpp-python package on the Python index (pinned
below; it vendors llama.cpp with its tools) into --cache (default
bench/.cache, gitignored): `pip download --no-binary :all: --no-deps`,
unpack, cmake vendor/llama.cpp.  Needs pip, cmake and a C++ compiler.

Each round runs, for each thread count, bench-cpu once per llamad
precision (--precision P --only prefill128,prefill512,decode1,decode16
--runs REPS --json) and then llama-bench (-p 128,512 -n 32 -r REPS -o json)
on the model; the figure of a round is each tool's
own (bench-cpu: median of REPS; llama-bench: mean of REPS, after one
warm-up run of each test unless --no-warmup; bench-cpu's decode runs one
untimed run first, its prefill none), the table gives the median over
rounds.  What is measured differs a little: a bench-cpu decode run is 16
steps from context 128; llama-bench generates 32 tokens from an empty
context (tg32).  The machine's load (loadavg before and after, nproc,
CPU model and its AVX2/AVX-512/VNNI flags) is printed with the table.
--avx2 measures the machines that have AVX2 but no AVX-512 on one that
has it: llama.cpp built with AVX, AVX2, FMA, F16C and BMI2 named (no
AVX-512, no AVX-VNNI) in its own build directory, and bench-cpu run at
--isa avx2.  Below each model and thread count: llamad's batch-16 decode
throughput over its batch-1 (per precision) and batch-1 decode's weight
bytes per second as a share of bench-cpu's read bandwidth at that thread
count.  Last, a line per model and thread count sets the figures against
issue 19's targets (`fast` >= 1.5x llama.cpp at prefill 512 and batch-1
decode, `exact` >= 1.0x, batch 16 >= 4x batch 1 with `fast` on two
threads, batch-1 decode at >= 60% of the read bandwidth), each marked
met or MISSED.
Stdlib only.
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tarfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SRCDIR = os.path.dirname(HERE)
LLAMA_CPP_PYTHON = "0.3.36"
MEASURES = [("prefill128", "prefill 128"), ("prefill512", "prefill 512"), ("decode1", "decode batch 1")]
# issue 19's targets: llamad / llama.cpp by precision, for these measures
RATIO_TARGETS = {"fast": 1.5, "exact": 1.0}
TARGET_MEASURES = ("prefill512", "decode1")
BATCH16_TARGET, BATCH16_THREADS, SHARE_TARGET = 4.0, 2, 0.60


def verdict(x, want):
    return "%.2f/%.2f %s" % (x, want, "met" if x >= want else "MISSED")


def target_line(precs, ours, theirs, threads, share):
    """The figures of one model and thread count against issue 19's
    targets: medians over rounds, ratio / target, met or MISSED."""
    parts = []
    for p in precs:
        for k in TARGET_MEASURES:
            parts.append("%s %s %s" % (p, k, verdict(
                statistics.median(ours[p][k]) / statistics.median(theirs[k]), RATIO_TARGETS[p])))
    if "fast" in precs and threads == BATCH16_THREADS:
        parts.append("fast b16/b1 " + verdict(
            statistics.median(ours["fast"]["decode16"]) / statistics.median(ours["fast"]["decode1"]),
            BATCH16_TARGET))
    for p in precs:
        if share.get(p) is not None:
            parts.append("%s read share %s" % (p, verdict(share[p], SHARE_TARGET)))
    return "; ".join(parts)


# --no-amx: GGML_NATIVE=OFF with the vector extensions named one by one,
# AMX left out (llama-cpp-python 0.3.36's AMX kernels die of SIGILL in a
# KVM guest whose AMX otherwise works; --repack 0 avoids them too, but
# also turns off the repacked Q4_0 / Q4_K layouts of its AVX-512 path).
NO_AMX_FLAGS = ["-DGGML_NATIVE=OFF", "-DGGML_AVX=ON", "-DGGML_AVX2=ON", "-DGGML_BMI2=ON",
                "-DGGML_FMA=ON", "-DGGML_F16C=ON", "-DGGML_AVX512=ON", "-DGGML_AVX512_VBMI=ON",
                "-DGGML_AVX512_VNNI=ON", "-DGGML_AVX512_BF16=ON", "-DGGML_AVX_VNNI=ON"]
# --avx2: the extensions of an AVX2 machine, nothing wider
AVX2_FLAGS = ["-DGGML_NATIVE=OFF", "-DGGML_AVX=ON", "-DGGML_AVX2=ON", "-DGGML_BMI2=ON",
              "-DGGML_FMA=ON", "-DGGML_F16C=ON", "-DGGML_AVX512=OFF", "-DGGML_AVX_VNNI=OFF"]


def build(cache, variant=""):
    """Build llama-bench and llama-quantize under cache (once); return the
    bin dir.  variant: "" (native), "noamx" or "avx2"."""
    bindir = os.path.join(cache, "build-" + LLAMA_CPP_PYTHON + ("-" + variant if variant else ""), "bin")
    if all(os.access(os.path.join(bindir, b), os.X_OK) for b in ("llama-bench", "llama-quantize")):
        return bindir
    os.makedirs(cache, exist_ok=True)
    sdist = os.path.join(cache, "llama_cpp_python-%s.tar.gz" % LLAMA_CPP_PYTHON)
    if not os.path.exists(sdist):
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-binary", ":all:", "--no-deps",
                        "-d", cache, "llama-cpp-python==" + LLAMA_CPP_PYTHON], check=True)
    src = os.path.join(cache, "llama_cpp_python-" + LLAMA_CPP_PYTHON)
    if not os.path.isdir(src):
        with tarfile.open(sdist) as t:
            t.extractall(cache, filter="data")
    build_dir = os.path.dirname(bindir)
    subprocess.run(["cmake", "-S", os.path.join(src, "vendor", "llama.cpp"), "-B", build_dir,
                    "-DCMAKE_BUILD_TYPE=Release", "-DLLAMA_CURL=OFF",
                    "-DGGML_CUDA=OFF", "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF",
                    "-DLLAMA_BUILD_SERVER=OFF"]
                   + {"noamx": NO_AMX_FLAGS, "avx2": AVX2_FLAGS}.get(variant, ["-DGGML_NATIVE=ON"]),
                   check=True, stdout=subprocess.DEVNULL)
    subprocess.run(["cmake", "--build", build_dir, "-j", str(os.cpu_count() or 1),
                    "--target", "llama-bench", "llama-quantize"], check=True, stdout=subprocess.DEVNULL)
    return bindir


def machine():
    """CPU model, the SIMD flags that matter here, nproc."""
    model, flags = platform.processor() or "?", set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                k, _, v = line.partition(":")
                if k.strip() == "model name":
                    model = v.strip()
                elif k.strip() == "flags":
                    flags = set(v.split())
    except OSError:
        pass
    simd = sorted(x for x in flags if x in ("avx2", "fma", "f16c") or x.startswith("avx512")
                  or "vnni" in x)
    return "%s; nproc %d; %s" % (model, os.cpu_count() or 0, " ".join(simd) or "no AVX2")


def run_llamad(bench_cpu, model, threads, reps, precision, isa):
    out = subprocess.run([bench_cpu, model, "--threads", str(threads), "--runs", str(reps),
                          "--precision", precision, "--isa", isa,
                          "--only", "prefill128,prefill512,decode1,decode16", "--json"],
                         check=True, capture_output=True, text=True).stdout
    r = {}
    for line in out.splitlines():
        if line.startswith("{"):
            v = json.loads(line)
            r[v["measure"]] = v.get("tokens_per_s", v.get("gb_per_s", v.get("bytes")))
    return r


def run_llamacpp(bindir, model, threads, reps, warmup, extra):
    cmd = [os.path.join(bindir, "llama-bench"), "-m", model, "-t", str(threads),
           "-p", "128,512", "-n", "32", "-r", str(reps), "-o", "json"] + extra
    out = subprocess.run(cmd + ([] if warmup else ["--no-warmup"]),
                         check=True, capture_output=True, text=True).stdout
    r = {}
    for v in json.loads(out):
        if v["n_gen"] == 0:
            r["prefill%d" % v["n_prompt"]] = v["avg_ts"]
        else:
            r["decode1"] = v["avg_ts"]
    return r


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", action="append",
                    help="GGUF (repeatable; default: the default model)")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--cache", default=os.path.join(HERE, ".cache"))
    ap.add_argument("--bench-cpu", default=os.path.join(SRCDIR, "bench", "bench-cpu"))
    ap.add_argument("--precision", default="exact,fast",
                    help="llamad's cpu-precision values to run, comma-separated (default exact,fast)")
    ap.add_argument("--no-warmup", action="store_true",
                    help="llama-bench without its warm-up runs (saves time on big models)")
    ap.add_argument("--llama-bench-arg", action="append", default=[], metavar="ARG",
                    help="an argument for llama-bench (repeatable), e.g. --llama-bench-arg=--repack "
                         "--llama-bench-arg=0 where its AMX kernels die of SIGILL")
    ap.add_argument("--no-amx", action="store_true",
                    help="llama.cpp built without AMX (x86-64 with AVX-512 VNNI/BF16 and AVX-VNNI named "
                         "instead of GGML_NATIVE), in its own build directory")
    ap.add_argument("--avx2", action="store_true",
                    help="both on AVX2 only: llama.cpp built without AVX-512 and AVX-VNNI, in its own "
                         "build directory, and bench-cpu at --isa avx2")
    ap.add_argument("--build-only", action="store_true")
    a = ap.parse_args()
    if a.no_amx and a.avx2:
        sys.exit("bench_llamacpp.py: --no-amx and --avx2 are two builds; take one")
    bindir = build(a.cache, "avx2" if a.avx2 else "noamx" if a.no_amx else "")
    if a.build_only:
        print(bindir)
        return
    if not os.access(a.bench_cpu, os.X_OK):
        sys.exit("bench_llamacpp.py: %s is not built (make bench/bench-cpu)" % a.bench_cpu)
    models = a.model or [os.path.join(SRCDIR, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")]
    threads = [int(t) for t in a.threads.split(",")]
    if any(p not in ("exact", "fast") for p in a.precision.split(",")):
        sys.exit("bench_llamacpp.py: --precision takes exact and/or fast")
    if a.rounds < 1 or a.reps < 1 or not threads or min(threads) < 1:
        sys.exit("bench_llamacpp.py: rounds, reps and threads must be at least 1")

    flags = ("no AMX (" + " ".join(NO_AMX_FLAGS) + ")" if a.no_amx
             else "AVX2 only (" + " ".join(AVX2_FLAGS) + "); llamad at --isa avx2" if a.avx2
             else "GGML_NATIVE=ON")
    extra = ", run with " + " ".join(a.llama_bench_arg) if a.llama_bench_arg else ""
    print("llama.cpp: llama-bench from llama-cpp-python %s (vendored llama.cpp), %s%s"
          % (LLAMA_CPP_PYTHON, flags, extra))
    print("machine: %s" % machine())
    print("%s; %d rounds, %d reps per round%s" % (time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                                                  a.rounds, a.reps,
                                                  ", llama-bench --no-warmup" if a.no_warmup else ""))
    precs = a.precision.split(",")
    print("%-28s %3s %-15s %s %10s %s  %s" % (
        "model", "thr", "measure", " ".join("%10s" % ("llamad " + p) for p in precs), "llama.cpp",
        " ".join("%7s" % ("r " + p) for p in precs), "load before/after (1-min)"))
    for model in models:
        name = os.path.basename(model)
        for t in threads:
            ours = {p: {} for p in precs}
            theirs, loads, bw = {}, [], []
            wbytes = 0.0
            for _ in range(a.rounds):
                before = os.getloadavg()[0]
                for p in precs:
                    r = run_llamad(a.bench_cpu, model, t, a.reps, p, "avx2" if a.avx2 else "auto")
                    bw.append(r.get("read_bandwidth", 0.0))
                    wbytes = r.get("weight_bytes", 0.0)
                    for k in ("prefill128", "prefill512", "decode1", "decode16"):
                        ours[p].setdefault(k, []).append(r[k])
                r = run_llamacpp(bindir, model, t, a.reps, not a.no_warmup, a.llama_bench_arg)
                for k, _ in MEASURES:
                    theirs.setdefault(k, []).append(r[k])
                loads.append("%.1f/%.1f" % (before, os.getloadavg()[0]))
            for k, label in MEASURES:
                y = statistics.median(theirs[k])
                xs = [statistics.median(ours[p][k]) for p in precs]
                print("%-28s %3d %-15s %s %10.1f %s  %s" % (
                    name[:28], t, label, " ".join("%10.1f" % x for x in xs), y,
                    " ".join("%6.2fx" % (x / y) for x in xs), " ".join(loads)))
            rbw = statistics.median(bw)
            share = {}
            for p in precs:
                d1, d16 = statistics.median(ours[p]["decode1"]), statistics.median(ours[p]["decode16"])
                line = "%-28s %3d %-15s %s: batch 16 / batch 1 = %.2fx" % (name[:28], t, "", p, d16 / d1)
                if rbw > 0:
                    share[p] = wbytes * d1 / (rbw * 1e9)
                    line += "; batch-1 decode reads %.0f%% of the read bandwidth (%.1f GB/s)" % (
                        100 * share[p], rbw)
                print(line)
            if rbw > 0:
                print("%-28s %3d %-15s llama.cpp batch-1 decode reads %.0f%% of it" % (
                    name[:28], t, "", 100 * wbytes * statistics.median(theirs["decode1"]) / (rbw * 1e9)))
            print("%-28s %3d targets: %s" % (name[:28], t, target_line(precs, ours, theirs, t, share)))
            sys.stdout.flush()

if __name__ == "__main__":
    main()
