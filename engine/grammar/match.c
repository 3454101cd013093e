/*
 * match.c - the parser state of one request: a set of stacks of grammar
 * positions, advanced byte by byte (llama.cpp-grammar style).
 *
 * A position is an index into the frozen grammar's elems.  A stack is a
 * hash-consed persistent node (pos, parent) in an arena owned by the
 * matcher: equal stacks have equal ids, so a state is a set of ids and
 * deduplicating stacks is comparing integers.  Node 0 is the empty stack
 * (the input so far is a whole string of the language).
 *
 * A state holds only stacks whose top is a byte class (and maybe node 0):
 * the closure of a stack expands rule references (pushing the return
 * position only when something follows the reference, so x* as
 * R := x R | empty runs in constant depth) and pops finished
 * alternatives.  Advancing by byte c keeps the stacks whose class holds c,
 * moves each past its class and takes the closure; the closure of one
 * (node, byte) is memoised, so the trie walk of gm_mask mostly costs
 * table look-ups.
 *
 * Caps (ERR_FULL, state unchanged): GM_MAX_STACKS stacks in a state,
 * GM_MAX_DEPTH positions on a stack, GM_MAX_NODES nodes in the arena
 * (the arena is compacted to the live state before that is reached).
 */
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "engine/grammar/grammar_impl.h"

#define GM_MAX_STACKS  4096u
#define GM_MAX_DEPTH   4096u
#define GM_MAX_NODES   (1u << 22)
#define GM_COMPACT_AT  (1u << 20)  /* gm_feed compacts the arena past this many nodes */
#define GM_TRANS_MAX   (1u << 22)  /* ids held by the transition memo before it is cleared */
#define NIL 0u

typedef struct {
    uint32_t pos;
    uint32_t parent;
    uint32_t depth;
    uint64_t h;                 /* content hash of the whole stack */
} gnode_t;

typedef struct {
    uint64_t key;               /* (node id << 8 | byte) + 1; 0: empty slot */
    uint32_t off, n;            /* into trans_ids */
} gtrans_t;

struct gmatch {
    grammar_t *g;
    gnode_t *nodes;   uint32_t n_nodes, cap_nodes;
    uint32_t *htab;   uint32_t hcap;            /* node ids; 0: empty (node 0 is never hashed) */
    uint32_t *seen, *inset; uint32_t gen_seen, gen_inset;   /* [cap_nodes] */
    uint32_t *work;   uint32_t cap_work;
    uint32_t *ids;    uint32_t n_ids, cap_ids;  /* the levels' stack ids */
    uint32_t *lvl;    uint32_t n_lvl, cap_lvl;  /* level k starts at ids[lvl[k]] */
    uint32_t *start;  uint32_t n_start;         /* the initial state */
    gtrans_t *trans;  uint32_t trans_cap, trans_n;
    uint32_t *trans_ids; uint32_t n_trans_ids, cap_trans_ids;
    uint32_t *tmp;    uint32_t cap_tmp;
    uint32_t *key;    uint32_t cap_key;
    gdfa_t *dfa;                                /* mask_dfa.c; NULL until gm_dfa */
};

/* ------------------------------------------------------------------ arena */

static int grow32(uint32_t **p, uint32_t *cap, uint64_t need)
{
    if (need <= *cap)
        return 0;
    uint64_t n = *cap ? (uint64_t)*cap * 2 : 64;
    while (n < need)
        n *= 2;
    if (n > UINT32_MAX / 4)
        return ERR_NOMEM;
    uint32_t *q = realloc(*p, (size_t)n * sizeof *q);
    if (q == NULL)
        return ERR_NOMEM;
    *p = q;
    *cap = (uint32_t)n;
    return 0;
}

static uint64_t mix(uint64_t h, uint64_t v)
{
    h ^= v + 0x9E3779B97F4A7C15ull + (h << 6) + (h >> 2);
    h *= 0xFF51AFD7ED558CCDull;
    return h ^ (h >> 33);
}

static int rehash(gmatch_t *m, uint32_t cap)
{
    uint32_t *t = calloc(cap, sizeof *t);
    if (t == NULL)
        return ERR_NOMEM;
    for (uint32_t id = 1; id < m->n_nodes; id++) {
        uint32_t h = (uint32_t)m->nodes[id].h & (cap - 1);
        while (t[h] != 0)
            h = (h + 1) & (cap - 1);
        t[h] = id;
    }
    free(m->htab);
    m->htab = t;
    m->hcap = cap;
    return 0;
}

/* The id of stack (pos, parent); ERR_FULL past the depth or node caps. */
static int64_t node(gmatch_t *m, uint32_t pos, uint32_t parent)
{
    uint64_t h = mix(m->nodes[parent].h, pos);
    uint32_t mask = m->hcap - 1, i = (uint32_t)h & mask;
    for (; m->htab[i] != 0; i = (i + 1) & mask) {
        const gnode_t *n = &m->nodes[m->htab[i]];
        if (n->pos == pos && n->parent == parent)
            return m->htab[i];
    }
    if (m->nodes[parent].depth >= GM_MAX_DEPTH || m->n_nodes >= GM_MAX_NODES)
        return ERR_FULL;
    if (m->n_nodes == m->cap_nodes) {
        uint32_t cap = m->cap_nodes * 2;
        gnode_t *nn = realloc(m->nodes, (size_t)cap * sizeof *nn);
        if (nn == NULL)
            return ERR_NOMEM;
        m->nodes = nn;
        uint32_t *s = realloc(m->seen, (size_t)cap * sizeof *s);
        if (s == NULL)
            return ERR_NOMEM;
        m->seen = s;
        uint32_t *t = realloc(m->inset, (size_t)cap * sizeof *t);
        if (t == NULL)
            return ERR_NOMEM;
        m->inset = t;
        memset(m->seen + m->cap_nodes, 0, (size_t)(cap - m->cap_nodes) * sizeof *s);
        memset(m->inset + m->cap_nodes, 0, (size_t)(cap - m->cap_nodes) * sizeof *t);
        m->cap_nodes = cap;
    }
    uint32_t id = m->n_nodes++;
    m->nodes[id] = (gnode_t){ pos, parent, m->nodes[parent].depth + 1, h };
    m->htab[i] = id;
    if ((uint64_t)m->n_nodes * 2 > m->hcap && rehash(m, m->hcap * 2) < 0)
        return ERR_NOMEM;
    return id;
}

/* ------------------------------------------------------------------ closure */

static void bump(uint32_t *gen, uint32_t *marks, uint32_t n)
{
    if (++*gen == 0) {          /* wrapped: forget every old stamp */
        memset(marks, 0, (size_t)n * sizeof *marks);
        *gen = 1;
    }
}

/*
 * Append to m->tmp (from index *n) the terminal stacks reached from the
 * stacks work[0..nw) without consuming input.  Iterative; each node is
 * visited once per call.
 */
static int closure(gmatch_t *m, uint32_t nw, uint32_t *n)
{
    const grammar_t *g = m->g;
    bump(&m->gen_seen, m->seen, m->cap_nodes);
    while (nw > 0) {
        uint32_t id = m->work[--nw];
        if (m->seen[id] == m->gen_seen)
            continue;
        m->seen[id] = m->gen_seen;
        gnode_t nd = m->nodes[id];
        gelem_t e = id == NIL ? (gelem_t){ GE_BYTES, 0 } : g->elems[nd.pos];
        if (id == NIL || e.kind == GE_BYTES) {
            if (*n >= GM_MAX_STACKS)
                return ERR_FULL;
            if (grow32(&m->tmp, &m->cap_tmp, (uint64_t)*n + 1) < 0)
                return ERR_NOMEM;
            m->tmp[(*n)++] = id;
            continue;
        }
        if (e.kind == GE_END) {
            if (grow32(&m->work, &m->cap_work, (uint64_t)nw + 1) < 0)
                return ERR_NOMEM;
            m->work[nw++] = nd.parent;
            continue;
        }
        uint32_t cont = nd.parent;
        if (g->elems[nd.pos + 1].kind != GE_END) {
            int64_t c = node(m, nd.pos + 1, nd.parent);
            if (c < 0)
                return (int)c;
            cont = (uint32_t)c;
        }
        uint32_t a0 = g->rule_alt[e.v], a1 = g->rule_alt[e.v + 1];
        if (grow32(&m->work, &m->cap_work, (uint64_t)nw + (a1 - a0)) < 0)
            return ERR_NOMEM;
        for (uint32_t a = a0; a < a1; a++) {
            int64_t c = node(m, g->alt_start[a], cont);
            if (c < 0)
                return (int)c;
            m->work[nw++] = (uint32_t)c;
        }
    }
    return 0;
}

/* ------------------------------------------------------------------ transitions */

static int trans_rehash(gmatch_t *m, uint32_t cap)
{
    gtrans_t *t = calloc(cap, sizeof *t);
    if (t == NULL)
        return ERR_NOMEM;
    for (uint32_t i = 0; i < m->trans_cap; i++) {
        if (m->trans[i].key == 0)
            continue;
        uint32_t h = (uint32_t)mix(0, m->trans[i].key) & (cap - 1);
        while (t[h].key != 0)
            h = (h + 1) & (cap - 1);
        t[h] = m->trans[i];
    }
    free(m->trans);
    m->trans = t;
    m->trans_cap = cap;
    return 0;
}

static void trans_clear(gmatch_t *m)
{
    if (m->trans != NULL)
        memset(m->trans, 0, (size_t)m->trans_cap * sizeof *m->trans);
    m->trans_n = 0;
    m->n_trans_ids = 0;
}

/* The terminal stacks after terminal stack id takes byte c (whose class holds c). */
static int step(gmatch_t *m, uint32_t id, uint8_t c, const uint32_t **out, uint32_t *n_out)
{
    uint64_t key = ((uint64_t)id << 8 | c) + 1;
    uint32_t mask = m->trans_cap - 1, h = (uint32_t)mix(0, key) & mask;
    for (; m->trans[h].key != 0; h = (h + 1) & mask)
        if (m->trans[h].key == key) {
            *out = m->trans_ids + m->trans[h].off;
            *n_out = m->trans[h].n;
            return 0;
        }
    int64_t nx = node(m, m->nodes[id].pos + 1, m->nodes[id].parent);
    if (nx < 0)
        return (int)nx;
    if (grow32(&m->work, &m->cap_work, 1) < 0)
        return ERR_NOMEM;
    m->work[0] = (uint32_t)nx;
    uint32_t n = 0;
    int rc = closure(m, 1, &n);
    if (rc < 0)
        return rc;
    if (m->n_trans_ids + n > GM_TRANS_MAX)
        trans_clear(m);
    if (grow32(&m->trans_ids, &m->cap_trans_ids, (uint64_t)m->n_trans_ids + n) < 0)
        return ERR_NOMEM;
    /* the table may have been cleared: find the slot again */
    for (h = (uint32_t)mix(0, key) & mask; m->trans[h].key != 0; h = (h + 1) & mask)
        ;
    memcpy(m->trans_ids + m->n_trans_ids, m->tmp, (size_t)n * sizeof *m->tmp);
    uint32_t off = m->n_trans_ids;
    m->trans[h] = (gtrans_t){ key, off, n };
    m->n_trans_ids += n;
    if (++m->trans_n * 2 > m->trans_cap && trans_rehash(m, m->trans_cap * 2) < 0)
        return ERR_NOMEM;
    *out = m->trans_ids + off;
    *n_out = n;
    return 0;
}

/* ------------------------------------------------------------------ levels */

static uint32_t top_off(const gmatch_t *m)
{
    return m->lvl[m->n_lvl - 1];
}

int gm_push_byte(gmatch_t *m, uint8_t c)
{
    const grammar_t *g = m->g;
    uint32_t from = top_off(m), to = m->n_ids;
    bump(&m->gen_inset, m->inset, m->cap_nodes);
    uint32_t n = 0;
    for (uint32_t i = from; i < to; i++) {
        uint32_t id = m->ids[i];
        if (id == NIL || !gclass_has(g->classes[g->elems[m->nodes[id].pos].v], c))
            continue;
        const uint32_t *r = NULL;
        uint32_t nr = 0;
        int rc = step(m, id, c, &r, &nr);
        if (rc < 0) {
            m->n_ids = to;
            return rc;
        }
        if (grow32(&m->ids, &m->cap_ids, (uint64_t)to + n + nr) < 0) {
            m->n_ids = to;
            return ERR_NOMEM;
        }
        for (uint32_t k = 0; k < nr; k++) {
            if (m->inset[r[k]] == m->gen_inset)
                continue;
            if (n >= GM_MAX_STACKS) {
                m->n_ids = to;
                return ERR_FULL;
            }
            m->inset[r[k]] = m->gen_inset;
            m->ids[to + n++] = r[k];
        }
    }
    if (n == 0)
        return 0;
    if (grow32(&m->lvl, &m->cap_lvl, (uint64_t)m->n_lvl + 1) < 0)
        return ERR_NOMEM;
    m->lvl[m->n_lvl++] = to;
    m->n_ids = to + n;
    return (int)n;
}

void gm_pop(gmatch_t *m)
{
    if (m->n_lvl > 1)
        m->n_ids = m->lvl[--m->n_lvl];
}

int gm_top_accepting(const gmatch_t *m)
{
    for (uint32_t i = top_off(m); i < m->n_ids; i++)
        if (m->ids[i] == NIL)
            return 1;
    return 0;
}

void gm_top_bytes(const gmatch_t *m, uint8_t set[32])
{
    uint64_t acc[4] = { 0, 0, 0, 0 };
    uint32_t last = UINT32_MAX;         /* stacks side by side often share a class */
    for (uint32_t i = top_off(m); i < m->n_ids; i++) {
        uint32_t id = m->ids[i];
        if (id == NIL || m->g->elems[m->nodes[id].pos].v == last)
            continue;
        last = m->g->elems[m->nodes[id].pos].v;
        const uint8_t *cl = m->g->classes[last];
        for (int k = 0; k < 4; k++) {
            uint64_t w;
            memcpy(&w, cl + 8 * k, 8);
            acc[k] |= w;
        }
    }
    memcpy(set, acc, 32);
}

grammar_t *gm_grammar(const gmatch_t *m)
{
    return m->g;
}

const uint32_t *gm_top_ids(const gmatch_t *m, uint32_t *n)
{
    *n = m->n_ids - top_off(m);
    return m->ids + top_off(m);
}

int gm_push_ids(gmatch_t *m, const uint32_t *ids, uint32_t n)
{
    if (grow32(&m->ids, &m->cap_ids, (uint64_t)m->n_ids + n) < 0 ||
        grow32(&m->lvl, &m->cap_lvl, (uint64_t)m->n_lvl + 1) < 0)
        return ERR_NOMEM;
    memcpy(m->ids + m->n_ids, ids, (size_t)n * sizeof *ids);
    m->lvl[m->n_lvl++] = m->n_ids;
    m->n_ids += n;
    return 0;
}

gdfa_t *gm_dfa(gmatch_t *m)
{
    if (m->dfa == NULL && gdfa_create(&m->dfa) < 0)
        m->dfa = NULL;
    return m->dfa;
}

/* ------------------------------------------------------------------ state keys */

/* Content order of two stacks: by hash, then position by position. */
static int stack_cmp(const gmatch_t *m, uint32_t a, uint32_t b)
{
    if (m->nodes[a].h != m->nodes[b].h)
        return m->nodes[a].h < m->nodes[b].h ? -1 : 1;
    while (a != b && a != NIL && b != NIL) {
        if (m->nodes[a].pos != m->nodes[b].pos)
            return m->nodes[a].pos < m->nodes[b].pos ? -1 : 1;
        a = m->nodes[a].parent;
        b = m->nodes[b].parent;
    }
    return a == b ? 0 : (a == NIL ? -1 : 1);
}

int gm_state_key(gmatch_t *m, const uint32_t **key, size_t *n, uint64_t *hash)
{
    uint32_t from = top_off(m), cnt = m->n_ids - from;
    if (grow32(&m->tmp, &m->cap_tmp, cnt) < 0)
        return ERR_NOMEM;
    uint32_t *s = m->tmp;
    uint64_t words = 0;
    for (uint32_t i = 0; i < cnt; i++) {   /* insertion sort: states are small */
        uint32_t id = m->ids[from + i], j = i;
        words += m->nodes[id].depth + 1;
        while (j > 0 && stack_cmp(m, s[j - 1], id) > 0) {
            s[j] = s[j - 1];
            j--;
        }
        s[j] = id;
    }
    if (grow32(&m->key, &m->cap_key, words) < 0)
        return ERR_NOMEM;
    uint64_t h = 1469598103934665603ull;
    size_t k = 0;
    for (uint32_t i = 0; i < cnt; i++) {
        for (uint32_t id = s[i]; id != NIL; id = m->nodes[id].parent)
            m->key[k++] = m->nodes[id].pos;
        m->key[k++] = UINT32_MAX;
        h = mix(h, m->nodes[s[i]].h);
    }
    *key = m->key;
    *n = k;
    *hash = mix(h, k);
    return 0;
}

/* ------------------------------------------------------------------ compaction */

/*
 * Rebuild the arena from the stacks of level 0 and the initial state, so
 * that a long generation does not grow it without bound.  Only between
 * gm_feed calls (one level).  Stacks are re-interned bottom first.
 */
static int compact(gmatch_t *m)
{
    uint32_t n_live = m->n_ids + m->n_start;
    uint32_t *pos = NULL, cap_pos = 0;
    uint32_t *live = malloc((size_t)(n_live ? n_live : 1) * sizeof *live);
    gnode_t *old = malloc((size_t)m->n_nodes * sizeof *old);
    if (live == NULL || old == NULL) {
        free(live);
        free(old);
        return ERR_NOMEM;
    }
    memcpy(live, m->ids, (size_t)m->n_ids * sizeof *live);
    memcpy(live + m->n_ids, m->start, (size_t)m->n_start * sizeof *live);
    memcpy(old, m->nodes, (size_t)m->n_nodes * sizeof *old);
    m->n_nodes = 1;
    memset(m->htab, 0, (size_t)m->hcap * sizeof *m->htab);
    trans_clear(m);
    if (m->dfa != NULL && gdfa_clear(m->dfa) < 0) {   /* its sets name the old ids */
        gdfa_destroy(m->dfa);
        m->dfa = NULL;
    }
    int rc = 0;
    for (uint32_t i = 0; i < n_live && rc == 0; i++) {
        uint32_t d = 0;
        for (uint32_t id = live[i]; id != NIL; id = old[id].parent) {
            if (grow32(&pos, &cap_pos, (uint64_t)d + 1) < 0) {
                rc = ERR_NOMEM;
                break;
            }
            pos[d++] = old[id].pos;
        }
        uint32_t id = NIL;
        while (rc == 0 && d > 0) {
            int64_t nid = node(m, pos[--d], id);
            if (nid < 0)
                rc = (int)nid;
            else
                id = (uint32_t)nid;
        }
        live[i] = id;
    }
    if (rc == 0) {
        memcpy(m->ids, live, (size_t)m->n_ids * sizeof *live);
        memcpy(m->start, live + m->n_ids, (size_t)m->n_start * sizeof *live);
    }
    free(pos);
    free(live);
    free(old);
    return rc;
}

/* ------------------------------------------------------------------ public */

int gm_create(gmatch_t **out, grammar_t *g)
{
    gmatch_t *m = calloc(1, sizeof *m);
    *out = NULL;
    if (m == NULL)
        return ERR_NOMEM;
    m->g = grammar_ref(g);
    m->cap_nodes = 1024;
    m->nodes = malloc(m->cap_nodes * sizeof *m->nodes);
    m->seen = calloc(m->cap_nodes, sizeof *m->seen);
    m->inset = calloc(m->cap_nodes, sizeof *m->inset);
    if (!m->nodes || !m->seen || !m->inset || rehash(m, 2048) < 0 || trans_rehash(m, 1024) < 0 ||
        grow32(&m->lvl, &m->cap_lvl, 64) < 0)
        goto nomem;
    m->nodes[NIL] = (gnode_t){ UINT32_MAX, NIL, 0, 0x51ED27A3C0FFEEull };
    m->n_nodes = 1;
    uint32_t a0 = g->rule_alt[g->root], a1 = g->rule_alt[g->root + 1];
    if (grow32(&m->work, &m->cap_work, a1 - a0 + 1) < 0)
        goto nomem;
    for (uint32_t a = a0; a < a1; a++) {
        int64_t id = node(m, g->alt_start[a], NIL);
        if (id < 0)
            goto nomem;
        m->work[a - a0] = (uint32_t)id;
    }
    uint32_t n = 0;
    int rc = closure(m, a1 - a0, &n);
    if (rc < 0) {
        gm_destroy(m);
        return rc;
    }
    m->start = malloc((n ? n : 1) * sizeof *m->start);
    if (m->start == NULL)
        goto nomem;
    memcpy(m->start, m->tmp, (size_t)n * sizeof *m->start);
    m->n_start = n;
    gm_reset(m);
    if (m->n_ids != n)
        goto nomem;
    *out = m;
    return 0;
nomem:
    gm_destroy(m);
    return ERR_NOMEM;
}

void gm_destroy(gmatch_t *m)
{
    if (m == NULL)
        return;
    grammar_release(m->g);
    free(m->nodes);
    free(m->htab);
    free(m->seen);
    free(m->inset);
    free(m->work);
    free(m->ids);
    free(m->lvl);
    free(m->start);
    free(m->trans);
    free(m->trans_ids);
    free(m->tmp);
    free(m->key);
    gdfa_destroy(m->dfa);
    free(m);
}

void gm_reset(gmatch_t *m)
{
    m->n_lvl = 1;
    m->lvl[0] = 0;
    m->n_ids = 0;
    if (grow32(&m->ids, &m->cap_ids, m->n_start) < 0)
        return;                 /* left empty: gm_create checks */
    memcpy(m->ids, m->start, (size_t)m->n_start * sizeof *m->ids);
    m->n_ids = m->n_start;
}

int gm_feed(gmatch_t *m, const void *p, size_t n)
{
    const uint8_t *s = p;
    uint32_t base = m->n_lvl;
    for (size_t i = 0; i < n; i++) {
        int rc = gm_push_byte(m, s[i]);
        if (rc <= 0) {
            while (m->n_lvl > base)
                gm_pop(m);
            return rc < 0 ? rc : ERR_INVALID;
        }
    }
    if (n > 0 && base == 1) {   /* the new state becomes level 0 */
        uint32_t from = top_off(m), cnt = m->n_ids - from;
        memmove(m->ids, m->ids + from, (size_t)cnt * sizeof *m->ids);
        m->n_ids = cnt;
        m->n_lvl = 1;
        if (m->n_nodes > GM_COMPACT_AT && compact(m) < 0)
            return ERR_NOMEM;
    }
    return 0;
}

int gm_accepting(const gmatch_t *m)
{
    return gm_top_accepting(m);
}

int gm_can_continue(const gmatch_t *m)
{
    uint8_t set[32];
    gm_top_bytes(m, set);
    for (int k = 0; k < 32; k++)
        if (set[k])
            return 1;
    return 0;
}
