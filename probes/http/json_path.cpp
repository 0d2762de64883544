#include "probes/http/json_path.h"

#include <charconv>
#include <cstdlib>

namespace pes {

const nlohmann::json* json_lookup(const nlohmann::json& doc, std::string_view path) {
  const nlohmann::json* cur = &doc;
  size_t i = 0;
  if (path.empty()) return cur;
  while (i <= path.size()) {
    // Next segment: up to '.' or '['; "[n]" is an index segment.
    std::string_view seg;
    bool index_form = false;
    if (i < path.size() && path[i] == '[') {
      auto close = path.find(']', i);
      if (close == std::string_view::npos) return nullptr;
      seg = path.substr(i + 1, close - i - 1);
      index_form = true;
      i = close + 1;
      if (i < path.size() && path[i] == '.') ++i;
    } else {
      auto end = path.find_first_of(".[", i);
      if (end == std::string_view::npos) end = path.size();
      seg = path.substr(i, end - i);
      i = end;
      if (i < path.size() && path[i] == '.') ++i;
    }
    if (seg.empty() && !index_form) return nullptr;
    if (cur->is_object()) {
      auto it = cur->find(std::string(seg));
      if (it == cur->end()) return nullptr;
      cur = &*it;
    } else if (cur->is_array()) {
      size_t idx = 0;
      auto [p, ec] = std::from_chars(seg.data(), seg.data() + seg.size(), idx);
      if (ec != std::errc() || p != seg.data() + seg.size() || idx >= cur->size()) return nullptr;
      cur = &(*cur)[idx];
    } else {
      return nullptr;
    }
    if (i >= path.size()) return cur;
  }
  return cur;
}

nlohmann::json yaml_to_json(const YAML::Node& node) {
  if (!node.IsDefined() || node.IsNull()) return nullptr;
  if (node.IsSequence()) {
    auto arr = nlohmann::json::array();
    for (const auto& n : node) arr.push_back(yaml_to_json(n));
    return arr;
  }
  if (node.IsMap()) {
    auto obj = nlohmann::json::object();
    for (const auto& kv : node) obj[kv.first.Scalar()] = yaml_to_json(kv.second);
    return obj;
  }
  const std::string& s = node.Scalar();
  if (node.Tag() == "!") return s;  // quoted: always a string
  if (s == "true" || s == "True" || s == "TRUE") return true;
  if (s == "false" || s == "False" || s == "FALSE") return false;
  if (s == "null" || s == "~" || s == "Null" || s == "NULL") return nullptr;
  if (!s.empty()) {
    char* end = nullptr;
    long long i = std::strtoll(s.c_str(), &end, 10);
    if (*end == '\0') return i;
    double d = std::strtod(s.c_str(), &end);
    if (*end == '\0') return d;
  }
  return s;
}

namespace {

// Compact JSON of `v` (as dump(-1) writes it), stopping once `out` is longer than `limit`. Each
// nesting level writes a bracket first, so the recursion is at most `limit` deep: a body nested
// 100000 deep no longer overflows the stack the way a full dump() does.
void dump_prefix(const nlohmann::json& v, std::string& out, size_t limit) {
  constexpr auto kReplace = nlohmann::json::error_handler_t::replace;
  if (out.size() > limit) return;
  if (v.is_array()) {
    out += '[';
    for (size_t i = 0; i < v.size() && out.size() <= limit; ++i) {
      if (i) out += ',';
      dump_prefix(v[i], out, limit);
    }
    out += ']';
  } else if (v.is_object()) {
    out += '{';
    bool first = true;
    for (auto it = v.begin(); it != v.end() && out.size() <= limit; ++it) {
      if (!first) out += ',';
      first = false;
      out += nlohmann::json(it.key()).dump(-1, ' ', false, kReplace);
      out += ':';
      dump_prefix(it.value(), out, limit);
    }
    out += '}';
  } else {
    out += v.dump(-1, ' ', false, kReplace);
  }
}

}  // namespace

std::string json_brief(const nlohmann::json& v) {
  std::string s;
  dump_prefix(v, s, 80);
  if (s.size() > 80) {
    // Cut at 77 bytes, but never inside a UTF-8 sequence (messages end up in JSON output).
    size_t cut = 77;
    while (cut > 0 && (static_cast<unsigned char>(s[cut]) & 0xC0) == 0x80) --cut;
    s.resize(cut);
    s += "...";
  }
  return s;
}

bool json_equal(const nlohmann::json& actual, const nlohmann::json& expected) {
  if (actual.is_number() && expected.is_number())
    return actual.get<double>() == expected.get<double>();
  return actual == expected;
}

}  // namespace pes
