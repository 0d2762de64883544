// libFuzzer target: the STUN Binding response decoder of the jitsi probe (datagrams come from
// whoever answers on the UDP port). Each input is decoded twice: against the transaction id it
// carries itself (bytes 8..19, so the fuzzer gets past the id check and into the attributes) and
// against a fixed id (RFC 5769's). A successful decode must describe a real address; an error
// must have a name and words; decoding never reads outside the datagram (ASan watches).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <span>

#include "probes/jitsi/stun.h"

namespace {

using pes::jitsi::StunTransactionId;

constexpr StunTransactionId kRfc5769Tid = {0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34,
                                           0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae};

void check(std::span<const uint8_t> datagram, const StunTransactionId& tid) {
  const auto r = pes::jitsi::decode_binding_response(datagram, tid);
  if (pes::jitsi::stun_decode_error_name(r.error).empty()) __builtin_trap();
  if (r.ok()) {
    if (!r.detail.empty() || datagram.size() < pes::jitsi::kStunHeaderSize) __builtin_trap();
    if (r.mapped.family != pes::jitsi::StunAddress::Family::ipv4 &&
        r.mapped.family != pes::jitsi::StunAddress::Family::ipv6)
      __builtin_trap();
    if (r.mapped.ip().empty() || r.mapped.to_string().empty()) __builtin_trap();
  } else if (r.detail.empty()) {
    __builtin_trap();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // libFuzzer passes an exact-size heap copy: a read one byte past the datagram is caught.
  const std::span<const uint8_t> datagram(data, size);
  // Self-test of the build and of scripts/fuzz.sh (tests/deploy/test_fuzz_short.sh): with
  // PES_FUZZ_SELFTEST_OVERREAD set, read one byte past the datagram, the bug this target hunts.
  static const bool overread = std::getenv("PES_FUZZ_SELFTEST_OVERREAD") != nullptr;
  if (overread && size > 0) {
    const volatile uint8_t past = data[size];
    (void)past;
  }

  StunTransactionId own{};
  if (size >= pes::jitsi::kStunHeaderSize) std::memcpy(own.data(), data + 8, own.size());
  check(datagram, own);
  check(datagram, kRfc5769Tid);
  (void)pes::jitsi::stun_crc32(datagram);
  return 0;
}
