/*
 * api_common.c - what both sides of the API layer use: the error record,
 * and UTF-8 checks and repair (requests must be well-formed UTF-8, and
 * every string we write into JSON is made so).  Pure functions; any thread.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"

/* ================================================================== */
/* Errors                                                              */
/* ================================================================== */

int api_error_set(api_error_t *e, int code, unsigned status, const char *type,
                  const char *param, const char *ecode, const char *fmt, ...)
{
    if (e == NULL)
        return code;
    e->status = status;
    e->type = type != NULL ? type : "invalid_request_error";
    snprintf(e->param, sizeof e->param, "%s", param != NULL ? param : "");
    e->code = ecode;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
    return code;
}

/* ================================================================== */
/* UTF-8                                                               */
/* ================================================================== */

/* Length of the well-formed sequence starting s[0..n) (Unicode Table 3-7), or 0. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    if (c < 0x80)
        return 1;
    size_t len;
    unsigned lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) {
        len = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        if (c == 0xE0) lo = 0xA0;        /* no overlongs */
        if (c == 0xED) hi = 0x9F;        /* no surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;        /* <= U+10FFFF */
    } else {
        return 0;
    }
    if (n < len || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < len; i++)
        if ((s[i] & 0xC0) != 0x80)
            return 0;
    return len;
}

int api_utf8_valid(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    for (size_t i = 0; i < len;) {
        if (p[i] < 0x80) {
            i++;
            continue;
        }
        size_t k = utf8_seq(p + i, len - i);
        if (k == 0)
            return 0;
        i += k;
    }
    return 1;
}

size_t api_utf8_chars(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t n = 0;
    for (size_t i = 0; i < len; n++) {
        size_t k = utf8_seq(p + i, len - i);
        i += k > 0 ? k : 1;
    }
    return n;
}

char *api_utf8_repair(const char *s, size_t len)
{
    if (s == NULL) {
        s = "";
        len = 0;
    }
    size_t cap;
    if (__builtin_mul_overflow(len, (size_t)3, &cap) || __builtin_add_overflow(cap, 1, &cap))
        return NULL;
    char *out = malloc(api_utf8_valid(s, len) && memchr(s, 0, len) == NULL ? len + 1 : cap);
    if (out == NULL)
        return NULL;
    const unsigned char *p = (const unsigned char *)s;
    size_t o = 0;
    for (size_t i = 0; i < len;) {
        size_t k = p[i] == 0 ? 0 : utf8_seq(p + i, len - i);
        if (k == 0) {
            memcpy(out + o, "\xEF\xBF\xBD", 3);   /* U+FFFD for each bad byte */
            o += 3;
            i++;
        } else {
            memcpy(out + o, p + i, k);
            o += k;
            i += k;
        }
    }
    out[o] = '\0';
    return out;
}
