/*
 * stream_tools.c - a streamed chat choice of a request with tools
 * (daemon.h).  The choice's text is kept whole; while no call has begun,
 * the text that cannot be the start of one goes out as content deltas at
 * once.  What may begin the trigger ("<tool_call>" for ChatML: a tail that
 * is a prefix of it), and whitespace before it (the parsed content drops
 * it), wait, as text that may begin a stop string waits in the engine.
 * Once the trigger is seen (or from the start, for required and named
 * tools, which have no trigger) everything waits for the FINISH: then the
 * reply is parsed as a whole by tool_parse_reply, exactly as a
 * non-streaming reply is, so that both give the same calls.  With
 * logprobs, each token's rides on the chunk that delivers its text: a
 * content delta, or the arguments delta of the call it is part of (the
 * calls split where the next call's trigger opens).  Loop thread.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE   /* memmem */
#endif
#include "daemon.h"

#include <string.h>

#include "tool_parse.h"

static int is_space(char ch) { return ch == ' ' || ch == '\n' || ch == '\t' || ch == '\r'; }

/*
 * How much of t[0..n) may be sent as content: all but a tail that may begin
 * `trig` and the whitespace before it; up to the trigger (less the
 * whitespace before it) when it is there, with *open set.
 */
static size_t sendable(const char *t, size_t n, const char *trig, int *open)
{
    size_t tl = strlen(trig), cut = n;
    const char *at = tl > 0 ? memmem(t, n, trig, tl) : NULL;
    if (tl == 0) {
        /* no trigger: nothing to hold but whitespace */
    } else if (at != NULL) {
        *open = 1;
        cut = (size_t)(at - t);
    } else {
        /* the longest tail that is a proper prefix of the trigger */
        for (size_t k = tl - 1 < n ? tl - 1 : n; k > 0; k--)   /* tl >= 1 here */
            if (memcmp(t + n - k, trig, k) == 0) {
                cut = n - k;
                break;
            }
    }
    while (cut > 0 && is_space(t[cut - 1]))
        cut--;
    return cut;
}

/*
 * With logprobs: the kept token events not sent yet whose text ends at or
 * before byte `upto` of the reply ride on the chunk of m (their text is
 * what that chunk delivers, or markup around it).
 */
static void take_logprobs(job_t *j, job_choice_t *c, size_t upto, api_resp_meta_t *m)
{
    if (!j->want_logprobs)
        return;
    size_t k = c->lp_sent, bytes = c->lp_bytes;
    for (; k < c->n_events; k++) {
        size_t len = c->events[k]->text_len;
        if (bytes + len > upto)
            break;
        bytes += len;
    }
    m->lp_events = (const engine_event_t *const *)c->events + c->lp_sent;
    m->n_lp_events = k - c->lp_sent;
    m->lp_tok = j->d->info.tok;
    c->lp_sent = k;
    c->lp_bytes = bytes;
}

/* Content t[c->tool_sent..upto) as one delta, if any, with the logprobs of its tokens. */
static int send_content(job_t *j, job_choice_t *c, const char *t, size_t upto)
{
    if (upto <= c->tool_sent)
        return 0;
    api_resp_meta_t m = stream_choice_meta(j, c);
    take_logprobs(j, c, upto, &m);
    int rc = stream_put_frame(j, api_text_chunk_json(&m, t + c->tool_sent, upto - c->tool_sent));
    c->tool_sent = upto;
    return rc;
}

int stream_tools_token(job_t *j, job_choice_t *c, const engine_event_t *ev)
{
    size_t len = ev->text_len < ENGINE_TEXT_MAX ? ev->text_len : ENGINE_TEXT_MAX;
    if (len > 0 && buf_append(&c->text, ev->text, len) != 0)
        return ERR_NOMEM;
    if (j->want_logprobs && job_keep_event(c, ev) != 0)
        return ERR_NOMEM;
    if (c->tool_open || j->tool_trigger == NULL)
        return 0;   /* in a call, or the whole reply is calls: all waits for the end */
    /* no call can begin before what was sent (its start would have been held back):
       look at the rest only, so that a long reply costs linear time */
    size_t from = c->tool_sent;
    return send_content(j, c, c->text.data, from + sendable(c->text.data + from,
                                                             c->text.len - from,
                                                             j->tool_trigger, &c->tool_open));
}

int stream_tools_finish(job_t *j, job_choice_t *c, const engine_event_t *ev)
{
    size_t len = ev->text_len < ENGINE_TEXT_MAX ? ev->text_len : ENGINE_TEXT_MAX;
    if (len > 0 && buf_append(&c->text, ev->text, len) != 0)
        return ERR_NOMEM;
    const char *t = c->text.data != NULL ? c->text.data : "";
    tool_reply_t tr;
    if (tool_parse_reply(t, c->text.len, j->d->info.chat_kind, &tr) != 0)
        return ERR_NOMEM;
    int rc = 0;
    const char *finish = engine_finish_name(ev->finish);
    if (tr.n_calls == 0) {
        rc = send_content(j, c, t, c->text.len);   /* no calls: all of it is text */
    } else {
        /* the content is the text before the first call, which holds what was sent */
        size_t n = strlen(tr.content);
        if (n > c->tool_sent && memcmp(tr.content, t, c->tool_sent) == 0)
            rc = send_content(j, c, tr.content, n);
        /* the tokens after the content: call i's run to where call i + 1 opens (its
           trigger; without one, as for required tools, all ride on the first call) */
        const char *at = t + c->tool_sent;
        size_t tl = j->tool_trigger != NULL ? strlen(j->tool_trigger) : 0;
        if (tl > 0)
            at = memmem(t + c->tool_sent, c->text.len - c->tool_sent, j->tool_trigger, tl);
        for (size_t i = 0; i < tr.n_calls && rc == 0; i++) {
            api_resp_meta_t m = stream_choice_meta(j, c);
            rc = stream_put_frame(j, api_tool_call_chunk_json(&m, i, &tr.calls[i], 1));
            const char *next = NULL;
            if (at != NULL && tl > 0 && i + 1 < tr.n_calls)
                next = memmem(at + tl, c->text.len - (size_t)(at + tl - t), j->tool_trigger, tl);
            take_logprobs(j, c, next != NULL ? (size_t)(next - t) : c->text.len, &m);
            at = next;
            if (rc == 0)
                rc = stream_put_frame(j, api_tool_call_chunk_json(&m, i, &tr.calls[i], 0));
        }
        finish = "tool_calls";
        metrics_tool_calls(j->d->metrics);
    }
    tool_reply_free(&tr);
    if (rc == 0 && j->want_logprobs && c->lp_sent < c->n_events) {
        /* tokens whose text was not sent (trailing whitespace, empty pieces) */
        api_resp_meta_t m = stream_choice_meta(j, c);
        take_logprobs(j, c, c->text.len, &m);
        rc = stream_put_frame(j, api_text_chunk_json(&m, "", 0));
    }
    if (rc == 0) {
        api_resp_meta_t m = stream_choice_meta(j, c);
        rc = stream_put_frame(j, api_chunk_json(&m, NULL, 0, finish, 0, j->d->info.tok));
    }
    return rc;
}
