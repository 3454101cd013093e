/*
 * cors.c - the allowed-origins check.
 */
#include "cors.h"

#include <string.h>

#include "strlist.h"

/* An Origin is "scheme://host[:port]"; anything longer than this is refused
   outright rather than compared. */
#define CORS_ORIGIN_MAX 512

const char *cors_allow_origin(const char *allowed, const char *origin)
{
    if (origin == NULL || allowed == NULL)
        return NULL;
    size_t n = strnlen(origin, CORS_ORIGIN_MAX + 1);
    if (n == 0 || n > CORS_ORIGIN_MAX)
        return NULL;
    if (strlist_has(allowed, "*", 1, 0))
        return "*";
    return strlist_has(allowed, origin, n, 1) ? origin : NULL;
}
