// The service presets through the built pes-agent binary: every healthy and failing case of
// tests/fixtures/presets (nginx answering like Nextcloud, Collabora, Gitea, Nexus, Moodle) with
// `pes-agent probe NAME --format=json` and in the running agent's /metrics, secrets given as
// ${file:} never shown, and the SSO chain keycloak (a real OpenID issuer) -> Nextcloud OCS.
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

const char* kNcAppPassword = "Xk7Qp-3mZrT-9wLcB-4nHvD-2sJfG";
const char* kGiteaToken = "3f2b6c8e0d1a4b5c9e7f2a1b0c3d4e5f6a7b8c9d";
const char* kNexusPassword = "fixture-nexus-password";
const char* kMoodleToken = "5b1f0e2d3c4a69788796a5b4c3d2e1f0";

// What `pes-agent probe NAME` must report for one configured case.
struct Case {
  std::string name;
  std::string section;  // type: {...} line body
  bool ok;
  std::string reason;   // "" when ok
  std::string message;  // exact (empty: not checked)
};

class PresetsE2E : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    conf_dir_ = new TempDir("pes-presets-e2e-");
    const std::string presets = std::string(PES_SOURCE_DIR) + "/tests/fixtures/presets";
    std::string conf = read_file(presets + "/nginx.conf");
    for (size_t at; (at = conf.find("@PRESETS@")) != std::string::npos;)
      conf.replace(at, 9, presets);
    write_file(conf_dir_->file("presets.conf"), conf);
    nginx_ = new Fixture("nginx", {{"CONF", conf_dir_->file("presets.conf")}});
    // Secrets come from files, as in compose/agent.yml.
    write_file(conf_dir_->file("nc_app_password"), std::string(kNcAppPassword) + "\n");
    write_file(conf_dir_->file("gitea_token"), std::string(kGiteaToken) + "\n");
    write_file(conf_dir_->file("nexus_password"), std::string(kNexusPassword) + "\n");
    write_file(conf_dir_->file("moodle_token"), std::string(kMoodleToken) + "\n");
  }
  static void TearDownTestSuite() {
    delete nginx_;
    delete conf_dir_;
    nginx_ = nullptr;
    conf_dir_ = nullptr;
  }

  static std::string url(const std::string& path) {
    return "http://127.0.0.1:" + nginx_->get("PORT") + path;
  }
  static std::string secret(const std::string& name) {
    return "\"${file:" + conf_dir_->file(name) + "}\"";
  }

  static std::vector<Case> cases() {
    const std::string nc_creds =
        ", username: pes-monitor, app_password: " + secret("nc_app_password");
    const std::string nexus_creds =
        ", username: pes-monitor, password: " + secret("nexus_password");
    return {
        {"nc", "nextcloud: {url: " + url("/nextcloud/healthy") + nc_creds + "}", true, "", ""},
        {"nc-maintenance", "nextcloud: {url: " + url("/nextcloud/maintenance") + nc_creds + "}",
         false, "assertion", "Nextcloud is in maintenance mode"},
        {"nc-upgrade", "nextcloud: {url: " + url("/nextcloud/needs-upgrade") + "}", false,
         "assertion", "Nextcloud needs a database upgrade to 30.0.2 (run occ upgrade)"},
        {"nc-wrong-password",
         "nextcloud: {url: " + url("/nextcloud/healthy") +
             ", username: pes-monitor, app_password: Wrong-Wrong-Wrong-Wrong-Wrong}",
         false, "auth",
         "Nextcloud rejected the app password of user \"pes-monitor\": Current user is not logged "
         "in (HTTP "
         "401, OCS 997)"},
        {"collabora", "collabora: {url: " + url("/collabora/healthy") + "}", true, "", ""},
        {"collabora-empty", "collabora: {url: " + url("/collabora/empty") + "}", false, "assertion",
         "Collabora's WOPI discovery offers no editor (no app with an action urlsrc)"},
        {"collabora-html", "collabora: {url: " + url("/collabora/not-wopi") + "}", false,
         "protocol", ""},
        {"gitea",
         "gitea: {url: " + url("/gitea/healthy") + ", token: " + secret("gitea_token") + "}", true,
         "", ""},
        {"gitea-db-fail", "gitea: {url: " + url("/gitea/db-fail") + "}", false, "assertion",
         "Gitea health check database:ping: fail"},
        {"nexus", "nexus: {url: " + url("/nexus/healthy") + nexus_creds + "}", true, "", ""},
        {"nexus-read-only", "nexus: {url: " + url("/nexus/read-only") + "}", false, "assertion",
         "Nexus is read-only (writable check returned 503)"},
        {"nexus-unavailable", "nexus: {url: " + url("/nexus/unavailable") + "}", false,
         "http_status", "Nexus is not available (status returned 503)"},
        {"nexus-failing-check", "nexus: {url: " + url("/nexus/failing-check") + nexus_creds + "}",
         false, "assertion",
         "Nexus system check \"Blob Stores Ready\" is unhealthy: 0 of 1 blob stores are ready: "
         "default is not "
         "available"},
        {"moodle",
         "moodle: {url: " + url("/moodle/healthy") + ", token: " + secret("moodle_token") + "}",
         true, "", ""},
        {"moodle-maintenance", "moodle: {url: " + url("/moodle/maintenance") + "}", false,
         "assertion", "Moodle is in maintenance mode (login page returned HTTP 503)"},
        {"moodle-bad-token",
         "moodle: {url: " + url("/moodle/healthy") + ", token: 00000000000000000000000000000000}",
         false, "auth", "Moodle web service error: invalidtoken: Invalid token - token not found"},
        {"moodle-ws-maintenance",
         "moodle: {url: " + url("/moodle/admin-maintenance") +
             ", token: " + secret("moodle_token") + "}",
         false, "assertion",
         "Moodle web service error: sitemaintenance: The site is undergoing maintenance and is "
         "currently not "
         "available"},
    };
  }

  static std::string config(const std::string& extra = "") {
    std::string yaml = "global: {interval: 1s, timeout: 900ms, failure_threshold: 1}\nprobes:\n";
    for (const auto& c : cases()) {
      std::string type = c.section.substr(0, c.section.find(':'));
      yaml += "  - {name: " + c.name + ", service: " + type + ", type: " + type + ", " + c.section +
              "}\n";
    }
    return yaml + extra;
  }

  TempDir dir_;
  static inline Fixture* nginx_ = nullptr;
  static inline TempDir* conf_dir_ = nullptr;
};

TEST_F(PresetsE2E, EveryCaseThroughTheProbeCommand) {
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
    EXPECT_EQ(j.value("reason", ""), c.reason) << r.out;
    if (!c.message.empty()) {
      EXPECT_EQ(j.value("message", ""), c.message);
    }
    for (const char* s : {kNcAppPassword, kGiteaToken, kNexusPassword, kMoodleToken})
      EXPECT_EQ(r.out.find(s) == std::string::npos && r.err.find(s) == std::string::npos, true)
          << "secret shown";
  }
  // The text format names the reason and the service's words, with the Nagios code.
  auto text = run_command(
      {PES_AGENT_BINARY, "probe", "nexus-read-only", "--config.file=" + dir_.file("agent.yml")});
  EXPECT_EQ(text.exit_code, 2);
  EXPECT_NE(text.out.find("CRITICAL - nexus-read-only (nexus) "), std::string::npos) << text.out;
  EXPECT_NE(text.out.find(": assertion: Nexus is read-only (writable check returned 503)"),
            std::string::npos)
      << text.out;
}

TEST_F(PresetsE2E, RunningAgentExportsThePresetMetrics) {
  write_file(dir_.file("agent.yml"), config());
  AgentProcess agent(dir_.file("agent.yml"));
  for (const auto& c : cases())
    ASSERT_TRUE(
        wait_for_series(agent, {"probe_success{", "probe=\"" + c.name + "\""}, c.ok ? 1 : 0, 15s))
        << c.name << "\n"
        << agent.metrics() << agent.log();
  const std::string m = agent.metrics();
  auto p = [](const std::string& name) { return "probe=\"" + name + "\""; };
  EXPECT_EQ(series_value(m, {"probe_nextcloud_info{", p("nc"), "version=\"29.0.8\""}), 1) << m;
  EXPECT_EQ(series_value(m, {"probe_nextcloud_ocs_status_code{", p("nc")}), 200);
  EXPECT_EQ(series_value(m, {"probe_nextcloud_maintenance{", p("nc-maintenance")}), 1);
  EXPECT_EQ(series_value(m, {"probe_nextcloud_needs_db_upgrade{", p("nc-upgrade")}), 1);
  EXPECT_EQ(series_value(m, {"probe_collabora_info{", p("collabora"), "version=\"24.04.9.2\""}), 1);
  EXPECT_EQ(series_value(m, {"probe_collabora_discovery_actions{", p("collabora-empty")}), 0);
  EXPECT_EQ(
      series_value(m, {"probe_gitea_check_up{", p("gitea-db-fail"), "check=\"database:ping\""}), 0);
  EXPECT_EQ(series_value(m, {"probe_gitea_check_up{", p("gitea"), "check=\"database:ping\""}), 1);
  EXPECT_EQ(series_value(m, {"probe_http_status_code{", p("gitea-db-fail")}), 424);
  EXPECT_EQ(series_value(m, {"probe_nexus_writable{", p("nexus-read-only")}), 0);
  EXPECT_EQ(series_value(m, {"probe_nexus_check_up{", p("nexus-failing-check"),
                             "check=\"Blob Stores Ready\""}),
            0);
  EXPECT_EQ(series_value(m, {"probe_nexus_check_up{", p("nexus"), "check=\"Blob Stores Ready\""}),
            1);
  EXPECT_EQ(
      series_value(m, {"probe_moodle_info{", p("moodle"), "release=\"4.4.3 (Build: 20240902)\""}),
      1);
  EXPECT_EQ(series_value(m, {"probe_last_failure_info{", p("moodle-bad-token"), "reason=\"auth\""}),
            1);
  EXPECT_EQ(series_value(
                m, {"probe_last_failure_info{", p("nexus-unavailable"), "reason=\"http_status\""}),
            1);
  EXPECT_GE(series_value(m, {"probe_failures_total{", p("gitea-db-fail"), "reason=\"assertion\""}),
            1);

  // The status shows the services' words; no output shows a secret.
  const auto status = agent.get("/api/v1/status");
  EXPECT_NE(status.body.find("Gitea health check database:ping: fail"), std::string::npos)
      << status.body;
  const std::vector<std::pair<std::string, std::string>> outputs = {
      {"/metrics", m},
      {"/probe nc", agent.get("/probe?name=nc&debug=true").body},
      {"/probe gitea", agent.get("/probe?name=gitea&debug=true").body},
      {"/probe nexus", agent.get("/probe?name=nexus&debug=true").body},
      {"/probe moodle", agent.get("/probe?name=moodle&debug=true").body},
      {"/api/v1/status", status.body},
      {"/", agent.get("/").body},
      {"log", agent.log()},
  };
  for (const auto& [what, text] : outputs) {
    EXPECT_FALSE(text.empty()) << what;
    for (const char* s : {kNcAppPassword, kGiteaToken, kNexusPassword, kMoodleToken})
      EXPECT_EQ(text.find(s), std::string::npos) << what << " shows a secret:\n" << text;
  }
  EXPECT_NE(outputs[4].second.find("POST " + url("/moodle/healthy/webservice/rest/server.php")),
            std::string::npos)
      << outputs[4].second;
}

// Keycloak (a real OpenID issuer) issues the token; the nextcloud preset sends it to the OCS API.
TEST_F(PresetsE2E, SsoChainIntoNextcloud) {
  Fixture oidc("oidc");
  write_file(dir_.file("client_secret"), oidc.get("CLIENT_SECRET") + "\n");
  const std::string yaml =
      "global: {interval: 1s, timeout: 900ms, failure_threshold: 1}\nprobes:\n"
      "  - name: keycloak\n    type: keycloak\n    keycloak:\n      url: " +
      oidc.get("URL") + "\n      realm: " + oidc.get("REALM") +
      "\n      client_id: " + oidc.get("CLIENT_ID") +
      "\n      client_secret: \"${file:" + dir_.file("client_secret") +
      "}\"\n      audience: " + oidc.get("AUDIENCE") +
      "\n  - name: nextcloud-sso\n    service: nextcloud\n    type: nextcloud\n"
      "    depends_on: [keycloak]\n    nextcloud: {url: " +
      url("/nextcloud/healthy") + ", bearer_from: keycloak}\n";
  write_file(dir_.file("agent.yml"), yaml);

  // The probe command gets the token first (token_sources), then runs the chained probe.
  auto once = run_command({PES_AGENT_BINARY, "probe", "nextcloud-sso",
                           "--config.file=" + dir_.file("agent.yml"), "--format=json"},
                          30s);
  ASSERT_EQ(once.exit_code, 0) << once.out << once.err;
  auto j = nlohmann::json::parse(once.out, nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << once.out;
  bool ocs_ok = false;
  for (const auto& s : j["metrics"])
    ocs_ok = ocs_ok || (s.value("name", "") == "probe_nextcloud_ocs_status_code" &&
                        s.value("value", 0.0) == 200);
  EXPECT_TRUE(ocs_ok) << once.out;

  // The running agent: passes while the issuer is up; when it goes away the token is revoked
  // and the chained probe fails with auth, naming the keycloak probe.
  AgentProcess agent(dir_.file("agent.yml"));
  ASSERT_TRUE(wait_for_series(agent, {"probe_success{", "probe=\"nextcloud-sso\""}, 1, 15s))
      << agent.metrics() << agent.log();
  oidc.kill(9);  // the issuer goes away (a crash: quicker than an orderly stop)
  ASSERT_TRUE(wait_for_series(agent, {"probe_success{", "probe=\"nextcloud-sso\""}, 0, 15s))
      << agent.metrics() << agent.log();
  const std::string m = agent.metrics();
  EXPECT_EQ(
      series_value(m, {"probe_last_failure_info{", "probe=\"nextcloud-sso\"", "reason=\"auth\""}),
      1)
      << m;
  const auto status = agent.get("/api/v1/status");
  EXPECT_NE(status.body.find(
                "OCS cloud/user: no valid access token from keycloak probe \\\"keycloak\\\""),
            std::string::npos)
      << status.body;
  for (const auto& text :
       {m, status.body, agent.get("/probe?name=nextcloud-sso&debug=true").body, agent.log()})
    EXPECT_EQ(text.find("eyJ"), std::string::npos) << "a token is shown:\n" << text;
}

}  // namespace
