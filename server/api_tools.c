/*
 * api_tools.c - the tool-calling fields of a chat request: tools,
 * tool_choice, parallel_tool_calls, the legacy functions / function_call
 * (served as tools and tool_choice), and the tool fields of messages
 * (an assistant's tool_calls, a tool message's tool_call_id).  Hostile
 * input: every field's type, every name's shape, the counts.  Loop thread.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE   /* strdup */
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "api.h"
#include "json_get.h"

#define BAD(e, code, param, ...) api_error_set((e), (code), 400, NULL, (param), NULL, __VA_ARGS__)

/* OpenAI's function names: [a-zA-Z0-9_-]{1,64}. */
static int good_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 64)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-'))
            return 0;
    }
    return 1;
}

/* fn: a function object {name, description?, parameters?, strict?}; param names it. */
static int add_tool(api_request_t *req, const cJSON *fn, const char *param, api_error_t *e)
{
    char p[96];
    if (!cJSON_IsObject(fn))
        return BAD(e, ERR_INVALID, param, "%s: expected an object", param);
    const cJSON *name = jget_field(fn, "name"), *desc = jget_field(fn, "description");
    const cJSON *params = jget_field(fn, "parameters"), *strict = jget_field(fn, "strict");
    snprintf(p, sizeof p, "%s.name", param);
    if (!cJSON_IsString(name) || !good_name(name->valuestring))
        return BAD(e, ERR_INVALID, p, "%s: want 1 to 64 of a-z, A-Z, 0-9, _ and -", p);
    for (size_t i = 0; i < req->n_tools; i++)
        if (strcmp(req->tool_names[i], name->valuestring) == 0)
            return BAD(e, ERR_INVALID, p, "%s: \"%s\" is the name of an earlier tool too", p,
                       name->valuestring);
    snprintf(p, sizeof p, "%s.description", param);
    if (desc != NULL && !cJSON_IsString(desc))
        return BAD(e, ERR_INVALID, p, "%s: expected a string", p);
    snprintf(p, sizeof p, "%s.parameters", param);
    if (params != NULL && !cJSON_IsObject(params))
        return BAD(e, ERR_INVALID, p, "%s: expected a JSON Schema object", p);
    snprintf(p, sizeof p, "%s.strict", param);
    if (strict != NULL && !cJSON_IsBool(strict))
        return BAD(e, ERR_INVALID, p, "%s: expected a boolean", p);
    /* the tool as the template shows it: {"type":"function","function":{...}} */
    cJSON *t = cJSON_CreateObject(), *f = cJSON_Duplicate(fn, 1);
    if (t == NULL || f == NULL || !cJSON_AddStringToObject(t, "type", "function") ||
        !cJSON_AddItemToObject(t, "function", f)) {
        cJSON_Delete(t);
        return jget_nomem(e);
    }
    size_t k = req->n_tools;
    req->tools[k] = cJSON_PrintUnformatted(t);
    cJSON_Delete(t);
    req->tool_names[k] = strdup(name->valuestring);
    req->tool_params[k] = params != NULL ? cJSON_PrintUnformatted(params) : NULL;
    req->n_tools = k + 1;
    if (req->tools[k] == NULL || req->tool_names[k] == NULL ||
        (params != NULL && req->tool_params[k] == NULL))
        return jget_nomem(e);
    return 0;
}

static int parse_list(const cJSON *v, const char *key, int legacy, api_request_t *req,
                      api_error_t *e)
{
    if (!cJSON_IsArray(v))
        return BAD(e, ERR_INVALID, key, "%s: expected an array", key);
    size_t n = (size_t)cJSON_GetArraySize(v);
    if (n > API_MAX_TOOLS)
        return BAD(e, ERR_FULL, key, "%s: %zu tools; at most %d are served", key, n,
                   API_MAX_TOOLS);
    if (n == 0)
        return 0;
    req->tools = calloc(n, sizeof *req->tools);
    req->tool_names = calloc(n, sizeof *req->tool_names);
    req->tool_params = calloc(n, sizeof *req->tool_params);
    if (req->tools == NULL || req->tool_names == NULL || req->tool_params == NULL)
        return jget_nomem(e);
    size_t i = 0;
    for (const cJSON *t = v->child; t != NULL; t = t->next, i++) {
        char p[64];
        snprintf(p, sizeof p, "%s[%zu]", key, i);
        if (legacy) {
            int rc = add_tool(req, t, p, e);
            if (rc != 0)
                return rc;
            continue;
        }
        const cJSON *type = jget_field(t, "type");
        if (!cJSON_IsObject(t) || !cJSON_IsString(type) || strcmp(type->valuestring, "function"))
            return BAD(e, ERR_UNSUPPORTED, p, "%s: only {\"type\": \"function\", \"function\": "
                       "{...}} tools are served", p);
        char pf[80];
        snprintf(pf, sizeof pf, "%s.function", p);
        int rc = add_tool(req, jget_field(t, "function"), pf, e);
        if (rc != 0)
            return rc;
    }
    return 0;
}

static int find_tool(const api_request_t *req, const char *name, size_t *at)
{
    for (size_t i = 0; i < req->n_tools; i++)
        if (strcmp(req->tool_names[i], name) == 0) {
            *at = i;
            return 1;
        }
    return 0;
}

/* tool_choice (legacy: function_call): "none" | "auto" | "required" | a named function. */
static int parse_choice(const cJSON *v, const char *key, int legacy, api_request_t *req,
                        api_error_t *e)
{
    if (cJSON_IsString(v)) {
        const char *s = v->valuestring;
        if (strcmp(s, "none") == 0)
            req->tool_choice = API_TOOLS_NONE;
        else if (strcmp(s, "auto") == 0)
            req->tool_choice = req->n_tools > 0 ? API_TOOLS_AUTO : API_TOOLS_NONE;
        else if (strcmp(s, "required") == 0 && !legacy)
            req->tool_choice = API_TOOLS_REQUIRED;
        else
            return BAD(e, ERR_INVALID, key, "%s: \"%.40s\" is not one of none, auto%s or an "
                       "object naming a function", key, s, legacy ? "" : ", required");
        if (req->tool_choice == API_TOOLS_REQUIRED && req->n_tools == 0)
            return BAD(e, ERR_INVALID, key, "%s: \"required\" without tools", key);
        return 0;
    }
    const cJSON *fn = legacy ? v : jget_field(v, "function"), *type = jget_field(v, "type");
    if (!cJSON_IsObject(v) || (!legacy && (!cJSON_IsString(type) ||
                                          strcmp(type->valuestring, "function") != 0)) ||
        !cJSON_IsObject(fn) || !cJSON_IsString(jget_field(fn, "name")))
        return BAD(e, ERR_INVALID, key, legacy ? "%s: expected \"none\", \"auto\" or {\"name\": "
                   "...}" : "%s: expected a string or {\"type\": \"function\", \"function\": "
                   "{\"name\": ...}}", key);
    const char *name = jget_field(fn, "name")->valuestring;
    if (!find_tool(req, name, &req->tool_named))
        return BAD(e, ERR_INVALID, key, "%s: \"%.64s\" is not one of the tools", key, name);
    req->tool_choice = API_TOOLS_NAMED;
    return 0;
}

int api_parse_tools(const cJSON *root, api_request_t *req, api_error_t *e)
{
    const cJSON *tools = jget_field(root, "tools"), *functions = jget_field(root, "functions");
    const cJSON *choice = jget_field(root, "tool_choice");
    const cJSON *fcall = jget_field(root, "function_call");
    const cJSON *par = jget_field(root, "parallel_tool_calls");
    req->parallel_tool_calls = 1;
    if (par != NULL && !cJSON_IsBool(par))
        return BAD(e, ERR_INVALID, "parallel_tool_calls", "parallel_tool_calls: expected a "
                   "boolean");
    if (par != NULL)
        req->parallel_tool_calls = cJSON_IsTrue(par);
    if (tools != NULL && functions != NULL)
        return BAD(e, ERR_INVALID, "functions", "functions: give tools or the legacy "
                   "functions, not both");
    if (choice != NULL && fcall != NULL)
        return BAD(e, ERR_INVALID, "function_call", "function_call: give tool_choice or the "
                   "legacy function_call, not both");
    int rc = tools != NULL ? parse_list(tools, "tools", 0, req, e)
           : functions != NULL ? parse_list(functions, "functions", 1, req, e) : 0;
    if (rc != 0)
        return rc;
    req->tool_choice = req->n_tools > 0 ? API_TOOLS_AUTO : API_TOOLS_NONE;
    if (choice != NULL)
        return parse_choice(choice, "tool_choice", 0, req, e);
    if (fcall != NULL)
        return parse_choice(fcall, "function_call", 1, req, e);
    return 0;
}

/* ---------------------------------------------------------------- messages */

static int parse_calls(const cJSON *v, size_t i, api_message_t *am, api_error_t *e)
{
    char p[80];
    snprintf(p, sizeof p, "messages[%zu].tool_calls", i);
    if (!cJSON_IsArray(v))
        return BAD(e, ERR_INVALID, p, "%s: expected an array", p);
    size_t n = (size_t)cJSON_GetArraySize(v);
    if (n > API_MAX_TOOL_CALLS)
        return BAD(e, ERR_FULL, p, "%s: %zu calls (at most %d)", p, n, API_MAX_TOOL_CALLS);
    if (n == 0)
        return 0;
    if ((am->tool_calls = calloc(n, sizeof *am->tool_calls)) == NULL)
        return jget_nomem(e);
    size_t j = 0;
    for (const cJSON *c = v->child; c != NULL; c = c->next, j++) {
        snprintf(p, sizeof p, "messages[%zu].tool_calls[%zu]", i, j);
        const cJSON *id = jget_field(c, "id"), *fn = jget_field(c, "function");
        const cJSON *name = jget_field(fn, "name"), *args = jget_field(fn, "arguments");
        if (!cJSON_IsObject(c) || !cJSON_IsString(id) || !cJSON_IsObject(fn) ||
            !cJSON_IsString(name) || !good_name(name->valuestring) || !cJSON_IsString(args))
            return BAD(e, ERR_INVALID, p, "%s: expected {\"id\": string, \"type\": \"function\", "
                       "\"function\": {\"name\": string, \"arguments\": string}}", p);
        cJSON *parsed = cJSON_Parse(args->valuestring);
        int obj = cJSON_IsObject(parsed);
        cJSON_Delete(parsed);
        if (!obj)
            return BAD(e, ERR_INVALID, p, "%s.function.arguments: not the JSON text of an "
                       "object", p);
        api_tool_call_t *t = &am->tool_calls[j];
        am->n_tool_calls = j + 1;
        if ((t->id = strdup(id->valuestring)) == NULL ||
            (t->name = strdup(name->valuestring)) == NULL ||
            (t->arguments = strdup(args->valuestring)) == NULL)
            return jget_nomem(e);
    }
    return 0;
}

int api_parse_message_tools(const cJSON *m, size_t i, api_request_t *req, api_message_t *am,
                            api_error_t *e)
{
    char p[80];
    const cJSON *calls = jget_field(m, "tool_calls"), *id = jget_field(m, "tool_call_id");
    if (calls != NULL) {
        snprintf(p, sizeof p, "messages[%zu].tool_calls", i);
        if (strcmp(am->role, "assistant") != 0)
            return BAD(e, ERR_INVALID, p, "%s: only an assistant message makes tool calls", p);
        int rc = parse_calls(calls, i, am, e);
        if (rc != 0)
            return rc;
    }
    if (strcmp(am->role, "tool") != 0)
        return 0;
    snprintf(p, sizeof p, "messages[%zu].tool_call_id", i);
    if (!cJSON_IsString(id))
        return BAD(e, ERR_INVALID, p, "%s: required in a tool message (a string)", p);
    for (size_t k = 0; k < i; k++)
        for (size_t c = 0; c < req->messages[k].n_tool_calls; c++)
            if (strcmp(req->messages[k].tool_calls[c].id, id->valuestring) == 0)
                return (am->tool_call_id = strdup(id->valuestring)) ? 0 : jget_nomem(e);
    return BAD(e, ERR_INVALID, p, "%s: \"%.64s\" answers no tool call of an earlier assistant "
               "message", p, id->valuestring);
}

void api_tool_calls_free(api_tool_call_t *c, size_t n)
{
    for (size_t i = 0; c != NULL && i < n; i++) {
        free(c[i].id);
        free(c[i].name);
        free(c[i].arguments);
    }
    free(c);
}
