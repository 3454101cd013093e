/*
 * json_schema_value.c - the lexical rules of JSON text (RFC 8259) that
 * every schema grammar is made of, and the grammar of any JSON value.
 *
 * Whitespace: between two tokens, ws := [ \t\n]{0,20}, one shared rule.
 * Twenty bytes let a model pretty-print to a moderate depth; the bound
 * keeps it from looping on spaces.  The text itself starts and ends
 * with its value (no whitespace before or after).  No rule puts two ws
 * side by side, so that whitespace is never ambiguous.
 *
 * Strings: any code point but '"', '\\' and the controls below U+0020,
 * or an escape \" \\ \/ \b \f \n \r \t \uXXXX; each counts as one
 * character for minLength/maxLength (so a surrogate pair written as two
 * \u escapes counts two).
 *
 * Numbers: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
 */
#include "json_schema_impl.h"

#include <stdlib.h>
#include <string.h>

#include "base/err.h"

uint32_t js_byte(js_t *js, char c)
{
    return gb_range(js->b, (uint8_t)c, (uint8_t)c);
}

uint32_t js_bytes(js_t *js, const char *chars)
{
    uint8_t set[32] = { 0 };
    for (const unsigned char *p = (const unsigned char *)chars; *p; p++)
        set[*p / 8] |= (uint8_t)(1u << (*p % 8));
    return gb_class(js->b, set);
}

void js_init_lexical(js_t *js)
{
    js->value = js->string = js->chr = js->number = js->integer = GB_NONE;
    js->ws = gb_repeat(js->b, ge_bytes(js_bytes(js, " \t\n")), 0, JS_WS_MAX);
}

uint32_t js_comma(js_t *js)
{
    gelem_t e[3] = { ge_ref(js->ws), ge_bytes(js_byte(js, ',')), ge_ref(js->ws) };
    return gb_seq(js->b, e, 3);
}

/* ================================================================== */
/* Strings                                                             */
/* ================================================================== */

uint32_t js_string_char(js_t *js)
{
    if (js->chr != GB_NONE)
        return js->chr;
    static const uint32_t plain[3][2] = { { 0, 0x1f }, { '"', '"' }, { '\\', '\\' } };
    uint32_t hex = js_bytes(js, "0123456789abcdefABCDEF");
    gelem_t u[5] = { ge_bytes(js_byte(js, 'u')), ge_bytes(hex), ge_bytes(hex), ge_bytes(hex),
                     ge_bytes(hex) };
    uint32_t esc = gb_rule(js->b, "escape");
    gelem_t one = ge_bytes(js_bytes(js, "\"\\/bfnrt"));
    gb_alt(js->b, esc, &one, 1);
    gb_alt(js->b, esc, u, 5);

    uint32_t chr = gb_rule(js->b, "char");
    gelem_t any = ge_ref(gb_codepoints(js->b, plain, 3, 1));
    gelem_t escaped[2] = { ge_bytes(js_byte(js, '\\')), ge_ref(esc) };
    gb_alt(js->b, chr, &any, 1);
    gb_alt(js->b, chr, escaped, 2);
    js->chr = chr;
    return chr;
}

uint32_t js_any_string(js_t *js)
{
    if (js->string != GB_NONE)
        return js->string;
    uint32_t q = js_byte(js, '"');
    gelem_t e[3] = { ge_bytes(q), ge_ref(gb_repeat(js->b, ge_ref(js_string_char(js)), 0, GB_INF)),
                     ge_bytes(q) };
    js->string = gb_seq(js->b, e, 3);
    return js->string;
}

/* ================================================================== */
/* Numbers                                                             */
/* ================================================================== */

/* 0 | [1-9][0-9]* */
static uint32_t natural(js_t *js)
{
    uint32_t r = gb_rule(js->b, "natural");
    gelem_t zero = ge_bytes(js_byte(js, '0'));
    gelem_t more[2] = { ge_bytes(gb_range(js->b, '1', '9')),
                        ge_ref(gb_repeat(js->b, ge_bytes(gb_range(js->b, '0', '9')), 0, GB_INF)) };
    gb_alt(js->b, r, &zero, 1);
    gb_alt(js->b, r, more, 2);
    return r;
}

uint32_t js_any_integer(js_t *js)
{
    if (js->integer != GB_NONE)
        return js->integer;
    gelem_t e[2] = { ge_ref(gb_repeat(js->b, ge_bytes(js_byte(js, '-')), 0, 1)),
                     ge_ref(natural(js)) };
    js->integer = gb_seq(js->b, e, 2);
    return js->integer;
}

uint32_t js_any_number(js_t *js)
{
    if (js->number != GB_NONE)
        return js->number;
    gbuild_t *b = js->b;
    gelem_t digits = ge_ref(gb_repeat(b, ge_bytes(gb_range(b, '0', '9')), 1, GB_INF));
    gelem_t frac[2] = { ge_bytes(js_byte(js, '.')), digits };
    gelem_t exp[3] = { ge_bytes(js_bytes(js, "eE")),
                       ge_ref(gb_repeat(b, ge_bytes(js_bytes(js, "+-")), 0, 1)), digits };
    gelem_t e[3] = { ge_ref(js_any_integer(js)),
                     ge_ref(gb_repeat(b, ge_ref(gb_seq(b, frac, 2)), 0, 1)),
                     ge_ref(gb_repeat(b, ge_ref(gb_seq(b, exp, 3)), 0, 1)) };
    js->number = gb_seq(b, e, 3);
    return js->number;
}

/* ================================================================== */
/* Lists and any value                                                 */
/* ================================================================== */

uint32_t js_list(js_t *js, char open, uint32_t item, uint32_t min, uint32_t max, char close)
{
    gbuild_t *b = js->b;
    uint32_t body = gb_rule(b, NULL);
    if (min == 0)
        gb_alt(b, body, NULL, 0);
    if (max >= 1) {
        gelem_t sep_item[2] = { ge_ref(js_comma(js)), ge_ref(item) };
        uint32_t lo = min > 0 ? min - 1 : 0;
        uint32_t hi = max == GB_INF ? GB_INF : max - 1;
        gelem_t e[3] = { ge_ref(item), ge_ref(gb_repeat(b, ge_ref(gb_seq(b, sep_item, 2)), lo, hi)),
                         ge_ref(js->ws) };
        gb_alt(b, body, e, 3);
    }
    gelem_t e[4] = { ge_bytes(js_byte(js, open)), ge_ref(js->ws), ge_ref(body),
                     ge_bytes(js_byte(js, close)) };
    return gb_seq(b, e, 4);
}

/* string ws ":" ws value: one member of an object with any keys. */
static uint32_t any_member(js_t *js, uint32_t value)
{
    gelem_t e[5] = { ge_ref(js_any_string(js)), ge_ref(js->ws), ge_bytes(js_byte(js, ':')),
                     ge_ref(js->ws), ge_ref(value) };
    return gb_seq(js->b, e, 5);
}

uint32_t js_any_value(js_t *js)
{
    if (js->value != GB_NONE)
        return js->value;
    gbuild_t *b = js->b;
    uint32_t v = gb_rule(b, "value");
    js->value = v;      /* before the parts, which refer to it */
    uint32_t parts[7] = {
        js_list(js, '{', any_member(js, v), 0, GB_INF, '}'),
        js_list(js, '[', v, 0, GB_INF, ']'),
        js_any_string(js),
        js_any_number(js),
        gb_literal(b, "true", 4),
        gb_literal(b, "false", 5),
        gb_literal(b, "null", 4),
    };
    for (size_t i = 0; i < 7; i++) {
        gelem_t e = ge_ref(parts[i]);
        gb_alt(b, v, &e, 1);
    }
    return v;
}

uint32_t js_any_object(js_t *js)
{
    return js_list(js, '{', any_member(js, js_any_value(js)), 0, GB_INF, '}');
}

/* ================================================================== */
/* Literal values (enum, const, property names)                        */
/* ================================================================== */

char *js_print(js_t *js, const cJSON *v)
{
    char *s = cJSON_PrintUnformatted(v);
    if (s == NULL)
        gb_fail(js->b, ERR_NOMEM, "json_schema: out of memory");
    return s;
}

uint32_t js_literal_value(js_t *js, const cJSON *v)
{
    char *s = js_print(js, v);
    if (s == NULL)
        return GB_NONE;
    uint32_t r = gb_literal(js->b, s, strlen(s));
    free(s);
    return r;
}
