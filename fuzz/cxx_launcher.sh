#!/usr/bin/env bash
# Compiler launcher of the fuzz build (scripts/fuzz.sh sets it as CMAKE_CXX_COMPILER_LAUNCHER).
# Runs the compile unchanged, except for sources that use Boost.Asio/Beast (the jitsi WebSocket
# client): those are compiled at -O0 without sanitizers or coverage, because clang 14 cannot emit
# C++20 coroutines under -fsanitize (it stops with "Cannot represent a difference across
# sections") and Beast costs minutes of CPU time with them. No fuzz target reaches that code; it
# is linked only because the probe registry names every probe type.
set -euo pipefail
src=""
for a in "$@"; do
  case "$a" in *.cpp) src="$a" ;; esac
done
if [ -n "$src" ] && [ -f "$src" ] && grep -qE '#include <boost/(asio|beast)' "$src"; then
  args=()
  for a in "$@"; do
    case "$a" in
      -fsanitize=* | -fno-sanitize-recover=* | -O[0-9s] | -g | -gline-tables-only) ;;
      *) args+=("$a") ;;
    esac
  done
  exec "${args[@]}" -O0
fi
exec "$@"
