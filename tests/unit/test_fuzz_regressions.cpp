// Regressions of bugs found while fuzzing (fuzz/README.md): each test is the smallest input that
// showed the bug, run through the same public functions the fuzz target calls.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>

#include "agent/config/parse.h"
#include "probes/http/http_probe.h"
#include "probes/http/json_path.h"

namespace pes {
namespace {

bool valid_utf8(const std::string& s) {
  try {
    (void)nlohmann::json(s).dump();
    return true;
  } catch (const nlohmann::json::type_error&) {
    return false;
  }
}

HttpExpectations expect_installed_true() {
  ParseContext ctx("t.yml");
  HttpExpectations e;
  {
    Section s(ctx, YAML::Load("{expect: {json: {installed: true}}}"), "http");
    e = parse_expectations(s);
  }
  EXPECT_TRUE(ctx.issues().empty());
  return e;
}

HttpResponse json_response(std::string body) {
  HttpResponse r;
  r.ok = true;
  r.status = 200;
  r.body = std::move(body);
  return r;
}

// fuzz/crashes/json_path/: json_brief cut its 80-character summary inside a multi-byte UTF-8
// character, so a failure message about a non-ASCII value was invalid UTF-8 and
// `pes-agent probe NAME --format=json` threw nlohmann type_error 316 instead of printing it.
TEST(FuzzRegression, JsonBriefNeverCutsAUtf8Character) {
  for (int pad = 60; pad <= 76; ++pad) {  // every cut position inside a character
    for (const char* ch : {"\xc3\xa9", "\xe4\xb8\xad", "\xf0\x9f\x98\x80"}) {
      std::string value(static_cast<size_t>(pad), 'a');
      for (int i = 0; i < 12; ++i) value += ch;  // always longer than 80 bytes
      const std::string brief = json_brief(value);
      EXPECT_LE(brief.size(), 80u) << pad;
      EXPECT_TRUE(valid_utf8(brief)) << pad << " " << brief;
      EXPECT_EQ(brief.substr(brief.size() - 3), "...");
      EXPECT_EQ(brief.substr(0, 1 + static_cast<size_t>(pad)), "\"" + std::string(pad, 'a'));
    }
  }
  // Short values are shown whole, as before.
  EXPECT_EQ(json_brief(nlohmann::json("d\xc3\xa9j\xc3\xa0")), "\"d\xc3\xa9j\xc3\xa0\"");
  EXPECT_EQ(json_brief(nlohmann::json::parse(R"({"a":[1,2.5,null,true],"b":"x"})")),
            R"({"a":[1,2.5,null,true],"b":"x"})");
}

TEST(FuzzRegression, JsonAssertionMessageOnNonAsciiValueIsValidUtf8) {
  // 67 + 1 quote characters, then "é"s: the cut at 77 bytes falls inside the fifth.
  std::string body = R"({"installed": ")" + std::string(67, 'x');
  for (int i = 0; i < 8; ++i) body += "\xc3\xa9";
  body += "\"}";
  const Outcome o = judge_http(json_response(body), expect_installed_true());
  ASSERT_FALSE(o.ok);
  EXPECT_EQ(o.reason, Reason::assertion);
  EXPECT_TRUE(valid_utf8(o.message)) << o.message;
}

// Found reviewing the fuzz target's limits (its inputs stop at 8 KiB): json_brief serialised the
// whole value recursively, so a body nested ~100000 deep (200 KB, well under max_body_bytes)
// overflowed the stack and killed the agent when a JSON assertion failed on it.
TEST(FuzzRegression, DeeplyNestedBodyDoesNotOverflowTheStack) {
  const size_t depth = 1'000'000;
  const std::string body =
      R"({"installed":)" + std::string(depth, '[') + std::string(depth, ']') + "}";
  const Outcome o = judge_http(json_response(body), expect_installed_true());
  ASSERT_FALSE(o.ok);
  EXPECT_EQ(o.reason, Reason::assertion);
  EXPECT_EQ(o.message, "JSON installed is " + std::string(77, '[') + "..., expected true");

  const auto doc = nlohmann::json::parse(std::string(depth, '[') + std::string(depth, ']'));
  EXPECT_EQ(json_brief(doc), std::string(77, '[') + "...");
  EXPECT_EQ(json_brief(nlohmann::json::parse("[[[[]]]]")), "[[[[]]]]");
}

}  // namespace
}  // namespace pes
