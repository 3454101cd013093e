#!/bin/sh
# run-all.sh - the GPU tests and the GPU benchmark, with every result kept.
#
#   tests/gpu/run-all.sh [--from-suite] [--out DIR]
#   tests/gpu/run-all.sh --list
#
# Programs: every tests/gpu/ program in Makefile.am's check_PROGRAMS (today
# test_cuda: each kernel and whole models against the CPU backend, and
# test_cuda_decode: CUDA-graph decode steps against eager ones, the device's
# greedy argmax, the profile), tests/gpu/hf_reference.py (llamad against
# Hugging Face transformers, where torch is installed) and bench/bench-cuda
# --profile yes (a 7B-shaped model against the device's measured limits, in
# bf16 and then with native Q4_0, Q4_K and Q8_0 weights).
# --from-suite (make check) leaves the benchmark out; --list prints the
# programs to build, one a line, and exits.
#
# Where the programs come from (LLAMAD_BUILDDIR, default .):
#   - a configured build tree (a Makefile): they are built first, the build's
#     output kept in DIR/build.log; a failed build, a program missing after
#     it or one older than its source is a FAIL, never a SKIP;
#   - a pack made by scripts/gpu-pack (no Makefile, a file sources.sha256):
#     the sources it was built from must equal the ones beside this script,
#     else FAIL (a stale pack).
#
# Each program runs under timeout(1), its whole output in DIR/NAME.log.
# Limits in seconds: test_cuda 240, test_cuda_decode 180, any other test
# program 180, hf_reference 240, bench-cuda 300; LLAMAD_GPU_TIMEOUT (seconds)
# replaces them all, and LLAMAD_GPU_BUDGET (seconds for the whole run) cuts
# each to what is left of it, so that the summary is written before a caller's
# own limit (a program that would get under 5 s is not run, and fails).  A program that times out, exits non-zero, or prints no
# PASS/FAIL/SKIP line fails.  DIR/summary.txt holds the date, the git commit,
# the GPU (name, driver, CUDA version, memory), each program's outcome and
# the PASS/FAIL/SKIP counts.  DIR defaults to ./gpu-results/DATE, and with
# --from-suite to BUILDDIR/tests/work/gpu-results.
#
# Exit status 0 when nothing failed.  Without a CUDA device (nvidia-smi finds
# none) the programs report SKIP and the script succeeds, so that CI machines
# pass; with a device, a build without the CUDA backend or a program that
# skips for want of a device is a FAIL.
#
# compute-sanitizer (memcheck, then racecheck) runs one short graph test
# (test_cuda_decode graphs_short) where a device is present; its absence on a
# GPU machine is a FAIL.
#
# Environment: LLAMAD_BUILDDIR, LLAMAD_SRCDIR, LLAMAD_GPU_PARTS (default
# "cuda hf sanitize bench"), LLAMAD_TEST_MODEL (the default model), PYTHON (default
# python3), LLAMAD_GPU_TIMEOUT, LLAMAD_GPU_BUDGET.
S=${LLAMAD_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}
B=${LLAMAD_BUILDDIR:-.}
PY=${PYTHON:-python3}
parts=${LLAMAD_GPU_PARTS:-cuda hf sanitize bench}
out=""
list_only=0
from_suite=0
while [ $# -gt 0 ]; do
    case $1 in
    --from-suite) parts=$(echo "$parts" | sed 's/bench//'); from_suite=1 ;;
    --out) [ $# -ge 2 ] || { echo "run-all.sh: --out needs a directory" >&2; exit 2; }; out=$2; shift ;;
    --out=*) out=${1#--out=} ;;
    --list) list_only=1 ;;
    *) echo "usage: run-all.sh [--from-suite] [--out DIR] | --list" >&2; exit 2 ;;
    esac
    shift
done

# The GPU test programs, from Makefile.am, so that a new one is run without an edit here.
test_progs=$(sed -n 's/^check_PROGRAMS += \(tests\/gpu\/[A-Za-z0-9_]*\)[[:space:]]*$/\1/p' "$S/Makefile.am" | tr "\n" " ")
if [ "$list_only" = 1 ]; then
    for p in $test_progs tests/tools/forward-dump bench/bench-cuda; do echo "$p"; done
    exit 0
fi

if [ -z "$out" ] && [ "$from_suite" = 1 ]; then
    out="$B/tests/work/gpu-results"
elif [ -z "$out" ]; then
    out="./gpu-results/$(date -u +%Y%m%d-%H%M%S)"
fi
mkdir -p "$out" || { echo "FAIL: gpu (cannot make the results directory $out)"; exit 1; }
out=$(cd "$out" && pwd)
summary="$out/summary.txt"
: >"$out/results.txt"

# note LINE: print a result line and keep it for the summary.
note() {
    echo "$1"
    echo "$1" >>"$out/results.txt"
}

# limit_for NAME: seconds NAME may run: its own limit, cut to what is left of
# LLAMAD_GPU_BUDGET less 15 s for the summary.
limit_for() {
    if [ -n "${LLAMAD_GPU_TIMEOUT:-}" ]; then
        lim=$LLAMAD_GPU_TIMEOUT
    else
        case $1 in
        test_cuda | hf_reference) lim=240 ;;
        bench-cuda*) lim=300 ;;
        *) lim=180 ;;
        esac
    fi
    if [ -n "${LLAMAD_GPU_BUDGET:-}" ]; then
        left=$((LLAMAD_GPU_BUDGET - ($(date +%s) - started) - 15))
        [ "$left" -lt "$lim" ] && lim=$left
        [ "$lim" -lt 5 ] && lim=0
    fi
    echo "$lim"
}
started=$(date +%s)

has_device=0
nvidia-smi -L 2>/dev/null | grep -q '^GPU ' && has_device=1

# ---------------------------------------------------------------- the programs
mode=""
have_cuda=0
unusable="" # programs present but stale: never run
if [ -f "$B/Makefile" ]; then
    mode=build
    grep -q '^#define HAVE_CUDA 1' "$B/config.h" 2>/dev/null && have_cuda=1
    targets="$test_progs tests/tools/forward-dump"
    [ "$have_cuda" = 1 ] && targets="$targets bench/bench-cuda"
    echo "== build: make -C $B $targets" >"$out/build.log"
    # shellcheck disable=SC2086
    make -C "$B" $targets >>"$out/build.log" 2>&1
    brc=$?
    if [ "$brc" -ne 0 ]; then
        tail -n 40 "$out/build.log"
        note "FAIL: build (make exit status $brc; whole output in $out/build.log)"
    fi
    for p in $targets; do
        src="$S/$(echo "$p" | sed 's/bench-cuda$/bench_cuda/; s/forward-dump$/forward_dump/').c"
        if [ ! -x "$B/$p" ]; then
            note "FAIL: $p is not built (see $out/build.log)"
        elif [ -f "$src" ] && [ -n "$(find "$src" -newer "$B/$p")" ]; then
            note "FAIL: $p is older than $src (a stale binary, not run; see $out/build.log)"
            unusable="$unusable $p"
        elif [ -f "$B/libengine.a" ] && [ -n "$(find "$B/libengine.a" -newer "$B/$p")" ]; then
            note "FAIL: $p is older than libengine.a (a stale binary, not run; see $out/build.log)"
            unusable="$unusable $p"
        fi
    done
elif [ -f "$B/sources.sha256" ]; then
    mode=pack
    have_cuda=1 # scripts/gpu-pack refuses to pack a build without the CUDA backend
    if ! (cd "$S" && sha256sum -c --quiet "$B/sources.sha256") >"$out/pack-check.log" 2>&1; then
        cat "$out/pack-check.log"
        note "FAIL: the pack in $B was built from other sources than $S (run scripts/gpu-pack again); nothing run"
        unusable="$test_progs tests/tools/forward-dump bench/bench-cuda"
    fi
    for p in $test_progs tests/tools/forward-dump bench/bench-cuda; do
        [ -x "$B/$p" ] || note "FAIL: $p is not in the pack $B"
    done
else
    note "FAIL: no build tree (Makefile) and no pack (sources.sha256) in $B"
fi

if [ "$has_device" = 1 ] && [ "$have_cuda" = 0 ] && [ -n "$mode" ]; then
    note "FAIL: gpu (nvidia-smi finds a GPU but $B was configured without the CUDA backend)"
fi

# run_prog NAME PROGRAM ARGS...: run one program under its limit, output to NAME.log.
run_prog() {
    name=$1; shift
    log="$out/$name.log"
    lim=$(limit_for "$name")
    echo "== $name (limit ${lim}s)"
    if [ "$lim" -le 0 ]; then
        note "FAIL: $name (not run: LLAMAD_GPU_BUDGET=${LLAMAD_GPU_BUDGET}s is spent)"
        return
    fi
    start=$(date +%s)
    timeout -k 10 "$lim" "$@" >"$log" 2>&1
    rc=$?
    secs=$(($(date +%s) - start))
    cat "$log"
    p=$(grep -c '^PASS: ' "$log")
    f=$(grep -c '^FAIL: ' "$log")
    s=$(grep -c '^SKIP: ' "$log")
    grep -E '^(PASS|FAIL|SKIP): ' "$log" | sed "s|^|$name: |" >>"$out/results.txt"
    if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
        note "FAIL: $name (timed out after ${lim}s)"
    elif [ "$rc" -ne 0 ]; then
        note "FAIL: $name (exit status $rc)"
    elif [ $((p + f + s)) -eq 0 ] && [ "${name#bench-cuda}" = "$name" ]; then
        note "FAIL: $name (printed no PASS, FAIL or SKIP line)"
    elif [ "$has_device" = 1 ] && grep -q -E '^  skip: skipped: (no CUDA device|llamad was built without)' "$log"; then
        note "FAIL: $name (skipped for want of a CUDA device although nvidia-smi finds one)"
    fi
    echo "$name: exit $rc, ${secs}s, $p passed, $f failed, $s skipped" >>"$out/programs.txt"
}

: >"$out/programs.txt"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/llamad-gpu.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM
[ -n "$mode" ] && for part in $parts; do
    case $part in
    cuda)
        for p in $test_progs; do
            case " $unusable " in *" $p "*) continue ;; esac
            [ -x "$B/$p" ] && run_prog "$(basename "$p")" "$B/$p"
        done
        ;;
    hf)
        if [ "$has_device" = 0 ]; then
            note "SKIP: hf_reference (skipped: no CUDA device)"
            continue
        fi
        if [ -f "$S/.gpu/tokenizer.json" ]; then
            cp "$S/.gpu/tokenizer.json" "$tmp/tokenizer.json"
        elif [ -n "${LLAMAD_TEST_MODEL:-}" ] && [ -f "$LLAMAD_TEST_MODEL" ]; then
            "$PY" "$S/tests/ref/gguf-to-tokenizer-json.py" "$LLAMAD_TEST_MODEL" "$tmp/tokenizer.json" \
                >"$out/tokenizer.log" 2>&1 || cat "$out/tokenizer.log"
        fi
        if echo "$unusable" | grep -q forward-dump; then
            :
        elif [ -f "$tmp/tokenizer.json" ]; then
            run_prog hf_reference "$PY" "$S/tests/gpu/hf_reference.py" "$B/tests/tools/forward-dump" \
                "$tmp/tokenizer.json" "$tmp/hf"
        else
            note "FAIL: hf_reference (no tokenizer.json: pack with scripts/gpu-pack or set LLAMAD_TEST_MODEL)"
        fi
        ;;
    sanitize)
        # one short graph test under compute-sanitizer's memcheck and racecheck
        if [ "$has_device" = 0 ]; then
            note "SKIP: compute-sanitizer (skipped: no CUDA device)"
            continue
        fi
        cs=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null | head -n 1)
        if [ -z "$cs" ]; then
            note "FAIL: compute-sanitizer is not installed on this GPU machine"
        elif ! echo "$unusable" | grep -q test_cuda_decode; then
            for tool in memcheck racecheck; do
                run_prog "sanitizer-$tool" "$cs" --tool "$tool" --error-exitcode 1 \
                    "$B/tests/gpu/test_cuda_decode" graphs_short
            done
        fi
        ;;
    bench)
        if [ "$has_device" = 0 ]; then
            note "SKIP: bench-cuda (skipped: no CUDA device)"
        elif [ -x "$B/bench/bench-cuda" ] && ! echo "$unusable" | grep -q bench-cuda; then
            run_prog bench-cuda "$B/bench/bench-cuda" --profile yes
            for t in Q4_0 Q4_K Q8_0; do
                run_prog "bench-cuda-$t" "$B/bench/bench-cuda" --weights native --type "$t" --profile yes
            done
        fi
        ;;
    esac
done

# ---------------------------------------------------------------- the summary
passed=$(grep -c 'PASS: ' "$out/results.txt")
failed=$(grep -c 'FAIL: ' "$out/results.txt")
skipped=$(grep -c 'SKIP: ' "$out/results.txt")
if [ "$mode" = pack ] && [ -f "$B/commit" ]; then
    commit=$(cat "$B/commit")
else
    commit=$(git -C "$S" describe --always --dirty --abbrev=40 2>/dev/null || echo unknown)
fi
{
    echo "date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    echo "commit: $commit"
    echo "programs: ${mode:-none} ($B)"
    if [ "$has_device" = 1 ]; then
        nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null |
            sed 's/^/gpu: /'
        echo "cuda: $(nvidia-smi 2>/dev/null | sed -n 's/.*CUDA Version: *\([0-9.]*\).*/\1/p' | head -n 1)"
    else
        echo "gpu: none (nvidia-smi finds no device)"
    fi
    echo "model: ${LLAMAD_TEST_MODEL:-none}"
    cat "$out/programs.txt"
    grep -E 'FAIL: ' "$out/results.txt" | sed 's/^/failed: /'
    echo "passed $passed, failed $failed, skipped $skipped"
} >"$summary"
echo "== summary ($summary)"
cat "$summary"
[ "$failed" -eq 0 ]
