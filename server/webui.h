/*
 * webui.h - the chat page: web/chat.html, web/chat.css and web/chat.js,
 * embedded in the binary at build time (scripts/embed-web), served on
 * GET / , /chat.css and /chat.js when the web-ui setting allows.
 *
 * The page talks only to its own origin: every asset goes out with a
 * Content-Security-Policy that allows scripts, styles and fetches from
 * 'self' only (no inline code, no other host), nosniff, no framing and no
 * Referer.  The assets need no API key (they hold no secret; the page asks
 * for the key and sends it on its API calls).  Loop thread only.
 */
#ifndef LLAMAD_WEBUI_H
#define LLAMAD_WEBUI_H

#include "http.h"

/* The Content-Security-Policy every asset carries (the tests compare against it). */
#define WEBUI_CSP                                                                    \
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; " \
    "img-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

/* The asset served at `url` (an index for webui_respond), or -1 when none is. */
int webui_find(const char *url);

/*
 * Whether the page is served under the web-ui setting ("yes", "no" or
 * "auto") for a daemon whose listen address is loopback or not: "auto"
 * serves it on loopback only.
 */
int webui_enabled(const char *setting, int loopback);

/* Answer req with asset `i` (from webui_find) and its headers.  Returns an MHD_Result. */
int webui_respond(http_request_t *req, int i);

#endif
