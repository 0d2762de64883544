#include "probes/common/http_step.h"

#include "agent/core/redact.h"

namespace pes {

HttpRequest http_request(std::string url, const TlsOptions& tls, size_t max_body_bytes) {
  HttpRequest req;
  req.url = std::move(url);
  req.tls = tls;
  req.max_body_bytes = max_body_bytes;
  return req;
}

Verdict expect_2xx(const HttpResponse& r, const std::string& url, Reason status_reason) {
  if (!r.ok) return fail(r.reason, r.error);
  if (r.status < 200 || r.status >= 300)
    return fail(status_reason,
                "HTTP status " + std::to_string(r.status) + " from " + strip_userinfo(url));
  return std::nullopt;
}

}  // namespace pes
