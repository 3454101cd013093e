/*
 * event.c - the engine's outgoing events: a pool of event nodes, the
 * events of one iteration gathered on the engine thread and handed to the
 * event queue at once, and engine_poll / engine_wait, through which any
 * thread takes them (see engine.h for the contract, engine_impl.h for who
 * owns what).
 *
 * Every request reserves its finish event when it is submitted, so that
 * finishing can never fail for want of memory; token events come from the
 * pool, which grows (malloc) only while the server lags behind.  A token
 * event that cannot be had does not lose its text: engine_req.c carries
 * the text forward into the request's next event.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine_impl.h"

const char *engine_finish_name(engine_finish_t f)
{
    switch (f) {
    case ENGINE_FINISH_STOP: return "stop";
    case ENGINE_FINISH_LENGTH: return "length";
    case ENGINE_FINISH_CANCELLED: return "cancelled";
    case ENGINE_FINISH_ERROR: return "error";
    }
    return "error";
}

/* ---------------------------------------------------------------- the producer's side */

/* Called by req_create on the submitting thread (the loop), and for token
   events on the engine thread: the pool is shared under ev_mu. */
ev_node_t *event_reserve(engine_t *e)
{
    pthread_mutex_lock(&e->ev_mu);
    ev_node_t *n = e->ev_free;
    if (n != NULL)
        e->ev_free = n->next;
    pthread_mutex_unlock(&e->ev_mu);
    if (n == NULL) /* the pool grows only when the server lags */
        n = malloc(sizeof *n);
    return n;
}

void event_free_list(ev_node_t *n)
{
    while (n != NULL) {
        ev_node_t *next = n->next;
        free(n);
        n = next;
    }
}

engine_event_t *event_use(engine_t *e, ev_node_t *n, uint64_t id, engine_ev_kind_t kind)
{
    n->next = NULL;
    if (e->out_tail)
        e->out_tail->next = n;
    else
        e->out_head = n;
    e->out_tail = n;
    engine_event_t *ev = &n->ev;
    ev->id = id;
    ev->cookie = NULL;      /* the caller sets the request's */
    ev->kind = kind;
    ev->text_len = 0;
    ev->text[0] = '\0';
    ev->token = -1;
    ev->index = 0;
    ev->logprob = 0.0f;
    ev->n_top = 0;
    ev->finish = 0;
    ev->stop_token = -1;
    ev->stop_string = -1;
    ev->prompt_tokens = ev->completion_tokens = ev->cached_tokens = ev->preemptions = 0;
    ev->message[0] = '\0';
    return ev;
}

engine_event_t *event_new(engine_t *e, uint64_t id, engine_ev_kind_t kind)
{
    if (e->ev_fault_period != 0 && e->ev_fault_count++ % e->ev_fault_period < e->ev_fault_fail)
        return NULL;
    ev_node_t *n = event_reserve(e);
    return n != NULL ? event_use(e, n, id, kind) : NULL;
}

int event_post(engine_t *e)
{
    if (e->out_head == NULL)
        return 0;
    uint64_t now = engine_now_ns();
    for (ev_node_t *n = e->out_head; n != NULL; n = n->next)
        n->ev.posted_ns = now;
    pthread_mutex_lock(&e->ev_mu);
    if (e->ev_tail)
        e->ev_tail->next = e->out_head;
    else
        e->ev_head = e->out_head;
    e->ev_tail = e->out_tail;
    pthread_cond_broadcast(&e->ev_cv);
    pthread_mutex_unlock(&e->ev_mu);
    e->out_head = e->out_tail = NULL;
    return 1;
}

/* ---------------------------------------------------------------- the consumer's side */

/*
 * engine_poll copies an event in three parts: the members before text, the
 * text in use (text_len bytes and the NUL; set_text keeps text_len <=
 * ENGINE_TEXT_MAX), and everything after the text array, whatever members
 * it holds; so no member can be skipped, whatever the order.
 */
#define EV_TEXT_AT  offsetof(engine_event_t, text)
#define EV_AFTER_AT (offsetof(engine_event_t, text) + sizeof ((engine_event_t *)0)->text)
_Static_assert(sizeof ((engine_event_t *)0)->text == ENGINE_TEXT_MAX + 1, "text holds ENGINE_TEXT_MAX and a NUL");

int engine_poll(engine_t *e, engine_event_t *ev)
{
    pthread_mutex_lock(&e->ev_mu);
    ev_node_t *n = e->ev_head;
    if (n == NULL) {
        pthread_mutex_unlock(&e->ev_mu);
        return 0;
    }
    e->ev_head = n->next;
    if (e->ev_head == NULL)
        e->ev_tail = NULL;
    /* copy the fixed part and only the text in use */
    memcpy(ev, &n->ev, EV_TEXT_AT);
    memcpy(ev->text, n->ev.text, n->ev.text_len + 1);
    memcpy((char *)ev + EV_AFTER_AT, (char *)&n->ev + EV_AFTER_AT, sizeof *ev - EV_AFTER_AT);
    n->next = e->ev_free;
    e->ev_free = n;
    pthread_mutex_unlock(&e->ev_mu);
    return 1;
}

int engine_wait(engine_t *e, int timeout_ms)
{
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    if (timeout_ms >= 0) {
        until.tv_sec += timeout_ms / 1000;
        until.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
    }
    pthread_mutex_lock(&e->ev_mu);
    while (e->ev_head == NULL) {
        if (timeout_ms < 0)
            pthread_cond_wait(&e->ev_cv, &e->ev_mu);
        else if (pthread_cond_timedwait(&e->ev_cv, &e->ev_mu, &until) != 0)
            break;
    }
    int any = e->ev_head != NULL;
    pthread_mutex_unlock(&e->ev_mu);
    return any;
}
