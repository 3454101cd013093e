/*
 * matmul_zblk.h - the weights of the small-block types and of Q6_K (and
 * the bytes Q4_K's and Q5_K's quants are spread from) on 512-bit
 * registers, two rows a register
 * (lanes 0-7 row a, 8-15 row c), for matmul_avx512.c's one-token
 * kernels, which multiply them at once, and for its tile fills, which
 * store them as the paired tile holds them.
 * Each weight is the float that matmul_avx2.c's and matmul_kq_avx2.c's
 * dequantisers give it (see each function), so both uses keep the AVX2
 * kernels' bits.  Include only from code built for the AVX512 level, on
 * x86-64.
 */
#ifndef LLAMAD_CPU_MATMUL_ZBLK_H
#define LLAMAD_CPU_MATMUL_ZBLK_H

#include <immintrin.h>

#include "matmul_avx2.h"

#define Z_TARGET "avx2,fma,f16c,avx512f,avx512bw,avx512vl"
#define Z_INLINE static inline __attribute__((always_inline, target(Z_TARGET)))

/* Block bytes and the offset of the quants in a block of each type. */
#define Z_BB(t) ((t) == QT_Q4_0 ? 18 : (t) == QT_Q4_1 ? 20 : 34)
#define Z_QS(t) ((t) == QT_Q4_1 ? 4 : 2)

/* Sixteen bytes at a in 128-bit lanes 0 and 1, sixteen at c in lanes 2 and 3. */
Z_INLINE __m512i z_pair16(const uint8_t *a, const uint8_t *c)
{
    __m512i v = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)(const void *)a));
    return _mm512_mask_broadcast_i32x4(v, 0xFF00, _mm_loadu_si128((const __m128i *)(const void *)c));
}

/* Sixteen bytes at a and sixteen at c spread for nibble lookups: dword j
   of lanes 0-7 holds a's bytes j and 8 + j (bits 0-7, 8-15), of lanes
   8-15 c's; the rest zero. */
Z_INLINE __m512i z_spread16(const uint8_t *a, const uint8_t *c)
{
    const __m512i spread = _mm512_set_epi32(0x80800f07, 0x80800e06, 0x80800d05, 0x80800c04, 0x80800b03,
                                            0x80800a02, 0x80800901, 0x80800800, 0x80800f07, 0x80800e06,
                                            0x80800d05, 0x80800c04, 0x80800b03, 0x80800a02, 0x80800901,
                                            0x80800800);
    return _mm512_shuffle_epi8(z_pair16(a, c), spread);
}

/* The halves at a and at c, converted exactly: lanes 0-7 a's, 8-15 c's. */
Z_INLINE __m512 z_halves(const uint8_t *a, const uint8_t *c)
{
    __m128 dd = _mm_cvtph_ps(_mm_cvtsi32_si128((int)(rd_u16(a) | (uint32_t)rd_u16(c) << 16)));
    return _mm512_permutexvar_ps(_mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1),
                                 _mm512_castps128_ps512(dd));
}

/* The nibble at bit `shift` of each of q's sixteen dwords, looked up as a
   float (vpermps reads an index's low four bits: an and and a conversion
   in one), times d plus m. */
Z_INLINE __m512 z_nibbles(__m512i q, unsigned shift, __m512 d, __m512 m)
{
    const __m512 iota = _mm512_setr_ps(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    return _mm512_fmadd_ps(_mm512_permutexvar_ps(_mm512_srli_epi32(q, shift), iota), d, m);
}

/*
 * Block b of rows a (lanes 0-7) and c (lanes 8-15): w[k] holds elements
 * 8k .. 8k+7 of each, computed as blk_q4_0 / blk_q4_1 / blk_q8_0 compute
 * them.  The two rows' halves (d, and Q4_1's m) are converted together.
 * The quants reach their lanes by one byte shuffle of both rows' bytes,
 * and a nibble becomes a float by a lookup (one vpermps for an and and a
 * conversion): 22 operations on the two vector ports for 64 weights; a
 * Q4_1 matrix of the default model runs 4.9 weights a cycle at 3 GHz
 * (one thread, hot or streamed alike: bound by the ports).
 */
Z_INLINE void z_blk(const qtype_t type, const uint8_t *a, const uint8_t *c, __m512 w[4])
{
    if (type == QT_Q8_0) {
        /* byte 8k + j into the top byte of dword j: q * 2^24, converted
           exactly; times d * 2^-24 (exact for any half) it is q * d, the
           product blk_q8_0 forms (exact too: 8 by 11 significant bits) */
        const __m512i top0 = _mm512_set_epi32(0x07808080, 0x06808080, 0x05808080, 0x04808080, 0x03808080,
                                              0x02808080, 0x01808080, 0x00808080, 0x07808080, 0x06808080,
                                              0x05808080, 0x04808080, 0x03808080, 0x02808080, 0x01808080,
                                              0x00808080);
        const __m512i top8 = _mm512_add_epi32(top0, _mm512_set1_epi32(0x08000000));
        __m512 d = _mm512_mul_ps(z_halves(a, c), _mm512_set1_ps(0x1p-24f));
        __m512i q0 = z_pair16(a + 2, c + 2), q1 = z_pair16(a + 18, c + 18);
        w[0] = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_shuffle_epi8(q0, top0)), d);
        w[1] = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_shuffle_epi8(q0, top8)), d);
        w[2] = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_shuffle_epi8(q1, top0)), d);
        w[3] = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_shuffle_epi8(q1, top8)), d);
        return;
    }
    /* dword j of each row: quant bytes j and 8 + j, so its four nibbles are
       elements j, 16 + j (bits 0-3, 4-7) and 8 + j, 24 + j (bits 8-11, 12-15) */
    __m512i q = z_spread16(a + Z_QS(type), c + Z_QS(type));
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
    w[0] = z_nibbles(q, 0, d, m);
    w[1] = z_nibbles(q, 8, d, m);
    w[2] = z_nibbles(q, 4, d, m);
    w[3] = z_nibbles(q, 12, d, m);
}

/* 32 bytes at a and 32 at c, interleaved by eights: a's 8u.., c's 8u.. */
Z_INLINE __m512i z_pair32(const uint8_t *a, const uint8_t *c)
{
    return _mm512_permutex2var_epi64(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(const void *)a)),
                                     _mm512_setr_epi64(0, 8, 1, 9, 2, 10, 3, 11),
                                     _mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(const void *)c)));
}

/* kq6_scales of the super-block at b: lane i holds d * scales[i], the
 * same one rounding. */
Z_INLINE __m512 z_k6_scales(const uint8_t *b)
{
    __m512 d = _mm512_set1_ps(ld_f16(b + 208));
    __m512i sc = _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(const void *)(b + 192)));
    return _mm512_mul_ps(d, _mm512_cvtepi32_ps(sc));
}

/* The weights of quarter g of half h of super-blocks a and c (qh: their
 * high bits of half h, z_pair32; sa, sc: z_k6_scales): w[u] holds
 * elements 128h + 32g + 8u .. +7 of a in lanes 0-7, of c in 8-15, each
 * (q - 32) * d * scale as cpu_mm_deq_q6_k_avx2 forms it. */
Z_INLINE void z_k6_quarter(const uint8_t *a, const uint8_t *c, __m512i qh, int h, int g, __m512 sa, __m512 sc,
                           __m512 w[4])
{
    const __m512i m4 = _mm512_set1_epi8(0x0f), m30 = _mm512_set1_epi8(0x30), b32 = _mm512_set1_epi8(32);
    const int k = 8 * h + 2 * g; /* the scales of u = 0, 1; k + 1 those of u = 2, 3 */
    const __m512i s0 = _mm512_setr_epi32(k, k, k, k, k, k, k, k, 16 + k, 16 + k, 16 + k, 16 + k, 16 + k, 16 + k,
                                         16 + k, 16 + k);
    const __m512i s1 = _mm512_add_epi32(s0, _mm512_set1_epi32(1));
    __m512i q = z_pair32(a + 64 * h + 32 * (g & 1), c + 64 * h + 32 * (g & 1));
    q = (g & 2) ? _mm512_and_si512(_mm512_srli_epi16(q, 4), m4) : _mm512_and_si512(q, m4);
    __m512i hb = g == 3 ? _mm512_srli_epi16(qh, 2) : _mm512_slli_epi16(qh, 4 - 2 * g);
    const __m512i q8 = _mm512_sub_epi8(_mm512_or_si512(q, _mm512_and_si512(hb, m30)), b32);
    const __m512 d[2] = { _mm512_permutex2var_ps(sa, s0, sc), _mm512_permutex2var_ps(sa, s1, sc) };
    /* 128-bit lane u widened (the lane a constant: Clang wants one) */
    w[0] = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm512_extracti32x4_epi32(q8, 0))), d[0]);
    w[1] = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm512_extracti32x4_epi32(q8, 1))), d[0]);
    w[2] = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm512_extracti32x4_epi32(q8, 2))), d[1]);
    w[3] = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm512_extracti32x4_epi32(q8, 3))), d[1]);
}

#endif
