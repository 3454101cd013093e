#!/usr/bin/env python3
"""bench_structured_llamacpp.py - one client, greedy: decode tokens/s with and
without a JSON Schema constraint, llamad beside llama.cpp (through its Python
binding, llama-cpp-python, built from source on this machine), on the same
GGUF, the same prompts, the same thread count.

    bench_structured_llamacpp.py [--model PATH] [--threads 2] [--max-tokens 128]
                                 [--rounds 3] [--schema tests/corpus/schemas/NN-x.json]

Run it with the Python that has llama_cpp installed, for instance:

    python3 -m venv /tmp/llcpp && CMAKE_ARGS="-DGGML_NATIVE=ON" \\
        /tmp/llcpp/bin/pip install llama-cpp-python==0.3.36
    /tmp/llcpp/bin/python bench/bench_structured_llamacpp.py

Each round runs, interleaved: llama.cpp unconstrained, llama.cpp with the
schema (llama-cpp-python's response_format {"type": "json_object",
"schema": ...}, which compiles the schema to a GBNF grammar and runs
llama.cpp's grammar sampler), then the same two on a llamad (started once,
warm: its compiled-schema and mask caches are what a server serving that
schema again has).  Tokens/s = completion tokens over the wall time of the
whole request (prefill included), summed over the prompts; medians of the
rounds.  The table gives each engine's constrained / unconstrained ratio
and llamad / llama.cpp for both.  Stdlib plus llama_cpp only.
"""

import argparse
import glob
import http.client
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SRCDIR = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from bench_http import Daemon, median  # noqa: E402

PROMPTS = ["Describe a recipe for %s as JSON." % d for d in (
    "pancakes", "tomato soup", "a green salad", "fried rice")]


def load_schema(path):
    with open(path) as f:
        v = json.load(f)
    return v.get("schema", v) if isinstance(v, dict) else v


def llamacpp_run(llm, schema, max_tokens):
    toks, t0 = 0, time.monotonic()
    for p in PROMPTS:
        kw = {}
        if schema is not None:
            kw["response_format"] = {"type": "json_object", "schema": schema}
        r = llm.create_chat_completion(messages=[{"role": "user", "content": p}],
                                       temperature=0.0, max_tokens=max_tokens, **kw)
        toks += r["usage"]["completion_tokens"]
    return toks / (time.monotonic() - t0)


def llamad_run(port, schema, max_tokens):
    toks, t0 = 0, time.monotonic()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    for p in PROMPTS:
        b = {"messages": [{"role": "user", "content": p}], "max_tokens": max_tokens,
             "temperature": 0}
        if schema is not None:
            b["response_format"] = {"type": "json_schema",
                                    "json_schema": {"name": "x", "schema": schema}}
        conn.request("POST", "/v1/chat/completions", body=json.dumps(b),
                     headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        data = json.loads(resp.read())
        if resp.status != 200:
            raise SystemExit("llamad: HTTP %d: %s" % (resp.status, data))
        toks += data["usage"]["completion_tokens"]
    conn.close()
    return toks / (time.monotonic() - t0)


def main():
    p = argparse.ArgumentParser(description="llamad beside llama.cpp, with and without a schema")
    p.add_argument("--model", default=os.path.join(SRCDIR, "models/SmolLM2-135M-Instruct.Q4_1.gguf"))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--max-tokens", type=int, default=128)
    p.add_argument("--rounds", type=int, default=3)
    hits = sorted(glob.glob(os.path.join(SRCDIR, "tests/corpus/schemas/*-kitchen-sink.json")))
    p.add_argument("--schema", default=hits[0] if hits else None)
    args = p.parse_args()
    try:
        from llama_cpp import Llama, __version__ as llver
    except ImportError:
        raise SystemExit("llama_cpp is not installed in this Python (see the docstring)")
    schema = load_schema(args.schema)
    llm = Llama(model_path=args.model, n_threads=args.threads, n_ctx=2048, verbose=False)
    dargs = argparse.Namespace(model=args.model, threads=args.threads, kv_memory_mb=256,
                               max_batch_tokens=512, max_seqs=64)
    d = Daemon(dargs)
    res = {k: [] for k in ("lc_free", "lc_schema", "ld_free", "ld_schema")}
    try:
        llamad_run(d.port, schema, 8)       # warm-up: the schema compiled, the first masks cached
        llamacpp_run(llm, None, 8)
        for _ in range(args.rounds):
            res["lc_free"].append(llamacpp_run(llm, None, args.max_tokens))
            res["lc_schema"].append(llamacpp_run(llm, schema, args.max_tokens))
            res["ld_free"].append(llamad_run(d.port, None, args.max_tokens))
            res["ld_schema"].append(llamad_run(d.port, schema, args.max_tokens))
    finally:
        d.stop()
    m = {k: median(v) for k, v in res.items()}
    print("llama-cpp-python %s, %d threads, %s, schema %s, max_tokens %d, %d rounds (medians)\n"
          % (llver, args.threads, os.path.basename(args.model), os.path.basename(args.schema or "-"),
             args.max_tokens, args.rounds))
    print("| engine | unconstrained tok/s | with the schema tok/s | constrained / unconstrained |")
    print("|---|---|---|---|")
    print("| llama.cpp | %.1f | %.1f | %.2f |" % (m["lc_free"], m["lc_schema"], m["lc_schema"] / m["lc_free"]))
    print("| llamad | %.1f | %.1f | %.2f |" % (m["ld_free"], m["ld_schema"], m["ld_schema"] / m["ld_free"]))
    print("| llamad / llama.cpp | %.2f | %.2f | |" % (m["ld_free"] / m["lc_free"],
                                                      m["ld_schema"] / m["lc_schema"]))


if __name__ == "__main__":
    main()
