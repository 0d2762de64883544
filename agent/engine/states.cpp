#include "agent/engine/states.h"

#include <string>
#include <unordered_map>

namespace pes {

namespace {

// Whether a probe, as a dependency, explains its dependents' failures: then they are not root
// causes. A dependency whose last run failed counts before its own failure is confirmed, so a
// dependent never becomes the root cause while its dependency is still being checked.
bool troubled(const ProbeSnapshot& s, const DerivedState& d) {
  if (!s.has_run) return false;
  return d.maintenance || d.unknown || s.up == std::optional<bool>(false) ||
         s.last_result == RunResult::failure;
}

class Graph {
 public:
  explicit Graph(std::span<const ProbeView> probes) : deps_(probes.size()), users_(probes.size()) {
    std::unordered_map<std::string_view, size_t> index;
    for (size_t i = 0; i < probes.size(); ++i) index[probes[i].cfg->name] = i;
    for (size_t i = 0; i < probes.size(); ++i)
      for (const auto& d : probes[i].cfg->depends_on) {
        auto it = index.find(d);
        if (it == index.end() || it->second == i) continue;
        deps_[i].push_back(it->second);
        users_[it->second].push_back(i);
      }
  }

  // below[i]: some transitive dependency of i is troubled. The configuration has no cycles, but a
  // visit mark keeps a bad graph from recursing forever.
  std::vector<bool> troubled_below(const std::vector<bool>& bad) const {
    std::vector<int> state(deps_.size(), 0);  // 0 new, 1 visiting, 2 done
    std::vector<bool> below(deps_.size(), false);
    for (size_t i = 0; i < deps_.size(); ++i) visit(i, bad, state, below);
    return below;
  }

  // Every probe that depends on i, directly or not, in index order.
  std::vector<size_t> dependents(size_t i) const {
    std::vector<bool> seen(users_.size(), false);
    std::vector<size_t> stack = users_[i];
    while (!stack.empty()) {
      size_t u = stack.back();
      stack.pop_back();
      if (seen[u] || u == i) continue;
      seen[u] = true;
      for (size_t v : users_[u]) stack.push_back(v);
    }
    std::vector<size_t> out;
    for (size_t u = 0; u < seen.size(); ++u)
      if (seen[u]) out.push_back(u);
    return out;
  }

 private:
  void visit(size_t i, const std::vector<bool>& bad, std::vector<int>& state,
             std::vector<bool>& below) const {
    if (state[i] != 0) return;
    state[i] = 1;
    bool any = false;
    for (size_t d : deps_[i]) {
      visit(d, bad, state, below);
      any = any || bad[d] || below[d];
    }
    below[i] = any;
    state[i] = 2;
  }

  std::vector<std::vector<size_t>> deps_;
  std::vector<std::vector<size_t>> users_;
};

}  // namespace

std::vector<DerivedState> derive_states(std::span<const ProbeView> probes, double now_unix) {
  std::vector<DerivedState> out(probes.size());
  std::vector<bool> bad(probes.size(), false);
  for (size_t i = 0; i < probes.size(); ++i) {
    const ProbeSnapshot& s = *probes[i].snap;
    DerivedState& d = out[i];
    d.maintenance =
        (s.has_run && s.maintenance_reported) || any_active(probes[i].cfg->maintenance, now_unix);
    d.unknown = s.has_run && s.last_result == RunResult::unknown;
    d.degraded = s.degraded;
    bad[i] = troubled(s, d);
  }
  const Graph graph(probes);
  const std::vector<bool> below = graph.troubled_below(bad);
  for (size_t i = 0; i < probes.size(); ++i) {
    const ProbeSnapshot& s = *probes[i].snap;
    DerivedState& d = out[i];
    d.root_cause = s.has_run && s.up == std::optional<bool>(false) && !d.maintenance &&
                   !d.unknown && !probes[i].cfg->connectivity && !below[i];
    if (d.root_cause) d.takes_down = graph.dependents(i);
  }
  return out;
}

std::string_view state_name(const ProbeSnapshot& snap, const DerivedState& derived) {
  if (derived.maintenance) return "maintenance";
  if (!snap.has_run || derived.unknown || !snap.up) return "unknown";
  if (!*snap.up) return "down";
  return derived.degraded ? "degraded" : "up";
}

bool connectivity_up(std::span<const ProbeView> probes) {
  for (const auto& p : probes)
    if (p.cfg->connectivity && p.snap->has_run && !p.snap->last_ok) return false;
  return true;
}

}  // namespace pes
