#include "probes/tcp/tcp_probe.h"

#include <netdb.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>

namespace pes {

namespace {

struct FdCloser {
  int fd = -1;
  ~FdCloser() {
    if (fd >= 0) close(fd);
  }
};
struct SslCtxDeleter {
  void operator()(SSL_CTX* c) const { SSL_CTX_free(c); }
};
struct SslDeleter {
  void operator()(SSL* s) const { SSL_free(s); }
};
struct AddrDeleter {
  void operator()(addrinfo* a) const { freeaddrinfo(a); }
};

int ms_left(Clock::time_point deadline) {
  auto left = std::chrono::duration_cast<Millis>(deadline - Clock::now()).count();
  return left < 0 ? 0 : static_cast<int>(left);
}

// Waits for `events` on fd until the deadline; false on timeout.
bool wait_fd(int fd, short events, Clock::time_point deadline) {
  while (true) {
    int left = ms_left(deadline);
    if (left == 0) return false;
    pollfd p{fd, events, 0};
    int n = poll(&p, 1, left);
    if (n > 0) return true;
    if (n == 0) return false;
    if (errno != EINTR) return true;  // let the next call report the error
  }
}

std::string ssl_error_text() {
  unsigned long e = ERR_get_error();
  if (!e) return "TLS handshake failed";
  char buf[256];
  ERR_error_string_n(e, buf, sizeof buf);
  ERR_clear_error();
  return buf;
}

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

const char* kCertHelp = "Earliest notAfter of the certificate chain, unix seconds.";
const char* kConnectHelp = "Time to establish the TCP connection (and TLS if used), seconds.";

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

std::string TcpProbe::target() const {
  return (spec_.host.find(':') != std::string::npos ? "[" + spec_.host + "]" : spec_.host) + ":" +
         spec_.port;
}

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

Outcome TcpProbe::run_blocking(RunContext& ctx) const {
  auto deadline = ctx.deadline();
  auto start = Clock::now();
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_ADDRCONFIG;
  addrinfo* res = nullptr;
  int gai = getaddrinfo(spec_.host.c_str(), spec_.port.c_str(), &hints, &res);
  std::unique_ptr<addrinfo, AddrDeleter> addrs(res);
  if (gai != 0)
    return Outcome::failure(Reason::dns, "cannot resolve " + spec_.host + ": " + gai_strerror(gai));

  FdCloser sock;
  std::string last_error = "no address";
  for (addrinfo* a = res; a; a = a->ai_next) {
    int fd = socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) continue;
    if (connect(fd, a->ai_addr, a->ai_addrlen) == 0) {
      sock.fd = fd;
      break;
    }
    if (errno != EINPROGRESS) {
      last_error = std::strerror(errno);
      close(fd);
      continue;
    }
    if (!wait_fd(fd, POLLOUT, deadline)) {
      close(fd);
      return Outcome::failure(Reason::timeout, "connect to " + target() + " timed out");
    }
    int err = 0;
    socklen_t len = sizeof err;
    getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err == 0) {
      sock.fd = fd;
      break;
    }
    last_error = std::strerror(err);
    close(fd);
  }
  if (sock.fd < 0)
    return Outcome::failure(Reason::connect, "cannot connect to " + target() + ": " + last_error);
  ctx.trace().log("connected to " + target());

  std::unique_ptr<SSL_CTX, SslCtxDeleter> sslctx;
  std::unique_ptr<SSL, SslDeleter> ssl;
  Outcome ok = Outcome::success();
  if (spec_.tls) {
    sslctx.reset(SSL_CTX_new(TLS_client_method()));
    if (!sslctx) return Outcome::failure(Reason::internal, "cannot create a TLS context");
    const auto& t = spec_.tls_options;
    if (!t.insecure_skip_verify) {
      SSL_CTX_set_verify(sslctx.get(), SSL_VERIFY_PEER, nullptr);
      if (!t.ca_file.empty()) {
        if (SSL_CTX_load_verify_locations(sslctx.get(), t.ca_file.c_str(), nullptr) != 1)
          return Outcome::failure(Reason::config, "cannot load ca_file " + t.ca_file);
      } else {
        SSL_CTX_set_default_verify_paths(sslctx.get());
      }
    }
    if (!t.cert_file.empty() &&
        (SSL_CTX_use_certificate_chain_file(sslctx.get(), t.cert_file.c_str()) != 1 ||
         SSL_CTX_use_PrivateKey_file(sslctx.get(), t.key_file.c_str(), SSL_FILETYPE_PEM) != 1))
      return Outcome::failure(Reason::config, "cannot load the client certificate or key");
    ssl.reset(SSL_new(sslctx.get()));
    SSL_set_fd(ssl.get(), sock.fd);
    std::string name = t.server_name.empty() ? spec_.host : t.server_name;
    SSL_set_tlsext_host_name(ssl.get(), name.c_str());
    if (!t.insecure_skip_verify) SSL_set1_host(ssl.get(), name.c_str());
    while (true) {
      int r = SSL_connect(ssl.get());
      if (r == 1) break;
      int e = SSL_get_error(ssl.get(), r);
      if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        if (!wait_fd(sock.fd, e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT, deadline))
          return Outcome::failure(Reason::timeout, "TLS handshake with " + target() + " timed out");
        continue;
      }
      long verify = SSL_get_verify_result(ssl.get());
      if (verify != X509_V_OK)
        return Outcome::failure(Reason::tls, std::string("certificate verification failed: ") +
                                                 X509_verify_cert_error_string(verify));
      return Outcome::failure(Reason::tls, ssl_error_text());
    }
    if (STACK_OF(X509)* chain = SSL_get_peer_cert_chain(ssl.get())) {
      std::optional<int64_t> earliest;
      for (int i = 0; i < sk_X509_num(chain); ++i) {
        const ASN1_TIME* na = X509_get0_notAfter(sk_X509_value(chain, i));
        struct tm tm {};
        if (na && ASN1_TIME_to_tm(na, &tm) == 1) {
          int64_t t64 = timegm(&tm);
          if (!earliest || t64 < *earliest) earliest = t64;
        }
      }
      if (earliest)
        ok.add("probe_ssl_earliest_cert_expiry", kCertHelp, static_cast<double>(*earliest));
    }
    ctx.trace().log("TLS established");
  }
  ok.add("probe_tcp_connect_duration_seconds", kConnectHelp,
         std::chrono::duration<double>(Clock::now() - start).count());

  auto io = [&](bool write, char* buf, size_t len) -> long {
    while (true) {
      long n;
      if (ssl) {
        n = write ? SSL_write(ssl.get(), buf, static_cast<int>(len))
                  : SSL_read(ssl.get(), buf, static_cast<int>(len));
        if (n > 0) return n;
        int e = SSL_get_error(ssl.get(), static_cast<int>(n));
        if (e == SSL_ERROR_ZERO_RETURN) return 0;
        if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) return -1;
        if (!wait_fd(sock.fd, e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT, deadline)) return -2;
      } else {
        n = write ? ::send(sock.fd, buf, len, MSG_NOSIGNAL) : ::recv(sock.fd, buf, len, 0);
        if (n >= 0) return n;
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) return -1;
        if (!wait_fd(sock.fd, write ? POLLOUT : POLLIN, deadline)) return -2;
      }
    }
  };

  if (!spec_.send.empty()) {
    std::string data = spec_.send;
    size_t off = 0;
    while (off < data.size()) {
      long n = io(true, data.data() + off, data.size() - off);
      if (n == -2)
        return Outcome::failure(Reason::timeout, "sending to " + target() + " timed out");
      if (n <= 0) return Outcome::failure(Reason::connect, "connection closed while sending");
      off += static_cast<size_t>(n);
    }
  }
  if (spec_.expect) {
    std::string got;
    char buf[4096];
    while (!RE2::PartialMatch(got, *spec_.expect)) {
      if (got.size() > 65536)
        return Outcome::failure(Reason::assertion, "no match for /" + spec_.expect->pattern() +
                                                       "/ in the first 64 KiB");
      long n = io(false, buf, sizeof buf);
      if (n == -2) {
        // The answer may still be coming (a slow server): a timeout, but say what did come, so
        // that a wrong service on the port (an SSH banner where PONG was expected) shows.
        std::string msg =
            "no answer matching /" + spec_.expect->pattern() + "/ before the deadline";
        if (!got.empty())
          msg += "; received " + std::to_string(got.size()) + " bytes: " + printable_excerpt(got);
        return Outcome::failure(Reason::timeout, msg);
      }
      if (n < 0)
        return Outcome::failure(Reason::connect, "connection reset while reading the answer");
      if (n == 0)
        return Outcome::failure(Reason::assertion, "connection closed before the answer matched /" +
                                                       spec_.expect->pattern() + "/");
      got.append(buf, static_cast<size_t>(n));
    }
    ctx.trace().log("answer matched /" + spec_.expect->pattern() + "/");
  }
  if (ssl) SSL_shutdown(ssl.get());
  return ok;
}

}  // namespace pes
