/*
 * daemon.c - the daemon's lifecycle and its glue to the engine.
 *
 * Start-up: listen first, then load the model on a thread of our own so
 * that /health answers 503 "loading" meanwhile.  (A plain pthread rather
 * than uv_queue_work: libuv joins its pool's threads at exit, so SIGTERM
 * during a long load could not exit promptly.)  The engine's notify
 * callback is uv_async_send, which coalesces: on_engine_events drains the
 * whole event queue each time (jobs.c).  SIGTERM drains: new requests get 503,
 * running ones may finish until drain-timeout, then they are cancelled.
 */
#include "daemon.h"
#include "fdlimit.h"

#include <arpa/inet.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "base/log.h"
#include "sdnotify.h"
#include "webui.h"
#include "strlist.h"

#define STOP_GRACE_NS   (300ull * 1000000ull)           /* second SIGTERM: time to write the endings */
#define HARD_EXTRA_NS   (5ull * 1000000000ull)  /* after the drain deadline, stop regardless */
#define EXTEND_EVERY_NS (5ull * 1000000000ull)
#define HEADER_MEMORY   (16u * 1024u)           /* per-connection memory: headers well under it */

/* ---------------------------------------------------------------- engine glue */

static void engine_notify(void *ctx)
{
    uv_async_send(ctx);
}

/* ---------------------------------------------------------------- loading */

void daemon_engine_opts(const config_t *cfg, engine_opts_t *eo)
{
    *eo = (engine_opts_t){
        .model_path = cfg->model, .chat_template = cfg->chat_template, .backend = cfg->backend,
        .model_private = !cfg->model_mmap,
        .threads = (int)cfg->threads, .kv_bytes = cfg->kv_memory,
        .cpu_isa = cfg->cpu_isa, .cpu_precision = cfg->cpu_precision,
        .cpu_no_repack = !cfg->cpu_repack,
        .gpu_memory_fraction = cfg->gpu_memory_fraction, .gpu_device = cfg->gpu_device,
        .backend_dir = cfg->backend_dir,
        .max_batch_tokens = (uint32_t)cfg->max_batch_tokens,
        .max_step_ms = (uint32_t)cfg->max_step_time,
        .max_seqs = (uint32_t)cfg->max_seqs, .max_queue = (uint32_t)cfg->max_queue,
        .no_prefix_cache = !cfg->prefix_cache,
        .speculative = strcmp(cfg->speculative, "prompt-lookup") == 0,
        .spec_tokens = (uint32_t)cfg->spec_tokens, .spec_ngram = (uint32_t)cfg->spec_ngram,
        .cuda_graphs = strcmp(cfg->cuda_graphs, "on") == 0    ? 1
                     : strcmp(cfg->cuda_graphs, "off") == 0   ? -1 : 0,
        .fp16_weights = strcmp(cfg->gpu_weight_type, "fp16") == 0,
        .native_weights = strcmp(cfg->gpu_weight_type, "native") == 0,
    };
}

static void *load_main(void *arg)
{
    daemon_t *d = arg;
    const config_t *cfg = d->cfg;
    engine_opts_t eo;
    daemon_engine_opts(cfg, &eo);
    eo.notify = engine_notify;
    eo.notify_ctx = &d->engine_async;
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
             d->info.chat_kind ? d->info.chat_kind : "none (chat disabled)");
    if (d->info.chat_kind == NULL)
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

/* Close a handle once; one never initialised (d is zeroed: no loop) is skipped. */
static void close_handle(uv_handle_t *h)
{
    if (h->loop != NULL && !uv_is_closing(h))
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
    uv_signal_t *sigs[] = { &d->sig_term, &d->sig_int, &d->sig_hup, &d->sig_usr1, &d->sig_usr2 };
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++) {
        uv_signal_stop(sigs[i]);
        close_handle((uv_handle_t *)sigs[i]);
    }
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
                job_cancel(j);
    }
    if (now >= d->drain_deadline_ns + HARD_EXTRA_NS || (d->stop_at_ns != 0 && now >= d->stop_at_ns)) {
        log_warn("%zu request(s) still open after the drain: closing them", d->n_jobs);
        shut_down(d);
    }
}

/*
 * A second SIGTERM: stop without waiting for the engine, but let every
 * open request end as a client can read it: a stream gets its one error
 * event, a plain request a 503, as if the engine had cancelled them.  The
 * loop writes those in a short grace (STOP_GRACE_NS), then stops.
 */
static void stop_now(daemon_t *d)
{
    /* first what the engine has already said: a request it finished gets
       its real answer, not the cancellation */
    jobs_on_engine_events(&d->engine_async);
    engine_event_t ev;
    memset(&ev, 0, sizeof ev);
    ev.kind = ENGINE_EV_FINISH;
    ev.finish = ENGINE_FINISH_CANCELLED;
    for (job_t *j = d->jobs; j != NULL; j = j->next) {
        if (j->engine_done)
            continue;   /* answered, or being answered */
        job_cancel(j);
        for (size_t k = 0; k < j->n_choices; k++) {
            job_choice_t *c = &j->choices[k];
            if (!c->submitted || c->engine_done || j->http == NULL || j->gone || j->answered ||
                j->on_event == NULL)
                continue;
            ev.id = c->engine_id;
            ev.cookie = c;
            j->on_event(j, c, &ev);
        }
        j->gone = 1;   /* nothing the engine still sends reaches the client */
    }
    d->drain_cancelled = 1;
    d->stop_at_ns = clock_now_ns() + STOP_GRACE_NS;
    uv_timer_start(&d->tick, on_tick, 50, 50);
}

/* SIGUSR1: one line of where the daemon stands. */
static void log_status(daemon_t *d)
{
    const engine_stats_t *st = &d->stats;
    size_t streams = 0;
    for (job_t *j = d->jobs; j != NULL; j = j->next)
        streams += j->stream != 0;
    log_info("status: %s; %zu request(s) open (%zu streaming); engine: %u running, %u waiting, "
             "%u queued, KV blocks %u used + %u free (%u cached) of %u; %llu steps, %llu tokens "
             "generated", daemon_health_name(daemon_health(d)), d->n_jobs, streams, st->running,
             st->waiting, st->queued, st->blocks_used, st->blocks_free, st->blocks_cached,
             st->blocks_total, (unsigned long long)st->steps,
             (unsigned long long)st->tokens_generated);
}

static void on_signal(uv_signal_t *h, int signum)
{
    daemon_t *d = h->data;
    char err[ERR_MSG_MAX];
    if (signum == SIGUSR1) {
        log_status(d);
        return;
    }
    if (signum == SIGUSR2)
        return;   /* reserved; ignored rather than fatal */
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
        if (d->engine == NULL) {
            /* a second signal while loading, handled in the same loop iteration as the
               first: the loop is stopping already, and the loading thread still uses d
               and cfg, so nothing may be freed (daemon_run reports it abandoned) */
            uv_stop(&d->loop);
            return;
        }
        if (d->stop_at_ns != 0) {
            shut_down(d);   /* a third signal: no grace at all */
            return;
        }
        log_info("second %s: stopping now", signum == SIGTERM ? "SIGTERM" : "SIGINT");
        stop_now(d);
        return;
    }
    d->draining = 1;
    sd_notify_state("STOPPING=1");
    http_stop_listening(d->http);
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
    log_error("%s: exiting with status 1 so that the service manager restarts llamad",
              d->model_changed ? "the model file changed under the mapping" : "the engine has failed");
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
        if (!d->model_changed && modelwatch_check(&d->model_watch, d->cfg->model))
            d->model_changed = 1;
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
    unsigned max_conns = (unsigned)cfg->max_connections;
    int lowered = 0;
    if (fdlimit_check(&max_conns, &lowered, err, sizeof err) != 0) {
        log_error("%s", err);
        free(d);
        return 2;
    }
    if (lowered)
        log_warn("max-connections %lld does not fit the descriptor limit: serving at most %u "
                 "connections (raise LimitNOFILE= or ulimit -n)", cfg->max_connections, max_conns);
    if (strlist_first(cfg->served_model_name, d->served_id, sizeof d->served_id) < 0) {
        log_error("served-model-name: the first name is longer than %zu bytes",
                  sizeof d->served_id - 1);
        free(d);
        return 2;
    }
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
    d->web_ui = webui_enabled(cfg->web_ui, is_loopback(cfg->host));
    if (metrics_create(&d->metrics) != 0) {
        log_error("out of memory");
        auth_destroy(d->auth);
        free(d);
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);
    int uv_rc = uv_loop_init(&d->loop);
    if (uv_rc != 0) {
        log_error("cannot create the event loop: %s", uv_strerror(uv_rc));
        metrics_destroy(d->metrics);
        auth_destroy(d->auth);
        free(d);
        return 1;
    }
    http_opts_t ho = {
        .host = cfg->host, .port = (int)cfg->port, .max_body = cfg->max_body,
        .conn_timeout_s = (unsigned)cfg->idle_timeout,
        .request_timeout_s = (unsigned)cfg->request_timeout,
        .max_connections = max_conns,
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
    /* every handle that takes a descriptor, checked: out of descriptors (or
       memory) here is a clear error, not an abort inside libuv later */
    uv_signal_t *sigs[] = { &d->sig_term, &d->sig_int, &d->sig_hup, &d->sig_usr1, &d->sig_usr2 };
    static const int signums[] = { SIGTERM, SIGINT, SIGHUP, SIGUSR1, SIGUSR2 };
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0] && uv_rc == 0; i++) {
        if ((uv_rc = uv_signal_init(&d->loop, sigs[i])) == 0) {
            sigs[i]->data = d;
            uv_rc = uv_signal_start(sigs[i], on_signal, signums[i]);
        }
    }
    if (uv_rc == 0)
        uv_rc = uv_async_init(&d->loop, &d->engine_async, jobs_on_engine_events);
    if (uv_rc == 0)
        uv_rc = uv_async_init(&d->loop, &d->load_async, on_loaded);
    if (uv_rc != 0) {
        log_error("cannot set up the event loop: %s", uv_strerror(uv_rc));
        d->exit_code = 1;
        shut_down(d);
        uv_run(&d->loop, UV_RUN_DEFAULT);
        uv_loop_close(&d->loop);
        metrics_destroy(d->metrics);
        auth_destroy(d->auth);
        free(d);
        return 1;
    }
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

    modelwatch_init(&d->model_watch, cfg->model, cfg->model_mmap);
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
