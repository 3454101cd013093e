/*
 * fdlimit.h - the descriptor budget: what llamad needs for itself, and how
 * many client connections the process limit leaves room for.  Loop thread,
 * at start.
 */
#ifndef LLAMAD_FDLIMIT_H
#define LLAMAD_FDLIMIT_H

#include <stddef.h>

/* Descriptors llamad holds besides its connections: standard streams, the
   log, the model, the event loop's epoll, signal pipe and wake-up, the
   HTTP server's epoll, listening socket and wake-up, sd_notify, and the
   CUDA driver's device files (a few dozen), with room to spare. */
#define FDLIMIT_RESERVE 48u
/* The fewest client connections worth starting for. */
#define FDLIMIT_MIN_CONNS 8u

/*
 * Check RLIMIT_NOFILE before anything is opened.  Below FDLIMIT_RESERVE +
 * FDLIMIT_MIN_CONNS: returns ERR_RANGE and err says "too few file
 * descriptors (limit N, need at least M)".  When the soft limit leaves fewer than *max_conns
 * connections it is raised towards the hard limit; if that is still short,
 * *max_conns is lowered to what fits and *lowered is set (the caller warns).
 */
int fdlimit_check(unsigned *max_conns, int *lowered, char *err, size_t errlen);

#endif
