// HTTP expectations (status codes and classes, body regexes, JSON paths with typed values,
// header regexes, certificate lifetime) judged on responses built in the test.
#include <gtest/gtest.h>

#include <ctime>

#include "agent/config/config.h"
#include "probes/http/http_probe.h"
#include "probes/http/json_path.h"

using namespace pes;

namespace {

HttpExpectations expect_from(const std::string& yaml) {
  ParseContext ctx("t.yml");
  YAML::Node node = YAML::Load(yaml);
  HttpExpectations e;
  {
    Section s(ctx, node, "http");
    e = parse_expectations(s);
    s.raw("url");
  }
  EXPECT_TRUE(ctx.issues().empty()) << (ctx.issues().empty() ? "" : ctx.issues()[0].str());
  return e;
}

HttpResponse response(long status, std::string body) {
  HttpResponse r;
  r.ok = true;
  r.status = status;
  r.body = std::move(body);
  return r;
}

}  // namespace

TEST(StatusMatcher, DefaultIs2xxAndClassesWork) {
  StatusMatcher def;
  EXPECT_TRUE(def.matches(200));
  EXPECT_TRUE(def.matches(204));
  EXPECT_FALSE(def.matches(301));
  StatusMatcher m{{418}, {3}};
  EXPECT_TRUE(m.matches(418));
  EXPECT_TRUE(m.matches(302));
  EXPECT_FALSE(m.matches(200));
  EXPECT_EQ(m.describe(), "418, 3xx");
}

TEST(HttpJudge, StatusFailureIsHttpStatus) {
  auto e = expect_from("{expect: {status: [200]}}");
  auto o = judge_http(response(503, "down"), e);
  EXPECT_FALSE(o.ok);
  EXPECT_EQ(o.reason, Reason::http_status);
  EXPECT_EQ(o.message, "HTTP status 503, expected 200");
  EXPECT_TRUE(judge_http(response(200, ""), e).ok);
}

TEST(HttpJudge, TransportFailureKeepsItsReason) {
  HttpResponse r;
  r.ok = false;
  r.reason = Reason::timeout;
  r.error = "Operation timed out";
  auto o = judge_http(r, HttpExpectations{});
  EXPECT_EQ(o.reason, Reason::timeout);
  EXPECT_EQ(o.message, "Operation timed out");
}

TEST(HttpJudge, BodyRegexes) {
  auto e = expect_from(
      R"({expect: {body_regex: ["installed.*true"], body_not_regex: ["maintenance\":true"]}})");
  EXPECT_TRUE(judge_http(response(200, R"({"installed":true,"maintenance":false})"), e).ok);
  auto missing = judge_http(response(200, R"({"installed":false})"), e);
  EXPECT_EQ(missing.reason, Reason::assertion);
  EXPECT_EQ(missing.message, "body does not match /installed.*true/");
  auto forbidden = judge_http(response(200, R"({"installed":true,"maintenance":true})"), e);
  EXPECT_EQ(forbidden.reason, Reason::assertion);
}

TEST(HttpJudge, JsonPathsWithTypedValues) {
  auto e = expect_from(
      R"({expect: {json: {installed: true, "versionstring": "28.0.1", "checks.db.count": 3,
                            "items[1]": b, "items.2": "c", "ratio": 0.5, nothing: null}}})");
  std::string good = R"({"installed":true,"versionstring":"28.0.1","checks":{"db":{"count":3.0}},
                        "items":["a","b","c"],"ratio":0.5,"nothing":null})";
  auto ok = judge_http(response(200, good), e);
  EXPECT_TRUE(ok.ok) << ok.message;
  // A string "true" is not the boolean true.
  auto typed = judge_http(response(200, R"({"installed":"true"})"), e);
  EXPECT_FALSE(typed.ok);
  EXPECT_EQ(typed.message, "JSON installed is \"true\", expected true");
  auto absent = judge_http(response(200, R"({"installed":true})"), e);
  EXPECT_EQ(absent.message, "JSON path versionstring is missing");
  auto notjson = judge_http(response(200, "<html>"), e);
  EXPECT_EQ(notjson.message, "body is not valid JSON");
}

TEST(HttpJudge, QuotedYamlValueIsAString) {
  auto e = expect_from(R"({expect: {json: {code: "200"}}})");
  EXPECT_FALSE(judge_http(response(200, R"({"code":200})"), e).ok);
  EXPECT_TRUE(judge_http(response(200, R"({"code":"200"})"), e).ok);
}

TEST(HttpJudge, HeaderRegexes) {
  auto e = expect_from(R"({expect: {headers: {Content-Type: "^application/json"}}})");
  auto r = response(200, "{}");
  r.headers = {{"content-type", "application/json; charset=utf-8"}};
  EXPECT_TRUE(judge_http(r, e).ok);
  r.headers = {{"content-type", "text/html"}};
  EXPECT_EQ(judge_http(r, e).message, "header content-type does not match /^application/json/");
  r.headers.clear();
  EXPECT_EQ(judge_http(r, e).message, "response has no header content-type");
}

TEST(HttpJudge, CertificateMinimumDays) {
  auto e = expect_from("{expect: {cert_min_days: 14}}");
  auto r = response(200, "");
  r.earliest_cert_expiry = std::time(nullptr) + 30 * 86400;
  EXPECT_TRUE(judge_http(r, e).ok);
  r.earliest_cert_expiry = std::time(nullptr) + 3 * 86400;
  auto o = judge_http(r, e);
  EXPECT_EQ(o.reason, Reason::assertion);
  EXPECT_NE(o.message.find("fewer than cert_min_days 14"), std::string::npos);
  r.earliest_cert_expiry.reset();
  EXPECT_FALSE(judge_http(r, e).ok);
}

TEST(HttpJudge, SamplesIncludeStatusPhasesAndLength) {
  auto r = response(200, "hello");
  r.phases.connect = 0.25;
  auto o = judge_http(r, HttpExpectations{});
  bool status = false, connect = false, length = false;
  for (const auto& s : o.samples) {
    if (s.name == "probe_http_status_code") status = s.value == 200;
    if (s.name == "probe_http_duration_seconds" && s.labels[0].second == "connect")
      connect = s.value == 0.25;
    if (s.name == "probe_http_content_length") length = s.value == 5;
  }
  EXPECT_TRUE(status && connect && length);
}

TEST(JsonPath, LookupForms) {
  auto doc = nlohmann::json::parse(R"({"a":{"b":[{"c":1},{"c":2}]},"x.y":3})");
  ASSERT_NE(json_lookup(doc, "a.b.1.c"), nullptr);
  EXPECT_EQ(*json_lookup(doc, "a.b.1.c"), 2);
  EXPECT_EQ(*json_lookup(doc, "a.b[0].c"), 1);
  EXPECT_EQ(json_lookup(doc, "a.b.2.c"), nullptr);
  EXPECT_EQ(json_lookup(doc, "a.b.x"), nullptr);
  EXPECT_EQ(json_lookup(doc, "a..b"), nullptr);
  EXPECT_EQ(json_lookup(doc, "a.b[9"), nullptr);
  EXPECT_EQ(json_lookup(doc, "a.b.-1"), nullptr);
  EXPECT_EQ(json_lookup(doc, "missing"), nullptr);
}
