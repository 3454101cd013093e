/*
 * bench_grammar - the constraint engine alone: time to compile JSON
 * Schemas (small, medium, large), and the time of one token mask while a
 * JSON text is generated, on the default model's vocabulary and on a
 * synthetic byte-level vocabulary of LLaMA-3's size (128,256 tokens: the
 * model's tokens plus concatenations of two of them, seeded).
 *
 *   bench-grammar MODEL [--runs N]
 *
 * Masks are timed per token while the tokens of a fixed JSON text (the
 * model's own tokenization of it) are fed: "cold" with a fresh grammar
 * (every parser state met for the first time walks the vocabulary's
 * trie), "warm" for the same text again with a new parser on the same
 * grammar (the states' masks are cached), as a server sees a schema it
 * has served before.  p50 and p99 over all tokens of all runs.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/bench.h"
#include "base/err.h"
#include "engine/grammar/grammar.h"
#include "engine/model/gguf.h"
#include "engine/text/tokenizer.h"

/* ---------------------------------------------------------------- vocabularies */

typedef struct {
    uint32_t n;
    char **piece;               /* [n] NULL: never allowed */
    size_t *len;
} vocab_t;

static const void *vocab_piece(void *ctx, int32_t id, size_t *len)
{
    const vocab_t *v = ctx;
    *len = v->len[id];
    return v->piece[id];
}

static void vocab_from_tok(vocab_t *v, const tokenizer_t *t, uint32_t n_total)
{
    uint32_t n = (uint32_t)tok_n_vocab(t);
    v->n = n_total > n ? n_total : n;
    v->piece = calloc(v->n, sizeof *v->piece);
    v->len = calloc(v->n, sizeof *v->len);
    for (uint32_t i = 0; i < n; i++) {
        int type = tok_type(t, (int32_t)i);
        size_t len;
        const char *p = tok_piece(t, (int32_t)i, &len);
        if (type == TOK_TYPE_CONTROL || type == TOK_TYPE_UNKNOWN || type == TOK_TYPE_UNUSED ||
            p == NULL || len == 0)
            continue;
        v->piece[i] = malloc(len);
        memcpy(v->piece[i], p, len);
        v->len[i] = len;
    }
    /* the rest: two of the model's tokens joined (seeded), as larger BPE vocabularies grow */
    uint64_t s = 0x9e3779b97f4a7c15ull;
    for (uint32_t i = n; i < v->n; i++) {
        uint32_t a, b;
        do {
            s = s * 6364136223846793005ull + 1442695040888963407ull;
            a = (uint32_t)(s >> 33) % n;
            b = (uint32_t)(s >> 13) % n;
        } while (v->piece[a] == NULL || v->piece[b] == NULL || v->len[a] + v->len[b] > 24);
        v->len[i] = v->len[a] + v->len[b];
        v->piece[i] = malloc(v->len[i]);
        memcpy(v->piece[i], v->piece[a], v->len[a]);
        memcpy(v->piece[i] + v->len[a], v->piece[b], v->len[b]);
    }
}

static void vocab_free(vocab_t *v)
{
    for (uint32_t i = 0; i < v->n; i++)
        free(v->piece[i]);
    free(v->piece);
    free(v->len);
}

/* ---------------------------------------------------------------- schemas */

static const char small_schema[] =
    "{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\"},\"age\":{\"type\":\"integer\"}},"
    "\"required\":[\"name\",\"age\"],\"additionalProperties\":false}";

static const char medium_schema[] =
    "{\"type\":\"object\",\"properties\":{"
    "\"id\":{\"type\":\"string\",\"format\":\"uuid\"},"
    "\"title\":{\"type\":\"string\",\"minLength\":1,\"maxLength\":80},"
    "\"status\":{\"enum\":[\"draft\",\"review\",\"published\",\"archived\"]},"
    "\"priority\":{\"type\":\"integer\",\"minimum\":1,\"maximum\":5},"
    "\"score\":{\"type\":\"number\"},"
    "\"tags\":{\"type\":\"array\",\"items\":{\"type\":\"string\"},\"maxItems\":8},"
    "\"author\":{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\"},"
    "\"email\":{\"type\":\"string\",\"format\":\"email\"}},\"required\":[\"name\"]},"
    "\"created\":{\"type\":\"string\",\"format\":\"date-time\"},"
    "\"published\":{\"type\":\"boolean\"},"
    "\"notes\":{\"type\":[\"string\",\"null\"]}},"
    "\"required\":[\"id\",\"title\",\"status\",\"priority\",\"tags\",\"author\",\"published\"],"
    "\"additionalProperties\":false}";

/* 200 properties of assorted types, and a recursive tree through $defs. */
static char *large_schema(void)
{
    static const char *const types[] = {
        "{\"type\":\"string\"}", "{\"type\":\"integer\",\"minimum\":0,\"maximum\":100000}",
        "{\"type\":\"number\"}", "{\"type\":\"boolean\"}",
        "{\"type\":\"array\",\"items\":{\"type\":\"string\"}}",
        "{\"enum\":[\"red\",\"green\",\"blue\",\"café\",\"日本\"]}",
        "{\"$ref\":\"#/$defs/node\"}", "{\"type\":\"string\",\"format\":\"date\"}",
    };
    size_t cap = 64 * 1024, at = 0;
    char *s = malloc(cap);
    at += (size_t)snprintf(s + at, cap - at, "{\"$defs\":{\"node\":{\"type\":\"object\",\"properties\":"
                           "{\"value\":{\"type\":\"integer\"},\"children\":{\"type\":\"array\","
                           "\"items\":{\"$ref\":\"#/$defs/node\"}}},\"required\":[\"value\"]}},"
                           "\"type\":\"object\",\"properties\":{");
    for (int i = 0; i < 200; i++)
        at += (size_t)snprintf(s + at, cap - at, "%s\"field_%03d\":%s", i ? "," : "", i, types[i % 8]);
    at += (size_t)snprintf(s + at, cap - at, "},\"required\":[\"field_000\",\"field_001\"]}");
    return s;
}

/* A text the medium schema accepts, as a model might write it. */
static const char medium_text[] =
    "{\"id\": \"3f2b9c1e-8a4d-4e6f-9b2a-1c3d5e7f9a0b\", \"title\": \"Grammar-constrained decoding "
    "in practice\", \"status\": \"review\", \"priority\": 3, \"score\": 4.25, \"tags\": [\"llm\", "
    "\"json\", \"schema\"], \"author\": {\"name\": \"Ada Lovelace\", \"email\": \"ada@example.org\"}, "
    "\"created\": \"2026-12-03T16:00:00Z\", \"published\": false, \"notes\": null}";

static const char object_text[] =
    "{\"name\": \"Paris\", \"country\": \"France\", \"population\": 2102650, \"landmarks\": "
    "[\"Eiffel Tower\", \"Louvre\", {\"river\": \"Seine\", \"length_km\": 777.0}], \"capital\": true, "
    "\"mayor\": null, \"districts\": {\"count\": 20, \"names\": [\"Louvre\", \"Bourse\"]}}";

/* ---------------------------------------------------------------- timing */

static double compile_ms(const char *schema, int runs)
{
    double t[64];
    char err[ERR_MSG_MAX];
    for (int r = 0; r < runs; r++) {
        grammar_t *g;
        double t0 = bench_now();
        if (grammar_from_json_schema(schema, strlen(schema), NULL, &g, err, sizeof err) != 0) {
            fprintf(stderr, "bench-grammar: schema refused: %s\n", err);
            exit(1);
        }
        t[r] = (bench_now() - t0) * 1e3;
        grammar_release(g);
    }
    return bench_median(t, runs);
}

static double pct(double *v, size_t n, double p)
{
    qsort(v, n, sizeof *v, bench_cmp_double);
    size_t i = (size_t)(p * (double)(n - 1) + 0.5);
    return v[i];
}

/*
 * Feed the tokens of text through a parser, timing each mask: runs times
 * with a fresh grammar (cold), each followed by one pass with a new parser
 * on the same grammar (warm).
 */
static void mask_times(const char *label, const char *schema, const tokenizer_t *t,
                       const vocab_t *voc, const char *text, int runs)
{
    char err[ERR_MSG_MAX];
    gvocab_t *v;
    int32_t eog = tok_eos(t);
    if (gvocab_create(&v, voc->n, vocab_piece, (void *)voc, &eog, eog >= 0, err, sizeof err) != 0) {
        fprintf(stderr, "bench-grammar: %s\n", err);
        exit(1);
    }
    tok_buf_t ids;
    tok_buf_init(&ids);
    if (tok_encode(t, text, strlen(text), 0, 0, &ids, err, sizeof err) != 0) {
        fprintf(stderr, "bench-grammar: %s\n", err);
        exit(1);
    }
    size_t n = ids.n, k_cold = 0, k_warm = 0;
    double *cold = malloc(n * (size_t)runs * sizeof *cold), *warm = malloc(n * (size_t)runs * sizeof *warm);
    uint32_t *mask = malloc(gvocab_mask_words(v) * sizeof *mask);
    for (int r = 0; r < runs; r++) {
        grammar_t *g;
        if (grammar_from_json_schema(schema, schema ? strlen(schema) : 0, NULL, &g, err, sizeof err) != 0) {
            fprintf(stderr, "bench-grammar: %s\n", err);
            exit(1);
        }
        for (int pass = 0; pass < 2; pass++) {
            gmatch_t *m;
            gm_create(&m, g);
            for (size_t i = 0; i < n; i++) {
                double t0 = bench_now();
                int64_t allowed = gm_mask(m, v, mask);
                double us = (bench_now() - t0) * 1e6;
                if (pass == 0)
                    cold[k_cold++] = us;
                else
                    warm[k_warm++] = us;
                if (allowed <= 0 || !(mask[ids.ids[i] / 32] >> (ids.ids[i] % 32) & 1u) ||
                    gm_feed_token(m, v, ids.ids[i]) != 0) {
                    fprintf(stderr, "bench-grammar: %s: token %zu (%d) of the text is not allowed\n",
                            label, i, ids.ids[i]);
                    exit(1);
                }
            }
            gm_destroy(m);
        }
        grammar_release(g);
    }
    printf("| %-28s | %7u | %4zu | %8.1f | %9.1f | %8.2f | %8.2f |\n", label, voc->n, n,
           pct(cold, k_cold, 0.5), pct(cold, k_cold, 0.99), pct(warm, k_warm, 0.5), pct(warm, k_warm, 0.99));
    free(cold);
    free(warm);
    free(mask);
    tok_buf_close(&ids);
    gvocab_destroy(v);
}

int main(int argc, char **argv)
{
    const char *path = NULL;
    int runs = 5;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--runs") == 0 && i + 1 < argc)
            runs = atoi(argv[++i]);
        else if (argv[i][0] != '-')
            path = argv[i];
        else {
            fprintf(stderr, "usage: bench-grammar MODEL.gguf [--runs N]\n");
            return 2;
        }
    }
    if (path == NULL || runs < 1 || runs > 64) {
        fprintf(stderr, "usage: bench-grammar MODEL.gguf [--runs N (1..64)]\n");
        return 2;
    }
    char err[ERR_MSG_MAX];
    gguf_t *gg;
    tokenizer_t *t;
    if (gguf_open(&gg, path, 0, err, sizeof err) != 0 || tok_create_from_gguf(&t, gg, err, sizeof err) != 0) {
        fprintf(stderr, "bench-grammar: %s\n", err);
        return 1;
    }
    char *large = large_schema();
    printf("Compile time (median of %d)\n\n| schema | bytes | ms |\n|---|---|---|\n", runs);
    printf("| small | %zu | %.3f |\n", strlen(small_schema), compile_ms(small_schema, runs));
    printf("| medium | %zu | %.3f |\n", strlen(medium_schema), compile_ms(medium_schema, runs));
    printf("| large | %zu | %.3f |\n", strlen(large), compile_ms(large, runs));

    vocab_t model_v, big_v;
    vocab_from_tok(&model_v, t, 0);
    vocab_from_tok(&big_v, t, 128256);
    printf("\nMask time per token, microseconds (%d runs; cold: fresh grammar; warm: states cached)\n\n"
           "| grammar, vocabulary | tokens | text | cold p50 | cold p99 | warm p50 | warm p99 |\n"
           "|---|---|---|---|---|---|---|\n", runs);
    mask_times("json_object, model vocab", NULL, t, &model_v, object_text, runs);
    mask_times("medium schema, model vocab", medium_schema, t, &model_v, medium_text, runs);
    mask_times("json_object, 128K vocab", NULL, t, &big_v, object_text, runs);
    mask_times("medium schema, 128K vocab", medium_schema, t, &big_v, medium_text, runs);
    vocab_free(&model_v);
    vocab_free(&big_v);
    free(large);
    tok_destroy(t);
    gguf_destroy(gg);
    return 0;
}
