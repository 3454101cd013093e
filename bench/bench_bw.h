/*
 * bench_bw.h - the machine's memory bandwidth as the benchmarks quote it:
 * a read-only probe (the ceiling for a decode step, which only reads its
 * weights) and a copy rate (bytes read plus bytes written).  Method and
 * the reasons for it: bench_bw.c.
 *
 * Threads: call from one thread; the read probe starts and joins its own.
 */
#ifndef LLAMAD_BENCH_BW_H
#define LLAMAD_BENCH_BW_H

/* Bytes in the probes' buffers: far above any last-level cache. */
#define BENCH_BW_BYTES (1024ull << 20)

/*
 * Read bandwidth of n_threads threads (1 .. BENCH_BW_MAX_THREADS), each
 * summing its own contiguous share of one BENCH_BW_BYTES buffer: bytes
 * read over the time from the common start to the last thread's finish,
 * median of BENCH_BW_PASSES passes, for each load width this CPU has; the
 * fastest width's figure.  Sets *gb_per_s and *width (that width's name,
 * "avx512", "avx2" or "portable"; a static string) and returns
 * 0; ERR_INVALID for a bad count, ERR_NOMEM when the buffer or a thread
 * cannot be had (nothing is left allocated or running).
 */
#define BENCH_BW_MAX_THREADS 64
#define BENCH_BW_PASSES 7
int bench_read_bandwidth(int n_threads, double *gb_per_s, const char **width);

/*
 * Copy bandwidth on the calling thread: memcpy of BENCH_BW_BYTES / 2,
 * bytes read plus bytes written per second, median of 5.  Sets *gb_per_s
 * and returns 0, or ERR_NOMEM.
 */
int bench_copy_bandwidth(double *gb_per_s);

#endif
