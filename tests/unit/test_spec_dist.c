/*
 * test_spec_dist.c - speculative decoding keeps the sampling distribution
 * (issue 19, item 4; docs/ENGINE.md, "Speculative decoding").
 *
 * test_engine.c checks that each seed gives the same tokens with and
 * without speculation.  This file checks the property that matters to a
 * client even where per-seed identity is not what a sampler promises:
 * the distribution of the sampled output.  A tiny random-weight model with
 * a 16-token vocabulary is written as a Hugging Face directory (config,
 * byte-level BPE tokenizer, F32 safetensors; the engine opens models by
 * path, and a vocabulary this small puts enough mass on every outcome),
 * and its prompt repeats one pattern so that prompt lookup proposes a
 * draft at every decode and the drafts are both accepted and rejected.
 *
 *   - two-sample chi-square test of homogeneity: the first three tokens
 *     of N runs with speculation (seeds 0..N-1) against N runs without it
 *     (seeds N..2N-1, a different set, so that the comparison is of
 *     distributions, not of seeds);
 *   - goodness of fit: the first two tokens of the speculative runs
 *     against the model's exact joint probability p(t1) p(t2 | t1), read
 *     from the log-softmax of the logits (top_logprobs covering the whole
 *     vocabulary) of separate non-speculative requests.
 *
 * Each fails at p < 1e-3.  The seeds are fixed, so every run gives the
 * same statistics (only the draft counts vary with the steps' timing): a
 * correct sampler fails a test with probability 1e-3 over the choice of
 * seed sets, once, not at random on some later run; the two tests
 * together, at most 2e-3.  The p-values are computed here (regularized
 * upper incomplete gamma), checked against tabulated quantiles.
 *
 * Power: a wrong acceptance rule that, on a rejected draft, draws again
 * from p instead of from the residual (token x then comes out with
 * probability p(x)(2 - p(x))) fails both tests at p < 1e-200; the same
 * error made on only a quarter of the rejections fails both (p ~ 1e-6
 * and 1e-15) with N_RUNS = 16000 runs per side; with 8000 the homogeneity
 * test misses it (p 0.015) and the fit only just catches it (p ~ 1e-3).
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "engine.h"
#include "base/err.h"
#include "test.h"

/* ---------------------------------------------------------------- chi-square p-value */

/*
 * Q(a, x) = Gamma(a, x) / Gamma(a), the regularized upper incomplete
 * gamma function, for a > 0, x >= 0.  Below x = a + 1 the series of
 * P(a, x) = x^a e^-x / Gamma(a + 1) * sum_n x^n / ((a+1)...(a+n)) converges
 * fast and Q = 1 - P; above it, the continued fraction of Q (modified
 * Lentz).  Both loops are bounded; 1e-15 relative is far below what a
 * test threshold needs.
 */
static double gamma_q(double a, double x)
{
    if (x <= 0.0)
        return 1.0;
    double lead = a * log(x) - x - lgamma(a);
    if (x < a + 1.0) {
        double term = 1.0 / a, sum = term;
        for (int n = 1; n < 1000 && fabs(term) > fabs(sum) * 1e-15; n++) {
            term *= x / (a + n);
            sum += term;
        }
        return 1.0 - sum * exp(lead);
    }
    const double tiny = 1e-300;
    double b = x + 1.0 - a, c = 1.0 / tiny, d = 1.0 / b, h = d;
    for (int i = 1; i < 1000; i++) {
        double an = -i * (i - a);
        b += 2.0;
        d = an * d + b;
        if (fabs(d) < tiny)
            d = tiny;
        c = b + an / c;
        if (fabs(c) < tiny)
            c = tiny;
        d = 1.0 / d;
        double delta = d * c;
        h *= delta;
        if (fabs(delta - 1.0) < 1e-15)
            break;
    }
    return exp(lead) * h;
}

/* P(X >= stat) for X chi-square with df degrees of freedom (df >= 1). */
static double chi2_sf(double stat, unsigned df)
{
    return gamma_q(df / 2.0, stat / 2.0);
}

/* Against tabulated upper quantiles (e.g. NIST/SEMATECH's chi-square table). */
TEST(chi2_sf_known_values)
{
    static const struct { double x; unsigned df; double p; } k[] = {
        { 3.841459, 1, 0.05 },   { 6.634897, 1, 0.01 },   { 10.827566, 1, 0.001 },
        { 5.991465, 2, 0.05 },   { 9.487729, 4, 0.05 },   { 18.307038, 10, 0.05 },
        { 29.588298, 10, 0.001 }, { 124.342113, 100, 0.05 }, { 0.454936, 1, 0.5 },
        { 9.341818, 10, 0.5 },
    };
    for (size_t i = 0; i < sizeof k / sizeof k[0]; i++) {
        double p = chi2_sf(k[i].x, k[i].df);
        ASSERT_MSG(fabs(p - k[i].p) < 1e-5 * (1.0 + k[i].p / 1e-3),
                   "chi2_sf(%g, %u) = %.8f, want %.8f", k[i].x, k[i].df, p, k[i].p);
    }
    /* two degrees of freedom: exactly exp(-x/2) */
    for (double x = 0.5; x < 60.0; x *= 1.7)
        ASSERT_MSG(fabs(chi2_sf(x, 2) / exp(-x / 2.0) - 1.0) < 1e-12, "chi2_sf(%g, 2)", x);
    ASSERT(chi2_sf(0.0, 3) == 1.0);
}

/* ---------------------------------------------------------------- the model */

#define V      16      /* vocabulary: "a".."o", then <eos> */
#define DIM    32
#define HEADS  2
#define KVH    1
#define HDIM   16
#define FF     64
#define CTX    64
#define LM_STD 0.35    /* lm_head weights: logits of std ~2, a peaked but not degenerate p */

static uint64_t rng_state;

static uint64_t next_u64(void)
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static float normal(void) /* Box-Muller */
{
    double u1 = ((next_u64() >> 11) + 1.0) / 9007199254740993.0;
    double u2 = (next_u64() >> 11) / 9007199254740992.0;
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

static void write_text(const char *dir, const char *name, const char *text)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    ASSERT_MSG(f != NULL && fputs(text, f) >= 0 && fclose(f) == 0, "cannot write %s", path);
}

typedef struct {
    char name[64];
    uint32_t ne0, ne1; /* HF shape [ne1, ne0]: ne0 innermost; ne1 0 for a vector */
    float std;         /* weights N(0, std^2); 0: a norm vector, all 1 */
} wspec_t;

/* config.json, tokenizer.json and model.safetensors of a 1-layer LLaMA in dir. */
static void write_model(const char *dir)
{
    char buf[2048];
    snprintf(buf, sizeof buf,
             "{\"model_type\":\"llama\",\"vocab_size\":%d,\"hidden_size\":%d,"
             "\"intermediate_size\":%d,\"num_hidden_layers\":1,\"num_attention_heads\":%d,"
             "\"num_key_value_heads\":%d,\"max_position_embeddings\":%d,\"rms_norm_eps\":1e-5,"
             "\"rope_theta\":10000.0,\"tie_word_embeddings\":false,\"hidden_act\":\"silu\","
             "\"eos_token_id\":%d}", V, DIM, FF, HEADS, KVH, CTX, V - 1);
    write_text(dir, "config.json", buf);
    int n = snprintf(buf, sizeof buf, "{\"model\":{\"type\":\"BPE\",\"vocab\":{");
    for (int i = 0; i < V - 1; i++)
        n += snprintf(buf + n, sizeof buf - (size_t)n, "\"%c\":%d,", 'a' + i, i);
    snprintf(buf + n, sizeof buf - (size_t)n,
             "\"<eos>\":%d},\"merges\":[]},\"added_tokens\":[{\"id\":%d,\"content\":\"<eos>\","
             "\"special\":true}],\"pre_tokenizer\":{\"type\":\"ByteLevel\",\"add_prefix_space\":false},"
             "\"decoder\":{\"type\":\"ByteLevel\"}}", V - 1, V - 1);
    write_text(dir, "tokenizer.json", buf);

    wspec_t w[12];
    size_t nw = 0;
    w[nw++] = (wspec_t){ "model.embed_tokens.weight", DIM, V, 1.0f };
    w[nw++] = (wspec_t){ "model.layers.0.input_layernorm.weight", DIM, 0, 0.0f };
    w[nw++] = (wspec_t){ "model.layers.0.self_attn.q_proj.weight", DIM, HEADS * HDIM, 0.177f };
    w[nw++] = (wspec_t){ "model.layers.0.self_attn.k_proj.weight", DIM, KVH * HDIM, 0.177f };
    w[nw++] = (wspec_t){ "model.layers.0.self_attn.v_proj.weight", DIM, KVH * HDIM, 0.177f };
    w[nw++] = (wspec_t){ "model.layers.0.self_attn.o_proj.weight", HEADS * HDIM, DIM, 0.177f };
    w[nw++] = (wspec_t){ "model.layers.0.post_attention_layernorm.weight", DIM, 0, 0.0f };
    w[nw++] = (wspec_t){ "model.layers.0.mlp.gate_proj.weight", DIM, FF, 0.177f };
    w[nw++] = (wspec_t){ "model.layers.0.mlp.up_proj.weight", DIM, FF, 0.177f };
    w[nw++] = (wspec_t){ "model.layers.0.mlp.down_proj.weight", FF, DIM, 0.125f };
    w[nw++] = (wspec_t){ "model.norm.weight", DIM, 0, 0.0f };
    w[nw++] = (wspec_t){ "lm_head.weight", DIM, V, (float)LM_STD };

    /* header: {"name":{"dtype":"F32","shape":[..],"data_offsets":[a,b]},...}, padded to 8 */
    char hdr[4096];
    uint64_t off = 0;
    n = snprintf(hdr, sizeof hdr, "{");
    for (size_t i = 0; i < nw; i++) {
        uint64_t bytes = (uint64_t)w[i].ne0 * (w[i].ne1 ? w[i].ne1 : 1) * 4;
        if (w[i].ne1)
            n += snprintf(hdr + n, sizeof hdr - (size_t)n, "%s\"%s\":{\"dtype\":\"F32\",\"shape\":[%u,%u],",
                          i ? "," : "", w[i].name, w[i].ne1, w[i].ne0);
        else
            n += snprintf(hdr + n, sizeof hdr - (size_t)n, "%s\"%s\":{\"dtype\":\"F32\",\"shape\":[%u],",
                          i ? "," : "", w[i].name, w[i].ne0);
        n += snprintf(hdr + n, sizeof hdr - (size_t)n, "\"data_offsets\":[%llu,%llu]}",
                      (unsigned long long)off, (unsigned long long)(off + bytes));
        off += bytes;
    }
    n += snprintf(hdr + n, sizeof hdr - (size_t)n, "}");
    ASSERT((size_t)n + 8 < sizeof hdr);
    while (n % 8 != 0)
        hdr[n++] = ' ';
    snprintf(buf, sizeof buf, "%s/model.safetensors", dir);
    FILE *f = fopen(buf, "wb");
    ASSERT_MSG(f != NULL, "cannot write %s", buf);
    uint8_t len8[8];
    for (int i = 0; i < 8; i++)
        len8[i] = (uint8_t)((uint64_t)n >> (8 * i));
    ASSERT(fwrite(len8, 1, 8, f) == 8 && fwrite(hdr, 1, (size_t)n, f) == (size_t)n);
    rng_state = 20261203;
    for (size_t i = 0; i < nw; i++) {
        uint64_t cnt = (uint64_t)w[i].ne0 * (w[i].ne1 ? w[i].ne1 : 1);
        for (uint64_t j = 0; j < cnt; j++) {
            float x = w[i].std == 0.0f ? 1.0f : w[i].std * normal();
            ASSERT(fwrite(&x, 4, 1, f) == 1); /* little-endian hosts only, as the loader */
        }
    }
    ASSERT(fclose(f) == 0);
}

static char model_dir[64];

static void remove_model(void)
{
    static const char *const names[] = { "config.json", "tokenizer.json", "model.safetensors" };
    char path[512];
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", model_dir, names[i]);
        unlink(path);
    }
    rmdir(model_dir);
}

static engine_t *open_model(int speculative)
{
    snprintf(model_dir, sizeof model_dir, "/tmp/llamad-specdist-XXXXXX");
    ASSERT(mkdtemp(model_dir) != NULL);
    write_model(model_dir);
    engine_opts_t o = { 0 };
    o.model_path = model_dir;
    o.backend = "cpu";
    o.threads = 1;
    o.kv_bytes = 8u << 20;
    o.max_seqs = 64;
    o.max_queue = 1024;
    o.speculative = speculative;
    o.spec_tokens = 4;
    engine_t *e;
    char err[ERR_MSG_MAX] = "";
    int rc = engine_create(&e, &o, err, sizeof err);
    remove_model();
    ASSERT_MSG(rc == 0, "%s", err);
    return e;
}

/* ---------------------------------------------------------------- sampling runs */

#define GEN 4          /* tokens generated per run: the first drafts are 2 long */
#define CMP 3          /* the tokens compared */
#define N_RUNS 16000   /* runs per side: ~1 s here, see the power note above */

typedef struct {
    int32_t tok[GEN];
    uint32_t n;
    float top[V];     /* with want_top: the first token's log-probabilities, by id */
    int done;
} run_t;

static engine_event_t ev;

/* Run requests for prompt, seeds seed0.., one per run_t; speculative: 1 on, -1 off. */
static void sample_runs(engine_t *e, const int32_t *prompt, size_t n_prompt, uint64_t seed0,
                        run_t *runs, size_t n, uint32_t max_tokens, float temperature, int speculative, int want_top)
{
    char err[ERR_MSG_MAX];
    size_t next = 0, done = 0, inflight = 0;
    memset(runs, 0, n * sizeof *runs);
    while (done < n) {
        while (next < n && inflight < 512) {
            engine_request_t r;
            engine_request_init(&r);
            r.tokens = prompt;
            r.n_tokens = n_prompt;
            r.sampling.temperature = temperature;
            r.sampling.seed = seed0 + next;
            r.sampling.n_logprobs = want_top ? V : 0;
            r.max_tokens = max_tokens;
            r.ignore_eos = 1;
            r.speculative = speculative;
            r.cookie = &runs[next];
            uint64_t id;
            ASSERT_MSG(engine_submit(e, &r, &id, err, sizeof err) == 0, "%s", err);
            next++;
            inflight++;
        }
        if (!engine_poll(e, &ev)) {
            ASSERT_MSG(engine_wait(e, 30000), "no event for 30 s");
            continue;
        }
        run_t *q = ev.cookie;
        ASSERT(q >= runs && q < runs + n && !q->done);
        if (ev.kind == ENGINE_EV_TOKEN) {
            ASSERT(q->n < GEN && ev.token >= 0 && ev.token < V);
            if (q->n == 0 && want_top) {
                ASSERT_EQ_INT(ev.n_top, V);
                for (uint32_t i = 0; i < ev.n_top; i++)
                    q->top[ev.top[i].id] = ev.top[i].logprob;
            }
            q->tok[q->n++] = ev.token;
        } else if (ev.kind == ENGINE_EV_FINISH) {
            ASSERT_MSG(ev.finish == ENGINE_FINISH_LENGTH, "finish %d: %s", (int)ev.finish, ev.message);
            ASSERT_EQ_INT(q->n, max_tokens);
            q->done = 1;
            done++;
            inflight--;
        }
    }
}

/* Outcome of a run's first CMP tokens, base V. */
static uint32_t outcome(const run_t *r)
{
    uint32_t c = 0;
    for (int i = 0; i < CMP; i++)
        c = c * V + (uint32_t)r->tok[i];
    return c;
}

#define N_CELLS (V * V * V)

/*
 * Bins for a two-sample test with equal sample sizes: a full outcome
 * (t1, t2, t3) is a bin when both samples together hold at least 10 of it
 * (expected >= 5 in each under homogeneity); the rest fall back to their
 * (t1, t2) remainder, then their t1 remainder, then one remainder bin,
 * each kept under the same rule; what is left at the end joins the last
 * bin kept.  a[] and b[] are [N_CELLS] counts; the bins' counts come back
 * in ba[], bb[] (at most N_CELLS + V * V + V + 1); returns their number.
 */
/* Keep counts (a, b) as bin *nb when they hold at least 10, else add them to the remainder (ra, rb). */
static void keep_or_merge(uint32_t a, uint32_t b, uint32_t *ba, uint32_t *bb, size_t *nb, uint32_t *ra,
                          uint32_t *rb)
{
    if (a + b >= 10) {
        ba[*nb] = a;
        bb[(*nb)++] = b;
    } else {
        *ra += a;
        *rb += b;
    }
}

static size_t make_bins(const uint32_t *a, const uint32_t *b, uint32_t *ba, uint32_t *bb)
{
    size_t nb = 0;
    uint32_t ra = 0, rb = 0;                   /* global remainder */
    for (uint32_t t1 = 0; t1 < V; t1++) {
        uint32_t r1a = 0, r1b = 0;
        for (uint32_t t2 = 0; t2 < V; t2++) {
            uint32_t r2a = 0, r2b = 0;
            for (uint32_t t3 = 0; t3 < V; t3++) {
                uint32_t c = (t1 * V + t2) * V + t3;
                keep_or_merge(a[c], b[c], ba, bb, &nb, &r2a, &r2b);
            }
            keep_or_merge(r2a, r2b, ba, bb, &nb, &r1a, &r1b);
        }
        keep_or_merge(r1a, r1b, ba, bb, &nb, &ra, &rb);
    }
    if (ra + rb >= 10 || nb == 0) {
        ba[nb] = ra;
        bb[nb++] = rb;
    } else {
        ba[nb - 1] += ra;
        bb[nb - 1] += rb;
    }
    return nb;
}

/* Homogeneity of two samples of equal size: sum (a - b)^2 / (a + b) over bins, df = bins - 1. */
static double homogeneity_stat(const uint32_t *ba, const uint32_t *bb, size_t nb)
{
    double s = 0.0;
    for (size_t i = 0; i < nb; i++) {
        double d = (double)ba[i] - (double)bb[i], t = (double)ba[i] + (double)bb[i];
        if (t > 0.0)
            s += d * d / t;
    }
    return s;
}

static double seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

#define PATTERN 12

/*
 * The prompt: the model's own greedy continuation of one token, written
 * twice.  Prompt lookup then always finds the last token in the prompt and
 * proposes what followed it, tokens the model favours, so that drafts are
 * accepted often enough and rejected often enough to test both branches.
 */
static void make_prompt(engine_t *e, int32_t *p, size_t *n)
{
    static run_t chain[1];
    static const int32_t start[1] = { 0 };
    p[0] = start[0];
    size_t m = 1;
    while (m < PATTERN) {
        sample_runs(e, p, m, 0, chain, 1, 1, 0.0f, -1, 0);
        p[m++] = chain[0].tok[0];
    }
    memcpy(p + PATTERN, p, PATTERN * sizeof *p);
    *n = 2 * PATTERN;
}

static run_t spec_runs[N_RUNS], plain_runs[N_RUNS];
static uint32_t cnt_spec[N_CELLS], cnt_plain[N_CELLS];
static uint32_t bin_a[N_CELLS + V * V + V + 1], bin_b[N_CELLS + V * V + V + 1];

/*
 * The first three tokens of N_RUNS speculative runs against N_RUNS plain
 * runs with other seeds; then the first two of the speculative runs
 * against the model's exact probabilities.
 */
TEST(speculative_sampling_keeps_the_distribution)
{
    double t0 = seconds();
    engine_t *e = open_model(1);
    int32_t prompt[2 * PATTERN + 1];
    size_t n_prompt;
    make_prompt(e, prompt, &n_prompt);

    engine_stats_t st0, st1;
    engine_get_stats(e, &st0);
    sample_runs(e, prompt, n_prompt, 0, spec_runs, N_RUNS, GEN, 1.0f, 1, 0);
    engine_get_stats(e, &st1);
    uint64_t drafted = st1.spec_draft_tokens - st0.spec_draft_tokens;
    uint64_t accepted = st1.spec_accepted_tokens - st0.spec_accepted_tokens;
    printf("  info: %d speculative runs: %llu draft tokens, %llu accepted, %llu rejected\n", N_RUNS,
           (unsigned long long)drafted, (unsigned long long)accepted,
           (unsigned long long)(drafted - accepted));
    /* not vacuous: drafts were verified, and both outcomes happened many times */
    ASSERT(accepted >= 50);
    ASSERT(drafted - accepted >= 50);

    sample_runs(e, prompt, n_prompt, N_RUNS, plain_runs, N_RUNS, GEN, 1.0f, -1, 0);
    engine_get_stats(e, &st0);
    ASSERT_EQ_U64(st0.spec_draft_tokens, st1.spec_draft_tokens);

    for (size_t i = 0; i < N_RUNS; i++) {
        cnt_spec[outcome(&spec_runs[i])]++;
        cnt_plain[outcome(&plain_runs[i])]++;
    }
    size_t nb = make_bins(cnt_spec, cnt_plain, bin_a, bin_b);
    ASSERT(nb >= 20);
    double stat = homogeneity_stat(bin_a, bin_b, nb), p = chi2_sf(stat, (unsigned)(nb - 1));
    printf("  info: homogeneity of (t1, t2, t3): chi2 %.1f, df %zu, p %.3f\n", stat, nb - 1, p);
    ASSERT_MSG(p >= 1e-3, "speculative and plain sampling differ: chi2 %.1f, df %zu, p %.2g", stat, nb - 1, p);

    /* the exact p(t1, t2): p(t1) from the first request, p(t2 | t1) from prompt + t1 */
    static double pj[V * V];
    run_t one[1];
    sample_runs(e, prompt, n_prompt, 0, one, 1, 1, 1.0f, -1, 1);
    double p1[V];
    for (int t1 = 0; t1 < V; t1++)
        p1[t1] = exp(one[0].top[t1]);
    for (int t1 = 0; t1 < V; t1++) {
        prompt[n_prompt] = t1;
        sample_runs(e, prompt, n_prompt + 1, 0, one, 1, 1, 1.0f, -1, 1);
        for (int t2 = 0; t2 < V; t2++)
            pj[t1 * V + t2] = p1[t1] * exp(one[0].top[t2]);
    }
    double total = 0.0;
    for (int c = 0; c < V * V; c++)
        total += pj[c];
    ASSERT_MSG(fabs(total - 1.0) < 1e-4, "the exact joint sums to %.6f", total);

    /* goodness of fit: cells with expected count >= 5; the rest pooled in one bin, and
       when that bin would expect fewer than 5, the kept cell expecting least joins it */
    static uint32_t obs[V * V];
    static int kept[V * V];
    for (size_t i = 0; i < N_RUNS; i++)
        obs[spec_runs[i].tok[0] * V + spec_runs[i].tok[1]]++;
    double rest_e = 0.0, rest_o = 0.0;
    int least = -1;
    for (int c = 0; c < V * V; c++) {
        kept[c] = pj[c] * N_RUNS >= 5.0;
        if (!kept[c]) {
            rest_e += pj[c] * N_RUNS;
            rest_o += obs[c];
        } else if (least < 0 || pj[c] < pj[least]) {
            least = c;
        }
    }
    if (rest_e > 0.0 && rest_e < 5.0 && least >= 0) {
        kept[least] = 0;
        rest_e += pj[least] * N_RUNS;
        rest_o += obs[least];
    }
    double gof = rest_e > 0.0 ? (rest_o - rest_e) * (rest_o - rest_e) / rest_e : 0.0;
    unsigned cells = rest_e > 0.0;
    for (int c = 0; c < V * V; c++) {
        double ex = pj[c] * N_RUNS;
        if (kept[c]) {
            gof += (obs[c] - ex) * (obs[c] - ex) / ex;
            cells++;
        }
    }
    ASSERT(cells >= 20);
    double pg = chi2_sf(gof, cells - 1);
    printf("  info: fit of (t1, t2) to the exact joint: chi2 %.1f, df %u, p %.3f; %.2f s\n", gof,
           cells - 1, pg, seconds() - t0);
    ASSERT_MSG(pg >= 1e-3, "speculative sampling does not fit the model: chi2 %.1f, df %u, p %.2g", gof,
               cells - 1, pg);
    engine_destroy(e);
}

TEST_LIST(T(chi2_sf_known_values), T(speculative_sampling_keeps_the_distribution));
