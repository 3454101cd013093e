/*
 * http.h - libmicrohttpd driven by the libuv loop, without threads of its own.
 *
 * Owns the MHD daemon, the uv_poll on its epoll descriptor and the
 * uv_timer for its timeouts.  It reads each request's body (up to
 * max_body bytes, else 413) and hands the complete request to the
 * route callback, which answers it with one of the http_respond_*
 * functions.  Loop thread only.
 */
#ifndef LLAMAD_HTTP_H
#define LLAMAD_HTTP_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct MHD_Connection;

typedef struct http_server http_server_t;

/* One request, borrowed by the route callback until it responds. */
typedef struct {
    struct MHD_Connection *conn;
    const char *method;
    const char *url;
    const char *body;     /* NUL-terminated; body_len excludes the NUL */
    size_t body_len;
} http_request_t;

/* Must answer with http_respond_*; returns what that returned. */
typedef int (*http_route_cb)(void *ctx, http_request_t *req);

typedef struct {
    const char *host;
    int port;
    uint64_t max_body;
    unsigned conn_timeout_s;
    unsigned max_connections;
    http_route_cb route;
    void *route_ctx;
} http_opts_t;

int http_create(http_server_t **out, uv_loop_t *loop, const http_opts_t *opts,
                char *err, size_t errlen);
/* Stop listening and close every connection; the handles close on the loop. */
void http_destroy(http_server_t *s);

/* Answer with a body; `content_type` is copied. Returns an MHD_Result. */
int http_respond(http_request_t *req, unsigned status, const char *content_type,
                 const char *body, size_t len);
/* An OpenAI-style error object: {"error": {"message", "type", "param", "code"}}. */
int http_respond_error(http_request_t *req, unsigned status, const char *type,
                       const char *param, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));

#endif
