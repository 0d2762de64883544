// The ldap probe through the built pes-agent binary against a real slapd with TLS: every case
// (bind, wrong password, unknown DN, search with one and no entries, StartTLS, LDAPS trusted and
// untrusted, refused port, hung server) with `pes-agent probe NAME --format=json` and as 1 / 0
// with the right reason and result code in the running agent's /metrics; slapd killed and
// restarted under the running agent; no password in /metrics, /probe?debug=true, the status API
// or the debug log.
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

const char* kWrongPassword = "Not-The-Ldap-Password-8813";

struct Case {
  std::string name;
  std::string section;  // body of the ldap: mapping
  bool ok;
  std::string reason;  // "" when ok
  std::string message_part;
  double result_code;  // expected probe_ldap_result_code, NaN when none
};

class LdapE2E : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    slapd_ = new Fixture("slapd", {{"TLS", "1"}});
    hang_ = new HungServer(HungMode::accept_and_hang);
    secrets_ = new TempDir("pes-ldap-e2e-");
    write_file(secrets_->file("ldap_password"), slapd_->get("USER_PASSWORD") + "\n");
  }
  static void TearDownTestSuite() {
    delete hang_;
    delete slapd_;
    delete secrets_;
    hang_ = nullptr;
    slapd_ = nullptr;
    secrets_ = nullptr;
  }

  static std::string alice(const std::string& password = "") {
    return "bind_dn: \"" + slapd_->get("USER_DN") + "\", password: " +
           (password.empty() ? "\"${file:" + secrets_->file("ldap_password") + "}\"" : password);
  }
  static std::string ca() { return "tls: {ca_file: " + slapd_->get("CA_FILE") + "}"; }

  static std::vector<Case> cases() {
    const std::string url = "url: " + slapd_->get("URL");
    const std::string ldaps = "url: " + slapd_->get("LDAPS_URL");
    const std::string people = "\"" + slapd_->get("PEOPLE_DN") + "\"";
    const double none = std::nan("");
    return {
        {"ldap-ok",
         url + ", " + alice() + ", search: {base: " + people + ", filter: \"(uid=alice)\"}", true,
         "", "", 0},
        {"ldap-wrong-password", url + ", " + alice(kWrongPassword), false, "auth",
         "Invalid credentials", 49},
        {"ldap-unknown-dn",
         url + ", bind_dn: \"uid=nobody," + slapd_->get("PEOPLE_DN") + "\", password: guess", false,
         "auth", "Invalid credentials", 49},
        {"ldap-search-none",
         url + ", " + alice() + ", search: {base: " + people + ", filter: \"(uid=nobody)\"}", false,
         "assertion", "search found 0 entries, fewer than min_entries 1", 0},
        {"ldap-starttls", url + ", start_tls: true, " + alice() + ", " + ca(), true, "", "", 0},
        {"ldaps",
         ldaps + ", " + alice() + ", " + ca() + ", search: {base: " + people +
             ", scope: one, min_entries: 2}",
         true, "", "", 0},
        {"ldaps-untrusted", ldaps + ", " + alice(), false, "tls", "certificate verification failed",
         none},
        {"ldap-refused", "url: \"ldap://127.0.0.1:" + std::to_string(free_port()) + "\"", false,
         "connect", "Connection refused", none},
        {"ldaps-hung",
         "url: \"ldaps://127.0.0.1:" + std::to_string(hang_->port()) + "\", " + alice() + ", " +
             ca(),
         false, "timeout", "did not finish before the deadline", none},
    };
  }

  static std::string config() {
    std::string yaml = "global: {interval: 1s, timeout: 900ms, failure_threshold: 1}\nprobes:\n";
    for (const auto& c : cases())
      yaml +=
          "  - {name: " + c.name + ", service: openldap, type: ldap, ldap: {" + c.section + "}}\n";
    return yaml;
  }

  TempDir dir_;
  static inline Fixture* slapd_ = nullptr;
  static inline HungServer* hang_ = nullptr;
  static inline TempDir* secrets_ = nullptr;
};

TEST_F(LdapE2E, EveryCaseThroughTheProbeCommand) {
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
    double code = std::nan("");
    for (const auto& s : j["metrics"])
      if (s.value("name", "") == "probe_ldap_result_code") code = s.value("value", -1.0);
    if (std::isnan(c.result_code)) {
      EXPECT_TRUE(std::isnan(code)) << r.out;
    } else {
      EXPECT_EQ(code, c.result_code) << r.out;
    }
    for (const std::string& s : {std::string(kWrongPassword), slapd_->get("USER_PASSWORD")})
      EXPECT_TRUE(r.out.find(s) == std::string::npos && r.err.find(s) == std::string::npos)
          << "password shown";
    if (c.name == "ldaps-hung") {
      EXPECT_LE(j.value("duration_seconds", 9.0), 1.0) << r.out;  // timeout + 100 ms
    }
  }
}

TEST_F(LdapE2E, RunningAgentScrapesEveryCaseAndSurvivesARestart) {
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
  const std::string m = agent.metrics();
  EXPECT_EQ(series_value(m, {"probe_ldap_result_code{", p("ldap-wrong-password")}), 49) << m;
  EXPECT_EQ(series_value(m, {"probe_ldap_result_code{", p("ldap-ok")}), 0) << m;
  EXPECT_EQ(series_value(m, {"probe_ldap_search_entries{", p("ldap-ok")}), 1) << m;
  EXPECT_EQ(series_value(m, {"probe_ldap_search_entries{", p("ldaps")}), 2) << m;
  EXPECT_EQ(series_value(m, {"probe_ldap_search_entries{", p("ldap-search-none")}), 0) << m;
  EXPECT_GT(series_value(m, {"probe_ldap_bind_duration_seconds{", p("ldap-ok")}), 0) << m;
  EXPECT_GE(series_value(m, {"probe_ldap_search_duration_seconds{", p("ldap-ok")}), 0) << m;
  EXPECT_GT(series_value(m, {"probe_ssl_earliest_cert_expiry{", p("ldaps")}), 1e9) << m;
  EXPECT_GT(series_value(m, {"probe_ssl_earliest_cert_expiry{", p("ldap-starttls")}), 1e9) << m;
  EXPECT_LE(series_value(m, {"probe_duration_seconds{", p("ldaps-hung")}), 1.0)
      << m;  // timeout + 100 ms
  EXPECT_GE(series_value(m, {"probe_failures_total{", p("ldap-wrong-password"), "reason=\"auth\""}),
            1)
      << m;
  // The healthy probe kept its 1 s schedule while the hung one held a worker until each deadline.
  double runs_before = series_value(m, {"probe_runs_total{", p("ldap-ok"), "result=\"success\""});
  std::this_thread::sleep_for(2500ms);
  double runs_after =
      series_value(agent.metrics(), {"probe_runs_total{", p("ldap-ok"), "result=\"success\""});
  EXPECT_GE(runs_after - runs_before, 2) << runs_before << " -> " << runs_after;

  const std::vector<std::pair<std::string, std::string>> outputs = {
      {"/metrics", agent.metrics()},
      {"/probe ldap-ok", agent.get("/probe?name=ldap-ok&debug=true").body},
      {"/probe ldap-wrong-password", agent.get("/probe?name=ldap-wrong-password&debug=true").body},
      {"/probe ldap-starttls", agent.get("/probe?name=ldap-starttls&debug=true").body},
      {"/api/v1/status", agent.get("/api/v1/status").body},
      {"/", agent.get("/").body},
  };
  for (const auto& [what, text] : outputs) {
    EXPECT_FALSE(text.empty()) << what;
    for (const std::string& s : {std::string(kWrongPassword), slapd_->get("USER_PASSWORD")})
      EXPECT_EQ(text.find(s), std::string::npos) << what << " shows a password:\n" << text;
  }
  EXPECT_NE(outputs[2].second.find("simple bind as " + slapd_->get("USER_DN")), std::string::npos)
      << outputs[2].second;

  // slapd crashes and comes back: 1 -> 0 (connect) -> 1, the agent keeps running.
  slapd_->kill(9);
  EXPECT_TRUE(wait_for_series(agent, {"probe_success{", p("ldap-ok")}, 0)) << agent.metrics();
  EXPECT_TRUE(
      wait_for_series(agent, {"probe_last_failure_info{", p("ldap-ok"), "reason=\"connect\""}, 1))
      << agent.metrics();
  slapd_->start();
  EXPECT_TRUE(wait_for_series(agent, {"probe_success{", p("ldap-ok")}, 1))
      << agent.metrics() << agent.log();
  EXPECT_TRUE(wait_for_series(agent, {"probe_success{", p("ldaps")}, 1)) << agent.metrics();
  EXPECT_TRUE(agent.running());

  const std::string log = agent.log();
  EXPECT_NE(log.find("probe ldap-wrong-password run: failure"), std::string::npos) << log;
  for (const std::string& s : {std::string(kWrongPassword), slapd_->get("USER_PASSWORD")})
    EXPECT_EQ(log.find(s), std::string::npos) << "the log shows a password";
  EXPECT_EQ(agent.stop(), 0);
}

}  // namespace
