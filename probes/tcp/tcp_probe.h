// The `tcp` probe: connect (optionally TLS), optionally send a line and expect a banner.
#pragma once

#include <re2/re2.h>

#include <memory>
#include <string>

#include "agent/config/parse.h"
#include "agent/core/probe.h"

namespace pes {

class TcpProbe : public Probe {
 public:
  struct Spec {
    std::string host;
    std::string port;
    bool tls = false;
    TlsOptions tls_options;
    std::string send;
    std::shared_ptr<const RE2> expect;
  };
  explicit TcpProbe(Spec spec) : spec_(std::move(spec)) {}
  void run(RunContextPtr ctx, Done done) override;
  std::string target() const override;
  static std::unique_ptr<Probe> parse(Section& s);

 private:
  Spec spec_;
};

// Splits "host:port" or "[v6]:port"; false if malformed.
bool split_host_port(const std::string& address, std::string& host, std::string& port);

}  // namespace pes
