#include "probes/ldap/ldap_probe.h"

#include <lber.h>
#include <ldap.h>
#include <openldap.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <sys/time.h>

#include <cerrno>
#include <climits>
#include <cstdio>
#include <mutex>
#include <utility>

#include "probes/common/deadline.h"
#include "probes/common/handles.h"
#include "probes/common/net.h"
#include "probes/common/tls_client.h"

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

// libldap reads ldap.conf and sets up its global defaults on first use; do that once, not racing
// between workers.
void ldap_global_init() {
  static std::once_flag once;
  std::call_once(once, [] {
    int version = LDAP_VERSION3;
    ldap_set_option(nullptr, LDAP_OPT_PROTOCOL_VERSION, &version);
  });
}

std::string diagnostic(LDAP* ld) {
  char* msg = nullptr;
  if (ldap_get_option(ld, LDAP_OPT_DIAGNOSTIC_MESSAGE, &msg) != LDAP_OPT_SUCCESS) return {};
  LdapMemPtr owner(msg);
  return msg ? std::string(msg) : std::string();
}

std::string describe_rc(LDAP* ld, int rc) {
  std::string text = std::string(ldap_err2string(rc)) + " (result " + std::to_string(rc) + ")";
  std::string diag = diagnostic(ld);
  if (!diag.empty()) text += ": " + diag;
  return text;
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
// The socket is non-blocking: "would block" goes back to libldap, whose ldap_result() is only
// ever asked without waiting; the run waits for the socket on the event loop.

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

// Puts the TLS layer on top of the handle's socket.
bool push_tls_layer(LDAP* ld, SSL* ssl) {
  Sockbuf* sb = nullptr;
  if (ldap_get_option(ld, LDAP_OPT_SOCKBUF, &sb) != LDAP_OPT_SUCCESS || !sb) return false;
  return ber_sockbuf_add_io(sb, &kTlsIo, LBER_SBIOD_LEVEL_TRANSPORT, ssl) == 0;
}

// What an operation is called in messages and how its result codes are classified.
struct LdapOp {
  const char* what;
  LdapStep step;
  bool tls_step;  // TLS was being set up on the connection at this step
};
constexpr LdapOp kStartTlsOp{"StartTLS", LdapStep::start_tls, true};
constexpr LdapOp kBindOp{"bind", LdapStep::bind, false};
constexpr LdapOp kSearchOp{"search", LdapStep::search, false};

// One run: connect (TLS for ldaps://) → hand the socket to libldap → StartTLS → bind → search.
// Each step starts the next or ends the run with its failure (and the samples gathered so far).
// Nothing blocks: libldap's asynchronous operations send the requests, the run waits for the
// socket on the event loop (ctx.wait_fd) and collects the answer with ldap_result() without
// waiting. The run owns itself through the callbacks it has pending.
class LdapRun : public std::enable_shared_from_this<LdapRun> {
 public:
  LdapRun(std::shared_ptr<const LdapSpec> spec, RunContextPtr ctx, Done done)
      : spec_(std::move(spec)), ctx_(std::move(ctx)), done_(std::move(done)) {}

  void start() { connect(); }

 private:
  using Next = void (LdapRun::*)();
  using Answered = void (LdapRun::*)(LdapMessagePtr);

  // 1. TCP, and TLS for ldaps://, ourselves within the deadline.
  void connect() {
    log("connecting to " + spec_->url);
    t0_ = Clock::now();
    connect_tcp(ctx_, spec_->host, std::to_string(spec_->port), spec_->url,
                [self = shared_from_this()](std::optional<Outcome> failed, UniqueFd sock) {
                  if (failed) return self->fail(std::move(*failed));
                  self->sock_ = std::move(sock);
                  if (self->spec_->ldaps)
                    return self->handshake(self->sock_.get(), &LdapRun::connected);
                  self->connected();
                });
  }

  void handshake(int fd, Next next) {
    TlsPeer peer{spec_->host, spec_->url, /*ignore_unexpected_eof=*/true};
    tls_handshake(ctx_, tls_, fd, spec_->tls, peer,
                  [self = shared_from_this(), next](std::optional<Outcome> failed) {
                    if (failed) return self->fail(std::move(*failed));
                    add_cert_expiry_sample(self->result_, self->tls_.ssl.get());
                    ((*self).*next)();
                  });
  }

  void connected() {
    result_.add("probe_ldap_connect_duration_seconds", kConnectHelp, seconds_since(t0_));
    log(spec_->ldaps ? "connected, TLS established" : "connected");
    if (auto failed = attach()) return fail(std::move(*failed));
    if (spec_->start_tls) return start_tls();
    bind();
  }

  // 2. libldap gets the socket; should it ever reconnect by itself, it gets a plain ldap:// URL
  // (never its own TLS) and a short network timeout (it would connect blocking, on the loop).
  std::optional<Outcome> attach() {
    std::string plain_url =
        "ldap://" + bracket_host(spec_->host) + ":" + std::to_string(spec_->port);
    LDAP* raw = nullptr;
    int rc = ldap_init_fd(sock_.get(), LDAP_PROTO_TCP, plain_url.c_str(), &raw);
    if (rc != LDAP_SUCCESS || !raw)
      return Outcome::failure(Reason::internal, std::string("libldap cannot use the connection: ") +
                                                    ldap_err2string(rc));
    sock_.release();  // closed by the handle from now on
    ld_.reset(raw);
    int version = LDAP_VERSION3;
    ldap_set_option(ld_.get(), LDAP_OPT_PROTOCOL_VERSION, &version);
    ldap_set_option(ld_.get(), LDAP_OPT_REFERRALS, LDAP_OPT_OFF);  // never wander to other servers
    timeval reconnect{0, 100000};
    ldap_set_option(ld_.get(), LDAP_OPT_NETWORK_TIMEOUT, &reconnect);
    if (spec_->ldaps && !push_tls_layer(ld_.get(), tls_.ssl.get()))
      return Outcome::failure(Reason::internal, "cannot attach TLS to the LDAP connection");
    if (!push_sniff_layer(ld_.get(), &first_))
      return Outcome::failure(Reason::internal, "cannot attach a layer to the LDAP connection");
    return std::nullopt;
  }

  // 3. StartTLS: the extended operation, then our handshake on the same socket.
  void start_tls() {
    log("StartTLS");
    t0_ = Clock::now();
    int msgid = -1;
    int rc =
        ldap_extended_operation(ld_.get(), LDAP_EXOP_START_TLS, nullptr, nullptr, nullptr, &msgid);
    if (rc != LDAP_SUCCESS) return fail(failure_of(rc, kStartTlsOp));
    await(msgid, kStartTlsOp, &LdapRun::start_tls_answered);
  }

  void start_tls_answered(LdapMessagePtr res) {
    // A server that answered with a refusal offers no TLS; one that vanished is a connection
    // problem.
    int rc = result_code(res.get());
    if (rc != LDAP_SUCCESS) return fail(failure_of(rc, kStartTlsOp));
    int fd = -1;
    ldap_get_option(ld_.get(), LDAP_OPT_DESC, &fd);
    if (fd < 0) return fail(Outcome::failure(Reason::internal, "no socket after StartTLS"));
    handshake(fd, &LdapRun::tls_started);
  }

  void tls_started() {
    if (!push_tls_layer(ld_.get(), tls_.ssl.get()))
      return fail(Outcome::failure(Reason::internal, "cannot attach TLS to the LDAP connection"));
    result_.add("probe_ldap_starttls_duration_seconds", kStartTlsHelp, seconds_since(t0_));
    log("TLS established (StartTLS)");
    bind();
  }

  // 4. Simple bind (anonymous without bind_dn).
  void bind() {
    log(spec_->bind_dn.empty() ? "anonymous bind" : "simple bind as " + spec_->bind_dn);
    berval cred{static_cast<ber_len_t>(spec_->password.size()),
                const_cast<char*>(spec_->password.data())};
    t0_ = Clock::now();
    int msgid = -1;
    int rc = ldap_sasl_bind(ld_.get(), spec_->bind_dn.empty() ? nullptr : spec_->bind_dn.c_str(),
                            LDAP_SASL_SIMPLE, &cred, nullptr, nullptr, &msgid);
    if (rc != LDAP_SUCCESS) return fail(failure_of(rc, kBindOp));
    await(msgid, kBindOp, &LdapRun::bound);
  }

  void bound(LdapMessagePtr res) {
    const double seconds = seconds_since(t0_);
    const int rc = result_code(res.get());
    if (rc >= 0) result_.add("probe_ldap_bind_duration_seconds", kBindHelp, seconds);
    if (rc != LDAP_SUCCESS) return fail(failure_of(rc, kBindOp));
    if (ctx_->trace().enabled()) {
      char buf[64];
      std::snprintf(buf, sizeof buf, "bind succeeded in %.3fs", seconds);
      ctx_->trace().log(buf);
    }
    if (!spec_->search) {
      result_.add("probe_ldap_result_code", kResultHelp, 0);
      return done_(std::move(result_));
    }
    search();
  }

  // 5. Search: no attributes ("1.1"), only the entries counted.
  void search() {
    const LdapSearchSpec& q = *spec_->search;
    timeval tv{};  // also the server's time limit (whole seconds, at least 1)
    if (!time_left(ctx_->deadline(), tv)) return fail(timed_out("search"));
    log("search base=\"" + q.base + "\" scope=" + q.scope + " filter=" + q.filter);
    char no_attrs[] = "1.1";
    char* attrs[] = {no_attrs, nullptr};
    t0_ = Clock::now();
    int msgid = -1;
    int rc = ldap_search_ext(ld_.get(), q.base.c_str(), scope_value(q.scope), q.filter.c_str(),
                             attrs, 0, nullptr, nullptr, &tv, kLdapMaxEntries, &msgid);
    if (rc != LDAP_SUCCESS) return search_failed(q, rc, seconds_since(t0_));
    await(msgid, kSearchOp, &LdapRun::searched);
  }

  void searched(LdapMessagePtr res) {
    const LdapSearchSpec& q = *spec_->search;
    const double seconds = seconds_since(t0_);
    const int rc = result_code(res.get());
    // sizeLimitExceeded still delivers the entries up to the limit: enough to judge min_entries.
    if (rc != LDAP_SUCCESS && rc != LDAP_SIZELIMIT_EXCEEDED) return search_failed(q, rc, seconds);
    int entries = ldap_count_entries(ld_.get(), res.get());
    if (entries < 0) entries = 0;
    result_.add("probe_ldap_search_duration_seconds", kSearchHelp, seconds);
    result_.add("probe_ldap_search_entries", kEntriesHelp, entries);
    result_.add("probe_ldap_result_code", kResultHelp, rc);
    if (ctx_->trace().enabled()) {
      char buf[96];
      std::snprintf(buf, sizeof buf, "search returned %d entr%s in %.3fs (result %d)", entries,
                    entries == 1 ? "y" : "ies", seconds, rc);
      ctx_->trace().log(buf);
    }
    if (auto failed = check_min_entries(q, entries)) return fail(std::move(*failed));
    done_(std::move(result_));
  }

  void search_failed(const LdapSearchSpec& q, int rc, double seconds) {
    if (rc > 0) result_.add("probe_ldap_search_duration_seconds", kSearchHelp, seconds);
    if (rc != LDAP_NO_SUCH_OBJECT) return fail(failure_of(rc, kSearchOp));
    result_.add("probe_ldap_search_entries", kEntriesHelp, 0);
    result_.add("probe_ldap_result_code", kResultHelp, rc);
    fail(Outcome::failure(Reason::assertion, "search base \"" + q.base + "\" does not exist: " +
                                                 describe_rc(ld_.get(), rc)));
  }

  static std::optional<Outcome> check_min_entries(const LdapSearchSpec& q, int entries) {
    if (entries >= q.min_entries) return std::nullopt;
    return Outcome::failure(Reason::assertion, "search found " + std::to_string(entries) + " entr" +
                                                   (entries == 1 ? "y" : "ies") +
                                                   ", fewer than min_entries " +
                                                   std::to_string(q.min_entries));
  }

  // --- waiting for answers ----------------------------------------------------------------

  // Waits for the whole answer to operation msgid (a search's entries and its result): for the
  // socket on the loop, then ldap_result() without waiting, again until the answer is complete.
  // Calls `next` with it, or ends the run: no answer before the deadline, the connection lost,
  // or an answer that is not LDAP.
  void await(int msgid, const LdapOp& op, Answered next) {
    int fd = -1;
    ldap_get_option(ld_.get(), LDAP_OPT_DESC, &fd);
    if (fd < 0) return fail(failure_of(LDAP_SERVER_DOWN, op));
    ctx_->wait_fd(fd, POLLIN, [self = shared_from_this(), msgid, &op, next](bool ready) {
      if (!ready) return self->fail(self->failure_of(LDAP_TIMEOUT, op));
      self->collect(msgid, op, next);
    });
  }

  void collect(int msgid, const LdapOp& op, Answered next) {
    timeval zero{0, 0};  // poll: never wait inside libldap
    LDAPMessage* raw = nullptr;
    const int type = ldap_result(ld_.get(), msgid, LDAP_MSG_ALL, &zero, &raw);
    LdapMessagePtr res(raw);
    if (type > 0 && res) return ((*this).*next)(std::move(res));
    if (type < 0) {
      int err = LDAP_SERVER_DOWN;
      ldap_get_option(ld_.get(), LDAP_OPT_RESULT_CODE, &err);
      return fail(failure_of(err < 0 ? err : LDAP_SERVER_DOWN, op));  // a client-side error
    }
    await(msgid, op, next);  // part of the answer so far
  }

  // The result code the server put in its answer (the search result after the entries).
  int result_code(LDAPMessage* res) {
    int rc = LDAP_OTHER;
    if (ldap_parse_result(ld_.get(), res, &rc, nullptr, nullptr, nullptr, nullptr, 0) !=
        LDAP_SUCCESS)
      return LDAP_DECODING_ERROR;
    return rc;
  }

  // --- verdicts ---------------------------------------------------------------------------

  // The failure of an operation that returned `code`: the server's refusal, a timeout, or an
  // answer that is not LDAP at all.
  Outcome failure_of(int code, const LdapOp& op) {
    if (code > 0) result_.add("probe_ldap_result_code", kResultHelp, code);
    Reason r = classify_ldap_result(code, op.step, op.tls_step && code > 0);
    if (code < 0 && Clock::now() >= ctx_->deadline()) r = Reason::timeout;
    if (code < 0 && first_.value >= 0 && first_.value != 0x30) {
      char hex[16];
      std::snprintf(hex, sizeof hex, "0x%02x", static_cast<unsigned>(first_.value & 0xff));
      return Outcome::failure(Reason::protocol, "the answer from " + spec_->url + " to the " +
                                                    op.what + " is not LDAP (first byte " + hex +
                                                    ")");
    }
    if (r == Reason::timeout && code < 0)
      return Outcome::failure(
          r, "no answer from " + spec_->url + " to the " + op.what + " before the deadline");
    return Outcome::failure(r, std::string(op.what) + " failed: " + describe_rc(ld_.get(), code));
  }

  Outcome timed_out(const std::string& step) const {
    return Outcome::failure(Reason::timeout,
                            "no answer from " + spec_->url + " before the deadline (" + step + ")");
  }

  // Ends the run with the failure, carrying the samples gathered before it.
  void fail(Outcome out) {
    log(out.message);
    for (auto& s : result_.samples) out.samples.push_back(std::move(s));
    done_(std::move(out));
  }

  void log(const std::string& line) {
    if (ctx_->trace().enabled()) ctx_->trace().log(line);
  }

  const std::shared_ptr<const LdapSpec> spec_;
  RunContextPtr ctx_;
  Done done_;
  Clock::time_point t0_{};  // start of the step being timed
  Outcome result_ = Outcome::success();
  UniqueFd sock_;    // the socket until libldap's handle takes it
  TlsSession tls_;   // declared before the handle: libldap writes through it until unbind
  FirstByte first_;  // the sniff layer's state; outlives the handle too
  LdapPtr ld_;
};

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
  ldap_global_init();
  std::make_shared<LdapRun>(spec_, std::move(ctx), std::move(done))->start();
}

}  // namespace pes
