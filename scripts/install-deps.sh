#!/usr/bin/env bash
# Installs everything pes-agent needs to build, test and run its demo on Debian 12.
# Idempotent; run as root. Every package comes from Debian 12 (and npm for the OIDC test issuer).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

PKGS=(
  # toolchain
  build-essential cmake ninja-build pkg-config git clang clang-format clang-tidy
  libclang-rt-14-dev
  # libraries the agent links
  prometheus-cpp-dev libcurl4-openssl-dev libpq-dev libldap-dev libyaml-cpp-dev
  libspdlog-dev libfmt-dev libgtest-dev libgmock-dev googletest nlohmann-json3-dev libssl-dev
  libcli11-dev libexpat1-dev libboost-dev libre2-dev
  # the listener's gzip (Boost.Beast/Asio is in libboost-dev)
  zlib1g-dev
  # real servers the tests and the demo start on loopback
  nginx-light openssl postgresql slapd ldap-utils prosody coturn
  prometheus prometheus-alertmanager prometheus-blackbox-exporter docker-compose
  curl procps iproute2 python3 python3-yaml chromium
)

if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps.sh: run as root (it calls apt-get)" >&2
  exit 1
fi

# Debian's service packages try to start their daemons on install; the tests start their own
# unprivileged instances, so keep the system ones from starting.
printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
chmod +x /usr/sbin/policy-rc.d
trap 'rm -f /usr/sbin/policy-rc.d' EXIT

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# Node.js may come from elsewhere on the image (with its own npm); take Debian's only if absent.
command -v npm >/dev/null 2>&1 || missing+=(nodejs npm)
if [ "${#missing[@]}" -gt 0 ]; then
  apt-get update
  # slapd asks debconf questions; answer none.
  echo "slapd slapd/no_configuration boolean true" | debconf-set-selections
  apt-get install -y --no-install-recommends "${missing[@]}"
fi

# The OpenID Connect test issuer (oidc-provider), pinned in tests/oidc/package.json.
here="$(cd "$(dirname "$0")/.." && pwd)"
if [ -f "$here/tests/oidc/package.json" ] && [ ! -d "$here/tests/oidc/node_modules/oidc-provider" ]; then
  (cd "$here/tests/oidc" && npm install --no-audit --no-fund --loglevel=error)
fi
echo "install-deps.sh: all dependencies present"
