/*
 * health.c - what /health says and what a refused client is told: loading
 * until the engine completes its first iteration, draining after SIGTERM,
 * stalled when the engine is busy and its heartbeat is older than
 * STALL_NS, failed when the backend has failed or the mapped model file
 * was written to (modelwatch.c); and Retry-After from the
 * queue's length.  Loop thread.
 */
#include "daemon.h"

#include <stdio.h>

#define STALL_NS        (10ull * 1000000000ull) /* busy with no heartbeat this long: stalled */

health_t daemon_health(daemon_t *d)
{
    if (d->draining)
        return HEALTH_DRAINING;
    if (d->engine == NULL)
        return HEALTH_LOADING;
    engine_health_t h;
    engine_health(d->engine, &h);
    if (h.failed || d->model_changed)
        return HEALTH_FAILED;
    if (h.iterations == 0)
        return HEALTH_LOADING;
    uint64_t now = engine_now_ns();
    if (h.busy && now > h.last_beat_ns && now - h.last_beat_ns > STALL_NS)
        return HEALTH_STALLED;
    return HEALTH_OK;
}

const char *daemon_health_name(health_t h)
{
    static const char *const names[] = { "ok", "loading", "draining", "stalled", "failed" };
    return names[h];
}

unsigned daemon_retry_after(daemon_t *d)
{
    if (d->engine == NULL)
        return 5;
    uint32_t seqs = d->info.max_seqs ? d->info.max_seqs : 1;
    unsigned s = 1 + d->stats.queued / seqs;
    return s > 60 ? 60 : s;
}

int health_respond(daemon_t *d, http_request_t *req, int live)
{
    health_t h = live ? HEALTH_OK : daemon_health(d);
    char body[160];
    int n;
    if (d->engine != NULL && !live)
        n = snprintf(body, sizeof body, "{\"status\":\"%s\",\"backend\":\"%s\"}",
                     daemon_health_name(h), d->info.backend);
    else
        n = snprintf(body, sizeof body, "{\"status\":\"%s\"}", daemon_health_name(h));
    if (h != HEALTH_OK)
        req->retry_after = daemon_retry_after(d);
    return http_respond(req, h == HEALTH_OK ? 200 : 503, "application/json", body, (size_t)n);
}
