/*
 * tool_parse.c - the tool-call spec of a request, and a reply's text
 * parsed into OpenAI tool_calls (tool_parse.h).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE   /* strndup, memmem, getrandom */
#endif
#include "tool_parse.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include <cjson/cJSON.h>

static const char HERMES_OPEN[] = "<tool_call>", HERMES_CLOSE[] = "</tool_call>";

static int is_chatml(const char *kind) { return kind != NULL && strcmp(kind, "chatml") == 0; }
static int is_llama3(const char *kind) { return kind != NULL && strcmp(kind, "llama3") == 0; }

static int add_tool(cJSON *arr, const api_request_t *req, size_t i)
{
    cJSON *t = cJSON_CreateObject();
    if (t == NULL || !cJSON_AddItemToArray(arr, t) ||
        !cJSON_AddStringToObject(t, "name", req->tool_names[i]))
        return -1;
    if (req->tool_params[i] == NULL)
        return 0;
    cJSON *p = cJSON_Parse(req->tool_params[i]);
    return p != NULL && cJSON_AddItemToObject(t, "parameters", p) ? 0 : -1;
}

char *tool_spec_json(const api_request_t *req, const char *kind, const char **trigger)
{
    *trigger = NULL;
    int chatml = is_chatml(kind);
    if (!chatml && !is_llama3(kind))
        return NULL;
    cJSON *s = cJSON_CreateObject(), *tools = cJSON_CreateArray();
    int bad = s == NULL || tools == NULL || !cJSON_AddItemToObject(s, "tools", tools);
    if (!bad && chatml)
        bad = !cJSON_AddStringToObject(s, "prefix", "<tool_call>\n") ||
              !cJSON_AddStringToObject(s, "suffix", "\n</tool_call>") ||
              !cJSON_AddStringToObject(s, "separator", "\n");
    bad = bad || !cJSON_AddStringToObject(s, "name_key", "name") ||
          !cJSON_AddStringToObject(s, "args_key", chatml ? "arguments" : "parameters") ||
          /* LLaMA 3.1's JSON format carries one call */
          !cJSON_AddNumberToObject(s, "max_calls", chatml && req->parallel_tool_calls ? 0 : 1);
    if (req->tool_choice == API_TOOLS_NAMED)
        bad = bad || add_tool(tools, req, req->tool_named) != 0;
    else
        for (size_t i = 0; i < req->n_tools && !bad; i++)
            bad = add_tool(tools, req, i) != 0;
    char *text = bad ? NULL : cJSON_PrintUnformatted(s);
    cJSON_Delete(s);
    if (text != NULL)
        *trigger = chatml ? HERMES_OPEN : "{\"name\"";
    return text;
}

/* ---------------------------------------------------------------- replies */

static int new_id(char out[32])
{
    unsigned char r[12];
    if (getrandom(r, sizeof r, 0) != (ssize_t)sizeof r)
        for (size_t i = 0; i < sizeof r; i++)
            r[i] = (unsigned char)rand();
    int n = snprintf(out, 32, "call_");
    for (size_t i = 0; i < sizeof r; i++)
        n += snprintf(out + n, (size_t)(32 - n), "%02x", r[i]);
    return 0;
}

/* One call's JSON text [p, p + n) into c: {"name": string, args_key: object} and only
   whitespace after it; -1 if not. */
static int one_call(const char *p, size_t n, const char *args_key, api_tool_call_t *c)
{
    if (memchr(p, '\0', n) != NULL)
        return -1;   /* cJSON would take a raw NUL inside a string, and strdup cut there */
    const char *after = NULL;
    cJSON *v = cJSON_ParseWithLengthOpts(p, n, &after, 0);
    while (v != NULL && after < p + n && *after != '\0' && strchr(" \t\r\n", *after) != NULL)
        after++;
    if (v != NULL && after != p + n) {
        cJSON_Delete(v);   /* text after the object: not a call */
        v = NULL;
    }
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(v, "name");
    const cJSON *args = cJSON_GetObjectItemCaseSensitive(v, args_key);
    int rc = -1;
    if (cJSON_IsObject(v) && cJSON_IsString(name) && cJSON_IsObject(args)) {
        char id[32];
        new_id(id);
        c->id = strdup(id);
        c->name = strdup(name->valuestring);
        c->arguments = cJSON_PrintUnformatted(args);
        rc = c->id && c->name && c->arguments ? 0 : -2;
    }
    cJSON_Delete(v);
    return rc;
}

static size_t rtrim(const char *s, size_t n)
{
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\n' || s[n - 1] == '\t' || s[n - 1] == '\r'))
        n--;
    return n;
}

/* Hermes: text, then <tool_call>JSON</tool_call> blocks (the last close may be missing). */
static int parse_hermes(const char *t, size_t len, tool_reply_t *out)
{
    const char *at = memmem(t, len, HERMES_OPEN, sizeof HERMES_OPEN - 1);
    if (at == NULL)
        return 1;
    size_t cap = 0;
    for (const char *p = at; p != NULL; cap++) {
        p += sizeof HERMES_OPEN - 1;
        p = memmem(p, len - (size_t)(p - t), HERMES_OPEN, sizeof HERMES_OPEN - 1);
    }
    if ((out->calls = calloc(cap, sizeof *out->calls)) == NULL)
        return -2;
    out->content = strndup(t, rtrim(t, (size_t)(at - t)));
    const char *end = t + len;
    while (at != NULL) {
        const char *body = at + sizeof HERMES_OPEN - 1;
        const char *close = memmem(body, (size_t)(end - body), HERMES_CLOSE, sizeof HERMES_CLOSE - 1);
        const char *stop = close != NULL ? close : end;
        int rc = one_call(body, (size_t)(stop - body), "arguments", &out->calls[out->n_calls++]);
        if (rc == -1 && close == NULL && out->n_calls > 1) {
            out->n_calls--;   /* a last call cut by max_tokens after whole ones: dropped */
            break;
        }
        if (rc != 0)
            return rc == -2 ? -2 : 1;
        const char *next = close != NULL ? close + sizeof HERMES_CLOSE - 1 : end;
        /* only whitespace may come between calls and after the last */
        while (next < end && strchr(" \t\r\n", *next) != NULL)
            next++;
        if (next < end && (size_t)(end - next) >= sizeof HERMES_OPEN - 1 &&
            memcmp(next, HERMES_OPEN, sizeof HERMES_OPEN - 1) == 0)
            at = next;
        else if (next == end)
            at = NULL;
        else
            return 1;
    }
    return out->content != NULL ? 0 : -2;
}

int tool_parse_reply(const char *text, size_t len, const char *kind, tool_reply_t *out)
{
    memset(out, 0, sizeof *out);
    int rc = 1;
    if (is_chatml(kind)) {
        rc = parse_hermes(text, len, out);
    } else if (is_llama3(kind)) {
        size_t a = 0;
        while (a < len && strchr(" \t\r\n", text[a]) != NULL)
            a++;
        if (a < len && text[a] == '{') {
            if ((out->calls = calloc(1, sizeof *out->calls)) == NULL)
                return ERR_NOMEM;
            out->n_calls = 1;
            rc = one_call(text + a, len - a, "parameters", out->calls);
            if (rc == 0 && (out->content = strdup("")) == NULL)
                rc = -2;
        }
    }
    if (rc == 0)
        return 0;
    tool_reply_free(out);
    if (rc == -2)
        return ERR_NOMEM;
    out->content = strndup(text, len);   /* not calls: all of it is text */
    return out->content != NULL ? 0 : ERR_NOMEM;
}

void tool_reply_free(tool_reply_t *r)
{
    if (r == NULL)
        return;
    api_tool_calls_free(r->calls, r->n_calls);
    free(r->content);
    memset(r, 0, sizeof *r);
}
