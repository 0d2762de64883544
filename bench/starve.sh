#!/usr/bin/env bash
# Starvation run: one agent with N http probes (interval 10 s, timeout 5 s) against the nginx of
# tests/fixtures/nginx.sh, held to a CPU quota by a cgroup (v2 cpu.max, or v1 cpu.cfs_quota_us)
# once it is ready, so the machine's other load does not decide the result. Prints, every STEP
# seconds, what the loop completed since the previous sample. Not a test: figures go to
# bench/README.md by hand. Needs root (the cgroup).
#
#   bench/starve.sh [--probes 20000] [--quota-ms 10] [--window 120] [--step 15] [--runs-log]
#                   [--out DIR]
#
# --quota-ms: CPU milliseconds per 100 ms period (10 = 0.1 core). --step 0 scrapes only at the
# start and the end of the window (a 20,000-probe scrape takes ~20 s at 0.1 core). --runs-log runs
# the agent at log level debug (one line per run) and reports the longest time in the window
# without a run ending. AGENT=path picks the binary (default build/default/pes-agent).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PROBES=20000
QUOTA_MS=10
WINDOW=120
STEP=15
LEVEL=warn
OUT=""
while [ $# -gt 0 ]; do
  case "$1" in
    --probes) PROBES="$2"; shift 2 ;;
    --quota-ms) QUOTA_MS="$2"; shift 2 ;;
    --window) WINDOW="$2"; shift 2 ;;
    --step) STEP="$2"; shift 2 ;;
    --runs-log) LEVEL=debug; shift ;;
    --out) OUT="$2"; shift 2 ;;
    -h | --help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "starve.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
AGENT="${AGENT:-$ROOT/build/default/pes-agent}"
[ -x "$AGENT" ] || { echo "starve.sh: no agent binary at $AGENT" >&2; exit 1; }
OUT="${OUT:-$ROOT/build/bench/starve-$(date +%Y%m%d-%H%M%S)}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# The cgroup: v2 if mounted as such, else v1's cpu controller.
if [ -f /sys/fs/cgroup/cgroup.controllers ]; then
  CG=/sys/fs/cgroup/pes-starve-$$
  mkdir "$CG"
  echo "$((QUOTA_MS * 1000)) 100000" >"$CG/cpu.max"
else
  CG=/sys/fs/cgroup/cpu/pes-starve-$$
  mkdir "$CG"
  echo 100000 >"$CG/cpu.cfs_period_us"
  echo "$((QUOTA_MS * 1000))" >"$CG/cpu.cfs_quota_us"
fi

AGENT_PID=""
cleanup() {
  [ -n "$AGENT_PID" ] && kill -TERM "$AGENT_PID" 2>/dev/null && wait "$AGENT_PID" 2>/dev/null
  "$ROOT/tests/fixtures/nginx.sh" stop "$OUT/nginx" >/dev/null 2>&1 || true
  rmdir "$CG" 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

NGINX_ENV="$("$ROOT/tests/fixtures/nginx.sh" start "$OUT/nginx" WORKER_CONNECTIONS=8192 ACCESS_LOG=0 \
  ERROR_LOG_LEVEL=warn OWNER_PID=$$)" || die "nginx did not start"
BASE="http://127.0.0.1:$(sed -n 's/^PORT=//p' <<<"$NGINX_ENV")/ok"
{
  printf 'global:\n  interval: 10s\n  timeout: 5000ms\nprobes:\n'
  awk -v n="$PROBES" -v base="$BASE" 'BEGIN {
    for (i = 1; i <= n; i++) printf "  - name: t%05d\n    type: http\n    http: {url: \"%s?i=%d\"}\n", i, base, i }'
} >"$OUT/agent.yml"
PORT="$(/usr/bin/python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
"$AGENT" --config.file="$OUT/agent.yml" --web.listen-address="127.0.0.1:$PORT" --log.level="$LEVEL" \
  >"$OUT/agent.log" 2>&1 &
AGENT_PID=$!
for ((i = 0; i < 1200; i++)); do
  curl -fsS --max-time 2 -o /dev/null "http://127.0.0.1:$PORT/-/ready" 2>/dev/null && break
  kill -0 "$AGENT_PID" 2>/dev/null || die "agent died: $(tail -3 "$OUT/agent.log")"
  sleep 0.1
done
echo "$AGENT_PID" >"$CG/cgroup.procs"
log "agent $AGENT_PID ready with $PROBES probes, held to $QUOTA_MS ms of CPU per 100 ms; pid in $OUT/pid"
echo "$AGENT_PID" >"$OUT/pid"

# One line per sample: in flight, runs (ok/failed), lag observations, all as deltas.
sample() {
  curl -fsS --max-time 300 -o "$OUT/m" "http://127.0.0.1:$PORT/metrics" || { echo "scrape failed"; return; }
  awk '$1 == "pes_agent_probes_in_flight" { f = $2 }
    $1 ~ /^probe_runs_total[{].*result="success"/ { ok += $NF }
    $1 ~ /^probe_runs_total[{].*result="failure"/ { bad += $NF }
    $1 == "pes_agent_schedule_lag_seconds_count" { lag = $2 }
    END { printf "%d %.0f %.0f %.0f\n", f, ok, bad, lag }' "$OUT/m"
}
read -r F0 OK0 BAD0 LAG0 < <(sample)
T0=$EPOCHSECONDS
printf '| t (s) | in flight | ok runs | failed runs | lag samples |\n|---|---|---|---|---|\n' | tee "$OUT/results.md"
while [ $((EPOCHSECONDS - T0)) -lt "$WINDOW" ]; do
  sleep "$([ "$STEP" = 0 ] && echo $((WINDOW - (EPOCHSECONDS - T0))) || echo "$STEP")"
  read -r F OK BAD LAG < <(sample)
  printf '| %d | %d | %d | %d | %d |\n' $((EPOCHSECONDS - T0)) "$F" $((OK - OK0)) $((BAD - BAD0)) \
    $((LAG - LAG0)) | tee -a "$OUT/results.md"
  OK0=$OK BAD0=$BAD LAG0=$LAG
done
if [ "$LEVEL" = debug ]; then
  # Lines "2026-12-02T02:03:04.123+0000 debug probe t00001 run: failure in 5.030s reason=timeout".
  awk -v from="$(date -u -d "@$T0" +%H:%M:%S)" '$2 == "debug" && $5 == "run:" {
      t = substr($1, 12, 12); if (t < from) next
      split(t, h, ":"); s = h[1] * 3600 + h[2] * 60 + h[3]
      if (n++ && s - last > gap) { gap = s - last; at = t }
      last = s; r = $6; if (match($0, / reason=[a-z_]+/)) r = r " " substr($0, RSTART + 1, RLENGTH - 1)
      runs[r]++ }
    END { printf "\nruns ended in the window: %d; longest time without one: %.1f s (before %s)\n", n, gap, at
      for (r in runs) printf "  %s: %d\n", r, runs[r] }' "$OUT/agent.log" | tee -a "$OUT/results.md"
fi
