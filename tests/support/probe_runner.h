// Runs configured probes once through the real engine (event loop, worker pool, deadlines)
// for integration tests: parse YAML, apply, run_now.
#pragma once

#include <memory>
#include <string>

#include "agent/config/config.h"
#include "agent/engine/engine.h"

namespace pes::test {

class ProbeRunner {
 public:
  // Parses the YAML config (throws ConfigError) and starts an engine that schedules nothing.
  explicit ProbeRunner(const std::string& yaml);
  ~ProbeRunner();
  Engine::AdHocResult run(const std::string& name, bool debug = false);
  Engine& engine() { return *engine_; }
  const Config& config() const { return *config_; }
  // The value of a sample of the last outcome, or NaN; labels given as "k=v" (optional).
  static double sample(const Outcome& o, const std::string& name, const std::string& label = "");

 private:
  std::shared_ptr<const Config> config_;
  std::unique_ptr<Engine> engine_;
};

}  // namespace pes::test
