/*
 * test_scheduler.c - the scheduler and the block manager under load,
 * driven through the real forward pass (forward.c) on a fake backend.
 *
 * The fake backend keeps, for every KV slot, the token and position last
 * written there, and its "model" is a script: the next token is a hash of
 * the tokens it reads back through the sequence's block table at
 * positions 0..p.  So a sequence's output is right only if every one of
 * its positions was written, into the right block, with its own token;
 * the test computes the expected output of each request alone, from its
 * prompt, and compares.  Randomised runs of thousands of requests (random
 * arrivals, lengths, shared prefixes, cancellations; pools small enough
 * to preempt) check invariants after every step.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "engine/sched/batch.h"
#include "base/err.h"
#include "forward.h"
#include "engine/sched/kvcache.h"
#include "engine/model/model.h"
#include "engine/sched/scheduler.h"
#include "test.h"

#define V 512           /* the fake vocabulary */
#define EOG 0           /* the fake end-of-generation token */

static const uint8_t SEED[32] = { 42 };

/* ---------------------------------------------------------------- the script */

static uint64_t mix(uint64_t h, int32_t t)
{
    h ^= (uint64_t)(uint32_t)t + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
    h *= 0xff51afd7ed558ccdull;
    return h ^ (h >> 33);
}

/* The token that follows a context whose hash is h: EOG about one time in 40. */
static int32_t script_next(uint64_t h)
{
    return h % 40 == 0 ? EOG : (int32_t)(1 + h % (V - 1));
}

/* ---------------------------------------------------------------- the fake backend */

typedef struct {
    uint32_t n_blocks, B;
    int32_t *kv_tok;        /* [n_blocks * B] */
    int32_t *kv_pos;        /* [n_blocks * B]; -1: never written */
    const batch_t *batch;
    const kv_cache_t *kv;   /* to see that nobody writes into a shared block */
    int bad;
    char why[256];
    float dummy[64];
} fake_t;

static void fake_fail(fake_t *f, const char *what, int a, int b)
{
    if (!f->bad)
        snprintf(f->why, sizeof f->why, "%s (%d, %d)", what, a, b);
    f->bad = 1;
}

static bk_buf_t fake_buf_alloc(void *ctx, uint32_t rows, uint32_t cols, bk_buf_role_t role)
{
    (void)rows;
    (void)cols;
    (void)role;
    return ((fake_t *)ctx)->dummy;
}

/* The KV write: each token of the step into its slot. */
static int fake_set_batch(void *ctx, const batch_t *b)
{
    fake_t *f = ctx;
    f->batch = b;
    for (uint32_t s = 0; s < b->n_seqs; s++) {
        const batch_seq_t *q = &b->seqs[s];
        for (uint32_t i = q->first; i < q->first + q->n_new; i++) {
            uint32_t p = (uint32_t)b->pos[i];
            int32_t block = q->block_table[p / f->B];
            if (kv_block_refs(f->kv, block) != 1)
                fake_fail(f, "write into a block held by several sequences", block, (int)p);
            uint64_t slot = (uint64_t)block * f->B + p % f->B;
            f->kv_tok[slot] = b->tokens[i];
            f->kv_pos[slot] = (int32_t)p;
        }
    }
    return 0;
}

static int fake_embed(void *ctx, bk_buf_t x)
{
    (void)ctx;
    (void)x;
    return 0;
}

/* The "attention": read positions 0..p back through the table, hash them, one-hot logits. */
static int fake_logits(void *ctx, bk_buf_t x, bk_buf_t add, float *out)
{
    fake_t *f = ctx;
    const batch_t *b = f->batch;
    (void)x;
    (void)add;
    for (uint32_t r = 0; r < b->n_logits; r++) {
        uint32_t t = (uint32_t)b->logit_rows[r], s = 0;
        while (!(t >= b->seqs[s].first && t < b->seqs[s].first + b->seqs[s].n_new))
            s++;
        uint64_t h = 0;
        for (int32_t j = 0; j <= b->pos[t]; j++) {
            uint64_t slot = (uint64_t)b->seqs[s].block_table[j / f->B] * f->B + (uint32_t)j % f->B;
            if (f->kv_pos[slot] != j)
                fake_fail(f, "attention read a slot not holding its position", j, f->kv_pos[slot]);
            h = mix(h, f->kv_tok[slot]);
        }
        float *row = out + (uint64_t)r * V;
        for (uint32_t v = 0; v < V; v++)
            row[v] = 0.0f;
        row[script_next(h)] = 1.0f;
    }
    return 0;
}

static const char *fake_last_error(void *ctx)
{
    return ((fake_t *)ctx)->why;
}

/* Copy-on-write: block src[i]'s slots into dst[i], which its sequence holds alone. */
static int fake_kv_copy(void *ctx, const int32_t *src, const int32_t *dst, uint32_t n)
{
    fake_t *f = ctx;
    for (uint32_t i = 0; i < n; i++) {
        if (kv_block_refs(f->kv, dst[i]) != 1)
            fake_fail(f, "copy into a block not held alone", src[i], dst[i]);
        memcpy(f->kv_tok + (uint64_t)dst[i] * f->B, f->kv_tok + (uint64_t)src[i] * f->B, f->B * sizeof(int32_t));
        memcpy(f->kv_pos + (uint64_t)dst[i] * f->B, f->kv_pos + (uint64_t)src[i] * f->B, f->B * sizeof(int32_t));
    }
    return 0;
}

static const backend_ops_t fake_ops = {
    .name = "fake",
    .kv_copy = fake_kv_copy,
    .buf_alloc = fake_buf_alloc,
    .set_batch = fake_set_batch,
    .embed = fake_embed,
    .logits = fake_logits,
    .last_error = fake_last_error,
};

/* ---------------------------------------------------------------- a rig */

typedef struct {
    uint32_t n_blocks, B, max_tokens, max_seqs, watermark;
    int prefix_cache;
    uint64_t max_step_ns;   /* 0: no time budget */
} cfg_t;

typedef struct {
    cfg_t c;
    fake_t fake;
    backend_t backend;
    model_t model;
    forward_t *fwd;
    kv_cache_t *kv;
    sched_t *s;
    float *logits;          /* [max_seqs + SCHED_SCORE_ROWS, V] */
} rig_t;

static void rig_open(rig_t *r, const cfg_t *c)
{
    char err[ERR_MSG_MAX];
    memset(r, 0, sizeof *r);
    r->c = *c;
    kv_opts_t ko = { c->n_blocks, c->B, c->prefix_cache, SEED };
    ASSERT_MSG(kv_create(&r->kv, &ko, err, sizeof err) == 0, "%s", err);
    sched_opts_t so = { c->max_tokens, c->max_seqs, c->watermark, c->max_step_ns };
    ASSERT_MSG(sched_create(&r->s, r->kv, &so, err, sizeof err) == 0, "%s", err);
    r->fake.n_blocks = c->n_blocks;
    r->fake.B = c->B;
    r->fake.kv = r->kv;
    r->fake.kv_tok = calloc((size_t)c->n_blocks * c->B, sizeof(int32_t));
    r->fake.kv_pos = malloc((size_t)c->n_blocks * c->B * sizeof(int32_t));
    ASSERT(r->fake.kv_tok && r->fake.kv_pos);
    memset(r->fake.kv_pos, 0xff, (size_t)c->n_blocks * c->B * sizeof(int32_t));
    r->backend = (backend_t){ .ops = &fake_ops, .ctx = &r->fake, .n_kv_blocks = c->n_blocks, .block_tokens = c->B };
    r->model.hp = (hparams_t){ .n_vocab = V, .n_embd = 8, .n_layer = 0, .n_head = 1, .n_head_kv = 1,
                               .head_dim = 8, .n_ff = 8, .n_ctx_train = 1 << 20 };
    ASSERT_MSG(forward_create(&r->fwd, &r->model, &r->backend, c->max_tokens, err, sizeof err) == 0, "%s", err);
    r->logits = malloc(((size_t)sched_max_seqs(r->s) + SCHED_SCORE_ROWS) * V * sizeof(float));
    ASSERT(r->logits != NULL);
}

static void rig_close(rig_t *r)
{
    forward_destroy(r->fwd);
    sched_destroy(r->s);
    kv_destroy(r->kv);
    free(r->fake.kv_tok);
    free(r->fake.kv_pos);
    free(r->logits);
}

enum { END_NONE = 0, END_STOP, END_LENGTH, END_CANCELLED };

typedef struct {
    sched_seq_t seq;
    uint32_t id;
    uint32_t arrive;        /* step it is submitted at */
    int64_t cancel_at;      /* step it is cancelled at, or -1 */
    uint32_t max_new;
    uint32_t n_gen;
    int ends;               /* finish count: must end up exactly 1 */
    int seen_started;       /* its first admission was checked */
    int how;
} treq_t;

static void treq_init(treq_t *q, uint32_t id, const int32_t *prompt, uint32_t n, uint32_t max_new, uint32_t B)
{
    memset(q, 0, sizeof *q);
    q->id = id;
    q->max_new = max_new;
    q->cancel_at = -1;
    q->seq.tokens = malloc((n + max_new) * sizeof(int32_t));
    ASSERT(q->seq.tokens != NULL);
    memcpy(q->seq.tokens, prompt, n * sizeof(int32_t));
    q->seq.n_tokens = q->seq.n_prompt = n;
    q->seq.cap_tokens = n + max_new;
    q->seq.owner = q;
    ASSERT_EQ_INT(kv_seq_init(&q->seq.kv, n + max_new, B), 0);
}

static void treq_close(treq_t *q)
{
    free(q->seq.tokens);
    kv_seq_close(&q->seq.kv);
}

static void finish(rig_t *r, treq_t *q, int how)
{
    ASSERT_MSG(q->ends == 0, "request %u ends twice", q->id);
    sched_remove(r->s, &q->seq);
    ASSERT_EQ_INT(q->seq.state, SCHED_DONE);
    q->ends++;
    q->how = how;
}

/* What the request would produce alone: the script run on its own tokens. */
static void expected_output(const treq_t *q, int32_t *out, uint32_t *n_out, int *how)
{
    uint64_t h = 0;
    for (uint32_t i = 0; i < q->seq.n_prompt; i++)
        h = mix(h, q->seq.tokens[i]);
    *n_out = 0;
    for (;;) {
        int32_t t = script_next(h);
        out[(*n_out)++] = t;
        if (t == EOG) {
            *how = END_STOP;
            return;
        }
        if (*n_out == q->max_new) {
            *how = END_LENGTH;
            return;
        }
        h = mix(h, t);
    }
}

/* After a step: budget, limits, KV contents, reference counts, pool accounting. */
static void check_step(rig_t *r, const batch_t *b, uint32_t n, treq_t *reqs, uint32_t n_reqs)
{
    char err[ERR_MSG_MAX];
    ASSERT(b->n_tokens <= r->c.max_tokens);
    ASSERT(n <= sched_max_seqs(r->s));
    sched_stats_t ss;
    sched_get_stats(r->s, &ss);
    ASSERT(ss.n_running <= sched_max_seqs(r->s));
    ASSERT_MSG(!r->fake.bad, "fake backend: %s", r->fake.why);
    ASSERT_MSG(kv_check(r->kv, err, sizeof err) == 0, "%s", err);

    static int refs[4096];
    memset(refs, 0, r->c.n_blocks * sizeof refs[0]);
    uint32_t held = 0;
    for (const sched_seq_t *q = sched_running(r->s); q != NULL; q = q->next) {
        for (uint32_t k = 0; k < q->kv.n_blocks; k++)
            refs[q->kv.blocks[k]]++;
        /* every computed position holds this sequence's own token */
        for (uint32_t j = 0; j < q->n_computed; j++) {
            uint64_t slot = (uint64_t)q->kv.blocks[j / r->c.B] * r->c.B + j % r->c.B;
            ASSERT_MSG(r->fake.kv_pos[slot] == (int32_t)j && r->fake.kv_tok[slot] == q->tokens[j],
                       "request %u: position %u of its KV holds another sequence's token",
                       ((treq_t *)q->owner)->id, j);
        }
    }
    for (const sched_seq_t *q = sched_waiting(r->s); q != NULL; q = q->next)
        ASSERT_MSG(q->kv.n_blocks == 0, "a waiting sequence holds %u blocks", q->kv.n_blocks);
    for (uint32_t i = 0; i < r->c.n_blocks; i++) {
        ASSERT_EQ_INT(kv_block_refs(r->kv, (int32_t)i), refs[i]);
        held += refs[i] > 0;
    }
    kv_stats_t ks;
    kv_get_stats(r->kv, &ks);
    ASSERT_EQ_INT(ks.n_used + ks.n_free, r->c.n_blocks);
    ASSERT_EQ_INT(ks.n_used, held);
    ASSERT_EQ_INT(ks.double_frees, 0);
    (void)reqs;
    (void)n_reqs;
}

static uint64_t rng;
static uint32_t rnd(uint32_t n)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng % n);
}

typedef struct {
    uint64_t preemptions, cache_hits, chunked, cancelled, steps;
} run_stats_t;

/*
 * n_reqs requests, arriving a few per step, with prompts of a shared
 * prefix (one of four, or none) plus their own tail; some are cancelled
 * at a random step (queued, prefilling or decoding).
 */
static void random_run(const cfg_t *c, uint32_t n_reqs, uint64_t seed, run_stats_t *rs)
{
    rig_t r;
    rig_open(&r, c);
    rng = seed;
    int32_t prefixes[4][96];
    for (int p = 0; p < 4; p++)
        for (int i = 0; i < 96; i++)
            prefixes[p][i] = (int32_t)(1 + rnd(V - 1));
    treq_t *reqs = calloc(n_reqs, sizeof *reqs);
    ASSERT(reqs != NULL);
    uint32_t max_need = c->n_blocks * c->B;
    uint32_t at = 0;
    for (uint32_t i = 0; i < n_reqs; i++) {
        int32_t prompt[160];
        if (i > 0 && rnd(10) == 0) {
            /* the same prompt as an earlier request (a retry, a repeated turn) */
            const treq_t *o = &reqs[rnd(i)];
            treq_init(&reqs[i], i, o->seq.tokens, o->seq.n_prompt, 1 + rnd(40), c->B);
            reqs[i].arrive = at;
            continue;
        }
        uint32_t shared = rnd(3) ? rnd(97) : 0, tail = 1 + rnd(40), max_new = 1 + rnd(40);
        while (shared + tail + max_new > max_need) /* what submit would refuse */
            shared /= 2, tail = 1 + tail / 2, max_new = 1 + max_new / 2;
        const int32_t *p = prefixes[rnd(4)];
        for (uint32_t k = 0; k < shared; k++)
            prompt[k] = p[k];
        for (uint32_t k = 0; k < tail; k++)
            prompt[shared + k] = (int32_t)(1 + rnd(V - 1));
        treq_init(&reqs[i], i, prompt, shared + tail, max_new, c->B);
        at += rnd(3) == 0 ? rnd(4) : 0;
        reqs[i].arrive = at;
        if (rnd(10) == 0)
            reqs[i].cancel_at = at + rnd(40);
    }

    uint32_t next_arrival = 0, n_ended = 0;
    memset(rs, 0, sizeof *rs);
    for (uint32_t step = 0; n_ended < n_reqs; step++) {
        ASSERT_MSG(step < 40u * n_reqs + 1000, "no progress: %u of %u requests ended", n_ended, n_reqs);
        while (next_arrival < n_reqs && reqs[next_arrival].arrive <= step)
            sched_add(r.s, &reqs[next_arrival++].seq);
        for (uint32_t i = 0; i < next_arrival; i++)
            if (reqs[i].ends == 0 && reqs[i].cancel_at == (int64_t)step) {
                finish(&r, &reqs[i], END_CANCELLED);
                n_ended++;
                rs->cancelled++;
            }

        /* who runs before the plan, to check whom it preempts */
        sched_seq_t *before[64];
        uint32_t n_before = 0;
        for (sched_seq_t *q = sched_running(r.s); q != NULL; q = q->next)
            before[n_before++] = q;

        batch_t b;
        sched_seq_t *const *seqs;
        uint32_t n = sched_plan(r.s, &b, &seqs);
        if (n == 0) {
            ASSERT_MSG(sched_waiting(r.s) == NULL || sched_running(r.s) != NULL,
                       "requests wait while nothing runs");
            continue;
        }
        char err[ERR_MSG_MAX];
        ASSERT_MSG(batch_check(&b, V, c->max_tokens, c->n_blocks, c->B, err, sizeof err) == 0, "%s", err);

        /* preemption takes the most recently admitted: whoever still runs came before every victim */
        uint64_t first_victim = UINT64_MAX;
        for (uint32_t i = 0; i < n_before; i++)
            if (before[i]->state == SCHED_WAITING && before[i]->admitted_at < first_victim)
                first_victim = before[i]->admitted_at;
        for (uint32_t i = 0; i < n_before; i++)
            if (before[i]->state == SCHED_RUNNING)
                ASSERT_MSG(before[i]->admitted_at < first_victim, "an older sequence was preempted first");
        if (first_victim != UINT64_MAX)
            ASSERT(sched_waiting(r.s) != NULL && sched_waiting(r.s)->n_preempted > 0);

        for (uint32_t i = 0; i < n; i++) {
            const sched_seq_t *q = seqs[i];
            treq_t *t = q->owner;
            if (!t->seen_started) {
                /* first admissions in arrival order: nobody who came earlier is still waiting its turn */
                t->seen_started = 1;
                for (uint32_t k = 0; k < t->id; k++)
                    ASSERT_MSG(reqs[k].seen_started || reqs[k].ends, "request %u admitted before %u", t->id, k);
            }
            if (q->step_new < q->n_tokens - q->n_computed)
                rs->chunked++;
        }
        ASSERT_EQ_INT(forward_step(r.fwd, &b, r.logits), 0);
        sched_commit(r.s);
        check_step(&r, &b, n, reqs, n_reqs);
        for (uint32_t i = 0; i < n; i++) {
            sched_seq_t *q = seqs[i];
            treq_t *t = q->owner;
            if (q->step_logit < 0)
                continue;
            const float *row = r.logits + (uint64_t)q->step_logit * V;
            int32_t tok = 0;
            for (int32_t v = 1; v < V; v++)
                if (row[v] > row[tok])
                    tok = v;
            t->n_gen++;
            if (tok == EOG || t->n_gen == t->max_new) {
                q->tokens[q->n_tokens] = tok; /* the last token, kept for the comparison below */
                finish(&r, t, tok == EOG ? END_STOP : END_LENGTH);
                n_ended++;
            } else {
                ASSERT_EQ_INT(sched_append(r.s, q, tok), 0);
            }
        }
        rs->steps++;
    }

    /* every request ended once; the pool is whole; outputs are what each gives alone */
    kv_stats_t ks;
    kv_get_stats(r.kv, &ks);
    ASSERT_EQ_INT(ks.n_used, 0);
    ASSERT_EQ_INT(ks.n_free, c->n_blocks);
    ASSERT_EQ_INT(ks.double_frees, 0);
    sched_stats_t ss;
    sched_get_stats(r.s, &ss);
    ASSERT_EQ_INT(ss.n_running + ss.n_waiting, 0);
    rs->preemptions = ss.preemptions;
    rs->cache_hits = ss.cache_hits;
    for (uint32_t i = 0; i < n_reqs; i++) {
        treq_t *q = &reqs[i];
        ASSERT_EQ_INT(q->ends, 1);
        if (q->how == END_CANCELLED) {
            continue;
        }
        int32_t want[64];
        uint32_t n_want;
        int how;
        expected_output(q, want, &n_want, &how);
        ASSERT_EQ_INT(q->how, how);
        ASSERT_EQ_INT(q->n_gen, n_want);
        for (uint32_t k = 0; k < n_want; k++)
            ASSERT_MSG(q->seq.tokens[q->seq.n_prompt + k] == want[k],
                       "request %u token %u: %d, alone %d (preempted %u times)", q->id, k,
                       q->seq.tokens[q->seq.n_prompt + k], want[k], q->seq.n_preempted);
        treq_close(q);
    }
    for (uint32_t i = 0; i < n_reqs; i++)
        if (reqs[i].how == END_CANCELLED)
            treq_close(&reqs[i]);
    free(reqs);
    rig_close(&r);
}

TEST(thousands_of_requests_tiny_pool_preempting)
{
    cfg_t c = { .n_blocks = 24, .B = 8, .max_tokens = 48, .max_seqs = 8, .watermark = 0, .prefix_cache = 1 };
    run_stats_t rs;
    random_run(&c, 3000, 1, &rs);
    ASSERT_MSG(rs.preemptions > 100, "only %llu preemptions", (unsigned long long)rs.preemptions);
    ASSERT(rs.cache_hits > 100);
    ASSERT(rs.chunked > 100);
    ASSERT(rs.cancelled > 100);
}

TEST(thousands_of_requests_no_prefix_cache)
{
    cfg_t c = { .n_blocks = 40, .B = 16, .max_tokens = 64, .max_seqs = 16, .watermark = 1, .prefix_cache = 0 };
    run_stats_t rs;
    random_run(&c, 3000, 2, &rs);
    ASSERT(rs.preemptions > 10);
    ASSERT_EQ_INT(rs.cache_hits, 0);
}

TEST(thousands_of_requests_roomy_pool)
{
    cfg_t c = { .n_blocks = 512, .B = 16, .max_tokens = 256, .max_seqs = 32, .watermark = 5, .prefix_cache = 1 };
    run_stats_t rs;
    random_run(&c, 3000, 3, &rs);
    ASSERT_EQ_INT(rs.preemptions, 0);
    ASSERT(rs.cache_hits > 500);
}

TEST(small_budget_many_seeds)
{
    for (uint64_t seed = 10; seed < 16; seed++) {
        cfg_t c = { .n_blocks = 12 + (uint32_t)seed, .B = 4 + (uint32_t)(seed % 3) * 4, .max_tokens = 4 + (uint32_t)seed,
                    .max_seqs = 2 + (uint32_t)(seed % 4), .watermark = (uint32_t)(seed % 2), .prefix_cache = (int)(seed % 2) };
        run_stats_t rs;
        random_run(&c, 400, seed, &rs);
    }
}

/* ---------------------------------------------------------------- directed */

static sched_seq_t *plan(rig_t *r, batch_t *b, uint32_t *n)
{
    sched_seq_t *const *seqs;
    *n = sched_plan(r->s, b, &seqs);
    return *n ? seqs[0] : NULL;
}

/* Run one planned step: forward, commit, append the script's token to every sampled sequence. */
static void run_step(rig_t *r, batch_t *b)
{
    ASSERT_EQ_INT(forward_step(r->fwd, b, r->logits), 0);
    sched_commit(r->s);
    for (sched_seq_t *q = sched_running(r->s); q != NULL; q = q->next) {
        if (q->step_logit < 0)
            continue;
        const float *row = r->logits + (uint64_t)q->step_logit * V;
        int32_t tok = 0;
        for (int32_t v = 1; v < V; v++)
            if (row[v] > row[tok])
                tok = v;
        ASSERT_EQ_INT(sched_append(r->s, q, tok == EOG ? 1 : tok), 0);
    }
}

TEST(a_long_prompt_is_chunked_around_the_decodes)
{
    cfg_t c = { .n_blocks = 64, .B = 16, .max_tokens = 16, .max_seqs = 4, .watermark = 0, .prefix_cache = 1 };
    rig_t r;
    rig_open(&r, &c);
    int32_t pa[4] = { 5, 6, 7, 8 }, pb[100];
    for (int i = 0; i < 100; i++)
        pb[i] = 10 + i;
    treq_t a, b;
    treq_init(&a, 0, pa, 4, 200, 16);
    treq_init(&b, 1, pb, 100, 10, 16);
    sched_add(r.s, &a.seq);
    batch_t bt;
    uint32_t n;
    plan(&r, &bt, &n);
    ASSERT_EQ_INT(n, 1);
    run_step(&r, &bt); /* a prefilled and sampled: decoding from now on */
    sched_add(r.s, &b.seq);
    uint32_t steps = 0;
    while (b.seq.n_computed < 100) {
        plan(&r, &bt, &n);
        ASSERT_EQ_INT(n, 2);
        ASSERT_EQ_INT(a.seq.step_new, 1); /* the decode is never starved by the prompt */
        ASSERT_EQ_INT(b.seq.step_new, b.seq.n_prompt - b.seq.n_computed < 15 ? b.seq.n_prompt - b.seq.n_computed : 15);
        ASSERT_EQ_INT(bt.n_tokens, 1 + b.seq.step_new);
        run_step(&r, &bt);
        steps++;
    }
    ASSERT_EQ_INT(steps, 7); /* ceil(100 / 15) */
    ASSERT_EQ_INT(b.seq.n_tokens, 101);
    sched_remove(r.s, &a.seq);
    sched_remove(r.s, &b.seq);
    treq_close(&a);
    treq_close(&b);
    rig_close(&r);
}

TEST(the_newest_is_preempted_and_goes_first_in_line)
{
    /* 6 blocks of 4: three sequences of 8 tokens fill it; the first to grow takes the newest's blocks */
    cfg_t c = { .n_blocks = 6, .B = 4, .max_tokens = 64, .max_seqs = 8, .watermark = 0, .prefix_cache = 0 };
    rig_t r;
    rig_open(&r, &c);
    treq_t q[4];
    int32_t p[4][8];
    for (int i = 0; i < 4; i++) {
        for (int k = 0; k < 8; k++)
            p[i][k] = 1 + i * 8 + k;
        treq_init(&q[i], (uint32_t)i, p[i], 8, 16, 4);
    }
    for (int i = 0; i < 3; i++)
        sched_add(r.s, &q[i].seq);
    batch_t bt;
    uint32_t n;
    plan(&r, &bt, &n);
    ASSERT_EQ_INT(n, 3);
    run_step(&r, &bt);
    sched_add(r.s, &q[3].seq); /* waits: no blocks */
    plan(&r, &bt, &n);         /* each needs a third block: q[2], the newest, is preempted */
    ASSERT_EQ_INT(n, 2);
    ASSERT_EQ_INT(q[2].seq.state, SCHED_WAITING);
    ASSERT_EQ_INT(q[2].seq.n_preempted, 1);
    ASSERT(sched_waiting(r.s) == &q[2].seq); /* ahead of q[3], which came earlier to the queue */
    ASSERT(q[2].seq.next == &q[3].seq);
    ASSERT_EQ_INT(q[2].seq.kv.n_blocks, 0);
    ASSERT_EQ_INT(q[2].seq.n_tokens, 9); /* its generated token is kept for the recompute */
    run_step(&r, &bt);
    for (int i = 0; i < 4; i++)
        sched_remove(r.s, &q[i].seq);
    kv_stats_t ks;
    kv_get_stats(r.kv, &ks);
    ASSERT_EQ_INT(ks.n_free, 6);
    for (int i = 0; i < 4; i++)
        treq_close(&q[i]);
    rig_close(&r);
}

TEST(admission_is_first_come_first_served)
{
    /* the head needs more blocks than are free: the small one behind it must wait too */
    cfg_t c = { .n_blocks = 8, .B = 4, .max_tokens = 64, .max_seqs = 8, .watermark = 0, .prefix_cache = 0 };
    rig_t r;
    rig_open(&r, &c);
    int32_t big[24], small[2] = { 3, 4 };
    for (int i = 0; i < 24; i++)
        big[i] = 1 + i;
    treq_t a, b, d;
    treq_init(&a, 0, big, 20, 4, 4);
    treq_init(&b, 1, big, 24, 4, 4);
    treq_init(&d, 2, small, 2, 4, 4);
    sched_add(r.s, &a.seq);
    batch_t bt;
    uint32_t n;
    plan(&r, &bt, &n);
    run_step(&r, &bt); /* a holds 5 blocks (20 tokens + 1 reserved soon) */
    sched_add(r.s, &b.seq);
    sched_add(r.s, &d.seq);
    plan(&r, &bt, &n);
    /* b gets what fits of its prompt now (a chunk); d waits behind it */
    ASSERT_EQ_INT(b.seq.state, SCHED_RUNNING);
    ASSERT(b.seq.step_new < 24);
    ASSERT_EQ_INT(d.seq.state, SCHED_WAITING);
    sched_remove(r.s, &a.seq);
    sched_remove(r.s, &b.seq);
    sched_remove(r.s, &d.seq);
    treq_close(&a);
    treq_close(&b);
    treq_close(&d);
    rig_close(&r);
}

TEST(waiting_order_is_priority_then_arrival)
{
    /* one sequence at a time: the waiting order is the admission order */
    cfg_t c = { .n_blocks = 16, .B = 4, .max_tokens = 64, .max_seqs = 1, .watermark = 0, .prefix_cache = 0 };
    rig_t r;
    rig_open(&r, &c);
    static const int32_t prio[6] = { 0, 5, -1, 0, 5, -3 };
    static const int want[6] = { 5, 2, 0, 3, 1, 4 };
    treq_t q[6];
    int32_t p[6][4];
    for (int i = 0; i < 6; i++) {
        for (int k = 0; k < 4; k++)
            p[i][k] = 1 + i * 4 + k;
        treq_init(&q[i], (uint32_t)i, p[i], 4, 4, 4);
        q[i].seq.priority = prio[i];
        sched_add(r.s, &q[i].seq);
    }
    const sched_seq_t *w = sched_waiting(r.s);
    for (int i = 0; i < 6; i++, w = w->next) {
        ASSERT_MSG(w == &q[want[i]].seq, "waiting[%d] is not request %d", i, want[i]);
        ASSERT(w->next == NULL || w->next->prev == w);
    }
    ASSERT(w == NULL);
    batch_t bt;
    uint32_t n;
    plan(&r, &bt, &n);
    ASSERT_EQ_INT(n, 1);
    ASSERT_EQ_INT(q[5].seq.state, SCHED_RUNNING);
    run_step(&r, &bt);
    for (int i = 0; i < 6; i++)
        sched_remove(r.s, &q[i].seq);
    kv_stats_t ks;
    kv_get_stats(r.kv, &ks);
    ASSERT_EQ_INT(ks.n_free, 16);
    for (int i = 0; i < 6; i++)
        treq_close(&q[i]);
    rig_close(&r);
}

TEST(prefix_cache_skips_the_shared_prompt)
{
    cfg_t c = { .n_blocks = 32, .B = 16, .max_tokens = 512, .max_seqs = 4, .watermark = 0, .prefix_cache = 1 };
    rig_t r;
    rig_open(&r, &c);
    int32_t p[70];
    for (int i = 0; i < 70; i++)
        p[i] = 1 + (i * 37) % (V - 1);
    treq_t a, b;
    treq_init(&a, 0, p, 70, 2, 16);
    p[69] = 2; /* same first 69 tokens */
    treq_init(&b, 1, p, 70, 2, 16);
    sched_add(r.s, &a.seq);
    batch_t bt;
    uint32_t n;
    plan(&r, &bt, &n);
    ASSERT_EQ_INT(bt.n_tokens, 70);
    run_step(&r, &bt);
    sched_remove(r.s, &a.seq); /* its four full blocks stay cached */
    sched_add(r.s, &b.seq);
    plan(&r, &bt, &n);
    ASSERT_EQ_INT(b.seq.n_cached, 64);
    ASSERT_EQ_INT(bt.n_tokens, 6);
    ASSERT_EQ_INT(bt.pos[0], 64);
    run_step(&r, &bt);
    sched_stats_t ss;
    sched_get_stats(r.s, &ss);
    ASSERT_EQ_INT(ss.prompt_tokens, 76);
    ASSERT_EQ_INT(ss.cached_tokens, 64);
    ASSERT_EQ_INT(ss.cache_hits, 1);
    sched_remove(r.s, &b.seq);
    treq_close(&a);
    treq_close(&b);
    rig_close(&r);
}

/*
 * A scoring sequence (prompt logprobs) beside a plain one: a row for each
 * prompt position but the last, in order, at most SCHED_SCORE_ROWS a step,
 * each naming its own position in the batch; its prompt is computed whole
 * though it is cached; the plain one gets its one sampling row a step.
 */
TEST(a_scoring_prompt_gets_a_row_per_position_and_skips_the_cache)
{
    cfg_t c = { .n_blocks = 64, .B = 16, .max_tokens = 512, .max_seqs = 4, .watermark = 0, .prefix_cache = 1 };
    rig_t r;
    rig_open(&r, &c);
    int32_t p[150];
    for (int i = 0; i < 150; i++)
        p[i] = 1 + (i * 37) % (V - 1);
    treq_t warm, a, b;
    treq_init(&warm, 0, p, 150, 2, 16);
    treq_init(&a, 1, p, 150, 2, 16);
    treq_init(&b, 2, p, 40, 4, 16);
    a.seq.n_score = 149;
    batch_t bt;
    uint32_t n;
    sched_add(r.s, &warm.seq);
    plan(&r, &bt, &n);
    run_step(&r, &bt);
    sched_remove(r.s, &warm.seq); /* its nine full blocks stay cached */
    sched_add(r.s, &a.seq);
    sched_add(r.s, &b.seq);
    uint32_t steps = 0;
    while (a.seq.n_scored < a.seq.n_score && steps++ < 10) {
        plan(&r, &bt, &n);
        ASSERT_EQ_INT(a.seq.n_cached, 0);
        ASSERT_MSG(a.seq.step_n_score <= SCHED_SCORE_ROWS, "%u scoring rows", a.seq.step_n_score);
        ASSERT_EQ_INT(a.seq.step_score_pos, a.seq.n_scored);
        for (uint32_t j = 0; j < a.seq.step_n_score; j++) {
            int32_t row = bt.logit_rows[a.seq.step_score + (int32_t)j];
            ASSERT_EQ_INT(bt.pos[row], (int32_t)(a.seq.n_scored + j));
            ASSERT_EQ_INT(bt.tokens[row], p[a.seq.n_scored + j]);
        }
        uint32_t got = a.seq.step_n_score;
        run_step(&r, &bt);
        a.seq.n_scored += got; /* the owner's part */
    }
    ASSERT_EQ_INT(a.seq.n_scored, 149);
    ASSERT_EQ_INT(steps, 3); /* 64 + 64 + 21 rows */
    ASSERT_EQ_INT(a.seq.n_tokens, 151); /* its sampling row came with the last chunk */
    ASSERT_EQ_INT(b.seq.n_cached, 32); /* the plain one still reads the cache */
    sched_remove(r.s, &a.seq);
    sched_remove(r.s, &b.seq);
    treq_close(&warm);
    treq_close(&a);
    treq_close(&b);
    rig_close(&r);
}

/*
 * A scoring sequence preempted partway (a pool too small for it and a
 * plain sequence that keeps growing): over the whole run each of its
 * positions gets exactly one scoring row, in order, and none is lost to
 * the recomputation.
 */
TEST(a_preempted_scoring_prompt_scores_each_position_once)
{
    cfg_t c = { .n_blocks = 11, .B = 16, .max_tokens = 8, .max_seqs = 4, .watermark = 0, .prefix_cache = 1 };
    rig_t r;
    rig_open(&r, &c);
    int32_t p[150];
    for (int i = 0; i < 150; i++)
        p[i] = 1 + (i * 53) % (V - 1);
    treq_t a, b;
    treq_init(&b, 0, p + 100, 40, 100, 16);
    treq_init(&a, 1, p, 120, 2, 16);
    a.seq.n_score = 119;
    sched_add(r.s, &b.seq);
    sched_add(r.s, &a.seq);
    uint32_t next = 0, steps = 0;
    batch_t bt;
    uint32_t n;
    while ((sched_running(r.s) != NULL || sched_waiting(r.s) != NULL) && steps++ < 1000) {
        if (plan(&r, &bt, &n) == NULL)
            break;
        if (a.seq.state == SCHED_RUNNING && a.seq.step_n_score > 0) {
            ASSERT_EQ_INT(a.seq.step_score_pos, next);
            for (uint32_t j = 0; j < a.seq.step_n_score; j++)
                ASSERT_EQ_INT(bt.pos[bt.logit_rows[a.seq.step_score + (int32_t)j]],
                              (int32_t)(next + j));
            next += a.seq.step_n_score;
        }
        uint32_t got = a.seq.state == SCHED_RUNNING ? a.seq.step_n_score : 0;
        run_step(&r, &bt);
        a.seq.n_scored += got;
        treq_t *both[2] = { &a, &b };
        for (int k = 0; k < 2; k++)
            if (both[k]->seq.state == SCHED_RUNNING &&
                both[k]->seq.n_tokens == both[k]->seq.cap_tokens)
                sched_remove(r.s, &both[k]->seq);
    }
    ASSERT_EQ_INT(next, 119);
    ASSERT_MSG(a.seq.n_preempted > 0, "the scoring sequence was never preempted (%u steps)", steps);
    treq_close(&a);
    treq_close(&b);
    rig_close(&r);
}

TEST(sequence_limit_holds_back_admission)
{
    cfg_t c = { .n_blocks = 64, .B = 16, .max_tokens = 64, .max_seqs = 3, .watermark = 0, .prefix_cache = 0 };
    rig_t r;
    rig_open(&r, &c);
    treq_t q[5];
    int32_t p[3] = { 1, 2, 3 };
    for (int i = 0; i < 5; i++) {
        treq_init(&q[i], (uint32_t)i, p, 3, 8, 16);
        sched_add(r.s, &q[i].seq);
    }
    batch_t bt;
    uint32_t n;
    plan(&r, &bt, &n);
    ASSERT_EQ_INT(n, 3);
    ASSERT_EQ_INT(q[3].seq.state, SCHED_WAITING);
    run_step(&r, &bt);
    sched_remove(r.s, &q[1].seq); /* one leaves: the next joins at once */
    plan(&r, &bt, &n);
    ASSERT_EQ_INT(n, 3);
    ASSERT_EQ_INT(q[3].seq.state, SCHED_RUNNING);
    ASSERT_EQ_INT(q[4].seq.state, SCHED_WAITING);
    for (int i = 0; i < 5; i++) {
        sched_remove(r.s, &q[i].seq);
        treq_close(&q[i]);
    }
    rig_close(&r);
}

/* ---------------------------------------------------------------- the step time budget */

/* The plan's estimated time, computed here from the batch the way step_cost.h defines it. */
static double plan_cost(const sched_cost_t *c, sched_seq_t *const *seqs, uint32_t n)
{
    double ns = c->per_step;
    for (uint32_t i = 0; i < n; i++)
        ns += c->per_token * seqs[i]->step_new +
              c->per_pair * (double)cost_pairs(seqs[i]->n_computed, seqs[i]->step_new);
    return ns;
}

TEST(a_long_prompt_shrinks_its_chunks_to_keep_the_step_under_its_time)
{
    /* step ns = 1000 + 100 / token + 1 / attention pair; target 100 us */
    cfg_t c = { .n_blocks = 512, .B = 16, .max_tokens = 512, .max_seqs = 4, .watermark = 0, .prefix_cache = 1,
               .max_step_ns = 100000 };
    const sched_cost_t cost = { 1000.0, 100.0, 1.0, 0 };
    const uint64_t target = c.max_step_ns;
    rig_t r;
    rig_open(&r, &c);
    sched_set_cost(r.s, &cost);
    enum { LONG = 3000 };
    int32_t pa[4] = { 5, 6, 7, 8 }, *pb = malloc(LONG * sizeof *pb);
    ASSERT(pb != NULL);
    for (int i = 0; i < LONG; i++)
        pb[i] = 10 + i % 400;
    treq_t a, b;
    treq_init(&a, 0, pa, 4, 400, 16);
    treq_init(&b, 1, pb, LONG, 4, 16);
    sched_add(r.s, &a.seq);
    batch_t bt;
    uint32_t n;
    plan(&r, &bt, &n);
    run_step(&r, &bt); /* a decodes from now on */
    sched_add(r.s, &b.seq);
    uint32_t steps = 0, last_chunk = UINT32_MAX, first_chunk = 0;
    while (b.seq.n_computed < LONG) {
        sched_seq_t *const *seqs;
        n = sched_plan(r.s, &bt, &seqs);
        ASSERT_EQ_INT(n, 2);
        ASSERT_EQ_INT(a.seq.step_new, 1); /* the decode is in every step */
        uint32_t chunk = b.seq.step_new, ctx = b.seq.n_computed;
        ASSERT(chunk >= 1);
        double est = plan_cost(&cost, seqs, n);
        sched_stats_t st;
        sched_get_stats(r.s, &st);
        ASSERT_MSG(st.last_est_ns > est - 1e-6 && st.last_est_ns < est + 1e-6, "estimate %.1f, expected %.1f",
                   st.last_est_ns, est);
        ASSERT_MSG(est <= (double)target || chunk == 1, "step %u: %.0f ns > target with a chunk of %u", steps,
                   est, chunk);
        if (chunk < LONG - ctx) {
            /* the largest chunk that fits: one token more would not */
            double more = est + cost.per_token + cost.per_pair * (double)(ctx + chunk + 1);
            ASSERT_MSG(more > (double)target, "step %u: a chunk of %u leaves room (%.0f ns)", steps, chunk, more);
            ASSERT_MSG(chunk <= last_chunk, "step %u: the chunk grew from %u to %u at context %u", steps,
                       last_chunk, chunk, ctx);
        }
        if (steps == 0)
            first_chunk = chunk;
        last_chunk = chunk;
        run_step(&r, &bt);
        steps++;
    }
    ASSERT_MSG(first_chunk > 4 * last_chunk, "chunks %u first, %u last", first_chunk, last_chunk);
    ASSERT_EQ_INT(b.seq.n_tokens, LONG + 1);
    sched_remove(r.s, &a.seq);
    sched_remove(r.s, &b.seq);
    treq_close(&a);
    treq_close(&b);
    free(pb);
    rig_close(&r);
}

TEST(a_short_prompt_is_admitted_beside_a_long_prefill)
{
    cfg_t c = { .n_blocks = 512, .B = 16, .max_tokens = 512, .max_seqs = 4, .watermark = 0, .prefix_cache = 1,
                .max_step_ns = 100000 };
    const sched_cost_t cost = { 1000.0, 100.0, 1.0, 0 };
    rig_t r;
    rig_open(&r, &c);
    sched_set_cost(r.s, &cost);
    enum { LONG = 3000 };
    int32_t *pb = malloc(LONG * sizeof *pb), pc[40];
    ASSERT(pb != NULL);
    for (int i = 0; i < LONG; i++)
        pb[i] = 10 + i % 400;
    for (int i = 0; i < 40; i++)
        pc[i] = 1 + i;
    treq_t b, d;
    treq_init(&b, 0, pb, LONG, 4, 16);
    treq_init(&d, 1, pc, 40, 4, 16);
    sched_add(r.s, &b.seq);
    batch_t bt;
    uint32_t n;
    for (int i = 0; i < 10; i++) { /* the long prompt alone, well into its prefill */
        plan(&r, &bt, &n);
        run_step(&r, &bt);
    }
    ASSERT(b.seq.n_computed > 0 && b.seq.n_computed < LONG);
    sched_add(r.s, &d.seq);
    sched_seq_t *const *seqs;
    n = sched_plan(r.s, &bt, &seqs);
    ASSERT_EQ_INT(n, 2);
    ASSERT(b.seq.step_new > 0);
    ASSERT_EQ_INT(d.seq.step_new, 40); /* its whole prompt, in the first step it waits for */
    ASSERT_MSG(plan_cost(&cost, seqs, n) <= (double)c.max_step_ns, "%.0f ns", plan_cost(&cost, seqs, n));
    sched_remove(r.s, &b.seq);
    sched_remove(r.s, &d.seq);
    treq_close(&b);
    treq_close(&d);
    free(pb);
    rig_close(&r);
}

TEST(the_first_chunks_are_short_while_no_cost_is_known)
{
    cfg_t c = { .n_blocks = 64, .B = 16, .max_tokens = 256, .max_seqs = 4, .watermark = 0, .prefix_cache = 1,
                .max_step_ns = 500000000 };
    rig_t r;
    rig_open(&r, &c);
    int32_t pb[200];
    for (int i = 0; i < 200; i++)
        pb[i] = 10 + i;
    treq_t b;
    treq_init(&b, 0, pb, 200, 4, 16);
    sched_add(r.s, &b.seq);
    batch_t bt;
    uint32_t n;
    for (int i = 0; i < 3; i++) {
        plan(&r, &bt, &n);
        ASSERT_EQ_INT(b.seq.step_new, COST_PROBE_TOKENS);
        run_step(&r, &bt);
    }
    const sched_cost_t cost = { 0.0, 1000.0, 0.0, 0 }; /* now known: the token budget is the limit */
    sched_set_cost(r.s, &cost);
    plan(&r, &bt, &n);
    ASSERT_EQ_INT(b.seq.step_new, 200 - 3 * COST_PROBE_TOKENS);
    sched_remove(r.s, &b.seq);
    treq_close(&b);
    rig_close(&r);
}

/* A fit learned on small steps may not extrapolate: a chunk grows at most
   COST_GROWTH times past the largest step timed. */
TEST(chunks_grow_at_most_cost_growth_times_past_what_was_timed)
{
    cfg_t c = { .n_blocks = 64, .B = 16, .max_tokens = 256, .max_seqs = 4, .watermark = 0, .prefix_cache = 1,
                .max_step_ns = 500000000 };
    rig_t r;
    rig_open(&r, &c);
    int32_t pb[200];
    for (int i = 0; i < 200; i++)
        pb[i] = 10 + i;
    treq_t b;
    treq_init(&b, 0, pb, 200, 4, 16);
    sched_add(r.s, &b.seq);
    batch_t bt;
    uint32_t n;
    sched_cost_t cost = { 0.0, 1000.0, 0.0, 10 };   /* cheap, but only 10-token steps were timed */
    sched_set_cost(r.s, &cost);
    plan(&r, &bt, &n);
    ASSERT_EQ_INT(b.seq.step_new, 10 * COST_GROWTH);
    run_step(&r, &bt);
    cost.max_tokens = 10 * COST_GROWTH;              /* that step was timed too */
    sched_set_cost(r.s, &cost);
    plan(&r, &bt, &n);
    ASSERT_EQ_INT(b.seq.step_new, 200 - 10 * COST_GROWTH);
    sched_remove(r.s, &b.seq);
    treq_close(&b);
    rig_close(&r);
}

/* When the running decodes alone cost more than the target, a waiting
   prompt still gets half a step's worth of tokens, not one token a step. */
TEST(prefill_keeps_half_a_step_when_decodes_fill_it)
{
    cfg_t c = { .n_blocks = 128, .B = 16, .max_tokens = 256, .max_seqs = 32, .watermark = 0,
                .prefix_cache = 1, .max_step_ns = 16000 };
    const sched_cost_t cost = { 0.0, 1000.0, 0.0, 0 }; /* 1 us a token: 20 decodes take 20 us */
    rig_t r;
    rig_open(&r, &c);
    treq_t d[20], p;
    int32_t one[20][1], long_prompt[100];
    for (int i = 0; i < 20; i++) {
        one[i][0] = 5 + i;
        treq_init(&d[i], (uint32_t)i, one[i], 1, 50, 16);
        sched_add(r.s, &d[i].seq);
    }
    batch_t bt;
    uint32_t n;
    plan(&r, &bt, &n);   /* the twenty one-token prompts, before any cost is known */
    ASSERT_EQ_INT(n, 20);
    run_step(&r, &bt);
    sched_set_cost(r.s, &cost);
    for (int i = 0; i < 100; i++)
        long_prompt[i] = 100 + i;
    treq_t p2;
    int32_t second[60];
    for (int i = 0; i < 60; i++)
        second[i] = 300 + i;
    treq_init(&p, 99, long_prompt, 100, 4, 16);
    treq_init(&p2, 98, second, 60, 4, 16);
    sched_add(r.s, &p.seq);
    sched_add(r.s, &p2.seq);
    plan(&r, &bt, &n);
    for (int i = 0; i < 20; i++)
        ASSERT_EQ_INT(d[i].seq.step_new, 1);   /* every decode is in the step */
    /* half of 16 us at 1 us a token, shared: half of it to the first prompt
       while another waits, the rest to the next */
    ASSERT_EQ_INT(p.seq.step_new, 4);
    ASSERT_EQ_INT(p2.seq.step_new, 4);
    run_step(&r, &bt);
    sched_remove(r.s, &p.seq);
    sched_remove(r.s, &p2.seq);
    treq_close(&p);
    treq_close(&p2);
    for (int i = 0; i < 20; i++) {
        sched_remove(r.s, &d[i].seq);
        treq_close(&d[i]);
    }
    rig_close(&r);
}

TEST(a_step_makes_progress_when_one_token_is_over_the_target)
{
    cfg_t c = { .n_blocks = 64, .B = 16, .max_tokens = 64, .max_seqs = 4, .watermark = 0, .prefix_cache = 1,
               .max_step_ns = 500000 };
    const sched_cost_t cost = { 0.0, 1e6, 0.0, 0 }; /* 1 ms a token, target 0.5 ms */
    rig_t r;
    rig_open(&r, &c);
    sched_set_cost(r.s, &cost);
    int32_t pa[3] = { 5, 6, 7 }, pb[5] = { 9, 10, 11, 12, 13 };
    treq_t a, b;
    treq_init(&a, 0, pa, 3, 20, 16);
    treq_init(&b, 1, pb, 5, 20, 16);
    sched_add(r.s, &a.seq);
    sched_add(r.s, &b.seq);
    batch_t bt;
    uint32_t n;
    for (int i = 0; i < 2; i++) { /* a alone, one token a step, b not admitted beside it */
        ASSERT(plan(&r, &bt, &n) == &a.seq);
        ASSERT_EQ_INT(n, 1);
        ASSERT_EQ_INT(a.seq.step_new, 1);
        run_step(&r, &bt);
    }
    /* a's last prompt token (computed like a decode), then its decodes; b gets one token a step */
    for (int i = 0; i < 5; i++) {
        plan(&r, &bt, &n);
        ASSERT_EQ_INT(n, 2);
        ASSERT_EQ_INT(a.seq.step_new, 1);
        ASSERT_EQ_INT(b.seq.step_new, 1);
        run_step(&r, &bt);
    }
    ASSERT_EQ_INT(b.seq.n_tokens, 6); /* its prompt done and its first token sampled */
    sched_remove(r.s, &a.seq);
    sched_remove(r.s, &b.seq);
    treq_close(&a);
    treq_close(&b);
    rig_close(&r);
}

TEST(a_cancelled_prompt_gets_no_more_chunks)
{
    cfg_t c = { .n_blocks = 64, .B = 16, .max_tokens = 32, .max_seqs = 4, .watermark = 0, .prefix_cache = 0,
               .max_step_ns = 5000 };
    const sched_cost_t cost = { 0.0, 100.0, 1.0, 0 };
    rig_t r;
    rig_open(&r, &c);
    sched_set_cost(r.s, &cost);
    int32_t pa[2] = { 5, 6 }, pb[400], pc[3] = { 1, 2, 3 };
    for (int i = 0; i < 400; i++)
        pb[i] = 10 + i;
    treq_t a, b, d;
    treq_init(&a, 0, pa, 2, 50, 16);
    treq_init(&b, 1, pb, 400, 4, 16);
    treq_init(&d, 2, pc, 3, 4, 16);
    sched_add(r.s, &a.seq);
    batch_t bt;
    uint32_t n;
    plan(&r, &bt, &n);
    run_step(&r, &bt);
    sched_add(r.s, &b.seq);
    for (int i = 0; i < 3; i++) {
        plan(&r, &bt, &n);
        ASSERT_EQ_INT(n, 2);
        ASSERT(b.seq.step_new > 0);
        run_step(&r, &bt);
    }
    ASSERT(b.seq.n_computed > 0 && b.seq.n_computed < 400);
    uint32_t free_before = kv_available(r.kv);
    sched_remove(r.s, &b.seq); /* the engine's cancel, at the step boundary */
    ASSERT(kv_available(r.kv) > free_before);
    sched_add(r.s, &d.seq);
    for (int i = 0; i < 4; i++) {
        sched_seq_t *const *seqs;
        n = sched_plan(r.s, &bt, &seqs);
        for (uint32_t j = 0; j < n; j++)
            ASSERT_MSG(seqs[j] != &b.seq, "step %d schedules the cancelled prompt", i);
        ASSERT_EQ_INT(b.seq.step_new, 0);
        ASSERT_EQ_INT(a.seq.step_new, 1);
        run_step(&r, &bt);
    }
    ASSERT_EQ_INT(b.seq.state, SCHED_DONE);
    ASSERT_EQ_INT(d.seq.state, SCHED_RUNNING); /* the next prompt got the step instead */
    sched_remove(r.s, &a.seq);
    sched_remove(r.s, &d.seq);
    treq_close(&a);
    treq_close(&b);
    treq_close(&d);
    rig_close(&r);
}

/* Steps timed on a machine whose true cost is c, with every 10th step slowed 5x. */
static void feed(cost_fit_t *f, const sched_cost_t *c, int n, int outliers)
{
    for (int i = 0; i < n; i++) {
        uint64_t tokens = 1 + (uint64_t)(i * 37 % 300), ctx = (uint64_t)(i * 911 % 4000);
        uint64_t pairs = cost_pairs(ctx, tokens);
        double ns = cost_of(c, tokens, pairs);
        if (outliers && i % 10 == 9)
            ns *= 5;
        cost_fit_add(f, tokens, pairs, (uint64_t)ns);
    }
}

TEST(the_step_cost_fit_learns_the_coefficients)
{
    const sched_cost_t truth = { 2e6, 3e5, 40.0, 0 };
    cost_fit_t f;
    cost_fit_init(&f);
    cost_fit_add(&f, 10, 100, 1000);
    cost_fit_add(&f, 0, 0, 1000); /* ignored */
    ASSERT(f.fit.per_step == 0.0 && f.fit.per_token == 0.0 && f.fit.per_pair == 0.0); /* too few yet */
    cost_fit_init(&f);
    feed(&f, &truth, 200, 0);
    ASSERT_MSG(fabs(f.fit.per_step - truth.per_step) < 0.01 * truth.per_step, "per_step %g", f.fit.per_step);
    ASSERT_MSG(fabs(f.fit.per_token - truth.per_token) < 0.01 * truth.per_token, "per_token %g", f.fit.per_token);
    ASSERT_MSG(fabs(f.fit.per_pair - truth.per_pair) < 0.01 * truth.per_pair, "per_pair %g", f.fit.per_pair);
    /* slow outliers move the estimate of a long chunk a little, never below the truth */
    cost_fit_init(&f);
    feed(&f, &truth, 200, 1);
    double want = cost_of(&truth, 64, cost_pairs(3000, 64)), got = cost_of(&f.fit, 64, cost_pairs(3000, 64));
    ASSERT_MSG(got >= 0.95 * want && got < 2.0 * want, "estimate %.0f, truth %.0f", got, want);
    /* a decode-only window (the same tokens every step) still fits without a negative term */
    cost_fit_init(&f);
    for (int i = 0; i < 60; i++)
        cost_fit_add(&f, 4, cost_pairs(100 + i, 1) * 4, 5000000 + 1000 * i);
    ASSERT(f.fit.per_step >= 0.0 && f.fit.per_token >= 0.0 && f.fit.per_pair >= 0.0);
    double d = cost_of(&f.fit, 4, cost_pairs(130, 1) * 4);
    ASSERT_MSG(fabs(d - 5030000) < 0.05 * 5030000, "decode estimate %.0f", d);
    /* ... charged to the tokens: a 512-token chunk costs at least 512 / 4 decode steps */
    double p = cost_of(&f.fit, 512, cost_pairs(0, 512));
    ASSERT_MSG(p >= 128 * 5000000.0, "a 512-token chunk after decodes only: %.0f ns", p);
}

/*
 * A group of four choices: the lead is admitted only with seats for all
 * (a later request waits), computes the prompt (20 tokens, B = 8: two
 * full blocks and a partial one) alone, the siblings fork from it sharing
 * every block; at the first decode each writer of the shared partial
 * block but the last copies it (the fake backend fails any write into a
 * shared block, and check_step finds each position holding its own
 * sequence's token); releases in any order free everything.
 */
TEST(forked_siblings_share_the_prompt_and_copy_its_last_block_on_write)
{
    cfg_t c = { .n_blocks = 10, .B = 8, .max_tokens = 64, .max_seqs = 4, .watermark = 0, .prefix_cache = 1 };
    rig_t r;
    rig_open(&r, &c);
    int32_t prompt[20];
    for (int i = 0; i < 20; i++)
        prompt[i] = 1 + (i * 7) % (V - 1);
    treq_t q[4], x;
    for (uint32_t i = 0; i < 4; i++)
        treq_init(&q[i], i, prompt, 20, 6, c.B);
    treq_init(&x, 9, prompt, 8, 4, c.B);
    q[0].seq.n_forks = 3;
    sched_add(r.s, &q[0].seq);
    sched_add(r.s, &x.seq);
    batch_t b;
    uint32_t n;
    const int32_t *cs, *cd;
    plan(&r, &b, &n);
    ASSERT_EQ_INT(n, 1);                                /* x waits: the group holds all four seats */
    ASSERT_EQ_INT(x.seq.state, SCHED_WAITING);
    ASSERT_EQ_INT(q[0].seq.step_new, 20);
    ASSERT_EQ_INT(sched_copies(r.s, &cs, &cd), 0);
    ASSERT_EQ_INT(forward_step(r.fwd, &b, r.logits), 0);
    sched_commit(r.s);
    ASSERT_EQ_INT(sched_fork(r.s, &x.seq, &q[1].seq), ERR_STATE);   /* x is not running */
    for (int i = 1; i < 4; i++)
        ASSERT_EQ_INT(sched_fork(r.s, &q[0].seq, &q[i].seq), 0);
    ASSERT_EQ_INT(sched_fork(r.s, &q[0].seq, &x.seq), ERR_STATE);   /* no fork left */
    ASSERT_EQ_INT(q[0].seq.n_forks, 0);
    for (int k = 0; k < 3; k++)
        ASSERT_EQ_INT(kv_block_refs(r.kv, q[0].seq.kv.blocks[k]), 4);
    sched_stats_t ss;
    sched_get_stats(r.s, &ss);
    ASSERT_EQ_INT(ss.prompt_tokens, 20);                /* computed once */
    ASSERT_EQ_INT(ss.n_running, 4);
    /* each choice its own first token, as its own seed would give */
    for (int i = 0; i < 4; i++)
        ASSERT_EQ_INT(sched_append(r.s, &q[i].seq, 100 + i), 0);
    check_step(&r, &b, n, NULL, 0);

    plan(&r, &b, &n);
    ASSERT_EQ_INT(n, 4);                                /* x still waits: no seat */
    ASSERT_EQ_INT(sched_copies(r.s, &cs, &cd), 3);      /* the fourth writer holds it alone */
    ASSERT_EQ_INT(forward_kv_copy(r.fwd, cs, cd, 3), 0);
    ASSERT_EQ_INT(forward_step(r.fwd, &b, r.logits), 0);
    sched_commit(r.s);
    check_step(&r, &b, n, NULL, 0);
    kv_stats_t ks;
    kv_get_stats(r.kv, &ks);
    ASSERT_EQ_INT(ks.n_used, 2 + 4);                    /* two shared full blocks, four tails */
    for (int k = 0; k < 2; k++)
        ASSERT_EQ_INT(kv_block_refs(r.kv, q[0].seq.kv.blocks[k]), 4);

    /* the lead goes first, then the others out of order; x gets in */
    int order[4] = { 0, 2, 1, 3 };
    for (int i = 0; i < 4; i++) {
        sched_remove(r.s, &q[order[i]].seq);
        check_step(&r, &b, 0, NULL, 0);
    }
    plan(&r, &b, &n);
    ASSERT_EQ_INT(n, 1);
    ASSERT_EQ_INT(x.seq.state, SCHED_RUNNING);
    sched_remove(r.s, &x.seq);
    kv_get_stats(r.kv, &ks);
    ASSERT_EQ_INT(ks.n_used, 0);
    ASSERT_EQ_INT(ks.double_frees, 0);
    for (int i = 0; i < 4; i++)
        treq_close(&q[i]);
    treq_close(&x);
    rig_close(&r);
}

/*
 * A group of three alone in a pool of four blocks, its prompt taking
 * three: the lead is admitted anyway, the siblings fork, and the one copy
 * the pool allows goes to the first writer; the others are preempted and
 * recompute their own tokens (prompt and what each generated, its own
 * tokens differing per choice) as blocks free up.  Every step's KV holds
 * each sequence's own tokens; all end; the pool ends empty.
 */
TEST(a_group_too_big_for_the_pool_preempts_members_which_recompute_their_own)
{
    cfg_t c = { .n_blocks = 4, .B = 8, .max_tokens = 64, .max_seqs = 4, .watermark = 0, .prefix_cache = 1 };
    rig_t r;
    rig_open(&r, &c);
    int32_t prompt[20];
    for (int i = 0; i < 20; i++)
        prompt[i] = 1 + (i * 11) % (V - 1);
    treq_t q[3];
    for (uint32_t i = 0; i < 3; i++)
        treq_init(&q[i], i, prompt, 20, 6, c.B);
    q[0].seq.n_forks = 2;
    sched_add(r.s, &q[0].seq);
    uint32_t done = 0;
    for (int step = 0; step < 300 && done < 3; step++) {
        batch_t b;
        sched_seq_t *const *seqs;
        const int32_t *cs, *cd;
        uint32_t n = sched_plan(r.s, &b, &seqs);
        ASSERT(n > 0);
        uint32_t nc = sched_copies(r.s, &cs, &cd);
        ASSERT_EQ_INT(forward_kv_copy(r.fwd, cs, cd, nc), 0);
        ASSERT_EQ_INT(forward_step(r.fwd, &b, r.logits), 0);
        sched_commit(r.s);
        check_step(&r, &b, n, NULL, 0);
        for (uint32_t k = 0; k < n; k++) {
            sched_seq_t *s = seqs[k];
            if (s->step_logit < 0)
                continue;
            while (s->n_forks > 0) {   /* the prompt is done: the siblings fork, first token each */
                treq_t *sib = &q[3 - s->n_forks];
                ASSERT_EQ_INT(sched_fork(r.s, s, &sib->seq), 0);
                ASSERT_EQ_INT(sched_append(r.s, &sib->seq, (int32_t)(100 + 10 * sib->id)), 0);
            }
            treq_t *t = s->owner;
            uint32_t gen = s->n_tokens - s->n_prompt;  /* tokens it generated so far */
            if (gen == t->max_new) {
                sched_remove(r.s, s);
                done++;
            } else {
                ASSERT_EQ_INT(sched_append(r.s, s, (int32_t)(100 + 10 * t->id + gen)), 0);
            }
        }
    }
    ASSERT_EQ_INT(done, 3);
    sched_stats_t ss;
    sched_get_stats(r.s, &ss);
    ASSERT_MSG(ss.preemptions > 0, "no member was preempted");
    ASSERT(ss.recomputed > 0);
    for (uint32_t i = 0; i < 3; i++) {
        ASSERT_EQ_INT(q[i].seq.n_tokens, 26);
        for (uint32_t g = 0; g < 6; g++)
            ASSERT_EQ_INT(q[i].seq.tokens[20 + g], 100 + 10 * (int32_t)i + (int32_t)g);
    }
    kv_stats_t ks;
    kv_get_stats(r.kv, &ks);
    ASSERT_EQ_INT(ks.n_used, 0);
    ASSERT_EQ_INT(ks.double_frees, 0);
    for (int i = 0; i < 3; i++)
        treq_close(&q[i]);
    rig_close(&r);
}

/*
 * Speculative decoding: a decode carries its draft (positions after its own token, a
 * logit row each, across block boundaries), the accepted draft tokens count computed
 * without another step, a token other than the draft's is refused, and the blocks only
 * rejected positions used go back to the pool.  The spare token budget bounds a draft.
 */
TEST(a_draft_rides_its_decode_and_rejected_blocks_go_back)
{
    cfg_t c = { .n_blocks = 16, .B = 4, .max_tokens = 64, .max_seqs = 2, .watermark = 0, .prefix_cache = 1 };
    rig_t r;
    rig_open(&r, &c);
    int32_t p[6] = { 5, 6, 7, 8, 9, 10 }, d[8] = { 101, 102, 103, 104, 105, 106, 107, 108 };
    treq_t a;
    treq_init(&a, 0, p, 6, 20, 4);
    sched_add(r.s, &a.seq);
    batch_t bt;
    uint32_t n;
    plan(&r, &bt, &n);
    run_step(&r, &bt);                       /* prefilled, one token sampled: decoding */
    ASSERT_EQ_INT(a.seq.n_tokens, 7);
    int32_t own = a.seq.tokens[6];
    a.seq.draft = d;
    a.seq.n_draft = 8;
    plan(&r, &bt, &n);
    ASSERT_EQ_INT(n, 1);
    ASSERT_EQ_INT(a.seq.step_new, 9);
    ASSERT_EQ_INT(a.seq.step_n_draft, 8);
    ASSERT_EQ_INT(bt.n_logits, 9);
    for (uint32_t j = 0; j < 9; j++) {
        int32_t row = bt.logit_rows[a.seq.step_logit + (int32_t)j];
        ASSERT_EQ_INT(bt.pos[row], (int32_t)(6 + j));
        ASSERT_EQ_INT(bt.tokens[row], j == 0 ? own : d[j - 1]);
    }
    ASSERT_EQ_INT(a.seq.kv.n_blocks, 4);     /* positions 0 .. 14 */
    ASSERT_EQ_INT(forward_step(r.fwd, &bt, r.logits), 0);
    ASSERT_MSG(!r.fake.bad, "%s", r.fake.why);
    sched_commit(r.s);
    ASSERT_EQ_INT(a.seq.n_computed, 7);      /* its own token; the drafts wait for the verdict */
    /* two drafts accepted, then the model's own token differs from the third */
    for (int j = 0; j < 2; j++) {
        ASSERT_EQ_INT(sched_append(r.s, &a.seq, d[j]), 0);
        ASSERT_EQ_INT(sched_draft_accept(r.s, &a.seq), 0);
    }
    ASSERT_EQ_INT(a.seq.n_computed, 9);
    ASSERT_EQ_INT(sched_append(r.s, &a.seq, 499), 0);
    ASSERT_EQ_INT(sched_draft_accept(r.s, &a.seq), ERR_STATE);  /* not what the step computed */
    ASSERT_EQ_INT(a.seq.n_computed, 9);
    kv_stats_t ks;
    kv_get_stats(r.kv, &ks);
    ASSERT_EQ_INT(ks.n_used, 4);
    sched_draft_end(r.s, &a.seq);
    kv_get_stats(r.kv, &ks);
    ASSERT_EQ_INT(a.seq.kv.n_blocks, 3);     /* positions 0 .. 9 */
    ASSERT_EQ_INT(ks.n_used, 3);
    char err[ERR_MSG_MAX];
    ASSERT_MSG(kv_check(r.kv, err, sizeof err) == 0, "%s", err);
    /* the next step decodes position 9 (token 499) over the accepted ones */
    a.seq.n_draft = 0;
    plan(&r, &bt, &n);
    ASSERT_EQ_INT(a.seq.step_new, 1);
    ASSERT_EQ_INT(bt.pos[0], 9);
    ASSERT_EQ_INT(bt.tokens[0], 499);
    run_step(&r, &bt);
    ASSERT_MSG(!r.fake.bad, "%s", r.fake.why);
    sched_remove(r.s, &a.seq);
    treq_close(&a);
    rig_close(&r);

    /* a budget of 4 tokens with 2 running: each decode may carry 2 drafts at most */
    c.max_tokens = 4;
    rig_open(&r, &c);
    treq_t b, e;
    treq_init(&b, 1, p, 2, 20, 4);
    treq_init(&e, 2, p + 2, 2, 20, 4);
    sched_add(r.s, &b.seq);
    sched_add(r.s, &e.seq);
    plan(&r, &bt, &n);
    run_step(&r, &bt);
    b.seq.draft = e.seq.draft = d;
    b.seq.n_draft = e.seq.n_draft = 8;
    plan(&r, &bt, &n);
    ASSERT_EQ_INT(n, 2);
    ASSERT_EQ_INT(b.seq.step_n_draft, 2);
    ASSERT_EQ_INT(e.seq.step_n_draft, 0);   /* 4 - 3 left, less one per running sequence */
    ASSERT(bt.n_tokens <= 4);
    sched_remove(r.s, &b.seq);
    sched_remove(r.s, &e.seq);
    treq_close(&b);
    treq_close(&e);
    rig_close(&r);
}

TEST_LIST(T(a_long_prompt_shrinks_its_chunks_to_keep_the_step_under_its_time), T(waiting_order_is_priority_then_arrival),
          T(a_short_prompt_is_admitted_beside_a_long_prefill), T(the_first_chunks_are_short_while_no_cost_is_known),
          T(chunks_grow_at_most_cost_growth_times_past_what_was_timed),
          T(prefill_keeps_half_a_step_when_decodes_fill_it),
          T(a_step_makes_progress_when_one_token_is_over_the_target), T(a_cancelled_prompt_gets_no_more_chunks),
          T(the_step_cost_fit_learns_the_coefficients),
          T(a_long_prompt_is_chunked_around_the_decodes), T(the_newest_is_preempted_and_goes_first_in_line),
          T(admission_is_first_come_first_served), T(prefix_cache_skips_the_shared_prompt),
          T(sequence_limit_holds_back_admission),
          T(a_scoring_prompt_gets_a_row_per_position_and_skips_the_cache),
          T(a_preempted_scoring_prompt_scores_each_position_once), T(thousands_of_requests_tiny_pool_preempting),
          T(thousands_of_requests_no_prefix_cache), T(thousands_of_requests_roomy_pool),
          T(small_budget_many_seeds), T(forked_siblings_share_the_prompt_and_copy_its_last_block_on_write),
          T(a_group_too_big_for_the_pool_preempts_members_which_recompute_their_own),
          T(a_draft_rides_its_decode_and_rejected_blocks_go_back))
