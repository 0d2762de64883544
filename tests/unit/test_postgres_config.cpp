// The postgres probe's pure parts: its config section (defaults, every field, errors with
// file:line:column) and how libpq's connection and query errors become failure reasons.
#include <gtest/gtest.h>

#include "agent/config/config.h"
#include "probes/postgres/postgres_probe.h"
#include "probes/registry.h"

using namespace pes;

namespace {

std::string config_with(const std::string& section) {
  return "probes:\n  - name: db\n    type: postgres\n    postgres:\n" + section;
}

std::string errors_of(const std::string& section) {
  try {
    parse_config(config_with(section), "agent.yml", probe_types());
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "(no error)";
}

std::shared_ptr<const Config> parse_ok(const std::string& section) {
  return parse_config(config_with(section), "agent.yml", probe_types());
}

}  // namespace

TEST(PostgresConfig, DefaultsGiveLocalhostPostgres) {
  auto cfg = parse_ok("      {}\n");
  ASSERT_EQ(cfg->probes.size(), 1u);
  EXPECT_EQ(cfg->probes[0].probe->target(), "localhost:5432/postgres");
}

TEST(PostgresConfig, EveryFieldIsRead) {
  auto cfg = parse_ok(
      "      host: db.internal\n"
      "      port: 6543\n"
      "      dbname: nextcloud\n"
      "      user: pes_monitor\n"
      "      password: hunter2-pg\n"
      "      sslmode: require\n"
      "      query: SELECT count(*) > 0 FROM pg_database\n"
      "      max_connections_ratio: 0.9\n");
  ASSERT_EQ(cfg->probes.size(), 1u);
  // The target names the server and database, never the password.
  EXPECT_EQ(cfg->probes[0].probe->target(), "db.internal:6543/nextcloud");
  // The password is a secret: the redactor knows it.
  EXPECT_EQ(cfg->redactor->redact("pw=hunter2-pg"), "pw=<redacted>");
}

TEST(PostgresConfig, DbnameDefaultsToUser) {
  auto cfg = parse_ok("      user: moodle\n");
  EXPECT_EQ(cfg->probes[0].probe->target(), "localhost:5432/moodle");
}

TEST(PostgresConfig, Ipv6HostIsBracketedInTarget) {
  auto cfg = parse_ok("      host: \"::1\"\n      dbname: x\n");
  EXPECT_EQ(cfg->probes[0].probe->target(), "[::1]:5432/x");
}

TEST(PostgresConfig, ErrorsNameTheKeyAndPlace) {
  EXPECT_EQ(
      errors_of("      sslmode: required\n"),
      "agent.yml:5:16: probes[0].postgres.sslmode: must be one of disable, allow, prefer, require, "
      "verify-ca, verify-full, got \"required\"");
  EXPECT_EQ(
      errors_of("      max_connections_ratio: 1.5\n"),
      "agent.yml:5:30: probes[0].postgres.max_connections_ratio: must be between 0 and 1, got 1.5");
  EXPECT_EQ(errors_of("      port: 70000\n"),
            "agent.yml:5:13: probes[0].postgres.port: must be between 1 and 65535, got 70000");
  EXPECT_EQ(errors_of("      query: \"  ;\"\n"),
            "agent.yml:5:14: probes[0].postgres.query: must not be empty");
  EXPECT_EQ(errors_of("      databse: x\n"),
            "agent.yml:5:7: probes[0].postgres.databse: unknown key");
  EXPECT_EQ(errors_of("      sslmode: verify-full\n"),
            "agent.yml:5:16: probes[0].postgres.sslmode: sslmode verify-full needs tls.ca_file "
            "(the CA that "
            "signed the server's certificate)");
  EXPECT_EQ(errors_of("      tls: {insecure_skip_verify: true}\n"),
            "agent.yml:5:35: probes[0].postgres.tls.insecure_skip_verify: not supported by "
            "postgres; choose the "
            "checks with sslmode");
  EXPECT_EQ(
      errors_of("      tls: {ca_file: /nonexistent/ca.pem}\n"),
      "agent.yml:5:22: probes[0].postgres.tls.ca_file: cannot read file \"/nonexistent/ca.pem\"");
}

TEST(PostgresConfig, SecretFromEnvironmentIsRedacted) {
  setenv("PES_TEST_PG_PASSWORD", "from-env-Secret", 1);
  auto cfg = parse_ok("      password: ${env:PES_TEST_PG_PASSWORD}\n");
  EXPECT_EQ(cfg->redactor->redact("x from-env-Secret y"), "x <redacted> y");
  unsetenv("PES_TEST_PG_PASSWORD");
}

TEST(PostgresErrors, ServerErrorsAreClassifiedBySqlstate) {
  struct Case {
    const char* message;
    Reason reason;
    const char* sqlstate;
  } cases[] = {
      {"connection to server at \"127.0.0.1\", port 5432 failed: FATAL:  28P01: password "
       "authentication failed "
       "for user \"pes\"\nLOCATION:  auth_failed, auth.c:326\n",
       Reason::auth, "28P01"},
      {"connection to server at \"127.0.0.1\", port 5432 failed: FATAL:  28000: role \"nobody\" "
       "does not exist\n",
       Reason::auth, "28000"},
      {"connection to server at \"127.0.0.1\", port 5432 failed: FATAL:  3D000: database \"gone\" "
       "does not exist\n",
       Reason::config, "3D000"},
      {"connection to server at \"127.0.0.1\", port 5432 failed: FATAL:  53300: sorry, too many "
       "clients already\n",
       Reason::assertion, "53300"},
      {"connection to server at \"127.0.0.1\", port 5432 failed: FATAL:  57P03: the database "
       "system is starting up\n",
       Reason::connect, "57P03"},
      // A translated severity does not hide the SQLSTATE.
      {"Verbindung zum Server fehlgeschlagen: FATAL:  28P01: Passwort-Authentifizierung "
       "fehlgeschlagen\n",
       Reason::auth, "28P01"},
      {"connection to server at \"h\", port 1 failed: FATAL:  0A000: unsupported frontend "
       "protocol\n",
       Reason::protocol, "0A000"},
  };
  for (const auto& c : cases) {
    auto f = classify_connect_error(c.message);
    EXPECT_EQ(f.reason, c.reason) << c.message;
    EXPECT_EQ(f.sqlstate, c.sqlstate) << c.message;
  }
}

TEST(PostgresErrors, ClientSideFailuresAreClassifiedByWords) {
  EXPECT_EQ(classify_connect_error(
                "connection to server at \"127.0.0.1\", port 1 failed: Connection refused\n\tIs "
                "the server running on that host and accepting TCP/IP connections?\n")
                .reason,
            Reason::connect);
  EXPECT_EQ(classify_connect_error(
                "could not translate host name \"db.invalid\" to address: Name or service not "
                "known\n")
                .reason,
            Reason::dns);
  EXPECT_EQ(classify_connect_error(
                "connection to server at \"127.0.0.1\", port 5 failed: server does not support "
                "SSL, but SSL was required\n")
                .reason,
            Reason::tls);
  EXPECT_EQ(classify_connect_error(
                "connection to server at \"127.0.0.1\", port 5 failed: SSL error: certificate "
                "verify failed\n")
                .reason,
            Reason::tls);
  EXPECT_EQ(classify_connect_error(
                "connection to server at \"127.0.0.1\", port 5 failed: fe_sendauth: no password "
                "supplied\n")
                .reason,
            Reason::auth);
  EXPECT_EQ(
      classify_connect_error("connection to server at \"127.0.0.1\", port 5 failed: could not open "
                             "certificate file \"/x.pem\": No such file or directory\n")
          .reason,
      Reason::config);
  EXPECT_EQ(classify_connect_error("server closed the connection unexpectedly\n").reason,
            Reason::connect);
  EXPECT_TRUE(classify_connect_error("Connection refused").sqlstate.empty());
}

TEST(PostgresErrors, QueryErrorsBySqlstate) {
  EXPECT_EQ(classify_query_error("42P01"), Reason::protocol);  // undefined table
  EXPECT_EQ(classify_query_error("42601"), Reason::protocol);  // syntax error
  EXPECT_EQ(classify_query_error("42501"), Reason::auth);      // permission denied
  EXPECT_EQ(classify_query_error("57014"), Reason::timeout);   // statement_timeout
  EXPECT_EQ(classify_query_error("57P01"), Reason::connect);   // admin shutdown
  EXPECT_EQ(classify_query_error(""), Reason::protocol);
}

TEST(PostgresErrors, MessagesAreTidiedToOneLine) {
  EXPECT_EQ(
      tidy_pg_message(
          "connection to server at \"h\", port 1 failed: FATAL:  28P01: password authentication "
          "failed for user \"x\"\nLOCATION:  auth_failed, auth.c:326\n"),
      "connection to server at \"h\", port 1 failed: FATAL: 28P01: password authentication failed "
      "for user "
      "\"x\"");
  EXPECT_EQ(tidy_pg_message("a\n\tIs the server running?\n"), "a Is the server running?");
  EXPECT_EQ(tidy_pg_message(""), "");
}
