#include "agent/engine/reload_plan.h"

#include <algorithm>
#include <string_view>
#include <unordered_map>

#include "agent/engine/scheduler.h"

namespace pes {

namespace {

// Matches wanted probes to running ones by name and fingerprint.
ReloadPlan match(std::span<const RunningProbe> running, std::span<const WantedProbe> wanted) {
  std::unordered_map<std::string_view, size_t> by_name;
  for (size_t i = 0; i < running.size(); ++i) by_name[running[i].name] = i;
  std::vector<bool> taken(running.size(), false);
  ReloadPlan plan;
  plan.steps.reserve(wanted.size());
  for (const auto& w : wanted) {
    ReloadStep step;
    auto it = by_name.find(w.name);
    if (it != by_name.end()) {
      step.running = it->second;
      taken[it->second] = true;
      step.action = running[it->second].fingerprint == w.fingerprint ? ReloadAction::keep
                                                                     : ReloadAction::change;
    }
    plan.steps.push_back(step);
  }
  for (size_t i = 0; i < running.size(); ++i)
    if (!taken[i]) plan.retired.push_back(i);
  return plan;
}

// The SSO chain at start: a probe that sends a keycloak probe's token first runs after that
// probe's first run has ended (its deadline), so it never fails for want of a token that was
// simply not fetched yet (a false `auth` at every start or reload).
void wait_for_token_sources(ReloadPlan& plan, std::span<const RunningProbe> running,
                            std::span<const WantedProbe> wanted) {
  std::unordered_map<std::string_view, size_t> by_name;
  for (size_t i = 0; i < wanted.size(); ++i) by_name[wanted[i].name] = i;
  for (size_t i = 0; i < wanted.size(); ++i) {
    auto& step = plan.steps[i];
    if (!step.first_run) continue;
    for (const auto& source : wanted[i].token_sources) {
      auto it = by_name.find(source);
      if (it == by_name.end() || it->second == i) continue;
      const ReloadStep& src = plan.steps[it->second];
      Clock::time_point src_planned;
      if (src.action == ReloadAction::keep) {
        const RunningProbe& r = running[*src.running];
        if (r.has_run) continue;
        src_planned = r.planned;
      } else if (src.first_run) {
        src_planned = *src.first_run;
      } else {
        continue;
      }
      step.first_run =
          std::max(*step.first_run, src_planned + wanted[it->second].timeout + kTokenSourceGrace);
    }
  }
}

}  // namespace

ReloadPlan plan_reload(std::span<const RunningProbe> running, std::span<const WantedProbe> wanted,
                       Clock::time_point now, Rng& rng, bool schedule) {
  ReloadPlan plan = match(running, wanted);
  if (!schedule) return plan;
  for (size_t i = 0; i < wanted.size(); ++i)
    if (plan.steps[i].action != ReloadAction::keep)
      plan.steps[i].first_run = first_due(now, wanted[i].interval, rng);
  wait_for_token_sources(plan, running, wanted);
  return plan;
}

}  // namespace pes
