#include "agent/core/probe.h"

#include <cstdio>

namespace pes {

Trace::Trace(bool enabled, std::shared_ptr<const Redactor> redactor)
    : enabled_(enabled), redactor_(std::move(redactor)), start_(Clock::now()) {}

void Trace::log(std::string_view line) {
  if (!enabled_) return;
  double t = std::chrono::duration<double>(Clock::now() - start_).count();
  char stamp[32];
  std::snprintf(stamp, sizeof stamp, "%8.3fs ", t);
  std::string clean = redactor_ ? redactor_->redact(line) : std::string(line);
  std::lock_guard lock(mu_);
  text_ += stamp;
  text_ += clean;
  text_ += '\n';
}

std::string Trace::text() const {
  std::lock_guard lock(mu_);
  return text_;
}

long RunContext::remaining_ms() const {
  auto left = std::chrono::duration_cast<Millis>(deadline() - Clock::now()).count();
  return left < 1 ? 1 : static_cast<long>(left);
}

}  // namespace pes
