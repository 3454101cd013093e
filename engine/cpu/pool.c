/*
 * pool.c - the CPU backend's worker pool.
 *
 * One job at a time.  pool_run writes the job (fn, ctx, n_tasks), zeroes
 * `done`, then publishes the job by storing `claim` = generation << 32 |
 * 0.  Threads take task indices by compare-and-swap on `claim`, which
 * succeeds only while the generation is the one they read the job under
 * and the index is below n_tasks; each finished task bumps `done`, and
 * pool_run returns when done == n_tasks.  So pool_run waits only for
 * tasks, never for a worker that was slow to wake and took none: on a
 * busy machine a descheduled worker costs nothing.  A worker that wakes
 * late sees either the old generation with no task left, or the new one.
 *
 * When every task has finished, pool_run closes the generation (the index
 * becomes CLOSED, above any n_tasks) before it returns, and only then may
 * the next pool_run rewrite the job's fields.  Without the close, a worker
 * that woke late could read the next job's fields (its larger n_tasks)
 * while `claim` still showed the old generation with its index at the old
 * n_tasks, and its claim would succeed: a task run twice, `done` counted
 * once too often, and pool_run waiting forever.  The fields are stored
 * with release and loaded with acquire, so a worker that sees a new field
 * also sees the close, and its claim fails.
 *
 * Waiting, on both sides, is a spin of at most POOL_SPIN_NS followed by a
 * condition-variable wait.  A forward pass calls pool_run hundreds of
 * times a step with little serial work between calls, so the spin is
 * what keeps the hand-off short; the sleep is what keeps an idle daemon
 * idle.  Past POOL_YIELD_NS the spin yields the core between checks: when
 * the machine has fewer free cores than the pool has threads, the thread
 * being waited for is often queued on the waiter's own core, and a spin
 * that kept the core would hold it up for the whole budget (2 threads on
 * one core took 1.4-1.9x the time of 1; with the yield, 1.0-1.1x).
 * Sleepers test their condition under the mutex that the waker takes
 * after changing it, so no wake-up is lost.
 */
#include "pool.h"

#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

#include "base/clock.h"
#include "base/err.h"

/* The index of a closed generation: no task can be claimed under it. */
#define CLOSED UINT32_MAX

/* How long a waiting thread spins before it sleeps. */
#define POOL_SPIN_NS 100000

/*
 * After this long a spinning thread yields its core between checks: on a
 * machine busier than the pool, the thread it waits for may be queued
 * behind it on the same core.
 */
#define POOL_YIELD_NS 10000

typedef struct {
    pool_t   *pool;
    uint32_t  index; /* 1 .. n_threads-1; 0 is pool_run's caller */
    pthread_t thread;
} worker_t;

struct pool {
    uint32_t  n_threads;
    worker_t *workers; /* [n_threads - 1] */

    pthread_mutex_t mu;
    pthread_cond_t  wake;           /* workers: a new generation, or stop */
    pthread_cond_t  finished;       /* the caller: done == n_tasks */
    int             n_sleeping;     /* workers in cond_wait(wake); under mu */
    int             caller_waiting; /* under mu */

    /* The current job: relaxed atomics, ordered by `claim`. */
    _Atomic(pool_task_cb) fn;
    _Atomic(void *)       ctx;
    _Atomic uint32_t      n_tasks;

    _Atomic uint64_t claim; /* generation << 32 | next task index; the
                             * generation may wrap: only "differs" is asked */
    _Atomic uint32_t done;  /* tasks of the current job finished */
    _Atomic int      stop;

    void  *scratch;         /* pool_scratch's buffer; the caller's thread only */
    size_t scratch_bytes;
};

/* ------------------------------------------------------------- waiting */

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

static inline uint32_t generation_of(uint64_t claim)
{
    return (uint32_t)(claim >> 32);
}

/* True once the generation differs from seen (or the pool stops). */
static int job_posted(pool_t *p, uint32_t seen)
{
    return generation_of(atomic_load_explicit(&p->claim, memory_order_acquire)) != seen
           || atomic_load_explicit(&p->stop, memory_order_acquire);
}

static int job_finished(pool_t *p, uint32_t n_tasks)
{
    return atomic_load_explicit(&p->done, memory_order_acquire) == n_tasks;
}

/* Spin until cond(p, arg) holds or the spin budget is spent; its last value. */
static int spin_until(int (*cond)(pool_t *, uint32_t), pool_t *p, uint32_t arg)
{
    uint64_t start = 0;
    for (uint32_t i = 1;; i++) {
        if (cond(p, arg))
            return 1;
        cpu_relax();
        if ((i & 63) == 0) {
            uint64_t t = clock_now_ns();
            if (start == 0)
                start = t;
            else if (t - start > POOL_SPIN_NS)
                return 0;
            else if (t - start > POOL_YIELD_NS)
                sched_yield(); /* a pool thread waiting for this core gets it */
        }
    }
}

/* ------------------------------------------------------------- working */

/*
 * Run tasks of generation gen until none is left.  fn, ctx and n were
 * read after `claim` showed gen; a claim succeeds only while gen is still
 * current, and then they are gen's.
 */
static void run_tasks(pool_t *p, uint32_t gen, uint32_t thread)
{
    pool_task_cb fn = atomic_load_explicit(&p->fn, memory_order_acquire);
    void *ctx = atomic_load_explicit(&p->ctx, memory_order_acquire);
    uint32_t n = atomic_load_explicit(&p->n_tasks, memory_order_acquire);
    uint64_t v = atomic_load_explicit(&p->claim, memory_order_acquire);
    for (;;) {
        if (generation_of(v) != gen || (uint32_t)v >= n)
            return;
        if (!atomic_compare_exchange_weak_explicit(&p->claim, &v, v + 1, memory_order_acq_rel,
                                                   memory_order_acquire))
            continue; /* v now holds the current value */
        fn(ctx, (uint32_t)v, thread);
        if (atomic_fetch_add_explicit(&p->done, 1, memory_order_acq_rel) + 1 == n) {
            pthread_mutex_lock(&p->mu);
            if (p->caller_waiting)
                pthread_cond_signal(&p->finished);
            pthread_mutex_unlock(&p->mu);
        }
        v = atomic_load_explicit(&p->claim, memory_order_acquire);
    }
}

static void *worker_main(void *arg)
{
    worker_t *w = arg;
    pool_t *p = w->pool;
    uint32_t seen = 0;

    for (;;) {
        if (!spin_until(job_posted, p, seen)) {
            pthread_mutex_lock(&p->mu);
            p->n_sleeping++;
            while (!job_posted(p, seen))
                pthread_cond_wait(&p->wake, &p->mu);
            p->n_sleeping--;
            pthread_mutex_unlock(&p->mu);
        }
        if (atomic_load_explicit(&p->stop, memory_order_acquire))
            break;
        seen = generation_of(atomic_load_explicit(&p->claim, memory_order_acquire));
        run_tasks(p, seen, w->index);
    }
    return NULL;
}

void pool_run(pool_t *p, pool_task_cb fn, void *ctx, uint32_t n_tasks)
{
    if (n_tasks == 0)
        return;
    if (p == NULL || p->n_threads == 1 || n_tasks == 1) {
        for (uint32_t t = 0; t < n_tasks; t++)
            fn(ctx, t, 0);
        return;
    }

    /* The previous generation is closed: nobody can claim from it. */
    uint32_t gen = generation_of(atomic_load_explicit(&p->claim, memory_order_relaxed)) + 1;
    atomic_store_explicit(&p->fn, fn, memory_order_release);
    atomic_store_explicit(&p->ctx, ctx, memory_order_release);
    atomic_store_explicit(&p->n_tasks, n_tasks, memory_order_release);
    atomic_store_explicit(&p->done, 0, memory_order_relaxed);
    atomic_store_explicit(&p->claim, (uint64_t)gen << 32, memory_order_release);

    pthread_mutex_lock(&p->mu);
    if (p->n_sleeping > 0)
        pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);

    run_tasks(p, gen, 0);

    if (!spin_until(job_finished, p, n_tasks)) {
        pthread_mutex_lock(&p->mu);
        p->caller_waiting = 1;
        while (!job_finished(p, n_tasks))
            pthread_cond_wait(&p->finished, &p->mu);
        p->caller_waiting = 0;
        pthread_mutex_unlock(&p->mu);
    }
    /* close the generation before the fields can change (see the top) */
    atomic_store_explicit(&p->claim, (uint64_t)gen << 32 | CLOSED, memory_order_release);
}

/* ------------------------------------------------------------ lifecycle */

/* Stop and join the first n_started workers. */
static void stop_workers(pool_t *p, uint32_t n_started)
{
    pthread_mutex_lock(&p->mu);
    atomic_store_explicit(&p->stop, 1, memory_order_release);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    for (uint32_t i = 0; i < n_started; i++)
        pthread_join(p->workers[i].thread, NULL);
}

int pool_create(pool_t **out, int n_threads)
{
    if (out == NULL || n_threads < 1 || n_threads > POOL_MAX_THREADS)
        return ERR_INVALID;

    pool_t *p = calloc(1, sizeof *p);
    if (p == NULL)
        return ERR_NOMEM;
    p->n_threads = (uint32_t)n_threads;
    atomic_init(&p->fn, NULL);
    atomic_init(&p->ctx, NULL);
    atomic_init(&p->n_tasks, 0);
    atomic_init(&p->claim, 0);
    atomic_init(&p->done, 0);
    atomic_init(&p->stop, 0);
    if (pthread_mutex_init(&p->mu, NULL) != 0)
        goto fail_mu;
    if (pthread_cond_init(&p->wake, NULL) != 0)
        goto fail_wake;
    if (pthread_cond_init(&p->finished, NULL) != 0)
        goto fail_finished;

    uint32_t n_workers = p->n_threads - 1;
    if (n_workers > 0) {
        p->workers = calloc(n_workers, sizeof *p->workers);
        if (p->workers == NULL)
            goto fail_workers;
    }

    /* Workers inherit the creating thread's mask: block every signal but the
     * ones a task's own fault raises (SIGBUS from a truncated model mapping,
     * SIGSEGV, SIGFPE, SIGILL).  The kernel delivers those to the faulting
     * thread even when blocked, but then with the default action, so the
     * daemon's SIGBUS handler would be bypassed and it would die without its
     * log line. */
    sigset_t all, old;
    sigfillset(&all);
    sigdelset(&all, SIGBUS);
    sigdelset(&all, SIGSEGV);
    sigdelset(&all, SIGFPE);
    sigdelset(&all, SIGILL);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    uint32_t started = 0;
    for (; started < n_workers; started++) {
        worker_t *w = &p->workers[started];
        w->pool = p;
        w->index = started + 1;
        if (pthread_create(&w->thread, NULL, worker_main, w) != 0)
            break;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (started < n_workers) {
        stop_workers(p, started);
        goto fail_threads;
    }

    *out = p;
    return 0;

fail_threads:
    free(p->workers);
fail_workers:
    pthread_cond_destroy(&p->finished);
fail_finished:
    pthread_cond_destroy(&p->wake);
fail_wake:
    pthread_mutex_destroy(&p->mu);
fail_mu:
    free(p);
    return ERR_NOMEM;
}

void pool_destroy(pool_t *p)
{
    if (p == NULL)
        return;
    stop_workers(p, p->n_threads - 1);
    free(p->scratch);
    free(p->workers);
    pthread_cond_destroy(&p->finished);
    pthread_cond_destroy(&p->wake);
    pthread_mutex_destroy(&p->mu);
    free(p);
}

void *pool_scratch(pool_t *p, size_t bytes)
{
    if (p == NULL)
        return NULL;
    if (bytes <= p->scratch_bytes)
        return p->scratch;
    size_t rounded = (bytes + 63) & ~(size_t)63;
    if (rounded < bytes)
        return NULL;
    void *fresh = aligned_alloc(64, rounded);
    if (fresh == NULL)
        return NULL;
    free(p->scratch);
    p->scratch = fresh;
    p->scratch_bytes = rounded;
    return fresh;
}

uint32_t pool_threads(const pool_t *p)
{
    return p == NULL ? 1 : p->n_threads;
}
