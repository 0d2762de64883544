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

ProbeState::ProbeState(int failure_threshold, int success_threshold)
    : threshold_(failure_threshold, success_threshold) {}

ProbeState::Recorded ProbeState::record(Outcome outcome, double duration, double end_unix) {
  std::lock_guard lock(mu_);
  Recorded r;
  r.changed = threshold_.record(outcome.ok, outcome.reason);
  r.up = threshold_.up();
  r.change_pending = threshold_.change_pending();
  s_.has_run = true;
  s_.up = r.up;
  s_.last_ok = outcome.ok;
  s_.last_reason = outcome.reason;
  s_.last_duration = duration;
  s_.last_end_unix = end_unix;
  if (r.changed) s_.last_change_unix = end_unix;
  if (outcome.ok) {
    ++s_.runs_ok;
  } else {
    ++s_.runs_failed;
    ++s_.failures[static_cast<size_t>(outcome.reason)];
    s_.last_failure_reason = outcome.reason;
    s_.last_failure_unix = end_unix;
    s_.last_error = outcome.message;
  }
  for (size_t i = 0; i < kRunDurationBuckets.size(); ++i)
    if (duration <= kRunDurationBuckets[i]) ++s_.buckets[i];
  s_.duration_sum += duration;
  s_.last_message = std::move(outcome.message);
  s_.samples = std::make_shared<const std::vector<Sample>>(std::move(outcome.samples));
  history_.push_back(RunRecord{outcome.ok, outcome.reason, duration, end_unix});
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
  s_.failures = o.failures;
  s_.buckets = o.buckets;
  s_.duration_sum = o.duration_sum;
}

bool ProbeState::has_run() const {
  std::lock_guard lock(mu_);
  return s_.has_run;
}

}  // namespace pes
