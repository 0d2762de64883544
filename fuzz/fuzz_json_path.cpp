// libFuzzer target: the JSON-path assertions of the http probe and the presets.
// Input: the first line is a dotted path ("data.items[0].name"), the rest is a response body.
//  - json_lookup(body, path) on the parsed body; a hit is printed (json_brief) and compared
//    (json_equal) the way a failure message is built;
//  - judge_http on the body with a fixed expectation set read by parse_expectations (status,
//    body regexes, typed JSON paths, a header), and again with the fuzzed path added.
// Bodies come from the network: nothing here may crash, whatever the server sends.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "agent/config/parse.h"
#include "probes/http/http_probe.h"
#include "probes/http/json_path.h"

namespace {

// Messages end up in JSON (`pes-agent probe --format=json`, /api/v1/status), so text built from a
// body that parsed as JSON (hence valid UTF-8) must stay valid UTF-8.
bool valid_utf8(const std::string& s) {
  try {
    (void)nlohmann::json(s).dump();
    return true;
  } catch (const nlohmann::json::type_error&) {
    return false;
  }
}

// What a preset or an operator typically checks: Nextcloud's status.php, a health endpoint's
// check list, nested arrays, typed values (bool, int, float, string, null).
constexpr const char* kExpectations = R"yaml(
expect:
  status: [200, "2xx"]
  body_regex: ['"status"\s*:']
  body_not_regex: ['"maintenance"\s*:\s*true']
  json:
    installed: true
    status: "UP"
    "checks[0].status": "UP"
    "data.items.0.count": 3
    "data.ratio": 0.5
    "meta.next": null
    "versionstring": "28.0.1"
  headers:
    Content-Type: "^application/(.+\\+)?json"
)yaml";

const pes::HttpExpectations& expectations() {
  static const pes::HttpExpectations e = [] {
    pes::ParseContext ctx("fuzz.yml");
    pes::HttpExpectations out;
    {
      pes::Section s(ctx, YAML::Load(kExpectations), "http");
      out = pes::parse_expectations(s);
    }
    if (!ctx.issues().empty() || out.json.size() != 7) __builtin_trap();
    return out;
  }();
  return e;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  (void)expectations();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const size_t nl = input.find('\n');
  const std::string path(nl == std::string_view::npos ? std::string_view{} : input.substr(0, nl));
  const std::string_view body_text = nl == std::string_view::npos ? input : input.substr(nl + 1);

  const auto doc = nlohmann::json::parse(body_text, nullptr, /*allow_exceptions=*/false);
  if (!doc.is_discarded()) {
    const nlohmann::json* hit = pes::json_lookup(doc, path);
    if (path.empty() && hit != &doc) __builtin_trap();  // the empty path is the document
    if (hit) {
      const std::string brief = pes::json_brief(*hit);
      if (brief.size() > 80) __builtin_trap();  // json_brief promises at most 80 characters
      if (!valid_utf8(brief)) __builtin_trap();
      (void)pes::json_equal(*hit, *hit);
      (void)pes::json_equal(*hit, nlohmann::json(3));
      (void)pes::json_equal(*hit, nlohmann::json("UP"));
    }
  }

  pes::HttpResponse r;
  r.ok = true;
  r.status = 200;
  r.headers = {{"content-type", "application/json; charset=utf-8"}};
  r.body.assign(body_text);
  r.content_length = static_cast<int64_t>(r.body.size());
  pes::Outcome o = pes::judge_http(r, expectations());
  if (!o.ok && o.reason != pes::Reason::assertion)
    __builtin_trap();  // status and transport are fine
  if (!valid_utf8(o.message)) __builtin_trap();

  pes::HttpExpectations with_path = expectations();
  with_path.json.emplace_back(path, nlohmann::json(true));
  (void)pes::judge_http(r, with_path);
  return 0;
}
