/*
 * stream.c - server-sent events for streaming completions.
 *
 * Each job has an output buffer of SSE bytes.  Engine events append
 * `data: {chunk}\n\n` frames and wake the connection; MHD's reader takes
 * bytes from the buffer and, when it is empty while the request is live,
 * suspends the connection (MHD offers no other way to say "nothing yet"
 * in external-loop mode without busy polling).  A quiet stream gets an
 * SSE comment every KEEPALIVE_NS so that neither MHD's inactivity timeout
 * nor a proxy closes it during a long queue wait or prefill; a suspended
 * connection is also peeked at once a second, so that a client that
 * leaves while its request waits is noticed and cancelled.
 */
#include "daemon.h"

#include <microhttpd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"

#define KEEPALIVE_NS (5ull * 1000000000ull)

static void wake(job_t *j)
{
    j->last_write_ns = clock_now_ns();
    if (j->http != NULL)
        http_resume(j->http);
}

int stream_put_frame(job_t *j, char *json)
{
    if (json == NULL)
        return ERR_NOMEM;
    int rc = buf_append(&j->out, "data: ", 6);
    if (rc == 0)
        rc = buf_append(&j->out, json, strlen(json));
    if (rc == 0)
        rc = buf_append(&j->out, "\n\n", 2);
    free(json);
    return rc;
}

/* The one error event after the headers, then the end of the stream. */
static void put_error(job_t *j, const char *type, const char *code, const char *message)
{
    api_error_t e;
    memset(&e, 0, sizeof e);
    e.status = 500;
    e.type = type;
    e.code = code;
    snprintf(e.message, sizeof e.message, "%s", message);
    stream_put_frame(j, api_error_json(&e));
    j->out_end = 1;
}

/* Streaming has best_of == n. */
api_resp_meta_t stream_choice_meta(const job_t *j, const job_choice_t *c)
{
    api_resp_meta_t m = j->meta;
    m.index = c->prompt * j->req.n + c->seq;
    m.text_offset = c->text_offset;
    return m;
}

/* One chunk of choice c for ev (TOKEN or FINISH with held-back text), counting its
   characters for text_offset. */
static int put_chunk(job_t *j, job_choice_t *c, const engine_event_t *ev, int first,
                     const char *finish, int logprobs)
{
    api_resp_meta_t m = stream_choice_meta(j, c);
    int rc = stream_put_frame(j, api_chunk_json(&m, ev, first, finish, logprobs, j->d->info.tok));
    if (ev != NULL)
        c->text_offset += utf8_chars(ev->text, ev->text_len);
    return rc;
}

static ssize_t reader(void *ctx, char *buf, size_t max)
{
    job_t *j = ctx;
    if (j->out_error)
        return HTTP_STREAM_ERROR;
    size_t avail = j->out.len - j->out_pos;
    if (avail == 0) {
        if (j->out_end)
            return HTTP_STREAM_END;
        http_suspend(j->http);
        return 0;
    }
    size_t n = avail < max ? avail : max;
    if (j->t_first_out == 0 && j->n_generated > 0)
        j->t_first_out = clock_now_ns();
    memcpy(buf, j->out.data + j->out_pos, n);
    j->out_pos += n;
    if (j->out_pos == j->out.len) {
        /* all taken: reuse the buffer */
        j->out.len = 0;
        j->out_pos = 0;
    }
    return (ssize_t)n;
}

int stream_start(job_t *j)
{
    j->last_write_ns = clock_now_ns();
    /* chat opens each choice with its role chunk, at once: the client sees the stream
       start; echo opens each completion with its prompt text */
    for (size_t k = 0; k < j->n_choices; k++) {
        job_choice_t *c = &j->choices[k];
        int rc = 0;
        if (j->meta.kind == API_CHAT) {
            rc = put_chunk(j, c, NULL, 1, NULL, 0);
        } else if (c->echo != NULL && j->want_logprobs) {
            c->echo_held = 1;
        } else if (c->echo != NULL) {
            api_resp_meta_t m = stream_choice_meta(j, c);
            rc = stream_put_frame(j, api_text_chunk_json(&m, c->echo, c->echo_len));
        }
        if (rc != 0) {
            job_cancel(j);
            j->answered = 1;
            return http_respond_error(j->http, 500, "server_error", NULL, NULL, "out of memory");
        }
    }
    j->sent_first = 1;
    return http_stream_start(j->http, 200, "text/event-stream", reader, j);
}

/* The stream ends with an error event; the other choices are cancelled. */
static void fail(job_t *j, const char *type, const char *code, const char *message)
{
    j->answered = 1;
    job_cancel(j);
    put_error(j, type, code, message);
}

/* The held echo of c with the prompt's logprobs, its characters counted for text_offset. */
static int send_echo(job_t *j, job_choice_t *c)
{
    api_resp_meta_t m = stream_choice_meta(j, c);
    api_result_t r = {
        .text = c->echo, .echo_len = c->echo_len, .tok = j->d->info.tok,
        .prompt_lps = (const api_prompt_lp_t *)(void *)c->prompt_lps.data,
        .n_prompt_lps = c->prompt_lps.len / sizeof(api_prompt_lp_t),
        .prompt_first = c->prompt_first, .echo_top = j->req.top_logprobs,
    };
    c->echo_held = 0;
    c->text_offset += utf8_chars(c->echo, c->echo_len);
    return stream_put_frame(j, api_echo_chunk_json(&m, &r));
}

void stream_on_event(job_t *j, job_choice_t *c, const engine_event_t *ev)
{
    int rc = 0;
    if (ev->kind == ENGINE_EV_PROMPT) {
        /* kept for the echo (streamed echo with logprobs) of each choice of the prompt: they
           share one computation (a fork), whose events come to one of them, before any token */
        job_choice_t *first = c - c->seq;
        for (uint32_t k = 0; k < j->req.best_of; k++)
            if (first[k].echo_held && job_keep_prompt_lp(&first[k], ev) != 0) {
                fail(j, "server_error", NULL, "out of memory");
                break;
            }
        return;
    }
    if (c->echo_held && send_echo(j, c) != 0) {
        fail(j, "server_error", NULL, "out of memory");
        wake(j);
        return;
    }
    if (ev->kind == ENGINE_EV_TOKEN) {
        /* empty deltas are skipped, except tokens whose logprobs were asked for */
        if (j->tools)
            rc = stream_tools_token(j, c, ev);
        else if (ev->text_len > 0 || j->want_logprobs)
            rc = put_chunk(j, c, ev, 0, NULL, j->want_logprobs);
        if (rc != 0)
            fail(j, "server_error", NULL, "out of memory");
        wake(j);
        return;
    }
    switch (ev->finish) {
    case ENGINE_FINISH_STOP:
    case ENGINE_FINISH_LENGTH:
        if (j->tools) {
            rc = stream_tools_finish(j, c, ev);
        } else {
            if (ev->text_len > 0) /* text held back until the end (a partial stop-string match) */
                rc = put_chunk(j, c, ev, 0, NULL, 0);
            if (rc == 0)
                rc = put_chunk(j, c, NULL, 0, engine_finish_name(ev->finish), 0);
        }
        if (j->n_done < j->n_choices) {
            if (rc != 0)
                fail(j, "server_error", NULL, "out of memory");
            break;
        }
        /* the last choice: usage over all of them, then the end */
        if (rc == 0 && j->req.include_usage)
            rc = stream_put_frame(j, api_usage_chunk_json(&j->meta, j->prompt_tokens,
                                                   j->completion_tokens, j->cached_tokens));
        if (rc == 0)
            rc = buf_append(&j->out, "data: [DONE]\n\n", 14);
        if (rc != 0)
            put_error(j, "server_error", NULL, "out of memory");
        j->answered = 1;
        j->out_end = 1;
        break;
    case ENGINE_FINISH_CANCELLED:
        fail(j, "server_error", "server_shutting_down",
             "the request was cancelled: the server is shutting down");
        break;
    case ENGINE_FINISH_ERROR:
    default:
        fail(j, "server_error", "engine_error", ev->message[0] ? ev->message : "generation failed");
        break;
    }
    wake(j);
}

void stream_tick(job_t *j, uint64_t now_ns)
{
    if (j->http == NULL || j->out_end || j->out_error)
        return;
    if (j->http->suspended && http_peer_closed(j->http)) {
        job_client_gone(j);
        stream_close(j);
        return;
    }
    if (now_ns - j->last_write_ns >= KEEPALIVE_NS) {
        if (buf_append(&j->out, ": keep-alive\n\n", 14) == 0)
            wake(j);
    }
}

void stream_close(job_t *j)
{
    j->out_error = 1;
    if (j->http != NULL)
        http_resume(j->http);
}
