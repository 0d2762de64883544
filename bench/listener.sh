#!/usr/bin/env bash
# The listener under choking clients (issue 12), side by side: pes-agent and Debian's
# prometheus-blackbox-exporter, each holding 2,000 idle and 500 slowloris connections (a byte every
# 5 s, bench/listener_load.py) while /metrics and /-/healthy are timed every 100 ms for --hold
# seconds, plain and TLS. The agent runs twice: with its defaults (web.max_connections 1024, so the
# cap closes the oldest idle connections) and with max_connections 4096 (everything held until the
# head deadline). See bench/README.md, "The listener under choking clients".
#
#   bench/listener.sh [--hold 30] [--idle 2000] [--slow 500] [--out DIR]
#
# AGENT=path (default build/default/pes-agent), BLACKBOX=path. Results: OUT/listener.md.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
AGENT="${AGENT:-$ROOT/build/default/pes-agent}"
BLACKBOX="${BLACKBOX:-/usr/bin/prometheus-blackbox-exporter}"
HOLD=30
IDLE=2000
SLOW=500
OUT=""
while [ $# -gt 0 ]; do
  case "$1" in
    --hold) HOLD="$2"; shift 2 ;;
    --idle) IDLE="$2"; shift 2 ;;
    --slow) SLOW="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    -h | --help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "listener.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
OUT="${OUT:-$ROOT/build/bench/listener-$(date +%Y%m%d-%H%M%S)}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
[ -x "$AGENT" ] || { echo "listener.sh: no agent binary at $AGENT" >&2; exit 1; }
[ -x "$BLACKBOX" ] || { echo "listener.sh: $BLACKBOX not found" >&2; exit 1; }
# 2,500 client sockets here; each server raises (agent) or inherits the limit.
ulimit -n "$(ulimit -Hn)"

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
# A free port (retried: after runs with thousands of connections, the ephemeral range can be
# briefly exhausted by TIME_WAIT).
free_port() {
  local i
  for ((i = 0; i < 50; i++)); do
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' \
      2>/dev/null && return 0
    sleep 0.2
  done
  return 1
}
PID=""
stop_server() {
  [ -n "$PID" ] || return 0
  kill -TERM "$PID" 2>/dev/null || true
  wait "$PID" 2>/dev/null || true
  PID=""
}
trap stop_server EXIT

CERTS="$("$ROOT/tests/fixtures/certs.sh" gen "$OUT/certs" KEY_TYPE=ec)"
cert() { sed -n "s/^$1=//p" <<<"$CERTS"; }
CA="$(cert CA_FILE)"

cat >"$OUT/bb.yml" <<EOF
modules:
  tcp: {prober: tcp}
EOF
cat >"$OUT/bb-web.yml" <<EOF
tls_server_config:
  cert_file: $(cert CERT)
  key_file: $(cert KEY)
EOF
agent_config() {  # $1: extra web: lines, $2: file
  {
    echo "global: {interval: 1h, timeout: 5s}"
    echo "web:"
    echo "  max_probe_requests: 4"
    printf '%s' "$1"
    echo "probes:"
    echo "  - {name: self, type: tcp, tcp: {address: \"127.0.0.1:1\"}}"
  } >"$2"
}
TLS_WEB="  tls_cert_file: $(cert CERT)
  tls_key_file: $(cert KEY)
"
agent_config "" "$OUT/agent-default.yml"
agent_config "  max_connections: 4096
" "$OUT/agent-4096.yml"
agent_config "$TLS_WEB" "$OUT/agent-default-tls.yml"
agent_config "  max_connections: 4096
$TLS_WEB" "$OUT/agent-4096-tls.yml"

# run NAME TLS(0|1) CMD...: starts the server, waits for /-/healthy, runs the load, stops it.
run() {
  local name="$1" tls="$2" port
  shift 2
  port="$(free_port)"
  "$@" --web.listen-address="127.0.0.1:$port" >"$OUT/$name.log" 2>&1 &
  PID=$!
  local scheme=http curl_tls=()
  [ "$tls" = 1 ] && scheme=https curl_tls=(--cacert "$CA")
  for _ in $(seq 100); do
    curl -fsS "${curl_tls[@]}" -o /dev/null "$scheme://localhost:$port/-/healthy" 2>/dev/null && break
    sleep 0.1
  done
  log "$name: $IDLE idle + $SLOW slowloris for ${HOLD}s"
  local tls_arg=()
  [ "$tls" = 1 ] && tls_arg=(--tls "$CA")
  python3 "$ROOT/bench/listener_load.py" --port "$port" --pid "$PID" --idle "$IDLE" \
    --slow "$SLOW" --hold "$HOLD" "${tls_arg[@]}" >"$OUT/$name.json"
  log "$name: $(cat "$OUT/$name.json")"
  stop_server
}

run agent-defaults 0 "$AGENT" --config.file="$OUT/agent-default.yml" --log.level=warn
run agent-4096 0 "$AGENT" --config.file="$OUT/agent-4096.yml" --log.level=warn
run blackbox 0 "$BLACKBOX" --config.file="$OUT/bb.yml" --log.level=warn
run agent-defaults-tls 1 "$AGENT" --config.file="$OUT/agent-default-tls.yml" --log.level=warn
run agent-4096-tls 1 "$AGENT" --config.file="$OUT/agent-4096-tls.yml" --log.level=warn
run blackbox-tls 1 "$BLACKBOX" --config.file="$OUT/bb.yml" --web.config.file="$OUT/bb-web.yml" \
  --log.level=warn

{
  echo "Run $(date -u +%Y-%m-%dT%H:%MZ) on $(nproc) CPUs, loadavg $(cut -d' ' -f1-3 /proc/loadavg);"
  echo "$IDLE idle + $SLOW slowloris connections held ${HOLD}s; agent $AGENT; $("$BLACKBOX" --version 2>&1 | head -1)."
  echo
  echo "| server | /metrics max / p99 / p50 ms (failed of n) | /-/healthy max / p99 / p50 ms (failed of n) | idle / slowloris closed by the server by the end | server fds before / under load / after |"
  echo "|---|---|---|---|---|"
  for name in agent-defaults agent-4096 blackbox agent-defaults-tls agent-4096-tls blackbox-tls; do
    python3 - "$OUT/$name.json" "$name" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
m, h = d["metrics"], d["healthy"]
print(f"| {sys.argv[2]} | {m['max_ms']} / {m['p99_ms']} / {m['p50_ms']} ({m['failed']} of {m['requests']}) "
      f"| {h['max_ms']} / {h['p99_ms']} / {h['p50_ms']} ({h['failed']} of {h['requests']}) "
      f"| {d['idle_closed_by_server']} / {d['slow_closed_by_server']} "
      f"| {d['fds_before']} / {d['fds_under_load']} / {d['fds_after']} |")
EOF
  done
} >"$OUT/listener.md"
cat "$OUT/listener.md"
