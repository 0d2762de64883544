// The service presets (nextcloud, collabora, gitea, nexus, moodle) through the engine against a
// real nginx answering with the services' recorded responses (tests/fixtures/presets), the SSO
// chain through a TokenStore publish, and transport failures (refused, hung).
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <functional>
#include <memory>

#include "agent/config/config.h"
#include "agent/engine/engine.h"
#include "probes/registry.h"
#include "tests/support/fixture.h"

using namespace pes;
using namespace pes::test;
using namespace std::chrono_literals;

namespace {

const char* kNcAppPassword = "Xk7Qp-3mZrT-9wLcB-4nHvD-2sJfG";
const char* kGiteaToken = "3f2b6c8e0d1a4b5c9e7f2a1b0c3d4e5f6a7b8c9d";
const char* kMoodleToken = "5b1f0e2d3c4a69788796a5b4c3d2e1f0";

class PresetsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    conf_dir_ = new TempDir("pes-presets-");
    const std::string presets = std::string(PES_SOURCE_DIR) + "/tests/fixtures/presets";
    std::string conf = read_file(presets + "/nginx.conf");
    for (size_t at; (at = conf.find("@PRESETS@")) != std::string::npos;)
      conf.replace(at, 9, presets);
    write_file(conf_dir_->file("presets.conf"), conf);
    nginx_ = new Fixture("nginx", {{"CONF", conf_dir_->file("presets.conf")}});
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

  // Runs probe "p" of `type` with the given section body (YAML flow mapping content) once;
  // `before` may publish tokens. With bearer_from, a keycloak probe "kc" exists (never run).
  static Engine::AdHocResult run(const std::string& type, const std::string& section,
                                 const std::function<void(Engine&)>& before = {},
                                 const std::string& timeout = "2s") {
    std::string yaml = "global: {interval: 10s, timeout: " + timeout +
                       "}\nprobes:\n  - {name: p, type: " + type + ", " + type + ": {" + section +
                       "}}\n";
    if (section.find("bearer_from") != std::string::npos)
      yaml +=
          "  - {name: kc, type: keycloak, keycloak: {url: \"http://127.0.0.1:9\", realm: pes, "
          "client_secret: s}}\n";
    auto cfg = parse_config(yaml, "test.yml", probe_types());
    EngineOptions opts;
    opts.schedule = false;
    Engine engine(opts);
    engine.apply(cfg);
    engine.start();
    if (before) before(engine);
    auto r = engine.run_now("p", true);
    engine.stop();
    return r;
  }

  static Fixture* nginx_;
  static TempDir* conf_dir_;
};
Fixture* PresetsTest::nginx_ = nullptr;
TempDir* PresetsTest::conf_dir_ = nullptr;

// The value of the sample `name` whose labels include every "k=v" of `labels`, or NaN.
double sample(const Outcome& o, const std::string& name, const Labels& labels = {}) {
  for (const auto& s : o.samples) {
    if (s.name != name) continue;
    bool all = true;
    for (const auto& want : labels) {
      bool found = false;
      for (const auto& have : s.labels) found = found || have == want;
      all = all && found;
    }
    if (all) return s.value;
  }
  return std::nan("");
}

std::string label(const Outcome& o, const std::string& name, const std::string& key) {
  for (const auto& s : o.samples)
    if (s.name == name)
      for (const auto& [k, v] : s.labels)
        if (k == key) return v;
  return "<none>";
}

int count(const Outcome& o, const std::string& name) {
  int n = 0;
  for (const auto& s : o.samples) n += s.name == name;
  return n;
}

void publish(Engine& e, const std::string& token) {
  e.tokens().publish("kc", token, std::chrono::system_clock::now() + 5min);
}

}  // namespace

// ------------------------------------------------------------------------------- Nextcloud

TEST_F(PresetsTest, NextcloudHealthy) {
  auto r = run("nextcloud", "url: " + url("/nextcloud/healthy"));
  ASSERT_TRUE(r.outcome.ok) << r.outcome.message;
  EXPECT_EQ(label(r.outcome, "probe_nextcloud_info", "version"), "29.0.8");
  EXPECT_EQ(label(r.outcome, "probe_nextcloud_info", "product"), "Nextcloud");
  EXPECT_EQ(sample(r.outcome, "probe_nextcloud_maintenance"), 0);
  EXPECT_EQ(sample(r.outcome, "probe_nextcloud_needs_db_upgrade"), 0);
  EXPECT_EQ(sample(r.outcome, "probe_http_status_code"), 200);
  EXPECT_EQ(count(r.outcome, "probe_nextcloud_ocs_status_code"), 0)
      << "no credentials, no OCS call";
  EXPECT_EQ(r.trace.find("ocs/v2.php"), std::string::npos) << r.trace;
}

TEST_F(PresetsTest, NextcloudAppPassword) {
  auto r = run("nextcloud", "url: " + url("/nextcloud/healthy/") +
                                ", username: pes-monitor, app_password: " + kNcAppPassword);
  ASSERT_TRUE(r.outcome.ok) << r.outcome.message;
  EXPECT_EQ(sample(r.outcome, "probe_nextcloud_ocs_status_code"), 200);
  EXPECT_NE(r.trace.find("/nextcloud/healthy/ocs/v2.php/cloud/user?format=json"), std::string::npos)
      << r.trace;
  EXPECT_EQ(r.trace.find("healthy//"), std::string::npos)
      << "the base URL's trailing slash is dropped";
  EXPECT_NE(r.trace.find("user \"pes-monitor\""), std::string::npos) << r.trace;
  EXPECT_EQ(r.trace.find(kNcAppPassword), std::string::npos) << "secret in the debug trace";
}

TEST_F(PresetsTest, NextcloudWrongAppPasswordIsAuth) {
  auto r =
      run("nextcloud", "url: " + url("/nextcloud/healthy") +
                           ", username: pes-monitor, app_password: Wrong-Wrong-Wrong-Wrong-Wrong");
  ASSERT_FALSE(r.outcome.ok);
  EXPECT_EQ(r.outcome.reason, Reason::auth);
  EXPECT_EQ(
      r.outcome.message,
      "Nextcloud rejected the app password of user \"pes-monitor\": Current user is not logged in "
      "(HTTP 401, OCS 997)");
  EXPECT_EQ(sample(r.outcome, "probe_nextcloud_ocs_status_code"), 997);
  // status.php passed before: its metrics are still exported.
  EXPECT_EQ(sample(r.outcome, "probe_nextcloud_maintenance"), 0);
  EXPECT_EQ(r.outcome.message.find("Wrong-Wrong"), std::string::npos);
}

TEST_F(PresetsTest, NextcloudMaintenance) {
  auto r = run("nextcloud", "url: " + url("/nextcloud/maintenance") +
                                ", username: pes-monitor, app_password: " + kNcAppPassword);
  ASSERT_FALSE(r.outcome.ok);
  EXPECT_EQ(r.outcome.reason, Reason::assertion);
  EXPECT_EQ(r.outcome.message, "Nextcloud is in maintenance mode");
  EXPECT_EQ(sample(r.outcome, "probe_nextcloud_maintenance"), 1);
  EXPECT_EQ(r.trace.find("cloud/user"), std::string::npos) << "stops at the first failure";
}

TEST_F(PresetsTest, NextcloudNeedsUpgrade) {
  auto r = run("nextcloud", "url: " + url("/nextcloud/needs-upgrade"));
  ASSERT_FALSE(r.outcome.ok);
  EXPECT_EQ(r.outcome.reason, Reason::assertion);
  EXPECT_EQ(r.outcome.message, "Nextcloud needs a database upgrade to 30.0.2 (run occ upgrade)");
  EXPECT_EQ(sample(r.outcome, "probe_nextcloud_needs_db_upgrade"), 1);
  EXPECT_EQ(label(r.outcome, "probe_nextcloud_info", "version"), "30.0.2");
}

TEST_F(PresetsTest, NextcloudNotInstalled) {
  auto r = run("nextcloud", "url: " + url("/nextcloud/not-installed"));
  ASSERT_FALSE(r.outcome.ok);
  EXPECT_EQ(r.outcome.reason, Reason::assertion);
  EXPECT_EQ(r.outcome.message, "Nextcloud is not installed (status.php: installed false)");
}

TEST_F(PresetsTest, NextcloudWrongPathIsHttpStatus) {
  auto r = run("nextcloud", "url: " + url("/nowhere"));
  ASSERT_FALSE(r.outcome.ok);
  EXPECT_EQ(r.outcome.reason, Reason::http_status);
  EXPECT_EQ(r.outcome.message.rfind("status.php returned HTTP 404", 0), 0u) << r.outcome.message;
  EXPECT_EQ(sample(r.outcome, "probe_http_status_code"), 404);
}

TEST_F(PresetsTest, NextcloudPhpNotExecutedIsProtocol) {
  // A web server that serves the PHP source instead of running it.
  write_file(nginx_->get("WWW") + "/status.php",
             "<?php\nrequire_once __DIR__ . '/lib/base.php';\n");
  auto r = run("nextcloud", "url: " + url(""));
  ASSERT_FALSE(r.outcome.ok);
  EXPECT_EQ(r.outcome.reason, Reason::protocol);
  EXPECT_EQ(r.outcome.message,
            "status.php is not Nextcloud's status JSON (Content-Type text/plain): <?php "
            "require_once __DIR__ . "
            "'/lib/base.php';");
}

// The SSO chain: the token a keycloak probe published is what Nextcloud gets.
TEST_F(PresetsTest, NextcloudBearerChain) {
  const std::string section = "url: " + url("/nextcloud/healthy") + ", bearer_from: kc";
  auto none = run("nextcloud", section);
  ASSERT_FALSE(none.outcome.ok);
  EXPECT_EQ(none.outcome.reason, Reason::auth);
  EXPECT_EQ(none.outcome.message,
            "OCS cloud/user: no valid access token from keycloak probe \"kc\" (its last run failed "
            "or it has not "
            "run yet)");
  EXPECT_EQ(sample(none.outcome, "probe_nextcloud_maintenance"), 0) << "status.php ran first";

  auto good = run("nextcloud", section,
                  [](Engine& e) { publish(e, "eyJhbGciOiJSUzI1NiJ9.e30.fixture-signature"); });
  ASSERT_TRUE(good.outcome.ok) << good.outcome.message;
  EXPECT_EQ(sample(good.outcome, "probe_nextcloud_ocs_status_code"), 200);
  EXPECT_NE(good.trace.find("access token of keycloak probe \"kc\""), std::string::npos)
      << good.trace;
  EXPECT_EQ(good.trace.find("fixture-signature"), std::string::npos)
      << "the token must not be traced";

  auto rejected = run("nextcloud", section, [](Engine& e) { publish(e, "opaque-not-a-jwt"); });
  ASSERT_FALSE(rejected.outcome.ok);
  EXPECT_EQ(rejected.outcome.reason, Reason::auth);
  EXPECT_EQ(rejected.outcome.message,
            "Nextcloud rejected the access token of keycloak probe \"kc\": Current user is not "
            "logged in (HTTP "
            "401, OCS 997)");

  auto revoked = run("nextcloud", section, [](Engine& e) {
    publish(e, "eyJhbGciOiJSUzI1NiJ9.e30.fixture-signature");
    e.tokens().revoke("kc");
  });
  EXPECT_EQ(revoked.outcome.reason, Reason::auth);
}

// -------------------------------------------------------------------------------- Collabora

TEST_F(PresetsTest, CollaboraHealthy) {
  auto r = run("collabora", "url: " + url("/collabora/healthy"));
  ASSERT_TRUE(r.outcome.ok) << r.outcome.message;
  EXPECT_EQ(label(r.outcome, "probe_collabora_info", "version"), "24.04.9.2");
  EXPECT_EQ(label(r.outcome, "probe_collabora_info", "product"),
            "Collabora Online Development Edition");
  EXPECT_EQ(label(r.outcome, "probe_collabora_info", "hash"), "2c8e4b4");
  EXPECT_EQ(sample(r.outcome, "probe_collabora_discovery_apps"), 6);
  EXPECT_EQ(sample(r.outcome, "probe_collabora_discovery_actions"), 10);
  EXPECT_NE(r.trace.find("/hosting/capabilities"), std::string::npos) << r.trace;
}

TEST_F(PresetsTest, CollaboraHtmlInsteadOfDiscoveryIsProtocol) {
  auto r = run("collabora", "url: " + url("/collabora/not-wopi"));
  ASSERT_FALSE(r.outcome.ok);
  EXPECT_EQ(r.outcome.reason, Reason::protocol);
  EXPECT_EQ(r.outcome.message.rfind(
                "/hosting/discovery is not WOPI discovery XML (Content-Type text/html): ", 0),
            0u)
      << r.outcome.message;
}

TEST_F(PresetsTest, CollaboraWithoutEditorsIsAssertion) {
  auto r = run("collabora", "url: " + url("/collabora/empty"));
  ASSERT_FALSE(r.outcome.ok);
  EXPECT_EQ(r.outcome.reason, Reason::assertion);
  EXPECT_EQ(r.outcome.message,
            "Collabora's WOPI discovery offers no editor (no app with an action urlsrc)");
  EXPECT_EQ(sample(r.outcome, "probe_collabora_discovery_actions"), 0);
  EXPECT_EQ(count(r.outcome, "probe_collabora_info"), 0);
}

// ------------------------------------------------------------------------------------ Gitea

TEST_F(PresetsTest, GiteaHealthyWithToken) {
  auto r = run("gitea", "url: " + url("/gitea/healthy") + ", token: " + kGiteaToken);
  ASSERT_TRUE(r.outcome.ok) << r.outcome.message;
  EXPECT_EQ(sample(r.outcome, "probe_gitea_check_up", {{"check", "database:ping"}}), 1);
  EXPECT_EQ(sample(r.outcome, "probe_gitea_check_up", {{"check", "cache:ping"}}), 1);
  EXPECT_NE(r.trace.find("user \"pes-monitor\""), std::string::npos) << r.trace;
  EXPECT_EQ(r.trace.find(kGiteaToken), std::string::npos);
}

TEST_F(PresetsTest, GiteaFailingCheck) {
  auto r = run("gitea", "url: " + url("/gitea/db-fail"));
  ASSERT_FALSE(r.outcome.ok);
  EXPECT_EQ(r.outcome.reason, Reason::assertion);
  EXPECT_EQ(r.outcome.message, "Gitea health check database:ping: fail");
  EXPECT_EQ(sample(r.outcome, "probe_gitea_check_up", {{"check", "database:ping"}}), 0);
  EXPECT_EQ(sample(r.outcome, "probe_gitea_check_up", {{"check", "cache:ping"}}), 1);
  EXPECT_EQ(sample(r.outcome, "probe_http_status_code"), 424);
}

TEST_F(PresetsTest, GiteaTokenProblemsAreAuth) {
  auto bad = run("gitea", "url: " + url("/gitea/healthy") + ", token: not-a-token");
  ASSERT_FALSE(bad.outcome.ok);
  EXPECT_EQ(bad.outcome.reason, Reason::auth);
  EXPECT_EQ(bad.outcome.message, "Gitea rejected the access token: token is required (HTTP 401)");
  auto scope = run("gitea", "url: " + url("/gitea/healthy") +
                                ", token: \"0000000000000000000000000000000000000000\"");
  EXPECT_EQ(scope.outcome.reason, Reason::auth);
  EXPECT_EQ(scope.outcome.message,
            "Gitea refused the access token: token does not have at least one of required "
            "scope(s): [read:user] "
            "(HTTP 403)");
}

// ------------------------------------------------------------------------------------ Nexus

TEST_F(PresetsTest, NexusHealthyWithChecks) {
  auto r = run("nexus", "url: " + url("/nexus/healthy") +
                            ", username: pes-monitor, password: fixture-nexus-password");
  ASSERT_TRUE(r.outcome.ok) << r.outcome.message;
  EXPECT_EQ(sample(r.outcome, "probe_nexus_available"), 1);
  EXPECT_EQ(sample(r.outcome, "probe_nexus_writable"), 1);
  EXPECT_EQ(count(r.outcome, "probe_nexus_check_up"), 15);
  EXPECT_EQ(sample(r.outcome, "probe_nexus_check_up", {{"check", "Read-Only Detector"}}), 1);
  EXPECT_EQ(r.trace.find("fixture-nexus-password"), std::string::npos);
}

TEST_F(PresetsTest, NexusReadOnly) {
  auto r = run("nexus", "url: " + url("/nexus/read-only"));
  ASSERT_FALSE(r.outcome.ok);
  EXPECT_EQ(r.outcome.reason, Reason::assertion);
  EXPECT_EQ(r.outcome.message, "Nexus is read-only (writable check returned 503)");
  EXPECT_EQ(sample(r.outcome, "probe_nexus_available"), 1);
  EXPECT_EQ(sample(r.outcome, "probe_nexus_writable"), 0);
}

TEST_F(PresetsTest, NexusUnavailable) {
  auto r = run("nexus", "url: " + url("/nexus/unavailable"));
  ASSERT_FALSE(r.outcome.ok);
  EXPECT_EQ(r.outcome.reason, Reason::http_status);
  EXPECT_EQ(r.outcome.message, "Nexus is not available (status returned 503)");
  EXPECT_EQ(sample(r.outcome, "probe_nexus_available"), 0);
  EXPECT_EQ(count(r.outcome, "probe_nexus_writable"), 0);
}

TEST_F(PresetsTest, NexusFailingSystemCheck) {
  const std::string creds = ", username: pes-monitor, password: fixture-nexus-password";
  auto r = run("nexus", "url: " + url("/nexus/failing-check") + creds);
  ASSERT_FALSE(r.outcome.ok);
  EXPECT_EQ(r.outcome.reason, Reason::assertion);
  EXPECT_EQ(r.outcome.message,
            "Nexus system check \"Blob Stores Ready\" is unhealthy: 0 of 1 blob stores are ready: "
            "default is not "
            "available");
  EXPECT_EQ(sample(r.outcome, "probe_nexus_check_up", {{"check", "Blob Stores Ready"}}), 0);
  EXPECT_EQ(sample(r.outcome, "probe_nexus_check_up", {{"check", "Scheduler"}}), 1);

  auto ignored = run("nexus", "url: " + url("/nexus/failing-check") + creds +
                                  ", ignore_checks: [Blob Stores Ready]");
  EXPECT_TRUE(ignored.outcome.ok) << ignored.outcome.message;
  EXPECT_EQ(sample(ignored.outcome, "probe_nexus_check_up", {{"check", "Blob Stores Ready"}}), 0)
      << "still exported";
  EXPECT_NE(ignored.trace.find("(ignored)"), std::string::npos) << ignored.trace;
}

TEST_F(PresetsTest, NexusCredentialProblemsAreAuth) {
  auto wrong =
      run("nexus", "url: " + url("/nexus/healthy") + ", username: pes-monitor, password: nope");
  EXPECT_EQ(wrong.outcome.reason, Reason::auth);
  EXPECT_EQ(wrong.outcome.message,
            "Nexus rejected the credentials of user \"pes-monitor\" (HTTP 401)");
  auto unprivileged = run("nexus", "url: " + url("/nexus/healthy") +
                                       ", username: pes-nobody, password: fixture-nexus-password");
  EXPECT_EQ(unprivileged.outcome.reason, Reason::auth);
  EXPECT_EQ(unprivileged.outcome.message,
            "Nexus user \"pes-nobody\" may not read the system status checks; it needs the "
            "nx-metrics-all "
            "privilege (HTTP 403)");
}

// ----------------------------------------------------------------------------------- Moodle

TEST_F(PresetsTest, MoodleHealthyWithToken) {
  auto r = run("moodle", "url: " + url("/moodle/healthy") + ", token: " + kMoodleToken);
  ASSERT_TRUE(r.outcome.ok) << r.outcome.message;
  EXPECT_EQ(label(r.outcome, "probe_moodle_info", "release"), "4.4.3 (Build: 20240902)");
  EXPECT_EQ(label(r.outcome, "probe_moodle_info", "version"), "2024042203");
  EXPECT_NE(r.trace.find("POST "), std::string::npos) << r.trace;
  EXPECT_NE(r.trace.find("site \"PES Moodle\""), std::string::npos) << r.trace;
  EXPECT_EQ(r.trace.find(kMoodleToken), std::string::npos) << "the token travels in the body only";
}

TEST_F(PresetsTest, MoodleLoginPageOnly) {
  auto r = run("moodle", "url: " + url("/moodle/healthy"));
  ASSERT_TRUE(r.outcome.ok) << r.outcome.message;
  EXPECT_EQ(count(r.outcome, "probe_moodle_info"), 0);
  EXPECT_EQ(sample(r.outcome, "probe_http_status_code"), 200);
}

TEST_F(PresetsTest, MoodleBadTokenIsAuth) {
  auto r =
      run("moodle", "url: " + url("/moodle/healthy") + ", token: 00000000000000000000000000000000");
  ASSERT_FALSE(r.outcome.ok);
  EXPECT_EQ(r.outcome.reason, Reason::auth);
  EXPECT_EQ(r.outcome.message,
            "Moodle web service error: invalidtoken: Invalid token - token not found");
}

TEST_F(PresetsTest, MoodleMaintenance) {
  auto cli = run("moodle", "url: " + url("/moodle/maintenance") + ", token: " + kMoodleToken);
  ASSERT_FALSE(cli.outcome.ok);
  EXPECT_EQ(cli.outcome.reason, Reason::assertion);
  EXPECT_EQ(cli.outcome.message, "Moodle is in maintenance mode (login page returned HTTP 503)");
  EXPECT_EQ(sample(cli.outcome, "probe_http_status_code"), 503);

  auto admin =
      run("moodle", "url: " + url("/moodle/admin-maintenance") + ", token: " + kMoodleToken);
  ASSERT_FALSE(admin.outcome.ok);
  EXPECT_EQ(admin.outcome.reason, Reason::assertion);
  EXPECT_EQ(admin.outcome.message,
            "Moodle web service error: sitemaintenance: The site is undergoing maintenance and is "
            "currently not "
            "available");
}

TEST_F(PresetsTest, MoodleOtherPageIsNotMoodle) {
  // The fixture's root serves a plain page at /login/index.php? No: 404, an http_status failure.
  auto r = run("moodle", "url: " + url("/gitea/healthy"));
  ASSERT_FALSE(r.outcome.ok);
  EXPECT_EQ(r.outcome.reason, Reason::http_status);
  EXPECT_EQ(r.outcome.message, "Moodle login page returned HTTP 404");
}

// ------------------------------------------------------------------------ transport failures

TEST_F(PresetsTest, RefusedConnectionNamesTheStep) {
  const std::string dead = "http://127.0.0.1:" + std::to_string(free_port());
  auto r = run("gitea", "url: " + dead);
  ASSERT_FALSE(r.outcome.ok);
  EXPECT_EQ(r.outcome.reason, Reason::connect);
  EXPECT_EQ(r.outcome.message.rfind("api/healthz: ", 0), 0u) << r.outcome.message;
  EXPECT_EQ(sample(r.outcome, "probe_http_status_code"), 0);
}

TEST_F(PresetsTest, HungServerTimesOutWithinTheDeadline) {
  HungServer hang(HungMode::accept_and_hang);
  auto start = std::chrono::steady_clock::now();
  auto r = run("nexus", "url: http://" + hang.address(), {}, "400ms");
  auto took = std::chrono::steady_clock::now() - start;
  ASSERT_FALSE(r.outcome.ok);
  EXPECT_EQ(r.outcome.reason, Reason::timeout) << r.outcome.message;
  EXPECT_LT(took, 2s);
  EXPECT_GE(hang.connections(), 1);
}
