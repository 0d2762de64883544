// The postgres probe through the engine against a real PostgreSQL 15 (tests/fixtures/postgres.sh):
// success with its metrics, wrong password, unknown role and database, refused port, a failing
// query, saturation above max_connections_ratio and at max_connections, TLS required against a
// server without TLS and verified against one with it, the server stopped and started again,
// and servers that hang, trickle, reset or send garbage (failing at the deadline without holding
// up other probes).
#include <gtest/gtest.h>
#include <libpq-fe.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <memory>
#include <thread>
#include <vector>

#include "agent/config/config.h"
#include "agent/engine/engine.h"
#include "probes/registry.h"
#include "tests/support/fixture.h"
#include "tests/support/probe_runner.h"

using namespace pes;
using namespace pes::test;
using namespace std::chrono_literals;

namespace {

struct PgCloser {
  void operator()(PGconn* c) const { PQfinish(c); }
};
using PgConn = std::unique_ptr<PGconn, PgCloser>;

class PostgresProbeTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { pg_ = new Fixture("postgres", {{"MAX_CONNECTIONS", "20"}}); }
  static void TearDownTestSuite() {
    delete pg_;
    pg_ = nullptr;
  }

  // A postgres section for the fixture with the agent's role; `extra` lines are appended (indented
  // by 6).
  static std::string section(const std::string& extra = "", const std::string& password = "") {
    return "      host: 127.0.0.1\n      port: " + pg_->get("PORT") +
           "\n      dbname: " + pg_->get("DBNAME") + "\n      user: " + pg_->get("USER") +
           "\n      password: \"" + (password.empty() ? pg_->get("PASSWORD") : password) + "\"\n" +
           extra;
  }
  static std::string config(const std::string& section, const std::string& timeout = "2s") {
    return "global: {interval: 10s, timeout: " + timeout +
           "}\nprobes:\n  - name: p\n    type: postgres\n    postgres:\n" + section;
  }
  static Engine::AdHocResult run(const std::string& section, const std::string& timeout = "2s",
                                 bool debug = false) {
    ProbeRunner r(config(section, timeout));
    return r.run("p", debug);
  }
  // A blocking libpq session as the agent's role (for filling connection slots).
  static PgConn open_session() {
    std::string dsn = "host=127.0.0.1 port=" + pg_->get("PORT") + " dbname=" + pg_->get("DBNAME") +
                      " user=" + pg_->get("USER") + " password=" + pg_->get("PASSWORD") +
                      " connect_timeout=5";
    PgConn c(PQconnectdb(dsn.c_str()));
    return c;
  }

  static Fixture* pg_;
};
Fixture* PostgresProbeTest::pg_ = nullptr;

double ms_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t).count();
}

}  // namespace

TEST_F(PostgresProbeTest, SuccessWithMetrics) {
  auto r = run(section());
  ASSERT_TRUE(r.outcome.ok) << r.outcome.message;
  EXPECT_GT(ProbeRunner::sample(r.outcome, "probe_postgres_connect_duration_seconds"), 0);
  EXPECT_GE(ProbeRunner::sample(r.outcome, "probe_postgres_query_duration_seconds"), 0);
  double ratio = ProbeRunner::sample(r.outcome, "probe_postgres_connections_ratio");
  EXPECT_GE(ratio, 1.0 / 20);  // at least the probe's own session
  EXPECT_LT(ratio, 0.5);
  EXPECT_EQ(ProbeRunner::sample(r.outcome, "probe_postgres_in_recovery"), 0);
  bool version = false;
  for (const auto& s : r.outcome.samples)
    if (s.name == "probe_postgres_info") {
      ASSERT_EQ(s.labels.size(), 1u);
      EXPECT_EQ(s.labels[0].first, "version");
      EXPECT_EQ(s.labels[0].second.rfind("15.", 0), 0u) << s.labels[0].second;
      EXPECT_EQ(s.labels[0].second.find(' '), std::string::npos) << s.labels[0].second;
      EXPECT_EQ(s.value, 1);
      version = true;
    }
  EXPECT_TRUE(version);
}

TEST_F(PostgresProbeTest, WrongPasswordIsAuthAndNeverShown) {
  auto r = run(section("", "Wrong-Password-417"), "2s", true);
  EXPECT_FALSE(r.outcome.ok);
  EXPECT_EQ(r.outcome.reason, Reason::auth) << r.outcome.message;
  EXPECT_NE(r.outcome.message.find("password authentication failed"), std::string::npos)
      << r.outcome.message;
  EXPECT_EQ(r.outcome.message.find("Wrong-Password-417"), std::string::npos);
  EXPECT_EQ(r.trace.find("Wrong-Password-417"), std::string::npos) << r.trace;
  EXPECT_NE(r.trace.find("connecting to 127.0.0.1:" + pg_->get("PORT")), std::string::npos)
      << r.trace;
}

TEST_F(PostgresProbeTest, UnknownRoleIsAuth) {
  auto r = run("      host: 127.0.0.1\n      port: " + pg_->get("PORT") + "\n      dbname: " +
               pg_->get("DBNAME") + "\n      user: nobody_here\n      password: whatever-pw\n");
  EXPECT_EQ(r.outcome.reason, Reason::auth) << r.outcome.message;
}

TEST_F(PostgresProbeTest, UnknownDatabaseIsConfig) {
  auto r = run("      host: 127.0.0.1\n      port: " + pg_->get("PORT") +
               "\n      dbname: no_such_db\n      user: " + pg_->get("USER") +
               "\n      password: \"" + pg_->get("PASSWORD") + "\"\n");
  EXPECT_FALSE(r.outcome.ok);
  EXPECT_EQ(r.outcome.reason, Reason::config) << r.outcome.message;
  EXPECT_NE(r.outcome.message.find("database \"no_such_db\" does not exist"), std::string::npos)
      << r.outcome.message;
}

TEST_F(PostgresProbeTest, RefusedPortIsConnect) {
  auto r = run("      host: 127.0.0.1\n      port: " + std::to_string(free_port()) +
               "\n      password: x\n");
  EXPECT_EQ(r.outcome.reason, Reason::connect) << r.outcome.message;
  EXPECT_NE(r.outcome.message.find("refused"), std::string::npos) << r.outcome.message;
}

TEST_F(PostgresProbeTest, FailingQueryIsProtocolAndFalseIsAssertion) {
  auto bad = run(section("      query: SELECT * FROM no_such_table\n"));
  EXPECT_EQ(bad.outcome.reason, Reason::protocol) << bad.outcome.message;
  EXPECT_NE(bad.outcome.message.find("42P01"), std::string::npos) << bad.outcome.message;
  // Connect time is still reported; the query did run.
  EXPECT_GT(ProbeRunner::sample(bad.outcome, "probe_postgres_connect_duration_seconds"), 0);
  auto no = run(section("      query: SELECT 1 = 2\n"));
  EXPECT_EQ(no.outcome.reason, Reason::assertion) << no.outcome.message;
  EXPECT_EQ(no.outcome.message, "the query returned false");
  auto yes = run(section("      query: SELECT count(*) > 0 FROM pg_database\n"));
  EXPECT_TRUE(yes.outcome.ok) << yes.outcome.message;
}

TEST_F(PostgresProbeTest, ServerNoticesGoToTheTrace) {
  auto r = run(section("      query: \"DO $$BEGIN RAISE NOTICE 'hello from plpgsql'; END$$\"\n"),
               "2s", true);
  EXPECT_TRUE(r.outcome.ok) << r.outcome.message;
  EXPECT_NE(r.trace.find("server notice: NOTICE: 00000: hello from plpgsql"), std::string::npos)
      << r.trace;
}

TEST_F(PostgresProbeTest, RatioAboveThresholdIsAssertion) {
  std::vector<PgConn> held;
  for (int i = 0; i < 9; ++i) {
    held.push_back(open_session());
    ASSERT_EQ(PQstatus(held.back().get()), CONNECTION_OK) << PQerrorMessage(held.back().get());
  }
  // 9 held + the probe's own = at least 10 of 20.
  auto over = run(section("      max_connections_ratio: 0.4\n"));
  EXPECT_FALSE(over.outcome.ok);
  EXPECT_EQ(over.outcome.reason, Reason::assertion) << over.outcome.message;
  EXPECT_NE(over.outcome.message.find("above max_connections_ratio 0.400"), std::string::npos)
      << over.outcome.message;
  EXPECT_GE(ProbeRunner::sample(over.outcome, "probe_postgres_connections_ratio"), 0.5);
  auto under = run(section("      max_connections_ratio: 0.9\n"));
  EXPECT_TRUE(under.outcome.ok) << under.outcome.message;
  held.clear();
}

TEST_F(PostgresProbeTest, AllSlotsTakenReportsSaturation) {
  // max_connections 20, 2 reserved for superusers: the agent's role gets 18 sessions.
  std::vector<PgConn> held;
  for (int i = 0; i < 30; ++i) {
    PgConn c = open_session();
    if (PQstatus(c.get()) != CONNECTION_OK) break;
    held.push_back(std::move(c));
  }
  ASSERT_GE(held.size(), 15u);
  auto with_threshold = run(section("      max_connections_ratio: 0.95\n"));
  EXPECT_EQ(with_threshold.outcome.reason, Reason::assertion) << with_threshold.outcome.message;
  EXPECT_NE(with_threshold.outcome.message.find("max_connections reached"), std::string::npos);
  EXPECT_EQ(ProbeRunner::sample(with_threshold.outcome, "probe_postgres_connections_ratio"), 1);
  auto without = run(section());
  EXPECT_EQ(without.outcome.reason, Reason::connect) << without.outcome.message;
  held.clear();
  // Slots free again: the next run passes.
  bool ok = false;
  for (int i = 0; i < 20 && !ok; ++i) {
    ok = run(section()).outcome.ok;
    if (!ok) std::this_thread::sleep_for(50ms);
  }
  EXPECT_TRUE(ok);
}

TEST_F(PostgresProbeTest, TlsRequiredAgainstServerWithoutTls) {
  auto r = run(section("      sslmode: require\n"));
  EXPECT_EQ(r.outcome.reason, Reason::tls) << r.outcome.message;
  EXPECT_NE(r.outcome.message.find("SSL"), std::string::npos) << r.outcome.message;
  // prefer (the default) falls back to plain.
  EXPECT_TRUE(run(section("      sslmode: prefer\n")).outcome.ok);
}

TEST(PostgresTls, VerifiedAgainstTheFixtureCaAndRejectedWithAnother) {
  Fixture pg("postgres", {{"SSL", "1"}});
  auto base = "      host: 127.0.0.1\n      port: " + pg.get("PORT") +
              "\n      dbname: " + pg.get("DBNAME") + "\n      user: " + pg.get("USER") +
              "\n      password: \"" + pg.get("PASSWORD") + "\"\n";
  auto cfg = [&](const std::string& extra) {
    return "global: {interval: 10s, timeout: 3s}\nprobes:\n  - name: p\n    type: postgres\n    "
           "postgres:\n" +
           base + extra;
  };
  ProbeRunner good(
      cfg("      sslmode: verify-full\n      tls: {ca_file: " + pg.get("CA_FILE") + "}\n"));
  auto ok = good.run("p", true);
  EXPECT_TRUE(ok.outcome.ok) << ok.outcome.message;
  EXPECT_NE(ok.trace.find("TLS on"), std::string::npos) << ok.trace;
  // The server's certificate is not signed by a self-signed stranger.
  std::string dir = pg.dir() + "/certs";
  ProbeRunner bad(
      cfg("      sslmode: verify-ca\n      tls: {ca_file: " + dir + "/selfsigned.pem}\n"));
  auto untrusted = bad.run("p");
  EXPECT_EQ(untrusted.outcome.reason, Reason::tls) << untrusted.outcome.message;
  ProbeRunner req(cfg("      sslmode: require\n"));
  EXPECT_TRUE(req.run("p").outcome.ok);
}

TEST_F(PostgresProbeTest, ServerStoppedAndStartedAgain) {
  ProbeRunner runner(config(section(), "1s"));
  EXPECT_TRUE(runner.run("p").outcome.ok);
  pg_->stop();
  auto down = runner.run("p");
  EXPECT_FALSE(down.outcome.ok);
  EXPECT_EQ(down.outcome.reason, Reason::connect) << down.outcome.message;
  pg_->start();
  auto up = runner.run("p");
  EXPECT_TRUE(up.outcome.ok) << up.outcome.message;
}

TEST_F(PostgresProbeTest, HungServerFailsAtTheDeadline) {
  HungServer hang(HungMode::accept_and_hang);
  for (const char* mode : {"disable", "prefer", "require"}) {
    auto start = std::chrono::steady_clock::now();
    auto r = run("      host: 127.0.0.1\n      port: " + std::to_string(hang.port()) +
                     "\n      sslmode: " + mode + "\n      password: x\n",
                 "500ms");
    double took = ms_since(start);
    EXPECT_EQ(r.outcome.reason, Reason::timeout) << mode << ": " << r.outcome.message;
    EXPECT_NE(r.outcome.message.find("before the deadline"), std::string::npos)
        << r.outcome.message;
    EXPECT_GE(took, 450) << mode;
    EXPECT_LT(took, 500 + slack_ms(100)) << mode;  // timeout + 100 ms
  }
}

TEST_F(PostgresProbeTest, TrickleResetAndGarbageFailFast) {
  HungServer reset(HungMode::reset);
  auto r = run("      host: 127.0.0.1\n      port: " + std::to_string(reset.port()) +
                   "\n      password: x\n",
               "1s");
  EXPECT_EQ(r.outcome.reason, Reason::connect) << r.outcome.message;
  HungServer junk(HungMode::garbage, std::string("HTTP/1.1 400 Bad Request\r\n\r\n"));
  auto start = std::chrono::steady_clock::now();
  auto g = run("      host: 127.0.0.1\n      port: " + std::to_string(junk.port()) +
                   "\n      sslmode: disable\n      password: x\n",
               "1s");
  EXPECT_FALSE(g.outcome.ok);
  EXPECT_TRUE(g.outcome.reason == Reason::protocol || g.outcome.reason == Reason::connect)
      << g.outcome.message;
  EXPECT_LT(ms_since(start), 900);  // judged on the bytes, not at the deadline
  HungServer trickle(HungMode::trickle);
  auto t = run("      host: 127.0.0.1\n      port: " + std::to_string(trickle.port()) +
                   "\n      password: x\n",
               "1s");
  EXPECT_FALSE(t.outcome.ok);
  EXPECT_NE(t.outcome.reason, Reason::none);
}

TEST_F(PostgresProbeTest, HungServerDoesNotDelayOtherProbes) {
  // Two workers: the hung probe holds one until each deadline, the healthy probe keeps its
  // 250 ms schedule on the other.
  HungServer hang(HungMode::accept_and_hang);
  std::string yaml =
      "global: {interval: 10s, timeout: 2s}\nprobes:\n"
      "  - name: hung\n    type: postgres\n    interval: 700ms\n    timeout: 600ms\n    postgres:\n"
      "      host: 127.0.0.1\n      port: " +
      std::to_string(hang.port()) +
      "\n      password: x\n"
      "  - name: ok\n    type: postgres\n    interval: 250ms\n    timeout: 250ms\n    postgres:\n" +
      section();
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
  EXPECT_GE(ok_runs, 7u);  // about 10 in 2.5 s at 250 ms
  EXPECT_EQ(ok_failed, 0u);
  EXPECT_GE(hung_timeouts, 2u);
  EXPECT_EQ(hung_other, 0u);
}
