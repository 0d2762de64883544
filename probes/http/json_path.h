// Dotted JSON paths ("status", "data.items.0.name", "checks[1].status") for expectations and
// presets.
#pragma once

#include <yaml-cpp/yaml.h>

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

namespace pes {

// The value at `path`, or nullptr when any step is missing or of the wrong kind.
const nlohmann::json* json_lookup(const nlohmann::json& doc, std::string_view path);

// A typed YAML scalar as JSON: plain `true`/`false`/`null`/numbers keep their type, quoted values
// and everything else are strings. Lists and maps convert element-wise.
nlohmann::json yaml_to_json(const YAML::Node& node);

// Short printable form of a JSON value for failure messages (cut at 80 characters).
std::string json_brief(const nlohmann::json& v);

// True if `actual` equals `expected`, treating 1 and 1.0 as equal.
bool json_equal(const nlohmann::json& actual, const nlohmann::json& expected);

}  // namespace pes
