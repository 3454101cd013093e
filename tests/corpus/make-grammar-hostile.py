#!/usr/bin/env python3
"""Write tests/corpus/grammar-hostile.json: constraints llamad must refuse.

usage: tests/corpus/make-grammar-hostile.py [OUT]   (default: next to this script)

The output is a JSON list of entries

    {"field": F, "value": V, "why": W}            or with "extra": {FIELD: VALUE, ...}

Each is a request field (response_format, guided_json, guided_regex,
guided_choice, guided_grammar, structured_outputs, grammar, json_schema) and
its value, to be added to an otherwise valid completion or chat request;
"extra" holds more fields to add to the same request (the two-constraint
cases).  Every entry must get an HTTP 400 within 2 s.  "why" says what is
wrong, for the test's failure message.  Each value's JSON is under 1 MiB
(checked here), and the file nests at most a few levels deep (checked
here), so that json.load reads it with Python's default recursion limit.  The big cases (depth 1000, 5000 properties, an enum of
5000) are built by code, which is why this file exists; edit the cases
here and run it again rather than editing the JSON.
"""
import json
import os
import sys

sys.setrecursionlimit(20000)   # json.dumps of the 1000-deep cases (the output stays shallow)

MAX_VALUE_BYTES = 1 << 20


def rf_schema(schema):
    """response_format carrying a JSON Schema, as OpenAI's clients send it."""
    return {"type": "json_schema", "json_schema": {"name": "t", "strict": True, "schema": schema}}


def nested_objects(depth):
    s = {"type": "string"}
    for _ in range(depth):
        s = {"type": "object", "properties": {"a": s}, "required": ["a"]}
    return s


def nested_arrays(depth):
    s = {"type": "integer"}
    for _ in range(depth):
        s = {"type": "array", "items": s}
    return s


def nested_parens(depth):
    return "root ::= " + "(" * depth + '"a"' + ")" * depth + "\n"


cases = []


def add(field, value, why, extra=None):
    e = {"field": field, "value": value, "why": why}
    if extra:
        e["extra"] = extra
    cases.append(e)


# ---------------------------------------------------------------- malformed schemas
add("response_format", {"type": "xml"}, "response_format type is not one llamad knows")
add("response_format", {"type": "json_schema"}, "json_schema response_format without json_schema")
add("response_format", {"type": "json_schema", "json_schema": {"name": "t"}}, "json_schema without schema")
add("response_format", rf_schema("not a schema"), "schema is a string, not an object")
add("response_format", "json", "response_format is not an object")
add("guided_json", {"type": "strin"}, "unknown type name")
add("guided_json", {"type": 5}, "type is a number")
add("guided_json", {"type": []}, "empty type array")
add("guided_json", {"type": "object", "properties": []}, "properties is an array")
add("guided_json", {"type": "object", "required": "a"}, "required is a string")
add("guided_json", '{"type": "object", ', "guided_json string that is not JSON")
add("guided_json", {"anyOf": []}, "empty anyOf")
add("guided_json", {"type": "array", "minItems": -1}, "negative minItems")
add("guided_json", {"type": "string", "pattern": "("}, "pattern that is not a regular expression")
add("json_schema", "not a schema", "llama.cpp json_schema given a string")
add("json_schema", {"type": "object", "properties": {"a": {"type": "nope"}}}, "unknown type inside properties")
add("json_schema", [1, 2], "schema is an array")

# ---------------------------------------------------------------- unsupported keywords
for kw, schema in [("not", {"not": {"type": "string"}}),
                   ("if", {"if": {"type": "string"}, "then": {"minLength": 1}}),
                   ("patternProperties", {"type": "object", "patternProperties": {"^a": {"type": "string"}}}),
                   ("dependentRequired", {"type": "object", "dependentRequired": {"a": ["b"]}}),
                   ("unevaluatedProperties", {"type": "object", "unevaluatedProperties": False}),
                   ("contains", {"type": "array", "contains": {"type": "integer"}}),
                   ("multipleOf", {"type": "integer", "multipleOf": 3}),
                   ("propertyNames", {"type": "object", "propertyNames": {"maxLength": 3}}),
                   ("uniqueItems", {"type": "array", "uniqueItems": True})]:
    add("guided_json", schema, f"unsupported keyword '{kw}' must be refused, not ignored")
add("response_format", rf_schema({"type": "object", "properties": {"a": {"not": {"type": "null"}}}}),
    "unsupported keyword 'not' nested in a property")

# ---------------------------------------------------------------- $ref
add("guided_json", {"$ref": "#"}, "$ref to itself and nothing else: infinitely recursive")
add("guided_json", {"$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"$ref": "#/$defs/a"}}, "$ref": "#/$defs/a"},
    "a -> b -> a with no type: infinitely recursive")
add("guided_json", {"$defs": {"a": {"$ref": "#/$defs/a"}}, "$ref": "#/$defs/a"}, "a -> a")
add("guided_json", {"$ref": "#/$defs/missing"}, "unresolvable $ref")
add("guided_json", {"$ref": "https://example.com/schema.json"}, "remote $ref")
add("guided_json", {"$ref": 5}, "$ref is not a string")
add("response_format", rf_schema({"type": "object", "properties": {"x": {"$ref": "#/definitions/none"}}}),
    "unresolvable $ref inside properties")
add("json_schema", {"$defs": {"n": {"type": "object", "properties": {"next": {"$ref": "#/$defs/n"}},
                                     "required": ["next"]}}, "$ref": "#/$defs/n"},
    "required recursion with no way out: matches nothing")

# ---------------------------------------------------------------- caps
# The deep ones go as JSON text (guided_json takes a string too), so that the
# corpus itself stays shallow enough for Python's json module and cJSON's
# nesting limit; llamad must refuse them whichever layer notices first.
add("guided_json", json.dumps(nested_objects(1000)), "objects nested 1000 deep (as a string)")
add("guided_json", json.dumps(nested_arrays(1000)), "arrays nested 1000 deep (as a string)")
add("guided_json", json.dumps(nested_arrays(500)), "arrays nested 500 deep (as a string), under cJSON's limit")
add("guided_json", {"type": "object", "properties": {f"p{i}": {"type": "integer"} for i in range(5000)}},
    "5000 properties")
add("json_schema", {"enum": [f"value-{i}" for i in range(5000)]}, "enum of 5000 strings")
add("guided_json", {"type": "array", "items": {"type": "integer"}, "minItems": 1000000}, "minItems past the repetition cap")
add("guided_json", {"type": "string", "minLength": 1000000}, "minLength past the repetition cap")

# ---------------------------------------------------------------- languages that are empty
add("guided_json", {"enum": []}, "empty enum matches nothing")
add("guided_json", {"type": "string", "minLength": 5, "maxLength": 2}, "minLength above maxLength")
add("guided_json", {"type": "integer", "minimum": 10, "maximum": 5}, "minimum above maximum")
add("guided_json", {"type": "array", "minItems": 3, "maxItems": 1}, "minItems above maxItems")
add("guided_json", {"type": "object", "properties": {}, "required": ["x"], "additionalProperties": False},
    "a required property that may not appear")

# ---------------------------------------------------------------- regular expressions
add("guided_regex", "(a|b)*a(a|b){30}", "DFA of 2^31 states, past REGEX_MAX_STATES")
add("guided_json", {"type": "string", "pattern": "^(a|b)*a(a|b){30}$"}, "pattern past the DFA cap")
add("structured_outputs", {"regex": "(a|b)*a(a|b){30}"}, "DFA cap through structured_outputs")
add("guided_regex", "(", "unbalanced parenthesis")
add("guided_regex", "a)", "unbalanced closing parenthesis")
add("guided_regex", "[z-a]", "range out of order")
add("guided_regex", "a{5,2}", "repetition minimum above maximum")
add("guided_regex", "a{100000}", "repetition past the cap")
add("guided_regex", "abc\\", "trailing backslash")
add("guided_regex", "(a)\\1", "backreference: not regular")
add("guided_regex", "(?=a)a", "lookahead: not supported")
add("guided_regex", "[]", "empty class matches nothing")
add("guided_regex", 42, "guided_regex is not a string")

# ---------------------------------------------------------------- choices
add("guided_choice", [], "empty choice list")
add("guided_choice", [1, 2], "choices that are not strings")
add("guided_choice", ["yes", 5], "one choice not a string")
add("guided_choice", [None], "null choice")
add("guided_choice", "yes", "guided_choice is a string, not a list")
add("guided_choice", {"a": "b"}, "guided_choice is an object")
add("structured_outputs", {"choice": []}, "empty choice list through structured_outputs")

# ---------------------------------------------------------------- GBNF
add("guided_grammar", 'root ::= "abc', "unterminated string")
add("guided_grammar", "root ::= [a-", "unterminated class")
add("guided_grammar", 'root = "a"', "'=' instead of '::='")
add("guided_grammar", 'root ::= ("a"', "unclosed parenthesis")
add("guided_grammar", 'root ::= "\\q"', "unknown escape")
add("guided_grammar", 'root ::= [z-a]', "class range out of order")
add("grammar", 'start ::= "a"', "no root rule")
add("grammar", "", "empty grammar")
add("grammar", "root ::= value", "undefined rule")
add("grammar", 'root ::= "a"\nroot ::= "b"', "rule defined twice")
add("grammar", 'root ::= root "a" | "a"', "left recursion")
add("grammar", 'root ::= x\nx ::= "b"? y | "c"\ny ::= x "d"', "indirect left recursion through an optional")
add("guided_grammar", 'root ::= "a" root', "a grammar that matches nothing")
add("guided_grammar", 'root ::= x\nx ::= "a" x', "matches nothing through another rule")
add("grammar", 'root ::= "a"{100000}', "repetition past the cap")
add("grammar", 'root ::= "a"{5,2}', "repetition minimum above maximum")
add("grammar", nested_parens(300), "parentheses nested 300 deep (cap 256)")
add("grammar", 'root ::= "\\uD800"', "surrogate escape")
add("grammar", 42, "grammar is not a string")
add("structured_outputs", {"grammar": 'root ::= root "x"'}, "left recursion through structured_outputs")

# ---------------------------------------------------------------- two constraints
add("guided_json", {"type": "string"}, "two constraints: guided_json and guided_regex", extra={"guided_regex": "a+"})
add("response_format", {"type": "json_object"}, "two constraints: response_format and grammar",
    extra={"grammar": 'root ::= "a"'})
add("guided_choice", ["a", "b"], "two constraints: guided_choice and json_schema",
    extra={"json_schema": {"type": "string"}})
add("structured_outputs", {"json": {"type": "string"}, "regex": "a+"}, "two constraints inside structured_outputs")
add("grammar", 'root ::= "a"', "two constraints: grammar and guided_grammar",
    extra={"guided_grammar": 'root ::= "b"'})


def depth(v):
    if isinstance(v, dict):
        return 1 + max((depth(x) for x in v.values()), default=0)
    if isinstance(v, list):
        return 1 + max((depth(x) for x in v), default=0)
    return 0


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                             "grammar-hostile.json")
    for c in cases:
        n = len(json.dumps(c["value"]).encode())
        assert n < MAX_VALUE_BYTES, (c["why"], n)
        assert depth(c) < 100, c["why"]
    with open(out, "w", encoding="utf-8") as f:
        json.dump(cases, f, ensure_ascii=False, separators=(",", ":"))
        f.write("\n")
    print(f"{out}: {len(cases)} cases")


if __name__ == "__main__":
    main()
