#!/usr/bin/env python3
"""test_choices.py - several choices, best_of, list prompts and echo, as
the official `openai` client and langchain-openai's legacy `OpenAI` LLM
(which always sends a list of prompts) see them.

Seeds: choice i of a prompt samples with seed + i (docs/API.md), so with
n=3 and seed s, choice i equals a one-choice request with seed s + i,
streamed or not.  best_of returns the n sequences of highest cumulative
log-probability.  Caps: n and best_of 16, 64 prompts, prompts x best_of 128.
"""

import os
import random
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402

R = H.Report("choices")
CASES = ["n=3 completions: choice i equals seed + i alone",
         "n=3 chat: choice i equals seed + i alone",
         "n=3 streamed completions: same texts, index per choice, usage summed",
         "n=2 streamed chat: same texts as not streamed",
         "best_of=3 n=2: the two of highest cumulative logprob of the three",
         "best_of > n streamed is a 400 naming best_of",
         "n and best_of past the cap of 16 are a 400",
         "list of strings: index = prompt * n + choice",
         "list of token lists",
         "list of 10,000 prompts is a 400 naming prompt",
         "echo: the prompt opens each choice, streamed and not",
         "echo with logprobs streamed: the logprobs equal the unstreamed ones",
         "suffix is a 400 naming it",
         "langchain OpenAI (legacy LLM) invoke and generate",
         "n=4: the prompt is computed once (llamad_prompt_tokens_computed_total)",
         "n=2 echo with logprobs: each choice, streamed and not, carries the prompt's logprobs"]
PROMPT = "The capital of France is"
MAX_TOKENS = 8

H.skip_all_without_model(R, CASES)
openai = H.import_or_skip_all(R, CASES, "openai")


def status_of(fn):
    """The HTTP status and error param of a call that must fail, or (200, None)."""
    try:
        fn()
        return 200, None
    except openai.APIStatusError as ex:
        body = ex.body if isinstance(ex.body, dict) else {}
        err = body.get("error", body) if isinstance(body, dict) else {}
        return ex.status_code, (err or {}).get("param")


def main():
    d = H.start_or_finish(R, H.Daemon())
    try:
        model = os.path.basename(H.model_path())
        c = openai.OpenAI(base_url=d.base + "/v1", api_key="unused", max_retries=0, timeout=120)
        cmpl = dict(model=model, max_tokens=MAX_TOKENS, temperature=1.0)
        chat_msgs = [{"role": "user", "content": "Name a fruit."}]

        def solo(seed, prompt=PROMPT):
            return c.completions.create(prompt=prompt, seed=seed, **cmpl).choices[0].text

        def solo_chat(seed):
            r = c.chat.completions.create(messages=chat_msgs, seed=seed, **cmpl)
            return r.choices[0].message.content

        def n3():
            r = c.completions.create(prompt=PROMPT, n=3, seed=42, **cmpl)
            got = [ch.text for ch in sorted(r.choices, key=lambda ch: ch.index)]
            alone = [c.completions.create(prompt=PROMPT, seed=42 + i, **cmpl) for i in range(3)]
            want = [a.choices[0].text for a in alone]
            idx = sorted(ch.index for ch in r.choices)
            ok = got == want and idx == [0, 1, 2] and \
                r.usage.prompt_tokens == alone[0].usage.prompt_tokens and \
                r.usage.completion_tokens == sum(a.usage.completion_tokens for a in alone)
            return ok, "got %r want %r index %r usage %r" % (got, want, idx, r.usage)
        R.attempt(CASES[0], n3)

        def n3_chat():
            r = c.chat.completions.create(messages=chat_msgs, n=3, seed=7, **cmpl)
            got = [ch.message.content for ch in sorted(r.choices, key=lambda ch: ch.index)]
            want = [solo_chat(7 + i) for i in range(3)]
            return got == want, "got %r want %r" % (got, want)
        R.attempt(CASES[1], n3_chat)

        def n3_stream():
            texts, finish, usage = {}, {}, None
            for chunk in c.completions.create(prompt=PROMPT, n=3, seed=42, stream=True,
                                              stream_options={"include_usage": True}, **cmpl):
                if chunk.usage is not None:
                    usage = chunk.usage
                for ch in chunk.choices:
                    texts[ch.index] = texts.get(ch.index, "") + (ch.text or "")
                    if ch.finish_reason:
                        finish[ch.index] = ch.finish_reason
            want = [solo(42 + i) for i in range(3)]
            got = [texts.get(i) for i in range(3)]
            ok = got == want and sorted(finish) == [0, 1, 2] and usage is not None and \
                usage.completion_tokens >= 3 and usage.prompt_tokens > 0 and \
                usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
            return ok, "got %r want %r finish %r usage %r" % (got, want, finish, usage)
        R.attempt(CASES[2], n3_stream)

        def n2_chat_stream():
            texts = {}
            for chunk in c.chat.completions.create(messages=chat_msgs, n=2, seed=9, stream=True,
                                                   **cmpl):
                for ch in chunk.choices:
                    texts[ch.index] = texts.get(ch.index, "") + (ch.delta.content or "")
            r = c.chat.completions.create(messages=chat_msgs, n=2, seed=9, **cmpl)
            want = {ch.index: ch.message.content for ch in r.choices}
            return texts == want, "streamed %r whole %r" % (texts, want)
        R.attempt(CASES[3], n2_chat_stream)

        def best_of():
            r = c.completions.create(prompt=PROMPT, n=2, best_of=3, seed=11, **cmpl)
            seqs = []
            for i in range(3):
                s = c.completions.create(prompt=PROMPT, seed=11 + i, logprobs=0, **cmpl)
                seqs.append((sum(s.choices[0].logprobs.token_logprobs), s.choices[0].text))
            seqs.sort(key=lambda t: -t[0])
            got = [ch.text for ch in sorted(r.choices, key=lambda ch: ch.index)]
            want = [t[1] for t in seqs[:2]]
            return got == want and len(r.choices) == 2, "got %r want %r (ranked %r)" % (
                got, want, seqs)
        R.attempt(CASES[4], best_of)

        def best_of_stream():
            st, param = status_of(lambda: list(c.completions.create(
                prompt=PROMPT, n=1, best_of=2, stream=True, **cmpl)))
            return st == 400 and param == "best_of", "status %r param %r" % (st, param)
        R.attempt(CASES[5], best_of_stream)

        def caps():
            ok16 = len(c.completions.create(prompt=PROMPT, n=16, **dict(cmpl, max_tokens=1))
                       .choices) == 16
            a = status_of(lambda: c.completions.create(prompt=PROMPT, n=17, **cmpl))
            b = status_of(lambda: c.completions.create(prompt=PROMPT, best_of=17, **cmpl))
            h = status_of(lambda: c.chat.completions.create(messages=chat_msgs, n=17, **cmpl))
            return ok16 and a == (400, "n") and b == (400, "best_of") and h == (400, "n"), \
                "n=16 ok %r, n=17 %r, best_of=17 %r, chat n=17 %r" % (ok16, a, b, h)
        R.attempt(CASES[6], caps)

        def list_strings():
            prompts = ["Once upon a time", PROMPT]
            r = c.completions.create(prompt=prompts, n=2, seed=5, **cmpl)
            by = {ch.index: ch.text for ch in r.choices}
            want = {p * 2 + i: solo(5 + i, prompts[p]) for p in range(2) for i in range(2)}
            return by == want, "got %r want %r" % (by, want)
        R.attempt(CASES[7], list_strings)

        def list_tokens():
            r = c.completions.create(prompt=[[504, 3458, 282], [1848, 314]], seed=3, **cmpl)
            a = c.completions.create(prompt=[504, 3458, 282], seed=3, **cmpl).choices[0].text
            b = c.completions.create(prompt=[1848, 314], seed=3, **cmpl).choices[0].text
            by = {ch.index: ch.text for ch in r.choices}
            return by == {0: a, 1: b}, "got %r want %r" % (by, [a, b])
        R.attempt(CASES[8], list_tokens)

        def list_cap():
            st, param = status_of(lambda: c.completions.create(prompt=["x"] * 10000, **cmpl))
            return st == 400 and param == "prompt", "status %r param %r" % (st, param)
        R.attempt(CASES[9], list_cap)

        def echo():
            r = c.completions.create(prompt=PROMPT, echo=True, n=2, seed=1, **cmpl)
            plain = [solo(1 + i) for i in range(2)]
            got = [ch.text for ch in sorted(r.choices, key=lambda ch: ch.index)]
            texts = {}
            for chunk in c.completions.create(prompt=PROMPT, echo=True, n=2, seed=1,
                                              stream=True, **cmpl):
                for ch in chunk.choices:
                    texts[ch.index] = texts.get(ch.index, "") + (ch.text or "")
            want = [PROMPT + t for t in plain]
            return got == want and [texts.get(0), texts.get(1)] == want, \
                "got %r streamed %r want %r" % (got, texts, want)
        R.attempt(CASES[10], echo)

        def echo_logprobs():
            kw = dict(prompt=PROMPT, echo=True, logprobs=2, model=model, max_tokens=3,
                      temperature=0)
            want = c.completions.create(**kw).choices[0]
            text, toks, lps, offs = "", [], [], []
            for chunk in c.completions.create(stream=True, **kw):
                for ch in chunk.choices:
                    text += ch.text or ""
                    if ch.logprobs is not None:
                        toks += ch.logprobs.tokens or []
                        lps += ch.logprobs.token_logprobs or []
                        offs += ch.logprobs.text_offset or []
            w = want.logprobs
            ok = (text == want.text and toks == w.tokens and lps == w.token_logprobs and
                  offs == w.text_offset and lps[0] is None)
            return ok, "streamed %r %r %r %r; unstreamed %r %r" % (text, toks, lps, offs,
                                                                    want.text, w)
        R.attempt(CASES[11], echo_logprobs)

        def suffix():
            st, param = status_of(lambda: c.completions.create(prompt=PROMPT, suffix="end.",
                                                               **cmpl))
            return st == 400 and param == "suffix", "status %r param %r" % (st, param)
        R.attempt(CASES[12], suffix)

        def langchain():
            from langchain_openai import OpenAI
            llm = OpenAI(base_url=d.base + "/v1", api_key="unused", model=model,
                         temperature=0, max_tokens=MAX_TOKENS, max_retries=0, timeout=120)
            one = llm.invoke(PROMPT)
            gen = llm.generate([PROMPT, "Once upon a time"])
            texts = [g[0].text for g in gen.generations]
            return isinstance(one, str) and len(one) > 0 and len(texts) == 2 and \
                texts[0] == one, "invoke %r generate %r" % (one, texts)
        def prompt_once():
            # token ids no earlier request began with: nothing of it is in the prefix cache
            rng = random.Random()
            ids = [rng.randrange(1000, 40000) for _ in range(37)]
            before = H.metric(H.metrics(d), "llamad_prompt_tokens_computed_total")
            r = c.completions.create(prompt=ids, n=4, seed=11, **cmpl)
            after = H.metric(H.metrics(d), "llamad_prompt_tokens_computed_total")
            if before is None or after is None:
                return False, "llamad_prompt_tokens_computed_total is not in /metrics"
            return after - before == len(ids) and len(r.choices) == 4, \
                "%d prompt tokens computed for a prompt of %d with n=4" % (after - before, len(ids))
        R.attempt(CASES[14], prompt_once)

        def echo_logprobs_n2():
            # the two choices share one computation of the prompt: each still echoes its logprobs
            kw = dict(prompt=PROMPT, echo=True, logprobs=1, model=model, max_tokens=2, n=2,
                      seed=5, temperature=1.0)
            want = c.completions.create(**kw).choices
            got = {}
            for chunk in c.completions.create(stream=True, **kw):
                for ch in chunk.choices:
                    if ch.logprobs is not None:
                        got.setdefault(ch.index, []).extend(ch.logprobs.token_logprobs or [])
            n_prompt = len(c.completions.create(prompt=PROMPT, echo=True, logprobs=0,
                                                max_tokens=0, model=model).choices[0]
                           .logprobs.token_logprobs)
            ok = len(want) == 2 and n_prompt > 1 and sorted(got) == [0, 1]
            for i in range(2):
                w = want[i].logprobs.token_logprobs[:n_prompt]
                g = got.get(i, [])[:n_prompt]
                ok = ok and w == g and w[0] is None and None not in w[1:]
            return ok, "prompt of %d tokens; unstreamed %r; streamed %r" % (
                n_prompt, [x.logprobs.token_logprobs for x in want], got)
        R.attempt(CASES[15], echo_logprobs_n2)

        try:
            import langchain_openai  # noqa: F401
            R.attempt(CASES[13], langchain)
        except ImportError:
            R.skip(CASES[13], "the langchain-openai package is not installed for " + sys.executable)
    finally:
        rc = d.stop()
        R.check("daemon exits 0 on SIGTERM", rc == 0, "exit status %r" % rc)
    R.finish()


if __name__ == "__main__":
    main()
