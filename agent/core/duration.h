// Prometheus-style durations ("500ms", "15s", "1m", "1h30m", "2d", "1w", "1y").
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

namespace pes {

// Parses a duration; units must appear at most once, largest first. "0" is zero.
// Returns nullopt and sets *error on malformed input, overflow or an empty string.
std::optional<std::chrono::milliseconds> parse_duration(std::string_view text,
                                                        std::string* error = nullptr);

// Formats a duration in the same syntax, e.g. 90000ms -> "1m30s".
std::string format_duration(std::chrono::milliseconds d);

}  // namespace pes
