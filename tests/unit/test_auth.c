/* Unit tests for server/auth.c: inline key, key file, credentials directory, reload, header forms. */
#include "test.h"

#define AUTH_TEST_LONG 1024   /* AUTH_MAX_KEY_LEN in auth.c */

#include "base/err.h"
#include "../../server/auth.h"

static const char *write_tmp(const char *text)
{
    static char path[64];
    snprintf(path, sizeof path, "/tmp/llamad-test-auth-XXXXXX");
    int fd = mkstemp(path);
    ASSERT(fd >= 0);
    ASSERT_EQ_INT(write(fd, text, strlen(text)), (long long)strlen(text));
    close(fd);
    return path;
}

TEST(no_keys_means_open)
{
    auth_t *a;
    char err[ERR_MSG_MAX];
    unsetenv("CREDENTIALS_DIRECTORY");
    ASSERT_EQ_INT(auth_create(&a, "", NULL, err, sizeof err), 0);
    ASSERT_EQ_INT(auth_count(a), 0);
    ASSERT_EQ_INT(auth_check(a, NULL, NULL), 1);
    ASSERT_EQ_INT(auth_check(a, "Bearer anything", NULL), 1);
    auth_destroy(a);
}

TEST(inline_key)
{
    auth_t *a;
    char err[ERR_MSG_MAX];
    unsetenv("CREDENTIALS_DIRECTORY");
    ASSERT_EQ_INT(auth_create(&a, "s3cret", NULL, err, sizeof err), 0);
    ASSERT_EQ_INT(auth_count(a), 1);
    ASSERT_EQ_INT(auth_check(a, "Bearer s3cret", NULL), 1);
    ASSERT_EQ_INT(auth_check(a, "bearer s3cret", NULL), 1);   /* the scheme is case-insensitive */
    ASSERT_EQ_INT(auth_check(a, "Bearer s3cre", NULL), 0);    /* a prefix */
    ASSERT_EQ_INT(auth_check(a, "Bearer s3cretX", NULL), 0);  /* an extension */
    ASSERT_EQ_INT(auth_check(a, "Basic s3cret", NULL), 0);
    ASSERT_EQ_INT(auth_check(a, "s3cret", NULL), 0);
    ASSERT_EQ_INT(auth_check(a, "Bearer ", NULL), 0);
    ASSERT_EQ_INT(auth_check(a, "", NULL), 0);
    ASSERT_EQ_INT(auth_check(a, NULL, NULL), 0);
    auth_destroy(a);
}

TEST(key_file_and_reload)
{
    auth_t *a;
    char err[ERR_MSG_MAX];
    unsetenv("CREDENTIALS_DIRECTORY");
    const char *p = write_tmp("# keys\nalpha\n\n  beta  \r\n");
    char path[64];
    snprintf(path, sizeof path, "%s", p);
    ASSERT_EQ_INT(auth_create(&a, "inline", path, err, sizeof err), 0);
    ASSERT_EQ_INT(auth_count(a), 3);
    ASSERT_EQ_INT(auth_check(a, "Bearer alpha", NULL), 1);
    ASSERT_EQ_INT(auth_check(a, "Bearer beta", NULL), 1);
    ASSERT_EQ_INT(auth_check(a, "Bearer inline", NULL), 1);
    ASSERT_EQ_INT(auth_check(a, "Bearer # keys", NULL), 0);
    FILE *f = fopen(path, "w");
    ASSERT(f != NULL);
    fputs("gamma\n", f);
    fclose(f);
    ASSERT_EQ_INT(auth_reload(a, err, sizeof err), 0);
    ASSERT_EQ_INT(auth_check(a, "Bearer alpha", NULL), 0);
    ASSERT_EQ_INT(auth_check(a, "Bearer gamma", NULL), 1);
    ASSERT_EQ_INT(auth_check(a, "Bearer inline", NULL), 1);   /* the inline key stays */
    unlink(path);
    ASSERT(auth_reload(a, err, sizeof err) != 0);        /* a vanished file keeps the old keys */
    ASSERT(strstr(err, path) != NULL);
    ASSERT_EQ_INT(auth_check(a, "Bearer gamma", NULL), 1);
    auth_destroy(a);
}

TEST(missing_file_is_an_error)
{
    auth_t *a;
    char err[ERR_MSG_MAX];
    ASSERT_EQ_INT(auth_create(&a, NULL, "/nonexistent/keys", err, sizeof err), ERR_IO);
    ASSERT(a == NULL);
    ASSERT(strstr(err, "/nonexistent/keys") != NULL);
}

/* Configured authentication never turns into none (issue: an emptied key file reloaded with SIGHUP
 * used to remove every key; a directory or an empty file used to start with no authentication). */
TEST(key_file_must_hold_keys)
{
    auth_t *a;
    char err[ERR_MSG_MAX], path[64], dir[64];
    unsetenv("CREDENTIALS_DIRECTORY");
    static const char *const empty[] = { "", "\n\n", "# only a comment\n", "   \n\t\n# x\n" };
    for (size_t i = 0; i < sizeof empty / sizeof empty[0]; i++) {
        snprintf(path, sizeof path, "%s", write_tmp(empty[i]));
        err[0] = '\0';
        ASSERT_EQ_INT(auth_create(&a, "inline", path, err, sizeof err), ERR_INVALID);
        ASSERT(a == NULL);
        ASSERT_MSG(strstr(err, path) != NULL && strstr(err, "no key") != NULL, "%s", err);
        unlink(path);
    }
    snprintf(dir, sizeof dir, "/tmp/llamad-test-keydir-XXXXXX");
    ASSERT(mkdtemp(dir) != NULL);
    ASSERT_EQ_INT(auth_create(&a, NULL, dir, err, sizeof err), ERR_INVALID);
    ASSERT(a == NULL);
    ASSERT_MSG(strstr(err, dir) != NULL && strstr(err, "regular file") != NULL, "%s", err);
    rmdir(dir);
}

TEST(malformed_keys_are_refused_with_the_line)
{
    auth_t *a;
    char err[ERR_MSG_MAX], path[64], want[96];
    unsetenv("CREDENTIALS_DIRECTORY");
    static const char *const bad[] = { "good\nab cd\n", "good\n# c\nkey\x01x\n", "good\n\nk\xc3\xa9y\n" };
    static const int line[] = { 2, 3, 3 };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(path, sizeof path, "%s", write_tmp(bad[i]));
        ASSERT_EQ_INT(auth_create(&a, NULL, path, err, sizeof err), ERR_INVALID);
        snprintf(want, sizeof want, "%s:%d", path, line[i]);
        ASSERT_MSG(strstr(err, want) != NULL, "want %s in: %s", want, err);
        unlink(path);
    }
    /* a NUL byte would cut the key short: "abc\0xyz" must not become "abc" */
    static const char nul[] = "good\nabc\0xyz\n";
    snprintf(path, sizeof path, "/tmp/llamad-test-auth-XXXXXX");
    int fd = mkstemp(path);
    ASSERT(fd >= 0);
    ASSERT_EQ_INT(write(fd, nul, sizeof nul - 1), (long long)(sizeof nul - 1));
    close(fd);
    ASSERT_EQ_INT(auth_create(&a, NULL, path, err, sizeof err), ERR_INVALID);
    snprintf(want, sizeof want, "%s:2", path);
    ASSERT_MSG(strstr(err, want) != NULL && strstr(err, "NUL") != NULL, "%s", err);
    unlink(path);
    /* a key longer than the limit, and one just at it */
    static char longkey[AUTH_TEST_LONG + 2];
    memset(longkey, 'k', sizeof longkey - 1);
    longkey[sizeof longkey - 1] = '\0';
    ASSERT_EQ_INT(auth_create(&a, longkey, NULL, err, sizeof err), ERR_TOOLONG);
    longkey[sizeof longkey - 2] = '\0';
    ASSERT_EQ_INT(auth_create(&a, longkey, NULL, err, sizeof err), 0);
    auth_destroy(a);
    /* inline keys: trimmed, or refused; never kept in a form no header can match */
    ASSERT_EQ_INT(auth_create(&a, "abc ", NULL, err, sizeof err), 0);
    ASSERT_EQ_INT(auth_check(a, "Bearer abc", NULL), 1);
    auth_destroy(a);
    ASSERT_EQ_INT(auth_create(&a, "\tabc", NULL, err, sizeof err), 0);
    ASSERT_EQ_INT(auth_check(a, "Bearer abc", NULL), 1);
    auth_destroy(a);
    ASSERT_EQ_INT(auth_create(&a, "a b", NULL, err, sizeof err), ERR_INVALID);
    ASSERT_MSG(strstr(err, "api-key") != NULL, "%s", err);
    ASSERT_EQ_INT(auth_create(&a, "   ", NULL, err, sizeof err), ERR_INVALID);
    ASSERT(a == NULL);
}

TEST(reload_to_no_key_keeps_the_old_keys)
{
    auth_t *a;
    char err[ERR_MSG_MAX], path[64];
    unsetenv("CREDENTIALS_DIRECTORY");
    snprintf(path, sizeof path, "%s", write_tmp("alpha\n"));
    ASSERT_EQ_INT(auth_create(&a, NULL, path, err, sizeof err), 0);
    static const char *const after[] = { "", "# all keys removed\n", "beta gamma\n" };
    for (size_t i = 0; i < sizeof after / sizeof after[0]; i++) {
        FILE *f = fopen(path, "w");
        ASSERT(f != NULL);
        fputs(after[i], f);
        fclose(f);
        ASSERT(auth_reload(a, err, sizeof err) != 0);
        ASSERT_MSG(strstr(err, path) != NULL, "%s", err);
        ASSERT_EQ_INT(auth_count(a), 1);
        ASSERT_EQ_INT(auth_check(a, NULL, NULL), 0);   /* still closed */
        ASSERT_EQ_INT(auth_check(a, "Bearer alpha", NULL), 1);
    }
    auth_destroy(a);
    unlink(path);
}

TEST(credentials_directory)
{
    auth_t *a;
    char err[ERR_MSG_MAX], dir[64], path[128];
    snprintf(dir, sizeof dir, "/tmp/llamad-test-cred-XXXXXX");
    ASSERT(mkdtemp(dir) != NULL);
    snprintf(path, sizeof path, "%s/apikeys", dir);
    FILE *f = fopen(path, "w");
    ASSERT(f != NULL);
    fputs("from-systemd\n", f);
    fclose(f);
    setenv("CREDENTIALS_DIRECTORY", dir, 1);
    ASSERT_EQ_INT(auth_create(&a, NULL, NULL, err, sizeof err), 0);
    ASSERT_EQ_INT(auth_count(a), 1);
    ASSERT_EQ_INT(auth_check(a, "Bearer from-systemd", NULL), 1);
    auth_destroy(a);
    unlink(path);
    rmdir(dir);
}

/* The key id is the matched key's SHA-256 digest (checked against an independent sha256sum). */
TEST(key_id_names_the_key)
{
    auth_t *a;
    char err[ERR_MSG_MAX];
    ASSERT_EQ_INT(auth_create(&a, "abc", NULL, err, sizeof err), 0);
    uint8_t id[AUTH_KEY_ID_BYTES], zero[AUTH_KEY_ID_BYTES] = { 0 };
    /* SHA-256("abc"), FIPS 180-2 appendix B.1 */
    static const uint8_t want[32] = {
        0xba, 0x78, 0x16, 0xbf, 0x8f, 0x01, 0xcf, 0xea, 0x41, 0x41, 0x40, 0xde, 0x5d, 0xae, 0x22, 0x23,
        0xb0, 0x03, 0x61, 0xa3, 0x96, 0x17, 0x7a, 0x9c, 0xb4, 0x10, 0xff, 0x61, 0xf2, 0x00, 0x15, 0xad };
    ASSERT_EQ_INT(auth_check(a, "Bearer abc", id), 1);
    ASSERT(memcmp(id, want, sizeof want) == 0);
    memset(id, 0xff, sizeof id);
    ASSERT_EQ_INT(auth_check(a, "Bearer abd", id), 0);
    ASSERT(memcmp(id, zero, sizeof zero) == 0);
    auth_destroy(a);
    ASSERT_EQ_INT(auth_create(&a, NULL, NULL, err, sizeof err), 0);
    memset(id, 0xff, sizeof id);
    ASSERT_EQ_INT(auth_check(a, NULL, id), 1);
    ASSERT(memcmp(id, zero, sizeof zero) == 0);
    auth_destroy(a);
}

TEST(host_allow_list)
{
    static const char *const ok[] = {
        "localhost", "LocalHost:8080", "localhost.", "127.0.0.1", "127.0.0.1:80", "10.1.2.3:8080",
        "[::1]", "[::1]:8080", "[fe80::1]:9", "api.example.com", "API.example.com:443", "node7",
    };
    static const char *const bad[] = {
        "", ":8080", "evil.example", "localhost.evil.example", "127.0.0.1.nip.io", "[::1", "::1x",
        "localhost:80x", "localhost:", "example.com", "api.example.com.evil", "999.1.1.1",
        "node", "node77",
    };
    const char *allowed = " api.example.com , node7,";
    ASSERT(auth_host_allowed(NULL, NULL));   /* HTTP/1.0 without Host */
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
        ASSERT_MSG(auth_host_allowed(ok[i], allowed), "%s refused", ok[i]);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        ASSERT_MSG(!auth_host_allowed(bad[i], allowed), "%s accepted", bad[i]);
    ASSERT(!auth_host_allowed("api.example.com", NULL));
    ASSERT(auth_host_allowed("anything.at.all:1", "x, *"));
}

TEST_LIST(T(no_keys_means_open), T(inline_key), T(key_file_and_reload), T(missing_file_is_an_error),
          T(key_file_must_hold_keys),
          T(malformed_keys_are_refused_with_the_line), T(reload_to_no_key_keeps_the_old_keys),
          T(credentials_directory), T(key_id_names_the_key), T(host_allow_list))
