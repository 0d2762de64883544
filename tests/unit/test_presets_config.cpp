// The preset sections (nextcloud, collabora, gitea, nexus, moodle): every field read, defaults,
// the exact error for each malformed section, secrets registered for redaction, and the URL
// every step fetches.
#include <gtest/gtest.h>

#include "agent/config/config.h"
#include "probes/registry.h"

using namespace pes;

namespace {

// Probe "p" (second item, line 3) after a keycloak probe "kc" when the text uses bearer_from
// (else a comment line, so that the other tests do not depend on the keycloak type).
std::string with_probe(const std::string& probe) {
  std::string kc = probe.find("bearer_from") == std::string::npos
                       ? "  # no keycloak probe needed\n"
                       : "  - {name: kc, type: keycloak, keycloak: {url: \"http://kc:8080\", "
                         "realm: pes, client_secret: s}}\n";
  return "probes:\n" + kc + "  - name: p\n" + probe;
}

std::string errors_of(const std::string& probe) {
  try {
    parse_config(with_probe(probe), "agent.yml", probe_types());
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace

TEST(PresetsConfig, MinimalSectionsNeedOnlyUrl) {
  auto cfg = parse_config(
      with_probe("    type: nextcloud\n    nextcloud: {url: \"https://cloud.example.test/\"}\n"
                 "  - {name: c, type: collabora, collabora: {url: \"http://collabora:9980\"}}\n"
                 "  - {name: g, type: gitea, gitea: {url: \"http://gitea:3000\"}}\n"
                 "  - {name: x, type: nexus, nexus: {url: \"http://nexus:8081/\"}}\n"
                 "  - {name: m, type: moodle, moodle: {url: \"http://moodle:8080/moodle\"}}\n"),
      "agent.yml", probe_types());
  ASSERT_EQ(cfg->probes.size(), 5u);
  // The target is the base URL (the loader normalises it like every URL target).
  EXPECT_EQ(cfg->find("p")->target, "https://cloud.example.test/");
  EXPECT_EQ(cfg->find("c")->target, "http://collabora:9980/");
  EXPECT_EQ(cfg->find("x")->target, "http://nexus:8081/");
  EXPECT_EQ(cfg->find("m")->target, "http://moodle:8080/moodle");
  EXPECT_TRUE(cfg->find("p")->probe->token_sources().empty());
}

TEST(PresetsConfig, UrlIsRequiredAndChecked) {
  EXPECT_EQ(errors_of("    type: gitea\n    gitea: {token: abc}\n"),
            "agent.yml:5:12: probes[0].gitea.url: required");
  EXPECT_EQ(errors_of("    type: nexus\n    nexus: {url: \"ftp://nexus\"}\n"),
            "agent.yml:5:18: probes[0].nexus.url: URL \"ftp://nexus/\" must start with http:// or "
            "https://");
  EXPECT_EQ(
      errors_of("    type: moodle\n    moodle: {url: \"http://moodle/login/index.php?x=1\"}\n"),
      "agent.yml:5:19: probes[0].moodle.url: must be the service's base URL, without a query or "
      "fragment");
}

TEST(PresetsConfig, UnknownFieldsAreErrors) {
  // Collabora has no credentials; Gitea has no bearer_from (it accepts only tokens it issued).
  EXPECT_EQ(errors_of("    type: collabora\n    collabora: {url: \"http://c\", password: x}\n"),
            "agent.yml:5:34: probes[0].collabora.password: unknown key");
  EXPECT_EQ(errors_of("    type: gitea\n    gitea: {url: \"http://g\", bearer_from: kc}\n"),
            "agent.yml:5:30: probes[1].gitea.bearer_from: unknown key");
}

TEST(PresetsConfig, NextcloudCredentials) {
  EXPECT_EQ(
      errors_of("    type: nextcloud\n    nextcloud: {url: \"http://n\", app_password: s}\n"),
      "agent.yml:5:48: probes[0].nextcloud.app_password: needs username (the app password's user)");
  EXPECT_EQ(errors_of("    type: nextcloud\n    nextcloud: {url: \"http://n\", username: u}\n"),
            "agent.yml:5:44: probes[0].nextcloud.username: needs app_password");
  EXPECT_EQ(
      errors_of(
          "    type: nextcloud\n    nextcloud: {url: \"http://n\", username: u, app_password: s, "
          "bearer_from: kc}\n"),
      "agent.yml:5:77: probes[1].nextcloud.bearer_from: give either bearer_from or "
      "username/app_password, "
      "not both");
  // bearer_from must name a keycloak probe.
  EXPECT_NE(errors_of("    type: nextcloud\n    nextcloud: {url: \"http://n\", bearer_from: p}\n")
                .find("bearer_from"),
            std::string::npos);
  auto cfg = parse_config(
      with_probe("    type: nextcloud\n    nextcloud: {url: \"http://n\", bearer_from: kc}\n"),
      "agent.yml", probe_types());
  EXPECT_EQ(cfg->find("p")->probe->token_sources(), std::vector<std::string>{"kc"});
}

TEST(PresetsConfig, NexusCredentialsAndIgnoredChecks) {
  EXPECT_EQ(errors_of("    type: nexus\n    nexus: {url: \"http://x\", username: u}\n"),
            "agent.yml:5:40: probes[0].nexus.username: needs password");
  EXPECT_EQ(
      errors_of("    type: nexus\n    nexus: {url: \"http://x\", ignore_checks: [Scheduler]}\n"),
      "agent.yml:5:45: probes[0].nexus.ignore_checks: only applies with username/password (the "
      "system "
      "checks need credentials)");
  EXPECT_EQ(errors_of("    type: nexus\n    nexus: {url: \"http://x\", max_body_bytes: 10}\n"),
            "agent.yml:5:46: probes[0].nexus.max_body_bytes: must be between 1024 and 1073741824, "
            "got 10");
}

TEST(PresetsConfig, SecretsAreRedacted) {
  auto cfg = parse_config(
      with_probe(
          "    type: nextcloud\n    nextcloud: {url: \"http://n\", username: u, "
          "app_password: nc-app-secret}\n"
          "  - {name: g, type: gitea, gitea: {url: \"http://g\", token: gitea-secret}}\n"
          "  - {name: x, type: nexus, nexus: {url: \"http://x\", username: u, password: "
          "nexus-secret}}\n"
          "  - {name: m, type: moodle, moodle: {url: \"http://m\", token: moodle-secret}}\n"),
      "agent.yml", probe_types());
  std::string redacted =
      cfg->redactor->redact("nc-app-secret gitea-secret nexus-secret moodle-secret");
  for (const char* s : {"nc-app-secret", "gitea-secret", "nexus-secret", "moodle-secret"})
    EXPECT_EQ(redacted.find(s), std::string::npos) << redacted;
}

TEST(PresetsConfig, ChangedCredentialChangesTheFingerprint) {
  auto a = parse_config(with_probe("    type: gitea\n    gitea: {url: \"http://g\", token: one}\n"),
                        "a.yml", probe_types());
  auto b = parse_config(with_probe("    type: gitea\n    gitea: {url: \"http://g\", token: two}\n"),
                        "b.yml", probe_types());
  EXPECT_NE(a->find("p")->fingerprint, b->find("p")->fingerprint);
}
