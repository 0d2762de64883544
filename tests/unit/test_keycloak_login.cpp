// Unit tests of the login flow's pure parts (probes/keycloak/login.h) without a server: PKCE, the
// HTML form and message extraction on page shapes saved from the real Keycloak
// (tests/data/keycloak-pages/), cookies, URLs, the callback, the ID token's claims, and the
// config keys of grant: authorization_code.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>

#include "agent/config/config.h"
#include "probes/keycloak/keycloak_probe.h"
#include "probes/keycloak/login.h"
#include "probes/registry.h"
#include "tests/support/fixture.h"

namespace pes {
namespace {

using namespace pes::login;

std::string page(const std::string& name) {
  return test::read_file(std::string(PES_SOURCE_DIR) + "/tests/data/keycloak-pages/" + name);
}

std::string field(const Form& f, const std::string& name) {
  for (const auto& [k, v] : f.fields)
    if (k == name) return v;
  return "<absent>";
}

TEST(KeycloakLoginPkce, ChallengeIsTheRfc7636Example) {
  // RFC 7636 Appendix B.
  EXPECT_EQ(pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM");
}

TEST(KeycloakLoginPkce, RandomTokensAreLongUrlSafeAndDiffer) {
  const std::string a = random_token(), b = random_token();
  EXPECT_EQ(a.size(), 43u);
  EXPECT_NE(a, b);
  EXPECT_EQ(a.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"),
            std::string::npos);
}

TEST(KeycloakLoginPage, TheRealLoginPageYieldsItsFormAndNoMessage) {
  const Page p = read_page(page("login.html"));
  ASSERT_TRUE(p.parsed);
  EXPECT_EQ(p.title, "Sign in to PES platform");
  ASSERT_TRUE(p.login);
  EXPECT_EQ(p.login->id, "kc-form-login");
  EXPECT_EQ(p.login->method, "post");
  // The entities of the action (&amp;) are decoded by the parser.
  EXPECT_EQ(p.login->action.rfind("http://127.0.0.1:27210/realms/pes/login-actions/authenticate?"
                                  "session_code=",
                                  0),
            0u)
      << p.login->action;
  EXPECT_NE(p.login->action.find("&execution="), std::string::npos);
  EXPECT_EQ(p.login->action.find("&amp;"), std::string::npos);
  EXPECT_EQ(p.login->username_field, "username");
  EXPECT_EQ(p.login->password_field, "password");
  EXPECT_EQ(field(*p.login, "credentialId"), "");
  EXPECT_FALSE(p.error_page);
  EXPECT_EQ(p.message, "");
}

TEST(KeycloakLoginPage, RefusedCredentialsComeBackAsTheFormWithKeycloaksMessage) {
  const Page p = read_page(page("login-invalid-credentials.html"));
  ASSERT_TRUE(p.login);
  EXPECT_FALSE(p.error_page);
  EXPECT_EQ(p.message, "Invalid username or password.");
}

TEST(KeycloakLoginPage, ErrorPagesAreRecognisedWithTheirText) {
  const Page ldap = read_page(page("login-ldap-down.html"));
  EXPECT_FALSE(ldap.login);
  EXPECT_TRUE(ldap.error_page);
  EXPECT_EQ(ldap.message,
            "Unexpected error when handling authentication request to identity provider.");
  const Page redirect = read_page(page("error-invalid-redirect-uri.html"));
  EXPECT_TRUE(redirect.error_page);
  EXPECT_EQ(redirect.message, "Invalid parameter: redirect_uri");
  const Page client = read_page(page("error-client-not-found.html"));
  EXPECT_TRUE(client.error_page);
  EXPECT_EQ(client.message, "Client not found.");
}

TEST(KeycloakLoginPage, TheOlderThemeShapeWithARelativeAction) {
  const Page p = read_page(page("login-v1-theme.html"));
  ASSERT_TRUE(p.login);
  EXPECT_EQ(p.title, "Sign in to Old Realm");
  EXPECT_EQ(p.login->action,
            "login-actions/authenticate?session_code=abc&execution=e1&client_id=app");
  EXPECT_EQ(field(*p.login, "username"), "bob");
  EXPECT_EQ(field(*p.login, "rememberMe"), "<absent>");  // unchecked box: not submitted
  EXPECT_EQ(field(*p.login, "login"), "<absent>");       // the submit button: not submitted
  EXPECT_EQ(field(*p.login, "credentialId"), "");
  // The field error is more specific than the alert above the form.
  EXPECT_EQ(p.message, "Invalid username or password.");
  EXPECT_EQ(
      resolve_url("http://kc:8080/realms/old/protocol/openid-connect/auth?x=1", p.login->action),
      "http://kc:8080/realms/old/protocol/openid-connect/login-actions/authenticate?"
      "session_code=abc&execution=e1&client_id=app");
}

TEST(KeycloakLoginPage, PagesWithoutALoginForm) {
  const Page none = read_page("<html><head><title>Welcome</title></head><body><p>hi</p></body>");
  EXPECT_TRUE(none.parsed);
  EXPECT_FALSE(none.login);
  EXPECT_FALSE(none.has_form);
  EXPECT_EQ(none.title, "Welcome");
  // A consent page or a required action is a form, but not a login form.
  const Page consent = read_page(
      "<html><body><form id=\"kc-oauth\" action=\"/consent\" method=post>"
      "<input type=submit name=accept value=Yes></form></body></html>");
  EXPECT_FALSE(consent.login);
  EXPECT_TRUE(consent.has_form);
  // Garbage parses to something (RECOVER) and yields no form.
  const Page junk = read_page(std::string("\x00\xff<<<form", 9));
  EXPECT_FALSE(junk.login);
  // The #kc-form-login form wins over an earlier password form.
  const Page two = read_page(
      "<form id=other action=/a><input type=password name=p></form>"
      "<form id=kc-form-login action=/b><input name=username><input type=password "
      "name=password></form>");
  ASSERT_TRUE(two.login);
  EXPECT_EQ(two.login->action, "/b");
  // Without an input named username, the text input before the password is the user's.
  const Page odd =
      read_page("<form action=/c><input name=user type=email><input type=password name=pw></form>");
  ASSERT_TRUE(odd.login);
  EXPECT_EQ(odd.login->username_field, "user");
  EXPECT_EQ(odd.login->password_field, "pw");
}

TEST(KeycloakLoginUrl, ParseAndResolve) {
  auto u = parse_url("HTTP://User:pw@KC.example:8080/realms/pes?x=1#frag");
  ASSERT_TRUE(u);
  EXPECT_EQ(u->scheme, "http");
  EXPECT_EQ(u->authority, "kc.example:8080");
  EXPECT_EQ(u->path, "/realms/pes");
  EXPECT_EQ(u->query, "x=1");
  EXPECT_EQ(u->origin(), "http://kc.example:8080");
  EXPECT_FALSE(parse_url("ftp://x/"));
  EXPECT_FALSE(parse_url("/relative"));
  EXPECT_EQ(parse_url("https://h")->path, "/");
  EXPECT_EQ(resolve_url("https://h/a/b?q", "/c"), "https://h/c");
  EXPECT_EQ(resolve_url("https://h/a/b?q", "c?d"), "https://h/a/c?d");
  EXPECT_EQ(resolve_url("https://h/a/b?q", "?z"), "https://h/a/b?z");
  EXPECT_EQ(resolve_url("https://h/a/b", "//other/x"), "https://other/x");
  EXPECT_EQ(resolve_url("https://h/a/b", "http://else/y"), "http://else/y");
}

TEST(KeycloakLoginCookies, KeycloaksCookiesGoBackToItsRealmPathOnly) {
  CookieJar jar;
  const std::vector<std::pair<std::string, std::string>> headers = {
      {"set-cookie",
       "AUTH_SESSION_ID=abc.def; Version=1; Path=/realms/pes/; SameSite=None; Secure; HttpOnly"},
      {"set-cookie", "KC_AUTH_SESSION_HASH=\"h4sh\"; Max-Age=60; Path=/realms/pes/; Secure"},
      {"set-cookie", "KC_RESTART=r; Path=/realms/pes/; HttpOnly"},
      {"content-type", "text/html"},
  };
  jar.store("http://127.0.0.1:8080/realms/pes/protocol/openid-connect/auth?x", headers, 1000);
  EXPECT_EQ(jar.size(), 3u);
  EXPECT_EQ(jar.header_for("http://127.0.0.1:8080/realms/pes/login-actions/authenticate?a=b"),
            "AUTH_SESSION_ID=abc.def; KC_AUTH_SESSION_HASH=h4sh; KC_RESTART=r");
  EXPECT_EQ(jar.header_for("http://127.0.0.1:8080/realms/other/x"), "");
  EXPECT_EQ(jar.header_for("http://127.0.0.2:8080/realms/pes/x"), "");
  // Deleted by Max-Age=0 and by an Expires in the past; replaced by a new value.
  jar.store("http://127.0.0.1:8080/realms/pes/login-actions/authenticate",
            {{"set-cookie", "KC_RESTART=; Max-Age=0; Path=/realms/pes/"},
             {"set-cookie",
              "KC_AUTH_SESSION_HASH=x; Expires=Thu, 01 Jan 1970 00:00:10 GMT; "
              "Path=/realms/pes/"},
             {"set-cookie", "AUTH_SESSION_ID=new; Path=/realms/pes/"}},
            1000);
  EXPECT_EQ(jar.header_for("http://127.0.0.1:8080/realms/pes/x"), "AUTH_SESSION_ID=new");
  // Without a Path attribute: the request path's directory.
  CookieJar dflt;
  dflt.store("http://h/a/b/c", {{"set-cookie", "n=v"}}, 0);
  EXPECT_EQ(dflt.header_for("http://h/a/b/d"), "n=v");
  EXPECT_EQ(dflt.header_for("http://h/a/x"), "");
  EXPECT_EQ(dflt.header_for("http://h/a/bc"), "");
}

TEST(KeycloakLoginCallback, TheRedirectIsReadNotFollowed) {
  const std::string ru = "http://127.0.0.1/pes-agent/callback";
  auto cb = parse_callback(
      "http://127.0.0.1/pes-agent/callback?state=st%2B1&session_state=s&iss=http%3A%2F%2Fkc%2F"
      "realms%2Fpes&code=c0de.x",
      ru);
  EXPECT_TRUE(cb.is_redirect_uri);
  EXPECT_EQ(cb.state, "st+1");
  EXPECT_EQ(cb.iss, "http://kc/realms/pes");
  EXPECT_EQ(cb.code, "c0de.x");
  auto err = parse_callback(ru + "?error=access_denied&error_description=no+way&state=s", ru);
  EXPECT_EQ(err.error, "access_denied");
  EXPECT_EQ(err.error_description, "no way");
  EXPECT_FALSE(parse_callback("http://127.0.0.1/other?code=c", ru).is_redirect_uri);
  EXPECT_FALSE(parse_callback("http://127.0.0.1:81/pes-agent/callback?code=c", ru).is_redirect_uri);
}

TEST(KeycloakLoginRequest, AuthorizationUrlCarriesPkceStateAndNonce) {
  const std::string url =
      authorization_url("http://kc/realms/pes/protocol/openid-connect/auth", "pes-agent-login",
                        "http://127.0.0.1/cb", "openid profile", "S", "N", "C");
  EXPECT_EQ(url,
            "http://kc/realms/pes/protocol/openid-connect/auth?response_type=code&client_id=pes-"
            "agent-login&redirect_uri=http%3A%2F%2F127.0.0.1%2Fcb&scope=openid+profile&state=S&"
            "nonce=N&code_challenge=C&code_challenge_method=S256");
  EXPECT_EQ(with_openid(""), "openid");
  EXPECT_EQ(with_openid("profile"), "openid profile");
  EXPECT_EQ(with_openid("profile openid"), "profile openid");
  EXPECT_EQ(with_openid("openidx"), "openid openidx");
}

TEST(KeycloakLoginIdToken, AudienceAndNonce) {
  using nlohmann::json;
  EXPECT_EQ(check_id_token(json{{"aud", "app"}, {"nonce", "n"}}, "app", "n"), "");
  EXPECT_EQ(check_id_token(json{{"aud", {"x", "app"}}, {"nonce", "n"}}, "app", "n"), "");
  EXPECT_EQ(check_id_token(json{{"aud", "other"}, {"azp", "app"}, {"nonce", "n"}}, "app", "n"),
            "aud does not contain the client app");
  EXPECT_EQ(check_id_token(json{{"aud", "app"}}, "app", "n"), "no nonce (the request sent one)");
  EXPECT_EQ(check_id_token(json{{"aud", "app"}, {"nonce", "old"}}, "app", "n"),
            "nonce does not match the request's (a replayed token?)");
}

// --- config ---------------------------------------------------------------------------------

std::string config_error(const std::string& section) {
  try {
    parse_config("probes:\n  - name: kc\n    type: keycloak\n    keycloak:\n" + section, "kc.yml",
                 probe_types());
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}

const std::string kBase = "      url: http://kc:8080\n      realm: pes\n";

TEST(KeycloakLoginConfig, AValidLoginSection) {
  auto cfg = parse_config("probes:\n  - name: kc\n    type: keycloak\n    keycloak:\n" + kBase +
                              "      grant: authorization_code\n      client_id: pes-agent-login\n"
                              "      username: pes-monitor\n      password: pw-secret\n"
                              "      redirect_uri: http://127.0.0.1/pes-agent/callback\n",
                          "kc.yml", probe_types());
  ASSERT_EQ(cfg->probes.size(), 1u);
  EXPECT_EQ(cfg->redactor->redact("pw-secret"), "<redacted>");
}

TEST(KeycloakLoginConfig, ErrorsNameTheKey) {
  EXPECT_NE(config_error(kBase + "      grant: authorization_code\n      username: u\n"
                                 "      password: p\n")
                .find("grant: authorization_code needs a redirect_uri"),
            std::string::npos);
  EXPECT_NE(config_error(kBase + "      grant: authorization_code\n      password: p\n"
                                 "      redirect_uri: http://x/cb\n")
                .find("grant: authorization_code needs a username"),
            std::string::npos);
  EXPECT_NE(config_error(kBase + "      grant: authorization_code\n      username: u\n"
                                 "      redirect_uri: http://x/cb\n")
                .find("grant: authorization_code needs a password"),
            std::string::npos);
  const std::string bad_uri = config_error(kBase +
                                           "      grant: authorization_code\n      username: u\n"
                                           "      password: p\n      redirect_uri: urn:x\n");
  EXPECT_NE(bad_uri.find("kc.yml:10:21: probes[0].keycloak.redirect_uri"), std::string::npos)
      << bad_uri;
  EXPECT_NE(config_error(kBase + "      grant: authorization_code\n      username: u\n"
                                 "      password: p\n      redirect_uri: http://x/cb\n"
                                 "      verify: false\n")
                .find("keycloak.verify: grant: authorization_code verifies the ID token"),
            std::string::npos);
  EXPECT_NE(config_error(kBase + "      client_secret: s\n      redirect_uri: http://x/cb\n")
                .find("keycloak.redirect_uri: only used with grant: authorization_code"),
            std::string::npos);
}

}  // namespace
}  // namespace pes
