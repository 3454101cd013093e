#!/bin/sh
# gpu-run.sh - copied by scripts/gpu-pack to .gpu/bin/run.sh: runs the packed
# GPU check on the GPU machine, from the tree's root.
#
#   sh .gpu/bin/run.sh   reassemble the model, run tests/gpu/run-all.sh
#
# The model's parts (.gpu/model-NN) are joined into $TMPDIR and checked
# against .gpu/bin/model.sha256; where any is missing or the sum differs,
# the tests run without the model (those that need it SKIP) and the run
# fails, unless LLAMAD_GPU_PARTS leaves out `cuda` (the only part that
# reads it: a rerun of the sanitizer or the benchmark needs one call).
# LD_LIBRARY_PATH gains the packed libraries that this machine's
# ldconfig does not know, and the folder of any CUDA library the programs
# cannot find.  The whole run is held to LLAMAD_GPU_BUDGET seconds (default
# 500, inside a device call of timeout_s 540).  Results go to $OUT/gpu-results (OUT default ./gpu-out);
# where they are more than 6 files they are also put into
# $OUT/gpu-results.tar.gz and only the summary stays beside it (the device
# tool brings back at most 8 files).  Exit status: run-all.sh's, or 1 when
# the model was missing.
R=$(cd "$(dirname "$0")/../.." && pwd)
P="$R/.gpu/bin"
OUT=${OUT:-$R/gpu-out}
cd "$R" || exit 1

parts=$(ls .gpu/model-* 2>/dev/null)
echo "run.sh: model parts here: $(echo "$parts" | tr '\n' ' ')"

rc_model=0
model="${TMPDIR:-/tmp}/llamad-gpu-model/model.gguf"
mkdir -p "$(dirname "$model")"
# shellcheck disable=SC2086
if [ -n "$parts" ] && cat $parts >"$model" &&
    (cd "$(dirname "$model")" && sha256sum -c --quiet "$P/model.sha256"); then
    export LLAMAD_TEST_MODEL="$model"
    echo "run.sh: model reassembled and checked ($model)"
elif case " ${LLAMAD_GPU_PARTS:-cuda} " in *" cuda "*) false ;; *) true ;; esac; then
    echo "run.sh: no model parts, and LLAMAD_GPU_PARTS ($LLAMAD_GPU_PARTS) does not need them"
    rm -f "$model"
else
    echo "FAIL: run.sh: the model's parts are missing or damaged (the machine went cold between calls?); running without it"
    rm -f "$model"
    export LLAMAD_TEST_MODEL="$R/.gpu/no-model.gguf"
    rc_model=1
fi

libs="${TMPDIR:-/tmp}/llamad-gpu-lib"
rm -rf "$libs"
mkdir -p "$libs"
for f in "$P"/lib/*; do
    [ -f "$f" ] || continue
    ldconfig -p | grep -q "^[[:space:]]*$(basename "$f") " || ln -s "$f" "$libs/"
done
LD_LIBRARY_PATH="$libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export LD_LIBRARY_PATH
for so in $(ldd "$P/tests/gpu/test_cuda" | awk '$3 == "not" { print $1 }'); do
    d=$(find /usr/local /opt /usr/lib -name "$so" 2>/dev/null | head -n 1)
    [ -n "$d" ] && LD_LIBRARY_PATH="$LD_LIBRARY_PATH:$(dirname "$d")"
done
echo "run.sh: packed libraries used: $(ls "$libs" | tr '\n' ' ')"
ldd "$P/tests/gpu/test_cuda" "$P/llamad" | grep 'not found' && echo "run.sh: some libraries are still missing"

mkdir -p "$R/.gpu" && cp "$P/tokenizer.json" "$R/.gpu/tokenizer.json"
res="$OUT/gpu-results"
LLAMAD_GPU_BUDGET=${LLAMAD_GPU_BUDGET:-500} LLAMAD_BUILDDIR="$P" LLAMAD_SRCDIR="$R" PYTHON=${PYTHON:-python3} sh "$R/tests/gpu/run-all.sh" --out "$res"
rc=$?
if [ "$(ls "$res" | wc -l)" -gt 6 ]; then
    tar -C "$OUT" -czf "$OUT/gpu-results.tar.gz" gpu-results &&
        find "$res" -type f ! -name summary.txt -delete
fi
[ "$rc_model" = 0 ] || echo "FAIL: run.sh: ran without the default model"
[ "$rc" -ne 0 ] && exit "$rc"
exit "$rc_model"
