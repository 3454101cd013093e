/*
 * err.h - the one table of error codes every llamad module returns.
 *
 * Functions return 0 on success or one of the negative ERR_* codes below;
 * results come back through out-pointers.  Functions that read outside
 * input (model files, requests, config) also take a caller-supplied
 * buffer of ERR_MSG_MAX bytes and fill it with a message naming the file
 * or field and the bad value.  Any thread may call these helpers.
 */
#ifndef LLAMAD_ERR_H
#define LLAMAD_ERR_H

#include <stddef.h>

#define ERR_MSG_MAX 512

/* X(name, value, short description) */
#define ERR_MAP(X)                                                     \
    X(ERR_NOMEM,       -1,  "out of memory")                           \
    X(ERR_IO,          -2,  "input/output error")                      \
    X(ERR_FORMAT,      -3,  "malformed input")                         \
    X(ERR_UNSUPPORTED, -4,  "not supported")                           \
    X(ERR_INVALID,     -5,  "invalid argument")                        \
    X(ERR_RANGE,       -6,  "value out of range")                      \
    X(ERR_NOTFOUND,    -7,  "not found")                               \
    X(ERR_FULL,        -8,  "capacity exhausted")                      \
    X(ERR_TOOLONG,     -9,  "input too long")                          \
    X(ERR_CANCELLED,   -10, "cancelled")                               \
    X(ERR_BACKEND,     -11, "backend failure")                         \
    X(ERR_STATE,       -12, "wrong state")

enum {
#define ERR_ENUM(name, val, desc) name = (val),
    ERR_MAP(ERR_ENUM)
#undef ERR_ENUM
};

/* Short description of an error code; never NULL. */
const char *err_str(int code);

/*
 * Format a message into buf (ERR_MSG_MAX bytes or `len` if smaller) and
 * return `code`, so that a failing path reads
 *     return err_set(err, errlen, ERR_FORMAT, "%s: bad tensor count %llu", ...);
 * buf may be NULL, in which case only the code is returned.
 */
int err_set(char *buf, size_t len, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/*
 * A name from a file or a client made safe to put in a message: bytes
 * outside printable ASCII become '?', and more than 64 bytes are cut with
 * "...".  p[0..len) need not be NUL-terminated; NULL shows as "(null)".
 * Returns buf (cap bytes; 68 hold any result).
 */
const char *err_shown(char *buf, size_t cap, const char *p, size_t len);
/* The same for a NUL-terminated string. */
const char *err_show(char *buf, size_t cap, const char *s);

#endif
