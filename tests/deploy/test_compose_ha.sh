#!/usr/bin/env bash
# The HA override compose/docker-compose.ha.yml, checked without a Docker engine:
#  - `docker-compose config` accepts it on top of docker-compose.yml and of
#    docker-compose.monitoring.yml;
#  - the resolved stack has two Prometheus with different `replica` values, both on
#    prometheus-ha.yml, and two Alertmanagers that peer with each other on 9094;
#  - prometheus-ha.yml passes `promtool check config`, drops `replica` for alerting and sends
#    to both Alertmanagers.
source "$(dirname "$0")/lib.sh"
need docker-compose; need promtool; need openssl
cd "$PES_SOURCE_DIR"

mkdir -p "$TMP/repo"
cp -r compose alerts dashboards "$TMP/repo/"
rm -rf "$TMP/repo/compose/secrets" "$TMP/repo/compose/.env"
cp "$TMP/repo/compose/.env.example" "$TMP/repo/compose/.env"
bash "$TMP/repo/compose/gen-secrets.sh" >/dev/null
cd "$TMP/repo/compose"
for base in docker-compose.yml docker-compose.monitoring.yml; do
  log "docker-compose -f $base -f docker-compose.ha.yml config"
  docker-compose -f "$base" -f docker-compose.ha.yml config > "$TMP/$base.ha" 2>"$TMP/err" ||
    fail "docker-compose rejects $base + docker-compose.ha.yml: $(cat "$TMP/err")"
done

log "promtool check config prometheus/prometheus-ha.yml"
PROMETHEUS_REPLICA=a promtool check config --syntax-only prometheus/prometheus-ha.yml >/dev/null ||
  fail "promtool rejects prometheus-ha.yml"

log "checking the resolved HA stack"
"$PY" - "$TMP" <<'PYEOF'
import sys, yaml
tmp = sys.argv[1]
errors = []
prom = yaml.safe_load(open("prometheus/prometheus-ha.yml"))
for base in ["docker-compose.yml", "docker-compose.monitoring.yml"]:
    svc = yaml.safe_load(open(f"{tmp}/{base}.ha"))["services"]
    replicas = {}
    for name in ["prometheus", "prometheus-b"]:
        c = svc.get(name)
        if not c:
            errors.append(f"{base}: no service {name}"); continue
        env = c.get("environment") or {}
        replicas[name] = env.get("PROMETHEUS_REPLICA")
        if "--enable-feature=expand-external-labels" not in c["command"]:
            errors.append(f"{base}: {name} does not expand external labels")
        mounts = [v if isinstance(v, str) else f"{v['source']}:{v['target']}" for v in c["volumes"]]
        cfg = [m for m in mounts if ":/etc/prometheus/prometheus.yml" in m]
        if len(cfg) != 1 or "prometheus-ha.yml" not in cfg[0]:
            errors.append(f"{base}: {name} does not mount prometheus-ha.yml ({cfg})")
    if len(set(replicas.values())) != 2 or None in replicas.values():
        errors.append(f"{base}: the two Prometheus need different replica labels: {replicas}")
    peers = {"alertmanager": "alertmanager-b:9094", "alertmanager-b": "alertmanager:9094"}
    for name, peer in peers.items():
        c = svc.get(name)
        if not c:
            errors.append(f"{base}: no service {name}"); continue
        if f"--cluster.peer={peer}" not in c["command"]:
            errors.append(f"{base}: {name} does not peer with {peer}")
        if "--cluster.listen-address=0.0.0.0:9094" not in c["command"] or "--cluster.listen-address=" in c["command"]:
            errors.append(f"{base}: {name} does not listen for its cluster on 9094")
if prom["global"]["external_labels"].get("replica") != "${PROMETHEUS_REPLICA}":
    errors.append("prometheus-ha.yml: external label replica must be ${PROMETHEUS_REPLICA}")
drops = [r for r in prom["alerting"].get("alert_relabel_configs", [])
         if r.get("action") == "labeldrop" and r.get("regex") == "replica"]
if not drops:
    errors.append("prometheus-ha.yml: replica is not dropped for alerting")
targets = [t for am in prom["alerting"]["alertmanagers"] for sc in am["static_configs"] for t in sc["targets"]]
if sorted(targets) != ["alertmanager-b:9093", "alertmanager:9093"]:
    errors.append(f"prometheus-ha.yml: must send to both Alertmanagers, sends to {targets}")
single = yaml.safe_load(open("prometheus/prometheus.yml"))
if [j["job_name"] for j in single["scrape_configs"]] != [j["job_name"] for j in prom["scrape_configs"]]:
    errors.append("prometheus-ha.yml scrapes other jobs than prometheus.yml")
for e in errors:
    print("  ERROR:", e)
sys.exit(1 if errors else 0)
PYEOF
log "PASS"
