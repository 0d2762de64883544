// The table of probe types: adding a type means adding a folder and a line in registry.cpp.
#pragma once

#include <span>

#include "agent/core/probe.h"

namespace pes {

std::span<const ProbeType> probe_types();

}  // namespace pes
