/*
 * matmul_avx512.c - the CPU_PREC_EXACT one-token kernel of the small-block
 * types (Q4_0, Q4_1, Q8_0) on 512-bit registers, for the AVX512 level;
 * everything else at that level is matmul_avx2.c's.
 *
 * Two rows share each register: lanes 0-7 are row r's eight lanes of
 * matmul_avx2.c's few-token kernel, lanes 8-15 row r+1's.  Every lane
 * sees the same operations in the same order as there (the blk_*
 * dequantisers' fused multiply-add or multiply per weight, one fused
 * multiply-add per weight and activation into the row's accumulator,
 * then hsum8 of each half), so a token's outputs are the AVX2 kernels'
 * bits, and stay equal to the tile path's for any batch (matmul.h).
 * What halves is the count of unpack, convert and multiply-add
 * instructions per weight, which is what bounds one token on a core
 * with full-width 512-bit units (matmul_avx2.c's speed notes).
 */
#include "matmul_kern.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))

#include <immintrin.h>
#include <string.h>

#include "matmul_avx2.h"

#define Z_TARGET "avx2,fma,f16c,avx512f,avx512bw,avx512vl"
#define Z_INLINE static inline __attribute__((always_inline, target(Z_TARGET)))

/* Block bytes and the offset of the quants in a block of each type. */
#define Z_BB(t) ((t) == QT_Q4_0 ? 18 : (t) == QT_Q4_1 ? 20 : 34)
#define Z_QS(t) ((t) == QT_Q4_1 ? 4 : 2)

/* Eight bytes at a then eight at b. */
Z_INLINE __m128i z_pair8(const uint8_t *a, const uint8_t *b)
{
    return _mm_unpacklo_epi64(_mm_loadl_epi64((const __m128i *)(const void *)a),
                              _mm_loadl_epi64((const __m128i *)(const void *)b));
}

/* The halves at a and at c, converted exactly: lanes 0-7 a's, 8-15 c's. */
Z_INLINE __m512 z_halves(const uint8_t *a, const uint8_t *c)
{
    __m128 dd = _mm_cvtph_ps(_mm_cvtsi32_si128((int)(rd_u16(a) | (uint32_t)rd_u16(c) << 16)));
    return _mm512_permutexvar_ps(_mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1),
                                 _mm512_castps128_ps512(dd));
}

/*
 * Block b of rows a (lanes 0-7) and c (lanes 8-15): w[k] holds elements
 * 8k .. 8k+7 of each, computed as blk_q4_0 / blk_q4_1 / blk_q8_0 compute
 * them.  The two rows' halves (d, and Q4_1's m) are converted together.
 */
Z_INLINE void z_blk(const qtype_t type, const uint8_t *a, const uint8_t *c, __m512 w[4])
{
    if (type == QT_Q8_0) {
        __m512 d = z_halves(a, c);
#pragma GCC unroll 4
        for (int k = 0; k < 4; k++)
            w[k] = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(z_pair8(a + 2 + 8 * k, c + 2 + 8 * k))), d);
        return;
    }
    const __m512i m15 = _mm512_set1_epi32(15);
    const size_t qs = Z_QS(type);
    __m512i lo = _mm512_cvtepu8_epi32(z_pair8(a + qs, c + qs));         /* qs[0..7]:  elements 0..7, 16..23 */
    __m512i hi = _mm512_cvtepu8_epi32(z_pair8(a + qs + 8, c + qs + 8)); /* qs[8..15]: 8..15, 24..31 */
    __m512 d, m;
    if (type == QT_Q4_1) { /* [d_a, m_a, d_c, m_c] */
        __m128 dm = _mm_cvtph_ps(_mm_unpacklo_epi32(_mm_cvtsi32_si128((int)rd_u32(a)),
                                                    _mm_cvtsi32_si128((int)rd_u32(c))));
        __m512 dm5 = _mm512_castps128_ps512(dm);
        d = _mm512_permutexvar_ps(_mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 2, 2, 2, 2, 2, 2, 2, 2), dm5);
        m = _mm512_permutexvar_ps(_mm512_setr_epi32(1, 1, 1, 1, 1, 1, 1, 1, 3, 3, 3, 3, 3, 3, 3, 3), dm5);
    } else { /* Q4_0: fma(q, d, -8d), as blk_q4_0 */
        d = z_halves(a, c);
        m = _mm512_mul_ps(d, _mm512_set1_ps(-8.0f));
    }
    w[0] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_and_si512(lo, m15)), d, m);
    w[1] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_and_si512(hi, m15)), d, m);
    w[2] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_srli_epi32(lo, 4)), d, m);
    w[3] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_srli_epi32(hi, 4)), d, m);
}

/*
 * Rows [0, n) of rows (rb bytes apart) times one token x (nb blocks):
 * RP pairs of rows at a time (the last pair's missing rows repeat the
 * last row, computed and not stored), y[r] each row's sum.  Prefetches
 * run Z_PF_BYTES ahead of the group's pace, as matmul_avx2.c's do (one
 * token of the default model, one thread: 78 tokens/s at 2 KiB, 86 at 4,
 * 90 at 8 and 16).
 */
#define Z_RP 4
#define Z_PF_BYTES 8192

Z_INLINE void z_dot1(const qtype_t type, const uint8_t *rows, size_t rb, uint32_t n, uint32_t nb,
                     const float *x, float *y)
{
    const size_t bb = Z_BB(type);
    for (uint32_t r0 = 0; r0 < n; r0 += 2 * Z_RP) {
        uint32_t left = n - r0;
        const uint8_t *p[2 * Z_RP];
        __m512 acc[Z_RP];
#pragma GCC unroll 8
        for (int r = 0; r < 2 * Z_RP; r++)
            p[r] = rows + (size_t)(r0 + ((uint32_t)r < left ? (uint32_t)r : left - 1)) * rb;
#pragma GCC unroll 4
        for (int i = 0; i < Z_RP; i++)
            acc[i] = _mm512_setzero_ps();
        size_t pf = (size_t)r0 * rb + Z_PF_BYTES;
        for (uint32_t b = 0; b < nb; b++, pf += 2 * Z_RP * bb) {
            for (size_t l = 0; l < (2 * Z_RP * bb + 63) / 64; l++)
                prefetch_at(rows, pf + 64 * l);
            __m512 xv[4];
#pragma GCC unroll 4
            for (int k = 0; k < 4; k++) { /* elements 8k .. 8k+7 in both halves */
                __m256d h = _mm256_loadu_pd((const double *)(const void *)(x + 32 * (size_t)b + 8 * k));
                xv[k] = _mm512_castpd_ps(_mm512_broadcast_f64x4(h));
            }
#pragma GCC unroll 4
            for (int i = 0; i < Z_RP; i++) {
                __m512 w[4];
                z_blk(type, p[2 * i] + b * bb, p[2 * i + 1] + b * bb, w);
#pragma GCC unroll 4
                for (int k = 0; k < 4; k++)
                    acc[i] = _mm512_fmadd_ps(w[k], xv[k], acc[i]);
            }
        }
#pragma GCC unroll 4
        for (int i = 0; i < Z_RP; i++) {
            if ((uint32_t)(2 * i) < left)
                y[r0 + 2 * i] = hsum8(_mm512_castps512_ps256(acc[i]));
            if ((uint32_t)(2 * i + 1) < left)
                y[r0 + 2 * i + 1] = hsum8(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(acc[i]), 1)));
        }
    }
}

__attribute__((target(Z_TARGET))) static void z_dot1_q4_0(const uint8_t *rows, size_t rb, uint32_t n,
                                                           uint32_t nb, const float *x, float *y)
{
    z_dot1(QT_Q4_0, rows, rb, n, nb, x, y);
}

__attribute__((target(Z_TARGET))) static void z_dot1_q4_1(const uint8_t *rows, size_t rb, uint32_t n,
                                                           uint32_t nb, const float *x, float *y)
{
    z_dot1(QT_Q4_1, rows, rb, n, nb, x, y);
}

__attribute__((target(Z_TARGET))) static void z_dot1_q8_0(const uint8_t *rows, size_t rb, uint32_t n,
                                                           uint32_t nb, const float *x, float *y)
{
    z_dot1(QT_Q8_0, rows, rb, n, nb, x, y);
}

void cpu_mm_rows_avx512(const mm_job_t *j, uint32_t o0, uint32_t n)
{
    void (*one)(const uint8_t *, size_t, uint32_t, uint32_t, const float *, float *) =
        j->type == QT_Q4_0 ? z_dot1_q4_0 : j->type == QT_Q4_1 ? z_dot1_q4_1
                                         : j->type == QT_Q8_0 ? z_dot1_q8_0 : NULL;
    if (j->n_tok != 1 || one == NULL) {
        cpu_mm_rows_avx2(j, o0, n);
        return;
    }
    one(j->w + (size_t)o0 * j->row_bytes, j->row_bytes, n, j->n_in / QK_SMALL, j->x, j->y + o0);
}

#else /* no x86-64 kernels in this build: the driver never calls this */

void cpu_mm_rows_avx512(const mm_job_t *j, uint32_t o0, uint32_t n)
{
    cpu_mm_rows_portable(j, o0, n);
}

#endif
