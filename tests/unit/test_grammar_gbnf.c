/*
 * test_grammar_gbnf.c - engine/grammar/gbnf.c: GBNF text compiled and run
 * through the byte matcher.  Each construct has strings that must be
 * accepted and strings that must be rejected; each refusal is checked for
 * its code and for the words of its message (line and column for syntax
 * errors, gb_finish's own words for undefined rules, left recursion and
 * an empty language).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test.h"
#include "base/err.h"
#include "grammar/grammar.h"

static grammar_t *compile_lim(const char *src, size_t len, const grammar_limits_t *lim)
{
    char err[ERR_MSG_MAX] = "";
    grammar_t *g = NULL;
    int rc = grammar_from_gbnf(src, len, lim, &g, err, sizeof err);
    ASSERT_MSG(rc == 0 && g, "compile failed (%d): %s\n--- grammar:\n%s", rc, err, src);
    return g;
}

static grammar_t *compile(const char *src)
{
    return compile_lim(src, strlen(src), NULL);
}

/* Whether s is a whole string of g's language; fed in one piece, then byte by byte. */
static int matches(grammar_t *g, const char *s)
{
    gmatch_t *m;
    ASSERT_EQ_INT(gm_create(&m, g), 0);
    size_t n = strlen(s);
    int whole = gm_feed(m, s, n) == 0 && gm_accepting(m);
    gm_reset(m);
    int bytes = 1;
    for (size_t i = 0; i < n && bytes; i++)
        bytes = gm_feed(m, s + i, 1) == 0;
    bytes = bytes && gm_accepting(m);
    gm_destroy(m);
    ASSERT_MSG(whole == bytes, "\"%s\": fed whole %d, byte by byte %d", s, whole, bytes);
    return whole;
}

#define ACCEPT(g, s) ASSERT_MSG(matches((g), (s)), "should accept \"%s\"", (s))
#define REJECT(g, s) ASSERT_MSG(!matches((g), (s)), "should reject \"%s\"", (s))

/* src must be refused with code, and the message must contain each of the NULL-ended words. */
static void refused_lim(const char *src, size_t len, const grammar_limits_t *lim, int code, ...)
{
    char err[ERR_MSG_MAX] = "";
    grammar_t *g = (grammar_t *)&err;
    int rc = grammar_from_gbnf(src, len, lim, &g, err, sizeof err);
    ASSERT_MSG(rc == code, "expected %d, got %d (%s)\n--- grammar:\n%.300s", code, rc, err, src);
    ASSERT_MSG(g == NULL, "*out not NULL on failure");
    va_list ap;
    va_start(ap, code);
    for (const char *w; (w = va_arg(ap, const char *)) != NULL;)
        ASSERT_MSG(strstr(err, w), "message \"%s\" lacks \"%s\"", err, w);
    va_end(ap);
}

#define REFUSED(src, code, ...) refused_lim((src), strlen(src), NULL, (code), __VA_ARGS__, (const char *)NULL)

/* ------------------------------------------------------------------ languages */

static const char json_gbnf[] =
    "# JSON, as llama.cpp's example grammars write it\n"
    "root   ::= object\n"
    "value  ::= object | array | string | number | (\"true\" | \"false\" | \"null\") ws\n"
    "object ::=\n"
    "  \"{\" ws (\n"
    "            string \":\" ws value\n"
    "    (\",\" ws string \":\" ws value)*\n"
    "  )? \"}\" ws\n"
    "array  ::=\n"
    "  \"[\" ws (\n"
    "            value\n"
    "    (\",\" ws value)*\n"
    "  )? \"]\" ws\n"
    "string ::=\n"
    "  \"\\\"\" (\n"
    "    [^\"\\\\\\x7F\\x00-\\x1F] |\n"
    "    \"\\\\\" ([\"\\\\/bfnrt] | \"u\" [0-9a-fA-F]{4}) # escapes\n"
    "  )* \"\\\"\" ws\n"
    "number ::= (\"-\"? ([0-9] | [1-9] [0-9]{0,15})) (\".\" [0-9]+)? ([eE] [-+]? [0-9]{1,4})? ws\n"
    "ws ::= | \" \" | \"\\n\" [ \\t]{0,20}\n";

TEST(json)
{
    grammar_t *g = compile(json_gbnf);
    ACCEPT(g, "{}");
    ACCEPT(g, "{\"a\": 1}");
    ACCEPT(g, "{\"a\": [1, 2.5, -3e10, true, null, \"x\\u00e9\\n\"], \"b\": {\"c\": \"\xc3\xa9\"}}");
    ACCEPT(g, "{\n  \"k\": false}");
    REJECT(g, "");
    REJECT(g, "[1]");
    REJECT(g, "{\"a\":}");
    REJECT(g, "{\"a\": [1,]}");
    REJECT(g, "{\"a\" 1}");
    REJECT(g, "{\"a\": 01}");
    REJECT(g, "{\"a\": \"\\q\"}");
    REJECT(g, "{\"a\": \"\x01\"}");
    REJECT(g, "{\"a\": 1");
    grammar_release(g);
}

TEST(arithmetic)
{
    grammar_t *g = compile("root ::= expr\n"
                           "expr ::= term ((\"+\" | \"-\") term)*\n"
                           "term ::= factor ((\"*\" | \"/\") factor)*\n"
                           "factor ::= num | \"(\" expr \")\"\n"
                           "num ::= [0-9]+\n");
    ACCEPT(g, "1");
    ACCEPT(g, "1+2*(3-4)/56");
    ACCEPT(g, "((7))");
    REJECT(g, "");
    REJECT(g, "1+");
    REJECT(g, "(1");
    REJECT(g, "1++2");
    REJECT(g, "1)");
    REJECT(g, "a");
    grammar_release(g);
}

TEST(lists_and_continued_lines)
{
    grammar_t *g = compile("root ::= item (\",\" item)*\n"
                           "       | \"EMPTY\"\n"
                           "\n"
                           "item ::= [a-z]+ # a word\n");
    ACCEPT(g, "a");
    ACCEPT(g, "a,bc,def");
    ACCEPT(g, "EMPTY");
    REJECT(g, "a,");
    REJECT(g, ",a");
    REJECT(g, "a,,b");
    REJECT(g, "A");
    REJECT(g, "EMPTYa");
    grammar_release(g);

    /* A rule's element on the next line, and a newline after '|' or inside parentheses. */
    g = compile("root ::= \"a\"\n  \"b\" |\n \"c\" (\n\"d\"\n|\n\"e\")\nx ::= \"z\"\n");
    ACCEPT(g, "ab");
    ACCEPT(g, "cd");
    ACCEPT(g, "ce");
    REJECT(g, "a");
    REJECT(g, "z");
    grammar_release(g);
}

TEST(repetition_bounds)
{
    grammar_t *g = compile("root ::= \"a\"{2,4} \"b\"{3} \"c\"{2,} \"d\"{,2} \"e\"? \"f\"* \"g\"+");
    ACCEPT(g, "aabbbccg");
    ACCEPT(g, "aaaabbbcccccddefffggg");
    ACCEPT(g, "aabbbccdg");
    REJECT(g, "abbbccg");
    REJECT(g, "aaaaabbbccg");
    REJECT(g, "aabbccg");
    REJECT(g, "aabbbbccg");
    REJECT(g, "aabbbcg");
    REJECT(g, "aabbbccdddg");
    REJECT(g, "aabbbcceeg");
    REJECT(g, "aabbbcc");
    grammar_release(g);

    g = compile("root ::= ( \"x\" ){ 0 , 1 } \"y\"{0} [0-9]{ 3 }");
    ACCEPT(g, "123");
    ACCEPT(g, "x123");
    REJECT(g, "xx123");
    REJECT(g, "y123");
    REJECT(g, "12");
    grammar_release(g);
}

TEST(unicode_and_escapes)
{
    grammar_t *g = compile("root ::= [\xce\xb1-\xcf\x89]+ \" \" [^a-z] \"\\u00e9\" \"\\U0001F600\" \"\\x41\" . \"h\xc3\xa9\"");
    ACCEPT(g, "\xce\xb1\xce\xb2 1\xc3\xa9\xf0\x9f\x98\x80" "A\xe2\x82\xac" "h\xc3\xa9");
    ACCEPT(g, "\xcf\x89 \xce\xb1\xc3\xa9\xf0\x9f\x98\x80" "Azh\xc3\xa9");
    REJECT(g, "ab 1\xc3\xa9\xf0\x9f\x98\x80" "Azh\xc3\xa9");
    REJECT(g, "\xce\xb1 q\xc3\xa9\xf0\x9f\x98\x80" "Azh\xc3\xa9");
    REJECT(g, "\xce\xb1 1\xc3\xa9\xf0\x9f\x98\x80" "A\xffh\xc3\xa9");
    REJECT(g, "\xce\xb1 1\xc3\xa9\xf0\x9f\x98\x80" "A\xed\xa0\x80h\xc3\xa9");
    grammar_release(g);

    g = compile("root ::= [\\]\\[\\-\\\\\\n\\t\\r\"]+ \"\\\"\\\\\\t\\r\\n\"");
    ACCEPT(g, "][-\\\n\t\r\"\"\\\t\r\n");
    REJECT(g, "a\"\\\t\r\n");
    grammar_release(g);

    g = compile("root ::= [^\"]* | [a-]");
    ACCEPT(g, "");
    ACCEPT(g, "x\xe4\xb8\xadyz");
    ACCEPT(g, "-");
    REJECT(g, "a\"");
    grammar_release(g);
}

TEST(comments)
{
    grammar_t *g = compile("# a grammar\n"
                           "   # with comments everywhere\n"
                           "root ::= \"a\" # after an element\n"
                           "  # a comment line inside the rule\n"
                           "  ( # inside parentheses\n"
                           "    \"b\" | \"#\" # not a comment in quotes: '#'\n"
                           "  )\n"
                           "# the end");
    ACCEPT(g, "ab");
    ACCEPT(g, "a#");
    REJECT(g, "a");
    REJECT(g, "a# not a comment");
    grammar_release(g);
}

TEST(nesting_at_the_cap)
{
    char src[1200];
    size_t n = (size_t)snprintf(src, sizeof src, "root ::= ");
    for (int i = 0; i < 256; i++)
        src[n++] = '(';
    src[n++] = '"';
    src[n++] = 'a';
    src[n++] = '"';
    for (int i = 0; i < 256; i++)
        src[n++] = ')';
    src[n] = 0;
    grammar_t *g = compile(src);
    ACCEPT(g, "a");
    REJECT(g, "aa");
    grammar_release(g);
}

/* ------------------------------------------------------------------ refusals */

TEST(syntax_errors_name_line_and_column)
{
    REFUSED("root \"a\"", ERR_INVALID, "grammar: line 1, column 6: expected '::='");
    REFUSED("root ::= \"a\"\n\nx = \"b\"", ERR_INVALID, "line 3, column 3", "unexpected '='");
    REFUSED("root ::= \"abc", ERR_INVALID, "line 1, column 10", "unterminated string");
    REFUSED("root ::= [a-", ERR_INVALID, "line 1, column 10", "unterminated character class");
    REFUSED("root ::=\n  \"\\q\"", ERR_INVALID, "line 2, column 4", "unknown escape '\\q'");
    REFUSED("root ::= \"\\x4\"", ERR_INVALID, "column 11", "hex digits");
    REFUSED("root ::= [z-a]", ERR_INVALID, "line 1, column 11", "out of order");
    REFUSED("root ::= []", ERR_INVALID, "column 10", "empty character class");
    REFUSED("root ::= (\"a\"", ERR_INVALID, "column 10", "'(' is not closed");
    REFUSED("root ::= \"a\")", ERR_INVALID, "column 13", "')' without '('");
    REFUSED("root ::= \"a\"{3,2}", ERR_INVALID, "column 13", "minimum is above the maximum");
    REFUSED("root ::= \"a\"{}", ERR_INVALID, "column 13", "expected a count");
    REFUSED("root ::= \"a\"{2", ERR_INVALID, "column 13", "expected '}'");
    REFUSED("root ::= \"\\uD800\"", ERR_INVALID, "column 11", "not a Unicode scalar value");
    REFUSED("root ::= \"\\U00110000\"", ERR_INVALID, "not a Unicode scalar value");
    REFUSED("root ::= \"\xc3\xa9\xff\"", ERR_INVALID, "column 12", "invalid UTF-8");
    REFUSED("root ::= \"a\" | @", ERR_INVALID, "column 16", "unexpected '@'");
    REFUSED("::= \"a\"", ERR_INVALID, "line 1, column 1", "expected a rule name");
    REFUSED("root ::= \"a\"\nroot ::= \"b\"", ERR_INVALID, "line 2, column 1", "rule 'root' is defined twice");
    refused_lim("root ::= \"a\"\0\"b\"", 16, NULL, ERR_INVALID, "column 13", "unexpected", (const char *)NULL);
}

TEST(missing_root)
{
    REFUSED("", ERR_INVALID, "no rule named 'root'");
    REFUSED("# only a comment\n", ERR_INVALID, "no rule named 'root'");
    REFUSED("start ::= \"a\"", ERR_INVALID, "no rule named 'root'");
    REFUSED("start ::= root", ERR_INVALID, "no rule named 'root'");
}

TEST(refusals_of_the_builder_reach_the_caller)
{
    REFUSED("root ::= \"a\" foo", ERR_INVALID, "foo", "not defined");
    REFUSED("root ::= root \"a\" | \"a\"", ERR_INVALID, "left-recursive");
    REFUSED("root ::= x\nx ::= \"b\"? y | \"c\"\ny ::= x \"d\"", ERR_INVALID, "left-recursive");
    REFUSED("root ::= \"a\" root", ERR_INVALID, "matches nothing");
}

TEST(caps)
{
    char src[2048];
    size_t n = (size_t)snprintf(src, sizeof src, "root ::= ");
    for (int i = 0; i < 257; i++)
        src[n++] = '(';
    src[n] = 0;
    REFUSED(src, ERR_FULL, "line 1, column 266", "nested more than 256 deep");

    REFUSED("root ::= \"a\"{10001}", ERR_FULL, "column 13", "over the cap of 10000");
    REFUSED("root ::= \"a\"{2,99999999999999999999}", ERR_FULL, "over the cap");
    REFUSED("root ::= \"a\"{99999999999999999999,}", ERR_FULL, "over the cap");
    grammar_limits_t lim = { .max_repeat = 5 };
    refused_lim("root ::= [0-9]{6}", 17, &lim, ERR_FULL, "over the cap of 5", (const char *)NULL);
    grammar_t *g = compile_lim("root ::= [0-9]{5}", 17, &lim);
    ACCEPT(g, "12345");
    REJECT(g, "1234");
    grammar_release(g);

    /* Many rules past max_rules: the builder's cap, through gb_finish. */
    lim = (grammar_limits_t){ .max_rules = 50 };
    n = (size_t)snprintf(src, sizeof src, "root ::= r0\n");
    for (int i = 0; i < 100; i++)
        n += (size_t)snprintf(src + n, sizeof src - n, "r%d ::= \"x\" r%d\n", i, i + 1);
    n += (size_t)snprintf(src + n, sizeof src - n, "r100 ::= \"y\"\n");
    char err[ERR_MSG_MAX] = "";
    g = NULL;
    ASSERT_EQ_INT(grammar_from_gbnf(src, n, &lim, &g, err, sizeof err), ERR_FULL);
    ASSERT(g == NULL);
    ASSERT_MSG(err[0] != 0, "no message for the rule cap");
}

TEST_LIST(T(json), T(arithmetic), T(lists_and_continued_lines), T(repetition_bounds), T(unicode_and_escapes),
          T(comments), T(nesting_at_the_cap), T(syntax_errors_name_line_and_column), T(missing_root),
          T(refusals_of_the_builder_reach_the_caller), T(caps))
