// stun_probe (probes/jitsi/stun.h) over real loopback UDP sockets: against coturn
// (tests/fixtures/coturn.sh), and against a STUN responder that runs in this test process and
// can be told to drop, mis-address or garble its answers.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "probes/jitsi/stun.h"
#include "tests/support/fixture.h"

namespace pes::jitsi {
namespace {

using namespace std::chrono_literals;
using Bytes = std::vector<uint8_t>;
using SteadyClock = std::chrono::steady_clock;

void put16(Bytes& b, uint16_t v) {
  b.push_back(static_cast<uint8_t>(v >> 8));
  b.push_back(static_cast<uint8_t>(v));
}

// A STUN Binding response for `request` (whose transaction id it copies, optionally altered),
// telling the client its source address `peer`.
Bytes binding_success(const Bytes& request, const sockaddr_storage& peer,
                      bool foreign_tid = false) {
  Bytes b;
  b.reserve(64);
  put16(b, 0x0101);
  put16(b, 0);
  for (int i = 4; i < 20; ++i) b.push_back(request.at(static_cast<size_t>(i)));  // cookie + tid
  if (foreign_tid) b[19] ^= 0xFF;
  Bytes key(b.begin() + 4, b.begin() + 20);  // cookie + transaction id
  Bytes v;
  if (peer.ss_family == AF_INET) {
    const auto& in = reinterpret_cast<const sockaddr_in&>(peer);
    v = {0, 0x01};
    put16(v, static_cast<uint16_t>(ntohs(in.sin_port) ^ 0x2112));
    const auto* a = reinterpret_cast<const uint8_t*>(&in.sin_addr);
    for (int i = 0; i < 4; ++i) v.push_back(a[i] ^ key[i]);
  } else {
    const auto& in6 = reinterpret_cast<const sockaddr_in6&>(peer);
    v = {0, 0x02};
    put16(v, static_cast<uint16_t>(ntohs(in6.sin6_port) ^ 0x2112));
    const auto* a = reinterpret_cast<const uint8_t*>(&in6.sin6_addr);
    for (int i = 0; i < 16; ++i) v.push_back(a[i] ^ key[i]);
  }
  put16(b, 0x0020);
  put16(b, static_cast<uint16_t>(v.size()));
  b.insert(b.end(), v.begin(), v.end());
  b[3] = static_cast<uint8_t>(b.size() - 20);
  return b;
}

Bytes binding_error(const Bytes& request, int code, const std::string& reason) {
  Bytes b;
  b.reserve(64);
  put16(b, 0x0111);
  put16(b, 0);
  for (int i = 4; i < 20; ++i) b.push_back(request.at(static_cast<size_t>(i)));  // cookie + tid
  put16(b, 0x0009);
  put16(b, static_cast<uint16_t>(4 + reason.size()));
  b.insert(b.end(), {0, 0, static_cast<uint8_t>(code / 100), static_cast<uint8_t>(code % 100)});
  b.insert(b.end(), reason.begin(), reason.end());
  while (b.size() % 4) b.push_back(0);
  b[3] = static_cast<uint8_t>(b.size() - 20);
  return b;
}

std::string peer_text(const sockaddr_storage& ss) {
  char buf[INET6_ADDRSTRLEN] = {};
  if (ss.ss_family == AF_INET) {
    const auto& in = reinterpret_cast<const sockaddr_in&>(ss);
    inet_ntop(AF_INET, &in.sin_addr, buf, sizeof buf);
    std::string s = buf;
    s += ':';
    s += std::to_string(ntohs(in.sin_port));
    return s;
  }
  const auto& in6 = reinterpret_cast<const sockaddr_in6&>(ss);
  inet_ntop(AF_INET6, &in6.sin6_addr, buf, sizeof buf);
  std::string s = "[";  // appended piecewise: GCC 12 -O3 warns falsely on "lit" + std::string
  s += buf;
  s += "]:";
  s += std::to_string(ntohs(in6.sin6_port));
  return s;
}

// A UDP server on a free loopback port. For the n-th datagram (0-based) the handler returns the
// datagrams to send back to its sender (none = drop it).
class Responder {
 public:
  using Handler =
      std::function<std::vector<Bytes>(const Bytes& request, int n, const sockaddr_storage& peer)>;

  Responder(int family, Handler handler) : handler_(std::move(handler)) {
    fd_ = ::socket(family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    EXPECT_GE(fd_, 0);
    sockaddr_storage ss{};
    socklen_t len = 0;
    if (family == AF_INET) {
      auto& in = reinterpret_cast<sockaddr_in&>(ss);
      in.sin_family = AF_INET;
      in.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      len = sizeof in;
    } else {
      auto& in6 = reinterpret_cast<sockaddr_in6&>(ss);
      in6.sin6_family = AF_INET6;
      in6.sin6_addr = in6addr_loopback;
      len = sizeof in6;
    }
    EXPECT_EQ(::bind(fd_, reinterpret_cast<sockaddr*>(&ss), len), 0) << std::strerror(errno);
    EXPECT_EQ(::getsockname(fd_, reinterpret_cast<sockaddr*>(&ss), &len), 0);
    port_ = ntohs(family == AF_INET ? reinterpret_cast<sockaddr_in&>(ss).sin_port
                                    : reinterpret_cast<sockaddr_in6&>(ss).sin6_port);
    thread_ = std::thread([this] { loop(); });
  }
  ~Responder() {
    stop_ = true;
    thread_.join();
    ::close(fd_);
  }

  uint16_t port() const { return port_; }
  std::vector<SteadyClock::time_point> arrivals() {
    std::lock_guard lock(mu_);
    return arrivals_;
  }
  std::vector<Bytes> requests() {
    std::lock_guard lock(mu_);
    return requests_;
  }
  std::string last_peer() {
    std::lock_guard lock(mu_);
    return last_peer_;
  }

 private:
  void loop() {
    while (!stop_) {
      pollfd pfd{fd_, POLLIN, 0};
      if (::poll(&pfd, 1, 20) <= 0) continue;
      Bytes buf(2048);
      sockaddr_storage peer{};
      socklen_t plen = sizeof peer;
      const ssize_t n =
          ::recvfrom(fd_, buf.data(), buf.size(), 0, reinterpret_cast<sockaddr*>(&peer), &plen);
      if (n < 0) continue;
      buf.resize(static_cast<size_t>(n));
      int index = 0;
      {
        std::lock_guard lock(mu_);
        arrivals_.push_back(SteadyClock::now());
        requests_.push_back(buf);
        last_peer_ = peer_text(peer);
        index = static_cast<int>(requests_.size()) - 1;
      }
      for (const Bytes& out : handler_(buf, index, peer))
        ::sendto(fd_, out.data(), out.size(), 0, reinterpret_cast<sockaddr*>(&peer), plen);
    }
  }

  Handler handler_;
  int fd_ = -1;
  uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  std::mutex mu_;
  std::vector<SteadyClock::time_point> arrivals_;
  std::vector<Bytes> requests_;
  std::string last_peer_;
};

Responder::Handler answer_all() {
  return [](const Bytes& req, int, const sockaddr_storage& peer) {
    return std::vector<Bytes>{binding_success(req, peer)};
  };
}

StunProbeOptions with_rto(std::chrono::milliseconds rto, int max_transmissions = 7) {
  StunProbeOptions o;
  o.initial_rto = rto;
  o.max_transmissions = max_transmissions;
  return o;
}

long ms_since(SteadyClock::time_point t) {
  return static_cast<long>(
      std::chrono::duration_cast<std::chrono::milliseconds>(SteadyClock::now() - t).count());
}

TEST(StunProbe, Ipv4AnswerIsTheClientsOwnAddress) {
  Responder srv(AF_INET, answer_all());
  const auto r = stun_probe("127.0.0.1", srv.port(), SteadyClock::now() + 3s);
  ASSERT_TRUE(r.ok()) << r.message;
  EXPECT_EQ(r.mapped.to_string(), srv.last_peer());
  EXPECT_EQ(r.server_address, "127.0.0.1:" + std::to_string(srv.port()));
  EXPECT_EQ(r.transmissions, 1);
  EXPECT_GT(r.rtt.count(), 0);
  EXPECT_LT(r.rtt, 1s);
  // What arrived was one Binding request carrying the cookie.
  const auto reqs = srv.requests();
  ASSERT_EQ(reqs.size(), 1u);
  ASSERT_GE(reqs[0].size(), 20u);
  EXPECT_EQ(reqs[0][0], 0x00);
  EXPECT_EQ(reqs[0][1], 0x01);
  EXPECT_EQ(Bytes(reqs[0].begin() + 4, reqs[0].begin() + 8), (Bytes{0x21, 0x12, 0xA4, 0x42}));
}

TEST(StunProbe, Ipv6Loopback) {
  Responder srv(AF_INET6, answer_all());
  const auto r = stun_probe("[::1]", srv.port(), SteadyClock::now() + 3s);
  ASSERT_TRUE(r.ok()) << r.message;
  EXPECT_EQ(r.mapped.family, StunAddress::Family::ipv6);
  EXPECT_EQ(r.mapped.to_string(), srv.last_peer());
}

TEST(StunProbe, LocalhostIsResolved) {
  Responder srv(AF_INET, answer_all());
  const auto r = stun_probe("localhost", srv.port(), SteadyClock::now() + 3s);
  ASSERT_TRUE(r.ok()) << r.message;
  EXPECT_EQ(r.mapped.ip(), "127.0.0.1");
}

TEST(StunProbe, RetransmitsWithDoublingRtoAndTheSameTransactionId) {
  Responder srv(AF_INET, [](const Bytes& req, int n, const sockaddr_storage& peer) {
    return n < 2 ? std::vector<Bytes>{} : std::vector<Bytes>{binding_success(req, peer)};
  });
  const auto r = stun_probe("127.0.0.1", srv.port(), SteadyClock::now() + 5s, with_rto(100ms));
  ASSERT_TRUE(r.ok()) << r.message;
  EXPECT_EQ(r.transmissions, 3);
  const auto t = srv.arrivals();
  ASSERT_EQ(t.size(), 3u);
  const auto gap1 = std::chrono::duration_cast<std::chrono::milliseconds>(t[1] - t[0]);
  const auto gap2 = std::chrono::duration_cast<std::chrono::milliseconds>(t[2] - t[1]);
  // Client-side, timers only fire late: answered after the third send, at 100 + 200 ms or later
  // (a constant RTO would give 200 ms). Arrival gaps are measured by a thread that may be
  // scheduled late, so their bounds are loose.
  EXPECT_GE(r.rtt, 300ms);
  EXPECT_LT(r.rtt, 2s);
  EXPECT_GE(gap1, 50ms);
  EXPECT_LT(gap1, 400ms);
  EXPECT_GE(gap2, 130ms);
  EXPECT_LT(gap2, 800ms);
  const auto reqs = srv.requests();
  for (const Bytes& q : reqs)
    EXPECT_EQ(Bytes(q.begin() + 8, q.begin() + 20),
              Bytes(reqs[0].begin() + 8, reqs[0].begin() + 20));
}

TEST(StunProbe, ForeignTransactionIdsAreIgnored) {
  Responder srv(AF_INET, [](const Bytes& req, int, const sockaddr_storage& peer) {
    return std::vector<Bytes>{binding_success(req, peer, /*foreign_tid=*/true),
                              binding_success(req, peer)};
  });
  const auto r = stun_probe("127.0.0.1", srv.port(), SteadyClock::now() + 3s);
  ASSERT_TRUE(r.ok()) << r.message;
  EXPECT_EQ(r.transmissions, 1);
}

TEST(StunProbe, OnlyForeignAnswersEndInTimeout) {
  Responder srv(AF_INET, [](const Bytes& req, int, const sockaddr_storage& peer) {
    return std::vector<Bytes>{binding_success(req, peer, /*foreign_tid=*/true)};
  });
  const auto r = stun_probe("127.0.0.1", srv.port(), SteadyClock::now() + 300ms);
  EXPECT_EQ(r.error, StunProbeError::timeout);
  EXPECT_NE(r.message.find("another transaction id"), std::string::npos) << r.message;
}

TEST(StunProbe, SilentServerTimesOutAtTheDeadline) {
  Responder srv(AF_INET,
                [](const Bytes&, int, const sockaddr_storage&) { return std::vector<Bytes>{}; });
  const auto start = SteadyClock::now();
  const auto r = stun_probe("127.0.0.1", srv.port(), start + 350ms, with_rto(100ms));
  const long elapsed = ms_since(start);
  EXPECT_EQ(r.error, StunProbeError::timeout);
  EXPECT_GE(elapsed, 350);
  EXPECT_LT(elapsed, 1500);  // generous: a loaded CI machine wakes threads late
  // Sent at about 0, 100 and 300 ms.
  EXPECT_GE(r.transmissions, 2);
  EXPECT_LE(r.transmissions, 3);
  EXPECT_NE(r.message.find("no STUN answer"), std::string::npos) << r.message;
}

TEST(StunProbe, GivesUpAfterTheLastTransmissionsWait) {
  Responder srv(AF_INET,
                [](const Bytes&, int, const sockaddr_storage&) { return std::vector<Bytes>{}; });
  const auto start = SteadyClock::now();
  // Sends at 0, 20, 60 ms, then waits 16 x 20 ms = 320 ms: gives up near 380 ms, long before
  // the deadline.
  const auto r = stun_probe("127.0.0.1", srv.port(), start + 10s, with_rto(20ms, 3));
  const long elapsed = ms_since(start);
  EXPECT_EQ(r.error, StunProbeError::timeout);
  EXPECT_EQ(r.transmissions, 3);
  EXPECT_GE(elapsed, 375);
  EXPECT_LT(elapsed, 2000);
  EXPECT_EQ(srv.arrivals().size(), 3u);
}

TEST(StunProbe, ClosedPortIsAConnectError) {
  // Find a port nobody listens on: bind, note the port, close.
  int fd = ::socket(AF_INET, SOCK_DGRAM, 0);
  sockaddr_in in{};
  in.sin_family = AF_INET;
  in.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&in), sizeof in), 0);
  socklen_t len = sizeof in;
  ASSERT_EQ(::getsockname(fd, reinterpret_cast<sockaddr*>(&in), &len), 0);
  const uint16_t port = ntohs(in.sin_port);
  ::close(fd);

  const auto start = SteadyClock::now();
  const auto r = stun_probe("127.0.0.1", port, start + 5s);
  EXPECT_EQ(r.error, StunProbeError::connect) << r.message;
  EXPECT_NE(r.message.find("refused"), std::string::npos) << r.message;
  EXPECT_LT(ms_since(start), 1000);  // the ICMP answer ends it at once, no waiting for the deadline
}

TEST(StunProbe, ErrorResponseIsAProtocolError) {
  Responder srv(AF_INET, [](const Bytes& req, int, const sockaddr_storage&) {
    return std::vector<Bytes>{binding_error(req, 401, "Unauthorized")};
  });
  const auto r = stun_probe("127.0.0.1", srv.port(), SteadyClock::now() + 3s);
  EXPECT_EQ(r.error, StunProbeError::protocol);
  EXPECT_EQ(r.response.error, StunDecodeError::error_response);
  EXPECT_EQ(r.response.error_code, 401);
  EXPECT_NE(r.message.find("401 Unauthorized"), std::string::npos) << r.message;
}

TEST(StunProbe, GarbageIsAProtocolError) {
  Responder srv(AF_INET, [](const Bytes&, int, const sockaddr_storage&) {
    const std::string s = "SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n";
    return std::vector<Bytes>{Bytes(s.begin(), s.end())};
  });
  const auto r = stun_probe("127.0.0.1", srv.port(), SteadyClock::now() + 3s);
  EXPECT_EQ(r.error, StunProbeError::protocol);
  EXPECT_EQ(r.response.error, StunDecodeError::not_stun);
}

TEST(StunProbe, ResolutionFailuresAreDnsErrors) {
  // "bad..name" has an empty label: glibc rejects it without sending any DNS query.
  const auto bad = stun_probe("bad..name", 3478, SteadyClock::now() + 1s);
  EXPECT_EQ(bad.error, StunProbeError::dns) << bad.message;
  EXPECT_EQ(bad.transmissions, 0);
  EXPECT_EQ(stun_probe("", 3478, SteadyClock::now() + 1s).error, StunProbeError::dns);
}

TEST(StunProbe, DeadlineAlreadyPassed) {
  Responder srv(AF_INET, answer_all());
  const auto r = stun_probe("127.0.0.1", srv.port(), SteadyClock::now() - 1ms);
  EXPECT_EQ(r.error, StunProbeError::timeout);
  EXPECT_EQ(r.transmissions, 0);
  EXPECT_TRUE(srv.requests().empty());
}

// ---- against coturn --------------------------------------------------------------------------

TEST(StunProbeCoturn, BindingSucceedsAndReportsOurAddress) {
  test::Fixture turn("coturn");
  const auto r =
      stun_probe("127.0.0.1", static_cast<uint16_t>(turn.port()), SteadyClock::now() + 5s);
  ASSERT_TRUE(r.ok()) << r.message << "\n" << turn.log_tail();
  EXPECT_EQ(r.mapped.family, StunAddress::Family::ipv4);
  EXPECT_EQ(r.mapped.ip(), "127.0.0.1");
  EXPECT_NE(r.mapped.port, 0);
  EXPECT_TRUE(r.response.from_xor);  // coturn speaks RFC 5389
  EXPECT_NE(r.response.software.find("Coturn"), std::string::npos) << r.response.software;
  EXPECT_LT(r.rtt, 2s);

  // Also through split_stun_host_port, as the probe's `stun: host:port` will be used.
  std::string host;
  uint16_t port = 0;
  ASSERT_TRUE(split_stun_host_port(turn.get("STUN_ADDRESS"), host, port));
  EXPECT_TRUE(stun_probe(host, port, SteadyClock::now() + 5s).ok());
}

TEST(StunProbeCoturn, StoppedIsRefusedAndRestartedRecovers) {
  test::Fixture turn("coturn");
  const auto port = static_cast<uint16_t>(turn.port());
  ASSERT_TRUE(stun_probe("127.0.0.1", port, SteadyClock::now() + 5s).ok());
  turn.stop();
  const auto down = stun_probe("127.0.0.1", port, SteadyClock::now() + 5s);
  EXPECT_EQ(down.error, StunProbeError::connect) << down.message;
  turn.start();
  const auto up = stun_probe("127.0.0.1", port, SteadyClock::now() + 5s);
  EXPECT_TRUE(up.ok()) << up.message << "\n" << turn.log_tail();
}

TEST(StunProbeCoturn, FrozenServerTimesOutAtTheDeadline) {
  test::Fixture turn("coturn");
  const auto port = static_cast<uint16_t>(turn.port());
  turn.kill(SIGSTOP);  // the socket stays open, nothing answers
  const auto start = SteadyClock::now();
  const auto r = stun_probe("127.0.0.1", port, start + 600ms);
  const long elapsed = ms_since(start);
  turn.kill(SIGCONT);
  EXPECT_EQ(r.error, StunProbeError::timeout) << r.message;
  EXPECT_GE(elapsed, 600);
  EXPECT_LT(elapsed, 2000);
  EXPECT_GE(r.transmissions, 3);  // 0, 100, 300 ms at least
  EXPECT_TRUE(stun_probe("127.0.0.1", port, SteadyClock::now() + 5s).ok());
}

}  // namespace
}  // namespace pes::jitsi
