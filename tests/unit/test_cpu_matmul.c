/*
 * test_cpu_matmul.c - the CPU worker pool and the weight matrix products.
 *
 * Every weight type is checked against an independent reference: the
 * matrix dequantised by quant_dequant (the exact reference dequantiser),
 * multiplied in double precision.  Then the batch-invariance promise of
 * matmul.h: every row of a multi-token call equals, bit for bit, the
 * single-token call on that row alone, with 1, 2 or 3 threads.  Both code
 * paths (portable C and AVX2) run every check.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* sched_setaffinity */
#endif
#include "test.h"

#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>

#include "../../engine/cpu/matmul.h"
#include "../../engine/cpu/matmul_kern.h" /* MM_Q6_K_BYTES */
#include "../../engine/cpu/pool.h"
#include "base/clock.h"
#include "base/err.h"
#include "base/quant.h"

/* ---------------------------------------------------------------- pool */

typedef struct {
    _Atomic uint32_t *hits;      /* [n_tasks] */
    _Atomic uint32_t  bad_thread;
    uint32_t          n_threads;
} count_ctx_t;

static void count_cb(void *ctx, uint32_t task, uint32_t thread)
{
    count_ctx_t *c = ctx;
    atomic_fetch_add(&c->hits[task], 1);
    if (thread >= c->n_threads)
        atomic_store(&c->bad_thread, 1);
}

static void run_counted(pool_t *p, uint32_t n_threads, uint32_t n_tasks, uint32_t rounds)
{
    _Atomic uint32_t *hits = calloc(n_tasks + 1, sizeof *hits);
    ASSERT(hits != NULL);
    count_ctx_t c = { .hits = hits, .n_threads = n_threads };
    atomic_init(&c.bad_thread, 0);
    for (uint32_t r = 0; r < rounds; r++)
        pool_run(p, count_cb, &c, n_tasks);
    for (uint32_t t = 0; t < n_tasks; t++)
        ASSERT_EQ_INT(atomic_load(&hits[t]), rounds);
    ASSERT_EQ_INT(atomic_load(&c.bad_thread), 0);
    free(hits);
}

TEST(pool_runs_every_task_once)
{
    for (int n = 1; n <= 4; n++) {
        pool_t *p = NULL;
        ASSERT_EQ_INT(pool_create(&p, n), 0);
        ASSERT_EQ_INT(pool_threads(p), n);
        run_counted(p, (uint32_t)n, 1000, 3);
        run_counted(p, (uint32_t)n, 1, 5);
        run_counted(p, (uint32_t)n, 0, 5);
        pool_destroy(p);
    }
    run_counted(NULL, 1, 100, 2); /* NULL pool: the caller runs everything */
}

/* Thousands of back-to-back jobs, and jobs after the workers fell asleep. */
TEST(pool_many_runs)
{
    pool_t *p = NULL;
    ASSERT_EQ_INT(pool_create(&p, 3), 0);
    run_counted(p, 3, 7, 5000);
    usleep(5000); /* longer than the spin: workers now sleep */
    run_counted(p, 3, 64, 3);
    pool_destroy(p);
}

TEST(pool_rejects_bad_counts)
{
    pool_t *p = NULL;
    ASSERT_EQ_INT(pool_create(&p, 0), ERR_INVALID);
    ASSERT_EQ_INT(pool_create(&p, POOL_MAX_THREADS + 1), ERR_INVALID);
    ASSERT(p == NULL);
    pool_destroy(NULL);
}

/* ------------------------------------------------------ random weights */

/* A task of about a microsecond of arithmetic that counts itself. */
static void busy_cb(void *ctx, uint32_t task, uint32_t thread)
{
    (void)thread;
    volatile uint32_t v = task;
    for (int i = 0; i < 2000; i++)
        v = v * 3 + 1;
    atomic_fetch_add_explicit(&((atomic_uint *)ctx)[task], 1, memory_order_relaxed);
}

/*
 * Two pool threads confined to one core (a machine busier than the pool):
 * every task of every run still runs exactly once, and the runs end (a
 * waiter that yields its core must still see the other's progress).  How
 * much the yield saves is a timing, measured in docs/PERFORMANCE.md, not
 * asserted here.
 */
TEST(pool_shares_one_core)
{
    cpu_set_t one, all;
    CPU_ZERO(&one);
    CPU_SET(sched_getcpu() >= 0 ? sched_getcpu() : 0, &one);
    if (sched_getaffinity(0, sizeof all, &all) != 0 || sched_setaffinity(0, sizeof one, &one) != 0)
        TEST_SKIP("cannot confine the test to one CPU");
    pool_t *p = NULL; /* created after the affinity: the workers inherit it */
    ASSERT_EQ_INT(pool_create(&p, 2), 0);
    static atomic_uint count[8];
    for (int i = 0; i < 8; i++)
        atomic_init(&count[i], 0);
    for (int r = 0; r < 500; r++)
        pool_run(p, busy_cb, count, 8);
    for (int i = 0; i < 8; i++)
        ASSERT_EQ_INT(atomic_load(&count[i]), 500);
    pool_destroy(p);
    ASSERT_EQ_INT(sched_setaffinity(0, sizeof all, &all), 0); /* the other tests use every CPU */
}

static uint64_t rng_state;

static uint64_t rng_next(void)
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Uniform in [-1, 1). */
static float rng_float(void)
{
    return (float)((double)(rng_next() >> 40) / (double)(1ull << 23) - 1.0);
}

static void put_u16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

/* A block scale: a half of magnitude ~[0.002, 0.05), now and then subnormal. */
static uint16_t rand_scale(int allow_negative)
{
    if (rng_next() % 16 == 0)
        return (uint16_t)(1 + rng_next() % 0x3ff); /* subnormal: exercises exact conversion */
    float s = 0.002f + 0.048f * (rng_float() * 0.5f + 0.5f);
    if (allow_negative && (rng_next() & 1))
        s = -s;
    return f32_to_f16(s);
}

/*
 * A valid [n_out, n_in] matrix of `type`: random quant bytes (every bit
 * pattern is a legal quant) with the half-precision scales replaced by
 * finite values.  Caller frees.
 */
static uint8_t *make_weights(qtype_t type, uint32_t n_out, uint32_t n_in)
{
    const qtype_info_t *ti = qtype_info(type);
    ASSERT(ti != NULL);
    uint64_t bytes = 0;
    ASSERT_EQ_INT(qtype_nbytes(type, (uint64_t)n_out * n_in, &bytes), 0);
    uint8_t *w = malloc(bytes + 1);
    ASSERT(w != NULL);
    for (uint64_t i = 0; i < bytes; i++)
        w[i] = (uint8_t)rng_next();
    uint64_t nb = bytes / ti->block_bytes;
    for (uint64_t i = 0; i < nb; i++) {
        uint8_t *b = w + i * ti->block_bytes;
        switch (type) {
        case QT_F32: {
            float f = rng_float();
            memcpy(b, &f, 4);
            break;
        }
        case QT_F16:  put_u16(b, f32_to_f16(rng_float())); break;
        case QT_BF16: put_u16(b, f32_to_bf16(rng_float())); break;
        case QT_Q4_0:
        case QT_Q8_0: put_u16(b, rand_scale(1)); break;
        case QT_Q4_1:
        case QT_Q4_K:
        case QT_Q5_K:
            put_u16(b, rand_scale(type == QT_Q4_1));
            put_u16(b + 2, rand_scale(type == QT_Q4_1));
            break;
        case QT_Q6_K: put_u16(b + 208, rand_scale(1)); break;
        default: ASSERT(0);
        }
    }
    return w;
}

static float *make_x(uint32_t n)
{
    float *x = malloc((size_t)n * sizeof *x);
    ASSERT(x != NULL);
    for (uint32_t i = 0; i < n; i++)
        x[i] = rng_float();
    return x;
}

/* ----------------------------------------------------------- the check */

/*
 * One shape: the reference in double, n_tok single-token calls compared
 * with it, then multi-token calls on 1, 2 and 3 threads compared bit for
 * bit with the single-token results.
 */
static void check_shape(qtype_t type, uint32_t n_out, uint32_t n_in, uint32_t n_tok,
                        pool_t *const pools[3])
{
    uint8_t *w = make_weights(type, n_out, n_in);
    float *x = make_x(n_tok * n_in);                      /* [n_tok, n_in] */
    float *wf = malloc((size_t)n_out * n_in * sizeof *wf); /* [n_out, n_in] */
    float *y1 = malloc((size_t)n_tok * n_out * sizeof *y1); /* [n_tok, n_out] */
    float *yb = malloc((size_t)n_tok * n_out * sizeof *yb);
    ASSERT(wf != NULL && y1 != NULL && yb != NULL);
    ASSERT_EQ_INT(quant_dequant(type, w, wf, (size_t)n_out * n_in), 0);
    const char *name = qtype_info(type)->name;

    for (uint32_t t = 0; t < n_tok; t++)
        ASSERT_EQ_INT(cpu_matmul(pools[0], type, w, n_out, n_in, x + (size_t)t * n_in, 1,
                                 y1 + (size_t)t * n_out), 0);

    double err2 = 0, ref2 = 0;
    for (uint32_t t = 0; t < n_tok; t++) {
        for (uint32_t o = 0; o < n_out; o++) {
            double ref = 0, mag = 0;
            for (uint32_t i = 0; i < n_in; i++) {
                double p = (double)wf[(size_t)o * n_in + i] * (double)x[(size_t)t * n_in + i];
                ref += p;
                mag += fabs(p);
            }
            double got = y1[(size_t)t * n_out + o];
            ASSERT_MSG(fabs(got - ref) <= 1e-5 * mag + 1e-30,
                       "%s %ux%u: y[%u][%u] = %.9g, reference %.9g (sum |w x| %.3g)", name,
                       n_out, n_in, t, o, got, ref, mag);
            err2 += (got - ref) * (got - ref);
            ref2 += ref * ref;
        }
    }
    ASSERT_MSG(err2 <= 1e-10 * ref2, "%s %ux%u: relative L2 error %.3g", name, n_out, n_in,
               sqrt(err2 / ref2));

    /* Batch sizes that reach every kernel shape: 1 to 4 tokens at a time
     * on the few-token path (up to 8 tokens), the tile path beyond. */
    const uint32_t batches[5] = { 2, 3, 4, 7, n_tok };
    for (int pi = 0; pi < 3; pi++) {
        for (int bi = 0; bi < 5; bi++) {
            uint32_t nt = batches[bi] < n_tok ? batches[bi] : n_tok;
            memset(yb, 0xff, (size_t)n_tok * n_out * sizeof *yb);
            ASSERT_EQ_INT(cpu_matmul(pools[pi], type, w, n_out, n_in, x, nt, yb), 0);
            for (uint32_t t = 0; t < nt; t++)
                ASSERT_MSG(memcmp(yb + (size_t)t * n_out, y1 + (size_t)t * n_out,
                                  n_out * sizeof *yb) == 0,
                           "%s %ux%u: token %u of %u on %u threads differs from its "
                           "single-token result", name, n_out, n_in, t, nt,
                           pool_threads(pools[pi]));
        }
    }
    free(w);
    free(x);
    free(wf);
    free(y1);
    free(yb);
}

static void check_type(qtype_t type, int portable)
{
    if (!portable && strcmp(cpu_matmul_path(), "avx2") != 0)
        TEST_SKIP("no AVX2 + FMA on this machine or in this build");
    cpu_matmul_force_portable(portable);
    ASSERT_EQ_STR(cpu_matmul_path(), portable ? "portable" : "avx2");
    rng_state = 1000u * (uint32_t)type + (uint32_t)portable;

    pool_t *pools[3] = { NULL, NULL, NULL };
    for (int i = 0; i < 3; i++)
        ASSERT_EQ_INT(pool_create(&pools[i], i + 1), 0);

    uint32_t be = qtype_info(type)->block_elems;
    uint32_t n_ins[3];
    if (be == 1) {
        n_ins[0] = 13; n_ins[1] = 64; n_ins[2] = 584; /* ragged tails, several chunks */
    } else if (be == QK_SMALL) {
        n_ins[0] = 32; n_ins[1] = 96; n_ins[2] = 576;
    } else {
        n_ins[0] = 256; n_ins[1] = 512; n_ins[2] = 768;
    }
    static const uint32_t n_outs[3] = { 1, 7, 33 };
    for (int a = 0; a < 3; a++)
        for (int b = 0; b < 3; b++)
            check_shape(type, n_outs[a], n_ins[b], 17, pools);

    for (int i = 0; i < 3; i++)
        pool_destroy(pools[i]);
}

#define TYPE_TESTS(lower, upper)                                  \
    TEST(matmul_##lower##_avx2) { check_type(upper, 0); }         \
    TEST(matmul_##lower##_portable) { check_type(upper, 1); }

TYPE_TESTS(f32, QT_F32)
TYPE_TESTS(f16, QT_F16)
TYPE_TESTS(bf16, QT_BF16)
TYPE_TESTS(q4_0, QT_Q4_0)
TYPE_TESTS(q4_1, QT_Q4_1)
TYPE_TESTS(q8_0, QT_Q8_0)
TYPE_TESTS(q4_k, QT_Q4_K)
TYPE_TESTS(q5_k, QT_Q5_K)
TYPE_TESTS(q6_k, QT_Q6_K)

/* More tokens than one pass over the weights takes (matmul_kern.h's MM_TOKS),
 * and more rows than one task takes. */
TEST(matmul_long_batch)
{
    rng_state = 77;
    pool_t *pools[3] = { NULL, NULL, NULL };
    for (int i = 0; i < 3; i++)
        ASSERT_EQ_INT(pool_create(&pools[i], i + 1), 0);
    for (int portable = 0; portable < 2; portable++) {
        if (!portable && strcmp(cpu_matmul_path(), "avx2") != 0)
            continue;
        cpu_matmul_force_portable(portable);
        check_shape(QT_Q4_1, 40, 64, 140, pools);
        check_shape(QT_F32, 21, 40, 131, pools);
        check_shape(QT_Q8_0, 200, 64, 5, pools); /* tasks of several row groups */
        check_shape(QT_F32, 203, 24, 4, pools);
    }
    for (int i = 0; i < 3; i++)
        pool_destroy(pools[i]);
}

/* ------------------------------------------------------ fast precision */

/* Select `isa` (skipping when this machine or build lacks it) and `prec`. */
static void use_isa(cpu_isa_t isa, cpu_prec_t prec)
{
    if (!cpu_isa_usable(isa))
        TEST_SKIP("the %s kernels: this CPU or build lacks the instructions (best here: %s)",
                  cpu_isa_name(isa), cpu_isa_name(cpu_isa_best()));
    ASSERT_EQ_INT(cpu_matmul_configure(isa, prec), 0);
    ASSERT(cpu_matmul_isa() == isa && cpu_matmul_precision() == prec);
}

/* `exact`'s float tiles at prefill sizes against the single-token
 * kernels, on 1 to 3 threads (matmul_kern.h's mm_tok_block): blocks of 32
 * tokens with tasks of several row groups on every thread count (200
 * rows), and on one thread (70 rows); blocks at the cap (n_in 256: the
 * level's most tokens, 140 tokens in two or three blocks). */
static void check_token_blocks(cpu_isa_t isa)
{
    use_isa(isa, CPU_PREC_EXACT);
    rng_state = 8800u + (uint32_t)isa;
    pool_t *pools[3] = { NULL, NULL, NULL };
    for (int i = 0; i < 3; i++)
        ASSERT_EQ_INT(pool_create(&pools[i], i + 1), 0);
    check_shape(QT_Q4_K, 70, 8192, 70, pools);
    check_shape(QT_Q4_1, 200, 8192, 67, pools);
    check_shape(QT_Q4_K, 70, 256, 140, pools);
    for (int i = 0; i < 3; i++)
        pool_destroy(pools[i]);
    ASSERT_EQ_INT(cpu_matmul_configure(cpu_isa_best(), CPU_PREC_EXACT), 0);
}

TEST(exact_token_blocks_avx2) { check_token_blocks(CPU_ISA_AVX2); }
TEST(exact_token_blocks_avx512) { check_token_blocks(CPU_ISA_AVX512); }

/*
 * The activation quantisation that matmul.h documents, written out
 * again here: x_hat[k] = d * q[k] for each block of 32.
 */
static void ref_quantize(const float *x, uint32_t n, double *x_hat, double *half_step)
{
    for (uint32_t b = 0; b < n / 32; b++) {
        float amax = 0;
        for (int k = 0; k < 32; k++)
            amax = fmaxf(amax, fabsf(x[32 * b + k]));
        float d = amax / 127.0f, id = amax > 0 ? 127.0f / amax : 0.0f;
        for (int k = 0; k < 32; k++) {
            float q = roundf(x[32 * b + k] * id);
            q = fminf(127.0f, fmaxf(-127.0f, q));
            x_hat[32 * b + k] = (double)d * (double)q;
        }
        half_step[b] = (double)d / 2;
    }
}

/* The bytes of a block that hold quants (zeroed, the dequantised block
 * is its additive offset: Q4_1's m, Q4_K's -dmin * m per sub-block). */
static void zero_quants(qtype_t type, uint8_t *w, size_t bytes)
{
    size_t bb = qtype_info(type)->block_bytes;
    for (size_t o = 0; o < bytes; o += bb) {
        if (type == QT_Q4_1)
            memset(w + o + 4, 0, 16);
        else if (type == QT_Q4_K || type == QT_Q5_K)
            memset(w + o + 16, 0, bb - 16);
    }
}

/*
 * `fast` against double-precision sums.  Tolerances:
 *  - with the activations quantised as documented (x_hat), the integer
 *    products are exact and each block adds at most three roundings per
 *    lane (scale product, fused multiply-add, and the min term), over at
 *    most n_in / 32 * 2 terms per lane and the final sum: well under
 *    1e-5 of sum |w_k| |x_hat_k| + sum |offset_k| |x_hat_k| for the sizes
 *    here (24 blocks: ~60 roundings of 6e-8);
 *  - against the float activations, |x - x_hat| <= d / 2 per element,
 *    so the difference is at most sum_b (d_b / 2) sum_k |w_k| on top.
 */
static void check_fast_shape(qtype_t type, uint32_t n_out, uint32_t n_in, uint32_t n_tok,
                             cpu_isa_t isa)
{
    uint8_t *w = make_weights(type, n_out, n_in);
    uint64_t bytes = 0;
    ASSERT_EQ_INT(qtype_nbytes(type, (uint64_t)n_out * n_in, &bytes), 0);
    uint8_t *w0 = malloc(bytes);
    float *x = make_x(n_tok * n_in);
    float *wf = malloc((size_t)n_out * n_in * sizeof *wf);
    float *off = malloc((size_t)n_out * n_in * sizeof *off);
    float *y = malloc((size_t)n_tok * n_out * sizeof *y);
    float *yp = malloc((size_t)n_tok * n_out * sizeof *yp);
    double *xh = malloc((size_t)n_in * sizeof *xh), *hs = malloc(n_in / 32 * sizeof *hs);
    ASSERT(w0 && wf && off && y && yp && xh && hs);
    memcpy(w0, w, bytes);
    zero_quants(type, w0, bytes);
    ASSERT_EQ_INT(quant_dequant(type, w, wf, (size_t)n_out * n_in), 0);
    ASSERT_EQ_INT(quant_dequant(type, w0, off, (size_t)n_out * n_in), 0);
    if (type != QT_Q4_1 && type != QT_Q4_K && type != QT_Q5_K)
        memset(off, 0, (size_t)n_out * n_in * sizeof *off);
    const char *name = qtype_info(type)->name;

    use_isa(isa, CPU_PREC_FAST);
    ASSERT_EQ_INT(cpu_matmul(NULL, type, w, n_out, n_in, x, n_tok, y), 0);
    for (uint32_t t = 0; t < n_tok; t++) {
        const float *xt = x + (size_t)t * n_in;
        ref_quantize(xt, n_in, xh, hs);
        for (uint32_t o = 0; o < n_out; o++) {
            const float *wr = wf + (size_t)o * n_in, *orow = off + (size_t)o * n_in;
            double ref_q = 0, ref_x = 0, mag = 0, qerr = 0;
            for (uint32_t i = 0; i < n_in; i++) {
                ref_q += (double)wr[i] * xh[i];
                ref_x += (double)wr[i] * xt[i];
                mag += (fabs(wr[i]) + fabs(orow[i])) * fabs(xh[i]);
                qerr += fabs(wr[i]) * hs[i / 32];
            }
            double got = y[(size_t)t * n_out + o];
            ASSERT_MSG(fabs(got - ref_q) <= 1e-5 * mag + 1e-30,
                       "fast %s %s %ux%u: y[%u][%u] = %.9g, quantised reference %.9g (mag %.3g)",
                       cpu_isa_name(isa), name, n_out, n_in, t, o, got, ref_q, mag);
            ASSERT_MSG(fabs(got - ref_x) <= qerr + 1e-5 * mag + 1e-30,
                       "fast %s %s %ux%u: y[%u][%u] = %.9g, float reference %.9g (bound %.3g)",
                       cpu_isa_name(isa), name, n_out, n_in, t, o, got, ref_x, qerr);
        }
    }
    /* Every level gives the portable kernels' bits. */
    use_isa(CPU_ISA_PORTABLE, CPU_PREC_FAST);
    ASSERT_EQ_INT(cpu_matmul(NULL, type, w, n_out, n_in, x, n_tok, yp), 0);
    ASSERT_MSG(memcmp(y, yp, (size_t)n_tok * n_out * sizeof *y) == 0,
               "fast %s %s %ux%u differs from the portable kernels", cpu_isa_name(isa), name,
               n_out, n_in);
    free(w); free(w0); free(x); free(wf); free(off); free(y); free(yp); free(xh); free(hs);
}

/*
 * Batch invariance: for n_tok = 1 .. 70 on 1, 2 and 3 threads, every row
 * equals, bit for bit, the single-token call on that row alone.
 */
static void check_invariance(qtype_t type, uint32_t n_out, uint32_t n_in, cpu_isa_t isa,
                             cpu_prec_t prec)
{
    enum { NT = 70 };
    use_isa(isa, prec);
    uint8_t *w = make_weights(type, n_out, n_in);
    float *x = make_x(NT * n_in);
    float *y1 = malloc((size_t)NT * n_out * sizeof *y1), *yb = malloc((size_t)NT * n_out * sizeof *yb);
    ASSERT(y1 && yb);
    pool_t *pools[3] = { NULL, NULL, NULL };
    for (int i = 0; i < 3; i++)
        ASSERT_EQ_INT(pool_create(&pools[i], i + 1), 0);
    for (uint32_t t = 0; t < NT; t++)
        ASSERT_EQ_INT(cpu_matmul(NULL, type, w, n_out, n_in, x + (size_t)t * n_in, 1,
                                 y1 + (size_t)t * n_out), 0);
    for (uint32_t nt = 1; nt <= NT; nt++) {
        pool_t *p = pools[nt % 3];
        uint32_t t0 = (nt * 7) % (NT - nt + 1); /* the batch starts at varying rows of x */
        ASSERT_EQ_INT(cpu_matmul(p, type, w, n_out, n_in, x + (size_t)t0 * n_in, nt, yb), 0);
        ASSERT_MSG(memcmp(yb, y1 + (size_t)t0 * n_out, (size_t)nt * n_out * sizeof *yb) == 0,
                   "%s %s %s: a batch of %u tokens from row %u on %u threads differs from "
                   "single-token calls", prec == CPU_PREC_FAST ? "fast" : "exact",
                   cpu_isa_name(isa), qtype_info(type)->name, nt, t0, pool_threads(p));
    }
    for (int i = 0; i < 3; i++)
        pool_destroy(pools[i]);
    free(w); free(x); free(y1); free(yb);
}

static void check_fast(qtype_t type, cpu_isa_t isa)
{
    rng_state = 5000u + 100u * (uint32_t)type + (uint32_t)isa;
    const int k = type == QT_Q4_K || type == QT_Q5_K || type == QT_Q6_K; /* super-blocks of 256 */
    uint32_t n_in = k ? 768 : 576;
    check_fast_shape(type, 1, n_in, 3, isa);
    check_fast_shape(type, 7, k ? 256 : 32, 9, isa);
    check_fast_shape(type, 37, n_in, 11, isa);
    /* past the kernels' 256 blocks of kept offset terms */
    check_fast_shape(type, 9, k ? 33 * 256 : 257 * 32, 3, isa);
    /* sixteen tokens or more (AMX tiles): ragged row panels and token
     * groups, and rows of several chunks with a ragged last one */
    check_fast_shape(type, 37, n_in, 37, isa);
    check_fast_shape(type, 21, k ? 33 * 256 : 257 * 32, 19, isa);
    /* a chunk of an odd number of blocks, three or more (the AMX kernel's
     * pipeline ends on its even tiles; K-quant chunks are whole
     * super-blocks, eight blocks each, never odd) */
    if (!k)
        check_fast_shape(type, 21, 35 * 32, 17, isa);
    /* 33 row groups at 24 tokens: tasks of several groups (matmul.c's
     * task_rows), the last one ragged */
    check_fast_shape(type, 519, k ? 256 : 64, 24, isa);
    /* a sixteen-row tile and one of thirteen rows (AVX512's 512-bit
     * tiles: rows clamped, the store masked), at 16 + 8 + 3 tokens */
    check_fast_shape(type, 29, n_in, 27, isa);
    /* prefill sizes below the AMX level: long tasks (16 groups of
     * sixteen rows on one thread) whose rows go in groups of 64 to 256
     * KiB (mm_group_bytes), each group taking every pass of Q8_TOKS
     * tokens: at 256 KiB one group a task at n_in 576 / 768, two or more
     * at n_in 2048 (Q4_0 and Q4_K 224 + 32 rows, Q4_1 192 + 64, Q5_K 176
     * + 80, Q6_K 144 + 112, Q8_0 112 + 112 + 32) */
    check_fast_shape(type, 519, n_in, 70, isa);
    check_fast_shape(type, 519, 2048, 24, isa);
    check_invariance(type, 37, n_in, isa, CPU_PREC_FAST);
    check_invariance(type, 19, k ? 9 * 256 : 70 * 32, isa, CPU_PREC_FAST);
    ASSERT_EQ_INT(cpu_matmul_configure(cpu_isa_best(), CPU_PREC_EXACT), 0);
}

#define FAST_TESTS(lower, upper)                                                  \
    TEST(fast_##lower##_portable) { check_fast(upper, CPU_ISA_PORTABLE); }       \
    TEST(fast_##lower##_avx2) { check_fast(upper, CPU_ISA_AVX2); }               \
    TEST(fast_##lower##_avxvnni) { check_fast(upper, CPU_ISA_AVXVNNI); }         \
    TEST(fast_##lower##_avx512) { check_fast(upper, CPU_ISA_AVX512); }          \
    TEST(fast_##lower##_amx) { check_fast(upper, CPU_ISA_AMX); }

FAST_TESTS(q4_0, QT_Q4_0)
FAST_TESTS(q4_1, QT_Q4_1)
FAST_TESTS(q8_0, QT_Q8_0)
FAST_TESTS(q4_k, QT_Q4_K)
FAST_TESTS(q5_k, QT_Q5_K)
FAST_TESTS(q6_k, QT_Q6_K)

/* Where the packed layout puts each part of a block: `halves` halves (at
 * 32 i for half i, from byte 2 i of the block), then runs of dwords, each
 * { packed offset, block offset, dwords } (dword k of the run at packed
 * offset + 64 k + 4 lane, from block offset + 4 k), then `tail` halves
 * (at tail_at + 32 i, from byte tail_from + 2 i). */
typedef struct {
    uint32_t halves;
    uint32_t run[3][3];
    uint32_t tail, tail_at, tail_from;
} pack_parts_t;

static pack_parts_t pack_parts(qtype_t type)
{
    switch (type) {
    case QT_Q4_0: return (pack_parts_t){ .halves = 1, .run = { { 32, 2, 4 } } };                 /* d, nibbles */
    case QT_Q4_1: return (pack_parts_t){ .halves = 2, .run = { { 64, 4, 4 } } };                 /* d m, nibbles */
    case QT_Q8_0: return (pack_parts_t){ .halves = 1, .run = { { 32, 2, 8 } } };                 /* d, quants */
    case QT_Q4_K: return (pack_parts_t){ .halves = 2, .run = { { 64, 4, 3 }, { 256, 16, 32 } } }; /* d dmin, scales, nibbles */
    case QT_Q5_K: return (pack_parts_t){ .halves = 2, .run = { { 64, 4, 3 }, { 256, 16, 8 }, { 768, 48, 32 } } }; /* + fifth bits */
    default: /* Q6_K: low bits, high bits, scales; d last */
        return (pack_parts_t){ .run = { { 0, 0, 32 }, { 2048, 128, 16 }, { 3072, 192, 4 } },
                               .tail = 1, .tail_at = 3328, .tail_from = 208 };
    }
}

/*
 * Packed matrices (cpu_matmul_pack, matmul_kern.h's layout): the bytes
 * where the layout puts them, the same copy written a tile at a time
 * (cpu_matmul_pack_tiles), the sizes, and the `fast` kernels of a level
 * that reads the copy (AVX2, AVX-VNNI, AVX512) giving the portable kernels' bits on the
 * mapped rows at every token count from 1 to 70, on 1 to 3 threads
 * (rows a tile and a ragged one; tasks of several tiles; 24 tokens in
 * long tasks; rows at the 256-block limit, and 200 of them, where 39
 * tokens on one thread take tasks of several groups of rows kept in L2
 * (matmul_q8_x86.h's rows_type), so that a group starts past its task's
 * first row: a few token counts of those).
 */
static void check_packed(qtype_t type, cpu_isa_t isa)
{
    rng_state = 9100u + (uint32_t)type + 7u * (uint32_t)isa;
    use_isa(isa, CPU_PREC_FAST);
    const int k = type == QT_Q4_K || type == QT_Q5_K || type == QT_Q6_K;
    const size_t bb = qtype_info(type)->block_bytes, be = k ? 256 : 32;
    const pack_parts_t parts = pack_parts(type);
    ASSERT(cpu_matmul_packed_bytes(type, 37, 9 * 256) == 48 * (9 * 256 / be) * bb);
    ASSERT(cpu_matmul_packed_bytes(type, 16, 256 * 32) == 16 * (256 * 32 / be) * bb);
    ASSERT(cpu_matmul_packed_bytes(type, 16, 257 * 32) == 0); /* past the kept terms */
    ASSERT(cpu_matmul_packed_bytes(type, 16, 264 * 32) == 0);
    ASSERT(cpu_matmul_packed_bytes(type, 16, be + 16) == 0);  /* a ragged block */
    ASSERT(cpu_matmul_packed_bytes(QT_F32, 16, 256) == 0);    /* a type no kernel reads packed */
    ASSERT(qtype_info(QT_Q6_K)->block_bytes == MM_Q6_K_BYTES); /* tile16's buffer for mapped Q6_K */
    static const uint32_t shapes[][3] = { /* n_out, n_in, the most tokens */
        { 37, 576, 70 }, { 16, 32, 17 }, { 519, 64, 24 }, { 29, 256 * 32, 17 }, { 200, 256 * 32, 39 },
    };
    static const uint32_t shapes_k[][3] = { /* K-quants: super-blocks of 256 */
        { 37, 9 * 256, 70 }, { 16, 256, 17 }, { 519, 256, 24 }, { 29, 256 * 32, 17 }, { 200, 256 * 32, 39 },
    };
    pool_t *pools[3] = { NULL, NULL, NULL };
    for (int i = 0; i < 3; i++)
        ASSERT_EQ_INT(pool_create(&pools[i], i + 1), 0);
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        uint32_t n_out = k ? shapes_k[s][0] : shapes[s][0], n_in = k ? shapes_k[s][1] : shapes[s][1];
        uint32_t nt_max = k ? shapes_k[s][2] : shapes[s][2];
        const size_t nb = n_in / be, rb = nb * bb;
        use_isa(isa, CPU_PREC_FAST);
        size_t pb = cpu_matmul_packed_bytes(type, n_out, n_in);
        ASSERT(pb == (size_t)(n_out + 15) / 16 * 16 * rb);
        uint8_t *w = make_weights(type, n_out, n_in), *wp = aligned_alloc(64, (pb + 63) & ~(size_t)63);
        float *x = make_x(nt_max * n_in);
        float *y = malloc((size_t)nt_max * n_out * sizeof *y), *yp = malloc((size_t)nt_max * n_out * sizeof *yp);
        uint8_t *wz = calloc(n_out, rb);
        ASSERT(w && wp && x && y && yp && wz);
        memset(wp, 0xa5, pb);
        ASSERT_EQ_INT(cpu_matmul_pack(type, w, n_out, n_in, wp), 0);
        /* the layout, byte by byte: tile, block, row (rows past n_out: the
         * last); and every byte of the copy one of them */
        size_t placed = 0;
        for (uint32_t r = 0; r < (n_out + 15) / 16 * 16; r++) {
            const uint8_t *src = w + (size_t)(r < n_out ? r : n_out - 1) * rb;
            for (size_t b = 0; b < nb; b++) {
                const uint8_t *pk = wp + ((size_t)(r / 16) * nb + b) * 16 * bb, *blk = src + b * bb;
                uint32_t lane = r % 16;
                for (uint32_t h = 0; h < parts.halves; h++, placed += 2)
                    ASSERT(memcmp(pk + 32 * h + 2 * lane, blk + 2 * h, 2) == 0);
                for (int q = 0; q < 3 && parts.run[q][2] != 0; q++) {
                    for (uint32_t d = 0; d < parts.run[q][2]; d++, placed += 4)
                        ASSERT_MSG(memcmp(pk + parts.run[q][0] + 64 * d + 4 * lane, blk + parts.run[q][1] + 4 * d,
                                          4) == 0,
                                   "%s packed: row %u block %zu part %d dword %u misplaced",
                                   qtype_info(type)->name, r, b, q, d);
                }
                for (uint32_t h = 0; h < parts.tail; h++, placed += 2)
                    ASSERT(memcmp(pk + parts.tail_at + 32 * h + 2 * lane, blk + parts.tail_from + 2 * h, 2) == 0);
            }
        }
        ASSERT(placed == pb);
        /* by ranges of tiles (as the backend's threads write it), last
         * first, one at a time: the same copy; a range past the end refused */
        const uint32_t tiles = (n_out + 15) / 16;
        uint8_t *wq = aligned_alloc(64, (pb + 63) & ~(size_t)63);
        ASSERT(wq != NULL);
        memset(wq, 0x5a, pb);
        for (uint32_t t = tiles; t-- > 0;)
            ASSERT_EQ_INT(cpu_matmul_pack_tiles(type, w, n_out, n_in, wq, t, 1), 0);
        ASSERT_EQ_INT(cpu_matmul_pack_tiles(type, w, n_out, n_in, wq, tiles, 0), 0);
        ASSERT(memcmp(wp, wq, pb) == 0);
        ASSERT_EQ_INT(cpu_matmul_pack_tiles(type, w, n_out, n_in, wq, tiles, 1), ERR_RANGE);
        ASSERT_EQ_INT(cpu_matmul_pack_tiles(type, w, n_out, n_in, wq, tiles + 1, 0), ERR_RANGE);
        ASSERT_EQ_INT(cpu_matmul_pack_tiles(type, w, n_out, n_in, wq, 1, UINT32_MAX), ERR_RANGE);
        free(wq);
        for (uint32_t nt = 1; nt <= nt_max; nt++) {
            if (n_out == 200 && nt > 2 && nt != 16 && nt != 17 && nt != nt_max)
                continue; /* a few counts (39: the one-thread pool) */
            pool_t *p = pools[nt % 3];
            use_isa(CPU_ISA_PORTABLE, CPU_PREC_FAST);
            ASSERT_EQ_INT(cpu_matmul(NULL, type, w, n_out, n_in, x, nt, y), 0);
            use_isa(isa, CPU_PREC_FAST);
            cpu_mm_out_t m = { type, wz, n_out, yp, wp }; /* zero rows: the copy must serve */
            memset(yp, 0xff, (size_t)nt * n_out * sizeof *yp);
            ASSERT_EQ_INT(cpu_matmul_multi(p, &m, 1, n_in, x, nt), 0);
            ASSERT_MSG(memcmp(y, yp, (size_t)nt * n_out * sizeof *y) == 0,
                       "fast %s %s %ux%u packed, %u tokens on %u threads: not the portable "
                       "kernels' bits", cpu_isa_name(isa), qtype_info(type)->name, n_out, n_in, nt,
                       pool_threads(p));
        }
        free(w); free(wp); free(wz); free(x); free(y); free(yp);
    }
    /* the portable and AMX levels and `exact` read the mapped rows: no
     * copy to make (a shape every type packs at this level with `fast`) */
    const cpu_isa_t mapped[2] = { CPU_ISA_PORTABLE, CPU_ISA_AMX };
    for (int i = 0; i < 2; i++) {
        if (cpu_isa_usable(mapped[i])) {
            use_isa(mapped[i], CPU_PREC_FAST);
            ASSERT(cpu_matmul_packed_bytes(type, 37, 9 * 256) == 0);
        }
    }
    use_isa(isa, CPU_PREC_EXACT);
    ASSERT(cpu_matmul_packed_bytes(type, 37, 9 * 256) == 0);
    uint8_t dummy[16 * 210]; /* sixteen of the largest block, Q6_K's */
    ASSERT_EQ_INT(cpu_matmul_pack(type, dummy, 1, k ? 256 : 32, dummy), ERR_UNSUPPORTED);
    for (int i = 0; i < 3; i++)
        pool_destroy(pools[i]);
    ASSERT_EQ_INT(cpu_matmul_configure(cpu_isa_best(), CPU_PREC_EXACT), 0);
}

/*
 * The largest integer sums the x86 levels form: every weight at its
 * largest (nibbles 15, Q5_K 31, Q6_K 63, Q8_0 127) and every activation
 * +-127 (x all 1 or all -1), where the AVX2 level adds vpmaddubsw's pairs
 * as int16 (matmul_q8_x86.c states the bounds): each level usable here,
 * mapped and packed, gives the portable kernels' bits at 1 to 5 tokens.
 */
static void check_extremes(qtype_t type)
{
    const uint32_t n_out = 37, n_in = 512, nt_max = 5;
    const size_t bb = qtype_info(type)->block_bytes, nb = n_in / (type == QT_Q4_K || type == QT_Q5_K
                                                                  || type == QT_Q6_K ? 256 : 32);
    /* each block's quant bytes: [q0, q1) (Q6_K also its high bits, 128 ..) */
    const size_t q0 = type == QT_Q4_0 || type == QT_Q8_0 ? 2 : type == QT_Q4_1 ? 4
                      : type == QT_Q4_K ? 16 : type == QT_Q5_K ? 16 : 0;
    const size_t q1 = type == QT_Q6_K ? 192 : bb;
    uint8_t *w = make_weights(type, n_out, n_in), *wz = calloc(n_out, nb * bb);
    float *x = malloc((size_t)nt_max * n_in * sizeof *x);
    float *y = malloc((size_t)nt_max * n_out * sizeof *y), *yl = malloc((size_t)nt_max * n_out * sizeof *yl);
    ASSERT(w && wz && x && y && yl);
    for (size_t b = 0; b < (size_t)n_out * nb; b++)
        memset(w + b * bb + q0, type == QT_Q8_0 ? 0x7f : 0xff, q1 - q0);
    for (uint32_t t = 0; t < nt_max; t++)
        for (uint32_t i = 0; i < n_in; i++)
            x[(size_t)t * n_in + i] = t % 2 ? -1.0f : 1.0f;
    pool_t *p = NULL;
    ASSERT_EQ_INT(pool_create(&p, 2), 0);
    const cpu_isa_t levels[3] = { CPU_ISA_AVX2, CPU_ISA_AVXVNNI, CPU_ISA_AVX512 };
    int ran = 0;
    for (int l = 0; l < 3; l++) {
        if (!cpu_isa_usable(levels[l]))
            continue;
        ASSERT_EQ_INT(cpu_matmul_configure(levels[l], CPU_PREC_FAST), 0);
        size_t pb = cpu_matmul_packed_bytes(type, n_out, n_in);
        uint8_t *wp = aligned_alloc(64, (pb + 63) & ~(size_t)63);
        ASSERT(pb > 0 && wp != NULL);
        ASSERT_EQ_INT(cpu_matmul_pack(type, w, n_out, n_in, wp), 0);
        for (uint32_t nt = 1; nt <= nt_max; nt++) {
            ASSERT_EQ_INT(cpu_matmul_configure(CPU_ISA_PORTABLE, CPU_PREC_FAST), 0);
            ASSERT_EQ_INT(cpu_matmul(NULL, type, w, n_out, n_in, x, nt, y), 0);
            ASSERT_EQ_INT(cpu_matmul_configure(levels[l], CPU_PREC_FAST), 0);
            for (int packed = 0; packed < 2; packed++) {
                cpu_mm_out_t m = { type, packed ? wz : w, n_out, yl, packed ? wp : NULL };
                memset(yl, 0xff, (size_t)nt * n_out * sizeof *yl);
                ASSERT_EQ_INT(cpu_matmul_multi(p, &m, 1, n_in, x, nt), 0);
                ASSERT_MSG(memcmp(y, yl, (size_t)nt * n_out * sizeof *y) == 0,
                           "fast %s %s, largest weights and activations, %u tokens, %s: not the "
                           "portable kernels' bits", cpu_isa_name(levels[l]), qtype_info(type)->name,
                           nt, packed ? "packed" : "mapped");
            }
        }
        free(wp);
        ran++;
    }
    pool_destroy(p);
    free(w); free(wz); free(x); free(y); free(yl);
    ASSERT_EQ_INT(cpu_matmul_configure(cpu_isa_best(), CPU_PREC_EXACT), 0);
    if (ran == 0)
        TEST_SKIP("no x86 level with fast kernels here (best: %s)", cpu_isa_name(cpu_isa_best()));
}

TEST(fast_extremes_q4_0) { check_extremes(QT_Q4_0); }
TEST(fast_extremes_q4_1) { check_extremes(QT_Q4_1); }
TEST(fast_extremes_q8_0) { check_extremes(QT_Q8_0); }
TEST(fast_extremes_q4_k) { check_extremes(QT_Q4_K); }
TEST(fast_extremes_q5_k) { check_extremes(QT_Q5_K); }
TEST(fast_extremes_q6_k) { check_extremes(QT_Q6_K); }

#define PACKED_TESTS(lower, upper)                                                   \
    TEST(fast_packed_##lower##_avx2) { check_packed(upper, CPU_ISA_AVX2); }         \
    TEST(fast_packed_##lower##_avxvnni) { check_packed(upper, CPU_ISA_AVXVNNI); }   \
    TEST(fast_packed_##lower##_avx512) { check_packed(upper, CPU_ISA_AVX512); }

PACKED_TESTS(q4_0, QT_Q4_0)
PACKED_TESTS(q4_1, QT_Q4_1)
PACKED_TESTS(q8_0, QT_Q8_0)
PACKED_TESTS(q4_k, QT_Q4_K)
PACKED_TESTS(q5_k, QT_Q5_K)
PACKED_TESTS(q6_k, QT_Q6_K)

/*
 * Q6_K: the 210-byte layout of quant.c (ql[128], qh[64], int8 scales[16],
 * f16 d last; element 32p + l of half h: nibble (p < 2 low, else high) of
 * ql[64h + 32(p & 1) + l], bits 2p, 2p+1 of qh[32h + l] above it, minus
 * 32; scale scales[e / 16]): acc += (d * dx) * (sc_lo P_lo + sc_hi P_hi)
 * with P_lo, P_hi the sums over a block's two halves of 16.
 */
static float ref_fast_q6_k(const uint8_t *row, uint32_t n_in, const int8_t *q, const float *d)
{
    float acc = 0.0f;
    for (uint32_t s = 0; s < n_in / 256; s++, row += 210) {
        float sd = f16_to_f32((uint16_t)(row[208] | row[209] << 8));
        for (uint32_t e = 0; e < 256; e += 32) {
            uint32_t b = 8 * s + e / 32;
            int32_t p[2] = { 0, 0 };
            for (uint32_t k = e; k < e + 32; k++) {
                uint32_t h = k / 128, part = k % 128 / 32, l = k % 32;
                uint8_t lo = row[64 * h + 32 * (part & 1) + l], hi = row[128 + 32 * h + l];
                int v = ((part < 2 ? lo & 15 : lo >> 4) | ((hi >> (2 * part)) & 3) << 4) - 32;
                p[(k - e) / 16] += v * q[32 * b + (k - e)];
            }
            int32_t pw = (int8_t)row[192 + e / 16] * p[0] + (int8_t)row[192 + e / 16 + 1] * p[1];
            acc = fmaf(sd * d[b], (float)pw, acc);
        }
    }
    return acc;
}

/*
 * Q4_K and Q5_K under `fast`, matmul.h's order written out again from
 * the layouts (super-block: f16 d, f16 dmin, 12 bytes of 6-bit scales and
 * mins, Q5_K's 32 bytes of fifth bits (bit j of byte e: element e of
 * sub-block j), 128 bytes of nibbles, sub-block 2g in the low nibbles of
 * bytes 32g .. 32g+31 and 2g+1 in the high ones), on cpu_quantize_act's
 * activations (Q6_K: ref_fast_q6_k): every level gives exactly these bits.
 */
static float ref_fast_k(qtype_t type, const uint8_t *row, uint32_t n_in, const int8_t *q,
                        const float *d)
{
    if (type == QT_Q6_K)
        return ref_fast_q6_k(row, n_in, q, d);
    const size_t bb = type == QT_Q5_K ? 176 : 144, qo = type == QT_Q5_K ? 48 : 16;
    float acc = 0.0f;
    for (uint32_t s = 0; s < n_in / 256; s++, row += bb) {
        float sd = f16_to_f32((uint16_t)(row[0] | row[1] << 8));
        float smin = f16_to_f32((uint16_t)(row[2] | row[3] << 8));
        const uint8_t *k = row + 4;
        for (int j = 0; j < 8; j++) {
            int sc = j < 4 ? k[j] & 63 : (k[j + 4] & 15) | (k[j - 4] >> 6) << 4;
            int m = j < 4 ? k[j + 4] & 63 : (k[j + 4] >> 4) | (k[j] >> 6) << 4;
            uint32_t b = 8 * s + (uint32_t)j;
            int32_t pw = 0, sx = 0;
            for (int e = 0; e < 32; e++) {
                uint8_t byte = row[qo + 32 * (j / 2) + e];
                int v = j % 2 ? byte >> 4 : byte & 15;
                if (type == QT_Q5_K)
                    v += 16 * ((row[16 + e] >> j) & 1);
                pw += v * q[32 * b + e];
                sx += q[32 * b + e];
            }
            acc = fmaf(sd * (float)sc * d[b], (float)pw, acc);
            acc = fmaf(-(smin * (float)m), d[b] * (float)sx, acc);
        }
    }
    return acc;
}

TEST(fast_k_documented_order)
{
    enum { N_OUT = 11, N_IN = 768, NT = 3 };
    static const qtype_t types[3] = { QT_Q4_K, QT_Q5_K, QT_Q6_K };
    rng_state = 77;
    for (int ti = 0; ti < 3; ti++) {
        qtype_t type = types[ti];
        size_t row_bytes = (N_IN / 256) * qtype_info(type)->block_bytes;
        uint8_t *w = make_weights(type, N_OUT, N_IN);
        float *x = make_x(NT * N_IN), y[NT * N_OUT], ref[NT * N_OUT], d[N_IN / 32], ls[N_IN / 4];
        int8_t q[N_IN];
        for (uint32_t t = 0; t < NT; t++) {
            cpu_quantize_act(x + (size_t)t * N_IN, N_IN, q, d, ls);
            for (uint32_t o = 0; o < N_OUT; o++)
                ref[t * N_OUT + o] = ref_fast_k(type, w + o * row_bytes, N_IN, q, d);
        }
        for (int isa = 0; isa <= (int)cpu_isa_best(); isa++) {
            if (!cpu_isa_usable((cpu_isa_t)isa))
                continue;
            ASSERT_EQ_INT(cpu_matmul_configure((cpu_isa_t)isa, CPU_PREC_FAST), 0);
            ASSERT_EQ_INT(cpu_matmul(NULL, type, w, N_OUT, N_IN, x, NT, y), 0);
            for (uint32_t i = 0; i < NT * N_OUT; i++)
                ASSERT_MSG(memcmp(&y[i], &ref[i], sizeof y[i]) == 0,
                           "fast %s %s y[%u][%u] = %.9g, the documented order gives %.9g",
                           cpu_isa_name((cpu_isa_t)isa), qtype_info(type)->name, i / N_OUT,
                           i % N_OUT, y[i], ref[i]);
        }
        free(w);
        free(x);
    }
    ASSERT_EQ_INT(cpu_matmul_configure(cpu_isa_best(), CPU_PREC_EXACT), 0);
}

/*
 * `exact` at the AVX512 level (and AMX, which runs its kernels) gives the
 * AVX2 level's bits for every type and every path: one token (the
 * 512-bit small-block kernel, the paired Q4_K lookup and Q5_K kernels,
 * the paired Q6_K kernel, over one to three super-blocks and row counts
 * that leave the last pair or the last pair's second row unstored), a
 * few tokens, and
 * the 512-bit tile beyond MM_FEW_TOKS, over more tokens than one fill of
 * its tile serves, over several chunks of each quantised type's row (a
 * chunk's first block found at its own offset), with odd row counts (a
 * pair's second row repeated) and float rows whose length is or is not
 * a multiple of eight.
 */
TEST(exact_avx512_is_avx2)
{
    if (!cpu_isa_usable(CPU_ISA_AVX512))
        TEST_SKIP("no AVX512 level on this machine or in this build (best here: %s)",
                  cpu_isa_name(cpu_isa_best()));
    static const struct { qtype_t type; uint32_t n_out, n_in; } shapes[] = {
        { QT_Q4_0, 19, 320 }, { QT_Q4_1, 33, 576 }, { QT_Q8_0, 7, 96 },   { QT_Q8_0, 13, 544 },
        { QT_Q4_K, 21, 768 }, { QT_Q4_K, 22, 256 }, { QT_Q5_K, 17, 512 }, { QT_Q5_K, 22, 768 },
        { QT_Q5_K, 7, 256 },  { QT_Q6_K, 9, 256 },  { QT_Q6_K, 23, 768 }, { QT_Q6_K, 13, 768 },
        { QT_F16, 11, 72 },   { QT_BF16, 5, 40 },   { QT_F32, 13, 48 },   { QT_F32, 6, 21 },
    };
    static const uint32_t toks[] = { 1, 3, 9, 150 };
    const cpu_isa_t levels[2] = { CPU_ISA_AVX512, CPU_ISA_AMX };
    pool_t *pool = NULL;
    ASSERT_EQ_INT(pool_create(&pool, 2), 0);
    rng_state = 9100;
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
        qtype_t type = shapes[si].type;
        uint32_t n_out = shapes[si].n_out, n_in = shapes[si].n_in, nt_max = 150;
        uint8_t *w = make_weights(type, n_out, n_in);
        float *x = make_x(nt_max * n_in);
        float *ya = malloc((size_t)nt_max * n_out * sizeof *ya), *yz = malloc((size_t)nt_max * n_out * sizeof *yz);
        ASSERT(ya != NULL && yz != NULL);
        for (size_t ti = 0; ti < sizeof toks / sizeof toks[0]; ti++) {
            uint32_t nt = toks[ti];
            /* the whole buffers, so that a store past the last row shows */
            memset(ya, 0xff, (size_t)nt_max * n_out * sizeof *ya);
            ASSERT_EQ_INT(cpu_matmul_configure(CPU_ISA_AVX2, CPU_PREC_EXACT), 0);
            ASSERT_EQ_INT(cpu_matmul(pool, type, w, n_out, n_in, x, nt, ya), 0);
            for (int li = 0; li < 2; li++) {
                if (!cpu_isa_usable(levels[li]))
                    continue;
                ASSERT_EQ_INT(cpu_matmul_configure(levels[li], CPU_PREC_EXACT), 0);
                memset(yz, 0xff, (size_t)nt_max * n_out * sizeof *yz);
                ASSERT_EQ_INT(cpu_matmul(pool, type, w, n_out, n_in, x, nt, yz), 0);
                ASSERT_MSG(memcmp(ya, yz, (size_t)nt_max * n_out * sizeof *ya) == 0,
                           "exact %s %ux%u, %u tokens: %s differs from avx2", qtype_info(type)->name,
                           n_out, n_in, nt, cpu_isa_name(levels[li]));
            }
        }
        free(w); free(x); free(ya); free(yz);
    }
    pool_destroy(pool);
    ASSERT_EQ_INT(cpu_matmul_configure(cpu_isa_best(), CPU_PREC_EXACT), 0);
}

/* `exact` over n_tok 1 .. 70 on every level (AVXVNNI runs the AVX2
 * kernels, AVX512 too but for its one-token kernels of the small-block
 * types, Q4_K, Q5_K and Q6_K): the few-token kernels (up to 8 tokens) of the small-block
 * types and of each K-quant against their tile path; row counts that
 * leave a partial group of rows. */
static void check_exact_invariance(cpu_isa_t isa)
{
    rng_state = 6000u + (uint32_t)isa;
    check_invariance(QT_Q4_1, 37, 576, isa, CPU_PREC_EXACT);
    check_invariance(QT_Q4_0, 29, 320, isa, CPU_PREC_EXACT);
    check_invariance(QT_Q8_0, 11, 256, isa, CPU_PREC_EXACT);
    check_invariance(QT_Q4_K, 21, 768, isa, CPU_PREC_EXACT);
    check_invariance(QT_Q5_K, 7, 512, isa, CPU_PREC_EXACT);
    check_invariance(QT_Q6_K, 19, 512, isa, CPU_PREC_EXACT);
    ASSERT_EQ_INT(cpu_matmul_configure(cpu_isa_best(), CPU_PREC_EXACT), 0);
}

TEST(exact_invariance_portable) { check_exact_invariance(CPU_ISA_PORTABLE); }
TEST(exact_invariance_avx2) { check_exact_invariance(CPU_ISA_AVX2); }
TEST(exact_invariance_avx512) { check_exact_invariance(CPU_ISA_AVX512); }
TEST(exact_invariance_amx) { check_exact_invariance(CPU_ISA_AMX); }

/* Non-finite activations give non-finite outputs, not undefined behaviour. */
TEST(fast_nonfinite_activations)
{
    rng_state = 9;
    uint8_t *w = make_weights(QT_Q8_0, 4, 64);
    float *x = make_x(64), y[4];
    x[3] = NAN;
    x[40] = INFINITY;
    for (int isa = 0; isa <= (int)cpu_isa_best(); isa++) {
        if (!cpu_isa_usable((cpu_isa_t)isa))
            continue;
        ASSERT_EQ_INT(cpu_matmul_configure((cpu_isa_t)isa, CPU_PREC_FAST), 0);
        ASSERT_EQ_INT(cpu_matmul(NULL, QT_Q8_0, w, 4, 64, x, 1, y), 0);
        for (int o = 0; o < 4; o++)
            ASSERT(isnan(y[o]));
    }
    ASSERT_EQ_INT(cpu_matmul_configure(cpu_isa_best(), CPU_PREC_EXACT), 0);
    free(w);
    free(x);
}

/* cpu_quantize_act's quants are roundf's (halves away from zero), on
 * values that land on and next to halves and on the clamp. */
TEST(fast_quantize_rounding)
{
    float x[32 * 64], d[64], ls[8 * 64];
    int8_t q[32 * 64];
    rng_state = 11;
    for (int b = 0; b < 64; b++) {
        float amax = 0.5f + (float)b; /* 127 / amax: many exact halves below */
        for (int k = 0; k < 32; k++) {
            float h = (float)((int)(rng_next() % 255) - 127) * 0.5f; /* a multiple of 1/2 */
            x[32 * b + k] = k == 0 ? amax : h * amax / 127.0f * (k % 3 == 1 ? 1.0000001f : 1.0f);
            if (k % 5 == 4)
                x[32 * b + k] = nextafterf(x[32 * b + k], 0.0f);
        }
    }
    cpu_quantize_act(x, 32 * 64, q, d, ls);
    for (int b = 0; b < 64; b++) {
        float amax = 0;
        for (int k = 0; k < 32; k++)
            amax = fmaxf(amax, fabsf(x[32 * b + k]));
        float id = 127.0f / amax;
        for (int k = 0; k < 32; k++) {
            float r = fminf(127.0f, fmaxf(-127.0f, roundf(x[32 * b + k] * id)));
            ASSERT_MSG(q[32 * b + k] == (int8_t)r, "block %d element %d: x %.9g -> %d, roundf %g",
                       b, k, (double)x[32 * b + k], q[32 * b + k], (double)r);
        }
    }
}

/*
 * cpu_quantize_act, on every level this CPU runs, against matmul.h's
 * statement of it written out here one element at a time: scales, quants
 * and lane sums bit for bit, on random blocks of every magnitude, values
 * on and next to halves, and blocks with a zero, a NaN, an infinity or
 * subnormals.
 */
static void quantize_definition(const float *x, uint32_t n, int8_t *q, float *d, float *ls)
{
    for (uint32_t b = 0; b < n / 32; b++) {
        float amax = 0.0f;
        int bad = 0;
        for (int k = 0; k < 32; k++) {
            bad |= !isfinite(x[32 * b + k]);
            amax = fmaxf(amax, fabsf(x[32 * b + k]));
        }
        int tiny = isinf(127.0f / amax);
        d[b] = bad ? NAN : tiny ? 0.0f : amax / 127.0f;
        for (int k = 0; k < 32; k++) {
            float r = bad || tiny ? 0.0f : roundf(x[32 * b + k] * (127.0f / amax));
            q[32 * b + k] = (int8_t)fminf(127.0f, fmaxf(-127.0f, r));
        }
        for (int l = 0; l < 8; l++)
            ls[8 * b + l] = (float)(q[32 * b + 4 * l] + q[32 * b + 4 * l + 1] + q[32 * b + 4 * l + 2]
                                    + q[32 * b + 4 * l + 3]);
    }
}

TEST(fast_quantize_matches_definition)
{
    enum { NB = 103 }; /* six groups of sixteen and a part (the AVX-512 quantiser's) */
    float x[32 * NB], d[NB], ls[8 * NB], d_ref[NB], ls_ref[8 * NB];
    int8_t q[32 * NB], q_ref[32 * NB];
    rng_state = 29;
    for (int b = 0; b < NB; b++) {
        float mag = ldexpf(1.0f, (int)(rng_next() % 60) - 30);
        for (int k = 0; k < 32; k++) {
            float u = (float)(rng_next() % 2000001) / 1000000.0f - 1.0f;
            x[32 * b + k] = u * mag;
            if (b % 7 == 3) /* a multiple of amax / 254: on a half, or next to it */
                x[32 * b + k] = (float)((int)(rng_next() % 255) - 127) * 0.5f * mag / 127.0f;
            if (b % 7 == 3 && k % 3 == 1)
                x[32 * b + k] = nextafterf(x[32 * b + k], k % 2 ? INFINITY : -INFINITY);
        }
        if (b % 7 == 3)
            x[32 * b + 5] = mag;
    }
    memset(x + 32 * 10, 0, 32 * sizeof *x);                /* all zero */
    x[32 * 11 + 17] = NAN;                                   /* a NaN */
    x[32 * 12 + 31] = -INFINITY;                             /* an infinity */
    x[32 * 13 + 0] = INFINITY;
    x[32 * 13 + 1] = NAN;
    for (int k = 0; k < 32; k++) {                           /* subnormals, and 127 / amax */
        x[32 * 14 + k] = ldexpf((float)(k - 16), -140);      /* beyond FLT_MAX */
        x[32 * 15 + k] = ldexpf((float)(k - 16), -130);      /* (2^-126 x 127 / 16: within) */
    }
    quantize_definition(x, 32 * NB, q_ref, d_ref, ls_ref);
    for (int isa = 0; isa <= CPU_ISA_AMX; isa++) {
        if (!cpu_isa_usable((cpu_isa_t)isa))
            continue;
        ASSERT_EQ_INT(cpu_matmul_configure((cpu_isa_t)isa, CPU_PREC_FAST), 0);
        /* the whole run, and runs that start and end inside a group of sixteen */
        static const int runs[][2] = { { 0, NB }, { 9, 17 }, { 1, 16 }, { 12, 1 }, { 90, 13 } };
        for (size_t r = 0; r < sizeof runs / sizeof runs[0]; r++) {
            const int b0 = runs[r][0], nr = runs[r][1];
            memset(q, 0x55, sizeof q);
            memset(d, 0x55, sizeof d);
            memset(ls, 0x55, sizeof ls);
            float d_fill;
            memset(&d_fill, 0x55, sizeof d_fill);
            cpu_quantize_act(x + 32 * b0, 32 * (uint32_t)nr, q + 32 * b0, d + b0, ls + 8 * b0);
            for (int b = b0; b < b0 + nr; b++) {
                ASSERT_MSG(memcmp(&d[b], &d_ref[b], sizeof d[b]) == 0 || (isnan(d[b]) && isnan(d_ref[b])),
                           "%s block %d: d %.9g, definition %.9g", cpu_isa_name((cpu_isa_t)isa), b,
                           (double)d[b], (double)d_ref[b]);
                for (int k = 0; k < 32; k++)
                    ASSERT_MSG(q[32 * b + k] == q_ref[32 * b + k],
                               "%s block %d element %d: x %.9g -> %d, definition %d",
                               cpu_isa_name((cpu_isa_t)isa), b, k, (double)x[32 * b + k], q[32 * b + k],
                               q_ref[32 * b + k]);
                ASSERT_MSG(memcmp(ls + 8 * b, ls_ref + 8 * b, 8 * sizeof *ls) == 0, "%s block %d: lane sums",
                           cpu_isa_name((cpu_isa_t)isa), b);
            }
            for (int b = 0; b < NB; b++) { /* nothing outside the run written */
                if (b >= b0 && b < b0 + nr)
                    continue;
                int untouched = memcmp(&d[b], &d_fill, sizeof d_fill) == 0;
                for (int k = 0; k < 32; k++)
                    untouched &= q[32 * b + k] == 0x55;
                for (int l = 0; l < 8; l++)
                    untouched &= memcmp(&ls[8 * b + l], &d_fill, sizeof d_fill) == 0;
                ASSERT_MSG(untouched, "%s: block %d outside the run %d..%d written", cpu_isa_name((cpu_isa_t)isa),
                           b, b0, b0 + nr - 1);
            }
        }
    }
    ASSERT_EQ_INT(cpu_matmul_configure(cpu_isa_best(), CPU_PREC_EXACT), 0);
}

TEST(isa_settings)
{
    cpu_isa_t isa;
    ASSERT_EQ_INT(cpu_isa_parse("auto", &isa), 0);
    ASSERT(isa == cpu_isa_best());
    ASSERT_EQ_INT(cpu_isa_parse("portable", &isa), 0);
    ASSERT(isa == CPU_ISA_PORTABLE);
    ASSERT_EQ_INT(cpu_isa_parse("avx512", &isa), 0);
    ASSERT(isa == CPU_ISA_AVX512);
    ASSERT_EQ_INT(cpu_isa_parse("amx", &isa), 0);
    ASSERT(isa == CPU_ISA_AMX);
    ASSERT_EQ_STR(cpu_isa_name(CPU_ISA_AMX), "amx");
    ASSERT_EQ_INT(cpu_isa_parse("sse9", &isa), ERR_INVALID);
    ASSERT_EQ_STR(cpu_isa_name(CPU_ISA_AVXVNNI), "avxvnni");
    ASSERT_EQ_INT(cpu_matmul_configure((cpu_isa_t)7, CPU_PREC_EXACT), ERR_INVALID);
    if (!cpu_isa_usable(CPU_ISA_AVX512))
        ASSERT_EQ_INT(cpu_matmul_configure(CPU_ISA_AVX512, CPU_PREC_EXACT), ERR_UNSUPPORTED);
    if (!cpu_isa_usable(CPU_ISA_AMX))
        ASSERT_EQ_INT(cpu_matmul_configure(CPU_ISA_AMX, CPU_PREC_EXACT), ERR_UNSUPPORTED);
    ASSERT_EQ_INT(cpu_matmul_configure(CPU_ISA_PORTABLE, CPU_PREC_FAST), 0);
    ASSERT_EQ_STR(cpu_matmul_path(), "portable");

    /* The settings' text, as the CPU backend passes it. */
    char err[200] = "";
    ASSERT_EQ_INT(cpu_matmul_setup(NULL, NULL, err, sizeof err), 0); /* leaves them alone */
    ASSERT(cpu_matmul_isa() == CPU_ISA_PORTABLE && cpu_matmul_precision() == CPU_PREC_FAST);
    ASSERT_EQ_INT(cpu_matmul_setup("sse9", "exact", err, sizeof err), ERR_INVALID);
    ASSERT(strstr(err, "cpu-isa") != NULL);
    ASSERT_EQ_INT(cpu_matmul_setup("auto", "approximate", err, sizeof err), ERR_INVALID);
    ASSERT(strstr(err, "cpu-precision") != NULL);
    ASSERT(cpu_matmul_isa() == CPU_ISA_PORTABLE); /* nothing changed on an error */
    ASSERT_EQ_INT(cpu_matmul_setup("auto", NULL, err, sizeof err), 0);
    ASSERT(cpu_matmul_isa() == cpu_isa_best() && cpu_matmul_precision() == CPU_PREC_EXACT);
    ASSERT_EQ_INT(cpu_matmul_setup("portable", "fast", err, sizeof err), 0);
    ASSERT(cpu_matmul_isa() == CPU_ISA_PORTABLE && cpu_matmul_precision() == CPU_PREC_FAST);
    ASSERT_EQ_INT(cpu_matmul_configure(cpu_isa_best(), CPU_PREC_EXACT), 0);
}

/*
 * cpu_matmul_multi: matrices of different types and heights sharing x
 * (one type without `fast` kernels, one matrix with no rows), on 1, 2 and
 * 3 threads, in both precisions; every y equals, bit for bit, that
 * matrix's single-token calls on the calling thread.
 */
TEST(matmul_multi_matches_single)
{
    enum { NM = 4, NT = 5, N_IN = 576 };
    static const qtype_t types[NM] = { QT_Q4_1, QT_Q8_0, QT_F16, QT_Q4_0 };
    static const uint32_t n_out[NM] = { 37, 0, 19, 9 };
    rng_state = 7000;
    uint8_t *w[NM];
    float *y[NM], *y1[NM];
    for (int i = 0; i < NM; i++) {
        w[i] = make_weights(types[i], n_out[i] ? n_out[i] : 1, N_IN);
        y[i] = malloc((size_t)NT * (n_out[i] + 1) * sizeof(float));
        y1[i] = malloc((size_t)NT * (n_out[i] + 1) * sizeof(float));
        ASSERT(y[i] && y1[i]);
    }
    float *x = make_x(NT * N_IN);
    pool_t *pools[3] = { NULL, NULL, NULL };
    for (int i = 0; i < 3; i++)
        ASSERT_EQ_INT(pool_create(&pools[i], i + 1), 0);
    for (int prec = CPU_PREC_EXACT; prec <= CPU_PREC_FAST; prec++) {
        ASSERT_EQ_INT(cpu_matmul_configure(cpu_isa_best(), (cpu_prec_t)prec), 0);
        for (int i = 0; i < NM; i++)
            for (uint32_t t = 0; t < NT; t++)
                ASSERT_EQ_INT(cpu_matmul(NULL, types[i], w[i], n_out[i], N_IN, x + (size_t)t * N_IN, 1,
                                         y1[i] + (size_t)t * n_out[i]), 0);
        cpu_mm_out_t m[NM];
        for (int i = 0; i < NM; i++)
            m[i] = (cpu_mm_out_t){ types[i], w[i], n_out[i], y[i], NULL };
        for (uint32_t nt = 1; nt <= NT; nt += 2) {
            for (int th = 0; th < 3; th++) {
                ASSERT_EQ_INT(cpu_matmul_multi(pools[th], m, NM, N_IN, x, nt), 0);
                for (int i = 0; i < NM; i++)
                    ASSERT_MSG(memcmp(y[i], y1[i], (size_t)nt * n_out[i] * sizeof(float)) == 0,
                               "%s: matrix %d (%s) of a %u-token call on %d threads differs from "
                               "single-token calls", prec == CPU_PREC_FAST ? "fast" : "exact", i,
                               qtype_info(types[i])->name, nt, th + 1);
            }
        }
        /* a bad matrix fails the call before anything is written */
        y[0][0] = 12345.0f;
        m[2].w = NULL;
        ASSERT_EQ_INT(cpu_matmul_multi(pools[1], m, NM, N_IN, x, 1), ERR_INVALID);
        ASSERT(y[0][0] == 12345.0f);
    }
    ASSERT_EQ_INT(cpu_matmul_multi(NULL, NULL, 1, N_IN, x, 1), ERR_INVALID);
    cpu_mm_out_t one = { QT_Q4_1, w[0], n_out[0], y[0], NULL };
    ASSERT_EQ_INT(cpu_matmul_multi(NULL, &one, 0, N_IN, x, 1), ERR_INVALID);
    ASSERT_EQ_INT(cpu_matmul_multi(NULL, &one, CPU_MM_MULTI_MAX + 1, N_IN, x, 1), ERR_INVALID);
    ASSERT_EQ_INT(cpu_matmul_configure(cpu_isa_best(), CPU_PREC_EXACT), 0);
    for (int i = 0; i < 3; i++)
        pool_destroy(pools[i]);
    for (int i = 0; i < NM; i++) {
        free(w[i]);
        free(y[i]);
        free(y1[i]);
    }
    free(x);
}

TEST(matmul_rejects_bad_arguments)
{
    float x[64] = { 0 }, y[4];
    uint8_t w[4 * 40] = { 0 };
    ASSERT_EQ_INT(cpu_matmul(NULL, (qtype_t)99, w, 1, 32, x, 1, y), ERR_UNSUPPORTED);
    ASSERT_EQ_INT(cpu_matmul(NULL, QT_Q8_0, w, 1, 33, x, 1, y), ERR_INVALID);
    ASSERT_EQ_INT(cpu_matmul(NULL, QT_Q8_0, NULL, 1, 32, x, 1, y), ERR_INVALID);
    ASSERT_EQ_INT(cpu_matmul(NULL, QT_Q8_0, w, 1, 32, x, 0, y), 0);
    y[0] = y[1] = 1.0f;
    ASSERT_EQ_INT(cpu_matmul(NULL, QT_Q8_0, w, 2, 0, x, 1, y), 0); /* empty rows */
    ASSERT(y[0] == 0.0f && y[1] == 0.0f);
    ASSERT_EQ_INT(cpu_embed_row(QT_Q4_K, w, 32, 0, y), ERR_INVALID);
}

TEST(embed_row_matches_dequant)
{
    rng_state = 5;
    static const qtype_t types[] = { QT_F32, QT_F16, QT_BF16, QT_Q4_0, QT_Q4_1,
                                     QT_Q8_0, QT_Q4_K, QT_Q5_K, QT_Q6_K };
    for (size_t k = 0; k < sizeof types / sizeof types[0]; k++) {
        uint32_t n_in = 512, n_rows = 5;
        uint8_t *w = make_weights(types[k], n_rows, n_in);
        float *all = malloc((size_t)n_rows * n_in * sizeof *all);
        float row[512];
        ASSERT(all != NULL);
        ASSERT_EQ_INT(quant_dequant(types[k], w, all, (size_t)n_rows * n_in), 0);
        for (uint32_t r = 0; r < n_rows; r++) {
            ASSERT_EQ_INT(cpu_embed_row(types[k], w, n_in, r, row), 0);
            ASSERT(memcmp(row, all + (size_t)r * n_in, sizeof row) == 0);
        }
        free(w);
        free(all);
    }
}

/*
 * pool_scratch: NULL without a pool, 64-byte aligned, kept while big
 * enough, replaced when more is asked; a fast product inside the reserved
 * size uses the reserved buffer (it does not grow: no allocation), and a
 * larger one grows it and still gives the bits of a pool-less call.
 */
TEST(pool_scratch_is_reserved_and_reused)
{
    ASSERT(pool_scratch(NULL, 16) == NULL);
    pool_t *p = NULL;
    ASSERT_EQ_INT(pool_create(&p, 2), 0);
    void *a = pool_scratch(p, 100);
    ASSERT(a != NULL && ((uintptr_t)a & 63) == 0);
    ASSERT(pool_scratch(p, 64) == a);
    ASSERT(pool_scratch(p, 0) == a);

    enum { N_IN = 256, N_OUT = 24, NT = 5 };
    rng_state = 4242;
    uint8_t *w = make_weights(QT_Q4_0, N_OUT, N_IN);
    float *x = make_x(NT * N_IN), y[NT * N_OUT], y0[NT * N_OUT];
    ASSERT_EQ_INT(cpu_matmul_configure(cpu_isa_best(), CPU_PREC_FAST), 0);
    void *r = pool_scratch(p, cpu_matmul_scratch_bytes(N_IN, NT));
    ASSERT(r != NULL);
    ASSERT_EQ_INT(cpu_matmul(p, QT_Q4_0, w, N_OUT, N_IN, x, NT, y), 0);
    ASSERT(pool_scratch(p, 0) == r); /* within the reservation: the same buffer */
    ASSERT_EQ_INT(cpu_matmul(NULL, QT_Q4_0, w, N_OUT, N_IN, x, NT, y0), 0);
    ASSERT(memcmp(y, y0, sizeof y) == 0);

    pool_t *q = NULL; /* nothing reserved: the call grows the scratch itself */
    ASSERT_EQ_INT(pool_create(&q, 2), 0);
    ASSERT_EQ_INT(cpu_matmul(q, QT_Q4_0, w, N_OUT, N_IN, x, NT, y), 0);
    ASSERT(pool_scratch(q, 0) != NULL);
    ASSERT(memcmp(y, y0, sizeof y) == 0);
    ASSERT_EQ_INT(cpu_matmul_configure(cpu_isa_best(), CPU_PREC_EXACT), 0);
    pool_destroy(q);
    pool_destroy(p);
    free(w);
    free(x);
}

/*
 * cpu_matmul_scratch_bytes at every level this CPU runs: 2.375 bytes per
 * element, and 3.375 where the AVX512 and AMX levels' tiles want a second
 * copy laid out in passes (two tokens up).  Each size is a multiple of 64
 * here, so the reservation is exactly what is written and AddressSanitizer
 * sees a write past it; the pool-less call allocates the same size.
 */
TEST(fast_scratch_fits_each_level)
{
    enum { N_IN = 256, N_OUT = 24, NT = 4 };
    rng_state = 777;
    uint8_t *w = make_weights(QT_Q4_K, N_OUT, N_IN);
    float *x = make_x(NT * N_IN), y[NT * N_OUT], y0[NT * N_OUT];
    const size_t one = NT * N_IN * 11 / 8 + NT * N_IN; /* 44 bytes a block of 32, and the quants */
    int seen = 0;
    for (int lv = CPU_ISA_PORTABLE; lv <= CPU_ISA_AMX; lv++) {
        if (!cpu_isa_usable((cpu_isa_t)lv))
            continue;
        ASSERT_EQ_INT(cpu_matmul_configure((cpu_isa_t)lv, CPU_PREC_FAST), 0);
        size_t bytes = cpu_matmul_scratch_bytes(N_IN, NT);
        ASSERT_EQ_INT(bytes, lv >= CPU_ISA_AVX512 ? one + NT * N_IN : one);
        ASSERT_EQ_INT(cpu_matmul_scratch_bytes(N_IN, 1), one / NT);
        ASSERT_EQ_INT(bytes % 64, 0);
        pool_t *p = NULL;
        ASSERT_EQ_INT(pool_create(&p, 2), 0);
        void *r = pool_scratch(p, bytes);
        ASSERT(r != NULL);
        ASSERT_EQ_INT(cpu_matmul(p, QT_Q4_K, w, N_OUT, N_IN, x, NT, y), 0);
        ASSERT(pool_scratch(p, 0) == r);
        ASSERT_EQ_INT(cpu_matmul(NULL, QT_Q4_K, w, N_OUT, N_IN, x, NT, y0), 0);
        ASSERT(memcmp(y, y0, sizeof y) == 0);
        pool_destroy(p);
        seen++;
    }
    ASSERT(seen >= 1);
    ASSERT_EQ_INT(cpu_matmul_configure(cpu_isa_best(), CPU_PREC_EXACT), 0);
    free(w);
    free(x);
}

/*
 * F32 weights need not start on a float: a safetensors file's data begins
 * wherever its header ends, and a GGUF file may name an alignment of 1 or
 * 2.  At every level such a matrix gives the bits of the same matrix on a
 * float (UndefinedBehaviorSanitizer's alignment check fails any read of
 * it as floats in place).  n_in 100 takes the AVX2 kernels at every level
 * (a ragged tail); 128 reaches the AVX512 level's own tile fill from nine
 * tokens.  F32 is not quantised under `fast`: one precision covers it.
 */
TEST(matmul_f32_unaligned)
{
    enum { N_OUT = 19, NT = 17, MAX_IN = 128 };
    static const uint32_t n_ins[] = { 100, MAX_IN }, toks[] = { 1, 3, 9, NT };
    rng_state = 9191;
    uint8_t *w = make_weights(QT_F32, N_OUT, MAX_IN);
    float *x = make_x(NT * MAX_IN), *y = malloc(sizeof(float) * NT * N_OUT),
          *y0 = malloc(sizeof(float) * NT * N_OUT);
    uint8_t *shifted = malloc((size_t)N_OUT * MAX_IN * 4 + 4);
    ASSERT(y != NULL && y0 != NULL && shifted != NULL);
    for (int lv = CPU_ISA_PORTABLE; lv <= CPU_ISA_AMX; lv++) {
        if (!cpu_isa_usable((cpu_isa_t)lv))
            continue;
        ASSERT_EQ_INT(cpu_matmul_configure((cpu_isa_t)lv, CPU_PREC_EXACT), 0);
        for (size_t m = 0; m < sizeof n_ins / sizeof n_ins[0]; m++) {
            for (uint32_t off = 1; off < 4; off++) {
                memcpy(shifted + off, w, (size_t)N_OUT * n_ins[m] * 4);
                for (size_t i = 0; i < sizeof toks / sizeof toks[0]; i++) {
                    ASSERT_EQ_INT(cpu_matmul(NULL, QT_F32, w, N_OUT, n_ins[m], x, toks[i], y0), 0);
                    ASSERT_EQ_INT(cpu_matmul(NULL, QT_F32, shifted + off, N_OUT, n_ins[m], x, toks[i], y), 0);
                    ASSERT(memcmp(y, y0, sizeof(float) * toks[i] * N_OUT) == 0);
                }
            }
        }
    }
    ASSERT_EQ_INT(cpu_matmul_configure(cpu_isa_best(), CPU_PREC_EXACT), 0);
    free(shifted);
    free(y0);
    free(y);
    free(w);
    free(x);
}

TEST_LIST(T(pool_runs_every_task_once), T(pool_many_runs), T(pool_rejects_bad_counts), T(pool_shares_one_core), T(pool_scratch_is_reserved_and_reused), T(fast_scratch_fits_each_level), T(matmul_f32_unaligned),
          T(matmul_f32_avx2), T(matmul_f32_portable), T(matmul_f16_avx2),
          T(matmul_f16_portable), T(matmul_bf16_avx2), T(matmul_bf16_portable),
          T(matmul_q4_0_avx2), T(matmul_q4_0_portable), T(matmul_q4_1_avx2),
          T(matmul_q4_1_portable), T(matmul_q8_0_avx2), T(matmul_q8_0_portable),
          T(matmul_q4_k_avx2), T(matmul_q4_k_portable), T(matmul_q5_k_avx2),
          T(matmul_q5_k_portable), T(matmul_q6_k_avx2), T(matmul_q6_k_portable),
          T(matmul_long_batch), T(matmul_multi_matches_single), T(matmul_rejects_bad_arguments),
          T(exact_token_blocks_avx2), T(exact_token_blocks_avx512),
          T(fast_q4_0_portable), T(fast_q4_0_avx2), T(fast_q4_0_avxvnni), T(fast_q4_0_avx512), T(fast_q4_0_amx),
          T(fast_q4_1_portable), T(fast_q4_1_avx2), T(fast_q4_1_avxvnni), T(fast_q4_1_avx512), T(fast_q4_1_amx),
          T(fast_q8_0_portable), T(fast_q8_0_avx2), T(fast_q8_0_avxvnni), T(fast_q8_0_avx512), T(fast_q8_0_amx),
          T(fast_q4_k_portable), T(fast_q4_k_avx2), T(fast_q4_k_avxvnni), T(fast_q4_k_avx512), T(fast_q4_k_amx),
          T(fast_q5_k_portable), T(fast_q5_k_avx2), T(fast_q5_k_avxvnni), T(fast_q5_k_avx512), T(fast_q5_k_amx),
          T(fast_q6_k_portable), T(fast_q6_k_avx2), T(fast_q6_k_avxvnni), T(fast_q6_k_avx512), T(fast_q6_k_amx),
          T(fast_k_documented_order),
          T(fast_extremes_q4_0), T(fast_extremes_q4_1), T(fast_extremes_q8_0), T(fast_extremes_q4_k),
          T(fast_extremes_q5_k), T(fast_extremes_q6_k),
          T(fast_packed_q4_0_avx2), T(fast_packed_q4_0_avxvnni), T(fast_packed_q4_0_avx512),
          T(fast_packed_q4_1_avx2), T(fast_packed_q4_1_avxvnni), T(fast_packed_q4_1_avx512),
          T(fast_packed_q8_0_avx2), T(fast_packed_q8_0_avxvnni), T(fast_packed_q8_0_avx512),
          T(fast_packed_q4_k_avx2), T(fast_packed_q4_k_avxvnni), T(fast_packed_q4_k_avx512),
          T(fast_packed_q5_k_avx2), T(fast_packed_q5_k_avxvnni), T(fast_packed_q5_k_avx512),
          T(fast_packed_q6_k_avx2), T(fast_packed_q6_k_avxvnni), T(fast_packed_q6_k_avx512),
          T(exact_invariance_portable), T(exact_invariance_avx2), T(exact_invariance_avx512), T(exact_invariance_amx), T(exact_avx512_is_avx2),
          T(fast_nonfinite_activations), T(fast_quantize_rounding), T(fast_quantize_matches_definition),
          T(isa_settings),
          T(embed_row_matches_dequant))
