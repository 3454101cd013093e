#!/usr/bin/env python3
"""step_time.py - the step-time distribution, with and without a long prompt.

    step_time.py [--bin ./llamad] [--model PATH] [--threads 1] [--long 3000]
                 [--gaps 40] [--extra '--max-step-time 500']

A greedy stream runs alone, then beside one long prompt (--long random
token ids, max_tokens 1).  Every step gives the stream one token, so the
gaps between its SSE frames are the engine's step times as a client sees
them.  Prints p50/p90/max of the gaps of each phase, the long prompt's
duration, and whether the daemon ever withheld the watchdog ping (it runs
with WATCHDOG_USEC set, as under systemd).  Stdlib only; uses the e2e
harness to start and stop the daemon.
"""

import argparse
import http.client
import json
import os
import random
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests", "e2e"))
import harness  # noqa: E402


def stream_gaps(d, stop, gaps, prompt):
    """Stream greedy completions until stop is set, appending each inter-frame gap (s)."""
    while not stop.is_set():
        c = http.client.HTTPConnection("127.0.0.1", d.port, timeout=600)
        body = json.dumps({"prompt": prompt, "max_tokens": 400, "temperature": 0, "stream": True})
        c.request("POST", "/v1/completions", body, {"Content-Type": "application/json"})
        r = c.getresponse()
        last = None
        while not stop.is_set():
            line = r.readline()
            if not line or line.strip() == b"data: [DONE]":
                break
            if not line.startswith(b"data: "):
                continue
            now = time.monotonic()
            if last is not None:
                gaps.append(now - last)
            last = now
        c.close()


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p * len(xs)))] if xs else float("nan")


def summary(xs):
    return "n=%d p50=%.0f ms p90=%.0f ms max=%.0f ms" % (
        len(xs), 1e3 * pct(xs, 0.5), 1e3 * pct(xs, 0.9), 1e3 * max(xs) if xs else float("nan"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin")
    ap.add_argument("--model")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--long", type=int, default=3000)
    ap.add_argument("--gaps", type=int, default=40)
    ap.add_argument("--extra", default="")
    a = ap.parse_args()
    if a.bin:
        os.environ["LLAMAD_BIN"] = a.bin
    rnd = random.Random(7)
    stream_prompt = [rnd.randrange(100, 40000) for _ in range(8)]
    long_prompt = [rnd.randrange(100, 40000) for _ in range(a.long)]
    env = dict(os.environ, WATCHDOG_USEC="2000000")
    env.pop("WATCHDOG_PID", None)
    args = ["--threads", str(a.threads), "--kv-memory", "512M", "--drain-timeout", "2"] + a.extra.split()
    with harness.Daemon(args, model=a.model, env=env) as d:
        gaps, stop = [], threading.Event()
        t = threading.Thread(target=stream_gaps, args=(d, stop, gaps, stream_prompt), daemon=True)
        t.start()
        while len(gaps) < a.gaps:
            time.sleep(0.05)
        alone = list(gaps)
        n0 = len(gaps)
        t0 = time.monotonic()
        st, _, _, _ = harness.post_json(d, "/v1/completions",
                                     {"prompt": long_prompt, "max_tokens": 1, "temperature": 0},
                                     timeout=1200)
        took = time.monotonic() - t0
        beside = gaps[n0:]
        stop.set()
        t.join(timeout=60)
        withheld = "withholding the watchdog ping" in d.log()
    print("machine: %s" % machine())
    print("args: %s" % " ".join(args))
    print("alone:       %s" % summary(alone))
    print("long prompt: %s (status %s, %d tokens in %.1f s)" % (summary(beside), st, a.long, took))
    print("watchdog withheld: %s" % ("yes" if withheld else "no"))


def machine():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "?"


if __name__ == "__main__":
    main()
