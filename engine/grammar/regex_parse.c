/*
 * regex_parse.c - a regular expression (the ECMAScript subset of
 * engine/grammar/README.md) to a syntax tree whose leaves are sets of code
 * points.  Recursive descent; the recursion is bounded by RX_MAX_DEPTH
 * levels of groups.  The flags of grammar.h are applied here: REGEX_SEARCH
 * wraps each top-level alternative that lacks ^ / $ in "any text", and
 * REGEX_JSON_STRING removes '"', '\\' and controls from every set.
 */
#include "regex.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "base/utf8.h"
#include "grammar.h"

#define CP_MAX   0x10FFFFu
#define NIL      UINT32_MAX

/* A growable list of code point ranges. */
typedef struct {
    uint32_t (*r)[2];
    uint32_t n, cap;
} cpset_t;

typedef struct {
    rx_tree_t *t;
    const unsigned char *p;
    size_t n, i;
    unsigned flags;
    int depth;
    int rc;
    char *err;
    size_t errlen;
    uint32_t *stk;              /* children being collected, nested calls above their callers' */
    uint32_t n_stk, cap_stk;
} ps_t;

/* ------------------------------------------------------------------ helpers */

int rx_grow(void *pp, uint32_t *cap, uint32_t need, size_t elem)
{
    void **p = pp;
    if (need <= *cap)
        return 0;
    uint32_t c = *cap ? *cap : 64;
    while (c < need)
        c = c > UINT32_MAX / 2 ? need : c * 2;
    void *q = realloc(*p, (size_t)c * elem);
    if (!q)
        return ERR_NOMEM;
    *p = q;
    *cap = c;
    return 0;
}

static uint32_t fail(ps_t *ps, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static uint32_t fail(ps_t *ps, int code, const char *fmt, ...)
{
    if (ps->rc)
        return NIL;
    ps->rc = code;
    if (ps->err && ps->errlen) {
        char msg[ERR_MSG_MAX];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);
        err_set(ps->err, ps->errlen, code, "regex: %s (at byte %zu)", msg, ps->i);
    }
    return NIL;
}

static int set_add(ps_t *ps, cpset_t *s, uint32_t lo, uint32_t hi)
{
    if (lo > hi)
        return 0;
    if (rx_grow(&s->r, &s->cap, s->n + 1, sizeof s->r[0])) {
        fail(ps, ERR_NOMEM, "out of memory");
        return ERR_NOMEM;
    }
    s->r[s->n][0] = lo;
    s->r[s->n][1] = hi;
    s->n++;
    return 0;
}

static int cmp_range(const void *a, const void *b)
{
    const uint32_t *x = a, *y = b;
    return x[0] < y[0] ? -1 : x[0] > y[0];
}

/* Sort and merge overlapping or adjacent ranges. */
static void set_norm(cpset_t *s)
{
    if (s->n == 0)
        return;
    qsort(s->r, s->n, sizeof s->r[0], cmp_range);
    uint32_t w = 0;
    for (uint32_t k = 1; k < s->n; k++) {
        if (s->r[k][0] <= s->r[w][1] + 1) {
            if (s->r[k][1] > s->r[w][1])
                s->r[w][1] = s->r[k][1];
        } else {
            s->r[++w][0] = s->r[k][0];
            s->r[w][1] = s->r[k][1];
        }
    }
    s->n = w + 1;
}

/* The complement within U+0000..U+10FFFF (s normalized; the result is too). */
static int set_negate(ps_t *ps, cpset_t *s)
{
    cpset_t o = { 0 };
    uint32_t next = 0;
    for (uint32_t k = 0; k < s->n; k++) {
        if (s->r[k][0] > next && set_add(ps, &o, next, s->r[k][0] - 1))
            goto fail;
        next = s->r[k][1] + 1;
    }
    if (next <= CP_MAX && set_add(ps, &o, next, CP_MAX))
        goto fail;
    free(s->r);
    *s = o;
    return 0;
fail:
    free(o.r);
    return ERR_NOMEM;
}

/* Remove lo..hi from a normalized set (it stays normalized). */
static int set_sub(ps_t *ps, cpset_t *s, uint32_t lo, uint32_t hi)
{
    cpset_t o = { 0 };
    for (uint32_t k = 0; k < s->n; k++) {
        uint32_t a = s->r[k][0], b = s->r[k][1];
        if (b < lo || a > hi) {
            if (set_add(ps, &o, a, b))
                goto fail;
            continue;
        }
        if (a < lo && set_add(ps, &o, a, lo - 1))
            goto fail;
        if (b > hi && set_add(ps, &o, hi + 1, b))
            goto fail;
    }
    free(s->r);
    *s = o;
    return 0;
fail:
    free(o.r);
    return ERR_NOMEM;
}

static uint32_t new_node(ps_t *ps, uint32_t kind, uint32_t a, uint32_t n, uint32_t min, uint32_t max)
{
    rx_tree_t *t = ps->t;
    if (ps->rc)
        return NIL;
    if (rx_grow(&t->nodes, &t->cap_nodes, t->n_nodes + 1, sizeof t->nodes[0]))
        return fail(ps, ERR_NOMEM, "out of memory");
    t->nodes[t->n_nodes] = (rx_node_t){ kind, a, n, min, max };
    return t->n_nodes++;
}

/* A set node of s (consumed); REGEX_JSON_STRING's exclusions applied. */
static uint32_t new_set(ps_t *ps, cpset_t *s)
{
    rx_tree_t *t = ps->t;
    set_norm(s);
    if ((ps->flags & REGEX_JSON_STRING) &&
        (set_sub(ps, s, 0, 0x1F) || set_sub(ps, s, '"', '"') || set_sub(ps, s, '\\', '\\'))) {
        free(s->r);
        return NIL;
    }
    if (rx_grow(&t->rng, &t->cap_rng, t->n_rng + s->n, sizeof t->rng[0])) {
        free(s->r);
        return fail(ps, ERR_NOMEM, "out of memory");
    }
    uint32_t a = t->n_rng;
    if (s->n)
        memcpy(t->rng + a, s->r, s->n * sizeof s->r[0]);
    t->n_rng += s->n;
    free(s->r);
    return new_node(ps, RX_SET, a, s->n, 0, 0);
}

static uint32_t new_cp(ps_t *ps, uint32_t lo, uint32_t hi)
{
    cpset_t s = { 0 };
    if (set_add(ps, &s, lo, hi))
        return NIL;
    return new_set(ps, &s);
}

static int push(ps_t *ps, uint32_t x)
{
    if (rx_grow(&ps->stk, &ps->cap_stk, ps->n_stk + 1, sizeof ps->stk[0])) {
        fail(ps, ERR_NOMEM, "out of memory");
        return ERR_NOMEM;
    }
    ps->stk[ps->n_stk++] = x;
    return 0;
}

/* A CAT or ALT node of the children stk[base..]; a single child stands for itself. */
static uint32_t pop_list(ps_t *ps, uint32_t kind, uint32_t base)
{
    rx_tree_t *t = ps->t;
    uint32_t n = ps->n_stk - base;
    ps->n_stk = base;
    if (ps->rc)
        return NIL;
    if (n == 1)
        return ps->stk[base];
    if (rx_grow(&t->kids, &t->cap_kids, t->n_kids + n, sizeof t->kids[0]))
        return fail(ps, ERR_NOMEM, "out of memory");
    uint32_t a = t->n_kids;
    if (n)
        memcpy(t->kids + a, ps->stk + base, n * sizeof t->kids[0]);
    t->n_kids += n;
    return new_node(ps, kind, a, n, 0, 0);
}

static int peek(const ps_t *ps) { return ps->i < ps->n ? ps->p[ps->i] : -1; }

/* The code point at ps->i (the pattern was validated as UTF-8), advancing past it. */
static uint32_t take_cp(ps_t *ps)
{
    uint32_t cp = 0;
    int kind;
    ps->i += utf8_step(ps->p + ps->i, ps->n - ps->i, &cp, &kind);
    return cp;
}

/* ------------------------------------------------------------------ escapes */

enum { ESC_CP = 1, ESC_SET = 2 };

static int hex_digits(ps_t *ps, size_t at, int n, uint32_t *v)
{
    uint32_t x = 0;
    if (at + (size_t)n > ps->n)
        return 0;
    for (int k = 0; k < n; k++) {
        int c = ps->p[at + (size_t)k];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
              : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (d < 0)
            return 0;
        x = x * 16 + (uint32_t)d;
    }
    *v = x;
    return 1;
}

/* The ranges of a class escape (\d \w \s); upper case is the complement. */
static int class_escape(ps_t *ps, int c, cpset_t *s)
{
    static const uint32_t space[][2] = {
        { 0x09, 0x0D }, { 0x20, 0x20 }, { 0xA0, 0xA0 }, { 0x1680, 0x1680 }, { 0x2000, 0x200A },
        { 0x2028, 0x2029 }, { 0x202F, 0x202F }, { 0x205F, 0x205F }, { 0x3000, 0x3000 },
        { 0xFEFF, 0xFEFF },
    };
    cpset_t one = { 0 };
    int lc = c | 0x20, rc = 0;
    if (lc == 'd')
        rc = set_add(ps, &one, '0', '9');
    else if (lc == 'w')
        rc = set_add(ps, &one, '0', '9') || set_add(ps, &one, 'A', 'Z') ||
             set_add(ps, &one, '_', '_') || set_add(ps, &one, 'a', 'z');
    else
        for (size_t k = 0; k < sizeof space / sizeof space[0] && !rc; k++)
            rc = set_add(ps, &one, space[k][0], space[k][1]);
    if (!rc && c != lc) {
        set_norm(&one);
        rc = set_negate(ps, &one);
    }
    for (uint32_t k = 0; k < one.n && !rc; k++)
        rc = set_add(ps, s, one.r[k][0], one.r[k][1]);
    free(one.r);
    return rc ? ERR_NOMEM : 0;
}

/*
 * The escape after a backslash at ps->i: ESC_CP with *cp, or ESC_SET with
 * its ranges added to s, or 0 on failure.
 */
static int parse_escape(ps_t *ps, int in_class, cpset_t *s, uint32_t *cp)
{
    ps->i++;                                    /* the backslash */
    if (ps->i >= ps->n) {
        fail(ps, ERR_INVALID, "trailing backslash");
        return 0;
    }
    int c = ps->p[ps->i++];
    switch (c) {
    case 'd': case 'D': case 'w': case 'W': case 's': case 'S':
        return class_escape(ps, c, s) ? 0 : ESC_SET;
    case 'n': *cp = '\n'; return ESC_CP;
    case 't': *cp = '\t'; return ESC_CP;
    case 'r': *cp = '\r'; return ESC_CP;
    case 'f': *cp = '\f'; return ESC_CP;
    case 'v': *cp = '\v'; return ESC_CP;
    case '0':
        if (peek(ps) >= '0' && peek(ps) <= '9')
            break;
        *cp = 0;
        return ESC_CP;
    case 'x':
        if (!hex_digits(ps, ps->i, 2, cp)) {
            fail(ps, ERR_INVALID, "\\x takes two hex digits");
            return 0;
        }
        ps->i += 2;
        return ESC_CP;
    case 'u':
        if (peek(ps) == '{') {
            fail(ps, ERR_UNSUPPORTED, "\\u{...} is not supported; use \\uHHHH");
            return 0;
        }
        if (!hex_digits(ps, ps->i, 4, cp)) {
            fail(ps, ERR_INVALID, "\\u takes four hex digits");
            return 0;
        }
        ps->i += 4;
        if (*cp >= 0xD800 && *cp <= 0xDBFF) {   /* a surrogate pair spells one code point */
            uint32_t lo;
            if (ps->i + 1 < ps->n && ps->p[ps->i] == '\\' && ps->p[ps->i + 1] == 'u' &&
                hex_digits(ps, ps->i + 2, 4, &lo) && lo >= 0xDC00 && lo <= 0xDFFF) {
                ps->i += 6;
                *cp = 0x10000 + ((*cp - 0xD800) << 10) + (lo - 0xDC00);
                return ESC_CP;
            }
        }
        if (*cp >= 0xD800 && *cp <= 0xDFFF) {
            fail(ps, ERR_UNSUPPORTED, "a lone surrogate \\u%04X matches nothing in UTF-8", (unsigned)*cp);
            return 0;
        }
        return ESC_CP;
    case 'b':
        if (in_class) {
            *cp = 0x08;
            return ESC_CP;
        }
        fail(ps, ERR_UNSUPPORTED, "word boundaries (\\b) are not supported");
        return 0;
    case 'B':
        fail(ps, ERR_UNSUPPORTED, "word boundaries (\\B) are not supported");
        return 0;
    case 'k':
        fail(ps, ERR_UNSUPPORTED, "named backreferences (\\k) are not supported");
        return 0;
    case 'p': case 'P':
        fail(ps, ERR_UNSUPPORTED, "Unicode property escapes (\\%c) are not supported", c);
        return 0;
    case 'c':
        fail(ps, ERR_UNSUPPORTED, "control escapes (\\c) are not supported");
        return 0;
    default:
        break;
    }
    if (c >= '0' && c <= '9') {
        fail(ps, ERR_UNSUPPORTED, "backreferences and octal escapes (\\%c) are not supported", c);
        return 0;
    }
    if (c < 0x80 && c > 0x20 && !(c >= 'a' && c <= 'z') && !(c >= 'A' && c <= 'Z')) {
        *cp = (uint32_t)c;                      /* \. \\ \/ \- \" ...: the character itself */
        return ESC_CP;
    }
    ps->i--;
    fail(ps, ERR_INVALID, "unknown escape \\%c", c >= 0x20 && c < 0x7F ? c : '?');
    return 0;
}

/* ------------------------------------------------------------------ atoms */

/* A class [..] at ps->i. */
static uint32_t parse_class(ps_t *ps)
{
    cpset_t s = { 0 };
    ps->i++;                                    /* '[' */
    int neg = peek(ps) == '^';
    if (neg)
        ps->i++;
    for (;;) {
        if (ps->i >= ps->n) {
            fail(ps, ERR_INVALID, "missing ']'");
            goto fail;
        }
        if (peek(ps) == ']') {
            ps->i++;
            break;
        }
        uint32_t lo = 0, hi = 0;
        int k = ESC_CP;
        if (peek(ps) == '\\')
            k = parse_escape(ps, 1, &s, &lo);
        else
            lo = take_cp(ps);
        if (!k)
            goto fail;
        int range = ps->i + 1 < ps->n && ps->p[ps->i] == '-' && ps->p[ps->i + 1] != ']';
        if (!range) {
            if (k == ESC_CP && set_add(ps, &s, lo, lo))
                goto fail;
            continue;
        }
        ps->i++;                                /* '-' */
        int k2 = ESC_CP;
        if (peek(ps) == '\\') {
            cpset_t tmp = { 0 };
            k2 = parse_escape(ps, 1, &tmp, &hi);
            free(tmp.r);
        } else {
            hi = take_cp(ps);
        }
        if (!k2)
            goto fail;
        if (k != ESC_CP || k2 != ESC_CP) {
            fail(ps, ERR_INVALID, "a class escape cannot bound a range");
            goto fail;
        }
        if (lo > hi) {
            fail(ps, ERR_INVALID, "range out of order in character class");
            goto fail;
        }
        if (set_add(ps, &s, lo, hi))
            goto fail;
    }
    set_norm(&s);
    if (neg && (set_negate(ps, &s) || set_sub(ps, &s, '\n', '\n')))
        goto fail;
    return new_set(ps, &s);
fail:
    free(s.r);
    return NIL;
}

/* A quantifier {m}, {m,} or {m,n} at ps->i: 1 (advanced past it), 0 (not one: '{' is literal). */
static int try_braces(ps_t *ps, uint32_t *min, uint32_t *max)
{
    size_t i = ps->i + 1;
    uint64_t v[2] = { 0, 0 };
    int nd[2] = { 0, 0 }, comma = 0;
    for (; i < ps->n; i++) {
        int c = ps->p[i];
        if (c >= '0' && c <= '9') {
            if (v[comma] < 100000000)
                v[comma] = v[comma] * 10 + (uint64_t)(c - '0');
            nd[comma]++;
        } else if (c == ',' && !comma) {
            comma = 1;
        } else if (c == '}') {
            break;
        } else {
            return 0;
        }
    }
    if (i >= ps->n || nd[0] == 0)
        return 0;
    ps->i = i + 1;
    *min = (uint32_t)v[0];
    *max = !comma ? *min : nd[1] ? (uint32_t)v[1] : RX_UNBOUNDED;
    if (*min > RX_MAX_REPEAT || (*max != RX_UNBOUNDED && *max > RX_MAX_REPEAT))
        fail(ps, ERR_FULL, "a repetition bound exceeds %d", RX_MAX_REPEAT);
    else if (*min > *max)
        fail(ps, ERR_INVALID, "numbers out of order in {} quantifier");
    return 1;
}

/* A quantifier at ps->i: 1 with its bounds (advanced past it), 0 when none. */
static int try_quant(ps_t *ps, uint32_t *min, uint32_t *max)
{
    switch (peek(ps)) {
    case '*': *min = 0; *max = RX_UNBOUNDED; ps->i++; return 1;
    case '+': *min = 1; *max = RX_UNBOUNDED; ps->i++; return 1;
    case '?': *min = 0; *max = 1; ps->i++; return 1;
    case '{': return try_braces(ps, min, max);
    default: return 0;
    }
}

static uint32_t parse_alt(ps_t *ps, int top);

static uint32_t parse_group(ps_t *ps)
{
    ps->i++;                                    /* '(' */
    if (peek(ps) == '?') {
        int c = ps->i + 1 < ps->n ? ps->p[ps->i + 1] : -1;
        int c2 = ps->i + 2 < ps->n ? ps->p[ps->i + 2] : -1;
        if (c == '=' || c == '!' || (c == '<' && (c2 == '=' || c2 == '!')))
            return fail(ps, ERR_UNSUPPORTED, "lookaround assertions are not supported");
        if (c == '<')
            return fail(ps, ERR_UNSUPPORTED, "named groups are not supported; use (?: )");
        if (c != ':')
            return fail(ps, ERR_UNSUPPORTED, "group flags and (?...) extensions are not supported");
        ps->i += 2;
    }
    if (++ps->depth > RX_MAX_DEPTH)
        return fail(ps, ERR_FULL, "groups nested more than %d deep", RX_MAX_DEPTH);
    uint32_t x = parse_alt(ps, 0);
    ps->depth--;
    if (x == NIL)
        return NIL;
    if (peek(ps) != ')')
        return fail(ps, ERR_INVALID, "missing ')'");
    ps->i++;
    return x;
}

static uint32_t parse_atom(ps_t *ps)
{
    uint32_t min, max, cp;
    int c = peek(ps);
    switch (c) {
    case '(':
        return parse_group(ps);
    case '[':
        return parse_class(ps);
    case '.': {
        ps->i++;
        cpset_t s = { 0 };
        if (set_add(ps, &s, 0, '\n' - 1) || set_add(ps, &s, '\n' + 1, CP_MAX))
            return NIL;
        return new_set(ps, &s);
    }
    case '\\': {
        cpset_t s = { 0 };
        int k = parse_escape(ps, 0, &s, &cp);
        if (k == ESC_SET)
            return new_set(ps, &s);
        free(s.r);
        return k == ESC_CP ? new_cp(ps, cp, cp) : NIL;
    }
    case '*': case '+': case '?':
        return fail(ps, ERR_INVALID, "nothing to repeat");
    case '{': {
        size_t at = ps->i;
        if (try_braces(ps, &min, &max)) {
            ps->i = at;
            return fail(ps, ERR_INVALID, "nothing to repeat");
        }
        break;
    }
    default:
        break;
    }
    cp = take_cp(ps);                           /* a literal; '{', '}' and ']' alone are literals */
    return new_cp(ps, cp, cp);
}

/* ------------------------------------------------------------------ sequences and alternatives */

/* Atoms with quantifiers up to '|', ')' or the end; *end_anchor set by a final top-level '$'. */
static uint32_t parse_seq(ps_t *ps, int top, int *end_anchor)
{
    uint32_t base = ps->n_stk;
    while (ps->i < ps->n && !ps->rc) {
        int c = peek(ps);
        if (c == '|' || c == ')')
            break;
        if (c == '$' && top && (ps->i + 1 == ps->n || ps->p[ps->i + 1] == '|')) {
            ps->i++;
            *end_anchor = 1;
            break;
        }
        if (c == '$' || c == '^') {
            fail(ps, ERR_UNSUPPORTED, "'%c' is supported only at the %s of the pattern or of a "
                 "top-level alternative", c, c == '^' ? "start" : "end");
            break;
        }
        uint32_t x = parse_atom(ps), min, max;
        if (x == NIL)
            break;
        if (try_quant(ps, &min, &max)) {
            if (ps->rc)
                break;
            if (peek(ps) == '?')
                ps->i++;                        /* lazy: the same language */
            size_t at = ps->i;
            uint32_t m2, x2;
            if (try_quant(ps, &m2, &x2)) {
                ps->i = at;
                fail(ps, ERR_INVALID, "nothing to repeat (a quantifier follows a quantifier)");
                break;
            }
            x = new_node(ps, RX_REP, x, 1, min, max);
        }
        if (x == NIL || push(ps, x))
            break;
    }
    return pop_list(ps, RX_CAT, base);
}

/* REGEX_SEARCH: any text before x unless anchored at the start, any after unless at the end. */
static uint32_t wrap_search(ps_t *ps, uint32_t x, int start_anchor, int end_anchor)
{
    uint32_t base = ps->n_stk, any = NIL;
    if (!start_anchor || !end_anchor) {
        uint32_t set = new_cp(ps, 0, CP_MAX);
        any = new_node(ps, RX_REP, set, 1, 0, RX_UNBOUNDED);
    }
    if (!start_anchor)
        push(ps, any);
    push(ps, x);
    if (!end_anchor)
        push(ps, any);
    return pop_list(ps, RX_CAT, base);
}

static uint32_t parse_alt(ps_t *ps, int top)
{
    uint32_t base = ps->n_stk;
    for (;;) {
        int start_anchor = 0, end_anchor = 0;
        if (top && peek(ps) == '^') {
            ps->i++;
            start_anchor = 1;
        }
        uint32_t x = parse_seq(ps, top, &end_anchor);
        if (x == NIL)
            break;
        if (top && (ps->flags & REGEX_SEARCH))
            x = wrap_search(ps, x, start_anchor, end_anchor);
        if (x == NIL || push(ps, x))
            break;
        if (peek(ps) != '|')
            break;
        ps->i++;
    }
    return pop_list(ps, RX_ALT, base);
}

/* ------------------------------------------------------------------ entry points */

int rx_parse(rx_tree_t *t, const char *re, size_t len, unsigned flags, char *err, size_t errlen)
{
    memset(t, 0, sizeof *t);
    t->root = NIL;
    ps_t ps = { .t = t, .p = (const unsigned char *)re, .n = len, .flags = flags,
                .err = err, .errlen = errlen };
    if (!re && len)
        return err_set(err, errlen, ERR_INVALID, "regex: no pattern");
    if (len > RX_MAX_PATTERN)
        return err_set(err, errlen, ERR_FULL, "regex: the pattern is longer than %d bytes", RX_MAX_PATTERN);
    size_t bad = utf8_bad_at(re, len);
    if (bad < len)
        return err_set(err, errlen, ERR_INVALID, "regex: invalid UTF-8 at byte %zu", bad);
    uint32_t root = parse_alt(&ps, 1);
    if (!ps.rc && ps.i < ps.n)
        fail(&ps, ERR_INVALID, "unmatched ')'");
    free(ps.stk);
    if (ps.rc)
        return ps.rc;
    t->root = root;
    return 0;
}

void rx_tree_close(rx_tree_t *t)
{
    if (!t)
        return;
    free(t->nodes);
    free(t->kids);
    free(t->rng);
    memset(t, 0, sizeof *t);
}
