#!/usr/bin/env bash
# Installs everything, builds the default preset and runs the whole test suite (unit, integration,
# e2e, deploy). Extra arguments go to ctest, e.g. `scripts/test.sh -L unit` or `-R http`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cmake --preset default
cmake --build --preset default -j"$(nproc)"
# Test artefacts (screenshots, logs) land here; CI keeps the directory.
mkdir -p test-artifacts
export PES_ARTIFACTS_DIR="$PWD/test-artifacts"
# One test at a time: several tests measure deadlines (timeout + 100 ms) and must not be starved
# by a neighbour that is starting servers; the suite takes about 10 minutes this way.
ctest --preset default --timeout 900 "$@"
