// Deadline arithmetic and waits for the blocking probes (tcp, ldap, postgres): every wait ends by
// the run's deadline, whatever the target does.
#pragma once

#include <sys/time.h>

#include "agent/core/types.h"

namespace pes {

// Milliseconds until the deadline, 0 when it has passed (capped so that poll() takes it).
int ms_left(Clock::time_point deadline);

// The time until the deadline as a timeval (libldap's unit); false when none is left.
bool time_left(Clock::time_point deadline, timeval& tv);

// Waits until fd is ready for `events` (POLLIN/POLLOUT) or the deadline passes; false on timeout.
// A poll() error other than EINTR returns true: the next read or write reports it.
bool wait_fd(int fd, short events, Clock::time_point deadline);

// Seconds since t on the monotonic clock, for duration samples.
double seconds_since(Clock::time_point t);

}  // namespace pes
