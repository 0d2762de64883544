// The OpenID Connect / OAuth 2.0 wire formats the keycloak probe speaks: the discovery document,
// the token request and response, Keycloak's health answer. Pure functions, no I/O.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "agent/core/types.h"

namespace pes::oidc {

// application/x-www-form-urlencoded encoding of one value (RFC 6749 Appendix B): unreserved
// characters stay, space becomes '+', everything else %XX.
std::string form_encode(std::string_view value);
// One URL path segment, percent-encoded (unreserved characters stay, space is %20).
std::string path_encode(std::string_view segment);
// "k1=v1&k2=v2" with both sides form-encoded.
std::string form_body(const std::vector<std::pair<std::string, std::string>>& fields);
// Standard (padded) base64, as HTTP Basic authentication uses.
std::string base64_encode(std::string_view bytes);

// `{url}/realms/{realm}/.well-known/openid-configuration`, tolerating a trailing slash on url.
std::string discovery_url(std::string_view base_url, std::string_view realm);

enum class ClientAuth { none, basic, post };
std::string_view to_string(ClientAuth auth);

// What the probe needs from the discovery document (OpenID Connect Discovery 1.0 §3).
struct Discovery {
  std::string issuer;
  std::string token_endpoint;
  std::string jwks_uri;                         // may be empty when the issuer publishes none
  std::string authorization_endpoint;           // for grant: authorization_code (the login flow)
  std::vector<std::string> token_auth_methods;  // token_endpoint_auth_methods_supported
  std::vector<std::string> grant_types;         // grant_types_supported (empty = not advertised)
};

// Parses the discovery document. nullopt with `error` set when it is not a JSON object, or
// issuer / token_endpoint are missing or not http(s) URLs.
std::optional<Discovery> parse_discovery(std::string_view body, std::string& error);

// How the client authenticates at the token endpoint: none without a secret; otherwise
// client_secret_basic when advertised (or when nothing is advertised, its default per
// RFC 8414 §2), else client_secret_post. nullopt when the issuer offers neither.
std::optional<ClientAuth> choose_client_auth(const Discovery& d, bool has_secret);

struct TokenRequestSpec {
  std::string grant;  // "client_credentials" or "password"
  std::string client_id;
  std::string client_secret;
  std::string username;
  std::string password;
  std::string scope;
};

// The body and headers of a token request (RFC 6749 §4.3/§4.4 and §2.3.1).
struct TokenRequest {
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
};
TokenRequest build_token_request(const TokenRequestSpec& spec, ClientAuth auth);

// The token endpoint's answer, judged. `reason` follows CONTRACT.md: auth for a refused client
// or grant (401, invalid_client, invalid_grant, unauthorized_client), http_status for other
// error statuses, protocol for an answer that is not a token response.
struct TokenResult {
  bool ok = false;
  Reason reason = Reason::none;
  std::string message;       // never contains the token
  std::string access_token;  // set when ok
  std::optional<int64_t> expires_in;
};
TokenResult parse_token_response(long status, std::string_view body);

// Keycloak's /health/ready (MicroProfile Health): 200 with {"status": "UP"}. The same shape for
// a failure: reason and message; ok when healthy.
struct HealthResult {
  bool ok = false;
  Reason reason = Reason::none;
  std::string message;
};
HealthResult judge_health(long status, std::string_view body);

}  // namespace pes::oidc
