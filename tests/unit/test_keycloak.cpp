// Unit tests for the keycloak probe without a server: the OIDC wire helpers, the JWKS cache, the
// config section, and whole runs against an in-memory issuer behind a fake RunContext (keys are
// generated here), including the JWKS refresh on an unknown kid and on a schedule.
#include <gtest/gtest.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>

#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "agent/config/config.h"
#include "probes/keycloak/base64url.h"
#include "probes/keycloak/jwks_cache.h"
#include "probes/keycloak/keycloak_probe.h"
#include "probes/keycloak/oidc.h"
#include "probes/keycloak/ossl_handles.h"
#include "probes/registry.h"

namespace pes {
namespace {

using nlohmann::json;
using SysClock = std::chrono::system_clock;

// ---------------------------------------------------------------------------------------------
// OIDC helpers

TEST(OidcForm, EncodesLikeHtmlForms) {
  EXPECT_EQ(oidc::form_encode("abc-._~XYZ019"), "abc-._~XYZ019");
  EXPECT_EQ(oidc::form_encode("a b&c=d+e/f%"), "a+b%26c%3Dd%2Be%2Ff%25");
  EXPECT_EQ(oidc::form_encode("\xc3\xa4"), "%C3%A4");
  EXPECT_EQ(oidc::path_encode("my realm/x"), "my%20realm%2Fx");
  EXPECT_EQ(oidc::form_body({{"grant_type", "password"}, {"username", "a b"}, {"password", "p&w"}}),
            "grant_type=password&username=a+b&password=p%26w");
}

TEST(OidcBase64, Rfc4648Vectors) {
  EXPECT_EQ(oidc::base64_encode(""), "");
  EXPECT_EQ(oidc::base64_encode("f"), "Zg==");
  EXPECT_EQ(oidc::base64_encode("fo"), "Zm8=");
  EXPECT_EQ(oidc::base64_encode("foo"), "Zm9v");
  EXPECT_EQ(oidc::base64_encode("foob"), "Zm9vYg==");
  EXPECT_EQ(oidc::base64_encode("fooba"), "Zm9vYmE=");
  EXPECT_EQ(oidc::base64_encode("foobar"), "Zm9vYmFy");
  EXPECT_EQ(oidc::base64_encode("\xfb\xff"), "+/8=");
}

TEST(OidcDiscovery, UrlFromBaseAndRealm) {
  EXPECT_EQ(oidc::discovery_url("http://kc:8080", "pes"),
            "http://kc:8080/realms/pes/.well-known/openid-configuration");
  EXPECT_EQ(oidc::discovery_url("https://sso.example/auth//", "pes"),
            "https://sso.example/auth/realms/pes/.well-known/openid-configuration");
}

TEST(OidcDiscovery, ParsesTheMembersItNeeds) {
  std::string error;
  auto d = oidc::parse_discovery(R"({
    "issuer": "http://kc/realms/pes",
    "token_endpoint": "http://kc/realms/pes/protocol/openid-connect/token",
    "jwks_uri": "http://kc/realms/pes/protocol/openid-connect/certs",
    "token_endpoint_auth_methods_supported": ["private_key_jwt", "client_secret_post", 7],
    "grant_types_supported": ["client_credentials"]
  })",
                                 error);
  ASSERT_TRUE(d) << error;
  EXPECT_EQ(d->issuer, "http://kc/realms/pes");
  EXPECT_EQ(d->token_endpoint, "http://kc/realms/pes/protocol/openid-connect/token");
  EXPECT_EQ(d->jwks_uri, "http://kc/realms/pes/protocol/openid-connect/certs");
  EXPECT_EQ(d->token_auth_methods,
            (std::vector<std::string>{"private_key_jwt", "client_secret_post"}));
  EXPECT_EQ(d->grant_types, (std::vector<std::string>{"client_credentials"}));

  auto no_jwks =
      oidc::parse_discovery(R"({"issuer":"http://a","token_endpoint":"http://a/t"})", error);
  ASSERT_TRUE(no_jwks);
  EXPECT_TRUE(no_jwks->jwks_uri.empty());
}

TEST(OidcDiscovery, RejectsDocumentsWithoutUsableEndpoints) {
  const std::pair<const char*, const char*> cases[] = {
      {"<html>", "not a JSON object"},
      {"[1,2]", "not a JSON object"},
      {R"({"token_endpoint":"http://a/t"})", "has no issuer"},
      {R"({"issuer":"http://a"})", "has no token_endpoint"},
      {R"({"issuer":"http://a","token_endpoint":"ftp://a/t"})",
       "token_endpoint is not an http(s) URL"},
      {R"({"issuer":5,"token_endpoint":"http://a/t"})", "issuer is not an http(s) URL"},
      {R"({"issuer":"http://a","token_endpoint":"http://a/t","jwks_uri":"file:///etc/passwd"})",
       "jwks_uri is not an http(s) URL"},
  };
  for (const auto& [body, want] : cases) {
    std::string error;
    EXPECT_FALSE(oidc::parse_discovery(body, error)) << body;
    EXPECT_NE(error.find(want), std::string::npos) << body << " -> " << error;
  }
}

TEST(OidcClientAuth, PrefersBasicThenPost) {
  oidc::Discovery d;
  EXPECT_EQ(oidc::choose_client_auth(d, false), oidc::ClientAuth::none);
  EXPECT_EQ(oidc::choose_client_auth(d, true), oidc::ClientAuth::basic);  // nothing advertised
  d.token_auth_methods = {"client_secret_post", "client_secret_basic"};
  EXPECT_EQ(oidc::choose_client_auth(d, true), oidc::ClientAuth::basic);
  d.token_auth_methods = {"private_key_jwt", "client_secret_post"};
  EXPECT_EQ(oidc::choose_client_auth(d, true), oidc::ClientAuth::post);
  d.token_auth_methods = {"private_key_jwt", "tls_client_auth"};
  EXPECT_EQ(oidc::choose_client_auth(d, true), std::nullopt);
  EXPECT_EQ(oidc::choose_client_auth(d, false), oidc::ClientAuth::none);
}

TEST(OidcTokenRequest, ClientCredentialsWithBasicAuth) {
  oidc::TokenRequestSpec spec{"client_credentials", "pes agent", "s3:cr&t", "", "", "openid"};
  auto req = oidc::build_token_request(spec, oidc::ClientAuth::basic);
  EXPECT_EQ(req.body, "grant_type=client_credentials&scope=openid");
  ASSERT_EQ(req.headers.size(), 3u);
  EXPECT_EQ(req.headers[0], (std::pair<std::string, std::string>{
                                "Content-Type", "application/x-www-form-urlencoded"}));
  // RFC 6749 §2.3.1: form-encoded, then "id:secret", then base64.
  EXPECT_EQ(req.headers[2].first, "Authorization");
  EXPECT_EQ(req.headers[2].second, "Basic " + oidc::base64_encode("pes+agent:s3%3Acr%26t"));
}

TEST(OidcTokenRequest, PasswordGrantWithPostAndPublicClients) {
  oidc::TokenRequestSpec spec{"password", "app", "sec", "alice", "pa ss&", ""};
  auto post = oidc::build_token_request(spec, oidc::ClientAuth::post);
  EXPECT_EQ(post.body,
            "grant_type=password&username=alice&password=pa+ss%26&client_id=app&client_secret=sec");
  for (const auto& h : post.headers) EXPECT_NE(h.first, "Authorization");
  auto pub = oidc::build_token_request(spec, oidc::ClientAuth::none);
  EXPECT_EQ(pub.body, "grant_type=password&username=alice&password=pa+ss%26&client_id=app");
}

TEST(OidcTokenResponse, Success) {
  auto r = oidc::parse_token_response(
      200, R"({"access_token":"ey.a.b","token_type":"Bearer","expires_in":300,"scope":"x"})");
  ASSERT_TRUE(r.ok) << r.message;
  EXPECT_EQ(r.access_token, "ey.a.b");
  EXPECT_EQ(r.expires_in, 300);
  auto s = oidc::parse_token_response(
      200, R"({"access_token":"t","token_type":"bearer","expires_in":"60"})");
  ASSERT_TRUE(s.ok);
  EXPECT_EQ(s.expires_in, 60);
  auto n = oidc::parse_token_response(200, R"({"access_token":"t"})");
  ASSERT_TRUE(n.ok);
  EXPECT_FALSE(n.expires_in);
}

TEST(OidcTokenResponse, RefusalsAreAuth) {
  auto a = oidc::parse_token_response(
      401,
      R"({"error":"invalid_client","error_description":"Invalid client or Invalid client credentials"})");
  EXPECT_EQ(a.reason, Reason::auth);
  EXPECT_EQ(a.message,
            "HTTP status 401, error invalid_client: Invalid client or Invalid client credentials");
  EXPECT_EQ(oidc::parse_token_response(400, R"({"error":"invalid_grant"})").reason, Reason::auth);
  EXPECT_EQ(oidc::parse_token_response(400, R"({"error":"invalid_client"})").reason, Reason::auth);
  EXPECT_EQ(oidc::parse_token_response(400, R"({"error":"unauthorized_client"})").reason,
            Reason::auth);
  EXPECT_EQ(oidc::parse_token_response(401, "Unauthorized").reason, Reason::auth);
}

TEST(OidcTokenResponse, OtherFailures) {
  auto e = oidc::parse_token_response(400, R"({"error":"unsupported_grant_type"})");
  EXPECT_EQ(e.reason, Reason::http_status);
  EXPECT_EQ(e.message, "HTTP status 400, error unsupported_grant_type");
  EXPECT_EQ(oidc::parse_token_response(503, "down").reason, Reason::http_status);
  const std::pair<const char*, const char*> protocol[] = {
      {"<html>", "not a JSON object"},
      {R"({"token_type":"Bearer"})", "no access_token"},
      {R"({"access_token":""})", "no access_token"},
      {R"({"access_token":5})", "no access_token"},
      {R"({"access_token":"t","token_type":"mac"})", "token_type is 'mac'"},
      {R"({"access_token":"t","expires_in":-5})", "expires_in"},
      {R"({"access_token":"t","expires_in":"soon"})", "expires_in"},
  };
  for (const auto& [body, want] : protocol) {
    auto r = oidc::parse_token_response(200, body);
    EXPECT_FALSE(r.ok) << body;
    EXPECT_EQ(r.reason, Reason::protocol) << body;
    EXPECT_NE(r.message.find(want), std::string::npos) << body << " -> " << r.message;
  }
}

TEST(OidcHealth, KeycloakReadyAnswers) {
  EXPECT_TRUE(oidc::judge_health(200, R"({"status":"UP","checks":[]})").ok);
  auto down =
      oidc::judge_health(503, R"({"status":"DOWN","checks":[{"name":"db","status":"DOWN"}]})");
  EXPECT_EQ(down.reason, Reason::http_status);
  EXPECT_EQ(down.message, "HTTP status 503, status DOWN");
  auto odd = oidc::judge_health(200, R"({"status":"DOWN"})");
  EXPECT_EQ(odd.reason, Reason::assertion);
  EXPECT_EQ(odd.message, "status is DOWN, not UP");
  EXPECT_EQ(oidc::judge_health(200, "{}").reason, Reason::assertion);
  EXPECT_EQ(oidc::judge_health(200, "OK").reason, Reason::protocol);
}

// ---------------------------------------------------------------------------------------------
// JWKS cache

TEST(JwksCache, FreshForTheRefreshIntervalAndTheSameUri) {
  JwksCache cache(std::chrono::minutes(10));
  const Clock::time_point t0{std::chrono::hours(1)};
  EXPECT_EQ(cache.get("http://a/certs", t0), nullptr);
  auto set = std::make_shared<const jwt::Jwks>();
  cache.store("http://a/certs", set, t0);
  EXPECT_EQ(cache.get("http://a/certs", t0 + std::chrono::minutes(9)), set);
  EXPECT_EQ(cache.get("http://a/certs", t0 + std::chrono::minutes(10)), nullptr);
  EXPECT_EQ(cache.get("http://b/certs", t0), nullptr);
  EXPECT_EQ(cache.get("http://a/certs", t0 - std::chrono::seconds(1)), nullptr);
  cache.clear();
  EXPECT_EQ(cache.get("http://a/certs", t0), nullptr);
}

// ---------------------------------------------------------------------------------------------
// Config section

std::shared_ptr<const Config> load(const std::string& section) {
  return parse_config("probes:\n  - name: kc\n    type: keycloak\n    keycloak:\n" + section,
                      "kc.yml", probe_types());
}

std::string config_error(const std::string& section) {
  try {
    load(section);
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}

TEST(KeycloakConfig, MinimalClientCredentials) {
  auto cfg = load(
      "      url: http://kc:8080/\n"
      "      realm: pes\n"
      "      client_secret: verysecret\n");
  ASSERT_EQ(cfg->probes.size(), 1u);
  EXPECT_EQ(cfg->probes[0].type, "keycloak");
  EXPECT_EQ(cfg->probes[0].probe->target(), "http://kc:8080/realms/pes");
  EXPECT_EQ(cfg->redactor->redact("x verysecret y"), "x <redacted> y");
}

TEST(KeycloakConfig, EveryField) {
  auto cfg = load(
      "      url: https://sso.example\n"
      "      realm: pes\n"
      "      client_id: app\n"
      "      client_secret: sec-ret\n"
      "      grant: password\n"
      "      username: alice\n"
      "      password: alicepw\n"
      "      scope: openid\n"
      "      audience: nextcloud\n"
      "      verify: false\n"
      "      health_url: https://sso.example:9000/health/ready\n"
      "      tls: {insecure_skip_verify: true}\n"
      "      leeway: 10s\n"
      "      jwks_refresh_interval: 1m\n");
  ASSERT_EQ(cfg->probes.size(), 1u);
  EXPECT_EQ(cfg->redactor->redact("alicepw sec-ret"), "<redacted> <redacted>");
}

TEST(KeycloakConfig, Errors) {
  EXPECT_NE(config_error("      realm: pes\n      client_secret: s3cret\n")
                .find("kc.yml:5:7: probes[0].keycloak.url"),
            std::string::npos);
  EXPECT_NE(
      config_error("      url: http://kc\n      client_secret: s3cret\n").find("realm: required"),
      std::string::npos);
  EXPECT_NE(config_error("      url: http://kc\n      realm: pes\n").find("needs a client_secret"),
            std::string::npos);
  EXPECT_NE(
      config_error(
          "      url: http://kc\n      realm: pes\n      grant: password\n      password: x\n")
          .find("needs a username"),
      std::string::npos);
  EXPECT_NE(
      config_error(
          "      url: http://kc\n      realm: pes\n      grant: password\n      username: x\n")
          .find("needs a password"),
      std::string::npos);
  EXPECT_NE(config_error("      url: http://kc\n      realm: pes\n      client_secret: s3cret\n    "
                         "  username: u\n")
                .find("keycloak.username: only used with grant: password"),
            std::string::npos);
  EXPECT_NE(config_error("      url: http://kc\n      realm: pes\n      client_secret: s3cret\n    "
                         "  grant: implicit\n")
                .find("grant"),
            std::string::npos);
  EXPECT_NE(config_error("      url: http://kc\n      realm: a/b\n      client_secret: s3cret\n")
                .find("realm name"),
            std::string::npos);
  EXPECT_NE(config_error("      url: ftp://kc\n      realm: pes\n      client_secret: s3cret\n")
                .find("http://"),
            std::string::npos);
  EXPECT_NE(
      config_error(
          "      url: http://kc\n      realm: pes\n      client_secret: s3cret\n      issuer: x\n")
          .find("issuer"),
      std::string::npos);
  // Secrets do not appear in errors.
  auto e = config_error(
      "      url: http://kc\n      realm: pes\n      client_secret: hunter22\n      grant: nope\n");
  EXPECT_FALSE(e.empty());
  EXPECT_EQ(e.find("hunter22"), std::string::npos);
}

TEST(KeycloakConfig, BearerFromMustNameAKeycloakProbe) {
  const std::string good =
      "probes:\n"
      "  - name: kc\n    type: keycloak\n    keycloak: {url: 'http://kc', realm: pes, "
      "client_secret: s3cret}\n"
      "  - name: app\n    type: http\n    http: {url: 'http://app/', bearer_from: kc}\n";
  auto cfg = parse_config(good, "f.yml", probe_types());
  EXPECT_EQ(cfg->find("app")->probe->token_sources(), std::vector<std::string>{"kc"});
  const std::string bad =
      "probes:\n"
      "  - name: other\n    type: http\n    http: {url: 'http://other/'}\n"
      "  - name: app\n    type: http\n    http: {url: 'http://app/', bearer_from: other}\n";
  EXPECT_THROW(parse_config(bad, "f.yml", probe_types()), ConfigError);
}

// ---------------------------------------------------------------------------------------------
// Whole runs against an in-memory issuer

using jwt::BignumPtr;
using jwt::MdCtxPtr;
using jwt::PkeyPtr;

PkeyPtr rsa_key() {
  PkeyPtr key(EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", static_cast<size_t>(2048)));
  if (!key) throw std::runtime_error("RSA keygen failed");
  return key;
}

std::string bn(EVP_PKEY* key, const char* name) {
  BIGNUM* raw = nullptr;
  if (EVP_PKEY_get_bn_param(key, name, &raw) != 1) throw std::runtime_error("get_bn_param");
  BignumPtr b(raw);
  std::string out(static_cast<size_t>(BN_num_bytes(b.get())), '\0');
  BN_bn2bin(b.get(), reinterpret_cast<unsigned char*>(out.data()));
  return out;
}

json jwk(EVP_PKEY* key, const std::string& kid) {
  return {{"kty", "RSA"},
          {"kid", kid},
          {"use", "sig"},
          {"alg", "RS256"},
          {"n", jwt::base64url_encode(bn(key, OSSL_PKEY_PARAM_RSA_N))},
          {"e", jwt::base64url_encode(bn(key, OSSL_PKEY_PARAM_RSA_E))}};
}

std::string rs256(EVP_PKEY* key, const json& header, const json& payload) {
  const std::string input =
      jwt::base64url_encode(header.dump()) + "." + jwt::base64url_encode(payload.dump());
  MdCtxPtr ctx(EVP_MD_CTX_new());
  size_t len = 0;
  const auto* in = reinterpret_cast<const unsigned char*>(input.data());
  if (EVP_DigestSignInit_ex(ctx.get(), nullptr, "SHA256", nullptr, nullptr, key, nullptr) != 1 ||
      EVP_DigestSign(ctx.get(), nullptr, &len, in, input.size()) != 1)
    throw std::runtime_error("sign");
  std::string sig(len, '\0');
  if (EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(sig.data()), &len, in,
                     input.size()) != 1)
    throw std::runtime_error("sign");
  sig.resize(len);
  return input + "." + jwt::base64url_encode(sig);
}

constexpr const char* kBase = "http://kc.test";
constexpr const char* kIssuer = "http://kc.test/realms/pes";
constexpr const char* kSecret = "cl13nt-s3cret";
const std::string kDiscovery = std::string(kIssuer) + "/.well-known/openid-configuration";
const std::string kTokenUrl = std::string(kIssuer) + "/protocol/openid-connect/token";
const std::string kCertsUrl = std::string(kIssuer) + "/protocol/openid-connect/certs";
const std::string kHealthUrl = "http://kc.test:9000/health/ready";

HttpResponse answer(long status, std::string body) {
  HttpResponse r;
  r.ok = true;
  r.status = status;
  r.body = std::move(body);
  return r;
}

// A RunContext whose http() answers from `routes` at once (unknown URLs: connection refused).
class FakeContext : public RunContext {
 public:
  using Route = std::function<HttpResponse(const HttpRequest&)>;
  FakeContext(std::map<std::string, Route> routes, TokenStore& store, bool debug)
      : routes_(std::move(routes)), store_(store), trace_(debug, nullptr) {}

  Clock::time_point deadline() const override { return deadline_; }
  const std::string& probe_name() const override { return name_; }
  void http(HttpRequest request, std::function<void(HttpResponse)> done) override {
    requests.push_back(request);
    auto it = routes_.find(request.url);
    if (it == routes_.end()) {
      HttpResponse r;
      r.reason = Reason::connect;
      r.error = "Failed to connect to " + request.url;
      return done(r);
    }
    done(it->second(request));
  }
  void blocking(std::function<void()> work) override { work(); }
  // The keycloak probe drives no socket of its own.
  void wait_fd(int, short, std::function<void(bool)> ready) override { ready(false); }
  void on_loop(std::function<void()> fn) override { fn(); }
  TokenStore& tokens() override { return store_; }
  Trace& trace() override { return trace_; }

  std::vector<HttpRequest> requests;

 private:
  std::map<std::string, Route> routes_;
  TokenStore& store_;
  Trace trace_;
  std::string name_ = "kc";
  Clock::time_point deadline_ = Clock::now() + std::chrono::seconds(10);
};

// The issuer: a realm with signing keys, a confidential client and a user. Tests change its
// members between runs (rotate keys, issue odd tokens, answer with errors).
class KeycloakRuns : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    key_a_ = rsa_key().release();
    key_b_ = rsa_key().release();
  }
  static void TearDownTestSuite() {
    EVP_PKEY_free(key_a_);
    EVP_PKEY_free(key_b_);
  }

  void SetUp() override {
    steady_now_ = Clock::time_point(std::chrono::hours(100));
    wall_now_ = SysClock::now();
  }

  int64_t now_unix() const {
    return std::chrono::duration_cast<std::chrono::seconds>(wall_now_.time_since_epoch()).count();
  }

  json claims() const {
    return {{"iss", kIssuer},     {"sub", "service-account-pes-agent"},
            {"azp", "pes-agent"}, {"aud", "account"},
            {"iat", now_unix()},  {"exp", now_unix() + 300},
            {"typ", "Bearer"}};
  }

  std::string issue() const {
    if (!token_override_.empty()) return token_override_;
    json c = claims();
    for (const auto& [k, v] : claim_overrides_.items()) c[k] = v;
    return rs256(signing_key_, {{"alg", "RS256"}, {"typ", "JWT"}, {"kid", signing_kid_}}, c);
  }

  std::map<std::string, FakeContext::Route> routes() {
    std::map<std::string, FakeContext::Route> r;
    r[kDiscovery] = [this](const HttpRequest&) {
      if (discovery_status_ != 200) return answer(discovery_status_, "<html>not found</html>");
      json d = {{"issuer", kIssuer},
                {"token_endpoint", kTokenUrl},
                {"jwks_uri", kCertsUrl},
                {"grant_types_supported", {"client_credentials", "password", "refresh_token"}},
                {"token_endpoint_auth_methods_supported", auth_methods_}};
      return answer(200, d.dump());
    };
    r[kTokenUrl] = [this](const HttpRequest& req) {
      token_requests_.push_back(req);
      const std::string basic =
          "Basic " + oidc::base64_encode(std::string("pes-agent:") + client_secret_);
      bool client_ok = false;
      for (const auto& [k, v] : req.headers)
        if (k == "Authorization" && v == basic) client_ok = true;
      if (req.body &&
          req.body->find("client_secret=" + oidc::form_encode(client_secret_)) != std::string::npos)
        client_ok = true;
      if (!client_ok)
        return answer(
            401, R"({"error":"invalid_client","error_description":"Invalid client credentials"})");
      json t = {{"access_token", issue()}, {"token_type", "Bearer"}, {"expires_in", 300}};
      return answer(200, t.dump());
    };
    r[kCertsUrl] = [this](const HttpRequest&) {
      ++jwks_fetches_;
      return answer(200, json{{"keys", published_keys_}}.dump());
    };
    r[kHealthUrl] = [this](const HttpRequest&) { return answer(health_status_, health_body_); };
    return r;
  }

  KeycloakSpec spec() const {
    KeycloakSpec s;
    s.url = kBase;
    s.realm = "pes";
    s.token = {"client_credentials", "pes-agent", kSecret, "", "", ""};
    return s;
  }

  std::unique_ptr<KeycloakProbe> probe(KeycloakSpec s) {
    KeycloakClocks clocks;
    clocks.steady = [this] { return steady_now_; };
    clocks.wall = [this] { return wall_now_; };
    return std::make_unique<KeycloakProbe>(std::move(s), std::move(clocks));
  }

  Outcome run(Probe& p, bool debug = true) {
    auto ctx = std::make_shared<FakeContext>(routes(), store_, debug);
    std::optional<Outcome> out;
    int calls = 0;
    p.run(ctx, [&](Outcome o) {
      ++calls;
      out = std::move(o);
    });
    EXPECT_EQ(calls, 1);
    last_trace_ = ctx->trace().text();
    last_requests_ = ctx->requests;
    // Whatever happened, neither the token nor a secret is in the message or the trace.
    if (out) {
      for (const std::string& s : {std::string(kSecret), client_secret_, issue()}) {
        EXPECT_EQ(out->message.find(s), std::string::npos) << out->message;
        EXPECT_EQ(last_trace_.find(s), std::string::npos) << last_trace_;
      }
    }
    return out.value_or(Outcome::failure(Reason::internal, "done was never called"));
  }

  static std::optional<double> sample(const Outcome& o, const std::string& name,
                                      const std::string& step = "") {
    for (const auto& s : o.samples) {
      if (s.name != name) continue;
      if (!step.empty() && (s.labels.empty() || s.labels[0].second != step)) continue;
      return s.value;
    }
    return std::nullopt;
  }

  static inline EVP_PKEY* key_a_ = nullptr;
  static inline EVP_PKEY* key_b_ = nullptr;

  Clock::time_point steady_now_;
  SysClock::time_point wall_now_;
  TokenStore store_;
  EVP_PKEY* signing_key_ = key_a_;
  std::string signing_kid_ = "kid-a";
  json published_keys_ = json::array({jwk(key_a_, "kid-a")});
  json claim_overrides_ = json::object();
  std::string token_override_;
  std::string client_secret_ = kSecret;
  json auth_methods_ = {"private_key_jwt", "client_secret_basic", "client_secret_post"};
  long discovery_status_ = 200;
  long health_status_ = 200;
  std::string health_body_ = R"({"status":"UP","checks":[]})";
  int jwks_fetches_ = 0;
  std::vector<HttpRequest> token_requests_;
  std::string last_trace_;
  std::vector<HttpRequest> last_requests_;
};

TEST_F(KeycloakRuns, ClientCredentialsSuccessPublishesTheToken) {
  auto p = probe(spec());
  const Outcome o = run(*p);
  ASSERT_TRUE(o.ok) << o.message;
  // The steps, in order.
  ASSERT_EQ(last_requests_.size(), 3u);
  EXPECT_EQ(last_requests_[0].url, kDiscovery);
  EXPECT_EQ(last_requests_[1].url, kTokenUrl);
  EXPECT_EQ(last_requests_[1].method, "POST");
  EXPECT_FALSE(last_requests_[1].follow_redirects);
  EXPECT_EQ(last_requests_[1].body.value_or(""), "grant_type=client_credentials");
  EXPECT_EQ(last_requests_[2].url, kCertsUrl);
  for (const char* step : {"discovery", "token", "jwks", "verify"})
    EXPECT_TRUE(sample(o, "probe_keycloak_step_duration_seconds", step)) << step;
  EXPECT_FALSE(sample(o, "probe_keycloak_step_duration_seconds", "health"));
  EXPECT_EQ(sample(o, "probe_keycloak_token_expires_in_seconds"), 300);
  EXPECT_EQ(sample(o, "probe_keycloak_jwks_keys"), 1);
  // Published for bearer_from, valid until exp.
  auto token = store_.get("kc", wall_now_);
  ASSERT_TRUE(token);
  EXPECT_EQ(token->substr(0, 2), "ey");
  EXPECT_FALSE(store_.get("kc", wall_now_ + std::chrono::seconds(296)));
  EXPECT_NE(last_trace_.find("client authentication client_secret_basic"), std::string::npos)
      << last_trace_;
  EXPECT_NE(last_trace_.find("RS256 signature by key 'kid-a' verified"), std::string::npos)
      << last_trace_;
}

TEST_F(KeycloakRuns, ClientSecretPostWhenBasicIsNotOffered) {
  auth_methods_ = {"client_secret_post"};
  auto p = probe(spec());
  const Outcome o = run(*p);
  ASSERT_TRUE(o.ok) << o.message;
  ASSERT_EQ(token_requests_.size(), 1u);
  EXPECT_EQ(token_requests_[0].body.value_or(""),
            "grant_type=client_credentials&client_id=pes-agent&client_secret=" +
                oidc::form_encode(kSecret));
  for (const auto& [k, v] : token_requests_[0].headers) EXPECT_NE(k, "Authorization");
}

TEST_F(KeycloakRuns, NoUsableClientAuthenticationIsAConfigFailure) {
  auth_methods_ = {"private_key_jwt"};
  auto p = probe(spec());
  const Outcome o = run(*p);
  EXPECT_EQ(o.reason, Reason::config);
  EXPECT_EQ(o.message.rfind("discovery: the issuer supports neither", 0), 0u) << o.message;
  EXPECT_TRUE(token_requests_.empty());
}

TEST_F(KeycloakRuns, WrongSecretFailsWithAuthAndRevokesTheToken) {
  auto p = probe(spec());
  ASSERT_TRUE(run(*p).ok);
  ASSERT_TRUE(store_.get("kc", wall_now_));
  client_secret_ = "rotated-secret";
  const Outcome o = run(*p);
  EXPECT_EQ(o.reason, Reason::auth);
  EXPECT_EQ(o.message, "token: HTTP status 401, error invalid_client: Invalid client credentials");
  EXPECT_FALSE(store_.get("kc", wall_now_));
  EXPECT_TRUE(sample(o, "probe_keycloak_step_duration_seconds", "token"));
  EXPECT_FALSE(sample(o, "probe_keycloak_step_duration_seconds", "jwks"));
}

TEST_F(KeycloakRuns, PasswordGrantSendsTheUser) {
  KeycloakSpec s = spec();
  s.token.grant = "password";
  s.token.username = "alice";
  s.token.password = "wonder land";
  auto p = probe(s);
  ASSERT_TRUE(run(*p).ok);
  ASSERT_EQ(token_requests_.size(), 1u);
  EXPECT_EQ(token_requests_[0].body.value_or(""),
            "grant_type=password&username=alice&password=wonder+land");
  EXPECT_EQ(last_trace_.find("wonder land"), std::string::npos);
}

TEST_F(KeycloakRuns, JwksIsCachedBetweenRuns) {
  auto p = probe(spec());
  ASSERT_TRUE(run(*p).ok);
  steady_now_ += std::chrono::minutes(5);
  const Outcome o = run(*p);
  ASSERT_TRUE(o.ok) << o.message;
  EXPECT_EQ(jwks_fetches_, 1);
  EXPECT_EQ(last_requests_.size(), 2u);
  EXPECT_EQ(sample(o, "probe_keycloak_step_duration_seconds", "jwks"), 0);
  EXPECT_EQ(sample(o, "probe_keycloak_jwks_keys"), 1);
  EXPECT_NE(last_trace_.find("using the cached JWKS"), std::string::npos);
}

TEST_F(KeycloakRuns, JwksIsRefetchedAfterTheRefreshInterval) {
  auto p = probe(spec());
  ASSERT_TRUE(run(*p).ok);
  steady_now_ += std::chrono::minutes(10);
  ASSERT_TRUE(run(*p).ok);
  EXPECT_EQ(jwks_fetches_, 2);
}

TEST_F(KeycloakRuns, UnknownKidForcesAJwksRefresh) {
  auto p = probe(spec());
  ASSERT_TRUE(run(*p).ok);
  // The issuer rotates: new key, new kid; the cached JWKS knows only the old one.
  signing_key_ = key_b_;
  signing_kid_ = "kid-b";
  published_keys_ = json::array({jwk(key_b_, "kid-b")});
  const Outcome o = run(*p);
  ASSERT_TRUE(o.ok) << o.message;
  EXPECT_EQ(jwks_fetches_, 2);
  EXPECT_NE(last_trace_.find("fetching it again"), std::string::npos) << last_trace_;
  // The refreshed set is cached in turn.
  ASSERT_TRUE(run(*p).ok);
  EXPECT_EQ(jwks_fetches_, 2);
}

TEST_F(KeycloakRuns, UnknownKidAfterAFreshFetchFailsWithoutLooping) {
  signing_kid_ = "kid-nowhere";
  auto p = probe(spec());
  const Outcome o = run(*p);
  EXPECT_EQ(o.reason, Reason::assertion);
  EXPECT_EQ(o.message.rfind("verify: unknown_kid: no key with kid 'kid-nowhere'", 0), 0u)
      << o.message;
  EXPECT_EQ(jwks_fetches_, 1);
  // From a cached set: exactly one refetch, then the verdict.
  const Outcome again = run(*p);
  EXPECT_EQ(again.reason, Reason::assertion);
  EXPECT_EQ(jwks_fetches_, 2);
  EXPECT_FALSE(store_.get("kc", wall_now_));
}

TEST_F(KeycloakRuns, ForgedSignatureIsAnAssertionFailure) {
  // Signed with key B but labelled as key A.
  signing_key_ = key_b_;
  auto p = probe(spec());
  const Outcome o = run(*p);
  EXPECT_EQ(o.reason, Reason::assertion);
  EXPECT_EQ(o.message.rfind("verify: bad_signature:", 0), 0u) << o.message;
  EXPECT_FALSE(store_.get("kc", wall_now_));
}

TEST_F(KeycloakRuns, AlgNoneIsRefused) {
  const json header = {{"alg", "none"}, {"kid", "kid-a"}};
  token_override_ =
      jwt::base64url_encode(header.dump()) + "." + jwt::base64url_encode(claims().dump()) + ".";
  auto p = probe(spec());
  const Outcome o = run(*p);
  EXPECT_EQ(o.reason, Reason::assertion);
  EXPECT_EQ(o.message.rfind("verify: unsupported_alg:", 0), 0u) << o.message;
}

TEST_F(KeycloakRuns, ClaimFailures) {
  struct Case {
    json overrides;
    std::string audience;
    const char* want;
  };
  const std::vector<Case> cases = {
      {{{"exp", now_unix() - 60}}, "", "verify: expired:"},
      {{{"nbf", now_unix() + 120}}, "", "verify: not_yet_valid:"},
      {{{"iss", "http://evil.test/realms/pes"}}, "", "verify: wrong_issuer:"},
      {json::object(), "nextcloud", "verify: wrong_audience:"},
  };
  for (const auto& c : cases) {
    claim_overrides_ = c.overrides;
    KeycloakSpec s = spec();
    s.audience = c.audience;
    auto p = probe(s);
    const Outcome o = run(*p);
    EXPECT_EQ(o.reason, Reason::assertion) << c.want;
    EXPECT_EQ(o.message.rfind(c.want, 0), 0u) << o.message;
  }
}

TEST_F(KeycloakRuns, ClockSkewWithinTheLeewayIsAccepted) {
  claim_overrides_ = {{"nbf", now_unix() + 20}, {"iat", now_unix() + 20}};
  auto p = probe(spec());
  EXPECT_TRUE(run(*p).ok);
  KeycloakSpec strict = spec();
  strict.leeway = std::chrono::seconds(5);
  auto q = probe(strict);
  EXPECT_EQ(run(*q).reason, Reason::assertion);
}

TEST_F(KeycloakRuns, AudienceFromAudOrAzp) {
  for (const char* aud : {"account", "pes-agent"}) {
    KeycloakSpec s = spec();
    s.audience = aud;
    auto p = probe(s);
    const Outcome o = run(*p);
    EXPECT_TRUE(o.ok) << aud << ": " << o.message;
  }
}

TEST_F(KeycloakRuns, OpaqueTokenIsAProtocolFailureUnlessVerifyIsOff) {
  token_override_ = "opaque-access-token-1234";
  auto p = probe(spec());
  const Outcome o = run(*p);
  EXPECT_EQ(o.reason, Reason::protocol);
  EXPECT_EQ(o.message.rfind("verify: malformed: token has 1 parts", 0), 0u) << o.message;

  EXPECT_EQ(jwks_fetches_, 1);

  KeycloakSpec s = spec();
  s.verify = false;
  auto q = probe(s);
  const Outcome ok = run(*q);
  ASSERT_TRUE(ok.ok) << ok.message;
  EXPECT_EQ(jwks_fetches_, 1);  // no JWKS step without verification
  EXPECT_EQ(last_requests_.size(), 2u);
  EXPECT_EQ(sample(ok, "probe_keycloak_token_expires_in_seconds"), 300);  // from expires_in
  EXPECT_FALSE(sample(ok, "probe_keycloak_jwks_keys"));
  EXPECT_EQ(store_.get("kc", wall_now_), "opaque-access-token-1234");
}

TEST_F(KeycloakRuns, DiscoveryFailures) {
  auto p = probe(spec());
  discovery_status_ = 404;
  Outcome o = run(*p);
  EXPECT_EQ(o.reason, Reason::http_status);
  EXPECT_EQ(o.message, "discovery: HTTP status 404 from " + kDiscovery);
  EXPECT_TRUE(sample(o, "probe_keycloak_step_duration_seconds", "discovery"));

  KeycloakSpec other = spec();
  other.realm = "missing";
  auto q = probe(other);
  o = run(*q);
  EXPECT_EQ(o.reason, Reason::connect);
  EXPECT_EQ(o.message.rfind("discovery: Failed to connect", 0), 0u) << o.message;
}

TEST_F(KeycloakRuns, HealthStep) {
  KeycloakSpec s = spec();
  s.health_url = kHealthUrl;
  auto p = probe(s);
  Outcome o = run(*p);
  ASSERT_TRUE(o.ok) << o.message;
  EXPECT_TRUE(sample(o, "probe_keycloak_step_duration_seconds", "health"));

  health_status_ = 503;
  health_body_ =
      R"({"status":"DOWN","checks":[{"name":"Keycloak database connections health check","status":"DOWN"}]})";
  o = run(*p);
  EXPECT_EQ(o.reason, Reason::http_status);
  EXPECT_EQ(o.message, "health: HTTP status 503, status DOWN from " + kHealthUrl);
  // The token was good, but the run failed: the chain is told so.
  EXPECT_FALSE(store_.get("kc", wall_now_));
}

TEST_F(KeycloakRuns, ConcurrentRunsKeepTheirOwnState) {
  // Two runs of one probe interleaved: the first is suspended inside its token request while the
  // second runs to the end with another token; each must verify the token it got itself.
  auto p = probe(spec());
  std::function<void()> resume;
  auto routes_a = routes();
  routes_a[kTokenUrl] = [this](const HttpRequest&) {
    json t = {{"access_token", issue()}, {"token_type", "Bearer"}, {"expires_in", 300}};
    return answer(200, t.dump());
  };
  class DeferringContext : public FakeContext {
   public:
    using FakeContext::FakeContext;
    std::function<void()>* hold = nullptr;
    void http(HttpRequest request, std::function<void(HttpResponse)> done) override {
      if (hold && !*hold && request.url == kTokenUrl) {
        *hold = [this, request, done] { FakeContext::http(request, done); };
        return;
      }
      FakeContext::http(std::move(request), std::move(done));
    }
  };
  auto ctx_a = std::make_shared<DeferringContext>(routes_a, store_, false);
  ctx_a->hold = &resume;
  std::optional<Outcome> a;
  p->run(ctx_a, [&](Outcome o) { a = std::move(o); });
  ASSERT_TRUE(resume);
  ASSERT_FALSE(a);
  claim_overrides_ = {{"sub", "second"}};
  ASSERT_TRUE(run(*p).ok);
  claim_overrides_ = {{"exp", now_unix() - 100}};  // what run A now receives is expired
  resume();
  ASSERT_TRUE(a);
  EXPECT_EQ(a->reason, Reason::assertion);
  EXPECT_EQ(a->message.rfind("verify: expired", 0), 0u) << a->message;
}

}  // namespace
}  // namespace pes
