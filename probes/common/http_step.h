// Pieces every HTTP-family probe (keycloak, jitsi, the presets) builds its steps from: the request
// with the probe's TLS options and body limit, and the verdict "answered with a 2xx status".
#pragma once

#include <optional>
#include <string>

#include "agent/core/http_types.h"
#include "agent/core/types.h"

namespace pes {

// A step's conclusion: nullopt when it passed, else why the run (or component) fails.
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

// A GET of url with the probe's TLS options and body limit.
HttpRequest http_request(std::string url, const TlsOptions& tls, size_t max_body_bytes);

// Passes when r is an HTTP answer with a 2xx status. Otherwise fails with the transfer's own
// reason and error, or with `status_reason` and "HTTP status N from URL" (credentials removed).
Verdict expect_2xx(const HttpResponse& r, const std::string& url,
                   Reason status_reason = Reason::http_status);

}  // namespace pes
