#!/usr/bin/env bash
# Installs everything, builds the agent, starts real local services on loopback (nginx with TLS,
# PostgreSQL, OpenLDAP, an OpenID Connect issuer shaped like Keycloak, Prosody, coturn), writes a
# demo configuration that probes them all, and runs the agent in the foreground. Ctrl-C stops
# the agent and every service. Options: PORT=9469 (the agent's port).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
bash scripts/install-deps.sh
cmake --preset default >/dev/null
cmake --build --preset default -j"$(nproc)" --target pes-agent

DEMO="$(mktemp -d /tmp/pes-demo-XXXXXX)"
chmod 755 "$DEMO"
FX="$ROOT/tests/fixtures"
started=()
cleanup() {
  trap - EXIT INT TERM
  echo "demo: stopping services"
  for s in "${started[@]}"; do "$FX/$s.sh" stop "$DEMO/$s" >/dev/null 2>&1 || true; done
  rm -rf "$DEMO"
}
trap cleanup EXIT INT TERM

# start NAME [K=V...]: starts a fixture and loads its KEY=VALUE lines as NAME_KEY variables.
start() {
  local name="$1"
  shift
  echo "demo: starting $name" >&2
  local out
  out="$("$FX/$name.sh" start "$DEMO/$name" "$@")"
  started+=("$name")
  while IFS='=' read -r k v; do
    [ -n "$k" ] && printf -v "${name^^}_$k" '%s' "$v"
  done <<<"$out"
}

start nginx TLS=1
# The Jitsi web frontend's config.js, as jitsi-meet serves it, naming the XMPP domain.
printf "var config = {\n    hosts: {\n        domain: 'meet.jitsi',\n        muc: 'muc.meet.jitsi'\n    },\n    bosh: '/http-bind'\n};\n" >"$DEMO/nginx/www/config.js"
chmod 644 "$DEMO/nginx/www/config.js"
start postgres PASSWORD=demo-postgres-password
start slapd
start oidc REALM=pes CLIENT_ID=pes-agent
start prosody DOMAIN=meet.jitsi
start coturn

# Secrets go to files, referenced with ${file:}, as in production.
umask 077
mkdir -p "$DEMO/secrets"
printf '%s\n' "$POSTGRES_PASSWORD" >"$DEMO/secrets/postgres"
printf '%s\n' "$SLAPD_ADMIN_PASSWORD" >"$DEMO/secrets/ldap"
printf '%s\n' "$OIDC_CLIENT_SECRET" >"$DEMO/secrets/oidc"
umask 022

cat >"$DEMO/agent.yml" <<YAML
# pes-agent demo: every probe type against real local services.
global:
  interval: 10s
  timeout: 5s
  failure_threshold: 2
  labels: {platform: demo}
probes:
  - name: postgres
    type: postgres
    postgres:
      host: 127.0.0.1
      port: $POSTGRES_PORT
      dbname: $POSTGRES_DBNAME
      user: $POSTGRES_USER
      password: "\${file:$DEMO/secrets/postgres}"
      sslmode: disable
      max_connections_ratio: 0.8
  - name: ldap
    type: ldap
    ldap:
      url: ldap://127.0.0.1:$SLAPD_PORT
      bind_dn: "$SLAPD_ADMIN_DN"
      password: "\${file:$DEMO/secrets/ldap}"
      search: {base: "ou=people,$SLAPD_BASE_DN", filter: "(uid=*)", min_entries: 1}
  - name: keycloak-token
    service: keycloak
    type: keycloak
    depends_on: [postgres, ldap]
    keycloak:
      url: http://127.0.0.1:$OIDC_PORT
      realm: $OIDC_REALM
      client_id: $OIDC_CLIENT_ID
      client_secret: "\${file:$DEMO/secrets/oidc}"
  - name: web-https
    service: nextcloud
    type: http
    depends_on: [postgres, keycloak-token]
    http:
      url: https://localhost:$NGINX_TLS_PORT/ok
      tls: {ca_file: $NGINX_CA_FILE}
      expect: {status: [200], body_regex: ["^ok"], cert_min_days: 14}
  - name: sso-chain
    service: nextcloud
    type: http
    depends_on: [keycloak-token]
    http:
      url: http://127.0.0.1:$NGINX_PORT/bearer
      bearer_from: keycloak-token
  - name: web-json
    service: gitea
    type: http
    http:
      url: http://127.0.0.1:$NGINX_PORT/json
      expect: {json: {status: ok, healthy: true}}
  - name: expired-cert
    service: nexus
    type: http
    http:
      url: https://localhost:$NGINX_EXPIRED_PORT/ok
      tls: {ca_file: $NGINX_CA_FILE}
  - name: jitsi
    type: jitsi
    jitsi:
      url: http://127.0.0.1:$NGINX_PORT/
      xmpp_domain: $PROSODY_DOMAIN
      bosh_path: http://127.0.0.1:$PROSODY_PORT$PROSODY_BOSH_PATH
      stun: 127.0.0.1:$COTURN_PORT
  - name: postgres-tcp
    service: postgres
    type: tcp
    tcp: {address: "127.0.0.1:$POSTGRES_PORT"}
YAML

PORT="${PORT:-9469}"
BIN="$ROOT/build/default/pes-agent"
"$BIN" check-config "$DEMO/agent.yml"
echo
echo "=============================================================="
echo " pes-agent demo is starting on port $PORT"
echo "   metrics:     http://127.0.0.1:$PORT/metrics"
echo "   status page: http://127.0.0.1:$PORT/"
echo "   status JSON: http://127.0.0.1:$PORT/api/v1/status"
echo "   config:      $DEMO/agent.yml"
echo " (the 'expired-cert' probe fails on purpose; Ctrl-C stops everything)"
echo "=============================================================="
"$BIN" --config.file="$DEMO/agent.yml" --web.listen-address="127.0.0.1:$PORT" &
agent=$!
trap 'kill -TERM $agent 2>/dev/null; wait $agent 2>/dev/null; cleanup' EXIT INT TERM
wait $agent
