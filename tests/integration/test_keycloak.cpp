// The keycloak probe through the real engine against a real OpenID Connect server: oidc-provider
// shaped like Keycloak (tests/fixtures/oidc.sh), started once on free loopback ports. Covers the
// grants, refused clients and users, key rotation by an issuer restart, a stopped issuer and a
// hung one.
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <memory>
#include <string>

#include "tests/support/fixture.h"
#include "tests/support/probe_runner.h"

namespace pes {
namespace {

using test::Fixture;
using test::ProbeRunner;

class KeycloakIntegration : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { oidc_ = new Fixture("oidc", {{"TTL", "120"}}); }
  static void TearDownTestSuite() {
    delete oidc_;
    oidc_ = nullptr;
  }

  // One keycloak probe section against the fixture; `extra` lines are indented into it.
  static std::string probe_yaml(const std::string& name, const std::string& extra,
                                const std::string& timeout = "5s") {
    return "  - name: " + name + "\n    type: keycloak\n    timeout: " + timeout +
           "\n    keycloak:\n      url: " + oidc_->get("URL") +
           "\n      realm: " + oidc_->get("REALM") + "\n" + extra;
  }

  static std::string client(const std::string& secret) {
    return "      client_id: " + oidc_->get("CLIENT_ID") + "\n      client_secret: '" + secret +
           "'\n";
  }

  static std::unique_ptr<ProbeRunner> runner(const std::string& probes) {
    return std::make_unique<ProbeRunner>("probes:\n" + probes);
  }

  // Runs with the debug trace and checks that neither secrets nor the token leak into it.
  static Engine::AdHocResult run(ProbeRunner& r, const std::string& name) {
    auto res = r.run(name, true);
    EXPECT_TRUE(res.found);
    for (const char* key : {"CLIENT_SECRET", "USER_PASSWORD"}) {
      EXPECT_EQ(res.trace.find(oidc_->get(key)), std::string::npos) << res.trace;
      EXPECT_EQ(res.outcome.message.find(oidc_->get(key)), std::string::npos)
          << res.outcome.message;
    }
    if (auto token = r.engine().tokens().get(name)) {
      EXPECT_EQ(res.trace.find(*token), std::string::npos);
      EXPECT_EQ(res.trace.find(token->substr(token->rfind('.'))), std::string::npos);
    }
    return res;
  }

  static double sample(const Outcome& o, const std::string& name, const std::string& label = "") {
    return ProbeRunner::sample(o, name, label);
  }

  static inline Fixture* oidc_ = nullptr;
};

TEST_F(KeycloakIntegration, ClientCredentialsTokenIsIssuedVerifiedAndPublished) {
  auto r = runner(probe_yaml(
      "kc", client(oidc_->get("CLIENT_SECRET")) + "      audience: " + oidc_->get("AUDIENCE") +
                "\n      health_url: " + oidc_->get("MANAGEMENT_HEALTH_URL") + "\n"));
  auto res = run(*r, "kc");
  ASSERT_TRUE(res.outcome.ok) << res.outcome.message << "\n" << res.trace;
  for (const char* step : {"discovery", "token", "jwks", "verify", "health"}) {
    const double d =
        sample(res.outcome, "probe_keycloak_step_duration_seconds", std::string("step=") + step);
    EXPECT_FALSE(std::isnan(d)) << step;
    EXPECT_GE(d, 0) << step;
    EXPECT_LT(d, 5) << step;
  }
  const double expires = sample(res.outcome, "probe_keycloak_token_expires_in_seconds");
  EXPECT_GT(expires, 100);
  EXPECT_LE(expires, 120);
  EXPECT_EQ(sample(res.outcome, "probe_keycloak_jwks_keys"), 1);
  auto token = r->engine().tokens().get("kc");
  ASSERT_TRUE(token);
  EXPECT_EQ(token->substr(0, 2), "ey");
  EXPECT_NE(res.trace.find("client authentication client_secret_basic"), std::string::npos)
      << res.trace;
  EXPECT_NE(res.trace.find("signature by key"), std::string::npos) << res.trace;
  EXPECT_NE(res.trace.find("(not shown)"), std::string::npos) << res.trace;

  // The second run uses the cached JWKS.
  res = run(*r, "kc");
  ASSERT_TRUE(res.outcome.ok) << res.outcome.message;
  EXPECT_EQ(sample(res.outcome, "probe_keycloak_step_duration_seconds", "step=jwks"), 0);
  EXPECT_NE(res.trace.find("using the cached JWKS"), std::string::npos) << res.trace;
}

TEST_F(KeycloakIntegration, WrongClientSecretIsAuth) {
  auto r = runner(probe_yaml("kc", client("wrong-" + oidc_->get("CLIENT_SECRET"))));
  auto res = run(*r, "kc");
  EXPECT_FALSE(res.outcome.ok);
  EXPECT_EQ(res.outcome.reason, Reason::auth) << res.outcome.message;
  EXPECT_EQ(res.outcome.message.rfind("token: HTTP status 401, error invalid_client", 0), 0u)
      << res.outcome.message;
  EXPECT_FALSE(r->engine().tokens().get("kc"));
}

TEST_F(KeycloakIntegration, UnknownClientIsAuth) {
  auto r =
      runner(probe_yaml("kc", "      client_id: nobody\n      client_secret: whatever-secret\n"));
  auto res = run(*r, "kc");
  EXPECT_EQ(res.outcome.reason, Reason::auth) << res.outcome.message;
  EXPECT_NE(res.outcome.message.find("invalid_client"), std::string::npos) << res.outcome.message;
}

TEST_F(KeycloakIntegration, PasswordGrantWithGoodAndBadUser) {
  const std::string user =
      "      grant: password\n      username: " + oidc_->get("USERNAME") + "\n";
  auto r =
      runner(probe_yaml("good", client(oidc_->get("CLIENT_SECRET")) + user + "      password: '" +
                                    oidc_->get("USER_PASSWORD") + "'\n") +
             probe_yaml("bad", client(oidc_->get("CLIENT_SECRET")) + user +
                                   "      password: 'not-" + oidc_->get("USER_PASSWORD") + "'\n"));
  auto good = run(*r, "good");
  ASSERT_TRUE(good.outcome.ok) << good.outcome.message << "\n" << good.trace;
  EXPECT_TRUE(r->engine().tokens().get("good"));
  auto bad = run(*r, "bad");
  EXPECT_EQ(bad.outcome.reason, Reason::auth) << bad.outcome.message;
  EXPECT_NE(bad.outcome.message.find("invalid_grant"), std::string::npos) << bad.outcome.message;
  EXPECT_FALSE(r->engine().tokens().get("bad"));
}

TEST_F(KeycloakIntegration, WrongAudienceIsAnAssertion) {
  auto r =
      runner(probe_yaml("kc", client(oidc_->get("CLIENT_SECRET")) + "      audience: nextcloud\n"));
  auto res = run(*r, "kc");
  EXPECT_EQ(res.outcome.reason, Reason::assertion) << res.outcome.message;
  EXPECT_EQ(res.outcome.message.rfind("verify: wrong_audience:", 0), 0u) << res.outcome.message;
  EXPECT_FALSE(r->engine().tokens().get("kc"));
}

// One stop/start of the issuer (each costs seconds) covers two cases: while it is down the run
// fails with connect; when it is back it signs with new keys (generated at every start), and the
// next run must still verify, after refetching the JWKS for the unknown kid.
TEST_F(KeycloakIntegration, IssuerDownIsConnectAndRestartedWithNewKeysStillVerifies) {
  auto r = runner(probe_yaml("kc", client(oidc_->get("CLIENT_SECRET"))));
  auto first = run(*r, "kc");
  ASSERT_TRUE(first.outcome.ok) << first.outcome.message;
  ASSERT_TRUE(r->engine().tokens().get("kc"));

  oidc_->stop();
  auto down = run(*r, "kc");
  oidc_->start();
  EXPECT_EQ(down.outcome.reason, Reason::connect) << down.outcome.message;
  EXPECT_EQ(down.outcome.message.rfind("discovery: ", 0), 0u) << down.outcome.message;
  EXPECT_FALSE(r->engine().tokens().get("kc"));  // the chain learns at once

  auto back = run(*r, "kc");
  ASSERT_TRUE(back.outcome.ok) << back.outcome.message << "\n" << back.trace;
  EXPECT_NE(back.trace.find("not in the cached JWKS; fetching it again"), std::string::npos)
      << back.trace;
  EXPECT_GT(sample(back.outcome, "probe_keycloak_step_duration_seconds", "step=jwks"), 0);
  EXPECT_TRUE(r->engine().tokens().get("kc"));
}

TEST_F(KeycloakIntegration, HungIssuerIsATimeoutWithinTheDeadline) {
  test::HungServer hang(test::HungMode::accept_and_hang);
  auto r = runner(
      "  - name: kc\n    type: keycloak\n    timeout: 700ms\n    keycloak:\n      url: http://" +
      hang.address() + "\n      realm: pes\n      client_secret: some-secret\n");
  const auto start = std::chrono::steady_clock::now();
  auto res = run(*r, "kc");
  const auto took = std::chrono::steady_clock::now() - start;
  EXPECT_EQ(res.outcome.reason, Reason::timeout) << res.outcome.message;
  EXPECT_EQ(res.outcome.message.rfind("discovery: ", 0), 0u) << res.outcome.message;
  EXPECT_GE(hang.connections(), 1);
  EXPECT_LT(took, std::chrono::milliseconds(1500));
}

TEST(KeycloakIntegrationEc, Es256TokensFromARealIssuerVerify) {
  Fixture oidc("oidc", {{"KEYS", "ec"}});
  ProbeRunner r(
      "probes:\n  - name: kc\n    type: keycloak\n    keycloak:\n      url: " + oidc.get("URL") +
      "\n      realm: pes\n      client_secret: '" + oidc.get("CLIENT_SECRET") + "'\n");
  auto res = r.run("kc", true);
  ASSERT_TRUE(res.outcome.ok) << res.outcome.message << "\n" << res.trace;
  EXPECT_NE(res.trace.find("ES256 signature by key"), std::string::npos) << res.trace;
}

}  // namespace
}  // namespace pes
