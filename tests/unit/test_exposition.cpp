// The probe families written as Prometheus text by ProbeExposition: one HELP/TYPE per family,
// families without series left out, label values escaped, the histogram complete, and the
// counters of a probe that ran (against a refused loopback port) where they belong.
#include <gtest/gtest.h>

#include <chrono>
#include <map>
#include <regex>
#include <sstream>
#include <thread>

#include "agent/config/config.h"
#include "agent/engine/engine.h"
#include "agent/engine/exposition.h"
#include "probes/registry.h"
#include "tests/support/fixture.h"

using namespace pes;
using namespace std::chrono_literals;

namespace {

std::shared_ptr<const Config> config_with(const std::string& probes) {
  return parse_config(
      "global:\n  interval: 300ms\n  timeout: 200ms\n"
      "  labels: {platform: \"pes \\\"one\\\" \\\\ two\\nlines\"}\n"
      "probes:\n" +
          probes,
      "expo.yml", probe_types());
}

// name -> number of "# TYPE" lines, and every sample line checked against the text format.
struct Parsed {
  std::map<std::string, int> types;
  std::map<std::string, int> helps;
  std::vector<std::string> samples;
  std::vector<std::string> bad;
};

Parsed parse(const std::string& text) {
  static const std::regex sample(
      R"re(^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\\n]|\\[\\"n])*",?)*\})? (NaN|[+-]Inf|-?[0-9.]+(e[+-]?[0-9]+)?)$)re");
  Parsed p;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("# TYPE ", 0) == 0) {
      ++p.types[line.substr(7, line.find(' ', 7) - 7)];
    } else if (line.rfind("# HELP ", 0) == 0) {
      ++p.helps[line.substr(7, line.find(' ', 7) - 7)];
    } else {
      p.samples.push_back(line);
      if (!std::regex_match(line, sample)) p.bad.push_back(line);
    }
  }
  return p;
}

bool has_line(const std::string& text, const std::string& line) {
  return text.find("\n" + line + "\n") != std::string::npos || text.rfind(line + "\n", 0) == 0;
}

}  // namespace

TEST(Exposition, BeforeAnyRunOnlyConfigurationSeriesAndAnEmptyHistogram) {
  const int port = test::free_port();  // nothing listens: the probe never runs here anyway
  EngineOptions opts;
  opts.schedule = false;
  Engine engine(opts);
  engine.apply(config_with(
      "  - name: db\n    type: tcp\n    tcp: {address: \"127.0.0.1:" + std::to_string(port) +
      "\"}\n  - name: web\n    type: tcp\n    depends_on: [db]\n"
      "    tcp: {address: \"127.0.0.1:" +
      std::to_string(port) + "\"}\n"));
  ProbeExposition expo(engine);
  std::string text;
  expo.render(text);
  const Parsed p = parse(text);
  EXPECT_TRUE(p.bad.empty()) << p.bad.front();
  for (const auto& [name, n] : p.types) {
    EXPECT_EQ(n, 1) << name;
    EXPECT_EQ(p.helps.count(name), 1u) << name;
  }
  // Nothing has run: no probe_success / probe_up / duration family at all, not even its header.
  for (const char* absent :
       {"probe_success", "probe_up", "probe_duration_seconds", "probe_last_failure_info",
        "probe_failures_total", "probe_last_run_timestamp_seconds"})
    EXPECT_EQ(p.types.count(absent), 0u) << absent << "\n" << text;
  EXPECT_EQ(p.types.count("probe_info"), 1u);
  EXPECT_EQ(p.types.count("probe_run_duration_seconds"), 1u);
  const std::string labels =
      R"(probe="web",service="web",type="tcp",platform="pes \"one\" \\ two\nlines")";
  EXPECT_TRUE(has_line(text, "probe_dependency_info{" + labels + ",depends_on=\"db\"} 1")) << text;
  EXPECT_TRUE(has_line(text, "probe_run_duration_seconds_bucket{" + labels + ",le=\"0.005\"} 0"))
      << text;
  EXPECT_TRUE(has_line(text, "probe_run_duration_seconds_bucket{" + labels + ",le=\"+Inf\"} 0"))
      << text;
  EXPECT_TRUE(has_line(text, "probe_run_duration_seconds_count{" + labels + "} 0")) << text;
  EXPECT_TRUE(has_line(text, "probe_interval_seconds{" + labels + "} 0.3")) << text;
  EXPECT_TRUE(has_line(text, "probe_runs_total{" + labels + ",result=\"failure\"} 0")) << text;
  // Two probes: 13 buckets + sum + count each.
  int histogram_lines = 0;
  for (const auto& s : p.samples)
    if (s.rfind("probe_run_duration_seconds", 0) == 0) ++histogram_lines;
  EXPECT_EQ(histogram_lines, 2 * (kRunDurationBuckets.size() + 3));
}

TEST(Exposition, AFailedRunShowsUpInEveryFamily) {
  const int port = test::free_port();  // refused: the tcp probe fails with reason connect
  EngineOptions opts;
  opts.workers = 1;
  Engine engine(opts);
  engine.apply(config_with("  - name: db\n    type: tcp\n    tcp: {address: \"127.0.0.1:" +
                           std::to_string(port) + "\"}\n"));
  engine.start();
  uint64_t runs = 0;
  for (int i = 0; i < 100 && runs < 2; ++i) {
    std::this_thread::sleep_for(50ms);
    auto view = engine.view();
    runs = view.probes.at(0)->state.snapshot().runs_failed;
  }
  engine.stop();
  ASSERT_GE(runs, 2u);
  ProbeExposition expo(engine);
  std::string text;
  expo.render(text);
  const Parsed p = parse(text);
  EXPECT_TRUE(p.bad.empty()) << p.bad.front();
  const std::string labels =
      R"(probe="db",service="db",type="tcp",platform="pes \"one\" \\ two\nlines")";
  const std::string n = std::to_string(runs);
  EXPECT_TRUE(has_line(text, "probe_success{" + labels + "} 0")) << text;
  EXPECT_TRUE(has_line(text, "probe_runs_total{" + labels + ",result=\"failure\"} " + n)) << text;
  EXPECT_TRUE(has_line(text, "probe_runs_total{" + labels + ",result=\"success\"} 0")) << text;
  EXPECT_TRUE(has_line(text, "probe_failures_total{" + labels + ",reason=\"connect\"} " + n))
      << text;
  EXPECT_TRUE(has_line(text, "probe_last_failure_info{" + labels + ",reason=\"connect\"} 1"))
      << text;
  EXPECT_TRUE(has_line(text, "probe_run_duration_seconds_count{" + labels + "} " + n)) << text;
  EXPECT_TRUE(has_line(text, "probe_run_duration_seconds_bucket{" + labels + ",le=\"+Inf\"} " + n))
      << text;
  EXPECT_NE(text.find("# TYPE probe_run_duration_seconds histogram\n"), std::string::npos);
  EXPECT_NE(text.find("# TYPE probe_runs_total counter\n"), std::string::npos);
}

TEST(Exposition, AnAdHocRunIsWrittenByTheSameWriterWithTheSameHelpTexts) {
  auto cfg = config_with("  - name: db\n    type: tcp\n    tcp: {address: \"127.0.0.1:1\"}\n");
  Outcome o = Outcome::failure(Reason::connect, "refused");
  o.add("probe_tcp_connect_duration_seconds", "Time to connect.", 0.25);
  const std::string text = render_run(cfg->probes.at(0), *cfg, o, 0.5);
  const Parsed p = parse(text);
  EXPECT_TRUE(p.bad.empty()) << text;
  const std::string labels =
      R"(probe="db",service="db",type="tcp",platform="pes \"one\" \\ two\nlines")";
  EXPECT_TRUE(has_line(text, "probe_success{" + labels + "} 0")) << text;
  EXPECT_TRUE(has_line(text, "probe_duration_seconds{" + labels + "} 0.5")) << text;
  EXPECT_TRUE(has_line(text, "probe_last_failure_info{" + labels + ",reason=\"connect\"} 1"))
      << text;
  EXPECT_TRUE(has_line(text, "probe_tcp_connect_duration_seconds{" + labels + "} 0.25")) << text;
  EXPECT_TRUE(has_line(text, "# HELP probe_success 1 if the last run of the probe passed, else 0."))
      << text;
  EXPECT_TRUE(has_line(text, "# HELP probe_duration_seconds Duration of the last run.")) << text;
  // Only what one run defines: no counters, histogram or configuration series.
  EXPECT_EQ(p.types.count("probe_runs_total"), 0u);
  EXPECT_EQ(p.types.count("probe_up"), 0u);
  EXPECT_EQ(p.types.count("probe_info"), 0u);
  EXPECT_EQ(p.types.size(), 4u) << text;
}
