#include "probes/ldap/ldap_probe.h"

#include <ldap.h>
#include <openssl/x509.h>
#include <sys/time.h>

#include <cstdio>
#include <ctime>
#include <mutex>

namespace pes {

namespace {

const char* kBindHelp = "Time of the LDAP bind (connect and TLS included unless StartTLS ran first), seconds.";
const char* kSearchHelp = "Time of the LDAP search, seconds.";
const char* kEntriesHelp = "Entries the LDAP search returned (counted up to 1000).";
const char* kResultHelp = "Result code of the last LDAP operation the server answered (0 success, 49 invalid credentials).";
const char* kStartTlsHelp = "Time of the LDAP connect and StartTLS exchange, seconds.";
const char* kCertHelp = "Earliest notAfter of the certificate chain, unix seconds.";

struct LdapCloser {
  void operator()(LDAP* ld) const { ldap_unbind_ext_s(ld, nullptr, nullptr); }
};
struct MessageFreer {
  void operator()(LDAPMessage* m) const { ldap_msgfree(m); }
};
struct X509Freer {
  void operator()(X509* x) const { X509_free(x); }
};
using LdapHandle = std::unique_ptr<LDAP, LdapCloser>;
using LdapMessagePtr = std::unique_ptr<LDAPMessage, MessageFreer>;

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// libldap reads ldap.conf and sets up its global defaults on first use; do that once, not racing
// between workers.
void ldap_global_init() {
  static std::once_flag once;
  std::call_once(once, [] {
    int version = LDAP_VERSION3;
    ldap_set_option(nullptr, LDAP_OPT_PROTOCOL_VERSION, &version);
  });
}

// The time left until the deadline as a timeval; false if none is left.
bool time_left(Clock::time_point deadline, timeval& tv) {
  auto left = std::chrono::duration_cast<std::chrono::microseconds>(deadline - Clock::now()).count();
  if (left <= 0) return false;
  tv.tv_sec = static_cast<time_t>(left / 1000000);
  tv.tv_usec = static_cast<suseconds_t>(left % 1000000);
  return true;
}

// Bounds every later libldap call on `ld` (connect, TLS handshake, waiting for results).
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

// notAfter of the server's certificate, when TLS is up.
std::optional<int64_t> peer_cert_expiry(LDAP* ld) {
  berval der{0, nullptr};
  if (ldap_get_option(ld, LDAP_OPT_X_TLS_PEERCERT, &der) != LDAP_OPT_SUCCESS || !der.bv_val) return std::nullopt;
  const unsigned char* p = reinterpret_cast<const unsigned char*>(der.bv_val);
  std::unique_ptr<X509, X509Freer> cert(d2i_X509(nullptr, &p, static_cast<long>(der.bv_len)));
  ber_memfree(der.bv_val);
  if (!cert) return std::nullopt;
  const ASN1_TIME* na = X509_get0_notAfter(cert.get());
  struct tm tm {};
  if (!na || ASN1_TIME_to_tm(na, &tm) != 1) return std::nullopt;
  return static_cast<int64_t>(timegm(&tm));
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

}  // namespace

Reason classify_ldap_result(int rc, LdapStep step, bool tls) {
  switch (rc) {
    case LDAP_TIMEOUT:
    case LDAP_TIMELIMIT_EXCEEDED: return Reason::timeout;
    case LDAP_SERVER_DOWN: return Reason::connect;
    case LDAP_CONNECT_ERROR: return tls ? Reason::tls : Reason::connect;
    case LDAP_INVALID_CREDENTIALS:
    case LDAP_INAPPROPRIATE_AUTH:
    case LDAP_INSUFFICIENT_ACCESS:
    case LDAP_STRONG_AUTH_REQUIRED:
    case LDAP_CONFIDENTIALITY_REQUIRED: return Reason::auth;
    case LDAP_UNWILLING_TO_PERFORM: return step == LdapStep::bind ? Reason::auth : Reason::protocol;
    case LDAP_BUSY:
    case LDAP_UNAVAILABLE: return step == LdapStep::start_tls ? Reason::tls : Reason::connect;
    case LDAP_NO_SUCH_OBJECT: return step == LdapStep::search ? Reason::assertion : Reason::auth;
    case LDAP_FILTER_ERROR:
    case LDAP_PARAM_ERROR:
    case LDAP_INVALID_DN_SYNTAX: return Reason::config;
    default: break;
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
    if (ldap_url_parse(url->c_str(), &desc) != LDAP_URL_SUCCESS || !desc) {
      s.error("url", "invalid LDAP URL \"" + *url + "\" (use ldap://host:port or ldaps://host:port)");
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
      q.error("filter", "invalid LDAP filter \"" + search.filter + "\" (e.g. (uid=probe) or (&(objectClass=person)(uid=x)))");
      ok = false;
    }
    search.scope = q.str_or("scope", search.scope);
    if (!q.one_of("scope", search.scope, {"base", "one", "sub"})) ok = false;
    search.min_entries = static_cast<int>(q.integer("min_entries", 0, kLdapMaxEntries).value_or(1));
    spec.search = std::move(search);
  }
  {
    Section t = s.sub("tls");
    if (t.has("server_name"))
      t.error("server_name", "not supported by ldap (the certificate must match the URL's host)");
  }
  spec.tls = s.tls();
  if (!ok) return nullptr;
  return std::make_unique<LdapProbe>(std::move(spec));
}

void LdapProbe::run(RunContextPtr ctx, Done done) {
  ctx->blocking([spec = spec_, ctx, done] { done(run_ldap(*spec, ctx->deadline(), ctx->trace())); });
}

Outcome run_ldap(const LdapSpec& spec, Clock::time_point deadline, Trace& trace) {
  ldap_global_init();
  Outcome result = Outcome::success();
  auto fail = [&](Reason r, std::string msg) {
    if (trace.enabled()) trace.log(msg);
    Outcome out = Outcome::failure(r, std::move(msg));
    out.samples = std::move(result.samples);
    return out;
  };
  auto timed_out = [&](const std::string& step) {
    return fail(Reason::timeout, "no answer from " + spec.url + " before the deadline (" + step + ")");
  };

  LDAP* raw = nullptr;
  int rc = ldap_initialize(&raw, spec.url.c_str());
  LdapHandle ld(raw);
  if (rc != LDAP_SUCCESS || !ld) return fail(Reason::config, "cannot use URL " + spec.url + ": " + ldap_err2string(rc));

  int version = LDAP_VERSION3;
  ldap_set_option(ld.get(), LDAP_OPT_PROTOCOL_VERSION, &version);
  ldap_set_option(ld.get(), LDAP_OPT_REFERRALS, LDAP_OPT_OFF);  // never wander to other servers
  ldap_set_option(ld.get(), LDAP_OPT_RESTART, LDAP_OPT_ON);      // retry on EINTR

  const bool ldaps = spec.url.rfind("ldaps://", 0) == 0;
  if (ldaps || spec.start_tls) {
    const auto& t = spec.tls;
    int require = t.insecure_skip_verify ? LDAP_OPT_X_TLS_NEVER : LDAP_OPT_X_TLS_DEMAND;
    ldap_set_option(ld.get(), LDAP_OPT_X_TLS_REQUIRE_CERT, &require);
    if (!t.ca_file.empty()) ldap_set_option(ld.get(), LDAP_OPT_X_TLS_CACERTFILE, t.ca_file.c_str());
    if (!t.cert_file.empty()) {
      ldap_set_option(ld.get(), LDAP_OPT_X_TLS_CERTFILE, t.cert_file.c_str());
      ldap_set_option(ld.get(), LDAP_OPT_X_TLS_KEYFILE, t.key_file.c_str());
    }
    int is_server = 0;  // a fresh TLS context for this handle with the options above
    rc = ldap_set_option(ld.get(), LDAP_OPT_X_TLS_NEWCTX, &is_server);
    if (rc != LDAP_OPT_SUCCESS)
      return fail(Reason::config, "cannot set up TLS (CA, certificate or key file): " + describe_rc(ld.get(), rc));
  }
  auto failure_of = [&](int code, LdapStep step, bool tls, const std::string& what) {
    if (code > 0) result.add("probe_ldap_result_code", kResultHelp, code);
    Reason r = classify_ldap_result(code, step, tls);
    if (code < 0 && Clock::now() >= deadline) r = Reason::timeout;  // e.g. a handshake cut off by the network timeout
    return fail(r, what + " failed: " + describe_rc(ld.get(), code));
  };

  // StartTLS: plain connect, then the TLS upgrade.
  if (spec.start_tls) {
    if (!arm_timeouts(ld.get(), deadline)) return timed_out("StartTLS");
    if (trace.enabled()) trace.log("connecting to " + spec.url + " and starting TLS");
    auto t0 = Clock::now();
    rc = ldap_start_tls_s(ld.get(), nullptr, nullptr);
    if (rc != LDAP_SUCCESS) {
      // A refused connection is not a TLS problem; a server that answered but would not or could
      // not complete the handshake is.
      return failure_of(rc, LdapStep::start_tls, rc != LDAP_SERVER_DOWN, "StartTLS");
    }
    result.add("probe_ldap_starttls_duration_seconds", kStartTlsHelp, seconds_since(t0));
    if (trace.enabled()) trace.log("TLS established (StartTLS)");
  }

  // Bind (connects first unless StartTLS did).
  if (!arm_timeouts(ld.get(), deadline)) return timed_out("bind");
  if (trace.enabled())
    trace.log(spec.bind_dn.empty() ? "anonymous bind" : "simple bind as " + spec.bind_dn);
  berval cred{static_cast<ber_len_t>(spec.password.size()), const_cast<char*>(spec.password.data())};
  auto t0 = Clock::now();
  rc = ldap_sasl_bind_s(ld.get(), spec.bind_dn.empty() ? nullptr : spec.bind_dn.c_str(), LDAP_SASL_SIMPLE, &cred,
                        nullptr, nullptr, nullptr);
  double bind_seconds = seconds_since(t0);
  if (rc != LDAP_SUCCESS) {
    if (rc > 0) result.add("probe_ldap_bind_duration_seconds", kBindHelp, bind_seconds);
    return failure_of(rc, LdapStep::bind, ldaps, "bind");
  }
  result.add("probe_ldap_bind_duration_seconds", kBindHelp, bind_seconds);
  if (ldaps || spec.start_tls)
    if (auto expiry = peer_cert_expiry(ld.get()))
      result.add("probe_ssl_earliest_cert_expiry", kCertHelp, static_cast<double>(*expiry));
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
  rc = ldap_search_ext_s(ld.get(), q.base.c_str(), scope_value(q.scope), q.filter.c_str(), attrs, 0, nullptr,
                         nullptr, &tv, kLdapMaxEntries, &raw_res);
  LdapMessagePtr res(raw_res);
  double search_seconds = seconds_since(t0);
  // sizeLimitExceeded still delivers the entries up to the limit: enough to judge min_entries.
  if (rc != LDAP_SUCCESS && rc != LDAP_SIZELIMIT_EXCEEDED) {
    if (rc > 0) result.add("probe_ldap_search_duration_seconds", kSearchHelp, search_seconds);
    if (rc == LDAP_NO_SUCH_OBJECT) {
      result.add("probe_ldap_search_entries", kEntriesHelp, 0);
      result.add("probe_ldap_result_code", kResultHelp, rc);
      return fail(Reason::assertion, "search base \"" + q.base + "\" does not exist: " + describe_rc(ld.get(), rc));
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
    return fail(Reason::assertion, "search found " + std::to_string(entries) + " entr" + (entries == 1 ? "y" : "ies") +
                                       ", fewer than min_entries " + std::to_string(q.min_entries));
  return result;
}

}  // namespace pes
