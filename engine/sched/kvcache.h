/*
 * kvcache.h - the KV block manager: which of the backend's KV blocks each
 * sequence owns, reference counts, and the prefix cache.
 *
 * Owns a fixed pool of n_blocks block descriptors, sized once at
 * kv_create; the key and value tensors themselves live in the backend
 * (backend.h), indexed by the block ids handed out here.  Plain C with no
 * backend calls.  Engine thread only (the loop thread never sees it).
 *
 * A sequence's block table (kv_seq_t) covers its positions in order:
 * position p lives in blocks[p / block_tokens], slot p % block_tokens.
 *
 * Prefix caching.  Once a full block's keys and values are computed, the
 * block is published under a key: SHA-256 of the key of the block before
 * it (for the first block, a root made from a per-process random seed and
 * the request's cache salt) and the block's token ids.  Equal keys mean
 * equal token prefixes, so a later sequence whose prompt starts the same
 * way takes those blocks instead of recomputing them (kv_seq_match).  A
 * block is shared only while full and published, and nobody writes into
 * a full block, so sharing needs no copy-on-write.  When its last user
 * lets go, a published block stays in the cache ("idle") and can still be
 * matched; idle blocks are evicted least-recently-released first when
 * plain free blocks run out.  A sequence releases its blocks last to
 * first, so the tail of a prompt is evicted before its shareable head.
 *
 * The secret seed keeps keys unpredictable (no crafted collisions), and
 * the salt keeps tenants that must not share apart (THREATS.md C5).
 *
 * Forking.  Several sequences with the same prompt (a request's n
 * choices) compute it once: kv_seq_fork gives a new sequence references
 * to every block of the one that computed it, the partly filled last
 * block included.  A block held by more than one sequence is read-only;
 * a sequence that is about to write into one (kv_seq_cow, called before
 * each write at a position that is not a block's first) takes a new
 * block for itself, and the caller has the backend copy the shared one's
 * keys and values into it before the write (copy-on-write).  The last
 * holder writes in place.  Blocks are released by reference count, so
 * the sequences of a fork may end in any order.
 *
 * Nothing here allocates after kv_create except kv_seq_init (once per
 * request).
 */
#ifndef LLAMAD_KVCACHE_H
#define LLAMAD_KVCACHE_H

#include <stddef.h>
#include <stdint.h>

#include "base/sha256.h"

typedef struct kv_cache kv_cache_t;

typedef struct {
    uint8_t b[SHA256_BYTES];
} kv_key_t;

/* One sequence's block table.  Storage is the caller's (kv_seq_init). */
typedef struct {
    int32_t *blocks;    /* [cap] block ids; the first n_blocks are held */
    uint32_t n_blocks;
    uint32_t cap;
    uint32_t n_keyed;   /* leading full blocks whose key is known */
    kv_key_t root;      /* key of the empty prefix (seed + salt) */
    kv_key_t last;      /* key of block n_keyed - 1, or root when n_keyed is 0 */
} kv_seq_t;

typedef struct {
    uint32_t n_blocks;      /* the pool */
    uint32_t block_tokens;  /* tokens per block */
    int prefix_cache;       /* 0: no block is ever published or matched */
    const uint8_t *seed;    /* [32] key seed; NULL: random (getrandom) */
} kv_opts_t;

typedef struct {
    uint32_t n_blocks;      /* the pool: n_used + n_free */
    uint32_t n_used;        /* held by at least one sequence */
    uint32_t n_free;        /* allocatable now, idle cached blocks included */
    uint32_t n_idle;        /* of n_free: published, held by nobody, still matchable */
    uint32_t n_published;   /* blocks in the prefix cache, idle or in use */
    uint64_t evictions;     /* idle blocks reclaimed for new data */
    uint64_t double_frees;  /* releases of a block nobody held: a bug if not 0 */
} kv_stats_t;

/*
 * Create a pool of o->n_blocks blocks of o->block_tokens tokens.  Returns
 * 0, ERR_INVALID (no blocks, block_tokens 0, more than INT32_MAX blocks),
 * ERR_NOMEM or ERR_IO (no random seed).  On error *out is NULL.
 */
int kv_create(kv_cache_t **out, const kv_opts_t *o, char *err, size_t errlen);
void kv_destroy(kv_cache_t *kv);

uint32_t kv_block_tokens(const kv_cache_t *kv);
/* Blocks needed to hold positions [0, n_tokens). */
uint32_t kv_blocks_for(const kv_cache_t *kv, uint64_t n_tokens);
/* Blocks a sequence could be given right now (free + idle). */
uint32_t kv_available(const kv_cache_t *kv);
void kv_get_stats(const kv_cache_t *kv, kv_stats_t *st);

/*
 * Give *q room for a sequence of at most max_tokens positions.  Allocates
 * (once per request, on any thread: it touches no kv_cache_t).  Returns 0,
 * ERR_RANGE (max_tokens 0 or block_tokens 0) or ERR_NOMEM; on error *q is
 * zeroed (safe to close).
 */
int kv_seq_init(kv_seq_t *q, uint64_t max_tokens, uint32_t block_tokens);
/* Free the table's storage (the sequence must hold no blocks).  NULL-safe. */
void kv_seq_close(kv_seq_t *q);

/*
 * Set the sequence's root key from the cache salt (salt may be NULL when
 * salt_len is 0).  The sequence must hold no blocks.
 */
void kv_seq_start(kv_cache_t *kv, kv_seq_t *q, const void *salt, size_t salt_len);

/*
 * For a sequence holding no blocks: take the longest run of published
 * blocks that hold tokens[0 .. k * block_tokens), leaving at least the
 * last token to be computed (k * block_tokens < n_tokens).  The blocks'
 * reference counts go up.  Returns the number of tokens covered (0 when
 * prefix caching is off or nothing matched).
 */
uint32_t kv_seq_match(kv_cache_t *kv, kv_seq_t *q, const int32_t *tokens, uint32_t n_tokens);

/*
 * Make the sequence hold blocks for positions [0, n_tokens), taking new
 * blocks (free first, then the least recently used idle ones).  Returns 0,
 * ERR_RANGE past the table's capacity, or ERR_FULL when the pool cannot
 * supply them; on error nothing changes.
 */
int kv_seq_reserve(kv_cache_t *kv, kv_seq_t *q, uint64_t n_tokens);

/*
 * Tokens [0, n_computed) of the sequence now have their keys and values
 * in the cache: key every newly full block and publish it, unless another
 * block already holds that key (which keeps the first).  tokens: the
 * sequence's tokens, at least n_computed of them.
 */
void kv_seq_commit(kv_cache_t *kv, kv_seq_t *q, const int32_t *tokens, uint32_t n_computed);

/*
 * Let go of every block the sequence holds, last to first.  Published
 * blocks nobody else holds become idle (still matchable); the others
 * become free.  The table is then empty and its root kept.
 */
void kv_seq_release(kv_cache_t *kv, kv_seq_t *q);

/*
 * Shorten the sequence to positions [0, n_tokens): let go of the blocks
 * past them, last to first, as kv_seq_release does (a block another
 * sequence shares stays theirs; a published one becomes idle).  A kept
 * block that is shared stays shared: the next write into it goes through
 * kv_seq_cow.  Returns 0 (n_tokens at or past what the sequence holds
 * changes nothing), or ERR_RANGE when n_tokens would cut a block the
 * sequence has keyed (its contents are published under those tokens);
 * on error nothing changes.
 */
int kv_seq_truncate(kv_cache_t *kv, kv_seq_t *q, uint64_t n_tokens);

/*
 * Make dst, which holds no blocks, share the blocks of src that hold
 * positions [0, n_tokens) (src's computed tokens): their reference
 * counts go up, and dst's keys continue where src's stop (same root, so
 * the same salt).  Returns 0, ERR_STATE when dst holds blocks, or
 * ERR_RANGE when src does not hold n_tokens positions, dst's table is
 * too small, or n_tokens would cut a block src has keyed; on error
 * nothing changes.
 */
int kv_seq_fork(kv_cache_t *kv, kv_seq_t *dst, const kv_seq_t *src, uint64_t n_tokens);

/*
 * Copy-on-write: the sequence is about to write position pos.  When the
 * block holding it is shared (reference count above 1), take a new block
 * in its place, let go of the shared one, set *from and *to to the old
 * and the new block id and return 1: the caller copies block *from into
 * *to before any write.  Returns 0 when there is nothing to copy (no
 * block there yet, or the sequence holds it alone; *from and *to are
 * left alone), ERR_FULL when no block can be taken (nothing changes).
 */
int kv_seq_cow(kv_cache_t *kv, kv_seq_t *q, uint64_t pos, int32_t *from, int32_t *to);

/*
 * Check the pool's invariants (O(n_blocks)): every block is either held
 * (ref > 0, on no list) or on exactly one of the free and idle lists; the
 * lists' counts match; every published block is findable under its key
 * and no key is published twice.  Returns 0 or ERR_STATE with a message.
 * For tests.
 */
int kv_check(const kv_cache_t *kv, char *err, size_t errlen);

/* Reference count of block id (tests), or -1 when out of range. */
int64_t kv_block_refs(const kv_cache_t *kv, int32_t id);

#endif
