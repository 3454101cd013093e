/*
 * test_gguf_corpus.c - the GGUF reader against the corpus of hand-made bad
 * files (tests/corpus/make-bad-ggufs.py writes it and its manifest.tsv).
 *
 * Directory: $LLAMAD_BAD_MODELS, else $srcdir/tests/corpus/bad-models;
 * the tests skip when it has no manifest.tsv.  Each manifest line is
 *     file <TAB> expected substring <TAB> gguf|model
 * "gguf" files must be rejected with a message that names the file and
 * contains the substring; "model" files are well-formed GGUF (the model
 * loader rejects them) and must parse.  ok-tiny-llama.gguf must parse, and
 * ok-writer-mini.gguf (made by the gguf package's writer) must read back
 * the values it was given.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "engine/model/gguf.h"
#include "base/quant.h"
#include "test.h"

static const char *corpus_dir(void)
{
    static char buf[4096];
    const char *env = getenv("LLAMAD_BAD_MODELS");
    if (env != NULL && *env != '\0')
        return env;
    snprintf(buf, sizeof buf, "%s/tests/corpus/bad-models", test_srcdir());
    return buf;
}

static FILE *open_manifest(void)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/manifest.tsv", corpus_dir());
    FILE *f = fopen(path, "r");
    if (f == NULL)
        TEST_SKIP("no %s (tests/corpus/make-bad-ggufs.py DIR writes it)", path);
    return f;
}

/* Splits "a\tb\tc\n" in place; returns the number of fields (up to 3). */
static int split3(char *line, char **f)
{
    int n = 0;
    line[strcspn(line, "\r\n")] = '\0';
    f[n++] = line;
    for (char *p = line; *p != '\0' && n < 3; p++) {
        if (*p == '\t') {
            *p = '\0';
            f[n++] = p + 1;
        }
    }
    return n;
}

static int n_fail;

static void fail(const char *fmt, const char *a, const char *b, const char *c)
{
    fprintf(stderr, "  ");
    fprintf(stderr, fmt, a, b, c);
    fprintf(stderr, "\n");
    n_fail++;
}

TEST(bad_files_rejected)
{
    FILE *mf = open_manifest();
    char line[1024], path[4400], err[ERR_MSG_MAX];
    int n_gguf = 0;
    while (fgets(line, sizeof line, mf) != NULL) {
        char *f[3];
        if (line[0] == '#' || line[0] == '\n')
            continue;
        ASSERT_MSG(split3(line, f) == 3, "bad manifest line: %s", line);
        if (strcmp(f[2], "gguf") != 0)
            continue;
        n_gguf++;
        snprintf(path, sizeof path, "%s/%s", corpus_dir(), f[0]);
        gguf_t *g = NULL;
        err[0] = '\0';
        int rc = gguf_create(&g, path, err, sizeof err);
        if (rc == 0) {
            fail("%s: accepted (want an error containing \"%s\")%s", f[0], f[1], "");
            gguf_destroy(g);
            continue;
        }
        if (rc != ERR_FORMAT && rc != ERR_UNSUPPORTED)
            fail("%s: unexpected code (%s)%s", f[0], err, "");
        if (g != NULL)
            fail("%s: *out not NULL on error%s%s", f[0], "", "");
        if (strstr(err, f[0]) == NULL || strstr(err, f[1]) == NULL)
            fail("%s: message \"%s\" lacks the file name or \"%s\"", f[0], err, f[1]);
    }
    fclose(mf);
    ASSERT_MSG(n_gguf >= 40, "only %d gguf cases in the manifest", n_gguf);
    ASSERT_EQ_INT(n_fail, 0);
}

TEST(model_level_files_parse)
{
    FILE *mf = open_manifest();
    char line[1024], path[4400], err[ERR_MSG_MAX];
    while (fgets(line, sizeof line, mf) != NULL) {
        char *f[3];
        if (split3(line, f) != 3 || strcmp(f[2], "model") != 0)
            continue;
        snprintf(path, sizeof path, "%s/%s", corpus_dir(), f[0]);
        gguf_t *g = NULL;
        if (gguf_create(&g, path, err, sizeof err) != 0)
            fail("%s: the reader should accept it (%s)%s", f[0], err, "");
        gguf_destroy(g);
    }
    fclose(mf);
    snprintf(path, sizeof path, "%s/ok-tiny-llama.gguf", corpus_dir());
    gguf_t *g = NULL;
    int rc = gguf_create(&g, path, err, sizeof err);
    ASSERT_MSG(rc == 0, "%s", err);
    ASSERT(gguf_find_tensor(g, "token_embd.weight") != NULL);
    gguf_destroy(g);
    ASSERT_EQ_INT(n_fail, 0);
}

/* ok-writer-mini.gguf comes from the gguf package's GGUFWriter (see
 * write_reference_file in make-bad-ggufs.py, which sets these values). */
TEST(reference_writer_file)
{
    char path[4400], err[ERR_MSG_MAX];
    snprintf(path, sizeof path, "%s/ok-writer-mini.gguf", corpus_dir());
    if (access(path, R_OK) != 0)
        TEST_SKIP("no %s (needs the gguf package when the corpus is made)", path);
    gguf_t *g = NULL;
    int rc = gguf_create(&g, path, err, sizeof err);
    ASSERT_MSG(rc == 0, "%s", err);
    ASSERT_EQ_INT(gguf_version(g), 3);
    ASSERT_EQ_U64(gguf_kv_count(g), 16);
    uint32_t u32;
    uint64_t u64;
    int32_t i32;
    float f;
    int b;
    gguf_str_t s;
    ASSERT_EQ_INT(gguf_get_u32(g, "t.u8", &u32, err, sizeof err), 0);   ASSERT_EQ_INT(u32, 200);
    ASSERT_EQ_INT(gguf_get_i32(g, "t.i8", &i32, err, sizeof err), 0);   ASSERT_EQ_INT(i32, -7);
    ASSERT_EQ_INT(gguf_get_u32(g, "t.u16", &u32, err, sizeof err), 0);  ASSERT_EQ_INT(u32, 60000);
    ASSERT_EQ_INT(gguf_get_i32(g, "t.i16", &i32, err, sizeof err), 0);  ASSERT_EQ_INT(i32, -30000);
    ASSERT_EQ_INT(gguf_get_u32(g, "t.u32", &u32, err, sizeof err), 0);  ASSERT_EQ_U64(u32, 4000000000u);
    ASSERT_EQ_INT(gguf_get_i32(g, "t.i32", &i32, err, sizeof err), 0);  ASSERT_EQ_INT(i32, -2000000000);
    ASSERT_EQ_INT(gguf_get_f32(g, "t.f32", &f, err, sizeof err), 0);    ASSERT(f == 0.5f);
    ASSERT_EQ_INT(gguf_get_bool(g, "t.bool", &b, err, sizeof err), 0);  ASSERT_EQ_INT(b, 1);
    ASSERT_EQ_INT(gguf_get_str(g, "t.str", &s, err, sizeof err), 0);
    ASSERT(s.len == 2 && memcmp(s.ptr, "hi", 2) == 0);
    ASSERT_EQ_INT(gguf_get_u64(g, "t.u64", &u64, err, sizeof err), 0); ASSERT_EQ_U64(u64, (1ull << 63) + 5);
    ASSERT_EQ_INT(gguf_get_i32(g, "t.i64", &i32, err, sizeof err), 0);  ASSERT_EQ_INT(i32, -7);
    ASSERT_EQ_INT(gguf_get_f32(g, "t.f64", &f, err, sizeof err), 0);    ASSERT(f == 0.25f);
    ASSERT_EQ_INT(gguf_arr_str(g, "t.astr", 1, &s), 0);
    ASSERT(s.len == 2 && memcmp(s.ptr, "bc", 2) == 0);
    gguf_vtype_t et;
    uint64_t n;
    ASSERT_EQ_INT(gguf_get_arr(g, "t.aint", &et, &n, err, sizeof err), 0);
    ASSERT_EQ_U64(n, 3);
    ASSERT_EQ_INT(gguf_get_arr(g, "t.af32", &et, &n, err, sizeof err), 0);
    ASSERT_EQ_INT(et, GGUF_T_FLOAT32);

    const gguf_tensor_t *t = gguf_find_tensor(g, "a");
    ASSERT(t != NULL && t->type == QT_F32 && t->ne[0] == 32 && t->ne[1] == 2);
    float y[64];
    ASSERT_EQ_INT(quant_dequant(t->type, t->data, y, 64), 0);
    for (int i = 0; i < 64; i++)
        ASSERT(y[i] == (float)i);
    t = gguf_find_tensor(g, "b");
    ASSERT(t != NULL && t->type == QT_F16 && t->nbytes == 64);
    ASSERT_EQ_INT(quant_dequant(t->type, t->data, y, 32), 0);
    ASSERT(y[0] == -2.0f && y[31] == -2.0f);
    t = gguf_find_tensor(g, "c");
    ASSERT(t != NULL && t->type == QT_Q4_0 && t->ne[0] == 64 && t->nbytes == 36);
    ASSERT_EQ_INT(quant_dequant(t->type, t->data, y, 64), 0);
    ASSERT_NEAR(y[0], -1.0, 0.07);
    ASSERT_NEAR(y[63], 1.0, 0.07);
    gguf_destroy(g);
}

TEST_LIST(T(bad_files_rejected), T(model_level_files_parse), T(reference_writer_file))
