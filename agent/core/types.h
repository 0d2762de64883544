// Vocabulary shared by the engine and every probe type: failure reasons, samples and run outcomes.
#pragma once

#include <chrono>
#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace pes {

using Clock = std::chrono::steady_clock;
using Millis = std::chrono::milliseconds;

// Why a run failed (CONTRACT.md §4). `none` only for successful runs.
enum class Reason {
  none,
  timeout,
  dns,
  connect,
  tls,
  http_status,
  assertion,
  auth,
  protocol,
  config,
  internal
};

std::string_view reason_name(Reason r);

using Labels = std::vector<std::pair<std::string, std::string>>;

// One type-specific gauge value produced by a run, e.g. probe_http_status_code{} 200.
// `help` points at a string literal owned by the probe type.
struct Sample {
  std::string name;
  const char* help = "";
  Labels labels;
  double value = 0;
};

// The result of one run. Probes never throw across the engine: every failure is an Outcome.
struct Outcome {
  bool ok = false;
  Reason reason = Reason::internal;
  std::string message;  // human words, secrets already redacted by the engine before export
  std::vector<Sample> samples;
  // The service said it is in maintenance (a preset recognised its maintenance answer): the run
  // neither counts as a failure nor advances the thresholds (docs/architecture.md, state policy).
  bool maintenance = false;

  static Outcome success(std::string msg = {}) {
    return Outcome{true, Reason::none, std::move(msg), {}, false};
  }
  static Outcome failure(Reason r, std::string msg) {
    return Outcome{false, r, std::move(msg), {}, false};
  }
  Outcome& add(std::string name, const char* help, double value, Labels labels = {}) {
    samples.push_back(Sample{std::move(name), help, std::move(labels), value});
    return *this;
  }
};

// s with ASCII A-Z as a-z (header names, URL schemes, HTML attributes, token types); other bytes
// as they are, whatever the locale.
std::string ascii_lower(std::string_view s);

}  // namespace pes
