/*
 * auth.c - API key storage and the constant-time comparison
 * (shared/THREATS.md C4: hash, then compare digests over all keys).
 */
#include "auth.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "../engine/err.h"
#include "../engine/sha256.h"

#define AUTH_MAX_KEYS 4096
#define AUTH_MAX_KEY_LEN 1024

struct auth {
    uint8_t (*digests)[SHA256_BYTES];
    size_t n;
    int has_inline;              /* digests[0] is the inline key */
    uint8_t inline_digest[SHA256_BYTES];
    char *file;
};

static int add_digest(uint8_t (**d)[SHA256_BYTES], size_t *n, const char *key, size_t len)
{
    if (*n >= AUTH_MAX_KEYS)
        return ERR_FULL;
    uint8_t (*p)[SHA256_BYTES] = realloc(*d, (*n + 1) * sizeof **d);
    if (p == NULL)
        return ERR_NOMEM;
    *d = p;
    sha256(key, len, p[*n]);
    (*n)++;
    return 0;
}

/* Read the file into a fresh digest list. */
static int load_file(auth_t *a, uint8_t (**out)[SHA256_BYTES], size_t *n_out, char *err,
                     size_t errlen)
{
    uint8_t (*d)[SHA256_BYTES] = NULL;
    size_t n = 0;
    if (a->has_inline) {
        int rc = add_digest(&d, &n, "", 0);
        if (rc != 0)
            return err_set(err, errlen, rc, "out of memory");
        memcpy(d[0], a->inline_digest, SHA256_BYTES);
    }
    if (a->file != NULL) {
        FILE *f = fopen(a->file, "r");
        if (f == NULL) {
            free(d);
            return err_set(err, errlen, ERR_IO, "api-key-file: cannot open %s: %s", a->file,
                           strerror(errno));
        }
        char line[AUTH_MAX_KEY_LEN + 2];
        int lineno = 0, rc = 0;
        while (rc == 0 && fgets(line, sizeof line, f) != NULL) {
            lineno++;
            size_t len = strlen(line);
            if (len == sizeof line - 1 && line[len - 1] != '\n') {
                rc = err_set(err, errlen, ERR_TOOLONG, "api-key-file: %s:%d: key longer than %d bytes",
                             a->file, lineno, AUTH_MAX_KEY_LEN);
                break;
            }
            while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r' ||
                               line[len - 1] == ' ' || line[len - 1] == '\t'))
                line[--len] = '\0';
            const char *k = line;
            while (*k == ' ' || *k == '\t')
                k++;
            if (*k == '\0' || *k == '#')
                continue;
            if (add_digest(&d, &n, k, strlen(k)) != 0)
                rc = err_set(err, errlen, ERR_NOMEM, "api-key-file: %s: too many keys", a->file);
        }
        explicit_bzero(line, sizeof line);
        fclose(f);
        if (rc != 0) {
            free(d);
            return rc;
        }
    }
    *out = d;
    *n_out = n;
    return 0;
}

int auth_create(auth_t **out, const char *key, const char *key_file, char *err, size_t errlen)
{
    *out = NULL;
    auth_t *a = calloc(1, sizeof *a);
    if (a == NULL)
        return err_set(err, errlen, ERR_NOMEM, "out of memory");
    if (key != NULL && *key != '\0') {
        a->has_inline = 1;
        sha256(key, strlen(key), a->inline_digest);
    }
    char path[4096];
    const char *cred = getenv("CREDENTIALS_DIRECTORY");
    if (key_file != NULL && *key_file != '\0') {
        a->file = strdup(key_file);
    } else if (cred != NULL && *cred != '\0') {
        snprintf(path, sizeof path, "%s/apikeys", cred);
        if (access(path, R_OK) == 0)
            a->file = strdup(path);
    }
    int rc = load_file(a, &a->digests, &a->n, err, errlen);
    if (rc != 0) {
        auth_destroy(a);
        return rc;
    }
    *out = a;
    return 0;
}

void auth_destroy(auth_t *a)
{
    if (a == NULL)
        return;
    free(a->digests);
    free(a->file);
    free(a);
}

int auth_reload(auth_t *a, char *err, size_t errlen)
{
    if (a->file == NULL)
        return 0;
    uint8_t (*d)[SHA256_BYTES];
    size_t n;
    int rc = load_file(a, &d, &n, err, errlen);
    if (rc != 0)
        return rc;
    free(a->digests);
    a->digests = d;
    a->n = n;
    return 0;
}

size_t auth_count(const auth_t *a) { return a->n; }
const char *auth_file(const auth_t *a) { return a->file; }

int auth_check(const auth_t *a, const char *header)
{
    if (a->n == 0)
        return 1;
    if (header == NULL || strncasecmp(header, "Bearer ", 7) != 0)
        return 0;
    const char *key = header + 7;
    while (*key == ' ')
        key++;
    size_t len = strlen(key);
    while (len > 0 && key[len - 1] == ' ')
        len--;
    if (len == 0)
        return 0;
    uint8_t digest[SHA256_BYTES];
    sha256(key, len, digest);
    unsigned match = 0;
    for (size_t i = 0; i < a->n; i++) {
        unsigned diff = 0;
        for (size_t j = 0; j < SHA256_BYTES; j++)
            diff |= (unsigned)(digest[j] ^ a->digests[i][j]);
        match |= (unsigned)(diff == 0);
    }
    return (int)match;
}
