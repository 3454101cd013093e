# The daemon over HTTP, quickly: a completion, a streamed chat, /v1/models,
# /tokenize and /detokenize, 404, 405, 415, 413, /metrics, API keys, SIGTERM.
. "$LLAMAD_SRCDIR/tests/e2e/lib.sh"

# wait_ready: /health turns 200 once the model is loaded and the engine steps.
wait_ready() {
    i=0
    while [ $i -lt 300 ]; do
        [ "$(curl -s -o /dev/null -w '%{http_code}' "$BASE/health")" = 200 ] && return 0
        sleep 0.1
        i=$((i + 1))
    done
    return 1
}

# post PATH BODY [CURL ARGS...]: status code to stdout, body in $E2E_TMP/out
post() {
    p=$1; b=$2; shift 2
    curl -s -o "$E2E_TMP/out" -w '%{http_code}' -H 'Content-Type: application/json' "$@" \
        -d "$b" "$BASE$p"
}

# json EXPR: evaluate a Python expression over the JSON in $E2E_TMP/out (bound to j)
json() {
    "$PYTHON" -c "import json,sys; j=json.load(open(sys.argv[1])); sys.exit(0 if ($1) else 1)" "$E2E_TMP/out"
}

if ! have_model; then
    skip "http basics (the default model is not fetched)"
    exit 0
fi
if ! start_llamad --backend cpu --kv-memory 64M; then
    fail "daemon starts"
    exit 0
fi
BASE="http://127.0.0.1:$PORT"
check "daemon becomes ready" wait_ready
check "start-up line names the CPU kernels" \
    grep -Eq 'backend cpu \(cpu-isa (amx|avx512|avxvnni|avx2|portable), cpu-precision exact, K/V f32, [0-9]+ threads\)' \
    "$E2E_TMP/llamad.log"

code=$(post /v1/completions '{"prompt": "The capital of France is", "max_tokens": 8, "temperature": 0}')
check "completion answers 200" [ "$code" = 200 ]
check "completion has text, finish_reason and usage" json \
    "j['object']=='text_completion' and isinstance(j['choices'][0]['text'], str) and j['choices'][0]['finish_reason'] in ('stop','length') and j['usage']['prompt_tokens']>0 and j['usage']['completion_tokens']<=8"

code=$(post /v1/chat/completions '{"messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 6, "stream": true, "stream_options": {"include_usage": true}}' -N)
check "streamed chat answers 200" [ "$code" = 200 ]
"$PYTHON" - "$E2E_TMP/out" <<'EOF'
import json, sys
text = open(sys.argv[1]).read()
assert text.endswith("data: [DONE]\n\n"), "no [DONE] at the end"
frames = [f for f in text.split("\n\n") if f]
chunks = [json.loads(f[6:]) for f in frames if f.startswith("data: ") and f != "data: [DONE]"]
assert chunks[0]["choices"][0]["delta"].get("role") == "assistant", "first chunk lacks the role"
fins = [c for c in chunks if c["choices"] and c["choices"][0].get("finish_reason")]
assert len(fins) == 1, "one final chunk with finish_reason"
assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] <= 6, "usage chunk last"
EOF
check "stream: role chunk, one finish_reason, usage chunk, [DONE]" [ $? = 0 ]

code=$(curl -s -o "$E2E_TMP/out" -w '%{http_code}' "$BASE/v1/models")
check "/v1/models lists the model" sh -c "[ '$code' = 200 ] && grep -q '\"object\":\"list\"' '$E2E_TMP/out'"

code=$(post /tokenize '{"content": "Hello world, héllo!", "add_special": false}')
toks=$("$PYTHON" -c "import json,sys; print(json.dumps(json.load(open(sys.argv[1]))['tokens']))" "$E2E_TMP/out" 2>/dev/null)
code2=$(post /detokenize "{\"tokens\": $toks}")
check "/tokenize then /detokenize round-trips" json "j['content']=='Hello world, héllo!'"

# the tokens agree with the reference tokenizer, when the gguf package is at hand
ref=$("$PYTHON" - "$LLAMAD_SRCDIR/models/SmolLM2-135M-Instruct.Q4_1.gguf" 2>/dev/null <<'EOF'
import json, sys
from gguf import GGUFReader
from tokenizers import Tokenizer, models, pre_tokenizers, decoders
r = GGUFReader(sys.argv[1])
f = r.fields
def strs(k): return [bytes(f[k].parts[i]).decode() for i in f[k].data]
vocab = {t: i for i, t in enumerate(strs("tokenizer.ggml.tokens"))}
merges = [tuple(m.split(" ", 1)) for m in strs("tokenizer.ggml.merges")]
tk = Tokenizer(models.BPE(vocab=vocab, merges=merges))
tk.pre_tokenizer = pre_tokenizers.Sequence([
    pre_tokenizers.Digits(individual_digits=True),
    pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
print(json.dumps(tk.encode("Hello world, héllo!", add_special_tokens=False).ids))
EOF
)
if [ -n "$ref" ]; then
    check "/tokenize matches the reference tokenizer" [ "$toks" = "$ref" ] || echo "  ours $toks ref $ref"
else
    skip "/tokenize matches the reference tokenizer (no gguf/tokenizers package)"
fi

code=$(curl -s -o "$E2E_TMP/out" -w '%{http_code}' "$BASE/no/such/route")
check "unknown route is 404 with the error object" sh -c "[ '$code' = 404 ] && grep -q '\"error\"' '$E2E_TMP/out'"
code=$(curl -s -D "$E2E_TMP/hdr" -o "$E2E_TMP/out" -w '%{http_code}' "$BASE/v1/completions")
check "GET on a POST route is 405" sh -c "[ '$code' = 405 ] && grep -q '\"type\"' '$E2E_TMP/out'"
check "405 names the allowed method" grep -qi '^Allow: POST' "$E2E_TMP/hdr"
code=$(curl -s -o "$E2E_TMP/out" -w '%{http_code}' -d '{"prompt":"x"}' "$BASE/v1/completions")
check "a form body is 415" [ "$code" = 415 ]
head -c 2000000 /dev/zero | tr '\0' 'a' > "$E2E_TMP/big"
code=$(curl -s -o "$E2E_TMP/out" -w '%{http_code}' -H 'Content-Type: application/json' \
    --data-binary @"$E2E_TMP/big" "$BASE/v1/completions")
check "a 2 MB body is 413" [ "$code" = 413 ]
code=$(post /v1/completions '{"prompt": "hi", "max_tokens": 100000000}')
check "max_tokens past the context is 400" [ "$code" = 400 ]
code=$(curl -s -o "$E2E_TMP/out" -w '%{http_code}' "$BASE/metrics")
check "/metrics needs a key only when keys are set" [ "$code" = 200 ]
check "/metrics counts the completion" grep -q 'llamad_requests_total{route="/v1/completions",code="200"} 1' "$E2E_TMP/out"

stop_llamad
check "SIGTERM exits 0" [ $? = 0 ]

printf 'key-one\n# comment\nkey-two\n' > "$E2E_TMP/keys"
if start_llamad --backend cpu --kv-memory 64M --api-key-file "$E2E_TMP/keys"; then
    BASE="http://127.0.0.1:$PORT"
    wait_ready
    code=$(curl -s -o "$E2E_TMP/out" -w '%{http_code}' "$BASE/v1/models")
    check "no key is 401 authentication_error" sh -c "[ '$code' = 401 ] && grep -q authentication_error '$E2E_TMP/out'"
    code=$(curl -s -o "$E2E_TMP/out" -w '%{http_code}' -H 'Authorization: Bearer key-three' "$BASE/v1/models")
    check "a wrong key is 401" [ "$code" = 401 ]
    code=$(curl -s -o "$E2E_TMP/out" -w '%{http_code}' -H 'Authorization: Bearer key-two' "$BASE/v1/models")
    check "a listed key is accepted" [ "$code" = 200 ]
    code=$(curl -s -o /dev/null -w '%{http_code}' "$BASE/health")
    check "/health stays public" [ "$code" = 200 ]
    code=$(curl -s -o /dev/null -w '%{http_code}' "$BASE/metrics")
    check "/metrics is private by default" [ "$code" = 401 ]
    check "keys never reach the log" sh -c "! grep -q 'key-one\|key-two\|key-three' '$E2E_TMP/llamad.log'"
    stop_llamad
else
    fail "daemon starts with a key file"
fi

# A model that never finishes loading (a FIFO nobody writes): /health says
# loading, generation routes 503 with Retry-After, and SIGTERM exits at once.
mkfifo "$E2E_TMP/slow.gguf"
if start_llamad --backend cpu --model "$E2E_TMP/slow.gguf"; then
    BASE="http://127.0.0.1:$PORT"
    code=$(curl -s -o "$E2E_TMP/out" -w '%{http_code}' "$BASE/health")
    check "/health is 503 loading during the load" sh -c "[ '$code' = 503 ] && grep -q loading '$E2E_TMP/out'"
    hdr=$(curl -s -D - -o /dev/null -H 'Content-Type: application/json' -d '{"prompt":"x"}' "$BASE/v1/completions")
    check "requests during the load get 503 with Retry-After" sh -c "echo '$hdr' | grep -q '^HTTP/1.1 503' && echo '$hdr' | grep -qi '^Retry-After: [1-9]'"
    t0=$(date +%s)
    stop_llamad
    rc=$?
    t1=$(date +%s)
    check "SIGTERM during the load exits 0 within 2 s" [ $rc = 0 -a $((t1 - t0)) -le 2 ]
else
    fail "daemon starts while the model loads"
fi
