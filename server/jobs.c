/*
 * jobs.c - one job per generation request, from its submission to its
 * last byte, and the hand-off of the engine's events to their jobs.
 *
 * A job has one engine request per choice (n, best_of, a list of
 * prompts); each carries its choice as the cookie (job_submit), so the
 * loop thread finds the choice and job of an event in O(1), however many
 * are live.  A submitted job outlives its engine requests: it is freed
 * only once every choice's FINISH event has arrived and its connection is
 * done with (job_release),
 * or at shut-down after engine_destroy, which sends no more events.  The
 * engine's notify is uv_async_send, which coalesces: one wake-up drains
 * the whole event queue.  Loop thread.
 */
#include "daemon.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"

job_t *job_create(daemon_t *d, http_request_t *http, const char *route, size_t n_choices)
{
    job_t *j = calloc(1, sizeof *j);
    if (j == NULL)
        return NULL;
    j->choices = calloc(n_choices ? n_choices : 1, sizeof *j->choices);
    if (j->choices == NULL) {
        free(j);
        return NULL;
    }
    j->n_choices = n_choices;
    for (size_t i = 0; i < n_choices; i++) {
        j->choices[i].job = j;
        j->choices[i].engine_done = 1; /* until submitted */
        buf_init(&j->choices[i].text);
        buf_init(&j->choices[i].prompt_lps);
    }
    j->n_done = n_choices;
    j->d = d;
    j->http = http;
    j->route = route;
    j->engine_done = 1; /* until submitted */
    j->t_arrive = http->start_ns;
    buf_init(&j->out);
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
    buf_close(&j->out);
    for (size_t k = 0; k < j->n_choices; k++) {
        job_choice_t *c = &j->choices[k];
        buf_close(&c->text);
        for (size_t i = 0; i < c->n_events; i++)
            free(c->events[i]);
        free(c->events);
        buf_close(&c->prompt_lps);
        free(c->echo);
    }
    free(j->choices);
    free(j);
}

int job_keep_event(job_choice_t *c, const engine_event_t *ev)
{
    if (c->n_events == c->cap_events) {
        size_t cap = c->cap_events ? c->cap_events * 2 : 64;
        engine_event_t **p = realloc(c->events, cap * sizeof *p);
        if (p == NULL)
            return ERR_NOMEM;
        c->events = p;
        c->cap_events = cap;
    }
    engine_event_t *copy = malloc(sizeof *copy);
    if (copy == NULL)
        return ERR_NOMEM;
    *copy = *ev;
    c->events[c->n_events++] = copy;
    return 0;
}

int job_keep_prompt_lp(job_choice_t *c, const engine_event_t *ev)
{
    api_prompt_lp_t lp = { .token = ev->token, .logprob = ev->logprob, .rank = ev->rank };
    lp.n_top = ev->n_top < SAMPLER_MAX_LOGPROBS ? ev->n_top : SAMPLER_MAX_LOGPROBS;
    memcpy(lp.top, ev->top, lp.n_top * sizeof lp.top[0]);
    return buf_append(&c->prompt_lps, &lp, sizeof lp);
}

void job_cancel(job_t *j)
{
    for (size_t k = 0; k < j->n_choices; k++)
        if (j->choices[k].submitted && !j->choices[k].engine_done)
            engine_cancel(j->d->engine, j->choices[k].engine_id);
}

void job_client_gone(job_t *j)
{
    if (!j->submitted || j->engine_done || j->gone)
        return;
    j->gone = 1;
    const char *phase = j->n_generated > 0 ? "decode" : j->likely_queued ? "queued" : "prefill";
    metrics_cancelled(j->d->metrics, phase);
    job_cancel(j);
}

int job_submit(job_t *j, job_choice_t *c, size_t n, engine_request_t *er, char *err, size_t errlen)
{
    void *cookies[ENGINE_MAX_CHOICES];
    if (n == 0 || n > ENGINE_MAX_CHOICES)
        return ERR_RANGE;
    for (size_t i = 0; i < n; i++)
        cookies[i] = &c[i];
    er->cookie = c;
    er->n_choices = (uint32_t)n;
    er->choice_cookies = cookies;
    uint64_t id;
    int rc = engine_submit(j->d->engine, er, &id, err, errlen);
    er->choice_cookies = NULL;
    if (rc != 0)
        return rc;
    for (size_t i = 0; i < n; i++) {   /* the engine numbers the choices in order */
        c[i].engine_id = id + i;
        c[i].submitted = 1;
        c[i].engine_done = 0;
    }
    j->n_done -= n;
    if (!j->submitted)
        j->t_submit = clock_now_ns();
    j->submitted = 1;
    j->engine_done = 0;
    return 0;
}

/* ---------------------------------------------------------------- engine events */

void jobs_on_engine_events(uv_async_t *a)
{
    daemon_t *d = a->data;
    if (d->engine == NULL)
        return;
    while (engine_poll(d->engine, &d->ev)) {
        const engine_event_t *ev = &d->ev;
        /* the cookie is the choice (job_submit); its job lives until every choice's
           FINISH event */
        job_choice_t *c = ev->cookie;
        job_t *j = c != NULL ? c->job : NULL;
        if (j == NULL || !c->submitted || c->engine_done || c->engine_id != ev->id) {
            log_error("an engine event (request %" PRIu64 ") names no live job: dropped", ev->id);
            continue;
        }
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
            c->sum_logprob += ev->logprob;
        } else if (ev->kind == ENGINE_EV_FINISH) {
            c->finish = ev->finish;
            c->prompt_tokens = ev->prompt_tokens;
            c->completion_tokens = ev->completion_tokens;
            c->cached_tokens = ev->cached_tokens;
            j->finish = ev->finish;
            if (c->seq == 0) {  /* each prompt counted once */
                j->prompt_tokens += ev->prompt_tokens;
                j->cached_tokens += ev->cached_tokens;
            }
            j->completion_tokens += ev->completion_tokens;
            if (ev->finish == ENGINE_FINISH_STOP || ev->finish == ENGINE_FINISH_LENGTH)
                metrics_usage(d->metrics, ev->prompt_tokens, ev->completion_tokens,
                              ev->cached_tokens);
            metrics_finished(d->metrics, ev->finish, ev->prompt_tokens, ev->completion_tokens,
                             j->n_generated ? (now - j->t_first) / 1e9 : 0.0);
        }
        if (ev->kind == ENGINE_EV_FINISH) {
            c->engine_done = 1;
            j->n_done++;
        }
        if (j->http != NULL && !j->gone && !j->answered && j->on_event != NULL)
            j->on_event(j, c, ev);
        if (j->n_done == j->n_choices) {
            j->engine_done = 1;
            job_release(j);
        }
    }
    engine_get_stats(d->engine, &d->stats);
    metrics_engine_sample(d->metrics, &d->stats);
}

