/*
 * http.c - libmicrohttpd in external-event-loop mode under libuv.
 *
 * MHD runs with MHD_USE_EPOLL and no threads: its epoll descriptor is
 * watched by a uv_poll, and after every MHD_run the uv_timer is re-armed
 * with MHD's own timeout, so connection timeouts fire without polling.
 * A resumed connection needs one more MHD_run: http_resume arms the timer
 * at 0 ms.
 */
#include "http.h"
#include "http_priv.h"
#include "cors.h"
#include "framing.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>

#include "base/clock.h"
#include "base/err.h"
#include "base/log.h"

/* ---------------------------------------------------------------- loop glue */

static void run_mhd(http_server_t *s);

static void timer_cb(uv_timer_t *t)
{
    run_mhd(t->data);
}

static void poll_cb(uv_poll_t *p, int status, int events)
{
    (void)status;
    (void)events;
    run_mhd(p->data);
}

static void run_mhd(http_server_t *s)
{
    s->in_run = 1;
    MHD_run(s->mhd);
    s->in_run = 0;
    MHD_UNSIGNED_LONG_LONG ms;
    if (MHD_get_timeout(s->mhd, &ms) == MHD_YES)
        uv_timer_start(&s->timer, timer_cb, ms, 0);
    else
        uv_timer_stop(&s->timer);
}

/* ---------------------------------------------------------------- responses */

static struct MHD_Response *make_response(const http_request_t *req, const char *content_type,
                                          const char *body, size_t len)
{
    unsigned retry_after = req->retry_after;
    struct MHD_Response *r =
        MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
    if (r == NULL)
        return NULL;
    if (content_type != NULL)
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
    cors_add_headers(r, req->cors_origin, req->cors_methods);
    if (retry_after > 0) {
        char v[24];
        snprintf(v, sizeof v, "%u", retry_after);
        MHD_add_response_header(r, MHD_HTTP_HEADER_RETRY_AFTER, v);
    }
    if (req->allow != NULL)
        MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, req->allow);
    for (const char *const *h = req->extra_headers; h != NULL && h[0] != NULL && h[1] != NULL; h += 2)
        MHD_add_response_header(r, h[0], h[1]);
    if (req->close_after || req->srv->listener_closed)
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONNECTION, "close");
    return r;
}

int http_respond(http_request_t *req, unsigned status, const char *content_type,
                 const char *body, size_t len)
{
    struct MHD_Response *r = make_response(req, content_type, body, len);
    if (r == NULL)
        return MHD_NO;
    int ret = MHD_queue_response(req->conn, status, r);
    MHD_destroy_response(r);
    if (ret == MHD_YES)
        req->status = status;
    return ret;
}

/* The error object's JSON text (cJSON_free it), or NULL. */
static char *error_text(const char *type, const char *param, const char *code, const char *fmt,
                        va_list ap)
{
    char msg[1024];
    vsnprintf(msg, sizeof msg, fmt, ap);
    cJSON *root = cJSON_CreateObject();
    cJSON *e = cJSON_AddObjectToObject(root, "error");
    cJSON_AddStringToObject(e, "message", msg);
    cJSON_AddStringToObject(e, "type", type);
    if (param != NULL && *param != '\0')
        cJSON_AddStringToObject(e, "param", param);
    else
        cJSON_AddNullToObject(e, "param");
    if (code != NULL)
        cJSON_AddStringToObject(e, "code", code);
    else
        cJSON_AddNullToObject(e, "code");
    char *text = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    return text;
}

int http_respond_error(http_request_t *req, unsigned status, const char *type,
                       const char *param, const char *code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *text = error_text(type, param, code, fmt, ap);
    va_end(ap);
    if (text == NULL)
        return MHD_NO;
    int ret = http_respond(req, status, "application/json", text, strlen(text));
    cJSON_free(text);
    return ret;
}

void http_kick(http_server_t *s)
{
    if (s == NULL || s->in_run)
        return;
    /* a deferred answer MHD has not taken within 2 s of its resume: resume it again */
    uint64_t now = clock_now_ns();
    for (http_request_t *r = s->reqs; r != NULL; r = r->next) {
        if (r->pending != NULL && now - r->resumed_ns > 2000000000ull) {
            log_warn("http: %s %s: answer not taken 2 s after resuming; resuming again",
                     r->method, r->url);
            r->resumed_ns = now;
            MHD_resume_connection(r->conn);
        }
    }
    run_mhd(s);
}

static void wake(http_server_t *s)
{
    if (!s->in_run)
        uv_timer_start(&s->timer, timer_cb, 0, 0);
}

int http_defer(http_request_t *req)
{
    req->deferred = 1;
    req->suspended = 1;
    MHD_suspend_connection(req->conn);
    return MHD_YES;
}

int http_complete(http_request_t *req, unsigned status, const char *content_type,
                  const char *body, size_t len)
{
    struct MHD_Response *r = make_response(req, content_type, body, len);
    if (r == NULL) {
        http_abort(req);
        return ERR_NOMEM;
    }
    if (req->pending != NULL)
        MHD_destroy_response(req->pending);
    req->pending = r;
    req->pending_status = status;
    http_resume(req);
    return 0;
}

int http_complete_error(http_request_t *req, unsigned status, const char *type,
                        const char *param, const char *code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *text = error_text(type, param, code, fmt, ap);
    va_end(ap);
    if (text == NULL) {
        http_abort(req);
        return ERR_NOMEM;
    }
    int rc = http_complete(req, status, "application/json", text, strlen(text));
    cJSON_free(text);
    return rc;
}

void http_abort(http_request_t *req)
{
    req->aborted = 1;
    http_resume(req);
}

void http_suspend(http_request_t *req)
{
    if (!req->suspended) {
        req->suspended = 1;
        MHD_suspend_connection(req->conn);
    }
}

void http_resume(http_request_t *req)
{
    if (req->suspended) {
        req->suspended = 0;
        req->resumed_ns = clock_now_ns();
        MHD_resume_connection(req->conn);
        wake(req->srv);
    }
}

/* ---------------------------------------------------------------- streams */

static ssize_t stream_reader(void *cls, uint64_t pos, char *buf, size_t max)
{
    http_request_t *req = cls;
    (void)pos;
    if (req->aborted)
        return MHD_CONTENT_READER_END_WITH_ERROR;
    ssize_t n = req->reader(req->reader_ctx, buf, max);
    if (n == HTTP_STREAM_END)
        return MHD_CONTENT_READER_END_OF_STREAM;
    if (n == HTTP_STREAM_ERROR)
        return MHD_CONTENT_READER_END_WITH_ERROR;
    return n;
}

int http_stream_start(http_request_t *req, unsigned status, const char *content_type,
                      http_reader_cb reader, void *reader_ctx)
{
    req->reader = reader;
    req->reader_ctx = reader_ctx;
    struct MHD_Response *r =
        MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, stream_reader, req, NULL);
    if (r == NULL)
        return MHD_NO;
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
    MHD_add_response_header(r, "X-Accel-Buffering", "no");
    if (req->srv->listener_closed)
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONNECTION, "close");
    cors_add_headers(r, req->cors_origin, req->cors_methods);
    int ret = MHD_queue_response(req->conn, status, r);
    MHD_destroy_response(r);
    if (ret == MHD_YES)
        req->status = status;
    return ret;
}

/* ---------------------------------------------------------------- requests */

const char *http_header(http_request_t *req, const char *name)
{
    return MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, name);
}

int http_peer_closed(http_request_t *req)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(req->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (ci == NULL)
        return 0;
    /* end of input (n == 0) is not a disconnect: a client may shut down its
       sending side and still read the answer (RFC 9112 9.6); a broken
       connection shows as an error here, a closed one when a write fails */
    char c;
    ssize_t n = recv(ci->connect_fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
    return n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR;
}

static http_conn_t *conn_of(struct MHD_Connection *conn)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return ci != NULL ? ci->socket_context : NULL;
}

/* The whole request is in (or answered early): the request timeout stops. */
static void request_arrived(struct MHD_Connection *conn)
{
    http_conn_t *c = conn_of(conn);
    if (c != NULL)
        c->in_request = 1;
}

static void notify_conn_cb(void *cls, struct MHD_Connection *conn, void **socket_context,
                           enum MHD_ConnectionNotificationCode toe)
{
    http_server_t *s = cls;
    http_conn_t *c = *socket_context;
    if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
        if ((c = calloc(1, sizeof *c)) == NULL)
            return;   /* untracked: only the inactivity timeout applies to it */
        c->conn = conn;
        c->waiting_since = clock_now_ns();
        c->next = s->conns;
        if (s->conns != NULL)
            s->conns->prev = c;
        s->conns = c;
        *socket_context = c;
    } else if (c != NULL) {
        if (c->prev != NULL)
            c->prev->next = c->next;
        else
            s->conns = c->next;
        if (c->next != NULL)
            c->next->prev = c->prev;
        free(c);
        *socket_context = NULL;
    }
}

/* ---------------------------------------------------------------- framing */

static int respond_too_large(http_request_t *req)
{
    req->close_after = 1;
    if (req->body_limit == 0)
        return http_respond_error(req, MHD_HTTP_CONTENT_TOO_LARGE, "invalid_request_error", NULL,
                                  "body_too_large", "%s %s takes no request body", req->method,
                                  req->url);
    return http_respond_error(req, MHD_HTTP_CONTENT_TOO_LARGE, "invalid_request_error", NULL,
                              "body_too_large", "request body is larger than the limit of %llu bytes",
                              (unsigned long long)req->body_limit);
}

/*
 * The headers are complete: check the framing, ask the route layer, and
 * refuse a declared body over the limit, each before a byte of the body is
 * read.  Returns an MHD_Result; req->routed is set when it answered.
 */
static int on_headers(http_server_t *s, http_request_t *req)
{
    uint64_t declared;
    const char *why = http_framing_check(req->conn, &declared);
    if (why != NULL) {
        req->routed = 1;
        req->close_after = 1;
        request_arrived(req->conn);
        return http_respond_error(req, MHD_HTTP_BAD_REQUEST, "invalid_request_error", NULL,
                                  "bad_framing", "the request has %s", why);
    }
    req->body_limit = s->opts.max_body;
    if (s->opts.admit != NULL) {
        /* an answer before a body that is on its way ends the connection:
           the body is never read, so nothing after it can be trusted */
        req->close_after = (declared != UINT64_MAX && declared > 0) ||
                           http_header(req, MHD_HTTP_HEADER_TRANSFER_ENCODING) != NULL;
        int ret = s->opts.admit(s->opts.ctx, req);
        if (ret != MHD_YES || req->status != 0) {
            req->routed = 1;
            request_arrived(req->conn);
            return ret;
        }
        req->close_after = 0;
    }
    if (declared != UINT64_MAX && declared > req->body_limit) {
        req->routed = 1;
        request_arrived(req->conn);
        return respond_too_large(req);
    }
    return MHD_YES;
}

/*
 * An absolute-form target ("POST http://host:port/v1/completions", what a
 * client sends to a proxy): RFC 9112 3.2.2 has the server serve its path
 * and take the host from it, not from the Host header.  The path replaces
 * the URL in url_copy; the authority goes to host_copy.  Returns 0 or
 * ERR_NOMEM.
 */
static int take_absolute_form(http_request_t *req)
{
    char *u = req->url_copy;
    size_t skip = strncasecmp(u, "http://", 7) == 0 ? 7 : strncasecmp(u, "https://", 8) == 0 ? 8 : 0;
    if (skip == 0)
        return 0;
    char *authority = u + skip;
    size_t alen = strcspn(authority, "/");
    if ((req->host_copy = strndup(authority, alen)) == NULL)
        return ERR_NOMEM;
    char *path = authority + alen;
    if (*path == '\0')
        strcpy(u, "/");   /* u holds at least "http://" */
    else
        memmove(u, path, strlen(path) + 1);
    return 0;
}

static enum MHD_Result access_cb(void *cls, struct MHD_Connection *conn, const char *url,
                                 const char *method, const char *version,
                                 const char *upload_data, size_t *upload_size, void **con_cls)
{
    http_server_t *s = cls;
    http_request_t *req = *con_cls;
    (void)version;

    if (req == NULL) {
        req = calloc(1, sizeof *req);
        if (req == NULL)
            return MHD_NO;
        req->srv = s;
        req->conn = conn;
        /* copies: MHD's own strings live in its connection pool, which the
           completed callback may outlive */
        req->method_copy = strdup(method);
        req->url_copy = strdup(url);
        if (req->method_copy == NULL || req->url_copy == NULL) {
            free(req->method_copy);
            free(req->url_copy);
            free(req);
            return MHD_NO;
        }
        req->method = req->method_copy;
        req->url = req->url_copy;
        const char *host = http_header(req, MHD_HTTP_HEADER_HOST);
        if (take_absolute_form(req) != 0 ||
            (req->host_copy == NULL && host != NULL && (req->host_copy = strdup(host)) == NULL)) {
            free(req->method_copy);
            free(req->url_copy);
            free(req);
            return MHD_NO;
        }
        req->host = req->host_copy;
        req->next = s->reqs;
        if (s->reqs != NULL)
            s->reqs->prev = req;
        s->reqs = req;
        req->start_ns = clock_now_ns();
        *con_cls = req;
        return (enum MHD_Result)on_headers(s, req);
    }
    if (req->routed) {
        /* re-entered after a resume: queue the deferred answer, or close */
        if (req->pending != NULL) {
            int ret = MHD_queue_response(conn, req->pending_status, req->pending);
            MHD_destroy_response(req->pending);
            req->pending = NULL;
            if (ret == MHD_YES)
                req->status = req->pending_status;
            return (enum MHD_Result)ret;
        }
        if (req->aborted || !req->deferred)
            return req->aborted ? MHD_NO : MHD_YES;
        req->suspended = 1;
        MHD_suspend_connection(conn);
        return MHD_YES;
    }
    if (*upload_size != 0) {
        size_t n = *upload_size;
        *upload_size = 0;
        if (req->too_large || req->body_len + n > req->body_limit) {
            /* MHD takes no answer in the middle of a body: drop the rest as it
               comes (nothing more is buffered) and answer 413 at its end; a body
               that never ends is cut by request_timeout_s */
            req->too_large = 1;
            return MHD_YES;
        }
        if (req->body_len + n + 1 > req->body_cap) {
            size_t cap = req->body_cap ? req->body_cap : 4096;
            while (cap < req->body_len + n + 1)
                cap *= 2;
            char *p = realloc(req->body, cap);
            if (p == NULL)
                return MHD_NO;
            req->body = p;
            req->body_cap = cap;
        }
        memcpy(req->body + req->body_len, upload_data, n);
        req->body_len += n;
        return MHD_YES;
    }

    req->routed = 1;
    request_arrived(conn);
    if (req->body == NULL) {
        req->body = malloc(1);
        if (req->body == NULL)
            return MHD_NO;
    }
    req->body[req->body_len] = '\0';
    if (req->too_large)
        return (enum MHD_Result)respond_too_large(req);
    return (enum MHD_Result)s->opts.route(s->opts.ctx, req);
}

static void completed_cb(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    http_server_t *s = cls;
    http_conn_t *c = conn_of(conn);
    if (c != NULL) {
        c->in_request = 0;
        c->waiting_since = clock_now_ns();
    }
    http_request_t *req = *con_cls;
    if (req == NULL)
        return;
    *con_cls = NULL;
    if (req->prev != NULL)
        req->prev->next = req->next;
    else
        s->reqs = req->next;
    if (req->next != NULL)
        req->next->prev = req->prev;
    if (s->opts.completed != NULL)
        s->opts.completed(s->opts.ctx, req, toe == MHD_REQUEST_TERMINATED_COMPLETED_OK);
    if (req->pending != NULL)
        MHD_destroy_response(req->pending);
    free(req->body);
    free(req->method_copy);
    free(req->url_copy);
    free(req->host_copy);
    free(req);
}

static void mhd_log_cb(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t n = strlen(msg);
    while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
        msg[--n] = '\0';
    log_debug("http: %s", msg);
}

/* ---------------------------------------------------------------- lifecycle */

static void close_cb(uv_handle_t *h);

int http_create(http_server_t **out, uv_loop_t *loop, const http_opts_t *opts,
                char *err, size_t errlen)
{
    *out = NULL;
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    unsigned flags = MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
    struct sockaddr_in *a4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, opts->host, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)opts->port);
    } else if (inet_pton(AF_INET6, opts->host, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)opts->port);
        flags |= MHD_USE_IPv6;
    } else {
        return err_set(err, errlen, ERR_INVALID,
                       "host: \"%s\" is not a numeric IPv4 or IPv6 address", opts->host);
    }

    http_server_t *s = calloc(1, sizeof *s);
    if (s == NULL)
        return err_set(err, errlen, ERR_NOMEM, "out of memory");
    s->loop = loop;
    s->opts = *opts;

    s->mhd = MHD_start_daemon(flags, (uint16_t)opts->port, NULL, NULL, access_cb, s,
                              MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
                              MHD_OPTION_NOTIFY_COMPLETED, completed_cb, s,
                              MHD_OPTION_NOTIFY_CONNECTION, notify_conn_cb, s,
                              MHD_OPTION_CONNECTION_TIMEOUT, opts->conn_timeout_s,
                              MHD_OPTION_CONNECTION_LIMIT, opts->max_connections,
                              MHD_OPTION_PER_IP_CONNECTION_LIMIT, opts->max_per_ip,
                              MHD_OPTION_CONNECTION_MEMORY_LIMIT, opts->conn_memory,
                              MHD_OPTION_EXTERNAL_LOGGER, mhd_log_cb, s,
                              /* HTTP/1.1 without Host, spaces in the target: 400 */
                              MHD_OPTION_STRICT_FOR_CLIENT, (int)1,
                              MHD_OPTION_END);
    if (s->mhd == NULL) {
        free(s);
        return err_set(err, errlen, ERR_IO, "cannot listen on %s port %d (in use, or not permitted)",
                       opts->host, opts->port);
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(s->mhd, MHD_DAEMON_INFO_EPOLL_FD);
    if (info == NULL) {
        MHD_stop_daemon(s->mhd);
        free(s);
        return err_set(err, errlen, ERR_UNSUPPORTED, "libmicrohttpd was built without epoll");
    }
    int rc = uv_poll_init(loop, &s->poll, info->epoll_fd);
    if (rc != 0) {
        MHD_stop_daemon(s->mhd);
        free(s);
        return err_set(err, errlen, ERR_IO, "cannot watch the HTTP server's descriptor: %s",
                       uv_strerror(rc));
    }
    uv_timer_init(loop, &s->timer);
    s->poll.data = s;
    s->timer.data = s;
    if ((rc = uv_poll_start(&s->poll, UV_READABLE, poll_cb)) != 0) {
        /* both handles are live: they close (and s is freed) when the loop runs */
        MHD_stop_daemon(s->mhd);
        uv_close((uv_handle_t *)&s->poll, NULL);
        uv_close((uv_handle_t *)&s->timer, close_cb);
        return err_set(err, errlen, ERR_IO, "cannot watch the HTTP server's descriptor: %s",
                       uv_strerror(rc));
    }
    run_mhd(s);
    *out = s;
    return 0;
}

static void close_cb(uv_handle_t *h)
{
    http_server_t *s = h->data;
    if (h == (uv_handle_t *)&s->timer)
        free(s);
}

void http_destroy(http_server_t *s)
{
    if (s == NULL)
        return;
    uv_poll_stop(&s->poll);
    uv_timer_stop(&s->timer);
    /* MHD refuses to stop with suspended connections: wake them to close */
    int parked = 0;
    for (http_request_t *r = s->reqs; r != NULL; r = r->next) {
        if (r->suspended) {
            r->aborted = 1;
            http_resume(r);
            parked++;
        }
    }
    for (int i = 0; i < 4 && parked > 0; i++)
        MHD_run(s->mhd);
    int stuck = 0;
    for (http_request_t *r = s->reqs; r != NULL; r = r->next)
        stuck += r->aborted;
    if (stuck > 0) {
        /* MHD still holds them parked; stopping it now would abort the process */
        log_warn("http: %d connection(s) did not close; leaving them to the exit", stuck);
    } else {
        MHD_stop_daemon(s->mhd);
    }
    uv_close((uv_handle_t *)&s->poll, NULL);
    uv_close((uv_handle_t *)&s->timer, close_cb);
}
