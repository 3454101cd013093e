#!/usr/bin/env python3
"""bench_ttft.py - what the HTTP path adds to the time to first token.

    bench_ttft.py [--model PATH] [--prompt 4] [--requests 100] [--rounds 3]
                  [--threads 0]

Two measurements of one workload (one client; a prompt of --prompt random
token ids; 2 tokens generated, greedy), in alternating rounds so that both
see the same machine:

- bench-serving --concurrency 1: the engine driven directly (its TTFT is
  submit -> first token event);
- a streaming POST /v1/completions to a llamad started with the same engine
  settings, from a raw socket on one keep-alive connection with TCP_NODELAY
  (no HTTP library between the clock and the socket): request sent -> the
  first SSE frame with text received.

The daemon runs at log-level debug, where every stream logs its own split:
arrival -> engine_submit, submit -> first token posted (the engine's part),
posted -> taken by the loop (the uv_async wake-up), taken -> handed to the
socket.  Medians of each are printed, with HTTP TTFT minus engine TTFT.
A short prompt keeps the engine's part small, so that its noise does not
hide the difference.  Stdlib only.
"""

import argparse
import json
import os
import random
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SRCDIR = os.path.dirname(HERE)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def start_daemon(args, log):
    port = free_port()
    cmd = [os.path.join(SRCDIR, "llamad"), "--model", args.model, "--host", "127.0.0.1",
           "--port", str(port), "--threads", str(args.threads), "--log-level", "debug",
           "--log-file", log]
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            c = socket.create_connection(("127.0.0.1", port), timeout=1)
            c.sendall(b"GET /health/ready HTTP/1.0\r\n\r\n")
            if c.recv(64).startswith(b"HTTP/1.1 200"):
                c.close()
                return p, port
            c.close()
        except OSError:
            pass
        time.sleep(0.1)
    p.kill()
    sys.exit("llamad did not become ready")


def http_round(port, args, rng):
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    out = []
    for i in range(args.requests + 5):
        body = json.dumps({"prompt": [rng.randrange(200, 40200) for _ in range(args.prompt)],
                           "max_tokens": 2, "temperature": 0, "stream": True,
                           "logit_bias": {"0": -100, "1": -100, "2": -100}}).encode()
        req = (b"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
               b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        t0 = time.perf_counter()
        s.sendall(req)
        buf, first = b"", None
        while b"data: [DONE]" not in buf:
            chunk = s.recv(65536)
            if not chunk:
                sys.exit("connection closed")
            buf += chunk
            if first is None and re.search(rb'data: \{[^\n]*"text":"[^"]', buf):
                first = time.perf_counter()
        if i >= 5:   # warm-up
            out.append((first - t0) * 1e3)
    s.close()
    return out


def thread_cpu(pid):
    """CPU seconds of each thread of pid: {tid: (name, seconds)}."""
    hz = os.sysconf("SC_CLK_TCK")
    out = {}
    for tid in os.listdir("/proc/%d/task" % pid):
        with open("/proc/%d/task/%s/stat" % (pid, tid)) as f:
            st = f.read()
        name = st[st.index("(") + 1:st.rindex(")")]
        fields = st[st.rindex(")") + 2:].split()
        out[int(tid)] = (name, (int(fields[11]) + int(fields[12])) / hz)
    return out


def http_throughput(port, pid, args, rng):
    """--concurrency streams from one thread (selectors), each sending its
    next request when the last ended.  Returns (tokens/s, loop-thread CPU
    seconds, all-thread CPU seconds, wall seconds)."""
    import selectors
    sel = selectors.DefaultSelector()
    total_reqs = args.concurrency * args.per_client
    sent = [0]
    done = [0]
    tokens = [0]

    def send(s):
        body = json.dumps({"prompt": [rng.randrange(200, 40200) for _ in range(args.prompt)],
                           "max_tokens": args.gen, "temperature": 0, "stream": True,
                           "logit_bias": {"0": -100, "1": -100, "2": -100}}).encode()
        s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                  b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
                  + body)
        sent[0] += 1

    before = thread_cpu(pid)
    t0 = time.perf_counter()
    for _ in range(args.concurrency):
        s = socket.create_connection(("127.0.0.1", port))
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sel.register(s, selectors.EVENT_READ, [b""])
        send(s)
    while done[0] < total_reqs:
        for key, _ in sel.select():
            s, st = key.fileobj, key.data
            chunk = s.recv(65536)
            if not chunk:
                sys.exit("connection closed")
            st[0] += chunk
            if b"data: [DONE]" in st[0]:
                tokens[0] += st[0].count(b'"finish_reason":null')
                st[0] = b""
                done[0] += 1
                if sent[0] < total_reqs:
                    send(s)
    wall = time.perf_counter() - t0
    after = thread_cpu(pid)
    for key in list(sel.get_map().values()):
        key.fileobj.close()
    loop = sum(after[t][1] - before.get(t, ("", 0))[1] for t in after if t == pid)
    allc = sum(after[t][1] - before.get(t, ("", 0))[1] for t in after)
    return tokens[0] / wall, loop, allc, wall


def engine_throughput(args):
    cmd = [os.path.join(HERE, "bench-serving"), "--model", args.model, "--concurrency",
           str(args.concurrency), "--prompt", str(args.prompt), "--gen", str(args.gen),
           "--requests-per-client", str(args.per_client), "--runs", "1", "--threads",
           str(args.threads)]
    out = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=True).stdout
    row = out.decode().strip().splitlines()[-1].split()
    return float(row[6])   # out_tok/s


def engine_round(args):
    cmd = [os.path.join(HERE, "bench-serving"), "--model", args.model, "--concurrency", "1",
           "--prompt", str(args.prompt), "--gen", "2", "--requests-per-client",
           str(args.requests), "--runs", "1", "--threads", str(args.threads)]
    out = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=True).stdout
    row = out.decode().strip().splitlines()[-1].split()
    return float(row[2].rstrip("ms"))   # ttft_p50


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=os.path.join(SRCDIR, "models",
                                                    "SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--prompt", type=int, default=4)
    ap.add_argument("--requests", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--concurrency", type=int, default=0,
                    help="instead: throughput of this many streams, HTTP vs engine")
    ap.add_argument("--gen", type=int, default=32)
    ap.add_argument("--per-client", type=int, default=4)
    args = ap.parse_args()
    if args.concurrency > 0:
        return throughput_main(args)
    rng = random.Random(1)
    tmp = tempfile.mkdtemp(prefix="bench-ttft.")
    log = os.path.join(tmp, "llamad.log")
    d, port = start_daemon(args, log)
    http_p50, engine_p50 = [], []
    try:
        for r in range(args.rounds):
            engine_p50.append(engine_round(args))
            http_p50.append(statistics.median(http_round(port, args, rng)))
            print("round %d: engine TTFT p50 %.2f ms, HTTP TTFT p50 %.2f ms"
                  % (r + 1, engine_p50[-1], http_p50[-1]), flush=True)
    finally:
        d.terminate()
        d.wait()
    parts = [[], [], [], []]
    pat = re.compile(r"timing: arrival to submit ([\d.]+) ms, submit to first token posted "
                     r"([\d.]+) ms \(the engine\), posted to taken ([\d.]+) ms, taken to "
                     r"written ([\d.]+) ms")
    with open(log) as f:
        for line in f:
            m = pat.search(line)
            if m:
                for k in range(4):
                    parts[k].append(float(m.group(k + 1)))
    os.unlink(log)
    os.rmdir(tmp)
    he, ee = statistics.median(http_p50), statistics.median(engine_p50)
    print("prompt %d tokens, 2 generated, %d requests x %d rounds, threads %d"
          % (args.prompt, args.requests, args.rounds, args.threads))
    print("TTFT p50 (median of rounds): HTTP %.2f ms, engine %.2f ms, HTTP - engine %+.2f ms"
          % (he, ee, he - ee))
    if parts[0]:
        names = ["arrival -> submit", "submit -> first token posted (engine)",
                 "posted -> taken by the loop", "taken -> handed to the socket"]
        print("server-side split of %d streams (median, p99):" % len(parts[0]))
        for n, v in zip(names, parts):
            v = sorted(v)
            print("  %-40s %8.3f ms %8.3f ms" % (n, statistics.median(v),
                                                v[min(len(v) - 1, int(0.99 * len(v)))]))


def throughput_main(args):
    rng = random.Random(1)
    tmp = tempfile.mkdtemp(prefix="bench-ttft.")
    log = os.path.join(tmp, "llamad.log")
    d, port = start_daemon(args, log)
    rows = []
    try:
        for r in range(args.rounds):
            e = engine_throughput(args)
            h, loop, allc, wall = http_throughput(port, d.pid, args, rng)
            rows.append((e, h, loop, allc))
            print("round %d: engine %.1f tok/s, HTTP %.1f tok/s (%.3f); daemon CPU %.2f s, of it "
                  "the loop thread %.3f s (%.1f%%)" % (r + 1, e, h, h / e, allc, loop,
                                                      100 * loop / allc if allc else 0), flush=True)
    finally:
        d.terminate()
        d.wait()
        os.unlink(log)
        os.rmdir(tmp)
    e = statistics.median(x[0] for x in rows)
    h = statistics.median(x[1] for x in rows)
    share = statistics.median(x[2] / x[3] for x in rows if x[3] > 0)
    print("concurrency %d, prompt %d, gen %d, %d requests per client, threads %d"
          % (args.concurrency, args.prompt, args.gen, args.per_client, args.threads))
    print("median of %d rounds: engine %.1f tok/s, HTTP %.1f tok/s, HTTP / engine %.3f; the loop "
          "thread (HTTP, JSON, SSE) took %.1f%% of the daemon's CPU time"
          % (args.rounds, e, h, h / e, 100 * share))


if __name__ == "__main__":
    main()
