/*
 * regex.c - a DFA (of a regex, regex_dfa.c, or of a choice trie, choice.c)
 * as right-linear rules of a gbuild_t, and the grammar.h entry points
 * regex_build, grammar_from_regex and grammar_from_choice.
 *
 * State S becomes the rule  S := c_1 T_1 | c_2 T_2 | ... | (empty, when S
 * accepts)  with one alternative per target T_i, c_i the class of the
 * bytes that lead there.  Two shortcuts keep the grammar small, which
 * matters for a trie: a target that accepts and has no way on (a final
 * state) ends the alternative with no reference, and a target with one
 * way in and one way on that does not accept (a chain) is inlined, its
 * class appended to the alternative.  A cycle cannot be all chain
 * states: the state where a path from the start enters it has two ways
 * in (or is the start, which is always a rule).
 */
#include "regex.h"

#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "grammar.h"

/* The targets of one state's edges in order of first appearance, each with its byte set. */
typedef struct {
    uint32_t n;
    uint32_t to[256];
    uint8_t set[256][32];
} groups_t;

static void state_groups(const rx_dfa_t *d, uint32_t q, groups_t *g)
{
    g->n = 0;
    for (uint32_t e = d->first[q]; e < d->first[q + 1]; e++) {
        const rx_edge_t *x = &d->edges[e];
        uint32_t k = 0;
        while (k < g->n && g->to[k] != x->to)
            k++;
        if (k == g->n) {
            g->to[g->n++] = x->to;
            memset(g->set[k], 0, 32);
        }
        for (uint32_t b = x->lo; b <= x->hi; b++)
            g->set[k][b / 8] |= (uint8_t)(1u << (b % 8));
    }
}

enum { K_RULE = 0, K_FINAL = 1, K_CHAIN = 2 };

uint32_t rx_dfa_emit(gbuild_t *b, const rx_dfa_t *d)
{
    uint32_t n = d->n_states, root = GB_NONE;
    uint32_t *indeg = calloc(n, sizeof *indeg), *rule = malloc((size_t)n * sizeof *rule);
    uint8_t *kind = malloc(n);
    gelem_t *el = NULL;
    size_t n_el_cap = 0;
    groups_t *g = malloc(sizeof *g);
    if (!indeg || !rule || !kind || !g) {
        gb_fail(b, ERR_NOMEM, "regex: out of memory");
        goto out;
    }
    for (uint32_t q = 0; q < n; q++) {          /* ways in: one per (source, target) pair */
        state_groups(d, q, g);
        for (uint32_t k = 0; k < g->n; k++)
            indeg[g->to[k]]++;
    }
    for (uint32_t q = 0; q < n; q++) {
        uint32_t n_out = d->first[q + 1] - d->first[q];
        state_groups(d, q, g);
        kind[q] = q == 0 ? K_RULE
                : d->accept[q] && n_out == 0 ? K_FINAL
                : !d->accept[q] && indeg[q] == 1 && g->n == 1 ? K_CHAIN : K_RULE;
        rule[q] = kind[q] == K_RULE ? gb_rule(b, NULL) : GB_NONE;
        if (kind[q] == K_RULE && rule[q] == GB_NONE)
            goto out;
    }
    for (uint32_t q = 0; q < n; q++) {
        if (kind[q] != K_RULE)
            continue;
        groups_t mine;
        state_groups(d, q, &mine);
        for (uint32_t k = 0; k < mine.n; k++) {
            size_t m = 0;
            uint32_t t = mine.to[k];
            const uint8_t *set = mine.set[k];
            for (;;) {
                if (m + 2 > n_el_cap) {
                    size_t c = n_el_cap ? n_el_cap * 2 : 64;
                    gelem_t *x = realloc(el, c * sizeof *x);
                    if (!x) {
                        gb_fail(b, ERR_NOMEM, "regex: out of memory");
                        goto out;
                    }
                    el = x, n_el_cap = c;
                }
                el[m++] = ge_bytes(gb_class(b, set));
                if (kind[t] != K_CHAIN)
                    break;
                state_groups(d, t, g);          /* one group: its class comes next */
                set = g->set[0];
                t = g->to[0];
            }
            if (kind[t] == K_RULE)
                el[m++] = ge_ref(rule[t]);
            gb_alt(b, rule[q], el, m);
        }
        if (d->accept[q])
            gb_alt(b, rule[q], NULL, 0);
        if (gb_failed(b))
            goto out;
    }
    root = rule[0];
out:
    free(indeg);
    free(rule);
    free(kind);
    free(el);
    free(g);
    return gb_failed(b) ? GB_NONE : root;
}

uint32_t regex_build(gbuild_t *b, const char *re, size_t len, unsigned flags)
{
    char err[ERR_MSG_MAX];
    rx_dfa_t d;
    if (gb_failed(b))
        return GB_NONE;
    int rc = rx_compile(&d, re, len, flags, REGEX_MAX_STATES, err, sizeof err);
    if (rc) {
        gb_fail(b, rc, "%s", err);
        return GB_NONE;
    }
    uint32_t root = rx_dfa_emit(b, &d);
    rx_dfa_close(&d);
    return root;
}

/*
 * The product of a DFA with a count of code points (a byte that is not a
 * UTF-8 continuation byte starts one): rule (q, k) is state q after k
 * code points, accepting where q does and min <= k; counts past max
 * (or, unbounded, past min) collapse.  Rules are made for the reachable
 * pairs only, at most REGEX_MAX_COUNTED of them.
 */
#define REGEX_MAX_COUNTED 20000u

typedef struct {
    gbuild_t *b;
    const rx_dfa_t *d;
    uint32_t min, top;          /* top: the largest count kept apart (max, or min when unbounded) */
    int bounded;
    uint32_t *rule;             /* [n_states * (top + 1)] GB_NONE = not made yet */
    uint32_t *queue;            /* pairs still to emit */
    size_t n_queue, n_made;
} counted_t;

static uint32_t counted_rule(counted_t *c, uint32_t q, uint32_t k)
{
    size_t i = (size_t)q * (c->top + 1) + k;
    if (c->rule[i] != GB_NONE)
        return c->rule[i];
    if (c->n_made >= REGEX_MAX_COUNTED) {
        gb_fail(c->b, ERR_FULL, "regex: a pattern with a length bound needs more than %u states",
                REGEX_MAX_COUNTED);
        return GB_NONE;
    }
    c->rule[i] = gb_rule(c->b, NULL);
    c->queue[c->n_queue++] = (uint32_t)i;
    c->n_made++;
    return c->rule[i];
}

uint32_t regex_build_counted(gbuild_t *b, const char *re, size_t len, unsigned flags, uint32_t min,
                             uint32_t max)
{
    char err[ERR_MSG_MAX];
    rx_dfa_t d;
    if (gb_failed(b))
        return GB_NONE;
    if (min > max || (max != GB_INF && max >= REGEX_MAX_COUNTED) || min >= REGEX_MAX_COUNTED) {
        gb_fail(b, ERR_FULL, "regex: length bounds %u..%u with a pattern are past the cap of %u", min,
                max, REGEX_MAX_COUNTED - 1);
        return GB_NONE;
    }
    int rc = rx_compile(&d, re, len, flags, REGEX_MAX_STATES, err, sizeof err);
    if (rc) {
        gb_fail(b, rc, "%s", err);
        return GB_NONE;
    }
    counted_t c = { .b = b, .d = &d, .min = min, .bounded = max != GB_INF };
    c.top = c.bounded ? max : min;
    size_t n_pairs = (size_t)d.n_states * (c.top + 1);
    uint32_t root = GB_NONE;
    if (n_pairs > (size_t)REGEX_MAX_COUNTED * 64) {
        gb_fail(b, ERR_FULL, "regex: a pattern of %u states with a length bound of %u is past the cap",
                d.n_states, c.top);
        goto out;
    }
    c.rule = malloc(n_pairs * sizeof *c.rule);
    c.queue = malloc((size_t)REGEX_MAX_COUNTED * sizeof *c.queue);
    if (c.rule == NULL || c.queue == NULL) {
        gb_fail(b, ERR_NOMEM, "regex: out of memory");
        goto out;
    }
    for (size_t i = 0; i < n_pairs; i++)
        c.rule[i] = GB_NONE;
    root = counted_rule(&c, 0, 0);
    for (size_t at = 0; at < c.n_queue && !gb_failed(b); at++) {
        uint32_t q = c.queue[at] / (c.top + 1), k = c.queue[at] % (c.top + 1);
        uint32_t self = c.rule[c.queue[at]];
        for (uint32_t e = d.first[q]; e < d.first[q + 1] && !gb_failed(b); e++) {
            const rx_edge_t *x = &d.edges[e];
            /* the edge's bytes, split into those that start a code point and continuation bytes */
            for (int cont = 0; cont < 2; cont++) {
                uint8_t set[32] = { 0 };
                int any = 0;
                for (uint32_t v = x->lo; v <= x->hi; v++)
                    if ((v >= 0x80 && v <= 0xBF) == cont) {
                        set[v / 8] |= (uint8_t)(1u << (v % 8));
                        any = 1;
                    }
                if (!any)
                    continue;
                uint32_t k2 = cont ? k : k + 1;
                if (k2 > c.top) {
                    if (c.bounded)
                        continue;       /* past max: this way is closed */
                    k2 = c.top;         /* unbounded: every count past min is alike */
                }
                uint32_t t = counted_rule(&c, x->to, k2);
                gelem_t el[2] = { ge_bytes(gb_class(b, set)), ge_ref(t) };
                gb_alt(b, self, el, 2);
            }
        }
        if (d.accept[q] && k >= min)
            gb_alt(b, self, NULL, 0);
    }
out:
    free(c.rule);
    free(c.queue);
    rx_dfa_close(&d);
    return gb_failed(b) ? GB_NONE : root;
}

int grammar_from_regex(const char *re, size_t len, const grammar_limits_t *lim,
                       grammar_t **out, char *err, size_t errlen)
{
    gbuild_t *b;
    *out = NULL;
    int rc = gb_create(&b, lim);
    if (rc)
        return err_set(err, errlen, rc, "regex: out of memory");
    uint32_t root = regex_build(b, re, len, 0);
    return gb_finish(b, root, out, err, errlen);
}

int grammar_from_choice(const char *json, size_t len, const grammar_limits_t *lim,
                        grammar_t **out, char *err, size_t errlen)
{
    rx_dfa_t d;
    *out = NULL;
    int rc = choice_dfa(&d, json, len, err, errlen);
    if (rc)
        return rc;
    gbuild_t *b;
    rc = gb_create(&b, lim);
    if (rc) {
        rx_dfa_close(&d);
        return err_set(err, errlen, rc, "guided_choice: out of memory");
    }
    uint32_t root = rx_dfa_emit(b, &d);
    rx_dfa_close(&d);
    return gb_finish(b, root, out, err, errlen);
}
