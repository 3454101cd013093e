/*
 * matmul_q8_zmm.h - part of the matmul_q8_x86.h template, included by it
 * where Q8_ZMM (the AVX512 level): sixteen-row tiles on 512-bit registers.
 * Uses the template's Q8_FN, Q8_INLINE, Q8_TOKS, Q8_PF_L1 and its helpers
 * (u32_at, scales8, k4_scales8, sb_stride, tile_rows, prefetch_run; the
 * chain starts of rows_type's q6_starts); no
 * include guard, as the template has none.
 */

/*
 * Sixteen-row tiles on 512-bit registers (the AVX512 level), for the
 * block types Q4_0, Q4_1 and Q8_0 and the K-quants Q4_K, Q5_K and Q6_K
 * at eight tokens or more (and a packed matrix of those six types at
 * every token count: tile16p, at the end): lane r of
 * every register is row r, and each lane goes through exactly the
 * operations tile8 gives its row (the same exact integer block sums, the
 * same multiply, convert and fused multiply-adds in the same order), so
 * the bits are tile8's.  What changes is the width: vpdpbusd on zmm
 * forms 512 products where the 256-bit form forms 256, at the same
 * instruction rate (two a cycle on a Xeon with two 512-bit units), and
 * the float work per block and token is one instruction for sixteen
 * rows instead of eight.  The activations are read from xqp
 * (mm_pass_at), whose passes are rows_type's: a step's sixteen tokens
 * then read one run of 32 bytes each from one base at fixed offsets,
 * where xq would take a pointer a token, and sixteen streams a row
 * length apart through L1.
 */
_Static_assert(Q8_TOKS == MM_PASS_TOKS, "rows_type's passes are xqp's");

/*
 * 32 bytes at each src[r] of sixteen rows, lane r of w[k] holding row r's
 * bytes 4k .. 4k+3: z[j] holds rows j and j+8 (256 bits each),
 * transposed by dwords within each half, the 128-bit lanes then put in
 * row order (vpermt2q).
 */
Q8_INLINE void Q8_FN(load16)(const uint8_t *const src[16], __m512i w[8])
{
    __m512i z[8], a[8], c[8];
#pragma GCC unroll 8
    for (int r = 0; r < 8; r++)
        z[r] = _mm512_inserti64x4(
            _mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(const void *)src[r])),
            _mm256_loadu_si256((const __m256i *)(const void *)src[r + 8]), 1);
#pragma GCC unroll 8
    for (int r = 0; r < 8; r += 2) {
        a[r] = _mm512_unpacklo_epi32(z[r], z[r + 1]);
        a[r + 1] = _mm512_unpackhi_epi32(z[r], z[r + 1]);
    }
#pragma GCC unroll 8
    for (int h = 0; h < 8; h += 4) {
        c[h] = _mm512_unpacklo_epi64(a[h], a[h + 2]);
        c[h + 1] = _mm512_unpackhi_epi64(a[h], a[h + 2]);
        c[h + 2] = _mm512_unpacklo_epi64(a[h + 1], a[h + 3]);
        c[h + 3] = _mm512_unpackhi_epi64(a[h + 1], a[h + 3]);
    }
    /* c[k]'s 128-bit lanes: dword k of rows 0..3, dword k+4 of rows
     * 0..3, dword k of rows 8..11, dword k+4 of rows 8..11; c[k+4]
     * the same for rows 4..7 and 12..15 */
    const __m512i lo = _mm512_setr_epi64(0, 1, 8, 9, 4, 5, 12, 13);
    const __m512i hi = _mm512_setr_epi64(2, 3, 10, 11, 6, 7, 14, 15);
#pragma GCC unroll 4
    for (int k = 0; k < 4; k++) {
        w[k] = _mm512_permutex2var_epi64(c[k], lo, c[k + 4]);
        w[k + 4] = _mm512_permutex2var_epi64(c[k], hi, c[k + 4]);
    }
}

/*
 * Block b of sixteen rows (blk[r]: row r's), lane r of w[k] holding row
 * r's weights 4k .. 4k+3 as bytes, as block8 gives eight rows.  Q8_0:
 * its 32 quants by load16.  Q4_0 / Q4_1: z[j] holds the nibble bytes of
 * rows j, j+4, j+8, j+12 (one 128-bit lane each), transposed within each
 * lane: lane r of q[k] is row r's bytes 4k .. 4k+3, whose low nibbles are
 * elements 4k.. and high nibbles 16+4k...
 */
/* Lane r of q[k] row r's nibble bytes 4k .. 4k+3: w[k] their low nibbles
 * (elements 4k..), w[k + 4] their high ones (16 + 4k..). */
Q8_INLINE void Q8_FN(nibbles16)(const __m512i q[4], __m512i w[8])
{
    const __m512i m15 = _mm512_set1_epi8(15);
#pragma GCC unroll 4
    for (int k = 0; k < 4; k++) {
        w[k] = _mm512_and_si512(q[k], m15);
        w[k + 4] = _mm512_and_si512(_mm512_srli_epi16(q[k], 4), m15);
    }
}

Q8_INLINE void Q8_FN(block16)(const qtype_t type, const uint8_t *const blk[16], __m512i w[8])
{
    if (type == QT_Q8_0) {
        const uint8_t *src[16];
#pragma GCC unroll 16
        for (int r = 0; r < 16; r++)
            src[r] = blk[r] + 2;
        Q8_FN(load16)(src, w);
    } else {
        const size_t qo = type == QT_Q4_1 ? 4 : 2;
        __m512i z[4], a[4];
#pragma GCC unroll 4
        for (int r = 0; r < 4; r++) {
            __m512i v = _mm512_castsi128_si512(_mm_loadu_si128((const __m128i *)(const void *)(blk[r] + qo)));
            v = _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)(const void *)(blk[r + 4] + qo)), 1);
            v = _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)(const void *)(blk[r + 8] + qo)), 2);
            v = _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)(const void *)(blk[r + 12] + qo)), 3);
            z[r] = v;
        }
        a[0] = _mm512_unpacklo_epi32(z[0], z[1]);
        a[1] = _mm512_unpackhi_epi32(z[0], z[1]);
        a[2] = _mm512_unpacklo_epi32(z[2], z[3]);
        a[3] = _mm512_unpackhi_epi32(z[2], z[3]);
        const __m512i q[4] = { _mm512_unpacklo_epi64(a[0], a[2]), _mm512_unpackhi_epi64(a[0], a[2]),
                               _mm512_unpacklo_epi64(a[1], a[3]), _mm512_unpackhi_epi64(a[1], a[3]) };
        Q8_FN(nibbles16)(q, w);
    }
}

/* scales8 for sixteen rows: lane r row r's d (and Q4_1's m in *mw). */
Q8_INLINE __m512 Q8_FN(scales16)(const qtype_t type, const uint8_t *const blk[16], __m512 *mw)
{
    __m256 m0 = _mm256_setzero_ps(), m1 = _mm256_setzero_ps();
    __m256 d0 = Q8_FN(scales8)(type, blk, &m0), d1 = Q8_FN(scales8)(type, blk + 8, &m1);
    *mw = _mm512_castpd_ps(_mm512_insertf64x4(_mm512_castpd256_pd512(_mm256_castps_pd(m0)),
                                              _mm256_castps_pd(m1), 1));
    return _mm512_castpd_ps(_mm512_insertf64x4(_mm512_castpd256_pd512(_mm256_castps_pd(d0)),
                                               _mm256_castps_pd(d1), 1));
}

/* k4_scales8 for sixteen rows: lane r of ks[j] and km[j] row r's. */
Q8_INLINE void Q8_FN(k4_scales16)(const uint8_t *const blk[16], __m512 ks[8], __m512 km[8])
{
    __m256 s0[8], m0[8], s1[8], m1[8];
    Q8_FN(k4_scales8)(blk, s0, m0);
    Q8_FN(k4_scales8)(blk + 8, s1, m1);
#pragma GCC unroll 8
    for (int jj = 0; jj < 8; jj++) {
        ks[jj] = _mm512_castpd_ps(_mm512_insertf64x4(_mm512_castpd256_pd512(_mm256_castps_pd(s0[jj])),
                                                     _mm256_castps_pd(s1[jj]), 1));
        km[jj] = _mm512_castpd_ps(_mm512_insertf64x4(_mm512_castpd256_pd512(_mm256_castps_pd(m0[jj])),
                                                     _mm256_castps_pd(m1[jj]), 1));
    }
}

/* A block of the largest pass in xqp (mm_pass_at), and four bytes of it:
 * what the asm below reads (a pass of fewer tokens reads less of it). */
typedef struct {
    int8_t q[MM_PASS_TOKS * QK_SMALL];
} __attribute__((may_alias)) Q8_FN(run_t);
typedef int32_t __attribute__((may_alias)) Q8_FN(word_t);

/* The register acc plus vpdpbusd of the unsigned weight bytes w and the
 * four signed activation bytes at base + off (off a constant: a token's
 * run and a dword of it) in every lane, read by the instruction's own
 * broadcast (asm: GCC keeps _mm512_set1_epi32 of a load as a separate
 * vpbroadcastd into a register), so that the sixteen-token steps'
 * broadcasts take no registers beside their sixteen accumulators and
 * eight weight registers.  The address is written as the base register
 * and the constant: given each dword as a memory operand, GCC formed the
 * 128 addresses of a block's step apart and kept them on the stack
 * (prefill 0.4x).  The block's bytes are an input, so the reads stay
 * after what writes them.  A macro on the accumulator itself: the same
 * asm in an inline function returning it made GCC move ten times as many
 * registers to and from the stack in rows_q4_k_avx512. */
#define Q8_DPBUSD_AT(acc, w, base, off)                                                   \
    __asm__("vpdpbusd %c3(%2)%{1to16%}, %1, %0"                                           \
            : "+v"(acc)                                                                   \
            : "v"(w), "r"(base), "i"(off), "m"(*(const Q8_FN(run_t) *)(const void *)(base)))

/* Q8_DPBUSD_AT for one token: the four bytes at p as the memory operand,
 * addressed as GCC chooses (the base-and-constant form ran one-token
 * decode at 0.93-0.96x; with one token there are only eight addresses a
 * block). */
#define Q8_DPBUSD_AT1(acc, w, p) \
    __asm__("vpdpbusd %2%{1to16%}, %1, %0" : "+v"(acc) : "v"(w), "m"(*(const Q8_FN(word_t) *)(const void *)(p)))
#ifndef __OPTIMIZE__ /* unoptimised, off is no constant: the plain operand */
#undef Q8_DPBUSD_AT
#define Q8_DPBUSD_AT(acc, w, base, off) Q8_DPBUSD_AT1(acc, w, (base) + (off))
#endif

/* Dword k of token t's run from the block's at xb, in a step of TN tokens:
 * Q8_DPBUSD_AT, or for one token Q8_DPBUSD_AT1. */
#define Q8_DPBUSD_TOK(TN, acc, w, xb, t, k)                       \
    do {                                                          \
        if ((TN) == 1)                                            \
            Q8_DPBUSD_AT1(acc, w, (xb) + 4 * (k));                \
        else                                                      \
            Q8_DPBUSD_AT(acc, w, xb, QK_SMALL * (t) + 4 * (k));   \
    } while (0)

/*
 * block_step (not RED) for sixteen rows: the same operations a lane.
 * xb: the block's run in xqp from the tile's first token, read at
 * fixed offsets from it; sp: the block's terms in rows_type's buffer
 * from that token (sp[t] token t's offset term); dx[t * dxs] token t's
 * scale (the block types keep theirs at sp + Q8_TOKS, K-quants read the
 * activations' own).  Two chains of integer multiply-adds a token
 * (below), each by Q8_DPBUSD_TOK.
 */
Q8_INLINE void Q8_FN(step16)(const int TN, const qtype_t type, const __m512i w[8], __m512 dw,
                             __m512 mw, const int8_t *xb, const float *sp, const float *dx,
                             size_t dxs, __m512 acc[])
{
    const int mins = type == QT_Q4_1 || type == QT_Q4_K || type == QT_Q5_K; /* the min term */
#pragma GCC unroll 16
    for (int t = 0; t < TN; t++) {
        /* two chains of integer multiply-adds (exact: their sum is the
         * one chain's), so that a token's latency is four vpdpbusd, not
         * eight, with sixteen tokens' work in flight */
        __m512i ic[2] = { mins ? _mm512_setzero_si512() : _mm512_set1_epi32(-(int)sp[t]),
                          _mm512_setzero_si512() };
#pragma GCC unroll 8
        for (int k = 0; k < 8; k++)
            Q8_DPBUSD_TOK(TN, ic[k & 1], w[k], xb, t, k);
        __m512i ip = _mm512_add_epi32(ic[0], ic[1]);
        acc[t] = _mm512_fmadd_ps(_mm512_mul_ps(dw, _mm512_set1_ps(dx[(size_t)t * dxs])),
                                 _mm512_cvtepi32_ps(ip), acc[t]);
        if (mins)
            acc[t] = _mm512_fmadd_ps(mw, _mm512_set1_ps(sp[t]), acc[t]);
    }
}

/* k4_scales16 from a packed super-block (matmul_kern.h's layout: the
 * sixteen d, the sixteen dmin, then the scale dwords A B C as three runs),
 * in two parts: k4_pack16p unpacks the super-block's six-bit scales and
 * mins (sc, mn: one a byte, four a dword) and its d and dmin; k4_pick16p
 * forms one sub-block's where k_super16 uses it.  The same operations a
 * lane as k4_scales8's.  Formed where used, a sub-block's scales take two
 * registers for one step, where all eight sub-blocks' would take sixteen
 * for the super-block, beside the step's sixteen accumulators. */
typedef struct {
    __m512 d, dmin;
    __m512i sc[2], mn[2];
} Q8_FN(k4p_t);

Q8_INLINE void Q8_FN(k4_pack16p)(const uint8_t *pk, Q8_FN(k4p_t) *k)
{
    k->d = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(const void *)pk));
    k->dmin = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(const void *)(pk + 32)));
    __m512i q[3];
#pragma GCC unroll 3
    for (int i = 0; i < 3; i++)
        q[i] = _mm512_loadu_si512((const void *)(pk + 64 + 64 * i));
    const __m512i m63 = _mm512_set1_epi32(0x3f3f3f3f), m15 = _mm512_set1_epi32(0x0f0f0f0f);
    const __m512i m48 = _mm512_set1_epi32(0x30303030);
    k->sc[0] = _mm512_and_si512(q[0], m63);
    k->sc[1] = _mm512_or_si512(_mm512_and_si512(q[2], m15), _mm512_and_si512(_mm512_srli_epi32(q[0], 2), m48));
    k->mn[0] = _mm512_and_si512(q[1], m63);
    k->mn[1] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi32(q[2], 4), m15),
                               _mm512_and_si512(_mm512_srli_epi32(q[1], 2), m48));
}

/* Sub-block jj's d * sc into ks, -(dmin * m) into km (lane r: row r's). */
Q8_INLINE void Q8_FN(k4_pick16p)(const Q8_FN(k4p_t) *k, int jj, __m512 *ks, __m512 *km)
{
    const __m512i ff = _mm512_set1_epi32(0xff);
    const __m512i neg = _mm512_set1_epi32((int)0x80000000); /* the sign (vxorps is AVX512DQ's) */
    const __m128i sh = _mm_cvtsi32_si128(8 * (jj % 4));
    __m512i s = _mm512_and_si512(_mm512_srl_epi32(k->sc[jj / 4], sh), ff);
    __m512i m = _mm512_and_si512(_mm512_srl_epi32(k->mn[jj / 4], sh), ff);
    *ks = _mm512_mul_ps(k->d, _mm512_cvtepi32_ps(s));
    const __m512 dm = _mm512_mul_ps(k->dmin, _mm512_cvtepi32_ps(m));
    *km = _mm512_castsi512_ps(_mm512_xor_si512(_mm512_castps_si512(dm), neg));
}

/*
 * A Q4_K or Q5_K super-block of sixteen rows for TN tokens, blocks b0 ..
 * b0+7: tile8's operations a lane (the same nibbles, fifth bits, scales
 * and steps), each 32-byte group of quants transposed once by load16 from
 * blk[r] (row r's super-block), or where P read from pk, the super-block
 * packed (matmul_kern.h: the runs load16 would make, one load each).
 *   bb: the type's block bytes; pf: the prefetch for this step (16 bb
 *   bytes, asked for a quarter before each group)
 */
Q8_INLINE void Q8_FN(k_super16)(const int TN, const int P, const qtype_t type, const size_t bb,
                                const uint8_t *const blk[16], const uint8_t *pk, const int8_t *xp,
                                size_t bs, const float *xd, size_t nb, const float *sb, size_t b0,
                                uintptr_t pf, __m512 acc[])
{
    const __m512i m15 = _mm512_set1_epi8(15), m16 = _mm512_set1_epi8(16);
    const size_t qo = type == QT_Q5_K ? 48 : 16; /* the nibbles (packed: 16 qo) */
    __m512 ks[8], km[8]; /* mapped rows: every sub-block's scales */
    Q8_FN(k4p_t) kp;     /* packed: the super-block's, each sub-block's formed where used */
    __m512i qh[8]; /* Q5_K, mapped rows: the 32 bytes of fifth bits, as q below */
    const uint8_t *src[16];
    if (P)
        Q8_FN(k4_pack16p)(pk, &kp);
    else
        Q8_FN(k4_scales16)(blk, ks, km);
    /* Packed, the fifth bits are loaded where they are used (below): eight
     * more registers held across the super-block would push the step's
     * own to the stack. */
    if (type == QT_Q5_K && !P) {
#pragma GCC unroll 16
        for (int r = 0; r < 16; r++)
            src[r] = blk[r] + 16;
        Q8_FN(load16)(src, qh);
    }
    for (int g = 0; g < 4; g++) {
        Q8_FN(prefetch_run)(pf + (size_t)g * 4 * bb, 4 * bb, 1); /* a quarter of the step */
        __m512i q[8], w[8];
        if (P) {
#pragma GCC unroll 8
            for (int k = 0; k < 8; k++)
                q[k] = _mm512_loadu_si512((const void *)(pk + 16 * (qo + 32 * g) + 64 * k));
        } else {
#pragma GCC unroll 16
            for (int r = 0; r < 16; r++)
                src[r] = blk[r] + qo + 32 * g;
            Q8_FN(load16)(src, q);
        }
#pragma GCC unroll 2
        for (int h = 0; h < 2; h++) {
            const int jj = 2 * g + h; /* the sub-block */
#pragma GCC unroll 8
            for (int k = 0; k < 8; k++) {
                w[k] = _mm512_and_si512(h ? _mm512_srli_epi16(q[k], 4) : q[k], m15);
                if (type == QT_Q5_K) { /* bit jj of each byte, times 16 */
                    __m512i hk = P ? _mm512_loadu_si512((const void *)(pk + 16 * 16 + 64 * k)) : qh[k];
                    w[k] = _mm512_or_si512(w[k], _mm512_and_si512(_mm512_slli_epi16(
                                               _mm512_srli_epi16(hk, jj), 4), m16));
                }
            }
            size_t b = b0 + (size_t)jj;
            __m512 sj, mj;
            if (P)
                Q8_FN(k4_pick16p)(&kp, jj, &sj, &mj);
            else
                sj = ks[jj], mj = km[jj];
            Q8_FN(step16)(TN, type, w, sj, mj, xp + b * bs, sb + b * Q8_FN(sb_stride)(type), xd + b, nb, acc);
        }
    }
}

/* Block i (0 .. 7) of q6_super16p's super-block: half i / 4, part i % 4. */
Q8_INLINE void Q8_FN(q6_block16p)(const int TN, const int i, const size_t bb, const uint8_t *pk,
                                  const int8_t *xp, size_t bs, const float *xd, const float *sb, size_t n_in,
                                  size_t b0, uintptr_t pf, __m512 d, __m512 acc[])
{
    const size_t nb = n_in / QK_SMALL, b = b0 + (size_t)i;
    const int8_t *xb = xp + b * bs; /* the block's pass run */
    const int h = i / 4, part = i % 4;
    const __m512i m15 = _mm512_set1_epi8(15), m48 = _mm512_set1_epi8(48);
    /* each block loads its runs anew: unrolled, the compiler would keep
     * them from block to block and spill them (one token: 0.5x) */
    __asm__ volatile("" ::: "memory");
    Q8_FN(prefetch_run)(pf + (size_t)i * 2 * bb, 2 * bb, 1);
    __m512i w[8];
#pragma GCC unroll 8
    for (int k = 0; k < 8; k++) {
        __m512i lo = _mm512_loadu_si512((const void *)(pk + 64 * (16 * h + 8 * (part & 1) + k)));
        __m512i hi = _mm512_loadu_si512((const void *)(pk + 64 * (32 + 8 * h + k)));
        lo = _mm512_and_si512(part < 2 ? lo : _mm512_srli_epi16(lo, 4), m15);
        w[k] = _mm512_or_si512(lo, _mm512_and_si512(_mm512_slli_epi16(
                                       _mm512_srli_epi16(hi, 2 * part), 4), m48));
    }
    /* sub-blocks 2i and 2i + 1: bytes 2i % 4 and 2i % 4 + 1 of run 48 + i / 2, sign-extended */
    const __m512i sr = _mm512_loadu_si512((const void *)(pk + 64 * (48 + i / 2)));
    const int s0 = 2 * i % 4;
    const __m512i sl = _mm512_srai_epi32(_mm512_slli_epi32(sr, 24 - 8 * s0), 24);
    const __m512i sh = _mm512_srai_epi32(_mm512_slli_epi32(sr, 16 - 8 * s0), 24);
#pragma GCC unroll 16
    for (int t = 0; t < TN; t++) {
        const float *sp = sb + b * Q8_FN(sb_stride)(QT_Q6_K) + t; /* rows_type's q6_starts */
        __m512i c[2] = { _mm512_set1_epi32(Q8_FN(u32_at)((const uint8_t *)sp)),
                         _mm512_set1_epi32(Q8_FN(u32_at)((const uint8_t *)(sp + Q8_TOKS))) };
#pragma GCC unroll 8
        for (int k = 0; k < 8; k++)
            Q8_DPBUSD_TOK(TN, c[k / 4], w[k], xb, t, k);
        __m512i ip = _mm512_add_epi32(_mm512_mullo_epi32(c[0], sl), _mm512_mullo_epi32(c[1], sh));
        __m512 dx = _mm512_set1_ps(xd[(size_t)t * nb + b]);
        acc[t] = _mm512_fmadd_ps(_mm512_mul_ps(d, dx), _mm512_cvtepi32_ps(ip), acc[t]);
    }
}

/*
 * q6_super (matmul_q8_kq.h) for sixteen rows of a packed Q6_K super-block
 * (matmul_kern.h's layout: runs 0..31 the low bits, 32..47 the high bits,
 * 48..51 the scales, then the sixteen d): each lane goes through
 * q6_super's operations on its row (the same six-bit weights, the two
 * chains of a block started at -32 S of their half, vpmulld by the
 * sub-blocks' scales, convert, one multiply-add), so the bits are its.
 * The chains' starts are rows_type's kept terms (q6_starts), once a pass
 * for all tiles.
 * The weights are loaded per block (two runs a register, L1 reads) rather
 * than kept per half as q6_super keeps them, which would take 24
 * registers of 32.
 *   bb: the block's bytes (210); pf: the prefetch for this step (16 bb
 *   bytes, each of the eight blocks asking for an eighth)
 */
Q8_INLINE void Q8_FN(q6_super16p)(const int TN, const size_t bb, const uint8_t *pk, const int8_t *xp,
                                  size_t bs, const float *xd, const float *sb, size_t n_in, size_t b0,
                                  uintptr_t pf, __m512 acc[])
{
    const uint8_t *dp = pk + MM_PACK_ROWS * (bb - mm_pack_tail(QT_Q6_K)); /* the trailing run */
    const __m512 d = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(const void *)dp));
    /* Where the one or two tokens' work is small beside the weights'
     * decoding, each block its own copy (immediate shifts: one token
     * 1.15x); else one copy of the code for the eight (sixteen tokens
     * unrolled eight times ran prefill 512 at 0.65x, and took minutes
     * to compile). */
    if (TN <= 2) {
#pragma GCC unroll 8
        for (int i = 0; i < 8; i++)
            Q8_FN(q6_block16p)(TN, i, bb, pk, xp, bs, xd, sb, n_in, b0, pf, d, acc);
    } else {
#pragma GCC unroll 1
        for (int i = 0; i < 8; i++)
            Q8_FN(q6_block16p)(TN, i, bb, pk, xp, bs, xd, sb, n_in, b0, pf, d, acc);
    }
}

/*
 * Super-block blk[r] of sixteen mapped Q6_K rows (bb bytes each) into the
 * packed order (matmul_kern.h: run k dword k of every row's bytes before
 * the tail, then the sixteen d) at pk, as cpu_matmul_pack writes it:
 * load16 makes eight runs of each 32 bytes (208 is not a multiple of 32:
 * the last 32 end at the tail, their first runs made twice, so that no
 * row is read past its block).
 */
Q8_INLINE void Q8_FN(q6_pack16)(const size_t bb, const uint8_t *const blk[16], uint8_t *pk)
{
    const size_t body = bb - mm_pack_tail(QT_Q6_K); /* 208 */
#pragma GCC unroll 1
    for (size_t g = 0; g < body; g += 32) {
        const size_t at = g + 32 <= body ? g : body - 32;
        const uint8_t *src[16];
        __m512i w[8];
#pragma GCC unroll 16
        for (int r = 0; r < 16; r++)
            src[r] = blk[r] + at;
        Q8_FN(load16)(src, w);
#pragma GCC unroll 8
        for (int k = 0; k < 8; k++)
            _mm512_store_si512((void *)(pk + 64 * (at / 4 + k)), w[k]);
    }
    uint16_t d[16];
#pragma GCC unroll 16
    for (int r = 0; r < 16; r++)
        memcpy(&d[r], blk[r] + body, 2);
    memcpy(pk + MM_PACK_ROWS * body, d, sizeof d);
}

/* tile8 (not RED) for sixteen rows [r0, r0 + 16) clamped to n, n - r0 > 8;
 * sb as block_step takes it (not NULL; the block types' with their scales;
 * Q6_K's chain starts, q6_starts).  Q6_K: each super-block of the sixteen
 * rows packed on the stack (q6_pack16), then q6_super16p on it: the packed
 * matrix's bits. */
Q8_INLINE void Q8_FN(tile16)(const int TN, const qtype_t type, const size_t bb, const mm_job_t *j,
                             const uint8_t *rows, uint32_t r0, uint32_t n, uint32_t t0,
                             const float *sb, float *y)
{
    const size_t n_in = j->n_in, nb = n_in / QK_SMALL;
    const uint8_t *p[16];
    uint32_t left = n - r0;
    __m512 acc[16];
    Q8_FN(tile_rows)(16, rows, r0, left, j->row_bytes, p);
#pragma GCC unroll 16
    for (int t = 0; t < TN; t++)
        acc[t] = _mm512_setzero_ps();
    size_t bs; /* the pass layout's block stride */
    const int8_t *xp = mm_pass_at(j, t0, &bs);
    /* the sixteen rows two tiles on, at the pace this tile reads its own
     * (tile8's rule, per eight rows, for L1 or L2) */
    uintptr_t pf = (uintptr_t)rows + (size_t)(r0 + 32) * j->row_bytes;
    const int ksb = type == QT_Q4_K || type == QT_Q5_K || type == QT_Q6_K; /* super-blocks */
    const int pf_l2 = 8 * j->row_bytes > Q8_PF_L1; /* the block types' (K-quants: k_super16) */
    const size_t bpb = ksb ? 8 : 1; /* activation blocks per weight block */
    _Alignas(64) uint8_t q6[MM_PACK_ROWS * MM_Q6_K_BYTES];
    for (size_t wb = 0; wb < nb / bpb; wb++, pf += 16 * bb) {
        if (!ksb)
            Q8_FN(prefetch_run)(pf, 16 * bb, pf_l2);
        const uint8_t *blk[16];
#pragma GCC unroll 16
        for (int r = 0; r < 16; r++)
            blk[r] = p[r] + wb * bb;
        if (type == QT_Q6_K) {
            Q8_FN(q6_pack16)(bb, blk, q6);
            Q8_FN(q6_super16p)(TN, bb, q6, xp, bs, j->xd + (size_t)t0 * nb, sb, n_in, 8 * wb, pf, acc);
            continue;
        }
        if (ksb) {
            Q8_FN(k_super16)(TN, 0, type, bb, blk, NULL, xp, bs, j->xd + (size_t)t0 * nb, nb, sb, 8 * wb,
                             pf, acc);
            continue;
        }
        __m512 mw;
        __m512 dw = Q8_FN(scales16)(type, blk, &mw);
        __m512i w[8];
        Q8_FN(block16)(type, blk, w);
        if (type == QT_Q8_0) { /* vpdpbusd takes unsigned weights: w + 128 */
#pragma GCC unroll 8
            for (int k = 0; k < 8; k++)
                w[k] = _mm512_xor_si512(w[k], _mm512_set1_epi8(-128));
        }
        const float *sp = sb + wb * Q8_FN(sb_stride)(type);
        Q8_FN(step16)(TN, type, w, dw, mw, xp + wb * bs, sp, sp + Q8_TOKS, 1, acc);
    }
    const __mmask16 keep = left >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << left) - 1);
#pragma GCC unroll 16
    for (int t = 0; t < TN; t++)
        _mm512_mask_storeu_ps(y + (size_t)t * j->n_out + r0, keep, acc[t]);
}

/*
 * tile16 on a packed matrix (matmul_kern.h's layout): tile `tile` of
 * sixteen rows, whose first `left` are stored (y at the tile's first
 * row), for TN tokens of 1 .. 16.  A block's d (and Q4_1's m) are one
 * load and a conversion, its quants four loads (Q8_0: eight) that are
 * already what block16 and load16 make of sixteen rows' blocks (lane r
 * row r's bytes 4k .. 4k+3): the same w, dw and mw, and step16 on them,
 * so the same bits as tile16 (and tile8) give.  Q4_K and Q5_K: k_super16
 * on each packed super-block; Q6_K: q6_super16p.
 */
Q8_INLINE void Q8_FN(tile16p)(const int TN, const qtype_t type, const size_t bb, const mm_job_t *j,
                              uint32_t tile, uint32_t left, uint32_t t0, const float *sb, float *y)
{
    const int ksb = type == QT_Q4_K || type == QT_Q5_K || type == QT_Q6_K; /* super-blocks */
    const size_t n_in = j->n_in, nb = n_in / QK_SMALL, tb = MM_PACK_ROWS * bb;
    const size_t nw = ksb ? nb / 8 : nb; /* weight blocks a row */
    const uint8_t *tp = j->wp + (size_t)tile * nw * tb;
    const size_t so = MM_PACK_ROWS * mm_pack_halves(type); /* the halves' bytes */
    __m512 acc[16];
#pragma GCC unroll 16
    for (int t = 0; t < TN; t++)
        acc[t] = _mm512_setzero_ps();
    /* group gives this a whole pass of rows_type's (t0 its first token,
     * TN its tokens), so xqp's blocks are TN runs apart (mm_pass_at): a
     * constant, which the compiler folds into the addresses */
    const size_t bs = (size_t)QK_SMALL * TN;
    const int8_t *xp = j->xqp + (size_t)t0 * n_in;
    /* the tile two on, at the pace this one is read (tile16's rule) */
    uintptr_t pf = (uintptr_t)tp + 2 * nw * tb;
    const int pf_l2 = 8 * j->row_bytes > Q8_PF_L1;
    for (size_t wb = 0; wb < nw; wb++, pf += tb) {
        const uint8_t *blk = tp + wb * tb;
        if (type == QT_Q6_K) {
            Q8_FN(q6_super16p)(TN, bb, blk, xp, bs, j->xd + (size_t)t0 * nb, sb, n_in, 8 * wb, pf, acc);
            continue;
        }
        if (ksb) {
            Q8_FN(k_super16)(TN, 1, type, bb, NULL, blk, xp, bs, j->xd + (size_t)t0 * nb, nb, sb, 8 * wb,
                             pf, acc);
            continue;
        }
        Q8_FN(prefetch_run)(pf, tb, pf_l2);
        __m512 dw, mw = _mm512_setzero_ps();
        if (type == QT_Q4_1) {
            __m512i h = _mm512_loadu_si512((const void *)blk);
            dw = _mm512_cvtph_ps(_mm512_castsi512_si256(h));
            mw = _mm512_cvtph_ps(_mm512_extracti64x4_epi64(h, 1));
        } else {
            dw = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(const void *)blk));
        }
        __m512i w[8];
        if (type == QT_Q8_0) { /* vpdpbusd takes unsigned weights: w + 128 */
#pragma GCC unroll 8
            for (int k = 0; k < 8; k++)
                w[k] = _mm512_xor_si512(_mm512_loadu_si512((const void *)(blk + so + 64 * k)),
                                        _mm512_set1_epi8(-128));
        } else {
            __m512i q[4];
#pragma GCC unroll 4
            for (int k = 0; k < 4; k++)
                q[k] = _mm512_loadu_si512((const void *)(blk + so + 64 * k));
            Q8_FN(nibbles16)(q, w);
        }
        const float *sp = sb + wb * Q8_FN(sb_stride)(type);
        Q8_FN(step16)(TN, type, w, dw, mw, xp + wb * bs, sp, sp + Q8_TOKS, 1, acc);
    }
    const __mmask16 keep = left >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << left) - 1);
#pragma GCC unroll 16
    for (int t = 0; t < TN; t++)
        _mm512_mask_storeu_ps(y + (size_t)t * j->n_out, keep, acc[t]);
}

/* tile16p for m tokens (1 .. 16), each count its own unrolled tile. */
Q8_INLINE void Q8_FN(tile16p_m)(const qtype_t type, const size_t bb, const mm_job_t *j,
                                uint32_t tile, uint32_t left, uint32_t t0, uint32_t m,
                                const float *sb, float *y)
{
    switch (m) {
#define Q8_TILE16P(n) \
    case n: Q8_FN(tile16p)(n, type, bb, j, tile, left, t0, sb, y); break;
    Q8_TILE16P(1) Q8_TILE16P(2) Q8_TILE16P(3) Q8_TILE16P(4) Q8_TILE16P(5) Q8_TILE16P(6)
    Q8_TILE16P(7) Q8_TILE16P(8) Q8_TILE16P(9) Q8_TILE16P(10) Q8_TILE16P(11) Q8_TILE16P(12)
    Q8_TILE16P(13) Q8_TILE16P(14) Q8_TILE16P(15)
    default: Q8_FN(tile16p)(16, type, bb, j, tile, left, t0, sb, y); break; /* 16 */
#undef Q8_TILE16P
    }
}

#undef Q8_DPBUSD_AT
#undef Q8_DPBUSD_AT1
#undef Q8_DPBUSD_TOK
