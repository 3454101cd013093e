/*
 * qpack.c - GGUF blocks repacked for 16-byte loads, and the packed
 * layout's reference dequantisation (the layout: qpack.h).
 *
 * In every supported type the quants and the scales each occupy one
 * contiguous range of the GGUF block, so packing is two copies per block.
 * The dequantisers below read the packed layout and use the float
 * operations of base/quant.c in the same order, so that the results are
 * bit-identical (tests/unit/test_qpack.c checks this on random blocks).
 */
#include "qpack.h"

#include <string.h>

#include "err.h"

/* ---------------------------------------------------------------- the layouts */

typedef struct {
    qtype_t type;
    uint32_t qs_src, qs_len;        /* the quants' byte range in the GGUF block */
    uint32_t meta_src, meta_len;    /* the scales' byte range */
    uint32_t meta_bytes;            /* meta_len rounded up to 4 */
} pack_kind_t;

static const pack_kind_t kinds[] = {
    { QT_Q4_0, 2, 16, 0, 2, 4 },
    { QT_Q4_1, 4, 16, 0, 4, 4 },
    { QT_Q8_0, 2, 32, 0, 2, 4 },
    { QT_Q4_K, 16, 128, 0, 16, 16 },
    { QT_Q5_K, 16, 160, 0, 16, 16 },        /* qh[32] then qs[128], as in the block */
    { QT_Q6_K, 0, 192, 192, 18, 20 },       /* ql[128], qh[64]; scales[16], d */
};

static const pack_kind_t *kind_of(uint32_t type)
{
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++)
        if ((uint32_t)kinds[i].type == type)
            return &kinds[i];
    return NULL;
}

int qpack_supported(uint32_t type)
{
    return kind_of(type) != NULL;
}

int qpack_layout(uint32_t type, uint64_t n_out, uint64_t n_in, qpack_layout_t *out, char *err, size_t errlen)
{
    const pack_kind_t *k = kind_of(type);
    const qtype_info_t *qi = qtype_info(type);
    if (k == NULL || qi == NULL)
        return err_set(err, errlen, ERR_UNSUPPORTED, "type %s has no packed layout",
                       qi != NULL ? qi->name : "(unknown)");
    if (n_out == 0 || n_in == 0)
        return err_set(err, errlen, ERR_FORMAT, "%s matrix of %llu x %llu: empty", qi->name,
                       (unsigned long long)n_out, (unsigned long long)n_in);
    if (n_out > QPACK_MAX_DIM || n_in > QPACK_MAX_DIM)
        return err_set(err, errlen, ERR_RANGE, "%s matrix of %llu x %llu: a dimension exceeds %u", qi->name,
                       (unsigned long long)n_out, (unsigned long long)n_in, QPACK_MAX_DIM);
    if (n_in % qi->block_elems != 0)
        return err_set(err, errlen, ERR_FORMAT, "%s matrix: a row of %llu elements is not a multiple of the block of %u",
                       qi->name, (unsigned long long)n_in, qi->block_elems);
    uint64_t blocks = n_out * (n_in / qi->block_elems);     /* < 2^48: no overflow */
    uint64_t qs_total = blocks * k->qs_len;
    uint64_t meta_off = (qs_total + 255) & ~(uint64_t)255;
    qpack_layout_t L = {
        .type = (qtype_t)type,
        .n_out = (uint32_t)n_out,
        .n_in = (uint32_t)n_in,
        .blocks_per_row = (uint32_t)(n_in / qi->block_elems),
        .block_elems = qi->block_elems,
        .src_block_bytes = qi->block_bytes,
        .qs_bytes = k->qs_len,
        .meta_bytes = k->meta_bytes,
        .meta_off = meta_off,
        .total_bytes = meta_off + blocks * k->meta_bytes,
    };
    *out = L;
    return 0;
}

int qpack_rows(const qpack_layout_t *L, const void *src, uint64_t row0, uint64_t n_rows, void *qs_dst,
               void *meta_dst)
{
    const pack_kind_t *k = kind_of(L->type);
    if (k == NULL || row0 > L->n_out || n_rows > L->n_out - row0)
        return ERR_INVALID;
    const uint8_t *s = src;
    uint8_t *q = qs_dst, *m = meta_dst;
    uint64_t nb = n_rows * L->blocks_per_row;
    for (uint64_t b = 0; b < nb; b++) {
        const uint8_t *blk = s + b * L->src_block_bytes;
        memcpy(q + b * k->qs_len, blk + k->qs_src, k->qs_len);
        uint8_t *mb = m + b * k->meta_bytes;
        memcpy(mb, blk + k->meta_src, k->meta_len);
        memset(mb + k->meta_len, 0, k->meta_bytes - k->meta_len);
    }
    return 0;
}

/* ---------------------------------------------------------------- dequantisation of the packed layout */

static inline float half_at(const uint8_t *p)
{
    return f16_to_f32((uint16_t)(p[0] | (p[1] << 8)));
}

/* Q4_0: x[j] = d (lo_j - 8), x[j+16] = d (hi_j - 8).  y: [32] */
static void dq_q4_0(const uint8_t *qs, const uint8_t *meta, float *y)
{
    float d = half_at(meta);
    for (int j = 0; j < 16; j++) {
        y[j] = d * (float)((qs[j] & 15) - 8);
        y[j + 16] = d * (float)((qs[j] >> 4) - 8);
    }
}

/* Q4_1: x = d q + m.  y: [32] */
static void dq_q4_1(const uint8_t *qs, const uint8_t *meta, float *y)
{
    float d = half_at(meta), m = half_at(meta + 2);
    for (int j = 0; j < 16; j++) {
        float lo = d * (float)(qs[j] & 15), hi = d * (float)(qs[j] >> 4);
        y[j] = lo + m;
        y[j + 16] = hi + m;
    }
}

/* Q8_0: x = d q.  y: [32] */
static void dq_q8_0(const uint8_t *qs, const uint8_t *meta, float *y)
{
    float d = half_at(meta);
    for (int j = 0; j < 32; j++)
        y[j] = d * (float)(int8_t)qs[j];
}

/* Sub-block j's 6-bit scale and min from the twelve bytes (quant.c's rule). */
static void k_scale_min(int j, const uint8_t *s, int *sc, int *mn)
{
    if (j < 4) {
        *sc = s[j] & 63;
        *mn = s[j + 4] & 63;
    } else {
        *sc = (s[j + 4] & 15) | ((s[j - 4] >> 6) << 4);
        *mn = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
    }
}

/* Q4_K and Q5_K (qh NULL for Q4_K): sub-block j of 32: x = d sc_j q - dmin m_j.  y: [256] */
static void dq_k45(const uint8_t *qh, const uint8_t *qs, const uint8_t *meta, float *y)
{
    float d = half_at(meta), dmin = half_at(meta + 2);
    for (int j = 0; j < 8; j++) {
        int sc, mn;
        k_scale_min(j, meta + 4, &sc, &mn);
        float d1 = d * (float)sc, m1 = dmin * (float)mn;
        const uint8_t *q = qs + 32 * (j / 2);
        for (int l = 0; l < 32; l++) {
            int v = (j & 1) ? q[l] >> 4 : q[l] & 15;
            if (qh != NULL)
                v |= ((qh[l] >> j) & 1) << 4;
            float t = d1 * (float)v;
            y[32 * j + l] = t - m1;
        }
    }
}

/* Q6_K: qs = ql[128], qh[64]; meta = scales[16], d.  y: [256] (the bit layout: quant.c) */
static void dq_q6_k(const uint8_t *qs, const uint8_t *meta, float *y)
{
    const int8_t *sc = (const int8_t *)meta;
    float d = half_at(meta + 16);
    for (int h = 0; h < 2; h++) {
        const uint8_t *ql = qs + 64 * h, *qh = qs + 128 + 32 * h;
        for (int e = 0; e < 128; e++) {
            int l = e % 32, k = e / 32;     /* element l + 32 k of the half */
            int low = (k & 1) ? ql[l + 32] : ql[l];
            low = (k & 2) ? low >> 4 : low & 15;
            int q = (low | (((qh[l] >> (2 * k)) & 3) << 4)) - 32;
            float ds = d * (float)sc[8 * h + e / 16];
            y[128 * h + e] = ds * (float)q;
        }
    }
}

int qpack_dequant_row(const qpack_layout_t *L, const void *packed, uint64_t row, float *dst)
{
    if (row >= L->n_out || kind_of(L->type) == NULL)
        return ERR_INVALID;
    const uint8_t *p = packed;
    const uint8_t *qs = p + qpack_qs_offset(L, row), *meta = p + qpack_meta_offset(L, row);
    for (uint32_t b = 0; b < L->blocks_per_row; b++) {
        const uint8_t *q = qs + (uint64_t)b * L->qs_bytes, *m = meta + (uint64_t)b * L->meta_bytes;
        float *y = dst + (uint64_t)b * L->block_elems;
        switch (L->type) {
        case QT_Q4_0: dq_q4_0(q, m, y); break;
        case QT_Q4_1: dq_q4_1(q, m, y); break;
        case QT_Q8_0: dq_q8_0(q, m, y); break;
        case QT_Q4_K: dq_k45(NULL, q, m, y); break;
        case QT_Q5_K: dq_k45(q, q + 32, m, y); break;
        case QT_Q6_K: dq_q6_k(q, m, y); break;
        default: return ERR_INVALID;
        }
    }
    return 0;
}
