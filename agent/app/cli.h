// The command line (CONTRACT.md §1): run the agent, check-config, probe NAME, --version.
#pragma once

namespace pes {

int run_cli(int argc, char** argv);

}  // namespace pes
