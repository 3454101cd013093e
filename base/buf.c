/* buf.c - the growable byte buffer (buf.h). */
#include "buf.h"

#include <stdlib.h>
#include <string.h>

#include "err.h"

void buf_init(buf_t *b)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}

void buf_close(buf_t *b)
{
    free(b->data);
    buf_init(b);
}

int buf_append(buf_t *b, const void *p, size_t n)
{
    size_t need;
    if (__builtin_add_overflow(b->len, n, &need) || __builtin_add_overflow(need, 1, &need))
        return ERR_NOMEM;
    if (need > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < need) {
            if (__builtin_mul_overflow(cap, 2, &cap))
                return ERR_NOMEM;
        }
        char *d = realloc(b->data, cap);
        if (d == NULL)
            return ERR_NOMEM;
        b->data = d;
        b->cap = cap;
    }
    if (n > 0)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return 0;
}
