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
#include "base/utf8.h"

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

/* ================================================================
 * UTF-8 repair (the rules are base/utf8.h's)
 * ================================================================ */

static int text_sink_cb(void *ctx, const char *p, size_t n)
{
    return tok_text_append(ctx, p, n);
}

int tok_utf8_repair(const char *s, size_t n, tok_text_t *out)
{
    size_t rest;
    return utf8_repair(s, n, UTF8_FINAL, text_sink_cb, out, &rest);
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
    int rc = utf8_repair((const char *)buf, n, 0, text_sink_cb, out, &short_tail);
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
    return tok_text_append(out, UTF8_REPLACEMENT, 3);
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
