/*
 * grammar_impl.h - what build.c, grammar.c, match.c and vocab.c share:
 * the builder's growing tables, the frozen grammar, and the mask cache.
 * Nothing outside engine/grammar/ includes it.
 */
#ifndef LLAMAD_GRAMMAR_IMPL_H
#define LLAMAD_GRAMMAR_IMPL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "base/err.h"
#include "engine/grammar/grammar.h"

/* A frozen alternative ends with this kind of element (never built by callers). */
#define GE_END 0u

#define GB_DEF_MAX_RULES    20000u
#define GB_DEF_MAX_ELEMENTS 400000u
#define GB_DEF_MAX_REPEAT   10000u
#define GB_MAX_NAME         256u     /* longer rule names are cut */

/* One alternative while building: elements b->elems[first .. first + n). */
typedef struct {
    uint32_t rule;
    uint32_t first;
    uint32_t n;
} galt_t;

typedef struct {
    char *name;                 /* NULL: anonymous */
    uint32_t n_alts;
    uint8_t by_name;            /* made by gb_named (must be given an alternative) */
} grule_b_t;

struct gbuild {
    grammar_limits_t lim;
    int failed;                 /* sticky error code, 0 while none */
    char msg[ERR_MSG_MAX];
    grule_b_t *rules;   uint32_t n_rules, cap_rules;
    galt_t *alts;       uint32_t n_alts, cap_alts;
    gelem_t *elems;     uint32_t n_elems, cap_elems;
    uint8_t (*classes)[32]; uint32_t n_classes, cap_classes;
    uint32_t *class_hash; uint32_t class_hash_cap;   /* class id + 1, 0 empty */
    uint32_t *name_hash;  uint32_t name_hash_cap;    /* rule id + 1, 0 empty */
};

/* The mask cache of one grammar (cache.c): bounded, least recently used entries evicted first. */
typedef struct gcache_entry gcache_entry_t;
typedef struct {
    pthread_mutex_t lock;
    gcache_entry_t **slots;     /* open hashing by key hash, chained */
    uint32_t n_slots;
    uint32_t n_entries;
    gcache_entry_t *newest, *oldest;        /* the use order, a doubly linked list */
    size_t bytes;               /* keys + masks held */
    size_t max_bytes;           /* GCACHE_MAX_BYTES (tests may lower it before the first put) */
    uint64_t hits, misses, evictions;
} gcache_t;

#define GCACHE_MAX_BYTES ((size_t)32 << 20)

/*
 * The frozen grammar.  Positions are indexes into elems: rule r's
 * alternatives start at elems[alt_start[rule_alt[r] .. rule_alt[r + 1])],
 * and every alternative ends with a GE_END element.
 */
struct grammar {
    atomic_int refs;
    uint32_t n_rules;
    char **names;               /* [n_rules], NULL where anonymous */
    uint32_t *rule_alt;         /* [n_rules + 1] */
    uint32_t *alt_start;        /* [n_alts] */
    uint32_t n_alts;
    gelem_t *elems;             /* [n_elems] */
    uint32_t n_elems;
    uint8_t (*classes)[32];     /* [n_classes] */
    uint32_t n_classes;
    uint32_t root;
    gcache_t cache;
};

static inline int gclass_has(const uint8_t set[32], unsigned c)
{
    return (set[c >> 3] >> (c & 7)) & 1;
}

/* grammar.c: the name shown for rule r of g ("_N" when anonymous) into buf. */
const char *grammar_rule_name(const grammar_t *g, uint32_t r, char *buf, size_t cap);

/* cache.c: the mask cache (gb_finish inits it, grammar_release closes it). */
void gcache_init(gcache_t *c);
void gcache_close(gcache_t *c);
/* The cached mask of (vocab, key) copied into mask and its count, or -1 when absent. */
int64_t gcache_get(gcache_t *c, const void *vocab, const uint32_t *key, size_t n_key,
                   uint64_t hash, uint32_t *mask, size_t n_mask);
/* Remember a mask (best effort: nothing happens when memory is short). */
void gcache_put(gcache_t *c, const void *vocab, const uint32_t *key, size_t n_key, uint64_t hash,
                const uint32_t *mask, size_t n_mask, int64_t count);

#endif

/* ------------------------------------------------------------------ matcher internals (match.c) for vocab.c */

/*
 * The matcher keeps a stack of levels, each a parser state (a set of
 * stack ids); level 0 is what gm_feed accepted.  gm_push_byte pushes the
 * state after byte c (returns its number of stacks; 0 pushes nothing),
 * gm_pop drops the top level: the trie walk descends and backtracks
 * with them.  Negative: ERR_FULL (caps) or ERR_NOMEM.
 */
int gm_push_byte(gmatch_t *m, uint8_t c);
void gm_pop(gmatch_t *m);
/* Whether the top level accepts / the union of the bytes its stacks may take next. */
int gm_top_accepting(const gmatch_t *m);
void gm_top_bytes(const gmatch_t *m, uint8_t set[32]);
/*
 * The canonical serialisation of the top level (each stack's positions
 * from top to bottom, stacks in a content order), independent of the
 * matcher's own ids: *key (borrowed until the next call on m), *n words,
 * *hash.  ERR_NOMEM.
 */
int gm_state_key(gmatch_t *m, const uint32_t **key, size_t *n, uint64_t *hash);
grammar_t *gm_grammar(const gmatch_t *m);
/* The stack ids of the top level: borrowed until the next call on m. */
const uint32_t *gm_top_ids(const gmatch_t *m, uint32_t *n);
/* Push a level holding the stack ids ids[0..n) (a set from gm_top_ids of this matcher).  ERR_NOMEM. */
int gm_push_ids(gmatch_t *m, const uint32_t *ids, uint32_t n);

/* ------------------------------------------------------------------ the matcher's state DFA (mask_dfa.c) */

/*
 * The DFA of gm_mask's trie walk: states are interned sets of m's stack
 * ids, GDFA_DEAD the empty set, next[s * 256 + c] the state after byte c
 * (GDFA_UNKNOWN until gdfa_step computes it).  The matcher owns one
 * (gm_dfa, made on first use) and clears it when its arena is compacted.
 */
typedef struct gdfa gdfa_t;
#define GDFA_DEAD    0
#define GDFA_UNKNOWN UINT16_MAX
/* A DFA holding only the dead state.  ERR_NOMEM. */
int gdfa_create(gdfa_t **out);
void gdfa_destroy(gdfa_t *d);            /* NULL is fine */
/* Forget every state but the dead one (state numbers held are void).  0 or ERR_NOMEM. */
int gdfa_clear(gdfa_t *d);
/* How many states d holds (the dead one included); for tests. */
uint32_t gdfa_n_states(const gdfa_t *d);
/* Whether d holds more than half its caps (a walk should clear it first). */
int gdfa_big(const gdfa_t *d);
/*
 * The state of m's top level (m's arena must be the one d's sets name);
 * a new state's row is primed: the bytes no stack can take lead to
 * GDFA_DEAD at once.  ERR_FULL past the DFA's caps, ERR_NOMEM.
 */
int gdfa_intern(gdfa_t *d, gmatch_t *m);
/* The transition table: borrowed until the next gdfa_intern / gdfa_step / gdfa_clear. */
const uint16_t *gdfa_next_table(const gdfa_t *d);
/*
 * The state after state s takes byte c, computed with m (whose arena the
 * ids belong to; m's levels are as they were on return) and remembered.
 * GDFA_DEAD when no stack can take c or a matcher cap would be passed;
 * ERR_FULL past the DFA's caps, ERR_NOMEM.
 */
int gdfa_step(gdfa_t *d, gmatch_t *m, uint32_t s, uint8_t c);
/* m's DFA, made on first use; NULL when memory is short. */
gdfa_t *gm_dfa(gmatch_t *m);

/* ------------------------------------------------------------------ the vocabulary (vocab.c, mask_walk.c) */

#define GVOCAB_NO_PIECE  UINT32_MAX   /* gvocab_t.len of a token a grammar never allows */
#define GVOCAB_MAX_LOOPS 32           /* loop sets remembered per vocabulary */

/* A byte set's tokens and exits (mask_walk.c). */
typedef struct gloop gloop_t;

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
    /* loop sets (mask_walk.c), made on first use, kept until gvocab_destroy; the lock guards the list */
    pthread_mutex_t lock;
    gloop_t *loops[GVOCAB_MAX_LOOPS];
    uint32_t n_loops;
};

/* Set the bits of the tokens trie node spells; their number. */
static inline int64_t gvocab_set_tokens(const gvocab_t *v, uint32_t node, uint32_t *mask)
{
    for (uint32_t k = v->tok_off[node]; k < v->tok_off[node + 1]; k++)
        mask[v->toks[k] >> 5] |= 1u << (v->toks[k] & 31);
    return v->tok_off[node + 1] - v->tok_off[node];
}

/* How many loop sets v holds; for tests. */
uint32_t gvocab_n_loops(const gvocab_t *v);

/* mask_walk.c: free a loop entry. */
void gloop_free(gloop_t *l);
/*
 * Mark in mask (cleared, end tokens already set by the caller) the trie
 * tokens m's top level allows, through m's DFA d.  Their count, or
 * ERR_FULL when d filled up (the caller clears it and walks with the
 * matcher alone), ERR_NOMEM.
 */
int64_t gvocab_walk_dfa(gmatch_t *m, gdfa_t *d, const gvocab_t *v, uint32_t *mask);
