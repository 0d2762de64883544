// Configuration loading: valid files, every malformed file in tests/data/config with its exact
// error (file:line:column: path: message), secrets expansion, and reload fingerprints.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "agent/config/config.h"
#include "probes/registry.h"

namespace fs = std::filesystem;
using namespace pes;

namespace {

std::string read(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string errors_of(const std::string& text, const std::string& file) {
  try {
    parse_config(text, file, probe_types());
  } catch (const ConfigError& e) {
    return std::string(e.what()) + "\n";
  }
  return "(no error)\n";
}

}  // namespace

TEST(Config, ValidFileWithDefaultsAndOverrides) {
  auto cfg = parse_config(R"(
global:
  interval: 1m
  timeout: 5s
  failure_threshold: 2
  labels: {platform: pes}
probes:
  - name: nextcloud-web
    service: nextcloud
    type: http
    interval: 15s
    http:
      url: https://cloud.example.test/status.php
      method: post
      headers: {X-Test: "1"}
      expect: {status: [200, "3xx"], json: {installed: true}}
  - name: db
    type: tcp
    depends_on: [nextcloud-web]
    tcp: {address: "127.0.0.1:5432"}
)",
                          "agent.yml", probe_types());
  ASSERT_EQ(cfg->probes.size(), 2u);
  const auto& web = cfg->probes[0];
  EXPECT_EQ(web.name, "nextcloud-web");
  EXPECT_EQ(web.service, "nextcloud");
  EXPECT_EQ(web.type, "http");
  EXPECT_EQ(web.interval, std::chrono::seconds(15));
  EXPECT_EQ(web.timeout, std::chrono::seconds(5));
  EXPECT_EQ(web.failure_threshold, 2);
  EXPECT_EQ(web.success_threshold, 1);
  EXPECT_EQ(web.target, "https://cloud.example.test/status.php");
  const auto& db = cfg->probes[1];
  EXPECT_EQ(db.service, "db");
  EXPECT_EQ(db.interval, std::chrono::minutes(1));
  EXPECT_EQ(db.depends_on, std::vector<std::string>{"nextcloud-web"});
  EXPECT_EQ(db.target, "127.0.0.1:5432");
  ASSERT_EQ(cfg->labels.size(), 1u);
  EXPECT_EQ(cfg->labels[0].second, "pes");
}

TEST(Config, EveryMalformedFileGivesItsExactError) {
  fs::path dir = fs::path(PES_SOURCE_DIR) / "tests/data/config";
  int cases = 0;
  for (const auto& entry : fs::directory_iterator(dir)) {
    if (entry.path().extension() != ".yml") continue;
    ++cases;
    fs::path err = entry.path();
    err.replace_extension(".err");
    ASSERT_TRUE(fs::exists(err)) << "missing expected error file for " << entry.path();
    EXPECT_EQ(errors_of(read(entry.path()), entry.path().filename().string()), read(err))
        << "in " << entry.path().filename();
  }
  EXPECT_GE(cases, 20);
}

TEST(Config, AllErrorsAreReportedNotOnlyTheFirst) {
  std::string errs = errors_of(R"(
global:
  interval: 5x
probes:
  - name: a
    type: http
    http: {url: "ftp://x/"}
  - name: a
    type: tcp
    tcp: {address: nope}
)",
                               "multi.yml");
  EXPECT_NE(errs.find("multi.yml:3:13: global.interval"), std::string::npos) << errs;
  EXPECT_NE(errs.find("multi.yml:7:17: probes[0].http.url"), std::string::npos) << errs;
  EXPECT_NE(errs.find("multi.yml:8:11: probes[1].name: duplicate"), std::string::npos) << errs;
  EXPECT_NE(errs.find("multi.yml:10:20: probes[1].tcp.address"), std::string::npos) << errs;
}

TEST(Config, SecretsFromEnvAndFileAreExpandedAndRedacted) {
  setenv("PES_TEST_USER_SECRET", "s3cr3t-from-env", 1);
  fs::path file = fs::temp_directory_path() / "pes_test_secret.txt";
  {
    std::ofstream out(file);
    out << "s3cr3t-from-file\n";
  }
  auto cfg = parse_config(
      "probes:\n"
      "  - name: web\n"
      "    type: http\n"
      "    http:\n"
      "      url: http://127.0.0.1/\n"
      "      headers: {X-Key: \"${env:PES_TEST_USER_SECRET}\"}\n"
      "      basic_auth: {username: agent, password: \"${file:" +
          file.string() + "}\"}\n",
      "s.yml", probe_types());
  ASSERT_TRUE(cfg->redactor);
  EXPECT_EQ(cfg->redactor->redact("a s3cr3t-from-env b s3cr3t-from-file c"),
            "a <redacted> b <redacted> c");
  fs::remove(file);
}

TEST(Config, FingerprintChangesOnlyWithTheProbe) {
  auto yaml = [](const std::string& a_url, const std::string& interval) {
    return "global: {interval: " + interval +
           "}\nprobes:\n"
           "  - {name: a, type: http, http: {url: \"" +
           a_url +
           "\"}}\n"
           "  - {name: b, type: tcp, tcp: {address: \"127.0.0.1:1\"}}\n";
  };
  auto one = parse_config(yaml("http://127.0.0.1/a", "30s"), "f.yml", probe_types());
  auto same = parse_config(yaml("http://127.0.0.1/a", "30s"), "f.yml", probe_types());
  auto changed = parse_config(yaml("http://127.0.0.1/b", "30s"), "f.yml", probe_types());
  auto global = parse_config(yaml("http://127.0.0.1/a", "1m"), "f.yml", probe_types());
  EXPECT_EQ(one->probes[0].fingerprint, same->probes[0].fingerprint);
  EXPECT_NE(one->probes[0].fingerprint, changed->probes[0].fingerprint);
  EXPECT_EQ(one->probes[1].fingerprint, changed->probes[1].fingerprint);
  EXPECT_NE(one->probes[1].fingerprint, global->probes[1].fingerprint);
}

TEST(Config, UnreadableFileIsAnError) {
  try {
    load_config("/nonexistent/agent.yml", probe_types());
    FAIL() << "expected ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_EQ(std::string(e.what()), "/nonexistent/agent.yml: cannot read configuration file");
  }
}
