/*
 * vocab.c - the vocabulary as a byte trie, and token masks.
 *
 * The trie is stored in preorder: node i has its byte, its depth and
 * the index just past its subtree (end), so the mask walk is a loop over
 * an array that skips a whole subtree with one assignment when the
 * parser state cannot take the node's byte.  The walk descends with
 * gm_push_byte and backtracks with gm_pop (match.c), so no recursion
 * and no copy of the parser state.
 *
 * gm_mask first looks the state up in the grammar's mask cache (cache.c,
 * keyed by gm_state_key and the vocabulary): a hit costs the key, its
 * hash and a copy of the mask.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "engine/grammar/grammar_impl.h"

#define GVOCAB_NO_PIECE UINT32_MAX
#define GVOCAB_MAX_LOOPS 64        /* loop sets remembered per vocabulary */
#define GVOCAB_LOOP_MIN  32        /* fewer looping bytes than this: no fast path */

/*
 * The tokens made only of bytes in one set B, for a parser state that
 * every byte of B leads back to (a string's character loop): mask and
 * count, and the exits, the trie nodes whose path is B* then one byte
 * not in B, where the walk must go on.
 */
typedef struct {
    uint8_t set[32];
    uint32_t *mask;             /* [mask words] */
    int64_t count;
    uint32_t *exits;  uint32_t n_exits;
} gloop_t;

struct gvocab {
    uint32_t n_vocab;
    uint8_t *blob;              /* every token's bytes */
    uint64_t *off;              /* [n_vocab] into blob */
    uint32_t *len;              /* [n_vocab]; GVOCAB_NO_PIECE: never allowed */
    uint8_t *is_end;            /* [n_vocab] */
    int32_t *end;   size_t n_end;
    /* the trie in preorder; node 0 is the root (the empty string) */
    uint32_t n_nodes;
    uint32_t max_depth;         /* the longest token */
    uint8_t *byte;              /* [n_nodes] */
    uint32_t *depth;            /* [n_nodes] */
    uint32_t *skip;             /* [n_nodes] first node after the subtree */
    uint32_t *tok_off;          /* [n_nodes + 1] tokens spelled exactly by node i: toks[tok_off[i]..] */
    int32_t *toks;
    /* loop sets, made on first use and kept until gvocab_destroy (entries never move) */
    pthread_mutex_t lock;
    gloop_t *loops[GVOCAB_MAX_LOOPS];
    uint32_t n_loops;
};

typedef struct {
    const uint8_t *p;
    uint32_t len;
    int32_t id;
} tokref_t;

static int cmp_tok(const void *a, const void *b)
{
    const tokref_t *x = a, *y = b;
    uint32_t n = x->len < y->len ? x->len : y->len;
    int c = memcmp(x->p, y->p, n);
    if (c != 0)
        return c;
    if (x->len != y->len)
        return x->len < y->len ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

/* ------------------------------------------------------------------ building */

/* Copy the pieces into v (blob, off, len); tokens with text go to refs[0..*n_refs). */
static int copy_pieces(gvocab_t *v, gvocab_piece_fn piece, void *ctx, tokref_t **refs,
                       uint32_t *n_refs)
{
    uint64_t total = 0;
    for (uint32_t id = 0; id < v->n_vocab; id++) {
        size_t len = 0;
        const void *p = piece(ctx, (int32_t)id, &len);
        if (p == NULL || len == 0 || len >= GVOCAB_NO_PIECE || v->is_end[id]) {
            v->len[id] = GVOCAB_NO_PIECE;
            continue;
        }
        v->len[id] = (uint32_t)len;
        v->off[id] = total;
        total += len;
    }
    v->blob = malloc(total ? total : 1);
    *refs = malloc((size_t)v->n_vocab * sizeof **refs);
    if (v->blob == NULL || *refs == NULL)
        return ERR_NOMEM;
    uint32_t n = 0;
    for (uint32_t id = 0; id < v->n_vocab; id++) {
        if (v->len[id] == GVOCAB_NO_PIECE)
            continue;
        size_t len = 0;
        const void *p = piece(ctx, (int32_t)id, &len);
        if (p == NULL || len != v->len[id])
            return ERR_INVALID;     /* the callback must answer the same twice */
        memcpy(v->blob + v->off[id], p, len);
        (*refs)[n++] = (tokref_t){ v->blob + v->off[id], (uint32_t)len, (int32_t)id };
    }
    *n_refs = n;
    return 0;
}

/* The preorder trie of the sorted refs. */
static int build_trie(gvocab_t *v, const tokref_t *r, uint32_t n)
{
    uint64_t cap = 1;
    uint32_t maxlen = 0;
    for (uint32_t i = 0; i < n; i++) {
        cap += r[i].len;        /* an upper bound on the nodes */
        if (r[i].len > maxlen)
            maxlen = r[i].len;
    }
    if (cap >= UINT32_MAX)
        return ERR_FULL;
    v->byte = malloc(cap);
    v->depth = malloc(cap * sizeof *v->depth);
    v->skip = malloc(cap * sizeof *v->skip);
    v->tok_off = malloc((cap + 1) * sizeof *v->tok_off);
    v->toks = malloc((n ? n : 1) * sizeof *v->toks);
    uint32_t *path = malloc(((size_t)maxlen + 1) * sizeof *path);   /* path[d]: node at depth d */
    if (!v->byte || !v->depth || !v->skip || !v->tok_off || !v->toks || !path) {
        free(path);
        return ERR_NOMEM;
    }
    uint32_t nn = 1, nt = 0, d = 0;
    v->byte[0] = 0;
    v->depth[0] = 0;
    v->tok_off[0] = 0;
    path[0] = 0;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t l = 0;             /* the prefix shared with the previous token */
        if (i > 0)
            while (l < r[i].len && l < r[i - 1].len && r[i].p[l] == r[i - 1].p[l])
                l++;
        for (; d > l; d--)
            v->skip[path[d]] = nn;
        for (; d < r[i].len; d++) {
            v->byte[nn] = r[i].p[d];
            v->depth[nn] = d + 1;
            v->tok_off[nn] = nt;
            path[d + 1] = nn++;
        }
        v->toks[nt++] = r[i].id;
    }
    for (; d > 0; d--)
        v->skip[path[d]] = nn;
    v->skip[0] = nn;
    v->tok_off[nn] = nt;
    v->n_nodes = nn;
    v->max_depth = maxlen;
    free(path);
    return 0;
}

int gvocab_create(gvocab_t **out, uint32_t n_vocab, gvocab_piece_fn piece, void *ctx,
                  const int32_t *end, size_t n_end, char *err, size_t errlen)
{
    *out = NULL;
    if (n_vocab == 0 || n_vocab > INT32_MAX || piece == NULL)
        return err_set(err, errlen, ERR_INVALID, "grammar: vocabulary of %u tokens", n_vocab);
    for (size_t i = 0; i < n_end; i++)
        if (end[i] < 0 || (uint32_t)end[i] >= n_vocab)
            return err_set(err, errlen, ERR_INVALID, "grammar: end token %d out of range (%u tokens)",
                           end[i], n_vocab);
    gvocab_t *v = calloc(1, sizeof *v);
    tokref_t *refs = NULL;
    uint32_t n_refs = 0;
    int rc = ERR_NOMEM;
    if (v == NULL)
        goto fail;
    pthread_mutex_init(&v->lock, NULL);
    v->n_vocab = n_vocab;
    v->off = calloc(n_vocab, sizeof *v->off);
    v->len = calloc(n_vocab, sizeof *v->len);
    v->is_end = calloc(n_vocab, 1);
    v->end = malloc((n_end ? n_end : 1) * sizeof *v->end);
    if (!v->off || !v->len || !v->is_end || !v->end)
        goto fail;
    for (size_t i = 0; i < n_end; i++) {
        if (!v->is_end[end[i]])
            v->end[v->n_end++] = end[i];
        v->is_end[end[i]] = 1;
    }
    if ((rc = copy_pieces(v, piece, ctx, &refs, &n_refs)) < 0)
        goto fail;
    qsort(refs, n_refs, sizeof *refs, cmp_tok);
    if ((rc = build_trie(v, refs, n_refs)) < 0)
        goto fail;
    free(refs);
    *out = v;
    return 0;
fail:
    free(refs);
    gvocab_destroy(v);
    if (rc == ERR_INVALID)
        return err_set(err, errlen, rc, "grammar: the token text callback is not stable");
    if (rc == ERR_FULL)
        return err_set(err, errlen, rc, "grammar: the token texts are too long in all");
    return err_set(err, errlen, ERR_NOMEM, "grammar: out of memory");
}

void gvocab_destroy(gvocab_t *v)
{
    if (v == NULL)
        return;
    free(v->blob);
    free(v->off);
    free(v->len);
    free(v->is_end);
    free(v->end);
    free(v->byte);
    free(v->depth);
    free(v->skip);
    free(v->tok_off);
    free(v->toks);
    for (uint32_t i = 0; i < v->n_loops; i++) {
        free(v->loops[i]->mask);
        free(v->loops[i]->exits);
        free(v->loops[i]);
    }
    pthread_mutex_destroy(&v->lock);
    free(v);
}

uint32_t gvocab_n_vocab(const gvocab_t *v)
{
    return v->n_vocab;
}

size_t gvocab_mask_words(const gvocab_t *v)
{
    return ((size_t)v->n_vocab + 31) / 32;
}

uint32_t gvocab_n_loops(const gvocab_t *cv)
{
    gvocab_t *v = (gvocab_t *)cv;
    pthread_mutex_lock(&v->lock);
    uint32_t n = v->n_loops;
    pthread_mutex_unlock(&v->lock);
    return n;
}

/* ------------------------------------------------------------------ masks */

static int64_t set_tokens(const gvocab_t *v, uint32_t node, uint32_t *mask)
{
    for (uint32_t k = v->tok_off[node]; k < v->tok_off[node + 1]; k++)
        mask[v->toks[k] >> 5] |= 1u << (v->toks[k] & 31);
    return v->tok_off[node + 1] - v->tok_off[node];
}

/* The end tokens when m's top level accepts: mask cleared, then their bits; their count. */
static int64_t mask_start(const gmatch_t *m, const gvocab_t *v, uint32_t *mask)
{
    int64_t count = 0;
    memset(mask, 0, gvocab_mask_words(v) * sizeof *mask);
    if (gm_top_accepting(m))
        for (size_t i = 0; i < v->n_end; i++) {
            mask[v->end[i] >> 5] |= 1u << (v->end[i] & 31);
            count++;
        }
    return count;
}

/*
 * The trie walk with the matcher alone: every node whose bytes the state
 * can take marks its tokens.  A byte that would pass the matcher's caps
 * (ERR_FULL) counts as not allowed, as gm_feed would refuse it.  The
 * fallback of walk_dfa.
 */
static int64_t walk_matcher(gmatch_t *m, const gvocab_t *v, uint32_t *mask)
{
    int64_t count = mask_start(m, v, mask);
    uint32_t cur = 0;           /* levels pushed = depth of the node last entered */
    for (uint32_t i = 1; i < v->n_nodes;) {
        for (; cur >= v->depth[i]; cur--)
            gm_pop(m);
        int rc = gm_push_byte(m, v->byte[i]);
        if (rc == ERR_NOMEM) {
            for (; cur > 0; cur--)
                gm_pop(m);
            return rc;
        }
        if (rc <= 0) {
            i = v->skip[i];
            continue;
        }
        cur++;
        count += set_tokens(v, i, mask);
        i++;
    }
    for (; cur > 0; cur--)
        gm_pop(m);
    return count;
}

/* ------------------------------------------------------------------ loop sets */

/* The loop entry of set: the tokens of B* and the exits (one walk of the trie over bytes alone). */
static gloop_t *loop_make(const gvocab_t *v, const uint8_t set[32])
{
    gloop_t *l = calloc(1, sizeof *l);
    uint32_t cap = 0;
    if (l == NULL || (l->mask = calloc(gvocab_mask_words(v), sizeof *l->mask)) == NULL)
        goto fail;
    memcpy(l->set, set, 32);
    for (uint32_t i = 1; i < v->n_nodes;) {
        if (gclass_has(set, v->byte[i])) {
            l->count += set_tokens(v, i, l->mask);
            i++;
            continue;
        }
        if (l->n_exits == cap) {
            cap = cap ? cap * 2 : 256;
            uint32_t *e = realloc(l->exits, (size_t)cap * sizeof *e);
            if (e == NULL)
                goto fail;
            l->exits = e;
        }
        l->exits[l->n_exits++] = i;
        i = v->skip[i];
    }
    return l;
fail:
    if (l != NULL) {
        free(l->mask);
        free(l->exits);
    }
    free(l);
    return NULL;
}

/*
 * The loop entry of set, made on first use; NULL when memory is short or
 * GVOCAB_MAX_LOOPS sets are held (the caller walks without it).  Any
 * thread: the vocabulary's lock guards the list, entries never move and
 * live until gvocab_destroy, and the walk that makes one runs unlocked.
 */
static const gloop_t *loop_get(const gvocab_t *cv, const uint8_t set[32])
{
    gvocab_t *v = (gvocab_t *)cv;   /* the loop list is the one mutable, locked part */
    pthread_mutex_lock(&v->lock);
    for (uint32_t i = 0; i < v->n_loops; i++)
        if (memcmp(v->loops[i]->set, set, 32) == 0) {
            gloop_t *l = v->loops[i];
            pthread_mutex_unlock(&v->lock);
            return l;
        }
    int full = v->n_loops >= GVOCAB_MAX_LOOPS;
    pthread_mutex_unlock(&v->lock);
    if (full)
        return NULL;
    gloop_t *l = loop_make(v, set), *keep = NULL;
    if (l == NULL)
        return NULL;
    pthread_mutex_lock(&v->lock);
    for (uint32_t i = 0; i < v->n_loops && keep == NULL; i++)   /* made meanwhile by another thread? */
        if (memcmp(v->loops[i]->set, set, 32) == 0)
            keep = v->loops[i];
    if (keep == NULL && v->n_loops < GVOCAB_MAX_LOOPS) {
        v->loops[v->n_loops++] = l;
        keep = l;
        l = NULL;
    }
    pthread_mutex_unlock(&v->lock);
    if (l != NULL) {
        free(l->mask);
        free(l->exits);
        free(l);
    }
    return keep;
}

/*
 * The loop set of DFA state s, whose stacks are m's top level: the bytes
 * c with next(s, c) == s, into set.  Returns its size, 0 without
 * computing it when fewer than GVOCAB_LOOP_MIN bytes could even be taken,
 * or a negative code of gdfa_step.
 */
static int loop_set(gmatch_t *m, gdfa_t *d, uint32_t s, uint8_t set[32])
{
    uint8_t cand[32];
    int n = 0;
    gm_top_bytes(m, cand);
    for (int k = 0; k < 32; k++)
        n += __builtin_popcount(cand[k]);
    memset(set, 0, 32);
    if (n < (int)GVOCAB_LOOP_MIN)
        return 0;
    n = 0;
    for (unsigned c = 0; c < 256; c++) {
        if (!gclass_has(cand, c))
            continue;
        int t = gdfa_step(d, m, s, (uint8_t)c);
        if (t < 0)
            return t;
        if ((uint32_t)t == s) {
            set[c >> 3] |= (uint8_t)(1u << (c & 7));
            n++;
        }
    }
    return n;
}

/* ------------------------------------------------------------------ the DFA walk */

/*
 * The trie nodes [i0, i1) (whole subtrees) through the matcher's state
 * DFA (mask_dfa.c): st[d] is the DFA state after the first d bytes of
 * the current trie path, st[depth[i0] - 1] set by the caller, so a node
 * costs one look-up in next[] once its transition is known.  The count
 * of tokens marked, or ERR_FULL when the DFA fills up, ERR_NOMEM.
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
        count += set_tokens(v, i, mask);
        i++;
    }
    return count;
}

/*
 * The mask through the DFA.  When the state loops on a large byte set B
 * (inside a string), the tokens of B* come from the vocabulary's loop
 * entry for B and only the exits' subtrees are walked: at a node whose
 * path is in B* the state is still the start state, so those tokens are
 * allowed and the exits continue from it.
 */
static int64_t walk_dfa(gmatch_t *m, gdfa_t *d, const gvocab_t *v, uint32_t *mask)
{
    uint32_t n;
    const uint32_t *top = gm_top_ids(m, &n);
    int s0 = gdfa_intern(d, top, n);
    if (s0 < 0)
        return s0;
    const gloop_t *l = NULL;
    if (s0 != GDFA_DEAD) {
        uint8_t set[32];
        int n_loop = loop_set(m, d, (uint32_t)s0, set);
        if (n_loop < 0)
            return n_loop;
        if (n_loop >= (int)GVOCAB_LOOP_MIN)
            l = loop_get(v, set);
    }
    uint16_t *st = malloc(((size_t)v->max_depth + 1) * sizeof *st);
    if (st == NULL)
        return ERR_NOMEM;
    int64_t count = mask_start(m, v, mask), c = 0;
    if (l == NULL) {
        st[0] = (uint16_t)s0;
        c = walk_range(m, d, v, st, 1, v->n_nodes, mask);
    } else {
        size_t words = gvocab_mask_words(v);
        for (size_t w = 0; w < words; w++)
            mask[w] |= l->mask[w];
        count += l->count;
        for (uint32_t k = 0; k < l->n_exits && c >= 0; k++) {
            uint32_t e = l->exits[k];
            st[v->depth[e] - 1] = (uint16_t)s0;
            int64_t r = walk_range(m, d, v, st, e, v->skip[e], mask);
            c = r < 0 ? r : c + r;
        }
    }
    free(st);
    return c < 0 ? c : count + c;
}

/* The mask of m's state: through the DFA, or with the matcher alone when the DFA cannot serve. */
static int64_t walk(gmatch_t *m, const gvocab_t *v, uint32_t *mask)
{
    gdfa_t *d = gm_dfa(m);
    if (d != NULL && gdfa_big(d) && gdfa_clear(d) < 0)
        d = NULL;
    if (d != NULL) {
        int64_t count = walk_dfa(m, d, v, mask);
        if (count != ERR_FULL)
            return count;
        if (gdfa_clear(d) < 0)      /* one walk met too many states: forget them */
            return ERR_NOMEM;
    }
    return walk_matcher(m, v, mask);
}

int64_t gm_mask(gmatch_t *m, const gvocab_t *v, uint32_t *mask)
{
    const uint32_t *key;
    size_t n_key, words = gvocab_mask_words(v);
    uint64_t hash;
    grammar_t *g = gm_grammar(m);
    int rc = gm_state_key(m, &key, &n_key, &hash);
    if (rc < 0)
        return rc;
    int64_t count = gcache_get(&g->cache, v, key, n_key, hash, mask, words);
    if (count >= 0)
        return count;
    count = walk(m, v, mask);
    if (count >= 0)
        gcache_put(&g->cache, v, key, n_key, hash, mask, words, count);
    return count;
}

int gm_feed_token(gmatch_t *m, const gvocab_t *v, int32_t id)
{
    if (id < 0 || (uint32_t)id >= v->n_vocab)
        return ERR_INVALID;
    if (v->is_end[id])
        return gm_accepting(m) ? 0 : ERR_INVALID;
    if (v->len[id] == GVOCAB_NO_PIECE)
        return ERR_INVALID;
    return gm_feed(m, v->blob + v->off[id], v->len[id]);
}
