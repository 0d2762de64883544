// The JWKS a keycloak probe verifies against, kept between runs: fetched when absent, when the
// issuer's jwks_uri changed, when older than the refresh interval, and when a token names a kid
// the cached set does not hold (the issuer rotated its keys). Shared by concurrent runs of one
// probe, so guarded by a mutex.
#pragma once

#include <chrono>
#include <memory>
#include <mutex>
#include <string>

#include "agent/core/types.h"
#include "probes/keycloak/jwks.h"

namespace pes {

class JwksCache {
 public:
  explicit JwksCache(Clock::duration refresh_interval) : refresh_interval_(refresh_interval) {}

  // The cached set for `uri` if it is younger than the refresh interval at `now`, else nullptr
  // (the caller fetches and stores).
  std::shared_ptr<const jwt::Jwks> get(const std::string& uri, Clock::time_point now) const;
  void store(const std::string& uri, std::shared_ptr<const jwt::Jwks> jwks, Clock::time_point now);
  // Forgets the set, e.g. after it failed to parse, so the next run fetches again.
  void clear();

 private:
  const Clock::duration refresh_interval_;
  mutable std::mutex mu_;
  std::string uri_;
  std::shared_ptr<const jwt::Jwks> jwks_;
  Clock::time_point fetched_{};
};

}  // namespace pes
