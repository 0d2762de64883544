// TCP connect within a deadline, for the probes that speak their protocol on a socket of their own
// (tcp, ldap), driven by the event loop.
#pragma once

#include <functional>
#include <optional>
#include <string>

#include "agent/core/handles.h"
#include "agent/core/probe.h"
#include "agent/core/types.h"

namespace pes {

// Called once, on the loop thread: the connected, non-blocking socket and nullopt, or no socket
// and the failure (dns, connect or timeout), its message naming the target.
using Connected = std::function<void(std::optional<Outcome> failed, UniqueFd sock)>;

// Resolves host and connects to the first of its addresses that accepts, before the run's
// deadline, without blocking the loop: a numeric address is taken as it is, a name is looked up
// on the worker pool (getaddrinfo blocks, and follows nsswitch, /etc/hosts included); the connect
// waits on the loop. Loop thread only.
void connect_tcp(const RunContextPtr& ctx, const std::string& host, const std::string& port,
                 const std::string& target, Connected done);

// "host" or "[v6-host]", for host:port strings and URLs.
std::string bracket_host(const std::string& host);

}  // namespace pes
