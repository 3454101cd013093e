/*
 * vocab.c - the vocabulary as a byte trie, and token masks.
 *
 * The trie is stored in preorder: node i has its byte, its depth and
 * the index just past its subtree (end), so the mask walk is a loop over
 * an array that skips a whole subtree with one assignment when the
 * parser state cannot take the node's byte.
 *
 * gm_mask first looks the state up in the grammar's mask cache (cache.c,
 * keyed by gm_state_key and the vocabulary): a hit costs the key, its
 * hash and a copy of the mask.  A miss walks the trie through the
 * matcher's state DFA (mask_walk.c, mask_dfa.c); when that DFA cannot
 * serve (full, or out of memory) the walk here descends with
 * gm_push_byte and backtracks with gm_pop (match.c), so no recursion and
 * no copy of the parser state.
 */
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "engine/grammar/grammar_impl.h"

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
    for (uint32_t i = 0; i < v->n_loops; i++)
        gloop_free(v->loops[i]);
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
 * fallback of gvocab_walk_dfa (mask_walk.c).
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
        count += gvocab_set_tokens(v, i, mask);
        i++;
    }
    for (; cur > 0; cur--)
        gm_pop(m);
    return count;
}

/* The mask of m's state: through the DFA, or with the matcher alone when the DFA cannot serve. */
static int64_t walk(gmatch_t *m, const gvocab_t *v, uint32_t *mask)
{
    gdfa_t *d = gm_dfa(m);
    if (d != NULL && gdfa_big(d) && gdfa_clear(d) < 0)
        d = NULL;
    if (d != NULL) {
        int64_t count = mask_start(m, v, mask);
        int64_t c = gvocab_walk_dfa(m, d, v, mask);
        if (c != ERR_FULL)
            return c < 0 ? c : count + c;
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
