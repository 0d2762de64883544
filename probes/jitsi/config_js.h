// Reads what the jitsi probe needs from Jitsi Meet's config.js: the XMPP domain the web client
// joins (`hosts.domain`). config.js is JavaScript, not JSON, so this is a small tokenizer (string
// literals, comments, punctuation) that recognises the two shapes deployments use:
//   var config = { hosts: { domain: 'meet.example.org', ... }, ... };   (jitsi-meet's template)
//   config.hosts.domain = 'meet.jitsi';                                  (docker-jitsi-meet)
// Engine-independent.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace pes::jitsi {

inline constexpr size_t kMaxConfigJsBytes = 4 << 20;  // 4 MiB; jitsi-meet's is about 80 KiB

struct ConfigJsInfo {
  std::string error;   // non-empty when no usable hosts.domain was found (human words)
  std::string domain;  // hosts.domain: the last assignment in the file wins, as in JavaScript
  bool ok() const { return error.empty(); }
};

// Finds hosts.domain. Fails when the text is too large, has no hosts.domain string, or the value
// is not a host name (e.g. an unrendered template such as '{{ $XMPP_DOMAIN }}').
ConfigJsInfo parse_config_js(std::string_view js);

// True for a DNS-style host name: labels of [A-Za-z0-9-] separated by dots, at most 253 bytes.
bool is_host_name(std::string_view s);

}  // namespace pes::jitsi
