/*
 * sampler.h - turns one sequence's logits into its next token.
 *
 * Owns: the per-engine scratch (sampler_t, sized once for n_vocab) and the
 * per-request penalty state (sampler_seq_t, storage owned by the caller).
 * sampler_params_validate() is pure and may be called from any thread (the
 * loop thread validates requests at intake).  A sampler_t and the
 * sampler_seq_t values it is used with belong to the engine thread; a
 * sampler_t is not safe to share between threads.  Nothing here allocates
 * per step: sampler_create() and sampler_seq_init() allocate, once per
 * engine and once per request.
 *
 * What one call of sampler_sample() does, in order:
 *
 *   1. logit_bias: bias[id] is added to logits[id] (duplicate ids add up).
 *      -100 leaves a token a probability near e^-100 of its neighbours',
 *      which is a ban in practice; +100 likewise forces one.
 *   2. repetition_penalty p (HF/CTRL): for every distinct token seen in the
 *      prompt or among the generated tokens (the whole request, no last-n
 *      window), logit = logit > 0 ? logit / p : logit * p, once per token
 *      however often it occurred.
 *   3. presence_penalty a and frequency_penalty f (OpenAI): over generated
 *      tokens only (those passed to sampler_seq_accept, not the prompt),
 *      logit -= a * (count > 0) + f * count.
 *      The result is "the processed logits", left in the caller's array.
 *   4. Reported log-probabilities are log_softmax of the processed logits at
 *      temperature 1 over the whole vocabulary: after bias and penalties,
 *      before temperature and truncation, so that temperature, top_k,
 *      top_p and min_p do not change them.  They are within 1e-5 of a
 *      double-precision log_softmax for logits of ordinary size.
 *   5. temperature 0, or top_k 1, is greedy: the argmax, ties to the lowest
 *      id.  Otherwise tokens are drawn from softmax(logits / T) truncated
 *      by, in this order (vLLM v1's order):
 *        min_p: keep p_i >= min_p * p_max (probabilities at temperature T);
 *        top_k: keep the k most probable (ties to the lowest id);
 *        top_p: rank the survivors by probability (ties to the lowest id),
 *               renormalise over them, and keep the shortest prefix whose
 *               mass reaches top_p.
 *      Each filter keeps at least the most probable token.
 *   6. The draw is one uniform number u = sampler_uniform(seed, step), a
 *      pure function of the request's seed and the step index, so a
 *      request's tokens never depend on what else is in the batch.  The
 *      token chosen is the first, in ascending id order, at which the
 *      running sum of the kept weights passes u * (their total).
 *
 * Non-finite logits: -inf is a token that cannot be drawn (it never appears
 * among the top alternatives either); +inf is treated as the largest float;
 * NaN makes the call fail.
 */
#ifndef LLAMAD_SAMPLER_H
#define LLAMAD_SAMPLER_H

#include <stddef.h>
#include <stdint.h>

#include "engine/engine.h"

/* The parameters (sampler_params_t, sampler_bias_t, the SAMPLER_MAX_* limits,
 * sampler_params_init and sampler_params_validate) are declared in
 * engine/engine.h, where the server sees them; sampler.c implements them. */

/* ------------------------------------------------------------------ */
/* Per-request penalty state                                           */
/* ------------------------------------------------------------------ */

/* 0 when n_vocab is a vocabulary size a sampler and a penalty state accept
 * ([1, SAMPLER_MAX_VOCAB]), else ERR_INVALID with a message. */
int sampler_check_vocab(uint32_t n_vocab, char *err, size_t errlen);

typedef struct {
    int32_t id;
    uint32_t count;      /* times generated (saturates) */
    uint32_t in_prompt;  /* 1 when the prompt holds it */
} sampler_tok_t;

/* The distinct tokens of one request: a dense list (so that penalties cost
 * O(distinct tokens)) indexed by an open-addressing hash table. */
typedef struct {
    sampler_tok_t *toks;  /* [cap] in first-seen order; n_toks used */
    uint32_t *slots;      /* [n_slots] 0 = empty, else index + 1 into toks */
    uint32_t n_toks;
    uint32_t cap;
    uint32_t n_slots;     /* a power of two, >= 2 * cap */
    uint32_t n_vocab;
} sampler_seq_t;

/*
 * Make room for the distinct tokens of a request of at most max_tokens
 * tokens (prompt + generated; capacity is min(max_tokens, n_vocab), 20 to
 * 28 bytes per token).  On error *seq is zeroed (safe to close) and err
 * says why: ERR_INVALID for n_vocab 0 or over SAMPLER_MAX_VOCAB, ERR_NOMEM.
 */
int sampler_seq_init(sampler_seq_t *seq, uint32_t n_vocab, uint64_t max_tokens,
                     char *err, size_t errlen);
/* Free the storage; *seq is zeroed.  NULL or a zeroed seq is fine. */
void sampler_seq_close(sampler_seq_t *seq);
/* Forget every token, keep the storage. */
void sampler_seq_reset(sampler_seq_t *seq);

/*
 * Record the prompt (seen by repetition_penalty only).  May be called more
 * than once.  Returns 0, ERR_RANGE for an id outside [0, n_vocab) (tokens
 * before it are recorded), or ERR_FULL past the capacity.
 */
int sampler_seq_add_prompt(sampler_seq_t *seq, const int32_t *tokens,
                           size_t n_tokens);

/* Record one generated token (seen by every penalty).  Returns 0,
 * ERR_RANGE for an id outside [0, n_vocab), or ERR_FULL. */
int sampler_seq_accept(sampler_seq_t *seq, int32_t token);

/* ------------------------------------------------------------------ */
/* Sampling                                                            */
/* ------------------------------------------------------------------ */

typedef struct {
    int32_t token;        /* the token chosen */
    float logprob;        /* its log-probability (see step 4 above) */
    uint32_t n_top;       /* min(n_logprobs, tokens whose logit is not -inf) */
    sampler_logprob_t top[SAMPLER_MAX_LOGPROBS]; /* most probable first,
                                                    ties to the lowest id */
} sampler_result_t;

typedef struct sampler sampler_t;

/* Allocate scratch for a vocabulary of n_vocab tokens (about 16 bytes per
 * token).  On error *out is NULL: ERR_INVALID, ERR_NOMEM. */
int sampler_create(sampler_t **out, uint32_t n_vocab, char *err, size_t errlen);
void sampler_destroy(sampler_t *s);

/*
 * Choose the next token of one sequence.  logits: [n_vocab], the model's
 * output for this position; on return it holds the processed logits
 * (steps 1-3, +inf replaced by FLT_MAX).  seq may be NULL (no penalties);
 * it is only read: the caller passes the chosen token to
 * sampler_seq_accept.  step: the index of the token being generated
 * within its request (0 for the first), so that a sequence recomputed
 * after preemption draws the same numbers.  Allocates nothing.
 * Returns 0 and fills *out; ERR_INVALID for NULL arguments, a seq built
 * for another n_vocab, or params that fail sampler_params_validate;
 * ERR_RANGE when a logit is NaN or every logit is -inf (out untouched).
 * Engine thread.
 */
int sampler_sample(sampler_t *s, const sampler_params_t *p,
                   const sampler_seq_t *seq, float *logits, uint64_t step,
                   sampler_result_t *out);

/*
 * Score a token the model was given rather than one it chose (a prompt
 * token): out->token = token, out->logprob its log_softmax over the raw
 * logits [n_vocab] at temperature 1 (no bias, no penalties: step 4 of
 * nothing processed), and the n_top most probable as in sampler_sample;
 * *rank (rank may be NULL) is 1 + the number of tokens more probable.
 * +inf in logits becomes FLT_MAX.  Returns 0; ERR_INVALID for NULL
 * arguments, a token outside the vocabulary or n_top over
 * SAMPLER_MAX_LOGPROBS; ERR_RANGE for a NaN logit or none finite.
 * Allocates nothing.  Engine thread.
 */
int sampler_score(sampler_t *s, float *logits, int32_t token, uint32_t n_top,
                  sampler_result_t *out, uint32_t *rank);

/*
 * Steps 1-3 alone, in place on logits [n_vocab]: bias, repetition
 * penalty, presence and frequency penalties.  Bias entries with ids
 * outside the vocabulary are skipped (validation rejects them first).
 * seq may be NULL.
 */
void sampler_process_logits(const sampler_params_t *p, const sampler_seq_t *seq,
                            float *logits, uint32_t n_vocab);

/* The uniform draw in [0, 1) of step `step` of a request seeded `seed`:
 * a splitmix64-style hash of (seed, step), 53 bits of precision. */
double sampler_uniform(uint64_t seed, uint64_t step);

#endif
