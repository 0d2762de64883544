// Which fleet members run which probe, computed by every member alone from the shared
// configuration: rendezvous (highest-random-weight) hashing of the probe name, so no member talks
// to another and a member joining or leaving moves only its own share (docs/fleet.md).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "agent/config/config.h"

namespace pes {

// A 64-bit hash that is the same on every build and machine (FNV-1a, then the MurmurHash3
// finaliser so that nearby names spread over all bits). std::hash promises neither.
uint64_t stable_hash64(std::string_view s);

// The members chosen for one probe by its own name and locations: the `replicas` members of the
// whole fleet with the highest weight, or, with `locations`, the `replicas` highest of each listed
// location (fewer where a location has fewer members). Order: by weight, highest first.
std::vector<std::string> rendezvous(const FleetConfig& fleet, const std::string& probe,
                                    const std::vector<std::string>& locations);

// The placement of every probe of a configuration.
struct Placement {
  struct Entry {
    std::string probe;
    std::vector<std::string> chosen;   // by rendezvous (connectivity checks: every member)
    std::vector<std::string> members;  // chosen, plus members that run it because a probe they
                                       // run depends on it or takes its tokens (fleet order)
  };
  std::vector<Entry> probes;  // in configuration order
  // Probes run per member (same order as FleetConfig::members).
  std::vector<size_t> per_member;
  bool runs(const Entry& e, const std::string& member) const;
};
Placement compute_placement(const Config& cfg);

// The configuration one member runs: only the probes placed on it, with the labels `agent` and
// `location` added to the global labels. Without a fleet the configuration is returned as is.
// Throws ConfigError when the fleet is configured and `agent` is not one of its members.
std::shared_ptr<const Config> apply_placement(std::shared_ptr<const Config> cfg,
                                              const Placement& placement, const std::string& agent);

}  // namespace pes
