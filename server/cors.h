/*
 * cors.h - Cross-Origin Resource Sharing for browser clients: which
 * Origin a response may name in Access-Control-Allow-Origin, under the
 * allowed-origins setting (empty: CORS off, no headers at all).  Pure
 * functions; any thread.
 */
#ifndef LLAMAD_CORS_H
#define LLAMAD_CORS_H

/*
 * The Access-Control-Allow-Origin value for a request that sent `origin`
 * (its Origin header; NULL when absent), given `allowed` (the
 * comma-separated allowed-origins list): "*" when the list holds "*"; the
 * origin itself (borrowed from the caller) when the list holds it, ASCII
 * case folded; NULL when there is no origin, the list is empty or does
 * not hold it (the browser then refuses the response to the page).
 */
const char *cors_allow_origin(const char *allowed, const char *origin);

#endif
