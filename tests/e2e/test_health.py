#!/usr/bin/env python3
"""test_health.py - health truthfulness and the systemd notify protocol.

shared/THREATS.md R9 and D4, with the engine's test fault hook
(LLAMAD_TEST_FAULT) and a datagram socket standing in for systemd
(NOTIFY_SOCKET, WATCHDOG_USEC):

- healthy: READY=1 once loaded, WATCHDOG=1 pings at half the interval,
  STOPPING=1 on SIGTERM, exit 0;
- a wedged engine thread (stall:N): /health and /health/ready turn 503
  "stalled" while work waits, /health/live stays 200, and the watchdog
  pings stop, so that systemd would restart the service;
- a sticky backend failure (fail:N): the request in flight gets an error,
  /health is 503, and the process exits 1 by itself.
"""

import json
import os
import socket
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402

R = H.Report("health")
H.skip_all_without_model(R, ["READY=1 once loaded"])

WATCHDOG_USEC = 1000000   # pings every 0.5 s


class Notify:
    """A NOTIFY_SOCKET that records what the daemon sends, with arrival times."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="llamad-notify.")
        self.path = os.path.join(self.dir, "notify")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.2)
        self.msgs = []
        self.stop = False
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self):
        while not self.stop:
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            for line in data.decode("utf-8", "replace").split("\n"):
                if line:
                    self.msgs.append((time.monotonic(), line))

    def env(self):
        e = dict(os.environ)
        e["NOTIFY_SOCKET"] = self.path
        e["WATCHDOG_USEC"] = str(WATCHDOG_USEC)
        e.pop("WATCHDOG_PID", None)
        return e

    def seen(self, what, since=0.0):
        return [t for t, m in self.msgs if m == what and t >= since]

    def close(self):
        self.stop = True
        self.t.join()
        self.sock.close()
        os.unlink(self.path)
        os.rmdir(self.dir)


def health(d, path="/health"):
    try:
        st, _, b = H.request(d, "GET", path, timeout=5)
        return st, b.decode("utf-8", "replace")
    except OSError as e:
        return None, str(e)


def background_request(d, stream=False):
    """Start a completion on a thread; returns (thread, result list)."""
    out = []

    def run():
        try:
            out.append(H.request(d, "POST", "/v1/completions",
                                 {"prompt": "Once upon a time", "max_tokens": 40,
                                  "temperature": 0, "stream": stream}, timeout=60))
        except OSError as e:
            out.append(e)
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, out


def healthy():
    n = Notify()
    try:
        d = H.Daemon(env=n.env()).start()
        time.sleep(2.0)
        R.check("READY=1 once loaded", len(n.seen("READY=1")) == 1, "got %r" % n.msgs[:10])
        t0 = time.monotonic()
        time.sleep(2.0)
        pings = n.seen("WATCHDOG=1", t0)
        R.check("WATCHDOG=1 pings while healthy", len(pings) >= 3, "%d pings in 2 s" % len(pings))
        t_term = time.monotonic()
        code = d.stop(timeout=20)
        stopping = n.seen("STOPPING=1")
        R.check("STOPPING=1 on SIGTERM, exit 0",
                code == 0 and stopping and stopping[0] - t_term < 2.0,
                "exit %r, STOPPING at %r" % (code, [s - t_term for s in stopping]))
    finally:
        n.close()


def stalled():
    n = Notify()
    env = n.env()
    env["LLAMAD_TEST_FAULT"] = "stall:3"
    try:
        d = H.Daemon(["--drain-timeout", "1"], env=env).start()
        st, _ = health(d)
        R.check("stall: healthy before the fault", st == 200, "status %r" % st)
        t, _ = background_request(d)
        t_req = time.monotonic()
        deadline = t_req + 25
        st, body = None, ""
        while time.monotonic() < deadline:
            st, body = health(d)
            if st == 503:
                break
            time.sleep(0.25)
        t_503 = time.monotonic() - t_req
        R.check("stall: /health turns 503 'stalled' within 2 heartbeats",
                st == 503 and "stalled" in body and t_503 < 15,
                "status %r after %.1f s: %s" % (st, t_503, body[:200]))
        st, _ = health(d, "/health/ready")
        R.check("stall: /health/ready is 503", st == 503, "status %r" % st)
        st, _ = health(d, "/health/live")
        R.check("stall: /health/live stays 200", st == 200, "status %r" % st)
        t0 = time.monotonic()
        time.sleep(2.0)
        pings = n.seen("WATCHDOG=1", t0)
        R.check("stall: watchdog pings stop", len(pings) == 0, "%d pings in 2 s" % len(pings))
        code = d.stop(timeout=20)
        R.check("stall: SIGTERM still ends the process", code is not None and code >= 0,
                "exit %r" % code)
        t.join(timeout=5)
    finally:
        n.close()


def failed():
    env = dict(os.environ)
    env["LLAMAD_TEST_FAULT"] = "fail:3"
    d = H.Daemon(env=env).start()
    t, out = background_request(d, stream=True)
    t.join(timeout=30)
    res = out[0] if out else None
    ok_err = False
    if isinstance(res, tuple):
        st, _, body = res
        # an error after the stream started is one error event, then the close (no [DONE])
        events = [e[len("data: "):] for e in body.decode().split("\n\n")
                  if e.startswith("data: ")]
        errs = [e for e in events if e.startswith("{") and "error" in json.loads(e)]
        ok_err = st == 200 and len(errs) == 1 and events[-1] == errs[0]
    R.check("fail: the stream in flight ends with one error event", ok_err, "got %r" % (res,)[-600:])
    code = None
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if d.proc.poll() is not None:
            code = d.proc.returncode
            break
        time.sleep(0.1)
    R.check("fail: the process exits 1 by itself",
            code == 1 and "the engine has failed" in d.log(),
            "exit %r, log:\n%s" % (code, d.log()[-1500:]))
    d.stop(timeout=5)


def main():
    healthy()
    stalled()
    failed()
    R.finish()


if __name__ == "__main__":
    main()
