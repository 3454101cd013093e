/*
 * test_qpack.c - the packed layout of quantised weights (base/qpack.h):
 * for random blocks of each type, dequantising the packed matrix equals
 * base/quant's reference dequantisation of the original blocks, bit for
 * bit (random bytes everywhere, scales included, so that NaN, inf and
 * subnormal scales are compared as bit patterns too); the layout's
 * alignment promises; packing in pieces of rows gives the same buffer as
 * packing at once; malformed sizes are refused.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "base/qpack.h"
#include "base/quant.h"
#include "test.h"

static uint64_t rng = 0x243f6a8885a308d3ull;
static uint64_t next_u64(void)
{
    uint64_t z = (rng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static const qtype_t packed_types[] = { QT_Q4_0, QT_Q4_1, QT_Q8_0, QT_Q4_K, QT_Q5_K, QT_Q6_K };
#define N_PACKED (sizeof packed_types / sizeof packed_types[0])

/* Random GGUF blocks for an [n_out, n_in] matrix; with `tame`, finite scales of ordinary size. */
static uint8_t *random_matrix(qtype_t t, uint32_t n_out, uint32_t n_in, int tame, uint64_t *bytes)
{
    uint64_t n;
    ASSERT_EQ_INT(qtype_nbytes(t, (uint64_t)n_out * n_in, &n), 0);
    uint8_t *p = malloc(n);
    ASSERT(p != NULL);
    for (uint64_t i = 0; i < n; i++)
        p[i] = (uint8_t)next_u64();
    if (tame) {
        const qtype_info_t *qi = qtype_info(t);
        for (uint64_t b = 0; b < n / qi->block_bytes; b++) {
            uint8_t *blk = p + b * qi->block_bytes;
            uint16_t h = f32_to_f16((float)(next_u64() % 1000 + 1) * 1e-5f);
            uint32_t at = t == QT_Q6_K ? 208 : 0;
            memcpy(blk + at, &h, 2);
            if (t == QT_Q4_1 || t == QT_Q4_K || t == QT_Q5_K)
                memcpy(blk + 2, &h, 2);
        }
    }
    *bytes = n;
    return p;
}

static void check_type(qtype_t t, uint32_t n_out, uint32_t n_in, int tame)
{
    const char *name = qtype_info(t)->name;
    uint64_t src_bytes;
    uint8_t *src = random_matrix(t, n_out, n_in, tame, &src_bytes);
    qpack_layout_t L;
    char err[256];
    ASSERT_MSG(qpack_layout(t, n_out, n_in, &L, err, sizeof err) == 0, "%s: %s", name, err);
    ASSERT_EQ_INT(L.qs_bytes % 16, 0);
    ASSERT_EQ_INT(L.meta_bytes % 4, 0);
    ASSERT_EQ_INT(L.meta_off % 256, 0);
    ASSERT(L.meta_off >= (uint64_t)n_out * L.blocks_per_row * L.qs_bytes);
    ASSERT_EQ_U64(L.total_bytes, L.meta_off + (uint64_t)n_out * L.blocks_per_row * L.meta_bytes);
    /* every byte of the block goes somewhere, and nothing else */
    ASSERT(L.qs_bytes + L.meta_bytes >= L.src_block_bytes && L.qs_bytes + L.meta_bytes < L.src_block_bytes + 4);

    /* pack at once, and in pieces of 3 rows: the same bytes */
    uint8_t *a = malloc(L.total_bytes), *b = malloc(L.total_bytes);
    ASSERT(a && b);
    memset(a, 0xAA, L.total_bytes);
    memset(b, 0x55, L.total_bytes);
    ASSERT_EQ_INT(qpack_rows(&L, src, 0, n_out, a + qpack_qs_offset(&L, 0), a + qpack_meta_offset(&L, 0)), 0);
    uint64_t row_src = (uint64_t)L.blocks_per_row * L.src_block_bytes;
    for (uint32_t r = 0; r < n_out; r += 3) {
        uint32_t nr = n_out - r < 3 ? n_out - r : 3;
        ASSERT_EQ_INT(qpack_rows(&L, src + r * row_src, r, nr, b + qpack_qs_offset(&L, r),
                                 b + qpack_meta_offset(&L, r)), 0);
    }
    /* the gap between qs and meta is not the packer's to write: compare the two arrays */
    uint64_t qs_len = (uint64_t)n_out * L.blocks_per_row * L.qs_bytes;
    ASSERT_MSG(memcmp(a, b, qs_len) == 0, "%s: qs differs packed in pieces", name);
    ASSERT_MSG(memcmp(a + L.meta_off, b + L.meta_off, L.total_bytes - L.meta_off) == 0,
               "%s: meta differs packed in pieces", name);

    float *ref = malloc(sizeof(float) * n_in), *got = malloc(sizeof(float) * n_in);
    ASSERT(ref && got);
    for (uint32_t r = 0; r < n_out; r++) {
        ASSERT_EQ_INT(quant_dequant(t, src + r * row_src, ref, n_in), 0);
        memset(got, 0xFF, sizeof(float) * n_in);
        ASSERT_EQ_INT(qpack_dequant_row(&L, a, r, got), 0);
        for (uint32_t i = 0; i < n_in; i++) {
            uint32_t ub, ug;
            memcpy(&ub, &ref[i], 4);
            memcpy(&ug, &got[i], 4);
            ASSERT_MSG(ub == ug, "%s %ux%u row %u element %u: packed %.9g (0x%08x), reference %.9g (0x%08x)", name,
                       n_out, n_in, r, i, (double)got[i], ug, (double)ref[i], ub);
        }
    }
    ASSERT_EQ_INT(qpack_dequant_row(&L, a, n_out, got), ERR_INVALID);
    ASSERT_EQ_INT(qpack_rows(&L, src, n_out - 1, 2, a, a + L.meta_off), ERR_INVALID);
    free(ref); free(got); free(a); free(b); free(src);
}

TEST(packed_equals_reference_random_blocks)
{
    for (size_t i = 0; i < N_PACKED; i++) {
        qtype_t t = packed_types[i];
        uint32_t be = qtype_info(t)->block_elems;
        check_type(t, 7, be * 3, 0);        /* raw random bytes: every scale pattern */
        check_type(t, 5, be * 5, 1);        /* ordinary scales */
        check_type(t, 1, be, 0);
    }
}

TEST(supported_types)
{
    for (size_t i = 0; i < N_PACKED; i++)
        ASSERT(qpack_supported(packed_types[i]));
    ASSERT(!qpack_supported(QT_F32));
    ASSERT(!qpack_supported(QT_F16));
    ASSERT(!qpack_supported(QT_BF16));
    ASSERT(!qpack_supported(9999));
    qpack_layout_t L;
    char err[256];
    ASSERT_EQ_INT(qpack_layout(QT_BF16, 4, 64, &L, err, sizeof err), ERR_UNSUPPORTED);
    ASSERT(strstr(err, "BF16") != NULL);
    ASSERT_EQ_INT(qpack_layout(9999, 4, 64, &L, NULL, 0), ERR_UNSUPPORTED);
}

TEST(malformed_sizes_refused)
{
    qpack_layout_t L, keep;
    memset(&keep, 0x5a, sizeof keep);
    char err[256];
    for (size_t i = 0; i < N_PACKED; i++) {
        qtype_t t = packed_types[i];
        uint32_t be = qtype_info(t)->block_elems;
        L = keep;
        ASSERT_EQ_INT(qpack_layout(t, 4, be + 16, &L, err, sizeof err), ERR_FORMAT);    /* part of a block */
        ASSERT_MSG(strstr(err, "multiple") != NULL, "%s", err);
        ASSERT_EQ_INT(qpack_layout(t, 4, be / 2, &L, err, sizeof err), ERR_FORMAT);
        ASSERT_EQ_INT(qpack_layout(t, 0, be, &L, err, sizeof err), ERR_FORMAT);
        ASSERT_EQ_INT(qpack_layout(t, 4, 0, &L, err, sizeof err), ERR_FORMAT);
        ASSERT_EQ_INT(qpack_layout(t, (uint64_t)QPACK_MAX_DIM + 1, be, &L, err, sizeof err), ERR_RANGE);
        ASSERT_EQ_INT(qpack_layout(t, 4, (uint64_t)QPACK_MAX_DIM + be, &L, err, sizeof err), ERR_RANGE);
        ASSERT_EQ_INT(qpack_layout(t, UINT64_MAX, UINT64_MAX - UINT64_MAX % be, &L, err, sizeof err), ERR_RANGE);
        ASSERT_EQ_INT(qpack_layout(t, 1ull << 40, be, &L, NULL, 0), ERR_RANGE);
        ASSERT(memcmp(&L, &keep, sizeof L) == 0);   /* unchanged on error */
        /* the largest accepted: sizes in 64 bits, no overflow */
        ASSERT_EQ_INT(qpack_layout(t, QPACK_MAX_DIM, QPACK_MAX_DIM - QPACK_MAX_DIM % be, &L, err, sizeof err), 0);
        ASSERT(L.total_bytes > (uint64_t)QPACK_MAX_DIM * (QPACK_MAX_DIM / be) * L.qs_bytes);
    }
}

TEST_LIST(T(packed_equals_reference_random_blocks), T(supported_types), T(malformed_sizes_refused))
