/*
 * api_choices.c - the request fields that make one request several
 * engine requests: n, best_of, a list of prompts on /v1/completions, and
 * the completions fields that go with them, echo and suffix.
 *
 * Caps (api.h, docs/API.md): n and best_of at most API_MAX_N, a list of
 * at most API_MAX_PROMPTS prompts, and prompts x best_of at most
 * API_MAX_SEQUENCES, so that one request never floods the engine's queue.
 * Loop thread; no state outside the call.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE   /* strdup under -std=c11 */
#endif
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "api.h"
#include "json_get.h"

#define BAD(e, code, param, ...) api_error_set((e), (code), 400, NULL, (param), NULL, __VA_ARGS__)

/* ================================================================== */
/* A list of prompts                                                   */
/* ================================================================== */

/* One element of the list: a string, or an array of token ids. */
static int parse_one(const cJSON *v, size_t i, const api_limits_t *lim, size_t max_bytes,
                     api_prompt_t *p, api_error_t *e)
{
    char name[64];
    snprintf(name, sizeof name, "prompt[%zu]", i);
    if (cJSON_IsString(v)) {
        size_t n = strlen(v->valuestring);
        if (n == 0)
            return BAD(e, ERR_INVALID, name, "%s: empty", name);
        if (n > max_bytes)
            return BAD(e, ERR_TOOLONG, name, "%s: %zu bytes, at most %zu accepted", name, n,
                       max_bytes);
        p->text = strdup(v->valuestring);
        if (p->text == NULL)
            return api_error_set(e, ERR_NOMEM, 503, "server_error", NULL, NULL, "out of memory");
        p->len = n;
        return 0;
    }
    if (!cJSON_IsArray(v))
        return BAD(e, ERR_INVALID, name, "%s: expected a string or an array of token ids", name);
    size_t n = (size_t)cJSON_GetArraySize(v);
    if (n == 0)
        return BAD(e, ERR_INVALID, name, "%s: empty", name);
    uint64_t max_tokens = lim->n_ctx > 0 ? lim->n_ctx : INT32_MAX;
    if (n > max_tokens)
        return api_error_set(e, ERR_TOOLONG, 400, NULL, name, "context_length_exceeded",
                             "%s: %zu tokens, the context holds %llu", name, n,
                             (unsigned long long)max_tokens);
    p->tokens = malloc(n * sizeof *p->tokens);
    if (p->tokens == NULL)
        return api_error_set(e, ERR_NOMEM, 503, "server_error", NULL, NULL, "out of memory");
    double hi = lim->n_vocab > 0 ? (double)lim->n_vocab - 1 : (double)INT32_MAX;
    size_t k = 0;
    for (const cJSON *t = v->child; t != NULL; t = t->next, k++) {
        char tname[80];
        snprintf(tname, sizeof tname, "%s[%zu]", name, k);
        int64_t id;
        int rc = jget_int_capped(t, tname, 0, hi, &id, e);
        if (rc != 0)
            return rc;
        p->tokens[k] = (int32_t)id;
    }
    p->n_tokens = n;
    return 0;
}

int api_parse_prompt_list(const cJSON *v, const api_limits_t *lim, size_t max_bytes,
                          api_request_t *req, api_error_t *e)
{
    size_t n = (size_t)cJSON_GetArraySize(v);
    if (n > API_MAX_PROMPTS)
        return BAD(e, ERR_RANGE, "prompt", "prompt: a list of %zu prompts is past the cap of %d",
                   n, API_MAX_PROMPTS);
    int strings = cJSON_IsString(v->child);
    req->prompts = calloc(n, sizeof *req->prompts);
    if (req->prompts == NULL)
        return api_error_set(e, ERR_NOMEM, 503, "server_error", NULL, NULL, "out of memory");
    size_t i = 0, total = 0;
    for (const cJSON *p = v->child; p != NULL; p = p->next, i++) {
        if (cJSON_IsString(p) != strings) {
            char name[64];
            snprintf(name, sizeof name, "prompt[%zu]", i);
            return BAD(e, ERR_INVALID, name, "%s: a list of prompts is all strings or all "
                       "arrays of token ids", name);
        }
        req->n_prompts = i + 1;   /* freed by api_request_free from here on */
        int rc = parse_one(p, i, lim, max_bytes, &req->prompts[i], e);
        if (rc != 0)
            return rc;
        total += req->prompts[i].len;
        if (total > 4 * max_bytes)
            return BAD(e, ERR_TOOLONG, "prompt", "prompt: the list holds more than %zu bytes",
                       4 * max_bytes);
    }
    return 0;
}

/* ================================================================== */
/* n, best_of, echo, suffix                                            */
/* ================================================================== */

int api_parse_choices(const cJSON *root, api_request_t *req, api_error_t *e)
{
    int64_t n = 1, best_of = 0;
    const cJSON *v;
    int rc;
    if ((v = jget_field(root, "n")) != NULL &&
        (rc = jget_int_capped(v, "n", 1, API_MAX_N, &n, e)) != 0)
        return rc;
    if ((v = jget_field(root, "best_of")) != NULL &&
        (rc = jget_int_capped(v, "best_of", 1, API_MAX_N, &best_of, e)) != 0)
        return rc;
    if (best_of == 0)
        best_of = n;
    if (best_of < n)
        return BAD(e, ERR_INVALID, "best_of", "best_of: %lld is less than n (%lld)",
                   (long long)best_of, (long long)n);
    if (req->stream && best_of > n)
        return BAD(e, ERR_INVALID, "best_of", "best_of: %lld > n (%lld) cannot be streamed",
                   (long long)best_of, (long long)n);
    size_t prompts = req->n_prompts > 0 ? req->n_prompts : 1;
    if (prompts * (size_t)best_of > API_MAX_SEQUENCES)
        return BAD(e, ERR_RANGE, best_of > n ? "best_of" : "n", "%s: %zu prompts x %lld "
                   "sequences is past the cap of %d per request", best_of > n ? "best_of" : "n",
                   prompts, (long long)best_of, API_MAX_SEQUENCES);
    req->n = (uint32_t)n;
    req->best_of = (uint32_t)best_of;
    if (req->kind != API_COMPLETIONS)
        return 0;

    if ((v = jget_field(root, "echo")) != NULL) {
        if (!cJSON_IsBool(v))
            return BAD(e, ERR_INVALID, "echo", "echo: expected a boolean");
        req->echo = cJSON_IsTrue(v);
    }
    if (req->echo_only && (!req->echo || req->stream))
        return BAD(e, ERR_RANGE, "max_tokens", "max_tokens: 0 is served only with echo, not "
                   "streamed (the prompt alone)");
    v = jget_field(root, "suffix");
    if (v != NULL && !(cJSON_IsString(v) && v->valuestring[0] == '\0'))
        return BAD(e, ERR_UNSUPPORTED, "suffix", "suffix: not supported: the model's template "
                   "has no fill-in-the-middle tokens");
    return 0;
}
