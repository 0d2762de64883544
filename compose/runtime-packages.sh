#!/usr/bin/env bash
# Prints, one per line, the Debian packages that provide the shared libraries BINARY needs at
# run time (from ldd and dpkg -S). compose/Dockerfile installs exactly these in the runtime
# image; tests/deploy/test_compose.sh runs it against the built agent.
set -euo pipefail
bin=${1:?usage: runtime-packages.sh BINARY}
libs=$(ldd "$bin" | awk '/=> \// {print $3}' | sort -u)
[ -n "$libs" ] || { echo "runtime-packages.sh: no shared libraries found in $bin" >&2; exit 1; }
for lib in $libs; do
  real=$(readlink -f "$lib")
  # dpkg knows the path it installed, which may be the symlink or its target, under /lib or /usr/lib.
  pkg=""
  for p in "$lib" "$real" "/usr$lib" "/usr$real" "${lib#/usr}" "${real#/usr}"; do
    pkg=$(dpkg -S "$p" 2>/dev/null | head -n1 | cut -d: -f1) && [ -n "$pkg" ] && break
  done
  [ -n "$pkg" ] || { echo "runtime-packages.sh: no package provides $lib" >&2; exit 1; }
  echo "$pkg"
done | sort -u
