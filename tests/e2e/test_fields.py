#!/usr/bin/env python3
"""test_fields.py - no request field is ignored in silence (issue 16, items 4 and 5).

A table of the fields of OpenAI's two completion routes, vLLM's
OpenAI-compatible server and llama.cpp's server that api_request.c does not
own: each is sent to llamad on each route where it exists, with the value
that must be accepted (200) and the value that must be refused (400 whose
error.param names the field).  Then the served ones are checked for their
effect: ignore_eos runs to max_tokens, min_tokens keeps it going,
stop_token_ids stops at that token, include_stop_str_in_output keeps the
stop string, skip_special_tokens false shows control tokens, priority
orders the waiting queue, n_predict is max_tokens, repeat_penalty is
repetition_penalty.  The fields of other work (tools, n, best_of, echo on
completions, suffix, list prompts, structured output) are not here.
"""

import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402

R = H.Report("fields")

C, CH, BOTH = ("completions",), ("chat",), ("completions", "chat")

# (field, routes, accepted value or NONE, refused value or NONE)
NONE = object()
TABLE = [
    # served
    ("ignore_eos", BOTH, True, 1),
    ("min_tokens", BOTH, 2, -1),
    ("stop_token_ids", BOTH, [2], ["x"]),
    ("include_stop_str_in_output", BOTH, True, "yes"),
    ("skip_special_tokens", BOTH, False, 0),
    ("spaces_between_special_tokens", BOTH, False, "no"),
    ("priority", BOTH, -3, 0.5),
    ("n_predict", BOTH, 4, 0),
    ("repeat_penalty", BOTH, 1.1, 0),
    ("repeat_last_n", BOTH, 64, "64"),
    ("top_k", BOTH, 40, 1.5),
    ("min_p", BOTH, 0.05, 2),
    ("repetition_penalty", BOTH, 1.05, 0),
    ("seed", BOTH, 7, "7"),
    ("cache_salt", BOTH, "s", ""),
    # OpenAI
    ("audio", CH, NONE, {"voice": "alloy", "format": "wav"}),
    ("modalities", CH, ["text"], ["text", "audio"]),
    ("prediction", CH, NONE, {"type": "content", "content": "x"}),
    ("web_search_options", CH, NONE, {}),
    ("store", BOTH, False, True),
    ("metadata", BOTH, {"k": "v"}, [1]),
    ("service_tier", BOTH, "auto", "flex"),
    ("reasoning_effort", CH, "none", "high"),
    ("verbosity", CH, "medium", "high"),
    ("prompt_cache_key", BOTH, "k", 5),
    ("safety_identifier", BOTH, "u", 5),
    ("prompt_cache_retention", BOTH, "in-memory", 5),
    ("max_completion_tokens", CH, 4, 0),
    ("top_logprobs", CH, NONE, 25),
    ("logprobs", C, 1, 6),
    ("presence_penalty", BOTH, 0.5, 3),
    ("frequency_penalty", BOTH, 0.5, 3),
    ("logit_bias", BOTH, {"5": 1}, {"x": 1}),
    ("stream_options", BOTH, NONE, 5),
    ("user", BOTH, "u", 5),
    # vLLM
    ("use_beam_search", BOTH, False, True),
    ("length_penalty", BOTH, 1, 0.5),
    ("truncate_prompt_tokens", BOTH, NONE, 10),
    ("prompt_logprobs", BOTH, 1, 21),
    ("allowed_token_ids", BOTH, NONE, [1, 2]),
    ("bad_words", BOTH, [], ["x"]),
    ("logits_processors", BOTH, [], ["a.b"]),
    ("return_tokens_as_token_ids", BOTH, False, True),
    ("return_token_ids", BOTH, False, True),
    ("vllm_xargs", BOTH, {}, {"a": 1}),
    ("kv_transfer_params", BOTH, NONE, {"a": 1}),
    ("request_id", BOTH, "r-1", 1),
    ("add_generation_prompt", CH, True, False),
    ("continue_final_message", CH, False, True),
    ("add_special_tokens", CH, False, True),
    ("add_special_tokens", C, True, False),
    ("documents", CH, [], [{"title": "t", "text": "x"}]),
    ("chat_template", CH, NONE, "{{ messages }}"),
    ("chat_template_kwargs", CH, {}, {"enable_thinking": False}),
    ("mm_processor_kwargs", BOTH, {}, {"a": 1}),
    ("media_io_kwargs", BOTH, {}, {"video": {"num_frames": 8}}),
    ("prompt_embeds", C, NONE, "AAAA"),
    ("echo", CH, False, True),
    # llama.cpp
    ("n_probs", BOTH, 0, 3),
    ("cache_prompt", BOTH, True, False),
    ("id_slot", BOTH, -1, 0),
    ("samplers", BOTH, NONE, ["top_k", "temperature"]),
    ("n_keep", BOTH, 0, 10),
    ("n_indent", BOTH, 0, 2),
    ("n_cmpl", BOTH, 1, 2),
    ("n_cache_reuse", BOTH, 0, 256),
    ("sse_ping_interval", BOTH, 5, "5"),
    ("tfs_z", BOTH, 1, 0.9),
    ("typical_p", BOTH, 1, 0.9),
    ("dynatemp_range", BOTH, 0, 0.5),
    ("dynatemp_exponent", BOTH, 1, "1"),
    ("mirostat", BOTH, 0, 2),
    ("mirostat_tau", BOTH, 5, "5"),
    ("mirostat_eta", BOTH, 0.1, "0.1"),
    ("dry_multiplier", BOTH, 0, 0.8),
    ("dry_base", BOTH, 1.75, "x"),
    ("dry_allowed_length", BOTH, 2, "x"),
    ("dry_penalty_last_n", BOTH, -1, "x"),
    ("dry_sequence_breakers", BOTH, ["\n"], "x"),
    ("xtc_probability", BOTH, 0, 0.5),
    ("xtc_threshold", BOTH, 0.1, "x"),
    ("top_n_sigma", BOTH, -1, 2),
    ("min_keep", BOTH, 0, 5),
    ("t_max_predict_ms", BOTH, 0, 100),
    ("image_data", BOTH, [], [{"data": "AAAA", "id": 1}]),
    ("multimodal_data", BOTH, [], ["AAAA"]),
    ("return_tokens", BOTH, False, True),
    ("timings_per_token", BOTH, False, True),
    ("post_sampling_probs", BOTH, False, True),
    ("response_fields", BOTH, [], ["content"]),
    ("lora", BOTH, [], [{"id": 0, "scale": 1.0}]),
    ("return_progress", BOTH, False, True),
]

EFFECTS = ["ignore_eos runs to max_tokens", "min_tokens keeps it going",
           "stop_token_ids stops at that token", "include_stop_str_in_output shows the stop string",
           "skip_special_tokens false shows control tokens", "priority orders the waiting queue",
           "n_predict is max_tokens", "repeat_penalty is repetition_penalty",
           "openai client: ignore_eos in extra_body"]
CASES = ["every field served, neutral or a 400 naming it"] + EFFECTS
H.skip_all_without_model(R, CASES)

CHAT = [{"role": "user", "content": "What is 12 times 7?"}]
PROMPT = "Q: List the days of the week.\nA:"
# the chat turn as a raw prompt (completions parse control tokens): its greedy answer is short
CHATML = "<|im_start|>user\nWhat is 12 times 7?<|im_end|>\n<|im_start|>assistant\n"


def body(route, extra):
    b = {"messages": CHAT} if route == "chat" else {"prompt": PROMPT}
    b.update({"max_tokens": 4, "temperature": 0})
    b.update(extra)
    return b


def post(d, route, extra):
    st, _, j, raw = H.post_json(d, "/v1/chat/completions" if route == "chat" else "/v1/completions",
                                body(route, extra), timeout=120)
    return st, j, raw


def text_of(route, j):
    c = j["choices"][0]
    return c["message"]["content"] if route == "chat" else c["text"]


case = H.case_of(R)


def run(d):
    @case(CASES[0])
    def _(name):
        bad = []
        for field, routes, good, refused in TABLE:
            for route in routes:
                if good is not NONE:
                    st, j, raw = post(d, route, {field: good})
                    if st != 200:
                        bad.append("%s %s=%r: %d %s" % (route, field, good, st, raw[:200]))
                if refused is not NONE:
                    st, j, raw = post(d, route, {field: refused})
                    param = (j or {}).get("error", {}).get("param")
                    if st != 400 or param != field:
                        bad.append("%s %s=%r: want 400 param %s, got %d param %r" %
                                   (route, field, refused, field, st, param))
        R.check(name, not bad, "\n".join(bad[:20]))

    # a greedy answer that ends at its end-of-generation token
    st, j0, raw = post(d, "completions", {"max_tokens": 40, "prompt": CHATML})
    assert st == 200, raw
    n0 = j0["usage"]["completion_tokens"]
    stops_early = j0["choices"][0]["finish_reason"] == "stop" and n0 + 6 < 40

    @case("ignore_eos runs to max_tokens")
    def _(name):
        res = []
        for route in ("chat", "completions"):
            extra = {"max_tokens": 40, "ignore_eos": True}
            if route == "completions":
                extra["prompt"] = CHATML
            st, j, raw = post(d, route, extra)
            res.append((route, st, j and j["usage"]["completion_tokens"],
                        j and j["choices"][0]["finish_reason"]))
        R.check(name, stops_early and all(r[1] == 200 and r[2] == 40 and r[3] == "length" for r in res),
                "without: %d tokens (%s); with: %r" % (n0, j0["choices"][0]["finish_reason"], res))

    @case("min_tokens keeps it going")
    def _(name):
        st, j, raw = post(d, "completions", {"max_tokens": 40, "min_tokens": n0 + 5,
                                             "prompt": CHATML})
        got = j["usage"]["completion_tokens"] if st == 200 else None
        t = text_of("completions", j) if st == 200 else ""
        R.check(name, stops_early and got is not None and got >= n0 + 5
                and t.startswith(text_of("completions", j0)),
                "%d tokens without, %r with min_tokens %d: %r" % (n0, got, n0 + 5, raw[:300]))

    @case("stop_token_ids stops at that token")
    def _(name):
        st, j, raw = post(d, "completions", {"max_tokens": 16, "ignore_eos": True})
        text = text_of("completions", j)
        st, _, tj, traw = H.post_json(d, "/tokenize", {"content": text, "add_special": False})
        ids = tj["tokens"]
        want = ids[4]
        st, j2, raw2 = post(d, "completions", {"max_tokens": 16, "ignore_eos": True,
                                               "stop_token_ids": [want]})
        first = ids.index(want)
        R.check(name, st == 200 and j2["choices"][0]["finish_reason"] == "stop"
                and j2["usage"]["completion_tokens"] == first + 1
                and text.startswith(text_of("completions", j2)),
                "ids %r, stop at %d: %r" % (ids, want, raw2[:300]))

    @case("include_stop_str_in_output shows the stop string")
    def _(name):
        st, j, raw = post(d, "completions", {"max_tokens": 16, "ignore_eos": True})
        text = text_of("completions", j)
        stop = text[len(text) // 2:len(text) // 2 + 3]
        at = text.index(stop)
        st1, j1, r1 = post(d, "completions", {"max_tokens": 16, "ignore_eos": True, "stop": [stop],
                                              "include_stop_str_in_output": True})
        st2, j2, r2 = post(d, "completions", {"max_tokens": 16, "ignore_eos": True, "stop": [stop]})
        R.check(name, st1 == 200 and st2 == 200 and text_of("completions", j1) == text[:at + 3]
                and text_of("completions", j2) == text[:at],
                "text %r stop %r: with %r, without %r" % (text, stop, r1[:200], r2[:200]))

    @case("skip_special_tokens false shows control tokens")
    def _(name):
        extra = {"max_tokens": 40, "ignore_eos": True, "prompt": CHATML}
        st1, j1, r1 = post(d, "completions", dict(extra, skip_special_tokens=False))
        st2, j2, r2 = post(d, "completions", extra)
        t1, t2 = text_of("completions", j1), text_of("completions", j2)
        R.check(name, st1 == 200 and st2 == 200 and "<|im_end|>" in t1 and "<|im_" not in t2,
                "kept: %r; skipped: %r" % (t1, t2))

    @case("n_predict is max_tokens")
    def _(name):
        st, j, raw = post(d, "completions", {"n_predict": 7, "ignore_eos": True, "max_tokens": None})
        R.check(name, st == 200 and j["usage"]["completion_tokens"] == 7, raw[:300])

    @case("repeat_penalty is repetition_penalty")
    def _(name):
        extra = {"max_tokens": 24, "ignore_eos": True}
        _, a, _ = post(d, "completions", dict(extra, repeat_penalty=1.5))
        _, b, _ = post(d, "completions", dict(extra, repetition_penalty=1.5))
        _, c, _ = post(d, "completions", extra)
        ta, tb, tc = (text_of("completions", x) for x in (a, b, c))
        R.check(name, ta == tb and ta != tc, "repeat %r, repetition %r, none %r" % (ta, tb, tc))

    @case("openai client: ignore_eos in extra_body")
    def _(name):
        try:
            import openai
        except ImportError:
            R.skip(name, "the openai package is not installed")
            return
        client = openai.OpenAI(base_url=d.base + "/v1", api_key="unused", max_retries=0, timeout=120)
        r = client.chat.completions.create(model=client.models.list().data[0].id, messages=CHAT,
                                           max_tokens=40, temperature=0,
                                           extra_body={"ignore_eos": True})
        R.check(name, r.usage.completion_tokens == 40, "usage %r" % r.usage)


def run_priority():
    """One running sequence at a time: of two requests waiting behind a long
    one, the lower priority runs first even though it came second."""
    name = "priority orders the waiting queue"
    try:
        d = H.Daemon(["--max-seqs", "1"])
        d.start()
    except H.DaemonError as ex:
        R.fail(name, str(ex))
        return
    try:
        done = []
        lock = threading.Lock()

        def go(tag, extra):
            st, _, j, raw = H.post_json(d, "/v1/completions", body("completions", extra), timeout=300)
            with lock:
                done.append((tag, st))

        long_one = threading.Thread(target=go, args=("long", {"max_tokens": 300, "ignore_eos": True}))
        long_one.start()
        time.sleep(0.5)
        late = threading.Thread(target=go, args=("p5", {"max_tokens": 8, "ignore_eos": True,
                                                        "priority": 5}))
        late.start()
        time.sleep(0.3)
        urgent = threading.Thread(target=go, args=("p-5", {"max_tokens": 8, "ignore_eos": True,
                                                           "priority": -5}))
        urgent.start()
        for t in (long_one, late, urgent):
            t.join(300)
        order = [t for t, _ in done]
        R.check(name, order == ["long", "p-5", "p5"] and all(s == 200 for _, s in done),
                "finished in order %r" % done)
    except Exception as ex:  # noqa: BLE001
        R.fail(name, "%s: %s" % (type(ex).__name__, ex))
    finally:
        d.stop()


def main():
    d = H.Daemon()
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
        R.check("daemon exits 0 on SIGTERM", rc == 0, "exit status %r" % rc)
    run_priority()
    R.finish()


if __name__ == "__main__":
    main()
