/*
 * sampler_logits.c - the sampler's parameters (defaults, validation), the
 * per-request penalty state, and steps 1-3 of sampler.h: logit bias, the
 * repetition penalty, the presence and frequency penalties.  The draw
 * itself is sampler.c's.
 */
#include "sampler.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"

/* ================================================================== */
/* Parameters                                                          */
/* ================================================================== */

void sampler_params_init(sampler_params_t *p)
{
    memset(p, 0, sizeof *p);
    p->temperature = 1.0f;
    p->top_p = 1.0f;
    p->repetition_penalty = 1.0f;
}

int sampler_params_validate(const sampler_params_t *p, uint32_t n_vocab,
                            char *err, size_t errlen)
{
    if (p == NULL)
        return err_set(err, errlen, ERR_INVALID, "sampling parameters missing");
    /* lo < v when lo_open, else lo <= v; v <= hi.  NaN fails both. */
    const struct {
        const char *name, *range;
        float v, lo, hi;
        int lo_open;
    } f[] = {
        { "temperature", "[0, 2]", p->temperature, 0.0f, 2.0f, 0 },
        { "top_p", "(0, 1]", p->top_p, 0.0f, 1.0f, 1 },
        { "min_p", "[0, 1]", p->min_p, 0.0f, 1.0f, 0 },
        { "repetition_penalty", "(0, 10]", p->repetition_penalty, 0.0f, 10.0f, 1 },
        { "presence_penalty", "[-2, 2]", p->presence_penalty, -2.0f, 2.0f, 0 },
        { "frequency_penalty", "[-2, 2]", p->frequency_penalty, -2.0f, 2.0f, 0 },
    };
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) {
        int ok = (f[i].lo_open ? f[i].v > f[i].lo : f[i].v >= f[i].lo) &&
                 f[i].v <= f[i].hi;
        if (!ok)
            return err_set(err, errlen, ERR_RANGE, "%s: %g is out of range %s",
                           f[i].name, (double)f[i].v, f[i].range);
    }
    if (p->top_k < 0)
        return err_set(err, errlen, ERR_RANGE,
                       "top_k: %ld is out of range [0, inf) (0 = off)",
                       (long)p->top_k);
    if (p->n_logprobs > SAMPLER_MAX_LOGPROBS)
        return err_set(err, errlen, ERR_RANGE,
                       "top_logprobs: %lu is out of range [0, %d]",
                       (unsigned long)p->n_logprobs, SAMPLER_MAX_LOGPROBS);
    if (p->n_logit_bias > SAMPLER_MAX_LOGIT_BIAS)
        return err_set(err, errlen, ERR_RANGE,
                       "logit_bias: %lu entries, at most %d allowed",
                       (unsigned long)p->n_logit_bias, SAMPLER_MAX_LOGIT_BIAS);
    if (p->n_logit_bias > 0 && p->logit_bias == NULL)
        return err_set(err, errlen, ERR_INVALID,
                       "logit_bias: %lu entries but no array",
                       (unsigned long)p->n_logit_bias);
    for (uint32_t i = 0; i < p->n_logit_bias; i++) {
        const sampler_bias_t *b = &p->logit_bias[i];
        if (b->id < 0 || (uint32_t)b->id >= n_vocab)
            return err_set(err, errlen, ERR_RANGE,
                           "logit_bias: token id %ld is out of range [0, %lu)",
                           (long)b->id, (unsigned long)n_vocab);
        if (!(b->bias >= -100.0f && b->bias <= 100.0f))
            return err_set(err, errlen, ERR_RANGE,
                           "logit_bias: bias %g for token %ld is out of range "
                           "[-100, 100]", (double)b->bias, (long)b->id);
    }
    return 0;
}

/* ================================================================== */
/* Per-request penalty state                                           */
/* ================================================================== */

int sampler_check_vocab(uint32_t n_vocab, char *err, size_t errlen)
{
    if (n_vocab == 0 || n_vocab > SAMPLER_MAX_VOCAB)
        return err_set(err, errlen, ERR_INVALID,
                       "sampler: n_vocab %lu is out of range [1, %lu]",
                       (unsigned long)n_vocab, (unsigned long)SAMPLER_MAX_VOCAB);
    return 0;
}

int sampler_seq_init(sampler_seq_t *seq, uint32_t n_vocab, uint64_t max_tokens,
                     char *err, size_t errlen)
{
    memset(seq, 0, sizeof *seq);
    if (sampler_check_vocab(n_vocab, err, errlen) != 0)
        return ERR_INVALID;
    uint32_t cap = max_tokens < n_vocab ? (uint32_t)max_tokens : n_vocab;
    if (cap == 0)
        cap = 1;
    uint32_t n_slots = 2;
    while (n_slots < 2 * cap)   /* cap <= 2^24: no overflow */
        n_slots *= 2;
    seq->toks = calloc(cap, sizeof *seq->toks);
    seq->slots = calloc(n_slots, sizeof *seq->slots);
    if (seq->toks == NULL || seq->slots == NULL) {
        sampler_seq_close(seq);
        return err_set(err, errlen, ERR_NOMEM,
                       "sampler: no memory for %lu tokens of penalty state",
                       (unsigned long)cap);
    }
    seq->cap = cap;
    seq->n_slots = n_slots;
    seq->n_vocab = n_vocab;
    return 0;
}

void sampler_seq_close(sampler_seq_t *seq)
{
    if (seq == NULL)
        return;
    free(seq->toks);
    free(seq->slots);
    memset(seq, 0, sizeof *seq);
}

void sampler_seq_reset(sampler_seq_t *seq)
{
    if (seq->slots != NULL)
        memset(seq->slots, 0, (size_t)seq->n_slots * sizeof *seq->slots);
    seq->n_toks = 0;
}

/* The entry for `id`, inserted when absent; NULL when the id is out of
 * range (*rc = ERR_RANGE) or the list is full (*rc = ERR_FULL). */
static sampler_tok_t *seq_entry(sampler_seq_t *seq, int32_t id, int *rc)
{
    if (id < 0 || (uint32_t)id >= seq->n_vocab) {
        *rc = ERR_RANGE;
        return NULL;
    }
    uint32_t mask = seq->n_slots - 1;
    /* Fibonacci hashing: the top log2(n_slots) bits of id * 2^32 / phi. */
    uint32_t h = ((uint32_t)id * 2654435769u) >> (32 - __builtin_ctz(mask + 1));
    for (uint32_t i = h & mask;; i = (i + 1) & mask) {
        uint32_t s = seq->slots[i];
        if (s == 0) {
            if (seq->n_toks == seq->cap) {
                *rc = ERR_FULL;
                return NULL;
            }
            seq->toks[seq->n_toks] = (sampler_tok_t){ id, 0, 0 };
            seq->slots[i] = ++seq->n_toks;
            return &seq->toks[seq->n_toks - 1];
        }
        if (seq->toks[s - 1].id == id)
            return &seq->toks[s - 1];
    }
}

int sampler_seq_add_prompt(sampler_seq_t *seq, const int32_t *tokens,
                           size_t n_tokens)
{
    for (size_t i = 0; i < n_tokens; i++) {
        int rc = 0;
        sampler_tok_t *t = seq_entry(seq, tokens[i], &rc);
        if (t == NULL)
            return rc;
        t->in_prompt = 1;
    }
    return 0;
}

int sampler_seq_accept(sampler_seq_t *seq, int32_t token)
{
    int rc = 0;
    sampler_tok_t *t = seq_entry(seq, token, &rc);
    if (t == NULL)
        return rc;
    if (t->count < UINT32_MAX)
        t->count++;
    return 0;
}

/* ================================================================== */
/* Logit processing                                                    */
/* ================================================================== */

void sampler_process_logits(const sampler_params_t *p, const sampler_seq_t *seq,
                            float *logits, uint32_t n_vocab)
{
    for (uint32_t i = 0; i < p->n_logit_bias; i++) {
        int32_t id = p->logit_bias[i].id;
        if (id >= 0 && (uint32_t)id < n_vocab)
            logits[id] += p->logit_bias[i].bias;
    }
    if (seq == NULL)
        return;
    float rep = p->repetition_penalty;
    float pres = p->presence_penalty, freq = p->frequency_penalty;
    if (rep == 1.0f && pres == 0.0f && freq == 0.0f)
        return;
    for (uint32_t i = 0; i < seq->n_toks; i++) {
        const sampler_tok_t *t = &seq->toks[i];
        if (t->id < 0 || (uint32_t)t->id >= n_vocab)
            continue;
        float *l = &logits[t->id];
        /* Every entry was seen in the prompt or generated. */
        if (rep != 1.0f)
            *l = *l > 0.0f ? *l / rep : *l * rep;
        if (t->count > 0)
            *l -= pres + freq * (float)t->count;
    }
}
