// The engine's sources of time and randomness, injected so that reload, thresholds, the edge
// interval and the first-run waits are tested at fixed times without sleeping.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <random>

#include "agent/core/types.h"

namespace pes {

// Steady time plans runs and deadlines; system (unix) time stamps results and decides
// maintenance windows.
class EngineClock {
 public:
  virtual ~EngineClock() = default;
  virtual Clock::time_point steady_now() const = 0;
  virtual double unix_now() const = 0;
};

class SystemClock final : public EngineClock {
 public:
  Clock::time_point steady_now() const override { return Clock::now(); }
  double unix_now() const override {
    return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch())
        .count();
  }
  static std::shared_ptr<const EngineClock> shared() {
    static const auto clock = std::make_shared<const SystemClock>();
    return clock;
  }
};

// A clock the test moves by hand.
class ManualClock final : public EngineClock {
 public:
  ManualClock(Clock::time_point steady, double unix_seconds)
      : steady_(steady), unix_(unix_seconds) {}
  Clock::time_point steady_now() const override { return steady_; }
  double unix_now() const override { return unix_; }
  void advance(std::chrono::milliseconds d) {
    steady_ += d;
    unix_ += std::chrono::duration<double>(d).count();
  }

 private:
  Clock::time_point steady_;
  double unix_;
};

using Rng = std::mt19937_64;

}  // namespace pes
