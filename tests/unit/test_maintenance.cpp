// Maintenance windows at fixed times: across midnight, on listed weekdays only, across both DST
// changes of Europe/Berlin (a start hour that is skipped, one that repeats), several days long;
// and the configuration that sets them, connectivity checks, degraded_above and confirm_window.
#include <gtest/gtest.h>

#include "agent/config/config.h"
#include "probes/registry.h"

using namespace pes;
using namespace std::chrono_literals;

namespace {

MaintenanceWindow window(uint8_t days, int hh, int mm, std::chrono::milliseconds duration,
                         const std::string& zone) {
  MaintenanceWindow w;
  w.weekdays = days;
  w.start_minute = hh * 60 + mm;
  w.duration = duration;
  w.time_zone = zone;
  EXPECT_TRUE(absl::LoadTimeZone(zone, &w.tz)) << zone;
  return w;
}

constexpr uint8_t kFri = 1u << 4;
constexpr uint8_t kSun = 1u << 6;
constexpr uint8_t kAll = 0x7f;

}  // namespace

TEST(Maintenance, FridayNightAcrossMidnightInBerlinWinter) {
  // Fri 23:30 CET (UTC+1) for 2 h: 2026-12-04 22:30 UTC to 2026-12-05 00:30 UTC.
  const auto w = window(kFri, 23, 30, 2h, "Europe/Berlin");
  EXPECT_FALSE(w.active(1796421540));  // Fri 22:59 CET
  EXPECT_TRUE(w.active(1796423400));   // Fri 23:30 CET, the start
  EXPECT_TRUE(w.active(1796430540));   // Sat 01:29 CET, after midnight, still the Friday window
  EXPECT_FALSE(w.active(1796430600));  // Sat 01:30 CET, the end
  EXPECT_FALSE(w.active(1796338800));  // Fri 00:00 CET: the window of Thursday does not exist
  EXPECT_FALSE(w.active(1796423400 - 7 * 86400 + 86400));  // Saturday 23:30 the week before
}

TEST(Maintenance, AStartSkippedBySpringForwardBeginsAtTheTransition) {
  // 2026-03-29 Berlin: 02:00 CET jumps to 03:00 CEST (01:00 UTC); 02:30 does not exist.
  const auto w = window(kSun, 2, 30, 1h, "Europe/Berlin");
  EXPECT_FALSE(w.active(1774745940));  // 00:59 UTC = 01:59 CET
  EXPECT_TRUE(w.active(1774746000));   // 01:00 UTC = 03:00 CEST
  EXPECT_TRUE(w.active(1774746000 + 3599));
  EXPECT_FALSE(w.active(1774746000 + 3600));  // one hour of elapsed time, not of wall clock
}

TEST(Maintenance, AStartThatRepeatsInAutumnIsItsFirstOccurrence) {
  // 2026-10-25 Berlin: 03:00 CEST falls back to 02:00 CET; 02:30 happens at 00:30 and 01:30 UTC.
  const auto w = window(kSun, 2, 30, 30min, "Europe/Berlin");
  EXPECT_TRUE(w.active(1792888200));         // 00:30 UTC = 02:30 CEST
  EXPECT_TRUE(w.active(1792888200 + 1799));  // 00:59:59 UTC, the last second of the window
  EXPECT_FALSE(w.active(1792891800));        // 01:30 UTC = 02:30 CET, the second time: not again
  EXPECT_FALSE(w.active(1792888200 - 1));
}

TEST(Maintenance, ADailyWindowInUtcAndOneSpanningDays) {
  const auto daily = window(kAll, 0, 0, 1h, "UTC");
  EXPECT_TRUE(daily.active(1796430540));  // 00:29 UTC
  EXPECT_FALSE(daily.active(1796421540));
  const auto long_one = window(kFri, 22, 0, 50h, "UTC");  // Fri 22:00 to Mon 00:00
  EXPECT_TRUE(long_one.active(1796421540 + 2 * 86400));   // Sun 21:59
  EXPECT_FALSE(long_one.active(1796421540 + 3 * 86400));
}

TEST(Maintenance, ConfigurationSetsWindowsConnectivityAndBounds) {
  auto cfg = parse_config(R"(
global:
  interval: 30s
  degraded_above: 2s
connectivity:
  probes: [proxy]
maintenance:
  - {probes: [db], weekdays: [sun], start: "02:00", duration: 2h, time_zone: Europe/Berlin}
  - {start: "04:00", duration: 30m}
probes:
  - name: proxy
    type: tcp
    tcp: {address: "127.0.0.1:1"}
  - name: db
    type: tcp
    degraded_above: 500ms
    confirm_window: 12s
    maintenance:
      - {weekdays: [mon, tue], start: "23:30", duration: 1h}
    tcp: {address: "127.0.0.1:2"}
)",
                          "m.yml", probe_types());
  ASSERT_EQ(cfg->probes.size(), 2u);
  const auto& proxy = cfg->probes[0];
  const auto& db = cfg->probes[1];
  EXPECT_TRUE(proxy.connectivity);
  EXPECT_FALSE(db.connectivity);
  EXPECT_EQ(proxy.maintenance.size(), 1u);  // the global one for every probe
  ASSERT_EQ(db.maintenance.size(), 3u);     // its own, then the two global ones
  EXPECT_EQ(db.maintenance[0].weekdays, 0x3);
  EXPECT_EQ(db.maintenance[1].time_zone, "Europe/Berlin");
  EXPECT_EQ(proxy.degraded_above, 2s);
  EXPECT_EQ(db.degraded_above, 500ms);
  EXPECT_EQ(proxy.confirm_window, 20s);  // the default at a 30 s interval
  EXPECT_EQ(db.confirm_window, 12s);
}

TEST(Maintenance, DefaultConfirmWindowScalesWithShortIntervals) {
  auto cfg = parse_config(
      "global: {interval: 3s, timeout: 1s}\nprobes:\n  - {name: a, type: tcp, tcp: {address: "
      "\"127.0.0.1:1\"}}\n",
      "c.yml", probe_types());
  EXPECT_EQ(cfg->probes[0].confirm_window, 2s);
}
