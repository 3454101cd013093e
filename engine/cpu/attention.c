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
    int avx2;                   /* run the AVX2 build (with F16C) */
} job_t;

static int force_plain;

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

/*
 * One task: tile `tile_idx` of its sequence for kv_per_task KV heads from
 * kvh0.  Rows are (KV head kk of the task, token i of the tile, head hh
 * of the group), row r = (kk * nq + i) * G + hh.  Inline into the two
 * builds below.
 */
static inline __attribute__((always_inline)) void
tile_body(const job_t *job, uint32_t task, float *scratch, void (*widen)(const uint8_t *, float *, uint32_t))
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
            const float *vb = (const float *)(const void *)(vbase + off * esz);
            if (a->kv_f16) {    /* the keys this tile reads, widened */
                uint32_t nk = max_keys - j0 < B ? max_keys - j0 : B;
                widen((const uint8_t *)kbase + off * esz, kw, nk * hd);
                widen((const uint8_t *)vbase + off * esz, vw, nk * hd);
                kb = kw;
                vb = vw;
            }
            for (uint32_t i = 0; i < nq; i++) {
                uint32_t t = s->first + q0 + i;
                uint32_t n_keys = (uint32_t)b->pos[t] + 1;
                if (n_keys <= j0)
                    continue;
                uint32_t nb = n_keys - j0 < B ? n_keys - j0 : B;
                for (uint32_t hh = 0; hh < G; hh++) {
                    uint32_t r = (kk * nq + i) * G + hh, h = kvh * G + hh;
                    const float *q = a->q + ((uint64_t)t * a->n_head + h) * hd;
                    v8f *ac = acc + (size_t)r * nv;
                    v8f sc[8];                          /* B <= 64 scores */
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
                        prefetch_some(&pf);
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
                    float new_max = bmax > mx[r] ? bmax : mx[r];
                    v8f corr = { mx[r] - new_max };     /* -inf on the first block: exp gives 0 */
                    vexp8(&corr);
                    denom[r] *= corr[0];
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
                    float dn = denom[r];
                    uint32_t x0 = 0;
                    for (; x0 + 8 <= nv; x0 += 8) {
                        v8f al[8];
                        memcpy(al, ac + x0, sizeof al);
                        for (uint32_t j = 0; j < nb; j++) {
                            float p = scores[j];
                            prefetch_some(&pf);
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
                    denom[r] = dn;
                    mx[r] = new_max;
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
    tile_body(job, task, scratch, widen_plain);
}

#ifdef ATT_X86
__attribute__((target("avx2"))) static void tile_avx2(const job_t *job, uint32_t task, float *scratch)
{
    tile_body(job, task, scratch, cpu_mm_deq_f16_avx2);
}
#else
#define tile_avx2 tile_plain
#endif

/* The matrix kernels' test (AVX2, FMA, F16C, and the OS saves the ymm
   registers); any thread may ask. */
static int avx2_usable(void)
{
    return cpu_mm_avx2_usable();
}

static void attn_task(void *vjob, uint32_t task, uint32_t thread)
{
    const job_t *job = vjob;
    float *scratch = job->scratch + (size_t)thread * job->scratch_floats;
    if (job->avx2)
        tile_avx2(job, task, scratch);
    else
        tile_plain(job, task, scratch);
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
                  !force_plain && avx2_usable() };
    pool_run(p, attn_task, &job, (uint32_t)(n_tiles * (a->n_head_kv / per_task)));
    return 0;
}

void cpu_attention_force_plain(int on)
{
    force_plain = on != 0;
}

void cpu_kv_put_f16(uint16_t *dst, const float *src, uint32_t n)
{
#ifdef ATT_X86
    if (!force_plain && avx2_usable()) {
        narrow_f16c(dst, src, n);
        return;
    }
#endif
    narrow_plain(dst, src, n);
}
