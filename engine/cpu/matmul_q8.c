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

#include "base/quant.h"
#include "matmul.h"
#include "matmul_kern.h"

void cpu_quantize_act(const float *x, uint32_t n, int8_t *q, float *d, float *ls)
{
    for (uint32_t b = 0; b < n / QK_SMALL; b++) {
        const float *xb = x + (size_t)b * QK_SMALL;
        int8_t *qb = q + (size_t)b * QK_SMALL;
        float amax = 0.0f;
        for (int k = 0; k < QK_SMALL; k++) {
            float a = fabsf(xb[k]);
            amax = a > amax || a != a ? a : amax; /* a NaN sticks */
        }
        if (!(amax <= 3.4028234e38f)) { /* NaN or infinity */
            d[b] = NAN;
            memset(qb, 0, QK_SMALL);
        } else if (amax == 0.0f) {
            d[b] = 0.0f;
            memset(qb, 0, QK_SMALL);
        } else {
            d[b] = amax / 127.0f;
            float id = 127.0f / amax;
            for (int k = 0; k < QK_SMALL; k++) {
                /* roundf (halves away from zero) without the call: |v| is
                 * at most 127 and a little, so the truncation to int and
                 * the fraction v - i are exact */
                float v = xb[k] * id;
                int i = (int)v;
                float f = v - (float)i;
                i += (f >= 0.5f) - (f <= -0.5f);
                qb[k] = (int8_t)(i > 127 ? 127 : i < -127 ? -127 : i);
            }
        }
        for (int l = 0; l < 8; l++)
            ls[8 * (size_t)b + l] = (float)(qb[4 * l] + qb[4 * l + 1] + qb[4 * l + 2] + qb[4 * l + 3]);
    }
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
