#!/usr/bin/env python3
"""Compare llamad's logits and greedy tokens with ref_forward.py's output.

    compare-logits.py REF.npz [OURS.f32] --rows N [--tol 1e-3]
                      [--tokens-ours FILE] [--tokens-ref FILE]
                      [--tie-margin M] [--prefix-ok]

REF.npz     written by ref_forward.py (logits [n_ref_rows, n_vocab], greedy,
            greedy_margin).
OURS.f32    raw little-endian float32 [N, n_vocab] written by llamad; it is
            compared with the LAST N rows of the reference (so a reference
            made with --all-logits also checks a last-row-only run).  A second
            .npz from ref_forward.py is accepted too (its logits rows; --rows
            is then ignored), e.g. to compare a GGUF file with its HF twin.
--tokens-ours FILE
            llamad's greedy token ids as text (commas or whitespace); compared
            with REF.npz's greedy ids, or with --tokens-ref FILE when given.

For each row it prints the relative L2 error |ours - ref| / |ref|, the
largest absolute difference and both argmaxes, then the maximum relative
error.  Exit status: 0 when every row is within --tol and the tokens agree,
1 on a mismatch or any NaN/Inf, 2 on bad input (sizes, missing files).

Greedy tokens must agree exactly.  --tie-margin M forgives a divergence at a
step where the reference's top-1 and top-2 logits were closer than M (a near
tie that rounding may flip); later tokens are then not compared.
--prefix-ok accepts llamad's tokens when they are a prefix of the reference's
(llamad stopped early at a stop token).
"""

import argparse
import sys

import numpy as np


def read_ids(path):
    with open(path) as f:
        text = f.read()
    return np.array([int(p) for p in text.replace(",", " ").split()], dtype=np.int64)


def compare_logits(ref, ours_path, n_rows, tol):
    """Returns True when all rows pass.  ref: [n_ref_rows, n_vocab]."""
    n_vocab = ref.shape[1]
    if ours_path.endswith(".npz"):
        raw = np.load(ours_path)["logits"].astype("<f4").reshape(-1)
        n_rows = raw.size // n_vocab if raw.size % n_vocab == 0 else -1
        if n_rows <= 0:
            raise ValueError("%s: logits are not rows of n_vocab %d" % (ours_path, n_vocab))
    else:
        raw = np.fromfile(ours_path, dtype="<f4")
    if n_rows <= 0:
        raise ValueError("--rows must be positive")
    if raw.size != n_rows * n_vocab:
        raise ValueError("%s holds %d floats, expected rows %d x n_vocab %d = %d"
                         % (ours_path, raw.size, n_rows, n_vocab, n_rows * n_vocab))
    if n_rows > ref.shape[0]:
        raise ValueError("%s has %d rows but the reference only %d (use --all-logits)"
                         % (ours_path, n_rows, ref.shape[0]))
    ours = raw.reshape(n_rows, n_vocab).astype(np.float64)
    r = ref[-n_rows:].astype(np.float64)
    ok = True
    if not np.all(np.isfinite(r)):
        print("FAIL: reference contains NaN/Inf")
        ok = False
    bad = ~np.isfinite(ours)
    if bad.any():
        rows = sorted(set(np.nonzero(bad)[0].tolist()))
        print("FAIL: ours contains %d NaN/Inf values (rows %s)" % (int(bad.sum()), rows[:10]))
        return False
    worst = 0.0
    first = ref.shape[0] - n_rows
    for i in range(n_rows):
        d = ours[i] - r[i]
        den = np.linalg.norm(r[i])
        rel = np.linalg.norm(d) / den if den > 0 else np.linalg.norm(d)
        worst = max(worst, rel)
        print("row %4d: rel_l2 %.3e  max_abs %.3e  argmax ref %d ours %d%s"
              % (first + i, rel, np.max(np.abs(d)), int(np.argmax(r[i])),
                 int(np.argmax(ours[i])), "" if rel <= tol else "  FAIL"))
    print("max rel_l2 %.3e (tol %.1e)" % (worst, tol))
    return ok and worst <= tol


def compare_tokens(ref_ids, margin, ours_ids, tie_margin, prefix_ok):
    n = min(len(ref_ids), len(ours_ids))
    div = next((i for i in range(n) if ref_ids[i] != ours_ids[i]), None)
    print("tokens ref  (%d): %s" % (len(ref_ids), ",".join(map(str, ref_ids))))
    print("tokens ours (%d): %s" % (len(ours_ids), ",".join(map(str, ours_ids))))
    if div is not None:
        m = margin[div] if margin is not None and div < len(margin) else None
        where = "tokens differ at step %d: ref %d ours %d" % (div, ref_ids[div], ours_ids[div])
        if m is not None:
            where += " (ref top-1 minus top-2 logit %.4g)" % m
        if m is not None and m < tie_margin:
            print("ok: " + where + ", a near tie under --tie-margin %g" % tie_margin)
            return True
        print("FAIL: " + where)
        return False
    if len(ours_ids) > len(ref_ids):
        print("FAIL: ours has %d tokens, the reference only %d" % (len(ours_ids), len(ref_ids)))
        return False
    if len(ours_ids) < len(ref_ids) and not prefix_ok:
        print("FAIL: ours stops after %d of %d tokens (use --prefix-ok if it stopped on purpose)"
              % (len(ours_ids), len(ref_ids)))
        return False
    print("tokens agree (%d)" % len(ours_ids))
    return True


def main(argv=None):
    ap = argparse.ArgumentParser(description="compare llamad logits/tokens with the numpy reference")
    ap.add_argument("ref", help="REF.npz from ref_forward.py")
    ap.add_argument("ours", nargs="?", help="llamad logits: raw little-endian float32 [rows, n_vocab]")
    ap.add_argument("--rows", type=int, default=1, help="rows in OURS (default 1)")
    ap.add_argument("--tol", type=float, default=1e-3, help="max relative L2 error per row")
    ap.add_argument("--tokens-ours", help="llamad's greedy token ids (text)")
    ap.add_argument("--tokens-ref", help="reference token ids (text); default: REF.npz's greedy")
    ap.add_argument("--tie-margin", type=float, default=0.0,
                    help="forgive a divergence where the reference's top-2 gap is below this")
    ap.add_argument("--prefix-ok", action="store_true", help="ours may stop before the reference")
    a = ap.parse_args(argv)

    try:
        z = np.load(a.ref)
        ok = True
        if a.ours is None and a.tokens_ours is None:
            ap.error("nothing to compare: give OURS.f32 and/or --tokens-ours")
        if a.ours is not None:
            ok = compare_logits(z["logits"], a.ours, a.rows, a.tol) and ok
        if a.tokens_ours is not None:
            if a.tokens_ref is not None:
                ref_ids, margin = read_ids(a.tokens_ref), None
            else:
                ref_ids, margin = z["greedy"].astype(np.int64), z["greedy_margin"]
            ok = compare_tokens(ref_ids, margin, read_ids(a.tokens_ours),
                                a.tie_margin, a.prefix_ok) and ok
    except (OSError, ValueError, KeyError) as e:
        print("compare-logits: %s" % e, file=sys.stderr)
        return 2
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
