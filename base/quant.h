/*
 * quant.h - tensor element types (GGML numbering, as stored in GGUF and
 * mapped from safetensors dtypes) and the reference dequantisers.
 *
 * The reference dequantisers are plain C, exact (they reproduce the
 * float each stored block means, bit for bit) and slow; the backends
 * have their own fast paths and are tested against these.
 * Pure functions; any thread.
 */
#ifndef LLAMAD_QUANT_H
#define LLAMAD_QUANT_H

#include <stddef.h>
#include <stdint.h>

/* Values are GGML's type ids, so a GGUF tensor's type maps 1:1. */
typedef enum {
    QT_F32  = 0,
    QT_F16  = 1,
    QT_Q4_0 = 2,
    QT_Q4_1 = 3,
    QT_Q8_0 = 8,
    QT_Q4_K = 12,
    QT_Q5_K = 13,
    QT_Q6_K = 14,
    QT_BF16 = 30,
} qtype_t;

#define QK_SMALL 32   /* elements per block of Q4_0, Q4_1, Q8_0 */
#define QK_K     256  /* elements per super-block of the K-quants */

typedef struct {
    const char *name;     /* "Q4_1" */
    uint32_t block_elems; /* elements per block (1 for float types) */
    uint32_t block_bytes; /* bytes per block */
} qtype_info_t;

/* Info for a supported type, or NULL for any other id (read from a file: hostile). */
const qtype_info_t *qtype_info(uint32_t type);

/*
 * Bytes used by n_elems elements of `type`, with overflow checks.
 * Returns 0, ERR_UNSUPPORTED for an unknown type, ERR_FORMAT when n_elems
 * is not a multiple of the block size, ERR_RANGE on overflow.
 */
int qtype_nbytes(uint32_t type, uint64_t n_elems, uint64_t *out);

/* IEEE half and bfloat16 conversions (round to nearest even on the way down). */
float    f16_to_f32(uint16_t h);
uint16_t f32_to_f16(float f);
float    bf16_to_f32(uint16_t h);
uint16_t f32_to_bf16(float f);

/*
 * Dequantise n elements (a multiple of the block size) of `type` starting
 * at src into dst.  Returns 0 or ERR_UNSUPPORTED / ERR_INVALID.
 */
int quant_dequant(qtype_t type, const void *src, float *dst, size_t n);

#endif
