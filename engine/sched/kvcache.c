/*
 * kvcache.c - the KV block manager (see kvcache.h for the contract).
 *
 * Every block is in one of three states:
 *   held   ref > 0, on no list;
 *   free   ref == 0, not published, on the free list (a stack);
 *   idle   ref == 0, published, on the idle list (oldest release first).
 * Published blocks, held or idle, are chained in a hash table by key.
 */
#include "kvcache.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "base/err.h"

enum { ON_NONE = 0, ON_FREE = 1, ON_IDLE = 2 };

typedef struct {
    uint32_t ref;
    int32_t prev, next;     /* links on the free or idle list; -1 ends */
    int32_t chain;          /* next published block in the same bucket; -1 ends */
    uint8_t published;
    uint8_t on;             /* ON_NONE, ON_FREE, ON_IDLE */
    kv_key_t key;
} kv_block_t;

typedef struct {
    int32_t head, tail;
    uint32_t n;
} kv_list_t;

struct kv_cache {
    uint32_t n_blocks;
    uint32_t B;
    int prefix_cache;
    uint8_t seed[32];
    kv_block_t *blocks;     /* [n_blocks] */
    int32_t *buckets;       /* [n_buckets] first published block, or -1 */
    uint32_t bucket_mask;   /* n_buckets - 1 */
    kv_list_t free_list;
    kv_list_t idle_list;
    uint32_t n_published;
    uint64_t evictions;
    uint64_t double_frees;
};

/* ---------------------------------------------------------------- lists */

static void list_push_tail(kv_cache_t *kv, kv_list_t *l, int32_t id, uint8_t which)
{
    kv_block_t *b = &kv->blocks[id];
    b->prev = l->tail;
    b->next = -1;
    if (l->tail >= 0)
        kv->blocks[l->tail].next = id;
    else
        l->head = id;
    l->tail = id;
    l->n++;
    b->on = which;
}

static void list_unlink(kv_cache_t *kv, kv_list_t *l, int32_t id)
{
    kv_block_t *b = &kv->blocks[id];
    if (b->prev >= 0)
        kv->blocks[b->prev].next = b->next;
    else
        l->head = b->next;
    if (b->next >= 0)
        kv->blocks[b->next].prev = b->prev;
    else
        l->tail = b->prev;
    b->prev = b->next = -1;
    b->on = ON_NONE;
    l->n--;
}

/* ---------------------------------------------------------------- the key table */

static uint32_t bucket_of(const kv_cache_t *kv, const kv_key_t *k)
{
    uint32_t x;
    memcpy(&x, k->b, sizeof x);
    return x & kv->bucket_mask;
}

static int32_t table_find(const kv_cache_t *kv, const kv_key_t *k)
{
    for (int32_t id = kv->buckets[bucket_of(kv, k)]; id >= 0; id = kv->blocks[id].chain)
        if (memcmp(kv->blocks[id].key.b, k->b, SHA256_BYTES) == 0)
            return id;
    return -1;
}

static void table_insert(kv_cache_t *kv, int32_t id, const kv_key_t *k)
{
    kv_block_t *b = &kv->blocks[id];
    uint32_t h = bucket_of(kv, k);
    b->key = *k;
    b->chain = kv->buckets[h];
    kv->buckets[h] = id;
    b->published = 1;
    kv->n_published++;
}

static void table_remove(kv_cache_t *kv, int32_t id)
{
    kv_block_t *b = &kv->blocks[id];
    int32_t *link = &kv->buckets[bucket_of(kv, &b->key)];
    while (*link >= 0 && *link != id)
        link = &kv->blocks[*link].chain;
    if (*link == id)
        *link = b->chain;
    b->chain = -1;
    b->published = 0;
    kv->n_published--;
}

/* key = SHA-256(parent key || the block's tokens as little-endian int32) */
static void block_key(const kv_key_t *parent, const int32_t *tokens, uint32_t n, kv_key_t *out)
{
    sha256_t s;
    uint8_t buf[4 * 64];
    sha256_init(&s);
    sha256_update(&s, parent->b, SHA256_BYTES);
    for (uint32_t i = 0; i < n; i += 64) {
        uint32_t m = n - i < 64 ? n - i : 64;
        for (uint32_t j = 0; j < m; j++) {
            uint32_t t = (uint32_t)tokens[i + j];
            buf[4 * j] = (uint8_t)t;
            buf[4 * j + 1] = (uint8_t)(t >> 8);
            buf[4 * j + 2] = (uint8_t)(t >> 16);
            buf[4 * j + 3] = (uint8_t)(t >> 24);
        }
        sha256_update(&s, buf, 4 * (size_t)m);
    }
    sha256_final(&s, out->b);
}

/* ---------------------------------------------------------------- create */

int kv_create(kv_cache_t **out, const kv_opts_t *o, char *err, size_t errlen)
{
    *out = NULL;
    if (o->n_blocks == 0 || o->n_blocks > INT32_MAX || o->block_tokens == 0)
        return err_set(err, errlen, ERR_INVALID, "kv cache: %u blocks of %u tokens is not a pool",
                       o->n_blocks, o->block_tokens);
    kv_cache_t *kv = calloc(1, sizeof *kv);
    if (kv == NULL)
        return err_set(err, errlen, ERR_NOMEM, "kv cache: out of memory");
    uint32_t n_buckets = 1;
    while (n_buckets < o->n_blocks && n_buckets < (1u << 30))
        n_buckets <<= 1;
    kv->n_blocks = o->n_blocks;
    kv->B = o->block_tokens;
    kv->prefix_cache = o->prefix_cache;
    kv->bucket_mask = n_buckets - 1;
    kv->blocks = calloc(o->n_blocks, sizeof *kv->blocks);
    kv->buckets = malloc((size_t)n_buckets * sizeof *kv->buckets);
    if (kv->blocks == NULL || kv->buckets == NULL) {
        kv_destroy(kv);
        return err_set(err, errlen, ERR_NOMEM, "kv cache: out of memory for %u blocks", o->n_blocks);
    }
    if (o->seed != NULL) {
        memcpy(kv->seed, o->seed, sizeof kv->seed);
    } else if (getrandom(kv->seed, sizeof kv->seed, 0) != (ssize_t)sizeof kv->seed) {
        int e = errno;
        kv_destroy(kv);
        return err_set(err, errlen, ERR_IO, "kv cache: no random seed for the prefix cache: %s",
                       strerror(e));
    }
    for (uint32_t i = 0; i < n_buckets; i++)
        kv->buckets[i] = -1;
    kv->free_list = (kv_list_t){ -1, -1, 0 };
    kv->idle_list = (kv_list_t){ -1, -1, 0 };
    for (uint32_t i = 0; i < o->n_blocks; i++) {
        kv->blocks[i].chain = -1;
        list_push_tail(kv, &kv->free_list, (int32_t)i, ON_FREE);
    }
    *out = kv;
    return 0;
}

void kv_destroy(kv_cache_t *kv)
{
    if (kv == NULL)
        return;
    free(kv->blocks);
    free(kv->buckets);
    free(kv);
}

uint32_t kv_block_tokens(const kv_cache_t *kv)
{
    return kv->B;
}

uint32_t kv_blocks_for(const kv_cache_t *kv, uint64_t n_tokens)
{
    uint64_t n = (n_tokens + kv->B - 1) / kv->B;
    return n > UINT32_MAX ? UINT32_MAX : (uint32_t)n;
}

uint32_t kv_available(const kv_cache_t *kv)
{
    return kv->free_list.n + kv->idle_list.n;
}

void kv_get_stats(const kv_cache_t *kv, kv_stats_t *st)
{
    st->n_blocks = kv->n_blocks;
    st->n_free = kv->free_list.n + kv->idle_list.n;
    st->n_used = kv->n_blocks - st->n_free;
    st->n_idle = kv->idle_list.n;
    st->n_published = kv->n_published;
    st->evictions = kv->evictions;
    st->double_frees = kv->double_frees;
}

int64_t kv_block_refs(const kv_cache_t *kv, int32_t id)
{
    if (id < 0 || (uint32_t)id >= kv->n_blocks)
        return -1;
    return kv->blocks[id].ref;
}

/* ---------------------------------------------------------------- sequences */

int kv_seq_init(kv_seq_t *q, uint64_t max_tokens, uint32_t block_tokens)
{
    memset(q, 0, sizeof *q);
    if (max_tokens == 0 || block_tokens == 0)
        return ERR_RANGE;
    uint64_t cap = (max_tokens + block_tokens - 1) / block_tokens;
    if (cap > INT32_MAX)
        return ERR_RANGE;
    q->blocks = malloc((size_t)cap * sizeof *q->blocks);
    if (q->blocks == NULL)
        return ERR_NOMEM;
    q->cap = (uint32_t)cap;
    return 0;
}

void kv_seq_close(kv_seq_t *q)
{
    if (q == NULL)
        return;
    free(q->blocks);
    memset(q, 0, sizeof *q);
}

void kv_seq_start(kv_cache_t *kv, kv_seq_t *q, const void *salt, size_t salt_len)
{
    static const char tag[] = "llamad kv root v1";
    uint8_t len[8];
    sha256_t s;
    for (int i = 0; i < 8; i++)
        len[i] = (uint8_t)((uint64_t)salt_len >> (8 * i));
    sha256_init(&s);
    sha256_update(&s, tag, sizeof tag);
    sha256_update(&s, kv->seed, sizeof kv->seed);
    sha256_update(&s, len, sizeof len);
    if (salt_len > 0)
        sha256_update(&s, salt, salt_len);
    sha256_final(&s, q->root.b);
    q->last = q->root;
    q->n_keyed = 0;
}

/* Take a new block for a sequence: a free one, else evict the oldest idle one. */
static int32_t take_block(kv_cache_t *kv)
{
    int32_t id;
    if (kv->free_list.n > 0) {
        id = kv->free_list.tail; /* a stack: the most recently freed block */
        list_unlink(kv, &kv->free_list, id);
    } else if (kv->idle_list.n > 0) {
        id = kv->idle_list.head;
        list_unlink(kv, &kv->idle_list, id);
        table_remove(kv, id);
        kv->evictions++;
    } else {
        return -1;
    }
    kv->blocks[id].ref = 1;
    return id;
}

uint32_t kv_seq_match(kv_cache_t *kv, kv_seq_t *q, const int32_t *tokens, uint32_t n_tokens)
{
    if (!kv->prefix_cache || q->n_blocks != 0 || n_tokens == 0)
        return 0;
    uint32_t max_blocks = (n_tokens - 1) / kv->B;
    if (max_blocks > q->cap)
        max_blocks = q->cap;
    kv_key_t k = q->root;
    uint32_t n = 0;
    for (; n < max_blocks; n++) {
        kv_key_t next;
        block_key(&k, tokens + (uint64_t)n * kv->B, kv->B, &next);
        int32_t id = table_find(kv, &next);
        if (id < 0)
            break;
        kv_block_t *b = &kv->blocks[id];
        if (b->ref == 0)
            list_unlink(kv, &kv->idle_list, id);
        b->ref++;
        q->blocks[n] = id;
        k = next;
    }
    q->n_blocks = n;
    q->n_keyed = n;
    q->last = k;
    return n * kv->B;
}

int kv_seq_reserve(kv_cache_t *kv, kv_seq_t *q, uint64_t n_tokens)
{
    uint64_t want = (n_tokens + kv->B - 1) / kv->B;
    if (want > q->cap)
        return ERR_RANGE;
    if (want <= q->n_blocks)
        return 0;
    uint64_t need = want - q->n_blocks;
    if (need > kv_available(kv))
        return ERR_FULL;
    while (q->n_blocks < want)
        q->blocks[q->n_blocks++] = take_block(kv);
    return 0;
}

void kv_seq_commit(kv_cache_t *kv, kv_seq_t *q, const int32_t *tokens, uint32_t n_computed)
{
    if (!kv->prefix_cache)
        return;
    while ((uint64_t)(q->n_keyed + 1) * kv->B <= n_computed && q->n_keyed < q->n_blocks) {
        kv_key_t k;
        block_key(&q->last, tokens + (uint64_t)q->n_keyed * kv->B, kv->B, &k);
        int32_t id = q->blocks[q->n_keyed];
        if (!kv->blocks[id].published && table_find(kv, &k) < 0)
            table_insert(kv, id, &k);
        q->last = k;
        q->n_keyed++;
    }
}

/* Let go of q's blocks past the first `keep`, last to first. */
static void release_from(kv_cache_t *kv, kv_seq_t *q, uint32_t keep)
{
    while (q->n_blocks > keep) {
        int32_t id = q->blocks[--q->n_blocks];
        if (id < 0 || (uint32_t)id >= kv->n_blocks || kv->blocks[id].ref == 0) {
            kv->double_frees++;
            continue;
        }
        kv_block_t *b = &kv->blocks[id];
        if (--b->ref > 0)
            continue;
        if (b->published)
            list_push_tail(kv, &kv->idle_list, id, ON_IDLE);
        else
            list_push_tail(kv, &kv->free_list, id, ON_FREE);
    }
}

void kv_seq_release(kv_cache_t *kv, kv_seq_t *q)
{
    release_from(kv, q, 0);
    q->n_keyed = 0;
    q->last = q->root;
}

int kv_seq_truncate(kv_cache_t *kv, kv_seq_t *q, uint64_t n_tokens)
{
    if ((uint64_t)q->n_keyed * kv->B > n_tokens)
        return ERR_RANGE;
    uint64_t keep = (n_tokens + kv->B - 1) / kv->B;
    if (keep < q->n_blocks)
        release_from(kv, q, (uint32_t)keep);
    return 0;
}

int kv_seq_fork(kv_cache_t *kv, kv_seq_t *dst, const kv_seq_t *src, uint64_t n_tokens)
{
    if (dst->n_blocks != 0)
        return ERR_STATE;
    uint64_t n = (n_tokens + kv->B - 1) / kv->B;
    if (n > src->n_blocks || n > dst->cap || (uint64_t)src->n_keyed * kv->B > n_tokens)
        return ERR_RANGE;
    for (uint32_t i = 0; i < n; i++) {
        int32_t id = src->blocks[i];
        kv->blocks[id].ref++;   /* held by src: ref > 0 and on no list */
        dst->blocks[i] = id;
    }
    dst->n_blocks = (uint32_t)n;
    dst->n_keyed = src->n_keyed;
    dst->root = src->root;
    dst->last = src->last;
    return 0;
}

int kv_seq_cow(kv_cache_t *kv, kv_seq_t *q, uint64_t pos, int32_t *from, int32_t *to)
{
    uint64_t i = pos / kv->B;
    if (i >= q->n_blocks)
        return 0;
    int32_t old = q->blocks[i];
    if (kv->blocks[old].ref <= 1)
        return 0;
    int32_t id = take_block(kv);
    if (id < 0)
        return ERR_FULL;
    kv->blocks[old].ref--;      /* still > 0: another sequence holds it */
    q->blocks[i] = id;
    *from = old;
    *to = id;
    return 1;
}

/* ---------------------------------------------------------------- checks */

static int check_list(const kv_cache_t *kv, const kv_list_t *l, uint8_t which, const char *name,
                      char *err, size_t errlen)
{
    uint32_t n = 0;
    int32_t prev = -1;
    for (int32_t id = l->head; id >= 0; id = kv->blocks[id].next) {
        const kv_block_t *b = &kv->blocks[id];
        if (++n > kv->n_blocks)
            return err_set(err, errlen, ERR_STATE, "kv: the %s list loops", name);
        if (b->on != which || b->ref != 0 || b->prev != prev)
            return err_set(err, errlen, ERR_STATE, "kv: block %d on the %s list has on=%u ref=%u",
                           id, name, b->on, b->ref);
        if ((which == ON_IDLE) != (b->published != 0))
            return err_set(err, errlen, ERR_STATE, "kv: block %d on the %s list has published=%u",
                           id, name, b->published);
        prev = id;
    }
    if (n != l->n || prev != l->tail)
        return err_set(err, errlen, ERR_STATE, "kv: the %s list holds %u blocks, counted %u", name, n, l->n);
    return 0;
}

int kv_check(const kv_cache_t *kv, char *err, size_t errlen)
{
    int rc;
    if ((rc = check_list(kv, &kv->free_list, ON_FREE, "free", err, errlen)) != 0 ||
        (rc = check_list(kv, &kv->idle_list, ON_IDLE, "idle", err, errlen)) != 0)
        return rc;
    uint32_t held = 0, published = 0;
    for (uint32_t i = 0; i < kv->n_blocks; i++) {
        const kv_block_t *b = &kv->blocks[i];
        if (b->ref > 0) {
            held++;
            if (b->on != ON_NONE)
                return err_set(err, errlen, ERR_STATE, "kv: held block %u is on a list", i);
        } else if (b->on == ON_NONE) {
            return err_set(err, errlen, ERR_STATE, "kv: block %u is held by nobody and on no list", i);
        }
        if (b->published) {
            published++;
            if (table_find(kv, &b->key) != (int32_t)i)
                return err_set(err, errlen, ERR_STATE, "kv: published block %u is not found by its key "
                               "(or its key is published twice)", i);
        }
    }
    if (held + kv->free_list.n + kv->idle_list.n != kv->n_blocks)
        return err_set(err, errlen, ERR_STATE, "kv: %u held + %u free + %u idle != %u blocks", held,
                       kv->free_list.n, kv->idle_list.n, kv->n_blocks);
    if (published != kv->n_published)
        return err_set(err, errlen, ERR_STATE, "kv: %u blocks published, counted %u", published,
                       kv->n_published);
    uint32_t chained = 0;
    for (uint32_t h = 0; h <= kv->bucket_mask; h++)
        for (int32_t id = kv->buckets[h]; id >= 0; id = kv->blocks[id].chain)
            if (++chained > kv->n_blocks || !kv->blocks[id].published)
                return err_set(err, errlen, ERR_STATE, "kv: bucket %u chains an unpublished block %d", h, id);
    if (chained != published)
        return err_set(err, errlen, ERR_STATE, "kv: %u blocks chained, %u published", chained, published);
    return 0;
}
