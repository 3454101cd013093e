/*
 * daemon.h - the serving daemon: one libuv loop on the main thread that
 * drives the HTTP server (http.h), receives engine events through a
 * uv_async handle, and runs the lifecycle (load on a worker thread,
 * ready, drain on SIGTERM, systemd notifications).
 *
 * The structs below are shared by daemon.c (lifecycle), jobs.c (jobs and
 * the engine's events), health.c, routes.c (dispatch), generate.c (the
 * generation routes, non-streaming answers) and stream.c (SSE); nothing
 * outside those files touches them.  This is the one private header of
 * those files: none of them has a header of its own, so no two headers
 * include each other.  Calls go one way: routes -> generate -> stream ->
 * jobs, and daemon -> jobs, stream, health; an event reaches generate.c
 * or stream.c through the job's on_event, not through a call back up.  Everything here runs on the loop
 * thread, except the model-loading thread, which only fills
 * load_engine/load_rc/load_err and then wakes the loop.
 */
#ifndef LLAMAD_DAEMON_H
#define LLAMAD_DAEMON_H

#include <pthread.h>
#include <stdint.h>
#include <uv.h>

#include "engine/engine.h"
#include "base/buf.h"
#include "base/clock.h"
#include "api.h"
#include "auth.h"
#include "config.h"
#include "http.h"
#include "metrics.h"
#include "modelwatch.h"

typedef struct daemon daemon_t;
typedef struct job job_t;

/*
 * One choice of a job: one engine request (a prompt and a seed of its own;
 * api_choices.c).  The engine request carries the choice as its cookie.
 */
typedef struct {
    job_t *job;
    uint32_t prompt;            /* which prompt of the request (a list on /v1/completions) */
    uint32_t seq;               /* its number among its prompt's best_of: seed + seq */
    uint64_t engine_id;
    int submitted;              /* engine_submit succeeded */
    int engine_done;            /* its FINISH event arrived (or it was never submitted) */
    char *echo;                 /* echo: the prompt text, [echo_len] bytes; else NULL */
    int echo_held;              /* streamed echo with logprobs: sent with the prompt's
                                   logprobs once they are all in (the first TOKEN or FINISH) */
    size_t echo_len;
    /* non-streaming, or streaming with tools: the text so far; and (for logprobs,
       non-streaming) the token events */
    buf_t text;
    size_t tool_sent;           /* streaming with tools: bytes of text sent as content */
    int tool_open;              /* streaming with tools: a call has begun, hold the rest */
    engine_event_t **events;    /* [n_events] copies, in order */
    size_t lp_sent;             /* streaming with tools: events whose logprobs were sent */
    size_t lp_bytes;            /* and the bytes of text those events released */
    size_t n_events, cap_events;
    buf_t prompt_lps;           /* api_prompt_lp_t[]: the PROMPT events' logprobs, in order */
    int32_t prompt_first;       /* the prompt's first token, which has no logprob */
    double sum_logprob;         /* of the tokens drawn, for best_of */
    uint64_t text_offset;       /* streaming logprobs: code points sent so far */
    engine_finish_t finish;
    uint32_t prompt_tokens, completion_tokens, cached_tokens;
} job_choice_t;

/* One generation request (completions or chat), from validation to its last byte. */
struct job {
    daemon_t *d;
    job_t *prev, *next;         /* the daemon's list of live jobs */
    http_request_t *http;       /* NULL once the connection is done with */
    const char *route;
    api_request_t req;
    api_resp_meta_t meta;
    char id[48];                /* "cmpl-…" / "chatcmpl-…" */
    /* prompts x best_of choices, prompt by prompt: choice k is prompt k / best_of */
    job_choice_t *choices;
    size_t n_choices;
    size_t n_done;              /* choices whose FINISH arrived (or never submitted) */
    /* what the job's engine events do: stream_on_event or generate.c's non-streaming
       collector; called for each event while the client is there */
    void (*on_event)(job_t *j, job_choice_t *c, const engine_event_t *ev);
    int submitted;              /* some choice was submitted */
    int engine_done;            /* every choice's FINISH event arrived (or none was submitted) */
    int answered;               /* the response (or its error) is decided: ignore more events */
    int gone;                   /* the client left: send nothing more */
    int likely_queued;          /* the engine had no free slot at submit (for the cancel phase) */
    int stream;
    int want_logprobs;
    int tools;                  /* tool_choice other than none: replies are parsed for calls */
    const char *tool_trigger;   /* tool_choice auto: the text that opens a call (static) */
    /* streaming: SSE bytes not yet taken by MHD */
    buf_t out;
    size_t out_pos;
    int out_end;                /* nothing more will be appended */
    int out_error;              /* the client is gone: close without more bytes */
    int sent_first;
    uint64_t last_write_ns;
    /* the outcome: the last finish, and usage over the choices (prompt tokens once per prompt) */
    engine_finish_t finish;
    uint32_t prompt_tokens, completion_tokens, cached_tokens, n_generated;
    /* timings, CLOCK_MONOTONIC ns: arrival (headers read), engine_submit, the first
       token's event posted by the engine and taken by the loop, its bytes handed to MHD */
    uint64_t t_arrive, t_submit, t_first_posted, t_first, t_first_out, t_last;
};

struct daemon {
    uv_loop_t loop;
    const config_t *cfg;
    uv_signal_t sig_term, sig_int, sig_hup, sig_usr1, sig_usr2;
    uv_async_t engine_async;    /* the engine's notify: events are queued */
    uv_async_t load_async;      /* the loading thread is done */
    uv_timer_t tick;            /* 1 s: keep-alives, peer checks, drain, systemd */
    uv_timer_t watchdog;
    int handles_open;
    http_server_t *http;
    auth_t *auth;
    metrics_t *metrics;

    engine_t *engine;           /* NULL while loading */
    engine_info_t info;
    int web_ui;                 /* the chat page is served (web-ui, host) */
    char served_id[256];        /* served-model-name's first name; "" when unset (the file name) */
    pthread_t load_thread;
    int load_started;
    engine_t *load_engine;      /* written by the loading thread */
    int load_rc;
    char load_err[ERR_MSG_MAX];
    uint64_t load_start_ns, last_extend_ns;

    int ready_sent;             /* READY=1 went to systemd */
    int draining;
    uint64_t drain_deadline_ns;
    int drain_cancelled;
    modelwatch_t model_watch;   /* the model file as it was at start */
    int model_changed;          /* it was written to under the mapping: health is failed */
    uint64_t stop_at_ns;        /* after a second SIGTERM: stop at this time (0: not stopping) */
    int shut_down;
    int exit_code;

    job_t *jobs;
    size_t n_jobs;
    uint64_t next_seq;
    engine_event_t ev;          /* scratch for engine_poll */
    engine_stats_t stats;       /* the last snapshot */
};

/* ---- daemon.c ---- */

/*
 * Serve until SIGTERM/SIGINT and the drain end.  Returns the exit code.
 * *abandoned is set when it stopped during the model load: the loading
 * thread still runs and may read cfg, so the caller must _exit at once.
 */
int daemon_run(const config_t *cfg, int *abandoned);

/* The engine's options from the configuration (no notify callback): the one
   mapping, for the daemon and for --prompt. */
void daemon_engine_opts(const config_t *cfg, engine_opts_t *eo);

/* ---- routes.c ---- */

/* The id the model is served as: served-model-name's first name, else the file name. */
const char *daemon_model_id(const daemon_t *d);
/* Whether a request's "model" names this model: any served-model-name, or the file name. */
int daemon_model_known(const daemon_t *d, const char *name);

/* ---- health.c ---- */

typedef enum { HEALTH_OK, HEALTH_LOADING, HEALTH_DRAINING, HEALTH_STALLED, HEALTH_FAILED } health_t;
health_t daemon_health(daemon_t *d);
const char *daemon_health_name(health_t h);
/* Seconds a refused client should wait (>= 1). */
unsigned daemon_retry_after(daemon_t *d);
/* Answer GET /health (live: /health/live, which only says the process answers). */
int health_respond(daemon_t *d, http_request_t *req, int live);

/* ---- jobs.c ---- */

/*
 * A job for a request that is about to be submitted: the engine request
 * gets the job as its cookie (job_submit), so that each event finds its
 * job in O(1).  Lifetime: a submitted job is freed only when both its
 * connection is done with (http NULL) and its FINISH event has arrived
 * (engine_done), or at shut-down after engine_destroy, which sends no more
 * events; so no event can carry the cookie of a freed job.
 */
job_t *job_create(daemon_t *d, http_request_t *http, const char *route, size_t n_choices);
/* Submit er as the n choices c[0 .. n) of one prompt (engine_request_t.n_choices: the prompt
   computed once, choice i with er's seed + i), each choice its own cookie; fills their
   engine_id and submitted, and the job's submitted and t_submit (the first time). */
int job_submit(job_t *j, job_choice_t *c, size_t n, engine_request_t *er, char *err, size_t errlen);
/* Free the job when both its connection and all its engine requests are done. */
void job_release(job_t *j);
/* Cancel every choice still in the engine (their FINISH events still arrive). */
void job_cancel(job_t *j);
/* A copy of TOKEN event ev appended to c->events (for logprobs).  0 or ERR_NOMEM. */
int job_keep_event(job_choice_t *c, const engine_event_t *ev);
/* PROMPT event ev's logprobs appended to c->prompt_lps.  0 or ERR_NOMEM. */
int job_keep_prompt_lp(job_choice_t *c, const engine_event_t *ev);
/* The client went away before the job ended: cancel it in the engine. */
void job_client_gone(job_t *j);
/* The engine's notify (uv_async): drain engine_poll, hand each event to its job. */
void jobs_on_engine_events(uv_async_t *a);

/* ---- routes.c ---- */

int routes_admit(void *ctx, http_request_t *req);
int routes_dispatch(void *ctx, http_request_t *req);
void routes_completed(void *ctx, http_request_t *req, int ok);

/* ---- generate.c ---- */

/* POST /v1/completions and /v1/chat/completions: validate, encode, submit, answer. */
int generate_handle(daemon_t *d, http_request_t *req, api_kind_t kind, const char *label,
                    const uint8_t key_id[AUTH_KEY_ID_BYTES]);

/* ---- stream.c ---- */

/* Send the 200 and the stream headers for a submitted job; returns an MHD_Result. */
int stream_start(job_t *j);
void stream_on_event(job_t *j, job_choice_t *c, const engine_event_t *ev);
/* Append one `data: ...\n\n` frame; takes ownership of json (NULL: out of memory,
 * ERR_NOMEM). */
int stream_put_frame(job_t *j, char *json);
/* The meta of choice c's chunks: its index and text offset. */
api_resp_meta_t stream_choice_meta(const job_t *j, const job_choice_t *c);
/* Once a second: a keep-alive comment when the stream has been quiet. */
void stream_tick(job_t *j, uint64_t now_ns);
/* The client is gone: let MHD close the connection. */
void stream_close(job_t *j);

/* ---- stream_tools.c ---- */

/*
 * A streamed choice of a request with tools: a token's text is kept, and
 * what cannot be the start of a call is sent as content deltas (text that
 * may begin the trigger, and whitespace before it, are held back as stop
 * strings are).  0 or ERR_NOMEM.
 */
int stream_tools_token(job_t *j, job_choice_t *c, const engine_event_t *ev);

/*
 * The choice's FINISH (STOP or LENGTH, ev's held-back text included): the
 * reply is parsed; the content not yet sent, then each call as OpenAI's
 * tool-call deltas, then the finish chunk ("tool_calls" when there are
 * calls, else engine_finish_name).  0 or ERR_NOMEM.
 */
int stream_tools_finish(job_t *j, job_choice_t *c, const engine_event_t *ev);

#endif
