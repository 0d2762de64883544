// libFuzzer target: the jitsi probe's XMPP parsers (answers come from Prosody over the network).
// Each input is parsed as a BOSH response body and as one XMPP-over-WebSocket message. Then, as
// a property of the builders: with the input (if ASCII) as the domain or session id, the requests
// the probe sends must be well-formed and carry the value back unchanged (xml_escape keeps every
// character XML 1.0 can carry and drops the C0 controls it cannot).
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "probes/jitsi/xmpp.h"

namespace {

bool ascii(std::string_view s) {
  for (const char c : s)
    if (static_cast<unsigned char>(c) >= 0x80) return false;
  return true;
}

// What an attribute value reads as after escaping: C0 controls other than TAB, LF, CR dropped.
std::string carried(std::string_view s) {
  std::string out;
  for (const char c : s)
    if (static_cast<unsigned char>(c) >= 0x20 || c == '\t' || c == '\n' || c == '\r') out += c;
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace pes::jitsi;
  const std::string_view input(reinterpret_cast<const char*>(data), size);

  const BoshResponse b = parse_bosh_response(input);
  if (!b.ok() && (!b.sid.empty() || !b.sasl_mechanisms.empty())) __builtin_trap();
  if (b.ok() && b.terminated() && b.type != "terminate") __builtin_trap();

  const WsFrame f = parse_ws_frame(input);
  if (f.ok() != f.error.empty()) __builtin_trap();
  (void)ws_frame_kind_name(f.kind);

  if (ascii(input)) {
    const BoshResponse created = parse_bosh_response(build_bosh_session_request(1, input));
    if (!created.ok()) __builtin_trap();

    const BoshResponse ended = parse_bosh_response(build_bosh_terminate(2, input));
    if (!ended.ok() || !ended.terminated() || ended.sid != carried(input)) __builtin_trap();

    const WsFrame open = parse_ws_frame(build_ws_open(input));
    if (open.kind != WsFrame::Kind::open) __builtin_trap();
  }
  return 0;
}
