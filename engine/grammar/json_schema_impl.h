/*
 * json_schema_impl.h - what the parts of the JSON Schema compiler share
 * (json_schema.c: the entry point, keyword checks, $ref, enum, anyOf and
 * allOf; json_schema_value.c: the JSON lexical rules and the any-value
 * grammar; json_schema_object.c: objects and arrays; json_schema_number.c:
 * integer ranges and number bounds; json_schema_string.c: string lengths,
 * pattern and format).  Private to engine/grammar/.
 *
 * Every js_* function that returns a rule id returns GB_NONE only after
 * the builder holds the failure (gb_fail), so callers may pass its result
 * on without checking: later builder calls do nothing once it has failed.
 *
 * Threads: one js_t belongs to the one compile that made it.
 */
#ifndef LLAMAD_GRAMMAR_JSON_SCHEMA_IMPL_H
#define LLAMAD_GRAMMAR_JSON_SCHEMA_IMPL_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "grammar.h"

/* The caps (engine/grammar/README.md, "JSON Schema"). */
#define JS_MAX_TEXT   (256u * 1024u)  /* bytes of schema text */
#define JS_MAX_DEPTH  64              /* schemas nested in one another, $refs followed included */
#define JS_MAX_PROPS  1024            /* properties of one object schema */
#define JS_MAX_ENUM   1024            /* values of one enum */
#define JS_MAX_REFS   1024            /* distinct $ref targets of one schema */
#define JS_WS_MAX     20              /* whitespace bytes between two tokens */
#define JS_BOUND_MAX  1000000000000000.0  /* |integer bound| (10^15: exact in a double) */

typedef struct {
    const cJSON *target;
    uint32_t rule;
} js_ref_t;

typedef struct {
    gbuild_t *b;
    const cJSON *root;      /* the document, for $ref */
    int depth;              /* schemas being compiled, nested */
    uint32_t ws;            /* [ \t\n]{0,20}: the one whitespace rule */
    uint32_t value;         /* any JSON value; GB_NONE until first asked for (the same below) */
    uint32_t string;        /* any JSON string */
    uint32_t chr;           /* one character of a JSON string, an escape counted as one */
    uint32_t number;        /* any JSON number */
    uint32_t integer;       /* any JSON integer */
    js_ref_t *refs;         /* [n_refs] $ref targets compiled so far, and their rules */
    size_t n_refs, cap_refs;
    cJSON **scratch;        /* [n_scratch] schemas made here (allOf), freed with the js_t */
    size_t n_scratch, cap_scratch;
} js_t;

/* ---- json_schema.c */
/* The rule of the JSON values schema s accepts (s: an object or a boolean). */
uint32_t js_schema(js_t *js, const cJSON *s);
/* Whether key is an annotation (ignored) rather than a constraint. */
int js_is_annotation(const char *key);
/* A non-negative integer keyword of s: 0 with *v set, 1 when absent, or
 * GB fail ERR_INVALID (-1 returned) when it is not an integer in 0..2^32-2. */
int js_get_count(js_t *js, const cJSON *s, const char *key, uint32_t *v);
/* Free what a compile kept in js (not the builder, not the document). */
void js_close(js_t *js);
/* The compact JSON text of v (malloc'd), or NULL with ERR_NOMEM recorded. */
char *js_print(js_t *js, const cJSON *v);

/* ---- json_schema_value.c */
void js_init_lexical(js_t *js);
uint32_t js_any_value(js_t *js);
uint32_t js_any_object(js_t *js);
uint32_t js_any_string(js_t *js);
uint32_t js_any_number(js_t *js);
uint32_t js_any_integer(js_t *js);
uint32_t js_string_char(js_t *js);
/* The class of the one byte c. */
uint32_t js_byte(js_t *js, char c);
/* The class of the bytes in chars (NUL-terminated). */
uint32_t js_bytes(js_t *js, const char *chars);
/* The rule ws "," ws, the separator of list items and members. */
uint32_t js_comma(js_t *js);
/*
 * open ws (item (ws "," ws item){min-1..max-1} ws)? close, the list of
 * min..max items (max GB_INF: unbounded); the empty list only when min is 0.
 */
uint32_t js_list(js_t *js, char open, uint32_t item, uint32_t min, uint32_t max, char close);
/* A rule matching the compact JSON text of v. */
uint32_t js_literal_value(js_t *js, const cJSON *v);

/* ---- json_schema_object.c */
/* A rule matching the JSON string name (an object key). */
uint32_t js_key_literal(js_t *js, const char *name);
uint32_t js_object(js_t *js, const cJSON *s);
uint32_t js_array(js_t *js, const cJSON *s);

/* ---- json_schema_number.c */
uint32_t js_integer(js_t *js, const cJSON *s);
uint32_t js_number(js_t *js, const cJSON *s);

/* ---- json_schema_string.c */
uint32_t js_string(js_t *js, const cJSON *s);

#endif
