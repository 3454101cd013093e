/*
 * matmul_q8_x86.h - the CPU_PREC_FAST kernels of one x86 level, a
 * template that matmul_q8_x86.c includes once per level (so no include
 * guard) after defining:
 *   Q8_TARGET      the target attribute's string ("avx2,fma,f16c")
 *   Q8_FN(name)    the level's name for a function (name##_avx2)
 *   Q8_DOT(u, s)   eight int32 lanes, lane l = the sum of u[k] * s[k]
 *                  over bytes 4l .. 4l+3 of two __m256i (u unsigned,
 *                  s signed); every level forms the same exact sums
 *   Q8_ACC(a, u, s) a + Q8_DOT(u, s)
 *   Q8_SIGNED      1 where Q8_ACC takes any unsigned byte (vpdpbusd), so
 *                  that Q8_0 weights go in as w + 128; 0 for vpmaddubsw,
 *                  whose pairs would saturate: abs(w) times sign(x, w)
 *   Q8_TOKS        the most tokens a tile takes at once
 *   Q8_RED1        (optional, default 1) one token by reduce8, not block8
 *   Q8_ZMM         (optional, default 0) 1 where AVX-512 F/BW/VL/VNNI are
 *                  in Q8_TARGET: sixteen-row tiles on zmm (tile16)
 * The results are those of matmul_q8.c's portable kernels, bit for bit:
 * the same exact integer block sums, the same fused multiply-adds.
 *
 * Shape: eight rows per tile, one float lane per row (tile8), up to
 * Q8_TOKS tokens; a Q4_K / Q5_K super-block is eight blocks of 32 there
 * (where Q8_ZMM, every type at eight tokens or more takes sixteen rows
 * a tile on zmm where a row has at most Q8_SB_MAX blocks: tile16,
 * matmul_q8_zmm.h, and a packed matrix (the job's wp) takes them at every
 * token count: tile16p; the K-quant super-block helpers are in
 * matmul_q8_kq.h).  Below Q8_ZMM a packed matrix takes tile8p
 * (matmul_q8_p8.h) at every token count: its sixteen-row tiles as two
 * halves of eight rows.
 * Tokens are taken Q8_TOKS at a time; a task's rows, in groups of about
 * the job's group_bytes, stay in L2 across the token groups, so prefill
 * reads them from cache.
 */

#define Q8_INLINE static inline __attribute__((always_inline, target(Q8_TARGET)))

#ifndef Q8_RED1
#define Q8_RED1 1 /* one token: the in-place rows and reduce8, not block8 */
#endif
#ifndef Q8_RED2
#define Q8_RED2 1 /* the same for two tokens */
#endif
#ifndef Q8_ZMM
#define Q8_ZMM 0
#endif
#ifndef Q8_SB_MAX
#define Q8_SB_MAX 256 /* blocks of rows_type's kept terms */
#endif
/* rows_type's terms of a block at most: the pass's tokens' offset terms
 * and, for the block types' tile16, their scales (Q6_K: its two chain
 * starts; 32 KiB at the AVX512 level, 8 KiB below) */
#define Q8_SBS (2 * Q8_TOKS)
/* a packed matrix's rows keep their terms: tile16p needs them */
_Static_assert(MM_PACK_MAX_NB <= Q8_SB_MAX, "packed rows longer than the kept terms");
#ifndef Q8_PF_L1
#define Q8_PF_L1 (12 * 1024) /* tile8: eight rows past this prefetch to L2, not L1 */
#endif

/* The two or four little-endian bytes at p (a block's f16 scale, and
 * Q4_1's f16 min after it). */
Q8_INLINE short Q8_FN(u16_at)(const uint8_t *p)
{
    uint16_t v;
    memcpy(&v, p, sizeof v);
    return (short)v;
}

Q8_INLINE int Q8_FN(u32_at)(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, sizeof v);
    return (int)v;
}

/*
 * Eight rows of 32 bytes (src[r]: row r's) transposed by dwords: lane r of
 * w[k] holds row r's bytes 4k .. 4k+3.
 */
Q8_INLINE void Q8_FN(transpose8)(const uint8_t *const src[8], __m256i w[8])
{
    __m256i a[8], c[8];
#pragma GCC unroll 8
    for (int r = 0; r < 8; r += 2) {
        __m256i r0 = _mm256_loadu_si256((const __m256i *)(const void *)src[r]);
        __m256i r1 = _mm256_loadu_si256((const __m256i *)(const void *)src[r + 1]);
        a[r] = _mm256_unpacklo_epi32(r0, r1);     /* rows r, r+1: dwords 0 1 | 4 5 */
        a[r + 1] = _mm256_unpackhi_epi32(r0, r1); /* 2 3 | 6 7 */
    }
#pragma GCC unroll 8
    for (int h = 0; h < 8; h += 4) {             /* rows h .. h+3 */
        c[h] = _mm256_unpacklo_epi64(a[h], a[h + 2]);     /* dword 0 | 4 */
        c[h + 1] = _mm256_unpackhi_epi64(a[h], a[h + 2]); /* 1 | 5 */
        c[h + 2] = _mm256_unpacklo_epi64(a[h + 1], a[h + 3]); /* 2 | 6 */
        c[h + 3] = _mm256_unpackhi_epi64(a[h + 1], a[h + 3]); /* 3 | 7 */
    }
#pragma GCC unroll 4
    for (int k = 0; k < 4; k++) {
        w[k] = _mm256_permute2x128_si256(c[k], c[k + 4], 0x20);
        w[k + 4] = _mm256_permute2x128_si256(c[k], c[k + 4], 0x31);
    }
}

/* Eight rows of 32 bytes: transposed (transpose8), or where RED as they lie (w[r]: row r's). */
Q8_INLINE void Q8_FN(load8)(const int RED, const uint8_t *const src[8], __m256i w[8])
{
    if (RED) {
#pragma GCC unroll 8
        for (int r = 0; r < 8; r++)
            w[r] = _mm256_loadu_si256((const __m256i *)(const void *)src[r]);
    } else {
        Q8_FN(transpose8)(src, w);
    }
}

/*
 * Block b of eight rows (blk[r]: row r's block b) as eight registers,
 * lane r of w[k] holding row r's weights 4k .. 4k+3 as bytes (so that one
 * broadcast of the activations' bytes 4k .. 4k+3 meets all eight rows):
 * nibbles for Q4_0 / Q4_1 (unsigned), the signed quants for Q8_0.
 */
Q8_INLINE void Q8_FN(block8)(const qtype_t type, const uint8_t *const blk[8], __m256i w[8])
{
    if (type == QT_Q8_0) {
        const uint8_t *src[8];
#pragma GCC unroll 8
        for (int r = 0; r < 8; r++)
            src[r] = blk[r] + 2;
        Q8_FN(transpose8)(src, w);
    } else { /* rows r and r+4 in one register: 16 bytes of nibbles each */
        const __m256i m15 = _mm256_set1_epi8(15);
        const size_t qo = type == QT_Q4_1 ? 4 : 2;
        __m256i a[4];
#pragma GCC unroll 4
        for (int r = 0; r < 4; r += 2) {
            __m256i r0 = _mm256_loadu2_m128i((const __m128i *)(const void *)(blk[r + 4] + qo),
                                             (const __m128i *)(const void *)(blk[r] + qo));
            __m256i r1 = _mm256_loadu2_m128i((const __m128i *)(const void *)(blk[r + 5] + qo),
                                             (const __m128i *)(const void *)(blk[r + 1] + qo));
            a[r] = _mm256_unpacklo_epi32(r0, r1);
            a[r + 1] = _mm256_unpackhi_epi32(r0, r1);
        }
        __m256i q[4] = { _mm256_unpacklo_epi64(a[0], a[2]), _mm256_unpackhi_epi64(a[0], a[2]),
                         _mm256_unpacklo_epi64(a[1], a[3]), _mm256_unpackhi_epi64(a[1], a[3]) };
#pragma GCC unroll 4
        for (int k = 0; k < 4; k++) { /* bytes 4k..4k+3: elements 4k.. low, 16+4k.. high */
            w[k] = _mm256_and_si256(q[k], m15);
            w[k + 4] = _mm256_and_si256(_mm256_srli_epi16(q[k], 4), m15);
        }
    }
}

/* Lane r of dm: row r's d and m as halves; the d's as floats, the m's in *mw. */
Q8_INLINE __m256 Q8_FN(halves8)(__m256i dm, __m256 *mw)
{
    dm = _mm256_shuffle_epi8(dm, _mm256_setr_epi8(0, 1, 4, 5, 8, 9, 12, 13, 2, 3, 6, 7, 10, 11, 14,
                                                  15, 0, 1, 4, 5, 8, 9, 12, 13, 2, 3, 6, 7, 10, 11,
                                                  14, 15));
    dm = _mm256_permute4x64_epi64(dm, 0xd8);
    *mw = _mm256_cvtph_ps(_mm256_extracti128_si256(dm, 1));
    return _mm256_cvtph_ps(_mm256_castsi256_si128(dm));
}

/* The eight rows' scales of a block (lane r: row r's d, from blk[r]) and,
 * for Q4_1, their mins (*mw). */
Q8_INLINE __m256 Q8_FN(scales8)(const qtype_t type, const uint8_t *const blk[8], __m256 *mw)
{
    if (type == QT_Q4_1) /* d and m of each row, then the d's and the m's together */
        return Q8_FN(halves8)(_mm256_setr_epi32(Q8_FN(u32_at)(blk[0]), Q8_FN(u32_at)(blk[1]),
                                                Q8_FN(u32_at)(blk[2]), Q8_FN(u32_at)(blk[3]),
                                                Q8_FN(u32_at)(blk[4]), Q8_FN(u32_at)(blk[5]),
                                                Q8_FN(u32_at)(blk[6]), Q8_FN(u32_at)(blk[7])), mw);
    return _mm256_cvtph_ps(_mm_setr_epi16(Q8_FN(u16_at)(blk[0]), Q8_FN(u16_at)(blk[1]),
                                          Q8_FN(u16_at)(blk[2]), Q8_FN(u16_at)(blk[3]),
                                          Q8_FN(u16_at)(blk[4]), Q8_FN(u16_at)(blk[5]),
                                          Q8_FN(u16_at)(blk[6]), Q8_FN(u16_at)(blk[7])));
}

/* A tile's R row pointers from row r0 of rows, left = n - r0 of them
 * real: rows past n repeat row n-1 (their sums are not stored). */
Q8_INLINE void Q8_FN(tile_rows)(const int R, const uint8_t *rows, uint32_t r0, uint32_t left,
                                size_t row_bytes, const uint8_t *p[])
{
#pragma GCC unroll 16
    for (int r = 0; r < R; r++)
        p[r] = rows + (size_t)(r0 + ((uint32_t)r < left ? (uint32_t)r : left - 1)) * row_bytes;
}

/* The bytes [pf, pf + bytes) fetched into L1, or where l2 into L2 only. */
Q8_INLINE void Q8_FN(prefetch_run)(uintptr_t pf, size_t bytes, int l2)
{
#pragma GCC unroll 16
    for (size_t l = 0; l < (bytes + 63) / 64; l++) {
        if (l2)
            _mm_prefetch((const char *)(pf + 64 * l), _MM_HINT_T1);
        else
            _mm_prefetch((const char *)(pf + 64 * l), _MM_HINT_T0);
    }
}

/*
 * The other way to the same exact sums, for one or two tokens: block b of
 * eight rows unpacked in place (w[r]: row r's 32 weights as bytes, unsigned
 * nibbles or signed Q8_0 quants), each row's eight lane sums formed
 * against the token's 32 activation bytes, and then reduced so that lane
 * r holds row r's sum (reduce8: unpacks and adds, no horizontal adds).
 */
Q8_INLINE void Q8_FN(rows8)(const qtype_t type, const uint8_t *const blk[8], __m256i w[8])
{
    const __m256i nib = _mm256_setr_epi64x(0x0f0f0f0f0f0f0f0fLL, 0x0f0f0f0f0f0f0f0fLL,
                                           (long long)0xf0f0f0f0f0f0f0f0ULL,
                                           (long long)0xf0f0f0f0f0f0f0f0ULL);
    const __m256i m15 = _mm256_set1_epi8(15), hi4 = _mm256_setr_epi32(0, 0, 0, 0, 4, 4, 4, 4);
#pragma GCC unroll 8
    for (int r = 0; r < 8; r++) {
        if (type == QT_Q8_0) {
            w[r] = _mm256_loadu_si256((const __m256i *)(const void *)(blk[r] + 2));
        } else { /* low nibbles in the low half, high nibbles in the high
                  * half: with vpdpbusd, times 16 (one mask; reduce8 divides
                  * those sums by 16, exactly); vpmaddubsw pairs of 240 x
                  * 127 would saturate, so AVX2 shifts them down */
            __m256i h = _mm256_broadcastsi128_si256(
                _mm_loadu_si128((const __m128i *)(const void *)(blk[r] + (type == QT_Q4_1 ? 4 : 2))));
            w[r] = Q8_SIGNED ? _mm256_and_si256(h, nib)
                             : _mm256_and_si256(_mm256_srlv_epi32(h, hi4), m15);
        }
    }
}

/* [a0+a2, b0+b2, a1+a3, b1+b3 | the same for lanes 4..7] */
Q8_INLINE __m256i Q8_FN(pairsum)(__m256i a, __m256i b)
{
    return _mm256_add_epi32(_mm256_unpacklo_epi32(a, b), _mm256_unpackhi_epi32(a, b));
}

/* Lane r: the sum of v[r]'s eight lanes; with hi16, lanes 4..7 of each
 * v[r] hold 16 times their sums (multiples of 16, so the shift is exact). */
Q8_INLINE __m256i Q8_FN(reduce8)(const int hi16, const __m256i v[8])
{
    __m256i s0 = Q8_FN(pairsum)(v[0], v[1]), s1 = Q8_FN(pairsum)(v[2], v[3]);
    __m256i s2 = Q8_FN(pairsum)(v[4], v[5]), s3 = Q8_FN(pairsum)(v[6], v[7]);
    /* lane k < 4: row k's lanes 0..3, lane 4 + k: its lanes 4..7 */
    __m256i h0 = _mm256_add_epi32(_mm256_unpacklo_epi64(s0, s1), _mm256_unpackhi_epi64(s0, s1));
    __m256i h1 = _mm256_add_epi32(_mm256_unpacklo_epi64(s2, s3), _mm256_unpackhi_epi64(s2, s3));
    __m256i hi = _mm256_permute2x128_si256(h0, h1, 0x31);
    if (hi16)
        hi = _mm256_srai_epi32(hi, 4);
    return _mm256_add_epi32(_mm256_permute2x128_si256(h0, h1, 0x20), hi);
}

/* Whether the type has sixteen-row tiles at this level (matmul_q8_zmm.h). */
Q8_INLINE int Q8_FN(z_type)(qtype_t type)
{
    return Q8_ZMM && (type == QT_Q4_0 || type == QT_Q4_1 || type == QT_Q8_0 || type == QT_Q4_K
                      || type == QT_Q5_K || type == QT_Q6_K);
}

/* Floats a block takes in rows_type's kept terms: the Q8_TOKS tokens'
 * offset terms, and their scales where tile16 reads them from there (the
 * block types; Q4_K and Q5_K keep the compact form); Q6_K's two chain
 * starts (q6_starts). */
Q8_INLINE size_t Q8_FN(sb_stride)(qtype_t type)
{
    return type == QT_Q6_K || (Q8_ZMM && (type == QT_Q4_0 || type == QT_Q4_1 || type == QT_Q8_0))
               ? 2 * Q8_TOKS : Q8_TOKS;
}

/* The start of a Q6_K block's chain over a half of 16 elements: -32 S,
 * S from the half's four lane sums ls (exact integers). */
Q8_INLINE int Q8_FN(q6_start)(const float *ls)
{
    return -32 * (int)((ls[0] + ls[1]) + (ls[2] + ls[3]));
}

/*
 * Q6_K: token t's starts of block b's two chains (q6_start of each half,
 * from the lane sums xls) as int32 in rows_type's kept terms, once a pass
 * for all its tiles: the low half's at sb[b * sb_stride + t], the high
 * half's Q8_TOKS on.  q6_super forms the same itself where there are none.
 */
Q8_INLINE void Q8_FN(q6_starts)(const float *xls, size_t t, size_t nb, size_t b, float *lo, float *hi)
{
    const float *ls = xls + (t * nb + b) * 8;
    const int32_t s[2] = { Q8_FN(q6_start)(ls), Q8_FN(q6_start)(ls + 4) };
    memcpy(lo, &s[0], sizeof s[0]);
    memcpy(hi, &s[1], sizeof s[1]);
}

/*
 * Token t's offset term of block b, from the driver's sums S (xs, an
 * integer below 2^12) and xd * S (xo): Q4_0 8 S and, where Q8_SIGNED, Q8_0
 * 128 S (exact in a float), Q4_1, Q4_K and Q5_K dx * S (rounded once, as
 * matmul.h states); 0 for Q8_0 without Q8_SIGNED.  Q6_K has none
 * (q6_super).
 */
Q8_INLINE float Q8_FN(offset)(const qtype_t type, const float *xs, const float *xo, size_t t,
                              size_t nb, size_t b)
{
    if (type == QT_Q8_0 && !Q8_SIGNED)
        return 0.0f;
    size_t i = t * nb + b;
    return type == QT_Q4_0 ? 8.0f * xs[i] : type == QT_Q8_0 ? 128.0f * xs[i] : xo[i];
}

/*
 * Block b (of 32 elements) of eight rows, for TN tokens from the tile's
 * first: w as block8 (or, where RED, rows8) leaves it, dw the rows' scales
 * (K-quants: d * sc_j) and mw their min terms (Q4_1: m; K-quants: -(dmin * m_j)),
 * added into acc[t] (lane r: row r's one accumulator) in matmul.h's order.
 * Offsets are exact integer terms:
 *   Q4_0  sum (nib - 8) x = sum nib x - 8 S
 *   Q8_0  Q8_SIGNED levels: sum w x = sum (w + 128) x - 128 S (vpdpbusd
 *         takes unsigned weights); else abs(w) times sign(x, w)
 * with S the block's sum of q_x, |S| < 2^12.
 *   xq, xd, xs (S), xo (xd * S): the tile's first token's; sb NULL, or the tokens' offset
 *   terms as offset() gives them, token t's of block b at
 *   sb[b * sb_stride(type) + t]
 */
Q8_INLINE void Q8_FN(block_step)(const int RED, const int TN, const qtype_t type, const __m256i w[8],
                                 __m256 dw, __m256 mw, const int8_t *xq, const float *xd,
                                 const float *xs, const float *xo, const float *sb, size_t n_in,
                                 size_t b, __m256 acc[])
{
    const size_t nb = n_in / QK_SMALL;
    const int hi16 = Q8_SIGNED && (type == QT_Q4_0 || type == QT_Q4_1); /* rows8's high halves */
#pragma GCC unroll 8
    for (int t = 0; t < TN; t++) {
        const int8_t *xb = xq + (size_t)t * n_in + 32 * b;
        float so = sb != NULL ? sb[b * Q8_FN(sb_stride)(type) + (size_t)t]
                              : Q8_FN(offset)(type, xs, xo, t, nb, b);
        __m256i ip;
        if (RED) { /* row r's lane sums, then reduced */
            __m256i xv = _mm256_loadu_si256((const __m256i *)(const void *)xb), v[8];
#pragma GCC unroll 8
            for (int r = 0; r < 8; r++)
                v[r] = type == QT_Q8_0 && !Q8_SIGNED
                           ? Q8_DOT(_mm256_abs_epi8(w[r]), _mm256_sign_epi8(xv, w[r]))
                           : Q8_DOT(w[r], xv);
            ip = Q8_FN(reduce8)(hi16, v);
            if (type == QT_Q4_0 || (type == QT_Q8_0 && Q8_SIGNED))
                ip = _mm256_sub_epi32(ip, _mm256_set1_epi32((int)so));
        } else if (!Q8_SIGNED && type != QT_Q8_0) {
            /* vpmaddubsw's pairs added as int16 before the one vpmaddwd:
             * a lane then holds 16 products of nibbles (Q4_0, Q4_1, Q4_K:
             * all eight registers, |sum| <= 16 * 15 * 127 = 30480) or 8 of
             * Q5_K's five bits (four registers, <= 8 * 31 * 127 = 31496),
             * below 2^15: the same exact sums in fewer instructions */
            const __m256i one = _mm256_set1_epi16(1);
            __m256i p[8];
#pragma GCC unroll 8
            for (int k = 0; k < 8; k++)
                p[k] = _mm256_maddubs_epi16(w[k], _mm256_set1_epi32(Q8_FN(u32_at)((const uint8_t *)xb + 4 * k)));
            __m256i lo = _mm256_add_epi16(_mm256_add_epi16(p[0], p[1]), _mm256_add_epi16(p[2], p[3]));
            __m256i hi = _mm256_add_epi16(_mm256_add_epi16(p[4], p[5]), _mm256_add_epi16(p[6], p[7]));
            if (type == QT_Q5_K)
                ip = _mm256_add_epi32(_mm256_madd_epi16(lo, one), _mm256_madd_epi16(hi, one));
            else
                ip = _mm256_madd_epi16(_mm256_add_epi16(lo, hi), one);
            if (type == QT_Q4_0)
                ip = _mm256_sub_epi32(ip, _mm256_set1_epi32((int)so));
        } else {
            /* NC independent chains of integer multiply-adds (their
             * latency, not their count, bounds one token) */
            const int NC = TN == 1 ? 4 : 2;
            __m256i ic[4] = { _mm256_setzero_si256(), _mm256_setzero_si256(),
                              _mm256_setzero_si256(), _mm256_setzero_si256() };
            if (type == QT_Q4_0 || (type == QT_Q8_0 && Q8_SIGNED))
                ic[0] = _mm256_set1_epi32(-(int)so);
#pragma GCC unroll 8
            for (int k = 0; k < 8; k++) {
                __m256i xv = _mm256_set1_epi32(Q8_FN(u32_at)((const uint8_t *)xb + 4 * k));
                if (type == QT_Q8_0 && !Q8_SIGNED)
                    ic[k % NC] = Q8_ACC(ic[k % NC], _mm256_abs_epi8(w[k]), _mm256_sign_epi8(xv, w[k]));
                else
                    ic[k % NC] = Q8_ACC(ic[k % NC], w[k], xv);
            }
            ip = _mm256_add_epi32(ic[0], ic[1]);
            if (NC == 4)
                ip = _mm256_add_epi32(ip, _mm256_add_epi32(ic[2], ic[3]));
        }
        __m256 dx = _mm256_broadcast_ss(xd + (size_t)t * nb + b);
        acc[t] = _mm256_fmadd_ps(_mm256_mul_ps(dw, dx), _mm256_cvtepi32_ps(ip), acc[t]);
        if (type == QT_Q4_1 || type == QT_Q4_K || type == QT_Q5_K) /* the min term times dx S */
            acc[t] = _mm256_fmadd_ps(mw, _mm256_set1_ps(so), acc[t]);
    }
}

#include "matmul_q8_kq.h"

/*
 * Eight rows [r0, r0 + 8) clamped to n (rows past n repeat row n-1 and
 * are not stored) x TN tokens from t0, in matmul.h's order: float lane r
 * is row r's one accumulator.  Per block, the rows' weights are
 * transposed once (block8) and used by every token; per token, eight
 * integer multiply-adds of a broadcast activation word give the eight
 * rows' exact block sums in one register, so the scale work (convert,
 * one multiply, one or two fused multiply-adds) is done once per block
 * for eight rows (block_step).  Q4_K, Q5_K: per super-block the scales once
 * (k4_scales8); per 32-byte group of nibbles (sub-block 2g in the low
 * nibbles, 2g+1 in the high) one transpose, whose two nibble halves are
 * two blocks; Q5_K's 32 bytes of fifth bits (bit j of byte e: element e
 * of sub-block j) are transposed once per super-block as well.
 *   rows [n, rb]; y [TN, n_out] from the task's first row; sb as block_step
 *   takes it
 */
Q8_INLINE void Q8_FN(tile8)(const int RED, const int TN, const qtype_t type, const size_t bb,
                            const mm_job_t *j, const uint8_t *rows, uint32_t r0, uint32_t n,
                            uint32_t t0, const float *sb, float *y)
{
    const size_t n_in = j->n_in, nb = n_in / QK_SMALL;
    const uint8_t *p[8];
    uint32_t left = n - r0;
    __m256 acc[Q8_TOKS];
    Q8_FN(tile_rows)(8, rows, r0, left, j->row_bytes, p);
#pragma GCC unroll 8
    for (int t = 0; t < TN; t++)
        acc[t] = _mm256_setzero_ps();
    const int8_t *xq = j->xq + (size_t)t0 * n_in;
    const float *xd = j->xd + (size_t)t0 * nb;
    const float *xls = j->xls + (size_t)t0 * nb * 8;
    const float *xs = j->xs + (size_t)t0 * nb, *xo = j->xo + (size_t)t0 * nb;
    /* The eight rows are one contiguous run of 8 * rb bytes, read at 8 * bb
     * bytes a block: fetch the eight rows after the next at that pace, so
     * that they are in cache two tiles on (a prefetch past the end of the
     * matrix is harmless; one tile ahead left two threads at 185 tokens/s
     * on the default model, two give 210 on a Xeon with AVX-512). */
    /* Where the eight rows pass Q8_PF_L1 bytes (1B shapes: Q8_0 rows of
     * 2048, Q4_0 of 5632), this tile and the next would not both fit in
     * a 32 KiB L1: fetch the next into L2 only (Q8_0 decode 1.4x).  K-quants
     * always (1B attn_q, 9 KiB tiles, one token: 289 -> 157 us), a part of
     * the step at a time in their own paths (all of it at once held up the
     * fill buffers: a one-token Q4_K matrix from memory 1.15x). */
    uintptr_t pf = (uintptr_t)rows + (size_t)(r0 + 16) * j->row_bytes;
    const int ksb = type == QT_Q4_K || type == QT_Q5_K || type == QT_Q6_K; /* super-blocks */
    const int pf_l2 = 8 * j->row_bytes > Q8_PF_L1; /* the block types' */
    const size_t bpb = ksb ? 8 : 1; /* activation blocks per weight block */
    for (size_t wb = 0; wb < nb / bpb; wb++, pf += 8 * bb) {
        if (!ksb)
            Q8_FN(prefetch_run)(pf, 8 * bb, pf_l2);
        const uint8_t *blk[8];
#pragma GCC unroll 8
        for (int r = 0; r < 8; r++)
            blk[r] = p[r] + wb * bb;
        __m256i w[8];
        if (type == QT_Q6_K) {
            Q8_FN(q6_super)(TN, blk, xq, xd, xls, sb, n_in, 8 * wb, pf, acc);
            continue;
        }
        if (type == QT_Q4_K || type == QT_Q5_K) {
            Q8_FN(k_super8)(RED, TN, type, blk, NULL, 0, xq, xd, xs, xo, sb, n_in, 8 * wb, pf, 2 * bb,
                            acc);
            continue;
        }
        __m256 mw = _mm256_setzero_ps();
        __m256 dw = Q8_FN(scales8)(type, blk, &mw);
        if (RED)
            Q8_FN(rows8)(type, blk, w);
        else
            Q8_FN(block8)(type, blk, w);
#if Q8_SIGNED
        if (type == QT_Q8_0) {
#pragma GCC unroll 8
            for (int k = 0; k < 8; k++)
                w[k] = _mm256_xor_si256(w[k], _mm256_set1_epi8(-128));
        }
#endif
        Q8_FN(block_step)(RED, TN, type, w, dw, mw, xq, xd, xs, xo, sb, n_in, wb, acc);
    }
#pragma GCC unroll 8
    for (int t = 0; t < TN; t++) {
        float *yt = y + (size_t)t * j->n_out + r0;
        if (left >= 8) {
            _mm256_storeu_ps(yt, acc[t]);
        } else {
            float v[8];
            _mm256_storeu_ps(v, acc[t]);
            for (uint32_t r = 0; r < left; r++)
                yt[r] = v[r];
        }
    }
}

#if Q8_ZMM
#include "matmul_q8_zmm.h"
#else
#include "matmul_q8_p8.h"
#endif

/* One tile8 of eight rows from r0 and m tokens from ts (1 <= m <= Q8_TOKS:
 * Q8_TOKS, eight, or a ragged rest of fewer, which costs the same
 * transposes), y at row r0 and token ts. */
Q8_INLINE void Q8_FN(tile8_m)(const qtype_t type, const size_t bb, const mm_job_t *j,
                              const uint8_t *rows, uint32_t r0, uint32_t n, uint32_t ts,
                              uint32_t m, const float *sb, float *yy)
{
    switch (m) {
    case Q8_TOKS: Q8_FN(tile8)(0, Q8_TOKS, type, bb, j, rows, r0, n, ts, sb, yy); break;
    case 1: Q8_FN(tile8)(Q8_RED1, 1, type, bb, j, rows, r0, n, ts, sb, yy); break;
    case 2: Q8_FN(tile8)(Q8_RED2, 2, type, bb, j, rows, r0, n, ts, sb, yy); break;
#if Q8_TOKS > 4
    case 3: Q8_FN(tile8)(0, 3, type, bb, j, rows, r0, n, ts, sb, yy); break;
    case 4: Q8_FN(tile8)(0, 4, type, bb, j, rows, r0, n, ts, sb, yy); break;
    case 5: Q8_FN(tile8)(0, 5, type, bb, j, rows, r0, n, ts, sb, yy); break;
    case 6: Q8_FN(tile8)(0, 6, type, bb, j, rows, r0, n, ts, sb, yy); break;
    case 7: Q8_FN(tile8)(0, 7, type, bb, j, rows, r0, n, ts, sb, yy); break;
    default: Q8_FN(tile8)(0, 8, type, bb, j, rows, r0, n, ts, sb, yy); break; /* 8 (never 9 .. 15) */
#else
    default: Q8_FN(tile8)(0, 3, type, bb, j, rows, r0, n, ts, sb, yy); break;
#endif
    }
}

/* Rows [0, n) of `rows` (row o0 of the job, a multiple of MM_ROWS: tasks
 * and rows_type's groups are whole MM_ROWS groups, so a packed matrix's
 * tiles start there), tokens [t0, t0 + tn), tn <= Q8_TOKS. */
Q8_INLINE void Q8_FN(group)(const qtype_t type, const size_t bb, const mm_job_t *j,
                            const uint8_t *rows, uint32_t o0, uint32_t n, uint32_t t0,
                            uint32_t tn, const float *sb)
{
    float *y = j->y + (size_t)t0 * j->n_out + o0;
#if Q8_ZMM
    if (j->wp != NULL && mm_pack_type(type) && sb != NULL) { /* packed: every token count */
        for (uint32_t r0 = 0; r0 < n; r0 += MM_PACK_ROWS) /* o0: a whole tile's first row */
            for (uint32_t tt = 0; tt < tn; tt += 16)
                Q8_FN(tile16p_m)(type, bb, j, (o0 + r0) / MM_PACK_ROWS, n - r0, t0 + tt,
                                 tn - tt < 16 ? tn - tt : 16, sb + tt, y + (size_t)tt * j->n_out + r0);
        return;
    }
#else
    if (j->wp != NULL && mm_pack_type(type)) { /* packed: every token count */
        for (uint32_t r0 = 0; r0 < n; r0 += MM_PACK_ROWS) /* o0: a whole tile's first row */
            Q8_FN(tile8p_m)(type, bb, j, (o0 + r0) / MM_PACK_ROWS, n - r0, t0, tn, sb, y + r0);
        return;
    }
#endif
    for (uint32_t r0 = 0; r0 < n;) {
        uint32_t tt = 0;
#if Q8_ZMM
        if (Q8_FN(z_type)(type) && sb != NULL && tn >= 8 && n - r0 > 8) { /* sixteen rows */
            for (; tn - tt >= 8; tt += tn - tt >= 16 ? 16 : 8) {
                if (tn - tt >= 16)
                    Q8_FN(tile16)(16, type, bb, j, rows, r0, n, t0 + tt, sb + tt, y + (size_t)tt * j->n_out);
                else
                    Q8_FN(tile16)(8, type, bb, j, rows, r0, n, t0 + tt, sb + tt, y + (size_t)tt * j->n_out);
            }
            for (uint32_t h = 0; tt < tn && h < 16 && r0 + h < n; h += 8) /* a ragged rest */
                Q8_FN(tile8_m)(type, bb, j, rows, r0 + h, n, t0 + tt, tn - tt, sb + tt,
                               y + (size_t)tt * j->n_out);
            r0 += 16;
            continue;
        }
#endif
        /* eight rows per tile, up to Q8_TOKS tokens */
        for (; tt < tn;) {
            uint32_t m = tn - tt;
            m = m >= Q8_TOKS ? Q8_TOKS : m >= 8 ? 8 : m;
            Q8_FN(tile8_m)(type, bb, j, rows, r0, n, t0 + tt, m, sb != NULL ? sb + tt : NULL,
                           y + (size_t)tt * j->n_out);
            tt += m;
        }
        r0 += 8;
    }
}

/* All tokens for rows [o0, o0 + n): groups of rows, Q8_TOKS tokens at a time. */
Q8_INLINE void Q8_FN(rows_type)(const qtype_t type, const size_t bb, const mm_job_t *j,
                                uint32_t o0, uint32_t n)
{
    const uint32_t tg = Q8_TOKS; /* tokens per pass */
    const size_t nb = j->n_in / QK_SMALL;
    /* the offset terms (and for tile16 the scales; Q6_K's chain starts) of
     * a pass's tokens, block by block, computed once for all
     * its tiles where they fit (else each tile8 computes its own, and
     * tile16 is not used) */
    float sbuf[Q8_SB_MAX * Q8_SBS]; /* Q6_K's: int32 bits (q6_starts) */
    const size_t sbs = Q8_FN(sb_stride)(type);
    const int q6p = type == QT_Q6_K; /* the chains' starts */
    const int keep = !(type == QT_Q8_0 && !Q8_SIGNED) && nb <= Q8_SB_MAX;
    /* Rows a group: decode (one pass) all the task's; else about
     * j->group_bytes of them (whole MM_ROWS groups, at least one), which
     * stay in L2 while every pass of tokens goes over them, so that a
     * pass's terms are gathered once per group (per MM_ROWS rows, when
     * each was formed from lane sums there, they took a quarter of the
     * time at 32 tokens) */
    uint32_t gr = n;
    if (j->n_tok > tg) {
        size_t r = j->group_bytes / j->row_bytes / MM_ROWS * MM_ROWS;
        gr = r < MM_ROWS ? MM_ROWS : r < n ? (uint32_t)r : n;
    }
    for (uint32_t g = 0; g < n; g += gr) {
        uint32_t ng = n - g < gr ? n - g : gr;
        const uint8_t *rows = j->w + (size_t)(o0 + g) * j->row_bytes;
        for (uint32_t t = 0; t < j->n_tok; t += tg) {
            uint32_t tn = j->n_tok - t < tg ? j->n_tok - t : tg;
            if (keep) {
                const float *xs = j->xs + (size_t)t * nb, *xo = j->xo + (size_t)t * nb;
                for (size_t tt = 0; tt < tn; tt++) {
                    for (size_t b = 0; b < nb; b++) {
                        if (q6p) {
                            Q8_FN(q6_starts)(j->xls, t + tt, nb, b, &sbuf[b * sbs + tt],
                                             &sbuf[b * sbs + Q8_TOKS + tt]);
                            continue;
                        }
                        sbuf[b * sbs + tt] = Q8_FN(offset)(type, xs, xo, tt, nb, b);
                        if (sbs > Q8_TOKS) /* tile16's scales */
                            sbuf[b * sbs + Q8_TOKS + tt] = j->xd[(t + tt) * nb + b];
                    }
                }
            }
            Q8_FN(group)(type, bb, j, rows, o0 + g, ng, t, tn, keep ? sbuf : NULL);
        }
    }
}

/*
 * The K-quants' rows_type each a function of its own; the block types'
 * stay inlined into cpu_mmq_rows.  Every kernel above is inlined into its
 * rows_type, so where the code goes is what the compiler schedules as
 * one function, and that moved the speed of unchanged source at the
 * AVX512 level (one thread of a Zen 5 guest, 1B shapes, interleaved
 * runs): all six types in one function (800 KiB) ran Q4_K at 0.6-0.7x
 * of its speed alone once its packed kernels were added; each type alone
 * ran Q8_0's one-token decode at 0.83x of the one function, with the same
 * instructions in the inner loop (cause not found); this split cost
 * Q8_0 about 5% and nothing measurable on Q4_0 (docs/PERFORMANCE.md).
 */
#define Q8_ROWS(name, T, BB)                                                              \
    __attribute__((noinline, target(Q8_TARGET))) static void Q8_FN(rows_##name)(          \
        const mm_job_t *j, uint32_t o0, uint32_t n)                                       \
    {                                                                                     \
        Q8_FN(rows_type)(T, BB, j, o0, n);                                                \
    }
Q8_ROWS(q4_k, QT_Q4_K, 144)
Q8_ROWS(q5_k, QT_Q5_K, 176)
Q8_ROWS(q6_k, QT_Q6_K, MM_Q6_K_BYTES)
#undef Q8_ROWS

__attribute__((target(Q8_TARGET))) void Q8_FN(cpu_mmq_rows)(const mm_job_t *j, uint32_t o0,
                                                            uint32_t n)
{
    switch (j->type) {
    case QT_Q4_0: Q8_FN(rows_type)(QT_Q4_0, 18, j, o0, n); break;
    case QT_Q4_1: Q8_FN(rows_type)(QT_Q4_1, 20, j, o0, n); break;
    case QT_Q8_0: Q8_FN(rows_type)(QT_Q8_0, 34, j, o0, n); break;
    case QT_Q4_K: Q8_FN(rows_q4_k)(j, o0, n); break;
    case QT_Q5_K: Q8_FN(rows_q5_k)(j, o0, n); break;
    case QT_Q6_K: Q8_FN(rows_q6_k)(j, o0, n); break;
    default:      break; /* the driver sends no other type */
    }
}

#undef Q8_INLINE
