#include "probes/keycloak/jwks_cache.h"

namespace pes {

std::shared_ptr<const jwt::Jwks> JwksCache::get(const std::string& uri,
                                                Clock::time_point now) const {
  std::lock_guard lock(mu_);
  if (!jwks_ || uri != uri_) return nullptr;
  // A clock that went backwards (only possible with an injected one) also counts as stale.
  if (now < fetched_ || now - fetched_ >= refresh_interval_) return nullptr;
  return jwks_;
}

void JwksCache::store(const std::string& uri, std::shared_ptr<const jwt::Jwks> jwks,
                      Clock::time_point now) {
  std::lock_guard lock(mu_);
  uri_ = uri;
  jwks_ = std::move(jwks);
  fetched_ = now;
}

void JwksCache::clear() {
  std::lock_guard lock(mu_);
  uri_.clear();
  jwks_.reset();
}

}  // namespace pes
