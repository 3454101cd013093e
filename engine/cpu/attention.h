/*
 * attention.h - the CPU backend's causal attention over the paged KV
 * cache, tiled so that K and V are read once per group of query heads.
 *
 * Work is split by (sequence, KV head, query tile): a task takes up to
 * `tile` consecutive tokens of one sequence and the G = n_head / n_head_kv
 * query heads that share one KV head, and walks that head's K/V blocks
 * once, in position order; each block (B keys of head_dim floats) is used
 * by all tile x G query rows while it is in L1.  Each row keeps its own
 * online softmax (running maximum, running sum, float accumulator), so
 * the score matrix is never formed.  A decode step (one token for each
 * sequence) with at least two sequences per pool thread takes all of a
 * sequence's KV heads in one task (where n_head_kv <= tile, so that its
 * rows fit the same scratch): a block's heads lie together in the pool,
 * so each task reads runs n_head_kv times longer.  Each task
 * prefetches its next block a cache line of K and one of V at a time as
 * it works through the current one.
 *
 * Batch invariance.  One query row's result is a fixed sequence of
 * operations set by the code alone: for each KV block of its sequence in
 * order (the last one cut at its own position), the scores q.k (eight
 * lanes, then ((l0+l4)+(l2+l6))+((l1+l5)+(l3+l7)), then times
 * 1/sqrt(head_dim)), the block's maximum, the correction exp(old max -
 * new max) applied to the sum and the accumulator, then for each key in
 * order p = exp(score - max), sum += p, acc += p v.  exp is vexp8
 * (vexp.h; vexp16, its sixteen-lane form, gives each lane the same).
 * Which other rows share the tile, the tile size and the thread count
 * change only which thread does the work and when.  The three builds of
 * the kernel (plain, AVX2, AVX512) give the same bits (no fused
 * multiply-adds: see vexp.h).  The AVX512 build takes up to four heads of
 * a group for one token at once: their scores two heads to a 512-bit
 * register, each row in its own eight lanes, so that one load of a key
 * serves both (an odd last head in eight lanes alone, as the AVX2 build
 * runs every head); exp sixteen scores at a time; and p v sixteen
 * elements of a row to a register, one load of a value serving every
 * head.  Each lane's operations are the ones above.
 *
 * K and V are float32, or IEEE half (kv_f16: what cpu-precision fast
 * stores, half the bytes a step reads).  Halves are widened to float a
 * block at a time into the thread's scratch before the block is used
 * (where a tile is one token, the AVX512 build widens V's as it reads
 * them instead, once for the up to four heads a call takes); widening is
 * exact, so a row's result is the order above applied to the floats the
 * halves hold, in every build.  cpu_kv_put_f16 is the one
 * narrowing (round to nearest even, as base/quant.h's f32_to_f16, bit
 * for bit in every build).
 *
 * Threads: the engine thread calls cpu_attention; it spreads the tasks
 * over the pool.
 */
#ifndef LLAMAD_CPU_ATTENTION_H
#define LLAMAD_CPU_ATTENTION_H

#include <stddef.h>
#include <stdint.h>

#include "engine/sched/batch.h"
#include "pool.h"

typedef struct {
    uint32_t head_dim;          /* a multiple of 8, at most CPU_ATTN_MAX_HEAD_DIM */
    uint32_t n_head, n_head_kv; /* n_head a multiple of n_head_kv */
    uint32_t block_tokens;      /* B: keys per KV block, 1..64 */
    const void *k;              /* [n_blocks, n_head_kv, B, head_dim] this layer's keys */
    const void *v;              /* [n_blocks, n_head_kv, B, head_dim] this layer's values */
    const batch_t *batch;       /* the step's tokens, already checked by batch_check */
    const float *q;             /* [n_tokens, n_head, head_dim] roped queries */
    float *out;                 /* [n_tokens, n_head, head_dim] written */
    int kv_f16;                 /* k and v hold IEEE halves (uint16_t), else floats */
} cpu_attn_t;

#define CPU_ATTN_MAX_HEAD_DIM 512

/* Scratch floats one thread needs for a model of these shapes (the
   caller gives each pool thread this many, 32-byte aligned). */
size_t cpu_attn_scratch_floats(uint32_t n_head, uint32_t n_head_kv, uint32_t head_dim);

/*
 * Run attention for every token of a->batch.  tile_first has room for
 * batch->n_seqs + 1 entries (written: the first tile of each sequence);
 * scratch holds pool_threads(p) * cpu_attn_scratch_floats(...) floats,
 * 32-byte aligned.  p may be NULL (the caller does all).  Returns 0, or
 * ERR_INVALID for shapes outside the limits above.  Allocates nothing.
 */
int cpu_attention(pool_t *p, const cpu_attn_t *a, uint32_t *tile_first, float *scratch);

/*
 * The kernel's builds.  AUTO follows the matrix kernels' level
 * (cpu_matmul_isa: PORTABLE plain, AVX2 and AVXVNNI the AVX2 build,
 * AVX512 and AMX the AVX512 build).  Every build gives the same bits.
 */
typedef enum { CPU_ATTN_AUTO, CPU_ATTN_PLAIN, CPU_ATTN_AVX2, CPU_ATTN_AVX512 } cpu_attn_build_t;

/* Whether this build of llamad and this CPU can run build b. */
int cpu_attention_build_usable(cpu_attn_build_t b);

/* The build the next cpu_attention runs: the forced one, else the one
   that matches cpu_matmul_isa() (as above). */
cpu_attn_build_t cpu_attention_build(void);

/* Run build b from now on (AUTO: as above); for tests and benchmarks.
   ERR_UNSUPPORTED (nothing changes) where b cannot run.  Call it only
   while no cpu_attention runs. */
int cpu_attention_force(cpu_attn_build_t b);

/* dst[i] = f32_to_f16(src[i]) for i < n, eight at a time by F16C where
   the AVX2 or AVX512 build runs; the same bits either way (NaNs stay
   NaNs, quiet). */
void cpu_kv_put_f16(uint16_t *dst, const float *src, uint32_t n);

#endif
