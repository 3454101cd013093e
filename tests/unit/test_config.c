/* Unit tests for server/config.c: defaults, values, the INI file and its errors. */
#include "test.h"

#include "base/err.h"
#include "../../server/config.h"

static const char *write_tmp(const char *text)
{
    static char path[64];
    snprintf(path, sizeof path, "/tmp/llamad-test-config-XXXXXX");
    int fd = mkstemp(path);
    ASSERT(fd >= 0);
    ASSERT_EQ_INT(write(fd, text, strlen(text)), (long long)strlen(text));
    close(fd);
    return path;
}

TEST(defaults)
{
    config_t c;
    ASSERT_EQ_INT(config_init(&c), 0);
    ASSERT_EQ_STR(c.host, "127.0.0.1");
    ASSERT_EQ_INT(c.port, 8080);
    ASSERT_EQ_STR(c.backend, "auto");
    config_close(&c);
}

TEST(set_values_and_ranges)
{
    config_t c;
    char err[ERR_MSG_MAX];
    ASSERT_EQ_INT(config_init(&c), 0);
    ASSERT_EQ_INT(config_set(&c, "port", "9000", "--port", err, sizeof err), 0);
    ASSERT_EQ_INT(c.port, 9000);
    ASSERT_EQ_INT(config_set(&c, "port", "70000", "--port", err, sizeof err), ERR_RANGE);
    ASSERT(strstr(err, "--port") != NULL && strstr(err, "70000") != NULL);
    ASSERT_EQ_INT(config_set(&c, "port", "12x", "--port", err, sizeof err), ERR_INVALID);
    ASSERT_EQ_INT(config_set(&c, "port", "", "--port", err, sizeof err), ERR_INVALID);
    ASSERT_EQ_INT(config_set(&c, "backend", "tpu", "--backend", err, sizeof err), ERR_INVALID);
    ASSERT(strstr(err, "auto|cpu|cuda") != NULL);
    ASSERT_EQ_INT(config_set(&c, "backend", "cpu", "--backend", err, sizeof err), 0);
    ASSERT_EQ_STR(c.backend, "cpu");
    ASSERT_EQ_INT(config_set(&c, "no-such-key", "1", "--no-such-key", err, sizeof err), ERR_NOTFOUND);
    ASSERT_EQ_INT(c.port, 9000); /* a failed set changes nothing */
    config_close(&c);
}

/* gpu-weight-type: bf16 by default, fp16 or native on request, any other value refused naming the choices. */
TEST(gpu_weight_type_choices)
{
    config_t c;
    char err[ERR_MSG_MAX];
    ASSERT_EQ_INT(config_init(&c), 0);
    ASSERT_EQ_STR(c.gpu_weight_type, "bf16");
    ASSERT_EQ_INT(config_set(&c, "gpu-weight-type", "fp16", "--gpu-weight-type", err, sizeof err), 0);
    ASSERT_EQ_STR(c.gpu_weight_type, "fp16");
    ASSERT_EQ_INT(config_set(&c, "gpu-weight-type", "bf16", "--gpu-weight-type", err, sizeof err), 0);
    ASSERT_EQ_STR(c.gpu_weight_type, "bf16");
    ASSERT_EQ_INT(config_set(&c, "gpu-weight-type", "native", "--gpu-weight-type", err, sizeof err), 0);
    ASSERT_EQ_STR(c.gpu_weight_type, "native");
    ASSERT_EQ_INT(config_set(&c, "gpu-weight-type", "bf16", "--gpu-weight-type", err, sizeof err), 0);
    const char *bad[] = { "fp32", "FP16", "half", "", "fp16 ", "Native", "q4_0" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ASSERT_EQ_INT(config_set(&c, "gpu-weight-type", bad[i], "--gpu-weight-type", err, sizeof err), ERR_INVALID);
        ASSERT(strstr(err, "--gpu-weight-type") != NULL && strstr(err, "native|bf16|fp16") != NULL);
    }
    ASSERT_EQ_STR(c.gpu_weight_type, "bf16"); /* a failed set changes nothing */
    const char *p = write_tmp("[engine]\ngpu-weight-type = fp16\n");
    ASSERT_EQ_INT(config_load_file(&c, p, err, sizeof err), 0);
    ASSERT_EQ_STR(c.gpu_weight_type, "fp16");
    unlink(p);
    config_close(&c);
}

TEST(file_ok)
{
    config_t c;
    char err[ERR_MSG_MAX];
    ASSERT_EQ_INT(config_init(&c), 0);
    const char *p = write_tmp("# comment\n[server]\nport = 8123\nhost = ::1\n[log]\nlog-level = debug\n");
    ASSERT_EQ_INT(config_load_file(&c, p, err, sizeof err), 0);
    ASSERT_EQ_INT(c.port, 8123);
    ASSERT_EQ_STR(c.host, "::1");
    ASSERT_EQ_STR(c.log_level, "debug");
    unlink(p);
    config_close(&c);
}

TEST(file_errors_name_file_line_key)
{
    config_t c;
    char err[ERR_MSG_MAX], want[128];
    ASSERT_EQ_INT(config_init(&c), 0);

    const char *p = write_tmp("[server]\nport = 80\n\nbogus = 1\n");
    ASSERT_EQ_INT(config_load_file(&c, p, err, sizeof err), ERR_NOTFOUND);
    snprintf(want, sizeof want, "%s:4", p);
    ASSERT_MSG(strstr(err, want) && strstr(err, "bogus"), "message: %s", err);
    unlink(p);

    p = write_tmp("[server]\nport = eighty\n");
    ASSERT_EQ_INT(config_load_file(&c, p, err, sizeof err), ERR_INVALID);
    snprintf(want, sizeof want, "%s:2", p);
    ASSERT_MSG(strstr(err, want) && strstr(err, "port"), "message: %s", err);
    unlink(p);

    p = write_tmp("[log]\nport = 80\n");
    ASSERT_EQ_INT(config_load_file(&c, p, err, sizeof err), ERR_INVALID);
    ASSERT_MSG(strstr(err, "[server]") && strstr(err, "port"), "message: %s", err);
    unlink(p);

    p = write_tmp("[server\nport = 80\n");
    ASSERT(config_load_file(&c, p, err, sizeof err) != 0);
    snprintf(want, sizeof want, "%s:1", p);
    ASSERT_MSG(strstr(err, want) != NULL, "message: %s", err);
    unlink(p);

    ASSERT_EQ_INT(config_load_file(&c, "/nonexistent/llamad.conf", err, sizeof err), ERR_IO);
    ASSERT(strstr(err, "/nonexistent/llamad.conf") != NULL);
    config_close(&c);
}

/* Each of these used to be accepted in silence (issue 17, item 10). */
TEST(file_shapes_that_are_refused)
{
    config_t c;
    char err[ERR_MSG_MAX], want[128], dir[64];
    ASSERT_EQ_INT(config_init(&c), 0);

    snprintf(dir, sizeof dir, "/tmp/llamad-test-confdir-XXXXXX");
    ASSERT(mkdtemp(dir) != NULL);
    ASSERT_EQ_INT(config_load_file(&c, dir, err, sizeof err), ERR_INVALID);
    ASSERT_MSG(strstr(err, dir) && strstr(err, "not a regular file"), "message: %s", err);
    rmdir(dir);

    const char *p = write_tmp("[server]\nport = 8123\n\n[server]\nport = 9000\n");
    ASSERT_EQ_INT(config_load_file(&c, p, err, sizeof err), ERR_INVALID);
    snprintf(want, sizeof want, "%s:5", p);
    ASSERT_MSG(strstr(err, want) && strstr(err, "second time") && strstr(err, "line 2"),
               "message: %s", err);
    unlink(p);

    /* a NUL byte would cut the value short: "127.0.0.1\0.evil" */
    static const char nul[] = "[log]\nlog-level = info\n[server]\nhost = 127.0.0.1\0.5\n";
    char path[64];
    snprintf(path, sizeof path, "/tmp/llamad-test-conf-XXXXXX");
    int fd = mkstemp(path);
    ASSERT(fd >= 0);
    ASSERT_EQ_INT(write(fd, nul, sizeof nul - 1), (long long)(sizeof nul - 1));
    close(fd);
    ASSERT_EQ_INT(config_load_file(&c, path, err, sizeof err), ERR_FORMAT);
    snprintf(want, sizeof want, "%s:4", path);
    ASSERT_MSG(strstr(err, want) && strstr(err, "NUL"), "message: %s", err);
    unlink(path);

    /* a line longer than the parser's buffer would be read as two: refused */
    char longline[600];
    snprintf(longline, sizeof longline, "[log]\nlog-file = /tmp/%0500d\n", 0);
    p = write_tmp(longline);
    ASSERT_EQ_INT(config_load_file(&c, p, err, sizeof err), ERR_TOOLONG);
    snprintf(want, sizeof want, "%s:2", p);
    ASSERT_MSG(strstr(err, want) && strstr(err, "longer"), "message: %s", err);
    unlink(p);

    static const char *const hosts[] = { "localhost", "example.com", "127.0.0.1:80", "", "1.2.3" };
    for (size_t i = 0; i < sizeof hosts / sizeof hosts[0]; i++) {
        ASSERT_EQ_INT(config_set(&c, "host", hosts[i], "--host", err, sizeof err), ERR_INVALID);
        ASSERT_MSG(strstr(err, "numeric"), "message: %s", err);
    }
    static const char *const good[] = { "127.0.0.1", "0.0.0.0", "::", "::1", "fe80::1" };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
        ASSERT_MSG(config_set(&c, "host", good[i], "--host", err, sizeof err) == 0, "%s", err);
    config_close(&c);
}

/* The shipped conf/llamad.conf must load, and must document every key with its default. */
TEST(shipped_file_matches_defaults)
{
    config_t c, d;
    char err[ERR_MSG_MAX], path[4096];
    snprintf(path, sizeof path, "%s/conf/llamad.conf", test_srcdir());
    ASSERT_EQ_INT(config_init(&c), 0);
    ASSERT_EQ_INT(config_init(&d), 0);
    ASSERT_MSG(config_load_file(&c, path, err, sizeof err) == 0, "%s", err);

    char *a = NULL, *b = NULL;
    size_t al = 0, bl = 0;
    FILE *fa = open_memstream(&a, &al), *fb = open_memstream(&b, &bl);
    config_print(&c, fa);
    config_print(&d, fb);
    fclose(fa);
    fclose(fb);
    ASSERT_EQ_STR(a, b);

    /* every key appears, uncommented, in the shipped file */
    FILE *f = fopen(path, "r");
    ASSERT(f != NULL);
    char text[65536];
    size_t n = fread(text, 1, sizeof text - 1, f);
    text[n] = '\0';
    fclose(f);
    for (char *line = strtok(b, "\n"); line; line = strtok(NULL, "\n")) {
        if (line[0] == '[')
            continue;
        char key[128];
        ASSERT(sscanf(line, "%127s", key) == 1);
        char needle[160];
        snprintf(needle, sizeof needle, "\n%s =", key);
        ASSERT_MSG(strstr(text, needle) != NULL, "key %s is not in conf/llamad.conf", key);
    }
    free(a);
    free(b);
    config_close(&c);
    config_close(&d);
}

TEST_LIST(T(defaults), T(set_values_and_ranges), T(gpu_weight_type_choices), T(file_ok),
          T(file_errors_name_file_line_key), T(file_shapes_that_are_refused), T(shipped_file_matches_defaults))
