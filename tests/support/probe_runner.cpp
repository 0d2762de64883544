#include "tests/support/probe_runner.h"

#include <cmath>

#include "probes/registry.h"

namespace pes::test {

ProbeRunner::ProbeRunner(const std::string& yaml) {
  config_ = parse_config(yaml, "test.yml", probe_types());
  EngineOptions opts;
  opts.schedule = false;
  opts.workers = 8;
  engine_ = std::make_unique<Engine>(opts);
  engine_->apply(config_);
  engine_->start();
}

ProbeRunner::~ProbeRunner() { engine_->stop(); }

Engine::AdHocResult ProbeRunner::run(const std::string& name, bool debug) {
  return engine_->run_now(name, debug);
}

double ProbeRunner::sample(const Outcome& o, const std::string& name, const std::string& label) {
  for (const auto& s : o.samples) {
    if (s.name != name) continue;
    if (label.empty()) return s.value;
    for (const auto& [k, v] : s.labels)
      if (k + "=" + v == label) return s.value;
  }
  return std::nan("");
}

}  // namespace pes::test
