/*
 * bench_bw.c - the benchmarks' memory bandwidth probes.
 *
 * Read bandwidth.  A decode step at batch 1 reads every weight once and
 * writes almost nothing, so its ceiling is the rate at which the cores
 * can stream bytes in, not a copy rate (which counts writes, and pays for
 * reading each destination line before writing it).  The probe:
 *
 *   - reads a 1 GiB buffer, 32 times the largest last-level cache we run
 *     on, so every pass comes from memory; the buffer is written once
 *     before timing, so no page fault (and no zero page shared by every
 *     address) is timed;
 *   - gives each thread one contiguous share and walks it as ONE
 *     sequential stream: on the 2-core AMD EPYC machines of
 *     PERFORMANCE.md, one thread's share split into 4 interleaved streams
 *     read 13-17 GB/s with 32-byte loads, 2 streams 15-23, 1 stream 16-31
 *     (same loads, same adds; the old probe, 4 streams of 16-byte loads,
 *     8-10): the hardware prefetchers follow one stream per core best;
 *   - runs one kernel per load width this CPU has (16-byte vectors of
 *     portable C; AVX2, 32 bytes; AVX-512, 64 bytes), chosen at run time
 *     by the matmul kernels' own test (cpu_isa_best), with target
 *     attributes so that the binary still runs on any x86-64, and keeps
 *     the fastest: the widest is not always it (on that machine, one
 *     stream, 16-byte loads read 18-27 GB/s, 32-byte 16-31, 64-byte 20-22,
 *     interleaved passes on a shared machine);
 *   - adds each load into one of four independent accumulators, eight
 *     loads per loop iteration, so no add waits for the one before it
 *     and each iteration reads 4 (AVX2) or 8 (AVX-512) cache lines, every
 *     byte of every line once; the sums are read back, so no load is
 *     dropped;
 *   - times a pass from the creation of its threads (tens of microseconds,
 *     against a pass of tens of milliseconds) to the last one's finish:
 *     bytes read over that time, median of BENCH_BW_PASSES passes.
 *
 * Copy bandwidth: one memcpy on the calling thread, read + written bytes.
 */
#include "bench/bench_bw.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "bench/bench.h"
#include "engine/cpu/matmul.h"

/* Bytes one loop iteration of the widest kernel reads (8 x 64). */
#define UNROLL_BYTES 512

typedef uint64_t (*read_fn)(const uint8_t *p, size_t n);

/* ---------------------------------------------------------- kernels */

typedef uint64_t v2u64 __attribute__((vector_size(16)));

/* n bytes from p (n a multiple of UNROLL_BYTES): 8 x 16-byte loads, 4 sums. */
static uint64_t read_portable(const uint8_t *p, size_t n)
{
    v2u64 s0 = { 0 }, s1 = { 0 }, s2 = { 0 }, s3 = { 0 }, v[8];
    for (size_t i = 0; i < n; i += 128) {
        memcpy(v, p + i, sizeof v);
        s0 += v[0];
        s1 += v[1];
        s2 += v[2];
        s3 += v[3];
        s0 += v[4];
        s1 += v[5];
        s2 += v[6];
        s3 += v[7];
    }
    s0 += s1 + s2 + s3;
    return s0[0] + s0[1];
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define HAVE_X86_READ 1

/* The same with 32-byte loads (p 32-byte aligned). */
__attribute__((target("avx2"))) static uint64_t read_avx2(const uint8_t *p, size_t n)
{
    __m256i s0 = _mm256_setzero_si256(), s1 = s0, s2 = s0, s3 = s0;
    for (size_t i = 0; i < n; i += 256) {
        const __m256i *v = (const __m256i *)(const void *)(p + i);
        s0 = _mm256_add_epi64(s0, _mm256_load_si256(v + 0));
        s1 = _mm256_add_epi64(s1, _mm256_load_si256(v + 1));
        s2 = _mm256_add_epi64(s2, _mm256_load_si256(v + 2));
        s3 = _mm256_add_epi64(s3, _mm256_load_si256(v + 3));
        s0 = _mm256_add_epi64(s0, _mm256_load_si256(v + 4));
        s1 = _mm256_add_epi64(s1, _mm256_load_si256(v + 5));
        s2 = _mm256_add_epi64(s2, _mm256_load_si256(v + 6));
        s3 = _mm256_add_epi64(s3, _mm256_load_si256(v + 7));
    }
    s0 = _mm256_add_epi64(_mm256_add_epi64(s0, s1), _mm256_add_epi64(s2, s3));
    uint64_t o[4];
    _mm256_storeu_si256((__m256i *)(void *)o, s0);
    return o[0] + o[1] + o[2] + o[3];
}

/* The same with 64-byte loads (p 64-byte aligned). */
__attribute__((target("avx512f"))) static uint64_t read_avx512(const uint8_t *p, size_t n)
{
    __m512i s0 = _mm512_setzero_si512(), s1 = s0, s2 = s0, s3 = s0;
    for (size_t i = 0; i < n; i += 512) {
        const __m512i *v = (const __m512i *)(const void *)(p + i);
        s0 = _mm512_add_epi64(s0, _mm512_load_si512(v + 0));
        s1 = _mm512_add_epi64(s1, _mm512_load_si512(v + 1));
        s2 = _mm512_add_epi64(s2, _mm512_load_si512(v + 2));
        s3 = _mm512_add_epi64(s3, _mm512_load_si512(v + 3));
        s0 = _mm512_add_epi64(s0, _mm512_load_si512(v + 4));
        s1 = _mm512_add_epi64(s1, _mm512_load_si512(v + 5));
        s2 = _mm512_add_epi64(s2, _mm512_load_si512(v + 6));
        s3 = _mm512_add_epi64(s3, _mm512_load_si512(v + 7));
    }
    s0 = _mm512_add_epi64(_mm512_add_epi64(s0, s1), _mm512_add_epi64(s2, s3));
    return (uint64_t)_mm512_reduce_add_epi64(s0);
}
#endif

/* The kernels, narrowest first, with the cpu_isa_t level each needs. */
static const struct {
    const char *name;
    read_fn     fn;
    cpu_isa_t   level;
} readers[] = {
    { "portable", read_portable, CPU_ISA_PORTABLE },
#ifdef HAVE_X86_READ
    { "avx2", read_avx2, CPU_ISA_AVX2 },
    { "avx512", read_avx512, CPU_ISA_AVX512 },
#endif
};

/* ------------------------------------------------------------ threads */

typedef struct {
    read_fn        fn;
    const uint8_t *p;     /* [bytes], this thread's share */
    size_t         bytes;
    uint64_t       sum;   /* read by the caller */
} reader_t;

static void *reader_main(void *arg)
{
    reader_t *r = arg;
    r->sum = r->fn(r->p, r->bytes);
    return NULL;
}

/* One pass over the buffer by n threads (the caller is reader 0): its
   seconds, or a negative value when a thread cannot be started. */
static double read_pass(reader_t *r, int n)
{
    pthread_t th[BENCH_BW_MAX_THREADS];
    int started = 1, ok = 1;
    double t0 = bench_now();
    for (; started < n; started++)
        if (pthread_create(&th[started], NULL, reader_main, &r[started]) != 0) {
            ok = 0;
            break;
        }
    reader_main(&r[0]);
    for (int i = 1; i < started; i++)
        pthread_join(th[i], NULL);
    double t = bench_now() - t0;
    return ok ? t : -1.0;
}

/* Median bytes per second of fn over the buffer on n threads, or -1. */
static double read_rate(read_fn fn, uint8_t *buf, size_t share, int n)
{
    reader_t r[BENCH_BW_MAX_THREADS];
    for (int i = 0; i < n; i++)
        r[i] = (reader_t){ fn, buf + (size_t)i * share, share, 0 };
    double t[BENCH_BW_PASSES];
    uint64_t check = 0;
    for (int pass = 0; pass < BENCH_BW_PASSES; pass++) {
        t[pass] = read_pass(r, n);
        if (t[pass] < 0)
            return -1.0;
        for (int i = 0; i < n; i++)
            check += r[i].sum;
    }
    /* Every byte is 3, so a sum of 0 would mean the loads were lost. */
    return check == 0 ? 0.0 : (double)share * (double)n / bench_median(t, BENCH_BW_PASSES);
}

int bench_read_bandwidth(int n_threads, double *gb_per_s, const char **width)
{
    if (n_threads < 1 || n_threads > BENCH_BW_MAX_THREADS || gb_per_s == NULL || width == NULL)
        return ERR_INVALID;
    size_t share = BENCH_BW_BYTES / (size_t)n_threads / 4096 * 4096; /* a multiple of UNROLL_BYTES */
    uint8_t *buf = aligned_alloc(4096, BENCH_BW_BYTES);
    if (buf == NULL)
        return ERR_NOMEM;
    memset(buf, 3, BENCH_BW_BYTES);
    double best = 0.0;
    const char *best_name = readers[0].name;
    cpu_isa_t have = cpu_isa_best();
    for (size_t k = 0; k < sizeof readers / sizeof readers[0]; k++) {
        if (readers[k].level > have)
            continue;
        double rate = read_rate(readers[k].fn, buf, share, n_threads);
        if (rate < 0) {
            free(buf);
            return ERR_NOMEM;
        }
        if (rate > best) {
            best = rate;
            best_name = readers[k].name;
        }
    }
    free(buf);
    *gb_per_s = best / 1e9;
    *width = best_name;
    return 0;
}

int bench_copy_bandwidth(double *gb_per_s)
{
    size_t n = BENCH_BW_BYTES / 2;
    char *a = malloc(n), *b = malloc(n);
    if (a == NULL || b == NULL) {
        free(a);
        free(b);
        return ERR_NOMEM;
    }
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
    *gb_per_s = 2.0 * (double)n / bench_median(t, 5) / 1e9;
    return 0;
}
