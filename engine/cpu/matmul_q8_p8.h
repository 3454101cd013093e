/*
 * matmul_q8_p8.h - part of the matmul_q8_x86.h template, included by it
 * where not Q8_ZMM (the AVX2 and AVX-VNNI levels): tile8 on a packed
 * matrix (matmul_kern.h's layout, tiles of sixteen rows).  Dword r of a
 * run of 64 bytes is row r's, so the run's low 32 bytes are what
 * transpose8 makes of rows 0 .. 7 and its high 32 bytes what it makes of
 * rows 8 .. 15, and a run of halves holds rows 0 .. 7's in its low 16
 * bytes: tile8p takes the tile as two halves of eight rows, each one load
 * where tile8 gathers and transposes, and gives each half tile8's
 * operations on its rows (the same w, scales and block_step), so the
 * same bits.  Uses the template's Q8_FN, Q8_INLINE, Q8_TOKS, Q8_SIGNED,
 * Q8_PF_L1 and its helpers (block_step, run8, halves8p, k_super8, q6_w,
 * q6_step, prefetch_run); no include guard, as the template has none.
 */

/* Block b of half h of a packed Q4_0, Q4_1 or Q8_0 tile (its block at
 * pk): tile8's w, dw and mw, and block_step on them. */
Q8_INLINE void Q8_FN(block8p)(const int TN, const qtype_t type, const uint8_t *pk, int h,
                              const int8_t *xq, const float *xd, const float *xs, const float *xo,
                              const float *sb, size_t n_in, size_t b, __m256 acc[])
{
    const uint8_t *q = pk + MM_PACK_ROWS * mm_pack_halves(type); /* the dword runs */
    __m256 dw = Q8_FN(halves8p)(pk, h), mw = _mm256_setzero_ps();
    if (type == QT_Q4_1)
        mw = Q8_FN(halves8p)(pk + 32, h);
    __m256i w[8];
    if (type == QT_Q8_0) {
#pragma GCC unroll 8
        for (int k = 0; k < 8; k++) {
            w[k] = Q8_FN(run8)(q + 64 * k, h);
#if Q8_SIGNED
            w[k] = _mm256_xor_si256(w[k], _mm256_set1_epi8(-128)); /* vpdpbusd: w + 128 */
#endif
        }
    } else { /* nibble bytes 4k .. 4k+3: elements 4k .. low, 16 + 4k .. high */
        const __m256i m15 = _mm256_set1_epi8(15);
#pragma GCC unroll 4
        for (int k = 0; k < 4; k++) {
            __m256i v = Q8_FN(run8)(q + 64 * k, h);
            w[k] = _mm256_and_si256(v, m15);
            w[k + 4] = _mm256_and_si256(_mm256_srli_epi16(v, 4), m15);
        }
    }
    Q8_FN(block_step)(0, TN, type, w, dw, mw, xq, xd, xs, xo, sb, n_in, b, acc);
}

/*
 * Half h of a packed Q6_K super-block (pk; runs 0 .. 31 the low bits,
 * 32 .. 47 the high bits, 48 .. 51 the scales, then the d's), blocks
 * b0 .. b0+7: q6_super's operations on each block (the same six-bit
 * weights, chains started at -32 S of their half, vpmulld by the
 * sub-blocks' scales, one multiply-add), its weights loaded per block.
 * pfb: bytes to prefetch before each block, from pf on (0: none).
 */
Q8_INLINE void Q8_FN(q6_super8p)(const int TN, const size_t bb, const uint8_t *pk, int h,
                                 const int8_t *xq, const float *xd, const float *xls, const float *sb,
                                 size_t n_in, size_t b0, uintptr_t pf, size_t pfb, __m256 acc[])
{
    const __m256 d = Q8_FN(halves8p)(pk + MM_PACK_ROWS * (bb - mm_pack_tail(QT_Q6_K)), h);
#pragma GCC unroll 1
    for (int i = 0; i < 8; i++) {
        const int hf = i / 4, part = i % 4; /* the half of 128 elements, the part of it */
        const size_t b = b0 + (size_t)i;
        if (pfb)
            Q8_FN(prefetch_run)(pf + (size_t)i * pfb, pfb, 1);
        __m256i w[8];
#pragma GCC unroll 8
        for (int k = 0; k < 8; k++)
            w[k] = Q8_FN(q6_w)(Q8_FN(run8)(pk + 64 * (16 * hf + 8 * (part & 1) + k), h),
                               Q8_FN(run8)(pk + 64 * (32 + 8 * hf + k), h), part);
        Q8_FN(q6_step)(TN, w, Q8_FN(run8)(pk + 64 * (48 + i / 2), h), i, d, xq, xd, xls, sb, n_in, b, acc);
    }
}

/*
 * Tile `tile` of a packed matrix, its first `left` rows stored (y at the
 * tile's first row), TN tokens (1 .. Q8_TOKS) from t0; sb as block_step
 * takes it.  Up to two tokens both halves go through the blocks together
 * (one pass over the tile's bytes, as they come from memory); more
 * tokens take half 0 and then half 1 (its bytes then in cache), so that
 * the accumulators and a block's weights fit the sixteen registers.  The
 * tile two on is prefetched at the pace this one is read (tile16p's rule).
 */
Q8_INLINE void Q8_FN(tile8p)(const int TN, const qtype_t type, const size_t bb, const mm_job_t *j,
                             uint32_t tile, uint32_t left, uint32_t t0, const float *sb, float *y)
{
    const int ksb = type == QT_Q4_K || type == QT_Q5_K || type == QT_Q6_K; /* super-blocks */
    const size_t n_in = j->n_in, nb = n_in / QK_SMALL, tb = MM_PACK_ROWS * bb;
    const size_t nw = ksb ? nb / 8 : nb; /* weight blocks a row */
    const uint8_t *tp = j->wp + (size_t)tile * nw * tb;
    const int8_t *xq = j->xq + (size_t)t0 * n_in;
    const float *xd = j->xd + (size_t)t0 * nb, *xls = j->xls + (size_t)t0 * nb * 8;
    const float *xs = j->xs + (size_t)t0 * nb, *xo = j->xo + (size_t)t0 * nb;
    const int NH = TN <= 2 ? 2 : 1;        /* halves a pass takes */
    const int nh = left > 8 ? 2 : 1;       /* halves with rows to store */
    const int pf_l2 = 8 * j->row_bytes > Q8_PF_L1;
    __m256 acc[2 * Q8_TOKS];
    for (int h0 = 0; h0 < nh; h0 += NH) { /* this pass's halves: h0 + hr, hr < NH, below nh */
#pragma GCC unroll 8
        for (int t = 0; t < NH * TN; t++)
            acc[t] = _mm256_setzero_ps();
        /* the first pass prefetches the tile two on: K-quants an eighth of
         * a super-block before each group (Q6_K: a sixteenth before each
         * block) where both halves go together, twice that where one */
        const size_t pfk = h0 == 0 ? tb / (4 * (size_t)NH) : 0;
        const size_t pf6 = h0 == 0 ? tb / (8 * (size_t)NH) : 0;
        uintptr_t pf = (uintptr_t)tp + 2 * nw * tb;
        for (size_t wb = 0; wb < nw; wb++, pf += tb) {
            const uint8_t *blk = tp + wb * tb;
            if (!ksb && h0 == 0)
                Q8_FN(prefetch_run)(pf, tb, pf_l2);
#pragma GCC unroll 2
            for (int hr = 0; hr < NH; hr++) {
                const int h = h0 + hr;
                if (h >= nh)
                    break;
                __m256 *a = acc + hr * TN;
                if (type == QT_Q6_K)
                    Q8_FN(q6_super8p)(TN, bb, blk, h, xq, xd, xls, sb, n_in, 8 * wb,
                                      pf + (size_t)hr * 8 * pf6, pf6, a);
                else if (ksb)
                    Q8_FN(k_super8)(0, TN, type, NULL, blk, h, xq, xd, xs, xo, sb, n_in, 8 * wb,
                                    pf + (size_t)hr * 4 * pfk, pfk, a);
                else
                    Q8_FN(block8p)(TN, type, blk, h, xq, xd, xs, xo, sb, n_in, wb, a);
            }
        }
#pragma GCC unroll 2
        for (int hr = 0; hr < NH; hr++) {
            if (h0 + hr >= nh)
                break;
            const uint32_t r8 = 8 * (uint32_t)(h0 + hr); /* the half's first row */
            const uint32_t nr = left - r8 < 8 ? left - r8 : 8;
#pragma GCC unroll 4
            for (int t = 0; t < TN; t++) {
                float *yt = y + (size_t)t * j->n_out + r8;
                if (nr == 8) {
                    _mm256_storeu_ps(yt, acc[hr * TN + t]);
                } else {
                    float v[8];
                    _mm256_storeu_ps(v, acc[hr * TN + t]);
                    for (uint32_t r = 0; r < nr; r++)
                        yt[r] = v[r];
                }
            }
        }
    }
}

/* tile8p for m tokens (1 .. Q8_TOKS), each count its own unrolled tile. */
Q8_INLINE void Q8_FN(tile8p_m)(const qtype_t type, const size_t bb, const mm_job_t *j,
                               uint32_t tile, uint32_t left, uint32_t t0, uint32_t m,
                               const float *sb, float *y)
{
    _Static_assert(Q8_TOKS == 4, "tile8p_m's cases");
    switch (m) {
    case 1:  Q8_FN(tile8p)(1, type, bb, j, tile, left, t0, sb, y); break;
    case 2:  Q8_FN(tile8p)(2, type, bb, j, tile, left, t0, sb, y); break;
    case 3:  Q8_FN(tile8p)(3, type, bb, j, tile, left, t0, sb, y); break;
    default: Q8_FN(tile8p)(4, type, bb, j, tile, left, t0, sb, y); break; /* 4 */
    }
}
