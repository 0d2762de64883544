// Prometheus exposition: probe results read from the engine at scrape time (a scrape never waits
// for a probe), the agent's /proc-based process metrics, and text rendering.
#pragma once

#include <prometheus/collectable.h>
#include <prometheus/metric_family.h>

#include <memory>
#include <string>
#include <vector>

#include "agent/engine/engine.h"

namespace pes {

// Every probe's series (CONTRACT.md §4) built from the engine's current view.
class ProbeCollector : public prometheus::Collectable {
 public:
  explicit ProbeCollector(const Engine& engine) : engine_(engine) {}
  std::vector<prometheus::MetricFamily> Collect() const override;

 private:
  const Engine& engine_;
};

// process_* metrics from /proc/self, like the Go and Python clients export.
class ProcessCollector : public prometheus::Collectable {
 public:
  std::vector<prometheus::MetricFamily> Collect() const override;
};

// Text exposition of several collectables, families merged by name and sorted.
std::string render_text(const std::vector<const prometheus::Collectable*>& sources);

// The series of one ad hoc run (for /probe and `pes-agent probe --format=prometheus`).
std::vector<prometheus::MetricFamily> adhoc_families(const ProbeConfig& probe, const Config& config,
                                                     const Outcome& outcome, double duration);

}  // namespace pes
