/*
 * fuzz_safetensors.c - libFuzzer target for the safetensors header parser
 * (st_header_parse) and, on the same bytes taken as text, the config.json
 * parser (hf_config_parse).
 *
 * Build and run (seeds: valid files from tests/ref/make-hf-model.py and
 * the files of tests/corpus/make-bad-safetensors.py):
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -I. -Iengine \
 *       tests/fuzz/fuzz_safetensors.c engine/model/safetensors.c engine/model/hf_config.c \
 *       base/err.c base/utf8.c -lcjson -o fuzz_safetensors
 *   ./fuzz_safetensors -max_total_time=120 CORPUS_DIR SEED_DIR...
 *
 * A parse that succeeds must give tensors that lie inside the input and
 * that are found again by name; every byte of every tensor is read so
 * that AddressSanitizer sees any range the checks let through.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "engine/model/hf_config.h"
#include "engine/model/safetensors.h"

static void check_header(const st_header_t *h, const uint8_t *data, size_t size)
{
    volatile uint8_t sink = 0;
    for (uint64_t i = 0; i < st_header_tensor_count(h); i++) {
        const st_tensor_t *t = st_header_tensor(h, i);
        const uint8_t *p = t->data;
        if (p < data || t->nbytes > size || p + t->nbytes > data + size)
            abort(); /* a range the parser should have refused */
        if (st_header_find(h, t->name) != t)
            abort();
        for (uint64_t b = 0; b < t->nbytes; b++)
            sink ^= p[b];
    }
    (void)st_header_metadata(h, "format");
    (void)sink;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[ERR_MSG_MAX];
    st_header_t *h = NULL;
    if (st_header_parse(&h, data, size, "fuzz.safetensors", err, sizeof err) == 0)
        check_header(h, data, size);
    else if (h != NULL || memchr(err, '\0', sizeof err) == NULL)
        abort(); /* *out set on failure, or an unterminated message */
    st_header_destroy(h);

    hparams_t hp;
    hf_config_info_t info;
    if (hf_config_parse(&hp, &info, (const char *)data, size, "fuzz/config.json", err,
                        sizeof err) == 0) {
        if (hp.n_head == 0 || hp.n_head_kv == 0 || hp.n_head % hp.n_head_kv != 0 ||
            hp.head_dim % 2 != 0 || (hp.eos_id >= 0 && (uint32_t)hp.eos_id >= hp.n_vocab))
            abort(); /* accepted a config the checks should refuse */
    }
    return 0;
}
