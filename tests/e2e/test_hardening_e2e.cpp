// Hardening, end to end against the built binary: the listener's TLS and basic auth (Prometheus'
// web config shape), no secret or token in anything the agent emits, and the status page as a
// real browser (headless Chromium) renders it.
#include <crypt.h>
#include <gtest/gtest.h>
#include <re2/re2.h>
#include <signal.h>

#include <cstdlib>
#include <filesystem>
#include <thread>

#include "tests/support/agent_process.h"
#include "tests/support/fixture.h"

using namespace pes::test;
using namespace std::chrono_literals;

namespace {

std::string bcrypt(const std::string& password) {
  char salt[CRYPT_GENSALT_OUTPUT_SIZE];
  if (!crypt_gensalt_rn("$2b$", 8, nullptr, 0, salt, sizeof salt))
    throw std::runtime_error("gensalt");
  crypt_data data{};
  return crypt_r(password.c_str(), salt, &data);
}

std::string artifacts_dir() {
  const char* env = std::getenv("PES_ARTIFACTS_DIR");
  std::string dir = env && *env ? env : "/tmp/pes-test-artifacts";
  std::filesystem::create_directories(dir);
  return dir;
}

}  // namespace

TEST(HardeningE2E, ListenerBasicAuth) {
  TempDir dir;
  std::string hash = bcrypt("scrape-pass-42");
  write_file(dir.file("agent.yml"),
             "web:\n  basic_auth_users: {prometheus: \"" + hash +
                 "\"}\nprobes:\n  - {name: self, type: tcp, tcp: {address: \"127.0.0.1:1\"}}\n");
  AgentProcess agent(dir.file("agent.yml"), {}, false);
  std::string base = "http://127.0.0.1:" + std::to_string(agent.port());
  HttpResult ok;
  for (int i = 0; i < 200; ++i) {
    ok = http_get(base + "/metrics", "prometheus:scrape-pass-42");
    if (ok.status == 200) break;
    std::this_thread::sleep_for(50ms);
  }
  ASSERT_EQ(ok.status, 200) << ok.error << agent.log();
  EXPECT_NE(ok.body.find("pes_agent_build_info"), std::string::npos);
  EXPECT_EQ(http_get(base + "/metrics", "prometheus:wrong").status, 401);
  EXPECT_EQ(http_get(base + "/metrics").status, 401);
  EXPECT_EQ(http_get(base + "/", "someone:scrape-pass-42").status, 401);
  EXPECT_EQ(http_get(base + "/-/healthy", "prometheus:scrape-pass-42").status, 200);
  // The hash is checked, not compared as text.
  EXPECT_EQ(http_get(base + "/metrics", "prometheus:" + hash).status, 401);
}

TEST(HardeningE2E, ListenerTlsWithBasicAuth) {
  TempDir dir;
  Fixture certs("certs");
  std::string hash = bcrypt("scrape-pass-42");
  write_file(dir.file("agent.yml"),
             "web:\n  tls_cert_file: " + certs.get("CERT") + "\n  tls_key_file: " +
                 certs.get("KEY") + "\n  basic_auth_users: {prometheus: \"" + hash +
                 "\"}\nprobes:\n  - {name: self, type: tcp, tcp: {address: \"127.0.0.1:1\"}}\n");
  AgentProcess agent(dir.file("agent.yml"), {}, false);
  std::string base = "https://localhost:" + std::to_string(agent.port());
  HttpResult ok;
  for (int i = 0; i < 200; ++i) {
    ok = http_get(base + "/metrics", "prometheus:scrape-pass-42", certs.get("CA_FILE"));
    if (ok.status == 200) break;
    std::this_thread::sleep_for(50ms);
  }
  ASSERT_EQ(ok.status, 200) << ok.error << agent.log();
  EXPECT_NE(ok.body.find("pes_agent_build_info"), std::string::npos);
  EXPECT_GT(ok.body.size(), 1000u);
  EXPECT_EQ(http_get(base + "/metrics", "prometheus:wrong", certs.get("CA_FILE")).status, 401);
  EXPECT_EQ(http_get(base + "/metrics", "", certs.get("CA_FILE")).status, 401);
  // Plain HTTP on the TLS port gets no HTTP answer, and the agent survives it.
  auto plain = http_get("http://127.0.0.1:" + std::to_string(agent.port()) + "/metrics",
                        "prometheus:scrape-pass-42");
  EXPECT_EQ(plain.status, 0) << plain.body;
  // Many scrapes in a row (connections are relayed and closed cleanly).
  for (int i = 0; i < 20; ++i)
    ASSERT_EQ(
        http_get(base + "/-/healthy", "prometheus:scrape-pass-42", certs.get("CA_FILE")).status,
        200)
        << i;
  EXPECT_TRUE(agent.running());
  EXPECT_EQ(agent.stop(), 0) << agent.log();
}

TEST(HardeningE2E, InsecureSkipVerifyWarnsAtLoad) {
  TempDir dir;
  write_file(dir.file("agent.yml"),
             "probes:\n  - {name: w, type: http, http: {url: \"https://127.0.0.1:1/\", tls: "
             "{insecure_skip_verify: true}}}\n");
  auto r = run_command({PES_AGENT_BINARY, "check-config", dir.file("agent.yml")});
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_NE(r.err.find("insecure_skip_verify is true"), std::string::npos) << r.err;
}

TEST(HardeningE2E, NoSecretOrTokenInAnythingTheAgentEmits) {
  TempDir dir;
  Fixture nginx("nginx");
  Fixture oidc("oidc", {{"REALM", "pes"}});
  const std::string env_secret = "env-secret-Zq81xT";
  const std::string file_secret = "file-secret-Pw93kL";
  const std::string basic_secret =
      "secret";  // the fixture's htpasswd password; also in the URL userinfo below
  setenv("PES_LEAK_TEST_SECRET", env_secret.c_str(), 1);
  write_file(dir.file("secret"), file_secret + "\n");
  std::string n = "127.0.0.1:" + nginx.get("PORT");
  write_file(dir.file("agent.yml"),
             "global: {interval: 1s, timeout: 900ms}\nprobes:\n"
             "  - name: kc\n    service: keycloak\n    type: keycloak\n    keycloak:\n"
             "      url: http://127.0.0.1:" +
                 oidc.get("PORT") +
                 "\n      realm: pes\n"
                 "      client_id: " +
                 oidc.get("CLIENT_ID") + "\n      client_secret: \"" + oidc.get("CLIENT_SECRET") +
                 "\"\n"
                 "  - name: chain\n    type: http\n    http: {url: \"http://" +
                 n +
                 "/bearer\", bearer_from: kc}\n"
                 "  - name: basic\n    type: http\n    http: {url: \"http://" +
                 n + "/basic\", basic_auth: {username: pes, password: \"" + basic_secret +
                 "\"}}\n"
                 "  - name: userinfo\n    type: http\n    http: {url: \"http://pes:" +
                 file_secret + "x@" + n +
                 "/basic\"}\n"
                 "  - name: header\n    type: http\n    http: {url: \"http://" +
                 n +
                 "/echo-headers\", headers: {X-Test: \"${env:PES_LEAK_TEST_SECRET}\"}, "
                 "expect: {body_regex: [\"nomatch-${file:" +
                 dir.file("secret") +
                 "}\"]}}\n"
                 "  - name: filesecret\n    type: http\n    http: {url: \"http://" +
                 n + "/status/503\", headers: {X-Key: \"${file:" + dir.file("secret") + "}\"}}\n");
  AgentProcess agent(dir.file("agent.yml"), {"--log.level=debug"});
  ASSERT_TRUE(agent.wait_for_metric("probe_success{probe=\"chain\"", 1, 20s))
      << agent.metrics() << agent.log();
  std::string all;
  for (int round = 0; round < 2; ++round) {
    all += agent.get("/metrics").body;
    all += agent.get("/api/v1/status").body;
    all += agent.get("/").body;
    for (const char* p : {"kc", "chain", "basic", "userinfo", "header", "filesecret"}) {
      all += agent.get(std::string("/probe?name=") + p + "&debug=true").body;
      all += agent.get(std::string("/probe?name=") + p).body;
    }
    std::this_thread::sleep_for(1200ms);
  }
  all += run_command({PES_AGENT_BINARY, "check-config", dir.file("agent.yml")}).out;
  all += run_command({PES_AGENT_BINARY, "check-config", dir.file("agent.yml")}).err;
  for (const char* p : {"kc", "chain", "header"})
    all += run_command({PES_AGENT_BINARY, "probe", p, "--config.file=" + dir.file("agent.yml"),
                        "--format=json", "--log.level=debug"})
               .out;
  agent.stop();
  all += agent.log();
  ASSERT_NE(all.find("probe_success"), std::string::npos);  // we did collect real output
  for (const std::string& secret : {env_secret, file_secret, oidc.get("CLIENT_SECRET")})
    EXPECT_EQ(all.find(secret), std::string::npos) << "secret leaked: " << secret;
  EXPECT_EQ(all.find("pes:" + basic_secret), std::string::npos);
  // No JWT (header.payload.) anywhere: tokens never leave the process.
  std::string jwt;
  EXPECT_FALSE(RE2::PartialMatch(all, R"((eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}))", &jwt))
      << "token leaked: " << jwt;
  EXPECT_EQ(all.find("Bearer ey"), std::string::npos);
}

TEST(HardeningE2E, StatusPageRendersInChromium) {
  TempDir dir;
  Fixture nginx("nginx");
  std::string n = "127.0.0.1:" + nginx.get("PORT");
  write_file(
      dir.file("agent.yml"),
      "global: {interval: 1s, timeout: 500ms, failure_threshold: 1}\nprobes:\n"
      "  - {name: postgres, type: tcp, tcp: {address: \"127.0.0.1:" +
          std::to_string(free_port()) +
          "\"}}\n"
          "  - {name: nextcloud-web, service: nextcloud, type: http, depends_on: [postgres], "
          "http: {url: \"http://" +
          n +
          "/status/503\"}}\n"
          "  - {name: gitea-web, service: gitea, type: http, http: {url: \"http://" +
          n + "/ok\"}}\n");
  AgentProcess agent(dir.file("agent.yml"));
  ASSERT_TRUE(agent.wait_for_metric("probe_up{probe=\"nextcloud-web\"", 0, 10s));
  ASSERT_TRUE(agent.wait_for_metric("probe_up{probe=\"postgres\"", 0, 10s));
  ASSERT_TRUE(agent.wait_for_metric("probe_up{probe=\"gitea-web\"", 1, 10s));
  std::string shot = artifacts_dir() + "/status-page.png";
  std::filesystem::remove(shot);
  // Chromium still looked up accounts.google.com, clients2.google.com and update.googleapis.com
  // (seen on the wire) with background networking off. The test may talk to loopback only: every
  // host name but 127.0.0.1 fails to resolve inside Chromium, and anything not on loopback goes
  // to a proxy port on loopback where nothing listens. (A page that fails to load makes Chromium
  // probe google.com through 8.8.8.8 for its error page: the agent's page must load.)
  std::vector<std::string> base = {"/usr/bin/chromium",
                                   "--headless",
                                   "--no-sandbox",
                                   "--disable-gpu",
                                   "--disable-quic",
                                   "--no-first-run",
                                   "--disable-background-networking",
                                   "--disable-component-update",
                                   "--disable-sync",
                                   "--disable-domain-reliability",
                                   "--disable-client-side-phishing-detection",
                                   "--no-pings",
                                   "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
                                   "--proxy-server=http://127.0.0.1:9",
                                   "--user-data-dir=" + dir.file("chromium")};
  auto dom_cmd = base;
  dom_cmd.push_back("--dump-dom");
  dom_cmd.push_back(agent.url("/"));
  auto dom = run_command(dom_cmd, 60s);
  ASSERT_EQ(dom.exit_code, 0) << dom.err;
  EXPECT_NE(dom.out.find("2 of 3 probes DOWN"), std::string::npos) << dom.out;
  EXPECT_NE(dom.out.find("nextcloud-web"), std::string::npos);
  EXPECT_NE(dom.out.find("Last run failed (http_status): HTTP status 503, expected 2xx"),
            std::string::npos);
  EXPECT_NE(dom.out.find("Down because postgres is down"), std::string::npos) << dom.out;
  EXPECT_NE(dom.out.find("gitea-web"), std::string::npos);
  auto shot_cmd = base;
  shot_cmd.push_back("--window-size=412,915");  // a phone at 3 a.m.
  shot_cmd.push_back("--screenshot=" + shot);
  shot_cmd.push_back(agent.url("/"));
  auto s = run_command(shot_cmd, 60s);
  EXPECT_EQ(s.exit_code, 0) << s.err;
  ASSERT_TRUE(std::filesystem::exists(shot));
  EXPECT_GT(std::filesystem::file_size(shot), 5000u);
}
