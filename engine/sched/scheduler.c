/*
 * scheduler.c - continuous batching over the paged KV cache (see
 * scheduler.h for the contract and the order of a step).
 */
#include "scheduler.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"

typedef struct {
    sched_seq_t *head, *tail;
    uint32_t n;
} seq_list_t;

struct sched {
    kv_cache_t *kv;
    uint32_t max_tokens, max_seqs, watermark;
    seq_list_t waiting;         /* front: next to admit */
    seq_list_t running;         /* head: admitted first; tail: preempted first */
    uint64_t admissions;        /* counter behind admitted_at */
    uint32_t forks_pending;     /* n_forks of the running sequences: seats kept for them */
    uint64_t max_step_ns;       /* 0: no time budget */
    sched_cost_t cost;          /* the model the time budget is planned with */

    /* this step */
    sched_seq_t **plan;         /* [max_seqs] */
    uint32_t n_plan;
    double est_ns;              /* the plan's estimated time (with the cost in force) */
    double limit_ns;            /* this step's limit, set at its first prefill chunk */
    uint32_t n_prefill;         /* prefill chunks in the plan */
    int out_of_time;            /* a prefill chunk found no time left: no more this step */
    int32_t *tokens;            /* [max_tokens] */
    int32_t *pos;               /* [max_tokens] */
    batch_seq_t *bseqs;         /* [max_seqs] */
    int32_t *logit_rows;        /* [max_seqs + SCHED_SCORE_ROWS] */
    uint32_t score_left;        /* scoring rows this step may still take */
    int32_t *copy_src;          /* [max_seqs] the step's block copies (one per sequence at most) */
    int32_t *copy_dst;          /* [max_seqs] */
    uint32_t n_copies;

    sched_stats_t st;
};

/* ---------------------------------------------------------------- lists */

static void push_back(seq_list_t *l, sched_seq_t *q)
{
    q->next = NULL;
    q->prev = l->tail;
    if (l->tail)
        l->tail->next = q;
    else
        l->head = q;
    l->tail = q;
    l->n++;
}

static void push_front(seq_list_t *l, sched_seq_t *q)
{
    q->prev = NULL;
    q->next = l->head;
    if (l->head)
        l->head->prev = q;
    else
        l->tail = q;
    l->head = q;
    l->n++;
}

/* After the last sequence whose priority is not above q's (the front when none). */
static void push_by_priority(seq_list_t *l, sched_seq_t *q)
{
    sched_seq_t *p = l->tail;
    while (p != NULL && p->priority > q->priority)
        p = p->prev;
    if (p == NULL) {
        push_front(l, q);
        return;
    }
    q->prev = p;
    q->next = p->next;
    if (p->next)
        p->next->prev = q;
    else
        l->tail = q;
    p->next = q;
    l->n++;
}

static void unlink_seq(seq_list_t *l, sched_seq_t *q)
{
    if (q->prev)
        q->prev->next = q->next;
    else
        l->head = q->next;
    if (q->next)
        q->next->prev = q->prev;
    else
        l->tail = q->prev;
    q->prev = q->next = NULL;
    l->n--;
}

/* ---------------------------------------------------------------- create */

int sched_create(sched_t **out, kv_cache_t *kv, const sched_opts_t *o, char *err, size_t errlen)
{
    *out = NULL;
    if (o->max_tokens == 0 || o->max_seqs == 0)
        return err_set(err, errlen, ERR_INVALID, "scheduler: max-batch-tokens %u and max-seqs %u "
                       "must both be at least 1", o->max_tokens, o->max_seqs);
    sched_t *s = calloc(1, sizeof *s);
    if (s == NULL)
        return err_set(err, errlen, ERR_NOMEM, "scheduler: out of memory");
    s->kv = kv;
    s->max_tokens = o->max_tokens;
    /* every running sequence must be able to decode in every step */
    s->max_seqs = o->max_seqs < o->max_tokens ? o->max_seqs : o->max_tokens;
    s->watermark = o->watermark;
    s->max_step_ns = o->max_step_ns;
    s->plan = calloc(s->max_seqs, sizeof *s->plan);
    s->tokens = calloc(s->max_tokens, sizeof *s->tokens);
    s->pos = calloc(s->max_tokens, sizeof *s->pos);
    s->bseqs = calloc(s->max_seqs, sizeof *s->bseqs);
    s->logit_rows = calloc((size_t)s->max_seqs + SCHED_SCORE_ROWS, sizeof *s->logit_rows);
    s->copy_src = calloc(s->max_seqs, sizeof *s->copy_src);
    s->copy_dst = calloc(s->max_seqs, sizeof *s->copy_dst);
    if (!s->plan || !s->tokens || !s->pos || !s->bseqs || !s->logit_rows || !s->copy_src || !s->copy_dst) {
        sched_destroy(s);
        return err_set(err, errlen, ERR_NOMEM, "scheduler: out of memory for %u tokens", o->max_tokens);
    }
    *out = s;
    return 0;
}

void sched_destroy(sched_t *s)
{
    if (s == NULL)
        return;
    free(s->plan);
    free(s->tokens);
    free(s->pos);
    free(s->bseqs);
    free(s->logit_rows);
    free(s->copy_src);
    free(s->copy_dst);
    free(s);
}

uint32_t sched_max_tokens(const sched_t *s)
{
    return s->max_tokens;
}

uint32_t sched_max_seqs(const sched_t *s)
{
    return s->max_seqs;
}

void sched_set_cost(sched_t *s, const sched_cost_t *c)
{
    s->cost = *c;
}

uint32_t sched_copies(const sched_t *s, const int32_t **src, const int32_t **dst)
{
    *src = s->copy_src;
    *dst = s->copy_dst;
    return s->n_copies;
}

sched_seq_t *sched_waiting(const sched_t *s)
{
    return s->waiting.head;
}

sched_seq_t *sched_running(const sched_t *s)
{
    return s->running.head;
}

void sched_get_stats(const sched_t *s, sched_stats_t *st)
{
    *st = s->st;
    st->n_running = s->running.n;
    st->n_waiting = s->waiting.n;
}

/* ---------------------------------------------------------------- queue changes */

void sched_add(sched_t *s, sched_seq_t *q)
{
    if (q->state != SCHED_NEW)
        return;
    q->state = SCHED_WAITING;
    q->n_computed = 0;
    q->step_new = 0;
    q->step_logit = -1;
    q->step_score = -1;
    q->step_n_score = 0;
    q->step_n_draft = 0;
    q->cow_src = q->cow_dst = -1;
    kv_seq_start(s->kv, &q->kv, q->salt, q->salt_len);
    push_by_priority(&s->waiting, q);
}

void sched_remove(sched_t *s, sched_seq_t *q)
{
    if (q->state == SCHED_WAITING) {
        unlink_seq(&s->waiting, q);
    } else if (q->state == SCHED_RUNNING) {
        unlink_seq(&s->running, q);
        s->forks_pending -= q->n_forks;
    } else {
        return;
    }
    kv_seq_release(s->kv, &q->kv);
    q->state = SCHED_DONE;
    q->step_new = 0;
    q->step_n_draft = 0;
    q->step_logit = -1;
    q->step_score = -1;
    q->step_n_score = 0;
}

int sched_append(sched_t *s, sched_seq_t *q, int32_t token)
{
    (void)s;
    if (q->state != SCHED_RUNNING || q->n_computed != q->n_tokens)
        return ERR_STATE;
    if (q->n_tokens >= q->cap_tokens)
        return ERR_FULL;
    q->tokens[q->n_tokens++] = token;
    return 0;
}

int sched_fork(sched_t *s, sched_seq_t *parent, sched_seq_t *child)
{
    if (parent->state != SCHED_RUNNING || parent->n_forks == 0 || parent->n_computed != parent->n_tokens ||
        child->state != SCHED_NEW || child->kv.n_blocks != 0)
        return ERR_STATE;
    if (child->n_tokens != parent->n_computed ||
        memcmp(child->tokens, parent->tokens, (size_t)child->n_tokens * sizeof *child->tokens) != 0)
        return ERR_INVALID;
    int rc = kv_seq_fork(s->kv, &child->kv, &parent->kv, parent->n_computed);
    if (rc != 0)
        return rc;
    parent->n_forks--;
    s->forks_pending--;
    child->state = SCHED_RUNNING;
    child->n_computed = parent->n_computed;
    child->n_cached = parent->n_cached;
    child->started = 1;
    child->step_new = 0;
    child->step_logit = -1;
    child->step_n_draft = 0;
    child->cow_src = child->cow_dst = -1;
    child->admitted_at = ++s->admissions;
    push_back(&s->running, child);
    s->st.admitted++;
    return 0;
}

void sched_unfork(sched_t *s, sched_seq_t *parent)
{
    if (parent->n_forks == 0)
        return;
    parent->n_forks--;
    if (parent->state == SCHED_RUNNING)
        s->forks_pending--;
}

/* ---------------------------------------------------------------- planning */

/* Whether a time budget applies with a cost model to plan it: a target, and a cost set. */
static int timed(const sched_t *s)
{
    const sched_cost_t *c = &s->cost;
    return s->max_step_ns > 0 && (c->per_step > 0.0 || c->per_token > 0.0 || c->per_pair > 0.0);
}

/* The estimated time of n new tokens of a sequence after ctx computed ones. */
static double chunk_cost(const sched_t *s, uint32_t ctx, uint32_t n)
{
    return s->cost.per_token * n + s->cost.per_pair * (double)cost_pairs(ctx, n);
}

/*
 * The largest prefill chunk, at most cap tokens after ctx computed ones,
 * that fits in the time left of the step (cap when there is no time
 * budget; at most COST_PROBE_TOKENS while there is one but no cost yet).
 * With `others` (more prompts wait for this step's time after this one)
 * the chunk takes at most half of the time left, so that a long prompt
 * in prefill never holds a short one back for its whole length.  The
 * step's first prefill chunk gets at least one token; 0 means no more
 * prefill this step.
 */
static uint32_t chunk_fit(sched_t *s, uint32_t ctx, uint32_t cap, int others)
{
    if (s->max_step_ns == 0 || cap == 0)
        return cap;
    if (!timed(s)) /* no cost known yet: short steps, to learn it from */
        return cap < COST_PROBE_TOKENS ? cap : COST_PROBE_TOKENS;
    /* a fit learned on small steps extrapolates badly (per-token cost is not
       flat at a few tokens): grow the chunk at most COST_GROWTH times past
       the largest step seen, so the estimate is checked as it grows */
    double reach = s->cost.max_tokens * COST_GROWTH;
    if (s->cost.max_tokens > 0 && cap > reach)
        cap = reach < 1 ? 1 : (uint32_t)reach;
    /* The step's limit: the target; but when the decodes alone take most of
       it, the prompts still get half a target's worth of time, shared as
       usual, or new requests would crawl a token a step behind a full batch */
    if (s->n_prefill == 0)
        s->limit_ns = fmax((double)s->max_step_ns, s->est_ns + (double)s->max_step_ns / 2);
    double left = s->limit_ns - s->est_ns;
    if (others)
        left /= 2;
    if (chunk_cost(s, ctx, cap) <= left)
        return cap;
    uint32_t lo = 0, hi = cap; /* cost(lo) fits, cost(hi) does not: the cost grows with n */
    while (hi - lo > 1) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (chunk_cost(s, ctx, mid) <= left)
            lo = mid;
        else
            hi = mid;
    }
    if (lo == 0 && s->n_prefill == 0)
        lo = 1; /* every step makes progress */
    if (lo == 0)
        s->out_of_time = 1;
    return lo;
}

/* The scoring rows of positions [n_computed, n_computed + n_new) of q. */
static uint32_t score_rows(const sched_seq_t *q, uint32_t n_new)
{
    uint32_t lo = q->n_computed > q->n_scored ? q->n_computed : q->n_scored;
    uint32_t hi = q->n_computed + n_new < q->n_score ? q->n_computed + n_new : q->n_score;
    return hi > lo ? hi - lo : 0;
}

/*
 * n_new cut so that q's scoring rows fit in what the step has left of
 * SCHED_SCORE_ROWS; 0 when none fits and q has rows to score first.
 */
static uint32_t score_fit(const sched_t *s, const sched_seq_t *q, uint32_t n_new)
{
    if (score_rows(q, n_new) <= s->score_left)
        return n_new;
    uint32_t lo = q->n_computed > q->n_scored ? q->n_computed : q->n_scored;
    return lo + s->score_left - q->n_computed;
}

static void plan_add(sched_t *s, sched_seq_t *q, uint32_t n_new, int prefill, uint32_t *budget)
{
    s->score_left -= score_rows(q, n_new) + q->step_n_draft;
    q->step_new = n_new;
    s->plan[s->n_plan++] = q;
    *budget -= n_new;
    s->est_ns += chunk_cost(s, q->n_computed, n_new);
    s->n_prefill += prefill;
}

static void plan_drop(sched_t *s, sched_seq_t *q, uint32_t *budget)
{
    for (uint32_t i = 0; i < s->n_plan; i++) {
        if (s->plan[i] != q)
            continue;
        memmove(&s->plan[i], &s->plan[i + 1], (s->n_plan - i - 1) * sizeof s->plan[0]);
        s->n_plan--;
        *budget += q->step_new;
        s->score_left += score_rows(q, q->step_new) + q->step_n_draft;
        s->est_ns -= chunk_cost(s, q->n_computed, q->step_new);
        q->step_new = 0;
        q->step_n_draft = 0;
        return;
    }
}

/* Release the newest running sequence's blocks and queue it first, to recompute later. */
static void preempt(sched_t *s, sched_seq_t *q, uint32_t *budget)
{
    if (q->step_new > 0)
        plan_drop(s, q, budget);
    unlink_seq(&s->running, q);
    s->forks_pending -= q->n_forks;
    kv_seq_release(s->kv, &q->kv);
    q->n_computed = 0;
    q->n_preempted++;
    q->state = SCHED_WAITING;
    push_front(&s->waiting, q);
    s->st.preemptions++;
}

/*
 * Blocks for tokens [n_computed, n_computed + *n_new) of running sequence
 * q.  A prefill chunk may shrink to what the free blocks hold; otherwise
 * the newest running sequences are preempted until the blocks are there.
 * A block q shares where it writes next is copied first (kv_seq_cow; the
 * copy goes into the step's batch).  Returns 1 with the blocks reserved,
 * or 0 when q itself was preempted.
 */
static int grow_running(sched_t *s, sched_seq_t *q, uint32_t *n_new, int may_shrink, uint32_t *budget,
                        int *preempted)
{
    kv_cache_t *kv = s->kv;
    uint32_t B = kv_block_tokens(kv);
    for (;;) {
        if (kv_seq_cow(kv, &q->kv, q->n_computed, &q->cow_src, &q->cow_dst) < 0)
            goto preempt; /* not a block to copy into */
        if (kv_seq_reserve(kv, &q->kv, (uint64_t)q->n_computed + *n_new) == 0)
            return 1;
        if (may_shrink) {
            uint64_t room = ((uint64_t)q->kv.n_blocks + kv_available(kv)) * B;
            if (room > q->n_computed) {
                *n_new = (uint32_t)(room - q->n_computed);
                if (kv_seq_reserve(kv, &q->kv, room) == 0)
                    return 1;
            }
        }
    preempt:;
        sched_seq_t *victim = s->running.tail;
        preempt(s, victim, budget);
        *preempted = 1;
        if (victim == q)
            return 0;
    }
}

/*
 * The draft tokens decoding sequence q (its blocks reserved for its one
 * token) computes too: what the token budget spares beyond a token for
 * every running sequence, the extra rows, its table and the free blocks
 * allow (never by preempting).  Sets q->step_n_draft.
 */
static uint32_t plan_draft(sched_t *s, sched_seq_t *q, uint32_t budget)
{
    uint32_t d = q->n_draft;
    uint32_t spare = budget > s->running.n ? budget - s->running.n : 0;
    if (d > spare)
        d = spare;
    if (d > s->score_left)
        d = s->score_left;
    if (d > q->cap_tokens - q->n_tokens)
        d = q->cap_tokens - q->n_tokens;
    if (d > 0) { /* the blocks the others may still need stay free */
        uint64_t want = kv_blocks_for(s->kv, (uint64_t)q->n_tokens + d);
        uint64_t need = want > q->kv.n_blocks ? want - q->kv.n_blocks : 0;
        if (need + s->watermark + s->running.n > kv_available(s->kv) ||
            kv_seq_reserve(s->kv, &q->kv, (uint64_t)q->n_tokens + d) != 0)
            d = 0;
    }
    q->step_n_draft = d;
    return d;
}

int sched_draft_accept(sched_t *s, sched_seq_t *q)
{
    uint32_t pos = q->n_tokens - 1, first = q->step_draft_end - q->step_new;
    if (q->state != SCHED_RUNNING || q->n_computed + 1 != q->n_tokens || q->step_new == 0 ||
        pos < first || pos >= q->step_draft_end || s->tokens[q->step_at + pos - first] != q->tokens[pos])
        return ERR_STATE;
    q->n_computed++;
    kv_seq_commit(s->kv, &q->kv, q->tokens, q->n_computed);
    return 0;
}

void sched_draft_end(sched_t *s, sched_seq_t *q)
{
    if (q->state == SCHED_RUNNING)
        (void)kv_seq_truncate(s->kv, &q->kv, q->n_tokens); /* keyed blocks end at n_computed */
}

/* Whether prompts after running sequence q wait for prefill: running ones, or admissible ones. */
static int prefills_after(const sched_t *s, const sched_seq_t *q)
{
    for (const sched_seq_t *r = q->next; r != NULL; r = r->next)
        if (r->n_tokens - r->n_computed > 1)
            return 1;
    return s->waiting.head != NULL && s->running.n < s->max_seqs;
}

/* Steps 1 and 2: decodes, then the chunks of prompts already admitted. */
static int plan_running(sched_t *s, uint32_t *budget)
{
    int preempted = 0;
    for (int pass = 0; pass < 2; pass++) {
        sched_seq_t *q = s->running.head;
        while (q != NULL && *budget > 0 && !s->out_of_time) {
            uint32_t rem = q->n_tokens - q->n_computed;
            int decode = rem == 1;
            if (q->step_new > 0 || rem == 0 || decode != (pass == 0)) {
                q = q->next;
                continue;
            }
            uint32_t n_new = rem < *budget ? rem : *budget;
            if (pass == 1 && (n_new = chunk_fit(s, q->n_computed, n_new, prefills_after(s, q))) == 0)
                break;
            if ((n_new = score_fit(s, q, n_new)) == 0) {
                q = q->next; /* its scoring rows wait for the next step */
                continue;
            }
            if (!grow_running(s, q, &n_new, pass == 1, budget, &preempted))
                break; /* q was the newest: nothing after it */
            if (decode)
                n_new += plan_draft(s, q, *budget);
            plan_add(s, q, n_new, pass == 1, budget);
            q = q->next;
        }
    }
    return preempted;
}

/* Step 3: admit waiting sequences in order while they fit. */
static void plan_admit(sched_t *s, uint32_t *budget)
{
    kv_cache_t *kv = s->kv;
    uint32_t B = kv_block_tokens(kv);
    while (s->waiting.head != NULL && *budget > 0 && s->running.n + s->forks_pending < s->max_seqs &&
           !s->out_of_time) {
        sched_seq_t *q = s->waiting.head;
        /* a group's seats: it and every sibling still to fork from it */
        if (s->running.n + s->forks_pending + 1 + (uint64_t)q->n_forks > s->max_seqs)
            break;
        /* a sequence still to score computes its whole prompt: no rows are skipped */
        uint32_t matched = q->n_scored < q->n_score
                               ? 0 : kv_seq_match(kv, &q->kv, q->tokens, q->n_tokens);
        q->n_computed = matched;
        uint32_t rem = q->n_tokens - matched;
        uint32_t n_new = chunk_fit(s, matched, rem < *budget ? rem : *budget, q->next != NULL);
        n_new = score_fit(s, q, n_new);
        if (n_new == 0) {
            kv_seq_release(kv, &q->kv);
            q->n_computed = 0;
            break;
        }
        /* a group's blocks: the shared ones once, and a copy of the last for each sibling
           (alone, it goes in whatever the pool: a sibling short of a block is preempted
           and recomputes on its own, so a pool that holds one sequence still serves) */
        uint32_t keep = s->running.n > 0 ? s->watermark + q->n_forks : 0;
        uint32_t avail = kv_available(kv);
        uint32_t need = kv_blocks_for(kv, (uint64_t)matched + n_new) - q->kv.n_blocks;
        if (need + (uint64_t)keep > avail) {
            /* a smaller first chunk, if the free blocks hold at least one token */
            uint64_t room = avail > keep ? ((uint64_t)q->kv.n_blocks + avail - keep) * B : 0;
            if (room <= matched) {
                kv_seq_release(kv, &q->kv);
                q->n_computed = 0;
                break;
            }
            if (room - matched < n_new)
                n_new = (uint32_t)(room - matched);
        }
        if (kv_seq_reserve(kv, &q->kv, (uint64_t)matched + n_new) != 0) {
            kv_seq_release(kv, &q->kv);
            q->n_computed = 0;
            break;
        }
        unlink_seq(&s->waiting, q);
        q->state = SCHED_RUNNING;
        s->forks_pending += q->n_forks;
        q->admitted_at = ++s->admissions;
        push_back(&s->running, q);
        if (!q->started) {
            q->started = 1;
            q->n_cached = matched;
            s->st.admitted++;
            s->st.cached_tokens += matched;
            s->st.cache_hits += matched > 0;
        }
        plan_add(s, q, n_new, 1, budget);
    }
}

/* Lay the plan out as a ragged batch. */
static void build_batch(sched_t *s, batch_t *b)
{
    uint32_t t = 0, n_logits = 0, n_copies = 0;
    uint64_t pairs = 0;
    for (uint32_t i = 0; i < s->n_plan; i++) {
        sched_seq_t *q = s->plan[i];
        if (q->cow_src >= 0) {
            s->copy_src[n_copies] = q->cow_src;
            s->copy_dst[n_copies++] = q->cow_dst;
        }
        pairs += cost_pairs(q->n_computed, q->step_new);
        s->bseqs[i] = (batch_seq_t){ q->kv.blocks, q->kv.n_blocks, t, q->step_new };
        uint32_t ns = score_rows(q, q->step_new);
        q->step_score = ns > 0 ? (int32_t)n_logits : -1;
        q->step_n_score = ns;
        q->step_score_pos = q->n_computed > q->n_scored ? q->n_computed : q->n_scored;
        for (uint32_t j = 0; j < ns; j++) /* position p is row t + p - n_computed */
            s->logit_rows[n_logits++] = (int32_t)(t + q->step_score_pos + j - q->n_computed);
        uint32_t own = q->step_new - q->step_n_draft;
        for (uint32_t j = 0; j < q->step_new; j++, t++) {
            s->tokens[t] = j < own ? q->tokens[q->n_computed + j] : q->draft[j - own];
            s->pos[t] = (int32_t)(q->n_computed + j);
        }
        q->step_draft_end = q->n_computed + q->step_new;
        q->step_at = t - q->step_new;
        if (q->n_computed + own == q->n_tokens) {
            q->step_logit = (int32_t)n_logits;
            for (uint32_t j = 0; j <= q->step_n_draft; j++)
                s->logit_rows[n_logits++] = (int32_t)(t - 1 - q->step_n_draft + j);
        } else {
            q->step_logit = -1;
        }
    }
    *b = (batch_t){ t, s->tokens, s->pos, s->n_plan, s->bseqs, n_logits, s->logit_rows };
    s->n_copies = n_copies;
    s->st.last_pairs = pairs;
}

uint32_t sched_plan(sched_t *s, batch_t *b, sched_seq_t *const **seqs)
{
    uint32_t budget = s->max_tokens;
    /* (the last plan may name sequences removed since: only the live ones are reset) */
    for (sched_seq_t *q = s->running.head; q != NULL; q = q->next) {
        q->step_new = 0;
        q->step_logit = -1;
        q->step_score = -1;
        q->step_n_score = 0;
        q->step_n_draft = 0;
        q->cow_src = q->cow_dst = -1;
    }
    s->score_left = SCHED_SCORE_ROWS;
    s->n_plan = 0;
    s->n_copies = 0;
    s->n_prefill = 0;
    s->out_of_time = 0;
    s->est_ns = s->cost.per_step;
    int preempted = plan_running(s, &budget);
    /* After a preemption memory is short: let the running ones finish first. */
    if (!preempted)
        plan_admit(s, &budget);
    build_batch(s, b);
    *seqs = s->plan;
    s->st.last_tokens = b->n_tokens;
    s->st.last_seqs = s->n_plan;
    s->st.last_est_ns = s->n_plan > 0 && timed(s) ? s->est_ns : 0.0;
    return s->n_plan;
}

void sched_commit(sched_t *s)
{
    if (s->n_plan == 0)
        return;
    s->st.steps++;
    for (uint32_t i = 0; i < s->n_plan; i++) {
        sched_seq_t *q = s->plan[i];
        uint32_t from = q->n_computed, to = q->n_computed + q->step_new - q->step_n_draft;
        s->st.tokens += q->step_new;
        if (from < q->n_prompt)
            s->st.prompt_tokens += (to < q->n_prompt ? to : q->n_prompt) - from;
        if (q->n_preempted > 0 && from < q->n_tokens - 1) {
            /* a recompute covers every token before the last (the one not yet computed once) */
            uint32_t end = to < q->n_tokens - 1 ? to : q->n_tokens - 1;
            s->st.recomputed += end - from;
        }
        q->n_computed = to;
        kv_seq_commit(s->kv, &q->kv, q->tokens, q->n_computed);
    }
}
