// The scheduler's heap, jitter and cadence, and the damped up/down state, with an injected clock
// (plain time points) and a seeded RNG: nothing here sleeps.
#include <gtest/gtest.h>

#include <algorithm>
#include <set>

#include "agent/engine/scheduler.h"

using namespace pes;
using namespace std::chrono_literals;

namespace {
const Clock::time_point T0 = Clock::time_point() + 1000h;
}

TEST(Scheduler, PopsDueEntriesInOrderAndOnlyThose) {
  Scheduler s;
  s.schedule(1, T0 + 3s);
  s.schedule(2, T0 + 1s);
  s.schedule(3, T0 + 2s);
  EXPECT_EQ(s.next_due(), T0 + 1s);
  auto due = s.pop_due(T0 + 2s);
  ASSERT_EQ(due.size(), 2u);
  EXPECT_EQ(due[0].first, 2u);
  EXPECT_EQ(due[1].first, 3u);
  EXPECT_EQ(s.next_due(), T0 + 3s);
  EXPECT_TRUE(s.pop_due(T0 + 2500ms).empty());
}

// The engine takes a backlog in batches: the most overdue first, the rest stay due.
TEST(Scheduler, PopDueTakesAtMostMaxEarliestFirstAndKeepsTheRest) {
  Scheduler s;
  for (uint64_t id = 1; id <= 5; ++id) s.schedule(id, T0 + std::chrono::seconds(6 - id));
  auto first = s.pop_due(T0 + 10s, 2);
  ASSERT_EQ(first.size(), 2u);
  EXPECT_EQ(first[0].first, 5u);  // due at T0 + 1s
  EXPECT_EQ(first[1].first, 4u);
  EXPECT_EQ(s.size(), 3u);
  EXPECT_EQ(s.next_due(), T0 + 3s);
  auto rest = s.pop_due(T0 + 10s, 10);
  ASSERT_EQ(rest.size(), 3u);
  EXPECT_EQ(rest[2].first, 1u);
  EXPECT_EQ(s.size(), 0u);
}

TEST(Scheduler, RescheduleAndRemoveInvalidateOldEntries) {
  Scheduler s;
  s.schedule(1, T0 + 1s);
  s.schedule(1, T0 + 5s);  // moved later
  s.schedule(2, T0 + 2s);
  s.remove(2);
  EXPECT_EQ(s.next_due(), T0 + 5s);
  EXPECT_TRUE(s.pop_due(T0 + 4s).empty());
  auto due = s.pop_due(T0 + 5s);
  ASSERT_EQ(due.size(), 1u);
  EXPECT_EQ(due[0].second, T0 + 5s);
  EXPECT_EQ(s.size(), 0u);
  EXPECT_FALSE(s.next_due().has_value());
}

TEST(Scheduler, FirstRunsAreSpreadOverTheInterval) {
  std::mt19937_64 rng(42);
  std::vector<double> offsets;
  for (int i = 0; i < 1000; ++i) {
    auto due = first_due(T0, 10s, rng);
    ASSERT_GE(due, T0);
    ASSERT_LT(due, T0 + 10s);
    offsets.push_back(std::chrono::duration<double>(due - T0).count());
  }
  // No thundering herd: every second of the interval gets a share (expected 100 each).
  std::vector<int> per_second(10);
  for (double o : offsets) ++per_second[static_cast<int>(o)];
  for (int n : per_second) EXPECT_GT(n, 60);
  // Deterministic for a given seed.
  std::mt19937_64 a(7), b(7);
  EXPECT_EQ(first_due(T0, 10s, a), first_due(T0, 10s, b));
}

TEST(Scheduler, NextRunKeepsCadenceWithoutDrift) {
  // A run planned at T0 that ended 300 ms later is next planned at T0 + interval, not T0 + 10.3 s.
  EXPECT_EQ(next_due(T0, T0 + 300ms, 10s, 5s, false), T0 + 10s);
  // An overrun (suspended process) skips missed slots but keeps the phase.
  EXPECT_EQ(next_due(T0, T0 + 25s, 10s, 5s, false), T0 + 30s);
}

TEST(Scheduler, PendingChangeUsesTheEdgeInterval) {
  EXPECT_EQ(edge_interval(30s, 10s), 10s);
  EXPECT_EQ(edge_interval(60s, 5s), 15s);
  EXPECT_EQ(edge_interval(2s, 1s), 1s);
  EXPECT_EQ(edge_interval(500ms, 200ms), 500ms);  // never longer than the interval itself
  EXPECT_EQ(next_due(T0, T0 + 1s, 60s, 5s, true), T0 + 15s);
}

TEST(Threshold, FirstRunDecides) {
  ThresholdState up(3, 1), down(3, 1);
  EXPECT_TRUE(up.record(true, Reason::none));
  EXPECT_EQ(up.up(), true);
  EXPECT_TRUE(down.record(false, Reason::timeout));
  EXPECT_EQ(down.up(), false);
}

TEST(Threshold, UncertainFailuresNeedTheThreshold) {
  ThresholdState s(3, 1);
  s.record(true, Reason::none);
  EXPECT_FALSE(s.record(false, Reason::timeout));
  EXPECT_TRUE(s.change_pending());
  EXPECT_FALSE(s.record(false, Reason::connect));
  EXPECT_EQ(s.up(), true);
  EXPECT_TRUE(s.record(false, Reason::dns));
  EXPECT_EQ(s.up(), false);
  EXPECT_FALSE(s.change_pending());
}

TEST(Threshold, SuccessInBetweenResetsTheCount) {
  ThresholdState s(3, 1);
  s.record(true, Reason::none);
  s.record(false, Reason::timeout);
  s.record(false, Reason::timeout);
  s.record(true, Reason::none);
  EXPECT_FALSE(s.change_pending());
  s.record(false, Reason::timeout);
  s.record(false, Reason::timeout);
  EXPECT_EQ(s.up(), true);
}

TEST(Threshold, CertainFailuresTurnDownAtOnce) {
  for (Reason r : {Reason::http_status, Reason::assertion, Reason::auth, Reason::tls}) {
    ThresholdState s(5, 1);
    s.record(true, Reason::none);
    EXPECT_TRUE(s.record(false, r)) << reason_name(r);
    EXPECT_EQ(s.up(), false);
  }
}

TEST(Threshold, RecoveryNeedsSuccessThreshold) {
  ThresholdState s(1, 3);
  s.record(false, Reason::connect);
  EXPECT_FALSE(s.record(true, Reason::none));
  EXPECT_TRUE(s.change_pending());
  EXPECT_FALSE(s.record(true, Reason::none));
  EXPECT_TRUE(s.record(true, Reason::none));
  EXPECT_EQ(s.up(), true);
}

TEST(ConfirmPolicy, KindsOfFailure) {
  EXPECT_EQ(failure_kind(Reason::connect, 0), FailureKind::restart);
  for (int status : {502, 503, 504})
    EXPECT_EQ(failure_kind(Reason::http_status, status), FailureKind::restart) << status;
  for (int status : {0, 404, 500, 424})
    EXPECT_EQ(failure_kind(Reason::http_status, status), FailureKind::certain) << status;
  for (Reason r : {Reason::assertion, Reason::auth, Reason::tls, Reason::config})
    EXPECT_EQ(failure_kind(r, 0), FailureKind::certain) << reason_name(r);
  for (Reason r : {Reason::timeout, Reason::dns, Reason::protocol, Reason::internal})
    EXPECT_EQ(failure_kind(r, 0), FailureKind::uncertain) << reason_name(r);
}

TEST(ConfirmPolicy, RetriesComeAQuarterOfTheWindowApart) {
  EXPECT_EQ(confirm_spacing(30s, 10s, 20s), 5s);
  EXPECT_EQ(confirm_spacing(1s, 500ms, 666ms), 166ms);
  EXPECT_EQ(confirm_spacing(300ms, 200ms, 200ms), 100ms);  // at least 100 ms
  EXPECT_EQ(confirm_spacing(30s, 10s, 0s), 10s);           // no window: the edge interval
  EXPECT_EQ(next_due(T0, T0 + 12s, 5s), T0 + 15s);         // a long run skips to the next slot
}

TEST(ConfirmPolicy, ThresholdOneMeansNoDampingEvenForRefusals) {
  ThresholdState s(1, 1, 20s);
  s.record(true, FailureKind::certain, T0);
  EXPECT_TRUE(s.record(false, FailureKind::restart, T0 + 1s));
  EXPECT_EQ(s.up(), false);
}
