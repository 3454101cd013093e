/*
 * sigbus.c - log and exit on SIGBUS (see sigbus.h).
 *
 * The handler only calls async-signal-safe functions: write(2) of a line
 * formatted at install time, and _exit.  The log descriptor is read at
 * signal time, so that a log reopened by SIGHUP is the one written.
 */
#include "sigbus.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "base/err.h"
#include "base/log.h"

static char sigbus_line[4352];
static size_t sigbus_len;

static void write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w <= 0)
            return; /* EINTR cannot be retried safely forever here; give up */
        p += w;
        n -= (size_t)w;
    }
}

static void on_sigbus(int sig)
{
    (void)sig;
    int fd = log_get_fd();
    write_all(fd, sigbus_line, sigbus_len);
    if (fd != STDERR_FILENO)
        write_all(STDERR_FILENO, sigbus_line, sigbus_len);
    _exit(SIGBUS_EXIT_STATUS);
}

int sigbus_install(const char *model_path)
{
    int n = snprintf(sigbus_line, sizeof sigbus_line,
                     "llamad: error: SIGBUS, most likely reading the model: %s was probably "
                     "truncated while mapped (model-mmap = yes); exiting with status %d\n",
                     model_path, SIGBUS_EXIT_STATUS);
    sigbus_len = n < 0 ? 0 : (size_t)n < sizeof sigbus_line ? (size_t)n : sizeof sigbus_line - 1;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigbus;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGBUS, &sa, NULL) != 0)
        return ERR_IO;
    return 0;
}
