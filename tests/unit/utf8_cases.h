/*
 * utf8_cases.h - ill-formed UTF-8 and what Python 3 makes of it:
 * bytes.decode('utf-8', 'replace') (U+FFFD per maximal subpart, the
 * Unicode-recommended practice), the expected text written out here by
 * python3 so that the tests need no Python.  Shared by test_utf8.c and
 * test_api_response.c.
 */
#ifndef LLAMAD_TEST_UTF8_CASES_H
#define LLAMAD_TEST_UTF8_CASES_H

#include <stddef.h>

typedef struct {
    const char *name;
    const char *in;
    size_t in_len;
    const char *want;     /* repaired */
    size_t chars;         /* characters of the repaired text */
} utf8_case_t;

static const utf8_case_t UTF8_CASES[] = {
    { "truncated 2-byte", "\xc3", 1, "\xef\xbf\xbd", 1 },
    { "truncated 3-byte after ASCII", "\x61\xe2\x82", 3, "\x61\xef\xbf\xbd", 2 },
    { "truncated 4-byte", "\xf0\x9f\x98", 3, "\xef\xbf\xbd", 1 },
    { "3-byte cut by ASCII", "\xe2\x82\x78", 3, "\xef\xbf\xbd\x78", 2 },
    { "3-byte prefix then valid", "\xe2\x82\xe2\x82\xac", 5, "\xef\xbf\xbd\xe2\x82\xac", 2 },
    { "overlong C0", "\xc0\xaf", 2, "\xef\xbf\xbd\xef\xbf\xbd", 2 },
    { "overlong C1", "\xc1\xbf", 2, "\xef\xbf\xbd\xef\xbf\xbd", 2 },
    { "overlong E0", "\xe0\x80\xaf", 3, "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd", 3 },
    { "overlong F0", "\xf0\x80\x80\xaf", 4, "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd", 4 },
    { "surrogate high", "\xed\xa0\x80", 3, "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd", 3 },
    { "surrogate low", "\xed\xbf\xbf", 3, "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd", 3 },
    { "past U+10FFFF (F4 90)", "\xf4\x90\x80\x80", 4, "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd", 4 },
    { "F5 lead", "\xf5\x80\x80\x80", 4, "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd", 4 },
    { "FF", "\xff", 1, "\xef\xbf\xbd", 1 },
    { "stray continuation", "\x80", 1, "\xef\xbf\xbd", 1 },
    { "three stray continuations", "\x80\x80\xbf", 3, "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd", 3 },
    { "stray between ASCII", "\x61\x80\x62", 3, "\x61\xef\xbf\xbd\x62", 3 },
    { "stray after 4-byte", "\xf0\x9f\x98\x80\x80", 5, "\xf0\x9f\x98\x80\xef\xbf\xbd", 2 },
    { "euro then cut euro", "\xe2\x82\xac\xe2\x82", 5, "\xe2\x82\xac\xef\xbf\xbd", 2 },
    { "mixed prefixes", "\xf1\x80\x80\xe1\x80\xc2\x61\x80", 8, "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\x61\xef\xbf\xbd", 5 },
};

#endif
