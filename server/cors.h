/*
 * cors.h - Cross-Origin Resource Sharing for browser clients: which
 * Origin a response may name in Access-Control-Allow-Origin, under the
 * allowed-origins setting (empty: CORS off, no headers at all).  Pure
 * functions; any thread.
 */
#ifndef LLAMAD_CORS_H
#define LLAMAD_CORS_H

struct MHD_Response;

/*
 * The Access-Control-Allow-Origin value for a request that sent `origin`
 * (its Origin header; NULL when absent), given `allowed` (the
 * comma-separated allowed-origins list): "*" when the list holds "*"; the
 * origin itself (borrowed from the caller) when the list holds it, ASCII
 * case folded; NULL when there is no origin, the list is empty or does
 * not hold it (the browser then refuses the response to the page).
 */
const char *cors_allow_origin(const char *allowed, const char *origin);

/*
 * Add the CORS headers to a response: nothing when allow_origin is NULL;
 * else Access-Control-Allow-Origin (and Vary: Origin unless it is "*"),
 * and for a preflight answer (preflight_methods set)
 * Access-Control-Allow-Methods with them, -Allow-Headers (Authorization,
 * Content-Type) and -Max-Age.  Loop thread (the response's owner).
 */
void cors_add_headers(struct MHD_Response *r, const char *allow_origin,
                      const char *preflight_methods);

#endif
