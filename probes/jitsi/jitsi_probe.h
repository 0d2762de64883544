// The `jitsi` probe: "is Jitsi Meet up?" checked component by component in one run — the web
// frontend, its config.js, XMPP over BOSH and over WebSocket (Prosody), the focus (jicofo), the
// video bridge (JVB) and STUN. Exports probe_jitsi_component_up/duration_seconds{component}.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "agent/config/parse.h"
#include "agent/core/probe.h"
#include "probes/jitsi/websocket.h"

namespace pes {

// The components in their fixed order: the order of the failure message and of the `reason`
// choice (the first component that is down gives the run its reason).
enum class JitsiComponent { web, config, bosh, websocket, jicofo, jvb, stun };
inline constexpr size_t kJitsiComponents = 7;
std::string_view jitsi_component_name(JitsiComponent c);

struct JitsiSpec {
  std::string url;            // the web frontend, e.g. https://meet.example.org/
  std::string config_js_url;  // derived: {url}/config.js
  std::string xmpp_domain;    // expected hosts.domain; empty = take it from config.js
  std::string bosh_url;       // derived from bosh_path; empty = no BOSH check
  std::optional<jitsi::WsEndpoint> websocket;  // from websocket_path; none = no check
  std::string jicofo_health_url;               // empty = no check
  std::string jvb_health_url;                  // empty = no check
  std::string stun_host;                       // empty = no check
  uint16_t stun_port = 0;
  TlsOptions tls;  // for every https:// and wss:// connection of the probe

  bool checks(JitsiComponent c) const;
};

class JitsiProbe : public Probe {
 public:
  static constexpr std::string_view kSampleLabels[] = {"component"};
  explicit JitsiProbe(JitsiSpec spec) : spec_(std::make_shared<const JitsiSpec>(std::move(spec))) {}
  void run(RunContextPtr ctx, Done done) override;
  std::string target() const override;
  const JitsiSpec& spec() const { return *spec_; }

  static std::unique_ptr<Probe> parse(Section& s);

 private:
  std::shared_ptr<const JitsiSpec> spec_;
};

}  // namespace pes
