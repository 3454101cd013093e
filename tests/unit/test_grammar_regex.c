/*
 * test_grammar_regex.c - engine/grammar's regex and choice compilers: for
 * each construct, strings the DFA must accept and strings it must refuse;
 * the refusals of the parser with their codes; pathological patterns
 * within a time bound; the caps; and regex_cross.txt, Python's re verdicts
 * on generated strings for 40+ patterns (tests/unit/regex_cross.py).
 */
#include <stdint.h>
#include <string.h>
#include <time.h>

#include "test.h"
#include "base/err.h"
#include "grammar/grammar.h"
#include "grammar/regex.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Compile re with flags; every string of yes must match whole, none of no. */
static void check(const char *re, unsigned flags, const char *const *yes, const char *const *no)
{
    rx_dfa_t d;
    char err[ERR_MSG_MAX] = "";
    int rc = rx_compile(&d, re, strlen(re), flags, REGEX_MAX_STATES, err, sizeof err);
    ASSERT_MSG(rc == 0, "/%s/: rc %d: %s", re, rc, err);
    for (; yes && *yes; yes++)
        ASSERT_MSG(rx_dfa_match(&d, *yes, strlen(*yes)), "/%s/ (flags %u) refuses \"%s\"", re, flags, *yes);
    for (; no && *no; no++)
        ASSERT_MSG(!rx_dfa_match(&d, *no, strlen(*no)), "/%s/ (flags %u) accepts \"%s\"", re, flags, *no);
    rx_dfa_close(&d);
}

#define Y(...) (const char *const[]){ __VA_ARGS__, NULL }

/* re must fail with code; the message must contain want. */
static void refuse(const char *re, int code, const char *want)
{
    rx_dfa_t d;
    char err[ERR_MSG_MAX] = "";
    int rc = rx_compile(&d, re, strlen(re), 0, REGEX_MAX_STATES, err, sizeof err);
    ASSERT_MSG(rc == code, "/%s/: rc %d, want %d (%s)", re, rc, code, err);
    ASSERT_MSG(strstr(err, want) != NULL, "/%s/: message \"%s\" lacks \"%s\"", re, err, want);
    rx_dfa_close(&d);
}

TEST(literals_and_alternation)
{
    check("abc", 0, Y("abc"), Y("", "ab", "abcd", "abd", "ABC"));
    check("a|bc|", 0, Y("a", "bc", ""), Y("b", "abc", "c"));
    check("(?:ab|a)(?:c|bc)", 0, Y("abc", "abbc", "ac"), Y("ab", "abcc"));
    check("", 0, Y(""), Y("a"));
    check("a{b}c]", 0, Y("a{b}c]"), Y("abc"));     /* '{', '}' and ']' alone are literals */
}

TEST(classes)
{
    check("[a-cx]", 0, Y("a", "b", "c", "x"), Y("d", "", "ab", "A"));
    check("[^a-c]", 0, Y("d", "\xc3\xa9", "\xf0\x9f\x98\x80", "\r"), Y("a", "c", "\n", ""));
    check("[-a]+[a-]", 0, Y("-a", "aa-", "--"), Y("-", "b"));
    check("[\\d\\-x]", 0, Y("5", "-", "x"), Y("a", "\\"));
    check("[\\]\\\\]", 0, Y("]", "\\"), Y("[", ""));
    check("[\\b]", 0, Y("\b"), Y("b"));
}

TEST(dot_and_escapes)
{
    check(".", 0, Y("a", "\r", "\xd1\x8f", "\xf0\x9f\x98\x80", "\x7f"), Y("\n", "", "ab", "\xed\xa0\x80"));
    check("\\d\\w\\s", 0, Y("0a ", "9_\t", "5Z\xc2\xa0", "1x\xe3\x80\x80"), Y("aa ", "0- ", "00a"));
    check("\\D\\W\\S", 0, Y("a-x", "\n \xc3\xa9"), Y("1-x", "a_x", "a- "));
    check("\\.\\\\\\/\\n\\t\\r\\f\\v", 0, Y(".\\/\n\t\r\f\v"), NULL);
    check("\\x41\\u00e9\\u0041", 0, Y("A\xc3\xa9" "A"), Y("Ae A"));
    check("\\ud83d\\ude00", 0, Y("\xf0\x9f\x98\x80"), Y("\xed\xa0\xbd\xed\xb8\x80"));
    check("\\-\\\"\\'\\{", 0, Y("-\"'{"), NULL);
}

TEST(null_escape_is_one_byte)
{
    rx_dfa_t d;
    char err[ERR_MSG_MAX];
    ASSERT_EQ_INT(rx_compile(&d, "a\\0b", 4, 0, REGEX_MAX_STATES, err, sizeof err), 0);
    ASSERT(rx_dfa_match(&d, "a\0b", 3));
    ASSERT(!rx_dfa_match(&d, "ab", 2));
    rx_dfa_close(&d);
}

TEST(unicode)
{
    check("[\xd0\xb0-\xd1\x8f]+", 0, Y("\xd0\xbf\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82", "\xd0\xb0", "\xd1\x8f"),
          Y("", "a", "\xd0\x90", "\xd1\x91"));                                  /* А, ё outside */
    check("\xf0\x9f\x98\x80{2}", 0, Y("\xf0\x9f\x98\x80\xf0\x9f\x98\x80"),
          Y("\xf0\x9f\x98\x80", "\xf0\x9f\x98\x80\xf0\x9f\x98", "\xf0\x9f\x98\x81\xf0\x9f\x98\x80"));
    check("[\\u0080-\\uffff]", 0, Y("\xc2\x80", "\xdf\xbf", "\xe0\xa0\x80", "\xef\xbf\xbf", "\xed\x9f\xbf"),
          Y("\x7f", "\xed\xa0\x80", "\xed\xbf\xbf", "\xf0\x90\x80\x80", "\xc0\x80", "\xe0\x80\x80"));
    check("[^a]", 0, Y("\xf4\x8f\xbf\xbf", "\xee\x80\x80"), Y("\xf4\x90\x80\x80", "\xed\xb0\x80", "\xff"));
}

TEST(quantifiers)
{
    check("a?b*c+", 0, Y("c", "abbc", "bccc", "ac"), Y("", "ab", "aac", "cb"));
    check("x{3}", 0, Y("xxx"), Y("xx", "xxxx", ""));
    check("x{2,}", 0, Y("xx", "xxxxxxxx"), Y("x", ""));
    check("x{2,4}", 0, Y("xx", "xxx", "xxxx"), Y("x", "xxxxx"));
    check("x{0,1}y{0}", 0, Y("", "x"), Y("xx", "y"));
    check("(ab){1,2}c", 0, Y("abc", "ababc"), Y("c", "abababc", "abac"));
    check("a*?b+?c??d{1,2}?", 0, Y("bd", "aabbcdd"), Y("ad", "bcc"));  /* lazy = greedy here */
    static char xs[1501];
    memset(xs, 'x', 1500);
    check("x{1500}", 0, Y(xs), Y("x", xs + 1));
    refuse("x{10000}", ERR_FULL, "more than 2000 DFA states");
    check("(?:a|b)x{3,3}", 0, Y("axxx", "bxxx"), Y("axx"));
}

TEST(anchors)
{
    check("^abc$", 0, Y("abc"), Y("xabc", "abcx"));                    /* whole-string anyway */
    check("^a|b$", 0, Y("a", "b"), Y("ab"));
    check("ab", REGEX_SEARCH, Y("ab", "xaby", "\xc3\xa9" "ab\n"), Y("a", "b", "ba"));
    check("^ab", REGEX_SEARCH, Y("ab", "abxx"), Y("xab"));
    check("ab$", REGEX_SEARCH, Y("ab", "xxab"), Y("abx"));
    check("^ab$", REGEX_SEARCH, Y("ab"), Y("xab", "abx"));
    check("^a|b$", REGEX_SEARCH, Y("a", "axx", "xxb", "ab"), Y("xax", "bx"));
    check("", REGEX_SEARCH, Y("", "anything"), NULL);
    refuse("a^b", ERR_UNSUPPORTED, "'^' is supported only");
    refuse("a$b", ERR_UNSUPPORTED, "'$' is supported only");
    refuse("(^a)", ERR_UNSUPPORTED, "'^'");
    refuse("(a$)", ERR_UNSUPPORTED, "'$'");
}

TEST(json_string)
{
    check(".+", REGEX_JSON_STRING, Y("a", "\xc3\xa9x", "'"), Y("\"", "\\", "\x1f", "\t", "a\"b", ""));
    check("[^a]", REGEX_JSON_STRING, Y("b"), Y("\"", "\\", "\x01"));
    check("a\"?b", REGEX_JSON_STRING, Y("ab"), Y("a\"b"));
    check("\\d+", REGEX_JSON_STRING | REGEX_SEARCH, Y("x1y", "12"), Y("x\"1", "1\\", "ab"));
    rx_dfa_t d;
    char err[ERR_MSG_MAX];
    ASSERT_EQ_INT(rx_compile(&d, "\\\"", 2, REGEX_JSON_STRING, REGEX_MAX_STATES, err, sizeof err), ERR_INVALID);
    ASSERT(strstr(err, "matches nothing"));
}

TEST(refusals)
{
    refuse("(a)\\1", ERR_UNSUPPORTED, "backreferences");
    refuse("(?=a)", ERR_UNSUPPORTED, "lookaround");
    refuse("(?!a)", ERR_UNSUPPORTED, "lookaround");
    refuse("(?<=a)b", ERR_UNSUPPORTED, "lookaround");
    refuse("(?<!a)b", ERR_UNSUPPORTED, "lookaround");
    refuse("(?<n>a)", ERR_UNSUPPORTED, "named groups");
    refuse("\\k<n>", ERR_UNSUPPORTED, "named backreferences");
    refuse("(?i)a", ERR_UNSUPPORTED, "flags");
    refuse("a\\b", ERR_UNSUPPORTED, "word boundaries");
    refuse("\\p{L}", ERR_UNSUPPORTED, "property");
    refuse("\\u{1F600}", ERR_UNSUPPORTED, "\\u{...}");
    refuse("\\ud800", ERR_UNSUPPORTED, "surrogate");
    refuse("*a", ERR_INVALID, "nothing to repeat");
    refuse("a**", ERR_INVALID, "nothing to repeat");
    refuse("a{2}{3}", ERR_INVALID, "nothing to repeat");
    refuse("(|+)", ERR_INVALID, "nothing to repeat");
    refuse("{2}", ERR_INVALID, "nothing to repeat");
    refuse("a{3,2}", ERR_INVALID, "out of order");
    refuse("[z-a]", ERR_INVALID, "out of order");
    refuse("[\\d-z]", ERR_INVALID, "class escape");
    refuse("(ab", ERR_INVALID, "missing ')'");
    refuse("ab)", ERR_INVALID, "unmatched ')'");
    refuse("[ab", ERR_INVALID, "missing ']'");
    refuse("ab\\", ERR_INVALID, "trailing backslash");
    refuse("\\q", ERR_INVALID, "unknown escape");
    refuse("\\x4", ERR_INVALID, "\\x");
    refuse("\\u12", ERR_INVALID, "\\u");
    refuse("a\xff", ERR_INVALID, "UTF-8");
    refuse("[]", ERR_INVALID, "matches nothing");
    refuse("a[^\\s\\S]b", ERR_INVALID, "matches nothing");
    refuse("a{10001}", ERR_FULL, "10000");
}

TEST(caps)
{
    char re[RX_MAX_DEPTH * 2 + 8];
    size_t n = 0;
    for (int k = 0; k <= RX_MAX_DEPTH; k++)
        re[n++] = '(';
    re[n++] = 'a';
    for (int k = 0; k <= RX_MAX_DEPTH; k++)
        re[n++] = ')';
    re[n] = 0;
    refuse(re, ERR_FULL, "nested more than");
    double t0 = now_s();
    refuse("(?:.[a-z0-9]+\\..){1000}", ERR_FULL, "NFA states");
    refuse("(?:.\\w+.){10000}", ERR_FULL, "NFA states");
    refuse("(?:(?:a|b|c)x{100}){1000}", ERR_FULL, "NFA states");
    refuse("[ab]*a[ab]{20}", ERR_FULL, "DFA states");                    /* 2^20 subsets */
    ASSERT_MSG(now_s() - t0 < 2.0, "caps took %.2f s", now_s() - t0);
}

TEST(pathological_fast)
{
    static const char *const pats[] = {
        "(a|a)*b", "(a*)*", "(a+)+$", "(a*)*b", "(a|aa)+c", "(x+x+)+y", "(.*a){12}",
        "((a*)*)*(b*)*c?", "(\\w+\\s?)*$", "^(a+|b+)*$", "([a-z]+)*[0-9]",
    };
    for (size_t k = 0; k < sizeof pats / sizeof pats[0]; k++) {
        double t0 = now_s();
        rx_dfa_t d;
        char err[ERR_MSG_MAX];
        int rc = rx_compile(&d, pats[k], strlen(pats[k]), REGEX_SEARCH, REGEX_MAX_STATES, err, sizeof err);
        double dt = now_s() - t0;
        ASSERT_MSG(rc == 0, "/%s/: rc %d %s", pats[k], rc, err);
        ASSERT_MSG(dt < 0.5, "/%s/ took %.3f s", pats[k], dt);
        rx_dfa_close(&d);
    }
    check("(a|a)*b", 0, Y("b", "aaaab"), Y("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "aab a"));
    check("(a+)+$", 0, Y("a", "aaaa"), Y("", "aaaaaaaaaaaaaaaaaaaaaaaaaab"));
    check("(a*)*", 0, Y("", "aaa"), Y("b"));
}

TEST(choice)
{
    rx_dfa_t d;
    char err[ERR_MSG_MAX];
    const char *j = "[\"yes\", \"no\", \"not sure\", \"n\", \"\xc3\xa9t\xc3\xa9\", \"yes\"]";
    ASSERT_EQ_INT(choice_dfa(&d, j, strlen(j), err, sizeof err), 0);
    static const char *const yes[] = { "yes", "no", "not sure", "n", "\xc3\xa9t\xc3\xa9" };
    static const char *const no[] = { "", "ye", "yess", "not", "not sure ", "nos", "\xc3\xa9" };
    for (size_t k = 0; k < 5; k++)
        ASSERT_MSG(rx_dfa_match(&d, yes[k], strlen(yes[k])), "refuses %s", yes[k]);
    for (size_t k = 0; k < 7; k++)
        ASSERT_MSG(!rx_dfa_match(&d, no[k], strlen(no[k])), "accepts %s", no[k]);
    rx_dfa_close(&d);
    j = "[\"\", \"a\"]";
    ASSERT_EQ_INT(choice_dfa(&d, j, strlen(j), err, sizeof err), 0);
    ASSERT(rx_dfa_match(&d, "", 0) && rx_dfa_match(&d, "a", 1) && !rx_dfa_match(&d, "b", 1));
    rx_dfa_close(&d);
    static const char *const bad[] = { "[]", "{}", "\"a\"", "[1]", "[\"a\", null]", "[\"a\"", "",
                                       "[[\"a\"]]" };
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        int rc = choice_dfa(&d, bad[k], strlen(bad[k]), err, sizeof err);
        ASSERT_MSG(rc == ERR_INVALID, "%s: rc %d", bad[k], rc);
        ASSERT_MSG(strstr(err, "guided_choice") != NULL, "%s: %s", bad[k], err);
    }
    ASSERT_EQ_INT(choice_dfa(&d, NULL, 0, err, sizeof err), ERR_INVALID);
}

TEST(choice_caps)
{
    rx_dfa_t d;
    char err[ERR_MSG_MAX];
    static char j[(CHOICE_MAX_ITEMS + 2) * 8 + CHOICE_MAX_LEN + 64];
    size_t n = 0;
    j[n++] = '[';
    for (int k = 0; k <= CHOICE_MAX_ITEMS; k++)
        n += (size_t)snprintf(j + n, sizeof j - n, "%s\"%d\"", k ? "," : "", k);
    j[n++] = ']';
    ASSERT_EQ_INT(choice_dfa(&d, j, n, err, sizeof err), ERR_INVALID);  /* 1025 strings */
    /* 1024 strings: accepted, each one and nothing else */
    n = 0;
    j[n++] = '[';
    for (int k = 0; k < CHOICE_MAX_ITEMS; k++)
        n += (size_t)snprintf(j + n, sizeof j - n, "%s\"%d\"", k ? "," : "", k);
    j[n++] = ']';
    ASSERT_EQ_INT(choice_dfa(&d, j, n, err, sizeof err), 0);
    ASSERT(rx_dfa_match(&d, "1023", 4) && rx_dfa_match(&d, "0", 1) && !rx_dfa_match(&d, "1024", 4));
    rx_dfa_close(&d);
    n = (size_t)snprintf(j, sizeof j, "[\"");
    memset(j + n, 'x', CHOICE_MAX_LEN + 1);
    n += CHOICE_MAX_LEN + 1;
    n += (size_t)snprintf(j + n, sizeof j - n, "\"]");
    ASSERT_EQ_INT(choice_dfa(&d, j, n, err, sizeof err), ERR_FULL);
}

/* ------------------------------------------------------------------ through the grammar and matcher */

/* A grammar of re (regex_build with flags, as the root rule). */
static grammar_t *regex_grammar(const char *re, size_t len, unsigned flags)
{
    gbuild_t *b;
    grammar_t *g = NULL;
    char err[ERR_MSG_MAX] = "";
    ASSERT_EQ_INT(gb_create(&b, NULL), 0);
    uint32_t root = regex_build(b, re, len, flags);
    int rc = gb_finish(b, root, &g, err, sizeof err);
    ASSERT_MSG(rc == 0 && g, "/%.*s/: gb_finish %d %s", (int)len, re, rc, err);
    return g;
}

/* Whether the matcher of g accepts s[0..n) whole, fed in one call and byte by byte. */
static int gm_accepts(grammar_t *g, const char *s, size_t n)
{
    gmatch_t *m;
    ASSERT_EQ_INT(gm_create(&m, g), 0);
    int whole = gm_feed(m, s, n) == 0 && gm_accepting(m);
    gm_reset(m);
    int bytes = 1;
    for (size_t i = 0; i < n && bytes; i++)
        bytes = gm_feed(m, s + i, 1) == 0;
    bytes = bytes && gm_accepting(m);
    gm_destroy(m);
    ASSERT_MSG(whole == bytes, "fed whole %d, byte by byte %d", whole, bytes);
    return whole;
}

TEST(grammar_from_regex)
{
    grammar_t *g;
    char err[ERR_MSG_MAX];
    ASSERT_EQ_INT(grammar_from_regex("(ab|c)+d?", 9, NULL, &g, err, sizeof err), 0);
    ASSERT(gm_accepts(g, "abcab", 5) && gm_accepts(g, "cd", 2));
    ASSERT(!gm_accepts(g, "", 0) && !gm_accepts(g, "abd d", 5) && !gm_accepts(g, "a", 1));
    gmatch_t *m;
    ASSERT_EQ_INT(gm_create(&m, g), 0);
    ASSERT_EQ_INT(gm_feed(m, "ab", 2), 0);
    ASSERT(gm_accepting(m) && gm_can_continue(m));
    ASSERT_EQ_INT(gm_feed(m, "x", 1), ERR_INVALID);
    ASSERT_EQ_INT(gm_feed(m, "d", 1), 0);
    ASSERT(gm_accepting(m) && !gm_can_continue(m));
    gm_destroy(m);
    grammar_release(g);
    ASSERT_EQ_INT(grammar_from_regex("a(?=b)", 6, NULL, &g, err, sizeof err), ERR_UNSUPPORTED);
    ASSERT(g == NULL && strstr(err, "lookaround"));
    ASSERT_EQ_INT(grammar_from_regex("[]", 2, NULL, &g, err, sizeof err), ERR_INVALID);
    ASSERT_EQ_INT(grammar_from_regex("x{5000}", 7, NULL, &g, err, sizeof err), ERR_FULL);
    ASSERT(strstr(err, "2000 DFA states"));
}

TEST(regex_build_in_a_larger_grammar)
{
    /* "id=" then a JSON-string-safe search pattern then ";": the regex is one rule among others */
    gbuild_t *b;
    grammar_t *g = NULL;
    char err[ERR_MSG_MAX];
    ASSERT_EQ_INT(gb_create(&b, NULL), 0);
    uint32_t x = regex_build(b, "^\\d+", 4, REGEX_SEARCH | REGEX_JSON_STRING);
    gelem_t e[3] = { ge_ref(gb_literal(b, "id=", 3)), ge_ref(x), ge_ref(gb_literal(b, ";", 1)) };
    ASSERT_EQ_INT(gb_finish(b, gb_seq(b, e, 3), &g, err, sizeof err), 0);
    ASSERT(gm_accepts(g, "id=12;", 6) && gm_accepts(g, "id=1 ok;", 8));
    ASSERT(!gm_accepts(g, "id=;", 4) && !gm_accepts(g, "id=x1;", 6) && !gm_accepts(g, "id=1\\;", 6));
    grammar_release(g);
    /* a failed regex_build: gb_finish reports the regex's error */
    ASSERT_EQ_INT(gb_create(&b, NULL), 0);
    x = regex_build(b, "(a", 2, 0);
    ASSERT_EQ_U64(x, GB_NONE);
    ASSERT_EQ_INT(gb_finish(b, x, &g, err, sizeof err), ERR_INVALID);
    ASSERT(strstr(err, "missing ')'"));
}

TEST(grammar_from_choice)
{
    grammar_t *g;
    char err[ERR_MSG_MAX];
    const char *j = "[\"positive\", \"negative\", \"neutral\", \"neg\", \"\u00e9t\u00e9\", \"\"]";
    ASSERT_EQ_INT(grammar_from_choice(j, strlen(j), NULL, &g, err, sizeof err), 0);
    static const char *const yes[] = { "positive", "negative", "neutral", "neg", "\xc3\xa9t\xc3\xa9", "" };
    static const char *const no[] = { "pos", "negativ", "neutrals", "ne", "\xc3\xa9", "x" };
    for (size_t k = 0; k < 6; k++) {
        ASSERT_MSG(gm_accepts(g, yes[k], strlen(yes[k])), "refuses %s", yes[k]);
        ASSERT_MSG(!gm_accepts(g, no[k], strlen(no[k])), "accepts %s", no[k]);
    }
    grammar_release(g);
    ASSERT_EQ_INT(grammar_from_choice("[]", 2, NULL, &g, err, sizeof err), ERR_INVALID);
    ASSERT(g == NULL && strstr(err, "guided_choice"));
    ASSERT_EQ_INT(grammar_from_choice("[\"a\", 2]", 8, NULL, &g, err, sizeof err), ERR_INVALID);
    ASSERT(strstr(err, "item 1"));
    /* 256 distinct strings of 4000 bytes: a trie of 1M nodes, past the builder's element cap */
    static char big[256 * 4004 + 8];
    size_t n = 0;
    big[n++] = '[';
    for (int k = 0; k < 256; k++) {
        n += (size_t)snprintf(big + n, sizeof big - n, "%s\"%02x", k ? "," : "", k);
        memset(big + n, 'x', 3998);
        n += 3998;
        big[n++] = '"';
    }
    big[n++] = ']';
    double t0 = now_s();
    int rc = grammar_from_choice(big, n, NULL, &g, err, sizeof err);
    ASSERT_MSG(rc == ERR_FULL && g == NULL, "rc %d: %s", rc, err);
    ASSERT_MSG(now_s() - t0 < 2.0, "took %.2f s", now_s() - t0);
}

/* ------------------------------------------------------------------ Python's verdicts */

static size_t unhex(const char *h, char *out, size_t cap)
{
    size_t n = 0;
    if (strcmp(h, "-") == 0)
        return 0;
    for (; h[0] && h[1] && n < cap; h += 2) {
        unsigned v;
        sscanf(h, "%2x", &v);
        out[n++] = (char)v;
    }
    return n;
}

TEST(matches_python)
{
    char path[1024], line[8192], field[8192], s[4096];
    snprintf(path, sizeof path, "%s/tests/unit/regex_cross.txt", test_srcdir());
    FILE *f = fopen(path, "r");
    ASSERT_MSG(f != NULL, "cannot open %s", path);
    rx_dfa_t d = { 0 };
    grammar_t *g = NULL;
    char pat[4096], err[ERR_MSG_MAX];
    size_t pl = 0, n_pat = 0, n_str = 0;
    while (fgets(line, sizeof line, f)) {
        char mode[4];
        if (line[0] == 'P') {
            ASSERT(sscanf(line, "P %3s %8191s", mode, field) == 2);
            pl = unhex(field, pat, sizeof pat - 1);
            pat[pl] = 0;
            rx_dfa_close(&d);
            int rc = rx_compile(&d, pat, pl, mode[0] == 'S' ? REGEX_SEARCH : 0, REGEX_MAX_STATES,
                                err, sizeof err);
            ASSERT_MSG(rc == 0, "/%s/: rc %d %s", pat, rc, err);
            grammar_release(g);
            g = regex_grammar(pat, pl, mode[0] == 'S' ? REGEX_SEARCH : 0);
            n_pat++;
            continue;
        }
        int want;
        ASSERT(sscanf(line, "%d %8191s", &want, field) == 2);
        size_t sl = unhex(field, s, sizeof s);
        ASSERT_MSG(rx_dfa_match(&d, s, sl) == want, "/%s/ on \"%.*s\": %d, Python says %d", pat,
                   (int)sl, s, !want, want);
        ASSERT_MSG(gm_accepts(g, s, sl) == want, "/%s/ on \"%.*s\": the grammar says %d, Python %d", pat,
                   (int)sl, s, !want, want);
        n_str++;
    }
    fclose(f);
    rx_dfa_close(&d);
    grammar_release(g);
    ASSERT_MSG(n_pat >= 30 && n_str >= 1000, "only %zu patterns, %zu strings", n_pat, n_str);
}

TEST_LIST(T(literals_and_alternation), T(classes), T(dot_and_escapes), T(null_escape_is_one_byte),
          T(unicode), T(quantifiers), T(anchors), T(json_string), T(refusals), T(caps),
          T(pathological_fast), T(choice), T(choice_caps), T(grammar_from_regex),
          T(regex_build_in_a_larger_grammar), T(grammar_from_choice), T(matches_python));
