/*
 * constraint.c - output constraints as the engine serves them: the
 * vocabulary's byte trie (built once at load), the cache of compiled
 * grammars (keyed by a hash of kind and source, bounded, least recently
 * used out first), and per request the parser state and the token mask
 * applied to its logits before sampling.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE   /* memmem, strnlen */
#endif
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "engine_impl.h"
#include "base/err.h"
#include "base/log.h"
#include "base/sha256.h"

/* A token the grammar may produce: one with text, not a control or unknown-type token. */
static const void *vocab_piece(void *ctx, int32_t id, size_t *len)
{
    const tokenizer_t *t = ctx;
    int type = tok_type(t, id);
    if (type == TOK_TYPE_CONTROL || type == TOK_TYPE_UNKNOWN || type == TOK_TYPE_UNUSED)
        return NULL;
    const char *p = tok_piece(t, id, len);
    return p != NULL && *len > 0 ? p : NULL;
}

int constraint_setup(engine_t *e, char *err, size_t errlen)
{
    const int32_t *eog;
    size_t n_eog = tok_eog_ids(e->model->tok, &eog);
    pthread_mutex_init(&e->gc_mu, NULL);
    e->gc_mu_ready = 1;
    uint64_t t0 = engine_now_ns();
    int rc = gvocab_create(&e->gvocab, e->n_vocab, vocab_piece, (void *)e->model->tok, eog, n_eog,
                           err, errlen);
    if (rc == 0)
        log_debug("constraints: the vocabulary's byte trie (%u tokens) built in %.1f ms", e->n_vocab,
                  (double)(engine_now_ns() - t0) / 1e6);
    return rc;
}

void constraint_teardown(engine_t *e)
{
    for (size_t i = 0; i < ENGINE_CONSTRAINT_CACHE; i++)
        grammar_release(e->gc[i].g);
    gvocab_destroy(e->gvocab);
    if (e->gc_mu_ready)
        pthread_mutex_destroy(&e->gc_mu);
}

static int compile_kind(engine_constraint_kind_t kind, const char *src, size_t len, grammar_t **g,
                        char *err, size_t errlen)
{
    switch (kind) {
    case ENGINE_CONSTRAINT_JSON_OBJECT: return grammar_from_json_schema(NULL, 0, NULL, g, err, errlen);
    case ENGINE_CONSTRAINT_JSON_SCHEMA: return grammar_from_json_schema(src, len, NULL, g, err, errlen);
    case ENGINE_CONSTRAINT_REGEX:       return grammar_from_regex(src, len, NULL, g, err, errlen);
    case ENGINE_CONSTRAINT_CHOICE:      return grammar_from_choice(src, len, NULL, g, err, errlen);
    case ENGINE_CONSTRAINT_GBNF:        return grammar_from_gbnf(src, len, NULL, g, err, errlen);
    case ENGINE_CONSTRAINT_TOOL_CALLS:  return grammar_from_tool_calls(src, len, NULL, g, err, errlen);
    }
    return err_set(err, errlen, ERR_INVALID, "unknown constraint kind %d", (int)kind);
}

/*
 * Whether a model with this vocabulary can begin the language at all: the
 * first mask is not empty (it is cached in the grammar, so the first
 * request pays nothing more for it).
 */
static int check_startable(engine_t *e, grammar_t *g, char *err, size_t errlen)
{
    gmatch_t *m;
    uint32_t *mask = malloc(gvocab_mask_words(e->gvocab) * sizeof *mask);
    if (mask == NULL || gm_create(&m, g) != 0) {
        free(mask);
        return err_set(err, errlen, ERR_NOMEM, "out of memory");
    }
    int64_t n = gm_mask(m, e->gvocab, mask);
    gm_destroy(m);
    free(mask);
    if (n < 0)
        return err_set(err, errlen, (int)n, "the constraint's first step failed: %s", err_str((int)n));
    if (n == 0)
        return err_set(err, errlen, ERR_INVALID, "no token of this model's vocabulary can begin "
                       "a text the constraint accepts");
    return 0;
}

int engine_constraint_compile(engine_t *e, engine_constraint_kind_t kind, const char *src,
                              size_t len, engine_constraint_t **out, char *err, size_t errlen)
{
    *out = NULL;
    if (src == NULL && len > 0)
        return err_set(err, errlen, ERR_INVALID, "constraint: no source");
    uint8_t key[SHA256_BYTES];
    sha256_t h;
    uint8_t k = (uint8_t)kind;
    sha256_init(&h);
    sha256_update(&h, &k, 1);
    if (len > 0)
        sha256_update(&h, src, len);
    sha256_final(&h, key);

    pthread_mutex_lock(&e->gc_mu);
    for (size_t i = 0; i < ENGINE_CONSTRAINT_CACHE; i++) {
        if (e->gc[i].g != NULL && memcmp(e->gc[i].key, key, sizeof key) == 0) {
            e->gc[i].used = ++e->gc_tick;
            *out = grammar_ref(e->gc[i].g);
            e->gc_hits++;
            pthread_mutex_unlock(&e->gc_mu);
            return 0;
        }
    }
    pthread_mutex_unlock(&e->gc_mu);

    /* compiled outside the lock: two first requests for one source may both compile it */
    grammar_t *g = NULL;
    uint64_t t0 = engine_now_ns();
    int rc = compile_kind(kind, src, len, &g, err, errlen);
    if (rc == 0 && (rc = check_startable(e, g, err, errlen)) != 0) {
        grammar_release(g);
        return rc;
    }
    if (rc != 0)
        return rc;
    log_debug("constraints: compiled a grammar of %u rules in %.2f ms", grammar_n_rules(g),
              (double)(engine_now_ns() - t0) / 1e6);

    pthread_mutex_lock(&e->gc_mu);
    size_t victim = 0;
    for (size_t i = 0; i < ENGINE_CONSTRAINT_CACHE; i++) {
        if (e->gc[i].g == NULL) {
            victim = i;
            break;
        }
        if (e->gc[i].used < e->gc[victim].used)
            victim = i;
    }
    grammar_t *old = e->gc[victim].g;
    e->gc[victim].g = grammar_ref(g);
    memcpy(e->gc[victim].key, key, sizeof key);
    e->gc[victim].used = ++e->gc_tick;
    e->gc_misses++;
    pthread_mutex_unlock(&e->gc_mu);
    grammar_release(old);
    *out = g;
    return 0;
}

void engine_constraint_release(engine_constraint_t *c)
{
    grammar_release(c);
}

int constraint_req_init(engine_t *e, request_t *q, grammar_t *g, const char *trigger, char *err,
                        size_t errlen)
{
    if (g == NULL)
        return trigger == NULL ? 0 : err_set(err, errlen, ERR_INVALID,
                                             "constraint_trigger: given without a constraint");
    if (trigger != NULL) {
        size_t n = strnlen(trigger, ENGINE_MAX_TRIGGER + 1);
        if (n == 0 || n > ENGINE_MAX_TRIGGER)
            return err_set(err, errlen, ERR_RANGE, "constraint_trigger: %zu bytes (1..%d)", n,
                           ENGINE_MAX_TRIGGER);
        memcpy(q->trigger, trigger, n);
        q->trigger_len = (uint32_t)n;
        if ((q->win = malloc(n + TOK_MAX_TOKEN_BYTES)) == NULL)
            return err_set(err, errlen, ERR_NOMEM, "out of memory for the request's constraint");
    }
    q->mask = malloc(gvocab_mask_words(e->gvocab) * sizeof *q->mask);
    if (q->mask == NULL || gm_create(&q->gm, g) != 0)
        return err_set(err, errlen, ERR_NOMEM, "out of memory for the request's constraint");
    return 0;
}

void constraint_req_close(request_t *q)
{
    gm_destroy(q->gm);
    q->gm = NULL;
    free(q->mask);
    q->mask = NULL;
    free(q->win);
    q->win = NULL;
}

int constraint_watch(engine_t *e, request_t *q, int32_t token)
{
    size_t n = 0;
    const char *p = vocab_piece((void *)e->model->tok, token, &n);
    if (p == NULL || n > TOK_MAX_TOKEN_BYTES) {
        q->win_len = 0;   /* a control token breaks the text: no trigger spans it */
        return 0;
    }
    memcpy(q->win + q->win_len, p, n);
    q->win_len += (uint32_t)n;
    const char *at = memmem(q->win, q->win_len, q->trigger, q->trigger_len);
    if (at == NULL) {
        uint32_t keep = q->trigger_len - 1;   /* a trigger may still end in the next token */
        if (q->win_len > keep) {
            memmove(q->win, q->win + q->win_len - keep, keep);
            q->win_len = keep;
        }
        return 0;
    }
    q->armed = 1;
    q->mask_ready = 0;
    return gm_feed(q->gm, at, (size_t)(q->win + q->win_len - at));
}

int constraint_mask(engine_t *e, request_t *q)
{
    int64_t n = gm_mask(q->gm, e->gvocab, q->mask);
    q->mask_ready = n > 0;
    return n < 0 ? (int)n : n == 0 ? ERR_STATE : 0;
}

void constraint_apply(engine_t *e, const request_t *q, float *logits)
{
    const uint32_t *m = q->mask;
    size_t words = gvocab_mask_words(e->gvocab);
    for (size_t w = 0; w < words; w++) {
        uint32_t bits = m[w];
        if (bits == UINT32_MAX)
            continue;
        size_t base = w * 32, end = base + 32 < e->n_vocab ? base + 32 : e->n_vocab;
        for (size_t i = base; i < end; i++)
            if (!(bits >> (i - base) & 1u))
                logits[i] = -INFINITY;
    }
}

/* ---------------------------------------------------------------- masks beside the forward pass */

/*
 * One worker thread computes the masks of a step's constrained rows while
 * the engine thread runs the forward pass: the next mask depends only on
 * the tokens accepted so far, which the forward pass does not change.
 * The engine thread hands over the rows (constraint_masks_begin) and
 * takes them back (constraint_masks_end) before sampling; in between it
 * touches neither the rows' parser states nor their masks.
 */
static void *mask_worker(void *arg)
{
    engine_t *e = arg;
    pthread_mutex_lock(&e->mk_mu);
    for (;;) {
        while (!e->mk_stop && e->mk_n == 0)
            pthread_cond_wait(&e->mk_cv, &e->mk_mu);
        if (e->mk_stop)
            break;
        uint32_t n = e->mk_n;
        pthread_mutex_unlock(&e->mk_mu);
        for (uint32_t i = 0; i < n; i++) {
            request_t *q = e->mk_rows[i];
            if (constraint_mask(e, q) != 0)
                q->mask_ready = 0;   /* sampling computes it again and reports the failure */
        }
        pthread_mutex_lock(&e->mk_mu);
        e->mk_n = 0;
        pthread_cond_broadcast(&e->mk_done_cv);
    }
    pthread_mutex_unlock(&e->mk_mu);
    return NULL;
}

int constraint_start(engine_t *e, char *err, size_t errlen)
{
    e->mk_rows = calloc(e->max_seqs ? e->max_seqs : 1, sizeof *e->mk_rows);
    if (e->mk_rows == NULL)
        return err_set(err, errlen, ERR_NOMEM, "out of memory");
    pthread_mutex_init(&e->mk_mu, NULL);
    pthread_cond_init(&e->mk_cv, NULL);
    pthread_cond_init(&e->mk_done_cv, NULL);
    if (pthread_create(&e->mk_thread, NULL, mask_worker, e) != 0) {
        pthread_mutex_destroy(&e->mk_mu);
        pthread_cond_destroy(&e->mk_cv);
        pthread_cond_destroy(&e->mk_done_cv);
        return err_set(err, errlen, ERR_NOMEM, "cannot start the constraint mask thread");
    }
    pthread_setname_np(e->mk_thread, "llamad-mask");
    e->mk_started = 1;
    return 0;
}

void constraint_stop(engine_t *e)
{
    if (e->mk_started) {
        pthread_mutex_lock(&e->mk_mu);
        e->mk_stop = 1;
        pthread_cond_signal(&e->mk_cv);
        pthread_mutex_unlock(&e->mk_mu);
        pthread_join(e->mk_thread, NULL);
        pthread_mutex_destroy(&e->mk_mu);
        pthread_cond_destroy(&e->mk_cv);
        pthread_cond_destroy(&e->mk_done_cv);
        e->mk_started = 0;
    }
    free(e->mk_rows);
    e->mk_rows = NULL;
}

void constraint_masks_begin(engine_t *e, sched_seq_t *const *seqs, uint32_t n)
{
    uint32_t k = 0;
    for (uint32_t i = 0; i < n && k < e->max_seqs; i++) {
        request_t *q = seqs[i]->owner;
        if (seqs[i]->step_logit >= 0 && req_constrained(q) && !q->mask_ready)
            e->mk_rows[k++] = q;
    }
    if (k == 0 || !e->mk_started)
        return;
    pthread_mutex_lock(&e->mk_mu);
    e->mk_n = k;
    e->mk_busy = 1;
    pthread_cond_signal(&e->mk_cv);
    pthread_mutex_unlock(&e->mk_mu);
}

void constraint_masks_end(engine_t *e)
{
    if (!e->mk_busy)
        return;
    pthread_mutex_lock(&e->mk_mu);
    while (e->mk_n != 0)
        pthread_cond_wait(&e->mk_done_cv, &e->mk_mu);
    pthread_mutex_unlock(&e->mk_mu);
    e->mk_busy = 0;
}
