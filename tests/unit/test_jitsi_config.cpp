// The jitsi section (every field, defaults, derived URLs, exact errors), the config.js reader
// (the shapes jitsi-meet and docker-jitsi-meet generate, comments, hostile values) and the URL
// helpers that place config.js, BOSH and the WebSocket on the frontend's origin.
#include <gtest/gtest.h>

#include <string>

#include "agent/config/config.h"
#include "probes/jitsi/config_js.h"
#include "probes/jitsi/endpoints.h"
#include "probes/jitsi/jitsi_probe.h"
#include "probes/registry.h"

using namespace pes;
using namespace pes::jitsi;

namespace {

std::shared_ptr<const Config> load(const std::string& section) {
  return parse_config("probes:\n  - name: p\n    type: jitsi\n    jitsi:\n" + section, "agent.yml",
                      probe_types());
}

const JitsiSpec& spec_of(const Config& cfg) {
  const auto* probe = dynamic_cast<const JitsiProbe*>(cfg.find("p")->probe.get());
  if (!probe) throw std::runtime_error("probe p is not a JitsiProbe");
  return probe->spec();
}

std::string errors_of(const std::string& section) {
  try {
    load(section);
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace

// ---- the section -----------------------------------------------------------------------------

TEST(JitsiConfig, OnlyUrlChecksWebConfigAndBosh) {
  auto cfg = load("      url: https://meet.example.org/\n");
  const JitsiSpec& s = spec_of(*cfg);
  EXPECT_EQ(cfg->find("p")->target, "https://meet.example.org/");
  EXPECT_EQ(s.config_js_url, "https://meet.example.org/config.js");
  EXPECT_EQ(s.bosh_url, "https://meet.example.org/http-bind");  // the default bosh_path
  EXPECT_EQ(s.xmpp_domain, "");
  EXPECT_TRUE(s.checks(JitsiComponent::web));
  EXPECT_TRUE(s.checks(JitsiComponent::config));
  EXPECT_TRUE(s.checks(JitsiComponent::bosh));
  EXPECT_FALSE(s.checks(JitsiComponent::websocket));
  EXPECT_FALSE(s.checks(JitsiComponent::jicofo));
  EXPECT_FALSE(s.checks(JitsiComponent::jvb));
  EXPECT_FALSE(s.checks(JitsiComponent::stun));
}

TEST(JitsiConfig, EveryField) {
  auto cfg = load(
      "      url: http://jitsi-web:80/\n"
      "      xmpp_domain: meet.jitsi\n"
      "      bosh_path: /http-bind?room=probe\n"
      "      websocket_path: /xmpp-websocket\n"
      "      jicofo_health_url: http://jitsi-jicofo:8888/about/health\n"
      "      jvb_health_url: http://jitsi-jvb:8080/about/health\n"
      "      stun: stun.example.org:3478\n"
      "      tls: {insecure_skip_verify: true, server_name: meet.example.org}\n");
  const JitsiSpec& s = spec_of(*cfg);
  EXPECT_EQ(s.url, "http://jitsi-web:80/");
  EXPECT_EQ(s.xmpp_domain, "meet.jitsi");
  EXPECT_EQ(s.bosh_url, "http://jitsi-web:80/http-bind?room=probe");
  ASSERT_TRUE(s.websocket.has_value());
  EXPECT_FALSE(s.websocket->secure);
  EXPECT_EQ(s.websocket->host, "jitsi-web");
  EXPECT_EQ(s.websocket->port, "80");
  EXPECT_EQ(s.websocket->target, "/xmpp-websocket");
  EXPECT_EQ(s.websocket->host_header, "jitsi-web:80");
  EXPECT_EQ(s.jicofo_health_url, "http://jitsi-jicofo:8888/about/health");
  EXPECT_EQ(s.jvb_health_url, "http://jitsi-jvb:8080/about/health");
  EXPECT_EQ(s.stun_host, "stun.example.org");
  EXPECT_EQ(s.stun_port, 3478);
  EXPECT_TRUE(s.tls.insecure_skip_verify);
  EXPECT_EQ(s.tls.server_name, "meet.example.org");
  for (auto c : {JitsiComponent::web, JitsiComponent::config, JitsiComponent::bosh,
                 JitsiComponent::websocket, JitsiComponent::jicofo, JitsiComponent::jvb,
                 JitsiComponent::stun})
    EXPECT_TRUE(s.checks(c)) << jitsi_component_name(c);
}

TEST(JitsiConfig, AbsoluteUrlsBypassTheFrontend) {
  auto cfg = load(
      "      url: https://meet.example.org/tenant/\n"
      "      bosh_path: http://xmpp.meet.jitsi:5280/http-bind\n"
      "      websocket_path: ws://xmpp.meet.jitsi:5280/xmpp-websocket\n"
      "      stun: \"[2001:db8::1]:10000\"\n");
  const JitsiSpec& s = spec_of(*cfg);
  EXPECT_EQ(s.config_js_url, "https://meet.example.org/tenant/config.js");
  EXPECT_EQ(s.bosh_url, "http://xmpp.meet.jitsi:5280/http-bind");
  ASSERT_TRUE(s.websocket.has_value());
  EXPECT_EQ(s.websocket->url(), "ws://xmpp.meet.jitsi:5280/xmpp-websocket");
  EXPECT_EQ(s.stun_host, "2001:db8::1");
  EXPECT_EQ(s.stun_port, 10000);
}

TEST(JitsiConfig, HttpsFrontendMeansWss) {
  auto cfg = load("      url: https://meet.example.org\n      websocket_path: /xmpp-websocket\n");
  const JitsiSpec& s = spec_of(*cfg);
  ASSERT_TRUE(s.websocket.has_value());
  EXPECT_TRUE(s.websocket->secure);
  EXPECT_EQ(s.websocket->port, "443");
  EXPECT_EQ(s.websocket->host_header, "meet.example.org");
  EXPECT_EQ(s.websocket->url(), "wss://meet.example.org/xmpp-websocket");
}

TEST(JitsiConfig, EmptyBoshPathTurnsBoshOff) {
  auto cfg = load(
      "      url: http://meet\n      bosh_path: \"\"\n      websocket_path: /xmpp-websocket\n");
  const JitsiSpec& s = spec_of(*cfg);
  EXPECT_FALSE(s.checks(JitsiComponent::bosh));
  EXPECT_TRUE(s.checks(JitsiComponent::websocket));
}

TEST(JitsiConfig, UrlIsRequired) {
  EXPECT_EQ(errors_of("      xmpp_domain: meet.jitsi\n"),
            "agent.yml:5:7: probes[0].jitsi.url: required");
  EXPECT_EQ(errors_of("      url: ftp://meet\n"),
            "agent.yml:5:12: probes[0].jitsi.url: URL \"ftp://meet/\" must start with http:// or "
            "https://");
}

TEST(JitsiConfig, ExactErrors) {
  EXPECT_EQ(
      errors_of("      url: http://meet\n      xmpp_domain: \"meet jitsi\"\n"),
      "agent.yml:6:20: probes[0].jitsi.xmpp_domain: must be a host name such as meet.jitsi, got "
      "\"meet jitsi\"");
  EXPECT_EQ(
      errors_of("      url: http://meet\n      bosh_path: http-bind\n"),
      "agent.yml:6:18: probes[0].jitsi.bosh_path: must be a path starting with \"/\" or a URL "
      "starting with http://, https://, got \"http-bind\"");
  EXPECT_EQ(
      errors_of("      url: http://meet\n      websocket_path: ftp://meet/ws\n"),
      "agent.yml:6:23: probes[0].jitsi.websocket_path: must be a path starting with \"/\" or a "
      "URL starting with ws://, wss://, http://, https://, got \"ftp://meet/ws\"");
  EXPECT_EQ(
      errors_of("      url: http://meet\n      websocket_path: \"\"\n"),
      "agent.yml:6:23: probes[0].jitsi.websocket_path: must not be empty (leave it out to skip "
      "the WebSocket check)");
  EXPECT_EQ(
      errors_of("      url: http://meet\n      stun: stun.example.org\n"),
      "agent.yml:6:13: probes[0].jitsi.stun: must be host:port (or [v6]:port) of a STUN server "
      "(UDP), got \"stun.example.org\"");
  EXPECT_EQ(
      errors_of("      url: http://meet\n      stun: \"stun:3478:1\"\n"),
      "agent.yml:6:13: probes[0].jitsi.stun: must be host:port (or [v6]:port) of a STUN server "
      "(UDP), got \"stun:3478:1\"");
  EXPECT_EQ(
      errors_of("      url: http://meet\n      jvb_health_url: jvb:8080/about/health\n"),
      "agent.yml:6:23: probes[0].jitsi.jvb_health_url: invalid URL \"jvb:8080/about/health\"");
  EXPECT_EQ(
      errors_of("      url: http://meet\n      jicofo_health_url: ftp://jicofo/about/health\n"),
      "agent.yml:6:26: probes[0].jitsi.jicofo_health_url: URL \"ftp://jicofo/about/health\" must "
      "start with http:// or https://");
  EXPECT_EQ(errors_of("      url: http://meet\n      jvb: http://jvb:8080\n"),
            "agent.yml:6:7: probes[0].jitsi.jvb: unknown key");
}

// ---- config.js -------------------------------------------------------------------------------

TEST(ConfigJs, DockerJitsiMeetShape) {
  // What docker-jitsi-meet's system-config.js template renders (XMPP_DOMAIN=meet.jitsi).
  const auto info = parse_config_js(R"js(// Jitsi Meet configuration.
var config = {};

if (!config.hasOwnProperty('hosts')) config.hosts = {};

config.hosts.domain = 'meet.jitsi';
config.focusUserJid = 'focus@auth.meet.jitsi';

var subdir = '<!--# echo var="subdir" default="" -->';
var subdomain = "<!--# echo var="subdomain" default="" -->";
if (subdir.startsWith('<!--')) {
    subdir = '';
}
config.hosts.muc = 'muc.' + subdomain + 'meet.jitsi';
config.bosh = '/' + subdir + 'http-bind';
config.websocket = 'wss://meet.example.org/' + subdir + 'xmpp-websocket';
)js");
  EXPECT_TRUE(info.ok()) << info.error;
  EXPECT_EQ(info.domain, "meet.jitsi");
}

TEST(ConfigJs, JitsiMeetTemplateShape) {
  // jitsi-meet's own config.js: an object literal, commented-out keys, URLs with "//".
  const auto info = parse_config_js(
      R"js(/* eslint-disable comma-dangle, no-unused-vars, no-var, prefer-template */
var subdir = '<!--# echo var="subdir" default="" -->';
var config = {
    hosts: {
        // XMPP domain.
        domain: 'jitsi-meet.example.com',

        // When using authentication, domain for guest users.
        // anonymousdomain: 'guest.example.com',

        // domain: 'commented.example.com',
        /* domain: 'block-commented.example.com', */
        muc: 'conference.' + subdomain + 'jitsi-meet.example.com',
    },
    bosh: 'https://jitsi-meet.example.com/' + subdir + 'http-bind',
    testing: { domain: 'not-the-hosts-one.example.com' },
};
)js");
  EXPECT_TRUE(info.ok()) << info.error;
  EXPECT_EQ(info.domain, "jitsi-meet.example.com");
}

TEST(ConfigJs, QuotedKeysAndBracketAccess) {
  EXPECT_EQ(parse_config_js(R"({"hosts": {"muc": "muc.x", "domain": "json.example"}})").domain,
            "json.example");
  EXPECT_EQ(parse_config_js("config.hosts['domain'] = \"bracket.example\";").domain,
            "bracket.example");
  EXPECT_EQ(parse_config_js("config.hosts = { domain: `tpl.example` };").domain, "tpl.example");
}

TEST(ConfigJs, LastAssignmentWins) {
  const auto info = parse_config_js(
      "var config = { hosts: { domain: 'first.example' } };\nconfig.hosts.domain = "
      "'second.example';\n");
  EXPECT_EQ(info.domain, "second.example");
}

TEST(ConfigJs, NestedObjectsInsideHostsAreNotTheDomain) {
  const auto info = parse_config_js(
      "var config = { hosts: { extra: { domain: 'nested.example' }, domain: 'top.example' } };");
  EXPECT_EQ(info.domain, "top.example");
}

TEST(ConfigJs, FailuresNameTheProblem) {
  EXPECT_EQ(parse_config_js("").error,
            "config.js does not set hosts.domain (not a Jitsi Meet config.js?)");
  EXPECT_EQ(parse_config_js("<!DOCTYPE html><html><body>404</body></html>").error,
            "config.js does not set hosts.domain (not a Jitsi Meet config.js?)");
  // Computed values are not guessed at.
  EXPECT_FALSE(parse_config_js("config.hosts.domain = 'meet.' + suffix;").ok());
  // An unrendered template is a broken deployment.
  EXPECT_EQ(parse_config_js("config.hosts.domain = '{{ $XMPP_DOMAIN }}';").error,
            "config.js sets hosts.domain to \"{{ $XMPP_DOMAIN }}\", which is not a host name");
  // A comparison is not an assignment.
  EXPECT_FALSE(parse_config_js("if (config.hosts.domain == 'x.example') {}").ok());
  EXPECT_FALSE(parse_config_js("config.anonymousdomain = 'x.example';").ok());
}

TEST(ConfigJs, HostileInputIsBounded) {
  // Unterminated literals and comments end at the end of the text, and count for nothing.
  EXPECT_FALSE(parse_config_js("config.hosts.domain = 'meet.jitsi").ok());
  EXPECT_FALSE(parse_config_js("/* config.hosts.domain = 'meet.jitsi';").ok());
  EXPECT_FALSE(parse_config_js(std::string(100000, '{')).ok());
  EXPECT_EQ(parse_config_js("hosts: {" + std::string(100000, '[') + "domain: 'deep.example'").error,
            "config.js does not set hosts.domain (not a Jitsi Meet config.js?)");
  const std::string big(kMaxConfigJsBytes + 1, ' ');
  EXPECT_EQ(parse_config_js(big).error, "config.js is " + std::to_string(big.size()) +
                                            " bytes, more than the " +
                                            std::to_string(kMaxConfigJsBytes) + "-byte limit");
  // Control characters in a bad value are not echoed raw.
  const auto ctl = parse_config_js("config.hosts.domain = 'a\\nb';");
  EXPECT_EQ(ctl.error, "config.js sets hosts.domain to \"a?b\", which is not a host name");
}

TEST(ConfigJs, HostNames) {
  for (const char* good : {"meet.jitsi", "localhost", "a-b.example.org", "x1.y2", "MEET.Example"})
    EXPECT_TRUE(is_host_name(good)) << good;
  for (const char* bad :
       {"", ".", "a..b", ".a", "a.", "-a", "a-", "a b", "a_b", "a/b", "a:1", "{{ $X }}"})
    EXPECT_FALSE(is_host_name(bad)) << bad;
  EXPECT_TRUE(is_host_name(std::string(63, 'a') + ".b"));
  EXPECT_FALSE(is_host_name(std::string(64, 'a') + ".b"));
}

// ---- URLs ------------------------------------------------------------------------------------

TEST(JitsiEndpoints, ConfigJsBesideTheFrontend) {
  EXPECT_EQ(config_js_url("https://meet.example.org"), "https://meet.example.org/config.js");
  EXPECT_EQ(config_js_url("https://meet.example.org/"), "https://meet.example.org/config.js");
  EXPECT_EQ(config_js_url("http://127.0.0.1:8000/tenant//"),
            "http://127.0.0.1:8000/tenant/config.js");
  EXPECT_EQ(config_js_url("http://meet/room?x=1#f"), "http://meet/room/config.js");
}

TEST(JitsiEndpoints, PathsOnTheOrigin) {
  std::string error;
  EXPECT_EQ(on_origin("https://meet.example.org/tenant/", "/http-bind", {"http", "https"}, error),
            "https://meet.example.org/http-bind");
  EXPECT_EQ(on_origin("http://[::1]:8000/", "/http-bind?room=a", {"http", "https"}, error),
            "http://[::1]:8000/http-bind?room=a");
  EXPECT_EQ(on_origin("http://meet/", "https://xmpp:5281/http-bind", {"http", "https"}, error),
            "https://xmpp:5281/http-bind");
  EXPECT_FALSE(on_origin("http://meet/", "xmpp:5280/http-bind", {"http", "https"}, error));
  EXPECT_FALSE(on_origin("http://meet/", "ws://", {"ws"}, error));
  EXPECT_EQ(error,
            "must be a path starting with \"/\" or a URL starting with ws://, got \"ws://\"");
}

TEST(JitsiEndpoints, WebSocketUrls) {
  WsEndpoint ep;
  std::string error;
  ASSERT_TRUE(parse_ws_url("wss://[2001:db8::5]:8443/xmpp-websocket?room=a", ep, error)) << error;
  EXPECT_TRUE(ep.secure);
  EXPECT_EQ(ep.host, "2001:db8::5");
  EXPECT_EQ(ep.port, "8443");
  EXPECT_EQ(ep.target, "/xmpp-websocket?room=a");
  EXPECT_EQ(ep.host_header, "[2001:db8::5]:8443");
  ASSERT_TRUE(parse_ws_url("ws://xmpp.meet.jitsi", ep, error)) << error;
  EXPECT_EQ(ep.port, "80");
  EXPECT_EQ(ep.target, "/");
  EXPECT_FALSE(parse_ws_url("gopher://x/", ep, error));
  EXPECT_EQ(error, "WebSocket URL \"gopher://x/\" must start with ws:// or wss://");
  EXPECT_FALSE(parse_ws_url("not a url", ep, error));
}

TEST(JitsiConfig, ComponentNamesAreTheMetricLabels) {
  EXPECT_EQ(jitsi_component_name(JitsiComponent::web), "web");
  EXPECT_EQ(jitsi_component_name(JitsiComponent::config), "config");
  EXPECT_EQ(jitsi_component_name(JitsiComponent::bosh), "bosh");
  EXPECT_EQ(jitsi_component_name(JitsiComponent::websocket), "websocket");
  EXPECT_EQ(jitsi_component_name(JitsiComponent::jicofo), "jicofo");
  EXPECT_EQ(jitsi_component_name(JitsiComponent::jvb), "jvb");
  EXPECT_EQ(jitsi_component_name(JitsiComponent::stun), "stun");
}
