/*
 * matmul_portable.c - cpu_matmul's portable C kernels (any CPU with a GCC
 * or clang vector extension), which the driver (matmul.c) uses when the
 * AVX2 path cannot run and matmul_avx2.c falls back to in builds without
 * x86-64 kernels.  The tiling is described in matmul_kern.h.
 */
#include <string.h>

#include "base/quant.h"
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
            size_t ws;
            const float *wc = mm_f32_rows(j, rows, k0, &ws); /* [nr, ws] from column k0 */
            if (wc == NULL) {
                size_t off = (size_t)(k0 / j->block_elems) * j->block_bytes;
                for (uint32_t r = 0; r < nr; r++)
                    (void)quant_dequant(j->type, rows + (size_t)r * j->row_bytes + off,
                                        tile + (size_t)r * MM_KC, kc); /* type checked */
                wc = tile;
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
