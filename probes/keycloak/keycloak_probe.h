// The `keycloak` probe: proves that the realm issues a valid access token, not merely that
// Keycloak answers. Each run: discovery → token → JWKS (cached) → verify → health (optional).
// A verified token is published for `bearer_from` (the SSO chain); a failed run revokes it.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include "agent/config/parse.h"
#include "agent/core/probe.h"
#include "probes/keycloak/jwks_cache.h"
#include "probes/keycloak/login.h"
#include "probes/keycloak/oidc.h"

namespace pes {

struct KeycloakSpec {
  std::string url;  // base URL, e.g. http://keycloak:8080
  std::string realm;
  oidc::TokenRequestSpec token;  // grant, client id/secret, user, scope
  std::string audience;          // aud/azp must hold it; empty = not checked
  bool verify = true;            // signature, iss, exp/nbf, aud against the realm's JWKS
  std::string health_url;        // e.g. http://keycloak:9000/health/ready; empty = no health step
  TlsOptions tls;
  std::chrono::seconds leeway{30};  // clock skew allowed for exp/nbf/iat
  Clock::duration jwks_refresh_interval = std::chrono::minutes(10);
  // Set for grant: authorization_code: the login through Keycloak's form (probes/keycloak/login.h).
  std::shared_ptr<const login::LoginSpec> login;

  std::string discovery_url() const { return oidc::discovery_url(url, realm); }
};

// Time sources, injected so that tests can move the JWKS cache's clock and the token's "now".
struct KeycloakClocks {
  std::function<Clock::time_point()> steady = [] { return Clock::now(); };
  std::function<std::chrono::system_clock::time_point()> wall = [] {
    return std::chrono::system_clock::now();
  };
};

class KeycloakProbe : public Probe {
 public:
  explicit KeycloakProbe(KeycloakSpec spec, KeycloakClocks clocks = {});
  void run(RunContextPtr ctx, Done done) override;
  std::string target() const override;

  static std::unique_ptr<Probe> parse(Section& s);

 private:
  std::shared_ptr<const KeycloakSpec> spec_;
  std::shared_ptr<JwksCache> jwks_cache_;
  std::shared_ptr<const KeycloakClocks> clocks_;
};

}  // namespace pes
