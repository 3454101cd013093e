/*
 * utf8.h - the one UTF-8 validator and repair every layer uses.
 *
 * Well-formed means the Unicode Standard's table 3-7 (RFC 3629): no
 * overlong forms, no surrogates (U+D800..U+DFFF), nothing past U+10FFFF.
 * Repair follows the Unicode-recommended practice (Unicode 15, section
 * 3.9, "U+FFFD Substitution of Maximal Subparts"), the one Python's
 * bytes.decode('utf-8', 'replace') and the WHATWG decoder use: each
 * maximal subpart of an ill-formed sequence (the longest prefix of a
 * well-formed sequence, or else one byte) becomes one U+FFFD.
 *
 * Pure functions over caller-owned memory; any thread.
 */
#ifndef LLAMAD_UTF8_H
#define LLAMAD_UTF8_H

#include <stddef.h>
#include <stdint.h>

/* U+FFFD REPLACEMENT CHARACTER, encoded. */
#define UTF8_REPLACEMENT "\xEF\xBF\xBD"

enum { UTF8_OK = 0, UTF8_BAD = 1, UTF8_SHORT = 2 };

/*
 * Classify the sequence at s[0..n), n >= 1: returns the bytes it takes and
 * sets *kind: UTF8_OK (one whole character, *cp set), UTF8_BAD (a maximal
 * ill-formed subpart: one U+FFFD) or UTF8_SHORT (a well-formed prefix cut
 * by the end of the input).
 */
size_t utf8_step(const unsigned char *s, size_t n, uint32_t *cp, int *kind);

/* Index of the first byte of s[0..n) that is not part of a well-formed character, or n. */
size_t utf8_bad_at(const char *s, size_t n);

/* 1 when s[0..n) is well-formed UTF-8, else 0. */
int utf8_valid(const char *s, size_t n);

/* Characters of s[0..n) as repaired: each ill-formed subpart counts one. */
size_t utf8_chars(const char *s, size_t n);

/* Encode the scalar value cp (< 0x110000, not a surrogate) into out; returns its length. */
size_t utf8_encode(uint32_t cp, char out[4]);

/* Where repaired text goes: append p[0..n) (n may be 0); 0 or a negative ERR_* code. */
typedef int (*utf8_sink_cb)(void *ctx, const char *p, size_t n);

enum {
    UTF8_FINAL = 1,   /* a prefix cut by the end is one U+FFFD, not left over */
    UTF8_NO_NUL = 2,  /* a NUL byte is replaced as well (text bound for JSON or C strings) */
};

/*
 * Send s[0..n) to sink with every ill-formed subpart replaced by one
 * U+FFFD, in runs.  Without UTF8_FINAL a well-formed prefix cut by the end
 * is not sent: its length goes to *rest (else *rest is 0), for the caller
 * to prepend to the next piece.  Returns 0, or the first error the sink
 * returned (after which nothing more is sent).
 */
int utf8_repair(const char *s, size_t n, unsigned flags, utf8_sink_cb sink, void *ctx, size_t *rest);

#endif
