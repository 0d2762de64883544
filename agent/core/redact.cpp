#include "agent/core/redact.h"

#include <curl/curl.h>

#include <algorithm>
#include <memory>
#include <vector>

#include "agent/core/handles.h"
#include "agent/core/types.h"

namespace pes {

void Redactor::add(std::string secret) {
  // Very short values would redact ordinary words; secrets of 1-3 characters are not secrets
  // anyway.
  if (secret.size() < 4) return;
  std::lock_guard lock(mu_);
  secrets_.insert(std::move(secret));
}

void Redactor::merge(const Redactor& other) {
  if (&other == this) return;
  std::set<std::string, std::greater<>> copy;
  {
    std::lock_guard lock(other.mu_);
    copy = other.secrets_;
  }
  std::lock_guard lock(mu_);
  secrets_.merge(copy);
}

bool Redactor::empty() const {
  std::lock_guard lock(mu_);
  return secrets_.empty();
}

std::string Redactor::redact(std::string_view text) const {
  std::string out(text);
  std::lock_guard lock(mu_);
  // Longer secrets first so that a secret containing another is removed whole.
  std::vector<const std::string*> order;
  for (const auto& s : secrets_) order.push_back(&s);
  std::sort(order.begin(), order.end(), [](auto* a, auto* b) { return a->size() > b->size(); });
  for (const auto* s : order) {
    size_t pos = 0;
    while ((pos = out.find(*s, pos)) != std::string::npos) {
      out.replace(pos, s->size(), "<redacted>");
      pos += 10;
    }
  }
  return out;
}

std::string strip_userinfo(std::string_view url) {
  CurlUrl u(curl_url());
  std::string in(url);
  if (u &&
      curl_url_set(u.get(), CURLUPART_URL, in.c_str(), CURLU_NON_SUPPORT_SCHEME) == CURLUE_OK) {
    curl_url_set(u.get(), CURLUPART_USER, nullptr, 0);
    curl_url_set(u.get(), CURLUPART_PASSWORD, nullptr, 0);
    curl_url_set(u.get(), CURLUPART_OPTIONS, nullptr, 0);
    char* raw = nullptr;
    if (curl_url_get(u.get(), CURLUPART_URL, &raw, 0) == CURLUE_OK) {
      CurlString out(raw);
      return std::string(out.get());
    }
  }
  auto scheme = in.find("://");
  auto at = in.find('@', scheme == std::string::npos ? 0 : scheme + 3);
  auto slash = in.find('/', scheme == std::string::npos ? 0 : scheme + 3);
  if (at != std::string::npos && (slash == std::string::npos || at < slash)) {
    size_t start = scheme == std::string::npos ? 0 : scheme + 3;
    in.erase(start, at + 1 - start);
  }
  return in;
}

namespace {

bool one_time_credential(std::string_view name) {
  static constexpr std::string_view kNames[] = {
      "code",          "state",         "nonce",    "code_verifier", "session_code",
      "access_token",  "refresh_token", "id_token", "token",         "password",
      "client_secret", "secret",        "key",      "ticket",        "auth"};
  const std::string lower = ascii_lower(name);
  return std::find(std::begin(kNames), std::end(kNames), lower) != std::end(kNames);
}

}  // namespace

std::string trace_url(std::string_view url) {
  std::string out = strip_userinfo(url);
  const size_t q = out.find('?');
  if (q == std::string::npos) return out;
  const size_t end = std::min(out.find('#', q), out.size());
  std::string query;
  size_t pos = q + 1;
  while (pos <= end) {
    size_t amp = std::min(out.find('&', pos), end);
    std::string_view param(out.data() + pos, amp - pos);
    const size_t eq = param.find('=');
    if (pos != q + 1) query += '&';
    if (eq != std::string_view::npos && one_time_credential(param.substr(0, eq))) {
      query.append(param.substr(0, eq + 1));
      query += "<redacted>";
    } else {
      query.append(param);
    }
    pos = amp + 1;
  }
  return out.substr(0, q + 1) + query + out.substr(end);
}

}  // namespace pes
