/*
 * json_schema_string.c - string schemas: minLength / maxLength (in
 * characters, an escape counting one), pattern (through regex_build,
 * unanchored unless ^ / $, as JSON Schema says), and format, built
 * directly with builder calls:
 *   date       YYYY-MM-DD, the day within the month's length (29 for
 *              February whatever the year: the one date it lets through
 *              that does not exist is February 29 of a common year)
 *   time       HH:MM:SS, an optional .fraction, then Z or +HH:MM / -HH:MM
 *              (RFC 3339 full-time, upper-case Z; seconds 00-59)
 *   date-time  date "T" time
 *   uuid       8-4-4-4-12 hex digits
 *   email      a pragmatic subset: [A-Za-z0-9._%+-]{1,64} "@" labels of
 *              [A-Za-z0-9-]{1,63} joined by dots, two to nine of them
 *   ipv4       four dotted octets 0-255 without leading zeros
 * A pattern with minLength / maxLength is the product of the pattern's
 * DFA with a count of code points (regex_build_counted; a pattern's
 * strings carry no escapes, so code points are characters).  A format
 * with minLength / maxLength is ERR_UNSUPPORTED, as is any other format.
 */
#include "json_schema_impl.h"
#include "regex.h"

#include <string.h>

#include "base/err.h"

/* A rule with one alternative per pair of literal-or-class elements. */
static uint32_t alts(js_t *js, const gelem_t (*e)[2], size_t n)
{
    uint32_t r = gb_rule(js->b, NULL);
    for (size_t i = 0; i < n; i++)
        gb_alt(js->b, r, e[i], e[i][1].kind == 0 ? 1 : 2);
    return r;
}

static gelem_t cls(js_t *js, char lo, char hi)
{
    return ge_bytes(gb_range(js->b, (uint8_t)lo, (uint8_t)hi));
}

static gelem_t lit(js_t *js, const char *s)
{
    return ge_ref(gb_literal(js->b, s, strlen(s)));
}

static uint32_t date(js_t *js)
{
    gelem_t d = cls(js, '0', '9'), dash = ge_bytes(js_byte(js, '-'));
    const gelem_t none = { 0, 0 };
    const gelem_t d31[4][2] = { { cls(js, '0', '0'), cls(js, '1', '9') }, { cls(js, '1', '2'), d },
                                { lit(js, "30"), none }, { lit(js, "31"), none } };
    uint32_t day31 = alts(js, d31, 4), day30 = alts(js, d31, 3);
    const gelem_t d29[2][2] = { { cls(js, '0', '0'), cls(js, '1', '9') }, { cls(js, '1', '2'), d } };
    uint32_t day29 = alts(js, d29, 2);
    static const char *const months[12] = { "01", "02", "03", "04", "05", "06", "07", "08", "09",
                                            "10", "11", "12" };
    static const int len[12] = { 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
    uint32_t md = gb_rule(js->b, "month-day");
    for (int m = 0; m < 12; m++) {
        gelem_t e[3] = { lit(js, months[m]), dash,
                         ge_ref(len[m] == 31 ? day31 : len[m] == 30 ? day30 : day29) };
        gb_alt(js->b, md, e, 3);
    }
    gelem_t e[6] = { d, d, d, d, dash, ge_ref(md) };
    return gb_seq(js->b, e, 6);
}

static uint32_t time_of_day(js_t *js)
{
    gelem_t d = cls(js, '0', '9'), colon = ge_bytes(js_byte(js, ':'));
    const gelem_t hh[2][2] = { { cls(js, '0', '1'), d }, { cls(js, '2', '2'), cls(js, '0', '3') } };
    gelem_t hour = ge_ref(alts(js, hh, 2));
    gelem_t min[2] = { cls(js, '0', '5'), d };
    gelem_t minute = ge_ref(gb_seq(js->b, min, 2));
    gelem_t frac[2] = { ge_bytes(js_byte(js, '.')), ge_ref(gb_repeat(js->b, d, 1, GB_INF)) };
    uint32_t zone = gb_rule(js->b, "time-offset");
    gelem_t z = ge_bytes(js_byte(js, 'Z'));
    gelem_t off[4] = { ge_bytes(js_bytes(js, "+-")), hour, colon, minute };
    gb_alt(js->b, zone, &z, 1);
    gb_alt(js->b, zone, off, 4);
    gelem_t e[7] = { hour, colon, minute, colon, minute,
                     ge_ref(gb_repeat(js->b, ge_ref(gb_seq(js->b, frac, 2)), 0, 1)), ge_ref(zone) };
    return gb_seq(js->b, e, 7);
}

static uint32_t uuid(js_t *js)
{
    gelem_t h = ge_bytes(js_bytes(js, "0123456789abcdefABCDEF")), dash = ge_bytes(js_byte(js, '-'));
    static const uint32_t groups[5] = { 8, 4, 4, 4, 12 };
    gelem_t e[9];
    for (int i = 0; i < 5; i++) {
        e[2 * i] = ge_ref(gb_repeat(js->b, h, groups[i], groups[i]));
        if (i < 4)
            e[2 * i + 1] = dash;
    }
    return gb_seq(js->b, e, 9);
}

static uint32_t email(js_t *js)
{
    gbuild_t *b = js->b;
    gelem_t local = ge_bytes(js_bytes(js, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._%+-"));
    gelem_t lab = ge_bytes(js_bytes(js, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-"));
    gelem_t label = ge_ref(gb_repeat(b, lab, 1, 63));
    gelem_t dot_label[2] = { ge_bytes(js_byte(js, '.')), label };
    gelem_t e[4] = { ge_ref(gb_repeat(b, local, 1, 64)), ge_bytes(js_byte(js, '@')), label,
                     ge_ref(gb_repeat(b, ge_ref(gb_seq(b, dot_label, 2)), 1, 8)) };
    return gb_seq(b, e, 4);
}

static uint32_t ipv4(js_t *js)
{
    gelem_t d = cls(js, '0', '9');
    const gelem_t none = { 0, 0 };
    uint32_t two = gb_rule(js->b, NULL), three = gb_rule(js->b, NULL);
    gelem_t e2[2] = { cls(js, '1', '9'), d };
    gb_alt(js->b, two, e2, 2);
    gelem_t h1[3] = { cls(js, '1', '1'), d, d }, h2[3] = { cls(js, '2', '2'), cls(js, '0', '4'), d };
    gelem_t h3[3] = { lit(js, "25"), cls(js, '0', '5'), none };
    gb_alt(js->b, three, h1, 3);
    gb_alt(js->b, three, h2, 3);
    gb_alt(js->b, three, h3, 2);
    const gelem_t oct[3][2] = { { d, none }, { ge_ref(two), none }, { ge_ref(three), none } };
    gelem_t octet = ge_ref(alts(js, oct, 3)), dot = ge_bytes(js_byte(js, '.'));
    gelem_t e[7] = { octet, dot, octet, dot, octet, dot, octet };
    return gb_seq(js->b, e, 7);
}

static uint32_t format(js_t *js, const char *f)
{
    if (strcmp(f, "date") == 0)
        return date(js);
    if (strcmp(f, "time") == 0)
        return time_of_day(js);
    if (strcmp(f, "date-time") == 0) {
        gelem_t e[3] = { ge_ref(date(js)), ge_bytes(js_byte(js, 'T')), ge_ref(time_of_day(js)) };
        return gb_seq(js->b, e, 3);
    }
    if (strcmp(f, "uuid") == 0)
        return uuid(js);
    if (strcmp(f, "email") == 0)
        return email(js);
    if (strcmp(f, "ipv4") == 0)
        return ipv4(js);
    char shown[80];
    gb_fail(js->b, ERR_UNSUPPORTED, "json_schema: format '%s' is not supported",
            err_show(shown, sizeof shown, f));
    return GB_NONE;
}

uint32_t js_string(js_t *js, const cJSON *s)
{
    const cJSON *pat = cJSON_GetObjectItemCaseSensitive(s, "pattern");
    const cJSON *fmt = cJSON_GetObjectItemCaseSensitive(s, "format");
    uint32_t min = 0, max = GB_INF;
    int has_min = js_get_count(js, s, "minLength", &min), has_max = js_get_count(js, s, "maxLength", &max);
    if (has_min < 0 || has_max < 0)
        return GB_NONE;
    if (min > max) {
        gb_fail(js->b, ERR_INVALID, "json_schema: minLength %u is greater than maxLength %u", min, max);
        return GB_NONE;
    }
    if ((pat != NULL && !cJSON_IsString(pat)) || (fmt != NULL && !cJSON_IsString(fmt))) {
        gb_fail(js->b, ERR_INVALID, "json_schema: '%s' must be a string", pat != NULL ? "pattern" : "format");
        return GB_NONE;
    }
    if ((fmt != NULL && (has_min == 0 || has_max == 0)) || (pat != NULL && fmt != NULL)) {
        const char *k = has_min == 0 ? "minLength" : has_max == 0 ? "maxLength" : "format";
        gb_fail(js->b, ERR_UNSUPPORTED, "json_schema: keyword '%s' alongside '%s' is not supported", k,
                pat != NULL ? "pattern" : "format");
        return GB_NONE;
    }
    uint32_t body;
    if (fmt != NULL)
        body = format(js, fmt->valuestring);
    else if (pat != NULL && (has_min == 0 || has_max == 0))
        body = regex_build_counted(js->b, pat->valuestring, strlen(pat->valuestring),
                                   REGEX_SEARCH | REGEX_JSON_STRING, min, max);
    else if (pat != NULL)
        body = regex_build(js->b, pat->valuestring, strlen(pat->valuestring),
                           REGEX_SEARCH | REGEX_JSON_STRING);
    else
        body = gb_repeat(js->b, ge_ref(js_string_char(js)), min, max);
    uint32_t q = js_byte(js, '"');
    gelem_t e[3] = { ge_bytes(q), ge_ref(body), ge_bytes(q) };
    return gb_seq(js->b, e, 3);
}
