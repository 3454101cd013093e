#!/usr/bin/env python3
"""test_spec.py - speculative decoding by prompt lookup through the server:
the settings, the request's "speculative" field, and its metrics.

A llamad with speculative = prompt-lookup, spec-tokens 3 and vLLM's metric
names: a completion that copies its prompt (greedy, and seeded) gives the
same text with "speculative": true and false, and the draft counters move
only for the first, under llamad's and vLLM's names; a non-boolean field is
a 400 naming it; spec-tokens past 16 is a start-up error.  Stdlib only.
"""

import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402

R = H.Report("spec")
CASES = ["greedy copy: the same text with and without, drafts proposed and accepted",
         "seeded sampling: the same text with and without",
         "speculative false proposes nothing",
         "vLLM's spec_decode counters equal llamad's",
         "speculative: 1 is a 400 naming speculative",
         "spec-tokens 17 is refused at start-up"]
TEXT = ("Copy:\nThe quick brown fox jumps over the lazy dog while the farmer watches from the "
        "old wooden fence, and the cat sleeps in the sun by the barn door.\n"
        "Copy:\nThe quick brown fox jumps over the lazy dog while the farmer")

H.skip_all_without_model(R, CASES)


def counters(d):
    m = H.metrics(d)
    return [H.metric(m, n) or 0.0 for n in ("llamad_spec_draft_tokens_total",
                                            "llamad_spec_accepted_tokens_total",
                                            "vllm:spec_decode_num_draft_tokens_total",
                                            "vllm:spec_decode_num_accepted_tokens_total")]


def text(d, spec, **kw):
    body = dict(prompt=TEXT, max_tokens=24, speculative=spec, **kw)
    st, _, j, raw = H.post_json(d, "/v1/completions", body, timeout=120)
    if st != 200:
        raise RuntimeError("status %d: %r" % (st, raw[:300]))
    return j["choices"][0]["text"]


def main():
    d = H.start_or_finish(R, H.Daemon(["--speculative", "prompt-lookup", "--spec-tokens", "3",
                                       "--metrics-vllm-names", "yes"]))
    try:
        def greedy():
            c0 = counters(d)
            off = text(d, False, temperature=0)
            c1 = counters(d)
            on = text(d, True, temperature=0)
            c2 = counters(d)
            greedy.deltas = (c1[0] - c0[0], c2[0] - c1[0], c2[1] - c1[1])
            greedy.c = c2
            return (off == on and c2[0] > c1[0] and c2[1] > c1[1],
                    "off %r, on %r, counters %r -> %r -> %r" % (off, on, c0, c1, c2))
        R.attempt(CASES[0], greedy)

        def sampled():
            off = [text(d, False, temperature=0.8, seed=s) for s in (1, 2, 3)]
            on = [text(d, True, temperature=0.8, seed=s) for s in (1, 2, 3)]
            return off == on, "off %r, on %r" % (off, on)
        R.attempt(CASES[1], sampled)
        deltas = getattr(greedy, "deltas", None)
        R.check(CASES[2], deltas is not None and deltas[0] == 0, "draft counter deltas %r" % (deltas,))
        c = counters(d)
        R.check(CASES[3], c[0] == c[2] and c[1] == c[3] and c[0] > 0, repr(c))
        st, _, j, _ = H.post_json(d, "/v1/completions", dict(prompt="a", max_tokens=1, speculative=1))
        R.check(CASES[4], st == 400 and ((j or {}).get("error") or {}).get("param") == "speculative",
                "status %d: %r" % (st, j))
    finally:
        rc = d.stop()
        R.check("daemon exits 0 on SIGTERM", rc == 0, "exit status %r" % rc)
    p = subprocess.run([H.llamad_bin(), "--model", H.model_path(), "--spec-tokens", "17"],
                       capture_output=True, timeout=60)
    R.check(CASES[5], p.returncode != 0 and b"spec-tokens" in p.stdout + p.stderr,
            "exit %d: %r" % (p.returncode, (p.stdout + p.stderr)[-300:]))
    R.finish()


if __name__ == "__main__":
    main()
