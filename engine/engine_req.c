/*
 * engine_req.c - one request's life inside the engine: checked and copied
 * at submission (on the caller's thread), then, on the engine thread,
 * each sampled token turned into text and an event, stop conditions
 * tested, and exactly one finish event.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engine_impl.h"
#include "base/err.h"

/*
 * The most text one token can add to a request's held text: its decoded
 * piece after UTF-8 repair, and at the end the U+FFFD of a cut character.
 * A token event that cannot be allocated leaves its text in held for the
 * next event; that may go on only while one more token's text still fits
 * one event (ENGINE_TEXT_MAX).
 */
#define REQ_PIECE_MAX (3 * (TOK_MAX_TOKEN_BYTES + 3) + 3)
_Static_assert(ENGINE_MAX_STOP_LEN + REQ_PIECE_MAX <= ENGINE_TEXT_MAX, "an event holds a token's text");
_Static_assert(ENGINE_TEXT_MAX + REQ_PIECE_MAX < ENGINE_HELD_CAP, "held text never grows");

/* ---------------------------------------------------------------- submission */

void engine_request_init(engine_request_t *r)
{
    memset(r, 0, sizeof *r);
    sampler_params_init(&r->sampling);
}

static int penalties_on(const sampler_params_t *p)
{
    return p->repetition_penalty != 1.0f || p->presence_penalty != 0.0f || p->frequency_penalty != 0.0f;
}

int req_create(engine_t *e, const engine_request_t *r, request_t **out, char *err, size_t errlen)
{
    int rc;
    *out = NULL;
    if (r->n_tokens == 0 || r->tokens == NULL)
        return err_set(err, errlen, ERR_INVALID, "prompt: no tokens");
    if (r->n_tokens >= e->n_ctx)
        return err_set(err, errlen, ERR_TOOLONG, "prompt: %zu tokens; this model's context holds %u, "
                       "so a prompt may have at most %u", r->n_tokens, e->n_ctx, e->n_ctx - 1);
    for (size_t i = 0; i < r->n_tokens; i++)
        if (r->tokens[i] < 0 || (uint32_t)r->tokens[i] >= e->n_vocab)
            return err_set(err, errlen, ERR_RANGE, "prompt: token %zu is %d, outside the vocabulary [0, %u)",
                           i, r->tokens[i], e->n_vocab);
    uint32_t room = e->n_ctx - (uint32_t)r->n_tokens;
    if (r->max_tokens > room)
        return err_set(err, errlen, ERR_TOOLONG, "max_tokens: %u tokens after a prompt of %zu exceed "
                       "this model's context of %u (at most %u may be generated)", r->max_tokens,
                       r->n_tokens, e->n_ctx, room);
    if ((rc = sampler_params_validate(&r->sampling, e->n_vocab, err, errlen)) != 0)
        return rc;
    if (r->n_stop_tokens > ENGINE_MAX_STOP_TOKENS || (r->n_stop_tokens > 0 && r->stop_tokens == NULL))
        return err_set(err, errlen, ERR_RANGE, "stop_token_ids: %zu ids (at most %d)", r->n_stop_tokens,
                       ENGINE_MAX_STOP_TOKENS);
    for (size_t i = 0; i < r->n_stop_tokens; i++)
        if (r->stop_tokens[i] < 0 || (uint32_t)r->stop_tokens[i] >= e->n_vocab)
            return err_set(err, errlen, ERR_RANGE, "stop_token_ids: %d is outside the vocabulary [0, %u)",
                           r->stop_tokens[i], e->n_vocab);
    if (r->prompt_logprobs && r->prompt_top > SAMPLER_MAX_LOGPROBS)
        return err_set(err, errlen, ERR_RANGE, "prompt_logprobs: %u is out of range [0, %d]",
                       r->prompt_top, SAMPLER_MAX_LOGPROBS);
    if (r->cache_salt_len > ENGINE_MAX_SALT || (r->cache_salt_len > 0 && r->cache_salt == NULL))
        return err_set(err, errlen, ERR_RANGE, "cache_salt: %zu bytes (at most %d)", r->cache_salt_len,
                       ENGINE_MAX_SALT);

    request_t *q = calloc(1, sizeof *q);
    if (q == NULL)
        return err_set(err, errlen, ERR_NOMEM, "out of memory");
    if ((rc = stop_set_init(&q->stop, r->stop, r->n_stop, err, errlen)) != 0) {
        free(q);
        return rc;
    }
    q->msg.kind = MSG_SUBMIT;
    q->cookie = r->cookie;
    /* the finish event is reserved now, so that finishing can never fail */
    if ((q->fin = event_reserve(e)) == NULL) {
        req_destroy(q);
        return err_set(err, errlen, ERR_NOMEM, "out of memory");
    }
    q->max_tokens = r->max_tokens ? r->max_tokens : room;
    q->ignore_eos = r->ignore_eos;
    q->include_stop_str = r->include_stop_str;
    q->min_tokens = r->min_tokens < q->max_tokens ? r->min_tokens : q->max_tokens;
    q->seq.priority = r->priority;
    q->n_stop_tokens = (uint32_t)r->n_stop_tokens;
    if (r->n_stop_tokens > 0)
        memcpy(q->stop_tokens, r->stop_tokens, r->n_stop_tokens * sizeof(int32_t));
    q->sp = r->sampling;
    q->speculate = r->speculative > 0 || (r->speculative == 0 && e->speculative);
    tok_decoder_init(&q->dec, e->model->tok, r->keep_special ? 0 : TOK_DECODE_SKIP_SPECIAL);
    tok_text_init(&q->held);

    uint32_t cap = (uint32_t)r->n_tokens + q->max_tokens;
    sched_seq_t *s = &q->seq;
    s->owner = q;
    s->n_prompt = s->n_tokens = (uint32_t)r->n_tokens;
    s->cap_tokens = cap;
    s->n_score = r->prompt_logprobs ? s->n_prompt - 1 : 0; /* rows 0 .. n_prompt - 2 */
    q->prompt_top = r->prompt_top;
    s->tokens = malloc((size_t)cap * sizeof(int32_t));
    if (s->tokens == NULL)
        goto nomem;
    memcpy(s->tokens, r->tokens, r->n_tokens * sizeof(int32_t));
    if (kv_seq_init(&s->kv, cap, e->backend->block_tokens) != 0)
        goto nomem;
    if (r->cache_salt_len > 0) {
        memcpy(q->salt, r->cache_salt, r->cache_salt_len);
        s->salt = q->salt;
        s->salt_len = r->cache_salt_len;
    }
    if (r->sampling.n_logit_bias > 0) {
        q->bias = malloc(r->sampling.n_logit_bias * sizeof *q->bias);
        if (q->bias == NULL)
            goto nomem;
        memcpy(q->bias, r->sampling.logit_bias, r->sampling.n_logit_bias * sizeof *q->bias);
    }
    q->sp.logit_bias = q->bias;
    if (penalties_on(&q->sp)) {
        q->use_pen = 1;
        if ((rc = sampler_seq_init(&q->pen, e->n_vocab, cap, err, errlen)) != 0 ||
            (rc = sampler_seq_add_prompt(&q->pen, s->tokens, s->n_prompt)) != 0) {
            req_destroy(q);
            return rc ? rc : ERR_NOMEM;
        }
    }
    if ((rc = constraint_req_init(e, q, r->constraint, r->constraint_trigger, err, errlen)) != 0) {
        req_destroy(q);
        return rc;
    }
    /* the held-text buffer never grows on the engine thread: reserve it now */
    char zero[ENGINE_HELD_CAP] = { 0 };
    if (tok_text_append(&q->held, zero, sizeof zero - 1) != 0)
        goto nomem;
    q->held.len = 0;
    *out = q;
    return 0;
nomem:
    req_destroy(q);
    return err_set(err, errlen, ERR_NOMEM, "out of memory for a request of %u tokens", cap);
}

void req_destroy(request_t *q)
{
    if (q == NULL)
        return;
    free(q->fin);
    free(q->seq.tokens);
    kv_seq_close(&q->seq.kv);
    free(q->bias);
    sampler_seq_close(&q->pen);
    constraint_req_close(q);
    tok_decoder_close(&q->dec);
    tok_text_close(&q->held);
    free(q);
}

/* ---------------------------------------------------------------- events */

static void set_text(engine_event_t *ev, const char *p, size_t n)
{
    /* cannot be exceeded (see ENGINE_TEXT_MAX); a bound, not a policy */
    if (n > ENGINE_TEXT_MAX)
        n = ENGINE_TEXT_MAX;
    memcpy(ev->text, p, n);
    ev->text[n] = '\0';
    ev->text_len = (uint32_t)n;
}

/* Drop the first n bytes of the held text. */
static void held_consume(request_t *q, size_t n)
{
    memmove(q->held.data, q->held.data + n, q->held.len - n);
    q->held.len -= n;
    q->held.data[q->held.len] = '\0';
}

/* ---------------------------------------------------------------- several choices */

int req_create_group(engine_t *e, const engine_request_t *r, uint32_t n, request_t **qs, char *err,
                     size_t errlen)
{
    /* siblings fork from a lead in groups that fit the running set together */
    uint32_t g = n < e->max_seqs ? n : e->max_seqs;
    engine_request_t one = *r;
    for (uint32_t i = 0; i < n; i++) {
        one.sampling.seed = r->sampling.seed + i;
        one.cookie = r->choice_cookies != NULL ? r->choice_cookies[i] : r->cookie;
        int rc = req_create(e, &one, &qs[i], err, errlen);
        if (rc != 0) {
            while (i > 0)
                req_destroy(qs[--i]);
            return rc;
        }
        request_t *q = qs[i], *lead = qs[i - i % g];
        q->choice = i;
        if (q == lead)
            continue;
        q->fork_lead = lead;
        request_t **tail = &lead->forks;
        while (*tail != NULL)
            tail = &(*tail)->fork_next;
        *tail = q;
        lead->seq.n_forks++;
    }
    return 0;
}

/* A sibling not yet forked ends: its lead forks one fewer. */
static void unpark(engine_t *e, request_t *q)
{
    request_t **p = &q->fork_lead->forks;
    while (*p != NULL && *p != q)
        p = &(*p)->fork_next;
    if (*p == q)
        *p = q->fork_next;
    sched_unfork(e->sched, &q->fork_lead->seq);
    q->fork_lead = NULL;
    q->fork_next = NULL;
}

/* A lead ends before its prompt was computed: its first sibling leads the rest, queued anew. */
static void promote(engine_t *e, request_t *q)
{
    request_t *f = q->forks;
    q->forks = NULL;
    f->fork_lead = NULL;
    f->forks = f->fork_next;
    f->fork_next = NULL;
    f->seq.n_forks = q->seq.n_forks - 1;
    q->seq.n_forks = 0;
    for (request_t *s = f->forks; s != NULL; s = s->fork_next)
        s->fork_lead = f;
    sched_add(e->sched, &f->seq);
}

void req_fork(engine_t *e, request_t *q, const float *row, const bk_argmax_t *g)
{
    /* after the step's sampling and scoring rows (engine.c) */
    float *keep = e->logits + ((uint64_t)e->max_seqs + SCHED_SCORE_ROWS) * e->n_vocab;
    float *tmp = keep + e->n_vocab;                                 /* [n_vocab] */
    if (row != NULL)
        memcpy(keep, row, (size_t)e->n_vocab * sizeof *keep);
    while (q->forks != NULL) {
        request_t *f = q->forks;
        q->forks = f->fork_next;
        f->fork_next = NULL;
        f->fork_lead = NULL;
        if (sched_fork(e->sched, &q->seq, &f->seq) != 0) {
            sched_unfork(e->sched, &q->seq);
            req_finish(e, f, ENGINE_FINISH_ERROR, -1, -1, "the prompt's KV blocks could not be shared");
            continue;
        }
        if (!f->dequeued) {
            f->dequeued = 1;
            e->n_dequeued++;
        }
        if (g != NULL) {
            /* the same row, the same greedy choice */
            sampler_result_t r = { .token = g->token, .logprob = g->logprob, .n_top = 0 };
            req_on_sample(e, f, g->token < 0 ? ERR_RANGE : 0, &r);
        } else {
            memcpy(tmp, keep, (size_t)e->n_vocab * sizeof *tmp);
            req_on_logits(e, f, tmp);
        }
    }
}

void req_finish(engine_t *e, request_t *q, engine_finish_t why, int32_t stop_token,
                int32_t stop_string, const char *message)
{
    engine_event_t *ev = event_use(e, q->fin, q->id, ENGINE_EV_FINISH);
    ev->cookie = q->cookie;
    ev->choice = q->choice;
    q->fin = NULL;
    /* text released whose token event could not be had, whatever the end */
    size_t n = q->unsent;
    if (why == ENGINE_FINISH_STOP || why == ENGINE_FINISH_LENGTH) {
        /* what was held back for a stop string that never came, and a cut character */
        if (tok_decoder_flush(&q->dec, &q->held) == 0 && q->held.len > n) {
            size_t emit;
            if (stop_scan(&q->stop, q->held.data + n, q->held.len - n, &emit))
                n += emit;
            else
                n = q->held.len;
        }
    }
    set_text(ev, q->held.data ? q->held.data : "", n);
    ev->finish = why;
    ev->stop_token = stop_token;
    ev->stop_string = stop_string;
    ev->prompt_tokens = q->seq.n_prompt;
    ev->completion_tokens = q->n_generated;
    ev->cached_tokens = q->seq.n_cached;
    ev->preemptions = q->seq.n_preempted;
    if (message != NULL)
        snprintf(ev->message, sizeof ev->message, "%s", message);
    e->finished[why - 1]++;
    if (!q->dequeued) {
        q->dequeued = 1;
        e->n_dequeued++;
    }
    if (q->fork_lead != NULL)
        unpark(e, q);
    sched_remove(e->sched, &q->seq);
    if (q->forks != NULL)
        promote(e, q);
    if (q->prev)
        q->prev->next = q->next;
    else
        e->live_head = q->next;
    if (q->next)
        q->next->prev = q->prev;
    else
        e->live_tail = q->prev;
    req_destroy(q);
}

static int is_stop_token(const engine_t *e, const request_t *q, int32_t t)
{
    if (!q->ignore_eos && tok_is_eog(e->model->tok, t))
        return 1;
    for (uint32_t i = 0; i < q->n_stop_tokens; i++)
        if (q->stop_tokens[i] == t)
            return 1;
    return 0;
}

/* Which stop string starts at text[at] (the earliest match stop_scan found). */
static int32_t stop_index(const request_t *q, const char *text, size_t len, size_t at)
{
    for (uint32_t i = 0; i < q->stop.n; i++)
        if (len - at >= q->stop.len[i] && memcmp(text + at, q->stop.str[i], q->stop.len[i]) == 0)
            return (int32_t)i;
    return -1;
}

/* min_tokens: until then the tokens that would end the request cannot be drawn. */
static void mask_stops(const engine_t *e, const request_t *q, float *logits)
{
    const int32_t *eog;
    size_t n = q->ignore_eos ? 0 : tok_eog_ids(e->model->tok, &eog);
    for (size_t i = 0; i < n; i++)
        if (eog[i] >= 0 && (uint32_t)eog[i] < e->n_vocab)
            logits[eog[i]] = -INFINITY;
    for (uint32_t i = 0; i < q->n_stop_tokens; i++)
        logits[q->stop_tokens[i]] = -INFINITY;  /* checked against n_vocab at submission */
}

int req_on_logits(engine_t *e, request_t *q, float *logits)
{
    sampler_result_t r;
    if (req_constrained(q)) {
        /* the mask goes first: bias, penalties and every filter see only allowed tokens */
        int mrc = q->mask_ready ? 0 : constraint_mask(e, q);
        q->mask_ready = 0;
        if (mrc != 0) {
            char msg[160];
            snprintf(msg, sizeof msg, "%s", mrc == ERR_STATE ? "the constraint allows no token "
                     "of this vocabulary here" : err_str(mrc));
            req_finish(e, q, ENGINE_FINISH_ERROR, -1, -1, msg);
            return 1;
        }
        constraint_apply(e, q, logits);
    }
    if (q->n_generated < q->min_tokens)
        mask_stops(e, q, logits);
    int rc = sampler_sample(e->sampler, &q->sp, q->use_pen ? &q->pen : NULL, logits, q->n_generated, &r);
    return req_on_sample(e, q, rc, &r);
}

int req_on_sample(engine_t *e, request_t *q, int rc, const sampler_result_t *res)
{
    if (rc != 0) {
        char msg[128];
        snprintf(msg, sizeof msg, "sampling failed: %s (the model produced no usable logits)", err_str(rc));
        req_finish(e, q, ENGINE_FINISH_ERROR, -1, -1, msg);
        return 1;
    }
    q->n_generated++;
    e->generated++;
    /* tokens up to min_tokens were drawn with the stop tokens masked */
    if (q->n_generated > q->min_tokens && is_stop_token(e, q, res->token)) {
        req_finish(e, q, ENGINE_FINISH_STOP, res->token, -1, NULL);
        return 1;
    }
    if (q->use_pen)
        sampler_seq_accept(&q->pen, res->token);
    int complete = 0;
    if (q->gm != NULL) {
        if (!req_constrained(q)) {
            if (constraint_watch(e, q, res->token) != 0) {
                req_finish(e, q, ENGINE_FINISH_ERROR, -1, -1, "the text after the constraint's "
                           "trigger is outside the constraint");
                return 1;
            }
        } else if (gm_feed_token(q->gm, e->gvocab, res->token) != 0) {
            req_finish(e, q, ENGINE_FINISH_ERROR, -1, -1, "the token chosen is outside the constraint");
            return 1;
        }
        /* a whole string of the language that nothing may extend: done */
        complete = gm_accepting(q->gm) && !gm_can_continue(q->gm);
    }

    /* new text joins what is held back, then the stop strings decide what may go
       (released text not yet sent, q->unsent, has been scanned already) */
    size_t emit = q->unsent;
    int stopped = 0;
    int32_t which = -1;
    if (tok_decoder_push(&q->dec, res->token, &q->held) == 0) {
        size_t more = q->held.len - q->unsent;   /* before min_tokens no stop string matches */
        if (q->n_generated >= q->min_tokens)
            stopped = stop_scan(&q->stop, q->held.data + q->unsent, more, &more);
        emit += more;
        if (stopped)
            which = stop_index(q, q->held.data, q->held.len, emit);
        if (stopped && which >= 0 && q->include_stop_str)
            emit += q->stop.len[which];
    }
    engine_event_t *ev = event_new(e, q->id, ENGINE_EV_TOKEN);
    if (ev != NULL) {
        ev->cookie = q->cookie;
        ev->choice = q->choice;
        set_text(ev, q->held.data, emit);
        ev->token = res->token;
        ev->index = q->n_generated - 1;
        ev->logprob = res->logprob;
        ev->n_top = res->n_top;
        memcpy(ev->top, res->top, res->n_top * sizeof res->top[0]);
        held_consume(q, emit);
        q->unsent = 0;
    } else {
        q->unsent = emit; /* the next event (the finish at the latest) carries it */
    }
    if (stopped) {
        q->held.len = q->unsent; /* the stop string and anything after it are never shown */
        req_finish(e, q, ENGINE_FINISH_STOP, -1, which, NULL);
        return 1;
    }
    if (complete) {
        req_finish(e, q, ENGINE_FINISH_STOP, -1, -1, NULL);
        return 1;
    }
    if (q->held.len + REQ_PIECE_MAX > ENGINE_TEXT_MAX) {
        /* events have failed for so long that one more token's text might not fit the next */
        req_finish(e, q, ENGINE_FINISH_ERROR, -1, -1, "out of memory for the request's events");
        return 1;
    }
    if (q->n_generated >= q->max_tokens || sched_append(e->sched, &q->seq, res->token) != 0) {
        req_finish(e, q, ENGINE_FINISH_LENGTH, -1, -1, NULL);
        return 1;
    }
    return 0;
}

int req_on_scores(engine_t *e, request_t *q, float *logits, uint32_t pos, uint32_t n)
{
    for (uint32_t j = 0; j < n; j++) {
        /* the row of position p gives the distribution of the token at p + 1 */
        uint32_t at = pos + j + 1;
        sampler_result_t r;
        uint32_t rank = 0;
        int rc = sampler_score(e->sampler, logits + (uint64_t)j * e->n_vocab,
                               q->seq.tokens[at], q->prompt_top, &r, &rank);
        engine_event_t *ev = rc == 0 ? event_new(e, q->id, ENGINE_EV_PROMPT) : NULL;
        if (ev == NULL) {
            req_finish(e, q, ENGINE_FINISH_ERROR, -1, -1,
                       rc != 0 ? "the model's logits are not finite"
                               : "out of memory for the request's events");
            return -1;
        }
        ev->cookie = q->cookie;
        ev->token = r.token;
        ev->index = at;
        ev->rank = rank;
        ev->logprob = r.logprob;
        ev->n_top = r.n_top;
        memcpy(ev->top, r.top, r.n_top * sizeof r.top[0]);
    }
    q->seq.n_scored = pos + n;
    return 0;
}
