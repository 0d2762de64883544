// Maintenance windows from the configuration: on some weekdays, from a local start time, for a
// duration, in an IANA time zone. A probe inside a window is in maintenance (probe_maintenance).
#pragma once

#include <absl/time/time.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

namespace pes {

class Section;

struct MaintenanceWindow {
  uint8_t weekdays = 0x7f;  // bit 0 Monday .. bit 6 Sunday
  int start_minute = 0;     // minutes after local midnight
  std::chrono::milliseconds duration{0};
  std::string time_zone = "UTC";
  absl::TimeZone tz = absl::UTCTimeZone();

  // Whether `unix_seconds` falls in [start, start + duration) of a window that starts on a listed
  // weekday. A start time that does not exist on a day (skipped by a DST change) starts the window
  // at the transition; one that exists twice (repeated hour) starts it at the first occurrence.
  // The duration is elapsed time, so a window across a DST change keeps its length.
  bool active(double unix_seconds) const;
  std::string describe() const;  // for the fingerprint and the status page
};

bool any_active(const std::vector<MaintenanceWindow>& windows, double unix_seconds);

// Reads one window (weekdays, start, duration, time_zone) from a section; reports errors there.
// Returns false when the window is unusable.
bool parse_maintenance_window(Section& s, MaintenanceWindow& out);

}  // namespace pes
