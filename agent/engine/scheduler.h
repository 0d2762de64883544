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
  // Removes and returns every id due at or before `now`, earliest first.
  std::vector<std::pair<uint64_t, Clock::time_point>> pop_due(Clock::time_point now);
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

// probe_up from consecutive results (Envoy's policy, see docs/state-policy.md):
// - the first run sets the state;
// - while up, failures whose cause is certain (the service answered: http_status, assertion,
//   auth, tls) turn it down at once; uncertain ones (timeout, connect, dns, protocol, internal)
//   need failure_threshold consecutive failures;
// - while down, success_threshold consecutive successes turn it up.
class ThresholdState {
 public:
  ThresholdState(int failure_threshold, int success_threshold)
      : failure_threshold_(failure_threshold), success_threshold_(success_threshold) {}
  // Records one result; returns true if the state changed.
  bool record(bool ok, Reason reason);
  std::optional<bool> up() const { return up_; }
  bool change_pending() const;
  int consecutive_failures() const { return fails_; }
  int consecutive_successes() const { return oks_; }
  void set_thresholds(int failure_threshold, int success_threshold) {
    failure_threshold_ = failure_threshold;
    success_threshold_ = success_threshold;
  }

  static bool certain(Reason r);

 private:
  int failure_threshold_;
  int success_threshold_;
  std::optional<bool> up_;
  int fails_ = 0;
  int oks_ = 0;
};

}  // namespace pes
