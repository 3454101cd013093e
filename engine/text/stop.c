/*
 * stop.c - stop-string matching over the text held back by a request.
 */
#include "stop.h"

#include <string.h>

#include "base/err.h"
#include "tokenizer_impl.h"

int stop_set_init(stop_set_t *s, const char *const *strs, size_t n, char *err, size_t errlen)
{
    s->n = 0;
    if (n > STOP_MAX_STRINGS)
        return err_set(err, errlen, ERR_RANGE, "stop: %zu strings (at most %d)", n, STOP_MAX_STRINGS);
    if (n > 0 && strs == NULL)
        return err_set(err, errlen, ERR_INVALID, "stop: no strings given");
    for (size_t i = 0; i < n; i++) {
        size_t len = strs[i] != NULL ? strnlen(strs[i], STOP_MAX_LEN + 1) : 0;
        if (len == 0 || len > STOP_MAX_LEN)
            return err_set(err, errlen, ERR_RANGE, "stop[%zu]: %s (1 to %d bytes)", i,
                           len == 0 ? "empty" : "too long", STOP_MAX_LEN);
        if (!utf8_valid(strs[i], len))
            return err_set(err, errlen, ERR_INVALID, "stop[%zu]: not valid UTF-8", i);
        memcpy(s->str[i], strs[i], len);
        s->len[i] = (uint32_t)len;
    }
    s->n = (uint32_t)n;
    return 0;
}

int stop_scan(const stop_set_t *s, const char *text, size_t len, size_t *emit)
{
    size_t first = len;
    int found = 0;
    for (uint32_t i = 0; i < s->n; i++) {
        const char *hit = memmem(text, first + s->len[i] - 1 < len ? first + s->len[i] - 1 : len,
                                 s->str[i], s->len[i]);
        if (hit != NULL && (size_t)(hit - text) < first) {
            first = (size_t)(hit - text);
            found = 1;
        }
    }
    if (found) {
        *emit = first;
        return 1;
    }
    /* the longest tail of text that a stop string starts with */
    size_t keep = 0;
    for (uint32_t i = 0; i < s->n; i++) {
        size_t max = s->len[i] - 1 < len ? s->len[i] - 1 : len;
        for (size_t k = max; k > keep; k--) {
            if (memcmp(text + len - k, s->str[i], k) == 0) {
                keep = k;
                break;
            }
        }
    }
    *emit = len - keep;
    return 0;
}
