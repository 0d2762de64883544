// An HTTP request as probes describe it and the response the event loop hands back.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "agent/core/types.h"

namespace pes {

struct TlsOptions {
  std::string ca_file;
  std::string cert_file;
  std::string key_file;
  std::string server_name;  // SNI and the name the certificate must match
  bool insecure_skip_verify = false;
};

struct HttpRequest {
  std::string url;
  std::string method = "GET";
  std::vector<std::pair<std::string, std::string>> headers;
  std::optional<std::string> body;
  bool follow_redirects = true;
  long max_redirects = 10;
  size_t max_body_bytes = 10 * 1024 * 1024;
  TlsOptions tls;
  std::optional<std::pair<std::string, std::string>> basic_auth;
};

// Per-phase timings in seconds (blackbox_exporter's phases).
struct HttpPhases {
  double resolve = 0, connect = 0, tls = 0, processing = 0, transfer = 0;
};

struct HttpResponse {
  // Transport result: ok=false means no usable HTTP answer (reason and error say why).
  bool ok = false;
  Reason reason = Reason::none;
  std::string error;
  long status = 0;
  std::vector<std::pair<std::string, std::string>>
      headers;  // names lower-cased, last response only
  std::string body;
  int64_t content_length = -1;  // from the header, -1 when absent
  HttpPhases phases;
  double total_seconds = 0;
  std::optional<int64_t> earliest_cert_expiry;  // unix seconds, when TLS was used
  std::string effective_url;
  long redirects = 0;

  // First header with that (lower-case) name, or nullptr.
  const std::string* header(std::string_view lower_name) const {
    for (const auto& [k, v] : headers)
      if (k == lower_name) return &v;
    return nullptr;
  }
};

}  // namespace pes
