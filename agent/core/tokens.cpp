#include "agent/core/tokens.h"

namespace pes {

void TokenStore::publish(const std::string& probe, std::string token,
                         SysClock::time_point expires) {
  std::lock_guard lock(mu_);
  tokens_[probe] = Entry{std::move(token), expires};
}

void TokenStore::revoke(const std::string& probe) {
  std::lock_guard lock(mu_);
  tokens_.erase(probe);
}

std::optional<std::string> TokenStore::get(const std::string& probe, SysClock::time_point now,
                                           std::chrono::seconds margin) const {
  std::lock_guard lock(mu_);
  auto it = tokens_.find(probe);
  if (it == tokens_.end() || it->second.expires - margin <= now) return std::nullopt;
  return it->second.token;
}

}  // namespace pes
