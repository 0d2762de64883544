// The jitsi probe through the engine against real servers on loopback: Prosody (BOSH and XMPP over
// WebSocket, directly and behind nginx as in docker-jitsi-meet), coturn (STUN), nginx (the web
// frontend, config.js, jicofo/JVB health answers from tests/fixtures/jitsi), and misbehaving
// servers (silent, hung, garbage).
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <string>

#include "tests/support/fixture.h"
#include "tests/support/probe_runner.h"

using namespace pes;
using namespace pes::test;
using namespace std::chrono_literals;

namespace {

const char* kAllComponents[] = {"web", "config", "bosh", "websocket", "jicofo", "jvb", "stun"};

class JitsiTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    prosody_ = new Fixture("prosody");
    coturn_ = new Fixture("coturn");
    conf_dir_ = new TempDir("pes-jitsi-");
    const std::string jitsi = std::string(PES_SOURCE_DIR) + "/tests/fixtures/jitsi";
    std::string conf = read_file(jitsi + "/nginx.conf");
    replace_all(conf, "@JITSI@", jitsi);
    replace_all(conf, "@PROSODY_PORT@", prosody_->get("PORT"));
    write_file(conf_dir_->file("jitsi.conf"), conf);
    nginx_ = new Fixture("nginx", {{"CONF", conf_dir_->file("jitsi.conf")}, {"TLS", "1"}});
  }
  static void TearDownTestSuite() {
    delete nginx_;
    delete coturn_;
    delete prosody_;
    delete conf_dir_;
    nginx_ = coturn_ = prosody_ = nullptr;
    conf_dir_ = nullptr;
  }

  static void replace_all(std::string& s, const std::string& from, const std::string& to) {
    for (size_t at = 0; (at = s.find(from, at)) != std::string::npos; at += to.size())
      s.replace(at, from.size(), to);
  }

  static std::string web(const std::string& path) {
    return "http://127.0.0.1:" + nginx_->get("PORT") + path;
  }
  static std::string stun() { return "127.0.0.1:" + coturn_->get("PORT"); }

  // The whole docker-jitsi-meet layout behind the frontend, as compose/agent.yml configures it.
  static std::string full_section(const std::string& url_path = "/jitsi/") {
    return "      url: " + web(url_path) +
           "\n"
           "      xmpp_domain: meet.jitsi\n"
           "      bosh_path: /http-bind\n"
           "      websocket_path: /xmpp-websocket\n"
           "      jicofo_health_url: " +
           web("/jicofo/about/health") + "\n      jvb_health_url: " + web("/jvb/about/health") +
           "\n      stun: \"" + stun() + "\"\n";
  }

  // One jitsi probe "p" with the given section (block style, indented by 6), run once.
  static Engine::AdHocResult run(const std::string& section, const std::string& timeout = "2s",
                                 bool debug = false) {
    ProbeRunner r("global: {interval: 10s, timeout: " + timeout +
                  "}\nprobes:\n  - name: p\n    type: jitsi\n    jitsi:\n" + section);
    return r.run("p", debug);
  }

  static double up(const Engine::AdHocResult& r, const std::string& component) {
    return ProbeRunner::sample(r.outcome, "probe_jitsi_component_up", "component=" + component);
  }
  static double seconds(const Engine::AdHocResult& r, const std::string& component) {
    return ProbeRunner::sample(r.outcome, "probe_jitsi_component_duration_seconds",
                               "component=" + component);
  }
  static bool has(const std::string& text, const std::string& part) {
    return text.find(part) != std::string::npos;
  }

  static Fixture* prosody_;
  static Fixture* coturn_;
  static Fixture* nginx_;
  static TempDir* conf_dir_;
};
Fixture* JitsiTest::prosody_ = nullptr;
Fixture* JitsiTest::coturn_ = nullptr;
Fixture* JitsiTest::nginx_ = nullptr;
TempDir* JitsiTest::conf_dir_ = nullptr;

}  // namespace

// ---- success -------------------------------------------------------------------------------

TEST_F(JitsiTest, EveryComponentUpBehindTheFrontend) {
  auto r = run(full_section(), "3s", true);
  ASSERT_TRUE(r.outcome.ok) << r.outcome.message << "\n" << r.trace;
  EXPECT_EQ(r.outcome.message, "all 7 components up");
  for (const char* c : kAllComponents) {
    EXPECT_EQ(up(r, c), 1) << c;
    EXPECT_GE(seconds(r, c), 0) << c;
    EXPECT_LT(seconds(r, c), 3) << c;
  }
  // The trace tells the steps; the BOSH session id is a credential and never shown.
  EXPECT_TRUE(has(r.trace, "config: up (XMPP domain meet.jitsi)")) << r.trace;
  EXPECT_TRUE(has(r.trace, "bosh: session created (sid not shown), SASL mechanisms: ANONYMOUS"))
      << r.trace;
  EXPECT_TRUE(has(r.trace, "bosh: session terminated (HTTP 200)")) << r.trace;
  EXPECT_TRUE(has(r.trace, "websocket: upgraded to WebSocket with subprotocol xmpp")) << r.trace;
  EXPECT_TRUE(has(r.trace, "websocket: <open from='meet.jitsi'")) << r.trace;
  EXPECT_TRUE(has(r.trace, "websocket: stream closed")) << r.trace;
  EXPECT_TRUE(has(r.trace, "stun: up (mapped address 127.0.0.1:")) << r.trace;
  EXPECT_FALSE(has(r.trace, "sid=")) << r.trace;
}

TEST_F(JitsiTest, DirectToProsodyWithTheDomainFromConfigJs) {
  // No xmpp_domain: BOSH and WebSocket wait for config.js and use the domain it names.
  auto r = run("      url: " + web("/jitsi/") + "\n      bosh_path: " + prosody_->get("BOSH_URL") +
                   "\n      websocket_path: " + prosody_->get("WEBSOCKET_URL") + "\n",
               "3s", true);
  ASSERT_TRUE(r.outcome.ok) << r.outcome.message << "\n" << r.trace;
  EXPECT_EQ(r.outcome.message, "all 4 components up");
  EXPECT_EQ(up(r, "bosh"), 1);
  EXPECT_EQ(up(r, "websocket"), 1);
  EXPECT_TRUE(std::isnan(up(r, "stun")));  // not configured, not exported
  EXPECT_TRUE(has(r.trace, "bosh: session request to meet.jitsi")) << r.trace;
}

TEST_F(JitsiTest, OverTlsTheWebSocketIsWss) {
  // The frontend on HTTPS: config.js, BOSH and the WebSocket (wss://) go through it, verified
  // against the fixture's CA; the same frontend with a certificate for another name fails with tls.
  const auto tls = [](const std::string& port_key) {
    return "      url: https://localhost:" + nginx_->get(port_key) +
           "/jitsi/\n      xmpp_domain: meet.jitsi\n      websocket_path: /xmpp-websocket\n"
           "      tls: {ca_file: " +
           nginx_->get("CA_FILE") + "}\n";
  };
  auto r = run(tls("TLS_PORT"), "3s", true);
  ASSERT_TRUE(r.outcome.ok) << r.outcome.message << "\n" << r.trace;
  EXPECT_EQ(up(r, "websocket"), 1);
  EXPECT_TRUE(has(r.trace, "websocket: TLS established")) << r.trace;

  auto wrong = run(tls("WRONGHOST_PORT"), "3s");
  ASSERT_FALSE(wrong.outcome.ok);
  EXPECT_EQ(wrong.outcome.reason, Reason::tls) << wrong.outcome.message;
  EXPECT_TRUE(wrong.outcome.message.starts_with("down: web, config, bosh, websocket; web: "))
      << wrong.outcome.message;
  EXPECT_TRUE(has(wrong.outcome.message, "websocket: tls: certificate verification failed"))
      << wrong.outcome.message;
}

// ---- XMPP failures -------------------------------------------------------------------------

TEST_F(JitsiTest, DomainProsodyDoesNotServeFailsBoshAndWebsocket) {
  // config.js names wrong.example; Prosody serves only meet.jitsi.
  auto r = run("      url: " + web("/wrong-domain/") + "\n      websocket_path: /xmpp-websocket\n",
               "3s");
  ASSERT_FALSE(r.outcome.ok);
  EXPECT_EQ(r.outcome.reason, Reason::protocol);
  EXPECT_EQ(up(r, "web"), 1);
  EXPECT_EQ(up(r, "config"), 1);
  EXPECT_EQ(up(r, "bosh"), 0);
  EXPECT_EQ(up(r, "websocket"), 0);
  // Prosody 0.12 answers a BOSH session to an unserved domain with improper-addressing (XEP-0124
  // would say host-unknown) and an XMPP-over-WebSocket stream with the host-unknown stream error.
  EXPECT_TRUE(has(r.outcome.message,
                  "down: bosh, websocket; bosh: the connection manager terminated the session "
                  "(improper-addressing: the server does not serve XMPP domain \"wrong.example\")"))
      << r.outcome.message;
  EXPECT_TRUE(
      has(r.outcome.message,
          "websocket: open: stream error host-unknown: This server does not serve wrong.example"))
      << r.outcome.message;
}

TEST_F(JitsiTest, ConfigJsNamingAnotherDomainIsAnAssertion) {
  // xmpp_domain is what the deployment must use: config.js disagrees (assertion); BOSH and the
  // WebSocket use xmpp_domain and are up. The reason comes from the first component down.
  auto r = run("      url: " + web("/wrong-domain/") +
               "\n      xmpp_domain: meet.jitsi\n      websocket_path: /xmpp-websocket\n");
  ASSERT_FALSE(r.outcome.ok);
  EXPECT_EQ(r.outcome.reason, Reason::assertion);
  EXPECT_EQ(r.outcome.message,
            "down: config; config: config.js names XMPP domain \"wrong.example\", expected "
            "\"meet.jitsi\"");
  EXPECT_EQ(up(r, "config"), 0);
  EXPECT_EQ(up(r, "bosh"), 1);
  EXPECT_EQ(up(r, "websocket"), 1);
}

TEST_F(JitsiTest, ProsodyStoppedFailsWithConnect) {
  const std::string direct =
      "      url: " + web("/jitsi/") +
      "\n      xmpp_domain: meet.jitsi\n      bosh_path: " + prosody_->get("BOSH_URL") +
      "\n      websocket_path: " + prosody_->get("WEBSOCKET_URL") + "\n";
  const std::string proxied =
      "      url: " + web("/jitsi/") +
      "\n      xmpp_domain: meet.jitsi\n      websocket_path: /xmpp-websocket\n";
  prosody_->stop();
  auto r = run(direct);
  auto behind = run(proxied);
  prosody_->start();

  ASSERT_FALSE(r.outcome.ok);
  EXPECT_EQ(r.outcome.reason, Reason::connect) << r.outcome.message;
  EXPECT_EQ(up(r, "web"), 1);
  EXPECT_EQ(up(r, "bosh"), 0);
  EXPECT_EQ(up(r, "websocket"), 0);
  EXPECT_TRUE(has(r.outcome.message, "down: bosh, websocket; bosh: ")) << r.outcome.message;
  EXPECT_TRUE(has(r.outcome.message,
                  "websocket: connect: cannot connect to 127.0.0.1:" + prosody_->get("PORT")))
      << r.outcome.message;

  // Behind the frontend the proxy answers 502: an HTTP error where BOSH was expected is protocol.
  ASSERT_FALSE(behind.outcome.ok);
  EXPECT_EQ(behind.outcome.reason, Reason::protocol) << behind.outcome.message;
  EXPECT_TRUE(has(behind.outcome.message, "bosh: HTTP status 502 from " + web("/http-bind")))
      << behind.outcome.message;
  EXPECT_TRUE(
      has(behind.outcome.message,
          "websocket: upgrade: the server refused the WebSocket upgrade of ws://127.0.0.1:" +
              nginx_->get("PORT") + "/xmpp-websocket with HTTP status 502"))
      << behind.outcome.message;

  // And once Prosody is back, so is the check.
  auto again = run(direct);
  EXPECT_TRUE(again.outcome.ok) << again.outcome.message;
}

TEST_F(JitsiTest, WebsocketAgainstHungAndGarbageServers) {
  HungServer hang(HungMode::accept_and_hang);
  HungServer junk(HungMode::garbage, "SSH-2.0-OpenSSH_9.2\r\n");
  const auto base =
      "      url: " + web("/jitsi/") + "\n      xmpp_domain: meet.jitsi\n      bosh_path: \"\"\n";

  const auto start = std::chrono::steady_clock::now();
  auto hung =
      run(base + "      websocket_path: ws://" + hang.address() + "/xmpp-websocket\n", "1s");
  const double took =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  ASSERT_FALSE(hung.outcome.ok);
  EXPECT_EQ(hung.outcome.reason, Reason::timeout) << hung.outcome.message;
  EXPECT_EQ(hung.outcome.message,
            "down: websocket; websocket: upgrade: WebSocket upgrade of ws://" + hang.address() +
                "/xmpp-websocket: no answer before the deadline");
  EXPECT_LT(took, 1.5);  // the deadline holds: the worker is not kept past it

  auto garbage =
      run(base + "      websocket_path: ws://" + junk.address() + "/xmpp-websocket\n", "1s");
  ASSERT_FALSE(garbage.outcome.ok);
  EXPECT_EQ(garbage.outcome.reason, Reason::protocol) << garbage.outcome.message;
  EXPECT_TRUE(has(garbage.outcome.message,
                  "websocket: upgrade: WebSocket upgrade of ws://" + junk.address()))
      << garbage.outcome.message;
}

TEST_F(JitsiTest, WebsocketToAPlainHttpPageIsProtocol) {
  // nginx answers the upgrade request to a normal page with 200, not 101.
  auto r =
      run("      url: " + web("/jitsi/") +
          "\n      xmpp_domain: meet.jitsi\n      bosh_path: \"\"\n      websocket_path: /ok\n");
  ASSERT_FALSE(r.outcome.ok);
  EXPECT_EQ(r.outcome.reason, Reason::protocol);
  EXPECT_TRUE(has(r.outcome.message,
                  "websocket: upgrade: the server refused the WebSocket upgrade of ws://"))
      << r.outcome.message;
  EXPECT_TRUE(has(r.outcome.message, "/ok with HTTP status 200")) << r.outcome.message;
}

TEST_F(JitsiTest, BoshPathThatIsNotBoshIsProtocol) {
  // nginx answers a POST to /json with its JSON (not XML), and to a static file with 405.
  auto not_xml = run("      url: " + web("/jitsi/") +
                     "\n      xmpp_domain: meet.jitsi\n      bosh_path: /json\n");
  ASSERT_FALSE(not_xml.outcome.ok);
  EXPECT_EQ(not_xml.outcome.reason, Reason::protocol);
  EXPECT_EQ(not_xml.outcome.message,
            "down: bosh; bosh: not a BOSH body: malformed XML at line 1, column 0: not well-formed "
            "(invalid token)");
  auto bad_status = run("      url: " + web("/jitsi/") +
                        "\n      xmpp_domain: meet.jitsi\n      bosh_path: /jitsi/\n");
  ASSERT_FALSE(bad_status.outcome.ok);
  EXPECT_EQ(bad_status.outcome.reason, Reason::protocol);
  EXPECT_EQ(bad_status.outcome.message, "down: bosh; bosh: HTTP status 405 from " + web("/jitsi/"));
}

// ---- STUN (coturn) -------------------------------------------------------------------------

TEST_F(JitsiTest, StunAgainstCoturn) {
  auto r = run("      url: " + web("/jitsi/") +
                   "\n      xmpp_domain: meet.jitsi\n      bosh_path: \"\"\n"
                   "      stun: \"" +
                   stun() + "\"\n",
               "2s", true);
  ASSERT_TRUE(r.outcome.ok) << r.outcome.message << "\n" << r.trace;
  EXPECT_EQ(up(r, "stun"), 1);
  EXPECT_LT(seconds(r, "stun"), 1);
  EXPECT_TRUE(has(r.trace, "stun: up (mapped address 127.0.0.1:")) << r.trace;
  EXPECT_TRUE(has(r.trace, "from " + stun() + " after 1 request(s))")) << r.trace;
}

TEST_F(JitsiTest, StunSilentServerTimesOut) {
  UdpGarbageServer silent("");  // swallows every request
  const auto start = std::chrono::steady_clock::now();
  auto r = run("      url: " + web("/jitsi/") +
                   "\n      xmpp_domain: meet.jitsi\n      bosh_path: \"\"\n"
                   "      stun: \"" +
                   silent.address() + "\"\n",
               "1s");
  const double took =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  ASSERT_FALSE(r.outcome.ok);
  EXPECT_EQ(r.outcome.reason, Reason::timeout);
  EXPECT_EQ(up(r, "stun"), 0);
  EXPECT_TRUE(has(r.outcome.message, "down: stun; stun: no STUN answer from " + silent.address()))
      << r.outcome.message;
  // Retransmissions (RFC 5389: 100, 200, 400 ms, ...) within the 1 s deadline.
  EXPECT_GE(silent.datagrams(), 3);
  EXPECT_GE(took, 0.9);
  EXPECT_LT(took, 1.5);
}

TEST_F(JitsiTest, StunNothingListeningIsRefused) {
  // On loopback a closed UDP port answers with ICMP port unreachable, which the connected socket
  // reports at once: connect, without waiting for the deadline. (Across a network that drops ICMP
  // the same outage is a timeout; see StunSilentServerTimesOut.)
  const int port = free_port();
  const auto start = std::chrono::steady_clock::now();
  auto r = run("      url: " + web("/jitsi/") +
                   "\n      xmpp_domain: meet.jitsi\n      bosh_path: \"\"\n"
                   "      stun: \"127.0.0.1:" +
                   std::to_string(port) + "\"\n",
               "1s");
  const double took =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  ASSERT_FALSE(r.outcome.ok);
  EXPECT_EQ(r.outcome.reason, Reason::connect) << r.outcome.message;
  EXPECT_TRUE(has(r.outcome.message, "connection refused (ICMP port unreachable)"))
      << r.outcome.message;
  EXPECT_LT(took, 0.9);
}

TEST_F(JitsiTest, StunGarbageIsProtocol) {
  UdpGarbageServer junk("HTTP/1.1 400 Bad Request\r\n\r\n");
  auto r = run("      url: " + web("/jitsi/") +
                   "\n      xmpp_domain: meet.jitsi\n      bosh_path: \"\"\n"
                   "      stun: \"" +
                   junk.address() + "\"\n",
               "1s");
  ASSERT_FALSE(r.outcome.ok);
  EXPECT_EQ(r.outcome.reason, Reason::protocol);
  EXPECT_TRUE(
      has(r.outcome.message, "down: stun; stun: " + junk.address() + " answered with not_stun"))
      << r.outcome.message;
  EXPECT_EQ(up(r, "stun"), 0);
}

// ---- web, config.js, jicofo, JVB -----------------------------------------------------------

TEST_F(JitsiTest, NotAJitsiFrontend) {
  auto r = run("      url: " + web("/not-jitsi/") + "\n      bosh_path: \"\"\n");
  ASSERT_FALSE(r.outcome.ok);
  EXPECT_EQ(r.outcome.reason, Reason::protocol);
  EXPECT_EQ(r.outcome.message,
            "down: web, config; web: not an HTML page (Content-Type: application/json); config: "
            "config.js does not set hosts.domain (not a Jitsi Meet config.js?)");
}

TEST_F(JitsiTest, MissingConfigJsLeavesXmppUnchecked) {
  // Without xmpp_domain the XMPP checks need config.js: when it is missing they are reported as
  // not checked (and not exported), and the run fails with config's reason.
  auto r = run("      url: " + web("/status/") + "\n      websocket_path: /xmpp-websocket\n");
  ASSERT_FALSE(r.outcome.ok);
  EXPECT_EQ(r.outcome.reason, Reason::http_status);
  EXPECT_TRUE(
      has(r.outcome.message, "down: web, config; web: HTTP status 404 from " + web("/status/")))
      << r.outcome.message;
  EXPECT_TRUE(has(r.outcome.message,
                  "bosh (not checked: config.js failed and xmpp_domain is not set); websocket (not "
                  "checked: config.js failed and xmpp_domain is not set)"))
      << r.outcome.message;
  EXPECT_TRUE(std::isnan(up(r, "bosh")));
  EXPECT_TRUE(std::isnan(up(r, "websocket")));
}

TEST_F(JitsiTest, JicofoAndJvbHealth) {
  auto r = run("      url: " + web("/jitsi/") +
               "\n      xmpp_domain: meet.jitsi\n      bosh_path: \"\"\n"
               "      jicofo_health_url: " +
               web("/jicofo-starting/about/health") +
               "\n      jvb_health_url: " + web("/jvb-unhealthy/about/health") + "\n");
  ASSERT_FALSE(r.outcome.ok);
  EXPECT_EQ(r.outcome.reason, Reason::http_status);
  EXPECT_EQ(r.outcome.message, "down: jicofo, jvb; jicofo: HTTP status 503 from " +
                                   web("/jicofo-starting/about/health") +
                                   "; jvb: HTTP status 500 from " +
                                   web("/jvb-unhealthy/about/health"));
  EXPECT_EQ(up(r, "jicofo"), 0);
  EXPECT_EQ(up(r, "jvb"), 0);
  EXPECT_EQ(up(r, "web"), 1);
}

// ---- the run as a whole --------------------------------------------------------------------

TEST_F(JitsiTest, CombinedFailureNamesEveryDownComponentInOrder) {
  UdpGarbageServer silent("");
  HungServer hang(HungMode::accept_and_hang);
  const auto start = std::chrono::steady_clock::now();
  auto r =
      run("      url: " + web("/jitsi/") +
              "\n      xmpp_domain: meet.jitsi\n      websocket_path: /xmpp-websocket\n"
              "      jicofo_health_url: http://" +
              hang.address() +
              "/about/health\n"
              "      jvb_health_url: " +
              web("/jvb-unhealthy/about/health") + "\n      stun: \"" + silent.address() + "\"\n",
          "1s");
  const double took =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  ASSERT_FALSE(r.outcome.ok);
  // jicofo (timeout) comes before jvb (http_status) and stun (timeout) in the fixed order.
  EXPECT_EQ(r.outcome.reason, Reason::timeout);
  EXPECT_TRUE(r.outcome.message.starts_with("down: jicofo, jvb, stun; jicofo: "))
      << r.outcome.message;
  EXPECT_TRUE(has(r.outcome.message, "; jvb: HTTP status 500 from ")) << r.outcome.message;
  EXPECT_TRUE(has(r.outcome.message, "; stun: no STUN answer from ")) << r.outcome.message;
  for (const char* c : {"web", "config", "bosh", "websocket"}) EXPECT_EQ(up(r, c), 1) << c;
  for (const char* c : {"jicofo", "jvb", "stun"}) EXPECT_EQ(up(r, c), 0) << c;
  // The components run concurrently: two that wait for the deadline still end the run near it.
  EXPECT_LT(took, 1.5);
}

TEST_F(JitsiTest, UnreachableFrontend) {
  const int port = free_port();
  auto r = run("      url: http://127.0.0.1:" + std::to_string(port) +
               "/\n      xmpp_domain: meet.jitsi\n"
               "      bosh_path: \"\"\n");
  ASSERT_FALSE(r.outcome.ok);
  EXPECT_EQ(r.outcome.reason, Reason::connect);
  EXPECT_TRUE(r.outcome.message.starts_with("down: web, config; web: ")) << r.outcome.message;
  EXPECT_EQ(up(r, "web"), 0);
  EXPECT_EQ(up(r, "config"), 0);
}
