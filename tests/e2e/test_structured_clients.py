#!/usr/bin/env python3
"""test_structured_clients.py - structured output through real clients.

The official `openai` client's chat.completions.parse with a Pydantic
model as response_format (a json_schema request, strict), and
langchain-openai's ChatOpenAI(...).with_structured_output(Model) in its
default mode, with method="json_schema" and with method="json_mode"
(response_format json_object; LangChain then parses the object itself, so
that model accepts any keys: json_object promises an object, not keys).
Each must return the parsed object.  A missing package SKIPs its cases.
"""

import inspect
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402

R = H.Report("structured-clients")
OPENAI_CASES = ["openai chat.completions.parse returns the Pydantic object"]
LC_CASES = ["langchain with_structured_output (default method)",
            "langchain with_structured_output method=json_schema",
            "langchain with_structured_output method=json_mode"]
PROMPT = "Ann is 31 years old. Give her name and age."
MAX_TOKENS = 200

H.skip_all_without_model(R, OPENAI_CASES + LC_CASES)
pydantic = H.import_or_skip_all(R, OPENAI_CASES + LC_CASES, "pydantic")


class Person(pydantic.BaseModel):
    """What the strict modes must return: every field required, no others."""
    model_config = pydantic.ConfigDict(extra="forbid")
    name: str
    age: int


class AnyObject(pydantic.BaseModel):
    """For json_mode: any JSON object parses (its keys are up to the model)."""
    model_config = pydantic.ConfigDict(extra="allow")
    name: object = None
    age: object = None


def run_openai(d, model):
    import openai
    client = openai.OpenAI(base_url=d.base + "/v1", api_key="unused", max_retries=0, timeout=120)
    parse = getattr(client.chat.completions, "parse", None) or client.beta.chat.completions.parse

    def go():
        r = parse(model=model, messages=[{"role": "user", "content": PROMPT}],
                  response_format=Person, max_tokens=MAX_TOKENS, temperature=0)
        m = r.choices[0].message
        return isinstance(m.parsed, Person), "parsed %r, content %r, finish_reason %r" % (
            m.parsed, m.content, r.choices[0].finish_reason)
    R.attempt(OPENAI_CASES[0], go)


def run_langchain(d, model):
    from langchain_openai import ChatOpenAI
    llm = ChatOpenAI(base_url=d.base + "/v1", api_key="unused", model=model, temperature=0,
                     max_tokens=MAX_TOKENS, max_retries=0, timeout=120)
    methods = inspect.signature(llm.with_structured_output).parameters["method"].annotation
    for name, kwargs, cls, prompt in (
            (LC_CASES[0], {}, Person, PROMPT),
            (LC_CASES[1], {"method": "json_schema"}, Person, PROMPT),
            (LC_CASES[2], {"method": "json_mode"}, AnyObject,
             PROMPT + " Reply with a JSON object with the keys name and age.")):
        if kwargs and kwargs["method"] not in str(methods):
            R.skip(name, "this langchain-openai has no method %s" % kwargs["method"])
            continue

        def go(kwargs=kwargs, cls=cls, prompt=prompt):
            chain = llm.with_structured_output(cls, include_raw=True, **kwargs)
            out = chain.invoke(prompt)
            raw = getattr(out.get("raw"), "content", None)
            return isinstance(out.get("parsed"), cls), "parsed %r, parsing_error %r, raw %r" % (
                out.get("parsed"), out.get("parsing_error"), raw)
        R.attempt(name, go)


def main():
    todo = []
    if H.have("openai"):
        todo.append(run_openai)
    else:
        for c in OPENAI_CASES:
            R.skip(c, "the openai package is not installed for " + sys.executable)
    if H.have("langchain_openai"):
        todo.append(run_langchain)
    else:
        for c in LC_CASES:
            R.skip(c, "the langchain-openai package is not installed for " + sys.executable)
    if not todo:
        R.finish()
    d = H.start_or_finish(R, H.Daemon())
    try:
        model = os.path.basename(H.model_path())
        for fn in todo:
            fn(d, model)
    finally:
        rc = d.stop()
        R.check("daemon exits 0 on SIGTERM", rc == 0, "exit status %r" % rc)
    R.finish()


if __name__ == "__main__":
    main()
