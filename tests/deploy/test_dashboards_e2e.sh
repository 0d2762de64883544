#!/usr/bin/env bash
# End to end: the built pes-agent probes real local servers, a real Prometheus on loopback
# scrapes it every second with the repository's rule files, and then
#  - every PromQL expression of every dashboard panel (Grafana variables substituted by
#    match-all regexes and fixed ranges) is evaluated through Prometheus' HTTP API and must be
#    valid and return at least one series, except the entries of e2e_allow_empty.txt whose
#    probe type is not part of this run;
#  - every dashboard variable's metric selector returns series;
#  - every rule of alerts/ evaluates without error against the real series;
#  - a deliberately broken target makes PesProbeDown go pending/firing, a healthy one does not,
#    and the dependency marker PesDependencyDown appears for the dependents of the broken target.
# Targets: tests/fixtures/nginx.sh (HTTP and TLS, incl. a certificate that expires soon), a
# closed loopback port, and - for each of the types postgres, ldap, keycloak that the agent
# binary knows - tests/fixtures/postgres.sh, slapd.sh and oidc.sh. Panels of types not in the
# run (jitsi until it has a fixture here) are in e2e_allow_empty.txt, which only applies to
# types absent from the run.
source "$(dirname "$0")/lib.sh"
need prometheus; need curl
cd "$PES_SOURCE_DIR"
AGENT="${PES_AGENT_BINARY:-}"
[ -x "$AGENT" ] || fail "agent binary PES_AGENT_BINARY='$AGENT' is not built"

log "starting nginx (HTTP + TLS) from tests/fixtures/nginx.sh"
# The fixture drops root privileges to an unprivileged user, who must reach its directory.
chmod 755 "$TMP"
declare -A NGX
while IFS='=' read -r k v; do NGX[$k]=$v; done < <(bash tests/fixtures/nginx.sh start "$TMP/nginx" TLS=1)
CLEANUP_HOOKS+=("bash '$PES_SOURCE_DIR/tests/fixtures/nginx.sh' stop '$TMP/nginx' >/dev/null 2>&1")
[ -n "${NGX[URL]:-}" ] && [ -n "${NGX[TLS_URL]:-}" ] || fail "nginx fixture printed no URL/TLS_URL"
curl -fsS -o /dev/null "${NGX[URL]}/ok" || fail "nginx fixture does not serve /ok"

# Probe types this agent binary knows (check-config names unknown types).
type_known() {
  printf 'probes:\n  - {name: t, type: %s, %s: {}}\n' "$1" "$1" > "$TMP/type-$1.yml"
  local out
  out=$("$AGENT" check-config "$TMP/type-$1.yml" 2>&1) || true
  ! grep -q 'unknown probe type' <<<"$out"
}
declare -A PG LDAP KC
extra_probes=""
if type_known postgres; then
  log "starting PostgreSQL from tests/fixtures/postgres.sh"
  while IFS='=' read -r k v; do PG[$k]=$v; done < <(bash tests/fixtures/postgres.sh start "$TMP/pg")
  CLEANUP_HOOKS+=("bash '$PES_SOURCE_DIR/tests/fixtures/postgres.sh' stop '$TMP/pg' >/dev/null 2>&1")
  [ -n "${PG[PORT]:-}" ] || fail "postgres fixture printed no PORT"
  extra_probes+="
  - name: postgresql-db
    service: postgresql
    type: postgres
    postgres: {host: 127.0.0.1, port: ${PG[PORT]}, dbname: \"${PG[DBNAME]}\", user: \"${PG[USER]}\", password: \"${PG[PASSWORD]}\", sslmode: disable}"
fi
if type_known ldap; then
  log "starting slapd from tests/fixtures/slapd.sh"
  while IFS='=' read -r k v; do LDAP[$k]=$v; done < <(bash tests/fixtures/slapd.sh start "$TMP/ldap")
  CLEANUP_HOOKS+=("bash '$PES_SOURCE_DIR/tests/fixtures/slapd.sh' stop '$TMP/ldap' >/dev/null 2>&1")
  [ -n "${LDAP[URL]:-}" ] || fail "slapd fixture printed no URL"
  extra_probes+="
  - name: openldap-dir
    service: openldap
    type: ldap
    ldap: {url: \"${LDAP[URL]}\", bind_dn: \"${LDAP[ADMIN_DN]}\", password: \"${LDAP[ADMIN_PASSWORD]}\", search: {base: \"${LDAP[BASE_DN]}\", filter: \"(objectClass=*)\", scope: sub, min_entries: 1}}"
fi
if type_known keycloak; then
  log "starting the OpenID Connect issuer from tests/fixtures/oidc.sh"
  while IFS='=' read -r k v; do KC[$k]=$v; done < <(bash tests/fixtures/oidc.sh start "$TMP/oidc")
  CLEANUP_HOOKS+=("bash '$PES_SOURCE_DIR/tests/fixtures/oidc.sh' stop '$TMP/oidc' >/dev/null 2>&1")
  [ -n "${KC[URL]:-}" ] || fail "oidc fixture printed no URL"
  extra_probes+="
  - name: keycloak-token
    service: keycloak
    type: keycloak
    keycloak: {url: \"${KC[URL]}\", realm: \"${KC[REALM]}\", client_id: \"${KC[CLIENT_ID]}\", client_secret: \"${KC[CLIENT_SECRET]}\", verify: true}"
fi

closed=$(free_port)   # nothing listens here: connections are refused
agent_port=$(free_port)
prom_port=$(free_port)
services=(nextcloud collabora keycloak moodle gitea nexus jitsi openldap postgresql)

log "writing the agent configuration"
{
  cat <<EOF
global:
  interval: 1s
  timeout: 900ms
  failure_threshold: 1
  success_threshold: 1
  labels: {platform: pes}
probes:
EOF
  for s in "${services[@]}"; do
    deps=""
    case $s in
      nextcloud|moodle) deps="depends_on: [postgresql-broken]" ;;
      gitea) deps="depends_on: [postgresql-broken, keycloak]" ;;
    esac
    cat <<EOF
  - name: $s
    service: $s
    type: http
    $deps
    http: {url: "${NGX[URL]}/ok"}
  - name: $s-broken
    service: $s
    type: tcp
    tcp: {address: "127.0.0.1:$closed"}
EOF
  done
  cat <<EOF
  - name: nextcloud-tls
    service: nextcloud
    type: http
    http: {url: "${NGX[TLS_URL]}/ok", tls: {ca_file: "${NGX[CA_FILE]}"}}
  - name: collabora-tls-soon
    service: collabora
    type: http
    http: {url: "https://localhost:${NGX[SOON_PORT]}/ok", tls: {ca_file: "${NGX[CA_FILE]}"}}
EOF
  printf '%s\n' "$extra_probes"
} > "$TMP/agent.yml"
"$AGENT" check-config "$TMP/agent.yml" || fail "pes-agent check-config rejects the e2e configuration"
types=$("$PY" -c 'import sys,yaml; print(" ".join(sorted({p["type"] for p in yaml.safe_load(open(sys.argv[1]))["probes"]})))' "$TMP/agent.yml")
log "  probe types in this run: $types"

log "starting pes-agent on 127.0.0.1:$agent_port"
"$AGENT" --config.file="$TMP/agent.yml" --web.listen-address="127.0.0.1:$agent_port" >"$TMP/agent.log" 2>&1 &
agent_pid=$!
CLEANUP_HOOKS+=("kill $agent_pid 2>/dev/null; wait $agent_pid 2>/dev/null")
wait_http "http://127.0.0.1:$agent_port/-/ready" 30 || { tail -20 "$TMP/agent.log"; fail "agent not ready"; }

log "starting Prometheus on 127.0.0.1:$prom_port (scrape and rule evaluation every 1s)"
cat > "$TMP/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  scrape_timeout: 900ms
  evaluation_interval: 1s
rule_files:
  - $PES_SOURCE_DIR/alerts/*.rules.yml
scrape_configs:
  - job_name: pes-agent
    static_configs:
      - targets: ["127.0.0.1:$agent_port"]
EOF
prometheus --config.file="$TMP/prometheus.yml" --storage.tsdb.path="$TMP/prom" \
  --web.listen-address="127.0.0.1:$prom_port" >"$TMP/prometheus.log" 2>&1 &
prom_pid=$!
CLEANUP_HOOKS+=("kill $prom_pid 2>/dev/null; wait $prom_pid 2>/dev/null")
wait_http "http://127.0.0.1:$prom_port/-/ready" 60 || { tail -20 "$TMP/prometheus.log"; fail "Prometheus not ready"; }

log "waiting for data, then evaluating every dashboard expression, the variables, rules and alerts"
rc=0
"$PY" tests/deploy/e2e_evaluate.py "$prom_port" "$types" || rc=$?
if [ $rc -ne 0 ]; then
  kill -0 "$agent_pid" 2>/dev/null || echo "--- the agent process has exited (crashed?)"
  echo "--- agent log (tail)"; tail -20 "$TMP/agent.log"
  fail "end-to-end checks failed"
fi
kill -0 "$agent_pid" 2>/dev/null || fail "the agent exited during the run"
log "PASS"
