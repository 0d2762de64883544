#!/usr/bin/env bash
# The cost of the keycloak probe's two ways of getting a token, side by side, against the real
# Keycloak (tests/fixtures/keycloak.sh): `grant: client_credentials` and `grant:
# authorization_code` (the login through the form). For each, one pes-agent with that single
# probe at a 1 s interval for WINDOW seconds; per run: the agent's CPU (process_cpu_seconds_total),
# Keycloak's CPU (its process group in /proc) and the run's mean duration. Not a test.
#
#   bench/keycloak_login.sh [--window 60] [--agent build/default/agent/pes-agent]
#   PES_KEYCLOAK_DIR=DIR bench/keycloak_login.sh    # use a running fixture instead of starting one
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
window=60
agent="$root/build/default/pes-agent"
while [ $# -gt 0 ]; do
  case "$1" in
    --window) window="$2"; shift 2 ;;
    --agent) agent="$2"; shift 2 ;;
    *) echo "usage: $0 [--window S] [--agent PATH]" >&2; exit 2 ;;
  esac
done
[ -x "$agent" ] || { echo "no agent binary at $agent (cmake --build --preset default)" >&2; exit 1; }
tmp="$(mktemp -d /tmp/pes-bench-kc-XXXXXX)"
own=""
cleanup() {
  [ -n "${apid:-}" ] && kill "$apid" 2>/dev/null && wait "$apid" 2>/dev/null
  [ -n "$own" ] && bash "$root/tests/fixtures/keycloak.sh" stop "$own" >/dev/null 2>&1
  rm -rf "$tmp"
}
trap cleanup EXIT

kc="${PES_KEYCLOAK_DIR:-}"
if [ -z "$kc" ]; then
  own="$tmp/kc"
  t0=$(date +%s%N)
  bash "$root/tests/fixtures/keycloak.sh" start "$own" >/dev/null
  echo "Keycloak started in $((($(date +%s%N) - t0) / 1000000)) ms (fresh database, realm import)"
  kc="$own"
fi
envv() { sed -n "s/^$1=//p" "$kc/fixture.env" | head -n1; }
kcpid="$(cat "$kc/pid")"

# CPU seconds (user + system) of Keycloak's process group: kc.sh and its java.
kc_cpu() {
  local p sum=0 f
  for p in $(pgrep -g "$kcpid"); do
    read -ra f < <(sed 's/^.*) //' "/proc/$p/stat" 2>/dev/null) || continue
    sum=$((sum + f[11] + f[12]))
  done
  calc "$sum / $(getconf CLK_TCK)" 3
}
calc() { awk "BEGIN { printf \"%.${2:-1}f\", $1 }"; }
metric() { curl -fsS "http://127.0.0.1:$port/metrics" | awk -v s="$1" 'index($0, s) == 1 { print $NF; exit }'; }

section() {
  local url realm="pes"
  url="$(envv URL)"
  if [ "$1" = cc ]; then
    printf '      client_id: pes-agent\n      client_secret: %s\n' "'$(envv CLIENT_SECRET)'"
  else
    printf '      grant: authorization_code\n      client_id: pes-agent-login\n'
    printf '      username: %s\n      password: %s\n      redirect_uri: %s\n' "$(envv MONITOR_USER)" \
      "'$(envv MONITOR_PASSWORD)'" "$(envv REDIRECT_URI)"
  fi | sed "1i\\
global: {interval: 1s, timeout: 900ms}\\
probes:\\
  - name: kc\\
    type: keycloak\\
    keycloak:\\
      url: $url\\
      realm: $realm"
}

printf '\n| grant | runs | failed | agent CPU ms/run | Keycloak CPU ms/run | mean run ms |\n|---|---|---|---|---|---|\n'
for mode in cc login; do
  section "$mode" >"$tmp/$mode.yml"
  port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
  "$agent" "--config.file=$tmp/$mode.yml" "--web.listen-address=127.0.0.1:$port" --log.level=warn \
    >"$tmp/$mode.log" 2>&1 &
  apid=$!
  sleep 8 # warm-up: first runs, JWKS cached, JIT of Keycloak's code paths
  runs0="$(curl -fsS "http://127.0.0.1:$port/metrics" | awk '/^probe_runs_total\{/ { s += $NF } END { print s + 0 }')"
  fail0="$(curl -fsS "http://127.0.0.1:$port/metrics" | awk '/^probe_runs_total\{.*result="failure"/ { s += $NF } END { print s + 0 }')"
  dur0="$(curl -fsS "http://127.0.0.1:$port/metrics" | awk '/^probe_run_duration_seconds_sum\{/ { s += $NF } END { print s + 0 }')"
  a0="$(metric process_cpu_seconds_total)"
  k0="$(kc_cpu)"
  sleep "$window"
  runs1="$(curl -fsS "http://127.0.0.1:$port/metrics" | awk '/^probe_runs_total\{/ { s += $NF } END { print s + 0 }')"
  fail1="$(curl -fsS "http://127.0.0.1:$port/metrics" | awk '/^probe_runs_total\{.*result="failure"/ { s += $NF } END { print s + 0 }')"
  dur1="$(curl -fsS "http://127.0.0.1:$port/metrics" | awk '/^probe_run_duration_seconds_sum\{/ { s += $NF } END { print s + 0 }')"
  a1="$(metric process_cpu_seconds_total)"
  k1="$(kc_cpu)"
  kill "$apid"; wait "$apid" 2>/dev/null || true; apid=""
  n=$((${runs1%.*} - ${runs0%.*}))
  [ "$n" -gt 0 ] || { echo "$mode: no runs in the window" >&2; cat "$tmp/$mode.log" >&2; exit 1; }
  printf '| %s | %d | %d | %s | %s | %s |\n' "$([ "$mode" = cc ] && echo client_credentials || echo authorization_code)" \
    "$n" $((${fail1%.*} - ${fail0%.*})) \
    "$(calc "($a1 - $a0) * 1000 / $n" 2)" "$(calc "($k1 - $k0) * 1000 / $n")" \
    "$(calc "($dur1 - $dur0) * 1000 / $n")"
done
echo
echo "load average while measuring: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores; window ${window}s per grant"
