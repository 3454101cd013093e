/*
 * The CUDA backend's decode fast path, checked without a reference model
 * of its own: decode steps as CUDA graphs against the same steps without
 * graphs and against the CPU backend (padded batch sizes, sequences
 * joining and leaving, block boundaries, contexts of 700 and 3,000 whose
 * attention splits), each asserting that its graphs were captured and
 * replayed (backend_ops_t.graph_stats), the device's greedy argmax
 * against the sampler's (ties, -inf, NaN; inside graphs; through the
 * engine), and the per-operation profile.  Skips without a device.
 * Tolerances as in test_cuda.c.  `test_cuda_decode graphs_short` runs one
 * short graph test alone (for compute-sanitizer).
 */
#include "gpu_test.h"

#include <float.h>
#include <math.h>

#include "../../engine/backend.h"
#include "../../engine/engine.h"
#include "base/err.h"
#include "../../engine/forward.h"
#include "engine/model/model.h"
#include "../../engine/registry.h"
#include "../../engine/sampler.h"

/* ---------------------------------------------------------------- greedy argmax on the device */

/* The CUDA backend's argmax kernel over host logits (cuda/argmax.cu).  Weak:
   a build without the CUDA backend has none (and need_gpu skips first). */
int cuda_argmax_rows(const float *logits, unsigned n_rows, unsigned V, void *out) __attribute__((weak));

/* The sampler's greedy choice of one row (a copy: the sampler processes in place). */
static int cpu_greedy(sampler_t *smp, const float *row, uint32_t V, float *scratch, sampler_result_t *r)
{
    sampler_params_t p;
    sampler_params_init(&p);
    p.temperature = 0.0f;
    memcpy(scratch, row, sizeof(float) * V);
    return sampler_sample(smp, &p, NULL, scratch, 0, r);
}

/* GPU choice g against the sampler's on the same row: same token (or both "no token"),
   and, for rows whose largest logit is finite, the same log-probability. */
static void check_choice(sampler_t *smp, const float *row, uint32_t V, float *scratch, const bk_argmax_t *g,
                         const char *what, uint32_t r)
{
    sampler_result_t cr;
    int rc = cpu_greedy(smp, row, V, scratch, &cr);
    if (rc != 0) {
        ASSERT_MSG(g->token == -1, "%s row %u: the sampler fails (%s) but the GPU chose %d", what, r, err_str(rc),
                   g->token);
        return;
    }
    ASSERT_MSG(g->token == cr.token, "%s row %u: GPU chose %d, the sampler %d", what, r, g->token, cr.token);
    if (fabsf(row[cr.token]) < 1e30f)
        ASSERT_MSG(fabsf(g->logprob - cr.logprob) < 1e-4f + 1e-5f * fabsf(cr.logprob),
                   "%s row %u: logprob %.7g on the GPU, %.7g in the sampler", what, r, g->logprob, cr.logprob);
}

static void argmax_rows_case(uint32_t V)
{
    enum { R = 14 };
    char err[ERR_MSG_MAX];
    float *l = malloc(sizeof(float) * R * V), *scratch = malloc(sizeof(float) * V);
    bk_argmax_t out[R];
    sampler_t *smp;
    ASSERT_MSG(sampler_create(&smp, V, err, sizeof err) == 0, "%s", err);
    for (uint32_t i = 0; i < R * V; i++)
        l[i] = frand() * 8.0f;
    float *row;
    uint32_t a = (uint32_t)((frand() * 0.5f + 0.5f) * (V - 1)), b = (uint32_t)((frand() * 0.5f + 0.5f) * (V - 1));
    row = l + 1 * V; row[a] = row[b] = 20.0f;                          /* a tie at two random ids */
    row = l + 2 * V; row[V - 1] = 20.0f; row[5] = 20.0f; row[2049 % V] = 20.0f; /* ties across threads */
    row = l + 3 * V; row[V - 1] = 20.0f;                               /* the last id */
    row = l + 4 * V; for (uint32_t i = 0; i < V; i++) row[i] = -INFINITY; /* no finite logit */
    row = l + 5 * V; for (uint32_t i = 0; i < V; i++) row[i] = -INFINITY; row[V / 3] = -2.0f; /* one finite */
    row = l + 6 * V; row[V / 2] = NAN;                                 /* a NaN */
    row = l + 7 * V; row[V - 1] = NAN; row[0] = 30.0f;                 /* a NaN after the maximum */
    row = l + 8 * V; row[V / 4] = INFINITY; row[V / 5] = INFINITY;     /* +inf twice: the lower id */
    row = l + 9 * V; row[7] = FLT_MAX; row[V - 2] = INFINITY;          /* FLT_MAX and +inf tie */
    row = l + 10 * V; for (uint32_t i = 0; i < V; i++) row[i] = 1.5f;  /* all equal: id 0, logprob -log V */
    row = l + 11 * V; for (uint32_t i = 0; i < V; i++) row[i] = -INFINITY; row[V - 1] = 3.0f; row[V / 2] = 3.0f;
    row = l + 12 * V; row[1] = -INFINITY; row[0] = 50.0f;              /* -inf among finite values */
    /* row 0 and row 13: random */
    ASSERT_EQ_INT(cuda_argmax_rows(l, R, V, out), 0);
    char what[32];
    snprintf(what, sizeof what, "argmax V=%u", V);
    for (uint32_t r = 0; r < R; r++)
        check_choice(smp, l + (size_t)r * V, V, scratch, &out[r], what, r);
    ASSERT_EQ_INT(out[4].token, -1);
    ASSERT_EQ_INT(out[6].token, -1);
    ASSERT_EQ_INT(out[10].token, 0);
    sampler_destroy(smp);
    free(l);
    free(scratch);
}

TEST(argmax_matches_sampler)
{
    need_gpu();
    ASSERT_MSG(cuda_argmax_rows != NULL, "the CUDA backend is built but cuda_argmax_rows is not linked");
    argmax_rows_case(1000);     /* 16-byte loads */
    argmax_rows_case(1001);     /* a vocabulary that is not a multiple of 4: single loads */
    argmax_rows_case(49152);    /* SmolLM2's */
    argmax_rows_case(128256);   /* LLaMA 3's */
}

/* ---------------------------------------------------------------- decode steps as CUDA graphs */

#define GS 20           /* sequences */
#define GB 16           /* blocks per sequence: up to 256 positions */

typedef struct {
    int32_t tok[GB * 16];
    uint32_t len;       /* tokens in the cache */
    int32_t table[GB];
} gseq_t;

/*
 * Logit row r of a step on the three backends of a graph test, l[0] the
 * CPU's, l[1] CUDA's eager, l[2] CUDA's with graphs: graphs match eager
 * within bf16 and the CPU within the usual tolerance; their greedy tokens
 * differ only where eager's top two are closer than twice the largest
 * difference.  Keeps the worst errors; returns 1 when graphs and eager are
 * bitwise equal.
 */
static int compare_row(const char *name, uint32_t st, uint32_t n, uint32_t r, float *const l[3], uint32_t V,
                       double *worst_eager, double *worst_ref)
{
    const float *ref = l[0] + (size_t)r * V, *off = l[1] + (size_t)r * V, *on = l[2] + (size_t)r * V;
    double e1 = rel_l2(on, off, V), e2 = rel_l2(on, ref, V);
    *worst_eager = e1 > *worst_eager ? e1 : *worst_eager;
    *worst_ref = e2 > *worst_ref ? e2 : *worst_ref;
    ASSERT_MSG(e1 < 1e-2, "%s step %u (batch %u) row %u: graphs on vs off, relative L2 %.3g", name, st, n, r, e1);
    ASSERT_MSG(e2 < 2e-2, "%s step %u (batch %u) row %u: graphs vs CPU, relative L2 %.3g", name, st, n, r, e2);
    int32_t a_on = row_argmax(on, V), a_off = row_argmax(off, V);
    if (a_on != a_off) {
        float d = 0;
        for (uint32_t v = 0; v < V; v++)
            d = fmaxf(d, fabsf(on[v] - off[v]));
        ASSERT_MSG(top_margin(off, V, a_off) <= 2 * d,
                   "%s step %u row %u: greedy token %d with graphs, %d without (margin %.4g, max diff %.4g)",
                   name, st, r, a_on, a_off, top_margin(off, V, a_off), d);
    }
    return memcmp(on, off, sizeof(float) * V) == 0;
}

/*
 * Three backends on the same model: the CPU (the reference), CUDA with
 * graphs off and CUDA with graphs on.  Sequences of ragged prompt lengths
 * are prefilled, then decoded in steps whose sets of sequences change
 * (3, 5, 17, then random sizes; sequences join after a prefill and
 * leave), crossing block boundaries; every greedy token (the CPU's) feeds
 * all three.  Graph logits must match the eager ones within bf16 and the
 * reference within the usual tolerance; every few steps the greedy choice
 * on the device (forward_step_argmax, the same step run again) must be
 * the sampler's on the graph's logits.  fp16: both CUDA backends hold
 * their weights as fp16.
 */
static void run_graphs(const char *name, hparams_t hp, qtype_t t, int fp16)
{
    char err[ERR_MSG_MAX];
    model_t *m;
    ASSERT_MSG(model_create_synthetic(&m, &hp, t, 1, 4242, err, sizeof err) == 0, "%s", err);
    const uint32_t V = hp.n_vocab, MT = 64;
    uint64_t block_bytes = (uint64_t)hp.n_layer * 2 * hp.n_head_kv * 16 * hp.head_dim * sizeof(float);
    backend_t *bk[3];
    forward_t *f[3];
    for (int k = 0; k < 3; k++) {
        backend_opts_t o = { .kv_bytes = (GS * GB + 2) * block_bytes, .block_tokens = 16, .max_tokens = MT,
                             .poison = 1, .cuda_graphs = k == 2 ? 1 : -1, .device_argmax = 1,
                             .fp16_weights = fp16 };
        ASSERT_MSG(registry_create_backend(k ? "cuda" : "cpu", &bk[k], m, &o, err, sizeof err) == 0, "%s", err);
        ASSERT_MSG(forward_create(&f[k], m, bk[k], MT, err, sizeof err) == 0, "%s", err);
    }
    sampler_t *smp;
    ASSERT_MSG(sampler_create(&smp, V, err, sizeof err) == 0, "%s", err);
    static gseq_t sq[GS];
    for (uint32_t s = 0; s < GS; s++) {
        sq[s].len = 0;
        for (uint32_t k = 0; k < GB; k++)
            sq[s].table[k] = (int32_t)(k * GS + (GS - 1 - s)); /* interleaved blocks */
        make_tokens(sq[s].tok, GB * 16, V);
    }
    float *l[3], *scratch = malloc(sizeof(float) * V);
    for (int k = 0; k < 3; k++)
        l[k] = malloc(sizeof(float) * V * MT);
    int joined[GS] = { 0 };
    double worst_eager = 0, worst_ref = 0;
    uint64_t rows = 0, bitwise = 0, argmax_checked = 0;
    int32_t toks[MT], pos[MT], rowsv[MT];
    batch_seq_t bs[MT];

    for (uint32_t st = 0; st < 60; st++) {
        /* this step's sequences: fixed sizes first, then random sets */
        static const uint32_t fixed[] = { 3, 3, 3, 3, 5, 5, 5, 5, 17, 17, 17, 17, 1, 1, 1, 2, 2, 2 };
        uint32_t want = st < sizeof fixed / sizeof fixed[0] ? fixed[st]
                                                             : 1 + (uint32_t)((frand() * 0.5f + 0.5f) * (GS - 1));
        uint32_t pick[GS], n = 0, start = st < 18 ? 0 : (uint32_t)((frand() * 0.5f + 0.5f) * GS);
        for (uint32_t i = 0; i < GS && n < want; i++) {
            uint32_t s = (start + i * 7) % GS;
            if (sq[s].len + 1 >= GB * 16)
                continue;
            pick[n++] = s;
        }
        /* a sequence joining: its prompt (1 to 40 tokens) first, in a step of its own */
        for (uint32_t i = 0; i < n; i++) {
            uint32_t s = pick[i];
            if (joined[s])
                continue;
            joined[s] = 1;
            uint32_t plen = 1 + (uint32_t)((frand() * 0.5f + 0.5f) * 39);
            for (uint32_t j = 0; j < plen; j++)
                pos[j] = (int32_t)j;
            int32_t row = (int32_t)plen - 1;
            batch_seq_t one = { sq[s].table, (plen - 1) / 16 + 1, 0, plen };
            batch_t pb = { plen, sq[s].tok, pos, 1, &one, 1, &row };
            for (int k = 0; k < 3; k++)
                ASSERT_MSG(forward_step(f[k], &pb, l[k]) == 0, "%s: prefill on backend %d: %s", name, k,
                           bk[k]->ops->last_error(bk[k]->ctx));
            sq[s].len = plen;
            sq[s].tok[plen] = row_argmax(l[0], V);
        }
        /* the decode step; every fifth step wants the logit rows in reverse order, minus one */
        uint32_t nl = 0;
        for (uint32_t i = 0; i < n; i++) {
            uint32_t s = pick[i];
            toks[i] = sq[s].tok[sq[s].len];
            pos[i] = (int32_t)sq[s].len;
            bs[i] = (batch_seq_t){ sq[s].table, sq[s].len / 16 + 1, i, 1 };
        }
        if (st % 5 == 4 && n > 1)
            for (uint32_t i = n; i-- > 1;)
                rowsv[nl++] = (int32_t)i;
        else
            for (uint32_t i = 0; i < n; i++)
                rowsv[nl++] = (int32_t)i;
        batch_t b = { n, toks, pos, n, bs, nl, rowsv };
        ASSERT_MSG(batch_check(&b, V, MT, GS * GB, 16, err, sizeof err) == 0, "%s", err);
        for (int k = 0; k < 3; k++)
            ASSERT_MSG(forward_step(f[k], &b, l[k]) == 0, "%s step %u: backend %d: %s", name, st, k,
                       bk[k]->ops->last_error(bk[k]->ctx));
        for (uint32_t r = 0; r < nl; r++)
            bitwise += compare_row(name, st, n, r, l, V, &worst_eager, &worst_ref);
        rows += nl;
        /* the device's greedy choice: the same step again (it writes the same keys), tokens only */
        if (st % 3 == 0) {
            const bk_argmax_t *am;
            ASSERT_EQ_INT(forward_step_argmax(f[2], &b, &am), 0);
            for (uint32_t r = 0; r < nl; r++)
                check_choice(smp, l[2] + (size_t)r * V, V, scratch, &am[r], name, r);
            ASSERT_EQ_INT(forward_step_argmax(f[1], &b, &am), 0);
            for (uint32_t r = 0; r < nl; r++)
                check_choice(smp, l[1] + (size_t)r * V, V, scratch, &am[r], name, r);
            argmax_checked += nl;
        }
        /* the CPU's greedy tokens feed every backend */
        for (uint32_t r = 0; r < nl; r++) {
            uint32_t s = pick[rowsv[r]];
            sq[s].tok[sq[s].len + 1] = row_argmax(l[0] + (size_t)r * V, V);
        }
        for (uint32_t i = 0; i < n; i++) {
            uint32_t s = pick[i];
            int wanted = 0;
            for (uint32_t r = 0; r < nl; r++)
                wanted |= rowsv[r] == (int32_t)i;
            if (!wanted) /* its logits were not asked for: keep the token it had */
                sq[s].tok[sq[s].len + 1] = sq[s].tok[sq[s].len];
            sq[s].len++;
        }
    }

    /* the steps above ran as graphs (captured, then replayed); the eager backend has none */
    ASSERT_GRAPHS_USED(bk[2], name);
    bk_graph_stats_t gs = bk_graph_stats(bk[2]), ge = bk_graph_stats(bk[1]);
    ASSERT_MSG(ge.captured == 0 && ge.replayed == 0, "%s: graphs off, yet %llu captured, %llu replayed", name,
               (unsigned long long)ge.captured, (unsigned long long)ge.replayed);

    /* A second forward pass over the graph backend's captured sizes: not what the graphs
       hold, so graphs turn off (counted as failed) and the step runs eagerly, still right. */
    forward_t *f2;
    ASSERT_MSG(forward_create(&f2, m, bk[2], MT, err, sizeof err) == 0, "%s", err);
    uint32_t s = 0;
    while (s + 1 < GS && (sq[s].len + 1 >= GB * 16 || !joined[s]))
        s++;
    ASSERT(joined[s] && sq[s].len + 1 < GB * 16);
    toks[0] = sq[s].tok[sq[s].len];
    pos[0] = (int32_t)sq[s].len;
    bs[0] = (batch_seq_t){ sq[s].table, sq[s].len / 16 + 1, 0, 1 };
    rowsv[0] = 0;
    batch_t b1 = { 1, toks, pos, 1, bs, 1, rowsv };
    ASSERT_EQ_INT(forward_step(f[0], &b1, l[0]), 0);
    ASSERT_MSG(forward_step(f2, &b1, l[2]) == 0, "%s: a second forward pass: %s", name, bk[2]->ops->last_error(bk[2]->ctx));
    double e = rel_l2(l[2], l[0], V);
    ASSERT_MSG(e < 2e-2, "%s: a second forward pass on the graph backend: relative L2 %.3g", name, e);
    ASSERT_EQ_U64(bk_graph_stats(bk[2]).failed, 1);
    forward_destroy(f2);

    printf("  %-28s %s %llu rows: graphs vs eager worst rel_l2 %.2e (%llu bitwise equal), vs CPU %.2e; "
           "%llu device argmax rows; %llu graphs captured, %llu replays\n", name, fp16 ? "fp16" : "bf16",
           (unsigned long long)rows, worst_eager, (unsigned long long)bitwise, worst_ref,
           (unsigned long long)argmax_checked, (unsigned long long)gs.captured, (unsigned long long)gs.replayed);
    for (int k = 0; k < 3; k++) {
        forward_destroy(f[k]);
        backend_destroy(bk[k]);
        free(l[k]);
    }
    free(scratch);
    sampler_destroy(smp);
    model_destroy(m);
}

TEST(graphs_match_eager_head64)
{
    need_gpu();
    run_graphs("d576 h9 kv3 hd64", small_hp(576, 9, 3, 64, 1536, 2, 2000), QT_Q8_0, 0);
}

TEST(graphs_match_eager_head64_fp16)
{
    need_gpu();
    run_graphs("d576 h9 kv3 hd64", small_hp(576, 9, 3, 64, 1536, 2, 2000), QT_Q8_0, 1);
}

TEST(graphs_match_eager_7b_shape)
{
    need_gpu();
    run_graphs("d4096 h32 kv8 hd128 (7B-like)", small_hp(4096, 32, 8, 128, 11008, 2, 32000), QT_Q4_K, 0);
}

/*
 * Graph attention at long contexts (issue 20).  LS sequences of about
 * `ctx` positions (ragged, in interleaved blocks) are prefilled in chunks,
 * then decoded for n_steps steps of 1, 2, 4 and 3 sequences, four steps
 * each, so that every padded size runs directly, is captured and is
 * replayed.  A graph's attention grid has g_splits splits per token
 * (cuda/att_split.h, split_len 0): the pool holds at least 8,192 tokens
 * here, so g_splits is at its cap (CG_MAX_SPLITS, 32) and each token uses
 * cdiv(keys, ATT_SPLIT_MIN) of them, the rest exiting at once; the eager
 * steps split at ATT_SPLIT_MIN keys.  CPU, CUDA eager and CUDA graphs as
 * in run_graphs, and the graphs must have been captured and replayed.
 */
#define LS 4            /* sequences of a long-context graph test */

static void run_graphs_long(const char *name, hparams_t hp, uint32_t ctx, uint32_t n_steps)
{
    char err[ERR_MSG_MAX];
    hp.n_ctx_train = 16384;     /* the pool, not the model, bounds max_ctx */
    model_t *m;
    ASSERT_MSG(model_create_synthetic(&m, &hp, QT_Q8_0, 1, 4343, err, sizeof err) == 0, "%s", err);
    const uint32_t V = hp.n_vocab, MT = 64, NB = (ctx + 64 + n_steps) / 16 + 1;
    uint32_t pool_blocks = LS * NB + 2;
    if (pool_blocks < 8192 / 16 + 2)
        pool_blocks = 8192 / 16 + 2;
    uint64_t block_bytes = (uint64_t)hp.n_layer * 2 * hp.n_head_kv * 16 * hp.head_dim * sizeof(float);
    backend_t *bk[3];
    forward_t *f[3];
    for (int k = 0; k < 3; k++) {
        backend_opts_t o = { .kv_bytes = pool_blocks * block_bytes, .block_tokens = 16, .max_tokens = MT,
                             .poison = 1, .cuda_graphs = k == 2 ? 1 : -1, .device_argmax = -1 };
        ASSERT_MSG(registry_create_backend(k ? "cuda" : "cpu", &bk[k], m, &o, err, sizeof err) == 0, "%s", err);
        ASSERT_MSG(forward_create(&f[k], m, bk[k], MT, err, sizeof err) == 0, "%s", err);
    }
    int32_t *tok[LS], *table[LS];
    uint32_t len[LS];
    float *l[3];
    for (int k = 0; k < 3; k++)
        l[k] = malloc(sizeof(float) * V * LS);
    int32_t pos[64], rowsv[LS], toks[LS];
    for (uint32_t s = 0; s < LS; s++) {
        tok[s] = malloc(sizeof(int32_t) * NB * 16);
        table[s] = malloc(sizeof(int32_t) * NB);
        for (uint32_t k = 0; k < NB; k++)
            table[s][k] = (int32_t)(k * LS + s);
        make_tokens(tok[s], NB * 16, V);
        /* the prompt: ctx - 40 .. ctx + 53 tokens, in chunks of MT; only the last wants logits */
        uint32_t plen = ctx - 40 + 31 * s;
        for (uint32_t from = 0; from < plen; from += MT) {
            uint32_t c = plen - from < MT ? plen - from : MT;
            int last = from + c == plen;
            for (uint32_t i = 0; i < c; i++)
                pos[i] = (int32_t)(from + i);
            int32_t row = (int32_t)c - 1;
            batch_seq_t one = { table[s], (from + c - 1) / 16 + 1, 0, c };
            batch_t pb = { c, tok[s] + from, pos, 1, &one, last ? 1 : 0, last ? &row : NULL };
            for (int k = 0; k < 3; k++)
                ASSERT_MSG(forward_step(f[k], &pb, l[k]) == 0, "%s: prefill on backend %d: %s", name, k,
                           bk[k]->ops->last_error(bk[k]->ctx));
        }
        len[s] = plen;
        tok[s][plen] = row_argmax(l[0], V);
    }
    double worst_eager = 0, worst_ref = 0;
    uint64_t rows = 0, bitwise = 0;
    batch_seq_t bs[LS];
    for (uint32_t st = 0; st < n_steps; st++) {
        static const uint32_t sizes[] = { 1, 2, 4, 3 };
        uint32_t n = sizes[(st / 4) % 4];
        for (uint32_t i = 0; i < n; i++) {
            uint32_t s = (st + i) % LS;
            toks[i] = tok[s][len[s]];
            pos[i] = (int32_t)len[s];
            bs[i] = (batch_seq_t){ table[s], len[s] / 16 + 1, i, 1 };
            rowsv[i] = (int32_t)i;
        }
        batch_t b = { n, toks, pos, n, bs, n, rowsv };
        for (int k = 0; k < 3; k++)
            ASSERT_MSG(forward_step(f[k], &b, l[k]) == 0, "%s step %u: backend %d: %s", name, st, k,
                       bk[k]->ops->last_error(bk[k]->ctx));
        for (uint32_t r = 0; r < n; r++) {
            bitwise += compare_row(name, st, n, r, l, V, &worst_eager, &worst_ref);
            uint32_t s = (st + r) % LS;
            tok[s][len[s] + 1] = row_argmax(l[0] + (size_t)r * V, V);
            len[s]++;
        }
        rows += n;
    }
    ASSERT_GRAPHS_USED(bk[2], name);
    bk_graph_stats_t gs = bk_graph_stats(bk[2]);
    printf("  %-28s context %u..%u, %llu rows: graphs vs eager worst rel_l2 %.2e (%llu bitwise equal), vs CPU "
           "%.2e; %llu graphs captured, %llu replays\n", name, ctx - 40, ctx - 40 + 31 * (LS - 1) + n_steps,
           (unsigned long long)rows, worst_eager, (unsigned long long)bitwise, worst_ref,
           (unsigned long long)gs.captured, (unsigned long long)gs.replayed);
    for (uint32_t s = 0; s < LS; s++) {
        free(tok[s]);
        free(table[s]);
    }
    for (int k = 0; k < 3; k++) {
        forward_destroy(f[k]);
        backend_destroy(bk[k]);
        free(l[k]);
    }
    model_destroy(m);
}

/* About 700 positions: three splits of ATT_SPLIT_MIN keys live per token. */
TEST(graphs_match_eager_context_700)
{
    need_gpu();
    run_graphs_long("d576 h9 kv3 hd64, ctx 700", small_hp(576, 9, 3, 64, 1536, 2, 2000), 700, 24);
}

/* About 3,000 positions: twelve live splits of the grid's 32. */
TEST(graphs_match_eager_context_3000)
{
    need_gpu();
    run_graphs_long("d576 h9 kv3 hd64, ctx 3000", small_hp(576, 9, 3, 64, 1536, 2, 2000), 3000, 24);
}

/*
 * A short graph test (two splits, one layer; every size direct, captured
 * and replayed) for the runs under compute-sanitizer, which are slow:
 *     compute-sanitizer --tool memcheck tests/gpu/test_cuda_decode graphs_short
 */
TEST(graphs_short)
{
    need_gpu();
    run_graphs_long("d256 h4 kv2 hd64, ctx 300", small_hp(256, 4, 2, 64, 512, 1, 512), 300, 12);
}

/* ---------------------------------------------------------------- the engine's greedy path */

/* Generate n tokens greedily for `prompt` alone on the engine; with_logprobs asks for one
   alternative, which keeps the step on the host sampler.  Returns the tokens and logprobs. */
static void engine_greedy(engine_t *e, const int32_t *prompt, uint32_t np, uint32_t n, int with_logprobs,
                          int32_t *tok, float *lp)
{
    char err[ERR_MSG_MAX];
    engine_request_t r;
    engine_request_init(&r);
    r.tokens = prompt;
    r.n_tokens = np;
    r.max_tokens = n;
    r.ignore_eos = 1;
    r.sampling.temperature = 0.0f;
    r.sampling.n_logprobs = with_logprobs ? 1 : 0;
    uint64_t id;
    ASSERT_MSG(engine_submit(e, &r, &id, err, sizeof err) == 0, "%s", err);
    static engine_event_t ev;
    uint32_t got = 0;
    for (;;) {
        if (!engine_poll(e, &ev)) {
            ASSERT_MSG(engine_wait(e, 30000), "no event for 30 s");
            continue;
        }
        ASSERT(ev.id == id);
        if (ev.kind == ENGINE_EV_FINISH) {
            ASSERT_MSG(ev.finish == ENGINE_FINISH_LENGTH, "finished with %s: %s", engine_finish_name(ev.finish),
                       ev.message);
            break;
        }
        ASSERT(got < n);
        tok[got] = ev.token;
        lp[got] = ev.logprob;
        got++;
    }
    ASSERT_EQ_INT(got, n);
}

/* The engine on CUDA picks greedy tokens on the device (logits_argmax) when no row needs the
   host sampler; asking for logprobs forces the host path: same tokens, same logprobs. */
TEST(engine_device_greedy_matches_host_sampler)
{
    need_gpu();
    const char *path = test_model_path();
    if (path == NULL)
        TEST_SKIP("default model not present");
    char err[ERR_MSG_MAX];
    engine_t *e;
    engine_opts_t o = { 0 };
    o.model_path = path;
    o.chat_template = "auto";
    o.backend = "cuda";
    o.kv_bytes = 64u << 20;
    o.no_prefix_cache = 1;      /* both runs compute the prompt the same way */
    o.cuda_graphs = 1;          /* the decode fast path: graphs and the device argmax */
    ASSERT_MSG(engine_create(&e, &o, err, sizeof err) == 0, "%s", err);
    static const int32_t prompt[] = { 504, 3458, 282, 4649, 314 };
    enum { N = 40 };
    int32_t t_dev[N], t_host[N];
    float l_dev[N], l_host[N];
    engine_greedy(e, prompt, 5, N, 0, t_dev, l_dev);
    engine_greedy(e, prompt, 5, N, 1, t_host, l_host);
    for (int i = 0; i < N; i++) {
        ASSERT_MSG(t_dev[i] == t_host[i], "token %d: %d on the device, %d on the host", i, t_dev[i], t_host[i]);
        ASSERT_MSG(fabsf(l_dev[i] - l_host[i]) < 1e-4f + 1e-5f * fabsf(l_host[i]),
                   "token %d: logprob %.7g on the device, %.7g on the host", i, l_dev[i], l_host[i]);
    }
    engine_destroy(e);
}

/* The profile (benchmarks): every operation of two steps counted once per call, and timed. */
TEST(profile_counts_every_operation)
{
    need_gpu();
    char err[ERR_MSG_MAX];
    hparams_t hp = small_hp(256, 4, 2, 64, 512, 3, 512);
    model_t *m;
    ASSERT_MSG(model_create_synthetic(&m, &hp, QT_F16, 1, 5, err, sizeof err) == 0, "%s", err);
    backend_t *b;
    forward_t *f;
    backend_opts_t o = { .kv_bytes = 8u << 20, .block_tokens = 16, .max_tokens = 64, .profile = 1,
                         .cuda_graphs = 1 };
    ASSERT_MSG(registry_create_backend("cuda", &b, m, &o, err, sizeof err) == 0, "%s", err);
    ASSERT_EQ_INT(forward_create(&f, m, b, 64, err, sizeof err), 0);
    ASSERT(b->ops->profile != NULL);
    int32_t table[4] = { 0, 1, 2, 3 }, toks[20], pos[20], row = 19;
    for (int i = 0; i < 20; i++) {
        toks[i] = 7 * i + 3;
        pos[i] = i;
    }
    float *l = malloc(sizeof(float) * hp.n_vocab);
    batch_seq_t bs = { table, 2, 0, 20 };
    batch_t bt = { 20, toks, pos, 1, &bs, 1, &row };
    ASSERT_EQ_INT(forward_step(f, &bt, l), 0);
    int32_t row0 = 0;
    batch_seq_t ds = { table, 2, 0, 1 };
    batch_t db = { 1, toks + 19, pos + 19, 1, &ds, 1, &row0 };  /* a decode step: a graph size, yet eager */
    pos[19] = 20;
    ASSERT_EQ_INT(forward_step(f, &db, l), 0);
    bk_profile_t p;
    ASSERT_EQ_INT(b->ops->profile(b->ctx, &p), 0);
    uint64_t want[BK_OP_COUNT] = { 0 };
    want[BK_OP_UPLOAD] = want[BK_OP_EMBED] = want[BK_OP_LOGITS] = 2;
    want[BK_OP_NORM] = 2 * 2 * hp.n_layer;
    want[BK_OP_QKV] = want[BK_OP_ROPE_KV] = want[BK_OP_ATTENTION] = want[BK_OP_O] = 2 * hp.n_layer;
    want[BK_OP_GATE_UP] = want[BK_OP_SWIGLU] = want[BK_OP_DOWN] = 2 * hp.n_layer;
    double total = 0;
    for (int k = 0; k < BK_OP_COUNT; k++) {
        ASSERT_MSG(p.calls[k] == want[k], "%s: %llu calls, expected %llu", bk_op_name(k),
                   (unsigned long long)p.calls[k], (unsigned long long)want[k]);
        ASSERT_MSG(p.ms[k] >= 0 && p.ms[k] < 1e4, "%s: %g ms", bk_op_name(k), p.ms[k]);
        total += p.ms[k];
    }
    ASSERT_MSG(total > 0, "no device time recorded");
    ASSERT_EQ_INT(b->ops->profile(b->ctx, &p), 0);   /* reset by the report */
    for (int k = 0; k < BK_OP_COUNT; k++)
        ASSERT_MSG(p.calls[k] == 0, "%s: %llu calls after the reset", bk_op_name(k), (unsigned long long)p.calls[k]);
    free(l);
    forward_destroy(f);
    backend_destroy(b);
    model_destroy(m);
}

/* ---------------------------------------------------------------- activation memory (issue 14, defect 3) */

/*
 * Only what the operations touch is allocated: fp32 for the residual
 * stream, the projections' outputs and q; 16-bit for the norm, attention
 * and SwiGLU outputs; nothing for k, v and up (the fused GEMMs write their
 * own workspaces); the logit rows for max_seqs rows, not max_tokens.
 * Before the fix every buffer held both formats and the logits took
 * [max_tokens, V] fp32.
 */
TEST(activation_bytes_match_formula)
{
    need_gpu();
    char err[ERR_MSG_MAX];
    hparams_t hp = small_hp(256, 4, 2, 64, 512, 2, 1000);
    model_t *m;
    ASSERT_MSG(model_create_synthetic(&m, &hp, QT_F16, 1, 11, err, sizeof err) == 0, "%s", err);
    const uint64_t T = 64, S = 8, d = hp.n_embd, qd = (uint64_t)hp.n_head * hp.head_dim, ff = hp.n_ff;
    const uint64_t V = hp.n_vocab, qkvd = (uint64_t)(hp.n_head + 2 * hp.n_head_kv) * hp.head_dim;
    backend_t *b;
    forward_t *f;
    backend_opts_t o = { .kv_bytes = 8u << 20, .block_tokens = 16, .max_tokens = T, .max_seqs = S };
    ASSERT_MSG(registry_create_backend("cuda", &b, m, &o, err, sizeof err) == 0, "%s", err);
    ASSERT(b->ops->activation_bytes != NULL);
    uint64_t ws = T * qkvd * 4 + T * 2 * ff * 4 + S * (d * 2 + V * 4 + sizeof(bk_argmax_t));
    uint64_t got = b->ops->activation_bytes(b->ctx);
    ASSERT_MSG(got == ws, "workspaces: %llu bytes, the formula says %llu", (unsigned long long)got,
               (unsigned long long)ws);
    ASSERT_EQ_INT(forward_create(&f, m, b, (uint32_t)T, err, sizeof err), 0);
    /* x fp32, h 16-bit, y fp32, q fp32, k v none, att 16-bit, gate 16-bit, up none */
    uint64_t bufs = T * (d * 4 + d * 2 + d * 4 + qd * 4 + qd * 2 + ff * 2);
    uint64_t before = T * 6 * (3 * d + 2 * qd + 2 * (uint64_t)hp.n_head_kv * hp.head_dim + 2 * ff) +
                      T * qkvd * 4 + T * 2 * ff * 4 + T * (d * 2 + V * 4 + sizeof(bk_argmax_t));
    got = b->ops->activation_bytes(b->ctx);
    printf("  activations %llu bytes (formula %llu; every buffer twice and [max_tokens, V] logits: %llu)\n",
           (unsigned long long)got, (unsigned long long)(ws + bufs), (unsigned long long)before);
    ASSERT_MSG(got == ws + bufs, "with the forward pass's buffers: %llu bytes, the formula says %llu",
               (unsigned long long)got, (unsigned long long)(ws + bufs));
    forward_destroy(f);
    backend_destroy(b);
    model_destroy(m);
}

/*
 * A step may have as many logit rows as max_seqs (the logit workspaces'
 * size): such steps match the CPU, eagerly and as CUDA graphs (whose
 * padded sizes stop at max_seqs); one row more is refused with
 * ERR_INVALID, and the backend goes on working.
 */
static void logit_rows_case(int graphs)
{
    char err[ERR_MSG_MAX];
    enum { S = 5 };
    hparams_t hp = small_hp(256, 4, 2, 64, 512, 2, 1000);
    model_t *m;
    ASSERT_MSG(model_create_synthetic(&m, &hp, QT_F16, 1, 13, err, sizeof err) == 0, "%s", err);
    backend_t *b[2];
    forward_t *f[2];
    for (int k = 0; k < 2; k++) {
        backend_opts_t o = { .kv_bytes = 8u << 20, .block_tokens = 16, .max_tokens = 64, .max_seqs = S,
                             .cuda_graphs = graphs ? 1 : -1, .device_argmax = -1 };
        ASSERT_MSG(registry_create_backend(k ? "cuda" : "cpu", &b[k], m, &o, err, sizeof err) == 0, "%s", err);
        ASSERT_EQ_INT(forward_create(&f[k], m, b[k], 64, err, sizeof err), 0);
    }
    int32_t tables[S + 1][1], toks[S + 1], pos[S + 1], rows[S + 1];
    batch_seq_t seqs[S + 1];
    for (int s = 0; s <= S; s++) {
        tables[s][0] = s;
        toks[s] = 17 * s + 5;
        rows[s] = s;
        seqs[s] = (batch_seq_t){ tables[s], 1, (uint32_t)s, 1 };
    }
    float *l[2] = { malloc(sizeof(float) * hp.n_vocab * (S + 1)), malloc(sizeof(float) * hp.n_vocab * (S + 1)) };
    /* steps 0..2: one eager (or the graph's first run), its capture, its replay; step 3 has one row too many;
       step 4 shows that the refusal left the backend usable */
    for (int step = 0; step < 5; step++) {
        uint32_t n = step == 3 ? S + 1 : S;
        for (int s = 0; s <= S; s++)
            pos[s] = step < 3 ? step : step - 1;
        batch_t bt = { n, toks, pos, n, seqs, n, rows };
        if (step == 3) {
            int rc = forward_step(f[1], &bt, l[1]);
            ASSERT_MSG(rc == ERR_INVALID, "a step of %u logit rows with max_seqs %u: %s, expected ERR_INVALID", n,
                       S, err_str(rc));
            continue;
        }
        for (int k = 0; k < 2; k++) {
            int rc = forward_step(f[k], &bt, l[k]);
            ASSERT_MSG(rc == 0, "step %d of %u logit rows (max_seqs %u) on %s: %s %s", step, n, S,
                       k ? "cuda" : "cpu", err_str(rc), b[k]->ops->last_error(b[k]->ctx));
        }
        for (uint32_t r = 0; r < n; r++) {
            double e = rel_l2(l[1] + (size_t)r * hp.n_vocab, l[0] + (size_t)r * hp.n_vocab, hp.n_vocab);
            ASSERT_MSG(e < 2e-2, "step %d, logit row %u: relative L2 %.3g", step, r, e);
        }
    }
    if (graphs)     /* steps 1 (capture), 2 and 4 (replays) ran as a graph of max_seqs rows */
        ASSERT_GRAPHS_USED(b[1], "logit rows up to max_seqs");
    free(l[0]);
    free(l[1]);
    for (int k = 0; k < 2; k++) {
        forward_destroy(f[k]);
        backend_destroy(b[k]);
    }
    model_destroy(m);
}

TEST(logit_rows_up_to_max_seqs_eager)
{
    need_gpu();
    logit_rows_case(0);
}

TEST(logit_rows_up_to_max_seqs_graphs)
{
    need_gpu();
    logit_rows_case(1);
}

TEST_LIST(T(argmax_matches_sampler), T(graphs_match_eager_head64), T(graphs_match_eager_head64_fp16),
          T(graphs_match_eager_7b_shape), T(graphs_match_eager_context_700), T(graphs_match_eager_context_3000),
          T(graphs_short), T(engine_device_greedy_matches_host_sampler),
          T(profile_counts_every_operation), T(activation_bytes_match_formula),
          T(logit_rows_up_to_max_seqs_eager), T(logit_rows_up_to_max_seqs_graphs))
