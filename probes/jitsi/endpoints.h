// Where the jitsi probe sends each request, derived from its configuration: config.js beside the
// web frontend's URL, BOSH and WebSocket paths on the frontend's origin (or absolute URLs).
#pragma once

#include <optional>
#include <string>

#include "probes/jitsi/websocket.h"

namespace pes::jitsi {

// `{url}/config.js`: the URL's path with a trailing slash removed, query and fragment dropped.
// nullopt if `url` does not parse.
std::optional<std::string> config_js_url(const std::string& url);

// A component address given as a path ("/http-bind", "/http-bind?room=x") is taken on the origin
// of `url` (its scheme, userinfo, host and port); an absolute URL with one of `schemes` is used as
// it is. nullopt with `error` set otherwise.
std::optional<std::string> on_origin(const std::string& url, const std::string& path_or_url,
                                     std::initializer_list<const char*> schemes,
                                     std::string& error);

// The WebSocket endpoint for `websocket_path`: a path on the origin of `url` (http → ws,
// https → wss) or an absolute ws://, wss:// (or http(s)://) URL.
std::optional<WsEndpoint> websocket_endpoint(const std::string& url,
                                             const std::string& websocket_path, std::string& error);

}  // namespace pes::jitsi
