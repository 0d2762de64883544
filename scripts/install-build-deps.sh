#!/usr/bin/env bash
# Installs what building pes-agent needs on Debian 12: the toolchain and the -dev packages of the
# libraries it links, nothing else. compose/Dockerfile's build stage runs this; scripts/install-deps.sh
# runs it too and adds the test servers, the demo's services and the CI tools.
# Usage: install-build-deps.sh [PACKAGE...]  (extra packages are installed in the same apt-get run)
# Idempotent; run as root. Every package comes from Debian 12.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

# One package per line, grouped, so that additions merge cleanly.
BUILD_PKGS=(
  # toolchain
  build-essential
  cmake
  ninja-build
  pkg-config
  # libraries the agent links
  prometheus-cpp-dev
  libcurl4-openssl-dev
  libpq-dev
  libldap-dev
  libyaml-cpp-dev
  libspdlog-dev
  libfmt-dev
  nlohmann-json3-dev
  libssl-dev
  libcli11-dev
  libexpat1-dev
  libboost-dev
  libre2-dev
  # the listener's gzip (Boost.Beast/Asio is in libboost-dev)
  zlib1g-dev
  # the keycloak probe's login flow: libxml2's HTML parser reads Keycloak's login page
  libxml2-dev
  # IANA time zones for maintenance windows (absl::time, agent/config/maintenance.cpp)
  libabsl-dev
)

if [ "$(id -u)" -ne 0 ]; then
  echo "install-build-deps.sh: run as root (it calls apt-get)" >&2
  exit 1
fi

# Debian's service packages try to start their daemons on install; nothing here needs them
# running (the tests start their own unprivileged instances), so keep them from starting.
printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
chmod +x /usr/sbin/policy-rc.d
trap 'rm -f /usr/sbin/policy-rc.d' EXIT

missing=()
for p in "${BUILD_PKGS[@]}" "$@"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  apt-get update
  apt-get install -y --no-install-recommends "${missing[@]}"
fi
echo "install-build-deps.sh: build dependencies present"
