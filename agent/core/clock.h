// Wall-clock time for the timestamps the agent exports (the schedule itself runs on the monotonic
// Clock of types.h).
#pragma once

#include <chrono>

namespace pes {

// Seconds since the Unix epoch, with fractions.
inline double unix_now() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

}  // namespace pes
