/*
 * matmul_kq_avx2.c - cpu_matmul's x86-64 kernels for the K-quants (Q4_K,
 * Q5_K, Q6_K; super-blocks of 256): the tile fillers of matmul_avx2.c's
 * tile path and the few-token kernels that skip the tile.  Both take
 * their weights from the decoders of matmul_avx2.h, and each (token, row)
 * accumulator gets the row's elements in increasing order, one fused
 * multiply-add per eight, so the two paths give the same bits (matmul.h).
 *
 * Built with plain -O2 like matmul_avx2.c; called only when
 * cpu_mm_avx2_usable() said yes.
 */
#include "matmul_kern.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))

#include "matmul_avx2.h"

/* --------------------------------------------------------- tile fillers */

AVX2_INLINE void deq_k4(const uint8_t *b, float *out, uint32_t nb, int five)
{
    uint32_t bytes = five ? 176 : 144;
    for (uint32_t i = 0; i < nb; i++, b += bytes, out += 256) {
        float ds[8], nm[8];
        kq4_scales(b, ds, nm);
        for (int j = 0; j < 8; j += 2) {
#pragma GCC unroll 2
            for (int hi = 0; hi < 2; hi++) {
                __m256 d = _mm256_set1_ps(ds[j + hi]), m = _mm256_set1_ps(nm[j + hi]), q[4];
                kq4_q32(b, five, j + hi, hi, q);
#pragma GCC unroll 4
                for (int u = 0; u < 4; u++)
                    _mm256_storeu_ps(out + 32 * (j + hi) + 8 * u, _mm256_fmadd_ps(q[u], d, m));
            }
        }
    }
}

AVX2 void cpu_mm_deq_q4_k_avx2(const uint8_t *b, float *out, uint32_t nb)
{
    deq_k4(b, out, nb, 0);
}

AVX2 void cpu_mm_deq_q5_k_avx2(const uint8_t *b, float *out, uint32_t nb)
{
    deq_k4(b, out, nb, 1);
}

AVX2 void cpu_mm_deq_q6_k_avx2(const uint8_t *b, float *out, uint32_t nb)
{
    for (uint32_t i = 0; i < nb; i++, b += 210, out += 256) {
        float sd[16];
        kq6_scales(b, sd);
        for (int h = 0; h < 2; h++)
#pragma GCC unroll 4
            for (int g = 0; g < 4; g++) {
                __m256 q[4];
                kq6_q32(b, h, g, q);
#pragma GCC unroll 4
                for (int u = 0; u < 4; u++)
                    _mm256_storeu_ps(out + 128 * h + 32 * g + 8 * u,
                                     _mm256_mul_ps(q[u], _mm256_set1_ps(sd[8 * h + 2 * g + u / 2])));
            }
    }
}

/* ----------------------------------------------------------- few tokens */

/* How far ahead (bytes), at least, the few-token kernels prefetch, as
 * matmul_avx2.c (group_ahead: at least a whole group). */
#define KQ_PF_BYTES 8192

/*
 * Super-block b of RM rows (blk[r]) into RM x TN accumulators a[r][t]:
 *   x [TN, xs] from the super-block's first column
 * Each activation vector is loaded once for the RM rows; each row's
 * accumulator still takes the elements in increasing order.
 */
AVX2_INLINE void grp_dot_k4(const int RM, const int TN, int five, const uint8_t *const *blk,
                            const float *x, size_t xs, __m256 a[4][4])
{
    float ds[4][8], nm[4][8];
#pragma GCC unroll 4
    for (int r = 0; r < RM; r++)
        kq4_scales(blk[r], ds[r], nm[r]);
    for (int j = 0; j < 8; j += 2) {
#pragma GCC unroll 2
        for (int hi = 0; hi < 2; hi++) {
#pragma GCC unroll 4
            for (int r = 0; r < RM; r++) {
                __m256 d = _mm256_set1_ps(ds[r][j + hi]), m = _mm256_set1_ps(nm[r][j + hi]), q[4];
                kq4_q32(blk[r], five, j + hi, hi, q);
#pragma GCC unroll 4
                for (int u = 0; u < 4; u++) {
                    __m256 w = _mm256_fmadd_ps(q[u], d, m);
#pragma GCC unroll 4
                    for (int t = 0; t < TN; t++)
                        a[r][t] = _mm256_fmadd_ps(w, _mm256_loadu_ps(x + t * xs + 32 * (j + hi) + 8 * u),
                                                  a[r][t]);
                }
            }
        }
    }
}

AVX2_INLINE void grp_dot_k6(const int RM, const int TN, const uint8_t *const *blk,
                            const float *x, size_t xs, __m256 a[4][4])
{
    float sd[4][16];
#pragma GCC unroll 4
    for (int r = 0; r < RM; r++)
        kq6_scales(blk[r], sd[r]);
    for (int h = 0; h < 2; h++) {
        for (int g = 0; g < 4; g++) {
#pragma GCC unroll 4
            for (int r = 0; r < RM; r++) {
                __m256 q[4];
                kq6_q32(blk[r], h, g, q);
#pragma GCC unroll 4
                for (int u = 0; u < 4; u++) {
                    __m256 w = _mm256_mul_ps(q[u], _mm256_set1_ps(sd[r][8 * h + 2 * g + u / 2]));
#pragma GCC unroll 4
                    for (int t = 0; t < TN; t++)
                        a[r][t] = _mm256_fmadd_ps(w, _mm256_loadu_ps(x + t * xs + 128 * h + 32 * g + 8 * u),
                                                  a[r][t]);
                }
            }
        }
    }
}

/*
 * RM rows times TN tokens, rows [0, n) of rows [n, rb] (nb super-blocks
 * of bb bytes each), x [TN, xs], y [TN, ys].  Rows past n repeat row n-1
 * (computed, not stored).
 */
AVX2_INLINE void dot_k(const int RM, const int TN, qtype_t type, const size_t bb,
                       const uint8_t *rows, size_t rb, uint32_t n, uint32_t nb,
                       const float *x, size_t xs, float *y, size_t ys)
{
    for (uint32_t r0 = 0; r0 < n; r0 += RM) {
        uint32_t left = n - r0;
        const uint8_t *p[4];
        __m256 a[4][4]; /* [row][token] */
#pragma GCC unroll 4
        for (int r = 0; r < RM; r++) {
            p[r] = rows + (size_t)(r0 + ((uint32_t)r < left ? (uint32_t)r : left - 1)) * rb;
#pragma GCC unroll 4
            for (int t = 0; t < TN; t++)
                a[r][t] = _mm256_setzero_ps();
        }
        /* As matmul_avx2.c's dot_small (group_ahead; past the end is harmless). */
        size_t pf = group_ahead(r0, RM, rb, KQ_PF_BYTES);
        for (uint32_t b = 0; b < nb; b++, pf += RM * bb) {
            for (size_t l = 0; l < RM * bb; l += 64)
                prefetch_at(rows, pf + l);
            const uint8_t *blk[4];
#pragma GCC unroll 4
            for (int r = 0; r < RM; r++)
                blk[r] = p[r] + b * bb;
            if (type == QT_Q6_K)
                grp_dot_k6(RM, TN, blk, x + 256 * (size_t)b, xs, a);
            else
                grp_dot_k4(RM, TN, type == QT_Q5_K, blk, x + 256 * (size_t)b, xs, a);
        }
#pragma GCC unroll 4
        for (int r = 0; r < RM; r++) {
            if ((uint32_t)r < left) {
#pragma GCC unroll 4
                for (int t = 0; t < TN; t++)
                    y[t * ys + r0 + r] = hsum8(a[r][t]);
            }
        }
    }
}

/* Rows [o0, o0 + n), every token, up to four tokens at a time. */
AVX2_INLINE void dot_k_tokens(qtype_t type, const size_t bb, const mm_job_t *j, uint32_t o0,
                              uint32_t n)
{
    const uint8_t *rows = j->w + (size_t)o0 * j->row_bytes; /* [n, row_bytes] */
    uint32_t nb = j->n_in / 256;
    size_t xs = j->n_in, ys = j->n_out, rb = j->row_bytes;
    for (uint32_t t = 0; t < j->n_tok;) {
        uint32_t tn = j->n_tok - t < 4 ? j->n_tok - t : 4;
        const float *x = j->x + (size_t)t * xs; /* [tn, n_in] */
        float *y = j->y + (size_t)t * ys + o0;   /* [tn, n_out] from column o0 */
        switch (tn) {
        case 1:  dot_k(4, 1, type, bb, rows, rb, n, nb, x, xs, y, ys); break;
        case 2:  dot_k(4, 2, type, bb, rows, rb, n, nb, x, xs, y, ys); break;
        case 3:  dot_k(2, 3, type, bb, rows, rb, n, nb, x, xs, y, ys); break;
        default: dot_k(2, 4, type, bb, rows, rb, n, nb, x, xs, y, ys); break;
        }
        t += tn;
    }
}

AVX2 static void dot_q4_k(const mm_job_t *j, uint32_t o0, uint32_t n)
{
    dot_k_tokens(QT_Q4_K, 144, j, o0, n);
}

AVX2 static void dot_q5_k(const mm_job_t *j, uint32_t o0, uint32_t n)
{
    dot_k_tokens(QT_Q5_K, 176, j, o0, n);
}

AVX2 static void dot_q6_k(const mm_job_t *j, uint32_t o0, uint32_t n)
{
    dot_k_tokens(QT_Q6_K, 210, j, o0, n);
}

AVX2 void cpu_mm_dot_k_avx2(const mm_job_t *j, uint32_t o0, uint32_t n)
{
    if (j->type == QT_Q4_K)
        dot_q4_k(j, o0, n);
    else if (j->type == QT_Q5_K)
        dot_q5_k(j, o0, n);
    else
        dot_q6_k(j, o0, n);
}

#endif
