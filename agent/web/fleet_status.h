// The fleet part of /api/v1/status and of the status page: which members run which probes, as
// this agent computes it from the shared configuration (no member asks another).
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "agent/engine/placement.h"

namespace pes {

struct FleetView {
  FleetConfig fleet;  // the members (not the whole configuration: unplaced probes are freed)
  Placement placement;
  std::string agent;
};

nlohmann::json render_fleet_json(const FleetView& fleet);
// An HTML section; long probe lists are cut (the JSON has them all).
std::string render_fleet_html(const FleetView& fleet);

}  // namespace pes
