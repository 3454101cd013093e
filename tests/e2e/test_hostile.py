#!/usr/bin/env python3
"""test_hostile.py - the hostile-request battery (shared/THREATS.md R3, R10).

Well over 80 malformed, out-of-range and abusive requests against one
daemon.  Each case has the set of statuses it may get; every non-200 reply
must be the OpenAI error object; no reply may be 5xx; after every case
/health must be 200, and a greedy canary completion must give the same text
at the end as before the battery.  Auth cases (401, type
authentication_error) run when this build has a key option.
"""

import json
import os
import re
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402

R = H.Report("hostile")
H.skip_all_without_model(R, ["hostile battery"])

KEY = "sk-hostile-e2e-feedface0123456789"
REQUEST_TIMEOUT = 8  # seconds: a request whose body never ends is cut after this
KV = "16M"          # a small KV pool: n_ctx is a few hundred tokens, cheap to fill
CANARY = {"prompt": "The capital of France is", "max_tokens": 8, "temperature": 0}
OK = {200}
OK_OR_400 = {200, 400}
BAD = {400}

state = {"key": None, "n_vocab": 49152, "n_ctx": None}
results = {"5xx": [], "cases": 0}


def hdrs(extra=None):
    h = {}
    if state["key"]:
        h["Authorization"] = "Bearer " + state["key"]
    if extra:
        h.update(extra)
    return h


def send_json(d, path, obj, method="POST"):
    body = json.dumps(obj).encode()
    if len(body) > 256 * 1024:
        # a body over the limit may be answered (413) and closed before it is
        # all sent: read the answer from a raw socket, which tolerates that
        return H.raw(d, H.http_request_bytes(method, path, body, state["key"]), timeout=60)
    return H.request(d, method, path, body,
                     headers=hdrs({"Content-Type": "application/json"}), timeout=60)


def send_body(d, path, body, ctype="application/json", method="POST", extra=None):
    h = hdrs(extra)
    if ctype is not None:
        h["Content-Type"] = ctype
    return H.request(d, method, path, body, headers=h, timeout=60)


def check_case(d, name, want, fn, code=None, err_type=None, transport=False):
    """Run one case: fn() -> (status, headers, body).  transport: an HTTP-level
    error answered by the HTTP library itself, whose body need not be JSON."""
    results["cases"] += 1
    try:
        st, hd, body = fn()
    except Exception as ex:  # noqa: BLE001
        st, hd, body = None, {}, ("%s: %s" % (type(ex).__name__, ex)).encode()
    problems = []
    if st is not None and st >= 500:
        results["5xx"].append("%s -> %d" % (name, st))
    if st not in want:
        problems.append("status %r, wanted %s" % (st, "/".join(str(w) for w in sorted(want,
                                                                                        key=str))))
    if st is not None and st != 200 and not transport:
        why = H.error_shape(body)
        if why:
            problems.append(why)
        else:
            e = json.loads(body)["error"]
            if code and e.get("code") != code:
                problems.append("error.code %r, wanted %r" % (e.get("code"), code))
            if err_type and e.get("type") != err_type:
                problems.append("error.type %r, wanted %r" % (e.get("type"), err_type))
    if st in (429, 503) and "retry-after" not in hd:
        problems.append("%d without Retry-After" % st)
    try:
        hs, _, _ = H.request(d, "GET", "/health", headers=hdrs(), timeout=30)
    except OSError as ex:
        hs = "unreachable (%s)" % ex
    if hs != 200:
        problems.append("/health afterwards: %r" % hs)
    if not d.alive():
        problems.append("the daemon died:\n" + d.log()[-1500:])
    if problems:
        R.fail(name, "; ".join(problems) + "\nbody: %r" % body[:300])
    else:
        R.ok(name)
    if not d.alive():
        R.finish()


def completion(d, **fields):
    obj = {"prompt": "Hello", "max_tokens": 2, "temperature": 0}
    for k, v in fields.items():
        if v is DROP:
            obj.pop(k, None)
        else:
            obj[k] = v
    return lambda: send_json(d, "/v1/completions", obj)


def chat(d, **fields):
    obj = {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2, "temperature": 0}
    for k, v in fields.items():
        if v is DROP:
            obj.pop(k, None)
        else:
            obj[k] = v
    return lambda: send_json(d, "/v1/chat/completions", obj)


DROP = object()


def numeric_cases(d):
    """Every numeric field at -1, 0, max, max+1, as a string and as null."""
    n_ctx = state["n_ctx"] or 2048
    room = n_ctx - 8        # "Hello" is a token or two; leave a margin
    table = [
        # field, kind, {value: wanted statuses}
        ("max_tokens", completion, {-1: BAD, 0: OK_OR_400, 1: OK, room: OK, n_ctx + 1: BAD,
                                    10 ** 9: BAD, 2 ** 64: BAD, 1.5: BAD, "8": BAD, None: OK_OR_400}),
        ("temperature", completion, {-1: BAD, 0: OK, 2: OK, 2.01: BAD, 3: BAD, "0.5": BAD,
                                     None: OK_OR_400}),
        ("top_p", completion, {-1: BAD, 0: OK_OR_400, 1: OK, 1.01: BAD, "1": BAD,
                               None: OK_OR_400}),
        ("n", completion, {-1: BAD, 0: BAD, 1: OK, 2: OK_OR_400, 10 ** 9: BAD, "1": BAD,
                           None: OK_OR_400}),
        ("logprobs", completion, {-1: BAD, 0: OK, 5: OK, 20: OK_OR_400, 21: BAD, "2": BAD,
                                  None: OK_OR_400}),
        ("presence_penalty", completion, {-1: OK, 0: OK, 2: OK, 2.01: BAD, -2.01: BAD,
                                          "0": BAD, None: OK_OR_400}),
        ("frequency_penalty", completion, {-1: OK, 0: OK, 2: OK, 2.01: BAD, -2.01: BAD,
                                           "0": BAD, None: OK_OR_400}),
        ("seed", completion, {-1: OK_OR_400, 0: OK, 2 ** 63 - 1: OK_OR_400, 2 ** 64: BAD,
                              1.5: BAD, "1": BAD, None: OK_OR_400}),
        ("top_k", completion, {-1: OK_OR_400, 0: OK, 49152: OK, 10 ** 9: OK_OR_400,
                               "4": BAD, None: OK_OR_400}),
        ("min_p", completion, {-1: BAD, 0: OK, 1: OK, 1.01: BAD, "0": BAD, None: OK_OR_400}),
        ("repetition_penalty", completion, {-1: BAD, 0: BAD, 1: OK, "1": BAD,
                                            None: OK_OR_400}),
        ("max_tokens", chat, {-1: BAD, 0: OK_OR_400, n_ctx + 1: BAD, "8": BAD,
                              None: OK_OR_400}),
        ("max_completion_tokens", chat, {-1: BAD, 1: OK, n_ctx + 1: BAD, "1": BAD}),
    ]
    for field, kind, values in table:
        for v, want in values.items():
            label = "%s %s=%s" % ("chat" if kind is chat else "completions", field,
                                  json.dumps(v) if not isinstance(v, int) or abs(v) < 10 ** 6
                                  else ("%.0e" % v if v < 2 ** 63 - 1 else str(v)))
            check_case(d, label, want, kind(d, **{field: v}))
    # chat top_logprobs (needs logprobs: true)
    for v, want in ((0, OK), (20, OK), (21, BAD), (10 ** 6, BAD), (-1, BAD), ("3", BAD),
                    (None, OK_OR_400)):
        check_case(d, "chat top_logprobs=%s" % json.dumps(v), want,
                   chat(d, logprobs=True, top_logprobs=v))
    check_case(d, "completions logprobs=10^6", BAD, completion(d, logprobs=10 ** 6))
    check_case(d, "chat logprobs=\"yes\"", BAD, chat(d, logprobs="yes"))


def sampling_cases(d):
    nv = state["n_vocab"]
    check_case(d, "logit_bias id = n_vocab", BAD, completion(d, logit_bias={str(nv): 1}))
    check_case(d, "logit_bias id = 2^40", BAD, completion(d, logit_bias={str(2 ** 40): 1}))
    check_case(d, "logit_bias id -1", BAD, completion(d, logit_bias={"-1": 1}))
    check_case(d, "logit_bias id not a number", BAD, completion(d, logit_bias={"abc": 1}))
    check_case(d, "logit_bias value 101", BAD, completion(d, logit_bias={"100": 101}))
    check_case(d, "logit_bias value -100", OK, completion(d, logit_bias={"100": -100}))
    check_case(d, "logit_bias value a string", BAD, completion(d, logit_bias={"100": "1"}))
    check_case(d, "logit_bias 301 entries", BAD,
               completion(d, logit_bias={str(i): 1 for i in range(301)}))
    check_case(d, "logit_bias not an object", BAD, completion(d, logit_bias=[1, 2]))
    check_case(d, "4 stop strings", OK, completion(d, stop=["a", "b", "c", "d"]))
    check_case(d, "5 stop strings", BAD, completion(d, stop=["a", "b", "c", "d", "e"]))
    check_case(d, "stop string of 257 bytes", BAD, completion(d, stop=["x" * 257]))
    check_case(d, "stop string of 1 MiB", {400, 413}, completion(d, stop=["x" * (1 << 20)]))
    check_case(d, "stop a number", BAD, completion(d, stop=5))
    check_case(d, "stop list with a number", BAD, completion(d, stop=["a", 5]))
    check_case(d, "stream \"yes\"", BAD, completion(d, stream="yes"))
    check_case(d, "stream_options not an object", BAD,
               completion(d, stream=True, stream_options=5))
    check_case(d, "echo true (unsupported)", OK_OR_400, completion(d, echo=True))
    check_case(d, "best_of 10^9", BAD, completion(d, best_of=10 ** 9))
    check_case(d, "chat tools with a malformed function name", BAD,
               chat(d, tools=[{"type": "function", "function": {"name": "f g", "parameters": {}}}]))
    check_case(d, "chat tools with an unsupported schema keyword", BAD,
               chat(d, tools=[{"type": "function", "function": {"name": "f",
                                                                "parameters": {"not": {}}}}]))
    check_case(d, "chat response_format json_schema with an unsupported keyword", BAD,
               chat(d, response_format={"type": "json_schema",
                                        "json_schema": {"name": "x", "schema": {"not": {}}}}))
    check_case(d, "unknown model", {404}, completion(d, model="no-such-model"))


def prompt_cases(d):
    nv = state["n_vocab"]
    check_case(d, "empty prompt", BAD, completion(d, prompt=""))
    check_case(d, "empty token list", BAD, completion(d, prompt=[]))
    check_case(d, "no prompt", BAD, completion(d, prompt=DROP))
    check_case(d, "prompt null", BAD, completion(d, prompt=None))
    check_case(d, "prompt a number", BAD, completion(d, prompt=123))
    check_case(d, "prompt token -1", BAD, completion(d, prompt=[1, -1]))
    check_case(d, "prompt token n_vocab", BAD, completion(d, prompt=[1, nv]))
    check_case(d, "prompt token 2^32", BAD, completion(d, prompt=[2 ** 32]))
    check_case(d, "prompt token 1.5", BAD, completion(d, prompt=[1.5]))
    check_case(d, "prompt list of lists (batch)", OK_OR_400, completion(d, prompt=[[1, 2], [3]]))
    check_case(d, "prompt list of strings (batch)", OK_OR_400, completion(d, prompt=["a", "b"]))
    check_case(d, "empty messages", BAD, chat(d, messages=[]))
    check_case(d, "no messages", BAD, chat(d, messages=DROP))
    check_case(d, "messages an object", BAD, chat(d, messages={"role": "user", "content": "x"}))
    check_case(d, "message role unknown", BAD, chat(d, messages=[{"role": "root",
                                                                  "content": "x"}]))
    check_case(d, "message without role", BAD, chat(d, messages=[{"content": "x"}]))
    check_case(d, "message content a number", BAD, chat(d, messages=[{"role": "user",
                                                                     "content": 5}]))
    check_case(d, "message content null", BAD, chat(d, messages=[{"role": "user",
                                                                  "content": None}]))
    check_case(d, "message content parts (text)", OK_OR_400,
               chat(d, messages=[{"role": "user", "content": [{"type": "text", "text": "Hi"}]}]))
    check_case(d, "message content image part", BAD,
               chat(d, messages=[{"role": "user", "content": [
                   {"type": "image_url", "image_url": {"url": "http://x/y.png"}}]}]))
    n_ctx = state["n_ctx"]
    if n_ctx:
        check_case(d, "prompt n_ctx-1 tokens, max_tokens 1", OK,
                   completion(d, prompt=[28] * (n_ctx - 1), max_tokens=1))
        check_case(d, "prompt n_ctx tokens", BAD, completion(d, prompt=[28] * n_ctx,
                                                             max_tokens=DROP),
                   code="context_length_exceeded")
        check_case(d, "prompt n_ctx+1 tokens", BAD, completion(d, prompt=[28] * (n_ctx + 1),
                                                               max_tokens=1),
                   code="context_length_exceeded")
        check_case(d, "prompt n_ctx-1 tokens, max_tokens 2", BAD,
                   completion(d, prompt=[28] * (n_ctx - 1), max_tokens=2),
                   code="context_length_exceeded")
        check_case(d, "chat longer than n_ctx", BAD,
                   chat(d, messages=[{"role": "user", "content": "word " * (n_ctx + 10)}]),
                   code="context_length_exceeded")
    else:
        R.skip("prompt n_ctx tokens", "could not learn n_ctx")
    check_case(d, "prompt of 200 000 tokens", {400, 413},
               completion(d, prompt=[28] * 200000, max_tokens=1))


def encoding_cases(d):
    p = "/v1/completions"
    check_case(d, "temperature 1e999", BAD,
               lambda: send_body(d, p, b'{"prompt":"Hi","max_tokens":1,"temperature":1e999}'))
    check_case(d, "max_tokens 1e999", BAD,
               lambda: send_body(d, p, b'{"prompt":"Hi","max_tokens":1e999}'))
    check_case(d, "temperature NaN literal", BAD,
               lambda: send_body(d, p, b'{"prompt":"Hi","max_tokens":1,"temperature":NaN}'))
    check_case(d, "invalid UTF-8 in prompt", BAD,
               lambda: send_body(d, p, b'{"prompt":"a\xff\xfeb","max_tokens":1}'))
    check_case(d, "overlong UTF-8 in prompt", BAD,
               lambda: send_body(d, p, b'{"prompt":"a\xc0\xafb","max_tokens":1}'))
    check_case(d, "UTF-8 cut short at the end of a string", BAD,
               lambda: send_body(d, p, b'{"prompt":"a\xe2\x82","max_tokens":1}'))
    check_case(d, "lone surrogate escape", BAD,
               lambda: send_body(d, p, b'{"prompt":"a\\ud800b","max_tokens":1}'))
    check_case(d, "\\u0000 in prompt", BAD,
               lambda: send_body(d, p, b'{"prompt":"a\\u0000b","max_tokens":1}'))
    check_case(d, "\\u0000 in chat content", BAD,
               lambda: send_body(d, "/v1/chat/completions",
                                 b'{"messages":[{"role":"user","content":"a\\u0000b"}],'
                                 b'"max_tokens":1}'))
    check_case(d, "\\u0000 in stop", BAD,
               lambda: send_body(d, p, b'{"prompt":"ab","stop":["\\u0000"],"max_tokens":1}'))
    check_case(d, "raw NUL byte in body", BAD,
               lambda: send_body(d, p, b'{"prompt":"a\x00b","max_tokens":1}'))
    deep_a = b'{"prompt":"Hi","max_tokens":1,"x":' + b"[" * 10000 + b"]" * 10000 + b"}"
    check_case(d, "JSON arrays nested 10000 deep", BAD, lambda: send_body(d, p, deep_a))
    deep_o = b'{"prompt":"Hi","max_tokens":1,"x":' + b'{"a":' * 10000 + b"1" + \
        b"}" * 10000 + b"}"
    check_case(d, "JSON objects nested 10000 deep", BAD, lambda: send_body(d, p, deep_o))
    check_case(d, "duplicate key prompt", BAD,
               lambda: send_body(d, p, b'{"prompt":"a","prompt":"b","max_tokens":1}'))
    check_case(d, "duplicate key max_tokens", BAD,
               lambda: send_body(d, p, b'{"prompt":"a","max_tokens":1,"max_tokens":100000}'))
    check_case(d, "malformed JSON (truncated)", BAD,
               lambda: send_body(d, p, b'{"prompt":"a","max_tokens":1'))
    check_case(d, "malformed JSON (not JSON)", BAD, lambda: send_body(d, p, b"hello there"))
    check_case(d, "empty body", BAD, lambda: send_body(d, p, b""))
    check_case(d, "JSON array at top level", BAD, lambda: send_body(d, p, b"[]"))
    check_case(d, "JSON null at top level", BAD, lambda: send_body(d, p, b"null"))
    check_case(d, "trailing garbage after JSON", BAD,
               lambda: send_body(d, p, b'{"prompt":"a","max_tokens":1} x'))
    check_case(d, "Content-Type text/plain", {400, 415},
               lambda: send_body(d, p, b'{"prompt":"a","max_tokens":1}', ctype="text/plain"))
    check_case(d, "Content-Type application/xml", {400, 415},
               lambda: send_body(d, p, b'{"prompt":"a","max_tokens":1}',
                                 ctype="application/xml"))
    check_case(d, "Content-Type with charset", OK,
               lambda: send_body(d, p, b'{"prompt":"a","max_tokens":1}',
                                 ctype="application/json; charset=utf-8"))
    big = b'{"prompt":"' + b"a" * (16 << 20) + b'","max_tokens":1}'
    check_case(d, "16 MiB body", {413},
               lambda: H.raw(d, b"POST /v1/completions HTTP/1.1\r\nHost: x\r\n"
                             + auth_line() + b"Content-Type: application/json\r\n"
                             b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(big) + big,
                             timeout=60))
    check_case(d, "16 MiB declared, nothing sent", {413},
               lambda: H.raw(d, b"POST /v1/completions HTTP/1.1\r\nHost: x\r\n" + auth_line()
                             + b"Content-Type: application/json\r\nContent-Length: %d\r\n"
                             b"Connection: close\r\n\r\n" % (16 << 20), timeout=10))
    check_case(d, "64 KiB header", {400, 413, 431, None},
               lambda: H.raw(d, b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 65536
                             + b"\r\nConnection: close\r\n\r\n"), transport=True)
    check_case(d, "garbage request line", {400, None},
               lambda: H.raw(d, b"\x16\x03\x01 garbage\r\n\r\n"), transport=True)
    check_case(d, "body shorter than Content-Length", {400, 408, None},
               lambda: H.raw(d, b"POST /v1/completions HTTP/1.1\r\nHost: x\r\n" + auth_line()
                             + b"Content-Type: application/json\r\nContent-Length: 100\r\n"
                             b"Connection: close\r\n\r\n{\"prompt\":", shut_write=True,
                             timeout=10), transport=True)


def auth_line():
    return ("Authorization: Bearer %s\r\n" % state["key"]).encode() if state["key"] else b""


def route_cases(d):
    check_case(d, "unknown route GET /v2/nothing", {404},
               lambda: H.request(d, "GET", "/v2/nothing", headers=hdrs()))
    check_case(d, "unknown route POST /v1/engines", {404},
               lambda: send_body(d, "/v1/engines", b"{}"))
    check_case(d, "unknown route /v1/completions/x", {404},
               lambda: send_body(d, "/v1/completions/x", b"{}"))
    check_case(d, "path traversal /../etc/passwd", {400, 404},
               lambda: H.raw(d, b"GET /../../etc/passwd HTTP/1.1\r\nHost: x\r\n" + auth_line()
                             + b"Connection: close\r\n\r\n"))
    for method, path in (("GET", "/v1/completions"), ("PUT", "/v1/chat/completions"),
                         ("DELETE", "/v1/models"), ("POST", "/v1/models"), ("POST", "/health"),
                         ("GET", "/tokenize")):
        check_case(d, "wrong method %s %s" % (method, path), {405},
                   lambda m=method, p=path: H.request(d, m, p, b"{}" if m != "GET" else None,
                                                      headers=hdrs({"Content-Type":
                                                                    "application/json"})))
    check_case(d, "tokenize malformed JSON", BAD, lambda: send_body(d, "/tokenize", b"{"))
    check_case(d, "tokenize content a number", BAD,
               lambda: send_body(d, "/tokenize", b'{"content":5}'))
    check_case(d, "tokenize \\u0000", BAD,
               lambda: send_body(d, "/tokenize", b'{"content":"a\\u0000"}'))
    check_case(d, "tokenize the six characters \\u0000 as text", OK,
               lambda: send_body(d, "/tokenize", b'{"content":"a\\\\u0000b"}'))
    check_case(d, "tokenize invalid UTF-8 in a key", BAD,
               lambda: send_body(d, "/tokenize", b'{"con\xfftent":"a","content":"b"}'))
    check_case(d, "tokenize duplicate key", BAD,
               lambda: send_body(d, "/tokenize", b'{"content":"a","content":"b"}'))
    check_case(d, "tokenize invalid UTF-8", BAD,
               lambda: send_body(d, "/tokenize", b'{"content":"a\xff"}'))
    check_case(d, "tokenize JSON nested 10000 deep", BAD,
               lambda: send_body(d, "/tokenize", b'{"content":"a","x":' + b"[" * 10000
                                 + b"]" * 10000 + b"}"))
    check_case(d, "detokenize id -1", BAD,
               lambda: send_body(d, "/detokenize", b'{"tokens":[-1]}'))
    check_case(d, "detokenize id n_vocab", BAD,
               lambda: send_body(d, "/detokenize", ('{"tokens":[%d]}' % state["n_vocab"]).encode()))
    check_case(d, "detokenize tokens a string", BAD,
               lambda: send_body(d, "/detokenize", b'{"tokens":"abc"}'))


def auth_cases(d):
    if not state["key"]:
        R.skip("auth cases", "this llamad has no API key option (--api-key-file / --api-key)")
        return
    routes = [("POST", "/v1/completions", b'{"prompt":"Hi","max_tokens":1}'),
              ("POST", "/v1/chat/completions",
               b'{"messages":[{"role":"user","content":"Hi"}],"max_tokens":1}'),
              ("GET", "/v1/models", None),
              ("POST", "/tokenize", b'{"content":"Hi"}'),
              ("POST", "/detokenize", b'{"tokens":[1]}'),
              ("GET", "/metrics", None)]
    variants = [("no key", None), ("malformed header", "Bearer"),
                ("Basic scheme", "Basic dXNlcjpwYXNz"), ("wrong key", "Bearer " + KEY[:-1] + "x"),
                ("key prefix", "Bearer " + KEY[:-4]), ("key with suffix", "Bearer " + KEY + "a")]
    for method, path, body in routes:
        for vname, value in variants:
            h = {"Content-Type": "application/json"}
            if value is not None:
                h["Authorization"] = value
            check_case(d, "auth %s %s: %s" % (method, path, vname), {401},
                       lambda m=method, p=path, b=body, hh=h: H.request(d, m, p, b, headers=hh),
                       err_type="authentication_error")
    st, _, _ = H.request(d, "GET", "/health", timeout=10)
    R.check("auth: /health answers without a key", st == 200, "status %r" % st)
    R.check("auth: the key is not in the log", KEY not in d.log() and KEY[:-1] not in d.log(),
            "the log holds key material")


def raw_all(d, data, wait=15, body_after=None):
    """Send `data` on a fresh socket (then `body_after`, if given, once the
    first bytes of an answer arrived or 1 s passed) and read until the server
    closes or `wait` s pass.  Returns (every status line's code in order,
    whole bytes, closed by the server, seconds taken)."""
    t0 = time.monotonic()
    s = socket.create_connection(("127.0.0.1", d.port), timeout=wait)
    buf, closed = b"", False
    try:
        try:
            s.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass
        s.settimeout(0.2)
        sent_rest = body_after is None
        while time.monotonic() - t0 < wait:
            if not sent_rest and (buf or time.monotonic() - t0 > 1.0):
                try:
                    s.sendall(body_after)
                except (BrokenPipeError, ConnectionResetError):
                    pass
                sent_rest = True
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                continue
            except ConnectionResetError:
                closed = True
                break
            if not chunk:
                closed = True
                break
            buf += chunk
    finally:
        s.close()
    codes = [int(c) for c in re.findall(rb"(?m)^HTTP/1\.[01] (\d{3}) ", buf)]
    return codes, buf, closed, time.monotonic() - t0


def framing_cases(d):
    """Request smuggling surface (issue 17, item 5): a request framed two ways
    gets 400 and the connection closes, so that the bytes after it are never
    served as a second request."""
    body = b'{"prompt":"Hi","max_tokens":1}'
    head = b"POST /v1/completions HTTP/1.1\r\nHost: x\r\n" + auth_line() + \
        b"Content-Type: application/json\r\n"
    follow = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"
    cases = [
        ("two different Content-Length", head + b"Content-Length: 5\r\nContent-Length: %d\r\n\r\n"
         % len(body) + body + follow),
        ("two equal Content-Length", head + b"Content-Length: %d\r\nContent-Length: %d\r\n\r\n"
         % (len(body), len(body)) + body + follow),
        ("Content-Length and Transfer-Encoding", head + b"Content-Length: %d\r\n"
         b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n" % len(body) + follow),
        ("Transfer-Encoding: identity", head + b"Transfer-Encoding: identity\r\n\r\n" + body),
        ("Transfer-Encoding: gzip, chunked", head + b"Transfer-Encoding: gzip, chunked\r\n\r\n"
         b"0\r\n\r\n" + follow),
        ("two Transfer-Encoding headers", head + b"Transfer-Encoding: chunked\r\n"
         b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + follow),
        ("two Host headers", b"GET /health HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n" + follow),
    ]
    for name, data in cases:
        results["cases"] += 1
        codes, buf, closed, secs = raw_all(d, data)
        st, _, b = H.parse_response(buf)
        why = H.error_shape(b) if st is not None else "no answer"
        R.check("framing: %s is 400 and the connection closes" % name,
                codes == [400] and closed and secs < 10 and why is None and b'"bad_framing"' in b,
                "statuses %r, closed %r after %.1f s, %s: %r" % (codes, closed, secs, why, buf[:300]))
    # libmicrohttpd refuses these itself (its own HTML 400): what matters is
    # that nothing after them is served and the connection closes
    for name, data in (("Content-Length +31", head + b"Content-Length: +%d\r\n\r\n" % len(body)
                        + body + follow),
                       ("HTTP/1.1 without Host", b"GET /health HTTP/1.1\r\n\r\n" + follow)):
        results["cases"] += 1
        codes, buf, closed, secs = raw_all(d, data)
        R.check("framing: %s is 400 and the connection closes" % name,
                codes and set(codes) == {400} and closed and secs < 10,
                "statuses %r, closed %r after %.1f s, %s: %r" % (codes, closed, secs, why, buf[:300]))
    # a sound chunked body is still served
    results["cases"] += 1
    codes, buf, closed, _ = raw_all(d, head + b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                                    + b"%x\r\n" % len(body) + body + b"\r\n0\r\n\r\n")
    R.check("framing: a chunked body is served", codes == [200], "statuses %r: %r" % (codes, buf[:300]))
    # a chunk that declares 2^64-1 bytes: the request is cut by request-timeout,
    # the connection closes, and nothing is buffered past max-body
    results["cases"] += 1
    codes, buf, closed, secs = raw_all(d, head + b"Transfer-Encoding: chunked\r\n\r\n"
                                       b"FFFFFFFFFFFFFFFF\r\nabc", wait=REQUEST_TIMEOUT + 15)
    R.check("framing: a chunk of 2^64-1 bytes is cut within request-timeout",
            closed and all(c < 500 for c in codes) and secs < REQUEST_TIMEOUT + 12,
            "statuses %r, closed %r after %.1f s" % (codes, closed, secs))


def early_answers(d):
    """Key, route, method, type and declared length are checked when the
    headers are complete (issue 17, item 2): the answer comes before the body
    is sent, and no body is buffered for a client that is refused."""
    big = 1 << 20
    cases = [("no key", b"POST /v1/completions HTTP/1.1\r\nHost: x\r\n"
              b"Content-Type: application/json\r\n", 401) if state["key"] else None,
             ("unknown route", b"POST /v1/nothing HTTP/1.1\r\nHost: x\r\n" + auth_line(), 404),
             ("wrong method", b"PUT /v1/completions HTTP/1.1\r\nHost: x\r\n" + auth_line(), 405),
             ("wrong type", b"POST /v1/completions HTTP/1.1\r\nHost: x\r\n" + auth_line()
              + b"Content-Type: text/plain\r\n", 415),
             ("declared too large", b"POST /v1/completions HTTP/1.1\r\nHost: x\r\n" + auth_line()
              + b"Content-Type: application/json\r\n", 413)]
    for case in cases:
        if case is None:
            continue
        name, head, want = case
        n = big * 4 if want == 413 else big
        results["cases"] += 1
        # the headers only; the body would follow the answer (it never needs to)
        codes, buf, closed, secs = raw_all(d, head + b"Content-Length: %d\r\n\r\n" % n, wait=10)
        R.check("early answer: %s is %d before any body is sent, then close" % (name, want),
                codes == [want] and closed and secs < 5,
                "statuses %r, closed %r after %.1f s: %r" % (codes, closed, secs, buf[:200]))
    if not state["key"]:
        return
    # 150 clients without a key each declare 1 MiB and send all but a byte of
    # it: none of it may be held (it used to be buffered until the timeout)
    rss0 = d.proc_status("VmRSS")
    socks = []
    head = (b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % big)
    chunk = b"x" * (big - 1)
    for _ in range(150):
        s = socket.create_connection(("127.0.0.1", d.port), timeout=10)
        try:
            s.sendall(head)
            s.settimeout(2)
            s.sendall(chunk)
        except (BrokenPipeError, ConnectionResetError, socket.timeout):
            pass
        socks.append(s)
    rss1 = d.proc_status("VmRSS")
    for s in socks:
        s.close()
    results["cases"] += 1
    R.check("150 unauthenticated 1 MiB bodies hold less than 40 MB",
            rss0 is not None and rss1 is not None and rss1 - rss0 < 40 * 1024,
            "VmRSS %r kB -> %r kB" % (rss0, rss1))


def log_injection(d):
    """Bytes a client controls are escaped before they reach the log (issue 17,
    item 4): no forged line, no terminal escape, no invalid UTF-8."""
    results["cases"] += 1
    H.raw(d, b"GET /v1/models%0aFORGED-LINE%0d%1b[31mred%c2%9b HTTP/1.1\r\nHost: x\r\n"
          + auth_line() + b"Connection: close\r\n\r\n", timeout=10)
    H.raw(d, b"GET /nothing%0a2026-01-01T00:00:00.000Z%20error%20FORGED-TWO%ff HTTP/1.1\r\n"
          b"Host: x\r\nConnection: close\r\n\r\n", timeout=10)
    time.sleep(0.3)
    with open(d.log_path, "rb") as f:
        raw_log = f.read()
    lines = raw_log.split(b"\n")
    forged = [ln for ln in lines if b"FORGED" in ln and not re.match(rb"^\d{4}-\d\d-\d\dT.* /", ln)]
    bad = [b for b in (b"\x1b", b"\r", b"\xc2\x9b") if b in raw_log]
    try:
        raw_log.decode("utf-8")
        utf8 = True
    except UnicodeDecodeError:
        utf8 = False
    R.check("log: a URL with %0a, %0d, ESC and C1 forges no line and no escape",
            not forged and not bad and utf8 and b"\\x0aFORGED-LINE" in raw_log,
            "forged lines %r, raw control bytes %r, valid UTF-8 %r" % (forged[:3], bad, utf8))


def learn_limits(d):
    """n_vocab and n_ctx: from /v1/models when it says, else the start-up log."""
    try:
        st, _, b = H.request(d, "GET", "/v1/models", headers=hdrs(), timeout=10)
        m = json.loads(b)["data"][0] if st == 200 else {}
    except (ValueError, KeyError, IndexError, OSError):
        m = {}
    for k in ("context_length", "max_model_len", "n_ctx", "context_window"):
        if isinstance(m.get(k), int):
            state["n_ctx"] = m[k]
            break
    if state["n_ctx"] is None:
        found = re.findall(r"context (\d+)", d.log())
        if found:
            state["n_ctx"] = int(found[-1])


def canary(d):
    st, _, b = send_json(d, "/v1/completions", CANARY)
    if st != 200:
        return None, "canary status %r: %r" % (st, b[:300])
    return json.loads(b)["choices"][0]["text"], None


def main():
    d = H.Daemon(["--kv-memory", KV, "--request-timeout", str(REQUEST_TIMEOUT)])
    key_args = H.auth_args(KEY, d.tmp)
    state["key"] = KEY if key_args else None
    d.extra_args += key_args or []
    try:
        d.start()
    except H.DaemonError as ex:
        R.fail("daemon starts", ex)
        R.finish()
    t0 = time.monotonic()
    try:
        learn_limits(d)
        before, why = canary(d)
        R.check("canary before the battery", before is not None, why)
        numeric_cases(d)
        sampling_cases(d)
        prompt_cases(d)
        encoding_cases(d)
        route_cases(d)
        auth_cases(d)
        framing_cases(d)
        early_answers(d)
        log_injection(d)
        after, why = canary(d)
        R.check("canary unchanged after the battery", after == before and after is not None,
                why or "before %r, after %r" % (before, after))
        R.check("at least 80 cases", results["cases"] >= 80, "%d cases" % results["cases"])
        R.check("zero 5xx responses", not results["5xx"], "\n".join(results["5xx"]))
        print("  (%d cases in %.1f s; n_ctx %s)" % (results["cases"], time.monotonic() - t0,
                                                   state["n_ctx"]))
    finally:
        rc = d.stop()
        R.check("daemon exits 0 after the battery", rc == 0,
                "exit status %r\n%s" % (rc, d.log()[-1500:]))
        log = d.log()
        san = [ln for ln in log.splitlines() if "runtime error:" in ln or "Sanitizer" in ln]
        R.check("no sanitizer reports in the log", not san, "\n".join(san[:10]))
    R.finish()


if __name__ == "__main__":
    main()
