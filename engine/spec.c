/*
 * spec.c - speculative decoding by prompt lookup (docs/ENGINE.md,
 * "Speculative decoding"): a decoding sequence proposes the tokens that
 * followed the last occurrence of its latest tokens in its own prompt and
 * output, the step computes them with its token, and each is kept while
 * it is the token the request's own sampler draws there.
 *
 * Each row is sampled exactly as a one-token step would sample it (bias,
 * penalties with the tokens accepted before it, min_tokens, temperature,
 * top-k/p, the draw u = sampler_uniform(seed, index)), so the output is
 * the same token for token as without speculation, greedy or seeded.  For
 * a sampled request this is the standard speculative sampling rule for a
 * proposal that is certain (q(x) = 1 on the draft token x): the draw
 * equals x with probability p(x) (accept), and otherwise is distributed
 * as p with x removed, renormalised (the residual max(p - q, 0)), which is
 * the token kept.  Requests under a constraint are not speculated.
 * Engine thread.
 */
#include <string.h>

#include "engine_impl.h"
#include "base/err.h"

uint32_t spec_lookup(const int32_t *t, uint32_t n, uint32_t ngram, uint32_t k, int32_t *out)
{
    if (n < 2 || k == 0)
        return 0;
    uint32_t g = ngram < n - 1 ? ngram : n - 1;
    for (; g >= 1; g--) {
        const int32_t *pat = t + n - g;
        /* an earlier occurrence t[i, i + g) with at least one token after it, latest first */
        for (uint32_t i = n - g; i-- > 0;) {
            if (t[i] != pat[0] || memcmp(t + i, pat, (size_t)g * sizeof *t) != 0)
                continue;
            uint32_t from = i + g, m = n - from < k ? n - from : k;
            memcpy(out, t + from, (size_t)m * sizeof *t);
            return m;
        }
    }
    return 0;
}

void spec_propose(engine_t *e)
{
    for (sched_seq_t *s = sched_running(e->sched); s != NULL; s = s->next) {
        request_t *q = s->owner;
        s->n_draft = 0;
        /* decoding (a token generated, the last not yet computed), no constraint */
        if (!q->speculate || q->n_generated == 0 || s->n_computed + 1 != s->n_tokens || q->gm != NULL)
            continue;
        /* a step yields at most drafts + 1 tokens: none past max_tokens */
        uint32_t left = q->max_tokens - q->n_generated;
        uint32_t k = e->spec_tokens;
        if (left <= 1)
            continue;
        if (k > left - 1)
            k = left - 1;
        if (k > s->cap_tokens - s->n_tokens)
            k = s->cap_tokens - s->n_tokens;
        s->draft = q->draft;
        s->n_draft = spec_lookup(s->tokens, s->n_tokens, e->spec_ngram, k, q->draft);
    }
}

void spec_verify(engine_t *e, sched_seq_t *s, const bk_argmax_t *am)
{
    request_t *q = s->owner;
    uint32_t d = s->step_n_draft;
    e->spec_drafted += d;
    for (uint32_t j = 0; j <= d; j++) {
        int32_t row = s->step_logit + (int32_t)j;
        int ended;
        if (am != NULL) {
            /* the sampler's greedy result; token -1 is its ERR_RANGE */
            sampler_result_t r = { .token = am[row].token, .logprob = am[row].logprob, .n_top = 0 };
            ended = req_on_sample(e, q, r.token < 0 ? ERR_RANGE : 0, &r);
        } else {
            ended = req_on_logits(e, q, e->logits + (uint64_t)row * e->n_vocab);
        }
        if (ended)
            return; /* q is freed, its blocks with it */
        /* the token drawn at draft position j: the draft is accepted when it is that token */
        if (j == d || s->tokens[s->n_tokens - 1] != q->draft[j] || sched_draft_accept(e->sched, s) != 0)
            break;
        e->spec_accepted++;
    }
    sched_draft_end(e->sched, s);
}
