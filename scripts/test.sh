#!/usr/bin/env bash
# Installs everything, builds the `default` preset (what the tests run) and the `release` preset
# exactly as compose/Dockerfile builds it, and runs the whole test suite (unit, integration, e2e,
# deploy: the container image, the deployed monitoring files, format and tidy checks). Fails if
# either build fails, or if the release build prints a compiler warning (the CI-only check: users'
# release builds never turn warnings into errors). Extra arguments go to ctest, e.g.
# `scripts/test.sh -L unit` or `-R http`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh

echo "test.sh: building preset default"
cmake --preset default
cmake --build --preset default -j"$(nproc)"

# The release build, with the Dockerfile's own commands (checked to still be its commands), from
# an empty build directory so that every file is compiled and every warning shows.
release_configure='cmake --preset release -DPES_BUILD_TESTS=OFF'
release_build='cmake --build build/release --target pes-agent'
for c in "$release_configure" "$release_build"; do
  grep -qF "$c" compose/Dockerfile || { echo "test.sh: compose/Dockerfile no longer runs '$c'; update test.sh" >&2; exit 1; }
done
echo "test.sh: building preset release as compose/Dockerfile does"
rm -rf build/release
mkdir -p build
$release_configure
$release_build 2>&1 | tee build/release-build.log
if grep -q 'warning:' build/release-build.log; then
  echo "test.sh: the release build prints compiler warnings (fix them; see build/release-build.log):" >&2
  grep -A3 'warning:' build/release-build.log >&2
  exit 1
fi
build/release/pes-agent --version

# Test artefacts (screenshots, logs) land here; CI keeps the directory.
mkdir -p test-artifacts
export PES_ARTIFACTS_DIR="$PWD/test-artifacts"
# One test at a time: several tests measure deadlines (timeout + 100 ms) and must not be starved
# by a neighbour that is starting servers.
ctest --preset default --timeout 900 "$@"
