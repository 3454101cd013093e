/*
 * test.h - llamad's small unit-test runner.
 *
 * A test file defines tests with TEST(name) and lists them once:
 *
 *     TEST(parses_header) { ASSERT_EQ_INT(f(), 3); }
 *     TEST_LIST(T(parses_header), T(other));
 *
 * Each test runs in a forked child so that a crash fails one test, not
 * the file; outside the sanitizer builds (whose own reports are better)
 * a fatal signal in the child first prints its backtrace to stderr, the
 * frames as PROGRAM(+OFFSET), which `addr2line -f -e PROGRAM OFFSET`
 * turns into lines of an unstripped build.  The runner prints one line per test, "PASS: name",
 * "FAIL: name" or "SKIP: name (why)", which tests/run-suite.sh counts.
 * A failed assertion prints the expression and both values.  Arguments
 * on the command line select tests by name.
 *
 * Tests find their data through test_srcdir() (the source tree, for
 * VPATH builds), the default model through test_model_path() (NULL
 * when it has not been fetched: such tests call TEST_SKIP), and the
 * generated vocabulary-only GGUF files through test_tokenizer_gguf().
 */
#ifndef LLAMAD_TEST_H
#define LLAMAD_TEST_H

#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

typedef void (*test_fn)(void);
typedef struct { const char *name; test_fn fn; } test_entry_t;

#define TEST(name) static void test_##name(void)
#define T(name) { #name, test_##name }

#define TEST_EXIT_SKIP 77

#define TEST_FAIL_AT(...)                                                  \
    do {                                                                   \
        fprintf(stderr, "  %s:%d: ", __FILE__, __LINE__);                  \
        fprintf(stderr, __VA_ARGS__);                                      \
        fprintf(stderr, "\n");                                             \
        exit(1);                                                           \
    } while (0)

#define TEST_SKIP(...)                                                     \
    do {                                                                   \
        fprintf(stdout, "  skip: ");                                       \
        fprintf(stdout, __VA_ARGS__);                                      \
        fprintf(stdout, "\n");                                             \
        fflush(stdout);                                                    \
        exit(TEST_EXIT_SKIP);                                              \
    } while (0)

#define ASSERT(cond)                                                       \
    do { if (!(cond)) TEST_FAIL_AT("assertion failed: %s", #cond); } while (0)

#define ASSERT_MSG(cond, ...)                                              \
    do { if (!(cond)) TEST_FAIL_AT(__VA_ARGS__); } while (0)

#define ASSERT_EQ_INT(a, b)                                                \
    do {                                                                   \
        long long a_ = (long long)(a), b_ = (long long)(b);                \
        if (a_ != b_)                                                      \
            TEST_FAIL_AT("%s == %s: %lld != %lld", #a, #b, a_, b_);        \
    } while (0)

#define ASSERT_EQ_U64(a, b)                                                \
    do {                                                                   \
        unsigned long long a_ = (unsigned long long)(a);                   \
        unsigned long long b_ = (unsigned long long)(b);                   \
        if (a_ != b_)                                                      \
            TEST_FAIL_AT("%s == %s: %llu != %llu", #a, #b, a_, b_);        \
    } while (0)

#define ASSERT_EQ_STR(a, b)                                                \
    do {                                                                   \
        const char *a_ = (a), *b_ = (b);                                   \
        if (a_ == NULL || b_ == NULL || strcmp(a_, b_) != 0)               \
            TEST_FAIL_AT("%s == %s: \"%s\" != \"%s\"", #a, #b,             \
                         a_ ? a_ : "(null)", b_ ? b_ : "(null)");          \
    } while (0)

/* |a - b| <= tol (NaN never passes). */
#define ASSERT_NEAR(a, b, tol)                                             \
    do {                                                                   \
        double a_ = (double)(a), b_ = (double)(b), t_ = (double)(tol);     \
        if (!(fabs(a_ - b_) <= t_))                                        \
            TEST_FAIL_AT("%s ~= %s: %.9g vs %.9g (tol %g)", #a, #b, a_,    \
                         b_, t_);                                          \
    } while (0)

static inline const char *test_srcdir(void)
{
    const char *s = getenv("srcdir");
    return (s != NULL && *s != '\0') ? s : ".";
}

/* The default model's path, or NULL where it has not been fetched. */
static inline const char *test_model_path(void)
{
    static char buf[4096];
    const char *env = getenv("LLAMAD_TEST_MODEL");
    if (env != NULL && *env != '\0')
        return access(env, R_OK) == 0 ? env : NULL;
    snprintf(buf, sizeof buf, "%s/models/SmolLM2-135M-Instruct.Q4_1.gguf", test_srcdir());
    return access(buf, R_OK) == 0 ? buf : NULL;
}

/*
 * A generated tokenizer GGUF (tokenizer-spm.gguf, tokenizer-llama3.gguf):
 * tests/run-suite.sh makes them with tests/ref/gen-tokenizer-goldens.py
 * and names their directory in LLAMAD_TOKENIZER_GGUFS.  NULL when absent.
 */
static inline const char *test_tokenizer_gguf(const char *name)
{
    static char buf[4096];
    const char *dir = getenv("LLAMAD_TOKENIZER_GGUFS");
    if (dir == NULL || *dir == '\0')
        return NULL;
    snprintf(buf, sizeof buf, "%s/%s", dir, name);
    return access(buf, R_OK) == 0 ? buf : NULL;
}

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
static void test_catch_crashes(void) {}
#else
#include <execinfo.h>

static void test_crash_handler(int sig)
{
    static const char head[] = "  fatal signal in the test; backtrace:\n";
    void *frames[64];
    int n = backtrace(frames, 64);
    if (write(2, head, sizeof head - 1) > 0)
        backtrace_symbols_fd(frames, n, 2);
    signal(sig, SIG_DFL);
    raise(sig);
}

/* In the test's child: backtraces on SIGSEGV, SIGBUS, SIGFPE, SIGILL and
   SIGABRT, on a stack of their own (a stack overflow is reported too). */
static void test_catch_crashes(void)
{
    static char altstack[1 << 16];
    void *warm[1];
    backtrace(warm, 1); /* loads what backtrace needs now, not in the handler */
    stack_t ss = { .ss_sp = altstack, .ss_size = sizeof altstack, .ss_flags = 0 };
    sigaltstack(&ss, NULL);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = test_crash_handler;
    sa.sa_flags = SA_ONSTACK | SA_RESETHAND;
    sigemptyset(&sa.sa_mask);
    static const int sigs[] = { SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT };
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
        sigaction(sigs[i], &sa, NULL);
}
#endif

static int test_run_list(int argc, char **argv, const test_entry_t *tests, size_t n)
{
    int failed = 0;
    for (size_t i = 0; i < n; i++) {
        if (argc > 1) {
            int want = 0;
            for (int a = 1; a < argc; a++)
                if (strcmp(argv[a], tests[i].name) == 0)
                    want = 1;
            if (!want)
                continue;
        }
        fflush(stdout);
        fflush(stderr);
        pid_t pid = fork();
        if (pid < 0) {
            perror("fork");
            return 1;
        }
        if (pid == 0) {
            test_catch_crashes();
            tests[i].fn();
            fflush(stdout);
            _exit(0);
        }
        int status = 0;
        while (waitpid(pid, &status, 0) < 0)
            ;
        if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
            printf("PASS: %s\n", tests[i].name);
        } else if (WIFEXITED(status) && WEXITSTATUS(status) == TEST_EXIT_SKIP) {
            printf("SKIP: %s\n", tests[i].name);
        } else {
            failed++;
            if (WIFSIGNALED(status))
                printf("FAIL: %s (signal %d)\n", tests[i].name, WTERMSIG(status));
            else
                printf("FAIL: %s\n", tests[i].name);
        }
        fflush(stdout);
    }
    return failed ? 1 : 0;
}

#define TEST_LIST(...)                                                     \
    int main(int argc, char **argv)                                        \
    {                                                                      \
        static const test_entry_t tests_[] = { __VA_ARGS__ };              \
        return test_run_list(argc, argv, tests_,                           \
                             sizeof tests_ / sizeof tests_[0]);            \
    }

#endif
