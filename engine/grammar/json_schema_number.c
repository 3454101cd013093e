/*
 * json_schema_number.c - integer and number schemas with bounds.
 *
 * Integers: minimum / maximum / exclusiveMinimum / exclusiveMaximum become
 * the exact closed range [lo, hi] (each side may be open-ended), and the
 * range becomes a grammar of canonical decimal integers: split by sign,
 * then by digit count, then each same-length range [x, y] digit by
 * digit: x[0] followed by [x', 99..9], the digits strictly between x[0]
 * and y[0] followed by any digits, and y[0] followed by [00..0, y'].
 * Bounds must lie within +-10^15 (exact in a double).  With a bound, "-0"
 * is not produced.
 *
 * Numbers: only the bounds that a sign expresses exactly: minimum 0 (no
 * minus sign) and exclusiveMinimum 0 (no minus sign and not zero).  Any
 * other bound on a number is ERR_UNSUPPORTED naming the keyword.
 */
#include "json_schema_impl.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "base/err.h"

#define MAX_DIGITS 17   /* 10^15 has 16 digits */

static uint32_t digit(js_t *js)
{
    return gb_range(js->b, '0', '9');
}

/* [0-9]{n}, n >= 1 */
static gelem_t any_digits(js_t *js, size_t n)
{
    return ge_ref(gb_repeat(js->b, ge_bytes(digit(js)), (uint32_t)n, (uint32_t)n));
}

/*
 * The decimal strings from x to y, both n digits (n >= 1), x <= y.
 * Recursion depth n <= MAX_DIGITS.
 */
static gelem_t between(js_t *js, const char *x, const char *y, size_t n)
{
    gbuild_t *b = js->b;
    if (n == 1)
        return ge_bytes(gb_range(b, (uint8_t)x[0], (uint8_t)y[0]));
    if (x[0] == y[0]) {
        gelem_t e[2] = { ge_bytes(js_byte(js, x[0])), between(js, x + 1, y + 1, n - 1) };
        return ge_ref(gb_seq(b, e, 2));
    }
    static const char nines[] = "9999999999999999999", zeros[] = "0000000000000000000";
    int x_low = strspn(x + 1, "0") == n - 1;     /* x = d00..0: its branch is all of d */
    int y_high = strspn(y + 1, "9") == n - 1;    /* y = d99..9: likewise */
    char lo = (char)(x_low ? x[0] : x[0] + 1), hi = (char)(y_high ? y[0] : y[0] - 1);
    uint32_t r = gb_rule(b, NULL);
    if (!x_low) {
        gelem_t e[2] = { ge_bytes(js_byte(js, x[0])), between(js, x + 1, nines, n - 1) };
        gb_alt(b, r, e, 2);
    }
    if (lo <= hi) {
        gelem_t e[2] = { ge_bytes(gb_range(b, (uint8_t)lo, (uint8_t)hi)), any_digits(js, n - 1) };
        gb_alt(b, r, e, 2);
    }
    if (!y_high) {
        gelem_t e[2] = { ge_bytes(js_byte(js, y[0])), between(js, zeros, y + 1, n - 1) };
        gb_alt(b, r, e, 2);
    }
    return ge_ref(r);
}

/* Add to r the canonical decimals of a..b (b UINT64_MAX: no upper bound), a <= b < 10^17. */
static void add_range(js_t *js, uint32_t r, uint64_t a, uint64_t b)
{
    char xs[24], ys[24];
    int la = snprintf(xs, sizeof xs, "%" PRIu64, a);
    uint64_t p = 1;                     /* 10^(L-1) */
    for (int l = 1; l < la; l++)
        p *= 10;
    for (int l = la; l <= MAX_DIGITS; l++, p *= 10) {
        uint64_t lo = l == la ? a : p;
        if (b == UINT64_MAX && l > la) {
            /* Every longer number: [1-9][0-9]{la,}. */
            gelem_t e[2] = { ge_bytes(gb_range(js->b, '1', '9')),
                             ge_ref(gb_repeat(js->b, ge_bytes(digit(js)), (uint32_t)la, GB_INF)) };
            gb_alt(js->b, r, e, 2);
            return;
        }
        uint64_t top = p * 10 - 1;
        uint64_t hi = b < top ? b : top;
        if (lo > hi)
            return;
        snprintf(xs, sizeof xs, "%0*" PRIu64, l, lo);
        snprintf(ys, sizeof ys, "%0*" PRIu64, l, hi);
        gelem_t e = between(js, xs, ys, (size_t)l);
        gb_alt(js->b, r, &e, 1);
        if (hi == b)
            return;
    }
}

static const char *const keys[4] = { "minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum" };

/* The bound keywords of s, in the order of keys: has[k] whether present, v[k] its value; 0 or -1 (failed). */
static int get_bounds(js_t *js, const cJSON *s, double v[4], int has[4])
{
    for (int k = 0; k < 4; k++) {
        const cJSON *x = cJSON_GetObjectItemCaseSensitive(s, keys[k]);
        has[k] = x != NULL;
        v[k] = x != NULL ? x->valuedouble : 0;
        if (x != NULL && cJSON_IsBool(x)) {
            gb_fail(js->b, ERR_UNSUPPORTED, "json_schema: keyword '%s' as a boolean (draft 4) is not "
                    "supported", keys[k]);
            return -1;
        }
        if (x != NULL && !cJSON_IsNumber(x)) {
            gb_fail(js->b, ERR_INVALID, "json_schema: '%s' must be a number", keys[k]);
            return -1;
        }
    }
    return 0;
}

uint32_t js_integer(js_t *js, const cJSON *s)
{
    int has_lo = 0, has_hi = 0, has[4];
    double lo = 0, hi = 0, val[4];
    if (get_bounds(js, s, val, has) != 0)
        return GB_NONE;
    for (int k = 0; k < 4; k++) {
        double v = val[k];
        if (!has[k])
            continue;
        if (!(fabs(v) <= JS_BOUND_MAX)) {
            gb_fail(js->b, ERR_UNSUPPORTED, "json_schema: '%s' beyond +-10^15 is not supported", keys[k]);
            return GB_NONE;
        }
        double b = k == 0 ? ceil(v) : k == 1 ? floor(v) + 1 : k == 2 ? floor(v) : ceil(v) - 1;
        if (k < 2 && (!has_lo || b > lo))
            lo = b, has_lo = 1;
        if (k >= 2 && (!has_hi || b < hi))
            hi = b, has_hi = 1;
    }
    if (!has_lo && !has_hi)
        return js_any_integer(js);
    if (has_lo && has_hi && lo > hi) {
        gb_fail(js->b, ERR_INVALID, "json_schema: no integer lies within the bounds");
        return GB_NONE;
    }
    uint32_t r = gb_rule(js->b, NULL);
    if (!has_lo || lo <= -1) {
        /* The negatives: "-" then the magnitudes -min(hi, -1) .. -lo. */
        uint32_t mag = gb_rule(js->b, NULL);
        double top = has_hi && hi < -1 ? hi : -1;
        add_range(js, mag, (uint64_t)-top, has_lo ? (uint64_t)-lo : UINT64_MAX);
        gelem_t e[2] = { ge_bytes(js_byte(js, '-')), ge_ref(mag) };
        gb_alt(js->b, r, e, 2);
    }
    if (!has_hi || hi >= 0) {
        uint32_t nat = gb_rule(js->b, NULL);
        add_range(js, nat, has_lo && lo > 0 ? (uint64_t)lo : 0, has_hi ? (uint64_t)hi : UINT64_MAX);
        gelem_t e = ge_ref(nat);
        gb_alt(js->b, r, &e, 1);
    }
    return r;
}

uint32_t js_number(js_t *js, const cJSON *s)
{
    int sign = 0, has[4];   /* sign 0: any; 1: no minus sign; 2: positive */
    double val[4];
    if (get_bounds(js, s, val, has) != 0)
        return GB_NONE;
    for (int k = 0; k < 4; k++) {
        if (!has[k])
            continue;
        if (k >= 2 || val[k] != 0) {
            gb_fail(js->b, ERR_UNSUPPORTED, "json_schema: keyword '%s' on a number is not supported "
                    "(only minimum 0 and exclusiveMinimum 0; use type integer for other bounds)",
                    keys[k]);
            return GB_NONE;
        }
        if (k + 1 > sign)
            sign = k + 1;
    }
    if (sign == 0)
        return js_any_number(js);
    gbuild_t *b = js->b;
    gelem_t digits0 = ge_ref(gb_repeat(b, ge_bytes(digit(js)), 0, GB_INF));
    gelem_t digits1 = ge_ref(gb_repeat(b, ge_bytes(digit(js)), 1, GB_INF));
    gelem_t frac[2] = { ge_bytes(js_byte(js, '.')), digits1 };
    gelem_t opt_frac = ge_ref(gb_repeat(b, ge_ref(gb_seq(b, frac, 2)), 0, 1));
    gelem_t exp[3] = { ge_bytes(js_bytes(js, "eE")), ge_ref(gb_repeat(b, ge_bytes(js_bytes(js, "+-")), 0, 1)),
                       digits1 };
    gelem_t opt_exp = ge_ref(gb_repeat(b, ge_ref(gb_seq(b, exp, 3)), 0, 1));
    uint32_t mant = gb_rule(b, NULL);
    gelem_t big[3] = { ge_bytes(gb_range(b, '1', '9')), digits0, opt_frac };
    gb_alt(b, mant, big, 3);
    if (sign == 1) {
        gelem_t zero[2] = { ge_bytes(js_byte(js, '0')), opt_frac };
        gb_alt(b, mant, zero, 2);
    } else {
        /* 0.0*[1-9][0-9]*: a fraction that is not zero. */
        gelem_t small[4] = { ge_ref(gb_literal(b, "0.", 2)),
                             ge_ref(gb_repeat(b, ge_bytes(js_byte(js, '0')), 0, GB_INF)),
                             ge_bytes(gb_range(b, '1', '9')), digits0 };
        gb_alt(b, mant, small, 4);
    }
    gelem_t e[2] = { ge_ref(mant), opt_exp };
    return gb_seq(b, e, 2);
}
