/*
 * test_grammar_schema.c - JSON Schema to grammar (engine/grammar/json_schema*.c):
 * for each keyword, texts the grammar must accept and texts it must
 * reject; the table of schema_cases.h, generated from Python's jsonschema;
 * the refusals (unsupported keywords, malformed schemas, caps) with their
 * codes and messages.
 */
#include "test.h"

#include "base/err.h"
#include "grammar/grammar.h"
#include "schema_cases.h"

/* The grammar of schema (NULL: json_object); fails the test when it does not compile. */
static grammar_t *compile(const char *schema)
{
    grammar_t *g = NULL;
    char err[ERR_MSG_MAX] = "";
    int rc = grammar_from_json_schema(schema, schema != NULL ? strlen(schema) : 0, NULL, &g, err, sizeof err);
    ASSERT_MSG(rc == 0 && g != NULL, "schema %s: rc %d: %s", schema, rc, err);
    return g;
}

/* Whether g accepts the whole of text. */
static int accepts(grammar_t *g, const char *text)
{
    gmatch_t *m = NULL;
    ASSERT_EQ_INT(gm_create(&m, g), 0);
    int ok = gm_feed(m, text, strlen(text)) == 0 && gm_accepting(m);
    gm_destroy(m);
    return ok;
}

/* Every text of yes accepted, every text of no rejected (lists end with NULL). */
static void check(const char *schema, const char *const *yes, const char *const *no)
{
    grammar_t *g = compile(schema);
    for (size_t i = 0; yes[i] != NULL; i++)
        ASSERT_MSG(accepts(g, yes[i]), "schema %s rejects %s", schema, yes[i]);
    for (size_t i = 0; no[i] != NULL; i++)
        ASSERT_MSG(!accepts(g, no[i]), "schema %s accepts %s", schema, no[i]);
    grammar_release(g);
}

#define L(...) (const char *const[]){ __VA_ARGS__, NULL }

/* The schema is refused with code and a message containing part. */
static void refused(const char *schema, int code, const char *part)
{
    grammar_t *g = NULL;
    char err[ERR_MSG_MAX] = "";
    int rc = grammar_from_json_schema(schema, strlen(schema), NULL, &g, err, sizeof err);
    ASSERT_MSG(rc == code, "schema %s: rc %d (want %d): %s", schema, rc, code, err);
    ASSERT(g == NULL);
    ASSERT_MSG(strstr(err, part) != NULL, "schema %s: message \"%s\" lacks \"%s\"", schema, err, part);
}

TEST(table_agrees_with_jsonschema)
{
    size_t n = sizeof schema_cases / sizeof schema_cases[0];
    ASSERT(n >= 100);
    for (size_t i = 0; i < n; i++) {
        grammar_t *g = compile(schema_cases[i].schema);
        int got = accepts(g, schema_cases[i].instance);
        ASSERT_MSG(got == schema_cases[i].valid, "schema %s, instance %s: grammar %d, jsonschema %d",
                   schema_cases[i].schema, schema_cases[i].instance, got, schema_cases[i].valid);
        grammar_release(g);
    }
}

TEST(json_object_any)
{
    check(NULL, L("{}", "{\"a\":[1,2.5e3,\"x\",true,false,null,{}]}", "{ \"k\" :\n\t{\"n\": -0.5} }"),
          L("[]", "1", "\"s\"", "{", "{\"a\"}", "{\"a\":1,}", " {}", "{}x"));
}

TEST(whitespace_is_bounded)
{
    char many[64];
    snprintf(many, sizeof many, "{%*s}", 21, "");
    check("{\"type\":\"object\"}", L("{                    }"), L(many));
    check("{\"type\":\"array\"}", L("[\n  1,\n  2\n]", "[\t]"), L("[\r]", "[1 ,, 2]"));
}

TEST(strings_unicode_and_escapes)
{
    check("{\"type\":\"string\"}",
          L("\"\"", "\"\\\" \\\\ \\/ \\b \\f \\n \\r \\t\"", "\"\\u00E9\\ud83d\\ude00\"",
            "\"\xc3\xa9\xe4\xb8\x96\xf0\x9f\x98\x80\""),
          L("\"\\x\"", "\"\\u12\"", "\"a\nb\"", "\"a\tb\"", "\"\xc3\"", "\"\xed\xa0\x80\"", "'a'"));
    check("{\"type\":\"string\",\"maxLength\":2}", L("\"\\u00e9\\n\"", "\"\xf0\x9f\x98\x80\xc3\xa9\""),
          L("\"abc\"", "\"\\n\\n\\n\""));
}

TEST(integer_ranges_exact)
{
    /* Every value from -1100 to 1100 against a range, compared with arithmetic. */
    static const struct { const char *schema; long lo, hi; } r[] = {
        { "{\"type\":\"integer\",\"minimum\":-1000,\"maximum\":-3}", -1000, -3 },
        { "{\"type\":\"integer\",\"minimum\":-99,\"maximum\":1001}", -99, 1001 },
        { "{\"type\":\"integer\",\"exclusiveMinimum\":0,\"maximum\":10}", 1, 10 },
        { "{\"type\":\"integer\",\"minimum\":19,\"exclusiveMaximum\":301}", 19, 300 },
        { "{\"type\":\"integer\",\"minimum\":0.5,\"maximum\":99.5}", 1, 99 },
        { "{\"type\":\"integer\",\"minimum\":123}", 123, 100000 },
        { "{\"type\":\"integer\",\"maximum\":-45}", -100000, -45 },
        { "{\"type\":\"integer\",\"maximum\":7}", -100000, 7 },
    };
    for (size_t k = 0; k < sizeof r / sizeof r[0]; k++) {
        grammar_t *g = compile(r[k].schema);
        for (long v = -1100; v <= 1100; v++) {
            char text[32];
            snprintf(text, sizeof text, "%ld", v);
            int want = v >= r[k].lo && v <= r[k].hi;
            ASSERT_MSG(accepts(g, text) == want, "%s: %s: want %d", r[k].schema, text, want);
        }
        ASSERT(!accepts(g, "1.0") && !accepts(g, "-0") && !accepts(g, "007"));
        grammar_release(g);
    }
    check("{\"type\":\"integer\",\"minimum\":-1000000000000000,\"maximum\":1000000000000000}",
          L("1000000000000000", "-1000000000000000", "999999999999999"),
          L("1000000000000001", "-1000000000000001"));
}

TEST(numbers)
{
    check("{\"type\":\"number\"}", L("0", "-0", "1.25", "-3e+7", "6E-02"),
          L("+1", "01", "1.", ".5", "1e", "0x1", "NaN", "--1"));
    check("{\"type\":\"number\",\"exclusiveMinimum\":0}", L("0.01", "1", "0.0001e9", "3.0"),
          L("0", "0.000", "0e5", "-1"));
}

TEST(objects_order_and_optional)
{
    const char *s = "{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"integer\"},\"b\":{\"type\":\"string\"},"
                    "\"c\":{\"type\":\"boolean\"}},\"required\":[\"a\",\"c\"]}";
    check(s, L("{\"a\":1,\"c\":true}", "{\"a\":1,\"b\":\"x\",\"c\":false}", "{ \"a\" : 1 ,\n \"c\" : true }"),
          L("{\"c\":true,\"a\":1}", "{\"a\":1}", "{\"a\":1,,\"c\":true}", "{\"a\":1,\"c\":true,}",
            "{\"a\":1,\"c\":true,\"d\":1}"));
    check("{\"type\":\"object\",\"properties\":{\"x\":{},\"y\":{}}}", L("{}", "{\"x\":1}", "{\"y\":[]}"),
          L("{,}", "{\"x\":1,}", "{\"z\":1}"));
}

TEST(arrays)
{
    check("{\"type\":\"array\",\"items\":{\"type\":\"string\"},\"maxItems\":0}", L("[]", "[ ]"), L("[\"a\"]"));
    check("{\"type\":\"array\",\"prefixItems\":[{\"const\":1},{\"const\":2}],\"minItems\":1}",
          L("[1]", "[1,2]", "[1,2,\"any\",{}]"), L("[]", "[2]", "[1,3]"));
}

TEST(pattern)
{
    check("{\"type\":\"string\",\"pattern\":\"^[a-z]+-[0-9]{2}$\"}", L("\"ab-12\"", "\"z-00\""),
          L("\"ab-1\"", "\"AB-12\"", "\"xab-123\"", "\"ab-12\\n\""));
    check("{\"type\":\"string\",\"pattern\":\"ab\"}", L("\"ab\"", "\"xxaby\""), L("\"a\"", "\"ba\""));
    /* with a length bound: the pattern's DFA times a count of code points */
    check("{\"type\":\"string\",\"pattern\":\"^[a-z]+$\",\"minLength\":2,\"maxLength\":4}",
          L("\"ab\"", "\"abcd\""), L("\"a\"", "\"abcde\"", "\"aB\"", "\"\""));
    check("{\"type\":\"string\",\"pattern\":\"\xc3\xa9\",\"minLength\":3}",
          L("\"x\xc3\xa9y\"", "\"\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\""),
          L("\"\xc3\xa9\"", "\"\xc3\xa9\xc3\xa9\"", "\"abc\""));
    check("{\"type\":\"string\",\"pattern\":\"^[0-9]*$\",\"maxLength\":0}", L("\"\""), L("\"1\""));
    refused("{\"type\":\"string\",\"pattern\":\"a\",\"maxLength\":100000}", ERR_FULL, "cap");
    refused("{\"type\":\"string\",\"format\":\"date\",\"maxLength\":10}", ERR_UNSUPPORTED, "maxLength");
}

TEST(recursion_and_refs)
{
    const char *tree = "{\"$defs\":{\"t\":{\"type\":\"object\",\"properties\":{\"kids\":{\"type\":\"array\","
                       "\"items\":{\"$ref\":\"#/$defs/t\"}}},\"additionalProperties\":false}},\"$ref\":\"#/$defs/t\"}";
    check(tree, L("{}", "{\"kids\":[]}", "{\"kids\":[{\"kids\":[{}]},{}]}"), L("{\"kids\":[1]}", "[]"));
    check("{\"type\":\"array\",\"items\":{\"anyOf\":[{\"type\":\"integer\"},{\"$ref\":\"#\"}]}}",
          L("[]", "[1,[2,[3,[]]]]"), L("[\"a\"]"));
    check("{\"definitions\":{\"a/b\":{\"type\":\"null\"},\"c~d\":{\"type\":\"boolean\"}},\"type\":\"array\","
          "\"prefixItems\":[{\"$ref\":\"#/definitions/a~1b\"},{\"$ref\":\"#/definitions/c~0d\"}]}",
          L("[null,true]"), L("[true,null]"));
}

TEST(unsupported_keywords_named)
{
    static const char *const kw[] = { "not", "if", "patternProperties", "dependentRequired", "multipleOf",
                                      "contains", "minProperties", "propertyNames", "unevaluatedProperties" };
    for (size_t i = 0; i < sizeof kw / sizeof kw[0]; i++) {
        char schema[128], want[128];
        snprintf(schema, sizeof schema, "{\"type\":\"object\",\"%s\":{}}", kw[i]);
        snprintf(want, sizeof want, "json_schema: keyword '%s' is not supported", kw[i]);
        refused(schema, ERR_UNSUPPORTED, want);
    }
    refused("{\"uniqueItems\":true}", ERR_UNSUPPORTED, "keyword 'uniqueItems' is not supported");
    refused("{\"type\":\"string\",\"format\":\"uri\"}", ERR_UNSUPPORTED, "format 'uri' is not supported");
    refused("{\"type\":\"number\",\"maximum\":3}", ERR_UNSUPPORTED, "'maximum'");
    refused("{\"allOf\":[{\"type\":\"string\"}]}", ERR_UNSUPPORTED, "allOf");
    refused("{\"$ref\":\"http://x/y\"}", ERR_UNSUPPORTED, "$ref");
}

TEST(malformed_schemas_invalid)
{
    refused("{\"type\":\"strin\"}", ERR_INVALID, "unknown type 'strin'");
    refused("{\"type\":3}", ERR_INVALID, "'type'");
    refused("{\"$ref\":\"#/$defs/missing\"}", ERR_INVALID, "does not resolve");
    refused("{\"$defs\":{\"a\":{\"$ref\":\"#/$defs/a\"}},\"$ref\":\"#/$defs/a\"}", ERR_INVALID, "never reaches");
    refused("{\"type\":\"array\",\"minItems\":3,\"maxItems\":2}", ERR_INVALID, "minItems 3");
    refused("{\"enum\":[]}", ERR_INVALID, "enum");
    refused("{\"type\":\"string\",\"minLength\":-1}", ERR_INVALID, "minLength");
    refused("false", ERR_INVALID, "accepts nothing");
    refused("{\"type\":\"integer\",\"minimum\":5,\"maximum\":4}", ERR_INVALID, "no integer");
    refused("{\"type\":", ERR_INVALID, "not valid JSON");
    refused("{} x", ERR_INVALID, "text after");
}

TEST(caps)
{
    size_t n = (256u * 1024u) + 10;
    char *big = malloc(n + 1);
    ASSERT(big != NULL);
    memset(big, ' ', n);
    big[0] = '{';
    big[n - 1] = '}';
    big[n] = '\0';
    refused(big, ERR_FULL, "256 KiB");
    /* 65 nested arrays. */
    char deep[2048] = "";
    for (int i = 0; i < 65; i++)
        strcat(deep, "{\"type\":\"array\",\"items\":");
    strcat(deep, "{}");
    for (int i = 0; i < 65; i++)
        strcat(deep, "}");
    refused(deep, ERR_FULL, "deeper than 64");
    /* 1025 enum values. */
    char *en = malloc(16 * 1100);
    ASSERT(en != NULL);
    strcpy(en, "{\"enum\":[0");
    for (int i = 1; i < 1025; i++)
        sprintf(en + strlen(en), ",%d", i);
    strcat(en, "]}");
    refused(en, ERR_FULL, "1024");
    free(en);
    free(big);
}

TEST(empty_and_true_accept_any)
{
    check("{}", L("1", "\"s\"", "[{}]", "null"), L("", "{", "nul"));
    check("true", L("false", "{\"a\":[]}"), L("]"));
    check("{\"title\":\"t\",\"description\":\"d\",\"default\":1,\"examples\":[1],\"$comment\":\"c\"}",
          L("1"), L(""));
}

TEST_LIST(T(table_agrees_with_jsonschema), T(json_object_any), T(whitespace_is_bounded),
          T(strings_unicode_and_escapes), T(integer_ranges_exact), T(numbers), T(objects_order_and_optional),
          T(arrays), T(pattern), T(recursion_and_refs), T(unsupported_keywords_named), T(malformed_schemas_invalid),
          T(caps), T(empty_and_true_accept_any));
