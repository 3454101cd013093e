/*
 * step_cost.h - what one forward step costs in time: the model the
 * scheduler plans with, and the estimator that learns it from the steps
 * the engine has timed.
 *
 * A step computes `tokens` tokens.  The weight GEMMs cost about the same
 * for every token; attention costs about the same for every (token,
 * position it attends to) pair, and a chunk of n new tokens after ctx
 * cached ones has n·ctx + n(n+1)/2 of those pairs (causal: token i sees
 * ctx + i + 1 positions).  So
 *
 *     ns ≈ per_step + per_token · tokens + per_pair · pairs.
 *
 * A token budget alone misses the second term: a 512-token chunk at
 * context 5,000 costs many times the first chunk of the same prompt.
 *
 * The coefficients depend on the backend, the model, the threads and the
 * machine, so they are learned where they run: the engine thread feeds
 * every timed step to a cost_fit_t (a window of the last COST_WINDOW
 * steps, fitted by non-negative least squares on relative error, so that
 * one slow outlier step moves it little) and hands the fit to the
 * scheduler.  Plain data, no allocation; engine thread (or a test) only.
 */
#ifndef LLAMAD_STEP_COST_H
#define LLAMAD_STEP_COST_H

#include <stdint.h>

typedef struct {
    double per_step;    /* ns, whatever the step holds */
    double per_token;   /* ns per token computed */
    double per_pair;    /* ns per (token, attended position) pair */
    double max_tokens;  /* the most tokens of a step the fit has seen (0: no bound) */
} sched_cost_t;

/* Attention pairs of a chunk of n new tokens after ctx cached ones. */
static inline uint64_t cost_pairs(uint64_t ctx, uint64_t n)
{
    return n * ctx + n * (n + 1) / 2;
}

/* The estimated ns of a step of `tokens` tokens and `pairs` pairs under c. */
static inline double cost_of(const sched_cost_t *c, uint64_t tokens, uint64_t pairs)
{
    return c->per_step + c->per_token * (double)tokens + c->per_pair * (double)pairs;
}

#define COST_WINDOW 48      /* steps the fit looks back on */
#define COST_MIN_STEPS 3    /* steps seen before the fit is used */
#define COST_PROBE_TOKENS 16 /* the longest prefill chunk while no cost is known */
#define COST_GROWTH 4        /* a chunk is at most this many times the largest step timed */

typedef struct {
    double tokens[COST_WINDOW];
    double pairs[COST_WINDOW];
    double ns[COST_WINDOW];
    uint32_t n;             /* entries in use */
    uint32_t next;          /* ring position of the next entry */
    sched_cost_t fit;       /* all zero until COST_MIN_STEPS steps are seen */
} cost_fit_t;

void cost_fit_init(cost_fit_t *f);

/*
 * Record one timed step and refit.  Steps with no tokens or no time are
 * ignored.  Cheap: a handful of 3x3 solves over the window.
 */
void cost_fit_add(cost_fit_t *f, uint64_t tokens, uint64_t pairs, uint64_t ns);

#endif
