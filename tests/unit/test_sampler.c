/*
 * test_sampler.c - the sampler against references computed here, in
 * double precision, from the definitions in engine/sampler.h: softmax and
 * log_softmax, the penalty formulas, the min-p / top-k / top-p sets, and a
 * chi-square goodness-of-fit test of the draws.
 */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "sampler.h"
#include "test.h"

/* ------------------------------------------------------------------ */
/* Helpers                                                             */
/* ------------------------------------------------------------------ */

#define MAX_N 65536     /* the largest vocabulary a test uses */

/* Scratch for the tests (each runs in its own process). */
static float g_x[MAX_N];        /* test logits */
static int g_keep[MAX_N];       /* reference set: 1 = kept */
static uint32_t g_counts[MAX_N];

/* A test-local generator (xorshift64*), independent of the sampler's. */
static uint64_t rng_state = 0x2545f4914f6cdd1dull;

static double rnd(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (double)((rng_state * 0x2545f4914f6cdd1dull) >> 11) * 0x1.0p-53;
}

/* x [n] uniform in [lo, hi); returns x. */
static float *fill_random(float *x, uint32_t n, double lo, double hi)
{
    for (uint32_t i = 0; i < n; i++)
        x[i] = (float)(lo + (hi - lo) * rnd());
    return x;
}

static sampler_t *make_sampler(uint32_t n)
{
    sampler_t *s = NULL;
    char err[ERR_MSG_MAX];
    int rc = sampler_create(&s, n, err, sizeof err);
    ASSERT_MSG(rc == 0, "sampler_create: %s", err);
    return s;
}

static sampler_params_t defaults(void)
{
    sampler_params_t p;
    sampler_params_init(&p);
    return p;
}

/* One draw on a copy of logits [n] (the sampler modifies its input). */
static int32_t draw(sampler_t *s, const sampler_params_t *p,
                    const sampler_seq_t *seq, const float *logits, uint32_t n,
                    uint64_t step, sampler_result_t *res)
{
    static float buf[MAX_N];
    sampler_result_t local;
    if (res == NULL)
        res = &local;
    ASSERT(n <= MAX_N);
    memcpy(buf, logits, n * sizeof *buf);
    ASSERT_EQ_INT(sampler_sample(s, p, seq, buf, step, res), 0);
    ASSERT(res->token >= 0 && (uint32_t)res->token < n);
    return res->token;
}

/* g_counts [n] of `draws` draws: seed 7000 + d and step d % 5 for draw d. */
static void count_draws(sampler_t *s, sampler_params_t p, const float *logits,
                        uint32_t n, int draws)
{
    memset(g_counts, 0, n * sizeof *g_counts);
    for (int d = 0; d < draws; d++) {
        p.seed = 7000 + (uint64_t)d;
        g_counts[draw(s, &p, NULL, logits, n, (uint64_t)(d % 5), NULL)]++;
    }
}

/* Every token of keep [n] was drawn (g_counts), and no other. */
static void assert_exact_set(const int *keep, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) {
        if (keep[i])
            ASSERT_MSG(g_counts[i] > 0, "token %u is in the set, never drawn", i);
        else
            ASSERT_MSG(g_counts[i] == 0, "token %u is outside the set, drawn "
                       "%u times", i, g_counts[i]);
    }
}

static void ref_kept(const float *x, uint32_t n, double t, double min_p,
                     uint32_t top_k, double top_p, int *keep);

/* Draws with p (as count_draws) give exactly the reference set. */
static void expect_set(sampler_t *s, sampler_params_t p, const float *x,
                       uint32_t n, int draws)
{
    ref_kept(x, n, p.temperature, p.min_p, (uint32_t)p.top_k, p.top_p, g_keep);
    count_draws(s, p, x, n, draws);
    assert_exact_set(g_keep, n);
}

/* Reference probabilities pr [n] = softmax(x / t), in double. */
static void ref_softmax(const float *x, uint32_t n, double t, double *pr)
{
    double m = -INFINITY, z = 0.0;
    for (uint32_t i = 0; i < n; i++)
        m = x[i] > m ? x[i] : m;
    for (uint32_t i = 0; i < n; i++)
        z += pr[i] = exp(((double)x[i] - m) / t);
    for (uint32_t i = 0; i < n; i++)
        pr[i] /= z;
}

/* Ids [n] in rank order: larger x first, ties to the lower id. */
static const float *rank_x;
static int rank_cmp(const void *a, const void *b)
{
    int32_t i = *(const int32_t *)a, j = *(const int32_t *)b;
    if (rank_x[i] != rank_x[j])
        return rank_x[i] > rank_x[j] ? -1 : 1;
    return i < j ? -1 : 1;
}

static int32_t *rank_order(const float *x, uint32_t n)
{
    static int32_t ids[MAX_N];
    for (uint32_t i = 0; i < n; i++)
        ids[i] = (int32_t)i;
    rank_x = x;
    qsort(ids, n, sizeof *ids, rank_cmp);
    return ids;
}

/* The reference set keep [n] for min_p, then top_k, then top_p over what
 * is left, at temperature t (engine/sampler.h, step 5). */
static void ref_kept(const float *x, uint32_t n, double t, double min_p,
                     uint32_t top_k, double top_p, int *keep)
{
    static double pr[MAX_N];
    ref_softmax(x, n, t, pr);
    int32_t *ids = rank_order(x, n);
    double pmax = pr[ids[0]], mass = 0.0, cum = 0.0;
    uint32_t kept = 0;
    for (uint32_t r = 0; r < n; r++) {
        int32_t i = ids[r];
        keep[i] = pr[i] >= min_p * pmax && pr[i] > 0.0 &&
                  (top_k == 0 || kept < top_k);
        kept += (uint32_t)keep[i];
        mass += keep[i] ? pr[i] : 0.0;
    }
    for (uint32_t r = 0; r < n && top_p < 1.0; r++) {
        int32_t i = ids[r];
        if (keep[i] && cum >= top_p * mass)
            keep[i] = 0;
        cum += keep[i] ? pr[i] : 0.0;
    }
}

/* A top_p halfway between two consecutive cumulative masses of the rank
 * order, so that rounding cannot move the boundary: the nucleus then
 * holds `len` tokens. */
static float top_p_between(const float *x, uint32_t n, double t, uint32_t len)
{
    static double pr[MAX_N];
    ref_softmax(x, n, t, pr);
    int32_t *ids = rank_order(x, n);
    double cum = 0.0;
    for (uint32_t r = 0; r + 1 < len; r++)
        cum += pr[ids[r]];
    return (float)(cum + 0.5 * pr[ids[len - 1]]);
}

/* Upper 0.1% points of the chi-square distribution (standard tables). */
static double chi2_crit_001(int df)
{
    static const double tab[][2] = { { 4, 18.467 }, { 9, 27.877 },
                                     { 19, 43.820 }, { 22, 48.268 } };
    for (int i = 0; i < 4; i++)
        if (tab[i][0] == df)
            return tab[i][1];
    TEST_FAIL_AT("no critical value tabled for df %d", df);
}

/*
 * Draw per_seed times from each of four fixed seeds (steps 0..per_seed-1)
 * and test the counts against probabilities pr [n]: a token of probability
 * 0 must never come; over the others, the statistic must stay under the
 * p = 0.001 critical value.
 */
static void chi_square(sampler_t *s, sampler_params_t p, const float *x,
                       uint32_t n, const double *pr, int per_seed)
{
    static const uint64_t seeds[4] = { 11, 2024, 987654321, 0xfeedfaceull };
    memset(g_counts, 0, n * sizeof *g_counts);
    for (int k = 0; k < 4; k++) {
        p.seed = seeds[k];
        for (int d = 0; d < per_seed; d++)
            g_counts[draw(s, &p, NULL, x, n, (uint64_t)d, NULL)]++;
    }
    double chi2 = 0.0;
    int df = -1;
    for (uint32_t i = 0; i < n; i++) {
        if (pr[i] == 0.0) {
            ASSERT_MSG(g_counts[i] == 0, "token %u has probability 0", i);
            continue;
        }
        double e = 4.0 * per_seed * pr[i];
        ASSERT_MSG(e >= 5.0, "expected count %g too small for the test", e);
        chi2 += (g_counts[i] - e) * (g_counts[i] - e) / e;
        df++;
    }
    ASSERT_MSG(chi2 < chi2_crit_001(df), "chi-square %.3f >= %.3f (df %d)",
               chi2, chi2_crit_001(df), df);
}

static int32_t argmax(const float *x, uint32_t n)
{
    int32_t am = 0;
    for (uint32_t i = 1; i < n; i++)
        am = x[i] > x[am] ? (int32_t)i : am;
    return am;
}

/* ------------------------------------------------------------------ */
/* Greedy, top-k, top-p and min-p                                      */
/* ------------------------------------------------------------------ */

TEST(greedy_is_argmax_lowest_id_and_top_k_1_equals_it)
{
    uint32_t n = 1000;
    sampler_t *s = make_sampler(n);
    float *x = fill_random(g_x, n, -8.0, 8.0);
    x[503] = x[17] = 9.5f;      /* a tie for the maximum */
    sampler_params_t p = defaults();
    p.temperature = 0.0f;
    for (uint64_t seed = 0; seed < 20; seed++) {
        p.seed = seed;
        ASSERT_EQ_INT(draw(s, &p, NULL, x, n, seed, NULL), 17);
    }
    const float temps[] = { 0.05f, 0.7f, 1.0f, 2.0f };
    p.top_k = 1;
    for (int t = 0; t < 4; t++) {
        p.temperature = temps[t];
        for (uint64_t seed = 0; seed < 200; seed++) {
            p.seed = seed * 7919;
            ASSERT_EQ_INT(draw(s, &p, NULL, x, n, seed, NULL), 17);
        }
    }
    /* Fresh logits without ties: greedy and top_k 1 both give the argmax. */
    for (int trial = 0; trial < 30; trial++) {
        fill_random(x, n, -20.0, 20.0);
        p = defaults();
        p.top_k = 1;
        p.temperature = 1.5f;
        p.seed = (uint64_t)trial;
        ASSERT_EQ_INT(draw(s, &p, NULL, x, n, 3, NULL), argmax(x, n));
        p.top_k = 0;
        p.temperature = 0.0f;
        ASSERT_EQ_INT(draw(s, &p, NULL, x, n, 3, NULL), argmax(x, n));
        /* A temperature so small that 1 / T overflows: still the argmax. */
        p.temperature = 1e-30f;
        p.top_p = trial % 2 ? 0.5f : 1.0f;
        ASSERT_EQ_INT(draw(s, &p, NULL, x, n, 3, NULL), argmax(x, n));
    }
    sampler_destroy(s);
}

TEST(top_k_keeps_exactly_the_best_k)
{
    /* Small k (the heap): five of six heavy tokens at scattered ids. */
    uint32_t n = 200;
    sampler_t *s = make_sampler(n);
    float *x = fill_random(g_x, n, -6.0, -2.0);
    const int32_t heavy[6] = { 150, 3, 77, 199, 42, 120 };
    for (int i = 0; i < 6; i++)
        x[heavy[i]] = 2.0f - 0.25f * (float)i;
    sampler_params_t p = defaults();
    p.top_k = 5;
    p.temperature = 1.3f;
    expect_set(s, p, x, n, 3000);
    for (int i = 0; i < 6; i++)
        ASSERT_EQ_INT(g_keep[heavy[i]], i < 5);
    /* Rising logits: every token displaces the weakest of the heap. */
    for (uint32_t i = 0; i < n; i++)
        x[i] = 0.01f * (float)i;
    p.top_k = 10;
    expect_set(s, p, x, n, 3000);
    sampler_destroy(s);

    /* Large k (the radix selection), ties at the boundary: 400 tokens near
     * 10 in 50 distinct values, the rest far below; the best 300 stay,
     * the lower ids first among equals. */
    n = 5000;
    s = make_sampler(n);
    fill_random(x, n, -30.0, -20.0);
    for (uint32_t i = 0; i < 400; i++)
        x[(i * 37 + 11) % n] = 10.0f + 0.002f * (float)(i % 50);
    p.top_k = 300;
    p.temperature = 0.9f;
    expect_set(s, p, x, n, 12000);
    sampler_destroy(s);
}

TEST(top_p_keeps_exactly_the_nucleus)
{
    /* Known probabilities at shuffled ids: 0.35 + 0.25 < 0.7 <= + 0.15. */
    const double probs[6] = { 0.35, 0.25, 0.15, 0.10, 0.08, 0.07 };
    const int32_t at[6] = { 4, 0, 5, 2, 1, 3 };
    float *x = g_x;
    for (int i = 0; i < 6; i++)
        x[at[i]] = (float)log(probs[i]);
    sampler_t *s = make_sampler(6);
    sampler_params_t p = defaults();
    p.top_p = 0.7f;
    const int keep[6] = { 1, 0, 0, 0, 1, 1 };   /* ids 4, 0, 5 */
    count_draws(s, p, x, 6, 2000);
    assert_exact_set(keep, 6);
    /* At T = 0.5 the probabilities are squared and renormalised
     * (.535, .273, .098, ...): 0.8 needs the first two (.535 < .8 <= .809). */
    p.temperature = 0.5f;
    p.top_p = 0.8f;
    expect_set(s, p, x, 6, 2000);
    ASSERT(g_keep[4] && g_keep[0] && !g_keep[5]);
    sampler_destroy(s);

    /* A large vocabulary: 20 heavy tokens over 50000 light ones. */
    uint32_t n = 50000;
    s = make_sampler(n);
    fill_random(x, n, -12.0, -4.0);
    for (int i = 0; i < 20; i++)
        x[(uint32_t)i * 2477 + 5] = (float)(6.0 - 0.08 * i);
    p = defaults();
    p.temperature = 0.8f;
    p.top_p = top_p_between(x, n, 0.8, 12);
    expect_set(s, p, x, n, 3000);
    /* top_k first, then top_p renormalised over the k kept. */
    p.top_k = 15;
    p.top_p = 0.5f;
    expect_set(s, p, x, n, 3000);
    sampler_destroy(s);

    /* A flat distribution: the nucleus holds 1500 tokens, too many for the
     * heap, so the radix selection finds it; ties among 97 values. */
    n = 4000;
    s = make_sampler(n);
    for (uint32_t i = 0; i < n; i++)
        x[i] = 0.004f * (float)((i * 31) % 97);
    p = defaults();
    p.top_p = top_p_between(x, n, 1.0, 1500);
    expect_set(s, p, x, n, 40000);
    sampler_destroy(s);
}

TEST(min_p_keeps_exactly_the_right_set)
{
    uint32_t n = 30;
    sampler_t *s = make_sampler(n);
    float *x = fill_random(g_x, n, -3.0, 1.0);
    const double temps[2] = { 1.0, 0.7 };
    for (int t = 0; t < 2; t++) {
        /* min_p halfway between the 6th and 7th largest p_i / p_max */
        double pr[30];
        ref_softmax(x, n, temps[t], pr);
        int32_t *ids = rank_order(x, n);
        sampler_params_t p = defaults();
        p.temperature = (float)temps[t];
        p.min_p = (float)(0.5 * (pr[ids[5]] + pr[ids[6]]) / pr[ids[0]]);
        expect_set(s, p, x, n, 3000);
        int kept = 0;
        for (uint32_t i = 0; i < n; i++)
            kept += g_keep[i];
        ASSERT_EQ_INT(kept, 6);
    }
    sampler_destroy(s);

    /* min_p, then top_k, then top_p over what is left. */
    n = 3000;
    s = make_sampler(n);
    fill_random(x, n, -10.0, 0.0);
    for (int i = 0; i < 40; i++)
        x[(uint32_t)i * 61 + 7] = (float)(3.0 - 0.05 * i);
    sampler_params_t p = defaults();
    p.temperature = 1.2f;
    p.min_p = 0.25f;    /* keeps heavy tokens down to 3.0 - 1.2 ln 4 */
    p.top_k = 30;
    p.top_p = 0.6f;
    expect_set(s, p, x, n, 4000);
    /* min_p alone over the whole vocabulary. */
    p.top_k = 0;
    p.top_p = 1.0f;
    expect_set(s, p, x, n, 4000);
    sampler_destroy(s);
}

/* ------------------------------------------------------------------ */
/* Penalties, bias and seeds                                           */
/* ------------------------------------------------------------------ */

/* The reference processed logit (engine/sampler.h, steps 1-3). */
static double ref_processed(double x, double bias, int seen, uint32_t count,
                            const sampler_params_t *p)
{
    x += bias;
    if (seen)
        x = x > 0 ? x / p->repetition_penalty : x * p->repetition_penalty;
    return x - (count > 0 ? p->presence_penalty : 0.0) -
           p->frequency_penalty * (double)count;
}

/* A request with a prompt and seven generated tokens; in_prompt and count
 * [n] say what the reference should see. */
static void make_seq(sampler_seq_t *seq, uint32_t n, int *in_prompt,
                     uint32_t *count)
{
    static const int32_t prompt[] = { 3, 5, 5, 7, 40, 3 };
    static const int32_t gen[] = { 5, 9, 9, 9, 11, 63, 9 };
    char err[ERR_MSG_MAX];
    ASSERT_EQ_INT(sampler_seq_init(seq, n, 64, err, sizeof err), 0);
    ASSERT_EQ_INT(sampler_seq_add_prompt(seq, prompt, 6), 0);
    memset(in_prompt, 0, n * sizeof *in_prompt);
    memset(count, 0, n * sizeof *count);
    for (int i = 0; i < 6; i++)
        in_prompt[prompt[i]] = 1;
    for (int i = 0; i < 7; i++) {
        ASSERT_EQ_INT(sampler_seq_accept(seq, gen[i]), 0);
        count[gen[i]]++;
    }
}

TEST(penalties_change_exactly_the_right_logits)
{
    uint32_t n = 64;
    float *x = fill_random(g_x, n, -4.0, 4.0), y[64];
    x[5] = 2.5f;
    x[9] = -1.5f;       /* both signs among the penalised */
    int in_prompt[64];
    uint32_t count[64];
    sampler_seq_t seq;
    make_seq(&seq, n, in_prompt, count);
    const sampler_bias_t bias[2] = { { 7, 1.5f }, { 20, -3.0f } };
    /* Each penalty alone, then all together: rep, presence, frequency. */
    const float cfg[4][3] = { { 1.3f, 0.0f, 0.0f }, { 1.0f, 0.5f, 0.0f },
                              { 1.0f, 0.0f, 0.25f }, { 1.7f, -0.6f, 0.4f } };
    for (int c = 0; c < 4; c++) {
        sampler_params_t p = defaults();
        p.repetition_penalty = cfg[c][0];
        p.presence_penalty = cfg[c][1];
        p.frequency_penalty = cfg[c][2];
        p.logit_bias = bias;
        p.n_logit_bias = 2;
        memcpy(y, x, sizeof y);
        sampler_process_logits(&p, &seq, y, n);
        for (uint32_t i = 0; i < n; i++) {
            double b = i == 7 ? 1.5 : i == 20 ? -3.0 : 0.0;
            double want = ref_processed(x[i], b, in_prompt[i] || count[i] > 0,
                                        count[i], &p);
            if (want == (double)x[i])
                ASSERT_MSG(y[i] == x[i], "token %u changed: %.9g -> %.9g",
                           i, x[i], y[i]);
            else
                ASSERT_NEAR(y[i], want, 1e-6 * (1.0 + fabs(want)));
        }
        /* The windows, spelled out: presence and frequency see generated
         * tokens only (3 and 40 are prompt-only); repetition sees both. */
        if (c == 1 || c == 2)
            ASSERT(y[3] == x[3] && y[40] == x[40] && y[9] != x[9]);
        if (c == 0)
            ASSERT(y[3] != x[3] && y[63] != x[63] && y[10] == x[10]);
    }
    /* Without a seq: the bias alone. */
    sampler_params_t p = defaults();
    p.repetition_penalty = 2.0f;
    p.logit_bias = bias;
    p.n_logit_bias = 2;
    memcpy(y, x, sizeof y);
    sampler_process_logits(&p, NULL, y, n);
    for (uint32_t i = 0; i < n; i++)
        ASSERT(i == 7 || i == 20 ? y[i] != x[i] : y[i] == x[i]);
    sampler_seq_close(&seq);
}

TEST(logit_bias_minus_100_bans_plus_100_forces)
{
    uint32_t n = 50;
    sampler_t *s = make_sampler(n);
    float *x = fill_random(g_x, n, -5.0, 5.0);
    int32_t am = argmax(x, n);
    sampler_bias_t ban[2] = { { am, -100.0f }, { 7, -100.0f } };
    sampler_params_t p = defaults();
    p.logit_bias = ban;
    p.n_logit_bias = 2;
    p.temperature = 2.0f;
    count_draws(s, p, x, n, 4000);
    ASSERT_EQ_INT(g_counts[am], 0);
    ASSERT_EQ_INT(g_counts[7], 0);
    p.temperature = 0.0f;
    ASSERT(draw(s, &p, NULL, x, n, 0, NULL) != am);

    sampler_bias_t force = { 33, 100.0f };
    p.logit_bias = &force;
    p.n_logit_bias = 1;
    for (int t = 0; t < 3; t++) {
        p.temperature = (float)t;
        count_draws(s, p, x, n, 1000);
        ASSERT_EQ_INT(g_counts[33], 1000);
    }
    sampler_destroy(s);
}

/* A generation of `len` tokens: fresh logits per step, penalties fed back. */
static void generate(sampler_t *s, const sampler_params_t *p, uint32_t n,
                     int len, int32_t *out)
{
    sampler_seq_t seq;
    char err[ERR_MSG_MAX];
    ASSERT_EQ_INT(sampler_seq_init(&seq, n, (uint64_t)len + 8, err, sizeof err), 0);
    const int32_t prompt[3] = { 1, 2, 3 };
    ASSERT_EQ_INT(sampler_seq_add_prompt(&seq, prompt, 3), 0);
    for (int t = 0; t < len; t++) {
        for (uint32_t i = 0; i < n; i++)    /* a fixed function of (t, i) */
            g_x[i] = (float)sin(0.37 * (double)(i * 13 + (uint32_t)t * 7));
        sampler_result_t r;
        ASSERT_EQ_INT(sampler_sample(s, p, &seq, g_x, (uint64_t)t, &r), 0);
        out[t] = r.token;
        ASSERT_EQ_INT(sampler_seq_accept(&seq, r.token), 0);
    }
    sampler_seq_close(&seq);
}

TEST(same_seed_same_tokens_different_seeds_differ)
{
    uint32_t n = 1000;
    sampler_t *s = make_sampler(n), *s2 = make_sampler(n);
    sampler_params_t p = defaults();
    p.top_p = 0.95f;
    p.frequency_penalty = 0.3f;
    p.repetition_penalty = 1.1f;
    p.seed = 42;
    int32_t a[64], b[64], c[64];
    generate(s, &p, n, 64, a);
    generate(s2, &p, n, 64, b);
    ASSERT(memcmp(a, b, sizeof a) == 0);
    p.seed = 43;
    generate(s, &p, n, 64, c);
    ASSERT(memcmp(a, c, sizeof a) != 0);
    ASSERT(sampler_uniform(42, 5) == sampler_uniform(42, 5));
    ASSERT(sampler_uniform(42, 5) != sampler_uniform(43, 5));
    ASSERT(sampler_uniform(42, 5) != sampler_uniform(42, 6));
    sampler_destroy(s);
    sampler_destroy(s2);
    /* The uniform itself: 20 bins over 100000 steps, chi-square df 19. */
    uint32_t counts[20] = { 0 };
    double chi2 = 0.0;
    for (uint64_t t = 0; t < 100000; t++) {
        double u = sampler_uniform(12345, t);
        ASSERT(u >= 0.0 && u < 1.0);
        counts[(int)(u * 20.0)]++;
    }
    for (int i = 0; i < 20; i++)
        chi2 += (counts[i] - 5000.0) * (counts[i] - 5000.0) / 5000.0;
    ASSERT_MSG(chi2 < chi2_crit_001(19), "uniform chi-square %.3f", chi2);
}

TEST(draws_do_not_depend_on_other_requests)
{
    /* Two requests interleaved on one sampler, in another order and with
     * other traffic between their steps, draw what each drew alone. */
    uint32_t n = 500;
    sampler_t *s = make_sampler(n);
    float *x = fill_random(g_x, n, -2.0, 2.0);
    sampler_params_t pa = defaults(), pb = defaults(), noise = defaults();
    pa.seed = 1;
    pb.seed = 2;
    pb.top_k = 50;
    noise.temperature = 1.9f;
    int32_t alone_a[40], alone_b[40];
    for (int t = 0; t < 40; t++)
        alone_a[t] = draw(s, &pa, NULL, x, n, (uint64_t)t, NULL);
    for (int t = 0; t < 40; t++)
        alone_b[t] = draw(s, &pb, NULL, x, n, (uint64_t)t, NULL);
    for (int t = 39; t >= 0; t--) {
        noise.seed = (uint64_t)t * 31;
        (void)draw(s, &noise, NULL, x, n, 99, NULL);
        ASSERT_EQ_INT(draw(s, &pb, NULL, x, n, (uint64_t)t, NULL), alone_b[t]);
        ASSERT_EQ_INT(draw(s, &pa, NULL, x, n, (uint64_t)t, NULL), alone_a[t]);
    }
    sampler_destroy(s);
}

/* ------------------------------------------------------------------ */
/* The distribution drawn from, and log-probabilities                  */
/* ------------------------------------------------------------------ */

TEST(temperature_draws_follow_softmax_chi_square)
{
    /* 20 categories at T = 0.5 and 1.7; 23 at T = 1 (a partial vector). */
    const double temps[3] = { 0.5, 1.0, 1.7 };
    for (int t = 0; t < 3; t++) {
        uint32_t n = t == 1 ? 23 : 20;
        sampler_t *s = make_sampler(n);
        for (uint32_t i = 0; i < n; i++)
            g_x[i] = (float)(sin(1.3 * i) + 0.05 * i);
        double pr[23];
        ref_softmax(g_x, n, temps[t], pr);
        sampler_params_t p = defaults();
        p.temperature = (float)temps[t];
        chi_square(s, p, g_x, n, pr, 5000);
        sampler_destroy(s);
    }
}

TEST(truncated_draws_follow_renormalised_softmax_chi_square)
{
    uint32_t n = 20;
    sampler_t *s = make_sampler(n);
    for (uint32_t i = 0; i < n; i++)
        g_x[i] = (float)(1.2 * cos(0.9 * i));
    /* top_k 5 at T = 0.8: df 4; a top_p that keeps 10: df 9. */
    for (int c = 0; c < 2; c++) {
        sampler_params_t p = defaults();
        p.temperature = 0.8f;
        p.top_k = c == 0 ? 5 : 0;
        p.top_p = c == 0 ? 1.0f : top_p_between(g_x, n, 0.8, 10);
        double pr[20], z = 0.0;
        ref_kept(g_x, n, 0.8, 0.0, (uint32_t)p.top_k, p.top_p, g_keep);
        ref_softmax(g_x, n, 0.8, pr);
        for (uint32_t i = 0; i < n; i++)
            z += pr[i] = g_keep[i] ? pr[i] : 0.0;
        for (uint32_t i = 0; i < n; i++)
            pr[i] /= z;
        chi_square(s, p, g_x, n, pr, 5000);
    }
    sampler_destroy(s);
}

TEST(logprobs_equal_double_log_softmax_of_processed_logits)
{
    static int in_prompt[1003];
    static uint32_t count[1003];
    static double ref[1003];
    static float proc[1003];
    const uint32_t sizes[2] = { 1000, 1003 };
    for (int z = 0; z < 2; z++) {
        uint32_t n = sizes[z];
        sampler_t *s = make_sampler(n);
        float *x = fill_random(g_x, n, -25.0, 25.0);
        sampler_seq_t seq;
        make_seq(&seq, n, in_prompt, count);
        const sampler_bias_t bias[3] = { { 100, 30.0f }, { 5, -7.0f }, { 999, 12.0f } };
        sampler_params_t p = defaults();
        p.repetition_penalty = 1.4f;
        p.presence_penalty = 0.7f;
        p.frequency_penalty = -0.3f;
        p.logit_bias = bias;
        p.n_logit_bias = 3;
        p.n_logprobs = 20;
        /* The reference: processed logits in double, then log_softmax. */
        double m = -INFINITY, sum = 0.0;
        for (uint32_t i = 0; i < n; i++) {
            double b = 0.0;
            for (int k = 0; k < 3; k++)
                b += (uint32_t)bias[k].id == i ? bias[k].bias : 0.0;
            ref[i] = ref_processed(x[i], b, in_prompt[i] || count[i] > 0,
                                   count[i], &p);
            m = ref[i] > m ? ref[i] : m;
        }
        for (uint32_t i = 0; i < n; i++)
            sum += exp(ref[i] - m);
        for (uint32_t i = 0; i < n; i++)
            proc[i] = (float)(ref[i] -= m + log(sum));
        int32_t *ids = rank_order(proc, n);
        for (int t = 0; t < 3; t++) {
            p.temperature = (float)t * 0.6f;
            p.seed = (uint64_t)t + 5;
            sampler_result_t r;
            int32_t tok = draw(s, &p, &seq, x, n, 1, &r);
            ASSERT_NEAR(r.logprob, ref[tok], 1e-5);
            ASSERT_EQ_INT(r.n_top, 20);
            for (int k = 0; k < 20; k++) {
                ASSERT_EQ_INT(r.top[k].id, ids[k]);
                ASSERT_NEAR(r.top[k].logprob, ref[ids[k]], 1e-5);
            }
        }
        sampler_seq_close(&seq);
        sampler_destroy(s);
    }
}

/* ------------------------------------------------------------------ */
/* Edges, validation and state                                         */
/* ------------------------------------------------------------------ */

/* sampler_score: any token's log_softmax over the raw logits, its rank, the top k; a NaN fails. */
TEST(score_is_double_log_softmax_rank_and_top)
{
    const uint32_t n = 5000;
    sampler_t *s = make_sampler(n);
    static float x[MAX_N], copy[MAX_N];
    static double pr[MAX_N];
    for (int round = 0; round < 20; round++) {
        fill_random(x, n, -20.0, 20.0);
        ref_softmax(x, n, 1.0, pr);
        int32_t *order = rank_order(x, n);
        int32_t tok = (int32_t)(rnd() * n);
        memcpy(copy, x, n * sizeof *x);
        sampler_result_t r;
        uint32_t rank = 0;
        ASSERT_EQ_INT(sampler_score(s, copy, tok, 20, &r, &rank), 0);
        ASSERT_EQ_INT(r.token, tok);
        ASSERT_NEAR(r.logprob, log(pr[tok]), 1e-5);
        uint32_t above = 0;
        for (uint32_t i = 0; i < n; i++)
            above += x[i] > x[tok];
        ASSERT_EQ_INT(rank, above + 1);
        ASSERT_EQ_INT(r.n_top, 20);
        for (uint32_t k = 0; k < 20; k++) {
            ASSERT_EQ_INT(r.top[k].id, order[k]);
            ASSERT_NEAR(r.top[k].logprob, log(pr[order[k]]), 1e-5);
        }
    }
    sampler_result_t r;
    ASSERT_EQ_INT(sampler_score(s, x, -1, 0, &r, NULL), ERR_INVALID);
    ASSERT_EQ_INT(sampler_score(s, x, 0, 21, &r, NULL), ERR_INVALID);
    x[7] = NAN;
    ASSERT_EQ_INT(sampler_score(s, x, 0, 0, &r, NULL), ERR_RANGE);
    sampler_destroy(s);
}

TEST(vocabulary_of_one)
{
    sampler_t *s = make_sampler(1);
    float x[1] = { -3.25f };
    sampler_params_t p = defaults();
    p.n_logprobs = 5;
    p.top_p = 0.1f;
    p.min_p = 0.9f;
    p.top_k = 40;
    for (int t = 0; t < 3; t++) {
        sampler_result_t r;
        p.temperature = (float)t * 0.9f;
        ASSERT_EQ_INT(draw(s, &p, NULL, x, 1, (uint64_t)t, &r), 0);
        ASSERT_NEAR(r.logprob, 0.0, 1e-7);
        ASSERT_EQ_INT(r.n_top, 1);
        ASSERT_EQ_INT(r.top[0].id, 0);
    }
    sampler_destroy(s);
}

TEST(all_equal_logits)
{
    uint32_t n = 10;
    sampler_t *s = make_sampler(n);
    float x[10];
    for (uint32_t i = 0; i < n; i++)
        x[i] = 0.75f;
    sampler_params_t p = defaults();
    p.temperature = 0.0f;
    p.n_logprobs = 4;
    sampler_result_t r;
    ASSERT_EQ_INT(draw(s, &p, NULL, x, n, 0, &r), 0);
    ASSERT_NEAR(r.logprob, -log(10.0), 1e-6);
    for (int k = 0; k < 4; k++) {
        ASSERT_EQ_INT(r.top[k].id, k);
        ASSERT_NEAR(r.top[k].logprob, -log(10.0), 1e-6);
    }
    /* top_p 0.5 keeps the five lowest ids (mass 0.5 exactly); top_k 3
     * keeps 0, 1, 2; untruncated, the draw is uniform over all ten. */
    p.temperature = 1.0f;
    p.top_p = 0.5f;
    const int keep5[10] = { 1, 1, 1, 1, 1, 0, 0, 0, 0, 0 };
    count_draws(s, p, x, n, 1000);
    assert_exact_set(keep5, n);
    p.top_p = 1.0f;
    p.top_k = 3;
    const int keep3[10] = { 1, 1, 1, 0, 0, 0, 0, 0, 0, 0 };
    count_draws(s, p, x, n, 1000);
    assert_exact_set(keep3, n);
    p.top_k = 0;
    const double pr[10] = { .1, .1, .1, .1, .1, .1, .1, .1, .1, .1 };
    chi_square(s, p, x, n, pr, 1000);
    sampler_destroy(s);
}

TEST(infinite_and_nan_logits)
{
    uint32_t n = 40;
    sampler_t *s = make_sampler(n);
    float *x = fill_random(g_x, n, -1.0, 1.0), y[40];
    for (uint32_t i = 0; i < n; i += 3)
        x[i] = -INFINITY;
    sampler_params_t p = defaults();
    p.temperature = 1.8f;
    p.n_logprobs = 20;
    sampler_result_t r;
    (void)draw(s, &p, NULL, x, n, 0, &r);
    ASSERT_EQ_INT(r.n_top, 20);
    for (uint32_t k = 0; k < r.n_top; k++)
        ASSERT(r.top[k].id % 3 != 0 && isfinite(r.top[k].logprob));
    for (int c = 0; c < 2; c++) {   /* untruncated, then truncated */
        p.top_p = c ? 0.9f : 1.0f;
        p.min_p = c ? 0.01f : 0.0f;
        count_draws(s, p, x, n, 2000);
        for (uint32_t i = 0; i < n; i += 3)
            ASSERT_EQ_INT(g_counts[i], 0);
    }
    /* One finite token among -inf: always it, with probability 1, and
     * fewer alternatives than asked. */
    for (uint32_t i = 0; i < n; i++)
        y[i] = -INFINITY;
    y[29] = -5.0f;
    ASSERT_EQ_INT(draw(s, &p, NULL, y, n, 3, &r), 29);
    ASSERT_NEAR(r.logprob, 0.0, 1e-7);
    ASSERT_EQ_INT(r.n_top, 1);
    /* All -inf, or a NaN: an error, not a token. */
    y[29] = -INFINITY;
    ASSERT_EQ_INT(sampler_sample(s, &p, NULL, y, 0, &r), ERR_RANGE);
    memcpy(y, x, sizeof y);
    y[17] = NAN;
    ASSERT_EQ_INT(sampler_sample(s, &p, NULL, y, 0, &r), ERR_RANGE);
    /* +inf: that token is certain. */
    memcpy(y, x, sizeof y);
    y[11] = INFINITY;
    ASSERT_EQ_INT(sampler_sample(s, &p, NULL, y, 0, &r), 0);
    ASSERT_EQ_INT(r.token, 11);
    ASSERT_NEAR(r.logprob, 0.0, 1e-7);
    sampler_destroy(s);
}

/* The message starts "<field>:" and shows the bad value. */
static void expect_rejected(const sampler_params_t *p, const char *field,
                            const char *value)
{
    char err[ERR_MSG_MAX] = "";
    int rc = sampler_params_validate(p, 1000, err, sizeof err);
    size_t len = strlen(field);
    ASSERT_MSG(rc == ERR_RANGE, "%s: rc %d, message \"%s\"", field, rc, err);
    ASSERT_MSG(strncmp(err, field, len) == 0 && err[len] == ':',
               "message \"%s\" does not start with \"%s:\"", err, field);
    ASSERT_MSG(strstr(err, value) != NULL, "message \"%s\" lacks \"%s\"", err, value);
}

TEST(validation_names_the_bad_field)
{
    const sampler_params_t p = defaults();
    sampler_params_t q;
    char err[ERR_MSG_MAX];
    ASSERT_EQ_INT(sampler_params_validate(&p, 1000, err, sizeof err), 0);

    q = p; q.temperature = 3.5f; expect_rejected(&q, "temperature", "3.5 is out of range [0, 2]");
    q = p; q.temperature = -0.1f; expect_rejected(&q, "temperature", "-0.1");
    q = p; q.temperature = NAN; expect_rejected(&q, "temperature", "nan");
    q = p; q.top_k = -1; expect_rejected(&q, "top_k", "-1");
    q = p; q.top_p = 0.0f; expect_rejected(&q, "top_p", "0");
    q = p; q.top_p = 1.01f; expect_rejected(&q, "top_p", "1.01");
    q = p; q.top_p = NAN; expect_rejected(&q, "top_p", "nan");
    q = p; q.min_p = -0.5f; expect_rejected(&q, "min_p", "-0.5");
    q = p; q.min_p = NAN; expect_rejected(&q, "min_p", "nan");
    q = p; q.repetition_penalty = 0.0f; expect_rejected(&q, "repetition_penalty", "0");
    q = p; q.repetition_penalty = 11.0f; expect_rejected(&q, "repetition_penalty", "11");
    q = p; q.repetition_penalty = NAN; expect_rejected(&q, "repetition_penalty", "nan");
    q = p; q.presence_penalty = 2.5f; expect_rejected(&q, "presence_penalty", "2.5");
    q = p; q.presence_penalty = -INFINITY; expect_rejected(&q, "presence_penalty", "inf");
    q = p; q.frequency_penalty = -2.5f; expect_rejected(&q, "frequency_penalty", "-2.5");
    q = p; q.frequency_penalty = NAN; expect_rejected(&q, "frequency_penalty", "nan");
    q = p; q.n_logprobs = 21; expect_rejected(&q, "top_logprobs", "21");

    sampler_bias_t many[301];
    for (int i = 0; i < 301; i++)
        many[i] = (sampler_bias_t){ i, 1.0f };
    q = p; q.logit_bias = many; q.n_logit_bias = 301;
    expect_rejected(&q, "logit_bias", "301");
    q.n_logit_bias = 300;       /* the limit itself is fine */
    ASSERT_EQ_INT(sampler_params_validate(&q, 1000, err, sizeof err), 0);
    const sampler_bias_t bad[4] = { { 1000, 1.0f }, { -1, 1.0f },
                                    { 5, 100.5f }, { 5, NAN } };
    const char *shown[4] = { "1000", "-1", "100.5", "nan" };
    q.n_logit_bias = 1;
    for (int i = 0; i < 4; i++) {
        q.logit_bias = &bad[i];
        expect_rejected(&q, "logit_bias", shown[i]);
    }
    q.logit_bias = NULL;
    ASSERT_EQ_INT(sampler_params_validate(&q, 1000, err, sizeof err), ERR_INVALID);
    ASSERT_EQ_INT(sampler_params_validate(NULL, 1000, err, sizeof err), ERR_INVALID);

    /* The ends of every range pass; top_k past n_vocab does too. */
    const sampler_bias_t edge[2] = { { 0, -100.0f }, { 999, 100.0f } };
    q = p;
    q.temperature = 2.0f; q.top_k = 1 << 30; q.top_p = 1.0f; q.min_p = 1.0f;
    q.repetition_penalty = 10.0f; q.presence_penalty = -2.0f;
    q.frequency_penalty = 2.0f; q.n_logprobs = 20;
    q.logit_bias = edge; q.n_logit_bias = 2;
    ASSERT_EQ_INT(sampler_params_validate(&q, 1000, NULL, 0), 0);
    q.temperature = 0.0f; q.min_p = 0.0f;
    ASSERT_EQ_INT(sampler_params_validate(&q, 1000, NULL, 0), 0);

    /* sampler_sample refuses what validation refuses. */
    sampler_t *s = make_sampler(1000);
    sampler_result_t r;
    q = p; q.top_p = 2.0f;
    ASSERT_EQ_INT(sampler_sample(s, &q, NULL, fill_random(g_x, 1000, -1, 1), 0, &r),
                  ERR_INVALID);
    sampler_destroy(s);
}

TEST(sequence_state_limits)
{
    char err[ERR_MSG_MAX];
    sampler_seq_t seq;
    ASSERT_EQ_INT(sampler_seq_init(&seq, 0, 10, err, sizeof err), ERR_INVALID);
    sampler_seq_close(&seq);
    ASSERT_EQ_INT(sampler_seq_init(&seq, 100, 4, err, sizeof err), 0);
    ASSERT_EQ_INT(sampler_seq_accept(&seq, 100), ERR_RANGE);
    ASSERT_EQ_INT(sampler_seq_accept(&seq, -1), ERR_RANGE);
    const int32_t prompt[4] = { 1, 2, 2, 3 };
    ASSERT_EQ_INT(sampler_seq_add_prompt(&seq, prompt, 4), 0);
    ASSERT_EQ_INT(sampler_seq_accept(&seq, 3), 0);     /* known: no room needed */
    ASSERT_EQ_INT(sampler_seq_accept(&seq, 50), 0);
    ASSERT_EQ_INT(sampler_seq_accept(&seq, 51), ERR_FULL);
    sampler_seq_reset(&seq);
    ASSERT_EQ_INT(seq.n_toks, 0);
    ASSERT_EQ_INT(sampler_seq_accept(&seq, 51), 0);
    sampler_seq_close(&seq);
    ASSERT(seq.toks == NULL && seq.slots == NULL);
    sampler_seq_close(&seq);    /* twice is fine */

    /* Capacity is min(max_tokens, n_vocab): every id fits; repeats count. */
    ASSERT_EQ_INT(sampler_seq_init(&seq, 3000, UINT64_MAX, err, sizeof err), 0);
    for (int32_t i = 2999; i >= 0; i--)
        ASSERT_EQ_INT(sampler_seq_accept(&seq, i), 0);
    ASSERT_EQ_INT(sampler_seq_accept(&seq, 1234), 0);
    ASSERT_EQ_INT(seq.n_toks, 3000);
    for (uint32_t i = 0; i < seq.n_toks; i++)
        ASSERT_EQ_INT(seq.toks[i].count, seq.toks[i].id == 1234 ? 2 : 1);

    /* A seq built for another vocabulary, or a NULL argument, is refused. */
    sampler_t *s = make_sampler(100);
    sampler_params_t p = defaults();
    sampler_result_t r;
    ASSERT_EQ_INT(sampler_sample(s, &p, &seq, fill_random(g_x, 100, 0, 1), 0, &r),
                  ERR_INVALID);
    ASSERT_EQ_INT(sampler_sample(s, &p, NULL, NULL, 0, &r), ERR_INVALID);
    sampler_seq_close(&seq);
    sampler_destroy(s);
    ASSERT_EQ_INT(sampler_create(&s, 0, err, sizeof err), ERR_INVALID);
    ASSERT(s == NULL);
}

TEST_LIST(T(greedy_is_argmax_lowest_id_and_top_k_1_equals_it),
          T(top_k_keeps_exactly_the_best_k),
          T(top_p_keeps_exactly_the_nucleus),
          T(min_p_keeps_exactly_the_right_set),
          T(penalties_change_exactly_the_right_logits),
          T(logit_bias_minus_100_bans_plus_100_forces),
          T(same_seed_same_tokens_different_seeds_differ),
          T(draws_do_not_depend_on_other_requests),
          T(temperature_draws_follow_softmax_chi_square),
          T(truncated_draws_follow_renormalised_softmax_chi_square),
          T(logprobs_equal_double_log_softmax_of_processed_logits),
          T(score_is_double_log_softmax_rank_and_top),
          T(vocabulary_of_one),
          T(all_equal_logits),
          T(infinite_and_nan_logits),
          T(validation_names_the_bad_field),
          T(sequence_state_limits))
