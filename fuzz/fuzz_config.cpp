// libFuzzer target: agent.yml text -> parse_config with the real probe registry.
// Any text must give either a Config or a ConfigError; another exception escaping, a crash, a
// leak or undefined behaviour is a finding. On success every probe is looked up and described,
// the way the engine and the status page use the result.
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>

#include "agent/config/config.h"
#include "probes/registry.h"

namespace {

// ${file:PATH} reads PATH. Fuzzed paths could name /dev/zero or a FIFO (an endless or blocking
// read the operator, who writes the config, would have asked for), so every ${file:...} is
// pointed at one small secret file created here; the substitution code still runs.
const std::string& secret_file() {
  static const std::string path = [] {
    std::string p = "/tmp/pes-fuzz-config-secret-" + std::to_string(::getpid());
    std::ofstream(p) << "s3cret-from-file\n";
    return p;
  }();
  return path;
}

std::string pin_secret_files(std::string text) {
  static const std::string kOpen = "${file:";
  size_t pos = 0;
  while ((pos = text.find(kOpen, pos)) != std::string::npos) {
    const size_t start = pos + kOpen.size();
    size_t end = text.find('}', start);
    if (end == std::string::npos) end = text.size();
    text.replace(start, end - start, secret_file());
    pos = start + secret_file().size();
  }
  return text;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  // The loader warns about risky settings (insecure_skip_verify); thousands of lines a second.
  spdlog::set_level(spdlog::level::off);
  // ${env:NAME} expansion has something to find.
  ::setenv("PES_FUZZ_SECRET", "s3cret-from-env", 1);
  std::atexit([] { std::remove(secret_file().c_str()); });
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text = pin_secret_files(std::string(reinterpret_cast<const char*>(data), size));
  try {
    auto cfg = pes::parse_config(text, "fuzz.yml", pes::probe_types());
    if (!cfg) __builtin_trap();  // parse_config returns a config or throws
    for (const auto& p : cfg->probes) {
      if (cfg->find(p.name) != &p) __builtin_trap();  // names are unique after validation
      if (!p.probe) __builtin_trap();                 // a probe that parsed has its runnable check
      (void)p.probe->target();
      (void)p.probe->token_sources();
    }
  } catch (const pes::ConfigError& e) {
    if (e.issues().empty()) __builtin_trap();  // an error always says what is wrong
    for (const auto& issue : e.issues()) (void)issue.str();
  }
  return 0;
}
