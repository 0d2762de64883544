#include "probes/ldap/ldap_probe.h"

#include <arpa/inet.h>
#include <lber.h>
#include <ldap.h>
#include <netdb.h>
#include <netinet/in.h>
#include <openldap.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <mutex>
#include <utility>

namespace pes {

namespace {

const char* kConnectHelp =
    "Time to connect to the LDAP server (TLS handshake included for ldaps://), seconds.";
const char* kStartTlsHelp = "Time of the StartTLS exchange and TLS handshake, seconds.";
const char* kBindHelp = "Time of the LDAP bind, seconds.";
const char* kSearchHelp = "Time of the LDAP search, seconds.";
const char* kEntriesHelp = "Entries the LDAP search returned (counted up to 1000).";
const char* kResultHelp =
    "Result code of the last LDAP operation the server answered (0 success, 49 invalid "
    "credentials).";
const char* kCertHelp = "Earliest notAfter of the certificate chain, unix seconds.";

struct LdapCloser {
  void operator()(LDAP* ld) const { ldap_unbind_ext_s(ld, nullptr, nullptr); }
};
struct MessageFreer {
  void operator()(LDAPMessage* m) const { ldap_msgfree(m); }
};
struct SslCtxFreer {
  void operator()(SSL_CTX* c) const { SSL_CTX_free(c); }
};
struct SslFreer {
  void operator()(SSL* s) const { SSL_free(s); }
};
struct AddrFreer {
  void operator()(addrinfo* a) const { freeaddrinfo(a); }
};
using LdapHandle = std::unique_ptr<LDAP, LdapCloser>;
using LdapMessagePtr = std::unique_ptr<LDAPMessage, MessageFreer>;
using SslCtxPtr = std::unique_ptr<SSL_CTX, SslCtxFreer>;
using SslPtr = std::unique_ptr<SSL, SslFreer>;

// A socket until libldap takes it over.
struct OwnedFd {
  int fd = -1;
  ~OwnedFd() {
    if (fd >= 0) close(fd);
  }
  int release() { return std::exchange(fd, -1); }
};

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

// libldap reads ldap.conf and sets up its global defaults on first use; do that once, not racing
// between workers.
void ldap_global_init() {
  static std::once_flag once;
  std::call_once(once, [] {
    int version = LDAP_VERSION3;
    ldap_set_option(nullptr, LDAP_OPT_PROTOCOL_VERSION, &version);
  });
}

int ms_left(Clock::time_point deadline) {
  auto left = std::chrono::duration_cast<Millis>(deadline - Clock::now()).count();
  if (left <= 0) return 0;
  return left > 1000000 ? 1000000 : static_cast<int>(left);
}

// Waits until fd is ready for `events` or the deadline passes; false on timeout.
bool wait_fd(int fd, short events, Clock::time_point deadline) {
  while (true) {
    int left = ms_left(deadline);
    if (left == 0) return false;
    pollfd p{fd, events, 0};
    int n = poll(&p, 1, left);
    if (n > 0) return true;
    if (n == 0) return false;
    if (errno != EINTR) return true;  // the next call reports the error
  }
}

// The time left until the deadline as a timeval; false if none is left.
bool time_left(Clock::time_point deadline, timeval& tv) {
  auto left =
      std::chrono::duration_cast<std::chrono::microseconds>(deadline - Clock::now()).count();
  if (left <= 0) return false;
  tv.tv_sec = static_cast<time_t>(left / 1000000);
  tv.tv_usec = static_cast<suseconds_t>(left % 1000000);
  return true;
}

// Bounds libldap's waits for answers (LDAP_OPT_TIMEOUT) and any connection it would open itself.
bool arm_timeouts(LDAP* ld, Clock::time_point deadline) {
  timeval tv{};
  if (!time_left(deadline, tv)) return false;
  ldap_set_option(ld, LDAP_OPT_NETWORK_TIMEOUT, &tv);
  ldap_set_option(ld, LDAP_OPT_TIMEOUT, &tv);
  return true;
}

std::string diagnostic(LDAP* ld) {
  char* msg = nullptr;
  std::string out;
  if (ldap_get_option(ld, LDAP_OPT_DIAGNOSTIC_MESSAGE, &msg) == LDAP_OPT_SUCCESS && msg) {
    out = msg;
    ldap_memfree(msg);
  }
  return out;
}

std::string describe_rc(LDAP* ld, int rc) {
  std::string text = std::string(ldap_err2string(rc)) + " (result " + std::to_string(rc) + ")";
  std::string diag = diagnostic(ld);
  if (!diag.empty()) text += ": " + diag;
  return text;
}

std::string ssl_error_text() {
  unsigned long e = ERR_get_error();
  ERR_clear_error();
  if (!e) return "TLS handshake failed";
  char buf[256];
  ERR_error_string_n(e, buf, sizeof buf);
  return buf;
}

int scope_value(const std::string& scope) {
  if (scope == "base") return LDAP_SCOPE_BASE;
  if (scope == "one") return LDAP_SCOPE_ONELEVEL;
  return LDAP_SCOPE_SUBTREE;
}

// A quick syntax check so that typos are config errors, not failed runs.
bool filter_looks_valid(const std::string& f) {
  if (f.size() < 3 || f.front() != '(' || f.back() != ')') return false;
  int depth = 0;
  bool escaped = false;
  for (size_t i = 0; i < f.size(); ++i) {
    char c = f[i];
    if (escaped) {
      escaped = false;
      continue;
    }
    if (c == '\\') escaped = true;
    if (c == '(') ++depth;
    if (c == ')' && --depth < 0) return false;
    if (depth == 0 && i + 1 < f.size()) return false;  // two filters side by side
  }
  return depth == 0 && f.find('=') != std::string::npos;
}

// ---------------------------------------------------------------------------------------------
// A libldap Sockbuf I/O layer that reads and writes through an OpenSSL session on the socket.
// The socket is non-blocking: "would block" goes back to libldap, which waits with poll() and its
// LDAP_OPT_TIMEOUT, so no read or write ever outlives the deadline.

int tls_io_setup(Sockbuf_IO_Desc* d, void* arg) {
  d->sbiod_pvt = arg;
  return 0;
}
int tls_io_remove(Sockbuf_IO_Desc* d) {
  d->sbiod_pvt = nullptr;
  return 0;
}
int tls_io_ctrl(Sockbuf_IO_Desc* d, int opt, void* arg) {
  SSL* ssl = static_cast<SSL*>(d->sbiod_pvt);
  if (opt == LBER_SB_OPT_DATA_READY && ssl && SSL_pending(ssl) > 0) return 1;
  if (opt == LBER_SB_OPT_GET_SSL) {
    *static_cast<void**>(arg) = ssl;
    return 1;
  }
  return LBER_SBIOD_CTRL_NEXT(d, opt, arg);
}
ber_slen_t tls_io_result(SSL* ssl, int n) {
  if (n > 0) return n;
  switch (SSL_get_error(ssl, n)) {
    case SSL_ERROR_ZERO_RETURN:
      return 0;
    case SSL_ERROR_WANT_READ:
    case SSL_ERROR_WANT_WRITE:
      errno = EWOULDBLOCK;
      return -1;
    default:
      ERR_clear_error();
      if (errno == 0 || errno == EWOULDBLOCK) errno = ECONNRESET;
      return -1;
  }
}
ber_slen_t tls_io_read(Sockbuf_IO_Desc* d, void* buf, ber_len_t len) {
  SSL* ssl = static_cast<SSL*>(d->sbiod_pvt);
  if (!ssl) return -1;
  errno = 0;
  return tls_io_result(ssl, SSL_read(ssl, buf, static_cast<int>(len > INT_MAX ? INT_MAX : len)));
}
ber_slen_t tls_io_write(Sockbuf_IO_Desc* d, void* buf, ber_len_t len) {
  SSL* ssl = static_cast<SSL*>(d->sbiod_pvt);
  if (!ssl) return -1;
  errno = 0;
  return tls_io_result(ssl, SSL_write(ssl, buf, static_cast<int>(len > INT_MAX ? INT_MAX : len)));
}
int tls_io_close(Sockbuf_IO_Desc*) {
  return 0;
}  // the SSL belongs to the run; the fd to the layer below

Sockbuf_IO kTlsIo = {tls_io_setup, tls_io_remove, tls_io_ctrl,
                     tls_io_read,  tls_io_write,  tls_io_close};

// A pass-through layer on top (above TLS) that keeps the first byte the server sent. Bytes that
// cannot start an LDAP message (a SEQUENCE, 0x30) come from another protocol (an SSH or SMTP
// banner): libldap would wait until the deadline for the rest of a "message" that never comes, so
// the layer fails the read and the run says "not LDAP".
struct FirstByte {
  int value = -1;
};
int sniff_setup(Sockbuf_IO_Desc* d, void* arg) {
  d->sbiod_pvt = arg;
  return 0;
}
int sniff_remove(Sockbuf_IO_Desc* d) {
  d->sbiod_pvt = nullptr;
  return 0;
}
int sniff_ctrl(Sockbuf_IO_Desc* d, int opt, void* arg) { return LBER_SBIOD_CTRL_NEXT(d, opt, arg); }
ber_slen_t sniff_read(Sockbuf_IO_Desc* d, void* buf, ber_len_t len) {
  ber_slen_t n = LBER_SBIOD_READ_NEXT(d, buf, len);
  auto* first = static_cast<FirstByte*>(d->sbiod_pvt);
  if (n > 0 && first && first->value < 0) first->value = *static_cast<unsigned char*>(buf);
  if (n > 0 && first && first->value != 0x30) {
    errno = EPROTO;  // libldap gives up at once (LDAP_SERVER_DOWN) instead of at the deadline
    return -1;
  }
  return n;
}
ber_slen_t sniff_write(Sockbuf_IO_Desc* d, void* buf, ber_len_t len) {
  return LBER_SBIOD_WRITE_NEXT(d, buf, len);
}
int sniff_close(Sockbuf_IO_Desc*) { return 0; }
Sockbuf_IO kSniffIo = {sniff_setup, sniff_remove, sniff_ctrl, sniff_read, sniff_write, sniff_close};

bool push_sniff_layer(LDAP* ld, FirstByte* first) {
  Sockbuf* sb = nullptr;
  if (ldap_get_option(ld, LDAP_OPT_SOCKBUF, &sb) != LDAP_OPT_SUCCESS || !sb) return false;
  return ber_sockbuf_add_io(sb, &kSniffIo, LBER_SBIOD_LEVEL_APPLICATION, first) == 0;
}

// Per run: the TLS objects outlive the LDAP handle that writes through them.
struct TlsSession {
  SslCtxPtr ctx;
  SslPtr ssl;
};

// Connects to host:port before the deadline; the socket is left non-blocking.
std::optional<Outcome> connect_tcp(const LdapSpec& spec, Clock::time_point deadline, OwnedFd& out) {
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_ADDRCONFIG;
  addrinfo* res = nullptr;
  std::string port = std::to_string(spec.port);
  int gai = getaddrinfo(spec.host.c_str(), port.c_str(), &hints, &res);
  std::unique_ptr<addrinfo, AddrFreer> addrs(res);
  if (gai != 0)
    return Outcome::failure(Reason::dns, "cannot resolve " + spec.host + ": " + gai_strerror(gai));
  std::string last_error = "no address";
  for (addrinfo* a = res; a; a = a->ai_next) {
    OwnedFd s;
    s.fd = socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol);
    if (s.fd < 0) {
      last_error = std::strerror(errno);
      continue;
    }
    if (connect(s.fd, a->ai_addr, a->ai_addrlen) != 0) {
      if (errno != EINPROGRESS) {
        last_error = std::strerror(errno);
        continue;
      }
      if (!wait_fd(s.fd, POLLOUT, deadline))
        return Outcome::failure(Reason::timeout, "connect to " + spec.url + " timed out");
      int err = 0;
      socklen_t len = sizeof err;
      getsockopt(s.fd, SOL_SOCKET, SO_ERROR, &err, &len);
      if (err != 0) {
        last_error = std::strerror(err);
        continue;
      }
    }
    out.fd = s.release();
    return std::nullopt;
  }
  return Outcome::failure(Reason::connect, "cannot connect to " + spec.url + ": " + last_error);
}

// TLS on a connected socket, verified against tls.ca_file (or the system's CAs) and the URL's host.
std::optional<Outcome> tls_handshake(const LdapSpec& spec, int fd, Clock::time_point deadline,
                                     TlsSession& tls, Outcome& result) {
  const auto& t = spec.tls;
  tls.ctx.reset(SSL_CTX_new(TLS_client_method()));
  if (!tls.ctx) return Outcome::failure(Reason::internal, "cannot create a TLS context");
  SSL_CTX_set_options(tls.ctx.get(), SSL_OP_IGNORE_UNEXPECTED_EOF);
  SSL_CTX_set_mode(tls.ctx.get(),
                   SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  if (!t.insecure_skip_verify) {
    SSL_CTX_set_verify(tls.ctx.get(), SSL_VERIFY_PEER, nullptr);
    if (!t.ca_file.empty()) {
      if (SSL_CTX_load_verify_locations(tls.ctx.get(), t.ca_file.c_str(), nullptr) != 1)
        return Outcome::failure(Reason::config,
                                "cannot load ca_file " + t.ca_file + ": " + ssl_error_text());
    } else {
      SSL_CTX_set_default_verify_paths(tls.ctx.get());
    }
  }
  if (!t.cert_file.empty() &&
      (SSL_CTX_use_certificate_chain_file(tls.ctx.get(), t.cert_file.c_str()) != 1 ||
       SSL_CTX_use_PrivateKey_file(tls.ctx.get(), t.key_file.c_str(), SSL_FILETYPE_PEM) != 1))
    return Outcome::failure(Reason::config,
                            "cannot load the client certificate or key: " + ssl_error_text());
  tls.ssl.reset(SSL_new(tls.ctx.get()));
  if (!tls.ssl) return Outcome::failure(Reason::internal, "cannot create a TLS session");
  SSL* ssl = tls.ssl.get();
  SSL_set_fd(ssl, fd);
  in6_addr ip6{};
  in_addr ip4{};
  bool is_ip = inet_pton(AF_INET, spec.host.c_str(), &ip4) == 1 ||
               inet_pton(AF_INET6, spec.host.c_str(), &ip6) == 1;
  if (!is_ip) SSL_set_tlsext_host_name(ssl, spec.host.c_str());
  if (!t.insecure_skip_verify) {
    X509_VERIFY_PARAM* param = SSL_get0_param(ssl);
    if (is_ip)
      X509_VERIFY_PARAM_set1_ip_asc(param, spec.host.c_str());
    else
      SSL_set1_host(ssl, spec.host.c_str());
  }
  ERR_clear_error();
  while (true) {
    int r = SSL_connect(ssl);
    if (r == 1) break;
    int e = SSL_get_error(ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
      if (!wait_fd(fd, e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT, deadline))
        return Outcome::failure(Reason::timeout, "TLS handshake with " + spec.url +
                                                     " did not finish before the deadline");
      continue;
    }
    long verify = SSL_get_verify_result(ssl);
    if (verify != X509_V_OK)
      return Outcome::failure(Reason::tls, std::string("certificate verification failed: ") +
                                               X509_verify_cert_error_string(verify));
    std::string err = ssl_error_text();
    if (e == SSL_ERROR_SYSCALL || e == SSL_ERROR_ZERO_RETURN)
      err = "the server closed the connection during the TLS handshake";
    return Outcome::failure(Reason::tls, err);
  }
  if (STACK_OF(X509)* chain = SSL_get_peer_cert_chain(ssl)) {
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
      result.add("probe_ssl_earliest_cert_expiry", kCertHelp, static_cast<double>(*earliest));
  }
  return std::nullopt;
}

// Puts the TLS layer on top of the handle's socket.
bool push_tls_layer(LDAP* ld, SSL* ssl) {
  Sockbuf* sb = nullptr;
  if (ldap_get_option(ld, LDAP_OPT_SOCKBUF, &sb) != LDAP_OPT_SUCCESS || !sb) return false;
  return ber_sockbuf_add_io(sb, &kTlsIo, LBER_SBIOD_LEVEL_TRANSPORT, ssl) == 0;
}

}  // namespace

Reason classify_ldap_result(int rc, LdapStep step, bool tls) {
  switch (rc) {
    case LDAP_TIMEOUT:
    case LDAP_TIMELIMIT_EXCEEDED:
      return Reason::timeout;
    case LDAP_SERVER_DOWN:
      return Reason::connect;
    case LDAP_CONNECT_ERROR:
      return tls ? Reason::tls : Reason::connect;
    case LDAP_INVALID_CREDENTIALS:
    case LDAP_INAPPROPRIATE_AUTH:
    case LDAP_INSUFFICIENT_ACCESS:
    case LDAP_STRONG_AUTH_REQUIRED:
    case LDAP_CONFIDENTIALITY_REQUIRED:
      return Reason::auth;
    case LDAP_UNWILLING_TO_PERFORM:
      return step == LdapStep::bind ? Reason::auth : Reason::protocol;
    case LDAP_BUSY:
    case LDAP_UNAVAILABLE:
      return step == LdapStep::start_tls ? Reason::tls : Reason::connect;
    case LDAP_NO_SUCH_OBJECT:
      return step == LdapStep::search ? Reason::assertion : Reason::auth;
    case LDAP_FILTER_ERROR:
    case LDAP_PARAM_ERROR:
    case LDAP_INVALID_DN_SYNTAX:
      return Reason::config;
    default:
      break;
  }
  // A server that answers StartTLS with any other refusal does not offer TLS.
  if (step == LdapStep::start_tls && rc > 0) return Reason::tls;
  return Reason::protocol;
}

std::unique_ptr<Probe> LdapProbe::parse(Section& s) {
  LdapSpec spec;
  bool ok = true;
  auto url = s.str("url", Section::required);
  bool ldaps = false;
  if (url) {
    spec.url = *url;
    LDAPURLDesc* desc = nullptr;
    if (url->rfind("ldap://", 0) != 0 && url->rfind("ldaps://", 0) != 0) {
      s.error("url", "URL \"" + *url + "\" must start with ldap:// or ldaps://");
      ok = false;
    } else if (ldap_url_parse(url->c_str(), &desc) != LDAP_URL_SUCCESS || !desc) {
      s.error("url",
              "invalid LDAP URL \"" + *url + "\" (use ldap://host:port or ldaps://host:port)");
      ok = false;
    } else {
      std::string scheme = desc->lud_scheme ? desc->lud_scheme : "";
      if (scheme != "ldap" && scheme != "ldaps") {
        s.error("url", "URL \"" + *url + "\" must start with ldap:// or ldaps://");
        ok = false;
      } else if (!desc->lud_host || !*desc->lud_host) {
        s.error("url", "URL \"" + *url + "\" has no host");
        ok = false;
      }
      ldaps = scheme == "ldaps";
      spec.ldaps = ldaps;
      spec.host = desc->lud_host ? desc->lud_host : "";
      spec.port = desc->lud_port > 0 ? desc->lud_port : (ldaps ? LDAPS_PORT : LDAP_PORT);
      ldap_free_urldesc(desc);
    }
  }
  spec.start_tls = s.boolean("start_tls").value_or(false);
  if (spec.start_tls && ldaps) {
    s.error("start_tls", "StartTLS is for ldap:// URLs; ldaps:// is TLS from the start");
    ok = false;
  }
  spec.bind_dn = s.str_or("bind_dn", "");
  spec.password = s.str_or("password", "", Section::secret);
  if (!spec.bind_dn.empty() && spec.password.empty()) {
    s.error("password", "required with bind_dn (an empty password makes an unauthenticated bind)");
    ok = false;
  }
  if (spec.bind_dn.empty() && !spec.password.empty()) {
    s.error("bind_dn", "required with password");
    ok = false;
  }
  if (s.has("search")) {
    Section q = s.sub("search");
    LdapSearchSpec search;
    search.base = q.str_or("base", "");
    search.filter = q.str_or("filter", search.filter);
    if (!filter_looks_valid(search.filter)) {
      q.error("filter", "invalid LDAP filter \"" + search.filter +
                            "\" (e.g. (uid=probe) or (&(objectClass=person)(uid=x)))");
      ok = false;
    }
    search.scope = q.str_or("scope", search.scope);
    if (!q.one_of("scope", search.scope, {"base", "one", "sub"})) ok = false;
    search.min_entries = static_cast<int>(q.integer("min_entries", 0, kLdapMaxEntries).value_or(1));
    spec.search = std::move(search);
  }
  {
    Section t = s.sub("tls");  // the common block, minus what libldap cannot do
    for (const char* known : {"ca_file", "cert_file", "key_file", "insecure_skip_verify"})
      t.has(known);
    if (t.has("server_name"))
      t.error("server_name", "not supported by ldap (the certificate must match the URL's host)");
  }
  spec.tls = s.tls();
  if (!ok) return nullptr;
  return std::make_unique<LdapProbe>(std::move(spec));
}

void LdapProbe::run(RunContextPtr ctx, Done done) {
  ctx->blocking(
      [spec = spec_, ctx, done] { done(run_ldap(*spec, ctx->deadline(), ctx->trace())); });
}

Outcome run_ldap(const LdapSpec& spec, Clock::time_point deadline, Trace& trace) {
  ldap_global_init();
  Outcome result = Outcome::success();
  auto fail = [&](Outcome out) {
    if (trace.enabled()) trace.log(out.message);
    for (auto& s : result.samples) out.samples.push_back(std::move(s));
    return out;
  };
  auto timed_out = [&](const std::string& step) {
    return fail(Outcome::failure(
        Reason::timeout, "no answer from " + spec.url + " before the deadline (" + step + ")"));
  };

  // Connect (and for ldaps:// do TLS) ourselves, within the deadline.
  if (trace.enabled()) trace.log("connecting to " + spec.url);
  auto t0 = Clock::now();
  OwnedFd sock;
  if (auto failed = connect_tcp(spec, deadline, sock)) return fail(std::move(*failed));
  TlsSession tls;   // declared before the LDAP handle: it must outlive it
  FirstByte first;  // the sniff layer's state; outlives the LDAP handle too
  if (spec.ldaps) {
    if (auto failed = tls_handshake(spec, sock.fd, deadline, tls, result))
      return fail(std::move(*failed));
  }
  result.add("probe_ldap_connect_duration_seconds", kConnectHelp, seconds_since(t0));
  if (trace.enabled()) trace.log(spec.ldaps ? "connected, TLS established" : "connected");

  // libldap gets the socket; should it ever reconnect by itself, it gets a plain ldap:// URL (never
  // its own TLS) and the network timeout.
  std::string plain_url =
      "ldap://" + (spec.host.find(':') != std::string::npos ? "[" + spec.host + "]" : spec.host) +
      ":" + std::to_string(spec.port);
  LDAP* raw = nullptr;
  int rc = ldap_init_fd(sock.fd, LDAP_PROTO_TCP, plain_url.c_str(), &raw);
  if (rc != LDAP_SUCCESS || !raw)
    return fail(
        Outcome::failure(Reason::internal,
                         std::string("libldap cannot use the connection: ") + ldap_err2string(rc)));
  sock.release();  // closed by the handle from now on
  LdapHandle ld(raw);
  int version = LDAP_VERSION3;
  ldap_set_option(ld.get(), LDAP_OPT_PROTOCOL_VERSION, &version);
  ldap_set_option(ld.get(), LDAP_OPT_REFERRALS, LDAP_OPT_OFF);  // never wander to other servers
  ldap_set_option(ld.get(), LDAP_OPT_RESTART, LDAP_OPT_ON);     // retry on EINTR
  if (spec.ldaps && !push_tls_layer(ld.get(), tls.ssl.get()))
    return fail(Outcome::failure(Reason::internal, "cannot attach TLS to the LDAP connection"));
  if (!push_sniff_layer(ld.get(), &first))
    return fail(Outcome::failure(Reason::internal, "cannot attach a layer to the LDAP connection"));

  auto failure_of = [&](int code, LdapStep step, bool tls_step, const std::string& what) {
    if (code > 0) result.add("probe_ldap_result_code", kResultHelp, code);
    Reason r = classify_ldap_result(code, step, tls_step);
    if (code < 0 && Clock::now() >= deadline) r = Reason::timeout;
    if (code < 0 && first.value >= 0 && first.value != 0x30) {
      char hex[16];
      std::snprintf(hex, sizeof hex, "0x%02x", static_cast<unsigned>(first.value & 0xff));
      return fail(Outcome::failure(Reason::protocol, "the answer from " + spec.url + " to the " +
                                                         what + " is not LDAP (first byte " + hex +
                                                         ")"));
    }
    if (r == Reason::timeout && code < 0)
      return fail(Outcome::failure(
          r, "no answer from " + spec.url + " to the " + what + " before the deadline"));
    return fail(Outcome::failure(r, what + " failed: " + describe_rc(ld.get(), code)));
  };

  // StartTLS: the extended operation, then our handshake on the same socket.
  if (spec.start_tls) {
    if (!arm_timeouts(ld.get(), deadline)) return timed_out("StartTLS");
    if (trace.enabled()) trace.log("StartTLS");
    t0 = Clock::now();
    char* oid = nullptr;
    berval* data = nullptr;
    rc = ldap_extended_operation_s(ld.get(), LDAP_EXOP_START_TLS, nullptr, nullptr, nullptr, &oid,
                                   &data);
    if (oid) ldap_memfree(oid);
    if (data) ber_bvfree(data);
    // A server that answered with a refusal offers no TLS; one that vanished is a connection
    // problem.
    if (rc != LDAP_SUCCESS) return failure_of(rc, LdapStep::start_tls, rc > 0, "StartTLS");
    int fd = -1;
    ldap_get_option(ld.get(), LDAP_OPT_DESC, &fd);
    if (fd < 0) return fail(Outcome::failure(Reason::internal, "no socket after StartTLS"));
    if (auto failed = tls_handshake(spec, fd, deadline, tls, result))
      return fail(std::move(*failed));
    if (!push_tls_layer(ld.get(), tls.ssl.get()))
      return fail(Outcome::failure(Reason::internal, "cannot attach TLS to the LDAP connection"));
    result.add("probe_ldap_starttls_duration_seconds", kStartTlsHelp, seconds_since(t0));
    if (trace.enabled()) trace.log("TLS established (StartTLS)");
  }

  // Simple bind (anonymous without bind_dn).
  if (!arm_timeouts(ld.get(), deadline)) return timed_out("bind");
  if (trace.enabled())
    trace.log(spec.bind_dn.empty() ? "anonymous bind" : "simple bind as " + spec.bind_dn);
  berval cred{static_cast<ber_len_t>(spec.password.size()),
              const_cast<char*>(spec.password.data())};
  t0 = Clock::now();
  rc = ldap_sasl_bind_s(ld.get(), spec.bind_dn.empty() ? nullptr : spec.bind_dn.c_str(),
                        LDAP_SASL_SIMPLE, &cred, nullptr, nullptr, nullptr);
  double bind_seconds = seconds_since(t0);
  if (rc > 0 || rc == LDAP_SUCCESS)
    result.add("probe_ldap_bind_duration_seconds", kBindHelp, bind_seconds);
  if (rc != LDAP_SUCCESS) return failure_of(rc, LdapStep::bind, false, "bind");
  if (trace.enabled()) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "bind succeeded in %.3fs", bind_seconds);
    trace.log(buf);
  }
  if (!spec.search) {
    result.add("probe_ldap_result_code", kResultHelp, 0);
    return result;
  }

  // Search: no attributes ("1.1"), only the entries counted.
  const auto& q = *spec.search;
  timeval tv{};
  if (!time_left(deadline, tv) || !arm_timeouts(ld.get(), deadline)) return timed_out("search");
  if (trace.enabled())
    trace.log("search base=\"" + q.base + "\" scope=" + q.scope + " filter=" + q.filter);
  char no_attrs[] = "1.1";
  char* attrs[] = {no_attrs, nullptr};
  LDAPMessage* raw_res = nullptr;
  t0 = Clock::now();
  rc = ldap_search_ext_s(ld.get(), q.base.c_str(), scope_value(q.scope), q.filter.c_str(), attrs, 0,
                         nullptr, nullptr, &tv, kLdapMaxEntries, &raw_res);
  LdapMessagePtr res(raw_res);
  double search_seconds = seconds_since(t0);
  // sizeLimitExceeded still delivers the entries up to the limit: enough to judge min_entries.
  if (rc != LDAP_SUCCESS && rc != LDAP_SIZELIMIT_EXCEEDED) {
    if (rc > 0) result.add("probe_ldap_search_duration_seconds", kSearchHelp, search_seconds);
    if (rc == LDAP_NO_SUCH_OBJECT) {
      result.add("probe_ldap_search_entries", kEntriesHelp, 0);
      result.add("probe_ldap_result_code", kResultHelp, rc);
      return fail(Outcome::failure(
          Reason::assertion,
          "search base \"" + q.base + "\" does not exist: " + describe_rc(ld.get(), rc)));
    }
    return failure_of(rc, LdapStep::search, false, "search");
  }
  int entries = res ? ldap_count_entries(ld.get(), res.get()) : 0;
  if (entries < 0) entries = 0;
  result.add("probe_ldap_search_duration_seconds", kSearchHelp, search_seconds);
  result.add("probe_ldap_search_entries", kEntriesHelp, entries);
  result.add("probe_ldap_result_code", kResultHelp, rc);
  if (trace.enabled()) {
    char buf[96];
    std::snprintf(buf, sizeof buf, "search returned %d entr%s in %.3fs (result %d)", entries,
                  entries == 1 ? "y" : "ies", search_seconds, rc);
    trace.log(buf);
  }
  if (entries < q.min_entries)
    return fail(Outcome::failure(Reason::assertion, "search found " + std::to_string(entries) +
                                                        " entr" + (entries == 1 ? "y" : "ies") +
                                                        ", fewer than min_entries " +
                                                        std::to_string(q.min_entries)));
  return result;
}

}  // namespace pes
