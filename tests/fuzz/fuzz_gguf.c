/*
 * fuzz_gguf.c - libFuzzer target for the GGUF reader.
 *
 * Parses the input with gguf_create_from_buffer and, when it parses, reads
 * everything back: every metadata entry through gguf_kv_format and the
 * typed getters, every element of every string array, every tensor's
 * bytes (summed, so that a bad data pointer faults) and the first block
 * of each tensor through the dequantiser.
 *
 * Build:  clang -g -O1 -fsanitize=fuzzer,address,undefined -I. -Iengine \
 *             base/err.c base/utf8.c base/quant.c engine/model/gguf.c engine/model/gguf_get.c \
 *             tests/fuzz/fuzz_gguf.c -o fuzz_gguf
 * Run:    ./fuzz_gguf -rss_limit_mb=2048 -timeout=2 CORPUS_DIR SEED_DIR...
 * Seeds:  tests/corpus/make-bad-ggufs.py writes bad files and
 *         ok-tiny-llama.gguf, a valid one.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "engine/model/gguf.h"
#include "base/quant.h"

static volatile uint64_t sink;

static void walk_kv(const gguf_t *g, uint64_t i)
{
    char key[256], text[512], err[ERR_MSG_MAX];
    gguf_str_t k = gguf_kv_key(g, i);
    (void)gguf_kv_format(g, i, text, sizeof text);
    if (k.len >= sizeof key || memchr(k.ptr, '\0', k.len) != NULL)
        return;
    memcpy(key, k.ptr, k.len);
    key[k.len] = '\0';
    if (gguf_find(g, key) != (int64_t)i)
        abort(); /* keys are unique, so the lookup must find this one */

    uint32_t u32;
    uint64_t u64;
    int32_t i32;
    float f;
    int b;
    gguf_str_t s;
    gguf_vtype_t et;
    uint64_t n;
    (void)gguf_get_u32(g, key, &u32, err, sizeof err);
    (void)gguf_get_u64(g, key, &u64, err, sizeof err);
    (void)gguf_get_i32(g, key, &i32, err, sizeof err);
    (void)gguf_get_f32(g, key, &f, err, sizeof err);
    (void)gguf_get_bool(g, key, &b, err, sizeof err);
    if (gguf_get_str(g, key, &s, err, sizeof err) == 0 && s.len > 0)
        sink += (uint8_t)s.ptr[s.len - 1];
    if (gguf_get_arr(g, key, &et, &n, err, sizeof err) != 0)
        return;
    if (et == GGUF_T_STRING) {
        for (uint64_t e = 0; e < n; e++) {
            if (gguf_arr_str(g, key, e, &s) != 0)
                abort();
            if (s.len > 0)
                sink += (uint8_t)s.ptr[0] + (uint8_t)s.ptr[s.len - 1];
        }
        if (gguf_arr_str(g, key, n, &s) != ERR_RANGE)
            abort();
    } else {
        const uint8_t *d = gguf_arr_data(g, key);
        if (d == NULL)
            abort();
        if (n > 0)
            sink += d[0];
    }
}

static void walk_tensor(const gguf_t *g, uint64_t i)
{
    const gguf_tensor_t *t = gguf_tensor(g, i);
    char name[128];
    if (t == NULL)
        abort();
    const uint8_t *d = t->data;
    uint64_t sum = 0;
    for (uint64_t k = 0; k < t->nbytes; k += 61)
        sum += d[k];
    sum += d[t->nbytes - 1];
    sink += sum;
    if (t->name.len < sizeof name && memchr(t->name.ptr, '\0', t->name.len) == NULL) {
        memcpy(name, t->name.ptr, t->name.len);
        name[t->name.len] = '\0';
        if (gguf_find_tensor(g, name) != t)
            abort();
    }
    const qtype_info_t *ti = qtype_info(t->type);
    float y[QK_K];
    if (ti == NULL || ti->block_elems > QK_K)
        abort();
    if (quant_dequant(t->type, t->data, y, ti->block_elems) != 0)
        abort();
    sink += (uint64_t)(y[0] != y[0]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[ERR_MSG_MAX];
    gguf_t *g = NULL;
    if (gguf_create_from_buffer(&g, data, size, "fuzz.gguf", err, sizeof err) != 0) {
        if (g != NULL || strncmp(err, "fuzz.gguf: ", 11) != 0)
            abort(); /* every failure names the file and leaves no object */
        return 0;
    }
    for (uint64_t i = 0; i < gguf_kv_count(g); i++)
        walk_kv(g, i);
    for (uint64_t i = 0; i < gguf_tensor_count(g); i++)
        walk_tensor(g, i);
    gguf_destroy(g);
    return 0;
}
