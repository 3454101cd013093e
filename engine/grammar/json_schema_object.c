/*
 * json_schema_object.c - object and array schemas.
 *
 * Objects: the declared properties appear in the order "properties"
 * declares them (a fixed order: llamad's choice, as in OpenAI's strict
 * mode), the required ones always, the others optionally.  Other keys:
 *   - additionalProperties false, or absent / true while "properties"
 *     declares some: none (llamad's choice, as OpenAI strict mode does);
 *   - absent / true with no "properties": any keys, any values;
 *   - a schema: after the declared properties, any further members whose
 *     values match it (their keys are any string: a key equal to a
 *     declared name is not excluded, an approximation).
 *
 * Arrays: prefixItems for the first items, then "items" (absent: any
 * value; false: no more), minItems..maxItems in all.
 */
#include "json_schema_impl.h"

#include <stdlib.h>
#include <string.h>

#include "base/err.h"

/* key ws ":" ws value, key given as its JSON text (a rule). */
static uint32_t member(js_t *js, uint32_t key, uint32_t value)
{
    gelem_t e[5] = { ge_ref(key), ge_ref(js->ws), ge_bytes(js_byte(js, ':')), ge_ref(js->ws),
                     ge_ref(value) };
    return gb_seq(js->b, e, 5);
}

uint32_t js_key_literal(js_t *js, const char *name)
{
    cJSON *k = cJSON_CreateString(name);
    if (k == NULL) {
        gb_fail(js->b, ERR_NOMEM, "json_schema: out of memory");
        return GB_NONE;
    }
    uint32_t r = js_literal_value(js, k);
    cJSON_Delete(k);
    return r;
}

static int is_required(const cJSON *req, const char *name)
{
    for (const cJSON *q = req != NULL ? req->child : NULL; q != NULL; q = q->next)
        if (cJSON_IsString(q) && strcmp(q->valuestring, name) == 0)
            return 1;
    return 0;
}

/* Check "properties" and "required"; 0, or -1 with the failure recorded. */
static int check_props(js_t *js, const cJSON *props, const cJSON *req, int *n_props)
{
    if (props != NULL && !cJSON_IsObject(props)) {
        gb_fail(js->b, ERR_INVALID, "json_schema: 'properties' must be an object");
        return -1;
    }
    *n_props = props != NULL ? cJSON_GetArraySize(props) : 0;
    if (*n_props > JS_MAX_PROPS) {
        gb_fail(js->b, ERR_FULL, "json_schema: an object schema with more than %d properties",
                JS_MAX_PROPS);
        return -1;
    }
    if (req != NULL && !cJSON_IsArray(req)) {
        gb_fail(js->b, ERR_INVALID, "json_schema: 'required' must be an array of strings");
        return -1;
    }
    for (const cJSON *q = req != NULL ? req->child : NULL; q != NULL; q = q->next) {
        char shown[80];
        if (!cJSON_IsString(q)) {
            gb_fail(js->b, ERR_INVALID, "json_schema: 'required' must be an array of strings");
            return -1;
        }
        if (cJSON_GetObjectItemCaseSensitive(props, q->valuestring) == NULL) {
            gb_fail(js->b, ERR_UNSUPPORTED, "json_schema: required property '%s' is not declared "
                    "in 'properties' (not supported)", err_show(shown, sizeof shown, q->valuestring));
            return -1;
        }
    }
    return 0;
}

uint32_t js_object(js_t *js, const cJSON *s)
{
    gbuild_t *b = js->b;
    const cJSON *props = cJSON_GetObjectItemCaseSensitive(s, "properties");
    const cJSON *req = cJSON_GetObjectItemCaseSensitive(s, "required");
    const cJSON *ap = cJSON_GetObjectItemCaseSensitive(s, "additionalProperties");
    int n;
    if (check_props(js, props, req, &n) != 0)
        return GB_NONE;

    /* The extra members, if any. */
    uint32_t extra = GB_NONE;
    if (ap != NULL && !cJSON_IsBool(ap)) {
        if (!cJSON_IsObject(ap)) {
            gb_fail(b, ERR_INVALID, "json_schema: 'additionalProperties' must be a boolean or a schema");
            return GB_NONE;
        }
        extra = member(js, js_any_string(js), js_schema(js, ap));
    } else if (n == 0 && !cJSON_IsFalse(ap)) {
        extra = member(js, js_any_string(js), js_any_value(js));
    }

    /*
     * Built from the end: rest[i] follows properties i.. once a member has
     * been written (each starts with a comma); first[i] the same before
     * any.  Both end with ws when a member was written, so that no two ws
     * meet: "{" ws first[0] "}".
     */
    uint32_t rest = js->ws, first = gb_rule(b, NULL);
    if (extra != GB_NONE) {
        gelem_t sep[2] = { ge_ref(js_comma(js)), ge_ref(extra) };
        gelem_t tail[2] = { ge_ref(gb_repeat(b, ge_ref(gb_seq(b, sep, 2)), 0, GB_INF)), ge_ref(js->ws) };
        rest = gb_seq(b, tail, 2);
        gelem_t some[2] = { ge_ref(extra), ge_ref(rest) };
        gb_alt(b, first, some, 2);
    }
    gb_alt(b, first, NULL, 0);

    /* The properties in declared order: walk the list backwards. */
    const cJSON **order = n > 0 ? malloc((size_t)n * sizeof *order) : NULL;
    if (n > 0 && order == NULL) {
        gb_fail(b, ERR_NOMEM, "json_schema: out of memory");
        return GB_NONE;
    }
    int i = 0;
    for (const cJSON *p = props != NULL ? props->child : NULL; p != NULL && i < n; p = p->next)
        order[i++] = p;
    for (i = n - 1; i >= 0 && !gb_failed(b); i--) {
        const cJSON *p = order[i];
        uint32_t kv = member(js, js_key_literal(js, p->string), js_schema(js, p));
        uint32_t r = gb_rule(b, NULL), f = gb_rule(b, NULL);
        gelem_t after[3] = { ge_ref(js_comma(js)), ge_ref(kv), ge_ref(rest) };
        gelem_t head[2] = { ge_ref(kv), ge_ref(rest) };
        gb_alt(b, r, after, 3);
        gb_alt(b, f, head, 2);
        if (!is_required(req, p->string)) {
            gelem_t skip_r = ge_ref(rest), skip_f = ge_ref(first);
            gb_alt(b, r, &skip_r, 1);
            gb_alt(b, f, &skip_f, 1);
        }
        rest = r;
        first = f;
    }
    free(order);
    gelem_t e[4] = { ge_bytes(js_byte(js, '{')), ge_ref(js->ws), ge_ref(first),
                     ge_bytes(js_byte(js, '}')) };
    return gb_seq(b, e, 4);
}

/* ================================================================== */
/* Arrays                                                              */
/* ================================================================== */

uint32_t js_array(js_t *js, const cJSON *s)
{
    gbuild_t *b = js->b;
    const cJSON *items = cJSON_GetObjectItemCaseSensitive(s, "items");
    const cJSON *prefix = cJSON_GetObjectItemCaseSensitive(s, "prefixItems");
    uint32_t min = 0, max = GB_INF;
    if (js_get_count(js, s, "minItems", &min) < 0 || js_get_count(js, s, "maxItems", &max) < 0)
        return GB_NONE;
    if (min > max) {
        gb_fail(b, ERR_INVALID, "json_schema: minItems %u is greater than maxItems %u", min, max);
        return GB_NONE;
    }
    if (cJSON_IsArray(items)) {
        gb_fail(b, ERR_UNSUPPORTED, "json_schema: keyword 'items' as an array is not supported "
                "(use 'prefixItems')");
        return GB_NONE;
    }
    if (items != NULL && !cJSON_IsBool(items) && !cJSON_IsObject(items)) {
        gb_fail(b, ERR_INVALID, "json_schema: 'items' must be a schema");
        return GB_NONE;
    }
    if (prefix != NULL && (!cJSON_IsArray(prefix) || cJSON_GetArraySize(prefix) > JS_MAX_PROPS)) {
        gb_fail(b, cJSON_IsArray(prefix) ? ERR_FULL : ERR_INVALID,
                "json_schema: 'prefixItems' must be an array of at most %d schemas", JS_MAX_PROPS);
        return GB_NONE;
    }
    uint32_t k = prefix != NULL ? (uint32_t)cJSON_GetArraySize(prefix) : 0;
    uint32_t item = cJSON_IsFalse(items) ? GB_NONE : items == NULL ? js_any_value(js) : js_schema(js, items);
    if (k == 0) {
        if (item == GB_NONE && min > 0) {
            gb_fail(b, ERR_INVALID, "json_schema: minItems %u with 'items' false", min);
            return GB_NONE;
        }
        if (item == GB_NONE)
            max = 0;
        return js_list(js, '[', item, min, max, ']');
    }

    /*
     * With prefixItems: after[i] follows the first i items (1 <= i <= k),
     * ending with ws: the end when i >= min, the next prefix item, or
     * (i == k) the further items, each after a comma.
     */
    const cJSON **order = malloc(k * sizeof *order);
    if (order == NULL) {
        gb_fail(b, ERR_NOMEM, "json_schema: out of memory");
        return GB_NONE;
    }
    uint32_t i = 0;
    for (const cJSON *p = prefix->child; p != NULL && i < k; p = p->next)
        order[i++] = p;
    uint32_t after = gb_rule(b, NULL);
    if (item != GB_NONE && max > k) {
        gelem_t sep[2] = { ge_ref(js_comma(js)), ge_ref(item) };
        uint32_t lo = min > k ? min - k : 0, hi = max == GB_INF ? GB_INF : max - k;
        gelem_t tail[2] = { ge_ref(gb_repeat(b, ge_ref(gb_seq(b, sep, 2)), lo, hi)), ge_ref(js->ws) };
        gb_alt(b, after, tail, 2);
    } else if (k >= min) {
        gelem_t end = ge_ref(js->ws);
        gb_alt(b, after, &end, 1);
    } else {
        gb_fail(b, ERR_INVALID, "json_schema: minItems %u cannot be met by %u prefixItems and no "
                "further items", min, k);
    }
    for (i = k; i-- > 1 && !gb_failed(b); ) {
        /* after[i] from after[i + 1]: order[i] is item i + 1. */
        uint32_t r = gb_rule(b, NULL);
        if (i >= min) {
            gelem_t end = ge_ref(js->ws);
            gb_alt(b, r, &end, 1);
        }
        if (i + 1 <= max) {
            gelem_t next[3] = { ge_ref(js_comma(js)), ge_ref(js_schema(js, order[i])), ge_ref(after) };
            gb_alt(b, r, next, 3);
        }
        after = r;
    }
    uint32_t body = gb_rule(b, NULL);
    if (min == 0)
        gb_alt(b, body, NULL, 0);
    if (max >= 1) {
        gelem_t e[2] = { ge_ref(js_schema(js, order[0])), ge_ref(after) };
        gb_alt(b, body, e, 2);
    }
    free(order);
    gelem_t e[4] = { ge_bytes(js_byte(js, '[')), ge_ref(js->ws), ge_ref(body),
                     ge_bytes(js_byte(js, ']')) };
    return gb_seq(b, e, 4);
}
