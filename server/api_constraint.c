/*
 * api_constraint.c - the request fields that constrain the output to a
 * language, as OpenAI, vLLM and llama.cpp's server spell them, read into
 * one (kind, source) pair for engine_constraint_compile:
 *
 *   response_format   {"type": "text"} (none), {"type": "json_object"} (any
 *                     object; with llama.cpp's "schema" member, that schema),
 *                     {"type": "json_schema", "json_schema": {"name",
 *                     "schema" (required), "strict", "description"}}
 *   guided_json       a schema (object, or a string holding one)   vLLM
 *   guided_regex      a regular expression                         vLLM
 *   guided_choice     a list of strings                            vLLM
 *   guided_grammar    GBNF text                                    vLLM
 *   structured_outputs {"json" | "regex" | "choice" | "grammar" |
 *                     "json_object": true}, one of them            vLLM
 *   grammar           GBNF text                                    llama.cpp
 *   json_schema       a schema object                              llama.cpp
 *
 * A null value is the field's absence.  Two constraints in one request
 * are a 400 naming the second.  vLLM's guided_decoding_backend is
 * accepted (llamad has one matcher; the output is constrained the same
 * whichever is named); guided_whitespace_pattern and the structured_outputs
 * options that change the language are refused by name.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "api.h"
#include "json_get.h"

#define BAD(e, code, param, ...) api_error_set((e), (code), 400, NULL, (param), NULL, __VA_ARGS__)

/* Record the constraint (kind, src as text) unless one is already set. */
static int set(api_request_t *req, int kind, const char *param, const cJSON *src_json,
               const char *src_text, api_error_t *e)
{
    if (req->constraint_kind != 0)
        return BAD(e, ERR_INVALID, param, "%s: the request already constrains its output with "
                   "%s; send one constraint", param, req->constraint_param);
    char *text = NULL;
    if (src_json != NULL)
        text = cJSON_PrintUnformatted(src_json);
    else if (src_text != NULL)
        text = strdup(src_text);
    if ((src_json != NULL || src_text != NULL) && text == NULL)
        return api_error_set(e, ERR_NOMEM, 503, "server_error", NULL, NULL, "out of memory");
    req->constraint_kind = kind;
    req->constraint_src = text;
    req->constraint_len = text != NULL ? strlen(text) : 0;
    snprintf(req->constraint_param, sizeof req->constraint_param, "%s", param);
    return 0;
}

/* A schema: an object or a boolean (JSON Schema allows both); guided_json also a string. */
static int schema_value(api_request_t *req, const char *param, const cJSON *v, int allow_text,
                        api_error_t *e)
{
    if (cJSON_IsObject(v) || cJSON_IsBool(v))
        return set(req, ENGINE_CONSTRAINT_JSON_SCHEMA, param, v, NULL, e);
    if (allow_text && cJSON_IsString(v)) {
        cJSON *parsed = cJSON_Parse(v->valuestring);
        int ok = parsed != NULL && (cJSON_IsObject(parsed) || cJSON_IsBool(parsed));
        cJSON_Delete(parsed);
        if (!ok)
            return BAD(e, ERR_INVALID, param, "%s: the string is not a JSON Schema (a JSON object)",
                       param);
        return set(req, ENGINE_CONSTRAINT_JSON_SCHEMA, param, NULL, v->valuestring, e);
    }
    return BAD(e, ERR_INVALID, param, "%s: expected a JSON Schema object", param);
}

static int choice_value(api_request_t *req, const char *param, const cJSON *v, api_error_t *e)
{
    if (!cJSON_IsArray(v) || v->child == NULL)
        return BAD(e, ERR_INVALID, param, "%s: expected a non-empty list of strings", param);
    size_t i = 0;
    for (const cJSON *c = v->child; c != NULL; c = c->next, i++)
        if (!cJSON_IsString(c))
            return BAD(e, ERR_INVALID, param, "%s[%zu]: expected a string", param, i);
    return set(req, ENGINE_CONSTRAINT_CHOICE, param, v, NULL, e);
}

static int parse_response_format(const cJSON *root, api_request_t *req, api_error_t *e)
{
    const cJSON *rf = jget_field(root, "response_format");
    if (rf == NULL)
        return 0;
    if (!cJSON_IsObject(rf))
        return BAD(e, ERR_INVALID, "response_format", "response_format: expected an object");
    const cJSON *t = jget_field(rf, "type");
    if (!cJSON_IsString(t))
        return BAD(e, ERR_INVALID, "response_format", "response_format.type: expected one of "
                   "\"text\", \"json_object\", \"json_schema\"");
    if (strcmp(t->valuestring, "text") == 0)
        return 0;
    if (strcmp(t->valuestring, "json_object") == 0) {
        const cJSON *schema = jget_field(rf, "schema");   /* llama.cpp's extension */
        if (schema != NULL)
            return schema_value(req, "response_format", schema, 0, e);
        return set(req, ENGINE_CONSTRAINT_JSON_OBJECT, "response_format", NULL, NULL, e);
    }
    if (strcmp(t->valuestring, "json_schema") != 0)
        return BAD(e, ERR_UNSUPPORTED, "response_format", "response_format.type: \"%.40s\" is not "
                   "supported (\"text\", \"json_object\" or \"json_schema\")", t->valuestring);
    const cJSON *js = jget_field(rf, "json_schema");
    if (js == NULL)
        /* {"type": "json_schema", "schema": ...} */
        js = jget_field(rf, "schema") != NULL ? rf : NULL;
    if (!cJSON_IsObject(js))
        return BAD(e, ERR_INVALID, "response_format", "response_format.json_schema: expected an "
                   "object with a \"schema\"");
    const cJSON *name = jget_field(js, "name"), *strict = jget_field(js, "strict");
    if (name != NULL && (!cJSON_IsString(name) || strlen(name->valuestring) > 64))
        return BAD(e, ERR_INVALID, "response_format", "response_format.json_schema.name: expected "
                   "a string of at most 64 characters");
    if (strict != NULL && !cJSON_IsBool(strict))
        return BAD(e, ERR_INVALID, "response_format", "response_format.json_schema.strict: expected "
                   "a boolean");
    const cJSON *schema = jget_field(js, "schema");
    if (schema == NULL)
        return BAD(e, ERR_INVALID, "response_format", "response_format.json_schema.schema: "
                   "required (for any JSON object, send {\"type\": \"json_object\"})");
    return schema_value(req, "response_format", schema, 0, e);
}

static int parse_structured_outputs(const cJSON *root, api_request_t *req, api_error_t *e)
{
    const cJSON *so = jget_field(root, "structured_outputs");
    if (so == NULL)
        return 0;
    if (!cJSON_IsObject(so))
        return BAD(e, ERR_INVALID, "structured_outputs", "structured_outputs: expected an object");
    int before = req->constraint_kind;
    for (const cJSON *c = so->child; c != NULL; c = c->next) {
        char param[64];
        snprintf(param, sizeof param, "structured_outputs.%.40s", c->string);
        int rc = 0;
        if (cJSON_IsNull(c))
            continue;
        if (strcmp(c->string, "json") == 0)
            rc = schema_value(req, param, c, 1, e);
        else if (strcmp(c->string, "regex") == 0)
            rc = jget_want_string(c, param, e) ? ERR_INVALID
                 : set(req, ENGINE_CONSTRAINT_REGEX, param, NULL, c->valuestring, e);
        else if (strcmp(c->string, "choice") == 0)
            rc = choice_value(req, param, c, e);
        else if (strcmp(c->string, "grammar") == 0)
            rc = jget_want_string(c, param, e) ? ERR_INVALID
                 : set(req, ENGINE_CONSTRAINT_GBNF, param, NULL, c->valuestring, e);
        else if (strcmp(c->string, "json_object") == 0) {
            if (!cJSON_IsBool(c))
                rc = BAD(e, ERR_INVALID, param, "%s: expected a boolean", param);
            else if (cJSON_IsTrue(c))
                rc = set(req, ENGINE_CONSTRAINT_JSON_OBJECT, param, NULL, NULL, e);
        } else if (strcmp(c->string, "backend") == 0) {
            if (!cJSON_IsString(c))
                rc = BAD(e, ERR_INVALID, param, "%s: expected a string", param);
        } else {
            /* whitespace_pattern, disable_any_whitespace, structural_tag, ...: they change
               the language, and llamad does not serve them */
            rc = BAD(e, ERR_UNSUPPORTED, param, "%s: not supported", param);
        }
        if (rc != 0)
            return rc;
    }
    if (req->constraint_kind == before)
        return BAD(e, ERR_INVALID, "structured_outputs", "structured_outputs: expected one of "
                   "\"json\", \"regex\", \"choice\", \"grammar\", \"json_object\": true");
    return 0;
}

int api_parse_constraint(const cJSON *root, api_request_t *req, api_error_t *e)
{
    int rc;
    if ((rc = parse_response_format(root, req, e)) != 0)
        return rc;
    const cJSON *v;
    if ((v = jget_field(root, "guided_json")) != NULL &&
        (rc = schema_value(req, "guided_json", v, 1, e)) != 0)
        return rc;
    if ((v = jget_field(root, "guided_regex")) != NULL &&
        ((rc = jget_want_string(v, "guided_regex", e)) != 0 ||
         (rc = set(req, ENGINE_CONSTRAINT_REGEX, "guided_regex", NULL, v->valuestring, e)) != 0))
        return rc;
    if ((v = jget_field(root, "guided_choice")) != NULL &&
        (rc = choice_value(req, "guided_choice", v, e)) != 0)
        return rc;
    if ((v = jget_field(root, "guided_grammar")) != NULL &&
        ((rc = jget_want_string(v, "guided_grammar", e)) != 0 ||
         (rc = set(req, ENGINE_CONSTRAINT_GBNF, "guided_grammar", NULL, v->valuestring, e)) != 0))
        return rc;
    if ((rc = parse_structured_outputs(root, req, e)) != 0)
        return rc;
    if ((v = jget_field(root, "grammar")) != NULL &&
        ((rc = jget_want_string(v, "grammar", e)) != 0 ||
         (rc = set(req, ENGINE_CONSTRAINT_GBNF, "grammar", NULL, v->valuestring, e)) != 0))
        return rc;
    if ((v = jget_field(root, "json_schema")) != NULL &&
        (rc = schema_value(req, "json_schema", v, 0, e)) != 0)
        return rc;
    if ((v = jget_field(root, "guided_decoding_backend")) != NULL && !cJSON_IsString(v))
        return BAD(e, ERR_INVALID, "guided_decoding_backend", "guided_decoding_backend: expected "
                   "a string");
    if (jget_field(root, "guided_whitespace_pattern") != NULL)
        return BAD(e, ERR_UNSUPPORTED, "guided_whitespace_pattern", "guided_whitespace_pattern: "
                   "not supported (JSON output allows at most 20 whitespace characters between "
                   "tokens)");
    return 0;
}
