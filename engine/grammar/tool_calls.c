/*
 * tool_calls.c - the grammar of a model's tool calls: one or more calls,
 * each a JSON object naming one of the tools and carrying arguments that
 * its parameters schema accepts, wrapped in text the caller chooses (the
 * chat format's markup; this file knows no model).
 *
 * The spec (grammar_from_tool_calls in grammar.h) is a JSON object:
 *   prefix, suffix   text around each call (e.g. "<tool_call>\n", "\n</tool_call>")
 *   separator        text between two calls
 *   max_calls        most calls (0: no bound); at least one is always written
 *   name_key, args_key  the call object's two members ("name", "arguments")
 *   tools            [{"name": string, "parameters": JSON Schema (absent: any object)}]
 * A call is  prefix "{" ws "\"name_key\"" ws ":" ws NAME ws "," ws "\"args_key\"" ws ":" ws
 * ARGS ws "}" suffix,  NAME and ARGS taken from the same tool, so that the
 * arguments always match the tool named.
 */
#include "json_schema_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"

#define TC_MAX_SPEC   (4u * 1024u * 1024u)   /* bytes of spec text */
#define TC_MAX_AFFIX  256u                   /* bytes of prefix, suffix, separator, keys */

static const char *spec_str(const cJSON *spec, const char *key, gbuild_t *b)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(spec, key);
    if (v == NULL)
        return "";
    if (!cJSON_IsString(v) || strlen(v->valuestring) > TC_MAX_AFFIX) {
        gb_fail(b, ERR_INVALID, "tool_calls: %s must be a string of at most %u bytes", key,
                TC_MAX_AFFIX);
        return "";
    }
    return v->valuestring;
}

/* The rule of the literal text s (a JSON string's compact text when quoted). */
static uint32_t text_rule(js_t *js, const char *s, int quoted)
{
    return quoted ? js_key_literal(js, s) : gb_literal(js->b, s, strlen(s));
}

/* One call of tool t: the object with its name and arguments, between prefix and suffix. */
static uint32_t one_call(js_t *js, const cJSON *spec, const cJSON *t, size_t i)
{
    gbuild_t *b = js->b;
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(t, "name");
    const cJSON *params = cJSON_GetObjectItemCaseSensitive(t, "parameters");
    if (!cJSON_IsObject(t) || !cJSON_IsString(name) || name->valuestring[0] == '\0') {
        gb_fail(b, ERR_INVALID, "tool_calls: tools[%zu] needs a non-empty string name", i);
        return GB_NONE;
    }
    uint32_t args;
    if (params == NULL) {
        args = js_any_object(js);
    } else {
        js->root = params;   /* its $refs are relative to itself */
        args = js_schema(js, params);
    }
    uint32_t ws = js->ws, colon = js_byte(js, ':');
    gelem_t e[] = {
        ge_ref(text_rule(js, spec_str(spec, "prefix", b), 0)), ge_bytes(js_byte(js, '{')),
        ge_ref(ws), ge_ref(text_rule(js, spec_str(spec, "name_key", b), 1)), ge_ref(ws),
        ge_bytes(colon), ge_ref(ws), ge_ref(js_literal_value(js, name)), ge_ref(js_comma(js)),
        ge_ref(text_rule(js, spec_str(spec, "args_key", b), 1)), ge_ref(ws), ge_bytes(colon),
        ge_ref(ws), ge_ref(args), ge_ref(ws), ge_bytes(js_byte(js, '}')),
        ge_ref(text_rule(js, spec_str(spec, "suffix", b), 0)),
    };
    return gb_seq(b, e, sizeof e / sizeof e[0]);
}

static uint32_t build(js_t *js, const cJSON *spec, int *failed_tool)
{
    gbuild_t *b = js->b;
    const cJSON *tools = cJSON_GetObjectItemCaseSensitive(spec, "tools");
    const cJSON *maxc = cJSON_GetObjectItemCaseSensitive(spec, "max_calls");
    if (!cJSON_IsArray(tools) || tools->child == NULL) {
        gb_fail(b, ERR_INVALID, "tool_calls: tools must be a non-empty array");
        return GB_NONE;
    }
    if (cJSON_GetArraySize(tools) > GRAMMAR_MAX_TOOLS) {
        gb_fail(b, ERR_FULL, "tool_calls: more than %d tools", GRAMMAR_MAX_TOOLS);
        return GB_NONE;
    }
    uint32_t max = GB_INF;
    if (maxc != NULL) {
        if (!cJSON_IsNumber(maxc) || maxc->valuedouble < 0 || maxc->valuedouble > 1000 ||
            maxc->valuedouble != (double)(int)maxc->valuedouble) {
            gb_fail(b, ERR_INVALID, "tool_calls: max_calls must be an integer in [0, 1000]");
            return GB_NONE;
        }
        if (maxc->valueint > 0)
            max = (uint32_t)maxc->valueint;
    }
    uint32_t call = gb_rule(b, "call");
    size_t i = 0;
    for (const cJSON *t = tools->child; t != NULL; t = t->next, i++) {
        gelem_t e = ge_ref(one_call(js, spec, t, i));
        if (gb_failed(b)) {
            *failed_tool = (int)i;
            return GB_NONE;
        }
        gb_alt(b, call, &e, 1);
    }
    gelem_t more[2] = { ge_ref(text_rule(js, spec_str(spec, "separator", b), 0)), ge_ref(call) };
    uint32_t rest = gb_repeat(b, ge_ref(gb_seq(b, more, 2)), 0, max == GB_INF ? GB_INF : max - 1);
    gelem_t all[2] = { ge_ref(call), ge_ref(rest) };
    return gb_seq(b, all, 2);
}

int grammar_from_tool_calls(const char *json, size_t len, const grammar_limits_t *lim,
                            grammar_t **out, char *err, size_t errlen)
{
    *out = NULL;
    if (json == NULL || len > TC_MAX_SPEC)
        return err_set(err, errlen, ERR_FULL, "tool_calls: the spec is over %u bytes", TC_MAX_SPEC);
    cJSON *spec = cJSON_ParseWithLength(json, len);
    if (!cJSON_IsObject(spec)) {
        cJSON_Delete(spec);
        return err_set(err, errlen, ERR_INVALID, "tool_calls: the spec is not a JSON object");
    }
    js_t js = { .root = spec };
    int rc = gb_create(&js.b, lim);
    if (rc != 0) {
        cJSON_Delete(spec);
        return err_set(err, errlen, rc, "tool_calls: out of memory");
    }
    js_init_lexical(&js);
    int failed_tool = -1;
    uint32_t root = build(&js, spec, &failed_tool);
    char why[ERR_MSG_MAX];
    rc = gb_finish(js.b, root, out, why, sizeof why);
    if (rc != 0 && failed_tool >= 0) {
        const cJSON *t = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(spec, "tools"),
                                            failed_tool);
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(t, "name");
        err_set(err, errlen, rc, "tools[%d] (\"%.64s\"): %s", failed_tool,
                cJSON_IsString(name) ? name->valuestring : "", why);
    } else if (rc != 0) {
        err_set(err, errlen, rc, "%s", why);
    }
    js_close(&js);
    cJSON_Delete(spec);
    return rc;
}
