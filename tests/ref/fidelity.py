#!/usr/bin/env python3
"""Divergence of llamad's CPU precisions (and of llama.cpp) from the float64 reference.

    fidelity.py MODEL [--tokens FILE] [--windows 4] [--window 512]
                [--precisions exact,fast] [--isa auto] [--threads 2]
                [--llamacpp-python PYTHON] [--work DIR]

For each window of --window consecutive token ids from FILE (default
tests/ref/goldens/fidelity-tokens.txt: 2,048 ids of a fixed English text,
see README.md), every position's logits are computed by
  - ref_forward.py (numpy, float64: the reference),
  - tests/tools/forward-dump with --precision P for each P (llamad's CPU
    backend),
  - llama.cpp through llama-cpp-python, when --llamacpp-python names a
    Python that has it (else that row is skipped, saying why),
each window evaluated from position 0 on its own.  Printed per
configuration: rows, top-1 agreement with the reference (same argmax),
mean and largest KL(reference || configuration) in nats over the
softmax of the logits, and the mean and largest relative L2 error of the
logits.  Exit 0, or 2 when a tool is missing or fails.
"""

import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))

LLAMACPP_SNIPPET = r"""
import sys, numpy as np
from llama_cpp import Llama
model, ids_path, out, threads = sys.argv[1:5]
ids = [int(t) for t in open(ids_path).read().split(",")]
llm = Llama(model, n_ctx=len(ids), n_batch=len(ids), n_threads=int(threads),
            logits_all=True, verbose=False)
llm.eval(ids)
np.save(out, np.asarray(llm.scores[:len(ids)], dtype=np.float32))
"""


def log_softmax(z):
    z = z.astype(np.float64)
    m = z.max(axis=1, keepdims=True)
    return z - m - np.log(np.exp(z - m).sum(axis=1, keepdims=True))


class Stats:
    def __init__(self):
        self.rows = 0
        self.agree = 0
        self.kl = []
        self.rel = []

    def add(self, ref, ours):
        lr, lo = log_softmax(ref), log_softmax(ours)
        self.kl.extend((np.exp(lr) * (lr - lo)).sum(axis=1))
        self.agree += int((ref.argmax(axis=1) == ours.argmax(axis=1)).sum())
        self.rows += ref.shape[0]
        self.rel.extend(np.linalg.norm(ours - ref, axis=1) / np.linalg.norm(ref, axis=1))

    def line(self, name):
        return "%-12s %5d %9.2f%% %10.2e %10.2e %11.2e %11.2e" % (
            name, self.rows, 100.0 * self.agree / self.rows, np.mean(self.kl), np.max(self.kl),
            np.mean(self.rel), np.max(self.rel))


def run(cmd):
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if p.returncode != 0:
        sys.stderr.write("fidelity: %s failed:\n%s\n" % (cmd[0], p.stdout[-2000:]))
        sys.exit(2)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model")
    ap.add_argument("--tokens", default=os.path.join(HERE, "goldens", "fidelity-tokens.txt"))
    ap.add_argument("--windows", type=int, default=4)
    ap.add_argument("--window", type=int, default=512)
    ap.add_argument("--precisions", default="exact,fast")
    ap.add_argument("--isa", default="auto")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--forward-dump", default=os.path.join(os.environ.get("LLAMAD_BUILDDIR", "."),
                                                            "tests", "tools", "forward-dump"))
    ap.add_argument("--llamacpp-python", default="")
    ap.add_argument("--work", default="")
    a = ap.parse_args()

    ids = [int(t) for t in open(a.tokens).read().replace(",", " ").split()]
    if len(ids) < a.windows * a.window:
        sys.stderr.write("fidelity: %s has %d ids, fewer than %d\n" % (a.tokens, len(ids), a.windows * a.window))
        return 2
    if not os.access(a.forward_dump, os.X_OK):
        sys.stderr.write("fidelity: no forward-dump at %s (make tests/tools/forward-dump)\n" % a.forward_dump)
        return 2
    work = a.work or tempfile.mkdtemp(prefix="fidelity.")
    os.makedirs(work, exist_ok=True)
    precs = [p for p in a.precisions.split(",") if p]
    stats = {p: Stats() for p in precs}
    llcpp = Stats() if a.llamacpp_python else None

    for w in range(a.windows):
        win = ids[w * a.window:(w + 1) * a.window]
        csv = ",".join(map(str, win))
        ids_path = os.path.join(work, "ids%d.txt" % w)
        with open(ids_path, "w") as f:
            f.write(csv)
        ref_path = os.path.join(work, "ref%d.npz" % w)
        if not os.path.exists(ref_path):
            run([sys.executable, os.path.join(HERE, "ref_forward.py"), a.model, "--tokens-file", ids_path,
                 "--all-logits", "--out", ref_path, "-q"])
        ref = np.load(ref_path)["logits"].astype(np.float64)
        n_vocab = ref.shape[1]
        for p in precs:
            out = os.path.join(work, "%s%d.f32" % (p, w))
            run([a.forward_dump, a.model, "--tokens", csv, "--all", "--precision", p, "--isa", a.isa,
                 "--threads", str(a.threads), "--out", out])
            stats[p].add(ref, np.fromfile(out, dtype="<f4").reshape(-1, n_vocab).astype(np.float64))
        if llcpp is not None:
            out = os.path.join(work, "llamacpp%d.npy" % w)
            run([a.llamacpp_python, "-c", LLAMACPP_SNIPPET, a.model, ids_path, out, str(a.threads)])
            llcpp.add(ref, np.load(out).astype(np.float64))
        sys.stderr.write("fidelity: window %d of %d done\n" % (w + 1, a.windows))

    print("%d tokens in %d windows of %d; reference: ref_forward.py (float64)" % (
        a.windows * a.window, a.windows, a.window))
    print("%-12s %5s %10s %10s %10s %11s %11s" % ("config", "rows", "top-1", "mean KL", "max KL",
                                                   "mean relL2", "max relL2"))
    for p in precs:
        print(stats[p].line("llamad " + p))
    if llcpp is not None:
        print(llcpp.line("llama.cpp"))
    else:
        print("llama.cpp    skipped: no --llamacpp-python (a Python with llama-cpp-python)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
