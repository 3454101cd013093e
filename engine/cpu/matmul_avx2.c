/*
 * matmul_avx2.c - cpu_matmul's x86-64 kernels (AVX2, FMA, F16C).
 *
 * The file builds with plain -O2: every function that uses the vector
 * instructions carries a target attribute, and cpu_matmul calls them only
 * after cpu_mm_avx2_usable() has asked the CPU.
 *
 * Two ways through.  The tile path: dequantisers turn a run of blocks
 * into floats in the tile of matmul_kern.h, and micro-kernels multiply
 * that tile (or a float32 matrix in place) with up to three tokens at
 * once: each weight vector loaded is used by every token of the group,
 * each activation vector by every row.  The few-token path (decode, up to
 * MM_FEW_TOKS tokens, Q4_0 / Q4_1 / Q8_0 here, the K-quants in
 * matmul_kq_avx2.c): a block is dequantised into registers and used at
 * once, with no tile in between.  On both, each
 * (token, row) pair owns one accumulator into which the row's elements
 * go in order, one fused multiply-add per eight, and the dequantisers
 * are shared, so the two give the same bits.
 *
 * Speed notes (AMD EPYC, one core): the few-token Q4_1 kernel is bound by
 * its vector instructions (about 21 per block of 32: unpack, convert,
 * one FMA to dequantise and one to accumulate per eight lanes), not by
 * memory; software prefetch is what brings the others near bandwidth,
 * because four or sixteen rows read side by side are more streams than
 * the hardware prefetchers follow well.
 *
 * Rounding of the dequantised values: a q*d + m form is one fused
 * multiply-add, a q*d form one multiply, so a weight can differ from
 * quant_dequant's by one rounding; each is still a fixed function of the
 * stored block.
 */
#ifndef _DEFAULT_SOURCE
#define _DEFAULT_SOURCE /* syscall */
#endif
#include "matmul_kern.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))

#include <cpuid.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "matmul_avx2.h"


int cpu_mm_avx2_usable(void)
{
    static _Atomic int usable = -1; /* every thread computes the same value */
    if (usable < 0) {
        /* __builtin_cpu_supports also checks that the OS saves the ymm
         * registers; F16C (every AVX2 CPU has it) is not among the names
         * all compilers know, so it is read from CPUID leaf 1. */
        unsigned a, b, c, d;
        int f16c = __get_cpuid(1, &a, &b, &c, &d) && (c & bit_F16C) != 0;
        __builtin_cpu_init();
        usable = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && f16c;
    }
    return usable;
}

/*
 * The levels of matmul.h's cpu_isa_t, as a mask.  AVX-512 needs the OS
 * to save the opmask and zmm registers: XCR0 bits 1, 2 (xmm, ymm) and
 * 5, 6, 7.  AVX-VNNI and AVX-512 VNNI come separately (Ice Lake servers
 * have the second only, Alder Lake the first only).
 */
int cpu_mm_x86_levels(void)
{
    static _Atomic int levels = -1; /* every thread computes the same value */
    if (levels >= 0)
        return levels;
    int lv = 1;
    unsigned a, b, c, d;
    if (cpu_mm_avx2_usable()) {
        lv |= 2;
        unsigned xcr0 = 0, xcr0_hi;
        if (__get_cpuid(1, &a, &b, &c, &d) && (c & bit_OSXSAVE))
            __asm__ volatile("xgetbv" : "=a"(xcr0), "=d"(xcr0_hi) : "c"(0));
        if (__get_cpuid_count(7, 1, &a, &b, &c, &d) && (a & (1u << 4))) /* AVX-VNNI */
            lv |= 4;
        if (__get_cpuid_count(7, 0, &a, &b, &c, &d) && (b & bit_AVX512F) && (b & bit_AVX512BW)
            && (b & bit_AVX512VL) && (c & bit_AVX512VNNI) && (xcr0 & 0xe6) == 0xe6) {
            lv |= 8;
            /* AMX-TILE and AMX-INT8 (CPUID 7.0 EDX bits 24, 25), the tile
             * state saved by the OS (XCR0 bits 17, 18), and Linux's grant
             * of that state to the process (arch_prctl ARCH_REQ_XCOMP_PERM
             * for XFEATURE_XTILEDATA, 18), without which a tile
             * instruction faults. */
            if ((d & (3u << 24)) == (3u << 24) && (xcr0 & 0x60000) == 0x60000
                && syscall(SYS_arch_prctl, 0x1023, 18) == 0)
                lv |= 16;
        }
    }
    levels = lv;
    return lv;
}

/* -------------------------------------------------------- dequantisers */

/*
 * The small-block types, one block at a time: w[k] gets elements 8k ..
 * 8k+7.  The tile fillers and the few-token kernels both use these, so
 * a weight is the same float on either path.
 */
AVX2_INLINE void blk_q4_0(const uint8_t *b, __m256 w[4])
{
    /* d * (q - 8) as fma(q, d, -8d): -8d is exact, so this is the same
     * single rounding of the same exact product, one operation shorter. */
    const __m256i m15 = _mm256_set1_epi32(15);
    __m256 d = bcast_f16(b);
    __m256 nd8 = _mm256_mul_ps(d, _mm256_set1_ps(-8.0f));
    __m256i lo = load8_u8(b + 2);  /* qs[0..7]:  elements 0..7 and 16..23 */
    __m256i hi = load8_u8(b + 10); /* qs[8..15]: elements 8..15 and 24..31 */
    w[0] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_and_si256(lo, m15)), d, nd8);
    w[1] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_and_si256(hi, m15)), d, nd8);
    w[2] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_srli_epi32(lo, 4)), d, nd8);
    w[3] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_srli_epi32(hi, 4)), d, nd8);
}

AVX2_INLINE void blk_q4_1(const uint8_t *b, __m256 w[4])
{
    const __m256i m15 = _mm256_set1_epi32(15);
    /* d and m are converted together, then spread to eight lanes each. */
    __m128 dm = _mm_cvtph_ps(_mm_cvtsi32_si128((int)rd_u32(b)));
    __m256 d = _mm256_broadcastss_ps(dm);
    __m256 m = _mm256_permutevar8x32_ps(_mm256_castps128_ps256(dm), _mm256_set1_epi32(1));
    __m256i lo = load8_u8(b + 4);
    __m256i hi = load8_u8(b + 12);
    w[0] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_and_si256(lo, m15)), d, m);
    w[1] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_and_si256(hi, m15)), d, m);
    w[2] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_srli_epi32(lo, 4)), d, m);
    w[3] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_srli_epi32(hi, 4)), d, m);
}

AVX2_INLINE void blk_q8_0(const uint8_t *b, __m256 w[4])
{
    __m256 d = bcast_f16(b);
    w[0] = _mm256_mul_ps(_mm256_cvtepi32_ps(load8_i8(b + 2)), d);
    w[1] = _mm256_mul_ps(_mm256_cvtepi32_ps(load8_i8(b + 10)), d);
    w[2] = _mm256_mul_ps(_mm256_cvtepi32_ps(load8_i8(b + 18)), d);
    w[3] = _mm256_mul_ps(_mm256_cvtepi32_ps(load8_i8(b + 26)), d);
}

/* Block bytes of the small-block types. */
#define BB_Q4_0 18
#define BB_Q4_1 20
#define BB_Q8_0 34

AVX2_INLINE void blk_small(qtype_t type, const uint8_t *b, __m256 w[4])
{
    if (type == QT_Q4_0)
        blk_q4_0(b, w);
    else if (type == QT_Q4_1)
        blk_q4_1(b, w);
    else
        blk_q8_0(b, w);
}

/* nb blocks at b into nb * 32 floats at out. */
AVX2_INLINE void deq_small(qtype_t type, size_t bb, const uint8_t *b, float *out, uint32_t nb)
{
    for (uint32_t i = 0; i < nb; i++, b += bb, out += 32) {
        __m256 w[4];
        blk_small(type, b, w);
        for (int k = 0; k < 4; k++)
            _mm256_storeu_ps(out + 8 * k, w[k]);
    }
}

AVX2 static void deq_q4_0(const uint8_t *b, float *out, uint32_t nb)
{
    deq_small(QT_Q4_0, BB_Q4_0, b, out, nb);
}

AVX2 static void deq_q4_1(const uint8_t *b, float *out, uint32_t nb)
{
    deq_small(QT_Q4_1, BB_Q4_1, b, out, nb);
}

AVX2 static void deq_q8_0(const uint8_t *b, float *out, uint32_t nb)
{
    deq_small(QT_Q8_0, BB_Q8_0, b, out, nb);
}

/* n halves (any n) at b; also attention.c's widening of half K/V. */
AVX2 void cpu_mm_deq_f16_avx2(const uint8_t *b, float *out, uint32_t n)
{
    uint32_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(out + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)(b + 2 * i))));
    for (; i < n; i++)
        out[i] = f16_to_f32(rd_u16(b + 2 * i));
}

AVX2 static void deq_bf16(const uint8_t *b, float *out, uint32_t n)
{
    uint32_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256i h = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(const void *)(b + 2 * i)));
        _mm256_storeu_ps(out + i, _mm256_castsi256_ps(_mm256_slli_epi32(h, 16)));
    }
    for (; i < n; i++)
        out[i] = bf16_to_f32(rd_u16(b + 2 * i));
}

/*
 * Dequantise columns [k0, k0 + kc) of nr rows into tile[nr][MM_KC].
 * The tile's rows are nr separate runs of memory, too many for the
 * hardware prefetchers to follow, so each row also prefetches what it
 * will need next (fill_ahead).  Issued row by row, not all at once, so
 * that they do not queue up behind each other.
 */
AVX2 void cpu_mm_fill_tile_avx2(const mm_job_t *j, const uint8_t *rows, uint32_t nr, uint32_t k0,
                                uint32_t kc, float *tile)
{
    size_t off = (size_t)(k0 / j->block_elems) * j->block_bytes;
    uint32_t nb = kc / j->block_elems;
    size_t cb = (size_t)nb * j->block_bytes; /* bytes of a row in this chunk */
    size_t ahead = fill_ahead(j, k0, kc, off, cb);
    for (uint32_t r = 0; r < nr; r++) {
        const uint8_t *src = rows + (size_t)r * j->row_bytes + off;
        float *dst = tile + (size_t)r * MM_KC;
        for (size_t l = 0; l < cb; l += 64)
            prefetch_at(src, ahead + l);
        switch (j->type) {
        case QT_F16:  cpu_mm_deq_f16_avx2(src, dst, kc); break;
        case QT_BF16: deq_bf16(src, dst, kc); break;
        case QT_Q4_0: deq_q4_0(src, dst, nb); break;
        case QT_Q4_1: deq_q4_1(src, dst, nb); break;
        case QT_Q8_0: deq_q8_0(src, dst, nb); break;
        case QT_Q4_K: cpu_mm_deq_q4_k_avx2(src, dst, nb); break;
        case QT_Q5_K: cpu_mm_deq_q5_k_avx2(src, dst, nb); break;
        case QT_Q6_K: cpu_mm_deq_q6_k_avx2(src, dst, nb); break;
        case QT_F32:  memcpy(dst, src, (size_t)kc * sizeof(float)); break; /* not on a float */
        default:      break; /* cpu_matmul let no other type in */
        }
    }
}

/* ------------------------------------------------------- micro-kernels */

/*
 * RM rows times TN tokens over one chunk of len elements:
 *   w    [RM, ws]  weights from the chunk's first column (rows at or past
 *                  nr repeat row nr-1: computed, stored in unused slots)
 *   x    [TN, xs]  activations from the same column
 *   acc  [TN, MM_ROWS] accumulators, read and written back
 * RM and TN are constants at every call, so the compiler keeps the
 * RM * TN accumulators in registers.
 */
AVX2_INLINE void micro(const int RM, const int TN, const float *w, size_t ws, uint32_t nr,
                       const float *x, size_t xs, uint32_t len, __m256 *acc)
{
    const float *wr[8];
    __m256 a[3][8];
#pragma GCC unroll 8
    for (int r = 0; r < RM; r++) {
        wr[r] = w + (size_t)((uint32_t)r < nr ? (uint32_t)r : nr - 1) * ws;
#pragma GCC unroll 3
        for (int t = 0; t < TN; t++)
            a[t][r] = acc[t * MM_ROWS + r];
    }

    uint32_t k = 0;
    for (; k + 8 <= len; k += 8) {
        __m256 xv[3];
#pragma GCC unroll 3
        for (int t = 0; t < TN; t++)
            xv[t] = _mm256_loadu_ps(x + t * xs + k);
#pragma GCC unroll 8
        for (int r = 0; r < RM; r++) {
            __m256 wv = _mm256_loadu_ps(wr[r] + k);
#pragma GCC unroll 3
            for (int t = 0; t < TN; t++)
                a[t][r] = _mm256_fmadd_ps(wv, xv[t], a[t][r]);
        }
    }
    if (k < len) { /* float rows whose length is not a multiple of 8 */
        __m256i m = tail_mask(len - k);
        __m256 xv[3];
#pragma GCC unroll 3
        for (int t = 0; t < TN; t++)
            xv[t] = _mm256_maskload_ps(x + t * xs + k, m);
#pragma GCC unroll 8
        for (int r = 0; r < RM; r++) {
            __m256 wv = _mm256_maskload_ps(wr[r] + k, m);
#pragma GCC unroll 3
            for (int t = 0; t < TN; t++)
                a[t][r] = _mm256_fmadd_ps(wv, xv[t], a[t][r]);
        }
    }

#pragma GCC unroll 8
    for (int r = 0; r < RM; r++) {
#pragma GCC unroll 3
        for (int t = 0; t < TN; t++)
            acc[t * MM_ROWS + r] = a[t][r];
    }
}

AVX2 static void micro_4x3(const float *w, size_t ws, uint32_t nr, const float *x, size_t xs,
                           uint32_t len, __m256 *acc)
{
    micro(4, 3, w, ws, nr, x, xs, len, acc);
}

AVX2 static void micro_4x2(const float *w, size_t ws, uint32_t nr, const float *x, size_t xs,
                           uint32_t len, __m256 *acc)
{
    micro(4, 2, w, ws, nr, x, xs, len, acc);
}

AVX2 static void micro_8x1(const float *w, size_t ws, uint32_t nr, const float *x, size_t xs,
                           uint32_t len, __m256 *acc)
{
    micro(8, 1, w, ws, nr, x, xs, len, acc);
}

/* ------------------------------------------------------ few tokens */

/*
 * Up to MM_FEW_TOKS tokens (matmul_kern.h) skip the tile.
 * MM_PF_BYTES: how far ahead, at least, the few-token kernels prefetch
 * (group_ahead: at least a whole group, too); 1 to 4 KiB
 * all did about as well on an AMD EPYC; on a Xeon with AVX-512, one token
 * of the default model went from 73 to 85 tokens/s with 2 KiB -> 8 KiB.
 */
#define MM_PF_BYTES 8192

/*
 * Few tokens (decode batches) of the small-block types, without the tile:
 * RM rows times TN tokens, each block dequantised into registers and
 * used at once by the TN tokens.  The operations on each accumulator are
 * those of the tile path (same blk_* dequantiser, same FMAs in the same
 * order), so a token gets the same bits whichever path it takes.
 *   rows [n, rb] bytes, x [TN, xs] (row length nb * 32), y [TN, ys]
 */
AVX2_INLINE void dot_small(const int RM, const int TN, qtype_t type, const size_t bb,
                           const uint8_t *rows, size_t rb, uint32_t n, uint32_t nb,
                           const float *x, size_t xs, float *y, size_t ys)
{
    for (uint32_t r0 = 0; r0 < n; r0 += RM) {
        uint32_t left = n - r0;
        const uint8_t *p[4];
        __m256 a[4][4];
#pragma GCC unroll 4
        for (int r = 0; r < RM; r++) {
            p[r] = rows + (size_t)(r0 + ((uint32_t)r < left ? (uint32_t)r : left - 1)) * rb;
#pragma GCC unroll 4
            for (int t = 0; t < TN; t++)
                a[t][r] = _mm256_setzero_ps();
        }
        /* The group's rows are one contiguous run of RM * rb bytes, read
         * at RM * bb bytes a block: keep the lines at least MM_PF_BYTES,
         * and a whole group, ahead of that pace on their way in
         * (group_ahead; prefetches past the end are harmless). */
        size_t pf = group_ahead(r0, RM, rb, MM_PF_BYTES); /* offset from rows */
        for (uint32_t b = 0; b < nb; b++, pf += RM * bb) {
#pragma GCC unroll 4
            for (size_t l = 0; l < (RM * bb + 63) / 64; l++)
                prefetch_at(rows, pf + 64 * l);
#pragma GCC unroll 4
            for (int r = 0; r < RM; r++) {
                __m256 w[4];
                blk_small(type, p[r] + b * bb, w);
#pragma GCC unroll 4
                for (int t = 0; t < TN; t++) {
                    const float *xb = x + t * xs + 32 * (size_t)b;
                    a[t][r] = _mm256_fmadd_ps(w[0], _mm256_loadu_ps(xb), a[t][r]);
                    a[t][r] = _mm256_fmadd_ps(w[1], _mm256_loadu_ps(xb + 8), a[t][r]);
                    a[t][r] = _mm256_fmadd_ps(w[2], _mm256_loadu_ps(xb + 16), a[t][r]);
                    a[t][r] = _mm256_fmadd_ps(w[3], _mm256_loadu_ps(xb + 24), a[t][r]);
                }
            }
        }
#pragma GCC unroll 4
        for (int r = 0; r < RM; r++) {
            if ((uint32_t)r < left) {
#pragma GCC unroll 4
                for (int t = 0; t < TN; t++)
                    y[t * ys + r0 + r] = hsum8(a[t][r]);
            }
        }
    }
}

/* Rows [o0, o0 + n), every token, four tokens at a time. */
AVX2_INLINE void dot_small_tokens(qtype_t type, const size_t bb, const mm_job_t *j, uint32_t o0,
                                  uint32_t n)
{
    const uint8_t *rows = j->w + (size_t)o0 * j->row_bytes; /* [n, row_bytes] */
    uint32_t nb = j->n_in / QK_SMALL;
    size_t xs = j->n_in, ys = j->n_out, rb = j->row_bytes;
    for (uint32_t t = 0; t < j->n_tok;) {
        uint32_t tn = j->n_tok - t < 4 ? j->n_tok - t : 4;
        const float *x = j->x + (size_t)t * xs; /* [tn, n_in] */
        float *y = j->y + (size_t)t * ys + o0;   /* [tn, n_out] from column o0 */
        switch (tn) {
        case 1:  dot_small(4, 1, type, bb, rows, rb, n, nb, x, xs, y, ys); break;
        case 2:  dot_small(4, 2, type, bb, rows, rb, n, nb, x, xs, y, ys); break;
        case 3:  dot_small(2, 3, type, bb, rows, rb, n, nb, x, xs, y, ys); break;
        default: dot_small(2, 4, type, bb, rows, rb, n, nb, x, xs, y, ys); break;
        }
        t += tn;
    }
}

AVX2 static void dot_q4_0(const mm_job_t *j, uint32_t o0, uint32_t n)
{
    dot_small_tokens(QT_Q4_0, BB_Q4_0, j, o0, n);
}

AVX2 static void dot_q4_1(const mm_job_t *j, uint32_t o0, uint32_t n)
{
    dot_small_tokens(QT_Q4_1, BB_Q4_1, j, o0, n);
}

AVX2 static void dot_q8_0(const mm_job_t *j, uint32_t o0, uint32_t n)
{
    dot_small_tokens(QT_Q8_0, BB_Q8_0, j, o0, n);
}

/* Tokens per micro-kernel call: threes, but 2 + 2 rather than 3 + 1 (the
 * one-token kernel is the slowest per token). */
static inline uint32_t token_step(uint32_t left)
{
    return left == 4 ? 2 : left >= 3 ? 3 : left;
}

/* --------------------------------------------------------- any tokens */

/* Rows [o0, o0 + nr), nr <= MM_ROWS, times tokens [t0, t0 + nt), nt <=
   MM_TOKS, through the tile. */
AVX2 static void rows_tiled(const mm_job_t *j, uint32_t o0, uint32_t nr, uint32_t t0, uint32_t nt)
{
    float tile[MM_ROWS * MM_KC] __attribute__((aligned(32))); /* [nr, MM_KC] */
    __m256 acc[MM_TOKS * MM_ROWS];                            /* [token, row] */
    const uint8_t *rows = j->w + (size_t)o0 * j->row_bytes;   /* [nr, row_bytes] */
    size_t n_in = j->n_in;

    for (uint32_t i = 0; i < nt * MM_ROWS; i++)
        acc[i] = _mm256_setzero_ps();

    for (uint32_t k0 = 0; k0 < j->n_in; k0 += MM_KC) {
        uint32_t kc = j->n_in - k0 < MM_KC ? j->n_in - k0 : MM_KC;
        size_t ws;
        const float *wc = mm_f32_rows(j, rows, k0, &ws); /* [nr, ws] from column k0 */
        if (wc == NULL) {
            cpu_mm_fill_tile_avx2(j, rows, nr, k0, kc, tile);
            wc = tile;
        }
        const float *xc = j->x + (size_t)t0 * n_in + k0; /* [nt, n_in] */
        for (uint32_t t = 0; t < nt;) {
            uint32_t tn = token_step(nt - t);
            const float *xt = xc + t * n_in;
            __m256 *at = acc + t * MM_ROWS;
            if (tn == 1) {
                for (uint32_t r = 0; r < nr; r += 8)
                    micro_8x1(wc + r * ws, ws, nr - r, xt, n_in, kc, at + r);
            } else {
                for (uint32_t r = 0; r < nr; r += 4) {
                    if (tn == 3)
                        micro_4x3(wc + r * ws, ws, nr - r, xt, n_in, kc, at + r);
                    else
                        micro_4x2(wc + r * ws, ws, nr - r, xt, n_in, kc, at + r);
                }
            }
            t += tn;
        }
    }

    for (uint32_t t = 0; t < nt; t++) {
        float *yt = j->y + (size_t)(t0 + t) * j->n_out + o0; /* [nr] */
        for (uint32_t r = 0; r < nr; r++)
            yt[r] = hsum8(acc[t * MM_ROWS + r]);
    }
}

AVX2 void cpu_mm_rows_avx2(const mm_job_t *j, uint32_t o0, uint32_t n)
{
    if (j->n_tok <= MM_FEW_TOKS) {
        switch (j->type) {
        case QT_Q4_0: dot_q4_0(j, o0, n); return;
        case QT_Q4_1: dot_q4_1(j, o0, n); return;
        case QT_Q8_0: dot_q8_0(j, o0, n); return;
        case QT_Q4_K:
        case QT_Q5_K:
        case QT_Q6_K: cpu_mm_dot_k_avx2(j, o0, n); return;
        default:      break;
        }
    }
    uint32_t blk = mm_tok_block(j->n_in, n, MM_TOKS); /* blocks of tokens, groups within */
    for (uint32_t t0 = 0; t0 < j->n_tok; t0 += blk) {
        uint32_t nt = j->n_tok - t0 < blk ? j->n_tok - t0 : blk;
        for (uint32_t g = 0; g < n; g += MM_ROWS)
            rows_tiled(j, o0 + g, n - g < MM_ROWS ? n - g : MM_ROWS, t0, nt);
    }
}

#else /* no x86-64 vector kernels in this build */

int cpu_mm_avx2_usable(void)
{
    return 0;
}

int cpu_mm_x86_levels(void)
{
    return 1;
}

void cpu_mm_rows_avx2(const mm_job_t *j, uint32_t o0, uint32_t nr)
{
    cpu_mm_rows_portable(j, o0, nr);
}

#endif
