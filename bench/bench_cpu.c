/*
 * bench_cpu - the CPU backend on the default model: prefill tokens/s for
 * prompts of 128 and 512 tokens, decode tokens/s at batch 1, 4, 8 and 16
 * (context 128, or --context N), for each thread count given, beside the machine's copy
 * bandwidth and its read bandwidth at that thread count, measured in the
 * same run, so that batch-1 decode reads as a fraction of its limit
 * (weight bytes per token over read bandwidth; the probes: bench_bw.c).
 *
 *   bench-cpu MODEL [--threads 1,2] [--runs N] [--only LIST] [--context N] [--json] [--cpu-time]
 *             [--no-repack]
 *
 * --only takes a comma list of prefill128, prefill512, decode1, decode4,
 * decode8, decode16 (default all).  --json adds one line per figure for scripts:
 *   {"threads":T,"measure":"prefill512","tokens_per_s":X}
 *   {"threads":T,"measure":"read_bandwidth","gb_per_s":X}
 * A decode run is 16 consecutive steps (context C + run .. + 15, C = 128
 * or --context, up to 960) after one untimed run, its figure the time per
 * step; each sequence attends over its C + run .. keys.
 * Times are medians of N runs (default 5), wall clock; with --cpu-time the
 * calling thread's CPU time, which on a shared machine leaves out the
 * time a one-thread step waits for a core (meaningful with --threads 1
 * only: other threads' time is not counted).  --no-repack: the backend
 * packs no matrix (cpu-repack = no), for comparison.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "bench/bench.h"
#include "bench/bench_bw.h"
#include "engine/backend.h"
#include "base/err.h"
#include "engine/forward.h"
#include "engine/model/model.h"

#define MAXT 512

/* Whether name is in the comma list only (NULL: every measure). */
static int wanted(const char *only, const char *name)
{
    if (only == NULL)
        return 1;
    size_t n = strlen(name);
    for (const char *p = only; *p;) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (len == n && strncmp(p, name, n) == 0)
            return 1;
        p += len + (e != NULL);
    }
    return 0;
}

static int json_out;

static void json_figure(int nt, const char *measure, const char *unit, double v)
{
    if (json_out)
        printf("{\"threads\":%d,\"measure\":\"%s\",\"%s\":%.3f}\n", nt, measure, unit, v);
}

/*
 * --cpu-time: time steps by the calling thread's CPU time (for --threads 1:
 * the time the step ran, not the time it waited for a core on a shared
 * machine; cache and memory contention still count).
 */
static int use_cpu_time;

static double step_clock(void)
{
    struct timespec ts;
    if (!use_cpu_time || clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) != 0)
        return bench_now();
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
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
    double t0 = step_clock();
    if (forward_step(f, &b, logits) != 0)
        exit(1);
    return step_clock() - t0;
}

/*
 * One decode measurement: DECODE_STEPS consecutive steps of B sequences,
 * one new token each, at positions p .. p + DECODE_STEPS - 1 (as a
 * client's generation runs, and as llama-bench's -n 32 does); the time
 * per step.  main runs one untimed measurement first, so that the pool's
 * workers are awake and the step's buffers touched, as llama-bench's
 * warm-up run does.
 */
#define DECODE_STEPS 16

static double run_decode(forward_t *f, float *logits, uint32_t B, uint32_t p)
{
    double t0 = step_clock();
    for (uint32_t k = 0; k < DECODE_STEPS; k++) {
        for (uint32_t s = 0; s < B; s++) {
            toks[s] = (int32_t)(200 + s + k);
            pos[s] = (int32_t)(p + k);
            rows[s] = (int32_t)s;
            seqs[s] = (batch_seq_t){ table[s], (p + k) / 16 + 1, s, 1 };
        }
        batch_t b = { B, toks, pos, B, seqs, B, rows };
        if (forward_step(f, &b, logits) != 0)
            exit(1);
    }
    return (step_clock() - t0) / DECODE_STEPS;
}

int main(int argc, char **argv)
{
    const char *path = NULL, *threads = "1,2", *only = NULL, *isa = NULL, *precision = NULL;
    int runs = 5, no_repack = 0;
    uint32_t ctx = 128;
    char err[ERR_MSG_MAX];
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = argv[++i];
        else if (!strcmp(argv[i], "--runs") && i + 1 < argc) runs = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--isa") && i + 1 < argc) isa = argv[++i];
        else if (!strcmp(argv[i], "--precision") && i + 1 < argc) precision = argv[++i];
        else if (!strcmp(argv[i], "--only") && i + 1 < argc) only = argv[++i];
        else if (!strcmp(argv[i], "--context") && i + 1 < argc) ctx = (uint32_t)strtoul(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--json")) json_out = 1;
        else if (!strcmp(argv[i], "--cpu-time")) use_cpu_time = 1;
        else if (!strcmp(argv[i], "--no-repack")) no_repack = 1;
        else path = argv[i];
    }
    if (path == NULL || runs < 1 || runs > 64 || ctx < 1 || ctx > 960) {
        fprintf(stderr, "usage: bench-cpu MODEL [--threads 1,2] [--runs N] [--isa LEVEL] [--precision exact|fast]"
                " [--only LIST] [--context 1..960] [--json] [--cpu-time] [--no-repack]\n");
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
    double bw = 0;
    if (bench_copy_bandwidth(&bw) != 0) {
        fprintf(stderr, "bench-cpu: no memory for the bandwidth probes\n");
        return 1;
    }
    printf("model: %s, %.1f MiB of weights; copy bandwidth %.1f GB/s (read + write, 512 MiB memcpy)\n",
           m->path, m->weight_bytes / 1048576.0, bw);
    json_figure(1, "copy_bandwidth", "gb_per_s", bw);
    json_figure(0, "weight_bytes", "bytes", (double)m->weight_bytes);
    printf("%-8s %-28s %12s %s\n", "threads", "measure", "tokens/s", "notes");
    float *logits = malloc((size_t)16 * m->hp.n_vocab * sizeof(float));
    for (const char *p = threads; *p;) {
        int nt = atoi(p);
        backend_t *b;
        forward_t *f;
        backend_opts_t o = { .n_threads = nt, .cpu_isa = isa, .cpu_precision = precision, .cpu_no_repack = no_repack,
                             .kv_bytes = 1024 * 16 * model_kv_bytes_per_token(m),
                             .block_tokens = 16, .max_tokens = MAXT };
        if (cpu_backend_create(&b, m, &o, err, sizeof err) != 0 ||
            forward_create(&f, m, b, MAXT, err, sizeof err) != 0) {
            fprintf(stderr, "bench-cpu: %s\n", err);
            return 1;
        }
        double t[64];
        double rbw = 0;
        const char *width = "";
        if (bench_read_bandwidth(nt, &rbw, &width) != 0) {
            fprintf(stderr, "bench-cpu: cannot run the read probe on %d threads\n", nt);
            return 1;
        }
        printf("%-8d %-28s %12.1f GB/s (%d threads, one stream each, 1 GiB, median of %d, %s loads fastest)\n", nt,
               "read bandwidth", rbw, nt, BENCH_BW_PASSES, width);
        json_figure(nt, "read_bandwidth", "gb_per_s", rbw);
        char key[32];
        for (uint32_t n = 128; n <= 512; n *= 4) {
            snprintf(key, sizeof key, "prefill%u", n);
            if (!wanted(only, key))
                continue;
            for (int r = 0; r < runs; r++)
                t[r] = run_prefill(f, logits, n);
            char what[64];
            snprintf(what, sizeof what, "prefill %u-token prompt", n);
            double tps = n / bench_median(t, runs);
            printf("%-8d %-28s %12.1f\n", nt, what, tps);
            json_figure(nt, key, "tokens_per_s", tps);
        }
        double base = 0;
        static const uint32_t batches[] = { 1, 4, 8, 16 };
        for (size_t bi = 0; bi < sizeof batches / sizeof batches[0]; bi++) {
            uint32_t B = batches[bi];
            snprintf(key, sizeof key, "decode%u", B);
            if (!wanted(only, key))
                continue;
            (void)run_decode(f, logits, B, ctx); /* warm-up */
            for (int r = 0; r < runs; r++)
                t[r] = run_decode(f, logits, B, ctx + (uint32_t)r);
            double tps = B / bench_median(t, runs);
            char what[64];
            snprintf(what, sizeof what, "decode batch %u, context %u", B, ctx);
            json_figure(nt, key, "tokens_per_s", tps);
            if (B == 1) {
                base = tps;
                printf("%-8d %-28s %12.1f %.1f%% of read bandwidth (%.1f GB/s of weights)\n", nt, what,
                       tps, 100.0 * m->weight_bytes * tps / (rbw * 1e9), m->weight_bytes * tps / 1e9);
            } else if (base > 0) {
                printf("%-8d %-28s %12.1f %.2fx batch 1\n", nt, what, tps, tps / base);
            } else {
                printf("%-8d %-28s %12.1f\n", nt, what, tps);
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
