// The `ldap` probe: a simple bind over ldap://, ldap:// + StartTLS or ldaps://, and an optional
// search that must find a minimum number of entries. A run connects and does TLS itself (OpenSSL;
// libldap's own TLS, GnuTLS on Debian, busy-loops during the handshake with a server that never
// answers), hands libldap the connected socket with a TLS layer on it, and drives libldap's
// asynchronous operations from the event loop: no worker thread, nothing blocks.
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "agent/config/parse.h"
#include "agent/core/probe.h"

namespace pes {

struct LdapSearchSpec {
  std::string base;
  std::string filter = "(objectClass=*)";
  std::string scope = "sub";  // base | one | sub
  int min_entries = 1;
};

struct LdapSpec {
  std::string url;   // ldap://host:port or ldaps://host:port
  std::string host;  // from url
  int port = 389;    // from url; 389 for ldap://, 636 for ldaps:// when absent
  bool ldaps = false;
  bool start_tls = false;
  std::string bind_dn;   // empty: anonymous bind
  std::string password;  // secret
  std::optional<LdapSearchSpec> search;
  TlsOptions tls;  // ca_file, cert_file, key_file, insecure_skip_verify
};

// Entries counted by a search at most; a search that finds more stops there (and succeeds).
inline constexpr int kLdapMaxEntries = 1000;

class LdapProbe : public Probe {
 public:
  explicit LdapProbe(LdapSpec spec) : spec_(std::make_shared<const LdapSpec>(std::move(spec))) {}
  void run(RunContextPtr ctx, Done done) override;
  std::string target() const override { return spec_->url; }
  static std::unique_ptr<Probe> parse(Section& s);

 private:
  // Shared with running runs, so a reload that drops this probe cannot free it under a run.
  std::shared_ptr<const LdapSpec> spec_;
};

// The step of a run, for classifying a libldap result code.
enum class LdapStep { start_tls, bind, search };
// The failure reason for libldap result code `rc` (non-zero) in `step`; `tls` says whether TLS was
// being set up on the connection at that step.
Reason classify_ldap_result(int rc, LdapStep step, bool tls);

}  // namespace pes
