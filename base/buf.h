/*
 * buf.h - a growable byte buffer (caller-owned storage: init, append,
 * close).  The tokenizer's text (tok_text_t) and the server's response
 * and stream buffers are this one type.  Any thread, one owner at a time.
 */
#ifndef LLAMAD_BUF_H
#define LLAMAD_BUF_H

#include <stddef.h>

/* Bytes; data is kept NUL-terminated (data[len] == 0) once allocated. */
typedef struct {
    char *data;
    size_t len;
    size_t cap;
} buf_t;

/* An empty buffer that owns nothing. */
void buf_init(buf_t *b);
/* Free the bytes; *b is empty again. */
void buf_close(buf_t *b);
/* Append n bytes; 0 or ERR_NOMEM (the buffer is unchanged then). */
int buf_append(buf_t *b, const void *p, size_t n);

#endif
