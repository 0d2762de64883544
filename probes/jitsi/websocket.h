// XMPP over WebSocket (RFC 7395) for the jitsi probe: upgrade with the `xmpp` subprotocol, send
// the framing <open/>, require the server's <open/> and <stream:features/> with SASL mechanisms,
// then close politely. Debian 12's libcurl (7.88) has no WebSocket support, so this uses
// Boost.Beast's client (header-only, Boost 1.74) on a private io_context; it is the only file of
// the project that includes Beast, to keep rebuilds fast. Blocking: run it on a worker thread.
#pragma once

#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "agent/core/http_types.h"
#include "agent/core/types.h"

namespace pes::jitsi {

// Where to connect: ws://host:port/target or wss://...
struct WsEndpoint {
  bool secure = false;      // wss (TLS)
  std::string host;         // name or address, without IPv6 brackets
  std::string port;         // "80", "443", ...
  std::string target;       // path and query, e.g. "/xmpp-websocket"
  std::string host_header;  // Host: header, e.g. "meet.example.org" or "[::1]:5280"

  std::string url() const;  // for messages: ws://host_header/target
};

// Splits a ws:// or wss:// URL (http:// and https:// are accepted and mean the same); false with
// `error` set when it is not one.
bool parse_ws_url(const std::string& url, WsEndpoint& out, std::string& error);

struct WsXmppResult {
  bool ok = false;
  Reason reason = Reason::none;  // on failure
  std::string message;           // on failure: human words naming the step
  std::string stream_id;         // the server's <open id=…/>
  std::string from;              // the server's <open from=…/>
  std::vector<std::string> sasl_mechanisms;
};

using WsTraceFn = std::function<void(const std::string&)>;

// One XMPP-over-WebSocket stream opening to `domain` at `endpoint`, finished by `deadline`
// (connect, TLS, upgrade, every read and write; name resolution is bounded only by the system
// resolver). Reasons: dns, connect, tls, timeout, protocol (upgrade refused, `xmpp` not echoed,
// a stream error such as host-unknown, <close/>, no SASL mechanisms, malformed frames).
WsXmppResult ws_xmpp_probe(const WsEndpoint& endpoint, std::string_view domain,
                           const TlsOptions& tls, Clock::time_point deadline,
                           const WsTraceFn& trace = {});

}  // namespace pes::jitsi
