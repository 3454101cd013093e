/*
 * api_request.c - OpenAI request bodies -> checked api_request_t.
 *
 * Three passes over hostile bytes (shared/THREATS.md part B; the first two
 * are json.c's, shared with every route that reads JSON):
 *   1. the raw body: valid UTF-8, no NUL byte, no \u0000 escape, nesting no
 *      deeper than max_json_depth (before cJSON recurses into it);
 *   2. cJSON parses a NUL-terminated copy; the tree is checked for
 *      duplicate keys (cJSON keeps them all, and clients disagree on which
 *      one wins);
 *   3. every known field is read with its type and range checked, the
 *      error naming the field and the value.
 * Loop thread; no state outside the call.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE   /* getrandom, strdup, strnlen under -std=c11 */
#endif
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "api.h"
#include "json_exact.h"
#include "json_get.h"

#define NUM(d) jget_num_str((d), (char[32]){ 0 })
#define DEFAULT_JSON_DEPTH 64u

/* ================================================================== */
/* Errors                                                              */
/* ================================================================== */

/* A 400 invalid_request_error naming `param`. */
#define BAD(e, code, param, ...) api_error_set((e), (code), 400, NULL, (param), NULL, __VA_ARGS__)

/* ================================================================== */
/* Pass 3: typed field readers (json_get.h)                             */
/* ================================================================== */

/* A copy of a string value (valid UTF-8 and NUL-free by pass 1). */
static int dup_string(const cJSON *v, char **out, size_t *len, api_error_t *e)
{
    size_t n = strlen(v->valuestring);
    char *s = malloc(n + 1);
    if (s == NULL)
        return jget_nomem(e);
    memcpy(s, v->valuestring, n + 1);
    *out = s;
    if (len != NULL)
        *len = n;
    return 0;
}

/* ================================================================== */
/* Fields                                                              */
/* ================================================================== */

static uint64_t fresh_seed(void)
{
    uint64_t s = 0;
    if (getrandom(&s, sizeof s, GRND_NONBLOCK) == (ssize_t)sizeof s)
        return s;
    /* no entropy yet (early boot): the clock, mixed, still differs per request */
    static _Thread_local uint64_t counter;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t z = ((uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec) ^ (++counter << 48);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static int parse_model(const cJSON *root, const api_limits_t *lim, api_request_t *req,
                       api_error_t *e)
{
    const cJSON *v = jget_field(root, "model");
    if (v == NULL)
        return 0;
    if (!cJSON_IsString(v))
        return BAD(e, ERR_INVALID, "model", "model: expected a string, got %s", jget_type_name(v));
    if (!api_model_matches(lim, v->valuestring))
        return api_error_set(e, ERR_NOTFOUND, 404, NULL, "model", "model_not_found",
                             "The model `%.200s` does not exist.", v->valuestring);
    return dup_string(v, &req->model, NULL, e);
}

static int parse_prompt(const cJSON *root, const api_limits_t *lim, size_t max_bytes,
                        api_request_t *req, api_error_t *e)
{
    const cJSON *v = jget_field(root, "prompt");
    if (v == NULL)
        return BAD(e, ERR_INVALID, "prompt", "prompt: required");
    if (cJSON_IsString(v)) {
        size_t n = strlen(v->valuestring);
        if (n == 0)
            return BAD(e, ERR_INVALID, "prompt", "prompt: empty");
        if (n > max_bytes)
            return BAD(e, ERR_TOOLONG, "prompt", "prompt: %zu bytes, at most %zu accepted", n,
                       max_bytes);
        return dup_string(v, &req->prompt, &req->prompt_len, e);
    }
    if (!cJSON_IsArray(v))
        return BAD(e, ERR_INVALID, "prompt",
                   "prompt: expected a string or an array of token ids, got %s", jget_type_name(v));
    size_t n = (size_t)cJSON_GetArraySize(v);
    if (n == 0)
        return BAD(e, ERR_INVALID, "prompt", "prompt: empty");
    if (!cJSON_IsNumber(v->child))   /* a list of prompts */
        return api_parse_prompt_list(v, lim, max_bytes, req, e);
    uint64_t max_tokens = lim->n_ctx > 0 ? lim->n_ctx : INT32_MAX;
    if (n > max_tokens)
        return api_error_set(e, ERR_TOOLONG, 400, NULL, "prompt", "context_length_exceeded",
                             "prompt: %zu tokens, the context holds %llu", n,
                             (unsigned long long)max_tokens);
    req->prompt_tokens = malloc(n * sizeof *req->prompt_tokens);
    if (req->prompt_tokens == NULL)
        return jget_nomem(e);
    double hi = lim->n_vocab > 0 ? (double)lim->n_vocab - 1 : (double)INT32_MAX;
    size_t i = 0;
    for (const cJSON *t = v->child; t != NULL; t = t->next, i++) {
        char name[64];
        snprintf(name, sizeof name, "prompt[%zu]", i);
        int64_t id;
        int rc = jget_int(t, name, 0, hi, &id, e);
        if (rc != 0)
            return rc;
        req->prompt_tokens[i] = (int32_t)id;
    }
    req->n_prompt_tokens = n;
    return 0;
}

/* Content as a string or an array of {"type":"text","text":...} joined with "\n". */
static int parse_content(const cJSON *c, size_t i, char **out, size_t *len, api_error_t *e)
{
    char name[64];
    snprintf(name, sizeof name, "messages[%zu].content", i);
    if (c == NULL || cJSON_IsNull(c))
        return BAD(e, ERR_INVALID, name, "%s: required (a string or an array of text parts)",
                   name);
    if (cJSON_IsString(c))
        return dup_string(c, out, len, e);
    if (!cJSON_IsArray(c))
        return BAD(e, ERR_INVALID, name,
                   "%s: expected a string or an array of text parts, got %s", name,
                   jget_type_name(c));
    size_t total = 0, j = 0;
    for (const cJSON *p = c->child; p != NULL; p = p->next, j++) {
        char pn[64];
        snprintf(pn, sizeof pn, "messages[%zu].content[%zu]", i, j);
        if (!cJSON_IsObject(p))
            return BAD(e, ERR_INVALID, pn, "%s: expected an object, got %s", pn, jget_type_name(p));
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(p, "type");
        const cJSON *text = cJSON_GetObjectItemCaseSensitive(p, "text");
        if (!cJSON_IsString(type) || strcmp(type->valuestring, "text") != 0) {
            snprintf(pn, sizeof pn, "messages[%zu].content[%zu].type", i, j);
            if (!cJSON_IsString(type))
                return BAD(e, ERR_INVALID, pn, "%s: expected a string, got %s", pn,
                           type == NULL ? "nothing" : jget_type_name(type));
            return BAD(e, ERR_UNSUPPORTED, pn, "%s: \"%.40s\" parts are not supported (only "
                       "\"text\")", pn, type->valuestring);
        }
        if (!cJSON_IsString(text)) {
            snprintf(pn, sizeof pn, "messages[%zu].content[%zu].text", i, j);
            return BAD(e, ERR_INVALID, pn, "%s: expected a string, got %s", pn,
                       text == NULL ? "nothing" : jget_type_name(text));
        }
        total += strlen(text->valuestring) + (j > 0);   /* bounded by the body's size */
    }
    char *s = malloc(total + 1);
    if (s == NULL)
        return jget_nomem(e);
    size_t at = 0;
    for (const cJSON *p = c->child; p != NULL; p = p->next) {
        const char *t = cJSON_GetObjectItemCaseSensitive(p, "text")->valuestring;
        size_t n = strlen(t);
        if (p != c->child)
            s[at++] = '\n';
        memcpy(s + at, t, n);
        at += n;
    }
    s[at] = '\0';
    *out = s;
    *len = at;
    return 0;
}

static int parse_messages(const cJSON *root, size_t max_bytes, api_request_t *req,
                          api_error_t *e)
{
    const cJSON *v = jget_field(root, "messages");
    if (v == NULL)
        return BAD(e, ERR_INVALID, "messages", "messages: required");
    if (!cJSON_IsArray(v))
        return BAD(e, ERR_INVALID, "messages", "messages: expected an array, got %s",
                   jget_type_name(v));
    size_t n = (size_t)cJSON_GetArraySize(v);
    if (n == 0)
        return BAD(e, ERR_INVALID, "messages", "messages: empty");
    req->messages = calloc(n, sizeof *req->messages);
    if (req->messages == NULL)
        return jget_nomem(e);
    size_t i = 0, total = 0;
    for (const cJSON *m = v->child; m != NULL; m = m->next, i++) {
        char name[64];
        snprintf(name, sizeof name, "messages[%zu]", i);
        if (!cJSON_IsObject(m))
            return BAD(e, ERR_INVALID, name, "%s: expected an object, got %s", name,
                       jget_type_name(m));
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(m, "role");
        snprintf(name, sizeof name, "messages[%zu].role", i);
        if (!cJSON_IsString(role))
            return BAD(e, ERR_INVALID, name, "%s: expected a string, got %s", name,
                       role == NULL ? "nothing" : jget_type_name(role));
        const char *r = role->valuestring;
        if (strcmp(r, "developer") == 0)
            r = "system";   /* OpenAI's newer name for the system role */
        if (strcmp(r, "system") != 0 && strcmp(r, "user") != 0 && strcmp(r, "assistant") != 0 &&
            strcmp(r, "tool") != 0)
            return BAD(e, ERR_INVALID, name, "%s: \"%.40s\" is not one of system, user, "
                       "assistant, tool", name, role->valuestring);
        api_message_t *am = &req->messages[i];
        req->n_messages = i + 1;   /* so that api_request_free frees what is set */
        if ((am->role = strdup(r)) == NULL)
            return jget_nomem(e);
        size_t len = 0;
        int rc = api_parse_message_tools(m, i, req, am, e);
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(m, "content");
        if (rc == 0 && am->n_tool_calls > 0 && (c == NULL || cJSON_IsNull(c)))
            rc = (am->content = strdup("")) ? 0 : jget_nomem(e);   /* calls only */
        else if (rc == 0)
            rc = parse_content(c, i, &am->content, &len, e);
        if (rc != 0)
            return rc;
        total += len;
        if (total > max_bytes)
            return BAD(e, ERR_TOOLONG, "messages", "messages: more than %zu bytes of content",
                       max_bytes);
    }
    return 0;
}

static int parse_stop(const cJSON *root, api_request_t *req, api_error_t *e)
{
    const cJSON *v = jget_field(root, "stop");
    if (v == NULL)
        return 0;
    if (!cJSON_IsString(v) && !cJSON_IsArray(v))
        return BAD(e, ERR_INVALID, "stop", "stop: expected a string or an array of strings, "
                   "got %s", jget_type_name(v));
    size_t n = cJSON_IsArray(v) ? (size_t)cJSON_GetArraySize(v) : 1;
    if (n > ENGINE_MAX_STOP)
        return BAD(e, ERR_RANGE, "stop", "stop: %zu strings, at most %d", n, ENGINE_MAX_STOP);
    const cJSON *s = cJSON_IsArray(v) ? v->child : v;
    for (size_t i = 0; i < n; i++, s = s->next) {
        char name[64];
        snprintf(name, sizeof name, cJSON_IsArray(v) ? "stop[%zu]" : "stop", i);
        if (!cJSON_IsString(s))
            return BAD(e, ERR_INVALID, name, "%s: expected a string, got %s", name,
                       jget_type_name(s));
        size_t len = strlen(s->valuestring);
        if (len > ENGINE_MAX_STOP_LEN)
            return BAD(e, ERR_RANGE, name, "%s: %zu bytes, at most %d", name, len,
                       ENGINE_MAX_STOP_LEN);
        if (len == 0)
            continue;   /* an empty stop string stops nothing */
        int rc = dup_string(s, &req->stop[req->n_stop], NULL, e);
        if (rc != 0)
            return rc;
        req->n_stop++;
    }
    return 0;
}

static int parse_logit_bias(const cJSON *root, const api_limits_t *lim, api_request_t *req,
                            api_error_t *e)
{
    const cJSON *v = jget_field(root, "logit_bias");
    if (v == NULL)
        return 0;
    if (!cJSON_IsObject(v))
        return BAD(e, ERR_INVALID, "logit_bias", "logit_bias: expected an object, got %s",
                   jget_type_name(v));
    size_t n = (size_t)cJSON_GetArraySize(v);
    if (n > SAMPLER_MAX_LOGIT_BIAS)
        return BAD(e, ERR_RANGE, "logit_bias", "logit_bias: %zu entries, at most %d", n,
                   SAMPLER_MAX_LOGIT_BIAS);
    if (n == 0)
        return 0;
    req->logit_bias = calloc(n, sizeof *req->logit_bias);
    if (req->logit_bias == NULL)
        return jget_nomem(e);
    uint64_t n_vocab = lim->n_vocab > 0 ? lim->n_vocab : (uint64_t)INT32_MAX + 1;
    size_t i = 0;
    for (const cJSON *b = v->child; b != NULL; b = b->next, i++) {
        const char *key = b->string != NULL ? b->string : "";
        uint64_t id = 0;
        size_t k = 0;
        for (; k < 19 && key[k] >= '0' && key[k] <= '9'; k++)
            id = id * 10 + (uint64_t)(key[k] - '0');
        if (k == 0 || key[k] != '\0')
            return BAD(e, ERR_INVALID, "logit_bias", "logit_bias: key \"%.40s\" is not a "
                       "token id", key);
        if (id >= n_vocab)
            return BAD(e, ERR_RANGE, "logit_bias", "logit_bias: token id %llu is out of range "
                       "[0, %llu)", (unsigned long long)id, (unsigned long long)n_vocab);
        if (!cJSON_IsNumber(b))
            return BAD(e, ERR_INVALID, "logit_bias", "logit_bias[\"%s\"]: expected a number, "
                       "got %s", key, jget_type_name(b));
        if (!(b->valuedouble >= -100.0 && b->valuedouble <= 100.0))   /* inf fails too */
            return BAD(e, ERR_RANGE, "logit_bias", "logit_bias[\"%s\"]: %s is out of range "
                       "[-100, 100]", key, NUM(b->valuedouble));
        req->logit_bias[i].id = (int32_t)id;
        req->logit_bias[i].bias = (float)b->valuedouble;
    }
    req->sampling.logit_bias = req->logit_bias;
    req->sampling.n_logit_bias = (uint32_t)n;
    return 0;
}

/* Fields we recognise but do not serve: a clear 400 rather than silent ignoring. */
static int parse_unsupported(const cJSON *root, api_kind_t kind, api_request_t *req,
                             api_error_t *e)
{
    if (kind != API_COMPLETIONS)
        return api_parse_tools(root, req, e);   /* tools are chat's (api_tools.c) */
    /* completions has no tools: refused rather than ignored (echo, suffix and
     * best_of: api_choices.c) */
    static const char *const list_fields[] = { "tools", "functions" };
    for (size_t i = 0; i < 2; i++) {
        const cJSON *v = jget_field(root, list_fields[i]);
        if (v != NULL && !(cJSON_IsArray(v) && v->child == NULL))
            return BAD(e, ERR_UNSUPPORTED, list_fields[i], "%s: not supported on "
                       "/v1/completions", list_fields[i]);
    }
    static const char *const choice_fields[] = { "tool_choice", "function_call" };
    for (size_t i = 0; i < 2; i++) {
        const cJSON *v = jget_field(root, choice_fields[i]);
        if (v != NULL && !(cJSON_IsString(v) && strcmp(v->valuestring, "none") == 0))
            return BAD(e, ERR_UNSUPPORTED, choice_fields[i], "%s: not supported on "
                       "/v1/completions (only \"none\")", choice_fields[i]);
    }
    return 0;
}

static int parse_sampling(const cJSON *root, const api_limits_t *lim, api_request_t *req,
                          api_error_t *e)
{
    sampler_params_t *sp = &req->sampling;
    int rc, present;
    if ((rc = jget_opt_real(root, "temperature", 0, 2, 0, &sp->temperature, e)) != 0 ||
        (rc = jget_opt_real(root, "top_p", 0, 1, 1, &sp->top_p, e)) != 0 ||
        (rc = jget_opt_real(root, "min_p", 0, 1, 0, &sp->min_p, e)) != 0 ||
        (rc = jget_opt_real(root, "repetition_penalty", 0, 10, 1, &sp->repetition_penalty,
                            e)) != 0 ||
        (rc = jget_opt_real(root, "presence_penalty", -2, 2, 0, &sp->presence_penalty, e)) != 0 ||
        (rc = jget_opt_real(root, "frequency_penalty", -2, 2, 0, &sp->frequency_penalty, e)) != 0)
        return rc;
    int64_t top_k = 0;
    /* -1 is vLLM's "off" */
    if ((rc = jget_opt_int(root, "top_k", -1, INT32_MAX, &top_k, &present, e)) != 0)
        return rc;
    sp->top_k = top_k < 0 ? 0 : (int32_t)top_k;

    /* seed: OpenAI's is a 64-bit integer; a negative one is taken modulo 2^64 */
    const cJSON *seed = jget_field(root, "seed");
    if (seed != NULL) {
        if ((rc = jget_number(seed, "seed", e)) != 0)
            return rc;
        double d = seed->valuedouble;
        if (d != floor(d))
            return BAD(e, ERR_INVALID, "seed", "seed: %s is not an integer", NUM(d));
        /* the bound is 2^64 inclusive here: 2^64 - 1 rounds to it as a double,
           and api_parse_request reads the seed exactly from the text */
        if (!(d >= -9223372036854775808.0 && d <= 18446744073709551616.0))
            return BAD(e, ERR_RANGE, "seed", "seed: %s is out of range [-2^63, 2^64)",
                       NUM(d));
        sp->seed = d < 0 ? (uint64_t)(int64_t)d : d < 18446744073709551616.0 ? (uint64_t)d : 0;
        req->seed_given = 1;
    } else {
        sp->seed = fresh_seed();
    }

    if ((rc = parse_logit_bias(root, lim, req, e)) != 0)
        return rc;

    /* logprobs */
    if (req->kind == API_CHAT) {
        if ((rc = jget_opt_bool(root, "logprobs", &req->logprobs, e)) != 0)
            return rc;
        int64_t top = 0;
        if ((rc = jget_opt_int(root, "top_logprobs", 0, SAMPLER_MAX_LOGPROBS, &top, &present,
                               e)) != 0)
            return rc;
        if (top > 0 && !req->logprobs)
            return BAD(e, ERR_INVALID, "top_logprobs", "top_logprobs: requires logprobs: true");
        req->top_logprobs = (uint32_t)top;
    } else {
        int64_t lp = 0;
        if ((rc = jget_opt_int(root, "logprobs", 0, 5, &lp, &present, e)) != 0)
            return rc;
        req->logprobs = present;
        req->top_logprobs = (uint32_t)lp;
    }
    sp->n_logprobs = req->top_logprobs;

    char err[ERR_MSG_MAX];
    if ((rc = sampler_params_validate(sp, lim->n_vocab > 0 ? lim->n_vocab : SAMPLER_MAX_VOCAB,
                                      err, sizeof err)) != 0) {
        /* unreachable after the checks above; the message starts with the field's name */
        char param[64];
        snprintf(param, sizeof param, "%.*s", (int)strcspn(err, ":"), err);
        return BAD(e, rc, param, "%s", err);
    }
    return 0;
}

static int parse_generation(const cJSON *root, const api_limits_t *lim, api_request_t *req,
                            api_error_t *e)
{
    int rc, present;
    double max_gen = lim->n_ctx > 0 ? lim->n_ctx : INT32_MAX;
    int64_t mt = 0, mct = 0;
    /* completions: 0 with echo is the prompt alone (api_choices.c checks the echo) */
    if ((rc = jget_opt_int(root, "max_tokens", req->kind == API_COMPLETIONS ? 0 : 1, max_gen, &mt,
                           &present, e)) != 0)
        return rc;
    if (present)
        req->max_tokens = (uint32_t)mt;
    req->echo_only = present && mt == 0;
    if ((rc = jget_opt_int(root, "max_completion_tokens", 1, max_gen, &mct, &present, e)) != 0)
        return rc;
    if (present)
        req->max_tokens = (uint32_t)mct;

    if ((rc = jget_opt_bool(root, "stream", &req->stream, e)) != 0)
        return rc;
    const cJSON *so = jget_field(root, "stream_options");
    if (so != NULL) {
        if (!cJSON_IsObject(so))
            return BAD(e, ERR_INVALID, "stream_options", "stream_options: expected an object, "
                       "got %s", jget_type_name(so));
        const cJSON *iu = jget_field(so, "include_usage");
        if (iu != NULL && !cJSON_IsBool(iu))
            return BAD(e, ERR_INVALID, "stream_options.include_usage", "stream_options."
                       "include_usage: expected a boolean, got %s", jget_type_name(iu));
        req->include_usage = iu != NULL && cJSON_IsTrue(iu);
    }
    if ((rc = parse_stop(root, req, e)) != 0)
        return rc;
    const cJSON *user = jget_field(root, "user");
    if (user != NULL) {
        if (!cJSON_IsString(user))
            return BAD(e, ERR_INVALID, "user", "user: expected a string, got %s",
                       jget_type_name(user));
        if ((rc = dup_string(user, &req->user, NULL, e)) != 0)
            return rc;
    }
    const cJSON *salt = jget_field(root, "cache_salt");
    if (salt != NULL && !cJSON_IsNull(salt)) {
        if (!cJSON_IsString(salt))
            return BAD(e, ERR_INVALID, "cache_salt", "cache_salt: expected a string, got %s",
                       jget_type_name(salt));
        size_t n = strlen(salt->valuestring);
        if (n == 0 || n > API_MAX_CACHE_SALT)
            return BAD(e, ERR_RANGE, "cache_salt", "cache_salt: %zu bytes, want 1 to %d", n,
                       API_MAX_CACHE_SALT);
        if ((rc = dup_string(salt, &req->cache_salt, &req->cache_salt_len, e)) != 0)
            return rc;
    }
    return 0;
}

/* ================================================================== */
/* Entry points                                                        */
/* ================================================================== */

static int parse_root(const cJSON *root, api_kind_t kind, const api_limits_t *lim,
                      api_request_t *req, api_error_t *e)
{
    size_t max_bytes = lim->max_prompt_bytes;
    if (max_bytes == 0)
        max_bytes = lim->n_ctx > 0 ? (size_t)16 * lim->n_ctx : ENGINE_MAX_PROMPT_BYTES;
    if (max_bytes > ENGINE_MAX_PROMPT_BYTES)
        max_bytes = ENGINE_MAX_PROMPT_BYTES;
    int rc;
    if ((rc = parse_model(root, lim, req, e)) != 0 ||
        (rc = parse_unsupported(root, kind, req, e)) != 0 ||
        (rc = api_parse_constraint(root, req, e)) != 0)
        return rc;
    rc = kind == API_CHAT ? parse_messages(root, max_bytes, req, e)
                          : parse_prompt(root, lim, max_bytes, req, e);
    if (rc != 0 || (rc = parse_generation(root, lim, req, e)) != 0 ||
        (rc = parse_sampling(root, lim, req, e)) != 0 ||
        (rc = api_parse_choices(root, req, e)) != 0)
        return rc;
    return api_parse_extras(root, kind, lim, req, e);
}

/* The seed from its text: every 64-bit value exactly, which a double cannot hold. */
static int exact_seed(const char *text, size_t len, api_request_t *req, api_error_t *e)
{
    const char *v;
    size_t n;
    if (!json_member_text(text, len, "seed", &v, &n))
        return BAD(e, ERR_INVALID, "seed", "seed: cannot be read from the request text");
    int rc = json_int_mod64(v, n, &req->sampling.seed);
    /* "1e3" and the like: integral, and exact as the double already read,
       unless it reached 2^64 */
    if (rc == ERR_INVALID && strtod(v, NULL) < 18446744073709551616.0)
        return 0;
    if (rc != 0)
        return BAD(e, ERR_RANGE, "seed", "seed: %.*s is out of range [-2^63, 2^64)",
                   (int)(n < 64 ? n : 64), v);
    return 0;
}

int api_parse_request(api_kind_t kind, const char *body, size_t len, const api_limits_t *lim,
                      api_request_t *req, api_error_t *e)
{
    memset(req, 0, sizeof *req);
    req->kind = kind;
    sampler_params_init(&req->sampling);
    if (body == NULL)
        len = 0;
    unsigned depth = lim->max_json_depth > 0 ? lim->max_json_depth : DEFAULT_JSON_DEPTH;
    int rc = json_scan_raw(body, len, depth, e);
    if (rc != 0)
        return rc;
    char *copy = malloc(len + 1);
    if (copy == NULL)
        return jget_nomem(e);
    if (len > 0)
        memcpy(copy, body, len);
    copy[len] = '\0';
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithOpts(copy, &end, 1);
    if (root == NULL) {
        size_t at = end != NULL && end >= copy ? (size_t)(end - copy) : 0;
        free(copy);
        return BAD(e, ERR_FORMAT, NULL, "request body is not valid JSON (near offset %zu)", at);
    }
    if (!cJSON_IsObject(root))
        rc = BAD(e, ERR_INVALID, NULL, "request body must be a JSON object, got %s",
                 jget_type_name(root));
    if (rc == 0)
        rc = json_check_dups(root, e);
    if (rc == 0)
        rc = parse_root(root, kind, lim, req, e);
    if (rc == 0 && req->seed_given)
        rc = exact_seed(copy, len, req, e);
    cJSON_Delete(root);
    free(copy);
    if (rc != 0)
        api_request_free(req);
    return rc;
}

void api_request_free(api_request_t *req)
{
    if (req == NULL)
        return;
    free(req->model);
    free(req->prompt);
    free(req->prompt_tokens);
    for (size_t i = 0; i < req->n_prompts; i++) {
        free(req->prompts[i].text);
        free(req->prompts[i].tokens);
    }
    free(req->prompts);
    for (size_t i = 0; i < req->n_messages; i++) {
        free(req->messages[i].role);
        free(req->messages[i].content);
        api_tool_calls_free(req->messages[i].tool_calls, req->messages[i].n_tool_calls);
        free(req->messages[i].tool_call_id);
    }
    for (size_t i = 0; i < req->n_tools; i++) {
        free(req->tools[i]);
        free(req->tool_names[i]);
        free(req->tool_params[i]);
    }
    free(req->tools);
    free(req->tool_names);
    free(req->tool_params);
    free(req->messages);
    free(req->logit_bias);
    for (size_t i = 0; i < req->n_stop; i++)
        free(req->stop[i]);
    free(req->user);
    free(req->cache_salt);
    free(req->constraint_src);
    api_kind_t kind = req->kind;
    memset(req, 0, sizeof *req);
    req->kind = kind;
}
