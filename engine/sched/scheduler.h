/*
 * scheduler.h - iteration-level scheduling (continuous batching): which
 * tokens of which sequences the next forward step computes.
 *
 * Owns the waiting queue and the running set, the KV block tables'
 * growth (through kvcache.h) and the step's batch arrays, all sized once
 * at sched_create; sched_plan and sched_commit allocate nothing.  It knows
 * nothing of sampling, text or threads: the caller (the engine thread, or
 * a test driving a fake backend) plans a step, runs the forward pass on
 * the batch, commits, then appends each sampled token or removes the
 * sequence.  Engine thread only.
 *
 * A step, under a token budget (max_tokens), a time budget (max_step_ns,
 * estimated with the cost model of step_cost.h) and a sequence limit
 * (max_seqs):
 *   1. every running sequence that is decoding gets its one token, whatever
 *      the time budget says (a decode is never starved);
 *   2. running sequences still prefilling get chunks of their prompt, in
 *      admission order, from what is left of both budgets: a chunk's
 *      attention cost grows with the context before it, so a long prompt
 *      advances in smaller chunks as it grows; while other prompts wait
 *      behind it, a chunk takes at most half of the time left;
 *   3. waiting sequences are admitted first-come first-served while both
 *      budgets, the sequence limit and the free blocks allow, each with a
 *      chunk of its prompt; admission stops at the first that does not
 *      fit, so a large request is never overtaken forever.
 * The first prefill chunk of a step gets at least one token even when the
 * time budget is spent (by the decodes, or by a target below one token's
 * cost), so that every step makes progress and no prompt waits forever.
 * Until a cost is set (sched_set_cost), prefill chunks are at most
 * COST_PROBE_TOKENS under a time budget: the first steps, which the cost
 * is learned from, stay short whatever the machine.
 * When a running sequence needs a block and none is free, the most
 * recently admitted running sequence is preempted: its blocks are
 * released and it goes back to the front of the waiting queue, to be
 * recomputed from its prompt and the tokens it already produced (with the
 * prefix cache, whatever of it is still cached is not recomputed).
 *
 * Forks (a request's n choices, kvcache.h).  A sequence with n_forks
 * set stands for a group: it is admitted only when the running set has
 * room for the whole group and, when others run, the free blocks hold,
 * besides its first chunk and the watermark, one block per sibling for
 * the copy of the shared last block.
 * When its prompt is computed the owner forks each sibling from it
 * (sched_fork): the sibling joins the running set sharing the prompt's
 * blocks, and computes nothing until it has a token of its own.  A
 * sequence that writes into a block it shares copies it first: the
 * step's copies (sched_copies) go to the backend before its batch.
 * Once forked, a sibling is a sequence like any other: preempted, it
 * recomputes its own tokens (through the prefix cache where it can).
 *
 * A sequence's tokens are tokens[0 .. n_tokens): the prompt, then each
 * token generated.  Tokens [0, n_computed) have keys and values in the
 * cache.  A step computes tokens [n_computed, n_computed + step_new); when
 * that reaches n_tokens the sequence gets a logit row, and the caller
 * appends the token it samples from it (or removes the sequence).
 * A scoring sequence (n_score) also gets a row for each of its positions
 * in [n_scored, n_score) that the step computes, before its own row.
 */
#ifndef LLAMAD_SCHEDULER_H
#define LLAMAD_SCHEDULER_H

#include <stddef.h>
#include <stdint.h>

#include "batch.h"
#include "kvcache.h"
#include "step_cost.h"

typedef enum {
    SCHED_NEW = 0,      /* not yet added */
    SCHED_WAITING,
    SCHED_RUNNING,
    SCHED_DONE,         /* removed */
} sched_state_t;

typedef struct sched_seq sched_seq_t;

struct sched_seq {
    /* Set by the owner before sched_add. */
    int32_t *tokens;        /* [cap_tokens] the prompt, then generated tokens */
    uint32_t n_tokens;      /* >= 1 */
    uint32_t n_prompt;
    uint32_t cap_tokens;    /* prompt + most tokens it may generate */
    kv_seq_t kv;            /* kv_seq_init'ed for cap_tokens; holds no blocks */
    const void *salt;       /* prefix-cache salt, borrowed while the sequence lives */
    size_t salt_len;
    void *owner;            /* the caller's request */
    int32_t priority;       /* waiting order: lower first, then first come first served */
    uint32_t n_score;       /* scoring (prompt log-probabilities): positions [n_scored,
                               n_score) each want a logit row of their own as they are
                               computed; n_score <= n_tokens - 1 (the last position's
                               row is the sampling row).  0: none */
    uint32_t n_scored;      /* the owner's: advanced past the rows it has consumed.  A
                               sequence with n_scored < n_score bypasses the prefix cache
                               (positions skipped would have no rows) */
    uint32_t n_forks;       /* siblings still to fork from this sequence once its prompt is
                               computed (sched_fork, sched_unfork change it) */
    const int32_t *draft;   /* [n_draft] tokens proposed to follow tokens[n_tokens - 1]
                               (speculative decoding), read by sched_plan only: a decode
                               computes them too, each with a logit row after its own, when
                               the step has the tokens, rows and free blocks to spare */
    uint32_t n_draft;       /* 0: none; positions n_tokens .. must fit cap_tokens */

    /* The scheduler's; the owner may read them. */
    sched_state_t state;
    uint32_t n_computed;
    uint32_t n_cached;      /* prompt tokens found in the prefix cache at first admission */
    uint32_t n_preempted;
    int started;            /* admitted at least once */
    uint64_t admitted_at;   /* admission order (preemption picks the latest) */
    sched_seq_t *prev, *next;

    /* This step's share, valid from sched_plan to the next sched_plan. */
    uint32_t step_new;      /* tokens computed this step (0: not scheduled) */
    int32_t step_logit;     /* row in the step's logits, or -1 */
    int32_t step_score;     /* first of step_n_score consecutive scoring rows, or -1 */
    uint32_t step_n_score;  /* the rows of positions step_score_pos, ... */
    uint32_t step_score_pos;
    uint32_t step_n_draft;  /* draft tokens computed this step: rows step_logit + 1 .. */
    uint32_t step_draft_end;/* positions [0, step_draft_end) have keys and values after it */
    uint32_t step_at;       /* its first token's index in the step's batch */
    int32_t cow_src, cow_dst;   /* a block copied for this step's write, or -1 */
};

/* The most scoring and draft rows one step computes, all sequences together: a scoring
   prompt is prefilled in chunks of at most this many positions while it is scored, and
   drafts take what the scoring rows leave. */
#define SCHED_SCORE_ROWS 64u

typedef struct {
    uint32_t max_tokens;    /* token budget of one step (the forward pass's limit) */
    uint32_t max_seqs;      /* most sequences running (clamped to max_tokens) */
    uint32_t watermark;     /* free blocks admission leaves for the running ones' growth */
    uint64_t max_step_ns;   /* target time of one step under the cost model; 0: none */
} sched_opts_t;

typedef struct {
    uint32_t n_running;
    uint32_t n_waiting;
    uint64_t steps;             /* steps planned with work */
    uint64_t tokens;            /* tokens computed, all steps */
    uint64_t prompt_tokens;     /* of those, prompt positions (prefill work, recomputes included) */
    uint64_t recomputed;        /* of those, tokens computed again after a preemption */
    uint64_t cached_tokens;     /* prompt tokens taken from the prefix cache at first admission */
    uint64_t cache_hits;        /* sequences that found any of their prompt cached */
    uint64_t preemptions;
    uint64_t admitted;          /* first admissions */
    uint32_t last_tokens;       /* the last step's tokens and sequences */
    uint32_t last_seqs;
    uint64_t last_pairs;        /* the last step's attention pairs (step_cost.h) */
    double last_est_ns;         /* its estimated time under the cost in force (0: none) */
} sched_stats_t;

typedef struct sched sched_t;

/*
 * The block manager is borrowed until sched_destroy.  Returns 0,
 * ERR_INVALID (a zero limit) or ERR_NOMEM; on error *out is NULL.
 */
int sched_create(sched_t **out, kv_cache_t *kv, const sched_opts_t *o, char *err, size_t errlen);
/* The sequences still queued or running are left to their owners. */
void sched_destroy(sched_t *s);

/* Limits in force (max_seqs after clamping). */
uint32_t sched_max_tokens(const sched_t *s);
uint32_t sched_max_seqs(const sched_t *s);

/*
 * The cost model the time budget is planned with, from the next
 * sched_plan on (copied).  All zero: no time bound.
 */
void sched_set_cost(sched_t *s, const sched_cost_t *c);

/*
 * Queue a new sequence (state SCHED_NEW) in the waiting queue: after every
 * waiting sequence of the same or a lower priority, before those of a higher
 * one (all 0: at the back).  A walk over the waiting queue, no allocation.
 */
void sched_add(sched_t *s, sched_seq_t *q);

/*
 * Take a sequence out, waiting or running, and release its blocks (state
 * SCHED_DONE).  Not between sched_plan and sched_commit.  A sequence not
 * queued is left alone.
 */
void sched_remove(sched_t *s, sched_seq_t *q);

/*
 * Plan the next step: preempt, admit and fill *b (its arrays belong to the
 * scheduler and stay valid until the next sched_plan).  The scheduled
 * sequences are *seqs[0 .. return value); each has step_new > 0 and
 * step_logit set.  Returns 0 when there is nothing to do.
 */
uint32_t sched_plan(sched_t *s, batch_t *b, sched_seq_t *const **seqs);

/*
 * The KV block copies the planned step needs before its forward pass
 * (copy-on-write): block (*src)[i] into (*dst)[i] for i below the return
 * value.  The arrays are the scheduler's, valid until the next sched_plan.
 */
uint32_t sched_copies(const sched_t *s, const int32_t **src, const int32_t **dst);

/*
 * The step's forward pass has run: advance each scheduled sequence's
 * n_computed and publish its newly full blocks in the prefix cache.
 */
void sched_commit(sched_t *s);

/*
 * Append one generated token to a running sequence whose tokens are all
 * computed.  Returns 0, or ERR_FULL at cap_tokens (the caller finishes it),
 * or ERR_STATE when the sequence is not in that state.
 */
int sched_append(sched_t *s, sched_seq_t *q, int32_t token);

/*
 * Speculative decoding, after sched_commit: when the token just appended
 * to q (sched_append) is the draft token the step computed at that
 * position, its keys and values are in the cache: count it computed.
 * Returns 0, or ERR_STATE when the step did not compute that position or
 * computed another token there (nothing changes).
 */
int sched_draft_accept(sched_t *s, sched_seq_t *q);

/*
 * Speculative decoding, once q's accepted drafts are appended: let go of
 * the blocks that only the rejected draft positions used.
 */
void sched_draft_end(sched_t *s, sched_seq_t *q);

/*
 * Fork sibling `child` (SCHED_NEW, holding no blocks, whose tokens equal
 * parent's computed ones) from running sequence `parent` whose tokens are
 * all computed and whose n_forks is not 0: the child runs at once sharing
 * parent's blocks (kv_seq_fork), with parent's tokens computed, and
 * parent's n_forks goes down.  Not between sched_plan and sched_commit.
 * Returns 0, or ERR_STATE / ERR_INVALID when those conditions do not hold
 * (nothing changes).  No allocation.
 */
int sched_fork(sched_t *s, sched_seq_t *parent, sched_seq_t *child);

/* A sibling of parent will never be forked (it was cancelled): n_forks goes down. */
void sched_unfork(sched_t *s, sched_seq_t *parent);

void sched_get_stats(const sched_t *s, sched_stats_t *st);

/* The first waiting and running sequences (oldest first; follow ->next). */
sched_seq_t *sched_waiting(const sched_t *s);
sched_seq_t *sched_running(const sched_t *s);

#endif
