#include "agent/core/duration.h"

#include <array>
#include <cstdint>
#include <limits>

namespace pes {
namespace {

struct Unit {
  std::string_view name;
  int64_t ms;
};
// Order matters: "ms" before "m" so that the longer suffix wins; rank gives the required order.
constexpr std::array<Unit, 7> kUnits{{{"y", 365LL * 24 * 3600 * 1000},
                                      {"w", 7LL * 24 * 3600 * 1000},
                                      {"d", 24LL * 3600 * 1000},
                                      {"h", 3600LL * 1000},
                                      {"m", 60LL * 1000},
                                      {"s", 1000},
                                      {"ms", 1}}};

bool fail(std::string* error, std::string msg) {
  if (error) *error = std::move(msg);
  return false;
}

}  // namespace

std::optional<std::chrono::milliseconds> parse_duration(std::string_view text, std::string* error) {
  if (text.empty()) {
    fail(error, "empty duration");
    return std::nullopt;
  }
  if (text == "0") return std::chrono::milliseconds(0);
  int64_t total = 0;
  size_t next_rank = 0;  // units must come in decreasing size, each at most once
  size_t i = 0;
  while (i < text.size()) {
    if (text[i] < '0' || text[i] > '9') {
      fail(error, "invalid duration \"" + std::string(text) + "\": expected a number at position " +
                      std::to_string(i + 1) + " (use e.g. 500ms, 15s, 1m30s)");
      return std::nullopt;
    }
    int64_t n = 0;
    while (i < text.size() && text[i] >= '0' && text[i] <= '9') {
      if (n > (std::numeric_limits<int64_t>::max() - 9) / 10) {
        fail(error, "duration \"" + std::string(text) + "\" is too large");
        return std::nullopt;
      }
      n = n * 10 + (text[i] - '0');
      ++i;
    }
    size_t rank = kUnits.size();
    if (text.substr(i, 2) == "ms") {
      rank = 6;
    } else if (i < text.size()) {
      for (size_t r = 0; r < 6; ++r) {
        if (text[i] == kUnits[r].name[0]) rank = r;
      }
    }
    if (rank == kUnits.size()) {
      fail(error, "invalid duration \"" + std::string(text) +
                      "\": missing or unknown unit (one of y, w, d, h, m, s, ms)");
      return std::nullopt;
    }
    if (rank < next_rank) {
      fail(error, "invalid duration \"" + std::string(text) +
                      "\": units must be in decreasing order and not repeat");
      return std::nullopt;
    }
    next_rank = rank + 1;
    i += kUnits[rank].name.size();
    if (n > std::numeric_limits<int64_t>::max() / kUnits[rank].ms ||
        total > std::numeric_limits<int64_t>::max() - n * kUnits[rank].ms) {
      fail(error, "duration \"" + std::string(text) + "\" is too large");
      return std::nullopt;
    }
    total += n * kUnits[rank].ms;
  }
  return std::chrono::milliseconds(total);
}

std::string format_duration(std::chrono::milliseconds d) {
  int64_t ms = d.count();
  if (ms == 0) return "0s";
  std::string out;
  if (ms < 0) {
    out = "-";
    ms = -ms;
  }
  for (const auto& u : kUnits) {
    if (ms >= u.ms) {
      out += std::to_string(ms / u.ms);
      out += u.name;
      ms %= u.ms;
    }
  }
  return out;
}

}  // namespace pes
