/*
 * clock.h - the one clock for timing and deadlines: CLOCK_MONOTONIC in
 * nanoseconds (never jumps with the wall clock; its origin is arbitrary,
 * so only differences mean anything).  Any thread.
 */
#ifndef LLAMAD_CLOCK_H
#define LLAMAD_CLOCK_H

#include <stdint.h>
#include <time.h>

static inline uint64_t clock_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

#endif
