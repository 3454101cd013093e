/*
 * pack.c - the packed copies of the weight matrices (pack.h).
 */
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/err.h"
#include "base/log.h"
#include "matmul.h"
#include "pack.h"

const weight_t *cpu_layer_weight(const model_t *m, uint32_t l, w_role_t r)
{
    const layer_weights_t *w = &m->layers[l];
    switch (r) {
    case W_ATTN_NORM: return &w->attn_norm;
    case W_Q: return &w->wq;
    case W_K: return &w->wk;
    case W_V: return &w->wv;
    case W_O: return &w->wo;
    case W_FFN_NORM: return &w->ffn_norm;
    case W_GATE: return &w->w_gate;
    case W_UP: return &w->w_up;
    case W_DOWN: return &w->w_down;
    default: return NULL;
    }
}

/*
 * Ask for transparent huge pages over [p, p + bytes), before it is first
 * touched: the KV pool, whose step reads every sequence's blocks, a few
 * KiB each, from anywhere in the pool (with 4 KiB pages nearly each one
 * is a TLB miss and a page walk), and the packed weights.  Advice only:
 * where the kernel has no huge pages (or THP is "never") the memory stays
 * in small pages, and nothing else changes.
 */
#define HUGE_PAGE ((size_t)2 << 20)

void cpu_huge_pages(void *p, uint64_t bytes)
{
#ifdef MADV_HUGEPAGE
    uintptr_t lo = ((uintptr_t)p + HUGE_PAGE - 1) & ~(uintptr_t)(HUGE_PAGE - 1);
    uintptr_t hi = ((uintptr_t)p + bytes) & ~(uintptr_t)(HUGE_PAGE - 1);
    if (hi > lo)
        (void)madvise((void *)lo, hi - lo, MADV_HUGEPAGE);
#else
    (void)p;
    (void)bytes;
#endif
}

/* A matrix to pack and the first of its tasks (PACK_TASK_TILES tiles each). */
typedef struct {
    const weight_t *w;
    void *dst;
    uint32_t first_task;
} pack_job_t;

typedef struct {
    const pack_job_t *jobs;
    uint32_t n_jobs;
    atomic_int failed; /* a task's cpu_matmul_pack_tiles refused its tiles */
} pack_run_t;

/* 1024 rows a task: 1.2 MB of a 1B model's Q4_K attn_q, 6.1 MB of its
 * Q8_0 ffn_down; a few tasks for a small matrix, enough to share the
 * large ones between threads */
#define PACK_TASK_TILES 64u

static void pack_task(void *ctx, uint32_t task, uint32_t thread)
{
    (void)thread;
    pack_run_t *r = ctx;
    uint32_t lo = 0, hi = r->n_jobs; /* the last job whose first task <= task */
    while (hi - lo > 1) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (r->jobs[mid].first_task <= task)
            lo = mid;
        else
            hi = mid;
    }
    const pack_job_t *j = &r->jobs[lo];
    const uint32_t tiles = cpu_matmul_packed_tiles((uint32_t)j->w->n_out);
    const uint32_t t0 = (task - j->first_task) * PACK_TASK_TILES;
    /* should not fail (cpu_matmul_packed_bytes said the matrix packs, and
     * the tiles are within it); if it ever does, the copy is not used */
    if (cpu_matmul_pack_tiles(j->w->type, j->w->data, (uint32_t)j->w->n_out, (uint32_t)j->w->n_in, j->dst, t0,
                              tiles - t0 < PACK_TASK_TILES ? tiles - t0 : PACK_TASK_TILES) != 0)
        atomic_store(&r->failed, 1);
}

/*
 * Pack every matrix that the kernels of this level and precision read
 * packed (cpu_matmul_packed_bytes: the Q4_0, Q4_1, Q8_0 and K-quant
 * matrices of the layers and the output, under `fast` at the AVX2,
 * AVX-VNNI and AVX512 levels) into one allocation (in huge pages where
 * the kernel gives them), on the pool's threads, then drop their pages of
 * the file mapping (madvise DONTNEED: clean pages, read from the file
 * again should anything touch them), so that resident memory stays about the file's
 * size, not those matrices twice.  An output tied to the token embedding
 * is packed too: the embedding reads its rows from the mapping, which
 * brings their pages back as tokens are embedded (with the kernel's
 * fault-around, their neighbours' too): at most that table once more.  A
 * GGUF file read into private memory (model-mmap = no) is left as it is:
 * its pages cannot be dropped, and a copy would double them.  (A test's
 * synthetic model is packed, its buffer kept.)
 */
int cpu_pack_weights(cpu_packed_t *pk, const model_t *m, pool_t *pool)
{
    const uint64_t n_slots = (uint64_t)m->hp.n_layer * W_COUNT + 1;
    if (m->src == MODEL_SRC_GGUF && !m->weights_file_mapped)
        return 0;
    size_t total = 0;
    const uint64_t t0 = clock_now_ns();
    pack_job_t *jobs = NULL;
    uint32_t n_tasks = 0;
    for (int pass = 0; pass < 2; pass++) {
        size_t off = 0;
        for (uint64_t i = 0; i < n_slots; i++) {
            const weight_t *w = i + 1 == n_slots ? &m->output
                                : cpu_layer_weight(m, (uint32_t)(i / W_COUNT), (w_role_t)(i % W_COUNT));
            size_t bytes = w == NULL || w->n_out > UINT32_MAX || w->n_in > UINT32_MAX ? 0
                           : cpu_matmul_packed_bytes(w->type, (uint32_t)w->n_out, (uint32_t)w->n_in);
            if (bytes == 0)
                continue;
            if (pass == 0) {
                total += (bytes + 63) & ~(size_t)63;
                continue;
            }
            void *dst = (char *)pk->buf + off;
            off += (bytes + 63) & ~(size_t)63;
            jobs[pk->n] = (pack_job_t){ w, dst, n_tasks };
            /* every task but a matrix's last covers at least 18 KiB of the
             * copy (1024 rows of one Q4_0 block): fewer than 2^32 tasks in
             * any copy memory can hold */
            n_tasks += (cpu_matmul_packed_tiles((uint32_t)w->n_out) + PACK_TASK_TILES - 1) / PACK_TASK_TILES;
            pk->slot[i] = dst;
            pk->n++;
        }
        if (pass == 0) {
            if (total == 0)
                return 0;
            /* in huge pages where the kernel gives them (cpu_huge_pages): every
             * step streams the copy, and with 4 KiB pages that is a TLB
             * miss each 4 KiB */
            if (total > SIZE_MAX - HUGE_PAGE)
                return ERR_NOMEM;
            const size_t alloc = (total + HUGE_PAGE - 1) & ~(HUGE_PAGE - 1);
            pk->slot = calloc(n_slots, sizeof *pk->slot);
            pk->buf = aligned_alloc(HUGE_PAGE, alloc);
            jobs = calloc(n_slots, sizeof *jobs);
            if (pk->slot == NULL || pk->buf == NULL || jobs == NULL) {
                free(jobs);
                return ERR_NOMEM;
            }
            cpu_huge_pages(pk->buf, alloc);
        }
    }
    /* written by the pool (the copy is read and written at several GB/s a
     * thread), then the mapped pages of the packed matrices dropped */
    pack_run_t run = { jobs, pk->n, 0 };
    pool_run(pool, pack_task, &run, n_tasks);
    if (atomic_load(&run.failed)) {
        log_error("cpu backend: a matrix sized for the packed copy would not pack");
        free(jobs);
        return ERR_STATE;
    }
    const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    for (uint32_t k = 0; k < pk->n && m->weights_file_mapped; k++) {
        const weight_t *w = jobs[k].w;
        uintptr_t lo = ((uintptr_t)w->data + page - 1) & ~(page - 1);
        uintptr_t hi = ((uintptr_t)w->data + w->nbytes) & ~(page - 1);
        if (hi > lo)
            (void)madvise((void *)lo, hi - lo, MADV_DONTNEED);
    }
    free(jobs);
    log_info("cpu backend: %u matrices packed in tiles of sixteen rows for the %s fast "
             "kernels (%.1f MiB, %.2f s on %u thread%s)", pk->n, cpu_isa_name(cpu_matmul_isa()),
             total / 1048576.0,
             (clock_now_ns() - t0) / 1e9, pool_threads(pool), pool_threads(pool) == 1 ? "" : "s");
    return 0;
}

void cpu_packed_free(cpu_packed_t *pk)
{
    free(pk->slot);
    free(pk->buf);
    pk->slot = NULL;
    pk->buf = NULL;
    pk->n = 0;
}
