// ProbeState, the one owner of a probe's state, at fixed times: what a run records, what a
// snapshot carries, counters carried over on reload, and the edge interval that follows a
// pending change.
#include <gtest/gtest.h>

#include <functional>

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

namespace {

// compose/agent.yml's timings: 30 s interval, 10 s timeout, threshold 3, confirm window 20 s.
StatePolicy compose_policy() { return StatePolicy{3, 1, 20s, 2s}; }

Outcome http_failure(int status) {
  Outcome o = Outcome::failure(Reason::http_status, "HTTP " + std::to_string(status));
  o.add("probe_http_status_code", "Status.", status);
  return o;
}

// Runs a failing probe the way the engine does: a run, then the next one after the confirm
// spacing while a failure is being confirmed. Returns the seconds after `from` it turned down.
std::optional<double> seconds_to_down(ProbeState& s, Clock::time_point from,
                                      std::function<Outcome(double)> outcome_at, double limit) {
  const auto spacing = confirm_spacing(30s, 10s, 20s);
  auto t = from;
  while (t - from <= std::chrono::duration<double>(limit)) {
    const double at = std::chrono::duration<double>(t - from).count();
    auto r = s.record(outcome_at(at), 0.01, RunFacts{t, U0 + at, false, false});
    if (r.up == std::optional<bool>(false)) return at;
    t += r.failure_pending ? spacing : std::chrono::milliseconds(30s);
  }
  return std::nullopt;
}

}  // namespace

TEST(ConfirmPolicy, RefusedConnectionsTurnDownOnceTheyLastTheConfirmWindow) {
  ProbeState s(compose_policy());
  s.record(Outcome::success(), 0.01, RunFacts{T0, U0, false, false});
  // PostgreSQL killed: every run from now on is refused.
  auto down = seconds_to_down(
      s, T0 + 30s, [](double) { return failed(Reason::connect, "refused"); }, 120);
  ASSERT_TRUE(down.has_value());
  EXPECT_EQ(*down, 20);  // runs at 0, 5, 10, 15, 20 s: down at the fifth, not at the third
}

TEST(ConfirmPolicy, ATwentySecondRestartBlipDoesNotTurnDown) {
  // Refused for the first 12 s (the process restarts), then 503 while it starts, healthy at 20 s.
  for (double phase : {0.0, 1.0, 2.5, 4.9}) {
    ProbeState s(compose_policy());
    s.record(Outcome::success(), 0.01, RunFacts{T0, U0, false, false});
    auto down = seconds_to_down(
        s, T0 + 30s,
        [phase](double at) {
          const double t = at + phase;  // the first failing run comes `phase` s into the blip
          if (t < 12) return failed(Reason::connect, "refused");
          if (t < 20) return http_failure(503);
          return Outcome::success();
        },
        120);
    EXPECT_FALSE(down.has_value()) << "phase " << phase << " turned down after " << *down << " s";
    EXPECT_EQ(s.snapshot().up, true);
  }
}

TEST(ConfirmPolicy, CertainAnswersTurnDownAtOnceButGatewayStatusesAreConfirmed) {
  ProbeState certain(compose_policy());
  certain.record(Outcome::success(), 0.01, RunFacts{T0, U0, false, false});
  EXPECT_EQ(certain.record(http_failure(500), 0.01, RunFacts{T0 + 30s, U0, false, false}).up,
            false);
  ProbeState gateway(compose_policy());
  gateway.record(Outcome::success(), 0.01, RunFacts{T0, U0, false, false});
  auto r = gateway.record(http_failure(503), 0.01, RunFacts{T0 + 30s, U0, false, false});
  EXPECT_EQ(r.up, true);
  EXPECT_TRUE(r.failure_pending);
}

TEST(ConfirmPolicy, TimeoutsStillNeedTheThreshold) {
  ProbeState s(compose_policy());
  s.record(Outcome::success(), 0.01, RunFacts{T0, U0, false, false});
  EXPECT_EQ(s.record(failed(Reason::timeout), 10, RunFacts{T0 + 40s, U0, false, false}).up, true);
  EXPECT_EQ(s.record(failed(Reason::timeout), 10, RunFacts{T0 + 55s, U0, false, false}).up, true);
  EXPECT_EQ(s.record(failed(Reason::timeout), 10, RunFacts{T0 + 70s, U0, false, false}).up, false);
}

TEST(UnknownAndMaintenance, UnknownRunsNeitherAdvanceThresholdsNorCountAsFailures) {
  ProbeState s(compose_policy());
  s.record(Outcome::success(), 0.01, RunFacts{T0, U0, false, false});
  for (int i = 1; i <= 10; ++i) {
    auto r = s.record(failed(Reason::connect), 0.01,
                      RunFacts{T0 + std::chrono::seconds(5 * i), U0 + 5 * i, true, false});
    EXPECT_EQ(r.result, RunResult::unknown);
    EXPECT_EQ(r.up, true);
  }
  auto snap = s.snapshot();
  EXPECT_EQ(snap.runs_unknown, 10u);
  EXPECT_EQ(snap.runs_failed, 0u);
  EXPECT_EQ(snap.failures[static_cast<size_t>(Reason::connect)], 0u);
  EXPECT_EQ(snap.last_result, RunResult::unknown);
  // Connectivity back, the service really down: the confirm window starts only now.
  auto r = s.record(failed(Reason::connect), 0.01, RunFacts{T0 + 60s, U0 + 60, false, false});
  EXPECT_EQ(r.result, RunResult::failure);
  EXPECT_EQ(r.up, true);
  r = s.record(failed(Reason::connect), 0.01, RunFacts{T0 + 80s, U0 + 80, false, false});
  EXPECT_EQ(r.up, false);
}

TEST(UnknownAndMaintenance, MaintenanceRunsDoNotCountAndDownFollowsWhenItEnds) {
  ProbeState s(compose_policy());
  s.record(Outcome::success(), 0.01, RunFacts{T0, U0, false, false});
  // Nextcloud says maintenance (assertion, certain otherwise): not down, not a failure.
  Outcome m = failed(Reason::assertion, "Nextcloud is in maintenance mode");
  m.maintenance = true;
  auto r = s.record(m, 0.01, RunFacts{T0 + 30s, U0 + 30, false, false});
  EXPECT_EQ(r.result, RunResult::maintenance);
  EXPECT_EQ(r.up, true);
  // A window from the configuration: a refused connection inside it does not count either.
  r = s.record(failed(Reason::connect), 0.01, RunFacts{T0 + 60s, U0 + 60, false, true});
  EXPECT_EQ(r.result, RunResult::maintenance);
  EXPECT_EQ(s.snapshot().runs_maintenance, 2u);
  EXPECT_EQ(s.snapshot().runs_failed, 0u);
  EXPECT_TRUE(s.snapshot().maintenance_reported == false);  // the window is not the service's word
  // Maintenance over, the service still broken: down at once for a certain reason.
  r = s.record(failed(Reason::assertion, "broken"), 0.01,
               RunFacts{T0 + 90s, U0 + 90, false, false});
  EXPECT_EQ(r.up, false);
  EXPECT_TRUE(r.changed);
}

TEST(Degraded, TwoSlowSuccessesInARowMakeItDegradedOneFastRunClearsIt) {
  ProbeState s(compose_policy());  // degraded_above 2 s
  s.record(Outcome::success(), 2.5, RunFacts{T0, U0, false, false});
  EXPECT_FALSE(s.snapshot().degraded);  // one slow answer is no ticket
  s.record(Outcome::success(), 3.0, RunFacts{T0 + 30s, U0 + 30, false, false});
  EXPECT_TRUE(s.snapshot().degraded);
  s.record(failed(Reason::timeout), 10, RunFacts{T0 + 60s, U0 + 60, false, false});
  EXPECT_TRUE(s.snapshot().degraded);  // a failure neither clears nor adds to it while up
  s.record(Outcome::success(), 0.3, RunFacts{T0 + 90s, U0 + 90, false, false});
  EXPECT_FALSE(s.snapshot().degraded);
  ProbeState unbounded(3, 1);
  unbounded.record(Outcome::success(), 60, U0);
  unbounded.record(Outcome::success(), 60, U0 + 1);
  EXPECT_FALSE(unbounded.snapshot().degraded);
}
