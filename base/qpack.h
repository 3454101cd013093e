/*
 * qpack.h - GGUF quantised weight matrices repacked for a GPU's 16-byte
 * loads (gpu-weight-type = native), and the reference dequantisation of
 * the packed layout.
 *
 * A matrix W [n_out, n_in] of GGUF blocks (quant.h) is split into two
 * arrays in one buffer:
 *
 *   qs   [n_out, blocks_per_row, qs_bytes]    the quants of each block,
 *                                             contiguous; qs_bytes is a
 *                                             multiple of 16 and the array
 *                                             starts the buffer, so every
 *                                             block's quants are 16-byte
 *                                             aligned (a uint4 load each)
 *   meta [n_out, blocks_per_row, meta_bytes]  the block's scales and mins,
 *                                             at meta_off (a multiple of
 *                                             256), 4-byte aligned each
 *
 * Per type (the bytes are the GGUF block's, in its order, only moved):
 *
 *   type  qs                         meta
 *   Q4_0  qs[16]                     f16 d, pad 2          (4 B)
 *   Q4_1  qs[16]                     f16 d, f16 m          (4 B)
 *   Q8_0  qs[32]                     f16 d, pad 2          (4 B)
 *   Q4_K  qs[128]                    f16 d, f16 dmin, scales[12]  (16 B)
 *   Q5_K  qh[32], qs[128]            f16 d, f16 dmin, scales[12]  (16 B)
 *   Q6_K  ql[128], qh[64]            scales[16], f16 d, pad 2     (20 B)
 *
 * Padding bytes are 0.  A warp reading row r with lane i on block i gets
 * consecutive 16-byte pieces: one coalesced read of the row's quants;
 * the scales, 1/8 to 1/5 of the quants' bytes, come from their own array
 * without breaking that stride.
 *
 * Pure functions; any thread.  No CUDA type: the CUDA backend packs on the
 * host with these and copies the result up (cuda/upload.cu); its kernels
 * read the same layout (cuda/qmatvec.cu) and are tested against
 * qpack_dequant_row through the CPU backend (tests/gpu/test_cuda_native.c).
 */
#ifndef LLAMAD_QPACK_H
#define LLAMAD_QPACK_H

#include <stddef.h>
#include <stdint.h>

#include "quant.h"

/* The largest n_out or n_in a packed matrix may have (a 2^24 vocabulary or width). */
#define QPACK_MAX_DIM (1u << 24)

typedef struct {
    qtype_t type;
    uint32_t n_out, n_in;       /* rows, columns (elements) */
    uint32_t blocks_per_row;    /* n_in / block_elems */
    uint32_t block_elems;
    uint32_t src_block_bytes;   /* the GGUF block */
    uint32_t qs_bytes;          /* per block in qs, a multiple of 16 */
    uint32_t meta_bytes;        /* per block in meta, a multiple of 4 */
    uint64_t meta_off;          /* bytes from the buffer's start to meta */
    uint64_t total_bytes;       /* the whole packed buffer */
} qpack_layout_t;

/* 1 when `type` has a packed layout (Q4_0, Q4_1, Q8_0, Q4_K, Q5_K, Q6_K). */
int qpack_supported(uint32_t type);

/*
 * The layout of a packed [n_out, n_in] matrix of `type`.  Returns 0;
 * ERR_UNSUPPORTED for a type without a packed layout; ERR_FORMAT when n_in
 * is not a multiple of the type's block or a dimension is 0; ERR_RANGE
 * when a dimension exceeds QPACK_MAX_DIM (or a size would overflow).  err
 * (may be NULL) names the type and the bad value; *out is unchanged on error.
 */
int qpack_layout(uint32_t type, uint64_t n_out, uint64_t n_in, qpack_layout_t *out, char *err, size_t errlen);

/*
 * Pack n_rows whole rows of GGUF blocks at src (rows row0 .. row0+n_rows-1
 * of the matrix, src pointing at row0's first block) into the packed
 * buffer pieces for those rows: qs_dst receives n_rows * blocks_per_row *
 * qs_bytes bytes, meta_dst n_rows * blocks_per_row * meta_bytes (for the
 * whole buffer: qs_dst = buf + qpack_qs_offset(L, row0), meta_dst = buf +
 * qpack_meta_offset(L, row0)).  Returns 0, or ERR_INVALID when the rows
 * pass the matrix's end.
 */
int qpack_rows(const qpack_layout_t *L, const void *src, uint64_t row0, uint64_t n_rows, void *qs_dst,
               void *meta_dst);

/* Byte offsets of row `row`'s quants and metadata in the packed buffer. */
static inline uint64_t qpack_qs_offset(const qpack_layout_t *L, uint64_t row)
{
    return row * L->blocks_per_row * L->qs_bytes;
}
static inline uint64_t qpack_meta_offset(const qpack_layout_t *L, uint64_t row)
{
    return L->meta_off + row * L->blocks_per_row * L->meta_bytes;
}

/*
 * Row `row` of the packed matrix at `packed` (the whole buffer, layout L)
 * dequantised into dst [n_in]: bit for bit what quant_dequant gives for
 * the original blocks.  Returns 0 or ERR_INVALID (row out of range).
 */
int qpack_dequant_row(const qpack_layout_t *L, const void *packed, uint64_t row, float *dst);

#endif
