#!/usr/bin/env python3
"""test_nginx.py - three llamad replicas behind nginx, one drained and one
killed under 48 streaming clients.

nginx runs conf/nginx/llamad.conf as shipped: the test changes only the
replicas' addresses, the listen port and the log path, and wraps the file
in a minimal main configuration (pid file, error log, temp paths).  All on
127.0.0.1.

48 client threads send streaming chat completions in a loop.  Replica A
gets SIGTERM (drain), then replica B gets SIGKILL.  Each answer names its
replica in nginx's X-Llamad-Replica header.  Checked:
- every stream A accepted ends with data: [DONE];
- every stream in flight on B ends within KILL_BOUND s of the kill with an
  error the client sees (a cut chunked body), never a hang;
- A refuses new connections within TERM_TO_KILL_S of its SIGTERM (what
  lets nginx pass new requests on without sending them a byte);
- every request started after the kill succeeds (200 and [DONE]) on a
  surviving replica, where a 503 with Retry-After (from the draining A)
  is retried by the client after Retry-After, as the OpenAI SDKs do;
- every 503 a client saw carried Retry-After;
- A's and C's /metrics count exactly the attempts the clients saw them
  answer, and B's count taken just before the kill lies between the B
  streams completed by then and all B attempts;
- requests with one X-Session-ID all land on one replica.

Needs Debian's nginx (scripts/setup installs it); SKIPs without it.
"""

import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402

R = H.Report("nginx")
NAMES = ["replicas and nginx start", "draining replica completes its streams",
         "killed replica's streams end with an error", "requests after the kill succeed",
         "503 carries Retry-After", "metrics add up", "session affinity",
         "draining replica refuses new connections"]
H.skip_all_without_model(R, NAMES)

CLIENTS = 48
MAX_TOKENS = 12
WARM_S = 4.0        # load before the SIGTERM
TERM_TO_KILL_S = 1.5
AFTER_KILL_S = 6.0  # clients keep starting requests this long after the kill
KILL_BOUND = 5.0    # a stream on the killed replica must end within this
READ_TIMEOUT = 30.0  # a client read that takes longer is a hang
MAX_ATTEMPTS = 4
ROUTE = "/v1/chat/completions"


def find_nginx():
    for p in (shutil.which("nginx"), "/usr/sbin/nginx"):
        if p and os.access(p, os.X_OK):
            return p
    return None


def nginx_config(tmp, ports, listen):
    """The shipped file with the addresses, listen port and log path
    replaced, inside a minimal main configuration.  Returns its path."""
    src = os.path.join(H.SRCDIR, "conf", "nginx", "llamad.conf")
    with open(src) as f:
        text = f.read()
    servers = iter([])

    def server_line(m):
        return "server 127.0.0.1:%d%s" % (next(servers), m.group(1))

    out = []
    for block in re.split(r"(?=^upstream )", text, flags=re.M):
        servers = iter(ports)
        out.append(re.sub(r"server 127\.0\.0\.1:\d+( [^;]*;)", server_line, block))
    text = "".join(out)
    if text.count("server 127.0.0.1:") != 2 * len(ports):
        raise RuntimeError("the shipped config no longer has %d servers per upstream" % len(ports))
    text = re.sub(r"listen 8080;", "listen 127.0.0.1:%d;" % listen, text)
    text = text.replace("/var/log/nginx/llamad-access.log", os.path.join(tmp, "access.log"))
    with open(os.path.join(tmp, "llamad.conf"), "w") as f:
        f.write(text)
    main = """daemon off;
master_process on;
worker_processes 1;
pid %(t)s/nginx.pid;
error_log %(t)s/error.log warn;
events { worker_connections 1024; }
http {
    client_body_temp_path %(t)s/body;
    proxy_temp_path %(t)s/proxy;
    fastcgi_temp_path %(t)s/fastcgi;
    uwsgi_temp_path %(t)s/uwsgi;
    scgi_temp_path %(t)s/scgi;
    include %(t)s/llamad.conf;
}
""" % {"t": tmp}
    path = os.path.join(tmp, "nginx.conf")
    with open(path, "w") as f:
        f.write(main)
    return path


class Endpoint:
    """nginx's listen port, where harness.request wants a Daemon."""

    def __init__(self, port):
        self.port = port


# ---------------------------------------------------------------- one client request

def attempt(port, seed, session=None):
    """One HTTP attempt through nginx.  Returns a dict: t0, t1, status,
    replica, retry_after, done (saw [DONE] and a clean end), error."""
    rec = {"t0": time.monotonic(), "t1": None, "status": None, "replica": None,
           "retry_after": None, "done": False, "error": None, "headers_at": None}
    body = json.dumps({"messages": [{"role": "user", "content": "Count: %d" % seed}],
                       "max_tokens": MAX_TOKENS, "temperature": 0.7, "seed": seed,
                       "stream": True})
    hdrs = {"Content-Type": "application/json"}
    if session:
        hdrs["X-Session-ID"] = session
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=READ_TIMEOUT)
    try:
        c.request("POST", ROUTE, body=body, headers=hdrs)
        r = c.getresponse()
        rec["headers_at"] = time.monotonic()
        rec["status"] = r.status
        rec["replica"] = r.getheader("X-Llamad-Replica")
        rec["retry_after"] = r.getheader("Retry-After")
        if r.status != 200:
            r.read()
        else:
            seen_done = False
            while True:
                line = r.readline()
                if not line:
                    break
                if line.strip() == b"data: [DONE]":
                    seen_done = True
            rec["done"] = seen_done
            if not seen_done:
                rec["error"] = "stream ended without [DONE]"
    except (OSError, http.client.HTTPException) as ex:
        rec["error"] = "%s: %s" % (type(ex).__name__, ex)
    finally:
        c.close()
        rec["t1"] = time.monotonic()
    return rec


def logical_request(port, seed):
    """Attempts until a success or an answer that is not 503/429 with
    Retry-After (which the client retries after the given delay, capped)."""
    tries = []
    for _ in range(MAX_ATTEMPTS):
        rec = attempt(port, seed)
        tries.append(rec)
        if rec["status"] in (429, 503) and rec["retry_after"]:
            try:
                time.sleep(min(float(rec["retry_after"]), 2.0))
            except ValueError:
                break
            continue
        break
    return tries


# ---------------------------------------------------------------- the run

def route_count(m, code=None):
    """llamad_requests_total for ROUTE (all codes, or one)."""
    n = 0.0
    for k, v in m.items():
        if k.startswith("llamad_requests_total{") and ('route="%s"' % ROUTE) in k:
            if code is None or ('code="%d"' % code) in k:
                n += v
    return n


def main():
    nginx = find_nginx()
    if nginx is None:
        for n in NAMES:
            R.skip(n, "nginx is not installed (Debian package nginx; scripts/setup installs it)")
        return
    tmp = tempfile.mkdtemp(prefix="llamad-nginx.")
    H._tmpdirs.append(tmp)
    args = ["--max-seqs", "8", "--kv-memory", "32M", "--threads", "1", "--drain-timeout", "30"]
    reps = [H.Daemon(args) for _ in range(3)]
    t_start = time.monotonic()
    try:
        errs = []

        def start(d):
            try:
                d.start()
            except H.DaemonError as ex:
                errs.append(str(ex))

        starters = [threading.Thread(target=start, args=(d,)) for d in reps]
        for t in starters:
            t.start()
        for t in starters:
            t.join()
        if errs:
            raise RuntimeError(errs[0])
        listen = H.free_port()
        conf = nginx_config(tmp, [d.port for d in reps], listen)
        ng = subprocess.Popen([nginx, "-p", tmp, "-c", conf], stdout=subprocess.DEVNULL,
                              stderr=open(os.path.join(tmp, "nginx.stderr"), "wb"))
        _nginx.append(ng)
        ok = False
        for _ in range(100):
            if ng.poll() is not None:
                break
            try:
                st, _, _ = H.request(Endpoint(listen), "GET", "/health/ready", timeout=2)
                ok = st == 200
                if ok:
                    break
            except OSError:
                pass
            time.sleep(0.1)
        if not ok:
            with open(os.path.join(tmp, "nginx.stderr"), "rb") as f:
                err = f.read().decode("utf-8", "replace")
            R.fail(NAMES[0], "nginx did not answer /health/ready: " + err[-2000:])
            return
    except (H.DaemonError, RuntimeError, OSError) as ex:
        R.fail(NAMES[0], str(ex))
        return
    R.ok(NAMES[0])
    addr = {"127.0.0.1:%d" % d.port: name for d, name in zip(reps, "ABC")}
    a, b, c = reps

    session_case(listen)
    before = {name: H.metrics(d) for d, name in zip(reps, "ABC")}

    stop = threading.Event()
    logs = [[] for _ in range(CLIENTS)]

    def client(i):
        n = 0
        while not stop.is_set():
            logs[i].append(logical_request(listen, 1000 * i + n))
            n += 1

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(CLIENTS)]
    for t in threads:
        t.start()
    time.sleep(WARM_S)
    scraped = {}    # replica: (time before, its /metrics, time after)

    def scrape(name, d):
        t = time.monotonic()
        scraped[name] = (t, H.metrics(d), time.monotonic())

    scrape("A", a)
    t_term = time.monotonic()
    a.proc.send_signal(signal.SIGTERM)
    refused = None
    while refused is None and time.monotonic() < t_term + TERM_TO_KILL_S:
        time.sleep(0.1)
        try:
            socket.create_connection(("127.0.0.1", a.port), timeout=1).close()
        except ConnectionRefusedError:
            refused = time.monotonic() - t_term
        except OSError:
            pass
    time.sleep(max(0.0, t_term + TERM_TO_KILL_S - time.monotonic()))
    scrape("B", b)
    b.proc.send_signal(signal.SIGKILL)
    t_kill = time.monotonic()
    time.sleep(AFTER_KILL_S)
    stop.set()
    for t in threads:
        t.join(READ_TIMEOUT + 10)
    hung = sum(t.is_alive() for t in threads)
    a_rc = a.stop(timeout=35)
    b.stop(timeout=5)

    tries = [rec for log in logs for lr in log for rec in lr]
    for rec in tries:
        first = (rec["replica"] or "").split(",")[-1].strip()
        rec["rep"] = addr.get(first, "?")

    # the draining replica: every stream it accepted ends with [DONE]
    a_ok = [r for r in tries if r["rep"] == "A" and r["status"] == 200]
    bad = [r for r in a_ok if not r["done"]]
    R.check(NAMES[1], a_ok and not bad and a_rc == 0,
            "%d streams on A, %d without [DONE] (%r); A exited %r"
            % (len(a_ok), len(bad), bad[:1], a_rc))

    R.check(NAMES[7], refused is not None,
            "a new connection to A was still accepted %.1f s after its SIGTERM" % TERM_TO_KILL_S)

    # the killed replica: streams in flight end with an error, promptly
    b_cut = [r for r in tries if r["rep"] == "B" and r["t0"] < t_kill and r["t1"] >= t_kill
             and not r["done"]]
    slow = [r for r in b_cut if r["t1"] - t_kill > KILL_BOUND]
    silent = [r for r in b_cut if r["status"] == 200 and r["error"] is None]
    R.check(NAMES[2], b_cut and not slow and not silent and hung == 0,
            "%d streams cut on B, %d ended later than %.0f s after the kill, %d without an "
            "error, %d client threads hung" % (len(b_cut), len(slow), KILL_BOUND, len(silent),
                                              hung))

    # after the kill: every logical request succeeds on a survivor
    after = [lr for log in logs for lr in log if lr[0]["t0"] > t_kill]
    failed = [lr[-1] for lr in after if not (lr[-1]["status"] == 200 and lr[-1]["done"]
                                             and lr[-1]["rep"] in ("A", "C"))]
    retried = sum(len(lr) - 1 for lr in after)
    R.check(NAMES[3], after and not failed,
            "%d requests after the kill (%d retries after 503/429), %d failed: %r"
            % (len(after), retried, len(failed), failed[:2]))
    print("  %d attempts: A %d, B %d, C %d; %d requests after the kill, %d of them retried; "
          "status counts %r"
          % (len(tries), sum(r["rep"] == "A" for r in tries), sum(r["rep"] == "B" for r in tries),
             sum(r["rep"] == "C" for r in tries), len(after),
             sum(len(lr) > 1 for lr in after),
             {(k, v): sum(1 for r in tries if r["rep"] == k and r["status"] == v)
              for k in "ABC?" for v in (200, 429, 503, 502, None)
              if any(r["rep"] == k and r["status"] == v for r in tries)}), flush=True)

    for r in [r for r in tries if r["status"] not in (200, None)][:10]:
        print("  %s %r from %r: sent %+.2f s, answered %+.2f s after the kill"
              % (r["rep"], r["status"], r["replica"], r["t0"] - t_kill, r["t1"] - t_kill))
    # 429/503 pass through with Retry-After
    busy = [r for r in tries if r["status"] in (429, 503)]
    no_ra = [r for r in busy if not r["retry_after"]]
    R.check(NAMES[4], not no_ra, "%d of %d 429/503 answers without Retry-After"
            % (len(no_ra), len(busy)))

    # metrics: C exactly (it is still up); A and B from their scrapes just
    # before their signal, which count every attempt on them that had ended
    # by then and none that had not started
    problems = []
    want_c = sum(1 for r in tries if r["rep"] == "C")
    got_c = route_count(H.metrics(c)) - route_count(before["C"])
    if got_c != want_c:
        problems.append("C: /metrics counts %d, the clients saw %d" % (got_c, want_c))
    for name in "AB":
        t_before, m, t_after = scraped[name]
        on = [r for r in tries if r["rep"] == name]
        low = sum(1 for r in on if r["t1"] < t_before - 0.2 and r["status"] is not None)
        high = sum(1 for r in on if r["t0"] < t_after)
        got = route_count(m) - route_count(before[name])
        if not m or not low <= got <= high:
            problems.append("%s: /metrics before its signal counts %d, not within [%d, %d]"
                            % (name, got, low, high))
    multi = sum(1 for r in tries if "," in (r["replica"] or ""))
    print("  C counted %d = %d seen; %d attempts were passed to a second replica by nginx"
          % (got_c, want_c, multi), flush=True)
    R.check(NAMES[5], not problems, "; ".join(problems))
    print("  run %.1f s (SIGTERM at %.1f s)" % (time.monotonic() - t_start, t_term - t_start),
          flush=True)
    c.stop()


_nginx = []


def stop_nginx():
    """SIGQUIT (graceful), then SIGKILL: never leave nginx behind."""
    for ng in _nginx:
        if ng.poll() is None:
            ng.send_signal(signal.SIGQUIT)
            try:
                ng.wait(10)
            except subprocess.TimeoutExpired:
                ng.kill()
                ng.wait()


def session_case(port):
    """Six requests of one session, and six of another: one replica each."""
    seen = {}
    for s in ("conv-1", "conv-2"):
        for i in range(6):
            rec = attempt(port, i, session=s)
            seen.setdefault(s, set()).add((rec["replica"], rec["status"], rec["done"]))
    ok = all(len(v) == 1 and next(iter(v))[1] == 200 and next(iter(v))[2] for v in seen.values())
    R.check(NAMES[6], ok, "replicas per session: %r" % seen)


if __name__ == "__main__":
    try:
        main()
    finally:
        stop_nginx()
    R.finish()
