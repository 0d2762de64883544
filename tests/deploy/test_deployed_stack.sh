#!/usr/bin/env bash
# The shipped monitoring files working together as compose deploys them:
#  - Prometheus with compose/prometheus/prometheus.yml at /etc/prometheus/prometheus.yml and the
#    rule files of alerts/ at /etc/prometheus/rules (where compose mounts them), Alertmanager with
#    alerts/alertmanager.yml, the agent with compose/agent.yml, each with the command-line flags
#    of compose/docker-compose.yml (storage paths aside) and secrets under /run/secrets;
#  - one network namespace of the test's whose /etc/hosts (/etc/netns/<ns>/hosts) maps every
#    compose service name, and the SMTP relay, to a 127.0.0.x address of that namespace, so the
#    files load unmodified: nothing runs at the platform's names, so the agent's probes fail;
#  - Prometheus scrapes the agent by its compose name (target pes-agent:9469 up) and sends
#    Alertmanager the alert the shipped rules fire first (PesDependencyDown: postgres is down,
#    keycloak depends on it), which Alertmanager's API lists;
#  - Grafana cannot run here: its provisioning is checked against the paths compose mounts, and
#    its datasource URL, from inside the namespace, answers the query Grafana would send.
# Each process gets a private mount namespace (ip netns exec makes one) in which the test binds
# its copies over /etc/prometheus and a directory with dummy secrets over /run; the host sees
# neither.
source "$(dirname "$0")/lib.sh"
need ip
need prometheus
need prometheus-alertmanager
need curl
need mount
[ "$(id -u)" -eq 0 ] || fail "needs root (ip netns, mount)"
[ -d /etc/prometheus ] || fail "/etc/prometheus missing (the prometheus package creates it)"
bin="${PES_AGENT_BINARY:-$PES_SOURCE_DIR/build/default/pes-agent}"
[ -x "$bin" ] || fail "agent binary $bin not built"
cd "$PES_SOURCE_DIR"

NS="pes-stack-$$"
cleanup() {
  local pid
  for pid in $(ip netns pids "$NS" 2>/dev/null); do kill -TERM "$pid" 2>/dev/null; done
  sleep 0.5
  for pid in $(ip netns pids "$NS" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null; done
  ip netns delete "$NS" 2>/dev/null
  rm -rf "/etc/netns/$NS"
  return 0
}
CLEANUP_HOOKS+=(cleanup)

# --- the files, laid out as the containers see them ----------------------------------------
log "laying out the shipped files at their container paths"
ROOT="$TMP/root"
mkdir -p "$ROOT/etc/prometheus" "$ROOT/etc/alertmanager" "$ROOT/run/secrets" "$TMP/prom" "$TMP/am"
cp compose/prometheus/prometheus.yml "$ROOT/etc/prometheus/prometheus.yml"
cp -r alerts "$ROOT/etc/prometheus/rules"
cp alerts/alertmanager.yml "$ROOT/etc/alertmanager/alertmanager.yml"
# Dummy values for every secret the three services read (the agent's three, the SMTP password).
for s in pes_monitor_db_password ldap_admin_password pes_agent_client_secret smtp_password; do
  printf 'dummy-%s\n' "$s" >"$ROOT/run/secrets/$s"
done
chmod -R a+rX "$ROOT"

# The command lines of compose/docker-compose.yml, read from it. Paths of named volumes (the
# storage) point into the temp dir; the config paths stay the container's.
"$PY" - "$TMP" <<'PYEOF' || fail "cannot read the commands of compose/docker-compose.yml"
import sys, yaml
tmp = sys.argv[1]
svcs = yaml.safe_load(open("compose/docker-compose.yml"))["services"]
storage = {"--storage.tsdb.path=": f"{tmp}/prom", "--storage.path=": f"{tmp}/am"}
for name in ("prometheus", "alertmanager", "pes-agent"):
    args = []
    for a in svcs[name]["command"]:
        for flag, path in storage.items():
            if a.startswith(flag):
                a = flag + path
        # ${VAR:-default} of the compose file: its default.
        if "${" in a:
            head, rest = a.split("${", 1)
            var, tail = rest.split("}", 1)
            a = head + var.split(":-", 1)[1] + tail
        args.append(a)
    open(f"{tmp}/{name}.args", "w").write("\0".join(args) + "\0")
names = sorted(svcs)
open(f"{tmp}/services", "w").write("\n".join(names) + "\n")
PYEOF
mapfile -d '' -t prom_args <"$TMP/prometheus.args"
mapfile -d '' -t am_args <"$TMP/alertmanager.args"
mapfile -d '' -t agent_args <"$TMP/pes-agent.args"
# The agent's image has its config at /etc/pes-agent/agent.yml (compose mounts compose/agent.yml
# there): point the flag at the repository's file itself.
for i in "${!agent_args[@]}"; do
  [[ ${agent_args[$i]} == --config.file=* ]] && agent_args[$i]="--config.file=$PES_SOURCE_DIR/compose/agent.yml"
done
[[ " ${agent_args[*]} " == *" --config.file=$PES_SOURCE_DIR/compose/agent.yml "* ]] ||
  fail "compose's pes-agent command has no --config.file"

# --- the network: compose names -> 127.0.0.x in one namespace -------------------------------
smtp_host=$(sed -n 's/^ *smtp_smarthost: *\([^:]*\):.*/\1/p' alerts/alertmanager.yml)
[ -n "$smtp_host" ] || fail "no smtp_smarthost in alerts/alertmanager.yml"
mkdir -p "/etc/netns/$NS"
{
  echo "127.0.0.1 localhost"
  n=2
  while read -r svc; do
    echo "127.0.0.$n $svc"
    n=$((n + 1))
  done <"$TMP/services"
  echo "127.0.0.$n $smtp_host"
} >"/etc/netns/$NS/hosts"
# No name server: every name the files use is in the hosts file, nothing else resolves.
: >"/etc/netns/$NS/resolv.conf"
ip netns add "$NS"
ip netns exec "$NS" ip link set lo up
log "  namespace $NS: $(($(wc -l <"/etc/netns/$NS/hosts") - 1)) names on 127.0.0.x ($(tr '\n' ' ' <"$TMP/services")$smtp_host)"

# Runs a command in the namespace with the container paths bound over the host's (private mounts).
in_stack() {
  ip netns exec "$NS" bash -c '
    set -e
    mount --bind "$1/etc/prometheus" /etc/prometheus
    mount --bind "$1/run" /run
    shift
    exec "$@"' bash "$ROOT" "$@"
}
api() { ip netns exec "$NS" curl -fsS --max-time 5 "$@"; }

# Alertmanager's config path is a flag; /etc/alertmanager does not exist on the host to bind over.
am_args=("${am_args[@]/\/etc\/alertmanager/$ROOT/etc/alertmanager}")
log "starting Alertmanager: ${am_args[*]}"
in_stack prometheus-alertmanager "${am_args[@]}" >"$TMP/am.log" 2>&1 &
# compose/agent.yml's connectivity checks (reach-keycloak, reach-nextcloud, reach-jitsi) are TCP
# connects to the platform's front doors. With none of them answering the agent would (rightly)
# say it cannot see the platform and record every other failure as unknown, so one front door
# accepts connections here: the platform is reachable, postgres is not.
kc_ip=$(awk '$2 == "keycloak" {print $1}' "/etc/netns/$NS/hosts")
[ -n "$kc_ip" ] || fail "no address for keycloak in the namespace's hosts file"
ip netns exec "$NS" "$PY" -c '
import socket, sys, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], 8080))
s.listen(128)
time.sleep(3600)' "$kc_ip" >"$TMP/frontdoor.log" 2>&1 &
log "a front door accepts on keycloak:8080 ($kc_ip), so the connectivity checks see the platform"
log "starting the agent: $bin ${agent_args[*]}"
in_stack "$bin" "${agent_args[@]}" >"$TMP/agent.log" 2>&1 &
log "starting Prometheus: ${prom_args[*]}"
in_stack prometheus "${prom_args[@]}" >"$TMP/prom.log" 2>&1 &

wait_ns() { # url seconds what
  local i
  for ((i = 0; i < $2 * 10; i++)); do
    api -o /dev/null "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  fail "$3 did not answer $1: $(tail -n 20 "$4")"
}
wait_ns http://alertmanager:9093/-/ready 30 Alertmanager "$TMP/am.log"
wait_ns http://pes-agent:9469/-/ready 30 "the agent" "$TMP/agent.log"
wait_ns http://prometheus:9090/-/ready 60 Prometheus "$TMP/prom.log"
# The rules loaded are the shipped ones, from the path compose mounts.
nrules=$(api http://prometheus:9090/api/v1/rules | "$PY" -c 'import json,sys; print(sum(len(g["rules"]) for g in json.load(sys.stdin)["data"]["groups"]))')
want_rules=$("$PY" -c 'import glob,yaml; print(sum(len(g["rules"]) for f in glob.glob("alerts/*.rules.yml") for g in yaml.safe_load(open(f))["groups"]))')
[ "$nrules" = "$want_rules" ] || fail "Prometheus loaded $nrules rules, alerts/*.rules.yml hold $want_rules"
log "  all three serve; Prometheus loaded the $nrules rules of alerts/ from /etc/prometheus/rules"

log "waiting for Prometheus to scrape pes-agent:9469 (its scrape interval)"
targets=""
for ((i = 0; i < 60; i++)); do
  targets=$(api http://prometheus:9090/api/v1/targets) &&
    "$PY" -c '
import json, sys
t = json.loads(sys.argv[1])["data"]["activeTargets"]
sys.exit(0 if len(t) == 3 and all(x["health"] == "up" for x in t) else 1)' "$targets" && break
  sleep 1
done
"$PY" - "$targets" <<'PYEOF' || fail "Prometheus does not scrape the agent by its compose name"
import json, sys
active = json.loads(sys.argv[1])["data"]["activeTargets"]
by_job = {t["labels"]["job"]: t for t in active}
errors = []
for job, url in (("pes-agent", "http://pes-agent:9469/metrics"),
                 ("alertmanager", "http://alertmanager:9093/metrics"),
                 ("prometheus", "http://localhost:9090/metrics")):
    t = by_job.get(job)
    if not t:
        errors.append(f"no target of job {job}")
    elif t["scrapeUrl"] != url or t["health"] != "up":
        errors.append(f"job {job}: {t['scrapeUrl']} health {t['health']} {t.get('lastError', '')}")
for e in errors:
    print("  ERROR:", e)
if not errors:
    print(f"  targets up: " + ", ".join(by_job[j]["scrapeUrl"] for j in sorted(by_job)))
sys.exit(1 if errors else 0)
PYEOF
ams=$(api http://prometheus:9090/api/v1/alertmanagers)
grep -q '"url":"http://alertmanager:9093/api/v2/alerts"' <<<"$ams" ||
  fail "Prometheus does not send to alertmanager:9093: $ams"

# Nothing answers at postgres:5432, so the postgres probe turns down after failure_threshold
# runs at the edge interval (about 20 s); PesDependencyDown (no `for:`) then fires for keycloak's
# edge to postgres at the next evaluation and Prometheus sends it to Alertmanager.
log "waiting for Alertmanager to receive PesDependencyDown from Prometheus (about a minute)"
alerts=""
for ((i = 0; i < 180; i++)); do
  alerts=$(api 'http://alertmanager:9093/api/v2/alerts?filter=alertname%3D%22PesDependencyDown%22') &&
    "$PY" -c '
import json, sys
sys.exit(0 if any(a["labels"].get("probe") == "keycloak" and a["labels"].get("depends_on") == "postgres"
                  for a in json.loads(sys.argv[1])) else 1)' "$alerts" && break
  sleep 1
done
"$PY" - "$alerts" <<'PYEOF' || fail "Alertmanager did not receive the alert: $(tail -n 5 "$TMP/prom.log")"
import json, sys
alerts = json.loads(sys.argv[1])
edge = [a for a in alerts if a["labels"].get("probe") == "keycloak" and a["labels"].get("depends_on") == "postgres"]
if not edge:
    print("  ERROR: no PesDependencyDown keycloak -> postgres:", [a["labels"] for a in alerts])
    sys.exit(1)
l = edge[0]["labels"]
want = {"job": "pes-agent", "instance": "pes-agent:9469", "platform": "pes", "inhibit": "dependency"}
bad = {k: l.get(k) for k, v in want.items() if l.get(k) != v}
if bad:
    print("  ERROR: unexpected labels", bad, "in", l)
    sys.exit(1)
if edge[0]["receivers"][0]["name"] != "null":
    print("  ERROR: the marker is routed to", edge[0]["receivers"])
    sys.exit(1)
print(f"  {len(alerts)} PesDependencyDown alerts, keycloak -> postgres from {l['instance']}, routed to 'null'")
PYEOF
# The reason is the real one: postgres was refused at its compose name.
api http://pes-agent:9469/metrics | grep -q '^probe_up{.*probe="postgres".*} 0$' || fail "postgres probe not down"

# --- Grafana: what compose mounts, and the datasource the provisioning names ---------------
log "checking Grafana's provisioning against compose's mounts and the running Prometheus"
"$PY" - <<'PYEOF' || fail "Grafana provisioning does not fit the compose mounts"
import glob, json, os, yaml
svcs = yaml.safe_load(open("compose/docker-compose.yml"))["services"]
prom_cfg = yaml.safe_load(open("compose/prometheus/prometheus.yml"))
g = svcs["grafana"]
errors = []
mounts = {}
for v in g["volumes"]:
    src, dst = v.split(":")[:2]
    mounts[dst] = os.path.normpath(os.path.join("compose", src))
prov = mounts.get("/etc/grafana/provisioning")
if prov != "compose/grafana/provisioning":
    errors.append(f"/etc/grafana/provisioning is mounted from {prov}")
ds_files = glob.glob(f"{prov}/datasources/*.yml")
db_files = glob.glob(f"{prov}/dashboards/*.yml")
if not ds_files or not db_files:
    errors.append("provisioning lacks datasources/*.yml or dashboards/*.yml (Grafana reads only those)")
datasources = [d for f in ds_files for d in yaml.safe_load(open(f)).get("datasources", [])]
uids = {d["uid"] for d in datasources}
for d in datasources:
    if d["type"] == "prometheus" and d["url"] != "http://prometheus:9090":
        errors.append(f"datasource {d['name']} points at {d['url']}, not the compose service prometheus:9090")
    if d.get("jsonData", {}).get("timeInterval") != prom_cfg["global"]["scrape_interval"]:
        errors.append(f"datasource timeInterval {d.get('jsonData', {}).get('timeInterval')} != scrape_interval")
for f in db_files:
    for p in yaml.safe_load(open(f))["providers"]:
        path = p["options"]["path"]
        src = mounts.get(path)
        if src is None:
            errors.append(f"dashboard provider {p['name']} reads {path}, which compose does not mount")
            continue
        jsons = glob.glob(f"{src}/*.json")
        if not jsons:
            errors.append(f"{src} (mounted at {path}) holds no dashboard")
        for j in jsons:
            refs = set()
            def walk(x):
                if isinstance(x, dict):
                    ds = x.get("datasource")
                    if isinstance(ds, dict) and "uid" in ds and not ds["uid"].startswith("$"):
                        refs.add(ds["uid"])
                    for v in x.values(): walk(v)
                elif isinstance(x, list):
                    for v in x: walk(v)
            walk(json.load(open(j)))
            if not refs or not refs <= uids:
                errors.append(f"{j} uses datasource uids {sorted(refs)}, provisioned: {sorted(uids)}")
home = g.get("environment", {}).get("GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH")
if home:
    d, f = os.path.split(home)
    if d not in mounts or not os.path.isfile(os.path.join(mounts[d], f)):
        errors.append(f"home dashboard {home} is not in a mounted directory")
for e in errors:
    print("  ERROR:", e)
if not errors:
    print(f"  datasource uids {sorted(uids)}, {len(db_files)} provider(s), home {home}")
raise SystemExit(1 if errors else 0)
PYEOF
# The query Grafana sends (jsonData.httpMethod POST) to the URL it is provisioned with.
# A probe's series appear once its first run ended, and first runs are spread over each probe's
# interval (up to 60 s in compose/agent.yml: nexus), so wait up to that interval, the probe's
# timeout and a scrape after the agent's start. (40 s was shorter than that: it failed when
# nexus's first run came late.)
want=$(grep -c '^  - name:' compose/agent.yml)
for ((i = 0; i < 90; i++)); do
  q=$(api -X POST --data-urlencode 'query=probe_up{job="pes-agent"}' http://prometheus:9090/api/v1/query)
  n=$("$PY" -c 'import json,sys; print(len(json.loads(sys.argv[1])["data"]["result"]))' "$q")
  [ "$n" = "$want" ] && break
  sleep 1
done
[ "$n" = "$want" ] || fail "the datasource URL answers $n probe_up series, compose/agent.yml has $want probes"
log "  http://prometheus:9090 answers Grafana's POST query: $n probe_up series"
log "PASS"
