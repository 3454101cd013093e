/* Unit tests for server/auth.c: inline key, key file, credentials directory, reload, header forms. */
#include "test.h"

#include "../../engine/err.h"
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
    ASSERT_EQ_INT(auth_check(a, NULL), 1);
    ASSERT_EQ_INT(auth_check(a, "Bearer anything"), 1);
    auth_destroy(a);
}

TEST(inline_key)
{
    auth_t *a;
    char err[ERR_MSG_MAX];
    unsetenv("CREDENTIALS_DIRECTORY");
    ASSERT_EQ_INT(auth_create(&a, "s3cret", NULL, err, sizeof err), 0);
    ASSERT_EQ_INT(auth_count(a), 1);
    ASSERT_EQ_INT(auth_check(a, "Bearer s3cret"), 1);
    ASSERT_EQ_INT(auth_check(a, "bearer s3cret"), 1);   /* the scheme is case-insensitive */
    ASSERT_EQ_INT(auth_check(a, "Bearer s3cre"), 0);    /* a prefix */
    ASSERT_EQ_INT(auth_check(a, "Bearer s3cretX"), 0);  /* an extension */
    ASSERT_EQ_INT(auth_check(a, "Basic s3cret"), 0);
    ASSERT_EQ_INT(auth_check(a, "s3cret"), 0);
    ASSERT_EQ_INT(auth_check(a, "Bearer "), 0);
    ASSERT_EQ_INT(auth_check(a, ""), 0);
    ASSERT_EQ_INT(auth_check(a, NULL), 0);
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
    ASSERT_EQ_INT(auth_check(a, "Bearer alpha"), 1);
    ASSERT_EQ_INT(auth_check(a, "Bearer beta"), 1);
    ASSERT_EQ_INT(auth_check(a, "Bearer inline"), 1);
    ASSERT_EQ_INT(auth_check(a, "Bearer # keys"), 0);
    FILE *f = fopen(path, "w");
    ASSERT(f != NULL);
    fputs("gamma\n", f);
    fclose(f);
    ASSERT_EQ_INT(auth_reload(a, err, sizeof err), 0);
    ASSERT_EQ_INT(auth_check(a, "Bearer alpha"), 0);
    ASSERT_EQ_INT(auth_check(a, "Bearer gamma"), 1);
    ASSERT_EQ_INT(auth_check(a, "Bearer inline"), 1);   /* the inline key stays */
    unlink(path);
    ASSERT(auth_reload(a, err, sizeof err) != 0);        /* a vanished file keeps the old keys */
    ASSERT(strstr(err, path) != NULL);
    ASSERT_EQ_INT(auth_check(a, "Bearer gamma"), 1);
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
    ASSERT_EQ_INT(auth_check(a, "Bearer from-systemd"), 1);
    auth_destroy(a);
    unlink(path);
    rmdir(dir);
}

TEST_LIST(T(no_keys_means_open), T(inline_key), T(key_file_and_reload), T(missing_file_is_an_error),
          T(credentials_directory))
