/*
 * auth.c - API key storage and the constant-time comparison
 * (shared/THREATS.md C4: hash, then compare digests over all keys).
 */
#include "auth.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/err.h"
#include "base/sha256.h"
#include "strlist.h"

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

/*
 * One key, trimmed of surrounding blanks: 0 and [*k, *k + *len) when it is
 * usable, else an error naming where it came from.  A usable key is 1 to
 * AUTH_MAX_KEY_LEN visible ASCII characters (0x21-0x7e): what a client can
 * put after "Bearer " in a header and have arrive unchanged.  Anything else
 * could never match and would leave the operator believing a key is in force.
 */
static int check_key(const char **k, size_t *len, const char *where, char *err, size_t errlen)
{
    const char *p = *k;
    size_t n = *len;
    while (n > 0 && (*p == ' ' || *p == '\t')) {
        p++;
        n--;
    }
    while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\t' || p[n - 1] == '\r' || p[n - 1] == '\n'))
        n--;
    if (n == 0)
        return err_set(err, errlen, ERR_INVALID, "%s: the key is empty", where);
    if (n > AUTH_MAX_KEY_LEN)
        return err_set(err, errlen, ERR_TOOLONG, "%s: the key is longer than %d bytes", where,
                       AUTH_MAX_KEY_LEN);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c < 0x21 || c > 0x7e)
            return err_set(err, errlen, ERR_INVALID,
                           "%s: the key holds byte 0x%02x at offset %zu; keys are visible ASCII "
                           "characters without spaces", where, c, i);
    }
    *k = p;
    *len = n;
    return 0;
}

/*
 * Read the key file into *d / *n (appending).  The file must be a readable
 * regular file holding at least one key; every non-blank line that does not
 * start with '#' must be a usable key.  On error err names the file and line.
 */
static int load_file(const char *path, uint8_t (**d)[SHA256_BYTES], size_t *n, char *err,
                     size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return err_set(err, errlen, ERR_IO, "api-key-file: cannot open %s: %s", path,
                       strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        return err_set(err, errlen, ERR_INVALID, "api-key-file: %s is not a regular file", path);
    }
    char *line = NULL, where[512];
    size_t cap = 0;
    ssize_t got;
    int lineno = 0, rc = 0;
    size_t before = *n;
    while (rc == 0 && (got = getline(&line, &cap, f)) >= 0) {
        lineno++;
        size_t len = (size_t)got;
        snprintf(where, sizeof where, "api-key-file: %s:%d", path, lineno);
        if (memchr(line, '\0', len) != NULL) {
            /* "abc\0xyz" would otherwise be the key "abc": shorter than written */
            rc = err_set(err, errlen, ERR_INVALID, "%s: the line holds a NUL byte", where);
            break;
        }
        const char *k = line;
        while (*k == ' ' || *k == '\t' || *k == '\r' || *k == '\n')
            k++;
        if (*k == '\0' || *k == '#')
            continue;
        size_t klen = len - (size_t)(k - line);
        if ((rc = check_key(&k, &klen, where, err, errlen)) != 0)
            break;
        if (add_digest(d, n, k, klen) != 0)
            rc = err_set(err, errlen, ERR_FULL, "api-key-file: %s: more than %d keys, or out of "
                         "memory", path, AUTH_MAX_KEYS);
    }
    if (rc == 0 && ferror(f))
        rc = err_set(err, errlen, ERR_IO, "api-key-file: cannot read %s", path);
    if (line != NULL) {
        explicit_bzero(line, cap);
        free(line);
    }
    fclose(f);
    if (rc == 0 && *n == before)
        rc = err_set(err, errlen, ERR_INVALID, "api-key-file: %s holds no key (only blank lines "
                     "and comments); a configured key file must hold at least one", path);
    return rc;
}

/* The full digest list: the inline key, then the file's keys. */
static int load_keys(const auth_t *a, uint8_t (**out)[SHA256_BYTES], size_t *n_out, char *err,
                     size_t errlen)
{
    uint8_t (*d)[SHA256_BYTES] = NULL;
    size_t n = 0;
    if (a->has_inline) {
        if (add_digest(&d, &n, "", 0) != 0)
            return err_set(err, errlen, ERR_NOMEM, "out of memory");
        memcpy(d[0], a->inline_digest, SHA256_BYTES);
    }
    if (a->file != NULL) {
        int rc = load_file(a->file, &d, &n, err, errlen);
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
    int rc = 0;
    if (key != NULL && *key != '\0') {
        const char *k = key;
        size_t len = strlen(key);
        if ((rc = check_key(&k, &len, "api-key", err, errlen)) != 0)
            goto fail;
        a->has_inline = 1;
        sha256(k, len, a->inline_digest);
    }
    char path[4096] = "";
    const char *cred = getenv("CREDENTIALS_DIRECTORY");
    if (key_file != NULL && *key_file != '\0') {
        a->file = strdup(key_file);
    } else if (cred != NULL && *cred != '\0') {
        snprintf(path, sizeof path, "%s/apikeys", cred);
        if (access(path, F_OK) != 0)
            path[0] = '\0';
        else
            a->file = strdup(path);
    }
    if (a->file == NULL && ((key_file != NULL && *key_file != '\0') || path[0] != '\0')) {
        rc = err_set(err, errlen, ERR_NOMEM, "out of memory");
        goto fail;
    }
    if ((rc = load_keys(a, &a->digests, &a->n, err, errlen)) != 0)
        goto fail;
    *out = a;
    return 0;
fail:
    auth_destroy(a);
    return rc;
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
    int rc = load_keys(a, &d, &n, err, errlen);
    if (rc != 0)
        return rc;   /* the old keys stay: configured authentication never becomes none */
    free(a->digests);
    a->digests = d;
    a->n = n;
    return 0;
}

size_t auth_count(const auth_t *a) { return a->n; }
const char *auth_file(const auth_t *a) { return a->file; }

int auth_check(const auth_t *a, const char *header, uint8_t key_id[AUTH_KEY_ID_BYTES])
{
    if (key_id != NULL)
        memset(key_id, 0, AUTH_KEY_ID_BYTES);
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
    if (match && key_id != NULL)
        memcpy(key_id, digest, AUTH_KEY_ID_BYTES);   /* equal to the matched key's digest */
    return (int)match;
}

/* Whether host[0..n) is an IPv4 literal or a bracketed IPv6 literal. */
static int is_ip_literal(const char *host, size_t n)
{
    char buf[64];
    unsigned char addr[16];
    if (n >= 2 && host[0] == '[' && host[n - 1] == ']') {
        if (n - 2 >= sizeof buf)
            return 0;
        memcpy(buf, host + 1, n - 2);
        buf[n - 2] = '\0';
        return inet_pton(AF_INET6, buf, addr) == 1;
    }
    if (n >= sizeof buf)
        return 0;
    memcpy(buf, host, n);
    buf[n] = '\0';
    return inet_pton(AF_INET, buf, addr) == 1;
}

int auth_host_allowed(const char *host, const char *allowed)
{
    if (host == NULL)
        return 1;
    size_t n = strlen(host);
    /* drop ":port" (after the bracket for IPv6) */
    const char *colon = host[0] == '[' ? strchr(host, ']') : host;
    colon = colon != NULL ? strrchr(colon, ':') : NULL;
    if (colon != NULL) {
        if (colon[1] == '\0')
            return 0;
        for (const char *p = colon + 1; *p != '\0'; p++)
            if (*p < '0' || *p > '9')
                return 0;
        n = (size_t)(colon - host);
    }
    if (n > 0 && host[n - 1] == '.')   /* "localhost." is "localhost" */
        n--;
    if (n == 0)
        return 0;
    if (is_ip_literal(host, n) || (n == 9 && strncasecmp(host, "localhost", 9) == 0))
        return 1;
    return strlist_has(allowed, "*", 1, 0) || strlist_has(allowed, host, n, 1);
}
