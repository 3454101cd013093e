/*
 * http.h - libmicrohttpd driven by the libuv loop, without threads of its own.
 *
 * Owns the MHD daemon, the uv_poll on its epoll descriptor, the uv_timer
 * for its timeouts, and one http_request_t per request.  It reads each
 * request's framing when its headers are complete (400 and close on a
 * duplicate or conflicting Content-Length, Transfer-Encoding or Host, or a
 * transfer coding other than chunked: the request-smuggling surface), then
 * asks the admit callback whether the request may send its body (the route
 * layer checks route, key, method and type there and answers 401/404/...
 * at once: no body is read from a client that is not admitted), then
 * reads the body (up to the admitted limit, else 413: before the body when
 * Content-Length says so; for a chunked body, at its end, keeping none of
 * what passed the limit) and
 * hands the complete request to the route callback, which answers in one
 * of three ways:
 *   - at once, with http_respond / http_respond_error;
 *   - later: http_defer suspends the connection, and http_complete (or
 *     http_abort) queues the answer and resumes it;
 *   - as a stream: http_stream_start queues a response whose body comes
 *     from a reader callback; the reader suspends the connection when it
 *     has nothing yet (http_suspend) and the owner resumes it when more
 *     arrives (http_resume).
 * When MHD is done with a request (answered, timed out, client gone) the
 * completed callback runs once; the request is freed right after.
 * Loop thread only.
 */
#ifndef LLAMAD_HTTP_H
#define LLAMAD_HTTP_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <uv.h>

struct MHD_Connection;

typedef struct http_server http_server_t;
typedef struct http_request http_request_t;

/* The stream body reader: copy up to max bytes into buf; return the count,
 * 0 after calling http_suspend (nothing yet), HTTP_STREAM_END or HTTP_STREAM_ERROR. */
typedef ssize_t (*http_reader_cb)(void *ctx, char *buf, size_t max);
#define HTTP_STREAM_END ((ssize_t)-1)
#define HTTP_STREAM_ERROR ((ssize_t)-2) /* close the connection at once */

/* One request; borrowed by the route layer until the completed callback. */
struct http_request {
    http_server_t *srv;
    struct MHD_Connection *conn;
    const char *method;
    const char *url;        /* the path (an absolute-form target's path part) */
    const char *host;       /* the target's authority, else the Host header; may be NULL */
    char *body;             /* NUL-terminated once complete; body_len excludes the NUL */
    size_t body_len;
    unsigned status;        /* the status queued, 0 before */
    unsigned retry_after;   /* seconds; when non-zero the next response carries Retry-After */
    const char *allow;      /* when set (a static string), the next response carries Allow */
    const char *const *extra_headers; /* when set (static), name/value pairs ended by NULL
                                         that the next response carries */
    void *user;             /* the route layer's state for this request */
    int route_id;           /* the route layer's, set by its admit callback */
    uint8_t key_id[32];     /* the route layer's: the admitting API key's digest */
    uint64_t body_limit;    /* the admitted body size; opts.max_body unless admit lowers it */
    int close_after;        /* the response carries "Connection: close" and the connection ends */
    const char *cors_origin;  /* when set, responses carry Access-Control-Allow-Origin with it
                                 (and Vary: Origin unless "*"); borrowed until completed */
    const char *cors_methods; /* when set (a static string), the response is a CORS preflight
                                 answer: Access-Control-Allow-Methods with it, -Headers, -Max-Age */
    uint64_t start_ns;      /* CLOCK_MONOTONIC when the request arrived */
    /* private to http.c */
    size_t body_cap;
    char *method_copy, *url_copy, *host_copy;
    http_request_t *prev, *next;
    uint64_t resumed_ns;
    int too_large, routed, deferred, suspended, aborted;
    struct MHD_Response *pending;
    unsigned pending_status;
    http_reader_cb reader;
    void *reader_ctx;
};

/* Called once per request with its body; must answer as above.  Returns an MHD_Result. */
typedef int (*http_route_cb)(void *ctx, http_request_t *req);
/*
 * Called once per request when its headers are complete, before any of its
 * body is read: either answer at once (http_respond*, after which the body
 * is never read and the connection closes if one was coming) or leave the
 * request unanswered to admit it (it may lower req->body_limit).  Returns an
 * MHD_Result.
 */
typedef int (*http_admit_cb)(void *ctx, http_request_t *req);
/* Called once when MHD is done with req; ok: the response went out whole. */
typedef void (*http_completed_cb)(void *ctx, http_request_t *req, int ok);

typedef struct {
    const char *host;
    int port;
    uint64_t max_body;
    unsigned conn_timeout_s;    /* inactivity timeout */
    unsigned request_timeout_s; /* a whole request (headers and body) must arrive within this
                                   of the connection's start or its previous response; 0: none */
    unsigned max_connections;
    unsigned max_per_ip;        /* 0: unlimited */
    size_t conn_memory;         /* per-connection memory (bounds the headers) */
    http_admit_cb admit;        /* may be NULL: every request is admitted */
    http_route_cb route;
    http_completed_cb completed;
    void *ctx;
} http_opts_t;

/* Listen and start serving on `loop`.  On error *out is NULL and err says why. */
int http_create(http_server_t **out, uv_loop_t *loop, const http_opts_t *opts,
                char *err, size_t errlen);
/* Stop listening and close every connection; the handles close on the loop. */
void http_destroy(http_server_t *s);

/*
 * Close the connections whose request is overdue (request_timeout_s): a
 * client trickling a byte at a time keeps MHD's inactivity timeout from
 * firing, not this one; after http_stop_listening, every idle connection.
 * Call about once a second; returns how many it cut.
 */
unsigned http_sweep(http_server_t *s);

/*
 * Drain: stop listening (the socket is closed, so new connections are
 * refused and a proxy in front tries another replica before sending a
 * byte), close every idle keep-alive connection, and from now on close
 * each connection after its answer.  Requests in flight are served as
 * before.  Idempotent; NULL is a no-op.
 */
void http_stop_listening(http_server_t *s);

/*
 * Run MHD once now.  A safety net called once a second: MHD in external
 * epoll mode is edge-triggered, and a connection it has left ready
 * without a pending timeout would otherwise wait for its next socket event.
 */
void http_kick(http_server_t *s);

/* A request header's value, or NULL. */
const char *http_header(http_request_t *req, const char *name);
/*
 * Whether the connection is broken (reset: a non-consuming peek at the
 * socket fails).  A client that only shut down its sending side is not
 * gone: it may still be reading; a closed client shows when a write fails.
 */
int http_peer_closed(http_request_t *req);

/* Answer now (from the route callback only); content_type (NULL: none, for a
 * body-less 204) and body are copied. */
int http_respond(http_request_t *req, unsigned status, const char *content_type,
                 const char *body, size_t len);
/* An OpenAI-style error object: {"error": {"message", "type", "param", "code"}}. */
int http_respond_error(http_request_t *req, unsigned status, const char *type,
                       const char *param, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));

/* Answer later: suspend the connection (from the route callback; returns MHD_YES). */
int http_defer(http_request_t *req);
/* Queue a deferred request's answer and resume it.  Returns 0 or ERR_NOMEM. */
int http_complete(http_request_t *req, unsigned status, const char *content_type,
                  const char *body, size_t len);
int http_complete_error(http_request_t *req, unsigned status, const char *type,
                        const char *param, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));
/* Drop a deferred request without an answer (its client is gone): the connection closes. */
void http_abort(http_request_t *req);

/* Start a streamed answer (from the route callback).  Returns an MHD_Result. */
int http_stream_start(http_request_t *req, unsigned status, const char *content_type,
                      http_reader_cb reader, void *reader_ctx);
/* From the reader only: park the connection until http_resume. */
void http_suspend(http_request_t *req);
/* Wake a parked connection (no-op when it is not parked). */
void http_resume(http_request_t *req);

#endif
