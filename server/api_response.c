/*
 * api_response.c - engine results -> OpenAI response and chunk JSON.
 *
 * Built with cJSON, which escapes quotes, backslashes and control
 * characters but copies other bytes as they are; every string therefore
 * goes through api_utf8_repair() first, which replaces ill-formed UTF-8 and NUL
 * bytes with U+FFFD, so the output is always valid JSON.  Out of memory
 * anywhere gives NULL, never a partial document.  Loop thread; pure.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE   /* getrandom, strdup, strnlen under -std=c11 */
#endif
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "api.h"

/* ================================================================== */
/* A builder that remembers running out of memory                      */
/* ================================================================== */

typedef struct {
    int oom;
} jb_t;

/* Attach item to parent (an array when key is NULL); returns item or NULL. */
static cJSON *put(jb_t *b, cJSON *parent, const char *key, cJSON *item)
{
    if (item == NULL || parent == NULL) {
        cJSON_Delete(item);
        b->oom = 1;
        return NULL;
    }
    int ok = key != NULL ? cJSON_AddItemToObject(parent, key, item)
                         : cJSON_AddItemToArray(parent, item);
    if (!ok) {
        cJSON_Delete(item);
        b->oom = 1;
        return NULL;
    }
    return item;
}

static cJSON *str_n(const char *s, size_t len)
{
    char *t = api_utf8_repair(s, len);
    if (t == NULL)
        return NULL;
    cJSON *j = cJSON_CreateString(t);
    free(t);
    return j;
}

static cJSON *str_z(const char *s)
{
    return s != NULL ? str_n(s, strlen(s)) : cJSON_CreateNull();
}

/* A float log-probability, rounded to the 9 digits a float holds; -inf as OpenAI's -9999. */
static cJSON *logprob_num(float lp)
{
    if (!(lp > -9999.0f))
        return cJSON_CreateNumber(-9999.0);
    char buf[32];
    snprintf(buf, sizeof buf, "%.9g", (double)lp);
    return cJSON_CreateNumber(strtod(buf, NULL));
}

static char *finish(jb_t *b, cJSON *root)
{
    char *s = NULL;
    if (!b->oom && root != NULL)
        s = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    return s;
}

/* The fields every response and chunk opens with. */
static cJSON *envelope(jb_t *b, const api_resp_meta_t *m, const char *object)
{
    cJSON *root = cJSON_CreateObject();
    if (root == NULL) {
        b->oom = 1;
        return NULL;
    }
    put(b, root, "id", str_z(m->id != NULL ? m->id : ""));
    put(b, root, "object", cJSON_CreateString(object));
    put(b, root, "created", cJSON_CreateNumber((double)m->created));
    put(b, root, "model", str_z(m->model != NULL ? m->model : ""));
    return root;
}

static void add_usage(jb_t *b, cJSON *root, uint32_t prompt, uint32_t completion,
                      uint32_t cached)
{
    cJSON *u = put(b, root, "usage", cJSON_CreateObject());
    put(b, u, "prompt_tokens", cJSON_CreateNumber(prompt));
    put(b, u, "completion_tokens", cJSON_CreateNumber(completion));
    put(b, u, "total_tokens", cJSON_CreateNumber((double)prompt + (double)completion));
    cJSON *d = put(b, u, "prompt_tokens_details", cJSON_CreateObject());
    put(b, d, "cached_tokens", cJSON_CreateNumber(cached));
}

/* ================================================================== */
/* Log-probabilities                                                   */
/* ================================================================== */

static const char *piece(const tokenizer_t *tok, int32_t id, size_t *len)
{
    const char *p = tok != NULL ? engine_token_piece(tok, id, len) : NULL;
    if (p == NULL)
        *len = 0;
    return p != NULL ? p : "";
}

/* Chat: {token, logprob, bytes, [top_logprobs]} for one token. */
static cJSON *chat_entry(jb_t *b, const tokenizer_t *tok, int32_t id, float lp)
{
    cJSON *o = cJSON_CreateObject();
    if (o == NULL) {
        b->oom = 1;
        return NULL;
    }
    size_t len;
    const char *p = piece(tok, id, &len);
    put(b, o, "token", str_n(p, len));
    put(b, o, "logprob", logprob_num(lp));
    cJSON *bytes = put(b, o, "bytes", cJSON_CreateArray());
    for (size_t i = 0; i < len; i++)
        put(b, bytes, NULL, cJSON_CreateNumber((unsigned char)p[i]));
    return o;
}

static void chat_logprobs_add(jb_t *b, cJSON *content, const tokenizer_t *tok,
                              const engine_event_t *ev)
{
    cJSON *o = put(b, content, NULL, chat_entry(b, tok, ev->token, ev->logprob));
    cJSON *top = put(b, o, "top_logprobs", cJSON_CreateArray());
    uint32_t n_top = ev->n_top < SAMPLER_MAX_LOGPROBS ? ev->n_top : SAMPLER_MAX_LOGPROBS;
    for (uint32_t k = 0; k < n_top; k++)
        put(b, top, NULL, chat_entry(b, tok, ev->top[k].id, ev->top[k].logprob));
}

/* Completions: the four parallel arrays, created on the first token. */
typedef struct {
    cJSON *tokens, *token_logprobs, *top_logprobs, *text_offset;
} cmpl_lp_t;

static cJSON *cmpl_logprobs_new(jb_t *b, cmpl_lp_t *a)
{
    cJSON *o = cJSON_CreateObject();
    if (o == NULL) {
        b->oom = 1;
        return NULL;
    }
    a->tokens = put(b, o, "tokens", cJSON_CreateArray());
    a->token_logprobs = put(b, o, "token_logprobs", cJSON_CreateArray());
    a->top_logprobs = put(b, o, "top_logprobs", cJSON_CreateArray());
    a->text_offset = put(b, o, "text_offset", cJSON_CreateArray());
    return o;
}

/* Completions' {piece: logprob} map of n_top alternatives, into top. */
static void cmpl_top_add(jb_t *b, cJSON *top, const tokenizer_t *tok,
                         const sampler_logprob_t *alt, uint32_t n_top)
{
    if (n_top > SAMPLER_MAX_LOGPROBS)
        n_top = SAMPLER_MAX_LOGPROBS;
    for (uint32_t k = 0; k < n_top && top != NULL; k++) {
        size_t len;
        const char *p = piece(tok, alt[k].id, &len);
        char *key = api_utf8_repair(p, len);
        if (key == NULL) {
            b->oom = 1;
            break;
        }
        /* two tokens may spell the same after repair: keep the more probable */
        if (cJSON_GetObjectItemCaseSensitive(top, key) == NULL)
            put(b, top, key, logprob_num(alt[k].logprob));
        free(key);
    }
}

static void cmpl_logprobs_add(jb_t *b, cmpl_lp_t *a, const tokenizer_t *tok,
                              const engine_event_t *ev, uint64_t offset)
{
    size_t len;
    const char *p = piece(tok, ev->token, &len);
    put(b, a->tokens, NULL, str_n(p, len));
    put(b, a->token_logprobs, NULL, logprob_num(ev->logprob));
    cmpl_top_add(b, put(b, a->top_logprobs, NULL, cJSON_CreateObject()), tok, ev->top,
                 ev->n_top);
    put(b, a->text_offset, NULL, cJSON_CreateNumber((double)offset));
}

/*
 * Completions echo: prompt token i (0: the first, which has no
 * log-probability, null as OpenAI sends) with at most n_top alternatives;
 * *offset advances past its text.
 */
static void cmpl_prompt_add(jb_t *b, cmpl_lp_t *a, const api_result_t *r, size_t i,
                            uint32_t n_top, uint64_t *offset)
{
    const api_prompt_lp_t *lp = i > 0 ? &r->prompt_lps[i - 1] : NULL;
    size_t len;
    const char *p = piece(r->tok, lp != NULL ? lp->token : r->prompt_first, &len);
    put(b, a->tokens, NULL, str_n(p, len));
    put(b, a->token_logprobs, NULL, lp != NULL ? logprob_num(lp->logprob) : cJSON_CreateNull());
    if (lp != NULL)
        cmpl_top_add(b, put(b, a->top_logprobs, NULL, cJSON_CreateObject()), r->tok, lp->top,
                     lp->n_top < n_top ? lp->n_top : n_top);
    else
        put(b, a->top_logprobs, NULL, cJSON_CreateNull());
    put(b, a->text_offset, NULL, cJSON_CreateNumber((double)*offset));
    *offset += utf8_chars(p, len);
}

/* vLLM's {"<id>": {"logprob", "rank", "decoded_token"}} entry of token id into o. */
static void vllm_entry(jb_t *b, cJSON *o, const tokenizer_t *tok, int32_t id, float lp,
                       uint32_t rank)
{
    char key[16];
    snprintf(key, sizeof key, "%d", id);
    if (cJSON_GetObjectItemCaseSensitive(o, key) != NULL)
        return;
    cJSON *e = put(b, o, key, cJSON_CreateObject());
    size_t len;
    const char *p = piece(tok, id, &len);
    put(b, e, "logprob", logprob_num(lp));
    put(b, e, "rank", cJSON_CreateNumber(rank));
    put(b, e, "decoded_token", str_n(p, len));
}

/* vLLM's prompt_logprobs: null for the first token, then per token its entry and the top. */
static cJSON *vllm_prompt_logprobs(jb_t *b, const api_result_t *r)
{
    cJSON *arr = cJSON_CreateArray();
    if (arr == NULL) {
        b->oom = 1;
        return NULL;
    }
    put(b, arr, NULL, cJSON_CreateNull());
    for (size_t i = 0; i < r->n_prompt_lps && !b->oom; i++) {
        const api_prompt_lp_t *lp = &r->prompt_lps[i];
        cJSON *o = put(b, arr, NULL, cJSON_CreateObject());
        vllm_entry(b, o, r->tok, lp->token, lp->logprob, lp->rank);
        uint32_t n_top = lp->n_top < r->prompt_top ? lp->n_top : r->prompt_top;
        for (uint32_t k = 0; k < n_top && o != NULL; k++)
            vllm_entry(b, o, r->tok, lp->top[k].id, lp->top[k].logprob, k + 1);
    }
    return arr;
}

/* ================================================================== */
/* Responses                                                           */
/* ================================================================== */

char *api_error_json(const api_error_t *e)
{
    jb_t b = { 0 };
    cJSON *root = cJSON_CreateObject();
    cJSON *o = put(&b, root, "error", cJSON_CreateObject());
    put(&b, o, "message", str_z(e->message));
    put(&b, o, "type", str_z(e->type != NULL ? e->type : "invalid_request_error"));
    put(&b, o, "param", e->param[0] != '\0' ? str_n(e->param, strnlen(e->param, sizeof e->param))
                                            : cJSON_CreateNull());
    put(&b, o, "code", e->code != NULL ? str_z(e->code) : cJSON_CreateNull());
    return finish(&b, root);
}

/* One choice object of a whole response, appended to choices. */
static void add_choice(jb_t *b, cJSON *choices, int chat, const api_result_t *r, uint32_t index)
{
    cJSON *c = put(b, choices, NULL, cJSON_CreateObject());
    put(b, c, "index", cJSON_CreateNumber(index));
    if (chat) {
        cJSON *msg = put(b, c, "message", cJSON_CreateObject());
        put(b, msg, "role", cJSON_CreateString("assistant"));
        if (r->n_tool_calls > 0 && (r->text == NULL || r->text_len == 0))
            put(b, msg, "content", cJSON_CreateNull());
        else
            put(b, msg, "content", str_n(r->text, r->text != NULL ? r->text_len : 0));
        cJSON *calls = r->n_tool_calls > 0 ? put(b, msg, "tool_calls", cJSON_CreateArray())
                                           : NULL;
        for (size_t i = 0; i < r->n_tool_calls; i++) {
            cJSON *tc = put(b, calls, NULL, cJSON_CreateObject());
            put(b, tc, "id", str_z(r->tool_calls[i].id));
            put(b, tc, "type", cJSON_CreateString("function"));
            cJSON *fn = put(b, tc, "function", cJSON_CreateObject());
            put(b, fn, "name", str_z(r->tool_calls[i].name));
            put(b, fn, "arguments", str_z(r->tool_calls[i].arguments));
        }
    } else {
        put(b, c, "text", str_n(r->text, r->text != NULL ? r->text_len : 0));
    }
    put(b, c, "finish_reason", str_z(r->finish_reason));

    if (!r->want_logprobs || (r->n_tokens > 0 && r->token_events == NULL)) {
        put(b, c, "logprobs", cJSON_CreateNull());
    } else if (chat) {
        cJSON *lp = put(b, c, "logprobs", cJSON_CreateObject());
        cJSON *content = put(b, lp, "content", cJSON_CreateArray());
        for (size_t i = 0; i < r->n_tokens && !b->oom; i++)
            chat_logprobs_add(b, content, r->tok, r->token_events[i]);
    } else {
        cmpl_lp_t a;
        put(b, c, "logprobs", cmpl_logprobs_new(b, &a));
        uint64_t offset = 0;
        if (r->echo_len > 0 && r->prompt_lps != NULL)
            for (size_t i = 0; i <= r->n_prompt_lps && !b->oom; i++)
                cmpl_prompt_add(b, &a, r, i, r->echo_top, &offset);
        offset = utf8_chars(r->text, r->echo_len); /* the generated text's, after the echo */
        for (size_t i = 0; i < r->n_tokens && !b->oom; i++) {
            const engine_event_t *ev = r->token_events[i];
            cmpl_logprobs_add(b, &a, r->tok, ev, offset);
            offset += utf8_chars(ev->text, ev->text_len < ENGINE_TEXT_MAX ? ev->text_len
                                                                             : ENGINE_TEXT_MAX);
        }
    }
    if (!chat && r->prompt_logprobs)
        put(b, c, "prompt_logprobs", vllm_prompt_logprobs(b, r));
}

char *api_responses_json(const api_resp_meta_t *m, const api_result_t *r, size_t n,
                         const uint32_t *indices, uint32_t prompt_tokens,
                         uint32_t completion_tokens, uint32_t cached_tokens)
{
    jb_t b = { 0 };
    int chat = m->kind == API_CHAT;
    cJSON *root = envelope(&b, m, chat ? "chat.completion" : "text_completion");
    cJSON *choices = put(&b, root, "choices", cJSON_CreateArray());
    for (size_t i = 0; i < n && !b.oom; i++)
        add_choice(&b, choices, chat, &r[i], indices != NULL ? indices[i] : (uint32_t)i);
    if (chat && n > 0 && r[0].prompt_logprobs) /* vLLM: one per response on chat */
        put(&b, root, "prompt_logprobs", vllm_prompt_logprobs(&b, &r[0]));
    add_usage(&b, root, prompt_tokens, completion_tokens, cached_tokens);
    return finish(&b, root);
}

char *api_response_json(const api_resp_meta_t *m, const api_result_t *r)
{
    return api_responses_json(m, r, 1, NULL, r->prompt_tokens, r->completion_tokens,
                              r->cached_tokens);
}

/* A chunk's logprobs: chat's {"content": [...]} of m->lp_events, else null. */
static void chunk_logprobs(jb_t *b, cJSON *c, const api_resp_meta_t *m)
{
    if (m->lp_events == NULL || m->kind != API_CHAT) {
        put(b, c, "logprobs", cJSON_CreateNull());
        return;
    }
    cJSON *content = put(b, put(b, c, "logprobs", cJSON_CreateObject()), "content",
                         cJSON_CreateArray());
    for (size_t i = 0; i < m->n_lp_events && !b->oom; i++)
        chat_logprobs_add(b, content, m->lp_tok, m->lp_events[i]);
}

char *api_text_chunk_json(const api_resp_meta_t *m, const char *text, size_t len)
{
    jb_t b = { 0 };
    int chat = m->kind == API_CHAT;
    cJSON *root = envelope(&b, m, chat ? "chat.completion.chunk" : "text_completion");
    cJSON *choices = put(&b, root, "choices", cJSON_CreateArray());
    cJSON *c = put(&b, choices, NULL, cJSON_CreateObject());
    put(&b, c, "index", cJSON_CreateNumber(m->index));
    if (chat)
        put(&b, put(&b, c, "delta", cJSON_CreateObject()), "content",
            str_n(text, text != NULL ? len : 0));
    else
        put(&b, c, "text", str_n(text, text != NULL ? len : 0));
    chunk_logprobs(&b, c, m);
    put(&b, c, "finish_reason", cJSON_CreateNull());
    return finish(&b, root);
}

char *api_echo_chunk_json(const api_resp_meta_t *m, const api_result_t *r)
{
    jb_t b = { 0 };
    cJSON *root = envelope(&b, m, "text_completion");
    cJSON *choices = put(&b, root, "choices", cJSON_CreateArray());
    cJSON *c = put(&b, choices, NULL, cJSON_CreateObject());
    put(&b, c, "index", cJSON_CreateNumber(m->index));
    put(&b, c, "text", str_n(r->text, r->text != NULL ? r->echo_len : 0));
    cmpl_lp_t a;
    put(&b, c, "logprobs", cmpl_logprobs_new(&b, &a));
    uint64_t offset = 0;
    for (size_t i = 0; r->prompt_lps != NULL && i <= r->n_prompt_lps && !b.oom; i++)
        cmpl_prompt_add(&b, &a, r, i, r->echo_top, &offset);
    put(&b, c, "finish_reason", cJSON_CreateNull());
    return finish(&b, root);
}

char *api_tool_call_chunk_json(const api_resp_meta_t *m, size_t i, const api_tool_call_t *call,
                               int head)
{
    jb_t b = { 0 };
    cJSON *root = envelope(&b, m, "chat.completion.chunk");
    cJSON *choices = put(&b, root, "choices", cJSON_CreateArray());
    cJSON *c = put(&b, choices, NULL, cJSON_CreateObject());
    put(&b, c, "index", cJSON_CreateNumber(m->index));
    cJSON *delta = put(&b, c, "delta", cJSON_CreateObject());
    cJSON *tc = put(&b, put(&b, delta, "tool_calls", cJSON_CreateArray()), NULL,
                    cJSON_CreateObject());
    put(&b, tc, "index", cJSON_CreateNumber((double)i));
    if (head) {
        put(&b, tc, "id", str_z(call->id));
        put(&b, tc, "type", cJSON_CreateString("function"));
    }
    cJSON *fn = put(&b, tc, "function", cJSON_CreateObject());
    if (head)
        put(&b, fn, "name", str_z(call->name));
    put(&b, fn, "arguments", head ? cJSON_CreateString("") : str_z(call->arguments));
    chunk_logprobs(&b, c, m);
    put(&b, c, "finish_reason", cJSON_CreateNull());
    return finish(&b, root);
}

char *api_chunk_json(const api_resp_meta_t *m, const engine_event_t *ev, int first,
                     const char *finish_reason, int want_logprobs, const tokenizer_t *tok)
{
    jb_t b = { 0 };
    int chat = m->kind == API_CHAT;
    cJSON *root = envelope(&b, m, chat ? "chat.completion.chunk" : "text_completion");
    cJSON *choices = put(&b, root, "choices", cJSON_CreateArray());
    cJSON *c = put(&b, choices, NULL, cJSON_CreateObject());
    put(&b, c, "index", cJSON_CreateNumber(m->index));
    const char *text = ev != NULL ? ev->text : "";
    size_t text_len = ev != NULL ? (ev->text_len < ENGINE_TEXT_MAX ? ev->text_len
                                                                   : ENGINE_TEXT_MAX) : 0;
    if (chat) {
        cJSON *delta = put(&b, c, "delta", cJSON_CreateObject());
        if (first)
            put(&b, delta, "role", cJSON_CreateString("assistant"));
        if (first || ev != NULL)
            put(&b, delta, "content", str_n(text, text_len));
    } else {
        put(&b, c, "text", str_n(text, text_len));
    }
    int lp = want_logprobs && ev != NULL && ev->kind == ENGINE_EV_TOKEN;
    if (!lp) {
        put(&b, c, "logprobs", cJSON_CreateNull());
    } else if (chat) {
        cJSON *o = put(&b, c, "logprobs", cJSON_CreateObject());
        chat_logprobs_add(&b, put(&b, o, "content", cJSON_CreateArray()), tok, ev);
    } else {
        cmpl_lp_t a;
        put(&b, c, "logprobs", cmpl_logprobs_new(&b, &a));
        if (!b.oom)
            cmpl_logprobs_add(&b, &a, tok, ev, m->text_offset);
    }
    put(&b, c, "finish_reason", str_z(finish_reason));
    return finish(&b, root);
}

char *api_usage_chunk_json(const api_resp_meta_t *m, uint32_t prompt_tokens,
                           uint32_t completion_tokens, uint32_t cached_tokens)
{
    jb_t b = { 0 };
    cJSON *root = envelope(&b, m, m->kind == API_CHAT ? "chat.completion.chunk"
                                                      : "text_completion");
    put(&b, root, "choices", cJSON_CreateArray());
    add_usage(&b, root, prompt_tokens, completion_tokens, cached_tokens);
    return finish(&b, root);
}
