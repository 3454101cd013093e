/*
 * test_utf8.c - base/utf8: validation, stepping, and the repair that
 * replaces each maximal ill-formed subpart with one U+FFFD, checked
 * against Python's bytes.decode('utf-8', 'replace') (utf8_cases.h).
 */
#include <stdlib.h>
#include <string.h>

#include "test.h"
#include "utf8_cases.h"
#include "base/err.h"
#include "base/utf8.h"

typedef struct {
    char buf[256];
    size_t len;
    int calls;
    int fail_at;   /* the sink fails on this call (1-based); 0: never */
} sink_t;

static int sink_cb(void *ctx, const char *p, size_t n)
{
    sink_t *s = ctx;
    if (++s->calls == s->fail_at)
        return ERR_NOMEM;
    if (s->len + n > sizeof s->buf)
        return ERR_FULL;
    memcpy(s->buf + s->len, p, n);
    s->len += n;
    return 0;
}

TEST(well_formed)
{
    const char *ok = "a\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\xf4\x8f\xbf\xbf\xed\x9f\xbf";
    ASSERT_EQ_INT(utf8_valid("", 0), 1);
    ASSERT_EQ_INT(utf8_valid(ok, strlen(ok)), 1);
    ASSERT_EQ_U64(utf8_bad_at(ok, strlen(ok)), strlen(ok));
    ASSERT_EQ_U64(utf8_chars(ok, strlen(ok)), 6);
    sink_t s = { .len = 0 };
    size_t rest = 99;
    ASSERT_EQ_INT(utf8_repair(ok, strlen(ok), UTF8_FINAL, sink_cb, &s, &rest), 0);
    ASSERT_EQ_U64(rest, 0);
    ASSERT_EQ_U64(s.len, strlen(ok));
    ASSERT(memcmp(s.buf, ok, s.len) == 0);
}

TEST(repair_matches_python)
{
    for (size_t i = 0; i < sizeof UTF8_CASES / sizeof UTF8_CASES[0]; i++) {
        const utf8_case_t *c = &UTF8_CASES[i];
        sink_t s = { .len = 0 };
        size_t rest;
        ASSERT_EQ_INT(utf8_repair(c->in, c->in_len, UTF8_FINAL, sink_cb, &s, &rest), 0);
        ASSERT_MSG(s.len == strlen(c->want) && memcmp(s.buf, c->want, s.len) == 0,
                   "%s: %zu bytes repaired, want %zu", c->name, s.len, strlen(c->want));
        ASSERT_MSG(utf8_chars(c->in, c->in_len) == c->chars, "%s: %zu characters, want %zu", c->name,
                   utf8_chars(c->in, c->in_len), c->chars);
        ASSERT_MSG(!utf8_valid(c->in, c->in_len), "%s: taken as valid", c->name);
    }
}

TEST(bad_at_points_at_the_first_bad_byte)
{
    ASSERT_EQ_U64(utf8_bad_at("ab\xc3", 3), 2);
    ASSERT_EQ_U64(utf8_bad_at("\xe2\x82\xac\xed\xa0\x80", 6), 3);
    ASSERT_EQ_U64(utf8_bad_at("x\x80", 2), 1);
}

TEST(step_kinds)
{
    uint32_t cp = 0;
    int kind = -1;
    ASSERT_EQ_U64(utf8_step((const unsigned char *)"\xe2\x82\xac", 3, &cp, &kind), 3);
    ASSERT_EQ_INT(kind, UTF8_OK);
    ASSERT_EQ_U64(cp, 0x20AC);
    ASSERT_EQ_U64(utf8_step((const unsigned char *)"\xe2\x82", 2, &cp, &kind), 2);
    ASSERT_EQ_INT(kind, UTF8_SHORT);
    ASSERT_EQ_U64(utf8_step((const unsigned char *)"\xe2\x82x", 3, &cp, &kind), 2);
    ASSERT_EQ_INT(kind, UTF8_BAD);
    ASSERT_EQ_U64(utf8_step((const unsigned char *)"\xed\xa0\x80", 3, &cp, &kind), 1);
    ASSERT_EQ_INT(kind, UTF8_BAD);
}

/* Without UTF8_FINAL a cut tail is handed back, not replaced; NUL only with UTF8_NO_NUL. */
TEST(incremental_and_nul)
{
    sink_t s = { .len = 0 };
    size_t rest;
    ASSERT_EQ_INT(utf8_repair("ab\xf0\x9f\x98", 5, 0, sink_cb, &s, &rest), 0);
    ASSERT_EQ_U64(rest, 3);
    ASSERT_EQ_U64(s.len, 2);
    s.len = 0;
    ASSERT_EQ_INT(utf8_repair("a\0b", 3, 0, sink_cb, &s, &rest), 0);
    ASSERT_EQ_U64(s.len, 3);
    s.len = 0;
    ASSERT_EQ_INT(utf8_repair("a\0b", 3, UTF8_FINAL | UTF8_NO_NUL, sink_cb, &s, &rest), 0);
    ASSERT_EQ_U64(s.len, 5);
    ASSERT(memcmp(s.buf, "a" UTF8_REPLACEMENT "b", 5) == 0);
}

TEST(sink_error_stops)
{
    sink_t s = { .len = 0, .fail_at = 2 };
    size_t rest;
    ASSERT_EQ_INT(utf8_repair("a\x80" "b\x80" "c", 5, UTF8_FINAL, sink_cb, &s, &rest), ERR_NOMEM);
    ASSERT_EQ_INT(s.calls, 2);
}

TEST(encode_round_trip)
{
    const uint32_t cps[] = { 0x41, 0x7F, 0x80, 0x7FF, 0x800, 0xD7FF, 0xE000, 0xFFFD, 0x10000, 0x10FFFF };
    for (size_t i = 0; i < sizeof cps / sizeof cps[0]; i++) {
        char b[4];
        size_t n = utf8_encode(cps[i], b);
        uint32_t cp = 0;
        int kind;
        ASSERT_EQ_U64(utf8_step((const unsigned char *)b, n, &cp, &kind), n);
        ASSERT_EQ_INT(kind, UTF8_OK);
        ASSERT_EQ_U64(cp, cps[i]);
    }
}

TEST_LIST(T(well_formed), T(repair_matches_python), T(bad_at_points_at_the_first_bad_byte), T(step_kinds),
          T(incremental_and_nul), T(sink_error_stops), T(encode_round_trip))
