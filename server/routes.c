/*
 * routes.c - request admission and dispatch (auth, route, method, state),
 * the small routes (/v1/models, /tokenize, /detokenize, /metrics; /health
 * is health.c's, the generation routes generate.c's), and the per-request
 * log line and counters.
 *
 * Policy, in order, decided when the headers are complete and before any
 * body is read (routes_admit): a Host that is not allowed without keys is
 * 403; an unknown route is 404 (the route list is public
 * knowledge); a key is required on every route except /health*
 * (public-health), /metrics (public-metrics) when those are public, and
 * the chat page's assets (/, /chat.css, /chat.js: 404 unless web-ui);
 * then a wrong method is 405; then a POST body declared as anything but
 * application/json is 415 (one sent without Content-Type is read as JSON,
 * as curl users send it); then a declared body over the limit is 413
 * (http.c).  With allowed-origins set, every answer to an allowed Origin
 * carries Access-Control-Allow-Origin, and a CORS preflight (OPTIONS with
 * Origin and Access-Control-Request-Method on a known route) is answered
 * 204 before the key check: browsers send it without credentials.  With the body in (routes_dispatch), generation
 * routes answer 503 (with Retry-After) while the model loads or the daemon drains.
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
#include "base/utf8.h"
#include "cors.h"
#include "strlist.h"
#include "webui.h"

typedef enum {
    R_COMPLETIONS, R_CHAT, R_MODELS, R_MODEL, R_HEALTH, R_HEALTH_LIVE, R_HEALTH_READY, R_METRICS,
    R_TOKENIZE, R_DETOKENIZE, R_WEB_PAGE, R_WEB_CSS, R_WEB_JS, R_N
} route_id_t;

static const struct {
    const char *path;
    const char *method;
} route_table[R_N] = {
    [R_COMPLETIONS] = { "/v1/completions", "POST" },
    [R_CHAT] = { "/v1/chat/completions", "POST" },
    [R_MODELS] = { "/v1/models", "GET" },
    [R_MODEL] = { "/v1/models/{id}", "GET" },   /* matched as a prefix: MODEL_PREFIX */
    [R_HEALTH] = { "/health", "GET" },
    [R_HEALTH_LIVE] = { "/health/live", "GET" },
    [R_HEALTH_READY] = { "/health/ready", "GET" },
    [R_METRICS] = { "/metrics", "GET" },
    [R_TOKENIZE] = { "/tokenize", "POST" },
    [R_DETOKENIZE] = { "/detokenize", "POST" },
    [R_WEB_PAGE] = { "/", "GET" },              /* the chat page (webui.h), when web-ui is on */
    [R_WEB_CSS] = { "/chat.css", "GET" },
    [R_WEB_JS] = { "/chat.js", "GET" },
};

#define MODEL_PREFIX "/v1/models/"

static int find_route(const char *url)
{
    for (int i = 0; i < R_N; i++)
        if (i != R_MODEL && strcmp(url, route_table[i].path) == 0)
            return i;
    if (strncmp(url, MODEL_PREFIX, sizeof MODEL_PREFIX - 1) == 0 && url[sizeof MODEL_PREFIX - 1] != '\0')
        return R_MODEL;
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

/* ---------------------------------------------------------------- tokenize, detokenize */

#define SMALL_OBJECT_MAX 16 /* members of a /tokenize or /detokenize body */

/* The body as a small JSON object (json.c's checks), or NULL after answering 400
 * (*ret: what the answer returned). */
static cJSON *small_object(http_request_t *req, int *ret)
{
    api_error_t e;
    memset(&e, 0, sizeof e);
    cJSON *root = json_parse_small_object(req->body, req->body_len, SMALL_OBJECT_MAX, &e);
    if (root == NULL)
        *ret = http_respond_error(req, e.status ? e.status : 400, e.type ? e.type : "invalid_request_error",
                           e.param[0] ? e.param : NULL, e.code, "%s", e.message);
    return root;
}

/*
 * A token's piece as llama.cpp's /tokenize spells it: a string when its
 * bytes are well-formed UTF-8, else the list of its byte values (a byte of
 * a character split between tokens must not turn into U+FFFD).  NULL when
 * out of memory (cJSON then drops the member).
 */
static cJSON *piece_json(const char *piece, size_t len)
{
    if (piece == NULL)
        return cJSON_CreateString("");
    if (utf8_valid(piece, len) && memchr(piece, '\0', len) == NULL) {
        char *text = strndup(piece, len);
        cJSON *s = text ? cJSON_CreateString(text) : NULL;
        free(text);
        return s;
    }
    cJSON *bytes = cJSON_CreateArray();
    for (size_t i = 0; bytes != NULL && i < len; i++)
        cJSON_AddItemToArray(bytes, cJSON_CreateNumber((unsigned char)piece[i]));
    return bytes;
}

static int handle_tokenize(daemon_t *d, http_request_t *req)
{
    int ret;
    cJSON *root = small_object(req, &ret);
    if (root == NULL)
        return ret;
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
    int32_t *ids;
    size_t n;
    char err[ERR_MSG_MAX];
    int rc = engine_tokenize(d->engine, content->valuestring, strlen(content->valuestring),
                             cJSON_IsTrue(add), parse ? cJSON_IsTrue(parse) : 1, &ids, &n, err,
                             sizeof err);
    if (rc != 0) {
        cJSON_Delete(root);
        return http_respond_error(req, rc == ERR_TOOLONG ? 400 : 500,
                                  rc == ERR_TOOLONG ? "invalid_request_error" : "server_error",
                                  "content", NULL, "%s", err);
    }
    int with_pieces = cJSON_IsTrue(pieces);
    cJSON_Delete(root);
    cJSON *out = cJSON_CreateObject();
    cJSON *arr = cJSON_AddArrayToObject(out, "tokens");
    for (size_t i = 0; arr != NULL && i < n; i++) {
        if (with_pieces) {
            cJSON *o = cJSON_CreateObject();
            cJSON_AddNumberToObject(o, "id", ids[i]);
            size_t len = 0;
            const char *piece = engine_token_piece(d->info.tok, ids[i], &len);
            cJSON_AddItemToObject(o, "piece", piece_json(piece, len));
            cJSON_AddItemToArray(arr, o);
        } else {
            cJSON_AddItemToArray(arr, cJSON_CreateNumber(ids[i]));
        }
    }
    free(ids);
    return respond_json(req, 200, out);
}

static int handle_detokenize(daemon_t *d, http_request_t *req)
{
    int ret;
    cJSON *root = small_object(req, &ret);
    if (root == NULL)
        return ret;
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(root, "tokens");
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
    char *text;
    size_t len;
    int rc = engine_detokenize(d->engine, ids, n, &text, &len);
    free(ids);
    if (rc != 0)
        return http_respond_error(req, 500, "server_error", NULL, NULL, "detokenize: %s", err_str(rc));
    cJSON *out = cJSON_CreateObject();
    cJSON_AddStringToObject(out, "content", text);
    free(text);
    return respond_json(req, 200, out);
}

/* ---------------------------------------------------------------- models, metrics */

const char *daemon_model_id(const daemon_t *d)
{
    return d->served_id[0] != '\0' ? d->served_id : d->info.model_name;
}

int daemon_model_known(const daemon_t *d, const char *name)
{
    return strcmp(name, d->info.model_name) == 0 ||
           strlist_has(d->cfg->served_model_name, name, strlen(name), 0);
}

/* The model object of /v1/models and /v1/models/{id}. */
static cJSON *model_object(const daemon_t *d)
{
    cJSON *m = cJSON_CreateObject();
    cJSON_AddStringToObject(m, "id", daemon_model_id(d));
    cJSON_AddStringToObject(m, "object", "model");
    cJSON_AddNumberToObject(m, "created", (double)time(NULL));
    cJSON_AddStringToObject(m, "owned_by", "llamad");
    cJSON_AddNumberToObject(m, "max_model_len", d->info.n_ctx);
    return m;
}

static int handle_models(daemon_t *d, http_request_t *req)
{
    cJSON *out = cJSON_CreateObject();
    cJSON_AddStringToObject(out, "object", "list");
    cJSON *data = cJSON_AddArrayToObject(out, "data");
    cJSON_AddItemToArray(data, model_object(d));
    return respond_json(req, 200, out);
}

/* GET /v1/models/{id}: the model under any of its names, else 404 as OpenAI answers. */
static int handle_model(daemon_t *d, http_request_t *req)
{
    const char *id = req->url + sizeof MODEL_PREFIX - 1;
    if (!daemon_model_known(d, id))
        return http_respond_error(req, 404, "invalid_request_error", "model", "model_not_found",
                                  "The model `%.200s` does not exist.", id);
    return respond_json(req, 200, model_object(d));
}

static int handle_metrics(daemon_t *d, http_request_t *req)
{
    if (d->engine != NULL)
        engine_get_stats(d->engine, &d->stats);
    char *text = metrics_render(d->metrics, d->engine ? &d->stats : NULL,
                                d->engine ? daemon_model_id(d) : NULL,
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
    int is_web = r == R_WEB_PAGE || r == R_WEB_CSS || r == R_WEB_JS;
    if (is_web && !d->web_ui) {   /* web-ui off: 404 as for any unknown path */
        r = -1;
        is_web = 0;
    }
    req->route_id = r;
    int is_health = r == R_HEALTH || r == R_HEALTH_LIVE || r == R_HEALTH_READY;
    /* the page's assets hold no secret: the page asks for the key and sends it itself */
    int public = (is_health && d->cfg->public_health) || (r == R_METRICS && d->cfg->public_metrics) ||
                 is_web;
    const char *host = req->host;
    req->cors_origin = cors_allow_origin(d->cfg->allowed_origins, http_header(req, "Origin"));
    if (auth_count(d->auth) == 0 && !auth_host_allowed(host, d->cfg->allowed_hosts))
        return http_respond_error(req, 403, "invalid_request_error", NULL, "host_not_allowed",
                                  "Host \"%.100s\" is not served: without API keys llamad answers "
                                  "only IP addresses, localhost and the names of allowed-hosts",
                                  host);
    if (r < 0)
        return http_respond_error(req, 404, "invalid_request_error", NULL, "not_found",
                                  "no route for %s %.200s", req->method, req->url);
    const char *want = route_table[r].method;
    if (req->cors_origin != NULL && strcmp(req->method, "OPTIONS") == 0 &&
        http_header(req, "Access-Control-Request-Method") != NULL) {
        /* a CORS preflight: no key (browsers send none), no body */
        req->cors_methods = strcmp(want, "GET") == 0 ? "GET, HEAD, OPTIONS" : "POST, OPTIONS";
        req->body_limit = 0;
        return http_respond(req, 204, NULL, "", 0);
    }
    if (!public && !auth_check(d->auth, http_header(req, MHD_HTTP_HEADER_AUTHORIZATION), req->key_id))
        return http_respond_error(req, 401, "authentication_error", NULL, "invalid_api_key",
                                  "a valid API key is required: send \"Authorization: Bearer <key>\"");
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
    const char *type = http_header(req, MHD_HTTP_HEADER_CONTENT_TYPE);
    if (type != NULL && !is_json_type(type))
        return http_respond_error(req, 415, "invalid_request_error", NULL, "unsupported_media_type",
                                  "the body must be JSON with \"Content-Type: application/json\"");
    if (d->engine == NULL || d->draining)
        return respond_unavailable(d, req);   /* known now: no body need be read */
    return MHD_YES;
}

/* The whole request is in, admitted by routes_admit. */
int routes_dispatch(void *ctx, http_request_t *req)
{
    daemon_t *d = ctx;
    route_id_t r = (route_id_t)req->route_id;
    if (r == R_HEALTH || r == R_HEALTH_LIVE || r == R_HEALTH_READY)
        return health_respond(d, req, r == R_HEALTH_LIVE);
    if (r == R_METRICS)
        return handle_metrics(d, req);
    if (r == R_WEB_PAGE || r == R_WEB_CSS || r == R_WEB_JS)
        return webui_respond(req, webui_find(req->url));
    if (d->engine == NULL || d->draining)
        return respond_unavailable(d, req);
    switch (r) {
    case R_COMPLETIONS: return generate_handle(d, req, API_COMPLETIONS, route_table[r].path, req->key_id);
    case R_CHAT: return generate_handle(d, req, API_CHAT, route_table[r].path, req->key_id);
    case R_MODELS: return handle_models(d, req);
    case R_MODEL: return handle_model(d, req);
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
