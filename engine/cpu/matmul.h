/*
 * matmul.h - the CPU backend's weight matrix products.
 *
 * cpu_matmul computes y = x W^T for a weight matrix W stored in any of
 * the element types of quant.h, reading W's blocks where they lie: a
 * block is dequantised into registers or a small per-thread stack tile,
 * never into a copy of the matrix (a caller may hand in a reordered copy
 * of the same bytes, cpu_matmul_pack).  With CPU_PREC_EXACT (the default)
 * activations stay float32 and every product is accumulated in float32;
 * CPU_PREC_FAST (below) quantises them to int8 per block for some types.
 * The kernels' instruction set is chosen at run time (cpu_isa_t).
 *
 * Batch invariance (CPU_PREC_EXACT; FAST: see cpu_prec_t).  For each
 * output y[t][o] the sequence of floating-point operations is fixed by
 * the code path alone: the row's elements
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

#include <stddef.h>
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
 * block size; F32 weights may start at any byte (read in place where
 * they start on a float, else copied a chunk at a time).  Returns 0,
 * ERR_UNSUPPORTED for a type with no kernel, ERR_INVALID for a NULL
 * pointer or a ragged n_in, ERR_RANGE when the matrix's size does not fit
 * in memory's address range, ERR_NOMEM.
 * Uses under 128 KiB of stack per thread; with CPU_PREC_FAST it also
 * needs cpu_matmul_scratch_bytes(n_in, n_tok) for the quantised
 * activations: p's scratch (pool_scratch, grown if smaller: reserve the
 * largest call's size up front and no call allocates), or with no pool
 * an allocation freed before it returns.
 */
int cpu_matmul(pool_t *p, qtype_t wt, const void *w, uint32_t n_out, uint32_t n_in,
               const float *x, uint32_t n_tok, float *y);

/*
 * Scratch bytes a CPU_PREC_FAST call of n_tok tokens by n_in columns needs
 * at the level in force (cpu_matmul_isa): 3.375 per element on the
 * AVX512 and AMX levels from two tokens up (a second copy of the quants,
 * laid out for their tiles), 2.375 otherwise.  Reserve again after a
 * cpu_matmul_configure that changes the level.
 */
size_t cpu_matmul_scratch_bytes(uint32_t n_in, uint32_t n_tok);

/*
 * One matrix of a cpu_matmul_multi call: y = x W^T, as cpu_matmul's w,
 * wt, n_out, y; and optionally packed, cpu_matmul_pack's copy of w, which
 * the kernels that read packed matrices read instead of w (the same bits).
 */
typedef struct {
    qtype_t     type;
    const void *w;      /* [n_out, n_in] */
    uint32_t    n_out;
    float      *y;      /* [n_tok, n_out] */
    const void *packed; /* NULL, or cpu_matmul_pack(type, w, n_out, n_in) */
} cpu_mm_out_t;

#define CPU_MM_MULTI_MAX 4

/*
 * cpu_matmul for n_mat (1 .. CPU_MM_MULTI_MAX) matrices that read the same
 * x (n_in columns each): one pool run covers all of them, and with
 * CPU_PREC_FAST x is quantised once for all.  Each y is bit for bit what
 * cpu_matmul gives for that matrix alone.  The checks and errors are
 * cpu_matmul's, per matrix, all made before anything is computed;
 * ERR_INVALID also for a NULL mats or a bad n_mat.  The y must not
 * overlap each other, x or any w.
 */
int cpu_matmul_multi(pool_t *p, const cpu_mm_out_t *mats, uint32_t n_mat, uint32_t n_in,
                     const float *x, uint32_t n_tok);

/*
 * A weight matrix packed for the kernels of the level and precision now
 * set: the `fast` kernels of the AVX2, AVX-VNNI and AVX512 levels read
 * Q4_0, Q4_1, Q8_0, Q4_K, Q5_K and Q6_K matrices of up to 8192 columns in
 * tiles of sixteen rows, which they otherwise gather from eight or sixteen
 * rows and transpose block by block (matmul_kern.h has the layout: the
 * same bytes, reordered, padded to whole tiles).  cpu_matmul_packed_bytes is the size of the copy, or 0
 * where no kernel of this level and precision would read one (another
 * level, `exact`, another type, a longer row, a ragged n_in); call it
 * after cpu_matmul_setup.  cpu_matmul_pack writes the copy into dst
 * (that many bytes, 64-byte aligned); 0, ERR_INVALID for a NULL pointer,
 * ERR_UNSUPPORTED where the size is 0.  cpu_matmul_pack_tiles writes only
 * tiles [tile0, tile0 + n_tiles) of it (rows from 16 tile0), at their
 * places in the copy that starts at dst, so that several threads can
 * write one copy; ERR_RANGE past the last tile.  A copy stays valid if
 * the level changes later (the kernels that do not read it read w).
 * Start-up, any thread.
 */
size_t cpu_matmul_packed_bytes(qtype_t wt, uint32_t n_out, uint32_t n_in);
int cpu_matmul_pack(qtype_t wt, const void *w, uint32_t n_out, uint32_t n_in, void *dst);
int cpu_matmul_pack_tiles(qtype_t wt, const void *w, uint32_t n_out, uint32_t n_in, void *dst,
                          uint32_t tile0, uint32_t n_tiles);
/* The tiles of sixteen rows in a packed copy of n_out rows (< 2^28 + 1). */
uint32_t cpu_matmul_packed_tiles(uint32_t n_out);

/*
 * Dequantise row `row` of w (as in cpu_matmul; the caller guarantees row
 * < the number of rows) into out[n_in], exactly as quant_dequant does.
 * Returns 0 or the same errors as cpu_matmul.
 */
int cpu_embed_row(qtype_t wt, const void *w, uint32_t n_in, uint32_t row, float *out);

/*
 * Instruction-set levels, lowest first.
 *   PORTABLE  plain C (GCC / clang vector extensions)
 *   AVX2      AVX2 + FMA + F16C
 *   AVXVNNI   AVX2 + AVX-VNNI (VEX vpdpbusd: Alder Lake, Zen 5)
 *   AVX512    AVX-512 F/BW/VL + VNNI, with the OS saving the zmm state
 *   AMX       AVX512 + AMX-TILE and AMX-INT8, the OS saving the tile state
 *             and granting it to this process (Sapphire Rapids and later);
 *             `fast` takes sixteen tokens or more through tile multiplies
 * The `fast` kernels differ per level only in how they form the same
 * exact integer dot products, so every level gives the same bits there.
 * `exact` uses the AVX2 kernels at the AVXVNNI level and the AVX512
 * level's at AMX.
 */
typedef enum {
    CPU_ISA_PORTABLE = 0,
    CPU_ISA_AVX2     = 1,
    CPU_ISA_AVXVNNI  = 2,
    CPU_ISA_AVX512   = 3,
    CPU_ISA_AMX      = 4,
} cpu_isa_t;

/*
 * Precision of the products.
 *   EXACT  float32 activations, the operation order described above.
 *   FAST   for Q4_0, Q4_1, Q8_0, Q4_K, Q5_K and Q6_K weights: each token's
 *          activations are quantised per block of 32 to int8
 *          (cpu_quantize_act), once per call, and multiplied with integer
 *          dot products; the other weight types take the EXACT kernels.  With dx the activation
 *          block's scale, q_x its quants and S = sum q_x over the block:
 *          Q4_0, Q4_1, Q8_0: one float accumulator per output; for each
 *          block b in increasing order, with P the exact integer sum of
 *          q_w * q_x over the block's 32 elements, fused multiply-adds
 *            Q8_0: acc += (dw * dx) * P        (q_w signed)
 *            Q4_0: acc += (dw * dx) * P        (q_w = nibble - 8)
 *            Q4_1: acc += (dw * dx) * P; acc += mw * (dx * S)
 *            Q4_K: acc += ((d * sc_j) * dx) * P; acc += -(dmin * m_j) * (dx * S)
 *          where for Q4_K block b is sub-block j = b % 8 of super-block
 *          b / 8, q_w its nibble, sc_j and m_j its 6-bit scale and min, d
 *          and dmin the super-block's; Q5_K the same, q_w its nibble plus
 *          16 times its fifth bit;
 *            Q6_K: acc += (d * dx) * (sc_lo * P_lo + sc_hi * P_hi)
 *          with q_w the 6-bit value - 32, P_lo and P_hi the exact sums
 *          over the block's first and second 16 elements and sc_lo, sc_hi
 *          their signed 8-bit scales (the integer is below 2^24, exact in
 *          a float).  The output is acc.  Batch-invariant
 *          and thread-count-invariant like EXACT, and the same bits on
 *          every ISA level.
 */
typedef enum {
    CPU_PREC_EXACT = 0,
    CPU_PREC_FAST  = 1,
} cpu_prec_t;

/*
 * Whether this build and this CPU (and OS) can run level isa, from CPUID
 * and XGETBV, computed once; a level's machine need not have the level
 * below it (AVX-512 VNNI CPUs may lack AVX-VNNI).  Any thread.
 */
int cpu_isa_usable(cpu_isa_t isa);

/* The highest usable level.  Any thread. */
cpu_isa_t cpu_isa_best(void);

/*
 * Parse "auto", "portable", "avx2", "avxvnni", "avx512" or "amx" ("auto" is
 * cpu_isa_best()).  Returns 0, or ERR_INVALID for any other text.
 */
int cpu_isa_parse(const char *s, cpu_isa_t *out);

/* The level's name as cpu_isa_parse reads it ("avx2"). */
const char *cpu_isa_name(cpu_isa_t isa);

/*
 * Make every later cpu_matmul use level `isa` and precision `prec`.
 * Returns 0, ERR_UNSUPPORTED when isa is not usable (nothing changes), ERR_INVALID for values outside the enums.  Call it only
 * while no cpu_matmul is running (start-up, tests, benchmarks).  The
 * default is cpu_isa_best() and CPU_PREC_EXACT.
 */
int cpu_matmul_configure(cpu_isa_t isa, cpu_prec_t prec);

/*
 * cpu_matmul_configure from the settings' text: isa as cpu_isa_parse
 * reads it, prec "exact" or "fast"; NULL means "auto" / "exact", but
 * both NULL changes nothing (a tool may have configured it already).
 * Returns 0, or ERR_INVALID / ERR_UNSUPPORTED with a message in err
 * naming the setting.  As cpu_matmul_configure (the settings are the
 * process's, shared by every CPU backend in it).
 */
int cpu_matmul_setup(const char *isa, const char *prec, char *err, size_t errlen);

/* The level and precision cpu_matmul uses now. */
cpu_isa_t  cpu_matmul_isa(void);
cpu_prec_t cpu_matmul_precision(void);

/*
 * Force the portable C path (on != 0), or go back to cpu_isa_best(),
 * keeping the precision; for tests and tools.  As cpu_matmul_configure.
 */
void cpu_matmul_force_portable(int on);

/* "avx2" or "portable": the kernels `exact` runs now. */
const char *cpu_matmul_path(void);

/*
 * The activation quantisation of CPU_PREC_FAST, for one token's blocks
 * or several tokens' (each block is treated alone): for each block b of
 * 32 elements of x[n] (n a multiple of 32), with
 * amax = max |x| over the block:
 *   d[b] = amax / 127 (float division), and
 *   q[32b + k] = roundf(x[32b + k] * (127 / amax)), clamped to
 *   [-127, 127]; when 127 / amax is infinite (amax is 0, or below
 *   127 / FLT_MAX, about 3.7e-37) d[b] = 0 and q = 0 instead;
 *   ls[8b + l] = q[32b + 4l] + ... + q[32b + 4l + 3] (an integer, exact
 *   in a float).
 * A block holding a NaN or an infinity gets d = NaN and q = 0, so that
 * its products are NaN as with float activations.  Any thread.
 */
void cpu_quantize_act(const float *x, uint32_t n, int8_t *q, float *d, float *ls);

#endif
