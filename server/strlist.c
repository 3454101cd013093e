/*
 * strlist.c - comma-separated configuration lists.
 */
#include "strlist.h"

#include <string.h>
#include <strings.h>

#include "base/err.h"

int strlist_next(const char **p, const char **item, size_t *len)
{
    const char *s = *p;
    if (s == NULL)
        return 0;
    for (;;) {
        while (*s == ' ' || *s == ',')
            s++;
        if (*s == '\0') {
            *p = s;
            return 0;
        }
        const char *e = s;
        while (*e != '\0' && *e != ',')
            e++;
        const char *t = e;
        while (t > s && t[-1] == ' ')
            t--;
        *p = e;
        if (t > s) {
            *item = s;
            *len = (size_t)(t - s);
            return 1;
        }
        s = e;
    }
}

int strlist_has(const char *list, const char *s, size_t n, int nocase)
{
    const char *item;
    size_t len;
    if (n == 0)
        return 0;
    while (strlist_next(&list, &item, &len))
        if (len == n && (nocase ? strncasecmp(item, s, n) : memcmp(item, s, n)) == 0)
            return 1;
    return 0;
}

int strlist_first(const char *list, char *out, size_t cap)
{
    const char *item;
    size_t len;
    if (cap == 0)
        return ERR_TOOLONG;
    out[0] = '\0';
    if (!strlist_next(&list, &item, &len))
        return 0;
    if (len >= cap)
        return ERR_TOOLONG;
    memcpy(out, item, len);
    out[len] = '\0';
    return (int)len;
}
