#!/bin/sh
# Regenerate tests/ref/goldens/greedy-smollm2.json: llamad's greedy and
# seeded sampled outputs on a fixed prompt set (the prompts live in
# tests/unit/test_engine.c, golden_prompts), CPU backend, default model.
#
# usage: tests/ref/gen-greedy-goldens.sh [BUILDDIR]
#
# Run it on the code *before* a change that must not change outputs, commit
# the file, then make the change: test_engine's
# outputs_equal_the_golden_of_the_code_before compares the new build's
# outputs with it token for token.  It runs that test with
# LLAMAD_GOLDEN_WRITE set, which writes the file instead of comparing.
set -eu
src=$(cd "$(dirname "$0")/../.." && pwd)
build=${1:-$src}
out=$src/tests/ref/goldens/greedy-smollm2.json
make -C "$build" -s tests/unit/test_engine
srcdir=$src LLAMAD_GOLDEN_WRITE=$out "$build/tests/unit/test_engine" outputs_equal_the_golden_of_the_code_before
