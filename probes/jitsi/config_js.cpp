#include "probes/jitsi/config_js.h"

#include <vector>

namespace pes::jitsi {
namespace {

struct Token {
  enum class Kind { ident, string, punct };
  Kind kind;
  std::string text;  // identifier name, string value (escapes resolved), or one punctuation char
};

bool ident_start(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == '$';
}
bool ident_char(char c) { return ident_start(c) || (c >= '0' && c <= '9'); }

// Splits JavaScript into identifiers, string literals and single punctuation characters, dropping
// whitespace and comments. Good enough for configuration files; regular expression literals are
// not recognised (config.js has none in the shapes we read).
std::vector<Token> tokenize(std::string_view s) {
  std::vector<Token> out;
  size_t i = 0;
  const size_t n = s.size();
  while (i < n) {
    const char c = s[i];
    if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v') {
      ++i;
    } else if (c == '/' && i + 1 < n && s[i + 1] == '/') {
      while (i < n && s[i] != '\n') ++i;
    } else if (c == '/' && i + 1 < n && s[i + 1] == '*') {
      const size_t end = s.find("*/", i + 2);
      i = end == std::string_view::npos ? n : end + 2;
    } else if (c == '\'' || c == '"' || c == '`') {
      Token t{Token::Kind::string, {}};
      ++i;
      while (i < n && s[i] != c) {
        if (s[i] == '\\' && i + 1 < n) {
          const char e = s[i + 1];
          t.text.push_back(e == 'n' ? '\n' : e == 't' ? '\t' : e);
          i += 2;
        } else {
          t.text.push_back(s[i++]);
        }
      }
      if (i >= n) break;  // unterminated: a syntax error, so nothing after it counts
      ++i;                // the closing quote
      out.push_back(std::move(t));
    } else if (ident_start(c)) {
      const size_t start = i;
      while (i < n && ident_char(s[i])) ++i;
      out.push_back({Token::Kind::ident, std::string(s.substr(start, i - start))});
    } else {
      out.push_back({Token::Kind::punct, std::string(1, c)});
      ++i;
    }
  }
  return out;
}

class Scanner {
 public:
  explicit Scanner(const std::vector<Token>& t) : t_(t) {}

  // Every value assigned to hosts.domain, in file order.
  std::vector<std::string> domains() const {
    std::vector<std::string> found;
    for (size_t i = 0; i < t_.size(); ++i) {
      if (!is_key(i, "hosts")) continue;
      // hosts.domain = '...'   or   hosts['domain'] = '...'
      size_t value = 0;
      if (is_punct(i + 1, '.') && is_ident(i + 2, "domain") && is_punct(i + 3, '='))
        value = i + 4;
      else if (is_punct(i + 1, '[') && is_string(i + 2, "domain") && is_punct(i + 3, ']') &&
               is_punct(i + 4, '='))
        value = i + 5;
      if (value && literal_value(value)) {
        found.push_back(t_[value].text);
        continue;
      }
      // hosts: { ... domain: '...' ... }   or   hosts = { ... }
      if ((is_punct(i + 1, ':') || is_punct(i + 1, '=')) && is_punct(i + 2, '{')) {
        int depth = 0;
        for (size_t k = i + 2; k < t_.size(); ++k) {
          if (t_[k].kind == Token::Kind::punct) {
            const char p = t_[k].text[0];
            if (p == '{' || p == '[' || p == '(') ++depth;
            if (p == '}' || p == ']' || p == ')') --depth;
            if (depth == 0) break;
            continue;
          }
          // A key at the object's own level: preceded by '{' or ','.
          if (depth == 1 && is_key(k, "domain") && is_punct(k + 1, ':') &&
              (is_punct(k - 1, '{') || is_punct(k - 1, ',')) && literal_value(k + 2))
            found.push_back(t_[k + 2].text);
        }
      }
    }
    return found;
  }

 private:
  bool is_punct(size_t i, char c) const {
    return i < t_.size() && t_[i].kind == Token::Kind::punct && t_[i].text[0] == c;
  }
  bool is_ident(size_t i, std::string_view name) const {
    return i < t_.size() && t_[i].kind == Token::Kind::ident && t_[i].text == name;
  }
  bool is_string(size_t i, std::string_view value) const {
    return i < t_.size() && t_[i].kind == Token::Kind::string && t_[i].text == value;
  }
  // An object key or a property name: identifier or quoted.
  bool is_key(size_t i, std::string_view name) const {
    return is_ident(i, name) || is_string(i, name);
  }
  // A string literal that is the whole value (not the start of 'a' + b).
  bool literal_value(size_t i) const {
    return i < t_.size() && t_[i].kind == Token::Kind::string && !is_punct(i + 1, '+');
  }

  const std::vector<Token>& t_;
};

}  // namespace

bool is_host_name(std::string_view s) {
  if (s.empty() || s.size() > 253) return false;
  size_t label = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    if (c == '.') {
      if (label == 0) return false;
      label = 0;
      continue;
    }
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    (c == '-' && label > 0 && i + 1 < s.size() && s[i + 1] != '.');
    if (!ok || ++label > 63) return false;
  }
  return label > 0;
}

ConfigJsInfo parse_config_js(std::string_view js) {
  ConfigJsInfo info;
  if (js.size() > kMaxConfigJsBytes) {
    info.error = "config.js is " + std::to_string(js.size()) + " bytes, more than the " +
                 std::to_string(kMaxConfigJsBytes) + "-byte limit";
    return info;
  }
  const std::vector<Token> tokens = tokenize(js);
  const std::vector<std::string> found = Scanner(tokens).domains();
  if (found.empty()) {
    info.error = "config.js does not set hosts.domain (not a Jitsi Meet config.js?)";
    return info;
  }
  const std::string& domain = found.back();
  if (!is_host_name(domain)) {
    std::string shown = domain.substr(0, 80);
    for (char& c : shown)
      if (static_cast<unsigned char>(c) < 0x20 || c == 0x7F) c = '?';
    info.error = "config.js sets hosts.domain to \"" + shown + "\", which is not a host name";
    return info;
  }
  info.domain = domain;
  return info;
}

}  // namespace pes::jitsi
