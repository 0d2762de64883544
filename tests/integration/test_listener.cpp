// The listener against clients that try to choke it (issue 12), on the running pes-agent binary:
// 2,000 idle and 500 slowloris connections (a byte every 5 s) held open, plain and TLS, while
// /metrics and /-/healthy must keep answering within 100 ms; the head deadline; the connection
// cap closing the oldest idle connection first; keep-alive and `Connection: close`; gzip'd
// scrapes; /probe limited to web.max_probe_requests runs in flight.
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>
#include <zlib.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/agent_process.h"
#include "tests/support/fixture.h"

using namespace pes::test;
using namespace std::chrono_literals;
using SteadyClock = std::chrono::steady_clock;

namespace {

const std::string kPartialHead = "GET /metrics HTTP/1.1\r\nHost: x\r\n";

// One client socket, closed on scope exit.
class Socket {
 public:
  explicit Socket(int port) : fd_(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) {
    if (fd_ < 0) throw std::runtime_error("socket: " + std::string(strerror(errno)));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
      ::close(fd_);
      throw std::runtime_error("connect: " + std::string(strerror(errno)));
    }
  }
  ~Socket() {
    if (fd_ >= 0) ::close(fd_);
  }
  Socket(const Socket&) = delete;
  Socket& operator=(const Socket&) = delete;
  int fd() const { return fd_; }
  bool send_all(const std::string& s) const {
    return ::send(fd_, s.data(), s.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(s.size());
  }
  // True once the peer has closed (EOF or reset) within `wait`; false if the socket stays open.
  bool closed_by_peer(std::chrono::milliseconds wait) const {
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(wait.count())) <= 0) return false;
    char c;
    return ::recv(fd_, &c, 1, MSG_PEEK | MSG_DONTWAIT) <= 0;
  }

 private:
  int fd_;
};

// A client connection that can send: plain, or TLS (blocking OpenSSL over a Socket).
class Conn {
 public:
  virtual ~Conn() = default;
  virtual bool send(const std::string& s) = 0;
  virtual const Socket& socket() const = 0;
  // True once the agent has closed the connection within `wait`.
  virtual bool closed_by_peer(std::chrono::milliseconds wait) {
    return socket().closed_by_peer(wait);
  }
};

class PlainConn : public Conn {
 public:
  explicit PlainConn(int port) : socket_(port) {}
  bool send(const std::string& s) override { return socket_.send_all(s); }
  const Socket& socket() const override { return socket_; }

 private:
  Socket socket_;
};

class TlsConn : public Conn {
 public:
  TlsConn(SSL_CTX* ctx, int port) : socket_(port), ssl_(SSL_new(ctx), &SSL_free) {
    SSL_set_fd(ssl_.get(), socket_.fd());
    SSL_set_tlsext_host_name(ssl_.get(), "localhost");
    if (SSL_connect(ssl_.get()) != 1) throw std::runtime_error("TLS handshake failed");
  }
  bool send(const std::string& s) override {
    return SSL_write(ssl_.get(), s.data(), static_cast<int>(s.size())) > 0;
  }
  const Socket& socket() const override { return socket_; }
  // Everything the agent sends until it closes or `wait` passes.
  std::string read_until_close(std::chrono::milliseconds wait) {
    timeval tv{static_cast<time_t>(wait.count() / 1000),
               static_cast<suseconds_t>(wait.count() % 1000 * 1000)};
    setsockopt(socket_.fd(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    std::string out;
    char chunk[4096];
    int n;
    while ((n = SSL_read(ssl_.get(), chunk, sizeof chunk)) > 0) out.append(chunk, n);
    return out;
  }
  // Through TLS: the session tickets the agent sends after the handshake are data on the socket,
  // so read (with a receive timeout) until the end or `wait`.
  bool closed_by_peer(std::chrono::milliseconds wait) override {
    auto until = SteadyClock::now() + wait;
    while (SteadyClock::now() < until) {
      auto left = std::chrono::duration_cast<std::chrono::microseconds>(until - SteadyClock::now());
      timeval tv{static_cast<time_t>(left.count() / 1000000),
                 static_cast<suseconds_t>(left.count() % 1000000 + 1)};
      setsockopt(socket_.fd(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
      char c;
      errno = 0;
      int n = SSL_read(ssl_.get(), &c, 1);
      if (n > 0) return false;
      int err = SSL_get_error(ssl_.get(), n);
      if (errno == EAGAIN || errno == EWOULDBLOCK) return false;
      if (err == SSL_ERROR_ZERO_RETURN || err == SSL_ERROR_SYSCALL || err == SSL_ERROR_SSL)
        return true;
    }
    return false;
  }

 private:
  Socket socket_;
  std::unique_ptr<SSL, decltype(&SSL_free)> ssl_;
};

using OpenConn = std::function<std::unique_ptr<Conn>()>;

size_t open_fds(pid_t pid) {
  size_t n = 0;
  for ([[maybe_unused]] const auto& e :
       std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/fd"))
    ++n;
  return n;
}

// "Max open files" soft and hard limits of a process, from /proc/PID/limits.
std::pair<std::string, std::string> nofile_limits(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/limits");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("Max open files", 0) == 0) {
      std::istringstream fields(line.substr(14));
      std::string soft, hard;
      fields >> soft >> hard;
      return {soft, hard};
    }
  return {};
}

// The agent inherits our limits: start it with a low soft limit to see it raise its own, then
// take ours to the hard limit for the thousands of client sockets.
struct SoftLimit {
  explicit SoftLimit(rlim_t soft) {
    getrlimit(RLIMIT_NOFILE, &saved);
    rlimit r = saved;
    r.rlim_cur = std::min(soft, r.rlim_max);
    setrlimit(RLIMIT_NOFILE, &r);
  }
  ~SoftLimit() { setrlimit(RLIMIT_NOFILE, &saved); }
  rlimit saved{};
};
void raise_own_fd_limit() {
  rlimit r{};
  getrlimit(RLIMIT_NOFILE, &r);
  r.rlim_cur = r.rlim_max;
  setrlimit(RLIMIT_NOFILE, &r);
}

struct Timed {
  long status = 0;
  double ms = 0;
};
Timed timed_get(const std::string& url, const std::string& ca = "") {
  auto t0 = SteadyClock::now();
  auto r = http_get(url, "", ca);
  return {r.status, std::chrono::duration<double, std::milli>(SteadyClock::now() - t0).count()};
}

// A raw HTTP/1.1 answer read from a socket: status, lower-case headers, body by Content-Length.
struct RawResponse {
  int status = 0;
  std::map<std::string, std::string> headers;
  std::string body;
};
bool read_response(int fd, std::string& buffer, RawResponse& out,
                   std::chrono::milliseconds wait = 5s) {
  auto deadline = SteadyClock::now() + wait;
  auto fill = [&] {
    pollfd p{fd, POLLIN, 0};
    auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - SteadyClock::now());
    if (left.count() <= 0 || ::poll(&p, 1, static_cast<int>(left.count())) <= 0) return false;
    char chunk[65536];
    ssize_t n = ::recv(fd, chunk, sizeof chunk, 0);
    if (n <= 0) return false;
    buffer.append(chunk, static_cast<size_t>(n));
    return true;
  };
  size_t end;
  while ((end = buffer.find("\r\n\r\n")) == std::string::npos)
    if (!fill()) return false;
  std::istringstream head(buffer.substr(0, end));
  std::string line;
  std::getline(head, line);
  out = RawResponse{};
  out.status = std::atoi(line.substr(9, 3).c_str());
  while (std::getline(head, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    std::string name = line.substr(0, colon);
    for (auto& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    out.headers[name] = line.substr(line.find_first_not_of(' ', colon + 1));
  }
  size_t length =
      std::stoul(out.headers.count("content-length") ? out.headers["content-length"] : "0");
  buffer.erase(0, end + 4);
  while (buffer.size() < length)
    if (!fill()) return false;
  out.body = buffer.substr(0, length);
  buffer.erase(0, length);
  return true;
}

std::string gunzip(const std::string& in) {
  z_stream z{};
  if (inflateInit2(&z, 15 + 16) != Z_OK) throw std::runtime_error("inflateInit2");
  std::string out;
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  z.avail_in = static_cast<uInt>(in.size());
  int rc = Z_OK;
  while (rc == Z_OK) {
    char chunk[65536];
    z.next_out = reinterpret_cast<Bytef*>(chunk);
    z.avail_out = sizeof chunk;
    rc = inflate(&z, Z_NO_FLUSH);
    out.append(chunk, sizeof chunk - z.avail_out);
  }
  inflateEnd(&z);
  if (rc != Z_STREAM_END) throw std::runtime_error("not a complete gzip stream");
  return out;
}

// The exposition without what changes from one scrape to the next (process_* and the scrape's own
// timing), so two scrapes of a quiet agent compare equal.
std::string stable_lines(const std::string& exposition) {
  std::istringstream in(exposition);
  std::string line, out;
  while (std::getline(in, line))
    if (line.find("process_") == std::string::npos) out += line + "\n";
  return out;
}

std::string config(const std::string& web, const std::string& probes = "") {
  return "global: {interval: 1h, timeout: 3s}\nweb:\n" + web +
         "probes:\n  - {name: self, type: tcp, tcp: {address: \"127.0.0.1:1\"}}\n" + probes;
}

// What a flood run measured.
struct FloodResult {
  double max_metrics_ms = 0, max_healthy_ms = 0;
  int requests = 0, failures = 0;
  size_t fds_before = 0, fds_under_load = 0, fds_after = 0;
  double partial_head_closed_after_s = -1;
};

// Holds `idle` TCP connections that send nothing and `slow` ones (opened by `open`) that send the
// partial head one byte every 5 s, scrapes /metrics and /-/healthy every 50 ms until shortly
// before the head deadline, then closes everything and waits for the agent's descriptors.
FloodResult flood(const AgentProcess& agent, const std::string& base, const std::string& ca,
                  int idle, int slow, const OpenConn& open) {
  FloodResult r;
  r.fds_before = open_fds(agent.pid());
  // A connection that sends a partial head at once: the head deadline must cut it at 10 s.
  auto partial = open();
  auto partial_sent = SteadyClock::now();
  partial->send(kPartialHead);

  std::vector<std::unique_ptr<Socket>> idle_conns;
  for (int i = 0; i < idle; ++i) idle_conns.push_back(std::make_unique<Socket>(agent.port()));
  std::vector<std::unique_ptr<Conn>> slow_conns;
  for (int i = 0; i < slow; ++i) slow_conns.push_back(open());
  std::atomic<bool> stop{false};
  std::thread trickler([&] {
    for (size_t pos = 0; !stop; pos = (pos + 1) % kPartialHead.size()) {
      for (auto& c : slow_conns) c->send(kPartialHead.substr(pos, 1));
      for (int i = 0; i < 50 && !stop; ++i) std::this_thread::sleep_for(100ms);
    }
  });
  // Sample the descriptors once everything is accepted, then scrape until shortly before the head
  // deadline of the first connections would cut them.
  for (int i = 0; i < 40 && open_fds(agent.pid()) < r.fds_before + 1 + idle + slow; ++i)
    std::this_thread::sleep_for(50ms);
  r.fds_under_load = open_fds(agent.pid());
  auto hold_until = partial_sent + 8s;
  while (SteadyClock::now() < hold_until) {
    auto m = timed_get(base + "/metrics", ca);
    auto h = timed_get(base + "/-/healthy", ca);
    r.requests += 2;
    r.failures += (m.status != 200) + (h.status != 200);
    r.max_metrics_ms = std::max(r.max_metrics_ms, m.ms);
    r.max_healthy_ms = std::max(r.max_healthy_ms, h.ms);
    std::this_thread::sleep_for(50ms);
  }
  if (partial->closed_by_peer(5s))
    r.partial_head_closed_after_s =
        std::chrono::duration<double>(SteadyClock::now() - partial_sent).count();
  stop = true;
  trickler.join();
  idle_conns.clear();
  slow_conns.clear();
  for (int i = 0; i < 100 && open_fds(agent.pid()) > r.fds_before; ++i)
    std::this_thread::sleep_for(50ms);
  r.fds_after = open_fds(agent.pid());
  return r;
}

void expect_unchoked(const FloodResult& r, const AgentProcess& agent, int held) {
  // Every connection was accepted and held (the cap is above the load).
  EXPECT_GE(r.fds_under_load, r.fds_before + static_cast<size_t>(held)) << agent.log();
  EXPECT_EQ(r.failures, 0) << "of " << r.requests;
  EXPECT_GT(r.requests, 40);
  EXPECT_LT(r.max_healthy_ms, slack_ms(100)) << r.requests << " requests";
  EXPECT_LT(r.max_metrics_ms, slack_ms(100)) << r.requests << " requests";
  // The head deadline (10 s from the accept) cut the connection that never finished its head.
  EXPECT_GE(r.partial_head_closed_after_s, 9.5);
  EXPECT_LE(r.partial_head_closed_after_s, 10 + slack_ms(1500) / 1000);
  EXPECT_LE(r.fds_after, r.fds_before) << "descriptors did not return to the baseline";
  std::cerr << "held " << held << " connections: " << r.requests << " requests, max /metrics "
            << r.max_metrics_ms << " ms, max /-/healthy " << r.max_healthy_ms << " ms; fds "
            << r.fds_before << " -> " << r.fds_under_load << " -> " << r.fds_after << "\n";
}

}  // namespace

TEST(Listener, HoldsIdleAndSlowlorisConnectionsAndKeepsAnsweringPlain) {
  TempDir dir;
  write_file(dir.file("agent.yml"), config("  max_connections: 4096\n"));
  std::unique_ptr<AgentProcess> agent;
  {
    SoftLimit low(1024);
    agent = std::make_unique<AgentProcess>(dir.file("agent.yml"));
  }
  raise_own_fd_limit();
  // The agent raised its soft limit to the hard one (the load below needs more than 1024).
  auto [soft, hard] = nofile_limits(agent->pid());
  EXPECT_EQ(soft, hard);
  int port = agent->port();
  auto r = flood(*agent, "http://127.0.0.1:" + std::to_string(port), "", 2000, 500,
                 [port] { return std::make_unique<PlainConn>(port); });
  expect_unchoked(r, *agent, 2500);
  EXPECT_TRUE(agent->running());
}

TEST(Listener, HoldsIdleAndSlowlorisConnectionsAndKeepsAnsweringTls) {
  TempDir dir;
  Fixture certs("certs", {{"KEY_TYPE", "ec"}});
  write_file(dir.file("agent.yml"),
             config("  max_connections: 4096\n  tls_cert_file: " + certs.get("CERT") +
                    "\n  tls_key_file: " + certs.get("KEY") + "\n"));
  AgentProcess agent(dir.file("agent.yml"), {}, false);
  raise_own_fd_limit();
  signal(SIGPIPE, SIG_IGN);  // SSL_write to a connection the agent has cut
  std::string base = "https://localhost:" + std::to_string(agent.port());
  for (int i = 0; i < 200 && timed_get(base + "/-/ready", certs.get("CA_FILE")).status != 200; ++i)
    std::this_thread::sleep_for(50ms);
  std::unique_ptr<SSL_CTX, decltype(&SSL_CTX_free)> ctx(SSL_CTX_new(TLS_client_method()),
                                                        &SSL_CTX_free);
  ASSERT_EQ(SSL_CTX_load_verify_locations(ctx.get(), certs.get("CA_FILE").c_str(), nullptr), 1);
  SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER, nullptr);
  // Idle: TCP connections that never start the handshake; slowloris: a finished handshake, then
  // the head a byte at a time inside TLS.
  auto r = flood(agent, base, certs.get("CA_FILE"), 2000, 500,
                 [&] { return std::make_unique<TlsConn>(ctx.get(), agent.port()); });
  expect_unchoked(r, agent, 2500);
  EXPECT_TRUE(agent.running());
}

TEST(Listener, AtTheCapTheOldestIdleConnectionIsClosedFirst) {
  TempDir dir;
  write_file(dir.file("agent.yml"), config("  max_connections: 16\n"));
  AgentProcess agent(dir.file("agent.yml"));
  std::this_thread::sleep_for(300ms);  // the readiness check's connection is gone
  size_t base_fds = open_fds(agent.pid());
  std::vector<std::unique_ptr<Socket>> conns;
  for (int i = 0; i < 16; ++i) {
    conns.push_back(std::make_unique<Socket>(agent.port()));
    // Accepted in this order: each one is in the agent before the next connects.
    for (int k = 0; k < 100 && open_fds(agent.pid()) < base_fds + i + 1; ++k)
      std::this_thread::sleep_for(10ms);
  }
  ASSERT_EQ(open_fds(agent.pid()), base_fds + 16);
  // A keep-alive connection in the middle that served a request is idle again, now the youngest.
  ASSERT_TRUE(conns[0]->send_all("GET /-/healthy HTTP/1.1\r\nHost: x\r\n\r\n"));
  std::string buf;
  RawResponse resp;
  ASSERT_TRUE(read_response(conns[0]->fd(), buf, resp));
  // Connection 17 makes room by closing the connection idle the longest: conns[1].
  Socket extra(agent.port());
  EXPECT_TRUE(conns[1]->closed_by_peer(2s));
  EXPECT_FALSE(conns[0]->closed_by_peer(0ms));
  for (int i = 2; i < 16; ++i) EXPECT_FALSE(conns[i]->closed_by_peer(0ms)) << i;
  // The newcomer is served; the next request (a new connection) closes conns[2].
  ASSERT_TRUE(extra.send_all("GET /-/healthy HTTP/1.1\r\nHost: x\r\n\r\n"));
  ASSERT_TRUE(read_response(extra.fd(), buf, resp));
  EXPECT_EQ(resp.status, 200);
  EXPECT_EQ(agent.get("/-/healthy").status, 200);
  EXPECT_TRUE(conns[2]->closed_by_peer(2s));
  EXPECT_FALSE(conns[3]->closed_by_peer(0ms));
  EXPECT_FALSE(conns[0]->closed_by_peer(0ms));
}

TEST(Listener, KeepAliveConnectionCloseAndGzip) {
  TempDir dir;
  write_file(dir.file("agent.yml"), config("  max_probe_requests: 2\n"));
  AgentProcess agent(dir.file("agent.yml"));
  Socket s(agent.port());
  std::string buf;
  RawResponse plain, zipped, last;
  // Two requests on one connection: keep-alive.
  ASSERT_TRUE(s.send_all("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"));
  ASSERT_TRUE(read_response(s.fd(), buf, plain));
  ASSERT_TRUE(s.send_all("GET /metrics HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip\r\n\r\n"));
  ASSERT_TRUE(read_response(s.fd(), buf, zipped));
  EXPECT_EQ(plain.status, 200);
  EXPECT_EQ(plain.headers.count("content-encoding"), 0u);
  EXPECT_EQ(plain.headers["vary"], "Accept-Encoding");
  EXPECT_EQ(zipped.status, 200);
  EXPECT_EQ(zipped.headers["content-encoding"], "gzip");
  EXPECT_EQ(zipped.headers["vary"], "Accept-Encoding");
  EXPECT_LT(zipped.body.size(), plain.body.size() / 3);
  std::string unzipped = gunzip(zipped.body);
  EXPECT_EQ(stable_lines(unzipped), stable_lines(plain.body));
  EXPECT_NE(unzipped.find("pes_agent_build_info"), std::string::npos);
  // promtool agrees with what came out of the gzip.
  write_file(dir.file("unzipped.txt"), unzipped);
  auto check = run_command({"sh", "-c", "promtool check metrics < " + dir.file("unzipped.txt")});
  EXPECT_EQ(check.exit_code, 0) << check.out << check.err;
  // gzip refused explicitly: plain.
  ASSERT_TRUE(
      s.send_all("GET /metrics HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip;q=0, "
                 "identity\r\n\r\n"));
  ASSERT_TRUE(read_response(s.fd(), buf, last));
  EXPECT_EQ(last.headers.count("content-encoding"), 0u);
  EXPECT_FALSE(s.closed_by_peer(100ms));
  // `Connection: close` is honoured: the answer says so and the connection ends.
  ASSERT_TRUE(s.send_all("GET /-/healthy HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"));
  ASSERT_TRUE(read_response(s.fd(), buf, last));
  EXPECT_EQ(last.status, 200);
  EXPECT_EQ(last.body, "Healthy.\n");
  EXPECT_EQ(last.headers["connection"], "close");
  EXPECT_TRUE(s.closed_by_peer(2s));
  // HTTP/1.0 without keep-alive closes too.
  Socket s10(agent.port());
  ASSERT_TRUE(s10.send_all("GET /-/healthy HTTP/1.0\r\n\r\n"));
  ASSERT_TRUE(read_response(s10.fd(), buf, last));
  EXPECT_EQ(last.status, 200);
  EXPECT_TRUE(s10.closed_by_peer(2s));
}

TEST(Listener, AdHocProbeRunsAreLimitedAndUnknownNamesCostNothing) {
  TempDir dir;
  HungServer hang(HungMode::accept_and_hang);
  write_file(dir.file("agent.yml"),
             config("  max_probe_requests: 2\n", "  - {name: hang, type: tcp, tcp: {address: \"" +
                                                     hang.address() +
                                                     "\", send: \"x\", expect_regex: y}}\n"));
  AgentProcess agent(dir.file("agent.yml"));
  int before = hang.connections();
  std::vector<std::thread> runs;
  std::vector<long> statuses(2);
  for (int i = 0; i < 2; ++i)
    runs.emplace_back([&, i] { statuses[i] = agent.get("/probe?name=hang").status; });
  for (int i = 0; i < 200 && hang.connections() < before + 2; ++i)
    std::this_thread::sleep_for(10ms);
  ASSERT_GE(hang.connections(), before + 2);
  // Both slots taken: the third is refused at once, with when to come back (the probe's timeout).
  Socket s(agent.port());
  std::string buf;
  RawResponse refused, unknown;
  auto t0 = SteadyClock::now();
  ASSERT_TRUE(s.send_all("GET /probe?name=hang HTTP/1.1\r\nHost: x\r\n\r\n"));
  ASSERT_TRUE(read_response(s.fd(), buf, refused));
  EXPECT_LT(SteadyClock::now() - t0, std::chrono::milliseconds(static_cast<int>(slack_ms(500))));
  EXPECT_EQ(refused.status, 429) << refused.body;
  EXPECT_EQ(refused.headers["retry-after"], "3");
  // An unknown name is answered 404, not 429: it takes no slot and waits for none.
  ASSERT_TRUE(s.send_all("GET /probe?name=nosuch HTTP/1.1\r\nHost: x\r\n\r\n"));
  ASSERT_TRUE(read_response(s.fd(), buf, unknown));
  EXPECT_EQ(unknown.status, 404) << unknown.body;
  EXPECT_EQ(hang.connections(), before + 2);
  // The rest of the listener is not held up by the runs in flight.
  auto h = timed_get("http://127.0.0.1:" + std::to_string(agent.port()) + "/-/healthy");
  EXPECT_EQ(h.status, 200);
  EXPECT_LT(h.ms, slack_ms(100));
  EXPECT_EQ(agent.get("/metrics").status, 200);
  for (auto& t : runs) t.join();
  EXPECT_EQ(statuses[0], 200);
  EXPECT_EQ(statuses[1], 200);
  // The slots are free again once the runs have ended.
  EXPECT_EQ(agent.get("/probe?name=self").status, 200);
}

TEST(Listener, TlsClientCertificatesWhenAClientCaIsConfigured) {
  TempDir dir;
  Fixture certs("certs", {{"KEY_TYPE", "ec"}});
  write_file(dir.file("agent.yml"),
             config("  tls_cert_file: " + certs.get("CERT") + "\n  tls_key_file: " +
                    certs.get("KEY") + "\n  tls_client_ca_file: " + certs.get("CA_FILE") + "\n"));
  AgentProcess agent(dir.file("agent.yml"), {}, false);
  signal(SIGPIPE, SIG_IGN);
  auto client = [&](bool with_cert) {
    std::unique_ptr<SSL_CTX, decltype(&SSL_CTX_free)> ctx(SSL_CTX_new(TLS_client_method()),
                                                          &SSL_CTX_free);
    SSL_CTX_load_verify_locations(ctx.get(), certs.get("CA_FILE").c_str(), nullptr);
    if (with_cert) {
      SSL_CTX_use_certificate_file(ctx.get(), certs.get("CLIENT_CERT").c_str(), SSL_FILETYPE_PEM);
      SSL_CTX_use_PrivateKey_file(ctx.get(), certs.get("CLIENT_KEY").c_str(), SSL_FILETYPE_PEM);
    }
    try {
      TlsConn c(ctx.get(), agent.port());
      c.send("GET /-/healthy HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
      return c.read_until_close(5s);
    } catch (const std::exception& e) {
      return std::string("handshake failed: ") + e.what();
    }
  };
  std::string with = client(true);
  for (int i = 0; i < 100 && with.rfind("HTTP/1.1 200", 0) != 0; ++i) {
    std::this_thread::sleep_for(50ms);
    with = client(true);
  }
  EXPECT_EQ(with.rfind("HTTP/1.1 200", 0), 0u) << with << agent.log();
  std::string without = client(false);
  EXPECT_EQ(without.find("HTTP/1.1"), std::string::npos) << without;
  EXPECT_TRUE(agent.running());
}
