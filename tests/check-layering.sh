#!/bin/sh
# check-layering.sh - the dependency rules of docs/ARCHITECTURE.md, checked
# on the include lines of the tree (POSIX sh + awk, no build needed).
#
# One line per rule: "PASS: layering/RULE" or "FAIL: layering/RULE" followed
# by the offending files and lines.  Rules:
#
#   base-no-upward    base/ includes nothing from engine/, server/ or cuda/
#   server-api        server/ includes, from outside server/, only
#                     engine/engine.h and base/ headers (and the build's config.h)
#   engine-h-public   engine/engine.h, the server's whole view of the engine,
#                     includes only base/ headers
#   cuda-registry     only the backend registry (engine/registry.{c,h}), cuda/,
#                     tests/gpu/, bench/bench_cuda.c and the unit tests of
#                     cuda/'s plain-C headers (att_split.h's host-side rule,
#                     qdequant.h's dequantisation) name HAVE_CUDA or include
#                     a cuda/ header
#   grammar-leaf      engine/grammar/ (the constraint engine) includes only base/
#                     and engine/grammar/ headers: no model or tokenizer knowledge
#   no-mutual         no two files include each other
#   file-length       no C/CUDA source or header under base/ engine/ server/ cuda/
#                     is over 700 lines
#
# Usage: sh tests/check-layering.sh [SRCDIR]   (default: $srcdir, else .)

# Known violations, one per file and rule, each being removed by work in
# progress.  The check fails when an entry is no longer needed, so that
# the list can only shrink.
EXCEPTIONS='
'
MAX_LINES=700

top=${1:-${srcdir:-.}}
cd "$top" || { echo "FAIL: layering (no source tree at $top)"; exit 1; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/layering.XXXXXX") || exit 1
[ -n "${LAYERING_KEEP:-}" ] || trap 'rm -rf "$tmp"' EXIT INT TERM

# The files: what git tracks or would track; in an unpacked tarball, every file.
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    git ls-files --cached --others --exclude-standard >"$tmp/all"
else
    find . -type f ! -path './.git/*' | sed 's|^\./||' | grep -v '^config\.h$' >"$tmp/all"
fi
grep -E '^(base|engine|server|cuda|tests|bench)/.*\.(c|h|cu|cuh)$' "$tmp/all" >"$tmp/src"

# "file<TAB>line<TAB>included path, resolved from the top" for every quoted include.
# A name resolves next to its file, then from the top; the unit tests also
# build with -I tests/unit and -I engine.
xargs grep -n '^[[:space:]]*#[[:space:]]*include[[:space:]]*"' <"$tmp/src" 2>/dev/null |
awk -v listfile="$tmp/all" '
function norm(p,    n, i, k, out, parts, res) {
    n = split(p, parts, "/"); k = 0
    for (i = 1; i <= n; i++) {
        if (parts[i] == "" || parts[i] == ".") continue
        if (parts[i] == "..") { if (k > 0) k--; else res[++k] = ".."; continue }
        res[++k] = parts[i]
    }
    out = ""
    for (i = 1; i <= k; i++) out = out (i > 1 ? "/" : "") res[i]
    return out
}
function dir(p) { return sub(/\/[^\/]*$/, "", p) ? p : "" }
BEGIN { while ((getline f < listfile) > 0) have[f] = 1 }
{
    file = $0; sub(/:.*/, "", file)
    rest = substr($0, length(file) + 2); line = rest; sub(/:.*/, "", line)
    name = rest; sub(/^[^"]*"/, "", name); sub(/".*/, "", name)
    cand[1] = norm(dir(file) "/" name); cand[2] = norm(name)
    cand[3] = norm("tests/unit/" name); cand[4] = norm("engine/" name)
    nc = file ~ /^tests\// ? 4 : 2
    target = ""
    for (i = 1; i <= nc; i++) if (cand[i] in have) { target = cand[i]; break }
    if (target == "") target = (name == "../config.h" || name == "config.h") ? "config.h" : cand[1]
    print file "\t" line "\t" target
}' >"$tmp/inc"

failed=0
# report RULE: the violations in $tmp/v (one "file<TAB>what" a line), less the exceptions.
report() {
    rule=$1
    printf '%s\n' "$EXCEPTIONS" | awk -v r="$rule" '$1 == r { print $2 }' | sort -u >"$tmp/exc"
    cut -f1 "$tmp/v" | sort -u >"$tmp/vfiles"
    awk -F'\t' 'FILENAME == ARGV[1] { exc[$1] = 1; next } !($1 in exc)' "$tmp/exc" "$tmp/v" >"$tmp/bad"
    comm -23 "$tmp/exc" "$tmp/vfiles" >"$tmp/stale"
    if [ -s "$tmp/bad" ] || [ -s "$tmp/stale" ]; then
        echo "FAIL: layering/$rule"
        sed 's/^/  /; s/\t/: /g' "$tmp/bad"
        sed 's/^/  exception no longer needed, remove it from tests\/check-layering.sh: /' "$tmp/stale"
        failed=$((failed + 1))
    else
        echo "PASS: layering/$rule"
    fi
}

# base/ looks at nothing above it.
awk -F'\t' '$1 ~ /^base\// && $3 !~ /^base\// { print $1 "\t" $2 "\tincludes " $3 }' "$tmp/inc" >"$tmp/v"
report base-no-upward

# server/ sees the engine through engine/engine.h alone.
awk -F'\t' '$1 ~ /^server\// && $3 !~ /^server\// && $3 !~ /^base\// &&
            $3 != "engine/engine.h" && $3 != "config.h" { print $1 "\t" $2 "\tincludes " $3 }' \
    "$tmp/inc" >"$tmp/v"
report server-api

awk -F'\t' '$1 == "engine/engine.h" && $3 !~ /^base\// { print $1 "\t" $2 "\tincludes " $3 }' \
    "$tmp/inc" >"$tmp/v"
report engine-h-public

# Only the registry knows that CUDA exists.
cuda_ok='^(engine/registry\.[ch]|cuda/.*|tests/gpu/.*|bench/bench_cuda\.c|tests/unit/test_att_split\.c|tests/unit/test_qdequant\.c)$'
awk -F'\t' -v ok="$cuda_ok" '$1 !~ ok && $3 ~ /^cuda\// { print $1 "\t" $2 "\tincludes " $3 }' \
    "$tmp/inc" >"$tmp/v"
grep -E -v "$cuda_ok" "$tmp/src" | xargs grep -n 'HAVE_CUDA' 2>/dev/null |
    awk '{ f = $0; sub(/:.*/, "", f); r = substr($0, length(f) + 2); l = r; sub(/:.*/, "", l);
           print f "\t" l "\tnames HAVE_CUDA" }' >>"$tmp/v"
report cuda-registry

# The constraint engine knows bytes and grammars, nothing of models.
awk -F'\t' '$1 ~ /^engine\/grammar\// && $3 !~ /^engine\/grammar\// && $3 !~ /^base\// &&
            $3 != "config.h" { print $1 "\t" $2 "\tincludes " $3 }' "$tmp/inc" >"$tmp/v"
report grammar-leaf

# No two files include each other.
awk -F'\t' '{ e[$1 "\t" $3] = $2 }
    END { for (k in e) { split(k, p, "\t"); if ((p[2] "\t" p[1]) in e && p[1] < p[2])
          print p[1] "\t" e[k] "\tincludes " p[2] ", which includes it back (line " e[p[2] "\t" p[1]] ")" } }' \
    "$tmp/inc" | sort >"$tmp/v"
report no-mutual

# One concept per file.
grep -E '^(base|engine|server|cuda)/' "$tmp/src" | xargs wc -l |
    awk -v max="$MAX_LINES" '$2 != "total" && $1 > max { print $2 "\t" $1 " lines\tover " max }' >"$tmp/v"
report file-length

[ "$failed" -eq 0 ]
