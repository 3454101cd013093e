#!/usr/bin/env python3
"""test_names.py - served model names, CORS, /tokenize pieces, a POST without
Content-Type, and /metrics as Prometheus tools read it.

One daemon with served-model-name aliases, allowed-origins, an API key and
metrics-vllm-names: the official `openai` client lists and retrieves the
model under each name; raw HTTP checks the CORS headers (allowed origin,
other origin, preflight without a key); promtool checks /metrics when it
is installed (SKIP otherwise).
"""

import json
import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402

R = H.Report("names")
CASES = ["models lists the first alias", "models.retrieve by each name",
         "models.retrieve unknown is 404 model_not_found", "completion by alias answers as the id",
         "completion by unknown model is 404", "CORS allowed origin gets the headers",
         "CORS other origin gets none", "CORS no origin gets none",
         "CORS preflight 204 without a key", "CORS preflight from other origin is refused",
         "tokenize pieces: strings or byte lists", "POST without Content-Type is JSON",
         "POST text/plain is 415", "vLLM dashboard metrics exist", "promtool check metrics"]
H.skip_all_without_model(R, CASES)

KEY = "sk-llamad-e2e-names-0123456789"
ALIASES = ["gpt-4o-mini", "my-model"]
ORIGIN = "https://app.example.com"


case = H.case_of(R)   # @case("name"): an exception in it becomes a FAIL line


def main():
    d = H.Daemon(["--api-key", KEY, "--served-model-name", " , ".join(ALIASES),
                  "--allowed-origins", ORIGIN + ", http://localhost:3000",
                  "--metrics-vllm-names", "yes"])
    try:
        d.start()
    except H.DaemonError as ex:
        for c in CASES:
            R.fail(c, str(ex) if c == CASES[0] else "daemon did not start")
        R.finish()
    try:
        run(d)
    finally:
        rc = d.stop()
        R.check("daemon exits 0 on SIGTERM", rc == 0, "exit status %r\n%s" % (rc, d.log()[-1500:]))
    R.finish()


def run(d):
    base = os.path.basename(H.model_path())
    try:
        import openai
    except ImportError:
        openai = None
    client = openai.OpenAI(base_url=d.base + "/v1", api_key=KEY, max_retries=0,
                           timeout=120) if openai else None

    def need_openai(name):
        if client is None:
            R.skip(name, "the openai package is not installed for " + sys.executable)
        return client is not None

    @case("models lists the first alias")
    def _(name):
        if need_openai(name):
            ids = [m.id for m in client.models.list().data]
            R.check(name, ids == [ALIASES[0]], "ids %r" % ids)

    @case("models.retrieve by each name")
    def _(name):
        if need_openai(name):
            got = [client.models.retrieve(n).id for n in ALIASES + [base]]
            R.check(name, got == [ALIASES[0]] * 3, "retrieved %r" % got)

    @case("models.retrieve unknown is 404 model_not_found")
    def _(name):
        st, _, b = H.request(d, "GET", "/v1/models/gpt-4", key=KEY)
        err = json.loads(b).get("error", {})
        ok = st == 404 and err.get("code") == "model_not_found"
        if ok and client is not None:
            try:
                client.models.retrieve("my-model-2")
                ok = False
            except openai.NotFoundError:
                pass
        R.check(name, ok, "status %d %r" % (st, b[:200]))

    @case("completion by alias answers as the id")
    def _(name):
        st, _, j, b = H.post_json(d, "/v1/completions", {"model": ALIASES[1], "prompt": "Hi",
                                                         "max_tokens": 2}, key=KEY)
        R.check(name, st == 200 and j["model"] == ALIASES[0], "status %d %r" % (st, b[:200]))

    @case("completion by unknown model is 404")
    def _(name):
        st, _, j, b = H.post_json(d, "/v1/completions", {"model": "gpt-4o", "prompt": "Hi",
                                                         "max_tokens": 2}, key=KEY)
        R.check(name, st == 404 and j["error"]["code"] == "model_not_found",
                "status %d %r" % (st, b[:200]))

    @case("CORS allowed origin gets the headers")
    def _(name):
        st, h, _ = H.request(d, "GET", "/v1/models", key=KEY, headers={"Origin": ORIGIN})
        st2, h2, _ = H.request(d, "POST", "/v1/completions", {"prompt": "Hi", "max_tokens": 1},
                               headers={"Origin": "http://localhost:3000"})   # no key: 401
        R.check(name, st == 200 and h.get("access-control-allow-origin") == ORIGIN
                and h.get("vary") == "Origin" and st2 == 401
                and h2.get("access-control-allow-origin") == "http://localhost:3000",
                "%d %r / %d %r" % (st, h, st2, h2))

    @case("CORS other origin gets none")
    def _(name):
        bad = [k for o in ("https://evil.example.com", "https://app.example.com.evil.net",
                           "http://app.example.com", "null")
               for k in H.request(d, "GET", "/v1/models", key=KEY, headers={"Origin": o})[1]
               if k.startswith("access-control-")]
        R.check(name, not bad, "headers %r" % bad)

    @case("CORS no origin gets none")
    def _(name):
        st, h, _ = H.request(d, "GET", "/v1/models", key=KEY)
        R.check(name, st == 200 and not any(k.startswith("access-control-") for k in h), repr(h))

    @case("CORS preflight 204 without a key")
    def _(name):
        pre = {"Origin": ORIGIN, "Access-Control-Request-Method": "POST",
               "Access-Control-Request-Headers": "authorization, content-type"}
        st, h, b = H.request(d, "OPTIONS", "/v1/chat/completions", headers=pre)
        st2, h2, _ = H.request(d, "OPTIONS", "/v1/models/my-model", headers=pre)
        R.check(name, st == 204 and b == b"" and h.get("access-control-allow-origin") == ORIGIN
                and "POST" in h.get("access-control-allow-methods", "")
                and "Authorization" in h.get("access-control-allow-headers", "")
                and "Content-Type" in h.get("access-control-allow-headers", "")
                and int(h.get("access-control-max-age", "0")) > 0
                and st2 == 204 and "GET" in h2.get("access-control-allow-methods", ""),
                "%d %r %r / %d %r" % (st, h, b[:100], st2, h2))

    @case("CORS preflight from other origin is refused")
    def _(name):
        pre = {"Origin": "https://evil.example.com", "Access-Control-Request-Method": "POST"}
        st, h, _ = H.request(d, "OPTIONS", "/v1/chat/completions", headers=pre)
        st2, _, _ = H.request(d, "OPTIONS", "/v1/chat/completions", headers={"Origin": ORIGIN})
        st3, _, _ = H.request(d, "OPTIONS", "/nope", headers={"Origin": ORIGIN,
                                                            "Access-Control-Request-Method": "GET"})
        R.check(name, st == 401 and not any(k.startswith("access-control-") for k in h)
                and st2 == 401 and st3 == 404, "%d %r / %d / %d" % (st, h, st2, st3))

    @case("tokenize pieces: strings or byte lists")
    def _(name):
        text = "h\u00e9llo \U0001F600 \u65e5\u672c"
        st, _, j, b = H.post_json(d, "/tokenize", {"content": text, "with_pieces": True}, key=KEY)
        toks = j["tokens"] if st == 200 else []
        raw = b"".join(t["piece"].encode() if isinstance(t["piece"], str) else bytes(t["piece"])
                       for t in toks)
        lists = [t["piece"] for t in toks if isinstance(t["piece"], list)]
        R.check(name, st == 200 and raw == text.encode() and "\ufffd" not in b.decode()
                and all(all(isinstance(x, int) and 0 <= x < 256 for x in p) for p in lists),
                "status %d pieces %r" % (st, toks))

    @case("POST without Content-Type is JSON")
    def _(name):
        st, _, b = H.request(d, "POST", "/tokenize", b'{"content":"hi"}', key=KEY)
        R.check(name, st == 200 and json.loads(b)["tokens"], "status %d %r" % (st, b[:200]))

    @case("POST text/plain is 415")
    def _(name):
        codes = [H.request(d, "POST", "/tokenize", b'{"content":"hi"}', key=KEY,
                           headers={"Content-Type": t})[0]
                 for t in ("text/plain", "application/x-www-form-urlencoded", "application/jsonx")]
        R.check(name, codes == [415, 415, 415], "statuses %r" % codes)

    st, _, text = H.request(d, "GET", "/metrics", key=KEY)
    text = text.decode() if st == 200 else ""

    @case("vLLM dashboard metrics exist")
    def _(name):
        m = H.metrics(d, key=KEY)
        want = ["vllm:e2e_request_latency_seconds_bucket", "vllm:prompt_tokens_total",
                "vllm:generation_tokens_total", "vllm:time_per_output_token_seconds_bucket",
                "vllm:num_requests_running", "vllm:num_requests_swapped",
                "vllm:num_requests_waiting", "vllm:time_to_first_token_seconds_bucket",
                "vllm:gpu_cache_usage_perc", "vllm:cpu_cache_usage_perc",
                "vllm:kv_cache_usage_perc", "vllm:request_prompt_tokens_bucket",
                "vllm:request_generation_tokens_bucket", "vllm:request_success_total",
                "llamad_kv_blocks", "llamad_requests_constrained_total",
                "llamad_requests_tool_calls_total"]
        missing = [w for w in want if H.metric(m, w) is None]
        stop = 'vllm:request_success_total{model_name="%s",finished_reason="stop"}' % ALIASES[0]
        R.check(name, not missing and stop in m and H.metric(m, "llamad_kv_blocks_total") is None
                and H.metric(m, "vllm:request_prompt_tokens_count") >= 1,
                "missing %r" % missing)

    @case("promtool check metrics")
    def _(name):
        tool = shutil.which("promtool")
        if tool is None:
            R.skip(name, "promtool is not installed (Debian: apt-get install prometheus)")
            return
        r = subprocess.run([tool, "check", "metrics"], input=text.encode(), capture_output=True,
                           timeout=60)
        # vLLM's names carry a colon, which promtool's linter flags; nothing else may be flagged
        lines = (r.stdout + r.stderr).decode().splitlines()
        other = [ln for ln in lines if ln.strip() and "should not contain ':'" not in ln]
        native = "\n".join(ln for ln in text.splitlines() if "vllm:" not in ln) + "\n"
        r2 = subprocess.run([tool, "check", "metrics"], input=native.encode(),
                            capture_output=True, timeout=60)
        R.check(name, text and not other and r2.returncode == 0,
                "flagged: %r / llamad's own series: rc %d %r" % (other, r2.returncode,
                                                                 (r2.stdout + r2.stderr)[:500]))


if __name__ == "__main__":
    main()
