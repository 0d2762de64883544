#include "agent/config/fleet.h"

#include <set>

#include "agent/config/config.h"

namespace pes {
namespace {

bool valid_member_name(const std::string& s) {
  if (s.empty() || s.size() > 128) return false;
  for (char c : s)
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
          c == '-' || c == '.'))
      return false;
  return true;
}

void read_members(Section& fs, FleetConfig& fleet) {
  YAML::Node list = fs.raw("members");
  if (!list.IsDefined() || list.IsNull()) {
    fs.error("members", "required: the list of the fleet's agents ({name, location})");
    return;
  }
  if (!list.IsSequence() || list.size() == 0) {
    fs.error("members", "must be a non-empty list of {name, location}");
    return;
  }
  std::set<std::string> seen;
  for (size_t i = 0; i < list.size(); ++i) {
    Section ms(fs.ctx(), list[i], fs.path_of("members[" + std::to_string(i) + "]"));
    if (!list[i].IsMap()) continue;
    FleetMember m;
    m.name = ms.str_or("name", "");
    m.location = ms.str_or("location", "default");
    if (m.name.empty())
      ms.error("name", "required: the member's --agent.name");
    else if (!valid_member_name(m.name))
      ms.error("name", "must match [A-Za-z0-9._-]+ (a host name), got \"" + m.name + "\"");
    else if (!seen.insert(m.name).second)
      ms.error("name", "duplicate member \"" + m.name + "\"");
    if (!valid_member_name(m.location))
      ms.error("location", "must match [A-Za-z0-9._-]+, got \"" + m.location + "\"");
    fleet.members.push_back(std::move(m));
  }
}

// `locations` of each probe must name a location that has members.
void check_probe_locations(ParseContext& ctx, const Config& cfg, const YAML::Node& probes) {
  std::set<std::string> known;
  for (const auto& m : cfg.fleet.members) known.insert(m.location);
  if (!probes.IsSequence()) return;
  for (size_t i = 0; i < probes.size(); ++i) {
    YAML::Node node = probes[i].IsMap() ? probes[i]["locations"] : YAML::Node();
    YAML::Node name = probes[i].IsMap() ? probes[i]["name"] : YAML::Node();
    if (!node.IsDefined() || !name.IsScalar()) continue;
    const ProbeConfig* found = cfg.find(name.Scalar());
    if (!found || found->locations.empty()) continue;
    const auto& pc = *found;
    YAML::Mark mark = node.Mark();
    std::string path = "probes[" + std::to_string(i) + "].locations";
    if (!cfg.fleet.enabled) {
      ctx.error(mark, path, "locations need a fleet: section listing members and their locations");
      continue;
    }
    std::set<std::string> listed;
    for (const auto& l : pc.locations) {
      if (!listed.insert(l).second)
        ctx.error(mark, path, "\"" + l + "\" is listed twice");
      else if (!known.count(l))
        ctx.error(mark, path, "no fleet member is in location \"" + l + "\"");
    }
  }
}

}  // namespace

const FleetMember* FleetConfig::find(const std::string& name) const {
  for (const auto& m : members)
    if (m.name == name) return &m;
  return nullptr;
}

void parse_fleet(Section& top, Config& cfg, const YAML::Node& probes) {
  if (top.has("fleet")) {
    auto fs = top.sub("fleet");
    cfg.fleet.enabled = true;
    read_members(fs, cfg.fleet);
    if (auto v = fs.integer("replicas", 1, 1000)) cfg.fleet.replicas = static_cast<int>(*v);
    cfg.fleet.quorum = cfg.fleet.replicas;
    if (auto v = fs.integer("quorum", 1, 1000)) {
      cfg.fleet.quorum = static_cast<int>(*v);
      if (cfg.fleet.quorum > cfg.fleet.replicas)
        fs.error("quorum", "quorum " + std::to_string(cfg.fleet.quorum) +
                               " is greater than replicas " + std::to_string(cfg.fleet.replicas));
    }
    if (auto v = fs.integer("quorum_locations", 1, 1000)) {
      cfg.fleet.quorum_locations = static_cast<int>(*v);
      std::set<std::string> locations;
      for (const auto& m : cfg.fleet.members) locations.insert(m.location);
      if (!cfg.fleet.members.empty() &&
          cfg.fleet.quorum_locations > static_cast<int>(locations.size()))
        fs.error("quorum_locations", "quorum_locations " +
                                         std::to_string(cfg.fleet.quorum_locations) +
                                         " is greater than the members' " +
                                         std::to_string(locations.size()) + " location(s)");
    }
    // The fleet adds these labels to every series; a global label of the same name would clash.
    for (const auto& [k, v] : cfg.labels)
      if (k == "agent" || k == "location")
        top.error("global", "label \"" + k + "\" is set by the fleet (agent name and location)");
  }
  check_probe_locations(top.ctx(), cfg, probes);
}

}  // namespace pes
