// The agent's states through the built binary: a failing connectivity check makes the other
// probes' failures unknown (no failure counted, probe_up kept); a configured maintenance window
// sets probe_maintenance and keeps failures from counting; PostgreSQL killed under a dependent
// makes postgres the root cause with its blast radius, and the dependent not.
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <string>
#include <thread>

#include "tests/support/agent_process.h"
#include "tests/support/fixture.h"

namespace {

using namespace pes::test;
using namespace std::chrono_literals;

std::string refused() { return "\"127.0.0.1:" + std::to_string(free_port()) + "\""; }

std::string p(const std::string& name) { return "probe=\"" + name + "\""; }

class StatesE2E : public ::testing::Test {
 protected:
  TempDir dir_{"pes-states-e2e-"};
};

TEST_F(StatesE2E, AFailingConnectivityCheckMakesOtherFailuresUnknown) {
  write_file(dir_.file("agent.yml"),
             "global: {interval: 1s, timeout: 500ms, failure_threshold: 2}\n"
             "connectivity: {probes: [proxy]}\n"
             "probes:\n"
             "  - {name: proxy, type: tcp, tcp: {address: " +
                 refused() +
                 "}}\n"
                 "  - {name: app, type: tcp, tcp: {address: " +
                 refused() + "}}\n");
  AgentProcess agent(dir_.file("agent.yml"));
  ASSERT_TRUE(wait_for_series(agent, {"probe_unknown{", p("app")}, 1, 15s)) << agent.metrics();
  ASSERT_TRUE(wait_for_series(agent, {"probe_runs_total{", p("app"), "result=\"unknown\""}, 3, 15s))
      << agent.metrics();
  const std::string m = agent.metrics();
  EXPECT_EQ(series_value(m, {"pes_agent_connectivity_up"}), 0) << m;
  // No run of app could be judged: it has no damped state to export yet.
  EXPECT_TRUE(std::isnan(series_value(m, {"probe_up{", p("app")}))) << m;
  EXPECT_EQ(series_value(m, {"probe_runs_total{", p("app"), "result=\"failure\""}), 0) << m;
  EXPECT_EQ(series_value(m, {"probe_root_cause{", p("app")}), 0) << m;
  // The connectivity check itself counts normally.
  EXPECT_GE(series_value(m, {"probe_runs_total{", p("proxy"), "result=\"failure\""}), 1) << m;
  EXPECT_EQ(series_value(m, {"probe_unknown{", p("proxy")}), 0) << m;
  const auto status = agent.get("/api/v1/status");
  EXPECT_NE(status.body.find("\"connectivity_up\": false"), std::string::npos) << status.body;
  EXPECT_NE(status.body.find("\"unknown\": true"), std::string::npos) << status.body;
  EXPECT_NE(agent.get("/").body.find("cannot see the platform"), std::string::npos);
}

TEST_F(StatesE2E, AConfiguredWindowPutsAFailingProbeInMaintenance) {
  // A window that covers every moment: every weekday from 00:00 for 24 h.
  write_file(dir_.file("agent.yml"),
             "global: {interval: 1s, timeout: 500ms, failure_threshold: 1}\n"
             "maintenance:\n"
             "  - {probes: [db], start: \"00:00\", duration: 24h, time_zone: Europe/Berlin}\n"
             "probes:\n"
             "  - {name: db, type: tcp, tcp: {address: " +
                 refused() +
                 "}}\n"
                 "  - {name: other, type: tcp, tcp: {address: " +
                 refused() + "}}\n");
  AgentProcess agent(dir_.file("agent.yml"));
  ASSERT_TRUE(
      wait_for_series(agent, {"probe_runs_total{", p("db"), "result=\"maintenance\""}, 2, 15s))
      << agent.metrics();
  ASSERT_TRUE(wait_for_series(agent, {"probe_up{", p("other")}, 0, 15s));
  const std::string m = agent.metrics();
  EXPECT_EQ(series_value(m, {"probe_maintenance{", p("db")}), 1) << m;
  EXPECT_EQ(series_value(m, {"probe_maintenance{", p("other")}), 0) << m;
  EXPECT_EQ(series_value(m, {"probe_runs_total{", p("db"), "result=\"failure\""}), 0) << m;
  EXPECT_EQ(series_value(m, {"probe_root_cause{", p("db")}), 0) << m;
  EXPECT_EQ(series_value(m, {"probe_root_cause{", p("other")}), 1) << m;
  EXPECT_NE(agent.get("/api/v1/status").body.find("\"state\": \"maintenance\""), std::string::npos);
}

TEST_F(StatesE2E, PostgresKilledIsTheRootCauseAndNamesWhatItTakesDown) {
  Fixture pg("postgres");
  write_file(dir_.file("pw"), pg.get("PASSWORD") + "\n");
  const std::string login = "host: 127.0.0.1, port: " + pg.get("PORT") +
                            ", dbname: " + pg.get("DBNAME") + ", user: " + pg.get("USER") +
                            ", password: \"${file:" + dir_.file("pw") + "}\"";
  // `app` stands for a service that fails when its database does (it queries the same server).
  write_file(dir_.file("agent.yml"),
             "global: {interval: 3s, timeout: 1s, failure_threshold: 3}\n"
             "probes:\n"
             "  - {name: postgres, type: postgres, postgres: {" +
                 login +
                 "}}\n"
                 "  - {name: app, service: web, type: postgres, depends_on: [postgres], "
                 "postgres: {" +
                 login +
                 ", query: SELECT 2}}\n"
                 "  - {name: portal, type: tcp, depends_on: [app], tcp: {address: \"127.0.0.1:" +
                 pg.get("PORT") + "\"}}\n");
  AgentProcess agent(dir_.file("agent.yml"));
  ASSERT_TRUE(wait_for_series(agent, {"probe_up{", p("app")}, 1, 15s)) << agent.metrics();
  ASSERT_TRUE(wait_for_series(agent, {"probe_up{", p("postgres")}, 1, 15s));
  EXPECT_EQ(series_value(agent.metrics(), {"probe_root_cause{", p("postgres")}), 0);
  const auto killed = std::chrono::steady_clock::now();
  pg.kill(9);
  ASSERT_TRUE(wait_for_series(agent, {"probe_root_cause{", p("postgres")}, 1, 20s))
      << agent.metrics() << agent.log();
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - killed).count();
  const std::string m = agent.metrics();
  EXPECT_EQ(series_value(m, {"probe_up{", p("postgres")}), 0) << m;
  EXPECT_EQ(series_value(m, {"probe_root_cause{", p("app")}), 0) << m;
  EXPECT_EQ(series_value(m, {"probe_takes_down_info{", p("postgres"), "dependent=\"app\"",
                             "dependent_service=\"web\""}),
            1)
      << m;
  // The transitive dependent is in the blast radius too (whatever its own state).
  EXPECT_EQ(series_value(m, {"probe_takes_down_info{", p("postgres"), "dependent=\"portal\""}), 1)
      << m;
  // Confirm window 2 s (2/3 of 3 s): at worst one interval to the first failure, then the window.
  EXPECT_LT(seconds, 3 + 2 + 3) << m;
  // The dependent never was the root cause on the way (it has no series saying so now either).
  EXPECT_TRUE(std::isnan(series_value(m, {"probe_takes_down_info{", p("app")}))) << m;
  const auto status = agent.get("/");
  EXPECT_NE(status.body.find("takes down: app, portal"), std::string::npos) << status.body;
}

}  // namespace
