/*
 * test_grammar_tools.c - the grammar of tool calls (engine/grammar/tool_calls.c):
 * calls that must be accepted and rejected (the name ties the arguments
 * to one tool, the markup around calls, max_calls), and the refusals
 * (a bad spec, too many tools, a tool schema the JSON Schema compiler
 * refuses, named by its index).
 */
#include "test.h"

#include "base/err.h"
#include "grammar/grammar.h"

static int compile(const char *spec, grammar_t **g, char *err, size_t errlen)
{
    return grammar_from_tool_calls(spec, strlen(spec), NULL, g, err, errlen);
}

static int accepts(grammar_t *g, const char *text)
{
    gmatch_t *m = NULL;
    ASSERT_EQ_INT(gm_create(&m, g), 0);
    int ok = gm_feed(m, text, strlen(text)) == 0 && gm_accepting(m);
    gm_destroy(m);
    return ok;
}

static void check(const char *spec, const char *const *yes, const char *const *no)
{
    grammar_t *g = NULL;
    char err[ERR_MSG_MAX] = "";
    int rc = compile(spec, &g, err, sizeof err);
    ASSERT_MSG(rc == 0, "spec %s: rc %d: %s", spec, rc, err);
    for (size_t i = 0; yes[i] != NULL; i++)
        ASSERT_MSG(accepts(g, yes[i]), "spec %s rejects %s", spec, yes[i]);
    for (size_t i = 0; no[i] != NULL; i++)
        ASSERT_MSG(!accepts(g, no[i]), "spec %s accepts %s", spec, no[i]);
    grammar_release(g);
}

static void refused(const char *spec, int code, const char *part)
{
    grammar_t *g = NULL;
    char err[ERR_MSG_MAX] = "";
    int rc = compile(spec, &g, err, sizeof err);
    ASSERT_MSG(rc == code, "spec %s: rc %d (want %d): %s", spec, rc, code, err);
    ASSERT(g == NULL);
    ASSERT_MSG(strstr(err, part) != NULL, "message \"%s\" lacks \"%s\"", err, part);
}

#define L(...) (const char *const[]){ __VA_ARGS__, NULL }

#define HERMES "\"prefix\":\"<tool_call>\\n\",\"suffix\":\"\\n</tool_call>\",\"separator\":\"\\n\"," \
               "\"name_key\":\"name\",\"args_key\":\"arguments\""
#define TWO_TOOLS "\"tools\":[{\"name\":\"get_weather\",\"parameters\":{\"type\":\"object\"," \
    "\"properties\":{\"city\":{\"type\":\"string\"}},\"required\":[\"city\"]}}," \
    "{\"name\":\"add\",\"parameters\":{\"type\":\"object\",\"properties\":{\"a\":{\"type\":" \
    "\"integer\"},\"b\":{\"type\":\"integer\"}},\"required\":[\"a\",\"b\"]}}]"

TEST(hermes_one_call)
{
    check("{" HERMES ",\"max_calls\":1," TWO_TOOLS "}",
          L("<tool_call>\n{\"name\":\"get_weather\",\"arguments\":{\"city\":\"Paris\"}}\n</tool_call>",
            "<tool_call>\n{\"name\": \"add\", \"arguments\": {\"a\": 1, \"b\": -2}}\n</tool_call>"),
          L("<tool_call>\n{\"name\":\"add\",\"arguments\":{\"city\":\"Paris\"}}\n</tool_call>",
            "<tool_call>\n{\"name\":\"get_weather\",\"arguments\":{\"a\":1,\"b\":2}}\n</tool_call>",
            "<tool_call>\n{\"name\":\"other\",\"arguments\":{}}\n</tool_call>",
            "{\"name\":\"add\",\"arguments\":{\"a\":1,\"b\":2}}",
            "<tool_call>\n{\"name\":\"add\",\"arguments\":{\"a\":1,\"b\":2}}",
            "<tool_call>\n{\"name\":\"add\",\"arguments\":{\"a\":1,\"b\":2}}\n</tool_call>\n"
            "<tool_call>\n{\"name\":\"add\",\"arguments\":{\"a\":1,\"b\":2}}\n</tool_call>",
            ""));
}

TEST(parallel_calls)
{
    const char *two = "<tool_call>\n{\"name\":\"add\",\"arguments\":{\"a\":1,\"b\":2}}\n</tool_call>\n"
                      "<tool_call>\n{\"name\":\"get_weather\",\"arguments\":{\"city\":\"x\"}}\n</tool_call>";
    check("{" HERMES "," TWO_TOOLS "}", L(two, "<tool_call>\n{\"name\":\"add\",\"arguments\":"
          "{\"a\":1,\"b\":2}}\n</tool_call>"),
          L("<tool_call>\n{\"name\":\"add\",\"arguments\":{\"a\":1,\"b\":2}}\n</tool_call>\n"));
    check("{" HERMES ",\"max_calls\":2," TWO_TOOLS "}", L(two), L("x"));
}

TEST(llama3_json_calls)
{
    /* no markup; the arguments under "parameters"; a tool without a schema takes any object */
    check("{\"name_key\":\"name\",\"args_key\":\"parameters\",\"max_calls\":1,"
          "\"tools\":[{\"name\":\"ping\"}]}",
          L("{\"name\":\"ping\",\"parameters\":{}}", "{\"name\": \"ping\", \"parameters\": {\"x\": [1]}}"),
          L("{\"name\":\"ping\",\"arguments\":{}}", "{\"name\":\"ping\",\"parameters\":[]}",
            " {\"name\":\"ping\",\"parameters\":{}}"));
}

TEST(refs_are_per_tool)
{
    check("{" HERMES ",\"max_calls\":1,\"tools\":[{\"name\":\"f\",\"parameters\":{\"$defs\":{\"n\":"
          "{\"type\":\"integer\"}},\"type\":\"object\",\"properties\":{\"v\":{\"$ref\":\"#/$defs/n\"}},"
          "\"required\":[\"v\"]}}]}",
          L("<tool_call>\n{\"name\":\"f\",\"arguments\":{\"v\":3}}\n</tool_call>"),
          L("<tool_call>\n{\"name\":\"f\",\"arguments\":{\"v\":\"3\"}}\n</tool_call>"));
}

TEST(refusals)
{
    refused("[]", ERR_INVALID, "not a JSON object");
    refused("{\"tools\":[]}", ERR_INVALID, "non-empty array");
    refused("{\"tools\":[{\"name\":\"\"}]}", ERR_INVALID, "tools[0]");
    refused("{\"tools\":[{\"name\":\"a\"}],\"max_calls\":-1}", ERR_INVALID, "max_calls");
    refused("{\"tools\":[{\"name\":\"a\"}],\"prefix\":7}", ERR_INVALID, "prefix");
    refused("{\"tools\":[{\"name\":\"a\"},{\"name\":\"b\",\"parameters\":{\"not\":{}}}]}",
            ERR_UNSUPPORTED, "tools[1] (\"b\"): json_schema: keyword 'not'");
    /* 129 tools */
    char spec[8192] = "{\"tools\":[";
    for (int i = 0; i <= GRAMMAR_MAX_TOOLS; i++)
        snprintf(spec + strlen(spec), sizeof spec - strlen(spec), "%s{\"name\":\"t%d\"}",
                 i ? "," : "", i);
    strcat(spec, "]}");
    refused(spec, ERR_FULL, "more than 128 tools");
}

TEST_LIST(T(hermes_one_call), T(parallel_calls), T(llama3_json_calls), T(refs_are_per_tool),
          T(refusals));
