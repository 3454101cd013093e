/*
 * attention.c - tiled causal attention for the CPU backend (see
 * attention.h for the split of work and the order of operations).
 */
#include "attention.h"

#include <math.h>
#include <string.h>

#include "base/err.h"
#include "base/quant.h"
#include "vexp.h"
#include "vreduce.h"

#include "matmul.h"      /* cpu_matmul_isa, cpu_isa_usable */
#include "matmul_kern.h" /* cpu_mm_avx2_usable, cpu_mm_deq_f16_avx2 */

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define ATT_X86 1
#endif

/* A tile's rows hold at most this many accumulator floats (16 KiB, so
   the accumulators and one K/V block stay in L1 together). */
#define TILE_FLOATS 4096
/* Keys per KV block at most (cpu_attention refuses more): the widened
   K and V of one block take 2 x KV_MAX_B x head_dim scratch floats. */
#define KV_MAX_B 64

typedef float v8f __attribute__((vector_size(32)));
typedef int32_t v8i __attribute__((vector_size(32)));

typedef struct {
    const cpu_attn_t *a;
    const uint32_t *tile_first; /* [n_seqs + 1] */
    uint32_t tile;              /* query tokens per tile */
    uint32_t kv_per_task;       /* KV heads a task takes: 1, or n_head_kv (decode steps) */
    float *scratch;
    size_t scratch_floats;
    cpu_attn_build_t build;     /* the kernel's build: PLAIN, AVX2 or AVX512 */
} job_t;

static cpu_attn_build_t forced; /* CPU_ATTN_AUTO: follow cpu_matmul_isa() */

static uint32_t group_of(uint32_t n_head, uint32_t n_head_kv)
{
    return n_head / n_head_kv;
}

/* Query tokens per tile: as many as keep tile x G rows of head_dim floats
   within TILE_FLOATS, at least one. */
static uint32_t tile_tokens(uint32_t n_head, uint32_t n_head_kv, uint32_t head_dim)
{
    uint64_t per_tok = (uint64_t)group_of(n_head, n_head_kv) * head_dim;
    uint64_t t = TILE_FLOATS / per_tok;
    return t < 1 ? 1 : t > 64 ? 64 : (uint32_t)t;
}

size_t cpu_attn_scratch_floats(uint32_t n_head, uint32_t n_head_kv, uint32_t head_dim)
{
    if (n_head_kv == 0 || n_head % n_head_kv != 0)
        return 0;
    uint64_t rows = (uint64_t)tile_tokens(n_head, n_head_kv, head_dim) * group_of(n_head, n_head_kv);
    /* acc [rows, head_dim], then max [rows], sum [rows], padded to 8, then
       one block's widened K and V [KV_MAX_B, head_dim] each */
    return (size_t)(rows * head_dim + ((2 * rows + 7) & ~(uint64_t)7) + 2 * (uint64_t)KV_MAX_B * head_dim);
}

/* The floats of n halves: exact, so every build gives the same (the AVX2
   build's is matmul_avx2.c's cpu_mm_deq_f16_avx2). */
static void widen_plain(const uint8_t *src, float *dst, uint32_t n)
{
    (void)quant_dequant(QT_F16, src, dst, n);
}

static void narrow_plain(uint16_t *dst, const float *src, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++)
        dst[i] = f32_to_f16(src[i]);
}

#ifdef ATT_X86
/* F16C's round to nearest even is f32_to_f16's, NaNs included: the sign,
   the quiet bit and the payload's top nine bits (test_cpu_attention). */
__attribute__((target("avx2,f16c"))) static void narrow_f16c(uint16_t *dst, const float *src, uint32_t n)
{
    uint32_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(void *)(dst + i),
                         _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    narrow_plain(dst + i, src + i, n - i);
}
#endif

/*
 * Eight keys' scores at once: d[j] holds key j's eight lane sums; lane j
 * of the result is ((l0+l4)+(l2+l6))+((l1+l5)+(l3+l7)) of d[j], the
 * order that one key alone gets, formed with 21 shuffles and adds instead
 * of a horizontal sum per key.  A macro: a function passing 32-byte
 * vectors changes the ABI in the plain build.
 *   h_j(k) = l_k + l_(k+4): u_p = [h_p | h_(p+4)] for p = 0..3
 *   a_j = h_j(0) + h_j(2), b_j = h_j(1) + h_j(3): w0 = keys 0 1 | 4 5, w1 = 2 3 | 6 7
 *   lane j = a_j + b_j
 */
#define SH(a, b, ...) __builtin_shufflevector((a), (b), __VA_ARGS__)
#define REDUCE_U(d, p) (SH(d[p], d[(p) + 4], 0, 1, 2, 3, 8, 9, 10, 11) \
                        + SH(d[p], d[(p) + 4], 4, 5, 6, 7, 12, 13, 14, 15))
#define REDUCE_W(u, v) (SH(u, v, 0, 1, 8, 9, 4, 5, 12, 13) + SH(u, v, 2, 3, 10, 11, 6, 7, 14, 15))
#define reduce8(d) __extension__({                                                    \
        v8f u0_ = REDUCE_U(d, 0), u1_ = REDUCE_U(d, 1), u2_ = REDUCE_U(d, 2), u3_ = REDUCE_U(d, 3); \
        v8f w0_ = REDUCE_W(u0_, u1_), w1_ = REDUCE_W(u2_, u3_);                       \
        SH(w0_, w1_, 0, 2, 8, 10, 4, 6, 12, 14) + SH(w0_, w1_, 1, 3, 9, 11, 5, 7, 13, 15); \
    })

/* m = the lane-wise maximum of m and v, where a NaN in v never wins. */
#define MAX_WITH(m, v) do {                                  \
        v8f v_ = (v);                                        \
        v8i gt_ = v_ > (m);                                  \
        (m) = (v8f)(((v8i)v_ & gt_) | ((v8i)(m) & ~gt_));    \
    } while (0)

/*
 * The next block's lines, a few at a time: blocks lie anywhere in the
 * pool, so the hardware's stream prefetch does not run ahead across
 * them, and a decode task has too little work per block to hide a miss.
 * All of a block's lines at once stalled the core on full fill buffers
 * (a third of the kernel's time at batch 16); one line of K and one of V
 * per key or group of keys worked on spreads them over the block's work.
 */
typedef struct {
    const char *k, *v;
    uint64_t at, end;   /* bytes issued, bytes to issue */
} prefetch_t;

static inline __attribute__((always_inline)) void prefetch_some(prefetch_t *pf)
{
    if (pf->at < pf->end) {
        __builtin_prefetch(pf->k + pf->at);
        __builtin_prefetch(pf->v + pf->at);
        pf->at += 64;
    }
}

/* g <= GROUP_MAX heads of one token at once (the AVX512 build's kernel):
   rows q, q + hd, ..., accumulators ac, ac + hd / 8, ..., mx[0..g),
   dn[0..g); V as floats or (vh) halves. */
#define GROUP_MAX 4
typedef void group_fn(const float *q, const float *kb, const void *vb, int vh, uint32_t hd, uint32_t nb,
                      float scale, uint32_t g, v8f *ac, float *mx, float *dn, prefetch_t *pf);

/*
 * One query row's scores q.k over the first nb keys of one block (kb: B x
 * hd floats) into sc (B <= 64; the last vector's spare lanes -inf), in
 * the order attention.h states; returns their maximum (a NaN never wins;
 * -inf where there is none).
 */
static inline __attribute__((always_inline)) float
row_scores(const float *q, const float *kb, uint32_t hd, uint32_t nb, float scale, v8f *sc, prefetch_t *pf)
{
    uint32_t nv = hd / 8;
    float *scores = (float *)sc, bmax = -INFINITY;
    for (uint32_t j = nb; j < (nb + 7) / 8 * 8; j++)
        scores[j] = -INFINITY;          /* the last vector's spare lanes */
    uint32_t j = 0;
    v8f bm8 = { -INFINITY, -INFINITY, -INFINITY, -INFINITY,
                -INFINITY, -INFINITY, -INFINITY, -INFINITY };
    for (; j + 8 <= nb; j += 8) {       /* eight keys: reduce8 */
        v8f d[8] = { { 0 } };
        for (uint32_t x = 0; x < nv; x++) {
            v8f qv;
            memcpy(&qv, q + 8 * x, sizeof qv);
#pragma GCC unroll 8
            for (int k8 = 0; k8 < 8; k8++) {
                v8f k;
                memcpy(&k, kb + (uint64_t)(j + (uint32_t)k8) * hd + 8 * x, sizeof k);
                d[k8] += qv * k;
            }
        }
        prefetch_some(pf);
        v8f s8 = reduce8(d) * scale;
        sc[j / 8] = s8;
        MAX_WITH(bm8, s8);              /* lane-wise; a NaN never wins */
    }
    /* the lanes' maximum by halves (any order gives a maximum;
     * bm8 holds no NaN) */
    MAX_WITH(bm8, SH(bm8, bm8, 4, 5, 6, 7, 0, 1, 2, 3));
    MAX_WITH(bm8, SH(bm8, bm8, 2, 3, 0, 1, 6, 7, 4, 5));
    MAX_WITH(bm8, SH(bm8, bm8, 1, 0, 3, 2, 5, 4, 7, 6));
    bmax = bm8[0] > bmax ? bm8[0] : bmax;
    for (; j < nb; j++) {
        const float *kr = kb + (uint64_t)j * hd;
        v8f d = { 0 };
        for (uint32_t x = 0; x < nv; x++) {
            v8f k, qv;
            memcpy(&k, kr + 8 * x, sizeof k);
            memcpy(&qv, q + 8 * x, sizeof qv);
            d += qv * k;
        }
        scores[j] = (((d[0] + d[4]) + (d[2] + d[6])) + ((d[1] + d[5]) + (d[3] + d[7])))
                    * scale;
        bmax = scores[j] > bmax ? scores[j] : bmax;
    }
    return bmax;
}

/*
 * One query row (q, its accumulator ac, its running maximum *mxr and sum
 * *dnr) over the first nb keys of one block (kb, vb: B x hd floats), in
 * the order attention.h states.
 */
static inline __attribute__((always_inline)) void
row_block(const float *q, const float *kb, const float *vb, uint32_t hd, uint32_t nb, float scale, v8f *ac,
          float *mxr, float *dnr, prefetch_t *pf)
{
    uint32_t nv = hd / 8;
    v8f sc[8];                          /* B <= 64 scores */
    float *scores = (float *)sc, bmax = row_scores(q, kb, hd, nb, scale, sc, pf);
    float new_max = bmax > *mxr ? bmax : *mxr;
    v8f corr = { *mxr - new_max };     /* -inf on the first block: exp gives 0 */
    vexp8(&corr);
    *dnr *= corr[0];
    for (uint32_t x = 0; x < nv; x++)
        ac[x] *= corr[0];
    for (uint32_t c = 0; c < (nb + 7) / 8; c++) {
        sc[c] -= new_max;
        vexp8(&sc[c]);
    }
    /* acc += p v, eight vectors of the row at a time held in
     * registers over the block's keys (each element still sees
     * the keys in order), then any rest one vector at a time;
     * the first pass over the keys also adds the p's to the
     * sum, in order, its chain of adds beside the products */
    float dn = *dnr;
    uint32_t x0 = 0;
    for (; x0 + 8 <= nv; x0 += 8) {
        v8f al[8];
        memcpy(al, ac + x0, sizeof al);
        for (uint32_t j = 0; j < nb; j++) {
            float p = scores[j];
            prefetch_some(pf);
            if (x0 == 0)
                dn += p;
            const float *vr = vb + (uint64_t)j * hd + 8 * x0;
#pragma GCC unroll 8
            for (int x = 0; x < 8; x++) {
                v8f v;
                memcpy(&v, vr + 8 * x, sizeof v);
                al[x] += p * v;
            }
        }
        memcpy(ac + x0, al, sizeof al);
    }
    for (; x0 < nv; x0++) {
        v8f a1 = ac[x0];
        for (uint32_t j = 0; j < nb; j++) {
            v8f v;
            memcpy(&v, vb + (uint64_t)j * hd + 8 * x0, sizeof v);
            if (x0 == 0)
                dn += scores[j];
            a1 += scores[j] * v;
        }
        ac[x0] = a1;
    }
    *dnr = dn;
    *mxr = new_max;
}

#ifdef ATT_X86
/*
 * The AVX512 build (attention.h): up to GROUP_MAX heads of one token (so
 * the same keys) a call, each lane doing what row_block does for its row
 * in the same order, so that a row's bits are row_block's
 * (test_cpu_attention, every build).
 */
#define Z_TARGET "avx2,f16c,avx512f,avx512vl,avx512bw"

typedef int32_t v16i __attribute__((vector_size(64)));

#define MAX_WITH16(m, v) do {                                \
        v16f v_ = (v);                                       \
        v16i gt_ = v_ > (m);                                 \
        (m) = (v16f)(((v16i)v_ & gt_) | ((v16i)(m) & ~gt_)); \
    } while (0)
#define LO8(v) __builtin_shufflevector((v), (v), 0, 1, 2, 3, 4, 5, 6, 7)
#define HI8(v) __builtin_shufflevector((v), (v), 8, 9, 10, 11, 12, 13, 14, 15)
#define CAT(a, b) __builtin_shufflevector((a), (b), 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15)

/* Eight floats at p in both halves: one load (vbroadcastf64x4), where the
   shuffle of a loaded ymm would take a port that the multiplies use. */
#define BCAST8(p) ((v16f)_mm512_broadcast_f64x4(_mm256_loadu_pd((const double *)(const void *)(p))))

/* row_scores for the heads at q and q + hd at once, into sc0 and sc1;
   their maxima in bmax[0..1]. */
__attribute__((target(Z_TARGET))) static inline __attribute__((always_inline)) void
pair_scores(const float *q, const float *kb, uint32_t hd, uint32_t nb, float scale, v8f *sc0, v8f *sc1,
            float *bmax, prefetch_t *pf)
{
    uint32_t nv = hd / 8;
    const float *q1 = q + hd;
    float *s0 = (float *)sc0, *s1 = (float *)sc1;
    for (uint32_t j = nb; j < (nb + 7) / 8 * 8; j++)
        s0[j] = s1[j] = -INFINITY;
    v16f bm = { -INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY,
                -INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY };
    uint32_t j = 0;
    for (; j + 8 <= nb; j += 8) {
        v16f d[8] = { { 0 } };
        for (uint32_t x = 0; x < nv; x++) {
            v8f qa, qb;
            memcpy(&qa, q + 8 * x, sizeof qa);
            memcpy(&qb, q1 + 8 * x, sizeof qb);
            v16f qv = CAT(qa, qb);
#pragma GCC unroll 8
            for (int k8 = 0; k8 < 8; k8++)
                d[k8] += qv * BCAST8(kb + (uint64_t)(j + (uint32_t)k8) * hd + 8 * x);
        }
        prefetch_some(pf);              /* as often as two rows of row_scores */
        prefetch_some(pf);
        v16f s16 = reduce16(d) * scale;
        sc0[j / 8] = LO8(s16);
        sc1[j / 8] = HI8(s16);
        MAX_WITH16(bm, s16);
    }
    MAX_WITH16(bm, VR_SH16(bm, bm, 4, 5, 6, 7, 0, 1, 2, 3));
    MAX_WITH16(bm, VR_SH16(bm, bm, 2, 3, 0, 1, 6, 7, 4, 5));
    MAX_WITH16(bm, VR_SH16(bm, bm, 1, 0, 3, 2, 5, 4, 7, 6));
    bmax[0] = bm[0];                    /* -inf where there are no eight */
    bmax[1] = bm[8];
    for (; j < nb; j++) {
        const float *kr = kb + (uint64_t)j * hd;
        v16f d = { 0 };
        for (uint32_t x = 0; x < nv; x++) {
            v8f qa, qb;
            memcpy(&qa, q + 8 * x, sizeof qa);
            memcpy(&qb, q1 + 8 * x, sizeof qb);
            d += CAT(qa, qb) * BCAST8(kr + 8 * x);
        }
        s0[j] = (((d[0] + d[4]) + (d[2] + d[6])) + ((d[1] + d[5]) + (d[3] + d[7]))) * scale;
        s1[j] = (((d[8] + d[12]) + (d[10] + d[14])) + ((d[9] + d[13]) + (d[11] + d[15]))) * scale;
        bmax[0] = s0[j] > bmax[0] ? s0[j] : bmax[0];
        bmax[1] = s1[j] > bmax[1] ? s1[j] : bmax[1];
    }
}

/*
 * p v for G heads over a chunk of w floats (at most 64, a multiple of 8)
 * of their rows, at element c: a row's chunk as up to four vectors of
 * sixteen (the last one masked to eight where w is not a multiple of
 * sixteen), each element's sum taking the keys in order; on the first
 * chunk each head's sum of p as well, in the same order (here, where its
 * adds hide under p v's multiply-adds: a loop of its own, a chain of
 * dependent adds, was 5-8% slower).  A row's accumulator is multiplied
 * by its correction corr[h] as it is loaded (row_block's one multiply,
 * once an element).  V is floats, or (VH) halves widened here, sixteen at
 * a time: exact, so the same floats as tile_body's widening, and each
 * value is widened once for all G heads.
 */
__attribute__((target(Z_TARGET))) static inline __attribute__((always_inline)) void
group_pv(const int G, const int VH, const v8f (*sc)[8], const float *corr, const void *vb, uint32_t hd,
         uint32_t nb, uint32_t c, uint32_t w, v8f *ac, float *dn, prefetch_t *pf)
{
    uint32_t nv = hd / 8, nz = (w + 15) / 16;
    __mmask16 mask[4];
    for (uint32_t m = 0; m < 4; m++)
        mask[m] = m >= nz ? 0 : m + 1 < nz || w % 16 == 0 ? (__mmask16)0xffff : (__mmask16)0x00ff;
    __m512 al[GROUP_MAX][4];
    float ds[GROUP_MAX];
#pragma GCC unroll 4
    for (int h = 0; h < G; h++) {
        ds[h] = dn[h];
#pragma GCC unroll 4
        for (int m = 0; m < 4; m++)
            al[h][m] = _mm512_mul_ps(_mm512_maskz_loadu_ps(mask[m], (const float *)(ac + (size_t)h * nv) + c + 16 * m),
                                     _mm512_set1_ps(corr[h]));
    }
    for (uint32_t k = 0; k < nb; k++) {
        __m512 v[4];
        prefetch_some(pf);              /* once a key and chunk: more stalled on the fill buffers */
#pragma GCC unroll 4
        for (int m = 0; m < 4; m++)
            v[m] = VH ? _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(
                            mask[m], (const uint16_t *)vb + (uint64_t)k * hd + c + 16 * m))
                      : _mm512_maskz_loadu_ps(mask[m], (const float *)vb + (uint64_t)k * hd + c + 16 * m);
#pragma GCC unroll 4
        for (int h = 0; h < G; h++) {
            float p = ((const float *)sc[h])[k];
            if (c == 0)
                ds[h] += p;
            __m512 pp = _mm512_set1_ps(p);
#pragma GCC unroll 4
            for (int m = 0; m < 4; m++)
                al[h][m] = _mm512_add_ps(al[h][m], _mm512_mul_ps(pp, v[m]));
        }
    }
#pragma GCC unroll 4
    for (int h = 0; h < G; h++) {
        dn[h] = ds[h];
#pragma GCC unroll 4
        for (int m = 0; m < 4; m++)
            _mm512_mask_storeu_ps((float *)(ac + (size_t)h * nv) + c + 16 * m, mask[m], al[h][m]);
    }
}

/*
 * G consecutive heads of one token over the first nb keys of one block
 * (q: their G rows of queries, one after another; ac: their accumulators;
 * mx, dn: their maxima and sums): keys kb as floats, values vb as floats
 * or (VH) halves.
 */
__attribute__((target(Z_TARGET))) static inline __attribute__((always_inline)) void
group_body(const int G, const int VH, const float *q, const float *kb, const void *vb, uint32_t hd, uint32_t nb,
           float scale, v8f *ac, float *mx, float *dn, prefetch_t *pf)
{
    v8f sc[GROUP_MAX][8];               /* B <= 64 scores a head */
    float bmax[GROUP_MAX], nm[GROUP_MAX];
    int h = 0;
    for (; h + 2 <= G; h += 2)
        pair_scores(q + (size_t)h * hd, kb, hd, nb, scale, sc[h], sc[h + 1], bmax + h, pf);
    if (h < G)
        bmax[h] = row_scores(q + (size_t)h * hd, kb, hd, nb, scale, sc[h], pf);
    v16f corr = { 0 };                  /* lanes past G: exp(0), unused */
    for (h = 0; h < G; h++) {
        nm[h] = bmax[h] > mx[h] ? bmax[h] : mx[h];
        corr[h] = mx[h] - nm[h];        /* -inf on the first block: exp gives 0 */
    }
    vexp16(&corr);                      /* each lane's exp is its own */
    for (h = 0; h < G; h++) {
        float *s = (float *)sc[h];
        for (uint32_t j = (nb + 7) / 8 * 8; j < (nb + 15) / 16 * 16; j++)
            s[j] = -INFINITY;           /* spare lanes of the last sixteen */
        for (uint32_t j = 0; j < nb; j += 16) {
            v16f e;
            memcpy(&e, s + j, sizeof e);
            e -= nm[h];
            vexp16(&e);
            memcpy(s + j, &e, sizeof e);
        }
        dn[h] *= corr[h];
        mx[h] = nm[h];
    }
    for (uint32_t c = 0; c < hd; c += 64)
        group_pv(G, VH, (const v8f (*)[8])sc, (const float *)&corr, vb, hd, nb, c, hd - c < 64 ? hd - c : 64,
                 ac, dn, pf);
}

/* group_body for g <= GROUP_MAX heads (each count compiled alone), V as
   floats or (vh) halves. */
#define GROUP_CALL(n) (vh ? group_body(n, 1, q, kb, vb, hd, nb, scale, ac, mx, dn, pf) \
                          : group_body(n, 0, q, kb, vb, hd, nb, scale, ac, mx, dn, pf))
__attribute__((target(Z_TARGET))) static void
group_avx512(const float *q, const float *kb, const void *vb, int vh, uint32_t hd, uint32_t nb, float scale,
             uint32_t g, v8f *ac, float *mx, float *dn, prefetch_t *pf)
{
    switch (g) {
    case 1: GROUP_CALL(1); break;
    case 2: GROUP_CALL(2); break;
    case 3: GROUP_CALL(3); break;
    default: GROUP_CALL(4); break;
    }
}
#undef GROUP_CALL

/* n halves at b as floats, sixteen at a time (exact, as every build). */
__attribute__((target(Z_TARGET))) static void widen_avx512(const uint8_t *b, float *out, uint32_t n)
{
    uint32_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(out + i, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(const void *)(b + 2 * i))));
    cpu_mm_deq_f16_avx2(b + 2 * i, out + i, n - i);
}
#endif

/*
 * One task: tile `tile_idx` of its sequence for kv_per_task KV heads from
 * kvh0.  Rows are (KV head kk of the task, token i of the tile, head hh
 * of the group), row r = (kk * nq + i) * G + hh.  Inline into the three
 * builds below (group: the AVX512 build's kernel for up to GROUP_MAX
 * heads of a token, else NULL: row_block a head at a time).
 */
static inline __attribute__((always_inline)) void
tile_body(const job_t *job, uint32_t task, float *scratch, void (*widen)(const uint8_t *, float *, uint32_t),
          group_fn *group)
{
    const cpu_attn_t *a = job->a;
    const batch_t *b = a->batch;
    uint32_t hd = a->head_dim, nv = hd / 8, G = group_of(a->n_head, a->n_head_kv), B = a->block_tokens;
    uint32_t nkv = job->kv_per_task, tasks_per_tile = a->n_head_kv / nkv;
    uint32_t tile_idx = task / tasks_per_tile, kvh0 = (task % tasks_per_tile) * nkv;

    /* the sequence holding this tile: the last s with tile_first[s] <= tile_idx */
    uint32_t lo = 0, hi = b->n_seqs;
    while (hi - lo > 1) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (job->tile_first[mid] <= tile_idx)
            lo = mid;
        else
            hi = mid;
    }
    const batch_seq_t *s = &b->seqs[lo];
    uint32_t q0 = (tile_idx - job->tile_first[lo]) * job->tile;
    uint32_t nq = s->n_new - q0 < job->tile ? s->n_new - q0 : job->tile;
    uint32_t rows = nkv * nq * G;
    v8f *acc = (v8f *)scratch;                      /* [rows, nv] */
    float *mx = scratch + (size_t)rows * hd;        /* [rows] */
    float *denom = mx + rows;                       /* [rows] */
    float *kw = scratch + (size_t)rows * hd + ((2 * rows + 7) & ~7u); /* [KV_MAX_B, hd] widened keys */
    float *vw = kw + (size_t)KV_MAX_B * hd;                           /* and values */
    const size_t esz = a->kv_f16 ? sizeof(uint16_t) : sizeof(float);
    const char *kbase = a->k, *vbase = a->v;
    float scale = 1.0f / sqrtf((float)hd);

    uint32_t max_keys = 0;
    for (uint32_t i = 0; i < nq; i++) {
        uint32_t nk = (uint32_t)b->pos[s->first + q0 + i] + 1;
        max_keys = nk > max_keys ? nk : max_keys;
    }
    for (uint32_t r = 0; r < rows; r++) {
        mx[r] = -INFINITY;
        denom[r] = 0.0f;
        for (uint32_t i = 0; i < nv; i++)
            acc[(size_t)r * nv + i] = (v8f){ 0 };
    }

    for (uint32_t j0 = 0; j0 < max_keys; j0 += B) {
        /* the task's heads of one block lie together: [kvh0, kvh0 + nkv) x B x hd */
        uint64_t boff = ((uint64_t)s->block_table[j0 / B] * a->n_head_kv + kvh0) * B * hd;
        prefetch_t pf = { NULL, NULL, 0, 0 };
        if (j0 + B < max_keys) {
            uint64_t noff = ((uint64_t)s->block_table[j0 / B + 1] * a->n_head_kv + kvh0) * B * hd;
            pf = (prefetch_t){ kbase + noff * esz, vbase + noff * esz, 0, (uint64_t)nkv * B * hd * esz };
        }
        for (uint32_t kk = 0; kk < nkv; kk++) {
            uint32_t kvh = kvh0 + kk;
            uint64_t off = boff + (uint64_t)kk * B * hd;
            const float *kb = (const float *)(const void *)(kbase + off * esz);
            const void *vb = vbase + off * esz;
            /* halves that stay so: the group kernel widens one token's V as it reads */
            int vh = a->kv_f16 && group != NULL && nq == 1;
            if (a->kv_f16) {    /* the keys this tile reads, widened */
                uint32_t nk = max_keys - j0 < B ? max_keys - j0 : B;
                widen((const uint8_t *)kbase + off * esz, kw, nk * hd);
                kb = kw;
                if (!vh) {
                    widen((const uint8_t *)vbase + off * esz, vw, nk * hd);
                    vb = vw;
                }
            }
            for (uint32_t i = 0; i < nq; i++) {
                uint32_t t = s->first + q0 + i;
                uint32_t n_keys = (uint32_t)b->pos[t] + 1;
                if (n_keys <= j0)
                    continue;
                uint32_t nb = n_keys - j0 < B ? n_keys - j0 : B;
                for (uint32_t hh = 0; hh < G;) {
                    uint32_t r = (kk * nq + i) * G + hh, h = kvh * G + hh;
                    const float *q = a->q + ((uint64_t)t * a->n_head + h) * hd;
                    if (group) {        /* this head and up to GROUP_MAX - 1 more */
                        uint32_t g = G - hh < GROUP_MAX ? G - hh : GROUP_MAX;
                        group(q, kb, vb, vh, hd, nb, scale, g, acc + (size_t)r * nv, mx + r, denom + r, &pf);
                        hh += g;
                        continue;
                    }
                    row_block(q, kb, vb, hd, nb, scale, acc + (size_t)r * nv, mx + r, denom + r, &pf);
                    hh++;
                }
            }
        }
        while (pf.at < pf.end)
            prefetch_some(&pf);
    }
    for (uint32_t r = 0; r < rows; r++) {
        uint32_t kk = r / (nq * G), i = r / G % nq, hh = r % G;
        uint32_t t = s->first + q0 + i, h = (kvh0 + kk) * G + hh;
        float inv = 1.0f / denom[r];
        float *out = a->out + ((uint64_t)t * a->n_head + h) * hd;
        for (uint32_t x = 0; x < nv; x++) {
            v8f o = acc[(size_t)r * nv + x] * inv;
            memcpy(out + 8 * x, &o, sizeof o);
        }
    }
}

static void tile_plain(const job_t *job, uint32_t task, float *scratch)
{
    tile_body(job, task, scratch, widen_plain, NULL);
}

#ifdef ATT_X86
__attribute__((target("avx2"))) static void tile_avx2(const job_t *job, uint32_t task, float *scratch)
{
    tile_body(job, task, scratch, cpu_mm_deq_f16_avx2, NULL);
}

__attribute__((target(Z_TARGET))) static void tile_avx512(const job_t *job, uint32_t task, float *scratch)
{
    tile_body(job, task, scratch, widen_avx512, group_avx512);
}
#else
#define tile_avx2 tile_plain
#define tile_avx512 tile_plain
#endif

/* Whether this build and CPU can run build b (the matrix kernels' tests:
   AVX2 with FMA and F16C; the AVX512 level); any thread may ask. */
int cpu_attention_build_usable(cpu_attn_build_t b)
{
    switch (b) {
    case CPU_ATTN_PLAIN:
        return 1;
#ifdef ATT_X86
    case CPU_ATTN_AVX2:
        return cpu_mm_avx2_usable();
    case CPU_ATTN_AVX512:
        return cpu_isa_usable(CPU_ISA_AVX512);
#endif
    default:
        return 0;
    }
}

cpu_attn_build_t cpu_attention_build(void)
{
    if (forced != CPU_ATTN_AUTO)
        return forced;
    cpu_isa_t isa = cpu_matmul_isa();
    if (isa >= CPU_ISA_AVX512 && cpu_attention_build_usable(CPU_ATTN_AVX512))
        return CPU_ATTN_AVX512;
    if (isa >= CPU_ISA_AVX2 && cpu_attention_build_usable(CPU_ATTN_AVX2))
        return CPU_ATTN_AVX2;
    return CPU_ATTN_PLAIN;
}

static void attn_task(void *vjob, uint32_t task, uint32_t thread)
{
    const job_t *job = vjob;
    float *scratch = job->scratch + (size_t)thread * job->scratch_floats;
    switch (job->build) {
    case CPU_ATTN_AVX512:
        tile_avx512(job, task, scratch);
        break;
    case CPU_ATTN_AVX2:
        tile_avx2(job, task, scratch);
        break;
    default:
        tile_plain(job, task, scratch);
    }
}

int cpu_attention(pool_t *p, const cpu_attn_t *a, uint32_t *tile_first, float *scratch)
{
    const batch_t *b = a->batch;
    if (a->head_dim == 0 || a->head_dim % 8 != 0 || a->head_dim > CPU_ATTN_MAX_HEAD_DIM ||
        a->n_head_kv == 0 || a->n_head % a->n_head_kv != 0 || a->block_tokens == 0 ||
        a->block_tokens > KV_MAX_B)
        return ERR_INVALID;
    uint32_t tile = tile_tokens(a->n_head, a->n_head_kv, a->head_dim);
    uint64_t n_tiles = 0;
    for (uint32_t s = 0; s < b->n_seqs; s++) {
        tile_first[s] = (uint32_t)n_tiles;
        n_tiles += (b->seqs[s].n_new + tile - 1) / tile;
    }
    tile_first[b->n_seqs] = (uint32_t)n_tiles;
    if (n_tiles * a->n_head_kv > UINT32_MAX)
        return ERR_INVALID;
    /* A decode step (one token per sequence) with tasks enough for the
     * pool takes a sequence's KV heads in one task: a block's heads lie
     * together, so the task reads n_head_kv times longer runs.  (Every
     * sequence has a token, so n_tokens == n_seqs means one each, and one
     * tile each.)  The rows fit the scratch (n_head_kv <= tile); each
     * row's operations are the same either way. */
    uint32_t per_task = 1;
    if (b->n_tokens == b->n_seqs && a->n_head_kv <= tile && n_tiles >= 2 * (uint64_t)pool_threads(p))
        per_task = a->n_head_kv;
    job_t job = { a, tile_first, tile, per_task, scratch,
                  cpu_attn_scratch_floats(a->n_head, a->n_head_kv, a->head_dim),
                  cpu_attention_build() };
    pool_run(p, attn_task, &job, (uint32_t)(n_tiles * (a->n_head_kv / per_task)));
    return 0;
}

int cpu_attention_force(cpu_attn_build_t b)
{
    if (b != CPU_ATTN_AUTO && !cpu_attention_build_usable(b))
        return ERR_UNSUPPORTED;
    forced = b;
    return 0;
}

void cpu_kv_put_f16(uint16_t *dst, const float *src, uint32_t n)
{
#ifdef ATT_X86
    if (cpu_attention_build() != CPU_ATTN_PLAIN) {
        narrow_f16c(dst, src, n);
        return;
    }
#endif
    narrow_plain(dst, src, n);
}
