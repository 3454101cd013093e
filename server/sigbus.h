/*
 * sigbus.h - the daemon's last word when the mapped model file goes away.
 *
 * Weights are read straight from the model file's mapping (model-mmap =
 * yes); a file truncated under the daemon turns the next read of a lost
 * page into SIGBUS, which would kill the daemon with no log line.  The
 * handler writes one prepared line to the log and exits with
 * SIGBUS_EXIT_STATUS, so that the death is explained and systemd
 * (Restart=on-failure) restarts the daemon.
 */
#ifndef LLAMAD_SIGBUS_H
#define LLAMAD_SIGBUS_H

/* 128 + SIGBUS: what a shell reports for a SIGBUS death, as a plain exit. */
#define SIGBUS_EXIT_STATUS 135

/*
 * Prepare the message naming `model_path` and install the handler.  Call
 * once on the main thread before the model is loaded.  Returns 0 or
 * ERR_IO (sigaction failed; the daemon runs without it).
 */
int sigbus_install(const char *model_path);

#endif
