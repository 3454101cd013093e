#!/usr/bin/env python3
"""test_openai.py - llamad through the official `openai` Python client and curl.

Completions and chat, streaming and not (with stream_options.include_usage),
/v1/models, usage counts, finish_reason, greedy output equal to
`llamad --prompt`, seeded sampling, logprobs, and the raw SSE framing as
curl sees it.  A key is configured when this build has a key option.
"""

import json
import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402

R = H.Report("openai")
CASES = ["models lists the model", "completion parses", "completion usage plausible",
         "finish_reason length at max_tokens", "greedy HTTP equals llamad --prompt",
         "completion stream with usage", "stream text equals non-stream text",
         "chat parses", "chat usage plausible", "chat stream first chunk has role",
         "chat stream with usage", "stop string ends the text (non-stream and stream)",
         "same seed same output at temperature 0.8",
         "completions logprobs=2", "chat logprobs top_logprobs=3",
         "curl SSE framing (completions)", "curl SSE framing (chat)"]
H.skip_all_without_model(R, CASES)

try:
    import openai
except ImportError:
    for c in CASES:
        R.skip(c, "the openai package is not installed for " + sys.executable)
    sys.exit(0)

PROMPT = "The capital of France is"
N = 16
KEY = "sk-llamad-e2e-0123456789abcdef"
MESSAGES = [{"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "Name three colours."}]


case = H.case_of(R)   # @case("name"): an exception in it becomes a FAIL line


def usage_ok(u, max_tokens):
    if u is None:
        return "no usage"
    if not (u.prompt_tokens > 0):
        return "prompt_tokens %r" % u.prompt_tokens
    if not (0 <= u.completion_tokens <= max_tokens):
        return "completion_tokens %r, max_tokens %d" % (u.completion_tokens, max_tokens)
    if u.total_tokens != u.prompt_tokens + u.completion_tokens:
        return "total_tokens %r != %r + %r" % (u.total_tokens, u.prompt_tokens,
                                              u.completion_tokens)
    return None


def main():
    d = H.Daemon()
    args = H.auth_args(KEY, d.tmp)
    key = KEY if args else None
    d.extra_args += args or []
    try:
        d.start()
    except H.DaemonError as ex:
        for c in CASES:
            R.fail(c, str(ex) if c == CASES[0] else "daemon did not start")
        R.finish()
    try:
        run(d, key)
    finally:
        rc = d.stop()
        R.check("daemon exits 0 on SIGTERM", rc == 0, "exit status %r\n%s" % (rc, d.log()[-1500:]))
    R.finish()


def run(d, key):
    client = openai.OpenAI(base_url=d.base + "/v1", api_key=key or "unused", max_retries=0,
                           timeout=120)
    state = {"model": os.path.basename(H.model_path())}

    @case("models lists the model")
    def _(name):
        ms = client.models.list()
        ids = [m.id for m in ms.data]
        state["model"] = ids[0] if ids else state["model"]
        base = os.path.basename(H.model_path())
        names = (base, os.path.splitext(base)[0])
        R.check(name, len(ids) == 1 and ids[0] in names and ms.data[0].object == "model",
                "models: %r (serving %s)" % (ids, base))

    model = state["model"]

    @case("completion parses")
    def _(name):
        r = client.completions.create(model=model, prompt=PROMPT, max_tokens=N, temperature=0)
        state["greedy"] = r.choices[0].text
        state["greedy_usage"] = r.usage
        R.check(name, r.object == "text_completion" and len(r.choices) == 1
                and isinstance(r.choices[0].text, str) and r.choices[0].index == 0
                and r.id and isinstance(r.created, int) and r.model,
                "response: %r" % r)

    @case("completion usage plausible")
    def _(name):
        why = usage_ok(state.get("greedy_usage"), N)
        R.check(name, why is None, why)

    @case("finish_reason length at max_tokens")
    def _(name):
        r = client.completions.create(model=model, prompt=PROMPT, max_tokens=3, temperature=0)
        R.check(name, r.choices[0].finish_reason == "length" and r.usage.completion_tokens == 3,
                "finish_reason %r, usage %r" % (r.choices[0].finish_reason, r.usage))

    @case("greedy HTTP equals llamad --prompt")
    def _(name):
        cli = H.greedy_cli(PROMPT, N)
        R.check(name, "greedy" in state and cli == state["greedy"],
                "cli %r\nhttp %r" % (cli, state.get("greedy")))

    @case("completion stream with usage")
    def _(name):
        s = client.completions.create(model=model, prompt=PROMPT, max_tokens=N, temperature=0,
                                      stream=True, stream_options={"include_usage": True})
        text, usage, finish, after_usage = "", None, None, False
        for ch in s:
            if usage is not None:
                after_usage = True
            if ch.usage is not None:
                usage = ch.usage
                if ch.choices:
                    after_usage = True   # the usage chunk must have choices []
            for c in ch.choices:
                text += c.text or ""
                finish = c.finish_reason or finish
        state["stream_text"] = text
        why = usage_ok(usage, N)
        R.check(name, why is None and finish in ("length", "stop") and not after_usage,
                "usage: %s; finish %r; chunks after/with usage %r" % (why, finish, after_usage))

    @case("stream text equals non-stream text")
    def _(name):
        R.check(name, state.get("stream_text") == state.get("greedy"),
                "stream %r\nplain %r" % (state.get("stream_text"), state.get("greedy")))

    @case("chat parses")
    def _(name):
        r = client.chat.completions.create(model=model, messages=MESSAGES, max_tokens=N,
                                           temperature=0)
        m = r.choices[0].message
        state["chat"] = m.content
        state["chat_usage"] = r.usage
        R.check(name, r.object == "chat.completion" and m.role == "assistant"
                and isinstance(m.content, str) and m.content != ""
                and r.choices[0].finish_reason in ("stop", "length"), "response: %r" % r)

    @case("chat usage plausible")
    def _(name):
        why = usage_ok(state.get("chat_usage"), N)
        R.check(name, why is None, why)

    @case("chat stream first chunk has role")
    def _(name):
        s = client.chat.completions.create(model=model, messages=MESSAGES, max_tokens=N,
                                           temperature=0, stream=True,
                                           stream_options={"include_usage": True})
        chunks = list(s)
        state["chat_chunks"] = chunks
        first = chunks[0] if chunks else None
        R.check(name, first is not None and first.object == "chat.completion.chunk"
                and first.choices and first.choices[0].delta.role == "assistant",
                "first chunk %r" % first)

    @case("chat stream with usage")
    def _(name):
        chunks = state.get("chat_chunks") or []
        text = "".join((c.delta.content or "") for ch in chunks for c in ch.choices)
        usage = [ch.usage for ch in chunks if ch.usage is not None]
        last = chunks[-1] if chunks else None
        why = usage_ok(usage[-1] if usage else None, N)
        R.check(name, why is None and len(usage) == 1 and last is not None
                and last.usage is not None and last.choices == [] and text == state.get("chat"),
                "usage %s (%d usage chunks); last %r; text %r vs %r"
                % (why, len(usage), last, text, state.get("chat")))

    @case("stop string ends the text (non-stream and stream)")
    def _(name):
        greedy = state.get("greedy") or ""
        cut = greedy.find("\n")
        if cut <= 0:
            R.skip(name, "the greedy text has no newline to stop at: %r" % greedy)
            return
        want = greedy[:cut]
        r = client.completions.create(model=model, prompt=PROMPT, max_tokens=N, temperature=0,
                                      stop=["\n"])
        s = client.completions.create(model=model, prompt=PROMPT, max_tokens=N, temperature=0,
                                      stop=["\n"], stream=True)
        chunks = list(s)
        st = "".join(c.text or "" for ch in chunks for c in ch.choices)
        fin = [c.finish_reason for ch in chunks for c in ch.choices if c.finish_reason]
        R.check(name, r.choices[0].text == want and r.choices[0].finish_reason == "stop"
                and st == want and fin == ["stop"],
                "want %r; got %r (%r), stream %r (%r)" % (want, r.choices[0].text,
                                                         r.choices[0].finish_reason, st, fin))

    @case("same seed same output at temperature 0.8")
    def _(name):
        outs = [client.completions.create(model=model, prompt="Once upon a time", max_tokens=24,
                                          temperature=0.8, seed=1234).choices[0].text
                for _ in range(2)]
        R.check(name, outs[0] == outs[1] and outs[0] != "", "outputs %r" % outs)

    @case("completions logprobs=2")
    def _(name):
        r = client.completions.create(model=model, prompt=PROMPT, max_tokens=6, temperature=0,
                                      logprobs=2)
        lp = r.choices[0].logprobs
        n = r.usage.completion_tokens
        probs = []
        ok = lp is not None and len(lp.tokens) == n and len(lp.token_logprobs) == n \
            and lp.top_logprobs is not None and len(lp.top_logprobs) == n \
            and "".join(lp.tokens) == r.choices[0].text
        if ok:
            for tok, tlp, top in zip(lp.tokens, lp.token_logprobs, lp.top_logprobs):
                probs.append((tok, tlp, top))
                if not (isinstance(tlp, float) and tlp <= 1e-6) or not (1 <= len(top) <= 3):
                    ok = False
                elif max(top.values()) > tlp + 1e-4:   # greedy: the chosen token is the top one
                    ok = False
        R.check(name, ok, "logprobs %r" % (lp,))

    @case("chat logprobs top_logprobs=3")
    def _(name):
        r = client.chat.completions.create(model=model, messages=MESSAGES, max_tokens=6,
                                           temperature=0, logprobs=True, top_logprobs=3)
        lp = r.choices[0].logprobs
        ok = lp is not None and lp.content is not None and len(lp.content) == r.usage.completion_tokens
        if ok:
            for t in lp.content:
                if not (isinstance(t.token, str) and t.logprob <= 1e-6 and len(t.top_logprobs) == 3):
                    ok = False
                    break
                if t.bytes is not None and bytes(t.bytes).decode("utf-8", "replace") != t.token \
                        and "\ufffd" not in t.token:
                    ok = False
                    break
                if max(x.logprob for x in t.top_logprobs) > t.logprob + 1e-4:
                    ok = False
                    break
            ok = ok and "".join(t.token for t in lp.content) == r.choices[0].message.content
        R.check(name, ok, "logprobs %r" % (lp,))

    curl_sse(d, key, model, "curl SSE framing (completions)", "/v1/completions",
             {"model": model, "prompt": PROMPT, "max_tokens": 8, "temperature": 0, "stream": True,
              "stream_options": {"include_usage": True}}, chat=False)
    curl_sse(d, key, model, "curl SSE framing (chat)", "/v1/chat/completions",
             {"model": model, "messages": MESSAGES, "max_tokens": 8, "temperature": 0,
              "stream": True, "stream_options": {"include_usage": True}}, chat=True)


def curl_sse(d, key, model, name, path, body, chat):
    if shutil.which("curl") is None:
        R.skip(name, "curl is not installed")
        return
    try:
        hdr = os.path.join(d.tmp, "curl-headers")
        cmd = ["curl", "-sS", "-N", "--max-time", "60", "-D", hdr, "-H",
               "Content-Type: application/json", "--data-binary", json.dumps(body),
               d.base + path]
        if key:
            cmd[1:1] = ["-H", "Authorization: Bearer " + key]
        out = subprocess.run(cmd, capture_output=True, timeout=90).stdout
        with open(hdr, "rb") as f:
            head = f.read().decode("latin-1").lower()
        datas, problem = H.sse_parse(out)
        if problem is None and "content-type: text/event-stream" not in head:
            problem = "content-type is not text/event-stream: %r" % head[:300]
        chunks = []
        if problem is None:
            for x in datas[:-1]:
                try:
                    chunks.append(json.loads(x))
                except ValueError:
                    problem = "data line is not JSON: %r" % x[:200]
                    break
        want = "chat.completion.chunk" if chat else "text_completion"
        if problem is None and not chunks:
            problem = "no chunks"
        if problem is None and any(c.get("object") != want for c in chunks):
            problem = "a chunk's object is not %s" % want
        if problem is None and chat:
            d0 = (chunks[0].get("choices") or [{}])[0].get("delta", {})
            if d0.get("role") != "assistant":
                problem = "first chat chunk has no role: %r" % chunks[0]
        if problem is None and not (chunks[-1].get("usage") and chunks[-1].get("choices") == []):
            problem = "last chunk is not the usage chunk: %r" % chunks[-1]
        if problem is None and len({c.get("id") for c in chunks}) != 1:
            problem = "chunks do not share one id"
        R.check(name, problem is None, "%s\nstream: %r" % (problem, out[:600]))
    except Exception as ex:  # noqa: BLE001
        R.fail(name, "%s: %s" % (type(ex).__name__, ex))


if __name__ == "__main__":
    main()
