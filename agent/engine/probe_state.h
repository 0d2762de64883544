// The one owner of a probe's state: thresholds (probe_up), counters, the last run, its samples and
// a short history, behind one lock. Runs are recorded here; the exposition, the status page and
// /api/v1/status read one snapshot type; a reload carries the counters over.
#pragma once

#include <array>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "agent/core/types.h"
#include "agent/engine/scheduler.h"

namespace pes {

inline constexpr std::array<double, 12> kRunDurationBuckets{0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                                            0.5,   1,    2.5,   5,    10,  30};
inline constexpr size_t kReasonCount = 11;
inline constexpr size_t kHistoryLength = 20;

// How a run counted: a failure only counts (thresholds, failure counters) when the agent could
// judge it; while its connectivity checks fail it is `unknown`, in maintenance `maintenance`.
enum class RunResult { success, failure, unknown, maintenance };
std::string_view result_name(RunResult r);

struct RunRecord {
  bool ok = false;
  Reason reason = Reason::none;
  double duration = 0;
  double end_unix = 0;
  RunResult result = RunResult::success;
};

// The thresholds and bounds of one probe (from its ProbeConfig).
struct StatePolicy {
  int failure_threshold = 3;
  int success_threshold = 1;
  std::chrono::milliseconds confirm_window{0};
  std::optional<std::chrono::milliseconds> degraded_above;
};

// What the engine knows about a run besides its outcome.
struct RunFacts {
  Clock::time_point end{};  // steady time the run ended (for the confirm window)
  double end_unix = 0;
  bool connectivity_lost = false;  // the agent's connectivity checks fail: the run is unknown
  bool in_window = false;          // a configured maintenance window is active
};

// Successful runs in a row above degraded_above that make a probe degraded; one run below the
// bound clears it. Two, so that one slow answer (a cold cache, a GC pause) is no ticket.
inline constexpr int kDegradedRuns = 2;

// A consistent copy of one probe's state (the families of one scrape agree: the histogram's count
// is the sum of probe_runs_total, and so on). Samples are shared, not copied.
struct ProbeSnapshot {
  bool has_run = false;
  bool last_ok = false;
  std::optional<bool> up;  // empty before the first run
  Reason last_reason = Reason::none;
  double last_duration = 0;
  double last_end_unix = 0;
  double last_change_unix = 0;
  Reason last_failure_reason = Reason::none;
  double last_failure_unix = 0;
  uint64_t runs_ok = 0;
  uint64_t runs_failed = 0;
  uint64_t runs_unknown = 0;
  uint64_t runs_maintenance = 0;
  RunResult last_result = RunResult::success;
  bool maintenance_reported = false;  // the service said so in the last run (a preset)
  bool degraded = false;              // up, and the last kDegradedRuns successes were slow
  std::array<uint64_t, kReasonCount> failures{};
  std::array<uint64_t, kRunDurationBuckets.size()> buckets{};
  double duration_sum = 0;
  std::shared_ptr<const std::vector<Sample>> samples;
  // Only in a full snapshot (status page, /api/v1/status); a scrape does not need them.
  std::string last_message;
  std::string last_error;
  std::vector<RunRecord> history;

  const std::vector<Sample>& sample_list() const;
  // The state of a probe that ran exactly once with this outcome (ad hoc runs).
  static ProbeSnapshot of_run(const Outcome& outcome, double duration, double end_unix);
};

class ProbeState {
 public:
  explicit ProbeState(const StatePolicy& policy);
  ProbeState(int failure_threshold, int success_threshold)
      : ProbeState(StatePolicy{failure_threshold, success_threshold, {}, std::nullopt}) {}
  ProbeState(const ProbeState&) = delete;
  ProbeState& operator=(const ProbeState&) = delete;

  struct Recorded {
    bool changed = false;          // probe_up changed with this run
    std::optional<bool> up;        // probe_up after it
    bool change_pending = false;   // a failure is being confirmed or a recovery is pending
    bool failure_pending = false;  // up, with failures being confirmed (confirm spacing)
    RunResult result = RunResult::success;
  };
  // Records the outcome of a run that took `duration` seconds.
  Recorded record(Outcome outcome, double duration, const RunFacts& facts);
  Recorded record(Outcome outcome, double duration, double end_unix) {
    return record(std::move(outcome), duration, RunFacts{{}, end_unix, false, false});
  }

  enum class Detail { metrics, full };
  ProbeSnapshot snapshot(Detail detail = Detail::full) const;

  // A changed probe (new check, same name) keeps its counters so rate() sees no reset.
  void carry_counters_from(const ProbeState& old);
  bool has_run() const;
  std::optional<bool> last_ok() const;  // empty before the first run

 private:
  mutable std::mutex mu_;
  StatePolicy policy_;
  ThresholdState threshold_;
  int slow_runs_ = 0;  // successful runs in a row above degraded_above
  ProbeSnapshot s_;    // the state itself; snapshot() copies it
  std::deque<RunRecord> history_;
};

}  // namespace pes
