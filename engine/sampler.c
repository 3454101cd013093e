/*
 * sampler.c - the scratch, truncation and the counter-based draw (steps
 * 4-6 of sampler.h; steps 1-3, the parameters and the penalty state are
 * sampler_logits.c's).  The order of operations and the conventions are
 * stated in sampler.h.
 *
 * Cost per call, n = n_vocab: two vector passes (maximum, then e^(x - max)
 * for the log-sum-exp), a third at T != 1 when every token's weight is
 * needed, and for the filters one more scan: top_k <= 128 keeps a heap,
 * larger top_k and top_p use a radix selection, O(n) in all cases; nothing
 * sorts the vocabulary.
 */
#include "sampler.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"

/* A candidate token: its processed logit, its weight exp((x - max) / T)
 * once computed, and its id. */
typedef struct {
    float x;
    float w;
    int32_t id;
} cand_t;

/* top_k up to this keeps a heap of the best k while scanning the logits;
 * larger k, and top-p, use a radix selection, O(n) whatever k or top_p. */
#define HEAP_SELECT_MAX 128
#define RADIX_BINS 2048

struct sampler {
    uint32_t n_vocab;
    float *w;       /* [n_vocab] weights e^((x - max) / T) */
    cand_t *cand;   /* [n_vocab] candidates for the truncated draws */
    double *hist;   /* [RADIX_BINS] radix-selection histogram */
};

/* ================================================================== */
/* Scratch                                                             */
/* ================================================================== */

int sampler_create(sampler_t **out, uint32_t n_vocab, char *err, size_t errlen)
{
    *out = NULL;
    if (sampler_check_vocab(n_vocab, err, errlen) != 0)
        return ERR_INVALID;
    sampler_t *s = calloc(1, sizeof *s);
    if (s == NULL)
        goto fail;
    s->n_vocab = n_vocab;
    s->w = calloc(n_vocab, sizeof *s->w);
    s->cand = calloc(n_vocab, sizeof *s->cand);
    s->hist = calloc(RADIX_BINS, sizeof *s->hist);
    if (s->w == NULL || s->cand == NULL || s->hist == NULL)
        goto fail;
    *out = s;
    return 0;
fail:
    sampler_destroy(s);
    return err_set(err, errlen, ERR_NOMEM,
                   "sampler: no memory for a vocabulary of %lu",
                   (unsigned long)n_vocab);
}

void sampler_destroy(sampler_t *s)
{
    if (s == NULL)
        return;
    free(s->w);
    free(s->cand);
    free(s->hist);
    free(s);
}

/* ================================================================== */
/* Randomness                                                          */
/* ================================================================== */

/* The splitmix64 output function (Steele, Lea and Flood, 2014). */
static uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

double sampler_uniform(uint64_t seed, uint64_t step)
{
    /* The seed is hashed into a key first, so that nearby seeds do not
     * give shifted copies of one stream; then step n is the n-th output
     * of splitmix64 started at that key. */
    uint64_t key = mix64(seed ^ 0x6a09e667f3bcc909ull);
    uint64_t h = mix64(key + (step + 1) * 0x9e3779b97f4a7c15ull);
    return (double)(h >> 11) * 0x1.0p-53;
}

/* ================================================================== */
/* Vector kernels                                                      */
/* ================================================================== */

/* The two passes over the whole vocabulary (maximum, then exponentials)
 * are written with four-lane generic vectors, which GCC and clang lower to
 * SSE2 on x86-64, NEON on arm64 and plain code elsewhere; the scalar
 * versions cost several times more at n_vocab 128k. */
typedef float f32x4 __attribute__((vector_size(16)));
typedef int32_t i32x4 __attribute__((vector_size(16)));

static inline f32x4 f32x4_splat(float v)
{
    return (f32x4){ v, v, v, v };
}

static inline i32x4 i32x4_splat(int32_t v)
{
    return (i32x4){ v, v, v, v };
}

static inline f32x4 f32x4_load(const float *p)
{
    f32x4 v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* n (1..4) floats from p; the lanes past n are -inf. */
static inline f32x4 f32x4_load_tail(const float *p, size_t n)
{
    f32x4 v = f32x4_splat(-INFINITY);
    memcpy(&v, p, n * sizeof *p);
    return v;
}

/* Whether any of the four floats at p is above t. */
static inline int any4_above(const float *p, float t)
{
    i32x4 gt = f32x4_load(p) > f32x4_splat(t);
    return (gt[0] | gt[1] | gt[2] | gt[3]) != 0;
}

/* mask ? a : b, lane by lane (mask lanes are all ones or all zeros). */
static inline f32x4 f32x4_select(i32x4 mask, f32x4 a, f32x4 b)
{
    return (f32x4)((mask & (i32x4)a) | (~mask & (i32x4)b));
}

/*
 * e^x for x <= 0, four lanes, relative error under 1e-7; 0 for x < -87
 * (where e^x is below FLT_MIN) and for -inf.  Cody and Waite's reduction
 * x = n ln2 + r, |r| <= ln2 / 2, with ln2 split in two so that n ln2 is
 * exact; e^r by its Taylor series to r^6 (truncation error < 1.2e-7); 2^n
 * built in the exponent field.  Adding 1.5 * 2^23 rounds x log2(e) to the
 * nearest integer, which then sits in the low mantissa bits of t.
 */
static inline f32x4 exp4_nonpos(f32x4 x)
{
    const f32x4 lo = f32x4_splat(-87.0f);
    const f32x4 shifter = f32x4_splat(12582912.0f);     /* 1.5 * 2^23 */
    i32x4 live = x > lo;
    f32x4 xc = f32x4_select(live, x, lo);
    f32x4 t = xc * f32x4_splat(1.44269504088896341f) + shifter;
    f32x4 nf = t - shifter;                             /* round(x log2 e) */
    f32x4 r = xc - nf * f32x4_splat(0.693145751953125f);
    r = r - nf * f32x4_splat(1.42860682030941723212e-6f);
    /* 1 + r + r^2/2! + ... + r^6/6!, grouped (Estrin's scheme) so that
     * the dependency chain is short. */
    f32x4 r2 = r * r, r4 = r2 * r2;
    f32x4 a = f32x4_splat(1.0f) + r;
    f32x4 b = f32x4_splat(1.0f / 2.0f) + r * f32x4_splat(1.0f / 6.0f);
    f32x4 c = f32x4_splat(1.0f / 24.0f) + r * f32x4_splat(1.0f / 120.0f);
    f32x4 q = a + r2 * b + r4 * (c + r2 * f32x4_splat(1.0f / 720.0f));
    /* n is in [-126, 0]: 2^n is a normal float with exponent field n + 127. */
    i32x4 n = (i32x4)t - (i32x4)shifter;
    i32x4 pow2n = (n + i32x4_splat(127)) << i32x4_splat(23);
    return (f32x4)((i32x4)(q * (f32x4)pow2n) & live);
}

/* One step of max_pass over four values whose ids are idx. */
static inline void max_step(f32x4 v, i32x4 idx, f32x4 *vmax, i32x4 *vidx,
                            i32x4 *bad)
{
    /* Strictly greater: each lane keeps its first maximum. */
    i32x4 gt = v > *vmax;
    *vmax = f32x4_select(gt, v, *vmax);
    *vidx = (gt & idx) | (~gt & *vidx);
    *bad |= (v != v) | (v == f32x4_splat(INFINITY));
}

/*
 * The largest value of x [n] and the lowest index holding it (-1 when
 * every value is -inf, or n is 0).  *nonfinite is set when some value is
 * NaN or +inf (the result then means nothing).
 */
static float max_pass(const float *x, uint32_t n, int32_t *arg, int *nonfinite)
{
    f32x4 vmax = f32x4_splat(-INFINITY);
    i32x4 vidx = i32x4_splat(-1), bad = i32x4_splat(0);
    i32x4 idx = { 0, 1, 2, 3 };
    uint32_t i = 0;
    for (; i + 4 <= n; i += 4) {
        max_step(f32x4_load(x + i), idx, &vmax, &vidx, &bad);
        idx += i32x4_splat(4);
    }
    if (i < n)
        max_step(f32x4_load_tail(x + i, n - i), idx, &vmax, &vidx, &bad);
    float m = -INFINITY;
    int32_t am = -1;
    for (int l = 0; l < 4; l++) {
        if (vidx[l] >= 0 && (vmax[l] > m || (vmax[l] == m && vidx[l] < am))) {
            m = vmax[l];
            am = vidx[l];
        }
    }
    *nonfinite = (bad[0] | bad[1] | bad[2] | bad[3]) != 0;
    *arg = am;
    return m;
}

/*
 * w[i] = e^((x[i] - m) * scale) for i < n, returning their sum in double.
 * Every x[i] is <= m or -inf and scale > 0, so no exponent is positive.
 * x: [n], w: [n].
 */
static double exp_pass(const float *x, uint32_t n, float m, float scale,
                       float *w)
{
    const f32x4 vm = f32x4_splat(m), vs = f32x4_splat(scale);
    /* Lanes add up in float over 64 tokens (at most 16 terms <= 1 each,
     * so within 1e-6 relative), then in double. */
    f32x4 e, acc = f32x4_splat(0.0f);
    double z = 0.0;
    uint32_t i = 0;
    for (; i + 4 <= n; i += 4) {
        e = exp4_nonpos((f32x4_load(x + i) - vm) * vs);
        memcpy(w + i, &e, sizeof e);
        acc += e;
        if (i % 64 == 60) {
            z += ((double)acc[0] + acc[1]) + ((double)acc[2] + acc[3]);
            acc = f32x4_splat(0.0f);
        }
    }
    if (i < n) {
        e = exp4_nonpos((f32x4_load_tail(x + i, n - i) - vm) * vs);
        memcpy(w + i, &e, (n - i) * sizeof *w);
        acc += e;           /* the padding lanes are 0 */
    }
    return z + (((double)acc[0] + acc[1]) + ((double)acc[2] + acc[3]));
}

/* ================================================================== */
/* Selection                                                           */
/* ================================================================== */

/* a ranks before b: a larger logit, or the same logit and a lower id. */
static inline int ranks_before(const cand_t *a, const cand_t *b)
{
    return a->x > b->x || (a->x == b->x && a->id < b->id);
}

/* Restore the heap below i: a heap whose root ranks after its children,
 * the one to evict. */
static void sift_down(cand_t *h, size_t n, size_t i)
{
    cand_t v = h[i];
    for (size_t c; (c = 2 * i + 1) < n; i = c) {
        if (c + 1 < n && ranks_before(&h[c], &h[c + 1]))
            c++;
        if (!ranks_before(&v, &h[c]))
            break;
        h[i] = h[c];
    }
    h[i] = v;
}

/*
 * The best k of the tokens with x >= thr into c, in ascending id order
 * (fewer if fewer pass); returns the count.  A heap: one comparison per
 * token once it is full.  Ids arrive in ascending order, so an equal
 * logit never displaces.  x: [n].
 */
static size_t select_heap(cand_t *c, const float *x, uint32_t n, float thr,
                          size_t k)
{
    size_t nc = 0;
    float below = nextafterf(thr, -INFINITY);   /* x > below <=> x >= thr */
    for (uint32_t i = 0; i < n; i++) {
        /* Four at a time while none of them can enter. */
        if (i % 4 == 0 && i + 4 <= n &&
            !any4_above(x + i, nc == k && c[0].x > below ? c[0].x : below)) {
            i += 3;
            continue;
        }
        float xi = x[i];
        if (!(xi >= thr) || (nc == k && !(xi > c[0].x)))
            continue;
        cand_t v = { xi, 0.0f, (int32_t)i };
        if (nc == k) {
            c[0] = v;
            sift_down(c, nc, 0);
            continue;
        }
        size_t j = nc++;        /* sift up */
        for (; j > 0 && ranks_before(&c[(j - 1) / 2], &v); j = (j - 1) / 2)
            c[j] = c[(j - 1) / 2];
        c[j] = v;
    }
    for (size_t i = 1; i < nc; i++) {   /* insertion sort by id */
        cand_t v = c[i];
        size_t j = i;
        for (; j > 0 && c[j - 1].id > v.id; j--)
            c[j] = c[j - 1];
        c[j] = v;
    }
    return nc;
}

/* An unsigned key that orders as the float does; -0 is made +0 first
 * (adding +0 does that), since the two compare equal as floats. */
static inline uint32_t float_key(float v)
{
    uint32_t b;
    v += 0.0f;
    memcpy(&b, &v, sizeof b);
    return (b & 0x80000000u) ? ~b : b | 0x80000000u;
}

/*
 * Keep, compacting c [nc] in place and in order, the shortest rank-order
 * prefix whose total reaches goal, each token counting 1 (by_weight 0:
 * the best `goal` tokens) or its weight (by_weight 1: the nucleus).  c
 * must be in ascending id order, so that among equal logits the lower ids
 * stay.  Three rounds of radix selection on float_key (11, 11 and 10 bits)
 * find the last key K that is needed; then every key above K stays and,
 * in id order, as many equal to K as the goal still needs.  O(nc) for any
 * goal.  hist: [RADIX_BINS].  Returns the count; *kept_w is the weight.
 */
static size_t radix_keep(cand_t *c, size_t nc, double *hist, double goal,
                         int by_weight, double *kept_w)
{
    static const int shift[3] = { 21, 10, 0 };
    static const uint32_t bins[3] = { 2048, 2048, 1024 };
    uint32_t prefix = 0, prefix_mask = 0;   /* the bits of K found so far */
    double need = goal;     /* still to take among keys under the prefix */
    for (int r = 0; r < 3; r++) {
        memset(hist, 0, bins[r] * sizeof *hist);
        for (size_t i = 0; i < nc; i++) {
            uint32_t key = float_key(c[i].x);
            if ((key & prefix_mask) == prefix)
                hist[(key >> shift[r]) & (bins[r] - 1)] +=
                    by_weight ? (double)c[i].w : 1.0;
        }
        /* From the top bin down to the one where the need is met. */
        uint32_t b = bins[r] - 1;
        while (b > 0 && hist[b] < need)
            need -= hist[b--];
        prefix |= b << shift[r];
        prefix_mask |= (bins[r] - 1) << shift[r];
    }
    size_t kept = 0;
    double w = 0.0;
    for (size_t i = 0; i < nc; i++) {
        uint32_t key = float_key(c[i].x);
        if (key > prefix || (key == prefix && need > 0.0)) {
            if (key == prefix)
                need -= by_weight ? (double)c[i].w : 1.0;
            w += c[i].w;
            c[kept++] = c[i];
        }
    }
    *kept_w = w;
    return kept;
}

/* ================================================================== */
/* Drawing                                                             */
/* ================================================================== */

/* 1 / T, kept finite so that (x - m) * (1 / T) is 0, not NaN, at x = m
 * however small T is. */
static float inv_temperature(float t)
{
    float r = 1.0f / t;
    return r < FLT_MAX ? r : FLT_MAX;
}

/* The smallest float >= v (v <= FLT_MAX), but at least -FLT_MAX so that
 * -inf never passes. */
static float float_at_least(double v)
{
    if (v <= -(double)FLT_MAX)
        return -FLT_MAX;
    float f = (float)v;
    return (double)f < v ? nextafterf(f, INFINITY) : f;
}

/* The first token of a weighted list at which the running sum passes
 * target; the last token of non-zero weight if rounding leaves the sum
 * short.  c: [n], n >= 1. */
static int32_t pick_cand(const cand_t *c, size_t n, double target)
{
    double cum = 0.0;
    int32_t last = c[0].id;
    for (size_t i = 0; i < n; i++) {
        if (c[i].w <= 0.0f)
            continue;
        cum += c[i].w;
        last = c[i].id;
        if (cum > target)
            return c[i].id;
    }
    return last;
}

/*
 * The draw when a filter is on.  x: [n_vocab] processed logits, m their
 * maximum (finite) and am its id; s->w holds e^(x - m) and z1 their sum.
 */
static int32_t draw_truncated(sampler_t *s, const sampler_params_t *p,
                              const float *x, float m, int32_t am,
                              double z1, double u)
{
    uint32_t n = s->n_vocab;
    cand_t *c = s->cand;        /* [n_vocab] */
    float *w = s->w;            /* [n_vocab] */
    float inv_t = inv_temperature(p->temperature);
    /* min_p: p_i >= min_p * p_max  <=>  x_i >= m + T log(min_p); with
     * min_p off the threshold only drops -inf. */
    float thr = float_at_least(p->min_p > 0.0f
        ? (double)m + (double)p->temperature * log((double)p->min_p)
        : -DBL_MAX);
    float below = nextafterf(thr, -INFINITY);   /* x > below <=> x >= thr */
    size_t k = (p->top_k > 0 && (uint32_t)p->top_k < n) ? (size_t)p->top_k : n;
    size_t nc = 0;
    double z = 0.0;             /* the weight of the candidates */
    /* Top-p alone over a vocabulary too large for the heap: a share of
     * every token's weight at temperature T. */
    int all = k == n && p->min_p == 0.0f && n > HEAP_SELECT_MAX;
    /* s->w holds the weights at T = 1; other temperatures need them for
     * every token only for top-p alone and for the radix top-k. */
    int need_w = p->temperature == 1.0f || (k > HEAP_SELECT_MAX && p->min_p == 0.0f);

    if (k <= HEAP_SELECT_MAX) {
        nc = select_heap(c, x, n, thr, k);
    } else {
        if (need_w && p->temperature != 1.0f)
            z1 = exp_pass(x, n, m, inv_t, w);
        /* Tokens of weight <= t weigh at most n t = (1 - top_p) z1 / 2
         * all together, so the heavier ones hold more than top_p z1: the
         * nucleus lies among them. */
        float t = all ? (float)(0.5 * (1.0 - (double)p->top_p) * z1 / n) : 0.0f;
        for (uint32_t i = 0; i < n; i++) {
            if (i % 4 == 0 && i + 4 <= n && (!any4_above(x + i, below) ||
                                             (need_w && !any4_above(w + i, t)))) {
                i += 3;         /* none of these four is kept */
                continue;
            }
            if (x[i] >= thr && (!need_w || w[i] > t))
                c[nc++] = (cand_t){ x[i], 0.0f, (int32_t)i };
        }
    }
    for (size_t i = 0; i < nc; i++) {
        c[i].w = need_w ? w[c[i].id] : expf((c[i].x - m) * inv_t);
        z += c[i].w;
    }
    if (all)
        z = z1;
    else if (k < nc)
        nc = radix_keep(c, nc, s->hist, (double)k, 0, &z);
    if (nc == 0)    /* unreachable: the argmax passes every filter */
        return am;

    if (p->top_p < 1.0f)
        nc = radix_keep(c, nc, s->hist, (double)p->top_p * z, 1, &z);
    return pick_cand(c, nc, u * z);
}

/* The draw from softmax(x / T) when no filter is on.  s->w holds e^(x - m)
 * and z1 their sum. */
static int32_t draw_full(sampler_t *s, const sampler_params_t *p,
                         const float *x, float m, double z1, double u)
{
    uint32_t n = s->n_vocab;
    float *w = s->w;            /* [n_vocab] */
    double z = z1;
    if (p->temperature != 1.0f)
        z = exp_pass(x, n, m, inv_temperature(p->temperature), w);
    double target = u * z, cum = 0.0;
    int32_t last = 0;
    for (uint32_t i = 0; i < n; i++) {
        if (w[i] <= 0.0f)
            continue;
        cum += w[i];
        last = (int32_t)i;
        if (cum > target)
            return (int32_t)i;
    }
    return last;
}

/* ================================================================== */
/* sampler_sample                                                      */
/* ================================================================== */

/* The best `want` finite logits of x [n] into top, in rank order; returns
 * how many (fewer when fewer are finite).  An insertion sort into a short
 * list, which after the first few tokens almost none enters. */
static uint32_t top_pass(const float *x, uint32_t n, uint32_t want,
                         sampler_logprob_t *top)
{
    uint32_t nt = 0;
    for (uint32_t i = 0; i < n; i++) {
        if (nt == want && i % 4 == 0 && i + 4 <= n &&
            !any4_above(x + i, top[nt - 1].logprob)) {
            i += 3;             /* none of these four enters */
            continue;
        }
        float xi = x[i];
        if (!(xi > -INFINITY) || (nt == want && !(xi > top[nt - 1].logprob)))
            continue;
        /* ids arrive in ascending order, so ties go after their equals */
        uint32_t j = nt < want ? nt++ : want - 1;
        while (j > 0 && top[j - 1].logprob < xi) {
            top[j] = top[j - 1];
            j--;
        }
        top[j].id = (int32_t)i;
        top[j].logprob = xi;
    }
    return nt;
}

/*
 * Pass 1 over x [n]: the maximum into *m, its first id into *am; +inf
 * becomes FLT_MAX in place.  ERR_RANGE for a NaN or no finite logit.
 */
static int max_checked(float *x, uint32_t n, float *m, int32_t *am)
{
    int nonfinite;
    *m = max_pass(x, n, am, &nonfinite);
    if (nonfinite) {
        for (uint32_t i = 0; i < n; i++) {
            if (x[i] != x[i])
                return ERR_RANGE;
            if (x[i] == INFINITY)
                x[i] = FLT_MAX;
        }
        *m = max_pass(x, n, am, &nonfinite);
    }
    return *am < 0 ? ERR_RANGE : 0;
}

/* out's logprob of tok and its n_top alternatives, from x and its log-sum-exp. */
static void fill_result(const float *x, uint32_t n, double lse, int32_t tok, uint32_t n_top,
                        sampler_result_t *out)
{
    sampler_logprob_t top[SAMPLER_MAX_LOGPROBS];
    uint32_t nt = n_top > 0 ? top_pass(x, n, n_top < n ? n_top : n, top) : 0;
    out->token = tok;
    out->logprob = (float)((double)x[tok] - lse);
    out->n_top = nt;
    for (uint32_t i = 0; i < nt; i++) {
        out->top[i].id = top[i].id;
        out->top[i].logprob = (float)((double)top[i].logprob - lse);
    }
}

int sampler_sample(sampler_t *s, const sampler_params_t *p,
                   const sampler_seq_t *seq, float *logits, uint64_t step,
                   sampler_result_t *out)
{
    if (s == NULL || p == NULL || logits == NULL || out == NULL)
        return ERR_INVALID;
    uint32_t n = s->n_vocab;
    if (seq != NULL && seq->n_vocab != n)
        return ERR_INVALID;
    if (sampler_params_validate(p, n, NULL, 0) != 0)
        return ERR_INVALID;

    float *x = logits;          /* [n_vocab] */
    sampler_process_logits(p, seq, x, n);

    /* Pass 1: the maximum, its first id; NaN fails, +inf becomes FLT_MAX. */
    int32_t am;
    float m;
    if (max_checked(x, n, &m, &am) != 0)
        return ERR_RANGE;

    /* Pass 2: log-sum-exp at temperature 1, keeping the weights. */
    double z1 = exp_pass(x, n, m, 1.0f, s->w);
    double lse = (double)m + log(z1);

    int32_t tok;
    if (p->temperature == 0.0f || p->top_k == 1) {
        tok = am;
    } else {
        double u = sampler_uniform(p->seed, step);
        int truncated = p->min_p > 0.0f || p->top_p < 1.0f ||
                        (p->top_k > 0 && (uint32_t)p->top_k < n);
        tok = truncated ? draw_truncated(s, p, x, m, am, z1, u)
                        : draw_full(s, p, x, m, z1, u);
    }

    fill_result(x, n, lse, tok, p->n_logprobs, out);
    return 0;
}

int sampler_score(sampler_t *s, float *logits, int32_t token, uint32_t n_top,
                  sampler_result_t *out, uint32_t *rank)
{
    if (s == NULL || logits == NULL || out == NULL)
        return ERR_INVALID;
    uint32_t n = s->n_vocab;
    if (token < 0 || (uint32_t)token >= n || n_top > SAMPLER_MAX_LOGPROBS)
        return ERR_INVALID;
    float *x = logits;          /* [n_vocab] */
    int32_t am;
    float m;
    if (max_checked(x, n, &m, &am) != 0)
        return ERR_RANGE;
    double lse = (double)m + log(exp_pass(x, n, m, 1.0f, s->w));
    if (rank != NULL) {
        uint32_t above = 0; /* ties rank alike */
        for (uint32_t i = 0; i < n; i++)
            above += x[i] > x[token];
        *rank = above + 1;
    }
    fill_result(x, n, lse, token, n_top, out);
    return 0;
}
