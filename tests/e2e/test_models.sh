# Models from both sources load, and --dump-model describes each right:
# the default GGUF, and a small Hugging Face model made by the test set-up
# with its GGUF twin.  A bad file is refused with a message naming it.
. "$LLAMAD_SRCDIR/tests/e2e/lib.sh"

model=${LLAMAD_TEST_MODEL:-$LLAMAD_SRCDIR/models/SmolLM2-135M-Instruct.Q4_1.gguf}

# expect NAME FILE PATTERN...: every pattern (grep -E) is in FILE
expect() {
    name=$1 file=$2; shift 2
    for pat in "$@"; do
        grep -Eq "$pat" "$file" || { fail "$name" "no line matching '$pat' in:"; cat "$file"; return; }
    done
    pass "$name"
}

if [ -f "$model" ]; then
    "$LLAMAD_BIN" --model "$model" --dump-model > "$E2E_TMP/default.txt" 2>&1
    expect "dump-model: the default model" "$E2E_TMP/default.txt" \
        '^vocab size: +49152$' '^width \(n_embd\): +576$' '^layers: +30$' \
        '^heads: +9 \(key/value heads 3, head_dim 64\)$' '^ffn width: +1536$' '^context length: +8192$' \
        '^rope: +base 100000, 64 dims, interleaved-pair layout$' '^output embedding: +tied' \
        '^tokenizer: +byte-level BPE \(smollm\), 49152 tokens, bos 1, eos 2' \
        'blk\.29\.ffn_down\.weight +Q4_1 +\[ +1536, +576\]'
else
    skip "dump-model: the default model (not fetched)"
fi

if "$PYTHON" -c 'import numpy, gguf' 2>/dev/null && [ -f "$model" ]; then
    "$PYTHON" "$LLAMAD_SRCDIR/tests/ref/gguf-to-tokenizer-json.py" "$model" "$E2E_TMP/tokenizer.json"
    "$PYTHON" "$LLAMAD_SRCDIR/tests/ref/make-hf-model.py" "$E2E_TMP/hf" --layers 2 --dim 256 --heads 4 \
        --kv-heads 2 --ff 512 --llama3-rope --shards 2 --tokenizer-json "$E2E_TMP/tokenizer.json" \
        --gguf "$E2E_TMP/twin.gguf" --gguf-tokenizer-from "$model" >/dev/null
    "$LLAMAD_BIN" --model "$E2E_TMP/hf" --dump-model > "$E2E_TMP/hf.txt" 2>&1
    expect "dump-model: a sharded Hugging Face model" "$E2E_TMP/hf.txt" \
        'Hugging Face\)$' '^vocab size: +49152$' '^width \(n_embd\): +256$' '^layers: +2$' \
        '^heads: +4 \(key/value heads 2, head_dim 64\)$' '^ffn width: +512$' \
        'half-split layout, LLaMA-3 frequency scaling$' '^output embedding: +separate' \
        'model\.layers\.1\.mlp\.down_proj\.weight +F32 +\[ +512, +256\]'
    "$LLAMAD_BIN" --model "$E2E_TMP/twin.gguf" --dump-model > "$E2E_TMP/twin.txt" 2>&1
    expect "dump-model: its GGUF twin" "$E2E_TMP/twin.txt" \
        '\(GGUF\)$' '^layers: +2$' '^heads: +4 \(key/value heads 2, head_dim 64\)$' \
        'interleaved-pair layout, LLaMA-3 frequency scaling$'
else
    skip "dump-model: a Hugging Face model (numpy, gguf or the default model missing)"
fi

printf 'GGUF\003\000\000\000' > "$E2E_TMP/short.gguf"
msg=$("$LLAMAD_BIN" --model "$E2E_TMP/short.gguf" --dump-model 2>&1); rc=$?
if [ $rc -ne 0 ] && echo "$msg" | grep -q "short.gguf"; then
    pass "a truncated model file is refused with its name"
else
    fail "a truncated model file is refused with its name" "rc=$rc: $msg"
fi
