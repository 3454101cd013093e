/*
 * test_log.c - base/log: every message is one line of valid UTF-8 whatever
 * a client put into it (shared/THREATS.md: log injection).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "test.h"
#include "base/log.h"

/* Log `msg` at info into a fresh file and return what was written after the level. */
static char *logged(const char *msg)
{
    static char path[64], text[4096];
    snprintf(path, sizeof path, "/tmp/llamad-test-log-XXXXXX");
    int fd = mkstemp(path);
    ASSERT(fd >= 0);
    close(fd);
    ASSERT(log_open(path) == 0);
    log_info("%s", msg);
    ASSERT(log_open(NULL) == 0);
    FILE *f = fopen(path, "rb");
    ASSERT(f != NULL);
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    unlink(path);
    text[n] = '\0';
    char *p = strstr(text, " info  ");
    ASSERT(p != NULL);
    return p + 7;
}

TEST(controls_are_escaped)
{
    static const struct { const char *in, *out; } cases[] = {
        { "plain text", "plain text\n" },
        { "GET /a\nFORGED line", "GET /a\\x0aFORGED line\n" },
        { "cr\rlf\n", "cr\\x0dlf\\x0a\n" },
        { "\x1b[31mred", "\\x1b[31mred\n" },
        { "tab\tdel\x7f", "tab\\x09del\\x7f\n" },
        { "back\\slash", "back\\\\slash\n" },
        { "C1 csi \xc2\x9b!", "C1 csi \\u009b!\n" },
        { "bidi \xe2\x80\xae!", "bidi \\u202e!\n" },
        { "sep \xe2\x80\xa8!", "sep \\u2028!\n" },
        { "bad \xff\xfe utf-8 \xc3", "bad \\xff\\xfe utf-8 \\xc3\n" },
        { "overlong \xc0\xaf", "overlong \\xc0\\xaf\n" },
        { "surrogate \xed\xa0\x80", "surrogate \\xed\\xa0\\x80\n" },
        { "caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x98\x80", "caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x98\x80\n" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *got = logged(cases[i].in);
        ASSERT_MSG(strcmp(got, cases[i].out) == 0, "case %zu: got \"%s\", want \"%s\"", i, got,
                   cases[i].out);
    }
}

TEST(a_long_message_stays_one_line)
{
    static char msg[8192];
    for (size_t i = 0; i < sizeof msg - 1; i++)
        msg[i] = i % 3 == 0 ? '\n' : 'x';
    const char *got = logged(msg);
    size_t lines = 0;
    for (const char *p = got; *p != '\0'; p++)
        lines += *p == '\n';
    ASSERT_EQ_INT(lines, 1);
    ASSERT(got[strlen(got) - 1] == '\n');
    ASSERT(strstr(got, "\\x0") != NULL);   /* no escape cut in half before the newline */
    const char *last = strrchr(got, '\\');
    ASSERT(last != NULL && (strncmp(last, "\\x0a", 4) == 0));
}

TEST_LIST(T(controls_are_escaped), T(a_long_message_stays_one_line))
