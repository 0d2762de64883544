#include "agent/web/fleet_status.h"

namespace pes {
namespace {

constexpr size_t kHtmlProbeRows = 500;

std::string escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '&')
      out += "&amp;";
    else if (c == '<')
      out += "&lt;";
    else if (c == '>')
      out += "&gt;";
    else if (c == '"')
      out += "&quot;";
    else
      out += c;
  }
  return out;
}

std::string joined(const std::vector<std::string>& names) {
  std::string s;
  for (const auto& n : names) s += (s.empty() ? "" : ", ") + n;
  return s;
}

}  // namespace

nlohmann::json render_fleet_json(const FleetView& fv) {
  const FleetConfig& f = fv.fleet;
  const FleetMember* self = f.find(fv.agent);
  nlohmann::json j;
  j["agent"] = fv.agent;
  j["location"] = self ? self->location : "";
  j["replicas"] = f.replicas;
  j["quorum"] = f.quorum;
  j["quorum_locations"] = f.quorum_locations;
  auto& members = j["members"] = nlohmann::json::array();
  for (size_t i = 0; i < f.members.size(); ++i)
    members.push_back({{"name", f.members[i].name},
                       {"location", f.members[i].location},
                       {"probes", fv.placement.per_member[i]}});
  auto& list = j["placement"] = nlohmann::json::array();
  for (const auto& e : fv.placement.probes)
    list.push_back({{"probe", e.probe},
                    {"members", e.members},
                    {"chosen", e.chosen},
                    {"here", fv.placement.runs(e, fv.agent)}});
  return j;
}

std::string render_fleet_html(const FleetView& fv) {
  const FleetConfig& f = fv.fleet;
  std::string h =
      "<section id=\"fleet\"><h2>Fleet</h2>\n<div class=\"meta\">This agent: <b>" +
      escape(fv.agent) + "</b> · each probe on " + std::to_string(f.replicas) +
      " member(s) per location · a page needs " + std::to_string(f.quorum) +
      " agreeing replica(s)" +
      (f.quorum_locations > 1 ? " in " + std::to_string(f.quorum_locations) + " location(s)"
                              : std::string()) +
      "</div>\n<table class=\"meta\"><tr><th>member</th>"
      "<th>location</th><th>probes</th></tr>\n";
  for (size_t i = 0; i < f.members.size(); ++i)
    h += "<tr><td>" + escape(f.members[i].name) + "</td><td>" + escape(f.members[i].location) +
         "</td><td>" + std::to_string(fv.placement.per_member[i]) + "</td></tr>\n";
  h += "</table>\n<table class=\"meta\"><tr><th>probe</th><th>run by</th></tr>\n";
  size_t shown = 0;
  for (const auto& e : fv.placement.probes) {
    if (shown++ == kHtmlProbeRows) break;
    h += "<tr><td>" + escape(e.probe) + "</td><td>" + escape(joined(e.members)) + "</td></tr>\n";
  }
  h += "</table>\n";
  if (fv.placement.probes.size() > kHtmlProbeRows)
    h += "<div class=\"meta\">" + std::to_string(fv.placement.probes.size() - kHtmlProbeRows) +
         " more in <a href=\"/api/v1/status\">/api/v1/status</a></div>\n";
  return h + "</section>\n";
}

}  // namespace pes
