/*
 * json_exact.c - the raw text of a top-level JSON member, and 64-bit
 * integers read exactly from it.
 */
#include "json_exact.h"

#include <string.h>

#include "base/err.h"

static size_t skip_ws(const char *t, size_t i, size_t len)
{
    while (i < len && (t[i] == ' ' || t[i] == '\t' || t[i] == '\n' || t[i] == '\r'))
        i++;
    return i;
}

static int hexval(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 :
           c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/*
 * The string starting at t[i] == '"': returns the index past its closing
 * quote, and whether it decodes to `key` (ASCII; *match).
 */
static size_t scan_string(const char *t, size_t i, size_t len, const char *key, int *match)
{
    size_t k = 0, klen = key != NULL ? strlen(key) : 0;
    int same = key != NULL;
    for (i++; i < len && t[i] != '"'; i++) {
        int c = (unsigned char)t[i];
        if (c == '\\' && i + 1 < len) {
            char e = t[++i];
            static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
            const char *p = strchr(from, e);
            c = p != NULL ? to[p - from] : -1;
            if (e == 'u' && i + 4 < len) {
                int v = 0;
                for (int j = 1; j <= 4; j++)
                    v = hexval(t[i + j]) < 0 || v < 0 ? -1 : v * 16 + hexval(t[i + j]);
                c = v >= 0 && v < 0x80 ? v : -1;
                i += 4;
            }
        }
        if (same && (k >= klen || c != (unsigned char)key[k]))
            same = 0;
        k++;
    }
    if (match != NULL)
        *match = same && k == klen;
    return i + 1;
}

/* The index past the value starting at t[i] (already valid JSON). */
static size_t skip_value(const char *t, size_t i, size_t len)
{
    if (i >= len)
        return len;
    if (t[i] == '"')
        return scan_string(t, i, len, NULL, NULL);
    if (t[i] == '{' || t[i] == '[') {
        unsigned depth = 0;
        for (; i < len; i++) {
            if (t[i] == '"') {
                i = scan_string(t, i, len, NULL, NULL) - 1;
            } else if (t[i] == '{' || t[i] == '[') {
                depth++;
            } else if (t[i] == '}' || t[i] == ']') {
                if (--depth == 0)
                    return i + 1;
            }
        }
        return len;
    }
    while (i < len && t[i] != ',' && t[i] != '}' && t[i] != ']' && t[i] != ' ' && t[i] != '\t' &&
           t[i] != '\n' && t[i] != '\r')
        i++;
    return i;
}

int json_member_text(const char *text, size_t len, const char *key, const char **val,
                     size_t *val_len)
{
    size_t i = skip_ws(text, 0, len);
    if (i >= len || text[i] != '{')
        return 0;
    i = skip_ws(text, i + 1, len);
    while (i < len && text[i] == '"') {
        int match;
        i = skip_ws(text, scan_string(text, i, len, key, &match), len);
        if (i >= len || text[i] != ':')
            return 0;
        size_t v = skip_ws(text, i + 1, len), end = skip_value(text, v, len);
        if (match) {
            *val = text + v;
            *val_len = end - v;
            return 1;
        }
        i = skip_ws(text, end, len);
        if (i >= len || text[i] != ',')
            return 0;
        i = skip_ws(text, i + 1, len);
    }
    return 0;
}

int json_int_mod64(const char *p, size_t n, uint64_t *out)
{
    int neg = n > 0 && p[0] == '-';
    size_t i = (size_t)neg;
    if (i == n)
        return ERR_INVALID;
    uint64_t v = 0;
    int over = 0;
    for (; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return ERR_INVALID;
        unsigned d = (unsigned)(p[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            over = 1;
        v = v * 10 + d;
    }
    if (over || (neg && v > (uint64_t)1 << 63))
        return ERR_RANGE;
    *out = neg ? (uint64_t)0 - v : v;
    return 0;
}
