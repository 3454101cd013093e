/*
 * matmul.h - the CPU backend's weight matrix products.
 *
 * cpu_matmul computes y = x W^T for a weight matrix W stored in any of
 * the element types of quant.h, reading W's blocks where they lie: a
 * block is dequantised into registers or a small per-thread stack tile,
 * never into a copy of the matrix.  Activations stay float32 and every
 * product is accumulated in float32.
 *
 * Batch invariance.  For each output y[t][o] the sequence of floating-
 * point operations is fixed by the code path alone: the row's elements
 * are taken eight at a time in increasing order; element i is multiplied
 * by x[t][i] and added (one fused multiply-add on the AVX2 path) into
 * lane i % 8 of one accumulator; the eight lanes are then summed as
 * ((l0+l4) + (l2+l6)) + ((l1+l5) + (l3+l7)).  The dequantised weights
 * are the same floats whichever call computes them.  So y[t][o] is
 * bit-for-bit the same whatever n_tok is, whichever row of x holds the
 * token, and however many threads run.  (The portable and AVX2 paths
 * need not agree with each other: their dequantisers and multiply-adds
 * round differently.)
 *
 * Threads: the engine thread calls these; cpu_matmul spreads output rows
 * over the pool's threads.
 */
#ifndef LLAMAD_CPU_MATMUL_H
#define LLAMAD_CPU_MATMUL_H

#include <stdint.h>

#include "base/quant.h"
#include "pool.h"

/*
 * y[t][o] = sum_i W[o][i] * x[t][i] for t < n_tok, o < n_out.
 *
 *   w  [n_out, n_in]  rows stored in type wt, row-major, as GGUF stores
 *                     a tensor of ne = {n_in, n_out}
 *   x  [n_tok, n_in]  float32
 *   y  [n_tok, n_out] float32, written; must not overlap x or w
 *
 * p may be NULL (run on the caller).  n_in must be a multiple of wt's
 * block size; F32 weights must be 4-byte aligned (GGUF data is).  Returns 0, ERR_UNSUPPORTED for a type with no kernel,
 * ERR_INVALID for a NULL pointer or a ragged n_in, ERR_RANGE when the
 * matrix's size does not fit in memory's address range.  Allocates
 * nothing; uses under 64 KiB of stack per thread.
 */
int cpu_matmul(pool_t *p, qtype_t wt, const void *w, uint32_t n_out, uint32_t n_in,
               const float *x, uint32_t n_tok, float *y);

/*
 * Dequantise row `row` of w (as in cpu_matmul; the caller guarantees row
 * < the number of rows) into out[n_in], exactly as quant_dequant does.
 * Returns 0 or the same errors as cpu_matmul.
 */
int cpu_embed_row(qtype_t wt, const void *w, uint32_t n_in, uint32_t row, float *out);

/*
 * Force the portable C path (on != 0) even where AVX2 and FMA are
 * present; for tests and benchmarks.  Call it only while no cpu_matmul
 * is running.
 */
void cpu_matmul_force_portable(int on);

/* "avx2" or "portable": the path cpu_matmul takes now. */
const char *cpu_matmul_path(void);

#endif
