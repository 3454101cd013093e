# lib.sh - helpers for the shell end-to-end tests (sourced, not run).
#
# start_llamad ARGS...: start $LLAMAD_BIN on a free loopback port, wait until
# /health answers, set LLAMAD_PID and PORT.  The daemon is stopped on exit,
# whatever the outcome.  pass/fail/skip print the lines run-suite.sh counts.

LLAMAD_BIN=${LLAMAD_BIN:-./llamad}
# The default model (fetched by scripts/fetch-model); the daemon needs it.
TEST_MODEL=${LLAMAD_TEST_MODEL:-${LLAMAD_SRCDIR:-.}/models/SmolLM2-135M-Instruct.Q4_1.gguf}
PYTHON=${PYTHON:-python3}
E2E_TMP=$(mktemp -d "${TMPDIR:-/tmp}/llamad-e2e.XXXXXX")
LLAMAD_PID=""

cleanup() {
    if [ -n "$LLAMAD_PID" ] && kill -0 "$LLAMAD_PID" 2>/dev/null; then
        kill -TERM "$LLAMAD_PID" 2>/dev/null
        sleep 0.5
        kill -KILL "$LLAMAD_PID" 2>/dev/null
    fi
    rm -rf "$E2E_TMP"
}
trap cleanup EXIT INT TERM

pass() { echo "PASS: $1"; }
fail() { echo "FAIL: $1"; shift; [ $# -gt 0 ] && echo "  $*"; }
skip() { echo "SKIP: $1"; }

# check NAME CMD...: PASS when CMD succeeds.
check() {
    name=$1; shift
    if "$@"; then pass "$name"; else fail "$name"; fi
}

free_port() {
    "$PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# have_model: true when the default model is present (tests that need the
# daemon print SKIP otherwise: a tarball or a checkout without the model).
have_model() { [ -f "$TEST_MODEL" ]; }

start_llamad() {
    PORT=$(free_port)
    "$LLAMAD_BIN" --port "$PORT" --model "$TEST_MODEL" "$@" >"$E2E_TMP/llamad.log" 2>&1 &
    LLAMAD_PID=$!
    i=0
    while [ $i -lt 600 ]; do
        if curl -s -o /dev/null "http://127.0.0.1:$PORT/health/live" 2>/dev/null; then
            return 0
        fi
        kill -0 "$LLAMAD_PID" 2>/dev/null || { cat "$E2E_TMP/llamad.log"; return 1; }
        sleep 0.1
        i=$((i + 1))
    done
    cat "$E2E_TMP/llamad.log"
    return 1
}

stop_llamad() {
    kill -TERM "$LLAMAD_PID"
    wait "$LLAMAD_PID"
    rc=$?
    LLAMAD_PID=""
    return $rc
}
