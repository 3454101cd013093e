/*
 * Batch invariance of the forward pass on the CPU backend: a sequence's
 * logits are bit-for-bit the same alone, in a ragged batch with other
 * sequences, and with its prompt prefilled in one chunk or several.
 * (Agreement with the independent numpy reference is tests/ref/.)
 */
#include "test.h"

#include "../../engine/backend.h"
#include "base/err.h"
#include "../../engine/forward.h"
#include "engine/model/model.h"

#define MAXT 64

typedef struct {
    model_t *m;
    backend_t *b;
    forward_t *f;
    uint32_t V;
} rig_t;

static void rig_open(rig_t *r, int threads)
{
    char err[ERR_MSG_MAX];
    const char *path = test_model_path();
    if (path == NULL)
        TEST_SKIP("default model not fetched (scripts/fetch-model)");
    ASSERT_MSG(model_create(&r->m, path, "auto", err, sizeof err) == 0, "%s", err);
    backend_opts_t o = { .n_threads = threads, .kv_bytes = 48u << 20, .block_tokens = 16, .max_tokens = MAXT };
    ASSERT_MSG(cpu_backend_create(&r->b, r->m, &o, err, sizeof err) == 0, "%s", err);
    ASSERT_MSG(forward_create(&r->f, r->m, r->b, MAXT, err, sizeof err) == 0, "%s", err);
    r->V = r->m->hp.n_vocab;
}

static void rig_close(rig_t *r)
{
    forward_destroy(r->f);
    backend_destroy(r->b);
    model_destroy(r->m);
}

/* Sequence s owns blocks [s * 8, s * 8 + 8): 128 positions. */
static int32_t tables[4][8];

static void init_tables(void)
{
    for (int s = 0; s < 4; s++)
        for (int k = 0; k < 8; k++)
            tables[s][k] = s * 8 + k;
}

/* Tokens of a few test sequences (arbitrary ids below the vocabulary). */
static void make_tokens(int32_t *t, uint32_t n, uint32_t seed)
{
    for (uint32_t i = 0; i < n; i++)
        t[i] = (int32_t)((seed * 7919u + i * 104729u) % 49000u) + 10;
}

/* Prefill seq (table s) with tokens [from, to) in one step; logits of the last token. */
static void step_one(rig_t *r, int s, const int32_t *toks, uint32_t from, uint32_t to, float *logits)
{
    int32_t pos[MAXT], row = (int32_t)(to - from - 1);
    char err[ERR_MSG_MAX];
    for (uint32_t i = from; i < to; i++)
        pos[i - from] = (int32_t)i;
    batch_seq_t bs = { tables[s], 8, 0, to - from };
    batch_t b = { to - from, toks + from, pos, 1, &bs, 1, &row };
    ASSERT_MSG(batch_check(&b, r->V, MAXT, r->b->n_kv_blocks, 16, err, sizeof err) == 0, "%s", err);
    ASSERT_EQ_INT(forward_step(r->f, &b, logits), 0);
}

static void assert_same_bits(const float *a, const float *b, uint32_t n, const char *what)
{
    for (uint32_t i = 0; i < n; i++)
        ASSERT_MSG(memcmp(&a[i], &b[i], sizeof(float)) == 0,
                   "%s: logit %u differs: %.9g vs %.9g", what, i, a[i], b[i]);
}

TEST(chunked_prefill_is_bitwise_identical)
{
    rig_t r;
    rig_open(&r, 2);
    init_tables();
    int32_t toks[40];
    make_tokens(toks, 40, 1);
    float *whole = malloc(r.V * sizeof(float)), *chunked = malloc(r.V * sizeof(float));

    step_one(&r, 0, toks, 0, 40, whole);
    /* chunks of 7, 16 and 17 tokens cross block boundaries at odd places */
    step_one(&r, 1, toks, 0, 7, chunked);
    step_one(&r, 1, toks, 7, 23, chunked);
    step_one(&r, 1, toks, 23, 40, chunked);
    assert_same_bits(whole, chunked, r.V, "chunks 7+16+17");

    /* token by token */
    for (uint32_t i = 0; i < 40; i++)
        step_one(&r, 2, toks, i, i + 1, chunked);
    assert_same_bits(whole, chunked, r.V, "one token per step");
    free(whole);
    free(chunked);
    rig_close(&r);
}

TEST(ragged_batch_is_bitwise_identical)
{
    rig_t r;
    rig_open(&r, 2);
    init_tables();
    int32_t a[30], bb[21], c[9];
    make_tokens(a, 30, 2);
    make_tokens(bb, 21, 3);
    make_tokens(c, 9, 4);
    float *alone_a = malloc(r.V * sizeof(float)), *alone_c = malloc(r.V * sizeof(float));
    float *batch = malloc(3 * (size_t)r.V * sizeof(float));

    step_one(&r, 0, a, 0, 30, alone_a);
    step_one(&r, 2, c, 0, 9, alone_c);

    /* c's first 8 tokens are cached in table 3; then one step holds
       b's whole prompt (table 1), a's whole prompt (table 0 again) and c's decode. */
    step_one(&r, 3, c, 0, 8, batch);
    int32_t toks[60], pos[60];
    uint32_t n = 0;
    for (uint32_t i = 0; i < 21; i++, n++) { toks[n] = bb[i]; pos[n] = (int32_t)i; }
    for (uint32_t i = 0; i < 30; i++, n++) { toks[n] = a[i]; pos[n] = (int32_t)i; }
    toks[n] = c[8]; pos[n] = 8; n++;
    batch_seq_t seqs[3] = { { tables[1], 8, 0, 21 }, { tables[0], 8, 21, 30 }, { tables[3], 8, 51, 1 } };
    int32_t rows[3] = { 20, 50, 51 };
    batch_t b = { n, toks, pos, 3, seqs, 3, rows };
    char err[ERR_MSG_MAX];
    ASSERT_MSG(batch_check(&b, r.V, MAXT, r.b->n_kv_blocks, 16, err, sizeof err) == 0, "%s", err);
    ASSERT_EQ_INT(forward_step(r.f, &b, batch), 0);
    assert_same_bits(alone_a, batch + r.V, r.V, "a in a ragged batch");
    assert_same_bits(alone_c, batch + 2 * (size_t)r.V, r.V, "c decoding beside two prefills");
    free(alone_a);
    free(alone_c);
    free(batch);
    rig_close(&r);
}

TEST(thread_count_does_not_change_bits)
{
    rig_t r1, r3;
    int32_t a[19];
    init_tables();
    make_tokens(a, 19, 5);
    rig_open(&r1, 1);
    uint32_t V = r1.V;
    float *x = malloc(V * sizeof(float)), *y = malloc(V * sizeof(float));
    step_one(&r1, 0, a, 0, 19, x);
    rig_close(&r1);
    rig_open(&r3, 3);
    step_one(&r3, 0, a, 0, 19, y);
    rig_close(&r3);
    ASSERT_EQ_INT(r3.V, V);
    assert_same_bits(x, y, V, "1 vs 3 threads");
    free(x);
    free(y);
}

TEST(batch_check_rejects_bad_batches)
{
    int32_t toks[2] = { 1, 2 }, pos[2] = { 0, 2 }, table[1] = { 0 }, row = 1;
    char err[ERR_MSG_MAX];
    batch_seq_t s = { table, 1, 0, 2 };
    batch_t b = { 2, toks, pos, 1, &s, 1, &row };
    ASSERT_EQ_INT(batch_check(&b, 100, 8, 4, 16, err, sizeof err), ERR_INVALID); /* gap in positions */
    pos[1] = 1;
    ASSERT_EQ_INT(batch_check(&b, 100, 8, 4, 16, err, sizeof err), 0);
    toks[0] = 100;
    ASSERT_EQ_INT(batch_check(&b, 100, 8, 4, 16, err, sizeof err), ERR_INVALID); /* id past vocab */
    toks[0] = 1;
    table[0] = 4;
    ASSERT_EQ_INT(batch_check(&b, 100, 8, 4, 16, err, sizeof err), ERR_INVALID); /* block past pool */
    table[0] = 0;
    pos[0] = 15; pos[1] = 16;
    ASSERT_EQ_INT(batch_check(&b, 100, 8, 4, 16, err, sizeof err), ERR_INVALID); /* past the block table */
    pos[0] = 0; pos[1] = 1;
    row = 2;
    ASSERT_EQ_INT(batch_check(&b, 100, 8, 4, 16, err, sizeof err), ERR_INVALID);
}

/* Two logit rows naming the same token would both add the last FFN output into that row of
   x in place before the final norm (a race on CUDA, a double add on the CPU). */
TEST(batch_check_rejects_duplicate_logit_rows)
{
    int32_t toks[3] = { 1, 2, 3 }, pos[3] = { 0, 1, 2 }, table[1] = { 0 };
    int32_t rows[3] = { 0, 2, 1 };
    char err[ERR_MSG_MAX];
    batch_seq_t s = { table, 1, 0, 3 };
    batch_t b = { 3, toks, pos, 1, &s, 3, rows };
    ASSERT_MSG(batch_check(&b, 100, 8, 4, 16, err, sizeof err) == 0, "%s", err); /* every row, any order */
    rows[2] = 2;
    ASSERT_EQ_INT(batch_check(&b, 100, 8, 4, 16, err, sizeof err), ERR_INVALID);
    ASSERT(strstr(err, "twice") != NULL);
    rows[0] = 2; rows[1] = 1; rows[2] = 2;
    ASSERT_EQ_INT(batch_check(&b, 100, 8, 4, 16, err, sizeof err), ERR_INVALID);
}

/*
 * forward_step checks each batch itself: a token id past the vocabulary,
 * a block past the pool or a logit row past the batch is ERR_INVALID
 * before any backend operation runs, and a good batch still runs after
 * them.
 */
TEST(forward_step_refuses_bad_batches)
{
    rig_t r;
    rig_open(&r, 1);
    init_tables();
    float *logits = malloc((size_t)r.V * sizeof(float));
    ASSERT(logits != NULL);
    int32_t toks[2] = { 1, 2 }, pos[2] = { 0, 1 }, row = 1;
    batch_seq_t bs = { tables[0], 8, 0, 2 };
    batch_t b = { 2, toks, pos, 1, &bs, 1, &row };
    /* each refusal's reason is what forward_last_error (and so the
       engine's error to its clients) says */
    toks[1] = (int32_t)r.V;
    ASSERT_EQ_INT(forward_step(r.f, &b, logits), ERR_INVALID);
    ASSERT_MSG(strstr(forward_last_error(r.f), "token 1 has id") != NULL, "%s", forward_last_error(r.f));
    toks[1] = -1;
    ASSERT_EQ_INT(forward_step(r.f, &b, logits), ERR_INVALID);
    ASSERT_MSG(strstr(forward_last_error(r.f), "has id -1") != NULL, "%s", forward_last_error(r.f));
    toks[1] = 2;
    int32_t far[8] = { 0, 1, 2, 3, 4, 5, 6, (int32_t)r.b->n_kv_blocks };
    batch_seq_t bad_block = { far, 8, 0, 2 };
    b.seqs = &bad_block;
    ASSERT_EQ_INT(forward_step(r.f, &b, logits), ERR_INVALID);
    ASSERT_MSG(strstr(forward_last_error(r.f), "names block") != NULL, "%s", forward_last_error(r.f));
    b.seqs = &bs;
    row = 2;
    ASSERT_EQ_INT(forward_step(r.f, &b, logits), ERR_INVALID);
    ASSERT_MSG(strstr(forward_last_error(r.f), "logit row 2") != NULL, "%s", forward_last_error(r.f));
    row = 1;
    ASSERT_EQ_INT(forward_step(r.f, &b, logits), 0);
    ASSERT_MSG(forward_last_error(r.f)[0] == 0, "%s", forward_last_error(r.f)); /* no stale reason */
    free(logits);
    rig_close(&r);
}

/* The CPU backend refuses options it cannot run with one clear error. */
TEST(cpu_backend_rejects_bad_options)
{
    char err[ERR_MSG_MAX];
    const char *path = test_model_path();
    if (path == NULL)
        TEST_SKIP("default model not fetched (scripts/fetch-model)");
    model_t *m = NULL;
    ASSERT_MSG(model_create(&m, path, "auto", err, sizeof err) == 0, "%s", err);
    static const struct {
        backend_opts_t o;
        const char *says;
    } bad[] = {
        { { .n_threads = 1, .kv_bytes = 48u << 20, .block_tokens = 16, .max_tokens = 0 }, "max_tokens is 0" },
        { { .n_threads = 1, .kv_bytes = 48u << 20, .block_tokens = 65, .max_tokens = MAXT }, "block size 65" },
        { { .n_threads = 1, .kv_bytes = 1024, .block_tokens = 16, .max_tokens = MAXT }, "holds no KV block" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        backend_t *b = (backend_t *)&bad; /* must come back NULL */
        err[0] = 0;
        ASSERT_EQ_INT(cpu_backend_create(&b, m, &bad[i].o, err, sizeof err), ERR_INVALID);
        ASSERT(b == NULL);
        ASSERT_MSG(strstr(err, bad[i].says) != NULL, "case %zu: %s", i, err);
    }
    model_destroy(m);
}

TEST_LIST(T(chunked_prefill_is_bitwise_identical), T(ragged_batch_is_bitwise_identical),
          T(thread_count_does_not_change_bits), T(batch_check_rejects_bad_batches),
          T(batch_check_rejects_duplicate_logit_rows), T(cpu_backend_rejects_bad_options),
          T(forward_step_refuses_bad_batches))
