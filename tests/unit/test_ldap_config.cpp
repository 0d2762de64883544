// The ldap probe's pure parts: its config section (defaults, every field, errors with
// file:line:column) and how libldap result codes become failure reasons.
#include <gtest/gtest.h>
#include <ldap.h>

#include "agent/config/config.h"
#include "probes/ldap/ldap_probe.h"
#include "probes/registry.h"

using namespace pes;

namespace {

std::string config_with(const std::string& section) {
  return "probes:\n  - name: dir\n    type: ldap\n    ldap:\n" + section;
}

std::string errors_of(const std::string& section) {
  try {
    parse_config(config_with(section), "agent.yml", probe_types());
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace

TEST(LdapConfig, EveryFieldIsRead) {
  auto cfg = parse_config(config_with("      url: ldap://ldap.internal:1389\n"
                                      "      start_tls: true\n"
                                      "      bind_dn: cn=admin,dc=pes,dc=local\n"
                                      "      password: ldap-Secret-1\n"
                                      "      search:\n"
                                      "        base: ou=people,dc=pes,dc=local\n"
                                      "        filter: (&(objectClass=person)(uid=probe))\n"
                                      "        scope: one\n"
                                      "        min_entries: 1\n"
                                      "      tls: {insecure_skip_verify: true}\n"),
                          "agent.yml", probe_types());
  ASSERT_EQ(cfg->probes.size(), 1u);
  EXPECT_EQ(cfg->probes[0].probe->target(), "ldap://ldap.internal:1389");
  EXPECT_EQ(cfg->redactor->redact("ldap-Secret-1"), "<redacted>");
}

TEST(LdapConfig, UrlIsTheOnlyRequiredField) {
  auto cfg =
      parse_config(config_with("      url: ldaps://127.0.0.1:636\n      search: {base: dc=x}\n"),
                   "agent.yml", probe_types());
  EXPECT_EQ(cfg->probes[0].probe->target(), "ldaps://127.0.0.1:636");
  EXPECT_EQ(errors_of("      bind_dn: cn=x\n      password: y\n"),
            "agent.yml:5:7: probes[0].ldap.url: required");
}

TEST(LdapConfig, ErrorsNameTheKeyAndPlace) {
  EXPECT_EQ(errors_of("      url: http://ldap.internal\n"),
            "agent.yml:5:12: probes[0].ldap.url: URL \"http://ldap.internal\" must start with "
            "ldap:// or ldaps://");
  EXPECT_EQ(errors_of("      url: \"ldap://\"\n"),
            "agent.yml:5:12: probes[0].ldap.url: URL \"ldap://\" has no host");
  EXPECT_EQ(errors_of("      url: ldaps://h\n      start_tls: true\n"),
            "agent.yml:6:18: probes[0].ldap.start_tls: StartTLS is for ldap:// URLs; ldaps:// is "
            "TLS from the start");
  EXPECT_EQ(
      errors_of("      url: ldap://h\n      bind_dn: cn=admin\n"),
      "agent.yml:5:7: probes[0].ldap.password: required with bind_dn (an empty password makes an "
      "unauthenticated bind)");
  EXPECT_EQ(errors_of("      url: ldap://h\n      password: p\n"),
            "agent.yml:5:7: probes[0].ldap.bind_dn: required with password");
  EXPECT_EQ(errors_of("      url: ldap://h\n      search: {base: dc=x, filter: uid=alice}\n"),
            "agent.yml:6:36: probes[0].ldap.search.filter: invalid LDAP filter \"uid=alice\" (e.g. "
            "(uid=probe) or "
            "(&(objectClass=person)(uid=x)))");
  EXPECT_EQ(errors_of("      url: ldap://h\n      search: {base: dc=x, filter: \"(uid=a))\"}\n"),
            "agent.yml:6:36: probes[0].ldap.search.filter: invalid LDAP filter \"(uid=a))\" (e.g. "
            "(uid=probe) or "
            "(&(objectClass=person)(uid=x)))");
  EXPECT_EQ(errors_of("      url: ldap://h\n      search: {base: dc=x, scope: subtree}\n"),
            "agent.yml:6:35: probes[0].ldap.search.scope: must be one of base, one, sub, got "
            "\"subtree\"");
  EXPECT_EQ(
      errors_of("      url: ldap://h\n      search: {base: dc=x, min_entries: 5000}\n"),
      "agent.yml:6:41: probes[0].ldap.search.min_entries: must be between 0 and 1000, got 5000");
  EXPECT_EQ(errors_of("      url: ldap://h\n      search: {base: dc=x, attrs: [cn]}\n"),
            "agent.yml:6:28: probes[0].ldap.search.attrs: unknown key");
  EXPECT_EQ(errors_of("      url: ldaps://h\n      tls: {server_name: other}\n"),
            "agent.yml:6:26: probes[0].ldap.tls.server_name: not supported by ldap (the "
            "certificate must match the "
            "URL's host)");
}

TEST(LdapResults, ReasonsForResultCodes) {
  EXPECT_EQ(classify_ldap_result(LDAP_INVALID_CREDENTIALS, LdapStep::bind, false),
            Reason::auth);  // 49
  EXPECT_EQ(classify_ldap_result(LDAP_INSUFFICIENT_ACCESS, LdapStep::search, false), Reason::auth);
  EXPECT_EQ(classify_ldap_result(LDAP_UNWILLING_TO_PERFORM, LdapStep::bind, false), Reason::auth);
  EXPECT_EQ(classify_ldap_result(LDAP_CONFIDENTIALITY_REQUIRED, LdapStep::bind, false),
            Reason::auth);
  EXPECT_EQ(classify_ldap_result(LDAP_SERVER_DOWN, LdapStep::bind, false), Reason::connect);
  EXPECT_EQ(classify_ldap_result(LDAP_SERVER_DOWN, LdapStep::bind, true), Reason::connect);
  EXPECT_EQ(classify_ldap_result(LDAP_CONNECT_ERROR, LdapStep::bind, true), Reason::tls);
  EXPECT_EQ(classify_ldap_result(LDAP_CONNECT_ERROR, LdapStep::bind, false), Reason::connect);
  EXPECT_EQ(classify_ldap_result(LDAP_TIMEOUT, LdapStep::bind, false), Reason::timeout);
  EXPECT_EQ(classify_ldap_result(LDAP_TIMELIMIT_EXCEEDED, LdapStep::search, false),
            Reason::timeout);
  EXPECT_EQ(classify_ldap_result(LDAP_NO_SUCH_OBJECT, LdapStep::search, false), Reason::assertion);
  EXPECT_EQ(classify_ldap_result(LDAP_PROTOCOL_ERROR, LdapStep::start_tls, false), Reason::tls);
  EXPECT_EQ(classify_ldap_result(LDAP_UNAVAILABLE, LdapStep::start_tls, false), Reason::tls);
  EXPECT_EQ(classify_ldap_result(LDAP_UNAVAILABLE, LdapStep::search, false), Reason::connect);
  EXPECT_EQ(classify_ldap_result(LDAP_DECODING_ERROR, LdapStep::bind, false), Reason::protocol);
  EXPECT_EQ(classify_ldap_result(LDAP_FILTER_ERROR, LdapStep::search, false), Reason::config);
  EXPECT_EQ(classify_ldap_result(LDAP_OTHER, LdapStep::search, false), Reason::protocol);
}
