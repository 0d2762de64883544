#!/usr/bin/env bash
# Soak run (issue 8, "Faults and load"): the built pes-agent probes real local servers (nginx with
# TLS, the service presets and a Jitsi frontend, PostgreSQL, slapd, the OpenID issuer, Prosody,
# coturn; all from tests/fixtures/) with every probe type at a 1 s interval, while each server is
# stopped and started again underneath it several times. After the last restart everything gets
# time to recover, then the agent's open descriptors and RSS are compared with the baseline taken
# after the warm-up. See bench/README.md ("Soak").
#
#   bench/soak.sh [--copies 10] [--interval 1s] [--timeout 1s] [--warmup 25] [--soak 180]
#                 [--restarts 3] [--down 3] [--recover 40] [--fd-tolerance 4]
#                 [--rss-bound-mb 8] [--min-runs 10000] [--out DIR]
#
# --copies N: N copies of each of the 10 probe kinds below (10 → 100 probes, ~100 runs/s).
# --restarts R: each of the 6 servers is restarted R times during the --soak seconds, spread
#   evenly, alternating an orderly stop (the fixture's `stop`: TERM by PID, then KILL) with a crash
#   (KILL of the server's PID, leftovers swept by `stop`); it stays down --down seconds.
# Verdict (exit 0 only if all hold): the agent is alive; the runs (sum of probe_runs_total) reach
# --min-runs; every server started again after each restart; the descriptor floor after recovery
# (/proc/PID/fd) is at most the baseline floor + --fd-tolerance; the median VmRSS after recovery is
# at most the baseline median + --rss-bound-mb; every probe succeeded again during the recovery
# window. Descriptors are compared by their floor (the minimum of 215 counts over ~20 s): runs in
# flight hold sockets for a moment, a leaked descriptor stays.
# A restart that takes longer than its slot (slow starts on a busy machine) overlaps the next one.
# Writes OUT/soak.md (the table), OUT/samples.tsv (a line every 2 s and every measurement sample),
# OUT/restarts.tsv, OUT/agent.log and OUT/agent.yml (default OUT: build/soak/run-DATE).
# AGENT=path runs another binary (default build/default/pes-agent; not built here).
set -euo pipefail
export LC_ALL=C

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
FX="$ROOT/tests/fixtures"
AGENT="${AGENT:-$ROOT/build/default/pes-agent}"
COPIES=10
INTERVAL=1s
TIMEOUT=1s
WARMUP=25
SOAK=180
RESTARTS=3
DOWN=3
RECOVER=40
FD_TOLERANCE=4
RSS_BOUND_MB=8
MIN_RUNS=10000
OUT=""

while [ $# -gt 0 ]; do
  case "$1" in
    --copies) COPIES="$2"; shift 2 ;;
    --interval) INTERVAL="$2"; shift 2 ;;
    --timeout) TIMEOUT="$2"; shift 2 ;;
    --warmup) WARMUP="$2"; shift 2 ;;
    --soak) SOAK="$2"; shift 2 ;;
    --restarts) RESTARTS="$2"; shift 2 ;;
    --down) DOWN="$2"; shift 2 ;;
    --recover) RECOVER="$2"; shift 2 ;;
    --fd-tolerance) FD_TOLERANCE="$2"; shift 2 ;;
    --rss-bound-mb) RSS_BOUND_MB="$2"; shift 2 ;;
    --min-runs) MIN_RUNS="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    -h | --help) sed -n '2,23p' "$0"; exit 0 ;;
    *) echo "soak.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
[ "$RECOVER" -ge 10 ] || { echo "soak.sh: --recover must be at least 10 s" >&2; exit 2; }

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

[ -x "$AGENT" ] || die "no agent binary at $AGENT (build it: cmake --build build/default --target pes-agent)"
command -v curl >/dev/null || die "curl is needed"
OUT="${OUT:-$ROOT/build/soak/run-$(date +%Y%m%d-%H%M%S)}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

# Servers run as an unprivileged user in a temp dir under /tmp (traversable by that user).
WORK="$(mktemp -d /tmp/pes-soak-XXXXXX)"
chmod 755 "$WORK"
SERVERS=(prosody nginx postgres slapd oidc coturn)
declare -A SERVER_OPTS=(
  [nginx]="TLS=1 CONF=$WORK/nginx.conf"
  [postgres]="PASSWORD=soak-postgres-password MAX_CONNECTIONS=60"
  [slapd]=""
  [oidc]="REALM=pes CLIENT_ID=pes-agent"
  [prosody]="DOMAIN=meet.jitsi"
  [coturn]=""
)
agent_pid=""
sampler_pid=""
restart_jobs=()
cleanup() {
  trap - EXIT INT TERM
  local j
  for j in "${restart_jobs[@]}"; do kill "$j" 2>/dev/null || true; done
  for j in "${restart_jobs[@]}"; do wait "$j" 2>/dev/null || true; done
  if [ -n "$sampler_pid" ]; then
    kill "$sampler_pid" 2>/dev/null || true
    wait "$sampler_pid" 2>/dev/null || true
  fi
  if [ -n "$agent_pid" ] && kill -0 "$agent_pid" 2>/dev/null; then
    kill -TERM "$agent_pid" 2>/dev/null || true
    wait "$agent_pid" 2>/dev/null || true
  fi
  local s
  for s in "${SERVERS[@]}"; do "$FX/$s.sh" stop "$WORK/$s" >/dev/null 2>&1 || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# start_server NAME: (re)starts a fixture in its dir (same ports and data as its first start) and
# loads its KEY=VALUE output as NAME_KEY variables. OWNER_PID: a dead soak.sh leaves no server.
start_server() {
  local name="$1" out k v
  # shellcheck disable=SC2086  # the options are KEY=VALUE words
  out="$("$FX/$name.sh" start "$WORK/$name" OWNER_PID=$$ ${SERVER_OPTS[$name]})" ||
    die "$name did not start (log: $WORK/$name/$name.log)"
  while IFS='=' read -r k v; do
    [ -n "$k" ] && printf -v "${name^^}_$k" '%s' "$v"
  done <<<"$out"
}

# ---------------------------------------------------------------------------------------------
# Servers. nginx serves the preset answers and the Jitsi frontend (both snippets in one CONF=),
# proxying BOSH and WebSocket to Prosody, which therefore starts first.
log "starting servers in $WORK"
start_server prosody
{
  sed "s|@PRESETS@|$FX/presets|g" "$FX/presets/nginx.conf"
  sed -e "s|@JITSI@|$FX/jitsi|g" -e "s|@PROSODY_PORT@|$PROSODY_PORT|g" "$FX/jitsi/nginx.conf"
} >"$WORK/nginx.conf"
chmod 644 "$WORK/nginx.conf"
for s in nginx postgres slapd oidc coturn; do start_server "$s"; done

umask 077
mkdir -p "$WORK/secrets"
printf '%s\n' "$POSTGRES_PASSWORD" >"$WORK/secrets/postgres"
printf '%s\n' "$SLAPD_ADMIN_PASSWORD" >"$WORK/secrets/ldap"
printf '%s\n' "$OIDC_CLIENT_SECRET" >"$WORK/secrets/oidc"
printf '%s\n' 'Xk7Qp-3mZrT-9wLcB-4nHvD-2sJfG' >"$WORK/secrets/nextcloud"  # the fixture's test value
printf '%s\n' '3f2b6c8e0d1a4b5c9e7f2a1b0c3d4e5f6a7b8c9d' >"$WORK/secrets/gitea"
umask 022

# ---------------------------------------------------------------------------------------------
# Configuration: COPIES copies of ten probe kinds covering every type.
KINDS=(http https tcp postgres ldap keycloak sso jitsi nextcloud gitea)
H="http://127.0.0.1:$NGINX_PORT"
{
  cat <<YAML
# bench/soak.sh: $COPIES copies of ${#KINDS[@]} probe kinds against real local servers.
global:
  interval: $INTERVAL
  timeout: $TIMEOUT
  failure_threshold: 2
  labels: {platform: soak}
probes:
YAML
  for ((i = 1; i <= COPIES; i++)); do
    cat <<YAML
  - name: http-$i
    type: http
    http: {url: "$H/json?c=$i", expect: {json: {status: ok, healthy: true}}}
  - name: https-$i
    type: http
    http:
      url: https://localhost:$NGINX_TLS_PORT/ok?c=$i
      tls: {ca_file: $NGINX_CA_FILE}
      expect: {status: [200], body_regex: ["^ok"], cert_min_days: 14}
  - name: tcp-$i
    type: tcp
    tcp: {address: "127.0.0.1:$NGINX_PORT", send: "HEAD /ok HTTP/1.0\\r\\n\\r\\n", expect_regex: "^HTTP/1\\\\.1 200"}
  - name: postgres-$i
    type: postgres
    postgres:
      host: 127.0.0.1
      port: $POSTGRES_PORT
      dbname: $POSTGRES_DBNAME
      user: $POSTGRES_USER
      password: "\${file:$WORK/secrets/postgres}"
      sslmode: disable
  - name: ldap-$i
    type: ldap
    ldap:
      url: ldap://127.0.0.1:$SLAPD_PORT
      bind_dn: "$SLAPD_ADMIN_DN"
      password: "\${file:$WORK/secrets/ldap}"
      search: {base: "ou=people,$SLAPD_BASE_DN", filter: "(uid=*)", min_entries: 1}
  - name: keycloak-$i
    service: keycloak
    type: keycloak
    keycloak:
      url: http://127.0.0.1:$OIDC_PORT
      realm: $OIDC_REALM
      client_id: $OIDC_CLIENT_ID
      client_secret: "\${file:$WORK/secrets/oidc}"
      health_url: $OIDC_MANAGEMENT_HEALTH_URL
  - name: sso-$i
    service: nextcloud
    type: http
    depends_on: [keycloak-$i]
    http: {url: "$H/bearer?c=$i", bearer_from: keycloak-$i}
  - name: jitsi-$i
    type: jitsi
    jitsi:
      url: $H/jitsi/
      xmpp_domain: meet.jitsi
      bosh_path: /http-bind
      websocket_path: /xmpp-websocket
      jicofo_health_url: $H/jicofo/about/health
      jvb_health_url: $H/jvb/about/health
      stun: "127.0.0.1:$COTURN_PORT"
  - name: nextcloud-$i
    type: nextcloud
    nextcloud: {url: "$H/nextcloud/healthy", username: pes-monitor, app_password: "\${file:$WORK/secrets/nextcloud}"}
  - name: gitea-$i
    type: gitea
    gitea: {url: "$H/gitea/healthy", token: "\${file:$WORK/secrets/gitea}"}
YAML
  done
} >"$OUT/agent.yml"
"$AGENT" check-config "$OUT/agent.yml" >/dev/null || die "the generated configuration is invalid: $OUT/agent.yml"
PROBES=$((COPIES * ${#KINDS[@]}))

# ---------------------------------------------------------------------------------------------
# The agent.
PORT="$(/usr/bin/python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
M="http://127.0.0.1:$PORT/metrics"
AGENT_BUILT="$(date -u -r "$AGENT" '+%Y-%m-%d %H:%M UTC')"
log "starting $AGENT with $PROBES probes (interval $INTERVAL) on port $PORT"
"$AGENT" --config.file="$OUT/agent.yml" --web.listen-address="127.0.0.1:$PORT" >"$OUT/agent.log" 2>&1 &
agent_pid=$!
for ((i = 0; i < 150; i++)); do
  curl -fsS --max-time 2 -o /dev/null "http://127.0.0.1:$PORT/-/ready" 2>/dev/null && break
  kill -0 "$agent_pid" 2>/dev/null || die "the agent exited at start: $(tail -5 "$OUT/agent.log")"
  sleep 0.1
done

# scrape FILE: /metrics into FILE (empty on failure).
scrape() { curl -fsS --max-time 10 -o "$1" "$M" 2>/dev/null || : >"$1"; }
# count_fds: sets FDN to the number of the agent's open descriptors (no fork).
count_fds() { local f=("/proc/$agent_pid/fd/"*); FDN="${#f[@]}"; }
proc_fds() { count_fds; echo "$FDN"; }
vm_kb() { awk -v k="$1:" '$1 == k { print $2 }' "/proc/$agent_pid/status"; }
metric() { awk -v n="$2" '$1 == n { printf "%.0f\n", $NF; exit }' "$1"; }
runs_total() { awk '/^probe_runs_total\{/ { s += $NF } END { printf "%.0f\n", s }' "$1"; }
# successes FILE: "probe count" per probe (probe_runs_total{result="success"}).
successes() {
  awk '/^probe_runs_total\{/ && /result="success"/ {
         match($0, /probe="[^"]*"/); print substr($0, RSTART + 7, RLENGTH - 8), $NF }' "$1" | sort
}

# The sampler: every 2 s one line of samples.tsv, the phase read from OUT/phase.
echo warmup >"$OUT/phase"
printf 't\tphase\tproc_fds\tvm_rss_kb\tmetrics_open_fds\tmetrics_rss_bytes\truns_total\tin_flight\n' >"$OUT/samples.tsv"
T0="$EPOCHSECONDS"
(
  tmp="$WORK/sampler.metrics"
  while kill -0 "$agent_pid" 2>/dev/null; do
    fds="$(proc_fds)"
    rss="$(vm_kb VmRSS)"
    scrape "$tmp"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' $((EPOCHSECONDS - T0)) "$(cat "$OUT/phase")" "$fds" "$rss" \
      "$(metric "$tmp" process_open_fds)" "$(metric "$tmp" process_resident_memory_bytes)" \
      "$(runs_total "$tmp")" "$(metric "$tmp" pes_agent_probes_in_flight)" >>"$OUT/samples.tsv"
    sleep 2
  done
) &
sampler_pid=$!

# measure PHASE: 15 samples about 1 s apart, then 200 descriptor counts 20 ms apart. Runs in
# flight hold descriptors for a moment, so the count jumps between samples; its floor (minimum) is
# what the agent holds when nothing is in flight, and a leaked descriptor raises it. Sets FDS_MIN,
# FDS_MED, RSS_MED (kB), MFDS_MIN, MRSS_MED (bytes).
measure() {
  local i f=() r=() mf=() mr=() tmp="$WORK/measure.metrics"
  for ((i = 0; i < 15; i++)); do
    f+=("$(proc_fds)")
    r+=("$(vm_kb VmRSS)")
    scrape "$tmp"
    mf+=("$(metric "$tmp" process_open_fds)")
    mr+=("$(metric "$tmp" process_resident_memory_bytes)")
    # Into the series as well (the peaks are taken over it).
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' $((EPOCHSECONDS - T0)) "$1" "${f[i]}" "${r[i]}" "${mf[i]}" \
      "${mr[i]}" "$(runs_total "$tmp")" "$(metric "$tmp" pes_agent_probes_in_flight)" >>"$OUT/samples.tsv"
    sleep 1
  done
  median() { printf '%s\n' "$@" | sort -n | sed -n 8p; }
  least() { printf '%s\n' "$@" | sort -n | head -1; }
  FDS_MIN="$(least "${f[@]}")"
  # No forks in this loop (a fork takes longer than 20 ms on a busy machine): the count is a glob,
  # the pause a read with a timeout on a pipe nobody writes to.
  local pause
  exec {pause}<> <(:)
  for ((i = 0; i < 200; i++)); do
    count_fds
    [ "$FDN" -ge "$FDS_MIN" ] || FDS_MIN="$FDN"
    read -rt 0.02 -u "$pause" || :
  done
  exec {pause}>&-
  FDS_MED="$(median "${f[@]}")"
  RSS_MED="$(median "${r[@]}")"
  MFDS_MIN="$(least "${mf[@]}")"
  MRSS_MED="$(median "${mr[@]}")"
  log "$1: fds ${f[*]} (min $FDS_MIN, median $FDS_MED); VmRSS kB ${r[*]} (median $RSS_MED)"
}

log "warm-up ${WARMUP}s"
sleep "$WARMUP"
measure baseline
B_FDS="$FDS_MIN" B_FMED="$FDS_MED" B_RSS="$RSS_MED" B_MFDS="$MFDS_MIN" B_MRSS="$MRSS_MED"
scrape "$WORK/start.metrics"
RUNS_START="$(runs_total "$WORK/start.metrics")"

# ---------------------------------------------------------------------------------------------
# Soak: restarts spread over SOAK seconds, round-robin over the servers.
echo soak >"$OUT/phase"
TOTAL_RESTARTS=$((RESTARTS * ${#SERVERS[@]}))
SLOT=$((SOAK / (TOTAL_RESTARTS + 1)))
[ "$SLOT" -ge $((DOWN + 1)) ] || die "--soak $SOAK is too short for $TOTAL_RESTARTS restarts of --down $DOWN s"
log "soak ${SOAK}s: $TOTAL_RESTARTS restarts, one every ${SLOT}s, each server down ${DOWN}s"
# restart_one N SERVER: one restart, in the background so that a slow start on a busy machine does
# not hold up the schedule; appends "server how old_pid new_pid down_seconds" to restarts.tsv.
restart_one() {
  local n="$1" s="$2" pid how t_down new
  pid="$(cat "$WORK/$s/pid")"
  if ((n / ${#SERVERS[@]} % 2 == 1)); then
    how=crash
    kill -KILL "$pid" 2>/dev/null || true
  else
    how=stop
    "$FX/$s.sh" stop "$WORK/$s" >/dev/null 2>&1 || true
  fi
  t_down="$EPOCHSECONDS"
  sleep "$DOWN"
  # After a crash, stop sweeps what is left (nginx workers, a stale postmaster lock) by PID.
  "$FX/$s.sh" stop "$WORK/$s" >/dev/null 2>&1 || true
  # shellcheck disable=SC2086  # the options are KEY=VALUE words
  if "$FX/$s.sh" start "$WORK/$s" OWNER_PID=$$ ${SERVER_OPTS[$s]} >/dev/null 2>"$WORK/restart-$n.err"; then
    new="$(cat "$WORK/$s/pid")"
  else
    new=failed
  fi
  printf '%s\t%s\t%s\t%s\t%s\n' "$s" "$how" "$pid" "$new" $((EPOCHSECONDS - t_down)) >>"$OUT/restarts.tsv"
  log "restart $((n + 1))/$TOTAL_RESTARTS: $s ($how, pid $pid -> $new, down $((EPOCHSECONDS - t_down))s)"
}
SOAK_START="$EPOCHSECONDS"
: >"$OUT/restarts.tsv"
for ((n = 0; n < TOTAL_RESTARTS; n++)); do
  due=$((SOAK_START + (n + 1) * SLOT))
  while [ "$EPOCHSECONDS" -lt "$due" ]; do sleep 0.5; done
  kill -0 "$agent_pid" 2>/dev/null || die "the agent died during the soak: $(tail -20 "$OUT/agent.log")"
  s="${SERVERS[$((n % ${#SERVERS[@]}))]}"
  # The previous restart of the same server must be over first.
  for j in "${!restart_jobs[@]}"; do
    if ((j % ${#SERVERS[@]} == n % ${#SERVERS[@]})); then wait "${restart_jobs[$j]}" || true; fi
  done
  restart_one "$n" "$s" &
  restart_jobs[n]=$!
done
for j in "${restart_jobs[@]}"; do wait "$j" || true; done
restarts_done="$(awk -F'\t' '$4 != "failed"' "$OUT/restarts.tsv" | wc -l)"
crashes="$(awk -F'\t' '$2 == "crash" && $4 != "failed"' "$OUT/restarts.tsv" | wc -l)"
restart_failures="$(awk -F'\t' '$4 == "failed" { print $1 }' "$OUT/restarts.tsv" | tr '\n' ' ')"
while [ "$EPOCHSECONDS" -lt $((SOAK_START + SOAK)) ]; do sleep 0.5; done

# ---------------------------------------------------------------------------------------------
# Recovery: 10 s to settle, then every probe must succeed again, then the after-measurement.
echo recover >"$OUT/phase"
log "recovery ${RECOVER}s"
sleep 10
scrape "$WORK/rec1.metrics"
successes "$WORK/rec1.metrics" >"$WORK/rec1.ok"
sleep $((RECOVER - 10))
measure after
A_FDS="$FDS_MIN" A_FMED="$FDS_MED" A_RSS="$RSS_MED" A_MFDS="$MFDS_MIN" A_MRSS="$MRSS_MED"
scrape "$WORK/end.metrics"
successes "$WORK/end.metrics" >"$WORK/rec2.ok"
RUNS_END="$(runs_total "$WORK/end.metrics")"
alive=yes
kill -0 "$agent_pid" 2>/dev/null || alive=no
not_recovered="$(join "$WORK/rec1.ok" "$WORK/rec2.ok" | awk '$3 <= $2 { print $1 }' | tr '\n' ' ')"
recovered_n="$(join "$WORK/rec1.ok" "$WORK/rec2.ok" | awk '$3 > $2' | wc -l)"
failures="$(awk '/^probe_failures_total\{/ { match($0, /reason="[^"]*"/); r[substr($0, RSTART + 8, RLENGTH - 9)] += $NF }
  END { for (k in r) printf "%s %.0f, ", k, r[k] }' "$WORK/end.metrics" | sed 's/, $//')"
kill "$sampler_pid" 2>/dev/null || true
wait "$sampler_pid" 2>/dev/null || true
sampler_pid=""

# Peaks over every sample of the run (the 2 s series and both measurements).
P_FDS="$(awk -F'\t' 'NR > 1 && $3 > m { m = $3 } END { print m + 0 }' "$OUT/samples.tsv")"
P_RSS="$(awk -F'\t' 'NR > 1 && $4 > m { m = $4 } END { print m + 0 }' "$OUT/samples.tsv")"
P_MFDS="$(awk -F'\t' 'NR > 1 && $5 > m { m = $5 } END { print m + 0 }' "$OUT/samples.tsv")"
P_INFLIGHT="$(awk -F'\t' 'NR > 1 && $8 > m { m = $8 } END { print m + 0 }' "$OUT/samples.tsv")"

mb() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
mbb() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'; }
verdict=PASS
reasons=()
[ "$alive" = yes ] || { verdict=FAIL; reasons+=("the agent died"); }
[ "$RUNS_END" -ge "$MIN_RUNS" ] || { verdict=FAIL; reasons+=("only $RUNS_END runs (< $MIN_RUNS)"); }
[ "$A_FDS" -le $((B_FDS + FD_TOLERANCE)) ] || { verdict=FAIL; reasons+=("descriptor floor $B_FDS -> $A_FDS (tolerance $FD_TOLERANCE)"); }
[ "$A_RSS" -le $((B_RSS + RSS_BOUND_MB * 1024)) ] || { verdict=FAIL; reasons+=("RSS grew by $(mb $((A_RSS - B_RSS))) MB (bound $RSS_BOUND_MB MB)"); }
[ -z "$restart_failures" ] || { verdict=FAIL; reasons+=("servers that did not start again: $restart_failures"); }
[ -z "$not_recovered" ] || { verdict=FAIL; reasons+=("no success during the recovery window: $not_recovered"); }

{
  echo "## bench/soak.sh — $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo
  echo "Agent: \`$AGENT\` ($("$AGENT" --version 2>/dev/null | head -1)); source $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$ROOT" diff --quiet HEAD -- agent probes 2>/dev/null || echo ' + uncommitted changes in agent/ or probes/'), binary built $AGENT_BUILT."
  echo "$PROBES probes ($COPIES × ${KINDS[*]}), interval $INTERVAL, timeout $TIMEOUT; warm-up ${WARMUP}s, soak ${SOAK}s, recovery ${RECOVER}s; load average $(cut -d' ' -f1-3 /proc/loadavg)."
  echo
  echo "| | baseline (after warm-up) | peak | after recovery | bound |"
  echo "|---|---|---|---|---|"
  echo "| open fds, /proc/PID/fd: floor (min of 215 samples) | $B_FDS | | $A_FDS | ≤ baseline + $FD_TOLERANCE |"
  echo "| open fds, /proc/PID/fd: median of 15 / peak of all samples | $B_FMED | $P_FDS | $A_FMED | |"
  echo "| process_open_fds (/metrics): floor / peak | $B_MFDS | $P_MFDS | $A_MFDS | |"
  echo "| VmRSS MB (median of 15) | $(mb "$B_RSS") | $(mb "$P_RSS") | $(mb "$A_RSS") | ≤ baseline + $RSS_BOUND_MB MB |"
  echo "| process_resident_memory_bytes MB (/metrics) | $(mbb "$B_MRSS") | | $(mbb "$A_MRSS") | |"
  echo
  echo "| runs (sum of probe_runs_total) | during the soak and recovery | server restarts (crashes) | peak runs in flight | probes that succeeded again after recovery | failed runs by reason |"
  echo "|---|---|---|---|---|---|"
  echo "| $RUNS_END | $((RUNS_END - RUNS_START)) | $restarts_done ($crashes by SIGKILL) | $P_INFLIGHT | $recovered_n / $PROBES | ${failures:-none} |"
  echo
  if [ "$verdict" = PASS ]; then
    echo "Verdict: **PASS**"
  else
    echo "Verdict: **FAIL** — $(IFS=';'; echo "${reasons[*]}")"
  fi
} >"$OUT/soak.md"
cat "$OUT/soak.md"
log "results in $OUT"
[ "$verdict" = PASS ]
