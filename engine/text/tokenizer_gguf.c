/*
 * tokenizer_gguf.c - a tokenizer from a GGUF file's tokenizer.ggml.* keys.
 *
 * Keys read: tokenizer.ggml.model ("llama" or "gpt2"), .tokens (STRING
 * array, n_vocab), .scores (FLOAT32, n_vocab, optional), .token_type
 * (INT32, n_vocab, optional), .merges (STRING "a b", gpt2), .pre, the
 * special ids (bos, eos, unknown, eot, eom, padding, seperator, cls,
 * mask: all checked < n_vocab), .add_bos_token, .add_eos_token,
 * .add_space_prefix, and tokenizer.chat_template (kept as text).
 */
#include "tokenizer_impl.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"

#define KEY_MODEL  "tokenizer.ggml.model"
#define KEY_TOKENS "tokenizer.ggml.tokens"
#define KEY_SCORES "tokenizer.ggml.scores"
#define KEY_TYPES  "tokenizer.ggml.token_type"
#define KEY_MERGES "tokenizer.ggml.merges"
#define KEY_PRE    "tokenizer.ggml.pre"

static int str_is(gguf_str_t s, const char *lit)
{
    return s.len == strlen(lit) && memcmp(s.ptr, lit, s.len) == 0;
}

/* A numeric array of n_vocab elements of one type, or absent (*data NULL). */
static int numeric_array(const gguf_t *g, const char *key, gguf_vtype_t want, size_t n_vocab,
                         const unsigned char **data, char *err, size_t errlen)
{
    gguf_vtype_t et;
    uint64_t n;
    *data = NULL;
    int rc = gguf_get_arr(g, key, &et, &n, err, errlen);
    if (rc == ERR_NOTFOUND)
        return 0;
    if (rc != 0)
        return rc;
    if (et != want || n != n_vocab)
        return err_set(err, errlen, ERR_FORMAT,
                       "%s: %s: %llu elements of type %d, want %zu of type %d",
                       gguf_path(g), key, (unsigned long long)n, (int)et, n_vocab, (int)want);
    *data = gguf_arr_data(g, key);
    return *data != NULL || n_vocab == 0 ? 0
           : err_set(err, errlen, ERR_FORMAT, "%s: %s: no data", gguf_path(g), key);
}

/* A special id: absent -> *id stays; -1 stored as a signed value means none. */
static int read_id(const gguf_t *g, const tokenizer_t *t, const char *key, int32_t *id,
                   char *err, size_t errlen)
{
    uint64_t v;
    int rc = gguf_get_u64(g, key, &v, err, errlen);
    if (rc == ERR_NOTFOUND)
        return 0;
    if (rc == ERR_FORMAT) {
        int32_t s;
        if (gguf_get_i32(g, key, &s, NULL, 0) == 0 && s == -1) {
            *id = -1;
            return 0;
        }
        return rc;
    }
    if (rc != 0)
        return rc;
    if (v >= t->n_vocab)
        return tok_impl_check_id(t, v > INT32_MAX ? INT32_MAX : (int64_t)v, key, err, errlen);
    *id = (int32_t)v;
    return 0;
}

static int read_bool(const gguf_t *g, const char *key, int *val, char *err, size_t errlen)
{
    int rc = gguf_get_bool(g, key, val, err, errlen);
    return rc == ERR_NOTFOUND ? 0 : rc;
}

/* Token types that encoding ordinary text can produce. */
static int type_in_text(uint8_t type)
{
    return type == TOK_TYPE_NORMAL || type == TOK_TYPE_USER_DEFINED || type == TOK_TYPE_BYTE;
}

/*
 * Two ids with one string make encoding ambiguous (the index keeps the
 * first): refused when either id is a token ordinary text encodes to.
 * Repeats among control, unknown and unused tokens (padding slots) are
 * kept, the first id answering for the string, as in the reference
 * tokenizers.
 */
static int check_duplicates(const tokenizer_t *t, const gguf_t *g, char *err, size_t errlen)
{
    for (size_t id = 0; id < t->n_vocab; id++) {
        const tok_entry_t *e = &t->tok[id];
        int32_t first = tok_impl_lookup(t, t->text + e->off, e->len);
        if (first < 0 || (size_t)first == id)
            continue;
        if (!type_in_text(e->type) && !type_in_text(t->tok[first].type))
            continue;
        char shown[64];
        size_t n = 0;
        for (uint32_t i = 0; i < e->len && n + 1 < sizeof shown; i++) {
            unsigned char c = (unsigned char)t->text[e->off + i];
            shown[n++] = c < 0x20 || c == 0x7f ? '?' : (char)c;
        }
        shown[n] = '\0';
        return err_set(err, errlen, ERR_UNSUPPORTED,
                       "%s: %s[%d] = %s[%zu] = \"%s\": llamad does not implement a vocabulary "
                       "with two ids for one normal token (encoding would be ambiguous)",
                       gguf_path(g), KEY_TOKENS, (int)first, KEY_TOKENS, id, shown);
    }
    return 0;
}

static int load_tokens(tokenizer_t *t, const gguf_t *g, char *err, size_t errlen)
{
    const unsigned char *scores, *types;
    int rc = numeric_array(g, KEY_SCORES, GGUF_T_FLOAT32, t->n_vocab, &scores, err, errlen);
    if (rc == 0)
        rc = numeric_array(g, KEY_TYPES, GGUF_T_INT32, t->n_vocab, &types, err, errlen);
    for (size_t i = 0; rc == 0 && i < t->n_vocab; i++) {
        gguf_str_t s;
        if (gguf_arr_str(g, KEY_TOKENS, i, &s) != 0)
            return err_set(err, errlen, ERR_FORMAT, "%s: %s[%zu]: unreadable", gguf_path(g),
                           KEY_TOKENS, i);
        float score = 0.0f;
        int32_t type = TOK_TYPE_NORMAL;
        if (scores != NULL)
            memcpy(&score, scores + 4 * i, 4);
        if (types != NULL)
            memcpy(&type, types + 4 * i, 4);
        if (!isfinite(score))
            return err_set(err, errlen, ERR_FORMAT, "%s: %s[%zu]: score is not finite",
                           gguf_path(g), KEY_SCORES, i);
        if (s.len > TOK_MAX_TOKEN_BYTES)
            return err_set(err, errlen, ERR_FORMAT, "%s: %s[%zu]: token of %llu bytes (limit %d)",
                           gguf_path(g), KEY_TOKENS, i, (unsigned long long)s.len,
                           TOK_MAX_TOKEN_BYTES);
        rc = tok_impl_set(t, i, s.ptr, (size_t)s.len, type, score, KEY_TOKENS, err, errlen);
    }
    if (rc == 0)
        rc = tok_impl_index(t, KEY_TOKENS, err, errlen);
    return rc == 0 ? check_duplicates(t, g, err, errlen) : rc;
}

static int load_merges(tokenizer_t *t, const gguf_t *g, char *err, size_t errlen)
{
    gguf_vtype_t et;
    uint64_t n;
    int rc = gguf_get_arr(g, KEY_MERGES, &et, &n, err, errlen);
    if (rc == ERR_NOTFOUND)
        return err_set(err, errlen, ERR_FORMAT, "%s: %s missing (needed by gpt2 vocabularies)",
                       gguf_path(g), KEY_MERGES);
    if (rc != 0)
        return rc;
    if (et != GGUF_T_STRING)
        return err_set(err, errlen, ERR_FORMAT, "%s: %s: element type %d, want STRING",
                       gguf_path(g), KEY_MERGES, (int)et);
    if (tok_impl_reserve_merges(t, (size_t)n) != 0)
        return err_set(err, errlen, ERR_NOMEM, "%s: out of memory for merges", gguf_path(g));
    for (uint64_t i = 0; i < n; i++) {
        gguf_str_t s;
        if (gguf_arr_str(g, KEY_MERGES, i, &s) != 0)
            return err_set(err, errlen, ERR_FORMAT, "%s: %s[%llu]: unreadable", gguf_path(g),
                           KEY_MERGES, (unsigned long long)i);
        const char *sp = memchr(s.ptr, ' ', (size_t)s.len);
        size_t a = sp ? (size_t)(sp - s.ptr) : 0;
        if (sp == NULL || memchr(sp + 1, ' ', (size_t)s.len - a - 1) != NULL)
            return err_set(err, errlen, ERR_FORMAT, "%s: %s[%llu]: not two tokens and one space",
                           gguf_path(g), KEY_MERGES, (unsigned long long)i);
        rc = tok_impl_add_merge(t, s.ptr, a, sp + 1, (size_t)s.len - a - 1, KEY_MERGES,
                                (size_t)i, err, errlen);
        if (rc != 0)
            return rc;
    }
    return 0;
}

static int set_pre(tokenizer_t *t, const gguf_t *g, char *err, size_t errlen)
{
    gguf_str_t pre;
    int rc = gguf_get_str(g, KEY_PRE, &pre, err, errlen);
    if (rc != 0 && rc != ERR_NOTFOUND)
        return rc;
    const char *name = "gpt2";
    char msg[256];
    msg[0] = '\0';
    if (rc == ERR_NOTFOUND)
        snprintf(msg, sizeof msg, "%s: %s missing: using the GPT-2 pre-tokenizer",
                 gguf_path(g), KEY_PRE);
    else if (str_is(pre, "default") || str_is(pre, "gpt2"))
        name = "gpt2";
    else if (str_is(pre, "llama-bpe") || str_is(pre, "llama3"))
        name = "llama3";
    else if (str_is(pre, "smollm"))
        name = "smollm";
    else
        snprintf(msg, sizeof msg,
                 "%s: unknown %s \"%.*s\": using the GPT-2 pre-tokenizer; "
                 "tokens may differ from the model's reference tokenizer",
                 gguf_path(g), KEY_PRE, (int)(pre.len > 64 ? 64 : pre.len), pre.ptr);
    if (msg[0] != '\0' && tok_impl_set_warning(t, msg) != 0)
        return ERR_NOMEM;
    return tok_impl_set_pre(t, name, err, errlen);
}

static int read_specials(tokenizer_t *t, const gguf_t *g, char *err, size_t errlen)
{
    static const char *const others[] = {
        "tokenizer.ggml.padding_token_id", "tokenizer.ggml.seperator_token_id",
        "tokenizer.ggml.cls_token_id", "tokenizer.ggml.mask_token_id",
    };
    int rc = read_id(g, t, "tokenizer.ggml.bos_token_id", &t->bos, err, errlen);
    if (rc == 0)
        rc = read_id(g, t, "tokenizer.ggml.eos_token_id", &t->eos, err, errlen);
    if (rc == 0)
        rc = read_id(g, t, "tokenizer.ggml.unknown_token_id", &t->unk, err, errlen);
    if (rc == 0)
        rc = read_id(g, t, "tokenizer.ggml.eot_token_id", &t->eot, err, errlen);
    if (rc == 0)
        rc = read_id(g, t, "tokenizer.ggml.eom_token_id", &t->eom, err, errlen);
    for (size_t i = 0; rc == 0 && i < sizeof others / sizeof others[0]; i++) {
        int32_t unused = -1;
        rc = read_id(g, t, others[i], &unused, err, errlen);
    }
    if (rc == 0)
        rc = read_bool(g, "tokenizer.ggml.add_bos_token", &t->add_bos, err, errlen);
    if (rc == 0)
        rc = read_bool(g, "tokenizer.ggml.add_eos_token", &t->add_eos, err, errlen);
    return rc;
}

int tok_create_from_gguf(tokenizer_t **out, const gguf_t *g, char *err, size_t errlen)
{
    *out = NULL;
    gguf_str_t model;
    int rc = gguf_get_str(g, KEY_MODEL, &model, err, errlen);
    if (rc == ERR_NOTFOUND)
        return err_set(err, errlen, ERR_FORMAT, "%s: %s missing", gguf_path(g), KEY_MODEL);
    if (rc != 0)
        return rc;
    tok_kind_t kind;
    if (str_is(model, "llama"))
        kind = TOK_KIND_SPM;
    else if (str_is(model, "gpt2"))
        kind = TOK_KIND_BPE;
    else
        return err_set(err, errlen, ERR_UNSUPPORTED, "%s: %s \"%.*s\" not supported "
                       "(llama, gpt2)", gguf_path(g), KEY_MODEL,
                       (int)(model.len > 32 ? 32 : model.len), model.ptr);
    gguf_vtype_t et;
    uint64_t n;
    rc = gguf_get_arr(g, KEY_TOKENS, &et, &n, err, errlen);
    if (rc == ERR_NOTFOUND)
        return err_set(err, errlen, ERR_FORMAT, "%s: %s missing", gguf_path(g), KEY_TOKENS);
    if (rc != 0)
        return rc;
    if (et != GGUF_T_STRING)
        return err_set(err, errlen, ERR_FORMAT, "%s: %s: element type %d, want STRING",
                       gguf_path(g), KEY_TOKENS, (int)et);
    tokenizer_t *t = NULL;
    rc = tok_impl_new(&t, kind, n > SIZE_MAX ? SIZE_MAX : (size_t)n, gguf_path(g), err, errlen);
    if (rc != 0)
        return rc;
    if (kind == TOK_KIND_SPM) {
        /* sentencepiece's LLaMA defaults, used where the file is silent */
        t->bos = 1;
        t->eos = 2;
        t->unk = 0;
        t->add_bos = 1;
        t->merge_by_score = 1;
        t->byte_fallback = 1;
        if (t->n_vocab < 3)
            t->bos = t->eos = t->unk = -1;
    }
    rc = load_tokens(t, g, err, errlen);
    if (rc == 0)
        rc = read_specials(t, g, err, errlen);
    if (rc == 0 && kind == TOK_KIND_BPE) {
        rc = load_merges(t, g, err, errlen);
        if (rc == 0)
            rc = set_pre(t, g, err, errlen);
    }
    if (rc == 0 && kind == TOK_KIND_SPM) {
        int prefix = 1;
        rc = read_bool(g, "tokenizer.ggml.add_space_prefix", &prefix, err, errlen);
        t->space_prefix = prefix ? TOK_PREFIX_EVERY : TOK_PREFIX_NONE;
        t->strip_space = prefix;
    }
    gguf_str_t tmpl;
    if (rc == 0 && gguf_get_str(g, "tokenizer.chat_template", &tmpl, NULL, 0) == 0) {
        t->chat_template = strndup(tmpl.ptr, (size_t)tmpl.len);
        if (t->chat_template == NULL)
            rc = ERR_NOMEM;
    }
    if (rc == 0)
        rc = tok_impl_finish(t, err, errlen);
    if (rc != 0) {
        if (rc == ERR_NOMEM)
            err_set(err, errlen, rc, "%s: out of memory loading the tokenizer", gguf_path(g));
        tok_destroy(t);
        return rc;
    }
    *out = t;
    return 0;
}
