/*
 * cache.c - the mask cache of one grammar: parser state (its canonical
 * key, see gm_state_key) and vocabulary -> the token mask and its count.
 *
 * Bounded to GCACHE_MAX_BYTES (32 MiB) of keys and masks per grammar;
 * an insert that would pass the bound first empties the whole cache (a
 * request's states are revisited in bursts, so losing the old ones
 * costs one trie walk each).  Any thread: every call takes the lock.
 */
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "engine/grammar/grammar_impl.h"

struct gcache_entry {
    gcache_entry_t *next;
    uint64_t hash;
    const void *vocab;
    int64_t count;
    size_t n_key, n_mask;       /* words */
    uint32_t *key;              /* [n_key] then the mask [n_mask], one allocation */
};

#define GCACHE_SLOTS 4096u

void gcache_init(gcache_t *c)
{
    memset(c, 0, sizeof *c);
    pthread_mutex_init(&c->lock, NULL);
}

static void drop_all(gcache_t *c)
{
    for (uint32_t i = 0; c->slots != NULL && i < c->n_slots; i++) {
        gcache_entry_t *e = c->slots[i];
        while (e != NULL) {
            gcache_entry_t *nx = e->next;
            free(e);
            e = nx;
        }
        c->slots[i] = NULL;
    }
    c->n_entries = 0;
    c->bytes = 0;
}

void gcache_close(gcache_t *c)
{
    drop_all(c);
    free(c->slots);
    c->slots = NULL;
    pthread_mutex_destroy(&c->lock);
}

int64_t gcache_get(gcache_t *c, const void *vocab, const uint32_t *key, size_t n_key,
                   uint64_t hash, uint32_t *mask, size_t n_mask)
{
    int64_t found = -1;
    pthread_mutex_lock(&c->lock);
    if (c->slots != NULL) {
        for (gcache_entry_t *e = c->slots[hash % c->n_slots]; e != NULL; e = e->next)
            if (e->hash == hash && e->vocab == vocab && e->n_key == n_key && e->n_mask == n_mask &&
                memcmp(e->key, key, n_key * sizeof *key) == 0) {
                memcpy(mask, e->key + n_key, n_mask * sizeof *mask);
                found = e->count;
                break;
            }
    }
    if (found >= 0)
        c->hits++;
    else
        c->misses++;
    pthread_mutex_unlock(&c->lock);
    return found;
}

void gcache_put(gcache_t *c, const void *vocab, const uint32_t *key, size_t n_key, uint64_t hash,
                const uint32_t *mask, size_t n_mask, int64_t count)
{
    size_t bytes = sizeof(gcache_entry_t) + (n_key + n_mask) * sizeof(uint32_t);
    if (bytes > GCACHE_MAX_BYTES / 4)
        return;                 /* a giant state is not worth a quarter of the cache */
    gcache_entry_t *e = malloc(bytes);
    if (e == NULL)
        return;                 /* a cache that cannot grow only costs time */
    e->hash = hash;
    e->vocab = vocab;
    e->count = count;
    e->n_key = n_key;
    e->n_mask = n_mask;
    e->key = (uint32_t *)(e + 1);
    memcpy(e->key, key, n_key * sizeof *key);
    memcpy(e->key + n_key, mask, n_mask * sizeof *mask);
    pthread_mutex_lock(&c->lock);
    if (c->slots == NULL) {
        c->slots = calloc(GCACHE_SLOTS, sizeof *c->slots);
        c->n_slots = c->slots != NULL ? GCACHE_SLOTS : 0;
    }
    if (c->slots == NULL) {
        pthread_mutex_unlock(&c->lock);
        free(e);
        return;
    }
    if (c->bytes + bytes > GCACHE_MAX_BYTES)
        drop_all(c);
    /* Another thread may have put the same state meanwhile: keep one. */
    for (gcache_entry_t *o = c->slots[hash % c->n_slots]; o != NULL; o = o->next)
        if (o->hash == hash && o->vocab == vocab && o->n_key == n_key && o->n_mask == n_mask &&
            memcmp(o->key, key, n_key * sizeof *key) == 0) {
            pthread_mutex_unlock(&c->lock);
            free(e);
            return;
        }
    e->next = c->slots[hash % c->n_slots];
    c->slots[hash % c->n_slots] = e;
    c->n_entries++;
    c->bytes += bytes;
    pthread_mutex_unlock(&c->lock);
}
