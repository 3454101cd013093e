/*
 * sdnotify.h - the systemd notification protocol (one datagram to
 * $NOTIFY_SOCKET), without libsystemd.  Does nothing when llamad does not
 * run under systemd.  Any thread.
 */
#ifndef LLAMAD_SDNOTIFY_H
#define LLAMAD_SDNOTIFY_H

#include <stdint.h>

/* Send a state string such as "READY=1" or "STOPPING=1". Returns 0, or a negative errno. */
int sd_notify_state(const char *state);

/* The watchdog interval systemd asked for (WATCHDOG_USEC), in microseconds, or 0. */
uint64_t sd_watchdog_usec(void);

#endif
