#!/usr/bin/env python3
"""test_structured.py - structured output (grammar-constrained decoding), end to end.

Against the default model: every JSON Schema of tests/corpus/schemas twice
(one greedy, one sampled at temperature 1 with a fixed seed; one on
/v1/chat/completions, the other on /v1/completions), every regex of
tests/corpus/regex.json and every GBNF grammar of tests/corpus/gbnf twice
the same way.  An output must be exactly a string of the constraint's
language (checked independently: structured_lib.py) with finish_reason
"stop", unless finish_reason is "length" (then a prefix, checked where it
can be); more than a quarter of the runs of a corpus ending by length is a
failure, so the test cannot pass vacuously.  Then each peer field once
(response_format, vLLM's guided_* and structured_outputs, llama.cpp's
grammar and json_schema), two constraints in one request (400 naming one
of them), malformed schemas and grammars and the hostile corpus
(tests/corpus/grammar-hostile.json, when present): a 400 within 2 s each,
and a streamed constrained request equal to the unstreamed one.
Requests run 8 at a time.
"""

import json
import os
import sys
import time
import traceback
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402
import structured_lib as L  # noqa: E402

R = H.Report("structured")
PARALLEL = 8
MAX_JSON_TOKENS = 400
MAX_TEXT_TOKENS = 200
LENGTH_SHARE_CAP = 0.25
ERROR_DEADLINE_S = 2.0
SYSTEM_JSON = "You are a helpful assistant. Answer in JSON."
SYSTEM_TEXT = "You are a helpful assistant. Answer briefly."
CASES = ["corpus", "schemas", "regexes", "gbnf", "peer fields", "conflicts", "malformed",
         "hostile corpus", "streaming"]

H.skip_all_without_model(R, CASES)
jsonschema = H.import_or_skip_all(R, CASES, "jsonschema")


# ---------------------------------------------------------------- requests

def body_for(route, prompt, constraint, temperature=0.0, seed=None, max_tokens=MAX_JSON_TOKENS,
             system=SYSTEM_JSON):
    """A request body for route ("chat" or "completions") with the fields of constraint."""
    if route == "chat":
        b = {"messages": [{"role": "system", "content": system},
                          {"role": "user", "content": prompt}]}
    else:
        b = {"prompt": prompt + "\n"}
    b.update({"max_tokens": max_tokens, "temperature": temperature})
    if seed is not None:
        b["seed"] = seed
    b.update(constraint)
    return b


def path_of(route):
    return "/v1/chat/completions" if route == "chat" else "/v1/completions"


def call(d, route, body, timeout=300):
    """POST; returns {"status", "text", "finish", "error", "json", "secs"}."""
    t0 = time.monotonic()
    st, _, j, raw = H.post_json(d, path_of(route), body, timeout=timeout)
    out = {"status": st, "json": j, "secs": time.monotonic() - t0, "text": None,
           "finish": None, "error": None}
    if st != 200 or not isinstance(j, dict) or not j.get("choices"):
        out["error"] = "HTTP %s: %s" % (st, raw[:300].decode("utf-8", "replace"))
        return out
    c = j["choices"][0]
    out["finish"] = c.get("finish_reason")
    out["text"] = (c.get("message") or {}).get("content") if route == "chat" else c.get("text")
    if not isinstance(out["text"], str):
        out["error"] = "no completion text: %r" % raw[:300]
    return out


def run_all(d, jobs):
    """jobs: [(key, route, body)]; returns {key: call result}, PARALLEL at a time."""
    def one(job):
        key, route, body = job
        try:
            return key, call(d, route, body)
        except Exception as ex:  # noqa: BLE001 - reported as that job's failure
            return key, {"status": None, "error": "%s: %s" % (type(ex).__name__, ex),
                         "text": None, "finish": None, "json": None, "secs": 0}
    with ThreadPoolExecutor(PARALLEL) as ex:
        return dict(ex.map(one, jobs))


def judge(res, full_check, prefix_check=None):
    """(problem or None, ended_by_length) for one constrained output."""
    if res["error"]:
        return res["error"], False
    if res["finish"] == "length":
        if prefix_check is not None and prefix_check(res["text"]) is False:
            return "finish_reason length, and the text is not a prefix of the language: %r" \
                % res["text"][:300], True
        return None, True
    if res["finish"] != "stop":
        return "finish_reason %r (want stop once the grammar is complete)" % res["finish"], False
    return full_check(res["text"]), False


def length_share(name, ended, answered, total):
    """Fails when no run of a corpus was answered, or when more than
    LENGTH_SHARE_CAP of them ended by length: the corpus then proved little."""
    R.check("%s: at most a quarter end by length (%d of %d answered runs did; %d sent)"
            % (name, ended, answered, total),
            answered > 0 and ended <= LENGTH_SHARE_CAP * answered,
            "%d of %d answered runs ended with finish_reason length (%d runs sent)"
            % (ended, answered, total))


# ---------------------------------------------------------------- the corpora

def check_corpus(schemas, regexes, gbnf):
    """The corpora themselves: valid schemas inside the supported subset, sizes."""
    bad = []
    for name, e in schemas:
        try:
            jsonschema.Draft202012Validator.check_schema(e["schema"])
        except jsonschema.SchemaError as ex:
            bad.append("%s: %s" % (name, ex.message))
        u = L.unsupported_keywords(e["schema"])
        if u:
            bad.append("%s uses %s" % (name, ", ".join(u)))
        if not e.get("description") or not e.get("prompt"):
            bad.append("%s lacks a description or a prompt" % name)
    R.check("corpus: %d schemas (>= 64), valid and inside the supported subset" % len(schemas),
            len(schemas) >= 64 and not bad, "\n".join(bad[:12]) or "only %d" % len(schemas))
    R.check("corpus: %d regexes (>= 20), %d grammars (>= 10)" % (len(regexes), len(gbnf)),
            len(regexes) >= 20 and len(gbnf) >= 10)


def run_schemas(d, schemas):
    jobs = []
    for i, (name, e) in enumerate(schemas):
        rf = {"response_format": {"type": "json_schema", "json_schema": {
            "name": name.replace(".", "_"), "schema": e["schema"], "strict": True}}}
        routes = ("chat", "completions") if i % 2 == 0 else ("completions", "chat")
        jobs.append(((name, "greedy"), routes[0], body_for(routes[0], e["prompt"], rf)))
        long_prompt = "%s Reply with JSON that matches this schema: %s" % (
            e["prompt"], json.dumps(e["schema"], ensure_ascii=False))
        jobs.append(((name, "sampled"), routes[1],
                     body_for(routes[1], long_prompt, rf, temperature=1.0, seed=1000 + i)))
    res = run_all(d, jobs)
    ended = 0
    answered = sum(1 for r in res.values() if not r["error"])
    for name, e in schemas:
        why = []
        for mode in ("greedy", "sampled"):
            problem, by_length = judge(res[(name, mode)], lambda t, s=e["schema"]: L.check_json(t, s))
            ended += by_length
            if problem:
                why.append("%s: %s" % (mode, problem))
        R.check("schema %s (%s)" % (name, e["description"]), not why, "\n".join(why))
    length_share("schemas", ended, answered, len(jobs))


def run_text_corpus(d, label, items, constraint_of, full_of, prefix_of):
    """Each item greedy on one route and sampled on the other; label names the lines."""
    jobs = []
    for i, it in enumerate(items):
        routes = ("chat", "completions") if i % 2 == 0 else ("completions", "chat")
        for mode, route, temp, seed in (("greedy", routes[0], 0.0, None),
                                        ("sampled", routes[1], 1.0, 2000 + i)):
            jobs.append(((i, mode), route, body_for(route, it["prompt"], constraint_of(i, it),
                                                    temperature=temp, seed=seed,
                                                    max_tokens=MAX_TEXT_TOKENS,
                                                    system=SYSTEM_TEXT)))
    res = run_all(d, jobs)
    ended = 0
    answered = sum(1 for r in res.values() if not r["error"])
    for i, it in enumerate(items):
        why = []
        try:
            full, prefix = full_of(it), prefix_of(it)
        except ImportError as ex:
            R.skip("%s %s" % (label, it.get("name") or it.get("file")), str(ex))
            continue
        for mode in ("greedy", "sampled"):
            problem, by_length = judge(res[(i, mode)], full, prefix)
            ended += by_length
            if problem:
                why.append("%s: %s" % (mode, problem))
        R.check("%s %s" % (label, it.get("name") or it.get("file")), not why, "\n".join(why))
    length_share(label, ended, answered, len(jobs))


def regex_full(it):
    import re
    r = re.compile(it["pattern"])
    return lambda t: None if r.fullmatch(t) else "does not match %r: %r" % (it["pattern"], t[:300])


def gbnf_full(it):
    acc = L.gbnf_recognizer(it)
    return lambda t: None if acc(t) else "not in the language of %s: %r" % (it["file"], t[:300])


def gbnf_prefix(it):
    if "regex" in it:
        return lambda t: L.regex_prefix_ok(it["regex"], t)
    return None


# ---------------------------------------------------------------- the fields

OBJ_SCHEMA = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 20},
                                               "age": {"type": "integer", "minimum": 0,
                                                       "maximum": 150}},
              "required": ["name", "age"], "additionalProperties": False}
REGEX = "[A-Z][a-z]{2,9}, [0-9]{1,3}"
CHOICES = ["red", "green", "blue", "café 😀"]
GBNF = 'root ::= "It is " ("sunny" | "rainy" | "cold") "."\n'
GBNF_LANG = {"It is sunny.", "It is rainy.", "It is cold."}


def json_ok(schema):
    return lambda t: L.check_json(t, schema)


def regex_ok(t):
    import re
    return None if re.fullmatch(REGEX, t) else "does not match %r: %r" % (REGEX, t)


PEERS = [
    ("response_format json_object (chat)", "chat", {"response_format": {"type": "json_object"}},
     json_ok(None)),
    ("response_format json_object (completions)", "completions",
     {"response_format": {"type": "json_object"}}, json_ok(None)),
    ("response_format json_schema (completions)", "completions",
     {"response_format": {"type": "json_schema",
                          "json_schema": {"name": "person", "schema": OBJ_SCHEMA}}},
     json_ok(OBJ_SCHEMA)),
    ("response_format text", "chat", {"response_format": {"type": "text"}}, lambda t: None),
    ("guided_json (object)", "chat", {"guided_json": OBJ_SCHEMA}, json_ok(OBJ_SCHEMA)),
    ("guided_json (string)", "completions", {"guided_json": json.dumps(OBJ_SCHEMA)},
     json_ok(OBJ_SCHEMA)),
    ("guided_regex", "chat", {"guided_regex": REGEX}, regex_ok),
    ("guided_choice", "chat", {"guided_choice": CHOICES},
     lambda t: None if t in CHOICES else "not one of the choices: %r" % t),
    ("guided_grammar", "completions", {"guided_grammar": GBNF},
     lambda t: None if t in GBNF_LANG else "not in the grammar: %r" % t),
    ("structured_outputs json", "chat", {"structured_outputs": {"json": OBJ_SCHEMA}},
     json_ok(OBJ_SCHEMA)),
    ("structured_outputs regex", "completions", {"structured_outputs": {"regex": REGEX}},
     regex_ok),
    ("structured_outputs choice", "chat", {"structured_outputs": {"choice": CHOICES}},
     lambda t: None if t in CHOICES else "not one of the choices: %r" % t),
    ("structured_outputs grammar", "chat", {"structured_outputs": {"grammar": GBNF}},
     lambda t: None if t in GBNF_LANG else "not in the grammar: %r" % t),
    ("grammar (llama.cpp)", "chat", {"grammar": GBNF},
     lambda t: None if t in GBNF_LANG else "not in the grammar: %r" % t),
    ("json_schema (llama.cpp)", "completions", {"json_schema": OBJ_SCHEMA}, json_ok(OBJ_SCHEMA)),
]


def run_peers(d):
    jobs = [(name, route, body_for(route, "Describe a person called Ann who is 31.", c))
            for name, route, c, _ in PEERS]
    res = run_all(d, jobs)
    for name, route, c, check in PEERS:
        r = res[name]
        if name == "response_format text":
            R.check("peer field " + name, not r["error"], r["error"])
            continue
        problem, by_length = judge(r, check)
        if by_length and not problem:
            problem = "finish_reason length with %d max_tokens: %r" % (MAX_JSON_TOKENS, r["text"][:200])
        R.check("peer field " + name, not problem, problem)


CONFLICTS = [
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "p", "schema": OBJ_SCHEMA}},
      "guided_json": OBJ_SCHEMA}, ("response_format", "guided_json")),
    ({"guided_regex": REGEX, "guided_choice": CHOICES}, ("guided_regex", "guided_choice")),
    ({"grammar": GBNF, "json_schema": OBJ_SCHEMA}, ("grammar", "json_schema")),
    ({"structured_outputs": {"regex": REGEX}, "guided_grammar": GBNF},
     ("structured_outputs", "guided_grammar")),
    ({"response_format": {"type": "json_object"}, "grammar": GBNF}, ("response_format", "grammar")),
    ({"structured_outputs": {"regex": REGEX, "choice": CHOICES}}, ("structured_outputs",)),
]

# (field sent, value, a word the message must name or None)
MALFORMED = [
    ("response_format", {"type": "json_schema", "json_schema": {
        "name": "x", "schema": {"type": "string", "not": {"const": "a"}}}}, "not"),
    ("guided_json", {"type": "object", "patternProperties": {"^a": {"type": "string"}}},
     "patternProperties"),
    ("json_schema", {"type": "array", "uniqueItems": True}, "uniqueItems"),
    ("guided_json", {"type": "integer", "multipleOf": 3}, "multipleOf"),
    ("guided_json", {"if": {"type": "string"}, "then": {"minLength": 2}}, "if"),
    ("response_format", {"type": "json_schema", "json_schema": {
        "name": "x", "schema": {"$ref": "#/$defs/missing"}}}, None),
    ("guided_json", "{\"type\": \"object\", ", None),
    ("guided_json", {"type": "frobnicate"}, None),
    ("response_format", {"type": "xml"}, None),
    ("guided_regex", "(unclosed", None),
    ("guided_regex", "a{5,2}", None),
    ("guided_choice", [], None),
    ("guided_choice", "red", None),
    ("guided_grammar", 'root ::= "unterminated', None),
    ("grammar", 'start ::= "a"', "root"),
    ("grammar", 'root ::= undefined-rule', None),
    ("structured_outputs", {}, None),
    ("structured_outputs", {"xml": "<a/>"}, None),
]


def expect_400(d, name, obj, fields, word=None, route="chat"):
    """A 400 within ERROR_DEADLINE_S, the OpenAI error shape, error.param naming
    one of fields (its first path component), the message naming word."""
    t0 = time.monotonic()
    st, _, j, raw = H.post_json(d, path_of(route), obj, timeout=30)
    secs = time.monotonic() - t0
    why = []
    if st != 400:
        why.append("status %r: %r" % (st, raw[:200]))
    elif H.error_shape(raw):
        why.append(H.error_shape(raw))
    else:
        e = j["error"]
        param = e.get("param") or ""
        if not any(param == f or param.startswith(f + ".") or param.startswith(f + "[")
                   for f in fields):
            why.append("error.param %r names none of %s" % (param, ", ".join(fields)))
        if word and word not in e["message"]:
            why.append("message %r does not name %r" % (e["message"], word))
    if secs > ERROR_DEADLINE_S:
        why.append("took %.2f s (cap %.0f s)" % (secs, ERROR_DEADLINE_S))
    R.check(name, not why, "\n".join(why))


def run_errors(d):
    for c, fields in CONFLICTS:
        expect_400(d, "two constraints are a 400: %s" % " + ".join(c), body_for(
            "chat", "Hi.", c, max_tokens=8), fields)
    for i, (field, value, word) in enumerate(MALFORMED):
        route = "chat" if i % 2 == 0 else "completions"
        expect_400(d, "malformed %s (%s) is a 400" % (field, json.dumps(value)[:60]),
                   body_for(route, "Hi.", {field: value}, max_tokens=8), (field,), word, route)
    hostile = L.load_hostile()
    if hostile is None:
        R.skip("hostile corpus", "tests/corpus/grammar-hostile.json is not on this branch yet")
        return
    for i, h in enumerate(hostile):
        field = h["field"]
        fields = dict(h.get("extra", {}), **{field: h["value"]})
        # two constraints: the error names either of them
        expect_400(d, "hostile %d %s (%s)" % (i, field, str(h.get("why", ""))[:60]),
                   body_for("chat", "Hi.", fields, max_tokens=8), tuple(fields))


# ---------------------------------------------------------------- streaming

def stream_text(d, route, body):
    body = dict(body, stream=True)
    res = H.stream_post(d, path_of(route), body, timeout=300)
    problem = H.check_stream(res, chat=(route == "chat"))
    if problem:
        return None, None, problem
    text, finish = "", None
    for x in H.sse_parse(res["body"])[0][:-1]:
        for c in json.loads(x).get("choices", []):
            text += ((c.get("delta") or {}).get("content") or "") if route == "chat" \
                else (c.get("text") or "")
            finish = c.get("finish_reason") or finish
    return text, finish, None


def run_streaming(d, schemas):
    e = dict(schemas).get("10-object-simple") or schemas[0][1]
    cases = [("chat", "response_format json_schema", body_for("chat", e["prompt"], {
                  "response_format": {"type": "json_schema",
                                      "json_schema": {"name": "s", "schema": e["schema"]}}})),
             ("completions", "guided_regex", body_for("completions", "Name a city and a number.",
                                                      {"guided_regex": REGEX}))]
    for route, what, body in cases:
        name = "streamed %s on %s equals unstreamed (greedy)" % (what, route)
        plain = call(d, route, body)
        if plain["error"]:
            R.fail(name, "unstreamed: " + plain["error"])
            continue
        text, finish, problem = stream_text(d, route, body)
        if problem:
            R.fail(name, "streamed: " + problem)
            continue
        R.check(name, text == plain["text"] and finish == plain["finish"],
                "streamed %r (%s)\nunstreamed %r (%s)" % (text[:200], finish, plain["text"][:200],
                                                          plain["finish"]))


# ---------------------------------------------------------------- main

def main():
    schemas, regexes, gbnf = L.load_schemas(), L.load_regexes(), L.load_gbnf()
    check_corpus(schemas, regexes, gbnf)
    d = H.start_or_finish(R, H.Daemon())
    t0 = time.monotonic()
    try:
        for label, fn in (("errors", lambda: run_errors(d)),
                          ("peer fields", lambda: run_peers(d)),
                          ("streaming", lambda: run_streaming(d, schemas)),
                          ("regexes", lambda: run_text_corpus(
                              d, "regex", regexes,
                              lambda i, it: {"guided_regex": it["pattern"]} if i % 2 == 0
                              else {"structured_outputs": {"regex": it["pattern"]}},
                              regex_full, lambda it: lambda t: L.regex_prefix_ok(it["pattern"], t))),
                          ("gbnf", lambda: run_text_corpus(
                              d, "gbnf", gbnf,
                              lambda i, it: {"guided_grammar": it["text"]} if i % 2 == 0
                              else {"grammar": it["text"]},
                              gbnf_full, gbnf_prefix)),
                          ("schemas", lambda: run_schemas(d, schemas))):
            try:
                fn()
            except Exception as ex:  # noqa: BLE001 - a crashed section is a FAIL line
                tb = traceback.extract_tb(ex.__traceback__)
                R.fail(label, "%s: %s (line %d)" % (type(ex).__name__, ex,
                                                    tb[-1].lineno if tb else 0))
            print("  (%s done at %.0f s)" % (label, time.monotonic() - t0), flush=True)
    finally:
        rc = d.stop()
        R.check("daemon exits 0 on SIGTERM", rc == 0, "exit status %r\n%s" % (rc, d.log()[-1500:]))
    R.finish()


if __name__ == "__main__":
    main()
