/*
 * grammar.c - gb_finish (the checks that make a grammar safe to match,
 * and the frozen layout match.c walks), reference counting and
 * grammar_dump.
 *
 * The checks are linear worklist fixpoints over the rules (no recursion,
 * no pass-until-stable loops whose count depends on the input):
 *   productive  a rule with an alternative whose elements are all
 *               non-empty byte classes or productive rules; alternatives
 *               that use an unproductive rule are dropped, so that every
 *               state of the matcher can still reach an accepting one;
 *   nullable    a rule with an alternative of nullable rules only;
 *   left recursion  a cycle in "r may start with s" (s after a nullable
 *               prefix of an alternative of r), found by an iterative DFS.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/err.h"
#include "engine/grammar/grammar_impl.h"

/* ------------------------------------------------------------------ fixpoints */

static int class_empty(const gbuild_t *b, uint32_t c)
{
    for (int i = 0; i < 32; i++)
        if (b->classes[c][i])
            return 0;
    return 1;
}

/*
 * flag[r] = some kept alternative of r has all elements "ok", where a
 * byte class is ok when bytes_ok and not empty, and a reference when its
 * rule is flagged.  Linear: each alternative counts its unflagged
 * references; a rule that becomes flagged decrements its occurrences.
 * occ/occ_off: for each rule the alternatives referring to it (CSR).
 */
static int fixpoint(const gbuild_t *b, const uint8_t *keep, const uint32_t *occ,
                    const uint32_t *occ_off, int bytes_ok, uint8_t *flag)
{
    uint32_t *left = calloc(b->n_alts ? b->n_alts : 1, sizeof *left);
    uint32_t *work = malloc((b->n_rules ? b->n_rules : 1) * sizeof *work);
    if (left == NULL || work == NULL) {
        free(left);
        free(work);
        return ERR_NOMEM;
    }
    uint32_t n_work = 0;
    memset(flag, 0, b->n_rules);
    for (uint32_t a = 0; a < b->n_alts; a++) {
        const galt_t *al = &b->alts[a];
        int dead = !keep[a];
        for (uint32_t i = 0; i < al->n && !dead; i++) {
            gelem_t e = b->elems[al->first + i];
            if (e.kind == GE_REF)
                left[a]++;
            else if (!bytes_ok || class_empty(b, e.v))
                dead = 1;
        }
        if (dead)
            left[a] = UINT32_MAX;
        else if (left[a] == 0 && !flag[al->rule]) {
            flag[al->rule] = 1;
            work[n_work++] = al->rule;
        }
    }
    while (n_work > 0) {
        uint32_t r = work[--n_work];
        for (uint32_t k = occ_off[r]; k < occ_off[r + 1]; k++) {
            uint32_t a = occ[k];
            if (left[a] == UINT32_MAX || left[a] == 0)
                continue;
            if (--left[a] == 0 && !flag[b->alts[a].rule]) {
                flag[b->alts[a].rule] = 1;
                work[n_work++] = b->alts[a].rule;
            }
        }
    }
    free(left);
    free(work);
    return 0;
}

/* occ/occ_off: the alternatives referring to each rule, once per reference. */
static int occurrences(const gbuild_t *b, uint32_t **occ, uint32_t **occ_off)
{
    uint32_t *off = calloc((size_t)b->n_rules + 1, sizeof *off);
    uint32_t *o = malloc((b->n_elems ? b->n_elems : 1) * sizeof *o);
    if (off == NULL || o == NULL) {
        free(off);
        free(o);
        return ERR_NOMEM;
    }
    for (uint32_t i = 0; i < b->n_elems; i++)
        if (b->elems[i].kind == GE_REF)
            off[b->elems[i].v + 1]++;
    for (uint32_t r = 0; r < b->n_rules; r++)
        off[r + 1] += off[r];
    uint32_t *fill = calloc((size_t)b->n_rules + 1, sizeof *fill);
    if (fill == NULL) {
        free(off);
        free(o);
        return ERR_NOMEM;
    }
    for (uint32_t a = 0; a < b->n_alts; a++)
        for (uint32_t i = 0; i < b->alts[a].n; i++) {
            gelem_t e = b->elems[b->alts[a].first + i];
            if (e.kind == GE_REF)
                o[off[e.v] + fill[e.v]++] = a;
        }
    free(fill);
    *occ = o;
    *occ_off = off;
    return 0;
}

/* ------------------------------------------------------------------ left recursion */

/*
 * A rule on a cycle of "may start with" edges, or GB_NONE.  Iterative
 * DFS (colour 1: on the path, 2: done) over the edges of kept
 * alternatives: the elements up to and including the first that is not
 * a nullable rule.
 */
static uint32_t left_recursive(const gbuild_t *b, const uint8_t *keep, const uint8_t *nullable,
                               int *err)
{
    uint32_t nr = b->n_rules;
    uint32_t *alt_off = calloc((size_t)nr + 1, sizeof *alt_off);
    uint32_t *alts = malloc((b->n_alts ? b->n_alts : 1) * sizeof *alts);
    uint8_t *colour = calloc(nr ? nr : 1, 1);
    uint32_t *st_rule = malloc((nr ? nr : 1) * sizeof *st_rule);
    uint64_t *st_pos = malloc((nr ? nr : 1) * sizeof *st_pos);   /* alt index << 32 | element */
    uint32_t found = GB_NONE;
    *err = 0;
    if (!alt_off || !alts || !colour || !st_rule || !st_pos) {
        *err = ERR_NOMEM;
        goto out;
    }
    for (uint32_t a = 0; a < b->n_alts; a++)
        alt_off[b->alts[a].rule + 1]++;
    for (uint32_t r = 0; r < nr; r++)
        alt_off[r + 1] += alt_off[r];
    uint32_t *fill = calloc(nr ? nr : 1, sizeof *fill);
    if (fill == NULL) {
        *err = ERR_NOMEM;
        goto out;
    }
    for (uint32_t a = 0; a < b->n_alts; a++)
        alts[alt_off[b->alts[a].rule] + fill[b->alts[a].rule]++] = a;
    free(fill);
    for (uint32_t s = 0; s < nr && found == GB_NONE; s++) {
        if (colour[s])
            continue;
        uint32_t depth = 0;
        st_rule[depth] = s;
        st_pos[depth++] = (uint64_t)alt_off[s] << 32;
        colour[s] = 1;
        while (depth > 0 && found == GB_NONE) {
            uint32_t r = st_rule[depth - 1];
            uint32_t k = (uint32_t)(st_pos[depth - 1] >> 32), i = (uint32_t)st_pos[depth - 1];
            if (k >= alt_off[r + 1]) {
                colour[r] = 2;
                depth--;
                continue;
            }
            const galt_t *al = &b->alts[alts[k]];
            if (!keep[alts[k]] || i >= al->n ||
                (i > 0 && !(b->elems[al->first + i - 1].kind == GE_REF &&
                            nullable[b->elems[al->first + i - 1].v]))) {
                st_pos[depth - 1] = (uint64_t)(k + 1) << 32;
                continue;
            }
            st_pos[depth - 1]++;
            gelem_t e = b->elems[al->first + i];
            if (e.kind != GE_REF)
                continue;
            if (colour[e.v] == 1)
                found = e.v;
            else if (colour[e.v] == 0) {
                colour[e.v] = 1;
                st_rule[depth] = e.v;
                st_pos[depth++] = (uint64_t)alt_off[e.v] << 32;
            }
        }
    }
out:
    free(alt_off);
    free(alts);
    free(colour);
    free(st_rule);
    free(st_pos);
    return found;
}

/* ------------------------------------------------------------------ gb_finish */

static const char *bname(const gbuild_t *b, uint32_t r, char *buf, size_t cap)
{
    if (b->rules[r].name != NULL)
        return err_show(buf, cap, b->rules[r].name);
    snprintf(buf, cap, "_%u", r);
    return buf;
}

/* The kept alternatives of b, frozen into g (names move over). */
static int freeze(gbuild_t *b, const uint8_t *keep, grammar_t *g)
{
    uint32_t n_alts = 0, n_elems = 0;
    for (uint32_t a = 0; a < b->n_alts; a++)
        if (keep[a]) {
            n_alts++;
            n_elems += b->alts[a].n + 1;
        }
    g->n_rules = b->n_rules;
    g->names = calloc(b->n_rules ? b->n_rules : 1, sizeof *g->names);
    g->rule_alt = calloc((size_t)b->n_rules + 1, sizeof *g->rule_alt);
    g->alt_start = malloc((n_alts ? n_alts : 1) * sizeof *g->alt_start);
    g->elems = malloc((n_elems ? n_elems : 1) * sizeof *g->elems);
    g->classes = malloc((b->n_classes ? b->n_classes : 1) * sizeof *g->classes);
    if (!g->names || !g->rule_alt || !g->alt_start || !g->elems || !g->classes)
        return ERR_NOMEM;
    for (uint32_t r = 0; r < b->n_rules; r++) {
        g->names[r] = b->rules[r].name;
        b->rules[r].name = NULL;
    }
    if (b->n_classes)
        memcpy(g->classes, b->classes, b->n_classes * sizeof *g->classes);
    g->n_classes = b->n_classes;
    for (uint32_t a = 0; a < b->n_alts; a++)
        if (keep[a])
            g->rule_alt[b->alts[a].rule + 1]++;
    for (uint32_t r = 0; r < b->n_rules; r++)
        g->rule_alt[r + 1] += g->rule_alt[r];
    /* Alternatives grouped by rule, in the order they were added. */
    uint32_t *fill = calloc(b->n_rules ? b->n_rules : 1, sizeof *fill);
    uint32_t *order = malloc((n_alts ? n_alts : 1) * sizeof *order);
    if (fill == NULL || order == NULL) {
        free(fill);
        free(order);
        return ERR_NOMEM;
    }
    for (uint32_t a = 0; a < b->n_alts; a++)
        if (keep[a])
            order[g->rule_alt[b->alts[a].rule] + fill[b->alts[a].rule]++] = a;
    uint32_t pos = 0;
    for (uint32_t k = 0; k < n_alts; k++) {
        const galt_t *al = &b->alts[order[k]];
        g->alt_start[k] = pos;
        if (al->n > 0)          /* b->elems is NULL when no alternative has elements */
            memcpy(g->elems + pos, b->elems + al->first, al->n * sizeof *g->elems);
        pos += al->n;
        g->elems[pos++] = (gelem_t){ GE_END, 0 };
    }
    free(fill);
    free(order);
    g->n_alts = n_alts;
    g->n_elems = n_elems;
    return 0;
}

int gb_finish(gbuild_t *b, uint32_t root, grammar_t **out, char *err, size_t errlen)
{
    char nm[80];
    int rc = 0;
    uint8_t *keep = NULL, *prod = NULL, *nullable = NULL;
    uint32_t *occ = NULL, *occ_off = NULL;
    grammar_t *g = NULL;
    *out = NULL;
    if (b == NULL)
        return err_set(err, errlen, ERR_INVALID, "grammar: no builder");
    if (b->failed) {
        rc = err_set(err, errlen, b->failed, "%s", b->msg);
        goto fail;
    }
    if (root >= b->n_rules) {
        rc = err_set(err, errlen, ERR_INVALID, "grammar: no root rule");
        goto fail;
    }
    for (uint32_t r = 0; r < b->n_rules; r++)
        if (b->rules[r].by_name && b->rules[r].n_alts == 0) {
            rc = err_set(err, errlen, ERR_INVALID, "grammar: rule '%s' is used but not defined",
                         bname(b, r, nm, sizeof nm));
            goto fail;
        }
    keep = malloc(b->n_alts ? b->n_alts : 1);
    prod = malloc(b->n_rules);
    nullable = malloc(b->n_rules);
    if (!keep || !prod || !nullable || occurrences(b, &occ, &occ_off) < 0)
        goto nomem;
    memset(keep, 1, b->n_alts);
    if (fixpoint(b, keep, occ, occ_off, 1, prod) < 0)
        goto nomem;
    if (!prod[root]) {
        rc = err_set(err, errlen, ERR_INVALID, "grammar: the grammar matches nothing (rule '%s')",
                     bname(b, root, nm, sizeof nm));
        goto fail;
    }
    for (uint32_t a = 0; a < b->n_alts; a++)
        for (uint32_t i = 0; i < b->alts[a].n; i++) {
            gelem_t e = b->elems[b->alts[a].first + i];
            if ((e.kind == GE_REF && !prod[e.v]) || (e.kind == GE_BYTES && class_empty(b, e.v)))
                keep[a] = 0;
        }
    if (fixpoint(b, keep, occ, occ_off, 0, nullable) < 0)
        goto nomem;
    int lerr;
    uint32_t lr = left_recursive(b, keep, nullable, &lerr);
    if (lerr < 0)
        goto nomem;
    if (lr != GB_NONE) {
        rc = err_set(err, errlen, ERR_INVALID, "grammar: rule '%s' is left-recursive",
                     bname(b, lr, nm, sizeof nm));
        goto fail;
    }
    g = calloc(1, sizeof *g);
    if (g == NULL)
        goto nomem;
    atomic_init(&g->refs, 1);
    gcache_init(&g->cache);
    g->root = root;
    if (freeze(b, keep, g) < 0)
        goto nomem;
    free(keep);
    free(prod);
    free(nullable);
    free(occ);
    free(occ_off);
    gb_destroy(b);
    *out = g;
    return 0;
nomem:
    rc = err_set(err, errlen, ERR_NOMEM, "grammar: out of memory");
fail:
    free(keep);
    free(prod);
    free(nullable);
    free(occ);
    free(occ_off);
    grammar_release(g);
    gb_destroy(b);
    return rc;
}

/* ------------------------------------------------------------------ references */

grammar_t *grammar_ref(grammar_t *g)
{
    atomic_fetch_add(&g->refs, 1);
    return g;
}

void grammar_release(grammar_t *g)
{
    if (g == NULL || atomic_fetch_sub(&g->refs, 1) != 1)
        return;
    gcache_close(&g->cache);
    for (uint32_t r = 0; g->names != NULL && r < g->n_rules; r++)
        free(g->names[r]);
    free(g->names);
    free(g->rule_alt);
    free(g->alt_start);
    free(g->elems);
    free(g->classes);
    free(g);
}

uint32_t grammar_n_rules(const grammar_t *g)
{
    return g->n_rules;
}

const char *grammar_rule_name(const grammar_t *g, uint32_t r, char *buf, size_t cap)
{
    if (r < g->n_rules && g->names[r] != NULL)
        return err_show(buf, cap, g->names[r]);
    snprintf(buf, cap, "_%u", r);
    return buf;
}

/* ------------------------------------------------------------------ dump */

static int put(buf_t *o, const char *s)
{
    return buf_append(o, s, strlen(s));
}

static void put_byte(char *t, size_t cap, unsigned c, int in_class)
{
    if (c == '\\' || c == '"' || (in_class && (c == ']' || c == '-' || c == '^')))
        snprintf(t, cap, "\\%c", c);
    else if (c >= 0x20 && c < 0x7F)
        snprintf(t, cap, "%c", c);
    else
        snprintf(t, cap, "\\x%02X", c);
}

/* A byte class as a quoted byte when it holds one, else as [ranges]. */
static int put_class(buf_t *o, const uint8_t set[32])
{
    char t[16];
    unsigned n = 0, only = 0;
    for (unsigned c = 0; c < 256; c++)
        if (gclass_has(set, c)) {
            n++;
            only = c;
        }
    if (n == 1) {
        put_byte(t, sizeof t, only, 0);
        return put(o, "\"") | put(o, t) | put(o, "\"");
    }
    int rc = put(o, "[");
    for (unsigned c = 0; c < 256; c++) {
        if (!gclass_has(set, c))
            continue;
        unsigned e = c;
        while (e + 1 < 256 && gclass_has(set, e + 1))
            e++;
        put_byte(t, sizeof t, c, 1);
        rc |= put(o, t);
        if (e > c) {
            put_byte(t, sizeof t, e, 1);
            rc |= put(o, "-") | put(o, t);
        }
        c = e;
    }
    return rc | put(o, "]");
}

char *grammar_dump(const grammar_t *g)
{
    buf_t o;
    char nm[80];
    int rc = 0;
    buf_init(&o);
    for (uint32_t r = 0; r < g->n_rules; r++) {
        if (g->rule_alt[r] == g->rule_alt[r + 1])
            continue;
        rc |= put(&o, grammar_rule_name(g, r, nm, sizeof nm));
        rc |= put(&o, r == g->root ? " (root) ::=" : " ::=");
        for (uint32_t a = g->rule_alt[r]; a < g->rule_alt[r + 1]; a++) {
            if (a > g->rule_alt[r])
                rc |= put(&o, " |");
            const gelem_t *e = g->elems + g->alt_start[a];
            if (e->kind == GE_END)
                rc |= put(&o, " \"\"");
            for (; e->kind != GE_END; e++) {
                rc |= put(&o, " ");
                if (e->kind == GE_REF)
                    rc |= put(&o, grammar_rule_name(g, e->v, nm, sizeof nm));
                else
                    rc |= put_class(&o, g->classes[e->v]);
            }
        }
        rc |= put(&o, "\n");
    }
    if (rc != 0 || o.data == NULL) {
        buf_close(&o);
        return rc == 0 ? strdup("") : NULL;
    }
    return o.data;
}
