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
# --- Keycloak (tests/fixtures/keycloak.sh) ------------------------------------------------------
# The server distribution from Maven Central (org.keycloak:keycloak-quarkus-dist:<version>:zip),
# unpacked and built once (db postgres, health and metrics on) into a cache outside the repo;
# the fixture runs `kc.sh start --optimized` from it. Java: Debian 12's OpenJDK 17 (Keycloak 26.4
# supports 17, 21 and 25), installed with maven. The version is in tests/fixtures/keycloak/version
# and is the compose stack's image tag.
install_keycloak() {
  local root version cache dist zip
  root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
  version="$(cat "$root/tests/fixtures/keycloak/version")"
  cache="${PES_KEYCLOAK_CACHE:-/var/cache/pes-agent}"
  dist="$cache/keycloak-$version"
  [ -f "$dist/.pes-built" ] && return 0
  command -v mvn >/dev/null 2>&1 && [ -x /usr/lib/jvm/java-17-openjdk-amd64/bin/java ] || {
    apt-get update
    apt-get install -y --no-install-recommends maven openjdk-17-jdk-headless unzip
  }
  mkdir -p "$cache/download"
  zip="$cache/download/keycloak-quarkus-dist-$version.zip"
  if [ ! -s "$zip" ]; then
    mvn -q -B dependency:copy "-Dartifact=org.keycloak:keycloak-quarkus-dist:$version:zip" \
      "-DoutputDirectory=$cache/download"
  fi
  rm -rf "$dist" "$dist.tmp"
  mkdir -p "$dist.tmp"
  unzip -q "$zip" -d "$dist.tmp"
  mv "$dist.tmp/keycloak-$version" "$dist"
  rmdir "$dist.tmp"
  JAVA_HOME=/usr/lib/jvm/java-17-openjdk-amd64 "$dist/bin/kc.sh" build --db=postgres \
    --health-enabled=true --metrics-enabled=true
  # World-readable: the fixture runs Keycloak as an unprivileged user.
  chmod -R a+rX "$dist"
  touch "$dist/.pes-built"
}
install_keycloak
# --- end of Keycloak ---------------------------------------------------------------------------

echo "install-deps.sh: all dependencies present"
