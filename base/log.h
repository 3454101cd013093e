/*
 * log.h - one line per message to standard error or a log file.
 *
 * Lines look like "2026-11-27T12:00:00.123Z info  loaded model ...".
 * Any thread may log; a mutex keeps lines whole.  The hot paths (a
 * scheduler step, a forward pass) never log per token.
 *
 * Every message is escaped before it is written, so that text a client
 * controls (a URL, a header, a model name) can neither forge a line nor
 * reach a terminal as a control sequence: C0/C1 controls, DEL, bidi and
 * line-separator characters become \xNN or \uNNNN, bytes that are not
 * UTF-8 become \xNN, and a backslash is doubled.  A line is at most about
 * 1.5 KB; longer messages are cut.
 */
#ifndef LLAMAD_LOG_H
#define LLAMAD_LOG_H

typedef enum { LOG_ERROR = 0, LOG_WARN = 1, LOG_INFO = 2, LOG_DEBUG = 3 } log_level_t;

/* Parse "error", "warn", "info", "debug"; returns -1 for anything else. */
int log_level_parse(const char *name);
void log_set_level(log_level_t level);
log_level_t log_get_level(void);

/*
 * Send logs to `path` (appending; created 0640) instead of stderr, or back
 * to stderr when path is NULL or empty.  Called again (SIGHUP) it reopens
 * the file, for log rotation.  Returns 0 or ERR_IO.
 */
int log_open(const char *path);

/* The descriptor lines go to now (stderr or the log file), for a signal
 * handler that must write(2) a prepared line itself.  Async-signal-safe. */
int log_get_fd(void);

void log_msg(log_level_t level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)
#define log_warn(...)  log_msg(LOG_WARN, __VA_ARGS__)
#define log_info(...)  log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)

#endif
