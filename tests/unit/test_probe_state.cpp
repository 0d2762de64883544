// ProbeState, the one owner of a probe's state, at fixed times: what a run records, what a
// snapshot carries, counters carried over on reload, and the edge interval that follows a
// pending change.
#include <gtest/gtest.h>

#include "agent/engine/probe_state.h"

using namespace pes;
using namespace std::chrono_literals;

namespace {
const Clock::time_point T0 = Clock::time_point() + 1000h;
constexpr double U0 = 1.8e9;

Outcome failed(Reason r, std::string msg = "broken") { return Outcome::failure(r, std::move(msg)); }
}  // namespace

TEST(ProbeState, RecordsRunsCountersHistogramAndSamples) {
  ProbeState s(3, 1);
  EXPECT_FALSE(s.has_run());
  Outcome ok = Outcome::success("fine");
  ok.add("probe_http_status_code", "Status.", 200);
  auto r = s.record(ok, 0.02, U0);
  EXPECT_TRUE(r.changed);
  EXPECT_EQ(r.up, true);
  s.record(failed(Reason::timeout), 7, U0 + 30);
  const ProbeSnapshot snap = s.snapshot();
  EXPECT_TRUE(snap.has_run);
  EXPECT_FALSE(snap.last_ok);
  EXPECT_EQ(snap.up, true);  // one uncertain failure of three
  EXPECT_EQ(snap.runs_ok, 1u);
  EXPECT_EQ(snap.runs_failed, 1u);
  EXPECT_EQ(snap.failures[static_cast<size_t>(Reason::timeout)], 1u);
  EXPECT_EQ(snap.last_failure_reason, Reason::timeout);
  EXPECT_DOUBLE_EQ(snap.last_failure_unix, U0 + 30);
  EXPECT_DOUBLE_EQ(snap.last_change_unix, U0);
  EXPECT_DOUBLE_EQ(snap.duration_sum, 7.02);
  EXPECT_EQ(snap.buckets[2], 1u);   // 0.025
  EXPECT_EQ(snap.buckets[10], 2u);  // 10 s: both runs (buckets are cumulative)
  EXPECT_EQ(snap.last_error, "broken");
  EXPECT_TRUE(snap.sample_list().empty());  // the failed run replaced the samples
  ASSERT_EQ(snap.history.size(), 2u);
  EXPECT_TRUE(snap.history[0].ok);
  EXPECT_EQ(snap.history[1].reason, Reason::timeout);
}

TEST(ProbeState, AScrapeSnapshotLeavesOutTextAndHistoryButSharesSamples) {
  ProbeState s(3, 1);
  Outcome ok = Outcome::success("fine");
  ok.add("probe_x", "X.", 4);
  s.record(ok, 0.1, U0);
  const ProbeSnapshot a = s.snapshot(ProbeState::Detail::metrics);
  const ProbeSnapshot b = s.snapshot(ProbeState::Detail::metrics);
  EXPECT_TRUE(a.history.empty());
  EXPECT_TRUE(a.last_message.empty());
  ASSERT_EQ(a.sample_list().size(), 1u);
  EXPECT_EQ(a.samples.get(), b.samples.get());
}

TEST(ProbeState, HistoryKeepsTheLastRunsOnly) {
  ProbeState s(3, 1);
  for (size_t i = 0; i < kHistoryLength + 5; ++i) s.record(Outcome::success(), 0.1, U0 + i);
  const auto snap = s.snapshot();
  ASSERT_EQ(snap.history.size(), kHistoryLength);
  EXPECT_DOUBLE_EQ(snap.history.front().end_unix, U0 + 5);
}

TEST(ProbeState, CarryOverKeepsCountersButNotStateOrLastRun) {
  ProbeState old(3, 1);
  old.record(Outcome::success(), 0.1, U0);
  old.record(failed(Reason::connect), 0.2, U0 + 1);
  ProbeState fresh(3, 1);
  fresh.carry_counters_from(old);
  const auto snap = fresh.snapshot();
  EXPECT_FALSE(snap.has_run);
  EXPECT_FALSE(snap.up.has_value());
  EXPECT_EQ(snap.runs_ok, 1u);
  EXPECT_EQ(snap.runs_failed, 1u);
  EXPECT_EQ(snap.failures[static_cast<size_t>(Reason::connect)], 1u);
  EXPECT_DOUBLE_EQ(snap.duration_sum, 0.30000000000000004);
}

TEST(ProbeState, PendingChangeBringsTheNextRunAfterTheEdgeInterval) {
  ProbeState s(3, 1);
  auto r = s.record(Outcome::success(), 0.1, U0);
  EXPECT_FALSE(r.change_pending);
  EXPECT_EQ(next_due(T0, T0 + 100ms, 30s, 5s, r.change_pending), T0 + 30s);
  r = s.record(failed(Reason::timeout), 5, U0 + 30);
  EXPECT_TRUE(r.change_pending);
  EXPECT_EQ(next_due(T0 + 30s, T0 + 35s, 30s, 5s, r.change_pending), T0 + 30s + 7500ms);
  r = s.record(failed(Reason::timeout), 5, U0 + 38);
  r = s.record(failed(Reason::timeout), 5, U0 + 46);
  EXPECT_TRUE(r.changed);
  EXPECT_EQ(r.up, false);
  EXPECT_FALSE(r.change_pending);
}

TEST(ProbeState, OneRunSnapshotForAdHocRuns) {
  const auto snap = ProbeSnapshot::of_run(failed(Reason::http_status), 0.5, 0);
  EXPECT_TRUE(snap.has_run);
  EXPECT_FALSE(snap.last_ok);
  EXPECT_EQ(snap.runs_failed, 1u);
  EXPECT_EQ(snap.last_failure_reason, Reason::http_status);
}
