// The ldap probe through the engine against a real slapd (tests/fixtures/slapd.sh, with a test
// tree and a certificate the fixture generates): binds that succeed and fail, searches finding
// one, several and no entries, StartTLS and LDAPS trusted through tls.ca_file and untrusted, the
// server killed and restarted, and servers that hang, reset or send garbage (failing at the
// deadline without holding up other probes).
#include <gtest/gtest.h>
#include <sys/resource.h>

#include <chrono>
#include <csignal>
#include <ctime>
#include <thread>

#include "agent/config/config.h"
#include "agent/engine/engine.h"
#include "probes/registry.h"
#include "tests/support/fixture.h"
#include "tests/support/probe_runner.h"

using namespace pes;
using namespace pes::test;
using namespace std::chrono_literals;

namespace {

class LdapProbeTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    std::signal(SIGPIPE,
                SIG_IGN);  // as the agent does: a peer that hangs up is an error, not a signal
    ldap_ = new Fixture("slapd", {{"TLS", "1"}});
  }
  static void TearDownTestSuite() {
    delete ldap_;
    ldap_ = nullptr;
  }
  static std::string url() { return ldap_->get("URL"); }
  static std::string ldaps() { return ldap_->get("LDAPS_URL"); }
  static std::string ca() { return ldap_->get("CA_FILE"); }
  static std::string other_ca() { return ldap_->dir() + "/certs/selfsigned.pem"; }
  // bind_dn/password lines for alice, the fixture's user.
  static std::string alice(const std::string& password = "") {
    return "      bind_dn: \"" + ldap_->get("USER_DN") + "\"\n      password: \"" +
           (password.empty() ? ldap_->get("USER_PASSWORD") : password) + "\"\n";
  }
  static std::string config(const std::string& section, const std::string& timeout) {
    return "global: {interval: 10s, timeout: " + timeout +
           "}\nprobes:\n  - name: d\n    type: ldap\n    ldap:\n" + section;
  }
  static Engine::AdHocResult run(const std::string& section, const std::string& timeout = "2s",
                                 bool debug = false) {
    ProbeRunner r(config(section, timeout));
    return r.run("d", debug);
  }

  static Fixture* ldap_;
};
Fixture* LdapProbeTest::ldap_ = nullptr;

// CPU time of this process so far (all threads), milliseconds.
double cpu_ms() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return (u.ru_utime.tv_sec + u.ru_stime.tv_sec) * 1000.0 +
         (u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1000.0;
}

double ms_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t).count();
}

}  // namespace

TEST_F(LdapProbeTest, BindSucceeds) {
  auto r = run("      url: " + url() + "\n" + alice());
  ASSERT_TRUE(r.outcome.ok) << r.outcome.message;
  EXPECT_GT(ProbeRunner::sample(r.outcome, "probe_ldap_bind_duration_seconds"), 0);
  EXPECT_EQ(ProbeRunner::sample(r.outcome, "probe_ldap_result_code"), 0);
  auto admin = run("      url: " + url() + "\n      bind_dn: \"" + ldap_->get("ADMIN_DN") +
                   "\"\n      password: \"" + ldap_->get("ADMIN_PASSWORD") + "\"\n");
  EXPECT_TRUE(admin.outcome.ok) << admin.outcome.message;
  auto anonymous = run("      url: " + url() + "\n");
  EXPECT_TRUE(anonymous.outcome.ok) << anonymous.outcome.message;
}

TEST_F(LdapProbeTest, WrongPasswordIsAuthWithResult49AndNeverShown) {
  auto r = run("      url: " + url() + "\n" + alice("Wrong-Ldap-Pw-93"), "2s", true);
  EXPECT_FALSE(r.outcome.ok);
  EXPECT_EQ(r.outcome.reason, Reason::auth) << r.outcome.message;
  EXPECT_EQ(ProbeRunner::sample(r.outcome, "probe_ldap_result_code"), 49);
  EXPECT_NE(r.outcome.message.find("Invalid credentials"), std::string::npos) << r.outcome.message;
  EXPECT_EQ(r.outcome.message.find("Wrong-Ldap-Pw-93"), std::string::npos);
  EXPECT_EQ(r.trace.find("Wrong-Ldap-Pw-93"), std::string::npos) << r.trace;
  EXPECT_NE(r.trace.find("simple bind as " + ldap_->get("USER_DN")), std::string::npos) << r.trace;
}

TEST_F(LdapProbeTest, UnknownDnIsAuth) {
  auto r = run("      url: " + url() + "\n      bind_dn: \"uid=mallory,ou=people," +
               ldap_->get("BASE_DN") + "\"\n      password: guess\n");
  EXPECT_EQ(r.outcome.reason, Reason::auth) << r.outcome.message;
  EXPECT_EQ(ProbeRunner::sample(r.outcome, "probe_ldap_result_code"), 49);
}

TEST_F(LdapProbeTest, SearchFindsOneEntry) {
  auto r = run("      url: " + url() + "\n" + alice() + "      search: {base: \"" +
               ldap_->get("PEOPLE_DN") + "\", filter: \"(uid=alice)\", scope: one}\n");
  ASSERT_TRUE(r.outcome.ok) << r.outcome.message;
  EXPECT_EQ(ProbeRunner::sample(r.outcome, "probe_ldap_search_entries"), 1);
  EXPECT_GE(ProbeRunner::sample(r.outcome, "probe_ldap_search_duration_seconds"), 0);
  EXPECT_EQ(ProbeRunner::sample(r.outcome, "probe_ldap_result_code"), 0);
}

TEST_F(LdapProbeTest, SearchFindingNothingIsAssertion) {
  auto r = run("      url: " + url() + "\n" + alice() + "      search: {base: \"" +
               ldap_->get("BASE_DN") + "\", filter: \"(uid=nobody)\"}\n");
  EXPECT_FALSE(r.outcome.ok);
  EXPECT_EQ(r.outcome.reason, Reason::assertion) << r.outcome.message;
  EXPECT_EQ(r.outcome.message, "search found 0 entries, fewer than min_entries 1");
  EXPECT_EQ(ProbeRunner::sample(r.outcome, "probe_ldap_search_entries"), 0);
  EXPECT_EQ(ProbeRunner::sample(r.outcome, "probe_ldap_result_code"), 0);
  // min_entries: 0 accepts an empty answer.
  auto zero = run("      url: " + url() + "\n" + alice() + "      search: {base: \"" +
                  ldap_->get("BASE_DN") + "\", filter: \"(uid=nobody)\", min_entries: 0}\n");
  EXPECT_TRUE(zero.outcome.ok) << zero.outcome.message;
}

TEST_F(LdapProbeTest, SearchScopesAndMinEntries) {
  std::string people = ldap_->get("PEOPLE_DN");
  auto two = run("      url: " + url() + "\n      search: {base: \"" + people +
                 "\", scope: one, min_entries: 2}\n");
  EXPECT_TRUE(two.outcome.ok) << two.outcome.message;
  EXPECT_EQ(ProbeRunner::sample(two.outcome, "probe_ldap_search_entries"), 2);  // alice, bob
  auto three = run("      url: " + url() + "\n      search: {base: \"" + people +
                   "\", scope: one, min_entries: 3}\n");
  EXPECT_EQ(three.outcome.reason, Reason::assertion);
  auto sub =
      run("      url: " + url() + "\n      search: {base: \"" + ldap_->get("BASE_DN") + "\"}\n");
  EXPECT_EQ(ProbeRunner::sample(sub.outcome, "probe_ldap_search_entries"),
            6);  // the whole test tree
  auto base =
      run("      url: " + url() + "\n      search: {base: \"" + people + "\", scope: base}\n");
  EXPECT_EQ(ProbeRunner::sample(base.outcome, "probe_ldap_search_entries"), 1);
}

TEST_F(LdapProbeTest, MissingSearchBaseIsAssertionWithResult32) {
  auto r = run("      url: " + url() + "\n      search: {base: \"ou=gone," + ldap_->get("BASE_DN") +
               "\"}\n");
  EXPECT_EQ(r.outcome.reason, Reason::assertion) << r.outcome.message;
  EXPECT_EQ(ProbeRunner::sample(r.outcome, "probe_ldap_result_code"), 32);
  EXPECT_NE(r.outcome.message.find("does not exist"), std::string::npos) << r.outcome.message;
}

TEST_F(LdapProbeTest, StartTlsTrustedAndUntrusted) {
  auto ok = run("      url: " + url() + "\n      start_tls: true\n" + alice() +
                    "      tls: {ca_file: " + ca() + "}\n",
                "2s", true);
  ASSERT_TRUE(ok.outcome.ok) << ok.outcome.message;
  EXPECT_NE(ok.trace.find("TLS established (StartTLS)"), std::string::npos) << ok.trace;
  EXPECT_GT(ProbeRunner::sample(ok.outcome, "probe_ssl_earliest_cert_expiry"),
            static_cast<double>(std::time(nullptr)) + 86400);
  EXPECT_GE(ProbeRunner::sample(ok.outcome, "probe_ldap_starttls_duration_seconds"), 0);
  auto bad = run("      url: " + url() + "\n      start_tls: true\n" + alice() +
                 "      tls: {ca_file: " + other_ca() + "}\n");
  EXPECT_EQ(bad.outcome.reason, Reason::tls) << bad.outcome.message;
}

TEST_F(LdapProbeTest, LdapsTrustedUntrustedAndSkipped) {
  auto ok =
      run("      url: " + ldaps() + "\n" + alice() + "      tls: {ca_file: " + ca() +
          "}\n      search: {base: \"" + ldap_->get("PEOPLE_DN") + "\", filter: \"(uid=bob)\"}\n");
  ASSERT_TRUE(ok.outcome.ok) << ok.outcome.message;
  EXPECT_EQ(ProbeRunner::sample(ok.outcome, "probe_ldap_search_entries"), 1);
  EXPECT_GT(ProbeRunner::sample(ok.outcome, "probe_ssl_earliest_cert_expiry"), 0);
  auto untrusted =
      run("      url: " + ldaps() + "\n" + alice() + "      tls: {ca_file: " + other_ca() + "}\n");
  EXPECT_EQ(untrusted.outcome.reason, Reason::tls) << untrusted.outcome.message;
  auto skip =
      run("      url: " + ldaps() + "\n" + alice() + "      tls: {insecure_skip_verify: true}\n");
  EXPECT_TRUE(skip.outcome.ok) << skip.outcome.message;
}

TEST_F(LdapProbeTest, RefusedPortIsConnect) {
  std::string port = std::to_string(free_port());
  EXPECT_EQ(run("      url: ldap://127.0.0.1:" + port + "\n").outcome.reason, Reason::connect);
  auto tls = run("      url: ldaps://127.0.0.1:" + port + "\n      tls: {ca_file: " + ca() + "}\n");
  EXPECT_EQ(tls.outcome.reason, Reason::connect) << tls.outcome.message;
  auto st = run("      url: ldap://127.0.0.1:" + port + "\n      start_tls: true\n");
  EXPECT_EQ(st.outcome.reason, Reason::connect) << st.outcome.message;
}

TEST(LdapPlain, StartTlsWithoutServerTlsKilledAndRestarted) {
  Fixture slapd("slapd");
  std::string section = "      url: " + slapd.get("URL") + "\n      bind_dn: \"" +
                        slapd.get("USER_DN") + "\"\n      password: \"" +
                        slapd.get("USER_PASSWORD") + "\"\n";
  ProbeRunner runner(
      "global: {interval: 10s, timeout: 1s}\nprobes:\n"
      "  - name: d\n    type: ldap\n    ldap:\n" +
      section + "  - name: st\n    type: ldap\n    ldap:\n" + section + "      start_tls: true\n");
  // A server without TLS refuses StartTLS: a TLS failure, not an outage.
  auto st = runner.run("st");
  EXPECT_EQ(st.outcome.reason, Reason::tls) << st.outcome.message;
  EXPECT_TRUE(runner.run("d").outcome.ok);
  slapd.kill(9);
  auto down = runner.run("d");
  EXPECT_FALSE(down.outcome.ok);
  EXPECT_EQ(down.outcome.reason, Reason::connect) << down.outcome.message;
  slapd.start();
  auto up = runner.run("d");
  EXPECT_TRUE(up.outcome.ok) << up.outcome.message;
}

TEST_F(LdapProbeTest, HungServerFailsAtTheDeadline) {
  HungServer hang(HungMode::accept_and_hang);
  std::string port = std::to_string(hang.port());
  std::string cases[] = {
      "      url: ldap://127.0.0.1:" + port + "\n" + alice(),
      "      url: ldaps://127.0.0.1:" + port + "\n      tls: {ca_file: " + ca() + "}\n",
      "      url: ldap://127.0.0.1:" + port +
          "\n      start_tls: true\n      tls: {ca_file: " + ca() + "}\n",
  };
  for (const auto& c : cases) {
    double cpu_before = cpu_ms();
    auto start = std::chrono::steady_clock::now();
    auto r = run(c, "500ms");
    double took = ms_since(start);
    EXPECT_EQ(r.outcome.reason, Reason::timeout) << c << r.outcome.message;
    EXPECT_NE(r.outcome.message.find("before the deadline"), std::string::npos)
        << r.outcome.message;
    EXPECT_GE(took, 450) << c;
    EXPECT_LT(took, 500 + slack_ms(100)) << c;  // timeout + 100 ms
    // Waiting is waiting: libldap's own TLS (GnuTLS) spins here for ldaps://, ours sleeps in
    // poll().
    EXPECT_LT(cpu_ms() - cpu_before, 150) << c;
  }
}

TEST_F(LdapProbeTest, ResetAndGarbageFailFast) {
  HungServer reset(HungMode::reset);
  auto r = run("      url: ldap://127.0.0.1:" + std::to_string(reset.port()) + "\n", "1s");
  EXPECT_EQ(r.outcome.reason, Reason::connect) << r.outcome.message;
  // A BER frame that is no LDAP result.
  HungServer junk(HungMode::garbage, std::string("\x30\x05\x02\x01\x01\x61\x00", 7));
  auto start = std::chrono::steady_clock::now();
  auto g = run("      url: ldap://127.0.0.1:" + std::to_string(junk.port()) + "\n", "1s");
  EXPECT_FALSE(g.outcome.ok);
  EXPECT_TRUE(g.outcome.reason == Reason::protocol || g.outcome.reason == Reason::connect)
      << g.outcome.message;
  EXPECT_LT(ms_since(start), 900);
}

TEST_F(LdapProbeTest, HungServerDoesNotDelayOtherProbes) {
  HungServer hang(HungMode::accept_and_hang);
  std::string yaml =
      "global: {interval: 10s, timeout: 2s}\nprobes:\n"
      "  - name: hung\n    type: ldap\n    interval: 700ms\n    timeout: 600ms\n    ldap:\n"
      "      url: ldap://127.0.0.1:" +
      std::to_string(hang.port()) +
      "\n"
      "  - name: ok\n    type: ldap\n    interval: 200ms\n    timeout: 200ms\n    ldap:\n"
      "      url: " +
      url() + "\n" + alice();
  auto cfg = parse_config(yaml, "test.yml", probe_types());
  EngineOptions opts;
  opts.workers = 2;
  Engine engine(opts);
  engine.apply(cfg);
  engine.start();
  std::this_thread::sleep_for(2500ms);
  auto view = engine.view();
  engine.stop();
  uint64_t ok_runs = 0, ok_failed = 0, hung_timeouts = 0, hung_other = 0;
  for (const auto& rt : view.probes) {
    const ProbeSnapshot s = rt->state.snapshot();
    if (rt->cfg.name == "ok") {
      ok_runs = s.runs_ok;
      ok_failed = s.runs_failed;
    } else {
      hung_timeouts = s.failures[static_cast<size_t>(Reason::timeout)];
      hung_other = s.runs_failed - hung_timeouts + s.runs_ok;
    }
  }
  EXPECT_GE(ok_runs, 9u);  // about 12 in 2.5 s at 200 ms
  EXPECT_EQ(ok_failed, 0u);
  EXPECT_GE(hung_timeouts, 2u);
  EXPECT_EQ(hung_other, 0u);
}
