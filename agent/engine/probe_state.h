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
#include <vector>

#include "agent/core/types.h"
#include "agent/engine/scheduler.h"

namespace pes {

inline constexpr std::array<double, 12> kRunDurationBuckets{0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                                            0.5,   1,    2.5,   5,    10,  30};
inline constexpr size_t kReasonCount = 11;
inline constexpr size_t kHistoryLength = 20;

struct RunRecord {
  bool ok = false;
  Reason reason = Reason::none;
  double duration = 0;
  double end_unix = 0;
};

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
  ProbeState(int failure_threshold, int success_threshold);
  ProbeState(const ProbeState&) = delete;
  ProbeState& operator=(const ProbeState&) = delete;

  struct Recorded {
    bool changed = false;         // probe_up changed with this run
    std::optional<bool> up;       // probe_up after it
    bool change_pending = false;  // the next run should come after the edge interval
  };
  // Records the outcome of a run that ended at `end_unix` after `duration` seconds.
  Recorded record(Outcome outcome, double duration, double end_unix);

  enum class Detail { metrics, full };
  ProbeSnapshot snapshot(Detail detail = Detail::full) const;

  // A changed probe (new check, same name) keeps its counters so rate() sees no reset.
  void carry_counters_from(const ProbeState& old);
  bool has_run() const;

 private:
  mutable std::mutex mu_;
  ThresholdState threshold_;
  ProbeSnapshot s_;  // the state itself; snapshot() copies it
  std::deque<RunRecord> history_;
};

}  // namespace pes
