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
