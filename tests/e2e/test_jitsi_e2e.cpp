// The built pes-agent with jitsi probes against real Prosody, coturn and nginx on loopback:
// /metrics scraped over HTTP carries probe_jitsi_component_up/duration_seconds per component, the
// run's success and its failure reason; /probe and the `probe` command agree.
#include <gtest/gtest.h>

#include <chrono>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "tests/support/agent_process.h"
#include "tests/support/fixture.h"

using namespace pes::test;
using namespace std::chrono_literals;

namespace {

// The value of the first series of `metric` whose line contains every label in `labels`
// (`name="value"` strings); nullopt if there is none.
std::optional<double> value_of(const std::string& exposition, const std::string& metric,
                               const std::vector<std::string>& labels) {
  std::istringstream in(exposition);
  std::string line;
  while (std::getline(in, line)) {
    if (!line.starts_with(metric + "{")) continue;
    bool all = true;
    for (const auto& l : labels)
      if (line.find(l) == std::string::npos) all = false;
    if (!all) continue;
    const size_t space = line.rfind(' ');
    if (space == std::string::npos) continue;
    return std::stod(line.substr(space + 1));
  }
  return std::nullopt;
}

class JitsiE2E : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    prosody_ = new Fixture("prosody");
    coturn_ = new Fixture("coturn");
    dir_ = new TempDir("pes-jitsi-e2e-");
    const std::string jitsi = std::string(PES_SOURCE_DIR) + "/tests/fixtures/jitsi";
    std::string conf = read_file(jitsi + "/nginx.conf");
    for (auto [from, to] : {std::pair<std::string, std::string>{"@JITSI@", jitsi},
                            {"@PROSODY_PORT@", prosody_->get("PORT")}})
      for (size_t at = 0; (at = conf.find(from, at)) != std::string::npos; at += to.size())
        conf.replace(at, from.size(), to);
    write_file(dir_->file("jitsi.conf"), conf);
    nginx_ = new Fixture("nginx", {{"CONF", dir_->file("jitsi.conf")}});
  }
  static void TearDownTestSuite() {
    delete nginx_;
    delete coturn_;
    delete prosody_;
    delete dir_;
    nginx_ = coturn_ = prosody_ = nullptr;
    dir_ = nullptr;
  }

  static std::string web(const std::string& path) {
    return "http://127.0.0.1:" + nginx_->get("PORT") + path;
  }

  // Two probes: the docker-jitsi-meet layout, healthy; and one whose jicofo is starting (503) and
  // whose STUN server is the coturn one.
  static std::string config() {
    const std::string stun = "\"127.0.0.1:" + coturn_->get("PORT") + "\"";
    return "global: {interval: 2s, timeout: 1500ms, failure_threshold: 1}\n"
           "probes:\n"
           "  - name: meet\n"
           "    service: jitsi\n"
           "    type: jitsi\n"
           "    jitsi:\n"
           "      url: " +
           web("/jitsi/") +
           "\n"
           "      xmpp_domain: meet.jitsi\n"
           "      bosh_path: /http-bind\n"
           "      websocket_path: /xmpp-websocket\n"
           "      jicofo_health_url: " +
           web("/jicofo/about/health") +
           "\n"
           "      jvb_health_url: " +
           web("/jvb/about/health") +
           "\n"
           "      stun: " +
           stun +
           "\n"
           "  - name: meet-starting\n"
           "    service: jitsi\n"
           "    type: jitsi\n"
           "    jitsi:\n"
           "      url: " +
           web("/jitsi/") +
           "\n"
           "      jicofo_health_url: " +
           web("/jicofo-starting/about/health") +
           "\n"
           "      stun: " +
           stun + "\n";
  }

  static Fixture* prosody_;
  static Fixture* coturn_;
  static Fixture* nginx_;
  static TempDir* dir_;
};
Fixture* JitsiE2E::prosody_ = nullptr;
Fixture* JitsiE2E::coturn_ = nullptr;
Fixture* JitsiE2E::nginx_ = nullptr;
TempDir* JitsiE2E::dir_ = nullptr;

}  // namespace

TEST_F(JitsiE2E, MetricsScrapedOverHttp) {
  write_file(dir_->file("agent.yml"), config());
  AgentProcess agent(dir_->file("agent.yml"));

  // Scrape until both probes have run (bounded wait).
  std::string metrics;
  const auto give_up = std::chrono::steady_clock::now() + 20s;
  while (std::chrono::steady_clock::now() < give_up) {
    metrics = agent.metrics();
    if (value_of(metrics, "probe_jitsi_component_up", {"probe=\"meet\"", "component=\"stun\""}) &&
        value_of(metrics, "probe_jitsi_component_up",
                 {"probe=\"meet-starting\"", "component=\"jicofo\""}))
      break;
    std::this_thread::sleep_for(200ms);
  }

  for (const char* c : {"web", "config", "bosh", "websocket", "jicofo", "jvb", "stun"}) {
    const std::string component = std::string("component=\"") + c + "\"";
    EXPECT_EQ(value_of(metrics, "probe_jitsi_component_up",
                       {"probe=\"meet\"", component, "type=\"jitsi\""}),
              1.0)
        << c << "\n"
        << metrics;
    const auto seconds =
        value_of(metrics, "probe_jitsi_component_duration_seconds", {"probe=\"meet\"", component});
    ASSERT_TRUE(seconds.has_value()) << c;
    EXPECT_GE(*seconds, 0.0) << c;
    EXPECT_LT(*seconds, 1.5) << c;
  }
  EXPECT_EQ(value_of(metrics, "probe_success", {"probe=\"meet\""}), 1.0) << metrics;

  // The second probe: jicofo down, the rest up; websocket and jvb not configured, so not exported.
  EXPECT_EQ(value_of(metrics, "probe_jitsi_component_up",
                     {"probe=\"meet-starting\"", "component=\"jicofo\""}),
            0.0);
  EXPECT_EQ(value_of(metrics, "probe_jitsi_component_up",
                     {"probe=\"meet-starting\"", "component=\"bosh\""}),
            1.0);
  EXPECT_EQ(value_of(metrics, "probe_jitsi_component_up",
                     {"probe=\"meet-starting\"", "component=\"stun\""}),
            1.0);
  EXPECT_FALSE(value_of(metrics, "probe_jitsi_component_up",
                        {"probe=\"meet-starting\"", "component=\"jvb\""}));
  EXPECT_FALSE(value_of(metrics, "probe_jitsi_component_up",
                        {"probe=\"meet-starting\"", "component=\"websocket\""}));
  EXPECT_EQ(value_of(metrics, "probe_success", {"probe=\"meet-starting\""}), 0.0);
  const auto failures = value_of(metrics, "probe_failures_total",
                                 {"probe=\"meet-starting\"", "reason=\"http_status\""});
  ASSERT_TRUE(failures.has_value()) << metrics;
  EXPECT_GE(*failures, 1.0);

  // /probe runs it now, with the same series.
  const HttpResult adhoc = agent.get("/probe?name=meet-starting");
  EXPECT_EQ(adhoc.status, 200) << adhoc.error;
  EXPECT_EQ(value_of(adhoc.body, "probe_jitsi_component_up", {"component=\"jicofo\""}), 0.0)
      << adhoc.body;
  EXPECT_EQ(value_of(adhoc.body, "probe_jitsi_component_up", {"component=\"web\""}), 1.0)
      << adhoc.body;
  EXPECT_EQ(agent.stop(), 0) << agent.log();
}

TEST_F(JitsiE2E, ProbeCommandExitCodes) {
  write_file(dir_->file("cli.yml"), config());
  const std::string cfg = "--config.file=" + dir_->file("cli.yml");
  auto ok = run_command({PES_AGENT_BINARY, "probe", "meet", cfg, "--format=text"}, 30s);
  EXPECT_EQ(ok.exit_code, 0) << ok.out << ok.err;
  EXPECT_TRUE(ok.out.starts_with("OK - meet (jitsi) " + web("/jitsi/"))) << ok.out;

  auto bad = run_command({PES_AGENT_BINARY, "probe", "meet-starting", cfg, "--format=text"}, 30s);
  EXPECT_EQ(bad.exit_code, 2) << bad.out << bad.err;
  EXPECT_TRUE(bad.out.starts_with("CRITICAL - meet-starting (jitsi) " + web("/jitsi/") +
                                  ": http_status: down: jicofo; jicofo: HTTP status 503 from " +
                                  web("/jicofo-starting/about/health")))
      << bad.out;

  auto json = run_command({PES_AGENT_BINARY, "probe", "meet", cfg, "--format=json"}, 30s);
  EXPECT_EQ(json.exit_code, 0) << json.err;
  EXPECT_NE(json.out.find("\"name\": \"probe_jitsi_component_up\""), std::string::npos) << json.out;
  EXPECT_NE(json.out.find("\"component\": \"websocket\""), std::string::npos) << json.out;
}
