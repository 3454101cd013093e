#!/usr/bin/env python3
"""bench_structured.py - serving throughput with and without a structured-output constraint.

    bench_structured.py [--url http://127.0.0.1:8080] [--model PATH]
                        [--concurrency 1,16,64] [--max-tokens 128]
                        [--requests-per-client 2] [--runs 1]
                        [--schema tests/corpus/schemas/NN-kitchen-sink.json]
                        [--threads 0] [--kv-memory-mb 256] [--max-batch-tokens 512]
                        [--max-seqs 64]

For each concurrency level, a closed loop of N clients (threads, one
keep-alive connection each) sends non-streaming POST /v1/chat/completions
requests, first unconstrained, then with response_format json_schema of a
medium schema (the corpus's recipe schema: nested object, enum array,
bounded strings, a format), with the same prompts, max_tokens and greedy
sampling.  Throughput: all usage.completion_tokens over the wall time of
the run; the table gives both and their ratio (issue 15's target: at least
0.95 at concurrency 16).  Requests that fail (e.g. a server without the
feature answers 400) are counted and shown, and that row has no ratio.
Without --url each (level, mode, run) gets a fresh llamad started as
bench_http.py starts it; medians across runs.  Stdlib only.
"""

import argparse
import glob
import http.client
import json
import os
import sys
import threading
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
SRCDIR = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from bench_http import Daemon, add_daemon_args, median, run_clients  # noqa: E402

PROMPTS = ["Describe a recipe for %s." % d for d in (
    "pancakes", "tomato soup", "a green salad", "fried rice", "lemonade", "banana bread",
    "pasta with pesto", "vegetable curry")]


def default_schema():
    hits = sorted(glob.glob(os.path.join(SRCDIR, "tests/corpus/schemas/*-kitchen-sink.json")))
    return hits[0] if hits else None


def run_level(args, url, conc, schema):
    """One closed-loop run; returns {"tok_s", "tokens", "requests", "errors", "first_error"}."""
    u = urllib.parse.urlsplit(url)
    host, port = u.hostname, u.port or 80
    bodies = []
    for i in range(conc * args.requests_per_client):
        b = {"messages": [{"role": "user", "content": PROMPTS[i % len(PROMPTS)]}],
             "max_tokens": args.max_tokens, "temperature": 0}
        if schema is not None:
            b["response_format"] = {"type": "json_schema",
                                    "json_schema": {"name": "recipe", "schema": schema}}
        bodies.append(json.dumps(b).encode())
    rec = {"tokens": 0, "requests": 0, "errors": 0, "first_error": None}
    lock = threading.Lock()
    start = threading.Barrier(conc + 1)

    def client(i):
        toks = done = errs = 0
        first = None
        conn = http.client.HTTPConnection(host, port, timeout=600)
        try:
            start.wait()
            for r in range(args.requests_per_client):
                conn.request("POST", "/v1/chat/completions",
                             body=bodies[i * args.requests_per_client + r],
                             headers={"Content-Type": "application/json"})
                resp = conn.getresponse()
                data = resp.read()
                if resp.status != 200:
                    errs += 1
                    first = first or "HTTP %d: %s" % (resp.status, data[:200])
                    continue
                toks += json.loads(data).get("usage", {}).get("completion_tokens", 0)
                done += 1
        except Exception as e:   # counted; the row then shows the errors
            errs += 1
            first = first or repr(e)
        finally:
            conn.close()
        with lock:
            rec["tokens"] += toks
            rec["requests"] += done
            rec["errors"] += errs
            rec["first_error"] = rec["first_error"] or first

    wall = run_clients(conc, client, start)     # the clients fill rec
    rec["tok_s"] = rec["tokens"] / wall
    return rec


def measure(args, conc, schema):
    res = []
    for _ in range(args.runs):
        d = None if args.url else Daemon(args)
        try:
            res.append(run_level(args, args.url or "http://127.0.0.1:%d" % d.port, conc, schema))
        finally:
            if d:
                d.stop()
    return {"tok_s": median([r["tok_s"] for r in res]),
            "tokens": sum(r["tokens"] for r in res), "errors": sum(r["errors"] for r in res),
            "first_error": next((r["first_error"] for r in res if r["first_error"]), None)}


def main():
    p = argparse.ArgumentParser(description="Structured-output serving benchmark (see the docstring).")
    add_daemon_args(p)
    p.add_argument("--concurrency", default="1,16,64")
    p.add_argument("--max-tokens", type=int, default=128)
    p.add_argument("--requests-per-client", type=int, default=2)
    p.add_argument("--runs", type=int, default=1)
    p.add_argument("--schema", default=default_schema(), help="a corpus file (its \"schema\") "
                   "or a bare JSON Schema")
    args = p.parse_args()
    levels = [int(x) for x in args.concurrency.split(",") if x]
    if args.max_tokens <= 0 or args.requests_per_client <= 0 or args.runs <= 0 or not levels:
        sys.exit("bench_structured: --max-tokens, --requests-per-client, --runs and "
                 "--concurrency must be > 0")
    if not args.schema:
        sys.exit("bench_structured: no --schema and no corpus schema found")
    with open(args.schema, encoding="utf-8") as f:
        schema = json.load(f)
    schema = schema.get("schema", schema)

    print("%s; max_tokens %d, %d requests per client, %d run(s) (median), schema %s"
          % (args.url or "fresh llamad per run, max-batch-tokens %d, max-seqs %d, kv %d MiB"
             % (args.max_batch_tokens, args.max_seqs, args.kv_memory_mb),
             args.max_tokens, args.requests_per_client, args.runs, os.path.basename(args.schema)))
    print("%6s %12s %12s %8s %8s %7s" % ("conc", "free tok/s", "json tok/s", "free err",
                                          "json err", "ratio"))
    notes = []
    for conc in levels:
        free = measure(args, conc, None)
        cons = measure(args, conc, schema)
        ok = free["errors"] == 0 and cons["errors"] == 0 and free["tok_s"] > 0
        print("%6d %12.1f %12.1f %8d %8d %7s" % (conc, free["tok_s"], cons["tok_s"], free["errors"],
                                                 cons["errors"],
                                                 "%.3f" % (cons["tok_s"] / free["tok_s"]) if ok else "-"),
              flush=True)
        for label, r in (("free", free), ("json", cons)):
            if r["first_error"]:
                notes.append("conc %d %s: %s" % (conc, label, r["first_error"]))
    for n in notes[:6]:
        print("  " + n)


if __name__ == "__main__":
    main()
