#!/usr/bin/env bash
# Fleet scale run (issue 14): three agents share one configuration of N HTTP probes (default
# 30,000 at 10 s) with fleet.replicas 2, against one local nginx, on this machine. Each agent
# runs the probes placed on it (about 2N/3); for each agent the script reports CPU per probe,
# p99 schedule lag over the window, RSS before and after scrapes, and the size and time of
# one /metrics scrape (plain and gzip'd). Not a test: figures go to bench/README.md by hand.
#
#   bench/fleet.sh [--probes 30000] [--interval 10] [--replicas 2] [--window 60] [--warmup 25]
#                  [--nice N] [--out DIR]
#
# --nice N (N < 0 needs root) runs nginx and each agent in a session of its own at nice level N
# and gives that session's scheduler autogroup the same level, as bench/run.sh does: on a machine
# shared with other work it approximates having the cores to themselves.
# AGENT=path picks the binary (default build/bench/pes-agent if present, else build/default).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PROBES=30000
INTERVAL=10
REPLICAS=2
WINDOW=60
WARMUP=25
NICE=0
OUT=""
while [ $# -gt 0 ]; do
  case "$1" in
    --probes) PROBES="$2"; shift 2 ;;
    --interval) INTERVAL="$2"; shift 2 ;;
    --replicas) REPLICAS="$2"; shift 2 ;;
    --window) WINDOW="$2"; shift 2 ;;
    --warmup) WARMUP="$2"; shift 2 ;;
    --nice) NICE="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    -h | --help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "fleet.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
if [ -z "${AGENT:-}" ]; then
  AGENT="$ROOT/build/bench/pes-agent"
  [ -x "$AGENT" ] || AGENT="$ROOT/build/default/pes-agent"
fi
[ -x "$AGENT" ] || { echo "fleet.sh: no agent binary at $AGENT" >&2; exit 1; }
OUT="${OUT:-$ROOT/build/bench/fleet-$(date +%Y%m%d-%H%M%S)}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
TIMEOUT_MS=$((INTERVAL * 500 < 5000 ? INTERVAL * 500 : 5000))
MEMBERS=(a1 a2 a3)

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

TICKS="$(getconf CLK_TCK)"
cpu_s() {  # utime+stime of PID in seconds
  local stat
  local -a f
  read -r stat <"/proc/$1/stat"
  read -ra f <<<"${stat##*) }"
  awk -v t=$((f[11] + f[12])) -v k="$TICKS" 'BEGIN { printf "%.2f", t / k }'
}
vm_mb() { awk -v k="$2:" '$1 == k { printf "%d", $2 / 1024 }' "/proc/$1/status"; }
free_port() { /usr/bin/python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
runs_total() { awk '$1 ~ /^probe_runs_total[{]/ { s += $NF } END { printf "%.0f", s }' "$1"; }
machine_jiffies() { awk '/^cpu / { b = $2 + $3 + $4 + $7 + $8 + $9; print b, b + $5 + $6; exit }' /proc/stat; }
# p99 of the delta of pes_agent_schedule_lag_seconds between two scrapes (linear in the bucket).
lag_p99() {
  awk 'FNR == 1 { file++ }
    /^pes_agent_schedule_lag_seconds_bucket/ {
      match($0, /le="[^"]*"/); le = substr($0, RSTART + 4, RLENGTH - 5)
      if (file == 1) b[le] = $NF; else { a[le] = $NF; order[n++] = le } }
    END { total = a["+Inf"] - b["+Inf"]; if (total <= 0) { print "nan"; exit }
      rank = 0.99 * total; pl = 0; pc = 0
      for (i = 0; i < n; i++) { le = order[i]; c = a[le] - b[le]
        if (c >= rank) { if (le == "+Inf") { print ">" pl; exit }
          printf "%.3f\n", pl + (le - pl) * (c > pc ? (rank - pc) / (c - pc) : 1); exit }
        if (le != "+Inf") { pl = le; pc = c } } }' "$1" "$2"
}

# boost PID: renice PID and, once it leads its own session, its autogroup.
boost() {
  local pid="$1" i stat
  local -a f
  [ "$NICE" = 0 ] && return 0
  renice -n "$NICE" -p "$pid" >/dev/null 2>&1 || log "warning: renice $pid failed"
  for ((i = 0; i < 250; i++)); do
    read -r stat <"/proc/$pid/stat" 2>/dev/null || return 0
    read -ra f <<<"${stat##*) }"
    if [ "${f[3]}" = "$pid" ]; then
      echo "$NICE" >"/proc/$pid/autogroup" 2>/dev/null || log "warning: autogroup of $pid not set"
      return 0
    fi
    sleep 0.02
  done
}

PIDS=()
cleanup() {
  local p
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  "$ROOT/tests/fixtures/nginx.sh" stop "$OUT/nginx" >/dev/null 2>&1 || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log "starting nginx"
NGINX_ENV="$("$ROOT/tests/fixtures/nginx.sh" start "$OUT/nginx" WORKER_CONNECTIONS=8192 ACCESS_LOG=0 \
  ERROR_LOG_LEVEL=warn OWNER_PID=$$)" || die "nginx did not start"
BASE="http://127.0.0.1:$(sed -n 's/^PORT=//p' <<<"$NGINX_ENV")/ok"
if [ "$NICE" != 0 ]; then
  renice -n "$NICE" -g "$(sed -n 's/^PID=//p' <<<"$NGINX_ENV")" >/dev/null || die "renice of nginx failed"
  boost "$(sed -n 's/^PID=//p' <<<"$NGINX_ENV")"
fi

{
  printf 'global:\n  interval: %ss\n  timeout: %sms\n' "$INTERVAL" "$TIMEOUT_MS"
  printf 'fleet:\n  replicas: %s\n  members:\n' "$REPLICAS"
  for m in "${MEMBERS[@]}"; do printf '    - {name: %s, location: bench}\n' "$m"; done
  printf 'probes:\n'
  awk -v n="$PROBES" -v base="$BASE" 'BEGIN {
    for (i = 1; i <= n; i++) printf "  - name: t%05d\n    type: http\n    http: {url: \"%s?i=%d\"}\n", i, base, i }'
} >"$OUT/agent.yml"
"$AGENT" check-config "$OUT/agent.yml" >/dev/null || die "the generated configuration is invalid"

declare -A PORT PID
for m in "${MEMBERS[@]}"; do
  PORT[$m]="$(free_port)"
  if [ "$NICE" = 0 ]; then
    "$AGENT" --config.file="$OUT/agent.yml" --agent.name="$m" --web.listen-address="127.0.0.1:${PORT[$m]}" \
      --log.level=warn >"$OUT/$m.log" 2>&1 &
  else  # a background subshell is no group leader: setsid does not fork, $! stays the agent
    setsid "$AGENT" --config.file="$OUT/agent.yml" --agent.name="$m" \
      --web.listen-address="127.0.0.1:${PORT[$m]}" --log.level=warn >"$OUT/$m.log" 2>&1 &
  fi
  PID[$m]=$!
  boost "${PID[$m]}"
  PIDS+=("${PID[$m]}")
done
for m in "${MEMBERS[@]}"; do
  for ((i = 0; i < 1200; i++)); do
    curl -fsS --max-time 2 -o /dev/null "http://127.0.0.1:${PORT[$m]}/-/ready" 2>/dev/null && break
    kill -0 "${PID[$m]}" 2>/dev/null || die "$m died: $(tail -3 "$OUT/$m.log")"
    sleep 0.1
  done
done
log "3 agents ready ($PROBES probes, replicas $REPLICAS, interval ${INTERVAL}s); warm-up ${WARMUP}s"
sleep "$WARMUP"

declare -A C0 C1 R0 R1 A0 A1 RSS0
read -r MB0 MT0 < <(machine_jiffies)
for m in "${MEMBERS[@]}"; do
  RSS0[$m]="$(vm_mb "${PID[$m]}" VmRSS)"
  curl -fsS --max-time 120 -o "$OUT/$m.before" "http://127.0.0.1:${PORT[$m]}/metrics"
  C0[$m]="$(cpu_s "${PID[$m]}")" A0[$m]="$EPOCHREALTIME"
done
sleep "$WINDOW"
for m in "${MEMBERS[@]}"; do
  C1[$m]="$(cpu_s "${PID[$m]}")" A1[$m]="$EPOCHREALTIME"
  curl -fsS --max-time 120 -o "$OUT/$m.after" "http://127.0.0.1:${PORT[$m]}/metrics"
done
read -r MB1 MT1 < <(machine_jiffies)
BUSY="$(awk -v b0="$MB0" -v t0="$MT0" -v b1="$MB1" -v t1="$MT1" 'BEGIN { printf "%.0f%%", 100 * (b1 - b0) / (t1 - t0) }')"
LOAD="$(cut -d' ' -f1-3 /proc/loadavg)"

{
  echo "# bench/fleet.sh: $PROBES probes, replicas $REPLICAS, interval ${INTERVAL}s, 3 agents, window ${WINDOW}s, nice $NICE"
  echo
  echo "Agent $("$AGENT" --version), $(date -u +%Y-%m-%dT%H:%M:%SZ), machine busy $BUSY of $(nproc) cores over the window, loadavg $LOAD (shared with other work)."
  echo
  echo "| agent | probes placed | in flight at the end | runs/s | failed runs | CPU (cores) | CPU per probe | p99 schedule lag | RSS before scrapes | RSS after | peak RSS | /metrics | scrape time | gzip'd |"
  echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
} >"$OUT/results.md"
for m in "${MEMBERS[@]}"; do
  placed="$(awk '$1 == "pes_agent_probes_configured" { print $2 }' "$OUT/$m.after")"
  inflight="$(awk '$1 == "pes_agent_probes_in_flight" { print $2 }' "$OUT/$m.after")"
  runs=$(($(runs_total "$OUT/$m.after") - $(runs_total "$OUT/$m.before")))
  fails=$(($(awk '$1 ~ /^probe_runs_total[{].*result="failure"/ { s += $NF } END { printf "%.0f", s }' "$OUT/$m.after") -
    $(awk '$1 ~ /^probe_runs_total[{].*result="failure"/ { s += $NF } END { printf "%.0f", s }' "$OUT/$m.before")))
  lag="$(lag_p99 "$OUT/$m.before" "$OUT/$m.after")"
  t0="$(curl -fsS --max-time 120 -o /dev/null -w '%{time_total}' "http://127.0.0.1:${PORT[$m]}/metrics")"
  gz="$(curl -fsS --max-time 120 -H 'Accept-Encoding: gzip' -o /dev/null -w '%{size_download}' "http://127.0.0.1:${PORT[$m]}/metrics")"
  size=$(($(stat -c %s "$OUT/$m.after") / 1024 / 1024))
  awk -v m="$m" -v placed="$placed" -v inflight="$inflight" -v runs="$runs" -v fails="$fails" -v c0="${C0[$m]}" -v c1="${C1[$m]}" \
    -v a0="${A0[$m]}" -v a1="${A1[$m]}" -v lag="$lag" -v r0="${RSS0[$m]}" -v r1="$(vm_mb "${PID[$m]}" VmRSS)" \
    -v hwm="$(vm_mb "${PID[$m]}" VmHWM)" -v size="$size" -v t0="$t0" -v gz="$gz" 'BEGIN {
      secs = a1 - a0; cores = (c1 - c0) / secs; rate = runs / secs
      printf "| %s | %d | %d | %.0f | %d | %.2f | %.0f µs | %s s | %d MB | %d MB | %d MB | %d MB | %.2f s | %.1f MB |\n",
        m, placed, inflight, rate, fails, cores, (rate > 0 ? 1e6 * cores / rate : 0), lag, r0, r1, hwm, size, t0, gz / 1048576 }' \
    >>"$OUT/results.md"
done
cat "$OUT/results.md"
log "results in $OUT/results.md"
