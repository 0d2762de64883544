#include "agent/config/maintenance.h"

#include <absl/time/civil_time.h>

#include <array>
#include <cstdio>
#include <string_view>

#include "agent/config/parse.h"
#include "agent/core/duration.h"

namespace pes {

namespace {

constexpr std::array<std::string_view, 7> kDays = {"mon", "tue", "wed", "thu", "fri", "sat", "sun"};
constexpr auto kMaxDuration = std::chrono::hours(24 * 7);

int weekday_index(absl::Weekday d) {
  switch (d) {
    case absl::Weekday::monday:
      return 0;
    case absl::Weekday::tuesday:
      return 1;
    case absl::Weekday::wednesday:
      return 2;
    case absl::Weekday::thursday:
      return 3;
    case absl::Weekday::friday:
      return 4;
    case absl::Weekday::saturday:
      return 5;
    case absl::Weekday::sunday:
      return 6;
  }
  return 0;
}

// "HH:MM" (24 h) to minutes after midnight, or -1.
int parse_hhmm(const std::string& s) {
  if (s.size() != 5 || s[2] != ':') return -1;
  for (size_t i : {0u, 1u, 3u, 4u})
    if (s[i] < '0' || s[i] > '9') return -1;
  int h = (s[0] - '0') * 10 + (s[1] - '0');
  int m = (s[3] - '0') * 10 + (s[4] - '0');
  if (h > 23 || m > 59) return -1;
  return h * 60 + m;
}

}  // namespace

bool MaintenanceWindow::active(double unix_seconds) const {
  const absl::Time t = absl::FromUnixMicros(static_cast<int64_t>(unix_seconds * 1e6));
  const absl::CivilDay today = absl::ToCivilDay(t, tz);
  const auto span_days = std::chrono::duration_cast<std::chrono::hours>(duration).count() / 24 + 1;
  // A window may have started on an earlier day and still be running (across midnight, or several
  // days long): look back as many days as the window can last.
  for (int64_t back = 0; back <= span_days; ++back) {
    const absl::CivilDay day = today - back;
    if (!(weekdays & (1u << weekday_index(absl::GetWeekday(day))))) continue;
    const absl::CivilSecond local_start(day.year(), day.month(), day.day(), start_minute / 60,
                                        start_minute % 60, 0);
    const absl::TimeZone::TimeInfo info = tz.At(local_start);
    const absl::Time start = info.kind == absl::TimeZone::TimeInfo::SKIPPED ? info.trans : info.pre;
    const absl::Time end = start + absl::FromChrono(duration);
    if (start <= t && t < end) return true;
  }
  return false;
}

std::string MaintenanceWindow::describe() const {
  std::string days;
  // Appended piece by piece: GCC 12 at -O3 warns (-Wrestrict, a false positive) on
  // `const char* + std::string&&`.
  for (size_t i = 0; i < kDays.size(); ++i) {
    if (!(weekdays & (1u << i))) continue;
    if (!days.empty()) days += ',';
    days += kDays[i];
  }
  char start[32];
  std::snprintf(start, sizeof start, "%02d:%02d", start_minute / 60, start_minute % 60);
  return days + " " + start + " for " + format_duration(duration) + " (" + time_zone + ")";
}

bool any_active(const std::vector<MaintenanceWindow>& windows, double unix_seconds) {
  for (const auto& w : windows)
    if (w.active(unix_seconds)) return true;
  return false;
}

bool parse_maintenance_window(Section& s, MaintenanceWindow& out) {
  bool ok = true;
  if (s.has("weekdays")) {
    out.weekdays = 0;
    for (const auto& d : s.str_list("weekdays")) {
      size_t i = 0;
      while (i < kDays.size() && kDays[i] != d) ++i;
      if (i == kDays.size()) {
        s.error("weekdays",
                "unknown weekday \"" + d + "\" (use mon, tue, wed, thu, fri, sat, sun)");
        ok = false;
      } else {
        out.weekdays |= static_cast<uint8_t>(1u << i);
      }
    }
    if (out.weekdays == 0 && ok) {
      s.error("weekdays", "must name at least one weekday");
      ok = false;
    }
  }
  if (auto start = s.str("start", Section::required)) {
    out.start_minute = parse_hhmm(*start);
    if (out.start_minute < 0) {
      s.error("start", "must be a local time HH:MM (00:00 to 23:59), got \"" + *start + "\"");
      ok = false;
    }
  } else {
    ok = false;
  }
  if (auto d = s.duration("duration", Section::required)) {
    out.duration = *d;
    if (out.duration <= std::chrono::milliseconds(0) || out.duration > kMaxDuration) {
      s.error("duration", "must be greater than 0 and at most 7d (168h)");
      ok = false;
    }
  } else {
    ok = false;
  }
  out.time_zone = s.str_or("time_zone", "UTC");
  if (!absl::LoadTimeZone(out.time_zone, &out.tz)) {
    s.error("time_zone", "unknown time zone \"" + out.time_zone +
                             "\" (an IANA name such as Europe/Berlin, from /usr/share/zoneinfo)");
    ok = false;
  }
  return ok;
}

}  // namespace pes
