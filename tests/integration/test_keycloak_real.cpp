// The keycloak probe through the real engine against the real Keycloak (tests/fixtures/keycloak.sh:
// Keycloak with PostgreSQL, the compose realm file, an LDAP federation to slapd). One Keycloak
// serves the whole ctest run (tests/support/keycloak_shared.h). The tests that stop Keycloak or
// slapd, or rotate the realm's keys, come last and leave everything running as they found it.
#include <gtest/gtest.h>

#include <cmath>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "tests/support/fixture.h"
#include "tests/support/keycloak_shared.h"
#include "tests/support/probe_runner.h"

namespace pes {
namespace {

using test::ProbeRunner;
using test::SharedKeycloak;

SharedKeycloak& kc() { return SharedKeycloak::instance(); }

// A keycloak probe section against the fixture; `extra` lines are indented into it.
std::string probe_yaml(const std::string& name, const std::string& extra,
                       const std::string& realm = "pes") {
  return "  - name: " + name + "\n    type: keycloak\n    timeout: 20s\n    interval: 30s\n" +
         "    keycloak:\n      url: " + kc().get("URL") + "\n      realm: " + realm + "\n" + extra;
}

std::string client_credentials(const std::string& secret) {
  return "      client_id: pes-agent\n      client_secret: '" + secret + "'\n";
}

std::string login(const std::string& password, const std::string& client = "pes-agent-login",
                  const std::string& redirect = "") {
  return "      grant: authorization_code\n      client_id: " + client +
         "\n      username: " + kc().get("MONITOR_USER") + "\n      password: '" + password +
         "'\n      redirect_uri: " + (redirect.empty() ? kc().get("REDIRECT_URI") : redirect) +
         "\n";
}

std::string password_grant(const std::string& password) {
  return "      grant: password\n      client_id: pes-agent-login\n      username: " +
         kc().get("MONITOR_USER") + "\n      password: '" + password + "'\n";
}

std::unique_ptr<ProbeRunner> runner(const std::string& probes) {
  return std::make_unique<ProbeRunner>("probes:\n" + probes);
}

// Runs with the debug trace; no secret, token or authorization code may show in it.
Engine::AdHocResult run(ProbeRunner& r, const std::string& name) {
  auto res = r.run(name, true);
  EXPECT_TRUE(res.found);
  for (const char* key : {"CLIENT_SECRET", "MONITOR_PASSWORD"}) {
    EXPECT_EQ(res.trace.find(kc().get(key)), std::string::npos) << res.trace;
    EXPECT_EQ(res.outcome.message.find(kc().get(key)), std::string::npos) << res.outcome.message;
  }
  // No JWT (a JWS header starts {"alg" = eyJhbGci; Keycloak's form URL carries other base64
  // JSON) and no authorization code (only a redirect to redirect_uri carries one, never
  // requested); the form's session_code is Keycloak's one-time login step, bound to the cookie.
  EXPECT_EQ(res.trace.find("eyJhbGci"), std::string::npos) << res.trace;
  EXPECT_EQ(res.trace.find("?code="), std::string::npos) << res.trace;
  EXPECT_EQ(res.trace.find("&code="), std::string::npos) << res.trace;
  EXPECT_EQ(res.trace.find("AUTH_SESSION_ID"), std::string::npos) << res.trace;
  return res;
}

double sample(const Outcome& o, const std::string& name, const std::string& label = "") {
  return ProbeRunner::sample(o, name, label);
}

// The admin REST API, with curl (a test-side client, not the code under test).
nlohmann::json admin(const std::string& method, const std::string& path,
                     const std::string& body = "") {
  auto token = test::run_command(
      {"curl", "-sS", "--max-time", "20", "-d", "grant_type=password", "-d", "client_id=admin-cli",
       "-d", "username=admin", "--data-urlencode", "password=" + kc().get("ADMIN_PASSWORD"),
       kc().get("URL") + "/realms/master/protocol/openid-connect/token"});
  const auto t = nlohmann::json::parse(token.out, nullptr, false);
  if (t.is_discarded() || !t.contains("access_token"))
    throw std::runtime_error("no admin token: " + token.out + token.err);
  std::vector<std::string> argv = {
      "curl",       "-sS",
      "--max-time", "20",
      "-X",         method,
      "-H",         "Authorization: Bearer " + t["access_token"].get<std::string>(),
      "-H",         "Content-Type: application/json",
      "-w",         "\n%{http_code}"};
  if (!body.empty()) argv.insert(argv.end(), {"--data-binary", body});
  argv.push_back(kc().get("URL") + "/admin/realms/pes" + path);
  auto r = test::run_command(argv);
  const auto nl = r.out.rfind('\n');
  const std::string status = nl == std::string::npos ? "" : r.out.substr(nl + 1);
  if (status.empty() || status[0] != '2')
    throw std::runtime_error(method + " " + path + ": HTTP " + status + " " + r.out + r.err);
  const auto doc = nlohmann::json::parse(r.out.substr(0, nl), nullptr, false);
  return doc.is_discarded() ? nlohmann::json() : doc;
}

class KeycloakReal : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { ASSERT_NO_THROW(kc()); }
};

TEST_F(KeycloakReal, ClientCredentialsTokenIsIssuedVerifiedAndHealthIsUpOnTheManagementPort) {
  auto r = runner(probe_yaml("kc", client_credentials(kc().get("CLIENT_SECRET")) +
                                       "      health_url: " + kc().get("HEALTH_URL") + "\n"));
  auto res = run(*r, "kc");
  ASSERT_TRUE(res.outcome.ok) << res.outcome.message << "\n" << res.trace;
  for (const char* step : {"discovery", "token", "jwks", "verify", "health"})
    EXPECT_GE(
        sample(res.outcome, "probe_keycloak_step_duration_seconds", std::string("step=") + step), 0)
        << step;
  // Keycloak signs with RS256 by the realm's generated key; its JWKS also lists an encryption
  // key (RSA-OAEP), which the probe does not count.
  EXPECT_GE(sample(res.outcome, "probe_keycloak_jwks_keys"), 1);
  const double expires = sample(res.outcome, "probe_keycloak_token_expires_in_seconds");
  EXPECT_GT(expires, 200);  // the realm's accessTokenLifespan is 300 s
  EXPECT_LE(expires, 300);
  EXPECT_NE(res.trace.find("RS256 signature by key"), std::string::npos) << res.trace;
  EXPECT_NE(res.trace.find("issuer " + kc().get("ISSUER")), std::string::npos) << res.trace;
  EXPECT_TRUE(r->engine().tokens().get("kc"));
}

TEST_F(KeycloakReal, HealthUrlOnTheMainPortIsNotFound) {
  // Keycloak 25+ serves health only on the management port: a health_url on the main port is
  // a configuration mistake the probe reports as http_status 404, not as a pass.
  auto r = runner(probe_yaml("kc", client_credentials(kc().get("CLIENT_SECRET")) +
                                       "      health_url: " + kc().get("URL") + "/health/ready\n"));
  auto res = run(*r, "kc");
  EXPECT_EQ(res.outcome.reason, Reason::http_status) << res.outcome.message;
  EXPECT_EQ(res.outcome.message.rfind("health: HTTP status 404", 0), 0u) << res.outcome.message;
}

TEST_F(KeycloakReal, WrongClientSecretIsAuthWithKeycloaksOwnText) {
  auto r = runner(probe_yaml("kc", client_credentials("wrong-" + kc().get("CLIENT_SECRET"))));
  auto res = run(*r, "kc");
  EXPECT_EQ(res.outcome.reason, Reason::auth) << res.outcome.message;
  EXPECT_EQ(res.outcome.message,
            "token: HTTP status 401, error unauthorized_client: Invalid client or Invalid client "
            "credentials");
  EXPECT_FALSE(r->engine().tokens().get("kc"));
}

TEST_F(KeycloakReal, UnknownRealmIsNotFoundAtDiscovery) {
  auto r = runner(probe_yaml("kc", client_credentials(kc().get("CLIENT_SECRET")), "nosuchrealm"));
  auto res = run(*r, "kc");
  EXPECT_EQ(res.outcome.reason, Reason::http_status) << res.outcome.message;
  EXPECT_EQ(res.outcome.message.rfind("discovery: HTTP status 404 from " + kc().get("URL") +
                                          "/realms/nosuchrealm/.well-known/openid-configuration",
                                      0),
            0u)
      << res.outcome.message;
}

TEST_F(KeycloakReal, PasswordGrantOfTheLdapUserChecksKeycloakToLdap) {
  auto r = runner(probe_yaml("good", password_grant(kc().get("MONITOR_PASSWORD"))) +
                  probe_yaml("bad", password_grant("not-" + kc().get("MONITOR_PASSWORD"))));
  auto good = run(*r, "good");
  ASSERT_TRUE(good.outcome.ok) << good.outcome.message << "\n" << good.trace;
  EXPECT_NE(good.trace.find("client authentication none"), std::string::npos) << good.trace;
  auto bad = run(*r, "bad");
  EXPECT_EQ(bad.outcome.reason, Reason::auth) << bad.outcome.message;
  EXPECT_EQ(bad.outcome.message,
            "token: HTTP status 401, error invalid_grant: Invalid user credentials");
}

TEST_F(KeycloakReal, LoginThroughTheFormWithPkceYieldsAVerifiedIdToken) {
  auto r = runner(probe_yaml("login", login(kc().get("MONITOR_PASSWORD")) +
                                          "      health_url: " + kc().get("HEALTH_URL") + "\n"));
  auto res = run(*r, "login");
  ASSERT_TRUE(res.outcome.ok) << res.outcome.message << "\n" << res.trace;
  for (const char* step : {"discovery", "authorize", "login", "token", "jwks", "verify", "health"})
    EXPECT_GE(
        sample(res.outcome, "probe_keycloak_step_duration_seconds", std::string("step=") + step), 0)
        << step << "\n"
        << res.trace;
  EXPECT_NE(res.trace.find("login page (page 'Sign in to PES platform') with form "
                           "'kc-form-login'"),
            std::string::npos)
      << res.trace;
  EXPECT_NE(res.trace.find("redirected to redirect_uri with a code (not shown, not followed)"),
            std::string::npos)
      << res.trace;
  EXPECT_NE(res.trace.find("ID token: RS256 signature by key"), std::string::npos) << res.trace;
  EXPECT_NE(res.trace.find("iss, aud, exp and nonce ok"), std::string::npos) << res.trace;
  EXPECT_GT(sample(res.outcome, "probe_keycloak_token_expires_in_seconds"), 200);
  // The person's access token is what bearer_from hands on.
  EXPECT_TRUE(r->engine().tokens().get("login"));
  // A second run logs in afresh (its own cookie jar): no SSO session carried over.
  auto again = run(*r, "login");
  ASSERT_TRUE(again.outcome.ok) << again.outcome.message << "\n" << again.trace;
  EXPECT_NE(again.trace.find("login page"), std::string::npos) << again.trace;
}

TEST_F(KeycloakReal, LoginWithAWrongPasswordIsRefusedWithKeycloaksMessage) {
  auto r = runner(probe_yaml("login", login("not-" + kc().get("MONITOR_PASSWORD"))));
  auto res = run(*r, "login");
  EXPECT_EQ(res.outcome.reason, Reason::auth) << res.outcome.message;
  EXPECT_EQ(res.outcome.message,
            "login: the credentials are refused: Invalid username or password.");
  EXPECT_FALSE(r->engine().tokens().get("login"));
}

TEST_F(KeycloakReal, LoginWithAnUnregisteredRedirectUriIsRefused) {
  auto r = runner(probe_yaml("login", login(kc().get("MONITOR_PASSWORD"), "pes-agent-login",
                                            "http://127.0.0.1/not-registered")));
  auto res = run(*r, "login");
  EXPECT_EQ(res.outcome.reason, Reason::config) << res.outcome.message;
  EXPECT_EQ(res.outcome.message,
            "authorize: the redirect URI is refused: Invalid parameter: redirect_uri "
            "(http://127.0.0.1/not-registered)");
}

TEST_F(KeycloakReal, LoginOfAnUnknownClientDoesNotRenderTheLoginPage) {
  auto r = runner(probe_yaml("login", login(kc().get("MONITOR_PASSWORD"), "nosuchclient")));
  auto res = run(*r, "login");
  EXPECT_EQ(res.outcome.reason, Reason::http_status) << res.outcome.message;
  EXPECT_EQ(res.outcome.message,
            "authorize: the login page does not render: HTTP status 400: Client not found.");
}

TEST_F(KeycloakReal, LoginWhoseCodeExchangeFailsNamesTheExchange) {
  // A confidential client (created here through the admin REST API) with a wrong secret: the
  // login form needs no secret, the code exchange does.
  const std::string client = "pes-test-confidential";
  auto existing = admin("GET", "/clients?clientId=" + client);
  if (existing.empty()) {
    admin("POST", "/clients",
          nlohmann::json{{"clientId", client},
                         {"publicClient", false},
                         {"secret", "right-secret-for-this-test"},
                         {"standardFlowEnabled", true},
                         {"directAccessGrantsEnabled", false},
                         {"redirectUris", {kc().get("REDIRECT_URI")}},
                         {"attributes", {{"pkce.code.challenge.method", "S256"}}}}
              .dump());
  }
  auto r = runner(probe_yaml("bad", login(kc().get("MONITOR_PASSWORD"), client) +
                                        "      client_secret: wrong-secret\n") +
                  probe_yaml("good", login(kc().get("MONITOR_PASSWORD"), client) +
                                         "      client_secret: right-secret-for-this-test\n"));
  auto bad = run(*r, "bad");
  EXPECT_EQ(bad.outcome.reason, Reason::auth) << bad.outcome.message;
  EXPECT_EQ(bad.outcome.message,
            "token: the code exchange fails: HTTP status 401, error unauthorized_client: Invalid "
            "client or Invalid client credentials");
  EXPECT_GE(sample(bad.outcome, "probe_keycloak_step_duration_seconds", "step=login"), 0);
  auto good = run(*r, "good");
  EXPECT_TRUE(good.outcome.ok) << good.outcome.message << "\n" << good.trace;
  EXPECT_NE(good.trace.find("client authentication client_secret_basic"), std::string::npos)
      << good.trace;
}

// --- the tests that disturb the shared Keycloak, last ------------------------------------------

TEST_F(KeycloakReal, ANewRealmKeyAndTheOldOneDisabledIsFollowedWithoutAFalseFailure) {
  auto r = runner(probe_yaml("kc", client_credentials(kc().get("CLIENT_SECRET"))) +
                  probe_yaml("login", login(kc().get("MONITOR_PASSWORD"))));
  ASSERT_TRUE(run(*r, "kc").outcome.ok);  // the JWKS is cached now
  ASSERT_TRUE(run(*r, "login").outcome.ok);

  // A new RS256 key above the old one, then the old one disabled (no longer in the JWKS).
  const auto realm = admin("GET", "");
  auto keys = admin("GET", "/components?type=org.keycloak.keys.KeyProvider");
  const std::string name = "rotated-" + std::to_string(::getpid());
  admin("POST", "/components",
        nlohmann::json{{"name", name},
                       {"providerId", "rsa-generated"},
                       {"providerType", "org.keycloak.keys.KeyProvider"},
                       {"parentId", realm["id"]},
                       {"config", {{"priority", {"1000"}}, {"algorithm", {"RS256"}}}}}
            .dump());
  int disabled = 0;
  for (auto& k : keys) {
    if (k["providerId"] != "rsa-generated") continue;
    k["config"]["enabled"] = {"false"};
    admin("PUT", "/components/" + k["id"].get<std::string>(), k.dump());
    ++disabled;
  }
  ASSERT_GE(disabled, 1);

  // The next run's token is signed by a kid the cached JWKS lacks: one refetch, then it passes.
  auto res = run(*r, "kc");
  ASSERT_TRUE(res.outcome.ok) << res.outcome.message << "\n" << res.trace;
  EXPECT_NE(res.trace.find("not in the cached JWKS; fetching it again"), std::string::npos)
      << res.trace;
  EXPECT_GT(sample(res.outcome, "probe_keycloak_step_duration_seconds", "step=jwks"), 0);
  // The ID token of the login is signed by the new key too.
  auto login_res = run(*r, "login");
  ASSERT_TRUE(login_res.outcome.ok) << login_res.outcome.message << "\n" << login_res.trace;
  EXPECT_NE(login_res.trace.find("not in the cached JWKS; fetching it again"), std::string::npos)
      << login_res.trace;
}

TEST_F(KeycloakReal, SlapdStoppedFailsTheLdapUsersLoginAndSaysWhy) {
  auto r = runner(probe_yaml("login", login(kc().get("MONITOR_PASSWORD"))) +
                  probe_yaml("pw", password_grant(kc().get("MONITOR_PASSWORD"))) +
                  probe_yaml("cc", client_credentials(kc().get("CLIENT_SECRET"))));
  ASSERT_TRUE(run(*r, "login").outcome.ok);
  kc().stop_slapd();
  auto login_res = run(*r, "login");
  auto pw = run(*r, "pw");
  auto cc = run(*r, "cc");
  kc().start_slapd();
  EXPECT_EQ(login_res.outcome.reason, Reason::http_status) << login_res.outcome.message;
  EXPECT_EQ(login_res.outcome.message.rfind(
                "login: Keycloak could not check the credentials: HTTP status 400, error page: "
                "Unexpected error when handling authentication request to identity provider. "
                "(an error page instead of a verdict: a backend Keycloak checks credentials with, "
                "such as its LDAP user federation, failed)",
                0),
            0u)
      << login_res.outcome.message;
  EXPECT_EQ(pw.outcome.reason, Reason::http_status) << pw.outcome.message;
  EXPECT_EQ(pw.outcome.message.rfind("token: HTTP status 500, error unknown_error", 0), 0u)
      << pw.outcome.message;
  // The service account lives in Keycloak's database, not in LDAP: unaffected.
  EXPECT_TRUE(cc.outcome.ok) << cc.outcome.message;

  auto back = run(*r, "login");
  EXPECT_TRUE(back.outcome.ok) << back.outcome.message << "\n" << back.trace;
}

TEST_F(KeycloakReal, KeycloakStoppedIsConnectAndStartedAgainPasses) {
  auto r = runner(probe_yaml("kc", client_credentials(kc().get("CLIENT_SECRET")) +
                                       "      health_url: " + kc().get("HEALTH_URL") + "\n") +
                  probe_yaml("login", login(kc().get("MONITOR_PASSWORD"))));
  ASSERT_TRUE(run(*r, "kc").outcome.ok);
  kc().stop_keycloak();
  auto down = run(*r, "kc");
  auto login_down = run(*r, "login");
  kc().start_keycloak();
  EXPECT_EQ(down.outcome.reason, Reason::connect) << down.outcome.message;
  EXPECT_EQ(down.outcome.message.rfind("discovery: ", 0), 0u) << down.outcome.message;
  EXPECT_FALSE(r->engine().tokens().get("kc"));
  EXPECT_EQ(login_down.outcome.reason, Reason::connect) << login_down.outcome.message;

  auto back = run(*r, "kc");
  EXPECT_TRUE(back.outcome.ok) << back.outcome.message << "\n" << back.trace;
  auto login_back = run(*r, "login");
  EXPECT_TRUE(login_back.outcome.ok) << login_back.outcome.message << "\n" << login_back.trace;
}

}  // namespace
}  // namespace pes
