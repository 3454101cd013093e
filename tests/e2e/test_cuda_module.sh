# The CUDA backend as a module (engine/backend_module.h): in a CUDA build,
# llamad links no CUDA library, llamad-cuda.so does and exports the entry
# point; llamad opens it for backend = auto (serving on the CPU, with the
# reason logged, where no device is present) and refuses a corrupt module
# file: backend = auto logs why and serves on the CPU, backend = cuda fails.
. "$LLAMAD_SRCDIR/tests/e2e/lib.sh"

BUILDDIR=${LLAMAD_BUILDDIR:-.}
MODULE="$BUILDDIR/llamad-cuda.so"

if ! grep -q '^#define HAVE_CUDA 1' "$BUILDDIR/config.h" 2>/dev/null; then
    skip "cuda module (built without CUDA)"
    exit 0
fi
if ! command -v readelf >/dev/null 2>&1; then
    skip "cuda module (readelf, from binutils, is not installed)"
    exit 0
fi

# wait_ready: /health turns 200 once the model is loaded (and the backend chosen)
wait_ready() {
    i=0
    while [ $i -lt 300 ]; do
        [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/health")" = 200 ] && return 0
        sleep 0.1
        i=$((i + 1))
    done
    return 1
}

needed() { readelf -d "$1" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'; }

if needed "$LLAMAD_BIN" | grep -q '^libcu'; then
    fail "cuda_module/llamad_links_no_cuda" "llamad NEEDs: $(needed "$LLAMAD_BIN" | tr '\n' ' ')"
else
    pass "cuda_module/llamad_links_no_cuda"
fi
# the other side, so that the check above can tell a module build from none
if [ -f "$MODULE" ] && needed "$MODULE" | grep -q '^libcudart' &&
   readelf --dyn-syms -W "$MODULE" | grep -q ' llamad_backend_module$'; then
    pass "cuda_module/module_links_cuda_and_exports_entry"
else
    fail "cuda_module/module_links_cuda_and_exports_entry" "$MODULE: missing, or no libcudart or entry point"
fi

if ! have_model; then
    skip "cuda_module/serving (the default model is not fetched)"
    exit 0
fi

# a corrupt module: auto serves on the CPU and says why; cuda stops at start
mkdir -p "$E2E_TMP/bad"
head -c 4096 /dev/zero | tr '\0' 'x' >"$E2E_TMP/bad/llamad-cuda.so"
if start_llamad --backend auto --threads 1 --backend-dir "$E2E_TMP/bad" && wait_ready &&
   curl -s "http://127.0.0.1:$PORT/health" | grep -q '"backend":"cpu"' &&
   grep -q 'CUDA is built in but not used: the CUDA module does not load: .*not an ELF file' "$E2E_TMP/llamad.log"; then
    pass "cuda_module/auto_corrupt_serves_cpu"
else
    fail "cuda_module/auto_corrupt_serves_cpu" "$(cat "$E2E_TMP/llamad.log")"
fi
[ -n "$LLAMAD_PID" ] && stop_llamad
if LLAMAD_BACKEND_DIR="$E2E_TMP/bad" timeout 30 "$LLAMAD_BIN" --model "$TEST_MODEL" --port "$(free_port)" \
        --backend cuda >"$E2E_TMP/cuda.log" 2>&1; then
    fail "cuda_module/cuda_corrupt_fails" "llamad started: $(cat "$E2E_TMP/cuda.log")"
elif grep -q 'cuda was asked for but the CUDA module does not load: .*not an ELF file' "$E2E_TMP/cuda.log"; then
    pass "cuda_module/cuda_corrupt_fails"
else
    fail "cuda_module/cuda_corrupt_fails" "$(cat "$E2E_TMP/cuda.log")"
fi

# the real module with another build's id (same length, patched in place): refused by name
id=$(sed -n 's/^#define LLAMAD_BUILD_ID "\(.*\)"$/\1/p' "$BUILDDIR/config.h")
mkdir -p "$E2E_TMP/other"
if [ -n "$id" ] && "$PYTHON" - "$MODULE" "$E2E_TMP/other/llamad-cuda.so" "$id" <<'PY'
import sys
data = open(sys.argv[1], "rb").read()
old = sys.argv[3].encode() + b"\0"
assert data.count(old) == 1, "build id not found once in the module"
other = bytes(c if i < len(old) - 2 else (c + 1 - 48) % 10 + 48 for i, c in enumerate(old[:-1])) + b"\0"
open(sys.argv[2], "wb").write(data.replace(old, other))
PY
then
    LLAMAD_BACKEND_DIR="$E2E_TMP/other" timeout 30 "$LLAMAD_BIN" --model "$TEST_MODEL" --port "$(free_port)" \
        --backend cuda >"$E2E_TMP/other.log" 2>&1
    if grep -q 'built by another llamad build' "$E2E_TMP/other.log"; then
        pass "cuda_module/other_build_refused"
    else
        fail "cuda_module/other_build_refused" "$(cat "$E2E_TMP/other.log")"
    fi
else
    fail "cuda_module/other_build_refused" "could not make a module with another build id"
fi

# the real module: it loads and probes; on a machine without a device the log says why
if start_llamad --backend auto --threads 1 --backend-dir "$BUILDDIR" && wait_ready &&
   grep -q "backend module .*llamad-cuda.so loaded" "$E2E_TMP/llamad.log" &&
   grep -q 'backend cuda (auto)\|backend cpu (auto): CUDA is built in but not used: no CUDA device' "$E2E_TMP/llamad.log"; then
    pass "cuda_module/module_loads_and_probes"
    # serving on the CPU after the probe, the module is closed and no CUDA library stays mapped
    if grep -q 'backend cpu (auto)' "$E2E_TMP/llamad.log"; then
        if grep -q 'libcu' "/proc/$LLAMAD_PID/maps"; then
            fail "cuda_module/cpu_maps_no_cuda" "$(grep libcu "/proc/$LLAMAD_PID/maps" | head -3)"
        else
            pass "cuda_module/cpu_maps_no_cuda"
        fi
    fi
else
    fail "cuda_module/module_loads_and_probes" "$(cat "$E2E_TMP/llamad.log")"
fi
[ -n "$LLAMAD_PID" ] && stop_llamad
exit 0
