#include "log.h"

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "err.h"
#include "utf8.h"

static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static log_level_t log_level = LOG_INFO;
/* read by a signal handler (log_get_fd from server/sigbus.c) as well */
static volatile sig_atomic_t log_fd = STDERR_FILENO;

static const char *const level_names[] = { "error", "warn", "info", "debug" };

int log_level_parse(const char *name)
{
    for (int i = 0; i < 4; i++)
        if (strcmp(name, level_names[i]) == 0)
            return i;
    return -1;
}

void log_set_level(log_level_t level) { log_level = level; }
int log_get_fd(void) { return log_fd; }
log_level_t log_get_level(void) { return log_level; }

int log_open(const char *path)
{
    int fd = STDERR_FILENO;
    if (path != NULL && *path != '\0') {
        fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
        if (fd < 0)
            return ERR_IO;
    }
    pthread_mutex_lock(&log_lock);
    int old = log_fd;
    log_fd = fd;
    pthread_mutex_unlock(&log_lock);
    if (old != STDERR_FILENO)
        close(old);
    return 0;
}

/* Code points a terminal or a log viewer would act on rather than show. */
static int is_control(uint32_t cp)
{
    return cp < 0x20 || (cp >= 0x7f && cp <= 0x9f) ||        /* C0, DEL, C1 (0x9b is CSI) */
           (cp >= 0x202a && cp <= 0x202e) || (cp >= 0x2066 && cp <= 0x2069) || /* bidi */
           cp == 0x2028 || cp == 0x2029;                      /* line and paragraph separators */
}

/*
 * Copy src into dst[0..cap) so that one message is one line of valid UTF-8
 * whatever a client put into it (a URL with %0a, an ESC sequence, a header
 * value): control characters become \xNN or \uNNNN, bytes that are not
 * UTF-8 become \xNN, and a backslash becomes \\ so that an escape cannot be
 * forged.  Returns the length written (cap - 1 at most, NUL-terminated).
 */
static size_t escape_line(char *dst, size_t cap, const char *src)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *s = (const unsigned char *)src;
    size_t n = strlen(src), o = 0;
    for (size_t i = 0; i < n;) {
        char tmp[8];
        size_t tl, adv = 1;
        uint32_t cp = s[i];
        int kind;
        if (s[i] == '\\') {
            memcpy(tmp, "\\\\", tl = 2);
        } else if (s[i] < 0x80) {
            if (is_control(cp)) {
                memcpy(tmp, "\\x", 2);
                tmp[2] = hex[s[i] >> 4];
                tmp[3] = hex[s[i] & 15];
                tl = 4;
            } else {
                tmp[0] = (char)s[i];
                tl = 1;
            }
        } else if ((adv = utf8_step(s + i, n - i, &cp, &kind)), kind != UTF8_OK) {
            memcpy(tmp, "\\x", 2);
            tmp[2] = hex[s[i] >> 4];
            tmp[3] = hex[s[i] & 15];
            tl = 4;
            adv = 1;
        } else if (is_control(cp)) {
            memcpy(tmp, "\\u", 2);
            for (int k = 0; k < 4; k++)
                tmp[2 + k] = hex[(cp >> (12 - 4 * k)) & 15];
            tl = 6;
        } else {
            memcpy(tmp, s + i, adv);
            tl = adv;
        }
        if (o + tl >= cap)
            break;
        memcpy(dst + o, tmp, tl);
        o += tl;
        i += adv;
    }
    dst[o] = '\0';
    return o;
}

void log_msg(log_level_t level, const char *fmt, ...)
{
    if (level > log_level)
        return;

    char line[2048];
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    int n = snprintf(line, sizeof line, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %-5s ",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                     tm.tm_sec, ts.tv_nsec / 1000000, level_names[level]);
    char msg[1536];
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (m < 0)
        msg[0] = '\0';
    size_t len = (size_t)n + escape_line(line + n, sizeof line - (size_t)n - 1, msg);
    line[len++] = '\n';

    pthread_mutex_lock(&log_lock);
    ssize_t off = 0;
    while ((size_t)off < len) {
        ssize_t w = write(log_fd, line + off, len - (size_t)off);
        if (w <= 0)
            break;
        off += w;
    }
    pthread_mutex_unlock(&log_lock);
}
