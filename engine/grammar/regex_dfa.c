/*
 * regex_dfa.c - a regex syntax tree to a DFA over bytes.
 *
 * First a Thompson NFA over bytes: each code point set becomes the
 * alternation of the UTF-8 byte-range sequences that spell it (the
 * surrogates U+D800..U+DFFF are never spelled), and x{m,n} becomes m
 * copies of x followed by n-m nested optional copies.  The NFA is capped at
 * RX_MAX_NFA states, checked before each state is made, so a huge counted
 * repetition fails fast.  Then the subset construction: a DFA state is the
 * set of the NFA's byte and match states in an epsilon closure; the bytes
 * leaving it are cut into intervals at every range boundary of its
 * members, and each interval's target set is computed once.  A DFA has no
 * backtracking, so (a|a)*b or (a*)* cost what their DFA costs (a few
 * states); the caps (max_states, RX_MAX_WORK) bound the rest.
 */
#include "regex.h"

#include <stdlib.h>
#include <string.h>

#include "base/err.h"

#define NIL UINT32_MAX

enum { NS_EPS = 0, NS_BYTE = 1, NS_MATCH = 2 };

typedef struct {
    uint8_t kind, lo, hi;       /* NS_BYTE: the bytes lo..hi lead to out */
    uint32_t out, out2;         /* NS_EPS: empty moves to out and out2 (NIL: none) */
} nstate_t;

typedef struct {
    const rx_tree_t *t;
    nstate_t *s;
    uint32_t n, cap;
    int rc;
    char *err;
    size_t errlen;
} nfa_t;

/* ------------------------------------------------------------------ NFA */

static uint32_t nfa_new(nfa_t *a, int kind, uint8_t lo, uint8_t hi, uint32_t out, uint32_t out2)
{
    if (a->rc)
        return NIL;
    if (a->n >= RX_MAX_NFA) {
        a->rc = err_set(a->err, a->errlen, ERR_FULL,
                        "regex: more than %d NFA states (a counted repetition too large?)", RX_MAX_NFA);
        return NIL;
    }
    if (rx_grow(&a->s, &a->cap, a->n + 1, sizeof a->s[0])) {
        a->rc = err_set(a->err, a->errlen, ERR_NOMEM, "regex: out of memory");
        return NIL;
    }
    a->s[a->n] = (nstate_t){ (uint8_t)kind, lo, hi, out, out2 };
    return a->n++;
}

static size_t enc(uint32_t cp, uint8_t b[4])
{
    if (cp < 0x80) { b[0] = (uint8_t)cp; return 1; }
    if (cp < 0x800) { b[0] = (uint8_t)(0xC0 | cp >> 6); b[1] = (uint8_t)(0x80 | (cp & 0x3F)); return 2; }
    if (cp < 0x10000) {
        b[0] = (uint8_t)(0xE0 | cp >> 12);
        b[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
        b[2] = (uint8_t)(0x80 | (cp & 0x3F));
        return 3;
    }
    b[0] = (uint8_t)(0xF0 | cp >> 18);
    b[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3F));
    b[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
    b[3] = (uint8_t)(0x80 | (cp & 0x3F));
    return 4;
}

/*
 * The code points lo..hi as byte-range sequences, each a chain of NFA
 * states to next, joined to *alt by an epsilon split.  The range is cut
 * until both ends encode to the same length and every byte position below
 * the first differing one is full (0x80..0xBF), so that one sequence of
 * byte ranges spells exactly the range.  An explicit stack: at most a few
 * dozen pieces are pending.
 */
static void nfa_range(nfa_t *a, uint32_t lo, uint32_t hi, uint32_t next, uint32_t *alt)
{
    uint32_t st[64][2];
    int sp = 0;
    st[sp][0] = lo, st[sp][1] = hi, sp++;
    while (sp > 0 && !a->rc) {
        sp--;
        lo = st[sp][0], hi = st[sp][1];
        if (lo > hi)
            continue;
        uint32_t cut = NIL;
        if (lo <= 0xDFFF && hi >= 0xD800) {     /* the surrogates are never spelled */
            if (lo < 0xD800)
                st[sp][0] = lo, st[sp][1] = 0xD7FF, sp++;
            if (hi > 0xDFFF)
                st[sp][0] = 0xE000, st[sp][1] = hi, sp++;
            continue;
        }
        static const uint32_t lens[] = { 0x7F, 0x7FF, 0xFFFF };
        for (int k = 0; k < 3 && cut == NIL; k++)
            if (lo <= lens[k] && hi > lens[k])
                cut = lens[k];
        uint8_t bl[4], bh[4];
        size_t n = enc(lo, bl);
        for (size_t i = 1; i < n && cut == NIL; i++) {
            uint32_t m = (1u << (6 * i)) - 1;
            if ((lo & ~m) == (hi & ~m))
                continue;
            if ((lo & m) != 0)
                cut = lo | m;
            else if ((hi & m) != m)
                cut = (hi & ~m) - 1;
        }
        if (cut != NIL) {
            st[sp][0] = cut + 1, st[sp][1] = hi, sp++;
            st[sp][0] = lo, st[sp][1] = cut, sp++;
            continue;
        }
        enc(hi, bh);
        uint32_t cur = next;
        for (size_t i = n; i-- > 0;)
            cur = nfa_new(a, NS_BYTE, bl[i], bh[i], cur, NIL);
        *alt = *alt == NIL ? cur : nfa_new(a, NS_EPS, 0, 0, cur, *alt);
    }
}

/* The NFA of node x followed by state next; returns its start.  depth bounds the recursion. */
static uint32_t nfa_node(nfa_t *a, uint32_t x, uint32_t next, int depth)
{
    const rx_tree_t *t = a->t;
    if (a->rc)
        return NIL;
    if (depth > 4 * RX_MAX_DEPTH + 8) {         /* the parser bounds it; a second guard */
        a->rc = err_set(a->err, a->errlen, ERR_FULL, "regex: nested too deep");
        return NIL;
    }
    const rx_node_t *nd = &t->nodes[x];
    uint32_t cur = next, alt = NIL;
    switch (nd->kind) {
    case RX_SET:
        for (uint32_t k = 0; k < nd->n; k++)
            nfa_range(a, t->rng[nd->a + k][0], t->rng[nd->a + k][1], next, &alt);
        return alt != NIL ? alt : nfa_new(a, NS_EPS, 0, 0, NIL, NIL);   /* empty set: a dead end */
    case RX_CAT:
        for (uint32_t k = nd->n; k-- > 0;)
            cur = nfa_node(a, t->kids[nd->a + k], cur, depth + 1);
        return cur;
    case RX_ALT:
        for (uint32_t k = nd->n; k-- > 0;) {
            uint32_t s = nfa_node(a, t->kids[nd->a + k], next, depth + 1);
            alt = alt == NIL ? s : nfa_new(a, NS_EPS, 0, 0, s, alt);
        }
        return alt;
    case RX_REP:
        if (nd->max == RX_UNBOUNDED) {          /* loop: L -> x -> L, or L -> next */
            uint32_t l = nfa_new(a, NS_EPS, 0, 0, NIL, next);
            uint32_t body = nfa_node(a, nd->a, l, depth + 1);
            if (a->rc)
                return NIL;
            a->s[l].out = body;
            cur = l;
        } else {                                /* (x(x(x)?)?)? for the optional copies */
            for (uint32_t k = nd->min; k < nd->max && !a->rc; k++)
                cur = nfa_new(a, NS_EPS, 0, 0, nfa_node(a, nd->a, cur, depth + 1), next);
        }
        for (uint32_t k = 0; k < nd->min && !a->rc; k++)
            cur = nfa_node(a, nd->a, cur, depth + 1);
        return cur;
    default:
        a->rc = err_set(a->err, a->errlen, ERR_INVALID, "regex: bad syntax tree");
        return NIL;
    }
}

/* ------------------------------------------------------------------ subset construction */

typedef struct {
    const nstate_t *s;
    uint32_t n_nfa, match;
    uint32_t *mark, stamp;      /* [n_nfa] */
    uint32_t *stack;            /* [n_nfa] */
    uint32_t *pool;             /* the member lists of all DFA states */
    uint32_t n_pool, cap_pool;
    uint32_t *off, *len;        /* [max_states] a DFA state's members: pool[off .. off+len) */
    uint32_t n_dfa, max_states;
    uint32_t *hash, hmask;      /* open addressing: DFA ids, NIL empty */
    uint64_t work;
} sub_t;

static int cmp_u32(const void *x, const void *y)
{
    uint32_t a = *(const uint32_t *)x, b = *(const uint32_t *)y;
    return a < b ? -1 : a > b;
}

/*
 * The byte and match states reachable by empty moves from seeds[0..n),
 * sorted, appended to the pool (not yet owned by a DFA state): returns
 * how many.
 */
static int closure(sub_t *c, const uint32_t *seeds, uint32_t n, uint32_t *count)
{
    uint32_t sp = 0, base = c->n_pool;
    c->stamp++;
    for (uint32_t k = 0; k < n; k++)
        if (seeds[k] != NIL)
            c->stack[sp++] = seeds[k];
    while (sp > 0) {
        uint32_t x = c->stack[--sp];
        if (c->mark[x] == c->stamp)
            continue;
        c->mark[x] = c->stamp;
        c->work++;
        const nstate_t *ns = &c->s[x];
        if (ns->kind != NS_EPS) {
            if (c->n_pool >= RX_MAX_POOL)
                return ERR_FULL;
            if (rx_grow(&c->pool, &c->cap_pool, c->n_pool + 1, sizeof c->pool[0]))
                return ERR_NOMEM;
            c->pool[c->n_pool++] = x;
            continue;
        }
        /* a state is pushed once per edge into it: the stack holds 2 * n_nfa + the seeds */
        if (ns->out2 != NIL && c->mark[ns->out2] != c->stamp)
            c->stack[sp++] = ns->out2;
        if (ns->out != NIL && c->mark[ns->out] != c->stamp)
            c->stack[sp++] = ns->out;
    }
    *count = c->n_pool - base;
    if (*count > 1)
        qsort(c->pool + base, *count, sizeof c->pool[0], cmp_u32);
    return 0;
}

static uint32_t hash_set(const uint32_t *m, uint32_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (uint32_t k = 0; k < n; k++)
        h = (h ^ m[k]) * 1099511628211ull;
    return (uint32_t)(h ^ (h >> 32));
}

/* The DFA state of the member list at the pool's end (dropped there when it exists): its id, or NIL when full. */
static uint32_t intern(sub_t *c, uint32_t base, uint32_t n)
{
    const uint32_t *m = c->pool + base;
    uint32_t h = hash_set(m, n) & c->hmask;
    for (;; h = (h + 1) & c->hmask) {
        uint32_t id = c->hash[h];
        if (id == NIL)
            break;
        if (c->len[id] == n && memcmp(c->pool + c->off[id], m, n * sizeof m[0]) == 0) {
            c->n_pool = base;
            return id;
        }
    }
    if (c->n_dfa >= c->max_states)
        return NIL;
    c->hash[h] = c->n_dfa;
    c->off[c->n_dfa] = base;
    c->len[c->n_dfa] = n;
    return c->n_dfa++;
}

static int sub_run(sub_t *c, rx_dfa_t *d, uint32_t start, char *err, size_t errlen)
{
    uint32_t n_edges = 0, cap_edges = 0, cnt;
    uint32_t *members = NULL, cap_members = 0, *seeds = NULL, cap_seeds = 0;
    int rc = ERR_NOMEM;
    if ((rc = closure(c, &start, 1, &cnt)) != 0)
        goto out;
    rc = ERR_NOMEM;
    intern(c, 0, cnt);
    for (uint32_t q = 0; q < c->n_dfa; q++) {
        d->first[q] = n_edges;
        uint32_t len = c->len[q];
        if (rx_grow(&members, &cap_members, len + 1, sizeof *members) ||
            rx_grow(&seeds, &cap_seeds, len + 1, sizeof *seeds)) {
            rc = ERR_NOMEM;
            goto out;
        }
        if (len)
            memcpy(members, c->pool + c->off[q], len * sizeof *members);
        uint8_t cuts[257] = { 0 };
        for (uint32_t k = 0; k < len; k++) {
            const nstate_t *ns = &c->s[members[k]];
            if (ns->kind == NS_MATCH) {
                d->accept[q] = 1;
            } else {
                cuts[ns->lo] = 1;
                cuts[ns->hi + 1] = 1;
            }
        }
        for (uint32_t lo = 0; lo < 256;) {
            uint32_t hi = lo;
            while (hi + 1 < 256 && !cuts[hi + 1])
                hi++;
            uint32_t ns_n = 0;
            for (uint32_t k = 0; k < len; k++) {
                const nstate_t *ns = &c->s[members[k]];
                if (ns->kind == NS_BYTE && ns->lo <= lo && lo <= ns->hi)
                    seeds[ns_n++] = ns->out;
            }
            c->work += len;
            if (c->work > RX_MAX_WORK) {
                rc = err_set(err, errlen, ERR_FULL, "regex: too complex (more than %u steps to compile)",
                             RX_MAX_WORK);
                goto out;
            }
            if (ns_n > 0) {
                uint32_t base = c->n_pool;
                if ((rc = closure(c, seeds, ns_n, &cnt)) != 0)
                    goto out;
                if (cnt == 0) {
                    c->n_pool = base;
                } else {
                    uint32_t to = intern(c, base, cnt);
                    if (to == NIL) {
                        rc = err_set(err, errlen, ERR_FULL, "regex: more than %u DFA states", c->max_states);
                        goto out;
                    }
                    if (n_edges > d->first[q] && d->edges[n_edges - 1].to == to &&
                        d->edges[n_edges - 1].hi + 1u == lo) {
                        d->edges[n_edges - 1].hi = (uint8_t)hi;
                    } else {
                        if (rx_grow(&d->edges, &cap_edges, n_edges + 1, sizeof d->edges[0])) {
                            rc = ERR_NOMEM;
                            goto out;
                        }
                        d->edges[n_edges++] = (rx_edge_t){ (uint8_t)lo, (uint8_t)hi, to };
                    }
                }
            }
            lo = hi + 1;
        }
    }
    d->first[c->n_dfa] = n_edges;
    d->n_states = c->n_dfa;
    rc = 0;
out:
    free(members);
    free(seeds);
    if (rc == ERR_NOMEM)
        err_set(err, errlen, rc, "regex: out of memory");
    else if (rc == ERR_FULL && c->n_pool >= RX_MAX_POOL)
        err_set(err, errlen, rc, "regex: too complex (DFA state sets over %u NFA states)", RX_MAX_POOL);
    return rc;
}

int rx_dfa_build(rx_dfa_t *d, const rx_tree_t *t, uint32_t max_states, char *err, size_t errlen)
{
    memset(d, 0, sizeof *d);
    if (max_states == 0 || max_states > (1u << 20))
        return err_set(err, errlen, ERR_INVALID, "regex: bad state cap %u", max_states);
    nfa_t a = { .t = t, .err = err, .errlen = errlen };
    uint32_t match = nfa_new(&a, NS_MATCH, 0, 0, NIL, NIL);
    uint32_t start = nfa_node(&a, t->root, match, 0);
    if (a.rc) {
        free(a.s);
        return a.rc;
    }
    sub_t c = { .s = a.s, .n_nfa = a.n, .match = match, .max_states = max_states };
    uint32_t hsize = 1;
    while (hsize < 2 * max_states)
        hsize *= 2;
    c.hmask = hsize - 1;
    c.mark = calloc(a.n, sizeof *c.mark);
    c.stack = malloc((size_t)a.n * 3 * sizeof *c.stack);
    c.off = malloc((size_t)max_states * sizeof *c.off);
    c.len = malloc((size_t)max_states * sizeof *c.len);
    c.hash = malloc((size_t)hsize * sizeof *c.hash);
    d->accept = calloc(max_states, 1);
    d->first = calloc((size_t)max_states + 1, sizeof *d->first);
    int rc;
    if (!c.mark || !c.stack || !c.off || !c.len || !c.hash || !d->accept || !d->first) {
        rc = err_set(err, errlen, ERR_NOMEM, "regex: out of memory");
    } else {
        memset(c.hash, 0xFF, (size_t)hsize * sizeof *c.hash);
        rc = sub_run(&c, d, start, err, errlen);
    }
    free(c.mark);
    free(c.stack);
    free(c.off);
    free(c.len);
    free(c.hash);
    free(c.pool);
    free(a.s);
    if (!rc)
        rc = rx_dfa_prune(d, err, errlen);
    if (rc)
        rx_dfa_close(d);   /* a failed build leaves nothing to free */
    return rc;
}

int rx_compile(rx_dfa_t *d, const char *re, size_t len, unsigned flags, uint32_t max_states,
               char *err, size_t errlen)
{
    rx_tree_t t;
    memset(d, 0, sizeof *d);
    int rc = rx_parse(&t, re, len, flags, err, errlen);
    if (!rc)
        rc = rx_dfa_build(d, &t, max_states, err, errlen);
    rx_tree_close(&t);
    return rc;
}

/* ------------------------------------------------------------------ the DFA */

void rx_dfa_close(rx_dfa_t *d)
{
    if (!d)
        return;
    free(d->accept);
    free(d->first);
    free(d->edges);
    memset(d, 0, sizeof *d);
}

int rx_dfa_match(const rx_dfa_t *d, const void *s, size_t n)
{
    const uint8_t *p = s;
    uint32_t q = 0;
    if (d->n_states == 0)
        return 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t to = NIL;
        for (uint32_t e = d->first[q]; e < d->first[q + 1]; e++)
            if (d->edges[e].lo <= p[i] && p[i] <= d->edges[e].hi) {
                to = d->edges[e].to;
                break;
            }
        if (to == NIL)
            return 0;
        q = to;
    }
    return d->accept[q];
}

int rx_dfa_prune(rx_dfa_t *d, char *err, size_t errlen)
{
    uint32_t n = d->n_states, n_e = n ? d->first[n] : 0;
    uint32_t *rfirst = calloc((size_t)n + 2, sizeof *rfirst);
    uint32_t *rsrc = malloc(((size_t)n_e + 1) * sizeof *rsrc);
    uint32_t *id = malloc(((size_t)n + 1) * sizeof *id);
    uint32_t *queue = malloc(((size_t)n + 1) * sizeof *queue);
    uint8_t *acc = NULL;
    uint32_t *first = NULL;
    rx_edge_t *edges = NULL;
    int rc = ERR_NOMEM;
    if (!rfirst || !rsrc || !id || !queue)
        goto out;
    /* reverse edges (sources of each target, CSR), then a walk back from the accepting states */
    for (uint32_t e = 0; e < n_e; e++)
        rfirst[d->edges[e].to + 2]++;
    for (uint32_t q = 0; q < n; q++)
        rfirst[q + 2] += rfirst[q + 1];
    for (uint32_t q = 0; q < n; q++)
        for (uint32_t e = d->first[q]; e < d->first[q + 1]; e++)
            rsrc[rfirst[d->edges[e].to + 1]++] = q;
    uint32_t head = 0, tail = 0;
    for (uint32_t q = 0; q < n; q++) {
        id[q] = d->accept[q] ? 1 : 0;
        if (id[q])
            queue[tail++] = q;
    }
    while (head < tail) {
        uint32_t q = queue[head++];
        for (uint32_t k = rfirst[q]; k < rfirst[q + 1]; k++)
            if (!id[rsrc[k]]) {
                id[rsrc[k]] = 1;
                queue[tail++] = rsrc[k];
            }
    }
    if (n == 0 || !id[0]) {
        rc = err_set(err, errlen, ERR_INVALID, "regex: the pattern matches nothing");
        goto out;
    }
    uint32_t m = 0, m_e = 0;
    for (uint32_t q = 0; q < n; q++)
        id[q] = id[q] ? m++ : NIL;
    acc = calloc(m, 1);
    first = calloc((size_t)m + 1, sizeof *first);
    edges = malloc(((size_t)n_e + 1) * sizeof *edges);
    if (!acc || !first || !edges)
        goto out;
    for (uint32_t q = 0; q < n; q++) {
        if (id[q] == NIL)
            continue;
        acc[id[q]] = d->accept[q];
        first[id[q]] = m_e;
        for (uint32_t e = d->first[q]; e < d->first[q + 1]; e++) {
            rx_edge_t x = d->edges[e];
            if (id[x.to] == NIL)
                continue;
            x.to = id[x.to];
            if (m_e > first[id[q]] && edges[m_e - 1].to == x.to && edges[m_e - 1].hi + 1u == x.lo)
                edges[m_e - 1].hi = x.hi;
            else
                edges[m_e++] = x;
        }
    }
    first[m] = m_e;
    free(d->accept);
    free(d->first);
    free(d->edges);
    d->accept = acc, d->first = first, d->edges = edges, d->n_states = m;
    acc = NULL, first = NULL, edges = NULL;
    rc = 0;
out:
    if (rc == ERR_NOMEM)
        err_set(err, errlen, rc, "regex: out of memory");
    free(rfirst);
    free(rsrc);
    free(id);
    free(queue);
    free(acc);
    free(first);
    free(edges);
    return rc;
}
