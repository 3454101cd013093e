/*
 * bench_matmul.c - speed of cpu_matmul on the default model's shapes,
 * against the machine's memory bandwidth.
 *
 *   bench_matmul [--portable] [--quick] [--isa LEVEL] [--precision exact|fast] [--1b]
 *                [--type NAME] [--prefill] [--packed]
 *
 * --isa picks the kernels' level (matmul.h's cpu_isa_t: auto, amx, avx512,
 * avxvnni, avx2, portable; --portable is --isa portable), --precision
 * the exact (float) or fast (int8 activations) products.
 *
 * First the memory: a 1 GiB memcpy (bytes read + bytes written per
 * second) and bench-cpu's read probe (bench_bw.c), each on 1 and 2 threads.  Then
 * each weight shape of SmolLM2-135M (Q4_1 projections, the Q8_0 output
 * matrix, and one F32 matrix for comparison) at n_tok 1, 4, 16, 128 on 1
 * and 2 threads.  "cold" rotates through enough copies of the matrix
 * (twice the last-level cache as sysfs gives it, at least 256 MiB, at
 * most 4 GiB) that every call reads its weights from memory, as a
 * forward pass over a model larger than the last-level cache does; "hot"
 * repeats one copy, which stays in cache when it fits.  Each figure is
 * the median of several samples.  GB/s counts weight bytes read per
 * second; GFLOP/s counts 2 * n_out * n_in * n_tok per call.
 *
 * --1b takes instead the projection shapes of bench/make-synth-gguf.py's
 * 0.92 B model (dim 2048, ffn 5632) in each of Q4_0, Q8_0, Q4_K, Q5_K and
 * Q6_K, at n_tok 1 and 16 only (--prefill: and 512).  --type keeps only
 * the shapes of one weight type ("Q4_K").  --packed times the kernels on
 * packed copies (cpu_matmul_pack, as the backend makes them with
 * cpu-repack) where this level and precision read them; a shape they do
 * not read is timed on its rows, and marked so.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../engine/cpu/matmul.h"
#include "../engine/cpu/pool.h"
#include "base/clock.h"
#include "bench/bench_bw.h"
#include "base/quant.h"

#define SAMPLES   7
#define SAMPLE_NS 20000000.0 /* at least this long per sample */
#define COLD_MIN (256ull << 20)
#define COLD_MAX (4ull << 30)
#define MEM_BYTES (1ull << 30)

/* The first line of cpu0's cache file index<i>/<name> (sysfs) into buf;
   0, or -1 where it cannot be read. */
static int cache_attr(int i, const char *name, char *buf, size_t len)
{
    char path[96];
    snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu0/cache/index%d/%s", i, name);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    char *got = fgets(buf, (int)len, f);
    fclose(f);
    return got == NULL ? -1 : 0;
}

/* The largest data or unified cache of cpu0 in bytes (sysfs), or 0. */
static uint64_t llc_bytes(void)
{
    uint64_t best = 0;
    for (int i = 0; i < 8; i++) {
        char buf[32], type[32];
        if (cache_attr(i, "type", type, sizeof type) != 0 || !strncmp(type, "Instruction", 11) ||
            cache_attr(i, "size", buf, sizeof buf) != 0)
            continue;
        char *end;
        unsigned long long v = strtoull(buf, &end, 10);
        if (*end == 'K')
            v <<= 10;
        else if (*end == 'M')
            v <<= 20;
        else if (*end == 'G')
            v <<= 30;
        if (v > best && v < (1ull << 40))
            best = v;
    }
    return best;
}

/* Bytes "cold" rotates through: twice the last-level cache (llc bytes),
   within [COLD_MIN, COLD_MAX]. */
static uint64_t cold_bytes(uint64_t llc)
{
    uint64_t c = 2 * llc;
    return c < COLD_MIN ? COLD_MIN : c > COLD_MAX ? COLD_MAX : c;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return v[n / 2];
}

static uint64_t rng_state = 12345;

static uint64_t rng_next(void)
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/*
 * --cpu-time: time by the calling thread's CPU time, on that thread alone
 * (no pool): on a machine shared with other work this counts the time
 * the kernels ran, not the time they waited for a core (cache and memory
 * contention still count).
 */
static int use_cpu_time;

static double now_ns(void)
{
    if (!use_cpu_time)
        return (double)clock_now_ns();
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

/* ------------------------------------------------------------- memory */

typedef struct {
    uint8_t       *dst;
    const uint8_t *src;
    size_t         bytes;  /* per task */
} mem_job_t;

static void copy_cb(void *ctx, uint32_t task, uint32_t thread)
{
    (void)thread;
    mem_job_t *m = ctx;
    memcpy(m->dst + task * m->bytes, m->src + task * m->bytes, m->bytes);
}

/* Bytes per second of `cb` over MEM_BYTES split into n_threads tasks; per_byte: 2 for a copy. */
static double mem_rate(pool_t *p, uint32_t n_threads, pool_task_cb cb, mem_job_t *m, double per_byte)
{
    double v[3];
    m->bytes = MEM_BYTES / n_threads;
    for (int s = 0; s < 3; s++) {
        double t0 = now_ns();
        pool_run(p, cb, m, n_threads);
        v[s] = per_byte * (double)MEM_BYTES / ((now_ns() - t0) * 1e-9);
    }
    return median(v, 3);
}

/* --------------------------------------------------------------- shapes */

typedef struct {
    const char *name;
    qtype_t     type;
    uint32_t    n_out, n_in;
} shape_t;

static const shape_t shapes[] = {
    { "attn_q/attn_out", QT_Q4_1, 576, 576 },
    { "ffn_gate/ffn_up", QT_Q4_1, 1536, 576 },
    { "ffn_down", QT_Q4_1, 576, 1536 },
    { "output", QT_Q8_0, 49152, 576 },
    { "f32 576x576", QT_F32, 576, 576 },
};

static const shape_t shapes_1b[] = {
    { "1b attn_q", QT_Q4_0, 2048, 2048 }, { "1b ffn_up", QT_Q4_0, 5632, 2048 },
    { "1b ffn_down", QT_Q4_0, 2048, 5632 },
    { "1b attn_q", QT_Q8_0, 2048, 2048 }, { "1b ffn_up", QT_Q8_0, 5632, 2048 },
    { "1b ffn_down", QT_Q8_0, 2048, 5632 },
    { "1b attn_q", QT_Q4_K, 2048, 2048 }, { "1b ffn_up", QT_Q4_K, 5632, 2048 },
    { "1b ffn_down", QT_Q4_K, 2048, 5632 }, { "1b ffn_up", QT_Q5_K, 5632, 2048 },
    { "1b ffn_up", QT_Q6_K, 5632, 2048 },
};

/* A matrix of valid blocks with normal (not subnormal) scales. */
static void fill_weights(qtype_t type, uint8_t *w, uint64_t bytes)
{
    const qtype_info_t *ti = qtype_info(type);
    for (uint64_t i = 0; i < bytes; i++)
        w[i] = (uint8_t)rng_next();
    for (uint64_t off = 0; off + ti->block_bytes <= bytes; off += ti->block_bytes) {
        uint16_t s = f32_to_f16(0.01f), m = f32_to_f16(-0.08f);
        if (type == QT_F32) {
            float f = (float)(rng_next() % 2001) / 1000.0f - 1.0f;
            memcpy(w + off, &f, 4);
        } else if (type == QT_Q6_K) { /* d is last */
            memcpy(w + off + 208, &s, 2);
        } else {
            memcpy(w + off, &s, 2);
            if (type == QT_Q4_1 || type == QT_Q4_K || type == QT_Q5_K)
                memcpy(w + off + 2, &m, 2);
        }
    }
}

/* One call on copy c of w (and of its packed copies pw, pbytes each, if
 * any); cpu_matmul's result. */
static int call(pool_t *p, const shape_t *s, const uint8_t *w, uint64_t bytes, const uint8_t *pw,
                uint64_t pbytes, uint32_t c, const float *x, uint32_t n_tok, float *y)
{
    if (pw == NULL)
        return cpu_matmul(p, s->type, w + (uint64_t)c * bytes, s->n_out, s->n_in, x, n_tok, y);
    cpu_mm_out_t m = { .type = s->type, .w = w + (uint64_t)c * bytes, .n_out = s->n_out, .y = y,
                       .packed = pw + (uint64_t)c * pbytes };
    return cpu_matmul_multi(p, &m, 1, s->n_in, x, n_tok);
}

/* Median seconds per call, rotating through n_copies copies; exits if
 * the warm-up call fails (the timed ones make the same checks). */
static double time_calls(pool_t *p, const shape_t *s, const uint8_t *w, uint64_t bytes, const uint8_t *pw,
                         uint64_t pbytes, uint32_t n_copies, const float *x, uint32_t n_tok, float *y)
{
    double v[SAMPLES];
    uint32_t c = 0;
    int rc = call(p, s, w, bytes, pw, pbytes, 0, x, n_tok, y); /* warm-up */
    if (rc != 0) {
        fprintf(stderr, "bench_matmul: %s %s at n_tok %u: error %d\n", s->name, qtype_info(s->type)->name,
                n_tok, rc);
        exit(1);
    }
    for (int k = 0; k < SAMPLES; k++) {
        double t0 = now_ns(), t;
        int calls = 0;
        do {
            call(p, s, w, bytes, pw, pbytes, c, x, n_tok, y);
            c = (c + 1) % n_copies;
            calls++;
        } while ((t = now_ns() - t0) < SAMPLE_NS);
        v[k] = t * 1e-9 / calls;
    }
    return median(v, SAMPLES);
}

int main(int argc, char **argv)
{
    int quick = 0, one_b = 0, prefill = 0, packed = 0;
    const char *only = NULL; /* --type */
    cpu_isa_t isa = cpu_isa_best();
    cpu_prec_t prec = CPU_PREC_EXACT;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--portable") == 0) {
            isa = CPU_ISA_PORTABLE;
        } else if (strcmp(argv[i], "--quick") == 0) {
            quick = 1;
        } else if (strcmp(argv[i], "--1b") == 0) {
            one_b = 1;
        } else if (strcmp(argv[i], "--prefill") == 0) {
            prefill = 1;
        } else if (strcmp(argv[i], "--packed") == 0) {
            packed = 1;
        } else if (strcmp(argv[i], "--type") == 0 && i + 1 < argc) {
            only = argv[++i];
        } else if (strcmp(argv[i], "--cpu-time") == 0) {
            use_cpu_time = 1;
        } else if (strcmp(argv[i], "--isa") == 0 && i + 1 < argc
                   && cpu_isa_parse(argv[i + 1], &isa) == 0) {
            i++;
        } else if (strcmp(argv[i], "--precision") == 0 && i + 1 < argc
                   && (strcmp(argv[i + 1], "exact") == 0 || strcmp(argv[i + 1], "fast") == 0)) {
            prec = strcmp(argv[++i], "fast") == 0 ? CPU_PREC_FAST : CPU_PREC_EXACT;
        } else {
            fprintf(stderr, "usage: %s [--portable] [--quick] [--isa auto|amx|avx512|avxvnni|avx2|portable]"
                            " [--precision exact|fast] [--cpu-time] [--1b] [--type NAME] [--prefill] [--packed]\n",
                    argv[0]);
            return 2;
        }
    }
    if (cpu_matmul_configure(isa, prec) != 0) {
        fprintf(stderr, "bench_matmul: this machine cannot run the %s kernels\n", cpu_isa_name(isa));
        return 2;
    }

    pool_t *pools[2] = { NULL, NULL };
    int n_thr = use_cpu_time ? 1 : 2; /* --cpu-time: the calling thread (pools[0] NULL) */
    if ((!use_cpu_time && pool_create(&pools[0], 1) != 0) || pool_create(&pools[1], 2) != 0) {
        fprintf(stderr, "bench_matmul: cannot start threads\n");
        return 1;
    }

    double copy_bw[2] = { 0 }, read_bw[2] = { 0 };
    {
        uint8_t *a = malloc(MEM_BYTES), *b = malloc(MEM_BYTES);
        if (a == NULL || b == NULL) {
            fprintf(stderr, "bench_matmul: cannot allocate 2 GiB\n");
            return 1;
        }
        memset(a, 1, MEM_BYTES);
        memset(b, 2, MEM_BYTES);
        mem_job_t m = { .dst = b, .src = a };
        for (int t = 0; t < n_thr; t++) {
            copy_bw[t] = mem_rate(pools[t], (uint32_t)t + 1, copy_cb, &m, 2.0);
            const char *width;
            if (bench_read_bandwidth(t + 1, &read_bw[t], &width) != 0) {
                fprintf(stderr, "bench_matmul: cannot run the read probe\n");
                return 1;
            }
            read_bw[t] *= 1e9;
        }
        free(a);
        free(b);
    }
    printf("memory: memcpy of 1 GiB (read + written): %.1f GB/s on 1 thread, %.1f GB/s on 2\n",
           copy_bw[0] * 1e-9, copy_bw[1] * 1e-9);
    printf("memory: read probe (bench_bw.c), 1 GiB:   %.1f GB/s on 1 thread, %.1f GB/s on 2\n",
           read_bw[0] * 1e-9, read_bw[1] * 1e-9);
    if (use_cpu_time)
        printf("timing: the calling thread's CPU time, 1 thread (no figures for 2)\n");
    uint64_t llc = llc_bytes(), cold = cold_bytes(llc);
    printf("cold: each shape rotates through %.0f MiB of copies (last-level cache %.0f MiB)\n",
           cold / 1048576.0, llc / 1048576.0);
    printf("matmul: isa %s, precision %s\n\n", cpu_isa_name(cpu_matmul_isa()),
           cpu_matmul_precision() == CPU_PREC_FAST ? "fast" : "exact");
    printf("%-16s %-5s %5s %3s %11s %10s %8s %10s %9s\n", "shape", "type", "n_tok", "thr",
           "us/call", "GB/s cold", "%memcpy", "GB/s hot", "GFLOP/s");

    static const uint32_t n_toks[] = { 1, 4, 16, 128, 512 };
    uint32_t max_tok = 512;
    const shape_t *table = one_b ? shapes_1b : shapes;
    size_t n_shapes = one_b ? sizeof shapes_1b / sizeof shapes_1b[0] : sizeof shapes / sizeof shapes[0];
    for (size_t si = 0; si < n_shapes; si++) {
        const shape_t *s = &table[si];
        if (only != NULL && strcmp(qtype_info(s->type)->name, only) != 0)
            continue;
        uint64_t bytes = 0;
        qtype_nbytes(s->type, (uint64_t)s->n_out * s->n_in, &bytes);
        uint32_t n_copies = (uint32_t)((cold + bytes - 1) / bytes);
        uint8_t *w = malloc(bytes * n_copies);
        float *x = malloc((size_t)max_tok * s->n_in * sizeof *x);   /* [max_tok, n_in] */
        float *y = malloc((size_t)max_tok * s->n_out * sizeof *y);  /* [max_tok, n_out] */
        if (w == NULL || x == NULL || y == NULL) {
            fprintf(stderr, "bench_matmul: out of memory\n");
            return 1;
        }
        fill_weights(s->type, w, bytes);
        for (uint32_t c = 1; c < n_copies; c++)
            memcpy(w + (uint64_t)c * bytes, w, bytes);
        /* --packed: each copy's packed copy, 64-byte aligned as the backend's */
        uint64_t pbytes = packed ? (cpu_matmul_packed_bytes(s->type, s->n_out, s->n_in) + 63) / 64 * 64 : 0;
        uint8_t *pw = NULL;
        if (pbytes > 0) {
            pw = aligned_alloc(64, pbytes * n_copies);
            if (pw == NULL) {
                fprintf(stderr, "bench_matmul: out of memory\n");
                return 1;
            }
            for (uint32_t c = 0; c < n_copies; c++)
                if (cpu_matmul_pack(s->type, w + (uint64_t)c * bytes, s->n_out, s->n_in,
                                    pw + (uint64_t)c * pbytes) != 0) {
                    fprintf(stderr, "bench_matmul: cannot pack %s\n", s->name);
                    return 1;
                }
        }
        if (packed)
            printf("%-16s %s\n", s->name, pw != NULL ? "packed" : "not packed at this level and precision: rows");
        for (size_t i = 0; i < (size_t)max_tok * s->n_in; i++)
            x[i] = (float)(rng_next() % 2001) / 1000.0f - 1.0f;

        double per_tok[5][2] = { { 0 } }; /* seconds per token, cold: [n_tok index, threads - 1] */
        for (size_t ti = 0; ti < sizeof n_toks / sizeof n_toks[0]; ti++) {
            uint32_t n_tok = n_toks[ti];
            if ((quick && n_tok == 128 && s->n_out > 10000) || (n_tok == 512 && s->n_out > 10000)
                || (one_b && n_tok != 1 && n_tok != 16 && !(prefill && n_tok == 512)))
                continue;
            for (int t = 0; t < n_thr; t++) {
                double cold = time_calls(pools[t], s, w, bytes, pw, pbytes, n_copies, x, n_tok, y);
                per_tok[ti][t] = cold / n_tok;
                double hot = time_calls(pools[t], s, w, bytes, pw, pbytes, 1, x, n_tok, y);
                double flop = 2.0 * s->n_out * s->n_in * n_tok;
                printf("%-16s %-5s %5u %3d %11.1f %10.2f %7.0f%% %10.2f %9.2f\n", s->name,
                       qtype_info(s->type)->name, n_tok, t + 1, cold * 1e6,
                       (double)bytes / cold * 1e-9, 100.0 * (double)bytes / cold / copy_bw[t],
                       (double)bytes / hot * 1e-9, flop / cold * 1e-9);
                fflush(stdout);
            }
        }
        printf("%-16s tokens/s at n_tok 16 over n_tok 1: %.2fx on 1 thread", s->name,
               per_tok[0][0] / per_tok[2][0]);
        if (n_thr == 2)
            printf(", %.2fx on 2", per_tok[0][1] / per_tok[2][1]);
        printf("\n");
        free(w);
        free(pw);
        free(x);
        free(y);
    }
    pool_destroy(pools[0]);
    pool_destroy(pools[1]);
    return 0;
}
