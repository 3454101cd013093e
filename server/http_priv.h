/*
 * http_priv.h - the HTTP server's private state, shared by http.c (requests
 * and responses) and http_drain.c (closing connections).  Nothing outside
 * those two files includes it.  Loop thread only, like all of http.h.
 */
#ifndef LLAMAD_HTTP_PRIV_H
#define LLAMAD_HTTP_PRIV_H

#include "http.h"

#include <microhttpd.h>
#include <stdint.h>
#include <uv.h>

/* One client connection, accept to close (MHD's socket context). */
typedef struct http_conn {
    struct http_conn *prev, *next;
    struct MHD_Connection *conn;
    uint64_t waiting_since;     /* accepted, or its last response done: a request is due */
    int in_request;             /* a whole request has arrived and is not completed yet */
    int cut;                    /* shut down for being too slow */
} http_conn_t;

struct http_server {
    uv_loop_t *loop;
    struct MHD_Daemon *mhd;
    uv_poll_t poll;
    uv_timer_t timer;
    http_opts_t opts;
    int in_run;
    http_request_t *reqs;       /* every request MHD has not completed yet */
    http_conn_t *conns;         /* every open connection */
    int listener_closed;        /* http_stop_listening ran: refuse new connections, close after each answer */
};

#endif
