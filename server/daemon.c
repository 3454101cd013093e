/*
 * daemon.c - the daemon's lifecycle and its glue to the engine.
 *
 * Start-up: listen first, then load the model on a thread of our own so
 * that /health answers 503 "loading" meanwhile.  (A plain pthread rather
 * than uv_queue_work: libuv joins its pool's threads at exit, so SIGTERM
 * during a long load could not exit promptly.)  The engine's notify
 * callback is uv_async_send, which coalesces: on_engine_events drains the
 * whole event queue each time.  SIGTERM drains: new requests get 503,
 * running ones may finish until drain-timeout, then they are cancelled.
 */
#include "daemon.h"

#include <arpa/inet.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "base/log.h"
#include "sdnotify.h"

#define STALL_NS        (10ull * 1000000000ull) /* busy with no heartbeat this long: stalled */
#define HARD_EXTRA_NS   (5ull * 1000000000ull)  /* after the drain deadline, stop regardless */
#define EXTEND_EVERY_NS (5ull * 1000000000ull)
#define HEADER_MEMORY   (16u * 1024u)           /* per-connection memory: headers well under it */

/* ---------------------------------------------------------------- health */

health_t daemon_health(daemon_t *d)
{
    if (d->draining)
        return HEALTH_DRAINING;
    if (d->engine == NULL)
        return HEALTH_LOADING;
    engine_health_t h;
    engine_health(d->engine, &h);
    if (h.failed)
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

/* ---------------------------------------------------------------- jobs */

job_t *job_create(daemon_t *d, http_request_t *http, const char *route)
{
    job_t *j = calloc(1, sizeof *j);
    if (j == NULL)
        return NULL;
    j->d = d;
    j->http = http;
    j->route = route;
    j->engine_done = 1; /* until submitted */
    j->t_arrive = http->start_ns;
    tok_text_init(&j->text);
    tok_text_init(&j->out);
    j->next = d->jobs;
    if (d->jobs != NULL)
        d->jobs->prev = j;
    d->jobs = j;
    d->n_jobs++;
    return j;
}

void job_release(job_t *j)
{
    if (j->http != NULL || !j->engine_done)
        return;
    daemon_t *d = j->d;
    if (j->prev != NULL)
        j->prev->next = j->next;
    else
        d->jobs = j->next;
    if (j->next != NULL)
        j->next->prev = j->prev;
    d->n_jobs--;
    api_request_free(&j->req);
    tok_text_close(&j->text);
    tok_text_close(&j->out);
    for (size_t i = 0; i < j->n_events; i++)
        free(j->events[i]);
    free(j->events);
    free(j);
}

void job_client_gone(job_t *j)
{
    if (!j->submitted || j->engine_done || j->gone)
        return;
    j->gone = 1;
    const char *phase = j->n_generated > 0 ? "decode" : j->likely_queued ? "queued" : "prefill";
    metrics_cancelled(j->d->metrics, phase);
    engine_cancel(j->d->engine, j->engine_id);
}

static job_t *job_find(daemon_t *d, uint64_t id)
{
    for (job_t *j = d->jobs; j != NULL; j = j->next)
        if (j->submitted && j->engine_id == id)
            return j;
    return NULL;
}

/* ---------------------------------------------------------------- engine events */

static void on_engine_events(uv_async_t *a)
{
    daemon_t *d = a->data;
    if (d->engine == NULL)
        return;
    while (engine_poll(d->engine, &d->ev)) {
        const engine_event_t *ev = &d->ev;
        job_t *j = job_find(d, ev->id);
        if (j == NULL)
            continue;
        uint64_t now = clock_now_ns();
        if (ev->kind == ENGINE_EV_TOKEN) {
            if (j->n_generated == 0) {
                j->t_first = now;
                j->t_first_posted = ev->posted_ns;
                metrics_observe(d->metrics, METRIC_TTFT, (now - j->t_arrive) / 1e9);
            } else {
                metrics_observe(d->metrics, METRIC_ITL, (now - j->t_last) / 1e9);
            }
            j->t_last = now;
            j->n_generated++;
        } else {
            j->finish = ev->finish;
            j->prompt_tokens = ev->prompt_tokens;
            j->completion_tokens = ev->completion_tokens;
            j->cached_tokens = ev->cached_tokens;
            if (ev->finish == ENGINE_FINISH_STOP || ev->finish == ENGINE_FINISH_LENGTH)
                metrics_usage(d->metrics, ev->prompt_tokens, ev->completion_tokens,
                              ev->cached_tokens);
        }
        if (j->http != NULL && !j->gone) {
            if (j->stream)
                stream_on_event(j, ev);
            else
                routes_on_event(j, ev);
        }
        if (ev->kind == ENGINE_EV_FINISH) {
            j->engine_done = 1;
            job_release(j);
        }
    }
    engine_get_stats(d->engine, &d->stats);
    metrics_engine_sample(d->metrics, &d->stats);
}

static void engine_notify(void *ctx)
{
    uv_async_send(ctx);
}

/* ---------------------------------------------------------------- loading */

static void *load_main(void *arg)
{
    daemon_t *d = arg;
    const config_t *cfg = d->cfg;
    engine_opts_t eo = {
        .model_path = cfg->model, .chat_template = cfg->chat_template, .backend = cfg->backend,
        .threads = (int)cfg->threads, .kv_bytes = cfg->kv_memory,
        .gpu_memory_fraction = cfg->gpu_memory_fraction,
        .max_batch_tokens = (uint32_t)cfg->max_batch_tokens,
        .max_step_ms = (uint32_t)cfg->max_step_time,
        .max_seqs = (uint32_t)cfg->max_seqs, .max_queue = (uint32_t)cfg->max_queue,
        .no_prefix_cache = !cfg->prefix_cache,
        .cuda_graphs = strcmp(cfg->cuda_graphs, "on") == 0    ? 1
                     : strcmp(cfg->cuda_graphs, "off") == 0   ? -1 : 0,
        .fp16_weights = strcmp(cfg->gpu_weight_type, "fp16") == 0,
        .notify = engine_notify, .notify_ctx = &d->engine_async,
    };
    d->load_rc = engine_create(&d->load_engine, &eo, d->load_err, sizeof d->load_err);
    uv_async_send(&d->load_async);
    return NULL;
}

static void shut_down(daemon_t *d);

static void on_tick(uv_timer_t *t);

/* READY=1 once the engine has completed an iteration, when /health turns 200. */
static void maybe_ready(daemon_t *d)
{
    if (d->ready_sent || daemon_health(d) != HEALTH_OK)
        return;
    d->ready_sent = 1;
    uv_timer_start(&d->tick, on_tick, 1000, 1000); /* back to the slow pace */
    sd_notify_state("READY=1\nSTATUS=serving");
    log_info("ready");
}

static void on_loaded(uv_async_t *a)
{
    daemon_t *d = a->data;
    if (d->engine != NULL || !d->load_started)
        return;
    pthread_join(d->load_thread, NULL);
    d->load_started = 0;
    if (d->load_rc != 0) {
        log_error("%s", d->load_err);
        d->exit_code = 1;
        shut_down(d);
        return;
    }
    d->engine = d->load_engine;
    engine_get_info(d->engine, &d->info);
    engine_get_stats(d->engine, &d->stats);
    char desc[512];
    engine_describe(d->engine, desc, sizeof desc);
    log_info("%s", desc);
    log_info("model %s loaded in %.1f s: backend %s, context %u tokens, KV cache %u blocks of %u "
             "tokens, chat template %s", d->info.model_name,
             (clock_now_ns() - d->load_start_ns) / 1e9, d->info.backend, d->info.n_ctx,
             d->info.kv_blocks, d->info.block_tokens,
             d->info.chat ? chat_kind_name(d->info.chat->kind) : "none (chat disabled)");
    if (d->info.chat == NULL)
        log_warn("the model's chat template is not one llamad knows (ChatML, LLaMA-2, LLaMA-3): "
                 "/v1/chat/completions will answer 400; set chat-template to a built-in name or a "
                 "template file");
    if (d->draining) {
        shut_down(d);
        return;
    }
    /* until the engine's first iteration, look every 100 ms */
    uv_timer_start(&d->tick, on_tick, 100, 100);
    maybe_ready(d);
}

/* ---------------------------------------------------------------- drain and shutdown */

static void close_handle(uv_handle_t *h)
{
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

static void shut_down(daemon_t *d)
{
    if (d->shut_down)
        return;
    d->shut_down = 1;
    http_destroy(d->http);
    d->http = NULL;
    if (d->engine != NULL) {
        engine_destroy(d->engine);
        d->engine = NULL;
    }
    while (d->jobs != NULL) {
        job_t *j = d->jobs;
        j->http = NULL;
        j->engine_done = 1;
        job_release(j);
    }
    uv_signal_stop(&d->sig_term);
    uv_signal_stop(&d->sig_int);
    uv_signal_stop(&d->sig_hup);
    close_handle((uv_handle_t *)&d->sig_term);
    close_handle((uv_handle_t *)&d->sig_int);
    close_handle((uv_handle_t *)&d->sig_hup);
    close_handle((uv_handle_t *)&d->engine_async);
    close_handle((uv_handle_t *)&d->load_async);
    close_handle((uv_handle_t *)&d->tick);
    close_handle((uv_handle_t *)&d->watchdog);
}

static void check_drain(daemon_t *d, uint64_t now)
{
    if (!d->draining || d->shut_down)
        return;
    if (d->n_jobs == 0) {
        log_info("drained: stopping");
        shut_down(d);
        return;
    }
    if (!d->drain_cancelled && now >= d->drain_deadline_ns) {
        log_warn("drain timeout: cancelling %zu request(s)", d->n_jobs);
        d->drain_cancelled = 1;
        for (job_t *j = d->jobs; j != NULL; j = j->next)
            if (j->submitted && !j->engine_done)
                engine_cancel(d->engine, j->engine_id);
    }
    if (now >= d->drain_deadline_ns + HARD_EXTRA_NS) {
        log_warn("%zu request(s) still open after the drain: closing them", d->n_jobs);
        shut_down(d);
    }
}

static void on_signal(uv_signal_t *h, int signum)
{
    daemon_t *d = h->data;
    char err[ERR_MSG_MAX];
    if (signum == SIGHUP) {
        if (log_open(d->cfg->log_file) != 0)
            log_error("cannot reopen log file %s", d->cfg->log_file);
        if (auth_reload(d->auth, err, sizeof err) != 0)
            log_error("SIGHUP: %s; the previous %zu API key(s) stay in force", err,
                      auth_count(d->auth));
        else
            log_info("SIGHUP: log reopened, %zu API key(s) in force", auth_count(d->auth));
        return;
    }
    if (d->draining) {
        log_info("second %s: stopping now", signum == SIGTERM ? "SIGTERM" : "SIGINT");
        shut_down(d);
        return;
    }
    d->draining = 1;
    sd_notify_state("STOPPING=1");
    if (d->engine == NULL) {
        /* engine_create cannot be interrupted: leave the loading thread behind */
        log_info("received %s while loading: exiting", signum == SIGTERM ? "SIGTERM" : "SIGINT");
        if (d->load_started)
            pthread_detach(d->load_thread);
        d->load_started = 0;
        uv_stop(&d->loop);
        return;
    }
    d->drain_deadline_ns = clock_now_ns() + (uint64_t)d->cfg->drain_timeout * 1000000000ull;
    log_info("received %s: draining %zu request(s) for up to %llds",
             signum == SIGTERM ? "SIGTERM" : "SIGINT", d->n_jobs, d->cfg->drain_timeout);
    check_drain(d, clock_now_ns());
}

/*
 * A failed engine (a sticky device error) does not come back: every request
 * it held has been answered with an error; let those answers go out, then
 * exit 1 so that the service manager starts a fresh process.
 */
static void fail_if_engine_failed(daemon_t *d, uint64_t now)
{
    if (d->draining || daemon_health(d) != HEALTH_FAILED)
        return;
    log_error("the engine has failed: exiting with status 1 so that the service manager "
              "restarts llamad");
    sd_notify_state("STOPPING=1\nSTATUS=engine failed");
    d->exit_code = 1;
    d->draining = 1;
    d->drain_deadline_ns = now;
}

/* ---------------------------------------------------------------- timers */

static void on_tick(uv_timer_t *t)
{
    daemon_t *d = t->data;
    uint64_t now = clock_now_ns();
    if (d->engine == NULL && d->load_started && now - d->last_extend_ns >= EXTEND_EVERY_NS) {
        sd_notify_state("EXTEND_TIMEOUT_USEC=20000000");
        d->last_extend_ns = now;
    }
    for (job_t *j = d->jobs, *next; j != NULL; j = next) {
        next = j->next;
        if (j->http == NULL || j->engine_done)
            continue;
        if (j->stream) {
            stream_tick(j, now);
        } else if (http_peer_closed(j->http)) {
            /* a deferred (suspended) request: MHD would not notice the close itself */
            job_client_gone(j);
            http_abort(j->http);
        }
    }
    if (d->engine != NULL) {
        engine_get_stats(d->engine, &d->stats);
        metrics_engine_sample(d->metrics, &d->stats);
        maybe_ready(d);
        fail_if_engine_failed(d, now);
    }
    check_drain(d, now);
    if (!d->shut_down) {
        http_sweep(d->http);
        http_kick(d->http);
    }
}

static void on_watchdog(uv_timer_t *t)
{
    daemon_t *d = t->data;
    health_t h = daemon_health(d);
    if (h == HEALTH_OK || h == HEALTH_LOADING || h == HEALTH_DRAINING)
        sd_notify_state("WATCHDOG=1");
    else
        log_warn("engine %s: withholding the watchdog ping", daemon_health_name(h));
}

/* ---------------------------------------------------------------- run */

static int is_loopback(const char *host)
{
    unsigned char a[16];
    if (strcasecmp(host, "localhost") == 0)
        return 1;
    if (inet_pton(AF_INET, host, a) == 1)
        return a[0] == 127;
    if (inet_pton(AF_INET6, host, a) == 1) {
        static const unsigned char one[16] = { [15] = 1 };
        return memcmp(a, one, 16) == 0;
    }
    return 0;
}

int daemon_run(const config_t *cfg, int *abandoned)
{
    *abandoned = 0;
    char err[ERR_MSG_MAX];
    daemon_t *d = calloc(1, sizeof *d);
    if (d == NULL) {
        log_error("out of memory");
        return 1;
    }
    d->cfg = cfg;
    if (auth_create(&d->auth, cfg->api_key, cfg->api_key_file, err, sizeof err) != 0) {
        log_error("%s", err);
        free(d);
        return 2;   /* a configuration error, as for the options */
    }
    if (auth_count(d->auth) == 0 && !is_loopback(cfg->host) && !cfg->insecure_no_auth) {
        log_error("refusing to listen on %s, beyond loopback, without an API key: set api-key or "
                  "api-key-file (or insecure-no-auth = yes to serve anyone who can reach the port)",
                  cfg->host);
        auth_destroy(d->auth);
        free(d);
        return 1;
    }
    if (metrics_create(&d->metrics) != 0) {
        log_error("out of memory");
        auth_destroy(d->auth);
        free(d);
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);
    uv_loop_init(&d->loop);
    http_opts_t ho = {
        .host = cfg->host, .port = (int)cfg->port, .max_body = cfg->max_body,
        .conn_timeout_s = (unsigned)cfg->idle_timeout,
        .request_timeout_s = (unsigned)cfg->request_timeout,
        .max_connections = (unsigned)cfg->max_connections,
        .max_per_ip = (unsigned)cfg->max_connections_per_ip,
        .conn_memory = HEADER_MEMORY,
        .admit = routes_admit, .route = routes_dispatch, .completed = routes_completed, .ctx = d,
    };
    if (http_create(&d->http, &d->loop, &ho, err, sizeof err) != 0) {
        log_error("%s", err);
        uv_loop_close(&d->loop);
        metrics_destroy(d->metrics);
        auth_destroy(d->auth);
        free(d);
        return 1;
    }
    uv_signal_init(&d->loop, &d->sig_term);
    uv_signal_init(&d->loop, &d->sig_int);
    uv_signal_init(&d->loop, &d->sig_hup);
    d->sig_term.data = d->sig_int.data = d->sig_hup.data = d;
    uv_signal_start(&d->sig_term, on_signal, SIGTERM);
    uv_signal_start(&d->sig_int, on_signal, SIGINT);
    uv_signal_start(&d->sig_hup, on_signal, SIGHUP);
    uv_async_init(&d->loop, &d->engine_async, on_engine_events);
    uv_async_init(&d->loop, &d->load_async, on_loaded);
    d->engine_async.data = d->load_async.data = d;
    uv_timer_init(&d->loop, &d->tick);
    uv_timer_init(&d->loop, &d->watchdog);
    d->tick.data = d->watchdog.data = d;
    uv_timer_start(&d->tick, on_tick, 1000, 1000);
    uint64_t wd = sd_watchdog_usec();
    if (wd > 0)
        uv_timer_start(&d->watchdog, on_watchdog, 0, wd / 2000 ? wd / 2000 : 1);

    log_info("llamad %s starting", PACKAGE_VERSION);
    log_info("listening on http://%s%s%s:%lld", strchr(cfg->host, ':') ? "[" : "", cfg->host,
             strchr(cfg->host, ':') ? "]" : "", cfg->port);
    if (auth_count(d->auth) > 0)
        log_info("API keys: %zu configured%s%s", auth_count(d->auth),
                 auth_file(d->auth) ? ", from " : "", auth_file(d->auth) ? auth_file(d->auth) : "");
    else if (!is_loopback(cfg->host))
        log_warn("WARNING: listening on %s, beyond loopback, with NO API KEY (insecure-no-auth): "
                 "anyone who can reach this port can use the model.", cfg->host);
    log_info("loading model %s", cfg->model);

    d->load_start_ns = d->last_extend_ns = clock_now_ns();
    if (pthread_create(&d->load_thread, NULL, load_main, d) != 0) {
        log_error("cannot start the loading thread");
        d->exit_code = 1;
        shut_down(d);
    } else {
        d->load_started = 1;
    }
    uv_run(&d->loop, UV_RUN_DEFAULT);
    int code = d->exit_code;
    if (d->shut_down) {
        uv_loop_close(&d->loop);
        metrics_destroy(d->metrics);
        auth_destroy(d->auth);
        free(d);
    }
    else
        *abandoned = 1; /* stopped during the load: the loading thread may still use d and cfg */
    log_info("stopped");
    return code;
}
