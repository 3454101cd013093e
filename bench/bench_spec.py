#!/usr/bin/env python3
"""bench_spec.py - speculative decoding by prompt lookup on an extractive
workload: decode tokens/s with and without it, and the acceptance rate.

    bench_spec.py [--model GGUF] [--text FILE] [--start HEADING] [--chars 4200] [--gen 256]
                  [--rounds 3] [--threads 2] [--spec-tokens 4] [--spec-ngram 3]

One llamad (started as tests/e2e/harness.py starts it) with speculative =
prompt-lookup; each request says "speculative": true or false, and the
two modes alternate within every round, so that both see the same machine
load.  The workload: a text of about 1,000 tokens (--chars characters of
--text from --start on; default docs/ENGINE.md's "A request's life", prose)
and two greedy requests on it, --gen tokens at most: "copy" (completions:
the text, then "Copy:" and its first line, which the model goes on
copying) and "repeat" (chat: "repeat it exactly", which a small model
paraphrases in part).  Decode speed is the
server's own time per output token (llamad_time_per_output_token_seconds:
(last token - first token) / (tokens - 1)), so prefill and the prefix
cache do not enter it; acceptance is llamad_spec_accepted_tokens_total
over llamad_spec_draft_tokens_total.  Prints medians over rounds, the
outputs' agreement (greedy: they must be identical) and the machine's load.
Stdlib only.
"""

import argparse
import json
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SRCDIR = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(SRCDIR, "tests", "e2e"))
import harness as H  # noqa: E402

def copy_body(text, gen, spec):
    """Completions: the text, then "Copy:" and its first line: the model goes on copying."""
    first = text.split("\n", 1)[0]
    return "/v1/completions", {"prompt": "Original:\n%s\n\nCopy:\n%s" % (text, first),
                               "max_tokens": gen, "temperature": 0, "speculative": spec}


def repeat_body(text, gen, spec):
    """Chat: an instruction to repeat the text (a small model paraphrases part of it)."""
    msg = "Repeat the following text exactly, word for word.\n\n%s" % text
    return "/v1/chat/completions", {"messages": [{"role": "user", "content": msg}],
                                    "max_tokens": gen, "temperature": 0, "speculative": spec}


TASKS = [("copy", copy_body), ("repeat", repeat_body)]


def load_text(path, start, chars):
    with open(path, encoding="utf-8") as f:
        t = f.read()
    at = t.find(start)
    t = t[at:] if at >= 0 else t
    return t[:chars]


def one(d, make, text, gen, spec):
    before = H.metrics(d)
    path, body = make(text, gen, spec)
    st, _, b = H.request(d, "POST", path, body=body, timeout=600)
    if st != 200:
        sys.exit("request failed: %s %s" % (st, b[:300]))
    after = H.metrics(d)
    r = json.loads(b)

    def delta(name):
        return (H.metric(after, name) or 0.0) - (H.metric(before, name) or 0.0)

    c = r["choices"][0]
    tpot = delta("llamad_time_per_output_token_seconds_sum")
    return {"text": c["message"]["content"] if "message" in c else c["text"],
            "tokens": r["usage"]["completion_tokens"], "prompt": r["usage"]["prompt_tokens"],
            "tok_s": 1.0 / tpot if tpot > 0 else 0.0,
            "drafted": delta("llamad_spec_draft_tokens_total"),
            "accepted": delta("llamad_spec_accepted_tokens_total")}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=None)
    ap.add_argument("--text", default=os.path.join(SRCDIR, "docs", "ENGINE.md"))
    ap.add_argument("--start", default="## A request's life")
    ap.add_argument("--chars", type=int, default=4200)
    ap.add_argument("--gen", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--spec-tokens", type=int, default=4)
    ap.add_argument("--spec-ngram", type=int, default=3)
    a = ap.parse_args()
    text = load_text(a.text, a.start, a.chars)
    args = ["--threads", str(a.threads), "--speculative", "prompt-lookup", "--spec-tokens",
            str(a.spec_tokens), "--spec-ngram", str(a.spec_ngram), "--max-step-time", "0"]
    load0 = os.getloadavg()
    res = {(t, s): [] for t, _ in TASKS for s in (False, True)}
    with H.Daemon(args, model=a.model) as d:
        for rnd in range(a.rounds):
            for name, task in TASKS:
                order = (False, True) if rnd % 2 == 0 else (True, False)
                for spec in order:
                    res[(name, spec)].append(one(d, task, text, a.gen, spec))
    load1 = os.getloadavg()
    print("model %s, %d threads, spec-tokens %d, spec-ngram %d, %d rounds, load %.2f -> %.2f, %d cores"
          % (os.path.basename(a.model or H.model_path()), a.threads, a.spec_tokens, a.spec_ngram,
             a.rounds, load0[0], load1[0], os.cpu_count()))
    print("%-7s %7s %7s %10s %10s %8s %10s %9s" % ("task", "prompt", "tokens", "off tok/s", "on tok/s",
                                                "speedup", "accepted", "same out"))
    for name, _ in TASKS:
        off, on = res[(name, False)], res[(name, True)]
        t_off = statistics.median(r["tok_s"] for r in off)
        t_on = statistics.median(r["tok_s"] for r in on)
        dr = sum(r["drafted"] for r in on)
        ac = sum(r["accepted"] for r in on)
        same = all(x["text"] == y["text"] for x, y in zip(off, on))
        print("%-7s %7d %7d %10.1f %10.1f %7.2fx %9.0f%% %9s" % (
            name, on[0]["prompt"], on[0]["tokens"], t_off, t_on, t_on / t_off if t_off else 0,
            100.0 * ac / dr if dr else 0.0, "yes" if same else "NO"))
        if any(r["drafted"] for r in off):
            print("  (speculative: false still drafted: a bug)")


if __name__ == "__main__":
    main()
