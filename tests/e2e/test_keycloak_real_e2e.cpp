// The built pes-agent against the real Keycloak of the suite run (tests/support/keycloak_shared.h):
// the service account's token and the login a person makes, each handed on with bearer_from to an
// nginx location that asks Keycloak itself whether the token is good (auth_request to the realm's
// userinfo endpoint), so the SSO chain is checked with a real Keycloak token end to end. Then
// slapd is stopped: the LDAP user's login fails saying why, and the dependency edge
// keycloak-login → openldap names the root cause on the status API.
#include <gtest/gtest.h>

#include <chrono>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/agent_process.h"
#include "tests/support/fixture.h"
#include "tests/support/keycloak_shared.h"

namespace {

using namespace pes::test;
using namespace std::chrono_literals;

SharedKeycloak& kc() { return SharedKeycloak::instance(); }

class KeycloakRealE2E : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir("pes-kc-e2e-");
    // nginx lets a request in only if Keycloak's userinfo accepts its bearer token.
    const std::string conf = dir_->file("kc-api.conf");
    write_file(conf,
               "location = /kc-api { auth_request /_kc_userinfo; default_type text/plain; "
               "return 200 \"token accepted by keycloak\\n\"; }\n"
               "location = /_kc_userinfo { internal; proxy_pass_request_body off; "
               "proxy_set_header Content-Length \"\"; proxy_pass " +
                   kc().get("ISSUER") + "/protocol/openid-connect/userinfo; }\n");
    nginx_ = new Fixture("nginx", {{"CONF", conf}});
  }
  static void TearDownTestSuite() {
    delete nginx_;
    nginx_ = nullptr;
    delete dir_;
    dir_ = nullptr;
  }

  static std::string config(const std::string& password) {
    const std::string kcs = "    keycloak:\n      url: " + kc().get("URL") + "\n      realm: pes\n";
    const std::string api = "http://127.0.0.1:" + nginx_->get("PORT") + "/kc-api";
    return "global:\n  interval: 3s\n  timeout: 2500ms\n  failure_threshold: 1\n"
           "probes:\n"
           "  - name: keycloak\n    type: keycloak\n    depends_on: [postgres]\n" +
           kcs + "      client_id: pes-agent\n      client_secret: '" + kc().get("CLIENT_SECRET") +
           "'\n      scope: openid\n      health_url: " + kc().get("HEALTH_URL") +
           "\n"
           "  - name: keycloak-login\n    service: keycloak\n    type: keycloak\n"
           "    depends_on: [keycloak, openldap]\n" +
           kcs +
           "      grant: authorization_code\n      client_id: pes-agent-login\n"
           "      username: " +
           kc().get("MONITOR_USER") + "\n      password: '" + password +
           "'\n      redirect_uri: " + kc().get("REDIRECT_URI") +
           "\n"
           "  - name: openldap\n    type: ldap\n    ldap:\n      url: " +
           kc().get("LDAP_URL") +
           "\n"
           "  - name: postgres\n    type: tcp\n    tcp:\n      address: 127.0.0.1:" +
           kc().get("POSTGRES_PORT") +
           "\n"
           "  - name: app\n    service: nextcloud\n    type: http\n    depends_on: [keycloak]\n"
           "    http:\n      url: " +
           api +
           "\n      bearer_from: keycloak\n"
           "  - name: app-person\n    service: nextcloud\n    type: http\n"
           "    depends_on: [keycloak-login]\n    http:\n      url: " +
           api + "\n      bearer_from: keycloak-login\n";
  }

  static nlohmann::json probe_status(const AgentProcess& agent, const std::string& name) {
    const auto doc = nlohmann::json::parse(agent.get("/api/v1/status").body, nullptr, false);
    if (doc.is_discarded()) return {};
    for (const auto& p : doc["probes"])
      if (p["name"] == name) return p;
    return {};
  }

  void expect_no_secret_anywhere(const AgentProcess& agent) {
    const std::vector<std::pair<std::string, std::string>> outputs = {
        {"/metrics", agent.metrics()},
        {"/probe keycloak-login", agent.get("/probe?name=keycloak-login&debug=true").body},
        {"/api/v1/status", agent.get("/api/v1/status").body},
        {"/", agent.get("/").body},
        {"log", agent.log()},
    };
    for (const auto& [what, text] : outputs) {
      EXPECT_FALSE(text.empty()) << what;
      // A JWT starts with {"alg" (eyJhbGci); Keycloak's form URL in the trace is other base64.
      EXPECT_EQ(text.find("eyJhbGci"), std::string::npos) << what << ":\n" << text;
      for (const char* key : {"CLIENT_SECRET", "MONITOR_PASSWORD"})
        EXPECT_EQ(text.find(kc().get(key)), std::string::npos) << what << ":\n" << text;
    }
  }

  TempDir tmp_;
  static inline TempDir* dir_ = nullptr;
  static inline Fixture* nginx_ = nullptr;
};

TEST_F(KeycloakRealE2E, RealTokensPassTheSsoChainAndSlapdDownIsExplainedByTheDependency) {
  write_file(tmp_.file("agent.yml"), config(kc().get("MONITOR_PASSWORD")));
  AgentProcess agent(tmp_.file("agent.yml"), {"--log.level=debug"});
  const std::string login = "probe=\"keycloak-login\"";
  for (const char* p : {"keycloak", "keycloak-login", "openldap", "app", "app-person"})
    ASSERT_TRUE(
        wait_for_series(agent, {"probe_success{", std::string("probe=\"") + p + "\""}, 1, 60s))
        << p << "\n"
        << agent.get("/api/v1/status").body << agent.log();
  std::string m = agent.metrics();
  EXPECT_EQ(series_value(m, {"probe_http_status_code{", "probe=\"app\""}), 200);
  EXPECT_EQ(series_value(m, {"probe_http_status_code{", "probe=\"app-person\""}), 200);
  for (const char* step : {"discovery", "authorize", "login", "token", "jwks", "verify"})
    EXPECT_GE(series_value(m, {"probe_keycloak_step_duration_seconds{", login,
                               std::string("step=\"") + step + "\""}),
              0)
        << step << "\n"
        << m;
  EXPECT_EQ(series_value(m, {"probe_dependency_info{", login, "depends_on=\"openldap\""}), 1);
  expect_no_secret_anywhere(agent);

  // The same login once from the command line: exit 0, and 2 with a wrong password.
  auto once = run_command(
      {PES_AGENT_BINARY, "probe", "keycloak-login", "--config.file=" + tmp_.file("agent.yml")},
      60s);
  EXPECT_EQ(once.exit_code, 0) << once.out << once.err;
  write_file(tmp_.file("wrong.yml"), config("not-" + kc().get("MONITOR_PASSWORD")));
  auto wrong = run_command(
      {PES_AGENT_BINARY, "probe", "keycloak-login", "--config.file=" + tmp_.file("wrong.yml")},
      60s);
  EXPECT_EQ(wrong.exit_code, 2) << wrong.out << wrong.err;
  EXPECT_NE(wrong.out.find("login: the credentials are refused: Invalid username or password."),
            std::string::npos)
      << wrong.out;

  // slapd stops: the LDAP user cannot log in, the service account still can.
  kc().stop_slapd();
  const bool login_down = wait_for_series(agent, {"probe_success{", login}, 0, 60s);
  const bool ldap_down = wait_for_series(agent, {"probe_up{", "probe=\"openldap\""}, 0, 60s);
  const bool login_state_down = wait_for_series(agent, {"probe_up{", login}, 0, 60s);
  const bool person_down =
      wait_for_series(agent, {"probe_success{", "probe=\"app-person\""}, 0, 60s);
  const auto person_status = probe_status(agent, "app-person");
  const auto login_status = probe_status(agent, "keycloak-login");
  m = agent.metrics();
  kc().start_slapd();
  EXPECT_TRUE(login_down && ldap_down && login_state_down && person_down) << m;
  EXPECT_EQ(series_value(m, {"probe_success{", "probe=\"keycloak\""}), 1) << m;
  EXPECT_EQ(login_status["down_because"], nlohmann::json::array({"openldap"})) << login_status;
  EXPECT_NE(login_status["last_error"].get<std::string>().find(
                "login: Keycloak could not check the credentials: HTTP status 400, error page: "
                "Unexpected error when handling authentication request to identity provider."),
            std::string::npos)
      << login_status;
  EXPECT_NE(login_status["last_error"].get<std::string>().find("LDAP user federation"),
            std::string::npos)
      << login_status;
  // The person's chained probe does not blame the application: no token, reason auth.
  EXPECT_EQ(person_status["last_failure_reason"], "auth") << person_status;

  // slapd is back: the login passes again.
  EXPECT_TRUE(wait_for_series(agent, {"probe_success{", login}, 1, 60s))
      << agent.get("/api/v1/status").body;
}

}  // namespace
