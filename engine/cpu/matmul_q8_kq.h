/*
 * matmul_q8_kq.h - part of the matmul_q8_x86.h template, included by it
 * before tile8: the K-quant super-block helpers of the eight-row tiles
 * (k4_scales8: Q4_K / Q5_K scales; q6_super: a Q6_K super-block).  Uses
 * the template's Q8_FN, Q8_INLINE, Q8_TOKS, Q8_ACC and its helpers (u16_at,
 * u32_at, halves8, transpose8, prefetch_run, q6_start); no include guard,
 * as the template has none.
 */

/*
 * A Q4_K or Q5_K super-block of eight rows (blk[r]: row r's block): for each
 * sub-block j, lane r of ks[j] row r's d * sc_j and of km[j] its
 * -(dmin * m_j), rounded as matmul.h states.  The 12 scale bytes, as
 * three dwords A B C per row: sc 0..3 = A & 63, m 0..3 = B & 63, and
 * bytewise sc 4..7 = (C & 15) | (A >> 6) << 4, m 4..7 = (C >> 4) | (B >> 6) << 4
 * (mm_k4_scale_min's packing).
 */
Q8_INLINE void Q8_FN(k4_scales8)(const uint8_t *const blk[8], __m256 ks[8], __m256 km[8])
{
    /* rows r and r + 4's first 16 bytes (d dmin, A, B, C) a register, then transposed by dwords */
    __m256i y[4];
#pragma GCC unroll 4
    for (int r = 0; r < 4; r++)
        y[r] = _mm256_loadu2_m128i((const __m128i *)(const void *)blk[r + 4],
                                   (const __m128i *)(const void *)blk[r]);
    __m256i t0 = _mm256_unpacklo_epi32(y[0], y[1]), t1 = _mm256_unpackhi_epi32(y[0], y[1]);
    __m256i t2 = _mm256_unpacklo_epi32(y[2], y[3]), t3 = _mm256_unpackhi_epi32(y[2], y[3]);
    __m256 dmin, d = Q8_FN(halves8)(_mm256_unpacklo_epi64(t0, t2), &dmin);
    __m256i q[3] = { _mm256_unpackhi_epi64(t0, t2), _mm256_unpacklo_epi64(t1, t3),
                     _mm256_unpackhi_epi64(t1, t3) };
    const __m256i m63 = _mm256_set1_epi32(0x3f3f3f3f), m15 = _mm256_set1_epi32(0x0f0f0f0f);
    const __m256i m48 = _mm256_set1_epi32(0x30303030), ff = _mm256_set1_epi32(0xff);
    const __m256 neg = _mm256_set1_ps(-0.0f);
    __m256i sc[2] = { _mm256_and_si256(q[0], m63),
                      _mm256_or_si256(_mm256_and_si256(q[2], m15),
                                      _mm256_and_si256(_mm256_srli_epi32(q[0], 2), m48)) };
    __m256i mn[2] = { _mm256_and_si256(q[1], m63),
                      _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi32(q[2], 4), m15),
                                      _mm256_and_si256(_mm256_srli_epi32(q[1], 2), m48)) };
#pragma GCC unroll 8
    for (int jj = 0; jj < 8; jj++) {
        __m256i s = _mm256_and_si256(_mm256_srli_epi32(sc[jj / 4], 8 * (jj % 4)), ff);
        __m256i m = _mm256_and_si256(_mm256_srli_epi32(mn[jj / 4], 8 * (jj % 4)), ff);
        ks[jj] = _mm256_mul_ps(d, _mm256_cvtepi32_ps(s));
        km[jj] = _mm256_xor_ps(_mm256_mul_ps(dmin, _mm256_cvtepi32_ps(m)), neg);
    }
}

/*
 * A Q6_K super-block of eight rows (blk[r]: row r's 210 bytes, quant.c's
 * layout) for TN tokens, blocks b0 .. b0+7, in matmul.h's order: per half
 * of 128 elements its two 32-byte groups of low bits and its 32 bytes of
 * high bits transposed once; per block of 32, each row's two exact sums
 * over 16 elements (integer chains over w[0..3] and w[4..7], started at
 * -32 S of their half), times the rows' sub-block scales (vpmulld) and
 * added: P, below 2^24, exact in a float; then one multiply-add.
 */
Q8_INLINE void Q8_FN(q6_super)(const int TN, const uint8_t *const blk[8], const int8_t *xq,
                               const float *xd, const float *xls, size_t n_in, size_t b0,
                               uintptr_t pf, __m256 acc[])
{
    const size_t nb = n_in / QK_SMALL;
    const __m256i m15 = _mm256_set1_epi8(15), m48 = _mm256_set1_epi8(48);
    const __m256 d = _mm256_cvtph_ps(_mm_setr_epi16(
        Q8_FN(u16_at)(blk[0] + 208), Q8_FN(u16_at)(blk[1] + 208), Q8_FN(u16_at)(blk[2] + 208),
        Q8_FN(u16_at)(blk[3] + 208), Q8_FN(u16_at)(blk[4] + 208), Q8_FN(u16_at)(blk[5] + 208),
        Q8_FN(u16_at)(blk[6] + 208), Q8_FN(u16_at)(blk[7] + 208)));
    int32_t scv[16][8] __attribute__((aligned(32))); /* [sub-block][row] */
    for (int r = 0; r < 8; r++)
        for (int k = 0; k < 16; k++)
            scv[k][r] = (int8_t)blk[r][192 + k];
    for (int h = 0; h < 2; h++) {
        const uint8_t *src[8];
        __m256i qa[8], qb[8], qh[8];
#pragma GCC unroll 8
        for (int r = 0; r < 8; r++)
            src[r] = blk[r] + 64 * h;
        Q8_FN(transpose8)(src, qa);
#pragma GCC unroll 8
        for (int r = 0; r < 8; r++)
            src[r] = blk[r] + 64 * h + 32;
        Q8_FN(transpose8)(src, qb);
#pragma GCC unroll 8
        for (int r = 0; r < 8; r++)
            src[r] = blk[r] + 128 + 32 * h;
        Q8_FN(transpose8)(src, qh);
#pragma GCC unroll 4
        for (int part = 0; part < 4; part++) {
            const size_t i = 4 * (size_t)h + (size_t)part, b = b0 + i;
            Q8_FN(prefetch_run)(pf + i * 210, 210, 1); /* pf: tile8's; an eighth of the step */
            __m256i w[8];
#pragma GCC unroll 8
            for (int k = 0; k < 8; k++) {
                __m256i lo = part & 1 ? qb[k] : qa[k];
                lo = _mm256_and_si256(part < 2 ? lo : _mm256_srli_epi16(lo, 4), m15);
                w[k] = _mm256_or_si256(lo, _mm256_and_si256(_mm256_slli_epi16(
                                               _mm256_srli_epi16(qh[k], 2 * part), 4), m48));
            }
            const __m256i sl = _mm256_load_si256((const __m256i *)(const void *)scv[2 * i]);
            const __m256i sh = _mm256_load_si256((const __m256i *)(const void *)scv[2 * i + 1]);
#pragma GCC unroll 8
            for (int t = 0; t < TN; t++) {
                const int8_t *xb = xq + (size_t)t * n_in + 32 * b;
                const float *ls = xls + ((size_t)t * nb + b) * 8; /* exact integers */
                __m256i c[2] = { _mm256_set1_epi32(Q8_FN(q6_start)(ls)),
                                 _mm256_set1_epi32(Q8_FN(q6_start)(ls + 4)) };
#pragma GCC unroll 8
                for (int k = 0; k < 8; k++)
                    c[k / 4] = Q8_ACC(c[k / 4], w[k],
                                      _mm256_set1_epi32(Q8_FN(u32_at)((const uint8_t *)xb + 4 * k)));
                __m256i ip = _mm256_add_epi32(_mm256_mullo_epi32(c[0], sl), _mm256_mullo_epi32(c[1], sh));
                __m256 dx = _mm256_broadcast_ss(xd + (size_t)t * nb + b);
                acc[t] = _mm256_fmadd_ps(_mm256_mul_ps(d, dx), _mm256_cvtepi32_ps(ip), acc[t]);
            }
        }
    }
}
