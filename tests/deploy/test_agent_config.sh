#!/usr/bin/env bash
# compose/agent.yml, the agent's configuration for the seed platform:
#  - `pes-agent check-config` accepts it as shipped and with every optional "#+" credential line
#    enabled. Secrets are read from /run/secrets/... in the container; here every
#    ${file:/run/secrets/NAME} is pointed at a dummy file in a temp dir (the file is copied with
#    the path rewritten, so the shipped file needs no override mechanism);
#  - it probes all nine seed services with the type made for each, at the hostnames and ports
#    the services have on pes_network (docker-compose.yml service names and container ports);
#  - its depends_on edges mirror the platform's real dependencies;
#  - every secret it reads (enabled lines) is mounted into the pes-agent service in both compose
#    files and created by gen-secrets.sh; the optional ones are not yet mounted anywhere.
source "$(dirname "$0")/lib.sh"
cd "$PES_SOURCE_DIR"
AGENT="${PES_AGENT_BINARY:-}"
[ -x "$AGENT" ] || fail "the agent binary is needed (PES_AGENT_BINARY=$AGENT); build the pes-agent target"
CFG=compose/agent.yml

# Rewrites ${file:/run/secrets/NAME} to $TMP/secrets/NAME and creates each such file.
with_dummy_secrets() {
  local src="$1" dst="$2" name
  mkdir -p "$TMP/secrets"
  for name in $(grep -o '\${file:/run/secrets/[A-Za-z0-9_.-]*}' "$src" | sed 's#.*/##; s#}##' | sort -u); do
    printf 'dummy-%s\n' "$name" >"$TMP/secrets/$name"
  done
  sed "s#\${file:/run/secrets/#\${file:$TMP/secrets/#g" "$src" >"$dst"
}

log "pes-agent check-config $CFG (secrets pointed at dummy files)"
with_dummy_secrets "$CFG" "$TMP/agent.yml"
out=$("$AGENT" check-config "$TMP/agent.yml" 2>&1) || { echo "$out"; fail "pes-agent check-config rejects $CFG"; }
log "  $out"

log "the same with every optional credential line (#+) enabled"
sed 's/^\([[:space:]]*\)#+ /\1/' "$CFG" >"$TMP/full.src.yml"
grep -q '^[[:space:]]*#+' "$TMP/full.src.yml" && fail "a #+ line is not of the form '#+ key: value'"
[ "$(grep -c '^[[:space:]]*#+ ' "$CFG")" -ge 4 ] || fail "expected optional credential lines (#+) for the presets"
with_dummy_secrets "$TMP/full.src.yml" "$TMP/full.yml"
out=$("$AGENT" check-config "$TMP/full.yml" 2>&1) || { echo "$out"; fail "the optional credential lines do not validate"; }
log "  $out"

log "services, types, hosts and dependencies"
"$PY" - "$CFG" "$TMP/full.src.yml" compose/docker-compose.yml compose/docker-compose.monitoring.yml \
  compose/gen-secrets.sh <<'PYEOF'
import re, sys, urllib.parse, yaml
cfg_path, full_path, compose_path, monitoring_path, gen_path = sys.argv[1:6]
cfg = yaml.safe_load(open(cfg_path))
full = yaml.safe_load(open(full_path))
compose = yaml.safe_load(open(compose_path))
monitoring = yaml.safe_load(open(monitoring_path))
gen = open(gen_path).read()
errors = []
probes = {p["name"]: p for p in cfg["probes"]}

# The nine seed services and the probe type made for each.
want = {"postgresql": "postgres", "openldap": "ldap", "keycloak": "keycloak", "nextcloud": "nextcloud",
        "collabora": "collabora", "moodle": "moodle", "gitea": "gitea", "nexus": "nexus", "jitsi": "jitsi"}
for service, typ in want.items():
    if not any(p.get("service", p["name"]) == service and p["type"] == typ for p in probes.values()):
        errors.append(f"no probe of type {typ} for the seed service {service}")

# Hosts and ports on pes_network: compose service names (or their aliases) and container ports.
services = compose["services"]
aliases = {}
for name, svc in services.items():
    aliases[name] = name
    nets = svc.get("networks") or {}
    if isinstance(nets, dict):
        for net in nets.values():
            for a in (net or {}).get("aliases", []) or []:
                aliases[a] = name
def container_ports(name):
    """Ports the service listens on inside the network: published targets plus well-known ones."""
    svc = services[name]
    ports = set()
    for p in svc.get("ports", []) or []:
        m = re.search(r":(\d+)(/udp)?$", str(p)) if isinstance(p, str) else None
        if m:
            ports.add(int(m.group(1)))
    test = " ".join(map(str, (svc.get("healthcheck") or {}).get("test", [])))
    ports.update(int(x) for x in re.findall(r"(?:127\.0\.0\.1|localhost)[:/](\d+)", test))
    return ports
def check_endpoint(probe, key, value, default_port):
    if "://" in value:
        u = urllib.parse.urlsplit(value)
        host, port = u.hostname, u.port or {"http": 80, "https": 443, "ldap": 389, "ldaps": 636}[u.scheme]
    else:
        host, _, port = value.rpartition(":")
        port = int(port or default_port)
    if host not in aliases:
        errors.append(f"{probe}: {key} host {host!r} is not a service on pes_network")
        return
    ports = container_ports(aliases[host])
    if ports and port not in ports:
        errors.append(f"{probe}: {key} port {port} is not one {aliases[host]} listens on ({sorted(ports)})")
for name, p in probes.items():
    sec = p.get(p["type"]) or {}
    for key in ("url", "health_url", "jicofo_health_url", "jvb_health_url"):
        if isinstance(sec.get(key), str):
            check_endpoint(name, key, sec[key], 80)
    if p["type"] == "postgres":
        check_endpoint(name, "host", f'{sec["host"]}:{sec.get("port", 5432)}', 5432)

# The platform's dependencies (CONTRACT.md: probe_dependency_info drives alert inhibition).
edges = {"nextcloud": {"postgres", "keycloak"}, "moodle": {"postgres", "keycloak"},
         "keycloak": {"postgres", "openldap"}, "collabora": {"nextcloud"}, "gitea": {"postgres"},
         "keycloak-login": {"keycloak"}}
for probe, deps in edges.items():
    have = set(probes.get(probe, {}).get("depends_on", []))
    if not deps <= have:
        errors.append(f"{probe}: depends_on lacks {sorted(deps - have)}")
for name, p in probes.items():
    if name in p.get("depends_on", []):
        errors.append(f"{name} depends on itself")

# Secrets: the enabled ones are mounted and generated; the optional ones name where they go.
def secrets_in(path):
    return set(re.findall(r"\$\{file:/run/secrets/([A-Za-z0-9_.-]+)\}", open(path).read()))
text = open(cfg_path).read()
enabled = set(re.findall(r"^(?![ \t]*#).*\$\{file:/run/secrets/([A-Za-z0-9_.-]+)\}", text, re.M))
optional = secrets_in(full_path) - enabled
for compose_file, doc in (("docker-compose.yml", compose), ("docker-compose.monitoring.yml", monitoring)):
    mounted = {s if isinstance(s, str) else s["source"] for s in doc["services"]["pes-agent"].get("secrets", [])}
    for s in sorted(enabled - mounted):
        errors.append(f"{compose_file}: pes-agent does not mount the secret {s} that agent.yml reads")
for s in sorted(enabled):
    if s not in gen:
        errors.append(f"gen-secrets.sh does not create {s}")
if not optional:
    errors.append("no optional credential secret (#+ lines) found")
for e in errors:
    print("  ERROR:", e)
if not errors:
    print(f"  {len(probes)} probes, nine seed services, hosts and edges as on pes_network; "
          f"{len(enabled)} secrets mounted, {len(optional)} optional: {', '.join(sorted(optional))}")
sys.exit(1 if errors else 0)
PYEOF

log "a broken copy is rejected (check-config can fail here)"
sed 's/^\(      url: http:\/\/gitea:3000\)$/\1\n      bearer_from: keycloak/' "$CFG" >"$TMP/bad.src.yml"
grep -q 'bearer_from: keycloak' "$TMP/bad.src.yml" || fail "could not build the broken copy"
with_dummy_secrets "$TMP/bad.src.yml" "$TMP/bad.yml"
if out=$("$AGENT" check-config "$TMP/bad.yml" 2>&1); then fail "check-config accepted bearer_from on gitea"; fi
grep -q "gitea.bearer_from: unknown key" <<<"$out" || fail "unexpected error text: $out"
log "PASS"
