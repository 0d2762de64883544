// XMPP over BOSH (XEP-0124/XEP-0206) and over WebSocket (RFC 7395): the few requests the jitsi
// probe sends to Prosody and namespace-aware parsers for its answers. Engine-independent; parsing
// uses expat and refuses DOCTYPEs (so no entity can be declared, let alone expanded) and inputs
// above kMaxXmppInputBytes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace pes::jitsi {

inline constexpr size_t kMaxXmppInputBytes = 1 << 20;  // 1 MiB
inline constexpr int kMaxXmppDepth = 32;               // element nesting we accept

inline constexpr std::string_view kNsHttpBind = "http://jabber.org/protocol/httpbind";
inline constexpr std::string_view kNsXBosh = "urn:xmpp:xbosh";
inline constexpr std::string_view kNsStreams = "http://etherx.jabber.org/streams";
inline constexpr std::string_view kNsStreamErrors = "urn:ietf:params:xml:ns:xmpp-streams";
inline constexpr std::string_view kNsSasl = "urn:ietf:params:xml:ns:xmpp-sasl";
inline constexpr std::string_view kNsFraming = "urn:ietf:params:xml:ns:xmpp-framing";

// Escapes text for an XML attribute value or character data (& < > ' "). Tab, LF and CR become
// character references (so attribute normalisation keeps them); other C0 controls, which XML 1.0
// cannot carry at all, are dropped.
std::string xml_escape(std::string_view text);

// ---- BOSH ------------------------------------------------------------------------------------

struct BoshSessionParams {
  unsigned wait = 10;  // seconds the connection manager may hold a request (a probe wants little)
  unsigned hold = 1;
  std::string lang = "en";
};

// The session-creation request body (XEP-0124 §7.1, XEP-0206 §5): a single empty <body/> with
// rid, to, xml:lang, wait, hold, content, ver='1.6', xmpp:version='1.0' and the httpbind and
// xbosh namespaces. POST it with Content-Type "text/xml; charset=utf-8".
std::string build_bosh_session_request(uint64_t rid, std::string_view domain,
                                       const BoshSessionParams& params = {});

// A request that ends session `sid` (XEP-0124 §12), to be polite after a successful probe.
std::string build_bosh_terminate(uint64_t rid, std::string_view sid);

// What a connection manager answered to a BOSH request.
struct BoshResponse {
  // Non-empty when the text is not a usable BOSH <body/>: malformed or truncated XML (expat's
  // message with line and column), a DOCTYPE, too large, too deep, or another root element.
  std::string error;

  std::string sid;           // session id; present on a successful session creation
  std::string type;          // "" normally, "terminate" when the manager ends the session
  std::string condition;     // with type='terminate': e.g. "host-unknown", "improper-addressing",
                             // "item-not-found", "remote-stream-error"
  std::string from;          // the domain the manager answers for (Prosody sets it on creation)
  std::string stream_error;  // with remote-stream-error: the <stream:error/> condition
  std::string stream_error_text;             // and its <text/>, if any
  bool has_stream_features = false;          // a <stream:features/> child was present
  std::vector<std::string> sasl_mechanisms;  // e.g. {"ANONYMOUS"}, in document order

  bool ok() const { return error.empty(); }
  bool terminated() const { return type == "terminate"; }
};

// Parses one BOSH response body. Namespace-aware: the root must be {httpbind}body, features are
// {streams}features whatever the prefix, mechanisms are {xmpp-sasl}mechanisms/mechanism.
BoshResponse parse_bosh_response(std::string_view xml);

// ---- WebSocket (RFC 7395) ---------------------------------------------------------------------

// The framing <open/> that starts a stream to `domain`.
std::string build_ws_open(std::string_view domain);
// The framing <close/> that ends it.
std::string build_ws_close();

// One WebSocket text message, which RFC 7395 §3.3.3 makes exactly one complete XML element.
struct WsFrame {
  enum class Kind {
    invalid,       // not one well-formed element (see error)
    open,          // {framing}open: id, from, version, lang
    features,      // {streams}features: sasl_mechanisms
    close,         // {framing}close: see_other_uri (RFC 7395 §3.6.1), if any
    stream_error,  // {streams}error: condition, text
    other,         // anything else (a stanza, a SASL answer): name holds "{ns}local"
  };
  Kind kind = Kind::invalid;
  std::string error;

  std::string id, from, version, lang;
  std::vector<std::string> sasl_mechanisms;
  std::string see_other_uri;
  std::string condition, text;
  std::string name;

  bool ok() const { return kind != Kind::invalid; }
};

WsFrame parse_ws_frame(std::string_view xml);
std::string_view ws_frame_kind_name(WsFrame::Kind kind);

}  // namespace pes::jitsi
