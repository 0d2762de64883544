// The states derived from all probes together, at one moment: maintenance (the service said so or
// a window is active), unknown, degraded, and the root cause with its blast radius from the
// depends_on graph. Pure: the exposition, the status page and the tests call it with snapshots.
#pragma once

#include <span>
#include <string_view>
#include <vector>

#include "agent/config/config.h"
#include "agent/engine/probe_state.h"

namespace pes {

// One probe as the readers see it: its configuration and a snapshot of its state.
struct ProbeView {
  const ProbeConfig* cfg;
  const ProbeSnapshot* snap;
};

struct DerivedState {
  bool maintenance = false;  // the last run said maintenance, or a configured window is active
  bool unknown = false;      // the last run could not be judged (connectivity lost)
  bool degraded = false;     // up but slow (ProbeState)
  // Down, judged (not unknown, not in maintenance), not a connectivity check, and no transitive
  // dependency is down, unknown, in maintenance or failing right now (being confirmed).
  bool root_cause = false;
  std::vector<size_t> takes_down;  // a root cause's transitive dependents (indexes), config order
};

std::vector<DerivedState> derive_states(std::span<const ProbeView> probes, double now_unix);

// up | down | unknown | maintenance | degraded, for dependent_state and the status page; "unknown"
// also before the first run.
std::string_view state_name(const ProbeSnapshot& snap, const DerivedState& derived);

// Whether the agent's connectivity checks pass (their last runs succeeded); true without any.
bool connectivity_up(std::span<const ProbeView> probes);

}  // namespace pes
