// The `fleet:` section: the agents that share one configuration, and how many of them run each
// probe. Placement itself (who runs what) is agent/engine/placement.h.
#pragma once

#include <yaml-cpp/yaml.h>

#include <string>
#include <vector>

namespace pes {

class Section;
struct Config;

struct FleetMember {
  std::string name;      // the agent's --agent.name; the `agent` label
  std::string location;  // where it probes from; the `location` label
};

struct FleetConfig {
  bool enabled = false;  // a `fleet:` section is present
  std::vector<FleetMember> members;
  int replicas = 2;  // members that run each probe (in each of the probe's `locations`)
  int quorum = 0;    // replicas that must agree before a probe pages; the alert rules read it
  // Locations whose replicas must agree (at least one down replica in each) before a probe
  // pages; 1 (the default) adds nothing to `quorum`. The alert rules read it.
  int quorum_locations = 1;
  const FleetMember* find(const std::string& name) const;
};

// Reads `fleet:` from the top-level section into cfg.fleet and checks every probe's `locations`
// (already read into ProbeConfig::locations) against the members; `probes` is the raw list, for
// the places of errors.
void parse_fleet(Section& top, Config& cfg, const YAML::Node& probes);

}  // namespace pes
