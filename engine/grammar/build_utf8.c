/*
 * build_utf8.c - gb_codepoints: a set of code point ranges as a rule of
 * UTF-8 byte-class sequences.
 *
 * The set is normalised (clipped, surrogates removed, merged, negated if
 * asked) into sorted disjoint ranges; each range is cut at the UTF-8
 * length boundaries and then split until every piece is a product of
 * byte ranges, one per encoded byte (the standard construction: a range
 * lo..hi of n-byte characters is a product when, for each trailing byte
 * position, lo's trailing bits are all 0 and hi's all 1 wherever lo and
 * hi differ above them).
 */
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "base/utf8.h"
#include "engine/grammar/grammar_impl.h"

#define CP_MAX 0x10FFFFu
#define SURR_LO 0xD800u
#define SURR_HI 0xDFFFu
#define SPLIT_DEPTH 16          /* each split makes one side aligned: depth <= 2 * 3 */

typedef struct { uint32_t lo, hi; } cprange_t;

static int cmp_range(const void *a, const void *b)
{
    const cprange_t *x = a, *y = b;
    return x->lo < y->lo ? -1 : x->lo > y->lo;
}

/* Append lo..hi minus the surrogates to r (room for 2 more). */
static size_t add_clipped(cprange_t *r, size_t n, uint32_t lo, uint32_t hi)
{
    if (hi > CP_MAX)
        hi = CP_MAX;
    if (lo > hi)
        return n;
    if (lo < SURR_LO && hi >= SURR_LO)
        r[n++] = (cprange_t){ lo, SURR_LO - 1 };
    else if (lo < SURR_LO)
        r[n++] = (cprange_t){ lo, hi };
    if (hi > SURR_HI)
        r[n++] = (cprange_t){ lo > SURR_HI ? lo : SURR_HI + 1, hi };
    return n;
}

/* lo..hi, all of one encoded length n, as alternatives of rule. */
static void split(gbuild_t *b, uint32_t rule, uint32_t lo, uint32_t hi, size_t n, int depth)
{
    if (b->failed)
        return;
    if (depth > SPLIT_DEPTH) {
        gb_fail(b, ERR_INVALID, "grammar: code point range split too deep (internal)");
        return;
    }
    for (size_t i = 1; i < n; i++) {
        uint32_t m = (1u << (6 * i)) - 1;
        if ((lo & ~m) == (hi & ~m))
            continue;
        if ((lo & m) != 0) {
            split(b, rule, lo, lo | m, n, depth + 1);
            split(b, rule, (lo | m) + 1, hi, n, depth + 1);
            return;
        }
        if ((hi & m) != m) {
            split(b, rule, lo, (hi & ~m) - 1, n, depth + 1);
            split(b, rule, hi & ~m, hi, n, depth + 1);
            return;
        }
    }
    char a[4], z[4];
    utf8_encode(lo, a);
    utf8_encode(hi, z);
    gelem_t e[4];
    for (size_t i = 0; i < n; i++)
        e[i] = ge_bytes(gb_range(b, (uint8_t)a[i], (uint8_t)z[i]));
    gb_alt(b, rule, e, n);
}

uint32_t gb_codepoints(gbuild_t *b, const uint32_t (*r)[2], size_t n, int negate)
{
    if (b->failed)
        return GB_NONE;
    if (n > b->lim.max_elements) {
        gb_fail(b, ERR_FULL, "grammar: %zu code point ranges is over max_elements", n);
        return GB_NONE;
    }
    cprange_t *v = malloc((2 * n + 2) * sizeof *v);
    if (v == NULL) {
        gb_fail(b, ERR_NOMEM, "grammar: out of memory");
        return GB_NONE;
    }
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        k = add_clipped(v, k, r[i][0], r[i][1]);
    qsort(v, k, sizeof *v, cmp_range);
    size_t m = 0;               /* merge overlapping and adjacent ranges */
    for (size_t i = 0; i < k; i++) {
        if (m > 0 && v[i].lo <= v[m - 1].hi + 1) {
            if (v[i].hi > v[m - 1].hi)
                v[m - 1].hi = v[i].hi;
        } else {
            v[m++] = v[i];
        }
    }
    if (negate) {               /* the complement within 0..CP_MAX, then drop the surrogates */
        cprange_t *w = malloc((2 * m + 4) * sizeof *w);
        if (w == NULL) {
            free(v);
            gb_fail(b, ERR_NOMEM, "grammar: out of memory");
            return GB_NONE;
        }
        size_t j = 0;
        uint32_t next = 0;
        for (size_t i = 0; i < m; i++) {
            if (v[i].lo > next)
                j = add_clipped(w, j, next, v[i].lo - 1);
            next = v[i].hi + 1;
        }
        if (next <= CP_MAX)
            j = add_clipped(w, j, next, CP_MAX);
        free(v);
        v = w;
        m = j;
    }
    if (m == 0) {
        free(v);
        gb_fail(b, ERR_INVALID, "grammar: a character class that matches no character");
        return GB_NONE;
    }
    static const uint32_t len_hi[4] = { 0x7F, 0x7FF, 0xFFFF, CP_MAX };
    uint32_t rule = gb_rule(b, NULL);
    for (size_t i = 0; i < m && !b->failed; i++) {
        uint32_t lo = v[i].lo;
        for (size_t l = 0; l < 4 && lo <= v[i].hi; l++) {
            if (lo > len_hi[l])
                continue;
            uint32_t hi = v[i].hi < len_hi[l] ? v[i].hi : len_hi[l];
            split(b, rule, lo, hi, l + 1, 0);
            lo = hi + 1;
        }
    }
    free(v);
    return b->failed ? GB_NONE : rule;
}
