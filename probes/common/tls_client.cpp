#include "probes/common/tls_client.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <poll.h>

#include <ctime>
#include <memory>

namespace pes {

namespace {

const char* kCertHelp = "Earliest notAfter of the certificate chain, unix seconds.";

bool is_ip_address(const std::string& host) {
  in6_addr ip6{};
  in_addr ip4{};
  return inet_pton(AF_INET, host.c_str(), &ip4) == 1 ||
         inet_pton(AF_INET6, host.c_str(), &ip6) == 1;
}

// The context: the options' trust anchors (or the system's) and client certificate.
std::optional<Outcome> make_context(TlsSession& session, const TlsOptions& t, const TlsPeer& peer) {
  session.ctx.reset(SSL_CTX_new(TLS_client_method()));
  SSL_CTX* ctx = session.ctx.get();
  if (!ctx) return Outcome::failure(Reason::internal, "cannot create a TLS context");
  if (peer.ignore_unexpected_eof) SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
  SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  if (!t.insecure_skip_verify) {
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
    if (t.ca_file.empty()) {
      SSL_CTX_set_default_verify_paths(ctx);
    } else if (SSL_CTX_load_verify_locations(ctx, t.ca_file.c_str(), nullptr) != 1) {
      return Outcome::failure(Reason::config,
                              "cannot load ca_file " + t.ca_file + ": " + ssl_error_text());
    }
  }
  if (!t.cert_file.empty() &&
      (SSL_CTX_use_certificate_chain_file(ctx, t.cert_file.c_str()) != 1 ||
       SSL_CTX_use_PrivateKey_file(ctx, t.key_file.c_str(), SSL_FILETYPE_PEM) != 1))
    return Outcome::failure(Reason::config,
                            "cannot load the client certificate or key: " + ssl_error_text());
  return std::nullopt;
}

// The session on fd: SNI for a host name, and the name (or IP address) the certificate must match.
std::optional<Outcome> make_session(TlsSession& session, int fd, const TlsOptions& t,
                                    const TlsPeer& peer) {
  session.ssl.reset(SSL_new(session.ctx.get()));
  SSL* ssl = session.ssl.get();
  if (!ssl) return Outcome::failure(Reason::internal, "cannot create a TLS session");
  SSL_set_fd(ssl, fd);
  bool ip = is_ip_address(peer.name);
  if (!ip) SSL_set_tlsext_host_name(ssl, peer.name.c_str());
  if (!t.insecure_skip_verify) {
    if (ip)
      X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), peer.name.c_str());
    else
      SSL_set1_host(ssl, peer.name.c_str());
  }
  return std::nullopt;
}

// Drives SSL_connect on the non-blocking socket, waiting on the loop whenever OpenSSL wants to
// read or write, until done, failed or out of time.
class Handshake : public std::enable_shared_from_this<Handshake> {
 public:
  Handshake(RunContextPtr ctx, SSL* ssl, int fd, std::string target, Handshaken done)
      : ctx_(std::move(ctx)),
        ssl_(ssl),
        fd_(fd),
        target_(std::move(target)),
        done_(std::move(done)) {}

  void step() {
    ERR_clear_error();
    const int r = SSL_connect(ssl_);
    if (r == 1) return done_(std::nullopt);
    const int e = SSL_get_error(ssl_, r);
    if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) return done_(failure(e));
    ctx_->wait_fd(
        fd_, e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT, [self = shared_from_this()](bool ready) {
          if (ready) return self->step();
          self->done_(Outcome::failure(Reason::timeout, "TLS handshake with " + self->target_ +
                                                            " did not finish before the deadline"));
        });
  }

 private:
  Outcome failure(int e) const {
    const long verify = SSL_get_verify_result(ssl_);
    if (verify != X509_V_OK)
      return Outcome::failure(Reason::tls, std::string("certificate verification failed: ") +
                                               X509_verify_cert_error_string(verify));
    std::string err = ssl_error_text();
    if (e == SSL_ERROR_SYSCALL || e == SSL_ERROR_ZERO_RETURN)
      err = "the server closed the connection during the TLS handshake";
    return Outcome::failure(Reason::tls, err);
  }

  RunContextPtr ctx_;
  SSL* ssl_;  // the caller's session owns it
  int fd_;
  std::string target_;
  Handshaken done_;
};

}  // namespace

void tls_handshake(const RunContextPtr& ctx, TlsSession& session, int fd, const TlsOptions& options,
                   const TlsPeer& peer, Handshaken done) {
  if (auto failed = make_context(session, options, peer)) return done(std::move(failed));
  if (auto failed = make_session(session, fd, options, peer)) return done(std::move(failed));
  std::make_shared<Handshake>(ctx, session.ssl.get(), fd, peer.target, std::move(done))->step();
}

std::optional<int64_t> earliest_cert_expiry(SSL* ssl) {
  STACK_OF(X509)* chain = SSL_get_peer_cert_chain(ssl);
  if (!chain) return std::nullopt;
  std::optional<int64_t> earliest;
  for (int i = 0; i < sk_X509_num(chain); ++i) {
    const ASN1_TIME* not_after = X509_get0_notAfter(sk_X509_value(chain, i));
    struct tm tm {};
    if (!not_after || ASN1_TIME_to_tm(not_after, &tm) != 1) continue;
    int64_t t = timegm(&tm);
    if (!earliest || t < *earliest) earliest = t;
  }
  return earliest;
}

void add_cert_expiry_sample(Outcome& out, SSL* ssl) {
  if (auto t = earliest_cert_expiry(ssl))
    out.add("probe_ssl_earliest_cert_expiry", kCertHelp, static_cast<double>(*t));
}

std::string ssl_error_text(const char* fallback) {
  unsigned long e = ERR_get_error();
  ERR_clear_error();
  if (!e) return fallback;
  char buf[256];
  ERR_error_string_n(e, buf, sizeof buf);
  return buf;
}

}  // namespace pes
