/*
 * matmul.c - cpu_matmul's driver (argument checks, the split of output
 * rows into pool tasks, the choice of code path), the portable C kernels
 * and the embedding-row lookup.  The AVX2 kernels are in matmul_avx2.c;
 * the tiling both paths share is described in matmul_kern.h.
 */
#include "matmul.h"

#include <string.h>

#include "base/err.h"
#include "matmul_kern.h"

/* ------------------------------------------------------ portable path */

/* Four float lanes (a GCC / clang vector extension: SSE on any x86-64,
 * NEON on arm64); arithmetic on it is lane by lane.  Two make the eight
 * lanes of matmul.h. */
typedef float lanes4_t __attribute__((vector_size(16)));

/*
 * acc[l] += w[k] * x[k] for every k < len, k % 8 == l: one token, one
 * row, one chunk (which starts at a multiple of 8, so k % 8 is also the
 * element's lane in the whole row).  A product, then a sum, per lane.
 */
static void lanes_madd(float *restrict acc, const float *restrict w, const float *restrict x,
                       uint32_t len)
{
    lanes4_t lo, hi, w0, w1, x0, x1;
    memcpy(&lo, acc, sizeof lo);
    memcpy(&hi, acc + 4, sizeof hi);
    uint32_t k = 0;
    for (; k + 8 <= len; k += 8) {
        memcpy(&w0, w + k, sizeof w0);
        memcpy(&w1, w + k + 4, sizeof w1);
        memcpy(&x0, x + k, sizeof x0);
        memcpy(&x1, x + k + 4, sizeof x1);
        lo += w0 * x0;
        hi += w1 * x1;
    }
    memcpy(acc, &lo, sizeof lo);
    memcpy(acc + 4, &hi, sizeof hi);
    for (uint32_t l = 0; k + l < len; l++)
        acc[l] += w[k + l] * x[k + l];
}

/* The fixed horizontal sum of matmul.h. */
static float lanes_sum(const float a[8])
{
    float s0 = a[0] + a[4];
    float s1 = a[1] + a[5];
    float s2 = a[2] + a[6];
    float s3 = a[3] + a[7];
    return (s0 + s2) + (s1 + s3);
}

/* Rows [o0, o0 + nr), nr <= MM_ROWS, every token. */
static void rows_tiled(const mm_job_t *j, uint32_t o0, uint32_t nr)
{
    float tile[MM_ROWS * MM_KC];   /* [nr, MM_KC]: dequantised chunk */
    float acc[MM_TOKS][MM_ROWS][8]; /* [token, row, lane] */
    const uint8_t *rows = j->w + (size_t)o0 * j->row_bytes; /* [nr, row_bytes] */

    for (uint32_t t0 = 0; t0 < j->n_tok; t0 += MM_TOKS) {
        uint32_t nt = j->n_tok - t0 < MM_TOKS ? j->n_tok - t0 : MM_TOKS;
        memset(acc, 0, (size_t)nt * sizeof acc[0]);

        for (uint32_t k0 = 0; k0 < j->n_in; k0 += MM_KC) {
            uint32_t kc = j->n_in - k0 < MM_KC ? j->n_in - k0 : MM_KC;
            const float *wc; /* [nr, ws] from column k0 */
            size_t ws;
            if (j->type == QT_F32) {
                wc = (const float *)(const void *)rows + k0;
                ws = j->n_in;
            } else {
                size_t off = (size_t)(k0 / j->block_elems) * j->block_bytes;
                for (uint32_t r = 0; r < nr; r++)
                    (void)quant_dequant(j->type, rows + (size_t)r * j->row_bytes + off,
                                        tile + (size_t)r * MM_KC, kc); /* type checked */
                wc = tile;
                ws = MM_KC;
            }
            for (uint32_t t = 0; t < nt; t++) {
                const float *xt = j->x + (size_t)(t0 + t) * j->n_in + k0; /* [kc] */
                for (uint32_t r = 0; r < nr; r++)
                    lanes_madd(acc[t][r], wc + r * ws, xt, kc);
            }
        }

        for (uint32_t t = 0; t < nt; t++) {
            float *yt = j->y + (size_t)(t0 + t) * j->n_out + o0; /* [nr] */
            for (uint32_t r = 0; r < nr; r++)
                yt[r] = lanes_sum(acc[t][r]);
        }
    }
}

void cpu_mm_rows_portable(const mm_job_t *j, uint32_t o0, uint32_t n)
{
    for (uint32_t g = 0; g < n; g += MM_ROWS)
        rows_tiled(j, o0 + g, n - g < MM_ROWS ? n - g : MM_ROWS);
}

/* -------------------------------------------------------------- driver */

static int force_portable;

void cpu_matmul_force_portable(int on)
{
    force_portable = on != 0;
}

const char *cpu_matmul_path(void)
{
    return !force_portable && cpu_mm_avx2_usable() ? "avx2" : "portable";
}

typedef struct {
    const mm_job_t *job;
    void (*rows)(const mm_job_t *, uint32_t, uint32_t);
    uint32_t rows_per_task;
} mm_run_t;

static void matmul_task(void *ctx, uint32_t task, uint32_t thread)
{
    (void)thread;
    const mm_run_t *run = ctx;
    uint32_t o0 = task * run->rows_per_task;
    uint32_t left = run->job->n_out - o0;
    run->rows(run->job, o0, left < run->rows_per_task ? left : run->rows_per_task);
}

/*
 * Rows per task: whole MM_ROWS groups.  With a few tokens the work is a
 * stream of weights: a task takes about MM_TASK_BYTES of them, one long
 * sequential read that the hardware prefetchers can follow, but there are
 * at least 4 tasks per thread where the matrix has that many groups, so
 * that a slow thread does not hold the others up.  With many tokens the
 * work is arithmetic and single groups balance best.
 */
#define MM_TASK_BYTES (64u << 10)

static uint32_t task_rows(uint32_t n_out, size_t row_bytes, uint32_t n_tok, uint32_t n_threads)
{
    if (n_tok >= 8)
        return MM_ROWS;
    uint32_t groups = n_out / MM_ROWS + (n_out % MM_ROWS != 0);
    size_t by_bytes = MM_TASK_BYTES / ((size_t)MM_ROWS * row_bytes);
    uint32_t by_balance = groups / (4 * n_threads);
    size_t per = by_bytes < by_balance ? by_bytes : by_balance;
    return (uint32_t)(per > 1 ? per : 1) * MM_ROWS;
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

int cpu_matmul(pool_t *p, qtype_t wt, const void *w, uint32_t n_out, uint32_t n_in,
               const float *x, uint32_t n_tok, float *y)
{
    const qtype_info_t *ti;
    size_t row_bytes;
    int rc = row_layout(wt, n_in, &ti, &row_bytes);
    if (rc != 0)
        return rc;
    if (n_out == 0 || n_tok == 0)
        return 0;
    if (w == NULL || x == NULL || y == NULL)
        return ERR_INVALID;
    /* Every offset the kernels form is below one of these sizes. */
    size_t w_bytes, xy_elems, xy_bytes;
    if (__builtin_mul_overflow(row_bytes, (size_t)n_out, &w_bytes)
        || __builtin_mul_overflow((size_t)n_tok, (size_t)(n_in > n_out ? n_in : n_out), &xy_elems)
        || __builtin_mul_overflow(xy_elems, sizeof(float), &xy_bytes))
        return ERR_RANGE;
    if (n_in == 0) { /* empty sums */
        memset(y, 0, (size_t)n_tok * n_out * sizeof *y);
        return 0;
    }

    mm_job_t job = {
        .type = wt,
        .w = w,
        .row_bytes = row_bytes,
        .block_elems = ti->block_elems,
        .block_bytes = ti->block_bytes,
        .n_out = n_out,
        .n_in = n_in,
        .n_tok = n_tok,
        .x = x,
        .y = y,
    };
    mm_run_t run = {
        .job = &job,
        .rows = !force_portable && cpu_mm_avx2_usable() ? cpu_mm_rows_avx2
                                                        : cpu_mm_rows_portable,
    };
    run.rows_per_task = task_rows(n_out, row_bytes, n_tok, pool_threads(p));
    uint32_t n_tasks = n_out / run.rows_per_task + (n_out % run.rows_per_task != 0);
    pool_run(p, matmul_task, &run, n_tasks);
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
