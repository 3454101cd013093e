/*
 * gpu_test.h - what the GPU test programs share: skipping without a CUDA
 * device, a seeded random source, the relative L2 error that fails on NaN
 * or Inf, the hyper-parameters of small random-weight models, the
 * check that a graph test's steps did run as CUDA graphs, and a logit
 * row's greedy token and its margin over the runner-up.
 */
#ifndef LLAMAD_GPU_TEST_H
#define LLAMAD_GPU_TEST_H

#include <math.h>
#include <string.h>

#include "base/err.h"
#include "engine/model/model.h"
#include "../../engine/backend.h"
#include "../../engine/registry.h"
#include "tests/support/model_synth.h"
#include "../unit/test.h"

static inline void need_gpu(void)
{
    char desc[256], err[ERR_MSG_MAX];
    const char *chosen;
    if (!registry_has_cuda())
        TEST_SKIP("skipped: llamad was built without the CUDA backend");
    if (registry_pick("cuda", &chosen, desc, sizeof desc, err, sizeof err) != 0)
        TEST_SKIP("skipped: no CUDA device (%s)", desc);
}

static uint64_t rng_state = 88172645463325252ull;
static inline float frand(void) /* [-1, 1) */
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (float)((rng_state >> 40) * (1.0 / (1u << 23)) - 1.0);
}

/* Relative L2 error of `got` against `ref`; NaN or Inf anywhere fails. */
static inline double rel_l2(const float *got, const float *ref, size_t n)
{
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(got[i]) || !isfinite(ref[i]))
            return INFINITY;
        double d = (double)got[i] - ref[i];
        num += d * d;
        den += (double)ref[i] * ref[i];
    }
    return sqrt(num / (den > 0 ? den : 1));
}

static inline hparams_t small_hp(uint32_t d, uint32_t heads, uint32_t kv, uint32_t hd, uint32_t ff, uint32_t layers,
                          uint32_t vocab)
{
    hparams_t hp;
    memset(&hp, 0, sizeof hp);
    hp.n_vocab = vocab;
    hp.n_embd = d;
    hp.n_layer = layers;
    hp.n_head = heads;
    hp.n_head_kv = kv;
    hp.head_dim = hd;
    hp.rope_dim = hd;
    hp.n_ff = ff;
    hp.n_ctx_train = 4096;
    hp.rms_eps = 1e-5f;
    hp.rope_theta = 10000.0f;
    hp.rope_layout = ROPE_LAYOUT_INTERLEAVED;
    return hp;
}

/* After the graph steps of a test: graphs were captured and replayed and never fell back
   to eager, so that a "graphs match eager" result cannot come from eager steps alone. */
#define ASSERT_GRAPHS_USED(b, name)                                                                          \
    do {                                                                                                     \
        bk_graph_stats_t gs_ = bk_graph_stats(b);                                                            \
        ASSERT_MSG(gs_.captured > 0 && gs_.replayed > 0 && gs_.failed == 0,                                  \
                   "%s: graphs captured %llu, replayed %llu, failed %llu: the steps did not run as graphs",  \
                   (name), (unsigned long long)gs_.captured, (unsigned long long)gs_.replayed,               \
                   (unsigned long long)gs_.failed);                                                          \
    } while (0)

/* The largest value of row [V] other than at `best`, and the gap to row[best]. */
static inline float top_margin(const float *row, uint32_t V, int32_t best)
{
    float m2 = -INFINITY;
    for (uint32_t v = 0; v < V; v++)
        if ((int32_t)v != best && row[v] > m2)
            m2 = row[v];
    return row[best] - m2;
}

/* The lowest index of row [V]'s largest value (the greedy token). */
static inline int32_t row_argmax(const float *row, uint32_t V)
{
    int32_t best = 0;
    for (uint32_t v = 1; v < V; v++)
        if (row[v] > row[best])
            best = (int32_t)v;
    return best;
}

/* n random token ids in [0, V - 1). */
static inline void make_tokens(int32_t *t, uint32_t n, uint32_t V)
{
    for (uint32_t i = 0; i < n; i++)
        t[i] = (int32_t)((frand() * 0.5f + 0.5f) * (V - 1));
}

#endif
