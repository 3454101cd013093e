/*
 * sha256.h - SHA-256 (FIPS 180-4), for the prefix cache's block keys.
 *
 * Owns nothing: a context lives in the caller's storage.  Pure functions;
 * any thread.  Not constant-time with respect to message length (it need
 * not be: the keys it makes are compared, never kept secret).
 */
#ifndef LLAMAD_SHA256_H
#define LLAMAD_SHA256_H

#include <stddef.h>
#include <stdint.h>

#define SHA256_BYTES 32

typedef struct {
    uint32_t h[8];          /* the chaining state */
    uint64_t n_bytes;       /* message bytes hashed so far */
    uint8_t buf[64];        /* a partial block */
    uint32_t n_buf;         /* bytes in buf */
} sha256_t;

/* Start a new message. */
void sha256_init(sha256_t *s);
/* Append len bytes of message. */
void sha256_update(sha256_t *s, const void *data, size_t len);
/* Pad, finish and write the 32-byte digest; *s must be re-initialised before reuse. */
void sha256_final(sha256_t *s, uint8_t out[SHA256_BYTES]);
/* The digest of one buffer. */
void sha256(const void *data, size_t len, uint8_t out[SHA256_BYTES]);

#endif
