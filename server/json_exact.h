/*
 * json_exact.h - what cJSON cannot give: the exact text of a number.
 * cJSON keeps numbers as doubles, which hold integers exactly only up to
 * 2^53; a 64-bit seed such as 2^64 - 1 must be read from the text itself.
 * Pure functions; any thread.
 */
#ifndef LLAMAD_JSON_EXACT_H
#define LLAMAD_JSON_EXACT_H

#include <stddef.h>
#include <stdint.h>

/*
 * The raw text of the value of top-level member `key` (an ASCII name) in
 * the JSON object text[0..len), which the caller has already parsed as an
 * object without duplicate keys.  Returns 1 and sets *val / *val_len when
 * the member is there, else 0.  Escaped member names are compared after
 * decoding \uXXXX escapes of ASCII characters and the one-letter escapes.
 */
int json_member_text(const char *text, size_t len, const char *key, const char **val,
                     size_t *val_len);

/*
 * An integer token (-?[0-9]+, no fraction or exponent) in [-2^63, 2^64),
 * taken modulo 2^64 (so -1 is 2^64 - 1).  Returns 0, ERR_INVALID when the
 * text is not such a token, or ERR_RANGE when it is out of that range.
 */
int json_int_mod64(const char *p, size_t n, uint64_t *out);

#endif
