/*
 * tokenizer.c - the vocabulary builder behind both loaders, its checks
 * (shared/THREATS.md A6), and the queries.  See tokenizer_impl.h for the
 * order in which a loader calls the builder.
 */
#include "tokenizer_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"

/* ================================================================
 * GPT-2's byte <-> character map
 *
 * Bytes that are printable in Latin-1 ('!'..'~', U+00A1..U+00AC,
 * U+00AE..U+00FF) stand for themselves; the other 68 bytes, in increasing
 * order, take the code points U+0100, U+0101, ... so that every byte has
 * a visible, non-space character.
 * ================================================================ */

static int byte_is_printable(unsigned b)
{
    return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
}

/* The non-printable bytes are 0x00..0x20 (33), 0x7F..0xA0 (34) and 0xAD. */
uint32_t tok_byte_to_cp(unsigned char b)
{
    if (byte_is_printable(b))
        return b;
    if (b <= 0x20)
        return 0x100 + b;
    if (b <= 0xA0)
        return 0x100 + 33 + (b - 0x7F);
    return 0x100 + 67;   /* 0xAD */
}

int tok_cp_to_byte(uint32_t cp)
{
    if (cp < 0x100)
        return byte_is_printable(cp) ? (int)cp : -1;
    uint32_t n = cp - 0x100;
    if (n < 33)
        return (int)n;
    if (n < 67)
        return (int)(0x7F + n - 33);
    return n == 67 ? 0xAD : -1;
}

/* ================================================================
 * Builder
 * ================================================================ */

static uint64_t hash_bytes(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull;   /* FNV-1a */
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ull;
    }
    return h;
}

static uint64_t hash_u64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    return x;
}

static size_t pow2_at_least(size_t n)
{
    size_t p = 16;
    while (p < n)
        p *= 2;
    return p;
}

int tok_impl_new(tokenizer_t **out, tok_kind_t kind, size_t n_vocab, const char *src,
                 char *err, size_t errlen)
{
    *out = NULL;
    if (n_vocab == 0 || n_vocab > GGUF_MAX_ARRAY)
        return err_set(err, errlen, ERR_FORMAT, "%s: vocabulary size %zu outside 1..%u",
                       src, n_vocab, GGUF_MAX_ARRAY);
    tokenizer_t *t = calloc(1, sizeof *t);
    if (t == NULL)
        return ERR_NOMEM;
    t->kind = kind;
    snprintf(t->src, sizeof t->src, "%s", src);
    t->n_vocab = n_vocab;
    t->tok = calloc(n_vocab, sizeof *t->tok);
    if (t->tok == NULL) {
        free(t);
        return ERR_NOMEM;
    }
    for (size_t i = 0; i < n_vocab; i++)
        t->tok[i].type = TOK_TYPE_UNSET;
    t->bos = t->eos = t->unk = t->eot = t->eom = t->bpe_unk = -1;
    for (int b = 0; b < 256; b++)
        t->byte_tok[b] = -1;
    snprintf(t->pre_name, sizeof t->pre_name, "%s", kind == TOK_KIND_SPM ? "spm" : "gpt2");
    *out = t;
    return 0;
}

static int arena_put(char **arena, size_t *len, size_t *cap, const char *s, size_t n,
                     uint64_t *off)
{
    size_t need;
    if (__builtin_add_overflow(*len, n, &need) || __builtin_add_overflow(need, 1, &need))
        return ERR_NOMEM;
    if (need > *cap) {
        size_t c = *cap ? *cap : 4096;
        while (c < need) {
            if (__builtin_mul_overflow(c, 2, &c))
                return ERR_NOMEM;
        }
        char *p = realloc(*arena, c);
        if (p == NULL)
            return ERR_NOMEM;
        *arena = p;
        *cap = c;
    }
    if (n > 0)
        memcpy(*arena + *len, s, n);
    (*arena)[*len + n] = '\0';
    *off = *len;
    *len += n + 1;
    return 0;
}

int tok_impl_set(tokenizer_t *t, size_t id, const char *s, size_t len, int type,
                 float score, const char *key, char *err, size_t errlen)
{
    if (id >= t->n_vocab)
        return err_set(err, errlen, ERR_FORMAT, "%s: %s: id %zu >= vocabulary size %zu",
                       t->src, key, id, t->n_vocab);
    if (t->tok[id].type != TOK_TYPE_UNSET)
        return err_set(err, errlen, ERR_FORMAT, "%s: %s: id %zu given twice", t->src, key, id);
    if (len > TOK_MAX_TOKEN_BYTES)
        return err_set(err, errlen, ERR_FORMAT, "%s: %s[%zu]: token of %zu bytes (limit %d)",
                       t->src, key, id, len, TOK_MAX_TOKEN_BYTES);
    if (!utf8_valid(s, len))
        return err_set(err, errlen, ERR_FORMAT, "%s: %s[%zu]: token is not valid UTF-8",
                       t->src, key, id);
    if (type < TOK_TYPE_UNDEFINED || type > TOK_TYPE_BYTE)
        return err_set(err, errlen, ERR_FORMAT, "%s: %s[%zu]: token type %d outside 0..6",
                       t->src, key, id, type);
    tok_entry_t *e = &t->tok[id];
    if (arena_put(&t->text, &t->text_len, &t->text_cap, s, len, &e->off) != 0)
        return err_set(err, errlen, ERR_NOMEM, "%s: out of memory for tokens", t->src);
    e->len = (uint32_t)len;
    e->type = (uint8_t)(type == TOK_TYPE_UNDEFINED ? TOK_TYPE_NORMAL : type);
    e->score = score;
    if (len > t->max_token_len)
        t->max_token_len = len;
    return 0;
}

int32_t tok_impl_lookup(const tokenizer_t *t, const char *s, size_t len)
{
    if (t->map == NULL || len > t->max_token_len)
        return -1;
    size_t i = (size_t)hash_bytes(s, len) & t->map_mask;
    for (;;) {
        int32_t id = t->map[i];
        if (id < 0)
            return -1;
        const tok_entry_t *e = &t->tok[id];
        if (e->len == len && memcmp(t->text + e->off, s, len) == 0)
            return id;
        i = (i + 1) & t->map_mask;
    }
}

/* "<0xHH>" -> HH, or -1. */
static int parse_byte_token(const char *s, size_t n)
{
    if (n != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>')
        return -1;
    int v = 0;
    for (int i = 3; i < 5; i++) {
        char c = s[i];
        int d = (c >= '0' && c <= '9') ? c - '0'
              : (c >= 'A' && c <= 'F') ? c - 'A' + 10
              : (c >= 'a' && c <= 'f') ? c - 'a' + 10 : -1;
        if (d < 0)
            return -1;
        v = v * 16 + d;
    }
    return v;
}

/* Byte-level BPE stores ordinary tokens in the byte-map alphabet. */
static int in_byte_alphabet(const char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        uint32_t cp = 0;
        int kind;
        i += utf8_step((const unsigned char *)s + i, n - i, &cp, &kind);
        if (kind != UTF8_OK || tok_cp_to_byte(cp) < 0)
            return 0;
    }
    return 1;
}

static int type_is_plain(int type)
{
    return type == TOK_TYPE_NORMAL || type == TOK_TYPE_UNUSED;
}

int tok_impl_index(tokenizer_t *t, const char *key, char *err, size_t errlen)
{
    size_t cap;
    if (__builtin_mul_overflow(t->n_vocab, 2, &cap))
        return ERR_NOMEM;
    cap = pow2_at_least(cap);
    t->map = malloc(cap * sizeof *t->map);
    if (t->map == NULL)
        return err_set(err, errlen, ERR_NOMEM, "%s: out of memory for the token index", t->src);
    memset(t->map, 0xFF, cap * sizeof *t->map);
    t->map_mask = cap - 1;

    for (size_t id = 0; id < t->n_vocab; id++) {
        tok_entry_t *e = &t->tok[id];
        if (e->type == TOK_TYPE_UNSET)
            return err_set(err, errlen, ERR_FORMAT, "%s: %s: no token has id %zu",
                           t->src, key, id);
        const char *s = t->text + e->off;
        if (e->type == TOK_TYPE_BYTE) {
            int b = parse_byte_token(s, e->len);
            if (b < 0)
                return err_set(err, errlen, ERR_FORMAT,
                               "%s: %s[%zu]: byte token \"%.16s\" is not <0xHH>",
                               t->src, key, id, s);
            if (t->byte_tok[b] >= 0)
                return err_set(err, errlen, ERR_FORMAT, "%s: %s[%zu]: byte token %s repeated",
                               t->src, key, id, s);
            t->byte_tok[b] = (int32_t)id;
        } else if (t->kind == TOK_KIND_BPE && type_is_plain(e->type) &&
                   !in_byte_alphabet(s, e->len)) {
            return err_set(err, errlen, ERR_FORMAT,
                           "%s: %s[%zu]: \"%.40s\" has characters outside the byte map",
                           t->src, key, id, s);
        }
        /* The first id of a repeated string wins, as in the reference tokenizers. */
        if (tok_impl_lookup(t, s, e->len) >= 0)
            continue;
        size_t i = (size_t)hash_bytes(s, e->len) & t->map_mask;
        while (t->map[i] >= 0)
            i = (i + 1) & t->map_mask;
        t->map[i] = (int32_t)id;
    }
    if (t->kind == TOK_KIND_BPE) {
        for (int b = 0; b < 256; b++) {
            char u[4];
            size_t n = utf8_encode(tok_byte_to_cp((unsigned char)b), u);
            t->byte_tok[b] = tok_impl_lookup(t, u, n);
        }
    }
    return 0;
}

int tok_impl_reserve_merges(tokenizer_t *t, size_t n)
{
    size_t cap;
    if (__builtin_mul_overflow(n, 2, &cap))
        return ERR_NOMEM;
    cap = pow2_at_least(cap);
    tok_merge_t *m = malloc(cap * sizeof *m);
    if (m == NULL)
        return ERR_NOMEM;
    for (size_t i = 0; i < cap; i++)
        m[i].key = UINT64_MAX;
    free(t->merges);
    t->merges = m;
    t->merge_mask = cap - 1;
    t->n_merges = 0;
    return 0;
}

int tok_impl_add_merge(tokenizer_t *t, const char *a, size_t alen, const char *b,
                       size_t blen, const char *key, size_t index, char *err, size_t errlen)
{
    int32_t ia = tok_impl_lookup(t, a, alen);
    int32_t ib = tok_impl_lookup(t, b, blen);
    char cat[2 * TOK_MAX_TOKEN_BYTES];
    int32_t im = -1;
    if (ia >= 0 && ib >= 0 && alen + blen <= sizeof cat) {
        memcpy(cat, a, alen);
        memcpy(cat + alen, b, blen);
        im = tok_impl_lookup(t, cat, alen + blen);
    }
    if (im < 0)
        return err_set(err, errlen, ERR_FORMAT,
                       "%s: %s[%zu]: merge \"%.*s\" + \"%.*s\" names a missing token",
                       t->src, key, index, (int)(alen > 40 ? 40 : alen), a,
                       (int)(blen > 40 ? 40 : blen), b);
    int mt = t->tok[im].type;
    if (mt == TOK_TYPE_CONTROL || mt == TOK_TYPE_UNKNOWN)
        return 0;   /* text never merges into a special token */
    if (t->n_merges * 2 >= t->merge_mask + 1)
        return err_set(err, errlen, ERR_FORMAT, "%s: %s: more merges than reserved",
                       t->src, key);
    uint64_t k = (uint64_t)(uint32_t)ia << 32 | (uint32_t)ib;
    size_t i = (size_t)hash_u64(k) & t->merge_mask;
    while (t->merges[i].key != UINT64_MAX) {
        if (t->merges[i].key == k)
            return 0;   /* a repeated merge keeps its first (best) rank */
        i = (i + 1) & t->merge_mask;
    }
    t->merges[i].key = k;
    t->merges[i].rank = (uint32_t)index;
    t->merges[i].merged = im;
    t->n_merges++;
    return 0;
}

/* ================================================================
 * Pre-tokenizer patterns
 * ================================================================ */

/* GPT-2 (and HF ByteLevel with use_regex). */
static const char PAT_GPT2[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
/* LLaMA-3's Split step. */
static const char PAT_LLAMA3[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}"
    "| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
/* HF Digits(individual_digits = true): every numeric character alone. */
static const char PAT_DIGITS[] = "\\p{N}";

int tok_impl_add_split(tokenizer_t *t, const char *pattern, const char *key,
                       char *err, size_t errlen)
{
    if (t->n_split == TOK_MAX_SPLITS)
        return err_set(err, errlen, ERR_UNSUPPORTED, "%s: %s: more than %d split steps",
                       t->src, key, TOK_MAX_SPLITS);
    int ec = 0;
    PCRE2_SIZE eo = 0;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED,
                                   PCRE2_UTF | PCRE2_UCP, &ec, &eo, NULL);
    if (re == NULL) {
        PCRE2_UCHAR msg[128];
        pcre2_get_error_message(ec, msg, sizeof msg);
        return err_set(err, errlen, ERR_UNSUPPORTED, "%s: %s: regex at offset %zu: %s",
                       t->src, key, (size_t)eo, (const char *)msg);
    }
    (void)pcre2_jit_compile(re, PCRE2_JIT_COMPLETE);   /* the interpreter is the fallback */
    t->split[t->n_split++] = re;
    return 0;
}

const char *tok_impl_pattern(const char *name)
{
    if (strcmp(name, "gpt2") == 0)
        return PAT_GPT2;
    if (strcmp(name, "llama3") == 0)
        return PAT_LLAMA3;
    if (strcmp(name, "digits") == 0)
        return PAT_DIGITS;
    return NULL;
}

int tok_impl_set_pre(tokenizer_t *t, const char *name, char *err, size_t errlen)
{
    int rc;
    if (strcmp(name, "gpt2") == 0) {
        rc = tok_impl_add_split(t, PAT_GPT2, "pre-tokenizer", err, errlen);
    } else if (strcmp(name, "llama3") == 0) {
        rc = tok_impl_add_split(t, PAT_LLAMA3, "pre-tokenizer", err, errlen);
        t->ignore_merges = 1;
    } else if (strcmp(name, "smollm") == 0) {
        rc = tok_impl_add_split(t, PAT_DIGITS, "pre-tokenizer", err, errlen);
        if (rc == 0)
            rc = tok_impl_add_split(t, PAT_GPT2, "pre-tokenizer", err, errlen);
    } else {
        return err_set(err, errlen, ERR_INVALID, "unknown pre-tokenizer \"%s\"", name);
    }
    if (rc == 0)
        snprintf(t->pre_name, sizeof t->pre_name, "%s", name);
    return rc;
}

/* ================================================================
 * Finishing
 * ================================================================ */

int tok_impl_check_id(const tokenizer_t *t, int64_t id, const char *key, char *err,
                      size_t errlen)
{
    if (id < -1 || (id >= 0 && (uint64_t)id >= t->n_vocab))
        return err_set(err, errlen, ERR_FORMAT, "%s: %s = %lld, vocabulary size %zu",
                       t->src, key, (long long)id, t->n_vocab);
    return 0;
}

static int trie_node(tokenizer_t *t, unsigned char byte)
{
    if (t->n_trie == t->trie_cap) {
        size_t cap = t->trie_cap ? t->trie_cap * 2 : 256;
        tok_trie_t *p = realloc(t->trie, cap * sizeof *p);
        if (p == NULL)
            return -1;
        t->trie = p;
        t->trie_cap = cap;
    }
    tok_trie_t *n = &t->trie[t->n_trie];
    n->child = n->sibling = n->id = -1;
    n->byte = byte;
    return (int)t->n_trie++;
}

static int trie_insert(tokenizer_t *t, const char *s, size_t len, int32_t id)
{
    int32_t node = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        int32_t ch = t->trie[node].child;
        while (ch >= 0 && t->trie[ch].byte != c)
            ch = t->trie[ch].sibling;
        if (ch < 0) {
            ch = trie_node(t, c);
            if (ch < 0)
                return ERR_NOMEM;
            t->trie[ch].sibling = t->trie[node].child;
            t->trie[node].child = ch;
        }
        node = ch;
    }
    if (t->trie[node].id < 0)
        t->trie[node].id = id;
    return 0;
}

static void eog_add(tokenizer_t *t, int32_t id)
{
    if (id < 0 || t->n_eog == TOK_MAX_EOG)
        return;
    for (size_t i = 0; i < t->n_eog; i++)
        if (t->eog[i] == id)
            return;
    t->eog[t->n_eog++] = id;
}

static int build_piece(tokenizer_t *t, tok_entry_t *e)
{
    const char *s = t->text + e->off;
    char buf[TOK_MAX_TOKEN_BYTES + 1];
    size_t n = 0;
    if (e->type == TOK_TYPE_BYTE) {
        buf[n++] = (char)parse_byte_token(s, e->len);
    } else if (!type_is_plain(e->type)) {
        memcpy(buf, s, e->len);
        n = e->len;
    } else if (t->kind == TOK_KIND_BPE) {
        for (size_t i = 0; i < e->len;) {
            uint32_t cp = 0;
            int kind;
            i += utf8_step((const unsigned char *)s + i, e->len - i, &cp, &kind);
            buf[n++] = (char)tok_cp_to_byte(cp);   /* checked by tok_impl_index */
        }
    } else {
        for (size_t i = 0; i < e->len;) {
            if (e->len - i >= 3 && memcmp(s + i, "\xE2\x96\x81", 3) == 0) {
                buf[n++] = ' ';
                i += 3;
            } else {
                buf[n++] = s[i++];
            }
        }
    }
    return arena_put(&t->pieces, &t->pieces_len, &t->pieces_cap, buf, n, &e->piece_off) == 0
               ? (e->piece_len = (uint32_t)n, 0) : ERR_NOMEM;
}

int tok_impl_finish(tokenizer_t *t, char *err, size_t errlen)
{
    if (trie_node(t, 0) != 0)
        return ERR_NOMEM;
    for (size_t id = 0; id < t->n_vocab; id++) {
        tok_entry_t *e = &t->tok[id];
        if (build_piece(t, e) != 0)
            return err_set(err, errlen, ERR_NOMEM, "%s: out of memory for pieces", t->src);
        int special = e->type == TOK_TYPE_CONTROL || e->type == TOK_TYPE_USER_DEFINED ||
                      e->type == TOK_TYPE_UNKNOWN;
        if (special && e->len > 0 && trie_insert(t, t->text + e->off, e->len, (int32_t)id) != 0)
            return err_set(err, errlen, ERR_NOMEM, "%s: out of memory for specials", t->src);
    }
    for (int b = 0; b < 256; b++)
        t->trie_first[b] = -1;
    for (int32_t ch = t->trie[0].child; ch >= 0; ch = t->trie[ch].sibling)
        t->trie_first[t->trie[ch].byte] = ch;
    eog_add(t, t->eos);
    eog_add(t, t->eot);
    eog_add(t, t->eom);
    static const char *const eog_names[] = {
        "<|im_end|>", "<|eot_id|>", "<|end_of_text|>", "<|endoftext|>",
    };
    for (size_t i = 0; i < sizeof eog_names / sizeof eog_names[0]; i++) {
        int32_t id = tok_find(t, eog_names[i]);
        if (id >= 0 && t->tok[id].type == TOK_TYPE_CONTROL)
            eog_add(t, id);
    }
    return 0;
}

int tok_impl_set_warning(tokenizer_t *t, const char *msg)
{
    free(t->warning);
    t->warning = strdup(msg);
    return t->warning ? 0 : ERR_NOMEM;
}

void tok_destroy(tokenizer_t *t)
{
    if (t == NULL)
        return;
    for (size_t i = 0; i < t->n_split; i++)
        pcre2_code_free(t->split[i]);
    free(t->tok);
    free(t->text);
    free(t->pieces);
    free(t->map);
    free(t->merges);
    free(t->trie);
    free(t->warning);
    free(t->chat_template);
    free(t);
}

/* ================================================================
 * Queries
 * ================================================================ */

size_t tok_n_vocab(const tokenizer_t *t) { return t->n_vocab; }
tok_kind_t tok_kind(const tokenizer_t *t) { return t->kind; }
const char *tok_pre_name(const tokenizer_t *t) { return t->pre_name; }
int32_t tok_bos(const tokenizer_t *t) { return t->bos; }
int32_t tok_eos(const tokenizer_t *t) { return t->eos; }
int tok_add_bos_default(const tokenizer_t *t) { return t->add_bos; }
int tok_add_eos_default(const tokenizer_t *t) { return t->add_eos; }
const char *tok_chat_template(const tokenizer_t *t) { return t->chat_template; }
const char *tok_warning(const tokenizer_t *t) { return t->warning; }

int tok_type(const tokenizer_t *t, int32_t id)
{
    if (id < 0 || (size_t)id >= t->n_vocab)
        return -1;
    return t->tok[id].type;
}

size_t tok_eog_ids(const tokenizer_t *t, const int32_t **ids)
{
    *ids = t->eog;
    return t->n_eog;
}

int tok_is_eog(const tokenizer_t *t, int32_t id)
{
    for (size_t i = 0; i < t->n_eog; i++)
        if (t->eog[i] == id)
            return 1;
    return 0;
}

int32_t tok_find(const tokenizer_t *t, const char *text)
{
    return tok_impl_lookup(t, text, strlen(text));
}
