/*
 * tokenizer_hf.c - a tokenizer from a Hugging Face directory.
 *
 * tokenizer.json: model (type "BPE": vocab, merges as "a b" or [a, b],
 * byte_fallback, ignore_merges, unk_token), added_tokens, and the
 * normalizer / pre_tokenizer / decoder / post_processor steps the LLaMA
 * families use:
 *   byte-level:  pre_tokenizer ByteLevel, or a Sequence of Split (Regex,
 *                Isolated), Digits and ByteLevel;
 *   SPM-style:   normalizer Sequence [Prepend "▁", Replace " " -> "▁"]
 *                (legacy LLaMA) or pre_tokenizer Metaspace.
 * Anything else is ERR_UNSUPPORTED with the step's name.
 * tokenizer_config.json (optional): add_bos_token, add_eos_token,
 * bos_token, eos_token (a string or {"content": ...}), chat_template.
 */
#include "tokenizer_impl.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/err.h"

#define HF_MAX_FILE ((size_t)256 << 20)   /* LLaMA-3's tokenizer.json is 9 MB */

static int read_json(const char *path, cJSON **out, int optional, char *err, size_t errlen)
{
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return optional ? 0 : err_set(err, errlen, ERR_IO, "%s: cannot open", path);
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode) || (uint64_t)st.st_size > HF_MAX_FILE) {
        fclose(f);
        return err_set(err, errlen, ERR_FORMAT, "%s: not a regular file under %zu bytes",
                       path, HF_MAX_FILE);
    }
    size_t n = (size_t)st.st_size;
    char *buf = malloc(n + 1);
    if (buf == NULL) {
        fclose(f);
        return ERR_NOMEM;
    }
    size_t got = fread(buf, 1, n, f);
    fclose(f);
    if (got != n) {
        free(buf);
        return err_set(err, errlen, ERR_IO, "%s: short read", path);
    }
    buf[n] = '\0';
    *out = cJSON_ParseWithLength(buf, n);
    free(buf);
    if (*out == NULL || !cJSON_IsObject(*out)) {
        cJSON_Delete(*out);
        *out = NULL;
        return err_set(err, errlen, ERR_FORMAT, "%s: not a JSON object", path);
    }
    return 0;
}

static const char *jstr(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static const char *jtype(const cJSON *o)
{
    const char *s = jstr(o, "type");
    return s ? s : "";
}

/* A bool key: 1/0, or `dflt` when absent or null. */
static int jbool(const cJSON *o, const char *key, int dflt)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsBool(v) ? cJSON_IsTrue(v) : dflt;
}

/* ================================================================
 * Vocabulary
 * ================================================================ */

typedef struct {
    const char *s;      /* borrowed from the JSON tree */
    int type;
} slot_t;

static int json_id(const cJSON *v, size_t *id)
{
    if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble >= GGUF_MAX_ARRAY ||
        v->valuedouble != (double)(size_t)v->valuedouble)
        return -1;
    *id = (size_t)v->valuedouble;
    return 0;
}

static int load_vocab(tokenizer_t **out, tok_kind_t kind, const cJSON *model,
                      const cJSON *added, const char *path, char *err, size_t errlen)
{
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
    if (!cJSON_IsObject(vocab))
        return err_set(err, errlen, ERR_FORMAT, "%s: model.vocab is not an object", path);
    int byte_fallback = jbool(model, "byte_fallback", 0);
    size_t n = 0, id = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, vocab) {
        if (json_id(it, &id) != 0)
            return err_set(err, errlen, ERR_FORMAT, "%s: model.vocab[\"%.40s\"]: bad id",
                           path, it->string);
        n = id + 1 > n ? id + 1 : n;
    }
    cJSON_ArrayForEach(it, added) {
        if (json_id(cJSON_GetObjectItemCaseSensitive(it, "id"), &id) != 0 ||
            jstr(it, "content") == NULL)
            return err_set(err, errlen, ERR_FORMAT, "%s: added_tokens: entry without id/content",
                           path);
        n = id + 1 > n ? id + 1 : n;
    }
    int rc = tok_impl_new(out, kind, n, path, err, errlen);
    if (rc != 0)
        return rc;
    slot_t *slot = calloc(n, sizeof *slot);
    if (slot == NULL)
        return ERR_NOMEM;
    cJSON_ArrayForEach(it, vocab) {
        json_id(it, &id);
        if (slot[id].s != NULL) {
            free(slot);
            return err_set(err, errlen, ERR_FORMAT, "%s: model.vocab: id %zu given twice",
                           path, id);
        }
        slot[id].s = it->string;
        slot[id].type = TOK_TYPE_NORMAL;
        size_t len = strlen(it->string);
        if (byte_fallback && len == 6 && strncmp(it->string, "<0x", 3) == 0)
            slot[id].type = TOK_TYPE_BYTE;
    }
    cJSON_ArrayForEach(it, added) {
        json_id(cJSON_GetObjectItemCaseSensitive(it, "id"), &id);
        const char *c = jstr(it, "content");
        if (slot[id].s != NULL && strcmp(slot[id].s, c) != 0) {
            rc = err_set(err, errlen, ERR_FORMAT,
                         "%s: added_tokens: id %zu is \"%.40s\" in model.vocab", path, id,
                         slot[id].s);
            free(slot);
            return rc;
        }
        slot[id].s = c;
        slot[id].type = jbool(it, "special", 0) ? TOK_TYPE_CONTROL : TOK_TYPE_USER_DEFINED;
    }
    for (id = 0; id < n && rc == 0; id++) {
        if (slot[id].s == NULL)
            rc = err_set(err, errlen, ERR_FORMAT, "%s: model.vocab: no token has id %zu",
                         path, id);
        else
            rc = tok_impl_set(*out, id, slot[id].s, strlen(slot[id].s), slot[id].type, 0.0f,
                              "model.vocab", err, errlen);
    }
    free(slot);
    if (rc == 0)
        rc = tok_impl_index(*out, "model.vocab", err, errlen);
    return rc;
}

static int load_merges(tokenizer_t *t, const cJSON *model, const char *path, char *err,
                       size_t errlen)
{
    const cJSON *merges = cJSON_GetObjectItemCaseSensitive(model, "merges");
    if (merges == NULL)
        return 0;
    if (!cJSON_IsArray(merges))
        return err_set(err, errlen, ERR_FORMAT, "%s: model.merges is not an array", path);
    if (tok_impl_reserve_merges(t, (size_t)cJSON_GetArraySize(merges)) != 0)
        return ERR_NOMEM;
    size_t i = 0;
    const cJSON *m;
    cJSON_ArrayForEach(m, merges) {
        const char *a = NULL, *b = NULL;
        size_t alen = 0, blen = 0;
        if (cJSON_IsString(m)) {
            a = m->valuestring;
            const char *sp = strchr(a, ' ');
            if (sp != NULL && strchr(sp + 1, ' ') == NULL) {
                alen = (size_t)(sp - a);
                b = sp + 1;
                blen = strlen(b);
            }
        } else if (cJSON_IsArray(m) && cJSON_GetArraySize(m) == 2 &&
                   cJSON_IsString(m->child) && cJSON_IsString(m->child->next)) {
            a = m->child->valuestring;
            b = m->child->next->valuestring;
            alen = strlen(a);
            blen = strlen(b);
        }
        if (b == NULL)
            return err_set(err, errlen, ERR_FORMAT, "%s: model.merges[%zu]: not \"a b\" or [a, b]",
                           path, i);
        int rc = tok_impl_add_merge(t, a, alen, b, blen, "model.merges", i, err, errlen);
        if (rc != 0)
            return rc;
        i++;
    }
    return 0;
}

/* ================================================================
 * Pipeline steps
 * ================================================================ */

static int has_bytelevel(const cJSON *step)
{
    if (step == NULL || !cJSON_IsObject(step))
        return 0;
    if (strcmp(jtype(step), "ByteLevel") == 0)
        return 1;
    const cJSON *seq = cJSON_GetObjectItemCaseSensitive(step, "pretokenizers");
    const cJSON *it;
    cJSON_ArrayForEach(it, seq)
        if (has_bytelevel(it))
            return 1;
    return 0;
}

/* One byte-level pre-tokenizer step (Sequences flattened). */
static int bpe_pre_step(tokenizer_t *t, const cJSON *step, const char *path, char *err,
                        size_t errlen)
{
    const char *type = jtype(step);
    if (strcmp(type, "Sequence") == 0) {
        const cJSON *it;
        cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(step, "pretokenizers")) {
            int rc = bpe_pre_step(t, it, path, err, errlen);
            if (rc != 0)
                return rc;
        }
        return 0;
    }
    if (strcmp(type, "ByteLevel") == 0) {
        if (jbool(step, "add_prefix_space", 0))
            return err_set(err, errlen, ERR_UNSUPPORTED,
                           "%s: pre_tokenizer ByteLevel add_prefix_space=true", path);
        if (!jbool(step, "use_regex", 1))
            return 0;
        return tok_impl_add_split(t, tok_impl_pattern("gpt2"), "pre_tokenizer", err, errlen);
    }
    if (strcmp(type, "Digits") == 0)
        return tok_impl_add_split(t, jbool(step, "individual_digits", 0) ? "\\p{N}" : "\\p{N}+",
                                  "pre_tokenizer", err, errlen);
    if (strcmp(type, "Split") == 0) {
        const cJSON *pat = cJSON_GetObjectItemCaseSensitive(step, "pattern");
        const char *re = jstr(pat, "Regex");
        const char *behavior = jstr(step, "behavior");
        if (re == NULL || behavior == NULL || strcmp(behavior, "Isolated") != 0 ||
            jbool(step, "invert", 0))
            return err_set(err, errlen, ERR_UNSUPPORTED,
                           "%s: pre_tokenizer Split: only a Regex, Isolated, not inverted", path);
        return tok_impl_add_split(t, re, "pre_tokenizer.Split", err, errlen);
    }
    return err_set(err, errlen, ERR_UNSUPPORTED, "%s: pre_tokenizer step \"%.32s\"", path, type);
}

/* The preset a split list equals, for tok_pre_name. */
static void name_bpe_pre(tokenizer_t *t, const char *const pats[], size_t n)
{
    const char *name = n == 0 ? "none" : "custom";
    const char *g = tok_impl_pattern("gpt2"), *l3 = tok_impl_pattern("llama3");
    const char *d = tok_impl_pattern("digits");
    if (n == 1 && strcmp(pats[0], g) == 0)
        name = "gpt2";
    else if (n == 1 && strcmp(pats[0], l3) == 0)
        name = "llama3";
    else if (n == 2 && strcmp(pats[0], d) == 0 && strcmp(pats[1], g) == 0)
        name = "smollm";
    snprintf(t->pre_name, sizeof t->pre_name, "%s", name);
}

static void collect_patterns(const cJSON *step, const char *pats[], size_t *n)
{
    const char *type = jtype(step);
    const cJSON *it;
    if (strcmp(type, "Sequence") == 0) {
        cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(step, "pretokenizers"))
            collect_patterns(it, pats, n);
        return;
    }
    const char *p = NULL;
    if (strcmp(type, "ByteLevel") == 0 && jbool(step, "use_regex", 1))
        p = tok_impl_pattern("gpt2");
    else if (strcmp(type, "Digits") == 0)
        p = jbool(step, "individual_digits", 0) ? tok_impl_pattern("digits") : "";
    else if (strcmp(type, "Split") == 0)
        p = jstr(cJSON_GetObjectItemCaseSensitive(step, "pattern"), "Regex");
    if (p != NULL && *n < TOK_MAX_SPLITS)
        pats[(*n)++] = p;
}

static int is_metaspace_char(const char *s)
{
    return s != NULL && strcmp(s, "\xE2\x96\x81") == 0;
}

/* SPM-style normalizer: Prepend "▁" and/or Replace " " -> "▁"; returns flags. */
static int spm_normalizer(const cJSON *n, int *prepend, int *replace, const char *path,
                          char *err, size_t errlen)
{
    if (n == NULL || cJSON_IsNull(n))
        return 0;
    const char *type = jtype(n);
    if (strcmp(type, "Sequence") == 0) {
        const cJSON *it;
        cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(n, "normalizers")) {
            int rc = spm_normalizer(it, prepend, replace, path, err, errlen);
            if (rc != 0)
                return rc;
        }
        return 0;
    }
    if (strcmp(type, "Prepend") == 0 && is_metaspace_char(jstr(n, "prepend"))) {
        *prepend = 1;
        return 0;
    }
    if (strcmp(type, "Replace") == 0 && is_metaspace_char(jstr(n, "content"))) {
        const char *from = jstr(cJSON_GetObjectItemCaseSensitive(n, "pattern"), "String");
        if (from != NULL && strcmp(from, " ") == 0) {
            *replace = 1;
            return 0;
        }
    }
    return err_set(err, errlen, ERR_UNSUPPORTED, "%s: normalizer step \"%.32s\"", path, type);
}

/* Metaspace's prepend scheme: "always", "first", "never" (or legacy add_prefix_space). */
static int metaspace_prefix(const cJSON *m)
{
    const char *scheme = jstr(m, "prepend_scheme");
    if (scheme == NULL)
        return jbool(m, "add_prefix_space", 1) ? TOK_PREFIX_EVERY : TOK_PREFIX_NONE;
    if (strcmp(scheme, "first") == 0)
        return TOK_PREFIX_FIRST;
    return strcmp(scheme, "never") == 0 ? TOK_PREFIX_NONE : TOK_PREFIX_EVERY;
}

/* Does the decoder remove the prefix space (Strip start >= 1, or Metaspace)? */
static int decoder_strips(const cJSON *d)
{
    if (d == NULL || !cJSON_IsObject(d))
        return 0;
    const char *type = jtype(d);
    if (strcmp(type, "Sequence") == 0) {
        const cJSON *it;
        cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(d, "decoders"))
            if (decoder_strips(it))
                return 1;
        return 0;
    }
    if (strcmp(type, "Strip") == 0) {
        const cJSON *start = cJSON_GetObjectItemCaseSensitive(d, "start");
        return cJSON_IsNumber(start) && start->valuedouble >= 1;
    }
    return strcmp(type, "Metaspace") == 0 && metaspace_prefix(d) != TOK_PREFIX_NONE;
}

static int setup_spm(tokenizer_t *t, const cJSON *root, const char *path, char *err,
                     size_t errlen)
{
    int prepend = 0, replace = 0;
    int rc = spm_normalizer(cJSON_GetObjectItemCaseSensitive(root, "normalizer"), &prepend,
                            &replace, path, err, errlen);
    if (rc != 0)
        return rc;
    const cJSON *pre = cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer");
    if (cJSON_IsObject(pre)) {
        if (strcmp(jtype(pre), "Metaspace") != 0 || !is_metaspace_char(jstr(pre, "replacement")))
            return err_set(err, errlen, ERR_UNSUPPORTED, "%s: pre_tokenizer \"%.32s\" with an "
                           "SPM-style model", path, jtype(pre));
        t->space_prefix = metaspace_prefix(pre);
        t->prefix_unless_space = 1;
        t->metaspace_split = jbool(pre, "split", 1);
    } else if (!replace) {
        return err_set(err, errlen, ERR_UNSUPPORTED, "%s: neither a byte-level nor a "
                       "SentencePiece-style (U+2581) BPE model", path);
    } else {
        t->space_prefix = prepend ? TOK_PREFIX_EVERY : TOK_PREFIX_NONE;
    }
    t->strip_space = decoder_strips(cJSON_GetObjectItemCaseSensitive(root, "decoder"));
    t->add_bos = 1;
    t->bos = tok_find(t, "<s>");
    t->eos = tok_find(t, "</s>");
    return 0;
}

static int setup_bpe(tokenizer_t *t, const cJSON *root, const char *path, char *err,
                     size_t errlen)
{
    const cJSON *norm = cJSON_GetObjectItemCaseSensitive(root, "normalizer");
    if (norm != NULL && !cJSON_IsNull(norm))
        return err_set(err, errlen, ERR_UNSUPPORTED, "%s: normalizer \"%.32s\" with a "
                       "byte-level model", path, jtype(norm));
    const cJSON *pre = cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer");
    int rc = pre == NULL || cJSON_IsNull(pre) ? 0 : bpe_pre_step(t, pre, path, err, errlen);
    if (rc != 0)
        return rc;
    const char *pats[TOK_MAX_SPLITS];
    size_t n = 0;
    collect_patterns(pre, pats, &n);
    name_bpe_pre(t, pats, n);
    /* A post-processor template that starts with a special token adds BOS. */
    const cJSON *pp = cJSON_GetObjectItemCaseSensitive(root, "post_processor");
    const cJSON *single = cJSON_GetObjectItemCaseSensitive(pp, "single");
    if (strcmp(jtype(pp), "TemplateProcessing") == 0 && cJSON_IsArray(single) && single->child) {
        const cJSON *sp = cJSON_GetObjectItemCaseSensitive(single->child, "SpecialToken");
        const char *name = jstr(sp, "id");
        if (name != NULL && tok_find(t, name) >= 0) {
            t->bos = tok_find(t, name);
            t->add_bos = 1;
        }
    }
    return 0;
}

/* ================================================================
 * tokenizer_config.json
 * ================================================================ */

static const char *token_name(const cJSON *v)
{
    if (cJSON_IsString(v))
        return v->valuestring;
    return jstr(v, "content");
}

static int apply_config(tokenizer_t *t, const cJSON *cfg, const char *path, char *err,
                        size_t errlen)
{
    t->add_bos = jbool(cfg, "add_bos_token", t->add_bos);
    t->add_eos = jbool(cfg, "add_eos_token", t->add_eos);
    static const char *const keys[] = { "bos_token", "eos_token" };
    int32_t *dst[] = { &t->bos, &t->eos };
    for (int k = 0; k < 2; k++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(cfg, keys[k]);
        if (v == NULL || cJSON_IsNull(v))
            continue;
        const char *name = token_name(v);
        int32_t id = name ? tok_find(t, name) : -1;
        if (id < 0)
            return err_set(err, errlen, ERR_FORMAT, "%s: %s \"%.40s\" is not in the vocabulary",
                           path, keys[k], name ? name : "?");
        *dst[k] = id;
    }
    const cJSON *ct = cJSON_GetObjectItemCaseSensitive(cfg, "chat_template");
    const char *text = cJSON_IsString(ct) ? ct->valuestring : NULL;
    const cJSON *it;
    if (cJSON_IsArray(ct)) {
        cJSON_ArrayForEach(it, ct) {
            const char *name = jstr(it, "name");
            if (name != NULL && strcmp(name, "default") == 0)
                text = jstr(it, "template");
        }
    }
    if (text != NULL && (t->chat_template = strdup(text)) == NULL)
        return ERR_NOMEM;
    return 0;
}

/* ================================================================
 * Entry point
 * ================================================================ */

int tok_create_from_hf(tokenizer_t **out, const char *dir, char *err, size_t errlen)
{
    *out = NULL;
    char path[4096], cpath[4096];
    if ((size_t)snprintf(path, sizeof path, "%s/tokenizer.json", dir) >= sizeof path ||
        (size_t)snprintf(cpath, sizeof cpath, "%s/tokenizer_config.json", dir) >= sizeof cpath)
        return err_set(err, errlen, ERR_INVALID, "%s: path too long", dir);
    cJSON *root = NULL, *cfg = NULL;
    tokenizer_t *t = NULL;
    int rc = read_json(path, &root, 0, err, errlen);
    if (rc == 0)
        rc = read_json(cpath, &cfg, 1, err, errlen);
    if (rc != 0)
        goto fail;
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    const char *mtype = jstr(model, "type");
    if (mtype == NULL && cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(model, "merges")))
        mtype = "BPE";
    if (mtype == NULL || strcmp(mtype, "BPE") != 0) {
        rc = err_set(err, errlen, ERR_UNSUPPORTED, "%s: model.type \"%.32s\" (only BPE)", path,
                     mtype ? mtype : "?");
        goto fail;
    }
    const char *cont = jstr(model, "continuing_subword_prefix");
    const char *suff = jstr(model, "end_of_word_suffix");
    if ((cont && *cont) || (suff && *suff)) {
        rc = err_set(err, errlen, ERR_UNSUPPORTED, "%s: model subword prefix/suffix", path);
        goto fail;
    }
    const cJSON *added = cJSON_GetObjectItemCaseSensitive(root, "added_tokens");
    tok_kind_t kind = has_bytelevel(cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer")) ||
                      has_bytelevel(cJSON_GetObjectItemCaseSensitive(root, "decoder"))
                          ? TOK_KIND_BPE : TOK_KIND_SPM;
    rc = load_vocab(&t, kind, model, added, path, err, errlen);
    if (rc == 0)
        rc = load_merges(t, model, path, err, errlen);
    if (rc != 0)
        goto fail;
    t->ignore_merges = jbool(model, "ignore_merges", 0);
    t->byte_fallback = jbool(model, "byte_fallback", 0);
    const char *unk = jstr(model, "unk_token");
    if (unk != NULL && (t->unk = tok_find(t, unk)) < 0) {
        rc = err_set(err, errlen, ERR_FORMAT, "%s: model.unk_token \"%.40s\" not in the vocabulary",
                     path, unk);
        goto fail;
    }
    if (kind == TOK_KIND_BPE)
        t->bpe_unk = t->unk;
    rc = kind == TOK_KIND_SPM ? setup_spm(t, root, path, err, errlen)
                              : setup_bpe(t, root, path, err, errlen);
    if (rc == 0 && cfg != NULL)
        rc = apply_config(t, cfg, cpath, err, errlen);
    if (rc == 0)
        rc = tok_impl_finish(t, err, errlen);
    if (rc != 0)
        goto fail;
    cJSON_Delete(root);
    cJSON_Delete(cfg);
    *out = t;
    return 0;
fail:
    if (rc == ERR_NOMEM)
        err_set(err, errlen, rc, "%s: out of memory loading the tokenizer", path);
    tok_destroy(t);
    cJSON_Delete(root);
    cJSON_Delete(cfg);
    return rc;
}
