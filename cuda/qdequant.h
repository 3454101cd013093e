/*
 * qdequant.h - eight consecutive elements of a packed weight (base/qpack.h)
 * as floats, and the K-quants' 6-bit scales: the body of cuda/qmatvec.cu's
 * dequantisation kernel and the scale decoding its matrix-vector kernel
 * shares.  Plain C (host and device), so that tests/unit/test_qdequant.c
 * checks the indexing against base/qpack.c's reference where there is no
 * GPU.
 *
 * Types: Q4_0, Q4_1, Q8_0 and Q4_K (qmv_has_kernel's).  In the packed
 * layout rows are consecutive, so GGUF block b of the matrix has its quants
 * at qs + b * qs_bytes (16, 16, 32, 128) and its meta at meta + b *
 * meta_bytes (4, 4, 4, 16): two halves {d, m} for the small types (m
 * unused by Q4_0 and Q8_0), {d, dmin} and the twelve scale bytes for Q4_K.
 */
#ifndef LLAMAD_QDEQUANT_H
#define LLAMAD_QDEQUANT_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif
#include "base/quant.h"
#ifdef __cplusplus
}
#endif

#ifdef __CUDACC__
#include <cuda_fp16.h>
#define QD_HD __host__ __device__
#define QD_ALIGN8 __align__(8)
#else
#define QD_HD
#define QD_ALIGN8 __attribute__((aligned(8)))
#endif

/* 8 bytes of quants, read in one load on the device. */
typedef struct QD_ALIGN8 { uint32_t x, y; } qd_u2_t;

/* The low and the high half of a meta word as floats. */
QD_HD static inline float qd_half_lo(uint32_t w)
{
#ifdef __CUDA_ARCH__
    return __half2float(__ushort_as_half((unsigned short)(w & 0xffff)));
#else
    return f16_to_f32((uint16_t)(w & 0xffff));
#endif
}

QD_HD static inline float qd_half_hi(uint32_t w)
{
#ifdef __CUDA_ARCH__
    return __half2float(__ushort_as_half((unsigned short)(w >> 16)));
#else
    return f16_to_f32((uint16_t)(w >> 16));
#endif
}

/* Byte k (0..11) of the K-quants' twelve scale bytes, held in words s1..s3 (bytes 4..15 of the meta). */
QD_HD static inline int qd_kbyte(int k, uint32_t s1, uint32_t s2, uint32_t s3)
{
    uint32_t w = k < 4 ? s1 : k < 8 ? s2 : s3;
    return (int)((w >> (8 * (k & 3))) & 0xff);
}

/* Sub-block j's 6-bit scale and min (base/quant.c's scale_min_k4). */
QD_HD static inline void qd_kscale_min(int j, uint32_t s1, uint32_t s2, uint32_t s3, int *sc, int *mn)
{
    if (j < 4) {
        *sc = qd_kbyte(j, s1, s2, s3) & 63;
        *mn = qd_kbyte(j + 4, s1, s2, s3) & 63;
    } else {
        *sc = (qd_kbyte(j + 4, s1, s2, s3) & 15) | ((qd_kbyte(j - 4, s1, s2, s3) >> 6) << 4);
        *mn = (qd_kbyte(j + 4, s1, s2, s3) >> 4) | ((qd_kbyte(j, s1, s2, s3) >> 6) << 4);
    }
}

/* Byte k (0..7) of q, shifted right by sh, low 4 bits (sh 0 or 4) or all 8 (sh 0, mask 0xff). */
QD_HD static inline uint32_t qd_byte(qd_u2_t q, int k, int sh, uint32_t mask)
{
    return ((k < 4 ? q.x : q.y) >> (8 * (k & 3) + sh)) & mask;
}

/*
 * v[0..7] = elements e0 .. e0 + 7 of the packed matrix of `type` (qs, meta:
 * its two arrays; e0 a multiple of 8).  The float operations are
 * base/qpack.c's (d (q - 8); d q + m; d q; d sc q - dmin mn).  An unknown
 * type gives zeros.
 */
QD_HD static inline void qd_dequant8(uint32_t type, const uint8_t *qs, const uint8_t *meta, uint64_t e0, float v[8])
{
    if (type == QT_Q4_0 || type == QT_Q4_1) {
        uint64_t b = e0 / 32;
        uint32_t o = (uint32_t)(e0 % 32);   /* elements o..: low nibbles of bytes o.. (o < 16), else high of o - 16.. */
        qd_u2_t q = *(const qd_u2_t *)(qs + b * 16 + o % 16);
        uint32_t m = *(const uint32_t *)(meta + b * 4);
        float d = qd_half_lo(m), mn = qd_half_hi(m);
        int sh = o < 16 ? 0 : 4;
        for (int k = 0; k < 8; k++) {
            int n = (int)qd_byte(q, k, sh, 15);
            v[k] = type == QT_Q4_0 ? d * (float)(n - 8) : d * (float)n + mn;
        }
    } else if (type == QT_Q8_0) {
        uint64_t b = e0 / 32;
        qd_u2_t q = *(const qd_u2_t *)(qs + b * 32 + e0 % 32);
        float d = qd_half_lo(*(const uint32_t *)(meta + b * 4));
        for (int k = 0; k < 8; k++)
            v[k] = d * (float)(int8_t)qd_byte(q, k, 0, 0xff);
    } else if (type == QT_Q4_K) {
        uint64_t b = e0 / 256;
        uint32_t o = (uint32_t)(e0 % 256), j = o / 32, l0 = o % 32;   /* sub-block j, its elements l0.. */
        const uint32_t *mw = (const uint32_t *)(meta + b * 16);
        float d = qd_half_lo(mw[0]), dmin = qd_half_hi(mw[0]);
        int sc, mnq;
        qd_kscale_min((int)j, mw[1], mw[2], mw[3], &sc, &mnq);
        float d1 = d * (float)sc, m1 = dmin * (float)mnq;
        /* sub-blocks 2i and 2i + 1 share 32 bytes: the low nibbles, then the high */
        qd_u2_t q = *(const qd_u2_t *)(qs + b * 128 + 32 * (j / 2) + l0);
        int sh = (j & 1) ? 4 : 0;
        for (int k = 0; k < 8; k++)
            v[k] = d1 * (float)qd_byte(q, k, sh, 15) - m1;
    } else {
        for (int k = 0; k < 8; k++)
            v[k] = 0.0f;
    }
}

#endif
