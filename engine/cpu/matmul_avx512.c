/*
 * matmul_avx512.c - CPU_PREC_EXACT kernels for the AVX512 level: on
 * 512-bit registers the one-token kernel of the small-block types (Q4_0,
 * Q4_1, Q8_0) and the tile path of every type; one-token Q4_K, Q5_K and
 * Q6_K kernels, also on pairs of rows (Q4_K's weights looked up by
 * vpermt2ps); the few-token kernels of two to MM_FEW_TOKS tokens, and
 * one token of the float types, are matmul_avx2.c's and
 * matmul_kq_avx2.c's.
 *
 * Two rows share each register: lanes 0-7 are row r's eight lanes of
 * matmul_avx2.c's kernels, lanes 8-15 row r+1's.  Every lane sees the
 * same operations in the same order as there (the same dequantised
 * weights, one fused multiply-add per weight and activation into the
 * row's accumulator, then hsum8 of each half), so a token's outputs are
 * the AVX2 kernels' bits, and stay equal between the one-token and the
 * tile path for any batch (matmul.h).  What halves is the count of
 * instructions per weight: unpack, convert and multiply-add for one
 * token, which is what bounds it on a core with full-width 512-bit
 * units (matmul_avx2.c's speed notes); the multiply-adds themselves on
 * the tile path, which is what bounds a prefill (one core of a Xeon
 * with two 512-bit FMA units: 113 GFLOP/s of 256-bit fused multiply-adds
 * at most, 212 of 512-bit ones).
 */
#include "matmul_kern.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))

#include <immintrin.h>
#include <string.h>

#include "matmul_avx2.h"
#include "matmul_zblk.h"
#include "vreduce.h"

/* The RM rows of a group from row r0 of n, rb bytes apart: rows past n
 * repeat row n - 1 (computed, not stored). */
Z_INLINE void z_group_rows(const int RM, const uint8_t *rows, size_t rb, uint32_t r0, uint32_t n,
                           const uint8_t **p)
{
#pragma GCC unroll 8
    for (int r = 0; r < RM; r++)
        p[r] = rows + (size_t)(r0 + (uint32_t)r < n ? r0 + (uint32_t)r : n - 1) * rb;
}

/* The lines of bytes [off, off + len) past rows, into L1. */
Z_INLINE void z_prefetch_run(const uint8_t *rows, size_t off, size_t len)
{
    for (size_t l = 0; l < (len + 63) / 64; l++)
        prefetch_at(rows, off + 64 * l);
}

/* The sums of the pair of rows r, r + 1 (hsum8 of each half) into y[r]
 * and y[r + 1], each where it is one of the n rows. */
Z_INLINE void z_store_pair(__m512 acc, uint32_t r, uint32_t n, float *y)
{
    if (r < n)
        y[r] = hsum8(_mm512_castps512_ps256(acc));
    if (r + 1 < n)
        y[r + 1] = hsum8(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(acc), 1)));
}

/*
 * Rows [0, n) of rows (rb bytes apart) times one token x (nb blocks):
 * RP pairs of rows at a time (the last pair's missing rows repeat the
 * last row, computed and not stored), y[r] each row's sum.  Prefetches
 * run at least Z_PF_BYTES, and a whole group, ahead of the group's pace,
 * as matmul_avx2.c's do (group_ahead; one token of the default model,
 * one thread: 78 tokens/s at 2 KiB, 86 at 4, 90 at 8 and 16).
 */
#define Z_RP 4
#define Z_PF_BYTES 8192

Z_INLINE void z_dot1(const qtype_t type, const uint8_t *rows, size_t rb, uint32_t n, uint32_t nb,
                     const float *x, float *y)
{
    const size_t bb = Z_BB(type);
    for (uint32_t r0 = 0; r0 < n; r0 += 2 * Z_RP) {
        const uint8_t *p[2 * Z_RP];
        __m512 acc[Z_RP];
        z_group_rows(2 * Z_RP, rows, rb, r0, n, p);
#pragma GCC unroll 4
        for (int i = 0; i < Z_RP; i++)
            acc[i] = _mm512_setzero_ps();
        size_t pf = group_ahead(r0, 2 * Z_RP, rb, Z_PF_BYTES);
        for (uint32_t b = 0; b < nb; b++, pf += 2 * Z_RP * bb) {
            z_prefetch_run(rows, pf, 2 * Z_RP * bb);
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
        for (int i = 0; i < Z_RP; i++)
            z_store_pair(acc[i], r0 + 2 * (uint32_t)i, n, y);
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

/*
 * Q4_K and Q5_K, one token, two rows a register.  matmul_kq_avx2.c forms
 * the weight of quant q in sub-block j as fma(q, ds[j], nm[j])
 * (kq4_scales, kq4_q32).  The quant bytes are formed for 64 bytes at a
 * time (sixteen of each row in two 128-bit lanes each, matmul_zblk.h's
 * z_pair16) and spread to dwords in-lane by one byte shuffle per eight
 * weights of both rows.  Q4_K looks its weights up: the sixteen values
 * for q = 0..15 come from that same fused multiply-add, once per
 * sub-block and row, into one register per row, and vpermt2ps picks each
 * element's entry from the pair's two tables by an index of five bits
 * (the nibble, plus 16 in the lanes of the pair's second row, set with
 * the mask by one ternary-logic operation).  Q5_K's 32 values would not
 * fit two tables a pair, so its quants (the nibble and bit j of qh[l] as
 * bit 4, as kq4_q32 forms them) are converted and go through the fused
 * multiply-add.  Lanes 0..7 take row a's elements and lanes 8..15 row
 * c's, each lane the floats the AVX2 kernel's lane takes in its order:
 * its bits (z_dot1's pairs).  Per sixteen weights (eight of each row):
 * Q4_K one byte shuffle, one lookup and one fused multiply-add on 512-bit
 * registers, plus a share of the index and table work, where the rows
 * one at a time took about twice the operations on 256-bit ones; Q5_K a
 * shuffle, a conversion and two fused multiply-adds, where the AVX2
 * kernel spends two of each with two more shuffles.
 *
 * Each pair's sum is one chain of dependent fused multiply-adds (the
 * order that gives the bits), four cycles each on Zen 5, so two pairs
 * would bound Q4_K at two multiply-adds per four cycles, eight weights
 * a cycle.  Q4_K takes four pairs; so that they fit the 32 registers,
 * the activations are broadcast where they are used (shared by the
 * pairs) rather than held for the sub-block, and each pair keeps only
 * its two tables and its indices for sixteen bytes.  Q5_K is bound by
 * its operations rather than its chains (a conversion and a second
 * multiply-add a weight), so it keeps two pairs and their registers.
 */
#define ZK_RP  4 /* Q4_K: pairs of rows at a time (and the arrays' size) */
#define ZK5_RP 2 /* Q5_K: pairs of rows at a time */

/* Bit j (0..7, the sub-block: a variable, since the loop over sub-blocks
 * measured slower unrolled) of each byte of h moved to bit 4, the other
 * bits cleared (16-bit shifts: the mask drops what crosses bytes). */
Z_INLINE __m512i z_bit4(__m512i h, int j)
{
    h = j < 4 ? _mm512_slli_epi16(h, (unsigned)(4 - j)) : _mm512_srli_epi16(h, (unsigned)(j - 4));
    return _mm512_and_si512(h, _mm512_set1_epi8(0x10));
}

/* s in lanes 0..7, t in lanes 8..15. */
Z_INLINE __m512 z_two(float s, float t)
{
    return _mm512_mask_blend_ps(0xff00, _mm512_set1_ps(s), _mm512_set1_ps(t));
}

Z_INLINE void z_dot1_k4(const int five, const uint8_t *rows, size_t rb, uint32_t n, uint32_t nb,
                        const float *x, float *y)
{
    const size_t bb = five ? 176 : 144, qs0 = five ? 48 : 16; /* block bytes, where the nibbles start */
    const __m512 q16 = _mm512_setr_ps(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    const __m512i m15 = _mm512_set1_epi8(0x0f);
    const __m512i c16 = _mm512_inserti64x4(_mm512_setzero_si512(), _mm256_set1_epi8(0x10), 1);
    const __m512i spread[2] = { /* a 128-bit lane's bytes 0..7 / 8..15 to dwords, rows a and c */
        _mm512_broadcast_i64x4(spread8(0)), _mm512_broadcast_i64x4(spread8(1)),
    };
    const int RP = five ? ZK5_RP : ZK_RP;
    for (uint32_t r0 = 0; r0 < n; r0 += 2 * (uint32_t)RP) {
        const uint8_t *p[2 * ZK_RP];
        __m512 acc[ZK_RP];
        z_group_rows(2 * RP, rows, rb, r0, n, p);
#pragma GCC unroll 4
        for (int i = 0; i < RP; i++)
            acc[i] = _mm512_setzero_ps();
        size_t pf = group_ahead(r0, (uint32_t)(2 * RP), rb, Z_PF_BYTES);
        for (uint32_t b = 0; b < nb; b++, pf += 2 * (size_t)RP * bb) {
            z_prefetch_run(rows, pf, 2 * (size_t)RP * bb);
            float ds[2 * ZK_RP][8], nm[2 * ZK_RP][8];
#pragma GCC unroll 8
            for (int r = 0; r < 2 * RP; r++)
                kq4_scales(p[r] + (size_t)b * bb, ds[r], nm[r]);
            const float *xb = x + 256 * (size_t)b;
            for (int j = 0; j < 8; j += 2) { /* sub-blocks j (low nibbles) and j + 1 (high) */
#pragma GCC unroll 2
                for (int s = 0; s < 2; s++) { /* sub-block j + s */
                    __m512 t0[ZK_RP], t1[ZK_RP]; /* the pair's tables (Q4_K), or d and m (Q5_K) */
#pragma GCC unroll 4
                    for (int i = 0; i < RP; i++) {
                        const int a = 2 * i, c = 2 * i + 1;
                        if (five) {
                            t0[i] = z_two(ds[a][j + s], ds[c][j + s]);
                            t1[i] = z_two(nm[a][j + s], nm[c][j + s]);
                        } else {
                            t0[i] = _mm512_fmadd_ps(q16, _mm512_set1_ps(ds[a][j + s]), _mm512_set1_ps(nm[a][j + s]));
                            t1[i] = _mm512_fmadd_ps(q16, _mm512_set1_ps(ds[c][j + s]), _mm512_set1_ps(nm[c][j + s]));
                        }
                    }
#pragma GCC unroll 2
                    for (int v = 0; v < 2; v++) { /* bytes 16v .. 16v + 15 of each row */
                        __m512i qv[ZK_RP];
#pragma GCC unroll 4
                        for (int i = 0; i < RP; i++) {
                            const uint8_t *ba = p[2 * i] + (size_t)b * bb, *bc = p[2 * i + 1] + (size_t)b * bb;
                            __m512i q = z_pair16(ba + qs0 + 16 * j + 16 * v, bc + qs0 + 16 * j + 16 * v);
                            if (s)
                                q = _mm512_srli_epi16(q, 4);
                            if (five) /* (q & 15) | bit j + s of qh[l] as bit 4 */
                                qv[i] = _mm512_ternarylogic_epi32(
                                    q, m15, z_bit4(z_pair16(ba + 16 + 16 * v, bc + 16 + 16 * v), j + s), 0xea);
                            else /* (q & 15) | c16 */
                                qv[i] = _mm512_ternarylogic_epi32(q, m15, c16, 0xea);
                        }
#pragma GCC unroll 2
                        for (int h = 0; h < 2; h++) { /* elements 8u .. 8u + 7, u = 2v + h */
                            const __m512 xv = _mm512_castpd_ps(_mm512_broadcast_f64x4(_mm256_loadu_pd(
                                (const double *)(const void *)(xb + 32 * (j + s) + 16 * v + 8 * h))));
#pragma GCC unroll 4
                            for (int i = 0; i < RP; i++) {
                                const __m512i e = _mm512_shuffle_epi8(qv[i], spread[h]);
                                const __m512 w = five ? _mm512_fmadd_ps(_mm512_cvtepi32_ps(e), t0[i], t1[i])
                                                      : _mm512_permutex2var_ps(t0[i], e, t1[i]);
                                acc[i] = _mm512_fmadd_ps(w, xv, acc[i]);
                            }
                        }
                    }
                }
            }
        }
#pragma GCC unroll 4
        for (int i = 0; i < RP; i++)
            z_store_pair(acc[i], r0 + 2 * (uint32_t)i, n, y);
    }
}

__attribute__((target(Z_TARGET))) static void z_dot1_q4_k(const uint8_t *rows, size_t rb, uint32_t n,
                                                           uint32_t nb, const float *x, float *y)
{
    z_dot1_k4(0, rows, rb, n, nb, x, y);
}

__attribute__((target(Z_TARGET))) static void z_dot1_q5_k(const uint8_t *rows, size_t rb, uint32_t n,
                                                           uint32_t nb, const float *x, float *y)
{
    z_dot1_k4(1, rows, rb, n, nb, x, y);
}

/*
 * Q6_K, one token: matmul_kq_avx2.c's grp_dot_k6 with two rows a
 * register, as z_dot1 pairs the small-block kernel's rows (the weights
 * by matmul_zblk.h's z_k6_quarter).  Per quarter
 * (h, g) of a super-block the pair's 32 + 32 quant bytes are formed
 * together, kq6_q32's byte operations on a register holding row a's
 * eight bytes 8u .. 8u + 7 and then row c's, for u = 0..3 in turn, so
 * that 128-bit lane u widens to the sixteen lanes of u; then, per
 * element, q - 32 converted, times the sub-block's d * scale (the
 * one rounding of kq6_scales), and one fused multiply-add into the row's
 * lanes: the AVX2 kernel's floats in its order, so its bits.  The AVX2
 * kernel spends two widenings, two conversions, two multiplies and two
 * fused multiply-adds (on 256-bit registers) where this spends about
 * one of each (on 512-bit ones: a lane extract beside the widening, and
 * per quarter two scale shuffles and a byte interleave per 32 bytes), and
 * its byte operations are halved too.  (A version that stored the bytes
 * and widened from memory ran as fast; four pairs at a time instead of
 * two ran out of registers, 18% slower.)
 */
#define ZK6_RP 2 /* pairs of rows at a time */

Z_INLINE void z_dot1_k6(const uint8_t *rows, size_t rb, uint32_t n, uint32_t nb, const float *x, float *y)
{
    for (uint32_t r0 = 0; r0 < n; r0 += 2 * ZK6_RP) {
        const uint8_t *p[2 * ZK6_RP];
        __m512 acc[ZK6_RP];
        z_group_rows(2 * ZK6_RP, rows, rb, r0, n, p);
#pragma GCC unroll 2
        for (int i = 0; i < ZK6_RP; i++)
            acc[i] = _mm512_setzero_ps();
        size_t pf = group_ahead(r0, 2 * ZK6_RP, rb, Z_PF_BYTES);
        for (uint32_t b = 0; b < nb; b++, pf += 2 * ZK6_RP * 210) {
            z_prefetch_run(rows, pf, 2 * ZK6_RP * 210);
            const float *xb = x + 256 * (size_t)b;
            const uint8_t *blk[2 * ZK6_RP];
            __m512 sa[ZK6_RP], sc[ZK6_RP]; /* each pair's rows' sixteen scales */
#pragma GCC unroll 2
            for (int i = 0; i < ZK6_RP; i++) {
                blk[2 * i] = p[2 * i] + (size_t)b * 210;
                blk[2 * i + 1] = p[2 * i + 1] + (size_t)b * 210;
                sa[i] = z_k6_scales(blk[2 * i]);
                sc[i] = z_k6_scales(blk[2 * i + 1]);
            }
            for (int h = 0; h < 2; h++) {
                __m512i qh[ZK6_RP];
#pragma GCC unroll 2
                for (int i = 0; i < ZK6_RP; i++)
                    qh[i] = z_pair32(blk[2 * i] + 128 + 32 * h, blk[2 * i + 1] + 128 + 32 * h);
#pragma GCC unroll 4
                for (int g = 0; g < 4; g++) {
                    __m512 xv[4];
#pragma GCC unroll 4
                    for (int u = 0; u < 4; u++) /* elements 128h + 32g + 8u .. +7 in both halves */
                        xv[u] = _mm512_castpd_ps(_mm512_broadcast_f64x4(
                            _mm256_loadu_pd((const double *)(const void *)(xb + 128 * h + 32 * g + 8 * u))));
#pragma GCC unroll 2
                    for (int i = 0; i < ZK6_RP; i++) {
                        __m512 w[4];
                        z_k6_quarter(blk[2 * i], blk[2 * i + 1], qh[i], h, g, sa[i], sc[i], w);
#pragma GCC unroll 4
                        for (int u = 0; u < 4; u++)
                            acc[i] = _mm512_fmadd_ps(w[u], xv[u], acc[i]);
                    }
                }
            }
        }
#pragma GCC unroll 2
        for (int i = 0; i < ZK6_RP; i++)
            z_store_pair(acc[i], r0 + 2 * (uint32_t)i, n, y);
    }
}

__attribute__((target(Z_TARGET))) static void z_dot1_q6_k(const uint8_t *rows, size_t rb, uint32_t n,
                                                           uint32_t nb, const float *x, float *y)
{
    z_dot1_k6(rows, rb, n, nb, x, y);
}

/* ------------------------------------------------------------ the tile */

/*
 * matmul_avx2.c's tile path with the group's rows in pairs: after the
 * tile is filled (z_fill, below), pair p holds element group g
 * (eight floats) of rows 2p and 2p + 1 side by side at 16g, so one
 * 64-byte load gives a register whose halves are the two rows' vectors
 * of matmul_avx2.c's micro-kernel, and the activations' eight floats
 * are loaded into both halves.  An odd row count repeats the last row
 * (computed, not stored).
 */
#define Z_PAIRS (MM_ROWS / 2) /* pairs in a group of rows (reduce16 takes eight) */
_Static_assert(Z_PAIRS == 8, "z_rows_tiled sums eight pairs a token");
_Static_assert(MM_KC == QK_K, "z_fill_q4_k and z_fill_q6_k fill one super-block a chunk");
#define Z_MP    4             /* pairs per micro-kernel call */
/* Tokens sharing one fill of the tile: each fill costs about a sixth of
 * what 64 tokens then multiply (1B Q4_K shapes, 512 tokens, one thread:
 * 87-96 GFLOP/s at 64, 94-98 at 128; 83-86 at 32).  Its accumulators
 * take 64 KiB of stack. */
#define Z_TOKS  128

/* Pair a[0, kc) with b[0, kc) into dst[2 kc] (kc a multiple of 8). */
Z_INLINE void z_pair_rows(const float *a, const float *b, float *dst, uint32_t kc)
{
    for (uint32_t k = 0; k < kc; k += 8) {
        __m512 v = _mm512_castps256_ps512(_mm256_loadu_ps(a + k));
        v = _mm512_castpd_ps(_mm512_insertf64x4(_mm512_castps_pd(v),
                                                _mm256_castps_pd(_mm256_loadu_ps(b + k)), 1));
        _mm512_store_ps(dst + 2 * k, v);
    }
}

/*
 * Pair p's rows of the chunk [k0, k0 + kc): a, and c (a again for a
 * missing last row).  Each of the pair's rows also prefetches what it
 * will need next (fill_ahead, as cpu_mm_fill_tile_avx2 does for the
 * fills that go through it); issued a pair at a time, as the pair is
 * filled, so that they do not queue up behind each other.
 */
Z_INLINE void z_pair_of(const mm_job_t *j, const uint8_t *rows, uint32_t nr, uint32_t p, uint32_t k0,
                        uint32_t kc, const uint8_t **a, const uint8_t **c)
{
    size_t off = (size_t)(k0 / j->block_elems) * j->block_bytes;
    size_t cb = (size_t)(kc / j->block_elems) * j->block_bytes;
    size_t ahead = fill_ahead(j, k0, kc, off, cb);
    *a = rows + (size_t)(2 * p) * j->row_bytes + off;
    *c = rows + (size_t)(2 * p + 1 < nr ? 2 * p + 1 : nr - 1) * j->row_bytes + off;
    for (size_t l = 0; l < cb; l += 64)
        prefetch_at(*a, ahead + l);
    if (2 * p + 1 < nr)
        for (size_t l = 0; l < cb; l += 64)
            prefetch_at(*c, ahead + l);
}

/* Q4_0, Q4_1 and Q8_0 straight into the paired tile: z_blk gives a
   block's element groups of both rows of a pair as the tile holds them,
   the weights the fill's dequantiser gives (the one-token kernel's). */
Z_INLINE void z_fill_small(const qtype_t type, const mm_job_t *j, const uint8_t *rows, uint32_t nr,
                           uint32_t k0, uint32_t kc, float *tile)
{
    uint32_t bb = Z_BB(type), nb = kc / QK_SMALL;
    for (uint32_t p = 0; p < (nr + 1) / 2; p++) {
        const uint8_t *a, *c;
        z_pair_of(j, rows, nr, p, k0, kc, &a, &c);
        float *dst = tile + (size_t)p * 2 * MM_KC; /* group g of the pair at 16 g */
        for (uint32_t i = 0; i < nb; i++) {
            __m512 w[4];
            z_blk(type, a + (size_t)i * bb, c + (size_t)i * bb, w);
#pragma GCC unroll 4
            for (int k = 0; k < 4; k++)
                _mm512_store_ps(dst + 64 * i + 16 * k, w[k]);
        }
    }
}

/*
 * Q4_K straight into the paired tile (a chunk is one super-block: kc ==
 * MM_KC == 256).  Each 32-byte run of quants holds sub-blocks 2h (low
 * nibbles) and 2h + 1 (high); its sixteen-byte halves, both rows', are
 * spread as z_blk spreads a block's (dword i: bytes i and 8 + i), so a
 * shift and a lookup give eight elements of each row, and fma(q, ds,
 * nm) with the sub-block's kq4_scales_v is the fill's weight
 * (cpu_mm_deq_q4_k_avx2: the same operation on the same values).
 */
Z_INLINE void z_fill_q4_k(const mm_job_t *j, const uint8_t *rows, uint32_t nr, uint32_t k0, float *tile)
{
    const __m512i half8 = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 8, 8, 8, 8, 8, 8, 8, 8);
    for (uint32_t p = 0; p < (nr + 1) / 2; p++) {
        const uint8_t *a, *c;
        z_pair_of(j, rows, nr, p, k0, MM_KC, &a, &c);
        float *dst = tile + (size_t)p * 2 * MM_KC;
        __m256 da, ma, dc, mc; /* row a's eight sub-blocks' scales, then row c's, in registers
                                  (a 64-byte load of two 32-byte stores waits for both) */
        kq4_scales_v(a, &da, &ma);
        kq4_scales_v(c, &dc, &mc);
        __m512 dsv = _mm512_castpd_ps(_mm512_insertf64x4(_mm512_castps_pd(_mm512_castps256_ps512(da)),
                                                         _mm256_castps_pd(dc), 1));
        __m512 nmv = _mm512_castpd_ps(_mm512_insertf64x4(_mm512_castps_pd(_mm512_castps256_ps512(ma)),
                                                         _mm256_castps_pd(mc), 1));
#pragma GCC unroll 4
        for (int h = 0; h < 4; h++) {
            /* 32 quant bytes a row: sub-block 2h in the low nibbles, 2h + 1 in the high */
            __m512i q[2] = { z_spread16(a + 16 + 32 * h, c + 16 + 32 * h),
                             z_spread16(a + 32 + 32 * h, c + 32 + 32 * h) };
#pragma GCC unroll 2
            for (int hi = 0; hi < 2; hi++) {
                int sb = 2 * h + hi; /* groups 4 sb .. 4 sb + 3 */
                __m512i ix = _mm512_add_epi32(_mm512_set1_epi32(sb), half8);
                __m512 d = _mm512_permutexvar_ps(ix, dsv), m = _mm512_permutexvar_ps(ix, nmv);
                float *g = dst + 16 * 4 * sb;
#pragma GCC unroll 4
                for (int s = 0; s < 4; s++) /* dword j of q[s / 2]: byte j (s even) or 8 + j, its hi nibble */
                    _mm512_store_ps(g + 16 * s, z_nibbles(q[s / 2], (unsigned)(8 * (s % 2) + 4 * hi), d, m));
            }
        }
    }
}

/* Q6_K straight into the paired tile (one super-block a chunk), by the
   one-token kernel's quarters (z_k6_quarter): cpu_mm_deq_q6_k_avx2's
   weights. */
Z_INLINE void z_fill_q6_k(const mm_job_t *j, const uint8_t *rows, uint32_t nr, uint32_t k0, float *tile)
{
    for (uint32_t p = 0; p < (nr + 1) / 2; p++) {
        const uint8_t *a, *c;
        z_pair_of(j, rows, nr, p, k0, MM_KC, &a, &c);
        float *dst = tile + (size_t)p * 2 * MM_KC;
        __m512 sa = z_k6_scales(a), sc = z_k6_scales(c);
#pragma GCC unroll 2
        for (int h = 0; h < 2; h++) {
            __m512i qh = z_pair32(a + 128 + 32 * h, c + 128 + 32 * h);
#pragma GCC unroll 4
            for (int g = 0; g < 4; g++) {
                __m512 w[4];
                z_k6_quarter(a, c, qh, h, g, sa, sc, w);
#pragma GCC unroll 4
                for (int u = 0; u < 4; u++) /* element group 16h + 4g + u */
                    _mm512_store_ps(dst + 16 * (16 * h + 4 * g + u), w[u]);
            }
        }
    }
}

/* Columns [k0, k0 + kc) of the group's nr rows into the paired tile:
   F32 from the matrix, the small-block types, Q4_K and Q6_K dequantised
   straight into it, the others into tmp [nr, MM_KC] first, then paired. */
Z_INLINE void z_fill(const mm_job_t *j, const uint8_t *rows, uint32_t nr, uint32_t k0, uint32_t kc,
                     float *tile, float *tmp)
{
    uint32_t np = (nr + 1) / 2;
    switch (j->type) {
    case QT_F32: { /* straight from the matrix */
        const float *w = (const float *)(const void *)rows + k0;
        for (uint32_t p = 0; p < np; p++) {
            uint32_t b = 2 * p + 1 < nr ? 2 * p + 1 : nr - 1;
            z_pair_rows(w + (size_t)(2 * p) * j->n_in, w + (size_t)b * j->n_in,
                        tile + (size_t)p * 2 * MM_KC, kc);
        }
        return;
    }
    case QT_Q4_0: z_fill_small(QT_Q4_0, j, rows, nr, k0, kc, tile); return;
    case QT_Q4_1: z_fill_small(QT_Q4_1, j, rows, nr, k0, kc, tile); return;
    case QT_Q8_0: z_fill_small(QT_Q8_0, j, rows, nr, k0, kc, tile); return;
    case QT_Q4_K: z_fill_q4_k(j, rows, nr, k0, tile); return;
    case QT_Q6_K: z_fill_q6_k(j, rows, nr, k0, tile); return;
    default:
        break;
    }
    cpu_mm_fill_tile_avx2(j, rows, nr, k0, kc, tmp); /* [nr, MM_KC] */
    for (uint32_t p = 0; p < np; p++) {
        uint32_t b = 2 * p + 1 < nr ? 2 * p + 1 : nr - 1;
        z_pair_rows(tmp + (size_t)(2 * p) * MM_KC, tmp + (size_t)b * MM_KC, tile + (size_t)p * 2 * MM_KC,
                    kc);
    }
}

/*
 * Z_MP pairs times TN tokens over one chunk of len elements (a multiple
 * of 8):
 *   tp   [Z_MP, 2 MM_KC]  paired weights from the chunk's first column
 *                         (pairs at or past np repeat pair np-1)
 *   x    [TN, xs]         activations from the same column
 *   acc  [TN, Z_PAIRS]    accumulators, read (zeros instead on a row's
 *                         first chunk, fresh) and written back
 */
Z_INLINE void z_micro(const int TN, const float *tp, uint32_t np, const float *x, size_t xs,
                      uint32_t len, int fresh, __m512 *acc)
{
    const float *wp[Z_MP];
    __m512 a[4][Z_MP];
#pragma GCC unroll 4
    for (int r = 0; r < Z_MP; r++) {
        wp[r] = tp + (size_t)((uint32_t)r < np ? (uint32_t)r : np - 1) * 2 * MM_KC;
#pragma GCC unroll 4
        for (int t = 0; t < TN; t++)
            a[t][r] = fresh ? _mm512_setzero_ps() : acc[t * Z_PAIRS + r];
    }
    for (uint32_t k = 0; k < len; k += 8) {
        __m512 xv[4];
#pragma GCC unroll 4
        for (int t = 0; t < TN; t++)
            xv[t] = _mm512_castpd_ps(_mm512_broadcast_f64x4(
                _mm256_loadu_pd((const double *)(const void *)(x + t * xs + k))));
#pragma GCC unroll 4
        for (int r = 0; r < Z_MP; r++) {
            __m512 wv = _mm512_load_ps(wp[r] + 2 * k);
#pragma GCC unroll 4
            for (int t = 0; t < TN; t++)
                a[t][r] = _mm512_fmadd_ps(wv, xv[t], a[t][r]);
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < Z_MP; r++) {
#pragma GCC unroll 4
        for (int t = 0; t < TN; t++)
            acc[t * Z_PAIRS + r] = a[t][r];
    }
}

#define Z_MICRO(tn)                                                                          \
    __attribute__((target(Z_TARGET))) static void z_micro_##tn(const float *tp, uint32_t np,  \
                                                              const float *x, size_t xs,     \
                                                              uint32_t len, int fresh,       \
                                                              __m512 *acc)                   \
    {                                                                                        \
        z_micro(tn, tp, np, x, xs, len, fresh, acc);                                         \
    }
Z_MICRO(1)
Z_MICRO(2)
Z_MICRO(3)
Z_MICRO(4)

/* Rows [o0, o0 + nr), nr <= MM_ROWS, times tokens [t0, t0 + nt), nt <=
   Z_TOKS, through the paired tile. */
__attribute__((target(Z_TARGET))) static void z_rows_tiled(const mm_job_t *j, uint32_t o0, uint32_t nr,
                                                            uint32_t t0, uint32_t nt)
{
    static void (*const micro[4])(const float *, uint32_t, const float *, size_t, uint32_t, int, __m512 *) = {
        z_micro_1, z_micro_2, z_micro_3, z_micro_4,
    };
    float tile[MM_ROWS * MM_KC] __attribute__((aligned(64))); /* [np, 2 MM_KC] */
    float tmp[MM_ROWS * MM_KC] __attribute__((aligned(64))); /* [nr, MM_KC] unpaired */
    __m512 acc[Z_TOKS * Z_PAIRS];                             /* [token, pair]: the first chunk's
                                                                 micro-kernels start them */
    const uint8_t *rows = j->w + (size_t)o0 * j->row_bytes;    /* [nr, row_bytes] */
    size_t n_in = j->n_in;
    uint32_t np = (nr + 1) / 2;

    for (uint32_t k0 = 0; k0 < j->n_in; k0 += MM_KC) {
        uint32_t kc = j->n_in - k0 < MM_KC ? j->n_in - k0 : MM_KC;
        z_fill(j, rows, nr, k0, kc, tile, tmp);
        const float *xc = j->x + (size_t)t0 * n_in + k0; /* [nt, n_in] */
        for (uint32_t t = 0; t < nt;) {
            uint32_t tn = nt - t < 4 ? nt - t : 4;
            for (uint32_t p = 0; p < np; p += Z_MP)
                micro[tn - 1](tile + (size_t)p * 2 * MM_KC, np - p, xc + t * n_in, n_in, kc, k0 == 0,
                              acc + t * Z_PAIRS + p);
            t += tn;
        }
    }
    /* each token's sixteen sums at once (vreduce.h: each is hsum8 of its
       half, the same bits), rows in order, the group's nr stored; pairs
       past np hold repeats (up to a whole micro-kernel's Z_MP) or, never
       written, are taken as zeros: lanes not stored */
    __mmask16 keep = (__mmask16)((1u << nr) - 1);
    uint32_t written = (np + Z_MP - 1) / Z_MP * Z_MP;
    for (uint32_t t = 0; t < nt; t++) {
        v16f d[Z_PAIRS];
#pragma GCC unroll 8
        for (int p = 0; p < Z_PAIRS; p++)
            d[p] = (uint32_t)p < written ? (v16f)acc[t * Z_PAIRS + p] : (v16f){ 0 };
        v16f s = reduce16(d); /* lane i: row 2i, lane 8 + i: row 2i + 1 */
        s = __builtin_shufflevector(s, s, 0, 8, 1, 9, 2, 10, 3, 11, 4, 12, 5, 13, 6, 14, 7, 15);
        _mm512_mask_storeu_ps(j->y + (size_t)(t0 + t) * j->n_out + o0, keep, (__m512)s);
    }
}

void cpu_mm_rows_avx512(const mm_job_t *j, uint32_t o0, uint32_t n)
{
    void (*one)(const uint8_t *, size_t, uint32_t, uint32_t, const float *, float *) =
        j->type == QT_Q4_0 ? z_dot1_q4_0 : j->type == QT_Q4_1 ? z_dot1_q4_1
                                         : j->type == QT_Q8_0 ? z_dot1_q8_0 : NULL;
    if (j->n_tok == 1 && one != NULL) {
        one(j->w + (size_t)o0 * j->row_bytes, j->row_bytes, n, j->n_in / QK_SMALL, j->x, j->y + o0);
        return;
    }
    if (j->n_tok == 1 && (j->type == QT_Q4_K || j->type == QT_Q5_K || j->type == QT_Q6_K)) {
        (j->type == QT_Q4_K   ? z_dot1_q4_k
         : j->type == QT_Q5_K ? z_dot1_q5_k
                              : z_dot1_q6_k)(j->w + (size_t)o0 * j->row_bytes, j->row_bytes, n, j->n_in / QK_K,
                                             j->x, j->y + o0);
        return;
    }
    if (j->n_tok <= MM_FEW_TOKS || j->n_in % 8 != 0) { /* the few-token kernels; ragged float rows */
        cpu_mm_rows_avx2(j, o0, n);
        return;
    }
    uint32_t blk = mm_tok_block(j->n_in, n, Z_TOKS);
    for (uint32_t t0 = 0; t0 < j->n_tok; t0 += blk) {
        uint32_t nt = j->n_tok - t0 < blk ? j->n_tok - t0 : blk;
        for (uint32_t g = 0; g < n; g += MM_ROWS)
            z_rows_tiled(j, o0 + g, n - g < MM_ROWS ? n - g : MM_ROWS, t0, nt);
    }
}

#else /* no x86-64 kernels in this build: the driver never calls this */

void cpu_mm_rows_avx512(const mm_job_t *j, uint32_t o0, uint32_t n)
{
    cpu_mm_rows_portable(j, o0, n);
}

#endif
