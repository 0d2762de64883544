// The postgres probe through the built pes-agent binary against a real PostgreSQL 15: every case
// (success, wrong password, unknown database, refused port, failing query, saturation, TLS
// required, hung server) with `pes-agent probe NAME --format=json` and as 1 / 0 with the right
// reason in the running agent's /metrics; the server stopped and started again under the running
// agent; no password in /metrics, /probe?debug=true, the status API or the debug log.
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/agent_process.h"
#include "tests/support/fixture.h"

namespace {

using namespace pes::test;
using namespace std::chrono_literals;

const char* kWrongPassword = "Not-The-Pg-Password-5521";

struct Case {
  std::string name;
  std::string section;  // body of the postgres: mapping
  bool ok;
  std::string reason;  // "" when ok
  std::string message_part;
};

class PostgresE2E : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    pg_ = new Fixture("postgres");
    hang_ = new HungServer(HungMode::accept_and_hang);
    secrets_ = new TempDir("pes-pg-e2e-");
    write_file(secrets_->file("pg_password"), pg_->get("PASSWORD") + "\n");
  }
  static void TearDownTestSuite() {
    delete hang_;
    delete pg_;
    delete secrets_;
    hang_ = nullptr;
    pg_ = nullptr;
    secrets_ = nullptr;
  }

  static std::string login(const std::string& password) {
    return "host: 127.0.0.1, port: " + pg_->get("PORT") + ", dbname: " + pg_->get("DBNAME") +
           ", user: " + pg_->get("USER") + ", password: " + password;
  }
  static std::string good() { return login("\"${file:" + secrets_->file("pg_password") + "}\""); }

  static std::vector<Case> cases() {
    return {
        {"pg-ok", good() + ", max_connections_ratio: 0.9", true, "", ""},
        {"pg-wrong-password", login(kWrongPassword), false, "auth",
         "password authentication failed"},
        {"pg-unknown-db",
         "host: 127.0.0.1, port: " + pg_->get("PORT") + ", dbname: nope, user: " +
             pg_->get("USER") + ", password: \"${file:" + secrets_->file("pg_password") + "}\"",
         false, "config", "database \"nope\" does not exist"},
        {"pg-refused", "host: 127.0.0.1, port: " + std::to_string(free_port()) + ", password: x",
         false, "connect", "Connection refused"},
        {"pg-query-fails", good() + ", query: SELECT * FROM missing_table", false, "protocol",
         "42P01"},
        {"pg-saturated", good() + ", max_connections_ratio: 0.0", false, "assertion",
         "above max_connections_ratio 0.000"},
        {"pg-tls-required", good() + ", sslmode: require", false, "tls",
         "server does not support SSL, but SSL was required"},
        {"pg-hung", "host: 127.0.0.1, port: " + std::to_string(hang_->port()) + ", password: x",
         false, "timeout", "before the deadline"},
    };
  }

  static std::string config() {
    std::string yaml = "global: {interval: 1s, timeout: 900ms, failure_threshold: 1}\nprobes:\n";
    for (const auto& c : cases())
      yaml += "  - {name: " + c.name + ", service: postgresql, type: postgres, postgres: {" +
              c.section + "}}\n";
    return yaml;
  }

  TempDir dir_;
  static inline Fixture* pg_ = nullptr;
  static inline HungServer* hang_ = nullptr;
  static inline TempDir* secrets_ = nullptr;
};

TEST_F(PostgresE2E, EveryCaseThroughTheProbeCommand) {
  write_file(dir_.file("agent.yml"), config());
  auto check = run_command({PES_AGENT_BINARY, "check-config", dir_.file("agent.yml")});
  ASSERT_EQ(check.exit_code, 0) << check.out << check.err;
  for (const auto& c : cases()) {
    SCOPED_TRACE(c.name);
    auto r = run_command({PES_AGENT_BINARY, "probe", c.name,
                          "--config.file=" + dir_.file("agent.yml"), "--format=json"},
                         30s);
    EXPECT_EQ(r.exit_code, c.ok ? 0 : 2) << r.out << r.err;
    auto j = nlohmann::json::parse(r.out, nullptr, false);
    ASSERT_FALSE(j.is_discarded()) << r.out << r.err;
    EXPECT_EQ(j.value("success", !c.ok), c.ok) << r.out;
    EXPECT_EQ(j.value("reason", "?"), c.reason) << r.out;
    EXPECT_NE(j.value("message", "").find(c.message_part), std::string::npos) << r.out;
    EXPECT_EQ(j.value("target", "").find("password"), std::string::npos) << r.out;
    for (const std::string& s : {std::string(kWrongPassword), pg_->get("PASSWORD")})
      EXPECT_TRUE(r.out.find(s) == std::string::npos && r.err.find(s) == std::string::npos)
          << "password shown";
    if (c.name == "pg-hung") {
      EXPECT_LE(j.value("duration_seconds", 9.0), 1.0) << r.out;  // timeout + 100 ms
    }
  }
  auto text = run_command(
      {PES_AGENT_BINARY, "probe", "pg-unknown-db", "--config.file=" + dir_.file("agent.yml")});
  EXPECT_EQ(text.exit_code, 2);
  EXPECT_NE(text.out.find("CRITICAL - pg-unknown-db (postgres) 127.0.0.1:" + pg_->get("PORT") +
                          "/nope: config: "),
            std::string::npos)
      << text.out;
}

TEST_F(PostgresE2E, RunningAgentScrapesEveryCaseAndSurvivesARestart) {
  write_file(dir_.file("agent.yml"), config());
  AgentProcess agent(dir_.file("agent.yml"), {"--log.level=debug"});
  auto p = [](const std::string& name) { return "probe=\"" + name + "\""; };
  for (const auto& c : cases()) {
    ASSERT_TRUE(wait_for_series(agent, {"probe_success{", p(c.name)}, c.ok ? 1 : 0))
        << c.name << "\n"
        << agent.metrics() << agent.log();
    if (!c.ok) {
      EXPECT_TRUE(wait_for_series(
          agent, {"probe_last_failure_info{", p(c.name), "reason=\"" + c.reason + "\""}, 1))
          << c.name << "\n"
          << agent.metrics();
    }
  }
  std::string m = agent.metrics();
  EXPECT_GT(series_value(m, {"probe_postgres_connections_ratio{", p("pg-ok")}), 0) << m;
  EXPECT_EQ(series_value(m, {"probe_postgres_in_recovery{", p("pg-ok")}), 0) << m;
  EXPECT_EQ(series_value(m, {"probe_postgres_info{", p("pg-ok"), "version=\"15."}), 1) << m;
  EXPECT_GT(series_value(m, {"probe_postgres_connect_duration_seconds{", p("pg-ok")}), 0) << m;
  EXPECT_GE(series_value(m, {"probe_postgres_query_duration_seconds{", p("pg-ok")}), 0) << m;
  EXPECT_GT(series_value(m, {"probe_postgres_connections_ratio{", p("pg-saturated")}), 0) << m;
  EXPECT_LE(series_value(m, {"probe_duration_seconds{", p("pg-hung")}), 1.0)
      << m;  // timeout + 100 ms
  // The healthy probe kept its 1 s schedule while the hung one held a worker until each deadline.
  double runs_before = series_value(m, {"probe_runs_total{", p("pg-ok"), "result=\"success\""});
  std::this_thread::sleep_for(2500ms);
  double runs_after =
      series_value(agent.metrics(), {"probe_runs_total{", p("pg-ok"), "result=\"success\""});
  EXPECT_GE(runs_after - runs_before, 2) << runs_before << " -> " << runs_after;

  // No output shows a password.
  const std::vector<std::pair<std::string, std::string>> outputs = {
      {"/metrics", agent.metrics()},
      {"/probe pg-ok", agent.get("/probe?name=pg-ok&debug=true").body},
      {"/probe pg-wrong-password", agent.get("/probe?name=pg-wrong-password&debug=true").body},
      {"/api/v1/status", agent.get("/api/v1/status").body},
      {"/", agent.get("/").body},
  };
  for (const auto& [what, text] : outputs) {
    EXPECT_FALSE(text.empty()) << what;
    for (const std::string& s : {std::string(kWrongPassword), pg_->get("PASSWORD")})
      EXPECT_EQ(text.find(s), std::string::npos) << what << " shows a password:\n" << text;
  }
  EXPECT_NE(outputs[1].second.find("connecting to 127.0.0.1:" + pg_->get("PORT")),
            std::string::npos)
      << outputs[1].second;

  // The server goes away and comes back: 1 -> 0 (connect) -> 1, the agent keeps running.
  pg_->stop();
  EXPECT_TRUE(wait_for_series(agent, {"probe_success{", p("pg-ok")}, 0)) << agent.metrics();
  EXPECT_TRUE(
      wait_for_series(agent, {"probe_last_failure_info{", p("pg-ok"), "reason=\"connect\""}, 1))
      << agent.metrics();
  pg_->start();
  EXPECT_TRUE(wait_for_series(agent, {"probe_success{", p("pg-ok")}, 1))
      << agent.metrics() << agent.log();
  EXPECT_TRUE(agent.running());
  EXPECT_GE(
      series_value(agent.metrics(), {"probe_failures_total{", p("pg-ok"), "reason=\"connect\""}),
      1);

  // The debug log has a line per run, and no password.
  const std::string log = agent.log();
  EXPECT_NE(log.find("probe pg-wrong-password run: failure"), std::string::npos) << log;
  for (const std::string& s : {std::string(kWrongPassword), pg_->get("PASSWORD")})
    EXPECT_EQ(log.find(s), std::string::npos) << "the log shows a password";
  EXPECT_EQ(agent.stop(), 0);
}

}  // namespace
