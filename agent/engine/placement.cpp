#include "agent/engine/placement.h"

#include <algorithm>
#include <map>
#include <set>

namespace pes {
namespace {

uint64_t fmix64(uint64_t k) {
  k ^= k >> 33;
  k *= 0xff51afd7ed558ccdULL;
  k ^= k >> 33;
  k *= 0xc4ceb9fe1a85ec53ULL;
  k ^= k >> 33;
  return k;
}

// The weight of one member for one probe: both names count, neither alone decides.
uint64_t weight(uint64_t probe_hash, uint64_t member_hash) {
  return fmix64(probe_hash ^ fmix64(member_hash + 0x9e3779b97f4a7c15ULL));
}

struct Scored {
  uint64_t w;
  const FleetMember* m;
};

// The `n` members of `pool` with the highest weight for this probe, highest first.
void top_n(std::vector<Scored>& pool, size_t n, std::vector<std::string>& out) {
  n = std::min(n, pool.size());
  std::partial_sort(pool.begin(), pool.begin() + static_cast<std::ptrdiff_t>(n), pool.end(),
                    [](const Scored& a, const Scored& b) {
                      return a.w != b.w ? a.w > b.w : a.m->name < b.m->name;
                    });
  for (size_t i = 0; i < n; ++i) out.push_back(pool[i].m->name);
}

// Every probe `name` needs on the same agent to work and to judge root causes: depends_on and
// token sources (bearer_from), transitively.
void needed_by(const std::map<std::string, const ProbeConfig*>& by_name, const std::string& name,
               std::set<std::string>& out) {
  auto it = by_name.find(name);
  if (it == by_name.end()) return;
  std::vector<std::string> next = it->second->depends_on;
  if (it->second->probe)
    for (auto& t : it->second->probe->token_sources()) next.push_back(std::move(t));
  for (const auto& d : next)
    if (out.insert(d).second) needed_by(by_name, d, out);
}

}  // namespace

uint64_t stable_hash64(std::string_view s) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (unsigned char c : s) {
    h ^= c;
    h *= 0x100000001b3ULL;
  }
  return fmix64(h);
}

std::vector<std::string> rendezvous(const FleetConfig& fleet, const std::string& probe,
                                    const std::vector<std::string>& locations) {
  uint64_t ph = stable_hash64(probe);
  std::vector<std::string> out;
  auto pool_of = [&](const std::string* location) {
    std::vector<Scored> pool;
    for (const auto& m : fleet.members)
      if (!location || m.location == *location)
        pool.push_back(Scored{weight(ph, stable_hash64(m.name)), &m});
    return pool;
  };
  size_t n = static_cast<size_t>(std::max(1, fleet.replicas));
  if (locations.empty()) {
    auto pool = pool_of(nullptr);
    top_n(pool, n, out);
  } else {
    for (const auto& l : locations) {
      auto pool = pool_of(&l);
      top_n(pool, n, out);
    }
  }
  return out;
}

bool Placement::runs(const Entry& e, const std::string& member) const {
  return std::find(e.members.begin(), e.members.end(), member) != e.members.end();
}

Placement compute_placement(const Config& cfg) {
  Placement pl;
  const auto& members = cfg.fleet.members;
  std::map<std::string, const ProbeConfig*> by_name;
  std::map<std::string, size_t> index;
  for (const auto& p : cfg.probes) by_name[p.name] = &p;
  std::map<std::string, size_t> member_index;
  for (size_t i = 0; i < members.size(); ++i) member_index[members[i].name] = i;
  // runs[probe][member]: chosen, or needed by a probe chosen there.
  std::vector<std::vector<bool>> runs(cfg.probes.size(), std::vector<bool>(members.size()));
  for (size_t i = 0; i < cfg.probes.size(); ++i) index[cfg.probes[i].name] = i;
  pl.probes.reserve(cfg.probes.size());
  for (size_t i = 0; i < cfg.probes.size(); ++i) {
    const auto& p = cfg.probes[i];
    Placement::Entry e;
    e.probe = p.name;
    // A connectivity check says whether *this* agent sees the platform: every member runs it.
    if (p.connectivity)
      for (const auto& m : members) e.chosen.push_back(m.name);
    else
      e.chosen = rendezvous(cfg.fleet, p.name, p.locations);
    std::set<std::string> needed;
    needed_by(by_name, p.name, needed);
    for (const auto& m : e.chosen) {
      size_t mi = member_index.at(m);
      runs[i][mi] = true;
      for (const auto& d : needed)
        if (index.count(d)) runs[index[d]][mi] = true;
    }
    pl.probes.push_back(std::move(e));
  }
  pl.per_member.assign(members.size(), 0);
  for (size_t i = 0; i < pl.probes.size(); ++i)
    for (size_t mi = 0; mi < members.size(); ++mi)
      if (runs[i][mi]) {
        pl.probes[i].members.push_back(members[mi].name);
        ++pl.per_member[mi];
      }
  return pl;
}

std::shared_ptr<const Config> apply_placement(std::shared_ptr<const Config> cfg,
                                              const Placement& placement,
                                              const std::string& agent) {
  if (!cfg->fleet.enabled) return cfg;
  const FleetMember* self = cfg->fleet.find(agent);
  if (!self) {
    ConfigIssue issue;
    issue.file = cfg->file;
    issue.path = "fleet.members";
    std::string names;
    for (const auto& m : cfg->fleet.members) names += (names.empty() ? "" : ", ") + m.name;
    issue.message =
        "this agent (--agent.name=" + agent + ") is not a fleet member (members: " + names + ")";
    throw ConfigError({issue});
  }
  auto mine = std::make_shared<Config>(*cfg);
  mine->probes.clear();
  mine->labels.emplace_back("agent", self->name);
  mine->labels.emplace_back("location", self->location);
  uint64_t where = stable_hash64(self->name + "\n" + self->location);
  for (size_t i = 0; i < cfg->probes.size(); ++i) {
    if (!placement.runs(placement.probes[i], agent)) continue;
    ProbeConfig pc = cfg->probes[i];
    pc.fingerprint ^= where;  // the labels are part of every series the probe writes
    mine->probes.push_back(std::move(pc));
  }
  return mine;
}

}  // namespace pes
