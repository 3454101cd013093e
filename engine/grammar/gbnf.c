/*
 * gbnf.c - GBNF text (llama.cpp's grammar syntax, grammars/README.md)
 * into a grammar_t, through the builder of grammar.h.
 *
 * The syntax read here:
 *
 *   rule     name ::= alternatives            names are [a-zA-Z0-9-]+
 *   alts     seq | seq | ...                  an empty seq matches ""
 *   element  "literal"  [class]  [^class]  .  (alts)  name
 *   quant    element? element* element+ element{m} element{m,} element{m,n} element{,n}
 *   comment  # to the end of the line
 *
 * Terminals are Unicode code points, as in llama.cpp: a literal becomes
 * the UTF-8 bytes of its code points (gb_literal), a class or '.' one
 * UTF-8 encoded code point (gb_codepoints).  Escapes in literals and
 * classes: \n \r \t \\ \" \[ \] \- \xHH \uHHHH \UHHHHHHHH; an escape must
 * name a Unicode scalar value.  The text must be well-formed UTF-8.
 *
 * Lines.  A newline ends a rule, except inside parentheses, after '|' or
 * '::=', and when the next non-blank line does not start a new rule
 * ("name ::="): such a line continues the rule, so
 *
 *   root ::= "a"
 *          | "b"
 *
 * is one rule (llama.cpp itself would refuse the second line).
 *
 * Refusals: every syntax error is ERR_INVALID with a message naming the
 * line and column ("grammar: line 3, column 7: expected '::='"; columns
 * count code points from 1).  A rule defined twice and a missing "root"
 * are ERR_INVALID.  Parentheses nested deeper than GBNF_MAX_DEPTH and a
 * repetition bound above the builder's max_repeat are ERR_FULL.  Undefined
 * rules, left recursion and an empty language are refused by gb_finish
 * with its own messages, as are the builder's caps on rules and elements.
 *
 * The parser recurses only into parentheses, at most GBNF_MAX_DEPTH deep.
 */
#include "grammar.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/err.h"
#include "base/utf8.h"

#define GBNF_MAX_DEPTH 256            /* parentheses nested inside one rule */
#define GBNF_DEFAULT_MAX_REPEAT 10000 /* grammar.h's default for max_repeat */

/* ------------------------------------------------------------------ parser state */

typedef struct {
    uint32_t *ids;                    /* open addressing; UINT32_MAX marks a free slot */
    size_t cap, n;
} idset_t;

typedef struct {
    const char *text, *p, *end;
    gbuild_t *b;
    uint32_t max_repeat;
    int depth;
    int rc;                           /* the first syntax error (0: none) */
    char *err;
    size_t errlen;
    idset_t defined;                  /* rules given alternatives so far */
    int have_root;
} gp_t;

/* Record a syntax error at q (the first sticks); returns its code. */
static int gp_error(gp_t *g, const char *q, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int gp_error(gp_t *g, const char *q, int code, const char *fmt, ...)
{
    if (g->rc)
        return g->rc;
    unsigned line = 1, col = 1;
    for (const char *s = g->text; s < q && s < g->end; s++) {
        if (*s == '\n') {
            line++;
            col = 1;
        } else if (((unsigned char)*s & 0xC0) != 0x80) {
            col++;
        }
    }
    char what[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    g->rc = err_set(g->err, g->errlen, code, "grammar: line %u, column %u: %s", line, col, what);
    return g->rc;
}

/* Whether parsing must stop: a syntax error or a builder failure. */
static int gp_stopped(const gp_t *g)
{
    return g->rc != 0 || gb_failed(g->b) != 0;
}

/* Add id to the set; 1 when it was new, 0 when already there, ERR_NOMEM. */
static int idset_add(idset_t *s, uint32_t id)
{
    if ((s->n + 1) * 2 > s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 64;
        uint32_t *ids = malloc(cap * sizeof *ids);
        if (!ids)
            return ERR_NOMEM;
        memset(ids, 0xFF, cap * sizeof *ids);
        for (size_t i = 0; i < s->cap; i++) {
            if (s->ids[i] == UINT32_MAX)
                continue;
            size_t h = (s->ids[i] * 2654435761u) & (cap - 1);
            while (ids[h] != UINT32_MAX)
                h = (h + 1) & (cap - 1);
            ids[h] = s->ids[i];
        }
        free(s->ids);
        s->ids = ids;
        s->cap = cap;
    }
    size_t h = (id * 2654435761u) & (s->cap - 1);
    while (s->ids[h] != UINT32_MAX) {
        if (s->ids[h] == id)
            return 0;
        h = (h + 1) & (s->cap - 1);
    }
    s->ids[h] = id;
    s->n++;
    return 1;
}

/* ------------------------------------------------------------------ lexing */

/* The array p (*cap items of size elem, n used) with room for one more: p itself, a
 * larger copy (*cap updated, p freed), or NULL when memory ran out (p kept). */
static void *grow(void *p, size_t *cap, size_t n, size_t elem)
{
    if (n < *cap)
        return p;
    size_t ncap = *cap ? *cap * 2 : 8;
    void *np = realloc(p, ncap * elem);
    if (np)
        *cap = ncap;
    return np;
}

static int is_name_char(int c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-';
}

/* Skip blanks and comments; newlines too when nl is set. */
static void skip_space(gp_t *g, int nl)
{
    while (g->p < g->end) {
        char c = *g->p;
        if (c == ' ' || c == '\t' || c == '\r' || (nl && c == '\n')) {
            g->p++;
        } else if (c == '#') {
            while (g->p < g->end && *g->p != '\n')
                g->p++;
        } else {
            break;
        }
    }
}

/* Length of the name at q, 0 if none. */
static size_t name_len(const gp_t *g, const char *q)
{
    const char *s = q;
    while (s < g->end && is_name_char((unsigned char)*s))
        s++;
    return (size_t)(s - q);
}

/* Whether q starts "name ::=" (blanks allowed before "::="). */
static int starts_rule(const gp_t *g, const char *q)
{
    size_t n = name_len(g, q);
    if (n == 0)
        return 0;
    q += n;
    while (q < g->end && (*q == ' ' || *q == '\t'))
        q++;
    return g->end - q >= 3 && memcmp(q, "::=", 3) == 0;
}

/*
 * At a newline outside parentheses: whether the rule goes on.  It does
 * when the next non-blank line neither ends the text nor starts a rule;
 * the cursor then moves there.
 */
static int rule_continues(gp_t *g)
{
    const char *save = g->p;
    skip_space(g, 1);
    if (g->p >= g->end || starts_rule(g, g->p)) {
        g->p = save;
        return 0;
    }
    return 1;
}

static int hex_value(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/*
 * One character of a literal or class at the cursor, raw UTF-8 or an
 * escape, into *cp; the cursor moves past it.  0 or a syntax error.
 */
static int read_char(gp_t *g, uint32_t *cp)
{
    const char *at = g->p;
    if (*g->p != '\\') {
        int kind;
        size_t n = utf8_step((const unsigned char *)g->p, (size_t)(g->end - g->p), cp, &kind);
        if (kind != UTF8_OK)
            return gp_error(g, at, ERR_INVALID, "invalid UTF-8");
        g->p += n;
        return 0;
    }
    if (g->end - g->p < 2)
        return gp_error(g, at, ERR_INVALID, "unfinished escape at the end of the text");
    char e = g->p[1];
    g->p += 2;
    int digits = 0;
    switch (e) {
    case 'n': *cp = '\n'; return 0;
    case 'r': *cp = '\r'; return 0;
    case 't': *cp = '\t'; return 0;
    case '\\': case '"': case '[': case ']': case '-': *cp = (unsigned char)e; return 0;
    case 'x': digits = 2; break;
    case 'u': digits = 4; break;
    case 'U': digits = 8; break;
    default: {
        char shown[68];
        return gp_error(g, at, ERR_INVALID, "unknown escape '\\%s'", err_shown(shown, sizeof shown, &e, 1));
    }
    }
    uint32_t v = 0;
    for (int i = 0; i < digits; i++) {
        int h = g->p < g->end ? hex_value((unsigned char)*g->p) : -1;
        if (h < 0)
            return gp_error(g, at, ERR_INVALID, "escape '\\%c' needs %d hex digits", e, digits);
        v = v * 16 + (uint32_t)h;
        g->p++;
    }
    if (v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF))
        return gp_error(g, at, ERR_INVALID, "escape U+%04X is not a Unicode scalar value", (unsigned)v);
    *cp = v;
    return 0;
}

/* A decimal repetition bound; values past the cap saturate (the caller refuses them). */
static uint32_t read_count(gp_t *g)
{
    uint64_t v = 0;
    while (g->p < g->end && *g->p >= '0' && *g->p <= '9') {
        v = v * 10 + (uint64_t)(*g->p - '0');
        if (v > UINT32_MAX - 1)
            v = UINT32_MAX - 1;
        g->p++;
    }
    return (uint32_t)v;
}

/* ------------------------------------------------------------------ elements */

/* "..." at the cursor: a rule of its UTF-8 bytes. */
static int parse_literal(gp_t *g, gelem_t *out)
{
    const char *at = g->p++;
    buf_t bytes;
    buf_init(&bytes);
    int rc = 0;
    for (;;) {
        if (g->p >= g->end) {
            rc = gp_error(g, at, ERR_INVALID, "unterminated string");
            break;
        }
        if (*g->p == '"') {
            g->p++;
            break;
        }
        uint32_t cp;
        char enc[4];
        if ((rc = read_char(g, &cp)) != 0)
            break;
        if (buf_append(&bytes, enc, utf8_encode(cp, enc)) != 0) {
            rc = gp_error(g, at, ERR_NOMEM, "out of memory");
            break;
        }
    }
    if (rc == 0)
        *out = ge_ref(gb_literal(g->b, bytes.data ? bytes.data : "", bytes.len));
    buf_close(&bytes);
    return rc;
}

/* [...] or [^...] at the cursor: one code point of the class. */
static int parse_class(gp_t *g, gelem_t *out)
{
    const char *at = g->p++;
    int negate = 0;
    if (g->p < g->end && *g->p == '^') {
        negate = 1;
        g->p++;
    }
    uint32_t (*r)[2] = NULL;
    size_t n = 0, cap = 0;
    int rc = 0;
    for (;;) {
        if (g->p >= g->end) {
            rc = gp_error(g, at, ERR_INVALID, "unterminated character class");
            break;
        }
        if (*g->p == ']') {
            g->p++;
            break;
        }
        const char *lo_at = g->p;
        uint32_t lo, hi;
        if ((rc = read_char(g, &lo)) != 0)
            break;
        hi = lo;
        if (g->end - g->p >= 2 && g->p[0] == '-' && g->p[1] != ']') {
            g->p++;
            if ((rc = read_char(g, &hi)) != 0)
                break;
            if (hi < lo) {
                rc = gp_error(g, lo_at, ERR_INVALID, "range U+%04X-U+%04X is out of order", (unsigned)lo,
                              (unsigned)hi);
                break;
            }
        }
        void *nr = grow(r, &cap, n, sizeof *r);
        if (!nr) {
            rc = gp_error(g, at, ERR_NOMEM, "out of memory");
            break;
        }
        r = nr;
        r[n][0] = lo;
        r[n][1] = hi;
        n++;
    }
    if (rc == 0 && n == 0 && !negate)
        rc = gp_error(g, at, ERR_INVALID, "empty character class '[]' matches nothing");
    if (rc == 0)
        *out = ge_ref(gb_codepoints(g->b, (const uint32_t(*)[2])r, n, negate));
    free(r);
    return rc;
}

/* {m}, {m,}, {m,n} or {,n} at the cursor, applied to *x. */
static int parse_braces(gp_t *g, gelem_t *x)
{
    const char *at = g->p++;
    uint32_t min = 0, max;
    skip_space(g, 0);
    int have_min = g->p < g->end && *g->p >= '0' && *g->p <= '9', have_max = 0;
    if (have_min)
        min = read_count(g);
    skip_space(g, 0);
    if (g->p < g->end && *g->p == ',') {
        g->p++;
        skip_space(g, 0);
        have_max = g->p < g->end && *g->p >= '0' && *g->p <= '9';
        max = have_max ? read_count(g) : GB_INF;
    } else {
        max = min;
        have_max = have_min;
    }
    if (!have_min && !have_max)
        return gp_error(g, at, ERR_INVALID, "expected a count in '{...}'");
    skip_space(g, 0);
    if (g->p >= g->end || *g->p != '}')
        return gp_error(g, at, ERR_INVALID, "expected '}' to close the repetition");
    g->p++;
    if (max != GB_INF && min > max)
        return gp_error(g, at, ERR_INVALID, "repetition {%u,%u}: the minimum is above the maximum",
                        (unsigned)min, (unsigned)max);
    uint32_t top = max != GB_INF ? max : min;
    if (top > g->max_repeat) {
        char shown[68];
        return gp_error(g, at, ERR_FULL, "repetition '%s' is over the cap of %u (max_repeat)",
                        err_shown(shown, sizeof shown, at, (size_t)(g->p - at)), (unsigned)g->max_repeat);
    }
    *x = ge_ref(gb_repeat(g->b, *x, min, max));
    return 0;
}

static int parse_alternates(gp_t *g, uint32_t rule, int nested);

/* One element and its quantifiers at the cursor, into *out.  0, 1 (no element here) or an error. */
static int parse_element(gp_t *g, gelem_t *out)
{
    const char *at = g->p;
    char c = *g->p;
    int rc = 0;
    if (c == '"') {
        rc = parse_literal(g, out);
    } else if (c == '[') {
        rc = parse_class(g, out);
    } else if (c == '.') {
        static const uint32_t any[1][2] = { { 0, 0x10FFFF } };
        g->p++;
        *out = ge_ref(gb_codepoints(g->b, any, 1, 0));
    } else if (c == '(') {
        if (g->depth >= GBNF_MAX_DEPTH)
            return gp_error(g, at, ERR_FULL, "parentheses nested more than %d deep", GBNF_MAX_DEPTH);
        g->p++;
        uint32_t group = gb_rule(g->b, NULL);
        g->depth++;
        rc = parse_alternates(g, group, 1);
        g->depth--;
        if (rc == 0 && !gp_stopped(g)) {
            if (g->p >= g->end || *g->p != ')')
                return gp_error(g, at, ERR_INVALID, "'(' is not closed");
            g->p++;
        }
        *out = ge_ref(group);
    } else if (is_name_char((unsigned char)c)) {
        size_t n = name_len(g, g->p);
        *out = ge_ref(gb_named(g->b, g->p, n));
        g->p += n;
    } else {
        return 1;
    }
    if (rc || gp_stopped(g))
        return rc ? rc : gb_failed(g->b);
    for (;;) {
        c = g->p < g->end ? *g->p : 0;
        if (c == '*' || c == '+' || c == '?') {
            g->p++;
            *out = ge_ref(gb_repeat(g->b, *out, c == '+' ? 1 : 0, c == '?' ? 1 : GB_INF));
        } else if (c == '{') {
            if ((rc = parse_braces(g, out)) != 0)
                return rc;
        } else {
            return gp_stopped(g) ? gb_failed(g->b) : 0;
        }
    }
}

/* ------------------------------------------------------------------ sequences and rules */

/* One alternative at the cursor, added to rule; stops before '|', ')' or the rule's end. */
static int parse_sequence(gp_t *g, uint32_t rule, int nested)
{
    gelem_t *e = NULL;
    size_t n = 0, cap = 0;
    int rc = 0;
    for (;;) {
        skip_space(g, nested);
        if (g->p < g->end && *g->p == '\n') {
            if (!rule_continues(g))
                break;
            continue;
        }
        if (g->p >= g->end || *g->p == '|' || *g->p == ')')
            break;
        gelem_t x;
        rc = parse_element(g, &x);
        if (rc == 1) {
            char shown[68];
            int kind;
            uint32_t cp;
            size_t len = utf8_step((const unsigned char *)g->p, (size_t)(g->end - g->p), &cp, &kind);
            rc = gp_error(g, g->p, ERR_INVALID, "unexpected '%s'", err_shown(shown, sizeof shown, g->p, len));
        }
        if (rc)
            break;
        void *ne = grow(e, &cap, n, sizeof *e);
        if (!ne) {
            rc = gp_error(g, g->p, ERR_NOMEM, "out of memory");
            break;
        }
        e = ne;
        e[n++] = x;
    }
    if (rc == 0)
        gb_alt(g->b, rule, e, n);
    free(e);
    return rc;
}

/* seq | seq | ... at the cursor, each added to rule. */
static int parse_alternates(gp_t *g, uint32_t rule, int nested)
{
    for (;;) {
        int rc = parse_sequence(g, rule, nested);
        if (rc || gp_stopped(g))
            return rc;
        if (g->p >= g->end || *g->p != '|')
            return 0;
        g->p++;
        skip_space(g, 1);
    }
}

/* name ::= alternatives, at the cursor (at a name). */
static int parse_rule(gp_t *g)
{
    const char *at = g->p;
    size_t n = name_len(g, g->p);
    if (n == 0) {
        char shown[68];
        return gp_error(g, at, ERR_INVALID, "expected a rule name, found '%s'", err_shown(shown, sizeof shown, at, 1));
    }
    g->p += n;
    skip_space(g, 0);
    if (g->end - g->p < 3 || memcmp(g->p, "::=", 3) != 0)
        return gp_error(g, g->p, ERR_INVALID, "expected '::='");
    g->p += 3;
    skip_space(g, 1);
    uint32_t rule = gb_named(g->b, at, n);
    if (rule == GB_NONE)
        return gb_failed(g->b);
    int fresh = idset_add(&g->defined, rule);
    if (fresh < 0)
        return gp_error(g, at, fresh, "out of memory");
    if (fresh == 0) {
        char shown[68];
        return gp_error(g, at, ERR_INVALID, "rule '%s' is defined twice", err_shown(shown, sizeof shown, at, n));
    }
    if (n == 4 && memcmp(at, "root", 4) == 0)
        g->have_root = 1;
    int rc = parse_alternates(g, rule, 0);
    if (rc || gp_stopped(g))
        return rc;
    if (g->p < g->end && *g->p == ')')
        return gp_error(g, g->p, ERR_INVALID, "')' without '('");
    return 0;
}

/* ------------------------------------------------------------------ entry */

int grammar_from_gbnf(const char *text, size_t len, const grammar_limits_t *lim,
                      grammar_t **out, char *err, size_t errlen)
{
    *out = NULL;
    if (!text && len)
        return err_set(err, errlen, ERR_INVALID, "grammar: no text");
    gbuild_t *b;
    if (gb_create(&b, lim) != 0)
        return err_set(err, errlen, ERR_NOMEM, "grammar: out of memory");
    gp_t g = {
        .text = text ? text : "", .p = text ? text : "", .end = (text ? text : "") + len,
        .b = b, .max_repeat = lim && lim->max_repeat ? lim->max_repeat : GBNF_DEFAULT_MAX_REPEAT,
        .err = err, .errlen = errlen,
    };
    for (;;) {
        skip_space(&g, 1);
        if (g.p >= g.end || gp_stopped(&g))
            break;
        if (parse_rule(&g) != 0)
            break;
    }
    free(g.defined.ids);
    if (g.rc) {
        gb_destroy(b);
        return g.rc;
    }
    if (!gb_failed(b) && !g.have_root) {
        gb_destroy(b);
        return err_set(err, errlen, ERR_INVALID, "grammar: no rule named 'root'");
    }
    /* A builder failure (a cap) is reported by gb_finish, which goes first with it. */
    uint32_t root = gb_failed(b) ? GB_NONE : gb_named(b, "root", 4);
    return gb_finish(b, root, out, err, errlen);
}
