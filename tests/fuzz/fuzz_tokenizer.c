/*
 * fuzz_tokenizer.c - libFuzzer target for encoding and decoding.
 *
 * Tokenizers, loaded once: the SentencePiece golden as GGUF
 * (tokenizer-spm.gguf, merges by score; generated at test set-up into
 * $LLAMAD_TOKENIZER_GGUFS, used where present) and as an HF directory
 * (tests/ref/goldens/tokenizer-spm/, merges by rank), the LLaMA-3-style
 * byte-level golden (tokenizer-llama3/), and the default model when it has
 * been fetched.  The committed ones are found under $srcdir (default ".").
 *
 * Input: byte 0 picks the tokenizer and the flags; the rest is text.  The
 * text is encoded (with and without special tokens), the ids are decoded
 * incrementally with every chunk checked to be valid UTF-8, and a valid
 * input encoded without special parsing must decode back to itself.  The
 * same bytes, read as 16-bit ids, go through the decoder too.
 *
 * Build:  clang -g -O1 -fsanitize=fuzzer,address,undefined -I. -Iengine \
 *             base/err.c base/utf8.c base/quant.c engine/model/gguf.c engine/model/gguf_get.c \
 *             engine/text/tokenizer.c engine/text/tokenizer_gguf.c engine/text/tokenizer_hf.c \
 *             engine/text/tokenizer_encode.c engine/text/tokenizer_decode.c \
 *             tests/fuzz/fuzz_tokenizer.c -lpcre2-8 -lcjson -lm -o fuzz_tokenizer
 * Run:    srcdir=. ./fuzz_tokenizer -rss_limit_mb=2048 -timeout=2 -max_len=4096 CORPUS_DIR
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE   /* memmem */
#endif
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/err.h"
#include "engine/model/gguf.h"
#include "engine/text/tokenizer.h"

static tokenizer_t *toks[4];
static size_t n_toks;
/* Bytes each tokenizer can encode (byte-level vocabularies may lack a few,
   which are then dropped); only text of such bytes must round-trip. */
static unsigned char representable[4][256];

static void load_gguf(const char *path)
{
    char err[ERR_MSG_MAX];
    gguf_t *g = NULL;
    if (access(path, R_OK) != 0 || gguf_create(&g, path, err, sizeof err) != 0)
        return;
    if (tok_create_from_gguf(&toks[n_toks], g, err, sizeof err) == 0)
        n_toks++;
    gguf_destroy(g);
}

/* Does byte b survive encode + decode, put in a well-formed character? */
static int probe_byte(const tokenizer_t *t, unsigned char b)
{
    unsigned char s[4] = { b, 0x80, 0x80, 0x80 };
    size_t n = b < 0x80 ? 1 : b < 0xC2 ? 2 : b < 0xE0 ? 2 : b < 0xF0 ? 3 : 4;
    if (b >= 0x80 && b < 0xC2) {   /* a continuation byte: after C2 */
        s[0] = 0xC2;
        s[1] = b < 0xC0 ? b : 0x80;
    }
    if (b == 0xE0)
        s[1] = 0xA0;
    if (b == 0xF0)
        s[1] = 0x90;
    if (b >= 0xF5 || b == 0xC0 || b == 0xC1)
        return 1;   /* never in well-formed text */
    tok_buf_t ids;
    tok_text_t out;
    tok_buf_init(&ids);
    tok_text_init(&out);
    int ok = tok_encode(t, (const char *)s, n, 0, 0, &ids, NULL, 0) == 0 &&
             tok_decode(t, ids.ids, ids.n, TOK_DECODE_TEXT_START, &out) == 0 &&
             out.len == n && memcmp(out.data, s, n) == 0;
    tok_buf_close(&ids);
    tok_text_close(&out);
    return ok;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    const char *src = getenv("srcdir");
    char path[4096], err[ERR_MSG_MAX];
    if (src == NULL || *src == '\0')
        src = ".";
    const char *ggufs = getenv("LLAMAD_TOKENIZER_GGUFS");
    if (ggufs != NULL && *ggufs != '\0') {
        snprintf(path, sizeof path, "%s/tokenizer-spm.gguf", ggufs);
        load_gguf(path);
    }
    snprintf(path, sizeof path, "%s/tests/ref/goldens/tokenizer-llama3", src);
    if (tok_create_from_hf(&toks[n_toks], path, err, sizeof err) == 0)
        n_toks++;
    snprintf(path, sizeof path, "%s/tests/ref/goldens/tokenizer-spm", src);
    if (tok_create_from_hf(&toks[n_toks], path, err, sizeof err) == 0)
        n_toks++;
    snprintf(path, sizeof path, "%s/models/SmolLM2-135M-Instruct.Q4_1.gguf", src);
    load_gguf(path);
    if (n_toks < 2) {
        fprintf(stderr, "fuzz_tokenizer: goldens not found under %s (set srcdir)\n", src);
        abort();
    }
    for (size_t k = 0; k < n_toks; k++)
        for (int b = 0; b < 256; b++)
            representable[k][b] = probe_byte(toks[k], (unsigned char)b);
    return 0;
}

/* Independent check: well-formed UTF-8 per code point value. */
static int valid_utf8(const unsigned char *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        unsigned c = s[i];
        size_t len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        if (len == 0 || i + len > n)
            return 0;
        uint32_t cp = len == 1 ? c : c & (0x7F >> len);
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xC0) != 0x80)
                return 0;
            cp = cp << 6 | (s[i + k] & 0x3F);
        }
        static const uint32_t min[5] = { 0, 0, 0x80, 0x800, 0x10000 };
        if (cp < min[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return 0;
        i += len;
    }
    return 1;
}

/* Decode ids one at a time into out; every chunk must be valid UTF-8. */
static void decode_checked(const tokenizer_t *t, const int32_t *ids, size_t n, unsigned flags,
                           tok_text_t *out)
{
    tok_decoder_t d;
    tok_decoder_init(&d, t, flags);
    for (size_t i = 0; i < n; i++) {
        size_t before = out->len;
        if (tok_decoder_push(&d, ids[i], out) != 0)
            abort();
        if (!valid_utf8((const unsigned char *)out->data + before, out->len - before))
            abort();
    }
    size_t before = out->len;
    if (tok_decoder_flush(&d, out) != 0 ||
        !valid_utf8((const unsigned char *)out->data + before, out->len - before))
        abort();
    tok_decoder_close(&d);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    size_t which = data[0] % n_toks;
    const tokenizer_t *t = toks[which];
    int special = (data[0] >> 4) & 1, bos = (data[0] >> 5) & 1;
    const char *text = (const char *)data + 1;
    size_t len = size - 1;
    char err[ERR_MSG_MAX];

    tok_buf_t ids;
    tok_text_t out;
    tok_buf_init(&ids);
    tok_text_init(&out);
    if (tok_encode(t, text, len, bos, special, &ids, err, sizeof err) != 0)
        abort();
    for (size_t i = 0; i < ids.n; i++)
        if (ids.ids[i] < 0 || (size_t)ids.ids[i] >= tok_n_vocab(t))
            abort();
    decode_checked(t, ids.ids, ids.n, TOK_DECODE_TEXT_START | TOK_DECODE_SKIP_SPECIAL, &out);
    /* Round trip: valid text, no specials parsed, and (SPM) no literal U+2581. */
    int round = !special && valid_utf8((const uint8_t *)text, len) &&
                !(tok_kind(t) == TOK_KIND_SPM && memmem(text, len, "\xE2\x96\x81", 3));
    for (size_t i = 0; round && i < len; i++)
        round = representable[which][(unsigned char)text[i]];
    if (round && (out.len != len || (len > 0 && memcmp(out.data, text, len) != 0)))
        abort();

    /* The input as raw ids. */
    ids.n = 0;
    for (size_t i = 1; i + 1 < size; i += 2)
        if (tok_buf_push(&ids, (int32_t)((data[i] | data[i + 1] << 8) % tok_n_vocab(t))) != 0)
            abort();
    out.len = 0;
    decode_checked(t, ids.ids, ids.n, data[0] & 0x40 ? TOK_DECODE_SKIP_SPECIAL : 0, &out);
    tok_buf_close(&ids);
    tok_text_close(&out);
    return 0;
}
