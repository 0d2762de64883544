// Fleet placement: rendezvous hashing is the same on every member, moves only a removed member's
// probes, spreads evenly, honours locations, pulls dependencies along; and the `fleet:` section's
// errors name file:line:column.
#include <gtest/gtest.h>

#include <map>
#include <set>
#include <string>

#include "agent/config/config.h"
#include "agent/engine/placement.h"
#include "probes/registry.h"

using namespace pes;

namespace {

FleetConfig fleet_of(int members, int replicas) {
  FleetConfig f;
  f.enabled = true;
  f.replicas = replicas;
  f.quorum = replicas;
  for (int i = 0; i < members; ++i)
    f.members.push_back({"agent-" + std::to_string(i), i % 2 ? "public" : "inside"});
  return f;
}

std::string probe_name(int i) { return "probe-" + std::to_string(i); }

std::string errors_of(const std::string& text) {
  try {
    parse_config(text, "fleet.yml", probe_types());
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "(no error)";
}

const char* kFleetConfig = R"(
fleet:
  replicas: 2
  members:
    - {name: a1, location: inside}
    - {name: a2, location: inside}
    - {name: a3, location: public}
probes:
  - name: postgres
    type: tcp
    tcp: {address: "127.0.0.1:5432"}
  - name: web
    type: http
    depends_on: [postgres]
    http: {url: "http://127.0.0.1:8080/"}
  - name: entry
    type: http
    locations: [inside, public]
    http: {url: "http://127.0.0.1:8081/"}
  - name: dns
    type: tcp
    tcp: {address: "127.0.0.1:53"}
connectivity: {probes: [dns]}
)";

}  // namespace

TEST(Placement, StableHashIsFixedAcrossBuilds) {
  // Fixed values (computed by an independent Python implementation of FNV-1a + fmix64): a change
  // here would move every probe of every fleet on upgrade.
  EXPECT_EQ(stable_hash64(""), 0xefd01f60ba992926ULL);
  EXPECT_EQ(stable_hash64("postgres"), 0x4f9822452d7cc3deULL);
  EXPECT_EQ(stable_hash64("nextcloud"), 0xe593583e87ecdd54ULL);
  EXPECT_NE(stable_hash64("probe-1"), stable_hash64("probe-2"));
}

TEST(Placement, SameInputSamePlacementOnEveryMember) {
  auto f = fleet_of(5, 2);
  FleetConfig shuffled = f;
  std::swap(shuffled.members[0], shuffled.members[4]);
  std::swap(shuffled.members[1], shuffled.members[2]);
  for (int i = 0; i < 1000; ++i) {
    auto a = rendezvous(f, probe_name(i), {});
    auto b = rendezvous(f, probe_name(i), {});
    auto c = rendezvous(shuffled, probe_name(i), {});  // member order does not matter
    ASSERT_EQ(a.size(), 2u);
    EXPECT_EQ(a, b);
    EXPECT_EQ(a, c);
    EXPECT_NE(a[0], a[1]);
  }
}

TEST(Placement, RemovingOneMemberMovesOnlyItsProbes) {
  auto before = fleet_of(5, 2);
  auto after = before;
  after.members.erase(after.members.begin() + 2);  // agent-2 leaves
  int moved_away_from_others = 0, had_removed = 0;
  for (int i = 0; i < 10000; ++i) {
    auto a = rendezvous(before, probe_name(i), {});
    auto b = rendezvous(after, probe_name(i), {});
    std::set<std::string> sa(a.begin(), a.end()), sb(b.begin(), b.end());
    bool on_removed = sa.count("agent-2") > 0;
    had_removed += on_removed;
    // Every surviving member that ran the probe still runs it.
    for (const auto& m : sa)
      if (m != "agent-2" && !sb.count(m)) ++moved_away_from_others;
    if (!on_removed) {
      EXPECT_EQ(sa, sb) << probe_name(i);
    }
  }
  EXPECT_EQ(moved_away_from_others, 0);
  EXPECT_GT(had_removed, 0);
}

TEST(Placement, SpreadWithinTenPercentFor10000ProbesOver5Members) {
  auto f = fleet_of(5, 2);
  std::map<std::string, int> load;
  const int probes = 10000;
  for (int i = 0; i < probes; ++i)
    for (const auto& m : rendezvous(f, probe_name(i), {})) ++load[m];
  ASSERT_EQ(load.size(), 5u);
  double expected = probes * 2.0 / 5;
  for (const auto& [m, n] : load) {
    EXPECT_GE(n, expected * 0.9) << m;
    EXPECT_LE(n, expected * 1.1) << m;
  }
}

TEST(Placement, LocationsGetReplicasEach) {
  auto f = fleet_of(6, 2);  // inside: agent-0,2,4; public: agent-1,3,5
  std::map<std::string, std::string> loc;
  for (const auto& m : f.members) loc[m.name] = m.location;
  for (int i = 0; i < 500; ++i) {
    auto both = rendezvous(f, probe_name(i), {"inside", "public"});
    ASSERT_EQ(both.size(), 4u);
    EXPECT_EQ(loc[both[0]], "inside");
    EXPECT_EQ(loc[both[1]], "inside");
    EXPECT_EQ(loc[both[2]], "public");
    EXPECT_EQ(loc[both[3]], "public");
    auto one = rendezvous(f, probe_name(i), {"public"});
    ASSERT_EQ(one.size(), 2u);
    for (const auto& m : one) EXPECT_EQ(loc[m], "public");
  }
  f.replicas = 5;  // more replicas than a location has: all of its members
  EXPECT_EQ(rendezvous(f, "x", {"inside"}).size(), 3u);
}

TEST(Placement, ConfigIsFilteredAndLabelled) {
  auto cfg = parse_config(kFleetConfig, "fleet.yml", probe_types());
  ASSERT_TRUE(cfg->fleet.enabled);
  EXPECT_EQ(cfg->fleet.quorum, 2);
  EXPECT_EQ(cfg->fleet.quorum_locations, 1);  // the default: `quorum` alone decides
  auto pl = compute_placement(*cfg);
  ASSERT_EQ(pl.probes.size(), 4u);
  // dns is a connectivity check: each agent's own view, so every member runs it.
  EXPECT_EQ(pl.probes[3].members, (std::vector<std::string>{"a1", "a2", "a3"}));
  // entry: 2 of inside (all of it) and the only public member.
  EXPECT_EQ(pl.probes[2].members, (std::vector<std::string>{"a1", "a2", "a3"}));
  // web's members also run postgres: a dependent is judged where its dependency is seen.
  for (const auto& m : pl.probes[1].members) EXPECT_TRUE(pl.runs(pl.probes[0], m)) << m;
  size_t total = 0;
  for (const char* agent : {"a1", "a2", "a3"}) {
    auto mine = apply_placement(cfg, pl, agent);
    total += mine->probes.size();
    for (const auto& p : mine->probes) {
      const auto& e = *std::find_if(pl.probes.begin(), pl.probes.end(),
                                    [&](const auto& x) { return x.probe == p.name; });
      EXPECT_TRUE(pl.runs(e, agent));
    }
    ASSERT_GE(mine->labels.size(), 2u);
    EXPECT_EQ(mine->labels[mine->labels.size() - 2],
              (std::pair<std::string, std::string>{"agent", agent}));
    EXPECT_EQ(mine->labels.back().first, "location");
  }
  size_t expected = 0;
  for (const auto& e : pl.probes) expected += e.members.size();
  EXPECT_EQ(total, expected);
  EXPECT_THROW(apply_placement(cfg, pl, "stranger"), ConfigError);
}

TEST(Placement, WithoutFleetNothingChanges) {
  auto cfg = parse_config(R"(
probes:
  - name: web
    type: http
    http: {url: "http://127.0.0.1:8080/"}
)",
                          "plain.yml", probe_types());
  EXPECT_FALSE(cfg->fleet.enabled);
  auto pl = compute_placement(*cfg);
  auto same = apply_placement(cfg, pl, "anything");
  EXPECT_EQ(same.get(), cfg.get());
  EXPECT_TRUE(same->labels.empty());
}

TEST(Placement, FleetErrorsNamePlaces) {
  EXPECT_EQ(errors_of(R"(fleet:
  replicas: 2
  quorum: 3
  members:
    - {name: a1, location: inside}
    - {name: a1}
probes:
  - name: web
    type: http
    locations: [nowhere]
    http: {url: "http://127.0.0.1:8080/"}
)"),
            "fleet.yml:6:14: fleet.members[1].name: duplicate member \"a1\"\n"
            "fleet.yml:3:11: fleet.quorum: quorum 3 is greater than replicas 2\n"
            "fleet.yml:10:16: probes[0].locations: no fleet member is in location \"nowhere\"");
  EXPECT_EQ(errors_of(R"(fleet:
  quorum_locations: 3
  members:
    - {name: a1, location: inside}
    - {name: a2, location: public}
probes: []
)"),
            "fleet.yml:2:21: fleet.quorum_locations: quorum_locations 3 is greater than the "
            "members' 2 location(s)");
  EXPECT_NE(errors_of(R"(fleet:
  members: []
probes: []
)")
                .find("fleet.members: must be a non-empty list"),
            std::string::npos);
  EXPECT_NE(errors_of(R"(probes:
  - name: web
    type: http
    locations: [inside]
    http: {url: "http://127.0.0.1:8080/"}
)")
                .find("fleet.yml:4:16: probes[0].locations: locations need a fleet: section"),
            std::string::npos);
  EXPECT_NE(errors_of(R"(global:
  labels: {agent: x}
fleet:
  members: [{name: a1}]
probes: []
)")
                .find("label \"agent\" is set by the fleet"),
            std::string::npos);
}
