// The http probe through the engine against a real nginx (HTTP and HTTPS with certificates the
// fixture generates: valid, expired, wrong host, self-signed, soon expiring) and against servers
// that hang, trickle, reset or send garbage.
#include <gtest/gtest.h>

#include <chrono>
#include <ctime>

#include "tests/support/fixture.h"
#include "tests/support/probe_runner.h"

using namespace pes;
using namespace pes::test;
using namespace std::chrono_literals;

namespace {

class HttpProbeTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { nginx_ = new Fixture("nginx", {{"TLS", "1"}, {"BIG_MB", "2"}}); }
  static void TearDownTestSuite() {
    delete nginx_;
    nginx_ = nullptr;
  }
  static std::string http(const std::string& path) {
    return "http://127.0.0.1:" + nginx_->get("PORT") + path;
  }
  static std::string https(const std::string& port_key, const std::string& path = "/ok") {
    return "https://localhost:" + nginx_->get(port_key) + path;
  }
  static std::string ca() { return nginx_->get("CA_FILE"); }

  // One probe named "p" with the given http section (YAML flow or block, indented by 6).
  static Engine::AdHocResult run(const std::string& http_section, const std::string& timeout = "2s",
                                 bool debug = false) {
    ProbeRunner r("global: {interval: 10s, timeout: " + timeout +
                  "}\nprobes:\n  - name: p\n    type: http\n    http:\n" + http_section);
    return r.run("p", debug);
  }

  static Fixture* nginx_;
};
Fixture* HttpProbeTest::nginx_ = nullptr;

}  // namespace

TEST_F(HttpProbeTest, SuccessWithMetrics) {
  auto r =
      run("      url: " + http("/ok") + "\n      expect: {status: [200], body_regex: [\"^ok\"]}\n");
  EXPECT_TRUE(r.outcome.ok) << r.outcome.message;
  EXPECT_EQ(ProbeRunner::sample(r.outcome, "probe_http_status_code"), 200);
  EXPECT_EQ(ProbeRunner::sample(r.outcome, "probe_http_content_length"), 3);
  EXPECT_GE(ProbeRunner::sample(r.outcome, "probe_http_duration_seconds", "phase=connect"), 0);
}

TEST_F(HttpProbeTest, UnexpectedStatusIsHttpStatus) {
  auto r = run("      url: " + http("/status/503") + "\n");
  EXPECT_FALSE(r.outcome.ok);
  EXPECT_EQ(r.outcome.reason, Reason::http_status);
  EXPECT_EQ(r.outcome.message, "HTTP status 503, expected 2xx");
  EXPECT_EQ(ProbeRunner::sample(r.outcome, "probe_http_status_code"), 503);
}

TEST_F(HttpProbeTest, JsonAndHeaderAssertions) {
  auto ok = run("      url: " + http("/json") +
                "\n      expect: {json: {status: ok, healthy: true, count: 3, "
                "\"checks.database.status\": UP, "
                "\"items.1\": b}}\n");
  EXPECT_TRUE(ok.outcome.ok) << ok.outcome.message;
  auto bad = run("      url: " + http("/json") +
                 "\n      expect: {json: {\"checks.cache.status\": UP}}\n");
  EXPECT_EQ(bad.outcome.reason, Reason::assertion);
  EXPECT_EQ(bad.outcome.message, "JSON checks.cache.status is \"DOWN\", expected \"UP\"");
  auto hdr = run("      url: " + http("/headers") +
                 "\n      expect: {headers: {X-Pes-Test: \"^fixture$\"}}\n");
  EXPECT_TRUE(hdr.outcome.ok) << hdr.outcome.message;
}

TEST_F(HttpProbeTest, RedirectsFollowedOrNot) {
  auto follow = run("      url: " + http("/redirect/2") + "\n");
  EXPECT_TRUE(follow.outcome.ok) << follow.outcome.message;
  auto no = run("      url: " + http("/redirect") +
                "\n      follow_redirects: false\n      expect: {status: [302]}\n");
  EXPECT_TRUE(no.outcome.ok) << no.outcome.message;
  auto loop = run("      url: " + http("/loop") + "\n      max_redirects: 5\n");
  EXPECT_FALSE(loop.outcome.ok);
  EXPECT_EQ(loop.outcome.reason, Reason::protocol);
  EXPECT_NE(loop.outcome.message.find("redirect"), std::string::npos);
}

TEST_F(HttpProbeTest, BodyLargerThanLimitFails) {
  auto r = run("      url: " + http("/big") + "\n      max_body_bytes: 100000\n");
  EXPECT_FALSE(r.outcome.ok);
  EXPECT_EQ(r.outcome.reason, Reason::protocol);
  EXPECT_NE(r.outcome.message.find("max_body_bytes"), std::string::npos);
  auto ok = run("      url: " + http("/big") + "\n");
  EXPECT_TRUE(ok.outcome.ok) << ok.outcome.message;
}

TEST_F(HttpProbeTest, MethodHeadersBodyAndBasicAuth) {
  auto echo = run("      url: " + http("/echo-headers") +
                  "\n      headers: {X-Test: hello}\n      expect: {body_regex: [\"x-test=hello\", "
                  "\"user-agent=pes-agent/\"]}\n");
  EXPECT_TRUE(echo.outcome.ok) << echo.outcome.message;
  auto authed = run("      url: " + http("/basic") +
                    "\n      basic_auth: {username: pes, password: secret}\n");
  EXPECT_TRUE(authed.outcome.ok) << authed.outcome.message;
  auto denied = run("      url: " + http("/basic") +
                    "\n      basic_auth: {username: pes, password: wrong}\n");
  EXPECT_EQ(denied.outcome.reason, Reason::http_status);
  auto head = run("      url: " + http("/ok") + "\n      method: HEAD\n");
  EXPECT_TRUE(head.outcome.ok) << head.outcome.message;
}

TEST_F(HttpProbeTest, ValidCertificateAndExpiry) {
  auto r = run("      url: " + https("TLS_PORT") + "\n      tls: {ca_file: " + ca() +
               "}\n      expect: {cert_min_days: 14}\n");
  EXPECT_TRUE(r.outcome.ok) << r.outcome.message;
  double expiry = ProbeRunner::sample(r.outcome, "probe_ssl_earliest_cert_expiry");
  EXPECT_GT(expiry, static_cast<double>(std::time(nullptr)) + 14 * 86400);
  EXPECT_GT(ProbeRunner::sample(r.outcome, "probe_http_duration_seconds", "phase=tls"), 0);
}

TEST_F(HttpProbeTest, CertificateFailuresAreTls) {
  for (const char* port : {"EXPIRED_PORT", "WRONGHOST_PORT", "SELFSIGNED_PORT"}) {
    auto r = run("      url: " + https(port) + "\n      tls: {ca_file: " + ca() + "}\n");
    EXPECT_FALSE(r.outcome.ok) << port;
    EXPECT_EQ(r.outcome.reason, Reason::tls) << port << ": " << r.outcome.message;
  }
  // Without our CA even the valid certificate is untrusted.
  auto untrusted = run("      url: " + https("TLS_PORT") + "\n");
  EXPECT_EQ(untrusted.outcome.reason, Reason::tls);
  // insecure_skip_verify accepts it, and server_name checks the name while connecting elsewhere.
  auto skip =
      run("      url: " + https("EXPIRED_PORT") + "\n      tls: {insecure_skip_verify: true}\n");
  EXPECT_TRUE(skip.outcome.ok) << skip.outcome.message;
  auto sni = run("      url: https://127.0.0.1:" + nginx_->get("WRONGHOST_PORT") +
                 "/ok\n      tls: {ca_file: " + ca() + ", server_name: wrong.example}\n");
  EXPECT_TRUE(sni.outcome.ok) << sni.outcome.message;
}

TEST_F(HttpProbeTest, SoonExpiringCertificateFailsCertMinDays) {
  auto r = run("      url: " + https("SOON_PORT") + "\n      tls: {ca_file: " + ca() +
               "}\n      expect: {cert_min_days: 14}\n");
  EXPECT_FALSE(r.outcome.ok);
  EXPECT_EQ(r.outcome.reason, Reason::assertion);
  EXPECT_NE(r.outcome.message.find("cert_min_days"), std::string::npos);
}

TEST_F(HttpProbeTest, RefusedConnectionAndUnknownHost) {
  auto refused = run("      url: http://127.0.0.1:" + std::to_string(free_port()) + "/\n");
  EXPECT_EQ(refused.outcome.reason, Reason::connect);
  // A label of 64 characters (DNS allows 63): the resolver refuses the name before it would send
  // a query, so the lookup fails here without traffic to the machine's name server (a name
  // like no-such-host.invalid would be asked of it).
  const std::string unresolvable = std::string(64, 'x') + ".invalid";
  auto dns = run("      url: http://" + unresolvable + "/\n");
  EXPECT_EQ(dns.outcome.reason, Reason::dns);
}

TEST_F(HttpProbeTest, HungAndTricklingServersFailAtTheDeadline) {
  HungServer hang(HungMode::accept_and_hang);
  // nginx's /slow sends a valid response at 1 KiB/s: the body trickles past the deadline.
  for (std::string url : {"http://127.0.0.1:" + std::to_string(hang.port()) + "/", http("/slow")}) {
    auto start = std::chrono::steady_clock::now();
    auto r = run("      url: " + url + "\n", "500ms");
    auto took = std::chrono::steady_clock::now() - start;
    EXPECT_EQ(r.outcome.reason, Reason::timeout) << r.outcome.message;
    EXPECT_LT(took, 600ms + 100ms);
    EXPECT_GE(took, 450ms);
  }
}

TEST_F(HttpProbeTest, ResetAndGarbageFail) {
  HungServer reset(HungMode::reset);
  auto r = run("      url: http://127.0.0.1:" + std::to_string(reset.port()) + "/\n", "1s");
  EXPECT_FALSE(r.outcome.ok);
  EXPECT_TRUE(r.outcome.reason == Reason::connect || r.outcome.reason == Reason::protocol)
      << r.outcome.message;
  HungServer junk(HungMode::garbage, "\x01\x02 not http at all\r\n\r\n");
  auto g = run("      url: http://127.0.0.1:" + std::to_string(junk.port()) + "/\n", "1s");
  EXPECT_EQ(g.outcome.reason, Reason::protocol) << g.outcome.message;
  // A server that trickles bytes that are not HTTP is a protocol failure, found at once.
  HungServer trickle(HungMode::trickle, 100ms);
  auto t = run("      url: http://127.0.0.1:" + std::to_string(trickle.port()) + "/\n", "1s");
  EXPECT_EQ(t.outcome.reason, Reason::protocol) << t.outcome.message;
}

TEST_F(HttpProbeTest, OneHungTargetDoesNotDelayAnother) {
  HungServer hang(HungMode::accept_and_hang);
  ProbeRunner runner(
      "global: {interval: 10s, timeout: 1500ms}\nprobes:\n"
      "  - {name: hung, type: http, http: {url: \"http://127.0.0.1:" +
      std::to_string(hang.port()) +
      "/\"}}\n"
      "  - {name: ok, type: http, http: {url: \"" +
      http("/ok") + "\"}}\n");
  std::thread slow([&] { runner.run("hung"); });
  std::this_thread::sleep_for(100ms);
  auto start = std::chrono::steady_clock::now();
  auto r = runner.run("ok");
  auto took = std::chrono::steady_clock::now() - start;
  slow.join();
  EXPECT_TRUE(r.outcome.ok) << r.outcome.message;
  EXPECT_LT(took, 300ms);
}

TEST_F(HttpProbeTest, DebugTraceShowsStepsWithoutSecrets) {
  auto r = run("      url: " + http("/basic") +
                   "\n      basic_auth: {username: pes, password: secret-pw-123}\n",
               "2s", true);
  EXPECT_NE(r.trace.find("GET http://127.0.0.1:"), std::string::npos) << r.trace;
  EXPECT_EQ(r.trace.find("secret-pw-123"), std::string::npos);
}

TEST_F(HttpProbeTest, TcpProbeConnectsTlsAndBanner) {
  ProbeRunner runner(
      "global: {interval: 10s, timeout: 1s}\nprobes:\n"
      "  - {name: plain, type: tcp, tcp: {address: \"127.0.0.1:" +
      nginx_->get("PORT") +
      "\", "
      "send: \"GET /ok HTTP/1.0\\r\\n\\r\\n\", expect_regex: \"HTTP/1.1 200\"}}\n"
      "  - {name: tls, type: tcp, tcp: {address: \"localhost:" +
      nginx_->get("TLS_PORT") +
      "\", "
      "tls: {ca_file: " +
      ca() +
      "}}}\n"
      "  - {name: badtls, type: tcp, tcp: {address: \"localhost:" +
      nginx_->get("EXPIRED_PORT") +
      "\", "
      "tls: {ca_file: " +
      ca() +
      "}}}\n"
      "  - {name: refused, type: tcp, tcp: {address: \"127.0.0.1:" +
      std::to_string(free_port()) +
      "\"}}\n"
      "  - {name: nomatch, type: tcp, tcp: {address: \"127.0.0.1:" +
      nginx_->get("PORT") +
      "\", "
      "send: \"GET /ok HTTP/1.0\\r\\n\\r\\n\", expect_regex: \"SSH-2.0\"}}\n");
  auto plain = runner.run("plain");
  EXPECT_TRUE(plain.outcome.ok) << plain.outcome.message;
  auto tls = runner.run("tls");
  EXPECT_TRUE(tls.outcome.ok) << tls.outcome.message;
  EXPECT_GT(ProbeRunner::sample(tls.outcome, "probe_ssl_earliest_cert_expiry"), 0);
  EXPECT_EQ(runner.run("badtls").outcome.reason, Reason::tls);
  EXPECT_EQ(runner.run("refused").outcome.reason, Reason::connect);
  EXPECT_EQ(runner.run("nomatch").outcome.reason, Reason::assertion);
  HungServer hang(HungMode::accept_and_hang);
  ProbeRunner hung(
      "global: {interval: 10s, timeout: 500ms}\nprobes:\n"
      "  - {name: h, type: tcp, tcp: {address: \"127.0.0.1:" +
      std::to_string(hang.port()) + "\", expect_regex: \"hello\"}}\n");
  auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(hung.run("h").outcome.reason, Reason::timeout);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 600ms);
}
