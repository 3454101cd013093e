/*
 * json_schema.c - JSON Schema to grammar: the entry point, the keyword
 * check, and the keywords that combine schemas ($ref, enum, const, anyOf,
 * oneOf, allOf, type).  The subset and the caps are documented in
 * engine/grammar/README.md ("JSON Schema"); a keyword outside it is
 * ERR_UNSUPPORTED naming it, never a looser grammar.
 *
 * Each schema compiles to one rule.  A $ref target compiles once, to a
 * rule that every $ref to it refers to, so recursive schemas become
 * recursive grammars; a chain of nested schemas is bounded by
 * JS_MAX_DEPTH and the distinct targets by JS_MAX_REFS.
 */
#include "json_schema_impl.h"

#include <stdlib.h>
#include <string.h>

#include "base/err.h"

static const char *const annotations[] = {
    "title", "description", "default", "examples", "$schema", "$id", "$comment",
    "deprecated", "readOnly", "writeOnly", "$defs", "definitions", NULL,
};

/* The constraints compiled (uniqueItems only as false, checked below). */
static const char *const supported[] = {
    "type", "properties", "required", "additionalProperties", "items", "prefixItems",
    "minItems", "maxItems", "enum", "const", "anyOf", "oneOf", "allOf", "$ref",
    "minLength", "maxLength", "pattern", "format", "minimum", "maximum",
    "exclusiveMinimum", "exclusiveMaximum", "uniqueItems", NULL,
};

static int in_list(const char *const *list, const char *key)
{
    for (size_t i = 0; list[i] != NULL; i++)
        if (strcmp(list[i], key) == 0)
            return 1;
    return 0;
}

int js_is_annotation(const char *key)
{
    return in_list(annotations, key);
}

int js_get_count(js_t *js, const cJSON *s, const char *key, uint32_t *v)
{
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(s, key);
    if (x == NULL)
        return 1;
    double d = x->valuedouble;
    if (!cJSON_IsNumber(x) || d < 0 || d > 4294967294.0 || d != (double)(uint32_t)d) {
        gb_fail(js->b, ERR_INVALID, "json_schema: '%s' must be an integer from 0 to 4294967294", key);
        return -1;
    }
    *v = (uint32_t)d;
    return 0;
}

/* ================================================================== */
/* Keyword checks                                                      */
/* ================================================================== */

/* Fail on the first key of s that is neither supported nor an annotation. */
static int check_keywords(js_t *js, const cJSON *s)
{
    char shown[80];
    for (const cJSON *k = s->child; k != NULL; k = k->next) {
        if (in_list(supported, k->string) || in_list(annotations, k->string))
            continue;
        gb_fail(js->b, ERR_UNSUPPORTED, "json_schema: keyword '%s' is not supported",
                err_show(shown, sizeof shown, k->string));
        return -1;
    }
    const cJSON *u = cJSON_GetObjectItemCaseSensitive(s, "uniqueItems");
    if (u != NULL && !cJSON_IsFalse(u)) {
        gb_fail(js->b, ERR_UNSUPPORTED, "json_schema: keyword 'uniqueItems' is not supported");
        return -1;
    }
    return 0;
}

/* Fail when s has a constraint besides those in allowed (and annotations). */
static int check_alone(js_t *js, const cJSON *s, const char *what, const char *const *allowed)
{
    for (const cJSON *k = s->child; k != NULL; k = k->next) {
        if (in_list(annotations, k->string) || in_list(allowed, k->string) ||
            strcmp(k->string, "uniqueItems") == 0)
            continue;
        char shown[80];
        gb_fail(js->b, ERR_UNSUPPORTED, "json_schema: keyword '%s' alongside '%s' is not supported",
                err_show(shown, sizeof shown, k->string), what);
        return -1;
    }
    return 0;
}

/* ================================================================== */
/* $ref                                                                */
/* ================================================================== */

/* The schema a local $ref ("#" or a JSON pointer "#/a/b", ~0 ~1 escaped) names, or NULL (failed). */
static const cJSON *resolve(js_t *js, const char *ref)
{
    char shown[80];
    err_show(shown, sizeof shown, ref);
    if (ref[0] != '#' || (ref[1] != '\0' && ref[1] != '/')) {
        gb_fail(js->b, ERR_UNSUPPORTED,
                "json_schema: $ref '%s' is not supported (only \"#\" and \"#/...\" pointers)", shown);
        return NULL;
    }
    size_t n = strlen(ref);
    char *tok = malloc(n + 1);
    if (tok == NULL) {
        gb_fail(js->b, ERR_NOMEM, "json_schema: out of memory");
        return NULL;
    }
    const cJSON *at = js->root;
    const char *p = ref + 1;
    while (at != NULL && *p == '/') {
        size_t len = 0;
        for (p++; *p != '\0' && *p != '/'; p++) {
            char c = *p;
            if (c == '~') {
                if (p[1] != '0' && p[1] != '1') {
                    at = NULL;
                    break;
                }
                c = p[1] == '0' ? '~' : '/';
                p++;
            }
            tok[len++] = c;
        }
        tok[len] = '\0';
        if (at == NULL)
            break;
        if (cJSON_IsObject(at)) {
            at = cJSON_GetObjectItemCaseSensitive(at, tok);
        } else if (cJSON_IsArray(at) && len > 0 && len < 10 && strspn(tok, "0123456789") == len) {
            at = cJSON_GetArrayItem(at, atoi(tok));
        } else {
            at = NULL;
        }
    }
    free(tok);
    if (at == NULL)
        gb_fail(js->b, ERR_INVALID, "json_schema: $ref '%s' does not resolve", shown);
    return at;
}

static uint32_t ref_schema(js_t *js, const cJSON *s)
{
    const cJSON *r = cJSON_GetObjectItemCaseSensitive(s, "$ref");
    static const char *const alone[] = { "$ref", NULL };
    if (!cJSON_IsString(r)) {
        gb_fail(js->b, ERR_INVALID, "json_schema: '$ref' must be a string");
        return GB_NONE;
    }
    if (check_alone(js, s, "$ref", alone) != 0)
        return GB_NONE;
    const cJSON *t = resolve(js, r->valuestring);
    if (t == NULL)
        return GB_NONE;
    /* A chain of $refs must reach a schema that is not one: a: {$ref: a} never does. */
    const cJSON *seen[JS_MAX_DEPTH];
    size_t n_seen = 0;
    for (const cJSON *u = t; cJSON_IsObject(u); ) {
        const cJSON *next = cJSON_GetObjectItemCaseSensitive(u, "$ref");
        if (!cJSON_IsString(next))
            break;
        for (size_t i = 0; i < n_seen; i++) {
            if (seen[i] == u) {
                char shown[80];
                gb_fail(js->b, ERR_INVALID, "json_schema: $ref '%s' is a cycle of $refs that never "
                        "reaches a schema", err_show(shown, sizeof shown, r->valuestring));
                return GB_NONE;
            }
        }
        if (n_seen == JS_MAX_DEPTH) {
            gb_fail(js->b, ERR_FULL, "json_schema: a chain of more than %d $refs", JS_MAX_DEPTH);
            return GB_NONE;
        }
        seen[n_seen++] = u;
        if ((u = resolve(js, next->valuestring)) == NULL)
            return GB_NONE;
    }

    for (size_t i = 0; i < js->n_refs; i++)
        if (js->refs[i].target == t)
            return js->refs[i].rule;
    if (js->n_refs == JS_MAX_REFS) {
        gb_fail(js->b, ERR_FULL, "json_schema: more than %d distinct $ref targets", JS_MAX_REFS);
        return GB_NONE;
    }
    if (js->n_refs == js->cap_refs) {
        size_t cap = js->cap_refs ? js->cap_refs * 2 : 16;
        js_ref_t *p = realloc(js->refs, cap * sizeof *p);
        if (p == NULL) {
            gb_fail(js->b, ERR_NOMEM, "json_schema: out of memory");
            return GB_NONE;
        }
        js->refs = p;
        js->cap_refs = cap;
    }
    char name[80];
    uint32_t rule = gb_rule(js->b, err_show(name, sizeof name, r->valuestring));
    js->refs[js->n_refs++] = (js_ref_t){ t, rule };
    gelem_t e = ge_ref(js_schema(js, t));
    gb_alt(js->b, rule, &e, 1);
    return rule;
}

/* ================================================================== */
/* enum, const, anyOf / oneOf                                          */
/* ================================================================== */

/* Whether the JSON value v is of the JSON Schema type t. */
static int has_type(const cJSON *v, const char *t)
{
    if (strcmp(t, "integer") == 0)
        return cJSON_IsNumber(v) && v->valuedouble == (double)(long long)v->valuedouble;
    return (strcmp(t, "string") == 0 && cJSON_IsString(v)) ||
           (strcmp(t, "number") == 0 && cJSON_IsNumber(v)) ||
           (strcmp(t, "boolean") == 0 && cJSON_IsBool(v)) ||
           (strcmp(t, "null") == 0 && cJSON_IsNull(v)) ||
           (strcmp(t, "object") == 0 && cJSON_IsObject(v)) ||
           (strcmp(t, "array") == 0 && cJSON_IsArray(v));
}

/* Whether v passes s's "type" (absent: any). */
static int type_allows(const cJSON *s, const cJSON *v)
{
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(s, "type");
    if (cJSON_IsString(t))
        return has_type(v, t->valuestring);
    if (!cJSON_IsArray(t))
        return 1;
    for (const cJSON *x = t->child; x != NULL; x = x->next)
        if (cJSON_IsString(x) && has_type(v, x->valuestring))
            return 1;
    return 0;
}

static uint32_t enum_schema(js_t *js, const cJSON *s)
{
    static const char *const alone[] = { "enum", "const", "type", NULL };
    const cJSON *en = cJSON_GetObjectItemCaseSensitive(s, "enum");
    const cJSON *co = cJSON_GetObjectItemCaseSensitive(s, "const");
    if (check_alone(js, s, en != NULL ? "enum" : "const", alone) != 0)
        return GB_NONE;
    if (en != NULL && !cJSON_IsArray(en)) {
        gb_fail(js->b, ERR_INVALID, "json_schema: 'enum' must be an array");
        return GB_NONE;
    }
    if (en != NULL && cJSON_GetArraySize(en) > JS_MAX_ENUM) {
        gb_fail(js->b, ERR_FULL, "json_schema: 'enum' has more than %d values", JS_MAX_ENUM);
        return GB_NONE;
    }
    uint32_t r = gb_rule(js->b, NULL);
    size_t n = 0;
    for (const cJSON *v = en != NULL ? en->child : co; v != NULL; v = en != NULL ? v->next : NULL) {
        /* Both enum and const: only the values in both. */
        if (!type_allows(s, v) || (en != NULL && co != NULL && !cJSON_Compare(v, co, 1)))
            continue;
        gelem_t e = ge_ref(js_literal_value(js, v));
        gb_alt(js->b, r, &e, 1);
        n++;
    }
    if (n == 0) {
        gb_fail(js->b, ERR_INVALID, "json_schema: the %s allows no value", en != NULL ? "enum" : "const");
        return GB_NONE;
    }
    return r;
}

static uint32_t any_of(js_t *js, const cJSON *s, const char *key)
{
    static const char *const alone[] = { "anyOf", "oneOf", NULL };
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(s, key);
    if (check_alone(js, s, key, alone) != 0)
        return GB_NONE;
    if (!cJSON_IsArray(list) || list->child == NULL) {
        gb_fail(js->b, ERR_INVALID, "json_schema: '%s' must be a non-empty array of schemas", key);
        return GB_NONE;
    }
    if (cJSON_GetObjectItemCaseSensitive(s, "anyOf") != NULL &&
        cJSON_GetObjectItemCaseSensitive(s, "oneOf") != NULL) {
        gb_fail(js->b, ERR_UNSUPPORTED, "json_schema: keyword 'oneOf' alongside 'anyOf' is not supported");
        return GB_NONE;
    }
    uint32_t r = gb_rule(js->b, NULL);
    for (const cJSON *x = list->child; x != NULL; x = x->next) {
        if (cJSON_IsFalse(x))
            continue;   /* accepts nothing: no alternative */
        gelem_t e = ge_ref(js_schema(js, x));
        gb_alt(js->b, r, &e, 1);
    }
    return r;
}

/* ================================================================== */
/* allOf (of object schemas)                                           */
/* ================================================================== */

/* Keep m (a schema made here) until the js_t is closed; 0, or -1 with ERR_NOMEM recorded. */
static int keep_scratch(js_t *js, cJSON *m)
{
    if (js->n_scratch == js->cap_scratch) {
        size_t cap = js->cap_scratch ? js->cap_scratch * 2 : 8;
        cJSON **p = realloc(js->scratch, cap * sizeof *p);
        if (p == NULL) {
            cJSON_Delete(m);
            gb_fail(js->b, ERR_NOMEM, "json_schema: out of memory");
            return -1;
        }
        js->scratch = p;
        js->cap_scratch = cap;
    }
    js->scratch[js->n_scratch++] = m;
    return 0;
}

/* Fold one allOf member x (an object schema) into the merged m's properties, required, additionalProperties. */
static int merge_object(js_t *js, cJSON *m, const cJSON *x)
{
    static const char *const allowed[] = { "type", "properties", "required", "additionalProperties", NULL };
    for (int hops = 0; cJSON_IsObject(x) && cJSON_GetObjectItemCaseSensitive(x, "$ref") != NULL; hops++) {
        const cJSON *r = cJSON_GetObjectItemCaseSensitive(x, "$ref");
        if (hops == JS_MAX_DEPTH || !cJSON_IsString(r) || check_alone(js, x, "$ref", (const char *const[]){ "$ref", NULL }) != 0) {
            if (!gb_failed(js->b))
                gb_fail(js->b, ERR_INVALID, "json_schema: a $ref in 'allOf' does not reach a schema");
            return -1;
        }
        if ((x = resolve(js, r->valuestring)) == NULL)
            return -1;
    }
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(x, "type");
    if (!cJSON_IsObject(x) || (t != NULL && !(cJSON_IsString(t) && strcmp(t->valuestring, "object") == 0))) {
        gb_fail(js->b, ERR_UNSUPPORTED, "json_schema: keyword 'allOf' is supported only over object schemas");
        return -1;
    }
    if (check_alone(js, x, "allOf", allowed) != 0)
        return -1;
    const cJSON *props = cJSON_GetObjectItemCaseSensitive(x, "properties");
    const cJSON *req = cJSON_GetObjectItemCaseSensitive(x, "required");
    const cJSON *ap = cJSON_GetObjectItemCaseSensitive(x, "additionalProperties");
    if ((props != NULL && !cJSON_IsObject(props)) || (req != NULL && !cJSON_IsArray(req))) {
        gb_fail(js->b, ERR_INVALID, "json_schema: 'properties' must be an object and 'required' an array");
        return -1;
    }
    cJSON *mp = cJSON_GetObjectItemCaseSensitive(m, "properties");
    cJSON *mr = cJSON_GetObjectItemCaseSensitive(m, "required");
    for (const cJSON *p = props != NULL ? props->child : NULL; p != NULL; p = p->next) {
        if (cJSON_GetObjectItemCaseSensitive(mp, p->string) != NULL) {
            char shown[80];
            gb_fail(js->b, ERR_UNSUPPORTED, "json_schema: property '%s' declared twice in 'allOf'",
                    err_show(shown, sizeof shown, p->string));
            return -1;
        }
        if (!cJSON_AddItemReferenceToObject(mp, p->string, (cJSON *)p))
            goto nomem;
    }
    for (const cJSON *q = req != NULL ? req->child : NULL; q != NULL; q = q->next)
        if (!cJSON_AddItemReferenceToArray(mr, (cJSON *)q))
            goto nomem;
    if (ap != NULL && !cJSON_IsBool(ap)) {
        gb_fail(js->b, ERR_UNSUPPORTED, "json_schema: 'additionalProperties' as a schema inside 'allOf' is not supported");
        return -1;
    }
    if (cJSON_IsFalse(ap)) {
        cJSON_DeleteItemFromObjectCaseSensitive(m, "additionalProperties");
        if (cJSON_AddFalseToObject(m, "additionalProperties") == NULL)
            goto nomem;
    }
    return 0;
nomem:
    gb_fail(js->b, ERR_NOMEM, "json_schema: out of memory");
    return -1;
}

static uint32_t all_of(js_t *js, const cJSON *s)
{
    static const char *const alone[] = { "allOf", "type", NULL };
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(s, "allOf");
    if (check_alone(js, s, "allOf", alone) != 0)
        return GB_NONE;
    if (!cJSON_IsArray(list) || list->child == NULL) {
        gb_fail(js->b, ERR_INVALID, "json_schema: 'allOf' must be a non-empty array of schemas");
        return GB_NONE;
    }
    cJSON *m = cJSON_CreateObject();
    if (m == NULL || keep_scratch(js, m) != 0 || cJSON_AddStringToObject(m, "type", "object") == NULL ||
        cJSON_AddObjectToObject(m, "properties") == NULL || cJSON_AddArrayToObject(m, "required") == NULL) {
        if (!gb_failed(js->b))
            gb_fail(js->b, ERR_NOMEM, "json_schema: out of memory");
        return GB_NONE;
    }
    for (const cJSON *x = list->child; x != NULL; x = x->next)
        if (merge_object(js, m, x) != 0)
            return GB_NONE;
    return js_object(js, m);
}

/* ================================================================== */
/* type                                                                */
/* ================================================================== */

static uint32_t typed(js_t *js, const cJSON *s, const char *t)
{
    if (strcmp(t, "string") == 0)
        return js_string(js, s);
    if (strcmp(t, "integer") == 0)
        return js_integer(js, s);
    if (strcmp(t, "number") == 0)
        return js_number(js, s);
    if (strcmp(t, "object") == 0)
        return js_object(js, s);
    if (strcmp(t, "array") == 0)
        return js_array(js, s);
    if (strcmp(t, "null") == 0)
        return gb_literal(js->b, "null", 4);
    if (strcmp(t, "boolean") == 0) {
        uint32_t r = gb_rule(js->b, NULL);
        gelem_t e[2] = { ge_ref(gb_literal(js->b, "true", 4)), ge_ref(gb_literal(js->b, "false", 5)) };
        gb_alt(js->b, r, &e[0], 1);
        gb_alt(js->b, r, &e[1], 1);
        return r;
    }
    char shown[80];
    gb_fail(js->b, ERR_INVALID, "json_schema: unknown type '%s'", err_show(shown, sizeof shown, t));
    return GB_NONE;
}

/* Without "type", the types whose keywords s uses, into out[0..4], NULL-terminated (none: any value). */
static void inferred_types(const cJSON *s, const char *out[5])
{
    static const struct { const char *key; const char *type; } by_key[] = {
        { "properties", "object" }, { "required", "object" }, { "additionalProperties", "object" },
        { "items", "array" }, { "prefixItems", "array" }, { "minItems", "array" }, { "maxItems", "array" },
        { "minLength", "string" }, { "maxLength", "string" }, { "pattern", "string" }, { "format", "string" },
        { "minimum", "number" }, { "maximum", "number" }, { "exclusiveMinimum", "number" },
        { "exclusiveMaximum", "number" },
    };
    static const char *const order[] = { "object", "array", "string", "number" };
    size_t n = 0;
    for (size_t o = 0; o < 4; o++) {
        for (size_t i = 0; i < sizeof by_key / sizeof by_key[0]; i++) {
            if (strcmp(by_key[i].type, order[o]) == 0 && cJSON_GetObjectItemCaseSensitive(s, by_key[i].key)) {
                out[n++] = order[o];
                break;
            }
        }
    }
    out[n] = NULL;
}

uint32_t js_schema(js_t *js, const cJSON *s)
{
    if (gb_failed(js->b))
        return GB_NONE;
    if (cJSON_IsTrue(s))
        return js_any_value(js);
    if (cJSON_IsFalse(s)) {
        gb_fail(js->b, ERR_INVALID, "json_schema: the schema false accepts nothing");
        return GB_NONE;
    }
    if (!cJSON_IsObject(s)) {
        gb_fail(js->b, ERR_INVALID, "json_schema: a schema must be an object or a boolean");
        return GB_NONE;
    }
    if (js->depth == JS_MAX_DEPTH) {
        gb_fail(js->b, ERR_FULL, "json_schema: schemas nested deeper than %d", JS_MAX_DEPTH);
        return GB_NONE;
    }
    if (check_keywords(js, s) != 0)
        return GB_NONE;
    js->depth++;
    uint32_t r;
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(s, "type");
    if (cJSON_GetObjectItemCaseSensitive(s, "$ref") != NULL) {
        r = ref_schema(js, s);
    } else if (cJSON_GetObjectItemCaseSensitive(s, "enum") != NULL ||
               cJSON_GetObjectItemCaseSensitive(s, "const") != NULL) {
        r = enum_schema(js, s);
    } else if (cJSON_GetObjectItemCaseSensitive(s, "anyOf") != NULL) {
        r = any_of(js, s, "anyOf");
    } else if (cJSON_GetObjectItemCaseSensitive(s, "oneOf") != NULL) {
        r = any_of(js, s, "oneOf");
    } else if (cJSON_GetObjectItemCaseSensitive(s, "allOf") != NULL) {
        r = all_of(js, s);
    } else if (cJSON_IsString(t)) {
        r = typed(js, s, t->valuestring);
    } else if (t != NULL) {
        r = gb_rule(js->b, NULL);
        if (!cJSON_IsArray(t) || t->child == NULL)
            gb_fail(js->b, ERR_INVALID, "json_schema: 'type' must be a string or a non-empty array of strings");
        for (const cJSON *x = t->child; x != NULL; x = x->next) {
            gelem_t e = ge_ref(cJSON_IsString(x) ? typed(js, s, x->valuestring) : GB_NONE);
            if (!cJSON_IsString(x))
                gb_fail(js->b, ERR_INVALID, "json_schema: 'type' must be a string or a non-empty array of strings");
            gb_alt(js->b, r, &e, 1);
        }
    } else {
        const char *ts[5];
        inferred_types(s, ts);
        if (ts[0] == NULL) {
            r = js_any_value(js);
        } else {
            r = gb_rule(js->b, NULL);
            for (size_t i = 0; ts[i] != NULL; i++) {
                gelem_t e = ge_ref(typed(js, s, ts[i]));
                gb_alt(js->b, r, &e, 1);
            }
        }
    }
    js->depth--;
    return r;
}

/* ================================================================== */
/* Entry point                                                         */
/* ================================================================== */

void js_close(js_t *js)
{
    for (size_t i = 0; i < js->n_scratch; i++)
        cJSON_Delete(js->scratch[i]);
    free(js->scratch);
    free(js->refs);
}

int grammar_from_json_schema(const char *json, size_t len, const grammar_limits_t *lim,
                             grammar_t **out, char *err, size_t errlen)
{
    *out = NULL;
    if (json != NULL && len > JS_MAX_TEXT)
        return err_set(err, errlen, ERR_FULL, "json_schema: the schema is %zu bytes, over the cap of "
                       "%u (256 KiB)", len, JS_MAX_TEXT);
    cJSON *doc = NULL;
    if (json != NULL) {
        const char *end = NULL;
        doc = cJSON_ParseWithLengthOpts(json, len, &end, 0);
        while (doc != NULL && end < json + len && strchr(" \t\r\n", *end) != NULL && *end != '\0')
            end++;
        if (doc != NULL && end != json + len) {
            cJSON_Delete(doc);
            return err_set(err, errlen, ERR_INVALID, "json_schema: text after the schema (at byte %zu)",
                           (size_t)(end - json));
        }
        if (doc == NULL)
            return err_set(err, errlen, ERR_INVALID, "json_schema: the schema is not valid JSON "
                           "(near byte %zu)", end != NULL && end >= json ? (size_t)(end - json) : (size_t)0);
    }
    js_t js = { .root = doc };
    int rc = gb_create(&js.b, lim);
    if (rc != 0) {
        cJSON_Delete(doc);
        return err_set(err, errlen, rc, "json_schema: out of memory");
    }
    js_init_lexical(&js);
    uint32_t root = doc != NULL ? js_schema(&js, doc) : js_any_object(&js);
    rc = gb_finish(js.b, root, out, err, errlen);
    js_close(&js);
    cJSON_Delete(doc);
    return rc;
}
