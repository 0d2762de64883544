// The `http` probe: one request, judged by status, body, JSON, headers and certificate lifetime.
// Its request and expectation parts are reused by the service presets.
#pragma once

#include <re2/re2.h>

#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "agent/config/parse.h"
#include "agent/core/probe.h"

namespace pes {

struct StatusMatcher {
  std::vector<int> codes;
  std::vector<int> classes;  // 2 for "2xx"
  bool matches(long status) const;
  std::string describe() const;
};

struct HttpExpectations {
  StatusMatcher status;  // default: 2xx
  std::vector<std::shared_ptr<const RE2>> body_regex;
  std::vector<std::shared_ptr<const RE2>> body_not_regex;
  std::vector<std::pair<std::string, nlohmann::json>> json;
  std::vector<std::pair<std::string, std::shared_ptr<const RE2>>> headers;  // lower-case name
  std::optional<int> cert_min_days;
};

// Reads the request fields of an http-family section (url, method, headers, body,
// follow_redirects, max_body_bytes, tls, basic_auth). Returns nullopt if url is unusable.
std::optional<HttpRequest> parse_http_request(Section& s);
// Reads `bearer_from` and registers the reference (must name a keycloak probe).
std::optional<std::string> parse_bearer_from(Section& s);
HttpExpectations parse_expectations(Section& s);

// Attaches `Authorization: Bearer` from the token store; fails with reason auth when there is none.
std::optional<Outcome> attach_bearer(HttpRequest& req,
                                     const std::optional<std::string>& bearer_from,
                                     RunContext& ctx);

// The metrics every http-family response gives (status code, phases, content length, cert expiry).
void add_http_samples(Outcome& out, const HttpResponse& r);
// Judges a response against expectations; adds the http samples.
Outcome judge_http(const HttpResponse& r, const HttpExpectations& expect);

class HttpProbe : public Probe {
 public:
  static constexpr std::string_view kSampleLabels[] = {"phase"};
  HttpProbe(HttpRequest request, HttpExpectations expect, std::optional<std::string> bearer_from)
      : request_(std::move(request)),
        expect_(std::move(expect)),
        bearer_from_(std::move(bearer_from)) {}
  void run(RunContextPtr ctx, Done done) override;
  std::string target() const override { return request_.url; }
  std::vector<std::string> token_sources() const override {
    return bearer_from_ ? std::vector<std::string>{*bearer_from_} : std::vector<std::string>{};
  }

  static std::unique_ptr<Probe> parse(Section& s);

 private:
  HttpRequest request_;
  HttpExpectations expect_;
  std::optional<std::string> bearer_from_;
};

}  // namespace pes
