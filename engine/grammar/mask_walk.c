/*
 * mask_walk.c - gm_mask's trie walk through the matcher's state DFA
 * (mask_dfa.c), and the loop sets that let it skip most of the trie
 * inside strings.
 *
 * The walk: st[d] is the DFA state after the first d bytes of the
 * current trie path, so a trie node costs one look-up in the DFA's
 * next[] once its transition is known.
 *
 * Loop sets.  Inside a JSON string most bytes take the state s0 to one
 * same state: s0 itself for an unbounded string (the character loop),
 * the state one character further for a string with maxLength.  Call
 * that byte set B and chain[d] the state after any d bytes of B; when
 * chain[d] is the same whichever bytes of B were taken, for every d up
 * to the longest token, the tokens made only of bytes of B are allowed
 * exactly up to the length where the chain dies.  Those tokens, and the
 * exits (the trie nodes whose path is some bytes of B then one byte
 * not in B), depend only on B and the vocabulary: the vocabulary keeps
 * them (gloop_t, one byte-only trie walk, made on first use), and the
 * walk only descends from the exits, from chain[depth - 1].
 *
 * Threads: a walk runs on the thread that owns the matcher; the loop
 * list of a vocabulary is shared and locked (vocab->lock), its entries
 * never move nor change once listed.
 */
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "engine/grammar/grammar_impl.h"

#define GVOCAB_LOOP_MIN 32      /* a byte group smaller than this: no fast path */

struct gloop {
    uint8_t set[32];            /* B */
    uint32_t *mask;             /* [mask words] the tokens of B+ */
    int64_t count;
    int32_t *by_len;            /* the same tokens by length: by_len[len_off[L] .. len_off[L + 1]) */
    uint32_t *len_off;          /* [max_depth + 2] */
    uint32_t *exits;  uint32_t n_exits;     /* in preorder */
};

/* ------------------------------------------------------------------ loop sets */

void gloop_free(gloop_t *l)
{
    if (l == NULL)
        return;
    free(l->mask);
    free(l->by_len);
    free(l->len_off);
    free(l->exits);
    free(l);
}

/*
 * Visit the nodes of B+ in preorder: pass 0 marks the mask, counts the
 * tokens per length and lists the exits; pass 1 fills by_len.
 */
static int loop_scan(const gvocab_t *v, gloop_t *l, int pass, uint32_t *fill)
{
    uint32_t cap = 0;
    for (uint32_t i = 1; i < v->n_nodes;) {
        if (gclass_has(l->set, v->byte[i])) {
            uint32_t n = v->tok_off[i + 1] - v->tok_off[i];
            if (pass == 0) {
                l->count += gvocab_set_tokens(v, i, l->mask);
                l->len_off[v->depth[i] + 1] += n;
            } else {
                memcpy(l->by_len + fill[v->depth[i]], v->toks + v->tok_off[i], (size_t)n * sizeof *l->by_len);
                fill[v->depth[i]] += n;
            }
            i++;
            continue;
        }
        if (pass == 0) {
            if (l->n_exits == cap) {
                cap = cap ? cap * 2 : 256;
                uint32_t *e = realloc(l->exits, (size_t)cap * sizeof *e);
                if (e == NULL)
                    return ERR_NOMEM;
                l->exits = e;
            }
            l->exits[l->n_exits++] = i;
        }
        i = v->skip[i];
    }
    return 0;
}

/* The loop entry of set (two byte-only walks of the trie); NULL when memory is short. */
static gloop_t *loop_make(const gvocab_t *v, const uint8_t set[32])
{
    gloop_t *l = calloc(1, sizeof *l);
    uint32_t *fill = NULL;
    if (l == NULL)
        return NULL;
    memcpy(l->set, set, 32);
    l->mask = calloc(gvocab_mask_words(v), sizeof *l->mask);
    l->len_off = calloc((size_t)v->max_depth + 2, sizeof *l->len_off);
    if (l->mask == NULL || l->len_off == NULL || loop_scan(v, l, 0, NULL) < 0)
        goto fail;
    for (uint32_t d = 1; d <= v->max_depth + 1; d++)
        l->len_off[d] += l->len_off[d - 1];
    l->by_len = malloc((size_t)(l->count ? l->count : 1) * sizeof *l->by_len);
    fill = malloc(((size_t)v->max_depth + 1) * sizeof *fill);
    if (l->by_len == NULL || fill == NULL)
        goto fail;
    memcpy(fill, l->len_off, ((size_t)v->max_depth + 1) * sizeof *fill);
    loop_scan(v, l, 1, fill);
    free(fill);
    return l;
fail:
    free(fill);
    gloop_free(l);
    return NULL;
}

/*
 * The loop entry of set, made on first use; NULL when memory is short or
 * GVOCAB_MAX_LOOPS sets are held (the caller walks without it).  The
 * walk that makes one runs unlocked; a second thread making the same
 * set meanwhile keeps the first one listed.
 */
static const gloop_t *loop_get(const gvocab_t *cv, const uint8_t set[32])
{
    gvocab_t *v = (gvocab_t *)cv;   /* the loop list is the one mutable, locked part */
    const gloop_t *keep = NULL;
    pthread_mutex_lock(&v->lock);
    for (uint32_t i = 0; i < v->n_loops && keep == NULL; i++)
        if (memcmp(v->loops[i]->set, set, 32) == 0)
            keep = v->loops[i];
    int full = v->n_loops >= GVOCAB_MAX_LOOPS;
    pthread_mutex_unlock(&v->lock);
    if (keep != NULL || full)
        return keep;
    gloop_t *l = loop_make(v, set);
    if (l == NULL)
        return NULL;
    pthread_mutex_lock(&v->lock);
    for (uint32_t i = 0; i < v->n_loops && keep == NULL; i++)
        if (memcmp(v->loops[i]->set, set, 32) == 0)
            keep = v->loops[i];
    if (keep == NULL && v->n_loops < GVOCAB_MAX_LOOPS) {
        v->loops[v->n_loops++] = l;
        keep = l;
        l = NULL;
    }
    pthread_mutex_unlock(&v->lock);
    gloop_free(l);
    return keep;
}

static int cmp_u16(const void *a, const void *b)
{
    uint16_t x = *(const uint16_t *)a, y = *(const uint16_t *)b;
    return (x > y) - (x < y);
}

/*
 * The chain of DFA state s0 (m's top level): into set the byte group B,
 * the largest set of bytes taking s0 to one same live state, and into
 * chain[0 .. max_depth] the states after d bytes of B.  *live: the
 * longest length whose state is live (max_depth when the chain never
 * dies), or -1 when there is no usable chain (B under GVOCAB_LOOP_MIN
 * bytes, or some depth where bytes of B part ways).  0 or a negative
 * code of gdfa_step.
 */
static int chain_of(gmatch_t *m, gdfa_t *d, const gvocab_t *v, uint32_t s0, uint8_t set[32],
                    uint16_t *chain, int64_t *live)
{
    uint8_t cand[32];
    uint16_t to[256], sorted[256];
    int n = 0;
    gm_top_bytes(m, cand);
    for (int k = 0; k < 32; k++)
        n += __builtin_popcount(cand[k]);
    *live = -1;
    if (n < (int)GVOCAB_LOOP_MIN)
        return 0;
    n = 0;
    for (unsigned c = 0; c < 256; c++) {
        to[c] = GDFA_DEAD;
        if (!gclass_has(cand, c))
            continue;
        int t = gdfa_step(d, m, s0, (uint8_t)c);
        if (t < 0)
            return t;
        to[c] = (uint16_t)t;
        if (t != GDFA_DEAD)
            sorted[n++] = (uint16_t)t;
    }
    qsort(sorted, (size_t)n, sizeof *sorted, cmp_u16);
    uint16_t best = GDFA_DEAD;
    int best_n = 0;
    for (int i = 0, j; i < n; i = j) {
        for (j = i; j < n && sorted[j] == sorted[i]; j++)
            ;
        if (j - i > best_n) {
            best_n = j - i;
            best = sorted[i];
        }
    }
    if (best_n < (int)GVOCAB_LOOP_MIN)
        return 0;
    memset(set, 0, 32);
    unsigned first = 256;
    for (unsigned c = 0; c < 256; c++)
        if (to[c] == best && best != GDFA_DEAD) {
            set[c >> 3] |= (uint8_t)(1u << (c & 7));
            if (first == 256)
                first = c;
        }
    chain[0] = (uint16_t)s0;
    chain[1] = best;
    for (uint32_t k = 1; k < v->max_depth; k++) {
        if (chain[k] == chain[k - 1]) {         /* a loop: the same state from here on */
            for (uint32_t j = k + 1; j <= v->max_depth; j++)
                chain[j] = chain[k];
            *live = v->max_depth;
            return 0;
        }
        int y = gdfa_step(d, m, chain[k], (uint8_t)first);
        for (unsigned c = first + 1; c < 256 && y >= 0; c++)
            if (gclass_has(set, c)) {
                int t = gdfa_step(d, m, chain[k], (uint8_t)c);
                if (t < 0)
                    y = t;
                else if (t != y)
                    return 0;
            }
        if (y < 0)
            return y;
        chain[k + 1] = (uint16_t)y;
        if (y == GDFA_DEAD) {
            *live = k;
            return 0;
        }
    }
    *live = v->max_depth;
    return 0;
}

/* ------------------------------------------------------------------ the walk */

/*
 * The trie nodes [i0, i1) (whole subtrees) through the DFA, the state of
 * i0's parent in st[depth[i0] - 1].  The count of tokens marked, or a
 * negative code of gdfa_step.
 */
static int64_t walk_range(gmatch_t *m, gdfa_t *d, const gvocab_t *v, uint16_t *st, uint32_t i0,
                          uint32_t i1, uint32_t *mask)
{
    int64_t count = 0;
    const uint16_t *next = gdfa_next_table(d);
    for (uint32_t i = i0; i < i1;) {
        uint32_t s = st[v->depth[i] - 1];
        int t = next[(size_t)s * 256 + v->byte[i]];
        if (t == GDFA_UNKNOWN) {
            t = gdfa_step(d, m, s, v->byte[i]);
            if (t < 0)
                return t;
            next = gdfa_next_table(d);
        }
        if (t == GDFA_DEAD) {
            i = v->skip[i];
            continue;
        }
        st[v->depth[i]] = (uint16_t)t;
        count += gvocab_set_tokens(v, i, mask);
        i++;
    }
    return count;
}

/*
 * The tokens of l up to live bytes long (B's tokens are none of the end
 * tokens nor any token below an exit, so bits may be cleared), and the
 * walks from its exits.
 */
static int64_t walk_loop(gmatch_t *m, gdfa_t *d, const gvocab_t *v, const gloop_t *l, const uint16_t *chain,
                         uint32_t live, uint16_t *st, uint32_t *mask)
{
    uint32_t cut = l->len_off[(live < v->max_depth ? live : v->max_depth) + 1];  /* tokens of 1..live bytes */
    int64_t count = cut - l->len_off[1];
    if (cut - l->len_off[1] < l->count / 2) {
        for (uint32_t k = l->len_off[1]; k < cut; k++)
            mask[l->by_len[k] >> 5] |= 1u << (l->by_len[k] & 31);
    } else {                    /* most of them: all, less the longer ones */
        size_t words = gvocab_mask_words(v);
        for (size_t w = 0; w < words; w++)
            mask[w] |= l->mask[w];
        for (uint32_t k = cut; k < l->len_off[v->max_depth + 1]; k++)
            mask[l->by_len[k] >> 5] &= ~(1u << (l->by_len[k] & 31));
    }
    for (uint32_t k = 0; k < l->n_exits; k++) {
        uint32_t e = l->exits[k], above = v->depth[e] - 1;
        if (above > live)
            continue;           /* the bytes of B before it already end the language */
        st[above] = chain[above];
        int64_t r = walk_range(m, d, v, st, e, v->skip[e], mask);
        if (r < 0)
            return r;
        count += r;
    }
    return count;
}

int64_t gvocab_walk_dfa(gmatch_t *m, gdfa_t *d, const gvocab_t *v, uint32_t *mask)
{
    int s0 = gdfa_intern(d, m);
    if (s0 < 0)
        return s0;
    uint16_t *st = malloc(((size_t)v->max_depth + 1) * 2 * sizeof *st);
    if (st == NULL)
        return ERR_NOMEM;
    uint16_t *chain = st + v->max_depth + 1;
    int64_t live = -1, count;
    const gloop_t *l = NULL;
    uint8_t set[32];
    int rc = s0 != GDFA_DEAD && v->max_depth > 0 ? chain_of(m, d, v, (uint32_t)s0, set, chain, &live) : 0;
    if (rc < 0) {
        free(st);
        return rc;
    }
    if (live >= 0)
        l = loop_get(v, set);
    if (l != NULL) {
        count = walk_loop(m, d, v, l, chain, (uint32_t)live, st, mask);
    } else {
        st[0] = (uint16_t)s0;
        count = walk_range(m, d, v, st, 1, v->n_nodes, mask);
    }
    free(st);
    return count;
}
