/*
 * cors.c - the allowed-origins check.
 */
#include "cors.h"

#include <microhttpd.h>
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

void cors_add_headers(struct MHD_Response *r, const char *allow_origin,
                      const char *preflight_methods)
{
    if (allow_origin == NULL)
        return;
    MHD_add_response_header(r, "Access-Control-Allow-Origin", allow_origin);
    if (strcmp(allow_origin, "*") != 0)
        MHD_add_response_header(r, "Vary", "Origin");
    if (preflight_methods == NULL)
        return;
    MHD_add_response_header(r, "Access-Control-Allow-Methods", preflight_methods);
    MHD_add_response_header(r, "Access-Control-Allow-Headers", "Authorization, Content-Type");
    MHD_add_response_header(r, "Access-Control-Max-Age", "600");
}
