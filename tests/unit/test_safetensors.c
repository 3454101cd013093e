/*
 * test_safetensors.c - the safetensors reader and config.json loader.
 *
 * Valid files are assembled here byte by byte (header text and data
 * written out by hand), so the expected shapes, offsets and values are
 * known independently of the reader.  Bad files come from
 * tests/corpus/make-bad-safetensors.py (directory from LLAMAD_BAD_MODELS,
 * default $srcdir/tests/corpus/bad-models); each must be refused with a
 * message naming the file and the fault.  A tiny model written by
 * tests/ref/make-hf-model.py (numpy) is checked when LLAMAD_TINY_HF names
 * its directory.
 */
#include <errno.h>
#include <stdint.h>
#include <sys/stat.h>

#include "base/err.h"
#include "engine/model/hf_config.h"
#include "engine/model/safetensors.h"
#include "test.h"

/* ============================ helpers ============================ */

typedef struct {
    uint8_t *p;
    size_t len;
} blob_t;

/* u64 LE length, the header padded with spaces to a multiple of 8, data. */
static blob_t make_blob(const char *header, const void *data, size_t data_len)
{
    size_t n = strlen(header), padded = (n + 7) / 8 * 8;
    blob_t b = { malloc(8 + padded + data_len + 1), 8 + padded + data_len };
    ASSERT(b.p != NULL);
    for (int i = 0; i < 8; i++)
        b.p[i] = (uint8_t)((uint64_t)padded >> (8 * i));
    memcpy(b.p + 8, header, n);
    memset(b.p + 8 + n, ' ', padded - n);
    if (data_len > 0)
        memcpy(b.p + 8 + padded, data, data_len);
    return b;
}

static void write_file(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    ASSERT_MSG(f != NULL, "fopen %s: %s", path, strerror(errno));
    ASSERT(fwrite(p, 1, n, f) == n);
    ASSERT(fclose(f) == 0);
}

static void write_text(const char *dir, const char *name, const char *text)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    write_file(path, text, strlen(text));
}

static char *make_tmpdir(void)
{
    static char dir[64];
    snprintf(dir, sizeof dir, "/tmp/llamad-test-st-XXXXXX");
    ASSERT(mkdtemp(dir) != NULL);
    return dir;
}

/* Remove the listed files and the directory (tests run in a forked child). */
static void rm_tmpdir(const char *dir, const char *const *names, size_t n)
{
    char path[512];
    for (size_t i = 0; i < n; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        unlink(path);
    }
    rmdir(dir);
}

/* The file of the "mixed" tests: three tensors of three dtypes. */
#define MIXED_HEADER                                                        \
    "{\"__metadata__\":{\"format\":\"pt\",\"note\":\"x\"},"                 \
    "\"w\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]},"    \
    "\"h\":{\"shape\":[4],\"dtype\":\"F16\",\"data_offsets\":[24,32]},"     \
    "\"b\":{\"dtype\":\"BF16\",\"shape\":[3,1,2],\"data_offsets\":[32,44]}}"

static blob_t mixed_blob(void)
{
    uint8_t data[44];
    float w[6] = { 0.5f, -1.0f, 2.0f, 3.25f, -4.5f, 6.0f };
    uint16_t h[4] = { 0x3c00, 0xc000, 0x0000, 0x7bff }; /* 1, -2, 0, 65504 */
    uint16_t b[6] = { 0x3f80, 0x4000, 0xbf80, 0x0000, 0x4040, 0x4080 }; /* 1 2 -1 0 3 4 */
    memcpy(data, w, 24);
    memcpy(data + 24, h, 8);
    memcpy(data + 32, b, 12);
    return make_blob(MIXED_HEADER, data, sizeof data);
}

static void check_mixed(const st_tensor_t *w, const st_tensor_t *h, const st_tensor_t *b)
{
    ASSERT(w != NULL && h != NULL && b != NULL);
    ASSERT_EQ_INT(w->type, QT_F32);
    ASSERT_EQ_INT(w->n_dims, 2);
    ASSERT_EQ_U64(w->ne[0], 3); /* innermost first: shape [2,3] */
    ASSERT_EQ_U64(w->ne[1], 2);
    ASSERT_EQ_U64(w->ne[2], 1);
    ASSERT_EQ_U64(w->ne[3], 1);
    ASSERT_EQ_U64(w->offset, 0);
    ASSERT_EQ_U64(w->nbytes, 24);
    float wv[6];
    memcpy(wv, w->data, sizeof wv);
    ASSERT_NEAR(wv[0], 0.5, 0);
    ASSERT_NEAR(wv[3], 3.25, 0); /* row 1, column 0 */
    ASSERT_NEAR(wv[5], 6.0, 0);

    ASSERT_EQ_INT(h->type, QT_F16);
    ASSERT_EQ_INT(h->n_dims, 1);
    ASSERT_EQ_U64(h->ne[0], 4);
    ASSERT_EQ_U64(h->offset, 24);
    ASSERT_EQ_U64(h->nbytes, 8);
    uint16_t hv[4];
    memcpy(hv, h->data, sizeof hv);
    ASSERT_EQ_INT(hv[1], 0xc000);
    ASSERT_EQ_INT(hv[3], 0x7bff);

    ASSERT_EQ_INT(b->type, QT_BF16);
    ASSERT_EQ_INT(b->n_dims, 3);
    ASSERT_EQ_U64(b->ne[0], 2);
    ASSERT_EQ_U64(b->ne[1], 1);
    ASSERT_EQ_U64(b->ne[2], 3);
    ASSERT_EQ_U64(b->ne[3], 1);
    ASSERT_EQ_U64(b->offset, 32);
    ASSERT_EQ_U64(b->nbytes, 12);
    uint16_t bv[6];
    memcpy(bv, b->data, sizeof bv);
    ASSERT_EQ_INT(bv[4], 0x4040);
}

/* ============================ one header ============================ */

TEST(header_valid_mixed)
{
    blob_t bl = mixed_blob();
    st_header_t *h = NULL;
    char err[ERR_MSG_MAX] = "";
    ASSERT_EQ_INT(st_header_parse(&h, bl.p, bl.len, "mixed", err, sizeof err), 0);
    ASSERT_EQ_U64(st_header_tensor_count(h), 3);
    /* header order is kept */
    ASSERT_EQ_STR(st_header_tensor(h, 0)->name, "w");
    ASSERT_EQ_STR(st_header_tensor(h, 1)->name, "h");
    ASSERT_EQ_STR(st_header_tensor(h, 2)->name, "b");
    check_mixed(st_header_find(h, "w"), st_header_find(h, "h"), st_header_find(h, "b"));
    size_t data_start = bl.len - 44;
    ASSERT(st_header_find(h, "h")->data == bl.p + data_start + 24);
    ASSERT(st_header_find(h, "x") == NULL);
    ASSERT(st_header_find(h, "") == NULL);
    ASSERT_EQ_STR(st_header_metadata(h, "format"), "pt");
    ASSERT_EQ_STR(st_header_metadata(h, "note"), "x");
    ASSERT(st_header_metadata(h, "nope") == NULL);
    st_header_destroy(h);
    free(bl.p);
}

TEST(header_scalar_empty_and_no_tensors)
{
    float one = 1.0f;
    blob_t bl = make_blob("{\"s\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4]},"
                          "\"z\":{\"dtype\":\"F16\",\"shape\":[0,5],\"data_offsets\":[4,4]}}",
                          &one, 4);
    st_header_t *h = NULL;
    char err[ERR_MSG_MAX] = "";
    ASSERT_MSG(st_header_parse(&h, bl.p, bl.len, "s", err, sizeof err) == 0, "%s", err);
    const st_tensor_t *s = st_header_find(h, "s"), *z = st_header_find(h, "z");
    ASSERT_EQ_INT(s->n_dims, 0);
    ASSERT_EQ_U64(s->ne[0], 1);
    ASSERT_EQ_U64(s->nbytes, 4);
    ASSERT_EQ_INT(z->n_dims, 2);
    ASSERT_EQ_U64(z->ne[0], 5);
    ASSERT_EQ_U64(z->ne[1], 0);
    ASSERT_EQ_U64(z->nbytes, 0);
    ASSERT(st_header_metadata(h, "format") == NULL);
    st_header_destroy(h);
    free(bl.p);

    bl = make_blob("{}", NULL, 0);
    ASSERT_EQ_INT(st_header_parse(&h, bl.p, bl.len, "empty", err, sizeof err), 0);
    ASSERT_EQ_U64(st_header_tensor_count(h), 0);
    st_header_destroy(h);
    free(bl.p);
}

/* One in-memory bad header: rejected with `code` and a message holding `want`. */
static void expect_bad(const char *header, size_t data_len, int code, const char *want)
{
    static uint8_t zeros[64];
    blob_t bl = make_blob(header, zeros, data_len);
    st_header_t *h = (st_header_t *)&bl; /* must be reset to NULL */
    char err[ERR_MSG_MAX] = "";
    int rc = st_header_parse(&h, bl.p, bl.len, "bad.safetensors", err, sizeof err);
    ASSERT_MSG(rc == code, "header %s: rc %d (%s), want %d", header, rc, err, code);
    ASSERT(h == NULL);
    ASSERT_MSG(strstr(err, "bad.safetensors") != NULL && strstr(err, want) != NULL,
               "message \"%s\" lacks \"%s\"", err, want);
    free(bl.p);
}

TEST(header_rejects_in_memory)
{
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
               "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}",
               16, ERR_FORMAT, "duplicate key 'a'");
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
               "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
               12, ERR_FORMAT, "overlap");
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
               8, ERR_FORMAT, "hole of 4 bytes");
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
               8, ERR_FORMAT, "4 trailing bytes");
    expect_bad("{\"my.weight\":{\"dtype\":\"F8_E4M3\",\"shape\":[4],\"data_offsets\":[0,4]}}",
               4, ERR_UNSUPPORTED, "tensor 'my.weight': dtype F8_E4M3 not supported");
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}",
               8, ERR_FORMAT, "shape x dtype is 12 bytes");
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[18446744073709551616],"
               "\"data_offsets\":[0,8]}}",
               8, ERR_FORMAT, "shape[0] is not a non-negative integer");
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8,9]}}",
               8, ERR_FORMAT, "data_offsets is not [begin, end]");
    expect_bad("{\"\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
               8, ERR_FORMAT, "empty tensor name");
    /* a hostile name is shown with its control characters masked */
    expect_bad("{\"a\\nb\":{\"dtype\":\"X\",\"shape\":[2],\"data_offsets\":[0,8]}}",
               8, ERR_UNSUPPORTED, "tensor 'a?b': unknown dtype 'X'");
}

TEST(header_rejects_bad_lengths)
{
    uint8_t buf[32] = { 0 };
    st_header_t *h = NULL;
    char err[ERR_MSG_MAX] = "";
    ASSERT_EQ_INT(st_header_parse(&h, buf, 7, "f", err, sizeof err), ERR_FORMAT);
    ASSERT(strstr(err, "shorter than the 8-byte") != NULL);
    ASSERT_EQ_INT(st_header_parse(&h, buf, 10, "f", err, sizeof err), ERR_FORMAT);
    ASSERT(strstr(err, "header length 0") != NULL);
    memset(buf, 0xff, 8);
    ASSERT_EQ_INT(st_header_parse(&h, buf, sizeof buf, "f", err, sizeof err), ERR_FORMAT);
    ASSERT(strstr(err, "header length 18446744073709551615 exceeds the cap") != NULL);
    memset(buf, 0, 8);
    buf[0] = 25; /* 24 bytes follow the prefix */
    ASSERT_EQ_INT(st_header_parse(&h, buf, sizeof buf, "f", err, sizeof err), ERR_FORMAT);
    ASSERT(strstr(err, "runs past the end") != NULL);
    ASSERT(h == NULL);
}

/* Every proper prefix of a valid file is refused, and nothing crashes. */
TEST(header_every_truncation_rejected)
{
    blob_t bl = mixed_blob();
    char err[ERR_MSG_MAX];
    for (size_t n = 0; n < bl.len; n++) {
        uint8_t *copy = malloc(n + 1); /* exact size, so ASan sees any over-read */
        memcpy(copy, bl.p, n);
        st_header_t *h = NULL;
        int rc = st_header_parse(&h, copy, n, "cut", err, sizeof err);
        ASSERT_MSG(rc == ERR_FORMAT && h == NULL, "prefix %zu: rc %d", n, rc);
        free(copy);
    }
    free(bl.p);
}

/* Flipping any one bit of the header either still parses or is refused cleanly. */
TEST(header_bit_flips_never_crash)
{
    blob_t bl = mixed_blob();
    char err[ERR_MSG_MAX];
    size_t hdr_end = bl.len - 44;
    for (size_t i = 0; i < hdr_end; i++)
        for (int bit = 0; bit < 8; bit++) {
            bl.p[i] ^= (uint8_t)(1u << bit);
            st_header_t *h = NULL;
            int rc = st_header_parse(&h, bl.p, bl.len, "flip", err, sizeof err);
            ASSERT(rc <= 0);
            ASSERT((rc == 0) == (h != NULL));
            if (h != NULL)
                for (uint64_t t = 0; t < st_header_tensor_count(h); t++) {
                    const st_tensor_t *x = st_header_tensor(h, t);
                    ASSERT((const uint8_t *)x->data + x->nbytes <= bl.p + bl.len);
                }
            st_header_destroy(h);
            bl.p[i] ^= (uint8_t)(1u << bit);
        }
    free(bl.p);
}

/* ============================ files and directories ============================ */

TEST(model_single_file_and_directory)
{
    char *dir = make_tmpdir(), path[256], err[ERR_MSG_MAX] = "";
    blob_t bl = mixed_blob();
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    write_file(path, bl.p, bl.len);
    const char *paths[] = { path, dir };
    for (int i = 0; i < 2; i++) {
        st_model_t *m = NULL;
        ASSERT_MSG(st_create(&m, paths[i], err, sizeof err) == 0, "%s", err);
        ASSERT_EQ_INT(st_shard_count(m), 1);
        ASSERT_EQ_U64(st_tensor_count(m), 3);
        ASSERT_EQ_STR(st_path(m), paths[i]);
        ASSERT_EQ_STR(st_tensor(m, 2)->name, "b");
        check_mixed(st_find_tensor(m, "w"), st_find_tensor(m, "h"), st_find_tensor(m, "b"));
        ASSERT(st_find_tensor(m, "q") == NULL);
        st_destroy(m);
    }
    static const char *const names[] = { "model.safetensors" };
    rm_tmpdir(dir, names, 1);
    free(bl.p);
}

TEST(model_sharded_index)
{
    char *dir = make_tmpdir(), path[256], err[ERR_MSG_MAX] = "";
    float a[4] = { 1, 2, 3, 4 }, b[2] = { -7, 8 }, c[6] = { 9, 10, 11, 12, 13, 14 };
    uint8_t d2[32];
    blob_t s1 = make_blob("{\"x.a\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]}}",
                          a, sizeof a);
    memcpy(d2, c, 24);
    memcpy(d2 + 24, b, 8);
    blob_t s2 = make_blob("{\"__metadata__\":{\"format\":\"pt\"},"
                          "\"x.c\":{\"dtype\":\"F32\",\"shape\":[3,2],\"data_offsets\":[0,24]},"
                          "\"x.b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[24,32]}}",
                          d2, sizeof d2);
    snprintf(path, sizeof path, "%s/m-1.safetensors", dir);
    write_file(path, s1.p, s1.len);
    snprintf(path, sizeof path, "%s/m-2.safetensors", dir);
    write_file(path, s2.p, s2.len);
    write_text(dir, "model.safetensors.index.json",
               "{\"metadata\":{\"total_size\":48},\"weight_map\":{"
               "\"x.b\":\"m-2.safetensors\",\"x.a\":\"m-1.safetensors\","
               "\"x.c\":\"m-2.safetensors\"}}");
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
    const char *paths[] = { dir, path };
    for (int i = 0; i < 2; i++) {
        st_model_t *m = NULL;
        ASSERT_MSG(st_create(&m, paths[i], err, sizeof err) == 0, "%s", err);
        ASSERT_EQ_INT(st_shard_count(m), 2);
        ASSERT_EQ_U64(st_tensor_count(m), 3);
        const st_tensor_t *ta = st_find_tensor(m, "x.a"), *tb = st_find_tensor(m, "x.b"),
                          *tc = st_find_tensor(m, "x.c");
        ASSERT(ta != NULL && tb != NULL && tc != NULL);
        ASSERT_EQ_U64(tc->ne[0], 2);
        ASSERT_EQ_U64(tc->ne[1], 3);
        ASSERT_EQ_U64(tb->offset, 24);
        float v[6];
        memcpy(v, ta->data, 16);
        ASSERT_NEAR(v[3], 4, 0);
        memcpy(v, tb->data, 8);
        ASSERT_NEAR(v[0], -7, 0);
        memcpy(v, tc->data, 24);
        ASSERT_NEAR(v[5], 14, 0);
        /* iteration: shards in name order, tensors in header order */
        ASSERT_EQ_STR(st_tensor(m, 0)->name, "x.a");
        ASSERT_EQ_STR(st_tensor(m, 1)->name, "x.c");
        ASSERT_EQ_STR(st_tensor(m, 2)->name, "x.b");
        st_destroy(m);
    }
    static const char *const names[] = { "m-1.safetensors", "m-2.safetensors",
                                         "model.safetensors.index.json" };
    rm_tmpdir(dir, names, 3);
    free(s1.p);
    free(s2.p);
}

/* A FIFO or a symlink in the model directory is refused, and nothing blocks. */
TEST(model_refuses_fifo_and_symlink)
{
    char *dir = make_tmpdir(), path[256], err[ERR_MSG_MAX] = "";
    st_model_t *m = NULL;
    snprintf(path, sizeof path, "%s/m-1.safetensors", dir);
    ASSERT(mkfifo(path, 0600) == 0);
    write_text(dir, "model.safetensors.index.json",
               "{\"weight_map\":{\"a\":\"m-1.safetensors\"}}");
    alarm(10); /* a blocking open would hang here */
    ASSERT_EQ_INT(st_create(&m, dir, err, sizeof err), ERR_FORMAT);
    ASSERT_MSG(strstr(err, "m-1.safetensors: not a regular file") != NULL, "%s", err);
    blob_t bl = mixed_blob();
    snprintf(path, sizeof path, "%s/real", dir);
    write_file(path, bl.p, bl.len);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    ASSERT(symlink("real", path) == 0);
    ASSERT_EQ_INT(st_create(&m, dir, err, sizeof err), ERR_FORMAT);
    ASSERT_MSG(strstr(err, "model.safetensors: is a symlink") != NULL, "%s", err);
    ASSERT(m == NULL);
    static const char *const names[] = { "m-1.safetensors", "model.safetensors.index.json",
                                         "real", "model.safetensors" };
    rm_tmpdir(dir, names, 4);
    free(bl.p);
}

TEST(model_missing_paths)
{
    char err[ERR_MSG_MAX] = "";
    st_model_t *m = NULL;
    ASSERT_EQ_INT(st_create(&m, "/nonexistent/llamad/model", err, sizeof err), ERR_NOTFOUND);
    ASSERT(m == NULL);
    ASSERT(strstr(err, "/nonexistent/llamad/model") != NULL);
}

/* ============================ the corpus ============================ */

static const char *corpus_dir(void)
{
    static char buf[1024];
    const char *env = getenv("LLAMAD_BAD_MODELS");
    if (env != NULL && *env != '\0')
        snprintf(buf, sizeof buf, "%s", env);
    else
        snprintf(buf, sizeof buf, "%s/tests/corpus/bad-models", test_srcdir());
    return buf;
}

typedef int (*open_fn)(const char *path, char *err, size_t errlen);

static int open_st(const char *path, char *err, size_t errlen)
{
    st_model_t *m = (st_model_t *)1;
    int rc = st_create(&m, path, err, errlen);
    if (rc != 0 && m != NULL)
        return 1; /* *out not reset: a failure of its own */
    st_destroy(m);
    return rc;
}

static int open_hf(const char *path, char *err, size_t errlen)
{
    hparams_t hp;
    memset(&hp, 0x5a, sizeof hp);
    hparams_t before = hp;
    int rc = hf_config_load(&hp, path, err, errlen);
    if (rc != 0 && memcmp(&hp, &before, sizeof hp) != 0)
        return 1; /* changed on error */
    return rc;
}

static void run_manifest(const char *manifest, open_fn fn, int min_cases)
{
    char path[2048], line[1024];
    snprintf(path, sizeof path, "%s/%s", corpus_dir(), manifest);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        TEST_SKIP("%s absent (run tests/corpus/make-bad-safetensors.py)", path);
    int n = 0, bad = 0;
    while (fgets(line, sizeof line, f) != NULL) {
        char *tab = strchr(line, '\t'), *nl = strchr(line, '\n');
        if (tab == NULL)
            continue;
        *tab = '\0';
        if (nl != NULL)
            *nl = '\0';
        const char *name = line, *want = tab + 1;
        char err[ERR_MSG_MAX] = "";
        snprintf(path, sizeof path, "%s/%s", corpus_dir(), name);
        int rc = fn(path, err, sizeof err);
        n++;
        if (rc >= 0 || strstr(err, name) == NULL || strstr(err, want) == NULL) {
            fprintf(stderr, "  %s: rc %d, message \"%s\", want \"%s\"\n", name, rc, err, want);
            bad++;
        }
    }
    fclose(f);
    ASSERT_EQ_INT(bad, 0);
    ASSERT_MSG(n >= min_cases, "%s: %d cases, want at least %d", manifest, n, min_cases);
}

TEST(corpus_safetensors) { run_manifest("manifest-st.tsv", open_st, 18); }

TEST(corpus_config) { run_manifest("manifest-hf.tsv", open_hf, 4); }

/* ============================ config.json ============================ */

static int parse_cfg(hparams_t *hp, hf_config_info_t *info, const char *json, char *err)
{
    return hf_config_parse(hp, info, json, strlen(json), "test/config.json", err, ERR_MSG_MAX);
}

/* SmolLM2-135M-Instruct's config.json (GQA: 9 query heads, 3 K/V heads). */
TEST(config_smollm2_gqa)
{
    const char *json =
        "{\"architectures\": [\"LlamaForCausalLM\"], \"attention_bias\": false,"
        " \"attention_dropout\": 0.0, \"bos_token_id\": 1, \"eos_token_id\": 2,"
        " \"hidden_act\": \"silu\", \"hidden_size\": 576,"
        " \"initializer_range\": 0.041666666666666664, \"intermediate_size\": 1536,"
        " \"is_llama_config\": true, \"max_position_embeddings\": 8192,"
        " \"model_type\": \"llama\", \"num_attention_heads\": 9, \"num_hidden_layers\": 30,"
        " \"num_key_value_heads\": 3, \"pad_token_id\": 2, \"pretraining_tp\": 1,"
        " \"rms_norm_eps\": 1e-05, \"rope_interleaved\": false, \"rope_scaling\": null,"
        " \"rope_theta\": 100000, \"tie_word_embeddings\": true, \"torch_dtype\": \"bfloat16\","
        " \"transformers.js_config\": {\"kv_cache_dtype\": {\"q4f16\": \"float16\"}},"
        " \"transformers_version\": \"4.42.3\", \"use_cache\": true, \"vocab_size\": 49152}";
    hparams_t hp;
    hf_config_info_t info;
    char err[ERR_MSG_MAX] = "";
    ASSERT_MSG(parse_cfg(&hp, &info, json, err) == 0, "%s", err);
    ASSERT_EQ_INT(hp.n_vocab, 49152);
    ASSERT_EQ_INT(hp.n_embd, 576);
    ASSERT_EQ_INT(hp.n_layer, 30);
    ASSERT_EQ_INT(hp.n_head, 9);
    ASSERT_EQ_INT(hp.n_head_kv, 3);
    ASSERT_EQ_INT(hp.head_dim, 64);
    ASSERT_EQ_INT(hp.rope_dim, 64);
    ASSERT_EQ_INT(hp.n_ff, 1536);
    ASSERT_EQ_INT(hp.n_ctx_train, 8192);
    ASSERT_NEAR(hp.rms_eps, 1e-5, 1e-12);
    ASSERT_NEAR(hp.rope_theta, 100000, 0);
    ASSERT_EQ_INT(hp.rope_layout, ROPE_LAYOUT_HALF);
    ASSERT_NEAR(hp.rope_scale_factor, 0, 0);
    ASSERT_EQ_INT(hp.tied_embeddings, 1);
    ASSERT_EQ_INT(hp.bos_id, 1);
    ASSERT_EQ_INT(hp.eos_id, 2);
    ASSERT_EQ_INT(hp.pad_id, 2);
    ASSERT_EQ_STR(info.model_type, "llama");
    ASSERT_EQ_INT(info.eos_is_list, 0);
    ASSERT_EQ_INT(info.n_eos, 1);
}

/* Llama-3.1-8B's config.json: llama3 RoPE scaling and a list of EOS ids. */
TEST(config_llama31_rope_scaling)
{
    const char *json =
        "{\"architectures\": [\"LlamaForCausalLM\"], \"attention_bias\": false,"
        " \"bos_token_id\": 128000, \"eos_token_id\": [128001, 128008, 128009],"
        " \"hidden_act\": \"silu\", \"hidden_size\": 4096, \"intermediate_size\": 14336,"
        " \"max_position_embeddings\": 131072, \"mlp_bias\": false, \"model_type\": \"llama\","
        " \"num_attention_heads\": 32, \"num_hidden_layers\": 32, \"num_key_value_heads\": 8,"
        " \"pretraining_tp\": 1, \"rms_norm_eps\": 1e-05, \"rope_scaling\": {\"factor\": 8.0,"
        " \"low_freq_factor\": 1.0, \"high_freq_factor\": 4.0,"
        " \"original_max_position_embeddings\": 8192, \"rope_type\": \"llama3\"},"
        " \"rope_theta\": 500000.0, \"tie_word_embeddings\": false, \"torch_dtype\": \"bfloat16\","
        " \"vocab_size\": 128256}";
    hparams_t hp;
    hf_config_info_t info;
    char err[ERR_MSG_MAX] = "";
    ASSERT_MSG(parse_cfg(&hp, &info, json, err) == 0, "%s", err);
    ASSERT_EQ_INT(hp.n_head, 32);
    ASSERT_EQ_INT(hp.n_head_kv, 8);
    ASSERT_EQ_INT(hp.head_dim, 128);
    ASSERT_EQ_INT(hp.n_ff, 14336);
    ASSERT_NEAR(hp.rope_theta, 500000, 0);
    ASSERT_NEAR(hp.rope_scale_factor, 8, 0);
    ASSERT_NEAR(hp.rope_low_freq_factor, 1, 0);
    ASSERT_NEAR(hp.rope_high_freq_factor, 4, 0);
    ASSERT_EQ_INT(hp.rope_orig_ctx, 8192);
    ASSERT_EQ_INT(hp.tied_embeddings, 0);
    ASSERT_EQ_INT(hp.bos_id, 128000);
    ASSERT_EQ_INT(hp.eos_id, 128001);
    ASSERT_EQ_INT(hp.pad_id, -1);
    ASSERT_EQ_INT(info.eos_is_list, 1);
    ASSERT_EQ_INT(info.n_eos, 3);
    ASSERT_EQ_INT(info.n_eos_listed, 3);
    ASSERT_EQ_INT(info.eos_ids[2], 128009);
}

TEST(config_defaults_and_variants)
{
    hparams_t hp;
    hf_config_info_t info;
    char err[ERR_MSG_MAX] = "";
    /* LlamaConfig defaults for everything optional */
    ASSERT_MSG(parse_cfg(&hp, &info, "{\"model_type\":\"llama\",\"vocab_size\":32000,"
                         "\"hidden_size\":4096,\"intermediate_size\":11008,"
                         "\"num_hidden_layers\":32,\"num_attention_heads\":32,"
                         "\"max_position_embeddings\":4096}", err) == 0, "%s", err);
    ASSERT_EQ_INT(hp.n_head_kv, 32);
    ASSERT_EQ_INT(hp.head_dim, 128);
    ASSERT_NEAR(hp.rope_theta, 10000, 0);
    ASSERT_NEAR(hp.rms_eps, 1e-6, 1e-13);
    ASSERT_EQ_INT(hp.tied_embeddings, 0);
    ASSERT_EQ_INT(hp.bos_id, -1);
    ASSERT_EQ_INT(hp.eos_id, -1);
    ASSERT_EQ_INT(info.n_eos, 0);

    /* an explicit head_dim need not be hidden / heads; older "type" key; null ids */
    ASSERT_MSG(parse_cfg(&hp, &info, "{\"model_type\":\"llama\",\"vocab_size\":100,"
                         "\"hidden_size\":64,\"intermediate_size\":128,\"num_hidden_layers\":2,"
                         "\"num_attention_heads\":4,\"num_key_value_heads\":2,\"head_dim\":32,"
                         "\"max_position_embeddings\":64,\"pad_token_id\":null,"
                         "\"rope_scaling\":{\"type\":\"llama3\",\"factor\":32,"
                         "\"low_freq_factor\":1,\"high_freq_factor\":4,"
                         "\"original_max_position_embeddings\":8192}}", err) == 0, "%s", err);
    ASSERT_EQ_INT(hp.head_dim, 32);
    ASSERT_EQ_INT(hp.n_head_kv, 2);
    ASSERT_NEAR(hp.rope_scale_factor, 32, 0);
    ASSERT_EQ_INT(hp.pad_id, -1);

    /* rope_theta and the scaling under "rope_parameters" (newer transformers) */
    ASSERT_MSG(parse_cfg(&hp, NULL, "{\"model_type\":\"llama\",\"vocab_size\":100,"
                         "\"hidden_size\":64,\"intermediate_size\":128,\"num_hidden_layers\":2,"
                         "\"num_attention_heads\":4,\"max_position_embeddings\":64,"
                         "\"rope_parameters\":{\"rope_type\":\"default\",\"rope_theta\":250000}}",
                         err) == 0, "%s", err);
    ASSERT_NEAR(hp.rope_theta, 250000, 0);
    ASSERT_NEAR(hp.rope_scale_factor, 0, 0);

    /* mistral without a sliding window is plain LLaMA; with one it is refused */
    const char *mistral = "{\"model_type\":\"mistral\",\"architectures\":[\"MistralForCausalLM\"],"
                          "\"vocab_size\":100,\"hidden_size\":64,\"intermediate_size\":128,"
                          "\"num_hidden_layers\":2,\"num_attention_heads\":4,"
                          "\"max_position_embeddings\":64,\"sliding_window\":%s}";
    char buf[512];
    snprintf(buf, sizeof buf, mistral, "null");
    ASSERT_MSG(parse_cfg(&hp, &info, buf, err) == 0, "%s", err);
    ASSERT_EQ_STR(info.model_type, "mistral");
    snprintf(buf, sizeof buf, mistral, "4096");
    ASSERT_EQ_INT(parse_cfg(&hp, &info, buf, err), ERR_UNSUPPORTED);
    ASSERT(strstr(err, "test/config.json: key 'sliding_window'") != NULL);
}

TEST(config_rejects_unchanged)
{
    hparams_t hp;
    memset(&hp, 0x77, sizeof hp);
    hparams_t before = hp;
    char err[ERR_MSG_MAX] = "";
    ASSERT_EQ_INT(parse_cfg(&hp, NULL, "{\"model_type\":\"llama\",\"vocab_size\":100,"
                            "\"hidden_size\":64,\"intermediate_size\":128,\"num_hidden_layers\":2,"
                            "\"num_attention_heads\":4,\"max_position_embeddings\":64,"
                            "\"rope_scaling\":{\"rope_type\":\"linear\",\"factor\":2}}", err),
                  ERR_UNSUPPORTED);
    ASSERT(strstr(err, "test/config.json: key 'rope_scaling.rope_type' = 'linear'") != NULL);
    ASSERT(memcmp(&hp, &before, sizeof hp) == 0);
    ASSERT_EQ_INT(parse_cfg(&hp, NULL, "{\"model_type\":\"llama\",\"vocab_size\":100,"
                            "\"hidden_size\":64,\"intermediate_size\":128,\"num_hidden_layers\":2,"
                            "\"num_attention_heads\":4,\"max_position_embeddings\":64,"
                            "\"attention_bias\":true}", err), ERR_UNSUPPORTED);
    ASSERT(strstr(err, "attention_bias") != NULL);
    ASSERT_EQ_INT(parse_cfg(&hp, NULL, "[1,2]", err), ERR_FORMAT);
    ASSERT(memcmp(&hp, &before, sizeof hp) == 0);
}

TEST(config_load_from_directory)
{
    char *dir = make_tmpdir(), err[ERR_MSG_MAX] = "";
    write_text(dir, "config.json", "{\"model_type\":\"llama\",\"vocab_size\":100,"
               "\"hidden_size\":64,\"intermediate_size\":128,\"num_hidden_layers\":3,"
               "\"num_attention_heads\":4,\"max_position_embeddings\":64,"
               "\"eos_token_id\":[7,8,9,10,11,12,13,14,15,16]}");
    hparams_t hp;
    hf_config_info_t info;
    ASSERT_MSG(hf_config_load_info(&hp, &info, dir, err, sizeof err) == 0, "%s", err);
    ASSERT_EQ_INT(hp.n_layer, 3);
    ASSERT_EQ_INT(hp.eos_id, 7);
    ASSERT_EQ_INT(info.n_eos, HF_MAX_EOS);
    ASSERT_EQ_INT(info.n_eos_listed, 10);
    static const char *const names[] = { "config.json" };
    rm_tmpdir(dir, names, 1);
    ASSERT_EQ_INT(hf_config_load(&hp, dir, err, sizeof err), ERR_NOTFOUND);
    ASSERT(strstr(err, "config.json") != NULL);
}

/* ============================ a model written by numpy ============================ */

/* Every tensor the HF LLaMA layout needs, with shapes from config.json. */
TEST(tiny_hf_model_from_numpy)
{
    const char *dir = getenv("LLAMAD_TINY_HF");
    if (dir == NULL || *dir == '\0')
        TEST_SKIP("LLAMAD_TINY_HF not set (tests/ref/make-hf-model.py DIR)");
    hparams_t hp;
    char err[ERR_MSG_MAX] = "", name[128];
    ASSERT_MSG(hf_config_load(&hp, dir, err, sizeof err) == 0, "%s", err);
    st_model_t *m = NULL;
    ASSERT_MSG(st_create(&m, dir, err, sizeof err) == 0, "%s", err);
    uint64_t q = (uint64_t)hp.n_head * hp.head_dim, kv = (uint64_t)hp.n_head_kv * hp.head_dim;
    struct { const char *fmt; uint64_t ne0, ne1; } want[] = {
        { "model.layers.%u.self_attn.q_proj.weight", hp.n_embd, q },
        { "model.layers.%u.self_attn.k_proj.weight", hp.n_embd, kv },
        { "model.layers.%u.self_attn.v_proj.weight", hp.n_embd, kv },
        { "model.layers.%u.self_attn.o_proj.weight", q, hp.n_embd },
        { "model.layers.%u.mlp.gate_proj.weight", hp.n_embd, hp.n_ff },
        { "model.layers.%u.mlp.up_proj.weight", hp.n_embd, hp.n_ff },
        { "model.layers.%u.mlp.down_proj.weight", hp.n_ff, hp.n_embd },
        { "model.layers.%u.input_layernorm.weight", hp.n_embd, 1 },
        { "model.layers.%u.post_attention_layernorm.weight", hp.n_embd, 1 },
    };
    uint64_t seen = 0;
    for (uint32_t l = 0; l < hp.n_layer; l++)
        for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
            snprintf(name, sizeof name, want[i].fmt, l);
            const st_tensor_t *t = st_find_tensor(m, name);
            ASSERT_MSG(t != NULL, "%s missing", name);
            ASSERT_EQ_U64(t->ne[0], want[i].ne0);
            ASSERT_EQ_U64(t->ne[1], want[i].ne1);
            seen++;
        }
    const st_tensor_t *emb = st_find_tensor(m, "model.embed_tokens.weight");
    ASSERT(emb != NULL && emb->ne[0] == hp.n_embd && emb->ne[1] == hp.n_vocab);
    ASSERT(st_find_tensor(m, "model.norm.weight") != NULL);
    seen += 2;
    ASSERT_EQ_INT(st_find_tensor(m, "lm_head.weight") != NULL, !hp.tied_embeddings);
    seen += !hp.tied_embeddings;
    ASSERT_EQ_U64(st_tensor_count(m), seen);
    st_destroy(m);
}

TEST_LIST(T(header_valid_mixed), T(header_scalar_empty_and_no_tensors),
          T(header_rejects_in_memory), T(header_rejects_bad_lengths),
          T(header_every_truncation_rejected), T(header_bit_flips_never_crash),
          T(model_single_file_and_directory), T(model_sharded_index),
          T(model_refuses_fifo_and_symlink), T(model_missing_paths),
          T(corpus_safetensors), T(corpus_config), T(config_smollm2_gqa),
          T(config_llama31_rope_scaling), T(config_defaults_and_variants),
          T(config_rejects_unchanged), T(config_load_from_directory),
          T(tiny_hf_model_from_numpy))
