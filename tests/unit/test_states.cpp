// Root cause and blast radius from depends_on and the current states (chains, diamonds,
// dependencies being confirmed, maintenance, unknown, connectivity checks), at a fixed time.
#include <gtest/gtest.h>

#include <map>

#include "agent/engine/states.h"

using namespace pes;

namespace {

constexpr double U0 = 1.8e9;

// A set of probes with hand-made snapshots.
class World {
 public:
  World& probe(const std::string& name, std::vector<std::string> deps = {}) {
    ProbeConfig c;
    c.name = name;
    c.service = name + "-svc";
    c.depends_on = std::move(deps);
    cfgs_.push_back(std::move(c));
    snaps_.emplace_back();
    return *this;
  }
  // up: ran and is up; down: confirmed down; failing: up with its last run failed (confirming).
  World& set(const std::string& name, const std::string& what) {
    ProbeSnapshot& s = snaps_.at(index(name));
    s.has_run = true;
    s.up = what != "down";
    s.last_ok = what == "up";
    s.last_result = what == "up"        ? RunResult::success
                    : what == "unknown" ? RunResult::unknown
                    : what == "maint"   ? RunResult::maintenance
                                        : RunResult::failure;
    s.maintenance_reported = what == "maint";
    return *this;
  }
  World& connectivity(const std::string& name) {
    cfgs_.at(index(name)).connectivity = true;
    return *this;
  }
  std::vector<DerivedState> derive() {
    views_.clear();
    for (size_t i = 0; i < cfgs_.size(); ++i) views_.push_back(ProbeView{&cfgs_[i], &snaps_[i]});
    return derive_states(views_, U0);
  }
  size_t index(const std::string& name) const {
    for (size_t i = 0; i < cfgs_.size(); ++i)
      if (cfgs_[i].name == name) return i;
    throw std::out_of_range(name);
  }
  std::vector<std::string> names(const std::vector<size_t>& idx) const {
    std::vector<std::string> out;
    for (size_t i : idx) out.push_back(cfgs_[i].name);
    return out;
  }
  std::vector<ProbeConfig> cfgs_;
  std::vector<ProbeSnapshot> snaps_;
  std::vector<ProbeView> views_;
};

using Names = std::vector<std::string>;

}  // namespace

TEST(States, ChainTheDeepestDownProbeIsTheRootCause) {
  World w;
  w.probe("postgres").probe("keycloak", {"postgres"}).probe("nextcloud", {"keycloak"});
  w.set("postgres", "down").set("keycloak", "down").set("nextcloud", "down");
  auto d = w.derive();
  EXPECT_TRUE(d[w.index("postgres")].root_cause);
  EXPECT_FALSE(d[w.index("keycloak")].root_cause);
  EXPECT_FALSE(d[w.index("nextcloud")].root_cause);
  EXPECT_EQ(w.names(d[w.index("postgres")].takes_down), (Names{"keycloak", "nextcloud"}));
  EXPECT_TRUE(d[w.index("keycloak")].takes_down.empty());
}

TEST(States, ADependentDownWithItsDependenciesUpIsItsOwnRootCause) {
  World w;
  w.probe("postgres").probe("gitea", {"postgres"});
  w.set("postgres", "up").set("gitea", "down");
  auto d = w.derive();
  EXPECT_TRUE(d[w.index("gitea")].root_cause);
  EXPECT_FALSE(d[w.index("postgres")].root_cause);
  EXPECT_TRUE(d[w.index("gitea")].takes_down.empty());
}

TEST(States, ADependencyBeingConfirmedKeepsItsDependentsFromBeingRootCauses) {
  // gitea is already down; postgres's last run failed but is not confirmed yet: gitea must not
  // page ahead of postgres.
  World w;
  w.probe("postgres").probe("gitea", {"postgres"});
  w.set("postgres", "failing").set("gitea", "down");
  auto d = w.derive();
  EXPECT_FALSE(d[w.index("gitea")].root_cause);
  EXPECT_FALSE(d[w.index("postgres")].root_cause);  // not down yet either
}

TEST(States, DiamondBlastRadiusCountsEachDependentOnce) {
  // db <- auth, db <- files, auth <- web, files <- web
  World w;
  w.probe("db").probe("auth", {"db"}).probe("files", {"db"}).probe("web", {"auth", "files"});
  w.set("db", "down").set("auth", "down").set("files", "up").set("web", "down");
  auto d = w.derive();
  EXPECT_TRUE(d[w.index("db")].root_cause);
  EXPECT_EQ(w.names(d[w.index("db")].takes_down), (Names{"auth", "files", "web"}));
  EXPECT_FALSE(d[w.index("web")].root_cause);
  EXPECT_FALSE(d[w.index("auth")].root_cause);
}

TEST(States, TwoIndependentRootCausesInOneGraph) {
  World w;
  w.probe("db").probe("ldap").probe("sso", {"db", "ldap"}).probe("git", {"db"});
  w.set("db", "up").set("ldap", "down").set("sso", "down").set("git", "down");
  auto d = w.derive();
  EXPECT_TRUE(d[w.index("ldap")].root_cause);
  EXPECT_TRUE(d[w.index("git")].root_cause);  // db is up: git is down on its own
  EXPECT_FALSE(d[w.index("sso")].root_cause);
  EXPECT_EQ(w.names(d[w.index("ldap")].takes_down), (Names{"sso"}));
}

TEST(States, MaintenanceAndUnknownAreNeverRootCausesAndShieldTheirDependents) {
  World w;
  w.probe("db").probe("app", {"db"}).probe("other");
  w.set("db", "maint").set("app", "down").set("other", "unknown");
  auto d = w.derive();
  EXPECT_TRUE(d[w.index("db")].maintenance);
  EXPECT_FALSE(d[w.index("db")].root_cause);
  EXPECT_FALSE(d[w.index("app")].root_cause);  // its dependency is in maintenance
  EXPECT_TRUE(d[w.index("other")].unknown);
  EXPECT_FALSE(d[w.index("other")].root_cause);
  EXPECT_EQ(state_name(w.snaps_[w.index("db")], d[w.index("db")]), "maintenance");
  EXPECT_EQ(state_name(w.snaps_[w.index("other")], d[w.index("other")]), "unknown");
  EXPECT_EQ(state_name(w.snaps_[w.index("app")], d[w.index("app")]), "down");
}

TEST(States, AConfiguredWindowPutsAProbeInMaintenanceBeforeItRuns) {
  World w;
  w.probe("db");
  MaintenanceWindow win;
  win.start_minute = 0;
  win.duration = std::chrono::hours(24);
  w.cfgs_[0].maintenance.push_back(win);
  auto d = w.derive();
  EXPECT_TRUE(d[0].maintenance);
}

TEST(States, ConnectivityChecksAreNotRootCausesAndDecideConnectivityUp) {
  World w;
  w.probe("proxy").connectivity("proxy").probe("app");
  w.set("proxy", "down").set("app", "unknown");
  auto d = w.derive();
  EXPECT_FALSE(d[w.index("proxy")].root_cause);
  EXPECT_FALSE(connectivity_up(w.views_));
  w.set("proxy", "up");
  w.derive();
  EXPECT_TRUE(connectivity_up(w.views_));
}

TEST(States, ProbesThatHaveNotRunAreNeitherRootCausesNorTrouble) {
  World w;
  w.probe("db").probe("app", {"db"});
  w.set("app", "down");
  auto d = w.derive();
  EXPECT_TRUE(d[w.index("app")].root_cause);
  EXPECT_FALSE(d[w.index("db")].root_cause);
  EXPECT_EQ(state_name(w.snaps_[w.index("db")], d[w.index("db")]), "unknown");
}
