/*
 * matmul_amx.c - CPU_PREC_FAST at the AMX level (matmul.h): the exact
 * integer block sums of many tokens by Intel AMX tile multiplies, the
 * float work after them as every other level does it, so the same bits.
 *
 * Shape.  A task's rows are taken sixteen at a time (a panel).  The
 * panel's weights are unpacked, AMX_KB blocks of 32 at a time (a chunk),
 * into the B-tile layout of tdpbssd: for block b, eight rows of 64 bytes,
 * row k holding elements 4k .. 4k+3 of each of the sixteen weight rows
 * (weight row n at bytes 4n .. 4n+3) as signed bytes: Q4_0's nibble - 8,
 * Q4_1's and Q4_K's nibble, Q5_K's nibble + 16 x its fifth bit, Q8_0's
 * quant, Q6_K's 6-bit value - 32; beside them the blocks' scales (and
 * min terms) as floats, one lane per weight row.  Every group of sixteen
 * tokens then meets the chunk: per block, the tokens' 32 quantised
 * activations are an A tile (16 rows of 32 bytes, read in place), one
 * tdpbssd forms the 16 x 16 exact block sums P, and each token's
 * accumulator (one 512-bit register, lane n: weight row n) takes
 * matmul.h's multiply-adds in block order:
 *   acc = fma(dw * dx, P, acc)          then, for Q4_1, Q4_K and Q5_K,
 *   acc = fma(mw, dx * S, acc)          (dx * S from the driver: job->xo)
 * Between chunks an accumulator waits in y, as a float32, so the order
 * and the roundings are those of one pass.  A last group of fewer than
 * sixteen tokens is the last sixteen tokens, of which only the new ones
 * are loaded and stored; rows past the matrix repeat its last row and are
 * not stored.  Q6_K (two scales per block of 32) takes two tile products
 * per block, one per half, and the integer sc_lo * P_lo + sc_hi * P_hi
 * formed exactly in floats (amx_group6).  With fewer than sixteen tokens
 * and for rows too long for a gather's 32-bit offsets, the AVX512
 * kernels run instead: the same bits.
 *
 * Each task loads the tile configuration on its thread and releases the
 * tiles when it ends (the process asked the kernel for the tile state
 * once, when the levels were detected: matmul_avx2.c).
 */
#include "matmul_kern.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))

#include <immintrin.h>
#include <string.h>

#define AMX_TARGET "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni,amx-tile,amx-int8"
#define AMX_FN static inline __attribute__((always_inline, target(AMX_TARGET)))
#define AMX_KB   32 /* blocks of 32 per chunk: a multiple of a K-quant super-block's 8 */
#define AMX_TOKS MM_AMX_MIN_TOKS /* tokens per group: the tiles' rows */

/* One chunk of a panel: 16 KiB of B tiles, the scales and min terms. */
typedef struct {
    int8_t b[AMX_KB][8][64];
    float  dw[AMX_KB][16];
    float  mw[AMX_KB][16];
    float  sc[AMX_KB][2][16]; /* Q6_K: the block's two 16-element scales */
} amx_panel_t;

/* The tile configuration: palette 1; tmm0, tmm1 the sums (C: 16 x 16
 * int32), tmm2, tmm3 activations (A: 16 x 32 bytes), tmm4, tmm5 weights
 * (B: 8 x 64 bytes); even blocks take the first of each pair.  For Q6_K
 * a block's halves of 16 elements take a pair each: A 16 x 16 bytes, B
 * 4 x 64 bytes. */
typedef struct {
    uint8_t  palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t  rows[16];
} amx_cfg_t;

/* Whether the type's products have a min term (and so read job->xo). */
static inline int amx_has_min(qtype_t type)
{
    return type == QT_Q4_1 || type == QT_Q4_K || type == QT_Q5_K;
}

/* Sixteen dwords at base + idx[n] (idx: the panel's row offsets). */
AMX_FN __m512i amx_gather(__m512i idx, const uint8_t *base)
{
    return _mm512_i32gather_epi32(idx, (const void *)base, 1);
}

/* Sixteen f16 values (the low halves of v's dwords) as floats. */
AMX_FN __m512 amx_f16_lo(__m512i v)
{
    return _mm512_cvtph_ps(_mm512_cvtepi32_epi16(v));
}

/*
 * The lines of [a, a + bytes): the next panel's weights, a block's share
 * (sixteen rows' bytes of one block, or of one K-quant super-block) for
 * each block the panel unpacks.  A panel reads its sixteen rows a block
 * at a time, sixteen runs too short for the hardware prefetchers, and
 * without this every panel waited on memory.  The next panel is one
 * contiguous run of sixteen rows, so taking it in address order at that
 * pace has all of it on its way by the time this panel ends, whatever
 * the rows' length (after a task's last panel, the rows past it; beyond
 * the matrix a prefetch is harmless, and the address is an integer, so
 * no pointer points past the weights).  Into L2 (prefetcht1): the next
 * panel's loads then find them near, and the prefetches do not hold the
 * L1 fill buffers that this panel's loads need.
 */
AMX_FN void amx_prefetch(uintptr_t a, size_t bytes)
{
    for (size_t l = 0; l < bytes; l += 64)
        __builtin_prefetch((const void *)(a + l), 0, 2);
}

/*
 * t[d] = dword d of the sixteen bytes at p + off[n], for rows n = 0..15:
 * what four gathers give, from sixteen 128-bit loads and eight in-lane
 * unpacks.  Gathers cost far more than their sixteen loads on these
 * cores (and more again under the Gather Data Sampling mitigation).
 * r[j] holds rows j, 4 + j, 8 + j, 12 + j in its four 128-bit lanes; a
 * 4 x 4 transpose in each lane then leaves lane l of t[d] holding dword
 * d of rows 4l .. 4l + 3, so dword n of t[d] is row n's.
 */
AMX_FN void amx_rows16(const uint8_t *p, const int32_t *off, __m512i t[4])
{
    __m512i r[4];
#pragma GCC unroll 4
    for (int j = 0; j < 4; j++) {
        __m512i v = _mm512_castsi128_si512(_mm_loadu_si128((const void *)(p + off[j])));
        v = _mm512_inserti32x4(v, _mm_loadu_si128((const void *)(p + off[4 + j])), 1);
        v = _mm512_inserti32x4(v, _mm_loadu_si128((const void *)(p + off[8 + j])), 2);
        r[j] = _mm512_inserti32x4(v, _mm_loadu_si128((const void *)(p + off[12 + j])), 3);
    }
    __m512i a = _mm512_unpacklo_epi32(r[0], r[1]), b = _mm512_unpackhi_epi32(r[0], r[1]);
    __m512i c = _mm512_unpacklo_epi32(r[2], r[3]), d = _mm512_unpackhi_epi32(r[2], r[3]);
    t[0] = _mm512_unpacklo_epi64(a, c);
    t[1] = _mm512_unpackhi_epi64(a, c);
    t[2] = _mm512_unpacklo_epi64(b, d);
    t[3] = _mm512_unpackhi_epi64(b, d);
}

/* Blocks [b0, b0 + nbk) of a Q4_0 / Q4_1 / Q8_0 panel (row n at base + off[n], idx = off). */
AMX_FN void amx_pack_small(qtype_t type, const uint8_t *base, __m512i idx, const int32_t *off, size_t b0,
                           size_t nbk, amx_panel_t *pn, uintptr_t pf)
{
    const size_t bb = type == QT_Q4_0 ? 18 : type == QT_Q4_1 ? 20 : 34;
    const __m512i m15 = _mm512_set1_epi8(15), eight = _mm512_set1_epi8(8);
    for (size_t k = 0; k < nbk; k++) {
        const uint8_t *p = base + (b0 + k) * bb;
        amx_prefetch(pf + k * 16 * bb, 16 * bb);
        __m512i dm = amx_gather(idx, p);
        _mm512_store_ps(pn->dw[k], amx_f16_lo(dm));
        if (type == QT_Q4_1)
            _mm512_store_ps(pn->mw[k], amx_f16_lo(_mm512_srli_epi32(dm, 16)));
        __m512i q4[4];
        if (type == QT_Q8_0) {
            for (int h = 0; h < 2; h++) {
                amx_rows16(p + 2 + 16 * h, off, q4);
#pragma GCC unroll 4
                for (int r = 0; r < 4; r++)
                    _mm512_store_si512(pn->b[k][4 * h + r], q4[r]);
            }
            continue;
        }
        amx_rows16(p + (type == QT_Q4_1 ? 4 : 2), off, q4);
#pragma GCC unroll 4
        for (int r = 0; r < 4; r++) { /* elements 4r.. low nibbles, 16 + 4r.. high */
            __m512i q = q4[r];
            __m512i lo = _mm512_and_si512(q, m15), hi = _mm512_and_si512(_mm512_srli_epi32(q, 4), m15);
            if (type == QT_Q4_0) {
                lo = _mm512_sub_epi8(lo, eight);
                hi = _mm512_sub_epi8(hi, eight);
            }
            _mm512_store_si512(pn->b[k][r], lo);
            _mm512_store_si512(pn->b[k][r + 4], hi);
        }
    }
}

/*
 * Super-blocks [s0, s0 + ns) of a Q4_K / Q5_K panel: per super-block the
 * sixteen rows' d * sc_j and -(dmin * m_j) (the operations of the other
 * levels' k4_scales8, sixteen lanes wide), and its eight blocks.
 */
AMX_FN void amx_pack_k(qtype_t type, const uint8_t *base, __m512i idx, size_t s0, size_t ns,
                       amx_panel_t *pn, uintptr_t pf)
{
    const size_t bb = type == QT_Q5_K ? 176 : 144, qo = type == QT_Q5_K ? 48 : 16;
    const __m512i m63 = _mm512_set1_epi32(0x3f3f3f3f), m15 = _mm512_set1_epi32(0x0f0f0f0f);
    const __m512i m48 = _mm512_set1_epi32(0x30303030), ff = _mm512_set1_epi32(0xff);
    const __m512i one = _mm512_set1_epi32(0x01010101);
    const __m512i neg = _mm512_set1_epi32((int)0x80000000u);
    for (size_t s = 0; s < ns; s++) {
        const uint8_t *p = base + (s0 + s) * bb;
        amx_prefetch(pf + s * 16 * bb, 16 * bb);
        __m512i dm = amx_gather(idx, p);
        __m512 d = amx_f16_lo(dm), dmin = amx_f16_lo(_mm512_srli_epi32(dm, 16));
        __m512i a = amx_gather(idx, p + 4), b = amx_gather(idx, p + 8), c = amx_gather(idx, p + 12);
        __m512i sc[2] = { _mm512_and_si512(a, m63),
                          _mm512_or_si512(_mm512_and_si512(c, m15),
                                          _mm512_and_si512(_mm512_srli_epi32(a, 2), m48)) };
        __m512i mn[2] = { _mm512_and_si512(b, m63),
                          _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi32(c, 4), m15),
                                          _mm512_and_si512(_mm512_srli_epi32(b, 2), m48)) };
        const size_t k0 = 8 * s;
#pragma GCC unroll 8
        for (int j = 0; j < 8; j++) {
            __m512i sv = _mm512_and_si512(_mm512_srli_epi32(sc[j / 4], 8 * (j % 4)), ff);
            __m512i mv = _mm512_and_si512(_mm512_srli_epi32(mn[j / 4], 8 * (j % 4)), ff);
            _mm512_store_ps(pn->dw[k0 + j], _mm512_mul_ps(d, _mm512_cvtepi32_ps(sv)));
            __m512 m = _mm512_mul_ps(dmin, _mm512_cvtepi32_ps(mv)); /* then its sign flipped */
            _mm512_store_ps(pn->mw[k0 + j],
                            _mm512_castsi512_ps(_mm512_xor_si512(_mm512_castps_si512(m), neg)));
        }
        for (int r = 0; r < 8; r++) {
            __m512i hb = _mm512_setzero_si512(); /* Q5_K: the fifth bits of elements 4r .. 4r+3 */
            if (type == QT_Q5_K)
                hb = amx_gather(idx, p + 16 + 4 * r);
#pragma GCC unroll 4
            for (int g = 0; g < 4; g++) { /* sub-block 2g in the low nibbles, 2g+1 in the high */
                __m512i v = amx_gather(idx, p + qo + 32 * g + 4 * r);
#pragma GCC unroll 2
                for (int h = 0; h < 2; h++) {
                    const int j = 2 * g + h;
                    __m512i w = _mm512_and_si512(h ? _mm512_srli_epi32(v, 4) : v, m15);
                    if (type == QT_Q5_K)
                        w = _mm512_or_si512(w, _mm512_slli_epi32(
                                                   _mm512_and_si512(_mm512_srli_epi32(hb, j), one), 4));
                    _mm512_store_si512(pn->b[k0 + (size_t)j][r], w);
                }
            }
        }
    }
}

/* A group's accumulators from y (zero on the chunk's first pass and for
 * the tokens of an earlier group), and back; cols: the matrix's columns. */
AMX_FN void amx_acc_load(const mm_job_t *j, const float *y, __mmask16 cols, int first, int skip,
                         __m512 acc[AMX_TOKS])
{
#pragma GCC unroll 16
    for (int t = 0; t < AMX_TOKS; t++)
        acc[t] = first || t < skip ? _mm512_setzero_ps()
                                   : _mm512_maskz_loadu_ps(cols, y + (size_t)t * j->n_out);
}

AMX_FN void amx_acc_store(const mm_job_t *j, float *y, __mmask16 cols, int skip, const __m512 acc[AMX_TOKS])
{
#pragma GCC unroll 16
    for (int t = 0; t < AMX_TOKS; t++)
        if (t >= skip)
            _mm512_mask_storeu_ps(y + (size_t)t * j->n_out, cols, acc[t]);
}

/*
 * One block's float work for the group: sums from the tile store c
 * (row t: token t's sixteen P), the tokens' scales xd and offset terms xo
 * (stride nb), the block's dw and mw.
 */
AMX_FN void amx_block_float(const int MIN, const int32_t *c, const float *xd, const float *xo,
                            size_t nb, __m512 dw, __m512 mw, __m512 acc[AMX_TOKS])
{
#pragma GCC unroll 16
    for (int t = 0; t < AMX_TOKS; t++) {
        __m512 p = _mm512_cvtepi32_ps(_mm512_load_si512((const void *)(c + 16 * t)));
        acc[t] = _mm512_fmadd_ps(_mm512_mul_ps(dw, _mm512_set1_ps(xd[(size_t)t * nb])), p, acc[t]);
        if (MIN)
            acc[t] = _mm512_fmadd_ps(mw, _mm512_set1_ps(xo[(size_t)t * nb]), acc[t]);
    }
}

/* Block k's tile product into tile C (A, B its operands' tiles); uses
 * amx_group's xq, n_in and pn. */
#define AMX_BLOCK_TILES(C, A, B, k)                                                                \
    do {                                                                                           \
        _tile_loadd(A, xq + 32 * (k), n_in);                                                       \
        _tile_loadd(B, pn->b[k], 64);                                                              \
        _tile_zero(C);                                                                             \
        _tile_dpbssd(C, A, B);                                                                     \
    } while (0)

/*
 * Tokens [ts, ts + 16) against the panel's chunk of nbk blocks from kb0;
 * tokens below ts + skip belong to an earlier group and are neither
 * loaded nor stored.  y: token ts's row, at the panel's first column;
 * ncol of the sixteen columns are the matrix's.
 *
 * The blocks run as a two-stage pipeline: block k's tile product goes
 * out (even blocks on tiles 0, 2, 4, odd ones on 1, 3, 5) before block
 * k - 2's sums, stored two blocks ago, take their float work, so the
 * product's latency and its trip through memory overlap that work
 * instead of stalling it.  The float work still runs in block order.
 */
AMX_FN void amx_group(const int MIN, const mm_job_t *j, const amx_panel_t *pn, size_t kb0, size_t nbk,
                      size_t ts, int skip, int first, float *y, uint32_t ncol)
{
    const size_t n_in = j->n_in, nb = n_in / QK_SMALL;
    const __mmask16 cols = (__mmask16)(ncol >= 16 ? 0xffff : (1u << ncol) - 1);
    int32_t c[2][AMX_TOKS * 16] __attribute__((aligned(64)));
    __m512 acc[AMX_TOKS];
    amx_acc_load(j, y, cols, first, skip, acc);
    const int8_t *xq = j->xq + ts * n_in + 32 * kb0;
    const float *xd = j->xd + ts * nb + kb0;
    const float *xo = MIN ? j->xo + ts * nb + kb0 : NULL;
#define AMX_FLOAT(k)                                                                               \
    amx_block_float(MIN, c[(k) & 1], xd + (k), MIN ? xo + (k) : NULL, nb, _mm512_load_ps(pn->dw[k]), \
                    MIN ? _mm512_load_ps(pn->mw[k]) : _mm512_setzero_ps(), acc)
    size_t k = 0;
    for (; k + 2 <= nbk; k += 2) {
        AMX_BLOCK_TILES(0, 2, 4, k);
        if (k >= 2)
            AMX_FLOAT(k - 2);
        _tile_stored(0, c[0], 64);
        AMX_BLOCK_TILES(1, 3, 5, k + 1);
        if (k >= 2)
            AMX_FLOAT(k - 1);
        _tile_stored(1, c[1], 64);
    }
    size_t done = k >= 2 ? k - 2 : 0; /* blocks whose float work has run */
    if (k < nbk) { /* an odd count: the last block on the even tiles */
        AMX_BLOCK_TILES(0, 2, 4, k);
        if (k >= 2) {
            AMX_FLOAT(done);
            done++;
        }
        _tile_stored(0, c[0], 64);
    }
    for (; done < nbk; done++) /* the pipeline drains */
        AMX_FLOAT(done);
#undef AMX_FLOAT
    amx_acc_store(j, y, cols, skip, acc);
}
#undef AMX_BLOCK_TILES

/*
 * Super-blocks [s0, s0 + ns) of a Q6_K panel: per super-block the sixteen
 * rows' d, and per block of 32 its two signed 16-element scales as
 * floats; each block's quants q - 32 (matmul_q8.c's row_dot: element
 * 128h + 32g + l from ql[64h + 32(g & 1) + l], low nibble for g < 2,
 * with bits 2g, 2g+1 of qh[32h + l] on top), four elements of sixteen
 * rows per gather, a byte each.
 */
AMX_FN void amx_pack_q6k(const uint8_t *base, __m512i idx, size_t s0, size_t ns, amx_panel_t *pn,
                         uintptr_t pf)
{
    const __m512i m15 = _mm512_set1_epi32(0x0f0f0f0f), m48 = _mm512_set1_epi32(0x30303030);
    const __m512i k32 = _mm512_set1_epi8(32);
    for (size_t s = 0; s < ns; s++) {
        const uint8_t *p = base + (s0 + s) * 210;
        amx_prefetch(pf + s * 16 * 210, 16 * 210);
        const __m512 d = amx_f16_lo(_mm512_srli_epi32(amx_gather(idx, p + 206), 16)); /* bytes 208, 209 */
        const size_t k0 = 8 * s;
#pragma GCC unroll 4
        for (int m = 0; m < 4; m++) { /* scales 4m .. 4m + 3: blocks 2m, 2m + 1 */
            __m512i w = amx_gather(idx, p + 192 + 4 * m);
#pragma GCC unroll 4
            for (int e = 0; e < 4; e++) /* byte e, sign-extended */
                _mm512_store_ps(pn->sc[k0 + 2 * (size_t)m + (size_t)e / 2][e % 2],
                                _mm512_cvtepi32_ps(_mm512_srai_epi32(_mm512_slli_epi32(w, 24 - 8 * e), 24)));
        }
#pragma GCC unroll 8
        for (int i = 0; i < 8; i++)
            _mm512_store_ps(pn->dw[k0 + (size_t)i], d);
        for (int h = 0; h < 2; h++) {
            for (int r = 0; r < 8; r++) { /* elements 4r .. 4r + 3 of the half's four blocks */
                __m512i qh = amx_gather(idx, p + 128 + 32 * h + 4 * r);
#pragma GCC unroll 2
                for (int gl = 0; gl < 2; gl++) {
                    __m512i ql = amx_gather(idx, p + 64 * h + 32 * gl + 4 * r);
#pragma GCC unroll 2
                    for (int gh = 0; gh < 2; gh++) {
                        const int g = gl + 2 * gh;
                        __m512i v = _mm512_and_si512(gh ? _mm512_srli_epi32(ql, 4) : ql, m15);
                        __m512i hb = g == 3 ? _mm512_srli_epi32(qh, 2) : _mm512_slli_epi32(qh, 4 - 2 * g);
                        v = _mm512_sub_epi8(_mm512_or_si512(v, _mm512_and_si512(hb, m48)), k32);
                        _mm512_store_si512(pn->b[k0 + 4 * (size_t)h + (size_t)g][r], v);
                    }
                }
            }
        }
    }
}

/*
 * amx_group for Q6_K: per block two tile products, P_lo over its first 16
 * elements and P_hi over the rest, and per token
 *   acc = fma(d * dx, fma(sc_lo, P_lo, sc_hi * P_hi), acc)
 * where the inner value is matmul.h's integer sc_lo * P_lo + sc_hi * P_hi,
 * exactly (each product and the sum are integers below 2^24).
 */
AMX_FN void amx_group6(const mm_job_t *j, const amx_panel_t *pn, size_t kb0, size_t nbk, size_t ts,
                       int skip, int first, float *y, uint32_t ncol)
{
    const size_t n_in = j->n_in, nb = n_in / QK_SMALL;
    const __mmask16 cols = (__mmask16)(ncol >= 16 ? 0xffff : (1u << ncol) - 1);
    int32_t c[2][AMX_TOKS * 16] __attribute__((aligned(64)));
    __m512 acc[AMX_TOKS];
    amx_acc_load(j, y, cols, first, skip, acc);
    const int8_t *xq = j->xq + ts * n_in + 32 * kb0;
    const float *xd = j->xd + ts * nb + kb0;
    for (size_t k = 0; k < nbk; k++) {
        _tile_loadd(2, xq + 32 * k, n_in);
        _tile_loadd(3, xq + 32 * k + 16, n_in);
        _tile_loadd(4, pn->b[k][0], 64);
        _tile_loadd(5, pn->b[k][4], 64);
        _tile_zero(0);
        _tile_zero(1);
        _tile_dpbssd(0, 2, 4);
        _tile_dpbssd(1, 3, 5);
        _tile_stored(0, c[0], 64);
        _tile_stored(1, c[1], 64);
        const __m512 dw = _mm512_load_ps(pn->dw[k]);
        const __m512 lo = _mm512_load_ps(pn->sc[k][0]), hi = _mm512_load_ps(pn->sc[k][1]);
#pragma GCC unroll 16
        for (int t = 0; t < AMX_TOKS; t++) {
            __m512 pl = _mm512_cvtepi32_ps(_mm512_load_si512((const void *)(c[0] + 16 * t)));
            __m512 ph = _mm512_cvtepi32_ps(_mm512_load_si512((const void *)(c[1] + 16 * t)));
            __m512 sum = _mm512_fmadd_ps(lo, pl, _mm512_mul_ps(hi, ph));
            acc[t] = _mm512_fmadd_ps(_mm512_mul_ps(dw, _mm512_set1_ps(xd[(size_t)t * nb + k])), sum, acc[t]);
        }
    }
    amx_acc_store(j, y, cols, skip, acc);
}

AMX_FN void amx_rows(const qtype_t type, const mm_job_t *j, uint32_t o0, uint32_t n)
{
    const int MIN = amx_has_min(type);
    const int ksb = type == QT_Q4_K || type == QT_Q5_K, six = type == QT_Q6_K;
    const size_t nb = j->n_in / QK_SMALL;
    amx_panel_t pn __attribute__((aligned(64)));
    for (uint32_t p0 = 0; p0 < n; p0 += 16) {
        const uint32_t ncol = n - p0 < 16 ? n - p0 : 16;
        const uint8_t *rows = j->w + (size_t)(o0 + p0) * j->row_bytes;
        int32_t off[16];
        for (uint32_t r = 0; r < 16; r++) /* rows past the matrix repeat its last */
            off[r] = (int32_t)((r < ncol ? r : ncol - 1) * j->row_bytes);
        const __m512i idx = _mm512_loadu_si512((const void *)off);
        float *y = j->y + o0 + p0;
        for (size_t kb0 = 0; kb0 < nb; kb0 += AMX_KB) {
            const size_t nbk = nb - kb0 < AMX_KB ? nb - kb0 : AMX_KB;
            /* the next panel, at the pace of sixteen rows' bytes per block read */
            const uintptr_t pf = (uintptr_t)rows + 16 * j->row_bytes
                                 + kb0 * QK_SMALL / j->block_elems * 16 * j->block_bytes;
            if (six)
                amx_pack_q6k(rows, idx, kb0 / 8, nbk / 8, &pn, pf);
            else if (ksb)
                amx_pack_k(type, rows, idx, kb0 / 8, nbk / 8, &pn, pf);
            else
                amx_pack_small(type, rows, idx, off, kb0, nbk, &pn, pf);
            for (size_t t0 = 0; t0 < j->n_tok; t0 += AMX_TOKS) {
                const size_t ts = t0 + AMX_TOKS <= j->n_tok ? t0 : j->n_tok - AMX_TOKS;
                float *yt = y + ts * j->n_out;
                if (six)
                    amx_group6(j, &pn, kb0, nbk, ts, (int)(t0 - ts), kb0 == 0, yt, ncol);
                else if (MIN)
                    amx_group(1, j, &pn, kb0, nbk, ts, (int)(t0 - ts), kb0 == 0, yt, ncol);
                else
                    amx_group(0, j, &pn, kb0, nbk, ts, (int)(t0 - ts), kb0 == 0, yt, ncol);
            }
        }
    }
}

__attribute__((target(AMX_TARGET))) void cpu_mmq_rows_amx(const mm_job_t *j, uint32_t o0, uint32_t n)
{
    const int amx_type = j->type == QT_Q4_0 || j->type == QT_Q4_1 || j->type == QT_Q8_0
                         || j->type == QT_Q4_K || j->type == QT_Q5_K || j->type == QT_Q6_K;
    if (!amx_type || j->n_tok < AMX_TOKS || j->row_bytes > INT32_MAX / 16) {
        cpu_mmq_rows_avx512(j, o0, n);
        return;
    }
    amx_cfg_t cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.palette = 1;
    const int half = j->type == QT_Q6_K; /* tiles over half blocks */
    for (int i = 0; i < 2; i++) {
        cfg.rows[i] = 16, cfg.colsb[i] = 64;                         /* C */
        cfg.rows[2 + i] = 16, cfg.colsb[2 + i] = half ? 16 : 32;     /* A */
        cfg.rows[4 + i] = half ? 4 : 8, cfg.colsb[4 + i] = 64;       /* B */
    }
    _tile_loadconfig(&cfg);
    switch (j->type) {
    case QT_Q4_0: amx_rows(QT_Q4_0, j, o0, n); break;
    case QT_Q4_1: amx_rows(QT_Q4_1, j, o0, n); break;
    case QT_Q8_0: amx_rows(QT_Q8_0, j, o0, n); break;
    case QT_Q4_K: amx_rows(QT_Q4_K, j, o0, n); break;
    case QT_Q5_K: amx_rows(QT_Q5_K, j, o0, n); break;
    default:      amx_rows(QT_Q6_K, j, o0, n); break;
    }
    _tile_release();
}

#else /* no x86-64 kernels in this build: the driver never calls this */

void cpu_mmq_rows_amx(const mm_job_t *j, uint32_t o0, uint32_t n)
{
    cpu_mmq_rows_portable(j, o0, n);
}

#endif
