/*
 * matmul_q8_x86.h - the CPU_PREC_FAST kernels of one x86 level, a
 * template that matmul_q8_x86.c includes once per level (so no include
 * guard) after defining:
 *   Q8_TARGET      the target attribute's string ("avx2,fma,f16c")
 *   Q8_FN(name)    the level's name for a function (name##_avx2)
 *   Q8_DOT(u, s)   eight int32 lanes, lane l = the sum of u[k] * s[k]
 *                  over bytes 4l .. 4l+3 of two __m256i (u unsigned,
 *                  s signed); every level forms the same exact sums
 * The results are those of matmul_q8.c's portable kernels, bit for bit:
 * the same integer lane sums, the same fused multiply-adds per lane.
 *
 * Shape: tokens are taken up to four at a time; for each token group,
 * RM rows at a time walk their blocks, and each block's weights are
 * unpacked once into registers and used by every token of the group
 * (RM x TN accumulators).  A task's rows (MM_ROWS-row groups) stay in
 * L1 / L2 across the token groups, so prefill reads them from cache.
 */

#define Q8_INLINE static inline __attribute__((always_inline, target(Q8_TARGET)))

#ifndef Q8_PF_BYTES
#define Q8_PF_BYTES 2048 /* how far ahead the kernels prefetch, as matmul_avx2.c's */
#endif

/* 16 bytes of nibbles to 32 bytes in element order: low nibbles, then high. */
Q8_INLINE __m256i Q8_FN(nib32)(const uint8_t *qs)
{
    const __m128i m15 = _mm_set1_epi8(15);
    __m128i q = _mm_loadu_si128((const __m128i *)(const void *)qs);
    return _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(q, 4), m15), _mm_and_si128(q, m15));
}

Q8_INLINE __m256 Q8_FN(half)(const uint8_t *p)
{
    return _mm256_broadcastss_ps(_mm_cvtph_ps(_mm_cvtsi32_si128(p[0] | (p[1] << 8))));
}

/* The fixed horizontal sum of matmul.h. */
Q8_INLINE float Q8_FN(hsum)(__m256 a)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* Row pointers of a tile (rows past n repeat row n-1) and zeroed accumulators. */
Q8_INLINE void Q8_FN(tile_start)(const int RM, const int TN, const mm_job_t *j, const uint8_t *rows,
                                 uint32_t r0, uint32_t n, const uint8_t *p[4], __m256 acc[4][4])
{
    uint32_t left = n - r0;
#pragma GCC unroll 4
    for (int r = 0; r < RM; r++) {
        p[r] = rows + (size_t)(r0 + ((uint32_t)r < left ? (uint32_t)r : left - 1)) * j->row_bytes;
#pragma GCC unroll 4
        for (int t = 0; t < TN; t++)
            acc[t][r] = _mm256_setzero_ps();
    }
}

/* The tile's sums into y [TN, n_out] (from the task's first row), rows below n. */
Q8_INLINE void Q8_FN(tile_store)(const int RM, const int TN, const mm_job_t *j, uint32_t r0,
                                 uint32_t n, __m256 acc[4][4], float *y)
{
#pragma GCC unroll 4
    for (int r = 0; r < RM; r++) {
        if (r0 + (uint32_t)r < n) {
#pragma GCC unroll 4
            for (int t = 0; t < TN; t++)
                y[(size_t)t * j->n_out + r0 + r] = Q8_FN(hsum)(acc[t][r]);
        }
    }
}

/*
 * RM rows x TN tokens, rows [r0, r0 + RM) clamped to n (rows past n
 * repeat row n-1 and are not stored), small-block types.
 *   rows [n, rb]; tokens t0 .. t0+TN-1 of the job
 */
Q8_INLINE void Q8_FN(tile_small)(const int RM, const int TN, const qtype_t type, const size_t bb,
                                 const mm_job_t *j, const uint8_t *rows, uint32_t r0, uint32_t n,
                                 uint32_t t0, float *y)
{
    uint32_t nb = j->n_in / QK_SMALL;
    const uint8_t *p[4];
    __m256 acc[4][4];
    Q8_FN(tile_start)(RM, TN, j, rows, r0, n, p, acc);
    const int8_t *xq = j->xq + (size_t)t0 * j->n_in;
    const float *xd = j->xd + (size_t)t0 * nb;
    const float *xls = j->xls + (size_t)t0 * nb * 8;
    const float *xms = j->xms + (size_t)t0 * nb * 8;
    /* The RM rows are one contiguous run of RM * rb bytes, read at RM * bb
     * bytes a block: keep the lines Q8_PF_BYTES ahead of that pace (a
     * prefetch past the end of the matrix is harmless). */
    uintptr_t pf = (uintptr_t)rows + (size_t)r0 * j->row_bytes + Q8_PF_BYTES;
    for (uint32_t b = 0; b < nb; b++, pf += RM * bb) {
#pragma GCC unroll 4
        for (size_t l = 0; l < (RM * bb + 63) / 64; l++)
            _mm_prefetch((const char *)(pf + 64 * l), _MM_HINT_T0);
        __m256i xv[4];
        __m256 dx[4];
#pragma GCC unroll 4
        for (int t = 0; t < TN; t++) {
            xv[t] = _mm256_loadu_si256((const __m256i *)(const void *)(xq + (size_t)t * j->n_in + 32 * (size_t)b));
            dx[t] = _mm256_broadcast_ss(xd + (size_t)t * nb + b);
        }
#pragma GCC unroll 4
        for (int r = 0; r < RM; r++) {
            const uint8_t *blk = p[r] + b * bb;
            __m256 dw, mw = _mm256_setzero_ps();
            __m256i wv;
            if (type == QT_Q4_1) { /* d and m converted together */
                __m128 dm = _mm_cvtph_ps(_mm_cvtsi32_si128((int)((uint32_t)blk[0] | (uint32_t)blk[1] << 8 | (uint32_t)blk[2] << 16 | (uint32_t)blk[3] << 24)));
                dw = _mm256_broadcastss_ps(dm);
                mw = _mm256_broadcastss_ps(_mm_movehdup_ps(dm));
                wv = Q8_FN(nib32)(blk + 4);
            } else {
                dw = Q8_FN(half)(blk);
                wv = type == QT_Q8_0 ? _mm256_loadu_si256((const __m256i *)(const void *)(blk + 2))
                                     : Q8_FN(nib32)(blk + 2);
            }
            __m256i wa = type == QT_Q8_0 ? _mm256_abs_epi8(wv) : wv;
#pragma GCC unroll 4
            for (int t = 0; t < TN; t++) {
                const float *s = xls + ((size_t)t * nb + b) * 8; /* lane sums of x */
                __m256 pl;
                if (type == QT_Q8_0) {
                    pl = _mm256_cvtepi32_ps(Q8_DOT(wa, _mm256_sign_epi8(xv[t], wv)));
                } else if (type == QT_Q4_0) {
                    /* (q - 8) x = q x - 8 x lane by lane: integers below
                     * 2^24, so the float arithmetic is exact */
                    pl = _mm256_fnmadd_ps(_mm256_set1_ps(8.0f), _mm256_loadu_ps(s),
                                          _mm256_cvtepi32_ps(Q8_DOT(wa, xv[t])));
                } else {
                    pl = _mm256_cvtepi32_ps(Q8_DOT(wa, xv[t]));
                }
                acc[t][r] = _mm256_fmadd_ps(_mm256_mul_ps(dw, dx[t]), pl, acc[t][r]);
                if (type == QT_Q4_1) /* the min times dx * lane sums */
                    acc[t][r] = _mm256_fmadd_ps(mw, _mm256_loadu_ps(xms + ((size_t)t * nb + b) * 8), acc[t][r]);
            }
        }
    }
    Q8_FN(tile_store)(RM, TN, j, r0, n, acc, y);
}

/* The same for Q4_K: a super-block of 256 is eight activation blocks. */
Q8_INLINE void Q8_FN(tile_k4)(const int RM, const int TN, const mm_job_t *j, const uint8_t *rows,
                              uint32_t r0, uint32_t n, uint32_t t0, float *y)
{
    const __m256i m15 = _mm256_set1_epi8(15);
    uint32_t nb = j->n_in / QK_SMALL;
    const uint8_t *p[4];
    __m256 acc[4][4];
    Q8_FN(tile_start)(RM, TN, j, rows, r0, n, p, acc);
    const int8_t *xq = j->xq + (size_t)t0 * j->n_in;
    const float *xd = j->xd + (size_t)t0 * nb;
    const float *xms = j->xms + (size_t)t0 * nb * 8;
    uintptr_t pf = (uintptr_t)rows + (size_t)r0 * j->row_bytes + Q8_PF_BYTES;
    for (uint32_t s = 0; s < nb / 8; s++, pf += RM * 144) {
        for (int l = 0; l < RM * 144; l += 64)
            _mm_prefetch((const char *)(pf + (size_t)l), _MM_HINT_T0);
#pragma GCC unroll 4
        for (int r = 0; r < RM; r++) {
            const uint8_t *blk = p[r] + (size_t)s * 144;
            float d = _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(blk[0] | (blk[1] << 8))));
            float dmin = _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(blk[2] | (blk[3] << 8))));
            for (int pr = 0; pr < 4; pr++) {
                __m256i q = _mm256_loadu_si256((const __m256i *)(const void *)(blk + 16 + 32 * pr));
                __m256i wsb[2] = { _mm256_and_si256(q, m15),
                                   _mm256_and_si256(_mm256_srli_epi16(q, 4), m15) };
                for (int h = 0; h < 2; h++) {
                    int sc, m;
                    mm_k4_scale_min(2 * pr + h, blk + 4, &sc, &m);
                    __m256 dsc = _mm256_set1_ps(d * (float)sc), dmm = _mm256_set1_ps(dmin * (float)m);
                    size_t b = 8 * (size_t)s + 2 * (size_t)pr + (size_t)h;
#pragma GCC unroll 4
                    for (int t = 0; t < TN; t++) {
                        __m256i xv = _mm256_loadu_si256((const __m256i *)(const void *)(xq + (size_t)t * j->n_in + 32 * b));
                        __m256 dx = _mm256_broadcast_ss(xd + (size_t)t * nb + b);
                        __m256 sm = _mm256_loadu_ps(xms + ((size_t)t * nb + b) * 8);
                        __m256i pl = Q8_DOT(wsb[h], xv);
                        acc[t][r] = _mm256_fmadd_ps(_mm256_mul_ps(dsc, dx), _mm256_cvtepi32_ps(pl), acc[t][r]);
                        acc[t][r] = _mm256_fnmadd_ps(dmm, sm, acc[t][r]);
                    }
                }
            }
        }
    }
    Q8_FN(tile_store)(RM, TN, j, r0, n, acc, y);
}

/* Rows [0, n) of `rows` (row o0 of the job), tokens [t0, t0 + tn), tn <= 4. */
Q8_INLINE void Q8_FN(group)(const qtype_t type, const size_t bb, const mm_job_t *j,
                            const uint8_t *rows, uint32_t o0, uint32_t n, uint32_t t0,
                            uint32_t tn)
{
    float *y = j->y + (size_t)t0 * j->n_out + o0;
    for (uint32_t r0 = 0; r0 < n;) {
        if (type == QT_Q4_K) {
            switch (tn) {
            case 1:  Q8_FN(tile_k4)(4, 1, j, rows, r0, n, t0, y); r0 += 4; break;
            case 2:  Q8_FN(tile_k4)(2, 2, j, rows, r0, n, t0, y); r0 += 2; break;
            case 3:  Q8_FN(tile_k4)(2, 3, j, rows, r0, n, t0, y); r0 += 2; break;
            default: Q8_FN(tile_k4)(2, 4, j, rows, r0, n, t0, y); r0 += 2; break;
            }
            continue;
        }
        switch (tn) {
        case 1:  Q8_FN(tile_small)(4, 1, type, bb, j, rows, r0, n, t0, y); r0 += 4; break;
        case 2:  Q8_FN(tile_small)(4, 2, type, bb, j, rows, r0, n, t0, y); r0 += 4; break;
        case 3:  Q8_FN(tile_small)(2, 3, type, bb, j, rows, r0, n, t0, y); r0 += 2; break;
        default: Q8_FN(tile_small)(2, 4, type, bb, j, rows, r0, n, t0, y); r0 += 2; break;
        }
    }
}

/* All tokens for rows [o0, o0 + n): MM_ROWS-row groups, four tokens at a time. */
Q8_INLINE void Q8_FN(rows_type)(const qtype_t type, const size_t bb, const mm_job_t *j,
                                uint32_t o0, uint32_t n)
{
    uint32_t gr = j->n_tok <= 4 ? n : MM_ROWS; /* decode: one pass over the task's rows */
    for (uint32_t g = 0; g < n; g += gr) {
        uint32_t ng = n - g < gr ? n - g : gr;
        const uint8_t *rows = j->w + (size_t)(o0 + g) * j->row_bytes;
        for (uint32_t t = 0; t < j->n_tok; t += 4)
            Q8_FN(group)(type, bb, j, rows, o0 + g, ng, t, j->n_tok - t < 4 ? j->n_tok - t : 4);
    }
}

__attribute__((target(Q8_TARGET))) void Q8_FN(cpu_mmq_rows)(const mm_job_t *j, uint32_t o0,
                                                            uint32_t n)
{
    switch (j->type) {
    case QT_Q4_0: Q8_FN(rows_type)(QT_Q4_0, 18, j, o0, n); break;
    case QT_Q4_1: Q8_FN(rows_type)(QT_Q4_1, 20, j, o0, n); break;
    case QT_Q8_0: Q8_FN(rows_type)(QT_Q8_0, 34, j, o0, n); break;
    case QT_Q4_K: Q8_FN(rows_type)(QT_Q4_K, 144, j, o0, n); break;
    default:      break; /* the driver sends no other type */
    }
}

#undef Q8_INLINE
