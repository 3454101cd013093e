/*
 * pool.h - a fixed pool of worker threads for the CPU backend's kernels.
 *
 * The pool owns n_threads - 1 worker threads from pool_create to
 * pool_destroy; the thread that calls pool_run is the pool's n_threads-th
 * member and works too.  pool_run hands out task indices until all are
 * taken and returns when every task has finished.  Between calls the
 * workers spin for a short while (POOL_SPIN_NS), then sleep on a
 * condition variable, so an idle pool uses no CPU.
 *
 * Threads: one thread at a time (the engine thread) calls pool_run and
 * pool_destroy; a task function must not call pool_run itself.
 */
#ifndef LLAMAD_CPU_POOL_H
#define LLAMAD_CPU_POOL_H

#include <stddef.h>
#include <stdint.h>

typedef struct pool pool_t;

/*
 * A task: ctx is pool_run's ctx, task is in [0, n_tasks), thread is in
 * [0, n_threads) and names the thread running it (0 is pool_run's
 * caller), so a task may use per-thread scratch indexed by it.
 */
typedef void (*pool_task_cb)(void *ctx, uint32_t task, uint32_t thread);

#define POOL_MAX_THREADS 256

/*
 * Start a pool of n_threads threads in all (1 <= n_threads <=
 * POOL_MAX_THREADS; 1 means that pool_run runs every task on its caller).
 * The workers start with every signal blocked but the synchronous ones
 * (SIGBUS, SIGSEGV, SIGFPE, SIGILL), so that other signals go to the
 * daemon's own threads and a fault in a task reaches the handler the
 * process installed for it.  Returns 0 and sets *out, or ERR_INVALID for a
 * bad count, ERR_NOMEM when memory or a thread cannot be had; on error
 * nothing is left running and *out is unchanged.
 */
int pool_create(pool_t **out, int n_threads);

/* Stop and join the workers and free the pool.  NULL is a no-op. */
void pool_destroy(pool_t *p);

/* Threads in the pool, the caller included (1 for a NULL pool). */
uint32_t pool_threads(const pool_t *p);

/*
 * Run fn(ctx, task, thread) once for every task in [0, n_tasks) across
 * the pool and return when all have returned.  Tasks are taken in
 * increasing order by whichever thread is free, so which thread runs a
 * task is not fixed.  p may be NULL: the caller runs every task.
 * Allocates nothing; memory written by the tasks is visible to the
 * caller on return.  A worker that is slow to wake delays the return
 * only by the tasks it has taken.
 */
void pool_run(pool_t *p, pool_task_cb fn, void *ctx, uint32_t n_tasks);

/*
 * Scratch memory for the jobs run on p: at least `bytes` bytes, 64-byte
 * aligned, owned by the pool.  The buffer grows (its contents lost) when
 * more is asked than it holds, and stays until the next larger request
 * or pool_destroy; so a caller that reserves its largest size up front
 * (backend creation) makes every later call allocation-free.  Only the
 * thread that calls pool_run may call it, and the pointer it returned
 * last is the only valid one.  Returns NULL when p is NULL or the memory
 * cannot be had (the old buffer is then kept).
 */
void *pool_scratch(pool_t *p, size_t bytes);

#endif
