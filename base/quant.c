/*
 * quant.c - element types and the reference dequantisers.
 *
 * Block layouts are ggml's (all little-endian, packed, no padding):
 *
 *   Q4_0  32 elems, 18 B: f16 d; u8 qs[16]
 *         x[j] = d * ((qs[j] & 15) - 8),  x[j+16] = d * ((qs[j] >> 4) - 8)
 *   Q4_1  32 elems, 20 B: f16 d; f16 m; u8 qs[16]
 *         x[j] = d * (qs[j] & 15) + m,   x[j+16] = d * (qs[j] >> 4) + m
 *   Q8_0  32 elems, 34 B: f16 d; i8 qs[32]
 *         x[j] = d * qs[j]
 *   Q4_K  256 elems, 144 B: f16 d; f16 dmin; u8 scales[12]; u8 qs[128]
 *         eight sub-blocks of 32, each with a 6-bit scale sc and min m
 *         (packed in scales[], see scale_min_k4): x = d*sc * q - dmin*m,
 *         q a 4-bit value; sub-blocks 2i and 2i+1 take the low and high
 *         nibbles of qs[32i .. 32i+31].
 *   Q5_K  256 elems, 176 B: f16 d; f16 dmin; u8 scales[12]; u8 qh[32];
 *         u8 qs[128]: as Q4_K with a fifth bit, bit i of qh[l] for
 *         element l of sub-block i.
 *   Q6_K  256 elems, 210 B: u8 ql[128]; u8 qh[64]; i8 scales[16]; f16 d
 *         sixteen sub-blocks of 16, x = d*scales[k] * (q - 32), q a
 *         6-bit value (low 4 bits from ql, high 2 bits from qh); see
 *         dequant_q6_k for which bits belong to which element.
 *
 * Rounding: each value is computed with float32 operations in the order
 * ggml's reference code (and the gguf Python package) uses, so results
 * are bit-identical to theirs.  A half scale has 11 significant bits, so
 * d * q and d * sc * q for Q4/Q5 quants are exact; only the final add of
 * the min rounds, and fusing it into a multiply-add cannot change the
 * result.  Q6_K's (d * sc) * q may round at the last step: keep that order.
 */
#include "quant.h"

#include <string.h>

#include "err.h"

/* ---------------------------------------------------------------- types */

static const qtype_info_t info_f32  = { "F32",  1, 4 };
static const qtype_info_t info_f16  = { "F16",  1, 2 };
static const qtype_info_t info_bf16 = { "BF16", 1, 2 };
static const qtype_info_t info_q4_0 = { "Q4_0", QK_SMALL, 2 + QK_SMALL / 2 };
static const qtype_info_t info_q4_1 = { "Q4_1", QK_SMALL, 4 + QK_SMALL / 2 };
static const qtype_info_t info_q8_0 = { "Q8_0", QK_SMALL, 2 + QK_SMALL };
static const qtype_info_t info_q4_k = { "Q4_K", QK_K, 4 + 12 + QK_K / 2 };
static const qtype_info_t info_q5_k = { "Q5_K", QK_K, 4 + 12 + QK_K / 8 + QK_K / 2 };
static const qtype_info_t info_q6_k = { "Q6_K", QK_K, QK_K / 2 + QK_K / 4 + QK_K / 16 + 2 };

const qtype_info_t *qtype_info(uint32_t type)
{
    switch (type) {
    case QT_F32:  return &info_f32;
    case QT_F16:  return &info_f16;
    case QT_BF16: return &info_bf16;
    case QT_Q4_0: return &info_q4_0;
    case QT_Q4_1: return &info_q4_1;
    case QT_Q8_0: return &info_q8_0;
    case QT_Q4_K: return &info_q4_k;
    case QT_Q5_K: return &info_q5_k;
    case QT_Q6_K: return &info_q6_k;
    default:      return NULL;
    }
}

int qtype_nbytes(uint32_t type, uint64_t n_elems, uint64_t *out)
{
    const qtype_info_t *ti = qtype_info(type);
    if (ti == NULL)
        return ERR_UNSUPPORTED;
    if (n_elems % ti->block_elems != 0)
        return ERR_FORMAT;
    uint64_t n;
    if (__builtin_mul_overflow(n_elems / ti->block_elems, (uint64_t)ti->block_bytes, &n))
        return ERR_RANGE;
    *out = n;
    return 0;
}

/* ---------------------------------------------------- half and bfloat16 */

static inline float bits_to_f32(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static inline uint32_t f32_to_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

/* Exact: every half is a float.  NaN payloads are kept (shifted up), as
 * numpy does, so a signalling NaN stays signalling. */
float f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t man = h & 0x3ffu;

    if (exp == 0x1f)                       /* inf or NaN */
        return bits_to_f32(sign | 0x7f800000u | (man << 13));
    if (exp != 0)                          /* normal: rebias 15 -> 127 */
        return bits_to_f32(sign | ((exp + 112u) << 23) | (man << 13));
    if (man == 0)
        return bits_to_f32(sign);          /* signed zero */
    /* Subnormal half: man * 2^-24.  Normalise: shift the leading one up
     * to bit 10, lowering the exponent once per shift. */
    uint32_t e = 113;                      /* 127 - 14: exponent of 2^-14 */
    while ((man & 0x400u) == 0) {
        man <<= 1;
        e--;
    }
    return bits_to_f32(sign | (e << 23) | ((man & 0x3ffu) << 13));
}

uint16_t f32_to_f16(float f)
{
    uint32_t u = f32_to_bits(f);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    uint32_t exp = (u >> 23) & 0xffu;
    uint32_t man = u & 0x7fffffu;

    if (exp == 0xff) {                     /* inf, or NaN kept quiet */
        if (man == 0)
            return sign | 0x7c00u;
        return sign | 0x7e00u | (uint16_t)(man >> 13);
    }
    int32_t e = (int32_t)exp - 127 + 15;   /* half's biased exponent */
    if (e >= 0x1f)
        return sign | 0x7c00u;             /* overflow: infinity */
    if (e <= 0) {
        /* Subnormal half (or zero).  The value is (man|1<<23) * 2^(e-24)
         * in units of 2^-24; shift right by 14 - e with round to even. */
        if (e < -10)
            return sign;                   /* below half the smallest subnormal */
        man |= 0x800000u;
        uint32_t shift = (uint32_t)(14 - e);
        uint32_t q = man >> shift;
        uint32_t rem = man & ((1u << shift) - 1);
        uint32_t half = 1u << (shift - 1);
        if (rem > half || (rem == half && (q & 1u)))
            q++;                           /* may carry into the smallest normal: correct */
        return sign | (uint16_t)q;
    }
    uint32_t q = ((uint32_t)e << 10) | (man >> 13);
    uint32_t rem = man & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (q & 1u)))
        q++;                               /* a carry may reach infinity: correct */
    return sign | (uint16_t)q;
}

float bf16_to_f32(uint16_t h)
{
    return bits_to_f32((uint32_t)h << 16);
}

/* As ggml: a NaN is made quiet (bit 22 set) and truncated; anything else
 * rounds to nearest even (overflowing to infinity where it must). */
uint16_t f32_to_bf16(float f)
{
    uint32_t u = f32_to_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((u >> 16) | 0x40u);
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

/* ------------------------------------------------------- dequantisers */

static inline uint16_t rd_u16(const uint8_t *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}

static void dequant_f32(const uint8_t *src, float *dst, size_t n)
{
    memcpy(dst, src, n * sizeof(float)); /* stored little-endian, as the host */
}

static void dequant_f16(const uint8_t *src, float *dst, size_t n)
{
    for (size_t i = 0; i < n; i++)
        dst[i] = f16_to_f32(rd_u16(src + 2 * i));
}

static void dequant_bf16(const uint8_t *src, float *dst, size_t n)
{
    for (size_t i = 0; i < n; i++)
        dst[i] = bf16_to_f32(rd_u16(src + 2 * i));
}

static void dequant_q4_0(const uint8_t *b, float *y) /* y: [32] */
{
    float d = f16_to_f32(rd_u16(b));
    const uint8_t *qs = b + 2;
    for (int j = 0; j < QK_SMALL / 2; j++) {
        y[j] = d * (float)((qs[j] & 15) - 8);
        y[j + QK_SMALL / 2] = d * (float)((qs[j] >> 4) - 8);
    }
}

static void dequant_q4_1(const uint8_t *b, float *y) /* y: [32] */
{
    float d = f16_to_f32(rd_u16(b));
    float m = f16_to_f32(rd_u16(b + 2));
    const uint8_t *qs = b + 4;
    for (int j = 0; j < QK_SMALL / 2; j++) {
        float lo = d * (float)(qs[j] & 15);
        float hi = d * (float)(qs[j] >> 4);
        y[j] = lo + m;
        y[j + QK_SMALL / 2] = hi + m;
    }
}

static void dequant_q8_0(const uint8_t *b, float *y) /* y: [32] */
{
    float d = f16_to_f32(rd_u16(b));
    const int8_t *qs = (const int8_t *)(b + 2);
    for (int j = 0; j < QK_SMALL; j++)
        y[j] = d * (float)qs[j];
}

/*
 * The twelve scale bytes of Q4_K and Q5_K hold eight 6-bit scales and
 * eight 6-bit mins.  For sub-block j < 4 they are the low 6 bits of bytes
 * j and j+4; for j >= 4 the low 4 bits come from byte j+4 (scale: low
 * nibble, min: high nibble) and the top 2 bits from the spare top bits of
 * bytes j-4 (scale) and j (min).
 */
static void scale_min_k4(int j, const uint8_t *q, uint8_t *sc, uint8_t *m)
{
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (uint8_t)((q[j + 4] & 0x0f) | ((q[j - 4] >> 6) << 4));
        *m = (uint8_t)((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
    }
}

static void dequant_q4_k(const uint8_t *b, float *y) /* y: [256] */
{
    float d = f16_to_f32(rd_u16(b));
    float dmin = f16_to_f32(rd_u16(b + 2));
    const uint8_t *scales = b + 4;
    const uint8_t *qs = b + 16;
    for (int j = 0; j < QK_K / 32; j++) {
        uint8_t sc, m;
        scale_min_k4(j, scales, &sc, &m);
        float d1 = d * (float)sc;
        float m1 = dmin * (float)m;
        const uint8_t *q = qs + 32 * (j / 2);
        int shift = (j & 1) ? 4 : 0;
        for (int l = 0; l < 32; l++) {
            float t = d1 * (float)((q[l] >> shift) & 15);
            y[32 * j + l] = t - m1;
        }
    }
}

static void dequant_q5_k(const uint8_t *b, float *y) /* y: [256] */
{
    float d = f16_to_f32(rd_u16(b));
    float dmin = f16_to_f32(rd_u16(b + 2));
    const uint8_t *scales = b + 4;
    const uint8_t *qh = b + 16;
    const uint8_t *qs = b + 48;
    for (int j = 0; j < QK_K / 32; j++) {
        uint8_t sc, m;
        scale_min_k4(j, scales, &sc, &m);
        float d1 = d * (float)sc;
        float m1 = dmin * (float)m;
        const uint8_t *q = qs + 32 * (j / 2);
        int shift = (j & 1) ? 4 : 0;
        for (int l = 0; l < 32; l++) {
            int v = ((q[l] >> shift) & 15) | (((qh[l] >> j) & 1) << 4);
            float t = d1 * (float)v;
            y[32 * j + l] = t - m1;
        }
    }
}

/*
 * Q6_K: the block is two halves of 128 elements; half h uses ql[64h ..
 * 64h+63], qh[32h .. 32h+31] and scales[8h .. 8h+7].  Within a half, for
 * l in 0..31:
 *   element l      = low nibble of ql[l]      | bits 0-1 of qh[l] << 4
 *   element l + 32 = low nibble of ql[l + 32] | bits 2-3 of qh[l] << 4
 *   element l + 64 = high nibble of ql[l]     | bits 4-5 of qh[l] << 4
 *   element l + 96 = high nibble of ql[l + 32]| bits 6-7 of qh[l] << 4
 * and element e of the half has scale scales[8h + e / 16].
 */
static void dequant_q6_k(const uint8_t *b, float *y) /* y: [256] */
{
    const uint8_t *ql_all = b;
    const uint8_t *qh_all = b + QK_K / 2;
    const int8_t *sc_all = (const int8_t *)(b + QK_K / 2 + QK_K / 4);
    float d = f16_to_f32(rd_u16(b + QK_K / 2 + QK_K / 4 + QK_K / 16));
    for (int h = 0; h < 2; h++) {
        const uint8_t *ql = ql_all + 64 * h;
        const uint8_t *qh = qh_all + 32 * h;
        const int8_t *sc = sc_all + 8 * h;
        float *yh = y + 128 * h;
        for (int l = 0; l < 32; l++) {
            int q[4];
            q[0] = ((ql[l] & 15) | (((qh[l] >> 0) & 3) << 4)) - 32;
            q[1] = ((ql[l + 32] & 15) | (((qh[l] >> 2) & 3) << 4)) - 32;
            q[2] = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
            q[3] = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
            for (int k = 0; k < 4; k++) {
                int e = l + 32 * k;
                float ds = d * (float)sc[e / 16];
                yh[e] = ds * (float)q[k];
            }
        }
    }
}

int quant_dequant(qtype_t type, const void *src, float *dst, size_t n)
{
    const qtype_info_t *ti = qtype_info((uint32_t)type);
    if (ti == NULL)
        return ERR_UNSUPPORTED;
    if (n % ti->block_elems != 0)
        return ERR_INVALID;
    if (n == 0)
        return 0;
    if (src == NULL || dst == NULL)
        return ERR_INVALID;

    const uint8_t *s = src;
    size_t nb = n / ti->block_elems;
    void (*block_fn)(const uint8_t *, float *) = NULL;
    switch (type) {
    case QT_F32:  dequant_f32(s, dst, n);  return 0;
    case QT_F16:  dequant_f16(s, dst, n);  return 0;
    case QT_BF16: dequant_bf16(s, dst, n); return 0;
    case QT_Q4_0: block_fn = dequant_q4_0; break;
    case QT_Q4_1: block_fn = dequant_q4_1; break;
    case QT_Q8_0: block_fn = dequant_q8_0; break;
    case QT_Q4_K: block_fn = dequant_q4_k; break;
    case QT_Q5_K: block_fn = dequant_q5_k; break;
    case QT_Q6_K: block_fn = dequant_q6_k; break;
    default:      return ERR_UNSUPPORTED;
    }
    for (size_t i = 0; i < nb; i++)
        block_fn(s + i * ti->block_bytes, dst + i * ti->block_elems);
    return 0;
}
