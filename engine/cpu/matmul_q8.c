/*
 * matmul_q8.c - CPU_PREC_FAST (matmul.h): the activation quantiser and
 * the portable C kernels, which define the results that the x86 kernels
 * (matmul_q8_x86.c) reproduce bit for bit.
 *
 * Every product of a quantised weight and a quantised activation is an
 * exact integer; only the per-block scaling and the accumulation round,
 * in the order matmul.h states, with one fused multiply-add (fmaf) per
 * term.
 */
#include <math.h>
#include <string.h>
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#endif

#include "base/quant.h"
#include "matmul.h"
#include "matmul_kern.h"

/*
 * The quantiser (matmul.h states what it computes), eight lanes at a
 * time with the compiler's generic vectors, built twice: plain (SSE2 on
 * x86-64, whatever the target has elsewhere) and, on x86-64, for AVX2
 * (and a third time below, by hand, for the AVX512 and AMX levels).
 * Every operation is one IEEE operation on each lane, as in the
 * definition: the multiply x * id and the subtraction v - (int)v stay
 * separate (-ffp-contract=off), the truncation is (int)'s, and a
 * maximum does not depend on the order of its inputs, so both builds
 * give the definition's bytes (test_cpu_matmul checks them against it).
 */
typedef float   q8_v8f __attribute__((vector_size(32)));
typedef int32_t q8_v8i __attribute__((vector_size(32)));
typedef int8_t  q8_v16b __attribute__((vector_size(16)));
typedef int8_t  q8_v32b __attribute__((vector_size(32)));

/* Lanes of a where the mask m is all ones, else b's (a macro: a function
 * passing 32-byte vectors by value changes the ABI without AVX). */
#define Q8_PICK(m, a, b) (((a) & (m)) | ((b) & ~(m)))

static inline __attribute__((always_inline)) void
quantize_body(const float *x, uint32_t n, int8_t *q, float *d, float *ls)
{
    const q8_v8i abs_mask = { 0x7fffffff, 0x7fffffff, 0x7fffffff, 0x7fffffff,
                              0x7fffffff, 0x7fffffff, 0x7fffffff, 0x7fffffff };
    const q8_v8f half = { 0.5f, 0.5f, 0.5f, 0.5f, 0.5f, 0.5f, 0.5f, 0.5f };
    const q8_v8i top = { 127, 127, 127, 127, 127, 127, 127, 127 };
    for (uint32_t b = 0; b < n / QK_SMALL; b++) {
        const float *xb = x + (size_t)b * QK_SMALL;
        int8_t *qb = q + (size_t)b * QK_SMALL;
        q8_v8f m = { 0 };
        q8_v8i odd = { 0 }; /* lanes that saw a NaN */
        for (int c = 0; c < 4; c++) {
            q8_v8f v;
            memcpy(&v, xb + 8 * c, sizeof v);
            q8_v8f a = (q8_v8f)((q8_v8i)v & abs_mask);
            odd |= a != a;
            m = (q8_v8f)Q8_PICK(a > m, (q8_v8i)a, (q8_v8i)m);
        }
        /* the lanes' maximum by halves (m holds no NaN: any order) */
        q8_v8f h = __builtin_shufflevector(m, m, 4, 5, 6, 7, 0, 1, 2, 3);
        m = (q8_v8f)Q8_PICK(h > m, (q8_v8i)h, (q8_v8i)m);
        h = __builtin_shufflevector(m, m, 2, 3, 0, 1, 6, 7, 4, 5);
        m = (q8_v8f)Q8_PICK(h > m, (q8_v8i)h, (q8_v8i)m);
        h = __builtin_shufflevector(m, m, 1, 0, 3, 2, 5, 4, 7, 6);
        m = (q8_v8f)Q8_PICK(h > m, (q8_v8i)h, (q8_v8i)m);
        float amax = m[0];
        int nan = 0;
        for (int l = 0; l < 8; l++)
            nan |= odd[l];
        int odd_block = nan || !(amax <= 3.4028234e38f); /* NaN or infinity */
        float id = 127.0f / amax;
        if (odd_block || !(id <= 3.4028234e38f)) { /* or zero, or too small for 127 / amax */
            d[b] = odd_block ? NAN : 0.0f;
            memset(qb, 0, QK_SMALL);
            memset(ls + 8 * (size_t)b, 0, 8 * sizeof *ls);
            continue;
        }
        d[b] = amax / 127.0f;
        q8_v32b by[4];
        q8_v8i iv[4];
        for (int c = 0; c < 4; c++) {
            /* roundf (halves away from zero) without the call: |v| is at
             * most 127 and a little, so the truncation to int and the
             * fraction v - i are exact */
            q8_v8f v;
            memcpy(&v, xb + 8 * c, sizeof v);
            q8_v8f vv = v * id;
            q8_v8i i = __builtin_convertvector(vv, q8_v8i);
            q8_v8f f = vv - __builtin_convertvector(i, q8_v8f);
            i = i - (f >= half) + (f <= -half); /* a true comparison is -1 */
            i = Q8_PICK(i > top, top, i);
            i = Q8_PICK(i < -top, -top, i);
            by[c] = (q8_v32b)i; /* byte 4l: lane l's value, which fits */
            iv[c] = i;
        }
        /* lane sums: pairs, then pairs of pairs (exact integers) */
        q8_v8i p0 = __builtin_shufflevector(iv[0], iv[1], 0, 2, 4, 6, 8, 10, 12, 14)
                    + __builtin_shufflevector(iv[0], iv[1], 1, 3, 5, 7, 9, 11, 13, 15);
        q8_v8i p1 = __builtin_shufflevector(iv[2], iv[3], 0, 2, 4, 6, 8, 10, 12, 14)
                    + __builtin_shufflevector(iv[2], iv[3], 1, 3, 5, 7, 9, 11, 13, 15);
        q8_v8i g = __builtin_shufflevector(p0, p1, 0, 2, 4, 6, 8, 10, 12, 14)
                   + __builtin_shufflevector(p0, p1, 1, 3, 5, 7, 9, 11, 13, 15);
        q8_v8f gf = __builtin_convertvector(g, q8_v8f);
        memcpy(ls + 8 * (size_t)b, &gf, sizeof gf);
        q8_v16b lo = __builtin_shufflevector(by[0], by[1], 0, 4, 8, 12, 16, 20, 24, 28,
                                             32, 36, 40, 44, 48, 52, 56, 60);
        q8_v16b hi = __builtin_shufflevector(by[2], by[3], 0, 4, 8, 12, 16, 20, 24, 28,
                                             32, 36, 40, 44, 48, 52, 56, 60);
        q8_v32b all = __builtin_shufflevector(lo, hi, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13,
                                              14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26,
                                              27, 28, 29, 30, 31);
        memcpy(qb, &all, sizeof all);
    }
}

static void quantize_plain(const float *x, uint32_t n, int8_t *q, float *d, float *ls)
{
    quantize_body(x, n, q, d, ls);
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
__attribute__((target("avx2"))) static void quantize_avx2(const float *x, uint32_t n, int8_t *q,
                                                          float *d, float *ls)
{
    quantize_body(x, n, q, d, ls);
}

/*
 * The same on 512-bit registers, sixteen blocks at a time: each block's
 * maximum |x| by a reduction of its two registers, then the sixteen
 * blocks' amax / 127 and 127 / amax by two vector divisions (the same
 * IEEE divisions), then each block's quants as above (the multiply, the
 * truncation, the fraction's two comparisons with 1/2, the clamp) and
 * its lane sums from the bytes (vpmaddubsw with ones, then vpmaddwd:
 * exact integers).  The quantiser was about 140 cycles a block on one
 * block's dependent chain (5% of a batch-16 decode step), and the blocks
 * are independent.
 */
#define Q8_512 __attribute__((target("avx2,avx512f,avx512bw,avx512vl")))

static inline __attribute__((always_inline)) Q8_512 void quantize_block512(const float *xb, float id, int8_t *qb,
                                                                           float *lsb)
{
    const __m512 idv = _mm512_set1_ps(id), half = _mm512_set1_ps(0.5f), mhalf = _mm512_set1_ps(-0.5f);
    const __m512i one = _mm512_set1_epi32(1), top = _mm512_set1_epi32(127), bot = _mm512_set1_epi32(-127);
    __m128i by[2];
    for (int h = 0; h < 2; h++) {
        __m512 vv = _mm512_mul_ps(_mm512_loadu_ps(xb + 16 * h), idv);
        __m512i i = _mm512_cvttps_epi32(vv);
        __m512 f = _mm512_sub_ps(vv, _mm512_cvtepi32_ps(i));
        i = _mm512_mask_add_epi32(i, _mm512_cmp_ps_mask(f, half, _CMP_GE_OQ), i, one);
        i = _mm512_mask_sub_epi32(i, _mm512_cmp_ps_mask(f, mhalf, _CMP_LE_OQ), i, one);
        i = _mm512_max_epi32(_mm512_min_epi32(i, top), bot);
        by[h] = _mm512_cvtepi32_epi8(i);
    }
    __m256i qv = _mm256_set_m128i(by[1], by[0]);
    _mm256_storeu_si256((__m256i *)(void *)qb, qv);
    __m256i pairs = _mm256_maddubs_epi16(_mm256_set1_epi8(1), qv);
    __m256i fours = _mm256_madd_epi16(pairs, _mm256_set1_epi16(1));
    _mm256_storeu_ps(lsb, _mm256_cvtepi32_ps(fours));
}

static Q8_512 void quantize_avx512(const float *x, uint32_t n, int8_t *q, float *d, float *ls)
{
    const __m512i abs_mask = _mm512_set1_epi32(0x7fffffff);
    const uint32_t nb = n / QK_SMALL;
    for (uint32_t b0 = 0; b0 < nb; b0 += 16) {
        const uint32_t m = nb - b0 < 16 ? nb - b0 : 16;
        float amax[16] __attribute__((aligned(64)));
        __mmask16 odd = 0; /* blocks that hold a NaN */
        for (uint32_t b = 0; b < m; b++) {
            const float *xb = x + (size_t)(b0 + b) * QK_SMALL;
            __m512 v0 = _mm512_loadu_ps(xb), v1 = _mm512_loadu_ps(xb + 16);
            if (_mm512_cmp_ps_mask(v0, v1, _CMP_UNORD_Q) != 0)
                odd |= (__mmask16)(1u << b);
            __m512 a0 = _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(v0), abs_mask));
            __m512 a1 = _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(v1), abs_mask));
            amax[b] = _mm512_reduce_max_ps(_mm512_max_ps(a0, a1));
        }
        const __mmask16 live = (__mmask16)((1u << m) - 1);
        const __m512 big = _mm512_set1_ps(3.4028234e38f);
        __m512 am = _mm512_maskz_load_ps(live, amax);
        odd |= _mm512_cmp_ps_mask(am, big, _CMP_NLE_UQ); /* or an infinity */
        __m512 idv = _mm512_div_ps(_mm512_set1_ps(127.0f), am);
        __mmask16 zero = (__mmask16)(odd | _mm512_cmp_ps_mask(idv, big, _CMP_NLE_UQ)); /* or 127 / amax overflows */
        __m512 dv = _mm512_div_ps(am, _mm512_set1_ps(127.0f));
        dv = _mm512_mask_mov_ps(dv, zero, _mm512_setzero_ps());
        dv = _mm512_mask_mov_ps(dv, odd, _mm512_set1_ps(NAN));
        _mm512_mask_storeu_ps(d + b0, live, dv);
        float id[16] __attribute__((aligned(64)));
        _mm512_store_ps(id, idv);
        for (uint32_t b = 0; b < m; b++) {
            int8_t *qb = q + (size_t)(b0 + b) * QK_SMALL;
            float *lsb = ls + 8 * (size_t)(b0 + b);
            if (zero >> b & 1) {
                memset(qb, 0, QK_SMALL);
                memset(lsb, 0, 8 * sizeof *lsb);
            } else {
                quantize_block512(x + (size_t)(b0 + b) * QK_SMALL, id[b], qb, lsb);
            }
        }
    }
}
#else
#define quantize_avx2 quantize_plain
#endif

void cpu_quantize_act(const float *x, uint32_t n, int8_t *q, float *d, float *ls)
{
    /* every level above portable implies AVX2 (cpu_isa_usable), and the
     * AVX512 and AMX levels AVX-512 F, BW and VL */
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    if (cpu_matmul_isa() >= CPU_ISA_AVX512) {
        quantize_avx512(x, n, q, d, ls);
        return;
    }
#endif
    if (cpu_matmul_isa() >= CPU_ISA_AVX2)
        quantize_avx2(x, n, q, d, ls);
    else
        quantize_plain(x, n, q, d, ls);
}

/* ------------------------------------------------------ one block, C */

static float half_at(const uint8_t *p)
{
    return f16_to_f32((uint16_t)(p[0] | (p[1] << 8)));
}

/* The exact integer sums over one block of 32: P = sum w[k] x[k], S = sum x[k]. */
static void block_dot(const int *w, const int8_t *x, int32_t *pw, int32_t *sx)
{
    int32_t p = 0, s = 0;
    for (int k = 0; k < 32; k++) {
        p += w[k] * x[k];
        s += x[k];
    }
    *pw = p;
    *sx = s;
}

/*
 * One weight row (row_bytes as the job says) times one token's quantised
 * activations: the whole sum of matmul.h's CPU_PREC_FAST.
 */
static float row_dot(const mm_job_t *j, const uint8_t *row, const int8_t *xq, const float *xd)
{
    float acc = 0.0f;
    int w[QK_K];
    int32_t pw, sx;
    uint32_t nb = j->n_in / QK_SMALL;
    switch (j->type) {
    case QT_Q8_0:
    case QT_Q4_0:
    case QT_Q4_1:
        for (uint32_t b = 0; b < nb; b++, row += j->block_bytes) {
            float dw = half_at(row);
            if (j->type == QT_Q8_0) {
                for (int k = 0; k < 32; k++)
                    w[k] = (int8_t)row[2 + k];
            } else {
                const uint8_t *qs = row + (j->type == QT_Q4_1 ? 4 : 2);
                int off = j->type == QT_Q4_0 ? 8 : 0;
                for (int k = 0; k < 16; k++) {
                    w[k] = (qs[k] & 15) - off;
                    w[k + 16] = (qs[k] >> 4) - off;
                }
            }
            block_dot(w, xq + 32 * (size_t)b, &pw, &sx);
            acc = fmaf(dw * xd[b], (float)pw, acc);
            if (j->type == QT_Q4_1)
                acc = fmaf(half_at(row + 2), xd[b] * (float)sx, acc);
        }
        break;
    case QT_Q4_K:
    case QT_Q5_K: /* Q5_K: bit sb of qh[e] is element e of sub-block sb's fifth bit */
        for (uint32_t s = 0; s < nb / 8; s++, row += j->block_bytes) {
            float d = half_at(row), dmin = half_at(row + 2);
            const uint8_t *qh = row + 16, *qs = row + (j->type == QT_Q5_K ? 48 : 16);
            for (int k = 0; k < 128; k++) { /* sub-block 2g low nibbles, 2g+1 high */
                w[64 * (k / 32) + k % 32] = qs[k] & 15;
                w[64 * (k / 32) + 32 + k % 32] = qs[k] >> 4;
            }
            if (j->type == QT_Q5_K) {
                for (int k = 0; k < QK_K; k++)
                    w[k] += ((qh[k % 32] >> (k / 32)) & 1) << 4;
            }
            for (int sb = 0; sb < 8; sb++) {
                uint32_t b = 8 * s + (uint32_t)sb;
                int sc, m;
                mm_k4_scale_min(sb, row + 4, &sc, &m);
                block_dot(w + 32 * sb, xq + 32 * (size_t)b, &pw, &sx);
                acc = fmaf(d * (float)sc * xd[b], (float)pw, acc);
                acc = fmaf(-(dmin * (float)m), xd[b] * (float)sx, acc);
            }
        }
        break;
    case QT_Q6_K: /* quant.c's layout; q_w = the 6-bit value - 32, scale sc[e / 16] */
        for (uint32_t s = 0; s < nb / 8; s++, row += j->block_bytes) {
            float d = half_at(row + 208);
            const int8_t *sc = (const int8_t *)(row + 192);
            for (int k = 0; k < QK_K; k++) {
                int h = k / 128, part = k % 128 / 32, l = k % 32;
                int lo = row[64 * h + 32 * (part & 1) + l], hb = row[128 + 32 * h + l];
                w[k] = ((part < 2 ? lo & 15 : lo >> 4) | ((hb >> (2 * part)) & 3) << 4) - 32;
            }
            for (int i = 0; i < 8; i++) {
                uint32_t b = 8 * s + (uint32_t)i;
                int32_t half[2] = { 0, 0 };
                for (int e = 0; e < 32; e++)
                    half[e / 16] += w[32 * i + e] * xq[32 * (size_t)b + e];
                pw = sc[2 * i] * half[0] + sc[2 * i + 1] * half[1]; /* |pw| < 2^24 */
                acc = fmaf(d * xd[b], (float)pw, acc);
            }
        }
        break;
    default: /* the driver sends no other type */
        break;
    }
    return acc;
}

void cpu_mmq_rows_portable(const mm_job_t *j, uint32_t o0, uint32_t n)
{
    uint32_t nb = j->n_in / QK_SMALL;
    for (uint32_t t = 0; t < j->n_tok; t++) {
        const int8_t *xq = j->xq + (size_t)t * j->n_in;
        const float *xd = j->xd + (size_t)t * nb;
        for (uint32_t r = 0; r < n; r++)
            j->y[(size_t)t * j->n_out + o0 + r] =
                row_dot(j, j->w + (size_t)(o0 + r) * j->row_bytes, xq, xd);
    }
}
