/*
 * test_pool.c - the CPU worker pool under stress: every task of every job
 * runs exactly once, on jobs of changing sizes back to back (a worker that
 * wakes late must never run a task of the next job, nor count one twice),
 * and pool_run never hangs.  A fault inside a task on a worker thread
 * reaches the process's own handler, as the daemon's SIGBUS handler for a
 * truncated model mapping needs.
 */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "cpu/pool.h"
#include "test.h"

enum { MAX_TASKS = 24 };

typedef struct {
    _Atomic uint32_t runs[MAX_TASKS];
} job_t;

static void task(void *ctx, uint32_t t, uint32_t thread)
{
    (void)thread;
    job_t *j = ctx;
    atomic_fetch_add_explicit(&j->runs[t], 1, memory_order_relaxed);
}

typedef struct {
    int n_threads;
    uint32_t n_jobs;
    uint64_t bad;
    pthread_t thread;
} run_t;

static void *stress_one(void *arg)
{
    run_t *r = arg;
    int n_threads = r->n_threads;
    uint32_t n_jobs = r->n_jobs;
    pool_t *p;
    ASSERT_EQ_INT(pool_create(&p, n_threads), 0);
    job_t *jobs = calloc(n_jobs, sizeof *jobs);
    uint32_t *sizes = malloc(n_jobs * sizeof *sizes);
    ASSERT(jobs != NULL && sizes != NULL);
    uint32_t seed = 12345;
    for (uint32_t i = 0; i < n_jobs; i++) {
        seed = seed * 1103515245u + 12345u;
        /* small and large jobs interleaved: a late worker holding the next job's larger
           n_tasks against the previous job's exhausted claim is the case to catch */
        sizes[i] = (i & 1) ? 2 + (seed >> 16) % 4 : 8 + (seed >> 16) % (MAX_TASKS - 8);
    }
    alarm(20);   /* a lost task hangs pool_run: the runner reports the signal */
    for (uint32_t i = 0; i < n_jobs; i++)
        pool_run(p, task, &jobs[i], sizes[i]);
    pool_destroy(p);
    alarm(0);
    uint64_t bad = 0;
    for (uint32_t i = 0; i < n_jobs; i++)
        for (uint32_t t = 0; t < MAX_TASKS; t++) {
            uint32_t want = t < sizes[i];
            uint32_t got = atomic_load(&jobs[i].runs[t]);
            if (got != want && bad++ < 5)
                printf("  job %u (%u tasks): task %u ran %u times\n", i, sizes[i], t, got);
        }
    r->bad = bad;
    free(jobs);
    free(sizes);
    return NULL;
}

/* Four pools at once, each with its own caller: more threads than cores, so
   that workers are descheduled at every point, as on a busy machine. */
static void stress(int n_threads, uint32_t n_jobs)
{
    enum { POOLS = 4 };
    run_t runs[POOLS];
    alarm(60);    /* a lost task hangs pool_run: the runner reports the signal */
    for (int i = 0; i < POOLS; i++) {
        runs[i] = (run_t){ .n_threads = n_threads, .n_jobs = n_jobs };
        ASSERT_EQ_INT(pthread_create(&runs[i].thread, NULL, stress_one, &runs[i]), 0);
    }
    uint64_t bad = 0;
    for (int i = 0; i < POOLS; i++) {
        pthread_join(runs[i].thread, NULL);
        bad += runs[i].bad;
    }
    alarm(0);
    ASSERT_MSG(bad == 0, "%llu task counts wrong", (unsigned long long)bad);
}

TEST(every_task_once_two_threads) { stress(2, 300000); }
TEST(every_task_once_three_threads) { stress(3, 150000); }
TEST(every_task_once_four_threads) { stress(4, 150000); }

/* ---------------------------------------------------------------- faults in tasks */

typedef struct {
    const volatile char *page;  /* a mapping whose file was cut to 0 bytes */
    _Atomic int worker_ran;
} bus_job_t;

/* The test passes here: the worker's fault reached the handler. */
static void on_bus(int sig)
{
    (void)sig;
    _exit(0);
}

/* Thread 0 (pool_run's caller) waits, so that a worker is the one to read the page. */
static void bus_task(void *ctx, uint32_t task, uint32_t thread)
{
    (void)task;
    bus_job_t *j = ctx;
    if (thread == 0) {
        for (int i = 0; i < 5000 && !atomic_load(&j->worker_ran); i++)
            usleep(1000);
        return;
    }
    (void)j->page[0];           /* SIGBUS: past the end of the file */
    atomic_store(&j->worker_ran, 1);
}

TEST(fault_in_a_worker_reaches_the_handler)
{
    char path[] = "/tmp/llamad-test-pool.XXXXXX";
    int fd = mkstemp(path);
    ASSERT(fd >= 0);
    unlink(path);
    long page = sysconf(_SC_PAGESIZE);
    ASSERT_EQ_INT(ftruncate(fd, page), 0);
    void *map = mmap(NULL, (size_t)page, PROT_READ, MAP_SHARED, fd, 0);
    ASSERT(map != MAP_FAILED);
    ASSERT_EQ_INT(ftruncate(fd, 0), 0);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_bus;
    sigemptyset(&sa.sa_mask);
    ASSERT_EQ_INT(sigaction(SIGBUS, &sa, NULL), 0);
    pool_t *p;
    ASSERT_EQ_INT(pool_create(&p, 2), 0);
    bus_job_t j = { .page = map };
    alarm(20);
    pool_run(p, bus_task, &j, 2);
    /* only reached when the worker read the page without a fault, or never ran */
    ASSERT_MSG(0, "the worker %s", atomic_load(&j.worker_ran) ? "read past the file without SIGBUS"
                                                              : "took no task in 5 s");
}

TEST_LIST(T(every_task_once_two_threads), T(every_task_once_three_threads),
          T(every_task_once_four_threads), T(fault_in_a_worker_reaches_the_handler))
