#include "agent/core/types.h"

namespace pes {

std::string_view reason_name(Reason r) {
  switch (r) {
    case Reason::none:
      return "";
    case Reason::timeout:
      return "timeout";
    case Reason::dns:
      return "dns";
    case Reason::connect:
      return "connect";
    case Reason::tls:
      return "tls";
    case Reason::http_status:
      return "http_status";
    case Reason::assertion:
      return "assertion";
    case Reason::auth:
      return "auth";
    case Reason::protocol:
      return "protocol";
    case Reason::config:
      return "config";
    case Reason::internal:
      return "internal";
  }
  return "internal";
}

std::string ascii_lower(std::string_view s) {
  std::string out(s);
  for (char& c : out)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return out;
}

}  // namespace pes
