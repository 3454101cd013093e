/*
 * auth.h - API keys: the configured key, a key file (one key per line,
 * re-read on SIGHUP) or $CREDENTIALS_DIRECTORY/apikeys, and the check of
 * an `Authorization: Bearer <key>` header.  Keys are kept only as SHA-256
 * digests and are never logged.  Loop thread only.
 */
#ifndef LLAMAD_AUTH_H
#define LLAMAD_AUTH_H

#include <stddef.h>
#include <stdint.h>

#define AUTH_KEY_ID_BYTES 32

typedef struct auth auth_t;

/*
 * Collect the keys: `key` (may be NULL or empty) and the lines of
 * `key_file` (NULL or empty: $CREDENTIALS_DIRECTORY/apikeys when that is
 * set and the file exists).  Blank lines and lines starting with '#' are
 * skipped.  Configured authentication never turns into none: a key file
 * that cannot be read, is not a regular file, or holds no key is an error,
 * and so is any key (inline or in the file) that is not 1 to 1024 visible
 * ASCII characters once surrounding blanks are trimmed.  On error *out is
 * NULL and err names the option or the file and line.
 */
int auth_create(auth_t **out, const char *key, const char *key_file, char *err, size_t errlen);
void auth_destroy(auth_t *a);

/*
 * Re-read the key file (SIGHUP) under the same rules as auth_create.  On
 * error (including a file left with no key) the old keys stay and err says why.
 */
int auth_reload(auth_t *a, char *err, size_t errlen);

/* How many keys are configured (0: no authentication). */
size_t auth_count(const auth_t *a);
/* The key file in use, or NULL. */
const char *auth_file(const auth_t *a);

/*
 * Whether `header` (the Authorization value, may be NULL) carries one of
 * the keys.  The presented key's digest is compared with every configured
 * digest without an early exit, so the time does not depend on which key
 * matched or how much of it.  Always 1 when no key is configured.  When
 * key_id is not NULL it gets the matched key's SHA-256 digest (a stable,
 * secret-free name for the tenant), or zeros when no key is configured.
 */
int auth_check(const auth_t *a, const char *header, uint8_t key_id[AUTH_KEY_ID_BYTES]);

/*
 * Whether a request's Host header may be served when no API key is
 * configured (DNS rebinding: a web page whose name resolves to this host
 * makes the browser send its own name).  Accepted: no header (HTTP/1.0),
 * an IPv4 or bracketed IPv6 literal, "localhost", and the names of
 * `allowed` (comma-separated, case-insensitive; "*" accepts any), each
 * with or without ":port".
 */
int auth_host_allowed(const char *host, const char *allowed);

#endif
