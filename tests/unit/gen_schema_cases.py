#!/usr/bin/env python3
"""gen_schema_cases.py - writes tests/unit/schema_cases.h, the table of
(schema, instance, expected) that test_grammar_schema.c checks llamad's
JSON Schema grammars against.  "expected" is what the Python jsonschema
package (Draft 2020-12, with its format checker) says, so the table is an
independent reference.  Instances are written the way llamad's grammars
produce JSON (compact or with a little whitespace, properties in declared
order), so that the grammar and the validator must agree on every row.

Usage: /work/main/.venv/bin/python tests/unit/gen_schema_cases.py > tests/unit/schema_cases.h
"""
import importlib.metadata
import json
import sys

import jsonschema

CASES = [
    ({"type": "string"}, ['"abc"', '""', '"\\u00e9\\n"', '"h\u00e9llo \u4e16\u754c"', '12', 'null', '"a']),
    ({"type": "string", "minLength": 2, "maxLength": 3},
     ['"ab"', '"abc"', '"a"', '"abcd"', '"\u00e9\u00e9"', '"\\n\\t"', '"\\u0041"']),
    ({"type": "integer"}, ['0', '-7', '123456789', '1.5', '"1"', '01']),
    ({"type": "integer", "minimum": -15, "maximum": 120},
     ['-15', '-16', '-9', '0', '7', '99', '100', '119', '120', '121', '1000', '-100']),
    ({"type": "integer", "exclusiveMinimum": 9, "exclusiveMaximum": 1000},
     ['9', '10', '11', '99', '500', '999', '1000', '-1']),
    ({"type": "integer", "minimum": 37}, ['36', '37', '38', '99', '100', '123456', '0', '-37']),
    ({"type": "integer", "maximum": -20}, ['-20', '-19', '-21', '-100', '-1000000', '0', '20']),
    ({"type": "integer", "minimum": 1, "maximum": 1}, ['1', '0', '2', '10']),
    ({"type": "number"}, ['0', '-0.5', '1e10', '2.5E-3', '-1', '.5', '1.', '"x"']),
    ({"type": "number", "minimum": 0}, ['0', '0.0', '3.25', '1e5', '-1', '-0.001']),
    ({"type": "number", "exclusiveMinimum": 0}, ['0', '0.0', '0.001', '7', '7.5e-3', '-2']),
    ({"type": "boolean"}, ['true', 'false', 'null', '0']),
    ({"type": "null"}, ['null', 'false']),
    ({"type": ["string", "null"]}, ['"x"', 'null', '1']),
    ({"enum": ["red", "gr\u00fcn", 3, None, {"a": [1, 2]}]},
     ['"red"', '"gr\u00fcn"', '3', 'null', '{"a":[1,2]}', '"blue"', '4']),
    ({"const": "fixed"}, ['"fixed"', '"other"']),
    ({"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
      "required": ["name"], "additionalProperties": False},
     ['{"name":"x","age":3}', '{"name":"x"}', '{ "name" : "x" , "age" : 3 }', '{"age":3}',
      '{"name":"x","other":1}', '{"name":1}']),
    ({"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"},
                                       "c": {"type": "integer"}}, "required": ["b"]},
     ['{"b":1}', '{"a":1,"b":2}', '{"b":2,"c":3}', '{"a":1,"b":2,"c":3}', '{}', '{"a":1}']),
    ({"type": "object", "properties": {"id": {"type": "integer"}}, "required": ["id"],
      "additionalProperties": {"type": "string"}},
     ['{"id":1}', '{"id":1,"x":"y"}', '{"id":1,"x":"y","z":"w"}', '{"id":1,"x":2}']),
    ({"type": "object"}, ['{}', '{"k":[1,{"z":null}]}', '[]']),
    ({"type": "array", "items": {"type": "integer"}, "minItems": 1, "maxItems": 3},
     ['[1]', '[1,2,3]', '[ 1 , 2 ]', '[]', '[1,2,3,4]', '["a"]']),
    ({"type": "array", "prefixItems": [{"type": "string"}, {"type": "integer"}], "items": False},
     ['["a",1]', '["a"]', '[]', '["a",1,2]', '[1,"a"]']),
    ({"type": "array", "prefixItems": [{"type": "string"}], "items": {"type": "boolean"}, "minItems": 2},
     ['["a",true]', '["a",true,false]', '["a"]', '["a",1]']),
    ({"anyOf": [{"type": "integer"}, {"type": "string", "maxLength": 1}]}, ['5', '"a"', '"ab"', 'null']),
    ({"allOf": [{"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]},
                {"properties": {"b": {"type": "string"}}}]},
     ['{"a":1}', '{"a":1,"b":"x"}', '{"b":"x"}']),
    ({"$defs": {"node": {"type": "object", "properties": {
        "v": {"type": "integer"},
        "kids": {"type": "array", "items": {"$ref": "#/$defs/node"}}}, "required": ["v"],
        "additionalProperties": False}}, "$ref": "#/$defs/node"},
     ['{"v":1}', '{"v":1,"kids":[{"v":2,"kids":[{"v":3}]},{"v":4}]}', '{"v":1,"kids":[{}]}']),
    ({"type": "string", "pattern": "^[A-Z]{2}[0-9]+$"}, ['"AB12"', '"ab12"', '"AB"', '"XAB1"', '"AB1x"']),
    ({"type": "string", "pattern": "o+k"}, ['"ok"', '"book keeper"', '"oak"', '""']),
    ({"type": "string", "format": "date"}, ['"2024-02-29"', '"2023-12-31"', '"2023-04-31"', '"2023-13-01"',
                                            '"2023-1-01"']),
    ({"type": "string", "format": "uuid"}, ['"123e4567-e89b-12d3-a456-426614174000"', '"123e4567e89b"']),
    ({"type": "string", "format": "ipv4"}, ['"192.168.0.1"', '"255.255.255.255"', '"256.1.1.1"',
                                            '"1.2.3"', '"01.2.3.4"']),
    ({"type": "string", "format": "email"}, ['"a.b@example.com"', '"nobody"']),
    ({"type": "object", "properties": {"l1": {"type": "object", "properties": {"l2": {"type": "object",
      "properties": {"l3": {"type": "array", "items": {"type": "object", "properties": {"l5": {
          "type": "array", "items": {"type": "integer"}}}, "required": ["l5"]}}}, "required": ["l3"]}},
      "required": ["l2"]}}, "required": ["l1"]},
     ['{"l1":{"l2":{"l3":[{"l5":[1,2]}]}}}', '{"l1":{"l2":{"l3":[{"l5":["x"]}]}}}']),
]


def c_string(s):
    out = []
    for b in s.encode("utf-8"):
        if b in (0x22, 0x5c):
            out.append("\\" + chr(b))
        elif 0x20 <= b < 0x7f:
            out.append(chr(b))
        else:
            out.append("\\%03o" % b)
    return '"' + "".join(out) + '"'


def main():
    print("/* schema_cases.h - generated by tests/unit/gen_schema_cases.py from Python's jsonschema")
    print(" * %s (Draft 2020-12, format checker on); do not edit. */" % importlib.metadata.version("jsonschema"))
    print("typedef struct { const char *schema; const char *instance; int valid; } schema_case_t;")
    print("static const schema_case_t schema_cases[] = {")
    for schema, instances in CASES:
        v = jsonschema.Draft202012Validator(schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
        for inst in instances:
            try:
                ok = v.is_valid(json.loads(inst))
            except json.JSONDecodeError:
                ok = False
            print("    { %s, %s, %d }," % (c_string(json.dumps(schema, ensure_ascii=False)), c_string(inst), int(ok)))
    print("};")


if __name__ == "__main__":
    sys.exit(main())
