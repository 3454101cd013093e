/*
 * matmul_avx2.h - internal to cpu_matmul's x86-64 kernels (matmul_avx2.c,
 * matmul_kq_avx2.c): the target attributes, small load helpers, the fixed
 * horizontal sum of matmul.h, and the K-quant weight decoders that the
 * tile fillers and the few-token kernels share, so that a weight is the
 * same float on either path.  Include it only inside the files'
 * x86-64 + GCC/clang block.
 */
#ifndef LLAMAD_CPU_MATMUL_AVX2_H
#define LLAMAD_CPU_MATMUL_AVX2_H

#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#include "matmul_kern.h"

#define AVX2 __attribute__((target("avx2,fma,f16c")))
#define AVX2_INLINE static inline __attribute__((always_inline, target("avx2,fma,f16c")))

static inline uint16_t rd_u16(const uint8_t *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}

static inline uint32_t rd_u32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, sizeof v); /* little-endian host */
    return v;
}

/* The half at p, converted exactly and broadcast to eight lanes. */
AVX2_INLINE __m256 bcast_f16(const uint8_t *p)
{
    return _mm256_broadcastss_ps(_mm_cvtph_ps(_mm_cvtsi32_si128(rd_u16(p))));
}

/* Eight bytes at p, zero- or sign-extended to eight int32 lanes. */
AVX2_INLINE __m256i load8_u8(const uint8_t *p)
{
    return _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(const void *)p));
}

AVX2_INLINE __m256i load8_i8(const uint8_t *p)
{
    return _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(const void *)p));
}

/* Prefetch the line at base + off into L1.  The address may lie past the
 * end of the matrix (a prefetch never faults), so it is formed as an
 * integer, not by pointer arithmetic. */
AVX2_INLINE void prefetch_at(const void *base, size_t off)
{
    _mm_prefetch((const char *)((uintptr_t)base + off), _MM_HINT_T0);
}

/*
 * Where the few-token kernels' prefetches start for the group of rm rows
 * from row r0 (rows rb bytes apart), as an offset from the matrix.  The
 * group reads its rows side by side, rm streams a block at a time, and
 * prefetches one run of rm * rb bytes at rm block lengths a block, from
 * here on: at least min_ahead bytes past the group's start, and never
 * less than a whole group ahead, so its last row is covered from its
 * first block.  (With min_ahead alone, rows longer than min_ahead /
 * (rm - 1) bytes were read cold for their first blocks: a 1B model's
 * ffn_down, one token, at 60-75% of the rate of the same matrix in
 * cache.)  A task's first group is left to the task before it on the
 * thread, or to the hardware prefetchers.
 */
AVX2_INLINE size_t group_ahead(uint32_t r0, uint32_t rm, size_t rb, size_t min_ahead)
{
    size_t run = (size_t)rm * rb;
    return (size_t)r0 * rb + (run > min_ahead ? run : min_ahead);
}

/*
 * Where a row of a tile fill prefetches next, as a byte offset from the
 * row's pointer at its chunk [k0, k0 + kc) (byte off of the row, cb bytes
 * long): its next chunk (cb), or after its last chunk the first chunk of
 * the row MM_ROWS further on (the next group; past the end of the matrix
 * a prefetch is harmless).  The float fills' one rule
 * (cpu_mm_fill_tile_avx2, the 512-bit tile's z_pair_of).
 */
AVX2_INLINE size_t fill_ahead(const mm_job_t *j, uint32_t k0, uint32_t kc, size_t off, size_t cb)
{
    return k0 + kc < j->n_in ? cb : (size_t)MM_ROWS * j->row_bytes - off;
}

/* Lanes [0, n) set, for a tail of n < 8 elements. */
AVX2_INLINE __m256i tail_mask(uint32_t n)
{
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

/* The fixed horizontal sum of matmul.h: ((l0+l4) + (l2+l6)) + ((l1+l5) + (l3+l7)). */
AVX2_INLINE float hsum8(__m256 a)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* The half at p as a float. */
AVX2_INLINE float ld_f16(const uint8_t *p)
{
    return _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(rd_u16(p))));
}

/*
 * Q4_K and Q5_K (block bytes 144 / 176): sub-blocks 2p and 2p+1 are the
 * low and high nibbles of qs[32p .. 32p+31]; Q5_K adds bit j of qh[l] as
 * bit 4 of element l of sub-block j.  A weight of sub-block j is
 * fma(q, ds[j], nm[j]) with ds[j] = d * sc_j and nm[j] = -(dmin * m_j)
 * from kq4_scales_v (kq4_scales: the same into arrays): one rounding, the
 * same on every path.
 */
AVX2_INLINE void kq4_scales_v(const uint8_t *b, __m256 *ds, __m256 *nm)
{
    /* mm_k4_scale_min for all eight sub-blocks at once, a byte each:
     * j < 4 from the low six bits of bytes j and j + 4, j >= 4 from the
     * nibbles of byte j + 4 with the top two bits of bytes j - 4 and j. */
    uint32_t w0 = rd_u32(b + 4), w1 = rd_u32(b + 8), w2 = rd_u32(b + 12);
    uint32_t sc_hi = (w2 & 0x0f0f0f0fu) | ((w0 >> 6) & 0x03030303u) << 4;
    uint32_t m_hi = ((w2 >> 4) & 0x0f0f0f0fu) | ((w1 >> 6) & 0x03030303u) << 4;
    uint64_t sc = (w0 & 0x3f3f3f3fu) | (uint64_t)sc_hi << 32;
    uint64_t m = (w1 & 0x3f3f3f3fu) | (uint64_t)m_hi << 32;
    __m256 scf = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_cvtsi64_si128((long long)sc)));
    __m256 mf = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_cvtsi64_si128((long long)m)));
    *ds = _mm256_mul_ps(_mm256_set1_ps(ld_f16(b)), scf);
    *nm = _mm256_xor_ps(_mm256_mul_ps(_mm256_set1_ps(ld_f16(b + 2)), mf), _mm256_set1_ps(-0.0f));
}

/* The same into arrays. */
AVX2_INLINE void kq4_scales(const uint8_t *b, float ds[8], float nm[8])
{
    __m256 d, m;
    kq4_scales_v(b, &d, &m);
    _mm256_storeu_ps(ds, d);
    _mm256_storeu_ps(nm, m);
}

/* Bytes v as four vectors of eight int32 (elements 8u .. 8u + 7 in q[u]),
 * zero- or sign-extended, then converted to float (exactly: |v| < 2^8). */
AVX2_INLINE void bytes32_ps(__m256i v, int sign, __m256 q[4])
{
    __m128i lo = _mm256_castsi256_si128(v), hi = _mm256_extracti128_si256(v, 1);
    __m128i part[4] = {lo, _mm_srli_si128(lo, 8), hi, _mm_srli_si128(hi, 8)};
#pragma GCC unroll 4
    for (int u = 0; u < 4; u++)
        q[u] = _mm256_cvtepi32_ps(sign ? _mm256_cvtepi8_epi32(part[u]) : _mm256_cvtepu8_epi32(part[u]));
}

/* Bytes 0..15 of p in both 128-bit lanes. */
AVX2_INLINE __m256i bcast16(const uint8_t *p)
{
    return _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(const void *)p));
}

/* The byte shuffle that zero-extends bytes 8u .. 8u + 7 (u = 0, 1) of a
 * 128-bit lane into dwords: 8u .. 8u + 3 into the low lane's four, 8u +
 * 4 .. 8u + 7 into the high lane's (the same sixteen bytes in both
 * lanes, as bcast16 loads them). */
AVX2_INLINE __m256i spread8(int u)
{
    const char b = (char)(8 * u);
    return _mm256_setr_epi8(b, -1, -1, -1, b + 1, -1, -1, -1, b + 2, -1, -1, -1, b + 3, -1, -1, -1, b + 4, -1,
                            -1, -1, b + 5, -1, -1, -1, b + 6, -1, -1, -1, b + 7, -1, -1, -1);
}

/* Bytes v (the same sixteen in both lanes) as two vectors of eight
 * floats: bytes 0..7 in q[0], 8..15 in q[1], each zero-extended into its
 * dword by one byte shuffle (spread8) and converted (exactly: v < 2^8).
 * Three shuffles fewer for 32 bytes than bytes32_ps's extract, two moves
 * down and four zero-extensions. */
AVX2_INLINE void bytes16_ps(__m256i v, __m256 q[2])
{
#pragma GCC unroll 2
    for (int u = 0; u < 2; u++)
        q[u] = _mm256_cvtepi32_ps(_mm256_shuffle_epi8(v, spread8(u)));
}

/* The quants q of elements 32j .. 32j + 31 of the super-block at b, as
 * floats, elements 32j + 8u .. + 7 in q[u]; hi is j & 1 (a constant at
 * every call).  Formed a byte each and widened after: the values of the
 * per-element formula, with a fraction of its integer operations.  Q4_K
 * takes sixteen bytes at a time in both lanes (bytes16_ps); Q5_K all 32
 * at once (bytes32_ps): sixteen at a time measured no faster there, with
 * its high bits' operations, and slower for Q6_K in kq6_q32. */
AVX2_INLINE void kq4_q32(const uint8_t *b, int five, int j, int hi, __m256 q[4])
{
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    if (!five) {
#pragma GCC unroll 2
        for (int s = 0; s < 2; s++) {
            __m256i v = bcast16(b + 16 + 32 * (j / 2) + 16 * s);
            bytes16_ps(hi ? _mm256_and_si256(_mm256_srli_epi16(v, 4), m4) : _mm256_and_si256(v, m4), q + 2 * s);
        }
        return;
    }
    __m256i v = _mm256_loadu_si256((const __m256i *)(const void *)(b + 48 + 32 * (j / 2)));
    v = hi ? _mm256_and_si256(_mm256_srli_epi16(v, 4), m4) : _mm256_and_si256(v, m4);
    /* bit j of qh[l] to bit 4 (16-bit shifts: the mask drops what crosses bytes) */
    __m256i h = _mm256_loadu_si256((const __m256i *)(const void *)(b + 16));
    h = j < 4 ? _mm256_slli_epi16(h, 4 - j) : _mm256_srli_epi16(h, j - 4);
    v = _mm256_or_si256(v, _mm256_and_si256(h, _mm256_set1_epi8(0x10)));
    bytes32_ps(v, 0, q);
}

/*
 * Q6_K (210 bytes): per half h (128 elements) and l in 0..31, elements
 * l, l+32, l+64, l+96 of the half (quarter g = 0..3) take the low nibble
 * of ql[l], low of ql[l+32], high of ql[l], high of ql[l+32], with bits
 * 2g, 2g+1 of qh[l] on top; minus 32; times d * scales[e / 16] (rounded
 * as quant.c rounds it; kq6_scale).  kq6_q32: q - 32 for elements
 * 32g + 8u .. 32g + 8u + 7 of half h in q[u], as floats, formed a byte
 * each as kq4_q32 forms its quants.
 */
AVX2_INLINE void kq6_q32(const uint8_t *b, int h, int g, __m256 q[4])
{
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    __m256i a = _mm256_loadu_si256((const __m256i *)(const void *)(b + 64 * h + 32 * (g & 1)));
    a = (g & 2) ? _mm256_and_si256(_mm256_srli_epi16(a, 4), m4) : _mm256_and_si256(a, m4);
    __m256i hb = _mm256_loadu_si256((const __m256i *)(const void *)(b + 128 + 32 * h));
    hb = g == 3 ? _mm256_srli_epi16(hb, 2) : _mm256_slli_epi16(hb, 4 - 2 * g); /* bits 2g, 2g+1 to 4, 5 */
    hb = _mm256_and_si256(hb, _mm256_set1_epi8(0x30));
    bytes32_ps(_mm256_sub_epi8(_mm256_or_si256(a, hb), _mm256_set1_epi8(32)), 1, q);
}

/*
 * The sixteen scales of a Q6_K block, sd[i] = d * scales[i] (one
 * rounding; d the block's, converted): elements 32g + l .. +7 of half h
 * take sd[8h + 2g + l / 16].
 */
AVX2_INLINE void kq6_scales(const uint8_t *b, float sd[16])
{
    __m256 d = _mm256_set1_ps(ld_f16(b + 208));
    __m128i sc = _mm_loadu_si128((const __m128i *)(const void *)(b + 192));
    _mm256_storeu_ps(sd, _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(sc))));
    _mm256_storeu_ps(sd + 8, _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(sc, 8)))));
}

/* nb super-blocks at b into nb * 256 floats at out (matmul_kq_avx2.c). */
void cpu_mm_deq_q4_k_avx2(const uint8_t *b, float *out, uint32_t nb);
void cpu_mm_deq_q5_k_avx2(const uint8_t *b, float *out, uint32_t nb);
void cpu_mm_deq_q6_k_avx2(const uint8_t *b, float *out, uint32_t nb);

/*
 * Rows [o0, o0 + n) of a Q4_K, Q5_K or Q6_K job, every token, without the
 * tile: for a few tokens (matmul_avx2.c's MM_FEW_TOKS).  The same
 * operations on each accumulator as the tile path, so the same bits.
 */
void cpu_mm_dot_k_avx2(const mm_job_t *j, uint32_t o0, uint32_t n);

#endif
