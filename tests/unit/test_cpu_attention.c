/*
 * test_cpu_attention.c - the CPU backend's tiled attention and its vector
 * exp: vexp8 against libm's double exp over its whole range, and SwiGLU's
 * vexp_silu_mul against double and element by element; cpu_attention
 * against a plain double-precision softmax attention on random paged K/V
 * (two sequences, one with cached keys, grouped heads), and bit for bit
 * against attention.h's order of operations written out; and its
 * invariance: a sequence's output bits do not change with the other
 * sequences of the batch, the thread count, or the build (plain, AVX2,
 * AVX512: each that this CPU runs; builds_here skips naming the others),
 * on the rig's shapes and on more head sizes, groups and block sizes.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "base/quant.h"
#include "cpu/attention.h"
#include "cpu/matmul.h"
#include "cpu/vexp.h"
#include "test.h"

TEST(vexp_within_its_bound_of_libm)
{
    double worst = 0.0, worst_x = 0.0;
    for (double x0 = -87.0; x0 <= 88.0; x0 += 8 * 0.000377) {
        vexp_f8 v;
        for (int l = 0; l < 8; l++)
            v[l] = (float)(x0 + l * 0.000377);
        vexp_f8 y = v;
        vexp8(&y);
        for (int l = 0; l < 8 && v[l] <= 88.0f; l++) {
            double e = exp((double)v[l]);
            double rel = fabs((double)y[l] - e) / e;
            if (rel > worst) {
                worst = rel;
                worst_x = v[l];
            }
        }
    }
    ASSERT_MSG(worst < 5e-7, "vexp8 relative error %.3g at x = %.6f (bound 5e-7)", worst, worst_x);
    vexp_f8 v = { -INFINITY, -87.5f, -1e30f, 0.0f, 1.0f, 88.0f, 1000.0f, -86.9f };
    vexp8(&v);
    ASSERT_MSG(v[0] == 0.0f && v[1] == 0.0f && v[2] == 0.0f, "below -87: %g %g %g", v[0], v[1], v[2]);
    ASSERT_MSG(v[3] == 1.0f, "exp(0) = %.9g", v[3]);
    ASSERT_NEAR(v[4], 2.718281828, 1e-6);
    ASSERT_MSG(v[6] == v[5] && isfinite(v[6]), "above 88 gives exp(88): %g vs %g", v[6], v[5]);
    ASSERT_MSG(v[7] > 0.0f, "exp(-86.9) = %g", v[7]);
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
/* vexp16 over x[0..16), in code built for AVX-512 as the kernel's is. */
__attribute__((target("avx512f"), noinline)) static void exp16_at(float *x)
{
    vexp_f16 v;
    memcpy(&v, x, sizeof v);
    vexp16(&v);
    memcpy(x, &v, sizeof v);
}
#endif

/* vexp16, the AVX512 attention's exp, gives each lane vexp8's bits: over
 * the range and past both ends, -inf and NaN's lanes included. */
TEST(vexp16_is_vexp8_lane_by_lane)
{
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    if (!cpu_attention_build_usable(CPU_ATTN_AVX512))
        TEST_SKIP("no AVX512 attention build on this CPU");
    uint32_t differ = 0;
    for (double x0 = -100.0; x0 <= 100.0; x0 += 16 * 0.00731) {
        float x[16], want[16];
        for (int l = 0; l < 16; l++)
            x[l] = (float)(x0 + l * 0.00731);
        if ((int)x0 % 5 == 0)           /* now and then an -inf and a NaN lane */
            x[(int)(x0 * 7) & 15] = -INFINITY, x[(int)(x0 * 3) & 15] = NAN;
        for (int h = 0; h < 2; h++) {
            vexp_f8 v;
            memcpy(&v, x + 8 * h, sizeof v);
            vexp8(&v);
            memcpy(want + 8 * h, &v, sizeof v);
        }
        exp16_at(x);
        differ += memcmp(x, want, sizeof x) != 0;
    }
    ASSERT_MSG(differ == 0, "vexp16 differs from vexp8 in %u groups of sixteen", differ);
#else
    TEST_SKIP("no AVX512 attention build in this build");
#endif
}

/* vexp_silu_mul (SwiGLU): near g / (1 + e^-g) * u in double over the
 * range, the stated ends beyond it, and every element the same alone (at
 * the start of a one-element call, the padded part) as in a long call,
 * wherever it lies, a last part of five included. */
TEST(silu_mul_near_exact_and_placeless)
{
    enum { N = 8 * 40 + 5 };
    float g[N], u[N], y[N];
    double worst = 0.0;
    for (int i = 0; i < N; i++) {
        g[i] = -87.0f + 175.0f * (float)i / (float)(N - 1);
        u[i] = 0.5f + (float)(i % 7) * 0.25f;
    }
    g[3] = -90.0f;
    g[11] = NAN;
    g[19] = -INFINITY;
    g[27] = INFINITY;
    g[35] = -1e30f;
    g[43] = -88.0f;
    memcpy(y, g, sizeof y);
    vexp_silu_mul(y, u, N);
    for (int i = 0; i < N; i++) {
        float one = g[i];
        vexp_silu_mul(&one, &u[i], 1);
        ASSERT_MSG(memcmp(&one, &y[i], sizeof one) == 0 || (isnan(one) && isnan(y[i])),
                   "element %d (g %g): %.9g alone, %.9g in the run", i, (double)g[i], (double)one, (double)y[i]);
        if (!isfinite(g[i]) || g[i] < -88.0f)
            continue;
        double e = (double)g[i] / (1.0 + exp(-(double)g[i])) * (double)u[i];
        double err = fabs((double)y[i] - e) / (fabs(e) > 1e-38 ? fabs(e) : 1e-38);
        worst = err > worst ? err : worst;
    }
    ASSERT_MSG(worst < 2e-6, "silu * u relative error %.3g (bound 2e-6)", worst);
    ASSERT_MSG(y[3] == 0.0f && y[19] == 0.0f && y[35] == 0.0f, "below -88: %g %g %g", (double)y[3],
               (double)y[19], (double)y[35]);
    ASSERT_MSG(isnan(y[11]), "NaN in: %g", (double)y[11]);
    ASSERT_MSG(y[27] == INFINITY, "+inf in: %g", (double)y[27]);
}

/* ------------------------------------------------------------- a paged rig */

enum { HD = 64, NH = 6, NKV = 2, BT = 16, NBLK = 12, MAXTOK = 48, DEC_SEQS = 6 };

static uint64_t lcg = 12345;

static float rnd(void)
{
    lcg = lcg * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((double)(lcg >> 40) / (double)(1ull << 23) - 1.0);
}

static float kv_k[NBLK][NKV][BT][HD], kv_v[NBLK][NKV][BT][HD];
static uint16_t kv16_k[NBLK][NKV][BT][HD], kv16_v[NBLK][NKV][BT][HD];
static float q[MAXTOK][NH][HD];
/* sequence A: 40 cached positions, then 35 new (40..74) in blocks 0..4
   shuffled; sequence B: 5 new positions (0..4) in block 9. */
static const int32_t table_a[5] = { 7, 2, 10, 0, 5 }, table_b[1] = { 9 };
enum { A_CACHED = 40, A_NEW = 35, B_NEW = 5 };

static void fill(void)
{
    float *k = &kv_k[0][0][0][0], *v = &kv_v[0][0][0][0], *qq = &q[0][0][0];
    for (size_t i = 0; i < sizeof kv_k / sizeof(float); i++) {
        k[i] = rnd() * 2.0f;
        v[i] = rnd();
    }
    for (size_t i = 0; i < sizeof q / sizeof(float); i++)
        qq[i] = rnd() * 2.0f;
}

/* out[t] for the tokens of b, with n_threads threads, K/V from kv_k and
   kv_v, or (f16) from kv16_k and kv16_v. */
static int run_kv(const batch_t *b, int n_threads, float *out, int f16)
{
    pool_t *p;
    if (pool_create(&p, n_threads) != 0)
        return ERR_NOMEM;
    size_t per = cpu_attn_scratch_floats(NH, NKV, HD);
    float *scratch = aligned_alloc(64, ((size_t)n_threads * per * sizeof(float) + 63) & ~(size_t)63);
    uint32_t tile_first[DEC_SEQS + 1];
    cpu_attn_t a = { HD, NH, NKV, BT, &kv_k[0][0][0][0], &kv_v[0][0][0][0], b, &q[0][0][0], out, 0 };
    if (f16) {
        a.k = &kv16_k[0][0][0][0];
        a.v = &kv16_v[0][0][0][0];
        a.kv_f16 = 1;
    }
    int rc = scratch ? cpu_attention(p, &a, tile_first, scratch) : ERR_NOMEM;
    free(scratch);
    pool_destroy(p);
    return rc;
}

static int run(const batch_t *b, int n_threads, float *out)
{
    return run_kv(b, n_threads, out, 0);
}

/* The independent reference: softmax(q k / sqrt(d)) v in double, keys
   0..pos of the sequence read through its block table. */
static void reference(const int32_t *table, int32_t pos, const float *qh, uint32_t kvh, double *o)
{
    double s[128], mx = -INFINITY, sum = 0.0;
    for (int32_t j = 0; j <= pos; j++) {
        const float *kr = kv_k[table[j / BT]][kvh][j % BT];
        double d = 0.0;
        for (int i = 0; i < HD; i++)
            d += (double)qh[i] * kr[i];
        s[j] = d / sqrt((double)HD);
        mx = s[j] > mx ? s[j] : mx;
    }
    for (int i = 0; i < HD; i++)
        o[i] = 0.0;
    for (int32_t j = 0; j <= pos; j++) {
        double p = exp(s[j] - mx);
        sum += p;
        for (int i = 0; i < HD; i++)
            o[i] += p * kv_v[table[j / BT]][kvh][j % BT][i];
    }
    for (int i = 0; i < HD; i++)
        o[i] /= sum;
}

static int32_t pos_ab[A_NEW + B_NEW];
static batch_seq_t seqs_ab[2] = { { table_a, 5, 0, A_NEW }, { table_b, 1, A_NEW, B_NEW } };

static batch_t batch_ab(void)
{
    for (int i = 0; i < A_NEW; i++)
        pos_ab[i] = A_CACHED + i;
    for (int i = 0; i < B_NEW; i++)
        pos_ab[A_NEW + i] = i;
    return (batch_t){ A_NEW + B_NEW, NULL, pos_ab, 2, seqs_ab, 0, NULL };
}

static float out1[MAXTOK][NH][HD], out2[MAXTOK][NH][HD];

static const char *build_name(int b)
{
    return b == CPU_ATTN_PLAIN ? "plain" : b == CPU_ATTN_AVX2 ? "AVX2" : "AVX512";
}

/* AUTO runs the build of the matrix kernels' level: plain at PORTABLE,
   AVX2 at AVX2 and AVX-VNNI, AVX512 at AVX512 and AMX (each level this
   CPU has); a forced build wins until AUTO again. */
TEST(auto_build_follows_the_matrix_level)
{
    static const cpu_attn_build_t want[] = { CPU_ATTN_PLAIN, CPU_ATTN_AVX2, CPU_ATTN_AVX2, CPU_ATTN_AVX512,
                                             CPU_ATTN_AVX512 };
    cpu_isa_t isa0 = cpu_matmul_isa();
    cpu_prec_t prec0 = cpu_matmul_precision();
    int levels = 0;
    for (int isa = CPU_ISA_PORTABLE; isa <= CPU_ISA_AMX; isa++) {
        if (!cpu_isa_usable((cpu_isa_t)isa))
            continue;
        ASSERT_EQ_INT(cpu_matmul_configure((cpu_isa_t)isa, prec0), 0);
        cpu_attn_build_t got = cpu_attention_build();
        ASSERT_EQ_INT(cpu_attention_force(CPU_ATTN_PLAIN), 0);
        cpu_attn_build_t forced = cpu_attention_build();
        ASSERT_EQ_INT(cpu_attention_force(CPU_ATTN_AUTO), 0);
        ASSERT_EQ_INT(cpu_matmul_configure(isa0, prec0), 0);
        ASSERT_MSG(got == want[isa], "level %s runs build %d, not %d", cpu_isa_name((cpu_isa_t)isa), (int)got,
                   (int)want[isa]);
        ASSERT_EQ_INT(forced, CPU_ATTN_PLAIN);
        levels++;
    }
    ASSERT(levels >= 1);
}

/* The loops below run every build this CPU has; this says which it lacks. */
TEST(builds_here)
{
    ASSERT(cpu_attention_build_usable(CPU_ATTN_PLAIN));
    ASSERT_EQ_INT(cpu_attention_force(CPU_ATTN_PLAIN), 0);
    ASSERT_EQ_INT(cpu_attention_force(CPU_ATTN_AUTO), 0);
    if (!cpu_attention_build_usable(CPU_ATTN_AVX2))
        TEST_SKIP("no AVX2 build on this CPU: the build comparisons cover the plain build only");
    if (!cpu_attention_build_usable(CPU_ATTN_AVX512)) {
        ASSERT_EQ_INT(cpu_attention_force(CPU_ATTN_AVX512), ERR_UNSUPPORTED);
        TEST_SKIP("no AVX512 level on this CPU: the build comparisons cover the plain and AVX2 builds");
    }
}

TEST(attention_matches_double_reference)
{
    fill();
    batch_t b = batch_ab();
    ASSERT_EQ_INT(run(&b, 2, &out1[0][0][0]), 0);
    double worst = 0.0;
    for (uint32_t t = 0; t < b.n_tokens; t++) {
        const int32_t *table = t < A_NEW ? table_a : table_b;
        for (uint32_t h = 0; h < NH; h++) {
            double o[HD], num = 0.0, den = 0.0;
            reference(table, pos_ab[t], q[t][h], h / (NH / NKV), o);
            for (int i = 0; i < HD; i++) {
                num += (out1[t][h][i] - o[i]) * (out1[t][h][i] - o[i]);
                den += o[i] * o[i];
            }
            double rel = sqrt(num / den);
            worst = rel > worst ? rel : worst;
        }
    }
    ASSERT_MSG(worst < 1e-5, "worst relative L2 error %.3g over every (token, head) (tolerance 1e-5)", worst);
}

/* attention.h's order of operations written out for one query row, in
   float, one key and one element at a time (vexp8 on one lane). */
static float vexp1(float x)
{
    vexp_f8 v = { x, x, x, x, x, x, x, x };
    vexp8(&v);
    return v[0];
}

static void definition(const int32_t *table, int32_t pos, const float *qh, uint32_t kvh, float *o)
{
    float acc[HD] = { 0 }, mx = -INFINITY, sum = 0.0f, scale = 1.0f / sqrtf((float)HD);
    for (int32_t j0 = 0; j0 <= pos; j0 += BT) {
        int32_t nb = pos + 1 - j0 < BT ? pos + 1 - j0 : BT;
        float s[BT], bmax = -INFINITY;
        for (int32_t j = 0; j < nb; j++) {
            const float *kr = kv_k[table[(j0 + j) / BT]][kvh][(j0 + j) % BT];
            float l[8] = { 0 };
            for (int x = 0; x < HD / 8; x++)
                for (int k = 0; k < 8; k++)
                    l[k] = l[k] + qh[8 * x + k] * kr[8 * x + k];
            s[j] = (((l[0] + l[4]) + (l[2] + l[6])) + ((l[1] + l[5]) + (l[3] + l[7]))) * scale;
            bmax = s[j] > bmax ? s[j] : bmax;
        }
        float new_max = bmax > mx ? bmax : mx, corr = vexp1(mx - new_max);
        sum *= corr;
        for (int i = 0; i < HD; i++)
            acc[i] *= corr;
        for (int32_t j = 0; j < nb; j++) {
            float p = vexp1(s[j] - new_max);
            sum += p;
            for (int i = 0; i < HD; i++)
                acc[i] += p * kv_v[table[(j0 + j) / BT]][kvh][(j0 + j) % BT][i];
        }
        mx = new_max;
    }
    float inv = 1.0f / sum;
    for (int i = 0; i < HD; i++)
        o[i] = acc[i] * inv;
}

/* Every row, both builds, bit for bit the order attention.h states (the
   eight-key score reduction and the register-held accumulators included). */
TEST(output_is_the_stated_order_bit_for_bit)
{
    fill();
    batch_t b = batch_ab();
    for (int bi = CPU_ATTN_PLAIN; bi <= CPU_ATTN_AVX512; bi++) {
        if (cpu_attention_force((cpu_attn_build_t)bi) != 0)
            continue;                           /* not on this CPU (noted by builds_here) */
        memset(out1, 0, sizeof out1);
        int rc = run(&b, 2, &out1[0][0][0]);
        cpu_attention_force(CPU_ATTN_AUTO);
        ASSERT_EQ_INT(rc, 0);
        for (uint32_t t = 0; t < b.n_tokens; t++) {
            const int32_t *table = t < A_NEW ? table_a : table_b;
            for (uint32_t h = 0; h < NH; h++) {
                float o[HD];
                definition(table, pos_ab[t], q[t][h], h / (NH / NKV), o);
                ASSERT_MSG(memcmp(o, out1[t][h], sizeof o) == 0,
                           "%s build, token %u (position %d) head %u differs from the stated order",
                           build_name(bi), t, pos_ab[t], h);
            }
        }
    }
}

TEST(output_bits_do_not_depend_on_batch_threads_or_build)
{
    fill();
    batch_t b = batch_ab();
    ASSERT_EQ_INT(run(&b, 1, &out1[0][0][0]), 0);
    size_t a_bytes = (size_t)A_NEW * NH * HD * sizeof(float);
    size_t b_bytes = (size_t)B_NEW * NH * HD * sizeof(float);

    ASSERT_EQ_INT(run(&b, 3, &out2[0][0][0]), 0);
    ASSERT_MSG(memcmp(out1, out2, a_bytes + b_bytes) == 0, "1 and 3 threads differ");

    for (int bi = CPU_ATTN_PLAIN; bi <= CPU_ATTN_AVX512; bi++) {
        if (cpu_attention_force((cpu_attn_build_t)bi) != 0)
            continue;
        memset(out2, 0, sizeof out2);
        int rc = run(&b, 2, &out2[0][0][0]);
        cpu_attention_force(CPU_ATTN_AUTO);
        ASSERT_EQ_INT(rc, 0);
        ASSERT_MSG(memcmp(out1, out2, a_bytes + b_bytes) == 0, "the %s build differs from the default",
                   build_name(bi));
    }

    /* A alone: its tiles start at the same token, but B no longer follows */
    batch_t alone = { A_NEW, NULL, pos_ab, 1, seqs_ab, 0, NULL };
    memset(out2, 0, sizeof out2);
    ASSERT_EQ_INT(run(&alone, 2, &out2[0][0][0]), 0);
    ASSERT_MSG(memcmp(out1, out2, a_bytes) == 0, "sequence A alone differs from A beside B");

    /* A's last 13 tokens alone (as a later chunk would run them): tiles now start elsewhere */
    batch_seq_t tail = { table_a, 5, 0, 13 };
    batch_t late = { 13, NULL, pos_ab + A_NEW - 13, 1, &tail, 0, NULL };
    memset(out2, 0, sizeof out2);
    uint32_t qoff = (A_NEW - 13) * NH * HD;
    float *qsave = malloc(sizeof q);
    ASSERT(qsave != NULL);
    memcpy(qsave, q, sizeof q);
    memmove(&q[0][0][0], &q[0][0][0] + qoff, (size_t)13 * NH * HD * sizeof(float));
    int rc = run(&late, 2, &out2[0][0][0]);
    memcpy(q, qsave, sizeof q);
    free(qsave);
    ASSERT_EQ_INT(rc, 0);
    ASSERT_MSG(memcmp(&out1[0][0][0] + qoff, out2, (size_t)13 * NH * HD * sizeof(float)) == 0,
               "A's last tokens in a chunk of their own differ");
}

/*
 * Half-precision K/V (cpu-precision fast): the kernel over halves is the
 * float kernel over the floats those halves hold, bit for bit, in both
 * builds and at any thread count; and those floats are near the originals.
 */
TEST(f16_kv_is_the_float_kernel_over_the_halves)
{
    fill();
    float *k = &kv_k[0][0][0][0], *v = &kv_v[0][0][0][0];
    uint16_t *k16 = &kv16_k[0][0][0][0], *v16 = &kv16_v[0][0][0][0];
    size_t n = sizeof kv_k / sizeof(float);
    for (size_t i = 0; i < n; i++) {
        k16[i] = f32_to_f16(k[i]);
        v16[i] = f32_to_f16(v[i]);
        k[i] = f16_to_f32(k16[i]);  /* the float kernel now reads the halves' values */
        v[i] = f16_to_f32(v16[i]);
    }
    batch_t b = batch_ab();
    size_t bytes = (size_t)b.n_tokens * NH * HD * sizeof(float);
    ASSERT_EQ_INT(run(&b, 2, &out1[0][0][0]), 0);
    for (int bi = CPU_ATTN_PLAIN; bi <= CPU_ATTN_AVX512; bi++)
        for (int threads = 1; threads <= 3; threads += 2) {
            if (cpu_attention_force((cpu_attn_build_t)bi) != 0)
                continue;
            memset(out2, 0, sizeof out2);
            int rc = run_kv(&b, threads, &out2[0][0][0], 1);
            cpu_attention_force(CPU_ATTN_AUTO);
            ASSERT_EQ_INT(rc, 0);
            ASSERT_MSG(memcmp(out1, out2, bytes) == 0, "%s build, %d threads: f16 K/V differ from the "
                       "float kernel over the same values", build_name(bi), threads);
        }
    /* and a sequence's rows alone match it beside another */
    batch_t alone = { A_NEW, NULL, pos_ab, 1, seqs_ab, 0, NULL };
    memset(out2, 0, sizeof out2);
    ASSERT_EQ_INT(run_kv(&alone, 2, &out2[0][0][0], 1), 0);
    ASSERT_MSG(memcmp(out1, out2, (size_t)A_NEW * NH * HD * sizeof(float)) == 0,
               "f16: sequence A alone differs from A beside B");
}

/*
 * A decode step: six sequences of one token each, whose blocks lie out of
 * order and are shared between sequences.  With at least two sequences
 * per thread (1 and 3 threads here) a task takes all of a sequence's KV
 * heads; with 4 threads, one head.  Every row is the stated order either
 * way, in both builds, and the halves' kernel gives the same bits both
 * ways.
 */
TEST(decode_step_tasks_of_all_kv_heads_keep_the_order)
{
    static const int32_t tables[DEC_SEQS][3] = { { 3, 8 }, { 11, 1, 6 }, { 4 },
                                                 { 2, 9, 0 }, { 10 }, { 5, 7, 3 } };
    static const int32_t pos[DEC_SEQS] = { 20, 47, 3, 33, 15, 40 };
    batch_seq_t seqs[DEC_SEQS];
    for (uint32_t i = 0; i < DEC_SEQS; i++)
        seqs[i] = (batch_seq_t){ tables[i], (uint32_t)pos[i] / BT + 1, i, 1 };
    batch_t b = { DEC_SEQS, NULL, pos, DEC_SEQS, seqs, 0, NULL };
    size_t bytes = (size_t)DEC_SEQS * NH * HD * sizeof(float);
    fill();
    for (int bi = CPU_ATTN_PLAIN; bi <= CPU_ATTN_AVX512; bi++)
        for (int threads = 1; threads <= 4; threads += threads == 1 ? 2 : 1) {
            if (cpu_attention_force((cpu_attn_build_t)bi) != 0)
                continue;
            memset(out1, 0, sizeof out1);
            int rc = run(&b, threads, &out1[0][0][0]);
            cpu_attention_force(CPU_ATTN_AUTO);
            ASSERT_EQ_INT(rc, 0);
            for (uint32_t t = 0; t < DEC_SEQS; t++)
                for (uint32_t h = 0; h < NH; h++) {
                    float o[HD];
                    definition(tables[t], pos[t], q[t][h], h / (NH / NKV), o);
                    ASSERT_MSG(memcmp(o, out1[t][h], sizeof o) == 0,
                               "%s build, %d threads: sequence %u head %u differs from the stated order",
                               build_name(bi), threads, t, h);
                }
        }
    float *k = &kv_k[0][0][0][0], *v = &kv_v[0][0][0][0];
    uint16_t *k16 = &kv16_k[0][0][0][0], *v16 = &kv16_v[0][0][0][0];
    for (size_t i = 0; i < sizeof kv_k / sizeof(float); i++) {
        k16[i] = f32_to_f16(k[i]);
        v16[i] = f32_to_f16(v[i]);
    }
    ASSERT_EQ_INT(run_kv(&b, 1, &out1[0][0][0], 1), 0);
    ASSERT_EQ_INT(run_kv(&b, 4, &out2[0][0][0], 1), 0);
    ASSERT_MSG(memcmp(out1, out2, bytes) == 0, "f16: a task of all KV heads differs from tasks of one");
}

/*
 * The vector builds against the plain one on shapes the rig above lacks:
 * head_dim 40 (five vectors: the accumulators' remainder loop alone), 48,
 * 56, 64, 72 (nine: one run of eight and one more), 80 (ten: one run and
 * two more), 128 and 256 (two and four runs); the AVX512 build's p v
 * takes 64 elements at a time (80: 64 and 16), its last sixteen masked to
 * eight where 8 divides a chunk but 16 does not (40, 56, 72); groups of
 * 1, 2, 4 and 3 heads (no pair, pairs only, two pairs, a pair and one),
 * and 5 to 8 (the AVX512 build's four heads a call, then the rest);
 * blocks of 7 and 5 keys (tail keys only), 12 (a group of eight keys and
 * four more) and 64 (eight groups: the score arrays full); float and half
 * K/V; one and two threads; a prompt of 19 tokens after 30 cached (its
 * rows' last blocks differ) beside three one-token sequences, and those
 * three alone (a decode step: tasks of all KV heads).
 */
TEST(vector_builds_equal_plain_on_more_shapes)
{
    static const uint32_t shapes[][4] = { { 40, 4, 2, 7 }, { 72, 3, 3, 7 }, { 128, 8, 2, 5 }, { 48, 6, 2, 7 },
                                          { 40, 4, 2, 12 }, { 72, 6, 2, 12 }, { 128, 8, 2, 64 }, { 64, 6, 2, 64 },
                                          { 80, 10, 2, 12 }, { 56, 12, 2, 16 }, { 64, 8, 1, 16 },
                                          { 256, 7, 1, 12 } };
    static const int32_t at[4] = { 30, 5, 13, 27 };             /* first new position */
    static const uint32_t n_new[4] = { 19, 1, 1, 1 };
    enum { NB_MAX = 24 };
    if (!cpu_attention_build_usable(CPU_ATTN_AVX2))
        TEST_SKIP("no vector build on this CPU");
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
        uint32_t hd = shapes[si][0], nh = shapes[si][1], nkv = shapes[si][2], bt = shapes[si][3];
        size_t kv_n = (size_t)NB_MAX * nkv * bt * hd;
        float *k = malloc(kv_n * sizeof(float)), *v = malloc(kv_n * sizeof(float));
        uint16_t *k16 = malloc(kv_n * sizeof(uint16_t)), *v16 = malloc(kv_n * sizeof(uint16_t));
        float *qq = malloc((size_t)22 * nh * hd * sizeof(float));
        float *want = malloc((size_t)22 * nh * hd * sizeof(float)), *got = malloc((size_t)22 * nh * hd * sizeof(float));
        size_t per = cpu_attn_scratch_floats(nh, nkv, hd);
        float *scratch = aligned_alloc(64, (2 * per * sizeof(float) + 63) & ~(size_t)63);
        ASSERT(k && v && k16 && v16 && qq && want && got && scratch);
        for (size_t i = 0; i < kv_n; i++) {
            k[i] = rnd() * 2.0f;
            v[i] = rnd();
            k16[i] = f32_to_f16(k[i]);
            v16[i] = f32_to_f16(v[i]);
        }
        for (size_t i = 0; i < (size_t)22 * nh * hd; i++)
            qq[i] = rnd() * 2.0f;
        /* each sequence's blocks, from a shuffled run of the pool's */
        int32_t tables[4][NB_MAX], pos[22];
        batch_seq_t seqs[4];
        uint32_t next = 0, tok = 0;
        for (uint32_t sq = 0; sq < 4; sq++) {
            uint32_t nblk = ((uint32_t)at[sq] + n_new[sq] + bt - 1) / bt;
            for (uint32_t i = 0; i < nblk; i++, next++)
                tables[sq][i] = (int32_t)((next * 7 + 3) % NB_MAX);
            seqs[sq] = (batch_seq_t){ tables[sq], nblk, tok, n_new[sq] };
            for (uint32_t i = 0; i < n_new[sq]; i++)
                pos[tok++] = at[sq] + (int32_t)i;
        }
        ASSERT(next <= NB_MAX);
        batch_t mixed = { tok, NULL, pos, 4, seqs, 0, NULL };
        batch_seq_t dseqs[3] = { seqs[1], seqs[2], seqs[3] };
        for (int i = 0; i < 3; i++)
            dseqs[i].first = (uint32_t)i;
        batch_t decode = { 3, NULL, pos + 19, 3, dseqs, 0, NULL };
        for (int f16 = 0; f16 < 2; f16++)
            for (int which = 0; which < 2; which++) {
                const batch_t *b = which ? &decode : &mixed;
                size_t bytes = (size_t)b->n_tokens * nh * hd * sizeof(float);
                cpu_attn_t a = { hd, nh, nkv, bt, f16 ? (const void *)k16 : k, f16 ? (const void *)v16 : v,
                                 b, qq + (which ? (size_t)19 * nh * hd : 0), want, f16 };
                uint32_t tf[5];
                ASSERT_EQ_INT(cpu_attention_force(CPU_ATTN_PLAIN), 0);
                int rc = cpu_attention(NULL, &a, tf, scratch);
                cpu_attention_force(CPU_ATTN_AUTO);
                ASSERT_EQ_INT(rc, 0);
                for (int bi = CPU_ATTN_AVX2; bi <= CPU_ATTN_AVX512; bi++)
                    for (int threads = 1; threads <= 2; threads++) {
                        if (cpu_attention_force((cpu_attn_build_t)bi) != 0)
                            continue;
                        pool_t *p = NULL;
                        ASSERT_EQ_INT(pool_create(&p, threads), 0);
                        a.out = got;
                        memset(got, 0, bytes);
                        rc = cpu_attention(p, &a, tf, scratch);
                        a.out = want;
                        pool_destroy(p);
                        cpu_attention_force(CPU_ATTN_AUTO);
                        ASSERT_EQ_INT(rc, 0);
                        ASSERT_MSG(memcmp(want, got, bytes) == 0,
                                   "head_dim %u, %u heads over %u, blocks of %u, %s K/V, %s: the %s build "
                                   "(%d threads) differs from the plain one", hd, nh, nkv, bt,
                                   f16 ? "half" : "float", which ? "decode" : "prompt beside decodes",
                                   build_name(bi), threads);
                    }
            }
        free(k);
        free(v);
        free(k16);
        free(v16);
        free(qq);
        free(want);
        free(got);
        free(scratch);
    }
}

/* A float beside its bits, for the sweep below. */
static float bits_f(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* cpu_kv_put_f16 (F16C where the AVX2 build runs, and the plain loop) is
 * f32_to_f16 (numpy's rounding, test_quant) bit for bit: a stride through
 * every float, every half's neighbours and the midpoints between
 * neighbouring halves (the ties), infinities, NaNs with payloads. */
TEST(f16_narrowing_is_f32_to_f16)
{
    enum { N = 1 << 20 };
    float *src = malloc(N * sizeof(float));
    uint16_t *got = malloc(N * sizeof(uint16_t));
    ASSERT(src != NULL && got != NULL);
    size_t n = 0;
    for (uint64_t u = 0; u < (1ull << 32) && n < N / 2; u += 8209)
        src[n++] = bits_f((uint32_t)u);
    for (uint32_t h = 0; h < 0x7bffu && n + 5 <= N; h++) { /* finite neighbours */
        float a = f16_to_f32((uint16_t)h), b2 = f16_to_f32((uint16_t)(h + 1));
        float mid = (a + b2) / 2.0f;            /* exact: a float has room for it */
        uint32_t mu;
        memcpy(&mu, &mid, sizeof mu);
        src[n++] = mid;
        src[n++] = -mid;
        src[n++] = bits_f(mu + 1);
        src[n++] = bits_f(mu - 1);
        src[n++] = a;
    }
    const uint32_t special[] = { 0x7f800000u, 0xff800000u, 0x7fc00000u, 0xffc00001u, 0x7f800001u,
                                 0x7fa5a5a5u, 0xff812345u, 0x477ff000u, 0x477fefffu, 0x47800000u,
                                 0x33000000u, 0x33000001u, 0x387fc000u, 0x00000001u, 0x80000000u };
    for (size_t i = 0; i < sizeof special / sizeof special[0] && n < N; i++)
        src[n++] = bits_f(special[i]);
    if (n % 8 == 0)
        n--;                                    /* a ragged tail for the eight-wide loop */
    for (int plain = 0; plain < 2; plain++) {
        int forced = cpu_attention_force(plain ? CPU_ATTN_PLAIN : CPU_ATTN_AUTO);
        memset(got, 0, N * sizeof(uint16_t));
        cpu_kv_put_f16(got, src, (uint32_t)n);
        cpu_attention_force(CPU_ATTN_AUTO);
        ASSERT_EQ_INT(forced, 0);
        for (size_t i = 0; i < n; i++) {
            uint16_t want = f32_to_f16(src[i]);
            uint32_t xb;
            memcpy(&xb, &src[i], sizeof xb);
            ASSERT_MSG(got[i] == want, "%s: 0x%08x gives 0x%04x, f32_to_f16 0x%04x",
                       plain ? "plain" : "F16C", xb, got[i], want);
        }
    }
    free(src);
    free(got);
}

TEST(bad_shapes_are_refused)
{
    batch_t b = batch_ab();
    float one[1];
    uint32_t tf[4];
    cpu_attn_t a = { 12, NH, NKV, BT, &kv_k[0][0][0][0], &kv_v[0][0][0][0], &b, &q[0][0][0], one, 0 };
    ASSERT_EQ_INT(cpu_attention(NULL, &a, tf, one), ERR_INVALID);          /* head_dim not a multiple of 8 */
    a.head_dim = HD;
    a.n_head_kv = 4;
    ASSERT_EQ_INT(cpu_attention(NULL, &a, tf, one), ERR_INVALID);          /* 6 heads over 4 */
    a.n_head_kv = NKV;
    a.block_tokens = 65;
    ASSERT_EQ_INT(cpu_attention(NULL, &a, tf, one), ERR_INVALID);
    ASSERT_EQ_U64(cpu_attn_scratch_floats(NH, 4, HD), 0);
}

TEST_LIST(T(vexp_within_its_bound_of_libm), T(vexp16_is_vexp8_lane_by_lane),
          T(silu_mul_near_exact_and_placeless), T(builds_here),
          T(auto_build_follows_the_matrix_level),
          T(vector_builds_equal_plain_on_more_shapes),
          T(attention_matches_double_reference),
          T(output_is_the_stated_order_bit_for_bit), T(output_bits_do_not_depend_on_batch_threads_or_build),
          T(f16_kv_is_the_float_kernel_over_the_halves), T(decode_step_tasks_of_all_kv_heads_keep_the_order),
          T(f16_narrowing_is_f32_to_f16), T(bad_shapes_are_refused))
