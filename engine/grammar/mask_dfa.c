/*
 * mask_dfa.c - a lazily built DFA over the parser states of one matcher,
 * so that the trie walk of gm_mask costs a table look-up per trie node.
 *
 * A DFA state is a set of the matcher's stack ids (sorted, interned:
 * equal sets are equal state numbers); state 0 is the empty set, the
 * dead state.  next[s * 256 + c] is the state after byte c, computed on
 * first use with the matcher itself (gm_push_ids, gm_push_byte), so the
 * DFA answers exactly what the matcher answers: a byte that would pass
 * the matcher's caps (ERR_FULL) leads to the dead state, as in gm_feed.
 *
 * Why it pays: inside a JSON string the parser state after one more
 * character is the same set of hash-consed stacks as before, so a walk
 * over a trie where most tokens are allowed meets a handful of states
 * and spends its time in next[], not in the matcher.
 *
 * Stack ids are the matcher's arena ids: the matcher clears the DFA
 * when it compacts its arena (match.c).  Bounded to GDFA_MAX_STATES
 * states and GDFA_MAX_IDS stored ids; gdfa_step answers ERR_FULL past
 * them (the caller clears the DFA and walks without it).  Owned by one
 * matcher, so by one thread at a time.
 */
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "engine/grammar/grammar_impl.h"

#define GDFA_MAX_STATES 4096u      /* next[] of 4096 * 256 uint16: 2 MiB at most */
#define GDFA_MAX_IDS    (1u << 18)  /* 1 MiB; with the rows, 3 MiB per matcher at most */

struct gdfa {
    uint32_t n_states, cap_states;
    uint32_t *off, *len;        /* [cap_states] state s is ids[off[s] .. off[s] + len[s]) */
    uint64_t *hash;             /* [cap_states] */
    uint16_t *next;             /* [cap_states * 256] GDFA_UNKNOWN until computed */
    uint32_t *ids;    uint32_t n_ids, cap_ids;
    uint32_t *htab;   uint32_t hcap;        /* state + 1; 0: empty slot */
    uint32_t *sorted; uint32_t cap_sorted;  /* scratch of intern */
};

/* ------------------------------------------------------------------ storage */

static int grow_ids(uint32_t **p, uint32_t *cap, uint64_t need)
{
    if (need <= *cap)
        return 0;
    uint64_t n = *cap ? (uint64_t)*cap * 2 : 256;
    while (n < need)
        n *= 2;
    uint32_t *q = realloc(*p, (size_t)n * sizeof *q);
    if (q == NULL)
        return ERR_NOMEM;
    *p = q;
    *cap = (uint32_t)n;
    return 0;
}

static int grow_states(gdfa_t *d)
{
    if (d->n_states < d->cap_states)
        return 0;
    uint32_t cap = d->cap_states ? d->cap_states * 2 : 16;
    uint32_t *off = realloc(d->off, (size_t)cap * sizeof *off);
    if (off == NULL)
        return ERR_NOMEM;
    d->off = off;
    uint32_t *len = realloc(d->len, (size_t)cap * sizeof *len);
    if (len == NULL)
        return ERR_NOMEM;
    d->len = len;
    uint64_t *hash = realloc(d->hash, (size_t)cap * sizeof *hash);
    if (hash == NULL)
        return ERR_NOMEM;
    d->hash = hash;
    uint16_t *next = realloc(d->next, (size_t)cap * 256 * sizeof *next);
    if (next == NULL)
        return ERR_NOMEM;
    d->next = next;
    d->cap_states = cap;
    return 0;
}

static int rehash(gdfa_t *d, uint32_t cap)
{
    uint32_t *t = calloc(cap, sizeof *t);
    if (t == NULL)
        return ERR_NOMEM;
    for (uint32_t s = 0; s < d->n_states; s++) {
        uint32_t h = (uint32_t)d->hash[s] & (cap - 1);
        while (t[h] != 0)
            h = (h + 1) & (cap - 1);
        t[h] = s + 1;
    }
    free(d->htab);
    d->htab = t;
    d->hcap = cap;
    return 0;
}

static uint64_t set_hash(const uint32_t *ids, uint32_t n)
{
    uint64_t h = 0xCBF29CE484222325ull ^ n;
    for (uint32_t i = 0; i < n; i++) {
        h ^= ids[i];
        h *= 0x100000001B3ull;
        h ^= h >> 29;
    }
    return h;
}

/*
 * The state of the set ids[0..n) (any order), made with its row primed:
 * bytes outside first (the union of the stacks' classes; NULL: none) go
 * to the dead state without asking the matcher.
 */
static int intern(gdfa_t *d, const uint32_t *ids, uint32_t n, const uint8_t *first)
{
    if (grow_ids(&d->sorted, &d->cap_sorted, n ? n : 1) < 0)
        return ERR_NOMEM;
    uint32_t *s = d->sorted;
    for (uint32_t i = 0; i < n; i++) {     /* insertion sort: states are small */
        uint32_t v = ids[i], j = i;
        while (j > 0 && s[j - 1] > v) {
            s[j] = s[j - 1];
            j--;
        }
        s[j] = v;
    }
    uint64_t h = set_hash(s, n);
    uint32_t mask = d->hcap - 1, i = (uint32_t)h & mask;
    for (; d->htab[i] != 0; i = (i + 1) & mask) {
        uint32_t st = d->htab[i] - 1;
        if (d->hash[st] == h && d->len[st] == n &&
            memcmp(d->ids + d->off[st], s, (size_t)n * sizeof *s) == 0)
            return (int)st;
    }
    if (d->n_states >= GDFA_MAX_STATES || (uint64_t)d->n_ids + n > GDFA_MAX_IDS)
        return ERR_FULL;
    if (grow_states(d) < 0 || grow_ids(&d->ids, &d->cap_ids, (uint64_t)d->n_ids + n) < 0)
        return ERR_NOMEM;
    uint32_t st = d->n_states++;
    d->off[st] = d->n_ids;
    d->len[st] = n;
    d->hash[st] = h;
    memcpy(d->ids + d->n_ids, s, (size_t)n * sizeof *s);
    d->n_ids += n;
    for (unsigned c = 0; c < 256; c++)
        d->next[(size_t)st * 256 + c] = first != NULL && gclass_has(first, c) ? GDFA_UNKNOWN : GDFA_DEAD;
    d->htab[i] = st + 1;
    if ((uint64_t)d->n_states * 2 > d->hcap && rehash(d, d->hcap * 2) < 0)
        return ERR_NOMEM;
    return (int)st;
}

/* ------------------------------------------------------------------ public */

int gdfa_create(gdfa_t **out)
{
    gdfa_t *d = calloc(1, sizeof *d);
    *out = NULL;
    if (d == NULL)
        return ERR_NOMEM;
    if (rehash(d, 64) < 0 || grow_ids(&d->ids, &d->cap_ids, 256) < 0) {   /* ids never NULL */
        gdfa_destroy(d);
        return ERR_NOMEM;
    }
    if (gdfa_clear(d) < 0) {
        gdfa_destroy(d);
        return ERR_NOMEM;
    }
    *out = d;
    return 0;
}

void gdfa_destroy(gdfa_t *d)
{
    if (d == NULL)
        return;
    free(d->off);
    free(d->len);
    free(d->hash);
    free(d->next);
    free(d->ids);
    free(d->htab);
    free(d->sorted);
    free(d);
}

int gdfa_clear(gdfa_t *d)
{
    d->n_states = 0;
    d->n_ids = 0;
    memset(d->htab, 0, (size_t)d->hcap * sizeof *d->htab);
    return intern(d, NULL, 0, NULL) == GDFA_DEAD ? 0 : ERR_NOMEM;
}

uint32_t gdfa_n_states(const gdfa_t *d)
{
    return d->n_states;
}

int gdfa_big(const gdfa_t *d)
{
    return d->n_states > GDFA_MAX_STATES / 2 || d->n_ids > GDFA_MAX_IDS / 2;
}

const uint16_t *gdfa_next_table(const gdfa_t *d)
{
    return d->next;
}

int gdfa_intern(gdfa_t *d, gmatch_t *m)
{
    uint32_t n;
    const uint32_t *top = gm_top_ids(m, &n);
    uint8_t first[32];
    gm_top_bytes(m, first);
    return intern(d, top, n, first);
}

int gdfa_step(gdfa_t *d, gmatch_t *m, uint32_t s, uint8_t c)
{
    size_t at = (size_t)s * 256 + c;
    if (d->next[at] != GDFA_UNKNOWN)
        return d->next[at];
    int rc = gm_push_ids(m, d->ids + d->off[s], d->len[s]);
    if (rc < 0)
        return rc;
    int t = GDFA_DEAD;
    rc = gm_push_byte(m, c);
    if (rc > 0) {
        t = gdfa_intern(d, m);
        gm_pop(m);
    } else if (rc == ERR_NOMEM) {
        t = rc;
    }
    gm_pop(m);
    if (t < 0)
        return t;
    d->next[at] = (uint16_t)t;  /* after the intern: next[] may have moved */
    return t;
}
