/*
 * test_quant.c - the reference dequantisers and float conversions against
 * goldens written by the gguf Python package and numpy
 * (tests/ref/gen-quant-goldens.py, committed in tests/ref/goldens/).
 * Every comparison is of float32 bit patterns: the dequantisers must be
 * exact, not close.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "base/quant.h"
#include "test.h"

/* ------------------------------------------------------------ helpers */

typedef struct {
    uint8_t *p;
    size_t len;
} blob_t;

static blob_t read_golden(const char *name)
{
    char path[4096];
    const char *dir = getenv("LLAMAD_QUANT_GOLDENS");
    if (dir != NULL && *dir != '\0')
        snprintf(path, sizeof path, "%s/%s", dir, name);
    else
        snprintf(path, sizeof path, "%s/tests/ref/goldens/%s", test_srcdir(), name);
    FILE *f = fopen(path, "rb");
    ASSERT_MSG(f != NULL, "cannot open golden %s (regenerate: tests/ref/gen-quant-goldens.py "
               "tests/ref/goldens)", path);
    blob_t b = { NULL, 0 };
    ASSERT(fseek(f, 0, SEEK_END) == 0);
    long n = ftell(f);
    ASSERT(n > 0);
    rewind(f);
    b.len = (size_t)n;
    b.p = malloc(b.len + 1);  /* +1: room to re-read from an odd address */
    ASSERT(b.p != NULL);
    ASSERT_EQ_U64(fread(b.p, 1, b.len, f), b.len);
    fclose(f);
    return b;
}

static uint32_t f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static uint32_t load_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint16_t load_u16(const uint8_t *p)
{
    return (uint16_t)(p[0] | p[1] << 8);
}

/*
 * Dequantises quant-<name>.in and compares every float's bits with
 * quant-<name>.out.  The block size is checked against the golden's
 * in/out byte ratio, which comes from the package, not from us.
 */
static void check_type(const char *name, qtype_t type)
{
    char fin[64], fout[64];
    snprintf(fin, sizeof fin, "quant-%s.in", name);
    snprintf(fout, sizeof fout, "quant-%s.out", name);
    blob_t in = read_golden(fin), out = read_golden(fout);
    const qtype_info_t *ti = qtype_info(type);
    ASSERT(ti != NULL);
    ASSERT_EQ_INT(out.len % 4, 0);
    size_t n = out.len / 4;
    ASSERT_EQ_U64((uint64_t)in.len * ti->block_elems, (uint64_t)n * ti->block_bytes);

    uint64_t nbytes = 0;
    ASSERT_EQ_INT(qtype_nbytes(type, n, &nbytes), 0);
    ASSERT_EQ_U64(nbytes, in.len);

    float *y = malloc(n * sizeof *y);
    ASSERT(y != NULL);
    for (int shift = 0; shift < 2; shift++) {
        /* shift 1 reads the blocks from an odd address, as a mapped file may give them */
        if (shift)
            memmove(in.p + 1, in.p, in.len);
        memset(y, 0xA5, n * sizeof *y);
        ASSERT_EQ_INT(quant_dequant(type, in.p + shift, y, n), 0);
        for (size_t i = 0; i < n; i++) {
            uint32_t want = load_u32(out.p + 4 * i), got = f32_bits(y[i]);
            ASSERT_MSG(got == want, "%s element %zu (block %zu): got 0x%08x (%.9g), want 0x%08x",
                       name, i, i / ti->block_elems, got, (double)y[i], want);
        }
    }
    free(y);
    free(in.p);
    free(out.p);
}

/* ------------------------------------------------------- dequantisers */

TEST(dequant_f32)  { check_type("f32", QT_F32); }
TEST(dequant_f16)  { check_type("f16", QT_F16); }
TEST(dequant_bf16) { check_type("bf16", QT_BF16); }
TEST(dequant_q8_0) { check_type("q8_0", QT_Q8_0); }
TEST(dequant_q4_0) { check_type("q4_0", QT_Q4_0); }
TEST(dequant_q4_1) { check_type("q4_1", QT_Q4_1); }
TEST(dequant_q4_k) { check_type("q4_k", QT_Q4_K); }
TEST(dequant_q5_k) { check_type("q5_k", QT_Q5_K); }
TEST(dequant_q6_k) { check_type("q6_k", QT_Q6_K); }

TEST(dequant_rejects)
{
    uint8_t src[256] = { 0 };
    float dst[64];
    ASSERT_EQ_INT(quant_dequant(QT_Q4_0, src, dst, 33), ERR_INVALID);
    ASSERT_EQ_INT(quant_dequant(QT_Q4_K, src, dst, 32), ERR_INVALID);
    ASSERT_EQ_INT(quant_dequant((qtype_t)6, src, dst, 32), ERR_UNSUPPORTED);
    ASSERT_EQ_INT(quant_dequant((qtype_t)99, src, dst, 32), ERR_UNSUPPORTED);
    ASSERT_EQ_INT(quant_dequant(QT_Q8_0, NULL, dst, 32), ERR_INVALID);
    ASSERT_EQ_INT(quant_dequant(QT_Q8_0, src, dst, 0), 0);
}

/* -------------------------------------------------------- type table */

TEST(type_table)
{
    /* ggml's block sizes, as the GGUF specification lists them */
    static const struct { uint32_t id; const char *name; uint32_t elems, bytes; } want[] = {
        { 0, "F32", 1, 4 },     { 1, "F16", 1, 2 },      { 30, "BF16", 1, 2 },
        { 2, "Q4_0", 32, 18 },  { 3, "Q4_1", 32, 20 },   { 8, "Q8_0", 32, 34 },
        { 12, "Q4_K", 256, 144 }, { 13, "Q5_K", 256, 176 }, { 14, "Q6_K", 256, 210 },
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        const qtype_info_t *ti = qtype_info(want[i].id);
        ASSERT_MSG(ti != NULL, "type %u missing", want[i].id);
        ASSERT_EQ_STR(ti->name, want[i].name);
        ASSERT_EQ_INT(ti->block_elems, want[i].elems);
        ASSERT_EQ_INT(ti->block_bytes, want[i].bytes);
    }
    static const uint32_t unknown[] = { 4, 5, 6, 7, 9, 10, 11, 15, 24, 28, 31, 39, 1000, UINT32_MAX };
    for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++)
        ASSERT_MSG(qtype_info(unknown[i]) == NULL, "type %u should be unknown", unknown[i]);
}

TEST(nbytes_checked)
{
    uint64_t n = 0;
    ASSERT_EQ_INT(qtype_nbytes(QT_Q4_1, 576 * 1536, &n), 0);
    ASSERT_EQ_U64(n, 576u * 1536u / 32u * 20u);
    ASSERT_EQ_INT(qtype_nbytes(QT_F32, 0, &n), 0);
    ASSERT_EQ_U64(n, 0);
    ASSERT_EQ_INT(qtype_nbytes(QT_Q4_0, 33, &n), ERR_FORMAT);
    ASSERT_EQ_INT(qtype_nbytes(QT_Q6_K, 128, &n), ERR_FORMAT);
    ASSERT_EQ_INT(qtype_nbytes(77, 32, &n), ERR_UNSUPPORTED);
    ASSERT_EQ_INT(qtype_nbytes(QT_F32, UINT64_MAX / 4 + 1, &n), ERR_RANGE);
    ASSERT_EQ_INT(qtype_nbytes(QT_F32, UINT64_MAX / 4, &n), 0);
    ASSERT_EQ_U64(n, UINT64_MAX / 4 * 4);
    ASSERT_EQ_INT(qtype_nbytes(QT_Q8_0, 0x7FFFFFFFFFFFFFC0ull, &n), 0);
    ASSERT_EQ_U64(n, 0x7FFFFFFFFFFFFFC0ull / 32 * 34);
    ASSERT_EQ_INT(qtype_nbytes(QT_Q8_0, 0xFFFFFFFFFFFFFFE0ull, &n), ERR_RANGE);
    ASSERT_EQ_INT(qtype_nbytes(QT_F16, 0x7FFFFFFFFFFFFFC0ull, &n), 0);
    ASSERT_EQ_U64(n, 0xFFFFFFFFFFFFFF80ull);
}

/* -------------------------------------------------- float conversions */

TEST(f32_to_f16_rounding)
{
    blob_t in = read_golden("f32-to-f16.in"), out = read_golden("f32-to-f16.out");
    ASSERT_EQ_U64(in.len, out.len * 2);
    for (size_t i = 0; i < out.len / 2; i++) {
        uint32_t xb = load_u32(in.p + 4 * i);
        float x;
        memcpy(&x, &xb, sizeof x);
        uint16_t want = load_u16(out.p + 2 * i), got = f32_to_f16(x);
        ASSERT_MSG(got == want, "f32_to_f16(%.9g = 0x%08x) = 0x%04x, numpy says 0x%04x",
                   (double)x, xb, got, want);
    }
    free(in.p);
    free(out.p);
}

TEST(f32_to_bf16_rounding)
{
    blob_t in = read_golden("f32-to-bf16.in"), out = read_golden("f32-to-bf16.out");
    ASSERT_EQ_U64(in.len, out.len * 2);
    for (size_t i = 0; i < out.len / 2; i++) {
        uint32_t xb = load_u32(in.p + 4 * i);
        float x;
        memcpy(&x, &xb, sizeof x);
        uint16_t want = load_u16(out.p + 2 * i), got = f32_to_bf16(x);
        ASSERT_MSG(got == want, "f32_to_bf16(0x%08x) = 0x%04x, gguf says 0x%04x", xb, got, want);
    }
    free(in.p);
    free(out.p);
}

/* Every half survives half -> float -> half; NaNs stay NaNs (made quiet). */
TEST(f16_round_trip_all)
{
    for (uint32_t h = 0; h < 65536; h++) {
        float f = f16_to_f32((uint16_t)h);
        uint16_t back = f32_to_f16(f);
        int is_nan = (h & 0x7c00u) == 0x7c00u && (h & 0x3ffu) != 0;
        if (is_nan)
            ASSERT_MSG((back & 0x7e00u) == 0x7e00u && (back & 0x8000u) == (h & 0x8000u),
                       "NaN 0x%04x came back as 0x%04x", h, back);
        else
            ASSERT_MSG(back == h, "0x%04x -> %.9g -> 0x%04x", h, (double)f, back);
    }
    ASSERT_EQ_INT(f32_to_f16(__builtin_nanf("")) & 0x7e00, 0x7e00);
}

TEST(bf16_round_trip_all)
{
    for (uint32_t h = 0; h < 65536; h++) {
        uint16_t back = f32_to_bf16(bf16_to_f32((uint16_t)h));
        int is_nan = (h & 0x7f80u) == 0x7f80u && (h & 0x7fu) != 0;
        ASSERT_MSG(back == (is_nan ? (h | 0x40u) : h), "0x%04x -> 0x%04x", h, back);
    }
}

TEST_LIST(T(dequant_f32), T(dequant_f16), T(dequant_bf16), T(dequant_q8_0), T(dequant_q4_0),
          T(dequant_q4_1), T(dequant_q4_k), T(dequant_q5_k), T(dequant_q6_k), T(dequant_rejects),
          T(type_table), T(nbytes_checked), T(f32_to_f16_rounding), T(f32_to_bf16_rounding),
          T(f16_round_trip_all), T(bf16_round_trip_all))
