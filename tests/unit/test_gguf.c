/*
 * test_gguf.c - the GGUF reader.
 *
 * 1. The default model, checked against facts the gguf Python package
 *    wrote (tests/ref/gguf-golden.py -> tests/ref/goldens/<model>.json).
 * 2. Small files built here, byte by byte from the specification, in
 *    versions 2 and 3 with every metadata type, read back through every
 *    getter.
 * 3. A handful of rejections, and every truncation of a valid file.
 * The corpus of hand-made bad files is tests/unit/test_gguf_corpus.c.
 */
#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/err.h"
#include "engine/model/gguf.h"
#include "base/quant.h"
#include "test.h"

/* ---------------------------------------------------- a GGUF writer */

typedef struct {
    uint8_t *p;
    size_t len, cap;
} buf_t;

static void put(buf_t *b, const void *src, size_t n)
{
    if (b->len + n > b->cap) {
        b->cap = (b->len + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
        ASSERT(b->p != NULL);
    }
    memcpy(b->p + b->len, src, n);
    b->len += n;
}

static void put_le(buf_t *b, uint64_t v, int n)
{
    for (int i = 0; i < n; i++) {
        uint8_t c = (uint8_t)(v >> (8 * i));
        put(b, &c, 1);
    }
}

static void put_u32(buf_t *b, uint32_t v) { put_le(b, v, 4); }
static void put_u64(buf_t *b, uint64_t v) { put_le(b, v, 8); }

static void put_strn(buf_t *b, const char *s, size_t n)
{
    put_u64(b, n);
    put(b, s, n);
}

static void put_str(buf_t *b, const char *s) { put_strn(b, s, strlen(s)); }

static void put_f32(buf_t *b, float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    put_u32(b, u);
}

static void put_f64(buf_t *b, double d)
{
    uint64_t u;
    memcpy(&u, &d, 8);
    put_u64(b, u);
}

static void put_header(buf_t *b, uint32_t version, uint64_t n_tensors, uint64_t n_kv)
{
    put(b, "GGUF", 4);
    put_u32(b, version);
    put_u64(b, n_tensors);
    put_u64(b, n_kv);
}

static void put_key(buf_t *b, const char *key, gguf_vtype_t type)
{
    put_str(b, key);
    put_u32(b, type);
}

static void put_tinfo(buf_t *b, const char *name, uint32_t n_dims, const uint64_t *ne,
                      uint32_t type, uint64_t offset)
{
    put_str(b, name);
    put_u32(b, n_dims);
    for (uint32_t i = 0; i < n_dims; i++)
        put_u64(b, ne[i]);
    put_u32(b, type);
    put_u64(b, offset);
}

static void pad_to(buf_t *b, uint32_t align)
{
    while (b->len % align != 0)
        put_le(b, 0, 1);
}

/* ------------------------------------------------- the sample file */

#define N_SAMPLE_KV 28
#define N_SAMPLE_TENSORS 3

/*
 * Every scalar type, every array element type (plus empty arrays), and
 * three tensors whose data lies in another order than their infos.  With
 * align 0 there is no general.alignment key (the default, 32, applies).
 */
static buf_t sample_file(uint32_t version, uint32_t align)
{
    buf_t b = { 0 };
    uint64_t n_kv = N_SAMPLE_KV - (align == 0);
    put_header(&b, version, N_SAMPLE_TENSORS, n_kv);
    put_key(&b, "t.u8", GGUF_T_UINT8);     put_le(&b, 200, 1);
    put_key(&b, "t.i8", GGUF_T_INT8);      put_le(&b, (uint8_t)-100, 1);
    put_key(&b, "t.u16", GGUF_T_UINT16);   put_le(&b, 60000, 2);
    put_key(&b, "t.i16", GGUF_T_INT16);    put_le(&b, (uint16_t)-30000, 2);
    put_key(&b, "t.u32", GGUF_T_UINT32);   put_u32(&b, 4000000000u);
    put_key(&b, "t.i32", GGUF_T_INT32);    put_u32(&b, (uint32_t)-2000000000);
    put_key(&b, "t.f32", GGUF_T_FLOAT32);  put_f32(&b, 1.5f);
    put_key(&b, "t.bool", GGUF_T_BOOL);    put_le(&b, 1, 1);
    put_key(&b, "t.str", GGUF_T_STRING);   put_strn(&b, "hi\0there", 8);
    put_key(&b, "t.u64", GGUF_T_UINT64);   put_u64(&b, (1ull << 63) + 5);
    put_key(&b, "t.i64", GGUF_T_INT64);    put_u64(&b, (uint64_t)-5);
    put_key(&b, "t.f64", GGUF_T_FLOAT64);  put_f64(&b, 0.1);
    put_key(&b, "t.u64small", GGUF_T_UINT64); put_u64(&b, 7);
    /* arrays */
    put_key(&b, "a.u8", GGUF_T_ARRAY);  put_u32(&b, GGUF_T_UINT8); put_u64(&b, 3);
    put_le(&b, 1, 1); put_le(&b, 2, 1); put_le(&b, 255, 1);
    put_key(&b, "a.i8", GGUF_T_ARRAY);  put_u32(&b, GGUF_T_INT8); put_u64(&b, 2);
    put_le(&b, 0x80, 1); put_le(&b, 0x7f, 1);
    put_key(&b, "a.u16", GGUF_T_ARRAY); put_u32(&b, GGUF_T_UINT16); put_u64(&b, 1); put_le(&b, 65535, 2);
    put_key(&b, "a.i16", GGUF_T_ARRAY); put_u32(&b, GGUF_T_INT16); put_u64(&b, 1); put_le(&b, 0x8000, 2);
    put_key(&b, "a.u32", GGUF_T_ARRAY); put_u32(&b, GGUF_T_UINT32); put_u64(&b, 2);
    put_u32(&b, 7); put_u32(&b, 0xffffffffu);
    put_key(&b, "a.i32", GGUF_T_ARRAY); put_u32(&b, GGUF_T_INT32); put_u64(&b, 3);
    put_u32(&b, 1); put_u32(&b, (uint32_t)-2); put_u32(&b, 3);
    put_key(&b, "a.f32", GGUF_T_ARRAY); put_u32(&b, GGUF_T_FLOAT32); put_u64(&b, 2);
    put_f32(&b, -0.25f); put_f32(&b, 3e38f);
    put_key(&b, "a.bool", GGUF_T_ARRAY); put_u32(&b, GGUF_T_BOOL); put_u64(&b, 3);
    put_le(&b, 0, 1); put_le(&b, 1, 1); put_le(&b, 1, 1);
    put_key(&b, "a.u64", GGUF_T_ARRAY); put_u32(&b, GGUF_T_UINT64); put_u64(&b, 1); put_u64(&b, UINT64_MAX);
    put_key(&b, "a.i64", GGUF_T_ARRAY); put_u32(&b, GGUF_T_INT64); put_u64(&b, 1); put_u64(&b, (uint64_t)INT64_MIN);
    put_key(&b, "a.f64", GGUF_T_ARRAY); put_u32(&b, GGUF_T_FLOAT64); put_u64(&b, 1); put_f64(&b, -2.5);
    put_key(&b, "a.str", GGUF_T_ARRAY); put_u32(&b, GGUF_T_STRING); put_u64(&b, 4);
    put_str(&b, ""); put_str(&b, "a"); put_str(&b, "hello"); put_str(&b, "\xc4\xa0t");
    put_key(&b, "a.empty", GGUF_T_ARRAY); put_u32(&b, GGUF_T_UINT32); put_u64(&b, 0);
    put_key(&b, "a.empty_str", GGUF_T_ARRAY); put_u32(&b, GGUF_T_STRING); put_u64(&b, 0);
    if (align != 0) {
        put_key(&b, "general.alignment", GGUF_T_UINT32);
        put_u32(&b, align);
    }
    uint32_t a = align ? align : 32;
    /* data: w.q8_0 (34 B) at 0, w.f32 (48 B) next, w.q4_0 (36 B) last */
    uint64_t off_q8 = 0, off_f32 = a * ((34 + a - 1) / a), off_q4 = off_f32 + a * ((48 + a - 1) / a);
    put_tinfo(&b, "w.f32", 2, (uint64_t[]){ 4, 3 }, QT_F32, off_f32);
    put_tinfo(&b, "w.q4_0", 1, (uint64_t[]){ 32 }, QT_Q4_0, off_q4);
    put_tinfo(&b, "w.q8_0", 3, (uint64_t[]){ 32, 1, 1 }, QT_Q8_0, off_q8);
    pad_to(&b, a);
    size_t data = b.len;
    uint8_t q8[34] = { 0x00, 0x3c };          /* d = 1.0 */
    for (int i = 0; i < 32; i++)
        q8[2 + i] = (uint8_t)(i - 16);
    put(&b, q8, sizeof q8);
    while (b.len < data + off_f32)
        put_le(&b, 0xEE, 1);
    for (int i = 0; i < 12; i++)
        put_f32(&b, (float)i * 0.5f);
    while (b.len < data + off_q4)
        put_le(&b, 0xEE, 1);
    uint8_t q4[18] = { 0x00, 0x40 };          /* d = 2.0 */
    for (int i = 0; i < 16; i++)
        q4[2 + i] = (uint8_t)(i | (15 - i) << 4);
    put(&b, q4, sizeof q4);                   /* the file ends with the last tensor */
    return b;
}

/* The copy parse_copy made, freed by release_copy() after gguf_destroy. */
static uint8_t *copy_kept;

/* Parses a copy of exactly len bytes, so that ASan sees any read past it. */
static int parse_copy(gguf_t **g, const uint8_t *p, size_t len, char *err, size_t errlen)
{
    uint8_t *copy = malloc(len ? len : 1);
    ASSERT(copy != NULL);
    memcpy(copy, p, len);
    int rc = gguf_create_from_buffer(g, copy, len, "mem.gguf", err, errlen);
    if (rc != 0)
        free(copy);
    else
        copy_kept = copy;
    return rc;
}

static void release_copy(void)
{
    free(copy_kept);
    copy_kept = NULL;
}

static int str_eq(gguf_str_t s, const char *want, size_t n)
{
    return s.len == n && memcmp(s.ptr, want, n) == 0;
}

static void check_sample(const gguf_t *g, uint32_t version, uint32_t align)
{
    char err[ERR_MSG_MAX];
    ASSERT_EQ_INT(gguf_version(g), version);
    ASSERT_EQ_INT(gguf_alignment(g), align ? align : 32);
    ASSERT_EQ_U64(gguf_kv_count(g), N_SAMPLE_KV - (align == 0));
    ASSERT_EQ_U64(gguf_data_offset(g) % gguf_alignment(g), 0);

    uint8_t u8v; uint32_t u32; uint64_t u64; int32_t i32; float f; int bv; gguf_str_t s;
    (void)u8v;
    ASSERT_EQ_INT(gguf_get_u32(g, "t.u8", &u32, err, sizeof err), 0);    ASSERT_EQ_INT(u32, 200);
    ASSERT_EQ_INT(gguf_get_i32(g, "t.i8", &i32, err, sizeof err), 0);    ASSERT_EQ_INT(i32, -100);
    ASSERT_EQ_INT(gguf_get_u32(g, "t.u16", &u32, err, sizeof err), 0);   ASSERT_EQ_INT(u32, 60000);
    ASSERT_EQ_INT(gguf_get_i32(g, "t.i16", &i32, err, sizeof err), 0);   ASSERT_EQ_INT(i32, -30000);
    ASSERT_EQ_INT(gguf_get_u32(g, "t.u32", &u32, err, sizeof err), 0);   ASSERT_EQ_U64(u32, 4000000000u);
    ASSERT_EQ_INT(gguf_get_u64(g, "t.u32", &u64, err, sizeof err), 0);   ASSERT_EQ_U64(u64, 4000000000u);
    ASSERT_EQ_INT(gguf_get_i32(g, "t.i32", &i32, err, sizeof err), 0);   ASSERT_EQ_INT(i32, -2000000000);
    ASSERT_EQ_INT(gguf_get_u64(g, "t.u64", &u64, err, sizeof err), 0);   ASSERT_EQ_U64(u64, (1ull << 63) + 5);
    ASSERT_EQ_INT(gguf_get_u32(g, "t.u64small", &u32, err, sizeof err), 0); ASSERT_EQ_INT(u32, 7);
    ASSERT_EQ_INT(gguf_get_i32(g, "t.i64", &i32, err, sizeof err), 0);   ASSERT_EQ_INT(i32, -5);
    ASSERT_EQ_INT(gguf_get_f32(g, "t.f32", &f, err, sizeof err), 0);     ASSERT(f == 1.5f);
    ASSERT_EQ_INT(gguf_get_f32(g, "t.f64", &f, err, sizeof err), 0);     ASSERT(f == 0.1f);
    ASSERT_EQ_INT(gguf_get_bool(g, "t.bool", &bv, err, sizeof err), 0);  ASSERT_EQ_INT(bv, 1);
    ASSERT_EQ_INT(gguf_get_str(g, "t.str", &s, err, sizeof err), 0);     ASSERT(str_eq(s, "hi\0there", 8));

    /* values that do not fit, wrong types, absent keys */
    ASSERT_EQ_INT(gguf_get_u32(g, "t.i8", &u32, err, sizeof err), ERR_FORMAT);
    ASSERT_MSG(strstr(err, "t.i8") && strstr(err, "-100"), "message: %s", err);
    ASSERT_EQ_INT(gguf_get_u64(g, "t.i64", &u64, err, sizeof err), ERR_FORMAT);
    ASSERT_EQ_INT(gguf_get_i32(g, "t.u32", &i32, err, sizeof err), ERR_FORMAT);
    ASSERT_EQ_INT(gguf_get_u32(g, "t.u64", &u32, err, sizeof err), ERR_FORMAT);
    ASSERT_EQ_INT(gguf_get_i32(g, "t.u64", &i32, err, sizeof err), ERR_FORMAT);
    ASSERT_EQ_INT(gguf_get_u32(g, "t.str", &u32, err, sizeof err), ERR_FORMAT);
    ASSERT_MSG(strstr(err, gguf_path(g)) && strstr(err, "t.str") && strstr(err, "STRING"),
               "message: %s", err);
    ASSERT_EQ_INT(gguf_get_u32(g, "t.f32", &u32, err, sizeof err), ERR_FORMAT);
    ASSERT_EQ_INT(gguf_get_u32(g, "t.bool", &u32, err, sizeof err), ERR_FORMAT);
    ASSERT_EQ_INT(gguf_get_u32(g, "a.u32", &u32, err, sizeof err), ERR_FORMAT);
    ASSERT_EQ_INT(gguf_get_f32(g, "t.u32", &f, err, sizeof err), ERR_FORMAT);
    ASSERT_EQ_INT(gguf_get_bool(g, "t.u8", &bv, err, sizeof err), ERR_FORMAT);
    ASSERT_EQ_INT(gguf_get_str(g, "a.str", &s, err, sizeof err), ERR_FORMAT);
    ASSERT_EQ_INT(gguf_get_u32(g, "no.such.key", &u32, err, sizeof err), ERR_NOTFOUND);
    ASSERT_EQ_INT(gguf_get_str(g, "t.st", &s, err, sizeof err), ERR_NOTFOUND);
    ASSERT_EQ_INT(gguf_find(g, ""), -1);

    /* key order and types by index */
    ASSERT_EQ_INT(gguf_find(g, "t.u8"), 0);
    ASSERT_EQ_INT(gguf_find(g, "a.empty_str"), 26);
    ASSERT(str_eq(gguf_kv_key(g, 1), "t.i8", 4));
    ASSERT_EQ_INT(gguf_kv_type(g, 8), GGUF_T_STRING);
    ASSERT_EQ_INT(gguf_kv_type(g, 13), GGUF_T_ARRAY);
    ASSERT(gguf_kv_key(g, 1000).ptr == NULL);

    /* arrays */
    gguf_vtype_t et;
    uint64_t n;
    ASSERT_EQ_INT(gguf_get_arr(g, "a.u8", &et, &n, err, sizeof err), 0);
    ASSERT_EQ_INT(et, GGUF_T_UINT8); ASSERT_EQ_U64(n, 3);
    ASSERT(memcmp(gguf_arr_data(g, "a.u8"), "\x01\x02\xff", 3) == 0);
    ASSERT_EQ_INT(gguf_get_arr(g, "a.i32", &et, &n, err, sizeof err), 0);
    ASSERT_EQ_INT(et, GGUF_T_INT32); ASSERT_EQ_U64(n, 3);
    int32_t i32s[3];
    memcpy(i32s, gguf_arr_data(g, "a.i32"), sizeof i32s);
    ASSERT_EQ_INT(i32s[0], 1); ASSERT_EQ_INT(i32s[1], -2); ASSERT_EQ_INT(i32s[2], 3);
    float f32s[2];
    memcpy(f32s, gguf_arr_data(g, "a.f32"), sizeof f32s);
    ASSERT(f32s[0] == -0.25f && f32s[1] == 3e38f);
    double f64;
    memcpy(&f64, gguf_arr_data(g, "a.f64"), 8);
    ASSERT(f64 == -2.5);
    int64_t i64;
    memcpy(&i64, gguf_arr_data(g, "a.i64"), 8);
    ASSERT(i64 == INT64_MIN);
    ASSERT_EQ_INT(gguf_get_arr(g, "a.bool", &et, &n, err, sizeof err), 0);
    ASSERT_EQ_INT(et, GGUF_T_BOOL);
    ASSERT(memcmp(gguf_arr_data(g, "a.bool"), "\0\1\1", 3) == 0);
    ASSERT_EQ_INT(gguf_get_arr(g, "a.empty", &et, &n, err, sizeof err), 0);
    ASSERT_EQ_U64(n, 0);
    ASSERT_EQ_INT(gguf_get_arr(g, "a.empty_str", &et, &n, err, sizeof err), 0);
    ASSERT_EQ_INT(et, GGUF_T_STRING); ASSERT_EQ_U64(n, 0);
    ASSERT_EQ_INT(gguf_arr_str(g, "a.empty_str", 0, &s), ERR_RANGE);
    ASSERT_EQ_INT(gguf_get_arr(g, "a.str", &et, &n, err, sizeof err), 0);
    ASSERT_EQ_INT(et, GGUF_T_STRING); ASSERT_EQ_U64(n, 4);
    ASSERT(gguf_arr_data(g, "a.str") == NULL);
    ASSERT(gguf_arr_data(g, "t.u8") == NULL);
    ASSERT(gguf_arr_data(g, "nope") == NULL);
    ASSERT_EQ_INT(gguf_arr_str(g, "a.str", 0, &s), 0); ASSERT(str_eq(s, "", 0));
    ASSERT_EQ_INT(gguf_arr_str(g, "a.str", 2, &s), 0); ASSERT(str_eq(s, "hello", 5));
    ASSERT_EQ_INT(gguf_arr_str(g, "a.str", 3, &s), 0); ASSERT(str_eq(s, "\xc4\xa0t", 3));
    ASSERT_EQ_INT(gguf_arr_str(g, "a.str", 4, &s), ERR_RANGE);
    ASSERT_EQ_INT(gguf_arr_str(g, "a.u8", 0, &s), ERR_FORMAT);
    ASSERT_EQ_INT(gguf_arr_str(g, "t.str", 0, &s), ERR_FORMAT);
    ASSERT_EQ_INT(gguf_arr_str(g, "nope", 0, &s), ERR_NOTFOUND);
    ASSERT_EQ_INT(gguf_get_arr(g, "t.u8", &et, &n, err, sizeof err), ERR_FORMAT);

    char text[256];
    ASSERT_EQ_INT(gguf_kv_format(g, (uint64_t)gguf_find(g, "a.str"), text, sizeof text), 0);
    ASSERT_EQ_STR(text, "[4 x STRING: \"\", \"a\", \"hello\", \"\\xc4\\xa0t\"]");
    ASSERT_EQ_INT(gguf_kv_format(g, (uint64_t)gguf_find(g, "t.i64"), text, sizeof text), 0);
    ASSERT_EQ_STR(text, "-5");
    ASSERT_EQ_INT(gguf_kv_format(g, 999, text, sizeof text), ERR_RANGE);

    /* tensors */
    ASSERT_EQ_U64(gguf_tensor_count(g), 3);
    const gguf_tensor_t *t = gguf_find_tensor(g, "w.f32");
    ASSERT(t != NULL && t == gguf_tensor(g, 0));
    ASSERT_EQ_INT(t->n_dims, 2); ASSERT_EQ_U64(t->ne[0], 4); ASSERT_EQ_U64(t->ne[1], 3);
    ASSERT_EQ_U64(t->ne[2], 1); ASSERT_EQ_U64(t->ne[3], 1);
    ASSERT_EQ_INT(t->type, QT_F32); ASSERT_EQ_U64(t->nbytes, 48);
    float w[12];
    ASSERT_EQ_INT(quant_dequant(t->type, t->data, w, 12), 0);
    for (int i = 0; i < 12; i++)
        ASSERT(w[i] == (float)i * 0.5f);
    t = gguf_find_tensor(g, "w.q8_0");
    ASSERT(t != NULL && t == gguf_tensor(g, 2));
    ASSERT_EQ_U64(t->offset, 0); ASSERT_EQ_U64(t->nbytes, 34); ASSERT_EQ_INT(t->n_dims, 3);
    float y[32];
    ASSERT_EQ_INT(quant_dequant(t->type, t->data, y, 32), 0);
    for (int i = 0; i < 32; i++)
        ASSERT(y[i] == (float)(i - 16));
    t = gguf_find_tensor(g, "w.q4_0");
    ASSERT(t != NULL);
    ASSERT_EQ_U64(t->nbytes, 18);
    ASSERT_EQ_INT(quant_dequant(t->type, t->data, y, 32), 0);
    for (int i = 0; i < 16; i++) {
        ASSERT(y[i] == 2.0f * (float)(i - 8));
        ASSERT(y[i + 16] == 2.0f * (float)(15 - i - 8));
    }
    ASSERT(gguf_find_tensor(g, "w") == NULL);
    ASSERT(gguf_tensor(g, 3) == NULL);
}

TEST(sample_v3_aligned_64)
{
    char err[ERR_MSG_MAX];
    buf_t b = sample_file(3, 64);
    gguf_t *g = NULL;
    int rc = parse_copy(&g, b.p, b.len, err, sizeof err);
    ASSERT_MSG(rc == 0, "%s", err);
    check_sample(g, 3, 64);
    gguf_destroy(g);
    release_copy();
    free(b.p);
}

TEST(sample_v2_default_alignment)
{
    char err[ERR_MSG_MAX];
    buf_t b = sample_file(2, 0);
    gguf_t *g = NULL;
    int rc = parse_copy(&g, b.p, b.len, err, sizeof err);
    ASSERT_MSG(rc == 0, "%s", err);
    check_sample(g, 2, 0);
    gguf_destroy(g);
    release_copy();
    free(b.p);
}

TEST(sample_alignment_1)
{
    char err[ERR_MSG_MAX];
    buf_t b = sample_file(3, 1);
    gguf_t *g = NULL;
    int rc = parse_copy(&g, b.p, b.len, err, sizeof err);
    ASSERT_MSG(rc == 0, "%s", err);
    check_sample(g, 3, 1);
    gguf_destroy(g);
    release_copy();
    free(b.p);
}

/* gguf_create maps the same bytes from a file. */
TEST(create_from_file)
{
    char err[ERR_MSG_MAX], path[] = "/tmp/llamad-test-gguf-XXXXXX";
    buf_t b = sample_file(3, 32);
    int fd = mkstemp(path);
    ASSERT(fd >= 0);
    ASSERT_EQ_INT(write(fd, b.p, b.len), (long long)b.len);
    close(fd);
    gguf_t *g = NULL;
    int rc = gguf_create(&g, path, err, sizeof err);
    unlink(path);
    ASSERT_MSG(rc == 0, "%s", err);
    ASSERT_EQ_STR(gguf_path(g), path);
    check_sample(g, 3, 32);
    gguf_destroy(g);

    ASSERT_EQ_INT(gguf_create(&g, "/nonexistent/x.gguf", err, sizeof err), ERR_IO);
    ASSERT(g == NULL && strstr(err, "/nonexistent/x.gguf") != NULL);
    ASSERT_EQ_INT(gguf_create(&g, "/tmp", err, sizeof err), ERR_IO);
    strcpy(path, "/tmp/llamad-test-gguf-XXXXXX");
    fd = mkstemp(path);
    ASSERT(fd >= 0);
    close(fd);
    rc = gguf_create(&g, path, err, sizeof err);  /* empty */
    unlink(path);
    ASSERT_EQ_INT(rc, ERR_FORMAT);
    ASSERT_MSG(strstr(err, path) && strstr(err, "magic"), "message: %s", err);
    free(b.p);
}

/* Every proper prefix of a valid file is rejected cleanly. */
TEST(truncated_everywhere)
{
    char err[ERR_MSG_MAX];
    buf_t b = sample_file(3, 32);
    for (size_t len = 0; len < b.len; len++) {
        gguf_t *g = NULL;
        err[0] = '\0';
        int rc = parse_copy(&g, b.p, len, err, sizeof err);
        ASSERT_MSG(rc == ERR_FORMAT, "prefix of %zu bytes: rc %d (%s)", len, rc, err);
        ASSERT_MSG(g == NULL && strncmp(err, "mem.gguf: ", 10) == 0, "prefix %zu: %s", len, err);
        ASSERT_MSG(strstr(err, "file offset") != NULL, "prefix %zu: %s", len, err);
    }
    free(b.p);
}

/* ------------------------------------------------------- rejections */

/* Expects rc and a message containing `want`. */
static void expect_reject(buf_t *b, int want_rc, const char *want)
{
    char err[ERR_MSG_MAX] = "";
    gguf_t *g = NULL;
    int rc = parse_copy(&g, b->p, b->len, err, sizeof err);
    ASSERT_MSG(rc == want_rc, "rc %d, want %d (%s)", rc, want_rc, err);
    ASSERT_MSG(g == NULL, "no object on error");
    ASSERT_MSG(strstr(err, "mem.gguf") && strstr(err, want), "message \"%s\" lacks \"%s\"", err, want);
    free(b->p);
    *b = (buf_t){ 0 };
}

/* A file with one kv (`key` = UINT32 7) and the given tensors, data zeroed. */
static buf_t one_kv_file(const char *key, int n_t, const char **names, const uint32_t *types,
                         const uint64_t *ne0, const uint64_t *offs, uint64_t data_len)
{
    buf_t b = { 0 };
    put_header(&b, 3, (uint64_t)n_t, 1);
    put_key(&b, key, GGUF_T_UINT32);
    put_u32(&b, 7);
    for (int i = 0; i < n_t; i++)
        put_tinfo(&b, names[i], 1, &ne0[i], types[i], offs[i]);
    pad_to(&b, 32);
    for (uint64_t i = 0; i < data_len; i++)
        put_le(&b, 0, 1);
    return b;
}

TEST(rejects)
{
    buf_t b;
    const char *nm[] = { "x", "y" };

    b = sample_file(3, 32);
    memcpy(b.p, "GGUG", 4);
    expect_reject(&b, ERR_FORMAT, "magic");
    b = sample_file(1, 32);
    expect_reject(&b, ERR_UNSUPPORTED, "version 1");
    b = sample_file(4, 32);
    expect_reject(&b, ERR_UNSUPPORTED, "version 4");

    /* duplicate keys and names */
    b = (buf_t){ 0 };
    put_header(&b, 3, 0, 2);
    put_key(&b, "k", GGUF_T_UINT8); put_le(&b, 1, 1);
    put_key(&b, "k", GGUF_T_STRING); put_str(&b, "x");
    expect_reject(&b, ERR_FORMAT, "duplicate key 'k'");
    b = one_kv_file("k", 2, (const char *[]){ "x", "x" }, (uint32_t[]){ 0, 0 },
                    (uint64_t[]){ 8, 8 }, (uint64_t[]){ 0, 32 }, 64);
    expect_reject(&b, ERR_FORMAT, "duplicate tensor name 'x'");

    /* placement */
    b = one_kv_file("k", 2, nm, (uint32_t[]){ 0, 0 }, (uint64_t[]){ 16, 8 },
                    (uint64_t[]){ 0, 32 }, 96);
    expect_reject(&b, ERR_FORMAT, "overlaps tensor 'x'");
    b = one_kv_file("k", 1, nm, (uint32_t[]){ 0 }, (uint64_t[]){ 8 }, (uint64_t[]){ 16 }, 64);
    expect_reject(&b, ERR_FORMAT, "not a multiple of the alignment 32");
    b = one_kv_file("k", 1, nm, (uint32_t[]){ 0 }, (uint64_t[]){ 8 }, (uint64_t[]){ 32 }, 63);
    expect_reject(&b, ERR_FORMAT, "tensor 'x': offset 32 + size 32 past end of data (63 bytes)");
    b = one_kv_file("k", 1, nm, (uint32_t[]){ 0 }, (uint64_t[]){ 0x7FFFFFFFFFFFFFC0ull },
                    (uint64_t[]){ 0 }, 64);
    expect_reject(&b, ERR_FORMAT, "overflows");
    b = one_kv_file("k", 1, nm, (uint32_t[]){ QT_Q4_0 }, (uint64_t[]){ 33 }, (uint64_t[]){ 0 }, 64);
    expect_reject(&b, ERR_FORMAT, "ne[0] 33 is not a multiple of Q4_0's block size 32");
    b = one_kv_file("k", 1, nm, (uint32_t[]){ 0 }, (uint64_t[]){ 0 }, (uint64_t[]){ 0 }, 64);
    expect_reject(&b, ERR_FORMAT, "ne[0] 0");
    b = one_kv_file("k", 1, nm, (uint32_t[]){ 99 }, (uint64_t[]){ 32 }, (uint64_t[]){ 0 }, 64);
    expect_reject(&b, ERR_UNSUPPORTED, "tensor 'x': type id 99 not supported");

    /* alignment */
    b = one_kv_file("general.alignment", 0, NULL, NULL, NULL, NULL, 0);
    expect_reject(&b, ERR_FORMAT, "general.alignment 7 is not a power of two");
    b = (buf_t){ 0 };
    put_header(&b, 3, 0, 1);
    put_key(&b, "general.alignment", GGUF_T_UINT64); put_u64(&b, 32);
    expect_reject(&b, ERR_FORMAT, "general.alignment has type UINT64");

    /* caps, checked before allocating */
    b = (buf_t){ 0 };
    put_header(&b, 3, 0, 65536);
    expect_reject(&b, ERR_FORMAT, "n_kv 65536 needs at least");
    b = (buf_t){ 0 };
    put_header(&b, 3, 0, UINT64_MAX);
    expect_reject(&b, ERR_FORMAT, "n_kv 18446744073709551615 exceeds the cap");
    b = (buf_t){ 0 };
    put_header(&b, 3, 0, 1);
    put_key(&b, "a", GGUF_T_ARRAY); put_u32(&b, GGUF_T_ARRAY); put_u64(&b, 1);
    expect_reject(&b, ERR_UNSUPPORTED, "nested array");
    b = (buf_t){ 0 };
    put_header(&b, 3, 0, 1);
    put_key(&b, "a", GGUF_T_ARRAY); put_u32(&b, GGUF_T_STRING); put_u64(&b, 1u << 20);
    put_u64(&b, 0);
    expect_reject(&b, ERR_FORMAT, "array length 1048576 of strings needs at least");
    b = (buf_t){ 0 };
    put_header(&b, 3, 0, 1);
    put_key(&b, "s", GGUF_T_STRING); put_u64(&b, (1u << 20) + 1);
    expect_reject(&b, ERR_FORMAT, "string length 1048577 exceeds the cap");
    b = (buf_t){ 0 };
    put_header(&b, 3, 0, 1);
    put_key(&b, "b", GGUF_T_BOOL); put_le(&b, 2, 1);
    expect_reject(&b, ERR_FORMAT, "bool value 2");
}

/* ------------------------------------------------ the default model */

static cJSON *load_json(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    rewind(f);
    char *s = malloc((size_t)n + 1);
    ASSERT(s != NULL);
    ASSERT_EQ_U64(fread(s, 1, (size_t)n, f), (size_t)n);
    s[n] = '\0';
    fclose(f);
    cJSON *j = cJSON_Parse(s);
    free(s);
    ASSERT_MSG(j != NULL, "%s: not JSON", path);
    return j;
}

static cJSON *item(const cJSON *o, const char *k)
{
    cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    ASSERT_MSG(v != NULL, "golden lacks \"%s\"", k);
    return v;
}

static double num(const cJSON *o, const char *k) { return item(o, k)->valuedouble; }

static const char *hex(const void *p, uint64_t n, char *out, size_t cap)
{
    static const char digits[] = "0123456789abcdef";
    size_t j = 0;
    for (uint64_t i = 0; i < n && j + 2 < cap; i++) {
        out[j++] = digits[((const uint8_t *)p)[i] >> 4];
        out[j++] = digits[((const uint8_t *)p)[i] & 15];
    }
    out[j] = '\0';
    return out;
}

/* A sampled element of a numeric array, as a double. */
static double arr_elem(const void *data, gguf_vtype_t et, uint64_t i)
{
    const uint8_t *p = data;
    union { uint8_t u8; int8_t i8; uint16_t u16; int16_t i16; uint32_t u32; int32_t i32;
            float f32; uint64_t u64; int64_t i64; double f64; } v;
    switch (et) {
    case GGUF_T_UINT8: case GGUF_T_BOOL: memcpy(&v, p + i, 1); return v.u8;
    case GGUF_T_INT8:    memcpy(&v, p + i, 1);     return v.i8;
    case GGUF_T_UINT16:  memcpy(&v, p + 2 * i, 2); return v.u16;
    case GGUF_T_INT16:   memcpy(&v, p + 2 * i, 2); return v.i16;
    case GGUF_T_UINT32:  memcpy(&v, p + 4 * i, 4); return v.u32;
    case GGUF_T_INT32:   memcpy(&v, p + 4 * i, 4); return v.i32;
    case GGUF_T_FLOAT32: memcpy(&v, p + 4 * i, 4); return v.f32;
    case GGUF_T_UINT64:  memcpy(&v, p + 8 * i, 8); return (double)v.u64;
    case GGUF_T_INT64:   memcpy(&v, p + 8 * i, 8); return (double)v.i64;
    case GGUF_T_FLOAT64: memcpy(&v, p + 8 * i, 8); return v.f64;
    default: TEST_FAIL_AT("type %d is not numeric", et);
    }
    return 0;
}

static void check_kv(const gguf_t *g, const char *key, const cJSON *e)
{
    char err[ERR_MSG_MAX], h[8192];
    int64_t i = gguf_find(g, key);
    ASSERT_MSG(i >= 0, "key %s missing", key);
    const char *type = item(e, "type")->valuestring;
    ASSERT_EQ_STR(gguf_vtype_name(gguf_kv_type(g, (uint64_t)i)), type);
    gguf_str_t s;
    if (strcmp(type, "STRING") == 0) {
        ASSERT_EQ_INT(gguf_get_str(g, key, &s, err, sizeof err), 0);
        ASSERT_EQ_STR(hex(s.ptr, s.len, h, sizeof h), item(e, "hex")->valuestring);
    } else if (strcmp(type, "ARRAY") == 0) {
        gguf_vtype_t et;
        uint64_t n;
        ASSERT_EQ_INT(gguf_get_arr(g, key, &et, &n, err, sizeof err), 0);
        ASSERT_EQ_STR(gguf_vtype_name(et), item(e, "elem_type")->valuestring);
        ASSERT_EQ_U64(n, (uint64_t)num(e, "n"));
        const cJSON *smp;
        cJSON_ArrayForEach(smp, item(e, "samples")) {
            uint64_t k = (uint64_t)num(smp, "i");
            const cJSON *v = item(smp, "value");
            if (et == GGUF_T_STRING) {
                ASSERT_EQ_INT(gguf_arr_str(g, key, k, &s), 0);
                ASSERT_MSG(strcmp(hex(s.ptr, s.len, h, sizeof h), item(v, "hex")->valuestring) == 0,
                           "%s[%llu]: %s vs %s", key, (unsigned long long)k, h,
                           item(v, "hex")->valuestring);
            } else {
                double want = cJSON_IsBool(v) ? cJSON_IsTrue(v) : v->valuedouble;
                ASSERT_MSG(arr_elem(gguf_arr_data(g, key), et, k) == want, "%s[%llu]", key,
                           (unsigned long long)k);
            }
        }
    } else if (strcmp(type, "FLOAT32") == 0 || strcmp(type, "FLOAT64") == 0) {
        float f;
        ASSERT_EQ_INT(gguf_get_f32(g, key, &f, err, sizeof err), 0);
        ASSERT_MSG(f == (float)num(e, "value"), "%s: %.9g", key, (double)f);
    } else if (strcmp(type, "BOOL") == 0) {
        int b;
        ASSERT_EQ_INT(gguf_get_bool(g, key, &b, err, sizeof err), 0);
        ASSERT_EQ_INT(b, cJSON_IsTrue(item(e, "value")));
    } else {
        uint64_t u;
        int32_t i32;
        double want = num(e, "value");
        if (want >= 0) {
            ASSERT_EQ_INT(gguf_get_u64(g, key, &u, err, sizeof err), 0);
            ASSERT_MSG((double)u == want, "%s: %llu", key, (unsigned long long)u);
        } else {
            ASSERT_EQ_INT(gguf_get_i32(g, key, &i32, err, sizeof err), 0);
            ASSERT_MSG((double)i32 == want, "%s: %d", key, i32);
        }
    }
}

static void check_tensor(const gguf_t *g, uint64_t i, const cJSON *e)
{
    char h[64];
    const gguf_tensor_t *t = gguf_tensor(g, i);
    const char *name = item(e, "name")->valuestring;
    ASSERT(t != NULL);
    ASSERT_MSG(t->name.len == strlen(name) && memcmp(t->name.ptr, name, t->name.len) == 0,
               "tensor %llu: '%.*s' vs '%s'", (unsigned long long)i, (int)t->name.len,
               t->name.ptr, name);
    ASSERT(gguf_find_tensor(g, name) == t);
    ASSERT_EQ_INT(t->type, (int)num(e, "type"));
    const cJSON *ne = item(e, "ne");
    ASSERT_EQ_INT(t->n_dims, cJSON_GetArraySize(ne));
    for (int d = 0; d < 4; d++)
        ASSERT_EQ_U64(t->ne[d], d < (int)t->n_dims ? (uint64_t)cJSON_GetArrayItem(ne, d)->valuedouble : 1);
    ASSERT_EQ_U64(t->offset, (uint64_t)num(e, "offset"));
    ASSERT_EQ_U64(t->nbytes, (uint64_t)num(e, "nbytes"));
    const cJSON *head = cJSON_GetObjectItemCaseSensitive(e, "head_hex");
    if (head != NULL)
        ASSERT_EQ_STR(hex(t->data, 16, h, sizeof h), head->valuestring);
    const cJSON *vals = cJSON_GetObjectItemCaseSensitive(e, "first_values");
    if (vals != NULL) {
        float y[256];
        size_t n = qtype_info(t->type)->block_elems < 8 ? 8 : qtype_info(t->type)->block_elems;
        ASSERT_EQ_INT(quant_dequant(t->type, t->data, y, n), 0);
        for (int k = 0; k < cJSON_GetArraySize(vals); k++)
            ASSERT_MSG(y[k] == (float)cJSON_GetArrayItem(vals, k)->valuedouble,
                       "%s value %d: %.9g", name, k, (double)y[k]);
    }
}

TEST(default_model_matches_gguf_package)
{
    const char *model = test_model_path();
    if (model == NULL)
        TEST_SKIP("default model not fetched");
    char golden[8400], err[ERR_MSG_MAX];
    const char *env = getenv("LLAMAD_GGUF_GOLDEN");
    const char *base = strrchr(model, '/') ? strrchr(model, '/') + 1 : model;
    if (env != NULL && *env != '\0')
        snprintf(golden, sizeof golden, "%s", env);
    else
        snprintf(golden, sizeof golden, "%s/tests/ref/goldens/%s.json", test_srcdir(), base);
    cJSON *j = load_json(golden);
    if (j == NULL)
        TEST_SKIP("no golden %s (tests/ref/gguf-golden.py MODEL OUT.json writes one)", golden);
    ASSERT_EQ_STR(item(j, "file")->valuestring, base);

    gguf_t *g = NULL;
    int rc = gguf_create(&g, model, err, sizeof err);
    ASSERT_MSG(rc == 0, "%s", err);
    ASSERT_EQ_INT(gguf_version(g), (int)num(j, "version"));
    ASSERT_EQ_U64(gguf_kv_count(g), (uint64_t)num(j, "kv_count"));
    ASSERT_EQ_U64(gguf_tensor_count(g), (uint64_t)num(j, "tensor_count"));
    ASSERT_EQ_INT(gguf_alignment(g), (int)num(j, "alignment"));
    ASSERT_EQ_U64(gguf_data_offset(g), (uint64_t)num(j, "data_offset"));

    const cJSON *kv;
    uint64_t i = 0;
    cJSON_ArrayForEach(kv, item(j, "kv")) {
        gguf_str_t k = gguf_kv_key(g, i++);  /* same order as the file */
        ASSERT_MSG(k.len == strlen(kv->string) && memcmp(k.ptr, kv->string, k.len) == 0,
                   "kv %llu is '%.*s', golden says '%s'", (unsigned long long)(i - 1),
                   (int)k.len, k.ptr, kv->string);
        check_kv(g, kv->string, kv);
    }
    ASSERT_EQ_U64(i, gguf_kv_count(g));
    const cJSON *t;
    i = 0;
    cJSON_ArrayForEach(t, item(j, "tensors"))
        check_tensor(g, i++, t);
    ASSERT_EQ_U64(i, gguf_tensor_count(g));
    gguf_destroy(g);
    cJSON_Delete(j);
}

/* gguf_open(private_copy = 1) holds a copy: same tensors, and a truncated file changes nothing. */
TEST(private_copy_survives_truncation)
{
    const char *model = test_model_path();
    if (model == NULL)
        TEST_SKIP("default model not fetched");
    char tmp[] = "/tmp/llamad-gguf-private.XXXXXX", err[ERR_MSG_MAX];
    int fd = mkstemp(tmp);
    ASSERT(fd >= 0);
    FILE *in = fopen(model, "rb");
    ASSERT(in != NULL);
    static char buf[1 << 16];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, in)) > 0)
        ASSERT(write(fd, buf, n) == (ssize_t)n);
    fclose(in);
    close(fd);
    gguf_t *copy = NULL, *mapped = NULL;
    int rc = gguf_open(&copy, tmp, 1, err, sizeof err);
    ASSERT_MSG(rc == 0, "%s", err);
    ASSERT_EQ_INT(truncate(tmp, 4096), 0);
    rc = gguf_create(&mapped, model, err, sizeof err);
    ASSERT_MSG(rc == 0, "%s", err);
    ASSERT_EQ_U64(gguf_tensor_count(copy), gguf_tensor_count(mapped));
    for (uint64_t i = 0; i < gguf_tensor_count(copy); i++) {
        const gguf_tensor_t *a = gguf_tensor(copy, i), *b = gguf_tensor(mapped, i);
        ASSERT(a->nbytes == b->nbytes && memcmp(a->data, b->data, a->nbytes) == 0);
    }
    gguf_destroy(copy);
    gguf_destroy(mapped);
    unlink(tmp);
}

TEST_LIST(T(sample_v3_aligned_64), T(sample_v2_default_alignment), T(sample_alignment_1),
          T(create_from_file), T(truncated_everywhere), T(rejects),
          T(default_model_matches_gguf_package), T(private_copy_survives_truncation))
