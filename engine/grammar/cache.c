/*
 * cache.c - the mask cache of one grammar: parser state (its canonical
 * key, see gm_state_key) and vocabulary -> the token mask and its count.
 *
 * Bounded to max_bytes (GCACHE_MAX_BYTES, 32 MiB) of keys and masks per
 * grammar.  An insert that would pass the bound evicts the least
 * recently used entries until it fits: a hit moves its entry to the
 * front of a doubly linked use list, so the states a long generation
 * keeps returning to (a string's loop, whitespace, the next key) stay
 * while the one-off states of its past go.  Any thread: every call
 * takes the lock.
 */
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "engine/grammar/grammar_impl.h"

struct gcache_entry {
    gcache_entry_t *next;       /* in its slot's chain */
    gcache_entry_t *newer, *older;          /* in the use list */
    uint64_t hash;
    const void *vocab;
    int64_t count;
    size_t n_key, n_mask;       /* words */
    size_t bytes;               /* what it counts for in c->bytes */
    uint32_t *key;              /* [n_key] then the mask [n_mask], one allocation */
};

#define GCACHE_SLOTS 4096u

void gcache_init(gcache_t *c)
{
    memset(c, 0, sizeof *c);
    c->max_bytes = GCACHE_MAX_BYTES;
    pthread_mutex_init(&c->lock, NULL);
}

void gcache_close(gcache_t *c)
{
    gcache_entry_t *e = c->newest;
    while (e != NULL) {
        gcache_entry_t *nx = e->older;
        free(e);
        e = nx;
    }
    free(c->slots);
    c->slots = NULL;
    c->newest = c->oldest = NULL;
    c->n_entries = 0;
    c->bytes = 0;
    pthread_mutex_destroy(&c->lock);
}

/* ------------------------------------------------------------------ use list (lock held) */

static void unlink_use(gcache_t *c, gcache_entry_t *e)
{
    if (e->newer != NULL)
        e->newer->older = e->older;
    else
        c->newest = e->older;
    if (e->older != NULL)
        e->older->newer = e->newer;
    else
        c->oldest = e->newer;
    e->newer = e->older = NULL;
}

static void push_newest(gcache_t *c, gcache_entry_t *e)
{
    e->newer = NULL;
    e->older = c->newest;
    if (c->newest != NULL)
        c->newest->newer = e;
    c->newest = e;
    if (c->oldest == NULL)
        c->oldest = e;
}

/* Drop the least recently used entry. */
static void evict_oldest(gcache_t *c)
{
    gcache_entry_t *e = c->oldest;
    gcache_entry_t **p = &c->slots[e->hash % c->n_slots];
    while (*p != e)             /* chains are short: 4096 slots, entries of kilobytes */
        p = &(*p)->next;
    *p = e->next;
    unlink_use(c, e);
    c->n_entries--;
    c->bytes -= e->bytes;
    c->evictions++;
    free(e);
}

static gcache_entry_t *find(gcache_t *c, const void *vocab, const uint32_t *key, size_t n_key,
                            uint64_t hash, size_t n_mask)
{
    for (gcache_entry_t *e = c->slots[hash % c->n_slots]; e != NULL; e = e->next)
        if (e->hash == hash && e->vocab == vocab && e->n_key == n_key && e->n_mask == n_mask &&
            memcmp(e->key, key, n_key * sizeof *key) == 0)
            return e;
    return NULL;
}

/* ------------------------------------------------------------------ get and put */

int64_t gcache_get(gcache_t *c, const void *vocab, const uint32_t *key, size_t n_key,
                   uint64_t hash, uint32_t *mask, size_t n_mask)
{
    int64_t found = -1;
    pthread_mutex_lock(&c->lock);
    gcache_entry_t *e = c->slots != NULL ? find(c, vocab, key, n_key, hash, n_mask) : NULL;
    if (e != NULL) {
        memcpy(mask, e->key + n_key, n_mask * sizeof *mask);
        found = e->count;
        if (c->newest != e) {
            unlink_use(c, e);
            push_newest(c, e);
        }
        c->hits++;
    } else {
        c->misses++;
    }
    pthread_mutex_unlock(&c->lock);
    return found;
}

void gcache_put(gcache_t *c, const void *vocab, const uint32_t *key, size_t n_key, uint64_t hash,
                const uint32_t *mask, size_t n_mask, int64_t count)
{
    size_t bytes = sizeof(gcache_entry_t) + (n_key + n_mask) * sizeof(uint32_t);
    if (bytes > c->max_bytes / 4)
        return;                 /* a giant state is not worth a quarter of the cache */
    gcache_entry_t *e = malloc(bytes);
    if (e == NULL)
        return;                 /* a cache that cannot grow only costs time */
    e->hash = hash;
    e->vocab = vocab;
    e->count = count;
    e->n_key = n_key;
    e->n_mask = n_mask;
    e->bytes = bytes;
    e->key = (uint32_t *)(e + 1);
    memcpy(e->key, key, n_key * sizeof *key);
    memcpy(e->key + n_key, mask, n_mask * sizeof *mask);
    pthread_mutex_lock(&c->lock);
    if (c->slots == NULL) {
        c->slots = calloc(GCACHE_SLOTS, sizeof *c->slots);
        c->n_slots = c->slots != NULL ? GCACHE_SLOTS : 0;
    }
    /* Another thread may have put the same state meanwhile: keep one. */
    if (c->slots == NULL || find(c, vocab, key, n_key, hash, n_mask) != NULL) {
        pthread_mutex_unlock(&c->lock);
        free(e);
        return;
    }
    while (c->oldest != NULL && c->bytes + bytes > c->max_bytes)
        evict_oldest(c);
    e->next = c->slots[hash % c->n_slots];
    c->slots[hash % c->n_slots] = e;
    push_newest(c, e);
    c->n_entries++;
    c->bytes += bytes;
    pthread_mutex_unlock(&c->lock);
}
