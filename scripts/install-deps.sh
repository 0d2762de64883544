#!/usr/bin/env bash
# Installs everything pes-agent needs to build, test and run its demo on Debian 12: the build
# dependencies (scripts/install-build-deps.sh, all the container image's build stage needs), then
# the test framework, the real servers the tests and the demo start on loopback, and the tools
# the suite runs (clang for the fuzzers, clang-format/-tidy, buildah and debootstrap for the image).
# Idempotent; run as root. Every package comes from Debian 12 (and npm for the OIDC test issuer).
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"

# One package per line, grouped, so that additions merge cleanly.
TEST_PKGS=(
  # developer and CI tools: fuzzers (clang), house style (clang-format, clang-tidy)
  git
  clang
  clang-format
  clang-tidy
  libclang-rt-14-dev
  # test framework
  libgtest-dev
  libgmock-dev
  googletest
  # real servers the tests and the demo start on loopback
  nginx-light
  openssl
  postgresql
  slapd
  ldap-utils
  prosody
  coturn
  prometheus
  prometheus-alertmanager
  prometheus-blackbox-exporter
  docker-compose
  # the container image built and run in the suite (tests/deploy/test_image.sh)
  buildah
  debootstrap
  # tools the test scripts call
  curl
  procps
  iproute2
  python3
  python3-yaml
  chromium
)
# IANA time zones for maintenance windows (absl::time, agent/config/maintenance.cpp)
PKGS+=(libabsl-dev)

if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps.sh: run as root (it calls apt-get)" >&2
  exit 1
fi

# Node.js may come from elsewhere on the image (with its own npm); take Debian's only if absent.
command -v npm >/dev/null 2>&1 || TEST_PKGS+=(nodejs npm)
# slapd asks debconf questions on install; answer none.
echo "slapd slapd/no_configuration boolean true" | debconf-set-selections
# One apt-get run for the build dependencies and these.
bash "$here/scripts/install-build-deps.sh" "${TEST_PKGS[@]}"

# The OpenID Connect test issuer (oidc-provider), pinned in tests/oidc/package.json.
if [ -f "$here/tests/oidc/package.json" ] && [ ! -d "$here/tests/oidc/node_modules/oidc-provider" ]; then
  (cd "$here/tests/oidc" && npm install --no-audit --no-fund --loglevel=error)
fi
echo "install-deps.sh: all dependencies present"
