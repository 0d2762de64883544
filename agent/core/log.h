// Process-wide logging setup (spdlog): level and text or JSON lines on stderr.
#pragma once

#include <string>

namespace pes {

// Returns false and leaves logging unchanged if level or format is unknown.
bool setup_logging(const std::string& level, const std::string& format, std::string* error);

// JSON string escaping, shared by the JSON log format and the status API.
std::string json_escape(std::string_view s);

}  // namespace pes
