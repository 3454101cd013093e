/*
 * test_tool_parse.c - server/tool_parse: replies split into content and
 * OpenAI tool calls per chat format (ChatML Hermes blocks, LLaMA 3.1 JSON),
 * what must parse as calls and what must stay plain text; and the spec and
 * trigger built for a request's tools.
 */
#include <stdlib.h>
#include <string.h>

#include "test.h"
#include "server/tool_parse.h"

#define CALL(name, args) "<tool_call>\n{\"name\": \"" name "\", \"arguments\": " args "}\n</tool_call>"

/* Parse text as kind; check the count of calls and the content. */
static void parse_ok(const char *kind, const char *text, size_t n_calls, const char *content,
                     tool_reply_t *r)
{
    ASSERT_EQ_INT(tool_parse_reply(text, strlen(text), kind, r), 0);
    ASSERT_MSG(r->n_calls == n_calls, "%s: %zu calls, want %zu", text, r->n_calls, n_calls);
    ASSERT_MSG(r->content != NULL && strcmp(r->content, content) == 0, "%s: content \"%s\", "
               "want \"%s\"", text, r->content ? r->content : "(null)", content);
}

static void check_call(const api_tool_call_t *c, const char *name, const char *args)
{
    ASSERT_EQ_STR(c->name, name);
    ASSERT_EQ_STR(c->arguments, args);
    ASSERT_MSG(c->id != NULL && strncmp(c->id, "call_", 5) == 0 && strlen(c->id) == 29,
               "id %s", c->id ? c->id : "(null)");
}

TEST(hermes_calls)
{
    tool_reply_t r;
    parse_ok("chatml", "The weather is fine.", 0, "The weather is fine.", &r);
    tool_reply_free(&r);
    parse_ok("chatml", "", 0, "", &r);
    tool_reply_free(&r);

    parse_ok("chatml", CALL("get_weather", "{\"city\": \"Paris\"}"), 1, "", &r);
    check_call(&r.calls[0], "get_weather", "{\"city\":\"Paris\"}");
    tool_reply_free(&r);

    parse_ok("chatml", CALL("a", "{}") "\n\n" CALL("b", "{\"x\": [1, 2]}") "\n", 2, "", &r);
    check_call(&r.calls[0], "a", "{}");
    check_call(&r.calls[1], "b", "{\"x\":[1,2]}");
    ASSERT_MSG(strcmp(r.calls[0].id, r.calls[1].id) != 0, "ids %s %s", r.calls[0].id,
               r.calls[1].id);
    tool_reply_free(&r);

    /* text before the first call is the content, less trailing whitespace */
    parse_ok("chatml", "Let me check.\n" CALL("a", "{\"q\": \"x\"}"), 1, "Let me check.", &r);
    check_call(&r.calls[0], "a", "{\"q\":\"x\"}");
    tool_reply_free(&r);

    /* a last close missing (the end of the output) still ends a whole call */
    parse_ok("chatml", "<tool_call>\n{\"name\": \"a\", \"arguments\": {\"k\": 1}}", 1, "", &r);
    check_call(&r.calls[0], "a", "{\"k\":1}");
    tool_reply_free(&r);
}

TEST(hermes_cut_by_length)
{
    tool_reply_t r;
    /* whole calls, then one cut by max_tokens: the cut one is dropped */
    const char *t = CALL("a", "{}") "\n" CALL("b", "{}") "\n<tool_call>\n{\"name\": \"c\", \"argu";
    parse_ok("chatml", t, 2, "", &r);
    check_call(&r.calls[1], "b", "{}");
    tool_reply_free(&r);
    /* the only call cut: no call, all of it is text */
    t = "Sure.\n<tool_call>\n{\"name\": \"c\", \"arguments\": {\"x\"";
    parse_ok("chatml", t, 0, t, &r);
    tool_reply_free(&r);
    t = "<tool_call>";
    parse_ok("chatml", t, 0, t, &r);
    tool_reply_free(&r);
}

TEST(hermes_malformed)
{
    static const char *const bad[] = {
        "<tool_call>\n{name: a}\n</tool_call>",                                  /* not JSON */
        "<tool_call>\n{\"name\": \"a\", \"arguments\": \"{}\"}\n</tool_call>",   /* args a string */
        "<tool_call>\n{\"name\": 3, \"arguments\": {}}\n</tool_call>",           /* name a number */
        "<tool_call>\n{\"arguments\": {}}\n</tool_call>",                        /* no name */
        "<tool_call>\n{\"name\": \"a\"}\n</tool_call>",                          /* no arguments */
        "<tool_call>\n[1, 2]\n</tool_call>",                                     /* not an object */
        "<tool_call>\n{\"name\": \"a\", \"arguments\": {}} x\n</tool_call>",     /* trailing junk */
        CALL("a", "{}") " and then some text",                                  /* text after */
        CALL("a", "{}") "\n" CALL("b", "{oops}"),                               /* a bad 2nd call */
        "<tool_call>\n{\"name\": \"a\", \"arguments\": {}}\n</tool_call",        /* close cut */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        tool_reply_t r;
        parse_ok("chatml", bad[i], 0, bad[i], &r);
        ASSERT(r.calls == NULL);
        tool_reply_free(&r);
    }
    /* a NUL byte inside the markup: the text is taken by its length */
    static const char nul[] = "<tool_call>\n{\"name\": \"a\0\", \"arguments\": {}}\n</tool_call>";
    tool_reply_t r;
    ASSERT_EQ_INT(tool_parse_reply(nul, sizeof nul - 1, "chatml", &r), 0);
    ASSERT_EQ_U64(r.n_calls, 0);
    tool_reply_free(&r);
}

TEST(llama3)
{
    tool_reply_t r;
    parse_ok("llama3", "{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Oslo\"}}", 1, "", &r);
    check_call(&r.calls[0], "get_weather", "{\"city\":\"Oslo\"}");
    tool_reply_free(&r);
    parse_ok("llama3", "\n  {\"name\": \"f\", \"parameters\": {}}", 1, "", &r);
    check_call(&r.calls[0], "f", "{}");
    tool_reply_free(&r);
    static const char *const text[] = {
        "It is sunny in Oslo.",
        "Sure: {\"name\": \"f\", \"parameters\": {}}",      /* a call must be the whole reply */
        "{\"name\": \"f\", \"arguments\": {}}",             /* LLaMA 3.1 says parameters */
        "{\"name\": \"f\", \"parameters\": {}} {\"name\": \"g\", \"parameters\": {}}",
        "{\"name\": \"f\", \"parameters\": {",             /* cut by length */
        CALL("a", "{}"),                                  /* another format's markup */
    };
    for (size_t i = 0; i < sizeof text / sizeof text[0]; i++) {
        parse_ok("llama3", text[i], 0, text[i], &r);
        tool_reply_free(&r);
    }
}

TEST(no_tool_format)
{
    /* llama2, file templates and an unknown kind have no tool calls: all text */
    const char *t = CALL("a", "{}");
    static const char *const kinds[] = { "llama2", "file", NULL };
    for (size_t i = 0; i < 3; i++) {
        tool_reply_t r;
        parse_ok(kinds[i], t, 0, t, &r);
        tool_reply_free(&r);
    }
    tool_reply_free(NULL);
}

TEST(spec_and_trigger)
{
    char *names[] = { "a", "b" };
    char *params[] = { "{\"type\":\"object\"}", NULL };
    api_request_t req;
    memset(&req, 0, sizeof req);
    req.tool_names = names;
    req.tool_params = params;
    req.n_tools = 2;
    req.tool_choice = API_TOOLS_AUTO;
    req.parallel_tool_calls = 1;
    const char *trig = "x";
    char *s = tool_spec_json(&req, "chatml", &trig);
    ASSERT(s != NULL);
    ASSERT_EQ_STR(trig, "<tool_call>");
    ASSERT_MSG(strstr(s, "\"max_calls\":0") && strstr(s, "\"name\":\"b\"") &&
               strstr(s, "\"arguments\"") && strstr(s, "\"type\":\"object\""), "%s", s);
    free(s);
    req.tool_choice = API_TOOLS_NAMED;
    req.tool_named = 1;
    req.parallel_tool_calls = 0;
    s = tool_spec_json(&req, "chatml", &trig);
    ASSERT(s != NULL);
    ASSERT_MSG(strstr(s, "\"name\":\"b\"") && !strstr(s, "\"name\":\"a\"") &&
               strstr(s, "\"max_calls\":1"), "%s", s);
    free(s);
    req.tool_choice = API_TOOLS_REQUIRED;
    req.parallel_tool_calls = 1;
    s = tool_spec_json(&req, "llama3", &trig);
    ASSERT(s != NULL);
    ASSERT_EQ_STR(trig, "{\"name\"");
    ASSERT_MSG(strstr(s, "\"parameters\"") && strstr(s, "\"max_calls\":1"), "%s", s);
    free(s);
    ASSERT(tool_spec_json(&req, "llama2", &trig) == NULL);
    ASSERT(trig == NULL);
    ASSERT(tool_spec_json(&req, NULL, &trig) == NULL);
}

TEST_LIST(T(hermes_calls), T(hermes_cut_by_length), T(hermes_malformed), T(llama3),
          T(no_tool_format), T(spec_and_trigger))
