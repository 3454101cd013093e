#!/usr/bin/env python3
"""test_tools.py - tool calling on /v1/chat/completions, as its users see it.

With the official `openai` client on the default model (SmolLM2, ChatML:
Hermes-style <tool_call> blocks): tool_choice none / auto / required /
named, each streamed and not (for greedy decoding the calls the client
reassembles from the stream equal the unstreamed ones, ids aside, and no
<tool_call> markup ever reaches the content); a full round trip (call ->
tool message -> answer); n=2 with tools, streamed and not.  langchain-openai's
ChatOpenAI.bind_tools(...).invoke(...) returns tool_calls.  Hostile shapes
over HTTP are each a 400 whose param names the field: 1,000 functions, a
tool schema the structured-output limits refuse, duplicate tool names, a
tool message that answers no call, tools on /v1/completions.  logprobs
with tools streamed equal the unstreamed ones, each token's on the chunk
that delivers its text or its call.  A missing package SKIPs its cases.
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402

R = H.Report("tools")
NAMES = ["openai tool calling", "langchain bind_tools", "hostile tools"]
PROMPT = "What is the weather in Paris?"
MAX_TOKENS = 60

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Get the current weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"]}}}
TIME = {"type": "function", "function": {
    "name": "get_time", "description": "Get the local time in a time zone",
    "parameters": {"type": "object", "properties": {"zone": {"type": "string"}},
                   "required": ["zone"]}}}
TOOLS = [WEATHER, TIME]
NAMED = {"type": "function", "function": {"name": "get_weather"}}



def shot(city, cid, answer):
    """One earlier turn: the question, the call, its result, the answer."""
    return [{"role": "user", "content": "What is the weather in %s?" % city},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": cid, "type": "function", "function": {
                    "name": "get_weather", "arguments": json.dumps({"city": city})}}]},
            {"role": "tool", "tool_call_id": cid, "content": answer},
            {"role": "assistant", "content": "It is %s in %s." % (answer, city)}]


# with two calls before it, the 135M model opens a call itself under tool_choice auto:
# the lazy trigger and the stream's held-back text are exercised
SHOTS = (shot("London", "call_0", "rainy") + shot("Rome", "call_1", "sunny") +
         [{"role": "user", "content": PROMPT}])

H.skip_all_without_model(R, NAMES)


def calls_of(message_calls):
    """[(name, arguments as an object)] of a message's tool_calls (ids aside)."""
    return [(c.function.name, json.loads(c.function.arguments)) for c in (message_calls or [])]


def reassemble(stream):
    """The choices of a chat stream rebuilt from its deltas as the client sends
    them: {index: {"content", "calls": [{"id", "name", "arguments"}], "finish"}}."""
    out = {}
    for chunk in stream:
        for ch in chunk.choices:
            c = out.setdefault(ch.index, {"content": "", "calls": [], "finish": None})
            d = ch.delta
            if d.content:
                c["content"] += d.content
            for tc in d.tool_calls or []:
                while len(c["calls"]) <= tc.index:
                    c["calls"].append({"id": None, "name": "", "arguments": ""})
                t = c["calls"][tc.index]
                if tc.id:
                    t["id"] = tc.id
                if tc.function is not None:
                    t["name"] += tc.function.name or ""
                    t["arguments"] += tc.function.arguments or ""
            if ch.finish_reason:
                c["finish"] = ch.finish_reason
    return out


def run_openai(d, model):
    import openai
    client = openai.OpenAI(base_url=d.base + "/v1", api_key="unused", max_retries=0, timeout=120)
    msgs = [{"role": "user", "content": PROMPT}]

    def ask(choice, stream=False, **kw):
        args = dict(model=model, messages=kw.pop("messages", msgs), tools=TOOLS,
                    max_tokens=MAX_TOKENS, temperature=0, stream=stream)
        if choice is not None:
            args["tool_choice"] = choice
        args.update(kw)
        return client.chat.completions.create(**args)

    for label, choice, history in (("none", "none", msgs), ("auto", "auto", msgs),
                                   ("auto after two calls in the history", "auto", SHOTS),
                                   ("required", "required", msgs), ("named", NAMED, msgs)):
        def go(choice=choice, label=label, history=history):
            r = ask(choice, messages=history)
            m, fin = r.choices[0].message, r.choices[0].finish_reason
            s = reassemble(ask(choice, stream=True, messages=history))[0]
            want = calls_of(m.tool_calls)
            got = [(c["name"], json.loads(c["arguments"])) for c in s["calls"]]
            why = "unstreamed %r %r %r; streamed %r" % (m.content, want, fin, s)
            if label == "none" and (m.tool_calls or not m.content or fin == "tool_calls"):
                return False, why
            if label in ("required", "named") or history is SHOTS:
                if fin != "tool_calls" or not want or m.content is not None:
                    return False, why
                if any(n != "get_weather" or not isinstance(a.get("city"), str)
                       for n, a in want[:1]):
                    return False, why
            if fin == "tool_calls" and not all(c.id and c.id.startswith("call_")
                                               for c in m.tool_calls):
                return False, why
            if "<tool_call>" in (m.content or "") + s["content"]:
                return False, why
            same = (got == want and s["finish"] == fin and
                    s["content"] == (m.content or "") and
                    all(c["id"] and c["id"].startswith("call_") for c in s["calls"]))
            return same, why
        R.attempt("tool_choice %s: a call as asked, streamed equal to unstreamed" % label, go)

    def lp_list(content):
        return [(t.token, round(t.logprob, 6), [(a.token, round(a.logprob, 6))
                                                for a in t.top_logprobs])
                for t in content or []]

    for label, choice, history in (("auto after two calls in the history", "auto", SHOTS),
                                   ("required", "required", msgs)):
        def lp_go(choice=choice, history=history):
            kw = dict(messages=history, logprobs=True, top_logprobs=2)
            r = ask(choice, **kw)
            want = lp_list(r.choices[0].logprobs.content)
            got, on_calls, text_chunks = [], [], []
            for chunk in ask(choice, stream=True, **kw):
                for ch in chunk.choices:
                    lp = lp_list(ch.logprobs.content if ch.logprobs else None)
                    got += lp
                    if ch.delta.tool_calls and lp:
                        on_calls.append("".join(t[0] for t in lp))
                    elif ch.delta.content and lp:
                        text_chunks.append((ch.delta.content, "".join(t[0] for t in lp)))
            why = "unstreamed %r; streamed %r; on calls %r" % (want, got, on_calls)
            if r.choices[0].finish_reason == "tool_calls" and \
                    not any("get_weather" in t for t in on_calls):
                return False, why
            # a content chunk's tokens are its text (a token cut by held-back text rides on
            # the next chunk that completes it)
            if any(not (txt.startswith(toks) or toks.startswith(txt.strip()))
                   for txt, toks in text_chunks[:1]):
                return False, "text chunks %r" % text_chunks
            return got == want and len(want) > 0, why
        R.attempt("tool_choice %s, logprobs: streamed equal to unstreamed" % label, lp_go)

    def round_trip():
        r = ask("required", parallel_tool_calls=False)
        m = r.choices[0].message
        if r.choices[0].finish_reason != "tool_calls" or len(m.tool_calls or []) != 1:
            return False, "first turn %r" % m
        call = m.tool_calls[0]
        history = msgs + [
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": call.id, "type": "function",
                 "function": {"name": call.function.name, "arguments": call.function.arguments}}]},
            {"role": "tool", "tool_call_id": call.id, "content": "18 degrees C and sunny"}]
        a = ask("none", messages=history)
        am = a.choices[0].message
        return (isinstance(am.content, str) and am.content.strip() != "" and not am.tool_calls,
                "answer %r finish %r" % (am.content, a.choices[0].finish_reason))
    R.attempt("round trip: call, tool message, answer", round_trip)

    def n2(stream):
        def go():
            kw = dict(n=2, temperature=0.8, seed=7)
            if stream:
                got = reassemble(ask("required", stream=True, **kw))
                ok = sorted(got) == [0, 1] and all(
                    c["finish"] == "tool_calls" and c["calls"] and c["content"] == "" and
                    all(json.loads(t["arguments"]).get("city") is not None for t in c["calls"])
                    for c in got.values())
                return ok, repr(got)
            r = ask("required", **kw)
            ok = sorted(c.index for c in r.choices) == [0, 1] and all(
                c.finish_reason == "tool_calls" and c.message.tool_calls and
                c.message.content is None for c in r.choices)
            return ok, repr(r.choices)
        return go
    R.attempt("n=2 with tools: each choice its own calls", n2(False))
    R.attempt("n=2 with tools, streamed: each choice its own calls", n2(True))

    def helper_stream():
        # the client's own stream helper accumulates the deltas into a completion
        with client.chat.completions.stream(model=model, messages=msgs, tools=TOOLS,
                                            tool_choice=NAMED, max_tokens=MAX_TOKENS,
                                            temperature=0) as s:
            final = s.get_final_completion()
        c = final.choices[0]
        return (c.finish_reason == "tool_calls" and calls_of(c.message.tool_calls)[0][0] ==
                "get_weather", repr(c))
    R.attempt("the openai stream helper reassembles the call", helper_stream)


def run_langchain(d, model):
    from langchain_openai import ChatOpenAI
    llm = ChatOpenAI(base_url=d.base + "/v1", api_key="unused", model=model, temperature=0,
                     max_tokens=MAX_TOKENS, max_retries=0, timeout=120)
    for label, kw, streaming in (("required", {"tool_choice": "required"}, False),
                                 ("named", {"tool_choice": "get_weather"}, False),
                                 ("required, streamed", {"tool_choice": "required"}, True)):
        def go(kw=kw, streaming=streaming):
            bound = llm.bind_tools(TOOLS, **kw)
            if streaming:
                out = None
                for part in bound.stream(PROMPT):
                    out = part if out is None else out + part
            else:
                out = bound.invoke(PROMPT)
            tc = getattr(out, "tool_calls", None) or []
            return (len(tc) >= 1 and tc[0]["name"] == "get_weather" and
                    isinstance(tc[0]["args"].get("city"), str), "tool_calls %r content %r" % (
                        tc, getattr(out, "content", None)))
        R.attempt("langchain bind_tools %s returns tool_calls" % label, go)


def run_hostile(d, model):
    base = {"model": model, "messages": [{"role": "user", "content": PROMPT}], "max_tokens": 8}

    def bad(name, body, param, path="/v1/chat/completions", says=""):
        st, _, j, raw = H.post_json(d, path, dict(base, **body) if path.endswith("chat/completions")
                                    else body)
        e = (j or {}).get("error", {}) if isinstance(j, dict) else {}
        p = e.get("param")
        R.check(name, st == 400 and p is not None and p.startswith(param) and
                says in e.get("message", "") and H.error_shape(raw) is None,
                "status %d param %r body %r" % (st, p, raw[:300]))

    many = [{"type": "function", "function": {"name": "f%d" % i,
                                              "parameters": {"type": "object"}}}
            for i in range(1000)]
    bad("1,000 functions: 400 naming tools", {"tools": many}, "tools")
    refused = {"type": "function", "function": {"name": "g", "parameters": {"not": {}}}}
    bad("a tool schema the structured-output limits refuse: 400 naming tools",
        {"tools": [WEATHER, refused], "tool_choice": "required"}, "tools", says="tools[1]")
    bad("duplicate tool names: 400 naming the second", {"tools": [WEATHER, WEATHER]},
        "tools[1].function.name")
    orphan = {"messages": [
        {"role": "user", "content": PROMPT},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function",
             "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]},
        {"role": "tool", "tool_call_id": "call_2", "content": "sunny"}], "tools": [WEATHER]}
    bad("a tool message answering no call: 400 naming its tool_call_id", orphan,
        "messages[2].tool_call_id")
    bad("tools on /v1/completions: 400 naming tools",
        {"model": model, "prompt": "x", "tools": [WEATHER]}, "tools", path="/v1/completions")
    # still serving after all that
    st, _, j, raw = H.post_json(d, "/v1/chat/completions", dict(base, tools=[WEATHER],
                                                                tool_choice="required"))
    R.check("served after the hostile requests", st == 200 and
            j["choices"][0]["finish_reason"] in ("tool_calls", "length"), raw[:300])


def main():
    d = H.start_or_finish(R, H.Daemon())
    try:
        model = os.path.basename(H.model_path())
        if H.have("openai"):
            run_openai(d, model)
        else:
            R.skip(NAMES[0], "the openai package is not installed for " + sys.executable)
        if H.have("langchain_openai"):
            run_langchain(d, model)
        else:
            R.skip(NAMES[1], "the langchain-openai package is not installed for " + sys.executable)
        run_hostile(d, model)
    finally:
        rc = d.stop()
        R.check("daemon exits 0 on SIGTERM", rc == 0, "exit status %r" % rc)
    R.finish()


if __name__ == "__main__":
    main()
