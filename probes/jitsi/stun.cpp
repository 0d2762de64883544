#include "probes/jitsi/stun.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>
#include <random>
#include <utility>

namespace pes::jitsi {
namespace {

constexpr uint16_t kBindingRequest = 0x0001;
constexpr uint16_t kMethodMask = 0x3EEF;  // the 12 method bits of the 14-bit type
constexpr uint16_t kClassMask = 0x0110;
constexpr uint16_t kClassRequest = 0x0000;
constexpr uint16_t kClassSuccess = 0x0100;
constexpr uint16_t kClassError = 0x0110;
constexpr uint16_t kMethodBinding = 0x0001;

constexpr uint16_t kAttrMappedAddress = 0x0001;
constexpr uint16_t kAttrErrorCode = 0x0009;
constexpr uint16_t kAttrXorMappedAddress = 0x0020;
constexpr uint16_t kAttrSoftware = 0x8022;
constexpr uint16_t kAttrFingerprint = 0x8028;
constexpr uint32_t kFingerprintXor = 0x5354554E;
constexpr size_t kMaxSoftwareBytes = 763;  // RFC 5389 §15.10: fewer than 128 characters
constexpr size_t kMaxTextKept = 128;       // of server-supplied text we keep for messages

uint16_t be16(const uint8_t* p) { return static_cast<uint16_t>((p[0] << 8) | p[1]); }
uint32_t be32(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | uint32_t{p[3]};
}
void put16(std::vector<uint8_t>& out, uint16_t v) {
  out.push_back(static_cast<uint8_t>(v >> 8));
  out.push_back(static_cast<uint8_t>(v));
}
void put32(std::vector<uint8_t>& out, uint32_t v) {
  put16(out, static_cast<uint16_t>(v >> 16));
  put16(out, static_cast<uint16_t>(v));
}
void set16(std::vector<uint8_t>& out, size_t at, uint16_t v) {
  out[at] = static_cast<uint8_t>(v >> 8);
  out[at + 1] = static_cast<uint8_t>(v);
}

std::string hex16(uint16_t v) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string s = "0x";
  for (int shift = 12; shift >= 0; shift -= 4) s.push_back(kDigits[(v >> shift) & 0xF]);
  return s;
}

// Server text ends up in logs, JSON and the status page: keep printable ASCII only, bounded.
std::string printable(const uint8_t* p, size_t n) {
  std::string s;
  n = std::min(n, kMaxTextKept);
  s.reserve(n);
  for (size_t i = 0; i < n; ++i)
    s.push_back(p[i] >= 0x20 && p[i] < 0x7F ? static_cast<char>(p[i]) : '?');
  return s;
}

// "192.0.2.1:3478" or "[2001:db8::1]:3478". Built by appending: GCC 12 at -O3 warns falsely
// (-Wrestrict) about "literal" + std::string.
std::string host_port(std::string_view ip, bool v6, uint16_t port) {
  std::string s;
  if (v6) s += '[';
  s += ip;
  if (v6) s += ']';
  s += ':';
  s += std::to_string(port);
  return s;
}

constexpr std::array<uint32_t, 256> make_crc_table() {
  std::array<uint32_t, 256> table{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
    table[i] = c;
  }
  return table;
}
constexpr auto kCrcTable = make_crc_table();

StunBindingResponse fail(StunDecodeError e, std::string detail) {
  StunBindingResponse r;
  r.error = e;
  r.detail = std::move(detail);
  return r;
}

// Decodes a (XOR-)MAPPED-ADDRESS value; false if its length or family is wrong.
bool decode_address(const uint8_t* v, size_t len, bool xored, const uint8_t* cookie_and_tid,
                    StunAddress& out) {
  if (len < 4) return false;
  const uint8_t family = v[1];
  size_t addr_len = 0;
  if (family == 0x01) {
    out.family = StunAddress::Family::ipv4;
    addr_len = 4;
  } else if (family == 0x02) {
    out.family = StunAddress::Family::ipv6;
    addr_len = 16;
  } else {
    return false;
  }
  if (len != 4 + addr_len) return false;
  out.port = be16(v + 2);
  if (xored) out.port ^= static_cast<uint16_t>(kStunMagicCookie >> 16);
  out.bytes = {};
  // The XOR key is the cookie (IPv4) or cookie followed by the transaction id (IPv6), which are
  // exactly header bytes 4..19.
  for (size_t i = 0; i < addr_len; ++i)
    out.bytes[i] = static_cast<uint8_t>(v[4 + i] ^ (xored ? cookie_and_tid[i] : 0));
  return true;
}

}  // namespace

std::string StunAddress::ip() const {
  char buf[INET6_ADDRSTRLEN] = {};
  const int af = family == Family::ipv4 ? AF_INET : AF_INET6;
  if (!inet_ntop(af, bytes.data(), buf, sizeof buf)) return "?";
  return buf;
}

std::string StunAddress::to_string() const { return host_port(ip(), family == Family::ipv6, port); }

uint32_t stun_crc32(std::span<const uint8_t> data) {
  uint32_t c = 0xFFFFFFFFu;
  for (uint8_t b : data) c = kCrcTable[(c ^ b) & 0xFF] ^ (c >> 8);
  return c ^ 0xFFFFFFFFu;
}

std::vector<uint8_t> encode_binding_request(const StunTransactionId& transaction_id,
                                            const StunRequestOptions& options) {
  std::vector<uint8_t> out;
  out.reserve(kStunHeaderSize + 4 + options.software.size() + 3 + 8);
  put16(out, kBindingRequest);
  put16(out, 0);  // length, set below
  put32(out, kStunMagicCookie);
  out.insert(out.end(), transaction_id.begin(), transaction_id.end());

  if (!options.software.empty()) {
    const size_t n = std::min(options.software.size(), kMaxSoftwareBytes);
    put16(out, kAttrSoftware);
    put16(out, static_cast<uint16_t>(n));
    out.insert(out.end(), options.software.begin(),
               options.software.begin() + static_cast<long>(n));
    while (out.size() % 4 != 0) out.push_back(0);
  }
  if (options.fingerprint) {
    // The length must already count the FINGERPRINT attribute when the CRC is taken (§15.5).
    set16(out, 2, static_cast<uint16_t>(out.size() + 8 - kStunHeaderSize));
    const uint32_t crc = stun_crc32(out) ^ kFingerprintXor;
    put16(out, kAttrFingerprint);
    put16(out, 4);
    put32(out, crc);
  }
  set16(out, 2, static_cast<uint16_t>(out.size() - kStunHeaderSize));
  return out;
}

StunBindingResponse decode_binding_response(std::span<const uint8_t> datagram,
                                            const StunTransactionId& expected_tid) {
  using E = StunDecodeError;
  const uint8_t* p = datagram.data();
  const size_t size = datagram.size();
  if (size < kStunHeaderSize)
    return fail(E::too_short, std::to_string(size) + " bytes, a STUN header needs 20");

  const uint16_t type = be16(p);
  const size_t length = be16(p + 2);
  if (type & 0xC000) return fail(E::not_stun, "the two leading bits are not zero");
  if (be32(p + 4) != kStunMagicCookie) return fail(E::not_stun, "wrong magic cookie");
  if (kStunHeaderSize + length > size)
    return fail(E::too_short, "header announces " + std::to_string(length) +
                                  " attribute bytes, datagram has " +
                                  std::to_string(size - kStunHeaderSize));
  if (kStunHeaderSize + length < size)
    return fail(E::not_stun,
                std::to_string(size - kStunHeaderSize - length) + " bytes after the STUN message");
  if (!std::equal(expected_tid.begin(), expected_tid.end(), p + 8))
    return fail(E::wrong_transaction, "transaction id does not match the request");

  const uint16_t method = type & kMethodMask;
  const uint16_t cls = type & kClassMask;
  if (method != kMethodBinding)
    return fail(E::not_a_binding_response, "method " + hex16(method) + " is not Binding");
  if (cls != kClassSuccess && cls != kClassError)
    return fail(E::not_a_binding_response, cls == kClassRequest
                                               ? "a Binding request, not a response"
                                               : "a Binding indication, not a response");

  StunBindingResponse r;
  bool have_xor = false, have_plain = false, have_error_code = false;
  StunAddress xor_addr, plain_addr;
  const size_t end = kStunHeaderSize + length;
  size_t off = kStunHeaderSize;
  while (off < end) {
    const size_t left = end - off;
    if (left < 4)
      return fail(E::malformed_attribute,
                  "truncated attribute header at byte " + std::to_string(off));
    const uint16_t at = be16(p + off);
    const size_t al = be16(p + off + 2);
    const size_t padded = (al + 3) & ~size_t{3};
    if (al > left - 4)
      return fail(E::malformed_attribute, "attribute " + hex16(at) + " at byte " +
                                              std::to_string(off) + " overruns the message");
    if (padded > left - 4)
      return fail(E::malformed_attribute,
                  "attribute padding at byte " + std::to_string(off) + " overruns the message");
    const uint8_t* v = p + off + 4;
    switch (at) {
      case kAttrXorMappedAddress:
        if (!have_xor) {  // §15: only the first occurrence counts
          if (!decode_address(v, al, true, p + 4, xor_addr))
            return fail(E::malformed_attribute, "bad XOR-MAPPED-ADDRESS (length or family)");
          have_xor = true;
        }
        break;
      case kAttrMappedAddress:
        if (!have_plain) {
          if (!decode_address(v, al, false, p + 4, plain_addr))
            return fail(E::malformed_attribute, "bad MAPPED-ADDRESS (length or family)");
          have_plain = true;
        }
        break;
      case kAttrErrorCode:
        if (!have_error_code) {
          if (al < 4) return fail(E::malformed_attribute, "ERROR-CODE shorter than 4 bytes");
          const int klass = v[2] & 0x07, number = v[3];
          if (klass < 3 || klass > 6 || number > 99)
            return fail(E::malformed_attribute, "ERROR-CODE out of range");
          r.error_code = klass * 100 + number;
          r.reason_phrase = printable(v + 4, al - 4);
          have_error_code = true;
        }
        break;
      case kAttrSoftware:
        r.software = printable(v, al);
        break;
      case kAttrFingerprint: {
        if (al != 4) return fail(E::malformed_attribute, "FINGERPRINT is not 4 bytes");
        if (off + 8 != end)
          return fail(E::malformed_attribute, "FINGERPRINT is not the last attribute");
        const uint32_t want = stun_crc32(datagram.first(off)) ^ kFingerprintXor;
        if (be32(v) != want) return fail(E::malformed_attribute, "FINGERPRINT does not match");
        break;
      }
      default:
        break;  // unknown or uninteresting (MESSAGE-INTEGRITY, RESPONSE-ORIGIN, ...)
    }
    off += 4 + padded;
  }

  if (cls == kClassError) {
    r.error = E::error_response;
    r.detail = have_error_code ? "STUN error " + std::to_string(r.error_code) +
                                     (r.reason_phrase.empty() ? "" : " " + r.reason_phrase)
                               : "STUN error response without ERROR-CODE";
    return r;
  }
  // cls == kClassSuccess
  if (have_xor) {
    r.mapped = xor_addr;
    r.from_xor = true;
  } else if (have_plain) {
    r.mapped = plain_addr;
    r.from_xor = false;
  } else {
    r.error = E::missing_mapped_address;
    r.detail = "Binding success response without XOR-MAPPED-ADDRESS or MAPPED-ADDRESS";
  }
  return r;
}

std::string_view stun_decode_error_name(StunDecodeError e) {
  switch (e) {
    case StunDecodeError::none:
      return "none";
    case StunDecodeError::too_short:
      return "too_short";
    case StunDecodeError::not_stun:
      return "not_stun";
    case StunDecodeError::wrong_transaction:
      return "wrong_transaction";
    case StunDecodeError::error_response:
      return "error_response";
    case StunDecodeError::not_a_binding_response:
      return "not_a_binding_response";
    case StunDecodeError::malformed_attribute:
      return "malformed_attribute";
    case StunDecodeError::missing_mapped_address:
      return "missing_mapped_address";
  }
  return "?";
}

std::string_view stun_probe_error_name(StunProbeError e) {
  switch (e) {
    case StunProbeError::none:
      return "none";
    case StunProbeError::timeout:
      return "timeout";
    case StunProbeError::protocol:
      return "protocol";
    case StunProbeError::connect:
      return "connect";
    case StunProbeError::dns:
      return "dns";
  }
  return "?";
}

bool split_stun_host_port(std::string_view address, std::string& host, uint16_t& port) {
  std::string_view h, p;
  if (!address.empty() && address.front() == '[') {
    const size_t close = address.find(']');
    if (close == std::string_view::npos || close + 1 >= address.size() || address[close + 1] != ':')
      return false;
    h = address.substr(1, close - 1);
    p = address.substr(close + 2);
  } else {
    const size_t colon = address.find(':');
    if (colon == std::string_view::npos || address.find(':', colon + 1) != std::string_view::npos)
      return false;  // none, or an unbracketed IPv6 address
    h = address.substr(0, colon);
    p = address.substr(colon + 1);
  }
  if (h.empty() || p.empty() || p.size() > 5) return false;
  unsigned value = 0;
  for (char c : p) {
    if (c < '0' || c > '9') return false;
    value = value * 10 + static_cast<unsigned>(c - '0');
  }
  if (value == 0 || value > 65535) return false;
  host.assign(h);
  port = static_cast<uint16_t>(value);
  return true;
}

// ---- stun_probe --------------------------------------------------------------------------------

namespace {

using SteadyClock = std::chrono::steady_clock;

struct AddrInfoDeleter {
  void operator()(addrinfo* ai) const { freeaddrinfo(ai); }
};
using AddrInfoPtr = std::unique_ptr<addrinfo, AddrInfoDeleter>;

class Fd {
 public:
  explicit Fd(int fd = -1) : fd_(fd) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  Fd(Fd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  Fd& operator=(Fd&& o) noexcept {
    if (this != &o) {
      reset();
      fd_ = std::exchange(o.fd_, -1);
    }
    return *this;
  }
  ~Fd() { reset(); }
  void reset() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }
  int get() const { return fd_; }

 private:
  int fd_;
};

std::string sockaddr_text(const sockaddr* sa) {
  char buf[INET6_ADDRSTRLEN] = {};
  if (sa->sa_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(sa);
    inet_ntop(AF_INET, &in->sin_addr, buf, sizeof buf);
    return host_port(buf, false, ntohs(in->sin_port));
  }
  const auto* in6 = reinterpret_cast<const sockaddr_in6*>(sa);
  inet_ntop(AF_INET6, &in6->sin6_addr, buf, sizeof buf);
  return host_port(buf, true, ntohs(in6->sin6_port));
}

StunProbeResult probe_fail(StunProbeResult r, StunProbeError e, std::string message) {
  r.error = e;
  r.message = std::move(message);
  return r;
}

StunTransactionId random_tid() {
  std::random_device rd;
  StunTransactionId tid{};
  for (size_t i = 0; i < tid.size(); i += 4) {
    const uint32_t x = rd();
    for (size_t k = 0; k < 4; ++k) tid[i + k] = static_cast<uint8_t>(x >> (8 * k));
  }
  return tid;
}

int poll_timeout_ms(SteadyClock::time_point until) {
  const auto left = until - SteadyClock::now();
  if (left <= SteadyClock::duration::zero()) return 0;
  // Round up so we never wake a moment early and spin.
  const auto ms = std::chrono::ceil<std::chrono::milliseconds>(left).count();
  return static_cast<int>(std::min<long long>(ms, 60'000));
}

}  // namespace

namespace {

// One Binding transaction with the peer `ai`; the result's error is set on failure.
StunProbeResult exchange(const addrinfo* ai, SteadyClock::time_point deadline,
                         const StunTransactionId& tid, const std::vector<uint8_t>& request,
                         const StunProbeOptions& options) {
  StunProbeResult r;
  r.server_address = sockaddr_text(ai->ai_addr);
  // A connected socket only receives from that peer and reports ICMP port unreachable as
  // ECONNREFUSED on the next send/recv.
  Fd fd(::socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, ai->ai_protocol));
  if (fd.get() < 0 || ::connect(fd.get(), ai->ai_addr, ai->ai_addrlen) != 0) {
    // The message first: probe_fail takes r by value, and the order in which arguments are
    // evaluated is unspecified, so r.server_address could be read after r was moved from.
    const int err = errno;
    std::string what =
        "cannot open a UDP socket to " + r.server_address + ": " + std::strerror(err);
    return probe_fail(std::move(r), StunProbeError::connect, std::move(what));
  }

  const auto connect_error = [&r](int err) {
    std::string what =
        r.server_address + ": " +
        (err == ECONNREFUSED ? std::string("connection refused (ICMP port unreachable)")
                             : std::string(std::strerror(err)));
    return probe_fail(std::move(r), StunProbeError::connect, std::move(what));
  };

  const int max_tx = std::max(1, options.max_transmissions);
  const auto initial_rto = std::max(options.initial_rto, std::chrono::milliseconds{1});
  auto rto = initial_rto;
  SteadyClock::time_point first_send{};
  std::array<uint8_t, 2048> buf{};
  int ignored = 0;

  while (SteadyClock::now() < deadline) {
    const auto now = SteadyClock::now();
    const ssize_t sent = ::send(fd.get(), request.data(), request.size(), MSG_NOSIGNAL);
    // EAGAIN/ENOBUFS: the datagram is lost like any other; the retransmission covers it.
    if (sent < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != ENOBUFS && errno != EINTR)
      return connect_error(errno);
    if (r.transmissions == 0) first_send = now;
    ++r.transmissions;
    const bool last = r.transmissions >= max_tx;
    // RFC 5389 §7.2.1: after the last request wait Rm (16) times the initial RTO.
    const auto wait_until = std::min(deadline, now + (last ? initial_rto * 16 : rto));
    rto *= 2;

    while (true) {
      pollfd pfd{fd.get(), POLLIN, 0};
      const int pr = ::poll(&pfd, 1, poll_timeout_ms(wait_until));
      if (pr < 0 && errno == EINTR) continue;
      if (pr < 0) return connect_error(errno);
      if (pr == 0) {
        if (SteadyClock::now() >= wait_until) break;
        continue;
      }
      const ssize_t n = ::recv(fd.get(), buf.data(), buf.size(), MSG_DONTWAIT | MSG_TRUNC);
      const auto received = SteadyClock::now();
      if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) continue;
        return connect_error(errno);
      }
      // MSG_TRUNC reports the real size; a cut datagram then fails the length check.
      const size_t got = std::min(static_cast<size_t>(n), buf.size());
      StunBindingResponse resp =
          decode_binding_response(std::span<const uint8_t>(buf.data(), got), tid);
      if (resp.error == StunDecodeError::wrong_transaction) {
        ++ignored;  // a late answer to an earlier request, not ours: keep waiting
        continue;
      }
      r.rtt = std::chrono::duration_cast<std::chrono::microseconds>(received - first_send);
      r.response = std::move(resp);
      if (!r.response.ok()) {
        std::string what = r.server_address + " answered with " +
                           std::string(stun_decode_error_name(r.response.error)) + ": " +
                           r.response.detail;
        return probe_fail(std::move(r), StunProbeError::protocol, std::move(what));
      }
      r.mapped = r.response.mapped;
      return r;
    }
    if (last) break;
  }
  std::string msg = "no STUN answer from " + r.server_address + " after " +
                    std::to_string(r.transmissions) + " request(s)";
  if (ignored > 0)
    msg += " (" + std::to_string(ignored) + " answer(s) with another transaction id ignored)";
  return probe_fail(std::move(r), StunProbeError::timeout, std::move(msg));
}

}  // namespace

StunProbeResult stun_probe(const std::string& host_in, uint16_t port,
                           SteadyClock::time_point deadline, const StunProbeOptions& options) {
  std::string host = host_in;
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  if (host.empty()) return probe_fail({}, StunProbeError::dns, "empty STUN host");
  if (port == 0) return probe_fail({}, StunProbeError::connect, "STUN port 0");

  // Resolve: numeric first (never touches DNS), then a name lookup. getaddrinfo cannot be
  // bounded by the deadline; the engine runs this on a worker and enforces the deadline itself.
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_DGRAM;
  hints.ai_protocol = IPPROTO_UDP;
  hints.ai_flags = AI_NUMERICSERV | AI_NUMERICHOST;
  const std::string service = std::to_string(port);
  addrinfo* raw = nullptr;
  int gai = getaddrinfo(host.c_str(), service.c_str(), &hints, &raw);
  if (gai == EAI_NONAME) {
    hints.ai_flags = AI_NUMERICSERV;
    gai = getaddrinfo(host.c_str(), service.c_str(), &hints, &raw);
  }
  AddrInfoPtr list(raw);
  if (gai != 0 || !list)
    return probe_fail({}, StunProbeError::dns, "cannot resolve " + host + ": " + gai_strerror(gai));

  const StunTransactionId tid = options.transaction_id ? *options.transaction_id : random_tid();
  const std::vector<uint8_t> request = encode_binding_request(tid, options.request);

  // Try the addresses in order; move on only when one refuses outright (e.g. "localhost" giving
  // ::1 first while the server listens on 127.0.0.1). A silent address uses up the deadline.
  StunProbeResult r;
  for (const addrinfo* ai = list.get(); ai; ai = ai->ai_next) {
    const int before = r.transmissions;
    r = exchange(ai, deadline, tid, request, options);
    r.transmissions += before;
    if (r.error != StunProbeError::connect || SteadyClock::now() >= deadline) break;
  }
  return r;
}

}  // namespace pes::jitsi
