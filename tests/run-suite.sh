#!/bin/sh
# run-suite.sh - llamad's whole test suite: unit tests, end-to-end tests,
# GPU tests (which skip without a device) and bounded fuzzing runs.
#
# Every test program prints "PASS: name", "FAIL: name" or "SKIP: name";
# this script counts them and ends with one line "N passed, N failed, N skipped".
# A program that dies without reporting a failure counts as one failure.
#
# Environment: srcdir, builddir (set by make), PYTHON (the venv's python),
# LLAMAD_SUITE (space-separated parts to run; default "unit ref e2e deploy gpu fuzz";
# also "hostile" and "tsan", which scripts/test runs against sanitizer builds),
# FUZZ_SECONDS (per fuzz target, default 30), LLAMAD_BAD_MODELS (the bad-file
# corpus; made here by tests/corpus/make-bad-*.py when unset),
# LLAMAD_TOKENIZER_GGUFS (the generated tokenizer GGUFs; made here when unset).

srcdir=${srcdir:-.}
builddir=${builddir:-.}
PYTHON=${PYTHON:-python3}
FUZZ_SECONDS=${FUZZ_SECONDS:-30}
parts=${LLAMAD_SUITE:-unit ref e2e deploy gpu fuzz}
export srcdir builddir PYTHON

srcdir_abs=$(cd "$srcdir" && pwd)
builddir_abs=$(cd "$builddir" && pwd)
export LLAMAD_BIN="${LLAMAD_BIN:-$builddir_abs/llamad}"
export LLAMAD_SRCDIR="$srcdir_abs"
export LLAMAD_BUILDDIR="$builddir_abs"
export srcdir="$srcdir_abs"

work=$(mktemp -d "${TMPDIR:-/tmp}/llamad-suite.XXXXXX")
trap 'rm -rf "$work"' EXIT INT TERM
passed=0 failed=0 skipped=0
failures=""

# run_prog NAME CMD...: run one test program, echo its output, count its lines.
run_prog() {
    name=$1; shift
    out="$work/out"
    echo "== $name"
    "$@" >"$out" 2>&1
    rc=$?
    cat "$out"
    p=$(grep -c '^PASS: ' "$out")
    f=$(grep -c '^FAIL: ' "$out")
    s=$(grep -c '^SKIP: ' "$out")
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
        echo "FAIL: $name (exit status $rc, no test reported a failure)"
        f=1
    fi
    if [ "$f" -gt 0 ]; then
        failures="$failures $name"
    fi
    passed=$((passed + p)); failed=$((failed + f)); skipped=$((skipped + s))
}

# The hand-made bad model files, for the loader tests and as fuzz seeds.
if [ -z "${LLAMAD_BAD_MODELS:-}" ] && "$PYTHON" -c 'import numpy' 2>/dev/null; then
    LLAMAD_BAD_MODELS="$builddir_abs/tests/corpus/bad-models"
    rm -rf "$LLAMAD_BAD_MODELS"
    mkdir -p "$LLAMAD_BAD_MODELS"
    "$PYTHON" "$srcdir_abs/tests/corpus/make-bad-ggufs.py" "$LLAMAD_BAD_MODELS" >/dev/null &&
        "$PYTHON" "$srcdir_abs/tests/corpus/make-bad-safetensors.py" "$LLAMAD_BAD_MODELS" >/dev/null ||
        echo "run-suite.sh: could not make the bad-model corpus" >&2
    export LLAMAD_BAD_MODELS
fi

# goldens_reproduced DIR: the generator's other outputs in DIR equal the committed goldens.
goldens_reproduced() {
    bad=""
    for f in tokenizer-llama3.json tokenizer-spm.json tokenizer-llama3/tokenizer.json \
             tokenizer-llama3/tokenizer_config.json tokenizer-spm/tokenizer.json \
             tokenizer-spm/tokenizer_config.json; do
        cmp -s "$1/$f" "$srcdir_abs/tests/ref/goldens/$f" || bad="$bad $f"
    done
    if [ -z "$bad" ]; then
        echo "PASS: tokenizer goldens regenerate identically"
    else
        echo "FAIL: regenerated tokenizer goldens differ from the committed ones:$bad"
    fi
}

# The vocabulary-only GGUF goldens (not committed): generated with pinned
# references, and everything else the generator writes must equal the
# committed goldens, so the committed ids apply to these files.
if [ -z "${LLAMAD_TOKENIZER_GGUFS:-}" ] && "$PYTHON" -c 'import gguf, tokenizers, sentencepiece' 2>/dev/null; then
    gold="$builddir_abs/tests/work/tokenizer-goldens"
    rm -rf "$gold"
    mkdir -p "$gold"
    if "$PYTHON" "$srcdir_abs/tests/ref/gen-tokenizer-goldens.py" --no-model --out "$gold" >/dev/null; then
        export LLAMAD_TOKENIZER_GGUFS="$gold"
        run_prog "ref/tokenizer-goldens-reproduced" goldens_reproduced "$gold"
    else
        echo "run-suite.sh: could not generate the tokenizer goldens" >&2
    fi
fi

for part in $parts; do
    case $part in
    ref)
        if "$PYTHON" -c 'import numpy, gguf' 2>/dev/null; then
            run_prog "ref/test_reference.py" "$PYTHON" "$srcdir_abs/tests/ref/test_reference.py" \
                "$builddir_abs/tests/tools/forward-dump" "$work/ref"
        else
            echo "== ref"; echo "SKIP: ref (skipped: numpy and gguf are not installed for $PYTHON)"
            skipped=$((skipped + 1))
        fi
        ;;
    unit)
        run_prog "unit/check-layering.sh" sh "$srcdir_abs/tests/check-layering.sh" "$srcdir_abs"
        for t in "$builddir_abs"/tests/unit/test_*; do
            [ -x "$t" ] && [ -f "$t" ] || continue
            case $t in *.c|*.h|*.o) continue;; esac
            run_prog "unit/$(basename "$t")" "$t"
        done
        # the attention benchmark's own check: every build this CPU runs
        # gives the plain build's bits (a prompt beside decodes, two threads)
        run_prog "unit/bench-attention" sh -c '"$1" --runs 1 --seqs 3 --tokens 5 --context 20 --heads 6 \
            --kv-heads 2 --block 7 --threads 2 && echo "PASS: bench-attention: every build gives the plain bits"' \
            sh "$builddir_abs/bench/bench-attention"
        ;;
    e2e)
        for t in "$srcdir_abs"/tests/e2e/test_*.sh; do
            [ -f "$t" ] || continue
            run_prog "e2e/$(basename "$t")" sh "$t"
        done
        for t in "$srcdir_abs"/tests/e2e/test_*.py; do
            [ -f "$t" ] || continue
            run_prog "e2e/$(basename "$t")" "$PYTHON" "$t"
        done
        ;;
    deploy)
        # the deployment files, rendered and validated offline (deploy/)
        for t in "$srcdir_abs"/tests/deploy/test_*.py; do
            [ -f "$t" ] || continue
            run_prog "deploy/$(basename "$t")" "$PYTHON" "$t"
        done
        # the CPU container image, built from Debian packages and run (about 2 minutes)
        run_prog "deploy/test_image.sh" sh "$srcdir_abs/tests/deploy/test_image.sh"
        ;;
    hostile)
        # the hostile-request battery alone (scripts/test runs it against the sanitizer build)
        run_prog "e2e/test_hostile.py" "$PYTHON" "$srcdir_abs/tests/e2e/test_hostile.py"
        ;;
    tsan)
        # the concurrency and health tests and two threaded unit tests against a
        # ThreadSanitizer build (scripts/test builds one in build-tsan/): THREATS.md R7
        tsan_log="$work/tsan"
        tsan_saved=${TSAN_OPTIONS:-}
        export TSAN_OPTIONS="log_path=$tsan_log second_deadlock_stack=1 $tsan_saved"
        run_prog "e2e/test_concurrency.py" "$PYTHON" "$srcdir_abs/tests/e2e/test_concurrency.py"
        run_prog "e2e/test_health.py" "$PYTHON" "$srcdir_abs/tests/e2e/test_health.py"
        # the pool's workers and the engine thread with thousands of short requests
        # (a request freed by the engine while its submitter still reads it), and
        # cancellation from another thread at every point of a request's life
        # (test_engine's other tests take minutes under ThreadSanitizer)
        for t in test_pool test_spec_dist "test_engine cancel_ends_requests_anywhere_exactly_once"; do
            p=${t%% *}
            if [ -x "$builddir_abs/tests/unit/$p" ]; then
                # shellcheck disable=SC2086
                run_prog "tsan/unit/$p" "$builddir_abs/tests/unit/"$t
            else
                run_prog "tsan/unit/$p" echo "FAIL: tests/unit/$p not built (make tests/unit/$p)"
            fi
        done
        export TSAN_OPTIONS="$tsan_saved"
        run_prog "tsan/reports" sh -c "
            n=\$(ls '$tsan_log'.* 2>/dev/null | wc -l)
            if [ \$n -eq 0 ]; then echo 'PASS: no ThreadSanitizer reports'
            else head -80 '$tsan_log'.*; echo \"FAIL: \$n ThreadSanitizer report file(s)\"; fi"
        ;;
    gpu)
        run_prog "gpu/test_run_all.sh" sh "$srcdir_abs/tests/gpu/test_run_all.sh"
        run_prog "gpu/run-all.sh" sh "$srcdir_abs/tests/gpu/run-all.sh" --from-suite
        ;;
    fuzz)
        found=0
        for t in "$builddir_abs"/tests/fuzz/fuzz_*; do
            [ -x "$t" ] && [ -f "$t" ] || continue
            case $t in *.c|*.h|*.o) continue;; esac
            found=1
            name=$(basename "$t")
            corpus="$work/corpus-$name"
            mkdir -p "$corpus"
            seeds=""
            case $name in
            fuzz_gguf|fuzz_safetensors) [ -d "${LLAMAD_BAD_MODELS:-}" ] && seeds="$LLAMAD_BAD_MODELS";;
            fuzz_grammar) seeds="$srcdir_abs/tests/fuzz/seeds-grammar";;
            esac
            dict="$srcdir_abs/tests/fuzz/$name.dict"
            [ -f "$dict" ] && seeds="-dict=$dict $seeds"
            run_prog "fuzz/$name" sh -c "cd '$work' && '$t' -max_total_time=$FUZZ_SECONDS -rss_limit_mb=2048 -timeout=10 -print_final_stats=0 '$corpus' $seeds >'$work/fuzz.log' 2>&1 && echo 'PASS: $name ($FUZZ_SECONDS s, no crash)' || { tail -40 '$work/fuzz.log'; echo 'FAIL: $name'; }"
        done
        [ $found -eq 1 ] || { echo "== fuzz"; echo "SKIP: fuzz (targets not built: configure --enable-fuzzers)"; skipped=$((skipped + 1)); }
        ;;
    *)
        echo "run-suite.sh: unknown part $part" >&2
        exit 2
        ;;
    esac
done

[ -n "$failures" ] && echo "failed:$failures"
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
