/*
 * tokenizer_encode.c - text -> ids.
 *
 * The pipeline for one call: repair ill-formed UTF-8; cut the text at
 * special tokens (when asked); then per text fragment either
 *   byte-level BPE: regex split steps (each match isolated, gaps kept),
 *     each piece merged by rank over its bytes, or
 *   SPM: spaces -> U+2581 with the prefix, then merged over characters by
 *     score (GGUF) or by rank (tokenizer.json), unknown characters as
 *     byte tokens.
 * Both merge loops keep candidate pairs in a binary heap and drop stale
 * entries when popped (as sentencepiece and HF tokenizers do), so a word
 * of n symbols costs O(n log n), never O(n^2).
 */
#include "tokenizer_impl.h"

#include <stdlib.h>
#include <string.h>

#include "base/err.h"

/* ================================================================
 * Scratch for one call
 * ================================================================ */

typedef struct {
    int32_t id;       /* token of this symbol, -1 if none */
    uint32_t start;   /* byte offset into the word */
    uint32_t len;     /* bytes; 0 = merged away */
    int32_t prev, next;
} sym_t;

typedef struct {
    uint64_t key;     /* smallest pops first */
    uint32_t pos;     /* left symbol */
    uint32_t val;     /* rank engine: merged id; score engine: merged length */
} heap_item_t;

typedef struct {
    const tokenizer_t *t;
    tok_buf_t *out;
    pcre2_match_data *md;
    pcre2_match_context *mctx;
    pcre2_jit_stack *jit;
    size_t *rng, n_rng, cap_rng;     /* [cap_rng][2] (offset, length) pieces */
    size_t *rng2, n_rng2, cap_rng2;
    sym_t *sym;
    size_t cap_sym;
    heap_item_t *heap;
    size_t n_heap, cap_heap;
    tok_text_t word;                 /* SPM normalised text; mapped BPE word */
    char *err;
    size_t errlen;
} enc_t;

static int grow(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return 0;
    size_t c = *cap ? *cap : 64;
    while (c < need) {
        if (__builtin_mul_overflow(c, 2, &c))
            return ERR_NOMEM;
    }
    size_t bytes;
    if (__builtin_mul_overflow(c, elem, &bytes))
        return ERR_NOMEM;
    void *q = realloc(*p, bytes);
    if (q == NULL)
        return ERR_NOMEM;
    *p = q;
    *cap = c;
    return 0;
}

static int emit(enc_t *e, int32_t id)
{
    return tok_buf_push(e->out, id);
}

/* A token for a run of text: never a control or unknown-type token, so
   that text becomes special tokens only through parse_special. */
static int32_t lookup_text(const tokenizer_t *t, const char *s, size_t n)
{
    int32_t id = tok_impl_lookup(t, s, n);
    if (id >= 0 && (t->tok[id].type == TOK_TYPE_CONTROL || t->tok[id].type == TOK_TYPE_UNKNOWN))
        return -1;
    return id;
}

/* ================================================================
 * Binary min-heap
 * ================================================================ */

static int heap_push(enc_t *e, uint64_t key, uint32_t pos, uint32_t val)
{
    if (grow((void **)&e->heap, &e->cap_heap, e->n_heap + 1, sizeof *e->heap) != 0)
        return ERR_NOMEM;
    size_t i = e->n_heap++;
    heap_item_t it = { key, pos, val };
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (e->heap[parent].key <= key)
            break;
        e->heap[i] = e->heap[parent];
        i = parent;
    }
    e->heap[i] = it;
    return 0;
}

static heap_item_t heap_pop(enc_t *e)
{
    heap_item_t top = e->heap[0];
    heap_item_t last = e->heap[--e->n_heap];
    size_t i = 0, n = e->n_heap;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n)
            break;
        if (c + 1 < n && e->heap[c + 1].key < e->heap[c].key)
            c++;
        if (last.key <= e->heap[c].key)
            break;
        e->heap[i] = e->heap[c];
        i = c;
    }
    if (n > 0)
        e->heap[i] = last;
    return top;
}

/* ================================================================
 * Merging by rank (byte-level BPE; SPM from tokenizer.json)
 * ================================================================ */

static const tok_merge_t *merge_find(const tokenizer_t *t, int32_t a, int32_t b)
{
    if (t->merges == NULL || a < 0 || b < 0)
        return NULL;
    uint64_t k = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
    uint64_t x = k;
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    size_t i = (size_t)x & t->merge_mask;
    while (t->merges[i].key != UINT64_MAX) {
        if (t->merges[i].key == k)
            return &t->merges[i];
        i = (i + 1) & t->merge_mask;
    }
    return NULL;
}

static int rank_push(enc_t *e, int32_t left)
{
    int32_t right = e->sym[left].next;
    if (right < 0)
        return 0;
    const tok_merge_t *m = merge_find(e->t, e->sym[left].id, e->sym[right].id);
    if (m == NULL)
        return 0;
    return heap_push(e, (uint64_t)m->rank << 32 | (uint32_t)left, (uint32_t)left,
                     (uint32_t)m->merged);
}

/* Merge e->sym[0..n) (linked, ids set) and emit the result. */
static int rank_merge(enc_t *e, size_t n)
{
    e->n_heap = 0;
    for (size_t i = 0; i + 1 < n; i++)
        if (rank_push(e, (int32_t)i) != 0)
            return ERR_NOMEM;
    while (e->n_heap > 0) {
        heap_item_t top = heap_pop(e);
        sym_t *l = &e->sym[top.pos];
        if (l->len == 0 || l->next < 0)
            continue;
        sym_t *r = &e->sym[l->next];
        const tok_merge_t *m = merge_find(e->t, l->id, r->id);
        if (m == NULL || (uint32_t)m->merged != top.val)
            continue;   /* stale: one side has changed since the push */
        l->id = m->merged;
        l->len += r->len;
        r->len = 0;
        l->next = r->next;
        if (l->next >= 0)
            e->sym[l->next].prev = (int32_t)top.pos;
        if ((l->prev >= 0 && rank_push(e, l->prev) != 0) || rank_push(e, (int32_t)top.pos) != 0)
            return ERR_NOMEM;
    }
    for (int32_t i = n > 0 ? 0 : -1; i >= 0; i = e->sym[i].next)
        if (e->sym[i].id >= 0 && emit(e, e->sym[i].id) != 0)
            return ERR_NOMEM;
    return 0;
}

static void link_syms(enc_t *e, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        e->sym[i].prev = (int32_t)i - 1;
        e->sym[i].next = i + 1 < n ? (int32_t)i + 1 : -1;
    }
}

/* One byte-level word: symbols are bytes (as their mapped characters). */
static int bpe_word(enc_t *e, const unsigned char *w, size_t n)
{
    const tokenizer_t *t = e->t;
    if (t->ignore_merges && 2 * n <= t->max_token_len) {
        e->word.len = 0;
        for (size_t i = 0; i < n; i++) {
            char u[4];
            if (tok_text_append(&e->word, u, utf8_encode(tok_byte_to_cp(w[i]), u)) != 0)
                return ERR_NOMEM;
        }
        int32_t id = lookup_text(t, e->word.data, e->word.len);
        if (id >= 0)
            return emit(e, id);
    }
    if (grow((void **)&e->sym, &e->cap_sym, n, sizeof *e->sym) != 0)
        return ERR_NOMEM;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        int32_t id = t->byte_tok[w[i]];
        if (id < 0)
            id = t->bpe_unk; /* HF: a character outside the vocabulary is unk, or dropped */
        if (id < 0)
            continue;
        e->sym[k].id = id;
        e->sym[k].start = (uint32_t)i;
        e->sym[k].len = 1;
        k++;
    }
    link_syms(e, k);
    return rank_merge(e, k);
}

/* One SPM word merged by rank (tokenizer.json): symbols are characters. */
static int spm_rank_word(enc_t *e, const char *w, size_t n)
{
    const tokenizer_t *t = e->t;
    if (t->ignore_merges) {
        int32_t id = lookup_text(t, w, n);
        if (id >= 0)
            return emit(e, id);
    }
    if (grow((void **)&e->sym, &e->cap_sym, n, sizeof *e->sym) != 0)
        return ERR_NOMEM;
    size_t k = 0;
    int prev_unk = 0;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        int kind;
        size_t cl = utf8_step((const unsigned char *)w + i, n - i, &cp, &kind);
        int32_t id = lookup_text(t, w + i, cl);
        int all_bytes = t->byte_fallback;
        for (size_t j = 0; id < 0 && all_bytes && j < cl; j++)
            all_bytes = t->byte_tok[(unsigned char)w[i + j]] >= 0;
        if (id >= 0 || all_bytes) {
            size_t parts = id >= 0 ? 1 : cl;
            for (size_t j = 0; j < parts; j++) {
                e->sym[k].id = id >= 0 ? id : t->byte_tok[(unsigned char)w[i + j]];
                e->sym[k].start = (uint32_t)(i + j);
                e->sym[k].len = id >= 0 ? (uint32_t)cl : 1;
                k++;
            }
            prev_unk = 0;
        } else if (t->unk >= 0 && !prev_unk) {   /* consecutive unknowns fuse */
            e->sym[k].id = t->unk;
            e->sym[k].start = (uint32_t)i;
            e->sym[k].len = (uint32_t)cl;
            k++;
            prev_unk = 1;
        }
        i += cl;
    }
    link_syms(e, k);
    return rank_merge(e, k);
}

/* ================================================================
 * Merging by score (SentencePiece BPE from GGUF)
 *
 * Repeatedly merge the adjacent pair whose concatenation is a normal or
 * user-defined token with the highest score; ties go to the leftmost.
 * ================================================================ */

static uint64_t score_key(float score, uint32_t left)
{
    uint32_t u;
    memcpy(&u, &score, sizeof u);
    u = (u & 0x80000000u) ? ~u : (u | 0x80000000u);   /* order-preserving */
    return (uint64_t)(~u) << 32 | left;               /* higher score pops first */
}

static int score_push(enc_t *e, const char *w, int32_t left)
{
    const sym_t *l = &e->sym[left];
    if (l->next < 0)
        return 0;
    const sym_t *r = &e->sym[l->next];
    size_t size = (size_t)l->len + r->len;
    if (size > e->t->max_token_len)
        return 0;
    int32_t id = tok_impl_lookup(e->t, w + l->start, size);
    if (id < 0)
        return 0;
    int type = e->t->tok[id].type;
    if (type != TOK_TYPE_NORMAL && type != TOK_TYPE_USER_DEFINED)
        return 0;
    return heap_push(e, score_key(e->t->tok[id].score, (uint32_t)left), (uint32_t)left,
                     (uint32_t)size);
}

static int spm_score_word(enc_t *e, const char *w, size_t n)
{
    const tokenizer_t *t = e->t;
    if (grow((void **)&e->sym, &e->cap_sym, n, sizeof *e->sym) != 0)
        return ERR_NOMEM;
    size_t k = 0;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        int kind;
        size_t cl = utf8_step((const unsigned char *)w + i, n - i, &cp, &kind);
        e->sym[k].start = (uint32_t)i;
        e->sym[k].len = (uint32_t)cl;
        k++;
        i += cl;
    }
    link_syms(e, k);
    e->n_heap = 0;
    for (size_t i = 0; i + 1 < k; i++)
        if (score_push(e, w, (int32_t)i) != 0)
            return ERR_NOMEM;
    while (e->n_heap > 0) {
        heap_item_t top = heap_pop(e);
        sym_t *l = &e->sym[top.pos];
        if (l->len == 0 || l->next < 0 || l->len + e->sym[l->next].len != top.val)
            continue;   /* stale */
        sym_t *r = &e->sym[l->next];
        l->len += r->len;
        r->len = 0;
        l->next = r->next;
        if (l->next >= 0)
            e->sym[l->next].prev = (int32_t)top.pos;
        if ((l->prev >= 0 && score_push(e, w, l->prev) != 0) ||
            score_push(e, w, (int32_t)top.pos) != 0)
            return ERR_NOMEM;
    }
    for (int32_t i = k > 0 ? 0 : -1; i >= 0; i = e->sym[i].next) {
        const sym_t *s = &e->sym[i];
        int32_t id = lookup_text(t, w + s->start, s->len);
        if (id >= 0 && t->tok[id].type != TOK_TYPE_BYTE) {
            if (emit(e, id) != 0)
                return ERR_NOMEM;
            continue;
        }
        for (uint32_t j = 0; j < s->len; j++) {
            int32_t b = t->byte_tok[(unsigned char)w[s->start + j]];
            if (b < 0)
                b = t->unk;
            if (b >= 0 && emit(e, b) != 0)
                return ERR_NOMEM;
            if (b == t->unk)
                break;   /* one unknown for the whole symbol */
        }
    }
    return 0;
}

/* ================================================================
 * Fragments
 * ================================================================ */

static int spm_fragment(enc_t *e, const char *s, size_t n, int at_text_start)
{
    const tokenizer_t *t = e->t;
    if (n == 0)
        return 0;
    e->word.len = 0;
    int prefix = t->space_prefix == TOK_PREFIX_EVERY ||
                 (t->space_prefix == TOK_PREFIX_FIRST && at_text_start);
    if (prefix && t->prefix_unless_space &&
        (s[0] == ' ' || (n >= 3 && memcmp(s, "\xE2\x96\x81", 3) == 0)))
        prefix = 0;   /* HF Metaspace: the text already starts with U+2581 */
    if (prefix && tok_text_append(&e->word, "\xE2\x96\x81", 3) != 0)
        return ERR_NOMEM;
    size_t run = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i < n && s[i] != ' ')
            continue;
        if (tok_text_append(&e->word, s + run, i - run) != 0 ||
            (i < n && tok_text_append(&e->word, "\xE2\x96\x81", 3) != 0))
            return ERR_NOMEM;
        run = i + 1;
    }
    const char *w = e->word.data;
    size_t wn = e->word.len;
    if (wn > UINT32_MAX)
        return err_set(e->err, e->errlen, ERR_TOOLONG, "text of %zu bytes too long", n);
    if (t->merge_by_score)
        return spm_score_word(e, w, wn);
    if (!t->metaspace_split)
        return spm_rank_word(e, w, wn);
    /* HF Metaspace split: each U+2581 begins a new word. */
    size_t start = 0;
    for (size_t i = 1; i <= wn; i++) {
        if (i < wn && !(wn - i >= 3 && memcmp(w + i, "\xE2\x96\x81", 3) == 0))
            continue;
        int rc = spm_rank_word(e, w + start, i - start);
        if (rc != 0)
            return rc;
        start = i;
    }
    return 0;
}

static int range_push(size_t **v, size_t *n, size_t *cap, size_t off, size_t len)
{
    if (grow((void **)v, cap, 2 * (*n + 1), sizeof **v) != 0)
        return ERR_NOMEM;
    (*v)[2 * *n] = off;
    (*v)[2 * *n + 1] = len;
    (*n)++;
    return 0;
}

static int regex_match(enc_t *e, const pcre2_code *re, const char *s, size_t n, size_t from)
{
    for (;;) {
        int rc = pcre2_match(re, (PCRE2_SPTR)s, n, from, PCRE2_NO_UTF_CHECK, e->md, e->mctx);
        if (rc != PCRE2_ERROR_JIT_STACKLIMIT || e->jit != NULL)
            return rc;
        e->jit = pcre2_jit_stack_create(32 * 1024, 64 * 1024 * 1024, NULL);
        if (e->jit == NULL)
            return rc;
        pcre2_jit_stack_assign(e->mctx, NULL, e->jit);
    }
}

/* Split every piece in e->rng by `re` into e->rng2 (matches and gaps), then swap. */
static int split_step(enc_t *e, const char *s, const pcre2_code *re)
{
    e->n_rng2 = 0;
    for (size_t p = 0; p < e->n_rng; p++) {
        const char *sub = s + e->rng[2 * p];
        size_t len = e->rng[2 * p + 1], gap = 0, off = 0, base = e->rng[2 * p];
        while (off <= len) {
            int rc = regex_match(e, re, sub, len, off);
            if (rc == PCRE2_ERROR_NOMATCH)
                break;
            if (rc < 0) {
                PCRE2_UCHAR msg[128];
                pcre2_get_error_message(rc, msg, sizeof msg);
                return err_set(e->err, e->errlen, ERR_BACKEND, "%s: pre-tokenizer regex: %s",
                               e->t->src, (const char *)msg);
            }
            PCRE2_SIZE *ov = pcre2_get_ovector_pointer(e->md);
            size_t ms = ov[0], me = ov[1];
            if (me <= ms) {   /* an empty match: step over one character */
                if (ms >= len)
                    break;
                uint32_t cp;
                int kind;
                off = ms + utf8_step((const unsigned char *)sub + ms, len - ms, &cp, &kind);
                continue;
            }
            if ((ms > gap && range_push(&e->rng2, &e->n_rng2, &e->cap_rng2, base + gap,
                                        ms - gap) != 0) ||
                range_push(&e->rng2, &e->n_rng2, &e->cap_rng2, base + ms, me - ms) != 0)
                return ERR_NOMEM;
            gap = off = me;
        }
        if (gap < len && range_push(&e->rng2, &e->n_rng2, &e->cap_rng2, base + gap,
                                    len - gap) != 0)
            return ERR_NOMEM;
    }
    size_t *v = e->rng, n = e->n_rng, c = e->cap_rng;
    e->rng = e->rng2;
    e->n_rng = e->n_rng2;
    e->cap_rng = e->cap_rng2;
    e->rng2 = v;
    e->n_rng2 = n;
    e->cap_rng2 = c;
    return 0;
}

static int bpe_fragment(enc_t *e, const char *s, size_t n)
{
    if (n == 0)
        return 0;
    e->n_rng = 0;
    if (range_push(&e->rng, &e->n_rng, &e->cap_rng, 0, n) != 0)
        return ERR_NOMEM;
    for (size_t k = 0; k < e->t->n_split; k++) {
        int rc = split_step(e, s, e->t->split[k]);
        if (rc != 0)
            return rc;
    }
    for (size_t p = 0; p < e->n_rng; p++) {
        int rc = bpe_word(e, (const unsigned char *)s + e->rng[2 * p], e->rng[2 * p + 1]);
        if (rc != 0)
            return rc;
    }
    return 0;
}

static int text_fragment(enc_t *e, const char *s, size_t n, int at_text_start)
{
    return e->t->kind == TOK_KIND_SPM ? spm_fragment(e, s, n, at_text_start)
                                      : bpe_fragment(e, s, n);
}

/* Leftmost, then longest, special token at or after `from`; -1 if none. */
static int32_t find_special(const tokenizer_t *t, const char *s, size_t n, size_t from,
                            size_t *at, size_t *end)
{
    for (size_t i = from; i < n; i++) {
        int32_t node = t->trie_first[(unsigned char)s[i]];
        int32_t best = -1;
        for (size_t j = i + 1; node >= 0; j++) {
            if (t->trie[node].id >= 0) {
                best = t->trie[node].id;
                *end = j;
            }
            if (j >= n)
                break;
            int32_t ch = t->trie[node].child;
            while (ch >= 0 && t->trie[ch].byte != (unsigned char)s[j])
                ch = t->trie[ch].sibling;
            node = ch;
        }
        if (best >= 0) {
            *at = i;
            return best;
        }
    }
    return -1;
}

/* Whether [at, end) meets one of the plain spans; *skip_to gets where to search next. */
static int in_plain(const tok_spans_t *plain, size_t at, size_t end, size_t *skip_to)
{
    if (plain == NULL)
        return 0;
    for (size_t k = 0; k < plain->n; k++) {
        const tok_span_t *p = &plain->v[k];
        if (p->start >= end)
            break;
        if (p->end > at) {
            *skip_to = at >= p->start ? p->end : at + 1;
            return 1;
        }
    }
    return 0;
}

static int encode_text(enc_t *e, const char *s, size_t n, int add_bos, int parse_special,
                       const tok_spans_t *plain)
{
    const tokenizer_t *t = e->t;
    if (add_bos && t->bos >= 0 && emit(e, t->bos) != 0)
        return ERR_NOMEM;
    size_t pos = 0;
    while (pos < n) {
        size_t at = n, end = n;
        int32_t id = -1;
        for (size_t from = pos; parse_special && from < n;) {
            id = find_special(t, s, n, from, &at, &end);
            if (id < 0 || !in_plain(plain, at, end, &from))
                break;
            id = -1;
        }
        if (id < 0)
            at = end = n;
        int rc = text_fragment(e, s + pos, at - pos, pos == 0);
        if (rc != 0)
            return rc;
        if (id >= 0 && emit(e, id) != 0)
            return ERR_NOMEM;
        pos = end;
    }
    return 0;
}

static int encode(const tokenizer_t *t, const char *text, size_t len, int add_bos,
                  int parse_special, const tok_spans_t *plain, tok_buf_t *out, char *err,
                  size_t errlen)
{
    if (len > TOK_MAX_INPUT_BYTES)
        return err_set(err, errlen, ERR_TOOLONG, "text of %zu bytes exceeds the %zu-byte limit",
                       len, TOK_MAX_INPUT_BYTES);
    if (text == NULL && len > 0)
        return err_set(err, errlen, ERR_INVALID, "no text");
    enc_t e;
    memset(&e, 0, sizeof e);
    e.t = t;
    e.out = out;
    e.err = err;
    e.errlen = errlen;
    tok_text_init(&e.word);
    tok_text_t fixed;
    tok_text_init(&fixed);
    size_t n0 = out->n;
    int rc = 0;
    int valid = utf8_valid(text, len);
    if (!valid && plain != NULL) {
        rc = err_set(err, errlen, ERR_INVALID, "text is not valid UTF-8");
    } else if (!valid) {
        rc = tok_utf8_repair(text, len, &fixed);
        text = fixed.data;
        len = fixed.len;
    }
    if (rc == 0 && t->n_split > 0) {
        e.md = pcre2_match_data_create(1, NULL);
        e.mctx = pcre2_match_context_create(NULL);
        if (e.md == NULL || e.mctx == NULL)
            rc = ERR_NOMEM;
    }
    if (rc == 0)
        rc = encode_text(&e, text, len, add_bos, parse_special, plain);
    if (rc == ERR_NOMEM)
        err_set(err, errlen, rc, "out of memory encoding %zu bytes", len);
    if (rc != 0)
        out->n = n0;
    if (e.jit != NULL)
        pcre2_jit_stack_free(e.jit);
    pcre2_match_context_free(e.mctx);
    pcre2_match_data_free(e.md);
    free(e.rng);
    free(e.rng2);
    free(e.sym);
    free(e.heap);
    tok_text_close(&e.word);
    tok_text_close(&fixed);
    return rc;
}

int tok_encode(const tokenizer_t *t, const char *text, size_t len, int add_bos,
               int parse_special, tok_buf_t *out, char *err, size_t errlen)
{
    return encode(t, text, len, add_bos, parse_special, NULL, out, err, errlen);
}

int tok_encode_plain(const tokenizer_t *t, const char *text, size_t len, int add_bos,
                     const tok_spans_t *plain, tok_buf_t *out, char *err, size_t errlen)
{
    static const tok_spans_t none = { NULL, 0, 0 };
    return encode(t, text, len, add_bos, 1, plain ? plain : &none, out, err, errlen);
}

void tok_spans_init(tok_spans_t *s)
{
    s->v = NULL;
    s->n = s->cap = 0;
}

void tok_spans_close(tok_spans_t *s)
{
    free(s->v);
    tok_spans_init(s);
}

int tok_spans_push(tok_spans_t *s, size_t start, size_t end)
{
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 16;
        tok_span_t *v = realloc(s->v, cap * sizeof *v);
        if (v == NULL)
            return ERR_NOMEM;
        s->v = v;
        s->cap = cap;
    }
    s->v[s->n++] = (tok_span_t){ start, end };
    return 0;
}
