/*
 * routes.c - request admission and dispatch (auth, route, method, state),
 * the non-streaming answers, and the per-request log line and counters.
 *
 * Policy, in order, decided when the headers are complete and before any
 * body is read (routes_admit): a Host that is not allowed without keys is
 * 403; an unknown route is 404 (the route list is public
 * knowledge); a key is required on every route except /health*
 * (public-health) and /metrics (public-metrics) when those are public;
 * then a wrong method is 405; then POST bodies
 * must be application/json (else 415); then a declared body over the
 * limit is 413 (http.c).  With the body in (routes_dispatch), generation
 * routes answer 503 (with Retry-After) while the model loads or the daemon drains.  All
 * validation happens before anything is queued, so a stream's 200 is
 * only sent for a request the engine accepted.
 */
#include "daemon.h"

#include <cjson/cJSON.h>
#include <inttypes.h>
#include <microhttpd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "base/log.h"
#include "base/sha256.h"

typedef enum {
    R_COMPLETIONS, R_CHAT, R_MODELS, R_HEALTH, R_HEALTH_LIVE, R_HEALTH_READY, R_METRICS,
    R_TOKENIZE, R_DETOKENIZE, R_N
} route_id_t;

static const struct {
    const char *path;
    const char *method;
} route_table[R_N] = {
    [R_COMPLETIONS] = { "/v1/completions", "POST" },
    [R_CHAT] = { "/v1/chat/completions", "POST" },
    [R_MODELS] = { "/v1/models", "GET" },
    [R_HEALTH] = { "/health", "GET" },
    [R_HEALTH_LIVE] = { "/health/live", "GET" },
    [R_HEALTH_READY] = { "/health/ready", "GET" },
    [R_METRICS] = { "/metrics", "GET" },
    [R_TOKENIZE] = { "/tokenize", "POST" },
    [R_DETOKENIZE] = { "/detokenize", "POST" },
};

static int find_route(const char *url)
{
    for (int i = 0; i < R_N; i++)
        if (strcmp(url, route_table[i].path) == 0)
            return i;
    return -1;
}

/* The metrics label of a URL: the route's path, or "other" (bounded cardinality). */
static const char *route_label(const char *url)
{
    int r = url ? find_route(url) : -1;
    return r >= 0 ? route_table[r].path : "other";
}

/* ---------------------------------------------------------------- helpers */

static int respond_json(http_request_t *req, unsigned status, cJSON *root)
{
    char *text = root ? cJSON_PrintUnformatted(root) : NULL;
    cJSON_Delete(root);
    if (text == NULL)
        return http_respond_error(req, 500, "server_error", NULL, NULL, "out of memory");
    int ret = http_respond(req, status, "application/json", text, strlen(text));
    cJSON_free(text);
    return ret;
}

static int respond_api_error(http_request_t *req, const api_error_t *e)
{
    char *text = api_error_json(e);
    if (text == NULL)
        return http_respond_error(req, 500, "server_error", NULL, NULL, "out of memory");
    int ret = http_respond(req, e->status, "application/json", text, strlen(text));
    free(text);
    return ret;
}

static int respond_unavailable(daemon_t *d, http_request_t *req)
{
    req->retry_after = daemon_retry_after(d);
    if (d->draining)
        return http_respond_error(req, 503, "server_error", NULL, "server_shutting_down",
                                  "the server is shutting down; retry on another instance");
    return http_respond_error(req, 503, "server_error", NULL, "model_loading",
                              "the model is still loading; retry in a few seconds");
}

static int is_json_type(const char *ct)
{
    if (ct == NULL)
        return 0;
    while (*ct == ' ')
        ct++;
    static const char want[] = "application/json";
    if (strncasecmp(ct, want, sizeof want - 1) != 0)
        return 0;
    char c = ct[sizeof want - 1];
    return c == '\0' || c == ';' || c == ' ';
}

/* ---------------------------------------------------------------- generation */

static int tokenize_prompt(daemon_t *d, const api_request_t *ar, tok_buf_t *out, api_error_t *e)
{
    const tokenizer_t *tok = d->info.tok;
    char err[ERR_MSG_MAX];
    int rc;
    if (ar->kind == API_COMPLETIONS) {
        if (ar->prompt_tokens != NULL) {
            for (size_t i = 0; i < ar->n_prompt_tokens; i++)
                if ((rc = tok_buf_push(out, ar->prompt_tokens[i])) != 0)
                    return rc;
            return 0;
        }
        rc = tok_encode(tok, ar->prompt ? ar->prompt : "", ar->prompt_len, tok_add_bos_default(tok),
                        1, out, err, sizeof err);
    } else {
        if (d->info.chat == NULL) {
            e->status = 400;
            snprintf(e->message, sizeof e->message,
                     "this model's chat template is not one llamad knows; start llamad with "
                     "--chat-template chatml, llama2, llama3 or a template file, or use /v1/completions");
            snprintf(e->param, sizeof e->param, "messages");
            return ERR_UNSUPPORTED;
        }
        chat_msg_t *msgs = calloc(ar->n_messages ? ar->n_messages : 1, sizeof *msgs);
        if (msgs == NULL)
            return ERR_NOMEM;
        for (size_t i = 0; i < ar->n_messages; i++)
            msgs[i] = (chat_msg_t){ ar->messages[i].role, ar->messages[i].content };
        tok_text_t text;
        tok_spans_t content;
        tok_text_init(&text);
        tok_spans_init(&content);
        rc = chat_render_spans(d->info.chat, msgs, ar->n_messages, 1, &text, &content, err,
                               sizeof err);
        free(msgs);
        if (rc == ERR_INVALID || rc == ERR_RANGE) {
            e->status = 400;
            snprintf(e->message, sizeof e->message, "%s", err);
            snprintf(e->param, sizeof e->param, "messages");
            tok_text_close(&text);
            tok_spans_close(&content);
            return rc;
        }
        if (rc == 0) {
            /* the template's markers are control tokens; what clients wrote stays text */
            int bos = !chat_template_has_bos(d->info.chat) && tok_add_bos_default(tok);
            rc = tok_encode_plain(tok, text.data ? text.data : "", text.len, bos, &content, out,
                                  err, sizeof err);
        }
        tok_text_close(&text);
        tok_spans_close(&content);
    }
    if (rc == ERR_TOOLONG || rc == ERR_INVALID) {
        e->status = 400;
        snprintf(e->message, sizeof e->message, "%s", err);
        snprintf(e->param, sizeof e->param, ar->kind == API_CHAT ? "messages" : "prompt");
    }
    return rc;
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

static int handle_generate(daemon_t *d, http_request_t *req, api_kind_t kind, const char *label,
                           const uint8_t key_id[AUTH_KEY_ID_BYTES])
{
    api_limits_t lim = {
        .n_vocab = d->info.n_vocab, .n_ctx = d->info.n_ctx,
        .max_prompt_bytes = (size_t)d->info.n_ctx * 16 < 65536 ? 65536 : (size_t)d->info.n_ctx * 16,
        .max_json_depth = 64, .model_name = d->info.model_name,
    };
    api_request_t ar;
    api_error_t ae;
    memset(&ar, 0, sizeof ar);
    memset(&ae, 0, sizeof ae);
    ae.type = "invalid_request_error";
    if (api_parse_request(kind, req->body, req->body_len, &lim, &ar, &ae) != 0)
        return respond_api_error(req, &ae);

    tok_buf_t toks;
    tok_buf_init(&toks);
    int rc = tokenize_prompt(d, &ar, &toks, &ae);
    if (rc != 0) {
        tok_buf_close(&toks);
        api_request_free(&ar);
        if (ae.status != 0)
            return respond_api_error(req, &ae);
        return http_respond_error(req, 500, "server_error", NULL, NULL, "tokenizer failure: %s",
                                  err_str(rc));
    }
    const char *param = kind == API_CHAT ? "messages" : "prompt";
    if (toks.n == 0) {
        tok_buf_close(&toks);
        api_request_free(&ar);
        return http_respond_error(req, 400, "invalid_request_error", param, NULL,
                                  "the prompt is empty");
    }
    if (toks.n >= d->info.n_ctx) {
        size_t n = toks.n;
        tok_buf_close(&toks);
        api_request_free(&ar);
        return http_respond_error(req, 400, "invalid_request_error", param,
                                  "context_length_exceeded",
                                  "This model's maximum context length is %u tokens. However, your "
                                  "prompt has %zu tokens.", d->info.n_ctx, n);
    }

    engine_request_t er;
    engine_request_init(&er);
    er.tokens = toks.ids;
    er.n_tokens = toks.n;
    er.sampling = ar.sampling;
    er.max_tokens = ar.max_tokens;
    er.stop = (const char *const *)ar.stop;
    er.n_stop = ar.n_stop;
    uint8_t salt[SHA256_BYTES];
    er.cache_salt = salt;
    er.cache_salt_len = cache_salt(d, &ar, key_id, salt);
    uint64_t id;
    char err[ERR_MSG_MAX];
    engine_stats_t st = d->stats;
    rc = engine_submit(d->engine, &er, &id, err, sizeof err);
    tok_buf_close(&toks);
    if (rc != 0) {
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

    job_t *j = job_create(d, req, label);
    if (j == NULL) {
        engine_cancel(d->engine, id);
        api_request_free(&ar);
        return http_respond_error(req, 500, "server_error", NULL, NULL, "out of memory");
    }
    j->req = ar;
    j->engine_id = id;
    j->submitted = 1;
    j->engine_done = 0;
    j->t_submit = clock_now_ns();
    j->likely_queued = st.queued > 0 || st.running >= d->info.max_seqs;
    j->stream = ar.stream;
    j->want_logprobs = ar.logprobs;
    snprintf(j->id, sizeof j->id, "%s-%016" PRIx64 "%08" PRIx64,
             kind == API_CHAT ? "chatcmpl" : "cmpl", (uint64_t)time(NULL) ^ (j->t_submit << 20),
             ++d->next_seq);
    j->meta = (api_resp_meta_t){ j->id, d->info.model_name, (int64_t)time(NULL), kind, 0 };
    metrics_observe(d->metrics, METRIC_QUEUE, (j->t_submit - j->t_arrive) / 1e9);
    req->user = j;
    if (j->stream)
        return stream_start(j);
    return http_defer(req);
}

void routes_on_event(job_t *j, const engine_event_t *ev)
{
    daemon_t *d = j->d;
    if (ev->text_len > 0 && tok_text_append(&j->text, ev->text, ev->text_len) != 0)
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
        api_result_t res = {
            .text = j->text.data ? j->text.data : "", .text_len = j->text.len,
            .finish_reason = engine_finish_name(ev->finish),
            .prompt_tokens = ev->prompt_tokens, .completion_tokens = ev->completion_tokens,
            .cached_tokens = ev->cached_tokens,
            .token_events = (const engine_event_t *const *)j->events, .n_tokens = j->n_events,
            .want_logprobs = j->want_logprobs, .tok = d->info.tok,
        };
        char *json = api_response_json(&j->meta, &res);
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

/* ---------------------------------------------------------------- tokenize, detokenize */

#define SMALL_OBJECT_MAX 16 /* members of a /tokenize or /detokenize body */

/* Parse a small JSON object body: NULL unless it is an object of at most
 * SMALL_OBJECT_MAX members with no name twice (cJSON would keep both and
 * answer the first, shared/THREATS.md A9). */
static cJSON *parse_small_object(const http_request_t *req)
{
    cJSON *root = cJSON_ParseWithLength(req->body, req->body_len);
    if (!cJSON_IsObject(root) || cJSON_GetArraySize(root) > SMALL_OBJECT_MAX) {
        cJSON_Delete(root);
        return NULL;
    }
    for (const cJSON *a = root->child; a != NULL; a = a->next)
        for (const cJSON *b = a->next; b != NULL; b = b->next)
            if (strcmp(a->string, b->string) == 0) {
                cJSON_Delete(root);
                return NULL;
            }
    return root;
}

static int handle_tokenize(daemon_t *d, http_request_t *req)
{
    /* cJSON decodes \u0000 into the C string, which would silently cut the text */
    if (memmem(req->body, req->body_len, "\\u0000", 6) != NULL)
        return http_respond_error(req, 400, "invalid_request_error", "content", NULL,
                                  "content: NUL characters (\\u0000) are not allowed");
    cJSON *root = parse_small_object(req);
    if (root == NULL)
        return http_respond_error(req, 400, "invalid_request_error", NULL, NULL,
                                  "the body is not a JSON object of at most %d distinct members",
                                  SMALL_OBJECT_MAX);
    const cJSON *content = cJSON_GetObjectItemCaseSensitive(root, "content");
    const cJSON *add = cJSON_GetObjectItemCaseSensitive(root, "add_special");
    const cJSON *parse = cJSON_GetObjectItemCaseSensitive(root, "parse_special");
    const cJSON *pieces = cJSON_GetObjectItemCaseSensitive(root, "with_pieces");
    const char *bad = !cJSON_IsString(content) ? "content"
                      : (add && !cJSON_IsBool(add)) ? "add_special"
                      : (parse && !cJSON_IsBool(parse)) ? "parse_special"
                      : (pieces && !cJSON_IsBool(pieces)) ? "with_pieces" : NULL;
    if (bad != NULL) {
        cJSON_Delete(root);
        return http_respond_error(req, 400, "invalid_request_error", bad, NULL,
                                  "%s: expected a %s", bad, strcmp(bad, "content") ? "boolean" : "string");
    }
    size_t len = strlen(content->valuestring);
    if (!utf8_valid(content->valuestring, len)) {
        cJSON_Delete(root);
        return http_respond_error(req, 400, "invalid_request_error", "content", NULL,
                                  "content: not valid UTF-8");
    }
    tok_buf_t toks;
    tok_buf_init(&toks);
    char err[ERR_MSG_MAX];
    int rc = tok_encode(d->info.tok, content->valuestring, len, cJSON_IsTrue(add),
                        parse ? cJSON_IsTrue(parse) : 1, &toks, err, sizeof err);
    if (rc != 0) {
        cJSON_Delete(root);
        tok_buf_close(&toks);
        return http_respond_error(req, rc == ERR_TOOLONG ? 400 : 500,
                                  rc == ERR_TOOLONG ? "invalid_request_error" : "server_error",
                                  "content", NULL, "%s", err);
    }
    int with_pieces = cJSON_IsTrue(pieces);
    cJSON_Delete(root);
    cJSON *out = cJSON_CreateObject();
    cJSON *arr = cJSON_AddArrayToObject(out, "tokens");
    for (size_t i = 0; arr != NULL && i < toks.n; i++) {
        if (with_pieces) {
            cJSON *o = cJSON_CreateObject();
            cJSON_AddNumberToObject(o, "id", toks.ids[i]);
            tok_text_t piece;
            tok_text_init(&piece);
            tok_decode(d->info.tok, &toks.ids[i], 1, 0, &piece);
            cJSON_AddStringToObject(o, "piece", piece.data ? piece.data : "");
            tok_text_close(&piece);
            cJSON_AddItemToArray(arr, o);
        } else {
            cJSON_AddItemToArray(arr, cJSON_CreateNumber(toks.ids[i]));
        }
    }
    tok_buf_close(&toks);
    return respond_json(req, 200, out);
}

static int handle_detokenize(daemon_t *d, http_request_t *req)
{
    cJSON *root = parse_small_object(req);
    const cJSON *arr = root ? cJSON_GetObjectItemCaseSensitive(root, "tokens") : NULL;
    if (!cJSON_IsArray(arr)) {
        cJSON_Delete(root);
        return http_respond_error(req, 400, "invalid_request_error", "tokens", NULL,
                                  "tokens: expected an array of token ids");
    }
    size_t n = (size_t)cJSON_GetArraySize(arr), i = 0;
    int32_t *ids = malloc((n ? n : 1) * sizeof *ids);
    if (ids == NULL) {
        cJSON_Delete(root);
        return http_respond_error(req, 500, "server_error", NULL, NULL, "out of memory");
    }
    const cJSON *it;
    cJSON_ArrayForEach(it, arr) {
        double v = cJSON_IsNumber(it) ? it->valuedouble : -1;
        if (!(v >= 0 && v < d->info.n_vocab) || v != (double)(int32_t)v) {
            free(ids);
            cJSON_Delete(root);
            return http_respond_error(req, 400, "invalid_request_error", "tokens", NULL,
                                      "tokens[%zu]: not a token id in [0, %u)", i, d->info.n_vocab);
        }
        ids[i++] = (int32_t)v;
    }
    cJSON_Delete(root);
    tok_text_t text;
    tok_text_init(&text);
    int rc = tok_decode(d->info.tok, ids, n, 0, &text);
    free(ids);
    if (rc != 0) {
        tok_text_close(&text);
        return http_respond_error(req, 500, "server_error", NULL, NULL, "detokenize: %s", err_str(rc));
    }
    cJSON *out = cJSON_CreateObject();
    cJSON_AddStringToObject(out, "content", text.data ? text.data : "");
    tok_text_close(&text);
    return respond_json(req, 200, out);
}

/* ---------------------------------------------------------------- models, health, metrics */

static int handle_models(daemon_t *d, http_request_t *req)
{
    cJSON *out = cJSON_CreateObject();
    cJSON_AddStringToObject(out, "object", "list");
    cJSON *data = cJSON_AddArrayToObject(out, "data");
    cJSON *m = cJSON_CreateObject();
    cJSON_AddStringToObject(m, "id", d->info.model_name);
    cJSON_AddStringToObject(m, "object", "model");
    cJSON_AddNumberToObject(m, "created", (double)time(NULL));
    cJSON_AddStringToObject(m, "owned_by", "llamad");
    cJSON_AddNumberToObject(m, "max_model_len", d->info.n_ctx);
    cJSON_AddItemToArray(data, m);
    return respond_json(req, 200, out);
}

static int handle_health(daemon_t *d, http_request_t *req, route_id_t r)
{
    health_t h = r == R_HEALTH_LIVE ? HEALTH_OK : daemon_health(d);
    char body[160];
    int n;
    if (d->engine != NULL && r != R_HEALTH_LIVE)
        n = snprintf(body, sizeof body, "{\"status\":\"%s\",\"backend\":\"%s\"}",
                     daemon_health_name(h), d->info.backend);
    else
        n = snprintf(body, sizeof body, "{\"status\":\"%s\"}", daemon_health_name(h));
    if (h != HEALTH_OK)
        req->retry_after = daemon_retry_after(d);
    return http_respond(req, h == HEALTH_OK ? 200 : 503, "application/json", body, (size_t)n);
}

static int handle_metrics(daemon_t *d, http_request_t *req)
{
    if (d->engine != NULL)
        engine_get_stats(d->engine, &d->stats);
    char *text = metrics_render(d->metrics, d->engine ? &d->stats : NULL,
                                d->engine ? d->info.model_name : NULL,
                                d->engine ? d->info.backend : NULL, d->cfg->metrics_vllm_names);
    if (text == NULL)
        return http_respond_error(req, 500, "server_error", NULL, NULL, "out of memory");
    int ret = http_respond(req, 200, "text/plain; version=0.0.4; charset=utf-8", text, strlen(text));
    free(text);
    return ret;
}

/* ---------------------------------------------------------------- dispatch */

/*
 * When the headers are complete, before any body is read: everything that
 * can refuse a request without its body (host, route, key, method, type).
 * A client without a valid key never gets a body buffered.
 */
int routes_admit(void *ctx, http_request_t *req)
{
    daemon_t *d = ctx;
    int r = find_route(req->url);
    req->route_id = r;
    int is_health = r == R_HEALTH || r == R_HEALTH_LIVE || r == R_HEALTH_READY;
    int public = (is_health && d->cfg->public_health) || (r == R_METRICS && d->cfg->public_metrics);
    const char *host = req->host;
    if (auth_count(d->auth) == 0 && !auth_host_allowed(host, d->cfg->allowed_hosts))
        return http_respond_error(req, 403, "invalid_request_error", NULL, "host_not_allowed",
                                  "Host \"%.100s\" is not served: without API keys llamad answers "
                                  "only IP addresses, localhost and the names of allowed-hosts",
                                  host);
    if (r < 0)
        return http_respond_error(req, 404, "invalid_request_error", NULL, "not_found",
                                  "no route for %s %.200s", req->method, req->url);
    if (!public && !auth_check(d->auth, http_header(req, MHD_HTTP_HEADER_AUTHORIZATION), req->key_id))
        return http_respond_error(req, 401, "authentication_error", NULL, "invalid_api_key",
                                  "a valid API key is required: send \"Authorization: Bearer <key>\"");
    const char *want = route_table[r].method;
    if (strcmp(req->method, want) != 0 &&
        !(strcmp(want, "GET") == 0 && strcmp(req->method, "HEAD") == 0)) {
        req->allow = strcmp(want, "GET") == 0 ? "GET, HEAD" : want;
        return http_respond_error(req, 405, "invalid_request_error", NULL, "method_not_allowed",
                                  "%s is not allowed on %s (use %s)", req->method, req->url, want);
    }
    if (strcmp(want, "POST") != 0) {
        req->body_limit = 0;   /* GET routes take no body: none is buffered */
        return MHD_YES;
    }
    if (!is_json_type(http_header(req, MHD_HTTP_HEADER_CONTENT_TYPE)))
        return http_respond_error(req, 415, "invalid_request_error", NULL, "unsupported_media_type",
                                  "the body must be JSON with \"Content-Type: application/json\"");
    return MHD_YES;
}

/* The whole request is in, admitted by routes_admit. */
int routes_dispatch(void *ctx, http_request_t *req)
{
    daemon_t *d = ctx;
    route_id_t r = (route_id_t)req->route_id;
    if (r == R_HEALTH || r == R_HEALTH_LIVE || r == R_HEALTH_READY)
        return handle_health(d, req, r);
    if (r == R_METRICS)
        return handle_metrics(d, req);
    if (d->engine == NULL || d->draining)
        return respond_unavailable(d, req);
    switch (r) {
    case R_COMPLETIONS: return handle_generate(d, req, API_COMPLETIONS, route_table[r].path, req->key_id);
    case R_CHAT: return handle_generate(d, req, API_CHAT, route_table[r].path, req->key_id);
    case R_MODELS: return handle_models(d, req);
    case R_TOKENIZE: return handle_tokenize(d, req);
    case R_DETOKENIZE: return handle_detokenize(d, req);
    default: return http_respond_error(req, 500, "server_error", NULL, NULL,
                                       "request for route %d was not admitted", (int)r);
    }
}

void routes_completed(void *ctx, http_request_t *req, int ok)
{
    daemon_t *d = ctx;
    const char *label = route_label(req->url);
    job_t *j = req->user;
    double secs = (clock_now_ns() - req->start_ns) / 1e9;
    if (req->status != 0)
        metrics_request(d->metrics, label, req->status);
    int quiet = strncmp(label, "/health", 7) == 0 || strcmp(label, "/metrics") == 0;
    if (j != NULL) {
        metrics_observe(d->metrics, METRIC_DURATION, secs);
        log_info("%s %s %u%s prompt=%u completion=%u %.3fs%s", req->method, req->url, req->status,
                 j->stream ? " stream" : "", j->prompt_tokens,
                 j->completion_tokens ? j->completion_tokens : j->n_generated, secs,
                 ok ? "" : " (client gone)");
        if (j->t_first_out != 0 && j->t_first_posted != 0)
            log_debug("%s timing: arrival to submit %.3f ms, submit to first token posted %.3f ms "
                      "(the engine), posted to taken %.3f ms, taken to written %.3f ms", j->id,
                      (j->t_submit - j->t_arrive) / 1e6, (j->t_first_posted - j->t_submit) / 1e6,
                      (j->t_first - j->t_first_posted) / 1e6, (j->t_first_out - j->t_first) / 1e6);
        j->http = NULL;
        if (!ok)
            job_client_gone(j);
        job_release(j);
    } else if (quiet) {
        log_debug("%s %s %u %.3fs", req->method ? req->method : "-", req->url ? req->url : "-",
                  req->status, secs);
    } else {
        log_info("%s %s %u %.3fs%s", req->method ? req->method : "-", req->url ? req->url : "-",
                 req->status, secs, ok ? "" : " (client gone)");
    }
}
