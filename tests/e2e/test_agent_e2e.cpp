// The built pes-agent binary end to end: scrape /metrics over HTTP, check values, validate the
// exposition with promtool, reload a good then a bad configuration (POST and SIGHUP), and the
// CLI's check-config / probe / --version.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <cmath>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/agent_process.h"
#include "tests/support/fixture.h"

using namespace pes::test;
using namespace std::chrono_literals;

namespace {

class AgentE2E : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { nginx_ = new Fixture("nginx"); }
  static void TearDownTestSuite() {
    delete nginx_;
    nginx_ = nullptr;
  }
  static std::string url(const std::string& path) {
    return "http://127.0.0.1:" + nginx_->get("PORT") + path;
  }
  static std::string config(const std::string& extra_probes = "") {
    return "global:\n  interval: 500ms\n  timeout: 400ms\n  failure_threshold: 1\n  labels: "
           "{platform: pes}\n"
           "probes:\n"
           "  - name: web\n    service: nextcloud\n    type: http\n"
           "    http: {url: \"" +
           url("/ok") +
           "\", expect: {body_regex: [\"ok\"]}}\n"
           "  - name: broken\n    type: http\n    depends_on: [web]\n"
           "    http: {url: \"" +
           url("/status/503") + "\"}\n" + extra_probes;
  }
  TempDir dir_;
  static Fixture* nginx_;
};
Fixture* AgentE2E::nginx_ = nullptr;

// utime + stime of PID in seconds, from /proc/PID/stat (fields 14 and 15; the fields after the
// command name, which ends at the last ')').
double kernel_cpu_seconds(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::istringstream rest(stat.substr(stat.rfind(')') + 2));
  std::vector<std::string> f;  // f[0] is field 3 (state)
  for (std::string tok; rest >> tok;) f.push_back(tok);
  if (f.size() < 13) return std::nan("");
  return (std::stod(f[11]) + std::stod(f[12])) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

}  // namespace

TEST_F(AgentE2E, ScrapesProbeAndAgentMetrics) {
  write_file(dir_.file("agent.yml"), config());
  AgentProcess agent(dir_.file("agent.yml"));
  const std::string web = "{probe=\"web\",service=\"nextcloud\",type=\"http\",platform=\"pes\"";
  const std::string broken = "{probe=\"broken\",service=\"broken\",type=\"http\",platform=\"pes\"";
  ASSERT_TRUE(agent.wait_for_metric("probe_success" + web + "}", 1)) << agent.metrics();
  ASSERT_TRUE(agent.wait_for_metric("probe_up" + broken + "}", 0)) << agent.metrics();
  std::string m = agent.metrics();
  EXPECT_EQ(metric_value(m, "probe_up" + web + "}"), 1);
  EXPECT_EQ(metric_value(m, "probe_http_status_code" + web + "}"), 200);
  EXPECT_EQ(metric_value(m, "probe_http_status_code" + broken + "}"), 503);
  EXPECT_GE(metric_value(m, "probe_failures_total" + broken + ",reason=\"http_status\"}"), 1);
  EXPECT_GE(metric_value(m, "probe_runs_total" + web + ",result=\"success\"}"), 1);
  EXPECT_EQ(metric_value(m, "probe_dependency_info" + broken + ",depends_on=\"web\"}"), 1);
  EXPECT_EQ(metric_value(m, "probe_info" + web + ",target=\"" + url("/ok") + "\"}"), 1);
  EXPECT_EQ(metric_value(m, "probe_last_failure_info" + broken + ",reason=\"http_status\"}"), 1);
  EXPECT_GT(metric_value(m, "probe_last_run_timestamp_seconds" + web + "}"), 1.7e9);
  EXPECT_GE(metric_value(m, "probe_run_duration_seconds_count" + web + "}"), 1);
  EXPECT_EQ(metric_value(m, "pes_agent_config_last_reload_successful"), 1);
  EXPECT_EQ(metric_value(m, "pes_agent_build_info{version="), 1);
  EXPECT_EQ(metric_value(m, "pes_agent_probes_configured"), 2);
  EXPECT_GE(metric_value(m, "pes_agent_schedule_lag_seconds_count"), 2);
  EXPECT_GT(metric_value(m, "process_resident_memory_bytes"), 1e6);
  EXPECT_GT(metric_value(m, "process_open_fds"), 2);
  // The agent's CPU time is the kernel's account of it (utime + stime), read between two readings
  // of /proc taken around a scrape. On a fast idle machine it may still be 0 (less than a tick).
  const double cpu_before = kernel_cpu_seconds(agent.pid());
  const double cpu = metric_value(agent.metrics(), "process_cpu_seconds_total");
  const double cpu_after = kernel_cpu_seconds(agent.pid());
  ASSERT_FALSE(std::isnan(cpu)) << "no process_cpu_seconds_total";
  EXPECT_GE(cpu, 0);
  EXPECT_GE(cpu, cpu_before);
  EXPECT_LE(cpu, cpu_after);

  // promtool validates the exposition format.
  write_file(dir_.file("metrics.txt"), m);
  auto check =
      run_command({"/bin/sh", "-c", "promtool check metrics < " + dir_.file("metrics.txt")});
  EXPECT_EQ(check.exit_code, 0) << check.out << check.err;
}

TEST_F(AgentE2E, EndpointsAnswer) {
  write_file(dir_.file("agent.yml"), config());
  AgentProcess agent(dir_.file("agent.yml"));
  EXPECT_EQ(agent.get("/-/healthy").status, 200);
  EXPECT_EQ(agent.get("/-/ready").status, 200);
  EXPECT_EQ(agent.get("/-/reload").status, 405);
  EXPECT_EQ(agent.get("/nope").status, 404);
  auto probe = agent.get("/probe?name=web");
  EXPECT_EQ(probe.status, 200);
  EXPECT_EQ(metric_value(probe.body, "probe_success{probe=\"web\""), 1) << probe.body;
  auto debug = agent.get("/probe?name=broken&debug=true");
  EXPECT_NE(debug.body.find("Logs for the probe:"), std::string::npos);
  EXPECT_NE(debug.body.find("HTTP status 503"), std::string::npos) << debug.body;
  EXPECT_EQ(agent.get("/probe?name=missing").status, 404);
  EXPECT_EQ(agent.get("/probe").status, 400);
  ASSERT_TRUE(agent.wait_for_metric("probe_up{probe=\"broken\"", 0));
  auto status = agent.get("/api/v1/status");
  EXPECT_EQ(status.status, 200);
  EXPECT_NE(status.body.find("\"name\": \"broken\""), std::string::npos) << status.body;
  EXPECT_NE(status.body.find("\"state\": \"down\""), std::string::npos);
  auto page = agent.get("/");
  EXPECT_EQ(page.status, 200);
  EXPECT_NE(page.body.find("probes DOWN"), std::string::npos) << page.body;
}

TEST_F(AgentE2E, ReloadGoodThenBadKeepsTheOldConfiguration) {
  write_file(dir_.file("agent.yml"), config());
  AgentProcess agent(dir_.file("agent.yml"));
  ASSERT_TRUE(agent.wait_for_metric("probe_success{probe=\"web\"", 1));
  double runs_before = agent.metric(
      "probe_runs_total{probe=\"web\",service=\"nextcloud\",type=\"http\",platform=\"pes\",result="
      "\"success\"}");

  // Good reload by POST: a probe added, "broken" removed, "web" unchanged.
  write_file(dir_.file("agent.yml"),
             "global:\n  interval: 500ms\n  timeout: 400ms\n  failure_threshold: 1\n  labels: "
             "{platform: pes}\n"
             "probes:\n"
             "  - name: web\n    service: nextcloud\n    type: http\n"
             "    http: {url: \"" +
                 url("/ok") +
                 "\", expect: {body_regex: [\"ok\"]}}\n"
                 "  - name: json\n    type: http\n    http: {url: \"" +
                 url("/json") + "\"}\n");
  auto r = http_post(agent.url("/-/reload"));
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(agent.metric("pes_agent_config_last_reload_successful"), 1);
  ASSERT_TRUE(agent.wait_for_metric("probe_success{probe=\"json\"", 1)) << agent.metrics();
  std::string m = agent.metrics();
  EXPECT_EQ(m.find("probe=\"broken\""), std::string::npos) << "removed probe left series behind";
  double runs_after = metric_value(m,
                                   "probe_runs_total{probe=\"web\",service=\"nextcloud\",type="
                                   "\"http\",platform=\"pes\",result=\"success\"}");
  EXPECT_GE(runs_after, runs_before) << "unchanged probe lost its counters";

  // Bad reload by SIGHUP: the old configuration keeps running, the failure is exported.
  write_file(dir_.file("agent.yml"), "probes:\n  - name: x\n    type: http\n    http: {url: 12}\n");
  agent.signal(SIGHUP);
  ASSERT_TRUE(agent.wait_for_metric("pes_agent_config_last_reload_successful", 0)) << agent.log();
  EXPECT_GE(agent.metric("pes_agent_config_reloads_total{result=\"failure\"}"), 1);
  double json_runs = agent.metric("probe_runs_total{probe=\"json\"");
  std::this_thread::sleep_for(1200ms);
  EXPECT_GT(agent.metric("probe_runs_total{probe=\"json\""), json_runs)
      << "old probes stopped after a bad reload";
  // Bad reload by POST answers 500 with the error.
  auto bad = http_post(agent.url("/-/reload"));
  EXPECT_EQ(bad.status, 500);
  EXPECT_NE(bad.body.find("agent.yml:4:"), std::string::npos) << bad.body;
  EXPECT_NE(agent.log().find("keeping the previous configuration"), std::string::npos);
  EXPECT_EQ(agent.stop(), 0) << agent.log();
}

TEST_F(AgentE2E, CheckConfigAndProbeCommands) {
  write_file(dir_.file("good.yml"), config());
  auto ok = run_command({PES_AGENT_BINARY, "check-config", dir_.file("good.yml")});
  EXPECT_EQ(ok.exit_code, 0) << ok.err;
  EXPECT_NE(ok.out.find("OK, 2 probes"), std::string::npos);
  write_file(dir_.file("bad.yml"),
             "global:\n  interval: 5x\nprobes:\n  - name: A\n    type: tcp\n    tcp: {}\n");
  auto bad = run_command({PES_AGENT_BINARY, "check-config", dir_.file("bad.yml")});
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_NE(bad.err.find("bad.yml:2:13: global.interval"), std::string::npos) << bad.err;
  EXPECT_NE(bad.err.find("bad.yml:4:11: probes[0].name"), std::string::npos) << bad.err;
  EXPECT_NE(bad.err.find("probes[0].tcp.address: required"), std::string::npos) << bad.err;

  auto up =
      run_command({PES_AGENT_BINARY, "probe", "web", "--config.file=" + dir_.file("good.yml")});
  EXPECT_EQ(up.exit_code, 0) << up.out << up.err;
  EXPECT_EQ(up.out.rfind("OK - web", 0), 0u) << up.out;
  auto down = run_command({PES_AGENT_BINARY, "probe", "broken",
                           "--config.file=" + dir_.file("good.yml"), "--format=json"});
  EXPECT_EQ(down.exit_code, 2) << down.out << down.err;
  EXPECT_NE(down.out.find("\"reason\": \"http_status\""), std::string::npos) << down.out;
  auto prom = run_command({PES_AGENT_BINARY, "probe", "web",
                           "--config.file=" + dir_.file("good.yml"), "--format=prometheus"});
  EXPECT_NE(prom.out.find("probe_success{probe=\"web\""), std::string::npos) << prom.out;
  auto unknown =
      run_command({PES_AGENT_BINARY, "probe", "nope", "--config.file=" + dir_.file("good.yml")});
  EXPECT_EQ(unknown.exit_code, 3);
  auto badcfg =
      run_command({PES_AGENT_BINARY, "probe", "web", "--config.file=" + dir_.file("bad.yml")});
  EXPECT_EQ(badcfg.exit_code, 3);
  auto version = run_command({PES_AGENT_BINARY, "--version"});
  EXPECT_EQ(version.exit_code, 0);
  EXPECT_NE(version.out.find("pes-agent "), std::string::npos);
}

TEST_F(AgentE2E, JsonLogsAndBadStartup) {
  write_file(dir_.file("agent.yml"), config());
  AgentProcess agent(dir_.file("agent.yml"), {"--log.format=json", "--log.level=debug"});
  ASSERT_TRUE(agent.wait_for_metric("probe_up{probe=\"broken\"", 0));
  std::string log = agent.log();
  EXPECT_NE(log.find("{\"ts\":\""), std::string::npos) << log;
  EXPECT_NE(log.find("\"level\":\"debug\""), std::string::npos) << log;
  agent.stop();
  write_file(dir_.file("broken.yml"), "probes: 5\n");
  AgentProcess failing(dir_.file("broken.yml"), {}, false);
  for (int i = 0; i < 100 && failing.running(); ++i) std::this_thread::sleep_for(50ms);
  EXPECT_FALSE(failing.running());
  EXPECT_EQ(failing.stop(), 1);
  EXPECT_NE(failing.log().find("broken.yml:1:9: probes: must be a list of probes"),
            std::string::npos)
      << failing.log();
}
