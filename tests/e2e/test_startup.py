#!/usr/bin/env python3
"""test_startup.py - starting under hostile conditions, and the odd signals.

Issue 17, items 7 and 10: with too few file descriptors llamad says so and
exits 2 (it used to log "cannot listen" and crash in libuv); with a limit
that fits itself but not max-connections it serves fewer connections and
warns; --check-config refuses a directory, a key set twice, a NUL byte in
a value and a host that is not an address; SIGUSR1 logs a status line and
SIGUSR2 is ignored (both used to kill the daemon).
"""

import os
import resource
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402

R = H.Report("startup")
H.skip_all_without_model(R, ["descriptor limits", "signals", "check-config"])


def run(args, nofile=None, timeout=60):
    """llamad ARGS to completion: (exit status, output)."""
    def limit():
        resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))
    cmd = [H.llamad_bin(), "--model", H.model_path(), "--port", str(H.free_port())] + args
    try:
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout,
                           stdin=subprocess.DEVNULL, preexec_fn=limit if nofile else None)
    except subprocess.TimeoutExpired as ex:
        return None, (ex.stdout or b"").decode("utf-8", "replace")
    return p.returncode, p.stdout.decode("utf-8", "replace")


def descriptor_limits():
    for n in (4, 5, 7, 16, 55):
        rc, out = run([], nofile=n)
        R.check("descriptor limit %d: exit 2 naming the limit" % n,
                rc == 2 and "too few file descriptors (limit %d" % n in out,
                "exit %r, output:\n%s" % (rc, out[-800:]))
    # room for llamad itself but not for max-connections: it serves, fewer
    # (a limit of 100 leaves 100 - 48 = 52 connections)
    d = H.Daemon([])   # only for its port, with H.request
    port = H.free_port()
    log = tempfile.NamedTemporaryFile(prefix="llamad-fd.", delete=False)
    p = subprocess.Popen([H.llamad_bin(), "--model", H.model_path(), "--port", str(port)],
                         stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                         preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (100, 100)))
    d.port = port
    st = None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and p.poll() is None:
        try:
            st, _, _ = H.request(d, "GET", "/health/ready", timeout=2)
            if st == 200:
                break
        except OSError:
            pass
        time.sleep(0.1)
    p.send_signal(signal.SIGTERM)
    try:
        rc = p.wait(timeout=20)
    except subprocess.TimeoutExpired:
        p.kill()
        rc = p.wait()
    with open(log.name, "rb") as f:
        out = f.read().decode("utf-8", "replace")
    os.unlink(log.name)
    R.check("descriptor limit 100: serves, warns that it lowered max-connections, exits 0",
            st == 200 and rc == 0 and "serving at most 52 connections" in out,
            "status %r, exit %r, log:\n%s" % (st, rc, out[-800:]))


def signals():
    with H.Daemon([]) as d:
        os.kill(d.pid, signal.SIGUSR1)
        deadline = time.monotonic() + 10
        while "status: " not in d.log() and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(d.pid, signal.SIGUSR2)
        time.sleep(0.3)
        st, _, _ = H.request(d, "GET", "/health")
        R.check("SIGUSR1 logs a status line, SIGUSR2 is ignored, the daemon serves on",
                d.alive() and st == 200 and "status: ok" in d.log() and "KV blocks" in d.log(),
                "alive %r, /health %r, log:\n%s" % (d.alive(), st, d.log()[-800:]))


def check_config():
    tmp = tempfile.mkdtemp(prefix="llamad-conf.")
    files = {
        "a key set twice": (b"[server]\nport = 8100\n[server]\nport = 8200\n", "second time"),
        "a NUL byte in a value": (b"[server]\nhost = 127.0.0.1\x00.9\n", "NUL"),
        "host = localhost": (b"[server]\nhost = localhost\n", "numeric"),
    }
    for name, (text, what) in files.items():
        path = os.path.join(tmp, "c%d.conf" % len(os.listdir(tmp)))
        with open(path, "wb") as f:
            f.write(text)
        rc, out = run(["--config", path, "--check-config"])
        R.check("--check-config refuses %s (exit 2)" % name, rc == 2 and what in out,
                "exit %r, output:\n%s" % (rc, out[-600:]))
        os.unlink(path)
    rc, out = run(["--config", tmp, "--check-config"])
    R.check("--check-config refuses a directory (exit 2)", rc == 2 and "not a regular file" in out,
            "exit %r, output:\n%s" % (rc, out[-600:]))
    os.rmdir(tmp)


def main():
    descriptor_limits()
    signals()
    check_config()
    R.finish()


if __name__ == "__main__":
    main()
