/* systemd's notification protocol (sd_notify(3)) without libsystemd: one
 * datagram to $NOTIFY_SOCKET. Does nothing when not started by systemd. */
#ifndef SLUICE_NOTIFY_H
#define SLUICE_NOTIFY_H

#include <stdint.h>

void notify(const char *state);
/* The watchdog interval systemd asks for, in microseconds; 0 if none. */
int64_t notify_watchdog_usec(void);

#endif
