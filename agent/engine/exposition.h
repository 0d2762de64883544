// Prometheus exposition: probe results read from the engine at scrape time (a scrape never waits
// for a probe), the agent's /proc-based process metrics, and text rendering.
#pragma once

#include <prometheus/collectable.h>
#include <prometheus/metric_family.h>

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "agent/engine/engine.h"

namespace pes {

// Every probe's series (CONTRACT.md §4), written as Prometheus text straight from the engine's
// current view: no intermediate MetricFamily objects, so a scrape of 10,000 probes costs little
// more memory than the text itself (bench/README.md). A scrape never waits for a probe.
class ProbeExposition {
 public:
  explicit ProbeExposition(const Engine& engine) : engine_(engine) {}
  // Appends the text of every probe family to `out`.
  void render(std::string& out) const;

 private:
  const Engine& engine_;
  mutable std::atomic<size_t> size_hint_{0};  // length of the previous scrape's text
};

// process_* metrics from /proc/self, like the Go and Python clients export.
class ProcessCollector : public prometheus::Collectable {
 public:
  std::vector<prometheus::MetricFamily> Collect() const override;
};

// Text exposition of several collectables, families merged by name and sorted.
std::string render_text(const std::vector<const prometheus::Collectable*>& sources);

// The series of one ad hoc run (for /probe and `pes-agent probe --format=prometheus`), written by
// the same writer as the scheduled probes' (same names, HELP texts and label order).
std::string render_run(const ProbeConfig& probe, const Config& config, const Outcome& outcome,
                       double duration);

}  // namespace pes
