#include "probes/keycloak/oidc.h"

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>

namespace pes::oidc {
namespace {

// Values from the server are quoted in messages: short and printable only.
std::string printable(std::string_view s, size_t max = 200) {
  std::string out;
  for (const char c : s.substr(0, max)) out += (c >= 0x20 && c < 0x7f) ? c : '?';
  if (s.size() > max) out += "...";
  return out;
}

bool is_http_url(const std::string& s) {
  return s.starts_with("http://") || s.starts_with("https://");
}

std::vector<std::string> string_array(const nlohmann::json& doc, const char* name) {
  std::vector<std::string> out;
  const auto it = doc.find(name);
  if (it == doc.end() || !it->is_array()) return out;
  for (const auto& v : *it)
    if (v.is_string()) out.push_back(v.get<std::string>());
  return out;
}

bool contains(const std::vector<std::string>& v, std::string_view s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

}  // namespace

namespace {

std::string percent_encode(std::string_view value, bool space_as_plus) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(value.size());
  for (const char ch : value) {
    const auto c = static_cast<unsigned char>(ch);
    if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
        c == '.' || c == '_' || c == '~') {
      out += ch;
    } else if (c == ' ' && space_as_plus) {
      out += '+';
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

}  // namespace

std::string form_encode(std::string_view value) { return percent_encode(value, true); }

std::string path_encode(std::string_view segment) { return percent_encode(segment, false); }

std::string form_body(const std::vector<std::pair<std::string, std::string>>& fields) {
  std::string out;
  for (const auto& [k, v] : fields) {
    if (!out.empty()) out += '&';
    out += form_encode(k);
    out += '=';
    out += form_encode(v);
  }
  return out;
}

std::string base64_encode(std::string_view bytes) {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  size_t i = 0;
  auto byte = [&](size_t k) { return static_cast<uint32_t>(static_cast<uint8_t>(bytes[k])); };
  for (; i + 3 <= bytes.size(); i += 3) {
    const uint32_t v = (byte(i) << 16) | (byte(i + 1) << 8) | byte(i + 2);
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += kAlphabet[(v >> 6) & 63];
    out += kAlphabet[v & 63];
  }
  if (bytes.size() - i == 1) {
    const uint32_t v = byte(i) << 16;
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += "==";
  } else if (bytes.size() - i == 2) {
    const uint32_t v = (byte(i) << 16) | (byte(i + 1) << 8);
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += kAlphabet[(v >> 6) & 63];
    out += '=';
  }
  return out;
}

std::string discovery_url(std::string_view base_url, std::string_view realm) {
  while (!base_url.empty() && base_url.back() == '/') base_url.remove_suffix(1);
  return std::string(base_url) + "/realms/" + path_encode(realm) +
         "/.well-known/openid-configuration";
}

std::string_view to_string(ClientAuth auth) {
  switch (auth) {
    case ClientAuth::none:
      return "none";
    case ClientAuth::basic:
      return "client_secret_basic";
    case ClientAuth::post:
      return "client_secret_post";
  }
  return "?";
}

std::optional<Discovery> parse_discovery(std::string_view body, std::string& error) {
  const auto doc = nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded() || !doc.is_object()) {
    error = "discovery document is not a JSON object";
    return std::nullopt;
  }
  Discovery d;
  auto url_member = [&](const char* name, std::string& out, bool required) {
    const auto it = doc.find(name);
    if (it == doc.end() || it->is_null()) {
      if (required) error = std::string("discovery document has no ") + name;
      return !required;
    }
    if (!it->is_string() || !is_http_url(it->get_ref<const std::string&>())) {
      error = std::string("discovery document's ") + name + " is not an http(s) URL";
      return false;
    }
    out = it->get<std::string>();
    return true;
  };
  if (!url_member("issuer", d.issuer, true) ||
      !url_member("token_endpoint", d.token_endpoint, true) ||
      !url_member("jwks_uri", d.jwks_uri, false) ||
      !url_member("authorization_endpoint", d.authorization_endpoint, false)) {
    return std::nullopt;
  }
  d.token_auth_methods = string_array(doc, "token_endpoint_auth_methods_supported");
  d.grant_types = string_array(doc, "grant_types_supported");
  return d;
}

std::optional<ClientAuth> choose_client_auth(const Discovery& d, bool has_secret) {
  if (!has_secret) return ClientAuth::none;
  if (d.token_auth_methods.empty() || contains(d.token_auth_methods, "client_secret_basic"))
    return ClientAuth::basic;
  if (contains(d.token_auth_methods, "client_secret_post")) return ClientAuth::post;
  return std::nullopt;
}

TokenRequest build_token_request(const TokenRequestSpec& spec, ClientAuth auth) {
  std::vector<std::pair<std::string, std::string>> fields{{"grant_type", spec.grant}};
  if (spec.grant == "password") {
    fields.emplace_back("username", spec.username);
    fields.emplace_back("password", spec.password);
  }
  if (!spec.scope.empty()) fields.emplace_back("scope", spec.scope);
  TokenRequest req;
  req.headers.emplace_back("Content-Type", "application/x-www-form-urlencoded");
  req.headers.emplace_back("Accept", "application/json");
  switch (auth) {
    case ClientAuth::basic:
      // RFC 6749 §2.3.1: id and secret are form-encoded before they are joined and base64'd.
      req.headers.emplace_back("Authorization",
                               "Basic " + base64_encode(form_encode(spec.client_id) + ":" +
                                                        form_encode(spec.client_secret)));
      break;
    case ClientAuth::post:
      fields.emplace_back("client_id", spec.client_id);
      fields.emplace_back("client_secret", spec.client_secret);
      break;
    case ClientAuth::none:
      fields.emplace_back("client_id", spec.client_id);
      break;
  }
  req.body = form_body(fields);
  return req;
}

TokenResult parse_token_response(long status, std::string_view body) {
  TokenResult r;
  const auto doc = nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
  const bool is_object = !doc.is_discarded() && doc.is_object();
  if (status < 200 || status >= 300) {
    // RFC 6749 §5.2 error response: {"error": "...", "error_description": "..."}.
    std::string error, description;
    if (is_object) {
      if (auto it = doc.find("error"); it != doc.end() && it->is_string())
        error = it->get<std::string>();
      if (auto it = doc.find("error_description"); it != doc.end() && it->is_string())
        description = it->get<std::string>();
    }
    const bool refused = status == 401 || error == "invalid_client" || error == "invalid_grant" ||
                         error == "unauthorized_client";
    r.reason = refused ? Reason::auth : Reason::http_status;
    r.message = "HTTP status " + std::to_string(status);
    if (!error.empty()) r.message += ", error " + printable(error, 64);
    if (!description.empty()) r.message += ": " + printable(description);
    return r;
  }
  if (!is_object) {
    r.reason = Reason::protocol;
    r.message = "token response is not a JSON object";
    return r;
  }
  const auto tok = doc.find("access_token");
  if (tok == doc.end() || !tok->is_string() || tok->get_ref<const std::string&>().empty()) {
    r.reason = Reason::protocol;
    r.message = "token response has no access_token";
    return r;
  }
  if (const auto it = doc.find("token_type"); it != doc.end()) {
    const std::string type = ascii_lower(it->is_string() ? it->get<std::string>() : "");
    if (type != "bearer") {
      r.reason = Reason::protocol;
      r.message = "token_type is " +
                  (it->is_string() ? "'" + printable(it->get<std::string>(), 32) + "'"
                                   : std::string("not a string")) +
                  ", expected Bearer";
      return r;
    }
  }
  if (const auto it = doc.find("expires_in"); it != doc.end()) {
    // Some servers send it as a string; both are seen in the wild.
    double v = NAN;
    if (it->is_number()) {
      v = it->get<double>();
    } else if (it->is_string()) {
      char* end = nullptr;
      const std::string& s = it->get_ref<const std::string&>();
      v = std::strtod(s.c_str(), &end);
      if (s.empty() || *end != '\0') v = NAN;
    }
    if (!std::isfinite(v) || v < 0 || v > 1e9) {
      r.reason = Reason::protocol;
      r.message = "token response's expires_in is not a number of seconds";
      return r;
    }
    r.expires_in = static_cast<int64_t>(v);
  }
  r.ok = true;
  r.access_token = tok->get<std::string>();
  return r;
}

HealthResult judge_health(long status, std::string_view body) {
  HealthResult r;
  const auto doc = nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
  std::string reported;
  if (!doc.is_discarded() && doc.is_object()) {
    if (auto it = doc.find("status"); it != doc.end() && it->is_string())
      reported = it->get<std::string>();
  }
  if (status < 200 || status >= 300) {
    r.reason = Reason::http_status;
    r.message = "HTTP status " + std::to_string(status);
    if (!reported.empty()) r.message += ", status " + printable(reported, 32);
    return r;
  }
  if (doc.is_discarded() || !doc.is_object()) {
    r.reason = Reason::protocol;
    r.message = "health answer is not a JSON object";
    return r;
  }
  if (reported != "UP") {
    r.reason = Reason::assertion;
    r.message = reported.empty() ? "health answer has no status"
                                 : "status is " + printable(reported, 32) + ", not UP";
    return r;
  }
  r.ok = true;
  return r;
}

}  // namespace pes::oidc
