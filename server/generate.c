/*
 * generate.c - the generation routes, POST /v1/completions and
 * /v1/chat/completions: parse and validate the body (api_request.c), have
 * the engine render and encode the prompt, choose the prefix-cache salt,
 * create the job and submit it, then answer: a stream (stream.c) or, for a
 * whole response, the text collected from the job's events.  All
 * validation happens before anything is queued, so a stream's 200 is only
 * sent for a request the engine accepted.  Loop thread.
 */
#include "daemon.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/sha256.h"
#include "tool_parse.h"

static int respond_api_error(http_request_t *req, const api_error_t *e)
{
    char *text = api_error_json(e);
    if (text == NULL)
        return http_respond_error(req, 500, "server_error", NULL, NULL, "out of memory");
    int ret = http_respond(req, e->status, "application/json", text, strlen(text));
    free(text);
    return ret;
}

/*
 * The request's prompt as tokens: token ids as sent, or the text or the
 * messages rendered and encoded by the engine.  *ids is malloc'd unless
 * *own is 0 (ids sent by the client, borrowed from ar).  A prompt the
 * engine refuses fills *e (400); other failures leave e->status 0.
 */
static int encode_prompt(daemon_t *d, const api_request_t *ar, int32_t **ids, size_t *n,
                         int *own, api_error_t *e)
{
    *own = 0;
    if (ar->kind == API_COMPLETIONS && ar->prompt_tokens != NULL) {
        *ids = ar->prompt_tokens;
        *n = ar->n_prompt_tokens;
        return 0;
    }
    engine_prompt_t p = { .text = ar->prompt, .len = ar->prompt_len };
    engine_msg_t *msgs = NULL;
    engine_tool_call_t *calls = NULL;
    if (ar->kind == API_CHAT) {
        size_t n_calls = 0;
        for (size_t i = 0; i < ar->n_messages; i++)
            n_calls += ar->messages[i].n_tool_calls;
        msgs = calloc(ar->n_messages ? ar->n_messages : 1, sizeof *msgs);
        calls = calloc(n_calls ? n_calls : 1, sizeof *calls);
        if (msgs == NULL || calls == NULL) {
            free(msgs);
            free(calls);
            return ERR_NOMEM;
        }
        n_calls = 0;
        for (size_t i = 0; i < ar->n_messages; i++) {
            const api_message_t *m = &ar->messages[i];
            msgs[i] = (engine_msg_t){ .role = m->role, .content = m->content,
                                      .tool_calls = calls + n_calls, .n_tool_calls = m->n_tool_calls };
            for (size_t c = 0; c < m->n_tool_calls; c++)
                calls[n_calls++] = (engine_tool_call_t){ m->tool_calls[c].name,
                                                         m->tool_calls[c].arguments };
        }
        p.messages = msgs;
        p.n_messages = ar->n_messages;
        p.tools = (const char *const *)ar->tools;
        p.n_tools = ar->n_tools;
    }
    char err[ERR_MSG_MAX];
    int rc = engine_encode_prompt(d->engine, &p, ids, n, err, sizeof err);
    free(msgs);
    free(calls);
    *own = rc == 0;
    if (rc == ERR_UNSUPPORTED || rc == ERR_INVALID || rc == ERR_RANGE || rc == ERR_TOOLONG) {
        e->status = 400;
        snprintf(e->message, sizeof e->message, "%s", err);
        snprintf(e->param, sizeof e->param, ar->kind == API_CHAT ? "messages" : "prompt");
        if (ar->n_tools > 0 && strncmp(err, "tools", 5) == 0)
            snprintf(e->param, sizeof e->param, "tools");
    }
    return rc;
}

/*
 * The constraint of a request with tools and tool_choice other than none:
 * the calls' grammar for the chat format, lazy (from its trigger) for
 * auto.  Fills ar->constraint_* and *trigger, or *e (400) when the format
 * has no tool calls or another constraint was asked for.
 */
static int tool_constraint(const daemon_t *d, api_request_t *ar, const char **trigger,
                           api_error_t *e)
{
    *trigger = NULL;
    if (ar->tool_choice == API_TOOLS_NONE)
        return 0;
    if (ar->constraint_kind != 0)
        return api_error_set(e, ERR_UNSUPPORTED, 400, NULL, ar->constraint_param, NULL,
                             "%s: an output constraint and tool calls cannot be combined "
                             "(use tool_choice \"none\")", ar->constraint_param);
    if (ar->stream)
        return api_error_set(e, ERR_UNSUPPORTED, 400, NULL, "stream", NULL, "stream: streaming "
                             "tool calls is not served yet; send stream false or tool_choice "
                             "\"none\"");
    char *spec = tool_spec_json(ar, d->info.chat_kind, trigger);
    if (spec == NULL)
        return api_error_set(e, ERR_UNSUPPORTED, 400, NULL, "tools", NULL, "tools: the %s chat "
                             "template has no tool format", d->info.chat_kind ? d->info.chat_kind
                                                                               : "model's");
    ar->constraint_kind = ENGINE_CONSTRAINT_TOOL_CALLS;
    ar->constraint_src = spec;
    ar->constraint_len = strlen(spec);
    snprintf(ar->constraint_param, sizeof ar->constraint_param, "tools");
    if (ar->tool_choice != API_TOOLS_AUTO)
        *trigger = NULL;   /* the whole output is the calls */
    return 0;
}

/*
 * The prefix-cache salt of a request: none (the shared cache) unless the
 * client sent cache_salt or prefix-cache-per-key is on; then a digest over
 * the key's id (zeros without keys) and the client's salt.
 */
static size_t cache_salt(const daemon_t *d, const api_request_t *ar,
                         const uint8_t key_id[AUTH_KEY_ID_BYTES], uint8_t out[SHA256_BYTES])
{
    int per_key = d->cfg->prefix_cache_per_key && auth_count(d->auth) > 0;
    if (!per_key && ar->cache_salt == NULL)
        return 0;
    static const uint8_t zero[AUTH_KEY_ID_BYTES];
    static const char tag[] = "llamad cache salt v1";
    sha256_t s;
    sha256_init(&s);
    sha256_update(&s, tag, sizeof tag);
    sha256_update(&s, per_key ? key_id : zero, AUTH_KEY_ID_BYTES);
    if (ar->cache_salt != NULL)
        sha256_update(&s, ar->cache_salt, ar->cache_salt_len);
    sha256_final(&s, out);
    return SHA256_BYTES;
}

/* A non-streaming job's engine event: collect the text (and the token events when
 * logprobs are asked for); the FINISH event answers. */
static void on_event(job_t *j, const engine_event_t *ev)
{
    daemon_t *d = j->d;
    if (ev->text_len > 0 && buf_append(&j->text, ev->text, ev->text_len) != 0)
        goto nomem;
    if (ev->kind == ENGINE_EV_TOKEN) {
        if (j->want_logprobs) {
            if (j->n_events == j->cap_events) {
                size_t cap = j->cap_events ? j->cap_events * 2 : 64;
                engine_event_t **p = realloc(j->events, cap * sizeof *p);
                if (p == NULL)
                    goto nomem;
                j->events = p;
                j->cap_events = cap;
            }
            engine_event_t *copy = malloc(sizeof *copy);
            if (copy == NULL)
                goto nomem;
            *copy = *ev;
            j->events[j->n_events++] = copy;
        }
        return;
    }
    switch (ev->finish) {
    case ENGINE_FINISH_STOP:
    case ENGINE_FINISH_LENGTH: {
        tool_reply_t tr = { 0 };
        if (j->req.tool_choice != API_TOOLS_NONE &&
            tool_parse_reply(j->text.data ? j->text.data : "", j->text.len, d->info.chat_kind,
                             &tr) != 0)
            goto nomem;
        api_result_t res = {
            .text = j->text.data ? j->text.data : "", .text_len = j->text.len,
            .finish_reason = engine_finish_name(ev->finish),
            .prompt_tokens = ev->prompt_tokens, .completion_tokens = ev->completion_tokens,
            .cached_tokens = ev->cached_tokens,
            .token_events = (const engine_event_t *const *)j->events, .n_tokens = j->n_events,
            .want_logprobs = j->want_logprobs, .tok = d->info.tok,
        };
        if (tr.n_calls > 0) {
            res.text = tr.content;
            res.text_len = strlen(tr.content);
            res.tool_calls = tr.calls;
            res.n_tool_calls = tr.n_calls;
            res.finish_reason = "tool_calls";
            metrics_tool_calls(d->metrics);
        }
        char *json = api_response_json(&j->meta, &res);
        tool_reply_free(&tr);
        if (json == NULL)
            goto nomem;
        http_complete(j->http, 200, "application/json", json, strlen(json));
        free(json);
        return;
    }
    case ENGINE_FINISH_CANCELLED:
        j->http->retry_after = daemon_retry_after(d);
        http_complete_error(j->http, 503, "server_error", NULL, "server_shutting_down",
                            "the request was cancelled: the server is shutting down");
        return;
    case ENGINE_FINISH_ERROR:
    default:
        http_complete_error(j->http, 500, "server_error", NULL, "engine_error",
                            "generation failed: %s", ev->message);
        return;
    }
nomem:
    if (!j->engine_done)
        engine_cancel(d->engine, j->engine_id);
    http_complete_error(j->http, 500, "server_error", NULL, NULL, "out of memory");
}

int generate_handle(daemon_t *d, http_request_t *req, api_kind_t kind, const char *label,
                           const uint8_t key_id[AUTH_KEY_ID_BYTES])
{
    api_limits_t lim = {
        .n_vocab = d->info.n_vocab, .n_ctx = d->info.n_ctx,
        .max_prompt_bytes = (size_t)d->info.n_ctx * 16 < 65536 ? 65536 : (size_t)d->info.n_ctx * 16,
        .max_json_depth = 64, .model_name = d->info.model_name,
        .model_aliases = d->cfg->served_model_name,
    };
    api_request_t ar;
    api_error_t ae;
    memset(&ar, 0, sizeof ar);
    memset(&ae, 0, sizeof ae);
    ae.type = "invalid_request_error";
    if (api_parse_request(kind, req->body, req->body_len, &lim, &ar, &ae) != 0)
        return respond_api_error(req, &ae);

    int32_t *ids = NULL;
    size_t n_ids = 0;
    int own_ids = 0;
    int rc = encode_prompt(d, &ar, &ids, &n_ids, &own_ids, &ae);
    if (rc != 0) {
        api_request_free(&ar);
        if (ae.status != 0)
            return respond_api_error(req, &ae);
        return http_respond_error(req, 500, "server_error", NULL, NULL, "tokenizer failure: %s",
                                  err_str(rc));
    }
    const char *param = kind == API_CHAT ? "messages" : "prompt";
    if (n_ids == 0) {
        if (own_ids)
            free(ids);
        api_request_free(&ar);
        return http_respond_error(req, 400, "invalid_request_error", param, NULL,
                                  "the prompt is empty");
    }
    if (n_ids >= d->info.n_ctx) {
        size_t n = n_ids;
        if (own_ids)
            free(ids);
        api_request_free(&ar);
        return http_respond_error(req, 400, "invalid_request_error", param,
                                  "context_length_exceeded",
                                  "This model's maximum context length is %u tokens. However, your "
                                  "prompt has %zu tokens.", d->info.n_ctx, n);
    }

    const char *trigger = NULL;
    if (tool_constraint(d, &ar, &trigger, &ae) != 0) {
        if (own_ids)
            free(ids);
        api_request_free(&ar);
        return respond_api_error(req, &ae);
    }
    engine_constraint_t *constraint = NULL;
    if (ar.constraint_kind != 0) {
        char cerr[ERR_MSG_MAX];
        rc = engine_constraint_compile(d->engine, (engine_constraint_kind_t)ar.constraint_kind,
                                       ar.constraint_src, ar.constraint_len, &constraint, cerr,
                                       sizeof cerr);
        if (rc != 0) {
            char cparam[sizeof ar.constraint_param];
            memcpy(cparam, ar.constraint_param, sizeof cparam);
            if (own_ids)
                free(ids);
            api_request_free(&ar);
            if (rc == ERR_NOMEM)
                return http_respond_error(req, 503, "server_error", NULL, NULL, "out of memory");
            return http_respond_error(req, 400, "invalid_request_error", cparam, NULL, "%s: %s",
                                      cparam, cerr);
        }
    }

    engine_request_t er;
    engine_request_init(&er);
    er.constraint = constraint;
    er.constraint_trigger = trigger;
    er.tokens = ids;
    er.n_tokens = n_ids;
    er.sampling = ar.sampling;
    er.max_tokens = ar.max_tokens;
    er.stop = (const char *const *)ar.stop;
    er.n_stop = ar.n_stop;
    er.stop_tokens = ar.stop_token_ids;
    er.n_stop_tokens = ar.n_stop_token_ids;
    er.ignore_eos = ar.ignore_eos;
    er.min_tokens = ar.min_tokens;
    er.include_stop_str = ar.include_stop_str;
    er.keep_special = ar.keep_special;
    er.priority = ar.priority;
    uint8_t salt[SHA256_BYTES];
    er.cache_salt = salt;
    er.cache_salt_len = cache_salt(d, &ar, key_id, salt);
    char err[ERR_MSG_MAX];
    engine_stats_t st = d->stats;
    /* the job first: the engine request carries it as its cookie */
    job_t *j = job_create(d, req, label);
    if (j == NULL) {
        engine_constraint_release(constraint);
        if (own_ids)
            free(ids);
        api_request_free(&ar);
        return http_respond_error(req, 500, "server_error", NULL, NULL, "out of memory");
    }
    rc = job_submit(j, &er, err, sizeof err);
    engine_constraint_release(constraint);   /* the engine's request holds its own */
    if (own_ids)
        free(ids);
    if (rc != 0) {
        j->http = NULL;
        job_release(j);     /* never submitted: freed at once */
        api_request_free(&ar);
        switch (rc) {
        case ERR_TOOLONG:
            return http_respond_error(req, 400, "invalid_request_error", "max_tokens",
                                      "context_length_exceeded", "%s", err);
        case ERR_INVALID:
        case ERR_RANGE:
            return http_respond_error(req, 400, "invalid_request_error", NULL, NULL, "%s", err);
        case ERR_FULL:
            req->retry_after = daemon_retry_after(d);
            return http_respond_error(req, 429, "server_overloaded", NULL, "server_overloaded",
                                      "the request queue is full; retry after %u s",
                                      req->retry_after);
        default:
            req->retry_after = daemon_retry_after(d);
            return http_respond_error(req, 503, "server_error", NULL, "engine_unavailable",
                                      "the engine cannot take requests: %s", err);
        }
    }

    if (ar.constraint_kind != 0)
        metrics_constrained(d->metrics);
    j->req = ar;
    j->likely_queued = st.queued > 0 || st.running >= d->info.max_seqs;
    j->stream = ar.stream;
    j->on_event = j->stream ? stream_on_event : on_event;
    j->want_logprobs = ar.logprobs;
    snprintf(j->id, sizeof j->id, "%s-%016" PRIx64 "%08" PRIx64,
             kind == API_CHAT ? "chatcmpl" : "cmpl", (uint64_t)time(NULL) ^ (j->t_submit << 20),
             ++d->next_seq);
    j->meta = (api_resp_meta_t){ j->id, daemon_model_id(d), (int64_t)time(NULL), kind, 0 };
    metrics_observe(d->metrics, METRIC_QUEUE, (j->t_submit - j->t_arrive) / 1e9);
    req->user = j;
    if (j->stream)
        return stream_start(j);
    return http_defer(req);
}
