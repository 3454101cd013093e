/*
 * The model loader: the hand-made bad files of tests/corpus/ (every GGUF
 * case, the cases only a model loader can see, the bad config.json
 * directories) are each refused with a message naming the file and the
 * field, and a valid model loads right after in the same process.  The
 * default model's description matches its file.
 */
#include "test.h"

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/err.h"
#include "engine/model/model.h"

static const char *corpus_dir(void)
{
    static char buf[4096];
    const char *env = getenv("LLAMAD_BAD_MODELS");
    if (env != NULL && *env != '\0')
        return env;
    snprintf(buf, sizeof buf, "%s/tests/corpus/bad-models", test_srcdir());
    return buf;
}

/* Load every entry of a manifest (name<TAB>expected[<TAB>kind]) and expect refusal. */
static int check_manifest(const char *manifest, int want_kind_model_only, int *n_checked)
{
    char path[4096], line[4096], err[ERR_MSG_MAX];
    snprintf(path, sizeof path, "%s/%s", corpus_dir(), manifest);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n")] = '\0';
        char *name = strtok(line, "\t"), *want = strtok(NULL, "\t"), *kind = strtok(NULL, "\t");
        if (name == NULL || want == NULL)
            continue;
        (void)want_kind_model_only;
        char file[4096];
        snprintf(file, sizeof file, "%s/%s", corpus_dir(), name);
        model_t *m = NULL;
        err[0] = '\0';
        int rc = model_create(&m, file, "auto", err, sizeof err);
        ASSERT_MSG(rc != 0 && m == NULL, "%s: was accepted", name);
        ASSERT_MSG(strstr(err, name) != NULL, "%s: the message does not name the file: %s", name, err);
        /* The model-level cases must be caught with the field they break. */
        if (kind == NULL || strcmp(kind, "model") == 0)
            ASSERT_MSG(strstr(err, want) != NULL, "%s: expected \"%s\" in: %s", name, want, err);
        (*n_checked)++;
    }
    fclose(f);
    return 0;
}

TEST(bad_corpus_is_refused_then_a_good_model_loads)
{
    int n = 0;
    if (check_manifest("manifest.tsv", 0, &n) != 0)
        TEST_SKIP("no corpus at %s (tests/corpus/make-bad-ggufs.py)", corpus_dir());
    check_manifest("manifest-hf.tsv", 0, &n);
    printf("  %d bad models refused\n", n);
    ASSERT(n >= 153); /* 133 GGUF and 20 config.json cases when this was written */

    const char *path = test_model_path();
    if (path != NULL) {
        char err[ERR_MSG_MAX];
        model_t *m;
        ASSERT_MSG(model_create(&m, path, "auto", err, sizeof err) == 0, "%s", err);
        model_destroy(m);
    }
}

/* The neutral values of the refused keys, and a repeated control token, still load. */
TEST(neutral_keys_load)
{
    char path[4200], err[ERR_MSG_MAX];
    snprintf(path, sizeof path, "%s/ok-neutral-keys.gguf", corpus_dir());
    if (access(path, R_OK) != 0)
        TEST_SKIP("no %s (tests/corpus/make-bad-ggufs.py)", path);
    model_t *m = NULL;
    ASSERT_MSG(model_create(&m, path, "auto", err, sizeof err) == 0, "%s", err);
    ASSERT_EQ_INT(m->hp.head_dim, 16);
    model_destroy(m);
}

TEST(default_model_description)
{
    char err[ERR_MSG_MAX];
    const char *path = test_model_path();
    if (path == NULL)
        TEST_SKIP("default model not fetched");
    model_t *m;
    ASSERT_MSG(model_create(&m, path, "auto", err, sizeof err) == 0, "%s", err);
    const hparams_t *hp = &m->hp;
    /* SmolLM2-135M: llama.* keys of the file (checked against the gguf package by test_gguf) */
    ASSERT_EQ_INT(hp->n_layer, 30);
    ASSERT_EQ_INT(hp->n_embd, 576);
    ASSERT_EQ_INT(hp->n_head, 9);
    ASSERT_EQ_INT(hp->n_head_kv, 3);
    ASSERT_EQ_INT(hp->head_dim, 64);
    ASSERT_EQ_INT(hp->n_ff, 1536);
    ASSERT_EQ_INT(hp->n_vocab, 49152);
    ASSERT_EQ_INT(hp->n_ctx_train, 8192);
    ASSERT_NEAR(hp->rope_theta, 100000.0, 0.0);
    ASSERT_EQ_INT(hp->rope_layout, ROPE_LAYOUT_INTERLEAVED);
    ASSERT_EQ_INT(hp->tied_embeddings, 1);
    ASSERT_EQ_INT(hp->bos_id, 1);
    ASSERT_EQ_INT(hp->eos_id, 2);
    ASSERT(m->output.data == m->tok_embd.data);
    ASSERT_EQ_INT(m->tok_embd.type, QT_Q8_0);
    ASSERT_EQ_INT(m->layers[0].wq.type, QT_Q4_1);
    /* weights are mapped, not copied: the pointers lie inside the file's mapping */
    struct stat st;
    ASSERT_EQ_INT(stat(path, &st), 0);
    ASSERT((uint64_t)m->weight_bytes <= (uint64_t)st.st_size);
    model_destroy(m);
}

TEST_LIST(T(bad_corpus_is_refused_then_a_good_model_loads), T(neutral_keys_load),
          T(default_model_description))
