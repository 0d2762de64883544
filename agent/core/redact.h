// Keeps secrets out of everything the agent emits: metrics, logs, status, /probe debug output.
#pragma once

#include <mutex>
#include <set>
#include <string>
#include <string_view>

namespace pes {

// A set of secret strings (passwords, client secrets, ${file:}/${env:} values, tokens).
// redact() replaces every occurrence of any of them with "<redacted>". Thread-safe.
class Redactor {
 public:
  void add(std::string secret);
  void merge(const Redactor& other);
  std::string redact(std::string_view text) const;
  bool empty() const;

 private:
  mutable std::mutex mu_;
  std::set<std::string, std::greater<>> secrets_;  // longest-first not needed; any order is correct
};

// Returns the URL with its userinfo (user:password@) removed; unparseable input comes back with
// anything between "://" and "@" cut out, so no credentials survive either way.
std::string strip_userinfo(std::string_view url);

// The URL as a debug trace shows it: no userinfo, and the values of query parameters that carry
// one-time credentials of a login flow (OAuth's code, state, nonce and PKCE verifier, Keycloak's
// session_code, tokens, passwords, secrets) replaced by <redacted>; other parameters (execution,
// client_id, tab_id) stay, since they say which step ran.
std::string trace_url(std::string_view url);

}  // namespace pes
