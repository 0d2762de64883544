#include "probes/keycloak/keycloak_probe.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <optional>
#include <utility>
#include <vector>

#include "probes/common/http_step.h"
#include "probes/keycloak/jwt.h"

namespace pes {
namespace {

using SysClock = std::chrono::system_clock;

const char* kStepHelp =
    "Duration of each step of the last keycloak run, seconds (jwks: 0 when cached).";
const char* kExpiresHelp = "Seconds until the access token obtained by the last run expires.";
const char* kKeysHelp = "Usable signing keys in the realm's JWKS at the last run.";

constexpr size_t kMaxBody = 1 << 20;
// Without any expiry information (no expires_in, no readable exp) a token is shared this long.
constexpr int64_t kDefaultLifetime = 300;

int64_t unix_seconds(SysClock::time_point t) {
  return std::chrono::duration_cast<std::chrono::seconds>(t.time_since_epoch()).count();
}

// One run of one keycloak probe: the steps in the order they happen, each a request and the
// handler of its answer. Per-run state lives here, never in the probe object, because a
// scheduled and an ad hoc run of the same probe may overlap. Handlers run on the event loop.
class KeycloakRun : public std::enable_shared_from_this<KeycloakRun> {
 public:
  KeycloakRun(std::shared_ptr<const KeycloakSpec> spec, std::shared_ptr<JwksCache> cache,
              std::shared_ptr<const KeycloakClocks> clocks, RunContextPtr ctx, Done done)
      : spec_(std::move(spec)),
        cache_(std::move(cache)),
        clocks_(std::move(clocks)),
        ctx_(std::move(ctx)),
        done_(std::move(done)) {}

  void start() { discover(); }

 private:
  // 1. Discovery: the realm's endpoints, so any OpenID Connect issuer works.
  void discover() {
    begin("discovery");
    get(spec_->discovery_url(), &KeycloakRun::on_discovery);
  }

  void on_discovery(HttpResponse r) {
    end();
    if (!answered_2xx(r, spec_->discovery_url())) return;
    std::string error;
    auto d = oidc::parse_discovery(r.body, error);
    if (!d) return fail(Reason::protocol, error);
    auto auth = oidc::choose_client_auth(*d, !spec_->token.client_secret.empty());
    if (!auth) {
      std::string offered;
      for (const auto& m : d->token_auth_methods) offered += (offered.empty() ? "" : ", ") + m;
      return fail(
          Reason::config,
          "the issuer supports neither client_secret_basic nor client_secret_post (it offers: " +
              offered + ")");
    }
    if (spec_->verify && d->jwks_uri.empty())
      return fail(Reason::protocol,
                  "discovery document has no jwks_uri, so the token cannot be verified");
    discovery_ = std::move(*d);
    client_auth_ = *auth;
    trace("issuer " + discovery_.issuer + ", token endpoint " + discovery_.token_endpoint +
          ", client authentication " + std::string(oidc::to_string(client_auth_)));
    request_token();
  }

  // 2. Token: client_credentials or password grant, or the login a person makes (authorize →
  // login → token, in login.cpp).
  void request_token() {
    if (spec_->login) return log_in();
    begin("token");
    auto body = oidc::build_token_request(spec_->token, client_auth_);
    HttpRequest req = base_request(discovery_.token_endpoint);
    req.method = "POST";
    req.body = std::move(body.body);
    req.headers = std::move(body.headers);
    req.follow_redirects = false;  // never replay credentials to wherever a redirect points
    send(std::move(req), &KeycloakRun::on_token);
  }

  void on_token(HttpResponse r) {
    end();
    if (!r.ok) return fail(r.reason, r.error);
    auto t = oidc::parse_token_response(r.status, r.body);
    if (!t.ok) {
      std::string msg = std::move(t.message);
      if (t.reason == Reason::http_status && !discovery_.grant_types.empty() &&
          std::find(discovery_.grant_types.begin(), discovery_.grant_types.end(),
                    spec_->token.grant) == discovery_.grant_types.end())
        msg += " (the issuer does not advertise grant " + spec_->token.grant + ")";
      return fail(t.reason, msg);
    }
    token_ = std::move(t.access_token);
    expires_in_ = t.expires_in;
    trace("obtained an access token (not shown)" +
          (expires_in_ ? ", expires_in " + std::to_string(*expires_in_) + " s" : std::string()));
    if (spec_->verify) return load_jwks();
    check_health();
  }

  void log_in() {
    auto self = shared_from_this();
    login::Hooks hooks{[self](const char* step) { self->begin(step); }, [self] { self->end(); },
                       [self](const std::string& line) { self->trace(line); }};
    login::run(ctx_, spec_->login, spec_->tls, discovery_, client_auth_, std::move(hooks),
               [self](login::Result r) { self->on_login(std::move(r)); });
  }

  void on_login(login::Result r) {
    if (!r.ok) return fail(r.reason, r.message);
    token_ = std::move(r.token.access_token);
    expires_in_ = r.token.expires_in;
    id_token_ = std::move(r.id_token);
    nonce_ = std::move(r.nonce);
    if (spec_->verify) return load_jwks();
    check_health();
  }

  // 3. JWKS: from the cache while it is fresh, else fetched.
  void load_jwks() {
    begin("jwks");
    jwks_ = cache_->get(discovery_.jwks_uri, clocks_->steady());
    if (jwks_) {
      end_without_time();
      trace("using the cached JWKS (" + std::to_string(jwks_->keys.size()) + " keys)");
      return verify();
    }
    fetch_jwks();
  }

  void fetch_jwks() {
    jwks_fetched_ = true;
    get(discovery_.jwks_uri, &KeycloakRun::on_jwks);
  }

  void on_jwks(HttpResponse r) {
    end();
    if (!answered_2xx(r, discovery_.jwks_uri)) return;
    std::string error;
    auto parsed = jwt::parse_jwks(r.body, error);
    if (!parsed) {
      cache_->clear();
      return fail(Reason::protocol, error);
    }
    for (const auto& why : parsed->skipped) trace("skipped a key: " + why);
    jwks_ = std::make_shared<const jwt::Jwks>(std::move(*parsed));
    cache_->store(discovery_.jwks_uri, jwks_, clocks_->steady());
    trace("fetched the JWKS: " + std::to_string(jwks_->keys.size()) + " usable keys");
    verify();
  }

  // 4. Verify: signature against the JWKS, iss = discovered issuer, exp/nbf, aud/azp.
  void verify() {
    begin("verify");
    const jwt::Expectations expect{discovery_.issuer, spec_->audience, spec_->leeway.count()};
    const int64_t now = unix_seconds(clocks_->wall());
    auto v = jwt::verify(token_, *jwks_, expect, now);
    std::optional<jwt::VerifyResult> id;
    if (v.ok() && !id_token_.empty()) {
      id = jwt::verify(id_token_, *jwks_,
                       {discovery_.issuer, spec_->login->client_id, expect.leeway_seconds}, now);
    }
    end();
    const bool unknown_kid = v.status == jwt::VerifyStatus::unknown_kid ||
                             (id && id->status == jwt::VerifyStatus::unknown_kid);
    if (unknown_kid && !jwks_fetched_) {
      // The issuer rotated its keys since the cache was filled: fetch once more, then judge.
      trace("the token's key is not in the cached JWKS; fetching it again");
      begin("jwks");
      return fetch_jwks();
    }
    if (!v.ok()) {
      return fail(v.status == jwt::VerifyStatus::malformed ? Reason::protocol : Reason::assertion,
                  std::string(jwt::to_string(v.status)) + ": " + v.message);
    }
    verified_exp_ = v.exp;
    trace(v.alg + " signature by key '" + v.kid + "' verified; issuer" +
          (spec_->audience.empty() ? "" : ", audience") + " and lifetime ok");
    if (id) {
      if (!id->ok())
        return fail(
            id->status == jwt::VerifyStatus::malformed ? Reason::protocol : Reason::assertion,
            "ID token: " + std::string(jwt::to_string(id->status)) + ": " + id->message);
      if (auto why = login::check_id_token(id->claims, spec_->login->client_id, nonce_);
          !why.empty())
        return fail(Reason::assertion, "ID token: " + why);
      trace("ID token: " + id->alg + " signature by key '" + id->kid +
            "' verified; iss, aud, exp and nonce ok");
    }
    check_health();
  }

  // 5. Health: Keycloak's management endpoint, when configured.
  void check_health() {
    if (spec_->health_url.empty()) return succeed();
    begin("health");
    HttpRequest req = base_request(spec_->health_url);
    req.headers.emplace_back("Accept", "application/json");
    send(std::move(req), &KeycloakRun::on_health);
  }

  void on_health(HttpResponse r) {
    end();
    if (!r.ok) return fail(r.reason, r.error);
    auto h = oidc::judge_health(r.status, r.body);
    if (!h.ok) return fail(h.reason, h.message + " from " + strip_userinfo(spec_->health_url));
    succeed();
  }

  // The end: publish the token for bearer_from, or revoke it.
  void succeed() {
    const auto now = clocks_->wall();
    const int64_t expires = token_expiry(unix_seconds(now));
    ctx_->tokens().publish(ctx_->probe_name(), token_,
                           SysClock::time_point(std::chrono::seconds(expires)));
    Outcome out = Outcome::success();
    out.add("probe_keycloak_token_expires_in_seconds", kExpiresHelp,
            static_cast<double>(expires - unix_seconds(now)));
    finish(std::move(out));
  }

  void fail(Reason reason, const std::string& message) {
    ctx_->tokens().revoke(ctx_->probe_name());
    finish(Outcome::failure(reason, std::string(step_) + ": " + message));
  }

  void finish(Outcome out) {
    for (const auto& [step, seconds] : durations_)
      out.add("probe_keycloak_step_duration_seconds", kStepHelp, seconds, {{"step", step}});
    if (jwks_)
      out.add("probe_keycloak_jwks_keys", kKeysHelp, static_cast<double>(jwks_->keys.size()));
    token_.clear();
    id_token_.clear();
    done_(std::move(out));
  }

  // When the published token stops being offered: the verified exp, else expires_in, else the
  // exp read without verification, else a default.
  int64_t token_expiry(int64_t now_unix) const {
    if (verified_exp_) return *verified_exp_;
    if (expires_in_) return now_unix + *expires_in_;
    std::string error;
    if (auto parts = jwt::split_jwt(token_, error)) {
      if (auto it = parts->payload.find("exp"); it != parts->payload.end() && it->is_number()) {
        const double exp = it->get<double>();
        if (std::isfinite(exp) && std::fabs(exp) < 1e13) return static_cast<int64_t>(exp);
      }
    }
    return now_unix + kDefaultLifetime;
  }

  // --- plumbing ---------------------------------------------------------------------------

  HttpRequest base_request(const std::string& url) const {
    return http_request(url, spec_->tls, kMaxBody);
  }

  void get(const std::string& url, void (KeycloakRun::*handler)(HttpResponse)) {
    HttpRequest req = base_request(url);
    req.headers.emplace_back("Accept", "application/json");
    send(std::move(req), handler);
  }

  void send(HttpRequest req, void (KeycloakRun::*handler)(HttpResponse)) {
    ctx_->http(std::move(req), [self = shared_from_this(), handler](HttpResponse r) {
      ((*self).*handler)(std::move(r));
    });
  }

  // False (and the run failed) unless r is an HTTP answer with a 2xx status.
  bool answered_2xx(const HttpResponse& r, const std::string& url) {
    if (auto failed = expect_2xx(r, url)) {
      fail(failed->reason, failed->message);
      return false;
    }
    return true;
  }

  void begin(const char* step) {
    step_ = step;
    step_start_ = Clock::now();
  }
  // Adds the time since begin() to the current step (a step may run twice: jwks after a refresh).
  void end() { add_duration(std::chrono::duration<double>(Clock::now() - step_start_).count()); }
  void end_without_time() { add_duration(0); }
  void add_duration(double seconds) {
    for (auto& [step, total] : durations_) {
      if (step == step_) {
        total += seconds;
        return;
      }
    }
    durations_.emplace_back(step_, seconds);
  }

  void trace(const std::string& line) {
    if (ctx_->trace().enabled()) ctx_->trace().log(std::string(step_) + ": " + line);
  }

  const std::shared_ptr<const KeycloakSpec> spec_;
  const std::shared_ptr<JwksCache> cache_;
  const std::shared_ptr<const KeycloakClocks> clocks_;
  const RunContextPtr ctx_;
  const Done done_;

  const char* step_ = "discovery";
  Clock::time_point step_start_{};
  std::vector<std::pair<std::string, double>> durations_;
  oidc::Discovery discovery_;
  oidc::ClientAuth client_auth_ = oidc::ClientAuth::none;
  std::string token_;     // never logged, traced or put into a message
  std::string id_token_;  // grant: authorization_code only; never logged either
  std::string nonce_;
  std::optional<int64_t> expires_in_;
  std::optional<int64_t> verified_exp_;
  std::shared_ptr<const jwt::Jwks> jwks_;
  bool jwks_fetched_ = false;  // fetched during this run (no second refetch on unknown kid)
};

}  // namespace

KeycloakProbe::KeycloakProbe(KeycloakSpec spec, KeycloakClocks clocks)
    : spec_(std::make_shared<const KeycloakSpec>(std::move(spec))),
      jwks_cache_(std::make_shared<JwksCache>(spec_->jwks_refresh_interval)),
      clocks_(std::make_shared<const KeycloakClocks>(std::move(clocks))) {}

void KeycloakProbe::run(RunContextPtr ctx, Done done) {
  std::make_shared<KeycloakRun>(spec_, jwks_cache_, clocks_, std::move(ctx), std::move(done))
      ->start();
}

std::string KeycloakProbe::target() const {
  std::string base = spec_->url;
  while (!base.empty() && base.back() == '/') base.pop_back();
  return strip_userinfo(base + "/realms/" + oidc::path_encode(spec_->realm));
}

namespace {

// The keys of grant: authorization_code (the login a person makes); the credentials were
// checked with grant: password's rules.
bool parse_login(Section& s, KeycloakSpec& spec, const std::optional<std::string>& redirect_uri) {
  bool ok = true;
  if (!redirect_uri) {
    s.error("grant", "grant: authorization_code needs a redirect_uri (one the client allows)");
    ok = false;
  } else if (!s.check_url("redirect_uri", *redirect_uri, {"http", "https"})) {
    ok = false;
  }
  if (!spec.verify) {
    s.error("verify",
            "grant: authorization_code verifies the ID token; verify: false is not allowed");
    ok = false;
  }
  auto login = std::make_shared<login::LoginSpec>();
  login->client_id = spec.token.client_id;
  login->client_secret = spec.token.client_secret;
  login->username = spec.token.username;
  login->password = spec.token.password;
  login->redirect_uri = redirect_uri.value_or("");
  login->scope = login::with_openid(spec.token.scope);
  spec.login = std::move(login);
  return ok;
}

}  // namespace

std::unique_ptr<Probe> KeycloakProbe::parse(Section& s) {
  KeycloakSpec spec;
  auto url = s.str("url", Section::required);
  bool ok = url && s.check_url("url", *url, {"http", "https"});
  if (url) spec.url = *url;
  auto realm = s.str("realm", Section::required);
  if (realm) {
    spec.realm = *realm;
    if (realm->empty() || realm->find_first_of("/?#") != std::string::npos) {
      s.error("realm", "must be a realm name, without '/', '?' or '#'");
      ok = false;
    }
  } else {
    ok = false;
  }

  auto& t = spec.token;
  t.client_id = s.str_or("client_id", "pes-agent");
  if (t.client_id.empty()) {
    s.error("client_id", "must not be empty");
    ok = false;
  }
  t.client_secret = s.str_or("client_secret", "", Section::secret);
  t.grant = s.str_or("grant", "client_credentials");
  if (!s.one_of("grant", t.grant, {"client_credentials", "password", "authorization_code"}))
    ok = false;
  auto username = s.str("username");
  auto password = s.str("password", Section::optional, Section::secret);
  auto redirect_uri = s.str("redirect_uri");
  if (redirect_uri && t.grant != "authorization_code") {
    s.error("redirect_uri", "only used with grant: authorization_code");
    ok = false;
  }
  if (t.grant == "password" || t.grant == "authorization_code") {
    if (!username || username->empty()) {
      s.error(username ? "username" : "grant", "grant: " + t.grant + " needs a username");
      ok = false;
    }
    if (!password) {
      s.error("grant", "grant: " + t.grant + " needs a password");
      ok = false;
    }
  } else if (t.grant == "client_credentials") {
    if (t.client_secret.empty()) {
      s.error(s.has("client_secret") ? "client_secret" : "grant",
              "grant: client_credentials needs a client_secret (a confidential client)");
      ok = false;
    }
    if (username) {
      s.error("username", "only used with grant: password");
      ok = false;
    }
    if (password) {
      s.error("password", "only used with grant: password");
      ok = false;
    }
  }
  t.username = username.value_or("");
  t.password = password.value_or("");
  t.scope = s.str_or("scope", "");
  spec.audience = s.str_or("audience", "");
  spec.verify = s.boolean("verify").value_or(true);
  if (t.grant == "authorization_code" && !parse_login(s, spec, redirect_uri)) ok = false;
  if (auto h = s.str("health_url")) {
    if (s.check_url("health_url", *h, {"http", "https"})) {
      spec.health_url = *h;
    } else {
      ok = false;
    }
  }
  spec.tls = s.tls();
  if (auto l = s.duration("leeway")) {
    if (*l > std::chrono::minutes(5)) {
      s.error("leeway", "must be at most 5m");
      ok = false;
    }
    spec.leeway = std::chrono::duration_cast<std::chrono::seconds>(*l);
  }
  if (auto r = s.duration("jwks_refresh_interval")) {
    if (*r < std::chrono::seconds(1)) {
      s.error("jwks_refresh_interval", "must be at least 1s");
      ok = false;
    }
    spec.jwks_refresh_interval = *r;
  }
  if (!ok) return nullptr;
  return std::make_unique<KeycloakProbe>(std::move(spec));
}

}  // namespace pes
