// The SSO chain's hand-over point: keycloak probes publish their latest valid access token here,
// probes with `bearer_from` read it. Tokens never leave the process.
#pragma once

#include <chrono>
#include <map>
#include <mutex>
#include <optional>
#include <string>

namespace pes {

class TokenStore {
 public:
  using SysClock = std::chrono::system_clock;
  // Publishes the token a keycloak probe just obtained and verified, valid until `expires`.
  void publish(const std::string& probe, std::string token, SysClock::time_point expires);
  // Removes the token of a probe whose last run failed: the chain is broken, say so.
  void revoke(const std::string& probe);
  // The token if one is held and not within `margin` of its expiry.
  std::optional<std::string> get(const std::string& probe,
                                 SysClock::time_point now = SysClock::now(),
                                 std::chrono::seconds margin = std::chrono::seconds(5)) const;

 private:
  struct Entry {
    std::string token;
    SysClock::time_point expires;
  };
  mutable std::mutex mu_;
  std::map<std::string, Entry> tokens_;
};

}  // namespace pes
