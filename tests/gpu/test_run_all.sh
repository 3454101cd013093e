#!/bin/sh
# test_run_all.sh - tests/gpu/run-all.sh fails where it must, on stub build
# trees and a stub nvidia-smi, so that it runs without a GPU or a build:
# a failed build, a program missing after the build, a program past its
# time limit, one that prints no result line, and skips for want of a device
# where nvidia-smi finds one, and a pack from other sources all FAIL; plain
# skips without a device pass.
# Prints PASS/FAIL lines; exit status 1 on any failure.
S=${LLAMAD_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}
RUN="$S/tests/gpu/run-all.sh"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/llamad-runall.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM
rc=0
nodev="$tmp/nodev" dev="$tmp/dev"
mkdir -p "$nodev" "$dev"
printf '#!/bin/sh\nexit 9\n' >"$nodev/nvidia-smi"
cat >"$dev/nvidia-smi" <<'SMI'
#!/bin/sh
case "$1" in
-L) echo "GPU 0: Stub GPU (UUID: GPU-0)" ;;
--query-gpu=*) echo "Stub GPU, 1.0, 1024 MiB" ;;
*) echo "| Driver Version: 1.0   CUDA Version: 13.0 |" ;;
esac
SMI
chmod +x "$nodev/nvidia-smi" "$dev/nvidia-smi"

# tree NAME CUDA BODY: a stub build tree whose programs all run BODY (sh).
tree() {
    t="$tmp/$1"
    mkdir -p "$t"
    printf 'Makefile: ;\n%%: ;\n' >"$t/Makefile"
    [ "$2" = 1 ] && echo '#define HAVE_CUDA 1' >"$t/config.h"
    for p in $(sh "$RUN" --list); do
        mkdir -p "$t/$(dirname "$p")"
        printf '#!/bin/sh\n%s\n' "$3" >"$t/$p"
        chmod +x "$t/$p"
    done
    echo "$t"
}

# expect NAME STATUS PATHDIR TREE [GREP]: run-all.sh on TREE exits STATUS (0 or
# non-zero) and, where given, its summary holds GREP.
expect() {
    name=$1 want=$2 smi=$3 b=$4 pat=${5:-}
    PATH="$smi:$PATH" LLAMAD_BUILDDIR="$b" LLAMAD_GPU_PARTS=cuda LLAMAD_GPU_TIMEOUT=2 \
        sh "$RUN" --out "$tmp/out-$name" >"$tmp/log-$name" 2>&1
    got=$?
    ok=1
    if [ "$want" = 0 ] && [ "$got" -ne 0 ]; then ok=0; fi
    if [ "$want" != 0 ] && [ "$got" -eq 0 ]; then ok=0; fi
    if [ -n "$pat" ] && ! grep -q -e "$pat" "$tmp/out-$name/summary.txt" 2>/dev/null; then ok=0; fi
    if [ "$ok" = 1 ]; then
        echo "PASS: $name"
    else
        echo "FAIL: $name (exit status $got, wanted $want${pat:+, summary with \"$pat\"})"
        sed 's/^/  | /' "$tmp/log-$name"
        rc=1
    fi
}

# every program run-all.sh knows gets a stub; a clean run passes them all
n_progs=$(sh "$RUN" --list | grep -c "^tests/gpu/test_")
skip_body='echo "SKIP: t"; echo "  skip: skipped: no CUDA device (stub)"'
b=$(tree skips 1 "$skip_body")
expect skips_without_device_pass 0 "$nodev" "$b" "gpu: none"
expect skips_with_device_fail 1 "$dev" "$b" "skipped for want of a CUDA device"
b=$(tree nocuda 0 'echo "PASS: t"')
expect no_cuda_backend_with_device_fails 1 "$dev" "$b" "configured without the CUDA backend"
b=$(tree passes 1 'echo "PASS: t"')
expect passes_with_device_pass 0 "$dev" "$b" "passed $n_progs, failed 0, skipped 0"
b=$(tree broken 1 'echo "PASS: t"')
printf 'Makefile: ;\nFORCE: ;\n%%: FORCE\n\t@echo "stub: cannot build $@"; exit 1\n' >"$b/Makefile"
expect failed_build_fails 1 "$nodev" "$b" "FAIL: build"
grep -q "stub: cannot build" "$tmp/out-failed_build_fails/build.log" 2>/dev/null ||
    { echo "FAIL: failed_build_keeps_its_output"; rc=1; }
b=$(tree missing 1 'echo "PASS: t"')
rm "$b/tests/gpu/test_cuda"
expect missing_program_fails 1 "$nodev" "$b" "test_cuda is not built"
b=$(tree slow 1 'sleep 30; echo "PASS: t"')
expect timeout_fails 1 "$nodev" "$b" "timed out"
LLAMAD_GPU_BUDGET=15 expect budget_spent_fails 1 "$nodev" "$tmp/slow" "is spent"
b=$(tree silent 1 'exit 0')
expect no_result_line_fails 1 "$nodev" "$b" "printed no PASS"
b=$(tree crash 1 'echo "PASS: t"; exit 3')
expect exit_status_fails 1 "$nodev" "$b" "exit status 3"
b=$(tree packed 1 'echo "PASS: t"')
rm "$b/Makefile"
(cd "$S" && sha256sum Makefile.am) >"$b/sources.sha256"
expect pack_of_these_sources_runs 0 "$nodev" "$b" "passed $n_progs, failed 0"
echo "0000000000000000000000000000000000000000000000000000000000000000  Makefile.am" >"$b/sources.sha256"
expect stale_pack_fails 1 "$nodev" "$b" "built from other sources"
if [ -f "$tmp/out-stale_pack_fails/test_cuda.log" ]; then
    echo "FAIL: stale_pack_runs_nothing"; rc=1
else
    echo "PASS: stale_pack_runs_nothing"
fi
exit $rc
