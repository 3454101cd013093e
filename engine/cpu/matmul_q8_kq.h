/*
 * matmul_q8_kq.h - part of the matmul_q8_x86.h template, included by it
 * before tile8: the K-quant super-block helpers of the eight-row tiles
 * (run8, halves8p: a packed run's half; dwords8; k4_scales8_of,
 * k4_scales8, k_super8: Q4_K / Q5_K; q6_chain_starts,
 * q6_chains, q6_w, q6_step, q6_super: a Q6_K super-block), which tile8p
 * (matmul_q8_p8.h) shares.  Uses the template's Q8_FN, Q8_INLINE,
 * Q8_TOKS, Q8_SIGNED, Q8_ACC and its helpers (u16_at, u32_at, halves8,
 * transpose8, load8, block_step, prefetch_run, sb_stride, q6_start); no
 * include guard, as the template has none.
 */

/*
 * The scales of a Q4_K or Q5_K super-block of eight rows from their d and
 * dmin (lane r: row r's) and q[0..2], lane r the dwords A B C of row r's
 * 12 scale bytes: for each sub-block j, lane r of ks[j] row r's d * sc_j
 * and of km[j] its -(dmin * m_j), rounded as matmul.h states.  sc 0..3 =
 * A & 63, m 0..3 = B & 63, and bytewise sc 4..7 = (C & 15) | (A >> 6) << 4,
 * m 4..7 = (C >> 4) | (B >> 6) << 4 (mm_k4_scale_min's packing).
 */
Q8_INLINE void Q8_FN(k4_scales8_of)(__m256 d, __m256 dmin, const __m256i q[3], __m256 ks[8], __m256 km[8])
{
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

/* Bytes [32h, 32h + 32) of the 64-byte run at p (matmul_kern.h's packed
 * layout): its half h's dwords, rows 8h .. 8h+7's. */
Q8_INLINE __m256i Q8_FN(run8)(const uint8_t *p, int h)
{
    return _mm256_loadu_si256((const __m256i *)(const void *)(p + 32 * h));
}

/* The eight halves of half h of the 32-byte run of halves at p, as floats. */
Q8_INLINE __m256 Q8_FN(halves8p)(const uint8_t *p, int h)
{
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)(p + 16 * h)));
}

/* The 16 bytes at o of eight rows' blocks blk[r], q[s] lane r row r's
 * bytes o + 4s .. o + 4s + 3 (rows r and r + 4 a register, transposed by
 * dwords). */
Q8_INLINE void Q8_FN(dwords8)(const uint8_t *const blk[8], size_t o, __m256i q[4])
{
    __m256i y[4];
#pragma GCC unroll 4
    for (int r = 0; r < 4; r++)
        y[r] = _mm256_loadu2_m128i((const __m128i *)(const void *)(blk[r + 4] + o),
                                   (const __m128i *)(const void *)(blk[r] + o));
    __m256i t0 = _mm256_unpacklo_epi32(y[0], y[1]), t1 = _mm256_unpackhi_epi32(y[0], y[1]);
    __m256i t2 = _mm256_unpacklo_epi32(y[2], y[3]), t3 = _mm256_unpackhi_epi32(y[2], y[3]);
    q[0] = _mm256_unpacklo_epi64(t0, t2);
    q[1] = _mm256_unpackhi_epi64(t0, t2);
    q[2] = _mm256_unpacklo_epi64(t1, t3);
    q[3] = _mm256_unpackhi_epi64(t1, t3);
}

/* k4_scales8_of for eight mapped rows' super-blocks (blk[r]: row r's). */
Q8_INLINE void Q8_FN(k4_scales8)(const uint8_t *const blk[8], __m256 ks[8], __m256 km[8])
{
    __m256i q[4]; /* d dmin, A, B, C */
    Q8_FN(dwords8)(blk, 0, q);
    __m256 dmin, d = Q8_FN(halves8)(q[0], &dmin);
    Q8_FN(k4_scales8_of)(d, dmin, q + 1, ks, km);
}

/* Token t's starts of block b's two chains, from rows_type's kept terms
 * sb (q6_starts), or where it kept none (NULL) from the lane sums xls. */
Q8_INLINE void Q8_FN(q6_chain_starts)(const float *xls, const float *sb, size_t nb, size_t b,
                                      size_t t, __m256i c[2])
{
    if (sb != NULL) {
        const float *sp = sb + b * Q8_FN(sb_stride)(QT_Q6_K) + t;
        c[0] = _mm256_set1_epi32(Q8_FN(u32_at)((const uint8_t *)sp));
        c[1] = _mm256_set1_epi32(Q8_FN(u32_at)((const uint8_t *)(sp + Q8_TOKS)));
    } else {
        const float *ls = xls + (t * nb + b) * 8; /* exact integers */
        c[0] = _mm256_set1_epi32(Q8_FN(q6_start)(ls));
        c[1] = _mm256_set1_epi32(Q8_FN(q6_start)(ls + 4));
    }
}

/*
 * A Q4_K or Q5_K super-block of eight rows for TN tokens, blocks b0 ..
 * b0+7, tile8's steps: per super-block the scales once (k4_scales8); per
 * 32-byte group of nibbles (sub-block 2g in the low nibbles, 2g+1 in the
 * high) one load8, whose two nibble halves are two blocks; Q5_K's 32
 * bytes of fifth bits (bit j of byte e: element e of sub-block j) loaded
 * once as well.  The rows are blk[r] (row r's super-block), or where blk
 * is NULL half h of a packed super-block at pk (matmul_kern.h: a row's
 * byte o >= 4 in the run at 16 o; the same registers, one load each, where
 * transpose8 would make them).  pfb: bytes to prefetch before each group,
 * from pf on (0: none).
 */
Q8_INLINE void Q8_FN(k_super8)(const int RED, const int TN, const qtype_t type,
                               const uint8_t *const blk[8], const uint8_t *pk, int h,
                               const int8_t *xq, const float *xd, const float *xs, const float *xo,
                               const float *sb, size_t n_in, size_t b0, uintptr_t pf, size_t pfb,
                               __m256 acc[])
{
    const __m256i m15 = _mm256_set1_epi8(15), m16 = _mm256_set1_epi8(16);
    const size_t qo = type == QT_Q5_K ? 48 : 16; /* the nibbles */
    __m256 ks[8], km[8];
    __m256i qh[8]; /* Q5_K: the 32 bytes of fifth bits, as q below */
    const uint8_t *src[8];
    if (blk != NULL) {
        Q8_FN(k4_scales8)(blk, ks, km);
    } else {
        const __m256i sq[3] = { Q8_FN(run8)(pk + 64, h), Q8_FN(run8)(pk + 128, h),
                                Q8_FN(run8)(pk + 192, h) };
        Q8_FN(k4_scales8_of)(Q8_FN(halves8p)(pk, h), Q8_FN(halves8p)(pk + 32, h), sq, ks, km);
    }
    if (type == QT_Q5_K) {
        if (blk != NULL) {
#pragma GCC unroll 8
            for (int r = 0; r < 8; r++)
                src[r] = blk[r] + 16;
            Q8_FN(load8)(RED, src, qh);
        } else {
#pragma GCC unroll 8
            for (int k = 0; k < 8; k++)
                qh[k] = Q8_FN(run8)(pk + 16 * 16 + 64 * k, h);
        }
    }
    for (int g = 0; g < 4; g++) {
        if (pfb)
            Q8_FN(prefetch_run)(pf + (size_t)g * pfb, pfb, 1);
        __m256i q[8], w[8];
        if (blk != NULL) {
#pragma GCC unroll 8
            for (int r = 0; r < 8; r++)
                src[r] = blk[r] + qo + 32 * g;
            Q8_FN(load8)(RED, src, q);
        } else {
#pragma GCC unroll 8
            for (int k = 0; k < 8; k++)
                q[k] = Q8_FN(run8)(pk + 16 * (qo + 32 * g) + 64 * k, h);
        }
#pragma GCC unroll 2
        for (int hh = 0; hh < 2; hh++) {
            const int jj = 2 * g + hh; /* the sub-block */
#pragma GCC unroll 8
            for (int k = 0; k < 8; k++) {
                w[k] = _mm256_and_si256(hh ? _mm256_srli_epi16(q[k], 4) : q[k], m15);
                if (type == QT_Q5_K) /* bit jj of each byte, times 16 */
                    w[k] = _mm256_or_si256(w[k], _mm256_and_si256(_mm256_slli_epi16(
                                               _mm256_srli_epi16(qh[k], jj), 4), m16));
            }
            Q8_FN(block_step)(RED, TN, type, w, ks[jj], km[jj], xq, xd, xs, xo, sb, n_in,
                              b0 + (size_t)jj, acc);
        }
    }
}

/*
 * A Q6_K block's two chains over eight rows' six-bit weights w (lane r of
 * w[k] row r's weights 4k .. 4k+3) and the token's 32 bytes xb: c[0] (c[1])
 * plus the sums over elements 0 .. 15 (16 .. 31).  Without Q8_SIGNED,
 * vpmaddubsw's pairs two registers at a time as int16 (four products,
 * at most 4 * 63 * 127 < 2^15), then vpmaddwd: the same exact sums.
 */
Q8_INLINE void Q8_FN(q6_chains)(const __m256i w[8], const int8_t *xb, __m256i c[2])
{
#if Q8_SIGNED
#pragma GCC unroll 8
    for (int k = 0; k < 8; k++)
        c[k / 4] = Q8_ACC(c[k / 4], w[k], _mm256_set1_epi32(Q8_FN(u32_at)((const uint8_t *)xb + 4 * k)));
#else
#pragma GCC unroll 4
    for (int k = 0; k < 8; k += 2) {
        __m256i p = _mm256_add_epi16(
            _mm256_maddubs_epi16(w[k], _mm256_set1_epi32(Q8_FN(u32_at)((const uint8_t *)xb + 4 * k))),
            _mm256_maddubs_epi16(w[k + 1], _mm256_set1_epi32(Q8_FN(u32_at)((const uint8_t *)xb + 4 * k + 4))));
        c[k / 4] = _mm256_add_epi32(c[k / 4], _mm256_madd_epi16(p, _mm256_set1_epi16(1)));
    }
#endif
}

/* Part `part` (0 .. 3) of a half's six-bit weights: the low bits (nibbles
 * of lo, low ones for parts 0 and 1) and bits 2 part, 2 part + 1 of each
 * byte of hi above them (moved to bits 4 and 5 by one shift). */
Q8_INLINE __m256i Q8_FN(q6_w)(__m256i lo, __m256i hi, const int part)
{
    lo = _mm256_and_si256(part < 2 ? lo : _mm256_srli_epi16(lo, 4), _mm256_set1_epi8(15));
    hi = part < 2 ? _mm256_slli_epi16(hi, 4 - 2 * part) : part == 3 ? _mm256_srli_epi16(hi, 2) : hi;
    return _mm256_or_si256(lo, _mm256_and_si256(hi, _mm256_set1_epi8(48)));
}

/* Block b, the i-th (0 .. 7) of a Q6_K super-block of eight rows, for TN
 * tokens: w the rows' weights (q6_w), sr lane r row r's scale bytes
 * 4 (i / 2) .. +3 (those of sub-blocks 2i and 2i + 1 are bytes 2i % 4 and
 * 2i % 4 + 1, sign-extended), d the rows' d; the two chains, times the
 * scales (vpmulld) and added: P, below 2^24, exact in a float; then one
 * multiply-add. */
Q8_INLINE void Q8_FN(q6_step)(const int TN, const __m256i w[8], __m256i sr, int i, __m256 d,
                              const int8_t *xq, const float *xd, const float *xls, const float *sb,
                              size_t n_in, size_t b, __m256 acc[])
{
    const size_t nb = n_in / QK_SMALL;
    const int s0 = 2 * i % 4;
    const __m256i sl = _mm256_srai_epi32(_mm256_sllv_epi32(sr, _mm256_set1_epi32(24 - 8 * s0)), 24);
    const __m256i sh = _mm256_srai_epi32(_mm256_sllv_epi32(sr, _mm256_set1_epi32(16 - 8 * s0)), 24);
#pragma GCC unroll 8
    for (int t = 0; t < TN; t++) {
        __m256i c[2];
        Q8_FN(q6_chain_starts)(xls, sb, nb, b, (size_t)t, c);
        Q8_FN(q6_chains)(w, xq + (size_t)t * n_in + 32 * b, c);
        __m256i ip = _mm256_add_epi32(_mm256_mullo_epi32(c[0], sl), _mm256_mullo_epi32(c[1], sh));
        __m256 dx = _mm256_broadcast_ss(xd + (size_t)t * nb + b);
        acc[t] = _mm256_fmadd_ps(_mm256_mul_ps(d, dx), _mm256_cvtepi32_ps(ip), acc[t]);
    }
}

/*
 * A Q6_K super-block of eight rows (blk[r]: row r's 210 bytes, quant.c's
 * layout) for TN tokens, blocks b0 .. b0+7, in matmul.h's order: the 16
 * scale bytes transposed once; per half of 128 elements its two 32-byte
 * groups of low bits and its 32 bytes of high bits transposed once; per
 * block of 32, each row's two exact sums over 16 elements (integer chains
 * over w[0..3] and w[4..7], started at -32 S of their half) by q6_step.
 */
Q8_INLINE void Q8_FN(q6_super)(const int TN, const uint8_t *const blk[8], const int8_t *xq,
                               const float *xd, const float *xls, const float *sb, size_t n_in,
                               size_t b0, uintptr_t pf, __m256 acc[])
{
    const __m256 d = _mm256_cvtph_ps(_mm_setr_epi16(
        Q8_FN(u16_at)(blk[0] + 208), Q8_FN(u16_at)(blk[1] + 208), Q8_FN(u16_at)(blk[2] + 208),
        Q8_FN(u16_at)(blk[3] + 208), Q8_FN(u16_at)(blk[4] + 208), Q8_FN(u16_at)(blk[5] + 208),
        Q8_FN(u16_at)(blk[6] + 208), Q8_FN(u16_at)(blk[7] + 208)));
    __m256i sq[4]; /* the 16 scale bytes */
    Q8_FN(dwords8)(blk, 192, sq);
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
            for (int k = 0; k < 8; k++)
                w[k] = Q8_FN(q6_w)(part & 1 ? qb[k] : qa[k], qh[k], part);
            Q8_FN(q6_step)(TN, w, sq[i / 2], (int)i, d, xq, xd, xls, sb, n_in, b, acc);
        }
    }
}
