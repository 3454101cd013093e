/*
 * json.c - the checks every route makes on a hostile JSON body before it
 * reads a field (shared/THREATS.md part B): what cJSON accepts but we must
 * not (invalid UTF-8, a NUL byte, a \u0000 escape that would cut a C
 * string, nesting deep enough to exhaust the stack), and names given twice
 * in one object (cJSON keeps both and answers the first; clients disagree
 * on which one wins).  Loop thread; no state outside the call.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "api.h"

/* A 400 invalid_request_error naming `param`. */
#define BAD(e, code, param, ...) api_error_set((e), (code), 400, NULL, (param), NULL, __VA_ARGS__)

/* ---------------------------------------------------------------- the raw bytes */

/* Reject what cJSON would accept but we must not: NUL (raw or escaped), control bytes
   outside strings, and deep nesting. */
int json_scan_raw(const char *body, size_t len, unsigned max_depth, api_error_t *e)
{
    if (!utf8_valid(body, len))
        return BAD(e, ERR_FORMAT, NULL, "request body is not valid UTF-8");
    unsigned depth = 0;
    int in_string = 0;
    for (size_t i = 0; i < len; i++) {
        char c = body[i];
        if (c == '\0')
            return BAD(e, ERR_FORMAT, NULL, "request body contains a NUL byte at offset %zu", i);
        if (in_string) {
            if (c == '"') {
                in_string = 0;
            } else if (c == '\\' && i + 1 < len) {
                i++;
                if (body[i] == 'u' && len - i > 4 && memcmp(body + i + 1, "0000", 4) == 0)
                    return BAD(e, ERR_INVALID, NULL,
                               "a string contains \\u0000 (offset %zu); NUL characters are "
                               "not accepted", i - 1);
            }
            continue;
        }
        if ((unsigned char)c < 0x20 && c != ' ' && c != '\t' && c != '\n' && c != '\r') {
            /* RFC 8259 has four whitespace characters; cJSON skips any byte
               up to 0x20, which would let a body mean different things to
               cJSON and to a strict reader (json_exact.c) */
            return BAD(e, ERR_FORMAT, NULL, "request body has control byte 0x%02x outside a "
                       "string at offset %zu", (unsigned char)c, i);
        }
        if (c == '"') {
            in_string = 1;
        } else if (c == '[' || c == '{') {
            if (++depth > max_depth)
                return BAD(e, ERR_FORMAT, NULL, "JSON nested deeper than %u levels", max_depth);
        } else if ((c == ']' || c == '}') && depth > 0) {
            depth--;
        }
    }
    return 0;
}

/* ---------------------------------------------------------------- duplicate keys */

static int cmp_key(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Depth is bounded by json_scan_raw, so the recursion is too. */
int json_check_dups(const cJSON *node, api_error_t *e)
{
    if (!cJSON_IsObject(node) && !cJSON_IsArray(node))
        return 0;
    size_t n = 0;
    for (const cJSON *c = node->child; c != NULL; c = c->next) {
        int rc = json_check_dups(c, e);
        if (rc != 0)
            return rc;
        n++;
    }
    if (!cJSON_IsObject(node) || n < 2)
        return 0;
    const char **keys = malloc(n * sizeof *keys);
    if (keys == NULL)
        return api_error_set(e, ERR_NOMEM, 503, "server_error", NULL, NULL, "out of memory");
    size_t k = 0;
    for (const cJSON *c = node->child; c != NULL; c = c->next)
        keys[k++] = c->string != NULL ? c->string : "";
    qsort(keys, n, sizeof *keys, cmp_key);
    int rc = 0;
    for (size_t i = 1; i < n; i++) {
        if (strcmp(keys[i - 1], keys[i]) == 0) {
            char param[64];
            snprintf(param, sizeof param, "%s", keys[i]);
            rc = BAD(e, ERR_INVALID, param, "duplicate key \"%.100s\" in a JSON object", keys[i]);
            break;
        }
    }
    free(keys);
    return rc;
}

/* ---------------------------------------------------------------- small bodies */

cJSON *json_parse_small_object(const char *body, size_t len, int max_members, api_error_t *e)
{
    int rc = json_scan_raw(body, len, JSON_SMALL_DEPTH, e);
    if (rc != 0)
        return NULL;
    cJSON *root = cJSON_ParseWithLength(body, len);
    if (!cJSON_IsObject(root) || cJSON_GetArraySize(root) > max_members) {
        cJSON_Delete(root);
        api_error_set(e, ERR_INVALID, 400, NULL, NULL, NULL,
                      "the body is not a JSON object of at most %d distinct members", max_members);
        return NULL;
    }
    if (json_check_dups(root, e) != 0) {
        cJSON_Delete(root);
        return NULL;
    }
    return root;
}
