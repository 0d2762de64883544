// The human status page (/) and its JSON twin (/api/v1/status), rendered from the engine's view.
#pragma once

#include <string>

#include "agent/engine/engine.h"

namespace pes {

std::string render_status_json(const Engine::View& view, bool ready, double now_unix);
std::string render_status_html(const Engine::View& view, bool ready, double now_unix);

}  // namespace pes
