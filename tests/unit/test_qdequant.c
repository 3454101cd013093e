/*
 * test_qdequant.c - the body of the CUDA backend's dequantisation of
 * packed weights (cuda/qdequant.h, run by cuda/qmatvec.cu's
 * qdequant_kernel, one call per 8 elements), compiled for the host: for
 * random bytes everywhere (quants and scales, so NaN, inf and subnormal
 * scales too), every group of 8 elements of a packed Q4_0, Q4_1, Q8_0 and
 * Q4_K matrix equals base/qpack.c's reference dequantisation of the same
 * packed buffer bit for bit; a type without a kernel gives zeros.  What a
 * GPU adds (the bf16 rounding, the launch) is checked by
 * tests/gpu/test_cuda_native.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/qpack.h"
#include "base/quant.h"
#include "cuda/qdequant.h"
#include "test.h"

static uint64_t rng = 0x13198a2e03707344ull;
static uint64_t next_u64(void)
{
    uint64_t z = (rng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* A packed [n_out, n_in] matrix of `t` made from random GGUF blocks; *L its layout. */
static uint8_t *random_packed(qtype_t t, uint32_t n_out, uint32_t n_in, qpack_layout_t *L)
{
    char err[128];
    ASSERT_MSG(qpack_layout(t, n_out, n_in, L, err, sizeof err) == 0, "%s", err);
    uint64_t n;
    ASSERT_EQ_INT(qtype_nbytes(t, (uint64_t)n_out * n_in, &n), 0);
    uint8_t *src = malloc(n), *buf = aligned_alloc(16, (L->total_bytes + 15) / 16 * 16);
    ASSERT(src != NULL && buf != NULL);
    for (uint64_t i = 0; i < n; i++)
        src[i] = (uint8_t)next_u64();
    ASSERT_EQ_INT(qpack_rows(L, src, 0, n_out, buf, buf + L->meta_off), 0);
    free(src);
    return buf;
}

TEST(every_group_of_eight_is_the_reference)
{
    static const qtype_t types[] = { QT_Q4_0, QT_Q4_1, QT_Q8_0, QT_Q4_K };
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
        qtype_t t = types[ti];
        uint32_t n_out = 7, n_in = 3 * qtype_info(t)->block_elems;
        qpack_layout_t L;
        uint8_t *buf = random_packed(t, n_out, n_in, &L);
        float *ref = malloc(sizeof(float) * n_in);
        ASSERT(ref != NULL);
        uint64_t checked = 0;
        for (uint32_t r = 0; r < n_out; r++) {
            ASSERT_EQ_INT(qpack_dequant_row(&L, buf, r, ref), 0);
            for (uint32_t i = 0; i < n_in; i += 8) {
                float v[8];
                qd_dequant8(t, buf, buf + L.meta_off, (uint64_t)r * n_in + i, v);
                for (int k = 0; k < 8; k++)
                    ASSERT_MSG(memcmp(&v[k], &ref[i + k], sizeof(float)) == 0,
                               "%s row %u element %u: %g, the reference %g", qtype_info(t)->name, r, i + k,
                               (double)v[k], (double)ref[i + k]);
                checked += 8;
            }
        }
        printf("  %s: %llu elements equal to qpack_dequant_row\n", qtype_info(t)->name, (unsigned long long)checked);
        free(ref);
        free(buf);
    }
}

TEST(a_type_without_a_kernel_gives_zeros)
{
    qpack_layout_t L;
    uint8_t *buf = random_packed(QT_Q6_K, 2, 256, &L);
    float v[8];
    memset(v, 0x7f, sizeof v);
    qd_dequant8(QT_Q6_K, buf, buf + L.meta_off, 8, v);
    for (int k = 0; k < 8; k++)
        ASSERT(v[k] == 0.0f);
    free(buf);
}

TEST_LIST(T(every_group_of_eight_is_the_reference), T(a_type_without_a_kernel_gives_zeros))
