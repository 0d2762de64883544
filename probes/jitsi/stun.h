// STUN (RFC 5389) Binding codec and a one-shot blocking UDP Binding exchange, used by the jitsi
// probe to check that the TURN/STUN server (coturn, or the JVB's own) answers. Engine-independent.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace pes::jitsi {

inline constexpr uint32_t kStunMagicCookie = 0x2112A442;
inline constexpr size_t kStunHeaderSize = 20;

using StunTransactionId = std::array<uint8_t, 12>;

// A transport address as a STUN server saw it (the "server-reflexive" address).
struct StunAddress {
  enum class Family : uint8_t { ipv4 = 1, ipv6 = 2 };
  Family family = Family::ipv4;
  std::array<uint8_t, 16> bytes{};  // network order; only the first 4 are used for IPv4
  uint16_t port = 0;

  std::string ip() const;         // "192.0.2.1", "2001:db8::1"
  std::string to_string() const;  // "192.0.2.1:32853", "[2001:db8::1]:32853"
  friend bool operator==(const StunAddress&, const StunAddress&) = default;
};

// Options for encode_binding_request.
struct StunRequestOptions {
  std::string software = "pes-agent";  // SOFTWARE attribute; empty = none
  bool fingerprint = true;             // append FINGERPRINT (CRC-32 ^ 0x5354554e)
};

// A Binding request (class request, method Binding) with the given transaction id.
std::vector<uint8_t> encode_binding_request(const StunTransactionId& transaction_id,
                                            const StunRequestOptions& options = {});

enum class StunDecodeError {
  none,
  too_short,               // under 20 bytes, or the header's length runs past the datagram
  not_stun,                // top two bits set, wrong magic cookie, or bytes after the message
  wrong_transaction,       // a STUN message, but not an answer to our request
  error_response,          // Binding error response; see error_code / reason_phrase
  not_a_binding_response,  // another method, or a request/indication
  malformed_attribute,     // attribute header/value/padding overruns, bad lengths, bad family,
                           // FINGERPRINT mismatch
  missing_mapped_address,  // a success response with neither XOR-MAPPED- nor MAPPED-ADDRESS
};
std::string_view stun_decode_error_name(StunDecodeError e);

struct StunBindingResponse {
  StunDecodeError error = StunDecodeError::none;
  std::string detail;  // human words about the error; empty on success

  // Success: the mapped address. `from_xor` is false when the server only sent the
  // RFC 3489 MAPPED-ADDRESS (see decode_binding_response).
  StunAddress mapped;
  bool from_xor = true;
  std::string software;  // the server's SOFTWARE attribute, if any (also on error responses)

  // error_response: ERROR-CODE as class * 100 + number (e.g. 420) and its reason phrase;
  // 0 and empty when the server omitted the attribute.
  int error_code = 0;
  std::string reason_phrase;

  bool ok() const { return error == StunDecodeError::none; }
};

// Decodes one datagram expected to answer the request with `expected_tid`. Never reads past
// `datagram`. Checks, in order: size, STUN framing (top bits, cookie, length), transaction id,
// method/class, then every attribute's bounds. XOR-MAPPED-ADDRESS (IPv4 and IPv6) is preferred;
// MAPPED-ADDRESS is accepted only when XOR-MAPPED-ADDRESS is absent, because RFC 5389 §12 lets a
// client talk to RFC 3489 servers, which echo the cookie as part of their 128-bit transaction id
// but only know MAPPED-ADDRESS. A FINGERPRINT, if present, must be last and must match.
// Unknown attributes (including comprehension-required ones) are skipped: a health probe wants
// the mapped address, not a strict conformance verdict.
StunBindingResponse decode_binding_response(std::span<const uint8_t> datagram,
                                            const StunTransactionId& expected_tid);

// CRC-32 (ISO-HDLC, as zlib) of `data`; exposed for tests and FINGERPRINT.
uint32_t stun_crc32(std::span<const uint8_t> data);

// ---- One blocking Binding exchange over UDP -------------------------------------------------

enum class StunProbeError { none, timeout, protocol, connect, dns };
std::string_view stun_probe_error_name(StunProbeError e);

struct StunProbeOptions {
  std::chrono::milliseconds initial_rto{100};  // RFC 5389 §7.2.1 RTO; doubled per retransmit
  int max_transmissions = 7;                   // RFC 5389 Rc
  StunRequestOptions request;
  // The transaction id to use; empty = 96 random bits from std::random_device.
  std::optional<StunTransactionId> transaction_id;
};

struct StunProbeResult {
  StunProbeError error = StunProbeError::none;
  std::string message;  // human words on failure

  StunAddress mapped;                // on success
  std::chrono::microseconds rtt{0};  // from the first transmission to the answer
  int transmissions = 0;             // requests sent, over all addresses tried
  std::string server_address;        // the address actually used, e.g. "127.0.0.1:3478"
  StunBindingResponse response;      // the decoded answer (also for protocol errors)

  bool ok() const { return error == StunProbeError::none; }
};

// Resolves `host` (numeric IPv4/IPv6, optionally in brackets, tried without DNS first; else a
// name via getaddrinfo) and does one Binding transaction with a connected UDP socket and poll():
// sends, retransmits the same request with RTO doubling (initial_rto, 2x, 4x, ... up to
// max_transmissions; after the last one it waits 16 x initial_rto, RFC 5389 §7.2.1), ignores
// datagrams that carry another transaction id, and gives up at `deadline`. If the name has
// several addresses, the next is tried only when one refuses (ECONNREFUSED).
// Errors: dns (resolution failed), connect (socket/connect failed or ICMP port unreachable,
// seen as ECONNREFUSED), protocol (the server answered, but not with a usable Binding success:
// see `response`), timeout (no answer before the deadline or after the last transmission's wait).
// Sends nothing anywhere but the resolved addresses of `host`. Blocking (getaddrinfo included,
// which the deadline cannot bound): run it on a worker thread.
StunProbeResult stun_probe(const std::string& host, uint16_t port,
                           std::chrono::steady_clock::time_point deadline,
                           const StunProbeOptions& options = {});

// Splits "host:port", "[v6]:port" into host and port; false if malformed or port not 1..65535.
bool split_stun_host_port(std::string_view address, std::string& host, uint16_t& port);

}  // namespace pes::jitsi
