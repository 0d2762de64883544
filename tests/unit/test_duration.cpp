// Prometheus-style durations.
#include <gtest/gtest.h>

#include "agent/core/duration.h"

using namespace pes;
using std::chrono::milliseconds;

TEST(Duration, ParsesUnitsAndCombinations) {
  EXPECT_EQ(parse_duration("500ms"), milliseconds(500));
  EXPECT_EQ(parse_duration("15s"), milliseconds(15000));
  EXPECT_EQ(parse_duration("1m"), milliseconds(60000));
  EXPECT_EQ(parse_duration("1h30m"), milliseconds(5400000));
  EXPECT_EQ(parse_duration("1d"), milliseconds(86400000));
  EXPECT_EQ(parse_duration("1w"), milliseconds(7LL * 86400000));
  EXPECT_EQ(parse_duration("1y"), milliseconds(365LL * 86400000));
  EXPECT_EQ(parse_duration("2h0m5s10ms"), milliseconds(7205010));
  EXPECT_EQ(parse_duration("0"), milliseconds(0));
  EXPECT_EQ(parse_duration("0s"), milliseconds(0));
}

TEST(Duration, RejectsMalformedInput) {
  for (const char* bad : {"", "s", "10", "-5s", "5 s", "1.5s", "5sec", "1s1m", "1m1m", "1mss", "ms",
                          "5S", "99999999999999999999y", "9223372036854775807y"}) {
    std::string err;
    EXPECT_FALSE(parse_duration(bad, &err).has_value()) << bad;
    EXPECT_FALSE(err.empty()) << bad;
  }
}

TEST(Duration, FormatsRoundTrip) {
  EXPECT_EQ(format_duration(milliseconds(5400000)), "1h30m");
  EXPECT_EQ(format_duration(milliseconds(1500)), "1s500ms");
  EXPECT_EQ(format_duration(milliseconds(0)), "0s");
  for (int64_t ms : {1LL, 999LL, 61001LL, 90061001LL})
    EXPECT_EQ(parse_duration(format_duration(milliseconds(ms))), milliseconds(ms));
}
