#include "agent/engine/probe_state.h"

namespace pes {

const std::vector<Sample>& ProbeSnapshot::sample_list() const {
  static const std::vector<Sample> none;
  return samples ? *samples : none;
}

ProbeSnapshot ProbeSnapshot::of_run(const Outcome& outcome, double duration, double end_unix) {
  ProbeState state(1, 1);
  state.record(outcome, duration, end_unix);
  return state.snapshot();
}

namespace {

// The HTTP status a run reports in its samples (probe_http_status_code), 0 when none.
int http_status_of(const Outcome& o) {
  for (const auto& s : o.samples)
    if (s.name == "probe_http_status_code" && s.labels.empty()) return static_cast<int>(s.value);
  return 0;
}

}  // namespace

std::string_view result_name(RunResult r) {
  switch (r) {
    case RunResult::success:
      return "success";
    case RunResult::failure:
      return "failure";
    case RunResult::unknown:
      return "unknown";
    case RunResult::maintenance:
      return "maintenance";
  }
  return "failure";
}

ProbeState::ProbeState(const StatePolicy& policy)
    : policy_(policy),
      threshold_(policy.failure_threshold, policy.success_threshold, policy.confirm_window) {}

ProbeState::Recorded ProbeState::record(Outcome outcome, double duration, const RunFacts& facts) {
  const double end_unix = facts.end_unix;
  const bool maintenance = outcome.maintenance || facts.in_window;
  Recorded r;
  if (outcome.ok)
    r.result = RunResult::success;
  else if (maintenance)
    r.result = RunResult::maintenance;
  else if (facts.connectivity_lost)
    r.result = RunResult::unknown;
  else
    r.result = RunResult::failure;
  std::lock_guard lock(mu_);
  // Only runs the agent could judge move the thresholds.
  if (r.result == RunResult::success || r.result == RunResult::failure)
    r.changed = threshold_.record(
        outcome.ok, failure_kind(outcome.reason, outcome.ok ? 0 : http_status_of(outcome)),
        facts.end);
  r.up = threshold_.up();
  r.change_pending = threshold_.change_pending();
  r.failure_pending = threshold_.failure_pending();
  if (outcome.ok && policy_.degraded_above)
    slow_runs_ =
        duration * 1000 > static_cast<double>(policy_.degraded_above->count()) ? slow_runs_ + 1 : 0;
  s_.has_run = true;
  s_.up = r.up;
  s_.degraded = r.up.value_or(false) && slow_runs_ >= kDegradedRuns;
  s_.last_result = r.result;
  s_.maintenance_reported = outcome.maintenance;
  s_.last_ok = outcome.ok;
  s_.last_reason = outcome.reason;
  s_.last_duration = duration;
  s_.last_end_unix = end_unix;
  if (r.changed) s_.last_change_unix = end_unix;
  switch (r.result) {
    case RunResult::success:
      ++s_.runs_ok;
      break;
    case RunResult::failure:
      ++s_.runs_failed;
      ++s_.failures[static_cast<size_t>(outcome.reason)];
      s_.last_failure_reason = outcome.reason;
      s_.last_failure_unix = end_unix;
      s_.last_error = outcome.message;
      break;
    case RunResult::unknown:
      ++s_.runs_unknown;
      break;
    case RunResult::maintenance:
      ++s_.runs_maintenance;
      break;
  }
  for (size_t i = 0; i < kRunDurationBuckets.size(); ++i)
    if (duration <= kRunDurationBuckets[i]) ++s_.buckets[i];
  s_.duration_sum += duration;
  s_.last_message = std::move(outcome.message);
  s_.samples = std::make_shared<const std::vector<Sample>>(std::move(outcome.samples));
  history_.push_back(RunRecord{outcome.ok, outcome.reason, duration, end_unix, r.result});
  if (history_.size() > kHistoryLength) history_.pop_front();
  return r;
}

ProbeSnapshot ProbeState::snapshot(Detail detail) const {
  std::lock_guard lock(mu_);
  if (detail == Detail::full) {
    ProbeSnapshot s = s_;
    s.history.assign(history_.begin(), history_.end());
    return s;
  }
  // Field by field, leaving out the strings and the history a scrape does not read.
  ProbeSnapshot s;
  s.has_run = s_.has_run;
  s.last_ok = s_.last_ok;
  s.up = s_.up;
  s.last_reason = s_.last_reason;
  s.last_duration = s_.last_duration;
  s.last_end_unix = s_.last_end_unix;
  s.last_change_unix = s_.last_change_unix;
  s.last_failure_reason = s_.last_failure_reason;
  s.last_failure_unix = s_.last_failure_unix;
  s.runs_ok = s_.runs_ok;
  s.runs_failed = s_.runs_failed;
  s.runs_unknown = s_.runs_unknown;
  s.runs_maintenance = s_.runs_maintenance;
  s.last_result = s_.last_result;
  s.maintenance_reported = s_.maintenance_reported;
  s.degraded = s_.degraded;
  s.failures = s_.failures;
  s.buckets = s_.buckets;
  s.duration_sum = s_.duration_sum;
  s.samples = s_.samples;
  return s;
}

void ProbeState::carry_counters_from(const ProbeState& old) {
  ProbeSnapshot o = old.snapshot(Detail::metrics);
  std::lock_guard lock(mu_);
  s_.runs_ok = o.runs_ok;
  s_.runs_failed = o.runs_failed;
  s_.runs_unknown = o.runs_unknown;
  s_.runs_maintenance = o.runs_maintenance;
  s_.failures = o.failures;
  s_.buckets = o.buckets;
  s_.duration_sum = o.duration_sum;
}

std::optional<bool> ProbeState::last_ok() const {
  std::lock_guard lock(mu_);
  if (!s_.has_run) return std::nullopt;
  return s_.last_ok;
}

bool ProbeState::has_run() const {
  std::lock_guard lock(mu_);
  return s_.has_run;
}

}  // namespace pes
