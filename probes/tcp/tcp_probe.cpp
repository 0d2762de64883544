#include "probes/tcp/tcp_probe.h"

#include <openssl/ssl.h>
#include <poll.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "probes/common/deadline.h"
#include "probes/common/net.h"
#include "probes/common/tls_client.h"

namespace pes {

namespace {

// Up to 64 bytes, quoted, with anything unprintable as \xNN.
std::string printable_excerpt(const std::string& data) {
  std::string out = "\"";
  for (size_t i = 0; i < data.size() && i < 64; ++i) {
    unsigned char c = static_cast<unsigned char>(data[i]);
    if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') {
      out += static_cast<char>(c);
    } else {
      char hex[8];
      std::snprintf(hex, sizeof hex, "\\x%02x", c);
      out += hex;
    }
  }
  return out + (data.size() > 64 ? "\"..." : "\"");
}

const char* kConnectHelp = "Time to establish the TCP connection (and TLS if used), seconds.";

// One run: connect → TLS → send → expect, each step a function that returns its failure.
class TcpRun {
 public:
  TcpRun(const TcpProbe::Spec& spec, std::string target, RunContext& ctx)
      : spec_(spec), target_(std::move(target)), ctx_(ctx), deadline_(ctx.deadline()) {}

  Outcome run() {
    auto start = Clock::now();
    if (auto failed = connect()) return std::move(*failed);
    if (spec_.tls) {
      if (auto failed = start_tls()) return std::move(*failed);
    }
    result_.add("probe_tcp_connect_duration_seconds", kConnectHelp, seconds_since(start));
    if (auto failed = send_payload()) return std::move(*failed);
    if (auto failed = expect_answer()) return std::move(*failed);
    if (tls_.ssl) SSL_shutdown(tls_.ssl.get());
    return std::move(result_);
  }

 private:
  static constexpr long kTimedOut = -2;  // io(): the deadline passed
  static constexpr long kIoError = -1;   // io(): reset or TLS error

  std::optional<Outcome> connect() {
    if (auto failed = connect_tcp(spec_.host, spec_.port, target_, deadline_, sock_)) return failed;
    ctx_.trace().log("connected to " + target_);
    return std::nullopt;
  }

  std::optional<Outcome> start_tls() {
    const auto& t = spec_.tls_options;
    TlsPeer peer{t.server_name.empty() ? spec_.host : t.server_name, target_};
    if (auto failed = tls_handshake(tls_, sock_.get(), t, peer, deadline_)) return failed;
    add_cert_expiry_sample(result_, tls_.ssl.get());
    ctx_.trace().log("TLS established");
    return std::nullopt;
  }

  std::optional<Outcome> send_payload() {
    std::string data = spec_.send;
    size_t off = 0;
    while (off < data.size()) {
      long n = io(true, data.data() + off, data.size() - off);
      if (n == kTimedOut)
        return Outcome::failure(Reason::timeout, "sending to " + target_ + " timed out");
      if (n <= 0) return Outcome::failure(Reason::connect, "connection closed while sending");
      off += static_cast<size_t>(n);
    }
    return std::nullopt;
  }

  std::optional<Outcome> expect_answer() {
    if (!spec_.expect) return std::nullopt;
    const RE2& re = *spec_.expect;
    std::string got;
    char buf[4096];
    while (!RE2::PartialMatch(got, re)) {
      if (got.size() > 65536)
        return Outcome::failure(Reason::assertion,
                                "no match for /" + re.pattern() + "/ in the first 64 KiB");
      long n = io(false, buf, sizeof buf);
      if (n == kTimedOut) return answer_timed_out(got);
      if (n < 0)
        return Outcome::failure(Reason::connect, "connection reset while reading the answer");
      if (n == 0)
        return Outcome::failure(Reason::assertion, "connection closed before the answer matched /" +
                                                       re.pattern() + "/");
      got.append(buf, static_cast<size_t>(n));
    }
    ctx_.trace().log("answer matched /" + re.pattern() + "/");
    return std::nullopt;
  }

  // The answer may still be coming (a slow server): a timeout, but say what did come, so that a
  // wrong service on the port (an SSH banner where PONG was expected) shows.
  Outcome answer_timed_out(const std::string& got) const {
    std::string msg = "no answer matching /" + spec_.expect->pattern() + "/ before the deadline";
    if (!got.empty())
      msg += "; received " + std::to_string(got.size()) + " bytes: " + printable_excerpt(got);
    return Outcome::failure(Reason::timeout, msg);
  }

  // One read or write on the (TLS) socket, waiting within the deadline: bytes moved, 0 at the end
  // of the stream, kIoError or kTimedOut.
  long io(bool write, char* buf, size_t len) {
    SSL* ssl = tls_.ssl.get();
    int fd = sock_.get();
    while (true) {
      short wait_for = write ? POLLOUT : POLLIN;
      if (ssl) {
        int n = write ? SSL_write(ssl, buf, static_cast<int>(len))
                      : SSL_read(ssl, buf, static_cast<int>(len));
        if (n > 0) return n;
        int e = SSL_get_error(ssl, n);
        if (e == SSL_ERROR_ZERO_RETURN) return 0;
        if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) return kIoError;
        wait_for = e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT;
      } else {
        long n = write ? ::send(fd, buf, len, MSG_NOSIGNAL) : ::recv(fd, buf, len, 0);
        if (n >= 0) return n;
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) return kIoError;
      }
      if (!wait_fd(fd, wait_for, deadline_)) return kTimedOut;
    }
  }

  const TcpProbe::Spec& spec_;
  const std::string target_;
  RunContext& ctx_;
  const Clock::time_point deadline_;
  UniqueFd sock_;
  TlsSession tls_;
  Outcome result_ = Outcome::success();
};

}  // namespace

bool split_host_port(const std::string& address, std::string& host, std::string& port) {
  if (!address.empty() && address[0] == '[') {
    auto close = address.find(']');
    if (close == std::string::npos || close + 1 >= address.size() || address[close + 1] != ':')
      return false;
    host = address.substr(1, close - 1);
    port = address.substr(close + 2);
  } else {
    auto colon = address.rfind(':');
    if (colon == std::string::npos || address.find(':') != colon) return false;
    host = address.substr(0, colon);
    port = address.substr(colon + 1);
  }
  if (host.empty() || port.empty()) return false;
  for (char c : port)
    if (c < '0' || c > '9') return false;
  int p = std::atoi(port.c_str());
  return p > 0 && p < 65536;
}

std::string TcpProbe::target() const { return bracket_host(spec_.host) + ":" + spec_.port; }

std::unique_ptr<Probe> TcpProbe::parse(Section& s) {
  Spec spec;
  auto addr = s.str("address", Section::required);
  bool ok = false;
  if (addr) {
    ok = split_host_port(*addr, spec.host, spec.port);
    if (!ok) s.error("address", "must be host:port (or [v6]:port), got \"" + *addr + "\"");
  }
  // `tls: {}` (present, even empty) turns TLS on; `tls: {insecure_skip_verify: true}` skips checks.
  spec.tls = s.has("tls") || s.sub("tls").present();
  spec.tls_options = s.tls();
  spec.send = s.str_or("send", "");
  if (auto re = s.str("expect_regex")) {
    RE2::Options opts;
    opts.set_log_errors(false);
    auto compiled = std::make_shared<RE2>(*re, opts);
    if (!compiled->ok()) {
      s.error("expect_regex", "invalid regular expression: " + compiled->error());
      ok = false;
    }
    spec.expect = compiled;
  }
  if (!ok) return nullptr;
  return std::make_unique<TcpProbe>(std::move(spec));
}

void TcpProbe::run(RunContextPtr ctx, Done done) {
  ctx->blocking([this, ctx, done] { done(run_blocking(*ctx)); });
}

Outcome TcpProbe::run_blocking(RunContext& ctx) const { return TcpRun(spec_, target(), ctx).run(); }

}  // namespace pes
