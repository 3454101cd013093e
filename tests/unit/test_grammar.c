/*
 * test_grammar.c - engine/grammar's builder and byte matcher: each
 * construct with strings it must accept and strings it must reject, the
 * refusals of gb_finish, the caps, and ambiguous shapes that must stay
 * bounded.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "test.h"
#include "base/err.h"
#include "base/utf8.h"
#include "engine/grammar/grammar.h"

/* ------------------------------------------------------------------ helpers */

static grammar_t *finish_ok(gbuild_t *b, uint32_t root)
{
    char err[512] = "";
    grammar_t *g = NULL;
    int rc = gb_finish(b, root, &g, err, sizeof err);
    ASSERT_MSG(rc == 0 && g != NULL, "gb_finish: %d %s", rc, err);
    return g;
}

/* gb_finish fails with code and a message containing want. */
static void finish_fails(gbuild_t *b, uint32_t root, int code, const char *want)
{
    char err[512] = "";
    grammar_t *g = NULL;
    int rc = gb_finish(b, root, &g, err, sizeof err);
    ASSERT_EQ_INT(rc, code);
    ASSERT(g == NULL);
    ASSERT_MSG(strstr(err, want) != NULL, "message \"%s\" lacks \"%s\"", err, want);
}

/* 1: s is a whole string of g; 0: it is not (a prefix or rejected). */
static int matches_n(grammar_t *g, const char *s, size_t n)
{
    gmatch_t *m;
    ASSERT_EQ_INT(gm_create(&m, g), 0);
    int rc = gm_feed(m, s, n);
    ASSERT_MSG(rc == 0 || rc == ERR_INVALID, "gm_feed: %d", rc);
    int ok = rc == 0 && gm_accepting(m);
    gm_destroy(m);
    return ok;
}

static int matches(grammar_t *g, const char *s)
{
    return matches_n(g, s, strlen(s));
}

static void check(grammar_t *g, const char *const *yes, const char *const *no)
{
    for (; yes != NULL && *yes != NULL; yes++)
        ASSERT_MSG(matches(g, *yes), "\"%s\" rejected", *yes);
    for (; no != NULL && *no != NULL; no++)
        ASSERT_MSG(!matches(g, *no), "\"%s\" accepted", *no);
}

static gbuild_t *builder(void)
{
    gbuild_t *b;
    ASSERT_EQ_INT(gb_create(&b, NULL), 0);
    return b;
}

/* ------------------------------------------------------------------ constructs */

TEST(literal)
{
    gbuild_t *b = builder();
    grammar_t *g = finish_ok(b, gb_literal(b, "abc", 3));
    check(g, (const char *[]){ "abc", NULL }, (const char *[]){ "", "ab", "abcd", "abd", "xabc", NULL });
    gmatch_t *m;
    ASSERT_EQ_INT(gm_create(&m, g), 0);
    ASSERT_EQ_INT(gm_accepting(m), 0);
    ASSERT_EQ_INT(gm_feed(m, "ab", 2), 0);
    ASSERT_EQ_INT(gm_can_continue(m), 1);
    ASSERT_EQ_INT(gm_feed(m, "x", 1), ERR_INVALID);   /* state unchanged */
    ASSERT_EQ_INT(gm_feed(m, "c", 1), 0);
    ASSERT_EQ_INT(gm_accepting(m), 1);
    ASSERT_EQ_INT(gm_can_continue(m), 0);
    gm_reset(m);
    ASSERT_EQ_INT(gm_accepting(m), 0);
    ASSERT_EQ_INT(gm_feed(m, "abc", 3), 0);
    ASSERT_EQ_INT(gm_accepting(m), 1);
    gm_destroy(m);
    char *d = grammar_dump(g);
    ASSERT(d != NULL && strstr(d, "\"a\" \"b\" \"c\"") != NULL);
    free(d);
    grammar_release(g);
}

TEST(classes_and_empty_literal)
{
    gbuild_t *b = builder();
    uint8_t set[32] = { 0 };
    set['x' / 8] |= 1u << ('x' % 8);
    set[0xFF / 8] |= 0x80;
    gelem_t e[2] = { ge_bytes(gb_range(b, 'a', 'c')), ge_bytes(gb_class(b, set)) };
    ASSERT_EQ_U64(gb_range(b, 'a', 'c'), e[0].v);      /* interned */
    grammar_t *g = finish_ok(b, gb_seq(b, e, 2));
    check(g, (const char *[]){ "ax", "c\xff", "bx", NULL },
          (const char *[]){ "dx", "a", "ay", "axx", "`x", NULL });
    grammar_release(g);
    b = builder();
    g = finish_ok(b, gb_literal(b, "", 0));
    check(g, (const char *[]){ "", NULL }, (const char *[]){ "a", NULL });
    grammar_release(g);
}

TEST(sequence_and_alternation)
{
    gbuild_t *b = builder();
    uint32_t r = gb_rule(b, "root");
    uint32_t ab = gb_literal(b, "ab", 2), cd = gb_literal(b, "cd", 2), x = gb_literal(b, "x", 1);
    gb_alt(b, r, (gelem_t[]){ ge_ref(ab) }, 1);
    gb_alt(b, r, (gelem_t[]){ ge_ref(cd), ge_ref(x), ge_ref(ab) }, 3);
    gb_alt(b, r, (gelem_t[]){ ge_ref(ab), ge_ref(x) }, 2);
    grammar_t *g = finish_ok(b, r);
    check(g, (const char *[]){ "ab", "cdxab", "abx", NULL },
          (const char *[]){ "", "cd", "cdx", "abxab", "abab", "cdab", NULL });
    char *d = grammar_dump(g);
    ASSERT(d != NULL && strstr(d, "root (root) ::=") != NULL);
    free(d);
    grammar_release(g);
}

TEST(repeat_bounds)
{
    static const struct {
        uint32_t min, max;
        int ok[8];              /* ok[k]: "a" * k accepted */
    } cases[] = {
        { 0, 3, { 1, 1, 1, 1, 0, 0, 0, 0 } },
        { 2, GB_INF, { 0, 0, 1, 1, 1, 1, 1, 1 } },
        { 2, 5, { 0, 0, 1, 1, 1, 1, 0, 0 } },
        { 0, GB_INF, { 1, 1, 1, 1, 1, 1, 1, 1 } },
        { 3, 3, { 0, 0, 0, 1, 0, 0, 0, 0 } },
        { 1, GB_INF, { 0, 1, 1, 1, 1, 1, 1, 1 } },
        { 0, 1, { 1, 1, 0, 0, 0, 0, 0, 0 } },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        gbuild_t *b = builder();
        uint32_t a = gb_literal(b, "a", 1);
        uint32_t r = gb_repeat(b, ge_ref(a), cases[i].min, cases[i].max);
        uint32_t root = gb_seq(b, (gelem_t[]){ ge_ref(r), ge_bytes(gb_range(b, ';', ';')) }, 2);
        grammar_t *g = finish_ok(b, root);
        for (int k = 0; k < 8; k++) {
            char s[16];
            memset(s, 'a', (size_t)k);
            s[k] = ';';
            s[k + 1] = '\0';
            ASSERT_MSG(matches(g, s) == cases[i].ok[k], "{%u,%u} on \"%s\": %d", cases[i].min,
                       cases[i].max, s, matches(g, s));
        }
        ASSERT(!matches(g, "b;"));
        grammar_release(g);
    }
}

TEST(repeat_long_runs_in_constant_depth)
{
    gbuild_t *b = builder();
    uint32_t r = gb_repeat(b, ge_bytes(gb_range(b, 'a', 'z')), 0, GB_INF);
    grammar_t *g = finish_ok(b, r);
    gmatch_t *m;
    ASSERT_EQ_INT(gm_create(&m, g), 0);
    for (int i = 0; i < 200000; i++)      /* past the depth cap if tail calls grew the stack */
        ASSERT_EQ_INT(gm_feed(m, "q", 1), 0);
    ASSERT_EQ_INT(gm_accepting(m), 1);
    gm_destroy(m);
    grammar_release(g);
}

/* ------------------------------------------------------------------ code points */

static int in_ranges(uint32_t cp, const uint32_t (*r)[2], size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (cp >= r[i][0] && cp <= r[i][1])
            return 1;
    return 0;
}

/* Every code point (and every surrogate, encoded as if allowed) against the ranges. */
static void check_codepoints(const uint32_t (*r)[2], size_t n, int negate)
{
    gbuild_t *b = builder();
    grammar_t *g = finish_ok(b, gb_codepoints(b, r, n, negate));
    gmatch_t *m;
    ASSERT_EQ_INT(gm_create(&m, g), 0);
    for (uint32_t cp = 0; cp <= 0x10FFFF; cp++) {
        char s[4];
        size_t len = utf8_encode(cp, s);   /* surrogates too: the generalised form */
        int surrogate = cp >= 0xD800 && cp <= 0xDFFF;
        int want = !surrogate && (in_ranges(cp, r, n) != negate);
        gm_reset(m);
        int rc = gm_feed(m, s, len);
        int got = rc == 0 && gm_accepting(m);
        ASSERT_MSG(got == want, "U+%04X: %d, want %d", cp, got, want);
    }
    /* Overlong forms and bytes past U+10FFFF never match. */
    static const char *bad[] = { "\xc0\xaf", "\xe0\x80\xaf", "\xf0\x80\x80\xaf", "\xf4\x90\x80\x80",
                                 "\xf8\x88\x80\x80\x80", "\x80", NULL };
    for (int i = 0; bad[i] != NULL; i++) {
        gm_reset(m);
        int rc = gm_feed(m, bad[i], strlen(bad[i]));
        ASSERT_MSG(!(rc == 0 && gm_accepting(m)), "bad sequence %d accepted", i);
    }
    gm_destroy(m);
    grammar_release(g);
}

TEST(codepoints_1_to_4_bytes)
{
    const uint32_t r[][2] = { { 'a', 'z' }, { 0xE9, 0xE9 }, { 0x7F0, 0x812 }, { 0x4E00, 0x9FFF },
                              { 0xD7F0, 0xE010 }, { 0xFFF0, 0x1F64F }, { 0x10FFFE, 0x12FFFF } };
    check_codepoints(r, sizeof r / sizeof r[0], 0);
}

TEST(codepoints_negated)
{
    const uint32_t r[][2] = { { '"', '"' }, { '\\', '\\' }, { 0, 0x1F } };
    check_codepoints(r, sizeof r / sizeof r[0], 1);
    const uint32_t one[][2] = { { 0x10000, 0x10000 } };
    check_codepoints(one, 1, 1);
}

TEST(codepoints_empty_set_refused)
{
    gbuild_t *b = builder();
    const uint32_t r[][2] = { { 0xD800, 0xDFFF }, { 0x110000, 0x7FFFFFFF } };
    ASSERT_EQ_U64(gb_codepoints(b, r, 2, 0), GB_NONE);
    finish_fails(b, 0, ERR_INVALID, "matches no character");
    b = builder();
    const uint32_t all[][2] = { { 0, 0x10FFFF } };
    ASSERT_EQ_U64(gb_codepoints(b, all, 1, 1), GB_NONE);
    finish_fails(b, 0, ERR_INVALID, "matches no character");
}

/* ------------------------------------------------------------------ recursion */

TEST(balanced_parentheses)
{
    gbuild_t *b = builder();
    uint32_t p = gb_named(b, "paren", 5);
    gb_alt(b, p, (gelem_t[]){ ge_bytes(gb_range(b, '(', '(')), ge_ref(p), ge_bytes(gb_range(b, ')', ')')),
                              ge_ref(p) }, 4);
    gb_alt(b, p, NULL, 0);
    grammar_t *g = finish_ok(b, p);
    check(g, (const char *[]){ "", "()", "(())()", "((()))(()())", NULL },
          (const char *[]){ "(", ")", ")(", "(()", "())", "(a)", NULL });
    /* Deep nesting hits the depth cap (ERR_FULL), never a crash. */
    gmatch_t *m;
    ASSERT_EQ_INT(gm_create(&m, g), 0);
    int rc = 0, i;
    for (i = 0; i < 100000 && rc == 0; i++)
        rc = gm_feed(m, "(", 1);
    ASSERT_EQ_INT(rc, ERR_FULL);
    ASSERT(i > 1000);
    gm_destroy(m);
    grammar_release(g);
}

TEST(left_recursion_refused)
{
    gbuild_t *b = builder();
    uint32_t e = gb_named(b, "expr", 4);
    gb_alt(b, e, (gelem_t[]){ ge_ref(e), ge_bytes(gb_range(b, '+', '+')), ge_ref(gb_literal(b, "a", 1)) }, 3);
    gb_alt(b, e, (gelem_t[]){ ge_ref(gb_literal(b, "a", 1)) }, 1);
    finish_fails(b, e, ERR_INVALID, "rule 'expr' is left-recursive");
    /* through a nullable prefix */
    b = builder();
    uint32_t a = gb_named(b, "a", 1), n = gb_named(b, "n", 1);
    gb_alt(b, n, NULL, 0);
    gb_alt(b, n, (gelem_t[]){ ge_bytes(gb_range(b, 'n', 'n')) }, 1);
    gb_alt(b, a, (gelem_t[]){ ge_ref(n), ge_ref(a), ge_bytes(gb_range(b, 'x', 'x')) }, 3);
    gb_alt(b, a, (gelem_t[]){ ge_bytes(gb_range(b, 'y', 'y')) }, 1);
    finish_fails(b, a, ERR_INVALID, "left-recursive");
}

TEST(empty_language_refused)
{
    gbuild_t *b = builder();
    uint32_t r = gb_named(b, "loop", 4);
    gb_alt(b, r, (gelem_t[]){ ge_bytes(gb_range(b, 'a', 'a')), ge_ref(r) }, 2);
    finish_fails(b, r, ERR_INVALID, "matches nothing");
    /* an unproductive alternative is dropped, the rest still matches */
    b = builder();
    uint32_t root = gb_rule(b, "root"), dead = gb_rule(b, "dead");
    gb_alt(b, dead, (gelem_t[]){ ge_bytes(gb_range(b, 'd', 'd')), ge_ref(dead) }, 2);
    gb_alt(b, root, (gelem_t[]){ ge_bytes(gb_range(b, 'a', 'a')), ge_ref(dead) }, 2);
    gb_alt(b, root, (gelem_t[]){ ge_bytes(gb_range(b, 'b', 'b')) }, 1);
    grammar_t *g = finish_ok(b, root);
    check(g, (const char *[]){ "b", NULL }, (const char *[]){ "a", "ad", "add", NULL });
    gmatch_t *m;
    ASSERT_EQ_INT(gm_create(&m, g), 0);
    ASSERT_EQ_INT(gm_feed(m, "a", 1), ERR_INVALID);     /* no dead end to wander into */
    gm_destroy(m);
    grammar_release(g);
}

TEST(undefined_rule_refused)
{
    gbuild_t *b = builder();
    uint32_t root = gb_named(b, "root", 4), v = gb_named(b, "value", 5);
    gb_alt(b, root, (gelem_t[]){ ge_ref(v) }, 1);
    finish_fails(b, root, ERR_INVALID, "rule 'value' is used but not defined");
}

TEST(sticky_failure)
{
    gbuild_t *b = builder();
    gb_fail(b, ERR_UNSUPPORTED, "json_schema: keyword '%s' is not supported", "not");
    gb_fail(b, ERR_INVALID, "second");
    ASSERT_EQ_INT(gb_failed(b), ERR_UNSUPPORTED);
    ASSERT_EQ_U64(gb_rule(b, "x"), GB_NONE);
    ASSERT_EQ_U64(gb_literal(b, "a", 1), GB_NONE);
    finish_fails(b, 0, ERR_UNSUPPORTED, "keyword 'not'");
    /* bad elements */
    b = builder();
    uint32_t r = gb_rule(b, "r");
    gb_alt(b, r, (gelem_t[]){ ge_ref(99) }, 1);
    finish_fails(b, r, ERR_INVALID, "bad element");
}

/* ------------------------------------------------------------------ caps */

TEST(caps)
{
    grammar_limits_t lim = { .max_rules = 3 };
    gbuild_t *b;
    ASSERT_EQ_INT(gb_create(&b, &lim), 0);
    for (int i = 0; i < 4; i++)
        gb_rule(b, NULL);
    finish_fails(b, 0, ERR_FULL, "max_rules");

    lim = (grammar_limits_t){ .max_elements = 10 };
    ASSERT_EQ_INT(gb_create(&b, &lim), 0);
    gb_literal(b, "0123456789abc", 13);
    finish_fails(b, 0, ERR_FULL, "max_elements");

    lim = (grammar_limits_t){ .max_repeat = 100 };
    ASSERT_EQ_INT(gb_create(&b, &lim), 0);
    uint32_t a = gb_literal(b, "a", 1);
    ASSERT(gb_repeat(b, ge_ref(a), 0, 100) != GB_NONE);
    ASSERT(gb_repeat(b, ge_ref(a), 100, GB_INF) != GB_NONE);
    ASSERT_EQ_U64(gb_repeat(b, ge_ref(a), 0, 101), GB_NONE);
    finish_fails(b, 0, ERR_FULL, "max_repeat");

    ASSERT_EQ_INT(gb_create(&b, NULL), 0);
    a = gb_literal(b, "a", 1);
    ASSERT_EQ_U64(gb_repeat(b, ge_ref(a), 5, 4), GB_NONE);
    finish_fails(b, 0, ERR_INVALID, "min > max");
}

/* ------------------------------------------------------------------ ambiguity */

TEST(ambiguous_a_or_a_star_b_bounded)
{
    gbuild_t *b = builder();
    uint32_t alt = gb_rule(b, NULL);
    gb_alt(b, alt, (gelem_t[]){ ge_ref(gb_literal(b, "a", 1)) }, 1);
    gb_alt(b, alt, (gelem_t[]){ ge_ref(gb_literal(b, "a", 1)) }, 1);
    uint32_t star = gb_repeat(b, ge_ref(alt), 0, GB_INF);
    grammar_t *g = finish_ok(b, gb_seq(b, (gelem_t[]){ ge_ref(star), ge_ref(gb_literal(b, "b", 1)) }, 2));
    gmatch_t *m;
    ASSERT_EQ_INT(gm_create(&m, g), 0);
    for (int i = 0; i < 100000; i++)
        ASSERT_EQ_INT(gm_feed(m, "a", 1), 0);
    ASSERT_EQ_INT(gm_accepting(m), 0);
    ASSERT_EQ_INT(gm_feed(m, "b", 1), 0);
    ASSERT_EQ_INT(gm_accepting(m), 1);
    gm_destroy(m);
    check(g, (const char *[]){ "b", "ab", "aaab", NULL }, (const char *[]){ "a", "ba", "abb", NULL });
    grammar_release(g);
}

TEST(nested_star_bounded)
{
    /* (a*)* : R := X R | empty with X nullable. */
    gbuild_t *b = builder();
    uint32_t inner = gb_repeat(b, ge_bytes(gb_range(b, 'a', 'a')), 0, GB_INF);
    uint32_t outer = gb_repeat(b, ge_ref(inner), 0, GB_INF);
    uint32_t root = gb_seq(b, (gelem_t[]){ ge_ref(outer), ge_bytes(gb_range(b, 'b', 'b')) }, 2);
    char err[512] = "";
    grammar_t *g = NULL;
    int rc = gb_finish(b, root, &g, err, sizeof err);
    if (rc != 0) {              /* a refusal is bounded too, but must say why */
        ASSERT_EQ_INT(rc, ERR_INVALID);
        ASSERT(strstr(err, "left-recursive") != NULL);
        return;
    }
    gmatch_t *m;
    ASSERT_EQ_INT(gm_create(&m, g), 0);
    for (int i = 0; i < 100000; i++)
        ASSERT_EQ_INT(gm_feed(m, "a", 1), 0);
    ASSERT_EQ_INT(gm_feed(m, "b", 1), 0);
    ASSERT_EQ_INT(gm_accepting(m), 1);
    gm_destroy(m);
    check(g, (const char *[]){ "b", "aab", NULL }, (const char *[]){ "", "aa", "bb", NULL });
    grammar_release(g);
}

TEST_LIST(T(literal), T(classes_and_empty_literal), T(sequence_and_alternation), T(repeat_bounds),
          T(repeat_long_runs_in_constant_depth), T(codepoints_1_to_4_bytes), T(codepoints_negated),
          T(codepoints_empty_set_refused), T(balanced_parentheses), T(left_recursion_refused),
          T(empty_language_refused), T(undefined_rule_refused), T(sticky_failure), T(caps),
          T(ambiguous_a_or_a_star_b_bounded), T(nested_star_bounded))
