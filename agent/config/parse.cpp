#include "agent/config/parse.h"

#include <curl/curl.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>

#include "agent/core/duration.h"
#include "agent/core/handles.h"

namespace pes {

std::string ConfigIssue::str() const {
  std::string out = file;
  if (line > 0) out += ":" + std::to_string(line) + ":" + std::to_string(column);
  out += ": ";
  if (!path.empty()) out += path + ": ";
  out += message;
  return out;
}

namespace {
std::string join_issues(const std::vector<ConfigIssue>& issues) {
  std::string out;
  for (const auto& i : issues) {
    if (!out.empty()) out += "\n";
    out += i.str();
  }
  return out;
}
}  // namespace

ConfigError::ConfigError(std::vector<ConfigIssue> issues)
    : std::runtime_error(join_issues(issues)), issues_(std::move(issues)) {}

ParseContext::ParseContext(std::string file, std::shared_ptr<Redactor> redactor)
    : file_(std::move(file)), redactor_(std::move(redactor)) {}

// By value: one copy per configuration error; the signature in parse.h is shared by every section.
// NOLINTNEXTLINE(performance-unnecessary-value-param)
void ParseContext::error(const YAML::Mark& mark, const std::string& path, std::string message) {
  ConfigIssue issue;
  issue.file = file_;
  if (mark.line >= 0) {
    issue.line = mark.line + 1;
    issue.column = mark.column + 1;
  }
  issue.path = path;
  issue.message = redactor_->redact(message);
  issues_.push_back(std::move(issue));
}

void ParseContext::fingerprint(const std::string& path, const std::string& value) {
  fingerprint_ += path;
  fingerprint_ += '=';
  fingerprint_ += value;
  fingerprint_ += '\n';
}

std::optional<std::string> ParseContext::expand(const std::string& raw, const YAML::Mark& mark,
                                                const std::string& path) {
  std::string out;
  size_t pos = 0;
  while (true) {
    size_t start = raw.find("${", pos);
    if (start == std::string::npos) {
      out.append(raw, pos, std::string::npos);
      return out;
    }
    out.append(raw, pos, start - pos);
    size_t end = raw.find('}', start);
    if (end == std::string::npos) {
      error(mark, path, "unterminated \"${\" (use ${env:NAME} or ${file:/path})");
      return std::nullopt;
    }
    std::string ref = raw.substr(start + 2, end - start - 2);
    std::string value;
    if (ref.rfind("env:", 0) == 0) {
      std::string name = ref.substr(4);
      const char* v = name.empty() ? nullptr : std::getenv(name.c_str());
      if (!v) {
        error(mark, path, "environment variable \"" + name + "\" is not set");
        return std::nullopt;
      }
      value = v;
    } else if (ref.rfind("file:", 0) == 0) {
      std::string file = ref.substr(5);
      std::error_code ec;
      std::ifstream in(file, std::ios::binary);
      if (file.empty() || !in || !std::filesystem::is_regular_file(file, ec)) {
        error(mark, path, "cannot read secret file \"" + file + "\"");
        return std::nullopt;
      }
      std::ostringstream ss;
      ss << in.rdbuf();
      value = ss.str();
      if (in.bad()) {
        error(mark, path, "cannot read secret file \"" + file + "\"");
        return std::nullopt;
      }
      while (!value.empty() && (value.back() == '\n' || value.back() == '\r')) value.pop_back();
    } else {
      error(mark, path, "unknown reference \"${" + ref + "}\" (use ${env:NAME} or ${file:/path})");
      return std::nullopt;
    }
    redactor_->add(value);
    out += value;
    pos = end + 1;
  }
}

Section::Section(ParseContext& ctx, YAML::Node node, std::string path)
    : ctx_(&ctx), node_(node), path_(std::move(path)) {  // YAML::Node has no move constructor
  mark_ = node_.IsDefined() ? node_.Mark() : YAML::Mark::null_mark();
  if (!node_.IsDefined() || node_.IsNull()) return;
  if (!node_.IsMap()) {
    ctx.error(mark_, path_, "must be a mapping of keys to values");
    valid_ = false;
    return;
  }
  std::set<std::string> seen;
  for (const auto& kv : node_) {
    if (!kv.first.IsScalar()) {
      ctx.error(kv.first.Mark(), path_, "keys must be plain strings");
      continue;
    }
    if (!seen.insert(kv.first.Scalar()).second)
      ctx.error(kv.first.Mark(), path_of(kv.first.Scalar()), "duplicate key");
  }
}

Section::Section(Section&& other) noexcept
    : ctx_(std::exchange(other.ctx_, nullptr)),
      node_(other.node_),  // a shared handle; YAML::Node cannot be moved
      path_(std::move(other.path_)),
      mark_(other.mark_),
      known_(std::move(other.known_)),
      valid_(other.valid_) {}

Section::~Section() {
  if (!ctx_ || !valid_ || !node_.IsDefined() || !node_.IsMap()) return;
  for (const auto& kv : node_) {
    if (!kv.first.IsScalar()) continue;
    const std::string& k = kv.first.Scalar();
    if (!known_.count(k)) ctx_->error(kv.first.Mark(), path_of(k), "unknown key");
  }
}

std::string Section::path_of(const std::string& key) const {
  return path_.empty() ? key : path_ + "." + key;
}

bool Section::has(const std::string& key) {
  auto n = get(key);
  return n.IsDefined() && !n.IsNull();
}

YAML::Node Section::get(const std::string& key) {
  known_.insert(key);
  if (!valid_ || !node_.IsDefined() || !node_.IsMap()) return YAML::Node(YAML::NodeType::Undefined);
  // Iterate instead of operator[] so that a const lookup never inserts and the first of duplicates
  // wins.
  for (const auto& kv : node_)
    if (kv.first.IsScalar() && kv.first.Scalar() == key) return kv.second;
  return YAML::Node(YAML::NodeType::Undefined);
}

void Section::error(const std::string& key, std::string message) {
  auto n = get(key);
  ctx_->error(n.IsDefined() ? n.Mark() : mark_, path_of(key), std::move(message));
}

std::optional<std::string> Section::scalar(const std::string& key, Need need) {
  auto n = get(key);
  if (!n.IsDefined() || n.IsNull()) {
    if (need == required) ctx_->error(mark_, path_of(key), "required");
    return std::nullopt;
  }
  if (!n.IsScalar()) {
    ctx_->error(n.Mark(), path_of(key), "must be a single value, not a list or mapping");
    return std::nullopt;
  }
  return n.Scalar();
}

std::optional<std::string> Section::str(const std::string& key, Need need, Kind kind) {
  auto v = scalar(key, need);
  if (!v) return std::nullopt;
  auto n = get(key);
  auto expanded = ctx_->expand(*v, n.Mark(), path_of(key));
  if (!expanded) return std::nullopt;
  if (kind == secret) ctx_->redactor().add(*expanded);
  ctx_->fingerprint(path_of(key), *expanded);
  return expanded;
}

std::string Section::str_or(const std::string& key, std::string fallback, Kind kind) {
  auto v = str(key, optional, kind);
  return v ? *v : std::move(fallback);
}

std::optional<std::chrono::milliseconds> Section::duration(const std::string& key, Need need) {
  auto v = scalar(key, need);
  if (!v) return std::nullopt;
  std::string err;
  auto d = parse_duration(*v, &err);
  if (!d) {
    ctx_->error(get(key).Mark(), path_of(key), err);
    return std::nullopt;
  }
  ctx_->fingerprint(path_of(key), std::to_string(d->count()));
  return d;
}

std::optional<int64_t> Section::integer(const std::string& key, int64_t min, int64_t max,
                                        Need need) {
  auto v = scalar(key, need);
  if (!v) return std::nullopt;
  auto mark = get(key).Mark();
  errno = 0;
  char* end = nullptr;
  long long n = std::strtoll(v->c_str(), &end, 10);
  if (v->empty() || *end != '\0' || errno == ERANGE) {
    ctx_->error(mark, path_of(key), "must be an integer, got \"" + *v + "\"");
    return std::nullopt;
  }
  if (n < min || n > max) {
    ctx_->error(
        mark, path_of(key),
        "must be between " + std::to_string(min) + " and " + std::to_string(max) + ", got " + *v);
    return std::nullopt;
  }
  ctx_->fingerprint(path_of(key), *v);
  return n;
}

std::optional<double> Section::number(const std::string& key, double min, double max, Need need) {
  auto v = scalar(key, need);
  if (!v) return std::nullopt;
  auto mark = get(key).Mark();
  char* end = nullptr;
  double d = std::strtod(v->c_str(), &end);
  if (v->empty() || *end != '\0' || !std::isfinite(d)) {
    ctx_->error(mark, path_of(key), "must be a number, got \"" + *v + "\"");
    return std::nullopt;
  }
  if (d < min || d > max) {
    std::ostringstream msg;
    msg << "must be between " << min << " and " << max << ", got " << *v;
    ctx_->error(mark, path_of(key), msg.str());
    return std::nullopt;
  }
  ctx_->fingerprint(path_of(key), *v);
  return d;
}

std::optional<bool> Section::boolean(const std::string& key) {
  auto v = scalar(key, optional);
  if (!v) return std::nullopt;
  if (*v == "true" || *v == "True" || *v == "TRUE" || *v == "yes" || *v == "on") {
    ctx_->fingerprint(path_of(key), "true");
    return true;
  }
  if (*v == "false" || *v == "False" || *v == "FALSE" || *v == "no" || *v == "off") {
    ctx_->fingerprint(path_of(key), "false");
    return false;
  }
  ctx_->error(get(key).Mark(), path_of(key), "must be true or false, got \"" + *v + "\"");
  return std::nullopt;
}

std::vector<std::string> Section::str_list(const std::string& key) {
  std::vector<std::string> out;
  auto n = get(key);
  if (!n.IsDefined() || n.IsNull()) return out;
  if (!n.IsSequence()) {
    ctx_->error(n.Mark(), path_of(key), "must be a list");
    return out;
  }
  for (size_t i = 0; i < n.size(); ++i) {
    std::string p = path_of(key) + "[" + std::to_string(i) + "]";
    if (!n[i].IsScalar()) {
      ctx_->error(n[i].Mark(), p, "must be a single value");
      continue;
    }
    auto v = ctx_->expand(n[i].Scalar(), n[i].Mark(), p);
    if (!v) continue;
    ctx_->fingerprint(p, *v);
    out.push_back(*v);
  }
  return out;
}

std::vector<std::pair<std::string, std::string>> Section::str_map(const std::string& key,
                                                                  Kind kind) {
  std::vector<std::pair<std::string, std::string>> out;
  auto n = get(key);
  if (!n.IsDefined() || n.IsNull()) return out;
  if (!n.IsMap()) {
    ctx_->error(n.Mark(), path_of(key), "must be a mapping");
    return out;
  }
  std::set<std::string> seen;
  for (const auto& kv : n) {
    std::string k = kv.first.IsScalar() ? kv.first.Scalar() : std::string();
    std::string p = path_of(key) + "." + k;
    if (!kv.first.IsScalar()) {
      ctx_->error(kv.first.Mark(), path_of(key), "keys must be plain strings");
      continue;
    }
    if (!seen.insert(k).second) {
      ctx_->error(kv.first.Mark(), p, "duplicate key");
      continue;
    }
    if (!kv.second.IsScalar()) {
      ctx_->error(kv.second.Mark(), p, "must be a single value");
      continue;
    }
    auto v = ctx_->expand(kv.second.Scalar(), kv.second.Mark(), p);
    if (!v) continue;
    if (kind == secret) ctx_->redactor().add(*v);
    ctx_->fingerprint(p, *v);
    out.emplace_back(k, *v);
  }
  return out;
}

Section Section::sub(const std::string& key) { return Section(*ctx_, get(key), path_of(key)); }

namespace {
// Counts nodes up to `limit` (aliases count every time they are used, as a consumer would see
// them).
bool within(const YAML::Node& n, size_t& budget, int depth) {
  if (budget == 0 || depth > 64) return false;
  --budget;
  if (n.IsSequence() || n.IsMap()) {
    for (const auto& child : n) {
      if (n.IsMap()) {
        if (!within(child.first, budget, depth + 1) || !within(child.second, budget, depth + 1))
          return false;
      } else if (!within(child, budget, depth + 1)) {
        return false;
      }
    }
  }
  return true;
}
}  // namespace

YAML::Node Section::raw(const std::string& key, size_t max_nodes) {
  auto n = get(key);
  if (!n.IsDefined()) return n;
  // Aliases can make a small file describe a huge value ("billion laughs"): refuse before use.
  size_t budget = max_nodes;
  if (!within(n, budget, 0)) {
    ctx_->error(n.Mark(), path_of(key),
                "value too large or too deeply nested (more than " + std::to_string(max_nodes) +
                    " nodes or 64 levels; YAML aliases count each time they are used)");
    return YAML::Node(YAML::NodeType::Undefined);
  }
  if (max_nodes <= 10000) ctx_->fingerprint(path_of(key), YAML::Dump(n));
  return n;
}

bool Section::one_of(const std::string& key, const std::string& value,
                     std::initializer_list<const char*> choices) {
  std::string list;
  for (const char* c : choices) {
    if (value == c) return true;
    if (!list.empty()) list += ", ";
    list += c;
  }
  error(key, "must be one of " + list + ", got \"" + value + "\"");
  return false;
}

TlsOptions Section::tls(const std::string& key) {
  TlsOptions t;
  auto s = sub(key);
  t.ca_file = s.str_or("ca_file", "");
  t.cert_file = s.str_or("cert_file", "");
  t.key_file = s.str_or("key_file", "");
  t.server_name = s.str_or("server_name", "");
  t.insecure_skip_verify = s.boolean("insecure_skip_verify").value_or(false);
  if (t.insecure_skip_verify)
    spdlog::warn(
        "{}: {}.insecure_skip_verify is true: certificates of this target are NOT verified",
        ctx_->file(), path_of(key));
  for (const char* f : {"ca_file", "cert_file", "key_file"}) {
    auto v = s.str(f);
    if (v && !v->empty() && access(v->c_str(), R_OK) != 0)
      s.error(f, "cannot read file \"" + *v + "\"");
  }
  if (t.cert_file.empty() != t.key_file.empty())
    s.error(t.cert_file.empty() ? "cert_file" : "key_file",
            "cert_file and key_file must be given together");
  return t;
}

bool Section::check_url(const std::string& key, const std::string& url,
                        std::initializer_list<const char*> schemes) {
  CurlUrl u(curl_url());
  if (!u ||
      curl_url_set(u.get(), CURLUPART_URL, url.c_str(), CURLU_NON_SUPPORT_SCHEME) != CURLUE_OK) {
    error(key, "invalid URL \"" + strip_userinfo(url) + "\"");
    return false;
  }
  char* scheme = nullptr;
  char* host = nullptr;
  curl_url_get(u.get(), CURLUPART_SCHEME, &scheme, 0);
  curl_url_get(u.get(), CURLUPART_HOST, &host, 0);
  std::string s = scheme ? scheme : "";
  bool has_host = host && *host;
  curl_free(scheme);
  curl_free(host);
  std::string list;
  bool ok = false;
  for (const char* c : schemes) {
    if (s == c) ok = true;
    if (!list.empty()) list += " or ";
    list += std::string(c) + "://";
  }
  if (!ok) {
    error(key, "URL \"" + strip_userinfo(url) + "\" must start with " + list);
    return false;
  }
  if (!has_host) {
    error(key, "URL \"" + strip_userinfo(url) + "\" has no host");
    return false;
  }
  return true;
}

}  // namespace pes
