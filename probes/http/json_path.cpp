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

std::string json_brief(const nlohmann::json& v) {
  std::string s = v.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  if (s.size() > 80) s = s.substr(0, 77) + "...";
  return s;
}

bool json_equal(const nlohmann::json& actual, const nlohmann::json& expected) {
  if (actual.is_number() && expected.is_number()) return actual.get<double>() == expected.get<double>();
  return actual == expected;
}

}  // namespace pes
