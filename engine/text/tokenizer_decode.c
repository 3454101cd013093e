/*
 * tokenizer_decode.c - the growable buffers, UTF-8 classification and
 * repair, token pieces, and the incremental decoder that never emits half
 * a character.  (The buffers live here, away from PCRE2, so that modules
 * that only build text, such as chat.c, link without the regex library.)
 */
#include "tokenizer_impl.h"

#include <stdlib.h>
#include <string.h>

#include "base/err.h"

/* ================================================================
 * Growable buffers
 * ================================================================ */

void tok_buf_init(tok_buf_t *b)
{
    b->ids = NULL;
    b->n = 0;
    b->cap = 0;
}

void tok_buf_close(tok_buf_t *b)
{
    free(b->ids);
    tok_buf_init(b);
}

int tok_buf_push(tok_buf_t *b, int32_t id)
{
    if (b->n == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 64;
        size_t bytes;
        if (cap < b->cap || __builtin_mul_overflow(cap, sizeof *b->ids, &bytes))
            return ERR_NOMEM;
        int32_t *p = realloc(b->ids, bytes);
        if (p == NULL)
            return ERR_NOMEM;
        b->ids = p;
        b->cap = cap;
    }
    b->ids[b->n++] = id;
    return 0;
}

void tok_text_init(tok_text_t *s)
{
    s->data = NULL;
    s->len = 0;
    s->cap = 0;
}

void tok_text_close(tok_text_t *s)
{
    free(s->data);
    tok_text_init(s);
}

int tok_text_append(tok_text_t *s, const void *p, size_t n)
{
    size_t need;
    if (__builtin_add_overflow(s->len, n, &need) || __builtin_add_overflow(need, 1, &need))
        return ERR_NOMEM;
    if (need > s->cap) {
        size_t cap = s->cap ? s->cap : 64;
        while (cap < need) {
            if (__builtin_mul_overflow(cap, 2, &cap))
                return ERR_NOMEM;
        }
        char *d = realloc(s->data, cap);
        if (d == NULL)
            return ERR_NOMEM;
        s->data = d;
        s->cap = cap;
    }
    if (n > 0)
        memcpy(s->data + s->len, p, n);
    s->len += n;
    s->data[s->len] = '\0';
    return 0;
}

/* ================================================================
 * UTF-8
 *
 * Well-formed sequences per the Unicode Standard, table 3-7: the second
 * byte's range depends on the first (E0: A0..BF, ED: 80..9F, F0: 90..BF,
 * F4: 80..8F), which excludes overlongs, surrogates and values past
 * U+10FFFF.  An ill-formed sequence is replaced one maximal subpart at a
 * time: the longest prefix of a well-formed sequence, or one byte.
 * ================================================================ */

size_t tok_utf8_step(const unsigned char *s, size_t n, uint32_t *cp, int *kind)
{
    unsigned b = s[0];
    if (b < 0x80) {
        *cp = b;
        *kind = TOK_UTF8_OK;
        return 1;
    }
    size_t need;
    unsigned lo = 0x80, hi = 0xBF;
    uint32_t c;
    if (b >= 0xC2 && b <= 0xDF) {
        need = 1;
        c = b & 0x1F;
    } else if (b >= 0xE0 && b <= 0xEF) {
        need = 2;
        c = b & 0x0F;
        if (b == 0xE0)
            lo = 0xA0;
        else if (b == 0xED)
            hi = 0x9F;
    } else if (b >= 0xF0 && b <= 0xF4) {
        need = 3;
        c = b & 0x07;
        if (b == 0xF0)
            lo = 0x90;
        else if (b == 0xF4)
            hi = 0x8F;
    } else {
        *kind = TOK_UTF8_BAD;
        return 1;
    }
    for (size_t i = 1; i <= need; i++) {
        if (i >= n) {
            *kind = TOK_UTF8_SHORT;
            return i;
        }
        unsigned x = s[i];
        if (x < lo || x > hi) {
            *kind = TOK_UTF8_BAD;
            return i;
        }
        lo = 0x80;
        hi = 0xBF;
        c = (c << 6) | (x & 0x3F);
    }
    *cp = c;
    *kind = TOK_UTF8_OK;
    return need + 1;
}

int tok_utf8_valid(const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        if (u[i] < 0x80) {
            i++;
            continue;
        }
        uint32_t cp;
        int kind;
        i += tok_utf8_step(u + i, n - i, &cp, &kind);
        if (kind != TOK_UTF8_OK)
            return 0;
    }
    return 1;
}

size_t tok_utf8_encode(uint32_t cp, char out[4])
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

static const char REPLACEMENT[3] = { '\xEF', '\xBF', '\xBD' };   /* U+FFFD */

/*
 * Append the valid characters of s[0..n) to out, U+FFFD for each
 * ill-formed subpart.  A valid prefix cut by the end is left unconsumed
 * (its length in *short_tail) unless `final`, when it is one U+FFFD.
 */
static int emit_repaired(const unsigned char *s, size_t n, int final, tok_text_t *out,
                         size_t *short_tail)
{
    size_t run = 0, i = 0;   /* s[run..i) is valid and not yet appended */
    *short_tail = 0;
    while (i < n) {
        if (s[i] < 0x80) {
            i++;
            continue;
        }
        uint32_t cp;
        int kind;
        size_t k = tok_utf8_step(s + i, n - i, &cp, &kind);
        if (kind == TOK_UTF8_OK) {
            i += k;
            continue;
        }
        if (tok_text_append(out, s + run, i - run) != 0)
            return ERR_NOMEM;
        if (kind == TOK_UTF8_SHORT && !final) {
            *short_tail = k;
            return 0;
        }
        if (tok_text_append(out, REPLACEMENT, sizeof REPLACEMENT) != 0)
            return ERR_NOMEM;
        i += k;
        run = i;
    }
    return tok_text_append(out, s + run, i - run);
}

int tok_utf8_repair(const char *s, size_t n, tok_text_t *out)
{
    size_t short_tail;
    return emit_repaired((const unsigned char *)s, n, 1, out, &short_tail);
}

/* ================================================================
 * Pieces and the decoder
 * ================================================================ */

const char *tok_piece(const tokenizer_t *t, int32_t id, size_t *len)
{
    if (id < 0 || (size_t)id >= t->n_vocab) {
        *len = 0;
        return NULL;
    }
    const tok_entry_t *e = &t->tok[id];
    *len = e->piece_len;
    return t->pieces + e->piece_off;
}

void tok_decoder_init(tok_decoder_t *d, const tokenizer_t *t, unsigned flags)
{
    d->t = t;
    d->flags = flags;
    d->strip_pending = (flags & TOK_DECODE_TEXT_START) && t->strip_space;
    d->n_tail = 0;
}

int tok_decoder_push(tok_decoder_t *d, int32_t id, tok_text_t *out)
{
    size_t len;
    const char *p = tok_piece(d->t, id, &len);
    if (p == NULL)
        return ERR_RANGE;
    int type = d->t->tok[id].type;
    if ((d->flags & TOK_DECODE_SKIP_SPECIAL) &&
        (type == TOK_TYPE_CONTROL || type == TOK_TYPE_UNKNOWN))
        return 0;
    if (d->strip_pending && len > 0) {
        d->strip_pending = 0;
        if (p[0] == ' ') {
            p++;
            len--;
        }
    }
    /* A piece is at most TOK_MAX_TOKEN_BYTES; the tail at most 3. */
    unsigned char buf[sizeof d->tail + TOK_MAX_TOKEN_BYTES];
    memcpy(buf, d->tail, d->n_tail);
    memcpy(buf + d->n_tail, p, len);
    size_t n = d->n_tail + len, short_tail;
    int rc = emit_repaired(buf, n, 0, out, &short_tail);
    if (rc != 0)
        return rc;
    memcpy(d->tail, buf + n - short_tail, short_tail);
    d->n_tail = short_tail;
    return 0;
}

int tok_decoder_flush(tok_decoder_t *d, tok_text_t *out)
{
    if (d->n_tail == 0)
        return 0;
    d->n_tail = 0;
    return tok_text_append(out, REPLACEMENT, sizeof REPLACEMENT);
}

void tok_decoder_close(tok_decoder_t *d)
{
    d->t = NULL;
    d->n_tail = 0;
}

int tok_decode(const tokenizer_t *t, const int32_t *ids, size_t n, unsigned flags,
               tok_text_t *out)
{
    tok_decoder_t d;
    tok_decoder_init(&d, t, flags);
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++)
        rc = tok_decoder_push(&d, ids[i], out);
    if (rc == 0)
        rc = tok_decoder_flush(&d, out);
    tok_decoder_close(&d);
    return rc;
}
