/*
 * http.c - libmicrohttpd in external-event-loop mode under libuv.
 *
 * MHD runs with MHD_USE_EPOLL and no threads: its epoll descriptor is
 * watched by a uv_poll, and after every MHD_run the uv_timer is re-armed
 * with MHD's own timeout, so connection timeouts fire without polling.
 */
#include "http.h"

#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../engine/err.h"
#include "../engine/log.h"

struct http_server {
    uv_loop_t *loop;
    struct MHD_Daemon *mhd;
    uv_poll_t poll;
    uv_timer_t timer;
    http_opts_t opts;
};

/* Per-request state while the body arrives. */
typedef struct {
    char *body;
    size_t len, cap;
    int too_large;
} req_state_t;

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
    MHD_run(s->mhd);
    MHD_UNSIGNED_LONG_LONG ms;
    if (MHD_get_timeout(s->mhd, &ms) == MHD_YES)
        uv_timer_start(&s->timer, timer_cb, ms, 0);
    else
        uv_timer_stop(&s->timer);
}

/* ---------------------------------------------------------------- responses */

int http_respond(http_request_t *req, unsigned status, const char *content_type,
                 const char *body, size_t len)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
    if (r == NULL)
        return MHD_NO;
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
    int ret = MHD_queue_response(req->conn, status, r);
    MHD_destroy_response(r);
    return ret;
}

int http_respond_error(http_request_t *req, unsigned status, const char *type,
                       const char *param, const char *code, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);

    cJSON *root = cJSON_CreateObject();
    cJSON *e = cJSON_AddObjectToObject(root, "error");
    cJSON_AddStringToObject(e, "message", msg);
    cJSON_AddStringToObject(e, "type", type);
    if (param != NULL)
        cJSON_AddStringToObject(e, "param", param);
    else
        cJSON_AddNullToObject(e, "param");
    if (code != NULL)
        cJSON_AddStringToObject(e, "code", code);
    else
        cJSON_AddNullToObject(e, "code");
    char *text = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    if (text == NULL)
        return MHD_NO;
    int ret = http_respond(req, status, "application/json", text, strlen(text));
    cJSON_free(text);
    return ret;
}

/* ---------------------------------------------------------------- requests */

static enum MHD_Result access_cb(void *cls, struct MHD_Connection *conn, const char *url,
                                 const char *method, const char *version,
                                 const char *upload_data, size_t *upload_size, void **con_cls)
{
    http_server_t *s = cls;
    req_state_t *st = *con_cls;
    (void)version;

    if (st == NULL) {
        st = calloc(1, sizeof *st);
        if (st == NULL)
            return MHD_NO;
        *con_cls = st;
        return MHD_YES;
    }
    if (*upload_size != 0) {
        size_t n = *upload_size;
        *upload_size = 0;
        if (st->too_large || st->len + n > s->opts.max_body) {
            st->too_large = 1;
            return MHD_YES;
        }
        if (st->len + n + 1 > st->cap) {
            size_t cap = st->cap ? st->cap : 4096;
            while (cap < st->len + n + 1)
                cap *= 2;
            char *p = realloc(st->body, cap);
            if (p == NULL)
                return MHD_NO;
            st->body = p;
            st->cap = cap;
        }
        memcpy(st->body + st->len, upload_data, n);
        st->len += n;
        return MHD_YES;
    }

    http_request_t req = { conn, method, url, st->body ? st->body : "", st->len };
    if (st->body != NULL)
        st->body[st->len] = '\0';
    if (st->too_large)
        return (enum MHD_Result)http_respond_error(
            &req, MHD_HTTP_CONTENT_TOO_LARGE, "invalid_request_error", NULL, "body_too_large",
            "request body is larger than the limit of %llu bytes",
            (unsigned long long)s->opts.max_body);
    return (enum MHD_Result)s->opts.route(s->opts.route_ctx, &req);
}

static void completed_cb(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    (void)conn;
    (void)toe;
    req_state_t *st = *con_cls;
    if (st != NULL) {
        free(st->body);
        free(st);
        *con_cls = NULL;
    }
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
                              MHD_OPTION_CONNECTION_TIMEOUT, opts->conn_timeout_s,
                              MHD_OPTION_CONNECTION_LIMIT, opts->max_connections,
                              MHD_OPTION_EXTERNAL_LOGGER, mhd_log_cb, s,
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
    uv_poll_init(loop, &s->poll, info->epoll_fd);
    uv_timer_init(loop, &s->timer);
    s->poll.data = s;
    s->timer.data = s;
    uv_poll_start(&s->poll, UV_READABLE, poll_cb);
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
    MHD_stop_daemon(s->mhd);
    uv_close((uv_handle_t *)&s->poll, NULL);
    uv_close((uv_handle_t *)&s->timer, close_cb);
}
