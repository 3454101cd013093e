/*
 * matmul_kern.h - internal to cpu_matmul: the job that its driver
 * (matmul.c) hands to the kernels of each code path (matmul_portable.c
 * for the portable C path, matmul_avx2.c and matmul_kq_avx2.c for x86-64
 * AVX2 + FMA).
 *
 * A task is a run of whole groups of MM_ROWS output rows (the driver
 * sizes it).  Both paths can take a group through the tile: tokens are
 * taken MM_TOKS at a time; for each such batch the rows' n_in elements
 * are walked in chunks of MM_KC (a multiple of every block size, and of
 * 8): the group's rows are dequantised chunk by chunk into a stack tile
 * (float32 rows are read in place), and every token of the batch adds
 * that chunk into its per-(token, row) accumulator, which lives in a
 * stack array between chunks.  The AVX2 path also has kernels that skip
 * the tile for a few tokens of the small-block types and the K-quants.  None of this
 * changes the order of the operations on any one output, only where
 * intermediate values are kept, which is what keeps the result
 * independent of n_tok and of the thread count (see matmul.h).
 *
 * Called on the pool's threads, each task on one thread.
 */
#ifndef LLAMAD_CPU_MATMUL_KERN_H
#define LLAMAD_CPU_MATMUL_KERN_H

#include <stddef.h>
#include <stdint.h>

#include "base/quant.h"

#define MM_ROWS 16  /* output rows per group (tile height) */
#define MM_KC   256 /* elements of a row dequantised at a time */
#define MM_TOKS 64  /* tokens sharing one pass over the weights */
/* Up to this many tokens of the block types skip the tile on the x86
 * paths (measured: the tile, which dequantises once per MM_TOKS tokens,
 * not once per four, overtakes at about twelve). */
#define MM_FEW_TOKS 8
/* Tokens a pass of the AVX512 level's fast tiles (its Q8_TOKS): xqp holds
 * each pass's quants block by block, so that a tile's step reads the
 * blocks of its tokens from one run of 32 bytes a token. */
#define MM_PASS_TOKS 16

typedef struct {
    qtype_t        type;
    const uint8_t *w;           /* [n_out, row_bytes] */
    size_t         row_bytes;
    uint32_t       block_elems;
    uint32_t       block_bytes;
    uint32_t       n_out;
    uint32_t       n_in;
    uint32_t       n_tok;
    const float   *x;           /* [n_tok, n_in] */
    float         *y;           /* [n_tok, n_out] */
    /* CPU_PREC_FAST only: x quantised by cpu_quantize_act (matmul.h) */
    const int8_t  *xq;          /* [n_tok, n_in] */
    const float   *xd;          /* [n_tok, n_in / 32] */
    const float   *xls;         /* [n_tok, n_in / 32, 8]: lane sums (exact) */
    const float   *xs;          /* [n_tok, n_in / 32]: S, the block's sum of quants
                                 * (an integer below 2^12, exact) */
    const float   *xo;          /* [n_tok, n_in / 32]: xd * S, rounded once */
    const int8_t  *xqp;         /* xq in passes of MM_PASS_TOKS tokens (mm_pass_at) */
    size_t         group_bytes; /* the x86 fast kernels' rows a group at prefill
                                 * (mm_group_bytes) */
    const uint8_t *wp;          /* w packed (MM_PACK_*, below), which the fast
                                 * kernels of the AVX2, AVX-VNNI and AVX512 levels
                                 * read instead of w; or NULL */
} mm_job_t;

/*
 * xqp's layout: the tokens in passes of MM_PASS_TOKS from token 0 (the
 * last pass np = the rest), pass p at xq's own offset of its first token,
 * holding its np tokens' quants of block 0, then of block 1, and so on
 * (token t's 32 bytes of block b at (b * np + t - p0) * 32 from there).
 * Token t0's block 0 in it; *bs the bytes from one block to the next.
 * One token is xq's own layout.
 */
static inline const int8_t *mm_pass_at(const mm_job_t *j, uint32_t t0, size_t *bs)
{
    uint32_t p0 = t0 - t0 % MM_PASS_TOKS;
    uint32_t np = j->n_tok - p0 < MM_PASS_TOKS ? j->n_tok - p0 : MM_PASS_TOKS;
    *bs = (size_t)QK_SMALL * np;
    return j->xqp + (size_t)p0 * j->n_in + (size_t)QK_SMALL * (t0 - p0);
}

/*
 * The packed layout of a Q4_0, Q4_1, Q8_0, Q4_K, Q5_K or Q6_K matrix
 * (cpu_matmul_pack): tiles of sixteen rows, tile i rows [16i, 16i + 16)
 * (rows past n_out repeat the last row), each tile its blocks in order,
 * each block of the tile 16 * block_bytes bytes.  A block's first h
 * bytes are h / 2 halves (Q4_0, Q8_0: d; Q4_1: d, m; Q4_K, Q5_K: d,
 * dmin), and half i of the sixteen rows is a run of 32 bytes (row r's at
 * 2r); the block's bytes up to its last t bytes of halves (Q6_K: d; t is
 * 0 for the others), a whole number of dwords, follow in runs of 64
 * bytes whose dword r is row r's: run k holds bytes h + 4k .. h + 4k + 3
 * of each row's block; then the trailing halves, runs of 32 bytes as the
 * leading ones.  So a Q4_0 / Q4_1 block is its d's (and m's), then four
 * runs of the 16 nibble bytes; Q8_0 eight runs of the 32 bytes; Q4_K its
 * d's, dmin's, three runs of the 12 scale bytes and 32 of the 128 nibble
 * bytes (Q5_K: eight of the 32 bytes of fifth bits before them); Q6_K 32
 * runs of low bits, 16 of high bits, 4 of scales, then its d's.  A run is
 * then what the sixteen-row tiles gather from sixteen rows and transpose
 * (lane r of a 512-bit register row r's four bytes: block16, load16),
 * one load; and its two halves of 32 bytes what the eight-row tiles make
 * of rows 0 .. 7 and 8 .. 15 (transpose8, block8; matmul_q8_p8.h).  Only
 * rows of at most MM_PACK_MAX_NB blocks of 32 are packed: the tile
 * kernels keep every block's terms in a buffer of that many.
 */
#define MM_PACK_MAX_NB 256
#define MM_PACK_ROWS   16

/* Whether cpu_matmul_pack takes type t. */
static inline int mm_pack_type(qtype_t t)
{
    return t == QT_Q4_0 || t == QT_Q4_1 || t == QT_Q8_0 || t == QT_Q4_K || t == QT_Q5_K
           || t == QT_Q6_K;
}

/* The bytes of halves at the start of a block of a type mm_pack_type
 * takes, and (mm_pack_tail) at its end. */
static inline uint32_t mm_pack_halves(qtype_t t)
{
    return t == QT_Q6_K ? 0 : t == QT_Q4_0 || t == QT_Q8_0 ? 2 : 4;
}

static inline uint32_t mm_pack_tail(qtype_t t)
{
    return t == QT_Q6_K ? 2 : 0;
}

/* A Q6_K block's bytes (base/quant.c's; test_cpu_matmul checks them): the
 * size of the tile16 buffer a mapped super-block is packed into. */
#define MM_Q6_K_BYTES 210

/*
 * Bytes of weights the x86 fast kernels keep in L2 as one group of rows
 * while every pass of tokens goes over them (matmul_q8_x86.h's rows_type):
 * a quarter of this CPU's L2, 64 to 256 KiB (1 MiB assumed where the size
 * is unknown).  A pass fills its tokens' terms once per group: at 64 KiB
 * a 1B model's ffn_down (3168-byte Q4_K rows) did so every sixteen rows,
 * and 256 KiB ran that matrix at 512 tokens 1.14x faster on one thread of
 * a Xeon with AVX-512 and a 2 MiB L2.
 */
size_t mm_group_bytes(void);

/* A float tile path's rows from column k0: an F32 matrix's own (*ws =
 * n_in) where they start on a float, else NULL, for the caller to fill
 * its tile (*ws = MM_KC): a safetensors file's data starts anywhere. */
static inline const float *mm_f32_rows(const mm_job_t *j, const uint8_t *rows, uint32_t k0, size_t *ws)
{
    if (j->type != QT_F32 || ((uintptr_t)rows & (sizeof(float) - 1)) != 0) {
        *ws = MM_KC;
        return NULL;
    }
    *ws = j->n_in;
    return (const float *)(const void *)rows + k0;
}

/*
 * The float tiles' blocks of tokens (`exact` at many tokens): a task goes
 * over its groups of rows once per block, and every group reads all of a
 * block's activations, so a block that stays in L2 is read from memory
 * once for all the task's groups, not once a group (a 1B ffn_down, 5632
 * inputs, at 512 tokens: 11.5 MB a group, near the memory's rate).  Each
 * block costs each group a fill of its tile, so blocks are as long as L2
 * allows, up to cap tokens: MM_X_BYTES fits the 1.25-2 MiB L2 of recent
 * Xeons beside the tiles (1B shapes at 512 tokens on the 512-bit tiles,
 * one thread of a Xeon with 2 MiB: 512 KiB lost 15% on ffn_down, 1 MiB
 * and 1.5 MiB gained 16-27% on every shape, one block of 128 tokens 5%
 * less).  At least 16 tokens, a multiple of four; a task of one group
 * shares nothing, so it takes cap.
 */
#define MM_X_BYTES (1024u << 10)

static inline uint32_t mm_tok_block(uint32_t n_in, uint32_t n_rows, uint32_t cap)
{
    uint64_t t = MM_X_BYTES / (sizeof(float) * (uint64_t)n_in) / 4 * 4; /* n_in > 0 */
    return n_rows <= MM_ROWS || t > cap ? cap : t < 16 ? 16 : (uint32_t)t;
}

/* Scale and min of sub-block j of a Q4_K / Q5_K block's 12 scale bytes q
 * (the packing of quant.c). */
static inline void mm_k4_scale_min(int j, const uint8_t *q, int *sc, int *m)
{
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (q[j + 4] & 0x0f) | ((q[j - 4] >> 6) << 4);
        *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}

/* Rows [o0, o0 + n) of the job, all tokens: portable C. */
void cpu_mm_rows_portable(const mm_job_t *job, uint32_t o0, uint32_t n);

/* The same with AVX2 + FMA; call only when cpu_mm_avx2_usable() said yes. */
void cpu_mm_rows_avx2(const mm_job_t *job, uint32_t o0, uint32_t n);

/* The same at the AVX512 level (matmul_avx512.c): one token of Q4_0 /
 * Q4_1 / Q8_0 / Q4_K / Q5_K / Q6_K (Q4_K by table lookups) and the tile
 * path, on 512-bit registers holding two rows; the AVX2 kernels' bits.
 * The few-token kernels of more than one token are cpu_mm_rows_avx2's.
 * Call only when cpu_mm_x86_levels() has level 3. */
void cpu_mm_rows_avx512(const mm_job_t *job, uint32_t o0, uint32_t n);

/* The AVX2 tile filler: columns [k0, k0 + kc) of rows [0, nr) of rows
 * (row_bytes apart) into tile[nr][MM_KC], dequantised as the few-token
 * kernels dequantise (F32 is left alone: it is read in place), and the
 * next chunk prefetched.  The same condition as cpu_mm_rows_avx2. */
void cpu_mm_fill_tile_avx2(const mm_job_t *job, const uint8_t *rows, uint32_t nr, uint32_t k0,
                           uint32_t kc, float *tile);

/* Whether this build has the AVX2 kernels and this CPU can run them. */
int cpu_mm_avx2_usable(void);
/* n halves at b as floats (exact), with F16C; the same condition. */
void cpu_mm_deq_f16_avx2(const uint8_t *b, float *out, uint32_t n);

/* The cpu_isa_t levels (matmul.h) this build and CPU can run: bit i for level i. */
int cpu_mm_x86_levels(void);

/*
 * CPU_PREC_FAST, rows [o0, o0 + n) of the job, all tokens, for a Q4_0,
 * Q4_1, Q8_0 or K-quant job whose xq / xd / xls / xs / xo (and for the
 * AVX512 and AMX levels xqp) are filled: portable C
 * (matmul_q8.c) and one kernel per x86 level (matmul_q8_x86.c; call one
 * only when cpu_mm_x86_levels() has its bit).
 */
void cpu_mmq_rows_portable(const mm_job_t *job, uint32_t o0, uint32_t n);
void cpu_mmq_rows_avx2(const mm_job_t *job, uint32_t o0, uint32_t n);
void cpu_mmq_rows_avxvnni(const mm_job_t *job, uint32_t o0, uint32_t n);
void cpu_mmq_rows_avx512(const mm_job_t *job, uint32_t o0, uint32_t n);

/* The AMX level (matmul_amx.c): MM_AMX_MIN_TOKS tokens or more of Q4_0,
 * Q4_1, Q8_0, Q4_K, Q5_K and Q6_K by tile multiplies; all else by
 * cpu_mmq_rows_avx512.  The same bits. */
#define MM_AMX_MIN_TOKS 16 /* the tiles' rows */
void cpu_mmq_rows_amx(const mm_job_t *job, uint32_t o0, uint32_t n);

#endif
