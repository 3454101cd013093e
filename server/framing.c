/*
 * framing.c - how a request says where its body ends, checked strictly.
 */
#include "framing.h"

#include <microhttpd.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>

typedef struct {
    unsigned n_length, n_coding, n_host;
    const char *length, *coding;
} framing_t;

static enum MHD_Result count_framing(void *cls, enum MHD_ValueKind kind, const char *key,
                                     const char *value)
{
    framing_t *f = cls;
    (void)kind;
    if (strcasecmp(key, MHD_HTTP_HEADER_CONTENT_LENGTH) == 0) {
        f->n_length++;
        f->length = value;
    } else if (strcasecmp(key, MHD_HTTP_HEADER_TRANSFER_ENCODING) == 0) {
        f->n_coding++;
        f->coding = value;
    } else if (strcasecmp(key, MHD_HTTP_HEADER_HOST) == 0) {
        f->n_host++;
    }
    return MHD_YES;
}

/* Whether s is "chunked", case-insensitive, with optional blanks around it. */
static int is_chunked(const char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    if (strncasecmp(s, "chunked", 7) != 0)
        return 0;
    for (s += 7; *s == ' ' || *s == '\t'; s++)
        ;
    return *s == '\0';
}

const char *http_framing_check(struct MHD_Connection *conn, uint64_t *declared)
{
    framing_t f = { 0 };
    *declared = UINT64_MAX;
    MHD_get_connection_values(conn, MHD_HEADER_KIND, count_framing, &f);
    if (f.n_host > 1)
        return "more than one Host header";
    if (f.n_length > 1)
        return "more than one Content-Length header";
    if (f.n_coding > 1)
        return "more than one Transfer-Encoding header";
    if (f.n_length > 0 && f.n_coding > 0)
        return "both Content-Length and Transfer-Encoding";
    if (f.n_coding > 0 && !is_chunked(f.coding))
        return "a transfer coding other than chunked";
    if (f.n_length > 0) {
        const char *p = f.length;
        uint64_t n = 0;
        if (*p == '\0')
            return "an empty Content-Length";
        for (; *p != '\0'; p++) {
            if (*p < '0' || *p > '9')
                return "a Content-Length that is not a decimal number";
            /* past 64 bits: well framed, and too large for any limit (413) */
            n = n > (UINT64_MAX - 10) / 10 ? UINT64_MAX - 1 : n * 10 + (uint64_t)(*p - '0');
        }
        *declared = n;
    }
    return NULL;
}
