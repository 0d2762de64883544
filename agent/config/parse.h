// Reading YAML into typed configuration with file:line:column errors for every problem found.
// Probe types use Section to read their own config section; unknown keys are reported
// automatically.
#pragma once

#include <yaml-cpp/yaml.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "agent/core/http_types.h"
#include "agent/core/redact.h"

namespace pes {

// One problem in a configuration file, e.g. `agent.yml:14:7: probes[3].ldap.bind_dn: required`.
struct ConfigIssue {
  std::string file;
  int line = 0;    // 1-based; 0 when the problem has no place (e.g. unreadable file)
  int column = 0;  // 1-based
  std::string path;
  std::string message;
  std::string str() const;
};

// Thrown by the loader with every issue found; what() is all of them, one per line.
class ConfigError : public std::runtime_error {
 public:
  explicit ConfigError(std::vector<ConfigIssue> issues);
  const std::vector<ConfigIssue>& issues() const { return issues_; }

 private:
  std::vector<ConfigIssue> issues_;
};

// A reference from one probe to another, checked once every probe is known.
struct ProbeReference {
  std::string name;
  std::string required_type;  // empty = any type
  YAML::Mark mark;
  std::string path;
};

// State shared by one load: the file name, issues found so far, secrets seen, references to check.
class ParseContext {
 public:
  explicit ParseContext(std::string file,
                        std::shared_ptr<Redactor> redactor = std::make_shared<Redactor>());

  void error(const YAML::Mark& mark, const std::string& path, std::string message);
  const std::vector<ConfigIssue>& issues() const { return issues_; }
  const std::string& file() const { return file_; }
  Redactor& redactor() { return *redactor_; }
  std::shared_ptr<Redactor> shared_redactor() { return redactor_; }

  // Expands ${env:NAME} and ${file:/path} (trailing newline stripped); expanded values are secrets.
  std::optional<std::string> expand(const std::string& raw, const YAML::Mark& mark,
                                    const std::string& path);

  // Adds a resolved value to the fingerprint of the probe being read (reload keeps unchanged
  // probes).
  void fingerprint(const std::string& path, const std::string& value);
  std::string take_fingerprint() { return std::exchange(fingerprint_, {}); }

  void reference(ProbeReference ref) { references_.push_back(std::move(ref)); }
  const std::vector<ProbeReference>& references() const { return references_; }
  void clear_references() { references_.clear(); }

 private:
  std::string file_;
  std::shared_ptr<Redactor> redactor_;
  std::vector<ConfigIssue> issues_;
  std::string fingerprint_;
  std::vector<ProbeReference> references_;
};

// A YAML mapping being read. Each key read is marked as known; on destruction every key that was
// never asked for is reported as unknown, and duplicate keys are reported when the section opens.
class Section {
 public:
  enum Need { optional, required };
  enum Kind { plain, secret };

  Section(ParseContext& ctx, YAML::Node node, std::string path);
  ~Section();
  Section(const Section&) = delete;
  Section& operator=(const Section&) = delete;
  Section(Section&& other) noexcept;

  ParseContext& ctx() { return *ctx_; }
  const std::string& path() const { return path_; }
  std::string path_of(const std::string& key) const;
  const YAML::Mark& mark() const { return mark_; }
  bool present() const { return node_.IsDefined() && !node_.IsNull(); }
  bool has(const std::string& key);

  std::optional<std::string> str(const std::string& key, Need need = optional, Kind kind = plain);
  std::string str_or(const std::string& key, std::string fallback, Kind kind = plain);
  std::optional<std::chrono::milliseconds> duration(const std::string& key, Need need = optional);
  std::optional<int64_t> integer(const std::string& key, int64_t min, int64_t max,
                                 Need need = optional);
  std::optional<double> number(const std::string& key, double min, double max,
                               Need need = optional);
  std::optional<bool> boolean(const std::string& key);
  std::vector<std::string> str_list(const std::string& key);
  std::vector<std::pair<std::string, std::string>> str_map(const std::string& key,
                                                           Kind kind = plain);
  // A nested mapping; an absent key gives an empty (not present) section.
  Section sub(const std::string& key);
  // The raw node (marked known), for values with shapes of their own; undefined when absent.
  // Values larger than max_nodes (counting alias uses) are refused with an error.
  YAML::Node raw(const std::string& key, size_t max_nodes = 10000);
  // Checks that a value is one of `choices`; reports an error naming them otherwise.
  bool one_of(const std::string& key, const std::string& value,
              std::initializer_list<const char*> choices);
  void error(const std::string& key, std::string message);

  // Common blocks.
  TlsOptions tls(const std::string& key = "tls");
  // Validates an http(s) URL; reports at `key`.
  bool check_url(const std::string& key, const std::string& url,
                 std::initializer_list<const char*> schemes);

 private:
  YAML::Node get(const std::string& key);
  std::optional<std::string> scalar(const std::string& key, Need need);

  ParseContext* ctx_;
  YAML::Node node_;
  std::string path_;
  YAML::Mark mark_;
  std::set<std::string> known_;
  bool valid_ = true;
};

}  // namespace pes
