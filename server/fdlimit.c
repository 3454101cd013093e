/*
 * fdlimit.c - the descriptor budget at start (THREATS: descriptor
 * exhaustion): a clear refusal instead of a crash inside libuv.
 */
#include "fdlimit.h"

#include <sys/resource.h>

#include "base/err.h"

int fdlimit_check(unsigned *max_conns, int *lowered, char *err, size_t errlen)
{
    *lowered = 0;
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return 0;   /* nothing to go by: let the calls that need descriptors say */
    const rlim_t least = FDLIMIT_RESERVE + FDLIMIT_MIN_CONNS;
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < least && rl.rlim_max != RLIM_INFINITY &&
        rl.rlim_max >= least) {
        struct rlimit nl = { least, rl.rlim_max };
        if (setrlimit(RLIMIT_NOFILE, &nl) == 0)
            rl.rlim_cur = least;
    }
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < least)
        return err_set(err, errlen, ERR_RANGE,
                       "too few file descriptors (limit %llu, need at least %llu; raise it with "
                       "ulimit -n or LimitNOFILE=)", (unsigned long long)rl.rlim_cur,
                       (unsigned long long)least);
    rlim_t want = (rlim_t)FDLIMIT_RESERVE + *max_conns;
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < want) {
        rlim_t raised = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > want ? want : rl.rlim_max;
        if (raised > rl.rlim_cur) {
            struct rlimit nl = { raised, rl.rlim_max };
            if (setrlimit(RLIMIT_NOFILE, &nl) == 0)
                rl.rlim_cur = raised;
        }
        if (rl.rlim_cur < want) {
            *max_conns = (unsigned)(rl.rlim_cur - FDLIMIT_RESERVE);
            *lowered = 1;
        }
    }
    return 0;
}
