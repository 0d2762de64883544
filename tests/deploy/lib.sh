# Shared helpers of tests/deploy/test_*.sh (sourced, not a test itself).
# ctest sets PES_SOURCE_DIR (repo root) and PES_AGENT_BINARY; both have fallbacks so that a
# script also runs by hand from the repository.
set -euo pipefail

PES_SOURCE_DIR="${PES_SOURCE_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"
export PES_SOURCE_DIR
TEST_NAME="$(basename "$0" .sh)"

# Debian's python3 has python3-yaml; prefer it over any other python3 on PATH.
if [ -x /usr/bin/python3 ] && /usr/bin/python3 -c 'import yaml' 2>/dev/null; then
  PY=/usr/bin/python3
else
  PY=python3
fi

log() { printf '[%s] %s\n' "$TEST_NAME" "$*"; }
fail() { printf '[%s] FAIL: %s\n' "$TEST_NAME" "$*" >&2; exit 1; }
need() { command -v "$1" >/dev/null 2>&1 || fail "required tool '$1' not found (scripts/install-deps.sh installs it)"; }

# A temp dir removed on exit; cleanup hooks run first (e.g. to stop servers this test started).
TMP="$(mktemp -d "${TMPDIR:-/tmp}/pes-deploy.XXXXXX")"
CLEANUP_HOOKS=()
on_exit() {
  local rc=$?
  local h
  for h in "${CLEANUP_HOOKS[@]}"; do eval "$h" || true; done
  rm -rf "$TMP"
  exit "$rc"
}
trap on_exit EXIT

# A free TCP port on 127.0.0.1 (bind to port 0, read the port, release it).
free_port() {
  "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# Wait until URL answers 2xx, up to $2 seconds.
wait_http() {
  local url=$1 secs=${2:-30} i
  for ((i = 0; i < secs * 10; i++)); do
    curl -fsS -o /dev/null --max-time 1 "$url" 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}
