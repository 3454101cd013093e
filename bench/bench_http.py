#!/usr/bin/env python3
"""bench_http.py - the serving benchmark of bench/bench_serving.c, over HTTP.

    bench_http.py [--url http://127.0.0.1:8080] [--model PATH]
                  [--concurrency 1,4,16,64] [--prompt 64] [--gen 32]
                  [--requests-per-client 2] [--runs 3] [--threads 0]
                  [--kv-memory-mb 256] [--max-batch-tokens 512] [--max-seqs 64]

A closed loop of N clients (threads), each sending its next streaming
POST /v1/completions when the last one has finished, on a keep-alive
connection of its own.  The prompt is a list of random token ids
(200..40199, as bench-serving draws them), so no tokenization happens and
the engine does the same work as in bench-serving.  The server has no
ignore_eos field; "logit_bias" of -100 on the end-of-generation ids
(0 <|endoftext|>, 1 <|im_start|>, 2 <|im_end|> for SmolLM2: --eog-ids)
with greedy sampling makes every request run to max_tokens.  A request
whose usage.completion_tokens is not --gen is counted and reported.

TTFT: request sent -> first SSE frame with non-empty text.  ITL: the gap
between consecutive frames with text (a token that ends inside a UTF-8
character is held by the server and comes with the next one, so a few
gaps span two tokens).  Throughput: all completion tokens over the wall
time of the run.  Without --url each (level, run) gets a fresh llamad,
started like tests/e2e/harness.py starts it, with bench-serving's engine
defaults; with --url the running daemon is used for every run (its prefix
cache then holds nothing useful: the prompts are random).  Medians across
runs are printed.  Stdlib only.
"""

import argparse
import http.client
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
SRCDIR = os.path.dirname(HERE)


def quantile(v, q):
    """The q-quantile (nearest rank), as bench_serving.c computes it."""
    if not v:
        return 0.0
    v = sorted(v)
    k = int(q * len(v) + 0.999999)
    k = max(1, min(k, len(v)))
    return v[k - 1]


def median(v):
    v = sorted(v)
    return v[len(v) // 2] if v else 0.0


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Daemon:
    """A llamad on a free loopback port; stop() sends SIGTERM, then SIGKILL."""

    def __init__(self, args):
        self.port = free_port()
        binary = os.environ.get("LLAMAD_BIN") or os.path.join(SRCDIR, "llamad")
        cmd = [binary, "--model", args.model, "--host", "127.0.0.1", "--port", str(self.port),
               "--threads", str(args.threads), "--kv-memory", "%dM" % args.kv_memory_mb,
               "--max-batch-tokens", str(args.max_batch_tokens),
               "--max-seqs", str(args.max_seqs)]
        self.log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.log.seek(0)
                sys.exit("bench_http: llamad exited with %d:\n%s"
                         % (self.proc.returncode, self.log.read().decode("utf-8", "replace")[-2000:]))
            try:
                c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                c.request("GET", "/health")
                if c.getresponse().status == 200:
                    c.close()
                    return
                c.close()
            except OSError:
                pass
            time.sleep(0.05)
        self.stop()
        sys.exit("bench_http: llamad was not ready within 120 s")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def one_request(conn, path, body, host_hdr, rec):
    """Sends one streaming completion; appends TTFT/ITL (seconds) to rec."""
    t0 = time.perf_counter()
    conn.request("POST", path, body=body,
                 headers={"Content-Type": "application/json", "Host": host_hdr})
    resp = conn.getresponse()
    if resp.status != 200:
        raise RuntimeError("HTTP %d: %s" % (resp.status, resp.read()[:300]))
    last = None
    tokens = None
    while True:
        line = resp.readline()
        if not line:
            break
        if not line.startswith(b"data: "):
            continue
        now = time.perf_counter()
        data = line[6:].strip()
        if data == b"[DONE]":
            break
        ev = json.loads(data)
        if ev.get("usage"):
            tokens = ev["usage"].get("completion_tokens")
        text = ev["choices"][0].get("text") if ev.get("choices") else None
        if text:
            if last is None:
                rec["ttft"].append(now - t0)
            else:
                rec["itl"].append(now - last)
            last = now
    resp.read()
    return tokens


def run_clients(conc, client, start):
    """Runs client(i) on conc threads that all wait on the Barrier start
    (conc + 1 parties); returns the wall time from the release to the last join."""
    threads = [threading.Thread(target=client, args=(i,)) for i in range(conc)]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    return time.perf_counter() - t0


def run_level(args, url, conc, seed):
    """One closed-loop run of `conc` clients; returns a dict of results."""
    u = urllib.parse.urlsplit(url)
    host, port = u.hostname, u.port or 80
    rng = random.Random(seed)
    bias = {str(t): -100 for t in args.eog_ids}
    bodies = []
    for _ in range(conc * args.requests_per_client):
        prompt = [200 + rng.randrange(40000) for _ in range(args.prompt)]
        bodies.append(json.dumps({
            "prompt": prompt, "max_tokens": args.gen, "temperature": 0,
            "logit_bias": bias, "stream": True,
            "stream_options": {"include_usage": True}}).encode())
    rec = {"ttft": [], "itl": [], "tokens": 0, "short": 0, "errors": []}
    lock = threading.Lock()
    start = threading.Barrier(conc + 1)

    def client(i):
        local = {"ttft": [], "itl": []}
        toks = short = 0
        conn = http.client.HTTPConnection(host, port, timeout=600)
        try:
            conn.connect()
            conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            start.wait()
            for r in range(args.requests_per_client):
                n = one_request(conn, "/v1/completions", bodies[i * args.requests_per_client + r],
                                "%s:%d" % (host, port), local)
                toks += n or 0
                short += (n != args.gen)
        except Exception as e:   # reported below; the run is then invalid
            with lock:
                rec["errors"].append(repr(e))
        finally:
            conn.close()
        with lock:
            rec["ttft"] += local["ttft"]
            rec["itl"] += local["itl"]
            rec["tokens"] += toks
            rec["short"] += short

    wall = run_clients(conc, client, start)
    if rec["errors"]:
        sys.exit("bench_http: %d client(s) failed, first: %s" % (len(rec["errors"]), rec["errors"][0]))
    return {"ttft_p50": quantile(rec["ttft"], 0.5) * 1e3, "ttft_p99": quantile(rec["ttft"], 0.99) * 1e3,
            "itl_p50": quantile(rec["itl"], 0.5) * 1e3, "itl_p99": quantile(rec["itl"], 0.99) * 1e3,
            "tok_s": rec["tokens"] / wall, "short": rec["short"]}


def add_daemon_args(p):
    """The options of the daemon a run starts (Daemon reads them), with bench-serving's defaults."""
    p.add_argument("--url", help="a running llamad (default: start one per run)")
    p.add_argument("--model", default=os.path.join(SRCDIR, "models/SmolLM2-135M-Instruct.Q4_1.gguf"))
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--kv-memory-mb", type=int, default=256)
    p.add_argument("--max-batch-tokens", type=int, default=512)
    p.add_argument("--max-seqs", type=int, default=64)


def main():
    p = argparse.ArgumentParser(description="Serving benchmark over HTTP (see the docstring).")
    add_daemon_args(p)
    p.add_argument("--concurrency", default="1,4,16,64")
    p.add_argument("--prompt", type=int, default=64)
    p.add_argument("--gen", type=int, default=32)
    p.add_argument("--requests-per-client", type=int, default=2)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--eog-ids", default="0,1,2", help="ids given logit_bias -100")
    args = p.parse_args()
    args.eog_ids = [int(x) for x in args.eog_ids.split(",") if x]
    levels = [int(x) for x in args.concurrency.split(",") if x]
    if args.prompt <= 0 or args.gen <= 0 or args.requests_per_client <= 0 or args.runs <= 0:
        sys.exit("bench_http: --prompt, --gen, --requests-per-client and --runs must be > 0")

    print("%s; prompt %d tokens, %d generated, %d requests per client, %d runs (median)"
          % (args.url or "fresh llamad per run, max-batch-tokens %d, max-seqs %d, kv %d MiB"
             % (args.max_batch_tokens, args.max_seqs, args.kv_memory_mb),
             args.prompt, args.gen, args.requests_per_client, args.runs))
    print("%6s %10s %10s %9s %9s %10s %6s" % ("conc", "ttft_p50", "ttft_p99", "itl_p50", "itl_p99",
                                             "tok/s", "short"))
    for conc in levels:
        res = []
        for r in range(args.runs):
            d = None if args.url else Daemon(args)
            try:
                url = args.url or "http://127.0.0.1:%d" % d.port
                res.append(run_level(args, url, conc, seed=1000 * conc + r))
            finally:
                if d:
                    d.stop()
        m = {k: median([x[k] for x in res]) for k in res[0]}
        print("%6d %8.1fms %8.1fms %7.1fms %7.1fms %10.1f %6d"
              % (conc, m["ttft_p50"], m["ttft_p99"], m["itl_p50"], m["itl_p99"], m["tok_s"],
                 sum(x["short"] for x in res)), flush=True)


if __name__ == "__main__":
    main()
