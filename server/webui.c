/*
 * webui.c - the chat page's assets and the headers they go out with
 * (webui.h).  The bytes are web/assets.c's, generated from web/ by
 * scripts/embed-web.
 */
#include "webui.h"

#include <stddef.h>
#include <string.h>

extern const unsigned char web_chat_html[], web_chat_css[], web_chat_js[];
extern const size_t web_chat_html_len, web_chat_css_len, web_chat_js_len;

static const struct {
    const char *path;
    const char *type;
    const unsigned char *data;
    const size_t *len;
} assets[] = {
    { "/", "text/html; charset=utf-8", web_chat_html, &web_chat_html_len },
    { "/chat.css", "text/css; charset=utf-8", web_chat_css, &web_chat_css_len },
    { "/chat.js", "text/javascript; charset=utf-8", web_chat_js, &web_chat_js_len },
};
#define N_ASSETS (int)(sizeof assets / sizeof assets[0])

/* Name/value pairs, then NULL: the headers of every asset (http.h's extra_headers). */
static const char *const asset_headers[] = {
    "Content-Security-Policy", WEBUI_CSP,
    "X-Content-Type-Options", "nosniff",
    "X-Frame-Options", "DENY",
    "Referrer-Policy", "no-referrer",
    "Cache-Control", "no-cache",
    NULL,
};

int webui_find(const char *url)
{
    for (int i = 0; url != NULL && i < N_ASSETS; i++)
        if (strcmp(url, assets[i].path) == 0)
            return i;
    return -1;
}

int webui_enabled(const char *setting, int loopback)
{
    if (setting == NULL || strcmp(setting, "auto") == 0)
        return loopback;
    return strcmp(setting, "yes") == 0;
}

int webui_respond(http_request_t *req, int i)
{
    if (i < 0 || i >= N_ASSETS)
        return http_respond_error(req, 404, "invalid_request_error", NULL, "not_found",
                                  "no such page");
    req->extra_headers = asset_headers;
    return http_respond(req, 200, assets[i].type, (const char *)assets[i].data, *assets[i].len);
}
