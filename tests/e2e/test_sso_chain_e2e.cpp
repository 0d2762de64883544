// The SSO chain end to end: the built pes-agent with a keycloak probe against a real OpenID issuer
// (oidc-provider, tests/fixtures/oidc.sh) and an http probe with `bearer_from` against nginx's
// /bearer location, which answers 401 unless it gets `Authorization: Bearer ey...`. With a good
// client secret the chained probe passes; with a wrong one it fails with reason auth (not a
// misleading 401), and no token ever shows in /metrics, /probe?debug=true, the status or the log.
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/agent_process.h"
#include "tests/support/fixture.h"

namespace {

using namespace pes::test;
using namespace std::chrono_literals;

class SsoChainE2E : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    oidc_ = new Fixture("oidc");
    nginx_ = new Fixture("nginx");
  }
  static void TearDownTestSuite() {
    delete nginx_;
    delete oidc_;
    nginx_ = oidc_ = nullptr;
  }

  static std::string config(const std::string& secret) {
    return "global:\n  interval: 1s\n  timeout: 900ms\n  failure_threshold: 1\n"
           "probes:\n"
           "  - name: keycloak\n    type: keycloak\n    keycloak:\n"
           "      url: " +
           oidc_->get("URL") + "\n      realm: " + oidc_->get("REALM") +
           "\n      client_id: " + oidc_->get("CLIENT_ID") + "\n      client_secret: '" + secret +
           "'\n      audience: " + oidc_->get("AUDIENCE") +
           "\n"
           "  - name: app\n    service: nextcloud\n    type: http\n    depends_on: [keycloak]\n"
           "    http:\n      url: http://127.0.0.1:" +
           nginx_->get("PORT") +
           "/bearer\n"
           "      bearer_from: keycloak\n";
  }

  // Nothing the agent shows may contain a JWT (they all start with "eyJ") or the secret.
  void expect_no_token_anywhere(const AgentProcess& agent) {
    const std::vector<std::pair<std::string, std::string>> outputs = {
        {"/metrics", agent.metrics()},
        {"/probe keycloak", agent.get("/probe?name=keycloak&debug=true").body},
        {"/probe app", agent.get("/probe?name=app&debug=true").body},
        {"/api/v1/status", agent.get("/api/v1/status").body},
        {"/", agent.get("/").body},
        {"log", agent.log()},
    };
    for (const auto& [what, text] : outputs) {
      EXPECT_FALSE(text.empty()) << what;
      EXPECT_EQ(text.find("eyJ"), std::string::npos) << what << ":\n" << text;
      EXPECT_EQ(text.find(oidc_->get("CLIENT_SECRET")), std::string::npos) << what << ":\n" << text;
    }
  }

  TempDir dir_;
  static inline Fixture* oidc_ = nullptr;
  static inline Fixture* nginx_ = nullptr;
};

TEST_F(SsoChainE2E, ChainedProbePassesWithTheTokenAndFailsWithAuthWhenTheSecretIsWrong) {
  const std::string kc = "probe=\"keycloak\"";
  const std::string app = "probe=\"app\"";
  write_file(dir_.file("agent.yml"), config(oidc_->get("CLIENT_SECRET")));
  AgentProcess agent(dir_.file("agent.yml"), {"--log.level=debug"});

  // Good secret: the token is issued and verified, and nginx lets the chained probe in.
  ASSERT_TRUE(wait_for_series(agent, {"probe_success{", kc}, 1)) << agent.metrics() << agent.log();
  ASSERT_TRUE(wait_for_series(agent, {"probe_success{", app}, 1)) << agent.metrics() << agent.log();
  std::string m = agent.metrics();
  EXPECT_EQ(series_value(m, {"probe_http_status_code{", app}), 200);
  // No false alarm at start: the chained probe's first run waits for the keycloak probe's first
  // run, so it never failed for want of a token that was not fetched yet.
  EXPECT_EQ(series_value(m, {"probe_runs_total{", app, "result=\"failure\""}), 0) << m;
  EXPECT_GT(series_value(m, {"probe_keycloak_token_expires_in_seconds{", kc}), 200);
  EXPECT_EQ(series_value(m, {"probe_keycloak_jwks_keys{", kc}), 1);
  for (const char* step : {"discovery", "token", "jwks", "verify"})
    EXPECT_GE(series_value(
                  m, {"probe_keycloak_step_duration_seconds{", kc, std::string("step=\"") + step}),
              0)
        << step;
  EXPECT_EQ(series_value(m, {"probe_dependency_info{", app, "depends_on=\"keycloak\""}), 1);
  const auto debug = agent.get("/probe?name=app&debug=true");
  EXPECT_EQ(debug.status, 200);
  EXPECT_NE(debug.body.find("using the access token of keycloak probe \"keycloak\" (not shown)"),
            std::string::npos)
      << debug.body;
  expect_no_token_anywhere(agent);

  // Wrong secret (reloaded): the keycloak probe fails with auth, its token is revoked, and the
  // chained probe fails with auth naming it, without sending a request nginx would answer 401.
  double auth_failures_before = series_value(m, {"probe_failures_total{", app, "reason=\"auth\""});
  if (std::isnan(auth_failures_before)) auth_failures_before = 0;
  write_file(dir_.file("agent.yml"), config("wrong-" + oidc_->get("CLIENT_SECRET")));
  const auto reload = http_post(agent.url("/-/reload"));
  ASSERT_EQ(reload.status, 200) << reload.body;
  ASSERT_TRUE(wait_for_series(agent, {"probe_success{", kc}, 0)) << agent.metrics();
  ASSERT_TRUE(wait_for_series(agent, {"probe_success{", app}, 0)) << agent.metrics();
  m = agent.metrics();
  EXPECT_EQ(series_value(m, {"probe_last_failure_info{", kc, "reason=\"auth\""}), 1) << m;
  EXPECT_EQ(series_value(m, {"probe_last_failure_info{", app, "reason=\"auth\""}), 1) << m;
  EXPECT_GT(series_value(m, {"probe_failures_total{", app, "reason=\"auth\""}),
            auth_failures_before);
  EXPECT_GE(series_value(m, {"probe_failures_total{", app, "reason=\"auth\""}), 1);
  EXPECT_FALSE(series_value(m, {"probe_failures_total{", app, "reason=\"http_status\""}) > 0);
  const auto status = agent.get("/api/v1/status");
  EXPECT_NE(status.body.find("no valid access token from keycloak probe \\\"keycloak\\\""),
            std::string::npos)
      << status.body;
  EXPECT_NE(status.body.find("token: HTTP status 401, error invalid_client"), std::string::npos)
      << status.body;
  expect_no_token_anywhere(agent);
}

}  // namespace
