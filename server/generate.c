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
 * Prompt `i` of the request as tokens: token ids as sent, or the text or
 * the messages rendered and encoded by the engine.  *ids is malloc'd
 * unless *own is 0 (ids sent by the client, borrowed from ar).  A prompt
 * the engine refuses fills *e (400); other failures leave e->status 0.
 */
static int encode_prompt(daemon_t *d, const api_request_t *ar, size_t i, int32_t **ids,
                         size_t *n, int *own, api_error_t *e)
{
    *own = 0;
    const api_prompt_t *lp = ar->prompts != NULL ? &ar->prompts[i] : NULL;
    if (lp != NULL && lp->tokens != NULL) {
        *ids = lp->tokens;
        *n = lp->n_tokens;
        return 0;
    }
    if (ar->kind == API_COMPLETIONS && ar->prompt_tokens != NULL) {
        *ids = ar->prompt_tokens;
        *n = ar->n_prompt_tokens;
        return 0;
    }
    engine_prompt_t p = { .text = ar->prompt, .len = ar->prompt_len };
    if (lp != NULL)
        p = (engine_prompt_t){ .text = lp->text, .len = lp->len };
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
        if (lp != NULL)
            snprintf(e->param, sizeof e->param, "prompt[%zu]", i);
        else
            snprintf(e->param, sizeof e->param, ar->kind == API_CHAT ? "messages" : "prompt");
        if (ar->n_tools > 0 && strncmp(err, "tools", 5) == 0)
            snprintf(e->param, sizeof e->param, "tools");
    }
    return rc;
}

/* The encoded prompts of a request: [n] token lists, each owned or borrowed from the request. */
typedef struct {
    int32_t **ids;
    size_t *n_ids;
    int *own;
    size_t n;
} prompts_t;

static void prompts_free(prompts_t *p)
{
    for (size_t i = 0; i < p->n && p->own != NULL; i++)
        if (p->own[i])
            free(p->ids[i]);
    free(p->ids);
    free(p->n_ids);
    free(p->own);
    memset(p, 0, sizeof *p);
}

/*
 * Encode every prompt and check that each fits the context.  0, or an
 * error with *e filled for the client (e->status 0: a server failure,
 * answer 500).
 */
static int prompts_encode(daemon_t *d, const api_request_t *ar, prompts_t *p, api_error_t *e)
{
    p->n = ar->n_prompts > 0 ? ar->n_prompts : 1;
    p->ids = calloc(p->n, sizeof *p->ids);
    p->n_ids = calloc(p->n, sizeof *p->n_ids);
    p->own = calloc(p->n, sizeof *p->own);
    if (p->ids == NULL || p->n_ids == NULL || p->own == NULL)
        return ERR_NOMEM;
    for (size_t i = 0; i < p->n; i++) {
        int rc = encode_prompt(d, ar, i, &p->ids[i], &p->n_ids[i], &p->own[i], e);
        if (rc != 0)
            return rc;
        char param[64];
        if (ar->prompts != NULL)
            snprintf(param, sizeof param, "prompt[%zu]", i);
        else
            snprintf(param, sizeof param, ar->kind == API_CHAT ? "messages" : "prompt");
        if (p->n_ids[i] == 0)
            return api_error_set(e, ERR_INVALID, 400, NULL, param, NULL, "the prompt is empty");
        if (p->n_ids[i] >= d->info.n_ctx)
            return api_error_set(e, ERR_TOOLONG, 400, NULL, param, "context_length_exceeded",
                                 "This model's maximum context length is %u tokens. However, "
                                 "your prompt has %zu tokens.", d->info.n_ctx, p->n_ids[i]);
    }
    return 0;
}

/* echo: the text of prompt i as the client sent it, or its token ids spelled. */
static int echo_text(daemon_t *d, const api_request_t *ar, const prompts_t *p, size_t i,
                     char **text, size_t *len)
{
    const char *src = ar->prompts != NULL ? ar->prompts[i].text : ar->prompt;
    size_t n = ar->prompts != NULL ? ar->prompts[i].len : ar->prompt_len;
    if (src == NULL)
        return engine_detokenize(d->engine, p->ids[i], p->n_ids[i], text, len);
    *text = malloc(n + 1);
    if (*text == NULL)
        return ERR_NOMEM;
    memcpy(*text, src, n);
    (*text)[n] = '\0';
    *len = n;
    return 0;
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

/* The index of choice c in the response: prompt by prompt, then rank (OpenAI's order). */
static uint32_t choice_index(const job_t *j, const job_choice_t *c, uint32_t rank)
{
    return c->prompt * j->req.n + rank;
}

/* Rank the best_of sequences of prompt p by cumulative log-probability (the first
   best_of entries of order[], best first; stable for equal sums). */
static void rank_prompt(const job_t *j, uint32_t p, size_t *order)
{
    uint32_t b = j->req.best_of;
    for (uint32_t s = 0; s < b; s++) {
        size_t k = (size_t)p * b + s;
        uint32_t at = s;
        while (at > 0 && j->choices[order[at - 1]].sum_logprob < j->choices[k].sum_logprob) {
            order[at] = order[at - 1];
            at--;
        }
        order[at] = k;
    }
}

/* Every choice has finished: answer with the best n of each prompt. */
/*
 * With tools: parse a choice's reply (r's text) into its calls, kept in
 * *tr, and point r at them (finish_reason tool_calls, the text besides the
 * calls as content).  0 when out of memory.
 */
static int choice_tool_calls(job_t *j, api_result_t *r, tool_reply_t *tr)
{
    if (tool_parse_reply(r->text, r->text_len, j->d->info.chat_kind, tr) != 0)
        return 0;
    if (tr->n_calls == 0)
        return 1;
    r->text = tr->content;
    r->text_len = strlen(tr->content);
    r->tool_calls = tr->calls;
    r->n_tool_calls = tr->n_calls;
    r->finish_reason = "tool_calls";
    metrics_tool_calls(j->d->metrics);
    return 1;
}

static int answer(job_t *j)
{
    daemon_t *d = j->d;
    uint32_t n = j->req.n, b = j->req.best_of;
    size_t n_prompts = j->n_choices / b;
    api_result_t *res = calloc(n_prompts * n, sizeof *res);
    uint32_t *idx = calloc(n_prompts * n, sizeof *idx);
    size_t *order = calloc(b, sizeof *order);
    tool_reply_t *tr = calloc(n_prompts * n, sizeof *tr);   /* each choice parses its own */
    char *json = NULL;
    int ok = res != NULL && idx != NULL && order != NULL && tr != NULL;
    if (ok) {
        for (uint32_t p = 0; p < n_prompts; p++) {
            rank_prompt(j, p, order);
            for (uint32_t r = 0; r < n; r++) {
                const job_choice_t *c = &j->choices[b > n ? order[r] : (size_t)p * b + r];
                size_t at = (size_t)p * n + r;
                idx[at] = choice_index(j, c, r);
                res[at] = (api_result_t){
                    .text = c->text.data ? c->text.data : "", .text_len = c->text.len,
                    .finish_reason = engine_finish_name(j->req.echo_only ? ENGINE_FINISH_LENGTH
                                                                         : c->finish),
                    .prompt_tokens = c->prompt_tokens,
                    .completion_tokens = j->req.echo_only ? 0 : c->completion_tokens,
                    .cached_tokens = c->cached_tokens,
                    .token_events = (const engine_event_t *const *)c->events,
                    .n_tokens = c->n_events, .want_logprobs = j->want_logprobs,
                    .tok = d->info.tok,
                    /* scored once per prompt, by its first sequence (submit) */
                    .prompt_lps = (const api_prompt_lp_t *)(void *)j->choices[(size_t)p * b]
                                      .prompt_lps.data,
                    .n_prompt_lps = j->choices[(size_t)p * b].prompt_lps.len /
                                    sizeof(api_prompt_lp_t),
                    .prompt_first = c->prompt_first, .echo_len = c->echo_len,
                    .prompt_logprobs = j->req.prompt_logprobs, .prompt_top = j->req.prompt_top,
                    .echo_top = j->req.top_logprobs,
                };
                if (j->req.tool_choice != API_TOOLS_NONE &&
                    !choice_tool_calls(j, &res[at], &tr[at]))
                    ok = 0;
            }
        }
    }
    if (ok)
        json = api_responses_json(&j->meta, res, n_prompts * n, idx, j->prompt_tokens,
                                  j->req.echo_only ? 0 : j->completion_tokens, j->cached_tokens);
    for (size_t i = 0; tr != NULL && i < n_prompts * n; i++)
        tool_reply_free(&tr[i]);
    free(tr);
    free(res);
    free(idx);
    free(order);
    if (json == NULL)
        return ERR_NOMEM;
    http_complete(j->http, 200, "application/json", json, strlen(json));
    free(json);
    return 0;
}

/* A non-streaming job's engine event: collect the choice's text (and its token events
 * when logprobs are asked for); the last choice's FINISH answers, and the first that
 * fails answers with its error and cancels the others. */
static void on_event(job_t *j, job_choice_t *c, const engine_event_t *ev)
{
    daemon_t *d = j->d;
    /* max_tokens 0 with echo: the one token the prefill samples is not part of the answer */
    if (!j->req.echo_only && ev->text_len > 0 && buf_append(&c->text, ev->text, ev->text_len) != 0)
        goto nomem;
    if (ev->kind == ENGINE_EV_TOKEN && j->req.echo_only)
        return;
    if (ev->kind == ENGINE_EV_PROMPT) {
        /* the prompt's choices share one computation (a fork): kept with its first */
        if (job_keep_prompt_lp(c - c->seq, ev) != 0)
            goto nomem;
        return;
    }
    if (ev->kind == ENGINE_EV_TOKEN) {
        if (j->want_logprobs && job_keep_event(c, ev) != 0)
            goto nomem;
        return;
    }
    switch (ev->finish) {
    case ENGINE_FINISH_STOP:
    case ENGINE_FINISH_LENGTH:
        if (j->n_done < j->n_choices)
            return;
        j->answered = 1;
        if (answer(j) != 0)
            goto nomem;
        return;
    case ENGINE_FINISH_CANCELLED:
        j->answered = 1;
        job_cancel(j);
        j->http->retry_after = daemon_retry_after(d);
        http_complete_error(j->http, 503, "server_error", NULL, "server_shutting_down",
                            "the request was cancelled: the server is shutting down");
        return;
    case ENGINE_FINISH_ERROR:
    default:
        j->answered = 1;
        job_cancel(j);
        http_complete_error(j->http, 500, "server_error", NULL, "engine_error",
                            "generation failed: %s", ev->message);
        return;
    }
nomem:
    j->answered = 1;
    job_cancel(j);
    http_complete_error(j->http, 500, "server_error", NULL, NULL, "out of memory");
}

/* The engine refused a submission: the client's answer. */
static int respond_submit_error(daemon_t *d, http_request_t *req, int rc, const char *err)
{
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

    prompts_t pr;
    memset(&pr, 0, sizeof pr);
    int rc = prompts_encode(d, &ar, &pr, &ae);
    if (rc != 0) {
        prompts_free(&pr);
        api_request_free(&ar);
        if (ae.status != 0)
            return respond_api_error(req, &ae);
        return http_respond_error(req, 500, "server_error", NULL, NULL, "tokenizer failure: %s",
                                  err_str(rc));
    }

    const char *trigger = NULL;
    if (tool_constraint(d, &ar, &trigger, &ae) != 0) {
        prompts_free(&pr);
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
            prompts_free(&pr);
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
    er.sampling = ar.sampling;
    er.max_tokens = ar.echo_only ? 1 : ar.max_tokens; /* the prefill samples one anyway */
    er.stop = (const char *const *)ar.stop;
    er.n_stop = ar.n_stop;
    er.stop_tokens = ar.stop_token_ids;
    er.n_stop_tokens = ar.n_stop_token_ids;
    er.ignore_eos = ar.ignore_eos;
    er.min_tokens = ar.min_tokens;
    er.include_stop_str = ar.include_stop_str;
    er.keep_special = ar.keep_special;
    er.priority = ar.priority;
    /* prompt log-probabilities: for echo with logprobs, and for vLLM's prompt_logprobs */
    int score = (ar.echo && ar.logprobs) || ar.prompt_logprobs;
    er.prompt_top = ar.echo && ar.logprobs && ar.top_logprobs > ar.prompt_top ? ar.top_logprobs
                                                                              : ar.prompt_top;
    uint8_t salt[SHA256_BYTES];
    er.cache_salt = salt;
    er.cache_salt_len = cache_salt(d, &ar, key_id, salt);
    char err[ERR_MSG_MAX] = "";
    engine_stats_t st = d->stats;
    /* the job first: each engine request carries its choice as its cookie */
    job_t *j = job_create(d, req, label, pr.n * ar.best_of);
    rc = j != NULL ? 0 : ERR_NOMEM;
    /* one engine submission per prompt with best_of choices, the prompt computed once;
       sequence s of a prompt samples with seed + s (docs/API.md) */
    for (size_t k = 0; rc == 0 && k < j->n_choices; k++) {
        job_choice_t *c = &j->choices[k];
        c->prompt = (uint32_t)(k / ar.best_of);
        c->seq = (uint32_t)(k % ar.best_of);
        if (ar.echo) {
            rc = echo_text(d, &ar, &pr, c->prompt, &c->echo, &c->echo_len);
            if (rc == 0 && !ar.stream)
                rc = buf_append(&c->text, c->echo, c->echo_len);
            if (rc != 0)
                break;
        }
        c->prompt_first = pr.ids[c->prompt][0];
        if (c->seq + 1 < ar.best_of)
            continue;   /* the prompt's last choice submits them all */
        /* the prompt is computed once for all its choices (a fork), and scored once */
        er.prompt_logprobs = score;
        er.speculative = ar.speculative;
        er.tokens = pr.ids[c->prompt];
        er.n_tokens = pr.n_ids[c->prompt];
        er.sampling.seed = ar.sampling.seed;
        rc = job_submit(j, c - c->seq, ar.best_of, &er, err, sizeof err);
    }
    engine_constraint_release(constraint);   /* the engine's requests hold their own */
    prompts_free(&pr);
    if (rc != 0) {
        if (j != NULL) {
            job_cancel(j);     /* the choices already queued end as cancelled */
            j->gone = 1;
            j->http = NULL;
            job_release(j);    /* freed at once, or after their FINISH events */
        }
        api_request_free(&ar);
        if (rc == ERR_NOMEM)
            return http_respond_error(req, 500, "server_error", NULL, NULL, "out of memory");
        return respond_submit_error(d, req, rc, err);
    }

    if (ar.constraint_kind != 0)
        metrics_constrained(d->metrics);
    j->req = ar;
    j->likely_queued = st.queued > 0 || st.running >= d->info.max_seqs;
    j->stream = ar.stream;
    j->tools = ar.tool_choice != API_TOOLS_NONE;
    j->tool_trigger = trigger;
    j->on_event = j->stream ? stream_on_event : on_event;
    j->want_logprobs = ar.logprobs;
    snprintf(j->id, sizeof j->id, "%s-%016" PRIx64 "%08" PRIx64,
             kind == API_CHAT ? "chatcmpl" : "cmpl", (uint64_t)time(NULL) ^ (j->t_submit << 20),
             ++d->next_seq);
    j->meta = (api_resp_meta_t){ .id = j->id, .model = daemon_model_id(d),
                                 .created = (int64_t)time(NULL), .kind = kind };
    metrics_observe(d->metrics, METRIC_QUEUE, (j->t_submit - j->t_arrive) / 1e9);
    req->user = j;
    if (j->stream)
        return stream_start(j);
    return http_defer(req);
}
