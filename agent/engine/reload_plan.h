// The pure part of a reload: which probes are kept, changed, new or retired, and when each new or
// changed one first runs (spread over its interval; after its token source's first run). Time and
// randomness come from the caller, so the plan is tested at fixed times.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "agent/engine/clock.h"

namespace pes {

// A probe of the running set, as the plan needs it.
struct RunningProbe {
  std::string name;
  uint64_t fingerprint = 0;
  Clock::time_point planned{};  // its next (or current) planned run
  std::chrono::milliseconds timeout{0};
  bool has_run = false;
};

// A probe of the configuration being installed.
struct WantedProbe {
  std::string name;
  uint64_t fingerprint = 0;
  std::chrono::milliseconds interval{0};
  std::chrono::milliseconds timeout{0};
  std::vector<std::string> token_sources;  // bearer_from
};

enum class ReloadAction {
  keep,    // unchanged: state, counters, schedule and probe object stay
  change,  // same name, new check: counters carry over, state and schedule start afresh
  add      // a new name
};

struct ReloadStep {
  ReloadAction action = ReloadAction::add;
  std::optional<size_t> running;               // index into `running` for keep and change
  std::optional<Clock::time_point> first_run;  // change and add, when scheduling
};

struct ReloadPlan {
  std::vector<ReloadStep> steps;  // one per wanted probe, in the configuration's order
  std::vector<size_t> retired;    // indexes into `running` that are gone
};

// Extra wait after a token source's deadline before its consumer first runs.
inline constexpr std::chrono::milliseconds kTokenSourceGrace{50};

ReloadPlan plan_reload(std::span<const RunningProbe> running, std::span<const WantedProbe> wanted,
                       Clock::time_point now, Rng& rng, bool schedule);

}  // namespace pes
