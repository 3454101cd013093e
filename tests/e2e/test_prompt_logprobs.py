#!/usr/bin/env python3
"""test_prompt_logprobs.py - the prompt's log-probabilities: `echo` with
`logprobs` on /v1/completions (OpenAI's shape, through the official
`openai` client) and vLLM's `prompt_logprobs` on both routes.

The reference is independent of the prefill's scoring rows: teacher
forcing through llamad's own generation path.  A request whose prompt is
the first j tokens of the prompt, with logprobs=5, reports the
distribution of token j as its first generated token's top 5 (and the
token's own logprob when it is among them); the prompt logprobs of
position j must equal it within 1e-4.  A prompt of more than 64 tokens
(SCHED_SCORE_ROWS) is scored over several prefill chunks, and a prompt
seen before (its blocks in the prefix cache) is computed again whole.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402

R = H.Report("prompt_logprobs")
CASES = ["openai client: echo=True, logprobs=2, max_tokens=1",
         "echo logprobs equal teacher forcing through generation (1e-4)",
         "a 150-token prompt: every position equals teacher forcing (several chunks)",
         "prompt_logprobs on completions: vLLM's shape, equal to echo's",
         "prompt_logprobs on chat: one list per response, a token per prompt token",
         "a cached prompt is scored whole again: cached_tokens 0, same logprobs",
         "prompt_logprobs past the cap, or streamed, is a 400 naming it",
         "openai client: echo=True, logprobs=2, max_tokens=0: the prompt alone",
         "max_tokens=0 without echo, or streamed, is a 400 naming max_tokens",
         "two prompts, n=2: every choice its own prompt's logprobs, as asked alone"]
TOL = 1e-4
PROMPT = "The capital of France is Paris, and the capital of Italy is"

H.skip_all_without_model(R, CASES)
openai = H.import_or_skip_all(R, CASES, "openai")
case = H.case_of(R)


def post(d, path, body):
    st, _, j, raw = H.post_json(d, path, body, timeout=120)
    if st != 200:
        raise AssertionError("%s: status %d: %r" % (path, st, raw[:300]))
    return j


def tokenize(d, text):
    return post(d, "/tokenize", {"content": text, "add_special": True})["tokens"]


def pieces(d, text, n):
    """The first n tokens' pieces, as /tokenize spells them (the echo's tokens)."""
    t = post(d, "/tokenize", {"content": text, "add_special": True, "with_pieces": True})
    return [x["piece"] for x in t["tokens"][:n]]


def forced(d, ids, j):
    """Teacher forcing: the top 5 (piece -> logprob) after ids[:j], and the chosen token."""
    r = post(d, "/v1/completions", {"prompt": ids[:j], "max_tokens": 1, "temperature": 0,
                                    "logprobs": 5})
    lp = r["choices"][0]["logprobs"]
    return lp["top_logprobs"][0]


def compare(name, got_top, got_token, got_lp, want_top):
    """got_top: the prompt's top map at a position, got_token/got_lp its token; want_top
    the forced map.  Equal keys, values within TOL; the token's logprob where forced
    reports it."""
    if set(got_top) != set(want_top):
        return "%s: top pieces %r, forced %r" % (name, sorted(got_top), sorted(want_top))
    for k, v in want_top.items():
        if abs(got_top[k] - v) > TOL:
            return "%s: %r logprob %r, forced %r" % (name, k, got_top[k], v)
    if got_token in want_top and abs(got_lp - want_top[got_token]) > TOL:
        return "%s: token %r logprob %r, forced %r" % (name, got_token, got_lp,
                                                         want_top[got_token])
    return None


def echo_lp(d, ids, k=5):
    r = post(d, "/v1/completions", {"prompt": ids, "max_tokens": 1, "temperature": 0,
                                    "echo": True, "logprobs": k})
    return r, r["choices"][0]["logprobs"]


def against_forcing(d, text, ids):
    """Echo's logprobs of prompt ids (the tokens of text): (ok, why) against /tokenize's
    pieces and teacher forcing at every position."""
    _, lp = echo_lp(d, ids)
    if len(lp["tokens"]) != len(ids) + 1:
        return False, "%d logprob entries for %d prompt tokens" % (len(lp["tokens"]), len(ids))
    want = pieces(d, text, len(ids))
    if lp["tokens"][:len(ids)] != want:
        return False, "tokens %r, prompt %r" % (lp["tokens"], want)
    for j in range(1, len(ids)):
        why = compare("position %d" % j, lp["top_logprobs"][j], lp["tokens"][j],
                      lp["token_logprobs"][j], forced(d, ids, j))
        if why:
            return False, why
    return True, ""


def main():
    d = H.start_or_finish(R, H.Daemon())
    try:
        model = os.path.basename(H.model_path())
        client = openai.OpenAI(base_url=d.base + "/v1", api_key="unused", max_retries=0,
                               timeout=120)
        ids = tokenize(d, PROMPT)

        @case(CASES[0])
        def _(name):
            r = client.completions.create(model=model, prompt=PROMPT, echo=True, logprobs=2,
                                          max_tokens=1, temperature=0)
            ch = r.choices[0]
            lp = ch.logprobs
            n = r.usage.prompt_tokens
            ok = (ch.text.startswith(PROMPT) and len(lp.tokens) == n + 1 and
                  lp.token_logprobs[0] is None and lp.top_logprobs[0] is None and
                  all(isinstance(x, float) and x <= 0 for x in lp.token_logprobs[1:]) and
                  all(len(t) >= 1 and len(t) <= 2 for t in lp.top_logprobs[1:]) and
                  "".join(lp.tokens[:n]) == PROMPT and
                  lp.text_offset[n] == len(PROMPT))
            R.check(name, ok, "tokens %r logprobs %r offsets %r" % (
                lp.tokens, lp.token_logprobs, lp.text_offset))

        @case(CASES[1])
        def _(name):
            R.check(name, *against_forcing(d, PROMPT, ids))

        long_text = " ".join(["%s number %d," % (w, i) for i, w in
                              enumerate(["apple", "river", "stone", "cloud"] * 8)])
        long_ids = tokenize(d, long_text)[:150]

        @case(CASES[2])
        def _(name):
            if len(long_ids) < 130:
                return R.fail(name, "the long prompt has only %d tokens" % len(long_ids))
            R.check(name, *against_forcing(d, long_text, long_ids))

        @case(CASES[3])
        def _(name):
            _, lp = echo_lp(d, ids, k=2)
            r = post(d, "/v1/completions", {"prompt": ids, "max_tokens": 1,
                                            "prompt_logprobs": 2})
            pl = r["choices"][0]["prompt_logprobs"]
            if len(pl) != len(ids) or pl[0] is not None:
                return R.fail(name, "%d entries for %d tokens, first %r" % (len(pl), len(ids),
                                                                            pl[0]))
            for j in range(1, len(ids)):
                e = pl[j].get(str(ids[j]))
                if e is None or abs(e["logprob"] - lp["token_logprobs"][j]) > TOL or \
                        e["decoded_token"] != lp["tokens"][j] or e["rank"] < 1 or \
                        not 2 <= len(pl[j]) <= 3:
                    return R.fail(name, "position %d: %r, echo %r" % (
                        j, pl[j], lp["token_logprobs"][j]))
                ranks = sorted(v["rank"] for v in pl[j].values())
                if ranks[:2] != [1, 2] and ranks[:1] != [1]:
                    return R.fail(name, "position %d ranks %r" % (j, ranks))
            R.ok(name)

        @case(CASES[4])
        def _(name):
            r = post(d, "/v1/chat/completions", {
                "messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 1,
                "prompt_logprobs": 0, "n": 2})
            pl = r.get("prompt_logprobs")
            n = r["usage"]["prompt_tokens"]
            ok = (isinstance(pl, list) and len(pl) == n and pl[0] is None and
                  all(len(x) == 1 for x in pl[1:]) and
                  all("prompt_logprobs" not in ch for ch in r["choices"]))
            R.check(name, ok, "prompt_tokens %d, prompt_logprobs %r" % (n, pl and pl[:3]))

        @case(CASES[5])
        def _(name):
            post(d, "/v1/completions", {"prompt": long_ids, "max_tokens": 1})
            r, lp = echo_lp(d, long_ids)
            r2, lp2 = echo_lp(d, long_ids)
            cached = (r["usage"]["prompt_tokens_details"]["cached_tokens"],
                      r2["usage"]["prompt_tokens_details"]["cached_tokens"])
            same = lp["token_logprobs"] == lp2["token_logprobs"] and \
                len(lp["tokens"]) == len(long_ids) + 1
            R.check(name, cached == (0, 0) and same, "cached_tokens %r, same logprobs %r"
                    % (cached, same))

        @case(CASES[6])
        def _(name):
            bad = [("/v1/completions", {"prompt": "a", "prompt_logprobs": 6}),
                   ("/v1/chat/completions", {"messages": [{"role": "user", "content": "a"}],
                                             "prompt_logprobs": 21}),
                   ("/v1/completions", {"prompt": "a", "prompt_logprobs": 1, "stream": True})]
            for path, body in bad:
                st, _, j, raw = H.post_json(d, path, body)
                param = ((j or {}).get("error") or {}).get("param")
                if st != 400 or param != "prompt_logprobs":
                    return R.fail(name, "%s %r: status %d param %r" % (path, body, st, param))
            R.ok(name)
        @case(CASES[7])
        def _(name):
            r = client.completions.create(model=model, prompt=PROMPT, echo=True, logprobs=2,
                                          max_tokens=0)
            r1 = client.completions.create(model=model, prompt=PROMPT, echo=True, logprobs=2,
                                           max_tokens=1, temperature=0)
            ch, n = r.choices[0], r.usage.prompt_tokens
            ok = (ch.text == PROMPT and r.usage.completion_tokens == 0 and
                  ch.finish_reason == "length" and
                  ch.logprobs.tokens == r1.choices[0].logprobs.tokens[:n] and
                  ch.logprobs.token_logprobs == r1.choices[0].logprobs.token_logprobs[:n])
            R.check(name, ok, "text %r usage %r logprobs %r" % (ch.text, r.usage, ch.logprobs))

        @case(CASES[8])
        def _(name):
            bad = [{"prompt": "a", "max_tokens": 0},
                   {"prompt": "a", "max_tokens": 0, "echo": True, "stream": True}]
            for body in bad:
                st, _, j, raw = H.post_json(d, "/v1/completions", body)
                param = ((j or {}).get("error") or {}).get("param")
                if st != 400 or param != "max_tokens":
                    return R.fail(name, "%r: status %d param %r" % (body, st, param))
            R.ok(name)
        @case(CASES[9])
        def _(name):
            prompts = [PROMPT, "Hello world, how are you"]
            kw = dict(model=model, echo=True, logprobs=1, max_tokens=2, temperature=1.0,
                      seed=3)
            r = client.completions.create(prompt=prompts, n=2, **kw)
            alone = [client.completions.create(prompt=p, **kw) for p in prompts]
            for ch in r.choices:
                a = alone[ch.index // 2]
                n = a.usage.prompt_tokens
                if ch.logprobs.tokens[:n] != a.choices[0].logprobs.tokens[:n] or \
                        ch.logprobs.token_logprobs[:n] != a.choices[0].logprobs.token_logprobs[:n]:
                    return R.fail(name, "choice %d: %r, alone %r" % (ch.index, ch.logprobs,
                                                                     a.choices[0].logprobs))
            R.check(name, sorted(ch.index for ch in r.choices) == [0, 1, 2, 3], repr(r))
        client.close()
    finally:
        rc = d.stop()
        R.check("daemon exits 0 on SIGTERM", rc == 0, "exit status %r" % rc)
    R.finish()


if __name__ == "__main__":
    main()
