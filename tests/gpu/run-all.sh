#!/bin/sh
# run-all.sh - the GPU tests and the GPU benchmark.
#
#   tests/gpu/run-all.sh [--from-suite]
#
# Builds the GPU programs where a configured build tree is present (make),
# then runs: tests/gpu/test_cuda (every kernel and the whole model against
# the CPU backend), tests/gpu/test_cuda_decode (decode steps as CUDA graphs
# against eager steps; the device's greedy argmax against the sampler; the
# profile), tests/gpu/hf_reference.py (llamad against Hugging Face
# transformers, where torch is installed) and bench/bench-cuda --profile
# yes (a 7B-shaped model against the device's measured limits, decode with
# CUDA graphs off and on, then the device time of each kind of operation).
# The benchmark's tables are printed last.  Without a CUDA device, or in a
# build without the CUDA backend, every part reports SKIP and the script
# succeeds.
#
# Environment: LLAMAD_BUILDDIR (where the programs are; default .),
# LLAMAD_GPU_PARTS (default "cuda hf bench"), LLAMAD_TEST_MODEL (the default
# model), PYTHON (default python3).  --from-suite (make check) skips the
# benchmark.
B=${LLAMAD_BUILDDIR:-.}
S=${LLAMAD_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}
PY=${PYTHON:-python3}
parts=${LLAMAD_GPU_PARTS:-cuda hf bench}
[ "${1:-}" = "--from-suite" ] && parts=$(echo "$parts" | sed 's/bench//')

if [ -f "$B/Makefile" ] && command -v make >/dev/null 2>&1; then
    make -s -C "$B" tests/gpu/test_cuda tests/gpu/test_cuda_decode tests/tools/forward-dump >/dev/null 2>&1
    grep -q "bench/bench-cuda" "$B/Makefile" 2>/dev/null && make -s -C "$B" bench/bench-cuda >/dev/null 2>&1
fi
if [ ! -x "$B/tests/gpu/test_cuda" ]; then
    echo "SKIP: gpu (skipped: tests/gpu/test_cuda is not built)"
    exit 0
fi
if command -v nvidia-smi >/dev/null 2>&1; then
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | sed 's/^/gpu: /'
fi

rc=0
tmp=$(mktemp -d "${TMPDIR:-/tmp}/llamad-gpu.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM
for part in $parts; do
    case $part in
    cuda)
        "$B/tests/gpu/test_cuda" || rc=1
        if [ -x "$B/tests/gpu/test_cuda_decode" ]; then
            "$B/tests/gpu/test_cuda_decode" || rc=1
        else
            echo "FAIL: tests/gpu/test_cuda_decode is not built"; rc=1
        fi
        ;;
    hf)
        "$B/tests/gpu/test_cuda" matmul_every_weight_type 2>&1 | grep -q '^SKIP' && {
            echo "SKIP: hf_reference (skipped: no CUDA device)"; continue; }
        if [ ! -f "$tmp/tokenizer.json" ]; then
            if [ -f "$S/.gpu/tokenizer.json" ]; then
                cp "$S/.gpu/tokenizer.json" "$tmp/tokenizer.json"
            elif [ -n "${LLAMAD_TEST_MODEL:-}" ] && [ -f "$LLAMAD_TEST_MODEL" ]; then
                "$PY" "$S/tests/ref/gguf-to-tokenizer-json.py" "$LLAMAD_TEST_MODEL" "$tmp/tokenizer.json" || true
            fi
        fi
        if [ -f "$tmp/tokenizer.json" ]; then
            "$PY" "$S/tests/gpu/hf_reference.py" "$B/tests/tools/forward-dump" "$tmp/tokenizer.json" "$tmp/hf" || rc=1
        else
            echo "SKIP: hf_reference (skipped: no tokenizer.json to give the test models)"
        fi
        ;;
    bench)
        [ -x "$B/bench/bench-cuda" ] && { "$B/bench/bench-cuda" --profile yes || rc=1; }
        ;;
    esac
done
exit $rc
