// STUN Binding codec (probes/jitsi/stun.h): encoding, decoding, every typed error, and
// fuzz-style robustness of the decoder.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "probes/jitsi/stun.h"

namespace pes::jitsi {
namespace {

using Bytes = std::vector<uint8_t>;

const StunTransactionId kTid = {0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34,
                                0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae};
const StunTransactionId kOtherTid = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};

void put16(Bytes& b, uint16_t v) {
  b.push_back(static_cast<uint8_t>(v >> 8));
  b.push_back(static_cast<uint8_t>(v));
}
void put32(Bytes& b, uint32_t v) {
  put16(b, static_cast<uint16_t>(v >> 16));
  put16(b, static_cast<uint16_t>(v));
}
uint16_t get16(const Bytes& b, size_t at) {
  return static_cast<uint16_t>((b[at] << 8) | b[at + 1]);
}
uint32_t get32(const Bytes& b, size_t at) {
  return (uint32_t{b[at]} << 24) | (uint32_t{b[at + 1]} << 16) | (uint32_t{b[at + 2]} << 8) |
         b[at + 3];
}

// Builds a STUN message attribute by attribute, padding each and fixing the length at the end.
class Msg {
 public:
  explicit Msg(uint16_t type, const StunTransactionId& tid = kTid) {
    put16(b_, type);
    put16(b_, 0);
    put32(b_, kStunMagicCookie);
    b_.insert(b_.end(), tid.begin(), tid.end());
  }
  Msg& attr(uint16_t type, const Bytes& value) {
    put16(b_, type);
    put16(b_, static_cast<uint16_t>(value.size()));
    b_.insert(b_.end(), value.begin(), value.end());
    while (b_.size() % 4) b_.push_back(0);
    return *this;
  }
  Msg& attr(uint16_t type, const std::string& value) {
    return attr(type, Bytes(value.begin(), value.end()));
  }
  // XOR-MAPPED-ADDRESS for an IPv4 address given as 4 bytes.
  Msg& xor_v4(std::array<uint8_t, 4> ip, uint16_t port) {
    Bytes v = {0, 0x01};
    put16(v, port ^ 0x2112);
    const uint8_t cookie[4] = {0x21, 0x12, 0xA4, 0x42};
    for (int i = 0; i < 4; ++i) v.push_back(ip[i] ^ cookie[i]);
    return attr(0x0020, v);
  }
  Msg& mapped_v4(std::array<uint8_t, 4> ip, uint16_t port) {
    Bytes v = {0, 0x01};
    put16(v, port);
    v.insert(v.end(), ip.begin(), ip.end());
    return attr(0x0001, v);
  }
  Msg& error_code(int code, const std::string& reason) {
    Bytes v = {0, 0, static_cast<uint8_t>(code / 100), static_cast<uint8_t>(code % 100)};
    v.insert(v.end(), reason.begin(), reason.end());
    return attr(0x0009, v);
  }
  Msg& fingerprint() {
    fix_length(8);
    const uint32_t crc = stun_crc32(b_) ^ 0x5354554E;
    put16(b_, 0x8028);
    put16(b_, 4);
    put32(b_, crc);
    return *this;
  }
  Bytes bytes() {
    fix_length(0);
    return b_;
  }

 private:
  void fix_length(size_t extra) {
    const size_t len = b_.size() - 20 + extra;
    b_[2] = static_cast<uint8_t>(len >> 8);
    b_[3] = static_cast<uint8_t>(len);
  }
  Bytes b_;
};

StunBindingResponse decode(const Bytes& b, const StunTransactionId& tid = kTid) {
  return decode_binding_response(std::span<const uint8_t>(b.data(), b.size()), tid);
}

// RFC 5769 §2.2 "Sample IPv4 Response": SOFTWARE "test vector", XOR-MAPPED-ADDRESS 192.0.2.1:32853,
// MESSAGE-INTEGRITY and FINGERPRINT, transaction id b7e7a701 bc34d686 fa87dfae.
const Bytes kRfc5769Ipv4Response = {
    0x01, 0x01, 0x00, 0x3c, 0x21, 0x12, 0xa4, 0x42, 0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86,
    0xfa, 0x87, 0xdf, 0xae, 0x80, 0x22, 0x00, 0x0b, 0x74, 0x65, 0x73, 0x74, 0x20, 0x76, 0x65, 0x63,
    0x74, 0x6f, 0x72, 0x20, 0x00, 0x20, 0x00, 0x08, 0x00, 0x01, 0xa1, 0x47, 0xe1, 0x12, 0xa6, 0x43,
    0x00, 0x08, 0x00, 0x14, 0x2b, 0x91, 0xf5, 0x99, 0xfd, 0x9e, 0x90, 0xc3, 0x8c, 0x74, 0x89, 0xf9,
    0x2a, 0xf9, 0xba, 0x53, 0xf0, 0x6b, 0xe7, 0xd7, 0x80, 0x28, 0x00, 0x04, 0xc0, 0x7d, 0x4c, 0x96};

// ---- encoding ----------------------------------------------------------------------------------

TEST(StunCrc32, MatchesTheStandardCheckValue) {
  const std::string s = "123456789";
  EXPECT_EQ(
      stun_crc32(std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(s.data()), s.size())),
      0xCBF43926u);
  EXPECT_EQ(stun_crc32({}), 0u);
}

TEST(StunEncode, BareRequestIsJustTheHeader) {
  const Bytes req = encode_binding_request(kTid, {.software = "", .fingerprint = false});
  ASSERT_EQ(req.size(), 20u);
  EXPECT_EQ(get16(req, 0), 0x0001);  // Binding request
  EXPECT_EQ(get16(req, 2), 0);       // no attributes
  EXPECT_EQ(get32(req, 4), kStunMagicCookie);
  EXPECT_TRUE(std::equal(kTid.begin(), kTid.end(), req.begin() + 8));
}

TEST(StunEncode, SoftwareIsPaddedAndFingerprintIsLastAndCorrect) {
  const Bytes req = encode_binding_request(kTid, {.software = "pes-agent", .fingerprint = true});
  // 20 header + 4 + 9 (+3 pad) SOFTWARE + 8 FINGERPRINT
  ASSERT_EQ(req.size(), 20u + 16u + 8u);
  EXPECT_EQ(get16(req, 2), req.size() - 20);
  EXPECT_EQ(get16(req, 20), 0x8022);
  EXPECT_EQ(get16(req, 22), 9);
  EXPECT_EQ(std::string(req.begin() + 24, req.begin() + 33), "pes-agent");
  EXPECT_EQ(req[33], 0);
  EXPECT_EQ(req[34], 0);
  EXPECT_EQ(req[35], 0);
  EXPECT_EQ(get16(req, 36), 0x8028);
  EXPECT_EQ(get16(req, 38), 4);
  const uint32_t want = stun_crc32(std::span<const uint8_t>(req.data(), 36)) ^ 0x5354554E;
  EXPECT_EQ(get32(req, 40), want);
}

TEST(StunEncode, FingerprintAgreesWithRfc5769SampleRequest) {
  // RFC 5769 §2.1: the sample request's bytes up to its FINGERPRINT, whose value is e57a3bcf.
  const Bytes prefix = {
      0x00, 0x01, 0x00, 0x58, 0x21, 0x12, 0xa4, 0x42, 0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6,
      0x86, 0xfa, 0x87, 0xdf, 0xae, 0x80, 0x22, 0x00, 0x10, 0x53, 0x54, 0x55, 0x4e, 0x20, 0x74,
      0x65, 0x73, 0x74, 0x20, 0x63, 0x6c, 0x69, 0x65, 0x6e, 0x74, 0x00, 0x24, 0x00, 0x04, 0x6e,
      0x00, 0x01, 0xff, 0x80, 0x29, 0x00, 0x08, 0x93, 0x2f, 0xf9, 0xb1, 0x51, 0x26, 0x3b, 0x36,
      0x00, 0x06, 0x00, 0x09, 0x65, 0x76, 0x74, 0x6a, 0x3a, 0x68, 0x36, 0x76, 0x59, 0x20, 0x20,
      0x20, 0x00, 0x08, 0x00, 0x14, 0x9a, 0xea, 0xa7, 0x0c, 0xbf, 0xd8, 0xcb, 0x56, 0x78, 0x1e,
      0xf2, 0xb5, 0xb2, 0xd3, 0xf2, 0x49, 0xc1, 0xb5, 0x71, 0xa2};
  EXPECT_EQ(stun_crc32(prefix) ^ 0x5354554E, 0xe57a3bcfu);
}

TEST(StunEncode, OverlongSoftwareIsCappedAt763Bytes) {
  const Bytes req =
      encode_binding_request(kTid, {.software = std::string(2000, 'x'), .fingerprint = false});
  EXPECT_EQ(get16(req, 22), 763);
  EXPECT_EQ(req.size() % 4, 0u);
  EXPECT_EQ(get16(req, 2), req.size() - 20);
}

// ---- decoding: success ----------------------------------------------------------------------

TEST(StunDecode, Rfc5769SampleIpv4Response) {
  const auto r = decode(kRfc5769Ipv4Response);
  ASSERT_TRUE(r.ok()) << r.detail;
  EXPECT_TRUE(r.from_xor);
  EXPECT_EQ(r.mapped.family, StunAddress::Family::ipv4);
  EXPECT_EQ(r.mapped.to_string(), "192.0.2.1:32853");
  EXPECT_EQ(r.software, "test vector");
}

TEST(StunDecode, Rfc5769ResponseWithAFlippedBitFailsTheFingerprint) {
  Bytes b = kRfc5769Ipv4Response;
  b[26] ^= 0x01;  // inside SOFTWARE: only FINGERPRINT can notice
  const auto r = decode(b);
  EXPECT_EQ(r.error, StunDecodeError::malformed_attribute);
  EXPECT_NE(r.detail.find("FINGERPRINT"), std::string::npos) << r.detail;
}

TEST(StunDecode, RoundTripAgainstHandBuiltIpv4Response) {
  const Bytes b =
      Msg(0x0101).attr(0x8022, "coturn").xor_v4({203, 0, 113, 7}, 54321).fingerprint().bytes();
  const auto r = decode(b);
  ASSERT_TRUE(r.ok()) << r.detail;
  EXPECT_EQ(r.mapped.ip(), "203.0.113.7");
  EXPECT_EQ(r.mapped.port, 54321);
  EXPECT_EQ(r.software, "coturn");
}

TEST(StunDecode, XorMappedIpv6UsesCookieAndTransactionId) {
  // RFC 5769 §2.3 values: 2001:db8:1234:5678:11:2233:4455:6677 port 32853 under tid kTid.
  const Bytes v = {0x00, 0x02, 0xa1, 0x47, 0x01, 0x13, 0xa9, 0xfa, 0xa5, 0xd3,
                   0xf1, 0x79, 0xbc, 0x25, 0xf4, 0xb5, 0xbe, 0xd2, 0xb9, 0xd9};
  const auto r = decode(Msg(0x0101).attr(0x0020, v).bytes());
  ASSERT_TRUE(r.ok()) << r.detail;
  EXPECT_EQ(r.mapped.family, StunAddress::Family::ipv6);
  EXPECT_EQ(r.mapped.ip(), "2001:db8:1234:5678:11:2233:4455:6677");
  EXPECT_EQ(r.mapped.to_string(), "[2001:db8:1234:5678:11:2233:4455:6677]:32853");
}

TEST(StunDecode, MappedAddressIsAFallbackForRfc3489Servers) {
  const auto r = decode(Msg(0x0101).mapped_v4({198, 51, 100, 9}, 3478).bytes());
  ASSERT_TRUE(r.ok()) << r.detail;
  EXPECT_FALSE(r.from_xor);
  EXPECT_EQ(r.mapped.to_string(), "198.51.100.9:3478");
}

TEST(StunDecode, XorMappedAddressWinsOverMappedAddress) {
  const auto r =
      decode(Msg(0x0101).mapped_v4({10, 0, 0, 1}, 1).xor_v4({192, 0, 2, 44}, 4444).bytes());
  ASSERT_TRUE(r.ok()) << r.detail;
  EXPECT_TRUE(r.from_xor);
  EXPECT_EQ(r.mapped.to_string(), "192.0.2.44:4444");
}

TEST(StunDecode, UnknownAttributesAreSkipped) {
  const auto r = decode(Msg(0x0101)
                            .attr(0x802b, Bytes{0, 1, 0, 1, 1, 2, 3, 4})
                            .attr(0x7777, "x")
                            .xor_v4({1, 2, 3, 4}, 5)
                            .bytes());
  ASSERT_TRUE(r.ok()) << r.detail;
  EXPECT_EQ(r.mapped.to_string(), "1.2.3.4:5");
}

// ---- decoding: every error ----------------------------------------------------------------

TEST(StunDecode, TooShort) {
  EXPECT_EQ(decode(Bytes{}).error, StunDecodeError::too_short);
  EXPECT_EQ(decode(Bytes(19, 0)).error, StunDecodeError::too_short);
  // The header announces more attribute bytes than the datagram holds.
  Bytes b = Msg(0x0101).xor_v4({1, 2, 3, 4}, 5).bytes();
  b.erase(b.end() - 4, b.end());
  EXPECT_EQ(decode(b).error, StunDecodeError::too_short);
}

TEST(StunDecode, NotStun) {
  Bytes b = Msg(0x0101).xor_v4({1, 2, 3, 4}, 5).bytes();
  Bytes top_bits = b;
  top_bits[0] |= 0x80;
  EXPECT_EQ(decode(top_bits).error, StunDecodeError::not_stun);
  Bytes cookie = b;
  cookie[5] ^= 0xFF;
  EXPECT_EQ(decode(cookie).error, StunDecodeError::not_stun);
  Bytes trailing = b;
  trailing.push_back(0);
  EXPECT_EQ(decode(trailing).error, StunDecodeError::not_stun);
  // An HTTP answer on the STUN port.
  const std::string http = "HTTP/1.1 400 Bad Request\r\n\r\n";
  EXPECT_EQ(decode(Bytes(http.begin(), http.end())).error, StunDecodeError::not_stun);
}

TEST(StunDecode, WrongTransaction) {
  const auto r = decode(Msg(0x0101, kOtherTid).xor_v4({1, 2, 3, 4}, 5).bytes());
  EXPECT_EQ(r.error, StunDecodeError::wrong_transaction);
  EXPECT_FALSE(r.ok());
}

TEST(StunDecode, ErrorResponseCarriesCodeAndReason) {
  const auto r =
      decode(Msg(0x0111).error_code(420, "Unknown Attribute").attr(0x8022, "srv").bytes());
  EXPECT_EQ(r.error, StunDecodeError::error_response);
  EXPECT_EQ(r.error_code, 420);
  EXPECT_EQ(r.reason_phrase, "Unknown Attribute");
  EXPECT_EQ(r.software, "srv");
  EXPECT_NE(r.detail.find("420"), std::string::npos);
}

TEST(StunDecode, ErrorResponseWithoutErrorCode) {
  const auto r = decode(Msg(0x0111).bytes());
  EXPECT_EQ(r.error, StunDecodeError::error_response);
  EXPECT_EQ(r.error_code, 0);
}

TEST(StunDecode, ErrorReasonIsSanitised) {
  const auto r = decode(Msg(0x0111).error_code(500, std::string("bad\x01\n\xff", 6)).bytes());
  EXPECT_EQ(r.error, StunDecodeError::error_response);
  EXPECT_EQ(r.error_code, 500);
  EXPECT_EQ(r.reason_phrase, "bad???");
}

TEST(StunDecode, NotABindingResponse) {
  // Allocate (TURN, method 0x003) success; a Binding request; a Binding indication.
  EXPECT_EQ(decode(Msg(0x0103).xor_v4({1, 2, 3, 4}, 5).bytes()).error,
            StunDecodeError::not_a_binding_response);
  EXPECT_EQ(decode(Msg(0x0001).bytes()).error, StunDecodeError::not_a_binding_response);
  EXPECT_EQ(decode(Msg(0x0011).bytes()).error, StunDecodeError::not_a_binding_response);
  // Our own request looped back is not an answer either.
  EXPECT_EQ(decode(encode_binding_request(kTid)).error, StunDecodeError::not_a_binding_response);
}

TEST(StunDecode, MalformedAttributes) {
  const auto malformed = [](Bytes b) {
    return decode(b).error == StunDecodeError::malformed_attribute;
  };
  // Attribute value longer than the message.
  {
    Bytes b = Msg(0x0101).xor_v4({1, 2, 3, 4}, 5).bytes();
    b[22] = 0;
    b[23] = 12;  // value claims 12 bytes, 8 are there
    EXPECT_TRUE(malformed(b));
  }
  // Value fits but its padding does not: 5-byte value, message ends after 8 of its 12 bytes... made
  // by a message length of 28 (not a multiple of 4 is impossible here), so shrink the value to 9.
  {
    Bytes b = Msg(0x0101).attr(0x8022, std::string(5, 'a')).bytes();  // 4 + 5 + 3 pad = 12
    b.erase(b.end() - 3, b.end());                                    // drop the padding
    b[3] = static_cast<uint8_t>(b.size() - 20);                       // length 9
    const auto r = decode(b);
    EXPECT_EQ(r.error, StunDecodeError::malformed_attribute);
    EXPECT_NE(r.detail.find("padding"), std::string::npos) << r.detail;
  }
  // A dangling partial attribute header (2 bytes left).
  {
    Bytes b = Msg(0x0101).xor_v4({1, 2, 3, 4}, 5).bytes();
    b.push_back(0x80);
    b.push_back(0x22);
    b[3] = static_cast<uint8_t>(b.size() - 20);
    EXPECT_TRUE(malformed(b));
  }
  // XOR-MAPPED-ADDRESS: wrong length for the family, unknown family, IPv6 family with 4 bytes.
  EXPECT_TRUE(malformed(Msg(0x0101).attr(0x0020, Bytes{0, 1, 0, 5, 1, 2, 3}).bytes()));
  EXPECT_TRUE(malformed(Msg(0x0101).attr(0x0020, Bytes{0, 3, 0, 5, 1, 2, 3, 4}).bytes()));
  EXPECT_TRUE(malformed(Msg(0x0101).attr(0x0020, Bytes{0, 2, 0, 5, 1, 2, 3, 4}).bytes()));
  EXPECT_TRUE(malformed(Msg(0x0101).attr(0x0001, Bytes{0, 1}).bytes()));
  // ERROR-CODE too short or out of range.
  EXPECT_TRUE(malformed(Msg(0x0111).attr(0x0009, Bytes{0, 0, 4}).bytes()));
  EXPECT_TRUE(malformed(Msg(0x0111).attr(0x0009, Bytes{0, 0, 7, 0}).bytes()));
  EXPECT_TRUE(malformed(Msg(0x0111).attr(0x0009, Bytes{0, 0, 4, 100}).bytes()));
  // FINGERPRINT: wrong size, not last.
  EXPECT_TRUE(malformed(Msg(0x0101).xor_v4({1, 2, 3, 4}, 5).attr(0x8028, Bytes{1, 2}).bytes()));
  EXPECT_TRUE(malformed(Msg(0x0101).fingerprint().xor_v4({1, 2, 3, 4}, 5).bytes()));
}

TEST(StunDecode, MissingMappedAddress) {
  const auto r = decode(Msg(0x0101).attr(0x8022, "coturn").bytes());
  EXPECT_EQ(r.error, StunDecodeError::missing_mapped_address);
  EXPECT_FALSE(r.detail.empty());
}

TEST(StunDecode, ErrorNamesAreStable) {
  EXPECT_EQ(stun_decode_error_name(StunDecodeError::too_short), "too_short");
  EXPECT_EQ(stun_decode_error_name(StunDecodeError::missing_mapped_address),
            "missing_mapped_address");
  EXPECT_EQ(stun_probe_error_name(StunProbeError::connect), "connect");
}

// ---- fuzz-style robustness ---------------------------------------------------------------------
// Each case is decoded from an exactly-sized heap copy, so AddressSanitizer (the `debug` preset)
// flags any read past the end. Whatever the input, a success must carry our transaction id.

bool tid_matches(const Bytes& b, const StunTransactionId& tid) {
  return b.size() >= 20 && std::equal(tid.begin(), tid.end(), b.begin() + 8);
}

void check_no_false_success(const Bytes& b, const StunTransactionId& tid) {
  const auto copy = std::make_unique<uint8_t[]>(std::max<size_t>(b.size(), 1));
  std::copy(b.begin(), b.end(), copy.get());
  const auto r = decode_binding_response(std::span<const uint8_t>(copy.get(), b.size()), tid);
  if (r.ok()) {
    ASSERT_TRUE(tid_matches(b, tid)) << "success with a foreign transaction id";
    ASSERT_GE(b.size(), 20u + 8u);  // at least one address attribute
  } else {
    ASSERT_FALSE(r.detail.empty()) << stun_decode_error_name(r.error);
  }
}

TEST(StunFuzz, RandomBytesNeverCrashOrSucceedWrongly) {
  std::mt19937 rng(20240519);
  std::uniform_int_distribution<int> len_dist(0, 200), byte_dist(0, 255);
  int successes = 0;
  for (int i = 0; i < 20000; ++i) {
    Bytes b(static_cast<size_t>(len_dist(rng)));
    for (auto& x : b) x = static_cast<uint8_t>(byte_dist(rng));
    // Half the time, make it look like STUN so the attribute walker gets exercised.
    if (i % 2 == 0 && b.size() >= 20) {
      b[0] &= 0x3F;
      if (i % 4 == 0) {  // Binding success
        b[0] = 0x01;
        b[1] = 0x01;
      }
      const uint16_t len = static_cast<uint16_t>(b.size() - 20);
      b[2] = static_cast<uint8_t>(len >> 8);
      b[3] = static_cast<uint8_t>(len);
      const uint8_t cookie[4] = {0x21, 0x12, 0xA4, 0x42};
      std::copy(cookie, cookie + 4, b.begin() + 4);
      if (i % 8 == 0) std::copy(kTid.begin(), kTid.end(), b.begin() + 8);
    }
    check_no_false_success(b, kTid);
    if (HasFatalFailure()) return;
    successes += decode(b).ok();
  }
  SUCCEED() << successes << " random inputs decoded as valid";
}

TEST(StunFuzz, TruncationsAndBitFlipsOfValidResponses) {
  const std::vector<Bytes> seeds = {
      kRfc5769Ipv4Response,
      Msg(0x0101)
          .attr(0x8022, "coturn-4.6.1")
          .xor_v4({203, 0, 113, 7}, 54321)
          .fingerprint()
          .bytes(),
      Msg(0x0101)
          .mapped_v4({10, 1, 2, 3}, 1000)
          .attr(0x802c, Bytes{0, 1, 0, 1, 1, 2, 3, 4})
          .bytes(),
      Msg(0x0111).error_code(401, "Unauthorized").bytes(),
  };
  std::mt19937 rng(7);
  for (const Bytes& seed : seeds) {
    // Every truncation.
    for (size_t n = 0; n < seed.size(); ++n) {
      check_no_false_success(Bytes(seed.begin(), seed.begin() + static_cast<long>(n)), kTid);
      if (HasFatalFailure()) return;
    }
    // Random bit flips (1-4 bits), also decoded against another transaction id, where nothing
    // may ever succeed unless the flips rewrote the id into it (impossible with these ids).
    for (int i = 0; i < 5000; ++i) {
      Bytes b = seed;
      const int flips = 1 + static_cast<int>(rng() % 4);
      for (int k = 0; k < flips; ++k)
        b[rng() % b.size()] ^= static_cast<uint8_t>(1u << (rng() % 8));
      check_no_false_success(b, kTid);
      if (HasFatalFailure()) return;
      EXPECT_FALSE(decode(b, kOtherTid).ok());
    }
  }
}

TEST(StunFuzz, FlipsInsideTheTransactionIdAreAlwaysRejected) {
  const Bytes seed = Msg(0x0101).xor_v4({1, 2, 3, 4}, 5).bytes();
  for (size_t byte = 8; byte < 20; ++byte)
    for (int bit = 0; bit < 8; ++bit) {
      Bytes b = seed;
      b[byte] ^= static_cast<uint8_t>(1u << bit);
      EXPECT_EQ(decode(b).error, StunDecodeError::wrong_transaction) << byte << "/" << bit;
    }
}

// ---- host:port ----------------------------------------------------------------------------

TEST(StunHostPort, Splits) {
  std::string host;
  uint16_t port = 0;
  ASSERT_TRUE(split_stun_host_port("127.0.0.1:3478", host, port));
  EXPECT_EQ(host, "127.0.0.1");
  EXPECT_EQ(port, 3478);
  ASSERT_TRUE(split_stun_host_port("[::1]:19302", host, port));
  EXPECT_EQ(host, "::1");
  EXPECT_EQ(port, 19302);
  ASSERT_TRUE(split_stun_host_port("turn.example.org:443", host, port));
  EXPECT_EQ(host, "turn.example.org");
  for (const char* bad : {"", "host", "host:", ":3478", "::1:3478", "[::1]3478", "[::1]:", "h:0",
                          "h:65536", "h:12a", "h:-1", "[::1:3478", "h:1234567"})
    EXPECT_FALSE(split_stun_host_port(bad, host, port)) << bad;
}

}  // namespace
}  // namespace pes::jitsi
