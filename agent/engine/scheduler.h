// When each probe runs: a next-run heap with per-probe jitter, and the damped up/down state that
// turns probe_success into probe_up. Pure logic: time and randomness come from the caller.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <queue>
#include <random>
#include <unordered_map>
#include <vector>

#include "agent/core/types.h"

namespace pes {

// Next-run heap. Entries are probe ids; rescheduling or removing an id invalidates older entries.
class Scheduler {
 public:
  void schedule(uint64_t id, Clock::time_point due);
  void remove(uint64_t id);
  bool contains(uint64_t id) const { return due_.count(id) != 0; }
  std::optional<Clock::time_point> next_due();
  // Removes and returns the ids due at or before `now`, earliest first, at most `max` of them.
  std::vector<std::pair<uint64_t, Clock::time_point>> pop_due(Clock::time_point now,
                                                              size_t max = SIZE_MAX);
  size_t size() const { return due_.size(); }

 private:
  struct Entry {
    Clock::time_point due;
    uint64_t id;
    uint64_t gen;
    bool operator>(const Entry& o) const { return due > o.due; }
  };
  void drop_stale();
  std::priority_queue<Entry, std::vector<Entry>, std::greater<>> heap_;
  std::unordered_map<uint64_t, std::pair<Clock::time_point, uint64_t>> due_;  // id -> (due, gen)
  uint64_t gen_ = 0;
};

// A uniformly spread first run in [now, now + interval): no thundering herd at start or reload.
Clock::time_point first_due(Clock::time_point now, std::chrono::milliseconds interval,
                            std::mt19937_64& rng);

// The next planned start after a run that was planned for `planned`: a fixed cadence from the
// plan (no drift), the shorter edge interval while a state change is pending, never in the past.
Clock::time_point next_due(Clock::time_point planned, Clock::time_point now,
                           std::chrono::milliseconds interval, std::chrono::milliseconds timeout,
                           bool change_pending);

// The edge interval: how soon to re-check while a state change is pending.
std::chrono::milliseconds edge_interval(std::chrono::milliseconds interval,
                                        std::chrono::milliseconds timeout);

// The next planned start with an explicit step (the interval, the confirm spacing or the edge
// interval): a fixed cadence from the plan, never in the past.
Clock::time_point next_due(Clock::time_point planned, Clock::time_point now,
                           std::chrono::milliseconds step);

// How soon a failing probe is checked again while its failure is being confirmed: a quarter of
// the confirm window (at least 100 ms, at most the edge interval); the edge interval without one.
std::chrono::milliseconds confirm_spacing(std::chrono::milliseconds interval,
                                          std::chrono::milliseconds timeout,
                                          std::chrono::milliseconds confirm_window);

// How much a failed run says about the service (docs/architecture.md, state policy).
enum class FailureKind {
  certain,   // the service answered and said it is broken: down at once
  restart,   // refused or reset, or 502/503/504: what a restart looks like; down once it has
             // lasted the confirm window
  uncertain  // timeout, dns, protocol, internal: down after failure_threshold in a row
};
FailureKind failure_kind(Reason reason, int http_status);

// probe_up from consecutive results (Envoy's policy, extended; see docs/architecture.md):
// - the first run sets the state;
// - while up, a certain failure turns it down at once; a restart-like failure once failures have
//   lasted `confirm_window` (at least two failed runs; without a window it counts as uncertain);
//   uncertain ones need failure_threshold consecutive failures;
// - while down, success_threshold consecutive successes turn it up.
class ThresholdState {
 public:
  ThresholdState(int failure_threshold, int success_threshold,
                 std::chrono::milliseconds confirm_window = std::chrono::milliseconds(0))
      : failure_threshold_(failure_threshold),
        success_threshold_(success_threshold),
        confirm_window_(confirm_window) {}
  // Records one result at steady time `at`; returns true if the state changed.
  bool record(bool ok, FailureKind kind, Clock::time_point at);
  // The same, with the kind from the reason alone (no HTTP status known).
  bool record(bool ok, Reason reason, Clock::time_point at = {}) {
    return record(ok, failure_kind(reason, 0), at);
  }
  std::optional<bool> up() const { return up_; }
  bool change_pending() const;
  bool failure_pending() const { return up_ && *up_ && fails_ > 0; }
  int consecutive_failures() const { return fails_; }
  int consecutive_successes() const { return oks_; }

  static bool certain(Reason r) { return failure_kind(r, 0) == FailureKind::certain; }

 private:
  bool confirmed_down(FailureKind kind, Clock::time_point at) const;
  int failure_threshold_;
  int success_threshold_;
  std::chrono::milliseconds confirm_window_;
  std::optional<bool> up_;
  int fails_ = 0;
  int oks_ = 0;
  Clock::time_point first_failure_{};
};

}  // namespace pes
