/*
 * bench-attention - one layer's CPU attention (cpu_attention) alone, in
 * each build this CPU runs (plain, AVX2, AVX512), on random paged K/V.
 *
 *   bench-attention [--seqs N] [--context C] [--tokens T] [--heads H]
 *                   [--kv-heads K] [--head-dim D] [--block B] [--layers L]
 *                   [--threads N] [--kv f16|f32] [--runs R]
 *                   [--builds plain,avx2,avx512]
 *
 * N sequences of T new tokens each at positions C .. C + T - 1 (T = 1 and
 * C = 128: a decode step; N = 1, C = 0, T = 512: a prompt), H query heads
 * over K KV heads of D dims, blocks of B keys placed out of order in the
 * pool.  --layers L gives each of L layers its own K/V, called in turn,
 * so that a layer's K/V come from the last-level cache as in a model;
 * L = 1 repeats one layer's, which stays in L2 when it fits.  Prints, per
 * build, microseconds a call (the median of R runs of 30 calls) and
 * multiply-adds a second (2 x D per key and head for q.k and p v), and
 * checks that every build gives the bits of the plain one (run once,
 * untimed, where --builds leaves it out: it is ten times slower).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../engine/cpu/attention.h"
#include "base/quant.h"
#include "bench/bench.h"

#define CALLS 30
#define MAX_RUNS 64

static uint64_t lcg = 88172645463325252ull;

static float rnd(void)
{
    lcg = lcg * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((double)(lcg >> 40) / (double)(1ull << 23) - 1.0);
}

/* s as an integer in [lo, 2^20], or exit with a message naming the option. */
static uint32_t arg_u32(const char *s, const char *name, unsigned long lo)
{
    char *end;
    unsigned long v = strtoul(s, &end, 10);
    if (*s < '0' || *s > '9' || *end != '\0' || v < lo || v > 1ul << 20) {
        fprintf(stderr, "bench-attention: %s wants an integer from %lu to 2^20, not '%s'\n", name, lo, s);
        exit(2);
    }
    return (uint32_t)v;
}

int main(int argc, char **argv)
{
    uint32_t seqs = 16, ctx = 128, ntok = 1, nh = 9, nkv = 3, hd = 64, bt = 16, layers = 1, threads = 1;
    uint32_t runs = 7;
    int f16 = 1;
    const char *builds = "plain,avx2,avx512";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help")) {
            printf("bench-attention [--seqs N] [--context C] [--tokens T] [--heads H] [--kv-heads K]\n"
                   "                [--head-dim D] [--block B] [--layers L] [--threads N] [--kv f16|f32]\n"
                   "                [--runs R] [--builds plain,avx2,avx512]\n"
                   "One layer's CPU attention, per build (see bench/bench_attention.c).\n");
            return 0;
        }
        if (v == NULL) {
            fprintf(stderr, "bench-attention: %s: unknown, or its value is missing (--help)\n", a);
            return 2;
        }
        i++;
        if (!strcmp(a, "--seqs")) seqs = arg_u32(v, a, 1);
        else if (!strcmp(a, "--context")) ctx = arg_u32(v, a, 0);
        else if (!strcmp(a, "--tokens")) ntok = arg_u32(v, a, 1);
        else if (!strcmp(a, "--heads")) nh = arg_u32(v, a, 1);
        else if (!strcmp(a, "--kv-heads")) nkv = arg_u32(v, a, 1);
        else if (!strcmp(a, "--head-dim")) hd = arg_u32(v, a, 1);
        else if (!strcmp(a, "--block")) bt = arg_u32(v, a, 1);
        else if (!strcmp(a, "--layers")) layers = arg_u32(v, a, 1);
        else if (!strcmp(a, "--threads")) threads = arg_u32(v, a, 1);
        else if (!strcmp(a, "--runs")) runs = arg_u32(v, a, 1);
        else if (!strcmp(a, "--kv") && (!strcmp(v, "f16") || !strcmp(v, "f32"))) f16 = !strcmp(v, "f16");
        else if (!strcmp(a, "--builds")) builds = v;
        else {
            fprintf(stderr, "bench-attention: %s %s: not understood (--help)\n", a, v);
            return 2;
        }
    }
    if (runs > MAX_RUNS || (uint64_t)seqs * ntok > 1u << 16 || layers > 256) {
        fprintf(stderr, "bench-attention: at most %d runs, 65536 tokens, 256 layers\n", MAX_RUNS);
        return 2;
    }
    if (hd % 8 != 0 || hd > CPU_ATTN_MAX_HEAD_DIM || bt > 64) {
        fprintf(stderr, "bench-attention: head_dim a multiple of 8 up to %d, blocks of at most 64 keys\n",
                CPU_ATTN_MAX_HEAD_DIM);
        return 2;
    }
    static const char *names[] = { "auto", "plain", "avx2", "avx512" };
    unsigned wanted = 0;                        /* bit b: build b asked for */
    for (const char *p = builds; *p;) {
        size_t n = strcspn(p, ",");
        int bi = CPU_ATTN_PLAIN;
        while (bi <= CPU_ATTN_AVX512 && !(n == strlen(names[bi]) && !strncmp(p, names[bi], n)))
            bi++;
        if (bi > CPU_ATTN_AVX512) {
            fprintf(stderr, "bench-attention: --builds: '%.*s' is not plain, avx2 or avx512\n", (int)n, p);
            return 2;
        }
        wanted |= 1u << bi;
        p += n + (p[n] == ',');
    }
    size_t scratch_per = cpu_attn_scratch_floats(nh, nkv, hd);
    if (scratch_per == 0) {
        fprintf(stderr, "bench-attention: %u heads are not a multiple of %u KV heads\n", nh, nkv);
        return 2;
    }
    /* sizes in 64 bits, the whole K/V at most 8 GiB */
    uint64_t per_seq = ((uint64_t)ctx + ntok + bt - 1) / bt, blocks = seqs * per_seq;
    uint64_t esz = f16 ? 2 : 4;
    if (blocks > INT32_MAX || (double)blocks * nkv * bt * hd * esz * layers > (double)(8ull << 30)) {
        fprintf(stderr, "bench-attention: the K/V would take over 8 GiB\n");
        return 2;
    }
    uint64_t layer_elems = blocks * nkv * bt * hd;   /* below 2^32: checked above */
    uint32_t n_blocks = (uint32_t)blocks, n_tok = seqs * ntok;
    size_t q_elems = (size_t)n_tok * nh * hd;
    char *k = malloc(layer_elems * esz * layers), *v = malloc(layer_elems * esz * layers);
    float *q = malloc(q_elems * sizeof(float)), *want = malloc(q_elems * sizeof(float));
    float *got = malloc(q_elems * sizeof(float));
    float *scratch = aligned_alloc(64, (threads * scratch_per * sizeof(float) + 63) & ~(size_t)63);
    int32_t *table = malloc(n_blocks * sizeof(int32_t)), *pos = malloc(n_tok * sizeof(int32_t));
    uint32_t *tile_first = malloc((seqs + 1) * sizeof(uint32_t));
    batch_seq_t *sq = malloc(seqs * sizeof *sq);
    pool_t *pool = NULL;
    if (!k || !v || !q || !want || !got || !scratch || !table || !pos || !tile_first || !sq ||
        pool_create(&pool, (int)threads) != 0) {
        fprintf(stderr, "bench-attention: out of memory\n");
        return 1;
    }
    for (size_t i = 0; i < layer_elems * layers; i++) {
        float a = rnd() * 2.0f, b = rnd();
        if (f16) {
            ((uint16_t *)(void *)k)[i] = f32_to_f16(a);
            ((uint16_t *)(void *)v)[i] = f32_to_f16(b);
        } else {
            ((float *)(void *)k)[i] = a;
            ((float *)(void *)v)[i] = b;
        }
    }
    for (size_t i = 0; i < q_elems; i++)
        q[i] = rnd() * 2.0f;
    /* a prime stride through the pool: blocks out of order (in order where
       the prime divides the pool's size) */
    uint64_t stride = n_blocks % 7919u ? 7919u : 1u;
    for (uint64_t i = 0; i < n_blocks; i++)
        table[i] = (int32_t)((i * stride) % n_blocks);
    for (uint32_t s = 0; s < seqs; s++) {
        sq[s] = (batch_seq_t){ table + (size_t)s * per_seq, (uint32_t)per_seq, s * ntok, ntok };
        for (uint32_t t = 0; t < ntok; t++)
            pos[s * ntok + t] = (int32_t)(ctx + t);
    }
    batch_t b = { n_tok, NULL, pos, seqs, sq, 0, NULL };
    double macs = 0;
    for (uint32_t i = 0; i < n_tok; i++)
        macs += 2.0 * nh * hd * (pos[i] + 1.0);

    printf("attention: %u sequences x %u tokens at context %u, %u heads over %u, head_dim %u, blocks of %u,\n"
           "           %s K/V, %u layer(s) in turn, %u thread(s); %u runs of %d calls\n",
           seqs, ntok, ctx, nh, nkv, hd, bt, f16 ? "half" : "float", layers, threads, runs, CALLS);
    printf("%-8s %12s %14s %s\n", "build", "us/call", "G mul-add/s", "bits");
    int status = 0;
    size_t last = (size_t)((CALLS - 1) % (int)layers) * layer_elems * esz;
    cpu_attn_t ref = { hd, nh, nkv, bt, k + last, v + last, &b, q, want, f16 };
    if (cpu_attention_force(CPU_ATTN_PLAIN) != 0 || cpu_attention(pool, &ref, tile_first, scratch) != 0) {
        fprintf(stderr, "bench-attention: cpu_attention refused the shape\n");
        return 1;
    }
    for (int bi = CPU_ATTN_PLAIN; bi <= CPU_ATTN_AVX512; bi++) {
        if (!(wanted & 1u << bi))
            continue;
        if (cpu_attention_force((cpu_attn_build_t)bi) != 0) {
            printf("%-8s %12s\n", names[bi], "(not on this CPU)");
            continue;
        }
        cpu_attn_t a = { hd, nh, nkv, bt, k, v, &b, q, got, f16 };
        double t[MAX_RUNS];
        for (uint32_t r = 0; r < runs; r++) {
            double t0 = bench_now();
            for (int c = 0; c < CALLS; c++) {
                size_t l = (size_t)(c % (int)layers) * layer_elems * esz;
                a.k = k + l;
                a.v = v + l;
                if (cpu_attention(pool, &a, tile_first, scratch) != 0) {
                    fprintf(stderr, "bench-attention: cpu_attention refused the shape\n");
                    return 1;
                }
            }
            t[r] = (bench_now() - t0) / CALLS;
        }
        /* the last call's layer, the reference's */
        int same = memcmp(want, got, q_elems * sizeof(float)) == 0;
        const char *bits = bi == CPU_ATTN_PLAIN ? (same ? "reference" : "NOT REPEATABLE")
                                                : same ? "= plain" : "DIFFER from plain";
        status |= !same;
        double med = bench_median(t, (int)runs);
        printf("%-8s %12.1f %14.2f %s\n", names[bi], med * 1e6, macs / med * 1e-9, bits);
    }
    cpu_attention_force(CPU_ATTN_AUTO);
    pool_destroy(pool);
    free(k);
    free(v);
    free(q);
    free(want);
    free(got);
    free(scratch);
    free(table);
    free(pos);
    free(tile_first);
    free(sq);
    return status;
}
