// TCP connect within a deadline, for the probes that speak their protocol on a socket of their own.
#pragma once

#include <optional>
#include <string>

#include "agent/core/handles.h"
#include "agent/core/types.h"

namespace pes {

// Resolves host and connects to the first of its addresses that accepts, before the deadline.
// On success `out` holds the connected, non-blocking socket and the result is nullopt; otherwise
// the failure (dns, connect or timeout), its message naming `target`.
std::optional<Outcome> connect_tcp(const std::string& host, const std::string& port,
                                   const std::string& target, Clock::time_point deadline,
                                   UniqueFd& out);

// "host" or "[v6-host]", for host:port strings and URLs.
std::string bracket_host(const std::string& host);

}  // namespace pes
