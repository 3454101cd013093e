/*
 * matmul.c - cpu_matmul's driver (argument checks, the split of output
 * rows into pool tasks, the choice of code path) and the embedding-row
 * lookup.  The `exact` kernels are in matmul_portable.c (portable C),
 * matmul_avx2.c, matmul_kq_avx2.c and matmul_avx512.c (x86-64), the
 * `fast` ones in matmul_q8.c, matmul_q8_x86.c and matmul_amx.c; the
 * tiling the paths share is described in matmul_kern.h.  Calls go one
 * way: driver -> a level's kernels -> the lower levels' (portable last).
 */
#include "matmul.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/err.h"
#include "matmul_kern.h"

/* -------------------------------------------------------------- driver */

static int isa_set;          /* 0: cpu_isa_best() */
static cpu_isa_t isa_now;
static cpu_prec_t prec_now;

int cpu_isa_usable(cpu_isa_t isa)
{
    return (unsigned)isa <= CPU_ISA_AMX && (cpu_mm_x86_levels() >> isa & 1);
}

cpu_isa_t cpu_isa_best(void)
{
    int lv = cpu_mm_x86_levels();
    int best = 0;
    while (lv >> (best + 1))
        best++;
    return (cpu_isa_t)best;
}

static const char *const isa_names[] = { "portable", "avx2", "avxvnni", "avx512", "amx" };

const char *cpu_isa_name(cpu_isa_t isa)
{
    return (unsigned)isa <= CPU_ISA_AMX ? isa_names[isa] : "?";
}

int cpu_isa_parse(const char *s, cpu_isa_t *out)
{
    if (s == NULL || out == NULL)
        return ERR_INVALID;
    if (strcmp(s, "auto") == 0) {
        *out = cpu_isa_best();
        return 0;
    }
    for (int i = 0; i <= CPU_ISA_AMX; i++) {
        if (strcmp(s, isa_names[i]) == 0) {
            *out = (cpu_isa_t)i;
            return 0;
        }
    }
    return ERR_INVALID;
}

int cpu_matmul_configure(cpu_isa_t isa, cpu_prec_t prec)
{
    if ((unsigned)isa > CPU_ISA_AMX || (unsigned)prec > CPU_PREC_FAST)
        return ERR_INVALID;
    if (!cpu_isa_usable(isa))
        return ERR_UNSUPPORTED;
    isa_now = isa;
    isa_set = 1;
    prec_now = prec;
    return 0;
}

int cpu_matmul_setup(const char *isa, const char *prec, char *err, size_t errlen)
{
    cpu_isa_t level = cpu_isa_best();
    cpu_prec_t p = CPU_PREC_EXACT;
    if (isa == NULL && prec == NULL)
        return 0;
    if (isa != NULL && cpu_isa_parse(isa, &level) != 0)
        return err_set(err, errlen, ERR_INVALID,
                       "cpu-isa: \"%s\" is not auto, amx, avx512, avxvnni, avx2 or portable", isa);
    if (prec != NULL && strcmp(prec, "fast") == 0)
        p = CPU_PREC_FAST;
    else if (prec != NULL && strcmp(prec, "exact") != 0)
        return err_set(err, errlen, ERR_INVALID, "cpu-precision: \"%s\" is not exact or fast", prec);
    if (!cpu_isa_usable(level))
        return err_set(err, errlen, ERR_UNSUPPORTED,
                       "cpu-isa: this CPU (or build) cannot run the %s kernels; the best here is %s",
                       cpu_isa_name(level), cpu_isa_name(cpu_isa_best()));
    return cpu_matmul_configure(level, p);
}

cpu_isa_t cpu_matmul_isa(void)
{
    return isa_set ? isa_now : cpu_isa_best();
}

cpu_prec_t cpu_matmul_precision(void)
{
    return prec_now;
}

void cpu_matmul_force_portable(int on)
{
    (void)cpu_matmul_configure(on ? CPU_ISA_PORTABLE : cpu_isa_best(), prec_now);
}

const char *cpu_matmul_path(void)
{
    return cpu_matmul_isa() >= CPU_ISA_AVX2 ? "avx2" : "portable";
}

/*
 * One cpu_matmul_multi call: its matrices' jobs, and the pool tasks that
 * cover them, matrix 0's first.  Task k of matrix i is rows
 * [k * rows_per_task[i], ...) of that matrix, all tokens.
 */
typedef struct {
    mm_job_t  job[CPU_MM_MULTI_MAX];
    void    (*rows[CPU_MM_MULTI_MAX])(const mm_job_t *, uint32_t, uint32_t);
    uint32_t  rows_per_task[CPU_MM_MULTI_MAX];
    uint32_t  first_task[CPU_MM_MULTI_MAX + 1]; /* [n_mat] is the task count */
    uint32_t  n_mat;
} mm_run_t;

static void matmul_task(void *ctx, uint32_t task, uint32_t thread)
{
    (void)thread;
    const mm_run_t *run = ctx;
    uint32_t i = 0;
    while (task >= run->first_task[i + 1])
        i++;
    const mm_job_t *job = &run->job[i];
    uint32_t o0 = (task - run->first_task[i]) * run->rows_per_task[i];
    uint32_t left = job->n_out - o0;
    run->rows[i](job, o0, left < run->rows_per_task[i] ? left : run->rows_per_task[i]);
}

/*
 * Rows per task: whole MM_ROWS groups.  With a few tokens the work is a
 * stream of weights: a task takes about MM_TASK_BYTES of them, one long
 * sequential read that the hardware prefetchers can follow, but there are
 * at least MM_TASKS tasks per thread where the matrix has that many
 * groups, so that a slow thread does not hold the others up.  On one
 * thread the tasks run in order, so the stream runs on across them; on
 * several, a thread's next task lies past another thread's, and every
 * task start breaks its stream (and its kernel's prefetches ran into the
 * other thread's rows), so tasks are longer there: MM_TASK_BYTES_MT (a
 * 1B model's batch-1 decode on two threads of a Xeon: 64 KiB 33-34
 * tokens/s, 256 KiB 38-41, 1 MiB 43-44; one thread: no gain, and 7% less
 * at four tokens of the default model).  MM_TASKS is two, not four, for
 * the same reason: a task's first rows come cold, and the default
 * model's matrices are a few hundred KiB, so four tasks a thread cut
 * them short (batch 1 on two threads: 264-265 tokens/s with four, 297-312
 * with two; no worse with one core busy).
 *
 * With many tokens the work is arithmetic and single groups balance best
 * (the portable kernels, the AVX2-and-up float tiles below MM_MANY_TOKS,
 * the AMX kernel's prefill), except for the `fast` kernels (int8
 * activations) at batched decode sizes (8 to MM_MANY_TOKS - 1 tokens),
 * where a group is little work beside a task's fixed cost (the pool's
 * claim and count, each a locked instruction that waits for the task's
 * stores; the AMX kernel's tile configuration) and a task's start is as
 * cold as above (the AMX kernel prefetches each panel's successor in
 * address order, which only the same task is sure to read; the
 * activations the other thread quantised come across too).  Those take
 * the streaming rule's tasks, at most MM_TASK_BYTES_MT even on one
 * thread (batch 8 and 16 on two threads 4-39% faster across the levels,
 * one thread within noise to 16% faster; docs/PERFORMANCE.md, "Long
 * tasks for streamed and batched decode").  Below the AMX level they
 * take long tasks at prefill sizes (MM_MANY_TOKS and more) too, there
 * sized by balance alone, MM_TASKS a thread with no cap in bytes (the
 * work is arithmetic, not a stream; the cap left a 1B model's ffn_down
 * 6.4 tasks for two threads): a task goes over groups of about
 * mm_group_bytes() of rows once per pass of tokens (matmul_q8_x86.h), so
 * that the pass's offset terms are gathered once per group, not once per
 * MM_ROWS rows (prefill 128 and 512 15-18% faster at the AVX512 level,
 * 4-12% at AVX2 and AVX-VNNI).  So do `exact`'s float tiles, whose task
 * goes over its groups once per block of tokens that stays in L2
 * (matmul_kern.h's mm_tok_block): a single group read all of the
 * activations from memory (1B shapes at 512 tokens 16-49% faster on the
 * 512-bit tiles).  The AMX kernel's prefill keeps single groups: long
 * tasks gained it nothing clear.
 */
#define MM_TASK_BYTES    (64u << 10)
#define MM_TASK_BYTES_MT (1024u << 10)
#define MM_TASKS         2
#define MM_MANY_TOKS     64

static uint32_t task_rows(uint32_t n_out, size_t row_bytes, uint32_t n_tok, uint32_t n_threads,
                          int fast, cpu_isa_t isa)
{
    uint32_t groups = n_out / MM_ROWS + (n_out % MM_ROWS != 0);
    /* `fast` from 8 tokens (but AMX prefill), the float tiles from MM_MANY_TOKS */
    int long_tasks = fast ? n_tok >= 8 && (n_tok < MM_MANY_TOKS || isa != CPU_ISA_AMX)
                          : n_tok >= MM_MANY_TOKS && isa >= CPU_ISA_AVX2;
    if (n_tok >= 8 && !long_tasks)
        return MM_ROWS;
    size_t per = groups / (MM_TASKS * n_threads);
    if (n_tok < MM_MANY_TOKS) { /* a stream: capped in bytes too (at many tokens, arithmetic) */
        size_t cap = n_threads > 1 || long_tasks ? MM_TASK_BYTES_MT : MM_TASK_BYTES;
        size_t by_bytes = cap / ((size_t)MM_ROWS * row_bytes);
        per = by_bytes < per ? by_bytes : per;
    }
    return (uint32_t)(per > 1 ? per : 1) * MM_ROWS;
}

static size_t group_bytes_v;
static pthread_once_t group_once = PTHREAD_ONCE_INIT;

static void group_init(void)
{
    long l2 = -1;
#ifdef _SC_LEVEL2_CACHE_SIZE
    l2 = sysconf(_SC_LEVEL2_CACHE_SIZE);
#endif
    size_t q = (l2 > 0 ? (size_t)l2 : (size_t)1 << 20) / 4;
    group_bytes_v = q < (64u << 10) ? 64u << 10 : q > (256u << 10) ? 256u << 10 : q;
}

size_t mm_group_bytes(void)
{
    (void)pthread_once(&group_once, group_init);
    return group_bytes_v;
}

/* ------------------------------------------------- fast activations */

static int fast_type(qtype_t t)
{
    return t == QT_Q4_0 || t == QT_Q4_1 || t == QT_Q8_0 || t == QT_Q4_K || t == QT_Q5_K
           || t == QT_Q6_K;
}

/*
 * The quantisation's pool tasks: each takes a run of blocks of the
 * [n_tok, nb] array (tokens' blocks are contiguous in x and in every
 * output, so a run may cross tokens).  cpu_quantize_act treats every
 * block alone, so any split gives the same bytes.  There are about
 * MM_Q_TASKS runs per thread, of at least MM_Q_MIN_BLOCKS blocks: enough
 * to balance, and few, since each task's claim and count cost a trip of
 * a cache line between cores (a batch of 16 tokens as 16 one-token tasks
 * spent more in those trips than in the work).
 */
#define MM_Q_MIN_BLOCKS 8
#define MM_Q_TASKS      4

typedef struct {
    const mm_job_t *j;      /* x, n_in, n_tok and the buffers to fill */
    size_t          total;  /* blocks: n_tok * nb */
    size_t          blocks; /* blocks per task (the last may have fewer) */
} quant_run_t;

static void quantize_task(void *ctx, uint32_t task, uint32_t thread)
{
    (void)thread;
    const quant_run_t *q = ctx;
    const mm_job_t *j = q->j;
    size_t first = (size_t)task * q->blocks;
    if (first >= q->total)
        return;
    size_t n = q->total - first < q->blocks ? q->total - first : q->blocks;
    float *xd = (float *)j->xd + first, *xls = (float *)j->xls + first * 8;
    cpu_quantize_act(j->x + first * QK_SMALL, (uint32_t)(n * QK_SMALL), (int8_t *)j->xq + first * QK_SMALL,
                     xd, xls);
    /* the same blocks into xqp, pass by pass (mm_pass_at), where it is
     * not xq itself */
    size_t nbt = j->n_in / QK_SMALL;
    for (size_t i = first; j->xqp != j->xq && i < first + n; i++) {
        size_t t = i / nbt, b = i % nbt, p0 = t - t % MM_PASS_TOKS;
        size_t np = j->n_tok - p0 < MM_PASS_TOKS ? j->n_tok - p0 : MM_PASS_TOKS;
        memcpy((int8_t *)j->xqp + p0 * j->n_in + (b * np + t - p0) * QK_SMALL, j->xq + i * QK_SMALL,
               QK_SMALL);
    }
    /* S: the lane sums' sum, an integer below 2^12, exact in any order;
     * formed once here for every kernel's offset terms */
    float *xs = (float *)j->xs + first, *xo = (float *)j->xo + first;
    for (size_t b = 0; b < n; b++) {
        const float *l = xls + 8 * b;
        xs[b] = ((l[0] + l[1]) + (l[2] + l[3])) + ((l[4] + l[5]) + (l[6] + l[7]));
        xo[b] = xd[b] * xs[b];
    }
}

/*
 * Whether a `fast` call of n_tok tokens at level isa lays its quants out
 * a second time, in passes (xqp): only the AVX512 level's tiles (the AMX
 * level's below sixteen tokens) read passes, and one token's pass is xq's
 * own layout.
 */
static int acts_in_passes(cpu_isa_t isa, uint32_t n_tok)
{
    return isa >= CPU_ISA_AVX512 && n_tok > 1;
}

static size_t act_bytes(uint32_t n_in, uint32_t n_tok, int passes)
{
    size_t nb = (size_t)n_tok * (n_in / QK_SMALL);
    return nb * 44 + (passes ? 2 : 1) * (size_t)n_tok * n_in;
}

size_t cpu_matmul_scratch_bytes(uint32_t n_in, uint32_t n_tok)
{
    return act_bytes(n_in, n_tok, acts_in_passes(cpu_matmul_isa(), n_tok));
}

/*
 * Quantise every token's activations into the pool's scratch (or, with
 * no pool, a fresh allocation in *owned, which the caller frees): [n_tok,
 * nb] scales, then [n_tok, nb, 8] lane sums, then [n_tok, nb] sums S,
 * then [n_tok, nb] offset terms xd * S, then [n_tok, n_in] quants, then
 * (acts_in_passes) the same quants in passes (mm_pass_at).  The caller
 * has checked that n_tok * n_in * 4 bytes fit in a size_t; this takes
 * 3.375 bytes per element with passes, 2.375 without.
 */
static int quantize_acts(pool_t *p, mm_job_t *j, cpu_isa_t isa, void **owned)
{
    size_t nb = (size_t)j->n_tok * (j->n_in / QK_SMALL);
    int passes = acts_in_passes(isa, j->n_tok);
    size_t bytes = act_bytes(j->n_in, j->n_tok, passes);
    *owned = NULL;
    uint8_t *buf = p != NULL ? pool_scratch(p, bytes) : (uint8_t *)(*owned = malloc(bytes));
    if (buf == NULL)
        return ERR_NOMEM;
    j->xd = (const float *)(void *)buf;
    j->xls = (const float *)(void *)(buf + nb * 4);
    j->xs = (const float *)(void *)(buf + nb * 36);
    j->xo = (const float *)(void *)(buf + nb * 40);
    j->xq = (const int8_t *)(buf + nb * 44);
    j->xqp = passes ? j->xq + (size_t)j->n_tok * j->n_in : j->xq; /* else nothing copied */
    size_t tasks = (size_t)MM_Q_TASKS * pool_threads(p), per = (nb + tasks - 1) / tasks;
    per = per > MM_Q_MIN_BLOCKS ? per : MM_Q_MIN_BLOCKS;
    /* cpu_quantize_act's n is 32-bit; so capped, the count of tasks still
     * is (nb < 2^32 * 2^27 blocks) */
    per = per < UINT32_MAX / QK_SMALL ? per : UINT32_MAX / QK_SMALL;
    quant_run_t q = { j, nb, per };
    pool_run(p, quantize_task, &q, (uint32_t)((nb + per - 1) / per));
    return 0;
}

/* Check wt and n_in and compute the bytes of one row. */
static int row_layout(qtype_t wt, uint32_t n_in, const qtype_info_t **ti_out, size_t *row_bytes)
{
    const qtype_info_t *ti = qtype_info((uint32_t)wt);
    if (ti == NULL)
        return ERR_UNSUPPORTED;
    if (n_in % ti->block_elems != 0)
        return ERR_INVALID;
    uint64_t rb = (uint64_t)(n_in / ti->block_elems) * ti->block_bytes; /* < 2^40 */
    if (rb > SIZE_MAX)
        return ERR_RANGE;
    *ti_out = ti;
    *row_bytes = (size_t)rb;
    return 0;
}

/*
 * Check one matrix of a call and fill its job (activations not yet
 * quantised).  Returns 1 when it has work, 0 when it has none (n_out or
 * n_tok 0), or a negative code.
 */
static int job_init(mm_job_t *job, const cpu_mm_out_t *m, uint32_t n_in, const float *x, uint32_t n_tok)
{
    const qtype_info_t *ti;
    size_t row_bytes;
    int rc = row_layout(m->type, n_in, &ti, &row_bytes);
    if (rc != 0)
        return rc;
    if (m->n_out == 0 || n_tok == 0)
        return 0;
    if (m->w == NULL || x == NULL || m->y == NULL)
        return ERR_INVALID;
    /* Every offset the kernels form is below one of these sizes. */
    size_t w_bytes, xy_elems, xy_bytes;
    if (__builtin_mul_overflow(row_bytes, (size_t)m->n_out, &w_bytes)
        || __builtin_mul_overflow((size_t)n_tok, (size_t)(n_in > m->n_out ? n_in : m->n_out), &xy_elems)
        || __builtin_mul_overflow(xy_elems, sizeof(float), &xy_bytes))
        return ERR_RANGE;
    *job = (mm_job_t){
        .type = m->type,
        .w = m->w,
        .row_bytes = row_bytes,
        .block_elems = ti->block_elems,
        .block_bytes = ti->block_bytes,
        .n_out = m->n_out,
        .n_in = n_in,
        .n_tok = n_tok,
        .x = x,
        .y = m->y,
        .wp = m->packed,
    };
    return 1;
}

/* Whether the `fast` kernels of level isa read a packed copy of this matrix. */
static int reads_packed(cpu_isa_t isa, qtype_t wt, uint32_t n_in)
{
    return prec_now == CPU_PREC_FAST && isa >= CPU_ISA_AVX2 && isa <= CPU_ISA_AVX512 && mm_pack_type(wt)
           && n_in % qtype_info((uint32_t)wt)->block_elems == 0 && n_in / QK_SMALL <= MM_PACK_MAX_NB;
}

int cpu_matmul_multi(pool_t *p, const cpu_mm_out_t *mats, uint32_t n_mat, uint32_t n_in,
                     const float *x, uint32_t n_tok)
{
    if (mats == NULL || n_mat == 0 || n_mat > CPU_MM_MULTI_MAX)
        return ERR_INVALID;
    mm_run_t run = { .n_mat = 0 };
    int any_fast = 0;
    for (uint32_t i = 0; i < n_mat; i++) {
        int rc = job_init(&run.job[run.n_mat], &mats[i], n_in, x, n_tok);
        if (rc < 0)
            return rc;
        if (rc == 0)
            continue;
        any_fast |= prec_now == CPU_PREC_FAST && fast_type(mats[i].type);
        run.n_mat++;
    }
    if (n_in == 0) { /* empty sums, once every matrix has passed its checks */
        for (uint32_t i = 0; i < run.n_mat; i++)
            memset(run.job[i].y, 0, (size_t)n_tok * run.job[i].n_out * sizeof(float));
        return 0;
    }
    if (run.n_mat == 0)
        return 0;

    void *act = NULL; /* the quantised activations when there is no pool to hold them */
    cpu_isa_t isa = cpu_matmul_isa();
    if (any_fast) {
        int rc = quantize_acts(p, &run.job[0], isa, &act);
        if (rc != 0)
            return rc;
    }
    size_t gb = mm_group_bytes();
    static void (*const fast_rows[5])(const mm_job_t *, uint32_t, uint32_t) = {
        cpu_mmq_rows_portable, cpu_mmq_rows_avx2, cpu_mmq_rows_avxvnni, cpu_mmq_rows_avx512,
        cpu_mmq_rows_amx,
    };
    for (uint32_t i = 0; i < run.n_mat; i++) {
        mm_job_t *job = &run.job[i];
        job->group_bytes = gb;
        if (any_fast) { /* the one quantisation serves every matrix */
            job->xq = run.job[0].xq;
            job->xd = run.job[0].xd;
            job->xls = run.job[0].xls;
            job->xs = run.job[0].xs;
            job->xo = run.job[0].xo;
            job->xqp = run.job[0].xqp;
        }
        const int fast = any_fast && fast_type(job->type); /* int8 activations */
        if (!fast || !reads_packed(isa, job->type, n_in))
            job->wp = NULL;
        if (fast)
            run.rows[i] = fast_rows[isa];
        else
            run.rows[i] = isa >= CPU_ISA_AVX512 ? cpu_mm_rows_avx512
                          : isa >= CPU_ISA_AVX2 ? cpu_mm_rows_avx2 : cpu_mm_rows_portable;
        run.rows_per_task[i] = task_rows(job->n_out, job->row_bytes, n_tok, pool_threads(p), fast, isa);
        uint32_t n_tasks = job->n_out / run.rows_per_task[i] + (job->n_out % run.rows_per_task[i] != 0);
        run.first_task[i + 1] = run.first_task[i] + n_tasks; /* < 4 * (2^28 + 1) */
    }
    pool_run(p, matmul_task, &run, run.first_task[run.n_mat]);
    free(act);
    return 0;
}

int cpu_matmul(pool_t *p, qtype_t wt, const void *w, uint32_t n_out, uint32_t n_in,
               const float *x, uint32_t n_tok, float *y)
{
    cpu_mm_out_t m = { wt, w, n_out, y, NULL };
    return cpu_matmul_multi(p, &m, 1, n_in, x, n_tok);
}

_Static_assert(MM_PACK_ROWS == MM_ROWS, "a task's rows are whole packed tiles");

uint32_t cpu_matmul_packed_tiles(uint32_t n_out)
{
    return n_out / MM_PACK_ROWS + (n_out % MM_PACK_ROWS != 0);
}

size_t cpu_matmul_packed_bytes(qtype_t wt, uint32_t n_out, uint32_t n_in)
{
    if (n_out == 0 || !reads_packed(cpu_matmul_isa(), wt, n_in))
        return 0;
    const qtype_info_t *ti = qtype_info((uint32_t)wt);
    uint64_t bytes = (uint64_t)cpu_matmul_packed_tiles(n_out) * MM_PACK_ROWS * (n_in / ti->block_elems)
                     * ti->block_bytes;
    return bytes > SIZE_MAX ? 0 : (size_t)bytes; /* < (2^28 + 1) * 16 * 8192 * 34 / 32 */
}

int cpu_matmul_pack(qtype_t wt, const void *w, uint32_t n_out, uint32_t n_in, void *dst)
{
    return cpu_matmul_pack_tiles(wt, w, n_out, n_in, dst, 0, cpu_matmul_packed_tiles(n_out));
}

int cpu_matmul_pack_tiles(qtype_t wt, const void *w, uint32_t n_out, uint32_t n_in, void *dst,
                          uint32_t tile0, uint32_t n_tiles)
{
    if (w == NULL || dst == NULL)
        return ERR_INVALID;
    if (cpu_matmul_packed_bytes(wt, n_out, n_in) == 0)
        return ERR_UNSUPPORTED;
    const uint32_t tiles = cpu_matmul_packed_tiles(n_out);
    if (tile0 > tiles || n_tiles > tiles - tile0)
        return ERR_RANGE;
    const qtype_info_t *ti = qtype_info((uint32_t)wt);
    const size_t bb = ti->block_bytes, nb = n_in / ti->block_elems, rb = nb * bb;
    const size_t hb = mm_pack_halves(wt);  /* a block's leading bytes of halves */
    const size_t tb = mm_pack_tail(wt);    /* and trailing ones */
    const size_t so = hb * MM_PACK_ROWS;   /* the packed block's dword runs */
    const size_t to = (bb - tb) * MM_PACK_ROWS; /* and its trailing halves */
    uint8_t *out = (uint8_t *)dst + (size_t)tile0 * MM_PACK_ROWS * rb;
    const uint64_t r_end = (uint64_t)(tile0 + n_tiles) * MM_PACK_ROWS; /* <= n_out + 15 */
    for (uint64_t r0 = (uint64_t)tile0 * MM_PACK_ROWS; r0 < r_end; r0 += MM_PACK_ROWS) {
        for (size_t b = 0; b < nb; b++, out += MM_PACK_ROWS * bb) {
            for (uint32_t r = 0; r < MM_PACK_ROWS; r++) {
                uint64_t row = r0 + r < n_out ? r0 + r : n_out - 1;
                const uint8_t *blk = (const uint8_t *)w + row * rb + b * bb;
                for (size_t i = 0; i < hb / 2; i++) /* half i: d, then m or dmin */
                    memcpy(out + 2 * MM_PACK_ROWS * i + 2 * r, blk + 2 * i, 2);
                for (size_t k = 0; k < (bb - hb - tb) / 4; k++)
                    memcpy(out + so + 64 * k + 4 * r, blk + hb + 4 * k, 4);
                for (size_t i = 0; i < tb / 2; i++) /* Q6_K's d */
                    memcpy(out + to + 2 * MM_PACK_ROWS * i + 2 * r, blk + bb - tb + 2 * i, 2);
            }
        }
    }
    return 0;
}

int cpu_embed_row(qtype_t wt, const void *w, uint32_t n_in, uint32_t row, float *out)
{
    const qtype_info_t *ti;
    size_t row_bytes;
    int rc = row_layout(wt, n_in, &ti, &row_bytes);
    if (rc != 0)
        return rc;
    if (w == NULL || out == NULL)
        return ERR_INVALID;
    size_t off;
    if (__builtin_mul_overflow((size_t)row, row_bytes, &off))
        return ERR_RANGE;
    return quant_dequant(wt, (const uint8_t *)w + off, out, n_in);
}
