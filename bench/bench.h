/*
 * bench.h - what the benchmarks share: a monotonic clock and the median
 * of a few runs.
 */
#ifndef LLAMAD_BENCH_H
#define LLAMAD_BENCH_H

#include <stdlib.h>
#include <time.h>

#include "base/clock.h"

static inline double bench_now(void)
{
    return clock_now_ns() * 1e-9;
}

static inline int bench_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* The median of v[0..n) (sorts v). */
static inline double bench_median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, bench_cmp_double);
    return v[n / 2];
}

#endif
