// The login a person makes, as the keycloak probe's `grant: authorization_code` performs it:
// authorization request with PKCE (S256) → Keycloak's login page → the credential POST with the
// cookies Keycloak set → the redirect carrying the code (read, never followed into the app) →
// the code exchange. The ID token is then verified by the keycloak probe (signature, iss, aud,
// exp, nonce). HTML is read with libxml2's HTML parser.
//
// The pure parts (PKCE, page reading, cookies, URLs, the callback) are declared first and unit
// tested on saved page shapes; run() drives the requests through the engine's async HTTP.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "agent/core/probe.h"
#include "probes/keycloak/oidc.h"

namespace pes::login {

// RFC 7636 §4.2: BASE64URL(SHA256(verifier)).
std::string pkce_challenge(std::string_view verifier);
// 32 random bytes as base64url (43 characters): a PKCE verifier, a state or a nonce.
std::string random_token();

using Fields = std::vector<std::pair<std::string, std::string>>;

// A form of the page: where it posts and what it sends.
struct Form {
  std::string id;
  std::string action;  // as written in the page (entities decoded); resolve against the page URL
  std::string method;  // lower case; "get" when absent
  Fields fields;       // named inputs with their values (hidden ones included), in page order
  std::string username_field;  // the input named "username" (or the text input before password)
  std::string password_field;  // the first input of type password
};

// What the probe reads from one HTML page of Keycloak.
struct Page {
  bool parsed = false;        // the parser produced a document
  std::string title;          // <title>, whitespace collapsed
  std::optional<Form> login;  // the form with a password input (Keycloak: #kc-form-login)
  bool has_form = false;      // any form at all (a required action, a consent page, ...)
  bool error_page = false;    // Keycloak's error page (#kc-error-message)
  std::string message;        // Keycloak's message: the error page text, a field error or alert
};
Page read_page(std::string_view html);

// The parts of an absolute http(s) URL the flow needs.
struct Url {
  std::string scheme;     // lower case
  std::string authority;  // host[:port], lower case, without userinfo
  std::string path;       // "/" when empty
  std::string query;      // without '?'
  std::string origin() const { return scheme + "://" + authority; }
};
std::optional<Url> parse_url(std::string_view url);
// `ref` (absolute, absolute-path or relative) resolved against the absolute URL `base`.
std::string resolve_url(std::string_view base, std::string_view ref);

// The cookies of one run: host-only, path-matched, expired ones dropped. Keycloak marks its
// cookies Secure even over plain HTTP; they are sent back to the same host either way, since the
// jar lives for one run against one Keycloak.
class CookieJar {
 public:
  // Takes every Set-Cookie header of an answer to `url`.
  void store(std::string_view url, const std::vector<std::pair<std::string, std::string>>& headers,
             int64_t now_unix);
  // The Cookie header value for a request to `url`; empty when none applies.
  std::string header_for(std::string_view url) const;
  size_t size() const { return cookies_.size(); }

 private:
  struct Cookie {
    std::string name, value, host, path;
  };
  std::vector<Cookie> cookies_;
};

// The redirect back to the application, read from a Location header.
struct Callback {
  bool is_redirect_uri = false;  // scheme, authority and path equal the configured redirect_uri
  std::string code, state, iss, error, error_description, session_state;
};
Callback parse_callback(std::string_view location, std::string_view redirect_uri);

// The authorization request URL (RFC 6749 §4.1.1 with RFC 7636 and OIDC's nonce).
std::string authorization_url(std::string_view endpoint, std::string_view client_id,
                              std::string_view redirect_uri, std::string_view scope,
                              std::string_view state, std::string_view nonce,
                              std::string_view challenge);

// `scope` with "openid" added when it lacks it (the flow needs the ID token).
std::string with_openid(std::string_view scope);
// The ID token's claims beyond signature, iss and exp: aud contains client_id, nonce equals the
// request's. Empty when they hold, else what is wrong.
std::string check_id_token(const nlohmann::json& claims, std::string_view client_id,
                           std::string_view nonce);

// What the login needs from the probe's configuration.
struct LoginSpec {
  std::string client_id;
  std::string client_secret;  // empty: a public client (client_id in the exchange body)
  std::string username;
  std::string password;
  std::string redirect_uri;
  std::string scope;  // contains "openid"
};

// How the flow reports to the keycloak run: each step begins and ends (for its duration), and
// lines for the debug trace (never a secret, cookie, code or token).
struct Hooks {
  std::function<void(const char* step)> begin;
  std::function<void()> end;
  std::function<void(const std::string& line)> trace;
};

struct Result {
  bool ok = false;
  Reason reason = Reason::none;
  std::string message;      // names what failed, e.g. "the credentials are refused: ..."
  oidc::TokenResult token;  // the access token (ok only)
  std::string id_token;
  std::string nonce;  // what the ID token's nonce must be
};

// Runs authorize → login → token on the engine's event loop and calls `done` once.
void run(RunContextPtr ctx, std::shared_ptr<const LoginSpec> spec, TlsOptions tls,
         const oidc::Discovery& discovery, oidc::ClientAuth auth, Hooks hooks,
         std::function<void(Result)> done);

}  // namespace pes::login
