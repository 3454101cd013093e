/*
 * tokenizer_impl.h - the tokenizer's internals, shared by its files only:
 *   tokenizer.c         the vocabulary builder, validation, queries
 *   tokenizer_gguf.c    GGUF metadata -> builder
 *   tokenizer_hf.c      tokenizer.json / tokenizer_config.json -> builder
 *   tokenizer_encode.c  special tokens, pre-tokenizer, both BPE algorithms
 *   tokenizer_decode.c  the growable buffers, UTF-8 repair, pieces, the
 *                       incremental decoder
 *
 * A loader calls, in order: tok_impl_new, tok_impl_set for every id,
 * tok_impl_index, tok_impl_add_merge for each merge (byte-level and
 * ranked SPM), tok_impl_set_pre or tok_impl_add_split, then sets the
 * scalar fields (bos, eos, flags) and calls tok_impl_finish.  Nothing
 * else may write to a tokenizer_t.
 */
#ifndef LLAMAD_TOKENIZER_IMPL_H
#define LLAMAD_TOKENIZER_IMPL_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "base/utf8.h"
#include "tokenizer.h"

#define TOK_MAX_SPLITS 4
#define TOK_MAX_EOG    8
#define TOK_TYPE_UNSET 0xFF   /* a slot no loader has filled yet */

/* Where the SPM encoder puts its U+2581 prefix. */
enum {
    TOK_PREFIX_NONE = 0,
    TOK_PREFIX_EVERY = 1,   /* every text fragment (sentencepiece, llama.cpp, HF legacy) */
    TOK_PREFIX_FIRST = 2,   /* only a fragment at the start of the text (HF Metaspace "first") */
};

typedef struct {
    uint64_t off;        /* into text: the stored string, NUL-terminated */
    uint64_t piece_off;  /* into pieces: the decoded bytes, NUL-terminated */
    uint32_t len;
    uint32_t piece_len;
    float score;
    uint8_t type;        /* tok_type_t, or TOK_TYPE_UNSET while loading */
} tok_entry_t;

/* One slot of the merge table: the pair (left, right) -> (rank, merged). */
typedef struct {
    uint64_t key;        /* (uint64)left << 32 | right; UINT64_MAX = empty */
    uint32_t rank;
    int32_t merged;
} tok_merge_t;

/* Special-token trie: first-child / next-sibling links, -1 = none. */
typedef struct {
    int32_t child;
    int32_t sibling;
    int32_t id;          /* token ending here, or -1 */
    unsigned char byte;
} tok_trie_t;

struct tokenizer {
    tok_kind_t kind;
    char src[256];          /* file the vocabulary came from, for messages */
    char pre_name[16];
    char *warning;
    char *chat_template;

    size_t n_vocab;
    tok_entry_t *tok;       /* [n_vocab] */
    char *text;             /* arena of stored strings */
    size_t text_len, text_cap;
    char *pieces;           /* arena of decoded pieces */
    size_t pieces_len, pieces_cap;
    size_t max_token_len;

    int32_t *map;           /* [map_mask + 1] open addressing: string -> id, -1 empty */
    size_t map_mask;

    tok_merge_t *merges;    /* [merge_mask + 1] */
    size_t merge_mask;
    size_t n_merges;
    int merge_by_score;     /* SPM from GGUF: best-scoring pair; else by rank */
    int ignore_merges;      /* a whole word found in the vocabulary is one token */
    int byte_fallback;      /* SPM: unknown characters become <0xHH> tokens */

    int32_t byte_tok[256];  /* BPE: single-character token of each byte; SPM: <0xHH> */

    int32_t bos, eos, unk, eot, eom;
    int32_t bpe_unk;        /* byte-level: id for a byte missing from the vocabulary (HF
                               model.unk_token); -1 drops the byte */
    int add_bos, add_eos;
    int space_prefix;       /* TOK_PREFIX_* (SPM) */
    int prefix_unless_space;/* HF Metaspace: no prefix when the text already starts with one */
    int metaspace_split;    /* HF Metaspace split: a word starts at every U+2581 */
    int strip_space;        /* decoder: TEXT_START drops one leading space (SPM) */

    pcre2_code *split[TOK_MAX_SPLITS];  /* applied in order, matches isolated */
    size_t n_split;

    tok_trie_t *trie;       /* [n_trie], node 0 is the root */
    int32_t trie_first[256];/* the root's child for each first byte, or -1 */
    size_t n_trie, trie_cap;

    int32_t eog[TOK_MAX_EOG];
    size_t n_eog;
};

/* ---- builder (tokenizer.c) ---- */
int tok_impl_new(tokenizer_t **out, tok_kind_t kind, size_t n_vocab, const char *src,
                 char *err, size_t errlen);
/* Store token `id`; `key` names the array for messages. */
int tok_impl_set(tokenizer_t *t, size_t id, const char *s, size_t len, int type,
                 float score, const char *key, char *err, size_t errlen);
/* All ids set: check them, index strings, find byte tokens. */
int tok_impl_index(tokenizer_t *t, const char *key, char *err, size_t errlen);
/* One merge "a b"; index is its position (its rank) in `key`. */
int tok_impl_add_merge(tokenizer_t *t, const char *a, size_t alen, const char *b,
                       size_t blen, const char *key, size_t index, char *err, size_t errlen);
int tok_impl_reserve_merges(tokenizer_t *t, size_t n);
/* A named pre-tokenizer: "gpt2", "llama3" or "smollm". */
int tok_impl_set_pre(tokenizer_t *t, const char *name, char *err, size_t errlen);
/* The source of a built-in pattern: "gpt2", "llama3", "digits"; or NULL. */
const char *tok_impl_pattern(const char *name);
/* One more regex split step (a pattern from tokenizer.json). */
int tok_impl_add_split(tokenizer_t *t, const char *pattern, const char *key,
                       char *err, size_t errlen);
/* Check a special id read from `key`; -1 (absent) passes. */
int tok_impl_check_id(const tokenizer_t *t, int64_t id, const char *key, char *err,
                      size_t errlen);
/* Pieces, special-token trie, end-of-generation set. */
int tok_impl_finish(tokenizer_t *t, char *err, size_t errlen);
int tok_impl_set_warning(tokenizer_t *t, const char *msg);
int32_t tok_impl_lookup(const tokenizer_t *t, const char *s, size_t len);

/* GPT-2's byte <-> character map (computed once, no tables in source). */
uint32_t tok_byte_to_cp(unsigned char b);
/* The byte a code point stands for, or -1. */
int tok_cp_to_byte(uint32_t cp);

/* ---- UTF-8 (the rules and the rest are base/utf8.h's; tokenizer_decode.c) ---- */
/* Append s with each ill-formed subpart (and a cut tail) replaced by U+FFFD. */
int tok_utf8_repair(const char *s, size_t n, tok_text_t *out);

#endif
