/*
 * stop.h - a request's stop strings, matched in generated text across
 * token boundaries.
 *
 * Owns nothing outside the stop_set_t, which holds copies of the strings
 * (the caller's storage; no allocation).  The engine keeps back, from the
 * text it has decoded, whatever might still become a stop string, so a
 * stop string never reaches the client, not even in part.  Pure
 * functions; stop_set_init on any thread, the rest on whichever thread
 * owns the set.
 */
#ifndef LLAMAD_STOP_H
#define LLAMAD_STOP_H

#include <stddef.h>
#include <stdint.h>

#define STOP_MAX_STRINGS 4     /* OpenAI's limit */
#define STOP_MAX_LEN     256   /* bytes per string */

typedef struct {
    uint32_t n;
    uint32_t len[STOP_MAX_STRINGS];
    char str[STOP_MAX_STRINGS][STOP_MAX_LEN];
} stop_set_t;

/*
 * Copy n NUL-terminated strings.  Each must be 1 to STOP_MAX_LEN bytes of
 * valid UTF-8 (so that text held back for one always starts on a
 * character boundary).  Returns 0, or ERR_RANGE / ERR_INVALID with a
 * message naming the field "stop"; on error *s holds no strings.
 */
int stop_set_init(stop_set_t *s, const char *const *strs, size_t n, char *err, size_t errlen);

/*
 * Look at text[0 .. len): the text decoded so far and not yet released.
 * When a stop string occurs in it, returns 1 and sets *emit to the bytes
 * before the earliest occurrence (the generation ends there).  Otherwise
 * returns 0 and sets *emit to the bytes that can be released now: all but
 * the longest tail that is a proper prefix of some stop string.
 */
int stop_scan(const stop_set_t *s, const char *text, size_t len, size_t *emit);

#endif
