// Shared pieces of the service presets (nextcloud, collabora, gitea, nexus, moodle): the fields
// every preset section has, and a runner that performs a preset's HTTP steps one after another.
#pragma once

#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "agent/config/parse.h"
#include "agent/core/probe.h"

namespace pes {

// `url` (the service's base URL), `tls` and `max_body_bytes`, common to every preset.
struct PresetBase {
  std::string url;  // no trailing slash, no query
  TlsOptions tls;
  size_t max_body_bytes = 2 * 1024 * 1024;

  // A GET of url + path (path starts with '/') with the TLS options and body limit.
  HttpRequest get(std::string_view path) const;
};

// Reads url (required, http/https, no query or fragment), tls and max_body_bytes.
// Returns nullopt when the URL is unusable (the error is already reported).
std::optional<PresetBase> parse_preset_base(Section& s);

// A step's conclusion: nullopt when it passed, else why the run fails.
struct StepFailure {
  Reason reason;
  std::string message;
  bool maintenance = false;  // the service answered that it is in maintenance
};
using Verdict = std::optional<StepFailure>;
inline Verdict fail(Reason reason, std::string message) {
  return StepFailure{reason, std::move(message)};
}
// A failure that is the service's own maintenance answer (Outcome::maintenance).
inline Verdict in_maintenance(Reason reason, std::string message) {
  return StepFailure{reason, std::move(message), true};
}

// One HTTP request of a preset and how its answer is judged. `judge` may add samples to the
// outcome being built and write to the trace; it runs on the event loop thread.
struct PresetStep {
  std::string what;  // names the step in messages, e.g. "status.php"
  HttpRequest request;
  std::optional<std::string> bearer_from;  // send that keycloak probe's access token
  std::function<Verdict(const HttpResponse&, Outcome&, Trace&)> judge;
};

// Performs the steps in order on the event loop, each bounded by the run's deadline, and calls
// done once: with the first failure (keeping the samples gathered so far) or with success after
// the last step. The first step's response gives the http samples (add_http_samples).
void run_preset_steps(const RunContextPtr& ctx, std::vector<PresetStep> steps, Done done);

// A preset probe: its steps are built afresh for every run from the immutable configuration the
// builder captures, so concurrent runs share nothing mutable.
class PresetProbe : public Probe {
 public:
  using StepsFn = std::function<std::vector<PresetStep>()>;
  PresetProbe(std::string target, std::optional<std::string> bearer_from, StepsFn steps)
      : target_(std::move(target)),
        bearer_from_(std::move(bearer_from)),
        steps_(std::move(steps)) {}
  void run(RunContextPtr ctx, Done done) override;
  std::string target() const override { return target_; }
  std::vector<std::string> token_sources() const override;

 private:
  std::string target_;
  std::optional<std::string> bearer_from_;
  StepsFn steps_;
};

// The preset types of probes/registry.cpp.
std::unique_ptr<Probe> parse_nextcloud_probe(Section& s);
std::unique_ptr<Probe> parse_collabora_probe(Section& s);
std::unique_ptr<Probe> parse_gitea_probe(Section& s);
std::unique_ptr<Probe> parse_nexus_probe(Section& s);
std::unique_ptr<Probe> parse_moodle_probe(Section& s);

// Helpers for judges.
// The body as a JSON object, or nullopt when it is not one.
std::optional<nlohmann::json> json_object(const std::string& body);
// A string member of a JSON object, or nullopt.
std::optional<std::string> json_string(const nlohmann::json& obj, const char* key);
// A boolean member of a JSON object, or nullopt.
std::optional<bool> json_bool(const nlohmann::json& obj, const char* key);
// The start of a response body on one line, for failure messages (empty bodies give "").
std::string body_excerpt(const std::string& body, size_t max = 100);
// " (Content-Type X)" when the response has one, else "".
std::string content_type_note(const HttpResponse& r);
// application/x-www-form-urlencoded encoding of one value.
std::string form_encode(std::string_view value);

}  // namespace pes
