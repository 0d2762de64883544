#include "probes/jitsi/endpoints.h"

#include <curl/curl.h>

#include <memory>

#include "agent/core/redact.h"

namespace pes::jitsi {
namespace {

struct UrlDeleter {
  void operator()(CURLU* u) const { curl_url_cleanup(u); }
};
using UrlPtr = std::unique_ptr<CURLU, UrlDeleter>;

UrlPtr parse(const std::string& url) {
  UrlPtr u(curl_url());
  if (!u ||
      curl_url_set(u.get(), CURLUPART_URL, url.c_str(), CURLU_NON_SUPPORT_SCHEME) != CURLUE_OK)
    return nullptr;
  return u;
}

// A part of the URL, or nullopt when it is absent.
std::optional<std::string> part(CURLU* u, CURLUPart which) {
  char* value = nullptr;
  if (curl_url_get(u, which, &value, 0) != CURLUE_OK || !value) return std::nullopt;
  std::string s(value);
  curl_free(value);
  return s;
}

std::optional<std::string> full(CURLU* u) { return part(u, CURLUPART_URL); }

bool set(CURLU* u, CURLUPart which, const std::optional<std::string>& value) {
  return curl_url_set(u, which, value ? value->c_str() : nullptr, CURLU_NON_SUPPORT_SCHEME) ==
         CURLUE_OK;
}

// The HTTP request target of the URL: its path ("/" when empty), then "?" and the query if any.
// Built by appending to one string: GCC 12 at -O3 reports a false -Wrestrict overlap when a
// std::string that may hold the path is assigned a literal (GCC bug 105329).
std::string request_target(CURLU* u) {
  std::string target = part(u, CURLUPART_PATH).value_or(std::string());
  if (target.empty()) target.push_back('/');
  if (const auto query = part(u, CURLUPART_QUERY)) target.append(1, '?').append(*query);
  return target;
}

}  // namespace

std::optional<std::string> config_js_url(const std::string& url) {
  UrlPtr u = parse(url);
  if (!u) return std::nullopt;
  std::string path = part(u.get(), CURLUPART_PATH).value_or("/");
  while (!path.empty() && path.back() == '/') path.pop_back();
  path += "/config.js";
  if (!set(u.get(), CURLUPART_PATH, path) || !set(u.get(), CURLUPART_QUERY, std::nullopt) ||
      !set(u.get(), CURLUPART_FRAGMENT, std::nullopt))
    return std::nullopt;
  return full(u.get());
}

std::optional<std::string> on_origin(const std::string& url, const std::string& path_or_url,
                                     std::initializer_list<const char*> schemes,
                                     std::string& error) {
  if (!path_or_url.empty() && path_or_url.front() == '/') {
    UrlPtr u = parse(url);
    if (!u) {
      error = "invalid URL \"" + strip_userinfo(url) + "\"";
      return std::nullopt;
    }
    const size_t q = path_or_url.find('?');
    const std::string path = path_or_url.substr(0, q);
    const std::optional<std::string> query =
        q == std::string::npos ? std::nullopt : std::optional(path_or_url.substr(q + 1));
    if (!set(u.get(), CURLUPART_PATH, path) || !set(u.get(), CURLUPART_QUERY, query) ||
        !set(u.get(), CURLUPART_FRAGMENT, std::nullopt)) {
      error = "cannot use \"" + path_or_url + "\" as a path";
      return std::nullopt;
    }
    return full(u.get());
  }
  std::string list;
  for (const char* s : schemes) list += (list.empty() ? "" : ", ") + std::string(s) + "://";
  UrlPtr u = parse(path_or_url);
  const std::optional<std::string> scheme = u ? part(u.get(), CURLUPART_SCHEME) : std::nullopt;
  bool known = false;
  for (const char* s : schemes)
    if (scheme && *scheme == s) known = true;
  const std::optional<std::string> host = u ? part(u.get(), CURLUPART_HOST) : std::nullopt;
  if (!u || !known || !host || host->empty()) {
    error = "must be a path starting with \"/\" or a URL starting with " + list + ", got \"" +
            strip_userinfo(path_or_url) + "\"";
    return std::nullopt;
  }
  return path_or_url;
}

bool parse_ws_url(const std::string& url, WsEndpoint& out, std::string& error) {
  UrlPtr u = parse(url);
  const std::optional<std::string> scheme = u ? part(u.get(), CURLUPART_SCHEME) : std::nullopt;
  const std::optional<std::string> host = u ? part(u.get(), CURLUPART_HOST) : std::nullopt;
  if (!u || !scheme || !host || host->empty()) {
    error = "invalid WebSocket URL \"" + strip_userinfo(url) + "\"";
    return false;
  }
  if (*scheme == "ws" || *scheme == "http") {
    out.secure = false;
  } else if (*scheme == "wss" || *scheme == "https") {
    out.secure = true;
  } else {
    error = "WebSocket URL \"" + strip_userinfo(url) + "\" must start with ws:// or wss://";
    return false;
  }
  const std::optional<std::string> port = part(u.get(), CURLUPART_PORT);
  out.port = port.value_or(out.secure ? "443" : "80");
  out.host = *host;
  if (out.host.size() >= 2 && out.host.front() == '[' && out.host.back() == ']')
    out.host = out.host.substr(1, out.host.size() - 2);
  out.host_header = *host + (port ? ":" + *port : std::string());
  out.target = request_target(u.get());
  return true;
}

std::string WsEndpoint::url() const {
  return std::string(secure ? "wss://" : "ws://") + host_header + target;
}

std::optional<WsEndpoint> websocket_endpoint(const std::string& url,
                                             const std::string& websocket_path,
                                             std::string& error) {
  const auto ws_url = on_origin(url, websocket_path, {"ws", "wss", "http", "https"}, error);
  if (!ws_url) return std::nullopt;
  WsEndpoint ep;
  if (!parse_ws_url(*ws_url, ep, error)) return std::nullopt;
  return ep;
}

}  // namespace pes::jitsi
