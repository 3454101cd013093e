#!/usr/bin/env python3
"""structured_lib.py - what test_structured.py and bench_structured.py share:
the structured-output corpora under tests/corpus/ and the independent
checks of an output against its constraint.

None of this uses llamad's code: JSON Schemas are checked with the
`jsonschema` package (with the formats checked here, strictly, by RFC 3339
and RFC 5321 shapes), regular expressions with Python `re`, and GBNF
grammars with the Python regex or Lark grammar written beside each one in
tests/corpus/gbnf/index.json.
"""

import datetime
import glob
import ipaddress
import json
import os
import re

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(os.path.dirname(HERE), "corpus")

# What docs/API.md (issue 15) lists as the supported subset.  A corpus schema
# must use nothing else: an unsupported keyword is a 400 by design.
SUPPORTED_KEYWORDS = {
    "type", "properties", "required", "additionalProperties", "items", "prefixItems",
    "minItems", "maxItems", "enum", "const", "anyOf", "oneOf", "allOf", "$ref", "$defs",
    "minLength", "maxLength", "pattern", "format", "minimum", "maximum",
    "exclusiveMinimum", "exclusiveMaximum", "description", "title",
}
SUPPORTED_FORMATS = {"date", "time", "date-time", "uuid", "email", "ipv4"}
# keywords whose value is a map of name -> schema, or a list of schemas, or a schema
_MAP_KEYS = ("properties", "$defs")
_LIST_KEYS = ("prefixItems", "anyOf", "oneOf", "allOf")
_SCHEMA_KEYS = ("items", "additionalProperties")

MAX_WS_GAP = 20     # the most whitespace characters the JSON grammar allows between tokens


# ---------------------------------------------------------------- corpora

def load_schemas():
    """[(name, {"description", "prompt", "schema"})] in file order."""
    out = []
    for p in sorted(glob.glob(os.path.join(CORPUS, "schemas", "*.json"))):
        with open(p, encoding="utf-8") as f:
            out.append((os.path.splitext(os.path.basename(p))[0], json.load(f)))
    return out


def load_regexes():
    with open(os.path.join(CORPUS, "regex.json"), encoding="utf-8") as f:
        return json.load(f)


def load_gbnf():
    """[{"file", "prompt", "regex" | "lark", "text"}]."""
    d = os.path.join(CORPUS, "gbnf")
    with open(os.path.join(d, "index.json"), encoding="utf-8") as f:
        idx = json.load(f)
    for e in idx:
        with open(os.path.join(d, e["file"]), encoding="utf-8") as f:
            e["text"] = f.read()
    return idx


def load_hostile():
    """The hostile corpus (branch gbnf) as a list, or None when it is absent."""
    p = os.path.join(CORPUS, "grammar-hostile.json")
    if not os.path.exists(p):
        return None
    with open(p, encoding="utf-8") as f:
        return json.load(f)


def unsupported_keywords(schema, depth=0):
    """The keywords and formats of schema outside the supported subset (a list)."""
    if depth > 64:
        return ["nesting deeper than 64"]
    if isinstance(schema, bool):
        return []
    if not isinstance(schema, dict):
        return ["a schema that is a %s" % type(schema).__name__]
    bad = [k for k in schema if k not in SUPPORTED_KEYWORDS]
    if "format" in schema and schema["format"] not in SUPPORTED_FORMATS:
        bad.append("format " + str(schema["format"]))
    for k in ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum"):
        # number bounds other than minimum >= 0 are not expressible
        if k in schema and "integer" not in _types(schema) and not (k == "minimum" and schema[k] >= 0):
            bad.append("%s on a number" % k)
    for k in _MAP_KEYS:
        for sub in schema.get(k, {}).values():
            bad += unsupported_keywords(sub, depth + 1)
    for k in _LIST_KEYS:
        for sub in schema.get(k, []):
            bad += unsupported_keywords(sub, depth + 1)
    for k in _SCHEMA_KEYS:
        if k in schema:
            bad += unsupported_keywords(schema[k], depth + 1)
    return bad


def _types(schema):
    t = schema.get("type", [])
    return t if isinstance(t, list) else [t]


# ---------------------------------------------------------------- JSON checks

_DAYS = {1: 31, 2: 29, 3: 31, 4: 30, 5: 31, 6: 30, 7: 31, 8: 31, 9: 30, 10: 31, 11: 30, 12: 31}
_DATE = re.compile(r"(\d{4})-(\d{2})-(\d{2})\Z", re.A)
_TIME = re.compile(r"(\d{2}):(\d{2}):(\d{2})(\.\d+)?([Zz]|[+-](\d{2}):(\d{2}))\Z", re.A)
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\Z")
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_EMAIL = re.compile(r"(%s(\.%s)*|\"([^\"\\\r\n]|\\.)*\")@([A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?"
                    r"(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*|\[[^\[\]\\]+\])\Z"
                    % (_ATOM, _ATOM), re.A)


def is_date(s):
    """RFC 3339 full-date.  February 29 is accepted in every year: a grammar
    cannot cheaply know leap years, and the issue does not ask it to."""
    m = _DATE.match(s)
    if not m:
        return False
    mo, d = int(m.group(2)), int(m.group(3))
    return 1 <= mo <= 12 and 1 <= d <= _DAYS[mo]


def is_time(s):
    """RFC 3339 full-time (the offset is required; a leap second 60 allowed)."""
    m = _TIME.match(s)
    if not m:
        return False
    h, mi, se = int(m.group(1)), int(m.group(2)), int(m.group(3))
    if h > 23 or mi > 59 or se > 60:
        return False
    if m.group(6) is not None and (int(m.group(6)) > 23 or int(m.group(7)) > 59):
        return False
    return True


def is_date_time(s):
    if len(s) < 11 or s[10] not in "Tt":
        return False
    return is_date(s[:10]) and is_time(s[11:])


def is_ipv4(s):
    if not re.fullmatch(r"\d{1,3}(\.\d{1,3}){3}", s, re.A):
        return False
    try:
        ipaddress.IPv4Address(s)    # rejects 256 and leading zeros
    except ValueError:
        return False
    return True


FORMAT_CHECKS = {"date": is_date, "time": is_time, "date-time": is_date_time,
                 "uuid": lambda s: _UUID.match(s) is not None,
                 "email": lambda s: _EMAIL.match(s) is not None, "ipv4": is_ipv4}


def validator(schema):
    """A Draft 2020-12 validator of schema that also asserts the six formats."""
    import jsonschema
    fc = jsonschema.FormatChecker(formats=())
    for name, fn in FORMAT_CHECKS.items():
        fc.checks(name)(lambda inst, fn=fn: not isinstance(inst, str) or fn(inst))
    return jsonschema.Draft202012Validator(schema, format_checker=fc)


def longest_ws_gap(text):
    """The longest run of JSON whitespace outside strings in text."""
    best = run = 0
    in_str = esc = False
    for ch in text:
        if in_str:
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == '"':
                in_str = False
            continue
        if ch in " \t\n\r":
            run += 1
            best = max(best, run)
            continue
        run = 0
        if ch == '"':
            in_str = True
    return best


def check_json(text, schema):
    """None when text is one JSON text valid under schema (None: any JSON
    object) with whitespace gaps of at most MAX_WS_GAP; else the problem."""
    try:
        v = json.loads(text)
    except ValueError as ex:
        return "not JSON (%s): %r" % (ex, text[:300])
    gap = longest_ws_gap(text)
    if gap > MAX_WS_GAP:
        return "a whitespace gap of %d characters (cap %d): %r" % (gap, MAX_WS_GAP, text[:300])
    if schema is None:
        return None if isinstance(v, dict) else "not a JSON object: %r" % text[:300]
    errs = sorted(validator(schema).iter_errors(v), key=lambda e: list(e.absolute_path))
    if errs:
        e = errs[0]
        return "invalid at %s: %s; output %r" % ("/".join(map(str, e.absolute_path)) or "(root)",
                                                e.message[:200], text[:300])
    return None


# ---------------------------------------------------------------- regex and GBNF checks

def regex_prefix_ok(pattern, text):
    """True/False: text is a prefix of a string of pattern's language; None
    when the `regex` package (for partial matching) is not installed."""
    try:
        import regex
    except ImportError:
        return None
    return regex.fullmatch(pattern, text, partial=True) is not None


def gbnf_recognizer(entry):
    """fn(text) -> bool for a GBNF corpus entry, from its regex or its Lark
    grammar; raises ImportError when Lark is needed and missing."""
    if "regex" in entry:
        r = re.compile(entry["regex"])
        return lambda s: r.fullmatch(s) is not None
    import lark
    p = lark.Lark(entry["lark"], parser="earley", lexer="dynamic")

    def accepts(s):
        try:
            p.parse(s)
            return True
        except lark.exceptions.LarkError:
            return False
    return accepts
