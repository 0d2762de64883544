#!/usr/bin/env bash
# The Alertmanager configuration alerts/alertmanager.yml with the real tools:
#  - `amtool check-config`;
#  - `amtool config routes test`: markers go nowhere, critical pages, warning/info open tickets;
#  - a real Alertmanager on loopback receives the alerts of an outage and must show exactly
#    the root cause as active and the dependents (and the lesser duplicates) as inhibited.
source "$(dirname "$0")/lib.sh"
need amtool; need prometheus-alertmanager; need curl
cd "$PES_SOURCE_DIR"
cfg=alerts/alertmanager.yml

log "amtool check-config $cfg"
amtool check-config "$cfg" || fail "amtool check-config failed"

route() { # expected-receiver labels...
  local want=$1; shift
  local got
  got=$(amtool config routes test --config.file="$cfg" "$@" 2>/dev/null | tail -n1)
  [ "$got" = "$want" ] || fail "route for {$*}: got receiver '$got', want '$want'"
  log "  route {$*} -> $got"
}
log "amtool config routes test"
route null    alertname=PesDependencyDown severity=info inhibit=dependency probe=nextcloud service=nextcloud
route pager   alertname=PesProbeDown severity=critical probe=postgres service=postgresql
route pager   alertname=PesAgentAbsent severity=critical service=pes-agent
route ticket  alertname=PesCertificateExpiring severity=warning probe=nextcloud service=nextcloud
route ticket  alertname=PesKeycloakTokenLifetimeChanged severity=info probe=kc service=keycloak

log "starting a real Alertmanager on loopback"
port=$(free_port)
mkdir -p "$TMP/am"
printf 'dummy\n' > "$TMP/smtp_password"
# Same file, with mail pointed at a closed loopback port and the secret at a temp file.
sed -e "s#smtp_smarthost: .*#smtp_smarthost: 127.0.0.1:9#" \
    -e "s#/run/secrets/smtp_password#$TMP/smtp_password#" "$cfg" > "$TMP/am.yml"
prometheus-alertmanager --config.file="$TMP/am.yml" --storage.path="$TMP/am" \
  --web.listen-address="127.0.0.1:$port" --cluster.listen-address= >"$TMP/am.log" 2>&1 &
am_pid=$!
CLEANUP_HOOKS+=("kill $am_pid 2>/dev/null; wait $am_pid 2>/dev/null")
wait_http "http://127.0.0.1:$port/-/ready" 30 || { cat "$TMP/am.log"; fail "Alertmanager did not become ready"; }

# An outage as Prometheus would send it: PostgreSQL is down; nextcloud and keycloak depend on it
# (markers from PesDependencyDown); gitea is down on its own; staging is another platform.
"$PY" - "$port" <<'PYEOF'
import json, sys, urllib.request
port = sys.argv[1]
base = {"platform": "pes", "instance": "agent:9469", "job": "pes-agent"}
def a(**labels):
    return {"labels": {**base, **labels}, "annotations": {"summary": "test"},
            "generatorURL": "http://127.0.0.1/graph"}
alerts = [
    a(alertname="PesProbeDown", severity="critical", probe="postgres", service="postgresql", tag="root"),
    a(alertname="PesDependencyDown", severity="info", inhibit="dependency", probe="nextcloud",
      service="nextcloud", depends_on="postgres", tag="marker-nextcloud"),
    a(alertname="PesDependencyDown", severity="info", inhibit="dependency", probe="keycloak-token",
      service="keycloak", depends_on="postgres", tag="marker-keycloak"),
    a(alertname="PesProbeDown", severity="critical", probe="nextcloud", service="nextcloud", tag="dep-nextcloud-down"),
    a(alertname="PesAvailabilityBudgetBurn", severity="critical", probe="nextcloud", service="nextcloud", tag="dep-nextcloud-burn"),
    a(alertname="PesProbeDown", severity="critical", probe="keycloak-token", service="keycloak", tag="dep-keycloak-down"),
    a(alertname="PesProbeDown", severity="critical", probe="gitea", service="gitea", tag="independent"),
    a(alertname="PesAvailabilityBudgetBurn", severity="critical", probe="gitea", service="gitea", tag="burn-while-down"),
    {**a(alertname="PesProbeDown", severity="critical", probe="nextcloud", service="nextcloud", tag="other-platform"),
     "labels": {**base, "platform": "staging", "alertname": "PesProbeDown", "severity": "critical",
                "probe": "nextcloud", "service": "nextcloud", "tag": "other-platform"}},
    a(alertname="PesCertificateExpiring", severity="critical", probe="moodle", service="moodle", tag="cert-critical"),
    a(alertname="PesCertificateExpiring", severity="warning", probe="moodle", service="moodle", tag="cert-warning"),
    a(alertname="PesAgentDown", severity="critical", service="pes-agent", tag="agent-down"),
    a(alertname="PesAgentReloadFailed", severity="warning", service="pes-agent", tag="agent-reload"),
    # Two replicas of a fleet raise the same per-agent ticket: one group (one ticket) for both.
    {**a(), "labels": {**base, "instance": "a1:9469", "alertname": "PesProbeDegraded",
                       "severity": "warning", "probe": "gitea", "service": "gitea", "tag": "degraded-a1"}},
    {**a(), "labels": {**base, "instance": "a2:9469", "alertname": "PesProbeDegraded",
                       "severity": "warning", "probe": "gitea", "service": "gitea", "tag": "degraded-a2"}},
    # While two replicas page for two different probes stay two pages.
    {**a(), "labels": {**base, "instance": "a1:9469", "alertname": "PesProbeDown",
                       "severity": "critical", "probe": "moodle", "service": "moodle", "tag": "page-a1"}},
    {**a(), "labels": {**base, "instance": "a2:9469", "alertname": "PesProbeDown",
                       "severity": "critical", "probe": "nexus", "service": "nexus", "tag": "page-a2"}},
]
req = urllib.request.Request(f"http://127.0.0.1:{port}/api/v2/alerts", data=json.dumps(alerts).encode(),
                             headers={"Content-Type": "application/json"}, method="POST")
urllib.request.urlopen(req, timeout=5).read()
print(f"  posted {len(alerts)} alerts")
PYEOF

log "checking which alerts are active and which are inhibited"
"$PY" - "$port" <<'PYEOF'
import json, sys, time, urllib.request
port = sys.argv[1]
want = {
    "root": "active", "independent": "active", "other-platform": "active",
    "cert-critical": "active", "agent-down": "active",
    "dep-nextcloud-down": "suppressed", "dep-nextcloud-burn": "suppressed",
    "dep-keycloak-down": "suppressed", "burn-while-down": "suppressed",
    "cert-warning": "suppressed", "agent-reload": "suppressed",
}
deadline = time.time() + 20
while True:
    data = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v2/alerts", timeout=5))
    got = {a["labels"]["tag"]: a["status"] for a in data if "tag" in a["labels"]}
    wrong = {t: (got.get(t, {}).get("state"), s) for t, s in want.items()
             if got.get(t, {}).get("state") != s
             or (s == "suppressed" and not got[t].get("inhibitedBy"))}
    if not wrong or time.time() > deadline:
        break
    time.sleep(0.5)
for t, s in sorted(want.items()):
    st = got.get(t, {})
    print(f"  {t:20s} {st.get('state')!s:10s} inhibited by {len(st.get('inhibitedBy') or [])} alert(s)")
if wrong:
    print("  WRONG (got, want):", wrong)
    sys.exit(1)
PYEOF

log "checking how the active alerts are grouped into notifications"
"$PY" - "$port" <<'PYEOF'
import json, sys, time, urllib.request
port = sys.argv[1]
def groups():
    data = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v2/alerts/groups", timeout=5))
    out = {}
    for g in data:
        tags = sorted(a["labels"]["tag"] for a in g["alerts"] if "tag" in a["labels"])
        for t in tags:
            out[t] = (g["receiver"]["name"], tags)
    return out
deadline = time.time() + 20
while True:
    got = groups()
    ok = (got.get("degraded-a1") == ("ticket", ["degraded-a1", "degraded-a2"])
          and got.get("page-a1") == ("pager", ["page-a1"]) and got.get("page-a2") == ("pager", ["page-a2"]))
    if ok or time.time() > deadline:
        break
    time.sleep(0.5)
for t in ("degraded-a1", "degraded-a2", "page-a1", "page-a2"):
    print(f"  {t:12s} -> {got.get(t)}")
if not ok:
    print("  WRONG: want the two replicas' PesProbeDegraded{gitea} in one ticket group, the two pages apart")
    sys.exit(1)
PYEOF
log "PASS"
