# The CPU container image, built and run: scripts/build-image makes it from
# Debian packages (mmdebstrap) and this llamad; it is started with the
# default model mounted read-only and an API key file, and must answer
# /health/ready and one completion, run llamad as uid 10001 on a read-only
# root file system, and on SIGTERM (podman stop) finish a stream in flight
# and exit 0.  Runs the image under podman, or where podman cannot run a
# container here, its root file system under unshare + chroot; the output
# says which (LLAMAD_IMAGE_RUNNER=chroot forces the second).  Everything is built under $LLAMAD_BUILDDIR/tests/deploy/image
# and removed at the end.
. "$LLAMAD_SRCDIR/tests/e2e/lib.sh"

NAME="container image"
if [ "$(id -u)" != 0 ]; then
    skip "$NAME (needs root for mmdebstrap and podman; run as root)"; exit 0
fi
if ! have_model; then
    skip "$NAME (no model at $TEST_MODEL: run scripts/fetch-model)"; exit 0
fi
if ldd "$LLAMAD_BIN" | grep -q -E 'libcudart|libcublas'; then
    skip "$NAME ($LLAMAD_BIN is built with CUDA; the CPU image takes a --with-cuda=no build)"; exit 0
fi
missing=""
for p in mmdebstrap podman runc; do
    command -v $p >/dev/null 2>&1 || missing="$missing $p"
done
if [ -n "$missing" ] && [ "${LLAMAD_SKIP_APT:-0}" != 1 ]; then
    echo "installing$missing" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null 2>&1 ||
        { apt-get update -qq >/dev/null 2>&1 &&
          DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null 2>&1; }
fi
if ! command -v mmdebstrap >/dev/null 2>&1; then
    skip "$NAME (mmdebstrap cannot be installed: no Debian mirror reachable?)"; exit 0
fi

dir="$LLAMAD_BUILDDIR/tests/deploy/image"
rm -rf "$dir"
mkdir -p "$dir"
t0=$(date +%s)
noimport=""
[ "${LLAMAD_IMAGE_RUNNER:-}" = chroot ] && noimport=--no-import
sh "$LLAMAD_SRCDIR/scripts/build-image" --out "$dir" --tag localhost/llamad-test:cpu $noimport >"$dir/build.log" 2>&1
rc=$?
[ $rc = 0 ] && [ -n "$noimport" ] && rc=2
if [ $rc = 1 ] && grep -q 'mmdebstrap failed' "$dir/build.log" && ! curl -s -o /dev/null -m 10 http://deb.debian.org/; then
    skip "$NAME (deb.debian.org is not reachable: no network)"; rm -rf "$dir"; exit 0
fi
if [ $rc = 0 ]; then
    runner=podman
elif [ $rc = 2 ]; then
    runner=chroot
else
    fail "$NAME: scripts/build-image" "$(tail -5 "$dir/build.log")"; rm -rf "$dir"; exit 1
fi
pass "$NAME: scripts/build-image in $(( $(date +%s) - t0 )) s, root file system $(du -m "$dir/rootfs.tar" | cut -f1) MiB"
why="podman cannot run a container here"
[ -n "$noimport" ] && why="LLAMAD_IMAGE_RUNNER=chroot"
echo "runner: $runner$( [ $runner = chroot ] && echo " (unshare + chroot: $why)")"

# on any exit: no container or namespace left running, nothing left in $dir
image_cleanup() {
    if [ "$runner" = podman ]; then
        "$dir/podman" rm -f "$CTR" >/dev/null 2>&1
    elif [ -n "$UPID" ]; then
        kill -KILL "$UPID" 2>/dev/null
    fi
    rm -rf "$dir"
}
trap 'image_cleanup; cleanup' EXIT
trap 'image_cleanup; cleanup; exit 1' INT TERM

KEY="sk-image-test-$$"
printf '%s\n' "$KEY" >"$dir/keys"
chmod 0644 "$dir/keys"
PORT=$(free_port)
CTR="llamad-test-$$"
UPID=""

# start, pid_of_llamad, write_probe, stop: one of each per runner.
if [ $runner = podman ]; then
    P="$dir/podman"
    start() {
        # --read-only-tmpfs=false: not even /tmp or /run is writable
        "$P" run -d --name "$CTR" --read-only --read-only-tmpfs=false \
            --ulimit nofile=1072:1072 --ulimit nproc=4096:4096 \
            --cap-drop=ALL --security-opt no-new-privileges \
            -v "$TEST_MODEL:/models/model.gguf:ro" \
            -v "$dir/keys:/run/secrets/llamad_api_keys:ro" \
            -p "127.0.0.1:$PORT:8080" localhost/llamad-test:cpu >"$dir/run.log" 2>&1
    }
    pid_of_llamad() { "$P" inspect --format '{{.State.Pid}}' "$CTR"; }
    write_probe() { "$P" exec "$CTR" sh -c 'echo x > /probe' 2>&1; }
    stop() { "$P" stop -t 30 "$CTR" >/dev/null 2>&1; "$P" inspect --format '{{.State.ExitCode}}' "$CTR" >"$dir/status"; }
    finish() { "$P" logs "$CTR" >"$dir/llamad.log" 2>&1; "$P" rm -f "$CTR" >/dev/null 2>&1; }
else
    root="$dir/root"
    mkdir -p "$root"
    tar -C "$root" -xf "$dir/rootfs.tar"
    start() {
        # a private mount and pid namespace: the root bound read-only, the
        # model and keys bound read-only over it, llamad as uid 10001
        unshare --mount --pid --fork --kill-child sh -c '
            set -e
            mount --bind "$1" "$1"
            mount -t proc proc "$1/proc"
            mkdir -p "$1/models" "$1/run/secrets"
            touch "$1/models/model.gguf" "$1/run/secrets/llamad_api_keys"
            mount --bind -o ro "$2" "$1/models/model.gguf"
            mount --bind -o ro "$3" "$1/run/secrets/llamad_api_keys"
            mount -o remount,bind,ro "$1"
            exec chroot --userspec=10001:10001 "$1" /usr/local/bin/llamad-entrypoint \
                --model /models/model.gguf --host 127.0.0.1 --port "$4"' \
            sh "$root" "$TEST_MODEL" "$dir/keys" "$PORT" >"$dir/llamad.log" 2>&1 &
        UPID=$!
    }
    pid_of_llamad() { pgrep -P "$UPID" | head -1; }
    write_probe() { nsenter -t "$(pid_of_llamad)" -m chroot --userspec=10001:10001 "$root" sh -c 'echo x > /probe' 2>&1; }
    # not in a subshell: only this shell can wait for its child
    stop() { kill -TERM "$(pid_of_llamad)"; wait "$UPID"; echo $? >"$dir/status"; UPID=""; }
    finish() { :; }
fi

if ! start; then
    fail "$NAME: start ($runner)" "$(cat "$dir/run.log")"; rm -rf "$dir"; exit 1
fi
ready=0
i=0
while [ $i -lt 240 ]; do
    code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/health/ready" 2>/dev/null)
    [ "$code" = 200 ] && { ready=1; break; }
    [ $runner = chroot ] && ! kill -0 "$UPID" 2>/dev/null && break
    sleep 0.5; i=$((i + 1))
done
if [ $ready = 1 ]; then pass "$NAME: /health/ready answers 200 ($runner)"
else fail "$NAME: /health/ready answers 200 ($runner)" "last status $code"; fi

body='{"prompt":"The capital of France is","max_tokens":8,"temperature":0}'
code=$(curl -s -o "$dir/completion.json" -w '%{http_code}' -H "Authorization: Bearer $KEY" \
    -H 'Content-Type: application/json' -d "$body" "http://127.0.0.1:$PORT/v1/completions")
if [ "$code" = 200 ] && "$PYTHON" -c 'import json,sys; t=json.load(open(sys.argv[1]))["choices"][0]["text"]; sys.exit(0 if t else 1)' "$dir/completion.json"; then
    pass "$NAME: a completion with the mounted API key"
else
    fail "$NAME: a completion with the mounted API key" "status $code: $(head -c 300 "$dir/completion.json")"
fi
code=$(curl -s -o /dev/null -w '%{http_code}' -H 'Content-Type: application/json' -d "$body" \
    "http://127.0.0.1:$PORT/v1/completions")
check "$NAME: without the key: 401" [ "$code" = 401 ]

pid=$(pid_of_llamad)
uid=$(awk '/^Uid:/ {print $2}' "/proc/$pid/status" 2>/dev/null)
comm=$(cat "/proc/$pid/comm" 2>/dev/null)
if [ "$comm" = llamad ] && [ "$uid" = 10001 ]; then pass "$NAME: llamad runs as uid 10001"
else fail "$NAME: llamad runs as uid 10001" "pid $pid: comm '$comm', uid '$uid'"; fi

msg=$(write_probe); rc=$?
case "$rc:$msg" in
    0:*) fail "$NAME: the root file system is read-only" "a write to /probe succeeded" ;;
    *Read-only*) pass "$NAME: the root file system is read-only (a write to / fails)" ;;
    *) fail "$NAME: the root file system is read-only" "the write failed otherwise: $msg" ;;
esac

# SIGTERM while a stream is in flight: the stream ends with [DONE], exit 0.
sbody='{"prompt":"Once upon a time","max_tokens":48,"temperature":0,"stream":true,"ignore_eos":true}'
curl -s -N -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' -d "$sbody" \
    "http://127.0.0.1:$PORT/v1/completions" >"$dir/stream.txt" 2>&1 &
cpid=$!
i=0
while [ $i -lt 100 ] && ! grep -q '^data: {' "$dir/stream.txt" 2>/dev/null; do sleep 0.1; i=$((i + 1)); done
t1=$(date +%s)
stop
status=$(cat "$dir/status" 2>/dev/null)
wait "$cpid"
if [ "$status" = 0 ]; then pass "$NAME: SIGTERM drains and llamad exits 0 ($(( $(date +%s) - t1 )) s)"
else fail "$NAME: SIGTERM drains and llamad exits 0" "exit status $status"; fi
if tail -3 "$dir/stream.txt" | grep -q '^data: \[DONE\]'; then
    pass "$NAME: the stream in flight at SIGTERM completes with [DONE]"
else
    fail "$NAME: the stream in flight at SIGTERM completes with [DONE]" "$(tail -c 300 "$dir/stream.txt")"
fi
finish
grep -q -i 'drain' "$dir/llamad.log" || echo "note: llamad's log does not mention draining" >&2
echo "total: $(( $(date +%s) - t0 )) s"
rm -rf "$dir"
