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

// One run: connect → TLS → send → expect, each step a function that starts the next one or ends
// the run with its failure. The steps wait on the event loop (ctx.wait_fd), never block it; the run
// owns itself through the callbacks it has pending.
class TcpRun : public std::enable_shared_from_this<TcpRun> {
 public:
  TcpRun(const TcpProbe::Spec& spec, std::string target, RunContextPtr ctx, Done done)
      : spec_(spec), target_(std::move(target)), ctx_(std::move(ctx)), done_(std::move(done)) {}

  void start() { connect(); }

 private:
  static constexpr long kWouldBlock = -2;  // io(): wait for wait_for_, then call it again
  static constexpr long kIoError = -1;     // io(): reset or TLS error

  void connect() {
    start_ = Clock::now();
    connect_tcp(ctx_, spec_.host, spec_.port, target_,
                [self = shared_from_this()](std::optional<Outcome> failed, UniqueFd sock) {
                  if (failed) return self->end(std::move(*failed));
                  self->sock_ = std::move(sock);
                  self->ctx_->trace().log("connected to " + self->target_);
                  if (self->spec_.tls) return self->start_tls();
                  self->connected();
                });
  }

  void start_tls() {
    const auto& t = spec_.tls_options;
    TlsPeer peer{t.server_name.empty() ? spec_.host : t.server_name, target_};
    tls_handshake(ctx_, tls_, sock_.get(), t, peer,
                  [self = shared_from_this()](std::optional<Outcome> failed) {
                    if (failed) return self->end(std::move(*failed));
                    add_cert_expiry_sample(self->result_, self->tls_.ssl.get());
                    self->ctx_->trace().log("TLS established");
                    self->connected();
                  });
  }

  void connected() {
    result_.add("probe_tcp_connect_duration_seconds", kConnectHelp, seconds_since(start_));
    send_payload();
  }

  void send_payload() {
    while (sent_ < spec_.send.size()) {
      long n = io(true, const_cast<char*>(spec_.send.data()) + sent_, spec_.send.size() - sent_);
      if (n == kWouldBlock)
        return wait(&TcpRun::send_payload, [this] {
          return Outcome::failure(Reason::timeout, "sending to " + target_ + " timed out");
        });
      if (n <= 0) return end(Outcome::failure(Reason::connect, "connection closed while sending"));
      sent_ += static_cast<size_t>(n);
    }
    expect_answer();
  }

  void expect_answer() {
    if (!spec_.expect) return succeed();
    const RE2& re = *spec_.expect;
    char buf[4096];
    while (!RE2::PartialMatch(got_, re)) {
      if (got_.size() > 65536)
        return end(Outcome::failure(Reason::assertion,
                                    "no match for /" + re.pattern() + "/ in the first 64 KiB"));
      long n = io(false, buf, sizeof buf);
      if (n == kWouldBlock)
        return wait(&TcpRun::expect_answer, [this] { return answer_timed_out(); });
      if (n < 0)
        return end(Outcome::failure(Reason::connect, "connection reset while reading the answer"));
      if (n == 0)
        return end(
            Outcome::failure(Reason::assertion,
                             "connection closed before the answer matched /" + re.pattern() + "/"));
      got_.append(buf, static_cast<size_t>(n));
    }
    ctx_->trace().log("answer matched /" + re.pattern() + "/");
    succeed();
  }

  void succeed() {
    if (tls_.ssl) SSL_shutdown(tls_.ssl.get());
    end(std::move(result_));
  }

  // The answer may still be coming (a slow server): a timeout, but say what did come, so that a
  // wrong service on the port (an SSH banner where PONG was expected) shows.
  Outcome answer_timed_out() const {
    std::string msg = "no answer matching /" + spec_.expect->pattern() + "/ before the deadline";
    if (!got_.empty())
      msg += "; received " + std::to_string(got_.size()) + " bytes: " + printable_excerpt(got_);
    return Outcome::failure(Reason::timeout, msg);
  }

  // Waits until the socket is ready for what io() asked, then runs `next` again; at the deadline
  // ends the run with `timed_out()`.
  template <typename TimedOut>
  void wait(void (TcpRun::*next)(), TimedOut timed_out) {
    ctx_->wait_fd(sock_.get(), wait_for_, [self = shared_from_this(), next, timed_out](bool ready) {
      if (!ready) return self->end(timed_out());
      ((*self).*next)();
    });
  }

  // One read or write on the (TLS) socket without waiting: bytes moved, 0 at the end of the
  // stream, kIoError, or kWouldBlock with wait_for_ set to what the socket must become.
  long io(bool write, char* buf, size_t len) {
    SSL* ssl = tls_.ssl.get();
    wait_for_ = write ? POLLOUT : POLLIN;
    if (ssl) {
      int n = write ? SSL_write(ssl, buf, static_cast<int>(len))
                    : SSL_read(ssl, buf, static_cast<int>(len));
      if (n > 0) return n;
      int e = SSL_get_error(ssl, n);
      if (e == SSL_ERROR_ZERO_RETURN) return 0;
      if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) return kIoError;
      wait_for_ = e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT;
      return kWouldBlock;
    }
    while (true) {
      long n =
          write ? ::send(sock_.get(), buf, len, MSG_NOSIGNAL) : ::recv(sock_.get(), buf, len, 0);
      if (n >= 0) return n;
      if (errno == EINTR) continue;
      return errno == EAGAIN || errno == EWOULDBLOCK ? kWouldBlock : kIoError;
    }
  }

  void end(Outcome outcome) { done_(std::move(outcome)); }

  const TcpProbe::Spec& spec_;  // the probe outlives the run (the engine holds it)
  const std::string target_;
  RunContextPtr ctx_;
  Done done_;
  Clock::time_point start_{};
  UniqueFd sock_;
  TlsSession tls_;  // declared after the socket: the session goes first
  size_t sent_ = 0;
  std::string got_;
  short wait_for_ = POLLIN;
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
  std::make_shared<TcpRun>(spec_, target(), std::move(ctx), std::move(done))->start();
}

}  // namespace pes
