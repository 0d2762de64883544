#!/usr/bin/env bash
# The compose deployment (compose/), checked without a Docker engine:
#  - `docker-compose config -q` (Debian's docker-compose) accepts docker-compose.yml and
#    docker-compose.monitoring.yml with .env.example and the secrets gen-secrets.sh creates;
#  - the resolved configuration has every seed and monitoring service, images pinned by version,
#    a health check, the network pes_network, named volumes, no secret values in the
#    environment, every used secret defined and created;
#  - the monitoring services are identical in both files, and the monitoring file holds only them;
#  - Prometheus' configuration passes `promtool check config` with the repository's rule files;
#  - compose/agent.yml uses only the probe types and fields of CONTRACT.md section 3 (and, when
#    the agent is built, passes `pes-agent check-config`);
#  - the Dockerfile is multi-stage on Debian 12, builds with the project's scripts, runs as a
#    non-root user with a HEALTHCHECK on /-/healthy, and its runtime package list resolves.
source "$(dirname "$0")/lib.sh"
need docker-compose; need promtool; need openssl
cd "$PES_SOURCE_DIR"

log "preparing a copy of compose/ with .env from .env.example and generated secrets"
mkdir -p "$TMP/repo"
cp -r compose alerts dashboards "$TMP/repo/"
rm -rf "$TMP/repo/compose/secrets" "$TMP/repo/compose/.env"
mkdir -p "$TMP/repo/scripts" && cp scripts/install-deps.sh scripts/install-build-deps.sh "$TMP/repo/scripts/"
cp "$TMP/repo/compose/.env.example" "$TMP/repo/compose/.env"
bash "$TMP/repo/compose/gen-secrets.sh" >/dev/null
[ "$(stat -c %a "$TMP/repo/compose/secrets")" = 700 ] || fail "gen-secrets.sh must make secrets/ private (0700)"
for f in "$TMP"/repo/compose/secrets/*; do
  [ -s "$f" ] || fail "gen-secrets.sh left $f empty"
done
first=$(cat "$TMP/repo/compose/secrets/postgres_password")
bash "$TMP/repo/compose/gen-secrets.sh" >/dev/null
[ "$first" = "$(cat "$TMP/repo/compose/secrets/postgres_password")" ] || fail "gen-secrets.sh overwrote an existing secret"

cd "$TMP/repo/compose"
for f in docker-compose.yml docker-compose.monitoring.yml; do
  log "docker-compose -f $f config -q"
  docker-compose -f "$f" config -q || fail "docker-compose rejects $f"
  docker-compose -f "$f" config > "$TMP/$f.resolved" 2>"$TMP/$f.err" || fail "docker-compose config $f: $(cat "$TMP/$f.err")"
done

log "checking the resolved configurations"
"$PY" - "$TMP" <<'PYEOF'
import os, re, sys, yaml
tmp = sys.argv[1]
full = yaml.safe_load(open(f"{tmp}/docker-compose.yml.resolved"))
mon = yaml.safe_load(open(f"{tmp}/docker-compose.monitoring.yml.resolved"))
errors = []
seed = ["postgres", "openldap", "keycloak", "nextcloud", "collabora", "moodle", "gitea", "nexus",
        "jitsi-web", "jitsi-prosody", "jitsi-jicofo", "jitsi-jvb"]
monitoring = ["pes-agent", "prometheus", "alertmanager", "grafana"]
stateful = {"postgres", "openldap", "nextcloud", "moodle", "gitea", "nexus", "prometheus",
            "alertmanager", "grafana"}
gen = open("gen-secrets.sh").read()

def norm_volumes(c):
    """docker-compose 1.29 prints volumes as SOURCE:TARGET[:MODE]; newer ones as mappings."""
    out = []
    for v in c.get("volumes", []) or []:
        if isinstance(v, str):
            parts = v.split(":")
            src, tgt = parts[0], parts[1] if len(parts) > 1 else parts[0]
            v = {"type": "bind" if src.startswith(("/", ".")) else "volume", "source": src, "target": tgt}
        out.append(v)
    c["volumes"] = out

def check(cfg, name, want_services):
    svcs = cfg.get("services", {})
    for c in svcs.values():
        norm_volumes(c)
    missing = [s for s in want_services if s not in svcs]
    if missing:
        errors.append(f"{name}: services missing: {missing}")
    extra = [s for s in svcs if s not in want_services]
    if extra:
        errors.append(f"{name}: unexpected services: {extra}")
    defined_secrets = cfg.get("secrets", {})
    for s, c in svcs.items():
        w = f"{name}: {s}"
        img = c.get("image", "")
        m = re.fullmatch(r"[\w./-]+:([\w.-]+)", img)
        if not m or m.group(1) in ("latest", "stable", "main", "master", "edge"):
            errors.append(f"{w}: image {img!r} is not pinned to a version")
        if not c.get("healthcheck", {}).get("test"):
            errors.append(f"{w}: no healthcheck")
        if "pes_network" not in (c.get("networks") or {}):
            errors.append(f"{w}: not on pes_network")
        if s in stateful:
            named = [v for v in c.get("volumes", []) if v.get("type") == "volume"]
            if not named:
                errors.append(f"{w}: stateful service without a named volume")
        for k, v in (c.get("environment") or {}).items():
            if re.search(r"PASSWORD|SECRET|TOKEN|PASSWD", k, re.I) and not re.search(r"_FILE$", k):
                errors.append(f"{w}: environment {k} carries a secret value; use a compose secret")
        for sec in c.get("secrets", []) or []:
            sname = sec["source"] if isinstance(sec, dict) else sec
            if sname not in defined_secrets:
                errors.append(f"{w}: secret {sname} is not defined")
            elif not os.path.isfile(defined_secrets[sname]["file"]):
                errors.append(f"{w}: secret file {defined_secrets[sname]['file']} missing")
            if sname not in gen:
                errors.append(f"{w}: secret {sname} is not created by gen-secrets.sh")
        for v in c.get("volumes", []) or []:
            if v.get("type") == "bind" and not os.path.exists(v["source"]):
                errors.append(f"{w}: bind mount source {v['source']} does not exist")
    return svcs

fs = check(full, "docker-compose.yml", seed + monitoring)
ms = check(mon, "docker-compose.monitoring.yml", monitoring)
if full.get("networks", {}).get("pes_network", {}).get("name") != "pes_network":
    errors.append("docker-compose.yml: network pes_network must be named pes_network")
if not mon.get("networks", {}).get("pes_network", {}).get("external"):
    errors.append("docker-compose.monitoring.yml: pes_network must be external (the platform's)")
for s in monitoring:
    if s in fs and s in ms and fs[s] != ms[s]:
        errors.append(f"service {s} differs between docker-compose.yml and docker-compose.monitoring.yml")
agent = fs.get("pes-agent", {})
if agent.get("build", {}).get("dockerfile") != "compose/Dockerfile":
    errors.append("pes-agent: must build from compose/Dockerfile")
if not any(v.get("target") == "/etc/pes-agent/agent.yml" and v["source"].endswith("compose/agent.yml")
           for v in agent.get("volumes", [])):
    errors.append("pes-agent: compose/agent.yml is not mounted as /etc/pes-agent/agent.yml")
prom = fs.get("prometheus", {})
if not any(v.get("target") == "/etc/prometheus/rules" and v["source"].endswith("/alerts")
           for v in prom.get("volumes", [])):
    errors.append("prometheus: alerts/ is not mounted as /etc/prometheus/rules")
graf = fs.get("grafana", {})
if not any(v["source"].endswith("/dashboards") and v.get("target") == "/var/lib/grafana/dashboards/pes"
           for v in graf.get("volumes", [])):
    errors.append("grafana: dashboards/ is not mounted where the provisioning reads them")
prov = yaml.safe_load(open("grafana/provisioning/dashboards/pes.yml"))
if prov["providers"][0]["options"]["path"] != "/var/lib/grafana/dashboards/pes":
    errors.append("grafana provisioning path does not match the dashboards mount")
am = fs.get("alertmanager", {})
if not any(v["source"].endswith("alerts/alertmanager.yml") for v in am.get("volumes", [])):
    errors.append("alertmanager: alerts/alertmanager.yml is not mounted")
for e in errors:
    print("  ERROR:", e)
if not errors:
    print(f"  {len(fs)} services in docker-compose.yml, {len(ms)} in docker-compose.monitoring.yml")
sys.exit(1 if errors else 0)
PYEOF
cd "$PES_SOURCE_DIR"

log "promtool check config compose/prometheus/prometheus.yml (rule files from alerts/)"
sed "s#/etc/prometheus/rules/#$PES_SOURCE_DIR/alerts/#" compose/prometheus/prometheus.yml > "$TMP/prometheus.yml"
grep -q "$PES_SOURCE_DIR/alerts/\*.rules.yml" "$TMP/prometheus.yml" || fail "rule_files path not rewritten"
out=$(promtool check config "$TMP/prometheus.yml" 2>&1) || { echo "$out"; fail "promtool check config failed"; }
grep -q "rules found" <<<"$out" || fail "promtool loaded no rules: $out"
log "  $(grep -c 'rules found' <<<"$out") rule files loaded"

log "checking compose/agent.yml against the configuration schema of CONTRACT.md section 3"
"$PY" - compose/agent.yml <<'PYEOF'
import re, sys, yaml
cfg = yaml.safe_load(open(sys.argv[1]))
tls = {"ca_file", "cert_file", "key_file", "server_name", "insecure_skip_verify"}
http = {"url", "method", "headers", "body", "follow_redirects", "max_body_bytes", "tls",
        "bearer_from", "basic_auth", "expect"}
schema = {
    "http": (http, {"url"}),
    "tcp": ({"address", "tls", "send", "expect_regex"}, {"address"}),
    "keycloak": ({"url", "realm", "client_id", "client_secret", "grant", "username", "password",
                  "scope", "audience", "verify", "health_url", "tls"}, {"url", "realm"}),
    "postgres": ({"host", "port", "dbname", "user", "password", "sslmode", "query",
                  "max_connections_ratio"}, set()),
    "ldap": ({"url", "start_tls", "bind_dn", "password", "search", "tls"}, {"url"}),
    "jitsi": ({"url", "xmpp_domain", "bosh_path", "websocket_path", "jicofo_health_url",
               "jvb_health_url", "stun", "tls"}, {"url"}),
}
for preset in ("nextcloud", "collabora", "gitea", "nexus", "moodle"):
    schema[preset] = ({"url"}, {"url"})
errors = []
g = cfg.get("global", {})
unknown = set(g) - {"interval", "timeout", "failure_threshold", "success_threshold", "labels"}
if unknown:
    errors.append(f"global: unknown keys {sorted(unknown)}")
dur = re.compile(r"^(\d+(ms|s|m|h|d))+$")
def secs(d):
    return sum(int(n) * {"ms": .001, "s": 1, "m": 60, "h": 3600, "d": 86400}[u]
               for n, u in re.findall(r"(\d+)(ms|s|m|h|d)", d))
names = [p["name"] for p in cfg["probes"]]
if len(names) != len(set(names)):
    errors.append("duplicate probe names")
services = set()
for p in cfg["probes"]:
    w = f"probe {p.get('name')}"
    if not re.fullmatch(r"[a-z0-9_-]+", p.get("name", "")):
        errors.append(f"{w}: bad name")
    t = p.get("type")
    if t not in schema:
        errors.append(f"{w}: unknown type {t}")
        continue
    allowed = {"name", "service", "type", "interval", "timeout", "failure_threshold",
               "success_threshold", "depends_on", t}
    if set(p) - allowed:
        errors.append(f"{w}: unknown keys {sorted(set(p) - allowed)}")
    fields, required = schema[t]
    sec = p.get(t) or {}
    if set(sec) - fields:
        errors.append(f"{w}: unknown {t} fields {sorted(set(sec) - fields)}")
    if required - set(sec):
        errors.append(f"{w}: missing required {t} fields {sorted(required - set(sec))}")
    for d in p.get("depends_on", []):
        if d not in names:
            errors.append(f"{w}: depends_on {d} names no probe")
    iv, to = p.get("interval", g.get("interval", "30s")), p.get("timeout", g.get("timeout", "10s"))
    if not dur.match(iv) or not dur.match(to) or secs(to) > secs(iv):
        errors.append(f"{w}: bad interval/timeout {iv}/{to}")
    for k, v in sec.items():
        if isinstance(v, str) and re.search(r"password|secret", k) and not v.startswith("${file:"):
            errors.append(f"{w}: {k} must come from a ${{file:}} secret")
    services.add(p.get("service", p["name"]))
seed = {"nextcloud", "collabora", "keycloak", "moodle", "gitea", "nexus", "jitsi", "openldap",
        "postgresql"}
if seed - services:
    errors.append(f"no probe for seed service(s) {sorted(seed - services)}")
for e in errors:
    print("  ERROR:", e)
if not errors:
    print(f"  {len(names)} probes covering the nine seed services")
sys.exit(1 if errors else 0)
PYEOF

if [ -x "${PES_AGENT_BINARY:-}" ]; then
  log "pes-agent check-config on compose/agent.yml (secrets pointed at temp files)"
  mkdir -p "$TMP/secrets"
  for s in pes_monitor_db_password ldap_admin_password pes_agent_client_secret; do echo dummy > "$TMP/secrets/$s"; done
  sed "s#/run/secrets/#$TMP/secrets/#g" compose/agent.yml > "$TMP/agent.yml"
  "$PES_AGENT_BINARY" check-config "$TMP/agent.yml" || fail "pes-agent check-config rejects compose/agent.yml"
else
  log "(agent binary not built: the schema check above stands in for pes-agent check-config)"
fi

log "checking compose/Dockerfile"
df=compose/Dockerfile
froms=$(grep -cE '^FROM ' "$df")
[ "$froms" -ge 2 ] || fail "Dockerfile is not multi-stage"
grep -qE '^ARG DEBIAN_IMAGE=debian:12\.[0-9]+-slim$' "$df" || fail "base image is not a pinned Debian 12 slim"
grep -qE '^FROM \$\{DEBIAN_IMAGE\} AS build' "$df" || fail "build stage is not on the Debian 12 base"
[ "$(grep -E '^FROM ' "$df" | tail -n1)" = 'FROM ${DEBIAN_IMAGE}' ] || fail "runtime stage is not on the Debian 12 slim base"
grep -q 'scripts/install-build-deps.sh' "$df" || fail "build stage does not use scripts/install-build-deps.sh"
if grep -q 'scripts/install-deps.sh' "$df"; then fail "build stage installs the test servers (scripts/install-deps.sh)"; fi
grep -q 'cmake --preset release' "$df" || fail "build stage does not use the release preset"
grep -qE '^USER [1-9][0-9]*:[1-9][0-9]*$' "$df" || fail "runtime does not run as a numeric non-root user"
grep -A2 '^HEALTHCHECK ' "$df" | grep -q '/-/healthy' || fail "no HEALTHCHECK on /-/healthy"
grep -qE '^ENTRYPOINT \["/usr/local/bin/pes-agent"\]' "$df" || fail "entrypoint is not the agent"
# Nothing but the packages of the binary's libraries (and CA certificates) in the runtime stage.
runtime=$(sed -n '/^FROM \${DEBIAN_IMAGE}$/,$p' "$df")
grep -q 'runtime-packages.txt' <<<"$runtime" || fail "runtime stage does not install the computed package list"
if grep -qE 'install-deps|build-essential|cmake|-dev\b' <<<"$runtime"; then fail "runtime stage installs build tools"; fi

bin="${PES_AGENT_BINARY:-}"
if [ -x "$bin" ]; then
  log "runtime-packages.sh on the built agent $bin"
  pkgs=$(bash compose/runtime-packages.sh "$bin") || fail "runtime-packages.sh failed on $bin"
  for want in libcurl4 libpq5; do grep -qx "$want" <<<"$pkgs" || fail "runtime packages lack $want: $pkgs"; done
else
  bin=/usr/bin/curl
  log "runtime-packages.sh on $bin (agent not built yet)"
  pkgs=$(bash compose/runtime-packages.sh "$bin") || fail "runtime-packages.sh failed on $bin"
  grep -qx libcurl4 <<<"$pkgs" || fail "runtime packages of curl lack libcurl4: $pkgs"
fi
if grep -q -- '-dev$' <<<"$pkgs"; then fail "runtime packages include a -dev package: $pkgs"; fi
log "  $(wc -l <<<"$pkgs") runtime packages: $(tr '\n' ' ' <<<"$pkgs")"
log "PASS"
