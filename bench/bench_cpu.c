/*
 * bench_cpu - the CPU backend on the default model: prefill tokens/s for
 * prompts of 128 and 512 tokens, decode tokens/s at batch 1, 4 and 16
 * (context 128), for each thread count given, beside the machine's copy
 * bandwidth measured in the same run, so that batch-1 decode reads as a
 * fraction of its limit (weight bytes per token over bandwidth).
 *
 *   bench-cpu MODEL [--threads 1,2] [--runs N]
 *
 * Times are medians of N runs (default 5), wall clock.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "bench/bench.h"
#include "engine/backend.h"
#include "base/err.h"
#include "engine/forward.h"
#include "engine/model/model.h"

#define MAXT 512

/* Copy bandwidth: 512 MiB memcpy, bytes read + written, median of 5. */
static double copy_bandwidth(void)
{
    size_t n = 512u << 20;
    char *a = malloc(n), *b = malloc(n);
    memset(a, 1, n);
    memset(b, 2, n);
    double t[5];
    for (int i = 0; i < 5; i++) {
        double t0 = bench_now();
        memcpy(b, a, n);
        t[i] = bench_now() - t0;
        a[i] ^= b[n - 1 - i];
    }
    free(a);
    free(b);
    return 2.0 * n / bench_median(t, 5) / 1e9;
}

static int32_t table[16][64];
static int32_t toks[MAXT], pos[MAXT], rows[16];
static batch_seq_t seqs[16];

static double run_prefill(forward_t *f, float *logits, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) {
        toks[i] = (int32_t)(100 + i * 37 % 40000);
        pos[i] = (int32_t)i;
    }
    seqs[0] = (batch_seq_t){ table[0], n / 16 + 1, 0, n };
    rows[0] = (int32_t)n - 1;
    batch_t b = { n, toks, pos, 1, seqs, 1, rows };
    double t0 = bench_now();
    if (forward_step(f, &b, logits) != 0)
        exit(1);
    return bench_now() - t0;
}

static double run_decode(forward_t *f, float *logits, uint32_t B, uint32_t p)
{
    for (uint32_t s = 0; s < B; s++) {
        toks[s] = (int32_t)(200 + s);
        pos[s] = (int32_t)p;
        rows[s] = (int32_t)s;
        seqs[s] = (batch_seq_t){ table[s], p / 16 + 1, s, 1 };
    }
    batch_t b = { B, toks, pos, B, seqs, B, rows };
    double t0 = bench_now();
    if (forward_step(f, &b, logits) != 0)
        exit(1);
    return bench_now() - t0;
}

int main(int argc, char **argv)
{
    const char *path = NULL, *threads = "1,2", *isa = NULL, *precision = NULL;
    int runs = 5;
    char err[ERR_MSG_MAX];
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = argv[++i];
        else if (!strcmp(argv[i], "--runs") && i + 1 < argc) runs = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--isa") && i + 1 < argc) isa = argv[++i];
        else if (!strcmp(argv[i], "--precision") && i + 1 < argc) precision = argv[++i];
        else path = argv[i];
    }
    if (path == NULL || runs < 1 || runs > 64) {
        fprintf(stderr, "usage: bench-cpu MODEL [--threads 1,2] [--runs N] [--isa LEVEL] [--precision exact|fast]\n");
        return 2;
    }
    model_t *m;
    if (model_create(&m, path, "auto", err, sizeof err) != 0) {
        fprintf(stderr, "bench-cpu: %s\n", err);
        return 1;
    }
    for (int s = 0; s < 16; s++)
        for (int k = 0; k < 64; k++)
            table[s][k] = s * 64 + k;
    double bw = copy_bandwidth();
    printf("model: %s, %.1f MiB of weights; copy bandwidth %.1f GB/s (read + write, 512 MiB memcpy)\n",
           m->path, m->weight_bytes / 1048576.0, bw);
    printf("%-8s %-28s %12s %s\n", "threads", "measure", "tokens/s", "notes");
    float *logits = malloc((size_t)16 * m->hp.n_vocab * sizeof(float));
    for (const char *p = threads; *p;) {
        int nt = atoi(p);
        backend_t *b;
        forward_t *f;
        backend_opts_t o = { .n_threads = nt, .cpu_isa = isa, .cpu_precision = precision, .kv_bytes = 1024 * 16 * model_kv_bytes_per_token(m),
                             .block_tokens = 16, .max_tokens = MAXT };
        if (cpu_backend_create(&b, m, &o, err, sizeof err) != 0 ||
            forward_create(&f, m, b, MAXT, err, sizeof err) != 0) {
            fprintf(stderr, "bench-cpu: %s\n", err);
            return 1;
        }
        double t[64];
        for (uint32_t n = 128; n <= 512; n *= 4) {
            for (int r = 0; r < runs; r++)
                t[r] = run_prefill(f, logits, n);
            char what[64];
            snprintf(what, sizeof what, "prefill %u-token prompt", n);
            printf("%-8d %-28s %12.1f\n", nt, what, n / bench_median(t, runs));
        }
        double base = 0;
        for (uint32_t B = 1; B <= 16; B *= 4) {
            for (int r = 0; r < runs; r++)
                t[r] = run_decode(f, logits, B, 128 + (uint32_t)r);
            double tps = B / bench_median(t, runs);
            char what[64];
            snprintf(what, sizeof what, "decode batch %u, context 128", B);
            if (B == 1) {
                base = tps;
                printf("%-8d %-28s %12.1f %.1f%% of bandwidth (%.1f GB/s of weights)\n", nt, what, tps,
                       100.0 * m->weight_bytes * tps / (bw * 1e9), m->weight_bytes * tps / 1e9);
            } else {
                printf("%-8d %-28s %12.1f %.2fx batch 1\n", nt, what, tps, tps / base);
            }
        }
        forward_destroy(f);
        backend_destroy(b);
        while (*p && *p != ',')
            p++;
        if (*p == ',')
            p++;
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("peak resident memory: %.1f MiB (weights file mapped: %.1f MiB)\n", ru.ru_maxrss / 1024.0,
           m->weight_bytes / 1048576.0);
    model_destroy(m);
    free(logits);
    return 0;
}
