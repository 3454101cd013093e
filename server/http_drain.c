/*
 * http_drain.c - closing connections: the ones whose request is overdue,
 * and on a drain the listener and every idle keep-alive connection.
 * Loop thread only.
 */
#include "http.h"
#include "http_priv.h"

#include <microhttpd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/log.h"

unsigned http_sweep(http_server_t *s)
{
    if (s == NULL || (s->opts.request_timeout_s == 0 && !s->listener_closed))
        return 0;
    uint64_t now = clock_now_ns();
    /* draining: an idle connection is overdue at once */
    uint64_t limit = s->listener_closed ? 0 : (uint64_t)s->opts.request_timeout_s * 1000000000ull;
    unsigned cut = 0;
    for (http_conn_t *c = s->conns; c != NULL; c = c->next) {
        if (c->in_request || c->cut || now - c->waiting_since < limit)
            continue;
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(c->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        if (ci == NULL)
            continue;
        /* MHD sees the end of the stream on its next read and closes the connection */
        shutdown(ci->connect_fd, SHUT_RDWR);
        c->cut = 1;
        cut++;
    }
    if (cut > 0 && !s->listener_closed)
        log_debug("http: closed %u connection(s) that sent no whole request within %u s", cut,
                  s->opts.request_timeout_s);
    return cut;
}

void http_stop_listening(http_server_t *s)
{
    if (s == NULL || s->listener_closed)
        return;
    s->listener_closed = 1;
    MHD_socket fd = MHD_quiesce_daemon(s->mhd);
    if (fd != MHD_INVALID_SOCKET)
        close(fd);
    else
        log_warn("http: could not stop listening; new connections get 503 until the exit");
    unsigned idle = http_sweep(s);
    log_info("http: stopped listening; closed %u idle connection(s)", idle);
}
