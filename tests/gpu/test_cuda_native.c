/*
 * gpu-weight-type = native: layer weights kept in their GGUF blocks on the
 * device (base/qpack.h, cuda/qmatvec.cu), against the CPU backend.
 *
 * - native_matmul_every_type: y = x W^T for a packed weight of each type
 *   (Q4_0, Q4_1, Q8_0, Q4_K through their kernels; Q5_K and Q6_K, which
 *   have none yet, as bf16) at steps of 1, 3 and 8 tokens (the
 *   matrix-vector kernel over int8 activations) and 9 and 64 (the weight
 *   dequantised into a bf16 scratch, then cuBLAS), against a float64
 *   product of base/quant's dequantised weights (what the CPU backend
 *   multiplies), within 1e-2 relative L2 like test_cuda's GEMM per type
 *   (bf16 activations and weights land near 2e-3; int8 activations, one
 *   scale per 32, add about 3e-3).  That the weights were packed at all is
 *   checked through activation_bytes, which grows by the packed path's
 *   scratch.
 * - native_greedy_matches_bf16_and_cpu: random-weight models in each
 *   kernel type, prefilled (a 40-token prompt: the scratch path) and then
 *   decoded one token at a time (the kernel path), on the CPU, CUDA bf16,
 *   CUDA native, and CUDA native with CUDA graphs (captured and replayed:
 *   ASSERT_GRAPHS_USED).  Each step feeds all of them the CPU's greedy
 *   token; every backend's greedy token must equal the CPU's, except at a
 *   near tie (the CPU's top two logits closer than twice the largest
 *   logit difference between the two backends), and logits stay within
 *   2e-2 relative L2 of the CPU's (test_cuda's whole-step tolerance).
 *
 * Outputs are poisoned with NaN before every operation.  Skips without a device.
 */
#include "gpu_test.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "base/quant.h"
#include "../../engine/forward.h"

/* ---------------------------------------------------------------- one matrix, several step sizes */

static uint64_t act_bytes(const backend_t *b)
{
    return b->ops->activation_bytes != NULL ? b->ops->activation_bytes(b->ctx) : 0;
}

/* A random-weight model with its matrices in t, on the host (the CPU backend's reference). */
static model_t *synth(hparams_t hp, qtype_t t, uint64_t seed)
{
    char err[ERR_MSG_MAX];
    model_t *m;
    ASSERT_MSG(model_create_synthetic(&m, &hp, t, 1, seed, err, sizeof err) == 0, "%s", err);
    return m;
}

static void check_native_matmul(qtype_t t)
{
    char err[ERR_MSG_MAX];
    const char *name = qtype_info(t)->name;
    hparams_t hp = small_hp(256, 4, 2, 64, 512, 1, 512);
    model_t *m = synth(hp, t, 17 + t);
    backend_opts_t o = { .kv_bytes = 8u << 20, .block_tokens = 16, .max_tokens = 64, .poison = 1,
                         .native_weights = 1 };
    backend_t *g, *ref16;
    ASSERT_MSG(registry_create_backend("cuda", &g, m, &o, err, sizeof err) == 0, "%s: %s", name, err);
    o.native_weights = 0;
    ASSERT_MSG(registry_create_backend("cuda", &ref16, m, &o, err, sizeof err) == 0, "%s: %s", name, err);
    int has_kernel = t == QT_Q4_0 || t == QT_Q4_1 || t == QT_Q8_0 || t == QT_Q4_K;
    ASSERT_MSG(has_kernel ? act_bytes(g) > act_bytes(ref16) : act_bytes(g) == act_bytes(ref16),
               "%s: native activation bytes %llu, bf16 %llu: the weights were %s", name,
               (unsigned long long)act_bytes(g), (unsigned long long)act_bytes(ref16),
               has_kernel ? "not packed" : "packed without a kernel");
    backend_destroy(ref16);

    const uint32_t n_in = hp.n_ff, n_out = hp.n_embd, Tmax = 64;
    float *x = malloc(sizeof(float) * Tmax * n_in), *y = malloc(sizeof(float) * Tmax * n_out);
    float *w = malloc(sizeof(float) * n_in * n_out), *ref = malloc(sizeof(float) * Tmax * n_out);
    ASSERT(x && y && w && ref);
    const weight_t *wd = &m->layers[0].w_down;
    ASSERT_EQ_INT(quant_dequant(wd->type, wd->data, w, (size_t)n_in * n_out), 0);
    bk_buf_t bx = g->ops->buf_alloc(g->ctx, Tmax, n_in, BK_BUF_ANY), by = g->ops->buf_alloc(g->ctx, Tmax, n_out, BK_BUF_ANY);
    ASSERT(bx && by);
    static const uint32_t steps[] = { 1, 3, 8, 9, 64 };
    for (size_t si = 0; si < sizeof steps / sizeof steps[0]; si++) {
        uint32_t T = steps[si];
        for (uint32_t i = 0; i < T * n_in; i++)
            x[i] = frand();
        for (uint32_t tt = 0; tt < T; tt++)
            for (uint32_t r = 0; r < n_out; r++) {
                double s = 0;
                for (uint32_t i = 0; i < n_in; i++)
                    s += (double)w[(size_t)r * n_in + i] * x[(size_t)tt * n_in + i];
                ref[(size_t)tt * n_out + r] = (float)s;
            }
        int32_t toks[64], pos[64], table[4] = { 0, 1, 2, 3 }, row = (int32_t)T - 1;
        for (uint32_t i = 0; i < T; i++) {
            toks[i] = (int32_t)i;
            pos[i] = (int32_t)i;
        }
        batch_seq_t s = { table, 4, 0, T };
        batch_t b = { T, toks, pos, 1, &s, 1, &row };
        ASSERT_EQ_INT(g->ops->set_batch(g->ctx, &b), 0);
        ASSERT_EQ_INT(g->ops->buf_write(g->ctx, bx, x, T, n_in), 0);
        int rc = g->ops->matmul(g->ctx, 0, W_DOWN, bx, by);
        ASSERT_MSG(rc == 0, "%s T=%u: %s %s", name, T, err_str(rc), g->ops->last_error(g->ctx));
        ASSERT_EQ_INT(g->ops->buf_read(g->ctx, by, y, T, n_out), 0);
        double e = rel_l2(y, ref, (size_t)T * n_out);
        printf("  native matmul %-5s T=%-2u (%s) rel_l2 %.2e\n", name, T,
               !has_kernel ? "bf16" : T <= 8 ? "matvec" : "scratch", e);
        ASSERT_MSG(e < 1e-2, "native matmul %s at %u tokens: relative L2 error %.3g", name, T, e);
    }
    free(x); free(y); free(w); free(ref);
    backend_destroy(g);
    model_destroy(m);
}

TEST(native_matmul_every_type)
{
    need_gpu();
    qtype_t types[] = { QT_Q4_0, QT_Q4_1, QT_Q8_0, QT_Q4_K, QT_Q5_K, QT_Q6_K };
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
        check_native_matmul(types[i]);
}

/* ---------------------------------------------------------------- greedy decoding, four ways */

enum { B_CPU, B_BF16, B_NATIVE, B_GRAPHS, N_B };
static const char *const bnames[N_B] = { "cpu", "cuda bf16", "cuda native", "cuda native+graphs" };

static void greedy_case(qtype_t t)
{
    char err[ERR_MSG_MAX];
    const char *name = qtype_info(t)->name;
    hparams_t hp = small_hp(512, 8, 2, 64, 1024, 3, 1000);
    model_t *m = synth(hp, t, 4242 + t);
    uint64_t block_bytes = (uint64_t)hp.n_layer * 2 * hp.n_head_kv * 16 * hp.head_dim * sizeof(float);
    backend_t *b[N_B];
    forward_t *f[N_B];
    for (int k = 0; k < N_B; k++) {
        backend_opts_t o = { .kv_bytes = 64 * block_bytes, .block_tokens = 16, .max_tokens = 64, .max_seqs = 8,
                             .poison = 1, .native_weights = k >= B_NATIVE, .cuda_graphs = k == B_GRAPHS ? 1 : -1 };
        ASSERT_MSG(registry_create_backend(k == B_CPU ? "cpu" : "cuda", &b[k], m, &o, err, sizeof err) == 0,
                   "%s %s: %s", name, bnames[k], err);
        ASSERT_MSG(forward_create(&f[k], m, b[k], 64, err, sizeof err) == 0, "%s", err);
    }
    const uint32_t V = hp.n_vocab, P = 40, G = 24;
    int32_t toks[80], pos[80], table[4] = { 3, 0, 2, 1 };   /* blocks out of order: tables are honoured */
    make_tokens(toks, P, V);
    float *l[N_B];
    for (int k = 0; k < N_B; k++)
        l[k] = malloc(sizeof(float) * V);
    int ties = 0;
    double worst[N_B] = { 0 };
    for (uint32_t step = 0; step <= G; step++) {
        /* step 0: the prompt in one step (scratch path); then one token a step (matrix-vector kernel) */
        uint32_t first = step == 0 ? 0 : P + step - 1, n = step == 0 ? P : 1;
        for (uint32_t i = 0; i < n; i++)
            pos[first + i] = (int32_t)(first + i);
        batch_seq_t s = { table, (first + n - 1) / 16 + 1, 0, n };
        int32_t row = (int32_t)n - 1;
        batch_t bt = { n, toks + first, pos + first, 1, &s, 1, &row };
        for (int k = 0; k < N_B; k++) {
            int rc = forward_step(f[k], &bt, l[k]);
            ASSERT_MSG(rc == 0, "%s %s step %u: %s %s", name, bnames[k], step, err_str(rc),
                       b[k]->ops->last_error(b[k]->ctx));
        }
        int32_t want = row_argmax(l[B_CPU], V);
        for (int k = B_BF16; k < N_B; k++) {
            double e = rel_l2(l[k], l[B_CPU], V);
            worst[k] = e > worst[k] ? e : worst[k];
            ASSERT_MSG(e < 2e-2, "%s %s step %u: logits' relative L2 error %.3g", name, bnames[k], step, e);
            int32_t got = row_argmax(l[k], V);
            if (got == want)
                continue;
            float maxd = 0;
            for (uint32_t i = 0; i < V; i++)
                maxd = fmaxf(maxd, fabsf(l[k][i] - l[B_CPU][i]));
            float gap = top_margin(l[B_CPU], V, want);
            ASSERT_MSG(gap <= 2 * maxd, "%s %s step %u: greedy token %d, the CPU's %d (CPU gap %.4g, max diff %.4g)",
                       name, bnames[k], step, got, want, gap, maxd);
            ties++;
        }
        toks[P + step] = want;
    }
    printf("  greedy %-5s %u steps: equal to the CPU's but %d near ties; worst rel_l2 bf16 %.2e native %.2e "
           "graphs %.2e\n", name, G, ties, worst[B_BF16], worst[B_NATIVE], worst[B_GRAPHS]);
    ASSERT_MSG(ties <= 2, "%s: %d near ties in %u steps", name, ties, G);
    ASSERT_GRAPHS_USED(b[B_GRAPHS], name);
    for (int k = 0; k < N_B; k++) {
        free(l[k]);
        forward_destroy(f[k]);
        backend_destroy(b[k]);
    }
    model_destroy(m);
}

TEST(native_greedy_matches_bf16_and_cpu)
{
    need_gpu();
    qtype_t types[] = { QT_Q4_0, QT_Q4_1, QT_Q8_0, QT_Q4_K };
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
        greedy_case(types[i]);
}

TEST_LIST(T(native_matmul_every_type), T(native_greedy_matches_bf16_and_cpu))
