#include "utf8.h"

/*
 * One character per call.  The second byte's range depends on the first
 * (E0: A0..BF, ED: 80..9F, F0: 90..BF, F4: 80..8F, others 80..BF), which
 * is what excludes overlongs, surrogates and values past U+10FFFF; C0,
 * C1 and F5..FF never start a character.  A byte outside its range ends
 * the maximal subpart before it.
 */
size_t utf8_step(const unsigned char *s, size_t n, uint32_t *cp, int *kind)
{
    unsigned b = s[0];
    if (b < 0x80) {
        *cp = b;
        *kind = UTF8_OK;
        return 1;
    }
    size_t need;
    unsigned lo = 0x80, hi = 0xBF;
    uint32_t c;
    if (b >= 0xC2 && b <= 0xDF) {
        need = 1;
        c = b & 0x1F;
    } else if (b >= 0xE0 && b <= 0xEF) {
        need = 2;
        c = b & 0x0F;
        if (b == 0xE0)
            lo = 0xA0;
        else if (b == 0xED)
            hi = 0x9F;
    } else if (b >= 0xF0 && b <= 0xF4) {
        need = 3;
        c = b & 0x07;
        if (b == 0xF0)
            lo = 0x90;
        else if (b == 0xF4)
            hi = 0x8F;
    } else {
        *kind = UTF8_BAD;
        return 1;
    }
    for (size_t i = 1; i <= need; i++) {
        if (i >= n) {
            *kind = UTF8_SHORT;
            return i;
        }
        unsigned x = s[i];
        if (x < lo || x > hi) {
            *kind = UTF8_BAD;
            return i;
        }
        lo = 0x80;
        hi = 0xBF;
        c = (c << 6) | (x & 0x3F);
    }
    *cp = c;
    *kind = UTF8_OK;
    return need + 1;
}

size_t utf8_bad_at(const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        if (u[i] < 0x80) {
            i++;
            continue;
        }
        uint32_t cp;
        int kind;
        size_t k = utf8_step(u + i, n - i, &cp, &kind);
        if (kind != UTF8_OK)
            return i;
        i += k;
    }
    return n;
}

int utf8_valid(const char *s, size_t n)
{
    return utf8_bad_at(s, n) == n;
}

size_t utf8_chars(const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t chars = 0;
    for (size_t i = 0; i < n; chars++) {
        uint32_t cp;
        int kind;
        i += utf8_step(u + i, n - i, &cp, &kind);
    }
    return chars;
}

size_t utf8_encode(uint32_t cp, char out[4])
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

int utf8_repair(const char *s, size_t n, unsigned flags, utf8_sink_cb sink, void *ctx, size_t *rest)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t run = 0, i = 0;   /* s[run..i) is well-formed and not yet sent */
    int rc;
    *rest = 0;
    while (i < n) {
        size_t k;
        int kind;
        if (u[i] == 0 && (flags & UTF8_NO_NUL)) {
            k = 1;
            kind = UTF8_BAD;
        } else if (u[i] < 0x80) {
            i++;
            continue;
        } else {
            uint32_t cp;
            k = utf8_step(u + i, n - i, &cp, &kind);
            if (kind == UTF8_OK) {
                i += k;
                continue;
            }
        }
        if ((rc = sink(ctx, s + run, i - run)) != 0)
            return rc;
        if (kind == UTF8_SHORT && !(flags & UTF8_FINAL)) {
            *rest = k;
            return 0;
        }
        if ((rc = sink(ctx, UTF8_REPLACEMENT, 3)) != 0)
            return rc;
        i += k;
        run = i;
    }
    return sink(ctx, s + run, i - run);
}
